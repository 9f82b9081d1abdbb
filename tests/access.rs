//! `accord can`, `who-can` and `access` on the examples: from a folder, from
//! a Git revision, and from a database (SQLite and PostgreSQL), including a
//! row created by hand that accord does not manage.

#[allow(dead_code)]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::db::TestDb;
use serde_json::Value;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/config")
}

fn accord(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_accord"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("ACCORD_DATABASE_URL")
        .env_remove("ACCORD_SOURCE")
        .output()
        .expect("accord runs")
}

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            text(output),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn code(output: &Output) -> i32 {
    output.status.code().expect("exit code")
}

const FOLDER: &[&str] = &["--source", "examples/config"];

#[test]
fn can_explains_each_path_with_its_place_and_exits_0() {
    let mut args = vec![
        "can",
        "contact:hana@mycompany.com",
        "payment-svc:payment:process",
        "--explain",
    ];
    args.extend(FOLDER);
    let out = accord(&args);
    assert_eq!(code(&out), 0, "{}", text(&out));
    let shown = text(&out);
    assert!(
        shown.starts_with(
            "allowed: contact:hana@mycompany.com can payment-svc:payment:process in app unnamed\n"
        ),
        "{shown}"
    );
    assert!(
        shown.contains("enrollment hana-payment-processor (examples/config/enrollments/defaults.yaml:6:3) gives contact:hana@mycompany.com the role payment-svc:processor"),
        "{shown}"
    );
    assert!(
        shown.contains("→ permit order-service-payments (examples/config/permits/service-accounts.yaml:3:3) grants payment-svc:payment:process to payment-svc:processor"),
        "{shown}"
    );
    args.extend(["--output", "json"]);
    let decision = json(&accord(&args));
    assert_eq!(decision["allowed"], true);
    let path = &decision["paths"][0];
    assert_eq!(path["grant"]["kind"], "enrollment");
    assert_eq!(path["grant"]["id"], "hana-payment-processor");
    assert_eq!(
        path["grant"]["place"]["file"],
        "examples/config/enrollments/defaults.yaml"
    );
    assert_eq!(path["grant"]["place"]["line"], 6);
    assert_eq!(path["permit"]["id"], "order-service-payments");
    assert_eq!(path["pattern"], "payment-svc:processor");
}

