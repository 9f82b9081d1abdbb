//! The HTTP server of `accord run` cannot be starved: idle and slow
//! connections are closed, the connections held stay under the file limit,
//! and the API and the syncs keep working while a thousand idle
//! connections are held open. Errors answered before a handler runs (413)
//! are problem documents too.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::controller::{documents, grant, Controller};
use common::db::{Backend, TestDb};

const HEADER_TIMEOUT: Duration = Duration::from_secs(2);

struct Setup {
    dir: tempfile::TempDir,
    _db: TestDb,
    folder: PathBuf,
    accord: Controller,
}

async fn start(file_limit: u32) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = TestDb::new(Backend::Sqlite).await;
    let folder = dir.path().join("config");
    std::fs::create_dir(&folder).expect("mkdir");
    std::fs::write(folder.join("p.yaml"), documents(&[grant("p1", "svc:a")])).expect("write");
    let config = dir.path().join("accord.yaml");
    std::fs::write(
        &config,
        format!(
            "database: {}\nhttp:\n  headerTimeout: 2s\n  bodyTimeout: 2s\nsources:\n  - name: local\n    directory:\n      path: {}\n    interval: 1h\n",
            db.url,
            folder.display()
        ),
    )
    .expect("config");
    let args = ["run", "--config", config.to_str().expect("utf-8")];
    let accord = Controller::start_with_file_limit(dir.path(), &args, file_limit).await;
    accord
        .wait_for("local", Duration::from_secs(30), |s| s["state"] == "Synced")
        .await;
    Setup {
        dir,
        _db: db,
        folder,
        accord,
    }
}

fn connect(accord: &Controller) -> TcpStream {
    let address = accord.url.trim_start_matches("http://");
    let stream = TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(HEADER_TIMEOUT * 5))
        .expect("timeout");
    stream
}

/// Whether the server closed the connection (a read sees its end) within
/// `within`, while `keep_busy` writes to it now and then.
fn closed_within(
    stream: &mut TcpStream,
    within: Duration,
    mut keep_busy: impl FnMut(&mut TcpStream),
) -> bool {
    let started = Instant::now();
    stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let mut buffer = [0u8; 1024];
    while started.elapsed() < within {
        keep_busy(stream);
        match stream.read(&mut buffer) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return true,
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_connections_are_closed() {
    let setup = start(1024).await;

    let mut idle = connect(&setup.accord);
    assert!(
        closed_within(&mut idle, HEADER_TIMEOUT * 4, |_| {}),
        "an idle connection stayed open"
    );

    // A request head trickled in a byte at a time never completes.
    let mut slow = connect(&setup.accord);
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .expect("write");
    let mut sent = 0;
    let closed = closed_within(&mut slow, HEADER_TIMEOUT * 4, |s| {
        sent += 1;
        let _ = s.write_all(format!("X-Slow-{sent}: y\r\n").as_bytes());
    });
    assert!(closed, "a slow request head kept its connection open");

    // A keep-alive connection that went quiet after a request is closed too.
    let mut kept = connect(&setup.accord);
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let mut answer = [0u8; 512];
    let n = kept.read(&mut answer).expect("answer");
    assert!(String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 200"));
    assert!(
        closed_within(&mut kept, HEADER_TIMEOUT * 4, |_| {}),
        "an idle keep-alive connection stayed open"
    );
    drop(setup.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_and_the_syncs_keep_working_while_a_thousand_idle_connections_are_held() {
    // 256 open files: the connections accord holds must stay well under it.
    let setup = start(256).await;
    let held: Vec<TcpStream> = (0..1000).map(|_| connect(&setup.accord)).collect();

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    for _ in 0..5 {
        let response = client
            .get(format!("{}/api/v1/status", setup.accord.url))
            .send()
            .await
            .expect("the API answers while idle connections are held");
        assert_eq!(response.status().as_u16(), 200);
    }

    // A file change is still synced: the folder can still be read.
    std::fs::write(
        setup.folder.join("q.yaml"),
        documents(&[grant("p2", "svc:b")]),
    )
    .expect("write");
    let status = setup
        .accord
        .wait_for("local", Duration::from_secs(30), |s| {
            s["counts"]["managed"] == 2
        })
        .await;
    assert_eq!(status["state"], "Synced", "{status:#}");
    let log = setup.accord.log_text();
    assert!(!log.contains("Too many open files"), "{log}");
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_is_refused_with_a_problem_document() {
    let setup = start(1024).await;
    let response = reqwest::Client::new()
        .post(format!("{}/hooks/local", setup.accord.url))
        .body(vec![b'x'; 2 * 1024 * 1024])
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 413);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("application/problem+json"),
        "{content_type}"
    );
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["status"], 413);
}
