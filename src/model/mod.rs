//! The objects accord manages — organizations, permits and enrollments — in the
//! shape users write them (`*Spec`) and in the normalized shape that is stored,
//! compared and hashed. No I/O here.

#[cfg(test)]
pub(crate) mod arbitrary;
mod canonical;
pub mod de;
pub mod incremental;
pub mod parse;
pub mod render;
pub mod schema;
pub mod suggest;
pub mod validate;
pub mod yaml;

use std::fmt;
use std::sync::Arc;

use compact_str::CompactString;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use canonical::Canonical;
pub use parse::{parse_tree, parse_tree_for_plan, Diagnostic, SourceFile};
pub use yaml::{Limits, Mark};

/// The app of an object that names none.
pub const DEFAULT_APP: &str = "unnamed";
/// The `apiVersion` of typed manifests (and of the CRDs).
pub const API_VERSION: &str = "accord.dev/v1alpha1";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Kind {
    Organization,
    Permit,
    Enrollment,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Organization, Kind::Permit, Kind::Enrollment];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Organization => "Organization",
            Kind::Permit => "Permit",
            Kind::Enrollment => "Enrollment",
        }
    }

    pub fn parse(text: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A map by object key with a fast (non-cryptographic) hasher: keys come
/// from our own parsing and database, and lookups are the hot path of a sync.
pub type KeyMap<V> = rustc_hash::FxHashMap<Key, V>;

/// The identity of an object: `(kind, app, id)`; an organization's id is its slug.
/// App and id are kept inline up to 24 bytes (which covers host names and
/// ids of ordinary length): a key then needs no allocation, and comparing
/// two, which every lookup in a map of 100k rows does, reads no memory
/// beyond the keys themselves.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub kind: Kind,
    pub app: CompactString,
    pub id: CompactString,
}

/// A content hash as `Object::content_hash` writes it (32 lowercase hex
/// digits) back to its bytes; any other text (a hand edit) is `None`, which
/// matches no object. Read for every row a load reads, so without a branch
/// per digit: a table lookup, and one check at the end (random digits make
/// a branch per digit mispredict).
pub fn parse_digest(text: &str) -> Option<[u8; 16]> {
    const INVALID: u8 = 0x10;
    const VALUES: [u8; 256] = {
        let mut values = [INVALID; 256];
        let mut digit = 0;
        while digit < 16 {
            values[b"0123456789abcdef"[digit] as usize] = digit as u8;
            digit += 1;
        }
        values
    };
    let text: &[u8; 32] = text.as_bytes().try_into().ok()?;
    let mut digest = [0u8; 16];
    let mut invalid = 0;
    for (byte, pair) in digest.iter_mut().zip(text.chunks_exact(2)) {
        let (high, low) = (VALUES[usize::from(pair[0])], VALUES[usize::from(pair[1])]);
        invalid |= high | low;
        *byte = high << 4 | (low & 0x0f);
    }
    (invalid & INVALID == 0).then_some(digest)
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.app, self.id)
    }
}

// ---- the shapes users write --------------------------------------------------

/// A permission grant, as written in a file or a `Permit` manifest's `spec`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("anyOf" = [{"required": ["slugs"]}, {"required": ["roles"]}]))]
pub struct PermitSpec {
    /// Unique per app; defaults to the manifest's name, else derived from the content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = validate::patterns::ID))]
    pub id: Option<String>,
    /// `service:action` or `service:entity:action`; the last segment may be `*`.
    #[serde(alias = "permission")]
    #[schemars(regex(pattern = validate::patterns::PERMISSION))]
    pub permission_id: String,
    /// Callers (users or service accounts) granted directly.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(regex(pattern = validate::patterns::SLUG)))]
    pub slugs: Vec<String>,
    /// Roles granted, e.g. `user-svc:org:*:admin`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(regex(pattern = validate::patterns::PERMIT_ROLE), length(max = 512)))]
    pub roles: Vec<String>,
    /// The tenant; the namespace's `accord.dev/app` annotation, else `unnamed`, when absent.
    #[serde(default, alias = "appHost", skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = validate::patterns::APP))]
    pub app: Option<String>,
}

