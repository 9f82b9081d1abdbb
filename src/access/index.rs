//! The access index: every permit and every role grant (enrollment or
//! organization membership) of a state, indexed once so that each query
//! reads only the permits of one permission and the grants of one subject
//! or role.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use compact_str::CompactString;
use rustc_hash::{FxHashMap, FxHashSet};
use serde::Serialize;

use super::subject::{Holder, Subject};
use super::{member_role, role_matches, Place, Placed, EVERY_APP};
use crate::model::{Object, Permit};

type Ids = Vec<u32>;

/// A state's permits and role grants, indexed for queries.
#[derive(Debug, Default)]
pub struct Access {
    permits: Vec<PermitEntry>,
    grants: Vec<GrantEntry>,
    by_permission: FxHashMap<CompactString, Ids>,
    permits_by_app: FxHashMap<CompactString, Ids>,
    by_user: FxHashMap<String, Ids>,
    by_contact: FxHashMap<String, Ids>,
    by_domain: FxHashMap<String, Ids>,
    every_contact: Ids,
    /// Grants by (app, role); the app `*` for grants that hold everywhere.
    by_role: FxHashMap<(CompactString, String), Ids>,
    /// The distinct roles granted in each app (and under `*`), for role
    /// patterns with a `*` segment.
    roles_by_app: FxHashMap<CompactString, Vec<String>>,
    apps: BTreeSet<CompactString>,
}

#[derive(Debug)]
struct PermitEntry {
    object: Arc<Object>,
    place: Place,
}

impl PermitEntry {
    fn permit(&self) -> &Permit {
        match &*self.object {
            Object::Permit(permit) => permit,
            _ => unreachable!("only permits are kept as permits"),
        }
    }
}

#[derive(Debug)]
struct GrantEntry {
    app: CompactString,
    role: String,
    holder: Holder,
    via: Via,
    place: Place,
}

#[derive(Debug)]
enum Via {
    Enrollment { id: String },
    Membership { org: String, role: String },
}

/// A permit, as a query result names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PermitRef {
    pub app: String,
    pub id: String,
    pub permission_id: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub slugs: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    #[schema(value_type = super::PlaceDoc)]
    pub place: Place,
}

/// A role grant: an enrollment, or a member entry of an organization.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GrantRef {
    /// `enrollment` or `membership`.
    pub kind: &'static str,
    /// The enrollment's id, or the organization's slug.
    pub id: String,
    /// The grant's app; `*` for an enrollment that holds in every app.
    pub app: String,
    /// The role granted.
    pub role: String,
    #[schema(value_type = String, example = "contact:*@acme.example.com")]
    pub holder: Holder,
    /// The member's role within the organization (`admin`, `user`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member_role: Option<String>,
    #[schema(value_type = super::PlaceDoc)]
    pub place: Place,
}

/// One way a permission is held: a permit naming the slug, or a permit
/// naming a role pattern that a granted role matches.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Path {
    pub app: String,
    pub permission_id: String,
    pub permit: PermitRef,
    /// The slug the permit names, when that is the way.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slug: Option<String>,
    /// The permit's role pattern that matched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// The grant of the role that matched the pattern.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grant: Option<GrantRef>,
}

impl Path {
    /// The role through which the permission is held, if not a slug.
    pub fn role(&self) -> Option<&str> {
        self.grant.as_ref().map(|g| g.role.as_str())
    }
}

/// The answer to "can S do P": every path that grants it; when none does,
/// the permits that grant it to others, so the reader sees what is missing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    pub allowed: bool,
    pub subject: String,
    pub permission_id: String,
    pub paths: Vec<Path>,
    /// Every permit of the permission in the apps asked about.
    pub permits: Vec<PermitRef>,
}

/// Who holds a permission, by app: `accord who-can`'s and the API's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WhoCan {
    pub permission_id: String,
    pub apps: BTreeMap<String, Vec<Holding>>,
}

/// Everything a subject holds, by app: `accord access`'s and the API's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubjectAccess {
    pub subject: String,
    pub apps: BTreeMap<String, Vec<Path>>,
}

