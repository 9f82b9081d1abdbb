//! The Kubernetes source without a cluster, the way kube-rs's reference
//! controller tests its reconciler: a `kube::Client` over a `tower_test`
//! mock, and a verifier that asserts every request the sync makes (method,
//! path, body) in order and answers it. The database is a real SQLite file.

mod common;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use accord::config::{KubernetesConfig, SourceConfig, SourceKind};
use accord::controller::leader::Leadership;
use accord::controller::state::{SourceHandle, SourceStatus, State};
use accord::controller::worker::{AnySource, Outcome, Worker};
use accord::model::Kind;
use accord::plan::{self, Action, PlanOptions};
use accord::policy::DriftPolicy;
use accord::source::kubernetes::{Feeds, KubernetesSource};
use accord::store::{AnyStore, ApplyRequest, Store};
use common::builders::{declared, desired, permit};
use common::db::{locked, Backend, TestDb};
use http::{Method, Request, Response};
use kube::api::DynamicObject;
use kube::client::Body;
use serde_json::{json, Value};
use tokio::sync::mpsc;

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

const SOURCE: &str = "kubernetes";

/// A typed manifest as the API server stores it.
fn object(kind: &str, namespace: &str, name: &str, generation: i64, spec: Value) -> Value {
    json!({
        "apiVersion": "accord.dev/v1alpha1",
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": format!("uid-{namespace}-{name}"),
            "generation": generation,
            "resourceVersion": "100",
            "creationTimestamp": "2026-11-01T10:00:00Z",
        },
        "spec": spec,
    })
}

fn permit_object(name: &str, permission: &str) -> Value {
    object(
        "Permit",
        "team-a",
        name,
        1,
        json!({"permissionId": permission, "slugs": ["order-service"]}),
    )
}

fn dynamic(value: &Value) -> DynamicObject {
    serde_json::from_value(value.clone()).expect("a valid object")
}

