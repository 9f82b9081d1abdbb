//! The SQL behind both stores. The statements are portable between SQLite and
//! PostgreSQL; a macro stamps the one implementation out for each backend's
//! concrete types, so there is one copy of the SQL to read and review.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::QueryBuilder;

use super::{
    lock_key, redact, ApplyRequest, AuditAction, AuditEntry, AuditQuery, DriftPolicy, OrgSwitch,
    SourceLock, Store, StoreError, SyncRecord,
};
use super::rows::{self, EnrollmentRow, ManagedRow, MemberRow, OrgRow, PermitRow};
use crate::model::{Key, Kind, Object};
use crate::plan::{Action, Change, LiveState};

pub struct SqliteStore {
    pool: SqlitePool,
}

pub struct PostgresStore {
    pool: PgPool,
}

impl SqliteStore {
    pub async fn connect(url: &str) -> Result<SqliteStore, StoreError> {
        let connect_error = |source| StoreError::Connect {
            url: redact(url),
            source,
        };
        let options = SqliteConnectOptions::from_str(url)
            .map_err(connect_error)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(30));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(connect_error)?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(SqliteStore { pool })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

impl PostgresStore {
    pub async fn connect(url: &str) -> Result<PostgresStore, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await
            .map_err(|source| StoreError::Connect {
                url: redact(url),
                source,
            })?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(PostgresStore { pool })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// One audit row, rendered before the transaction starts so that it stays short.
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
            AuditAction::Create | AuditAction::Update | AuditAction::Delete => author
                .map(String::as_str)
                .or(request.change_author)
                .unwrap_or(request.actor),
            AuditAction::DriftCorrected | AuditAction::DriftDetected => request.actor,
        }
    }

    fn new(action: AuditAction, change: &'a Change) -> AuditRow<'a> {
        let json = |o: &Option<Object>| o.as_ref().map(|o| o.to_json().to_string());
        AuditRow {
            action,
            change,
            before: json(&change.before),
            after: json(&change.after),
            diff: change.diff(),
        }
    }
}

/// What a plan writes, sorted out once for both backends.
#[derive(Default)]
struct Writes<'a> {
    /// Objects to insert or overwrite, with their content hashes.
    upserts: Vec<(&'a Object, String)>,
    deletes: Vec<&'a Key>,
    /// The changes whose objects are written (creates, updates, corrected drift).
    declared: Vec<&'a Change>,
    /// Drift reported (not corrected) for the first time.
    reported: Vec<&'a Change>,
    audit: Vec<AuditRow<'a>>,
}

impl<'a> Writes<'a> {
    fn sort_out(request: &ApplyRequest<'a>) -> Writes<'a> {
        let mut w = Writes::default();
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
                        w.upserts.push((after, after.content_hash()));
                        w.declared.push(change);
                    }
                }
            }
            w.audit.push(AuditRow::new(audit_action, change));
        }
        w
    }

    fn of_kind(&self, kind: Kind) -> impl Iterator<Item = &(&'a Object, String)> {
        self.upserts.iter().filter(move |(o, _)| o.kind() == kind)
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
);

