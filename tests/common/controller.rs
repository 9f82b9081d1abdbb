//! `accord run` as a child process on a free loopback port, and the tools
//! its tests need: real Git repositories made with `git`, a `git daemon`,
//! and polling for a condition with a deadline.
#![allow(dead_code)] // each test binary uses its own subset

use std::future::Future;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use accord::model::render::object_yaml;
use accord::model::Object;
use serde_json::Value;

use super::builders::permit;

/// Objects as one YAML file of `---`-separated documents.
pub fn documents(objects: &[Object]) -> String {
    objects
        .iter()
        .map(|o| object_yaml(Some(o)))
        .collect::<Vec<_>>()
        .join("---\n")
}

/// A permit in the default app granting `svc:<id>` to `role`.
pub fn grant(id: &str, role: &str) -> Object {
    permit(id)
        .permission(&format!("svc:{id}"))
        .roles([role])
        .build()
}

/// The source is `Synced` at `revision`.
pub fn synced_at(status: &Value, revision: &str) -> bool {
    status["state"] == "Synced" && status["lastAppliedRevision"] == revision
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A running `accord run`. Killed (SIGKILL) when dropped.
pub struct Controller {
    pub child: Child,
    pub url: String,
    pub log: PathBuf,
}

impl Controller {
    /// Starts `accord run --config <config>` in `dir` on a port of its own
    /// choosing (it binds port 0 and logs the address it got), and waits
    /// until it answers /healthz.
    pub async fn start(dir: &Path, config: &Path) -> Controller {
        Self::start_with(dir, &["run", "--config", config.to_str().expect("utf-8")]).await
    }

    pub async fn start_with(dir: &Path, args: &[&str]) -> Controller {
        Self::start_command(dir, Command::new(env!("CARGO_BIN_EXE_accord")), args).await
    }

    /// `accord run` with at most `files` open files (`prlimit`).
    pub async fn start_with_file_limit(dir: &Path, args: &[&str], files: u32) -> Controller {
        let mut command = Command::new("prlimit");
        command
            .arg(format!("--nofile={files}:{files}"))
            .arg("--")
            .arg(env!("CARGO_BIN_EXE_accord"));
        Self::start_command(dir, command, args).await
    }

    /// `accord run` as `command` (a `Command` already set up, say with
    /// its own environment) with `args`.
    pub async fn start_command(dir: &Path, mut command: Command, args: &[&str]) -> Controller {
        static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = dir.join(format!("accord-{}-{n}.log", std::process::id()));
        let file = std::fs::File::create(&log).expect("log file");
        let child = command
            .args(args)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .current_dir(dir)
            .env("ACCORD_LOG", "accord=debug")
            .env_remove("ACCORD_DATABASE_URL")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start accord run");
        let mut controller = Controller {
            child,
            url: String::new(),
            log,
        };
        // The address it bound, from its log.
        let deadline = Instant::now() + Duration::from_secs(20);
        while controller.url.is_empty() {
            if let Some(at) = controller.log_text().find("listening on http://") {
                let rest = &controller.log_text()[at + "listening on ".len()..];
                // Up to the end of the word, or of the JSON string (--log-format json).
                let url: String = rest
                    .chars()
                    .take_while(|c| !c.is_whitespace() && *c != '"')
                    .collect();
                controller.url = url;
                break;
            }
            if let Ok(Some(status)) = controller.child.try_wait() {
                panic!("accord run exited ({status}):\n{}", controller.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "accord run did not say where it listens:\n{}",
                controller.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let client = reqwest::Client::new();
        let healthy = eventually(Duration::from_secs(20), || async {
            client
                .get(format!("{}/healthz", controller.url))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await;
        assert!(
            healthy,
            "accord run did not come up:\n{}",
            controller.log_text()
        );
        controller
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A JSON answer (`Null` when it is not JSON).
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let (status, text) = self.get_text(path).await;
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A page, as text.
    pub async fn get_text(&self, path: &str) -> (u16, String) {
        let response = reqwest::Client::new()
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    }

    pub async fn post(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut request = reqwest::Client::new().post(format!("{}{path}", self.url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// The status of one source.
    pub async fn source(&self, name: &str) -> Value {
        let (_, body) = self.get("/api/v1/status").await;
        body["sources"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["name"] == name).cloned())
            .unwrap_or(Value::Null)
    }

    /// Waits until the source's status satisfies `check`.
    pub async fn wait_for(
        &self,
        name: &str,
        timeout: Duration,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.source(name).await;
            if check(&status) {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting on source `{name}`; last status {status:#}\nlog:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the source has had `n` more chances to act (its attempt
    /// counter advanced `n` times): "nothing else happened" is shown by the
    /// thing that would have happened having had its chance.
    pub async fn wait_for_attempts(&self, name: &str, n: u64) -> Value {
        let now = self.source(name).await["attempts"].as_u64().unwrap_or(0);
        self.wait_for(name, Duration::from_secs(60), |s| {
            s["attempts"].as_u64().unwrap_or(0) >= now + n
        })
        .await
    }

    /// Waits until no changes wait to settle, then runs one more sync
    /// (through the API) and returns the status after it: whatever the
    /// changes seen so far asked for has been served by then.
    pub async fn settled(&self, name: &str, token: Option<&str>) -> Value {
        self.wait_for(name, Duration::from_secs(60), |s| {
            s["pendingChanges"] == false
        })
        .await;
        let (code, status) = self
            .post(&format!("/api/v1/sources/{name}/sync"), token)
            .await;
        assert_eq!(code, 200, "{status}");
        status
    }

    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        self.child.wait().expect("wait")
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` until it holds or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, check: F) -> bool
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// A Git working repository made with the `git` command.
pub struct Repo {
    pub path: PathBuf,
}

impl Repo {
    pub fn init(path: &Path) -> Repo {
        std::fs::create_dir_all(path).expect("mkdir");
        let repo = Repo {
            path: path.to_owned(),
        };
        repo.git(&["init", "-q", "-b", "main"]);
        repo
    }

    pub fn git(&self, args: &[&str]) -> String {
        let output = Command::new("git")
            .args([
                "-c",
                "user.name=Test Author",
                "-c",
                "user.email=author@example.com",
            ])
            .args([
                "-c",
                "commit.gpgsign=false",
                "-c",
                "init.defaultBranch=main",
            ])
            .args(args)
            .current_dir(&self.path)
            .output()
            .expect("run git");
        assert!(
            output.status.success(),
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    pub fn write(&self, relative: &str, text: &str) -> &Repo {
        let path = self.path.join(relative);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
        self
    }

    /// Commits everything as `author` and returns the commit id.
    pub fn commit(&self, message: &str, author: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&[
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            message,
            "--author",
            author,
        ]);
        self.head()
    }

    /// Commits everything with an author name that `git commit` would
    /// clean up (one holding `<` or `>`, as a hand-made or hostile commit
    /// may): the commit object is written as it is. Returns its id.
    pub fn commit_raw(&self, message: &str, author_name: &str) -> String {
        self.git(&["add", "-A"]);
        let tree = self.git(&["write-tree"]);
        let parent = Command::new("git")
            .args(["rev-parse", "--verify", "-q", "HEAD"])
            .current_dir(&self.path)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        let mut object = format!("tree {tree}\n");
        if !parent.is_empty() {
            object.push_str(&format!("parent {parent}\n"));
        }
        object.push_str(&format!(
            "author {author_name} <author@example.com> 1767225600 +0000\n\
             committer Test Author <author@example.com> 1767225600 +0000\n\n{message}\n"
        ));
        let file = self.path.join(".git/raw-commit");
        std::fs::write(&file, object).expect("write the commit object");
        let id = self.git(&[
            "hash-object",
            "--literally",
            "-t",
            "commit",
            "-w",
            file.to_str().expect("utf-8"),
        ]);
        self.git(&["update-ref", "HEAD", &id]);
        id
    }

    pub fn head(&self) -> String {
        self.git(&["rev-parse", "HEAD"])
    }

    pub fn url(&self) -> String {
        format!("file://{}", self.path.display())
    }
}

/// `git daemon` serving every repository under `base` on a loopback port.
pub struct GitDaemon {
    child: Child,
    pub port: u16,
}

impl GitDaemon {
    pub async fn start(base: &Path) -> GitDaemon {
        let port = free_port();
        let child = Command::new("git")
            .args([
                "daemon",
                "--export-all",
                "--reuseaddr",
                "--listen=127.0.0.1",
            ])
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", base.display()))
            .arg(base)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start git daemon");
        let up = eventually(Duration::from_secs(10), || async {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        })
        .await;
        assert!(up, "git daemon did not start");
        GitDaemon { child, port }
    }

    pub fn url(&self, name: &str) -> String {
        format!("git://127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
