//! Real databases for tests: a SQLite file in a temp dir, or a fresh database
//! on the PostgreSQL server named by `ACCORD_TEST_POSTGRES_URL` (scripts/test
//! starts a throwaway one). A missing server fails the test: a backend is never
//! skipped silently.
#![allow(dead_code)] // each test binary uses its own subset

use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::{Connection, PgConnection, SqliteConnection};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestDb {
    pub backend: Backend,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

fn postgres_server() -> String {
    std::env::var("ACCORD_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!(
            "ACCORD_TEST_POSTGRES_URL is not set. Run the suite with scripts/test, which starts a \
             throwaway PostgreSQL, or point it at a server whose user may CREATE DATABASE."
        )
    })
}

/// `url` with its database name replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let authority_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_end..].find('/') {
        Some(slash) => &base[..authority_end + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

impl TestDb {
    /// The same database reached through another URL (another role).
    pub fn attach(backend: Backend, url: &str) -> TestDb {
        TestDb {
            backend,
            url: url.to_owned(),
            _dir: None,
        }
    }

    pub async fn new(backend: Backend) -> TestDb {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("tempdir");
                let url = format!("sqlite://{}", dir.path().join("accord.db").display());
                TestDb {
                    backend,
                    url,
                    _dir: Some(dir),
                }
            }
            Backend::Postgres => {
                let server = postgres_server();
                let name = format!(
                    "accord_test_{}_{}_{}",
                    std::process::id(),
                    COUNTER.fetch_add(1, Ordering::Relaxed),
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.subsec_nanos())
                        .unwrap_or(0)
                );
                let mut admin = PgConnection::connect(&server)
                    .await
                    .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at {server}: {e}"));
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut admin)
                    .await
                    .expect("create database");
                TestDb {
                    backend,
                    url: with_database(&server, &name),
                    _dir: None,
                }
            }
        }
    }

    /// Runs SQL directly, as someone editing the database by hand would.
    pub async fn exec(&self, sql: &str) -> Result<u64, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => {
                let mut conn = SqliteConnection::connect(&self.url).await?;
                Ok(sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
                    .execute(&mut conn)
                    .await?
                    .rows_affected())
            }
            Backend::Postgres => {
                let mut conn = PgConnection::connect(&self.url).await?;
                Ok(sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
                    .execute(&mut conn)
                    .await?
                    .rows_affected())
            }
        }
    }

    /// One integer from a query, e.g. a count.
    pub async fn scalar(&self, sql: &str) -> i64 {
        let result = match self.backend {
            Backend::Sqlite => {
                let mut conn = SqliteConnection::connect(&self.url).await.expect("connect");
                sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.to_owned()))
                    .fetch_one(&mut conn)
                    .await
            }
            Backend::Postgres => {
                let mut conn = PgConnection::connect(&self.url).await.expect("connect");
                sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.to_owned()))
                    .fetch_one(&mut conn)
                    .await
            }
        };
        result.unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// A trigger that makes the next insert into `table` fail, to show that
    /// a failure in the middle of an apply leaves nothing behind.
    pub async fn fail_inserts_into(&self, table: &str) {
        let sql = match self.backend {
            Backend::Sqlite => format!(
                "CREATE TRIGGER injected_failure BEFORE INSERT ON {table} \
                 BEGIN SELECT RAISE(ABORT, 'injected failure'); END;"
            ),
            Backend::Postgres => format!(
                "CREATE FUNCTION injected_failure() RETURNS trigger LANGUAGE plpgsql AS \
                 $$ BEGIN RAISE EXCEPTION 'injected failure'; END $$; \
                 CREATE TRIGGER injected_failure BEFORE INSERT ON {table} \
                 FOR EACH ROW EXECUTE FUNCTION injected_failure();"
            ),
        };
        self.exec(&sql).await.expect("install failing trigger");
    }

    pub async fn stop_failing(&self, table: &str) {
        let sql = match self.backend {
            Backend::Sqlite => "DROP TRIGGER injected_failure".to_owned(),
            Backend::Postgres => format!("DROP TRIGGER injected_failure ON {table}"),
        };
        self.exec(&sql).await.expect("drop failing trigger");
    }
}

/// A test body run once per backend: `both_backends!(name, |backend| async move { … })`.
#[macro_export]
macro_rules! both_backends {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                ($body)($crate::common::db::Backend::Sqlite).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                ($body)($crate::common::db::Backend::Postgres).await
            }
        }
    };
}

/// The source's write lock, which every apply is made under.
pub async fn locked(store: &impl accord::store::Store, source: &str) -> accord::store::SourceLock {
    store
        .lock_source(
            source,
            accord::store::LockMode::Wait(std::time::Duration::from_secs(30)),
        )
        .await
        .expect("lock")
        .expect("a waiting lock is always taken")
}

/// Applies `objects` as one sync of `source` (actor `tester@host`) does.
pub async fn sync_objects(
    store: &accord::store::AnyStore,
    source: &str,
    objects: Vec<accord::model::Object>,
) {
    use accord::store::Store;
    let desired = super::builders::desired_objects(objects);
    let live = store.load_for_plan(source).await.expect("load");
    let plan = accord::plan::plan(&desired, &live, source, Default::default());
    store
        .apply(
            locked(store, source).await,
            accord::store::ApplyRequest::new(
                source,
                "rev",
                "tester@host",
                accord::policy::DriftPolicy::Correct,
                &plan,
            ),
        )
        .await
        .expect("apply");
}

/// `accord apply` of `count` permits (`bulk-0`, `bulk-1`, …) from a source
/// named `bulk` into `url`: as many audit rows, written by accord itself,
/// so the history's chain holds.
pub fn apply_bulk_permits(url: &str, count: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let text: String = (0..count)
        .map(|n| format!("- id: bulk-{n}\n  permissionId: svc:read\n  slugs: [s{n}]\n"))
        .collect();
    std::fs::write(dir.path().join("bulk.yaml"), text).expect("write");
    let applied = std::process::Command::new(env!("CARGO_BIN_EXE_accord"))
        .args(["apply", "--source"])
        .arg(dir.path())
        .args(["--source-name", "bulk", "--database", url])
        .env_remove("ACCORD_DATABASE_URL")
        .output()
        .expect("run accord apply");
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
}
