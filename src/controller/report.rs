//! What a source's status says after a sync: a pure function of the status
//! before and how the sync settled, so every rule of it is unit-tested.

use chrono::{DateTime, Utc};

use super::state::{Counts, OpenItem, RefusedDeletions, SourceStatus, SyncState};
use crate::model::Kind;
use crate::plan::{self, Action, GuardRefusal, Plan};
use crate::policy::DriftPolicy;
use crate::source::Commit;

/// How one sync settled, as far as the source's status is concerned.
#[derive(Debug)]
pub enum Settled<'a> {
    /// The plan was applied (or had nothing to write). `held`: deletions
    /// the guard refused while the rest was applied.
    Synced {
        revision: &'a str,
        plan: &'a Plan,
        /// How many objects the source declares.
        declared: usize,
        held: Option<&'a GuardRefusal>,
        /// The revision's commit (Git sources).
        commit: Option<&'a Commit>,
    },
    /// The guard refused the whole plan; nothing was applied.
    Refused {
        revision: &'a str,
        refusal: &'a GuardRefusal,
    },
    /// The sync failed before applying: the source, the database, a lock.
    Failed { message: &'a str },
}

/// What an operator is told to do about refused deletions.
pub fn approve_hint(source: &str) -> String {
    format!(
        "if they are intended, approve exactly these deletions: `accord approve --server URL {source}` \
         (POST /api/v1/sources/{source}/approve-deletions)"
    )
}

/// The status after a sync. `notes` (a force-push, say) are appended to
/// its message; `rejected` is how many objects the source could not take.
pub fn status_after(
    previous: &SourceStatus,
    settled: &Settled<'_>,
    drift: DriftPolicy,
    notes: &[String],
    now: DateTime<Utc>,
) -> SourceStatus {
    let mut status = previous.clone();
    let with_notes = |mut message: String| {
        for note in notes {
            message.push_str("; note: ");
            message.push_str(note);
        }
        message
    };
    match settled {
        Settled::Failed { message } => {
            status.state = SyncState::Error;
            if !message.is_empty() {
                status.message = with_notes((*message).to_owned());
            }
        }
        Settled::Refused { revision, refusal } => {
            let message = format!(
                "revision {revision} not applied: {refusal}; {}",
                approve_hint(&status.name)
            );
            status.state = SyncState::Error;
            status.deletion_refused = Some(refused(refusal, &message));
            status.message = with_notes(message);
        }
        Settled::Synced {
            revision,
            plan,
            declared,
            held,
            commit,
        } => {
            let summary = plan.summary();
            let item = |c: &plan::Change| OpenItem {
                source: status.name.clone(),
                kind: c.key.kind.as_str().into(),
                app: c.key.app.to_string(),
                id: c.key.id.to_string(),
                note: c.note.clone(),
                diff: c.diff(),
            };
            let open_drift: Vec<OpenItem> = match drift {
                DriftPolicy::Report => plan
                    .changes
                    .iter()
                    .filter(|c| c.action == Action::Drift)
                    .map(item)
                    .collect(),
                DriftPolicy::Correct => Vec::new(),
            };
            let conflicts: Vec<OpenItem> = plan
                .changes
                .iter()
                .filter(|c| c.action == Action::Conflict)
                .map(item)
                .collect();
            let suspended: Vec<OpenItem> = plan
                .changes
                .iter()
                .filter(|c| c.action == Action::Suspended && c.note == plan::SUSPENDED_IN_SOURCE)
                .map(item)
                .collect();
            let state = if !open_drift.is_empty() || !conflicts.is_empty() || held.is_some() {
                SyncState::OutOfSync
            } else if summary.suspended > 0 && summary.suspended == *declared {
                SyncState::Suspended
            } else {
                SyncState::Synced
            };
            let mut message = match state {
                SyncState::OutOfSync
                    if held.is_some() && open_drift.is_empty() && conflicts.is_empty() =>
                {
                    format!("revision {revision} applied")
                }
                SyncState::OutOfSync => format!(
                    "{} drifted object(s) left in place, {} conflict(s)",
                    open_drift.len(),
                    conflicts.len()
                ),
                SyncState::Suspended => "every declared object is suspended".into(),
                _ => format!("revision {revision} applied"),
            };
            if summary.suspended > 0 && state != SyncState::Suspended {
                message.push_str(&format!("; {} suspended", summary.suspended));
            }
            // Object-by-object sources apply what is valid; say what was not.
            if !status.errors.is_empty() {
                message.push_str(&format!(
                    "; {} object(s) rejected, see errors",
                    status.errors.len()
                ));
            }
            status.deletion_refused = None;
            if let Some(refusal) = held {
                let held_message = format!(
                    "deletions held back: {refusal}; {}",
                    approve_hint(&status.name)
                );
                message.push_str("; ");
                message.push_str(&held_message);
                status.deletion_refused = Some(refused(refusal, &held_message));
            }
            let managed: usize = Kind::ALL.iter().map(|k| plan.managed_after(*k)).sum();
            status.state = state;
            status.last_applied_revision = Some((*revision).to_owned());
            status.last_applied_commit = commit.cloned();
            status.last_success_at = Some(now);
            status.message = with_notes(message);
            status.counts = Counts {
                managed,
                created: summary.create,
                updated: summary.update,
                deleted: summary.delete,
                drifted: summary.drift,
                conflicts: summary.conflict,
                suspended: summary.suspended,
            };
            status.drift = open_drift;
            status.conflicts = conflicts;
            status.suspended = suspended;
        }
    }
    status
}

