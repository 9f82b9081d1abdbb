//! The PostgreSQL store: loads through `COPY` into the row assembler,
//! per-source advisory locks, and the history's walk in one snapshot.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgPool, PgPoolOptions};

use futures::StreamExt as _;

use super::chain;
use super::copy_text;
use super::rows::{self, LiveTable};
use super::sql::{load_stopped, locked, schema_is_current};
use super::{lock_key, Held, LockMode, SourceLock, StoreError};
use crate::model::Key;
use crate::plan::{LiveState, RowMap};

pub struct PostgresStore {
    pub(super) pool: PgPool,
}

/// `COPY` text goes to the assembler in batches of about this size, each of
/// whole rows (the server sends one message per row). A few buffers, reused
/// and so still in the cache, take the place of a fresh buffer as large as
/// each table, whose pages would each be touched for the first time; and
/// the assembler starts on a table's first rows, not after its last.
const BATCH: usize = 256 * 1024;

/// The source's name in PostgreSQL's load queries: a transaction-local
/// setting, read once per query in a subquery (not once per ledger row).
const SOURCE: &str = "(SELECT current_setting('accord.source'))";

impl PostgresStore {
    /// Every row of `source`'s scope, whole, and its ledger.
    pub(super) async fn read_live(&self, source: Option<&str>) -> Result<LiveState, StoreError> {
        let mut queries: Vec<(LiveTable, String)> = LiveTable::LOAD_ORDER
            .into_iter()
            .map(|table| (table, table.query(SOURCE, false)))
            .collect();
        if source.is_some() {
            queries.push((LiveTable::Ledger, LiveTable::Ledger.query(SOURCE, false)));
        }
        let settings: Vec<(String, String)> = source
            .map(|source| ("accord.source".to_owned(), source.to_owned()))
            .into_iter()
            .collect();
        self.read_tables(source, &settings, &queries).await
    }

    /// The server's current snapshot (`xmin:xmax:in-progress`), hashed.
    /// Any transaction that writes takes a transaction id, and its commit
    /// either raises `xmax` or takes it off the in-progress list, so an
    /// unchanged snapshot means nothing was committed in between, by anyone
    /// (writes to the server's other databases move it too). Unlike the
    /// WAL position, checkpoints, vacuum and hint bits leave it alone, so a
    /// quiet database keeps its mark and a sync keeps the rows it read ahead.
    pub(super) async fn read_change_mark(&self) -> Result<u64, StoreError> {
        let (snapshot,): (String,) = sqlx::query_as("SELECT pg_current_snapshot()::text")
            .fetch_one(&self.pool)
            .await?;
        let hash = blake3::hash(snapshot.as_bytes());
        let mut mark = [0u8; 8];
        mark.copy_from_slice(&hash.as_bytes()[..8]);
        Ok(u64::from_le_bytes(mark))
    }

    /// `read_live`, but the permits and enrollments that are exactly as
    /// accord last wrote them for `source` come as `LiveTable::Unread`:
    /// without their content, which accord then neither decodes, hashes nor
    /// keeps (after a sync, nearly every row).
    pub(super) async fn read_for_plan(&self, source: &str) -> Result<LiveState, StoreError> {
        let mut queries = Vec::new();
        for table in LiveTable::LOAD_ORDER {
            match table.kind() {
                Some(kind) if LiveTable::UNREAD.contains(&kind) => {
                    let unread = LiveTable::Unread(kind);
                    queries.push((unread, unread.query(SOURCE, false)));
                    queries.push((table, table.edited(SOURCE)));
                }
                _ => queries.push((table, table.query(SOURCE, false))),
            }
        }
        queries.push((LiveTable::Ledger, LiveTable::Ledger.query(SOURCE, false)));
        let settings = [("accord.source".to_owned(), source.to_owned())];
        self.read_tables(Some(source), &settings, &queries).await
    }

    /// The rows of `keys`, whole: each kind's keys go to the server as a
    /// JSON array in a setting, which its table's query joins.
    pub(super) async fn read_keyed(&self, keys: &[Key]) -> Result<RowMap, StoreError> {
        let mut settings = Vec::new();
        let mut queries = Vec::new();
        for (table, json) in super::keys_by_table(keys)? {
            let setting = format!("accord.{}", table.name());
            if table == LiveTable::Organizations {
                queries.push((LiveTable::Members, LiveTable::Members.keyed(&setting)));
            }
            queries.push((table, table.keyed(&setting)));
            settings.push((setting, json));
        }
        if queries.is_empty() {
            return Ok(RowMap::default());
        }
        Ok(self.read_tables(None, &settings, &queries).await?.rows)
    }

