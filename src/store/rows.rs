//! Converting between table rows and objects, the same for both backends.
//! Rows are read leniently: a value someone wrote by hand that accord would
//! never write still becomes an object (which then differs, i.e. drift)
//! rather than an error that stops every sync.

use std::collections::HashMap;
use std::sync::Arc;

use crate::model::{Budget, Enrollment, Key, KeyMap, Kind, Member, Object, Organization, Permit};
use crate::plan::{Claim, LiveRow, LiveState, Managed};

pub type OrgRow = (
    String,
    String,
    Option<String>,
    Option<i64>,
    String,
    bool,
    Option<String>,
    Option<String>,
);
pub type MemberRow = (
    String,
    String,
    Option<String>,
    Option<String>,
    String,
    Option<i64>,
);
pub type PermitRow = (
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
);
pub type EnrollmentRow = (
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);
pub type ManagedRow = (String, String, String, Option<String>, Option<String>);
/// source, kind, app, object_id, declared_in
pub type ClaimRow = (String, String, String, String, Option<String>);

/// A stored JSON list as a sorted set; anything else as a one-element list
/// holding the raw text, so a broken hand edit shows up in the diff.
pub fn list_from_json(text: &str) -> Vec<String> {
    let mut list = match serde_json::from_str::<Vec<String>>(text) {
        Ok(list) => list,
        Err(_) => vec![text.to_owned()],
    };
    list.sort_unstable();
    list.dedup();
    list
}

pub fn list_to_json(list: &[String]) -> String {
    serde_json::to_string(list).unwrap_or_else(|_| "[]".into())
}

fn unsigned(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

pub fn assemble(
    orgs: Vec<OrgRow>,
    members: Vec<MemberRow>,
    permits: Vec<PermitRow>,
    enrollments: Vec<EnrollmentRow>,
    managed: Vec<ManagedRow>,
    claim_rows: Vec<ClaimRow>,
) -> LiveState {
    let mut rows = KeyMap::default();
    rows.reserve(orgs.len() + permits.len() + enrollments.len());
    let mut members_by_org: HashMap<(String, String), Vec<Member>> = HashMap::new();
    for (app, slug, user_id, contact_id, role, token_limit) in members {
        members_by_org.entry((app, slug)).or_default().push(Member {
            contact_id,
            user_id,
            role,
            token_limit: token_limit.map(unsigned),
        });
    }
    for (app, slug, name, monthly_tokens, models, gitops, managed_by, applied_hash) in orgs {
        let members = members_by_org
            .remove(&(app.clone(), slug.clone()))
            .unwrap_or_default();
        let mut object = Object::Organization(Organization {
            slug,
            app,
            name,
            budget: monthly_tokens.map(|t| Budget {
                monthly_tokens: unsigned(t),
            }),
            allowed_models: list_from_json(&models),
            members,
        });
        object.normalize();
        insert(&mut rows, object, managed_by, applied_hash, gitops);
    }
    for (app, id, permission_id, slugs, roles, managed_by, applied_hash) in permits {
        let object = Object::Permit(Permit {
            id,
            app,
            permission_id,
            slugs: list_from_json(&slugs),
            roles: list_from_json(&roles),
        });
        insert(&mut rows, object, managed_by, applied_hash, true);
    }
    for (app, id, role, user_id, contact_id, managed_by, applied_hash) in enrollments {
        let object = Object::Enrollment(Enrollment {
            id,
            app,
            role,
            user_id,
            contact_id,
        });
        insert(&mut rows, object, managed_by, applied_hash, true);
    }
    // Sized up front: collecting from a filter grows the map from nothing.
    let mut ledger: KeyMap<Managed> = KeyMap::default();
    ledger.reserve(managed.len());
    // A few thousand files declare a hundred thousand keys: one shared copy
    // of each path.
    let mut files: HashMap<String, Arc<str>> = HashMap::new();
    for (kind, app, id, reported_hash, declared_in) in managed {
        let Some(kind) = Kind::parse(&kind) else {
            continue;
        };
        let declared_in = declared_in.map(|path| match files.get(&path) {
            Some(shared) => shared.clone(),
            None => {
                let shared: Arc<str> = Arc::from(path.as_str());
                files.insert(path, shared.clone());
                shared
            }
        });
        let managed = Managed {
            reported_hash,
            declared_in,
        };
        let key = Key { kind, app, id };
        if let Some(row) = rows.get_mut(&key) {
            row.mark_in_ledger();
        }
        ledger.insert(key, managed);
    }
    let managed = ledger;
    let mut claims: KeyMap<Vec<Claim>> = KeyMap::default();
    for (source, kind, app, id, declared_in) in claim_rows {
        if let Some(kind) = Kind::parse(&kind) {
            claims
                .entry(Key { kind, app, id })
                .or_default()
                .push(Claim {
                    source,
                    declared_in: declared_in.map(Into::into),
                });
        }
    }
    LiveState {
        rows,
        managed,
        claims,
    }
}

fn insert(
    rows: &mut KeyMap<LiveRow>,
    object: Object,
    managed_by: Option<String>,
    applied_hash: Option<String>,
    gitops: bool,
) {
    let row = LiveRow::new(object, managed_by, applied_hash, gitops);
    // Hashed here, while the object is fresh in the cache and the source is
    // still being parsed, rather than in the plan.
    row.digest();
    rows.insert(row.object.key(), row);
}
