//! SQLite's side of `Store::load`: every row of a source's scope, read
//! through SQLite's C API on the calling (blocking) thread.
//!
//! sqlx hands each row across a channel from its worker thread with its own
//! copies of every value, which costs more than the read itself. Here the
//! rows' text is borrowed from SQLite and written once, into each row's
//! canonical bytes.

use std::borrow::Cow;
use std::path::Path;
use std::time::Duration;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, Row, ToSql};

use super::chain;
use super::rows::{Assembler, Columns, LiveTable};
use super::StoreError;
use crate::model::Key;
use crate::plan::{LiveState, RowMap};

/// `PRAGMA data_version` on `kept`, the connection opened on first use and
/// kept, because the number means something only on one connection.
pub fn data_version(
    kept: &std::sync::Mutex<Option<Connection>>,
    path: &Path,
) -> Result<u64, StoreError> {
    let mut kept = kept
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if kept.is_none() {
        *kept = Some(open_read_only(path, "the database", false)?);
    }
    let conn = kept.as_ref().expect("opened above");
    let version: i64 = conn
        .query_row("PRAGMA data_version", [], |r| r.get(0))
        .map_err(failed("the database"))?;
    Ok(version as u64)
}

/// Reads the live state in one read transaction, i.e. one snapshot (WAL).
/// `for_plan`: the permits and enrollments exactly as accord last wrote them
/// for `source` come without their content (`Assembler::leave_applied_unread`).
pub fn load(path: &Path, source: Option<&str>, for_plan: bool) -> Result<LiveState, StoreError> {
    let conn = open_snapshot(path)?;
    // The map of rows is sized exactly (cheap); the source's ledger is
    // counted through its index, to tell whether the rows brought it all.
    let (rows, ledger): (i64, i64) = conn
        .query_row(
            "SELECT (SELECT count(*) FROM organizations) + (SELECT count(*) FROM permits) \
             + (SELECT count(*) FROM enrollments), \
             (SELECT count(*) FROM ledger WHERE source = ?1)",
            [source.unwrap_or_default()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(failed("the database"))?;
    let mut live = Assembler::with_capacity(usize::try_from(rows).unwrap_or(0), source.is_some());
    if let (Some(source), true) = (source, for_plan) {
        live = live.for_source(source).leave_applied_unread();
    }
    // The queries' `?1` is the source; without one, rows are read without
    // ledger entries and no query takes a parameter.
    let params: &[&dyn ToSql] = match &source {
        Some(source) => &[source],
        None => &[],
    };
    for table in LiveTable::LOAD_ORDER {
        read_table(
            &conn,
            &mut live,
            table,
            &table.query("?1", source.is_some()),
            params,
        )?;
    }
    if source.is_some() && usize::try_from(ledger).unwrap_or(0) > live.in_ledger() {
        let table = LiveTable::Orphans;
        read_table(&conn, &mut live, table, &table.query("?1", true), params)?;
    }
    conn.execute_batch("COMMIT")
        .map_err(failed("the database"))?;
    Ok(live.finish())
}

/// The rows of `keys` (those that exist), whole and without ledger
/// entries, in one snapshot: each kind's keys go to its query as one JSON
/// array of `[app, id]` pairs, which the table's primary key finds.
pub fn load_keyed(path: &Path, keys: &[Key]) -> Result<RowMap, StoreError> {
    let conn = open_snapshot(path)?;
    let mut live = Assembler::with_capacity(keys.len(), false);
    for (table, json) in super::keys_by_table(keys)? {
        let params: &[&dyn ToSql] = &[&json];
        if table == LiveTable::Organizations {
            let members = LiveTable::Members;
            read_table(&conn, &mut live, members, &members.keyed_sqlite(), params)?;
        }
        read_table(&conn, &mut live, table, &table.keyed_sqlite(), params)?;
    }
    conn.execute_batch("COMMIT")
        .map_err(failed("the database"))?;
    Ok(live.finish().rows)
}

/// A connection in a read transaction, so every query sees one snapshot.
fn open_snapshot(path: &Path) -> Result<Connection, StoreError> {
    open_read_only(path, "the database", true)
}

/// A connection that only reads, waiting out a writer's lock; in a read
/// transaction (one snapshot) when `begin`. Errors name `what` it reads.
fn open_read_only(path: &Path, what: &str, begin: bool) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        // The file exists: the store created it and ran the migrations.
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(failed(what))?;
    let setup = if begin {
        "PRAGMA query_only = 1; BEGIN"
    } else {
        "PRAGMA query_only = 1"
    };
    conn.busy_timeout(Duration::from_secs(30))
        .and_then(|()| conn.execute_batch(setup))
        .map_err(failed(what))?;
    Ok(conn)
}

/// Runs `sql` and adds its rows to `live` as rows of `table`.
fn read_table(
    conn: &Connection,
    live: &mut Assembler,
    table: LiveTable,
    sql: &str,
    params: &[&dyn ToSql],
) -> Result<(), StoreError> {
    let mut read = || -> Result<(), String> {
        let mut statement = conn.prepare(sql).map_err(|e| e.to_string())?;
        // Parameters the query does not use are left unbound.
        let used = params.len().min(statement.parameter_count());
        let mut rows = statement
            .query(&params[..used])
            .map_err(|e| e.to_string())?;
        while let Some(row) = rows.next().map_err(|e| e.to_string())? {
            live.add(table, &SqliteColumns(row))?;
        }
        Ok(())
    };
    read().map_err(|message| StoreError::Decode {
        table: table.name().to_owned(),
        message,
    })
}

fn failed(table: &str) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |e| StoreError::Decode {
        table: table.to_owned(),
        message: e.to_string(),
    }
}

