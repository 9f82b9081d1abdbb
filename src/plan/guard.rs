//! The deletion guard: an emptied folder, a wrong path, a deleted CRD or a
//! namespace deletion must not wipe the database.

use std::fmt;

use super::change::{Action, Plan};

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
