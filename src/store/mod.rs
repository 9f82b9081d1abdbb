//! The database behind a `Store` trait: SQLite (embedded, the default) and
//! PostgreSQL, with the same schema, migrations applied on connect, and every
//! sync applied in one transaction together with its audit rows.

mod apply;
mod bulk;
pub mod chain;
mod copy_text;
mod postgres;
mod rows;
mod schema;
mod sql;
mod sqlite;
mod sqlite_read;
mod writes;

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::model::{Key, KeyMap, Kind};
use crate::plan::{Action, Change, LiveState, Plan, RowMap, Summary};
use crate::policy::DriftPolicy;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "unsupported database URL `{0}`: expected sqlite://PATH or postgres://USER@HOST:PORT/DB"
    )]
    UnsupportedUrl(String),
    #[error(
        "`{0}` is an in-memory SQLite database, which would forget what accord applied when it exits; give a file: sqlite://PATH"
    )]
    InMemory(String),
    /// The driver's error is kept out of the error's chain: it may quote
    /// the URL, secrets and all; `detail` is its message scrubbed of them.
    #[error("cannot connect to {url}: {detail}")]
    Connect {
        url: String,
        detail: String,
        driver: sqlx::Error,
    },
    #[error("cannot migrate the database schema")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("the database schema needs migrations this role cannot apply; apply them as the owner role with --migrate-database URL (or `migrateDatabase` in the configuration)")]
    MigrateDenied {
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    #[error("database error")]
    Sql(#[from] sqlx::Error),
    #[error("another accord process is applying source `{source_name}` (or, on SQLite, writing the database); gave up after waiting {waited:?}")]
    Locked {
        source_name: String,
        waited: std::time::Duration,
    },
    #[error("a source lock was used with a store of another kind")]
    ForeignLock,
    #[error("the database reader stopped unexpectedly")]
    Stopped(#[source] tokio::task::JoinError),
    #[error("cannot read the rows of {table}: {message}")]
    Decode { table: String, message: String },
    #[error("no database at {0}: a query reads an existing database (`accord apply` or `accord run` creates one)")]
    Missing(String),
}

/// Who applies what, from where.
#[derive(Clone, Debug)]
pub struct ApplyRequest<'a> {
    pub source: &'a str,
    pub revision: &'a str,
    /// Who runs the sync: named on drift rows and on anything not attributed below.
    pub actor: &'a str,
    /// Who last changed each declaring file (Git: the author of the newest
    /// commit touching it), named on creates, updates and deletes of the
    /// objects declared (or last declared) there.
    pub authors: &'a std::collections::HashMap<std::sync::Arc<str>, String>,
    /// Where each declaring file is, when more than its name (a Kubernetes
    /// object's uid); the audit rows' `origin`, which is else the file.
    pub origins: &'a std::collections::HashMap<std::sync::Arc<str>, String>,
    pub drift: DriftPolicy,
    pub plan: &'a Plan,
    /// What this apply does to the deletion guard's record.
    pub guard: GuardRecord,
    /// What started the sync (`start`, `interval`, `webhook`, …), recorded
    /// with its run.
    pub cause: Option<&'a str>,
}

/// What an apply records about the deletion guard (table `deletion_guard`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GuardRecord {
    /// Nothing was refused: a refusal or approval left over from an
    /// earlier plan is cleared, so it cannot approve a later one.
    Clear,
    /// The guard refused this plan's deletions and the rest is applied
    /// (a source whose objects stand alone): the refusal stays.
    Held,
    /// Deletions the guard refused, applied as an operator approved them:
    /// the approval is spent and a new deletion window starts.
    Approved(String),
    /// Deletions the guard refused, applied with `--force`: a new deletion
    /// window starts.
    Forced,
}

impl GuardRecord {
    /// What the sync record's message says about the guard.
    pub fn message(&self) -> String {
        match self {
            GuardRecord::Clear => String::new(),
            GuardRecord::Held => "deletions refused by the deletion guard were held back".into(),
            GuardRecord::Approved(by) => {
                format!("deletions refused by the deletion guard were approved by {by}")
            }
            GuardRecord::Forced => "deletions refused by the deletion guard were forced".into(),
        }
    }
}

