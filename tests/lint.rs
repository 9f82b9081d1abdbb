//! `accord lint`: each rule on the smallest tree that shows it, located to
//! the object; severities from a file and from flags; `--deny warnings`;
//! the JSON shape; and quiet on the bundled examples.

mod common;

use std::path::Path;

use common::cli::accord_in as accord;
use serde_json::Value;

/// A temp folder holding `tree/` with the given files, and room beside it
/// for a configuration file.
fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, text) in files {
        let path = dir.path().join("tree").join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }
    dir
}

/// `accord lint tree --output json …`: the exit code and the findings.
fn lint_json(dir: &Path, extra: &[&str]) -> (i32, Vec<Value>) {
    let mut args = vec!["lint", "tree", "--output", "json"];
    args.extend_from_slice(extra);
    let run = accord(dir, &args);
    let json: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}{}", run.stdout, run.stderr));
    let findings = json["findings"].as_array().expect("findings").clone();
    (run.code, findings)
}

/// Each finding as `file:line:col severity[rule]`.
fn located(findings: &[Value]) -> Vec<String> {
    findings
        .iter()
        .map(|f| {
            format!(
                "{}:{}:{} {}[{}]",
                f["file"].as_str().expect("file"),
                f["line"],
                f["column"],
                f["severity"].as_str().expect("severity"),
                f["rule"].as_str().expect("rule")
            )
        })
        .collect()
}

