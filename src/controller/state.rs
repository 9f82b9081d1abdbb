//! What the controller and the HTTP server share: each source's status and
//! trigger, the store, the metrics, the shutdown signal.

use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use super::leader::Leadership;
use crate::metrics::Metrics;
use crate::source::Commit;
use crate::store::AnyStore;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub enum SyncState {
    Progressing,
    Synced,
    /// Drift left in place (report mode) or conflicts waiting.
    OutOfSync,
    Error,
    /// Every object the source declares is suspended.
    Suspended,
}

/// What the last sync did, and what it left.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct Counts {
    pub managed: usize,
    pub created: usize,
    pub updated: usize,
    pub deleted: usize,
    pub drifted: usize,
    pub conflicts: usize,
    pub suspended: usize,
}

/// An object that differs from what is declared and was left alone: open
/// drift in report mode, or a conflict.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OpenItem {
    pub source: String,
    pub kind: String,
    pub app: String,
    pub id: String,
    pub note: String,
    pub diff: String,
}

/// One source as the controller last saw it.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceStatus {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The folder, or the repository URL without credentials, ref and path.
    pub location: String,
    pub state: SyncState,
    pub last_attempted_revision: Option<String>,
    pub last_applied_revision: Option<String>,
    /// The commit of the last attempted revision (Git sources).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_attempted_commit: Option<Commit>,
    /// The commit of the last applied revision (Git sources).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_applied_commit: Option<Commit>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// Syncs attempted since accord started: a caller that saw it advance
    /// twice knows the source had its chance (to correct a row, to notice a
    /// file) without guessing at a time.
    pub attempts: u64,
    /// What asked for those syncs (`start`, `interval`, `api`, `webhook`,
    /// `file change`, …), counted.
    pub triggers: std::collections::BTreeMap<String, u64>,
    /// A folder or a Kubernetes source saw changes and waits for them to
    /// settle before its sync.
    pub pending_changes: bool,
    pub last_success_at: Option<DateTime<Utc>>,
    pub message: String,
    pub counts: Counts,
    /// Located errors of the last revision that failed validation.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    #[serde(skip)]
    pub drift: Vec<OpenItem>,
    #[serde(skip)]
    pub conflicts: Vec<OpenItem>,
    /// Objects the source declares with `gitops: false`, left alone.
    #[serde(skip)]
    pub suspended: Vec<OpenItem>,
    /// Deletions the deletion guard refused and that wait for an approval.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deletion_refused: Option<RefusedDeletions>,
}

/// What the deletion guard refused, shown until it is approved or no
/// longer planned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefusedDeletions {
    /// Names exactly the refused set: an approval applies to it alone.
    pub set: String,
    pub deletes: usize,
    /// Deletions made earlier in the deletion window.
    pub earlier: usize,
    /// The rows the source managed at the window's start.
    pub managed: usize,
    pub message: String,
}

impl SourceStatus {
    pub fn new(name: &str, kind: &'static str, location: String) -> SourceStatus {
        SourceStatus {
            name: name.to_owned(),
            kind,
            location,
            state: SyncState::Progressing,
            last_attempted_revision: None,
            last_applied_revision: None,
            last_attempted_commit: None,
            last_applied_commit: None,
            last_attempt_at: None,
            attempts: 0,
            triggers: Default::default(),
            pending_changes: false,
            last_success_at: None,
            message: "waiting for the first sync".into(),
            counts: Counts::default(),
            errors: Vec::new(),
            drift: Vec::new(),
            conflicts: Vec::new(),
            suspended: Vec::new(),
            deletion_refused: None,
        }
    }
}

/// A request to sync a source now; `done` hears the status after it.
pub struct SyncRequest {
    pub reason: String,
    pub done: Option<oneshot::Sender<SourceStatus>>,
}

pub struct SourceHandle {
    pub name: String,
    pub status: RwLock<SourceStatus>,
    pub trigger: mpsc::Sender<SyncRequest>,
    pub webhook_secret: Option<String>,
    /// Turns each new status into notifications, when receivers are configured.
    pub watcher: Option<Arc<super::notifications::Watcher>>,
}

