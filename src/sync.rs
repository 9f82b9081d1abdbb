//! One sync of one source: read it, load the rows in its scope, plan, guard,
//! and apply in one transaction. The CLI and (later) the controller share it.

use crate::model::{DesiredState, Diagnostic, Limits};
use crate::plan::{self, GuardRefusal, LiveState, Plan, PlanOptions};
use crate::source::{Source, SourceError};
use crate::store::{ApplyRequest, DriftPolicy, Store, StoreError, SyncRecord};

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("the source has {} error(s); nothing was applied", .0.len())]
    Invalid(Vec<Diagnostic>),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Refused(GuardRefusal),
    #[error("the parser stopped unexpectedly: {0}")]
    Task(String),
}

/// A source read and planned against the database, not yet applied.
#[derive(Debug)]
pub struct Prepared {
    pub revision: String,
    pub desired: DesiredState,
    pub live: LiveState,
    pub plan: Plan,
}

/// Reads and validates a whole source: the desired state or every error.
pub async fn read_desired(
    source: &impl Source,
    limits: Limits,
) -> Result<(String, DesiredState), SyncError> {
    let snapshot = source.read().await?;
    let revision = snapshot.revision.clone();
    let desired = tokio::task::spawn_blocking(move || snapshot.desired_for_plan(limits))
        .await
        .map_err(|e| SyncError::Task(e.to_string()))?
        .map_err(SyncError::Invalid)?;
    Ok((revision, desired))
}

/// Reads the source and the database side by side, then plans.
pub async fn prepare(
    store: &impl Store,
    source: &impl Source,
    source_name: &str,
    limits: Limits,
    options: PlanOptions,
) -> Result<Prepared, SyncError> {
    let (desired, live) = tokio::join!(
        read_desired(source, limits),
        store.load_for_plan(source_name)
    );
    plan_read(store, desired?, live?, source_name, options).await
}

/// Plans a source already read against the database state already loaded.
pub async fn plan_read(
    store: &impl Store,
    (revision, desired): (String, DesiredState),
    live: LiveState,
    source_name: &str,
    options: PlanOptions,
) -> Result<Prepared, SyncError> {
    let mut live = live;
    let mut plan = plan::plan(&desired, &live, source_name, options);
    if crate::store::read_unread(store, &mut live, &plan).await? {
        plan = plan::plan(&desired, &live, source_name, options);
    }
    crate::store::explain(store, &mut plan, source_name).await?;
    Ok(Prepared {
        revision,
        desired,
        live,
        plan,
    })
}

#[derive(Clone, Debug)]
pub struct ApplyOptions {
    pub actor: String,
    pub drift: DriftPolicy,
    pub max_delete_percent: u32,
    pub force: bool,
}

/// Guards and applies a prepared plan.
pub async fn apply(
    store: &impl Store,
    prepared: &Prepared,
    source_name: &str,
    options: &ApplyOptions,
) -> Result<SyncRecord, SyncError> {
    if !options.force {
        plan::guard(&prepared.plan, options.max_delete_percent).map_err(SyncError::Refused)?;
    }
    let record = store
        .apply(ApplyRequest::new(
            source_name,
            &prepared.revision,
            &options.actor,
            options.drift,
            &prepared.plan,
        ))
        .await?;
    tracing::info!(
        source = source_name,
        revision = %prepared.revision,
        created = record.summary.create,
        updated = record.summary.update,
        deleted = record.summary.delete,
        drift = record.summary.drift,
        "sync applied"
    );
    Ok(record)
}
