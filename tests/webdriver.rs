//! The operator's pages driven as a person uses them, through WebDriver:
//! chromedriver (Debian's `chromium-driver`; scripts/test installs it) and
//! headless Chromium, against a real `accord run` with seeded data. A hand
//! edit in the database shows up as drift, with its diff, on a page that is
//! not reloaded; audit filters live in the URL; the buttons that change
//! something need the token; the keyboard reaches them; and both backends
//! serve the pages. Every page visited leaves the browser's console empty:
//! a console error or a refused inline script (the Content-Security-Policy
//! reports it there) fails the test, and one test shows that a deliberate
//! violation is caught.

#[allow(dead_code)]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::controller::{free_port, Controller};
use common::db::{Backend, TestDb};
use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::key::Key;
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

/// How long anything on a page may take to happen: generous, for a busy
/// two-core machine; a wait ends as soon as the thing happened.
const WAIT: Duration = Duration::from_secs(60);

const TOKEN: &str = "webdriver-test-token";

/// The first of `names` found on the `PATH`, or what `variable` says.
fn program(variable: &str, names: &[&str], package: &str) -> PathBuf {
    if let Ok(path) = std::env::var(variable) {
        return PathBuf::from(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!("no {names:?}: run the suite with scripts/test, which installs Debian's `{package}`, or set {variable}")
        })
}

/// chromedriver on a loopback port, in a process group of its own so that
/// the Chromium it starts goes with it. Killed when dropped.
struct Driver {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Driver {
    async fn start(dir: &Path) -> Driver {
        use std::os::unix::process::CommandExt;
        let port = free_port();
        let log = dir.join("chromedriver.log");
        let child = Command::new(program(
            "ACCORD_TEST_CHROMEDRIVER",
            &["chromedriver"],
            "chromium-driver",
        ))
        .arg(format!("--port={port}"))
        .arg(format!("--log-path={}", log.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("start chromedriver");
        let driver = Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
        };
        let client = reqwest::Client::new();
        let ready = common::controller::eventually(WAIT, || async {
            match client.get(format!("{}/status", driver.url)).send().await {
                Ok(answer) => answer
                    .json::<Value>()
                    .await
                    .is_ok_and(|s| s["value"]["ready"] == true),
                Err(_) => false,
            }
        })
        .await;
        assert!(
            ready,
            "chromedriver did not come up:\n{}",
            driver.log_text()
        );
        driver
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The whole group: chromedriver and every Chromium process it started.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.wait();
    }
}

/// The browser's console since the last read, through chromedriver's log
/// endpoint (`goog:loggingPrefs` asks it to keep every entry).
#[derive(Debug)]
struct ConsoleLog;

impl WebDriverCompatibleCommand for ConsoleLog {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(json!({"type": "browser"}).to_string()),
        )
    }
}