/// The same object as the API server returns it after accord's status
/// patch: with the status, at a newer resourceVersion.
fn with_status(value: &Value, status: &Value) -> Value {
    let mut value = value.clone();
    value["status"] = status.clone();
    let version: u64 = value["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    value["metadata"]["resourceVersion"] = json!((version + 1).to_string());
    value
}

/// One sync of a Kubernetes source, driven by hand.
struct Harness {
    _db: TestDb,
    store: Arc<AnyStore>,
    feeds: Feeds,
    worker: Worker,
    handle: Handle,
}

impl Harness {
    async fn new(leading: bool) -> Harness {
        let db = TestDb::new(Backend::Sqlite).await;
        let store = Arc::new(AnyStore::connect(&db.url).await.expect("store"));
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = kube::Client::new(service, "default");
        let feeds = Feeds::new(&[]);
        // One write at a time, so the verifier sees them in object order.
        let source =
            KubernetesSource::new(client, feeds.cache(), "replica-1").with_write_concurrency(1);
        let (trigger, _requests) = mpsc::channel(4);
        let source_handle = Arc::new(SourceHandle {
            name: SOURCE.into(),
            status: RwLock::new(SourceStatus::new(SOURCE, "kubernetes", "test".into())),
            trigger,
            webhook_secret: None,
            watcher: None,
        });
        let state = Arc::new(State {
            leadership: Some(Arc::new(Leadership::fixed("replica-1", leading))),
            ..State::new(vec![source_handle.clone()], store.clone())
        });
        let config = SourceConfig {
            name: SOURCE.into(),
            kind: SourceKind::Kubernetes(KubernetesConfig::default()),
            interval: Duration::from_secs(300),
            drift: DriftPolicy::Correct,
            prune: true,
            max_delete_percent: 25,
            deletion_window: Duration::from_secs(600),
            max_file_size: 1 << 20,
        };
        let worker = Worker::new(
            source_handle,
            state,
            AnySource::Kubernetes(Box::new(source)),
            config,
            "accord@test".into(),
        );
        Harness {
            _db: db,
            store,
            feeds,
            worker,
            handle,
        }
    }

    /// The watch cache now holds exactly `objects` (and no namespaces with
    /// an app annotation unless given).
    fn list(&mut self, objects: &[Value], namespaces: Vec<Value>) {
        for kind in Kind::ALL {
            let of_kind: Vec<DynamicObject> = objects
                .iter()
                .filter(|o| o["kind"] == kind.as_str())
                .map(dynamic)
                .collect();
            self.feeds.list(kind, of_kind);
        }
        self.feeds.list_namespaces(
            namespaces
                .into_iter()
                .map(|n| serde_json::from_value(n).expect("namespace"))
                .collect(),
        );
    }

    /// Runs one sync while `verify` answers the API requests it makes, then
    /// checks that nothing else was requested.
    async fn sync(&mut self, expected: Vec<Expect>) -> (Outcome, Vec<Value>) {
        let Harness { worker, handle, .. } = self;
        let sync = worker.sync_once();
        tokio::pin!(sync);
        let mut bodies = Vec::new();
        for expect in expected {
            let wanted = format!("{} {}", expect.method, expect.path);
            tokio::select! {
                outcome = &mut sync => panic!("the sync ended ({outcome:?}) before {wanted}"),
                body = expect.answer(handle) => bodies.push(body),
            }
        }
        // Whatever else the sync would ask is a failure, not a hang.
        let outcome = tokio::select! {
            outcome = &mut sync => outcome,
            request = handle.next_request() => match request {
                Some((request, _)) => panic!("unexpected request: {} {}", request.method(), request.uri()),
                None => panic!("the client went away mid-sync"),
            },
        };
        (outcome, bodies)
    }

    /// Lists `objects`, runs a first sync that must patch each one's status
    /// once, and returns them as the watch then echoes them (with status).
    async fn synced(&mut self, objects: &[Value]) -> Vec<Value> {
        self.list(objects, vec![]);
        let (outcome, bodies) = self
            .sync(objects.iter().map(Expect::status_patch).collect())
            .await;
        assert_eq!(outcome, Outcome::Applied);
        objects
            .iter()
            .zip(&bodies)
            .map(|(o, b)| with_status(o, &b["status"]))
            .collect()
    }

    async fn rows(&self) -> Vec<(String, String, Option<String>)> {
        let live = self.store.load(None).await.expect("load");
        let mut rows: Vec<_> = live
            .rows
            .iter()
            .map(|(k, r)| {
                (
                    k.kind.to_string(),
                    k.id.to_string(),
                    r.managed_by.as_deref().map(str::to_owned),
                )
            })
            .collect();
        rows.sort();
        rows
    }
}

/// One request the sync must make, and the answer it gets.
struct Expect {
    method: Method,
    path: String,
    respond: Box<dyn Fn(&Value) -> Value + Send>,
}

impl Expect {
    /// A server-side apply of `/status` with accord's field manager.
    fn status_patch(object: &Value) -> Expect {
        let meta = &object["metadata"];
        let plural = format!(
            "{}s",
            object["kind"].as_str().unwrap_or_default().to_lowercase()
        );
        let object = object.clone();
        Expect {
            method: Method::PATCH,
            path: format!(
                "/apis/accord.dev/v1alpha1/namespaces/{}/{plural}/{}/status?&force=true&fieldManager=accord",
                meta["namespace"].as_str().unwrap_or_default(),
                meta["name"].as_str().unwrap_or_default()
            ),
            respond: Box::new(move |body| with_status(&object, &body["status"])),
        }
    }

    /// An Event about an object in `namespace`.
    fn event(namespace: &str) -> Expect {
        Expect {
            method: Method::POST,
            path: format!("/apis/events.k8s.io/v1/namespaces/{namespace}/events?"),
            respond: Box::new(|body| body.clone()),
        }
    }

    async fn answer(self, handle: &mut Handle) -> Value {
        let (request, send) = tokio::time::timeout(Duration::from_secs(10), handle.next_request())
            .await
            .unwrap_or_else(|_| panic!("expected {} {}, got no request", self.method, self.path))
            .expect("the client is alive");
        assert_eq!(request.method(), self.method, "method of {}", request.uri());
        assert_eq!(request.uri().to_string(), self.path);
        if self.method == Method::PATCH {
            assert_eq!(
                request.headers()["content-type"],
                "application/apply-patch+yaml",
                "status is written by server-side apply"
            );
        }
        let bytes = request.into_body().collect_bytes().await.expect("body");
        let body: Value = serde_json::from_slice(&bytes).expect("a JSON body");
        let reply = (self.respond)(&body);
        send.send_response(
            Response::builder()
                .status(if self.method == Method::POST {
                    201
                } else {
                    200
                })
                .body(Body::from(serde_json::to_vec(&reply).expect("json")))
                .expect("response"),
        );
        body
    }
}

fn condition<'a>(status_body: &'a Value, type_: &str) -> &'a Value {
    status_body["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == type_))
        .unwrap_or_else(|| panic!("no {type_} condition in {status_body}"))
}

