//! What a change to the declared state does: the objects it creates,
//! updates and deletes, and the access it gives and takes away — for a
//! pull-request preview (`accord diff`) and a plan against the database.
//!
//! The access impact is computed only for the permissions a change can
//! affect: those of changed permits, and those of permits whose role
//! patterns match a role a changed enrollment or organization grants or
//! granted (on either side). Their holders are compared on an index of just
//! the objects that bear on them, so a 50-object change to a 100k-object
//! state costs two scans of each side, not every permission's holders
//! twice. Pure: no I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use rayon::prelude::*;
use rustc_hash::{FxHashMap, FxHashSet};
use serde::Serialize;

use super::{member_role, role_matches, Access, GrantRef, Holder, Path, Place, Placed, EVERY_APP};
use crate::model::{render, Key, KeyMap, Object, Permit};

/// What happens to an object between two states.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Update,
    Delete,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One object that differs between two states, with the place it is
/// declared on each side.
#[derive(Clone, Debug)]
pub struct ObjectChange {
    pub action: Action,
    pub key: Key,
    pub before: Option<Placed>,
    pub after: Option<Placed>,
}

pub use crate::plan::FieldChange;

impl ObjectChange {
    /// The change from `before` to `after`; `None` when there is neither.
    pub fn new(key: Key, before: Option<Placed>, after: Option<Placed>) -> Option<ObjectChange> {
        let action = match (&before, &after) {
            (None, Some(_)) => Action::Create,
            (Some(_), None) => Action::Delete,
            (Some(_), Some(_)) => Action::Update,
            (None, None) => return None,
        };
        Some(ObjectChange {
            action,
            key,
            before,
            after,
        })
    }

    /// Where the object is declared after the change, or, for a delete,
    /// where it was declared before.
    pub fn place(&self) -> &Place {
        match (&self.after, &self.before) {
            (Some((_, place)), _) | (None, Some((_, place))) => place,
            (None, None) => unreachable!("a change has a side"),
        }
    }

    pub fn before_object(&self) -> Option<&Object> {
        self.before.as_ref().map(|(object, _)| &**object)
    }

    pub fn after_object(&self) -> Option<&Object> {
        self.after.as_ref().map(|(object, _)| &**object)
    }

    /// The top-level fields an update changes (none for a create or a delete).
    pub fn fields(&self) -> Vec<FieldChange> {
        crate::plan::field_changes(self.before_object(), self.after_object())
    }

    /// A unified diff of the object rendered as YAML, before → after.
    pub fn diff(&self) -> String {
        render::object_diff(self.before_object(), self.after_object())
    }
}

/// Every object that differs between `base` and `head`, sorted by key.
pub fn object_changes(base: &KeyMap<Placed>, head: &KeyMap<Placed>) -> Vec<ObjectChange> {
    let (mut changes, deleted): (Vec<ObjectChange>, Vec<ObjectChange>) = rayon::join(
        || {
            head.par_iter()
                .filter_map(|(key, after)| {
                    let before = base.get(key);
                    // Objects parsed once for both sides are the same
                    // allocation: most comparisons end at the pointer.
                    let same = before.is_some_and(|(object, _)| {
                        Arc::ptr_eq(object, &after.0) || **object == *after.0
                    });
                    (!same)
                        .then(|| {
                            ObjectChange::new(key.clone(), before.cloned(), Some(after.clone()))
                        })
                        .flatten()
                })
                .collect()
        },
        || {
            base.par_iter()
                .filter(|(key, _)| !head.contains_key(*key))
                .filter_map(|(key, before)| {
                    ObjectChange::new(key.clone(), Some(before.clone()), None)
                })
                .collect()
        },
    );
    changes.extend(deleted);
    changes.par_sort_unstable_by(|a, b| a.key.cmp(&b.key));
    changes
}

/// The objects among `keys` that differ between `base` and `head`, sorted
/// by key: `object_changes` when every object not among them is known to
/// be the same on both sides (parsed once from a file both share).
pub fn object_changes_among(
    base: &KeyMap<Placed>,
    head: &KeyMap<Placed>,
    keys: &[Key],
) -> Vec<ObjectChange> {
    let mut keys: Vec<&Key> = keys.iter().collect();
    keys.par_sort_unstable();
    keys.dedup();
    keys.into_par_iter()
        .filter_map(|key| {
            let (before, after) = (base.get(key), head.get(key));
            let same = match (before, after) {
                (Some((a, _)), Some((b, _))) => Arc::ptr_eq(a, b) || a == b,
                (None, None) => true,
                _ => false,
            };
            (!same)
                .then(|| ObjectChange::new(key.clone(), before.cloned(), after.cloned()))
                .flatten()
        })
        .collect()
}

