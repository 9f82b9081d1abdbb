//! `accord diff`, the pull-request preview, end to end: two folders and two
//! revisions of a real Git repository; access gained and lost through
//! contact wildcards, organization membership, an enrollment that holds in
//! every app and a deleted permit; errors naming their side; the Markdown
//! comment (summary first, collapsed details, capped, escaped); and
//! `accord plan --output markdown` against SQLite with drift.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::cli::{accord_in as accord, Run};
use serde_json::Value;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/config")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

/// The change every test previews, made to a copy of the examples in
/// `config`: everyone at acme.example.com becomes a payment processor, a
/// new admin joins the Platform organization, an on-call role holds in
/// every app, and the permit imported from 1Backend is deleted.
fn change(config: &Path) {
    write(
        &config.join("enrollments/acme.yaml"),
        "- id: acme-processors\n  role: payment-svc:processor\n  contactId: \"*@acme.example.com\"\n\
         - id: oncall-everywhere\n  role: order-svc:support\n  userId: usr-oncall-7\n  app: \"*\"\n",
    );
    let org = config.join("orgs/platform.yaml");
    let text = std::fs::read_to_string(&org).expect("org");
    let text = text.replace(
        "    - contactId: carol@mycompany.com\n      role: user\n",
        "    - contactId: carol@mycompany.com\n      role: user\n    - contactId: zed@mycompany.com\n      role: admin\n",
    );
    std::fs::write(&org, text).expect("write org");
    std::fs::remove_file(config.join("permits/imported-from-1backend.yaml")).expect("rm");
}

fn json(run: &Run) -> Value {
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout))
}

/// The holders of `permission` in `app` that the preview says gain
/// (`gained`) or lose (`lost`) it.
fn holders(preview: &Value, app: &str, permission: &str, which: &str) -> Vec<String> {
    preview["access"]["permissions"]
        .as_array()
        .expect("permissions")
        .iter()
        .filter(|p| p["app"] == app && p["permissionId"] == permission)
        .flat_map(|p| p[which].as_array().cloned().unwrap_or_default())
        .map(|h| h["holder"].as_str().expect("holder").to_owned())
        .collect()
}

/// Checks the preview of `change` from either kind of side.
fn check_preview(preview: &Value) {
    let summary = &preview["summary"];
    assert_eq!(summary["create"], 2, "{summary}");
    assert_eq!(summary["update"], 1, "{summary}");
    assert_eq!(summary["delete"], 1, "{summary}");

    let changes = preview["changes"].as_array().expect("changes");
    let org = changes
        .iter()
        .find(|c| c["id"] == "platform")
        .expect("the org");
    assert_eq!(org["action"], "update");
    assert_eq!(org["fields"][0]["field"], "members");
    assert!(
        org["place"]["file"]
            .as_str()
            .unwrap()
            .ends_with("orgs/platform.yaml"),
        "{org}"
    );
    assert!(org["place"]["line"].as_u64().unwrap() > 0);
    let deleted = changes
        .iter()
        .find(|c| c["action"] == "delete")
        .expect("a delete");
    assert!(
        deleted["place"]["file"]
            .as_str()
            .unwrap()
            .ends_with("permits/imported-from-1backend.yaml"),
        "a delete is placed in the base: {deleted}"
    );

    // Through a contact wildcard.
    assert_eq!(
        holders(preview, "unnamed", "payment-svc:payment:process", "gained"),
        ["contact:*@acme.example.com"]
    );
    // Through membership: the new admin of an organization.
    assert_eq!(
        holders(preview, "unnamed", "user-svc:org:add-user", "gained"),
        ["contact:zed@mycompany.com"]
    );
    let zed = &preview["access"]["permissions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["permissionId"] == "user-svc:org:add-user")
        .unwrap()["gained"][0]["paths"][0];
    assert_eq!(zed["pattern"], "user-svc:org:*:admin");
    assert_eq!(zed["grant"]["kind"], "membership");
    assert_eq!(zed["grant"]["role"], "user-svc:org:platform:admin");
    // An enrollment whose app is `*` holds in every app.
    for app in ["acme.example.com", "globex.example.com"] {
        assert_eq!(
            holders(preview, app, "order-svc:order:read", "gained"),
            ["user:usr-oncall-7"],
            "in {app}"
        );
    }
    // A deleted permit takes its holders with it.
    assert_eq!(
        holders(
            preview,
            "globex.example.com",
            "report-svc:report:export",
            "lost"
        ),
        ["slug:globex-reporting"]
    );
    assert_eq!(summary["permissionsGaining"], 4, "{summary}");
    assert_eq!(summary["permissionsLosing"], 1, "{summary}");
    // Only the wildcard is warned about.
    let warnings = preview["warnings"].as_array().expect("warnings");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].as_str().unwrap().contains("*@acme.example.com"),
        "{warnings:?}"
    );
}

