//! The SQL both stores share: reads and small writes, the same statements
//! on SQLite and PostgreSQL. A macro stamps them out for each backend's
//! concrete types; applying a plan, the long part, is a generic function
//! (`apply`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::QueryBuilder;

use super::chain;
use super::postgres::PostgresStore;
use super::sqlite::SqliteStore;
use super::{
    ApplyRequest, Approval, ApprovalError, AuditEntry, AuditQuery, GuardState, LockMode, OrgSwitch,
    Read, RunQuery, SourceLock, Store, StoreError, SyncRecord, SyncRun,
};
use crate::model::{Key, KeyMap, Kind};
use crate::plan::{GuardRefusal, LiveState, RowMap, Summary};

/// The columns of an `AuditTuple`.
const AUDIT_COLUMNS: &str = "seq, at, actor, source, revision, action, kind, app, object_id, \
                             before, after, diff, origin, sync_run";

/// An audit row as read, and the sync run that wrote it.
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
    i64,
);

/// A `sync_runs` row: id, revision, actor, started and finished at,
/// outcome, the six counts, message, audited.
type RunTuple = (
    i64,
    String,
    String,
    DateTime<Utc>,
    DateTime<Utc>,
    String,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    String,
    Option<i64>,
    Option<String>,
);

macro_rules! sql_store {
    ($store:ident, $db:ty, $bind_limit:expr) => {
        impl $store {
            /// Narrows a query of `source`'s audit rows of run `oldest` and
            /// later to the rows after those of its older runs. audit_log
            /// has no index on `sync_run`, but a source's syncs are applied
            /// one at a time, so its rows are in the order of its runs: the
            /// newest row of an older run, found walking `audit_log_by_source`
            /// down from the top, bounds that walk for the rows wanted.
            fn after_older_runs(qb: &mut QueryBuilder<$db>, source: &str, oldest: i64) {
                qb.push(" AND seq > COALESCE((SELECT seq FROM audit_log WHERE source = ")
                    .push_bind(source)
                    .push(" AND sync_run < ")
                    .push_bind(oldest)
                    .push(" ORDER BY seq DESC LIMIT 1), 0)");
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

            async fn change_mark(&self) -> Result<Option<u64>, StoreError> {
                self.read_change_mark().await.map(Some)
            }

            #[tracing::instrument(skip_all, fields(rows = keys.len()))]
            async fn read_rows(&self, keys: &[Key]) -> Result<RowMap, StoreError> {
                self.read_keyed(keys).await
            }

            #[tracing::instrument(skip_all, fields(source = %request.source, revision = %request.revision))]
            async fn apply(&self, lock: SourceLock, request: ApplyRequest<'_>) -> Result<SyncRecord, StoreError> {
                // The writes go into the lock's own transaction, which
                // `finish` commits (no savepoint: SQLite would journal it).
                let mut lock = lock;
                let record = super::apply::apply(Self::locked(&mut lock)?, request).await?;
                lock.finish().await?;
                Ok(record)
            }

            async fn verify_chain(&self, from: chain::Position) -> Result<chain::Report, StoreError> {
                self.walk_history(from).await
            }

            async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
                let mut qb = Self::read_sql("", &Read::Audit(query));
                let rows: Vec<AuditTuple> = qb.build_query_as().fetch_all(&self.pool).await?;
                Ok(rows.into_iter().map(entry).collect())
            }

            async fn sync_runs(&self, query: &RunQuery) -> Result<Vec<SyncRun>, StoreError> {
                let source = query.source.as_str();
                let mut qb = QueryBuilder::<$db>::new(
                    "SELECT id, revision, actor, started_at, finished_at, outcome, created, updated, \
                     deleted, drift, conflict, suspended, message, audited, cause FROM sync_runs WHERE source = ",
                );
                qb.push_bind(source);
                if let Some(before) = query.before {
                    qb.push(" AND id < ").push_bind(before);
                }
                qb.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from(query.limit));
                let rows: Vec<RunTuple> = qb.build_query_as().fetch_all(&self.pool).await?;
                let mut runs: Vec<SyncRun> = rows.into_iter().map(|row| run(source, row)).collect();
                let (Some(newest), Some(oldest)) = (runs.first(), runs.last()) else {
                    return Ok(runs);
                };
                if query.changes == 0 {
                    return Ok(runs);
                }
                // The newest rows of each run, all runs in one query.
                let (newest, oldest) = (newest.id, oldest.id);
                let mut qb = QueryBuilder::<$db>::new("SELECT ");
                qb.push(AUDIT_COLUMNS)
                    .push(" FROM (SELECT ")
                    .push(AUDIT_COLUMNS)
                    .push(", ROW_NUMBER() OVER (PARTITION BY sync_run ORDER BY seq DESC) AS nth \
                           FROM audit_log WHERE source = ")
                    .push_bind(source)
                    .push(" AND sync_run >= ")
                    .push_bind(oldest)
                    .push(" AND sync_run <= ")
                    .push_bind(newest);
                Self::after_older_runs(&mut qb, source, oldest);
                qb.push(") numbered WHERE nth <= ")
                    .push_bind(i64::from(query.changes))
                    .push(" ORDER BY seq DESC");
                let rows: Vec<AuditTuple> = qb.build_query_as().fetch_all(&self.pool).await?;
                for row in rows {
                    // Runs are sorted newest (highest id) first.
                    let sync_run = row.13;
                    if let Ok(at) = runs.binary_search_by(|r| sync_run.cmp(&r.id)) {
                        runs[at].changes.push(entry(row));
                    }
                }
                Ok(runs)
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

            async fn organizations(&self, after: Option<(&str, &str)>, limit: u32) -> Result<Vec<OrgSwitch>, StoreError> {
                let mut qb = Self::read_sql("", &Read::Organizations { after, limit });
                let rows: Vec<OrgSwitchRow> = qb.build_query_as().fetch_all(&self.pool).await?;
                Ok(switches(rows))
            }

            async fn gitops(&self, slug: &str, app: Option<&str>) -> Result<Vec<OrgSwitch>, StoreError> {
                let mut qb = Self::read_sql("", &Read::Organization { slug, app });
                let rows: Vec<OrgSwitchRow> = qb.build_query_as().fetch_all(&self.pool).await?;
                Ok(switches(rows))
            }

            async fn owners(&self, keys: &[&Key]) -> Result<KeyMap<(String, Option<String>)>, StoreError> {
                let mut owners = KeyMap::default();
                let wanted: std::collections::HashSet<&Key> = keys.iter().copied().collect();
                for chunk in keys.chunks($bind_limit / 2) {
                    let mut qb = QueryBuilder::<$db>::new(
                        "SELECT kind, app, object_id, source, declared_in FROM ledger WHERE object_id IN (",
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

        impl $store {
            /// The SQL of a page's read, after `prefix` (`EXPLAIN`, for
            /// `AnyStore::query_plan`): the statement the page runs, exactly.
            fn read_sql(prefix: &str, read: &Read<'_>) -> QueryBuilder<$db> {
                let mut qb = QueryBuilder::<$db>::new(prefix);
                match *read {
                    Read::Audit(query) => {
                        qb.push("SELECT ").push(AUDIT_COLUMNS).push(" FROM audit_log WHERE 1 = 1");
                        if let Some(source) = &query.source {
                            qb.push(" AND source = ").push_bind(source.as_str());
                        }
                        if let Some(kind) = query.kind {
                            qb.push(" AND kind = ").push_bind(kind.as_str());
                        }
                        if let Some(seq) = query.seq {
                            qb.push(" AND seq = ").push_bind(seq);
                        }
                        if let Some(before) = query.before {
                            qb.push(" AND seq < ").push_bind(before);
                        }
                        if let Some(run) = query.run {
                            qb.push(" AND sync_run = ").push_bind(run);
                            if let Some(source) = &query.source {
                                Self::after_older_runs(&mut qb, source, run);
                            }
                        }
                        // A time range is also a range of `seq`, found by
                        // a probe of the time index at each end, so the rows
                        // are read by key however far back the range lies.
                        // Times rise with `seq` only as far as the clocks of
                        // the processes that wrote them agree: each bound is
                        // taken `CLOCK_SLACK` beyond the range, and holds
                        // while no row is written more than that earlier
                        // than one before it.
                        if let Some(since) = query.since {
                            qb.push(" AND at >= ").push_bind(since);
                            qb.push(" AND seq > COALESCE((SELECT seq FROM audit_log WHERE at < ")
                                .push_bind(since - CLOCK_SLACK)
                                .push(" ORDER BY at DESC, seq DESC LIMIT 1), 0)");
                        }
                        if let Some(until) = query.until {
                            qb.push(" AND at < ").push_bind(until);
                            qb.push(" AND seq < COALESCE((SELECT seq FROM audit_log WHERE at >= ")
                                .push_bind(until + CLOCK_SLACK)
                                .push(" ORDER BY at, seq LIMIT 1), ")
                                .push_bind(i64::MAX)
                                .push(")");
                        }
                        for (column, value) in [
                            ("app", &query.app),
                            ("object_id", &query.id),
                            ("actor", &query.actor),
                            ("action", &query.action),
                        ] {
                            if let Some(value) = value {
                                qb.push(" AND ").push(column).push(" = ").push_bind(value.as_str());
                            }
                        }
                        qb.push(" ORDER BY seq DESC LIMIT ").push_bind(i64::from(query.limit));
                    }
                    Read::Organizations { after, limit } => {
                        qb.push("SELECT app, slug, gitops, managed_by FROM organizations");
                        if let Some((app, slug)) = after {
                            qb.push(" WHERE (app, slug) > (").push_bind(app).push(", ").push_bind(slug).push(")");
                        }
                        qb.push(" ORDER BY app, slug LIMIT ").push_bind(i64::from(limit));
                    }
                    Read::Organization { slug, app } => {
                        qb.push("SELECT app, slug, gitops, managed_by FROM organizations WHERE slug = ").push_bind(slug);
                        if let Some(app) = app {
                            qb.push(" AND app = ").push_bind(app);
                        }
                        qb.push(" ORDER BY app");
                    }
                }
                qb
            }
        }
    };
}

/// Whether every migration accord embeds is applied, so a role that may
/// not change the schema connects without trying to.
pub(super) async fn schema_is_current<DB: sqlx::Database>(
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

pub(super) fn locked(source: &str, waited: Duration) -> StoreError {
    StoreError::Locked {
        source_name: source.to_owned(),
        waited,
    }
}

/// An audit row as read; its diff made from before and after when the
/// row has none.
fn entry(
    (seq, at, actor, source, revision, action, kind, app, id, before, after, diff, origin, _): AuditTuple,
) -> AuditEntry {
    let json = |text: Option<String>| text.and_then(|t| serde_json::from_str(&t).ok());
    let (before, after) = (json(before), json(after));
    let diff = if diff.is_empty() {
        crate::model::render::value_diff(before.as_ref(), after.as_ref())
    } else {
        diff
    };
    AuditEntry {
        seq,
        at,
        actor,
        source,
        revision,
        action,
        kind,
        app,
        id,
        before,
        after,
        diff,
        origin,
    }
}

/// A `sync_runs` row of `source`, its changes not read yet.
fn run(source: &str, row: RunTuple) -> SyncRun {
    let (
        id,
        revision,
        actor,
        started_at,
        finished_at,
        outcome,
        created,
        updated,
        deleted,
        drift,
        conflict,
        suspended,
        message,
        audited,
        cause,
    ) = row;
    let count = |n: i64| usize::try_from(n).unwrap_or(0);
    SyncRun {
        id,
        source: source.to_owned(),
        revision,
        actor,
        started_at,
        finished_at,
        outcome,
        summary: Summary {
            create: count(created),
            update: count(updated),
            delete: count(deleted),
            drift: count(drift),
            conflict: count(conflict),
            suspended: count(suspended),
        },
        message,
        audited,
        cause,
        changes: Vec::new(),
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
pub(super) fn load_stopped(error: tokio::task::JoinError) -> StoreError {
    StoreError::Stopped(error)
}

/// How far the clocks of the processes writing the history may disagree
/// (or one be set back) for a time range to find every row in it.
const CLOCK_SLACK: chrono::Duration = chrono::Duration::hours(1);

impl SqliteStore {
    /// The plan SQLite makes for `read` (`EXPLAIN QUERY PLAN`), a line a step.
    pub async fn query_plan(&self, read: &Read<'_>) -> Result<String, StoreError> {
        let rows: Vec<(i64, i64, i64, String)> = Self::read_sql("EXPLAIN QUERY PLAN ", read)
            .build_query_as()
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .into_iter()
            .map(|(.., step)| step)
            .collect::<Vec<_>>()
            .join("\n"))
    }
}

impl PostgresStore {
    /// The plan PostgreSQL makes for `read` (`EXPLAIN`), as it prints it.
    pub async fn query_plan(&self, read: &Read<'_>) -> Result<String, StoreError> {
        let rows: Vec<(String,)> = Self::read_sql("EXPLAIN ", read)
            .build_query_as()
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .into_iter()
            .map(|(line,)| line)
            .collect::<Vec<_>>()
            .join("\n"))
    }
}

sql_store!(SqliteStore, sqlx::Sqlite, 32_000usize);
sql_store!(PostgresStore, sqlx::Postgres, 65_000usize);