/// Whether a change concerns `app`: its object's app, or every app (an
/// enrollment whose app is `*`).
pub fn concerns(change: &ObjectChange, app: &str) -> bool {
    change.key.app == app || change.key.app == EVERY_APP
}

/// The access a change gives and takes away.
///
/// Holders are kept; the ways they hold (or held) a permission are made
/// when asked (`ways`), from the index of what bears on it on each side:
/// a change that rewrites a popular role moves thousands of holders of
/// each of its permissions, and a report shows a few of them.
#[derive(Debug, Default)]
pub struct Impact {
    /// Every permission whose holders change, sorted by app and permission.
    pub permissions: Vec<PermissionImpact>,
    /// Every role a holder gains or loses (through an enrollment or an
    /// organization membership), sorted by app, role and holder.
    pub roles: Vec<RoleImpact>,
    before: Access,
    after: Access,
}

/// Who gains and who loses one permission in one app.
#[derive(Clone, Debug, PartialEq)]
pub struct PermissionImpact {
    pub app: String,
    pub permission_id: String,
    /// Holders after and not before, sorted.
    pub gained: Vec<Holder>,
    /// Holders before and not after, sorted.
    pub lost: Vec<Holder>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Gained,
    Lost,
}

/// A role a holder gains or loses in an app (`*`: in every app).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleImpact {
    pub app: String,
    pub role: String,
    pub holder: Holder,
    pub change: Direction,
    /// The grant of the role after (gained) or before (lost).
    pub grant: GrantRef,
}

/// Something a reviewer must not miss: a pattern of contacts (`*`,
/// `*@domain`) gaining a permission, or an admin-like role.
#[derive(Clone, Debug, PartialEq)]
pub enum Warning<'a> {
    Permission {
        holder: &'a Holder,
        app: &'a str,
        permission_id: &'a str,
        /// The role it gains it through (the first way), if not a slug.
        role: Option<String>,
    },
    Role {
        holder: &'a Holder,
        app: &'a str,
        role: &'a str,
    },
}

impl Impact {
    /// How many permissions gain holders.
    pub fn gaining(&self) -> usize {
        self.permissions
            .iter()
            .filter(|p| !p.gained.is_empty())
            .count()
    }

    /// How many permissions lose holders.
    pub fn losing(&self) -> usize {
        self.permissions
            .iter()
            .filter(|p| !p.lost.is_empty())
            .count()
    }

    pub fn is_empty(&self) -> bool {
        self.permissions.is_empty() && self.roles.is_empty()
    }

    /// Every way each of `holders` (among those of `permission` that
    /// changed in `direction`) holds it after a gain, or held it before a
    /// loss; sorted as `who_can` sorts.
    pub fn ways(
        &self,
        permission: &PermissionImpact,
        direction: Direction,
        holders: &[Holder],
    ) -> BTreeMap<Holder, Vec<Path>> {
        let access = match direction {
            Direction::Gained => &self.after,
            Direction::Lost => &self.before,
        };
        let holders: BTreeSet<Holder> = holders.iter().cloned().collect();
        access.ways(&holders, &permission.permission_id, Some(&permission.app))
    }

    /// Every pattern of contacts that gains a permission or an admin-like
    /// role, in the order of the impact.
    pub fn warnings(&self) -> Vec<Warning<'_>> {
        let mut warnings = Vec::new();
        for permission in &self.permissions {
            let patterns: Vec<Holder> = permission
                .gained
                .iter()
                .filter(|h| h.is_pattern())
                .cloned()
                .collect();
            if patterns.is_empty() {
                continue;
            }
            let ways = self.ways(permission, Direction::Gained, &patterns);
            for holder in permission.gained.iter().filter(|h| h.is_pattern()) {
                let role = ways
                    .get(holder)
                    .and_then(|paths| paths.first())
                    .and_then(|path| path.role())
                    .map(str::to_owned);
                warnings.push(Warning::Permission {
                    holder,
                    app: &permission.app,
                    permission_id: &permission.permission_id,
                    role,
                });
            }
        }
        for role in &self.roles {
            if role.change == Direction::Gained
                && role.holder.is_pattern()
                && is_admin_role(&role.role)
            {
                warnings.push(Warning::Role {
                    holder: &role.holder,
                    app: &role.app,
                    role: &role.role,
                });
            }
        }
        warnings
    }
}

