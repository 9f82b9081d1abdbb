//! `accord run` when the database misbehaves: PostgreSQL stopped and started
//! under a running controller, two replicas sharing one PostgreSQL database,
//! and the process killed in the middle of a large apply (PostgreSQL and SQLite).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use accord::model::Object;
use accord::source::{DirectorySource, DEFAULT_MAX_FILE_SIZE};
use common::builders::{enrollment, org, permit};
use common::controller::{documents, eventually, free_port, grant, synced_at, Controller};
use common::db::{Backend, TestDb};
use serde_json::Value;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, PgConnection, SqliteConnection};

const WAIT: Duration = Duration::from_secs(30);
/// A large first apply in a debug build on a busy machine.
const LONG_WAIT: Duration = Duration::from_secs(90);
const SOURCE: &str = "local";

// ---- fixtures ------------------------------------------------------------------

/// A temp dir holding the watched folder, the config and the controllers' logs.
struct Workspace {
    dir: tempfile::TempDir,
    folder: PathBuf,
}

impl Workspace {
    fn new() -> Workspace {
        let dir = tempfile::tempdir().expect("tempdir");
        let folder = dir.path().join("config");
        std::fs::create_dir(&folder).expect("mkdir");
        Workspace { dir, folder }
    }

    /// Writes the config of one directory source on `database`.
    fn configure(&self, database: &str, interval: &str) -> PathBuf {
        let path = self.dir.path().join("accord.yaml");
        std::fs::write(
            &path,
            format!(
                "database: {database}\ncacheDir: {}\nsources:\n  - name: {SOURCE}\n    directory:\n      path: {}\n    interval: {interval}\n",
                self.dir.path().join("cache").display(),
                self.folder.display()
            ),
        )
        .expect("write config");
        path
    }

    /// Writes `objects` as YAML documents into `file` in the watched folder.
    fn declare(&self, file: &str, objects: &[Object]) {
        std::fs::write(self.folder.join(file), documents(objects)).expect("write declaration");
    }

    /// The content hash of the folder as it is now: the revision accord reports.
    fn revision(&self) -> String {
        DirectorySource::new(&self.folder, DEFAULT_MAX_FILE_SIZE)
            .read_blocking()
            .expect("read folder")
            .revision
    }

    async fn start(&self, config: &Path) -> Controller {
        Controller::start(self.dir.path(), config).await
    }
}

/// `GET /readyz`: status code, `Content-Type` and the body (JSON when it is).
async fn readyz(accord: &Controller) -> (u16, String, Value) {
    let response = reqwest::Client::new()
        .get(format!("{}/readyz", accord.url))
        .send()
        .await
        .expect("request /readyz");
    let code = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = response.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (code, content_type, body)
}

