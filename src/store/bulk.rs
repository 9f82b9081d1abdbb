//! Bulk writes, one statement for many rows, in each backend's fastest form:
//! SQLite takes multi-row `VALUES`; PostgreSQL streams rows with `COPY`,
//! through a staging table when rows may already exist.

use std::fmt::Write as _;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::ser::{Serialize, Serializer};
use sqlx::sqlite::SqliteArguments;
use sqlx::{Arguments as _, PgConnection, SqliteConnection};

use super::StoreError;

/// A table written in bulk: its columns, and for upserts the key and the
/// columns an existing row takes from the new one.
#[derive(Clone, Copy)]
pub struct Table {
    pub name: &'static str,
    pub columns: &'static [&'static str],
    pub key: &'static [&'static str],
    pub update: &'static [&'static str],
    /// PostgreSQL: the column that records the transaction writing each
    /// row, which is then the row version's `xmin`; while the two agree the
    /// row has not been written since, and a plan need not read its content
    /// (`rows::LiveTable::Unread`). SQLite keeps no row versions and has no
    /// such column.
    pub stamp: Option<&'static str>,
}

impl Table {
    /// The same table written with plain inserts.
    pub fn insert_only(&self) -> Table {
        Table {
            update: &[],
            ..*self
        }
    }
}

/// One value of a row.
#[derive(Clone)]
pub enum Cell<'a> {
    Null,
    Text(&'a str),
    Owned(String),
    Int(i64),
    Time(DateTime<Utc>),
    Bytes(Vec<u8>),
}

impl<'a> From<&'a str> for Cell<'a> {
    fn from(value: &'a str) -> Self {
        Cell::Text(value)
    }
}

impl<'a> From<Option<&'a str>> for Cell<'a> {
    fn from(value: Option<&'a str>) -> Self {
        value.map_or(Cell::Null, Cell::Text)
    }
}

impl From<String> for Cell<'_> {
    fn from(value: String) -> Self {
        Cell::Owned(value)
    }
}

impl From<Option<String>> for Cell<'_> {
    fn from(value: Option<String>) -> Self {
        value.map_or(Cell::Null, Cell::Owned)
    }
}

impl From<i64> for Cell<'_> {
    fn from(value: i64) -> Self {
        Cell::Int(value)
    }
}

impl From<Option<i64>> for Cell<'_> {
    fn from(value: Option<i64>) -> Self {
        value.map_or(Cell::Null, Cell::Int)
    }
}

impl From<Vec<u8>> for Cell<'_> {
    fn from(value: Vec<u8>) -> Self {
        Cell::Bytes(value)
    }
}

impl From<DateTime<Utc>> for Cell<'_> {
    fn from(value: DateTime<Utc>) -> Self {
        Cell::Time(value)
    }
}

fn time_text(time: &DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Micros, true)
}

impl Serialize for Cell<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Cell::Null => serializer.serialize_unit(),
            Cell::Text(s) => serializer.serialize_str(s),
            Cell::Owned(s) => serializer.serialize_str(s),
            Cell::Int(i) => serializer.serialize_i64(*i),
            Cell::Time(t) => serializer.serialize_str(&time_text(t)),
            Cell::Bytes(b) => serializer.serialize_bytes(b),
        }
    }
}

/// Rows per COPY message. Each chunk is rendered on the task that writes
/// it, between awaits, so its size bounds how long that task holds a
/// runtime thread: at 10,000 audit rows it was 30-50 ms, and the HTTP
/// requests queued behind it (`GET /api/v1/status` p99 37 ms at 500 req/s
/// during a first sync). 1,000 rows take a few milliseconds.
const CHUNK: usize = 1_000;

/// `ON CONFLICT … DO UPDATE` for an upsert, setting `also` too.
fn conflict_clause(table: &Table, also: Option<&str>) -> String {
    if table.update.is_empty() {
        return String::new();
    }
    let sets: Vec<String> = table
        .update
        .iter()
        .copied()
        .chain(also)
        .map(|c| format!("{c} = excluded.{c}"))
        .collect();
    format!(
        " ON CONFLICT ({}) DO UPDATE SET {}",
        table.key.join(", "),
        sets.join(", ")
    )
}