    /// Runs each query with `COPY`, in one snapshot, after setting the
    /// transaction-local `settings` (`COPY` takes no bind parameters), and
    /// hands the text, in batches, to one blocking thread that assembles the
    /// rows (for `source`, if any) while more are read.
    pub(super) async fn read_tables(
        &self,
        source: Option<&str>,
        settings: &[(String, String)],
        queries: &[(LiveTable, String)],
    ) -> Result<LiveState, StoreError> {
        // One transaction, so the reads see one snapshot (that takes
        // REPEATABLE READ: under the default each statement has its own).
        let mut tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .await?;
        for (name, value) in settings {
            sqlx::query("SELECT set_config($1, $2, true)")
                .bind(name)
                .bind(value)
                .execute(&mut *tx)
                .await?;
        }
        let (batches, received) = std::sync::mpsc::channel::<(LiveTable, Vec<u8>)>();
        let (spent, spare) = std::sync::mpsc::channel::<Vec<u8>>();
        let assembler = rows::Assembler::with_capacity(0, false);
        let mut live = match source {
            Some(source) => assembler.for_source(source),
            None => assembler,
        };
        let assembling = tokio::task::spawn_blocking(move || {
            let mut reading = None;
            let mut rows = 0;
            for (table, mut text) in received {
                if reading != Some(table) {
                    (reading, rows) = (Some(table), 0);
                }
                // Room for the batch's rows before they go in: the map grows
                // once per batch, not row by row (and the server is spared a
                // `count(*)` over the tables to size it).
                live.reserve(table, memchr::memchr_iter(b'\n', &text).count());
                rows = assemble(&mut live, table, &text, rows)?;
                text.clear();
                // The reader may have finished; then the buffer just goes.
                let _ = spent.send(text);
            }
            Ok::<_, StoreError>(live)
        });
        let buffer = |spare: &std::sync::mpsc::Receiver<Vec<u8>>| {
            spare
                .try_recv()
                .unwrap_or_else(|_| Vec::with_capacity(BATCH + 4096))
        };
        // Set when the assembler stopped on an error (which awaiting it
        // reports): the rest is read and dropped, leaving the connection
        // at a statement boundary.
        let mut stopped = false;
        for (table, query) in queries {
            let mut copy = tx
                .copy_out_raw(&format!("COPY ({query}) TO STDOUT"))
                .await?;
            let mut batch = buffer(&spare);
            while let Some(row) = copy.next().await {
                batch.extend_from_slice(&row?);
                if batch.len() >= BATCH && !stopped {
                    let full = std::mem::replace(&mut batch, buffer(&spare));
                    stopped = batches.send((*table, full)).is_err();
                }
            }
            if !batch.is_empty() && !stopped {
                stopped = batches.send((*table, batch)).is_err();
            }
        }
        drop(batches);
        tx.commit().await?;
        let live = assembling.await.map_err(load_stopped)??;
        Ok(live.finish())
    }

