//! The deletion guard in `accord run`: deletions add up over the window, a
//! refusal shows in the status, the metrics and the log, and an operator
//! approves exactly the refused set (`accord approve` or the API).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::controller::{documents, grant, Controller};
use common::db::{Backend, TestDb};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);
const SOURCE: &str = "local";
const TOKEN: &str = "approv3r-t0ken";

struct Setup {
    dir: tempfile::TempDir,
    db: TestDb,
    folder: PathBuf,
    token: PathBuf,
}

impl Setup {
    async fn new(backend: Backend, files: usize) -> (Setup, Controller) {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = TestDb::new(backend).await;
        let folder = dir.path().join("config");
        std::fs::create_dir(&folder).expect("mkdir");
        for i in 1..=files {
            let file = folder.join(format!("p{i}.yaml"));
            std::fs::write(file, documents(&[grant(&format!("p{i}"), "svc:reader")]))
                .expect("write");
        }
        let token = dir.path().join("api-token");
        std::fs::write(&token, TOKEN).expect("token");
        let config = dir.path().join("accord.yaml");
        std::fs::write(
            &config,
            format!(
                "database: {}\napiTokenFile: {}\nsources:\n  - name: {SOURCE}\n    directory:\n      path: {}\n    interval: 1h\n    maxDeletePercent: 25\n    deletionWindow: 10m\n",
                db.url,
                token.display(),
                folder.display()
            ),
        )
        .expect("config");
        let accord = Controller::start(dir.path(), &config).await;
        let setup = Setup {
            dir,
            db,
            folder,
            token,
        };
        accord
            .wait_for(SOURCE, WAIT, |s| s["counts"]["managed"] == files)
            .await;
        (setup, accord)
    }

    fn delete(&self, i: usize) {
        std::fs::remove_file(self.folder.join(format!("p{i}.yaml"))).expect("rm");
    }

    async fn permits(&self) -> i64 {
        self.db.scalar("SELECT COUNT(*) FROM permits").await
    }
}

/// Asks for a sync and returns the status after it.
async fn sync(accord: &Controller) -> Value {
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/sources/{SOURCE}/sync", accord.url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("request");
    assert!(response.status().is_success());
    response.json().await.expect("status")
}

fn approve(accord: &Controller, token: &Path, set: Option<&str>) -> (bool, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_accord"));
    command
        .args([
            "approve",
            SOURCE,
            "--server",
            &accord.url,
            "--as",
            "oncall@example.com",
        ])
        .arg("--token-file")
        .arg(token)
        .env_remove("ACCORD_SERVER");
    if let Some(set) = set {
        command.args(["--set", set]);
    }
    let out = command.output().expect("run accord approve");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout),
    )
}

async fn metric(accord: &Controller, name: &str) -> f64 {
    let text = reqwest::get(format!("{}/metrics", accord.url))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(&format!("source=\"{SOURCE}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

both_backends!(
    deletions_one_sync_at_a_time_are_refused_over_the_window_and_approved_as_a_set,
    |backend| async move {
        let (setup, accord) = Setup::new(backend, 8).await;

        // Two of eight, one sync each: together 25 %, allowed.
        for i in [1, 2] {
            setup.delete(i);
            let status = sync(&accord).await;
            assert_eq!(status["state"], "Synced", "{status:#}");
        }
        assert_eq!(setup.permits().await, 6);

        // A third is 3 of 8 over the window: refused, and shown.
        setup.delete(3);
        let status = sync(&accord).await;
        assert_eq!(status["state"], "Error", "{status:#}");
        let refused = &status["deletionRefused"];
        assert_eq!(refused["deletes"], 1, "{status:#}");
        assert_eq!(refused["earlier"], 2, "{status:#}");
        let message = status["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("accord approve") && !message.contains("--force"),
            "the controller's message names its own way out: {message}"
        );
        assert_eq!(setup.permits().await, 6, "nothing applied");
        assert!(metric(&accord, "accord_deletions_refused").await >= 1.0);
        assert!(
            accord.log_text().contains("deletion guard refused"),
            "{}",
            accord.log_text()
        );
        let first_set = refused["set"].as_str().expect("set").to_owned();

        // The refused set grows before anyone approves: an approval of the
        // set seen first approves nothing.
        setup.delete(4);
        let status = sync(&accord).await;
        let second_set = status["deletionRefused"]["set"]
            .as_str()
            .expect("set")
            .to_owned();
        assert_ne!(first_set, second_set);
        let (ok, out) = approve(&accord, &setup.token, Some(&first_set));
        assert!(!ok, "a stale approval must fail: {out}");
        assert!(out.contains("different refused set"), "{out}");
        assert_eq!(setup.permits().await, 6);

        // Without the token, nothing.
        let response = reqwest::Client::new()
            .post(format!(
                "{}/api/v1/sources/{SOURCE}/approve-deletions",
                accord.url
            ))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status().as_u16(), 401);

        // Approving the current set applies exactly it.
        let (ok, out) = approve(&accord, &setup.token, Some(&second_set));
        assert!(ok, "{out}");
        let status = accord
            .wait_for(SOURCE, WAIT, |s| {
                s["state"] == "Synced" && s["counts"]["managed"] == 4
            })
            .await;
        assert!(status.get("deletionRefused").is_none(), "{status:#}");
        assert_eq!(setup.permits().await, 4);
        let approved = setup
            .db
            .scalar("SELECT COUNT(*) FROM sync_runs WHERE message LIKE '%approved by oncall@example.com%'")
            .await;
        assert_eq!(approved, 1, "the sync record names the approver");

        // The approval is spent, and the approved apply starts a new
        // window: one more of four is 25 %.
        setup.delete(5);
        let status = sync(&accord).await;
        assert_eq!(status["state"], "Synced", "{status:#}");
        assert_eq!(setup.permits().await, 3);
        let (ok, out) = approve(&accord, &setup.token, None);
        assert!(!ok && out.contains("no deletions refused"), "{out}");
        drop(setup.dir);
    }
);
