//! One source's sync loop: poll, parse only a new revision, plan against the
//! database every time (so hand edits are found each interval), guard, apply
//! under the source's lock, and report. Errors back off and recover alone.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::{mpsc, oneshot};

use super::state::{Counts, OpenItem, SourceHandle, SourceStatus, State, SyncRequest, SyncState};
use crate::config::SourceConfig;
use crate::metrics::{KindLabels, OutcomeLabels, SourceLabel};
use crate::model::{DesiredState, Kind, Limits};
use crate::plan::{self, Action, Plan, PlanOptions};
use crate::source::kubernetes::{KubernetesSource, SyncResult};
use crate::source::{DirectorySource, GitSource, Snapshot, Source, SourceError};
use crate::store::{ApplyRequest, DriftPolicy, Store};

/// The sources `accord run` can follow.
pub enum AnySource {
    Directory(DirectorySource),
    Git(GitSource),
    Kubernetes(Box<KubernetesSource>),
}

impl Source for AnySource {
    async fn read(&self) -> Result<Snapshot, SourceError> {
        match self {
            AnySource::Directory(s) => s.read().await,
            AnySource::Git(s) => s.read().await,
            AnySource::Kubernetes(s) => s.read().await,
        }
    }

    async fn poll(&self, known: Option<&str>) -> Result<Option<Snapshot>, SourceError> {
        match self {
            AnySource::Directory(s) => s.poll(known).await,
            AnySource::Git(s) => s.poll(known).await,
            AnySource::Kubernetes(s) => s.poll(known).await,
        }
    }

    async fn authors(&self, revision: &str, files: Vec<Arc<str>>) -> HashMap<Arc<str>, String> {
        match self {
            AnySource::Directory(s) => s.authors(revision, files).await,
            AnySource::Git(s) => s.authors(revision, files).await,
            AnySource::Kubernetes(_) => HashMap::new(),
        }
    }
}

/// How one sync ended, for the loop's timing and the metrics.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    Unchanged,
    /// Another replica holds the source's lock.
    Busy,
    Failed,
}

pub struct Worker {
    pub handle: Arc<SourceHandle>,
    pub state: Arc<State>,
    pub source: AnySource,
    pub config: SourceConfig,
    /// Who runs accord: named on drift rows and unattributed changes.
    pub actor: String,
    /// The last revision parsed successfully, kept so an unchanged revision
    /// is not parsed again.
    desired: Option<(String, Arc<DesiredState>)>,
    /// Notes on the newest revision read (a force-push), shown with its status.
    notes: Vec<String>,
}

/// Capped exponential backoff after `failures` consecutive failed syncs.
pub fn backoff(failures: u32, interval: Duration) -> Duration {
    let exponential =
        Duration::from_secs(1) * 2u32.saturating_pow(failures.saturating_sub(1).min(16));
    // At most 30 s (or one interval, when that is longer), so a source
    // recovers soon after its database or remote comes back.
    exponential.min(interval.max(Duration::from_secs(30)))
}

impl Worker {
    pub fn new(
        handle: Arc<SourceHandle>,
        state: Arc<State>,
        source: AnySource,
        config: SourceConfig,
        actor: String,
    ) -> Worker {
        Worker {
            handle,
            state,
            source,
            config,
            actor,
            desired: None,
            notes: Vec::new(),
        }
    }

    pub async fn run(mut self, mut requests: mpsc::Receiver<SyncRequest>) {
        let mut failures = 0;
        let mut waiting: Vec<oneshot::Sender<SourceStatus>> = Vec::new();
        loop {
            let outcome = self.sync_once().await;
            let status = self.handle.status();
            for done in waiting.drain(..) {
                let _ = done.send(status.clone());
            }
            let delay = match outcome {
                Outcome::Busy => Duration::from_secs(1).min(self.config.interval),
                Outcome::Failed => {
                    failures += 1;
                    backoff(failures, self.config.interval)
                }
                Outcome::Applied | Outcome::Unchanged => {
                    failures = 0;
                    self.config.interval
                }
            };
            tokio::select! {
                _ = self.state.shutdown.cancelled() => break,
                _ = tokio::time::sleep(delay) => {}
                request = requests.recv() => {
                    let Some(request) = request else { break };
                    tracing::debug!(source = %self.config.name, reason = %request.reason, "sync requested");
                    waiting.extend(request.done);
                    // Requests that arrived meanwhile are served by the same sync.
                    while let Ok(more) = requests.try_recv() {
                        waiting.extend(more.done);
                    }
                }
            }
        }
        tracing::info!(source = %self.config.name, "source stopped");
    }