/// A holder of a permission and one way it holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Holding {
    #[schema(value_type = String, example = "contact:*@acme.example.com")]
    pub holder: Holder,
    pub path: Path,
}

impl Access {
    /// Indexes the permits, enrollments and organizations of a state; each
    /// with the place it was declared.
    pub fn build(objects: impl IntoIterator<Item = Placed>) -> Access {
        // Permits and grants are indexed apart (they share no table), so
        // the two halves are built side by side; each keeps its objects'
        // order.
        let started = std::time::Instant::now();
        // Sized once: grown as they fill, the vectors were copied over and
        // over, which cost as much as the split itself.
        let objects = objects.into_iter();
        let (mut permits, mut others) = (
            Vec::with_capacity(objects.size_hint().0),
            Vec::with_capacity(objects.size_hint().0),
        );
        for placed in objects {
            match *placed.0 {
                Object::Permit(_) => permits.push(placed),
                _ => others.push(placed),
            }
        }
        let split = started.elapsed();
        let (mut access, granted) =
            rayon::join(|| Access::index(permits), || Access::index(others));
        tracing::debug!(
            target: "accord::timing",
            split_s = split.as_secs_f64(),
            indexed_s = (started.elapsed() - split).as_secs_f64(),
            "access index built"
        );
        access.grants = granted.grants;
        access.by_user = granted.by_user;
        access.by_contact = granted.by_contact;
        access.by_domain = granted.by_domain;
        access.every_contact = granted.every_contact;
        access.by_role = granted.by_role;
        access.roles_by_app = granted.roles_by_app;
        access.apps.extend(granted.apps);
        access.apps.remove(EVERY_APP);
        access
    }

    /// The index of `objects` alone.
    fn index(objects: Vec<Placed>) -> Access {
        let mut access = Access::default();
        // About one grant an object (an enrollment, or an organization's
        // member): growing the vector as it fills costs a copy each time.
        if objects
            .first()
            .is_some_and(|(o, _)| matches!(**o, Object::Permit(_)))
        {
            access.permits.reserve(objects.len());
        } else {
            access.grants.reserve(objects.len());
        }
        for (object, place) in objects {
            access.apps.insert(object.app().into());
            match &*object {
                Object::Permit(permit) => {
                    let n = access.permits.len() as u32;
                    access
                        .by_permission
                        .entry(permit.permission_id.as_str().into())
                        .or_default()
                        .push(n);
                    access
                        .permits_by_app
                        .entry(permit.app.as_str().into())
                        .or_default()
                        .push(n);
                    access.permits.push(PermitEntry {
                        object: Arc::clone(&object),
                        place,
                    });
                }
                Object::Enrollment(enrollment) => {
                    let Some(holder) = Holder::of(
                        enrollment.user_id.as_deref(),
                        enrollment.contact_id.as_deref(),
                    ) else {
                        continue;
                    };
                    access.add_grant(GrantEntry {
                        app: enrollment.app.as_str().into(),
                        role: enrollment.role.to_string(),
                        holder,
                        via: Via::Enrollment {
                            id: enrollment.id.to_string(),
                        },
                        place,
                    });
                }
                Object::Organization(org) => {
                    for member in &org.members {
                        let Some(holder) =
                            Holder::of(member.user_id.as_deref(), member.contact_id.as_deref())
                        else {
                            continue;
                        };
                        access.add_grant(GrantEntry {
                            app: org.app.as_str().into(),
                            role: member_role(&org.slug, &member.role),
                            holder,
                            via: Via::Membership {
                                org: org.slug.clone(),
                                role: member.role.clone(),
                            },
                            place: place.clone(),
                        });
                    }
                }
            }
        }
        for roles in access.roles_by_app.values_mut() {
            roles.sort_unstable();
            roles.dedup();
        }
        access
    }

    fn add_grant(&mut self, grant: GrantEntry) {
        let n = self.grants.len() as u32;
        match &grant.holder {
            Holder::User(user) => self.by_user.entry(user.clone()).or_default().push(n),
            Holder::Contact(contact) => self.by_contact.entry(contact.clone()).or_default().push(n),
            Holder::Domain(domain) => self.by_domain.entry(domain.clone()).or_default().push(n),
            Holder::EveryContact => self.every_contact.push(n),
            Holder::Slug(_) => {}
        }
        let ids = self
            .by_role
            .entry((grant.app.clone(), grant.role.clone()))
            .or_default();
        if ids.is_empty() {
            self.roles_by_app
                .entry(grant.app.clone())
                .or_default()
                .push(grant.role.clone());
        }
        ids.push(n);
        self.grants.push(grant);
    }

