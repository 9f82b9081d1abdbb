//! The file formats: every document shape, every error kind with its place,
//! and hostile input that must fail cleanly and fast.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use accord::model::{
    parse_tree, parse_tree_for_plan, DesiredState, Diagnostic, Key, Kind, Limits, Object,
    SourceFile,
};
use accord::source::directory::read_paths;

fn file(path: &str, text: &str) -> SourceFile {
    SourceFile {
        path: Arc::from(path),
        bytes: text.as_bytes().to_vec(),
    }
}

fn parse(files: &[(&str, &str)]) -> Result<DesiredState, Vec<Diagnostic>> {
    let files: Vec<SourceFile> = files.iter().map(|(p, t)| file(p, t)).collect();
    parse_tree(&files, Limits::default())
}

fn parse_ok(files: &[(&str, &str)]) -> DesiredState {
    parse(files).unwrap_or_else(|errors| panic!("unexpected errors: {errors:#?}"))
}

/// Every error as `file:line:col: message`.
fn errors(files: &[(&str, &str)]) -> Vec<String> {
    match parse(files) {
        Ok(_) => panic!("expected errors"),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

fn one_error(text: &str) -> String {
    let errors = errors(&[("f.yaml", text)]);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    errors.into_iter().next().unwrap_or_default()
}

fn key(kind: Kind, app: &str, id: &str) -> Key {
    Key {
        kind,
        app: app.into(),
        id: id.into(),
    }
}

fn get<'a>(state: &'a DesiredState, kind: Kind, app: &str, id: &str) -> &'a Object {
    &state
        .objects
        .get(&key(kind, app, id))
        .unwrap_or_else(|| panic!("{kind} {app}/{id} missing from {:?}", state.objects.keys()))
        .object
}

fn fixture_tree() -> DesiredState {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/shapes");
    let snapshot = read_paths(&[root], 1 << 20).expect("fixtures readable");
    assert!(snapshot.problems.is_empty(), "{:?}", snapshot.problems);
    assert_eq!(snapshot.files.len(), 4);
    parse_tree(&snapshot.files, Limits::default()).expect("fixtures are valid")
}

#[test]
fn a_parse_for_a_plan_hashes_each_object_and_is_otherwise_the_same() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/shapes");
    let snapshot = read_paths(&[root], 1 << 20).expect("fixtures readable");
    let plain = parse_tree(&snapshot.files, Limits::default()).expect("valid");
    let for_plan = parse_tree_for_plan(&snapshot.files, Limits::default()).expect("valid");
    assert_eq!(plain.len(), for_plan.len());
    assert!(!plain.is_empty());
    for (key, declaration) in &for_plan.objects {
        let other = &plain.objects[key];
        assert_eq!(other.digest, None, "{key}");
        assert_eq!(
            declaration.digest,
            Some(declaration.object.digest()),
            "{key}"
        );
        assert_eq!(declaration.object, other.object, "{key}");
        assert_eq!(declaration.origin, other.origin, "{key}");
    }
}

#[test]
fn typed_manifests_of_all_three_kinds_are_read() {
    let state = fixture_tree();
    let Object::Permit(p) = get(&state, Kind::Permit, "unnamed", "payment-api-access") else {
        panic!("not a permit")
    };
    assert_eq!(p.permission_id, "payment-svc:process");
    assert_eq!(p.slugs, ["order-service"]);
    // spec.id wins over metadata.name; spec.app places it.
    let Object::Enrollment(e) = get(
        &state,
        Kind::Enrollment,
        "production.mycompany.com",
        "Prod_Admin.1",
    ) else {
        panic!("not an enrollment")
    };
    assert_eq!(e.user_id.as_deref(), Some("usr_123"));
    let Object::Organization(o) = get(&state, Kind::Organization, "unnamed", "acme") else {
        panic!("not an organization")
    };
    assert_eq!(o.name.as_deref(), Some("Acme Corp"));
    assert_eq!(o.budget.as_ref().map(|b| b.monthly_tokens), Some(1_000_000));
    assert_eq!(
        o.allowed_models,
        ["gpt-4o", "gpt-4o-mini"],
        "a set: sorted, no duplicates"
    );
    assert_eq!(o.members.len(), 2);
}