#[tokio::test]
async fn listed_objects_become_rows_and_each_gets_one_status_patch() {
    let mut h = Harness::new(true).await;
    let org = object(
        "Organization",
        "team-a",
        "acme",
        3,
        json!({"name": "Acme", "members": [{"contactId": "jane@acme.com", "role": "admin"}]}),
    );
    let pay = permit_object("pay", "payment-svc:process");
    let admin = object(
        "Enrollment",
        "team-a",
        "prod-admin",
        1,
        json!({"role": "user-svc:org:acme:admin", "userId": "u-1"}),
    );
    h.list(&[org.clone(), pay.clone(), admin.clone()], vec![]);

    let (outcome, bodies) = h
        .sync(vec![
            Expect::status_patch(&org),
            Expect::status_patch(&pay),
            Expect::status_patch(&admin),
        ])
        .await;

    assert_eq!(outcome, Outcome::Applied);
    assert_eq!(
        h.rows().await,
        vec![
            (
                "Enrollment".into(),
                "prod-admin".into(),
                Some(SOURCE.into())
            ),
            ("Organization".into(), "acme".into(), Some(SOURCE.into())),
            ("Permit".into(), "pay".into(), Some(SOURCE.into())),
        ]
    );
    for body in &bodies {
        assert_eq!(body["apiVersion"], "accord.dev/v1alpha1");
        assert_eq!(condition(body, "Ready")["status"], "True");
        assert_eq!(condition(body, "Ready")["reason"], "Applied");
        assert_eq!(condition(body, "Synced")["status"], "True");
        assert_eq!(condition(body, "Synced")["reason"], "Accepted");
    }
    assert_eq!(
        bodies[0]["status"]["observedGeneration"], 3,
        "the org's generation"
    );
    assert!(bodies[0]["status"]["lastSyncedAt"].is_string());
}

#[tokio::test]
async fn an_unchanged_status_is_not_patched_again() {
    let mut h = Harness::new(true).await;
    let objects: Vec<Value> = (0..3)
        .map(|i| permit_object(&format!("p{i}"), "svc:act"))
        .collect();
    // The watch echoes the written statuses back into the cache.
    let echoed = h.synced(&objects).await;
    h.list(&echoed, vec![]);
    let (outcome, none) = h.sync(vec![]).await;
    assert_eq!(outcome, Outcome::Unchanged);
    assert!(none.is_empty());

    // Even before the echo arrives, what accord wrote is not written again.
    h.list(&objects, vec![]);
    let (_, none) = h.sync(vec![]).await;
    assert!(none.is_empty());
}

