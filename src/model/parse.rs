//! Turns the files of a source into a `DesiredState`: the four document shapes
//! of DESIGN.md, strict field checks, derived ids, and every error of the whole
//! tree located as `file:line:column`.

use std::collections::hash_map::Entry;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use rayon::prelude::*;
use schemars::JsonSchema;
use serde::Deserialize;

use super::de::{from_node, DeError};
use super::suggest;
use super::validate;
use super::yaml::{self, Limits, Mark, Node};
use super::{
    derived_id, Declaration, DesiredState, Enrollment, EnrollmentSpec, Key, KeyMap, Kind, Object,
    Organization, OrganizationSpec, Origin, Permit, PermitSpec, API_VERSION, DEFAULT_APP,
};

/// One file of a source: its path as shown to users, and its bytes.
#[derive(Clone, Debug)]
pub struct SourceFile {
    pub path: Arc<str>,
    pub bytes: Vec<u8>,
}

/// A located error: `file:line:column: message`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Diagnostic {
    pub file: Arc<str>,
    pub mark: Mark,
    pub message: String,
}

impl Diagnostic {
    /// A located error. Control characters in the message (a value it
    /// quotes) are escaped, so it stays one line wherever it is shown.
    pub fn new(file: &Arc<str>, mark: Mark, message: impl Into<String>) -> Diagnostic {
        let message = message.into();
        let message = match validate::escape_controls(&message) {
            std::borrow::Cow::Borrowed(_) => message,
            std::borrow::Cow::Owned(escaped) => escaped,
        };
        Diagnostic {
            file: file.clone(),
            mark,
            message,
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // File names may hold control characters too.
        write!(
            f,
            "{}:{}: {}",
            validate::escape_controls(&self.file),
            self.mark,
            self.message
        )
    }
}

/// Parses every file (in parallel) and checks keys across the tree. Either the
/// whole desired state, or every error found, sorted by place.
pub fn parse_tree(files: &[SourceFile], limits: Limits) -> Result<DesiredState, Vec<Diagnostic>> {
    parse_files(files, limits, false)
}

/// `parse_tree`, each declaration with its object's content hash, taken as
/// each file is parsed (`Declaration::digest`).
pub fn parse_tree_for_plan(
    files: &[SourceFile],
    limits: Limits,
) -> Result<DesiredState, Vec<Diagnostic>> {
    parse_files(files, limits, true)
}

fn parse_files(
    files: &[SourceFile],
    limits: Limits,
    digests: bool,
) -> Result<DesiredState, Vec<Diagnostic>> {
    let parsed: Vec<(Vec<Declaration>, Vec<Diagnostic>)> = files
        .par_iter()
        .map(|f| parse_source_file(f, limits, digests))
        .collect();
    assemble(parsed)
}

/// `parse_file` of one source file, with each object's content hash when
/// the tree is parsed for a plan.
pub(super) fn parse_source_file(
    file: &SourceFile,
    limits: Limits,
    digests: bool,
) -> (Vec<Declaration>, Vec<Diagnostic>) {
    let (mut declarations, diagnostics) = parse_file(&file.path, &file.bytes, limits);
    if digests {
        for declaration in &mut declarations {
            declaration.digest = Some(declaration.object.digest());
        }
    }
    (declarations, diagnostics)
}

/// Puts files parsed one by one (`parse_file`) together into one state,
/// checking keys across them: either the whole state, or every error,
/// sorted by place.
pub fn assemble(
    parsed: Vec<(Vec<Declaration>, Vec<Diagnostic>)>,
) -> Result<DesiredState, Vec<Diagnostic>> {
    let objects = parsed.iter().map(|(d, _)| d.len()).sum();
    assemble_files(parsed, objects)
}

/// `assemble` of files whose declarations stay where they are (a parse
/// cache's): each declaration is copied into the state, its object shared.
pub fn assemble_shared<'a>(
    parsed: impl Iterator<Item = (&'a [Declaration], &'a [Diagnostic])> + Clone,
) -> Result<DesiredState, Vec<Diagnostic>> {
    let objects = parsed.clone().map(|(d, _)| d.len()).sum();
    assemble_files(
        parsed.map(|(d, e)| (d.iter().cloned(), e.iter().cloned())),
        objects,
    )
}

