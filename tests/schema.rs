//! The JSON Schema of `accord schema`: the committed file is what it prints,
//! every example validates, and on good and bad documents the schema says
//! what the parser says — checked with the `jsonschema` crate and with
//! Python's `jsonschema`, two independent validators.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use accord::model::de::from_node;
use accord::model::schema::file_schema;
use accord::model::{parse_tree, yaml, Limits, SourceFile};
use serde_json::{json, Value};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn validator() -> jsonschema::Validator {
    let schema = file_schema();
    jsonschema::meta::validate(&schema).unwrap_or_else(|e| panic!("not a valid schema: {e}"));
    jsonschema::draft202012::new(&schema).unwrap_or_else(|e| panic!("{e}"))
}

/// Each document of a YAML stream as JSON, the way an editor sees it (an
/// empty document is null).
fn documents(text: &str) -> Vec<Value> {
    let loaded = yaml::load(text, Limits::default()).unwrap_or_else(|e| panic!("{e:?}"));
    loaded
        .iter()
        .map(|document| match &document.root {
            Some(root) => from_node::<Value>(root).unwrap_or_else(|e| panic!("{e}: {text}")),
            None => Value::Null,
        })
        .collect()
}

/// Whether the parser accepts `text` as a file of its own.
fn parser_accepts(text: &str) -> Result<(), String> {
    let file = SourceFile {
        path: Arc::from("case.yaml"),
        bytes: text.as_bytes().to_vec(),
    };
    match parse_tree(&[file], Limits::default()) {
        Ok(_) => Ok(()),
        Err(errors) => Err(errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")),
    }
}

fn schema_errors(validator: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    validator
        .iter_errors(instance)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path
            .extension()
            .is_some_and(|ext| ext == "yaml" || ext == "yml")
        {
            out.push(path);
        }
    }
}

/// Every document of `examples/config/` and `examples/kubernetes/` (not
/// `examples/accord.yaml`, the controller's configuration), by file.
fn examples() -> Vec<(PathBuf, Vec<Value>)> {
    let mut files = Vec::new();
    for dir in ["examples/config", "examples/kubernetes"] {
        yaml_files(&repo().join(dir), &mut files);
    }
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("read example");
            (path, documents(&text))
        })
        .collect()
}

const GOOD: &[(&str, &str)] = &[
    (
        "a typed manifest with namespace, labels, annotations and status",
        "apiVersion: accord.dev/v1alpha1\nkind: Permit\nmetadata:\n  name: payment-api.access\n  namespace: default\n  labels: {team: payments}\n  annotations: {note: x}\nspec:\n  permissionId: payment-svc:process\n  slugs: [order-service]\nstatus: {conditions: []}\n",
    ),
    (
        "an Organization manifest leaving the slug to metadata.name",
        "apiVersion: accord.dev/v1alpha1\nkind: Organization\nmetadata: {name: acme}\nspec:\n  name: Acme\n  budget: {monthlyTokens: 1000}\n  members:\n    - {userId: u1, role: admin, tokenLimit: 10}\n",
    ),
    (
        "an Enrollment manifest with an id that is no Kubernetes name",
        "apiVersion: accord.dev/v1alpha1\nkind: Enrollment\nmetadata: {name: admin}\nspec: {id: Admin_1, role: 'svc:admin', contactId: 'a@example.com'}\n",
    ),
    (
        "a manifest whose name is no id, but whose spec gives one",
        "apiVersion: accord.dev/v1alpha1\nkind: Organization\nmetadata: {name: acme.example}\nspec: {slug: acme}\n",
    ),
    (
        "the 1Backend spelling `permission`",
        "permission: billing-svc:invoice:read\nroles: [billing-svc:viewer]\n",
    ),
    (
        "`permission` in a manifest's spec",
        "apiVersion: accord.dev/v1alpha1\nkind: Permit\nmetadata: {name: p}\nspec: {permission: 'a:b', roles: ['a:c']}\n",
    ),
    (
        "the 1Backend spelling `appHost` on a permit",
        "permissionId: a:b\nslugs: [s]\nappHost: tenant.example.com\n",
    ),
    (
        "`appHost: '*'` on an enrollment",
        "role: a:admin\nuserId: u1\nappHost: '*'\n",
    ),
    (
        "`appHost` on an organization",
        "slug: finance\nappHost: tenant.example.com\n",
    ),
    (
        "an enrollment with a contact and a null userId",
        "role: a:reader\nuserId: ~\ncontactId: x@example.com\n",
    ),
    (
        "a permit with an empty list beside a full one",
        "permissionId: a:b\nslugs: []\nroles: [a:c]\n",
    ),
    (
        "an enrollment with a contact",
        "role: a:reader\ncontactId: '*@example.com'\n",
    ),
    (
        "a list of mixed kinds",
        "- {permissionId: 'a:b', roles: ['a:c']}\n- {role: 'a:c', userId: u1}\n- {slug: finance, name: Finance, gitops: false}\n",
    ),
    ("an empty list", "[]\n"),
    ("an empty document", "---\n"),
    ("an explicit null document", "~\n"),
    (
        "an app bundle",
        "app: tenant.example.com\npermits:\n  - {permissionId: 'a:b', slugs: [s]}\nenrollments:\n  - {role: 'a:b', contactId: 'x@example.com'}\norganizations:\n  - {slug: finance}\n",
    ),
    (
        "an app bundle with an empty list",
        "app: tenant.example.com\npermits:\nenrollments:\n  - {role: 'a:b', userId: u1}\n",
    ),
    ("an app bundle without app", "permits: [{permissionId: 'a:b', slugs: [s]}]\n"),
    (
        "an app bundle of every app whose permit names its own",
        "app: '*'\nenrollments: [{role: 'a:b', userId: u1}]\npermits: [{permissionId: 'a:b', slugs: [s], appHost: one.example.com}]\n",
    ),
];

