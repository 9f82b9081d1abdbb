//! The planner: a pure function from what a source declares and what the
//! database holds to the changes that would make them agree. No I/O.

use std::fmt;
use std::sync::Arc;

use rayon::prelude::*;
use serde::Serialize;
use serde_json::Value;

use crate::model::render;
use crate::model::{Canonical, Declaration, DesiredState, Key, KeyMap, Kind, Object, Origin};

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
    ledger: Option<Managed>,
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

    /// Records the row's key's entry in the source's ledger.
    pub fn set_ledger(&mut self, entry: Managed) {
        self.ledger = Some(entry);
    }

    /// The entry set by `set_ledger`.
    pub fn ledger(&self) -> Option<&Managed> {
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
    fn as_applied(&self) -> bool {
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
pub struct Managed {
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
    pub managed: KeyMap<Managed>,
    /// Every source's open claims on keys owned by another source.
    pub claims: KeyMap<Vec<Claim>>,
}

impl LiveState {
    /// `key`'s ledger entry, wherever it is kept; `row` is `key`'s row.
    pub fn ledger_entry<'a>(&'a self, key: &Key, row: Option<&'a LiveRow>) -> Option<&'a Managed> {
        row.and_then(LiveRow::ledger)
            .or_else(|| self.managed.get(key))
    }

    /// How many keys the source's ledger holds.
    pub fn ledger_len(&self) -> usize {
        self.managed.len()
            + self
                .rows
                .values()
                .filter(|row| row.ledger.is_some())
                .count()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Update,
    Delete,
    Drift,
    Conflict,
    Suspended,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
            Action::Drift => "drift",
            Action::Conflict => "conflict",
            Action::Suspended => "suspended",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A top-level field whose value differs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FieldChange {
    pub field: String,
    pub before: Value,
    pub after: Value,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub action: Action,
    pub key: Key,
    /// The row as it is now (for drift: as someone left it).
    pub before: Option<Object>,
    /// The object as declared (shared with the declaration).
    pub after: Option<Arc<Object>>,
    pub fields: Vec<FieldChange>,
    /// Why: the other owner of a conflict, what kind of drift, where declared.
    pub note: String,
    pub origin: Option<Origin>,
    /// The file that declares the object; for a delete, the file that last
    /// declared it, which `store::explain` reads from the ledger.
    pub declared_in: Option<Arc<str>>,
    /// For drift: the hash of the live row (`None` when it was deleted), and
    /// whether that exact state was already reported.
    pub drift_hash: Option<String>,
    pub drift_reported: bool,
    /// For a conflict over a row another source owns: that source.
    pub owner: Option<String>,
}

impl Change {
    pub(crate) fn new(
        action: Action,
        key: Key,
        before: Option<Object>,
        after: Option<Arc<Object>>,
    ) -> Change {
        let fields = field_changes(before.as_ref(), after.as_deref());
        Change {
            action,
            key,
            before,
            after,
            fields,
            note: String::new(),
            origin: None,
            declared_in: None,
            drift_hash: None,
            drift_reported: false,
            owner: None,
        }
    }

    fn note(mut self, note: impl Into<String>) -> Change {
        self.note = note.into();
        self
    }

    /// A unified diff of the object rendered as YAML, before → after.
    pub fn diff(&self) -> String {
        render::object_diff(self.before.as_ref(), self.after.as_deref())
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub create: usize,
    pub update: usize,
    pub delete: usize,
    pub drift: usize,
    pub conflict: usize,
    pub suspended: usize,
}

#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// Sorted by key.
    pub changes: Vec<Change>,
    /// Keys the source no longer manages and whose rows are gone or belong to
    /// someone else: only the ownership record is dropped.
    pub forget: Vec<Key>,
    /// How many keys the source managed before this plan.
    pub managed: usize,
    /// The same, by kind (in `Kind::ALL` order).
    pub managed_by_kind: [usize; 3],
    /// Whether this source's claims (its conflicts over rows other sources
    /// own) differ from the recorded ones, so they must be written.
    pub claims_changed: bool,
}

impl Plan {
    /// The keys of changes whose rows `live` holds without their content: a
    /// plan made over such rows lacks what they were, so the store reads
    /// these rows whole and the plan is made again (`store::read_unread`).
    /// Empty when nothing changes, which is why a load may leave content out.
    pub fn unread_rows(&self, live: &LiveState) -> Vec<Key> {
        self.changes
            .iter()
            .filter(|c| live.rows.get(&c.key).is_some_and(|row| !row.is_read()))
            .map(|c| c.key.clone())
            .collect()
    }

    /// How many keys of `kind` the source manages once the plan is applied.
    pub fn managed_after(&self, kind: crate::model::Kind) -> usize {
        let index = crate::model::Kind::ALL
            .iter()
            .position(|k| *k == kind)
            .unwrap_or(0);
        let count = |action| {
            self.changes
                .iter()
                .filter(|c| c.action == action && c.key.kind == kind)
                .count()
        };
        (self.managed_by_kind[index] + count(Action::Create)).saturating_sub(count(Action::Delete))
    }
}

impl Plan {
    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for change in &self.changes {
            *match change.action {
                Action::Create => &mut s.create,
                Action::Update => &mut s.update,
                Action::Delete => &mut s.delete,
                Action::Drift => &mut s.drift,
                Action::Conflict => &mut s.conflict,
                Action::Suspended => &mut s.suspended,
            } += 1;
        }
        s
    }

    /// Whether anything is waiting: changes, drift or conflicts (suspended
    /// objects are left alone by choice, so they are not pending).
    pub fn is_pending(&self) -> bool {
        self.changes.iter().any(|c| c.action != Action::Suspended)
    }

    pub fn count(&self, action: Action) -> usize {
        self.changes.iter().filter(|c| c.action == action).count()
    }
}

#[derive(Clone, Copy, Debug)]
pub struct PlanOptions {
    /// Delete managed rows that the source no longer declares.
    pub prune: bool,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions { prune: true }
    }
}

/// Computes what `source` must do to make the database match `desired`.
pub fn plan(desired: &DesiredState, live: &LiveState, source: &str, options: PlanOptions) -> Plan {
    let owned_by_source = |row: &LiveRow| row.managed_by.as_deref() == Some(source);
    // The keys this source manages: its ledger, plus any row that names it as
    // owner without a ledger entry (written by an older accord, or by hand).
    let kind_index = |kind| Kind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
    let mut managed_by_kind = [0; 3];
    for key in live.managed.keys() {
        managed_by_kind[kind_index(key.kind)] += 1;
    }
    let mut ledger_len = live.managed.len();
    let mut unrecorded: Vec<&Key> = Vec::new();
    for (key, row) in &live.rows {
        if row.ledger.is_some() {
            ledger_len += 1;
            managed_by_kind[kind_index(key.kind)] += 1;
        } else if owned_by_source(row) && !live.managed.contains_key(key) {
            managed_by_kind[kind_index(key.kind)] += 1;
            unrecorded.push(key);
        }
    }
    let managed_count = ledger_len + unrecorded.len();

    // Each worker counts the declared keys it finds in the ledger: when that
    // is the whole ledger, nothing in it can be undeclared, and the search
    // for keys to prune skips the ledger. Changes are boxed until they are
    // sorted: a `Change` is several hundred bytes, and a first sync has one
    // per object, so gathering and sorting them moved far more memory than
    // the planning itself touched.
    let (mut changes, declared_in_ledger) = desired
        .objects
        .par_iter()
        .fold(
            || (Vec::new(), 0usize),
            |(mut changes, mut in_ledger), (key, declaration)| {
                let row = live.rows.get(key);
                let recorded = live.ledger_entry(key, row).is_some();
                in_ledger += usize::from(recorded);
                let managed = recorded || row.is_some_and(owned_by_source);
                changes.extend(
                    plan_declared(key, declaration, row, live, managed, source).map(Box::new),
                );
                (changes, in_ledger)
            },
        )
        .reduce(
            || (Vec::new(), 0),
            |(mut changes, a), (more, b)| {
                changes.extend(more);
                (changes, a + b)
            },
        );
    // The ledger's keys are walked only when some of them went undeclared.
    let ledger = (declared_in_ledger != ledger_len)
        .then(|| {
            let on_rows = live
                .rows
                .iter()
                .filter(|(_, row)| row.ledger.is_some())
                .map(|(key, _)| key);
            live.managed.keys().chain(on_rows)
        })
        .into_iter()
        .flatten();

    let mut forget = Vec::new();
    for key in ledger.chain(unrecorded) {
        if desired.objects.contains_key(key) {
            continue;
        }
        match live.rows.get(key) {
            Some(row) if owned_by_source(row) || row.managed_by.is_none() => {
                if !row.gitops {
                    changes.push(Box::new(
                        Change::new(Action::Suspended, key.clone(), row.object(), None)
                            .note("suspended in the database; not pruned"),
                    ));
                } else if options.prune {
                    changes.push(Box::new(
                        Change::new(Action::Delete, key.clone(), row.object(), None)
                            .note("no longer declared"),
                    ));
                }
            }
            _ => forget.push(key.clone()),
        }
    }
    changes.par_sort_unstable_by(|a, b| a.key.cmp(&b.key));
    // Unboxed once, in order.
    let changes: Vec<Change> = changes.into_iter().map(|change| *change).collect();
    forget.sort();
    let mut recorded: Vec<(&Key, Option<&str>)> = live
        .claims
        .iter()
        .flat_map(|(key, claims)| claims.iter().map(move |c| (key, c)))
        .filter(|(_, c)| c.source == source)
        .map(|(key, c)| (key, c.declared_in.as_deref()))
        .collect();
    recorded.sort_unstable();
    let current: Vec<(&Key, Option<&str>)> = changes
        .iter()
        .filter(|c| c.owner.is_some())
        .map(|c| (&c.key, c.declared_in.as_deref()))
        .collect();
    let claims_changed = recorded != current;
    Plan {
        changes,
        forget,
        managed: managed_count,
        managed_by_kind,
        claims_changed,
    }
}

fn plan_declared(
    key: &Key,
    declaration: &Declaration,
    row: Option<&LiveRow>,
    live: &LiveState,
    is_managed: bool,
    source: &str,
) -> Option<Change> {
    let desired = &declaration.object;
    let with_origin = |mut change: Change| {
        change.origin = Some(declaration.origin.clone());
        change.declared_in = Some(declaration.origin.file.clone());
        Some(change)
    };
    // Cloned only when a change is made: a no-op sync makes none. (Missing
    // for a row read without its content, which the plan is then made again
    // with: `Plan::unread_rows`.)
    let before = || row.and_then(LiveRow::object);
    if declaration.suspended {
        return with_origin(
            Change::new(
                Action::Suspended,
                key.clone(),
                before(),
                Some(desired.clone()),
            )
            .note(SUSPENDED_IN_SOURCE),
        );
    }
    let Some(row) = row else {
        return if is_managed {
            let mut change = Change::new(Action::Drift, key.clone(), None, Some(desired.clone()))
                .note("deleted by hand");
            change.drift_reported = live
                .ledger_entry(key, None)
                .is_some_and(|m| m.reported_hash.as_deref() == Some(DELETED));
            change.drift_hash = Some(DELETED.to_owned());
            with_origin(change)
        } else {
            with_origin(Change::new(
                Action::Create,
                key.clone(),
                None,
                Some(desired.clone()),
            ))
        };
    };
    if !row.gitops {
        return with_origin(
            Change::new(
                Action::Suspended,
                key.clone(),
                before(),
                Some(desired.clone()),
            )
            .note("suspended in the database; left alone"),
        );
    }
    match row.managed_by.as_deref() {
        Some(owner) if owner == source => {}
        None if is_managed => {}
        Some(other) => {
            let mut change = Change::new(
                Action::Conflict,
                key.clone(),
                before(),
                Some(desired.clone()),
            )
            .note(format!("owned by source `{other}`"));
            change.owner = Some(other.to_owned());
            return with_origin(change);
        }
        None => {
            return with_origin(
                Change::new(Action::Conflict, key.clone(), before(), Some(desired.clone()))
                    .note("the row exists and no source manages it; accord does not take over rows it did not create"),
            );
        }
    }
    if let Some(claim) = live
        .claims
        .get(key)
        .and_then(|claims| claims.iter().find(|c| c.source != source))
    {
        let place = claim
            .declared_in
            .as_deref()
            .map(|file| format!(" in {file}"))
            .unwrap_or_default();
        return with_origin(
            Change::new(Action::Conflict, key.clone(), before(), Some(desired.clone())).note(
                format!(
                    "also declared by source `{}`{place}; neither applies it until one stops declaring it",
                    claim.source
                ),
            ),
        );
    }
    let disowned = row.managed_by.is_none();
    let unchanged = row.holds(declaration);
    if !disowned && row.as_applied() {
        return (!unchanged)
            .then(|| Change::new(Action::Update, key.clone(), before(), Some(desired.clone())))
            .and_then(with_origin);
    }
    if !disowned && unchanged {
        // Edited by hand to exactly what is declared: nothing to put back,
        // only the record of what accord wrote is stale.
        return with_origin(
            Change::new(Action::Update, key.clone(), before(), Some(desired.clone()))
                .note("already matches; recording it as applied"),
        );
    }
    let note = if disowned {
        "ownership removed by hand"
    } else {
        "edited by hand"
    };
    let live_hash = hex::encode(row.digest());
    let mut change =
        Change::new(Action::Drift, key.clone(), before(), Some(desired.clone())).note(note);
    change.drift_reported = live
        .ledger_entry(key, Some(row))
        .is_some_and(|m| m.reported_hash.as_deref() == Some(live_hash.as_str()));
    change.drift_hash = Some(live_hash);
    with_origin(change)
}

/// The note of an object its source declares with `gitops: false`.
pub const SUSPENDED_IN_SOURCE: &str = "gitops: false; left alone";

/// The `drift_hash` recorded for a managed row that was deleted by hand.
pub const DELETED: &str = "deleted";

fn field_changes(before: Option<&Object>, after: Option<&Object>) -> Vec<FieldChange> {
    let (Some(before), Some(after)) = (before, after) else {
        return Vec::new();
    };
    let (Value::Object(b), Value::Object(a)) = (before.to_json(), after.to_json()) else {
        return Vec::new();
    };
    let mut fields: Vec<&String> = b.keys().chain(a.keys()).collect();
    fields.sort();
    fields.dedup();
    fields
        .into_iter()
        .filter_map(|field| {
            let old = b.get(field).cloned().unwrap_or(Value::Null);
            let new = a.get(field).cloned().unwrap_or(Value::Null);
            (old != new).then(|| FieldChange {
                field: field.clone(),
                before: old,
                after: new,
            })
        })
        .collect()
}

/// Why a plan was refused by the deletion guard. Its text says what was
/// refused; the caller adds what the reader can do about it (`--force`
/// on the command line, an approval for the controller).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuardRefusal {
    /// Deletions this plan would make.
    pub deletes: usize,
    /// Deletions made earlier in the window.
    pub earlier: usize,
    /// The rows the source managed before the window's deletions.
    pub managed: usize,
    pub max_percent: u32,
    /// Identifies exactly the set of keys refused, so an approval of it
    /// does not also approve a different set.
    pub set: String,
}

impl fmt::Display for GuardRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.deletes + self.earlier;
        let percent = total as f64 * 100.0 / self.managed.max(1) as f64;
        if self.earlier == 0 && self.deletes >= self.managed {
            write!(
                f,
                "refusing to delete all {} rows this source manages",
                self.managed
            )
        } else if self.earlier == 0 {
            write!(
                f,
                "refusing to delete {} of {} rows this source manages ({percent:.1}%, more than the {}% allowed)",
                self.deletes, self.managed, self.max_percent
            )
        } else {
            write!(
                f,
                "refusing to delete {} rows: with the {} deleted earlier in the deletion window that is {total} of the {} rows this source managed ({percent:.1}%, more than the {}% allowed)",
                self.deletes, self.earlier, self.managed, self.max_percent
            )
        }
    }
}

