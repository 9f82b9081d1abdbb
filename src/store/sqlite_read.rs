//! SQLite's side of `Store::load`: every row of a source's scope, read
//! through SQLite's C API on the calling (blocking) thread.
//!
//! sqlx hands each row across a channel from its worker thread with its own
//! copies of every value, which for 100k rows cost several times the read
//! itself; having SQLite build one JSON value instead still spent more time
//! writing and parsing JSON than reading. Here the rows' text is borrowed
//! from SQLite and written once, into each row's canonical bytes.

use std::borrow::Cow;
use std::path::Path;
use std::time::Duration;

use rusqlite::types::{Type, ValueRef};
use rusqlite::{Connection, OpenFlags, Row, ToSql};

use super::rows::Assembler;
use super::StoreError;
use crate::plan::LiveState;

/// Reads the live state in one read transaction, i.e. one snapshot (WAL).
pub fn load(path: &Path, source: Option<&str>) -> Result<LiveState, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        // The file exists: the store created it and ran the migrations.
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(failed("the database"))?;
    conn.busy_timeout(Duration::from_secs(30))
        .and_then(|()| conn.execute_batch("PRAGMA query_only = 1; BEGIN"))
        .map_err(failed("the database"))?;
    let params: &[&dyn ToSql] = match &source {
        Some(source) => &[source],
        None => &[],
    };

    let (rows, ledger): (i64, i64) = conn
        .query_row(
            &format!(
                "SELECT (SELECT count(*) FROM organizations) + (SELECT count(*) FROM permits) \
                 + (SELECT count(*) FROM enrollments), (SELECT count(*) FROM managed_objects{})",
                if source.is_some() {
                    " WHERE source = ?1"
                } else {
                    " WHERE 0"
                }
            ),
            params,
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(failed("the database"))?;
    let mut live = Assembler::with_capacity(
        usize::try_from(rows).unwrap_or(0),
        usize::try_from(ledger).unwrap_or(0),
    );

    each(
        &conn,
        "organization_members",
        "SELECT app, org_slug, user_id, contact_id, role, token_limit FROM organization_members",
        &[],
        |r| {
            live.member((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ));
            Ok(())
        },
    )?;
    each(
        &conn,
        "organizations",
        "SELECT app, slug, name, monthly_tokens, allowed_models, \
         CASE WHEN gitops THEN 1 ELSE 0 END, managed_by, applied_hash FROM organizations",
        &[],
        |r| {
            live.organization((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get::<_, i64>(5)? != 0,
                r.get(6)?,
                r.get(7)?,
            ));
            Ok(())
        },
    )?;
    each(
        &conn,
        "permits",
        "SELECT app, id, permission_id, slugs, roles, managed_by, applied_hash FROM permits",
        &[],
        |r| {
            live.permit(
                &text(r, 0)?,
                &text(r, 1)?,
                &text(r, 2)?,
                &text(r, 3)?,
                &text(r, 4)?,
                r.get(5)?,
                r.get(6)?,
            );
            Ok(())
        },
    )?;
    each(
        &conn,
        "enrollments",
        "SELECT app, id, role, user_id, contact_id, managed_by, applied_hash FROM enrollments",
        &[],
        |r| {
            live.enrollment(
                &text(r, 0)?,
                &text(r, 1)?,
                &text(r, 2)?,
                optional_text(r, 3)?.as_deref(),
                optional_text(r, 4)?.as_deref(),
                r.get(5)?,
                r.get(6)?,
            );
            Ok(())
        },
    )?;
    if source.is_some() {
        each(
            &conn,
            "managed_objects",
            "SELECT kind, app, object_id, reported_hash, declared_in FROM managed_objects \
             WHERE source = ?1",
            params,
            |r| {
                live.managed(
                    &text(r, 0)?,
                    &text(r, 1)?,
                    &text(r, 2)?,
                    r.get(3)?,
                    optional_text(r, 4)?.as_deref(),
                );
                Ok(())
            },
        )?;
    }
    each(
        &conn,
        "claims",
        "SELECT source, kind, app, object_id, declared_in FROM claims",
        &[],
        |r| {
            live.claim((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?));
            Ok(())
        },
    )?;
    conn.execute_batch("COMMIT")
        .map_err(failed("the database"))?;
    Ok(live.finish())
}

fn failed(table: &str) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |e| StoreError::Decode {
        table: table.to_owned(),
        message: e.to_string(),
    }
}

/// Runs `sql` and hands each row to `row`.
fn each(
    conn: &Connection,
    table: &str,
    sql: &str,
    params: &[&dyn ToSql],
    mut row: impl FnMut(&Row<'_>) -> rusqlite::Result<()>,
) -> Result<(), StoreError> {
    let mut read = || -> rusqlite::Result<()> {
        let mut statement = conn.prepare(sql)?;
        let mut rows = statement.query(params)?;
        while let Some(r) = rows.next()? {
            row(r)?;
        }
        Ok(())
    };
    read().map_err(failed(table))
}

/// A text column, borrowed from SQLite's copy of the row. SQLite keeps what
/// a hand edit stores in a text column as it was given (bytes stay a BLOB);
/// anything is read as text, so it shows up as drift rather than stopping
/// every sync.
fn text<'r>(row: &'r Row<'_>, column: usize) -> rusqlite::Result<Cow<'r, str>> {
    optional_text(row, column)?.ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            column,
            Type::Null,
            "NULL in a column accord always fills".into(),
        )
    })
}

fn optional_text<'r>(row: &'r Row<'_>, column: usize) -> rusqlite::Result<Option<Cow<'r, str>>> {
    Ok(match row.get_ref(column)? {
        ValueRef::Null => None,
        ValueRef::Text(bytes) | ValueRef::Blob(bytes) => Some(String::from_utf8_lossy(bytes)),
        ValueRef::Integer(n) => Some(Cow::Owned(n.to_string())),
        ValueRef::Real(x) => Some(Cow::Owned(x.to_string())),
    })
}
