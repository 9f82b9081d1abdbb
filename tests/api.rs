//! The HTTP API in-process: `router(state)` driven with `oneshot`, over a
//! real store and hand-made sources whose "workers" answer sync requests.
//! The OpenAPI document is checked three ways: a real validator
//! (openapi-spec-validator) accepts it, every operation it lists is served,
//! and every answer has a status the document lists for it and a body that
//! the schema it declares accepts (with unknown fields refused), so the
//! document cannot drift from the handlers.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use accord::config::{SourceConfig, SourceKind};
use accord::controller::state::{
    OpenItem, RefusedDeletions, SourceHandle, SourceStatus, State, SyncRequest, SyncState,
};
use accord::controller::worker::{AnySource, Outcome, Worker};
use accord::policy::DriftPolicy;
use accord::source::git::GitConfig;
use accord::source::{Commit, GitSource};
use accord::store::AnyStore;
use axum::body::Body;
use axum::Router;
use common::builders::{org, permit};
use common::controller::{documents, grant, Repo};
use common::db::{Backend, TestDb};
use http::{HeaderMap, Method, Request, StatusCode};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tower::ServiceExt;

const TOKEN: &str = "t0ken-for-tests";
const HOOK_SECRET: &str = "hook-s3cret";
/// A source that declares `acme` and answers syncs.
const LOCAL: &str = "local";
/// A source that takes webhooks.
const HOOKED: &str = "hooked";

/// A `State` over a real database that `accord apply` filled (an
/// organization, a permit, their audit entries), with two sources.
struct Api {
    _dir: tempfile::TempDir,
    _db: TestDb,
    state: Arc<State>,
    router: Router,
    /// Sync requests the sources' workers have answered.
    syncs: Arc<AtomicUsize>,
}

/// One answer: status, headers and body.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{e}: not JSON: {}",
                String::from_utf8_lossy(&self.body)
                    .chars()
                    .take(500)
                    .collect::<String>()
            )
        })
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }
}

impl Api {
    async fn new(backend: Backend) -> Api {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = TestDb::new(backend).await;
        let folder = dir.path().join("config");
        std::fs::create_dir(&folder).expect("mkdir");
        let apply = |permits: &[&str], code: i32| {
            let mut objects = vec![org("acme").name("Acme").build()];
            objects.extend(permits.iter().map(|id| permit(id).build()));
            std::fs::write(folder.join("objects.yaml"), documents(&objects)).expect("write");
            let applied = Command::new(env!("CARGO_BIN_EXE_accord"))
                .args(["apply", "--source"])
                .arg(&folder)
                .args(["--source-name", LOCAL, "--database", &db.url])
                .args(["--actor", "tester@host"])
                .env_remove("ACCORD_DATABASE_URL")
                .output()
                .expect("run accord apply");
            assert_eq!(
                applied.status.code(),
                Some(code),
                "accord apply: {}",
                String::from_utf8_lossy(&applied.stderr)
            );
        };
        apply(&["p1", "p2", "p3", "p4"], 0);
        // Three of five rows deleted: the deletion guard refuses, and the
        // refused set waits for an approval.
        apply(&["p1"], 3);
        let store = Arc::new(AnyStore::connect(&db.url).await.expect("connect"));
        let syncs = Arc::new(AtomicUsize::new(0));
        let local = source(LOCAL, None, &syncs);
        let hooked = source(HOOKED, Some(HOOK_SECRET.into()), &syncs);
        // A status with every optional part filled, so the document's
        // description of each is checked against a real answer.
        local.update(|s| {
            let item = |note: &str| OpenItem {
                source: LOCAL.into(),
                kind: "Organization".into(),
                app: "unnamed".into(),
                id: "acme".into(),
                note: note.into(),
                diff: "-name: Acme\n+name: ACME\n".into(),
            };
            s.state = SyncState::OutOfSync;
            s.last_attempted_revision = Some("rev-2".into());
            s.last_applied_revision = Some("rev-1".into());
            let commit = |message: &str| Commit {
                author: "Jane Doe".into(),
                authored_at: chrono::Utc::now(),
                message: message.into(),
            };
            s.last_attempted_commit = Some(commit("Break it\n\nOn purpose."));
            s.last_applied_commit = Some(commit("Grant p1"));
            s.last_attempt_at = Some(chrono::Utc::now());
            s.last_success_at = Some(chrono::Utc::now());
            s.errors = vec!["objects.yaml:3:1: unknown field `nmae`".into()];
            s.drift = vec![item("edited by hand")];
            s.conflicts = vec![item("managed by another source")];
            s.deletion_refused = Some(RefusedDeletions {
                set: "set-1".into(),
                deletes: 2,
                earlier: 0,
                managed: 4,
                message: "2 of 4 rows".into(),
            });
        });
        hooked.update(|s| {
            s.state = SyncState::Synced;
            s.last_success_at = Some(chrono::Utc::now());
        });
        let state = Arc::new(State {
            api_token: Some(TOKEN.into()),
            ..State::new(vec![local, hooked], store)
        });
        Api {
            _dir: dir,
            _db: db,
            router: accord::server::router(state.clone()),
            state,
            syncs,
        }
    }

    async fn send(&self, request: Request<Body>) -> Answer {
        send(&self.router, request).await
    }

    async fn get(&self, uri: &str) -> Answer {
        get(&self.router, uri).await
    }

    /// A POST with the API token.
    async fn post(&self, uri: &str) -> Answer {
        self.send(
            request(Method::POST, uri)
                .header("authorization", format!("Bearer {TOKEN}"))
                .body(Body::empty())
                .expect("request"),
        )
        .await
    }

    /// The `seq` of the newest audit entry.
    async fn newest_seq(&self) -> i64 {
        let answer = self.get("/api/v1/audit-logs?limit=1").await;
        assert_eq!(answer.status, StatusCode::OK);
        answer.json()["entries"][0]["seq"]
            .as_i64()
            .expect("an audit entry")
    }
}

