//! Two writers of one source at once: `accord apply` runs started together,
//! and `accord apply` beside a running controller. Each apply plans from
//! rows read under the source's lock, so the database always ends up holding
//! exactly one tree, and the audit log records only states that existed.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};

use std::time::Duration;

use common::controller::{eventually, Controller};
use common::db::{Backend, TestDb};
use serde_json::Value;

/// Permits p000…p{n-1}; those in `edited` grant `role` instead of `r:base`.
fn write_tree(dir: &Path, n: usize, edited: std::ops::Range<usize>, role: &str) {
    std::fs::create_dir_all(dir).expect("tree dir");
    let mut yaml = String::new();
    for i in 0..n {
        let granted = if edited.contains(&i) { role } else { "r:base" };
        yaml.push_str(&format!(
            "- id: p{i:03}\n  permissionId: svc:act\n  roles: [\"{granted}\"]\n"
        ));
    }
    std::fs::write(dir.join("permits.yaml"), yaml).expect("write tree");
}

fn accord(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_accord"));
    command
        .args(args)
        .env_remove("ACCORD_DATABASE_URL")
        .env("ACCORD_COLOR", "never")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn apply(tree: &Path, url: &str) -> Command {
    accord(&[
        "apply",
        "--source",
        tree.to_str().expect("utf-8 path"),
        "--database",
        url,
        "--source-name",
        "shared",
        "--actor",
        "tester",
    ])
}

fn plan_exit(tree: &Path, url: &str) -> i32 {
    let out = accord(&[
        "plan",
        "--source",
        tree.to_str().expect("utf-8 path"),
        "--database",
        url,
        "--source-name",
        "shared",
    ])
    .output()
    .expect("run plan");
    out.status.code().unwrap_or(-1)
}

fn run_ok(mut command: Command) {
    let out = command.output().expect("run accord");
    assert!(
        out.status.success(),
        "accord failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every audit row's `before` is the previous row's `after` for its object:
/// the log records only states that existed.
fn assert_audit_is_a_chain_of_real_states(url: &str) {
    let out = accord(&[
        "audit",
        "--database",
        url,
        "--limit",
        "1000000",
        "--output",
        "json",
    ])
    .output()
    .expect("run audit");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut entries: Vec<Value> = serde_json::from_slice(&out.stdout).expect("audit json");
    entries.sort_by_key(|e| e["seq"].as_i64());
    let mut last: HashMap<String, Value> = HashMap::new();
    for entry in entries {
        let object = format!("{}/{}/{}", entry["kind"], entry["app"], entry["id"]);
        let before = entry["before"].clone();
        if let Some(previous) = last.get(&object) {
            assert_eq!(
                &before, previous,
                "audit row {} of {object} records a `before` that is not what the row before it left",
                entry["seq"]
            );
        }
        last.insert(object, entry["after"].clone());
    }
}

const OBJECTS: usize = 200;
const ROUNDS: usize = 20;

both_backends!(
    two_applies_of_different_trees_started_together_leave_exactly_one_tree,
    |backend| async move {
        let db = TestDb::new(backend).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let (base, a, b) = (
            dir.path().join("base"),
            dir.path().join("a"),
            dir.path().join("b"),
        );
        // A edits the first half, B the second: applied over each other's
        // plan, they would leave both halves edited, which neither declares.
        write_tree(&base, OBJECTS, 0..0, "");
        write_tree(&a, OBJECTS, 0..OBJECTS / 2, "r:a");
        write_tree(&b, OBJECTS, OBJECTS / 2..OBJECTS, "r:b");
        for round in 0..ROUNDS {
            run_ok(apply(&base, &db.url));
            let first = apply(&a, &db.url).spawn();
            let second = apply(&b, &db.url).spawn();
            for (child, tree) in [(first, "a"), (second, "b")] {
                let out = child
                    .expect("spawn")
                    .wait_with_output()
                    .expect("wait for apply");
                assert!(
                    out.status.success(),
                    "round {round}: apply of {tree} failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let holds = [plan_exit(&a, &db.url), plan_exit(&b, &db.url)];
            assert!(
                holds == [0, 2] || holds == [2, 0],
                "round {round}: the database must hold exactly one of the trees (plan exits {holds:?})"
            );
        }
        assert_audit_is_a_chain_of_real_states(&db.url);
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apply_beside_the_controller_takes_turns_with_it() {
    let db = TestDb::new(Backend::Sqlite).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (watched, other) = (dir.path().join("watched"), dir.path().join("other"));
    write_tree(&watched, OBJECTS, 0..OBJECTS / 2, "r:a");
    write_tree(&other, OBJECTS, OBJECTS / 2..OBJECTS, "r:b");
    let watched_arg = watched.to_str().expect("utf-8 path");
    let controller = Controller::start_with(
        dir.path(),
        &[
            "run",
            "--directory",
            watched_arg,
            "--source-name",
            "shared",
            "--interval",
            "100ms",
            "--database",
            &db.url,
        ],
    )
    .await;
    controller
        .wait_for("shared", Duration::from_secs(30), |s| {
            s["state"] == "Synced"
        })
        .await;
    for round in 0..5 {
        let out = apply(&other, &db.url).output().expect("run apply");
        assert!(
            out.status.success(),
            "round {round}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The controller puts its own tree back at one of its next turns.
    let back = eventually(Duration::from_secs(30), || async {
        plan_exit(&watched, &db.url) == 0
    })
    .await;
    assert!(
        back,
        "the controller did not put its tree back:\n{}",
        controller.log_text()
    );
    drop(controller);
    assert_audit_is_a_chain_of_real_states(&db.url);
}
