//! `accord run` as operators meet it: a watched folder, drift corrected or
//! reported while it runs, the HTTP API (auth, problem documents, status,
//! metrics), the per-organization GitOps switch, the CLI against a server,
//! and a graceful shutdown.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use accord::model::render::object_yaml;
use accord::model::Object;
use accord::source::{DirectorySource, DEFAULT_MAX_FILE_SIZE};
use common::builders::{org, permit};
use common::controller::{documents, eventually, free_port, grant, synced_at, Controller};
use common::db::{Backend, TestDb};
use serde_json::Value;
use sqlx::{Connection, PgConnection, SqliteConnection};

const WAIT: Duration = Duration::from_secs(30);
/// "Within a few intervals" of a 500ms interval, with room for a busy machine.
const FEW_INTERVALS: Duration = Duration::from_secs(10);
const SOURCE: &str = "local";
const TOKEN: &str = "op3rator-t0ken";

/// A temp dir holding the watched folder, the config and the controller's
/// log, and the database the controller reconciles.
struct Setup {
    dir: tempfile::TempDir,
    db: TestDb,
    folder: PathBuf,
    config: PathBuf,
}

impl Setup {
    /// `settings` are the source's lines after `directory:` (interval, drift…),
    /// each indented by four spaces.
    async fn new(backend: Backend, settings: &str, with_token: bool) -> Setup {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = TestDb::new(backend).await;
        let folder = dir.path().join("config");
        std::fs::create_dir(&folder).expect("mkdir");
        let mut text = format!(
            "database: {}\ncacheDir: {}\n",
            db.url,
            dir.path().join("cache").display()
        );
        if with_token {
            let token = dir.path().join("api-token");
            std::fs::write(&token, format!("{TOKEN}\n")).expect("token file");
            text.push_str(&format!("apiTokenFile: {}\n", token.display()));
        }
        text.push_str(&format!(
            "sources:\n  - name: {SOURCE}\n    directory:\n      path: {}\n{settings}",
            folder.display()
        ));
        let config = dir.path().join("accord.yaml");
        std::fs::write(&config, text).expect("write config");
        Setup {
            dir,
            db,
            folder,
            config,
        }
    }

    /// Writes `objects` as YAML documents into `file` in the watched folder.
    fn declare(&self, file: &str, objects: &[Object]) {
        std::fs::write(self.folder.join(file), documents(objects)).expect("write declaration");
    }

    /// The content hash of the folder as it is now: the revision accord reports.
    fn revision(&self) -> String {
        DirectorySource::new(&self.folder, DEFAULT_MAX_FILE_SIZE)
            .read_blocking()
            .expect("read folder")
            .revision
    }

    async fn start(&self) -> Controller {
        Controller::start(self.dir.path(), &self.config).await
    }

    /// `start`, once the folder as it is now is applied; and its revision.
    async fn start_synced(&self) -> (Controller, String) {
        let accord = self.start().await;
        let revision = self.revision();
        accord
            .wait_for(SOURCE, WAIT, |s| synced_at(s, &revision))
            .await;
        (accord, revision)
    }
}

/// One text value from a query (None for no row or NULL).
async fn text(db: &TestDb, sql: &str) -> Option<String> {
    let result = match db.backend {
        Backend::Sqlite => {
            let mut conn = SqliteConnection::connect(&db.url).await.expect("connect");
            sqlx::query_scalar::<_, Option<String>>(sqlx::AssertSqlSafe(sql.to_owned()))
                .fetch_optional(&mut conn)
                .await
        }
        Backend::Postgres => {
            let mut conn = PgConnection::connect(&db.url).await.expect("connect");
            sqlx::query_scalar::<_, Option<String>>(sqlx::AssertSqlSafe(sql.to_owned()))
                .fetch_optional(&mut conn)
                .await
        }
    };
    result.unwrap_or_else(|e| panic!("{sql}: {e}")).flatten()
}

async fn permission_of(db: &TestDb, id: &str) -> Option<String> {
    text(
        db,
        &format!("SELECT permission_id FROM permits WHERE app = 'unnamed' AND id = '{id}'"),
    )
    .await
}

/// The audit entries the API returns for `query` (e.g. `source=local`).
async fn audit(accord: &Controller, query: &str) -> Vec<Value> {
    let (code, body) = accord.get(&format!("/api/v1/audit?{query}")).await;
    assert_eq!(code, 200, "{body}");
    body["entries"].as_array().cloned().expect("entries")
}

/// A response's status, `Content-Type` and JSON body.
async fn call(
    method: reqwest::Method,
    url: &str,
    authorization: Option<&str>,
) -> (u16, String, Value) {
    let mut request = reqwest::Client::new().request(method, url);
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let response = request.send().await.expect("request");
    let code = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = response.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (code, content_type, body)
}

/// Asserts an RFC 7807 problem document with `status`.
fn assert_problem(what: &str, response: &(u16, String, Value), status: u16) {
    let (code, content_type, body) = response;
    assert_eq!(*code, status, "{what}: {body}");
    assert!(
        content_type.starts_with("application/problem+json"),
        "{what}: content type {content_type:?}, body {body}"
    );
    assert_eq!(body["status"], status, "{what}: {body}");
    for field in ["type", "title", "detail"] {
        assert!(
            body[field].as_str().is_some_and(|s| !s.is_empty()),
            "{what}: `{field}` missing from {body}"
        );
    }
}

