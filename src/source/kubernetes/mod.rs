//! The Kubernetes source: `Organization`, `Permit` and `Enrollment` custom
//! resources, kept in a watch cache, turned into declarations object by
//! object (one bad object rejects only itself), with the result of each sync
//! written back to every object's status.

pub mod resources;
pub mod status;

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, ObjectReference};
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, store::Writer, ObjectRef};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Resource, ResourceExt};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::model::parse::parse_file;
use crate::model::{Declaration, DesiredState, Diagnostic, Key, Kind, Limits};
use crate::plan::{Action, Change, Plan};
use crate::policy::DriftPolicy;

use self::resources::{EnrollmentResource, ObjectStatus, OrganizationResource, PermitResource};
use self::status::{reasons, Outcome};
use super::{Declared, Snapshot, SourceError};

/// Status writes in flight at once: a round trip each, so 10,000 first
/// statuses take seconds rather than minutes.
pub const DEFAULT_WRITE_CONCURRENCY: usize = 16;

/// A namespace annotation naming the app of the objects in it that name none.
pub const APP_ANNOTATION: &str = "accord.dev/app";

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

/// The API resource of each kind, as the watch and the status writer use it.
pub fn api_resource(kind: Kind) -> ApiResource {
    match kind {
        Kind::Organization => ApiResource::erase::<OrganizationResource>(&()),
        Kind::Permit => ApiResource::erase::<PermitResource>(&()),
        Kind::Enrollment => ApiResource::erase::<EnrollmentResource>(&()),
    }
}

/// One custom resource as a sync sees it.
#[derive(Clone, Debug)]
pub struct KubeObject {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub generation: Option<i64>,
    /// Seconds since the epoch: on a duplicate key the oldest object wins.
    pub created: Option<i64>,
    pub spec: Value,
    pub status: Option<ObjectStatus>,
    pub resource_version: u64,
    /// The namespace's `accord.dev/app` annotation.
    pub namespace_app: Option<String>,
    pub reference: ObjectReference,
    /// The field manager that last wrote the object's spec (`kubectl`,
    /// `kubectl-client-side-apply`, a GitOps controller…): who changed it,
    /// as far as a controller can tell. The requesting user is not visible.
    pub field_manager: Option<String>,
}

impl KubeObject {
    /// How declarations, errors and audit rows name the object:
    /// `namespace/Kind/name`.
    pub fn id(&self) -> String {
        format!("{}/{}/{}", self.namespace, self.kind, self.name)
    }

    fn from_dynamic(
        kind: Kind,
        resource: &ApiResource,
        object: &DynamicObject,
        namespace_app: Option<String>,
    ) -> Self {
        let status = object
            .data
            .get("status")
            .and_then(|s| serde_json::from_value(s.clone()).ok());
        KubeObject {
            kind,
            namespace: object.namespace().unwrap_or_default(),
            name: object.name_any(),
            uid: object.uid().unwrap_or_default(),
            generation: object.meta().generation,
            created: object
                .meta()
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.as_second()),
            spec: object.data.get("spec").cloned().unwrap_or(Value::Null),
            status,
            resource_version: resource_version(object),
            namespace_app,
            reference: object.object_ref(resource),
            field_manager: spec_manager(object),
        }
    }
}

/// The manager of the newest write to the object itself (not a
/// subresource such as its status, which accord writes).
fn spec_manager(object: &DynamicObject) -> Option<String> {
    object
        .meta()
        .managed_fields
        .iter()
        .flatten()
        .filter(|entry| entry.subresource.as_deref().unwrap_or_default().is_empty())
        .max_by_key(|entry| entry.time.as_ref().map(|t| t.0))
        .and_then(|entry| entry.manager.clone())
}