/// Both `assemble`s: `objects` declarations over all the files.
fn assemble_files<D, E>(
    files: impl IntoIterator<Item = (D, E)>,
    objects: usize,
) -> Result<DesiredState, Vec<Diagnostic>>
where
    D: IntoIterator<Item = Declaration>,
    E: IntoIterator<Item = Diagnostic>,
{
    let mut errors = Vec::new();
    let mut state = DesiredState::default();
    state.objects.reserve(objects);
    for (declarations, diagnostics) in files {
        errors.extend(diagnostics);
        for declaration in declarations {
            match state.objects.entry(declaration.object.key()) {
                Entry::Vacant(slot) => {
                    slot.insert(declaration);
                }
                Entry::Occupied(first) => errors.push(declared_twice(
                    first.key(),
                    &declaration.origin,
                    &first.get().origin,
                )),
            }
        }
    }
    if errors.is_empty() {
        Ok(state)
    } else {
        errors.sort();
        Err(errors)
    }
}

/// The error at a key's second declaration.
fn declared_twice(key: &Key, again: &Origin, first: &Origin) -> Diagnostic {
    Diagnostic::new(
        &again.file,
        again.mark,
        format!(
            "{} `{}` in app `{}` is declared twice: also at {first}",
            key.kind, key.id, key.app
        ),
    )
}

/// What checking a tree keeps of one file: its objects' keys and places,
/// and its errors.
#[derive(Debug, Default)]
pub struct FileTally {
    keys: Vec<(Key, Origin)>,
    diagnostics: Vec<Diagnostic>,
}

/// `parse_file`, keeping only what `Tally` needs.
pub fn tally_file(file: &SourceFile, limits: Limits) -> FileTally {
    let (declarations, diagnostics) = parse_file(&file.path, &file.bytes, limits);
    FileTally {
        keys: declarations
            .into_iter()
            .map(|d| (d.object.key(), d.origin))
            .collect(),
        diagnostics,
    }
}

/// A tree checked file by file, in path order, as `assemble` checks it,
/// keeping each key's first place instead of the objects.
#[derive(Debug, Default)]
pub struct Tally {
    first: KeyMap<Origin>,
    counts: Counts,
    errors: Vec<Diagnostic>,
}

/// What a valid tree holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub files: usize,
    pub organizations: usize,
    pub permits: usize,
    pub enrollments: usize,
}

impl Counts {
    pub fn objects(&self) -> usize {
        self.organizations + self.permits + self.enrollments
    }
}

impl Tally {
    /// A file that could not be taken.
    pub fn problem(&mut self, problem: Diagnostic) {
        self.errors.push(problem);
    }

    /// The next file, in path order.
    pub fn add(&mut self, file: FileTally) {
        self.counts.files += 1;
        self.errors.extend(file.diagnostics);
        for (key, origin) in file.keys {
            match self.first.entry(key) {
                Entry::Vacant(slot) => {
                    match slot.key().kind {
                        Kind::Organization => self.counts.organizations += 1,
                        Kind::Permit => self.counts.permits += 1,
                        Kind::Enrollment => self.counts.enrollments += 1,
                    }
                    slot.insert(origin);
                }
                Entry::Occupied(first) => {
                    self.errors
                        .push(declared_twice(first.key(), &origin, first.get()))
                }
            }
        }
    }

    /// The counts, or every error sorted by place.
    pub fn finish(mut self) -> Result<Counts, Vec<Diagnostic>> {
        if self.errors.is_empty() {
            Ok(self.counts)
        } else {
            self.errors.sort();
            Err(self.errors)
        }
    }
}

/// Parses one file. Declarations that are valid are returned even when others
/// in the file are not, so a tree reports all of its errors in one run.
pub fn parse_file(
    file: &Arc<str>,
    bytes: &[u8],
    limits: Limits,
) -> (Vec<Declaration>, Vec<Diagnostic>) {
    let mut parser = FileParser {
        file: file.clone(),
        declarations: Vec::new(),
        diagnostics: Vec::new(),
    };
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            let valid = &bytes[..e.valid_up_to()];
            let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
            let line_start = valid.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
            let col = String::from_utf8_lossy(&valid[line_start..])
                .chars()
                .count()
                + 1;
            parser.error(
                Mark {
                    line: line as u32,
                    col: col as u32,
                },
                "file is not valid UTF-8",
            );
            return (parser.declarations, parser.diagnostics);
        }
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    match yaml::load(text, limits) {
        Ok(documents) => {
            for document in documents {
                if let Some(root) = &document.root {
                    parser.document(root);
                }
            }
        }
        Err(e) => parser.error(e.mark, e.message),
    }
    (parser.declarations, parser.diagnostics)
}

