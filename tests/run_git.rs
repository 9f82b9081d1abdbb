//! `accord run` following real Git repositories: over file:// and over
//! loopback (`git daemon`; HTTPS with a token behind a private CA; ssh with
//! a key and a known host key), pinned to tags and commits, with webhooks,
//! and refusing a force-push that empties the tree.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::controller::{free_port, Controller, GitDaemon, Repo};
use common::db::{Backend, TestDb};
use common::git_servers::{path_text, GitHttps, GitSsh, TestCa};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

const PERMITS: &str = "- id: pay\n  permissionId: payment-svc:process\n  slugs: [order-service]\n- id: refund\n  permissionId: payment-svc:refund\n  roles: [payment-svc:admin]\n- id: read\n  permissionId: payment-svc:read\n  roles: [payment-svc:viewer]\n- id: list\n  permissionId: payment-svc:list\n  roles: [payment-svc:viewer]\n";

fn config(dir: &Path, db: &TestDb, source: &str) -> std::path::PathBuf {
    let path = dir.join("accord.yaml");
    std::fs::write(
        &path,
        format!(
            "database: {}\ncacheDir: {}\nsources:\n{source}",
            db.url,
            dir.join("cache").display()
        ),
    )
    .expect("write config");
    path
}

/// A repository with `PERMITS` committed and `accord run` following it
/// (source `platform`), once that commit is applied.
struct Followed {
    dir: tempfile::TempDir,
    repo: Repo,
    db: TestDb,
    accord: Controller,
    first: String,
}

/// `webhook`: the source takes webhooks signed with the secret `s3cret`.
async fn follow(webhook: bool, interval: &str) -> Followed {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = Repo::init(&dir.path().join("repo"));
    repo.write("permits.yaml", PERMITS);
    let first = repo.commit("grants", "Alice <alice@example.com>");
    let secret = dir.path().join("hook-secret");
    std::fs::write(&secret, "s3cret\n").expect("secret");
    let hook = if webhook {
        format!("      webhookSecretFile: {}\n", secret.display())
    } else {
        String::new()
    };
    let db = TestDb::new(Backend::Sqlite).await;
    let config = config(
        dir.path(),
        &db,
        &format!(
            "  - name: platform\n    git:\n      url: {}\n{hook}    interval: {interval}\n",
            repo.url()
        ),
    );
    let accord = Controller::start(dir.path(), &config).await;
    accord
        .wait_for("platform", WAIT, |s| applied(s, &first))
        .await;
    Followed {
        dir,
        repo,
        db,
        accord,
        first,
    }
}

fn applied(status: &Value, revision: &str) -> bool {
    status["lastAppliedRevision"] == revision && status["state"] == "Synced"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_commit_is_applied_with_its_author_and_commit_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = Repo::init(&dir.path().join("repo"));
    repo.write("config/permits.yaml", PERMITS)
        .write("README.md", "not config");
    let first = repo.commit("first grants", "Alice Admin <alice@example.com>");
    let db = TestDb::new(Backend::Sqlite).await;
    let config = config(
        dir.path(),
        &db,
        &format!("  - name: platform\n    git:\n      url: {}\n      ref: main\n      path: config\n    interval: 500ms\n", repo.url()),
    );
    let accord = Controller::start(dir.path(), &config).await;
    let status = accord
        .wait_for("platform", WAIT, |s| applied(s, &first))
        .await;
    assert_eq!(status["type"], "git");
    assert_eq!(status["counts"]["managed"], 4);
    assert_eq!(db.scalar("SELECT COUNT(*) FROM permits").await, 4);

    repo.write(
        "config/permits.yaml",
        &PERMITS.replace(
            "slugs: [order-service]",
            "slugs: [order-service, billing-worker]",
        ),
    );
    let second = repo.commit("billing may pay", "Bob Builder <bob@example.com>");
    accord
        .wait_for("platform", WAIT, |s| applied(s, &second))
        .await;
    let (code, body) = accord.get("/api/v1/audit?limit=1").await;
    assert_eq!(code, 200);
    let entry = &body["entries"][0];
    assert_eq!(entry["action"], "update");
    assert_eq!(entry["id"], "pay");
    assert_eq!(entry["revision"], second.as_str());
    assert_eq!(entry["actor"], "Bob Builder <bob@example.com>");
    let creates = db
        .scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'create' AND actor = 'Alice Admin <alice@example.com>'")
        .await;
    assert_eq!(creates, 4);
}

