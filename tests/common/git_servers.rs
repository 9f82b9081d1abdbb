//! Git servers on loopback for the transports `git daemon` does not cover:
//! `git http-backend` behind TLS and a token (tests/git-https-server.py),
//! and `sshd` serving `git-upload-pack`. Certificates and keys are made in
//! the test's temp dir. A missing binary fails the test with what to run:
//! these transports are never skipped silently.
#![allow(dead_code)] // each test binary uses its own subset

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Runs `program` with `args` and fails the test with its output when it fails.
fn run(program: &str, args: &[&str]) {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {program} ({e}): run scripts/test, which installs it")
        });
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

pub fn path_text(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// A certificate authority made for one test with `openssl`.
pub struct TestCa {
    pub cert: PathBuf,
    key: PathBuf,
}

impl TestCa {
    /// A self-signed CA in `dir`, its files named after `name`.
    pub fn new(dir: &Path, name: &str) -> TestCa {
        let (cert, key) = (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
        );
        let subject = format!("/CN=accord test {name}");
        let mut args =
            words("req -x509 -nodes -days 2 -newkey ec -pkeyopt ec_paramgen_curve:P-256");
        args.extend([
            "-subj",
            &subject,
            "-keyout",
            path_text(&key),
            "-out",
            path_text(&cert),
        ]);
        args.extend(words(
            "-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign",
        ));
        run("openssl", &args);
        TestCa { cert, key }
    }

    /// A server certificate for 127.0.0.1 signed by this CA: (certificate, key).
    pub fn issue(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let (cert, key) = (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
        );
        let mut args =
            words("req -x509 -nodes -days 2 -newkey ec -pkeyopt ec_paramgen_curve:P-256");
        args.extend(["-CA", path_text(&self.cert), "-CAkey", path_text(&self.key)]);
        args.extend([
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            path_text(&key),
            "-out",
            path_text(&cert),
        ]);
        args.extend(words("-addext subjectAltName=IP:127.0.0.1 -addext basicConstraints=critical,CA:FALSE -addext extendedKeyUsage=serverAuth"));
        run("openssl", &args);
        (cert, key)
    }
}

/// tests/git-https-server.py: the bare repositories under a folder over
/// HTTPS on a loopback port, to clients that send the token. Killed when
/// dropped.
pub struct GitHttps {
    child: Child,
    pub port: u16,
}

impl GitHttps {
    /// Serves the repositories under `root` with `cert`/`key`; `token_file`
    /// holds the token clients must send; the server logs to `log`.
    pub fn start(root: &Path, cert: &Path, key: &Path, token_file: &Path, log: &Path) -> GitHttps {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/git-https-server.py");
        let mut child = Command::new("python3")
            .arg(&script)
            .args([
                "--root",
                path_text(root),
                "--cert",
                path_text(cert),
                "--key",
                path_text(key),
            ])
            .args(["--token-file", path_text(token_file)])
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).expect("server log"))
            .spawn()
            .expect(
                "python3 runs tests/git-https-server.py (run scripts/test, which installs python3)",
            );
        let mut port = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut port)
            .expect("the server prints its port");
        let port = port.trim().parse().unwrap_or_else(|_| {
            panic!(
                "git-https-server.py printed no port: {:?}\n{}",
                port,
                std::fs::read_to_string(log).unwrap_or_default()
            )
        });
        GitHttps { child, port }
    }

    pub fn url(&self, name: &str) -> String {
        format!("https://127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for GitHttps {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `sshd` serving Git to one key as the current user. The test holds the
/// listening socket (port 0, so nothing races for a port) and hands each
/// connection to `sshd -i` (inetd mode): no sshd daemon, no pid file, and
/// an unprivileged user can run it. Stopped when dropped.
pub struct GitSsh {
    pub port: u16,
    /// The client's private key, for `sshKeyFile`.
    pub client_key: PathBuf,
    /// The host's public key, `ssh-ed25519 AAAA…`.
    pub host_key: String,
    /// sshd's log (`LogLevel VERBOSE`).
    pub log: PathBuf,
    user: String,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
    sessions: Arc<Mutex<Vec<Child>>>,
}

impl GitSsh {
    pub fn start(dir: &Path) -> GitSsh {
        let sshd = ["/usr/sbin/sshd", "/usr/local/sbin/sshd"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .expect("no sshd: run scripts/test, which installs openssh-server");
        // As root, sshd separates privileges into this directory and will
        // not start without it; Debian creates it only when the service starts.
        assert!(
            !is_root() || Path::new("/run/sshd").is_dir(),
            "sshd needs /run/sshd when run as root: run scripts/test, which creates it"
        );
        let host_key = dir.join("ssh_host_ed25519_key");
        let client_key = dir.join("client_ed25519_key");
        for key in [&host_key, &client_key] {
            run(
                "ssh-keygen",
                &[
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-C",
                    "accord-test",
                    "-f",
                    path_text(key),
                ],
            );
        }
        let authorized = dir.join("authorized_keys");
        std::fs::copy(client_key.with_extension("pub"), &authorized).expect("authorized_keys");
        let config = dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "HostKey {}\nAuthorizedKeysFile {}\n\
                 # The temp dir's modes are not sshd's business.\nStrictModes no\n\
                 UsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 # CI runs as root; the key is the only way in.\nPermitRootLogin prohibit-password\n\
                 PidFile none\nLogLevel VERBOSE\n",
                host_key.display(),
                authorized.display()
            ),
        )
        .expect("sshd_config");
        let log = dir.join("sshd.log");
        std::fs::File::create(&log).expect("sshd log");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = listener.local_addr().expect("address").port();
        let stop = Arc::new(AtomicBool::new(false));
        let sessions = Arc::new(Mutex::new(Vec::<Child>::new()));
        let acceptor = {
            let (stop, sessions, log) = (stop.clone(), sessions.clone(), log.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let socket = OwnedFd::from(stream);
                    let Ok(output) = socket.try_clone() else {
                        continue;
                    };
                    let stderr = std::fs::OpenOptions::new()
                        .append(true)
                        .open(&log)
                        .expect("sshd log");
                    let session = Command::new(&sshd)
                        .args(["-i", "-e", "-f"])
                        .arg(&config)
                        .stdin(Stdio::from(socket))
                        .stdout(Stdio::from(output))
                        .stderr(stderr)
                        .spawn()
                        .expect("start sshd -i");
                    let mut sessions = sessions.lock().expect("sessions");
                    sessions.retain_mut(|s| s.try_wait().is_ok_and(|done| done.is_none()));
                    sessions.push(session);
                }
            })
        };
        GitSsh {
            port,
            client_key,
            host_key: std::fs::read_to_string(host_key.with_extension("pub"))
                .expect("host key")
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" "),
            log,
            user: whoami::username().expect("the current user's name"),
            stop,
            acceptor: Some(acceptor),
            sessions,
        }
    }

    /// The ssh:// URL of the bare repository at `repo` (an absolute path).
    pub fn url(&self, repo: &Path) -> String {
        format!(
            "ssh://{}@127.0.0.1:{}{}",
            self.user,
            self.port,
            repo.display()
        )
    }

    /// The known_hosts line that trusts this server.
    pub fn known_hosts_line(&self) -> String {
        format!("[127.0.0.1]:{} {}", self.port, self.host_key)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for GitSsh {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the acceptor, which then sees `stop`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        for session in self.sessions.lock().expect("sessions").iter_mut() {
            let _ = session.kill();
            let _ = session.wait();
        }
    }
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}
