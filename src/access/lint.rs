//! Lint rules: declarations that are valid but probably wrong — grants that
//! can never take effect, grants wider than meant, the same grant in two
//! places, and ids the identity service refuses. Pure: it takes a state's
//! objects with their places and returns findings; the command reads the
//! files and prints them.
//!
//! Every rule reads hash indexes built in one pass over the objects, never
//! pairs of objects. Role patterns with `*` segments are matched through
//! their shapes (which segments are `*`): a role is projected onto each
//! shape the permits use, so the cost is the objects times the distinct
//! shapes, which stay a handful in any real tree.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};
use serde::Serialize;

use super::{member_role, Place, Placed, EVERY_APP};
use crate::model::yaml::{self, Node};
use crate::model::{suggest, Diagnostic, Enrollment, Object, Organization, Permit};

/// What a lint rule looks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rule {
    UnheldRole,
    UnusedRole,
    WildcardAdmin,
    OrgWithoutAdmin,
    WildcardService,
    DuplicateGrant,
    SharedEnrollmentId,
}

impl Rule {
    pub const ALL: [Rule; 7] = [
        Rule::UnheldRole,
        Rule::UnusedRole,
        Rule::WildcardAdmin,
        Rule::OrgWithoutAdmin,
        Rule::WildcardService,
        Rule::DuplicateGrant,
        Rule::SharedEnrollmentId,
    ];

    /// The id configuration files, flags and findings name the rule by.
    pub fn id(self) -> &'static str {
        match self {
            Rule::UnheldRole => "unheld-role",
            Rule::UnusedRole => "unused-role",
            Rule::WildcardAdmin => "wildcard-admin",
            Rule::OrgWithoutAdmin => "org-without-admin",
            Rule::WildcardService => "wildcard-service",
            Rule::DuplicateGrant => "duplicate-grant",
            Rule::SharedEnrollmentId => "shared-enrollment-id",
        }
    }

    pub fn parse(id: &str) -> Option<Rule> {
        Rule::ALL.into_iter().find(|rule| rule.id() == id)
    }

    /// A role granted to every contact is the one mistake that hands the
    /// whole app over; the rest cost nothing until someone relies on them.
    pub fn default_severity(self) -> Severity {
        match self {
            Rule::WildcardAdmin => Severity::Error,
            _ => Severity::Warning,
        }
    }

    /// What the rule catches, in a line.
    pub fn summary(self) -> &'static str {
        match self {
            Rule::UnheldRole => "a permit grants to a role nobody holds (no enrollment or member has it, nor a role its pattern matches)",
            Rule::UnusedRole => "an enrollment gives a role that no permit of its app uses, while permits there do use roles of that service",
            Rule::WildcardAdmin => "an admin role (last segment `admin`) enrolled for every contact (`*`) or a whole domain (`*@domain`)",
            Rule::OrgWithoutAdmin => "an organization with no admin member",
            Rule::WildcardService => "a permit role pattern with `*` as its service (first segment)",
            Rule::DuplicateGrant => "two permits grant the same permission to the same slug or role (or a pattern covering it), in the same app",
            Rule::SharedEnrollmentId => "one enrollment id in two apps, which the 1Backend server refuses to save",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

impl Serialize for Rule {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.id())
    }
}

/// How much a finding of a rule matters; `Off` turns the rule off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Off,
    Warning,
    Error,
}

