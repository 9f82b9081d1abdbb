//! The Kubernetes source: `Organization`, `Permit` and `Enrollment` custom
//! resources, kept in a watch cache, turned into declarations object by
//! object (one bad object rejects only itself), with the result of each sync
//! written back to every object's status.

mod cache;
mod declare;
mod object;
pub mod resources;
pub mod status;

pub use cache::{Cache, Feeds};
pub use declare::{declare, hold_rejected, outcomes, SyncResult};
pub use object::{api_resource, KubeObject};

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::Client;

use crate::model::Limits;
use crate::plan::Plan;
use crate::policy::DriftPolicy;

use self::object::resource_version;
use self::resources::ObjectStatus;
use self::status::{reasons, Outcome};
use super::{Declared, Snapshot, SourceError};

/// Status writes in flight at once: a round trip each, so 10,000 first
/// statuses take seconds rather than minutes.
pub const DEFAULT_WRITE_CONCURRENCY: usize = 16;

/// A namespace annotation naming the app of the objects in it that name none.
pub const APP_ANNOTATION: &str = "accord.dev/app";

/// An object annotation asking for a sync: a new value (any text, say
/// `$(date +%s)`) wakes the source, and the object's
/// `status.lastHandledReconcileAt` takes the value once a sync has run.
/// Metadata does not bump `metadata.generation`, so without it a kubectl
/// user could not ask for a sync.
pub const RECONCILE_REQUEST_ANNOTATION: &str = "accord.dev/reconcile-requested-at";

#[derive(Clone, Debug, Default, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KubernetesConfig {
    /// Namespaces to watch; all of them when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// A kubeconfig file; in-cluster configuration or `$KUBECONFIG` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig: Option<std::path::PathBuf>,
}

/// The last snapshot read, kept to map the sync's result back to objects.
struct LastRead {
    objects: Vec<KubeObject>,
    declared: Declared,
}

pub struct KubernetesSource {
    client: Client,
    cache: Arc<Cache>,
    recorder: Recorder,
    last: Mutex<Option<Arc<LastRead>>>,
    /// The fingerprint of the last objects read: an unchanged one is not re-read.
    fingerprint: Mutex<Option<u64>>,
    /// Status writes in flight at once.
    concurrency: usize,
    /// Rejected objects whose previous version the last plan kept.
    held: Mutex<HashSet<Arc<str>>>,
    /// What source-wide Warning Events (refused deletions) are about: an
    /// object that outlives any of the source's own, which may be the very
    /// ones being deleted.
    events_about: ObjectReference,
}

impl KubernetesSource {
    /// `identity` names this replica on Events.
    pub fn new(client: Client, cache: Arc<Cache>, identity: &str) -> KubernetesSource {
        let reporter = Reporter {
            controller: "accord".into(),
            instance: Some(identity.to_owned()),
        };
        KubernetesSource {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            cache,
            last: Mutex::new(None),
            fingerprint: Mutex::new(None),
            concurrency: DEFAULT_WRITE_CONCURRENCY,
            held: Mutex::new(HashSet::new()),
            events_about: namespace_reference("default"),
        }
    }

    /// The object source-wide Events are about (see `events_about`).
    pub fn with_events_about(mut self, reference: ObjectReference) -> Self {
        self.events_about = reference;
        self
    }

