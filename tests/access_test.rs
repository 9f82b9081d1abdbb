//! `accord test` end to end: the examples' access tests pass; a new grant
//! fails an exhaustive holder set, naming the holder and where it was
//! granted; failures and malformed test files are located; and the same
//! tests run against a folder, a Git revision and the database.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::cli::accord_in;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

/// A temp folder holding `config/` (the examples), `access-tests/` (the
/// examples' access tests) and `fixtures/` (this test's test files), as a
/// repository keeps them side by side.
fn workspace() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(&repo().join("examples/config"), &dir.path().join("config"));
    copy_dir(
        &repo().join("examples/access-tests"),
        &dir.path().join("access-tests"),
    );
    copy_dir(
        &repo().join("tests/fixtures/access-tests"),
        &dir.path().join("fixtures"),
    );
    dir
}

/// Makes mallory an admin of the research organization, through a new
/// enrollment file: a grant of `user-svc:org:add-user` nobody reviewed.
const NEW_ADMIN: &str = "enrollments/mallory.yaml";

fn grant_a_new_org_admin(config: &Path) {
    std::fs::write(
        config.join(NEW_ADMIN),
        "- id: mallory-org-admin\n  role: user-svc:org:research:admin\n  contactId: mallory@mycompany.com\n",
    )
    .expect("write");
}

fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .args([
            "-c",
            "user.name=Test Author",
            "-c",
            "user.email=author@example.com",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .status()
        .expect("git");
    assert!(status.success(), "git {args:?}");
}

#[test]
fn the_example_access_tests_pass_against_the_example_config() {
    let run = accord_in(
        &repo(),
        &[
            "test",
            "examples/access-tests",
            "--source",
            "examples/config",
        ],
    );
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let summary = run.stdout.lines().last().unwrap_or_default();
    assert!(summary.ends_with(" assertions, 0 failed"), "{}", run.stdout);
    assert!(!run.stdout.contains("warning"), "{}", run.stdout);
}

#[test]
fn an_exhaustive_holder_set_fails_on_a_new_grant_naming_the_holder_and_its_place() {
    let dir = workspace();
    grant_a_new_org_admin(&dir.path().join("config"));
    let run = accord_in(dir.path(), &["test", "access-tests", "--source", "config"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        lines[0],
        "access-tests/org-admins.yaml:6:5: organization admins are exactly these three: the holders of user-svc:org:add-user in app unnamed are not exactly those listed: 1 not listed (contact:mallory@mycompany.com)",
        "{}",
        run.stdout
    );
    assert_eq!(lines[1], "  holders not listed:");
    assert_eq!(
        lines[2],
        "    app unnamed: contact:mallory@mycompany.com  role user-svc:org:research:admin (enrollment mallory-org-admin, config/enrollments/mallory.yaml:1:3) → permit org-admins-add-members (config/permits/org-admins.yaml:8:3)"
    );
    let summary = lines.last().copied().unwrap_or_default();
    assert!(summary.ends_with(" assertions, 1 failed"), "{}", run.stdout);
}

#[test]
fn failures_are_located_and_explained() {
    let dir = workspace();
    let run = accord_in(
        dir.path(),
        &["test", "fixtures/failing.yaml", "--source", "config"],
    );
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let expected = "\
fixtures/failing.yaml:6:5: bob refunds: user:usr-bob-4821 cannot payment-svc:payment:refund in app unnamed, but the test says it can
  denied: user:usr-bob-4821 cannot payment-svc:payment:refund
    payment-svc:payment:refund is granted by:
      permit perm-2e46ff8e765072ca in app unnamed to slugs refund-worker (config/permits/service-accounts.yaml:14:3)
    user:usr-bob-4821 holds none of those roles and is none of those slugs in those apps
fixtures/failing.yaml:8:5: hana must not process payments: contact:hana@mycompany.com can payment-svc:payment:process in app unnamed, but the test says it cannot
  allowed: contact:hana@mycompany.com can payment-svc:payment:process in app unnamed
    app unnamed: enrollment hana-payment-processor (config/enrollments/defaults.yaml:6:3) gives contact:hana@mycompany.com the role payment-svc:processor
      → permit order-service-payments (config/permits/service-accounts.yaml:3:3) grants payment-svc:payment:process to payment-svc:processor
fixtures/failing.yaml:9:5: the holders of payment-svc:payment:refund in app unnamed are not exactly those listed: 1 listed but not holding it (user:usr-ivan-3093)
  listed, but not holders:
    user:usr-ivan-3093
fixtures/failing.yaml:12:5: warning: no permit grants `payment-svc:payment:refnd` in app `unnamed` (did you mean `payment-svc:payment:refund`?)
4 assertions, 3 failed
";
    assert_eq!(run.stdout, expected);
}

#[test]
fn json_output_gives_each_result_with_its_place_and_explanation() {
    let dir = workspace();
    let run = accord_in(
        dir.path(),
        &[
            "test",
            "fixtures/failing.yaml",
            "--source",
            "config",
            "--output",
            "json",
        ],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert_eq!(report["assertions"], 4);
    assert_eq!(report["failed"], 3);
    let results = report["results"].as_array().expect("results");
    let cannot = &results[1];
    assert_eq!(cannot["file"], "fixtures/failing.yaml");
    assert_eq!(
        (cannot["line"].as_u64(), cannot["column"].as_u64()),
        (Some(8), Some(5))
    );
    assert_eq!(cannot["kind"], "cannot");
    assert_eq!(cannot["passed"], false);
    assert_eq!(
        cannot["decision"]["paths"][0]["grant"]["id"],
        "hana-payment-processor"
    );
    assert_eq!(
        results[2]["missing"],
        serde_json::json!(["user:usr-ivan-3093"])
    );
    assert_eq!(results[3]["passed"], true);
    assert!(results[3]["notes"][0]
        .as_str()
        .is_some_and(|n| n.contains("did you mean `payment-svc:payment:refund`")));
}

#[test]
fn malformed_test_files_are_located_and_reported_alone() {
    let dir = workspace();
    // The state does not exist either: the test files' errors are what to fix.
    let run = accord_in(
        dir.path(),
        &[
            "test",
            "fixtures/malformed.yaml",
            "--source",
            "no-such-folder",
        ],
    );
    assert_eq!(run.code, 1);
    assert_eq!(run.stdout, "");
    let expected = "\
fixtures/malformed.yaml:2:39: unknown field `permision` (did you mean `permission`?), expected one of: subject, permission, app
fixtures/malformed.yaml:3:23: wrong type: found integer `42`, expected a subject (`user:ID`, `contact:EMAIL` or `slug:NAME`) or a list of them
fixtures/malformed.yaml:6:17: `refund-worker` is not a holder: write user:ID, contact:EMAIL, contact:*@DOMAIN, contact:* or slug:NAME
fixtures/malformed.yaml:8:5: unknown field `holder` (did you mean `holders`?), expected one of: name, can, cannot, holders
error: the access tests are not valid (4 errors)
";
    assert_eq!(run.stderr, expected);
}

#[test]
fn a_path_without_test_files_is_an_error_not_a_pass() {
    let dir = workspace();
    std::fs::create_dir(dir.path().join("empty")).expect("mkdir");
    let run = accord_in(dir.path(), &["test", "empty", "--source", "config"]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.stderr
            .contains("no test files (*.yaml, *.yml) in empty"),
        "{}",
        run.stderr
    );
}

#[test]
fn tests_run_against_a_git_revision() {
    let dir = workspace();
    git(dir.path(), &["init", "-q"]);
    git(dir.path(), &["add", "config"]);
    git(dir.path(), &["commit", "-q", "-m", "the examples"]);
    git(dir.path(), &["tag", "reviewed"]);
    grant_a_new_org_admin(&dir.path().join("config"));
    git(dir.path(), &["add", "config"]);
    git(dir.path(), &["commit", "-q", "-m", "a new org admin"]);
    let at = |rev: &str| {
        accord_in(
            dir.path(),
            &[
                "test",
                "access-tests",
                "--repo",
                ".",
                "--rev",
                rev,
                "--path",
                "config",
            ],
        )
    };

    let reviewed = at("reviewed");
    assert_eq!(reviewed.code, 0, "{}{}", reviewed.stdout, reviewed.stderr);

    let head = at("HEAD");
    assert_eq!(head.code, 1, "{}{}", head.stdout, head.stderr);
    assert!(
        head.stdout.starts_with(
            "access-tests/org-admins.yaml:6:5: organization admins are exactly these three: "
        ),
        "{}",
        head.stdout
    );
    assert!(
        head.stdout.contains(
            "contact:mallory@mycompany.com  role user-svc:org:research:admin (enrollment mallory-org-admin, config/enrollments/mallory.yaml:1:3)"
        ),
        "{}",
        head.stdout
    );
}

#[test]
fn tests_run_against_the_database() {
    let dir = workspace();
    let database = "sqlite://accord.db";
    let apply = |config: &str| {
        let run = accord_in(
            dir.path(),
            &["apply", "--source", config, "--database", database],
        );
        assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    };
    let test = || {
        accord_in(
            dir.path(),
            &["test", "access-tests", "--database", database],
        )
    };

    apply("config");
    let applied = test();
    assert_eq!(applied.code, 0, "{}{}", applied.stdout, applied.stderr);

    grant_a_new_org_admin(&dir.path().join("config"));
    apply("config");
    let granted = test();
    assert_eq!(granted.code, 1, "{}{}", granted.stdout, granted.stderr);
    assert!(
        granted.stdout.contains(
            "contact:mallory@mycompany.com  role user-svc:org:research:admin (enrollment mallory-org-admin, database row enrollments (app `unnamed`, id `mallory-org-admin`))"
        ),
        "{}",
        granted.stdout
    );
}

#[test]
fn the_readme_example_holds_for_the_example_config() {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    let section = &readme[readme
        .find("### Access tests")
        .expect("an Access tests section")..];
    let body = &section[section.find("```yaml\n").expect("a YAML block") + 8..];
    let example = &body[..body.find("```").expect("the block's end")];
    let dir = workspace();
    std::fs::write(dir.path().join("readme.yaml"), example).expect("write");
    let run = accord_in(dir.path(), &["test", "readme.yaml", "--source", "config"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(run.stdout, "3 assertions, 0 failed\n");
}