/// Whether a role reads as administrative: a segment naming an admin,
/// owner, root or superuser (`user-svc:org:acme:admin`, `billing:owner`).
pub fn is_admin_role(role: &str) -> bool {
    role.split(':').any(|segment| {
        let segment = segment.to_ascii_lowercase();
        segment.contains("admin")
            || ["owner", "root", "superuser", "sudo"].contains(&segment.as_str())
    })
}

/// The access `changes` give and take away, in `app` or in every app.
///
/// `head` is the state after the changes; the state before them is `head`
/// with each change undone, so that only `head` is read whole (an object
/// no change names is the same on both sides). `changes` are every
/// difference between the two states; with `app`, those that `concerns`
/// keeps are enough, since nothing of another app bears on it.
pub fn impact(head: &KeyMap<Placed>, changes: &[ObjectChange], app: Option<&str>) -> Impact {
    let seeds = Seeds::of(changes);
    if seeds.permissions.is_empty() && seeds.grants.is_empty() {
        return Impact::default();
    }
    // A permit the base holds is in the head too, or is a changed permit,
    // whose permission the seeds name already.
    let mut affected: BTreeSet<(String, String)> = seeds.permissions.clone();
    affected.extend(seeds.roles.permissions_touched(head));
    if let Some(only) = app {
        affected.retain(|(app, _)| app == only);
    }
    let wanted = Wanted::new(&affected);
    let undone: Vec<&Placed> = changes.iter().filter_map(|c| c.before.as_ref()).collect();
    let bearing = Bearing::new(head, &undone, &wanted, &seeds.roles);
    let in_head: Vec<(&Key, &Placed)> = head
        .par_iter()
        .filter(|(_, (object, _))| bearing.bears(object))
        .collect();
    let changed: FxHashSet<&Key> = changes.iter().map(|c| &c.key).collect();
    let before_objects: Vec<Placed> = in_head
        .iter()
        .filter(|(key, _)| !changed.contains(key))
        .map(|(_, placed)| *placed)
        .chain(
            undone
                .iter()
                .copied()
                .filter(|(object, _)| bearing.bears(object)),
        )
        .cloned()
        .collect();
    let (before, after) = rayon::join(
        || Access::build(before_objects),
        || Access::build(in_head.iter().map(|(_, placed)| (*placed).clone())),
    );

    // Holders are compared as sets; paths are made only for those that
    // change, which are few where the holders are many.
    let mut permissions = Vec::new();
    for (app, permission) in &affected {
        let holders = |access: &Access| {
            access
                .holders(permission, Some(app))
                .remove(app.as_str())
                .unwrap_or_default()
        };
        let (was, is) = (holders(&before), holders(&after));
        let gained: Vec<Holder> = is.difference(&was).cloned().collect();
        let lost: Vec<Holder> = was.difference(&is).cloned().collect();
        if !gained.is_empty() || !lost.is_empty() {
            permissions.push(PermissionImpact {
                app: app.clone(),
                permission_id: permission.clone(),
                gained,
                lost,
            });
        }
    }

    // The grants of the changed triples, on each side (the first of each).
    let grants = |access: &Access| {
        let mut by: FxHashMap<Triple, GrantRef> = FxHashMap::default();
        for grant in access.grants() {
            let triple = (grant.app.clone(), grant.role.clone(), grant.holder.clone());
            if seeds.grants.contains(&triple) {
                by.entry(triple).or_insert(grant);
            }
        }
        by
    };
    let (was, is) = (grants(&before), grants(&after));
    let mut roles = Vec::new();
    for triple in &seeds.grants {
        if app.is_some_and(|only| triple.0 != only && triple.0 != EVERY_APP) {
            continue;
        }
        let (change, grant) = match (was.get(triple), is.get(triple)) {
            (None, Some(grant)) => (Direction::Gained, grant),
            (Some(grant), None) => (Direction::Lost, grant),
            _ => continue,
        };
        roles.push(RoleImpact {
            app: triple.0.clone(),
            role: triple.1.clone(),
            holder: triple.2.clone(),
            change,
            grant: grant.clone(),
        });
    }
    Impact {
        permissions,
        roles,
        before,
        after,
    }
}