/// A role assignment to one user or contact (or a wildcard of contacts).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("oneOf" = [{"required": ["userId"]}, {"required": ["contactId"]}]))]
pub struct EnrollmentSpec {
    /// Unique per app; defaults to the manifest's name, else derived from the content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = validate::patterns::ID))]
    pub id: Option<String>,
    /// `service:role` or `user-svc:org:<org>:<role>`.
    #[schemars(regex(pattern = validate::patterns::ENROLLMENT_ROLE), length(max = 512))]
    pub role: String,
    /// Exactly one of `userId`, `contactId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = validate::patterns::USER_ID))]
    pub user_id: Option<String>,
    /// An e-mail-like contact, `*` (everyone) or `*@domain`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = validate::patterns::CONTACT_ID), length(max = 320))]
    pub contact_id: Option<String>,
    /// The tenant; the namespace's `accord.dev/app` annotation, else `unnamed`,
    /// when absent. `*` makes the role hold in every app.
    #[serde(default, alias = "appHost", skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = validate::patterns::ENROLLMENT_APP))]
    pub app: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OrganizationSpec {
    /// Required in native files; a manifest may leave it to `metadata.name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = validate::patterns::ORG_SLUG))]
    pub slug: Option<String>,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The tenant; the namespace's `accord.dev/app` annotation, else `unnamed`, when absent.
    #[serde(default, alias = "appHost", skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = validate::patterns::APP))]
    pub app: Option<String>,
    /// The organization's token budget; none when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<Budget>,
    /// The models the organization may use, e.g. `gpt-4o`; a set (order and
    /// duplicates do not matter).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(regex(pattern = validate::patterns::MODEL_NAME)))]
    pub allowed_models: Vec<String>,
    /// Each member is granted `user-svc:org:<slug>:<role>`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<Member>,
    /// `false` suspends reconciliation of this organization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gitops: Option<bool>,
}

#[derive(
    Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Budget {
    /// Tokens the organization may use per month.
    pub monthly_tokens: u64,
}

/// A member of an organization: grants `user-svc:org:<slug>:<role>`.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("oneOf" = [{"required": ["userId"]}, {"required": ["contactId"]}]))]
pub struct Member {
    /// An e-mail-like contact; exactly one of `contactId`, `userId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = validate::patterns::CONTACT_ID), length(max = 320))]
    pub contact_id: Option<String>,
    /// A user id; exactly one of `userId`, `contactId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = validate::patterns::USER_ID))]
    pub user_id: Option<String>,
    /// `admin`, `user` or another role name.
    #[schemars(regex(pattern = validate::patterns::MEMBER_ROLE))]
    pub role: String,
    /// Tokens this member may use, a cap within the organization's budget;
    /// none when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_limit: Option<u64>,
}

// ---- the normalized shapes ---------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Permit {
    pub id: CompactString,
    pub app: CompactString,
    pub permission_id: CompactString,
    /// Sorted and without duplicates: lists are sets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slugs: Vec<CompactString>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<CompactString>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Enrollment {
    pub id: CompactString,
    pub app: CompactString,
    pub role: CompactString,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<CompactString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_id: Option<CompactString>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Organization {
    pub slug: String,
    pub app: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<Budget>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_models: Vec<String>,
    /// Sorted by subject and role, without duplicates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<Member>,
}

/// One object in normalized form: what is stored, compared and hashed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Object {
    Organization(Organization),
    Permit(Permit),
    Enrollment(Enrollment),
}

impl Object {
    pub fn kind(&self) -> Kind {
        match self {
            Object::Organization(_) => Kind::Organization,
            Object::Permit(_) => Kind::Permit,
            Object::Enrollment(_) => Kind::Enrollment,
        }
    }