    /// Publishes a Warning Event about refused deletions on the source's
    /// stable object, where `kubectl get events` shows it.
    pub async fn warn_refusal(&self, note: &str) {
        let event = KubeEvent {
            type_: EventType::Warning,
            reason: reasons::DELETION_REFUSED.into(),
            note: Some(status::truncate(note, 1000)),
            action: "Prune".into(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, &self.events_about).await {
            tracing::warn!(%error, "event not published");
        }
    }

    /// Who changed each of `files` (object ids): its spec's field manager.
    pub fn authors(&self, files: &[Arc<str>]) -> HashMap<Arc<str>, String> {
        self.each_object(files, |object| {
            object
                .field_manager
                .as_ref()
                .map(|manager| format!("{manager} (field manager)"))
        })
    }

    /// Each of `files` (object ids) with the object's uid and resourceVersion.
    pub fn origins(&self, files: &[Arc<str>]) -> HashMap<Arc<str>, String> {
        self.each_object(files, |object| {
            Some(format!(
                "{} uid={} resourceVersion={}",
                object.id(),
                object.uid,
                object.resource_version
            ))
        })
    }

    fn each_object(
        &self,
        files: &[Arc<str>],
        describe: impl Fn(&KubeObject) -> Option<String>,
    ) -> HashMap<Arc<str>, String> {
        let Some(last) = lock(&self.last).clone() else {
            return HashMap::new();
        };
        let wanted: HashSet<&str> = files.iter().map(|f| &**f).collect();
        last.objects
            .iter()
            .filter_map(|object| {
                let id = object.id();
                if !wanted.contains(id.as_str()) {
                    return None;
                }
                Some((Arc::from(id.as_str()), describe(object)?))
            })
            .collect()
    }

    /// [`hold_rejected`] for the snapshot last read; remembered for the statuses.
    pub fn hold_rejected(&self, plan: &mut Plan) {
        let held = match lock(&self.last).as_ref() {
            Some(last) => hold_rejected(plan, &last.declared),
            None => HashSet::new(),
        };
        *lock(&self.held) = held;
    }

    /// Status writes in flight at once (1: in object order, as tests want).
    pub fn with_write_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    fn fingerprint(objects: &[KubeObject]) -> u64 {
        let mut hasher = DefaultHasher::new();
        for o in objects {
            (
                &o.uid,
                &o.namespace,
                &o.name,
                o.generation,
                &o.namespace_app,
            )
                .hash(&mut hasher);
        }
        hasher.finish()
    }

    pub async fn read(&self) -> Result<Snapshot, SourceError> {
        let objects = self.cache.objects()?;
        let fingerprint = Self::fingerprint(&objects);
        let declared = declare(&objects, Limits::default());
        let snapshot = Snapshot {
            revision: self.cache.revision().to_string(),
            declared: Some(declared.clone()),
            ..Snapshot::default()
        };
        *lock(&self.fingerprint) = Some(fingerprint);
        *lock(&self.last) = Some(Arc::new(LastRead { objects, declared }));
        Ok(snapshot)
    }

    pub async fn poll(&self, known: Option<&str>) -> Result<Option<Snapshot>, SourceError> {
        let objects = self.cache.objects()?;
        let unchanged =
            known.is_some() && *lock(&self.fingerprint) == Some(Self::fingerprint(&objects));
        if unchanged {
            // Statuses are still refreshed from the newest cache on report.
            if let Some(last) = lock(&self.last).as_mut() {
                *last = Arc::new(LastRead {
                    objects,
                    declared: last.declared.clone(),
                });
            }
            return Ok(None);
        }
        self.read().await.map(Some)
    }

    /// Writes every object's status after a sync, skipping those that would
    /// not change, and publishes Events on failures and drift correction.
    pub async fn report(&self, result: &SyncResult<'_>, drift: DriftPolicy) -> StatusWrites {
        let Some(last) = lock(&self.last).clone() else {
            return StatusWrites::default();
        };
        let held = lock(&self.held).clone();
        let outcomes = outcomes(&last.objects, &last.declared, &held, result, drift);
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let mut writes = StatusWrites::default();
        let live_uids: HashSet<&str> = last.objects.iter().map(|o| o.uid.as_str()).collect();
        self.cache.forget_written_except(&live_uids);
        // Only objects whose status changes (or that get an Event) cost a
        // request; they go out a few at a time, since each is a round trip.
        let work: Vec<(&KubeObject, &Outcome, ObjectStatus, bool)> = last
            .objects
            .iter()
            .zip(&outcomes)
            .filter_map(|(object, outcome)| {
                let pending = self.cache.pending(object);
                let current = pending.as_ref().or(object.status.as_ref());
                let next = status::status_for(
                    outcome,
                    object.generation,
                    object.reconcile_requested.as_deref(),
                    current,
                    &now,
                );
                let changed = status::differs(current, &next);
                let event = outcome.event.as_ref().is_some_and(|e| e.always || changed);
                (changed || event).then_some((object, outcome, next, changed))
            })
            .collect();
        let mut pending = Vec::with_capacity(work.len());
        for (object, outcome, next, changed) in work {
            pending.push(self.write(object, outcome, next, changed));
        }
        let results: Vec<(bool, Option<bool>, Option<bool>)> = futures::stream::iter(pending)
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        for (_, patched, event) in results {
            match patched {
                Some(true) => writes.patched += 1,
                Some(false) => writes.failed += 1,
                None => {}
            }
            if event == Some(true) {
                writes.events += 1;
            }
        }
        writes
    }
}

impl KubernetesSource {
    /// Writes one object's status (when `changed`) and its Event; whether
    /// each succeeded, `None` when not attempted.
    async fn write(
        &self,
        object: &KubeObject,
        outcome: &Outcome,
        next: ObjectStatus,
        changed: bool,
    ) -> (bool, Option<bool>, Option<bool>) {
        let mut patched = None;
        if changed {
            let resource = api_resource(object.kind);
            let api: Api<DynamicObject> =
                Api::namespaced_with(self.client.clone(), &object.namespace, &resource);
            let body = status::apply_body(object.kind.as_str(), &next);
            let params = PatchParams::apply(status::FIELD_MANAGER).force();
            match api
                .patch_status(&object.name, &params, &Patch::Apply(&body))
                .await
            {
                Ok(updated) => {
                    patched = Some(true);
                    self.cache.wrote(object, next, resource_version(&updated));
                }
                Err(error) => {
                    patched = Some(false);
                    tracing::warn!(object = %object.id(), %error, "status not written");
                }
            }
        }
        let mut published = None;
        if let Some(note) = outcome.event.as_ref().filter(|e| e.always || changed) {
            let event = KubeEvent {
                type_: if note.warning {
                    EventType::Warning
                } else {
                    EventType::Normal
                },
                reason: note.reason.into(),
                // The API takes at most 1 kB.
                note: Some(status::truncate(&note.note, 1000)),
                action: "Sync".into(),
                secondary: None,
            };
            published = Some(
                match self.recorder.publish(&event, &object.reference()).await {
                    Ok(()) => true,
                    Err(error) => {
                        tracing::warn!(object = %object.id(), %error, "event not published");
                        false
                    }
                },
            );
        }
        (changed, patched, published)
    }
}

/// What one status report wrote to the API server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatusWrites {
    pub patched: usize,
    pub failed: usize,
    pub events: usize,
}

/// A reference to a namespace, for Events about the source as a whole.
pub fn namespace_reference(name: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Namespace".into()),
        name: Some(name.into()),
        ..ObjectReference::default()
    }
}

/// A reference to the leader Lease, for Events about the source as a whole.
pub fn lease_reference(namespace: &str, name: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("coordination.k8s.io/v1".into()),
        kind: Some("Lease".into()),
        namespace: Some(namespace.into()),
        name: Some(name.into()),
        ..ObjectReference::default()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
