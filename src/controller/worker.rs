//! One source's sync loop: poll, parse only a new revision, plan against the
//! database every time (so hand edits are found each interval), guard, apply
//! under the source's lock, and report. Errors back off and recover alone.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::{mpsc, oneshot};

use super::report::{self, Settled};
use super::state::{SourceHandle, SourceStatus, State, SyncRequest};
use crate::config::SourceConfig;
use crate::metrics::{KindLabels, OutcomeLabels, SourceLabel};
use crate::model::incremental::{Held, ParseCache, Unread};
use crate::model::{DesiredState, Kind, Limits};
use crate::plan::{GuardRefusal, Plan, PlanOptions};
use crate::source::kubernetes::{KubernetesSource, SyncResult};
use crate::source::{Commit, DirectorySource, GitSource, Snapshot, Source, SourceError};
use crate::store::{LockMode, Store};
use crate::sync::{self, Failed, Mode, SyncError};

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

    async fn poll_holding(
        &self,
        known: Option<&str>,
        held: Held,
    ) -> Result<Option<Snapshot>, SourceError> {
        match self {
            AnySource::Git(s) => s.poll_holding(known, held).await,
            _ => self.poll(known).await,
        }
    }

    fn hold(&self, plan: &mut Plan) {
        if let AnySource::Kubernetes(s) = self {
            s.hold_rejected(plan);
        }
    }

    fn objects_stand_alone(&self) -> bool {
        matches!(self, AnySource::Kubernetes(_))
    }

    async fn authors(&self, revision: &str, files: Vec<Arc<str>>) -> HashMap<Arc<str>, String> {
        match self {
            AnySource::Directory(s) => s.authors(revision, files).await,
            AnySource::Git(s) => s.authors(revision, files).await,
            AnySource::Kubernetes(s) => s.authors(&files),
        }
    }

    fn origins(&self, files: &[Arc<str>]) -> HashMap<Arc<str>, String> {
        match self {
            AnySource::Kubernetes(s) => s.origins(files),
            _ => HashMap::new(),
        }
    }
}

/// How one sync ended: for the loop's timing, and the `outcome` label of
/// `accord_syncs_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    Unchanged,
    /// The deletion guard refused the plan: nothing was applied.
    Refused,
    /// The guard refused the plan's deletions and the rest was applied (a
    /// source whose objects stand alone).
    DeletesHeld,
    /// The revision has errors and was not applied.
    Invalid,
    /// The source or the database failed.
    Failed,
    /// Another replica holds the source's lock, or the leader Lease.
    Busy,
}

impl Outcome {
    pub fn metric_label(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Unchanged => "unchanged",
            Outcome::Refused | Outcome::DeletesHeld => "refused",
            Outcome::Invalid => "invalid",
            Outcome::Failed => "error",
            Outcome::Busy => "busy",
        }
    }

    /// Whether the loop backs off before the next attempt.
    fn failed(self) -> bool {
        matches!(self, Outcome::Refused | Outcome::Invalid | Outcome::Failed)
    }
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
    desired: Option<Parsed>,
    /// The files of the last revision parsed: a new revision parses only the
    /// files that changed. Empty after a restart, so the first read parses
    /// the whole tree and fills it.
    parsed: ParseCache,
    /// The revision and the database's change mark of the last sync that
    /// found nothing to write: while neither moves, an interval's sync
    /// would plan the same again, so it is skipped. Cleared by every
    /// requested sync (webhook, API), which always plans.
    quiet: Option<(String, u64)>,
    /// What started the sync under way (`start`, `interval`, `webhook`,
    /// …, several joined when they were served by one sync).
    cause: String,
    /// Notes on the newest revision read (a force-push), shown with its status.
    notes: Vec<String>,
}

