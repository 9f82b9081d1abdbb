//! The SQL behind both stores. The statements are portable between SQLite and
//! PostgreSQL; a macro stamps the one implementation out for each backend's
//! concrete types, so there is one copy of the SQL to read and review.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::QueryBuilder;

use super::bulk::{self, Table};
use super::chain;
use super::postgres::PostgresStore;
use super::rows::{self};
use super::schema::*;
use super::sqlite::SqliteStore;
use super::writes::{group_keys, AuditRow, Writes};
use super::{
    ApplyRequest, Approval, ApprovalError, AuditEntry, AuditQuery, GuardRecord, GuardState,
    LockMode, OrgSwitch, SourceLock, Store, StoreError, SyncRecord,
};
use crate::model::{Enrollment, Key, KeyMap, Kind, Member, Object, Organization, Permit};
use crate::plan::{Action, GuardRefusal, LiveState, RowMap};

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
                    qb.push("ledger WHERE kind = ").push_bind(kind.as_str());
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

sql_store!(SqliteStore, sqlx::Sqlite, 32_000usize, bulk::sqlite);
sql_store!(PostgresStore, sqlx::Postgres, 65_000usize, bulk::postgres);