/// Lints a one-rule tree and checks the one finding: its text line (exit
/// code and place) and its JSON form.
fn fires(files: &[(&str, &str)], expected: &str, code: i32) -> Value {
    let dir = tree(files);
    let run = accord(dir.path(), &["lint", "tree"]);
    assert_eq!(run.code, code, "{}{}", run.stdout, run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{}", run.stdout);
    let (place, rest) = expected.split_once(' ').expect("place and rule");
    assert!(
        lines[0].starts_with(&format!("{place}: {rest}: ")),
        "{}",
        lines[0]
    );
    assert!(run.stderr.starts_with("lint"), "{}", run.stderr);
    let (json_code, findings) = lint_json(dir.path(), &[]);
    assert_eq!(json_code, code);
    assert_eq!(located(&findings), [expected]);
    findings[0].clone()
}

const PERMIT: &str =
    "- id: pay\n  permissionId: pay-svc:payment:process\n  roles: [pay-svc:processor]\n";

#[test]
fn unheld_role_a_permit_for_a_role_nobody_holds() {
    let finding = fires(
        &[("permits.yaml", PERMIT)],
        "tree/permits.yaml:1:3 warning[unheld-role]",
        0,
    );
    let message = finding["message"].as_str().expect("message");
    assert!(message.contains("`pay-svc:processor`"), "{message}");
    assert!(message.contains("enroll someone"), "{message}");
}

#[test]
fn unheld_role_counts_enrollments_of_every_app_and_members() {
    let dir = tree(&[(
        "a.yaml",
        "app: shop.example.com\npermits:\n  - permissionId: pay-svc:payment:process\n    roles: [pay-svc:processor, user-svc:org:*:admin]\n---\n\
         - role: pay-svc:processor\n  userId: u1\n  app: \"*\"\n\
         - slug: acme\n  app: shop.example.com\n  members: [{contactId: a@acme.io, role: admin}]\n",
    )]);
    let (code, findings) = lint_json(dir.path(), &[]);
    assert_eq!((code, findings.len()), (0, 0), "{findings:#?}");
}

#[test]
fn unused_role_an_enrollment_no_permit_uses() {
    let finding = fires(
        &[
            ("permits.yaml", PERMIT),
            (
                "people.yaml",
                "- id: ann\n  role: pay-svc:processor\n  userId: ann\n- id: bob\n  role: pay-svc:procesor\n  userId: bob\n",
            ),
        ],
        "tree/people.yaml:4:3 warning[unused-role]",
        0,
    );
    let message = finding["message"].as_str().expect("message");
    assert!(message.contains("`pay-svc:procesor`"), "{message}");
}

#[test]
fn wildcard_admin_is_an_error() {
    fires(
        &[(
            "admins.yaml",
            "- id: pay-admins\n  permissionId: pay-svc:payment:refund\n  roles: [pay-svc:admin]\n- id: everyone\n  role: pay-svc:admin\n  contactId: \"*@example.com\"\n",
        )],
        "tree/admins.yaml:4:3 error[wildcard-admin]",
        1,
    );
}

#[test]
fn org_without_admin() {
    fires(
        &[(
            "orgs/lonely.yaml",
            "apiVersion: accord.dev/v1alpha1\nkind: Organization\nmetadata:\n  name: lonely\nspec:\n  members:\n    - contactId: a@x.io\n      role: user\n",
        )],
        "tree/orgs/lonely.yaml:6:3 warning[org-without-admin]",
        0,
    );
}

#[test]
fn wildcard_service() {
    fires(
        &[(
            "p.yaml",
            "- id: any-processor\n  permissionId: pay-svc:payment:process\n  roles: [\"*:processor\"]\n- id: ann\n  role: pay-svc:processor\n  userId: ann\n",
        )],
        "tree/p.yaml:1:3 warning[wildcard-service]",
        0,
    );
}

#[test]
fn duplicate_grant_is_reported_at_the_second_naming_the_first() {
    let finding = fires(
        &[
            (
                "a.yaml",
                "- id: first\n  permissionId: pay-svc:payment:process\n  slugs: [order-service]\n",
            ),
            (
                "b.yaml",
                "id: second\npermissionId: pay-svc:payment:process\nslugs: [order-service, refund-worker]\n",
            ),
        ],
        "tree/b.yaml:1:1 warning[duplicate-grant]",
        0,
    );
    assert_eq!(
        finding["related"],
        serde_json::json!({"file": "tree/a.yaml", "line": 1, "column": 3})
    );
    let message = finding["message"].as_str().expect("message");
    assert!(
        message.contains("permit `first` at tree/a.yaml:1:3"),
        "{message}"
    );
    assert!(message.contains("slug `order-service`"), "{message}");
}

#[test]
fn shared_enrollment_id_across_apps() {
    let bundle = |app: &str| {
        format!(
            "app: {app}\npermits:\n  - id: p\n    permissionId: x-svc:do\n    roles: [x-svc:user]\nenrollments:\n  - id: same\n    role: x-svc:user\n    userId: u\n"
        )
    };
    let finding = fires(
        &[
            ("a.yaml", &bundle("a.example.com")),
            ("b.yaml", &bundle("b.example.com")),
        ],
        "tree/b.yaml:7:5 warning[shared-enrollment-id]",
        0,
    );
    assert_eq!(finding["related"]["file"], "tree/a.yaml");
    assert_eq!(finding["related"]["line"], 7);
}

#[test]
fn the_bundled_examples_are_clean() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let run = accord(root, &["lint", "examples/config"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(run.stdout, "", "{}", run.stdout);
    assert!(
        run.stderr
            .starts_with("lint: 0 errors and 0 warnings in 21 objects"),
        "{}",
        run.stderr
    );
    let run = accord(
        root,
        &[
            "lint",
            "examples/config",
            "--deny",
            "warnings",
            "--output",
            "json",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stdout);
}

/// A tree with one wildcard admin (an error) and one role nobody holds (a
/// warning).
fn mixed() -> tempfile::TempDir {
    tree(&[(
        "t.yaml",
        "- id: admins\n  permissionId: x-svc:manage\n  roles: [x-svc:admin, x-svc:auditor]\n- id: everyone\n  role: x-svc:admin\n  contactId: \"*\"\n",
    )])
}

#[test]
fn severities_come_from_a_file_and_flags_over_it() {
    let dir = mixed();
    let (code, findings) = lint_json(dir.path(), &[]);
    assert_eq!(code, 1);
    assert_eq!(
        located(&findings),
        [
            "tree/t.yaml:1:3 warning[unheld-role]",
            "tree/t.yaml:4:3 error[wildcard-admin]"
        ]
    );

    std::fs::write(
        dir.path().join("lint.yaml"),
        "rules:\n  wildcard-admin: warning\n  unheld-role: off\n",
    )
    .expect("write");
    let (code, findings) = lint_json(dir.path(), &["--config", "lint.yaml"]);
    assert_eq!(code, 0);
    assert_eq!(
        located(&findings),
        ["tree/t.yaml:4:3 warning[wildcard-admin]"]
    );

    let (code, findings) = lint_json(
        dir.path(),
        &[
            "--config",
            "lint.yaml",
            "--rule",
            "wildcard-admin=error",
            "--rule",
            "unheld-role=warning",
        ],
    );
    assert_eq!(code, 1);
    assert_eq!(
        located(&findings),
        [
            "tree/t.yaml:1:3 warning[unheld-role]",
            "tree/t.yaml:4:3 error[wildcard-admin]"
        ]
    );

    let (code, findings) = lint_json(dir.path(), &["--rule", "wildcard-admin=off"]);
    assert_eq!(code, 0);
    assert_eq!(located(&findings), ["tree/t.yaml:1:3 warning[unheld-role]"]);
}

#[test]
fn deny_warnings_fails_on_a_warning() {
    let dir = mixed();
    let quiet = ["--rule", "wildcard-admin=off"];
    let run = accord(dir.path(), &["lint", "tree", quiet[0], quiet[1]]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let run = accord(
        dir.path(),
        &["lint", "tree", quiet[0], quiet[1], "--deny", "warnings"],
    );
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("warnings denied"), "{}", run.stderr);
    // Nothing left to deny: success.
    let run = accord(
        dir.path(),
        &[
            "lint",
            "tree",
            "--rule",
            "wildcard-admin=off",
            "--rule",
            "unheld-role=off",
            "--deny",
            "warnings",
        ],
    );
    assert_eq!((run.code, run.stdout.as_str()), (0, ""), "{}", run.stderr);
}

#[test]
fn json_output_has_findings_and_a_summary() {
    let dir = mixed();
    let run = accord(dir.path(), &["lint", "tree", "--output", "json"]);
    assert_eq!(run.code, 1);
    let json: Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert_eq!(
        json["summary"],
        serde_json::json!({"errors": 1, "warnings": 1, "objects": 2, "files": 1, "failed": true})
    );
    let finding = &json["findings"][1];
    let mut keys: Vec<&str> = finding
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["column", "file", "line", "message", "rule", "severity"]
    );
    assert_eq!(finding["rule"], "wildcard-admin");
    assert_eq!(finding["severity"], "error");
}

#[test]
fn an_unknown_rule_in_the_configuration_is_located() {
    let dir = mixed();
    std::fs::write(
        dir.path().join("lint.yaml"),
        "rules:\n  wildcard-admin: warning\n  wildcard-admins: off\n",
    )
    .expect("write");
    let run = accord(dir.path(), &["lint", "tree", "--config", "lint.yaml"]);
    assert_eq!(run.code, 1);
    assert_eq!(run.stdout, "");
    assert!(
        run.stderr.starts_with(
            "lint.yaml:3:3: unknown rule `wildcard-admins` (did you mean `wildcard-admin`?)"
        ),
        "{}",
        run.stderr
    );

    let run = accord(dir.path(), &["lint", "tree", "--rule", "unheld-roles=off"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("unknown rule `unheld-roles`"),
        "{}",
        run.stderr
    );
    let run = accord(dir.path(), &["lint", "tree", "--rule", "unheld-role=loud"]);
    assert_eq!(run.code, 1);
    let run = accord(dir.path(), &["lint", "tree", "--config", "missing.yaml"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("cannot read missing.yaml"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_tree_that_does_not_parse_is_located_as_validate_does() {
    let dir = tree(&[(
        "bad.yaml",
        "- id: p\n  permissionId: nope\n  roles: [a:b]\n",
    )]);
    let lint = accord(dir.path(), &["lint", "tree"]);
    let validate = accord(dir.path(), &["validate", "tree"]);
    assert_eq!(lint.code, 1);
    assert_eq!(lint.stdout, "");
    assert!(
        lint.stderr.starts_with("tree/bad.yaml:2:"),
        "{}",
        lint.stderr
    );
    assert_eq!(lint.stderr, validate.stderr);
    let missing = accord(dir.path(), &["lint", "nowhere"]);
    assert_eq!(missing.code, 1);
}
