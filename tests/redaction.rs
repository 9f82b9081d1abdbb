//! No secret leaves accord: credentials in a Git remote's URL (a password,
//! a token alone in the userinfo, a token in the query) or in a database
//! URL appear in no status, page, log line, error or metric.

mod common;

use std::process::Command;
use std::time::Duration;

use common::controller::{free_port, Controller};
use common::db::{Backend, TestDb};

const SECRETS: [&str; 4] = ["t0kenAl0ne", "pa55w0rd", "qu3ryT0ken", "dbPa55"];

fn assert_clean(place: &str, text: &str) {
    for secret in SECRETS {
        assert!(
            !text.contains(secret),
            "{place} shows the secret `{secret}`:\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_in_urls_appear_nowhere_accord_shows_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = TestDb::new(Backend::Sqlite).await;
    // Nothing listens on this port: every fetch fails, and the failure is
    // shown (with the URL) in the status, the page and the log.
    let closed = free_port();
    let config = dir.path().join("accord.yaml");
    std::fs::write(
        &config,
        format!(
            "database: {db}\ncacheDir: {cache}\nsources:
  - name: token-only
    git:
      url: https://t0kenAl0ne@127.0.0.1:{closed}/platform/access.git
    interval: 200ms
  - name: user-and-password
    git:
      url: https://deploy:pa55w0rd@127.0.0.1:{closed}/platform/access.git
    interval: 200ms
  - name: token-in-query
    git:
      url: http://127.0.0.1:{closed}/access.git?access_token=qu3ryT0ken
    interval: 200ms
",
            db = db.url,
            cache = dir.path().join("cache").display()
        ),
    )
    .expect("config");
    let accord = Controller::start(dir.path(), &config).await;
    for name in ["token-only", "user-and-password", "token-in-query"] {
        let status = accord
            .wait_for(name, Duration::from_secs(30), |s| s["state"] == "Error")
            .await;
        let message = status["message"].as_str().unwrap_or_default();
        assert!(message.contains("cannot fetch"), "{status:#}");
        assert!(
            status["location"]
                .as_str()
                .unwrap_or_default()
                .contains("***"),
            "{status:#}"
        );
    }

    let (_, status) = accord.get("/api/v1/status").await;
    assert_clean("/api/v1/status", &status.to_string());
    let (_, drift) = accord.get("/api/v1/drift").await;
    assert_clean("/api/v1/drift", &drift.to_string());
    let page = reqwest::get(&accord.url)
        .await
        .expect("page")
        .text()
        .await
        .expect("text");
    assert_clean("the dashboard", &page);
    let metrics = reqwest::get(format!("{}/metrics", accord.url))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert_clean("/metrics", &metrics);
    let cli = Command::new(env!("CARGO_BIN_EXE_accord"))
        .args(["status", "--server", &accord.url])
        .env("ACCORD_COLOR", "never")
        .output()
        .expect("accord status");
    let printed =
        String::from_utf8_lossy(&cli.stdout).into_owned() + &String::from_utf8_lossy(&cli.stderr);
    assert!(printed.contains("token-only"), "{printed}");
    assert_clean("accord status", &printed);
    assert!(
        accord.log_text().contains("cannot fetch"),
        "the failures were logged"
    );
    assert_clean("the log", &accord.log_text());
}

#[test]
fn a_database_password_appears_in_no_error() {
    let closed = free_port();
    for url in [
        format!("postgres://accord:dbPa55@127.0.0.1:{closed}/accord"),
        format!("postgres://127.0.0.1:{closed}/accord?user=accord&password=dbPa55"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_accord"))
            .args(["audit", "--database", &url])
            .env("ACCORD_LOG", "debug")
            .output()
            .expect("accord audit");
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("cannot connect"), "{stderr}");
        assert_clean("a connection error", &stderr);
    }
    let run = Command::new(env!("CARGO_BIN_EXE_accord"))
        .args([
            "run",
            "--git",
            "ftp://t0kenAl0ne@host/r.git",
            "--database",
            "sqlite::memory:",
        ])
        .output()
        .expect("accord run");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("git.url"), "{stderr}");
    assert_clean("a configuration error", &stderr);
}