#[test]
fn native_object_with_1backend_aliases_is_a_permit_in_that_app() {
    let state = fixture_tree();
    let permits: Vec<&Object> = state
        .objects
        .iter()
        .filter(|(k, _)| k.kind == Kind::Permit && k.app == "chat.mycompany.com")
        .map(|(_, d)| &*d.object)
        .collect();
    assert_eq!(permits.len(), 1);
    let Object::Permit(p) = permits[0] else {
        panic!()
    };
    assert_eq!(p.permission_id, "chat-svc:message:create");
    assert_eq!(p.slugs, ["chat-bot"]);
    assert!(p.id.starts_with("perm-"), "derived id: {}", p.id);
}

#[test]
fn a_list_may_mix_kinds_and_objects_without_app_go_to_unnamed() {
    let state = fixture_tree();
    get(&state, Kind::Permit, "unnamed", "billing-read");
    get(&state, Kind::Organization, "unnamed", "finance");
    assert!(state
        .objects
        .keys()
        .any(|k| k.kind == Kind::Enrollment && k.app == "unnamed" && k.id.starts_with("enr-")));
}

#[test]
fn bundle_items_inherit_the_app_unless_they_name_one() {
    let state = fixture_tree();
    get(&state, Kind::Permit, "tenant-a.example.com", "reports");
    get(&state, Kind::Permit, "tenant-b.example.com", "reports");
    get(
        &state,
        Kind::Organization,
        "tenant-a.example.com",
        "tenant-a",
    );
    assert_eq!(
        state
            .objects
            .keys()
            .filter(|k| k.kind == Kind::Enrollment && k.app == "tenant-a.example.com")
            .count(),
        1
    );
    assert_eq!(state.len(), 11);
}

#[test]
fn permit_without_id_gets_a_stable_derived_id() {
    let a = parse_ok(&[(
        "a.yaml",
        "permissionId: x:y\nroles: [r:b, r:a]\nslugs: [s2, s1]\n",
    )]);
    let b = parse_ok(&[(
        "b.yaml",
        "slugs: [s1, s2, s1]\nroles: [r:a, r:b]\npermissionId: x:y\n",
    )]);
    let c = parse_ok(&[(
        "c.yaml",
        "permissionId: x:y\nroles: [r:a]\nslugs: [s1, s2]\n",
    )]);
    let id = |s: &DesiredState| {
        s.objects
            .keys()
            .next()
            .map(|k| k.id.clone())
            .unwrap_or_default()
    };
    assert!(id(&a).starts_with("perm-"));
    assert_eq!(id(&a), id(&b), "order and duplicates do not change the id");
    assert_ne!(id(&a), id(&c), "a different grant has a different id");
}

#[test]
fn enrollment_without_id_gets_a_stable_derived_id_from_role_and_subject() {
    let a = parse_ok(&[("a.yaml", "role: a:b\nuserId: u1\n")]);
    let b = parse_ok(&[("a.yaml", "userId: u1\nrole: a:b\n")]);
    let c = parse_ok(&[("a.yaml", "role: a:b\ncontactId: u1@x.com\n")]);
    let id = |s: &DesiredState| {
        s.objects
            .keys()
            .next()
            .map(|k| k.id.clone())
            .unwrap_or_default()
    };
    assert!(id(&a).starts_with("enr-"));
    assert_eq!(id(&a), id(&b));
    assert_ne!(id(&a), id(&c));
}

#[test]
fn lists_are_sets() {
    let a = parse_ok(&[(
        "a.yaml",
        "id: p\npermissionId: x:y\nroles: [b:b, a:a, b:b]\n",
    )]);
    let b = parse_ok(&[("a.yaml", "id: p\npermissionId: x:y\nroles: [a:a, b:b]\n")]);
    let object = |s: &DesiredState| s.objects.values().next().map(|d| d.object.clone());
    assert_eq!(object(&a), object(&b));
}

#[test]
fn unknown_field_is_an_error_at_the_key_listing_the_expected_ones() {
    let error = one_error("id: p\npermissionId: x:y\nroles: [a:b]\nrolez: [c:d]\n");
    assert!(
        error.starts_with("f.yaml:4:1: unknown field `rolez`"),
        "{error}"
    );
    assert!(
        error.contains("permissionId") && error.contains("roles"),
        "{error}"
    );
}

#[test]
fn unknown_field_in_a_nested_member_is_located_there() {
    let error = one_error(
        "slug: acme\nmembers:\n  - contactId: a@b.com\n    role: admin\n    tokenLimt: 3\n",
    );
    assert!(
        error.starts_with("f.yaml:5:5: unknown field `tokenLimt`"),
        "{error}"
    );
}

