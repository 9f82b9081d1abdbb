//! The JSON Schema (draft 2020-12) of a source's YAML documents, as
//! `accord schema` prints it for editors. The objects' schemas are derived
//! from the spec types the parser deserializes (the CRDs come from the same
//! types); around them go the four document shapes of `parse.rs`. The
//! parser stays the authority: tests/schema.rs checks the two agree.

use schemars::generate::SchemaSettings;
use serde_json::{json, Map, Value};

use super::parse::Metadata;
use super::validate::patterns;
use super::{EnrollmentSpec, Kind, OrganizationSpec, PermitSpec, API_VERSION};

/// The other spellings serde accepts for a field (`#[serde(alias)]`), which
/// schemars leaves out: (type, alias, field). tests/schema.rs checks this
/// against the names the types accept.
const ALIASES: [(&str, &str, &str); 4] = [
    ("PermitSpec", "permission", "permissionId"),
    ("PermitSpec", "appHost", "app"),
    ("EnrollmentSpec", "appHost", "app"),
    ("OrganizationSpec", "appHost", "app"),
];

/// The schema as a JSON value.
pub fn file_schema() -> Value {
    let mut generator = SchemaSettings::draft2020_12().into_generator();
    let permit = generator.subschema_for::<PermitSpec>();
    let enrollment = generator.subschema_for::<EnrollmentSpec>();
    let organization = generator.subschema_for::<OrganizationSpec>();
    let metadata = generator.subschema_for::<Metadata>();
    let mut defs = generator.take_definitions(true);
    for (owner, alias, field) in ALIASES {
        if let Some(Value::Object(schema)) = defs.get_mut(owner) {
            add_alias(schema, alias, field);
        }
    }
    for schema in defs.values_mut().filter_map(Value::as_object_mut) {
        require_given(schema);
    }

    // Native objects are told apart by their fields, as the parser tells
    // them: each spec requires the fields that make it what it is, and no
    // spec allows another's, so exactly one branch can match.
    let mut native_organization = json!({
        "description": "An organization in a native file, list or app bundle, where `slug` is required (a manifest may leave it to `metadata.name`).",
        "allOf": [organization],
        "required": ["slug"],
    });
    if let (Value::Object(native), Some(Value::Object(properties))) = (
        &mut native_organization,
        defs.get("OrganizationSpec")
            .and_then(|s| s.get("properties")),
    ) {
        given(native, properties);
    }
    defs.insert("NativeOrganization".into(), native_organization);
    defs.insert(
        "NativeObject".into(),
        json!({
            "description": "A Permit (with `permissionId`), an Enrollment (with `role` and `userId` or `contactId`) or an Organization (with `slug`).",
            "oneOf": [permit, enrollment, {"$ref": "#/$defs/NativeOrganization"}],
        }),
    );

    // `metadata.name` stands in for the id (an Organization's slug) that
    // `spec` does not give, so it must then also be a valid one.
    let by_kind: Vec<Value> = [
        (Kind::Organization, &organization, "OrganizationSpec", "slug"),
        (Kind::Permit, &permit, "PermitSpec", "id"),
        (Kind::Enrollment, &enrollment, "EnrollmentSpec", "id"),
    ]
    .iter()
    .map(|(kind, spec, def, id)| {
        let id_pattern = &defs[*def]["properties"][*id]["pattern"];
        json!({
            "if": {"properties": {"kind": {"const": kind.as_str()}}, "required": ["kind"]},
            "then": {
                "properties": {"spec": spec},
                "anyOf": [
                    {"properties": {"spec": {"required": [id], "properties": {*id: {"type": "string"}}}}},
                    {"properties": {"metadata": {"properties": {"name": {"pattern": id_pattern}}}}},
                ],
            },
        })
    })
    .collect();
    defs.insert(
        "Manifest".into(),
        json!({
            "description": "A typed manifest, the same shape as the custom resource: the same file works with `kubectl apply`.",
            "type": "object",
            "properties": {
                "apiVersion": {
                    "description": "The API group and version of accord's objects.",
                    "const": API_VERSION,
                },
                "kind": {
                    "description": "What the object is, and so what `spec` holds.",
                    "enum": Kind::ALL.map(Kind::as_str),
                },
                "metadata": metadata,
                "spec": {
                    "description": "The object: the spec of its `kind`.",
                    "type": "object",
                },
                "status": {
                    "description": "Written by the controller in a cluster; a file source ignores it.",
                },
            },
            "required": ["apiVersion", "kind", "metadata", "spec"],
            "additionalProperties": false,
            "allOf": by_kind,
        }),
    );

    // An item that names no app takes the bundle's; `*` (every app) is
    // only an enrollment's, so a bundle of app `*` needs its permits and
    // organizations to name their own.
    let own_app = json!({"anyOf": [
        {"required": ["app"], "properties": {"app": {"type": "string"}}},
        {"required": ["appHost"], "properties": {"appHost": {"type": "string"}}},
    ]});
    defs.insert(
        "AppBundle".into(),
        json!({
            "description": "An app bundle: the objects of one app, which they take unless they name one themselves.",
            "type": "object",
            "properties": {
                "app": {
                    "description": "The app of the items that name none; `*` (every app) only for enrollments.",
                    "type": "string",
                    "pattern": patterns::ENROLLMENT_APP,
                },
                "permits": {
                    "description": "Permits of the app.",
                    "type": ["array", "null"],
                    "items": permit,
                },
                "enrollments": {
                    "description": "Enrollments of the app.",
                    "type": ["array", "null"],
                    "items": enrollment,
                },
                "organizations": {
                    "description": "Organizations of the app.",
                    "type": ["array", "null"],
                    "items": {"$ref": "#/$defs/NativeOrganization"},
                },
            },
            "additionalProperties": false,
            "anyOf": [
                {"required": ["permits"]},
                {"required": ["enrollments"]},
                {"required": ["organizations"]},
            ],
            "if": {"properties": {"app": {"const": "*"}}, "required": ["app"]},
            "then": {
                "properties": {
                    "permits": {"items": own_app},
                    "organizations": {"items": own_app},
                },
            },
        }),
    );

    json!({
        "$schema": schemars::consts::meta_schemas::DRAFT2020_12,
        "description": "One YAML document of an accord source: a typed manifest, a native object, a list of native objects (kinds may be mixed) or an app bundle.",
        // The manifest not first: yaml-language-server 2 then completes
        // only its fields in an empty document.
        "oneOf": [
            {"$ref": "#/$defs/NativeObject"},
            {
                "description": "A list of native objects; kinds may be mixed.",
                "type": "array",
                "items": {"$ref": "#/$defs/NativeObject"},
            },
            {"$ref": "#/$defs/AppBundle"},
            {"$ref": "#/$defs/Manifest"},
            {"description": "An empty document.", "type": "null"},
        ],
        "$defs": Value::Object(defs),
    })
}