#[test]
fn a_denial_exits_2_and_names_the_permits_that_grant_it() {
    let mut args = vec!["can", "user:nobody", "payment-svc:payment:process"];
    args.extend(FOLDER);
    let out = accord(&args);
    assert_eq!(code(&out), 2, "{}", text(&out));
    let shown = text(&out);
    assert!(
        shown.starts_with("denied: user:nobody cannot payment-svc:payment:process\n"),
        "{shown}"
    );
    assert!(
        shown.contains("permit order-service-payments in app unnamed to roles payment-svc:processor and slugs order-service (examples/config/permits/service-accounts.yaml:3:3)"),
        "{shown}"
    );
    // The app narrows: in acme only the acme permit is named.
    args.extend(["--app", "acme.example.com", "--output", "json"]);
    let decision = json(&accord(&args));
    assert_eq!(decision["allowed"], false);
    let permits: Vec<&str> = decision["permits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["app"].as_str().unwrap())
        .collect();
    assert_eq!(permits, ["acme.example.com"]);
}

#[test]
fn who_can_lists_org_admins_through_a_role_pattern() {
    let mut args = vec!["who-can", "user-svc:org:add-user", "--output", "json"];
    args.extend(FOLDER);
    let who = json(&accord(&args));
    let holders: Vec<(&str, &str)> = who["apps"]["unnamed"]
        .as_array()
        .expect("app unnamed")
        .iter()
        .map(|h| {
            (
                h["holder"].as_str().unwrap(),
                h["path"]["grant"]["role"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        holders,
        [
            ("user:usr-fatima-1177", "user-svc:org:support:admin"),
            ("contact:alice@mycompany.com", "user-svc:org:platform:admin"),
            ("contact:dana@mycompany.com", "user-svc:org:research:admin"),
        ]
    );
    let grant = &who["apps"]["unnamed"][0]["path"]["grant"];
    assert_eq!(grant["kind"], "membership");
    assert_eq!(grant["memberRole"], "admin");
}

#[test]
fn usage_errors_exit_1() {
    for args in [
        &["can", "bob", "x:y", "--source", "examples/config"][..],
        &[
            "can",
            "user:a",
            "user:b",
            "x:y",
            "--source",
            "examples/config",
        ],
        &["can", "user:a", "x:y"],
        &[
            "can",
            "user:a",
            "x:y",
            "--source",
            "examples/config",
            "--database",
            "sqlite://x.db",
        ],
        &[
            "who-can",
            "x:y",
            "--database",
            "sqlite:///nonexistent/accord.db",
        ],
        &["who-can", "x:y", "--repo", ".", "--rev", "no-such-revision"],
    ] {
        let out = accord(args);
        assert_eq!(
            code(&out),
            1,
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let missing = accord(&[
        "who-can",
        "x:y",
        "--database",
        "sqlite:///nonexistent/accord.db",
    ]);
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("no database at /nonexistent/accord.db"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
    assert!(!Path::new("/nonexistent/accord.db").exists());
}

fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .current_dir(dir)
        .status()
        .expect("git runs");
    assert!(status.success(), "git {args:?}");
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir").flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

#[test]
fn a_git_revision_is_read_from_the_repository_without_a_checkout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = dir.path();
    git(repo, &["init", "-q", "-b", "main"]);
    copy_tree(&examples(), &repo.join("config"));
    git(repo, &["add", "."]);
    git(repo, &["commit", "-q", "-m", "examples"]);
    std::fs::write(
        repo.join("config/enrollments/refunds.yaml"),
        "id: ivan-processor\nrole: payment-svc:processor\nuserId: usr-ivan-3093\n",
    )
    .expect("write");
    git(repo, &["add", "."]);
    git(repo, &["commit", "-q", "-m", "ivan processes payments"]);
    // The working copy moves on; the revisions are read from objects.
    std::fs::remove_dir_all(repo.join("config")).expect("rm");
    let repo_arg = repo.to_str().unwrap();
    let ask = |rev: &str| {
        accord(&[
            "can",
            "user:usr-ivan-3093",
            "payment-svc:payment:process",
            "--repo",
            repo_arg,
            "--rev",
            rev,
            "--path",
            "config",
            "--explain",
        ])
    };
    let before = ask("HEAD~1");
    assert_eq!(code(&before), 2, "{}", text(&before));
    let after = ask("main");
    assert_eq!(code(&after), 0, "{}", text(&after));
    assert!(
        text(&after).contains("enrollment ivan-processor (config/enrollments/refunds.yaml:1:1)"),
        "{}",
        text(&after)
    );
    let access = json(&accord(&[
        "access",
        "user:usr-ivan-3093",
        "--repo",
        repo_arg,
        "--rev",
        "HEAD",
        "--path",
        "config",
        "--output",
        "json",
    ]));
    let held: Vec<&str> = access["apps"]["unnamed"]
        .as_array()
        .expect("unnamed")
        .iter()
        .map(|p| p["permissionId"].as_str().unwrap())
        .collect();
    assert!(held.contains(&"payment-svc:payment:process"), "{held:?}");
}

both_backends!(
    the_database_counts_rows_accord_does_not_manage,
    |backend| async move {
        let db = TestDb::new(backend).await;
        let applied = accord(&[
            "apply",
            "--source",
            "examples/config",
            "--database",
            &db.url,
        ]);
        assert_eq!(
            code(&applied),
            0,
            "{}",
            String::from_utf8_lossy(&applied.stderr)
        );
        let ask = || {
            accord(&[
                "can",
                "contact:mallory@evil.example",
                "payment-svc:payment:process",
                "--database",
                &db.url,
                "--output",
                "json",
            ])
        };
        assert_eq!(code(&ask()), 2);
        // An enrollment written straight into the database, bypassing Git.
        db.exec(
            "INSERT INTO enrollments (app, id, role, contact_id) \
         VALUES ('unnamed', 'backdoor', 'payment-svc:processor', 'mallory@evil.example')",
        )
        .await
        .expect("insert by hand");
        let out = ask();
        assert_eq!(code(&out), 0, "{}", text(&out));
        let decision = json(&out);
        let grant = &decision["paths"][0]["grant"];
        assert_eq!(grant["id"], "backdoor");
        assert_eq!(
            grant["place"],
            serde_json::json!({"table": "enrollments", "app": "unnamed", "id": "backdoor"})
        );
        // who-can shows it beside the declared holders, placed by its row.
        let who = text(&accord(&[
            "who-can",
            "payment-svc:payment:process",
            "--database",
            &db.url,
        ]));
        assert!(
        who.contains("contact:mallory@evil.example  role payment-svc:processor (enrollment backdoor, database row enrollments (app `unnamed`, id `backdoor`))"),
        "{who}"
    );
        assert!(who.contains("contact:hana@mycompany.com"), "{who}");

        // The library answers exactly what the CLI prints (and the API serves).
        let state = accord::cli::state::load(
            &accord::cli::state::StateSpec::Database(db.url.clone()),
            accord::source::DEFAULT_MAX_FILE_SIZE,
        )
        .await
        .expect("load");
        let subject = accord::access::Subject::parse(["contact:mallory@evil.example"]).unwrap();
        let expected = serde_json::to_value(state.into_access().can(
            &subject,
            "payment-svc:payment:process",
            None,
        ))
        .unwrap();
        assert_eq!(decision, expected);
    }
);

#[test]
fn an_enrollment_of_every_app_holds_in_each_and_survives_export() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config");
    copy_tree(&examples(), &config);
    std::fs::write(
        config.join("enrollments/global.yaml"),
        "id: root-everywhere\nrole: report-svc:auditor\nuserId: root\napp: \"*\"\n---\n\
         app: globex.example.com\npermits:\n  - id: audit\n    permissionId: report-svc:audit\n    roles: [report-svc:auditor]\n",
    )
    .expect("write");
    let config_arg = config.to_str().unwrap();
    let out = accord(&[
        "can",
        "user:root",
        "report-svc:audit",
        "--source",
        config_arg,
        "--explain",
    ]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(
        text(&out).contains("app globex.example.com: enrollment root-everywhere"),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("in every app"), "{}", text(&out));
    // Stored, exported and read back unchanged.
    let db = format!("sqlite://{}", dir.path().join("a.db").display());
    assert_eq!(
        code(&accord(&[
            "apply",
            "--source",
            config_arg,
            "--database",
            &db
        ])),
        0
    );
    let exported = dir.path().join("export");
    let out = accord(&[
        "export",
        "--database",
        &db,
        "--out",
        exported.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let plan = accord(&[
        "plan",
        "--source",
        exported.to_str().unwrap(),
        "--database",
        &db,
    ]);
    assert_eq!(code(&plan), 0, "{}", text(&plan));
    let out = accord(&["can", "user:root", "report-svc:audit", "--database", &db]);
    assert_eq!(code(&out), 0, "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accord_ui_browses_a_database_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = format!("sqlite://{}", dir.path().join("a.db").display());
    assert_eq!(
        code(&accord(&[
            "apply",
            "--source",
            "examples/config",
            "--database",
            &db
        ])),
        0
    );
    let ui =
        common::controller::Controller::start_with(dir.path(), &["ui", "--database", &db]).await;
    for (path, status) in [
        ("/", 200),
        ("/organizations", 200),
        ("/organizations/platform", 200),
        ("/audit?kind=Permit", 200),
        (
            "/access?contact=hana@mycompany.com&permission=payment-svc:payment:process",
            200,
        ),
    ] {
        let response = reqwest::get(format!("{}{path}", ui.url))
            .await
            .expect("get");
        assert_eq!(response.status().as_u16(), status, "{path}");
        let body = response.text().await.expect("body");
        if path.starts_with("/access") {
            assert!(body.contains("✓ allowed"), "{body}");
        }
    }
    let (status, problem) = ui
        .post("/api/v1/organizations/platform/gitops/disable", None)
        .await;
    assert_eq!(status, 403, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("only reads"));
    let gitops = Command::new("sqlite3")
        .arg(dir.path().join("a.db"))
        .arg("SELECT gitops FROM organizations WHERE slug = 'platform'")
        .output()
        .expect("sqlite3");
    assert_eq!(String::from_utf8_lossy(&gitops.stdout).trim(), "1");
    // No database there: refused, and none is created.
    let missing = dir.path().join("missing.db");
    let out = accord(&[
        "ui",
        "--database",
        &format!("sqlite://{}", missing.display()),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(code(&out), 1);
    assert!(!missing.exists());
}