fn resource_version(object: &DynamicObject) -> u64 {
    object
        .resource_version()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Turns objects into declarations with the same parser as files: each is
/// rendered as the typed manifest it is and parsed alone, so an invalid
/// object is rejected without stopping the others. Of objects declaring the
/// same key, the oldest is taken and the others rejected.
pub fn declare(objects: &[KubeObject], limits: Limits) -> Declared {
    let mut order: Vec<&KubeObject> = objects.iter().collect();
    order.sort_by(|a, b| {
        (a.created, &a.namespace, &a.name, a.kind).cmp(&(b.created, &b.namespace, &b.name, b.kind))
    });
    let mut desired = DesiredState::default();
    let mut rejected = Vec::new();
    for object in order {
        let file: Arc<str> = Arc::from(object.id());
        let mut spec = object.spec.clone();
        if let (Value::Object(fields), Some(app)) = (&mut spec, &object.namespace_app) {
            if !fields.contains_key("app") && !fields.contains_key("appHost") {
                fields.insert("app".into(), Value::String(app.clone()));
            }
        }
        let manifest = serde_json::json!({
            "apiVersion": format!("{}/{}", resources::GROUP, resources::VERSION),
            "kind": object.kind.as_str(),
            "metadata": {"name": object.name},
            "spec": spec,
        });
        let text = crate::model::render::to_yaml(&manifest);
        let (declarations, errors) = parse_file(&file, text.as_bytes(), limits);
        if !errors.is_empty() {
            rejected.extend(errors);
            continue;
        }
        for declaration in declarations {
            let key = declaration.object.key();
            if let Some(first) = desired.objects.get(&key) {
                rejected.push(Diagnostic::new(
                    &file,
                    declaration.origin.mark,
                    format!(
                        "{} `{}` in app `{}` is already declared by {}; rename one of them",
                        key.kind, key.id, key.app, first.origin.file
                    ),
                ));
            } else {
                desired.objects.insert(key, declaration);
            }
        }
    }
    Declared { desired, rejected }
}

/// Keeps what a rejected object applied before: a delete of a key last
/// declared by an object that is now invalid is dropped from the plan, so a
/// bad edit leaves the previous grant in place instead of revoking it.
/// Returns the objects whose previous version was kept.
pub fn hold_rejected(plan: &mut Plan, declared: &Declared) -> HashSet<Arc<str>> {
    let rejected: HashSet<&str> = declared.rejected.iter().map(|d| &*d.file).collect();
    let mut held = HashSet::new();
    plan.changes.retain(|change| {
        let file = change
            .declared_in
            .as_ref()
            .filter(|f| rejected.contains(&***f));
        match (change.action, file) {
            (Action::Delete, Some(file)) => {
                held.insert(file.clone());
                false
            }
            _ => true,
        }
    });
    held
}

/// How a sync ended, as the objects' statuses report it.
pub enum SyncResult<'a> {
    Applied(&'a Plan),
    /// The deletion guard refused the plan.
    Refused(&'a Plan, String),
    /// The database could not be read or written; `plan` when it got that far.
    Failed(Option<&'a Plan>, String),
}

/// What each object's status should say after a sync, in object order.
pub fn outcomes(
    objects: &[KubeObject],
    declared: &Declared,
    held: &HashSet<Arc<str>>,
    result: &SyncResult<'_>,
    drift: DriftPolicy,
) -> Vec<Outcome> {
    let keys: HashMap<&str, (&Key, &Declaration)> = declared
        .desired
        .objects
        .iter()
        .map(|(key, d)| (&*d.origin.file, (key, d)))
        .collect();
    let rejections: HashMap<&str, &Diagnostic> = declared
        .rejected
        .iter()
        .rev()
        .map(|d| (&*d.file, d))
        .collect();
    let plan = match result {
        SyncResult::Applied(plan) | SyncResult::Refused(plan, _) => Some(*plan),
        SyncResult::Failed(plan, _) => *plan,
    };
    let changes: HashMap<&Key, &Change> = plan
        .map(|p| p.changes.iter().map(|c| (&c.key, c)).collect())
        .unwrap_or_default();
    objects
        .iter()
        .map(|object| {
            let id = object.id();
            if let Some(error) = rejections.get(id.as_str()) {
                let message = if held.contains(id.as_str()) {
                    format!("{}; the version applied before stays in the database", error.message)
                } else {
                    error.message.clone()
                };
                return Outcome::failed(reasons::INVALID, message, false);
            }
            let Some((key, _)) = keys.get(id.as_str()) else {
                return Outcome::failed(reasons::INVALID, "not declared".into(), false);
            };
            let change = changes.get(key).copied();
            let pending = change.is_some_and(|c| {
                matches!(c.action, Action::Create | Action::Update | Action::Drift)
            });
            // A conflict or suspension is what the object should show, whether
            // or not the rest of the sync went through.
            let held_back = change.is_some_and(|c| {
                matches!(c.action, Action::Conflict | Action::Suspended)
            });
            let already_applied = object.status.as_ref().is_some_and(|s| {
                s.observed_generation == object.generation
                    && s.conditions
                        .iter()
                        .any(|c| c.type_ == status::SYNCED && c.reason == reasons::APPLIED)
            });
            match result {
                _ if held_back => {}
                SyncResult::Failed(_, message) if pending || !already_applied => {
                    return Outcome::failed(
                        reasons::DATABASE_ERROR,
                        format!("not applied: {message}; the database keeps its previous state and accord retries"),
                        false,
                    )
                }
                SyncResult::Refused(_, message) if pending || !already_applied => {
                    return Outcome::failed(reasons::DELETION_REFUSED, message.clone(), false)
                }
                SyncResult::Failed(..) | SyncResult::Refused(..) => return Outcome::applied(),
                SyncResult::Applied(_) => {}
            }
            let Some(change) = change else {
                return Outcome::applied();
            };
            match change.action {
                Action::Create | Action::Update | Action::Delete => Outcome::applied(),
                Action::Drift => match drift {
                    DriftPolicy::Correct => Outcome::drift_corrected(&change.note),
                    DriftPolicy::Report => Outcome::failed(
                        reasons::DRIFTED,
                        format!(
                            "the row was {} and the drift policy is report, so accord leaves it; changed: {}",
                            change.note,
                            change.fields.iter().map(|f| f.field.as_str()).collect::<Vec<_>>().join(", ")
                        ),
                        false,
                    ),
                },
                Action::Conflict => Outcome::failed(
                    reasons::CONFLICT,
                    format!("not applied: {}", change.note),
                    false,
                ),
                Action::Suspended => Outcome {
                    reason: reasons::SUSPENDED,
                    message: format!("not applied: {}", change.note),
                    ready: false,
                    synced: false,
                    event: None,
                },
            }
        })
        .collect()
}

// ---- the watch cache -------------------------------------------------------------

struct Slot {
    kind: Kind,
    namespace: Option<String>,
    reader: reflector::Store<DynamicObject>,
    listed: AtomicBool,
}

struct NamespaceSlot {
    name: Option<String>,
    reader: reflector::Store<Namespace>,
    listed: AtomicBool,
}

/// The objects the watches have seen: one store per kind (and per namespace
/// when the source is limited to some), plus the namespaces' annotations.
pub struct Cache {
    slots: Vec<Slot>,
    namespace_slots: Vec<NamespaceSlot>,
    /// The highest resourceVersion seen in any event: the source's revision.
    revision: AtomicU64,
}

/// The writing ends of a [`Cache`]: the watches own them (tests feed them).
pub struct Feeds {
    cache: Arc<Cache>,
    slots: Vec<Writer<DynamicObject>>,
    namespace_slots: Vec<Writer<Namespace>>,
}

impl Cache {
    /// Every object, once every watch has listed at least once; before
    /// that, an error (syncing a half-listed cache would prune the rest).
    pub fn objects(&self) -> Result<Vec<KubeObject>, SourceError> {
        if let Some(slot) = self
            .slots
            .iter()
            .find(|s| !s.listed.load(Ordering::Acquire))
        {
            return Err(SourceError::NotListed(format!(
                "{}s{}",
                slot.kind.as_str().to_lowercase(),
                slot.namespace
                    .as_ref()
                    .map(|n| format!(" in namespace {n}"))
                    .unwrap_or_default()
            )));
        }
        if self
            .namespace_slots
            .iter()
            .any(|s| !s.listed.load(Ordering::Acquire))
        {
            return Err(SourceError::NotListed("namespaces".into()));
        }
        let apps: HashMap<String, String> = self
            .namespace_slots
            .iter()
            .flat_map(|s| s.reader.state())
            .filter_map(|ns| {
                let app = ns.annotations().get(APP_ANNOTATION)?.clone();
                Some((ns.name_any(), app))
            })
            .collect();
        let mut objects: Vec<KubeObject> = self
            .slots
            .iter()
            .flat_map(|slot| {
                let resource = api_resource(slot.kind);
                let apps = &apps;
                slot.reader.state().into_iter().map(move |o| {
                    let app = apps.get(&o.namespace().unwrap_or_default()).cloned();
                    KubeObject::from_dynamic(slot.kind, &resource, &o, app)
                })
            })
            .collect();
        objects
            .sort_by(|a, b| (&a.namespace, a.kind, &a.name).cmp(&(&b.namespace, b.kind, &b.name)));
        Ok(objects)
    }

    pub fn revision(&self) -> u64 {
        self.revision.load(Ordering::Acquire)
    }

    fn saw(&self, resource_version: Option<&String>) {
        if let Some(rv) = resource_version.and_then(|v| v.parse::<u64>().ok()) {
            self.revision.fetch_max(rv, Ordering::AcqRel);
        }
    }
}

impl Feeds {
    /// A cache for all namespaces (`namespaces` empty) or the listed ones.
    pub fn new(namespaces: &[String]) -> Feeds {
        let scopes: Vec<Option<String>> = if namespaces.is_empty() {
            vec![None]
        } else {
            namespaces.iter().cloned().map(Some).collect()
        };
        let mut slots = Vec::new();
        let mut writers = Vec::new();
        for kind in Kind::ALL {
            for scope in &scopes {
                let writer = Writer::new(api_resource(kind));
                slots.push(Slot {
                    kind,
                    namespace: scope.clone(),
                    reader: writer.as_reader(),
                    listed: AtomicBool::new(false),
                });
                writers.push(writer);
            }
        }
        let mut namespace_slots = Vec::new();
        let mut namespace_writers = Vec::new();
        for scope in &scopes {
            let writer = Writer::new(());
            namespace_slots.push(NamespaceSlot {
                name: scope.clone(),
                reader: writer.as_reader(),
                listed: AtomicBool::new(false),
            });
            namespace_writers.push(writer);
        }
        Feeds {
            cache: Arc::new(Cache {
                slots,
                namespace_slots,
                revision: AtomicU64::new(0),
            }),
            slots: writers,
            namespace_slots: namespace_writers,
        }
    }

    pub fn cache(&self) -> Arc<Cache> {
        self.cache.clone()
    }

    /// Replaces what the cache holds of `kind` with `objects`, as a fresh
    /// list does (tests use this; the watches produce the same events).
    pub fn list(&mut self, kind: Kind, objects: Vec<DynamicObject>) {
        let index = self.cache.slots.iter().position(|s| s.kind == kind);
        if let Some(index) = index {
            let mut events = vec![watcher::Event::Init];
            events.extend(objects.into_iter().map(watcher::Event::InitApply));
            events.push(watcher::Event::InitDone);
            for event in events {
                self.apply(index, event);
            }
        }
    }

    /// Replaces the namespaces the cache knows (their `accord.dev/app`).
    pub fn list_namespaces(&mut self, namespaces: Vec<Namespace>) {
        let mut events = vec![watcher::Event::Init];
        events.extend(namespaces.into_iter().map(watcher::Event::InitApply));
        events.push(watcher::Event::InitDone);
        for event in events {
            self.apply_namespace(0, event);
        }
    }

    fn apply(&mut self, index: usize, event: watcher::Event<DynamicObject>) -> bool {
        apply_event(&self.cache, index, &mut self.slots[index], event)
    }

    fn apply_namespace(&mut self, index: usize, event: watcher::Event<Namespace>) -> bool {
        apply_namespace_event(&self.cache, index, &mut self.namespace_slots[index], event)
    }

    /// Runs the watches until `shutdown`; `wake` is called after every event
    /// that may change the desired state.
    pub fn follow(
        self,
        client: Client,
        wake: Arc<dyn Fn() + Send + Sync>,
        shutdown: CancellationToken,
    ) {
        let Feeds {
            cache,
            slots,
            namespace_slots,
        } = self;
        for (index, mut writer) in slots.into_iter().enumerate() {
            let slot = &cache.slots[index];
            let resource = api_resource(slot.kind);
            let api: Api<DynamicObject> = match &slot.namespace {
                Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
                None => Api::all_with(client.clone(), &resource),
            };
            let stream = watcher(api, watcher::Config::default()).default_backoff();
            let cache = cache.clone();
            let what = format!("{}s", slot.kind.as_str().to_lowercase());
            tokio::spawn(drain(
                stream,
                what,
                wake.clone(),
                shutdown.clone(),
                move |event| apply_event(&cache, index, &mut writer, event),
            ));
        }
        for (index, mut writer) in namespace_slots.into_iter().enumerate() {
            let api: Api<Namespace> = Api::all(client.clone());
            let config = match &cache.namespace_slots[index].name {
                Some(name) => watcher::Config::default().fields(&format!("metadata.name={name}")),
                None => watcher::Config::default(),
            };
            let stream = watcher(api, config).default_backoff();
            let cache = cache.clone();
            tokio::spawn(drain(
                stream,
                "namespaces".into(),
                wake.clone(),
                shutdown.clone(),
                move |event| apply_namespace_event(&cache, index, &mut writer, event),
            ));
        }
    }
}

/// Feeds one watch into the cache until `shutdown`, waking the source when
/// `apply` says an event may change the desired state. The watch retries
/// with backoff on its own; errors are logged.
async fn drain<K>(
    stream: impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
    what: String,
    wake: Arc<dyn Fn() + Send + Sync>,
    shutdown: CancellationToken,
    mut apply: impl FnMut(watcher::Event<K>) -> bool,
) {
    let mut stream = std::pin::pin!(stream);
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => break,
            event = stream.next() => event,
        };
        match event {
            Some(Ok(event)) => {
                if apply(event) {
                    wake();
                }
            }
            Some(Err(error)) => tracing::warn!(watch = %what, %error, "watch failed; retrying"),
            None => break,
        }
    }
}

/// Applies one watch event; `true` when it may change the desired state (a
/// spec, a new or deleted object, a finished list) rather than only a
/// status, which accord itself writes.
fn apply_event(
    cache: &Cache,
    index: usize,
    writer: &mut Writer<DynamicObject>,
    event: watcher::Event<DynamicObject>,
) -> bool {
    let slot = &cache.slots[index];
    let relevant = match &event {
        watcher::Event::Apply(object) => {
            cache.saw(object.resource_version().as_ref());
            let previous = slot
                .reader
                .get(&ObjectRef::from_obj_with(object, api_resource(slot.kind)));
            previous.is_none_or(|p| p.meta().generation != object.meta().generation)
        }
        watcher::Event::Delete(object) => {
            cache.saw(object.resource_version().as_ref());
            true
        }
        watcher::Event::InitApply(object) => {
            cache.saw(object.resource_version().as_ref());
            false
        }
        watcher::Event::Init => false,
        watcher::Event::InitDone => true,
    };
    writer.apply_watcher_event(&event);
    if matches!(event, watcher::Event::InitDone) {
        slot.listed.store(true, Ordering::Release);
    }
    relevant
}

fn apply_namespace_event(
    cache: &Cache,
    index: usize,
    writer: &mut Writer<Namespace>,
    event: watcher::Event<Namespace>,
) -> bool {
    let slot = &cache.namespace_slots[index];
    let app = |ns: &Namespace| ns.annotations().get(APP_ANNOTATION).cloned();
    let relevant = match &event {
        watcher::Event::Apply(ns) => slot
            .reader
            .get(&ObjectRef::from_obj(ns))
            .is_none_or(|p| app(&p) != app(ns)),
        watcher::Event::Delete(_) | watcher::Event::InitDone => true,
        watcher::Event::Init | watcher::Event::InitApply(_) => false,
    };
    writer.apply_watcher_event(&event);
    if matches!(event, watcher::Event::InitDone) {
        slot.listed.store(true, Ordering::Release);
    }
    relevant
}

// ---- the source ------------------------------------------------------------------

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
    /// What accord last wrote per object uid, and the resourceVersion the
    /// write produced: until the watch cache reaches that version, the write
    /// stands for the status (so it is not made twice); after, the cache does
    /// (so a status another replica wrote since is corrected).
    written: Mutex<HashMap<String, (ObjectStatus, u64)>>,
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
            written: Mutex::new(HashMap::new()),
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
        let live_uids: std::collections::HashSet<&str> =
            last.objects.iter().map(|o| o.uid.as_str()).collect();
        lock(&self.written).retain(|uid, _| live_uids.contains(uid.as_str()));
        // Only objects whose status changes (or that get an Event) cost a
        // request; they go out a few at a time, since each is a round trip.
        let work: Vec<(&KubeObject, &Outcome, ObjectStatus, bool)> = last
            .objects
            .iter()
            .zip(&outcomes)
            .filter_map(|(object, outcome)| {
                let pending = lock(&self.written)
                    .get(&object.uid)
                    .filter(|(_, version)| object.resource_version < *version)
                    .map(|(status, _)| status.clone());
                let current = pending.as_ref().or(object.status.as_ref());
                let next = status::status_for(outcome, object.generation, current, &now);
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
                    lock(&self.written)
                        .insert(object.uid.clone(), (next, resource_version(&updated)));
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
                match self.recorder.publish(&event, &object.reference).await {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{LiveRow, LiveState, PlanOptions};

    fn permit(name: &str) -> KubeObject {
        KubeObject {
            kind: Kind::Permit,
            namespace: "team-a".into(),
            name: name.into(),
            uid: format!("uid-{name}"),
            generation: Some(1),
            created: Some(0),
            spec: serde_json::json!({"permissionId": "svc:act", "slugs": ["caller"]}),
            status: None,
            resource_version: 1,
            namespace_app: None,
            reference: ObjectReference::default(),
            field_manager: None,
        }
    }

    #[test]
    fn an_object_with_a_control_character_is_rejected_alone() {
        let mut bad = permit("bad");
        bad.kind = Kind::Organization;
        bad.spec = serde_json::json!({"name": "Acme\u{0}Corp"});
        let objects = vec![permit("good"), bad];

        let declared = declare(&objects, Limits::default());

        assert_eq!(
            declared.desired.len(),
            1,
            "the good object is still declared"
        );
        assert_eq!(declared.rejected.len(), 1);
        let rejection = declared.rejected[0].to_string();
        assert!(
            rejection.starts_with("team-a/Organization/bad:") && rejection.contains("invalid name"),
            "{rejection}"
        );
        assert!(!rejection.chars().any(char::is_control), "{rejection:?}");
    }

    #[test]
    fn a_conflicting_object_shows_the_conflict_even_when_the_sync_is_refused() {
        let objects = vec![permit("pay"), permit("new")];
        let declared = declare(&objects, Limits::default());
        let (key, declaration) = declared
            .desired
            .objects
            .iter()
            .find(|(k, _)| k.id == "pay")
            .expect("declared");
        let mut live = LiveState::default();
        live.rows.insert(
            key.clone(),
            LiveRow::new(
                (*declaration.object).clone(),
                Some("git".into()),
                None,
                true,
            ),
        );
        let plan = crate::plan::plan(
            &declared.desired,
            &live,
            "kubernetes",
            PlanOptions::default(),
        );
        let refused = SyncResult::Refused(&plan, "too many deletes".into());

        let outcomes = outcomes(
            &objects,
            &declared,
            &HashSet::new(),
            &refused,
            DriftPolicy::Correct,
        );

        assert_eq!(
            outcomes[0].reason,
            reasons::CONFLICT,
            "`pay` is in conflict either way"
        );
        assert_eq!(
            outcomes[1].reason,
            reasons::DELETION_REFUSED,
            "`new` was not applied"
        );
    }
}
