//! The `accord` binary end to end, on SQLite and PostgreSQL: the exit-code
//! contract, the validate → plan → apply → export round trip, drift injected
//! with SQL, the deletion guard, a failure mid-apply, hostile input.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::cli::{accord_in, Run};
use common::db::{Backend, TestDb};

/// A copy of the bundled examples in a temp dir, and a database.
struct Workspace {
    dir: tempfile::TempDir,
    db: TestDb,
}

impl Workspace {
    async fn new(backend: Backend) -> Workspace {
        let dir = tempfile::tempdir().expect("tempdir");
        copy_dir(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/config"),
            &dir.path().join("config"),
        );
        Workspace {
            dir,
            db: TestDb::new(backend).await,
        }
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    /// Runs `accord <command> --source config --database <db> <extra…>`.
    fn run(&self, command: &str, extra: &[&str]) -> Run {
        let mut args = vec![command, "--source", "config", "--database", &self.db.url];
        args.extend_from_slice(extra);
        accord_in(self.dir.path(), &args)
    }

    fn accord(&self, args: &[&str]) -> Run {
        accord_in(self.dir.path(), args)
    }

    async fn count(&self, table: &str) -> i64 {
        self.db
            .scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .await
    }

    /// Row counts of every table accord writes, to show "nothing changed".
    async fn fingerprint(&self) -> Vec<i64> {
        let mut counts = Vec::new();
        for table in [
            "organizations",
            "organization_members",
            "permits",
            "enrollments",
            "ledger",
            "sync_runs",
            "audit_log",
        ] {
            counts.push(self.count(table).await);
        }
        counts.push(self.db.scalar("SELECT COUNT(*) FROM permits WHERE permission_id = 'payment-svc:payment:process'").await);
        counts
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read examples") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[test]
fn validate_accepts_the_examples_and_locates_every_error() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/config");
    let run = accord_in(
        Path::new("."),
        &["validate", examples.to_str().expect("utf-8 path")],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.starts_with("ok: "), "{}", run.stderr);

    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("a.yaml"),
        "id: p\npermissionId: nope\nroles: [a:b]\n",
    )
    .expect("write");
    std::fs::write(
        dir.path().join("b.yaml"),
        "role: a:b\nuserId: u\ncontactId: c@d.com\n",
    )
    .expect("write");
    let run = accord_in(dir.path(), &["validate", "a.yaml", "b.yaml"]);
    assert_eq!(run.code, 1);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{}", run.stderr);
    assert!(
        lines[0].starts_with("a.yaml:2:15: invalid permissionId `nope`"),
        "{}",
        run.stderr
    );
    assert!(
        lines[1].starts_with("b.yaml:3:12: an enrollment has exactly one of"),
        "{}",
        run.stderr
    );
}

both_backends!(plan_apply_export_round_trip, |backend| async move {
    let ws = Workspace::new(backend).await;
    let plan = ws.run("plan", &["--output", "json"]);
    assert_eq!(plan.code, 2, "changes pending: {}", plan.stderr);
    let plan = json(&plan.stdout);
    assert_eq!(plan["summary"]["create"], 21);
    for field in ["update", "delete", "drift", "conflict", "suspended"] {
        assert_eq!(plan["summary"][field], 0, "{field}");
    }
    let change = &plan["changes"][0];
    for field in ["action", "kind", "app", "id", "diff"] {
        assert!(!change[field].is_null(), "{field} in {change}");
    }
    assert!(change["diff"]
        .as_str()
        .is_some_and(|d| d.contains("+++ after")));

    let apply = ws.run("apply", &["--actor", "ci-bot"]);
    assert_eq!(apply.code, 0, "{}", apply.stderr);
    assert!(apply.stdout.contains("21 created"), "{}", apply.stdout);
    assert_eq!(ws.count("permits").await, 10);

    let again = ws.run("plan", &[]);
    assert_eq!(again.code, 0, "{}{}", again.stdout, again.stderr);
    assert!(again.stdout.contains("No changes"), "{}", again.stdout);

    let export = ws.accord(&["export", "--database", &ws.db.url, "--out", "exported"]);
    assert_eq!(export.code, 0, "{}", export.stderr);
    let validate = ws.accord(&["validate", "exported"]);
    assert_eq!(validate.code, 0, "{}", validate.stderr);
    let round_trip = ws.accord(&[
        "plan",
        "--source",
        "exported",
        "--database",
        &ws.db.url,
        "--output",
        "json",
    ]);
    assert_eq!(
        round_trip.code, 0,
        "{}{}",
        round_trip.stdout, round_trip.stderr
    );
    assert_eq!(json(&round_trip.stdout)["changes"], serde_json::json!([]));

    let refused = ws.accord(&["export", "--database", &ws.db.url, "--out", "exported"]);
    assert_eq!(
        refused.code, 1,
        "export never writes into a non-empty folder"
    );
});

both_backends!(
    drift_injected_with_sql_is_detected_reported_and_corrected,
    |backend| async move {
        let ws = Workspace::new(backend).await;
        assert_eq!(ws.run("apply", &[]).code, 0);
        ws.db
        .exec("UPDATE permits SET permission_id = 'payment-svc:payment:refund' WHERE id = 'order-service-payments'")
        .await
        .expect("hand edit");

        let plan = ws.run("plan", &[]);
        assert_eq!(plan.code, 2, "drift is pending");
        assert!(
            plan.stdout
                .contains("drift     Permit unnamed/order-service-payments (edited by hand)"),
            "{}",
            plan.stdout
        );
        assert!(plan.stdout.contains("-permissionId: payment-svc:payment:refund\n    +permissionId: payment-svc:payment:process"), "{}", plan.stdout);

        let report = ws.run("apply", &["--drift", "report"]);
        assert_eq!(report.code, 0, "{}", report.stderr);
        assert_eq!(
        ws.db.scalar("SELECT COUNT(*) FROM permits WHERE id = 'order-service-payments' AND permission_id = 'payment-svc:payment:refund'").await,
        1,
        "report mode leaves the hand edit in place"
    );
        let correct = ws.run("apply", &[]);
        assert_eq!(correct.code, 0, "{}", correct.stderr);
        assert!(
            correct.stdout.contains("1 drift corrected"),
            "{}",
            correct.stdout
        );
        assert_eq!(ws.run("plan", &[]).code, 0);

        let audit = ws.accord(&[
            "audit",
            "--database",
            &ws.db.url,
            "--output",
            "json",
            "--limit",
            "2",
        ]);
        assert_eq!(audit.code, 0, "{}", audit.stderr);
        let entries = json(&audit.stdout);
        assert_eq!(entries[0]["action"], "drift_corrected");
        assert_eq!(entries[0]["id"], "order-service-payments");
        assert_eq!(
            entries[0]["before"]["permissionId"],
            "payment-svc:payment:refund"
        );
        assert_eq!(entries[1]["action"], "drift_detected");
        let text = ws.accord(&["audit", "--database", &ws.db.url, "--limit", "1"]);
        assert!(
            text.stdout
                .contains("drift_corrected Permit unnamed/order-service-payments"),
            "{}",
            text.stdout
        );
        assert!(
            text.stdout
                .contains("+permissionId: payment-svc:payment:process"),
            "{}",
            text.stdout
        );
    }
);

both_backends!(
    deletion_guard_refuses_with_exit_3_until_forced,
    |backend| async move {
        let ws = Workspace::new(backend).await;
        assert_eq!(ws.run("apply", &[]).code, 0);
        let before = ws.fingerprint().await;

        // A wrong path or an emptied folder: everything would go.
        std::fs::remove_dir_all(ws.path("config")).expect("rm");
        std::fs::create_dir(ws.path("config")).expect("mkdir");
        let refused = ws.run("apply", &[]);
        assert_eq!(refused.code, 3, "{}{}", refused.stdout, refused.stderr);
        assert!(
            refused.stderr.contains("refusing to delete all 21 rows"),
            "{}",
            refused.stderr
        );
        assert_eq!(ws.fingerprint().await, before, "nothing applied");

        // Losing a third of the rows is over the default 25%.
        copy_dir(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/config"),
            &ws.path("config"),
        );
        std::fs::remove_dir_all(ws.path("config/tenants")).expect("rm");
        let refused = ws.run("apply", &[]);
        assert_eq!(refused.code, 3);
        assert!(
            refused.stderr.contains("refusing to delete 8 of 21 rows"),
            "{}",
            refused.stderr
        );
        assert!(refused.stderr.contains("--force"), "{}", refused.stderr);
        assert_eq!(ws.fingerprint().await, before);
        let allowed = ws.run("apply", &["--max-delete-percent", "50"]);
        assert_eq!(allowed.code, 0, "{}", allowed.stderr);
        assert_eq!(ws.count("ledger").await, 13);

        std::fs::remove_dir_all(ws.path("config")).expect("rm");
        std::fs::create_dir(ws.path("config")).expect("mkdir");
        let forced = ws.run("apply", &["--force"]);
        assert_eq!(forced.code, 0, "{}", forced.stderr);
        assert_eq!(ws.count("ledger").await, 0);
        assert_eq!(ws.count("permits").await, 0);
    }
);

both_backends!(
    a_failure_mid_apply_leaves_the_previous_state,
    |backend| async move {
        let ws = Workspace::new(backend).await;
        assert_eq!(ws.run("apply", &[]).code, 0);
        let before = ws.fingerprint().await;
        std::fs::write(
        ws.path("config/permits/service-accounts.yaml"),
        "- id: order-service-payments\n  permissionId: payment-svc:payment:capture\n  slugs: [order-service]\n- id: brand-new\n  permissionId: x:y\n  roles: [a:b]\n",
    )
    .expect("edit");
        ws.db.fail_inserts_into("audit_log").await;
        let failed = ws.run("apply", &["--force"]);
        assert_eq!(failed.code, 1, "{}", failed.stdout);
        assert!(
            failed.stderr.contains("injected failure"),
            "{}",
            failed.stderr
        );
        assert_eq!(ws.fingerprint().await, before, "rolled back whole");
        ws.db.stop_failing("audit_log").await;
        assert_eq!(ws.run("apply", &["--force"]).code, 0);
        assert_eq!(
        ws.db.scalar("SELECT COUNT(*) FROM permits WHERE permission_id = 'payment-svc:payment:capture'").await,
        1
    );
    }
);

both_backends!(an_invalid_source_is_rejected_whole, |backend| async move {
    let ws = Workspace::new(backend).await;
    assert_eq!(ws.run("apply", &[]).code, 0);
    let before = ws.fingerprint().await;
    std::fs::write(
        ws.path("config/permits/typo.yaml"),
        "id: t\npermissionId: x:y\nrolez: [a:b]\n",
    )
    .expect("write");
    std::fs::remove_dir_all(ws.path("config/tenants")).expect("rm");
    let run = ws.run("apply", &["--force"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("typo.yaml:3:1: unknown field `rolez`"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("nothing was applied"), "{}", run.stderr);
    assert_eq!(ws.fingerprint().await, before);
    assert_eq!(ws.run("plan", &[]).code, 1);
});

#[test]
fn hostile_files_fail_cleanly_with_located_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("config");
    std::fs::create_dir(&root).expect("mkdir");
    let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let p = i - 1;
        bomb.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    std::fs::write(root.join("bomb.yaml"), bomb).expect("write");
    std::fs::write(
        root.join("deep.yaml"),
        format!("{}{}", "[".repeat(50_000), "]".repeat(50_000)),
    )
    .expect("write");
    std::fs::write(root.join("big.yaml"), vec![b'#'; 2048]).expect("write");
    std::fs::write(root.join("binary.yaml"), b"slug: acme\nname: \xc3\x28\n").expect("write");
    std::fs::write(root.join("ignored.json"), b"{not yaml").expect("write");
    std::fs::write(dir.path().join("outside.yaml"), "slug: outside\n").expect("write");
    #[cfg(unix)]
    std::os::unix::fs::symlink(dir.path().join("outside.yaml"), root.join("escape.yaml"))
        .expect("symlink");
    let started = std::time::Instant::now();
    let run = accord_in(
        dir.path(),
        &["validate", "config", "--max-file-size", "1024"],
    );
    assert!(
        started.elapsed().as_secs() < 10,
        "hostile input must fail fast"
    );
    assert_eq!(run.code, 1);
    let lines: Vec<&str> = run.stderr.lines().collect();
    let expect = |file: &str, text: &str| {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("config/{file}:")) && l.contains(text)),
            "{file}: {text} not in\n{}",
            run.stderr
        );
    };
    expect("bomb.yaml", "alias bomb");
    expect("deep.yaml", "");
    expect("big.yaml", "over the 1024 byte limit");
    expect("binary.yaml", "not valid UTF-8");
    expect("escape.yaml", "symlink leads out of the source root");
    assert!(!run.stderr.contains("ignored.json"), "{}", run.stderr);
    assert_eq!(lines.len(), 5, "{}", run.stderr);
}

