//! Converting between table rows and objects, the same for both backends.
//! Rows are read leniently: a value someone wrote by hand that accord would
//! never write still becomes an object (which then differs, i.e. drift)
//! rather than an error that stops every sync.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use crate::model::{Budget, Canonical, Key, KeyMap, Kind, Member, Object, Organization};
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
/// holding the raw text, so a broken hand edit shows up in the diff. Borrows
/// from `text` unless an element has escapes.
pub fn list_from_json(text: &str) -> Vec<Cow<'_, str>> {
    let mut list: Vec<Cow<'_, str>> = match serde_json::from_str::<Vec<&str>>(text) {
        Ok(list) => list.into_iter().map(Cow::Borrowed).collect(),
        Err(_) => match serde_json::from_str::<Vec<String>>(text) {
            Ok(list) => list.into_iter().map(Cow::Owned).collect(),
            Err(_) => vec![Cow::Borrowed(text)],
        },
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

/// Builds a `LiveState` from rows as they are read, borrowing each row's
/// text: members before their organizations, every row before the ledger.
#[derive(Default)]
pub struct Assembler {
    rows: KeyMap<LiveRow>,
    members_by_org: HashMap<(String, String), Vec<Member>>,
    ledger: KeyMap<Managed>,
    /// A few thousand files declare a hundred thousand keys: one shared
    /// copy of each path.
    files: HashMap<String, Arc<str>>,
    claims: KeyMap<Vec<Claim>>,
}

impl Assembler {
    /// Sized up front: growing maps of 100k entries from nothing rehashes
    /// them many times.
    pub fn with_capacity(rows: usize, ledger: usize) -> Assembler {
        let mut assembler = Assembler::default();
        assembler.rows.reserve(rows);
        assembler.ledger.reserve(ledger);
        assembler
    }

    pub fn member(&mut self, row: MemberRow) {
        let (app, slug, user_id, contact_id, role, token_limit) = row;
        self.members_by_org
            .entry((app, slug))
            .or_default()
            .push(Member {
                contact_id,
                user_id,
                role,
                token_limit: token_limit.map(unsigned),
            });
    }

    pub fn organization(&mut self, row: OrgRow) {
        let (app, slug, name, monthly_tokens, models, gitops, managed_by, applied_hash) = row;
        let members = self
            .members_by_org
            .remove(&(app.clone(), slug.clone()))
            .unwrap_or_default();
        let mut object = Object::Organization(Organization {
            slug,
            app,
            name,
            budget: monthly_tokens.map(|t| Budget {
                monthly_tokens: unsigned(t),
            }),
            allowed_models: list_from_json(&models)
                .into_iter()
                .map(Cow::into_owned)
                .collect(),
            members,
        });
        object.normalize();
        let key = object.key();
        let row = LiveRow::new(object, managed_by, applied_hash, gitops);
        self.rows.insert(key, row);
    }

    #[allow(clippy::too_many_arguments)]
    pub fn permit(
        &mut self,
        app: &str,
        id: &str,
        permission_id: &str,
        slugs: &str,
        roles: &str,
        managed_by: Option<String>,
        applied_hash: Option<String>,
    ) {
        let content = Canonical::permit(
            id,
            app,
            permission_id,
            &list_from_json(slugs),
            &list_from_json(roles),
        );
        self.insert(Kind::Permit, app, id, content, managed_by, applied_hash);
    }

    #[allow(clippy::too_many_arguments)]
    pub fn enrollment(
        &mut self,
        app: &str,
        id: &str,
        role: &str,
        user_id: Option<&str>,
        contact_id: Option<&str>,
        managed_by: Option<String>,
        applied_hash: Option<String>,
    ) {
        let content = Canonical::enrollment(id, app, role, user_id, contact_id);
        self.insert(Kind::Enrollment, app, id, content, managed_by, applied_hash);
    }

    fn insert(
        &mut self,
        kind: Kind,
        app: &str,
        id: &str,
        content: Canonical,
        managed_by: Option<String>,
        applied_hash: Option<String>,
    ) {
        let key = Key {
            kind,
            app: app.to_owned(),
            id: id.to_owned(),
        };
        let row = LiveRow::from_canonical(content, managed_by, applied_hash, true);
        self.rows.insert(key, row);
    }

    /// A key in the source's ledger; rows of other kinds than accord's are
    /// skipped.
    pub fn managed(
        &mut self,
        kind: &str,
        app: &str,
        id: &str,
        reported_hash: Option<String>,
        declared_in: Option<&str>,
    ) {
        let Some(kind) = Kind::parse(kind) else {
            return;
        };
        let declared_in = declared_in.map(|path| self.file(path));
        let key = Key {
            kind,
            app: app.to_owned(),
            id: id.to_owned(),
        };
        if let Some(row) = self.rows.get_mut(&key) {
            row.mark_in_ledger();
        }
        self.ledger.insert(
            key,
            Managed {
                reported_hash,
                declared_in,
            },
        );
    }

    pub fn claim(&mut self, row: ClaimRow) {
        let (source, kind, app, id, declared_in) = row;
        if let Some(kind) = Kind::parse(&kind) {
            self.claims
                .entry(Key { kind, app, id })
                .or_default()
                .push(Claim {
                    source,
                    declared_in: declared_in.map(Into::into),
                });
        }
    }

    fn file(&mut self, path: &str) -> Arc<str> {
        if let Some(shared) = self.files.get(path) {
            return shared.clone();
        }
        let shared: Arc<str> = Arc::from(path);
        self.files.insert(path.to_owned(), shared.clone());
        shared
    }

    pub fn finish(self) -> LiveState {
        LiveState {
            rows: self.rows,
            managed: self.ledger,
            claims: self.claims,
        }
    }
}

/// The state from every table's rows, decoded whole (PostgreSQL's reads).
pub fn assemble(
    orgs: Vec<OrgRow>,
    members: Vec<MemberRow>,
    permits: Vec<PermitRow>,
    enrollments: Vec<EnrollmentRow>,
    managed: Vec<ManagedRow>,
    claims: Vec<ClaimRow>,
) -> LiveState {
    let mut assembler = Assembler::with_capacity(
        orgs.len() + permits.len() + enrollments.len(),
        managed.len(),
    );
    for row in members {
        assembler.member(row);
    }
    for row in orgs {
        assembler.organization(row);
    }
    for (app, id, permission_id, slugs, roles, managed_by, applied_hash) in permits {
        assembler.permit(
            &app,
            &id,
            &permission_id,
            &slugs,
            &roles,
            managed_by,
            applied_hash,
        );
    }
    for (app, id, role, user_id, contact_id, managed_by, applied_hash) in enrollments {
        assembler.enrollment(
            &app,
            &id,
            &role,
            user_id.as_deref(),
            contact_id.as_deref(),
            managed_by,
            applied_hash,
        );
    }
    for (kind, app, id, reported_hash, declared_in) in managed {
        assembler.managed(&kind, &app, &id, reported_hash, declared_in.as_deref());
    }
    for row in claims {
        assembler.claim(row);
    }
    assembler.finish()
}
