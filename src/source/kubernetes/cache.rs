//! The watch cache: what the watches have seen of the three kinds and of
//! the namespaces' `accord.dev/app` annotations.
//!
//! Each object is kept as the few fields a sync reads ([`Watched`]), not as
//! the whole object the API server sent: its managed fields and the status
//! accord itself wrote are most of an object's size, and a cache of whole
//! objects cost about 17 KB per object.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DynamicObject};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, ResourceExt};
use tokio_util::sync::CancellationToken;

use super::object::{api_resource, KubeObject, Watched};
use super::resources::ObjectStatus;
use super::APP_ANNOTATION;
use crate::model::Kind;
use crate::source::SourceError;

/// What one watch has seen, by name: the last complete list and every
/// event since. A relist fills a new table and replaces the old one only
/// once complete, so a sync never sees half a list.
struct Table<K, V> {
    rows: RwLock<HashMap<K, V>>,
    listed: AtomicBool,
}

impl<K: Eq + Hash, V: Clone> Table<K, V> {
    fn new() -> Self {
        Table {
            rows: RwLock::new(HashMap::new()),
            listed: AtomicBool::new(false),
        }
    }

    fn listed(&self) -> bool {
        self.listed.load(Ordering::Acquire)
    }

    fn get(&self, key: &K) -> Option<V> {
        read(&self.rows).get(key).cloned()
    }

    fn values(&self) -> Vec<V> {
        read(&self.rows).values().cloned().collect()
    }
}

/// The writing end of a [`Table`], owned by its watch: where a relist in
/// progress collects.
struct Filling<K, V> {
    relist: Option<HashMap<K, V>>,
}

impl<K: Eq + Hash, V: Clone> Filling<K, V> {
    fn new() -> Self {
        Filling { relist: None }
    }

    /// Applies one watch event, its object already reduced to `(key,
    /// value)` by the caller.
    fn apply(&mut self, table: &Table<K, V>, event: watcher::Event<(K, V)>) {
        match event {
            watcher::Event::Apply((key, value)) => {
                write(&table.rows).insert(key, value);
            }
            watcher::Event::Delete((key, _)) => {
                write(&table.rows).remove(&key);
            }
            watcher::Event::Init => self.relist = Some(HashMap::new()),
            watcher::Event::InitApply((key, value)) => {
                self.relist
                    .get_or_insert_with(HashMap::new)
                    .insert(key, value);
            }
            watcher::Event::InitDone => {
                *write(&table.rows) = self.relist.take().unwrap_or_default();
                table.listed.store(true, Ordering::Release);
            }
        }
    }
}

/// An object's place in its kind's table.
type ObjectKey = (String, String);

struct Slot {
    kind: Kind,
    namespace: Option<String>,
    table: Table<ObjectKey, Arc<Watched>>,
}

struct NamespaceSlot {
    name: Option<String>,
    /// Each namespace's `accord.dev/app`, when it has one.
    table: Table<String, Option<Arc<str>>>,
}

/// The objects the watches have seen: one table per kind (and per namespace
/// when the source is limited to some), plus the namespaces' annotations.
pub struct Cache {
    slots: Vec<Slot>,
    namespace_slots: Vec<NamespaceSlot>,
    /// The highest resourceVersion seen in any event: the source's revision.
    revision: AtomicU64,
    /// Statuses accord wrote that the watch has not echoed yet, by uid,
    /// with the resourceVersion each write made: until the echo the write
    /// stands for the status (so it is not made twice); after it the cache
    /// does (so a status another replica wrote since is corrected). An
    /// entry goes with its echo, so no object keeps a second status.
    written: Mutex<HashMap<String, (ObjectStatus, u64)>>,
}

/// The writing ends of a [`Cache`]: the watches own them (tests feed them).
pub struct Feeds {
    cache: Arc<Cache>,
    slots: Vec<Filling<ObjectKey, Arc<Watched>>>,
    namespace_slots: Vec<Filling<String, Option<Arc<str>>>>,
}

impl Cache {
    /// Every object, once every watch has listed at least once; before
    /// that, an error (syncing a half-listed cache would prune the rest).
    pub fn objects(&self) -> Result<Vec<KubeObject>, SourceError> {
        if let Some(slot) = self.slots.iter().find(|s| !s.table.listed()) {
            return Err(SourceError::NotListed(format!(
                "{}s{}",
                slot.kind.as_str().to_lowercase(),
                slot.namespace
                    .as_ref()
                    .map(|n| format!(" in namespace {n}"))
                    .unwrap_or_default()
            )));
        }
        if self.namespace_slots.iter().any(|s| !s.table.listed()) {
            return Err(SourceError::NotListed("namespaces".into()));
        }
        let apps: HashMap<String, Arc<str>> = self
            .namespace_slots
            .iter()
            .flat_map(|s| {
                read(&s.table.rows)
                    .iter()
                    .filter_map(|(name, app)| Some((name.clone(), app.clone()?)))
                    .collect::<Vec<_>>()
            })
            .collect();
        let mut objects: Vec<KubeObject> = self
            .slots
            .iter()
            .flat_map(|slot| slot.table.values())
            .map(|watched| {
                let app = apps.get(&watched.namespace).cloned();
                KubeObject::new(watched, app)
            })
            .collect();
        objects
            .sort_by(|a, b| (&a.namespace, a.kind, &a.name).cmp(&(&b.namespace, b.kind, &b.name)));
        Ok(objects)
    }