fn request(method: Method, uri: &str) -> http::request::Builder {
    Request::builder().method(method).uri(uri)
}

async fn send(router: &Router, request: Request<Body>) -> Answer {
    let response = router
        .clone()
        .oneshot(request)
        .await
        .expect("the router never fails");
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body")
        .to_vec();
    Answer {
        status,
        headers,
        body,
    }
}

async fn get(router: &Router, uri: &str) -> Answer {
    send(
        router,
        request(Method::GET, uri)
            .body(Body::empty())
            .expect("request"),
    )
    .await
}

/// A source whose worker answers every sync request with its status.
fn source(
    name: &str,
    webhook_secret: Option<String>,
    syncs: &Arc<AtomicUsize>,
) -> Arc<SourceHandle> {
    let (trigger, mut requests) = mpsc::channel::<SyncRequest>(16);
    let handle = Arc::new(SourceHandle {
        name: name.into(),
        status: RwLock::new(SourceStatus::new(name, "directory", format!("/srv/{name}"))),
        trigger,
        webhook_secret,
        watcher: None,
    });
    let (worker, syncs) = (handle.clone(), syncs.clone());
    tokio::spawn(async move {
        while let Some(request) = requests.recv().await {
            worker.update(|s| s.last_attempt_at = Some(chrono::Utc::now()));
            syncs.fetch_add(1, Ordering::SeqCst);
            if let Some(done) = request.done {
                let _ = done.send(worker.status());
            }
        }
    });
    handle
}

// ---- the document ---------------------------------------------------------------

fn document() -> Value {
    serde_json::to_value(accord::server::openapi()).expect("the document as JSON")
}

/// `schema` (from the document) as a JSON Schema whose `$ref`s resolve in
/// the document's components, with every object that lists its properties
/// closed to others: a field the handler sends but the document does not
/// describe fails.
fn validator(doc: &Value, schema: &Value) -> jsonschema::Validator {
    fn close(value: &mut Value) {
        match value {
            Value::Object(map) => {
                if map.get("properties").is_some_and(Value::is_object)
                    && !map.contains_key("additionalProperties")
                {
                    map.insert("additionalProperties".into(), Value::Bool(false));
                }
                map.values_mut().for_each(close);
            }
            Value::Array(items) => items.iter_mut().for_each(close),
            _ => {}
        }
    }
    let mut root = schema.clone();
    let mut components = doc["components"].clone();
    close(&mut root);
    close(&mut components);
    root["components"] = components;
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&root)
        .unwrap_or_else(|e| panic!("{e}: {schema}"))
}

/// Asserts `answer` is one the document lists for `method template`: a
/// documented status, a documented media type, and (for JSON) a body the
/// declared schema accepts.
fn assert_documented(doc: &Value, method: &Method, template: &str, answer: &Answer) {
    let what = format!("{method} {template} → {}", answer.status);
    let operation = &doc["paths"][template][method.as_str().to_lowercase()];
    assert!(operation.is_object(), "{what}: not in the document");
    let response = &operation["responses"][answer.status.as_str()];
    assert!(
        response.is_object(),
        "{what}: status not documented; documented: {:?}",
        operation["responses"]
            .as_object()
            .map(|r| r.keys().collect::<Vec<_>>())
    );
    let media_type = |v: &str| v.split(';').next().unwrap_or_default().trim().to_owned();
    let sent = media_type(answer.header("content-type"));
    let content = response["content"].as_object().expect("content");
    let (_, declared) = content
        .iter()
        .find(|(key, _)| media_type(key) == sent)
        .unwrap_or_else(|| {
            panic!(
                "{what}: sent {sent:?}, documented {:?}",
                content.keys().collect::<Vec<_>>()
            )
        });
    let schema = &declared["schema"];
    if sent.ends_with("json") {
        let body = answer.json();
        let validator = validator(doc, schema);
        let errors: Vec<String> = validator
            .iter_errors(&body)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{what}: the body does not match {schema}:\n{}\nbody: {body:#}",
            errors.join("\n")
        );
    } else {
        assert_eq!(schema["type"], "string", "{what}: {schema}");
        let text = std::str::from_utf8(&answer.body).expect("UTF-8 text");
        assert!(!text.is_empty(), "{what}: empty body");
    }
}

#[test]
fn openapi_spec_validator_accepts_the_document_accord_openapi_prints() {
    let printed = Command::new(env!("CARGO_BIN_EXE_accord"))
        .arg("openapi")
        .output()
        .expect("run accord openapi");
    assert!(printed.status.success(), "{printed:?}");
    let printed_doc: Value = serde_json::from_slice(&printed.stdout).expect("JSON");
    assert_eq!(printed_doc, document());
    assert_eq!(printed_doc["openapi"], "3.1.0");

    let validator = std::env::var("ACCORD_TEST_OPENAPI_VALIDATOR").unwrap_or_else(|_| {
        panic!(
            "ACCORD_TEST_OPENAPI_VALIDATOR is not set. Run the suite with scripts/test, which \
             installs openapi-spec-validator from PyPI, or point it at an openapi-spec-validator."
        )
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, &printed.stdout).expect("write document");
    let checked = Command::new(&validator)
        .args(["--schema", "3.1"])
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {validator}: {e}"));
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    assert!(checked.status.success(), "{output}");
    assert!(output.contains("OK"), "{output}");
}

#[test]
fn the_document_describes_the_spec_endpoints_errors_and_bearer_security() {
    let doc = document();
    for (path, method) in [
        ("/health", "get"),
        ("/ready", "get"),
        ("/api/v1/audit-logs", "get"),
        ("/api/v1/audit-logs/{id}", "get"),
        ("/api/v1/openapi.json", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/api/v1/audit", "get"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{method} {path}");
    }
    let problem = &doc["components"]["schemas"]["Problem"];
    for field in ["type", "title", "status", "detail"] {
        assert!(problem["properties"][field].is_object(), "{problem}");
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"],
        json!({"type": "http", "scheme": "bearer", "description": "The controller's API token (`apiTokenFile`); needed only when one is set"})
    );
    let by_id = &doc["paths"]["/api/v1/audit-logs/{id}"]["get"];
    assert_eq!(by_id["parameters"][0]["name"], "id");
    assert_eq!(by_id["parameters"][0]["in"], "path");
    assert_eq!(
        by_id["responses"]["404"]["content"]["application/problem+json"]["schema"]["$ref"],
        "#/components/schemas/Problem"
    );
    // Each POST but the webhook's declares the bearer token; the webhook
    // is checked against its source's secret instead.
    for (path, item) in doc["paths"].as_object().expect("paths") {
        let Some(post) = item.get("post") else {
            continue;
        };
        let security = post.get("security");
        if path == "/hooks/{source}" {
            assert!(security.is_none(), "{path}: {security:?}");
        } else {
            assert_eq!(security, Some(&json!([{"bearer": []}])), "POST {path}");
        }
    }
}

// ---- the contract -------------------------------------------------------------

/// A request and the status it must get: method, route template, path,
/// body, `X-Hub-Signature-256` (for a webhook; other POSTs carry the
/// token), status.
type Case<'a> = (
    Method,
    &'a str,
    String,
    Option<&'a [u8]>,
    Option<&'a str>,
    u16,
);

