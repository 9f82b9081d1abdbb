//! The history is tamper-evident on both backends: every way of changing
//! `sync_runs` or `audit_log` behind accord's back (an update with the
//! triggers out of the way, a delete, a forged insert, a SQLite REPLACE) is
//! found by `accord audit verify`, which names the first row concerned; and
//! `accord run` finds it too, in its status and metrics.

mod common;

use std::path::Path;
use std::time::Duration;

use common::cli::{accord_in, Run};
use common::controller::Controller;
use common::db::{Backend, TestDb};
use serde_json::Value;

/// `accord` run from the crate's folder.
fn accord(args: &[&str]) -> Run {
    accord_in(Path::new(env!("CARGO_MANIFEST_DIR")), args)
}

fn examples() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/config")
        .display()
        .to_string()
}

/// A database holding two sync runs: the examples' 21 creates, then one
/// permit edited by hand and put back (one more audit row).
async fn history(backend: Backend) -> TestDb {
    let db = TestDb::new(backend).await;
    let apply = || accord(&["apply", "--source", &examples(), "--database", &db.url]);
    assert_eq!(apply().code, 0);
    db.exec("UPDATE permits SET permission_id = 'x:y' WHERE id = 'order-service-payments'")
        .await
        .expect("edit");
    assert_eq!(apply().code, 0);
    assert_eq!(db.scalar("SELECT COUNT(*) FROM audit_log").await, 22);
    assert_eq!(db.scalar("SELECT COUNT(*) FROM sync_runs").await, 2);
    db
}

fn verify(db: &TestDb) -> Run {
    accord(&["audit", "verify", "--database", &db.url])
}

fn assert_broken(db: &TestDb, what: &str, expected: &str) {
    let run = verify(db);
    assert_eq!(run.code, 1, "{what}: verify passed: {}", run.stdout);
    assert!(
        run.stderr.contains(expected),
        "{what}: expected `{expected}` in: {}",
        run.stderr
    );
}

/// Lets the owner write the history as an attacker with its role would.
async fn drop_guards(db: &TestDb) {
    let sql = match db.backend {
        Backend::Sqlite => {
            "DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete; \
             DROP TRIGGER audit_log_no_replace; DROP TRIGGER sync_runs_no_update; \
             DROP TRIGGER sync_runs_no_delete; DROP TRIGGER sync_runs_no_replace;"
        }
        Backend::Postgres => {
            "ALTER TABLE audit_log DISABLE TRIGGER USER; ALTER TABLE sync_runs DISABLE TRIGGER USER;"
        }
    };
    db.exec(sql).await.expect("drop the guards");
}

/// An audit row inserted by hand, as a forger would; `hashes_of`: with the
/// hashes of that genuine row copied.
fn forged(seq: Option<i64>, hashes_of: Option<i64>) -> String {
    let (columns, values) = match hashes_of {
        Some(of) => (
            ", row_hash, chain_hash",
            format!(
                ", (SELECT row_hash FROM audit_log WHERE seq = {of}), (SELECT chain_hash FROM audit_log WHERE seq = {of})"
            ),
        ),
        None => ("", String::new()),
    };
    let (seq_column, seq_value) = match seq {
        Some(seq) => ("seq, ", format!("{seq}, ")),
        None => ("", String::new()),
    };
    format!(
        "INSERT INTO audit_log ({seq_column}at, actor, source, revision, sync_run, action, kind, app, object_id, before, after, diff{columns}) \
         VALUES ({seq_value}'2026-01-01T00:00:00.000000Z', 'alice', 'default', 'r', 2, 'create', 'Permit', 'unnamed', 'backdoor', NULL, '{{}}', ''{values})"
    )
}

both_backends!(a_clean_history_verifies, |backend| async move {
    let db = history(backend).await;
    let run = verify(&db);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("2 sync run(s), 22 audit row(s)"),
        "{}",
        run.stdout
    );
    let json = accord(&["audit", "verify", "--database", &db.url, "--output", "json"]);
    let report: Value = serde_json::from_str(&json.stdout).expect("json");
    assert_eq!(report["ok"], true);
    assert_eq!(report["head"]["auditLog"]["id"], 22);
});