/// The worker's log line for `revision`: how many files it parsed and reused.
/// The files of `revision` the controller read, parsed and took from its
/// parse cache, from its log.
fn parse_counts(accord: &Controller, revision: &str) -> Option<(u32, u32, u32)> {
    let log = accord.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("revision parsed") && l.contains(&format!("revision={revision}")))?;
    let field = |name: &str| -> Option<u32> {
        let at = line.find(&format!(" {name}="))? + name.len() + 2;
        line[at..].split_whitespace().next()?.parse().ok()
    };
    Some((field("read")?, field("parsed")?, field("reused")?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_parses_only_the_files_it_changed_and_the_whole_tree_rules_still_hold() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = Repo::init(&dir.path().join("repo"));
    repo.write("permits.yaml", PERMITS)
        .write(
            "people/ann.yaml",
            "- id: ann\n  role: payment-svc:viewer\n  userId: ann\n",
        )
        .write(
            "people/bob.yaml",
            "- id: bob\n  role: payment-svc:viewer\n  userId: bob\n",
        );
    let first = repo.commit("grants", "Alice <alice@example.com>");
    let db = TestDb::new(Backend::Sqlite).await;
    let config = config(
        dir.path(),
        &db,
        &format!(
            "  - name: platform\n    git:\n      url: {}\n    interval: 300ms\n",
            repo.url()
        ),
    );
    let mut accord = Controller::start(dir.path(), &config).await;
    accord
        .wait_for("platform", WAIT, |s| applied(s, &first))
        .await;
    assert_eq!(parse_counts(&accord, &first), Some((3, 3, 0)));

    repo.write(
        "people/ann.yaml",
        "- id: ann\n  role: payment-svc:admin\n  userId: ann\n",
    );
    let second = repo.commit("ann administers payments", "Alice <alice@example.com>");
    accord
        .wait_for("platform", WAIT, |s| applied(s, &second))
        .await;
    assert_eq!(parse_counts(&accord, &second), Some((1, 1, 2)));
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM enrollments WHERE role = 'payment-svc:admin'")
            .await,
        1
    );

    // A key declared again in a new file clashes with a file that did not
    // change: the revision is refused whole, as a full parse refuses it.
    repo.write(
        "people/copy.yaml",
        "- id: bob\n  role: payment-svc:admin\n  userId: bob\n",
    );
    let third = repo.commit("bob twice", "Mallory <mallory@example.com>");
    let status = accord
        .wait_for("platform", WAIT, |s| {
            s["lastAttemptedRevision"] == third.as_str()
        })
        .await;
    assert_eq!(status["lastAppliedRevision"], second.as_str());
    assert!(
        status["errors"][0]
            .as_str()
            .unwrap_or_default()
            .contains("declared twice"),
        "{status}"
    );
    assert_eq!(parse_counts(&accord, &third), Some((1, 1, 3)));

    // After a restart the cache is empty: the first read parses the whole
    // tree again, and the next commit only what it changed.
    accord.terminate();
    let accord = Controller::start(dir.path(), &config).await;
    accord
        .wait_for("platform", WAIT, |s| {
            s["lastAttemptedRevision"] == third.as_str()
        })
        .await;
    assert_eq!(parse_counts(&accord, &third), Some((4, 4, 0)));
    std::fs::remove_file(dir.path().join("repo/people/copy.yaml")).expect("remove");
    let fourth = repo.commit("bob once", "Alice <alice@example.com>");
    accord
        .wait_for("platform", WAIT, |s| applied(s, &fourth))
        .await;
    assert_eq!(parse_counts(&accord, &fourth), Some((0, 0, 3)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_file_credits_its_deletes_to_the_commit_that_removed_it() {
    let f = follow(false, "500ms").await;
    f.repo.write(
        "legacy.yaml",
        "- id: legacy\n  permissionId: payment-svc:legacy\n  roles: [payment-svc:viewer]\n",
    );
    let added = f.repo.commit("legacy grant", "Alice <alice@example.com>");
    f.accord
        .wait_for("platform", WAIT, |s| applied(s, &added))
        .await;

    f.repo.git(&["rm", "-q", "legacy.yaml"]);
    let removed = f
        .repo
        .commit("retire legacy", "Carol Cleaner <carol@example.com>");
    f.accord
        .wait_for("platform", WAIT, |s| applied(s, &removed))
        .await;
    let (code, body) = f.accord.get("/api/v1/audit?limit=1").await;
    assert_eq!(code, 200);
    let entry = &body["entries"][0];
    assert_eq!(entry["action"], "delete");
    assert_eq!(entry["id"], "legacy");
    assert_eq!(entry["actor"], "Carol Cleaner <carol@example.com>");
    assert_eq!(f.db.scalar("SELECT COUNT(*) FROM permits").await, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repository_served_over_loopback_by_git_daemon_is_followed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let work = Repo::init(&dir.path().join("work"));
    work.write("permits.yaml", PERMITS);
    let first = work.commit("grants", "Alice <alice@example.com>");
    let served = dir.path().join("served");
    std::fs::create_dir(&served).expect("mkdir");
    work.git(&[
        "clone",
        "-q",
        "--bare",
        ".",
        served.join("access.git").to_str().expect("utf-8"),
    ]);
    let daemon = GitDaemon::start(&served).await;
    let db = TestDb::new(Backend::Sqlite).await;
    let config = config(
        dir.path(),
        &db,
        &format!(
            "  - name: remote\n    git:\n      url: {}\n    interval: 500ms\n",
            daemon.url("access.git")
        ),
    );
    let accord = Controller::start(dir.path(), &config).await;
    accord
        .wait_for("remote", WAIT, |s| applied(s, &first))
        .await;

    work.write(
        "permits.yaml",
        &PERMITS.replace("payment-svc:list", "payment-svc:index"),
    );
    let second = work.commit("rename", "Bob <bob@example.com>");
    work.git(&[
        "push",
        "-q",
        served.join("access.git").to_str().expect("utf-8"),
        "main",
    ]);
    accord
        .wait_for("remote", WAIT, |s| applied(s, &second))
        .await;
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM permits WHERE permission_id = 'payment-svc:index'")
            .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_and_commit_pins_are_honoured() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = Repo::init(&dir.path().join("repo"));
    repo.write("permits.yaml", PERMITS);
    let pinned = repo.commit("v1", "Alice <alice@example.com>");
    repo.git(&["tag", "v1"]);
    repo.write(
        "permits.yaml",
        &PERMITS.replace("payment-svc:list", "payment-svc:index"),
    );
    repo.commit("after v1", "Bob <bob@example.com>");
    let db = TestDb::new(Backend::Sqlite).await;
    let config = config(
        dir.path(),
        &db,
        &format!(
            "  - name: tag\n    git:\n      url: {url}\n      ref: v1\n    interval: 500ms\n  - name: commit\n    git:\n      url: {url}\n      ref: {pinned}\n    interval: 500ms\n",
            url = repo.url()
        ),
    );
    // Both pin the same objects, so the second to apply reports conflicts;
    // what matters here is which revision each one read.
    let accord = Controller::start(dir.path(), &config).await;
    for name in ["tag", "commit"] {
        let status = accord
            .wait_for(name, WAIT, |s| s["lastAppliedRevision"] == pinned.as_str())
            .await;
        assert_eq!(status["lastAttemptedRevision"], pinned.as_str());
    }
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM permits WHERE permission_id = 'payment-svc:index'")
            .await,
        0,
        "the commit after the pin is not applied"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_force_push_that_empties_the_tree_is_refused_by_the_guard() {
    let Followed {
        dir: _dir,
        repo,
        db,
        accord,
        first: good,
    } = follow(false, "500ms").await;

    // Rewrite history: an orphan branch with nothing in it replaces main.
    repo.git(&["checkout", "-q", "--orphan", "empty"]);
    repo.git(&["rm", "-rqf", "."]);
    let empty = repo.commit("oops", "Mallory <mallory@example.com>");
    repo.git(&["branch", "-M", "main"]);
    let status = accord
        .wait_for("platform", WAIT, |s| {
            s["lastAttemptedRevision"] == empty.as_str() && s["state"] == "Error"
        })
        .await;
    let message = status["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("refusing to delete all 4 rows"),
        "{message}"
    );
    assert_eq!(status["lastAppliedRevision"], good.as_str());
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM permits").await,
        4,
        "nothing deleted"
    );
    assert!(
        message.contains("force-push"),
        "the rewrite is reported: {message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_with_a_valid_signature_trigger_a_sync_and_others_are_401() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = Repo::init(&dir.path().join("repo"));
    repo.write("permits.yaml", PERMITS);
    let first = repo.commit("grants", "Alice <alice@example.com>");
    std::fs::write(dir.path().join("hook-secret"), "s3cret\n").expect("secret");
    let db = TestDb::new(Backend::Sqlite).await;
    // A long interval: only the webhook can explain a quick sync.
    let config = config(
        dir.path(),
        &db,
        &format!(
            "  - name: platform\n    git:\n      url: {}\n      webhookSecretFile: {}\n    interval: 1h\n",
            repo.url(),
            dir.path().join("hook-secret").display()
        ),
    );
    let accord = Controller::start(dir.path(), &config).await;
    accord
        .wait_for("platform", WAIT, |s| applied(s, &first))
        .await;
    repo.write(
        "permits.yaml",
        &PERMITS.replace("payment-svc:list", "payment-svc:index"),
    );
    let second = repo.commit("rename", "Bob <bob@example.com>");

    let client = reqwest::Client::new();
    let hook = format!("{}/hooks/platform", accord.url);
    let body = br#"{"ref":"refs/heads/main"}"#.to_vec();
    for (header, value) in [
        ("x-hub-signature-256", "sha256=0000".to_owned()),
        ("x-gitlab-token", "wrong".to_owned()),
        ("x-gitea-signature", "abcd".to_owned()),
    ] {
        let response = client
            .post(&hook)
            .header(header, value)
            .body(body.clone())
            .send()
            .await
            .expect("post");
        assert_eq!(response.status().as_u16(), 401, "{header}");
        let problem: Value = response.json().await.expect("problem json");
        assert_eq!(problem["status"], 401);
        assert!(problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("does not match")));
    }
    let unsigned = client
        .post(&hook)
        .body(body.clone())
        .send()
        .await
        .expect("post");
    assert_eq!(unsigned.status().as_u16(), 401);

    let signature = accord::server::hooks::github_signature(b"s3cret", &body);
    let signed = client
        .post(&hook)
        .header("x-hub-signature-256", signature)
        .header("x-github-event", "push")
        .body(body)
        .send()
        .await
        .expect("post");
    assert_eq!(signed.status().as_u16(), 202);
    let status = accord
        .wait_for("platform", Duration::from_secs(10), |s| applied(s, &second))
        .await;
    // Every webhook that asked for a sync is counted once it is served:
    // the refused ones asked for none.
    assert_eq!(status["triggers"]["webhook"], 1, "{status:#}");
    assert_ne!(first, second);
    // The sync's run records what started it; the first one, the start.
    let cause = |revision: &str| {
        format!(
            "SELECT COUNT(*) FROM sync_runs WHERE revision = '{revision}' AND cause = 'webhook'"
        )
    };
    assert_eq!(db.scalar(&cause(&second)).await, 1);
    assert_eq!(
        db.scalar(&format!(
            "SELECT COUNT(*) FROM sync_runs WHERE revision = '{first}' AND cause = 'start'"
        ))
        .await,
        1
    );
    let (code, page) = accord.get_text("/sources/platform").await;
    assert_eq!(code, 200);
    assert!(page.contains("<td>webhook</td>"), "{page}");
    let missing = client
        .post(format!("{}/hooks/nope", accord.url))
        .send()
        .await
        .expect("post");
    assert_eq!(missing.status().as_u16(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_remote_keeps_the_last_state_and_shows_the_error() {
    let Followed {
        dir,
        repo,
        db,
        accord,
        first,
    } = follow(false, "300ms").await;
    std::fs::rename(&repo.path, dir.path().join("moved")).expect("move the remote away");
    let status = accord
        .wait_for("platform", WAIT, |s| s["state"] == "Error")
        .await;
    assert!(
        status["message"]
            .as_str()
            .is_some_and(|m| m.contains("cannot fetch")),
        "{status}"
    );
    assert_eq!(status["lastAppliedRevision"], first.as_str());
    assert_eq!(db.scalar("SELECT COUNT(*) FROM permits").await, 4);
    std::fs::rename(dir.path().join("moved"), &repo.path).expect("move it back");
    accord
        .wait_for("platform", WAIT, |s| s["state"] == "Synced")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_ref_is_reported_and_never_applied_as_an_empty_tree() {
    let Followed {
        dir: _dir,
        repo,
        db,
        accord,
        first,
    } = follow(false, "300ms").await;
    repo.git(&["checkout", "-q", "-b", "other"]);
    repo.git(&["branch", "-D", "main"]);
    let status = accord
        .wait_for("platform", WAIT, |s| s["state"] == "Error")
        .await;
    let message = status["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("ref `main` is not a branch or tag"),
        "{message}"
    );
    assert_eq!(status["lastAppliedRevision"], first.as_str());
    assert_eq!(db.scalar("SELECT COUNT(*) FROM permits").await, 4);
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'delete'")
            .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_never_reach_the_status_or_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("git-token"), "tok-SECRET-123\n").expect("token");
    let db = TestDb::new(Backend::Sqlite).await;
    // Nothing listens on this port: every fetch fails, with the credentials in play.
    let port = free_port();
    let config = config(
        dir.path(),
        &db,
        &format!(
            "  - name: platform\n    git:\n      url: http://user:pass-SECRET-456@127.0.0.1:{port}/access.git\n      tokenFile: {}\n    interval: 300ms\n",
            dir.path().join("git-token").display()
        ),
    );
    let accord = Controller::start(dir.path(), &config).await;
    let status = accord
        .wait_for("platform", WAIT, |s| s["state"] == "Error")
        .await;
    let shown = format!("{status}{}", accord.get("/api/v1/status").await.1);
    assert!(
        shown.contains("127.0.0.1"),
        "the location is shown: {shown}"
    );
    for secret in ["SECRET-123", "SECRET-456"] {
        assert!(!shown.contains(secret), "{secret} in status: {shown}");
        assert!(!accord.log_text().contains(secret), "{secret} in the log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_webhook_body_is_refused_before_it_is_read() {
    let Followed {
        dir: _dir,
        repo: _repo,
        db: _db,
        accord,
        first: _first,
    } = follow(true, "1h").await;
    // Over our 1 MiB limit, under axum's own 2 MB default.
    let body = vec![b'x'; 1536 * 1024];
    let signature = accord::server::hooks::github_signature(b"s3cret", &body);
    let response = reqwest::Client::new()
        .post(format!("{}/hooks/platform", accord.url))
        .header("x-hub-signature-256", signature)
        .body(body)
        .send()
        .await
        .expect("post");
    assert_eq!(response.status().as_u16(), 413);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_git_source_can_be_given_with_flags_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = Repo::init(&dir.path().join("repo"));
    repo.write("config/permits.yaml", PERMITS);
    let first = repo.commit("grants", "Alice <alice@example.com>");
    let db = TestDb::new(Backend::Sqlite).await;
    let url = repo.url();
    let cache = dir.path().join("cache");
    let args = [
        "run",
        "--git",
        &url,
        "--ref",
        "main",
        "--path",
        "config",
        "--source-name",
        "platform",
        "--interval",
        "300ms",
        "--database",
        &db.url,
        "--cache-dir",
        cache.to_str().expect("utf-8"),
    ];
    let accord = Controller::start_with(dir.path(), &args).await;
    let status = accord
        .wait_for("platform", WAIT, |s| applied(s, &first))
        .await;
    assert_eq!(status["type"], "git");
    assert_eq!(db.scalar("SELECT COUNT(*) FROM permits").await, 4);
}

// ---- HTTPS and ssh against real servers on loopback ---------------------------

const TOKEN: &str = "tok-RIGHT-7f3a9c";

/// A work repository with `PERMITS` committed, cloned bare to
/// `served/access.git` for a server to serve.
struct Served {
    work: Repo,
    /// The folder holding `access.git`.
    root: PathBuf,
    first: String,
}

impl Served {
    fn new(dir: &Path) -> Served {
        let work = Repo::init(&dir.join("work"));
        work.write("permits.yaml", PERMITS);
        let first = work.commit("grants", "Alice <alice@example.com>");
        let root = dir.join("served");
        std::fs::create_dir(&root).expect("mkdir");
        work.git(&[
            "clone",
            "-q",
            "--bare",
            ".",
            path_text(&root.join("access.git")),
        ]);
        Served { work, root, first }
    }

    /// Commits a change and pushes it to the served repository.
    fn push_change(&self) -> String {
        self.work.write(
            "permits.yaml",
            &PERMITS.replace("payment-svc:list", "payment-svc:index"),
        );
        let second = self.work.commit("rename", "Bob <bob@example.com>");
        let bare = self.root.join("access.git");
        self.work.git(&["push", "-q", path_text(&bare), "main"]);
        second
    }
}

/// One Git source named `name` following `url`, with `settings` (camelCase
/// field, file) added to its `git:` block.
fn git_source(name: &str, url: &str, settings: &[(&str, &Path)]) -> String {
    let mut source = format!("  - name: {name}\n    git:\n      url: {url}\n");
    for (field, path) in settings {
        source.push_str(&format!("      {field}: {}\n", path.display()));
    }
    source + "    interval: 300ms\n"
}

/// `accord run --config <config>` with `HOME` set to `dir`, so no file of
/// the user running the tests (`~/.ssh/known_hosts`) takes part.
async fn start_at_home(dir: &Path, config: &Path) -> Controller {
    let mut command = Command::new(env!("CARGO_BIN_EXE_accord"));
    command.env("HOME", dir);
    Controller::start_command(dir, command, &["run", "--config", path_text(config)]).await
}

fn message(status: &Value) -> &str {
    status["message"].as_str().unwrap_or_default()
}

/// `Served` behind tests/git-https-server.py, with a certificate from a CA
/// made for the test; the server takes the token in `token`.
struct Https {
    dir: tempfile::TempDir,
    served: Served,
    ca: TestCa,
    token: PathBuf,
    server: GitHttps,
}

impl Https {
    fn start() -> Https {
        let dir = tempfile::tempdir().expect("tempdir");
        let served = Served::new(dir.path());
        let ca = TestCa::new(dir.path(), "ca");
        let (cert, key) = ca.issue(dir.path(), "server");
        let token = dir.path().join("token");
        std::fs::write(&token, format!("{TOKEN}\n")).expect("token");
        let server = GitHttps::start(
            &served.root,
            &cert,
            &key,
            &token,
            &dir.path().join("https.log"),
        );
        Https {
            dir,
            served,
            ca,
            token,
            server,
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("https.log")).unwrap_or_default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repository_over_https_behind_a_private_ca_is_followed_with_its_token() {
    let https = Https::start();
    let db = TestDb::new(Backend::Sqlite).await;
    let url = https.server.url("access.git");
    let source = git_source(
        "platform",
        &url,
        &[("tokenFile", &https.token), ("caFile", &https.ca.cert)],
    );
    let config = config(https.dir.path(), &db, &source);
    let accord = Controller::start(https.dir.path(), &config).await;
    accord
        .wait_for("platform", WAIT, |s| applied(s, &https.served.first))
        .await;
    assert_eq!(db.scalar("SELECT COUNT(*) FROM permits").await, 4);
    let second = https.served.push_change();
    accord
        .wait_for("platform", WAIT, |s| applied(s, &second))
        .await;

    let served = https.log_text();
    assert!(
        served.contains("\" 401 ") && served.contains("/access.git/git-upload-pack HTTP/1.1\" 200"),
        "the server asked for credentials and then served the fetch:\n{served}"
    );
    assert!(!accord.log_text().contains(TOKEN), "the token in the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_https_token_is_an_error_in_the_status_and_is_shown_nowhere() {
    let https = Https::start();
    let wrong = https.dir.path().join("wrong-token");
    std::fs::write(&wrong, "tok-WRONG-51d0e2\n").expect("token");
    let db = TestDb::new(Backend::Sqlite).await;
    let url = https.server.url("access.git");
    let source = git_source(
        "platform",
        &url,
        &[("tokenFile", &wrong), ("caFile", &https.ca.cert)],
    );
    let config = config(https.dir.path(), &db, &source);
    let accord = Controller::start(https.dir.path(), &config).await;
    let status = accord
        .wait_for("platform", WAIT, |s| s["state"] == "Error")
        .await;
    assert!(
        message(&status).contains(&format!(
            "cannot fetch {url}: authentication failed: the remote refused the token in tokenFile {}",
            wrong.display()
        )),
        "{status}"
    );
    assert!(status["lastAppliedRevision"].is_null(), "{status}");
    assert_eq!(db.scalar("SELECT COUNT(*) FROM permits").await, 0);
    let shown = format!("{status}{}", accord.get("/api/v1/status").await.1);
    for secret in ["WRONG-51d0e2", "RIGHT-7f3a9c"] {
        assert!(!shown.contains(secret), "{secret} in status: {shown}");
        assert!(!accord.log_text().contains(secret), "{secret} in the log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_certificate_accord_cannot_trust_is_refused_before_the_token_is_sent() {
    let https = Https::start();
    let other = TestCa::new(https.dir.path(), "other-ca");
    let db = TestDb::new(Backend::Sqlite).await;
    let url = https.server.url("access.git");
    // The right CA, but a name the certificate (IP:127.0.0.1) does not hold.
    let by_name = url.replace("127.0.0.1", "localhost");
    let token = ("tokenFile", https.token.as_path());
    let sources = [
        // The system's CA store, which knows nothing of the test's CA.
        git_source("system-store", &url, &[token]),
        git_source("other-ca", &url, &[token, ("caFile", &other.cert)]),
        git_source("wrong-name", &by_name, &[token, ("caFile", &https.ca.cert)]),
    ];
    let config = config(https.dir.path(), &db, &sources.concat());
    let accord = Controller::start(https.dir.path(), &config).await;

    let errors = [
        ("system-store", &url, "the SSL certificate is invalid: the certificate of 127.0.0.1 was checked against the system's CA store; if a private CA signs it, set git.caFile".to_owned()),
        ("other-ca", &url, format!("the certificate of 127.0.0.1 is refused: it is not signed by a certificate in caFile {}", other.cert.display())),
        ("wrong-name", &by_name, "the certificate of localhost is refused: it is not issued for localhost".to_owned()),
    ];
    for (name, url, expected) in errors {
        let status = accord.wait_for(name, WAIT, |s| s["state"] == "Error").await;
        assert!(
            message(&status).starts_with(&format!("git: cannot fetch {url}: {expected}")),
            "{name}: {status}"
        );
    }
    assert_eq!(db.scalar("SELECT COUNT(*) FROM permits").await, 0);
    let served = https.log_text();
    assert!(
        !served.contains("\"GET ") && !served.contains("\"POST "),
        "no request (and so no token) reached the server:\n{served}"
    );
}

/// `Served` behind sshd, and a known_hosts file that trusts it.
struct Ssh {
    dir: tempfile::TempDir,
    served: Served,
    server: GitSsh,
    url: String,
}

impl Ssh {
    fn start() -> Ssh {
        let dir = tempfile::tempdir().expect("tempdir");
        let served = Served::new(dir.path());
        let server = GitSsh::start(dir.path());
        let url = server.url(&served.root.join("access.git"));
        Ssh {
            dir,
            served,
            server,
            url,
        }
    }

    /// A file in the test's folder holding `text`.
    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        path
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repository_over_ssh_is_followed_when_known_hosts_file_lists_its_host_key() {
    let ssh = Ssh::start();
    let known_hosts = ssh.file(
        "known_hosts",
        &format!("{}\n", ssh.server.known_hosts_line()),
    );
    let db = TestDb::new(Backend::Sqlite).await;
    let source = git_source(
        "platform",
        &ssh.url,
        &[
            ("sshKeyFile", &ssh.server.client_key),
            ("knownHostsFile", &known_hosts),
        ],
    );
    let config = config(ssh.dir.path(), &db, &source);
    let accord = start_at_home(ssh.dir.path(), &config).await;
    accord
        .wait_for("platform", WAIT, |s| applied(s, &ssh.served.first))
        .await;
    assert_eq!(db.scalar("SELECT COUNT(*) FROM permits").await, 4);
    let second = ssh.served.push_change();
    accord
        .wait_for("platform", WAIT, |s| applied(s, &second))
        .await;
    assert!(
        ssh.server.log_text().contains("Accepted publickey"),
        "accord signed in with sshKeyFile:\n{}",
        ssh.server.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ssh_key_the_server_refuses_is_an_error_that_names_ssh_key_file() {
    let ssh = Ssh::start();
    let known_hosts = ssh.file(
        "known_hosts",
        &format!("{}\n", ssh.server.known_hosts_line()),
    );
    let stranger = ssh.dir.path().join("stranger_key");
    let keygen = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f", path_text(&stranger)])
        .status()
        .expect("ssh-keygen");
    assert!(keygen.success());
    let db = TestDb::new(Backend::Sqlite).await;
    let source = git_source(
        "platform",
        &ssh.url,
        &[("sshKeyFile", &stranger), ("knownHostsFile", &known_hosts)],
    );
    let config = config(ssh.dir.path(), &db, &source);
    let accord = start_at_home(ssh.dir.path(), &config).await;
    let status = accord
        .wait_for("platform", WAIT, |s| s["state"] == "Error")
        .await;
    let text = message(&status);
    assert!(
        text.starts_with(&format!("git: cannot fetch {}: ", ssh.url))
            && text.ends_with(&format!(
                ": the remote refused the key in sshKeyFile {}",
                stranger.display()
            )),
        "{text}"
    );
    assert_eq!(db.scalar("SELECT COUNT(*) FROM permits").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ssh_host_key_that_is_not_known_is_refused_before_the_key_is_offered() {
    let ssh = Ssh::start();
    let line = ssh.server.known_hosts_line();
    // Another host's key, and this host under another key.
    let other = ssh.dir.path().join("other_host_key");
    let keygen = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f", path_text(&other)])
        .status()
        .expect("ssh-keygen");
    assert!(keygen.success());
    let other_key = std::fs::read_to_string(other.with_extension("pub")).expect("key");
    let other_key = other_key
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    let unlisted = ssh.file("unlisted", &format!("git.example.com {other_key}\n"));
    let changed = ssh.file(
        "changed",
        &format!("[127.0.0.1]:{} {other_key}\n", ssh.server.port),
    );
    let key = &ssh.server.client_key;
    let sources = [
        // No knownHostsFile: libgit2 reads ~/.ssh/known_hosts, here empty.
        git_source("default", &ssh.url, &[("sshKeyFile", key)]),
        git_source(
            "unlisted",
            &ssh.url,
            &[("sshKeyFile", key), ("knownHostsFile", &unlisted)],
        ),
        git_source(
            "changed",
            &ssh.url,
            &[("sshKeyFile", key), ("knownHostsFile", &changed)],
        ),
    ];
    let db = TestDb::new(Backend::Sqlite).await;
    let config = config(ssh.dir.path(), &db, &sources.concat());
    let accord = start_at_home(ssh.dir.path(), &config).await;

    let errors = [
        ("default", "is not in ~/.ssh/known_hosts".to_owned()),
        (
            "unlisted",
            format!("is not in knownHostsFile {}", unlisted.display()),
        ),
        (
            "changed",
            format!("does not match knownHostsFile {}", changed.display()),
        ),
    ];
    for (name, expected) in errors {
        let status = accord.wait_for(name, WAIT, |s| s["state"] == "Error").await;
        let text = message(&status);
        assert!(
            text.contains(&format!("cannot fetch {}", ssh.url)) && text.contains(&expected),
            "{name}: {text}"
        );
        if name != "changed" {
            assert!(text.contains(&line), "{name} names the line to add: {text}");
        }
    }
    assert_eq!(db.scalar("SELECT COUNT(*) FROM permits").await, 0);
    let log = ssh.server.log_text();
    assert!(
        log.contains("Connection from 127.0.0.1") && !log.contains("publickey"),
        "accord reached sshd and never offered its key:\n{log}"
    );
}