struct SqliteColumns<'r, 's>(&'r Row<'s>);

/// SQLite keeps what a hand edit stores in a text column as it was given
/// (bytes stay a BLOB); anything is read as text, so it shows up as drift
/// rather than stopping every sync.
impl Columns for SqliteColumns<'_, '_> {
    fn optional(&self, column: usize) -> Result<Option<Cow<'_, str>>, String> {
        let value = self.0.get_ref(column).map_err(|e| e.to_string())?;
        Ok(match value {
            ValueRef::Null => None,
            ValueRef::Text(bytes) | ValueRef::Blob(bytes) => {
                Some(match std::str::from_utf8(bytes) {
                    Ok(text) => Cow::Borrowed(text),
                    // Checked again, slowly, only for the rare row that is not UTF-8.
                    Err(_) => String::from_utf8_lossy(bytes),
                })
            }
            ValueRef::Integer(n) => Some(Cow::Owned(n.to_string())),
            ValueRef::Real(x) => Some(Cow::Owned(x.to_string())),
        })
    }

    fn integer(&self, column: usize) -> Result<Option<i64>, String> {
        self.0
            .get(column)
            .map_err(|e| format!("column {}: {e}", column + 1))
    }
}

/// Walks the history's hash chain from `from`, both tables in one read
/// transaction (one snapshot).
pub fn walk_history(path: &Path, from: chain::Position) -> Result<chain::Report, StoreError> {
    let fail = failed("the history");
    let conn = open_read_only(path, "the history", true)?;
    let legacy: Vec<(String, i64)> = conn
        .prepare("SELECT name, legacy_through FROM audit_chain")
        .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
        .map_err(&fail)?;
    let mut walk = chain::Walk::new(from, &legacy);
    let (first_run, first_seq) = walk.starts();
    let time = |row: &Row<'_>, column: usize| -> rusqlite::Result<chrono::DateTime<chrono::Utc>> {
        let text: String = row.get(column)?;
        chrono::DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&chrono::Utc))
            .map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(
                    column,
                    rusqlite::types::Type::Text,
                    Box::new(e),
                )
            })
    };
    {
        let mut statement = conn
            .prepare(&chain::SYNC_RUNS_QUERY.replace("$1", "?1"))
            .map_err(&fail)?;
        let mut rows = statement.query([first_run]).map_err(&fail)?;
        while let Some(row) = rows.next().map_err(&fail)? {
            let read = || -> rusqlite::Result<_> {
                let audited: Option<i64> = row.get(14)?;
                let content = chain::SyncRunRow {
                    source: row.get(1)?,
                    revision: row.get(2)?,
                    actor: row.get(3)?,
                    started_at: time(row, 4)?,
                    finished_at: time(row, 5)?,
                    outcome: row.get(6)?,
                    counts: [
                        row.get(7)?,
                        row.get(8)?,
                        row.get(9)?,
                        row.get(10)?,
                        row.get(11)?,
                        row.get(12)?,
                    ],
                    message: row.get(13)?,
                    audited: audited.unwrap_or(-1),
                    cause: row.get(17)?,
                };
                let hash = |i: usize| -> rusqlite::Result<Option<Vec<u8>>> {
                    Ok(match row.get_ref(i)? {
                        ValueRef::Null => None,
                        ValueRef::Blob(bytes) | ValueRef::Text(bytes) => Some(bytes.to_vec()),
                        // Anything else was not written by accord: it cannot match.
                        _ => Some(Vec::new()),
                    })
                };
                Ok((
                    row.get::<_, i64>(0)?,
                    content,
                    audited,
                    (hash(15)?, hash(16)?),
                ))
            };
            let (id, content, audited, (row_hash, chain_hash)) = read().map_err(&fail)?;
            if !walk.sync_run(
                id,
                &content,
                audited,
                row_hash.as_deref(),
                chain_hash.as_deref(),
            ) {
                break;
            }
        }
    }
    if walk.wants_audit_rows() {
        let mut statement = conn
            .prepare(&chain::AUDIT_ROWS_QUERY.replace("$1", "?1"))
            .map_err(&fail)?;
        let mut rows = statement.query([first_seq]).map_err(&fail)?;
        while let Some(row) = rows.next().map_err(&fail)? {
            let at = chain::stamp(&time(row, 1).map_err(&fail)?);
            let columns = SqliteColumns(row);
            let text = |i: usize| {
                columns.optional(i).map_err(|message| StoreError::Decode {
                    table: "audit_log".into(),
                    message,
                })
            };
            let (actor, source, revision) = (text(2)?, text(3)?, text(4)?);
            let (action, kind, app, object_id) = (text(6)?, text(7)?, text(8)?, text(9)?);
            let (before, after, diff, origin) = (text(10)?, text(11)?, text(12)?, text(13)?);
            let content = chain::AuditRowContent {
                at: &at,
                actor: actor.as_deref().unwrap_or_default(),
                source: source.as_deref().unwrap_or_default(),
                revision: revision.as_deref().unwrap_or_default(),
                sync_run: row.get(5).map_err(&fail)?,
                action: action.as_deref().unwrap_or_default(),
                kind: kind.as_deref().unwrap_or_default(),
                app: app.as_deref().unwrap_or_default(),
                object_id: object_id.as_deref().unwrap_or_default(),
                before: before.as_deref(),
                after: after.as_deref(),
                diff: diff.as_deref().unwrap_or_default(),
                origin: origin.as_deref(),
            };
            let seq: i64 = row.get(0).map_err(&fail)?;
            let hash = |i: usize| -> Result<Option<&[u8]>, StoreError> {
                match row.get_ref(i).map_err(&fail)? {
                    ValueRef::Null => Ok(None),
                    ValueRef::Blob(bytes) | ValueRef::Text(bytes) => Ok(Some(bytes)),
                    // Anything else was not written by accord: it cannot match.
                    _ => Ok(Some(&[])),
                }
            };
            if !walk.audit_row(seq, &content, hash(14)?, hash(15)?) {
                break;
            }
        }
    }
    conn.execute_batch("COMMIT").map_err(&fail)?;
    Ok(walk.finish())
}