/// A revision parsed successfully: its desired state, and its commit
/// (Git), which the status names once it is applied.
#[derive(Clone)]
struct Parsed {
    revision: String,
    desired: Arc<DesiredState>,
    commit: Option<Commit>,
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
            parsed: ParseCache::new(Limits::default()),
            quiet: None,
            cause: String::new(),
            notes: Vec::new(),
        }
    }

    pub async fn run(mut self, mut requests: mpsc::Receiver<SyncRequest>) {
        let mut failures = 0;
        let mut waiting: Vec<oneshot::Sender<SourceStatus>> = Vec::new();
        let mut reasons = vec!["start".to_owned()];
        loop {
            let mut causes = reasons.clone();
            causes.sort();
            causes.dedup();
            self.cause = causes.join(", ");
            self.handle.update(|s| {
                for reason in reasons.drain(..) {
                    *s.triggers.entry(reason).or_default() += 1;
                }
            });
            let outcome = self.sync_once().await;
            let status = self.handle.status();
            for done in waiting.drain(..) {
                let _ = done.send(status.clone());
            }
            let delay = if outcome == Outcome::Busy {
                Duration::from_secs(1).min(self.config.interval)
            } else if outcome.failed() {
                failures += 1;
                backoff(failures, self.config.interval)
            } else {
                failures = 0;
                self.config.interval
            };
            tokio::select! {
                _ = self.state.shutdown.cancelled() => break,
                _ = tokio::time::sleep(delay) => reasons.push("interval".into()),
                request = requests.recv() => {
                    let Some(request) = request else { break };
                    tracing::debug!(source = %self.config.name, reason = %request.reason, "sync requested");
                    waiting.extend(request.done);
                    reasons.push(request.reason);
                    self.quiet = None;
                    // Requests that arrived meanwhile are served by the same sync.
                    while let Ok(more) = requests.try_recv() {
                        waiting.extend(more.done);
                        reasons.push(more.reason);
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
            s.attempts += 1;
        });
        // A requested sync (a webhook's push, an operator's request, the
        // start) most likely has a revision to apply: its rows are read
        // while the source is fetched and parsed, not after. An interval
        // tick, usually with nothing new, reads nothing ahead.
        let ahead = self.cause.split(", ").any(|cause| cause != "interval");
        let preload = {
            let (store, name) = (self.state.store.clone(), self.config.name.clone());
            async move {
                if ahead {
                    sync::preload(store.as_ref(), &name).await
                } else {
                    None
                }
            }
        };
        let (read, preloaded) = tokio::join!(self.read(), preload);
        let outcome = match read {
            Err(error) => self.fail(Outcome::Failed, sync::explain(&error)),
            Ok(None) => self.fail(Outcome::Invalid, String::new()),
            Ok(Some(parsed)) => match self.still_quiet(&parsed.revision).await {
                true => Outcome::Unchanged,
                false => self.reconcile(&parsed, preloaded).await,
            },
        };
        if outcome != Outcome::Busy {
            self.count(outcome);
        }
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
    async fn read(&mut self) -> Result<Option<Parsed>, SyncError> {
        let known = self.desired.as_ref().map(|p| p.revision.clone());
        let started = Instant::now();
        let mut held = self.parsed.held();
        let (snapshot, parsed, reuse, polled) = loop {
            let snapshot = self.source.poll_holding(known.as_deref(), held).await?;
            let polled = started.elapsed();
            let Some(snapshot) = snapshot else {
                return Ok(self.desired.clone());
            };
            let mut cache = std::mem::replace(&mut self.parsed, ParseCache::new(Limits::default()));
            let (snapshot, parsed, cache) = tokio::task::spawn_blocking(move || {
                let parsed = snapshot.desired_incremental(&mut cache);
                (snapshot, parsed, cache)
            })
            .await
            .map_err(|e| SyncError::Task("parser", e))?;
            self.parsed = cache;
            match parsed {
                Ok((parsed, reuse)) => break (snapshot, parsed, reuse, polled),
                // `held` was taken from this cache, which only this loop
                // changes, so this is a defect; reading every file is
                // always right.
                Err(Unread(path)) => {
                    tracing::error!(source = %self.config.name, file = %path, "a file left unread is not in the parse cache; reading every file");
                    held = Held::nothing();
                }
            }
        };
        for note in &snapshot.notes {
            tracing::warn!(source = %self.config.name, note = %note, "source note");
        }
        let Snapshot {
            revision,
            commit,
            notes,
            declared,
            files,
            ..
        } = snapshot;
        self.notes = notes;
        let rejected: Vec<String> = declared
            .as_ref()
            .map(|d| d.rejected.iter().map(ToString::to_string).collect())
            .unwrap_or_default();
        tracing::debug!(
            source = %self.config.name,
            %revision,
            read = files.len(),
            parsed = reuse.parsed,
            reused = reuse.reused,
            read_s = polled.as_secs_f64(),
            parse_s = (started.elapsed() - polled).as_secs_f64(),
            "revision parsed"
        );
        match parsed {
            Ok(desired) => {
                let parsed = Parsed {
                    revision: revision.clone(),
                    desired,
                    commit: commit.clone(),
                };
                self.desired = Some(parsed.clone());
                // Object-by-object sources apply what is valid; the rest is
                // listed here and on each object.
                self.handle.update(|s| {
                    s.errors = rejected;
                    s.last_attempted_revision = Some(revision);
                    s.last_attempted_commit = commit;
                });
                Ok(Some(parsed))
            }
            Err(errors) => {
                let first = errors.first().map(ToString::to_string).unwrap_or_default();
                self.handle.update(|s| {
                    s.last_attempted_revision = Some(revision.clone());
                    s.last_attempted_commit = commit;
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

    fn fail(&self, outcome: Outcome, message: String) -> Outcome {
        self.settle(&Settled::Failed { message: &message });
        if !message.is_empty() {
            tracing::warn!(source = %self.config.name, error = %message, "sync failed");
        }
        outcome
    }

    /// Puts the status after a sync in place.
    fn settle(&self, settled: &Settled<'_>) {
        let (drift, notes) = (self.config.drift, &self.notes);
        self.handle
            .update(|s| *s = report::status_after(s, settled, drift, notes, Utc::now()));
    }

    fn count(&self, outcome: Outcome) {
        self.state
            .metrics
            .syncs
            .get_or_create(&OutcomeLabels {
                source: self.config.name.clone(),
                outcome: outcome.metric_label().into(),
            })
            .inc();
    }

    fn settings(&self) -> sync::Settings {
        let config = &self.config;
        let mut settings = sync::Settings::new(&config.name, &self.actor);
        settings.plan = PlanOptions {
            prune: config.prune,
        };
        settings.drift = config.drift;
        settings.max_delete_percent = config.max_delete_percent;
        settings.deletion_window = config.deletion_window;
        settings.cause = Some(self.cause.clone()).filter(|c| !c.is_empty());
        settings
    }

    /// Whether the last sync found nothing to write at `revision` and the
    /// database has not been written since: then it stands as this sync's
    /// result, and only its time moves.
    async fn still_quiet(&self, revision: &str) -> bool {
        let Some((quiet, mark)) = &self.quiet else {
            return false;
        };
        if quiet != revision {
            return false;
        }
        match self.state.store.change_mark().await {
            Ok(Some(now)) if now == *mark => {
                tracing::debug!(source = %self.config.name, %revision, "nothing written since the last sync: its plan stands");
                self.handle.update(|s| s.last_success_at = Some(Utc::now()));
                true
            }
            _ => false,
        }
    }

    async fn reconcile(&mut self, parsed: &Parsed, preloaded: Option<sync::Preloaded>) -> Outcome {
        self.quiet = None;
        let (revision, desired) = (parsed.revision.as_str(), &parsed.desired);
        let store = self.state.store.as_ref();
        let read = async { Ok((revision.to_owned(), desired.clone())) };
        let settings = self.settings();
        let result = sync::sync(
            store,
            &self.source,
            read,
            &settings,
            Mode::Apply(LockMode::Try),
            preloaded,
        )
        .await;
        if let Err(Failed {
            error: SyncError::Busy,
            ..
        }) = result
        {
            self.handle.update(|s| {
                s.message = "another process is syncing this source; retrying".into();
            });
            return Outcome::Busy;
        }
        self.report_objects(&result).await;
        let name = &self.config.name;
        match result {
            Ok(synced) => {
                let plan = &synced.planned.plan;
                if let Some(refusal) = synced.outcome.refusal() {
                    self.refused(refusal).await;
                }
                if let sync::Outcome::Refused(refusal) = &synced.outcome {
                    self.settle(&Settled::Refused { revision, refusal });
                    return Outcome::Refused;
                }
                let previous = self.handle.status().last_applied_revision;
                self.settle(&Settled::Synced {
                    revision,
                    plan,
                    declared: desired.len(),
                    held: synced.outcome.refusal(),
                    commit: parsed.commit.as_ref(),
                });
                self.record_metrics(previous.as_deref(), revision, plan);
                match (&synced.outcome, synced.outcome.record()) {
                    (sync::Outcome::DeletesHeld(..), _) => Outcome::DeletesHeld,
                    (_, Some(_)) => Outcome::Applied,
                    (_, None) => {
                        self.quiet = synced.planned.mark.map(|m| (revision.to_owned(), m));
                        Outcome::Unchanged
                    }
                }
            }
            Err(failed) => {
                let message = sync::explain(&failed.error);
                tracing::debug!(source = %name, error = %message, "sync failed");
                self.fail(Outcome::Failed, message)
            }
        }
    }

    /// Where refused deletions show besides the status: the metric, and
    /// for the Kubernetes source a Warning Event a kubectl user sees.
    async fn refused(&self, refusal: &GuardRefusal) {
        let name = &self.config.name;
        self.state
            .metrics
            .deletions_refused
            .get_or_create(&SourceLabel {
                source: name.clone(),
            })
            .inc();
        let known = self.handle.status().deletion_refused.map(|r| r.set);
        if let AnySource::Kubernetes(source) = &self.source {
            // Once per refused set, not once per sync.
            if known.as_deref() != Some(refusal.set.as_str()) {
                let note = format!("source `{name}`: {refusal}; {}", report::approve_hint(name));
                source.warn_refusal(&note).await;
            }
        }
    }

    /// The Kubernetes source writes each object's status after the sync.
    async fn report_objects(&self, result: &Result<sync::Synced, Failed>) {
        // A replica that lost the lease meanwhile leaves statuses to the new leader.
        let leading = self.state.leadership.as_ref().is_none_or(|l| l.is_leader());
        let AnySource::Kubernetes(source) = &self.source else {
            return;
        };
        if !leading {
            return;
        }
        let refused_message;
        let failed_message;
        let outcome = match result {
            Ok(synced) => match &synced.outcome {
                sync::Outcome::Refused(refusal) => {
                    refused_message = format!(
                        "not applied: {refusal}; {}",
                        report::approve_hint(&self.config.name)
                    );
                    SyncResult::Refused(&synced.planned.plan, refused_message)
                }
                _ => SyncResult::Applied(&synced.planned.plan),
            },
            Err(failed) => {
                failed_message = sync::explain(&failed.error);
                SyncResult::Failed(failed.planned.as_ref().map(|p| &p.plan), failed_message)
            }
        };
        let writes = source.report(&outcome, self.config.drift).await;
        if writes != Default::default() {
            tracing::info!(source = %self.config.name, patched = writes.patched, failed = writes.failed, events = writes.events, "statuses written");
        }
    }

    /// Metrics after a successful sync.
    fn record_metrics(&self, previous: Option<&str>, revision: &str, plan: &Plan) {
        let name = &self.config.name;
        let metrics = &self.state.metrics;
        let open_drift = self.handle.status().drift.len();
        match &self.source {
            AnySource::Kubernetes(_) => metrics.set_resource_version(name, revision),
            _ => metrics.set_revision(name, previous, revision),
        }
        metrics
            .drift_open
            .get_or_create(&SourceLabel {
                source: name.clone(),
            })
            .set(open_drift as i64);
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