both_backends!(
    an_audit_row_updated_with_the_triggers_out_of_the_way_is_found,
    |backend| async move {
        let db = history(backend).await;
        drop_guards(&db).await;
        db.exec("UPDATE audit_log SET actor = 'mallory' WHERE seq = 7")
            .await
            .expect("edit");
        assert_broken(&db, "update", "audit_log row 7 was edited");
    }
);

both_backends!(
    a_sync_run_updated_with_the_triggers_out_of_the_way_is_found,
    |backend| async move {
        let db = history(backend).await;
        drop_guards(&db).await;
        db.exec("UPDATE sync_runs SET deleted = 0, actor = 'nobody' WHERE id = 1")
            .await
            .expect("edit");
        assert_broken(&db, "update", "sync_runs row 1 was edited");
    }
);

both_backends!(
    a_sync_runs_cause_is_recorded_and_covered_by_its_hash,
    |backend| async move {
        let db = history(backend).await;
        assert_eq!(
            db.scalar("SELECT COUNT(*) FROM sync_runs WHERE cause = 'accord apply'")
                .await,
            2
        );
        drop_guards(&db).await;
        db.exec("UPDATE sync_runs SET cause = 'webhook' WHERE id = 2")
            .await
            .expect("edit");
        assert_broken(&db, "cause changed", "sync_runs row 2 was edited");
        // Taken away, as if the row predated causes: its hash no longer
        // matches either.
        db.exec("UPDATE sync_runs SET cause = NULL WHERE id = 2")
            .await
            .expect("edit");
        assert_broken(&db, "cause removed", "sync_runs row 2 was edited");
    }
);

both_backends!(
    an_audit_row_deleted_is_found_in_the_middle_and_at_the_end,
    |backend| async move {
        let db = history(backend).await;
        drop_guards(&db).await;
        db.exec("DELETE FROM audit_log WHERE seq = 12")
            .await
            .expect("delete");
        assert_broken(&db, "delete", "audit_log row 13 does not follow");

        let db = history(backend).await;
        drop_guards(&db).await;
        db.exec("DELETE FROM audit_log WHERE seq = 22")
            .await
            .expect("delete");
        assert_broken(
            &db,
            "delete of the newest",
            "sync run 2 wrote 1 audit row(s) and 0 are left",
        );
    }
);

both_backends!(
    a_forged_audit_row_is_found_with_or_without_hashes,
    |backend| async move {
        // Without hashes, as anyone who does not know the chain would.
        let db = history(backend).await;
        db.exec(&forged(None, None)).await.expect("forge");
        assert_broken(&db, "forged insert", "audit_log row 23 was inserted");

        // With the hashes of the newest genuine row copied.
        let db = history(backend).await;
        db.exec(&forged(None, Some(22))).await.expect("forge");
        assert_broken(
            &db,
            "forged insert with hashes",
            "audit_log row 23 was edited",
        );
    }
);

both_backends!(
    a_row_replaced_in_place_is_refused_or_found,
    |backend| async move {
        let db = history(backend).await;
        let replace = match backend {
            // REPLACE deletes the old row without firing delete triggers.
            Backend::Sqlite => forged(Some(5), None).replacen("INSERT", "INSERT OR REPLACE", 1),
            Backend::Postgres => format!(
                "{} ON CONFLICT (seq) DO UPDATE SET actor = excluded.actor",
                forged(Some(5), None).replacen(
                    ") VALUES (",
                    ") OVERRIDING SYSTEM VALUE VALUES (",
                    1
                )
            ),
        };
        let refused = db
            .exec(&replace)
            .await
            .expect_err("the database refuses it");
        assert!(refused.to_string().contains("append-only"), "{refused}");
        assert_eq!(verify(&db).code, 0);

        // With the guards gone, it is still found.
        drop_guards(&db).await;
        db.exec(&replace).await.expect("replace");
        assert_broken(&db, "replace", "audit_log row 5 was");
    }
);