/// The schema as `accord schema` prints it and `schema/accord.schema.json`
/// holds it.
pub fn file_schema_json() -> String {
    let mut text = serde_json::to_string_pretty(&file_schema()).unwrap_or_default();
    text.push('\n');
    text
}

/// Lets `alias` stand for `field` in an object schema: the same schema under
/// the other name, and never both (serde refuses a field given twice).
fn add_alias(schema: &mut Map<String, Value>, alias: &str, field: &str) {
    let Some(Value::Object(properties)) = schema.get_mut("properties") else {
        return;
    };
    let Some(mut property) = properties.get(field).cloned() else {
        return;
    };
    if let Value::Object(property) = &mut property {
        property.insert(
            "description".into(),
            format!("Another spelling of `{field}`.").into(),
        );
    }
    properties.insert(alias.into(), property);
    let mut required = false;
    if let Some(Value::Array(names)) = schema.get_mut("required") {
        let before = names.len();
        names.retain(|name| name != field);
        required = names.len() != before;
        if names.is_empty() {
            schema.remove("required");
        }
    }
    let rule = if required {
        json!({"oneOf": [{"required": [field]}, {"required": [alias]}]})
    } else {
        json!({"not": {"required": [field, alias]}})
    };
    match schema.get_mut("allOf") {
        Some(Value::Array(rules)) => rules.push(rule),
        _ => {
            schema.insert("allOf".into(), json!([rule]));
        }
    }
}

/// serde reads a null `Option` and an empty `Vec` (both defaulted) as
/// absent, so where an object's rule (a `oneOf` or `anyOf` of `required`)
/// asks for a field, it asks for one that is neither null nor empty: the
/// parser refuses `userId: null` as the only subject, or `slugs: []` as the
/// only grant.
fn require_given(schema: &mut Map<String, Value>) {
    let Some(Value::Object(properties)) = schema.get("properties") else {
        return;
    };
    let properties = properties.clone();
    for combinator in ["oneOf", "anyOf"] {
        if let Some(Value::Array(branches)) = schema.get_mut(combinator) {
            for branch in branches.iter_mut().filter_map(Value::as_object_mut) {
                given(branch, &properties);
            }
        }
    }
}

/// Narrows each field `branch` requires to a given value (see
/// `require_given`); `properties` are those of the object it belongs to.
fn given(branch: &mut Map<String, Value>, properties: &Map<String, Value>) {
    let Some(Value::Array(names)) = branch.get("required") else {
        return;
    };
    let mut narrowed = Map::new();
    for name in names.iter().filter_map(Value::as_str) {
        let rule = match properties.get(name).and_then(|p| p.get("type")) {
            Some(Value::Array(types)) if types.iter().any(|t| t == "null") => {
                let types: Vec<&Value> = types.iter().filter(|t| *t != "null").collect();
                match types.as_slice() {
                    [only] => json!({"type": only}),
                    _ => json!({"type": types}),
                }
            }
            Some(Value::String(t)) if t == "array" => json!({"minItems": 1}),
            _ => continue,
        };
        narrowed.insert(name.to_owned(), rule);
    }
    if !narrowed.is_empty() {
        branch.insert("properties".into(), Value::Object(narrowed));
    }
}
