//! The planner: a pure function from what a source declares and what the
//! database holds to the changes that would make them agree. No I/O.

mod change;
mod guard;
mod live;

use rayon::prelude::*;

use crate::model::{Declaration, DesiredState, Key, Kind};

pub use change::{
    field_changes, Action, Change, FieldChange, Plan, PlanOptions, Summary, DELETED,
    SUSPENDED_IN_SOURCE,
};
pub use guard::{deletion_set, guard, GuardRefusal};
pub use live::{Claim, LedgerEntry, LiveRow, LiveState, RowMap};

/// Computes what `source` must do to make the database match `desired`.
pub fn plan(desired: &DesiredState, live: &LiveState, source: &str, options: PlanOptions) -> Plan {
    let owned_by_source = |row: &LiveRow| row.managed_by.as_deref() == Some(source);
    // The keys this source manages: its ledger, plus any row that names it as
    // owner without a ledger entry (written by an older accord, or by hand).
    let kind_index = |kind| Kind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
    let mut managed_by_kind = [0; 3];
    for key in live.ledger.keys() {
        managed_by_kind[kind_index(key.kind)] += 1;
    }
    let mut ledger_len = live.ledger.len();
    let mut unrecorded: Vec<&Key> = Vec::new();
    for (key, row) in &live.rows {
        if row.ledger.is_some() {
            ledger_len += 1;
            managed_by_kind[kind_index(key.kind)] += 1;
        } else if owned_by_source(row) && !live.ledger.contains_key(key) {
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
            live.ledger.keys().chain(on_rows)
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