const BAD: &[(&str, &str)] = &[
    (
        "a misspelled permissionId",
        "permisionId: billing-svc:invoice:read\nroles: [billing-svc:viewer]\n",
    ),
    (
        "a misspelled field of a permit",
        "permissionId: a:b\nrole: [a:c]\n",
    ),
    (
        "a misspelled field in a manifest's spec",
        "apiVersion: accord.dev/v1alpha1\nkind: Permit\nmetadata: {name: p}\nspec: {permissionId: 'a:b', slug: [s]}\n",
    ),
    ("a permit with neither slugs nor roles", "permissionId: a:b\n"),
    (
        "a permit manifest with neither slugs nor roles",
        "apiVersion: accord.dev/v1alpha1\nkind: Permit\nmetadata: {name: p}\nspec: {permissionId: 'a:b'}\n",
    ),
    (
        "both `permission` and `permissionId`",
        "permissionId: a:b\npermission: a:b\nslugs: [s]\n",
    ),
    (
        "both `app` and `appHost`",
        "permissionId: a:b\nslugs: [s]\napp: one\nappHost: two\n",
    ),
    (
        "an enrollment with both userId and contactId",
        "role: a:admin\nuserId: u1\ncontactId: a@example.com\n",
    ),
    (
        "an enrollment manifest with both userId and contactId",
        "apiVersion: accord.dev/v1alpha1\nkind: Enrollment\nmetadata: {name: e}\nspec: {role: 'a:b', userId: u1, contactId: 'a@example.com'}\n",
    ),
    ("an enrollment with neither userId nor contactId", "role: a:admin\n"),
    ("an enrollment whose only subject is null", "role: a:admin\nuserId: ~\n"),
    ("a permit whose only grant is an empty list", "permissionId: a:b\nslugs: []\n"),
    ("an organization whose slug is null", "slug: ~\nname: Finance\n"),
    (
        "a member with both userId and contactId",
        "slug: acme\nmembers: [{userId: u1, contactId: 'a@example.com', role: admin}]\n",
    ),
    ("a list where a string belongs", "permissionId: a:b\nslugs: s\n"),
    ("a number where a string belongs", "permissionId: a:b\nslugs: [s]\nid: 42\n"),
    ("a string where a number belongs", "slug: acme\nbudget: {monthlyTokens: lots}\n"),
    ("a string where a boolean belongs", "slug: acme\ngitops: no\n"),
    ("a negative token limit", "slug: acme\nmembers: [{userId: u1, role: admin, tokenLimit: -1}]\n"),
    ("a permission that breaks the pattern", "permissionId: payments\nslugs: [s]\n"),
    ("a permit of every app", "permissionId: a:b\nslugs: [s]\napp: '*'\n"),
    (
        "an unknown kind in a manifest",
        "apiVersion: accord.dev/v1alpha1\nkind: Permission\nmetadata: {name: p}\nspec: {permissionId: 'a:b', slugs: [s]}\n",
    ),
    (
        "a spec of another kind",
        "apiVersion: accord.dev/v1alpha1\nkind: Organization\nmetadata: {name: p}\nspec: {permissionId: 'a:b', slugs: [s]}\n",
    ),
    (
        "another apiVersion",
        "apiVersion: accord.dev/v1\nkind: Permit\nmetadata: {name: p}\nspec: {permissionId: 'a:b', slugs: [s]}\n",
    ),
    ("a kind without apiVersion", "kind: Permit\nmetadata: {name: p}\nspec: {permissionId: 'a:b', slugs: [s]}\n"),
    (
        "a manifest without metadata",
        "apiVersion: accord.dev/v1alpha1\nkind: Permit\nspec: {permissionId: 'a:b', slugs: [s]}\n",
    ),
    (
        "a manifest without spec",
        "apiVersion: accord.dev/v1alpha1\nkind: Permit\nmetadata: {name: p}\n",
    ),
    (
        "an unknown field in a manifest",
        "apiVersion: accord.dev/v1alpha1\nkind: Permit\nmetadata: {name: p}\nspec: {permissionId: 'a:b', slugs: [s]}\nspecs: {}\n",
    ),
    (
        "an unknown field in metadata",
        "apiVersion: accord.dev/v1alpha1\nkind: Permit\nmetadata: {name: p, uid: x}\nspec: {permissionId: 'a:b', slugs: [s]}\n",
    ),
    (
        "a name that is no Kubernetes name",
        "apiVersion: accord.dev/v1alpha1\nkind: Permit\nmetadata: {name: Payment_API}\nspec: {permissionId: 'a:b', slugs: [s]}\n",
    ),
    (
        "an Organization manifest whose name is no slug and whose spec gives none",
        "apiVersion: accord.dev/v1alpha1\nkind: Organization\nmetadata: {name: acme.example}\nspec: {name: Acme}\n",
    ),
    (
        "a bundle with an unknown key",
        "app: tenant.example.com\npermits: [{permissionId: 'a:b', slugs: [s]}]\nroles: [a:b]\n",
    ),
    (
        "a bundle spelling its app `appHost`",
        "appHost: tenant.example.com\npermits: [{permissionId: 'a:b', slugs: [s]}]\n",
    ),
    (
        "a bundle list that is a mapping",
        "app: tenant.example.com\npermits: {permissionId: 'a:b', slugs: [s]}\n",
    ),
    (
        "a bundle organization without slug",
        "app: tenant.example.com\norganizations: [{name: Finance}]\n",
    ),
    (
        "a bundle of every app with a permit that names none",
        "app: '*'\npermits: [{permissionId: 'a:b', slugs: [s]}]\n",
    ),
    (
        "a bundle of every app with a permit whose app is null",
        "app: '*'\npermits: [{permissionId: 'a:b', slugs: [s], app: ~}]\n",
    ),
    ("an app alone", "app: tenant.example.com\n"),
    ("a mapping of no kind", "name: Finance\n"),
    ("an object with the fields of two kinds", "slug: acme\nrole: a:b\nuserId: u1\n"),
    ("a scalar document", "just text\n"),
    ("a list holding a scalar", "- {slug: acme}\n- acme\n"),
    ("a list holding a bundle", "- {app: x, permits: [{permissionId: 'a:b', slugs: [s]}]}\n"),
];