#[tokio::test]
async fn the_default_database_is_a_sqlite_file_created_in_the_working_directory() {
    let ws = Workspace::new(Backend::Sqlite).await;
    let run = ws.accord(&["apply", "--source", "config"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(ws.path("accord.db").exists());
    let absolute = format!("sqlite://{}", ws.path("accord.db").display());
    let plan = Command::new(env!("CARGO_BIN_EXE_accord"))
        .args(["plan", "--source", "config"])
        .current_dir(ws.dir.path())
        .env("ACCORD_DATABASE_URL", &absolute)
        .output()
        .expect("run");
    assert_eq!(
        plan.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&plan.stderr)
    );
    let bad = ws.accord(&["plan", "--source", "config", "--database", "mysql://x"]);
    assert_eq!(bad.code, 1);
    assert!(
        bad.stderr.contains("unsupported database URL"),
        "{}",
        bad.stderr
    );
    for memory in ["sqlite::memory:", "sqlite://accord.db?mode=memory"] {
        let refused = ws.accord(&["plan", "--source", "config", "--database", memory]);
        assert_eq!(refused.code, 1, "{memory}");
        assert!(
            refused.stderr.contains("in-memory SQLite database"),
            "{}",
            refused.stderr
        );
    }
}

#[tokio::test]
async fn plan_output_is_colored_only_on_request_or_on_a_terminal() {
    let ws = Workspace::new(Backend::Sqlite).await;
    let run = |color: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_accord"));
        command
            .args(["plan", "--source", "config", "--database", &ws.db.url])
            .current_dir(ws.dir.path())
            .env_remove("ACCORD_COLOR");
        if let Some(color) = color {
            command.args(["--color", color]);
        }
        String::from_utf8_lossy(&command.output().expect("run").stdout).into_owned()
    };
    // Captured output is not a terminal: plain by default.
    assert!(!run(None).contains('\u{1b}'));
    assert!(run(Some("always")).contains("\u{1b}[32m+"));
    assert!(!run(Some("never")).contains('\u{1b}'));
}

