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
    /// `Synced`: this generation is valid and no other owner holds its key.
    pub const ACCEPTED: &str = "Accepted";
    /// `Ready`: the database holds what this generation declares.
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

/// Whether the database holds what the object's current generation
/// declares, now: the summary `kubectl wait --for=condition=Ready` waits on.
pub const READY: &str = "Ready";
/// Whether accord read this generation and accepted it: `False` means the
/// object's author has something to fix (or settle with another source),
/// whatever the database holds.
pub const SYNCED: &str = "Synced";

/// A condition's `status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Truth {
    True,
    False,
    Unknown,
}

impl Truth {
    pub fn as_str(self) -> &'static str {
        match self {
            Truth::True => "True",
            Truth::False => "False",
            Truth::Unknown => "Unknown",
        }
    }
}

/// What one condition says after a sync.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub status: Truth,
    pub reason: &'static str,
    pub message: String,
}

impl Verdict {
    fn new(status: Truth, reason: &'static str, message: impl Into<String>) -> Verdict {
        Verdict {
            status,
            reason,
            message: message.into(),
        }
    }

    fn accepted() -> Verdict {
        Verdict::new(
            Truth::True,
            reasons::ACCEPTED,
            "this generation is valid and no other owner holds its key",
        )
    }
}

/// What happened to one object in one sync.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The `Ready` condition: the database, now.
    pub ready: Verdict,
    /// The `Synced` condition: this generation, as accord read it.
    pub synced: Verdict,
    /// An Event to publish when the status changes (or, for drift
    /// correction, each time it happens).
    pub event: Option<EventNote>,
    /// The app and id the object applies as: the spec does not always say
    /// (the app may come from the namespace, or default), so the status does.
    pub applies_as: Option<AppliesAs>,
}

/// The key an object applies as, as `status.app` and `status.id` show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppliesAs {
    pub app: String,
    pub id: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventNote {
    pub warning: bool,
    pub reason: &'static str,
    pub note: String,
    /// Published even when the status did not change.
    pub always: bool,
}

impl EventNote {
    fn warning(reason: &'static str, note: &str) -> EventNote {
        EventNote {
            warning: true,
            reason,
            note: note.to_owned(),
            always: false,
        }
    }
}

