//! The watch cache: what the watches have seen of the three kinds and of
//! the namespaces' `accord.dev/app` annotations.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DynamicObject};
use kube::runtime::reflector::{self, store::Writer, ObjectRef};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Resource, ResourceExt};
use tokio_util::sync::CancellationToken;

use super::object::{api_resource, reconcile_requested, KubeObject};
use super::APP_ANNOTATION;
use crate::model::Kind;
use crate::source::SourceError;

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
/// spec, a new or deleted object, a finished list) or asks for a sync (a new
/// `accord.dev/reconcile-requested-at`), rather than only a status, which
/// accord itself writes, or other metadata.
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
            previous.is_none_or(|p| {
                p.meta().generation != object.meta().generation
                    || reconcile_requested(&p) != reconcile_requested(object)
            })
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

    #[test]
    fn a_reconcile_request_wakes_the_source_and_other_metadata_or_status_does_not() {
        let mut feeds = Feeds::new(&[]);
        let index = feeds
            .cache
            .slots
            .iter()
            .position(|s| s.kind == Kind::Permit)
            .expect("a permit slot");
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
}
