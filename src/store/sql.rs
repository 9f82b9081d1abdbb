//! The SQL behind both stores. The statements are portable between SQLite and
//! PostgreSQL; a macro stamps the one implementation out for each backend's
//! concrete types, so there is one copy of the SQL to read and review.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rayon::prelude::*;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::QueryBuilder;

use futures::StreamExt as _;

use super::bulk::{self, Table};
use super::chain;
use super::copy_text;
use super::rows::{self, LiveTable};
use super::sqlite_read;
use super::{
    lock_key, ApplyRequest, Approval, ApprovalError, AuditAction, AuditEntry, AuditQuery,
    GuardRecord, GuardState, Held, LockMode, OrgSwitch, SourceLock, Store, StoreError, SyncRecord,
};
use crate::model::{Enrollment, Key, KeyMap, Kind, Member, Object, Organization, Permit};
use crate::plan::{Action, Change, GuardRefusal, LiveState, RowMap};
use crate::policy::DriftPolicy;

pub struct SqliteStore {
    pool: SqlitePool,
    /// This process's writers take turns here before SQLite's own lock.
    writer: std::sync::Arc<tokio::sync::Mutex<()>>,
    /// The database file, which `load` reads through its own connection.
    path: PathBuf,
}

pub struct PostgresStore {
    pool: PgPool,
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
        })
    }

    async fn read_live(&self, source: Option<&str>) -> Result<LiveState, StoreError> {
        let path = self.path.clone();
        let source = source.map(str::to_owned);
        tokio::task::spawn_blocking(move || sqlite_read::load(&path, source.as_deref()))
            .await
            .map_err(load_stopped)?
    }

    /// SQLite reads every row whole: it has no row versions to tell an
    /// unedited row by (and its load is within the plan's budget anyway).
    async fn read_for_plan(&self, source: &str) -> Result<LiveState, StoreError> {
        self.read_live(Some(source)).await
    }

    /// Never needed by a plan (`read_for_plan` leaves nothing unread); the
    /// rows of every key, read as a whole load reads them.
    async fn read_keyed(&self, keys: &[Key]) -> Result<RowMap, StoreError> {
        Ok(super::rows_among(self.read_live(None).await?, keys))
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

/// `COPY` text goes to the assembler in batches of about this size, each of
/// whole rows (the server sends one message per row). A few buffers, reused
/// and so still in the cache, take the place of a fresh buffer as large as
/// each table, whose pages' first touch alone was a tenth of a load's time;
/// and the assembler starts on a table's first rows, not after its last.
const BATCH: usize = 256 * 1024;

/// The source's name in PostgreSQL's load queries: a transaction-local
/// setting, read once per query in a subquery (not once per ledger row).
const SOURCE: &str = "(SELECT current_setting('accord.source'))";

impl PostgresStore {
    /// Every row of `source`'s scope, whole, and its ledger.
    async fn read_live(&self, source: Option<&str>) -> Result<LiveState, StoreError> {
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

    /// `read_live`, but the permits and enrollments that are exactly as
    /// accord last wrote them for `source` come as `LiveTable::Unread`:
    /// without their content, which accord then neither decodes, hashes nor
    /// keeps (after a sync, nearly every row).
    async fn read_for_plan(&self, source: &str) -> Result<LiveState, StoreError> {
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
    async fn read_keyed(&self, keys: &[Key]) -> Result<RowMap, StoreError> {
        let mut settings = Vec::new();
        let mut queries = Vec::new();
        for kind in Kind::ALL {
            let pairs: Vec<(&str, &str)> = keys
                .iter()
                .filter(|key| key.kind == kind)
                .map(|key| (key.app.as_str(), key.id.as_str()))
                .collect();
            if pairs.is_empty() {
                continue;
            }
            let table = LiveTable::of(kind);
            let setting = format!("accord.{}", table.name());
            let json = serde_json::to_string(&pairs).map_err(|e| StoreError::Decode {
                table: table.name().into(),
                message: e.to_string(),
            })?;
            if kind == Kind::Organization {
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
    async fn read_tables(
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

/// One audit row. Rendered while the rows before it are being written (the
/// database works on one chunk while accord renders the next), rather than
/// all before the transaction, which left the database idle meanwhile.
struct AuditRow<'a> {
    action: AuditAction,
    change: &'a Change,
    before: Option<String>,
    after: Option<String>,
    diff: String,
}

impl<'a> AuditRow<'a> {
    /// The file's author for declared changes, the change's author for
    /// deletes, and whoever runs accord for drift.
    fn actor<'r>(&self, request: &'r ApplyRequest<'_>) -> &'r str
    where
        'a: 'r,
    {
        let author = self
            .change
            .declared_in
            .as_ref()
            .and_then(|file| request.authors.get(file));
        match self.action {
            AuditAction::Create | AuditAction::Update | AuditAction::Delete => {
                author.map_or(request.actor, String::as_str)
            }
            AuditAction::DriftCorrected | AuditAction::DriftDetected => request.actor,
        }
    }

    fn new(action: AuditAction, change: &'a Change) -> AuditRow<'a> {
        let json = |o: Option<&Object>| o.map(|o| serde_json::to_string(o).unwrap_or_default());
        // A create's or delete's diff is every line of its one object: it
        // is made again from the object when read (`render::value_diff`),
        // not written twice (a first sync writes one per object).
        let whole = change.before.is_none() || change.after.is_none();
        AuditRow {
            action,
            change,
            before: json(change.before.as_ref()),
            after: json(change.after.as_deref()),
            diff: if whole { String::new() } else { change.diff() },
        }
    }
}

/// What a plan writes, sorted out once for both backends.
#[derive(Default)]
struct Writes<'a> {
    /// Objects to insert or overwrite, with their content hashes.
    /// Objects to write with their content hashes, and whether each is new:
    /// new rows are plainly inserted (PostgreSQL: `COPY`ed), which is far
    /// cheaper than an upsert, and a racing insert fails the transaction.
    upserts: Vec<(&'a Object, String, bool)>,
    deletes: Vec<&'a Key>,
    /// The changes whose objects are written (creates, updates, corrected drift).
    declared: Vec<&'a Change>,
    /// Drift reported (not corrected) for the first time.
    reported: Vec<&'a Change>,
    audit: Vec<(AuditAction, &'a Change)>,
}

impl<'a> Writes<'a> {
    fn sort_out(request: &ApplyRequest<'a>) -> Writes<'a> {
        let mut w = Writes::default();
        let mut audited = Vec::new();
        for change in &request.plan.changes {
            let audit_action = match (change.action, request.drift) {
                (Action::Create, _) => Some(AuditAction::Create),
                (Action::Update, _) => Some(AuditAction::Update),
                (Action::Delete, _) => Some(AuditAction::Delete),
                (Action::Drift, DriftPolicy::Correct) => Some(AuditAction::DriftCorrected),
                (Action::Drift, DriftPolicy::Report) if !change.drift_reported => {
                    Some(AuditAction::DriftDetected)
                }
                _ => None,
            };
            let Some(audit_action) = audit_action else {
                continue;
            };
            match audit_action {
                AuditAction::Delete => w.deletes.push(&change.key),
                AuditAction::DriftDetected => w.reported.push(change),
                _ => {
                    if let Some(after) = &change.after {
                        let new = change.action == Action::Create;
                        w.upserts.push((after, String::new(), new));
                        w.declared.push(change);
                    }
                }
            }
            audited.push((audit_action, change));
        }
        w.audit = audited;
        let hashed: Vec<String> = w
            .upserts
            .par_iter()
            .map(|(o, _, _)| o.content_hash())
            .collect();
        for ((_, hash, _), computed) in w.upserts.iter_mut().zip(hashed) {
            *hash = computed;
        }
        w
    }

    fn of_kind(&self, kind: Kind) -> impl Iterator<Item = &(&'a Object, String, bool)> {
        self.upserts
            .iter()
            .filter(move |(o, _, _)| o.kind() == kind)
    }
}

/// Keys grouped by kind and app, so a delete is `app = ? AND id IN (…)`.
fn group_keys<'a>(keys: impl Iterator<Item = &'a Key>) -> BTreeMap<(Kind, &'a str), Vec<&'a str>> {
    let mut groups: BTreeMap<(Kind, &str), Vec<&str>> = BTreeMap::new();
    for key in keys {
        groups
            .entry((key.kind, &key.app))
            .or_default()
            .push(&key.id);
    }
    groups
}

fn table(kind: Kind) -> (&'static str, &'static str) {
    match kind {
        Kind::Organization => ("organizations", "slug"),
        Kind::Permit => ("permits", "id"),
        Kind::Enrollment => ("enrollments", "id"),
    }
}

const ORGANIZATIONS: Table = Table {
    name: "organizations",
    columns: &[
        "app",
        "slug",
        "name",
        "monthly_tokens",
        "allowed_models",
        "managed_by",
        "applied_hash",
        "updated_at",
    ],
    key: &["app", "slug"],
    // `gitops` is the operator's switch: a sync never turns it back on.
    update: &[
        "name",
        "monthly_tokens",
        "allowed_models",
        "managed_by",
        "applied_hash",
        "updated_at",
    ],
    stamp: None,
};
const MEMBERS: Table = Table {
    name: "organization_members",
    columns: &[
        "app",
        "org_slug",
        "user_id",
        "contact_id",
        "role",
        "token_limit",
    ],
    key: &[],
    update: &[],
    stamp: None,
};
const PERMITS: Table = Table {
    name: "permits",
    columns: &[
        "app",
        "id",
        "permission_id",
        "slugs",
        "roles",
        "managed_by",
        "applied_hash",
        "updated_at",
    ],
    key: &["app", "id"],
    update: &[
        "permission_id",
        "slugs",
        "roles",
        "managed_by",
        "applied_hash",
        "updated_at",
    ],
    stamp: Some("applied_xid"),
};
const ENROLLMENTS: Table = Table {
    name: "enrollments",
    columns: &[
        "app",
        "id",
        "role",
        "user_id",
        "contact_id",
        "managed_by",
        "applied_hash",
        "updated_at",
    ],
    key: &["app", "id"],
    update: &[
        "role",
        "user_id",
        "contact_id",
        "managed_by",
        "applied_hash",
        "updated_at",
    ],
    stamp: Some("applied_xid"),
};
const CLAIMS: Table = Table {
    name: "claims",
    columns: &["source", "kind", "app", "object_id", "owner", "declared_in"],
    key: &["source", "kind", "app", "object_id"],
    update: &["owner", "declared_in"],
    stamp: None,
};
const MANAGED: Table = Table {
    name: "managed_objects",
    columns: &[
        "kind",
        "app",
        "object_id",
        "source",
        "reported_hash",
        "declared_in",
    ],
    key: &["kind", "app", "object_id"],
    update: &["source", "reported_hash", "declared_in"],
    stamp: None,
};
const AUDIT_LOG: Table = Table {
    name: "audit_log",
    columns: &[
        "at",
        "actor",
        "source",
        "revision",
        "sync_run",
        "action",
        "kind",
        "app",
        "object_id",
        "before",
        "after",
        "diff",
        "origin",
        "row_hash",
        "chain_hash",
    ],
    key: &[],
    update: &[],
    stamp: None,
};

fn tokens(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

type AuditTuple = (
    i64,
    DateTime<Utc>,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    String,
    Option<String>,
);

macro_rules! sql_store {
    ($store:ident, $db:ty, $bind_limit:expr, $bulk:path) => {
        impl $store {
            /// Writes rows marked new with plain inserts and the others as upserts.
            async fn write_split<T, const N: usize>(
                conn: &mut <$db as sqlx::Database>::Connection,
                table: &Table,
                rows: &[(T, bool)],
                cells: impl Fn(&T) -> [bulk::Cell<'_>; N],
            ) -> Result<(), StoreError> {
                let (new, existing): (Vec<&(T, bool)>, Vec<&(T, bool)>) =
                    rows.iter().partition(|(_, new)| *new);
                $bulk(&mut *conn, &table.insert_only(), &new, |row| cells(&row.0)).await?;
                $bulk(&mut *conn, table, &existing, |row| cells(&row.0)).await
            }

            /// The chain hashes of the newest chained sync run and audit row
            /// (or the genesis, before the first).
            async fn chain_heads(
                conn: &mut <$db as sqlx::Database>::Connection,
            ) -> Result<(chain::Hash, chain::Hash), StoreError> {
                let mut heads = [chain::GENESIS; 2];
                let queries = [
                    "SELECT chain_hash FROM sync_runs WHERE chain_hash IS NOT NULL ORDER BY id DESC LIMIT 1",
                    "SELECT chain_hash FROM audit_log WHERE chain_hash IS NOT NULL ORDER BY seq DESC LIMIT 1",
                ];
                for (head, query) in heads.iter_mut().zip(queries) {
                    let row: Option<(Vec<u8>,)> = sqlx::query_as(query).fetch_optional(&mut *conn).await?;
                    if let Some((bytes,)) = row {
                        *head = chain::parse(&bytes).unwrap_or(chain::GENESIS);
                    }
                }
                Ok((heads[0], heads[1]))
            }

            /// What an apply does to the source's deletion-guard record.
            async fn record_guard(
                conn: &mut <$db as sqlx::Database>::Connection,
                source: &str,
                guard: &GuardRecord,
                sync_id: i64,
            ) -> Result<(), StoreError> {
                let statement = match guard {
                    GuardRecord::Held => return Ok(()),
                    GuardRecord::Clear => "UPDATE deletion_guard SET refused_set = NULL, refused_count = NULL, \
                        refused_at = NULL, approved_set = NULL, approved_by = NULL, approved_at = NULL \
                        WHERE source = $1 AND (refused_set IS NOT NULL OR approved_set IS NOT NULL)",
                    GuardRecord::Approved(_) | GuardRecord::Forced => "INSERT INTO deletion_guard (source, window_after_run) VALUES ($1, $2) \
                        ON CONFLICT (source) DO UPDATE SET refused_set = NULL, refused_count = NULL, refused_at = NULL, \
                        approved_set = NULL, approved_by = NULL, approved_at = NULL, window_after_run = excluded.window_after_run",
                };
                let mut query = sqlx::query(statement).bind(source);
                if !matches!(guard, GuardRecord::Clear) {
                    query = query.bind(sync_id);
                }
                query.execute(&mut *conn).await?;
                Ok(())
            }

            /// Runs `DELETE … AND app = ? AND <column> IN (…)` per (kind, app) group;
            /// `head` writes the statement up to that point and names the id column.
            async fn delete_keys(
                conn: &mut <$db as sqlx::Database>::Connection,
                groups: &BTreeMap<(Kind, &str), Vec<&str>>,
                head: impl Fn(&mut QueryBuilder<$db>, Kind) -> &'static str,
            ) -> Result<(), StoreError> {
                for ((kind, app), ids) in groups {
                    for chunk in ids.chunks($bind_limit - 4) {
                        let mut qb = QueryBuilder::<$db>::new("DELETE FROM ");
                        let column = head(&mut qb, *kind);
                        qb.push(" AND app = ").push_bind(*app);
                        qb.push(format!(" AND {column} IN ("));
                        let mut list = qb.separated(", ");
                        for id in chunk {
                            list.push_bind(*id);
                        }
                        qb.push(")");
                        qb.build().persistent(false).execute(&mut *conn).await?;
                    }
                }
                Ok(())
            }
        }

        impl Store for $store {
            #[tracing::instrument(skip_all, fields(source = ?source))]
            async fn load(&self, source: Option<&str>) -> Result<LiveState, StoreError> {
                self.read_live(source).await
            }

            #[tracing::instrument(skip_all, fields(source = %source))]
            async fn load_for_plan(&self, source: &str) -> Result<LiveState, StoreError> {
                self.read_for_plan(source).await
            }

            #[tracing::instrument(skip_all, fields(rows = keys.len()))]
            async fn read_rows(&self, keys: &[Key]) -> Result<RowMap, StoreError> {
                self.read_keyed(keys).await
            }

            #[tracing::instrument(skip_all, fields(source = %request.source, revision = %request.revision))]
            async fn apply(&self, lock: SourceLock, request: ApplyRequest<'_>) -> Result<SyncRecord, StoreError> {
                let started_at = Utc::now();
                let writes = Writes::sort_out(&request);
                let source = request.source;
                let now = Utc::now();
                // The writes go into the lock's own transaction, which
                // `finish` commits (no savepoint: SQLite would journal it).
                let mut lock = lock;
                let conn: &mut <$db as sqlx::Database>::Connection = Self::locked(&mut lock)?;

                // Rows first: organizations (with their members), permits, enrollments.
                let orgs: Vec<((&Organization, &String), bool)> = writes
                    .of_kind(Kind::Organization)
                    .filter_map(|(o, hash, new)| match o {
                        Object::Organization(o) => Some(((o, hash), *new)),
                        _ => None,
                    })
                    .collect();
                Self::write_split(conn, &ORGANIZATIONS, &orgs, |(o, hash)| {
                    [
                        o.app.as_str().into(),
                        o.slug.as_str().into(),
                        o.name.as_deref().into(),
                        o.budget.as_ref().map(|b| tokens(b.monthly_tokens)).into(),
                        rows::list_to_json(&o.allowed_models).into(),
                        source.into(),
                        hash.as_str().into(),
                        now.into(),
                    ]
                })
                .await?;
                let upserted_orgs: Vec<Key> = orgs.iter().map(|((o, _), _)| Key {
                    kind: Kind::Organization,
                    app: o.app.as_str().into(),
                    id: o.slug.as_str().into(),
                }).collect();
                let deleted_orgs = writes.deletes.iter().copied().filter(|k| k.kind == Kind::Organization);
                let member_groups = group_keys(upserted_orgs.iter().chain(deleted_orgs));
                Self::delete_keys(conn, &member_groups, |qb, _| {
                    qb.push("organization_members WHERE TRUE");
                    "org_slug"
                })
                .await?;
                let members: Vec<(&Organization, &Member)> = orgs
                    .iter()
                    .flat_map(|((o, _), _)| o.members.iter().map(move |m| (*o, m)))
                    .collect();
                $bulk(conn, &MEMBERS, &members, |(o, m)| {
                    [
                        o.app.as_str().into(),
                        o.slug.as_str().into(),
                        m.user_id.as_deref().into(),
                        m.contact_id.as_deref().into(),
                        m.role.as_str().into(),
                        m.token_limit.map(tokens).into(),
                    ]
                })
                .await?;
                let permits: Vec<((&Permit, &String), bool)> = writes
                    .of_kind(Kind::Permit)
                    .filter_map(|(o, hash, new)| match o {
                        Object::Permit(p) => Some(((p, hash), *new)),
                        _ => None,
                    })
                    .collect();
                Self::write_split(conn, &PERMITS, &permits, |(p, hash)| {
                    [
                        p.app.as_str().into(),
                        p.id.as_str().into(),
                        p.permission_id.as_str().into(),
                        rows::list_to_json(&p.slugs).into(),
                        rows::list_to_json(&p.roles).into(),
                        source.into(),
                        hash.as_str().into(),
                        now.into(),
                    ]
                })
                .await?;
                let enrollments: Vec<((&Enrollment, &String), bool)> = writes
                    .of_kind(Kind::Enrollment)
                    .filter_map(|(o, hash, new)| match o {
                        Object::Enrollment(e) => Some(((e, hash), *new)),
                        _ => None,
                    })
                    .collect();
                Self::write_split(conn, &ENROLLMENTS, &enrollments, |(e, hash)| {
                    [
                        e.app.as_str().into(),
                        e.id.as_str().into(),
                        e.role.as_str().into(),
                        e.user_id.as_deref().into(),
                        e.contact_id.as_deref().into(),
                        source.into(),
                        hash.as_str().into(),
                        now.into(),
                    ]
                })
                .await?;

                // Prune: only rows this source manages (or that lost their owner by hand).
                let deletes = group_keys(writes.deletes.iter().copied());
                Self::delete_keys(conn, &deletes, |qb, kind| {
                    let (table, column) = table(kind);
                    qb.push(table).push(" WHERE (managed_by IS NULL OR managed_by = ");
                    qb.push_bind(source).push(")");
                    column
                })
                .await?;

                // Ownership records: what this source now manages, from which file.
                let mut ledger: Vec<((&Key, Option<&str>, Option<&str>), bool)> = writes
                    .declared
                    .iter()
                    .map(|change| {
                        let new = change.action == Action::Create;
                        ((&change.key, None, change.declared_in.as_deref()), new)
                    })
                    .collect();
                ledger.extend(writes.reported.iter().map(|change| {
                    let reported = change.drift_hash.as_deref().unwrap_or_default();
                    ((&change.key, Some(reported), change.declared_in.as_deref()), false)
                }));
                // In the order of the ledger's primary key, whose `kind` is text
                // (Enrollment, Organization, Permit) where a plan goes by the
                // kinds' own order: index insertions then append instead of
                // splitting pages mid-index. The plan's order within a kind
                // is kept, so this is a merge of a few sorted runs.
                ledger.sort_by(|((a, ..), _), ((b, ..), _)| {
                    (a.kind.as_str(), &a.app, &a.id).cmp(&(b.kind.as_str(), &b.app, &b.id))
                });
                Self::write_split(conn, &MANAGED, &ledger, |(key, reported, declared_in)| {
                    [
                        key.kind.as_str().into(),
                        key.app.as_str().into(),
                        key.id.as_str().into(),
                        source.into(),
                        (*reported).into(),
                        (*declared_in).into(),
                    ]
                })
                .await?;
                let forgotten = group_keys(writes.deletes.iter().copied().chain(&request.plan.forget));
                Self::delete_keys(conn, &forgotten, |qb, kind| {
                    qb.push("managed_objects WHERE kind = ").push_bind(kind.as_str());
                    "object_id"
                })
                .await?;

                // This source's claims on keys other sources own: replaced whole.
                if request.plan.claims_changed {
                    let mut qb = QueryBuilder::<$db>::new("DELETE FROM claims WHERE source = ");
                    qb.push_bind(source);
                    qb.build().execute(&mut *conn).await?;
                    let claims: Vec<&crate::plan::Change> = request
                        .plan
                        .changes
                        .iter()
                        .filter(|c| c.owner.is_some())
                        .collect();
                    $bulk(conn, &CLAIMS.insert_only(), &claims, |c| {
                        [
                            source.into(),
                            c.key.kind.as_str().into(),
                            c.key.app.as_str().into(),
                            c.key.id.as_str().into(),
                            c.owner.as_deref().into(),
                            c.declared_in.as_deref().into(),
                        ]
                    })
                    .await?;
                }

                // The sync record and its audit rows, chained to the history.
                // Sources apply side by side on PostgreSQL; appending to the
                // history is one at a time, so each chain has one next row.
                Self::lock_history(conn).await?;
                let (run_head, audit_head) = Self::chain_heads(conn).await?;
                let summary = request.plan.summary();
                let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
                let run = chain::SyncRunRow {
                    source: source.to_owned(),
                    revision: request.revision.to_owned(),
                    actor: request.actor.to_owned(),
                    started_at: chain::stored_time(started_at),
                    finished_at: chain::stored_time(Utc::now()),
                    outcome: if writes.audit.is_empty() { "unchanged" } else { "applied" }.to_owned(),
                    counts: [
                        count(summary.create),
                        count(summary.update),
                        count(summary.delete),
                        count(summary.drift),
                        count(summary.conflict),
                        count(summary.suspended),
                    ],
                    message: request.guard.message(),
                    audited: count(writes.audit.len()),
                };
                let run_hash = run.hash();
                let run_chain = chain::link(&run_head, &run_hash);
                let finished_at = run.finished_at;
                let mut qb = QueryBuilder::<$db>::new(
                    "INSERT INTO sync_runs (source, revision, actor, started_at, finished_at, outcome, created, updated, deleted, drift, conflict, suspended, message, audited, row_hash, chain_hash) ",
                );
                qb.push_values([()], |mut b, ()| {
                    b.push_bind(&run.source)
                        .push_bind(&run.revision)
                        .push_bind(&run.actor)
                        .push_bind(run.started_at)
                        .push_bind(run.finished_at)
                        .push_bind(&run.outcome);
                    for n in run.counts {
                        b.push_bind(n);
                    }
                    b.push_bind(&run.message)
                        .push_bind(run.audited)
                        .push_bind(chain::stored_row_hash(&run_hash).to_vec())
                        .push_bind(run_chain.to_vec());
                });
                qb.push(" RETURNING id");
                let (sync_id,): (i64,) = qb.build_query_as().fetch_one(&mut *conn).await?;
                Self::record_guard(conn, source, &request.guard, sync_id).await?;
                // Rows are rendered, hashed and linked in order as they are
                // written (the database works on one chunk while the next
                // is rendered).
                let audit_chain = std::sync::Mutex::new(audit_head);
                let at = chain::stamp(&finished_at);
                $bulk(conn, &AUDIT_LOG, &writes.audit, |&(action, change)| {
                    let row = AuditRow::new(action, change);
                    let actor = row.actor(&request);
                    let origin = change
                        .declared_in
                        .as_ref()
                        .map(|file| request.origins.get(file).map_or(&**file, String::as_str));
                    let row_hash = chain::AuditRowContent {
                        at: &at,
                        actor,
                        source,
                        revision: request.revision,
                        sync_run: sync_id,
                        action: action.as_str(),
                        kind: change.key.kind.as_str(),
                        app: &change.key.app,
                        object_id: &change.key.id,
                        before: row.before.as_deref(),
                        after: row.after.as_deref(),
                        diff: &row.diff,
                        origin,
                    }
                    .hash();
                    let chain_hash = {
                        let mut head = audit_chain.lock().unwrap_or_else(|e| e.into_inner());
                        *head = chain::link(&head, &row_hash);
                        *head
                    };
                    [
                        finished_at.into(),
                        actor.into(),
                        source.into(),
                        request.revision.into(),
                        sync_id.into(),
                        action.as_str().into(),
                        change.key.kind.as_str().into(),
                        change.key.app.as_str().into(),
                        change.key.id.as_str().into(),
                        row.before.into(),
                        row.after.into(),
                        row.diff.into(),
                        origin.into(),
                        chain::stored_row_hash(&row_hash).to_vec().into(),
                        chain_hash.to_vec().into(),
                    ]
                })
                .await?;
                lock.finish().await?;
                Ok(SyncRecord {
                    id: sync_id,
                    source: source.to_owned(),
                    revision: request.revision.to_owned(),
                    started_at,
                    finished_at,
                    summary,
                    audited: writes.audit.len(),
                })
            }

            async fn verify_chain(&self, from: chain::Position) -> Result<chain::Report, StoreError> {
                self.walk_history(from).await
            }

            async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
                let mut qb = QueryBuilder::<$db>::new(
                    "SELECT seq, at, actor, source, revision, action, kind, app, object_id, before, after, diff, origin FROM audit_log WHERE 1 = 1",
                );
                if let Some(source) = &query.source {
                    qb.push(" AND source = ").push_bind(source.as_str());
                }
                if let Some(kind) = query.kind {
                    qb.push(" AND kind = ").push_bind(kind.as_str());
                }
                if let Some(since) = query.since {
                    qb.push(" AND at >= ").push_bind(since);
                }
                if let Some(seq) = query.seq {
                    qb.push(" AND seq = ").push_bind(seq);
                }
                qb.push(" ORDER BY seq DESC LIMIT ").push_bind(i64::from(query.limit));
                let rows: Vec<AuditTuple> = qb.build_query_as().fetch_all(&self.pool).await?;
                let json = |text: Option<String>| text.and_then(|t| serde_json::from_str(&t).ok());
                Ok(rows
                    .into_iter()
                    .map(|(seq, at, actor, source, revision, action, kind, app, id, before, after, diff, origin)| {
                        let (before, after) = (json(before), json(after));
                        let diff = if diff.is_empty() {
                            crate::model::render::value_diff(before.as_ref(), after.as_ref())
                        } else {
                            diff
                        };
                        AuditEntry { seq, at, actor, source, revision, action, kind, app, id, before, after, diff, origin }
                    })
                    .collect())
            }

            async fn ping(&self) -> Result<(), StoreError> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn set_gitops(&self, slug: &str, app: Option<&str>, enabled: bool) -> Result<Vec<OrgSwitch>, StoreError> {
                let mut qb = QueryBuilder::<$db>::new("UPDATE organizations SET gitops = ");
                qb.push_bind(enabled).push(" WHERE slug = ").push_bind(slug);
                if let Some(app) = app {
                    qb.push(" AND app = ").push_bind(app);
                }
                qb.build().execute(&self.pool).await?;
                self.gitops(slug, app).await
            }

            async fn gitops(&self, slug: &str, app: Option<&str>) -> Result<Vec<OrgSwitch>, StoreError> {
                let mut qb = QueryBuilder::<$db>::new(
                    "SELECT app, slug, gitops, managed_by FROM organizations WHERE slug = ",
                );
                qb.push_bind(slug);
                if let Some(app) = app {
                    qb.push(" AND app = ").push_bind(app);
                }
                qb.push(" ORDER BY app");
                let rows: Vec<OrgSwitchRow> = qb.build_query_as().fetch_all(&self.pool).await?;
                Ok(switches(rows))
            }

            async fn owners(&self, keys: &[&Key]) -> Result<KeyMap<(String, Option<String>)>, StoreError> {
                let mut owners = KeyMap::default();
                let wanted: std::collections::HashSet<&Key> = keys.iter().copied().collect();
                for chunk in keys.chunks($bind_limit / 2) {
                    let mut qb = QueryBuilder::<$db>::new(
                        "SELECT kind, app, object_id, source, declared_in FROM managed_objects WHERE object_id IN (",
                    );
                    let mut ids = qb.separated(", ");
                    for key in chunk {
                        ids.push_bind(key.id.as_str());
                    }
                    qb.push(")");
                    let rows: Vec<(String, String, String, String, Option<String>)> =
                        qb.build_query_as().fetch_all(&self.pool).await?;
                    for (kind, app, id, source, declared_in) in rows {
                        let Some(kind) = Kind::parse(&kind) else { continue };
                        let key = Key { kind, app: app.into(), id: id.into() };
                        if wanted.contains(&key) {
                            owners.insert(key, (source, declared_in));
                        }
                    }
                }
                Ok(owners)
            }

            async fn guard_state(&self, source: &str, window: Duration) -> Result<GuardState, StoreError> {
                let recorded: Option<(Option<String>, Option<String>, Option<i64>)> = sqlx::query_as(
                    "SELECT approved_set, approved_by, window_after_run FROM deletion_guard WHERE source = $1",
                )
                .bind(source)
                .fetch_optional(&self.pool)
                .await?;
                let (approved_set, approved_by, after_run) = recorded.unwrap_or_default();
                let since = Utc::now() - chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
                let (deleted,): (i64,) = sqlx::query_as(
                    "SELECT CAST(COALESCE(SUM(deleted), 0) AS BIGINT) \
                     FROM sync_runs WHERE source = $1 AND finished_at >= $2 AND id > $3",
                )
                .bind(source)
                .bind(since)
                .bind(after_run.unwrap_or(0))
                .fetch_one(&self.pool)
                .await?;
                let count = |n: i64| usize::try_from(n).unwrap_or(0);
                Ok(GuardState {
                    deleted: count(deleted),
                    approved: approved_set.map(|set| (set, approved_by.unwrap_or_default())),
                })
            }

            async fn record_refusal(&self, lock: &mut SourceLock, source: &str, refusal: &GuardRefusal) -> Result<(), StoreError> {
                let conn = Self::locked(lock)?;
                sqlx::query(
                    "INSERT INTO deletion_guard (source, refused_set, refused_count, refused_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (source) DO UPDATE SET refused_set = excluded.refused_set, \
                     refused_count = excluded.refused_count, refused_at = excluded.refused_at",
                )
                .bind(source)
                .bind(&refusal.set)
                .bind(i64::try_from(refusal.deletes).unwrap_or(i64::MAX))
                .bind(Utc::now())
                .execute(&mut *conn)
                .await?;
                Ok(())
            }

            async fn approve_deletions(&self, source: &str, set: Option<&str>, by: &str) -> Result<Approval, ApprovalError> {
                let mut tx = self.pool.begin().await.map_err(StoreError::from)?;
                let refused: Option<(Option<String>, Option<i64>)> = sqlx::query_as(
                    "SELECT refused_set, refused_count FROM deletion_guard WHERE source = $1",
                )
                .bind(source)
                .fetch_optional(&mut *tx)
                .await
                .map_err(StoreError::from)?;
                let (Some(refused), deletes) = refused.unwrap_or_default() else {
                    return Err(ApprovalError::NothingRefused(source.to_owned()));
                };
                let deletes = deletes.unwrap_or(0);
                if let Some(given) = set.filter(|given| *given != refused) {
                    return Err(ApprovalError::Changed {
                        source_name: source.to_owned(),
                        refused,
                        deletes,
                        given: given.to_owned(),
                    });
                }
                sqlx::query(
                    "UPDATE deletion_guard SET approved_set = refused_set, approved_by = $1, approved_at = $2 WHERE source = $3",
                )
                .bind(by)
                .bind(Utc::now())
                .bind(source)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from)?;
                tx.commit().await.map_err(StoreError::from)?;
                Ok(Approval {
                    source: source.to_owned(),
                    set: refused,
                    deletes,
                    approved_by: by.to_owned(),
                })
            }

            async fn lock_source(&self, source: &str, mode: LockMode) -> Result<Option<SourceLock>, StoreError> {
                self.take_lock(source, mode).await
            }
        }
    };
}

impl SqliteStore {
    /// A write transaction begun `IMMEDIATE`: SQLite's one writer lock on
    /// the file, so every other writer, in this process or another, waits
    /// until it commits (another process's, up to the busy timeout). This process's sources first queue on a mutex, so
    /// only one of them waits inside SQLite, holding a pooled connection.
    async fn take_lock(
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
    /// read transaction: sqlx's per-row hand-off cost several times the
    /// hashing.
    async fn walk_history(&self, from: chain::Position) -> Result<chain::Report, StoreError> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || sqlite_read::walk_history(&path, from))
            .await
            .map_err(load_stopped)?
    }

    /// SQLite writes one transaction at a time already.
    async fn lock_history(_conn: &mut sqlx::SqliteConnection) -> Result<(), StoreError> {
        Ok(())
    }

    fn locked(lock: &mut SourceLock) -> Result<&mut sqlx::SqliteConnection, StoreError> {
        match &mut lock.held {
            Held::Sqlite(tx, _) => Ok(&mut *tx),
            _ => Err(StoreError::ForeignLock),
        }
    }
}

/// Whether every migration accord embeds is applied, so a role that may
/// not change the schema connects without trying to.
async fn schema_is_current<DB: sqlx::Database>(
    pool: &sqlx::Pool<DB>,
    migrator: &sqlx::migrate::Migrator,
) -> bool
where
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'a> <DB as sqlx::Database>::Arguments: sqlx::IntoArguments<DB>,
    i64: for<'r> sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    (i64,): for<'r> sqlx::FromRow<'r, DB::Row>,
{
    let applied: Result<Vec<(i64,)>, sqlx::Error> =
        sqlx::query_as("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(pool)
            .await;
    let Ok(applied) = applied else {
        return false;
    };
    migrator
        .iter()
        .all(|m| applied.iter().any(|(version,)| *version == m.version))
}

/// How long a SQLite statement waits for another connection's lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

fn is_busy(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(e) if e.code().is_some_and(|c| c == "5" || c == "6"))
}

fn locked(source: &str, waited: Duration) -> StoreError {
    StoreError::Locked {
        source_name: source.to_owned(),
        waited,
    }
}

impl PostgresStore {
    /// A transaction holding the source's advisory lock (released when it
    /// ends), which the apply then writes in: replicas and CLI runs of one
    /// source take turns, while different sources apply side by side.
    async fn take_lock(
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

    /// Held until the apply commits: transactions of different sources
    /// append to the history one after the other.
    async fn lock_history(conn: &mut sqlx::PgConnection) -> Result<(), StoreError> {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(lock_key("accord history"))
            .execute(conn)
            .await?;
        Ok(())
    }

    /// Streams both tables of the history, in one snapshot, into a walk.
    async fn walk_history(&self, from: chain::Position) -> Result<chain::Report, StoreError> {
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

    fn locked(lock: &mut SourceLock) -> Result<&mut sqlx::PgConnection, StoreError> {
        match &mut lock.held {
            Held::Postgres(tx) => Ok(&mut *tx),
            _ => Err(StoreError::ForeignLock),
        }
    }
}

type OrgSwitchRow = (String, String, bool, Option<String>);

fn switches(rows: Vec<OrgSwitchRow>) -> Vec<OrgSwitch> {
    rows.into_iter()
        .map(|(app, slug, gitops, managed_by)| OrgSwitch {
            app,
            slug,
            gitops,
            managed_by,
        })
        .collect()
}

/// A read's blocking task that panicked or was cancelled.
fn load_stopped(error: tokio::task::JoinError) -> StoreError {
    StoreError::Stopped(error)
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

sql_store!(SqliteStore, sqlx::Sqlite, 32_000usize, bulk::sqlite);
sql_store!(PostgresStore, sqlx::Postgres, 65_000usize, bulk::postgres);