/// Every case as (name, document, whether it is valid), each file's
/// documents the parser's verdict.
fn cases() -> Vec<(String, Value, bool)> {
    let mut cases = Vec::new();
    for (valid, list) in [(true, GOOD), (false, BAD)] {
        for (name, text) in list {
            let verdict = parser_accepts(text);
            assert_eq!(
                verdict.is_ok(),
                valid,
                "the parser on {name}: {verdict:?}\n{text}"
            );
            let mut docs = documents(text);
            assert_eq!(docs.len(), 1, "{name}: one document");
            cases.push((name.to_string(), docs.remove(0), valid));
        }
    }
    for (path, docs) in examples() {
        for (i, doc) in docs.into_iter().enumerate() {
            cases.push((format!("{} #{}", path.display(), i + 1), doc, true));
        }
    }
    cases
}

#[test]
fn committed_schema_matches_the_generated_one() {
    let output = Command::new(env!("CARGO_BIN_EXE_accord"))
        .arg("schema")
        .output()
        .expect("accord runs");
    assert!(output.status.success(), "{output:?}");
    let generated = String::from_utf8(output.stdout).expect("utf-8");
    let committed = std::fs::read_to_string(repo().join("schema/accord.schema.json"))
        .expect("schema/accord.schema.json exists");
    assert!(
        generated == committed,
        "schema/accord.schema.json is stale: run `cargo run -- schema > schema/accord.schema.json`"
    );
    let parsed: Value = serde_json::from_str(&generated).expect("JSON");
    assert_eq!(parsed, file_schema());
    assert_eq!(
        parsed["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
}

#[test]
fn a_closed_pipe_is_no_error() {
    // The reader is gone before accord writes, so the write meets a closed pipe.
    let output = Command::new("bash")
        .args([
            "-c",
            "set -o pipefail; { sleep 0.2; \"$0\" schema; } | true",
            env!("CARGO_BIN_EXE_accord"),
        ])
        .output()
        .expect("bash runs");
    assert!(output.status.success(), "{output:?}");
    assert!(output.stderr.is_empty(), "{output:?}");
}

#[test]
fn every_example_validates() {
    let validator = validator();
    let examples = examples();
    assert!(examples.len() >= 10, "{} files", examples.len());
    // Each shape of the schema's `oneOf` (the null of an empty document
    // aside) on its own, to see that the examples show every one.
    let schema = file_schema();
    let shapes: Vec<(String, jsonschema::Validator)> = schema["oneOf"]
        .as_array()
        .expect("oneOf")
        .iter()
        .filter(|shape| shape["type"] != "null")
        .map(|shape| {
            let mut alone = shape.clone();
            alone["$defs"] = schema["$defs"].clone();
            let validator = jsonschema::draft202012::new(&alone).expect("a shape compiles");
            (shape.to_string(), validator)
        })
        .collect();
    let mut shown = vec![0; shapes.len()];
    for (path, docs) in &examples {
        assert!(!docs.is_empty(), "{}: no document", path.display());
        for (i, doc) in docs.iter().enumerate() {
            let errors = schema_errors(&validator, doc);
            assert!(
                errors.is_empty(),
                "{} document {}: {errors:#?}",
                path.display(),
                i + 1
            );
            for (count, (_, shape)) in shown.iter_mut().zip(&shapes) {
                *count += usize::from(shape.is_valid(doc));
            }
        }
    }
    for (count, (shape, _)) in shown.iter().zip(&shapes) {
        assert!(*count > 0, "no example of {shape}");
    }
    // And the parser takes them too: the examples are no test of the
    // schema alone.
    for dir in ["examples/config", "examples/kubernetes"] {
        let mut files = Vec::new();
        yaml_files(&repo().join(dir), &mut files);
        let files: Vec<SourceFile> = files
            .iter()
            .map(|path| SourceFile {
                path: Arc::from(path.display().to_string()),
                bytes: std::fs::read(path).expect("read"),
            })
            .collect();
        if let Err(errors) = parse_tree(&files, Limits::default()) {
            panic!("{dir}: {errors:#?}");
        }
    }
}

#[test]
fn the_schema_and_the_parser_agree_on_good_and_bad_documents() {
    let validator = validator();
    for (name, doc, valid) in cases() {
        let errors = schema_errors(&validator, &doc);
        assert_eq!(
            errors.is_empty(),
            valid,
            "the schema on {name}: {errors:#?}\n{doc:#}"
        );
    }
}

/// `metadata.name` is a Kubernetes name and, where `spec` gives no id, the
/// id: the schema and the parser agree on names near every edge.
#[test]
fn the_schema_and_the_parser_agree_on_manifest_names() {
    let validator = validator();
    let label = "a".repeat(63);
    let long = [label.as_str(); 4].join(".");
    let names = [
        "a".to_owned(),
        "a.b".into(),
        "a-b.c-d".into(),
        "9".into(),
        "-a".into(),
        "a-".into(),
        "a.".into(),
        ".a".into(),
        "a..b".into(),
        "A".into(),
        "a_b".into(),
        label.clone(),
        format!("{label}a"),
        "a".repeat(128),
        "a".repeat(129),
        long.clone(),
        format!("{long}a"),
    ];
    let mut verdicts = std::collections::BTreeSet::new();
    for name in &names {
        for (kind, spec) in [
            ("Permit", "{permissionId: 'a:b', slugs: [s]}"),
            ("Permit", "{id: x, permissionId: 'a:b', slugs: [s]}"),
            ("Enrollment", "{role: 'a:b', userId: u}"),
            ("Organization", "{}"),
            ("Organization", "{slug: x}"),
        ] {
            let text = format!(
                "apiVersion: accord.dev/v1alpha1\nkind: {kind}\nmetadata: {{name: {name}}}\nspec: {spec}\n"
            );
            let parsed = parser_accepts(&text);
            let errors = schema_errors(&validator, &documents(&text)[0]);
            assert_eq!(
                errors.is_empty(),
                parsed.is_ok(),
                "{kind} named {name:?} with spec {spec}: parser {parsed:?}, schema {errors:#?}"
            );
            verdicts.insert(parsed.is_ok());
        }
    }
    assert_eq!(verdicts.len(), 2, "both verdicts occur");
}

/// The names the parser lists for an unknown field in `text` (at `zzz`).
fn accepted_names(text: &str) -> Vec<String> {
    let errors = parser_accepts(text).expect_err("an unknown field");
    let list = errors
        .split("expected one of: ")
        .nth(1)
        .unwrap_or_else(|| panic!("no list of fields: {errors}"));
    let mut names: Vec<String> = list.trim().split(", ").map(str::to_owned).collect();
    names.sort();
    names
}

fn schema_names(schema: &Value, pointer: &str) -> Vec<String> {
    let properties = schema
        .pointer(pointer)
        .and_then(Value::as_object)
        .unwrap_or_else(|| panic!("no {pointer}"));
    let mut names: Vec<String> = properties.keys().cloned().collect();
    names.sort();
    names
}

/// Each object takes exactly the field names (aliases included) the parser
/// takes: a new field or alias cannot be left out of the schema, nor a
/// removed one linger in it.
#[test]
fn the_schema_names_the_fields_the_parser_accepts() {
    let schema = file_schema();
    let manifest = "apiVersion: accord.dev/v1alpha1\nkind: Permit\n";
    for (pointer, text) in [
        (
            "/$defs/PermitSpec/properties",
            "permissionId: a:b\nslugs: [s]\nzzz: 1\n",
        ),
        ("/$defs/EnrollmentSpec/properties", "role: a:b\nzzz: 1\n"),
        ("/$defs/OrganizationSpec/properties", "slug: acme\nzzz: 1\n"),
        (
            "/$defs/Member/properties",
            "slug: acme\nmembers: [{role: admin, zzz: 1}]\n",
        ),
        (
            "/$defs/Budget/properties",
            "slug: acme\nbudget: {monthlyTokens: 1, zzz: 1}\n",
        ),
        ("/$defs/AppBundle/properties", "permits: []\nzzz: 1\n"),
        (
            "/$defs/Manifest/properties",
            &format!("{manifest}metadata: {{name: p}}\nspec: {{}}\nzzz: 1\n"),
        ),
        (
            "/$defs/Metadata/properties",
            &format!("{manifest}metadata: {{name: p, zzz: 1}}\nspec: {{}}\n"),
        ),
    ] {
        assert_eq!(
            schema_names(&schema, pointer),
            accepted_names(text),
            "{pointer}"
        );
    }
    assert_eq!(
        schema["$defs"]["Manifest"]["properties"]["kind"]["enum"],
        json!(["Organization", "Permit", "Enrollment"])
    );
}

/// A Python interpreter with the `jsonschema` package: scripts/test sets
/// it to the virtualenv it installs openapi-spec-validator into (which
/// depends on it).
fn python() -> String {
    std::env::var("ACCORD_TEST_JSONSCHEMA_PYTHON").unwrap_or_else(|_| {
        panic!(
            "ACCORD_TEST_JSONSCHEMA_PYTHON is not set. Run the suite with scripts/test, which \
             installs Python's jsonschema from PyPI, or point it at a Python that has it."
        )
    })
}

const PYTHON_CHECK: &str = r#"
import json, sys
from jsonschema import Draft202012Validator
schema = json.load(open(sys.argv[1]))
Draft202012Validator.check_schema(schema)
validator = Draft202012Validator(schema)
cases = json.load(open(sys.argv[2]))
wrong = []
for case in cases:
    errors = [e.message for e in validator.iter_errors(case["document"])]
    if bool(errors) == case["valid"]:
        wrong.append((case["name"], case["valid"], errors[:3]))
for name, valid, errors in wrong:
    print(("rejected: " if valid else "accepted: ") + name, errors)
print(f"checked {len(cases)} documents")
sys.exit(1 if wrong else 0)
"#;

#[test]
fn python_jsonschema_agrees() {
    let python = python();
    let dir = tempfile::tempdir().expect("tempdir");
    let schema = dir.path().join("accord.schema.json");
    std::fs::copy(repo().join("schema/accord.schema.json"), &schema).expect("copy the schema");
    let cases: Vec<Value> = cases()
        .into_iter()
        .map(|(name, document, valid)| json!({"name": name, "document": document, "valid": valid}))
        .collect();
    let cases_file = dir.path().join("cases.json");
    std::fs::write(&cases_file, Value::Array(cases).to_string()).expect("write the cases");
    let output = Command::new(&python)
        .arg("-c")
        .arg(PYTHON_CHECK)
        .arg(&schema)
        .arg(&cases_file)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{text}");
    assert!(text.contains("checked "), "{text}");
}