#[test]
fn two_folders_show_object_changes_and_who_gains_and_loses_what() {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(&examples(), &dir.path().join("base"));
    copy_dir(&examples(), &dir.path().join("head"));
    change(&dir.path().join("head"));

    let preview = json(&accord(
        dir.path(),
        &[
            "diff", "--base", "base", "--head", "head", "--output", "json",
        ],
    ));
    check_preview(&preview);

    let text = accord(dir.path(), &["diff", "--base", "base", "--head", "head"]);
    assert_eq!(text.code, 0, "{}", text.stderr);
    let out = &text.stdout;
    assert!(
        out.contains("Summary: 2 to create, 1 to update, 1 to delete."),
        "{out}"
    );
    assert!(
        out.contains(
            "contact `*@acme.example.com` (every contact at `acme.example.com`) gains `payment-svc:payment:process` in app `unnamed` through role `payment-svc:processor`"
        ),
        "{out}"
    );
    assert!(out.contains("head/orgs/platform.yaml:"), "{out}");
    assert!(
        out.contains("warning: contact `*@acme.example.com`"),
        "{out}"
    );

    // --app keeps one app, and what holds in every app.
    let one = json(&accord(
        dir.path(),
        &[
            "diff",
            "--base",
            "base",
            "--head",
            "head",
            "--app",
            "globex.example.com",
            "--output",
            "json",
        ],
    ));
    let apps: Vec<&str> = one["access"]["permissions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["app"].as_str().unwrap())
        .collect();
    assert_eq!(apps, ["globex.example.com", "globex.example.com"]);
    assert_eq!(one["summary"]["create"], 1, "the every-app enrollment");
    assert_eq!(one["summary"]["delete"], 1);

    // The same folder on both sides: nothing.
    let same = json(&accord(
        dir.path(),
        &[
            "diff", "--base", "base", "--head", "base", "--output", "json",
        ],
    ));
    assert_eq!(same["changes"], Value::Array(vec![]));
    assert_eq!(same["access"]["permissions"], Value::Array(vec![]));
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn two_revisions_are_read_from_the_repository_without_a_checkout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = dir.path();
    git(repo, &["init", "-q", "-b", "main"]);
    copy_dir(&examples(), &repo.join("config"));
    write(&repo.join("README.md"), "not YAML, not read\n");
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "-m", "base"]);
    let base = git(repo, &["rev-parse", "HEAD"]);
    git(repo, &["checkout", "-q", "-b", "change"]);
    change(&repo.join("config"));
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "-m", "head"]);
    // What is checked out is neither side: revisions are read from objects.
    write(&repo.join("config/broken.yaml"), "{ not: [valid\n");
    std::fs::remove_dir_all(repo.join("config/orgs")).expect("rm");

    let preview = json(&accord(
        repo,
        &[
            "diff", "--repo", ".", "--path", "config", "--base", "main", "--head", "HEAD",
            "--output", "json",
        ],
    ));
    check_preview(&preview);
    assert_eq!(preview["base"]["revision"], base);
    let org = preview["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "platform")
        .unwrap();
    assert_eq!(org["place"]["file"], "config/orgs/platform.yaml");

    // Markdown from revisions names them.
    let md = accord(
        repo,
        &[
            "diff", "--repo", ".", "--path", "config", "--base", "main", "--head", "HEAD",
            "--output", "markdown",
        ],
    );
    assert_eq!(md.code, 0, "{}", md.stderr);
    assert!(
        md.stdout.starts_with("### accord diff: <code>main ("),
        "{}",
        md.stdout
    );

    // A revision that is not there is an error naming the side.
    let missing = accord(
        repo,
        &[
            "diff", "--repo", ".", "--path", "config", "--base", "nope", "--head", "HEAD",
        ],
    );
    assert_eq!(missing.code, 1);
    assert!(
        missing.stderr.contains("the base `nope`"),
        "{}",
        missing.stderr
    );
    let nowhere = accord(
        repo,
        &[
            "diff", "--repo", ".", "--path", "nowhere", "--base", "main", "--head", "HEAD",
        ],
    );
    assert_eq!(nowhere.code, 1);
    assert!(
        nowhere.stderr.contains("the head `HEAD`"),
        "{}",
        nowhere.stderr
    );

    // A revision with errors: each located, under a line naming the side.
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "-m", "broken"]);
    let broken = accord(
        repo,
        &[
            "diff", "--repo", ".", "--path", "config", "--base", "main", "--head", "HEAD",
        ],
    );
    assert_eq!(broken.code, 1, "{}", broken.stdout);
    assert!(
        broken.stderr.contains("the head `HEAD` is not valid"),
        "{}",
        broken.stderr
    );
    assert!(
        broken.stderr.contains("config/broken.yaml:"),
        "{}",
        broken.stderr
    );
}

