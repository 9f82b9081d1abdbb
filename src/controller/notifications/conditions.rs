//! What deserves a message: conditions read off a source's status (a failed
//! sync, an invalid revision, open drift, conflicts, a refused deletion) and
//! the history's chain, each told once when it begins and once when it ends
//! — never once per interval. Pure: a tracker compares what it saw last with
//! the status now.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::controller::state::{HistoryStatus, OpenItem, SourceStatus, SyncState};

/// What happened, as receivers filter it (`events:` in the configuration).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    SyncFailed,
    SyncRecovered,
    InvalidRevision,
    DriftDetected,
    DriftCorrected,
    Conflict,
    DeletionRefused,
    AuditChainBroken,
}

impl EventKind {
    pub const ALL: [EventKind; 8] = [
        EventKind::SyncFailed,
        EventKind::SyncRecovered,
        EventKind::InvalidRevision,
        EventKind::DriftDetected,
        EventKind::DriftCorrected,
        EventKind::Conflict,
        EventKind::DeletionRefused,
        EventKind::AuditChainBroken,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::SyncFailed => "sync-failed",
            EventKind::SyncRecovered => "sync-recovered",
            EventKind::InvalidRevision => "invalid-revision",
            EventKind::DriftDetected => "drift-detected",
            EventKind::DriftCorrected => "drift-corrected",
            EventKind::Conflict => "conflict",
            EventKind::DeletionRefused => "deletion-refused",
            EventKind::AuditChainBroken => "audit-chain-broken",
        }
    }

    pub fn parse(text: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

/// Whether a condition begins (`firing`) or ends (`resolved`); an event
/// that is no condition (drift corrected) is `firing` and never resolves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Firing,
    Resolved,
}

/// One message's content, whatever the provider.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub kind: EventKind,
    pub phase: Phase,
    /// The source; none for the history's chain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// One line for a person.
    pub summary: String,
    /// The objects concerned, one line each (`Permit unnamed/p1: edited by hand`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub objects: Vec<String>,
    /// The first diffs, for a glance (capped).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub diff: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// The condition's identity: the same for its firing and its resolution.
    pub fingerprint: String,
    pub at: DateTime<Utc>,
}

/// Objects listed in one message at most; the rest are counted.
const MAX_OBJECTS: usize = 20;
/// Bytes of diff in one message at most.
const MAX_DIFF: usize = 2000;

#[derive(Clone, Debug, PartialEq)]
struct Condition {
    kind: EventKind,
    summary: String,
    /// Objects of a drift or conflict condition, by key.
    items: BTreeMap<String, OpenItem>,
    revision: Option<String>,
}

/// One source's open conditions, as last told.
#[derive(Debug, Default)]
pub struct Tracker {
    open: BTreeMap<String, Condition>,
    last_success: Option<DateTime<Utc>>,
}

fn item_key(item: &OpenItem) -> String {
    format!("{} {}/{}", item.kind, item.app, item.id)
}

fn conditions(status: &SourceStatus) -> BTreeMap<String, Condition> {
    let mut open = BTreeMap::new();
    let condition = |kind, summary: String| Condition {
        kind,
        summary,
        items: BTreeMap::new(),
        revision: status.last_attempted_revision.clone(),
    };
    if let Some(refused) = &status.deletion_refused {
        open.insert(
            format!("deletion-refused:{}", refused.set),
            condition(EventKind::DeletionRefused, refused.message.clone()),
        );
    } else if status.state == SyncState::Error && status.errors.is_empty() {
        open.insert(
            "sync-failed".to_owned(),
            condition(EventKind::SyncFailed, status.message.clone()),
        );
    }
    if !status.errors.is_empty() && status.state == SyncState::Error {
        let revision = status.last_attempted_revision.clone().unwrap_or_default();
        let mut invalid = condition(
            EventKind::InvalidRevision,
            format!(
                "revision {revision} is invalid ({} error(s)); the last good state stays applied",
                status.errors.len()
            ),
        );
        invalid.items = status
            .errors
            .iter()
            .map(|e| (e.clone(), error_item(status, e)))
            .collect();
        open.insert(format!("invalid-revision:{revision}"), invalid);
    }
    for (kind, items, what) in [
        (EventKind::DriftDetected, &status.drift, "drifted"),
        (EventKind::Conflict, &status.conflicts, "in conflict"),
    ] {
        if items.is_empty() {
            continue;
        }
        let mut open_items = condition(kind, String::new());
        open_items.items = items.iter().map(|i| (item_key(i), i.clone())).collect();
        open_items.summary = format!("{} object(s) {what}", items.len());
        open.insert(kind.as_str().to_owned(), open_items);
    }
    open
}

