//! The hash chain over the history: each `sync_runs` and `audit_log` row
//! records a hash of its own content and a hash linking that to the row
//! before it, so a row edited, inserted or removed behind accord's back no
//! longer fits (`accord audit verify`). Pure: the store writes and reads
//! the columns, this module only hashes.

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};

/// A row's or a link's hash.
pub type Hash = [u8; 32];

/// How much of a row's content hash its `row_hash` column keeps: enough to
/// tell an edited row from a removed neighbour (the link is checked with
/// the whole hash, recomputed), at half the bytes per audit row.
pub const ROW_HASH_STORED: usize = 16;

/// The stored form of a row's content hash.
pub fn stored_row_hash(hash: &Hash) -> &[u8] {
    &hash[..ROW_HASH_STORED]
}

/// What the first chained row of each table links to.
pub const GENESIS: Hash = [0; 32];

/// One value of a row, as the hash sees it.
pub enum Field<'a> {
    Text(&'a str),
    Maybe(Option<&'a str>),
    Int(i64),
    /// A time as `stamp` writes it.
    Time(&'a str),
}

/// Times as both backends keep them: to the microsecond. A time is cut to
/// this before it is written, so the value read back hashes the same.
pub fn stored_time(time: DateTime<Utc>) -> DateTime<Utc> {
    time.trunc_subsecs(6)
}

/// A time as the hash takes it (`Field::Time`): RFC 3339, microseconds, UTC.
pub fn stamp(time: &DateTime<Utc>) -> String {
    stored_time(*time).to_rfc3339_opts(SecondsFormat::Micros, true)
}

static ROW_KEY: std::sync::LazyLock<blake3::Hasher> =
    std::sync::LazyLock::new(|| blake3::Hasher::new_derive_key("accord history row v1"));
static LINK_KEY: std::sync::LazyLock<blake3::Hasher> =
    std::sync::LazyLock::new(|| blake3::Hasher::new_derive_key("accord history link v1"));

thread_local! {
    /// A row's encoding, reused: an apply hashes one row per change.
    static ENCODING: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The hash of a row's content. Each field is tagged and length-prefixed,
/// so no two rows encode alike; `table` keeps the two chains apart. The
/// row is encoded whole and hashed in one call: many small updates cost
/// more than the hashing.
pub fn row_hash(table: &str, fields: &[Field<'_>]) -> Hash {
    ENCODING.with(|encoding| {
        let mut out = encoding.borrow_mut();
        out.clear();
        let mut put = |tag: u8, bytes: &[u8]| {
            out.push(tag);
            out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            out.extend_from_slice(bytes);
        };
        put(4, table.as_bytes());
        for field in fields {
            match field {
                Field::Text(s) | Field::Maybe(Some(s)) => put(1, s.as_bytes()),
                Field::Maybe(None) => put(0, &[]),
                Field::Int(i) => put(2, &i.to_le_bytes()),
                Field::Time(t) => put(3, t.as_bytes()),
            }
        }
        let mut hasher = ROW_KEY.clone();
        hasher.update(&out);
        *hasher.finalize().as_bytes()
    })
}

/// A hash as people read it: lowercase hex.
pub fn to_hex(hash: &Hash) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(64);
    for byte in hash {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 15)]));
    }
    text
}

/// The chain hash of a row whose content hashes to `row`, after `previous`.
pub fn link(previous: &Hash, row: &Hash) -> Hash {
    let mut hasher = LINK_KEY.clone();
    hasher.update(previous);
    hasher.update(row);
    *hasher.finalize().as_bytes()
}

/// A stored chain hash.
pub fn parse(bytes: &[u8]) -> Option<Hash> {
    bytes.try_into().ok()
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
    /// What started the sync; rows written before it was recorded have
    /// none, and their hash is what it was.
    pub cause: Option<String>,
}

impl SyncRunRow {
    pub fn hash(&self) -> Hash {
        let (started, finished) = (stamp(&self.started_at), stamp(&self.finished_at));
        let mut fields = vec![
            Field::Text(&self.source),
            Field::Text(&self.revision),
            Field::Text(&self.actor),
            Field::Time(&started),
            Field::Time(&finished),
            Field::Text(&self.outcome),
        ];
        fields.extend(self.counts.iter().map(|n| Field::Int(*n)));
        fields.push(Field::Text(&self.message));
        fields.push(Field::Int(self.audited));
        if let Some(cause) = &self.cause {
            fields.push(Field::Text(cause));
        }
        row_hash("sync_runs", &fields)
    }
}

