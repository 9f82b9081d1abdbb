//! The SQLite store: an embedded file, one writer at a time, read through
//! SQLite's C API (see `sqlite_read`).

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::chain;
use super::sql::{load_stopped, locked, schema_is_current};
use super::sqlite_read;
use super::{Held, LockMode, SourceLock, StoreError};
use crate::model::Key;
use crate::plan::{LiveState, RowMap};

pub struct SqliteStore {
    pub(super) pool: SqlitePool,
    /// This process's writers take turns here before SQLite's own lock.
    pub(super) writer: std::sync::Arc<tokio::sync::Mutex<()>>,
    /// The database file, which `load` reads through its own connection.
    pub(super) path: PathBuf,
    /// A connection that never writes, kept open for `PRAGMA data_version`:
    /// the number moves when any other connection (this process's pool, a
    /// `load`, another process, a hand edit) commits to the file.
    pub(super) marks: std::sync::Arc<std::sync::Mutex<Option<rusqlite::Connection>>>,
}

impl SqliteStore {
    pub async fn connect(url: &str, migrate_url: Option<&str>) -> Result<SqliteStore, StoreError> {
        let connect_error = |source: sqlx::Error| StoreError::Connect {
            url: crate::redact::url(url),
            detail: crate::redact::scrub(&source.to_string(), url),
            driver: source,
        };
        // Other processes (and the next run) read the same state: an
        // in-memory database would lose the ledger when accord exits.
        if url.contains(":memory:") || url.contains("mode=memory") {
            return Err(StoreError::InMemory(crate::redact::url(url)));
        }
        let options = SqliteConnectOptions::from_str(url)
            .map_err(connect_error)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let path = options.get_filename().to_owned();
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(connect_error)?;
        let migrator = sqlx::migrate!("./migrations/sqlite");
        if !schema_is_current(&pool, &migrator).await {
            match migrate_url {
                Some(owner) => {
                    let owner = SqlitePoolOptions::new()
                        .max_connections(1)
                        .connect_with(SqliteConnectOptions::from_str(owner).map_err(connect_error)?)
                        .await
                        .map_err(connect_error)?;
                    migrator.run(&owner).await?;
                    owner.close().await;
                }
                None => migrator.run(&pool).await?,
            }
        }
        Ok(SqliteStore {
            pool,
            writer: Default::default(),
            path,
            marks: Default::default(),
        })
    }

    pub(super) async fn read_live(&self, source: Option<&str>) -> Result<LiveState, StoreError> {
        self.load(source, false).await
    }

    async fn load(&self, source: Option<&str>, for_plan: bool) -> Result<LiveState, StoreError> {
        let path = self.path.clone();
        let source = source.map(str::to_owned);
        tokio::task::spawn_blocking(move || sqlite_read::load(&path, source.as_deref(), for_plan))
            .await
            .map_err(load_stopped)?
    }

    /// `read_live`, but the permits and enrollments exactly as accord last
    /// wrote them for `source` are kept without their content. SQLite has
    /// no row versions to tell them by without reading them, so it reads
    /// and hashes each; what a plan's memory is spared is keeping the bytes.
    pub(super) async fn read_for_plan(&self, source: &str) -> Result<LiveState, StoreError> {
        self.load(Some(source), true).await
    }

    /// `PRAGMA data_version` on the store's own idle connection (opened on
    /// first use): it is only comparable on one connection, and that one
    /// never writes, so every commit to the file moves it.
    pub(super) async fn read_change_mark(&self) -> Result<u64, StoreError> {
        let (marks, path) = (self.marks.clone(), self.path.clone());
        tokio::task::spawn_blocking(move || sqlite_read::data_version(&marks, &path))
            .await
            .map_err(load_stopped)?
    }