#[test]
fn wrong_type_is_an_error_at_the_value() {
    let error = one_error("id: p\npermissionId: x:y\nroles: a:b\n");
    assert!(error.starts_with("f.yaml:3:8: wrong type"), "{error}");
    let error = one_error("id: 42\npermissionId: x:y\nroles: [a:b]\n");
    assert!(
        error.starts_with("f.yaml:1:5: wrong type: found integer"),
        "{error}"
    );
    let error = one_error("slug: acme\nbudget:\n  monthlyTokens: lots\n");
    assert!(error.starts_with("f.yaml:3:18: wrong type"), "{error}");
}

#[test]
fn bad_patterns_are_errors_at_the_offending_value() {
    let cases = [
        (
            "id: p\npermissionId: payments\nroles: [a:b]\n",
            "f.yaml:2:15: invalid permissionId",
        ),
        (
            "id: p\npermissionId: x:y\nroles: [a:b, admin]\n",
            "f.yaml:3:14: invalid role `admin`",
        ),
        (
            "id: -p\npermissionId: x:y\nroles: [a:b]\n",
            "f.yaml:1:5: invalid id",
        ),
        (
            "id: p\npermissionId: x:y\nslugs: [\"bad slug\"]\n",
            "f.yaml:3:9: invalid slug",
        ),
        (
            "role: a:b\ncontactId: not-an-email\n",
            "f.yaml:2:12: invalid contactId",
        ),
        ("role: admin\nuserId: u1\n", "f.yaml:1:7: invalid role"),
        ("slug: Acme\n", "f.yaml:1:7: invalid slug `Acme`"),
        (
            "slug: acme\nmembers:\n  - contactId: a@b.com\n    role: \"ad min\"\n",
            "f.yaml:4:11: invalid member role",
        ),
    ];
    for (text, expected) in cases {
        let error = one_error(text);
        assert!(error.starts_with(expected), "{text:?}: {error}");
    }
}

#[test]
fn enrollment_with_both_or_neither_subject_is_an_error() {
    let error = one_error("role: a:b\nuserId: u1\ncontactId: a@b.com\n");
    assert!(
        error.starts_with("f.yaml:3:12: an enrollment has exactly one of"),
        "{error}"
    );
    let error = one_error("- role: a:b\n");
    assert!(
        error.starts_with("f.yaml:1:3: an enrollment needs exactly one of"),
        "{error}"
    );
}

#[test]
fn permit_that_grants_nothing_is_an_error() {
    let error = one_error("- id: p\n  permissionId: x:y\n  slugs: []\n");
    assert!(
        error.starts_with("f.yaml:1:3: a permit must grant something"),
        "{error}"
    );
}

#[test]
fn same_key_declared_twice_names_both_places() {
    let errors = errors(&[
        ("a.yaml", "id: p\npermissionId: x:y\nroles: [a:b]\n"),
        ("b.yaml", "- id: q\n  permissionId: x:y\n  roles: [a:b]\n- id: p\n  permissionId: x:z\n  roles: [a:b]\n"),
    ]);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(
        errors[0],
        "b.yaml:4:3: Permit `p` in app `unnamed` is declared twice: also at a.yaml:1:1"
    );
}

#[test]
fn same_id_in_different_apps_or_kinds_is_not_a_duplicate() {
    let state = parse_ok(&[(
        "a.yaml",
        "- {id: p, permissionId: x:y, roles: [a:b]}\n- {id: p, permissionId: x:y, roles: [a:b], app: other}\n- {id: p, role: a:b, userId: u}\n",
    )]);
    assert_eq!(state.len(), 3);
}

#[test]
fn every_error_of_a_tree_is_reported_in_one_run() {
    let errors = errors(&[
        ("a.yaml", "- id: p\n  permissionId: bad\n  roles: [a:b]\n- id: q\n  permissionId: x:y\n  rolez: [a:b]\n"),
        ("b.yaml", "role: a:b\n"),
        ("c.yaml", "key: [unclosed\n"),
    ]);
    assert_eq!(errors.len(), 4, "{errors:#?}");
    assert!(
        errors[0].starts_with("a.yaml:2:17: invalid permissionId"),
        "{errors:#?}"
    );
    assert!(
        errors[1].starts_with("a.yaml:6:3: unknown field `rolez`"),
        "{errors:#?}"
    );
    assert!(
        errors[2].starts_with("b.yaml:1:1: an enrollment needs"),
        "{errors:#?}"
    );
    assert!(errors[3].starts_with("c.yaml:"), "{errors:#?}");
    assert!(errors[3].contains("invalid YAML"), "{errors:#?}");
}

