//! The one sync pipeline: a source's desired state and the store's rows →
//! the plan a user sees → the guard → one transaction. `accord plan` and
//! `accord apply`, the controller and every source kind go through it, so
//! each rule (plan from rows read under the source's lock, read the rows a
//! plan changes whole, name the files behind deletes and conflicts, hold
//! what a source keeps, count deletions over the window, apply whole) is
//! written once.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::model::{DesiredState, Diagnostic, Limits};
use crate::plan::{self, Action, GuardRefusal, LiveState, Plan, PlanOptions};
use crate::policy::DriftPolicy;
use crate::source::{Source, SourceError};
use crate::store::{
    ApplyRequest, GuardRecord, LockMode, SourceLock, Store, StoreError, SyncRecord,
};

/// An error and each of its causes, one line: `a: b: c`. Errors here keep
/// their causes as sources rather than in their own text, so this is where
/// the whole story is told once (to a user, a status, a log line).
pub fn explain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        let line = next.to_string();
        // Some libraries repeat their cause in their own text.
        if !text.ends_with(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        cause = next.source();
    }
    crate::model::validate::escape_controls(&text).into_owned()
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("the source has {} error(s); nothing was applied", .0.len())]
    Invalid(Vec<Diagnostic>),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("another process holds the source's lock")]
    Busy,
    #[error("the {0} stopped unexpectedly")]
    Task(&'static str, #[source] tokio::task::JoinError),
}

/// How a sync is judged and written, whoever runs it.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The source's name: what its rows are owned under.
    pub source: String,
    pub plan: PlanOptions,
    pub drift: DriftPolicy,
    pub max_delete_percent: u32,
    /// How far back deletions count toward the guard's limit.
    pub deletion_window: Duration,
    /// Apply even what the guard refuses (the CLI's `--force`).
    pub force: bool,
    /// Who runs the sync: named on drift rows and unattributed changes.
    pub actor: String,
    /// Record a sync run even when nothing changes: each `accord apply`
    /// leaves a trace, while an idle controller does not grow `sync_runs`.
    pub record_unchanged: bool,
    /// What started the sync, recorded with its run.
    pub cause: Option<String>,
    /// Keep the declarations in `Planned` once planned. A one-shot apply
    /// whose report shows only the changes lets them go before the write:
    /// the plan holds every object it writes, and a million declarations'
    /// map was about 120 MB of the write's peak.
    pub keep_declarations: bool,
}

impl Settings {
    pub fn new(source: &str, actor: &str) -> Settings {
        Settings {
            source: source.to_owned(),
            plan: PlanOptions::default(),
            drift: DriftPolicy::Correct,
            max_delete_percent: crate::policy::DEFAULT_MAX_DELETE_PERCENT,
            deletion_window: crate::policy::DEFAULT_DELETION_WINDOW,
            force: false,
            actor: actor.to_owned(),
            record_unchanged: false,
            cause: None,
            keep_declarations: true,
        }
    }
}

/// What a sync does beyond planning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Plan only: no lock, no writes (`accord plan`).
    Plan,
    /// Take the source's lock, plan from rows read under it, guard, apply.
    Apply(LockMode),
}

/// A source read and planned against the database.
#[derive(Debug)]
pub struct Planned {
    pub revision: String,
    /// What the source declares; `None` when let go after planning
    /// (`Settings::keep_declarations`).
    pub desired: Option<Arc<DesiredState>>,
    pub live: LiveState,
    pub plan: Plan,
    /// The database's change mark taken before `live` was read
    /// (`Store::change_mark`): while it stays, this plan stays what a new
    /// one would be.
    pub mark: Option<u64>,
    /// Whether the rows read ahead (`preload`) were used.
    pub preloaded: bool,
}

/// A source's rows read ahead of its sync, with the change mark taken
/// before them: while a fetch or a parse runs, say. A sync uses them only
/// if the mark has not moved once it holds the source's lock.
#[derive(Debug)]
pub struct Preloaded {
    mark: u64,
    live: LiveState,
}

