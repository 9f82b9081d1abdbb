//! The frame of the OpenAPI document: its info, tags and security scheme,
//! and the schemas of the store's and the sources' types the API answers
//! with. The
//! operations and every other schema come from the handlers and their
//! types (`#[utoipa::path]`, `#[derive(ToSchema)]`).

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{Modify, OpenApi, PartialSchema, ToSchema};

use crate::source::Commit;
use crate::store::{Approval, AuditEntry, OrgSwitch};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "accord",
        description = "The HTTP API of `accord run`. Errors are RFC 7807 problem documents \
(`application/problem+json`). POST endpoints need `Authorization: Bearer <token>` when the \
controller has an API token (`apiTokenFile`); webhooks are checked against the source's \
webhook secret instead."
    ),
    components(schemas(super::Problem)),
    modifiers(&BearerToken),
    tags(
        (name = "health", description = "Probes and metrics"),
        (name = "status", description = "What the controller sees"),
        (name = "audit", description = "The append-only audit log"),
        (name = "sources", description = "Syncs and approvals"),
        (name = "organizations", description = "The per-organization GitOps switch"),
        (name = "webhooks", description = "Push webhooks from Git hosts"),
        (name = "access", description = "Who can do what, and why, in the live database"),
        (name = "meta", description = "This document"),
    )
)]
pub struct ApiDoc;

struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The controller's API token (`apiTokenFile`); needed only when one is set",
                    ))
                    .build(),
            ),
        );
    }
}

// The store's and the sources' types are described here rather than
// derived where they are declared, which keeps those layers free of the
// HTTP layer's documentation.
// Each description mirrors the type's serde form field for field;
// tests/api.rs validates live answers against the document with unknown
// fields refused, so a mirror that falls behind its type fails there.

/// `ToSchema` for a store type, by its mirror.
macro_rules! described_by {
    ($type:ty, $mirror:ty) => {
        impl PartialSchema for $type {
            fn schema() -> RefOr<Schema> {
                <$mirror as PartialSchema>::schema()
            }
        }

        impl ToSchema for $type {
            fn name() -> Cow<'static, str> {
                <$mirror as ToSchema>::name()
            }
        }
    };
}

described_by!(AuditEntry, AuditEntrySchema);
described_by!(Approval, ApprovalSchema);
described_by!(OrgSwitch, OrgSwitchSchema);
described_by!(Commit, CommitSchema);

/// One row of the append-only audit log.
#[derive(ToSchema)]
#[schema(as = AuditEntry)]
#[allow(dead_code)]
struct AuditEntrySchema {
    /// Its place in the log: unique, increasing.
    seq: i64,
    at: DateTime<Utc>,
    /// Who made the change: the commit author, the field manager, or `user@host`.
    actor: String,
    source: String,
    revision: String,
    /// `create`, `update`, `delete`, `drift_corrected` or `drift_detected`.
    action: String,
    /// `Organization`, `Permit` or `Enrollment`.
    kind: String,
    app: String,
    id: String,
    /// The row before the change (none for a create).
    before: Option<serde_json::Value>,
    /// The row after the change (none for a delete).
    after: Option<serde_json::Value>,
    /// A unified diff of the object as YAML.
    diff: String,
    /// Where the change was declared: a file, or a Kubernetes object with
    /// its uid and resourceVersion.
    #[schema(required = false)]
    origin: String,
}

/// The refused deletions an operator approved.
#[derive(ToSchema)]
#[schema(as = Approval)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
struct ApprovalSchema {
    source: String,
    set: String,
    deletes: i64,
    approved_by: String,
}

/// An organization's GitOps switch in one app.
#[derive(ToSchema)]
#[schema(as = OrgSwitch)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
struct OrgSwitchSchema {
    app: String,
    slug: String,
    /// Whether accord reconciles it in this app.
    gitops: bool,
    /// The source that manages it, if any.
    managed_by: Option<String>,
}

/// The Git commit a revision is.
#[derive(ToSchema)]
#[schema(as = Commit)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
struct CommitSchema {
    /// The author's name.
    author: String,
    authored_at: DateTime<Utc>,
    /// The whole message (a very long one is cut and says so).
    message: String,
}