#[test]
fn documents_that_are_not_objects_say_what_was_expected() {
    let error = one_error("just a string\n");
    assert!(
        error.starts_with("f.yaml:1:1: found a string, expected a Permit"),
        "{error}"
    );
    let error = one_error("name: nothing to tell\n");
    assert!(
        error.starts_with("f.yaml:1:1: cannot tell what this object is"),
        "{error}"
    );
    let error =
        one_error("apiVersion: accord.dev/v1alpha1\nkind: Grant\nmetadata: {name: x}\nspec: {}\n");
    assert!(error.starts_with("f.yaml:2:7: unknown kind"), "{error}");
    let error = one_error("apiVersion: v1\nkind: Permit\nmetadata: {name: x}\nspec: {permissionId: x:y, roles: [a:b]}\n");
    assert!(
        error.starts_with("f.yaml:1:13: unsupported apiVersion"),
        "{error}"
    );
    let error = one_error("app: x\npermits: []\nroles: []\n");
    assert!(
        error.starts_with("f.yaml:3:1: unknown field `roles` in an app bundle"),
        "{error}"
    );
}

#[test]
fn empty_documents_and_files_declare_nothing() {
    let state = parse_ok(&[("a.yaml", ""), ("b.yaml", "---\n---\n# only a comment\n")]);
    assert!(state.is_empty());
}

#[test]
fn syntax_error_is_located() {
    let error = one_error("id: p\npermissionId: x:y\n  roles: [a:b]\n");
    assert!(error.starts_with("f.yaml:3:"), "{error}");
    assert!(error.contains("invalid YAML"), "{error}");
}

#[test]
fn duplicate_mapping_keys_are_errors() {
    let error = one_error("id: p\npermissionId: x:y\nroles: [a:b]\nid: q\n");
    assert_eq!(error, "f.yaml:4:1: duplicate key `id`");
}

// ---- hostile input -----------------------------------------------------------

#[test]
fn alias_bomb_fails_fast_with_a_clear_error() {
    let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let p = i - 1;
        text.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    let started = Instant::now();
    let error = one_error(&text);
    assert!(error.contains("alias bomb"), "{error}");
    assert!(error.starts_with("f.yaml:"), "{error}");
    // A generous bound: the point is "not exponential", not speed.
    assert!(started.elapsed().as_secs() < 5);
}

#[test]
fn very_deep_nesting_fails_cleanly() {
    let depth = 100_000;
    let text = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let error = one_error(&text);
    assert!(
        error.contains("nesting deeper than") || error.contains("recursion limit"),
        "{error}"
    );
    let text = (0..200)
        .map(|i| format!("{}k{i}:\n", "  ".repeat(i)))
        .collect::<String>();
    let error = one_error(&text);
    assert!(error.contains("nesting deeper than 64"), "{error}");
}

#[test]
fn non_utf8_bytes_are_located() {
    let files = [SourceFile {
        path: Arc::from("bin.yaml"),
        bytes: b"id: p\npermissionId: x\xff:y\n".to_vec(),
    }];
    let errors = parse_tree(&files, Limits::default()).expect_err("rejected");
    assert_eq!(
        errors[0].to_string(),
        "bin.yaml:2:16: file is not valid UTF-8"
    );
}

struct Tree {
    dir: tempfile::TempDir,
}

impl Tree {
    fn new() -> Tree {
        Tree {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("config")
    }

    fn write(&self, relative: &str, bytes: &[u8]) -> &Tree {
        let path = self.root().join(relative);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, bytes).expect("write");
        self
    }
}

#[test]
fn only_yaml_files_are_read_and_hidden_entries_are_skipped() {
    let tree = Tree::new();
    tree.write("a.yaml", b"id: a\npermissionId: x:y\nroles: [a:b]\n")
        .write("sub/b.yml", b"id: b\npermissionId: x:y\nroles: [a:b]\n")
        .write("README.md", b"# not yaml: {{{")
        .write("notes.txt", b"permissionId: [")
        .write(".hidden.yaml", b"broken: [")
        .write(".git/config.yaml", b"broken: [");
    let snapshot = read_paths(&[tree.root()], 1 << 20).expect("read");
    assert!(snapshot.problems.is_empty(), "{:?}", snapshot.problems);
    let names: Vec<&str> = snapshot.files.iter().map(|f| &*f.path).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names[0].ends_with("config/a.yaml") && names[1].ends_with("config/sub/b.yml"));
    assert_eq!(
        parse_tree(&snapshot.files, Limits::default())
            .map(|s| s.len())
            .ok(),
        Some(2)
    );
}

