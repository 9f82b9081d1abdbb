//! The container image users get: the final stage of the Dockerfile, built
//! with podman by scripts/image from the accord binary these tests built (CI
//! has no registry to pull the Dockerfile's Rust stage from), and run the way
//! the Helm chart runs it: as UID/GID 65532 with no capabilities, a read-only
//! root filesystem, SQLite on a volume at /var/lib/accord, Git objects on a
//! volume at /var/cache/accord, the config file and the API token mounted
//! read-only, no network but its own.
//!
//! scripts/test installs podman and runc. Each test gives podman a storage
//! folder of its own in a temporary directory, so parallel runs never share
//! images or containers, and removes what it made. podman runs as root (as
//! scripts/test and CI do): the probes reach into the container's network
//! namespace with nsenter, as the kubelet reaches a pod's address.

mod common;

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::{chown, MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::controller::{documents, grant, Repo};
use serde_json::Value;
use tempfile::TempDir;

/// What the chart's securityContext runs accord as.
const CHART_UID: u32 = 65532;
const FOLDER_SOURCE: &str = "config";
const GIT_SOURCE: &str = "access";
const DATABASE_URL: &str = "sqlite:///var/lib/accord/accord.db";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A program on PATH. Missing, the test fails: an image test that skipped
/// would pass on a machine that checks nothing.
fn tool(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|path| path.is_file())
        })
        .unwrap_or_else(|| {
            panic!("no {name}: run the tests through scripts/test, which installs it (as root)")
        })
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn describe(output: &Output) -> String {
    format!(
        "{}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    )
}

/// A name no other test or test run uses.
fn unique(what: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "accord-test-{what}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// podman with a storage folder of its own, holding the accord image built
/// from this build's binary. Dropped, it removes its containers and image,
/// then the folder.
struct Podman {
    program: PathBuf,
    image: String,
    containers: std::cell::RefCell<Vec<String>>,
    dir: TempDir,
}

impl Podman {
    fn with_accord_image() -> Podman {
        let program = tool("podman");
        tool("runc");
        // Rootless podman needs subordinate IDs and a user namespace, and the
        // probes need the container's network namespace: both are root's.
        let uid = fs::metadata("/proc/self").expect("/proc/self").uid();
        assert_eq!(
            uid, 0,
            "tests/container.rs runs podman as root, as scripts/test does in CI"
        );
        let podman = Podman {
            program,
            image: format!("localhost/{}:latest", unique("image")),
            containers: Default::default(),
            dir: tempfile::tempdir().expect("tempdir"),
        };
        let started = Instant::now();
        let output = Command::new(repo().join("scripts/image"))
            .arg("--binary")
            .arg(env!("CARGO_BIN_EXE_accord"))
            .args(["--tag", &podman.image, "--strip", "--"])
            .args(podman.global_options())
            .output()
            .expect("run scripts/image");
        assert!(
            output.status.success(),
            "scripts/image failed: {}",
            describe(&output)
        );
        eprintln!("scripts/image took {:?}", started.elapsed());
        podman
    }

    /// Storage, run state and events in the test's folder; vfs and cgroupfs
    /// because they need nothing from the machine (no overlay mounts, no
    /// systemd); runc, which scripts/test installs.
    fn global_options(&self) -> Vec<OsString> {
        let at = |name: &str| self.dir.path().join(name).into_os_string();
        let mut options: Vec<OsString> = Vec::new();
        for (flag, value) in [
            ("--root", at("storage")),
            ("--runroot", at("run")),
            ("--tmpdir", at("libpod")),
        ] {
            options.push(flag.into());
            options.push(value);
        }
        for option in [
            "--storage-driver=vfs",
            "--cgroup-manager=cgroupfs",
            "--runtime=runc",
            "--events-backend=file",
        ] {
            options.push(option.into());
        }
        options
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        command.args(self.global_options());
        command
    }

    fn output<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        self.command()
            .args(&args)
            .output()
            .unwrap_or_else(|e| panic!("podman {args:?}: {e}"))
    }

    /// stdout of a podman command that must succeed.
    fn ok<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let output = self.output(args.clone());
        assert!(
            output.status.success(),
            "podman {args:?}: {}",
            describe(&output)
        );
        text(&output.stdout).trim().to_owned()
    }

    /// A fresh container name, removed when the test ends.
    fn container(&self, what: &str) -> String {
        let name = unique(what);
        self.containers.borrow_mut().push(name.clone());
        name
    }

    fn logs(&self, container: &str) -> String {
        let output = self.output(["logs", container]);
        format!("{}{}", text(&output.stdout), text(&output.stderr))
    }

    fn inspect(&self, what: &str, format: &str) -> String {
        self.ok(["inspect", "--format", format, what])
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        for name in self.containers.borrow().iter() {
            let _ = self.output(["rm", "--force", "--time", "0", name.as_str()]);
        }
        let _ = self.output(["rmi", "--force", self.image.as_str()]);
    }
}