/// `--output json`'s form: each holder with every way it holds (or held)
/// the permission, made one permission at a time as it is written.
impl Serialize for Impact {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut out = serializer.serialize_struct("Impact", 2)?;
        let permissions: Vec<PermissionJson> = self
            .permissions
            .iter()
            .map(|permission| PermissionJson {
                impact: self,
                permission,
            })
            .collect();
        out.serialize_field("permissions", &permissions)?;
        out.serialize_field("roles", &self.roles)?;
        out.end()
    }
}

struct PermissionJson<'a> {
    impact: &'a Impact,
    permission: &'a PermissionImpact,
}

impl<'a> Serialize for PermissionJson<'a> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        #[derive(Serialize)]
        struct HolderJson<'a> {
            holder: &'a Holder,
            paths: Vec<Path>,
        }
        let p: &'a PermissionImpact = self.permission;
        let changes = |direction, holders: &'a [Holder]| {
            let mut ways = self.impact.ways(p, direction, holders);
            holders
                .iter()
                .map(|holder| HolderJson {
                    holder,
                    paths: ways.remove(holder).unwrap_or_default(),
                })
                .collect::<Vec<_>>()
        };
        let mut out = serializer.serialize_struct("PermissionImpact", 4)?;
        out.serialize_field("app", &p.app)?;
        out.serialize_field("permissionId", &p.permission_id)?;
        out.serialize_field("gained", &changes(Direction::Gained, &p.gained))?;
        out.serialize_field("lost", &changes(Direction::Lost, &p.lost))?;
        out.end()
    }
}

/// A role grant: (app, role, holder).
type Triple = (String, String, Holder);

/// What the changes name directly: the permissions of changed permits, and
/// the role grants that changed enrollments and organizations add or drop.
#[derive(Default)]
struct Seeds {
    permissions: BTreeSet<(String, String)>,
    /// Sorted, without duplicates.
    grants: BTreeSet<Triple>,
    roles: ChangedRoles,
}

impl Seeds {
    fn of(changes: &[ObjectChange]) -> Seeds {
        let mut seeds = Seeds::default();
        for change in changes {
            let sides = [change.before_object(), change.after_object()];
            let mut granted: [BTreeSet<Triple>; 2] = Default::default();
            for (side, object) in sides.into_iter().enumerate() {
                match object {
                    Some(Object::Permit(permit)) => {
                        seeds
                            .permissions
                            .insert((permit.app.to_string(), permit.permission_id.to_string()));
                    }
                    Some(object) => granted[side] = grants_of(object),
                    None => {}
                }
            }
            // Only what differs: an organization renamed grants nothing new.
            let [before, after] = granted;
            for triple in before.symmetric_difference(&after) {
                seeds.roles.add(&triple.0, &triple.1);
                seeds.grants.insert(triple.clone());
            }
        }
        seeds
    }
}

/// The role grants an enrollment or an organization makes.
fn grants_of(object: &Object) -> BTreeSet<Triple> {
    let mut grants = BTreeSet::new();
    match object {
        Object::Enrollment(e) => {
            if let Some(holder) = Holder::of(e.user_id.as_deref(), e.contact_id.as_deref()) {
                grants.insert((e.app.to_string(), e.role.to_string(), holder));
            }
        }
        Object::Organization(org) => {
            for member in &org.members {
                if let Some(holder) =
                    Holder::of(member.user_id.as_deref(), member.contact_id.as_deref())
                {
                    grants.insert((
                        org.app.clone(),
                        member_role(&org.slug, &member.role),
                        holder,
                    ));
                }
            }
        }
        Object::Permit(_) => {}
    }
    grants
}

/// The roles whose grants changed, each with the apps of those grants.
#[derive(Default)]
struct ChangedRoles {
    apps: FxHashMap<String, FxHashSet<String>>,
}

impl ChangedRoles {
    fn add(&mut self, app: &str, role: &str) {
        self.apps
            .entry(role.to_owned())
            .or_default()
            .insert(app.to_owned());
    }

    /// Whether a grant of `role` in `app` is one that changed.
    fn granted_in(&self, app: &str, role: &str) -> bool {
        self.apps.get(role).is_some_and(|apps| apps.contains(app))
    }