#[test]
fn parse_errors_are_located_and_name_their_side() {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(&examples(), &dir.path().join("base"));
    copy_dir(&examples(), &dir.path().join("head"));
    write(
        &dir.path().join("head/permits/typo.yaml"),
        "- id: typo\n  permissionId: svc:do\n  slugz: [a]\n",
    );
    let run = accord(dir.path(), &["diff", "--base", "base", "--head", "head"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains("the head `head` is not valid (1 error)"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("head/permits/typo.yaml:3:3:"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("the base"), "{}", run.stderr);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
}

/// The text outside fenced code blocks: where Markdown and HTML are live.
fn outside_fences(markdown: &str) -> String {
    let mut out = String::new();
    let mut fence: Option<String> = None;
    for line in markdown.lines() {
        let ticks: String = line.chars().take_while(|c| *c == '`').collect();
        match &fence {
            Some(open) if ticks.len() >= open.len() && line.trim_end() == ticks => fence = None,
            Some(_) => {}
            None if ticks.len() >= 3 => fence = Some(ticks),
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

#[test]
fn markdown_is_a_pull_request_comment_summary_first_capped_and_escaped() {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(&examples(), &dir.path().join("base"));
    copy_dir(&examples(), &dir.path().join("head"));
    let head = dir.path().join("head");
    change(&head);
    // Values a file may hold that mean something to Markdown and HTML.
    let org = head.join("orgs/platform.yaml");
    let text = std::fs::read_to_string(&org).unwrap().replace(
        "name: Platform Engineering",
        "name: \"a|b<script>alert(1)</script> `x` **y**\"",
    );
    std::fs::write(&org, text).unwrap();
    write(
        &head.join("enrollments/hostile.yaml"),
        "- id: hostile\n  role: docs-svc:reader\n  contactId: \"a|b<script>`x`_y_@acme.example.com\"\n\
         - id: hostile-processor\n  role: payment-svc:processor\n  contactId: \"a|b<script>`x`_y_@acme.example.com\"\n",
    );
    // A big change: 3,000 permits, each granted to everyone at a domain.
    let mut permits = String::from("app: bulk.example.com\npermits:\n");
    for n in 0..3000 {
        permits.push_str(&format!(
            "  - id: bulk-{n:04}\n    permissionId: bulk-svc:thing{n}:read\n    roles: [bulk-svc:reader]\n"
        ));
    }
    permits.push_str(
        "enrollments:\n  - id: bulk-readers\n    role: bulk-svc:reader\n    contactId: \"*@bulk.example.com\"\n",
    );
    write(&head.join("bulk.yaml"), &permits);

    let run = accord(
        dir.path(),
        &[
            "diff", "--base", "base", "--head", "head", "--output", "markdown",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let md = run.stdout;
    assert!(
        md.chars().count() < 65_536,
        "{} characters",
        md.chars().count()
    );

    // The summary first: counts and the warning, before any details.
    let first_details = md.find("<details>").expect("collapsible details");
    let summary = &md[..first_details];
    assert!(summary.contains("**3,005** to create"), "{summary}");
    assert!(summary.contains("**1** to update"), "{summary}");
    assert!(summary.contains("**1** to delete"), "{summary}");
    assert!(
        summary.contains("**3,004 permissions** gaining holders"),
        "{summary}"
    );
    assert!(
        summary.contains("**1 permission** losing holders"),
        "{summary}"
    );
    assert!(summary.contains("[!WARNING]"), "{summary}");
    assert!(summary.contains("&#42;@acme.example.com"), "{summary}");
    // One line for what a pattern gains in one app, however much.
    assert!(
        summary.contains("(every contact at <code>bulk.example.com</code>) gains 3,000 permissions in app <code>bulk.example.com</code>: <code>bulk-svc:thing0:read</code>, "),
        "{summary}"
    );
    assert!(summary.contains(" and 2,997 more\n"), "{summary}");
    assert!(md.contains("<summary><b>Access impact</b>"), "{md}");
    assert!(
        md.contains("<summary><b>Object changes</b>: 3,005 create, 1 update, 1 delete</summary>"),
        "{md}"
    );
    let capped = md.matches("… and ").count();
    assert!(
        capped >= 2,
        "the permissions and the objects are capped: {md}"
    );
    assert_eq!(
        md.matches("<details>").count(),
        md.matches("</details>").count(),
        "every section is closed"
    );

    // Escaped wherever Markdown and HTML are live.
    let live = outside_fences(&md);
    for raw in ["<script>", "a|b", "`x`", "_y_", "**y**"] {
        assert!(!live.contains(raw), "`{raw}` unescaped in: {live}");
    }
    assert!(
        live.contains("a&#124;b&lt;script&gt;&#96;x&#96;&#95;y&#95;@acme.example.com"),
        "{live}"
    );
    // The hostile organization name shows in its diff, inside a fence.
    assert!(
        md.contains("+name: \"a|b<script>alert(1)</script> `x` **y**\""),
        "{md}"
    );
}

#[test]
fn plan_markdown_shows_changes_drift_and_the_access_they_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(&examples(), &dir.path().join("config"));
    let db = format!("sqlite://{}", dir.path().join("db").display());
    let apply = accord(
        dir.path(),
        &["apply", "--source", "config", "--database", &db],
    );
    assert_eq!(apply.code, 0, "{}{}", apply.stdout, apply.stderr);

    change(&dir.path().join("config"));
    // Someone grants a permit's permission to another role by hand.
    let edited = Command::new("sqlite3")
        .arg(dir.path().join("db"))
        .arg("UPDATE permits SET roles = '[\"payment-svc:processor\"]' WHERE id = 'billing-worker-invoices'")
        .status()
        .expect("sqlite3");
    assert!(edited.success());

    let plan = accord(
        dir.path(),
        &[
            "plan",
            "--source",
            "config",
            "--database",
            &db,
            "--output",
            "markdown",
        ],
    );
    assert_eq!(plan.code, 2, "pending: {}{}", plan.stdout, plan.stderr);
    let md = plan.stdout;
    assert!(
        md.starts_with("### accord plan: source <code>default</code>"),
        "{md}"
    );
    let first_details = md.find("<details>").expect("details");
    let summary = &md[..first_details];
    assert!(summary.contains("**2** to create"), "{summary}");
    assert!(summary.contains("**1** to update"), "{summary}");
    assert!(summary.contains("**1** to delete"), "{summary}");
    assert!(summary.contains("**1** drifted"), "{summary}");
    assert!(summary.contains("[!WARNING]"), "{summary}");
    assert!(
        md.contains("<summary><b>Drift: edited or deleted by hand</b>: 1 drift</summary>"),
        "{md}"
    );
    assert!(
        md.contains(
            "<code>billing-worker-invoices</code> · <code>config/permits/service-accounts.yaml"
        ),
        "{md}"
    );
    assert!(md.contains("edited by hand"), "{md}");
    // The access impact: live rows against the rows once applied. Putting
    // the drift back takes the permission from the role's holders again.
    assert!(
        md.contains(
            "contact <code>hana@mycompany.com</code> loses <code>payment-svc:invoice:create</code>"
        ),
        "{md}"
    );
    assert!(
        md.contains(
            "contact <code>zed@mycompany.com</code> gains <code>user-svc:org:add-user</code>"
        ),
        "{md}"
    );
    assert!(
        md.contains("database row"),
        "what is lost is held through rows: {md}"
    );
    assert!(
        md.contains(
            "slug <code>globex-reporting</code> loses <code>report-svc:report:export</code>"
        ),
        "{md}"
    );

    // The other formats still work; json is unchanged.
    let json = accord(
        dir.path(),
        &[
            "plan",
            "--source",
            "config",
            "--database",
            &db,
            "--output",
            "json",
        ],
    );
    assert_eq!(json.code, 2);
    let value: Value = serde_json::from_str(&json.stdout).expect("json");
    assert_eq!(value["summary"]["drift"], 1);
}

/// The commands the README shows for pull requests run as written, in a
/// repository whose base branch was fetched as `origin/main`.
#[test]
fn the_readme_commands_for_pull_requests_work_as_written() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let at = readme
        .find("### Check access in pull requests")
        .expect("the README's section");
    let section = &readme[at..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    let commands: Vec<String> = section
        .lines()
        .map(|line| line.trim_start_matches("  - run: ").trim())
        .filter(|line| line.starts_with("accord diff --repo"))
        .map(|line| {
            let line = line.split(" #").next().unwrap_or(line);
            let line = line.split(" > ").next().unwrap_or(line);
            line.replace("${{ github.base_ref }}", "main")
        })
        .collect();
    assert!(commands.len() >= 3, "{commands:?}");

    let dir = tempfile::tempdir().expect("tempdir");
    let repo = dir.path();
    git(repo, &["init", "-q", "-b", "main"]);
    copy_dir(&examples(), &repo.join("config"));
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "-m", "base"]);
    git(repo, &["update-ref", "refs/remotes/origin/main", "HEAD"]);
    git(repo, &["checkout", "-q", "-b", "change"]);
    change(&repo.join("config"));
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "-m", "head"]);
    for command in &commands {
        let words: Vec<&str> = command.split_whitespace().skip(1).collect();
        let run = accord(repo, &words);
        assert_eq!(run.code, 0, "{command}: {}", run.stderr);
        assert!(
            run.stdout.contains("payment-svc:payment:process"),
            "{command}: {}",
            run.stdout
        );
    }
}