/// An audit row's content, in the order the hash takes it.
pub struct AuditRowContent<'a> {
    /// The row's time, as `stamp` writes it.
    pub at: &'a str,
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
        assert_eq!(stamp(&precise), stamp(&stored));
        assert_eq!(stamp(&stored), "2027-01-15T08:00:00.123456Z");
        assert_eq!(stored.timestamp_subsec_nanos(), 123_456_000);
    }

    #[test]
    fn hashes_are_written_as_lowercase_hex() {
        let hash = row_hash("t", &[Field::Int(7)]);
        assert_eq!(to_hex(&hash), hex::encode(hash));
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
        assert_eq!(parse(&chain), Some(chain));
        assert_eq!(parse(&chain[..16]), None);
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
        row_hash: Option<&[u8]>,
        chain_hash: Option<&[u8]>,
    ) -> bool {
        if self.problem.is_some() {
            return false;
        }
        let table = self.table;
        if let Some((anchor, hash)) = self.anchor.take() {
            let same = id == anchor
                && chain_hash.and_then(parse) == Some(hash)
                && row_hash == Some(stored_row_hash(&content));
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
        if row_hash != stored_row_hash(&content) {
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

/// One verification of both tables: the store feeds it every sync run and
/// then every audit row from `from` on, in id order, read in one snapshot.
pub struct Walk {
    from: Position,
    runs: Verifier,
    audit: Verifier,
    /// Audit rows each sync run (checked in this walk) says it wrote…
    written: Vec<(i64, i64)>,
    /// …and those found.
    found: std::collections::HashMap<i64, i64>,
}

impl Walk {
    /// `legacy` holds, per table, the last id written before the chain existed.
    pub fn new(from: Position, legacy: &[(String, i64)]) -> Walk {
        let legacy_through = |name: &str| {
            legacy
                .iter()
                .find(|(n, _)| n == name)
                .map_or(0, |(_, id)| *id)
        };
        Walk {
            from,
            runs: Verifier::new("sync_runs", legacy_through("sync_runs"), from.sync_runs),
            audit: Verifier::new("audit_log", legacy_through("audit_log"), from.audit_log),
            written: Vec::new(),
            found: std::collections::HashMap::new(),
        }
    }

    /// The first sync run id and audit seq to feed.
    pub fn starts(&self) -> (i64, i64) {
        (self.runs.start(), self.audit.start())
    }

    /// Takes the next sync run; `false` once a problem was found.
    pub fn sync_run(
        &mut self,
        id: i64,
        row: &SyncRunRow,
        audited: Option<i64>,
        row_hash: Option<&[u8]>,
        chain_hash: Option<&[u8]>,
    ) -> bool {
        let anchored = Some(id) == self.from.sync_runs.map(|(id, _)| id);
        if !self.runs.row(id, row.hash(), row_hash, chain_hash) {
            return false;
        }
        if let (Some(audited), false, Some(_)) = (audited, anchored, chain_hash) {
            self.written.push((id, audited));
        }
        true
    }

    /// Whether audit rows are still wanted (the sync runs held).
    pub fn wants_audit_rows(&mut self) -> bool {
        self.runs.finish();
        self.runs.problem.is_none()
    }

    /// Takes the next audit row; `false` once a problem was found.
    pub fn audit_row(
        &mut self,
        seq: i64,
        row: &AuditRowContent<'_>,
        row_hash: Option<&[u8]>,
        chain_hash: Option<&[u8]>,
    ) -> bool {
        let anchored = Some(seq) == self.from.audit_log.map(|(seq, _)| seq);
        if !self.audit.row(seq, row.hash(), row_hash, chain_hash) {
            return false;
        }
        if !anchored {
            *self.found.entry(row.sync_run).or_default() += 1;
        }
        true
    }

    pub fn finish(mut self) -> Report {
        self.runs.finish();
        if self.runs.problem.is_none() {
            self.audit.finish();
        }
        let mut problem = self.runs.problem.clone().or(self.audit.problem.clone());
        if problem.is_none() {
            problem = self.written.iter().find_map(|&(sync_run, written)| {
                let found = self.found.get(&sync_run).copied().unwrap_or(0);
                (found != written).then_some(Problem::Missing {
                    sync_run,
                    written,
                    found,
                })
            });
        }
        Report {
            sync_runs: self.runs.checked,
            audit_rows: self.audit.checked,
            legacy: self.runs.legacy + self.audit.legacy,
            head: Position {
                sync_runs: self.runs.last,
                audit_log: self.audit.last,
            },
            problem,
        }
    }
}

/// The sync runs and audit rows as a walk reads them, from `?1` and `?2`.
pub const SYNC_RUNS_QUERY: &str =
    "SELECT id, source, revision, actor, started_at, finished_at, outcome, \
     created, updated, deleted, drift, conflict, suspended, message, audited, row_hash, chain_hash, \
     cause FROM sync_runs WHERE id >= $1 ORDER BY id";
pub const AUDIT_ROWS_QUERY: &str =
    "SELECT seq, at, actor, source, revision, sync_run, action, kind, app, \
     object_id, before, after, diff, origin, row_hash, chain_hash \
     FROM audit_log WHERE seq >= $1 ORDER BY seq";