/// Reads `source`'s rows for a plan ahead of its sync; `None` when the
/// store cannot tell later whether they still hold (no change mark), or
/// when reading fails (the sync then reads, and reports the error itself).
pub async fn preload<S: Store>(store: &S, source: &str) -> Option<Preloaded> {
    let mark = store.change_mark().await.ok().flatten()?;
    let live = store.load_for_plan(source).await.ok()?;
    Some(Preloaded { mark, live })
}

/// How a sync ended.
#[derive(Debug)]
pub enum Outcome {
    /// Planned only.
    Planned,
    /// Nothing to write.
    Unchanged,
    /// Written in one transaction.
    Applied(SyncRecord),
    /// The deletion guard refused the plan: nothing was written.
    Refused(GuardRefusal),
    /// The guard refused the plan's deletions and the rest was applied (a
    /// source whose objects stand alone, Kubernetes): the record when there
    /// was anything else to write.
    DeletesHeld(Option<SyncRecord>, GuardRefusal),
}

impl Outcome {
    /// The guard's refusal, when there was one.
    pub fn refusal(&self) -> Option<&GuardRefusal> {
        match self {
            Outcome::Refused(refusal) | Outcome::DeletesHeld(_, refusal) => Some(refusal),
            _ => None,
        }
    }

    pub fn record(&self) -> Option<&SyncRecord> {
        match self {
            Outcome::Applied(record) | Outcome::DeletesHeld(Some(record), _) => Some(record),
            _ => None,
        }
    }
}

/// A finished sync: the plan as it was judged, and how it ended.
#[derive(Debug)]
pub struct Synced {
    pub planned: Planned,
    pub outcome: Outcome,
}

/// A sync that failed, with its plan when it got that far (a source's
/// object statuses still report conflicts and suspensions from it).
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct Failed {
    pub planned: Option<Box<Planned>>,
    #[source]
    pub error: SyncError,
}

impl<E: Into<SyncError>> From<E> for Failed {
    fn from(error: E) -> Failed {
        Failed {
            planned: None,
            error: error.into(),
        }
    }
}

/// Reads and validates a whole source: its revision and desired state, or
/// every error.
pub async fn read_desired(
    source: &impl Source,
    limits: Limits,
) -> Result<(String, Arc<DesiredState>), SyncError> {
    let snapshot = source.read().await?;
    let revision = snapshot.revision.clone();
    let desired = tokio::task::spawn_blocking(move || snapshot.desired_for_plan(limits))
        .await
        .map_err(|e| SyncError::Task("parser", e))?
        .map_err(SyncError::Invalid)?;
    Ok((revision, desired))
}