both_backends!(
    deletions_one_apply_at_a_time_add_up_within_the_deletion_window,
    |backend| async move {
        let ws = Workspace::new(backend).await;
        let tree = ws.path("tree");
        std::fs::create_dir(&tree).expect("mkdir");
        for i in 1..=8 {
            std::fs::write(
                tree.join(format!("p{i}.yaml")),
                format!("id: p{i}\npermissionId: svc:act\nslugs: [caller-{i}]\n"),
            )
            .expect("write");
        }
        let apply = |extra: &[&str]| {
            let mut args = vec!["apply", "--source", "tree", "--database", &ws.db.url];
            args.extend_from_slice(extra);
            ws.accord(&args)
        };
        let delete = |i: u32| std::fs::remove_file(tree.join(format!("p{i}.yaml"))).expect("rm");
        assert_eq!(apply(&[]).code, 0);

        // One and then two of eight: each under 25 % alone, and together 25 %.
        delete(1);
        assert_eq!(apply(&[]).code, 0);
        delete(2);
        assert_eq!(apply(&[]).code, 0);
        // A third, alone 1 of 6, is 3 of the 8 the window began with.
        delete(3);
        let refused = apply(&[]);
        assert_eq!(refused.code, 3, "{}{}", refused.stdout, refused.stderr);
        assert!(
            refused.stderr.contains("3 of the 8 rows") && refused.stderr.contains("--force"),
            "{}",
            refused.stderr
        );
        assert_eq!(ws.count("permits").await, 6, "nothing applied");

        // A window of zero judges the apply alone.
        let alone = apply(&["--deletion-window", "0s"]);
        assert_eq!(alone.code, 0, "{}", alone.stderr);
        assert_eq!(ws.count("permits").await, 5);

        // --force applies, and starts a new window.
        delete(4);
        assert_eq!(apply(&[]).code, 3);
        let forced = apply(&["--force"]);
        assert_eq!(forced.code, 0, "{}", forced.stderr);
        assert_eq!(ws.count("permits").await, 4);
        delete(5);
        let after = apply(&[]);
        assert_eq!(after.code, 0, "1 of 4 in a new window: {}", after.stderr);
        assert_eq!(ws.count("permits").await, 3);
    }
);