impl Severity {
    pub fn parse(text: &str) -> Option<Severity> {
        match text {
            "off" => Some(Severity::Off),
            "warning" => Some(Severity::Warning),
            "error" => Some(Severity::Error),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Off => "off",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The severity of every rule: the defaults, changed by a configuration
/// file and by flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Severities([Severity; Rule::ALL.len()]);

impl Default for Severities {
    fn default() -> Self {
        Severities(Rule::ALL.map(Rule::default_severity))
    }
}

impl Severities {
    pub fn of(&self, rule: Rule) -> Severity {
        self.0[rule.index()]
    }

    pub fn set(&mut self, rule: Rule, severity: Severity) {
        self.0[rule.index()] = severity;
    }

    /// Applies a configuration file's text, `rules: {RULE-ID: error|warning|off}`;
    /// every mistake in it is located in `file`.
    pub fn configure(&mut self, file: &str, text: &str) -> Result<(), Vec<Diagnostic>> {
        let file: Arc<str> = Arc::from(file);
        let error = |node: &Node, message: String| Diagnostic::new(&file, node.mark, message);
        let docs = yaml::load(text, yaml::Limits::default())
            .map_err(|e| vec![Diagnostic::new(&file, e.mark, e.message)])?;
        let mut roots = docs.iter().filter_map(|doc| doc.root.as_ref());
        let Some(root) = roots.next() else {
            return Ok(());
        };
        let mut errors = Vec::new();
        if let Some(extra) = roots.next() {
            errors.push(error(
                extra,
                "a lint configuration is one YAML document; remove this one or merge it into the first".into(),
            ));
        }
        let Some(entries) = root.as_map() else {
            errors.push(error(
                root,
                format!(
                    "expected a mapping like `rules: {{wildcard-admin: warning}}`, found {}",
                    root.describe()
                ),
            ));
            return Err(errors);
        };
        let mut changed = self.clone();
        for (key, value) in entries {
            if key.as_str() != Some("rules") {
                errors.push(error(
                    key,
                    format!(
                        "unknown key {}: a lint configuration has only `rules`",
                        shown(key)
                    ),
                ));
                continue;
            }
            if value.is_null() {
                continue;
            }
            let Some(rules) = value.as_map() else {
                errors.push(error(
                    value,
                    format!(
                        "`rules` maps rule ids to error, warning or off; found {}",
                        value.describe()
                    ),
                ));
                continue;
            };
            for (id, severity) in rules {
                let Some(rule) = id.as_str().and_then(Rule::parse) else {
                    errors.push(error(id, unknown_rule(&shown(id), id.as_str())));
                    continue;
                };
                match severity.as_str().and_then(Severity::parse) {
                    Some(severity) => changed.set(rule, severity),
                    None => errors.push(error(
                        severity,
                        format!(
                            "the severity of `{rule}` is error, warning or off, not {}",
                            shown(severity)
                        ),
                    )),
                }
            }
        }
        if errors.is_empty() {
            *self = changed;
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// A node as an error message quotes it.
fn shown(node: &Node) -> String {
    match node.as_str() {
        Some(text) => format!("`{text}`"),
        None => node.describe(),
    }
}

/// Why `id` is not a rule, with the one meant when it looks like a typo.
pub fn unknown_rule(shown: &str, id: Option<&str>) -> String {
    let ids = Rule::ALL.map(Rule::id);
    let mut message = format!("unknown rule {shown}");
    if let Some(close) = id.and_then(|id| suggest::closest(id, &ids)) {
        message.push_str(&format!(" (did you mean `{close}`?)"));
    }
    message.push_str(&format!("; the rules are {}", ids.join(", ")));
    message
}

/// One thing a rule found, at the object it is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub rule: Rule,
    pub severity: Severity,
    #[serde(flatten)]
    pub place: Place,
    pub message: String,
    /// The other object involved (the first of two that clash).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub related: Option<Place>,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}[{}]: {}",
            self.place, self.severity, self.rule, self.message
        )
    }
}

/// Orders places as a reader walks a tree: by file, line and column;
/// database rows after every file, by table, app and id.
pub fn cmp_places(a: &Place, b: &Place) -> Ordering {
    match (a, b) {
        (Place::Declared(a), Place::Declared(b)) => a
            .file
            .cmp(&b.file)
            .then(a.mark.line.cmp(&b.mark.line))
            .then(a.mark.col.cmp(&b.mark.col)),
        (Place::Declared(_), Place::Row(_)) => Ordering::Less,
        (Place::Row(_), Place::Declared(_)) => Ordering::Greater,
        (Place::Row(a), Place::Row(b)) => a.cmp(b),
    }
}

/// Runs every rule that is not off over the objects; the findings sorted
/// by place.
pub fn lint(objects: &[Placed], severities: &Severities) -> Vec<Finding> {
    let state = State::new(objects);
    // The rules share nothing but the state, so they run side by side, in
    // four groups.
    let run = |group: fn(&State<'_>, &mut Out<'_>)| {
        let mut out = Out {
            severities,
            findings: Vec::new(),
        };
        group(&state, &mut out);
        out.findings
    };
    let ((held, unused), (duplicates, rest)) = rayon::join(
        || {
            rayon::join(
                || {
                    run(|state, out| {
                        if out.on(Rule::UnheldRole) || out.on(Rule::OrgWithoutAdmin) {
                            let held = state.held();
                            if out.on(Rule::UnheldRole) {
                                state.unheld_roles(&held, out);
                            }
                            if out.on(Rule::OrgWithoutAdmin) {
                                state.orgs_without_admin(&held, out);
                            }
                        }
                    })
                },
                || {
                    run(|state, out| {
                        if out.on(Rule::UnusedRole) {
                            state.unused_roles(out);
                        }
                    })
                },
            )
        },
        || {
            rayon::join(
                || {
                    run(|state, out| {
                        if out.on(Rule::DuplicateGrant) {
                            state.duplicate_grants(out);
                        }
                    })
                },
                || {
                    run(|state, out| {
                        if out.on(Rule::WildcardAdmin) {
                            state.wildcard_admins(out);
                        }
                        if out.on(Rule::WildcardService) {
                            state.wildcard_services(out);
                        }
                        if out.on(Rule::SharedEnrollmentId) {
                            state.shared_enrollment_ids(out);
                        }
                    })
                },
            )
        },
    );
    let mut findings = held;
    findings.extend(unused);
    findings.extend(duplicates);
    findings.extend(rest);
    // Stable: the findings of one rule at one object keep the order the
    // rule found them in.
    findings.sort_by_key(|(n, finding)| (*n, finding.rule));
    findings.into_iter().map(|(_, finding)| finding).collect()
}

/// An object's place, with its rank in the order of places.
#[derive(Clone, Copy)]
struct At<'a> {
    n: u32,
    place: &'a Place,
}

struct Out<'s> {
    severities: &'s Severities,
    /// Each finding with the rank of its object's place.
    findings: Vec<(u32, Finding)>,
}

impl Out<'_> {
    fn on(&self, rule: Rule) -> bool {
        self.severities.of(rule) != Severity::Off
    }

    fn add(&mut self, rule: Rule, at: At<'_>, message: String, related: Option<At<'_>>) {
        let finding = Finding {
            rule,
            severity: self.severities.of(rule),
            place: at.place.clone(),
            message,
            related: related.map(|r| r.place.clone()),
        };
        self.findings.push((at.n, finding));
    }
}

/// Which segments of a role pattern are `*`, one flag per segment: the
/// roles a pattern matches are those its shape projects onto it.
type Shape = Box<[bool]>;

fn segments(role: &str) -> usize {
    role.bytes().filter(|&b| b == b':').count() + 1
}

/// The shape of a pattern with a `*` segment; `None` for a plain role.
fn shape_of(pattern: &str) -> Option<Shape> {
    if !is_wild(pattern) {
        return None;
    }
    Some(pattern.split(':').map(|s| s == "*").collect())
}

fn is_wild(pattern: &str) -> bool {
    pattern.split(':').any(|s| s == "*")
}

