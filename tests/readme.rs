//! What the README tells a new user works as written: the first command and
//! `accord run --config examples/accord.yaml` after it agree, the
//! walkthrough prints what it says, and the configuration it shows is the
//! real `examples/accord.yaml`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::controller::Controller;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn readme() -> String {
    std::fs::read_to_string(repo().join("README.md")).expect("README.md")
}

/// The fenced block that follows `marker` in the README.
fn block_after(marker: &str) -> String {
    let text = readme();
    let at = text
        .find(marker)
        .unwrap_or_else(|| panic!("README lost `{marker}`"));
    let open = at + text[at..].find("```").expect("a block");
    let body = open + text[open..].find('\n').expect("fence line") + 1;
    let close = body + text[body..].find("```").expect("closing fence");
    text[body..close].to_owned()
}

/// A folder holding a copy of `examples/`, as a clone's root would.
fn workspace() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let status = Command::new("cp")
        .arg("-r")
        .arg(repo().join("examples"))
        .arg(dir.path())
        .status()
        .expect("cp");
    assert!(status.success());
    dir
}

fn accord(dir: &Path, args: &[&str], database: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_accord"));
    command
        .args(args)
        .current_dir(dir)
        .env("ACCORD_COLOR", "never")
        .env_remove("ACCORD_DATABASE_URL");
    if let Some(url) = database {
        command.env("ACCORD_DATABASE_URL", url);
    }
    command.output().expect("run accord")
}

#[test]
fn the_configuration_the_readme_shows_is_examples_accord_yaml() {
    let shown = block_after("The configuration file (`examples/accord.yaml`):");
    let real = std::fs::read_to_string(repo().join("examples/accord.yaml")).expect("file");
    assert_eq!(
        shown, real,
        "the README's configuration block drifted from the file"
    );
    let parsed = accord::config::parse("examples/accord.yaml", &real, &Default::default());
    assert!(parsed.is_ok(), "{parsed:?}");
}

#[test]
fn the_walkthrough_prints_what_it_says() {
    let dir = workspace();
    let db = Some("sqlite://walkthrough.db");
    let run = |args: &[&str]| accord(dir.path(), args, db);
    let text = |out: &Output| {
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    };

    assert_eq!(run(&["validate", "examples/config"]).status.code(), Some(0));
    let plan = run(&["plan", "--source", "examples/config"]);
    assert_eq!(plan.status.code(), Some(2));
    assert!(text(&plan).contains("21 to create"), "{}", text(&plan));
    assert_eq!(
        run(&["apply", "--source", "examples/config"]).status.code(),
        Some(0)
    );
    assert_eq!(
        run(&["plan", "--source", "examples/config"]).status.code(),
        Some(0)
    );

    let edited = Command::new("sqlite3")
        .current_dir(dir.path())
        .args([
            "walkthrough.db",
            "UPDATE permits SET permission_id = 'payment-svc:payment:refund' WHERE id = 'order-service-payments'",
        ])
        .status()
        .expect("sqlite3");
    assert!(edited.success());
    let drift = run(&["plan", "--source", "examples/config"]);
    assert_eq!(drift.status.code(), Some(2));
    let shown = text(&drift);
    assert!(
        shown.contains("drift") && shown.contains("-permissionId: payment-svc:payment:refund"),
        "{shown}"
    );
    assert_eq!(
        run(&["apply", "--source", "examples/config"]).status.code(),
        Some(0)
    );
    let audit = run(&["audit", "--limit", "1"]);
    assert!(text(&audit).contains("drift_corrected"), "{}", text(&audit));
    assert_eq!(run(&["audit", "verify"]).status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_command_and_the_example_configuration_agree() {
    let dir = workspace();
    let first = accord(
        dir.path(),
        &[
            "apply",
            "--source",
            "examples/config",
            "--source-name",
            "examples",
        ],
        None,
    );
    assert_eq!(
        first.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );

    let controller = Controller::start(dir.path(), &dir.path().join("examples/accord.yaml")).await;
    let status = controller
        .wait_for("examples", Duration::from_secs(30), |s| {
            s["lastSuccessAt"].is_string()
        })
        .await;
    assert_eq!(status["state"], "Synced", "{status:#}");
    assert_eq!(status["counts"]["conflicts"], 0, "{status:#}");
    assert_eq!(
        status["counts"]["created"], 0,
        "the first command applied it all"
    );
}

/// Every path the README's Layout section names exists, and every module
/// and file under `src/` is named there.
#[test]
fn the_layout_section_matches_the_tree() {
    let text = readme();
    let start = text.find("### Layout").expect("a Layout section");
    let section = &text[start..];
    let section = &section[..section[3..].find("\n#").map_or(section.len(), |i| i + 3)];
    let named: Vec<&str> = section
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|name| name.contains('.') || name.ends_with('/') || name.starts_with("src/"))
        .collect();
    // A name is a path from the root, or within the `src/` folder named
    // before it.
    let exists = |path: &Path| {
        let path = repo().join(path);
        path.exists() || path.with_extension("rs").exists()
    };
    let (mut folder, mut sub) = (PathBuf::new(), PathBuf::new());
    for name in &named {
        let bare = name.trim_end_matches('/');
        assert!(
            exists(Path::new(bare)) || exists(&folder.join(bare)) || exists(&sub.join(bare)),
            "the Layout names `{name}`, which is neither in the root nor in `{}`",
            folder.display()
        );
        if repo().join(bare).is_dir() {
            folder = PathBuf::from(bare);
            sub = folder.clone();
        } else if name.ends_with('/') && repo().join(folder.join(bare)).is_dir() {
            sub = folder.join(bare);
        }
    }
    for entry in std::fs::read_dir(repo().join("src")).expect("src") {
        let name = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        if name == "lib.rs" {
            continue;
        }
        let module = format!("src/{}", name.trim_end_matches(".rs"));
        assert!(
            section.contains(&module),
            "the Layout does not name `{module}`"
        );
    }
}

/// Each command of the access block runs, and where the README shows its
/// output (the `# ` lines after it), prints exactly that.
#[test]
fn the_access_examples_print_what_they_say() {
    let dir = workspace();
    let block = block_after("### Who can do what, and why");
    let mut lines = block.lines().peekable();
    let mut ran = 0;
    while let Some(line) = lines.next() {
        let Some(command) = line.strip_prefix("accord ") else {
            continue;
        };
        let command = command.split("  #").next().unwrap_or_default();
        let args: Vec<&str> = command.split_whitespace().collect();
        let out = accord(dir.path(), &args, None);
        assert_eq!(
            out.status.code(),
            Some(0),
            "accord {command}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut shown = String::new();
        while let Some(comment) = lines.peek().and_then(|l| l.strip_prefix("# ")) {
            shown.push_str(comment);
            shown.push('\n');
            lines.next();
        }
        if !shown.is_empty() {
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                shown,
                "accord {command}"
            );
        }
        ran += 1;
    }
    assert_eq!(ran, 3, "the block's commands");
}
