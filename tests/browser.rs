//! The operator's pages in a real browser (headless Chromium, from Debian's
//! package; `scripts/test` installs it): every page loads and runs its
//! script without a console message (a refused inline script or style would
//! log one), hostile text in a display name, in a diff and in a Git
//! commit's message and author executes nothing,
//! and screenshots of the pages, light and dark, desktop and 360 px wide,
//! are written under the test's output folder.

#[allow(dead_code)]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::controller::{documents, grant, Controller, Repo};
use common::db::{Backend, TestDb};

/// A name whose markup would run if a page let it through: each payload
/// writes to the console, which the test reads.
const HOSTILE: &str =
    "<script>console.error('xss-1')</script>\"><img src=x onerror=\"console.error('xss-2')\">";

fn chromium() -> String {
    std::env::var("ACCORD_TEST_CHROMIUM").unwrap_or_else(|_| {
        for candidate in ["chromium", "chromium-browser"] {
            if Command::new(candidate).arg("--version").output().is_ok() {
                return candidate.to_owned();
            }
        }
        panic!("no Chromium: run the suite with scripts/test, which installs Debian's `chromium`, or set ACCORD_TEST_CHROMIUM")
    })
}

struct Browser {
    binary: String,
    profile: tempfile::TempDir,
}

struct Loaded {
    dom: String,
    console: Vec<String>,
}

impl Browser {
    fn new() -> Browser {
        Browser {
            binary: chromium(),
            profile: tempfile::tempdir().expect("profile dir"),
        }
    }

    fn command(&self, dark: bool, width: u32) -> Command {
        let mut command = Command::new(&self.binary);
        command
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
            ])
            .arg(format!("--user-data-dir={}", self.profile.path().display()))
            .arg(format!("--window-size={width},900"))
            // Timers run ahead, so the page's script (relative times, the
            // first live refresh) has run before the DOM is taken.
            .arg("--virtual-time-budget=4000")
            .args(["--enable-logging=stderr", "--v=0"]);
        if dark {
            command.arg("--force-dark-mode");
        }
        command
    }

    /// The page's DOM after its script ran, and every console message.
    fn load(&self, url: &str) -> Loaded {
        let out = self
            .command(false, 1280)
            .arg("--dump-dom")
            .arg(url)
            .output()
            .expect("run chromium");
        let log = String::from_utf8_lossy(&out.stderr);
        Loaded {
            dom: String::from_utf8_lossy(&out.stdout).into_owned(),
            console: log
                .lines()
                .filter(|l| l.contains(":CONSOLE") || l.contains("xss"))
                .map(str::to_owned)
                .collect(),
        }
    }

    fn screenshot(&self, url: &str, file: &Path, dark: bool, width: u32) {
        let out = self
            .command(dark, width)
            .arg(format!("--screenshot={}", file.display()))
            .arg(url)
            .output()
            .expect("run chromium");
        assert!(
            file.metadata().map(|m| m.len() > 1000).unwrap_or(false),
            "no screenshot of {url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_runs_clean_in_chromium_and_hostile_text_stays_text() {
    let browser = Browser::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let db = TestDb::new(Backend::Sqlite).await;
    let folder = dir.path().join("config");
    copy_tree(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/config"),
        &folder,
    );
    let name = serde_json::to_string(HOSTILE).expect("json");
    std::fs::write(
        folder.join("orgs/hostile.yaml"),
        format!("slug: evil\nname: {name}\nmembers:\n  - userId: u-1\n    role: admin\n"),
    )
    .expect("write");
    // A Git source whose commit's message and author carry the payloads.
    let repo = Repo::init(&dir.path().join("repo"));
    repo.write("perms/p.yaml", &documents(&[grant("git-p", "svc:reader")]));
    repo.commit_raw(
        &format!("Grant git-p {HOSTILE}\n\nWhy: {HOSTILE}"),
        &format!("Mallory {HOSTILE} Jr"),
    );
    let config = dir.path().join("accord.yaml");
    std::fs::write(
        &config,
        format!(
            "database: {}\nsources:\n  - name: main\n    directory:\n      path: {}\n    drift: report\n    interval: 1h\n  - name: repo\n    git:\n      url: {}\n    interval: 1h\n",
            db.url,
            folder.display(),
            repo.url()
        ),
    )
    .expect("config");
    let accord = Controller::start(dir.path(), &config).await;
    for source in ["main", "repo"] {
        accord
            .wait_for(source, Duration::from_secs(60), |s| s["state"] == "Synced")
            .await;
    }
    // Drift whose diff carries the hostile text back: the row renamed by hand.
    db.exec("UPDATE organizations SET name = 'renamed by hand' WHERE slug = 'evil'")
        .await
        .expect("edit");
    let status = accord.settled("main", None).await;
    assert_eq!(status["state"], "OutOfSync", "{status}");

    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser-screenshots");
    std::fs::create_dir_all(&shots).expect("screenshot dir");
    let pages: [(&str, &str, &str); 8] = [
        ("overview", "/", "OutOfSync"),
        ("source", "/sources/main", "renamed by hand"),
        ("git-source", "/sources/repo", "Sync history"),
        ("audit", "/audit?source=main", "History"),
        (
            "object-history",
            "/audit?kind=Organization&app=unnamed&id=evil",
            "History of",
        ),
        ("organizations", "/organizations", "platform"),
        ("organization", "/organizations/evil", "Suspend GitOps"),
        (
            "access",
            "/access?contact=hana@mycompany.com&permission=payment-svc:payment:process",
            "allowed",
        ),
    ];
    for (name, path, expected) in pages {
        let url = format!("{}{path}", accord.url);
        let loaded = browser.load(&url);
        assert!(
            loaded.console.is_empty(),
            "{path}: the console says {:#?}",
            loaded.console
        );
        assert!(
            loaded.dom.contains(expected) || name == "audit",
            "{path}: {}",
            loaded.dom
        );
        // The script ran: it turned absolute times into relative ones.
        if loaded.dom.contains("<time") {
            assert!(
                loaded.dom.contains(" ago</time>"),
                "{path}: the script did not run"
            );
        }
        assert!(
            !loaded.dom.contains("<img"),
            "{path}: markup from a user got through"
        );
        for (dark, width, variant) in [
            (false, 1280, "light"),
            (true, 1280, "dark"),
            (false, 360, "light-360"),
            (true, 360, "dark-360"),
        ] {
            if width == 360 || ["overview", "source", "git-source", "organization"].contains(&name)
            {
                browser.screenshot(
                    &url,
                    &shots.join(format!("{name}-{variant}.png")),
                    dark,
                    width,
                );
            }
        }
    }
    // The hostile name shows as text on the organization's page, and the
    // commit's message and author on the overview (drawn again by the
    // script's live refresh) and the Git source's page.
    let shown = "&lt;script&gt;console.error('xss-1')&lt;/script&gt;";
    let org = browser.load(&format!("{}/organizations/evil", accord.url));
    assert!(org.dom.contains(shown), "{}", org.dom);
    for path in ["/", "/sources/repo"] {
        let page = browser.load(&format!("{}{path}", accord.url));
        assert!(
            page.dom.contains(&format!("Grant git-p {shown}")),
            "{path}: the message: {}",
            page.dom
        );
        assert!(
            page.dom.contains(&format!("Mallory {shown}")),
            "{path}: the author: {}",
            page.dom
        );
    }
}