/// What the chart mounts into the pod, made on the host: the config file
/// (its ConfigMap, with a folder and a Git source in place of the Kubernetes
/// one), the API token (its Secret), the SQLite volume and the Git cache
/// (its emptyDir), both owned by 65532 as fsGroup makes them, and what the
/// sources read: a folder of YAML and a Git repository.
struct Mounts {
    dir: TempDir,
    folder_objects: usize,
    git_objects: usize,
    git_head: String,
}

impl Mounts {
    fn new() -> Mounts {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        // The container's user must get through the temporary folder.
        fs::set_permissions(root, fs::Permissions::from_mode(0o755)).expect("chmod");

        let folder_objects = [grant("orders", "svc:reader"), grant("billing", "svc:admin")];
        fs::create_dir(root.join("objects")).expect("mkdir");
        fs::write(
            root.join("objects/permits.yaml"),
            documents(&folder_objects),
        )
        .expect("write");

        let git_objects = [grant("ledger", "svc:auditor")];
        let repo = Repo::init(&root.join("access"));
        repo.write("permits/ledger.yaml", &documents(&git_objects));
        let git_head = repo.commit("ledger access", "Test Author <author@example.com>");
        // libgit2 opens only repositories owned by the user it runs as.
        let owned = Command::new("chown")
            .args(["-R", &format!("{CHART_UID}:{CHART_UID}")])
            .arg(&repo.path)
            .status()
            .expect("chown");
        assert!(owned.success());

        // As the chart's configmap.yaml renders it.
        let config = format!(
            "listen: 0.0.0.0:8080\ncacheDir: /var/cache/accord\n\
             apiTokenFile: /etc/accord/api/token\n\
             sources:\n\
             \x20 - name: {FOLDER_SOURCE}\n    directory: {{path: /etc/accord/config}}\n\
             \x20 - name: {GIT_SOURCE}\n    git: {{url: file:///srv/access, ref: main, path: permits}}\n"
        );
        fs::write(root.join("accord.yaml"), config).expect("write");

        // A Secret volume: mode 0440, group fsGroup.
        fs::create_dir(root.join("api")).expect("mkdir");
        let token = root.join("api/token");
        fs::write(&token, "container-test-token").expect("write");
        chown(&token, Some(0), Some(CHART_UID)).expect("chown");
        fs::set_permissions(&token, fs::Permissions::from_mode(0o440)).expect("chmod");

        for volume in ["data", "cache"] {
            let path = root.join(volume);
            fs::create_dir(&path).expect("mkdir");
            chown(&path, Some(CHART_UID), Some(CHART_UID)).expect("chown");
        }

        Mounts {
            dir,
            folder_objects: folder_objects.len(),
            git_objects: git_objects.len(),
            git_head,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn volume(&self, name: &str, at: &str, options: &str) -> OsString {
        let mut spec = self.path(name).into_os_string();
        spec.push(format!(":{at}{options}"));
        spec
    }
}

/// `podman run` options for what the chart's pod spec says: runAsUser and
/// runAsGroup 65532, readOnlyRootFilesystem with a tmpfs at /tmp (an
/// emptyDir there), no capabilities, no privilege escalation, and its
/// environment and mounts; `data` names the folder for /var/lib/accord.
/// Limits are set because podman's default open-file limit is above what
/// this machine's hard limit allows.
fn chart_options(mounts: &Mounts, data: Option<&str>) -> Vec<OsString> {
    let mut options: Vec<OsString> = [
        "--user=65532:65532",
        "--read-only",
        "--read-only-tmpfs=false",
        "--tmpfs=/tmp",
        "--cap-drop=all",
        "--security-opt=no-new-privileges",
        "--network=none",
        "--ulimit=nofile=1024:1024",
        "--ulimit=nproc=4096:4096",
        "--env=ACCORD_LOG=info",
    ]
    .map(OsString::from)
    .to_vec();
    options.push(format!("--env=ACCORD_DATABASE_URL={DATABASE_URL}").into());
    // A bind mount rather than --tmpfs for the cache: podman gives a tmpfs
    // over a folder the image has that folder's mode but root as owner.
    for (name, at, mode) in [
        ("accord.yaml", "/etc/accord/accord.yaml", ":ro"),
        ("api", "/etc/accord/api", ":ro"),
        ("cache", "/var/cache/accord", ""),
        ("objects", "/etc/accord/config", ":ro"),
        ("access", "/srv/access", ":ro"),
    ] {
        options.push("--volume".into());
        options.push(mounts.volume(name, at, mode));
    }
    if let Some(data) = data {
        options.push("--volume".into());
        options.push(mounts.volume(data, "/var/lib/accord", ""));
    }
    options
}

/// An HTTP GET from inside the container's network namespace, as the
/// kubelet's probes arrive; the status code, or None when nothing answered.
fn probe(pid: &str, path: &str) -> Option<u16> {
    let output = Command::new(tool("nsenter"))
        .args(["--target", pid, "--net", "--"])
        .arg(tool("curl"))
        .args(["--silent", "--output", "/dev/null", "--max-time", "5"])
        .args(["--write-out", "%{http_code}"])
        .arg(format!("http://127.0.0.1:8080{path}"))
        .output()
        .expect("run nsenter");
    text(&output.stdout)
        .trim()
        .parse()
        .ok()
        .filter(|&code| code != 0)
}

/// A `Name:\tvalue` line of /proc/PID/status, as the host's kernel sees the
/// process (a scratch image has no `id` to ask from inside).
fn proc_status(pid: &str, name: &str) -> String {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The host's accord on the database the container left on the volume.
fn accord_on_volume(mounts: &Mounts, args: &[&str]) -> Output {
    let database = format!("sqlite://{}", mounts.path("data/accord.db").display());
    Command::new(env!("CARGO_BIN_EXE_accord"))
        .args(args)
        .args(["--database", &database])
        .env("ACCORD_COLOR", "never")
        .env_remove("ACCORD_DATABASE_URL")
        .output()
        .expect("run accord")
}

#[test]
fn image_runs_as_the_chart_runs_it_and_keeps_its_database_on_the_volume() {
    let podman = Podman::with_accord_image();
    let mounts = Mounts::new();

    // The image's defaults are the chart's: its user, and its args as CMD.
    let deployment = fs::read_to_string(repo().join("charts/accord/templates/deployment.yaml"))
        .expect("deployment.yaml");
    let chart_args: Value = deployment
        .lines()
        .find_map(|line| line.trim().strip_prefix("args:"))
        .map(|args| serde_json::from_str(args.trim()).expect("args is a JSON-style list"))
        .expect("the chart's container has args");
    let config: Value = serde_json::from_str(&podman.inspect(&podman.image, "{{json .Config}}"))
        .expect("image config");
    assert_eq!(config["User"], "65532:65532", "{config:#}");
    assert_eq!(config["Entrypoint"], serde_json::json!(["/accord"]));
    assert_eq!(
        config["Cmd"], chart_args,
        "the image's CMD is the chart's args"
    );

    // No command: the image's CMD, which is what the chart passes.
    let name = podman.container("run");
    let started = Instant::now();
    let mut run: Vec<OsString> = vec!["run".into(), "--detach".into(), "--name".into()];
    run.push(name.clone().into());
    run.extend(chart_options(&mounts, Some("data")));
    run.push(podman.image.clone().into());
    podman.ok(run);
    let pid = podman.inspect(&name, "{{.State.Pid}}");

    // Ready means the database is reachable and every source synced once:
    // the folder read through a read-only mount, the Git repository fetched
    // into the cache volume.
    let deadline = Instant::now() + Duration::from_secs(60);
    while probe(&pid, "/readyz") != Some(200) {
        let running = podman.inspect(&name, "{{.State.Running}}");
        assert!(
            running == "true" && Instant::now() < deadline,
            "accord never got ready (running: {running}):\n{}",
            podman.logs(&name)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("ready {:?} after podman run", started.elapsed());
    assert_eq!(probe(&pid, "/healthz"), Some(200), "{}", podman.logs(&name));

    // The image's own binary, as a client inside the container.
    let status = podman.output([
        "exec",
        name.as_str(),
        "/accord",
        "status",
        "--server",
        "http://127.0.0.1:8080",
        "--output",
        "json",
    ]);
    assert!(status.status.success(), "{}", describe(&status));
    let status: Value = serde_json::from_slice(&status.stdout).expect("status JSON");
    let source = |name: &str| {
        status["sources"]
            .as_array()
            .and_then(|sources| sources.iter().find(|s| s["name"] == name))
            .unwrap_or_else(|| panic!("no source {name}: {status:#}"))
    };
    let folder = source(FOLDER_SOURCE);
    assert_eq!(folder["state"], "Synced", "{folder:#}");
    assert_eq!(folder["counts"]["managed"], mounts.folder_objects);
    let git = source(GIT_SOURCE);
    assert_eq!(git["state"], "Synced", "{git:#}");
    assert_eq!(git["lastAppliedRevision"], mounts.git_head.as_str());
    assert_eq!(git["counts"]["managed"], mounts.git_objects);
    // The Git source fetched into the cache volume, as 65532.
    let fetched: Vec<_> = fs::read_dir(mounts.path("cache"))
        .expect("cache")
        .map(|entry| entry.expect("entry").metadata().expect("metadata"))
        .collect();
    assert!(!fetched.is_empty(), "nothing in the cache volume");
    assert!(fetched.iter().all(|m| m.uid() == CHART_UID));

    // The kernel's view of the process: the chart's user and group, and no
    // way to more privilege.
    assert_eq!(proc_status(&pid, "Uid"), "65532 65532 65532 65532");
    assert_eq!(proc_status(&pid, "Gid"), "65532 65532 65532 65532");
    for capabilities in ["CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(proc_status(&pid, capabilities), "0000000000000000");
    }
    assert_eq!(proc_status(&pid, "NoNewPrivs"), "1");

    // SIGTERM, as Kubernetes stops a pod: accord, as PID 1, shuts down cleanly.
    podman.ok(["stop", "--time", "30", name.as_str()]);
    assert_eq!(
        podman.inspect(&name, "{{.State.ExitCode}}"),
        "0",
        "{}",
        podman.logs(&name)
    );

    let database = fs::metadata(mounts.path("data/accord.db")).expect("accord.db on the volume");
    assert_eq!((database.uid(), database.gid()), (CHART_UID, CHART_UID));
    // The file holds what the container applied, with an intact history.
    for (source, folder) in [(FOLDER_SOURCE, "objects"), (GIT_SOURCE, "access/permits")] {
        let folder = mounts.path(folder);
        let plan = accord_on_volume(
            &mounts,
            &[
                "plan",
                "--source",
                folder.to_str().expect("utf-8"),
                "--source-name",
                source,
            ],
        );
        assert_eq!(
            plan.status.code(),
            Some(0),
            "nothing left to do for {source}: {}",
            describe(&plan)
        );
    }
    let verify = accord_on_volume(&mounts, &["audit", "verify"]);
    assert!(verify.status.success(), "{}", describe(&verify));
}

#[test]
fn image_root_filesystem_is_read_only_so_state_needs_the_volume() {
    let podman = Podman::with_accord_image();
    let mounts = Mounts::new();
    let apply = |read_only: bool| {
        let mut args: Vec<OsString> = vec!["run".into(), "--rm".into(), "--name".into()];
        args.push(podman.container("apply").into());
        args.extend(
            chart_options(&mounts, None)
                .into_iter()
                .filter(|option| read_only || option != "--read-only"),
        );
        args.push(podman.image.clone().into());
        args.extend(
            [
                "apply",
                "--source",
                "/etc/accord/config",
                "--source-name",
                FOLDER_SOURCE,
            ]
            .map(OsString::from),
        );
        podman.output(args)
    };

    // Without a volume at /var/lib/accord, the image's own folder (owned by
    // 65532) is all there is: on a read-only root, creating the database
    // there fails. SQLite's message does not say why; the run below does.
    let refused = apply(true);
    assert_eq!(refused.status.code(), Some(1), "{}", describe(&refused));
    let error = text(&refused.stderr);
    assert!(
        error.contains(&format!("cannot connect to {DATABASE_URL}"))
            && error.contains("unable to open database file"),
        "{}",
        describe(&refused)
    );

    // The same run on a writable root succeeds: the refusal above is the
    // read-only root's, not the folder's permissions.
    let applied = apply(false);
    assert!(applied.status.success(), "{}", describe(&applied));
}