    /// The apps any object of the state belongs to (`*` aside).
    pub fn apps(&self) -> impl Iterator<Item = &str> {
        self.apps.iter().map(CompactString::as_str)
    }

    /// Every permit, in the order given.
    pub fn permits(&self) -> impl Iterator<Item = PermitRef> + '_ {
        self.permits.iter().map(permit_ref)
    }

    /// Every role grant, in the order given.
    pub fn grants(&self) -> impl Iterator<Item = GrantRef> + '_ {
        self.grants.iter().map(grant_ref)
    }

    /// Every distinct `(app, permissionId)` some permit grants, sorted.
    pub fn permissions(&self) -> BTreeSet<(String, String)> {
        self.permits
            .iter()
            .map(|p| {
                (
                    p.permit().app.to_string(),
                    p.permit().permission_id.to_string(),
                )
            })
            .collect()
    }

    /// Whether anyone can hold a role matching `pattern` in `app`: a grant in
    /// that app or in every app.
    pub fn pattern_is_granted(&self, app: &str, pattern: &str) -> bool {
        !self.grants_matching(app, pattern).is_empty()
    }

    /// Whether some permit of `app` (or, for `app` = `*`, of any app) names
    /// a pattern that `role` matches.
    pub fn role_is_used(&self, app: &str, role: &str) -> bool {
        let uses = |ids: &Ids| {
            ids.iter().any(|&n| {
                self.permits[n as usize]
                    .permit()
                    .roles
                    .iter()
                    .any(|pattern| role_matches(pattern, role))
            })
        };
        if app == EVERY_APP {
            self.permits_by_app.values().any(uses)
        } else {
            self.permits_by_app.get(app).is_some_and(uses)
        }
    }

    /// Can the subject do `permission` (in `app`, or in any app)?
    pub fn can(&self, subject: &Subject, permission: &str, app: Option<&str>) -> Decision {
        let permits = self.permits_of(permission, app);
        let grants = self.grants_of(subject);
        let mut paths = Vec::new();
        for &n in &permits {
            paths.extend(self.paths_through(n, subject, &grants));
        }
        paths.sort_by_cached_key(path_order);
        let mut permits: Vec<PermitRef> = permits
            .iter()
            .map(|&n| permit_ref(&self.permits[n as usize]))
            .collect();
        permits.sort_by(|a, b| (&a.app, &a.id).cmp(&(&b.app, &b.id)));
        Decision {
            allowed: !paths.is_empty(),
            subject: subject.to_string(),
            permission_id: permission.to_owned(),
            paths,
            permits,
        }
    }

    /// Every holder of `permission` (in `app`, or in any app), with each way
    /// it holds it; sorted by app, then holder.
    pub fn who_can(&self, permission: &str, app: Option<&str>) -> Vec<Holding> {
        self.holdings(permission, app, |_| true)
    }

    /// Every way each of `holders` holds `permission` (in `app`, or in any
    /// app): their paths of `who_can`, made for them alone.
    pub fn ways(
        &self,
        holders: &BTreeSet<Holder>,
        permission: &str,
        app: Option<&str>,
    ) -> BTreeMap<Holder, Vec<Path>> {
        let mut ways: BTreeMap<Holder, Vec<Path>> = BTreeMap::new();
        for holding in self.holdings(permission, app, |h| holders.contains(h)) {
            ways.entry(holding.holder).or_default().push(holding.path);
        }
        ways
    }

    /// The holdings of `permission` whose holder `keep` keeps, sorted.
    fn holdings(
        &self,
        permission: &str,
        app: Option<&str>,
        keep: impl Fn(&Holder) -> bool,
    ) -> Vec<Holding> {
        let mut holdings = Vec::new();
        for n in self.permits_of(permission, app) {
            let entry = &self.permits[n as usize];
            let permit = entry.permit();
            for slug in &permit.slugs {
                let holder = Holder::Slug(slug.to_string());
                if keep(&holder) {
                    holdings.push(Holding {
                        holder,
                        path: self.path(entry, Some(slug.as_str()), None, None),
                    });
                }
            }
            for pattern in &permit.roles {
                for g in self.grants_matching(&permit.app, pattern) {
                    let grant = &self.grants[g as usize];
                    if keep(&grant.holder) {
                        holdings.push(Holding {
                            holder: grant.holder.clone(),
                            path: self.path(entry, None, Some(pattern.as_str()), Some(grant)),
                        });
                    }
                }
            }
        }
        let order = |h: &Holding| {
            let grant = h.path.grant.as_ref().map(|g| (g.kind, g.id.clone()));
            (
                h.path.app.clone(),
                h.holder.clone(),
                h.path.permit.id.clone(),
                grant,
            )
        };
        holdings.sort_by_cached_key(order);
        holdings
    }

    /// `who_can`, grouped by app.
    pub fn who_can_by_app(&self, permission: &str, app: Option<&str>) -> WhoCan {
        let mut apps: BTreeMap<String, Vec<Holding>> = BTreeMap::new();
        for holding in self.who_can(permission, app) {
            apps.entry(holding.path.app.clone())
                .or_default()
                .push(holding);
        }
        WhoCan {
            permission_id: permission.to_owned(),
            apps,
        }
    }

    /// `access`, grouped by app.
    pub fn access_by_app(&self, subject: &Subject, app: Option<&str>) -> SubjectAccess {
        let mut apps: BTreeMap<String, Vec<Path>> = BTreeMap::new();
        for path in self.access(subject, app) {
            apps.entry(path.app.clone()).or_default().push(path);
        }
        SubjectAccess {
            subject: subject.to_string(),
            apps,
        }
    }

    /// The holders of `permission` per app: what an exhaustive access test
    /// compares and a preview diffs. No path is made (`ways` makes those of
    /// one holder).
    pub fn holders(
        &self,
        permission: &str,
        app: Option<&str>,
    ) -> BTreeMap<String, BTreeSet<Holder>> {
        let mut holders: BTreeMap<String, BTreeSet<Holder>> = BTreeMap::new();
        for n in self.permits_of(permission, app) {
            let permit = self.permits[n as usize].permit();
            let of_app = holders.entry(permit.app.to_string()).or_default();
            of_app.extend(
                permit
                    .slugs
                    .iter()
                    .map(|slug| Holder::Slug(slug.to_string())),
            );
            for pattern in &permit.roles {
                for g in self.grants_matching(&permit.app, pattern) {
                    of_app.insert(self.grants[g as usize].holder.clone());
                }
            }
        }
        // Permits whose roles nobody has make no holders: no entry, as in who_can.
        holders.retain(|_, set| !set.is_empty());
        holders
    }

    /// Every permission the subject holds (in `app`, or in every app), each
    /// with the ways it holds it; sorted by app, then permission.
    pub fn access(&self, subject: &Subject, app: Option<&str>) -> Vec<Path> {
        let grants = self.grants_of(subject);
        let mut apps: BTreeSet<&str> = BTreeSet::new();
        for &g in &grants {
            let grant = &self.grants[g as usize];
            if grant.app == EVERY_APP {
                apps.extend(self.apps());
            } else {
                apps.insert(&grant.app);
            }
        }
        if subject.slug.is_some() {
            apps.extend(self.apps());
        }
        let mut paths = Vec::new();
        for each in apps {
            if app.is_some_and(|a| a != each) {
                continue;
            }
            for &n in self.permits_by_app.get(each).into_iter().flatten() {
                paths.extend(self.paths_through(n, subject, &grants));
            }
        }
        paths.sort_by_cached_key(path_order);
        paths
    }

    /// The permits of `permission`, in `app` or in any app.
    fn permits_of(&self, permission: &str, app: Option<&str>) -> Ids {
        self.by_permission
            .get(permission)
            .into_iter()
            .flatten()
            .copied()
            .filter(|&n| app.is_none_or(|a| self.permits[n as usize].permit().app == a))
            .collect()
    }

    /// The grants naming the subject, in every app.
    fn grants_of(&self, subject: &Subject) -> Ids {
        let mut ids = Ids::new();
        let mut add = |found: Option<&Ids>| ids.extend(found.into_iter().flatten().copied());
        if let Some(user) = &subject.user {
            add(self.by_user.get(user));
        }
        if let Some(contact) = subject.contact_key() {
            add(self.by_contact.get(&contact));
            add(subject.domain().and_then(|d| self.by_domain.get(&d)));
            add(Some(&self.every_contact));
        }
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// The grants of roles matching `pattern` that hold in `app`.
    fn grants_matching(&self, app: &str, pattern: &str) -> Ids {
        let mut ids = Ids::new();
        for scope in [app, EVERY_APP] {
            if !pattern.split(':').any(|s| s == "*") {
                let key = (CompactString::from(scope), pattern.to_owned());
                ids.extend(self.by_role.get(&key).into_iter().flatten().copied());
                continue;
            }
            for role in self.roles_by_app.get(scope).into_iter().flatten() {
                if role_matches(pattern, role) {
                    let key = (CompactString::from(scope), role.clone());
                    ids.extend(self.by_role.get(&key).into_iter().flatten().copied());
                }
            }
            if app == EVERY_APP {
                break;
            }
        }
        ids
    }

    /// The ways permit `n` grants its permission to the subject, whose
    /// grants (in every app) are `grants`.
    fn paths_through(&self, n: u32, subject: &Subject, grants: &Ids) -> Vec<Path> {
        let entry = &self.permits[n as usize];
        let permit = entry.permit();
        let mut paths = Vec::new();
        if let Some(slug) = subject
            .slug
            .as_deref()
            .filter(|s| permit.slugs.iter().any(|own| own == s))
        {
            paths.push(self.path(entry, Some(slug), None, None));
        }
        let mut seen = FxHashSet::default();
        for pattern in &permit.roles {
            for &g in grants {
                let grant = &self.grants[g as usize];
                if (grant.app == permit.app || grant.app == EVERY_APP)
                    && role_matches(pattern, &grant.role)
                    && seen.insert(g)
                {
                    paths.push(self.path(entry, None, Some(pattern.as_str()), Some(grant)));
                }
            }
        }
        paths
    }

    fn path(
        &self,
        entry: &PermitEntry,
        slug: Option<&str>,
        pattern: Option<&str>,
        grant: Option<&GrantEntry>,
    ) -> Path {
        let permit = entry.permit();
        Path {
            app: permit.app.to_string(),
            permission_id: permit.permission_id.to_string(),
            permit: permit_ref(entry),
            slug: slug.map(str::to_owned),
            pattern: pattern.map(str::to_owned),
            grant: grant.map(grant_ref),
        }
    }
}