impl Outcome {
    pub fn applied() -> Outcome {
        Outcome {
            ready: Verdict::new(
                Truth::True,
                reasons::APPLIED,
                "the database holds what this generation declares",
            ),
            synced: Verdict::accepted(),
            event: None,
            applies_as: None,
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

    /// Accepted, but the database does not hold it: `Ready` is `False`
    /// with `reason` (a failed write, a refused sync, a reported drift).
    pub fn not_applied(reason: &'static str, message: String) -> Outcome {
        Outcome {
            event: Some(EventNote::warning(reason, &message)),
            ready: Verdict::new(Truth::False, reason, message),
            synced: Verdict::accepted(),
            applies_as: None,
        }
    }

    /// Not accepted: both conditions are `False` with `reason`; `Synced`
    /// says what is wrong, `Ready` what the database holds meanwhile.
    pub fn rejected(reason: &'static str, problem: String, database: &str) -> Outcome {
        Outcome {
            event: Some(EventNote::warning(reason, &problem)),
            ready: Verdict::new(Truth::False, reason, database),
            synced: Verdict::new(Truth::False, reason, problem),
            applies_as: None,
        }
    }

    /// Suspended by `gitops: false` (`note` says where): nothing is wrong,
    /// and nothing is written, so `Ready` is `Unknown`, not `False`.
    pub fn suspended(note: &str) -> Outcome {
        Outcome {
            ready: Verdict::new(
                Truth::Unknown,
                reasons::SUSPENDED,
                format!("unknown while suspended ({note}): accord neither writes nor corrects this row until gitops is enabled again"),
            ),
            synced: Verdict::new(
                Truth::True,
                reasons::SUSPENDED,
                format!("accepted; suspended ({note})"),
            ),
            event: None,
            applies_as: None,
        }
    }
}

/// The status an object should carry after `outcome`, keeping each
/// condition's transition time when its status did not flip. `requested`
/// is the object's reconcile request, which this sync has handled.
pub fn status_for(
    outcome: &Outcome,
    generation: Option<i64>,
    requested: Option<&str>,
    current: Option<&ObjectStatus>,
    now: &str,
) -> ObjectStatus {
    let condition = |type_: &str, verdict: &Verdict| {
        let status = verdict.status.as_str();
        let since = current
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
            .filter(|c| c.status == status)
            .map_or_else(|| now.to_owned(), |c| c.last_transition_time.clone());
        Condition {
            type_: type_.to_owned(),
            status: status.to_owned(),
            reason: verdict.reason.to_owned(),
            message: truncate(&verdict.message, 1024),
            observed_generation: generation,
            last_transition_time: since,
        }
    };
    ObjectStatus {
        conditions: vec![
            condition(READY, &outcome.ready),
            condition(SYNCED, &outcome.synced),
        ],
        observed_generation: generation,
        last_synced_at: Some(now.to_owned()),
        app: outcome.applies_as.as_ref().map(|a| a.app.clone()),
        id: outcome.applies_as.as_ref().map(|a| a.id.clone()),
        // A removed annotation leaves the last value handled, as Flux does.
        last_handled_reconcile_at: requested
            .map(str::to_owned)
            .or_else(|| current.and_then(|c| c.last_handled_reconcile_at.clone())),
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
            (s.app.clone(), s.id.clone()),
            s.last_handled_reconcile_at.clone(),
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
        let first = status_for(
            &Outcome::applied(),
            Some(2),
            None,
            None,
            "2026-01-01T00:00:00Z",
        );
        let again = status_for(
            &Outcome::applied(),
            Some(2),
            None,
            Some(&first),
            "2026-01-02T00:00:00Z",
        );
        assert!(!differs(Some(&first), &again));
        assert_eq!(
            again.conditions[0].last_transition_time, "2026-01-01T00:00:00Z",
            "no flip, the transition time stays"
        );
        let newer = status_for(&Outcome::applied(), Some(3), None, Some(&first), "t");
        assert!(differs(Some(&first), &newer), "a new generation is news");
    }

    #[test]
    fn a_flip_to_false_moves_the_transition_time() {
        let ok = status_for(&Outcome::applied(), Some(1), None, None, "t1");
        let bad = status_for(
            &Outcome::rejected(
                reasons::CONFLICT,
                "owned by source `git`".into(),
                "not applied",
            ),
            Some(1),
            None,
            Some(&ok),
            "t2",
        );
        assert!(differs(Some(&ok), &bad));
        assert_eq!(bad.conditions[0].status, "False");
        assert_eq!(bad.conditions[0].last_transition_time, "t2");
        assert_eq!(bad.conditions[1].reason, reasons::CONFLICT);
    }

    #[test]
    fn ready_and_synced_say_different_things_when_only_the_database_is_behind() {
        let failed = status_for(
            &Outcome::not_applied(reasons::DATABASE_ERROR, "disk on fire".into()),
            Some(1),
            None,
            None,
            "t",
        );
        let [ready, synced] = [&failed.conditions[0], &failed.conditions[1]];
        assert_eq!(
            (
                ready.type_.as_str(),
                ready.status.as_str(),
                ready.reason.as_str()
            ),
            (READY, "False", reasons::DATABASE_ERROR)
        );
        assert_eq!(
            (
                synced.type_.as_str(),
                synced.status.as_str(),
                synced.reason.as_str()
            ),
            (SYNCED, "True", reasons::ACCEPTED),
            "the object itself is fine"
        );
        assert_ne!(ready.message, synced.message);

        let applied = status_for(&Outcome::applied(), Some(1), None, None, "t");
        assert_ne!(
            applied.conditions[0].reason, applied.conditions[1].reason,
            "even when all is well, each says its own thing"
        );
    }

    #[test]
    fn a_rejected_object_says_what_is_wrong_and_separately_what_the_database_holds() {
        let outcome = Outcome::rejected(
            reasons::INVALID,
            "userId and contactId: one, not both".into(),
            "not applied: the version applied before stays in the database",
        );
        let status = status_for(&outcome, Some(2), None, None, "t");
        assert!(status.conditions.iter().all(|c| c.status == "False"));
        assert!(status.conditions[1].message.contains("not both"));
        assert!(status.conditions[0]
            .message
            .contains("version applied before"));
        assert!(outcome.event.is_some_and(|e| e.warning));
    }

    #[test]
    fn a_suspended_organization_is_not_shown_as_a_failure() {
        let outcome = Outcome::suspended("gitops: false; left alone");
        let status = status_for(&outcome, Some(1), None, None, "t");
        let statuses: Vec<(&str, &str)> = status
            .conditions
            .iter()
            .map(|c| (c.status.as_str(), c.reason.as_str()))
            .collect();
        assert_eq!(
            statuses,
            [
                ("Unknown", reasons::SUSPENDED),
                ("True", reasons::SUSPENDED)
            ]
        );
        assert!(outcome.event.is_none(), "no Warning Event");
    }

    #[test]
    fn a_reconcile_request_is_recorded_once_handled_and_kept_after_it_is_removed() {
        let applied = Outcome::applied();
        let first = status_for(&applied, Some(1), None, None, "t1");
        assert_eq!(first.last_handled_reconcile_at, None);

        let asked = status_for(&applied, Some(1), Some("1767225600"), Some(&first), "t2");
        assert_eq!(
            asked.last_handled_reconcile_at.as_deref(),
            Some("1767225600")
        );
        assert!(
            differs(Some(&first), &asked),
            "a handled request is written"
        );

        let again = status_for(&applied, Some(1), Some("1767225600"), Some(&asked), "t3");
        assert!(!differs(Some(&asked), &again), "and only once");

        let removed = status_for(&applied, Some(1), None, Some(&asked), "t4");
        assert_eq!(
            removed.last_handled_reconcile_at.as_deref(),
            Some("1767225600")
        );
        assert!(!differs(Some(&asked), &removed));
    }
}