/// SQLite: multi-row `INSERT … VALUES (…), (…)` with bound values. Every full
/// chunk has the same text, so SQLite parses the statement once and steps the
/// cached one after that (a statement with 30,000 placeholders costs more to
/// parse than to run). The values of the next chunk are bound while SQLite
/// writes the current one on its worker thread. (Not rows as one JSON
/// parameter through `json_each`: `->>` would re-parse each row.)
pub async fn sqlite<T, const N: usize>(
    conn: &mut SqliteConnection,
    table: &Table,
    rows: &[T],
    cells: impl Fn(&T) -> [Cell<'_>; N],
) -> Result<(), StoreError> {
    const SQLITE_MAX_VARIABLES: usize = 32_766;
    const ROWS_PER_STATEMENT: usize = 500;
    let per_statement = (SQLITE_MAX_VARIABLES / N).clamp(1, ROWS_PER_STATEMENT);
    let statement = |rows: usize| {
        let row = format!("({})", vec!["?"; N].join(", "));
        format!(
            "INSERT INTO {} ({}) VALUES {}{}",
            table.name,
            table.columns.join(", "),
            vec![row; rows].join(", "),
            conflict_clause(table, None)
        )
    };
    let full = statement(per_statement);
    let bind = |chunk: &[T]| -> Result<(usize, SqliteArguments), StoreError> {
        let mut args = SqliteArguments::default();
        for row in chunk {
            for cell in cells(row) {
                add_sqlite(&mut args, cell)?;
            }
        }
        Ok((chunk.len(), args))
    };
    let mut chunks = rows.chunks(per_statement);
    let mut next = chunks.next().map(&bind).transpose()?;
    while let Some((len, args)) = next.take() {
        let sql = if len == per_statement {
            full.clone()
        } else {
            statement(len)
        };
        let execute = sqlx::query_with(sqlx::AssertSqlSafe(sql), args)
            .persistent(len == per_statement)
            .execute(&mut *conn);
        // `join!` polls the insert first, which hands it to the worker thread,
        // then binds the following chunk here meanwhile.
        let (done, following) =
            tokio::join!(execute, async { chunks.next().map(&bind).transpose() });
        done?;
        next = following?;
    }
    Ok(())
}

/// Binds one value for SQLite.
pub fn add_sqlite(args: &mut SqliteArguments, cell: Cell<'_>) -> Result<(), StoreError> {
    match cell {
        Cell::Null => args.add(None::<String>),
        Cell::Text(s) => args.add(s),
        Cell::Owned(s) => args.add(s),
        Cell::Int(i) => args.add(i),
        Cell::Time(t) => args.add(t),
        Cell::Bytes(b) => args.add(b),
    }
    .map_err(sqlx::Error::Encode)?;
    Ok(())
}

/// Binds one value for PostgreSQL.
pub fn add_postgres(
    args: &mut sqlx::postgres::PgArguments,
    cell: &Cell<'_>,
) -> Result<(), StoreError> {
    match cell {
        Cell::Null => args.add(None::<String>),
        Cell::Text(s) => args.add(*s),
        Cell::Owned(s) => args.add(s.as_str()),
        Cell::Int(i) => args.add(*i),
        Cell::Time(t) => args.add(*t),
        Cell::Bytes(b) => args.add(b.as_slice()),
    }
    .map_err(sqlx::Error::Encode)?;
    Ok(())
}

/// Escapes a value for PostgreSQL's COPY text format.
fn copy_text(out: &mut String, cell: &Cell<'_>) {
    let text = match cell {
        Cell::Null => {
            out.push_str("\\N");
            return;
        }
        Cell::Int(i) => {
            let _ = write!(out, "{i}");
            return;
        }
        Cell::Time(t) => {
            out.push_str(&time_text(t));
            return;
        }
        Cell::Bytes(b) => {
            // bytea's hex input form, its backslash escaped for COPY.
            // A table, not `write!`: every audit row carries two hashes.
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\\\x");
            out.extend(
                b.iter()
                    .flat_map(|byte| [HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 15)]])
                    .map(char::from),
            );
            return;
        }
        Cell::Text(s) => *s,
        Cell::Owned(s) => s.as_str(),
    };
    // Most values need no escaping: copy the runs between special bytes whole
    // (the audit log alone is tens of megabytes of text).
    let mut rest = text;
    while let Some(at) = rest.find(['\\', '\n', '\r', '\t']) {
        out.push_str(&rest[..at]);
        out.push_str(match rest.as_bytes()[at] {
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            _ => "\\t",
        });
        rest = &rest[at + 1..];
    }
    out.push_str(rest);
}

/// PostgreSQL: `COPY` straight into the table for plain inserts; for upserts
/// into a per-session staging table, then one `INSERT … SELECT … ON CONFLICT`.
pub async fn postgres<T, const N: usize>(
    conn: &mut PgConnection,
    table: &Table,
    rows: &[T],
    cells: impl Fn(&T) -> [Cell<'_>; N],
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut columns = table.columns.join(", ");
    // This transaction's id as the row versions it writes carry it (no
    // savepoint is open, so it is the top-level one).
    let stamp = match table.stamp {
        Some(column) => {
            let (xid,): (String,) = sqlx::query_as("SELECT xid(pg_current_xact_id())::text")
                .fetch_one(&mut *conn)
                .await?;
            columns.push_str(", ");
            columns.push_str(column);
            Some(xid)
        }
        None => None,
    };
    let upsert = !table.update.is_empty();
    let target = if upsert {
        let staging = format!("accord_staging_{}", table.name);
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "CREATE TEMP TABLE IF NOT EXISTS {staging} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS; TRUNCATE {staging}",
            table.name
        )))
        .execute(&mut *conn)
        .await?;
        staging
    } else {
        table.name.to_owned()
    };
    let mut copy = conn
        .copy_in_raw(&format!("COPY {target} ({columns}) FROM STDIN"))
        .await?;
    for chunk in rows.chunks(CHUNK) {
        let mut data = String::with_capacity(chunk.len() * 128);
        for row in chunk {
            for (i, cell) in cells(row).iter().enumerate() {
                if i > 0 {
                    data.push('\t');
                }
                copy_text(&mut data, cell);
            }
            if let Some(xid) = &stamp {
                data.push('\t');
                data.push_str(xid);
            }
            data.push('\n');
        }
        copy.send(data.into_bytes()).await?;
        // A send into a buffer with room does not yield on its own.
        tokio::task::yield_now().await;
    }
    copy.finish().await?;
    if upsert {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {} ({columns}) SELECT {columns} FROM {target}{}",
            table.name,
            conflict_clause(table, table.stamp)
        )))
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_text_escapes_what_the_format_reserves() {
        let mut out = String::new();
        copy_text(&mut out, &Cell::Text("a\tb\nc\\d\re"));
        assert_eq!(out, "a\\tb\\nc\\\\d\\re");
        out.clear();
        copy_text(&mut out, &Cell::Null);
        assert_eq!(out, "\\N");
        out.clear();
        copy_text(&mut out, &Cell::Bytes(vec![0x00, 0x0f, 0xa5, 0xff]));
        assert_eq!(out, "\\\\x000fa5ff");
    }
}