    pub fn app(&self) -> &str {
        match self {
            Object::Organization(o) => &o.app,
            Object::Permit(p) => &p.app,
            Object::Enrollment(e) => &e.app,
        }
    }

    pub fn id(&self) -> &str {
        match self {
            Object::Organization(o) => &o.slug,
            Object::Permit(p) => &p.id,
            Object::Enrollment(e) => &e.id,
        }
    }

    pub fn key(&self) -> Key {
        Key {
            kind: self.kind(),
            app: self.app().into(),
            id: self.id().into(),
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// A stable hash of the content, recorded with every row accord writes so
    /// that a later hand edit is told apart from a new commit. Fed field by
    /// field (length-prefixed) rather than through JSON: it runs for every
    /// live row on every sync.
    pub fn content_hash(&self) -> String {
        hex::encode(self.digest())
    }

    /// The content hash as bytes (`content_hash` is its hex form): the hash
    /// of the object's canonical bytes.
    pub fn digest(&self) -> [u8; 16] {
        Canonical::digest_of(self)
    }

    /// Puts lists in canonical order so that order and duplicates carry no meaning.
    pub fn normalize(&mut self) {
        fn set<T: Ord>(list: &mut Vec<T>) {
            list.sort_unstable();
            list.dedup();
        }
        match self {
            Object::Permit(p) => {
                set(&mut p.slugs);
                set(&mut p.roles);
            }
            Object::Enrollment(_) => {}
            Object::Organization(o) => {
                set(&mut o.allowed_models);
                o.members.sort();
                o.members.dedup();
            }
        }
    }
}

/// A short stable id for an object declared without one, derived from the
/// fields that make it what it is, so the same grant keeps its id across commits.
pub fn derived_id(prefix: &str, parts: &[&str]) -> String {
    let mut hasher = blake3::Hasher::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update(b"\n");
    }
    format!("{prefix}{}", &hasher.finalize().to_hex()[..16])
}

/// Where a declaration was read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub file: Arc<str>,
    pub mark: Mark,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.mark)
    }
}

/// An object as declared by a source.
#[derive(Clone, Debug, PartialEq)]
pub struct Declaration {
    /// Shared with the plan's changes: a first sync makes one per object,
    /// and would otherwise copy every object's strings into it.
    pub object: Arc<Object>,
    pub origin: Origin,
    /// `gitops: false` on an organization: accord leaves it alone.
    pub suspended: bool,
    /// The object's content hash (`Object::digest`), when the tree was
    /// parsed for a plan (`parse_tree_for_plan`): taken right after the
    /// object is built, while its strings are still in the cache, so a plan
    /// compares 16 bytes per row instead of encoding 100k scattered objects.
    pub digest: Option<[u8; 16]>,
}

/// Everything one source declares, by key.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DesiredState {
    /// Hashed, not ordered: a sync looks every key up; output is sorted where shown.
    pub objects: KeyMap<Declaration>,
}

impl DesiredState {
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    pub fn count(&self, kind: Kind) -> usize {
        self.objects.keys().filter(|k| k.kind == kind).count()
    }
}

#[cfg(test)]
mod tests {
    use super::parse_digest;

    #[test]
    fn a_recorded_hash_reads_back_only_as_accord_writes_it() {
        let written = "2d1b25320dd2c18d48b42a2d1d3d9894";
        let digest = parse_digest(written).expect("accord's own form");
        assert_eq!(hex::encode(digest), written);
        for edited in [
            "2D1B25320DD2C18D48B42A2D1D3D9894",
            "2d1b25320dd2c18d48b42a2d1d3d989",
            "2d1b25320dd2c18d48b42a2d1d3d98945",
            "2d1b25320dd2c18d48b42a2d1d3d989g",
            "",
        ] {
            assert_eq!(parse_digest(edited), None, "{edited:?}");
        }
    }
}