/// What the deletion guard needs from the database about a source.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GuardState {
    /// Rows deleted by the source's syncs in the window.
    pub deleted: usize,
    /// An approved refused set, and who approved it.
    pub approved: Option<(String, String)>,
}

/// The refusal an operator approved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Approval {
    pub source: String,
    pub set: String,
    pub deletes: i64,
    pub approved_by: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    #[error("source `{0}` has no deletions refused by the deletion guard")]
    NothingRefused(String),
    #[error("source `{source_name}` now has a different refused set ({refused}, {deletes} deletions) than the one given ({given}); look at its status again and approve that")]
    Changed {
        source_name: String,
        refused: String,
        deletes: i64,
        given: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl<'a> ApplyRequest<'a> {
    /// A request with no per-file authors: `actor` is named on every row.
    pub fn new(
        source: &'a str,
        revision: &'a str,
        actor: &'a str,
        drift: DriftPolicy,
        plan: &'a Plan,
    ) -> Self {
        static NONE: std::sync::LazyLock<std::collections::HashMap<std::sync::Arc<str>, String>> =
            std::sync::LazyLock::new(Default::default);
        ApplyRequest {
            source,
            revision,
            actor,
            authors: &NONE,
            origins: &NONE,
            drift,
            plan,
            guard: GuardRecord::Clear,
            cause: None,
        }
    }
}

/// An organization's GitOps switch as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrgSwitch {
    pub app: String,
    pub slug: String,
    pub gitops: bool,
    pub managed_by: Option<String>,
}

/// The record of one applied sync (a `sync_runs` row).
#[derive(Clone, Debug, Serialize)]
pub struct SyncRecord {
    pub id: i64,
    pub source: String,
    pub revision: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub summary: Summary,
    /// Audit rows written.
    pub audited: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    Create,
    Update,
    Delete,
    DriftCorrected,
    DriftDetected,
}

impl AuditAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Create => "create",
            AuditAction::Update => "update",
            AuditAction::Delete => "delete",
            AuditAction::DriftCorrected => "drift_corrected",
            AuditAction::DriftDetected => "drift_detected",
        }
    }
}

impl fmt::Display for AuditAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One row of the append-only audit log.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct AuditEntry {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub source: String,
    pub revision: String,
    pub action: String,
    pub kind: String,
    pub app: String,
    pub id: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
    pub diff: String,
    /// Where the change was declared: a file, or a Kubernetes object with
    /// its uid and resourceVersion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    pub source: Option<String>,
    pub kind: Option<Kind>,
    pub since: Option<DateTime<Utc>>,
    /// Only the entry with this `seq`.
    pub seq: Option<i64>,
    pub limit: u32,
    /// Entries older than this `seq`: the next page, found by key rather
    /// than by offset, so a page deep in a long log costs what the first does.
    pub before: Option<i64>,
    pub until: Option<DateTime<Utc>>,
    pub app: Option<String>,
    /// The object's id (an organization's slug).
    pub id: Option<String>,
    pub actor: Option<String>,
    /// `create`, `update`, `delete`, `drift_corrected`, …
    pub action: Option<String>,
    /// Only the entries of this sync run (`SyncRun::id`).
    pub run: Option<i64>,
}

/// A page of one source's recorded syncs (`Store::sync_runs`).
#[derive(Clone, Debug, Default)]
pub struct RunQuery {
    pub source: String,
    /// Runs older than this id: the next page, found by key like the
    /// audit log's.
    pub before: Option<i64>,
    pub limit: u32,
    /// Audit rows read with each run (its newest), at most.
    pub changes: u32,
}

/// A recorded sync (a `sync_runs` row) and the newest of its audit rows.
#[derive(Clone, Debug, Serialize)]
pub struct SyncRun {
    pub id: i64,
    pub source: String,
    pub revision: String,
    /// Who ran the sync (the audit rows name who made each change).
    pub actor: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// `applied`, or `unchanged` for a run recorded with nothing to write.
    pub outcome: String,
    pub summary: Summary,
    /// What the run says about the deletion guard, if anything.
    pub message: String,
    /// Audit rows the run wrote; unknown for runs recorded before accord
    /// counted them.
    pub audited: Option<i64>,
    /// What started it; unknown for runs recorded before accord kept it.
    pub cause: Option<String>,
    /// Its audit rows, newest first: `RunQuery::changes` at most.
    pub changes: Vec<AuditEntry>,
}