const NATIVE_HINT: &str = "expected a Permit (`permissionId`), an Enrollment (`role` with `userId` or `contactId`), an Organization (`slug`), a list of those, an app bundle (`app` with `permits`, `enrollments`, `organizations`) or a typed manifest (`apiVersion`, `kind`)";
/// The fields whose presence tells a native object's kind, and those a
/// misspelling of which likely hides it.
const KIND_FIELDS: [&str; 10] = [
    "permissionId",
    "permission",
    "slug",
    "role",
    "userId",
    "contactId",
    "members",
    "permits",
    "enrollments",
    "organizations",
];
const BUNDLE_FIELDS: [&str; 4] = ["app", "permits", "enrollments", "organizations"];
const MANIFEST_FIELDS: [&str; 5] = ["apiVersion", "kind", "metadata", "spec", "status"];

/// The Kubernetes object metadata of a typed manifest.
// `accord schema` derives the schema of `metadata` from this struct, so an
// editor accepts what the parser accepts.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // namespace, labels and annotations are accepted, not used
pub(super) struct Metadata {
    /// The object's id (an Organization's slug) unless `spec` names one: a
    /// Kubernetes name, lowercase letters, digits, `-` and `.`.
    #[schemars(regex(pattern = KUBERNETES_NAME), length(max = 253))]
    name: String,
    /// For `kubectl apply`; a file source does not read it.
    #[serde(default)]
    namespace: Option<String>,
    /// For `kubectl apply`; a file source does not read them.
    #[serde(default)]
    labels: BTreeMap<String, String>,
    /// For `kubectl apply`; a file source does not read them.
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

struct FileParser {
    file: Arc<str>,
    declarations: Vec<Declaration>,
    diagnostics: Vec<Diagnostic>,
}

impl FileParser {
    fn error(&mut self, mark: Mark, message: impl Into<String>) {
        self.diagnostics
            .push(Diagnostic::new(&self.file, mark, message));
    }

    fn de_error(&mut self, fallback: Mark, error: DeError) {
        self.error(error.mark.unwrap_or(fallback), error.message);
    }

    fn document(&mut self, root: &Node) {
        if root.is_null() {
            return;
        }
        if let Some(items) = root.as_seq() {
            for item in items {
                self.native(item, None);
            }
        } else if root.as_map().is_none() {
            self.error(
                root.mark,
                format!("found {}, {NATIVE_HINT}", root.describe()),
            );
        } else if root.get("apiVersion").is_some() || root.get("kind").is_some() {
            self.manifest(root);
        } else if ["permits", "enrollments", "organizations"]
            .iter()
            .any(|k| root.get(k).is_some())
        {
            self.bundle(root);
        } else {
            self.native(root, None);
        }
    }

    /// A native object whose kind is told by its fields.
    fn native(&mut self, node: &Node, app: Option<&str>) {
        if node.as_map().is_none() {
            self.error(
                node.mark,
                format!("found {}, {NATIVE_HINT}", node.describe()),
            );
            return;
        }
        let kind = if node.get("permissionId").is_some() || node.get("permission").is_some() {
            Kind::Permit
        } else if node.get("slug").is_some() {
            Kind::Organization
        } else if node.get("role").is_some() {
            Kind::Enrollment
        } else {
            // A misspelled field that would have told the kind is the
            // likely cause: name it, and the field it misspells.
            let typo = node
                .as_map()
                .unwrap_or_default()
                .iter()
                .find_map(|(key, _)| {
                    let name = key.as_str()?;
                    let meant = suggest::closest(name, &KIND_FIELDS)?;
                    Some((key, name, meant))
                });
            match typo {
                Some((key, name, meant)) => self.error(
                    key.mark,
                    format!(
                        "cannot tell what this object is: unknown field `{name}` (did you mean `{meant}`?); {NATIVE_HINT}"
                    ),
                ),
                None => self.error(
                    node.mark,
                    format!("cannot tell what this object is: {NATIVE_HINT}"),
                ),
            }
            return;
        };
        self.object(kind, node, app, None);
    }

