//! The database as the planner sees it: rows, and the ledger of the keys a
//! source manages.

use std::sync::Arc;

use crate::model::{Canonical, Declaration, Key, KeyMap, Object};

/// One row of the database as the planner sees it.
#[derive(Clone, Debug)]
pub struct LiveRow {
    /// The object, kept as its canonical bytes: one allocation per row, and
    /// decoded only for the rows a plan changes. `None` when the store knew
    /// the row to be exactly as accord last wrote it and left its content
    /// out (`Store::load_for_plan`): its digest is then the applied one.
    content: Option<Canonical>,
    /// The content hash, computed as the row is read (while the source is
    /// still being parsed): compared with `applied`, it tells a row as
    /// accord wrote it from one edited by hand.
    digest: [u8; 16],
    /// The source that owns the row; `None` for rows nobody manages. Shared:
    /// a source's rows all name it.
    pub managed_by: Option<Arc<str>>,
    /// The content hash accord recorded when it last wrote the row (the
    /// `applied_hash` column, read by `model::parse_digest`): kept as bytes,
    /// so a row carries no allocation for it and a plan compares 16 bytes.
    pub applied: Option<[u8; 16]>,
    /// `false` when an operator suspended the organization in the database.
    pub gitops: bool,
    /// The row's entry in the source's ledger, put here by the store as it
    /// reads, so the plan need not look each key up in a second map. `None`
    /// means only that it is not here: `LiveState::managed` may hold it.
    pub(super) ledger: Option<LedgerEntry>,
}

impl LiveRow {
    pub fn new(
        object: Object,
        managed_by: Option<Arc<str>>,
        applied: Option<[u8; 16]>,
        gitops: bool,
    ) -> LiveRow {
        LiveRow::from_canonical(Canonical::of(&object), managed_by, applied, gitops)
    }

    pub fn from_canonical(
        content: Canonical,
        managed_by: Option<Arc<str>>,
        applied: Option<[u8; 16]>,
        gitops: bool,
    ) -> LiveRow {
        LiveRow {
            digest: content.digest(),
            content: Some(content),
            managed_by,
            applied,
            gitops,
            ledger: None,
        }
    }

    /// A row the store knows is exactly as accord last wrote it, whose hash
    /// it then recorded as `applied`: its content is left unread, and a
    /// plan that changes the row reads it first (`Plan::unread_rows`).
    pub fn unread(managed_by: Arc<str>, applied: [u8; 16]) -> LiveRow {
        LiveRow {
            content: None,
            digest: applied,
            managed_by: Some(managed_by),
            applied: Some(applied),
            gitops: true,
            ledger: None,
        }
    }

    /// Leaves out the content of a row that is exactly as accord last wrote
    /// it for `source` (its content hashes to the hash accord recorded), as
    /// a store that never read it would (`LiveRow::unread`): after a sync,
    /// nearly every row, whose bytes a plan that leaves it alone never needs.
    pub fn leave_unread_if_applied(&mut self, source: &str) {
        if self.as_applied() && self.managed_by.as_deref() == Some(source) {
            self.content = None;
        }
    }

    /// Records the row's key's entry in the source's ledger.
    pub fn set_ledger(&mut self, entry: LedgerEntry) {
        self.ledger = Some(entry);
    }

    /// The entry set by `set_ledger`.
    pub fn ledger(&self) -> Option<&LedgerEntry> {
        self.ledger.as_ref()
    }

    /// The object as it is in the database; `None` for a row read without
    /// its content (`LiveRow::unread`).
    pub fn object(&self) -> Option<Object> {
        self.content.as_ref().map(Canonical::object)
    }

    /// Whether the row was read with its content.
    pub fn is_read(&self) -> bool {
        self.content.is_some()
    }

    /// Whether the row holds exactly what `declaration` declares: by the
    /// hash the parse took when there is one (the row's is at hand), else by
    /// the row's bytes, or for a row read without them by content hash.
    pub fn holds(&self, declaration: &Declaration) -> bool {
        match (declaration.digest, &self.content) {
            (Some(digest), _) => digest == self.digest,
            (None, Some(content)) => content.matches(&declaration.object),
            (None, None) => declaration.object.digest() == self.digest,
        }
    }

    /// Takes `read`'s content, owner and hashes, keeping this row's ledger
    /// entry (the store reads rows again without their entries).
    pub fn replace_with(&mut self, read: LiveRow) {
        let ledger = self.ledger.take();
        *self = LiveRow { ledger, ..read };
    }

    /// The object's content hash (`Object::digest`).
    pub fn digest(&self) -> [u8; 16] {
        self.digest
    }

    /// Whether the row is exactly as accord last wrote it.
    pub(super) fn as_applied(&self) -> bool {
        self.applied == Some(self.digest)
    }
}

impl PartialEq for LiveRow {
    fn eq(&self, other: &LiveRow) -> bool {
        self.content == other.content
            && self.managed_by == other.managed_by
            && self.applied == other.applied
            && self.gitops == other.gitops
            && self.ledger == other.ledger
    }
}

/// What accord remembers about a key a source manages, kept apart from the
/// row itself so a row deleted by hand is still known to be missing. (The
/// ledger also records the file that last declared the key; a load leaves
/// it out, and `store::explain` reads it for the keys a plan deletes.)
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LedgerEntry {
    /// The live hash last reported as drift (report mode audits drift once).
    pub reported_hash: Option<String>,
}

/// A key a source declares while another source owns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// The source that declares it and cannot apply it.
    pub source: String,
    pub declared_in: Option<Arc<str>>,
}

/// Live rows by key, in the order the store read them: entries lie side by
/// side in that order, so a store that reads the ledger after the rows, in
/// the same order, finds each entry's row next to the last one's.
pub type RowMap = indexmap::IndexMap<Key, LiveRow, rustc_hash::FxBuildHasher>;

/// The rows in a source's scope and the keys it manages.
#[derive(Clone, Debug, Default)]
pub struct LiveState {
    pub rows: RowMap,
    /// The source's ledger entries that are not on a row (`LiveRow::ledger`):
    /// a store puts here the keys whose rows are gone; a key is in the
    /// ledger when either place has it, never both.
    pub ledger: KeyMap<LedgerEntry>,
    /// Every source's open claims on keys owned by another source.
    pub claims: KeyMap<Vec<Claim>>,
}

impl LiveState {
    /// `key`'s ledger entry, wherever it is kept; `row` is `key`'s row.
    pub fn ledger_entry<'a>(
        &'a self,
        key: &Key,
        row: Option<&'a LiveRow>,
    ) -> Option<&'a LedgerEntry> {
        row.and_then(LiveRow::ledger)
            .or_else(|| self.ledger.get(key))
    }

    /// How many keys the source's ledger holds.
    pub fn ledger_len(&self) -> usize {
        self.ledger.len()
            + self
                .rows
                .values()
                .filter(|row| row.ledger.is_some())
                .count()
    }
}