/// The role with the shape's `*` segments put in: the pattern of that
/// shape that matches it (when the segment counts agree).
fn project(role: &str, shape: &[bool]) -> Option<String> {
    if segments(role) != shape.len() {
        return None;
    }
    let mut out = String::with_capacity(role.len());
    for (n, (segment, &wild)) in role.split(':').zip(shape).enumerate() {
        if n > 0 {
            out.push(':');
        }
        out.push_str(if wild { "*" } else { segment });
    }
    Some(out)
}

/// The distinct shapes of a set of patterns, by segment count.
#[derive(Default)]
struct Shapes {
    ids: FxHashMap<Shape, u32>,
    by_len: FxHashMap<usize, Vec<(u32, Shape)>>,
}

impl Shapes {
    fn add(&mut self, shape: Shape) -> u32 {
        let next = self.ids.len() as u32;
        let id = *self.ids.entry(shape.clone()).or_insert(next);
        if id == next {
            self.by_len
                .entry(shape.len())
                .or_default()
                .push((id, shape));
        }
        id
    }

    /// The patterns of every shape that could match `role`, with the shape's id.
    fn projections<'r>(&'r self, role: &'r str) -> impl Iterator<Item = (u32, String)> + 'r {
        self.by_len
            .get(&segments(role))
            .into_iter()
            .flatten()
            .filter_map(move |(id, shape)| project(role, shape).map(|p| (*id, p)))
    }

    fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// Roles by app: the key `*` for what holds, or is used, in every app.
type ByApp<'a, T> = FxHashMap<&'a str, FxHashSet<T>>;

fn contains<T: std::borrow::Borrow<str> + Eq + std::hash::Hash>(
    by_app: &ByApp<'_, T>,
    app: &str,
    role: &str,
) -> bool {
    by_app.get(app).is_some_and(|roles| roles.contains(role))
}

/// The objects in the order of their places. Files are ranked once by
/// name, so the sort itself compares integers, not paths; a file's objects
/// share its name, so it is looked up by address.
fn in_order(objects: &[Placed]) -> Vec<&Placed> {
    let address = |file: &Arc<str>| Arc::as_ptr(file) as *const u8 as usize;
    let mut files: FxHashMap<usize, (&str, u32)> = FxHashMap::default();
    for (_, place) in objects {
        if let Place::Declared(origin) = place {
            files
                .entry(address(&origin.file))
                .or_insert((&origin.file, 0));
        }
    }
    let mut names: Vec<&str> = files.values().map(|(name, _)| *name).collect();
    names.sort_unstable();
    names.dedup();
    for (name, rank) in files.values_mut() {
        *rank = names.binary_search(name).unwrap_or_default() as u32;
    }
    let key = |place: &Place| match place {
        Place::Declared(origin) => (
            files[&address(&origin.file)].1,
            origin.mark.line,
            origin.mark.col,
        ),
        Place::Row(_) => (u32::MAX, 0, 0),
    };
    let mut keyed: Vec<((u32, u32, u32), &Placed)> = objects
        .iter()
        .map(|placed| (key(&placed.1), placed))
        .collect();
    keyed.sort_unstable_by(|(a, pa), (b, pb)| a.cmp(b).then_with(|| cmp_places(&pa.1, &pb.1)));
    keyed.into_iter().map(|(_, placed)| placed).collect()
}

/// The objects of a state, in the order of their places.
struct State<'a> {
    permits: Vec<(&'a Permit, At<'a>)>,
    enrollments: Vec<(&'a Enrollment, At<'a>)>,
    orgs: Vec<(&'a Organization, At<'a>)>,
    /// The shapes of every permit's role patterns with a `*` segment.
    shapes: Shapes,
}

/// The roles someone holds, by app (the app `*` for enrollments that hold
/// everywhere).
struct Held<'a> {
    roles: ByApp<'a, Cow<'a, str>>,
    /// Each held role projected onto each shape the permits use: the
    /// patterns someone matches.
    patterns: ByApp<'a, String>,
}

impl<'a> State<'a> {
    fn new(objects: &'a [Placed]) -> State<'a> {
        let sorted = in_order(objects);
        let mut state = State {
            permits: Vec::new(),
            enrollments: Vec::new(),
            orgs: Vec::new(),
            shapes: Shapes::default(),
        };
        for (n, (object, place)) in sorted.into_iter().enumerate() {
            let place = At { n: n as u32, place };
            match &**object {
                Object::Permit(permit) => {
                    for pattern in &permit.roles {
                        if let Some(shape) = shape_of(pattern) {
                            state.shapes.add(shape);
                        }
                    }
                    state.permits.push((permit, place));
                }
                Object::Enrollment(enrollment) => state.enrollments.push((enrollment, place)),
                Object::Organization(org) => state.orgs.push((org, place)),
            }
        }
        state
    }

    fn held(&self) -> Held<'a> {
        let mut roles: ByApp<'a, Cow<'a, str>> = FxHashMap::default();
        for (enrollment, _) in &self.enrollments {
            roles
                .entry(enrollment.app.as_str())
                .or_default()
                .insert(Cow::Borrowed(enrollment.role.as_str()));
        }
        for (org, _) in &self.orgs {
            let app = roles.entry(org.app.as_str()).or_default();
            for member in &org.members {
                app.insert(Cow::Owned(member_role(&org.slug, &member.role)));
            }
        }
        let mut patterns: ByApp<'a, String> = FxHashMap::default();
        if !self.shapes.is_empty() {
            for (app, roles) in &roles {
                let projected = patterns.entry(app).or_default();
                for role in roles {
                    projected.extend(self.shapes.projections(role).map(|(_, p)| p));
                }
            }
        }
        Held { roles, patterns }
    }