    pub async fn connect(
        url: &str,
        migrate_url: Option<&str>,
    ) -> Result<PostgresStore, StoreError> {
        let connect = |url: &str, connections: u32| {
            let url = url.to_owned();
            async move {
                PgPoolOptions::new()
                    .max_connections(connections)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect(&url)
                    .await
                    .map_err(|source| StoreError::Connect {
                        url: crate::redact::url(&url),
                        detail: crate::redact::scrub(&source.to_string(), &url),
                        driver: source,
                    })
            }
        };
        let pool = connect(url, 8).await?;
        let migrator = sqlx::migrate!("./migrations/postgres");
        if !schema_is_current(&pool, &migrator).await {
            match migrate_url {
                Some(owner) => {
                    let owner = connect(owner, 1).await?;
                    migrator.run(&owner).await?;
                    owner.close().await;
                }
                None => migrator.run(&pool).await.map_err(|source| match &source {
                    sqlx::migrate::MigrateError::Execute(sqlx::Error::Database(e))
                        if e.code().as_deref() == Some("42501") =>
                    {
                        StoreError::MigrateDenied { source }
                    }
                    _ => StoreError::Migrate(source),
                })?,
            }
        }
        Ok(PostgresStore { pool })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

impl PostgresStore {
    /// A transaction holding the source's advisory lock (released when it
    /// ends), which the apply then writes in: replicas and CLI runs of one
    /// source take turns, while different sources apply side by side.
    pub(super) async fn take_lock(
        &self,
        source: &str,
        mode: LockMode,
    ) -> Result<Option<SourceLock>, StoreError> {
        let key = lock_key(source);
        let mut tx = self.pool.begin().await?;
        let deadline = match mode {
            LockMode::Try => None,
            LockMode::Wait(limit) => Some((tokio::time::Instant::now() + limit, limit)),
        };
        loop {
            let (locked_now,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_xact_lock($1)")
                .bind(key)
                .fetch_one(&mut *tx)
                .await?;
            if locked_now {
                return Ok(Some(SourceLock {
                    held: Held::Postgres(tx),
                }));
            }
            match deadline {
                None => return Ok(None),
                Some((deadline, limit)) if tokio::time::Instant::now() >= deadline => {
                    return Err(locked(source, limit))
                }
                Some(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// Streams both tables of the history, in one snapshot, into a walk.
    pub(super) async fn walk_history(
        &self,
        from: chain::Position,
    ) -> Result<chain::Report, StoreError> {
        use sqlx::Row as _;
        let mut tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .await?;
        let legacy: Vec<(String, i64)> =
            sqlx::query_as("SELECT name, legacy_through FROM audit_chain")
                .fetch_all(&mut *tx)
                .await?;
        let mut walk = chain::Walk::new(from, &legacy);
        let (first_run, first_seq) = walk.starts();
        {
            let mut rows = sqlx::query(chain::SYNC_RUNS_QUERY)
                .bind(first_run)
                .fetch(&mut *tx);
            while let Some(row) = rows.next().await {
                let row = row?;
                let content = chain::SyncRunRow {
                    source: row.try_get(1)?,
                    revision: row.try_get(2)?,
                    actor: row.try_get(3)?,
                    started_at: row.try_get(4)?,
                    finished_at: row.try_get(5)?,
                    outcome: row.try_get(6)?,
                    counts: [
                        row.try_get(7)?,
                        row.try_get(8)?,
                        row.try_get(9)?,
                        row.try_get(10)?,
                        row.try_get(11)?,
                        row.try_get(12)?,
                    ],
                    message: row.try_get(13)?,
                    audited: row.try_get::<Option<i64>, _>(14)?.unwrap_or(-1),
                    cause: row.try_get(17)?,
                };
                let audited: Option<i64> = row.try_get(14)?;
                let hashes: (Option<&[u8]>, Option<&[u8]>) = (row.try_get(15)?, row.try_get(16)?);
                if !walk.sync_run(row.try_get(0)?, &content, audited, hashes.0, hashes.1) {
                    break;
                }
            }
        }
        if walk.wants_audit_rows() {
            let mut rows = sqlx::query(chain::AUDIT_ROWS_QUERY)
                .bind(first_seq)
                .fetch(&mut *tx);
            while let Some(row) = rows.next().await {
                let row = row?;
                let at = chain::stamp(&row.try_get::<DateTime<Utc>, _>(1)?);
                let text = |i: usize| row.try_get::<Option<&str>, _>(i);
                let content = chain::AuditRowContent {
                    at: &at,
                    actor: text(2)?.unwrap_or_default(),
                    source: text(3)?.unwrap_or_default(),
                    revision: text(4)?.unwrap_or_default(),
                    sync_run: row.try_get(5)?,
                    action: text(6)?.unwrap_or_default(),
                    kind: text(7)?.unwrap_or_default(),
                    app: text(8)?.unwrap_or_default(),
                    object_id: text(9)?.unwrap_or_default(),
                    before: text(10)?,
                    after: text(11)?,
                    diff: text(12)?.unwrap_or_default(),
                    origin: text(13)?,
                };
                let hashes: (Option<&[u8]>, Option<&[u8]>) = (row.try_get(14)?, row.try_get(15)?);
                if !walk.audit_row(row.try_get(0)?, &content, hashes.0, hashes.1) {
                    break;
                }
            }
        }
        tx.rollback().await?;
        Ok(walk.finish())
    }

    pub(super) fn locked(lock: &mut SourceLock) -> Result<&mut sqlx::PgConnection, StoreError> {
        match &mut lock.held {
            Held::Postgres(tx) => Ok(&mut *tx),
            _ => Err(StoreError::ForeignLock),
        }
    }
}

/// Adds the rows of one batch of `table`'s `COPY` text, after `before` rows
/// of it; returns how many that makes.
fn assemble(
    live: &mut rows::Assembler,
    table: LiveTable,
    text: &[u8],
    before: usize,
) -> Result<usize, StoreError> {
    copy_text::each_row(text, before, |line| live.add(table, line)).map_err(|message| {
        StoreError::Decode {
            table: table.name().to_owned(),
            message,
        }
    })
}

impl super::apply::Writer for sqlx::PgConnection {
    const BIND_LIMIT: usize = 65_000;

    fn bulk<'a, T: Sync + 'a, const N: usize>(
        &'a mut self,
        table: &'a super::bulk::Table,
        rows: &'a [T],
        cells: impl Fn(&T) -> [super::bulk::Cell<'_>; N] + Send + Sync + 'a,
    ) -> futures::future::BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(super::bulk::postgres(self, table, rows, cells))
    }

    async fn execute(&mut self, sql: &super::apply::Sql<'_>) -> Result<(), StoreError> {
        let mut args = sqlx::postgres::PgArguments::default();
        for cell in &sql.binds {
            super::bulk::add_postgres(&mut args, cell)?;
        }
        sqlx::query_with(sqlx::AssertSqlSafe(sql.text.clone()), args)
            .persistent(false)
            .execute(self)
            .await?;
        Ok(())
    }

    async fn fetch_id(&mut self, sql: &super::apply::Sql<'_>) -> Result<i64, StoreError> {
        let mut args = sqlx::postgres::PgArguments::default();
        for cell in &sql.binds {
            super::bulk::add_postgres(&mut args, cell)?;
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

    /// Held until the apply commits: transactions of different sources
    /// append to the history one after the other.
    async fn lock_history(&mut self) -> Result<(), StoreError> {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(lock_key("accord history"))
            .execute(self)
            .await?;
        Ok(())
    }
}