both_backends!(
    the_controller_verifies_the_history_and_shows_a_broken_chain,
    |backend| async move {
        let db = history(backend).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("accord.yaml");
        std::fs::write(
            &config,
            format!(
                "database: {}\nauditVerifyInterval: 200ms\nsources:\n  - name: default\n    directory:\n      path: {}\n    interval: 1h\n",
                db.url,
                examples()
            ),
        )
        .expect("config");
        let accord = Controller::start(dir.path(), &config).await;
        let status = wait_for_chain(&accord, |c| c["ok"] == true).await;
        assert_eq!(status["auditRows"], 22, "{status:#}");
        assert_eq!(metric(&accord).await, Some(1.0));

        // Rows verified at start are removed: the next check finds it.
        drop_guards(&db).await;
        db.exec("DELETE FROM audit_log WHERE seq = 22; DELETE FROM sync_runs WHERE id = 2")
            .await
            .expect("delete");
        let status = wait_for_chain(&accord, |c| c["ok"] == false).await;
        assert!(
            status["problem"]
                .as_str()
                .unwrap_or_default()
                .contains("sync_runs row 2, verified earlier, was removed or rewritten"),
            "{status:#}"
        );
        assert_eq!(metric(&accord).await, Some(0.0));
        assert!(accord.log_text().contains("hash chain is broken"));
        let page = reqwest::get(&accord.url)
            .await
            .expect("dashboard")
            .text()
            .await
            .expect("text");
        assert!(page.contains("The audit history is broken"), "{page}");
    }
);

async fn wait_for_chain(accord: &Controller, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, body) = accord.get("/api/v1/status").await;
        if check(&body["auditChain"]) {
            return body["auditChain"].clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{body:#}\n{}",
            accord.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn metric(accord: &Controller) -> Option<f64> {
    let text = reqwest::get(format!("{}/metrics", accord.url))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find(|l| l.starts_with("accord_audit_chain_ok "))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// On PostgreSQL the service can run as a role that only adds to the
/// history, while an owner role applies the migrations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_role_applies_and_cannot_touch_the_history() {
    let db = TestDb::new(Backend::Postgres).await;
    // The owner applies the migrations and the grants.
    assert_eq!(accord(&["audit", "verify", "--database", &db.url]).code, 0);
    db.exec(
        "DO $$ BEGIN CREATE ROLE accord_app LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$",
    )
    .await
    .expect("role");
    let grants = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/postgres-roles.sql"),
    )
    .expect("grants");
    db.exec(&grants).await.expect("grants apply");
    let app_url = db.url.replacen("://postgres@", "://accord_app@", 1);
    assert_ne!(
        app_url, db.url,
        "the test server's URL names the postgres user"
    );

    // accord applies as the app role, migrations (none pending) through the owner.
    let applied = accord(&[
        "apply",
        "--source",
        &examples(),
        "--database",
        &app_url,
        "--migrate-database",
        &db.url,
    ]);
    assert_eq!(applied.code, 0, "{}", applied.stderr);
    let verified = accord(&["audit", "verify", "--database", &app_url]);
    assert_eq!(verified.code, 0, "{}", verified.stderr);

    // What the app role cannot do to the history, whatever the triggers.
    let app = TestDb::attach(Backend::Postgres, &app_url);
    for sql in [
        "UPDATE audit_log SET actor = 'mallory'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
        "ALTER TABLE audit_log DISABLE TRIGGER USER",
        "DROP TRIGGER audit_log_no_update_or_delete ON audit_log",
        "UPDATE sync_runs SET actor = 'mallory'",
        "DELETE FROM sync_runs",
        "ALTER TABLE sync_runs DISABLE TRIGGER USER",
        "UPDATE audit_chain SET legacy_through = 1000",
    ] {
        let error = app.exec(sql).await.expect_err(sql);
        assert!(
            error.to_string().contains("permission denied")
                || error.to_string().contains("must be owner"),
            "{sql}: {error}"
        );
    }

    // A migration the app role cannot apply is an error that says what to do.
    db.exec(
        "DELETE FROM _sqlx_migrations WHERE version = (SELECT MAX(version) FROM _sqlx_migrations)",
    )
    .await
    .expect("pretend a migration is pending");
    let refused = accord(&["audit", "verify", "--database", &app_url]);
    assert_eq!(refused.code, 1);
    assert!(
        refused.stderr.contains("--migrate-database"),
        "{}",
        refused.stderr
    );
}