/// A read the pages make, named so that `AnyStore::query_plan` shows how the
/// database answers exactly that statement (tests check that each is
/// answered from an index).
#[derive(Clone, Copy, Debug)]
pub enum Read<'a> {
    /// `Store::audit`.
    Audit(&'a AuditQuery),
    /// `Store::organizations`.
    Organizations {
        after: Option<(&'a str, &'a str)>,
        limit: u32,
    },
    /// `Store::gitops`.
    Organization { slug: &'a str, app: Option<&'a str> },
}

/// The database accord reconciles.
pub trait Store: Send + Sync {
    /// The rows in scope and the keys `source` manages. With `source` = None,
    /// every row and no ownership records (for export).
    fn load(
        &self,
        source: Option<&str>,
    ) -> impl Future<Output = Result<LiveState, StoreError>> + Send;

    /// What a plan of `source` needs: `load`, except that a store may leave
    /// out the content of rows it knows to be exactly as accord last wrote
    /// them (`LiveRow::unread`). A plan that changes such rows has them
    /// read whole and is made again (`read_unread`); a plan that changes
    /// nothing, the usual sync, never reads their content at all.
    fn load_for_plan(
        &self,
        source: &str,
    ) -> impl Future<Output = Result<LiveState, StoreError>> + Send;

    /// A mark that moves whenever anyone, accord included, commits a write
    /// to the database. Two equal marks mean nothing was written between
    /// them, so a plan made after the first would be made again alike and
    /// need not be. `None`: this backend cannot tell.
    fn change_mark(&self) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send;

    /// The rows of `keys` (those that exist), whole and without ledger
    /// entries.
    fn read_rows(&self, keys: &[Key]) -> impl Future<Output = Result<RowMap, StoreError>> + Send;

    /// Applies the plan, its audit rows and the sync record in one
    /// transaction, under `lock` (taken before the plan's rows were read),
    /// which it lets go once the transaction has committed.
    fn apply(
        &self,
        lock: SourceLock,
        request: ApplyRequest<'_>,
    ) -> impl Future<Output = Result<SyncRecord, StoreError>> + Send;

    /// The newest audit rows first.
    fn audit(
        &self,
        query: &AuditQuery,
    ) -> impl Future<Output = Result<Vec<AuditEntry>, StoreError>> + Send;

    /// A source's recorded syncs, newest first, each with its newest audit
    /// rows: one query for the runs and one for the changes of all of them.
    fn sync_runs(
        &self,
        query: &RunQuery,
    ) -> impl Future<Output = Result<Vec<SyncRun>, StoreError>> + Send;

    /// Whether the database answers.
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Turns reconciliation of an organization on or off (in every app, or one).
    fn set_gitops(
        &self,
        slug: &str,
        app: Option<&str>,
        enabled: bool,
    ) -> impl Future<Output = Result<Vec<OrgSwitch>, StoreError>> + Send;