    pub fn revision(&self) -> u64 {
        self.revision.load(Ordering::Acquire)
    }

    /// Records a status accord wrote to `object`, which made `version`,
    /// unless the watch has echoed it already.
    pub(super) fn wrote(&self, object: &Watched, status: ObjectStatus, version: u64) {
        let key = (object.namespace.clone(), object.name.clone());
        let mut written = lock(&self.written);
        let echoed = self
            .slots
            .iter()
            .filter(|slot| slot.kind == object.kind)
            .filter_map(|slot| slot.table.get(&key))
            .any(|cached| cached.uid != object.uid || cached.resource_version >= version);
        if !echoed {
            written.insert(object.uid.clone(), (status, version));
        }
    }

    /// The status accord wrote to `object` when the cache, as `object` was
    /// read from it, had not seen the write yet.
    pub(super) fn pending(&self, object: &Watched) -> Option<ObjectStatus> {
        lock(&self.written)
            .get(&object.uid)
            .filter(|(_, version)| object.resource_version < *version)
            .map(|(status, _)| status.clone())
    }

    /// Forgets the writes to objects not in `live` (deleted while the
    /// watch was away, so no Delete event came).
    pub(super) fn forget_written_except(&self, live: &HashSet<&str>) {
        lock(&self.written).retain(|uid, _| live.contains(uid.as_str()));
    }

