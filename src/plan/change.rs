//! What a plan is made of: changes, each with its action and field diff.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use super::live::LiveState;
use crate::model::render;
use crate::model::{Key, Object, Origin};

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
    pub before: Option<Box<Object>>,
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
            before: before.map(Box::new),
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

    pub(super) fn note(mut self, note: impl Into<String>) -> Change {
        self.note = note.into();
        self
    }

    /// A unified diff of the object rendered as YAML, before → after.
    pub fn diff(&self) -> String {
        render::object_diff(self.before.as_deref(), self.after.as_deref())
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

/// The note of an object its source declares with `gitops: false`.
pub const SUSPENDED_IN_SOURCE: &str = "gitops: false; left alone";

/// The `drift_hash` recorded for a managed row that was deleted by hand.
pub const DELETED: &str = "deleted";

/// The top-level fields whose values differ between two versions of an
/// object (none when either side is missing).
pub fn field_changes(before: Option<&Object>, after: Option<&Object>) -> Vec<FieldChange> {
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