/// One sync of `source` into `store`. `desired` (the source read and
/// parsed) is awaited while the lock is taken and the rows are loaded, so
/// neither waits for the other; the rows are read only once the lock is
/// held, so the plan that is applied was made from what the database held
/// under it.
pub async fn sync<S: Store>(
    store: &S,
    source: &impl Source,
    desired: impl Future<Output = Result<(String, Arc<DesiredState>), SyncError>>,
    settings: &Settings,
    mode: Mode,
    preloaded: Option<Preloaded>,
) -> Result<Synced, Failed> {
    let name = settings.source.as_str();
    let started = std::time::Instant::now();
    let loading = async {
        let lock = match mode {
            Mode::Plan => None,
            Mode::Apply(wait) => match store.lock_source(name, wait).await? {
                Some(lock) => Some(lock),
                None => return Err(SyncError::Busy),
            },
        };
        // Before the read: a write that lands after it moves the mark.
        // The mark only spares later work: a store that cannot give it
        // (a role without the right, say) still syncs, and always plans.
        let mark = store.change_mark().await.unwrap_or_else(|error| {
            tracing::debug!(source = name, error = %explain(&error), "no change mark");
            None
        });
        let (live, preloaded) = match preloaded {
            // Nothing was committed since those rows were read (the mark,
            // taken before them, stands), so they are what a read now
            // would give, and the lock now keeps them so.
            Some(rows) if mark == Some(rows.mark) => (rows.live, true),
            _ => (store.load_for_plan(name).await?, false),
        };
        Ok::<_, SyncError>((lock, live, mark, preloaded, started.elapsed()))
    };
    let (desired, loaded) = tokio::join!(desired, loading);
    let (lock, live, mark, preloaded, loaded_in) = loaded?;
    let (revision, desired) = desired?;
    let read_in = started.elapsed();
    let mut planned = plan(store, source, revision, desired, live, settings).await?;
    planned.mark = mark;
    planned.preloaded = preloaded;
    // Where a sync's time goes, for the benchmarks: at debug level under
    // `accord::timing`.
    tracing::debug!(
        target: "accord::timing",
        source = name,
        preloaded,
        load_s = loaded_in.as_secs_f64(),
        read_s = read_in.as_secs_f64(),
        plan_s = (started.elapsed() - read_in).as_secs_f64(),
        changes = planned.plan.changes.len(),
        "sync planned"
    );
    let Some(lock) = lock else {
        return Ok(Synced {
            planned,
            outcome: Outcome::Planned,
        });
    };

    // The guard, counting what the window already deleted.
    let mut guard = GuardRecord::Clear;
    if planned.plan.count(Action::Delete) > 0 {
        match judge(store, &planned.plan, settings).await {
            Ok(Judgement::Allowed) => {}
            Ok(Judgement::Approved(by)) => guard = GuardRecord::Approved(by),
            Ok(Judgement::Refused(_)) if settings.force => guard = GuardRecord::Forced,
            Ok(Judgement::Refused(refused)) => {
                return refuse(store, source, lock, planned, settings, refused).await
            }
            Err(error) => return Err(fail(planned, error)),
        }
    }
    finish(store, source, lock, planned, settings, guard, None).await
}

/// Records a refusal; then either nothing is applied, or, for a source
/// whose objects stand alone, the rest of the plan is, and the refused
/// deletions wait for an approval.
async fn refuse<S: Store>(
    store: &S,
    source: &impl Source,
    mut lock: SourceLock,
    mut planned: Planned,
    settings: &Settings,
    refused: GuardRefusal,
) -> Result<Synced, Failed> {
    let name = settings.source.as_str();
    if let Err(error) = store.record_refusal(&mut lock, name, &refused).await {
        return Err(fail(planned, error.into()));
    }
    tracing::warn!(
        source = name,
        deletes = refused.deletes,
        earlier = refused.earlier,
        managed = refused.managed,
        set = %refused.set,
        "deletion guard refused"
    );
    if !source.objects_stand_alone() {
        if let Err(error) = lock.release().await {
            return Err(fail(planned, error.into()));
        }
        return Ok(Synced {
            planned,
            outcome: Outcome::Refused(refused),
        });
    }
    planned
        .plan
        .changes
        .retain(|change| change.action != Action::Delete);
    finish(
        store,
        source,
        lock,
        planned,
        settings,
        GuardRecord::Held,
        Some(refused),
    )
    .await
}