fn refused(refusal: &GuardRefusal, message: &str) -> RefusedDeletions {
    RefusedDeletions {
        set: refusal.set.clone(),
        deletes: refusal.deletes,
        earlier: refusal.earlier,
        managed: refusal.managed,
        message: message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Key;
    use crate::plan::Change;

    fn status() -> SourceStatus {
        SourceStatus::new("platform", "git", "file:///repo".into())
    }

    fn refusal() -> GuardRefusal {
        GuardRefusal {
            deletes: 3,
            earlier: 30,
            managed: 36,
            max_percent: 25,
            set: "0123456789abcdef".into(),
        }
    }

    fn plan_with(actions: &[Action]) -> Plan {
        let changes = actions
            .iter()
            .enumerate()
            .map(|(i, action)| {
                let key = Key {
                    kind: Kind::Permit,
                    app: "unnamed".into(),
                    id: format!("p{i}").as_str().into(),
                };
                let mut change = Change::new(*action, key, None, None);
                if *action == Action::Suspended {
                    change.note = plan::SUSPENDED_IN_SOURCE.into();
                }
                change
            })
            .collect();
        Plan {
            changes,
            managed: 10,
            managed_by_kind: [0, 10, 0],
            ..Plan::default()
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).expect("time")
    }

    #[test]
    fn an_applied_plan_makes_the_source_synced_with_its_counts() {
        let plan = plan_with(&[Action::Create, Action::Update, Action::Delete]);
        let settled = Settled::Synced {
            revision: "abc",
            plan: &plan,
            declared: 10,
            held: None,
            commit: None,
        };

        let after = status_after(&status(), &settled, DriftPolicy::Correct, &[], now());

        assert_eq!(after.state, SyncState::Synced);
        assert_eq!(after.last_applied_revision.as_deref(), Some("abc"));
        assert_eq!(after.last_success_at, Some(now()));
        assert_eq!(
            (
                after.counts.created,
                after.counts.updated,
                after.counts.deleted
            ),
            (1, 1, 1)
        );
        assert_eq!(
            after.counts.managed, 10,
            "10 managed, one created, one deleted"
        );
        assert_eq!(after.message, "revision abc applied");
        assert!(after.deletion_refused.is_none());
    }

    #[test]
    fn the_applied_commit_is_the_synced_revisions_and_outlives_a_failed_sync() {
        let plan = plan_with(&[Action::Create]);
        let commit = Commit {
            author: "Jane".into(),
            authored_at: now(),
            message: "Grant p0".into(),
        };
        let synced = status_after(
            &status(),
            &Settled::Synced {
                revision: "abc",
                plan: &plan,
                declared: 1,
                held: None,
                commit: Some(&commit),
            },
            DriftPolicy::Correct,
            &[],
            now(),
        );
        assert_eq!(synced.last_applied_commit.as_ref(), Some(&commit));

        let failed = status_after(
            &synced,
            &Settled::Failed { message: "down" },
            DriftPolicy::Correct,
            &[],
            now(),
        );
        assert_eq!(failed.last_applied_commit.as_ref(), Some(&commit));

        // A revision without a commit (a folder) clears it.
        let folder = status_after(
            &failed,
            &Settled::Synced {
                revision: "tree-1",
                plan: &plan,
                declared: 1,
                held: None,
                commit: None,
            },
            DriftPolicy::Correct,
            &[],
            now(),
        );
        assert_eq!(folder.last_applied_commit, None);
    }

    #[test]
    fn drift_left_in_place_makes_the_source_out_of_sync_only_in_report_mode() {
        let plan = plan_with(&[Action::Drift]);
        let settled = Settled::Synced {
            revision: "abc",
            plan: &plan,
            declared: 10,
            held: None,
            commit: None,
        };

        let reported = status_after(&status(), &settled, DriftPolicy::Report, &[], now());
        let corrected = status_after(&status(), &settled, DriftPolicy::Correct, &[], now());

        assert_eq!(reported.state, SyncState::OutOfSync);
        assert_eq!(reported.drift.len(), 1);
        assert_eq!(corrected.state, SyncState::Synced);
        assert!(corrected.drift.is_empty());
    }

    #[test]
    fn a_source_whose_every_object_is_suspended_is_suspended() {
        let plan = plan_with(&[Action::Suspended, Action::Suspended]);
        let settled = Settled::Synced {
            revision: "abc",
            plan: &plan,
            declared: 2,
            held: None,
            commit: None,
        };

        let after = status_after(&status(), &settled, DriftPolicy::Correct, &[], now());

        assert_eq!(after.state, SyncState::Suspended);
        assert_eq!(after.suspended.len(), 2);
    }

    #[test]
    fn a_refused_plan_is_an_error_that_names_the_approval_and_keeps_the_applied_revision() {
        let mut before = status();
        before.last_applied_revision = Some("old".into());
        let refusal = refusal();
        let settled = Settled::Refused {
            revision: "new",
            refusal: &refusal,
        };

        let after = status_after(&before, &settled, DriftPolicy::Correct, &[], now());

        assert_eq!(after.state, SyncState::Error);
        assert_eq!(after.last_applied_revision.as_deref(), Some("old"));
        assert!(
            after
                .message
                .contains("accord approve --server URL platform"),
            "{}",
            after.message
        );
        assert!(
            !after.message.contains("--force"),
            "the controller has no --force: {}",
            after.message
        );
        let refused = after.deletion_refused.expect("refusal shown");
        assert_eq!(
            (
                refused.set.as_str(),
                refused.deletes,
                refused.earlier,
                refused.managed
            ),
            ("0123456789abcdef", 3, 30, 36)
        );
    }

    #[test]
    fn held_deletions_leave_the_rest_applied_and_the_source_out_of_sync() {
        let plan = plan_with(&[Action::Create]);
        let refusal = refusal();
        let settled = Settled::Synced {
            revision: "17",
            plan: &plan,
            declared: 10,
            held: Some(&refusal),
            commit: None,
        };

        let after = status_after(&status(), &settled, DriftPolicy::Correct, &[], now());

        assert_eq!(after.state, SyncState::OutOfSync);
        assert_eq!(after.last_applied_revision.as_deref(), Some("17"));
        assert!(
            after.message.contains("deletions held back"),
            "{}",
            after.message
        );
        assert!(after.deletion_refused.is_some());

        let cleared = status_after(
            &after,
            &Settled::Synced {
                revision: "18",
                plan: &plan,
                declared: 10,
                held: None,
                commit: None,
            },
            DriftPolicy::Correct,
            &[],
            now(),
        );
        assert!(
            cleared.deletion_refused.is_none(),
            "shown until no longer planned"
        );
        assert_eq!(cleared.state, SyncState::Synced);
    }

    #[test]
    fn a_failure_keeps_what_was_applied_and_says_why_with_the_notes() {
        let mut before = status();
        before.last_applied_revision = Some("old".into());
        before.state = SyncState::Synced;

        let after = status_after(
            &before,
            &Settled::Failed {
                message: "database error: gone",
            },
            DriftPolicy::Correct,
            &["force-push".into()],
            now(),
        );

        assert_eq!(after.state, SyncState::Error);
        assert_eq!(after.last_applied_revision.as_deref(), Some("old"));
        assert_eq!(after.message, "database error: gone; note: force-push");
    }
}