both_backends!(
    every_operation_is_served_and_answers_as_the_document_says,
    |backend| async move {
        let api = Api::new(backend).await;
        let doc = document();
        let seq = api.newest_seq().await;
        let hook_body = br#"{"ref":"refs/heads/main"}"#.to_vec();
        let signature = accord::server::hooks::github_signature(HOOK_SECRET.as_bytes(), &hook_body);
        let audit_entry = format!("/api/v1/audit-logs/{seq}");
        #[rustfmt::skip]
        let cases: Vec<Case> = vec![
            (Method::GET, "/", "/".into(), None, None, 200),
            (Method::GET, "/health", "/health".into(), None, None, 200),
            (Method::GET, "/healthz", "/healthz".into(), None, None, 200),
            (Method::GET, "/ready", "/ready".into(), None, None, 200),
            (Method::GET, "/readyz", "/readyz".into(), None, None, 200),
            (Method::GET, "/metrics", "/metrics".into(), None, None, 200),
            (Method::GET, "/api/v1/openapi.json", "/api/v1/openapi.json".into(), None, None, 200),
            (Method::GET, "/api/v1/status", "/api/v1/status".into(), None, None, 200),
            (Method::GET, "/api/v1/drift", "/api/v1/drift".into(), None, None, 200),
            (Method::GET, "/api/v1/audit-logs", "/api/v1/audit-logs?source=local&kind=permit".into(), None, None, 200),
            (Method::GET, "/api/v1/audit-logs", "/api/v1/audit-logs?kind=Nonsense".into(), None, None, 400),
            (Method::GET, "/api/v1/audit-logs", "/api/v1/audit-logs?limit=many".into(), None, None, 400),
            (Method::GET, "/api/v1/audit", "/api/v1/audit?since=2020-01-01T00:00:00Z".into(), None, None, 200),
            (Method::GET, "/api/v1/audit-logs/{id}", audit_entry.clone(), None, None, 200),
            (Method::GET, "/api/v1/audit-logs/{id}", format!("/api/v1/audit-logs/{}", seq + 1000), None, None, 404),
            (Method::GET, "/api/v1/audit-logs/{id}", "/api/v1/audit-logs/first".into(), None, None, 400),
            (Method::GET, "/api/v1/organizations/{slug}/gitops/status", "/api/v1/organizations/acme/gitops/status".into(), None, None, 200),
            (Method::GET, "/api/v1/organizations/{slug}/gitops/status", "/api/v1/organizations/nope/gitops/status".into(), None, None, 404),
            (Method::GET, "/api/v1/organizations/{slug}/gitops/drift", "/api/v1/organizations/acme/gitops/drift?app=unnamed".into(), None, None, 200),
            (Method::GET, "/api/v1/organizations/{slug}/gitops/drift", "/api/v1/organizations/acme/gitops/drift?app=other".into(), None, None, 404),
            (Method::POST, "/api/v1/sources/{name}/sync", "/api/v1/sources/local/sync".into(), None, None, 200),
            (Method::POST, "/api/v1/sources/{name}/sync", "/api/v1/sources/nope/sync".into(), None, None, 404),
            (Method::POST, "/api/v1/sources/{name}/approve-deletions", "/api/v1/sources/hooked/approve-deletions".into(), None, None, 409),
            (Method::POST, "/api/v1/sources/{name}/approve-deletions", "/api/v1/sources/local/approve-deletions".into(), Some(b"{\"set\": \"not-the-refused-set\"}"), None, 409),
            (Method::POST, "/api/v1/sources/{name}/approve-deletions", "/api/v1/sources/local/approve-deletions".into(), Some(b"{\"sett\": 1}"), None, 400),
            (Method::POST, "/api/v1/sources/{name}/approve-deletions", "/api/v1/sources/local/approve-deletions".into(), Some(b"{\"approvedBy\": \"ops@example.com\"}"), None, 200),
            (Method::POST, "/api/v1/organizations/{slug}/gitops/disable", "/api/v1/organizations/acme/gitops/disable".into(), None, None, 200),
            (Method::POST, "/api/v1/organizations/{slug}/gitops/enable", "/api/v1/organizations/acme/gitops/enable".into(), None, None, 200),
            (Method::POST, "/api/v1/organizations/{slug}/gitops/sync", "/api/v1/organizations/acme/gitops/sync".into(), None, None, 200),
            (Method::POST, "/api/v1/organizations/{slug}/gitops/sync", "/api/v1/organizations/nope/gitops/sync".into(), None, None, 404),
            (Method::GET, "/api/v1/access/can", "/api/v1/access/can?user=u1&contact=u1@example.com&permission=svc:read".into(), None, None, 200),
            (Method::GET, "/api/v1/access/can", "/api/v1/access/can?slug=s1&permission=svc:read&app=unnamed".into(), None, None, 200),
            (Method::GET, "/api/v1/access/can", "/api/v1/access/can?permission=svc:read".into(), None, None, 400),
            (Method::GET, "/api/v1/access/can", "/api/v1/access/can?user=u1".into(), None, None, 400),
            (Method::GET, "/api/v1/access/can", "/api/v1/access/can?contact=*@example.com&permission=svc:read".into(), None, None, 400),
            (Method::GET, "/api/v1/access/who-can", "/api/v1/access/who-can?permission=svc:read".into(), None, None, 200),
            (Method::GET, "/api/v1/access/who-can", "/api/v1/access/who-can".into(), None, None, 400),
            (Method::GET, "/api/v1/access/subject", "/api/v1/access/subject?user=u1".into(), None, None, 200),
            (Method::GET, "/api/v1/access/subject", "/api/v1/access/subject?app=unnamed".into(), None, None, 400),
            (Method::POST, "/hooks/{source}", "/hooks/hooked".into(), Some(&hook_body), Some(&signature), 202),
            (Method::POST, "/hooks/{source}", "/hooks/hooked".into(), Some(&hook_body), Some("sha256=00"), 401),
            (Method::POST, "/hooks/{source}", "/hooks/local".into(), Some(&hook_body), Some(&signature), 404),
        ];
        let mut served = BTreeSet::new();
        for (method, template, path, body, signature, expected) in cases {
            let mut builder = request(method.clone(), &path);
            if method == Method::POST && signature.is_none() {
                builder = builder.header("authorization", format!("Bearer {TOKEN}"));
            }
            if let Some(signature) = signature {
                builder = builder.header("x-hub-signature-256", signature);
            }
            let body = body.map_or_else(Body::empty, |b| Body::from(b.to_vec()));
            let answer = api.send(builder.body(body).expect("request")).await;
            assert_eq!(
                answer.status.as_u16(),
                expected,
                "{method} {path}: {}",
                String::from_utf8_lossy(&answer.body)
            );
            assert_documented(&doc, &method, template, &answer);
            // Answered by the route's handler: the router's own answers
            // are 405 and the fallback's 404.
            let fallback = answer.status == StatusCode::METHOD_NOT_ALLOWED
                || (answer.status == StatusCode::NOT_FOUND
                    && answer.json()["detail"] == "no such endpoint");
            if !fallback {
                served.insert(format!("{} {template}", method.as_str().to_lowercase()));
            }
        }
        let documented: BTreeSet<String> = doc["paths"]
            .as_object()
            .expect("paths")
            .iter()
            .flat_map(|(path, item)| {
                item.as_object()
                    .expect("path item")
                    .keys()
                    .map(move |method| format!("{method} {path}"))
            })
            .collect();
        assert_eq!(served, documented, "every operation reached its handler");

        // The lookup by seq finds exactly the entry the list shows.
        let listed = api.get("/api/v1/audit-logs?limit=1").await.json()["entries"][0].clone();
        assert_eq!(api.get(&audit_entry).await.json(), listed);
        assert_eq!(listed["seq"], seq);
    }
);