    /// Organizations' switches and owners, by app and slug, from the one
    /// after `after` (the first, by default), `limit` at most.
    fn organizations(
        &self,
        after: Option<(&str, &str)>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<OrgSwitch>, StoreError>> + Send;

    /// The organization's switch in every app it exists in.
    fn gitops(
        &self,
        slug: &str,
        app: Option<&str>,
    ) -> impl Future<Output = Result<Vec<OrgSwitch>, StoreError>> + Send;

    /// Which source manages each of `keys`, and from which file.
    fn owners(
        &self,
        keys: &[&Key],
    ) -> impl Future<Output = Result<KeyMap<(String, Option<String>)>, StoreError>> + Send;

    /// Takes the source's write lock: every apply happens under it, and a
    /// plan that is applied is made from rows read after it was taken, so
    /// two writers of one source (replicas, two `accord apply` runs, a CLI
    /// beside the controller) never mix their trees. `None` when `mode` is
    /// `Try` and another process holds it. PostgreSQL: a session advisory
    /// lock per source. SQLite: a write transaction begun `IMMEDIATE`, which
    /// serializes every writer of the file, across processes too.
    fn lock_source(
        &self,
        source: &str,
        mode: LockMode,
    ) -> impl Future<Output = Result<Option<SourceLock>, StoreError>> + Send;

    /// The deletions of `source`'s syncs within the last
    /// `window` (since its last approved or forced apply, if later), and
    /// an approval waiting to be used.
    fn guard_state(
        &self,
        source: &str,
        window: std::time::Duration,
    ) -> impl Future<Output = Result<GuardState, StoreError>> + Send;

    /// Records what the guard refused, under the source's lock.
    fn record_refusal(
        &self,
        lock: &mut SourceLock,
        source: &str,
        refusal: &crate::plan::GuardRefusal,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Walks the history's hash chain from `from` (the start, by default):
    /// how far it got, and the first row that was edited, inserted or
    /// removed behind accord's back.
    fn verify_chain(
        &self,
        from: chain::Position,
    ) -> impl Future<Output = Result<chain::Report, StoreError>> + Send;

    /// Approves the deletions the guard last refused for `source`:
    /// exactly that set (`set`, when given, must still be it). The next
    /// sync whose deletions are that set applies them.
    fn approve_deletions(
        &self,
        source: &str,
        set: Option<&str>,
        by: &str,
    ) -> impl Future<Output = Result<Approval, ApprovalError>> + Send;
}

/// How `Store::lock_source` waits for a lock another process holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockMode {
    /// Give up at once (the controller retries at its next turn).
    Try,
    /// Wait up to this long, then fail with `StoreError::Locked`.
    Wait(std::time::Duration),
}

/// A held source lock, consumed by `Store::apply` (which writes in its
/// transaction, commits, and so lets it go) or by `release`. Dropped
/// without either, its transaction rolls back and the lock is released.
pub struct SourceLock {
    pub(crate) held: Held,
}

/// Either way the lock is a transaction, which the apply writes in.
pub(crate) enum Held {
    Released,
    /// A transaction holding `pg_advisory_xact_lock` of the source.
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
    /// A write transaction begun `IMMEDIATE`, and this process's turn among
    /// its own writers.
    Sqlite(
        sqlx::Transaction<'static, sqlx::Sqlite>,
        tokio::sync::OwnedMutexGuard<()>,
    ),
}

impl SourceLock {
    /// Lets the lock go, committing what was written under it (a refusal
    /// record).
    pub async fn release(mut self) -> Result<(), StoreError> {
        self.finish().await
    }

    /// Commits the lock's transaction: the apply's writes, and with them the
    /// lock's release.
    pub(crate) async fn finish(&mut self) -> Result<(), StoreError> {
        match std::mem::replace(&mut self.held, Held::Released) {
            Held::Released => Ok(()),
            Held::Sqlite(tx, turn) => {
                let committed = tx.commit().await;
                drop(turn);
                Ok(committed?)
            }
            Held::Postgres(tx) => Ok(tx.commit().await?),
        }
    }
}

/// The advisory-lock key of a source: stable across processes and versions.
pub fn lock_key(source: &str) -> i64 {
    let hash = blake3::hash(format!("accord-source:{source}").as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&hash.as_bytes()[..8]);
    i64::from_le_bytes(bytes)
}

/// A store chosen by URL at run time.
pub enum AnyStore {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

impl AnyStore {
    /// Connects to `sqlite://PATH` (created when missing) or `postgres://…`,
    /// and applies pending migrations.
    pub async fn connect(url: &str) -> Result<AnyStore, StoreError> {
        Self::connect_migrating_with(url, None).await
    }

    /// Connects to `url`; pending migrations are applied through
    /// `migrate_url` when given (an owner role, so the role accord runs as
    /// need not own the tables: it cannot drop the history's triggers),
    /// else through `url`.
    pub async fn connect_migrating_with(
        url: &str,
        migrate_url: Option<&str>,
    ) -> Result<AnyStore, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(AnyStore::Sqlite(
                SqliteStore::connect(url, migrate_url).await?,
            ))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(AnyStore::Postgres(
                PostgresStore::connect(url, migrate_url).await?,
            ))
        } else {
            Err(StoreError::UnsupportedUrl(crate::redact::url(url)))
        }
    }
}