    /// The rows of `keys`, whole, found by their primary keys.
    pub(super) async fn read_keyed(&self, keys: &[Key]) -> Result<RowMap, StoreError> {
        let path = self.path.clone();
        let keys = keys.to_vec();
        tokio::task::spawn_blocking(move || sqlite_read::load_keyed(&path, &keys))
            .await
            .map_err(load_stopped)?
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

impl SqliteStore {
    /// A write transaction begun `IMMEDIATE`: SQLite's one writer lock on
    /// the file, so every other writer, in this process or another, waits
    /// until it commits (another process's, up to the busy timeout). This process's sources first queue on a mutex, so
    /// only one of them waits inside SQLite, holding a pooled connection.
    pub(super) async fn take_lock(
        &self,
        source: &str,
        mode: LockMode,
    ) -> Result<Option<SourceLock>, StoreError> {
        let turn = match mode {
            // The file has one writer lock for every source: this process's
            // other sources are not competing replicas, so wait for them.
            LockMode::Try => self.writer.clone().lock_owned().await,
            LockMode::Wait(limit) => {
                match tokio::time::timeout(limit, self.writer.clone().lock_owned()).await {
                    Ok(turn) => turn,
                    Err(_) => return Err(locked(source, limit)),
                }
            }
        };
        // Another process's writer makes this wait up to the busy timeout.
        let tx = match self.pool.begin_with("BEGIN IMMEDIATE").await {
            Ok(tx) => tx,
            Err(e) if is_busy(&e) => {
                return match mode {
                    LockMode::Try => Ok(None),
                    LockMode::Wait(_) => Err(locked(source, BUSY_TIMEOUT)),
                }
            }
            Err(e) => return Err(e.into()),
        };
        Ok(Some(SourceLock {
            held: Held::Sqlite(tx, turn),
        }))
    }

    /// Reads both tables of the history through SQLite's C API, in one
    /// read transaction, borrowing each row's text instead of copying it
    /// across sqlx's worker thread (see `sqlite_read`).
    pub(super) async fn walk_history(
        &self,
        from: chain::Position,
    ) -> Result<chain::Report, StoreError> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || sqlite_read::walk_history(&path, from))
            .await
            .map_err(load_stopped)?
    }

    pub(super) fn locked(lock: &mut SourceLock) -> Result<&mut sqlx::SqliteConnection, StoreError> {
        match &mut lock.held {
            Held::Sqlite(tx, _) => Ok(&mut *tx),
            _ => Err(StoreError::ForeignLock),
        }
    }
}

/// How long a SQLite statement waits for another connection's lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

fn is_busy(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(e) if e.code().is_some_and(|c| c == "5" || c == "6"))
}

impl super::apply::Writer for sqlx::SqliteConnection {
    const BIND_LIMIT: usize = 32_000;

    fn bulk<'a, T: Sync + 'a, const N: usize>(
        &'a mut self,
        table: &'a super::bulk::Table,
        rows: &'a [T],
        cells: impl Fn(&T) -> [super::bulk::Cell<'_>; N] + Send + Sync + 'a,
    ) -> futures::future::BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(super::bulk::sqlite(self, table, rows, cells))
    }

    async fn execute(&mut self, sql: &super::apply::Sql<'_>) -> Result<(), StoreError> {
        let mut args = sqlx::sqlite::SqliteArguments::default();
        for cell in &sql.binds {
            super::bulk::add_sqlite(&mut args, cell.clone())?;
        }
        sqlx::query_with(sqlx::AssertSqlSafe(sql.text.clone()), args)
            .persistent(false)
            .execute(self)
            .await?;
        Ok(())
    }

    async fn fetch_id(&mut self, sql: &super::apply::Sql<'_>) -> Result<i64, StoreError> {
        let mut args = sqlx::sqlite::SqliteArguments::default();
        for cell in &sql.binds {
            super::bulk::add_sqlite(&mut args, cell.clone())?;
        }
        let (id,): (i64,) = sqlx::query_as_with(sqlx::AssertSqlSafe(sql.text.clone()), args)
            .fetch_one(self)
            .await?;
        Ok(id)
    }

    async fn fetch_bytes(&mut self, query: &'static str) -> Result<Option<Vec<u8>>, StoreError> {
        let row: Option<(Vec<u8>,)> = sqlx::query_as(query).fetch_optional(self).await?;
        Ok(row.map(|(bytes,)| bytes))
    }

    /// SQLite writes one transaction at a time already.
    async fn lock_history(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}