// ---- problems -----------------------------------------------------------------

/// Asserts an RFC 7807 problem document with `status`.
fn assert_problem(what: &str, answer: &Answer, status: u16) -> Value {
    assert_eq!(
        answer.status.as_u16(),
        status,
        "{what}: {}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(
        answer.header("content-type"),
        "application/problem+json",
        "{what}"
    );
    let body = answer.json();
    assert_eq!(body["status"], status, "{what}: {body}");
    assert_eq!(body["type"], "about:blank", "{what}: {body}");
    for field in ["title", "detail"] {
        assert!(
            body[field].as_str().is_some_and(|s| !s.is_empty()),
            "{what}: `{field}` missing from {body}"
        );
    }
    let doc = document();
    let problem = validator(&doc, &json!({"$ref": "#/components/schemas/Problem"}));
    assert!(problem.is_valid(&body), "{what}: {body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_before_any_handler_runs_are_problem_documents_too() {
    let api = Api::new(Backend::Sqlite).await;

    let unknown = api.get("/api/v1/nothing-here").await;
    assert_problem("an unknown path", &unknown, 404);

    for (method, path) in [
        (Method::DELETE, "/api/v1/status"),
        (Method::GET, "/api/v1/sources/local/sync"),
        (Method::PUT, "/api/v1/audit-logs/1"),
    ] {
        let answer = api
            .send(
                request(method.clone(), path)
                    .body(Body::empty())
                    .expect("request"),
            )
            .await;
        assert_problem(&format!("{method} {path}"), &answer, 405);
    }

    // The detail names what is wrong: the parameter, or the value.
    for (query, named) in [
        ("limit=many", "limit"),
        ("since=yesterday", "since"),
        ("kind=Nonsense", "Nonsense"),
    ] {
        let answer = api.get(&format!("/api/v1/audit-logs?{query}")).await;
        let body = assert_problem(query, &answer, 400);
        assert!(
            body["detail"].as_str().is_some_and(|d| d.contains(named)),
            "{query}: {body}"
        );
    }

    let no_token = api
        .send(
            request(Method::POST, "/api/v1/sources/local/sync")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    assert_problem("no token", &no_token, 401);
    assert_eq!(no_token.header("www-authenticate"), "Bearer");

    // Webhook bodies stop at 1 MiB, before the signature is even looked at.
    let too_big = api
        .send(
            request(Method::POST, "/hooks/hooked")
                .header("content-type", "application/json")
                .body(Body::from(vec![b' '; 1024 * 1024 + 1]))
                .expect("request"),
        )
        .await;
    assert_problem("a webhook body over 1 MiB", &too_big, 413);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_post_but_the_webhook_needs_the_token_and_a_refused_one_does_nothing() {
    let api = Api::new(Backend::Sqlite).await;
    let doc = document();
    let posts: Vec<String> = doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .filter(|(path, item)| item.get("post").is_some() && *path != "/hooks/{source}")
        .map(|(path, _)| path.replace("{name}", LOCAL).replace("{slug}", "acme"))
        .collect();
    assert_eq!(posts.len(), 5, "{posts:?}");
    for path in &posts {
        for authorization in [
            None,
            Some("Bearer not-the-token".to_owned()),
            Some(format!("Bearer {}", &TOKEN[..4])),
            Some(format!("Basic {TOKEN}")),
            Some(TOKEN.to_owned()),
        ] {
            let mut builder = request(Method::POST, path);
            if let Some(value) = &authorization {
                builder = builder.header("authorization", value);
            }
            let answer = api
                .send(builder.body(Body::empty()).expect("request"))
                .await;
            let body = assert_problem(&format!("POST {path} with {authorization:?}"), &answer, 401);
            assert_eq!(answer.header("www-authenticate"), "Bearer", "POST {path}");
            assert!(
                body["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("Bearer")),
                "{body}"
            );
        }
    }
    // Nothing was switched off, and no sync was asked for: the one sync
    // asked for now, queued behind anything the refused calls had queued,
    // is the first the workers answer.
    let org = api
        .get("/api/v1/organizations/acme/gitops/status")
        .await
        .json();
    assert_eq!(org["apps"][0]["gitops"], true, "{org}");
    assert_eq!(
        api.post("/api/v1/sources/local/sync").await.status,
        StatusCode::OK
    );
    assert_eq!(api.syncs.load(Ordering::SeqCst), 1);
    // The token's owner gets through.
    let disabled = api.post("/api/v1/organizations/acme/gitops/disable").await;
    assert_eq!(disabled.status, StatusCode::OK);
    assert_eq!(disabled.json()["state"], "Suspended");
}

// ---- request ids and metrics ---------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_id_is_kept_when_given_and_made_when_not() {
    let api = Api::new(Backend::Sqlite).await;
    let given = api
        .send(
            request(Method::GET, "/api/v1/status")
                .header("x-request-id", "req-from-client-7")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    assert_eq!(given.header("x-request-id"), "req-from-client-7");
    let mut made = BTreeSet::new();
    for path in ["/health", "/api/v1/nothing-here", "/api/v1/nothing-here"] {
        let answer = api.get(path).await;
        let id = answer.header("x-request-id").to_owned();
        assert_eq!(id.len(), 36, "a UUID for {path}: {id:?}");
        made.insert(id);
    }
    assert_eq!(made.len(), 3, "each request its own id: {made:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_metrics_are_labelled_by_route_template_and_sample_the_pool_at_scrape() {
    let api = Api::new(Backend::Sqlite).await;
    assert_eq!(
        api.post("/api/v1/sources/local/sync").await.status,
        StatusCode::OK
    );
    assert_eq!(
        api.post("/api/v1/sources/hooked/sync").await.status,
        StatusCode::OK
    );
    api.get("/api/v1/organizations/acme/gitops/status").await;
    api.get("/no/such/path/4711").await;
    api.send(
        request(Method::DELETE, "/api/v1/status")
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    api.send(
        request(
            Method::from_bytes(b"BREW").expect("method"),
            "/api/v1/status",
        )
        .body(Body::empty())
        .expect("request"),
    )
    .await;
    // The pool as it is at each scrape: sqlx hands a connection back to
    // the pool in a task of its own, so first wait until the last request's
    // connection is back; nothing else uses the database here.
    let pool = match &*api.state.store {
        AnyStore::Sqlite(s) => s.pool().clone(),
        AnyStore::Postgres(_) => unreachable!("a SQLite store"),
    };
    let returned = common::controller::eventually(std::time::Duration::from_secs(10), || async {
        pool.num_idle() == pool.size() as usize
    })
    .await;
    assert!(
        returned,
        "{} of {} connections idle",
        pool.num_idle(),
        pool.size()
    );
    let connections = |text: &str, state: &str| -> u32 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("accord_db_connections{{state=\"{state}\"}} ")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {state} connections in\n{text}"))
    };
    let scraped = api.get("/metrics").await;
    assert_eq!(
        scraped.header("content-type"),
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = String::from_utf8(scraped.body).expect("UTF-8");
    assert_eq!(connections(&text, "active"), 0, "{text}");
    assert_eq!(connections(&text, "idle"), pool.size(), "{text}");
    for line in [
        r#"accord_http_requests_total{route="/api/v1/sources/{name}/sync",method="POST",status="200"} 2"#,
        r#"accord_http_requests_total{route="/api/v1/organizations/{slug}/gitops/status",method="GET",status="200"} 1"#,
        r#"accord_http_requests_total{route="unmatched",method="GET",status="404"} 1"#,
        r#"accord_http_requests_total{route="/api/v1/status",method="DELETE",status="405"} 1"#,
        r#"accord_http_requests_total{route="/api/v1/status",method="other",status="405"} 1"#,
        r#"accord_http_request_duration_seconds_count{route="/api/v1/sources/{name}/sync"} 2"#,
        "# TYPE accord_http_requests_total counter",
        "# TYPE accord_http_request_duration_seconds histogram",
        "# TYPE accord_db_connections gauge",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "`{line}` missing from\n{text}"
        );
    }
    for raw in [
        r#"route="/api/v1/sources/local/sync""#,
        r#"route="/no/such/path/4711""#,
        "acme",
        "BREW",
    ] {
        assert!(!text.contains(raw), "`{raw}` is a label value in\n{text}");
    }
    let held = pool.acquire().await.expect("a connection");
    let text = String::from_utf8(api.get("/metrics").await.body).expect("UTF-8");
    assert_eq!(connections(&text, "active"), 1, "{text}");
    assert_eq!(connections(&text, "idle"), pool.size() - 1, "{text}");
    drop(held);

    // Prometheus asks for OpenMetrics and gets it.
    let openmetrics = api
        .send(
            request(Method::GET, "/metrics")
                .header(
                    "accept",
                    "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
                )
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    assert!(
        openmetrics
            .header("content-type")
            .starts_with("application/openmetrics-text"),
        "{:?}",
        openmetrics.headers
    );
    let text = String::from_utf8(openmetrics.body).expect("UTF-8");
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert!(
        text.lines()
            .any(|l| l == "# TYPE accord_http_requests counter"),
        "{text}"
    );
}

// ---- pages --------------------------------------------------------------------

/// The numbers a page marks with `data-<what>="…"`, in order.
fn marked(body: &str, what: &str) -> Vec<i64> {
    body.split(&format!("data-{what}=\""))
        .skip(1)
        .map(|rest| {
            rest[..rest.find('"').expect("a closing quote")]
                .parse()
                .expect("a number")
        })
        .collect()
}

/// The audit entries a page shows, by `seq`.
fn seqs(body: &str) -> Vec<i64> {
    marked(body, "seq")
}

/// Where a page's `rel="next"` link leads (without its fragment).
fn next_page(body: &str) -> Option<String> {
    let at = body.find("rel=\"next\"")?;
    let start = body[..at].rfind("href=\"")? + 6;
    let link = body[start..start + body[start..].find('"')?].replace("&amp;", "&");
    Some(link.split('#').next().unwrap_or_default().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_show_what_users_wrote_as_text_and_forbid_inline_script() {
    let api = Api::new(Backend::Sqlite).await;
    let hostile = "<script>alert(1)</script>\"><img src=x onerror=alert(2)>";
    let local = api.state.source(LOCAL).expect("local").clone();
    local.update(|s| {
        s.message = format!("commit: {hostile}");
        s.last_attempted_revision = Some(format!("{hostile}-rev"));
        s.errors = vec![format!("{hostile}.yaml:1:1: unknown field")];
        s.drift[0].id = hostile.into();
        s.drift[0].diff = format!("-id: a\n+id: {hostile}\n");
    });
    for (path, status) in [
        ("/", 200),
        ("/sources/local", 200),
        ("/sources/nope", 404),
        ("/sources/%3Cscript%3E", 404),
        ("/audit", 200),
        ("/organizations", 200),
        ("/organizations/acme", 200),
        ("/organizations/%3Cimg%3E", 404),
        ("/access", 200),
        ("/access?slug=s1&permission=svc:read", 200),
        ("/access?permission=svc:read", 200),
        ("/access?user=u1", 200),
        ("/access?contact=*@x.com&permission=svc:read", 400),
    ] {
        let answer = api.get(path).await;
        assert_eq!(answer.status.as_u16(), status, "{path}");
        assert!(
            answer.header("content-type").starts_with("text/html"),
            "{path}"
        );
        let csp = answer.header("content-security-policy");
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{path}: {csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert_eq!(answer.header("x-content-type-options"), "nosniff");
        let body = String::from_utf8_lossy(&answer.body);
        // No markup from a user survives: only the page's own script tag.
        assert_eq!(body.matches("<script").count(), 1, "{path}: {body}");
        assert!(!body.contains("<img"), "{path}: {body}");
        assert!(
            !body.contains("onerror=alert") || body.contains("onerror=alert(2)&gt;"),
            "{path}"
        );
        assert!(
            !body.contains(" style="),
            "{path}: inline styles are refused by the policy"
        );
        if path == "/" || path == "/sources/local" {
            assert!(
                body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
                "{path}: {body}"
            );
        }
    }
    let overview = String::from_utf8_lossy(&api.get("/").await.body).into_owned();
    assert!(overview.contains("data-state=\"OutOfSync\""), "{overview}");
    assert!(overview.contains("href=\"/sources/local\""), "{overview}");
    let page = String::from_utf8_lossy(&api.get("/sources/local").await.body).into_owned();
    assert!(page.contains("Approve these deletions"), "{page}");
    assert!(
        page.contains("<span class=\"add\">+id: &lt;script&gt;"),
        "{page}"
    );
    let org = String::from_utf8_lossy(&api.get("/organizations/acme").await.body).into_owned();
    assert!(
        org.contains("Suspend GitOps") && org.contains("data-confirm="),
        "{org}"
    );
    assert!(
        org.contains("/api/v1/organizations/acme/gitops/disable?app=unnamed"),
        "{org}"
    );
    let denied =
        String::from_utf8_lossy(&api.get("/access?slug=s1&permission=svc:read").await.body)
            .into_owned();
    assert!(
        denied.contains("✕ denied") && denied.contains("to roles <code>svc:reader</code>"),
        "{denied}"
    );
    for (asset, kind) in [
        ("/assets/accord.css", "text/css"),
        ("/assets/accord.js", "text/javascript"),
    ] {
        let answer = api.get(asset).await;
        assert_eq!(answer.status, StatusCode::OK, "{asset}");
        assert!(answer.header("content-type").starts_with(kind), "{asset}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_page_filters_by_its_url_and_pages_through_a_long_log_by_key() {
    let api = Api::new(Backend::Sqlite).await;
    // 10,000 more entries: one apply of 10,000 permits from another source.
    common::db::apply_bulk_permits(&api._db.url, 10_000);

    // Every entry of source `bulk`, page by page: no repeats, no gaps.
    let mut url = "/audit?source=bulk".to_owned();
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let answer = api.get(&url).await;
        assert_eq!(answer.status, StatusCode::OK, "{url}");
        let body = String::from_utf8_lossy(&answer.body).into_owned();
        seen.extend(seqs(&body));
        pages += 1;
        match next_page(&body) {
            Some(link) => {
                assert!(link.starts_with("/audit?source=bulk&before="), "{link}");
                url = link;
            }
            None => break,
        }
    }
    assert_eq!(pages, 200);
    assert_eq!(seen.len(), 10_000);
    assert!(
        seen.windows(2).all(|w| w[0] == w[1] + 1),
        "newest first, none skipped or repeated"
    );

    // One object's history, and filters that leave nothing.
    let body = String::from_utf8_lossy(
        &api.get("/audit?kind=permit&app=unnamed&id=bulk-42")
            .await
            .body,
    )
    .into_owned();
    assert!(
        body.contains("History of <code>Permit unnamed/bulk-42</code>"),
        "{body}"
    );
    assert_eq!(seqs(&body).len(), 1);
    let body = String::from_utf8_lossy(&api.get("/audit?source=bulk&action=delete").await.body)
        .into_owned();
    assert!(body.contains("No entries match."), "{body}");
    let bad = api.get("/audit?since=yesterday").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&bad.body).contains("`yesterday` is not a time"));
}

// ---- a Git source, synced in-process ------------------------------------------

/// The Git source's name.
const REPO: &str = "repo";

/// A real Git repository as a source, synced by a worker driven one step
/// at a time in this process (fetching over file://), and the router over
/// the same state.
struct GitApi {
    _dir: tempfile::TempDir,
    _db: TestDb,
    repo: Repo,
    worker: Worker,
    router: Router,
}

impl GitApi {
    async fn new(backend: Backend) -> GitApi {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = TestDb::new(backend).await;
        let repo = Repo::init(&dir.path().join("repo"));
        let store = Arc::new(AnyStore::connect(&db.url).await.expect("connect"));
        let git: GitConfig =
            serde_json::from_value(json!({ "url": repo.url() })).expect("git config");
        let source = GitSource::new(git.clone(), &dir.path().join("cache"), REPO, 1 << 24);
        let (trigger, _) = mpsc::channel(1);
        let handle = Arc::new(SourceHandle {
            name: REPO.into(),
            status: RwLock::new(SourceStatus::new(REPO, "git", repo.url())),
            trigger,
            webhook_secret: None,
            watcher: None,
        });
        let state = Arc::new(State::new(vec![handle.clone()], store));
        let config = SourceConfig {
            name: REPO.into(),
            kind: SourceKind::Git(git),
            interval: Duration::from_secs(3600),
            drift: DriftPolicy::Correct,
            prune: true,
            max_delete_percent: 100,
            deletion_window: Duration::from_secs(600),
            max_file_size: 1 << 24,
        };
        let worker = Worker::new(
            handle,
            state.clone(),
            AnySource::Git(source),
            config,
            "accord@test".into(),
        );
        GitApi {
            _dir: dir,
            _db: db,
            repo,
            worker,
            router: accord::server::router(state),
        }
    }

    /// One sync of the repository's newest commit.
    async fn sync(&mut self) -> Outcome {
        self.worker.sync_once().await
    }

    /// A page's body, which must be served.
    async fn page(&self, uri: &str) -> String {
        let answer = get(&self.router, uri).await;
        assert_eq!(answer.status, StatusCode::OK, "{uri}");
        String::from_utf8(answer.body).expect("UTF-8")
    }
}

/// `body` cut at each `data-run` mark: one piece per sync run, in order.
fn runs(body: &str) -> Vec<&str> {
    body.split("data-run=\"").skip(1).collect()
}

both_backends!(
    the_source_page_shows_each_sync_run_newest_first_with_its_changes_and_pages_back_by_key,
    |backend| async move {
        let mut git = GitApi::new(backend).await;
        // More runs than a page shows (20): each commit adds a permit and
        // changes the role of `shared`; one adds 12 more permits at once;
        // three rewrite an organization of 2,000 members whole.
        let mut revisions = Vec::new();
        for n in 0..25 {
            let repo = &git.repo;
            repo.write(
                &format!("perms/p{n}.yaml"),
                &documents(&[grant(&format!("p{n}"), "svc:reader")]),
            );
            repo.write(
                "perms/shared.yaml",
                &documents(&[grant("shared", &format!("svc:role-{n}"))]),
            );
            if n == 7 {
                let bulk: Vec<_> = (0..12)
                    .map(|i| grant(&format!("bulk-{i}"), "svc:reader"))
                    .collect();
                repo.write("perms/bulk.yaml", &documents(&bulk));
            }
            if (12..15).contains(&n) {
                let role = if n % 2 == 0 { "user" } else { "admin" };
                let big = (0..2_000).fold(org("big").name("Big"), |o, i| {
                    o.member(&format!("member-{i}@example.com"), role)
                });
                repo.write("orgs/big.yaml", &documents(&[big.build()]));
            }
            revisions.push(repo.commit(
                &format!("change {n}"),
                &format!("Author {n} <a{n}@example.com>"),
            ));
            assert_eq!(git.sync().await, Outcome::Applied, "commit {n}");
        }

        // Every run, page by page by key: newest first, none repeated or skipped.
        let mut url = format!("/sources/{REPO}");
        let mut pages = Vec::new();
        loop {
            let body = git.page(&url).await;
            assert!(body.len() < 200_000, "{url}: {} bytes", body.len());
            let next = next_page(&body);
            pages.push(body);
            match next {
                Some(link) => {
                    assert!(
                        link.starts_with(&format!("/sources/{REPO}?before=")),
                        "{link}"
                    );
                    url = link;
                }
                None => break,
            }
        }
        assert_eq!(pages.len(), 2, "25 runs, 20 a page");
        let shown: Vec<&str> = pages.iter().flat_map(|p| runs(p)).collect();
        let ids: Vec<i64> = pages.iter().flat_map(|p| marked(p, "run")).collect();
        assert_eq!(ids.len(), 25);
        assert!(ids.windows(2).all(|w| w[0] == w[1] + 1), "{ids:?}");
        for (run, revision) in shown.iter().zip(revisions.iter().rev()) {
            assert!(
                run.contains(&format!("data-full=\"{revision}\"")),
                "{revision}: {run}"
            );
        }

        // The newest run's changes with their diffs: `shared`'s role, before and after.
        let newest = shown[0];
        assert!(
            newest.contains("unnamed/p24") && newest.contains("unnamed/shared"),
            "{newest}"
        );
        let line = |class: &str, role: &str| {
            newest
                .split(&format!("<span class=\"{class}\">"))
                .skip(1)
                .any(|l| l[..l.find("</span>").unwrap_or(0)].contains(role))
        };
        assert!(
            line("del", "svc:role-23") && line("add", "svc:role-24"),
            "{newest}"
        );
        assert!(
            newest.contains("Author 24 &lt;a24@example.com&gt;"),
            "{newest}"
        );
        assert!(
            !newest.contains("the newest"),
            "two changes, all shown: {newest}"
        );

        // The run with 14 changes shows 5 and links the audit log, filtered to it.
        let (id, big_run) = (ids[24 - 7], shown[24 - 7]);
        assert!(big_run.contains("Changes: the newest 5 of 14"), "{big_run}");
        assert_eq!(seqs(big_run).len(), 5);
        let link = format!("/audit?source={REPO}&amp;run={id}");
        assert!(big_run.contains(&format!("href=\"{link}\"")), "{big_run}");
        let audit = git.page(&link.replace("&amp;", "&")).await;
        let listed = seqs(&audit);
        assert_eq!(listed.len(), 14, "{audit}");
        assert!(seqs(big_run).iter().all(|seq| listed.contains(seq)));
        assert_eq!(
            audit
                .matches(&format!("data-full=\"{}\"", revisions[7]))
                .count(),
            14
        );
        assert!(
            audit.contains("name=\"run\" value=\""),
            "the form keeps the filter"
        );
        // The same run without the source filter; and another run's changes are its own.
        assert_eq!(seqs(&git.page(&format!("/audit?run={id}")).await), listed);
        let older = seqs(
            &git.page(&format!("/audit?source={REPO}&run={}", id - 1))
                .await,
        );
        assert_eq!(older.len(), 2);
        assert!(older.iter().all(|seq| seq < listed.last().expect("listed")));

        // The rewritten organization's diffs are cut, each with a link to its entry.
        let rewritten = shown[24 - 13];
        assert!(rewritten.contains("Diff cut here"), "{rewritten}");
        assert!(
            rewritten.contains(&format!("/audit?source={REPO}&amp;before=")),
            "{rewritten}"
        );
        println!(
            "history pages: {} and {} bytes",
            pages[0].len(),
            pages[1].len()
        );

        // Past the oldest run, and a malformed key: nothing older; the newest.
        let past = git
            .page(&format!("/sources/{REPO}?before={}", ids[24]))
            .await;
        assert!(
            past.contains("No older syncs.") && next_page(&past).is_none(),
            "{past}"
        );
        let malformed = git.page(&format!("/sources/{REPO}?before=yesterday")).await;
        assert_eq!(marked(&malformed, "run"), ids[..20]);
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_message_and_author_show_as_text_with_the_revision_they_made() {
    let mut git = GitApi::new(Backend::Sqlite).await;
    let hostile = "<script>alert(1)</script>\"><img src=x onerror=alert(1)>";
    git.repo
        .write("perms/p.yaml", &documents(&[grant("p", "svc:reader")]));
    let message = format!("Grant p {hostile}\n\nWhy: {hostile}\nSecond line.");
    // Git trims `<` and `>` from a name's ends; inside, they stay.
    let author = format!("Mallory {hostile} Jr");
    let applied = git.repo.commit_raw(&message, &author);
    assert_eq!(git.sync().await, Outcome::Applied);

    // The status carries the commit, as the document describes it.
    let status = get(&git.router, "/api/v1/status").await;
    assert_documented(&document(), &Method::GET, "/api/v1/status", &status);
    let source = &status.json()["sources"][0];
    assert_eq!(source["lastAppliedRevision"], applied.as_str());
    assert_eq!(source["lastAppliedCommit"]["author"], author.as_str());
    assert_eq!(source["lastAppliedCommit"]["message"], message.as_str());
    assert_eq!(
        source["lastAppliedCommit"]["authoredAt"],
        "2026-01-01T00:00:00Z"
    );

    let escaped =
        "&lt;script&gt;alert(1)&lt;/script&gt;&quot;&gt;&lt;img src=x onerror=alert(1)&gt;";
    for path in ["/", "/sources/repo"] {
        let body = git.page(path).await;
        // No markup from the commit survives: only the page's own script tag.
        assert_eq!(body.matches("<script").count(), 1, "{path}: {body}");
        assert!(!body.contains("<img"), "{path}: {body}");
        assert!(
            body.contains(&format!("Mallory {escaped} Jr · <time")),
            "{path}: the author: {body}"
        );
        assert!(
            !body.contains("attempted:") && !body.contains("Attempted commit"),
            "{path}: {body}"
        );
    }
    let overview = git.page("/").await;
    assert!(
        overview.contains(&format!("<span class=\"subject\">Grant p {escaped}</span>")),
        "the message's first line: {overview}"
    );
    let page = git.page("/sources/repo").await;
    assert!(
        page.contains(&format!(
            "<pre class=\"message\">Grant p {escaped}\n\nWhy: {escaped}\nSecond line.</pre>"
        )),
        "the whole message: {page}"
    );

    // A revision that fails validation: its commit shows beside the applied one.
    git.repo.write("perms/p.yaml", "permissionId: [broken\n");
    git.repo
        .commit("Break p", "Other Author <other@example.com>");
    assert_eq!(git.sync().await, Outcome::Invalid);
    let overview = git.page("/").await;
    assert!(
        overview.contains("attempted: </span><span class=\"subject\">Break p</span>"),
        "{overview}"
    );
    assert!(
        overview.contains(&format!("<span class=\"subject\">Grant p {escaped}</span>")),
        "{overview}"
    );
    let page = git.page("/sources/repo").await;
    assert!(
        page.contains("Attempted commit") && page.contains("Other Author · <time"),
        "{page}"
    );
    let source = &get(&git.router, "/api/v1/status").await.json()["sources"][0];
    assert_eq!(source["lastAttemptedCommit"]["message"], "Break p");
    assert_eq!(source["lastAppliedCommit"]["author"], author.as_str());
}