    /// Whether a permit names a pattern that a changed grant's role
    /// matches, in an app where that grant holds.
    fn touches(&self, app: &str, pattern: &str) -> bool {
        let holds_in = |apps: &FxHashSet<String>| apps.contains(app) || apps.contains(EVERY_APP);
        if is_pattern(pattern) {
            self.apps
                .iter()
                .any(|(role, apps)| role_matches(pattern, role) && holds_in(apps))
        } else {
            self.apps.get(pattern).is_some_and(holds_in)
        }
    }

    /// The (app, permission) of every permit of `side` that a changed role
    /// grant bears on.
    fn permissions_touched(&self, side: &KeyMap<Placed>) -> Vec<(String, String)> {
        if self.apps.is_empty() {
            return Vec::new();
        }
        side.par_iter()
            .filter_map(|(_, (object, _))| match &**object {
                Object::Permit(p) if p.roles.iter().any(|r| self.touches(&p.app, r)) => {
                    Some((p.app.to_string(), p.permission_id.to_string()))
                }
                _ => None,
            })
            .collect()
    }
}

fn is_pattern(pattern: &str) -> bool {
    pattern.split(':').any(|segment| segment == "*")
}

/// The affected permissions, looked up without allocating: permission →
/// apps.
struct Wanted<'a> {
    apps: FxHashMap<&'a str, FxHashSet<&'a str>>,
}

impl<'a> Wanted<'a> {
    fn new(affected: &'a BTreeSet<(String, String)>) -> Wanted<'a> {
        let mut apps: FxHashMap<&str, FxHashSet<&str>> = FxHashMap::default();
        for (app, permission) in affected {
            apps.entry(permission).or_default().insert(app);
        }
        Wanted { apps }
    }

    fn contains(&self, app: &str, permission: &str) -> bool {
        self.apps
            .get(permission)
            .is_some_and(|apps| apps.contains(app))
    }
}

/// Role patterns, matched exactly or segment by segment.
#[derive(Default)]
struct Patterns {
    exact: FxHashSet<String>,
    wild: Vec<String>,
}

impl Patterns {
    fn add(&mut self, pattern: &str) {
        if is_pattern(pattern) {
            self.wild.push(pattern.to_owned());
        } else {
            self.exact.insert(pattern.to_owned());
        }
    }

    fn matches(&self, role: &str) -> bool {
        self.exact.contains(role) || self.wild.iter().any(|p| role_matches(p, role))
    }
}

/// Which objects bear on the wanted permissions or on the changed roles:
/// the permits of those permissions, and every enrollment and organization
/// granting, where it holds, a role one of those permits names or a
/// changed role.
struct Bearing<'a> {
    wanted: &'a Wanted<'a>,
    changed: &'a ChangedRoles,
    /// The role patterns of the wanted permits, by app: a popular role is
    /// granted in every app, and only its grants in the apps of the wanted
    /// permits count.
    patterns: FxHashMap<String, Patterns>,
}

