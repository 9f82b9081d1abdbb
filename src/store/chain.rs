//! The hash chain over the history: each `sync_runs` and `audit_log` row
//! records a hash of its own content and a hash linking that to the row
//! before it, so a row edited, inserted or removed behind accord's back no
//! longer fits (`accord audit verify`). Pure: the store writes and reads
//! the columns, this module only hashes.

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};

/// A row's or a link's hash.
pub type Hash = [u8; 32];

/// What the first chained row of each table links to.
pub const GENESIS: Hash = [0; 32];

/// One value of a row, as the hash sees it.
pub enum Field<'a> {
    Text(&'a str),
    Maybe(Option<&'a str>),
    Int(i64),
    Time(&'a DateTime<Utc>),
}

/// Times as both backends keep them: to the microsecond. A time is cut to
/// this before it is written, so the value read back hashes the same.
pub fn stored_time(time: DateTime<Utc>) -> DateTime<Utc> {
    time.trunc_subsecs(6)
}

/// The hash of a row's content. Each field is tagged and length-prefixed,
/// so no two rows encode alike; `table` keeps the two chains apart.
pub fn row_hash(table: &str, fields: &[Field<'_>]) -> Hash {
    let mut hasher = blake3::Hasher::new_derive_key("accord history row v1");
    hasher.update(table.as_bytes());
    let mut text = |tag: u8, bytes: &[u8]| {
        hasher.update(&[tag]);
        hasher.update(&(bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    };
    for field in fields {
        match field {
            Field::Text(s) | Field::Maybe(Some(s)) => text(1, s.as_bytes()),
            Field::Maybe(None) => text(0, &[]),
            Field::Int(i) => text(2, &i.to_le_bytes()),
            Field::Time(t) => text(
                3,
                stored_time(**t)
                    .to_rfc3339_opts(SecondsFormat::Micros, true)
                    .as_bytes(),
            ),
        }
    }
    *hasher.finalize().as_bytes()
}

/// The chain hash of a row whose content hashes to `row`, after `previous`.
pub fn link(previous: &Hash, row: &Hash) -> Hash {
    let mut hasher = blake3::Hasher::new_derive_key("accord history link v1");
    hasher.update(previous);
    hasher.update(row);
    *hasher.finalize().as_bytes()
}

/// A stored hash column.
pub fn parse(text: &str) -> Option<Hash> {
    let mut hash = [0u8; 32];
    hex::decode_to_slice(text, &mut hash).ok()?;
    Some(hash)
}

/// A sync run's content, in the order the hash takes it.
#[derive(Clone, Debug)]
pub struct SyncRunRow {
    pub source: String,
    pub revision: String,
    pub actor: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub outcome: String,
    /// created, updated, deleted, drift, conflict, suspended
    pub counts: [i64; 6],
    pub message: String,
    pub audited: i64,
}

impl SyncRunRow {
    pub fn hash(&self) -> Hash {
        let mut fields = vec![
            Field::Text(&self.source),
            Field::Text(&self.revision),
            Field::Text(&self.actor),
            Field::Time(&self.started_at),
            Field::Time(&self.finished_at),
            Field::Text(&self.outcome),
        ];
        fields.extend(self.counts.iter().map(|n| Field::Int(*n)));
        fields.push(Field::Text(&self.message));
        fields.push(Field::Int(self.audited));
        row_hash("sync_runs", &fields)
    }
}

/// An audit row's content, in the order the hash takes it.
pub struct AuditRowContent<'a> {
    pub at: &'a DateTime<Utc>,
    pub actor: &'a str,
    pub source: &'a str,
    pub revision: &'a str,
    pub sync_run: i64,
    pub action: &'a str,
    pub kind: &'a str,
    pub app: &'a str,
    pub object_id: &'a str,
    pub before: Option<&'a str>,
    pub after: Option<&'a str>,
    pub diff: &'a str,
    pub origin: Option<&'a str>,
}

impl AuditRowContent<'_> {
    pub fn hash(&self) -> Hash {
        row_hash(
            "audit_log",
            &[
                Field::Time(self.at),
                Field::Text(self.actor),
                Field::Text(self.source),
                Field::Text(self.revision),
                Field::Int(self.sync_run),
                Field::Text(self.action),
                Field::Text(self.kind),
                Field::Text(self.app),
                Field::Text(self.object_id),
                Field::Maybe(self.before),
                Field::Maybe(self.after),
                Field::Text(self.diff),
                Field::Maybe(self.origin),
            ],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_value_and_an_empty_one_hash_apart() {
        let none = row_hash("t", &[Field::Maybe(None)]);
        let empty = row_hash("t", &[Field::Maybe(Some(""))]);
        assert_ne!(none, empty);
    }

    #[test]
    fn moving_text_between_fields_changes_the_hash() {
        let a = row_hash("t", &[Field::Text("ab"), Field::Text("c")]);
        let b = row_hash("t", &[Field::Text("a"), Field::Text("bc")]);
        assert_ne!(a, b);
    }

    #[test]
    fn a_time_hashes_as_stored_to_the_microsecond() {
        let precise = DateTime::from_timestamp(1_800_000_000, 123_456_789).expect("time");
        let stored = stored_time(precise);
        assert_eq!(
            row_hash("t", &[Field::Time(&precise)]),
            row_hash("t", &[Field::Time(&stored)])
        );
        assert_eq!(stored.timestamp_subsec_nanos(), 123_456_000);
    }

    #[test]
    fn each_link_depends_on_everything_before_it() {
        let rows = [
            row_hash("t", &[Field::Int(1)]),
            row_hash("t", &[Field::Int(2)]),
        ];
        let chain = rows
            .iter()
            .fold(GENESIS, |previous, row| link(&previous, row));
        let reordered = rows
            .iter()
            .rev()
            .fold(GENESIS, |previous, row| link(&previous, row));
        assert_ne!(chain, reordered);
        assert_eq!(parse(&hex::encode(chain)), Some(chain));
        assert_eq!(parse("not hex"), None);
    }
}

/// Where a verification got to in each table: the last row checked and its
/// chain hash. The next verification starts there, and first checks that
/// the row is still what it was.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Position {
    pub sync_runs: Option<(i64, Hash)>,
    pub audit_log: Option<(i64, Hash)>,
}

/// What was found wrong first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// The row's content no longer matches its own hash.
    Edited { table: &'static str, id: i64 },
    /// A row after the chain began carries no hashes: accord did not write it.
    Unhashed { table: &'static str, id: i64 },
    /// The row does not follow the one before it: a row was removed just
    /// before it, or it was inserted.
    Broken { table: &'static str, id: i64 },
    /// A row verified earlier is gone or changed.
    Rewritten { table: &'static str, id: i64 },
    /// A sync run's audit rows are not the ones it wrote (some removed).
    Missing {
        sync_run: i64,
        written: i64,
        found: i64,
    },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Edited { table, id } => write!(
                f,
                "{table} row {id} was edited: its content no longer matches its hash"
            ),
            Problem::Unhashed { table, id } => write!(
                f,
                "{table} row {id} was inserted behind accord's back: it carries no hash"
            ),
            Problem::Broken { table, id } => write!(
                f,
                "{table} row {id} does not follow the row before it: a row just before it was removed, or it was inserted"
            ),
            Problem::Rewritten { table, id } => write!(
                f,
                "{table} row {id}, verified earlier, was removed or rewritten"
            ),
            Problem::Missing {
                sync_run,
                written,
                found,
            } => write!(
                f,
                "sync run {sync_run} wrote {written} audit row(s) and {found} are left: audit rows were removed"
            ),
        }
    }
}

/// The result of a verification.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Rows checked in this pass, per table.
    pub sync_runs: u64,
    pub audit_rows: u64,
    /// Rows written before the chain existed, which carry no hashes.
    pub legacy: u64,
    /// Where the pass got to.
    pub head: Position,
    pub problem: Option<Problem>,
}

/// Checks one table's rows, fed in id order.
pub struct Verifier {
    table: &'static str,
    legacy_through: i64,
    previous: Hash,
    /// The row a pass starts from, which must still be as it was.
    anchor: Option<(i64, Hash)>,
    pub last: Option<(i64, Hash)>,
    pub checked: u64,
    pub legacy: u64,
    pub problem: Option<Problem>,
}

impl Verifier {
    pub fn new(table: &'static str, legacy_through: i64, from: Option<(i64, Hash)>) -> Verifier {
        Verifier {
            table,
            legacy_through,
            previous: from.map_or(GENESIS, |(_, hash)| hash),
            anchor: from,
            last: from,
            checked: 0,
            legacy: 0,
            problem: None,
        }
    }

    /// The id the rows to feed start at (the anchor itself, if any).
    pub fn start(&self) -> i64 {
        self.anchor.map_or(i64::MIN, |(id, _)| id)
    }

    /// Takes the next row; `false` once a problem was found.
    pub fn row(
        &mut self,
        id: i64,
        content: Hash,
        row_hash: Option<&str>,
        chain_hash: Option<&str>,
    ) -> bool {
        if self.problem.is_some() {
            return false;
        }
        let table = self.table;
        if let Some((anchor, hash)) = self.anchor.take() {
            let same = id == anchor
                && chain_hash.and_then(parse) == Some(hash)
                && row_hash.and_then(parse) == Some(content);
            if !same {
                self.problem = Some(Problem::Rewritten { table, id: anchor });
                return false;
            }
            return true;
        }
        let (Some(row_hash), Some(chain_hash)) = (row_hash, chain_hash) else {
            if id <= self.legacy_through && self.last.is_none() {
                self.legacy += 1;
                return true;
            }
            self.problem = Some(Problem::Unhashed { table, id });
            return false;
        };
        if parse(row_hash) != Some(content) {
            self.problem = Some(Problem::Edited { table, id });
            return false;
        }
        let linked = link(&self.previous, &content);
        if parse(chain_hash) != Some(linked) {
            self.problem = Some(Problem::Broken { table, id });
            return false;
        }
        self.previous = linked;
        self.last = Some((id, linked));
        self.checked += 1;
        true
    }

    /// At the end: an anchor never reached means its row is gone.
    pub fn finish(&mut self) {
        if let (None, Some((id, _))) = (&self.problem, self.anchor.take()) {
            self.problem = Some(Problem::Rewritten {
                table: self.table,
                id,
            });
        }
    }
}