    /// One sync: read, plan, apply, report. Public so tests can drive a
    /// worker step by step.
    #[tracing::instrument(skip_all, fields(source = %self.config.name))]
    pub async fn sync_once(&mut self) -> Outcome {
        if let Some(leadership) = &self.state.leadership {
            if !leadership.is_leader() {
                let holder = leadership
                    .holder()
                    .map_or_else(|| "no replica".to_owned(), |h| format!("replica `{h}`"));
                self.handle.update(|s| {
                    s.message = format!("standing by: {holder} holds the leader lease");
                });
                return Outcome::Busy;
            }
        }
        let started = Instant::now();
        // The state stays what the last sync settled on until this one
        // settles (`Progressing` only before the first): a source in sync
        // does not flicker to `Progressing` at every interval, which read
        // mid-sync looked like a change under way.
        self.handle.update(|s| {
            s.last_attempt_at = Some(Utc::now());
        });
        let outcome = match self.read().await {
            Err(message) => self.fail("error", message),
            Ok(None) => self.fail("invalid", String::new()),
            Ok(Some((revision, desired))) => self.reconcile(&revision, &desired).await,
        };
        let name = &self.config.name;
        self.state
            .metrics
            .sync_duration
            .get_or_create(&SourceLabel {
                source: name.clone(),
            })
            .observe(started.elapsed().as_secs_f64());
        outcome
    }

    /// The desired state at the source's current revision, parsing only
    /// when the revision changed. `Ok(None)` when the new revision is invalid.
    async fn read(&mut self) -> Result<Option<(String, Arc<DesiredState>)>, String> {
        let known = self.desired.as_ref().map(|(revision, _)| revision.clone());
        let snapshot = self
            .source
            .poll(known.as_deref())
            .await
            .map_err(|e| e.to_string())?;
        let Some(snapshot) = snapshot else {
            return Ok(self.desired.clone());
        };
        for note in &snapshot.notes {
            tracing::warn!(source = %self.config.name, note = %note, "source note");
        }
        let revision = snapshot.revision.clone();
        self.notes = snapshot.notes.clone();
        let rejected: Vec<String> = snapshot
            .declared
            .as_ref()
            .map(|d| d.rejected.iter().map(ToString::to_string).collect())
            .unwrap_or_default();
        let parsed =
            tokio::task::spawn_blocking(move || snapshot.desired_for_plan(Limits::default()))
                .await
                .map_err(|e| e.to_string())?;
        match parsed {
            Ok(desired) => {
                let desired = Arc::new(desired);
                self.desired = Some((revision.clone(), desired.clone()));
                // Object-by-object sources apply what is valid; the rest is
                // listed here and on each object.
                self.handle.update(|s| {
                    s.errors = rejected;
                    s.last_attempted_revision = Some(revision.clone());
                });
                Ok(Some((revision, desired)))
            }
            Err(errors) => {
                let first = errors.first().map(ToString::to_string).unwrap_or_default();
                self.handle.update(|s| {
                    s.last_attempted_revision = Some(revision.clone());
                    s.message = format!(
                        "revision {revision} has {} error(s) and was not applied; the last applied revision stays in place. First: {first}",
                        errors.len()
                    );
                    s.errors = errors.iter().map(ToString::to_string).collect();
                });
                tracing::warn!(source = %self.config.name, %revision, errors = errors.len(), "revision rejected");
                Ok(None)
            }
        }
    }

    fn fail(&self, outcome: &str, message: String) -> Outcome {
        self.count(outcome);
        let message = self.with_notes(message);
        self.handle.update(|s| {
            s.state = SyncState::Error;
            if !message.is_empty() {
                s.message = message.clone();
            }
        });
        if !message.is_empty() {
            tracing::warn!(source = %self.config.name, error = %message, "sync failed");
        }
        Outcome::Failed
    }

    fn with_notes(&self, mut message: String) -> String {
        if message.is_empty() {
            return message;
        }
        for note in &self.notes {
            message.push_str("; note: ");
            message.push_str(note);
        }
        message
    }