impl<'a> Bearing<'a> {
    /// From the wanted permits of `head` and of `undone` (objects of the
    /// base that the head changed): the patterns of either side.
    fn new(
        head: &KeyMap<Placed>,
        undone: &[&Placed],
        wanted: &'a Wanted<'a>,
        changed: &'a ChangedRoles,
    ) -> Bearing<'a> {
        fn wanted_permit<'o>(wanted: &Wanted, object: &'o Object) -> Option<&'o Permit> {
            match object {
                Object::Permit(p) if wanted.contains(&p.app, &p.permission_id) => Some(p),
                _ => None,
            }
        }
        let mut permits: Vec<&Permit> = head
            .par_iter()
            .filter_map(|(_, (object, _))| wanted_permit(wanted, object))
            .collect();
        permits.extend(
            undone
                .iter()
                .filter_map(|(object, _)| wanted_permit(wanted, object)),
        );
        let mut patterns: FxHashMap<String, Patterns> = FxHashMap::default();
        for permit in permits {
            let of_app = patterns.entry(permit.app.to_string()).or_default();
            permit.roles.iter().for_each(|r| of_app.add(r));
        }
        Bearing {
            wanted,
            changed,
            patterns,
        }
    }

    fn bears(&self, object: &Object) -> bool {
        let role_bears = |app: &str, role: &str| {
            self.changed.granted_in(app, role)
                || if app == EVERY_APP {
                    self.patterns.values().any(|p| p.matches(role))
                } else {
                    self.patterns.get(app).is_some_and(|p| p.matches(role))
                }
        };
        match object {
            Object::Permit(p) => self.wanted.contains(&p.app, &p.permission_id),
            Object::Enrollment(e) => role_bears(&e.app, &e.role),
            Object::Organization(org) => org
                .members
                .iter()
                .any(|m| role_bears(&org.app, &member_role(&org.slug, &m.role))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Enrollment, Member, Organization, Permit};
    use proptest::prelude::*;

    fn placed(objects: Vec<Object>) -> KeyMap<Placed> {
        objects
            .into_iter()
            .map(|o| {
                let key = o.key();
                (key.clone(), (Arc::new(o), Place::Row(key)))
            })
            .collect()
    }

    fn permit(app: &str, id: &str, permission: &str, slugs: &[&str], roles: &[&str]) -> Object {
        Object::Permit(Permit {
            id: id.into(),
            app: app.into(),
            permission_id: permission.into(),
            slugs: slugs.iter().map(|s| (*s).into()).collect(),
            roles: roles.iter().map(|s| (*s).into()).collect(),
        })
    }

    fn enrollment(app: &str, id: &str, role: &str, who: (Option<&str>, Option<&str>)) -> Object {
        Object::Enrollment(Enrollment {
            id: id.into(),
            app: app.into(),
            role: role.into(),
            user_id: who.0.map(Into::into),
            contact_id: who.1.map(Into::into),
        })
    }

    fn org(app: &str, slug: &str, members: &[(Option<&str>, Option<&str>, &str)]) -> Object {
        let mut members: Vec<Member> = members
            .iter()
            .map(|(user, contact, role)| Member {
                user_id: user.map(str::to_owned),
                contact_id: contact.map(str::to_owned),
                role: role.to_string(),
                token_limit: None,
            })
            .collect();
        members.sort();
        members.dedup();
        Object::Organization(Organization {
            slug: slug.into(),
            app: app.into(),
            name: None,
            budget: None,
            allowed_models: vec![],
            members,
        })
    }

    fn run(base: Vec<Object>, head: Vec<Object>) -> (Vec<ObjectChange>, Impact) {
        let (base, head) = (placed(base), placed(head));
        let changes = object_changes(&base, &head);
        let impact = impact(&head, &changes, None);
        (changes, impact)
    }

    fn holders(changes: &[Holder]) -> Vec<String> {
        changes.iter().map(ToString::to_string).collect()
    }

    /// The first way the first holder gained `permission` does.
    fn first_gain(impact: &Impact, permission: &PermissionImpact) -> Path {
        let ways = impact.ways(permission, Direction::Gained, &permission.gained);
        ways[&permission.gained[0]][0].clone()
    }

    #[test]
    fn changes_are_creates_updates_and_deletes_by_key() {
        let (changes, _) = run(
            vec![
                permit("a", "kept", "s:x", &["svc"], &[]),
                permit("a", "edited", "s:x", &["svc"], &[]),
                permit("a", "gone", "s:x", &["svc"], &[]),
            ],
            vec![
                permit("a", "kept", "s:x", &["svc"], &[]),
                permit("a", "edited", "s:y", &["svc"], &[]),
                permit("a", "new", "s:x", &["svc"], &[]),
            ],
        );
        let shown: Vec<(Action, &str)> = changes
            .iter()
            .map(|c| (c.action, c.key.id.as_str()))
            .collect();
        assert_eq!(
            shown,
            [
                (Action::Update, "edited"),
                (Action::Delete, "gone"),
                (Action::Create, "new")
            ]
        );
        let fields = changes[0].fields();
        assert_eq!(fields.len(), 1);
        assert_eq!(fields[0].field, "permissionId");
        assert!(changes[0]
            .diff()
            .contains("-permissionId: s:x\n+permissionId: s:y"));
    }

    #[test]
    fn a_wildcard_enrollment_gains_what_its_role_grants_and_is_warned_about() {
        let permits = vec![
            permit("unnamed", "refunds", "pay:refund", &[], &["pay:processor"]),
            permit("unnamed", "other", "pay:other", &[], &["pay:viewer"]),
        ];
        let mut head = permits.clone();
        head.push(enrollment(
            "unnamed",
            "acme",
            "pay:processor",
            (None, Some("*@Acme.example.com")),
        ));
        let (_, impact) = run(permits, head);
        assert_eq!(impact.permissions.len(), 1, "{impact:#?}");
        let refund = &impact.permissions[0];
        assert_eq!(refund.permission_id, "pay:refund");
        assert_eq!(holders(&refund.gained), ["contact:*@acme.example.com"]);
        assert!(refund.lost.is_empty());
        assert_eq!(first_gain(&impact, refund).role(), Some("pay:processor"));
        assert_eq!(impact.roles.len(), 1);
        assert_eq!(impact.roles[0].change, Direction::Gained);
        let warnings = impact.warnings();
        assert_eq!(warnings.len(), 1);
        assert!(matches!(
            warnings[0],
            Warning::Permission {
                permission_id: "pay:refund",
                ..
            }
        ));
    }

    #[test]
    fn a_new_admin_member_gains_what_org_admins_may_do() {
        let permit = permit(
            "unnamed",
            "org-admins",
            "user-svc:org:add-user",
            &[],
            &["user-svc:org:*:admin"],
        );
        let before = org(
            "unnamed",
            "platform",
            &[(None, Some("alice@x.com"), "admin")],
        );
        let after = org(
            "unnamed",
            "platform",
            &[
                (None, Some("alice@x.com"), "admin"),
                (None, Some("zed@x.com"), "admin"),
            ],
        );
        let (changes, impact) = run(vec![permit.clone(), before], vec![permit, after]);
        assert_eq!(changes.len(), 1);
        assert_eq!(impact.permissions.len(), 1);
        assert_eq!(
            holders(&impact.permissions[0].gained),
            ["contact:zed@x.com"]
        );
        let grant = first_gain(&impact, &impact.permissions[0])
            .grant
            .expect("through a role");
        assert_eq!(grant.kind, "membership");
        assert_eq!(grant.member_role.as_deref(), Some("admin"));
        assert_eq!(impact.roles.len(), 1, "alice's grant did not change");
        assert!(impact.warnings().is_empty(), "one person is no pattern");
    }

    #[test]
    fn a_deleted_permit_loses_its_holders_and_an_every_app_enrollment_counts() {
        let base = vec![
            permit("a", "p", "s:do", &["svc"], &["s:doer"]),
            enrollment("*", "everywhere", "s:doer", (Some("u1"), None)),
        ];
        let head = vec![enrollment("*", "everywhere", "s:doer", (Some("u1"), None))];
        let (_, impact) = run(base, head);
        assert_eq!(impact.permissions.len(), 1);
        assert_eq!(
            holders(&impact.permissions[0].lost),
            ["user:u1", "slug:svc"]
        );
        assert!(impact.roles.is_empty(), "the enrollment did not change");
    }

    #[test]
    fn a_wildcard_gaining_an_admin_role_is_warned_about_even_unused() {
        let (_, impact) = run(
            vec![],
            vec![enrollment("b", "e", "billing:admin", (None, Some("*")))],
        );
        assert!(impact.permissions.is_empty());
        assert_eq!(impact.warnings().len(), 1);
        assert!(is_admin_role("user-svc:org:acme:admin"));
        assert!(!is_admin_role("docs:reader"));
    }

    #[test]
    fn a_holder_kept_through_another_grant_is_neither_gained_nor_lost() {
        let p = permit("a", "p", "s:do", &[], &["s:doer", "s:other"]);
        let (_, impact) = run(
            vec![
                p.clone(),
                enrollment("a", "e1", "s:doer", (Some("u1"), None)),
                enrollment("a", "e2", "s:other", (Some("u1"), None)),
            ],
            vec![p, enrollment("a", "e2", "s:other", (Some("u1"), None))],
        );
        assert!(impact.permissions.is_empty(), "{impact:#?}");
        assert_eq!(impact.roles.len(), 1);
        assert_eq!(impact.roles[0].change, Direction::Lost);
    }

    #[test]
    fn the_app_filter_keeps_one_app_and_grants_that_hold_everywhere() {
        let base = vec![
            permit("a", "p", "s:do", &[], &["s:doer"]),
            permit("b", "p", "s:do", &[], &["s:doer"]),
        ];
        let mut head = base.clone();
        head.push(enrollment("*", "e", "s:doer", (Some("u1"), None)));
        let (base, head) = (placed(base), placed(head));
        let changes = object_changes(&base, &head);
        let only_b = impact(&head, &changes, Some("b"));
        assert_eq!(only_b.permissions.len(), 1);
        assert_eq!(only_b.permissions[0].app, "b");
        assert_eq!(only_b.roles.len(), 1);
        assert_eq!(impact(&head, &changes, None).permissions.len(), 2);
    }

    // ---- the impact agrees with comparing every permission's holders ----

    fn with_id(object: Object, n: usize) -> Object {
        match object {
            Object::Permit(mut p) => {
                p.id = format!("p{n}").into();
                Object::Permit(p)
            }
            Object::Enrollment(mut e) => {
                e.id = format!("e{n}").into();
                Object::Enrollment(e)
            }
            Object::Organization(mut o) => {
                o.slug = format!("o{}", n % 3);
                Object::Organization(o)
            }
        }
    }

    /// Two states: each slot is in the base, the head, both alike, or both
    /// with different content.
    fn two_states() -> impl Strategy<Value = (Vec<Object>, Vec<Object>)> {
        prop::collection::vec(
            (
                crate::access::tests::object(),
                crate::access::tests::object(),
                0..4u8,
            ),
            0..10,
        )
        .prop_map(|slots| {
            let (mut base, mut head): (KeyMap<Object>, KeyMap<Object>) = Default::default();
            for (n, (a, b, mode)) in slots.into_iter().enumerate() {
                let (a, b) = (with_id(a, n), with_id(b, n));
                match mode {
                    0 => {
                        base.insert(a.key(), a);
                    }
                    1 => {
                        head.insert(b.key(), b);
                    }
                    2 => {
                        base.insert(a.key(), a.clone());
                        head.insert(a.key(), a);
                    }
                    _ => {
                        base.insert(a.key(), a);
                        head.insert(b.key(), b);
                    }
                }
            }
            (base.into_values().collect(), head.into_values().collect())
        })
    }

    proptest! {
        #[test]
        fn the_impact_is_what_comparing_every_permission_finds((base, head) in two_states()) {
            let (changes, found) = run(base.clone(), head.clone());
            let all: Vec<Key> = base.iter().chain(&head).map(Object::key).collect();
            let among = object_changes_among(&placed(base.clone()), &placed(head.clone()), &all);
            let keys = |changes: &[ObjectChange]| -> Vec<(Key, Action)> {
                changes.iter().map(|c| (c.key.clone(), c.action)).collect()
            };
            prop_assert_eq!(keys(&among), keys(&changes));
            let full = |objects: &[Object]| {
                Access::build(objects.iter().map(|o| (Arc::new(o.clone()), Place::Row(o.key()))))
            };
            let (before, after) = (full(&base), full(&head));
            let mut permissions: BTreeSet<(String, String)> = before.permissions();
            permissions.extend(after.permissions());
            let mut expected = Vec::new();
            for (app, permission) in &permissions {
                let was = before.holders(permission, Some(app)).remove(app).unwrap_or_default();
                let is = after.holders(permission, Some(app)).remove(app).unwrap_or_default();
                let gained: Vec<String> = is.difference(&was).map(ToString::to_string).collect();
                let lost: Vec<String> = was.difference(&is).map(ToString::to_string).collect();
                if !gained.is_empty() || !lost.is_empty() {
                    expected.push((app.clone(), permission.clone(), gained, lost));
                }
            }
            let got: Vec<_> = found
                .permissions
                .iter()
                .map(|p| (p.app.clone(), p.permission_id.clone(), holders(&p.gained), holders(&p.lost)))
                .collect();
            prop_assert_eq!(got, expected, "changes: {:?}", changes.iter().map(|c| &c.key).collect::<Vec<_>>());

            let triples = |access: &Access| -> BTreeSet<(String, String, String)> {
                access.grants().map(|g| (g.app, g.role, g.holder.to_string())).collect()
            };
            let (was, is) = (triples(&before), triples(&after));
            let mut expected: Vec<_> = is.difference(&was).map(|t| (t.clone(), Direction::Gained)).collect();
            expected.extend(was.difference(&is).map(|t| (t.clone(), Direction::Lost)));
            expected.sort();
            let mut got: Vec<_> = found
                .roles
                .iter()
                .map(|r| ((r.app.clone(), r.role.clone(), r.holder.to_string()), r.change))
                .collect();
            got.sort();
            prop_assert_eq!(got, expected);
        }
    }
}