    fn unheld_roles(&self, held: &Held<'_>, out: &mut Out<'_>) {
        for &(permit, place) in &self.permits {
            for pattern in &permit.roles {
                let wild = is_wild(pattern);
                let by_app = |app| {
                    if wild {
                        contains(&held.patterns, app, pattern)
                    } else {
                        contains(&held.roles, app, pattern)
                    }
                };
                if by_app(&permit.app) || by_app(EVERY_APP) {
                    continue;
                }
                let what = if wild {
                    "nobody holds a role it matches"
                } else {
                    "nobody holds it"
                };
                out.add(
                    Rule::UnheldRole,
                    place,
                    format!(
                        "permit `{}` grants `{}` to role `{pattern}`, but {what} in app `{}` (no enrollment or organization member): enroll someone in the role, or correct or remove it",
                        permit.id, permit.permission_id, permit.app
                    ),
                    None,
                );
            }
        }
    }

    fn unused_roles(&self, out: &mut Out<'_>) {
        // The role patterns and their services, by app and across apps.
        let mut patterns: ByApp<'a, &'a str> = FxHashMap::default();
        let mut services: ByApp<'a, &'a str> = FxHashMap::default();
        for (permit, _) in &self.permits {
            for pattern in &permit.roles {
                let service = pattern.split(':').next().unwrap_or_default();
                for app in [permit.app.as_str(), EVERY_APP] {
                    patterns.entry(app).or_default().insert(pattern);
                    services.entry(app).or_default().insert(service);
                }
            }
        }
        for &(enrollment, place) in &self.enrollments {
            let (app, role) = (enrollment.app.as_str(), enrollment.role.as_str());
            let service = role.split(':').next().unwrap_or_default();
            // The identity service acts on its own roles (its admin, and an
            // organization role is a membership), whatever the permits say.
            if service == "user-svc" {
                continue;
            }
            // A service whose roles no permit here names keeps its grants
            // elsewhere (1Backend services save their own permits when they
            // start): nothing to judge the role by.
            if !contains(&services, app, service) && !contains(&services, app, "*") {
                continue;
            }
            let used = contains(&patterns, app, role)
                || self
                    .shapes
                    .projections(role)
                    .any(|(_, p)| contains(&patterns, app, &p));
            if used {
                continue;
            }
            let scope = if app == EVERY_APP {
                "no permit of any app".to_owned()
            } else {
                format!("no permit of app `{app}`")
            };
            out.add(
                Rule::UnusedRole,
                place,
                format!(
                    "enrollment `{}` gives the role `{role}`, which {scope} uses, though permits there use other `{service}` roles: the enrollment grants nothing; correct the role, add it to a permit, or remove the enrollment",
                    enrollment.id
                ),
                None,
            );
        }
    }

    fn wildcard_admins(&self, out: &mut Out<'_>) {
        for &(enrollment, place) in &self.enrollments {
            if let Some(who) = wildcard(enrollment.contact_id.as_deref()) {
                if is_admin(&enrollment.role) {
                    out.add(
                        Rule::WildcardAdmin,
                        place,
                        format!(
                            "enrollment `{}` makes {who} an admin (`{}`): enroll the admins one by one, by userId or contactId",
                            enrollment.id, enrollment.role
                        ),
                        None,
                    );
                }
            }
        }
        for &(org, place) in &self.orgs {
            for member in &org.members {
                if let Some(who) = wildcard(member.contact_id.as_deref()) {
                    if member.role == "admin" {
                        out.add(
                            Rule::WildcardAdmin,
                            place,
                            format!(
                                "organization `{}` makes {who} an admin member (`{}`): name its admins one by one",
                                org.slug,
                                member_role(&org.slug, &member.role)
                            ),
                            None,
                        );
                    }
                }
            }
        }
    }

    fn orgs_without_admin(&self, held: &Held<'_>, out: &mut Out<'_>) {
        for &(org, place) in &self.orgs {
            let admin = member_role(&org.slug, "admin");
            if contains(&held.roles, &org.app, &admin) || contains(&held.roles, EVERY_APP, &admin) {
                continue;
            }
            out.add(
                Rule::OrgWithoutAdmin,
                place,
                format!(
                    "organization `{}` has no admin: add a member with `role: admin` (or enroll someone in `{admin}`), or nobody can manage it",
                    org.slug
                ),
                None,
            );
        }
    }

    fn wildcard_services(&self, out: &mut Out<'_>) {
        for &(permit, place) in &self.permits {
            for pattern in &permit.roles {
                if pattern.split(':').next() == Some("*") {
                    out.add(
                        Rule::WildcardService,
                        place,
                        format!(
                            "permit `{}` grants `{}` to `{pattern}`, that role of every service, present and future: name the service instead of `*`",
                            permit.id, permit.permission_id
                        ),
                        None,
                    );
                }
            }
        }
    }