    fn bundle(&mut self, node: &Node) {
        let mut app = None;
        for (key, value) in node.as_map().unwrap_or_default() {
            let name = key.as_str().unwrap_or_default();
            if !BUNDLE_FIELDS.contains(&name) {
                self.unknown_field(key, "an app bundle", &BUNDLE_FIELDS);
            } else if name == "app" {
                match value.as_str() {
                    Some(text) => app = Some(text),
                    None => self.error(
                        value.mark,
                        format!(
                            "wrong type: found {}, expected the app name",
                            value.describe()
                        ),
                    ),
                }
            }
        }
        for (field, kind) in [
            ("organizations", Kind::Organization),
            ("permits", Kind::Permit),
            ("enrollments", Kind::Enrollment),
        ] {
            let Some(list) = node.get(field) else {
                continue;
            };
            if list.is_null() {
                continue;
            }
            let Some(items) = list.as_seq() else {
                self.error(
                    list.mark,
                    format!(
                        "wrong type: found {}, expected a list of {field}",
                        list.describe()
                    ),
                );
                continue;
            };
            for item in items {
                self.object(kind, item, app, None);
            }
        }
    }

    fn manifest(&mut self, node: &Node) {
        let mut ok = true;
        for (key, _) in node.as_map().unwrap_or_default() {
            if !MANIFEST_FIELDS.contains(&key.as_str().unwrap_or_default()) {
                self.unknown_field(key, "a manifest", &MANIFEST_FIELDS);
                ok = false;
            }
        }
        match node.get("apiVersion") {
            Some(v) if v.as_str() == Some(API_VERSION) => {}
            Some(v) => {
                self.error(
                    v.mark,
                    format!("unsupported apiVersion, expected `{API_VERSION}`"),
                );
                ok = false;
            }
            None => {
                self.error(node.mark, "missing field `apiVersion`");
                ok = false;
            }
        }
        let kind = match node.get("kind") {
            Some(v) => match v.as_str().and_then(Kind::parse) {
                Some(kind) => Some(kind),
                None => {
                    self.error(
                        v.mark,
                        "unknown kind, expected one of: Organization, Permit, Enrollment",
                    );
                    None
                }
            },
            None => {
                self.error(node.mark, "missing field `kind`");
                None
            }
        };
        let name = match node.get("metadata") {
            Some(meta_node) => match from_node::<Metadata>(meta_node) {
                Ok(meta) => match kubernetes_name(&meta.name) {
                    Ok(()) => Some(meta.name),
                    Err(message) => {
                        self.error(field_mark(meta_node, "name"), message);
                        None
                    }
                },
                Err(e) => {
                    self.de_error(meta_node.mark, e);
                    None
                }
            },
            None => {
                self.error(node.mark, "missing field `metadata`");
                None
            }
        };
        let Some(spec) = node.get("spec") else {
            self.error(node.mark, "missing field `spec`");
            return;
        };
        if let (true, Some(kind), Some(name)) = (ok, kind, name) {
            self.object(kind, spec, None, Some(&name));
        }
    }

    fn unknown_field(&mut self, key: &Node, what: &str, expected: &[&str]) {
        let name = key.as_str().unwrap_or("?");
        self.error(
            key.mark,
            format!(
                "unknown field `{name}` in {what}{}, expected one of: {}",
                suggest::hint(name, expected),
                expected.join(", ")
            ),
        );
    }

    /// An object of a known kind; `app` is inherited from a bundle, `name`
    /// comes from a manifest's `metadata.name`.
    fn object(&mut self, kind: Kind, node: &Node, app: Option<&str>, name: Option<&str>) {
        let before = self.diagnostics.len();
        let built = match kind {
            Kind::Permit => {
                from_node::<PermitSpec>(node).map(|spec| self.permit(node, spec, app, name))
            }
            Kind::Enrollment => {
                from_node::<EnrollmentSpec>(node).map(|spec| self.enrollment(node, spec, app, name))
            }
            Kind::Organization => from_node::<OrganizationSpec>(node)
                .map(|spec| self.organization(node, spec, app, name)),
        };
        match built {
            Err(e) => self.de_error(node.mark, e),
            Ok(Some((mut object, suspended))) if self.diagnostics.len() == before => {
                object.normalize();
                self.declarations.push(Declaration {
                    object: Arc::new(object),
                    origin: Origin {
                        file: self.file.clone(),
                        mark: node.mark,
                    },
                    suspended,
                    digest: None,
                });
            }
            Ok(_) => {}
        }
    }