    /// After the cache took `watched` (its table first, so a concurrent
    /// `wrote` either sees it there or has its entry removed here).
    fn echoed(&self, watched: &Watched, deleted: bool) {
        let mut written = lock(&self.written);
        if written
            .get(&watched.uid)
            .is_some_and(|(_, version)| deleted || watched.resource_version >= *version)
        {
            written.remove(&watched.uid);
        }
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
        for kind in Kind::ALL {
            for scope in &scopes {
                slots.push(Slot {
                    kind,
                    namespace: scope.clone(),
                    table: Table::new(),
                });
            }
        }
        let namespace_slots: Vec<NamespaceSlot> = scopes
            .iter()
            .map(|scope| NamespaceSlot {
                name: scope.clone(),
                table: Table::new(),
            })
            .collect();
        Feeds {
            slots: slots.iter().map(|_| Filling::new()).collect(),
            namespace_slots: namespace_slots.iter().map(|_| Filling::new()).collect(),
            cache: Arc::new(Cache {
                slots,
                namespace_slots,
                revision: AtomicU64::new(0),
                written: Mutex::new(HashMap::new()),
            }),
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
        for (index, mut filling) in slots.into_iter().enumerate() {
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
                move |event| apply_event(&cache, index, &mut filling, event),
            ));
        }
        for (index, mut filling) in namespace_slots.into_iter().enumerate() {
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
                move |event| apply_namespace_event(&cache, index, &mut filling, event),
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
/// spec, a new or deleted object, a finished list) or asks for a sync (a new
/// `accord.dev/reconcile-requested-at`), rather than only a status, which
/// accord itself writes, or other metadata.
fn apply_event(
    cache: &Cache,
    index: usize,
    filling: &mut Filling<ObjectKey, Arc<Watched>>,
    event: watcher::Event<DynamicObject>,
) -> bool {
    let slot = &cache.slots[index];
    let keyed = |object: DynamicObject| {
        cache.saw(object.resource_version().as_ref());
        let watched = Watched::from_dynamic(slot.kind, &object);
        (
            (watched.namespace.clone(), watched.name.clone()),
            Arc::new(watched),
        )
    };
    let mut echo = None;
    let (relevant, event) = match event {
        watcher::Event::Apply(object) => {
            let (key, watched) = keyed(object);
            let relevant = slot.table.get(&key).is_none_or(|previous| {
                previous.generation != watched.generation
                    || previous.reconcile_requested != watched.reconcile_requested
            });
            echo = Some((watched.clone(), false));
            (relevant, watcher::Event::Apply((key, watched)))
        }
        watcher::Event::Delete(object) => {
            let (key, watched) = keyed(object);
            echo = Some((watched.clone(), true));
            (true, watcher::Event::Delete((key, watched)))
        }
        watcher::Event::InitApply(object) => {
            let (key, watched) = keyed(object);
            echo = Some((watched.clone(), false));
            (false, watcher::Event::InitApply((key, watched)))
        }
        watcher::Event::Init => (false, watcher::Event::Init),
        watcher::Event::InitDone => (true, watcher::Event::InitDone),
    };
    filling.apply(&slot.table, event);
    if let Some((watched, deleted)) = echo {
        cache.echoed(&watched, deleted);
    }
    relevant
}

fn apply_namespace_event(
    cache: &Cache,
    index: usize,
    filling: &mut Filling<String, Option<Arc<str>>>,
    event: watcher::Event<Namespace>,
) -> bool {
    let table = &cache.namespace_slots[index].table;
    let keyed = |ns: Namespace| {
        let app = ns
            .annotations()
            .get(APP_ANNOTATION)
            .map(|a| Arc::from(a.as_str()));
        (ns.name_any(), app)
    };
    let (relevant, event) = match event {
        watcher::Event::Apply(ns) => {
            let (name, app) = keyed(ns);
            let relevant = table.get(&name).is_none_or(|previous| previous != app);
            (relevant, watcher::Event::Apply((name, app)))
        }
        watcher::Event::Delete(ns) => (true, watcher::Event::Delete(keyed(ns))),
        watcher::Event::InitDone => (true, watcher::Event::InitDone),
        watcher::Event::Init => (false, watcher::Event::Init),
        watcher::Event::InitApply(ns) => (false, watcher::Event::InitApply(keyed(ns))),
    };
    filling.apply(table, event);
    relevant
}

/// A lock poisoned by a panicking holder still guards whole rows: each
/// write is a single insert, remove or swap.
fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::super::RECONCILE_REQUEST_ANNOTATION;
    use super::*;
    use serde_json::{json, Value};

    fn permit(generation: i64, version: u64, annotations: Value, status: Value) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "accord.dev/v1alpha1",
            "kind": "Permit",
            "metadata": {
                "name": "pay", "namespace": "team-a", "uid": "uid-pay",
                "generation": generation, "resourceVersion": version.to_string(),
                "annotations": annotations,
            },
            "spec": {"permissionId": "svc:act", "slugs": ["caller"]},
            "status": status,
        }))
        .expect("an object")
    }

    fn permit_slot(feeds: &Feeds) -> usize {
        feeds
            .cache
            .slots
            .iter()
            .position(|s| s.kind == Kind::Permit)
            .expect("a permit slot")
    }

    #[test]
    fn a_reconcile_request_wakes_the_source_and_other_metadata_or_status_does_not() {
        let mut feeds = Feeds::new(&[]);
        let index = permit_slot(&feeds);
        let mut apply = |object| feeds.apply(index, watcher::Event::Apply(object));
        let none = json!({});
        assert!(
            apply(permit(1, 1, none.clone(), Value::Null)),
            "a new object"
        );
        assert!(
            !apply(permit(1, 2, none.clone(), json!({"app": "unnamed"}))),
            "accord's own status write"
        );
        assert!(
            !apply(permit(
                1,
                3,
                json!({"team": "a"}),
                json!({"app": "unnamed"})
            )),
            "an unrelated annotation"
        );
        let asked = json!({"team": "a", RECONCILE_REQUEST_ANNOTATION: "1"});
        assert!(apply(permit(1, 4, asked.clone(), Value::Null)), "a request");
        assert!(
            !apply(permit(1, 5, asked, json!({"app": "unnamed"}))),
            "the same request, seen again"
        );
        let again = json!({"team": "a", RECONCILE_REQUEST_ANNOTATION: "2"});
        assert!(apply(permit(1, 6, again, Value::Null)), "a new request");
        assert!(apply(permit(2, 7, none, Value::Null)), "a new generation");
    }

    #[test]
    fn a_written_status_stands_until_its_echo_and_is_then_forgotten() {
        let mut feeds = Feeds::new(&[]);
        let cache = feeds.cache();
        feeds.list(Kind::Permit, vec![permit(1, 1, json!({}), Value::Null)]);
        let before = Watched::from_dynamic(Kind::Permit, &permit(1, 1, json!({}), Value::Null));
        let ours = ObjectStatus {
            app: Some("unnamed".into()),
            ..ObjectStatus::default()
        };

        cache.wrote(&before, ours.clone(), 2);
        assert_eq!(cache.pending(&before), Some(ours.clone()), "not echoed yet");
        let index = permit_slot(&feeds);
        let echo = permit(1, 2, json!({}), json!({"app": "unnamed"}));
        feeds.apply(index, watcher::Event::Apply(echo.clone()));
        assert_eq!(cache.pending(&before), None, "the echo stands for it");
        assert!(lock(&cache.written).is_empty(), "and no copy is kept");

        // The echo may come before the write's answer: nothing is kept then.
        cache.wrote(&before, ours, 2);
        assert!(lock(&cache.written).is_empty());
    }
}
