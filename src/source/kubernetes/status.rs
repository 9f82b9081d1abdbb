//! What accord writes back on each custom resource: `Ready` and `Synced`
//! conditions with a reason a human can act on, and Events when something
//! went wrong or was put back. Computing a status is pure; writing it skips
//! every object whose status would not change, so a no-op sync makes no
//! API writes.

use serde_json::json;

use super::resources::{Condition, ObjectStatus};

/// The field manager of every status accord writes (server-side apply).
pub const FIELD_MANAGER: &str = "accord";

pub mod reasons {
    /// The database holds what the object declares.
    pub const APPLIED: &str = "Applied";
    /// accord refused the object (a rule the schema cannot express, a duplicate).
    pub const INVALID: &str = "Invalid";
    /// Another source owns the key, or declares it too.
    pub const CONFLICT: &str = "Conflict";
    /// The organization has `gitops: false` (in the object or the database).
    pub const SUSPENDED: &str = "Suspended";
    /// The sync could not be written; the previous state stays.
    pub const DATABASE_ERROR: &str = "DatabaseError";
    /// The row was edited by hand and the drift policy is `report`.
    pub const DRIFTED: &str = "Drifted";
    /// The deletion guard refused the sync (too many rows would go).
    pub const DELETION_REFUSED: &str = "DeletionRefused";
    /// Event reason: a hand edit was put back.
    pub const DRIFT_CORRECTED: &str = "DriftCorrected";
}

pub const READY: &str = "Ready";
pub const SYNCED: &str = "Synced";

/// What happened to one object in one sync.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub reason: &'static str,
    pub message: String,
    /// Whether the database holds what the object declares.
    pub ready: bool,
    /// Whether this sync applied the object's current generation.
    pub synced: bool,
    /// An Event to publish when the status changes (or, for drift
    /// correction, each time it happens).
    pub event: Option<EventNote>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventNote {
    pub warning: bool,
    pub reason: &'static str,
    pub note: String,
    /// Published even when the status did not change.
    pub always: bool,
}

impl Outcome {
    pub fn applied() -> Outcome {
        Outcome {
            reason: reasons::APPLIED,
            message: "the database holds what this object declares".into(),
            ready: true,
            synced: true,
            event: None,
        }
    }

    pub fn drift_corrected(note: &str) -> Outcome {
        Outcome {
            event: Some(EventNote {
                warning: false,
                reason: reasons::DRIFT_CORRECTED,
                note: format!("the row was {note}; accord put it back"),
                always: true,
            }),
            ..Outcome::applied()
        }
    }

    pub fn failed(reason: &'static str, message: String, ready: bool) -> Outcome {
        Outcome {
            reason,
            event: Some(EventNote {
                warning: true,
                reason,
                note: message.clone(),
                always: false,
            }),
            message,
            ready,
            synced: false,
        }
    }
}

/// The status an object should carry after `outcome`, keeping each
/// condition's transition time when its status did not flip.
pub fn status_for(
    outcome: &Outcome,
    generation: Option<i64>,
    current: Option<&ObjectStatus>,
    now: &str,
) -> ObjectStatus {
    let condition = |type_: &str, ok: bool| {
        let status = if ok { "True" } else { "False" };
        let since = current
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
            .filter(|c| c.status == status)
            .map_or_else(|| now.to_owned(), |c| c.last_transition_time.clone());
        Condition {
            type_: type_.to_owned(),
            status: status.to_owned(),
            reason: outcome.reason.to_owned(),
            message: truncate(&outcome.message, 1024),
            observed_generation: generation,
            last_transition_time: since,
        }
    };
    ObjectStatus {
        conditions: vec![
            condition(READY, outcome.ready),
            condition(SYNCED, outcome.synced),
        ],
        observed_generation: generation,
        last_synced_at: Some(now.to_owned()),
    }
}

/// Whether writing `next` over `current` would change anything a reader
/// cares about (times alone do not count).
pub fn differs(current: Option<&ObjectStatus>, next: &ObjectStatus) -> bool {
    let Some(current) = current else {
        return true;
    };
    let strip = |s: &ObjectStatus| {
        (
            s.observed_generation,
            s.conditions
                .iter()
                .map(|c| {
                    (
                        c.type_.clone(),
                        c.status.clone(),
                        c.reason.clone(),
                        c.message.clone(),
                        c.observed_generation,
                    )
                })
                .collect::<Vec<_>>(),
        )
    };
    strip(current) != strip(next)
}

/// The server-side apply body for `/status`.
pub fn apply_body(kind: &str, status: &ObjectStatus) -> serde_json::Value {
    json!({
        "apiVersion": format!("{}/{}", super::resources::GROUP, super::resources::VERSION),
        "kind": kind,
        "status": status,
    })
}

/// At most `max` bytes, cut at a character boundary.
pub fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_that_only_differs_in_times_is_not_rewritten() {
        let first = status_for(&Outcome::applied(), Some(2), None, "2026-01-01T00:00:00Z");
        let again = status_for(
            &Outcome::applied(),
            Some(2),
            Some(&first),
            "2026-01-02T00:00:00Z",
        );
        assert!(!differs(Some(&first), &again));
        assert_eq!(
            again.conditions[0].last_transition_time, "2026-01-01T00:00:00Z",
            "no flip, the transition time stays"
        );
        let newer = status_for(&Outcome::applied(), Some(3), Some(&first), "t");
        assert!(differs(Some(&first), &newer), "a new generation is news");
    }

    #[test]
    fn a_flip_to_false_moves_the_transition_time() {
        let ok = status_for(&Outcome::applied(), Some(1), None, "t1");
        let bad = status_for(
            &Outcome::failed(reasons::CONFLICT, "owned by source `git`".into(), false),
            Some(1),
            Some(&ok),
            "t2",
        );
        assert!(differs(Some(&ok), &bad));
        assert_eq!(bad.conditions[0].status, "False");
        assert_eq!(bad.conditions[0].last_transition_time, "t2");
        assert_eq!(bad.conditions[1].reason, reasons::CONFLICT);
    }
}