    /// Checks `value` with `rule`, reporting at the field's place.
    fn check(
        &mut self,
        node: &Node,
        field: &str,
        value: &str,
        rule: fn(&str) -> Result<(), String>,
    ) {
        if let Err(message) = rule(value) {
            self.error(field_mark(node, field), message);
        }
    }

    fn check_list(
        &mut self,
        node: &Node,
        field: &str,
        values: &[String],
        rule: fn(&str) -> Result<(), String>,
    ) {
        for (i, value) in values.iter().enumerate() {
            if let Err(message) = rule(value) {
                let mark = node
                    .get(field)
                    .and_then(Node::as_seq)
                    .and_then(|items| items.get(i))
                    .map_or_else(|| field_mark(node, field), |n| n.mark);
                self.error(mark, message);
            }
        }
    }

    fn app(
        &mut self,
        node: &Node,
        own: Option<String>,
        inherited: Option<&str>,
        rule: fn(&str) -> Result<(), String>,
    ) -> String {
        let app = own
            .or_else(|| inherited.map(str::to_owned))
            .unwrap_or_else(|| DEFAULT_APP.to_owned());
        let at = node
            .get("app")
            .or_else(|| node.get("appHost"))
            .unwrap_or(node);
        if let Err(message) = rule(&app) {
            self.error(at.mark, message);
        }
        app
    }

    fn id(&mut self, node: &Node, own: Option<String>, name: Option<&str>) -> Option<String> {
        let id = own.or_else(|| name.map(str::to_owned))?;
        self.check(node, "id", &id, validate::id);
        Some(id)
    }

    fn permit(
        &mut self,
        node: &Node,
        spec: PermitSpec,
        app: Option<&str>,
        name: Option<&str>,
    ) -> Option<(Object, bool)> {
        let app = self.app(node, spec.app, app, validate::app);
        let field = if node.get("permissionId").is_some() {
            "permissionId"
        } else {
            "permission"
        };
        self.check(node, field, &spec.permission_id, validate::permission);
        self.check_list(node, "slugs", &spec.slugs, validate::slug);
        self.check_list(node, "roles", &spec.roles, validate::permit_role);
        if spec.slugs.is_empty() && spec.roles.is_empty() {
            self.error(
                node.mark,
                "a permit must grant something: give `slugs`, `roles` or both",
            );
        }
        let id = self.id(node, spec.id, name).unwrap_or_else(|| {
            let mut slugs = spec.slugs.clone();
            let mut roles = spec.roles.clone();
            slugs.sort_unstable();
            slugs.dedup();
            roles.sort_unstable();
            roles.dedup();
            derived_id(
                "perm-",
                &[&spec.permission_id, &slugs.join(","), &roles.join(",")],
            )
        });
        Some((
            Object::Permit(Permit {
                id: id.into(),
                app: app.into(),
                permission_id: spec.permission_id.into(),
                slugs: spec.slugs.into_iter().map(Into::into).collect(),
                roles: spec.roles.into_iter().map(Into::into).collect(),
            }),
            false,
        ))
    }

    fn enrollment(
        &mut self,
        node: &Node,
        spec: EnrollmentSpec,
        app: Option<&str>,
        name: Option<&str>,
    ) -> Option<(Object, bool)> {
        let app = self.app(node, spec.app, app, validate::enrollment_app);
        self.check(node, "role", &spec.role, validate::enrollment_role);
        let subject = match (&spec.user_id, &spec.contact_id) {
            (Some(user), None) => {
                self.check(node, "userId", user, validate::user_id);
                format!("user:{user}")
            }
            (None, Some(contact)) => {
                self.check(node, "contactId", contact, validate::contact_id);
                format!("contact:{contact}")
            }
            (Some(_), Some(_)) => {
                let mark = field_mark(node, "contactId").max(field_mark(node, "userId"));
                self.error(
                    mark,
                    "an enrollment has exactly one of `userId`, `contactId`, not both",
                );
                return None;
            }
            (None, None) => {
                self.error(
                    node.mark,
                    "an enrollment needs exactly one of `userId`, `contactId`",
                );
                return None;
            }
        };
        let id = self
            .id(node, spec.id, name)
            .unwrap_or_else(|| derived_id("enr-", &[&spec.role, &subject]));
        Some((
            Object::Enrollment(Enrollment {
                id: id.into(),
                app: app.into(),
                role: spec.role.into(),
                user_id: spec.user_id.map(Into::into),
                contact_id: spec.contact_id.map(Into::into),
            }),
            false,
        ))
    }