#[tokio::test]
async fn an_invalid_object_is_marked_and_does_not_stop_the_others() {
    let mut h = Harness::new(true).await;
    let good = permit_object("good", "svc:act");
    // Both subjects: the schema's oneOf would catch it in a real API server;
    // accord must catch it too.
    let both = object(
        "Enrollment",
        "team-a",
        "both",
        1,
        json!({"role": "svc:admin", "userId": "u-1", "contactId": "a@b.com"}),
    );
    // The same permit id twice: no schema can see that.
    let mut twin = permit_object("twin", "svc:other");
    twin["spec"]["id"] = json!("good");
    twin["metadata"]["creationTimestamp"] = json!("2026-11-02T10:00:00Z");
    h.list(&[good.clone(), both.clone(), twin.clone()], vec![]);

    let (outcome, bodies) = h
        .sync(vec![
            Expect::status_patch(&good),
            Expect::status_patch(&twin),
            Expect::event("team-a"),
            Expect::status_patch(&both),
            Expect::event("team-a"),
        ])
        .await;

    assert_eq!(outcome, Outcome::Applied);
    assert_eq!(
        h.rows().await,
        vec![("Permit".into(), "good".into(), Some(SOURCE.into()))]
    );
    assert_eq!(condition(&bodies[0], "Ready")["status"], "True");
    let twin_ready = condition(&bodies[1], "Ready");
    assert_eq!(twin_ready["status"], "False");
    assert_eq!(twin_ready["reason"], "Invalid");
    let twin_synced = condition(&bodies[1], "Synced");
    assert_eq!(twin_synced["status"], "False");
    assert_eq!(twin_synced["reason"], "Invalid");
    assert!(
        twin_synced["message"]
            .as_str()
            .unwrap_or_default()
            .contains("team-a/Permit/good"),
        "names the object that has the id: {twin_synced}"
    );
    assert_ne!(
        twin_ready["message"], twin_synced["message"],
        "Ready says what the database holds"
    );
    assert_eq!(bodies[2]["type"], "Warning");
    assert_eq!(bodies[2]["reason"], "Invalid");
    assert_eq!(bodies[2]["regarding"]["name"], "twin");
    assert_eq!(condition(&bodies[3], "Ready")["reason"], "Invalid");
    let both_synced = condition(&bodies[3], "Synced");
    assert_eq!(both_synced["reason"], "Invalid");
    assert!(both_synced["message"]
        .as_str()
        .unwrap_or_default()
        .contains("not both"));
    assert_eq!(bodies[4]["regarding"]["name"], "both");
}

#[tokio::test]
async fn an_edit_accord_rejects_keeps_the_version_applied_before() {
    let mut h = Harness::new(true).await;
    let admin = object(
        "Enrollment",
        "team-a",
        "prod-admin",
        1,
        json!({"role": "svc:admin", "userId": "u-1"}),
    );
    let applied = h.synced(std::slice::from_ref(&admin)).await.remove(0);

    // Generation 2 names both subjects: refused, and the grant must not vanish.
    let mut broken = applied.clone();
    broken["metadata"]["generation"] = json!(2);
    broken["spec"]["contactId"] = json!("someone@example.com");
    h.list(std::slice::from_ref(&broken), vec![]);
    let (outcome, bodies) = h
        .sync(vec![Expect::status_patch(&broken), Expect::event("team-a")])
        .await;

    assert_ne!(outcome, Outcome::Failed);
    assert_eq!(
        h.rows().await,
        vec![(
            "Enrollment".into(),
            "prod-admin".into(),
            Some(SOURCE.into())
        )],
        "the previous version stays"
    );
    let ready = condition(&bodies[0], "Ready");
    assert_eq!(ready["reason"], "Invalid");
    assert!(
        ready["message"]
            .as_str()
            .unwrap_or_default()
            .contains("version applied before stays"),
        "{ready}"
    );
}

#[tokio::test]
async fn a_status_changed_by_someone_else_since_is_written_again() {
    let mut h = Harness::new(true).await;
    let pay = permit_object("pay", "svc:act");
    let ours = h.synced(std::slice::from_ref(&pay)).await.remove(0);

    // Another replica (leading for a while) wrote a different status since.
    let mut theirs = with_status(&ours, &ours["status"]);
    theirs["status"]["conditions"][0]["status"] = json!("False");
    theirs["status"]["conditions"][0]["reason"] = json!("Conflict");
    h.list(std::slice::from_ref(&theirs), vec![]);
    let (_, bodies) = h.sync(vec![Expect::status_patch(&theirs)]).await;

    assert_eq!(condition(&bodies[0], "Ready")["reason"], "Applied");
}