    fn count(&self, outcome: &str) {
        self.state
            .metrics
            .syncs
            .get_or_create(&OutcomeLabels {
                source: self.config.name.clone(),
                outcome: outcome.into(),
            })
            .inc();
    }

    async fn reconcile(&self, revision: &str, desired: &Arc<DesiredState>) -> Outcome {
        let store = &self.state.store;
        let lock = match store.lock_source(&self.config.name).await {
            Ok(Some(lock)) => lock,
            Ok(None) => {
                self.handle.update(|s| {
                    s.message = "another replica is syncing this source; retrying".into();
                });
                return Outcome::Busy;
            }
            Err(e) => return self.fail("error", e.to_string()),
        };
        let outcome = self.reconcile_locked(revision, desired).await;
        lock.release().await;
        outcome
    }

    async fn reconcile_locked(&self, revision: &str, desired: &Arc<DesiredState>) -> Outcome {
        let (outcome, plan, failure) = self.plan_and_apply(revision, desired).await;
        // A replica that lost the lease meanwhile leaves statuses to the new leader.
        let leading = self.state.leadership.as_ref().is_none_or(|l| l.is_leader());
        if let (AnySource::Kubernetes(source), true) = (&self.source, leading) {
            let result = match (&plan, failure) {
                (Some(plan), None) => SyncResult::Applied(plan),
                (Some(plan), Some(Failure::Refused(message))) => SyncResult::Refused(plan, message),
                (plan, Some(Failure::Error(message))) => SyncResult::Failed(plan.as_ref(), message),
                (None, _) => SyncResult::Failed(None, "not planned".into()),
            };
            let writes = source.report(&result, self.config.drift).await;
            if writes != Default::default() {
                tracing::info!(source = %self.config.name, patched = writes.patched, failed = writes.failed, events = writes.events, "statuses written");
            }
        }
        outcome
    }

    /// Plans and applies; the plan (when there was one) and why it was not
    /// applied (when it was not) go to the object statuses.
    async fn plan_and_apply(
        &self,
        revision: &str,
        desired: &Arc<DesiredState>,
    ) -> (Outcome, Option<Plan>, Option<Failure>) {
        let store = &self.state.store;
        let name = &self.config.name;
        let failed = |message: String| {
            (
                self.fail("error", message.clone()),
                None,
                Some(Failure::Error(message)),
            )
        };
        let live = match store.load_for_plan(name).await {
            Ok(live) => live,
            Err(e) => return failed(e.to_string()),
        };
        // Planning 100k objects (and freeing the loaded rows) is CPU work:
        // off the runtime, so the HTTP API keeps answering meanwhile. The
        // rows come back only when the plan changes some that were loaded
        // without their content; then those are read and it is made again.
        let options = PlanOptions {
            prune: self.config.prune,
        };
        let plan_off = |live: plan::LiveState| {
            let (planned, source) = (desired.clone(), name.clone());
            tokio::task::spawn_blocking(move || {
                let plan = plan::plan(&planned, &live, &source, options);
                let unread = !plan.unread_rows(&live).is_empty();
                (plan, unread.then_some(live))
            })
        };
        let mut plan = match plan_off(live).await {
            Ok((plan, None)) => plan,
            Ok((plan, Some(mut live))) => {
                if let Err(e) = crate::store::read_unread(store.as_ref(), &mut live, &plan).await {
                    return failed(e.to_string());
                }
                match plan_off(live).await {
                    Ok((plan, _)) => plan,
                    Err(e) => return failed(e.to_string()),
                }
            }
            Err(e) => return failed(e.to_string()),
        };
        // Before holding: a delete's file, which holding goes by, comes
        // from the ledger through `explain`.
        if let Err(e) = crate::store::explain(store.as_ref(), &mut plan, name).await {
            return failed(e.to_string());
        }
        if let AnySource::Kubernetes(source) = &self.source {
            source.hold_rejected(&mut plan);
        }
        if let Err(refusal) = plan::guard(&plan, self.config.max_delete_percent) {
            let message = format!("revision {revision} not applied: {refusal}");
            return (
                self.fail("refused", message.clone()),
                Some(plan),
                Some(Failure::Refused(message)),
            );
        }
        let writes = has_writes(&plan, self.config.drift);
        if writes {
            let files: BTreeSet<Arc<str>> = plan
                .changes
                .iter()
                .filter(|c| matches!(c.action, Action::Create | Action::Update | Action::Delete))
                .filter_map(|c| c.declared_in.clone())
                .collect();
            let authors = self
                .source
                .authors(revision, files.into_iter().collect())
                .await;
            let request = ApplyRequest {
                source: name,
                revision,
                actor: &self.actor,
                authors: &authors,
                drift: self.config.drift,
                plan: &plan,
            };
            if let Err(e) = store.apply(request).await {
                let message = e.to_string();
                return (
                    self.fail("error", message.clone()),
                    Some(plan),
                    Some(Failure::Error(message)),
                );
            }
            let s = plan.summary();
            tracing::info!(source = %name, %revision, created = s.create, updated = s.update, deleted = s.delete, drift = s.drift, "sync applied");
        }
        self.count(if writes { "applied" } else { "unchanged" });
        self.report(revision, desired, &plan);
        let outcome = if writes {
            Outcome::Applied
        } else {
            Outcome::Unchanged
        };
        (outcome, Some(plan), None)
    }