impl AnyStore {
    /// Connects to a database that must already exist: a query never
    /// creates an empty SQLite file where a path was mistyped.
    pub async fn connect_existing(url: &str) -> Result<AnyStore, StoreError> {
        if url.starts_with("sqlite:") {
            use std::str::FromStr;
            let path = sqlx::sqlite::SqliteConnectOptions::from_str(url)
                .map(|o| o.get_filename().to_owned())
                .ok();
            if let Some(path) = path.filter(|p| !p.exists()) {
                return Err(StoreError::Missing(path.display().to_string()));
            }
        }
        Self::connect(url).await
    }

    /// How the database would answer `read`: its query plan, as text.
    pub async fn query_plan(&self, read: &Read<'_>) -> Result<String, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.query_plan(read).await,
            AnyStore::Postgres(s) => s.query_plan(read).await,
        }
    }

    /// Closes every connection. On SQLite the last one to close folds the
    /// write-ahead log into the database file, so once accord exits the
    /// file alone holds everything (a copy of it is a whole database).
    pub async fn close(&self) {
        match self {
            AnyStore::Sqlite(s) => s.pool().close().await,
            AnyStore::Postgres(s) => s.pool().close().await,
        }
    }
}

impl Store for AnyStore {
    async fn verify_chain(&self, from: chain::Position) -> Result<chain::Report, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.verify_chain(from).await,
            AnyStore::Postgres(s) => s.verify_chain(from).await,
        }
    }

    async fn guard_state(
        &self,
        source: &str,
        window: std::time::Duration,
    ) -> Result<GuardState, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.guard_state(source, window).await,
            AnyStore::Postgres(s) => s.guard_state(source, window).await,
        }
    }

    async fn record_refusal(
        &self,
        lock: &mut SourceLock,
        source: &str,
        refusal: &crate::plan::GuardRefusal,
    ) -> Result<(), StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.record_refusal(lock, source, refusal).await,
            AnyStore::Postgres(s) => s.record_refusal(lock, source, refusal).await,
        }
    }

    async fn approve_deletions(
        &self,
        source: &str,
        set: Option<&str>,
        by: &str,
    ) -> Result<Approval, ApprovalError> {
        match self {
            AnyStore::Sqlite(s) => s.approve_deletions(source, set, by).await,
            AnyStore::Postgres(s) => s.approve_deletions(source, set, by).await,
        }
    }

    async fn load(&self, source: Option<&str>) -> Result<LiveState, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.load(source).await,
            AnyStore::Postgres(s) => s.load(source).await,
        }
    }

    async fn load_for_plan(&self, source: &str) -> Result<LiveState, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.load_for_plan(source).await,
            AnyStore::Postgres(s) => s.load_for_plan(source).await,
        }
    }

    async fn change_mark(&self) -> Result<Option<u64>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.change_mark().await,
            AnyStore::Postgres(s) => s.change_mark().await,
        }
    }

    async fn read_rows(&self, keys: &[Key]) -> Result<RowMap, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.read_rows(keys).await,
            AnyStore::Postgres(s) => s.read_rows(keys).await,
        }
    }

    async fn apply(
        &self,
        lock: SourceLock,
        request: ApplyRequest<'_>,
    ) -> Result<SyncRecord, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.apply(lock, request).await,
            AnyStore::Postgres(s) => s.apply(lock, request).await,
        }
    }

    async fn owners(&self, keys: &[&Key]) -> Result<KeyMap<(String, Option<String>)>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.owners(keys).await,
            AnyStore::Postgres(s) => s.owners(keys).await,
        }
    }

    async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.audit(query).await,
            AnyStore::Postgres(s) => s.audit(query).await,
        }
    }

    async fn sync_runs(&self, query: &RunQuery) -> Result<Vec<SyncRun>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.sync_runs(query).await,
            AnyStore::Postgres(s) => s.sync_runs(query).await,
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.ping().await,
            AnyStore::Postgres(s) => s.ping().await,
        }
    }

    async fn set_gitops(
        &self,
        slug: &str,
        app: Option<&str>,
        enabled: bool,
    ) -> Result<Vec<OrgSwitch>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.set_gitops(slug, app, enabled).await,
            AnyStore::Postgres(s) => s.set_gitops(slug, app, enabled).await,
        }
    }

    async fn organizations(
        &self,
        after: Option<(&str, &str)>,
        limit: u32,
    ) -> Result<Vec<OrgSwitch>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.organizations(after, limit).await,
            AnyStore::Postgres(s) => s.organizations(after, limit).await,
        }
    }

    async fn gitops(&self, slug: &str, app: Option<&str>) -> Result<Vec<OrgSwitch>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.gitops(slug, app).await,
            AnyStore::Postgres(s) => s.gitops(slug, app).await,
        }
    }

    async fn lock_source(
        &self,
        source: &str,
        mode: LockMode,
    ) -> Result<Option<SourceLock>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.lock_source(source, mode).await,
            AnyStore::Postgres(s) => s.lock_source(source, mode).await,
        }
    }
}