/// Runs the `accord` binary, which must succeed, and returns its standard output.
fn cli(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_accord"))
        .args(args)
        .env("ACCORD_COLOR", "never")
        .env_remove("ACCORD_SERVER")
        .env_remove("ACCORD_DATABASE_URL")
        .output()
        .expect("run accord");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "accord {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

// ---- the watched folder --------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_edited_in_the_watched_folder_is_applied() {
    // A one-hour interval: only the file watcher can explain a quick sync.
    let setup = Setup::new(Backend::Sqlite, "    interval: 1h\n", false).await;
    setup.declare("permits.yaml", &[grant("p1", "svc:v1")]);
    let (accord, first) = setup.start_synced().await;

    setup.declare("permits.yaml", &[grant("p1", "svc:v2")]);
    let second = setup.revision();
    assert_ne!(first, second);
    accord
        .wait_for(SOURCE, WAIT, |s| synced_at(s, &second))
        .await;
    assert_eq!(
        text(&setup.db, "SELECT roles FROM permits WHERE id = 'p1'")
            .await
            .as_deref(),
        Some(r#"["svc:v2"]"#)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_edits_with_half_written_files_leads_to_one_sync_of_the_final_state() {
    rewrite_twenty_files(Duration::ZERO).await;
}

/// A `git checkout` of a larger tree takes a while; as long as no pause
/// reaches the debounce (750ms), it is still one burst.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_spread_over_seconds_with_short_pauses_is_still_one_sync() {
    rewrite_twenty_files(Duration::from_millis(100)).await;
}

/// Twenty permits, one per file, all rewritten the way an editor's save or a
/// `git checkout` does it: in pieces, truncated, removed and recreated,
/// swapped in by rename, with `gap` between steps. Exactly one sync must
/// follow, of the final tree, and nothing may be deleted on the way.
async fn rewrite_twenty_files(gap: Duration) {
    // A one-hour interval: only the file watcher can trigger the sync.
    let setup = Setup::new(Backend::Sqlite, "    interval: 1h\n", false).await;
    let ids: Vec<String> = (0..20).map(|i| format!("p{i:02}")).collect();
    for id in &ids {
        setup.declare(&format!("{id}.yaml"), &[grant(id, "svc:v1")]);
    }
    let (accord, _) = setup.start_synced().await;
    // Whatever the first read stirred up has been served before counting.
    let before = accord.settled(SOURCE, None).await;
    let file_syncs_before = before["triggers"]["file change"].as_u64().unwrap_or(0);
    let runs_before = setup.db.scalar("SELECT COUNT(*) FROM sync_runs").await;
    assert_eq!(runs_before, 1, "the first sync is one run");

    let path = |id: &str| setup.folder.join(format!("{id}.yaml"));
    let final_text = |id: &str| documents(&[grant(id, "svc:v2")]);
    // Gone for the whole burst, back at its end.
    std::fs::remove_file(path("p03")).expect("remove");
    for (n, id) in ids.iter().enumerate().filter(|(n, _)| *n != 3) {
        let full = final_text(id);
        if n == 7 {
            std::fs::write(path(id), "").expect("truncate");
        } else {
            std::fs::write(path(id), &full[..full.len() / 2]).expect("half write");
        }
        tokio::time::sleep(gap).await;
        if n == 19 {
            let temp = setup.folder.join(format!(".{id}.yaml.swp"));
            std::fs::write(&temp, &full).expect("temp file");
            std::fs::rename(&temp, path(id)).expect("rename into place");
        } else {
            std::fs::write(path(id), &full).expect("full write");
        }
        tokio::time::sleep(gap).await;
    }
    std::fs::write(path("p03"), final_text("p03")).expect("recreate");
    let last = setup.revision();
    accord.wait_for(SOURCE, WAIT, |s| synced_at(s, &last)).await;
    // Once no change waits to settle, a late second sync would have been
    // asked for already, and is served by the time one more sync returns.
    let after = accord.settled(SOURCE, None).await;
    assert_eq!(
        after["triggers"]["file change"].as_u64().unwrap_or(0) - file_syncs_before,
        1,
        "one sync for the whole burst: {after:#}"
    );

    let runs: Vec<String> = {
        let mut runs = Vec::new();
        let total = setup.db.scalar("SELECT COUNT(*) FROM sync_runs").await;
        for id in 1..=total {
            runs.push(
                text(
                    &setup.db,
                    &format!(
                        "SELECT 'created ' || created || ', updated ' || updated || ', deleted ' \
                         || deleted FROM sync_runs WHERE id = {id}"
                    ),
                )
                .await
                .unwrap_or_default(),
            );
        }
        runs
    };
    assert_eq!(
        runs.len() as i64,
        runs_before + 1,
        "exactly one sync for the whole burst; runs: {runs:?}"
    );
    assert_eq!(
        setup
            .db
            .scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'delete'")
            .await,
        0,
        "no half-written tree was synced"
    );
    assert_eq!(
        setup
            .db
            .scalar(r#"SELECT COUNT(*) FROM permits WHERE roles = '["svc:v2"]'"#)
            .await,
        20,
        "the final state is applied"
    );
    assert_eq!(setup.db.scalar("SELECT COUNT(*) FROM permits").await, 20);
    assert_eq!(
        setup
            .db
            .scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'update'")
            .await,
        20
    );
}

// ---- drift -------------------------------------------------------------------

both_backends!(
    a_row_changed_by_hand_while_running_is_put_back_and_audited_with_its_diff,
    |backend| async move {
        let setup = Setup::new(backend, "    interval: 500ms\n", false).await;
        setup.declare("permits.yaml", &[grant("p1", "svc:reader")]);
        let (accord, _) = setup.start_synced().await;

        let changed = setup
            .db
            .exec("UPDATE permits SET permission_id = 'svc:hacked' WHERE id = 'p1'")
            .await
            .expect("hand edit");
        assert_eq!(changed, 1);
        let corrected = eventually(FEW_INTERVALS, || async {
            permission_of(&setup.db, "p1").await.as_deref() == Some("svc:p1")
        })
        .await;
        assert!(
            corrected,
            "the hand edit is put back within a few intervals; the row holds {:?}\n{}",
            permission_of(&setup.db, "p1").await,
            accord.log_text()
        );

        let entries = audit(&accord, "source=local").await;
        let drift: Vec<&Value> = entries
            .iter()
            .filter(|e| e["action"] == "drift_corrected")
            .collect();
        assert_eq!(drift.len(), 1, "{entries:#?}");
        let entry = drift[0];
        assert_eq!(entry["kind"], "Permit");
        assert_eq!(entry["id"], "p1");
        assert_eq!(entry["source"], SOURCE);
        assert_eq!(entry["before"]["permissionId"], "svc:hacked");
        assert_eq!(entry["after"]["permissionId"], "svc:p1");
        let diff = entry["diff"].as_str().unwrap_or_default();
        assert!(
            diff.contains("-permissionId: svc:hacked") && diff.contains("+permissionId: svc:p1"),
            "{diff}"
        );
        let status = accord.source(SOURCE).await;
        assert_eq!(status["state"], "Synced", "{status}");
    }
);

both_backends!(
    an_interval_with_nothing_written_skips_the_plan_and_an_edit_or_deletion_still_shows,
    |backend| async move {
        let setup = Setup::new(backend, "    interval: 200ms\n", false).await;
        setup.declare(
            "permits.yaml",
            &[grant("p1", "svc:reader"), grant("p2", "svc:reader")],
        );
        let (accord, _) = setup.start_synced().await;
        const SKIPPED: &str = "nothing written since the last sync";
        if backend == Backend::Sqlite {
            // SQLite's mark moves only with commits to this file; a
            // PostgreSQL server's snapshot moves with every other test's writes too.
            let skipped = eventually(FEW_INTERVALS, || async {
                accord.log_text().contains(SKIPPED)
            })
            .await;
            assert!(
                skipped,
                "an idle interval plans nothing:\n{}",
                accord.log_text()
            );
        }

        setup
            .db
            .exec("UPDATE permits SET permission_id = 'svc:hacked' WHERE id = 'p1'")
            .await
            .expect("hand edit");
        let corrected = eventually(FEW_INTERVALS, || async {
            permission_of(&setup.db, "p1").await.as_deref() == Some("svc:p1")
        })
        .await;
        assert!(corrected, "the edit is put back:\n{}", accord.log_text());

        setup
            .db
            .exec("DELETE FROM permits WHERE id = 'p2'")
            .await
            .expect("hand delete");
        let restored = eventually(FEW_INTERVALS, || async {
            permission_of(&setup.db, "p2").await.as_deref() == Some("svc:p2")
        })
        .await;
        assert!(
            restored,
            "the deleted row is put back:\n{}",
            accord.log_text()
        );
        let entries = audit(&accord, "source=local").await;
        let corrections = entries
            .iter()
            .filter(|e| e["action"] == "drift_corrected" || e["action"] == "create")
            .filter(|e| e["id"] == "p1" || e["id"] == "p2")
            .count();
        assert!(corrections >= 3, "{entries:#?}");
    }
);

both_backends!(
    drift_in_report_mode_is_left_in_place_audited_once_and_listed_until_it_goes_away,
    |backend| async move {
        let setup = Setup::new(backend, "    interval: 500ms\n    drift: report\n", false).await;
        setup.declare(
            "permits.yaml",
            &[grant("p1", "svc:reader"), grant("p2", "svc:reader")],
        );
        let (accord, revision) = setup.start_synced().await;

        setup
            .db
            .exec("UPDATE permits SET permission_id = 'svc:hacked' WHERE id = 'p1'")
            .await
            .expect("hand edit");
        let status = accord
            .wait_for(SOURCE, FEW_INTERVALS, |s| s["state"] == "OutOfSync")
            .await;
        assert_eq!(status["counts"]["drifted"], 1, "{status}");
        assert_eq!(status["lastAppliedRevision"], revision.as_str());
        // Several intervals later: still left alone, still audited only once.
        accord.wait_for_attempts(SOURCE, 3).await;
        assert_eq!(
            permission_of(&setup.db, "p1").await.as_deref(),
            Some("svc:hacked"),
            "report mode leaves the row as it is"
        );
        let detected = setup
            .db
            .scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'drift_detected' AND object_id = 'p1'")
            .await;
        assert_eq!(detected, 1, "drift is audited once");
        assert_eq!(
            setup
                .db
                .scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'drift_corrected'")
                .await,
            0
        );
        let entries = audit(&accord, "source=local&limit=1").await;
        assert_eq!(entries[0]["action"], "drift_detected");
        assert!(entries[0]["diff"]
            .as_str()
            .is_some_and(|d| d.contains("svc:hacked")));

        let (code, drift) = accord.get("/api/v1/drift").await;
        assert_eq!(code, 200);
        let items = drift["items"].as_array().cloned().unwrap_or_default();
        assert_eq!(items.len(), 1, "{drift:#}");
        assert_eq!(items[0]["source"], SOURCE);
        assert_eq!(items[0]["kind"], "Permit");
        assert_eq!(items[0]["app"], "unnamed");
        assert_eq!(items[0]["id"], "p1");
        let diff = items[0]["diff"].as_str().unwrap_or_default();
        assert!(
            diff.contains("-permissionId: svc:hacked") && diff.contains("+permissionId: svc:p1"),
            "{diff}"
        );
        assert_eq!(accord.source(SOURCE).await["state"], "OutOfSync");

        // Put back by hand: the item goes away and the source is in sync again.
        setup
            .db
            .exec("UPDATE permits SET permission_id = 'svc:p1' WHERE id = 'p1'")
            .await
            .expect("put back");
        accord
            .wait_for(SOURCE, FEW_INTERVALS, |s| s["state"] == "Synced")
            .await;
        let (_, drift) = accord.get("/api/v1/drift").await;
        assert_eq!(drift["items"], serde_json::json!([]), "{drift:#}");
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_nobody_manages_are_never_touched() {
    let setup = Setup::new(Backend::Sqlite, "    interval: 300ms\n", false).await;
    setup.declare("permits.yaml", &[grant("p1", "svc:reader")]);
    let (accord, _) = setup.start_synced().await;

    // One row the source does not declare (pruning must not take it), and one
    // whose key the source is about to declare (it must not take it over).
    for id in ["handmade", "taken"] {
        setup
            .db
            .exec(&format!(
                "INSERT INTO permits (app, id, permission_id, slugs, roles, updated_at) \
                 VALUES ('unnamed', '{id}', 'svc:write', '[\"someone\"]', '[]', '2020-01-01T00:00:00Z')"
            ))
            .await
            .expect("insert a row by hand");
    }
    let row = |id: &'static str| {
        let db = &setup.db;
        async move {
            text(
                db,
                &format!(
                    "SELECT permission_id || '|' || slugs || '|' || roles || '|' \
                     || COALESCE(managed_by, '-') || '|' || COALESCE(applied_hash, '-') \
                     || '|' || COALESCE(updated_at, '-') FROM permits WHERE id = '{id}'"
                ),
            )
            .await
        }
    };
    let untouched = Some(r#"svc:write|["someone"]|[]|-|-|2020-01-01T00:00:00Z"#.to_owned());
    setup.declare(
        "permits.yaml",
        &[grant("p1", "svc:reader"), grant("taken", "svc:reader")],
    );
    let second = setup.revision();
    let status = accord
        .wait_for(SOURCE, WAIT, |s| {
            s["lastAttemptedRevision"] == second.as_str() && s["counts"]["conflicts"] == 1
        })
        .await;
    assert_eq!(status["state"], "OutOfSync", "{status}");
    // A few intervals with the source syncing all along.
    accord.wait_for_attempts(SOURCE, 3).await;

    assert_eq!(
        row("handmade").await,
        untouched,
        "undeclared row left alone"
    );
    assert_eq!(row("taken").await, untouched, "declared row not taken over");
    assert_eq!(
        setup
            .db
            .scalar("SELECT COUNT(*) FROM audit_log WHERE object_id IN ('handmade', 'taken')")
            .await,
        0
    );
    assert_eq!(
        setup
            .db
            .scalar("SELECT COUNT(*) FROM ledger WHERE object_id IN ('handmade', 'taken')")
            .await,
        0
    );
}

// ---- the HTTP API ---------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutating_endpoints_need_the_token_and_errors_are_problem_documents() {
    let setup = Setup::new(Backend::Sqlite, "    interval: 1h\n", true).await;
    setup.declare("permits.yaml", &[grant("p1", "svc:reader")]);
    let (accord, revision) = setup.start_synced().await;
    let url = |path: &str| format!("{}{path}", accord.url);
    let post = reqwest::Method::POST;
    let sync = url("/api/v1/sources/local/sync");
    let bearer = format!("Bearer {TOKEN}");

    let missing = call(post.clone(), &sync, None).await;
    assert_problem("no token", &missing, 401);
    let wrong = call(post.clone(), &sync, Some("Bearer not-the-token")).await;
    assert_problem("wrong token", &wrong, 401);
    let prefix = call(
        post.clone(),
        &sync,
        Some(&format!("Bearer {}", &TOKEN[..4])),
    )
    .await;
    assert_problem("a prefix of the token", &prefix, 401);
    let scheme = call(post.clone(), &sync, Some(&format!("Basic {TOKEN}"))).await;
    assert_problem("not a bearer token", &scheme, 401);

    // The refused calls triggered nothing; the accepted one syncs and answers
    // with the source's status after that sync.
    let before = accord.source(SOURCE).await["lastAttemptAt"].clone();
    let (code, content_type, body) = call(post.clone(), &sync, Some(&bearer)).await;
    assert_eq!(code, 200, "{body}");
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    assert_eq!(body["name"], SOURCE);
    assert_eq!(body["type"], "directory");
    assert_eq!(body["state"], "Synced");
    assert_eq!(body["lastAppliedRevision"], revision.as_str());
    assert_ne!(body["lastAttemptAt"], before, "the call ran a new sync");

    let unknown_source = call(
        post.clone(),
        &url("/api/v1/sources/nope/sync"),
        Some(&bearer),
    )
    .await;
    assert_problem("unknown source", &unknown_source, 404);
    assert!(unknown_source.2["detail"]
        .as_str()
        .is_some_and(|d| d.contains("nope")));
    let unknown_path = call(reqwest::Method::GET, &url("/api/v1/nothing-here"), None).await;
    assert_problem("unknown path", &unknown_path, 404);

    for path in [
        "/health",
        "/healthz",
        "/ready",
        "/readyz",
        "/metrics",
        "/api/v1/status",
        "/api/v1/drift",
        "/api/v1/audit-logs",
        "/api/v1/audit",
        "/api/v1/openapi.json",
    ] {
        let (code, _, body) = call(reqwest::Method::GET, &url(path), None).await;
        assert_eq!(code, 200, "GET {path} needs no token: {body}");
    }
    let bad_kind = call(
        reqwest::Method::GET,
        &url("/api/v1/audit?kind=Nonsense"),
        None,
    )
    .await;
    assert_problem("unknown kind", &bad_kind, 400);
    assert!(bad_kind.2["detail"]
        .as_str()
        .is_some_and(|d| d.contains("Nonsense")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_answered_with_problem_documents_too() {
    let setup = Setup::new(Backend::Sqlite, "    interval: 1h\n", false).await;
    setup.declare("permits.yaml", &[grant("p1", "svc:reader")]);
    let accord = setup.start().await;
    for query in ["limit=many", "since=yesterday"] {
        let response = call(
            reqwest::Method::GET,
            &format!("{}/api/v1/audit?{query}", accord.url),
            None,
        )
        .await;
        assert_problem(query, &response, 400);
    }
    for (method, path) in [
        (reqwest::Method::GET, "/api/v1/sources/local/sync"),
        (reqwest::Method::DELETE, "/api/v1/status"),
    ] {
        let response = call(method.clone(), &format!("{}{path}", accord.url), None).await;
        assert_problem(&format!("{method} {path}"), &response, 405);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_health_and_metrics_describe_a_directory_source() {
    let setup = Setup::new(Backend::Sqlite, "    interval: 1h\n", false).await;
    setup.declare(
        "permits.yaml",
        &[grant("p1", "svc:reader"), grant("p2", "svc:reader")],
    );
    setup.declare("orgs.yaml", &[org("acme").name("Acme").build()]);
    let started = chrono::Utc::now();
    let (accord, revision) = setup.start_synced().await;

    let (code, body) = accord.get("/api/v1/status").await;
    assert_eq!(code, 200);
    let sources = body["sources"].as_array().expect("sources");
    assert_eq!(sources.len(), 1, "{body:#}");
    let status = &sources[0];
    for key in [
        "name",
        "type",
        "state",
        "lastAttemptedRevision",
        "lastAppliedRevision",
        "lastAttemptAt",
        "lastSuccessAt",
        "message",
        "counts",
    ] {
        assert!(status.get(key).is_some(), "`{key}` missing from {status:#}");
    }
    assert_eq!(status["name"], SOURCE);
    assert_eq!(status["type"], "directory");
    assert_eq!(status["state"], "Synced");
    assert_eq!(status["lastAttemptedRevision"], revision.as_str());
    assert_eq!(status["lastAppliedRevision"], revision.as_str());
    let time = |key: &str| {
        let text = status[key].as_str().unwrap_or_default();
        chrono::DateTime::parse_from_rfc3339(text)
            .unwrap_or_else(|e| panic!("{key} = {text:?}: {e}"))
            .with_timezone(&chrono::Utc)
    };
    let now = chrono::Utc::now();
    for key in ["lastAttemptAt", "lastSuccessAt"] {
        let at = time(key);
        assert!(started <= at && at <= now, "{key} = {at}");
    }
    assert!(
        status["message"]
            .as_str()
            .is_some_and(|m| m.contains(&revision)),
        "{status}"
    );
    let counts = &status["counts"];
    assert_eq!(counts["managed"], 3, "{counts}");
    for key in ["created", "updated", "deleted", "drifted", "conflicts"] {
        assert!(counts[key].is_u64(), "counts.{key} in {counts}");
    }
    assert_eq!(counts["drifted"], 0);
    assert_eq!(counts["conflicts"], 0);

    let client = reqwest::Client::new();
    let get = |path: &str| client.get(format!("{}{path}", accord.url)).send();
    assert_eq!(get("/healthz").await.expect("healthz").status(), 200);
    assert_eq!(get("/readyz").await.expect("readyz").status(), 200);
    let metrics = get("/metrics")
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    for line in [
        r#"accord_syncs_total{source="local",outcome="applied"} 1"#.to_owned(),
        r#"accord_managed_objects{source="local",kind="Permit"} 2"#.to_owned(),
        r#"accord_managed_objects{source="local",kind="Organization"} 1"#.to_owned(),
        r#"accord_drift_open{source="local"} 0"#.to_owned(),
        format!(r#"accord_source_revision{{source="local",revision="{revision}"}} 1"#),
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "`{line}` missing from\n{metrics}"
        );
    }
    assert!(
        metrics.contains(r#"accord_sync_duration_seconds_bucket{le="+Inf",source="local"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"accord_sync_duration_seconds_count{source="local"}"#),
        "{metrics}"
    );
    let last_success: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix(r#"accord_last_success_timestamp_seconds{source="local"} "#))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no last success time in\n{metrics}"));
    assert!(
        (started.timestamp() as f64 - 1.0..=now.timestamp() as f64 + 1.0).contains(&last_success),
        "{last_success}"
    );

    // A new revision replaces the old one in the revision gauge.
    setup.declare(
        "permits.yaml",
        &[grant("p1", "svc:reader"), grant("p2", "svc:writer")],
    );
    let second = setup.revision();
    accord
        .wait_for(SOURCE, WAIT, |s| synced_at(s, &second))
        .await;
    let metrics = get("/metrics")
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    assert!(
        metrics.contains(&format!(
            r#"accord_source_revision{{source="local",revision="{second}"}} 1"#
        )),
        "{metrics}"
    );
    assert!(!metrics.contains(&revision), "{metrics}");
    assert!(
        metrics
            .lines()
            .any(|l| l == r#"accord_syncs_total{source="local",outcome="applied"} 2"#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_managed_objects_metric_leaves_out_a_conflict_the_source_does_not_own() {
    let setup = Setup::new(Backend::Sqlite, "    interval: 300ms\n", false).await;
    setup.declare("permits.yaml", &[grant("p1", "svc:reader")]);
    let (accord, _) = setup.start_synced().await;
    setup
        .db
        .exec(
            "INSERT INTO permits (app, id, permission_id, slugs, roles) \
             VALUES ('unnamed', 'taken', 'svc:write', '[\"someone\"]', '[]')",
        )
        .await
        .expect("insert a row by hand");
    setup.declare(
        "permits.yaml",
        &[grant("p1", "svc:reader"), grant("taken", "svc:reader")],
    );
    let second = setup.revision();
    let status = accord
        .wait_for(SOURCE, WAIT, |s| {
            s["lastAppliedRevision"] == second.as_str() && s["counts"]["conflicts"] == 1
        })
        .await;
    assert_eq!(status["counts"]["managed"], 1, "{status}");
    let metrics = reqwest::get(format!("{}/metrics", accord.url))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    let line = r#"accord_managed_objects{source="local",kind="Permit"} 1"#;
    assert!(
        metrics.lines().any(|l| l == line),
        "`{line}` (as in the status) missing from\n{metrics}"
    );
}

/// A tool the tests need, from `var` (scripts/test installs it) or PATH. A
/// missing tool fails the test: a check that skipped would pass on a
/// machine that checks nothing.
fn tool(var: &str, name: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(var) {
        return path.into();
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|path| path.is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "no {name}: run the tests through scripts/test, which installs {name} and \
                 sets {var} (or put {name} on PATH)"
            )
        })
}

/// A GET with an `x-request-id`; the response's status and `x-request-id`.
async fn get_with_id(accord: &Controller, path: &str, id: Option<&str>) -> (u16, String) {
    let mut request = reqwest::Client::new().get(format!("{}{path}", accord.url));
    if let Some(id) = id {
        request = request.header("x-request-id", id);
    }
    let response = request.send().await.expect("request");
    let echoed = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (response.status().as_u16(), echoed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool_and_count_requests_by_route_template() {
    let setup = Setup::new(Backend::Sqlite, "    interval: 1h\n", true).await;
    setup.declare("permits.yaml", &[grant("p1", "svc:reader")]);
    let (accord, _) = setup.start_synced().await;
    let seq = audit(&accord, "limit=1").await[0]["seq"]
        .as_i64()
        .expect("an audit entry");
    for _ in 0..2 {
        let (code, _) = accord.post("/api/v1/sources/local/sync", Some(TOKEN)).await;
        assert_eq!(code, 200);
    }
    let (code, entry) = accord.get(&format!("/api/v1/audit-logs/{seq}")).await;
    assert_eq!((code, entry["seq"].as_i64()), (200, Some(seq)), "{entry}");
    let (code, _) = accord.get("/api/v1/audit-logs/999999").await;
    assert_eq!(code, 404);
    let (code, _) = accord.get("/no/such/page").await;
    assert_eq!(code, 404);

    let metrics = reqwest::get(format!("{}/metrics", accord.url))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    let mut promtool = Command::new(tool("ACCORD_TEST_PROMTOOL", "promtool"))
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run promtool");
    {
        use std::io::Write;
        let mut stdin = promtool.stdin.take().expect("stdin");
        stdin.write_all(metrics.as_bytes()).expect("write metrics");
    }
    let checked = promtool.wait_with_output().expect("promtool");
    assert!(
        checked.status.success() && checked.stdout.is_empty() && checked.stderr.is_empty(),
        "promtool check metrics: {}{}\n{metrics}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    for line in [
        r#"accord_http_requests_total{route="/api/v1/sources/{name}/sync",method="POST",status="200"} 2"#,
        r#"accord_http_requests_total{route="/api/v1/audit-logs/{id}",method="GET",status="200"} 1"#,
        r#"accord_http_requests_total{route="/api/v1/audit-logs/{id}",method="GET",status="404"} 1"#,
        r#"accord_http_requests_total{route="unmatched",method="GET",status="404"} 1"#,
        r#"accord_http_request_duration_seconds_count{route="/api/v1/sources/{name}/sync"} 2"#,
        r#"accord_http_request_duration_seconds_bucket{le="+Inf",route="/api/v1/audit-logs/{id}"} 2"#,
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "`{line}` missing from\n{metrics}"
        );
    }
    for state in ["idle", "active"] {
        let prefix = format!(r#"accord_db_connections{{state="{state}"}} "#);
        assert!(
            metrics.lines().any(|l| l
                .strip_prefix(&prefix)
                .is_some_and(|v| v.parse::<u32>().is_ok())),
            "no {state} connections in\n{metrics}"
        );
    }
    // Routes are labelled by the templates the API document lists, never
    // by the paths asked for.
    let templates = accord::server::openapi().paths.paths;
    for line in metrics.lines().filter(|l| !l.starts_with('#')) {
        if let Some((_, rest)) = line.split_once("route=\"") {
            let route = rest.split('"').next().unwrap_or_default();
            assert!(
                route == "unmatched" || templates.contains_key(route),
                "`{route}` is not a route template: {line}"
            );
        }
    }
}

/// The request log line of `id` in a JSON log, if written yet.
fn request_line(log: &str, id: &str) -> Option<Value> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["span"]["request_id"] == id && l["fields"]["message"] == "request answered")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_request_is_logged_with_its_request_id_and_probes_only_at_debug() {
    let setup = Setup::new(Backend::Sqlite, "    interval: 1h\n", true).await;
    setup.declare("permits.yaml", &[grant("p1", "svc:reader")]);
    let config = setup.config.to_str().expect("utf-8").to_owned();
    let accord = Controller::start_with(
        setup.dir.path(),
        &[
            "run",
            "--config",
            &config,
            "--log",
            "info",
            "--log-format",
            "json",
        ],
    )
    .await;
    let revision = setup.revision();
    accord
        .wait_for(SOURCE, WAIT, |s| synced_at(s, &revision))
        .await;
    // Probes and scrapes that succeed are not logged at info...
    for (path, id) in [
        ("/health", "probe-health"),
        ("/ready", "probe-ready"),
        ("/metrics", "probe-metrics"),
    ] {
        let (code, echoed) = get_with_id(&accord, path, Some(id)).await;
        assert_eq!((code, echoed.as_str()), (200, id), "{path}");
    }
    // ...every other request is, with the id it was given or one made for it.
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/sources/local/sync", accord.url))
        .bearer_auth(TOKEN)
        .header("x-request-id", "sync-from-ci-42")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-request-id"], "sync-from-ci-42");
    let (code, made) = get_with_id(&accord, "/api/v1/nothing-here", None).await;
    assert_eq!(code, 404);
    assert_eq!(made.len(), 36, "a UUID: {made:?}");

    let logged = eventually(WAIT, || async {
        let log = accord.log_text();
        request_line(&log, "sync-from-ci-42").is_some() && request_line(&log, &made).is_some()
    })
    .await;
    let log = accord.log_text();
    assert!(logged, "{log}");
    let sync = request_line(&log, "sync-from-ci-42").expect("logged");
    assert_eq!(sync["level"], "INFO", "{sync}");
    assert_eq!(
        sync["span"]["route"], "/api/v1/sources/{name}/sync",
        "{sync}"
    );
    assert_eq!(sync["span"]["method"], "POST", "{sync}");
    assert_eq!(sync["fields"]["status"], 200, "{sync}");
    assert!(
        sync["fields"]["duration_ms"]
            .as_f64()
            .is_some_and(|d| d > 0.0),
        "{sync}"
    );
    let unknown = request_line(&log, &made).expect("logged");
    assert_eq!(unknown["span"]["route"], "unmatched", "{unknown}");
    assert_eq!(unknown["fields"]["status"], 404, "{unknown}");
    // The probes were answered, and so logged if at all, before the sync
    // was even sent.
    for id in ["probe-health", "probe-ready", "probe-metrics"] {
        assert!(!log.contains(id), "`{id}` logged at info:\n{log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_fails_until_every_source_has_synced_once() {
    let setup = Setup::new(Backend::Sqlite, "    interval: 1h\n", false).await;
    std::fs::write(
        setup.folder.join("permits.yaml"),
        "- id: p1\n  permissionId: svc:read\n  rolez: [svc:reader]\n",
    )
    .expect("write");
    let accord = setup.start().await;
    accord
        .wait_for(SOURCE, WAIT, |s| s["state"] == "Error")
        .await;
    for path in ["/ready", "/readyz"] {
        let response = call(reqwest::Method::GET, &format!("{}{path}", accord.url), None).await;
        assert_problem(&format!("{path} before a sync"), &response, 503);
    }

    setup.declare("permits.yaml", &[grant("p1", "svc:reader")]);
    let revision = setup.revision();
    accord
        .wait_for(SOURCE, WAIT, |s| synced_at(s, &revision))
        .await;
    for path in ["/ready", "/readyz"] {
        let (code, _) = accord.get(path).await;
        assert_eq!(code, 200, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_revision_is_rejected_whole_and_the_last_good_state_stays() {
    let setup = Setup::new(Backend::Sqlite, "    interval: 500ms\n", false).await;
    setup.declare("permits.yaml", &[grant("p1", "svc:reader")]);
    let accord = setup.start().await;
    let good = setup.revision();
    accord.wait_for(SOURCE, WAIT, |s| synced_at(s, &good)).await;

    // A valid change next to a typo: neither is applied.
    setup.declare(
        "permits.yaml",
        &[grant("p1", "svc:reader"), grant("p2", "svc:reader")],
    );
    let bad_file = setup.folder.join("typo.yaml");
    std::fs::write(
        &bad_file,
        "- id: p3\n  permissionId: svc:p3\n  rolez: [svc:reader]\n",
    )
    .expect("write");
    let bad = setup.revision();
    let status = accord
        .wait_for(SOURCE, WAIT, |s| {
            s["state"] == "Error" && s["lastAttemptedRevision"] == bad.as_str()
        })
        .await;
    let errors: Vec<&str> = status["errors"]
        .as_array()
        .map(|e| e.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let expected = format!("{}:3:3: unknown field `rolez`", bad_file.display());
    assert!(
        errors.len() == 1 && errors[0].starts_with(&expected),
        "expected `{expected}…`, got {errors:?}"
    );
    assert_eq!(status["lastAppliedRevision"], good.as_str());
    assert!(
        status["message"]
            .as_str()
            .is_some_and(|m| m.contains("not applied")),
        "{status}"
    );
    accord.wait_for_attempts(SOURCE, 3).await;
    assert_eq!(setup.db.scalar("SELECT COUNT(*) FROM permits").await, 1);
    assert_eq!(
        setup.db.scalar("SELECT COUNT(*) FROM sync_runs").await,
        1,
        "nothing of the bad revision was applied"
    );

    std::fs::write(
        &bad_file,
        documents(&[permit("p3").permission("svc:p3").build()]),
    )
    .expect("fix");
    let fixed = setup.revision();
    let status = accord
        .wait_for(SOURCE, WAIT, |s| synced_at(s, &fixed))
        .await;
    assert!(status
        .get("errors")
        .is_none_or(|e| e == &serde_json::json!([])));
    assert_eq!(setup.db.scalar("SELECT COUNT(*) FROM permits").await, 3);
}

// ---- the per-organization GitOps switch -----------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_organization_disabled_over_the_api_is_left_alone_until_enabled() {
    let setup = Setup::new(Backend::Sqlite, "    interval: 500ms\n", true).await;
    setup.declare(
        "orgs.yaml",
        &[org("acme")
            .name("Acme")
            .member("ann@acme.com", "admin")
            .build()],
    );
    let (accord, _) = setup.start_synced().await;
    let name = || {
        text(
            &setup.db,
            "SELECT name FROM organizations WHERE slug = 'acme'",
        )
    };
    let gitops = "/api/v1/organizations/acme/gitops";
    let (code, body) = accord.get(&format!("{gitops}/status")).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["state"], "Synced", "{body}");

    let (code, _) = accord.post(&format!("{gitops}/disable"), None).await;
    assert_eq!(code, 401, "the switch needs the token");
    let (code, body) = accord.post(&format!("{gitops}/disable"), Some(TOKEN)).await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = accord.get(&format!("{gitops}/status")).await;
    assert_eq!(code, 200);
    assert_eq!(body["slug"], "acme");
    assert_eq!(body["state"], "Suspended", "{body}");
    accord
        .wait_for(SOURCE, WAIT, |s| s["counts"]["suspended"] == 1)
        .await;

    setup
        .db
        .exec("UPDATE organizations SET name = 'Hacked' WHERE slug = 'acme'")
        .await
        .expect("hand edit");
    accord.wait_for_attempts(SOURCE, 3).await;
    assert_eq!(
        name().await.as_deref(),
        Some("Hacked"),
        "a suspended organization is not corrected"
    );
    assert_eq!(
        setup
            .db
            .scalar("SELECT COUNT(*) FROM audit_log WHERE action LIKE 'drift%'")
            .await,
        0
    );

    let (code, body) = accord.post(&format!("{gitops}/enable"), Some(TOKEN)).await;
    assert_eq!(code, 200, "{body}");
    assert_ne!(body["state"], "Suspended", "{body}");
    let corrected = eventually(FEW_INTERVALS, || async {
        name().await.as_deref() == Some("Acme")
    })
    .await;
    assert!(corrected, "enabled again, the hand edit is put back");
    let entries = audit(&accord, "kind=Organization&limit=1").await;
    assert_eq!(entries[0]["action"], "drift_corrected");
    assert_eq!(entries[0]["id"], "acme");

    let (code, body) = accord.get(&format!("{gitops}/status")).await;
    assert_eq!(code, 200);
    assert_eq!(body["state"], "Synced", "{body}");
    for (method, path) in [
        (reqwest::Method::GET, "status"),
        (reqwest::Method::GET, "drift"),
        (reqwest::Method::POST, "disable"),
        (reqwest::Method::POST, "enable"),
        (reqwest::Method::POST, "sync"),
    ] {
        let response = call(
            method,
            &format!("{}/api/v1/organizations/nobody/gitops/{path}", accord.url),
            Some(&format!("Bearer {TOKEN}")),
        )
        .await;
        assert_problem(&format!("unknown slug, {path}"), &response, 404);
    }
}

/// The permit `p1` and the org `acme`, the org with `gitops: false` when `suspended`.
fn declare_suspended_org(setup: &Setup, suspended: bool) {
    let mut text = documents(&[grant("p1", "svc:reader")]);
    text.push_str("---\n");
    text.push_str(&object_yaml(Some(&org("acme").name("Acme").build())));
    if suspended {
        text.push_str("gitops: false\n");
    }
    std::fs::write(setup.folder.join("access.yaml"), text).expect("write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitops_false_in_yaml_suspends_the_organization_and_leaves_its_row_alone() {
    let setup = Setup::new(Backend::Sqlite, "    interval: 500ms\n", false).await;
    declare_suspended_org(&setup, false);
    let (accord, _) = setup.start_synced().await;
    let name = || {
        text(
            &setup.db,
            "SELECT name FROM organizations WHERE slug = 'acme'",
        )
    };
    assert_eq!(name().await.as_deref(), Some("Acme"));

    declare_suspended_org(&setup, true);
    let suspended = setup.revision();
    let status = accord
        .wait_for(SOURCE, WAIT, |s| synced_at(s, &suspended))
        .await;
    assert_eq!(status["counts"]["suspended"], 1, "{status}");
    assert!(
        status["message"]
            .as_str()
            .is_some_and(|m| m.contains("1 suspended")),
        "{status}"
    );

    setup
        .db
        .exec("UPDATE organizations SET name = 'Hacked' WHERE slug = 'acme'")
        .await
        .expect("hand edit");
    accord.wait_for_attempts(SOURCE, 3).await;
    assert_eq!(name().await.as_deref(), Some("Hacked"), "left alone");
    assert_eq!(
        setup
            .db
            .scalar("SELECT COUNT(*) FROM audit_log WHERE action LIKE 'drift%'")
            .await,
        0
    );

    declare_suspended_org(&setup, false);
    let resumed = setup.revision();
    accord
        .wait_for(SOURCE, WAIT, |s| synced_at(s, &resumed))
        .await;
    let corrected = eventually(FEW_INTERVALS, || async {
        name().await.as_deref() == Some("Acme")
    })
    .await;
    assert!(corrected, "reconciled again once `gitops: false` is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_organization_suspended_in_yaml_reads_as_suspended_on_its_gitops_status() {
    let setup = Setup::new(Backend::Sqlite, "    interval: 500ms\n", false).await;
    declare_suspended_org(&setup, false);
    let (accord, _) = setup.start_synced().await;
    declare_suspended_org(&setup, true);
    let suspended = setup.revision();
    accord
        .wait_for(SOURCE, WAIT, |s| synced_at(s, &suspended))
        .await;
    let (code, body) = accord.get("/api/v1/organizations/acme/gitops/status").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["state"], "Suspended", "{body}");
}

// ---- the CLI against a server ---------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_drift_and_audit_commands_read_a_running_server() {
    let setup = Setup::new(Backend::Sqlite, "    interval: 1h\n", false).await;
    setup.declare(
        "permits.yaml",
        &[grant("p1", "svc:reader"), grant("p2", "svc:reader")],
    );
    let (accord, revision) = setup.start_synced().await;
    let server = accord.url.clone();
    let server = server.as_str();

    let table = cli(&["status", "--server", server]);
    let row = table
        .lines()
        .find(|l| l.starts_with(SOURCE))
        .unwrap_or_else(|| panic!("no row for the source in\n{table}"));
    assert!(
        row.contains("directory") && row.contains("Synced") && row.contains(&revision[..12]),
        "{table}"
    );
    assert!(
        !table.contains('\u{1b}'),
        "no color when told never: {table:?}"
    );

    let json = cli(&["status", "--server", server, "--output", "json"]);
    let parsed: Value = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    assert_eq!(parsed["sources"][0]["name"], SOURCE, "{parsed:#}");
    assert_eq!(parsed["sources"][0]["state"], "Synced");

    let drift = cli(&["drift", "--server", server]);
    assert_eq!(drift.trim(), "No open drift.");

    let newest = audit(&accord, "limit=1").await;
    let seq = newest[0]["seq"].as_i64().expect("seq");
    let log = cli(&["audit", "--server", server, "--limit", "1"]);
    let entries: Vec<&str> = log.lines().filter(|l| l.starts_with('#')).collect();
    assert_eq!(entries.len(), 1, "{log}");
    assert!(entries[0].starts_with(&format!("#{seq} ")), "{log}");
    assert!(entries[0].contains("create"), "{log}");

    // With the server gone, the commands fail instead of printing nothing.
    drop(accord);
    let output = Command::new(env!("CARGO_BIN_EXE_accord"))
        .args(["status", "--server", server])
        .env("ACCORD_COLOR", "never")
        .output()
        .expect("run accord");
    assert!(!output.status.success());
}

// ---- shutdown ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_controller_promptly_with_exit_status_zero() {
    let setup = Setup::new(Backend::Sqlite, "    interval: 500ms\n", false).await;
    setup.declare("permits.yaml", &[grant("p1", "svc:reader")]);
    let mut accord = setup.start().await;
    let revision = setup.revision();
    accord
        .wait_for(SOURCE, WAIT, |s| synced_at(s, &revision))
        .await;

    let asked = Instant::now();
    let signalled = Command::new("kill")
        .arg("-TERM")
        .arg(accord.child.id().to_string())
        .status()
        .expect("kill");
    assert!(signalled.success());
    let mut exit = None;
    while exit.is_none() && asked.elapsed() < Duration::from_secs(10) {
        exit = accord.child.try_wait().expect("try_wait");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let exit = exit.unwrap_or_else(|| panic!("still running 10s after SIGTERM"));
    assert!(
        exit.success(),
        "exit status {exit:?}\n{}",
        accord.log_text()
    );
    assert!(
        accord.log_text().contains("accord stopped"),
        "{}",
        accord.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accord_status_fails_when_a_source_is_in_error_or_no_server_answers() {
    let setup = Setup::new(Backend::Sqlite, "    interval: 1h\n", false).await;
    std::fs::write(setup.folder.join("bad.yaml"), "permissionId: [\n").expect("write");
    let accord = setup.start().await;
    accord
        .wait_for(SOURCE, WAIT, |s| s["state"] == "Error")
        .await;
    let status = Command::new(env!("CARGO_BIN_EXE_accord"))
        .args(["status", "--server", &accord.url])
        .env("ACCORD_COLOR", "never")
        .output()
        .expect("accord status");
    assert_eq!(
        status.status.code(),
        Some(1),
        "a source in error fails the check"
    );
    assert!(String::from_utf8_lossy(&status.stdout).contains("Error"));

    // Fixed, the same check passes.
    std::fs::remove_file(setup.folder.join("bad.yaml")).expect("rm");
    accord
        .wait_for(SOURCE, WAIT, |s| s["state"] == "Synced")
        .await;
    assert_eq!(
        Command::new(env!("CARGO_BIN_EXE_accord"))
            .args(["status", "--server", &accord.url])
            .output()
            .expect("accord status")
            .status
            .code(),
        Some(0)
    );

    let nobody = format!("http://127.0.0.1:{}", free_port());
    let out = Command::new(env!("CARGO_BIN_EXE_accord"))
        .args(["status", "--server", &nobody])
        .output()
        .expect("accord status");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no accord server answers") && stderr.contains("accord run"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_logs_at_info_without_colour_codes_and_as_json_on_request() {
    let setup = Setup::new(Backend::Sqlite, "    interval: 1h\n", false).await;
    setup.declare("p.yaml", &[grant("p1", "svc:a")]);
    let config = setup.config.to_str().expect("utf-8").to_owned();
    // No ACCORD_LOG: the default level.
    let text_log = setup.dir.path().join("text.log");
    let json_log = setup.dir.path().join("json.log");
    for (log, extra) in [(&text_log, None), (&json_log, Some("json"))] {
        let port = free_port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_accord"));
        command
            .args([
                "run",
                "--config",
                &config,
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .env_remove("ACCORD_LOG")
            .stderr(std::fs::File::create(log).expect("log"));
        if let Some(format) = extra {
            command.args(["--log-format", format]);
        }
        let mut child = command.spawn().expect("accord run");
        let applied = eventually(WAIT, || async {
            std::fs::read_to_string(log)
                .unwrap_or_default()
                .contains("sync applied")
        })
        .await;
        let _ = Command::new("kill").arg(child.id().to_string()).status();
        let _ = child.wait();
        // Stopped on the database file, so the second run has nothing to apply:
        // start each on a fresh source name.
        assert!(
            applied,
            "{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::fs::write(
            &setup.config,
            std::fs::read_to_string(&setup.config)
                .expect("config")
                .replace(&format!("name: {SOURCE}\n"), "name: second\n"),
        )
        .expect("rename source");
    }
    let text = std::fs::read_to_string(&text_log).expect("log");
    assert!(text.contains("listening on http://127.0.0.1:"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "colour codes in a log file: {text:?}"
    );
    let json = std::fs::read_to_string(&json_log).expect("log");
    for line in json.lines() {
        let parsed: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(parsed["level"].is_string(), "{line}");
    }
    assert!(json.contains("\"sync applied\""), "{json}");
}
