//! Applying a plan: the steps both backends take, in one transaction the
//! caller holds, written once over the few primitives each backend gives
//! (`Writer`): bulk writes, a statement, a returned id.

use std::collections::BTreeMap;
use std::future::Future;

use chrono::Utc;

use super::bulk::{Cell, Table};
use super::chain;
use super::rows;
use super::schema::*;
use super::writes::{group_keys, AuditRow, HexHash, Writes};
use super::{ApplyRequest, GuardRecord, StoreError, SyncRecord};
use crate::model::{Enrollment, Key, Kind, Member, Object, Organization, Permit};
use crate::plan::Action;

/// A ledger row: the key, the live hash reported as drift, the declaring file.
type LedgerRow<'a> = (&'a Key, Option<&'a str>, Option<&'a str>);

/// A statement and its bound values, with `$1`, `$2`, … placeholders
/// (which both backends read).
pub(super) struct Sql<'a> {
    pub text: String,
    pub binds: Vec<Cell<'a>>,
    /// For `delete_keys`: the column its ids are matched on.
    column: &'static str,
}

impl<'a> Sql<'a> {
    pub fn new(text: &str) -> Sql<'a> {
        Sql {
            text: text.to_owned(),
            binds: Vec::new(),
            column: "",
        }
    }

    /// Appends a placeholder bound to `value`.
    pub fn bind(&mut self, value: Cell<'a>) -> &mut Self {
        self.binds.push(value);
        self.text.push_str(&format!("${}", self.binds.len()));
        self
    }

    /// Appends `values` as placeholders separated by commas.
    pub fn list(&mut self, values: impl IntoIterator<Item = Cell<'a>>) -> &mut Self {
        for (i, value) in values.into_iter().enumerate() {
            if i > 0 {
                self.text.push_str(", ");
            }
            self.bind(value);
        }
        self
    }

    /// Appends text.
    pub fn then(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    fn with_column(&mut self, column: &'static str) -> Sql<'a> {
        Sql {
            text: std::mem::take(&mut self.text),
            binds: std::mem::take(&mut self.binds),
            column,
        }
    }
}

/// What a backend gives the steps of an apply, on the connection holding
/// the apply's transaction.
pub(super) trait Writer: Send {
    /// The most values one statement may bind.
    const BIND_LIMIT: usize;

    /// Writes `rows` into `table` in bulk, in the backend's fastest form.
    /// Boxed: a future that holds `rows` and `cells` must be `Send` for
    /// every lifetime the rows borrow, which the compiler proves here but
    /// not through an opaque future.
    fn bulk<'a, T: Sync + 'a, const N: usize>(
        &'a mut self,
        table: &'a Table,
        rows: &'a [T],
        cells: impl Fn(&T) -> [Cell<'_>; N] + Send + Sync + 'a,
    ) -> futures::future::BoxFuture<'a, Result<(), StoreError>>;

    fn execute(&mut self, sql: &Sql<'_>) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Runs a statement that returns one `id`.
    fn fetch_id(&mut self, sql: &Sql<'_>) -> impl Future<Output = Result<i64, StoreError>> + Send;

    /// The first column of the first row a query returns, as bytes.
    fn fetch_bytes(
        &mut self,
        query: &'static str,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, StoreError>> + Send;

    /// Holds the history for this transaction: sources apply side by side,
    /// but append to the history one at a time, so each chain has one next
    /// row.
    fn lock_history(&mut self) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Applies `request`'s plan, its audit rows and its sync record through
/// `conn`, whose transaction the caller commits.
pub(super) async fn apply<W: Writer>(
    conn: &mut W,
    request: ApplyRequest<'_>,
) -> Result<SyncRecord, StoreError> {
    let started_at = Utc::now();
    let mut laps = Laps::new(request.source);
    let writes = Writes::sort_out(&request);
    laps.lap("sorted out", writes.audit.len());
    let source = request.source;
    let now = Utc::now();

    // Rows first: organizations (with their members), permits, enrollments.
    let orgs: Vec<((&Organization, &HexHash), bool)> = writes
        .of_kind(Kind::Organization)
        .filter_map(|(o, hash, new)| match o {
            Object::Organization(o) => Some(((o, hash), *new)),
            _ => None,
        })
        .collect();
    write_split(conn, &ORGANIZATIONS, &orgs, |(o, hash)| {
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
    let upserted_orgs: Vec<Key> = orgs
        .iter()
        .map(|((o, _), _)| Key {
            kind: Kind::Organization,
            app: o.app.as_str().into(),
            id: o.slug.as_str().into(),
        })
        .collect();
    let deleted_orgs = writes
        .deletes
        .iter()
        .copied()
        .filter(|k| k.kind == Kind::Organization);
    let member_groups = group_keys(upserted_orgs.iter().chain(deleted_orgs));
    delete_keys(conn, &member_groups, |_| {
        Sql::new("DELETE FROM organization_members WHERE TRUE")
            .then(" AND app = ")
            .with_column("org_slug")
    })
    .await?;
    let members: Vec<(&Organization, &Member)> = orgs
        .iter()
        .flat_map(|((o, _), _)| o.members.iter().map(move |m| (*o, m)))
        .collect();
    conn.bulk(&MEMBERS, &members, |(o, m)| {
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
    let permits: Vec<((&Permit, &HexHash), bool)> = writes
        .of_kind(Kind::Permit)
        .filter_map(|(o, hash, new)| match o {
            Object::Permit(p) => Some(((p, hash), *new)),
            _ => None,
        })
        .collect();
    write_split(conn, &PERMITS, &permits, |(p, hash)| {
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
    laps.lap("permits", permits.len());
    let enrollments: Vec<((&Enrollment, &HexHash), bool)> = writes
        .of_kind(Kind::Enrollment)
        .filter_map(|(o, hash, new)| match o {
            Object::Enrollment(e) => Some(((e, hash), *new)),
            _ => None,
        })
        .collect();
    write_split(conn, &ENROLLMENTS, &enrollments, |(e, hash)| {
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
    laps.lap("enrollments", enrollments.len());

    // Prune: only rows this source manages (or that lost their owner by hand).
    let deletes = group_keys(writes.deletes.iter().copied());
    delete_keys(conn, &deletes, |kind| {
        let (table, column) = table(kind);
        let mut sql = Sql::new(&format!(
            "DELETE FROM {table} WHERE (managed_by IS NULL OR managed_by = "
        ));
        sql.bind(source.into());
        sql.then(") AND app = ").with_column(column)
    })
    .await?;

    // Ownership records: what this source now manages, from which file.
    let mut ledger: Vec<(LedgerRow<'_>, bool)> = writes
        .declared
        .iter()
        .map(|change| {
            let new = change.action == Action::Create;
            ((&change.key, None, change.declared_in.as_deref()), new)
        })
        .collect();
    ledger.extend(writes.reported.iter().map(|change| {
        let reported = change.drift_hash.as_deref().unwrap_or_default();
        (
            (&change.key, Some(reported), change.declared_in.as_deref()),
            false,
        )
    }));
    // In the order of the ledger's primary key, whose `kind` is text
    // (Enrollment, Organization, Permit) where a plan goes by the
    // kinds' own order: index insertions then append instead of
    // splitting pages mid-index. The plan's order within a kind
    // is kept, so this is a merge of a few sorted runs.
    ledger.sort_by(|((a, ..), _), ((b, ..), _)| {
        (a.kind.as_str(), &a.app, &a.id).cmp(&(b.kind.as_str(), &b.app, &b.id))
    });
    write_split(conn, &MANAGED, &ledger, |(key, reported, declared_in)| {
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
    laps.lap("ledger", ledger.len());
    let forgotten = group_keys(writes.deletes.iter().copied().chain(&request.plan.forget));
    delete_keys(conn, &forgotten, |kind| {
        let mut sql = Sql::new("DELETE FROM ledger WHERE kind = ");
        sql.bind(kind.as_str().into());
        sql.then(" AND app = ").with_column("object_id")
    })
    .await?;

    // This source's claims on keys other sources own: replaced whole.
    if request.plan.claims_changed {
        let mut sql = Sql::new("DELETE FROM claims WHERE source = ");
        sql.bind(source.into());
        conn.execute(&sql).await?;
        let claims: Vec<&crate::plan::Change> = request
            .plan
            .changes
            .iter()
            .filter(|c| c.owner.is_some())
            .collect();
        conn.bulk(&CLAIMS.insert_only(), &claims, |c| {
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
    conn.lock_history().await?;
    let (run_head, audit_head) = chain_heads(conn).await?;
    let summary = request.plan.summary();
    let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    let run = chain::SyncRunRow {
        source: source.to_owned(),
        revision: request.revision.to_owned(),
        actor: request.actor.to_owned(),
        started_at: chain::stored_time(started_at),
        finished_at: chain::stored_time(Utc::now()),
        outcome: if writes.audit.is_empty() {
            "unchanged"
        } else {
            "applied"
        }
        .to_owned(),
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
        cause: request.cause.map(str::to_owned),
    };
    let run_hash = run.hash();
    let run_chain = chain::link(&run_head, &run_hash);
    let finished_at = run.finished_at;
    let mut sql = Sql::new(
        "INSERT INTO sync_runs (source, revision, actor, started_at, finished_at, outcome, created, updated, \
         deleted, drift, conflict, suspended, message, audited, row_hash, chain_hash, cause) VALUES (",
    );
    let mut values: Vec<Cell<'_>> = vec![
        run.source.as_str().into(),
        run.revision.as_str().into(),
        run.actor.as_str().into(),
        Cell::Time(run.started_at),
        Cell::Time(run.finished_at),
        run.outcome.as_str().into(),
    ];
    values.extend(run.counts.iter().map(|n| Cell::Int(*n)));
    values.extend([
        run.message.as_str().into(),
        Cell::Int(run.audited),
        chain::stored_row_hash(&run_hash).to_vec().into(),
        run_chain.to_vec().into(),
        run.cause.as_deref().into(),
    ]);
    sql.list(values);
    let sync_id = conn.fetch_id(sql.then(") RETURNING id")).await?;
    record_guard(conn, source, &request.guard, sync_id).await?;
    // Rows are rendered, hashed and linked in order as they are
    // written (the database works on one chunk while the next
    // is rendered).
    let audit_chain = std::sync::Mutex::new(audit_head);
    let at = chain::stamp(&finished_at);
    conn.bulk(&AUDIT_LOG, &writes.audit, |&(action, change)| {
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
    laps.lap("audit log", writes.audit.len());
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

/// Where a write's time goes, for the benchmarks: each step's seconds at
/// debug level under `accord::timing`.
struct Laps<'a> {
    source: &'a str,
    last: std::time::Instant,
}

impl<'a> Laps<'a> {
    fn new(source: &'a str) -> Self {
        Laps {
            source,
            last: std::time::Instant::now(),
        }
    }

    fn lap(&mut self, step: &str, rows: usize) {
        let now = std::time::Instant::now();
        tracing::debug!(
            target: "accord::timing",
            source = self.source,
            step,
            rows,
            seconds = (now - self.last).as_secs_f64(),
            "written"
        );
        self.last = now;
    }
}

/// Writes rows marked new with plain inserts and the others as upserts.
async fn write_split<W: Writer, T: Sync, const N: usize>(
    conn: &mut W,
    table: &Table,
    rows: &[(T, bool)],
    cells: impl Fn(&T) -> [Cell<'_>; N] + Send + Sync,
) -> Result<(), StoreError> {
    let new: Vec<&(T, bool)> = rows.iter().filter(|(_, new)| *new).collect();
    let existing: Vec<&(T, bool)> = rows.iter().filter(|(_, new)| !*new).collect();
    conn.bulk(&table.insert_only(), &new, |row| cells(&row.0))
        .await?;
    conn.bulk(table, &existing, |row| cells(&row.0)).await
}

/// The chain hashes of the newest chained sync run and audit row (or the
/// genesis, before the first).
async fn chain_heads<W: Writer>(conn: &mut W) -> Result<(chain::Hash, chain::Hash), StoreError> {
    let mut heads = [chain::GENESIS; 2];
    let queries = [
        "SELECT chain_hash FROM sync_runs WHERE chain_hash IS NOT NULL ORDER BY id DESC LIMIT 1",
        "SELECT chain_hash FROM audit_log WHERE chain_hash IS NOT NULL ORDER BY seq DESC LIMIT 1",
    ];
    for (head, query) in heads.iter_mut().zip(queries) {
        if let Some(bytes) = conn.fetch_bytes(query).await? {
            *head = chain::parse(&bytes).unwrap_or(chain::GENESIS);
        }
    }
    Ok((heads[0], heads[1]))
}

/// What an apply does to the source's deletion-guard record.
async fn record_guard<W: Writer>(
    conn: &mut W,
    source: &str,
    guard: &GuardRecord,
    sync_id: i64,
) -> Result<(), StoreError> {
    let mut sql = match guard {
        GuardRecord::Held => return Ok(()),
        GuardRecord::Clear => Sql::new(
            "UPDATE deletion_guard SET refused_set = NULL, refused_count = NULL, refused_at = NULL, \
             approved_set = NULL, approved_by = NULL, approved_at = NULL \
             WHERE (refused_set IS NOT NULL OR approved_set IS NOT NULL) AND source = ",
        ),
        GuardRecord::Approved(_) | GuardRecord::Forced => {
            Sql::new("INSERT INTO deletion_guard (source, window_after_run) VALUES (")
        }
    };
    sql.bind(source.into());
    if !matches!(guard, GuardRecord::Clear) {
        sql.then(", ").bind(Cell::Int(sync_id)).then(
            ") ON CONFLICT (source) DO UPDATE SET refused_set = NULL, refused_count = NULL, \
             refused_at = NULL, approved_set = NULL, approved_by = NULL, approved_at = NULL, \
             window_after_run = excluded.window_after_run",
        );
    }
    conn.execute(&sql).await
}

/// Runs `DELETE … AND app = ? AND <column> IN (…)` per (kind, app) group;
/// `head` gives the statement up to ` AND app = ` and the id column.
async fn delete_keys<'k, W: Writer>(
    conn: &mut W,
    groups: &BTreeMap<(Kind, &'k str), Vec<&'k str>>,
    head: impl Fn(Kind) -> Sql<'k> + Send + Sync,
) -> Result<(), StoreError> {
    for ((kind, app), ids) in groups {
        for chunk in ids.chunks(W::BIND_LIMIT - 4) {
            let mut sql = head(*kind);
            let column = sql.column;
            sql.bind((*app).into());
            sql.then(&format!(" AND {column} IN ("));
            sql.list(chunk.iter().map(|id| Cell::Text(id)));
            sql.then(")");
            conn.execute(&sql).await?;
        }
    }
    Ok(())
}