both_backends!(
    a_nul_byte_in_a_name_is_refused_at_validation_and_never_wedges_the_source,
    |backend| async move {
        let ws = Workspace::new(backend).await;
        let bad = "slug: nul-org\nname: \"Nul\\0Org\"\n";
        std::fs::write(ws.path("config/nul.yaml"), bad).expect("write");
        let validate = ws.accord(&["validate", "config"]);
        assert_eq!(validate.code, 1);
        assert!(
            validate.stderr.contains("nul.yaml:2:7: invalid name"),
            "{}",
            validate.stderr
        );
        let refused = ws.run("apply", &[]);
        assert_eq!(refused.code, 1, "{}", refused.stderr);
        assert!(
            refused.stderr.contains("nul.yaml:2:7:"),
            "{}",
            refused.stderr
        );
        assert_eq!(ws.count("organizations").await, 0, "nothing applied");

        // Fixed, the same source applies at once.
        std::fs::write(ws.path("config/nul.yaml"), "slug: nul-org\nname: Nul Org\n")
            .expect("write");
        let applied = ws.run("apply", &[]);
        assert_eq!(applied.code, 0, "{}", applied.stderr);
        assert!(ws.count("organizations").await > 0);
    }
);

#[test]
fn usage_errors_exit_1_not_the_2_that_means_changes_pending() {
    let dir = tempfile::tempdir().expect("tempdir");
    for args in [
        &["plan", "--sourc", "x"][..],
        &["apply", "--source", "x", "--drift", "bogus"],
        &["frobnicate"],
        &[],
    ] {
        let run = accord_in(dir.path(), args);
        assert_eq!(run.code, 1, "accord {args:?}: {}", run.stderr);
    }
    assert_eq!(accord_in(dir.path(), &["--help"]).code, 0);
    assert_eq!(accord_in(dir.path(), &["--version"]).code, 0);
}

#[tokio::test]
async fn after_an_apply_the_database_file_alone_holds_everything() {
    let ws = Workspace::new(Backend::Sqlite).await;
    assert_eq!(ws.run("apply", &[]).code, 0);
    let file = ws.db.url.trim_start_matches("sqlite://").to_owned();
    let copy = ws.path("copy.db");
    // Only the main file: a write-ahead log left beside it is not copied.
    std::fs::copy(&file, &copy).expect("copy");
    let url = format!("sqlite://{}", copy.display());
    let plan = ws.accord(&["plan", "--source", "config", "--database", &url]);
    assert_eq!(
        plan.code, 0,
        "the copy lacks what was applied:\n{}",
        plan.stdout
    );
}