/// `keys` by the table of their kind, each table's as one JSON array of
/// `[app, id]` pairs, which a keyed query (`LiveTable::keyed`) takes.
fn keys_by_table(keys: &[Key]) -> Result<Vec<(rows::LiveTable, String)>, StoreError> {
    let mut tables = Vec::new();
    for kind in Kind::ALL {
        let pairs: Vec<(&str, &str)> = keys
            .iter()
            .filter(|key| key.kind == kind)
            .map(|key| (key.app.as_str(), key.id.as_str()))
            .collect();
        if pairs.is_empty() {
            continue;
        }
        let table = rows::LiveTable::of(kind);
        let json = serde_json::to_string(&pairs).map_err(|e| StoreError::Decode {
            table: table.name().into(),
            message: e.to_string(),
        })?;
        tables.push((table, json));
    }
    Ok(tables)
}

/// Reads whole the rows `plan` changes that `live` holds without their
/// content (`Plan::unread_rows`), into `live`; whether it read any, in
/// which case the plan must be made again. The rows are read after the
/// load, in another transaction: one written meanwhile comes back as it is
/// now (its hash then tells the plan it was edited), and one deleted
/// meanwhile leaves only its ledger entry.
pub async fn read_unread(
    store: &impl Store,
    live: &mut LiveState,
    plan: &Plan,
) -> Result<bool, StoreError> {
    let keys = plan.unread_rows(live);
    if keys.is_empty() {
        return Ok(false);
    }
    let mut read = store.read_rows(&keys).await?;
    for key in keys {
        match read.swap_remove(&key) {
            Some(row) => {
                if let Some(held) = live.rows.get_mut(&key) {
                    held.replace_with(row);
                }
            }
            None => {
                if let Some(entry) = live
                    .rows
                    .swap_remove(&key)
                    .and_then(|row| row.ledger().cloned())
                {
                    live.ledger.insert(key, entry);
                }
            }
        }
    }
    Ok(true)
}

/// What the ledger says about the keys of a plan's conflicts and deletes,
/// read for them alone (one query, none when there are neither): the file
/// behind each conflict over a row another source owns ("owned by source
/// `git` (declared in perms/a.yaml)"), so whoever reads the conflict knows
/// where to look; and the file that last declared each key `source` deletes,
/// whose author a Git source credits with the delete.
pub async fn explain(store: &impl Store, plan: &mut Plan, source: &str) -> Result<(), StoreError> {
    let explained = |c: &Change| c.owner.is_some() || c.action == Action::Delete;
    let keys: Vec<&Key> = plan
        .changes
        .iter()
        .filter(|c| explained(c))
        .map(|c| &c.key)
        .collect();
    if keys.is_empty() {
        return Ok(());
    }
    let owners = store.owners(&keys).await?;
    for change in plan.changes.iter_mut().filter(|c| explained(c)) {
        let Some((owner, Some(file))) = owners.get(&change.key) else {
            continue;
        };
        if change.action == Action::Delete {
            if owner == source {
                change.declared_in = Some(Arc::from(file.as_str()));
            }
        } else if change.owner.as_deref() == Some(owner.as_str()) {
            change.note = format!("owned by source `{owner}` (declared in {file})");
        }
    }
    Ok(())
}
