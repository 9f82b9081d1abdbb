//! Outbound notifications against receivers on loopback: each provider's
//! payload, the webhook's signature, one message per new condition (not per
//! sync), the rate limit, and a receiver that is down: it delays nothing and
//! gets its message once it is back.

#[allow(dead_code)]
mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use common::builders::permit;
use common::controller::{documents, eventually, free_port, Controller};
use common::db::{Backend, TestDb};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

const SECRET: &str = "webhook-signing-key";

#[derive(Clone, Debug)]
struct Received {
    path: String,
    headers: HeaderMap,
    body: Value,
    raw: Bytes,
}

/// A receiver on loopback that records what it is sent.
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    async fn serve_on(listener: tokio::net::TcpListener) -> Receiver {
        let receiver = Receiver::default();
        let got = receiver.got.clone();
        let app = Router::new().route(
            "/{*path}",
            post(
                move |uri: axum::http::Uri, headers: HeaderMap, raw: Bytes| {
                    let got = got.clone();
                    async move {
                        got.lock().unwrap().push(Received {
                            path: uri.path().to_owned(),
                            headers,
                            body: serde_json::from_slice(&raw).unwrap_or(Value::Null),
                            raw,
                        });
                        StatusCode::OK
                    }
                },
            ),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        receiver
    }

    async fn start() -> (Receiver, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        (Receiver::serve_on(listener).await, url)
    }

    fn all(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Messages whose event (webhook) or text (slack) or alert name names `what`.
    fn count(&self, what: &str) -> usize {
        self.all()
            .iter()
            .filter(|r| r.raw.windows(what.len()).any(|w| w == what.as_bytes()))
            .count()
    }
}

fn webhook_events(receiver: &Receiver) -> Vec<(String, String)> {
    receiver
        .all()
        .iter()
        .map(|r| {
            (
                r.body["event"].as_str().unwrap_or_default().to_owned(),
                r.body["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

async fn wait_until(what: &str, check: impl Fn() -> bool) {
    let ok = eventually(Duration::from_secs(30), || async { check() }).await;
    assert!(ok, "timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receivers_are_told_once_per_condition_and_a_down_one_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(Backend::Sqlite).await;
    let folder = dir.path().join("config");
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(folder.join("p.yaml"), documents(&[permit("p1").build()])).unwrap();

    let (hook, hook_url) = Receiver::start().await;
    let (slack, slack_url) = Receiver::start().await;
    let (am, am_url) = Receiver::start().await;
    let (limited, limited_url) = Receiver::start().await;
    // Nothing listens here until the end of the test.
    let late_port = free_port();
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let slack_file = dir.path().join("slack-url");
    std::fs::write(
        &slack_file,
        format!("{slack_url}/services/T0/B0/secret-part\n"),
    )
    .unwrap();
    let config = dir.path().join("accord.yaml");
    std::fs::write(
        &config,
        format!(
            "database: {}\nexternalUrl: https://accord.example.com\nsources:\n  - name: main\n    directory:\n      path: {}\n    drift: report\n    interval: 1h\n\
             notifications:\n\
             \x20 - name: hook\n    provider: webhook\n    url: {hook_url}/accord\n    secretFile: {}\n\
             \x20 - name: chat\n    provider: slack\n    urlFile: {}\n    events: [invalid-revision, drift-detected]\n\
             \x20 - name: pager\n    provider: alertmanager\n    url: {am_url}\n\
             \x20 - name: limited\n    provider: webhook\n    url: {limited_url}/x\n    maxPerMinute: 1\n\
             \x20 - name: late\n    provider: webhook\n    url: http://127.0.0.1:{late_port}/late\n",
            db.url,
            folder.display(),
            secret_file.display(),
            slack_file.display(),
        ),
    )
    .unwrap();
    let accord = Controller::start(dir.path(), &config).await;
    accord
        .wait_for("main", Duration::from_secs(30), |s| s["state"] == "Synced")
        .await;
    assert!(hook.all().is_empty(), "a healthy start tells nothing");

    // An invalid revision: told to each receiver that takes it.
    std::fs::write(folder.join("bad.yaml"), "permissionId: a:b\nslugz: [x]\n").unwrap();
    let status = accord.settled("main", None).await;
    assert_eq!(status["state"], "Error", "{status}");
    wait_until("the invalid revision on the webhook", || {
        hook.count("invalid-revision") == 1
    })
    .await;
    let message = hook.all()[0].clone();
    assert_eq!(message.path, "/accord");
    assert_eq!(message.body["version"], 1);
    assert_eq!(message.body["status"], "firing");
    assert_eq!(message.body["source"], "main");
    assert_eq!(
        message.body["link"],
        "https://accord.example.com/sources/main"
    );
    assert!(
        message.body["objects"][0]
            .as_str()
            .unwrap()
            .contains("bad.yaml:2:1: unknown field `slugz`"),
        "{}",
        message.body
    );
    // The signature is the HMAC-SHA256 of the exact body.
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(&message.raw);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(message.headers["x-accord-signature-256"], expected.as_str());
    assert_eq!(message.headers["x-accord-event"], "invalid-revision");
    wait_until("the slack message", || slack.count("invalid-revision") == 1).await;
    let chat = slack.all()[0].clone();
    assert_eq!(chat.path, "/services/T0/B0/secret-part");
    assert!(chat.body["text"]
        .as_str()
        .unwrap()
        .contains("invalid-revision main"));
    assert_eq!(chat.body["blocks"][0]["type"], "section");
    wait_until("the alert", || am.count("AccordInvalidRevision") == 1).await;
    let alert = am.all()[0].clone();
    assert_eq!(alert.path, "/api/v2/alerts");
    assert_eq!(alert.body[0]["labels"]["source"], "main");
    assert!(
        alert.body[0].get("endsAt").is_none(),
        "firing: {}",
        alert.body
    );

    // The same invalid revision synced again is no new condition.
    accord.settled("main", None).await;
    accord.settled("main", None).await;

    // Fixed: resolved, on Alertmanager as the same alert with endsAt.
    std::fs::remove_file(folder.join("bad.yaml")).unwrap();
    let status = accord.settled("main", None).await;
    assert_eq!(status["state"], "Synced", "{status}");
    wait_until("the resolution", || {
        webhook_events(&hook).contains(&("invalid-revision".into(), "resolved".into()))
    })
    .await;
    wait_until("the resolved alert", || {
        am.all().iter().any(|a| {
            a.body[0]["labels"]["alertname"] == "AccordInvalidRevision"
                && a.body[0].get("endsAt").is_some()
        })
    })
    .await;
    assert_eq!(
        hook.count("invalid-revision"),
        2,
        "{:?}",
        webhook_events(&hook)
    );

    // Drift, found by three syncs: one message.
    db.exec("UPDATE permits SET permission_id = 'svc:write' WHERE id = 'p1'")
        .await
        .unwrap();
    for _ in 0..3 {
        let status = accord.settled("main", None).await;
        assert_eq!(status["state"], "OutOfSync", "{status}");
    }
    wait_until("the drift message", || hook.count("drift-detected") == 1).await;
    let drift = hook
        .all()
        .into_iter()
        .find(|r| r.body["event"] == "drift-detected")
        .unwrap();
    assert!(
        drift.body["objects"][0]
            .as_str()
            .unwrap()
            .starts_with("Permit unnamed/p1"),
        "{}",
        drift.body
    );
    assert!(
        drift.body["diff"]
            .as_str()
            .unwrap()
            .contains("+permissionId: svc:read"),
        "{}",
        drift.body
    );
    wait_until("the drift on slack", || slack.count("drift-detected") == 1).await;

    // The rate-limited receiver got its one message a minute; the rest
    // were counted as dropped.
    assert_eq!(limited.all().len(), 1, "{:?}", limited.all());
    let (_, status) = accord.get("/api/v1/status").await;
    let receivers = status["notifications"].as_array().unwrap();
    let of = |name: &str| {
        receivers
            .iter()
            .find(|r| r["name"] == name)
            .unwrap()
            .clone()
    };
    assert!(
        of("limited")["dropped"].as_u64().unwrap() >= 2,
        "{}",
        of("limited")
    );
    // The receiver that is down: its failures are visible, and every sync
    // above finished while it was down.
    let late = of("late");
    assert_eq!(late["delivered"], 0);
    assert!(late["failedAttempts"].as_u64().unwrap() >= 1, "{late}");
    assert!(
        late["lastError"]
            .as_str()
            .unwrap()
            .contains("cannot reach the receiver"),
        "{late}"
    );
    assert!(late["pending"].as_u64().unwrap() >= 3, "{late}");
    let metrics = reqwest::get(format!("{}/metrics", accord.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .contains("accord_notifications_total{provider=\"webhook\",outcome=\"rate_limited\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("accord_notifications_total{provider=\"webhook\",outcome=\"failed\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("accord_notifications_total{provider=\"slack\",outcome=\"delivered\"} 3"),
        "{metrics}"
    );
    // The Slack URL is a secret: never in the status, the log or the metrics.
    assert!(!accord.log_text().contains("secret-part"));
    assert!(!status.to_string().contains("secret-part"));

    // Back up: it gets every message, in order.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", late_port))
        .await
        .unwrap();
    let late = Receiver::serve_on(listener).await;
    wait_until("the late receiver to catch up", || late.all().len() >= 3).await;
    let events = webhook_events(&late);
    assert_eq!(
        events[..3],
        [
            ("invalid-revision".to_owned(), "firing".to_owned()),
            ("invalid-revision".to_owned(), "resolved".to_owned()),
            ("drift-detected".to_owned(), "firing".to_owned()),
        ]
    );
    // Three syncs saw the drift; it was told once.
    assert_eq!(
        hook.count("drift-detected"),
        1,
        "{:?}",
        webhook_events(&hook)
    );
    assert_eq!(
        webhook_events(&late).len(),
        3,
        "{:?}",
        webhook_events(&late)
    );
}