#[tokio::test]
async fn a_reconcile_request_is_answered_with_its_value_in_the_status_once() {
    let mut h = Harness::new(true).await;
    let pay = permit_object("pay", "svc:act");
    let mut echoed = h.synced(std::slice::from_ref(&pay)).await.remove(0);

    // `kubectl annotate`: metadata only, the generation stays.
    echoed["metadata"]["annotations"] = json!({"accord.dev/reconcile-requested-at": "1767225600"});
    echoed["metadata"]["resourceVersion"] = json!("200");
    h.list(std::slice::from_ref(&echoed), vec![]);
    let (_, bodies) = h.sync(vec![Expect::status_patch(&echoed)]).await;

    assert_eq!(bodies[0]["status"]["lastHandledReconcileAt"], "1767225600");
    assert_eq!(
        condition(&bodies[0], "Ready")["status"],
        "True",
        "the rest of the status stands"
    );
    // Handled once: the next sync has nothing to write.
    let answered = with_status(&echoed, &bodies[0]["status"]);
    h.list(std::slice::from_ref(&answered), vec![]);
    let (_, none) = h.sync(vec![]).await;
    assert!(none.is_empty());
}

/// The series of the revision metrics: name and labels, without values.
fn revision_series(metrics: &str) -> Vec<String> {
    metrics
        .lines()
        .filter(|l| l.starts_with("accord_source_revision"))
        .filter_map(|l| l.rsplit_once(' ').map(|(series, _)| series.to_owned()))
        .collect()
}

#[tokio::test]
async fn the_revision_metric_keeps_one_series_while_resource_versions_pass() {
    let mut h = Harness::new(true).await;
    let mut pay = permit_object("pay", "svc:act");
    let mut seen = Vec::new();
    for round in 1..=4 {
        let version = 100 * round;
        pay["metadata"]["generation"] = json!(round);
        pay["metadata"]["resourceVersion"] = json!(version.to_string());
        pay["spec"]["slugs"] = json!([format!("caller-{round}")]);
        h.list(std::slice::from_ref(&pay), vec![]);
        let (outcome, _) = h.sync(vec![Expect::status_patch(&pay)]).await;
        assert_eq!(outcome, Outcome::Applied);

        let metrics = h.worker.state.metrics.encode();
        let line =
            format!(r#"accord_source_revision_resource_version{{source="{SOURCE}"}} {version}"#);
        assert!(
            metrics.lines().any(|l| l == line),
            "the resourceVersion is the value: {metrics}"
        );
        seen.push(revision_series(&metrics));
    }
    // What Prometheus stores per sync: the same single series each time.
    seen.dedup();
    assert_eq!(
        seen,
        [[format!(
            r#"accord_source_revision_resource_version{{source="{SOURCE}"}}"#
        )]]
    );
}

#[tokio::test]
async fn an_object_gone_from_the_list_has_its_row_pruned() {
    let mut h = Harness::new(true).await;
    let objects: Vec<Value> = (0..4)
        .map(|i| permit_object(&format!("p{i}"), "svc:act"))
        .collect();
    let echoed = h.synced(&objects).await;

    // p3 was deleted (while accord was down, or just now: the list is the truth).
    h.list(&echoed[..3], vec![]);
    let (outcome, none) = h.sync(vec![]).await;

    assert_eq!(outcome, Outcome::Applied);
    assert!(none.is_empty(), "the remaining objects' statuses stand");
    let ids: Vec<String> = h.rows().await.into_iter().map(|(_, id, _)| id).collect();
    assert_eq!(ids, ["p0", "p1", "p2"]);
}

#[tokio::test]
async fn the_app_comes_from_the_spec_else_the_namespace_annotation_else_the_default() {
    let mut h = Harness::new(true).await;
    let own = object(
        "Permit",
        "team-a",
        "own",
        1,
        json!({"permissionId": "svc:a", "slugs": ["x"], "app": "own.example.com"}),
    );
    let from_namespace = permit_object("inherited", "svc:b");
    let default = object(
        "Permit",
        "team-b",
        "plain",
        1,
        json!({"permissionId": "svc:c", "roles": ["svc:r"]}),
    );
    let namespace = json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "team-a", "annotations": {"accord.dev/app": "team-a.example.com"}},
    });
    h.list(
        &[own.clone(), from_namespace.clone(), default.clone()],
        vec![namespace],
    );

    let (_, bodies) = h
        .sync(vec![
            Expect::status_patch(&from_namespace),
            Expect::status_patch(&own),
            Expect::status_patch(&default),
        ])
        .await;

    let live = h.store.load(None).await.expect("load");
    let mut apps: Vec<(String, String)> = live
        .rows
        .keys()
        .map(|k| (k.id.to_string(), k.app.to_string()))
        .collect();
    apps.sort();
    assert_eq!(
        apps,
        [
            ("inherited".into(), "team-a.example.com".into()),
            ("own".into(), "own.example.com".into()),
            ("plain".into(), "unnamed".into()),
        ]
    );
    // The status says it too, for the printer columns: the spec may not.
    let shown: Vec<(&Value, &Value)> = bodies
        .iter()
        .map(|b| (&b["status"]["app"], &b["status"]["id"]))
        .collect();
    assert_eq!(
        shown,
        [
            (&json!("team-a.example.com"), &json!("inherited")),
            (&json!("own.example.com"), &json!("own")),
            (&json!("unnamed"), &json!("plain")),
        ]
    );
}

