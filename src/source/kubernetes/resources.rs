//! The `accord.dev/v1alpha1` custom resources. Each wraps the model's own
//! spec type (the one the file parser reads), so a manifest means the same in
//! Git and in a cluster and the CRD schema cannot drift from the parser.

// The derive's repeated `printcolumn(type_ = …)` arguments read to clippy as
// duplicated attributes; they are distinct columns.
#![allow(clippy::duplicated_attributes)]

use kube::core::CustomResourceExt;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::{EnrollmentSpec, OrganizationSpec, PermitSpec};

pub const GROUP: &str = "accord.dev";
pub const VERSION: &str = "v1alpha1";

/// A permission grant: the callers (`slugs`) and roles given a permission.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "accord.dev",
    version = "v1alpha1",
    kind = "Permit",
    root = "PermitResource",
    namespaced,
    status = "ObjectStatus",
    shortname = "pmt",
    category = "accord",
    doc = "A permission grant applied by accord to the access-control database.",
    printcolumn(name = "App", type_ = "string", json_path = ".spec.app"),
    printcolumn(
        name = "Permission",
        type_ = "string",
        json_path = ".spec.permissionId"
    ),
    printcolumn(
        name = "Synced",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Synced\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        priority = "1",
        json_path = ".status.conditions[?(@.type==\"Synced\")].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(transparent)]
pub struct PermitResourceSpec(pub PermitSpec);

/// A role given to one user or contact (or a wildcard of contacts).
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "accord.dev",
    version = "v1alpha1",
    kind = "Enrollment",
    root = "EnrollmentResource",
    namespaced,
    status = "ObjectStatus",
    shortname = "enr",
    category = "accord",
    doc = "A role assignment applied by accord to the access-control database.",
    printcolumn(name = "App", type_ = "string", json_path = ".spec.app"),
    printcolumn(name = "Role", type_ = "string", json_path = ".spec.role"),
    printcolumn(
        name = "Synced",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Synced\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        priority = "1",
        json_path = ".status.conditions[?(@.type==\"Synced\")].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(transparent)]
pub struct EnrollmentResourceSpec(pub EnrollmentSpec);

/// An organization, its budget and its members.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "accord.dev",
    version = "v1alpha1",
    kind = "Organization",
    root = "OrganizationResource",
    namespaced,
    status = "ObjectStatus",
    shortname = "aorg",
    category = "accord",
    doc = "An organization applied by accord to the access-control database.",
    printcolumn(name = "App", type_ = "string", json_path = ".spec.app"),
    printcolumn(name = "Display Name", type_ = "string", json_path = ".spec.name"),
    printcolumn(
        name = "Synced",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Synced\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        priority = "1",
        json_path = ".status.conditions[?(@.type==\"Synced\")].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(transparent)]
pub struct OrganizationResourceSpec(pub OrganizationSpec);

/// What accord last did with an object, as `kubectl describe` shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectStatus {
    /// `Ready` (the database holds what the object declares) and `Synced`
    /// (the last sync applied this generation).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` these conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When accord last changed this object's row or status (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_synced_at: Option<String>,
}

/// A standard Kubernetes condition.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    pub reason: String,
    #[serde(default)]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// RFC 3339.
    pub last_transition_time: String,
}

fn crds(
) -> [k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition; 3]
{
    [
        OrganizationResource::crd(),
        PermitResource::crd(),
        EnrollmentResource::crd(),
    ]
}

/// The three CRDs as one JSON `List` (`kubectl apply -f` takes it too).
pub fn crds_json() -> String {
    serde_json::json!({"apiVersion": "v1", "kind": "List", "items": crds()}).to_string()
}

/// The three CRDs as one multi-document YAML stream, as `accord crds` prints
/// it and `crds/accord.dev.yaml` holds it.
pub fn crds_yaml() -> String {
    let crds = crds();
    let mut out = String::from(
        "# Generated by `accord crds`; do not edit. The schemas come from the same\n\
         # Rust types the file parser uses.\n",
    );
    for crd in crds {
        out.push_str("---\n");
        let value = serde_json::to_value(&crd).unwrap_or_default();
        out.push_str(&crate::model::render::to_yaml(&value));
    }
    out
}