#[test]
fn file_over_the_size_cap_is_refused_without_reading_it() {
    let tree = Tree::new();
    tree.write("big.yaml", &vec![b'#'; 4096])
        .write("ok.yaml", b"slug: acme\n");
    let snapshot = read_paths(&[tree.root()], 1024).expect("read");
    assert_eq!(snapshot.files.len(), 1);
    assert_eq!(snapshot.problems.len(), 1);
    let problem = snapshot.problems[0].to_string();
    assert!(
        problem.contains("big.yaml:1:1: file is 4096 bytes, over the 1024 byte limit"),
        "{problem}"
    );
}

#[cfg(unix)]
#[test]
fn symlinks_are_never_followed_out_of_the_source_root() {
    let tree = Tree::new();
    tree.write("a.yaml", b"slug: acme\n");
    let outside = tree.dir.path().join("secret.yaml");
    std::fs::write(&outside, "slug: stolen\n").expect("write");
    std::os::unix::fs::symlink(&outside, tree.root().join("link.yaml")).expect("symlink");
    std::os::unix::fs::symlink(tree.dir.path(), tree.root().join("up")).expect("symlink");
    std::os::unix::fs::symlink(tree.root().join("a.yaml"), tree.root().join("inside.yaml"))
        .expect("symlink");
    let snapshot = read_paths(&[tree.root()], 1 << 20).expect("read");
    let problems: Vec<String> = snapshot.problems.iter().map(ToString::to_string).collect();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems
        .iter()
        .all(|p| p.contains("symlink leads out of the source root")));
    // Only the real file is read: the inside link would be a duplicate.
    assert_eq!(snapshot.files.len(), 1);
    assert!(!snapshot
        .files
        .iter()
        .any(|f| String::from_utf8_lossy(&f.bytes).contains("stolen")));
}

#[test]
fn the_revision_is_a_content_hash_of_the_tree() {
    let a = Tree::new();
    a.write("x.yaml", b"slug: acme\n");
    let b = Tree::new();
    b.write("x.yaml", b"slug: acme\n");
    let rev = |t: &Tree| read_paths(&[t.root()], 1 << 20).expect("read").revision;
    assert_eq!(
        rev(&a),
        rev(&b),
        "same content, same revision wherever it lives"
    );
    b.write("x.yaml", b"slug: acme2\n");
    assert_ne!(rev(&a), rev(&b));
}

#[test]
fn manifest_name_that_kubernetes_would_refuse_points_to_spec_id() {
    let error = one_error(
        "apiVersion: accord.dev/v1alpha1\nkind: Permit\nmetadata:\n  name: Bad_Name\nspec:\n  permissionId: x:y\n  roles: [a:b]\n",
    );
    assert!(
        error.starts_with("f.yaml:4:9: metadata.name `Bad_Name` is not a valid Kubernetes name"),
        "{error}"
    );
    assert!(error.contains("spec.id"), "{error}");
    let error = one_error("slug: acme\nbudget:\n  monthlyTokens: -5\n");
    assert_eq!(
        error,
        "f.yaml:3:18: wrong value: found integer `-5`, expected a whole number (0 or more)"
    );
}

// ---- bad values and tags ---------------------------------------------------------

#[test]
fn a_nul_byte_or_a_newline_in_an_organization_name_is_refused_where_it_is() {
    let nul = one_error("slug: acme\nname: \"Acme\\0Corp\"\n");
    assert!(nul.starts_with("f.yaml:2:7: invalid name"), "{nul}");
    assert!(nul.contains("\\u{0}"), "the NUL is shown escaped: {nul}");

    let newline = one_error("slug: acme\nname: \"Acme\\nCorp\"\n");
    assert!(newline.starts_with("f.yaml:2:7:"), "{newline}");
}