/// A located error as an item, so messages list errors like objects.
fn error_item(status: &SourceStatus, error: &str) -> OpenItem {
    OpenItem {
        source: status.name.clone(),
        kind: String::new(),
        app: String::new(),
        id: String::new(),
        note: error.to_owned(),
        diff: String::new(),
    }
}

fn lines(items: &[&OpenItem]) -> Vec<String> {
    let mut shown: Vec<String> = items
        .iter()
        .take(MAX_OBJECTS)
        .map(|i| {
            if i.kind.is_empty() {
                i.note.clone()
            } else {
                format!("{}: {}", item_key(i), i.note)
            }
        })
        .collect();
    if items.len() > MAX_OBJECTS {
        shown.push(format!("… and {} more", items.len() - MAX_OBJECTS));
    }
    shown
}

fn diffs(items: &[&OpenItem]) -> String {
    let mut out = String::new();
    for item in items.iter().filter(|i| !i.diff.is_empty()) {
        if out.len() + item.diff.len() > MAX_DIFF {
            out.push_str("…\n");
            break;
        }
        out.push_str(&format!("# {}\n{}", item_key(item), item.diff));
        if !out.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

impl Tracker {
    /// The events `status` means, given what this tracker told before. A
    /// sync in progress tells nothing: its outcome will.
    pub fn observe(&mut self, status: &SourceStatus, now: DateTime<Utc>) -> Vec<Event> {
        if status.state == SyncState::Progressing {
            return Vec::new();
        }
        let source = Some(status.name.clone());
        let mut events = Vec::new();
        let now_open = conditions(status);
        for (fingerprint, before) in &self.open {
            match now_open.get(fingerprint) {
                None => events.push(Event {
                    kind: match before.kind {
                        EventKind::SyncFailed => EventKind::SyncRecovered,
                        kind => kind,
                    },
                    phase: Phase::Resolved,
                    source: source.clone(),
                    summary: resolved_summary(before),
                    objects: Vec::new(),
                    diff: String::new(),
                    revision: status.last_applied_revision.clone(),
                    fingerprint: fingerprint.clone(),
                    at: now,
                }),
                // Still open: told again only for objects that are new to it.
                Some(after) => {
                    let new: Vec<&OpenItem> = after
                        .items
                        .iter()
                        .filter(|(key, _)| !before.items.contains_key(*key))
                        .map(|(_, item)| item)
                        .collect();
                    if !new.is_empty() && before.kind != EventKind::InvalidRevision {
                        events.push(firing(after, fingerprint, &new, &source, now));
                    }
                }
            }
        }
        for (fingerprint, after) in &now_open {
            if !self.open.contains_key(fingerprint) {
                let items: Vec<&OpenItem> = after.items.values().collect();
                events.push(firing(after, fingerprint, &items, &source, now));
            }
        }
        // A sync that corrected drift is an event of its own.
        if status.last_success_at != self.last_success
            && status.counts.drifted > 0
            && status.drift.is_empty()
        {
            events.push(Event {
                kind: EventKind::DriftCorrected,
                phase: Phase::Firing,
                source,
                summary: format!(
                    "{} object(s) edited by hand were put back as declared",
                    status.counts.drifted
                ),
                objects: Vec::new(),
                diff: String::new(),
                revision: status.last_applied_revision.clone(),
                fingerprint: format!(
                    "drift-corrected:{}",
                    status
                        .last_success_at
                        .map(|t| t.timestamp_millis())
                        .unwrap_or(0)
                ),
                at: now,
            });
        }
        self.open = now_open;
        self.last_success = status.last_success_at;
        events
    }
}

fn firing(
    condition: &Condition,
    fingerprint: &str,
    items: &[&OpenItem],
    source: &Option<String>,
    now: DateTime<Utc>,
) -> Event {
    let summary = match condition.kind {
        EventKind::DriftDetected | EventKind::Conflict if items.len() < condition.items.len() => {
            format!(
                "{} more object(s) {}; {} open",
                items.len(),
                if condition.kind == EventKind::Conflict {
                    "in conflict"
                } else {
                    "drifted"
                },
                condition.items.len()
            )
        }
        _ => condition.summary.clone(),
    };
    Event {
        kind: condition.kind,
        phase: Phase::Firing,
        source: source.clone(),
        summary,
        objects: lines(items),
        diff: diffs(items),
        revision: condition.revision.clone(),
        fingerprint: fingerprint.to_owned(),
        at: now,
    }
}

fn resolved_summary(condition: &Condition) -> String {
    match condition.kind {
        EventKind::SyncFailed => "syncing again: the last sync succeeded".to_owned(),
        EventKind::InvalidRevision => "the invalid revision was replaced".to_owned(),
        EventKind::DriftDetected => "no drift is open any more".to_owned(),
        EventKind::Conflict => "no conflict is open any more".to_owned(),
        EventKind::DeletionRefused => {
            "the refused deletions were approved or are no longer planned".to_owned()
        }
        kind => format!("{} ended", kind.as_str()),
    }
}

/// The history's chain, told when it breaks and when it holds again.
#[derive(Debug, Default)]
pub struct ChainTracker {
    broken: bool,
}

impl ChainTracker {
    pub fn observe(&mut self, history: &HistoryStatus, now: DateTime<Utc>) -> Option<Event> {
        let broken = history.ok == Some(false);
        if broken == self.broken {
            return None;
        }
        self.broken = broken;
        Some(Event {
            kind: EventKind::AuditChainBroken,
            phase: if broken {
                Phase::Firing
            } else {
                Phase::Resolved
            },
            source: None,
            summary: if broken {
                format!(
                    "the history's hash chain is broken: {}",
                    history.problem.as_deref().unwrap_or("a row was changed")
                )
            } else {
                "the history's hash chain holds again".to_owned()
            },
            objects: Vec::new(),
            diff: String::new(),
            revision: None,
            fingerprint: "audit-chain".to_owned(),
            at: now,
        })
    }
}

/// Which events a receiver takes: the kinds, and the sources (all when empty).
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub kinds: BTreeSet<EventKind>,
    pub sources: BTreeSet<String>,
}

impl Filter {
    pub fn takes(&self, event: &Event) -> bool {
        (self.kinds.is_empty() || self.kinds.contains(&event.kind))
            && (self.sources.is_empty()
                || event
                    .source
                    .as_ref()
                    .is_none_or(|s| self.sources.contains(s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::state::{RefusedDeletions, SourceStatus};

    fn status() -> SourceStatus {
        let mut status = SourceStatus::new("main", "git", "https://example.com/r.git".into());
        status.state = SyncState::Synced;
        status
    }

    fn item(id: &str) -> OpenItem {
        OpenItem {
            source: "main".into(),
            kind: "Permit".into(),
            app: "unnamed".into(),
            id: id.into(),
            note: "edited by hand".into(),
            diff: "-a\n+b\n".into(),
        }
    }

    fn kinds(events: &[Event]) -> Vec<(EventKind, Phase)> {
        events.iter().map(|e| (e.kind, e.phase)).collect()
    }

    #[test]
    fn a_condition_is_told_when_it_begins_and_when_it_ends_not_in_between() {
        let mut tracker = Tracker::default();
        let now = Utc::now();
        let mut s = status();
        assert!(tracker.observe(&s, now).is_empty());
        s.state = SyncState::Error;
        s.message = "cannot fetch".into();
        assert_eq!(
            kinds(&tracker.observe(&s, now)),
            [(EventKind::SyncFailed, Phase::Firing)]
        );
        assert!(
            tracker.observe(&s, now).is_empty(),
            "still failing: nothing new"
        );
        // A sync in progress says nothing either way.
        s.state = SyncState::Progressing;
        assert!(tracker.observe(&s, now).is_empty());
        s.state = SyncState::Synced;
        assert_eq!(
            kinds(&tracker.observe(&s, now)),
            [(EventKind::SyncRecovered, Phase::Resolved)]
        );
    }

    #[test]
    fn drift_is_told_for_new_objects_only_and_resolved_when_none_is_left() {
        let mut tracker = Tracker::default();
        let now = Utc::now();
        let mut s = status();
        s.state = SyncState::OutOfSync;
        s.drift = vec![item("p1")];
        let first = tracker.observe(&s, now);
        assert_eq!(kinds(&first), [(EventKind::DriftDetected, Phase::Firing)]);
        assert_eq!(first[0].objects, ["Permit unnamed/p1: edited by hand"]);
        assert!(first[0].diff.contains("+b"));
        assert!(tracker.observe(&s, now).is_empty());
        s.drift.push(item("p2"));
        let more = tracker.observe(&s, now);
        assert_eq!(more[0].objects, ["Permit unnamed/p2: edited by hand"]);
        assert_eq!(more[0].summary, "1 more object(s) drifted; 2 open");
        s.drift.clear();
        s.state = SyncState::Synced;
        assert_eq!(
            kinds(&tracker.observe(&s, now)),
            [(EventKind::DriftDetected, Phase::Resolved)]
        );
    }

    #[test]
    fn corrected_drift_is_told_once_per_sync_that_corrects() {
        let mut tracker = Tracker::default();
        let mut s = status();
        s.counts.drifted = 2;
        s.last_success_at = Some(Utc::now());
        assert_eq!(
            kinds(&tracker.observe(&s, Utc::now())),
            [(EventKind::DriftCorrected, Phase::Firing)]
        );
        // The same sync's status updated again (say, its attempt count).
        s.attempts += 1;
        assert!(tracker.observe(&s, Utc::now()).is_empty());
    }

    #[test]
    fn a_refused_deletion_and_an_invalid_revision_are_conditions_of_their_own() {
        let mut tracker = Tracker::default();
        let now = Utc::now();
        let mut s = status();
        s.state = SyncState::Error;
        s.deletion_refused = Some(RefusedDeletions {
            set: "set-1".into(),
            deletes: 3,
            earlier: 0,
            managed: 4,
            message: "3 of 4 rows".into(),
        });
        assert_eq!(
            kinds(&tracker.observe(&s, now)),
            [(EventKind::DeletionRefused, Phase::Firing)]
        );
        s.deletion_refused = None;
        s.errors = vec!["a.yaml:1:1: bad".into()];
        s.last_attempted_revision = Some("r2".into());
        let events = tracker.observe(&s, now);
        assert_eq!(
            kinds(&events),
            [
                (EventKind::DeletionRefused, Phase::Resolved),
                (EventKind::InvalidRevision, Phase::Firing)
            ]
        );
        assert_eq!(events[1].objects, ["a.yaml:1:1: bad"]);
        assert_eq!(events[1].fingerprint, "invalid-revision:r2");
    }

    #[test]
    fn the_chain_is_told_when_it_breaks_and_when_it_holds_again() {
        let mut chain = ChainTracker::default();
        let mut history = HistoryStatus {
            ok: Some(true),
            ..HistoryStatus::default()
        };
        assert!(chain.observe(&history, Utc::now()).is_none());
        history.ok = Some(false);
        history.problem = Some("audit row 7 was edited".into());
        let broken = chain.observe(&history, Utc::now()).expect("told");
        assert_eq!(
            (broken.kind, broken.phase),
            (EventKind::AuditChainBroken, Phase::Firing)
        );
        assert!(chain.observe(&history, Utc::now()).is_none());
        history.ok = Some(true);
        assert_eq!(
            chain.observe(&history, Utc::now()).map(|e| e.phase),
            Some(Phase::Resolved)
        );
    }

    #[test]
    fn event_names_are_the_ones_the_configuration_accepts() {
        let names: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names, crate::config::NOTIFICATION_EVENTS);
    }

    #[test]
    fn a_filter_takes_its_kinds_and_sources() {
        let mut s = status();
        s.state = SyncState::Error;
        let event = Tracker::default().observe(&s, Utc::now()).remove(0);
        let filter = |kinds: &[EventKind], sources: &[&str]| Filter {
            kinds: kinds.iter().copied().collect(),
            sources: sources.iter().map(|s| s.to_string()).collect(),
        };
        assert!(filter(&[], &[]).takes(&event));
        assert!(filter(&[EventKind::SyncFailed], &["main"]).takes(&event));
        assert!(!filter(&[EventKind::Conflict], &[]).takes(&event));
        assert!(!filter(&[], &["other"]).takes(&event));
    }
}