    /// Status and metrics after a successful sync.
    fn report(&self, revision: &str, desired: &DesiredState, plan: &Plan) {
        let name = &self.config.name;
        let summary = plan.summary();
        let item = |c: &plan::Change| OpenItem {
            source: name.clone(),
            kind: c.key.kind.as_str().into(),
            app: c.key.app.to_string(),
            id: c.key.id.to_string(),
            note: c.note.clone(),
            diff: c.diff(),
        };
        let open_drift: Vec<OpenItem> = match self.config.drift {
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
        let managed_after: usize = Kind::ALL.iter().map(|k| plan.managed_after(*k)).sum();
        let state = if !open_drift.is_empty() || !conflicts.is_empty() {
            SyncState::OutOfSync
        } else if summary.suspended > 0 && summary.suspended == desired.len() {
            SyncState::Suspended
        } else {
            SyncState::Synced
        };
        let mut message = match state {
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
        let rejected = self.handle.status().errors.len();
        if rejected > 0 {
            message.push_str(&format!("; {rejected} object(s) rejected, see errors"));
        }
        let previous = self.handle.status().last_applied_revision;
        self.handle.update(|s| {
            s.state = state;
            s.last_applied_revision = Some(revision.to_owned());
            s.last_success_at = Some(Utc::now());
            s.message = self.with_notes(message);
            s.counts = Counts {
                managed: managed_after,
                created: summary.create,
                updated: summary.update,
                deleted: summary.delete,
                drifted: summary.drift,
                conflicts: summary.conflict,
                suspended: summary.suspended,
            };
            s.drift = open_drift.clone();
            s.conflicts = conflicts;
            s.suspended = suspended;
        });
        let metrics = &self.state.metrics;
        metrics.set_revision(name, previous.as_deref(), revision);
        metrics
            .drift_open
            .get_or_create(&SourceLabel {
                source: name.clone(),
            })
            .set(open_drift.len() as i64);
        metrics
            .last_success
            .get_or_create(&SourceLabel {
                source: name.clone(),
            })
            .set(Utc::now().timestamp_millis() as f64 / 1000.0);
        for kind in Kind::ALL {
            let managed = plan.managed_after(kind);
            metrics
                .managed
                .get_or_create(&KindLabels {
                    source: name.clone(),
                    kind: kind.as_str().into(),
                })
                .set(managed as i64);
        }
    }
}

/// Why a planned sync was not applied.
enum Failure {
    Refused(String),
    Error(String),
}

/// Whether applying the plan would write anything: a no-op sync leaves no
/// trace in the database, so an idle controller does not grow `sync_runs`.
fn has_writes(plan: &Plan, drift: DriftPolicy) -> bool {
    !plan.forget.is_empty()
        || plan.claims_changed
        || plan.changes.iter().any(|c| match c.action {
            Action::Create | Action::Update | Action::Delete => true,
            Action::Drift => drift == DriftPolicy::Correct || !c.drift_reported,
            Action::Conflict | Action::Suspended => false,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let interval = Duration::from_secs(30);
        assert_eq!(backoff(1, interval), Duration::from_secs(1));
        assert_eq!(backoff(2, interval), Duration::from_secs(2));
        assert_eq!(backoff(5, interval), Duration::from_secs(16));
        assert_eq!(backoff(40, interval), Duration::from_secs(30));
        assert_eq!(
            backoff(40, Duration::from_secs(600)),
            Duration::from_secs(600)
        );
    }
}