    /// Each permit is compared with the permits before it (in the order of
    /// places) through what they grant: the same slug, the same role, or a
    /// role pattern covering the other's.
    fn duplicate_grants(&self, out: &mut Out<'_>) {
        type Group<'a> = (&'a str, &'a str);
        // The shapes of the wildcard patterns of each (app, permission).
        let mut shapes = Shapes::default();
        let mut group_shapes: FxHashMap<Group<'a>, Vec<u32>> = FxHashMap::default();
        for (permit, _) in &self.permits {
            for pattern in &permit.roles {
                if let Some(shape) = shape_of(pattern) {
                    let id = shapes.add(shape);
                    let ids = group_shapes
                        .entry((&permit.app, &permit.permission_id))
                        .or_default();
                    if !ids.contains(&id) {
                        ids.push(id);
                    }
                }
            }
        }
        // The first permit granting each slug and role pattern, and each
        // pattern projected onto its group's shapes.
        let mut slugs: FxHashMap<(Group<'a>, &'a str), u32> = FxHashMap::default();
        let mut roles: FxHashMap<(Group<'a>, &'a str), u32> = FxHashMap::default();
        let mut projected: FxHashMap<(Group<'a>, u32, String), (u32, &'a str)> =
            FxHashMap::default();
        for (n, &(permit, place)) in self.permits.iter().enumerate() {
            let n = n as u32;
            let group = (permit.app.as_str(), permit.permission_id.as_str());
            let group_shapes = if shapes.is_empty() {
                &[][..]
            } else {
                group_shapes.get(&group).map_or(&[][..], Vec::as_slice)
            };
            let projections = |role: &'a str| {
                shapes
                    .projections(role)
                    .filter(|(id, _)| group_shapes.contains(id))
            };
            // What an earlier permit already grants: (that permit, this
            // permit's grant as the message names it).
            let mut again: Vec<(u32, String)> = Vec::new();
            for slug in &permit.slugs {
                let first = *slugs.entry((group, slug)).or_insert(n);
                if first != n {
                    again.push((first, format!("slug `{slug}`")));
                }
            }
            for pattern in &permit.roles {
                let first = *roles.entry((group, pattern)).or_insert(n);
                if first != n {
                    again.push((first, format!("role `{pattern}`")));
                    continue;
                }
                if group_shapes.is_empty() {
                    continue;
                }
                // An earlier pattern covering this one.
                let covering = projections(pattern).find_map(|(_, p)| {
                    let first = *roles.get(&(group, p.as_str()))?;
                    (first != n).then_some((first, p))
                });
                // This pattern covering an earlier one.
                let covered = shape_of(pattern).and_then(|shape| {
                    let key = (group, shapes.ids[&shape], pattern.to_string());
                    projected.get(&key).filter(|(first, _)| *first != n)
                });
                if let Some((first, by)) = covering {
                    again.push((first, format!("role `{pattern}` (covered by `{by}`)")));
                } else if let Some(&(first, covered)) = covered {
                    again.push((first, format!("role `{pattern}` (covering `{covered}`)")));
                }
                for (id, p) in projections(pattern) {
                    projected
                        .entry((group, id, p))
                        .or_insert((n, pattern.as_str()));
                }
            }
            // One finding per earlier permit, naming all it already grants.
            let mut firsts: Vec<u32> = again.iter().map(|(first, _)| *first).collect();
            firsts.sort_unstable();
            firsts.dedup();
            for first in firsts {
                let (earlier, earlier_place) = self.permits[first as usize];
                let what: Vec<&str> = again
                    .iter()
                    .filter(|(f, _)| *f == first)
                    .map(|(_, what)| what.as_str())
                    .collect();
                out.add(
                    Rule::DuplicateGrant,
                    place,
                    format!(
                        "permit `{}` grants `{}` to {} again: permit `{}` at {} already does; keep each grant in one permit, so that removing it removes it",
                        permit.id,
                        permit.permission_id,
                        what.join(", "),
                        earlier.id,
                        earlier_place.place
                    ),
                    Some(earlier_place),
                );
            }
        }
    }

    fn shared_enrollment_ids(&self, out: &mut Out<'_>) {
        let mut first: FxHashMap<&str, (&str, At<'_>)> = FxHashMap::default();
        for &(enrollment, place) in &self.enrollments {
            let &mut (app, first_place) = first
                .entry(enrollment.id.as_str())
                .or_insert((enrollment.app.as_str(), place));
            if app != enrollment.app {
                out.add(
                    Rule::SharedEnrollmentId,
                    place,
                    format!(
                        "enrollment id `{}` (app `{}`) is also used in app `{app}` at {}: the 1Backend server keeps enrollment ids unique across apps and refuses the second save; give one of them another `id`",
                        enrollment.id, enrollment.app, first_place.place
                    ),
                    Some(first_place),
                );
            }
        }
    }
}

/// Whom a wildcard contact names, if it is one.
fn wildcard(contact: Option<&str>) -> Option<String> {
    match contact? {
        "*" => Some("every contact (`*`)".to_owned()),
        contact => contact
            .strip_prefix("*@")
            .map(|domain| format!("every contact at `{domain}` (`{contact}`)")),
    }
}