/// One Chromium session on one accord.
struct Browser {
    client: Client,
    base: String,
    driver: Driver,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start(base: &str) -> Browser {
        let profile = tempfile::tempdir().expect("profile dir");
        let driver = Driver::start(profile.path()).await;
        let chromium = program(
            "ACCORD_TEST_CHROMIUM",
            &["chromium", "chromium-browser"],
            "chromium",
        );
        let capabilities = json!({
            "browserName": "chrome",
            // Dialogs (the confirmation, the token prompt) stay open until
            // the test answers them.
            "unhandledPromptBehavior": "ignore",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().join("chromium").display()),
                ],
            },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("an object literal")
        };
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&driver.url)
            .await
            .unwrap_or_else(|e| panic!("no WebDriver session: {e}\n{}", driver.log_text()));
        Browser {
            client,
            base: base.to_owned(),
            driver,
            _profile: profile,
        }
    }

    /// Opens `path` on accord, waits for it to load, and checks the console.
    async fn open(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap_or_else(|e| panic!("open {path}: {e}"));
        self.assert_clean(path).await;
    }

    /// Every console entry since the last read.
    async fn console(&self) -> Vec<Value> {
        let entries = self
            .client
            .issue_cmd(ConsoleLog)
            .await
            .unwrap_or_else(|e| panic!("read the console: {e}\n{}", self.driver.log_text()));
        entries.as_array().cloned().unwrap_or_default()
    }

    /// The pages log nothing: any entry is an error, a refused script or
    /// style, or a failed request.
    async fn assert_clean(&self, what: &str) {
        self.assert_console(what, &[]).await;
    }

    /// The console holds exactly one entry per item of `expected`, each
    /// containing that text: a request the server refused on purpose is
    /// logged by the browser itself.
    async fn assert_console(&self, what: &str, expected: &[&str]) {
        let entries = self.console().await;
        let messages: Vec<&str> = entries
            .iter()
            .map(|e| e["message"].as_str().unwrap_or_default())
            .collect();
        assert!(
            messages.len() == expected.len()
                && messages.iter().zip(expected).all(|(m, e)| m.contains(e)),
            "{what}: the console says {entries:#?}"
        );
    }

    /// The value of a JavaScript expression on the page.
    async fn value(&self, expression: &str) -> Value {
        self.js(&format!("return {expression}")).await
    }

    /// Runs a function body on the page and returns what it returns.
    async fn js(&self, script: &str) -> Value {
        self.client
            .execute(script, Vec::new())
            .await
            .unwrap_or_else(|e| panic!("{script}: {e}"))
    }

    /// Polls `script` (a function body) until it returns something truthy,
    /// and returns that.
    async fn until(&self, what: &str, script: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let value = self.js(script).await;
            let truthy = !matches!(&value, Value::Null | Value::Bool(false))
                && value != json!("")
                && value != json!(0);
            if truthy {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; the page says:\n{}",
                self.js("return document.body.innerText").await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    /// The text of the dialog the page opened (a confirmation or a prompt),
    /// once it is open.
    async fn dialog(&self, what: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(text) = self.client.get_alert_text().await {
                return text;
            }
            assert!(Instant::now() < deadline, "no dialog for {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Presses Tab until the focused element matches `css`: the element is
    /// reachable from the keyboard.
    async fn tab_to(&self, css: &str) {
        let script = format!("return document.activeElement.matches({})", json!(css));
        for _ in 0..60 {
            if self.js(&script).await == true {
                return;
            }
            let tab = char::from(Key::Tab);
            let press = KeyActions::new("keyboard".into())
                .then(KeyAction::Down { value: tab })
                .then(KeyAction::Up { value: tab });
            self.client.perform_actions(press).await.expect("press Tab");
        }
        panic!(
            "Tab never reaches {css}; it stops at {}",
            self.js("return document.activeElement.outerHTML").await
        );
    }

    async fn close(self) {
        self.assert_clean("the last page").await;
        let _ = self.client.close().await;
    }
}

/// `accord run` over a database seeded from examples/config by its first
/// sync: the source `main` reports drift and leaves it in place, and the
/// source `broken` reads a folder with a mistake in it.
struct Site {
    db: TestDb,
    accord: Controller,
    _dir: tempfile::TempDir,
}

impl Site {
    /// `interval` is how often `main` reads the database again, which is
    /// when it notices a hand edit.
    async fn start(backend: Backend, interval: &str) -> Site {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = TestDb::new(backend).await;
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/config");
        let broken = dir.path().join("broken");
        std::fs::create_dir_all(&broken).expect("mkdir");
        std::fs::write(
            broken.join("typo.yaml"),
            "permissionId: svc:read\nrolez: [svc:reader]\n",
        )
        .expect("write");
        let token = dir.path().join("api-token");
        std::fs::write(&token, TOKEN).expect("token");
        let config = dir.path().join("accord.yaml");
        std::fs::write(
            &config,
            format!(
                "database: {}\napiTokenFile: {}\nsources:\n  - name: main\n    directory:\n      path: {}\n    drift: report\n    interval: {interval}\n  - name: broken\n    directory:\n      path: {}\n    interval: 1h\n",
                db.url,
                token.display(),
                examples.display(),
                broken.display()
            ),
        )
        .expect("config");
        let accord = Controller::start(dir.path(), &config).await;
        accord
            .wait_for("main", WAIT, |s| s["state"] == "Synced")
            .await;
        accord
            .wait_for("broken", WAIT, |s| s["state"] == "Error")
            .await;
        Site {
            db,
            accord,
            _dir: dir,
        }
    }
}

/// Opens the overview, which shows each source's state.
async fn open_overview(browser: &Browser) {
    browser.open("/").await;
    assert_eq!(browser.value(&state_of("main")).await, "Synced");
    assert_eq!(browser.value(&state_of("broken")).await, "Error");
}

/// The state a row of the overview's table shows (an expression).
fn state_of(source: &str) -> String {
    format!(
        "document.querySelector('#sources tr[data-source={}] [data-field=state] .badge')?.dataset.state",
        json!(source)
    )
}

/// The text of the open-item row for object `id`, in the `drift` list of
/// the page, once it is there.
fn drift_row(id: &str) -> String {
    format!(
        "const row = [...document.querySelectorAll('[data-live=drift] tbody tr')].find((r) => JSON.parse(r.dataset.key)[3] === {}); return row ? row.innerText : null",
        json!(id)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_edit_shows_as_drift_with_its_diff_without_a_reload() {
    let site = Site::start(Backend::Sqlite, "1s").await;
    let browser = Browser::start(&site.accord.url).await;

    open_overview(&browser).await;
    assert_eq!(browser.js(&drift_row("platform")).await, Value::Null);
    browser.js("window.accordMarker = 'not reloaded'").await;

    let edited = site
        .db
        .exec("UPDATE organizations SET name = 'Renamed by hand' WHERE slug = 'platform'")
        .await
        .expect("edit");
    assert_eq!(edited, 1);
    let row = browser
        .until("the drift on the overview", &drift_row("platform"))
        .await;
    let row = row.as_str().unwrap_or_default();
    assert!(
        row.contains("main") && row.contains("Organization"),
        "{row}"
    );
    // The diff (from the row as edited to the row as declared) is in the
    // row, inside a closed disclosure: in the DOM, not in innerText.
    let diff = browser
        .js("return document.querySelector('[data-live=drift] tbody pre.diff').textContent")
        .await;
    let diff = diff.as_str().unwrap_or_default();
    assert!(
        diff.contains("-name: \"Renamed by hand\"")
            && diff.contains("+name: \"Platform Engineering\""),
        "{diff}"
    );
    browser
        .until(
            "the source's state",
            &format!("return {} === 'OutOfSync'", state_of("main")),
        )
        .await;
    assert_eq!(
        browser
            .js("return document.querySelector('#sources tr[data-source=main] [data-field=drift]').textContent")
            .await,
        "1"
    );
    assert_eq!(
        browser.js("return window.accordMarker").await,
        "not reloaded",
        "the page was reloaded"
    );
    browser.assert_clean("the overview after the edit").await;

    // The source's page keeps its drift list current too, in place: the
    // diff a person opened stays open, and text they selected stays
    // selected, while a second edit appears.
    browser.open("/sources/main").await;
    browser
        .click("[data-live=drift] tbody tr:first-child summary")
        .await;
    browser
        .js("const note = document.querySelector('[data-live=drift] tbody tr:first-child .note'); getSelection().selectAllChildren(note); window.accordMarker = 'not reloaded'")
        .await;
    let selected = browser.js("return getSelection().toString()").await;
    assert!(
        selected.as_str().is_some_and(|s| !s.is_empty()),
        "{selected}"
    );
    site.db
        .exec("UPDATE organizations SET name = 'Also renamed' WHERE slug = 'research'")
        .await
        .expect("edit");
    let row = browser
        .until(
            "the second drift on the source's page",
            &drift_row("research"),
        )
        .await;
    assert!(
        row.as_str().is_some_and(|r| r.contains("Organization")),
        "{row}"
    );
    assert_eq!(
        browser.js("return window.accordMarker").await,
        "not reloaded"
    );
    assert_eq!(
        browser
            .js("const row = [...document.querySelectorAll('[data-live=drift] tbody tr')].find((r) => JSON.parse(r.dataset.key)[3] === 'platform'); return row.querySelector('details').open")
            .await,
        true,
        "the open diff was closed by the refresh"
    );
    assert_eq!(
        browser.js("return getSelection().toString()").await,
        selected,
        "the selection was lost"
    );
    assert_eq!(
        browser
            .js("return document.querySelector('[data-live=state] .badge').dataset.state")
            .await,
        "OutOfSync"
    );
    browser.close().await;
}

/// The `#` of every row the audit page shows.
const AUDIT_ROWS: &str =
    "return [...document.querySelectorAll('#audit tbody tr')].map((r) => Number(r.dataset.seq))";

/// The kind and object of every row the audit page shows.
const AUDIT_OBJECTS: &str =
    "return [...document.querySelectorAll('#audit tbody tr')].map((r) => r.cells[3].innerText)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_filters_narrow_the_rows_and_survive_a_reload_from_the_url() {
    let site = Site::start(Backend::Sqlite, "1h").await;
    let browser = Browser::start(&site.accord.url).await;

    browser.open("/audit").await;
    let all = browser.js(AUDIT_ROWS).await;
    let all = all.as_array().map(Vec::len).unwrap_or_default();
    assert!(all > 3, "{all} rows before filtering");

    for (name, value) in [("kind", "Organization"), ("app", "unnamed")] {
        browser
            .client
            .find(Locator::Css(&format!("form.filters input[name={name}]")))
            .await
            .expect("filter field")
            .send_keys(value)
            .await
            .expect("type");
    }
    browser.click("form.filters button[type=submit]").await;
    browser
        .until(
            "the filtered page",
            "return document.readyState === 'complete' && location.search.includes('kind=Organization')",
        )
        .await;
    browser.assert_clean("the filtered audit page").await;
    let url = browser.client.current_url().await.expect("url");
    let query: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    assert!(
        query.contains(&("kind".into(), "Organization".into()))
            && query.contains(&("app".into(), "unnamed".into())),
        "{url}"
    );
    let filtered = browser.js(AUDIT_ROWS).await;
    let objects = browser.js(AUDIT_OBJECTS).await;
    let objects: Vec<&str> = objects
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let expected = site
        .db
        .scalar("SELECT COUNT(*) FROM audit_log WHERE kind = 'Organization' AND app = 'unnamed'")
        .await;
    assert_eq!(objects.len() as i64, expected.min(50), "{objects:?}");
    assert!(objects.len() < all, "the filter narrowed nothing");
    assert!(
        objects
            .iter()
            .all(|o| o.starts_with("Organization unnamed/")),
        "{objects:?}"
    );

    // The URL alone brings back the same form and rows: reloaded in place,
    // and opened again after leaving.
    for way in ["reloaded", "opened from its URL"] {
        if way == "reloaded" {
            browser.client.refresh().await.expect("reload");
        } else {
            browser.open("/").await;
            browser
                .client
                .goto(url.as_str())
                .await
                .expect("open the URL");
        }
        browser.assert_clean(way).await;
        for (name, value) in [
            ("kind", "Organization"),
            ("app", "unnamed"),
            ("source", ""),
            ("id", ""),
        ] {
            let field = format!("document.querySelector('form.filters input[name={name}]').value");
            assert_eq!(
                browser.value(&field).await,
                value,
                "the field {name}, {way}"
            );
        }
        assert_eq!(browser.js(AUDIT_ROWS).await, filtered, "{way}");
    }
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_older_link_walks_a_ten_thousand_row_log_without_repeats_or_gaps() {
    let site = Site::start(Backend::Sqlite, "1h").await;
    // 10,000 more entries: one apply of 10,000 permits from a source of their own.
    common::db::apply_bulk_permits(&site.db.url, 10_000);

    let browser = Browser::start(&site.accord.url).await;
    browser.open("/audit?source=bulk").await;
    let mut seen: Vec<i64> = Vec::new();
    let mut pages = 0;
    loop {
        let rows = browser.js(AUDIT_ROWS).await;
        seen.extend(
            rows.as_array()
                .expect("rows")
                .iter()
                .filter_map(Value::as_i64),
        );
        pages += 1;
        let older = browser
            .js("const a = document.querySelector('a[rel=next]'); return a ? a.href : null")
            .await;
        let Some(older) = older.as_str() else { break };
        // Followed as a user does: a click, then the next page's load.
        browser.click("a[rel=next]").await;
        browser
            .until(
                "the older page",
                &format!(
                    "return document.readyState === 'complete' && location.href === {}",
                    json!(older)
                ),
            )
            .await;
        browser.assert_clean(older).await;
    }
    assert_eq!(pages, 200);
    assert_eq!(seen.len(), 10_000);
    assert!(
        seen.windows(2).all(|w| w[0] == w[1] + 1),
        "newest first, none skipped or repeated"
    );
    browser.close().await;
}

/// The answer shown next to the button `css` (the page clears it when the
/// button is pressed), once there is one.
fn answer_to(css: &str) -> String {
    format!(
        "return document.querySelector({}).closest('.actions').querySelector('output').textContent || null",
        json!(css)
    )
}

const SUSPEND: &str = "button[data-post*='/gitops/disable']";
const SYNC_NOW: &str = "button[data-post$='/sync']";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gitops_switch_and_sync_now_need_the_token_the_page_asks_for() {
    let site = Site::start(Backend::Sqlite, "1h").await;
    let browser = Browser::start(&site.accord.url).await;
    let gitops = "SELECT CAST(gitops AS INTEGER) FROM organizations WHERE slug = 'platform'";
    assert_eq!(site.db.scalar(gitops).await, 1);

    // Without the token: confirmed, the prompt cancelled, and refused.
    browser.open("/organizations/platform").await;
    browser.click(SUSPEND).await;
    let confirm = browser.dialog("the confirmation").await;
    assert!(confirm.contains("Suspend GitOps"), "{confirm}");
    browser.client.accept_alert().await.expect("confirm");
    let prompt = browser.dialog("the token prompt").await;
    assert!(prompt.contains("API token"), "{prompt}");
    browser.client.dismiss_alert().await.expect("cancel");
    let refused = browser.until("the refusal", &answer_to(SUSPEND)).await;
    assert!(
        refused.as_str().is_some_and(|r| r.starts_with("Refused")),
        "{refused}"
    );
    assert_eq!(
        site.db.scalar(gitops).await,
        1,
        "a refused switch changed the database"
    );
    browser
        .assert_console(
            "the refused switch",
            &["gitops/disable?app=unnamed - Failed to load resource: the server responded with a status of 401"],
        )
        .await;

    // With the token typed into the prompt: suspended, as the store records it.
    browser.click(SUSPEND).await;
    browser.dialog("the confirmation").await;
    browser.client.accept_alert().await.expect("confirm");
    browser.dialog("the token prompt").await;
    browser
        .client
        .send_alert_text(TOKEN)
        .await
        .expect("type the token");
    browser
        .client
        .accept_alert()
        .await
        .expect("submit the token");
    // The page reloads itself to show the switch turned.
    let resume = browser
        .until(
            "the switch turned",
            "return document.querySelector(\"button[data-post*='/gitops/enable']\")?.textContent",
        )
        .await;
    assert_eq!(resume, "Resume GitOps");
    assert!(
        browser
            .value("document.querySelector('section dl.facts').innerText")
            .await
            .as_str()
            .is_some_and(|t| t.contains("suspended")),
        "the page does not show the suspension"
    );
    browser
        .assert_clean("the organization page, switched")
        .await;
    assert_eq!(site.db.scalar(gitops).await, 0);

    // Sync now uses the token kept in the tab: no second prompt.
    let before = site.accord.source("main").await["triggers"]["api"]
        .as_u64()
        .unwrap_or(0);
    browser.open("/sources/main").await;
    browser.click(SYNC_NOW).await;
    let answer = browser
        .until("the sync's answer", &answer_to(SYNC_NOW))
        .await;
    assert!(
        answer.as_str().is_some_and(|a| a.starts_with("Done: ")),
        "{answer}"
    );
    let after = site.accord.source("main").await["triggers"]["api"]
        .as_u64()
        .unwrap_or(0);
    assert_eq!(after, before + 1, "the page's sync did not reach accord");
    browser.close().await;
}

/// How the focused element is outlined (or shadowed) when focus came from
/// the keyboard: `none` means a keyboard user cannot see where they are.
const FOCUS_STYLE: &str = "const e = document.activeElement, s = getComputedStyle(e); return {visible: e.matches(':focus-visible'), outline: s.outlineStyle === 'none' || parseFloat(s.outlineWidth) === 0 ? 'none' : s.outlineStyle + ' ' + s.outlineWidth + ' ' + s.outlineColor, shadow: s.boxShadow}";

async fn assert_focus_visible(browser: &Browser, what: &str) {
    let style = browser.js(FOCUS_STYLE).await;
    assert_eq!(style["visible"], true, "{what}: {style}");
    assert!(
        style["outline"] != "none" || style["shadow"] != "none",
        "{what} shows no focus: {style}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_keyboard_reaches_the_switch_and_the_buttons_with_a_visible_focus() {
    let site = Site::start(Backend::Sqlite, "1h").await;
    let browser = Browser::start(&site.accord.url).await;
    for (path, button, what) in [
        ("/organizations/platform", SUSPEND, "the GitOps switch"),
        ("/sources/main", SYNC_NOW, "Sync now"),
        ("/", "#token-button", "the token button"),
        (
            "/audit",
            "form.filters button[type=submit]",
            "the filter button",
        ),
    ] {
        browser.open(path).await;
        browser.tab_to(button).await;
        assert_focus_visible(&browser, &format!("{what} on {path}")).await;
    }
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_the_overview_and_the_audit_log_load_clean() {
    let site = Site::start(Backend::Postgres, "1h").await;
    let browser = Browser::start(&site.accord.url).await;
    open_overview(&browser).await;
    browser.open("/audit").await;
    let rows = browser.js(AUDIT_ROWS).await;
    let expected = site.db.scalar("SELECT COUNT(*) FROM audit_log").await;
    assert!(expected > 0);
    assert_eq!(
        rows.as_array().map(Vec::len).unwrap_or_default() as i64,
        expected.min(50),
        "{rows}"
    );
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_check_catches_an_inline_handler_the_policy_refuses() {
    let site = Site::start(Backend::Sqlite, "1h").await;
    let browser = Browser::start(&site.accord.url).await;
    browser.open("/").await;
    // Markup a page would never make: an image whose error handler is
    // inline script. The image fails to decode, the handler is refused.
    browser
        .js("document.body.insertAdjacentHTML('beforeend', '<img src=\"data:,\" onerror=\"window.accordInline = true\">')")
        .await;
    let deadline = Instant::now() + WAIT;
    let mut seen = Vec::new();
    while !seen.iter().any(|e: &Value| {
        e["message"]
            .as_str()
            .is_some_and(|m| m.contains("Content Security Policy"))
    }) {
        assert!(
            Instant::now() < deadline,
            "no violation reported: {seen:#?}"
        );
        seen.extend(browser.console().await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        browser.value("window.accordInline").await,
        Value::Null,
        "the inline handler ran"
    );
    let _ = browser.client.close().await;
}
