//! The tables accord writes in bulk, as the writers see them.

use super::bulk::Table;
use crate::model::Kind;

pub(super) fn table(kind: Kind) -> (&'static str, &'static str) {
    match kind {
        Kind::Organization => ("organizations", "slug"),
        Kind::Permit => ("permits", "id"),
        Kind::Enrollment => ("enrollments", "id"),
    }
}

pub(super) const ORGANIZATIONS: Table = Table {
    name: "organizations",
    columns: &[
        "app",
        "slug",
        "name",
        "monthly_tokens",
        "allowed_models",
        "managed_by",
        "applied_hash",
        "updated_at",
    ],
    key: &["app", "slug"],
    // `gitops` is the operator's switch: a sync never turns it back on.
    update: &[
        "name",
        "monthly_tokens",
        "allowed_models",
        "managed_by",
        "applied_hash",
        "updated_at",
    ],
    stamp: None,
};
pub(super) const MEMBERS: Table = Table {
    name: "organization_members",
    columns: &[
        "app",
        "org_slug",
        "user_id",
        "contact_id",
        "role",
        "token_limit",
    ],
    key: &[],
    update: &[],
    stamp: None,
};
pub(super) const PERMITS: Table = Table {
    name: "permits",
    columns: &[
        "app",
        "id",
        "permission_id",
        "slugs",
        "roles",
        "managed_by",
        "applied_hash",
        "updated_at",
    ],
    key: &["app", "id"],
    update: &[
        "permission_id",
        "slugs",
        "roles",
        "managed_by",
        "applied_hash",
        "updated_at",
    ],
    stamp: Some("applied_xid"),
};
pub(super) const ENROLLMENTS: Table = Table {
    name: "enrollments",
    columns: &[
        "app",
        "id",
        "role",
        "user_id",
        "contact_id",
        "managed_by",
        "applied_hash",
        "updated_at",
    ],
    key: &["app", "id"],
    update: &[
        "role",
        "user_id",
        "contact_id",
        "managed_by",
        "applied_hash",
        "updated_at",
    ],
    stamp: Some("applied_xid"),
};
pub(super) const CLAIMS: Table = Table {
    name: "claims",
    columns: &["source", "kind", "app", "object_id", "owner", "declared_in"],
    key: &["source", "kind", "app", "object_id"],
    update: &["owner", "declared_in"],
    stamp: None,
};
pub(super) const MANAGED: Table = Table {
    name: "ledger",
    columns: &[
        "kind",
        "app",
        "object_id",
        "source",
        "reported_hash",
        "declared_in",
    ],
    key: &["kind", "app", "object_id"],
    update: &["source", "reported_hash", "declared_in"],
    stamp: None,
};
pub(super) const AUDIT_LOG: Table = Table {
    name: "audit_log",
    columns: &[
        "at",
        "actor",
        "source",
        "revision",
        "sync_run",
        "action",
        "kind",
        "app",
        "object_id",
        "before",
        "after",
        "diff",
        "origin",
        "row_hash",
        "chain_hash",
    ],
    key: &[],
    update: &[],
    stamp: None,
};

pub(super) fn tokens(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
