//! No page sends more than 200 KB, however large the state behind it: long
//! lists are cut with a count and a link to the rest, and a diff is cut with
//! a link to the whole of it. The router runs in-process over a real
//! database holding thousands of objects, an organization with thousands
//! of members, an audit log pages long whose entries have huge diffs, and
//! sources with hundreds of open drift items and errors.

mod common;

use std::sync::{Arc, RwLock};

use accord::controller::state::{OpenItem, SourceHandle, SourceStatus, State, SyncState};
use accord::model::Object;
use accord::store::AnyStore;
use axum::body::Body;
use axum::Router;
use common::builders::{org, permit};
use common::db::{sync_objects, Backend, TestDb};
use http::{Request, StatusCode};
use tokio::sync::mpsc;
use tower::ServiceExt;

/// The budget for one page.
const BUDGET: usize = 200 * 1024;

const PERMITS: usize = 3_000;
const MEMBERS: usize = 5_000;

/// `n` lines of a diff, each long.
fn long_diff(n: usize) -> String {
    (0..n)
        .map(|i| format!("+  - contact: member-{i:05}@a-rather-long-domain-name.example.com\n"))
        .collect()
}

fn big_org(role: &str) -> Object {
    let mut big = org("big").name("Big");
    for m in 0..MEMBERS {
        big = big.member(
            &format!("member-{m:05}@a-rather-long-domain-name.example.com"),
            role,
        );
    }
    big.build()
}

/// Everything at once: 1,000 organizations, `PERMITS` permits granting
/// `svc:read` to their own slug and to `hub`, one organization of `MEMBERS`
/// members; then 60 permits naming 400 slugs each and that organization's
/// every member changed, so the newest audit entries are huge.
async fn large_state(store: &AnyStore) {
    let mut objects: Vec<Object> = (0..1_000)
        .map(|n| org(&format!("org-{n:04}")).build())
        .collect();
    objects.extend((0..PERMITS).map(|n| {
        permit(&format!("p{n:05}"))
            .slugs([format!("svc-{n:05}"), "hub".into()])
            .build()
    }));
    objects.push(big_org("user"));
    sync_objects(store, "git", objects.clone()).await;
    objects.pop();
    objects.push(big_org("admin"));
    objects.extend((0..60).map(|n| {
        permit(&format!("wide-{n:02}"))
            .slugs((0..400).map(|s| format!("caller-number-{s:04}-of-a-wide-permit")))
            .build()
    }));
    sync_objects(store, "git", objects).await;
}

/// A source whose status is as long as a status gets: hundreds of drift
/// items and conflicts with long diffs, hundreds of long errors.
fn busy_source(name: &str) -> Arc<SourceHandle> {
    let (trigger, _requests) = mpsc::channel(1);
    let mut status = SourceStatus::new(name, "git", format!("https://git.example.com/{name}.git"));
    let item = |n: usize| OpenItem {
        source: name.into(),
        kind: "Permit".into(),
        app: "unnamed".into(),
        id: format!("p{n:05}"),
        note: "edited by hand".into(),
        diff: long_diff(500),
    };
    status.state = SyncState::Error;
    status.message = "x".repeat(20_000);
    status.errors = (0..500)
        .map(|n| format!("apps/file-{n}.yaml:1:1: {}", "y".repeat(2_000)))
        .collect();
    status.drift = (0..300).map(item).collect();
    status.conflicts = (300..600).map(item).collect();
    Arc::new(SourceHandle {
        name: name.into(),
        status: RwLock::new(status),
        trigger,
        webhook_secret: None,
        watcher: None,
    })
}

async fn get(router: &Router, uri: &str) -> (StatusCode, String) {
    let response = router
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).expect("request"))
        .await
        .expect("the router never fails");
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_page_sends_more_than_200_kb_however_large_the_state() {
    let db = TestDb::new(Backend::Sqlite).await;
    let store = AnyStore::connect(&db.url).await.expect("connect");
    large_state(&store).await;
    let sources = (0..3)
        .map(|n| busy_source(&format!("source-{n}")))
        .collect();
    let state = Arc::new(State::new(sources, Arc::new(store)));
    let router = accord::server::router(state);

    // Each page, and what shows that its list or diff was cut with a way
    // to the rest.
    let pages = [
        ("/", "more errors not shown"),
        ("/sources/source-0", "more items not shown"),
        ("/audit", "the full diff"),
        ("/audit?source=git&kind=Permit", "the full diff"),
        (
            "/audit?kind=Organization&app=unnamed&id=big",
            "the full diff",
        ),
        ("/organizations", "More organizations"),
        (
            "/organizations?after_app=unnamed&after_slug=org-0500",
            "More organizations",
        ),
        ("/organizations/big", "More members"),
        ("/organizations/big?from=4500", "First members"),
        ("/access?permission=svc:read", "more holders not shown"),
        ("/access?slug=hub", "more permissions not shown"),
        (
            "/access?slug=hub&permission=svc:read",
            "more paths not shown",
        ),
    ];
    let mut over = Vec::new();
    for (uri, cut) in pages {
        let (status, body) = get(&router, uri).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
        if body.len() > BUDGET {
            over.push(format!("{uri}: {} bytes", body.len()));
        }
        assert!(body.contains(cut), "{uri} does not say `{cut}`");
    }
    assert!(over.is_empty(), "over {BUDGET} bytes: {over:?}");

    // The links lead on: the next page of organizations starts after the
    // last one shown, and the audit page's older entries are a page away.
    let (_, list) = get(&router, "/organizations").await;
    assert!(
        list.contains("/organizations?after_app=unnamed&amp;after_slug=org-0198"),
        "{}",
        &list[list.len().saturating_sub(800)..]
    );
    let (_, audit) = get(&router, "/audit").await;
    assert!(audit.contains("rel=\"next\""));
    assert!(audit.contains("href=\"/api/v1/audit-logs/"));
}