macro_rules! sql_store {
    ($store:ident, $db:ty, $bind_limit:expr) => {
        impl $store {
            /// Runs `INSERT … VALUES (…), (…) <suffix>` in chunks that stay under
            /// the backend's bind-parameter limit: bulk, never a round trip per row.
            async fn insert_many<T>(
                conn: &mut <$db as sqlx::Database>::Connection,
                head: &str,
                columns: usize,
                rows: &[T],
                suffix: &str,
                mut bind: impl FnMut(&mut sqlx::query_builder::Separated<'_, $db, &'static str>, &T),
            ) -> Result<(), StoreError> {
                for chunk in rows.chunks(($bind_limit / columns).max(1)) {
                    let mut qb = QueryBuilder::<$db>::new(head);
                    qb.push_values(chunk, |mut b, row| bind(&mut b, row));
                    qb.push(suffix);
                    qb.build().persistent(false).execute(&mut *conn).await?;
                }
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
                // One transaction, so the five reads see one snapshot.
                let mut tx = self.pool.begin().await?;
                let orgs: Vec<OrgRow> = sqlx::query_as(
                    "SELECT app, slug, name, monthly_tokens, allowed_models, gitops, managed_by, applied_hash FROM organizations",
                )
                .fetch_all(&mut *tx)
                .await?;
                let members: Vec<MemberRow> = sqlx::query_as(
                    "SELECT app, org_slug, user_id, contact_id, role, token_limit FROM organization_members",
                )
                .fetch_all(&mut *tx)
                .await?;
                let permits: Vec<PermitRow> = sqlx::query_as(
                    "SELECT app, id, permission_id, slugs, roles, managed_by, applied_hash FROM permits",
                )
                .fetch_all(&mut *tx)
                .await?;
                let enrollments: Vec<EnrollmentRow> = sqlx::query_as(
                    "SELECT app, id, role, user_id, contact_id, managed_by, applied_hash FROM enrollments",
                )
                .fetch_all(&mut *tx)
                .await?;
                let managed: Vec<ManagedRow> = match source {
                    Some(source) => {
                        QueryBuilder::<$db>::new(
                            "SELECT kind, app, object_id, reported_hash, declared_in FROM managed_objects WHERE source = ",
                        )
                        .push_bind(source)
                        .build_query_as()
                        .fetch_all(&mut *tx)
                        .await?
                    }
                    None => Vec::new(),
                };
                tx.commit().await?;
                Ok(rows::assemble(orgs, members, permits, enrollments, managed))
            }

            #[tracing::instrument(skip_all, fields(source = %request.source, revision = %request.revision))]
            async fn apply(&self, request: ApplyRequest<'_>) -> Result<SyncRecord, StoreError> {
                let started_at = Utc::now();
                let writes = Writes::sort_out(&request);
                let source = request.source;
                let now = Utc::now();
                let mut tx = self.pool.begin().await?;
                let conn: &mut <$db as sqlx::Database>::Connection = &mut tx;

                // Rows first: organizations (with their members), permits, enrollments.
                let orgs: Vec<_> = writes.of_kind(Kind::Organization).collect();
                Self::insert_many(
                    conn,
                    "INSERT INTO organizations (app, slug, name, monthly_tokens, allowed_models, managed_by, applied_hash, updated_at) ",
                    8,
                    &orgs,
                    " ON CONFLICT (app, slug) DO UPDATE SET name = excluded.name, monthly_tokens = excluded.monthly_tokens, allowed_models = excluded.allowed_models, managed_by = excluded.managed_by, applied_hash = excluded.applied_hash, updated_at = excluded.updated_at",
                    |b, (object, hash)| {
                        if let Object::Organization(o) = object {
                            b.push_bind(o.app.as_str())
                                .push_bind(o.slug.as_str())
                                .push_bind(o.name.as_deref())
                                .push_bind(o.budget.as_ref().map(|b| tokens(b.monthly_tokens)))
                                .push_bind(rows::list_to_json(&o.allowed_models))
                                .push_bind(source)
                                .push_bind(hash.as_str())
                                .push_bind(now);
                        }
                    },
                )
                .await?;
                let upserted_orgs: Vec<Key> = orgs.iter().map(|(o, _)| o.key()).collect();
                let deleted_orgs = writes.deletes.iter().copied().filter(|k| k.kind == Kind::Organization);
                let member_groups = group_keys(upserted_orgs.iter().chain(deleted_orgs));
                Self::delete_keys(conn, &member_groups, |qb, _| {
                    qb.push("organization_members WHERE TRUE");
                    "org_slug"
                })
                .await?;
                let members: Vec<(&str, &str, &crate::model::Member)> = orgs
                    .iter()
                    .filter_map(|(object, _)| match object {
                        Object::Organization(o) => Some(o),
                        _ => None,
                    })
                    .flat_map(|o| o.members.iter().map(move |m| (o.app.as_str(), o.slug.as_str(), m)))
                    .collect();
                Self::insert_many(
                    conn,
                    "INSERT INTO organization_members (app, org_slug, user_id, contact_id, role, token_limit) ",
                    6,
                    &members,
                    "",
                    |b, (app, slug, m)| {
                        b.push_bind(*app)
                            .push_bind(*slug)
                            .push_bind(m.user_id.as_deref())
                            .push_bind(m.contact_id.as_deref())
                            .push_bind(m.role.as_str())
                            .push_bind(m.token_limit.map(tokens));
                    },
                )
                .await?;
                let permits: Vec<_> = writes.of_kind(Kind::Permit).collect();
                Self::insert_many(
                    conn,
                    "INSERT INTO permits (app, id, permission_id, slugs, roles, managed_by, applied_hash, updated_at) ",
                    8,
                    &permits,
                    " ON CONFLICT (app, id) DO UPDATE SET permission_id = excluded.permission_id, slugs = excluded.slugs, roles = excluded.roles, managed_by = excluded.managed_by, applied_hash = excluded.applied_hash, updated_at = excluded.updated_at",
                    |b, (object, hash)| {
                        if let Object::Permit(p) = object {
                            b.push_bind(p.app.as_str())
                                .push_bind(p.id.as_str())
                                .push_bind(p.permission_id.as_str())
                                .push_bind(rows::list_to_json(&p.slugs))
                                .push_bind(rows::list_to_json(&p.roles))
                                .push_bind(source)
                                .push_bind(hash.as_str())
                                .push_bind(now);
                        }
                    },
                )
                .await?;
                let enrollments: Vec<_> = writes.of_kind(Kind::Enrollment).collect();
                Self::insert_many(
                    conn,
                    "INSERT INTO enrollments (app, id, role, user_id, contact_id, managed_by, applied_hash, updated_at) ",
                    8,
                    &enrollments,
                    " ON CONFLICT (app, id) DO UPDATE SET role = excluded.role, user_id = excluded.user_id, contact_id = excluded.contact_id, managed_by = excluded.managed_by, applied_hash = excluded.applied_hash, updated_at = excluded.updated_at",
                    |b, (object, hash)| {
                        if let Object::Enrollment(e) = object {
                            b.push_bind(e.app.as_str())
                                .push_bind(e.id.as_str())
                                .push_bind(e.role.as_str())
                                .push_bind(e.user_id.as_deref())
                                .push_bind(e.contact_id.as_deref())
                                .push_bind(source)
                                .push_bind(hash.as_str())
                                .push_bind(now);
                        }
                    },
                )
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

                // Ownership records.
                // Ownership records: what this source now manages, from which file.
                let mut ledger: Vec<(&Key, Option<&str>, Option<&str>)> = writes
                    .declared
                    .iter()
                    .map(|change| (&change.key, None, change.declared_in.as_deref()))
                    .collect();
                ledger.extend(writes.reported.iter().map(|change| {
                    (
                        &change.key,
                        Some(change.drift_hash.as_deref().unwrap_or_default()),
                        change.declared_in.as_deref(),
                    )
                }));
                Self::insert_many(
                    conn,
                    "INSERT INTO managed_objects (kind, app, object_id, source, reported_hash, declared_in) ",
                    6,
                    &ledger,
                    " ON CONFLICT (kind, app, object_id) DO UPDATE SET source = excluded.source, reported_hash = excluded.reported_hash, declared_in = excluded.declared_in",
                    |b, (key, reported, declared_in)| {
                        b.push_bind(key.kind.as_str())
                            .push_bind(key.app.as_str())
                            .push_bind(key.id.as_str())
                            .push_bind(source)
                            .push_bind(*reported)
                            .push_bind(*declared_in);
                    },
                )
                .await?;
                let forgotten = group_keys(writes.deletes.iter().copied().chain(&request.plan.forget));
                Self::delete_keys(conn, &forgotten, |qb, kind| {
                    qb.push("managed_objects WHERE kind = ").push_bind(kind.as_str());
                    "object_id"
                })
                .await?;

                // The sync record and its audit rows.
                let summary = request.plan.summary();
                let finished_at = Utc::now();
                let outcome = if writes.audit.is_empty() { "unchanged" } else { "applied" };
                let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
                let mut qb = QueryBuilder::<$db>::new(
                    "INSERT INTO sync_runs (source, revision, actor, started_at, finished_at, outcome, created, updated, deleted, drift, conflict, suspended) ",
                );
                qb.push_values([()], |mut b, ()| {
                    b.push_bind(source)
                        .push_bind(request.revision)
                        .push_bind(request.actor)
                        .push_bind(started_at)
                        .push_bind(finished_at)
                        .push_bind(outcome)
                        .push_bind(count(summary.create))
                        .push_bind(count(summary.update))
                        .push_bind(count(summary.delete))
                        .push_bind(count(summary.drift))
                        .push_bind(count(summary.conflict))
                        .push_bind(count(summary.suspended));
                });
                qb.push(" RETURNING id");
                let (sync_id,): (i64,) = qb.build_query_as().fetch_one(&mut *conn).await?;
                Self::insert_many(
                    conn,
                    "INSERT INTO audit_log (at, actor, source, revision, sync_run, action, kind, app, object_id, before, after, diff) ",
                    12,
                    &writes.audit,
                    "",
                    |b, row| {
                        b.push_bind(finished_at)
                            .push_bind(row.actor(&request))
                            .push_bind(source)
                            .push_bind(request.revision)
                            .push_bind(sync_id)
                            .push_bind(row.action.as_str())
                            .push_bind(row.change.key.kind.as_str())
                            .push_bind(row.change.key.app.as_str())
                            .push_bind(row.change.key.id.as_str())
                            .push_bind(row.before.as_deref())
                            .push_bind(row.after.as_deref())
                            .push_bind(row.diff.as_str());
                    },
                )
                .await?;
                tx.commit().await?;
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

            async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
                let mut qb = QueryBuilder::<$db>::new(
                    "SELECT seq, at, actor, source, revision, action, kind, app, object_id, before, after, diff FROM audit_log WHERE 1 = 1",
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
                qb.push(" ORDER BY seq DESC LIMIT ").push_bind(i64::from(query.limit));
                let rows: Vec<AuditTuple> = qb.build_query_as().fetch_all(&self.pool).await?;
                let json = |text: Option<String>| text.and_then(|t| serde_json::from_str(&t).ok());
                Ok(rows
                    .into_iter()
                    .map(|(seq, at, actor, source, revision, action, kind, app, id, before, after, diff)| AuditEntry {
                        seq,
                        at,
                        actor,
                        source,
                        revision,
                        action,
                        kind,
                        app,
                        id,
                        before: json(before),
                        after: json(after),
                        diff,
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

            async fn lock_source(&self, source: &str) -> Result<Option<SourceLock>, StoreError> {
                self.try_lock(lock_key(source)).await
            }
        }
    };
}

impl SqliteStore {
    /// SQLite serves one accord process; its sources are serialized in-process.
    async fn try_lock(&self, _key: i64) -> Result<Option<SourceLock>, StoreError> {
        Ok(Some(SourceLock { held: None }))
    }
}

impl PostgresStore {
    async fn try_lock(&self, key: i64) -> Result<Option<SourceLock>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let (locked,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_lock($1)")
            .bind(key)
            .fetch_one(&mut *conn)
            .await?;
        Ok(locked.then(|| SourceLock {
            held: Some((conn, key)),
        }))
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

sql_store!(SqliteStore, sqlx::Sqlite, 32_000usize);
sql_store!(PostgresStore, sqlx::Postgres, 65_000usize);