/// Polls /readyz until it answers `code`, and returns that answer.
async fn readyz_becomes(accord: &Controller, code: u16) -> (u16, String, Value) {
    let deadline = Instant::now() + WAIT;
    loop {
        let answer = readyz(accord).await;
        if answer.0 == code {
            return answer;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz never answered {code}; last answer {answer:?}\nlog:\n{}",
            accord.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Text values from a PostgreSQL query (NULL as None).
async fn pg_texts(url: &str, sql: &str) -> Vec<Option<String>> {
    let mut conn = PgConnection::connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    sqlx::query_scalar::<_, Option<String>>(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_all(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// The `roles` of the permit `id` in the default app, as stored.
async fn stored_roles(url: &str, id: &str) -> Value {
    let rows = pg_texts(
        url,
        &format!("SELECT roles FROM permits WHERE app = 'unnamed' AND id = '{id}'"),
    )
    .await;
    let text = rows.into_iter().flatten().next().unwrap_or_default();
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

// ---- a PostgreSQL cluster of the test's own --------------------------------------

/// A throwaway PostgreSQL cluster that a test may stop and start. Its server
/// is stopped (immediately) when dropped.
struct PgCluster {
    bin: PathBuf,
    data: tempfile::TempDir,
    port: u16,
    /// initdb and postgres refuse to run as root; as root the cluster
    /// belongs to the `postgres` user.
    as_postgres: bool,
}

impl PgCluster {
    fn start() -> PgCluster {
        let bin = std::env::var_os("ACCORD_TEST_PG_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                panic!(
                    "ACCORD_TEST_PG_BIN is not set. This test runs a PostgreSQL cluster of its own \
                     (to stop and start it) and needs the directory holding initdb and pg_ctl, \
                     e.g. /usr/lib/postgresql/16/bin; scripts/test sets it."
                )
            });
        let data = tempfile::tempdir().expect("tempdir");
        let as_postgres = running_as_root();
        if as_postgres {
            let chown = Command::new("chown")
                .arg("postgres:")
                .arg(data.path())
                .status()
                .expect("run chown");
            assert!(chown.success(), "chown postgres: {}", data.path().display());
        }
        let cluster = PgCluster {
            bin,
            data,
            port: free_port(),
            as_postgres,
        };
        let dir = cluster.dir();
        cluster.pg(
            "initdb",
            &[
                "-D",
                &dir,
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
        );
        cluster.start_server();
        cluster
    }

    fn dir(&self) -> String {
        self.data
            .path()
            .to_str()
            .expect("utf-8 temp dir")
            .to_owned()
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// A PostgreSQL tool, run as the cluster's owner from `/` (which that
    /// user can read, unlike our working directory).
    fn command(&self, tool: &str) -> Command {
        let program = self.bin.join(tool);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        };
        command.current_dir("/");
        command
    }

    fn pg(&self, tool: &str, args: &[&str]) {
        let output = self
            .command(tool)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("run {tool} from {}: {e}", self.bin.display()));
        assert!(
            output.status.success(),
            "{tool} {args:?} failed: {}{}\nserver log:\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            std::fs::read_to_string(self.data.path().join("log")).unwrap_or_default()
        );
    }

    fn start_server(&self) {
        let dir = self.dir();
        let options = format!(
            "-h 127.0.0.1 -p {} -k {dir} -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            self.port
        );
        self.pg(
            "pg_ctl",
            &[
                "-w",
                "-D",
                &dir,
                "-l",
                &format!("{dir}/log"),
                "start",
                "-o",
                &options,
            ],
        );
    }

    /// A clean stop: sessions are ended and the port closes.
    fn stop_server(&self) {
        self.pg("pg_ctl", &["-w", "-D", &self.dir(), "-m", "fast", "stop"]);
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .args(["-D", &self.dir(), "-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

// ---- outage ----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_fails_readyz_and_recovers_without_restart() {
    let cluster = PgCluster::start();
    let work = Workspace::new();
    let config = work.configure(&cluster.url(), "500ms");
    work.declare(
        "permits.yaml",
        &[grant("pay", "svc:payer"), grant("refund", "svc:admin")],
    );
    let before = work.revision();
    let accord = work.start(&config).await;
    accord
        .wait_for(SOURCE, WAIT, |s| synced_at(s, &before))
        .await;
    readyz_becomes(&accord, 200).await;

    cluster.stop_server();
    let (_, content_type, problem) = readyz_becomes(&accord, 503).await;
    assert!(
        content_type.starts_with("application/problem+json"),
        "content type {content_type:?}, body {problem}"
    );
    assert_eq!(problem["status"], 503, "{problem}");
    let detail = problem["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("database"), "{problem}");
    let failed = accord
        .wait_for(SOURCE, WAIT, |s| s["state"] == "Error")
        .await;
    let message = failed["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("database"),
        "the status says what failed: {failed:#}"
    );
    assert_eq!(failed["lastAppliedRevision"], before.as_str());

    // An edit while the database is away is read, and its sync fails too.
    work.declare(
        "permits.yaml",
        &[grant("pay", "svc:payer"), grant("refund", "svc:auditor")],
    );
    let during = work.revision();
    let attempted = accord
        .wait_for(SOURCE, WAIT, |s| {
            s["state"] == "Error" && s["lastAttemptedRevision"] == during.as_str()
        })
        .await;
    assert_eq!(attempted["lastAppliedRevision"], before.as_str());

    cluster.start_server();
    // Nothing pokes the worker any more: its (capped) backoff alone brings
    // the same process back.
    accord
        .wait_for(SOURCE, Duration::from_secs(75), |s| synced_at(s, &during))
        .await;
    readyz_becomes(&accord, 200).await;
    assert_eq!(
        stored_roles(&cluster.url(), "refund").await,
        serde_json::json!(["svc:auditor"]),
        "the edit made during the outage is applied"
    );
    let updates = pg_texts(
        &cluster.url(),
        "SELECT revision FROM audit_log WHERE action = 'update' AND object_id = 'refund'",
    )
    .await;
    assert_eq!(
        updates,
        [Some(during.clone())],
        "audited once, at its revision"
    );
    assert!(
        accord.log_text().contains("sync failed"),
        "the outage was seen as failed syncs"
    );
}

// ---- replicas --------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_database_apply_each_change_exactly_once() {
    const EDITS: usize = 5;
    let db = TestDb::new(Backend::Postgres).await;
    let work = Workspace::new();
    let config = work.configure(&db.url, "300ms");
    let pay = |n: usize| grant("pay", &format!("svc:payer-{n}"));
    let others = [
        grant("refund", "svc:admin"),
        grant("read", "svc:viewer"),
        enrollment("alice").build(),
    ];
    let declare = |n: usize| {
        let mut objects = vec![pay(n)];
        objects.extend(others.iter().cloned());
        work.declare("access.yaml", &objects);
    };
    declare(0);
    let first = work.revision();
    let (a, b) = tokio::join!(work.start(&config), work.start(&config));
    for replica in [&a, &b] {
        replica
            .wait_for(SOURCE, WAIT, |s| synced_at(s, &first))
            .await;
    }

    for n in 1..=EDITS {
        declare(n);
        let revision = work.revision();
        // Both replicas see each edit (both watch the folder) and race for it.
        for replica in [&a, &b] {
            replica
                .wait_for(SOURCE, WAIT, |s| synced_at(s, &revision))
                .await;
        }
    }
    // A late duplicate would land while each replica takes a few more turns.
    for replica in [&a, &b] {
        replica.wait_for_attempts(SOURCE, 3).await;
    }

    let objects = 1 + others.len() as i64;
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'create'")
            .await,
        objects,
        "one create per object"
    );
    assert_eq!(
        db.scalar(
            "SELECT COUNT(*) FROM (SELECT kind, app, object_id FROM audit_log \
             WHERE action = 'create' GROUP BY kind, app, object_id HAVING COUNT(*) > 1) AS d"
        )
        .await,
        0
    );
    assert_eq!(
        db.scalar(
            "SELECT COUNT(*) FROM (SELECT kind, app, object_id, after FROM audit_log \
             WHERE action = 'update' GROUP BY kind, app, object_id, after HAVING COUNT(*) > 1) AS d"
        )
        .await,
        0,
        "no change is applied twice"
    );
    let updates = pg_texts(
        &db.url,
        "SELECT after FROM audit_log WHERE action = 'update' ORDER BY seq",
    )
    .await;
    let updates: Vec<Value> = updates
        .iter()
        .map(|after| serde_json::from_str(after.as_deref().unwrap_or_default()).expect("json"))
        .collect();
    let expected: Vec<Value> = (1..=EDITS).map(|n| pay(n).to_json()).collect();
    assert_eq!(updates, expected, "each edit applied once, in order");
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM audit_log").await,
        objects + EDITS as i64,
        "nothing else was written (no drift corrections between replicas)"
    );
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM sync_runs").await,
        1 + EDITS as i64,
        "one applied sync per change"
    );
}

// ---- SIGKILL during an apply -------------------------------------------------------

/// What a large tree declares, to compare the database against.
struct Corpus {
    organizations: i64,
    members: i64,
    permits: i64,
    enrollments: i64,
}

impl Corpus {
    fn objects(&self) -> i64 {
        self.organizations + self.permits + self.enrollments
    }
}

/// Writes a tree of `organizations` organizations (five members each) and
/// `permits` permits and as many enrollments, over four apps, at most 2,000
/// documents per file.
fn write_large_tree(work: &Workspace, organizations: usize, permits: usize) -> Corpus {
    const MEMBERS: usize = 5;
    let app = |i: usize| format!("app-{}.example.com", i % 4);
    let orgs: Vec<Object> = (0..organizations)
        .map(|i| {
            let slug = format!("org-{i:05}");
            (0..MEMBERS)
                .fold(
                    org(&slug)
                        .app(&app(i))
                        .name(&format!("Organization {i}"))
                        .budget(1_000_000),
                    |o, m| {
                        o.member(
                            &format!("user{m}@{slug}.example.com"),
                            if m == 0 { "admin" } else { "user" },
                        )
                    },
                )
                .build()
        })
        .collect();
    let grants: Vec<Object> = (0..permits)
        .map(|i| {
            permit(&format!("permit-{i:06}"))
                .app(&app(i))
                .permission(&format!("svc-{}:item-{}:read", i % 12, i % 97))
                .roles([format!("svc-{}:viewer", i % 12)])
                .build()
        })
        .collect();
    let enrolled: Vec<Object> = (0..permits)
        .map(|i| {
            enrollment(&format!("enroll-{i:06}"))
                .app(&app(i))
                .role(&format!("svc-{}:viewer", i % 12))
                .user(&format!("usr_{i:08x}"))
                .build()
        })
        .collect();
    for (name, objects) in [
        ("orgs", &orgs),
        ("permits", &grants),
        ("enrollments", &enrolled),
    ] {
        for (n, chunk) in objects.chunks(2000).enumerate() {
            work.declare(&format!("{name}-{n:03}.yaml"), chunk);
        }
    }
    Corpus {
        organizations: organizations as i64,
        members: (organizations * MEMBERS) as i64,
        permits: permits as i64,
        enrollments: permits as i64,
    }
}

/// Row counts of every table an apply writes.
#[derive(Debug, PartialEq, Eq)]
struct Counts {
    organizations: i64,
    members: i64,
    permits: i64,
    enrollments: i64,
    managed: i64,
    audit: i64,
    sync_runs: i64,
}

impl Counts {
    async fn of(db: &TestDb) -> Counts {
        let count = |table: &str| format!("SELECT COUNT(*) FROM {table}");
        Counts {
            organizations: db.scalar(&count("organizations")).await,
            members: db.scalar(&count("organization_members")).await,
            permits: db.scalar(&count("permits")).await,
            enrollments: db.scalar(&count("enrollments")).await,
            managed: db.scalar(&count("ledger")).await,
            audit: db.scalar(&count("audit_log")).await,
            sync_runs: db.scalar(&count("sync_runs")).await,
        }
    }

    fn empty() -> Counts {
        Counts {
            organizations: 0,
            members: 0,
            permits: 0,
            enrollments: 0,
            managed: 0,
            audit: 0,
            sync_runs: 0,
        }
    }

    /// After the first sync of `corpus`: every row, one audit row per object, one sync.
    fn full(corpus: &Corpus) -> Counts {
        Counts {
            organizations: corpus.organizations,
            members: corpus.members,
            permits: corpus.permits,
            enrollments: corpus.enrollments,
            managed: corpus.objects(),
            audit: corpus.objects(),
            sync_runs: 1,
        }
    }
}

/// Watches a database for an open write transaction, from outside it.
enum WriteProbe {
    /// `backend_xid` is set once a transaction has written.
    Postgres(PgConnection),
    /// `BEGIN IMMEDIATE` without waiting fails while another holds the write lock.
    Sqlite(SqliteConnection),
}

impl WriteProbe {
    async fn connect(db: &TestDb) -> WriteProbe {
        match db.backend {
            Backend::Postgres => {
                WriteProbe::Postgres(PgConnection::connect(&db.url).await.expect("connect"))
            }
            Backend::Sqlite => {
                let options = SqliteConnectOptions::from_str(&db.url)
                    .expect("sqlite url")
                    .busy_timeout(Duration::ZERO);
                WriteProbe::Sqlite(
                    SqliteConnection::connect_with(&options)
                        .await
                        .expect("connect"),
                )
            }
        }
    }

    async fn write_in_flight(&mut self) -> bool {
        match self {
            WriteProbe::Postgres(conn) => {
                let writers: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() \
                     AND pid <> pg_backend_pid() AND backend_xid IS NOT NULL",
                )
                .fetch_one(&mut *conn)
                .await
                .expect("pg_stat_activity");
                writers > 0
            }
            WriteProbe::Sqlite(conn) => {
                match sqlx::raw_sql("BEGIN IMMEDIATE").execute(&mut *conn).await {
                    Ok(_) => {
                        sqlx::raw_sql("ROLLBACK")
                            .execute(&mut *conn)
                            .await
                            .expect("rollback the probe");
                        false
                    }
                    Err(sqlx::Error::Database(e))
                        if e.message().contains("locked") || e.message().contains("busy") =>
                    {
                        true
                    }
                    Err(e) => panic!("probe the write lock: {e}"),
                }
            }
        }
    }
}

/// Waits until no session of the killed process is left on the database, so
/// that its open transaction has been rolled back before we look.
async fn sessions_gone(db: &TestDb) {
    if db.backend != Backend::Postgres {
        return;
    }
    let gone = eventually(WAIT, || async {
        db.scalar(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND pid <> pg_backend_pid()",
        )
        .await
            == 0
    })
    .await;
    assert!(gone, "the killed controller's sessions did not go away");
}

/// How long after the first sync's apply starts writing each attempt kills
/// the process, so that the kills land at different points of its
/// transaction (here it stays open for a second or so).
const KILL_AFTER: [Duration; 4] = [
    Duration::ZERO,
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_millis(800),
];

async fn sigkill_during_a_large_apply(backend: Backend) {
    let work = Workspace::new();
    let corpus = write_large_tree(&work, 300, 15_000);
    let revision = work.revision();
    let full = Counts::full(&corpus);
    let mut interrupted = Vec::new();
    for (attempt, delay) in KILL_AFTER.into_iter().enumerate() {
        let db = TestDb::new(backend).await;
        let config = work.configure(&db.url, "1h");
        let mut accord = work.start(&config).await;
        // Migrations are done once the controller answers; the next write
        // transaction is the first sync's apply.
        let mut probe = WriteProbe::connect(&db).await;
        let deadline = Instant::now() + LONG_WAIT;
        let mut writing = false;
        while Instant::now() < deadline {
            if probe.write_in_flight().await {
                writing = true;
                break;
            }
            if accord.source(SOURCE).await["lastAppliedRevision"] == revision.as_str() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        assert!(
            writing || Instant::now() < deadline,
            "attempt {attempt}: the first apply neither started nor finished:\n{}",
            accord.log_text()
        );
        if writing && !delay.is_zero() {
            tokio::time::sleep(delay).await;
            writing = probe.write_in_flight().await;
        }
        accord.child.kill().expect("SIGKILL accord");
        let _ = accord.child.wait();
        drop(probe);
        sessions_gone(&db).await;

        let counts = Counts::of(&db).await;
        assert!(
            counts == Counts::empty() || counts == full,
            "attempt {attempt} ({backend:?}, killed {delay:?} into the apply): the database holds \
             a mix of old and new state: {counts:?}; expected nothing or {full:?}"
        );
        if writing && counts == Counts::empty() {
            interrupted.push(db);
        }
    }
    // The deepest interruption, with the most left behind to recover from.
    let db = interrupted.pop().unwrap_or_else(|| {
        panic!(
            "no SIGKILL landed while the apply's transaction was open in {} attempts",
            KILL_AFTER.len()
        )
    });

    // A fresh start completes the interrupted sync, auditing each object once.
    let config = work.configure(&db.url, "1h");
    let accord = work.start(&config).await;
    accord
        .wait_for(SOURCE, LONG_WAIT, |s| synced_at(s, &revision))
        .await;
    assert_eq!(Counts::of(&db).await, Counts::full(&corpus));
    assert_eq!(
        db.scalar(
            "SELECT COUNT(*) FROM (SELECT kind, app, object_id FROM audit_log \
             GROUP BY kind, app, object_id HAVING COUNT(*) <> 1) AS d"
        )
        .await,
        0,
        "every object audited exactly once"
    );
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'create'")
            .await,
        corpus.objects()
    );
}

mod sigkill_during_a_large_apply_leaves_old_or_new_state {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_postgres() {
        sigkill_during_a_large_apply(Backend::Postgres).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_sqlite() {
        sigkill_during_a_large_apply(Backend::Sqlite).await
    }
}
