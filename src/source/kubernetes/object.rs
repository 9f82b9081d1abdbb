//! One custom resource as a sync sees it, read from the watch cache.

use k8s_openapi::api::core::v1::ObjectReference;
use std::sync::Arc;

use kube::api::{ApiResource, DynamicObject};
use kube::{Resource, ResourceExt};
use serde::Deserialize;
use serde_json::Value;

use super::resources::{EnrollmentResource, ObjectStatus, OrganizationResource, PermitResource};
use super::RECONCILE_REQUEST_ANNOTATION;
use crate::model::Kind;

/// The API resource of each kind, as the watch and the status writer use it.
pub fn api_resource(kind: Kind) -> ApiResource {
    match kind {
        Kind::Organization => ApiResource::erase::<OrganizationResource>(&()),
        Kind::Permit => ApiResource::erase::<PermitResource>(&()),
        Kind::Enrollment => ApiResource::erase::<EnrollmentResource>(&()),
    }
}

/// What the watch cache keeps of one custom resource: only what a sync,
/// its statuses and its audit rows read.
#[derive(Clone, Debug)]
pub struct Watched {
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
    /// The field manager that last wrote the object's spec (`kubectl`,
    /// `kubectl-client-side-apply`, a GitOps controller…): who changed it,
    /// as far as a controller can tell. The requesting user is not visible.
    pub field_manager: Option<String>,
    /// The `accord.dev/reconcile-requested-at` annotation.
    pub reconcile_requested: Option<String>,
}

impl Watched {
    pub(super) fn from_dynamic(kind: Kind, object: &DynamicObject) -> Self {
        let status = object
            .data
            .get("status")
            .and_then(|s| ObjectStatus::deserialize(s).ok());
        Watched {
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
            field_manager: spec_manager(object),
            reconcile_requested: reconcile_requested(object),
        }
    }
}

/// One custom resource as a sync sees it: the cached object (shared with
/// the cache, not copied) and its namespace's app at the time of the read.
#[derive(Clone, Debug)]
pub struct KubeObject {
    watched: Arc<Watched>,
    /// The namespace's `accord.dev/app` annotation.
    pub namespace_app: Option<Arc<str>>,
}

impl std::ops::Deref for KubeObject {
    type Target = Watched;

    fn deref(&self) -> &Watched {
        &self.watched
    }
}

/// Changing a field copies the object first: the cache's stays as watched.
impl std::ops::DerefMut for KubeObject {
    fn deref_mut(&mut self) -> &mut Watched {
        Arc::make_mut(&mut self.watched)
    }
}

impl KubeObject {
    pub fn new(watched: Arc<Watched>, namespace_app: Option<Arc<str>>) -> Self {
        KubeObject {
            watched,
            namespace_app,
        }
    }

    /// How declarations, errors and audit rows name the object:
    /// `namespace/Kind/name`.
    pub fn id(&self) -> String {
        format!("{}/{}/{}", self.namespace, self.kind, self.name)
    }

    /// What an Event about the object names it by.
    pub fn reference(&self) -> ObjectReference {
        let resource = api_resource(self.kind);
        ObjectReference {
            api_version: Some(resource.api_version),
            kind: Some(resource.kind),
            name: Some(self.name.clone()),
            namespace: Some(self.namespace.clone()),
            uid: Some(self.uid.clone()),
            ..ObjectReference::default()
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

pub(super) fn reconcile_requested(object: &DynamicObject) -> Option<String> {
    object
        .annotations()
        .get(RECONCILE_REQUEST_ANNOTATION)
        .cloned()
}

pub(super) fn resource_version(object: &DynamicObject) -> u64 {
    object
        .resource_version()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