/// Applies a judged plan under `lock`, or lets the lock go when there is
/// nothing to write.
async fn finish<S: Store>(
    store: &S,
    source: &impl Source,
    lock: SourceLock,
    planned: Planned,
    settings: &Settings,
    guard: GuardRecord,
    refusal: Option<GuardRefusal>,
) -> Result<Synced, Failed> {
    let name = settings.source.as_str();
    if !settings.record_unchanged && !has_writes(&planned.plan, settings.drift) {
        if let Err(error) = lock.release().await {
            return Err(fail(planned, error.into()));
        }
        let outcome = match refusal {
            Some(refused) => Outcome::DeletesHeld(None, refused),
            None => Outcome::Unchanged,
        };
        return Ok(Synced { planned, outcome });
    }
    let files: Vec<Arc<str>> = planned
        .plan
        .changes
        .iter()
        .filter(|c| matches!(c.action, Action::Create | Action::Update | Action::Delete))
        .filter_map(|c| c.declared_in.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let origins = source.origins(&files);
    let authors = source.authors(&planned.revision, files).await;
    let request = ApplyRequest {
        source: name,
        revision: &planned.revision,
        actor: &settings.actor,
        authors: &authors,
        origins: &origins,
        drift: settings.drift,
        plan: &planned.plan,
        guard,
        cause: settings.cause.as_deref(),
    };
    let applying = std::time::Instant::now();
    let record = match store.apply(lock, request).await {
        Ok(record) => record,
        Err(error) => return Err(fail(planned, error.into())),
    };
    tracing::debug!(
        target: "accord::timing",
        source = name,
        apply_s = applying.elapsed().as_secs_f64(),
        "sync written"
    );
    let summary = record.summary;
    tracing::info!(
        source = name,
        revision = %planned.revision,
        created = summary.create,
        updated = summary.update,
        deleted = summary.delete,
        drift = summary.drift,
        "sync applied"
    );
    let outcome = match refusal {
        Some(refused) => Outcome::DeletesHeld(Some(record), refused),
        None => Outcome::Applied(record),
    };
    Ok(Synced { planned, outcome })
}

fn fail(planned: Planned, error: SyncError) -> Failed {
    Failed {
        planned: Some(Box::new(planned)),
        error,
    }
}

/// Plans, reading whole the rows the plan changes that the load left
/// unread and planning again; then names the files behind deletes and
/// conflicts, and lets the source hold what it keeps.
async fn plan<S: Store>(
    store: &S,
    source: &impl Source,
    revision: String,
    desired: Arc<DesiredState>,
    live: LiveState,
    settings: &Settings,
) -> Result<Planned, Failed> {
    let name = settings.source.as_str();
    // Planning 100k objects (and freeing the loaded rows) is CPU work: off
    // the runtime, so the HTTP API keeps answering meanwhile.
    let plan_off = |live: LiveState| {
        let (desired, name, options) = (desired.clone(), name.to_owned(), settings.plan);
        async move {
            tokio::task::spawn_blocking(move || {
                let plan = plan::plan(&desired, &live, &name, options);
                (plan, live)
            })
            .await
            .map_err(|e| SyncError::Task("planner", e))
        }
    };
    let (mut plan, mut live) = plan_off(live).await?;
    if crate::store::read_unread(store, &mut live, &plan).await? {
        (plan, live) = plan_off(live).await?;
    }
    crate::store::explain(store, &mut plan, name).await?;
    source.hold(&mut plan);
    Ok(Planned {
        revision,
        desired: settings.keep_declarations.then_some(desired),
        live,
        plan,
        mark: None,
        preloaded: false,
    })
}

enum Judgement {
    Allowed,
    /// Refused by the window's count, but an operator approved exactly
    /// these deletions.
    Approved(String),
    Refused(GuardRefusal),
}

async fn judge<S: Store>(
    store: &S,
    plan: &Plan,
    settings: &Settings,
) -> Result<Judgement, SyncError> {
    let name = settings.source.as_str();
    let state = store.guard_state(name, settings.deletion_window).await?;
    match plan::guard(plan, settings.max_delete_percent, state.deleted) {
        Ok(()) => Ok(Judgement::Allowed),
        Err(refused) => match state.approved {
            Some((set, by)) if set == refused.set => Ok(Judgement::Approved(by)),
            _ => Ok(Judgement::Refused(refused)),
        },
    }
}

/// Whether applying the plan would write anything besides its record.
pub fn has_writes(plan: &Plan, drift: DriftPolicy) -> bool {
    !plan.forget.is_empty()
        || plan.claims_changed
        || plan.changes.iter().any(|c| match c.action {
            Action::Create | Action::Update | Action::Delete => true,
            Action::Drift => drift == DriftPolicy::Correct || !c.drift_reported,
            Action::Conflict | Action::Suspended => false,
        })
}