#[test]
fn a_value_cannot_forge_a_line_of_its_own_in_an_error() {
    let forged = "- id: p1\n  permissionId: \"x\\nother.yaml:1:1: everything is fine\\u001b[2J\"\n  slugs: [a]\n";
    for error in errors(&[("f.yaml", forged)]) {
        assert!(!error.chars().any(char::is_control), "{error:?}");
        assert!(error.starts_with("f.yaml:"), "{error}");
    }
}

#[test]
fn a_file_name_with_control_characters_is_shown_escaped() {
    let errors = errors(&[("bad\nname.yaml", "permissionId: [\n")]);
    assert!(
        errors.iter().all(|e| !e.chars().any(char::is_control)),
        "{errors:?}"
    );
    assert!(errors[0].starts_with("bad\\nname.yaml:"), "{errors:?}");
}

#[test]
fn tags_other_than_the_core_schemas_are_refused_where_they_are() {
    for (text, tag, at) in [
        (
            "permissionId: !!binary c3ZjOmFjdA==\nslugs: [a]\n",
            "!!binary",
            "1:15",
        ),
        (
            "permissionId: svc:act\nslugs: !custom [a]\n",
            "!custom",
            "2:8",
        ),
        ("permissionId: svc:act\nslugs: [! a]\n", "!", "2:9"),
        ("!!set\npermissionId: svc:act\n", "!!set", "1:1"),
    ] {
        let error = one_error(text);
        assert!(
            error.starts_with(&format!("f.yaml:{at}:")) && error.contains(&format!("`{tag}`")),
            "{text:?}: {error}"
        );
    }
}

#[test]
fn core_schema_tags_mean_what_they_say() {
    // `!!str` keeps a number-looking id a string.
    let state = parse_ok(&[(
        "f.yaml",
        "id: !!str 123\npermissionId: !!str svc:act\nslugs: !!seq [a]\n",
    )]);
    assert!(state
        .objects
        .contains_key(&key(Kind::Permit, "unnamed", "123")));
    let error = one_error("slug: acme\nbudget:\n  monthlyTokens: !!int many\n");
    assert!(
        error.contains("`many` is not a value of the tag `!!int`"),
        "{error}"
    );
}

#[test]
fn a_misspelled_field_is_named_with_the_field_it_misspells_in_every_shape() {
    // A native list item whose kind the typo hides.
    let error = one_error("- permisionId: svc:act\n  slugs: [a]\n");
    assert!(
        error.starts_with("f.yaml:1:3:")
            && error.contains("unknown field `permisionId` (did you mean `permissionId`?)"),
        "{error}"
    );
    // A single native object of a known kind.
    let error = one_error("permissionId: svc:act\nslugz: [a]\n");
    assert!(
        error.contains("unknown field `slugz` (did you mean `slugs`?)"),
        "{error}"
    );
    // An app bundle, and its items.
    let error = one_error("app: a\npermitz: []\n");
    assert!(error.contains("(did you mean `permits`?)"), "{error}");
    let error = one_error("app: a\npermits:\n  - permissionId: svc:act\n    rolez: [a:b]\n");
    assert!(error.contains("(did you mean `roles`?)"), "{error}");
    // A typed manifest, and its spec.
    let all = errors(&[(
        "f.yaml",
        "apiVersion: accord.dev/v1alpha1\nkind: Permit\nmetdata: {name: p}\nspec: {permissionId: svc:act, slugs: [a]}\n",
    )]);
    assert!(
        all.iter()
            .any(|e| e.starts_with("f.yaml:3:1:") && e.contains("(did you mean `metadata`?)")),
        "{all:?}"
    );
    let error = one_error("apiVersion: accord.dev/v1alpha1\nkind: Enrollment\nmetadata: {name: e}\nspec: {role: a:b, userid: u1}\n");
    assert!(error.contains("(did you mean `userId`?)"), "{error}");
}

#[test]
fn an_enrollment_may_hold_in_every_app_and_nothing_else_may() {
    let state = parse_ok(&[(
        "global.yaml",
        "role: user-svc:admin\nuserId: root\nid: global-admin\nappHost: \"*\"\n",
    )]);
    let Object::Enrollment(e) = get(&state, Kind::Enrollment, "*", "global-admin") else {
        panic!("an enrollment")
    };
    assert_eq!(e.app, "*");
    let error = one_error("permissionId: a:b\nslugs: [x]\napp: \"*\"\n");
    assert!(
        error.starts_with("f.yaml:3:6: invalid app `*`") && error.contains("only an enrollment"),
        "{error}"
    );
}
