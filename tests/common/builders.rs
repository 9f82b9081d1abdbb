//! Fixture builders for the objects a source declares and the rows a database
//! holds, so a test states only what it is about.
#![allow(dead_code)] // each test binary uses its own subset

use std::sync::Arc;

use accord::model::{
    Budget, Declaration, DesiredState, Enrollment, Key, Kind, Mark, Member, Object, Organization,
    Origin, Permit, DEFAULT_APP,
};
use accord::plan::{Claim, LedgerEntry, LiveRow, LiveState};

/// The key of an object of `kind` in the default app.
pub fn key(kind: Kind, id: &str) -> Key {
    Key {
        kind,
        app: DEFAULT_APP.into(),
        id: id.into(),
    }
}

fn strings<S: Into<String>, T: From<String>>(items: impl IntoIterator<Item = S>) -> Vec<T> {
    items.into_iter().map(|s| T::from(s.into())).collect()
}

// ---- objects -----------------------------------------------------------------

/// A permit in the default app granting `svc:read` to the role `svc:reader`.
pub fn permit(id: &str) -> PermitBuilder {
    PermitBuilder(Permit {
        id: id.into(),
        app: DEFAULT_APP.into(),
        permission_id: "svc:read".into(),
        slugs: Vec::new(),
        roles: vec!["svc:reader".into()],
    })
}

pub struct PermitBuilder(Permit);

impl PermitBuilder {
    pub fn app(mut self, app: &str) -> Self {
        self.0.app = app.into();
        self
    }

    pub fn permission(mut self, permission_id: &str) -> Self {
        self.0.permission_id = permission_id.into();
        self
    }

    pub fn slugs<S: Into<String>>(mut self, slugs: impl IntoIterator<Item = S>) -> Self {
        self.0.slugs = strings(slugs);
        self
    }

    pub fn roles<S: Into<String>>(mut self, roles: impl IntoIterator<Item = S>) -> Self {
        self.0.roles = strings(roles);
        self
    }

    /// The permit with its lists exactly as given, before the parser normalizes them.
    pub fn written(self) -> Object {
        Object::Permit(self.0)
    }

    /// The permit as the parser hands it over: normalized.
    pub fn build(self) -> Object {
        normalized(self.written())
    }
}

/// An enrollment in the default app of the user `alice` in `svc:viewer`.
pub fn enrollment(id: &str) -> EnrollmentBuilder {
    EnrollmentBuilder(Enrollment {
        id: id.into(),
        app: DEFAULT_APP.into(),
        role: "svc:viewer".into(),
        user_id: Some("alice".into()),
        contact_id: None,
    })
}

pub struct EnrollmentBuilder(Enrollment);

impl EnrollmentBuilder {
    pub fn app(mut self, app: &str) -> Self {
        self.0.app = app.into();
        self
    }

    pub fn role(mut self, role: &str) -> Self {
        self.0.role = role.into();
        self
    }

    pub fn user(mut self, user_id: &str) -> Self {
        self.0.user_id = Some(user_id.into());
        self.0.contact_id = None;
        self
    }

    pub fn contact(mut self, contact_id: &str) -> Self {
        self.0.contact_id = Some(contact_id.into());
        self.0.user_id = None;
        self
    }

    pub fn build(self) -> Object {
        normalized(Object::Enrollment(self.0))
    }
}

/// An organization in the default app with only its slug.
pub fn org(slug: &str) -> OrganizationBuilder {
    OrganizationBuilder(Organization {
        slug: slug.to_owned(),
        app: DEFAULT_APP.to_owned(),
        name: None,
        budget: None,
        allowed_models: Vec::new(),
        members: Vec::new(),
    })
}

pub struct OrganizationBuilder(Organization);

impl OrganizationBuilder {
    pub fn app(mut self, app: &str) -> Self {
        self.0.app = app.to_owned();
        self
    }

    pub fn name(mut self, name: &str) -> Self {
        self.0.name = Some(name.to_owned());
        self
    }

    pub fn budget(mut self, monthly_tokens: u64) -> Self {
        self.0.budget = Some(Budget { monthly_tokens });
        self
    }

    pub fn models<S: Into<String>>(mut self, models: impl IntoIterator<Item = S>) -> Self {
        self.0.allowed_models = strings(models);
        self
    }

    /// Adds a member identified by contact.
    pub fn member(mut self, contact_id: &str, role: &str) -> Self {
        self.0.members.push(Member {
            contact_id: Some(contact_id.to_owned()),
            user_id: None,
            role: role.to_owned(),
            token_limit: None,
        });
        self
    }

    pub fn written(self) -> Object {
        Object::Organization(self.0)
    }

    pub fn build(self) -> Object {
        normalized(self.written())
    }
}

fn normalized(mut object: Object) -> Object {
    object.normalize();
    object
}

// ---- what a source declares --------------------------------------------------

/// An object as a source declares it, read from `test.yaml` unless told otherwise.
pub fn declared(object: Object) -> Declared {
    Declared(Declaration {
        object: Arc::new(object),
        origin: origin("test.yaml", 1),
        suspended: false,
        digest: None,
    })
}