#[tokio::test]
async fn a_conflict_with_a_git_source_is_reported_on_both_sides() {
    let mut h = Harness::new(true).await;
    // A Git source already owns the permit `pay`.
    let git_desired =
        desired([declared(permit("pay").slugs(["order-service"]).build()).at("perms/pay.yaml", 4)]);
    let live = h.store.load(Some("git")).await.expect("load");
    let git_plan = plan::plan(&git_desired, &live, "git", PlanOptions::default());
    h.store
        .apply(
            locked(h.store.as_ref(), "git").await,
            ApplyRequest::new(
                "git",
                "c0ffee",
                "dev@example.com",
                DriftPolicy::Correct,
                &git_plan,
            ),
        )
        .await
        .expect("git applies");

    let pay = permit_object("pay", "payment-svc:process");
    h.list(std::slice::from_ref(&pay), vec![]);
    let (_, bodies) = h
        .sync(vec![Expect::status_patch(&pay), Expect::event("team-a")])
        .await;

    assert_eq!(condition(&bodies[0], "Ready")["status"], "False");
    let synced = condition(&bodies[0], "Synced");
    assert_eq!(synced["status"], "False");
    assert_eq!(synced["reason"], "Conflict");
    let message = synced["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("`git`") && message.contains("perms/pay.yaml"),
        "names the other source and its file: {message}"
    );
    assert_eq!(bodies[1]["reason"], "Conflict");
    assert_eq!(
        h.rows().await,
        vec![("Permit".into(), "pay".into(), Some("git".into()))]
    );

    // The Git side now sees it too, naming the Kubernetes object, and holds the row.
    let live = h.store.load(Some("git")).await.expect("load");
    let git_again = plan::plan(&git_desired, &live, "git", PlanOptions::default());
    assert_eq!(git_again.changes.len(), 1);
    assert_eq!(git_again.changes[0].action, Action::Conflict);
    assert!(
        git_again.changes[0]
            .note
            .contains("`kubernetes` in team-a/Permit/pay"),
        "{}",
        git_again.changes[0].note
    );
}