impl std::error::Error for GuardRefusal {}

/// The deletion guard: an emptied folder, a wrong path, a deleted CRD or a
/// namespace deletion must not wipe the database. A plan is refused when it
/// would delete every row the source manages, or when its deletions and
/// the `earlier` ones of the window (from the source's sync records)
/// together exceed `max_delete_percent` of what the source managed before
/// them: deletions add up across syncs, so a burst of small syncs (one
/// `kubectl delete` at a time, a namespace deletion streaming in) is judged
/// as the one wipe it is.
pub fn guard(plan: &Plan, max_delete_percent: u32, earlier: usize) -> Result<(), GuardRefusal> {
    let deletes = plan.count(Action::Delete);
    if deletes == 0 {
        return Ok(());
    }
    let managed = plan.managed + earlier;
    let total = deletes + earlier;
    let too_many = total as u128 * 100 > max_delete_percent as u128 * managed as u128;
    if deletes >= plan.managed || too_many {
        Err(GuardRefusal {
            deletes,
            earlier,
            managed,
            max_percent: max_delete_percent,
            set: deletion_set(plan),
        })
    } else {
        Ok(())
    }
}

/// A short hash of the keys a plan deletes, in key order.
pub fn deletion_set(plan: &Plan) -> String {
    let mut hasher = blake3::Hasher::new();
    for change in plan.changes.iter().filter(|c| c.action == Action::Delete) {
        let key = &change.key;
        for part in [key.kind.as_str(), key.app.as_str(), key.id.as_str()] {
            hasher.update(&(part.len() as u64).to_le_bytes());
            hasher.update(part.as_bytes());
        }
    }
    hasher.finalize().to_hex()[..16].to_owned()
}
