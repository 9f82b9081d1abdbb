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
    printcolumn(name = "App", type_ = "string", json_path = ".status.app"),
    printcolumn(
        name = "ID",
        type_ = "string",
        priority = "1",
        json_path = ".status.id"
    ),
    printcolumn(
        name = "Permission",
        type_ = "string",
        json_path = ".spec.permissionId"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
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
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
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
    printcolumn(name = "App", type_ = "string", json_path = ".status.app"),
    printcolumn(
        name = "ID",
        type_ = "string",
        priority = "1",
        json_path = ".status.id"
    ),
    printcolumn(name = "Role", type_ = "string", json_path = ".spec.role"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
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
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
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
    printcolumn(name = "App", type_ = "string", json_path = ".status.app"),
    printcolumn(
        name = "ID",
        type_ = "string",
        priority = "1",
        json_path = ".status.id"
    ),
    printcolumn(name = "Display Name", type_ = "string", json_path = ".spec.name"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
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
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
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
    /// `Synced`: accord read this generation and accepted it (`False`:
    /// the object has something to fix, `Invalid` or `Conflict`). `Ready`:
    /// the database holds what this generation declares, now (`False`:
    /// `Drifted`, `DatabaseError`, `DeletionRefused`, or `Synced`'s reason;
    /// `Unknown`: `Suspended`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` these conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When accord last changed this object's row or status (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_synced_at: Option<String>,
    /// The app accord applies the object to: `spec.app`, else the
    /// namespace's `accord.dev/app` annotation, else `unnamed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// The id accord applies the object as (an Organization's slug):
    /// `spec.id` (`spec.slug`), else `metadata.name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The last `accord.dev/reconcile-requested-at` annotation a sync has
    /// handled: wait for it to equal the value set to know the sync ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,
}

/// A standard Kubernetes condition.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Ready` or `Synced`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// Why, in one CamelCase word (`Accepted`, `Applied`, `Invalid`, …; the
    /// README's condition table lists them).
    pub reason: String,
    /// What happened, in a sentence, and what to do about it.
    #[serde(default)]
    pub message: String,
    /// The `metadata.generation` this condition describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When `status` last changed (RFC 3339).
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// Every property under `schema` that has no description, as a path.
    fn undescribed(schema: &Value, path: &str, found: &mut Vec<String>) {
        if let Some(properties) = schema["properties"].as_object() {
            for (name, property) in properties {
                let at = format!("{path}.{name}");
                let described = property["description"]
                    .as_str()
                    .is_some_and(|d| !d.trim().is_empty());
                if !described {
                    found.push(at.clone());
                }
                undescribed(property, &at, found);
            }
        }
        undescribed_in(&schema["items"], &format!("{path}[]"), found);
        undescribed_in(
            &schema["additionalProperties"],
            &format!("{path}{{}}"),
            found,
        );
        for combinator in ["oneOf", "anyOf", "allOf"] {
            for branch in schema[combinator].as_array().into_iter().flatten() {
                undescribed(branch, path, found);
            }
        }
    }

    fn undescribed_in(schema: &Value, path: &str, found: &mut Vec<String>) {
        if schema.is_object() {
            undescribed(schema, path, found);
        }
    }

    #[test]
    fn every_property_of_every_crd_has_a_description_for_kubectl_explain() {
        let mut found = Vec::new();
        let mut walked = 0;
        for crd in crds() {
            let kind = crd.spec.names.kind.clone();
            for version in crd.spec.versions {
                let schema = version
                    .schema
                    .and_then(|s| s.open_api_v3_schema)
                    .map(|s| serde_json::to_value(s).expect("a schema serializes"))
                    .expect("each version has a schema");
                let mut at = Vec::new();
                undescribed(&schema, &kind, &mut at);
                walked += schema["properties"]["spec"]["properties"]
                    .as_object()
                    .map_or(0, |p| p.len());
                found.extend(at);
            }
        }
        assert!(walked > 10, "the walk saw the specs' fields ({walked})");
        assert!(found.is_empty(), "no description: {found:#?}");
    }
}