#[tokio::test]
async fn a_hand_edit_put_back_is_an_event_and_leaves_the_status_alone() {
    let mut h = Harness::new(true).await;
    let pay = permit_object("pay", "payment-svc:process");
    let echoed = h.synced(std::slice::from_ref(&pay)).await;
    h.list(&echoed, vec![]);
    let AnyStore::Sqlite(sqlite) = h.store.as_ref() else {
        panic!("SQLite harness");
    };
    sqlx::query("UPDATE permits SET permission_id = 'payment-svc:refund' WHERE id = 'pay'")
        .execute(sqlite.pool())
        .await
        .expect("hand edit");

    let (outcome, bodies) = h.sync(vec![Expect::event("team-a")]).await;

    assert_eq!(outcome, Outcome::Applied);
    assert_eq!(bodies[0]["type"], "Normal");
    assert_eq!(bodies[0]["reason"], "DriftCorrected");
    assert!(bodies[0]["note"]
        .as_str()
        .unwrap_or_default()
        .contains("edited by hand"));
    let live = h.store.load(None).await.expect("load");
    let row = live.rows.values().next().expect("row");
    assert_eq!(
        row.object().expect("read").to_json()["permissionId"],
        "payment-svc:process",
        "put back"
    );
}

#[tokio::test]
async fn a_replica_that_does_not_lead_writes_nothing() {
    let mut h = Harness::new(false).await;
    h.list(&[permit_object("pay", "svc:act")], vec![]);

    let (outcome, requests) = h.sync(vec![]).await;

    assert_eq!(outcome, Outcome::Busy);
    assert!(requests.is_empty(), "no status patches, no events");
    assert!(h.rows().await.is_empty(), "no database writes");
    let live = h.store.load(Some(SOURCE)).await.expect("load");
    assert!(live.ledger.is_empty());
}

#[tokio::test]
async fn a_database_failure_is_written_on_the_pending_objects() {
    let mut h = Harness::new(true).await;
    let pay = permit_object("pay", "svc:act");
    h.list(std::slice::from_ref(&pay), vec![]);
    // Every write to permits fails, as a broken database would.
    sqlx_fail_permit_inserts(&h.store).await;

    let (outcome, bodies) = h
        .sync(vec![Expect::status_patch(&pay), Expect::event("team-a")])
        .await;

    assert_eq!(outcome, Outcome::Failed);
    let ready = condition(&bodies[0], "Ready");
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "DatabaseError");
    let synced = condition(&bodies[0], "Synced");
    assert_eq!(
        (&synced["status"], &synced["reason"]),
        (&json!("True"), &json!("Accepted")),
        "the object is fine; the database is not"
    );
    assert_eq!(bodies[1]["reason"], "DatabaseError");
    assert!(h.rows().await.is_empty());
}

#[tokio::test]
async fn a_suspended_organization_is_shown_as_suspended_not_as_a_failure() {
    let mut h = Harness::new(true).await;
    let org = object(
        "Organization",
        "team-a",
        "acme",
        1,
        json!({"name": "Acme", "gitops": false}),
    );
    h.list(std::slice::from_ref(&org), vec![]);

    // A status patch and no Warning Event: the verifier fails on any other request.
    let (outcome, bodies) = h.sync(vec![Expect::status_patch(&org)]).await;

    assert_ne!(outcome, Outcome::Failed);
    let ready = condition(&bodies[0], "Ready");
    assert_eq!(
        (&ready["status"], &ready["reason"]),
        (&json!("Unknown"), &json!("Suspended")),
        "{ready}"
    );
    let synced = condition(&bodies[0], "Synced");
    assert_eq!(
        (&synced["status"], &synced["reason"]),
        (&json!("True"), &json!("Suspended")),
        "{synced}"
    );
    assert!(
        synced["message"]
            .as_str()
            .unwrap_or_default()
            .contains("gitops: false"),
        "says where the suspension comes from: {synced}"
    );
    assert!(h.rows().await.is_empty(), "nothing written");
}

async fn sqlx_fail_permit_inserts(store: &AnyStore) {
    let AnyStore::Sqlite(sqlite) = store else {
        panic!("this test injects the failure into SQLite");
    };
    sqlx::query(
        "CREATE TRIGGER fail_permits BEFORE INSERT ON permits BEGIN SELECT RAISE(ABORT, 'disk on fire'); END",
    )
    .execute(sqlite.pool())
    .await
    .expect("trigger");
}