/// An admin role: its last segment is `admin` (`user-svc:admin`, an
/// organization's `user-svc:org:<slug>:admin`, any service's admin).
fn is_admin(role: &str) -> bool {
    role.rsplit(':').next() == Some("admin")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::yaml::Mark;
    use crate::model::{Member, Origin};

    /// Builds objects one per line of a pretend file `t.yaml`, in order.
    #[derive(Default)]
    struct Tree(Vec<Placed>);

    impl Tree {
        fn add(mut self, object: Object) -> Tree {
            let line = self.0.len() as u32 + 1;
            let place = Place::Declared(Origin {
                file: Arc::from("t.yaml"),
                mark: Mark { line, col: 1 },
            });
            self.0.push((Arc::new(object), place));
            self
        }

        fn permit(
            self,
            app: &str,
            id: &str,
            permission: &str,
            slugs: &[&str],
            roles: &[&str],
        ) -> Tree {
            self.add(Object::Permit(Permit {
                id: id.into(),
                app: app.into(),
                permission_id: permission.into(),
                slugs: slugs.iter().map(|s| (*s).into()).collect(),
                roles: roles.iter().map(|s| (*s).into()).collect(),
            }))
        }

        fn user(self, app: &str, id: &str, role: &str, user: &str) -> Tree {
            self.enroll(app, id, role, Some(user), None)
        }

        fn contact(self, app: &str, id: &str, role: &str, contact: &str) -> Tree {
            self.enroll(app, id, role, None, Some(contact))
        }

        fn enroll(
            self,
            app: &str,
            id: &str,
            role: &str,
            user: Option<&str>,
            contact: Option<&str>,
        ) -> Tree {
            self.add(Object::Enrollment(Enrollment {
                id: id.into(),
                app: app.into(),
                role: role.into(),
                user_id: user.map(Into::into),
                contact_id: contact.map(Into::into),
            }))
        }

        fn org(self, app: &str, slug: &str, members: &[(&str, &str)]) -> Tree {
            self.add(Object::Organization(Organization {
                slug: slug.into(),
                app: app.into(),
                name: None,
                budget: None,
                allowed_models: vec![],
                members: members
                    .iter()
                    .map(|(contact, role)| Member {
                        contact_id: Some(contact.to_string()),
                        user_id: None,
                        role: role.to_string(),
                        token_limit: None,
                    })
                    .collect(),
            }))
        }

        /// Every finding as (rule, line).
        fn lint(&self) -> Vec<(Rule, u32)> {
            lint(&self.0, &Severities::default())
                .into_iter()
                .map(|f| match f.place {
                    Place::Declared(origin) => (f.rule, origin.mark.line),
                    Place::Row(_) => unreachable!(),
                })
                .collect()
        }
    }

    #[test]
    fn a_clean_tree_has_no_findings() {
        let tree = Tree::default()
            .permit("a", "p1", "pay:process", &["billing"], &["pay:processor"])
            .permit(
                "a",
                "p2",
                "user-svc:org:add-user",
                &[],
                &["user-svc:org:*:admin"],
            )
            .user("a", "e1", "pay:processor", "alice")
            .org(
                "a",
                "acme",
                &[("bob@x.io", "admin"), ("carol@x.io", "user")],
            )
            .contact("a", "e2", "docs-svc:reader", "*");
        assert_eq!(tree.lint(), vec![]);
    }

    #[test]
    fn a_role_nobody_holds_is_found_and_every_app_enrollments_hold_everywhere() {
        let tree = Tree::default()
            .permit("a", "p1", "pay:process", &[], &["pay:processor"])
            .permit("a", "p2", "pay:refund", &[], &["pay:refunder"])
            .permit("b", "p3", "pay:process", &[], &["pay:processor"])
            .permit("a", "p4", "org:add", &[], &["user-svc:org:*:admin"])
            .permit("b", "p5", "org:add", &[], &["user-svc:org:*:admin"])
            .user("*", "e1", "pay:refunder", "alice")
            .user("b", "e2", "pay:processor", "bob")
            .org("a", "acme", &[("carol@x.io", "admin")]);
        // p1: the processor is held in app b only; p5: no organization in b.
        assert_eq!(
            tree.lint(),
            vec![(Rule::UnheldRole, 1), (Rule::UnheldRole, 5)]
        );
    }

    #[test]
    fn an_enrollment_no_permit_uses_is_found_where_the_service_has_permits() {
        let tree = Tree::default()
            .permit("a", "p1", "pay:process", &[], &["pay:processor"])
            .permit("a", "p2", "shop:sell", &[], &["shop:*"])
            .user("a", "e1", "pay:processor", "alice")
            .user("a", "e2", "pay:procesor", "bob")
            .user("b", "e3", "pay:processor", "carol")
            .user("*", "e4", "pay:operator", "dan")
            .user("*", "e5", "pay:processor", "erin")
            .user("a", "e6", "shop:clerk", "fay")
            .user("a", "e7", "docs-svc:reader", "gus")
            .user("a", "e8", "user-svc:org:acme:viewer", "hal");
        // e2 a typo; e3 in an app without payment permits (their permits
        // live elsewhere); e4 used by no app; e6 matched by `shop:*`; e7 of
        // a service without permits here; e8 a membership.
        assert_eq!(
            tree.lint(),
            vec![(Rule::UnusedRole, 4), (Rule::UnusedRole, 6)]
        );
    }

    #[test]
    fn an_admin_role_for_every_contact_is_an_error() {
        let tree = Tree::default()
            .permit(
                "a",
                "p1",
                "x:do",
                &[],
                &["x:admin", "x:user", "user-svc:org:*:admin"],
            )
            .contact("a", "e1", "x:admin", "*")
            .contact("a", "e2", "x:admin", "*@Example.com")
            .contact("a", "e3", "x:user", "*")
            .contact("a", "e4", "x:admin", "ann@example.com")
            .org("a", "acme", &[("*@acme.io", "admin")]);
        let found = lint(&tree.0, &Severities::default());
        let wild: Vec<_> = found
            .iter()
            .filter(|f| f.rule == Rule::WildcardAdmin)
            .collect();
        assert_eq!(wild.len(), 3, "{found:#?}");
        assert!(wild.iter().all(|f| f.severity == Severity::Error));
        assert!(wild[1].message.contains("every contact at `Example.com`"));
        assert!(wild[2].message.contains("organization `acme`"));
    }

    #[test]
    fn an_organization_needs_an_admin_member_or_enrollment() {
        let tree = Tree::default()
            .permit("a", "p1", "x:do", &[], &["user-svc:org:*:user"])
            .org("a", "lone", &[("ann@x.io", "user")])
            .org("a", "enrolled", &[("bo@x.io", "user")])
            .user("*", "e1", "user-svc:org:enrolled:admin", "cy")
            .org("a", "fine", &[("di@x.io", "admin")]);
        assert_eq!(tree.lint(), vec![(Rule::OrgWithoutAdmin, 2)]);
    }

    #[test]
    fn a_pattern_of_every_service_is_found() {
        let tree = Tree::default()
            .permit("a", "p1", "x:do", &[], &["*:admin"])
            .user("a", "e1", "x:admin", "ann");
        assert_eq!(tree.lint(), vec![(Rule::WildcardService, 1)]);
    }

    #[test]
    fn the_same_grant_in_two_permits_is_found_at_the_second() {
        let tree = Tree::default()
            .permit("a", "p1", "x:do", &["svc"], &["x:user", "x:org:acme:admin"])
            .permit("a", "p2", "x:do", &["svc"], &["x:user"])
            .permit("a", "p3", "x:do", &[], &["x:org:*:admin"])
            .permit("a", "p4", "x:do", &[], &["x:org:beta:admin"])
            .permit("b", "p5", "x:do", &["svc"], &[])
            .permit("a", "p6", "x:undo", &["svc"], &[])
            .user("a", "e1", "x:user", "u")
            .user("a", "e2", "x:org:acme:admin", "v")
            .user("a", "e3", "x:org:beta:admin", "w")
            .user("b", "e4", "x:user", "z");
        let found: Vec<_> = lint(&tree.0, &Severities::default())
            .into_iter()
            .filter(|f| f.rule == Rule::DuplicateGrant)
            .collect();
        let lines: Vec<_> = found
            .iter()
            .map(|f| {
                (
                    f.place.to_string(),
                    f.related.as_ref().map(ToString::to_string),
                )
            })
            .collect();
        assert_eq!(
            lines,
            [
                ("t.yaml:2:1".to_owned(), Some("t.yaml:1:1".to_owned())),
                ("t.yaml:3:1".to_owned(), Some("t.yaml:1:1".to_owned())),
                ("t.yaml:4:1".to_owned(), Some("t.yaml:3:1".to_owned())),
            ]
        );
        assert!(
            found[0].message.contains("slug `svc`, role `x:user`"),
            "{}",
            found[0].message
        );
        assert!(
            found[1].message.contains("covering `x:org:acme:admin`"),
            "{}",
            found[1].message
        );
        assert!(
            found[2].message.contains("covered by `x:org:*:admin`"),
            "{}",
            found[2].message
        );
    }

    #[test]
    fn an_enrollment_id_in_two_apps_is_found_at_the_later() {
        let tree = Tree::default()
            .permit("a", "p1", "x:do", &[], &["x:user"])
            .permit("b", "p2", "x:do", &[], &["x:user"])
            .user("a", "same", "x:user", "u")
            .user("b", "same", "x:user", "v")
            .user("*", "same", "x:user", "w")
            .user("b", "other", "x:user", "v");
        let found: Vec<_> = lint(&tree.0, &Severities::default())
            .into_iter()
            .filter(|f| f.rule == Rule::SharedEnrollmentId)
            .map(|f| (f.place.to_string(), f.related.map(|p| p.to_string())))
            .collect();
        assert_eq!(
            found,
            [
                ("t.yaml:4:1".to_owned(), Some("t.yaml:3:1".to_owned())),
                ("t.yaml:5:1".to_owned(), Some("t.yaml:3:1".to_owned())),
            ]
        );
    }

    #[test]
    fn findings_are_sorted_by_place_whatever_the_input_order() {
        let mut tree = Tree::default()
            .permit("a", "p1", "x:do", &[], &["x:nobody"])
            .org("a", "lone", &[])
            .permit("a", "p2", "y:do", &[], &["*:nobody"]);
        tree.0.reverse();
        let found: Vec<_> = tree.lint().into_iter().map(|(_, line)| line).collect();
        assert_eq!(found, [1, 2, 3, 3]);
    }

    #[test]
    fn severities_come_from_defaults_a_file_and_turn_rules_off() {
        let mut severities = Severities::default();
        assert_eq!(severities.of(Rule::WildcardAdmin), Severity::Error);
        assert_eq!(severities.of(Rule::UnusedRole), Severity::Warning);
        severities
            .configure(
                "lint.yaml",
                "rules:\n  wildcard-admin: warning\n  unused-role: off\n",
            )
            .expect("a valid file");
        assert_eq!(severities.of(Rule::WildcardAdmin), Severity::Warning);
        assert_eq!(severities.of(Rule::UnusedRole), Severity::Off);
        assert_eq!(severities.of(Rule::DuplicateGrant), Severity::Warning);

        let tree = Tree::default().org("a", "lone", &[]);
        severities.set(Rule::OrgWithoutAdmin, Severity::Off);
        assert!(lint(&tree.0, &severities).is_empty());
        severities.set(Rule::OrgWithoutAdmin, Severity::Error);
        assert_eq!(lint(&tree.0, &severities)[0].severity, Severity::Error);
    }

    #[test]
    fn a_bad_configuration_is_located_and_changes_nothing() {
        let mut severities = Severities::default();
        let errors = severities
            .configure(
                "lint.yaml",
                "rules:\n  wildcard-admin: warning\n  unused-roles: off\n  duplicate-grant: loud\nrule: {}\n",
            )
            .expect_err("three mistakes");
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(shown.len(), 3, "{shown:#?}");
        assert!(
            shown[0].starts_with(
                "lint.yaml:3:3: unknown rule `unused-roles` (did you mean `unused-role`?)"
            ),
            "{}",
            shown[0]
        );
        assert!(
            shown[1].starts_with("lint.yaml:4:20: the severity of `duplicate-grant`"),
            "{}",
            shown[1]
        );
        assert!(
            shown[2].starts_with("lint.yaml:5:1: unknown key `rule`"),
            "{}",
            shown[2]
        );
        assert_eq!(severities, Severities::default());
        assert!(severities.configure("empty.yaml", "").is_ok());
        let not_a_map = severities.configure("l.yaml", "- a\n").expect_err("a list");
        assert_eq!(not_a_map[0].mark, Mark { line: 1, col: 1 });
    }

    #[test]
    fn projection_puts_a_shapes_stars_in() {
        let shape = shape_of("user-svc:org:*:admin").expect("a wildcard");
        assert_eq!(
            project("user-svc:org:acme:admin", &shape).as_deref(),
            Some("user-svc:org:*:admin")
        );
        assert_eq!(project("user-svc:org:admin", &shape), None);
        assert_eq!(shape_of("a:b"), None);
    }

    proptest::proptest! {
        /// The indexes answer as the definition does, pair by pair: a
        /// permit pattern is held when some held role of its app (or of
        /// every app) matches it.
        #[test]
        fn unheld_roles_agree_with_pairwise_matching(
            patterns in proptest::collection::vec(("[ab]", "[xy*]:[uv*]"), 1..6),
            roles in proptest::collection::vec(("[ab*]", "[xyz]:[uvw]"), 0..6),
        ) {
            let mut tree = Tree::default();
            for (n, (app, pattern)) in patterns.iter().enumerate() {
                tree = tree.permit(app, &format!("p{n}"), &format!("s:a{n}"), &[], &[pattern]);
            }
            for (n, (app, role)) in roles.iter().enumerate() {
                tree = tree.user(app, &format!("e{n}"), role, "u");
            }
            let expected: Vec<(Rule, u32)> = patterns
                .iter()
                .enumerate()
                .filter(|(_, (app, pattern))| {
                    !roles.iter().any(|(held_app, role)| {
                        (held_app == app || held_app == "*") && super::super::role_matches(pattern, role)
                    })
                })
                .map(|(n, _)| (Rule::UnheldRole, n as u32 + 1))
                .collect();
            let found: Vec<(Rule, u32)> = tree
                .lint()
                .into_iter()
                .filter(|(rule, _)| *rule == Rule::UnheldRole)
                .collect();
            proptest::prop_assert_eq!(found, expected);
        }

        /// A permit is a duplicate when an earlier permit of its app and
        /// permission shares a slug, or has a role pattern covering one of
        /// its own or covered by one: checked pair by pair.
        #[test]
        fn duplicate_grants_agree_with_pairwise_overlap(
            permits in proptest::collection::vec(
                ("[ab]", "[xy]", proptest::collection::vec("[st]", 0..2), proptest::collection::vec("[cd*]:[uv*]", 0..3)),
                1..7,
            ),
        ) {
            let mut tree = Tree::default();
            for (n, (app, permission, slugs, roles)) in permits.iter().enumerate() {
                let slugs: Vec<&str> = slugs.iter().map(String::as_str).collect();
                let mut roles: Vec<&str> = roles.iter().map(String::as_str).collect();
                roles.sort_unstable();
                roles.dedup();
                tree = tree.permit(app, &format!("p{n}"), &format!("s:{permission}"), &slugs, &roles);
            }
            let covers = super::super::role_matches;
            let overlap = |i: usize, j: usize| {
                let (a, b) = (&permits[i], &permits[j]);
                a.0 == b.0
                    && a.1 == b.1
                    && (a.2.iter().any(|s| b.2.contains(s))
                        || a.3.iter().any(|p| b.3.iter().any(|q| covers(p, q) || covers(q, p))))
            };
            let found: Vec<_> = lint(&tree.0, &Severities::default())
                .into_iter()
                .filter(|f| f.rule == Rule::DuplicateGrant)
                .collect();
            let line = |place: &Place| match place {
                Place::Declared(origin) => origin.mark.line as usize - 1,
                Place::Row(_) => unreachable!(),
            };
            let mut reported: Vec<usize> = found.iter().map(|f| line(&f.place)).collect();
            reported.dedup();
            let expected: Vec<usize> = (0..permits.len())
                .filter(|&j| (0..j).any(|i| overlap(i, j)))
                .collect();
            proptest::prop_assert_eq!(reported, expected);
            for f in &found {
                let (j, i) = (line(&f.place), line(f.related.as_ref().unwrap()));
                proptest::prop_assert!(i < j && overlap(i, j), "{} names {}", j, i);
            }
        }

        /// An enrollment is unused when no permit of its app (any app, for
        /// `*`) has a pattern matching its role, though one there names a
        /// role of its service: checked pair by pair.
        #[test]
        fn unused_roles_agree_with_pairwise_matching(
            patterns in proptest::collection::vec(("[ab]", "[cd*]:[uv*]"), 0..6),
            roles in proptest::collection::vec(("[ab*]", "[cde]:[uvw]"), 1..6),
        ) {
            let mut tree = Tree::default();
            for (n, (app, role)) in roles.iter().enumerate() {
                tree = tree.user(app, &format!("e{n}"), role, "u");
            }
            for (n, (app, pattern)) in patterns.iter().enumerate() {
                tree = tree.permit(app, &format!("p{n}"), &format!("s:a{n}"), &[], &[pattern]);
            }
            let service = |role: &str| role.split(':').next().unwrap_or_default().to_owned();
            let expected: Vec<u32> = roles
                .iter()
                .enumerate()
                .filter(|(_, (app, role))| {
                    let scope: Vec<&String> = patterns
                        .iter()
                        .filter(|(p_app, _)| app == "*" || p_app == app)
                        .map(|(_, pattern)| pattern)
                        .collect();
                    scope.iter().any(|p| service(p) == service(role) || service(p) == "*")
                        && !scope.iter().any(|p| super::super::role_matches(p, role))
                })
                .map(|(n, _)| n as u32 + 1)
                .collect();
            let found: Vec<u32> = tree
                .lint()
                .into_iter()
                .filter(|(rule, _)| *rule == Rule::UnusedRole)
                .map(|(_, line)| line)
                .collect();
            proptest::prop_assert_eq!(found, expected);
        }
    }
}