/// Results in a stable order whatever order the state was read in: by app,
/// permission, permit, then the grant.
fn path_order(
    path: &Path,
) -> (
    String,
    String,
    String,
    Option<(&'static str, String, String)>,
) {
    (
        path.app.clone(),
        path.permission_id.clone(),
        path.permit.id.clone(),
        path.grant
            .as_ref()
            .map(|g| (g.kind, g.id.clone(), g.holder.to_string())),
    )
}

fn permit_ref(entry: &PermitEntry) -> PermitRef {
    let permit = entry.permit();
    PermitRef {
        app: permit.app.to_string(),
        id: permit.id.to_string(),
        permission_id: permit.permission_id.to_string(),
        slugs: permit.slugs.iter().map(ToString::to_string).collect(),
        roles: permit.roles.iter().map(ToString::to_string).collect(),
        place: entry.place.clone(),
    }
}

fn grant_ref(grant: &GrantEntry) -> GrantRef {
    let (kind, id, member_role) = match &grant.via {
        Via::Enrollment { id } => ("enrollment", id.clone(), None),
        Via::Membership { org, role } => ("membership", org.clone(), Some(role.clone())),
    };
    GrantRef {
        kind,
        id,
        app: grant.app.to_string(),
        role: grant.role.clone(),
        holder: grant.holder.clone(),
        member_role,
        place: grant.place.clone(),
    }
}