pub fn origin(file: &str, line: u32) -> Origin {
    Origin {
        file: Arc::from(file),
        mark: Mark { line, col: 1 },
    }
}

pub struct Declared(Declaration);

impl Declared {
    pub fn at(mut self, file: &str, line: u32) -> Self {
        self.0.origin = origin(file, line);
        self
    }

    /// Declared with `gitops: false`.
    pub fn suspended(mut self) -> Self {
        self.0.suspended = true;
        self
    }
}

impl From<Declared> for Declaration {
    fn from(declared: Declared) -> Declaration {
        declared.0
    }
}

/// A desired state of exactly these declarations.
pub fn desired(declarations: impl IntoIterator<Item = impl Into<Declaration>>) -> DesiredState {
    let mut state = DesiredState::default();
    for declaration in declarations {
        let declaration: Declaration = declaration.into();
        state.objects.insert(declaration.object.key(), declaration);
    }
    state
}

/// `desired` as a parse for a plan leaves it: each declaration with its
/// object's content hash.
pub fn hashed(desired: &DesiredState) -> DesiredState {
    let mut hashed = desired.clone();
    for declaration in hashed.objects.values_mut() {
        declaration.digest = Some(declaration.object.digest());
    }
    hashed
}

/// A desired state declaring these objects as they are.
pub fn desired_objects(objects: impl IntoIterator<Item = Object>) -> DesiredState {
    desired(objects.into_iter().map(declared))
}

// ---- what the database holds -------------------------------------------------

/// An empty database; add rows with [`LiveBuilder::row`] and refine the last
/// row added with the methods that follow it.
pub fn live() -> LiveBuilder {
    LiveBuilder {
        state: LiveState::default(),
        last: None,
    }
}

pub struct LiveBuilder {
    state: LiveState,
    last: Option<Key>,
}

impl LiveBuilder {
    /// A row nobody manages, as the identity service's own API creates it.
    pub fn row(mut self, object: Object) -> Self {
        let key = object.key();
        self.state
            .rows
            .insert(key.clone(), LiveRow::new(object, None, None, true));
        self.last = Some(key);
        self
    }

    /// A row `source` wrote exactly as it is and records in its ledger: the
    /// state after a successful sync.
    pub fn synced(self, source: &str, object: Object) -> Self {
        self.row(object).owned_by(source).applied().in_ledger()
    }

    /// The state after a sync, as a store that knows the row is unedited
    /// loads it for a plan: without its content (`LiveRow::unread`).
    pub fn unread(mut self, source: &str, object: &Object) -> Self {
        let key = object.key();
        self.state
            .rows
            .insert(key.clone(), LiveRow::unread(source.into(), object.digest()));
        self.last = Some(key);
        self.in_ledger()
    }

    pub fn owned_by(mut self, source: &str) -> Self {
        self.last_row().managed_by = Some(source.into());
        self
    }

    /// accord last wrote the row exactly as it is now.
    pub fn applied(mut self) -> Self {
        let row = self.last_row();
        row.applied = Some(row.digest());
        self
    }

    /// accord last wrote `object`; the row has been changed since.
    pub fn applied_as(mut self, object: &Object) -> Self {
        self.last_row().applied = Some(object.digest());
        self
    }

    /// An operator suspended the organization in the database (`gitops = false`).
    pub fn suspended_in_database(mut self) -> Self {
        self.last_row().gitops = false;
        self
    }

    /// The last row's key is in the source's ledger.
    pub fn in_ledger(mut self) -> Self {
        let key = self.last_key();
        self.state.ledger.entry(key).or_default();
        self
    }

    /// A key in the source's ledger, whether or not a row exists for it.
    pub fn ledger(mut self, key: Key) -> Self {
        self.state.ledger.entry(key).or_default();
        self
    }

    /// A key in the source's ledger whose drift was last reported at `hash`.
    pub fn reported(mut self, key: Key, hash: &str) -> Self {
        self.state.ledger.insert(
            key,
            LedgerEntry {
                reported_hash: Some(hash.to_owned()),
            },
        );
        self
    }

    /// `source` declares `key` too and recorded its claim on it.
    pub fn claimed_by(mut self, key: Key, source: &str, file: &str) -> Self {
        self.state.claims.entry(key).or_default().push(Claim {
            source: source.to_owned(),
            declared_in: Some(Arc::from(file)),
        });
        self
    }

    pub fn build(self) -> LiveState {
        self.state
    }

    fn last_key(&self) -> Key {
        self.last.clone().expect("add a row first")
    }

    fn last_row(&mut self) -> &mut LiveRow {
        let key = self.last_key();
        self.state.rows.get_mut(&key).expect("the last row added")
    }
}

/// `live` with each ledger entry whose key has a row moved onto that row, as
/// a store reads them; entries without a row stay in `ledger`.
pub fn ledger_on_rows(live: &LiveState) -> LiveState {
    let mut moved = live.clone();
    moved
        .ledger
        .retain(|key, entry| match moved.rows.get_mut(key) {
            Some(row) => {
                row.set_ledger(entry.clone());
                false
            }
            None => true,
        });
    moved
}