    fn organization(
        &mut self,
        node: &Node,
        spec: OrganizationSpec,
        app: Option<&str>,
        name: Option<&str>,
    ) -> Option<(Object, bool)> {
        let app = self.app(node, spec.app, app, validate::app);
        let Some(slug) = spec.slug.or_else(|| name.map(str::to_owned)) else {
            self.error(node.mark, "missing field `slug`");
            return None;
        };
        self.check(node, "slug", &slug, validate::org_slug);
        if let Some(display) = &spec.name {
            self.check(node, "name", display, validate::display_name);
        }
        self.check_list(
            node,
            "allowedModels",
            &spec.allowed_models,
            validate::model_name,
        );
        let member_nodes = node
            .get("members")
            .and_then(Node::as_seq)
            .unwrap_or_default();
        let mut seen: BTreeMap<(Option<&str>, Option<&str>, &str), usize> = BTreeMap::new();
        for (i, member) in spec.members.iter().enumerate() {
            let at = member_nodes.get(i).unwrap_or(node);
            match (&member.user_id, &member.contact_id) {
                (Some(user), None) => self.check(at, "userId", user, validate::user_id),
                (None, Some(contact)) => self.check(at, "contactId", contact, validate::contact_id),
                _ => self.error(
                    at.mark,
                    "a member needs exactly one of `userId`, `contactId`",
                ),
            }
            self.check(at, "role", &member.role, validate::member_role);
            let subject = (
                member.user_id.as_deref(),
                member.contact_id.as_deref(),
                member.role.as_str(),
            );
            if let Some(&first) = seen.get(&subject) {
                if spec.members[first] != *member {
                    let first_mark = member_nodes.get(first).map_or(node.mark, |n| n.mark);
                    self.error(
                        at.mark,
                        format!(
                            "member listed twice with role `{}` (first at line {}) and different settings",
                            member.role, first_mark.line
                        ),
                    );
                }
            } else {
                seen.insert(subject, i);
            }
        }
        Some((
            Object::Organization(Organization {
                slug,
                app,
                name: spec.name,
                budget: spec.budget,
                allowed_models: spec.allowed_models,
                members: spec.members,
            }),
            spec.gitops == Some(false),
        ))
    }
}

/// The place of `field` in a mapping, or of the mapping itself when absent.
fn field_mark(node: &Node, field: &str) -> Mark {
    node.get(field).map_or(node.mark, |n| n.mark)
}

/// `kubernetes_name` as a regular expression (with a length of at most 253),
/// for the schema of `metadata.name`.
const KUBERNETES_NAME: &str =
    r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$";

/// Kubernetes object names (RFC 1123 subdomains).
fn kubernetes_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .split('.')
            .all(|label| validate::org_slug(label).is_ok());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "metadata.name `{name}` is not a valid Kubernetes name; put an id like this in `spec.id`"
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::model::arbitrary::{apply, change, file};

    proptest! {
        /// What `accord validate` keeps (keys and places, not objects) finds
        /// exactly the errors, or the counts, a whole parse finds.
        #[test]
        fn a_tally_finds_what_a_whole_parse_finds(
            changes in prop::collection::vec(change(), 1..10)
        ) {
            let mut tree = BTreeMap::new();
            for change in &changes {
                apply(&mut tree, change);
            }
            let files: Vec<SourceFile> = tree.iter().map(|(p, t)| file(p, t)).collect();
            let mut tally = Tally::default();
            for f in &files {
                tally.add(tally_file(f, Limits::default()));
            }
            match (parse_tree(&files, Limits::default()), tally.finish()) {
                (Ok(state), Ok(counts)) => {
                    prop_assert_eq!(counts.objects(), state.len());
                    prop_assert_eq!(counts.organizations, state.count(Kind::Organization));
                    prop_assert_eq!(counts.permits, state.count(Kind::Permit));
                    prop_assert_eq!(counts.enrollments, state.count(Kind::Enrollment));
                    prop_assert_eq!(counts.files, files.len());
                }
                (Err(whole), Err(tallied)) => prop_assert_eq!(whole, tallied),
                (whole, tallied) => prop_assert!(false, "{whole:?} against {tallied:?}"),
            }
        }
    }
}