impl SourceHandle {
    pub fn status(&self) -> SourceStatus {
        self.status
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn update(&self, change: impl FnOnce(&mut SourceStatus)) {
        let mut status = self.status.write().unwrap_or_else(|e| e.into_inner());
        change(&mut status);
        // Under the lock, so two updates are told in the order they were made.
        if let Some(watcher) = &self.watcher {
            watcher.notifier.observe_source(&watcher.tracker, &status);
        }
    }

    /// Asks for a sync without waiting; a sync already queued covers this one.
    pub fn poke(&self, reason: &str) {
        let _ = self.trigger.try_send(SyncRequest {
            reason: reason.to_owned(),
            done: None,
        });
    }

    /// Asks for a sync and waits for its result.
    pub async fn sync_now(&self, reason: &str) -> Option<SourceStatus> {
        let (done, result) = oneshot::channel();
        self.trigger
            .send(SyncRequest {
                reason: reason.to_owned(),
                done: Some(done),
            })
            .await
            .ok()?;
        result.await.ok()
    }
}

/// What the last check of the history's hash chain found.
#[derive(Clone, Debug, Default, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryStatus {
    /// Null until the first check, then whether the chain holds.
    pub ok: Option<bool>,
    /// The first row found edited, inserted or removed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    pub verified_at: Option<DateTime<Utc>>,
    /// Rows verified since accord started.
    pub sync_runs: u64,
    pub audit_rows: u64,
}

pub struct State {
    pub sources: Vec<Arc<SourceHandle>>,
    /// The history's hash chain, as `accord run` last verified it.
    pub history: RwLock<HistoryStatus>,
    pub store: Arc<AnyStore>,
    pub metrics: Metrics,
    /// When set, mutating API calls need `Authorization: Bearer <token>`.
    pub api_token: Option<String>,
    pub shutdown: CancellationToken,
    /// Set when replicas elect a leader: only the leader syncs.
    pub leadership: Option<Arc<Leadership>>,
    /// The access index of the live database, for the access queries.
    pub access: AccessCache,
    /// Outbound notifications, when receivers are configured.
    pub notifier: Option<Arc<super::notifications::Notifier>>,
    /// `accord ui`: pages and reads only; every mutating call is refused.
    pub read_only: bool,
}

/// The access index of every row of the database, rebuilt when it is older
/// than `AccessCache::FRESH`: queries answer from the database as it is
/// (hand edits and rows accord does not manage count), without reading
/// every row for each query of a page that asks several.
#[derive(Default)]
pub struct AccessCache {
    slot: tokio::sync::Mutex<Option<(std::time::Instant, Arc<crate::access::Access>)>>,
}

impl AccessCache {
    pub const FRESH: std::time::Duration = std::time::Duration::from_secs(2);

    /// The index, rebuilt from `store` when stale. One rebuild at a time:
    /// concurrent queries wait for it rather than each reading every row.
    pub async fn get(
        &self,
        store: &AnyStore,
    ) -> Result<Arc<crate::access::Access>, crate::store::StoreError> {
        use crate::store::Store;
        let mut slot = self.slot.lock().await;
        if let Some((built, access)) = slot.as_ref() {
            if built.elapsed() < Self::FRESH {
                return Ok(Arc::clone(access));
            }
        }
        let started = std::time::Instant::now();
        let rows = store.load(None).await?.rows;
        let access = tokio::task::spawn_blocking(move || {
            Arc::new(crate::access::Access::build(crate::access::placed_rows(
                rows,
            )))
        })
        .await
        .map_err(crate::store::StoreError::Stopped)?;
        *slot = Some((started, Arc::clone(&access)));
        Ok(access)
    }

    /// Forgets the index: the next query reads the database again.
    pub async fn invalidate(&self) {
        *self.slot.lock().await = None;
    }
}

impl State {
    /// `sources` over `store`: no API token, no leader election, no
    /// notifications, fresh metrics; the rest is set by struct update.
    pub fn new(sources: Vec<Arc<SourceHandle>>, store: Arc<AnyStore>) -> State {
        State {
            sources,
            history: Default::default(),
            store,
            metrics: Metrics::default(),
            api_token: None,
            shutdown: CancellationToken::new(),
            leadership: None,
            access: Default::default(),
            notifier: None,
            read_only: false,
        }
    }

    /// The state `accord ui` serves: a database to browse, no sources, no
    /// controller, nothing it may change.
    pub fn browse(store: Arc<AnyStore>, shutdown: CancellationToken) -> State {
        State {
            shutdown,
            read_only: true,
            ..State::new(Vec::new(), store)
        }
    }

    pub fn source(&self, name: &str) -> Option<&Arc<SourceHandle>> {
        self.sources.iter().find(|s| s.name == name)
    }

    pub fn history(&self) -> HistoryStatus {
        self.history
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn statuses(&self) -> Vec<SourceStatus> {
        self.sources.iter().map(|s| s.status()).collect()
    }

    /// Every source has synced successfully at least once.
    pub fn synced_once(&self) -> bool {
        self.sources
            .iter()
            .all(|s| s.status().last_success_at.is_some())
    }
}
