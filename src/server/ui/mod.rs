//! The operator's pages, rendered on the server from the same state the API
//! serves. Markup is built with `maud`, which escapes every value it is
//! given (ids, messages, file names, diffs, commit ids): nothing a user
//! wrote becomes markup. Styles and the one script are compiled into the
//! binary and served from this host; the Content-Security-Policy forbids
//! anything else, inline script included. The pages work without
//! JavaScript; the script adds live updates, relative times and the buttons
//! that need the API token (kept in the tab's session storage, sent as a
//! Bearer header; no cookies).

use std::sync::Arc;

use axum::extract::{Path, Query, State as Extract};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, SecondsFormat, Utc};
use maud::{html, Markup, DOCTYPE};

use crate::controller::state::{OpenItem, SourceStatus, State, SyncState};
use crate::source::Commit;

mod access;
mod audit;
mod history;
mod orgs;

const CSS: &str = include_str!("accord.css");
const JS: &str = include_str!("accord.js");

/// Only this host's own styles and script; no framing, no plugins, no
/// inline script.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// The pages and their assets.
pub fn routes() -> Router<Arc<State>> {
    Router::new()
        .route("/sources/{name}", get(source_page))
        .route("/audit", get(audit::audit_page))
        .route("/access", get(access::access_page))
        .route("/organizations", get(orgs::list))
        .route("/organizations/{slug}", get(orgs::one))
        .route(
            "/assets/accord.css",
            get(|| async { asset(CSS, "text/css; charset=utf-8") }),
        )
        .route(
            "/assets/accord.js",
            get(|| async { asset(JS, "text/javascript; charset=utf-8") }),
        )
}

fn asset(body: &'static str, kind: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}

/// An HTML page with the security headers every page carries.
/// A form field as given, trimmed; an empty field is no filter.
pub fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

pub fn page(status: StatusCode, markup: Markup) -> Response {
    let mut response = (status, markup.into_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

pub(super) fn layout(title: &str, current: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (title) " · accord" }
                link rel="stylesheet" href="/assets/accord.css";
                // No icon, said so: otherwise the browser asks for
                // /favicon.ico on every page and logs the 404.
                link rel="icon" href="data:,";
                script src="/assets/accord.js" defer {}
            }
            body {
                a class="skip" href="#main" { "Skip to content" }
                header {
                    nav aria-label="Main" {
                        a class="brand" href="/" { "accord" }
                        @for (href, label) in [("/", "Overview"), ("/audit", "Audit"), ("/organizations", "Organizations"), ("/access", "Access"), ("/api/v1/openapi.json", "API")] {
                            @if href == current {
                                a href=(href) aria-current="page" { (label) }
                            } @else {
                                a href=(href) { (label) }
                            }
                        }
                        button type="button" id="token-button" class="token" hidden { "API token" }
                    }
                }
                main id="main" tabindex="-1" { (body) }
            }
        }
    }
}

/// A state as colour and text: colour is never the only signal.
fn state_badge(state: SyncState) -> Markup {
    let (class, symbol) = match state {
        SyncState::Synced => ("synced", "✓"),
        SyncState::OutOfSync => ("outofsync", "≠"),
        SyncState::Progressing => ("progressing", "…"),
        SyncState::Error => ("error", "✕"),
        SyncState::Suspended => ("suspended", "‖"),
    };
    html! {
        span class={ "badge " (class) } data-state=(format!("{state:?}")) {
            span aria-hidden="true" { (symbol) " " }
            (format!("{state:?}"))
        }
    }
}

/// A time as the absolute UTC instant; the script adds "3 minutes ago".
pub(super) fn time(at: Option<DateTime<Utc>>) -> Markup {
    match at {
        Some(at) => html! {
            // As the JSON API writes instants, so the script's refresh of
            // a time that did not change leaves it alone.
            @let iso = at.to_rfc3339_opts(SecondsFormat::AutoSi, true);
            time datetime=(iso) title=(iso) {
                (at.format("%Y-%m-%d %H:%M:%S UTC").to_string())
            }
        },
        None => html! { span class="muted" { "never" } },
    }
}

/// A revision: the short form shown, the whole one on hover and in a
/// selectable code element for copying.
pub(super) fn revision(rev: Option<&str>) -> Markup {
    match rev {
        Some(rev) => {
            let short: String = rev.chars().take(12).collect();
            html! { code class="rev" title=(rev) data-full=(rev) { (short) } }
        }
        None => html! { span class="muted" { "—" } },
    }
}

/// A commit in a line: its message's first line, author and time.
fn commit_line(commit: &Commit, label: &str) -> Markup {
    html! {
        span class="commit" {
            @if !label.is_empty() { span class="muted" { (label) " " } }
            span class="subject" { (commit.subject()) }
            " " span class="muted by" { (commit.author) " · " (time(Some(commit.authored_at))) }
        }
    }
}

/// The commits of a source's applied revision and, when it differs, of
/// its attempted one (Git sources; nothing for others). accord.js draws
/// the same from `/api/v1/status`.
fn commits(s: &SourceStatus) -> Markup {
    html! {
        @if let Some(commit) = &s.last_applied_commit { (commit_line(commit, "")) }
        @if let Some(commit) = attempted_commit(s) { (commit_line(commit, "attempted:")) }
    }
}

/// The attempted revision's commit, when that is not the applied one.
fn attempted_commit(s: &SourceStatus) -> Option<&Commit> {
    s.last_attempted_commit
        .as_ref()
        .filter(|_| s.last_attempted_revision != s.last_applied_revision)
}

/// A commit whole: author, time and the full message.
fn commit_whole(commit: &Commit) -> Markup {
    html! {
        (commit.author) " · " (time(Some(commit.authored_at)))
        pre class="message" { (commit.message) }
    }
}

/// A diff is shown up to this many lines and bytes, then a link to the
/// whole of it: with the lists' caps (`SHOWN`, `ITEMS`), no page passes 200 KB however
/// large the objects are (tests/ui_budget.rs).
const DIFF_LINES: usize = 20;
const DIFF_BYTES: usize = 1_000;

/// Items of a long list shown on one page (errors, access answers); the
/// rest are counted and a link away.
pub(super) const SHOWN: usize = 50;

/// Drift items and conflicts shown on a source's page, each with its diff.
const ITEMS: usize = 20;

/// A unified diff with each line marked added, removed or context, as
/// text (escaped) inside a `pre`; a long one is cut, with a link to `whole`
/// (where the API serves it uncut).
pub fn diff(text: &str, whole: &str) -> Markup {
    let mut lines = Vec::new();
    let mut bytes = 0;
    for line in text.lines().take(DIFF_LINES) {
        let line = clip(line, DIFF_BYTES / 4);
        if !lines.is_empty() && bytes + line.len() > DIFF_BYTES {
            break;
        }
        bytes += line.len();
        lines.push(line);
    }
    let cut = text.lines().count() - lines.len();
    html! {
        pre class="diff" {
            @for line in &lines {
                @let class = if line.starts_with('+') { "add" } else if line.starts_with('-') { "del" } else { "ctx" };
                span class=(class) { (line) } "\n"
            }
        }
        @if cut > 0 {
            p class="muted" { (cut) " more lines: " a href=(whole) { "the full diff" } }
        }
    }
}

/// "N more" under a list of `total` cut at `shown`, with where to see them all.
pub(super) fn more(total: usize, shown: usize, what: &str, whole: &str) -> Markup {
    html! {
        @if total > shown {
            p class="muted more" { (total - shown) " more " (what) " not shown: " a href=(whole) { "all of them" } }
        }
    }
}

/// Open items (drift or conflicts) as a table the script keeps current
/// from `/api/v1/drift` (`live` names which list). With `source` it shows
/// that source's items only; without, each row names its source. accord.js
/// renders a row exactly as `item_row` does, so a row that did not change
/// stays as it is on the page.
fn items_table(
    live: &str,
    items: &[&OpenItem],
    source: Option<&str>,
    caption: &str,
    empty: &str,
) -> Markup {
    html! {
        div data-live=(live) data-source=[source] {
            p class="muted empty" hidden[!items.is_empty()] { (empty) }
            table hidden[items.is_empty()] {
                caption { (caption) }
                thead {
                    tr {
                        @if source.is_none() { th scope="col" { "Source" } }
                        th scope="col" { "Object" } th scope="col" { "Note" } th scope="col" { "Diff" }
                    }
                }
                tbody {
                    @for item in items.iter().take(ITEMS) {
                        (item_row(item, source.is_none()))
                    }
                }
            }
            (more(items.len(), ITEMS, "items", DRIFT_API))
        }
    }
}

fn item_row(item: &OpenItem, with_source: bool) -> Markup {
    let key = serde_json::json!([item.source, item.kind, item.app, item.id]);
    html! {
        tr data-key=(key.to_string()) {
            @if with_source {
                td { a href=(format!("/sources/{}", urlencode(&item.source))) { (item.source) } }
            }
            td { (item.kind) " " code { (item.app) "/" (item.id) } }
            td class="note" { (item.note) }
            td {
                details {
                    summary { "diff" }
                    (diff(&item.diff, DRIFT_API))
                }
            }
        }
    }
}

/// Every open drift item and conflict, whole, as JSON.
const DRIFT_API: &str = "/api/v1/drift";

/// A source's errors, the first `shown` of them, each cut to a line's worth.
fn errors_list(errors: &[String], shown: usize, whole: &str) -> Markup {
    html! {
        ul { @for error in errors.iter().take(shown) { li { code { (clip(error, CLIP)) } } } }
        (more(errors.len(), shown, "errors", whole))
    }
}

/// A message or an error as far as a page shows it, in bytes.
const CLIP: usize = 500;

/// `text` cut to at most `max` bytes (and an ellipsis).
fn clip(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max {
        return text.into();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end]).into()
}

/// `GET /`: every source's state, the history's chain and the
/// notification receivers, refreshed in place by the script.
pub fn overview(state: &State) -> Response {
    let statuses = state.statuses();
    let history = state.history();
    let receivers = state
        .notifier
        .as_ref()
        .map(|n| n.statuses())
        .unwrap_or_default();
    let body = html! {
        h1 { "Sources" }
        @if state.read_only {
            p class="muted" { "This is " code { "accord ui" } ": it reads the database only. Sources, their states and drift live in " code { "accord run" } "; the audit log, organizations and access are here." }
        }
        @match (history.ok, &history.problem) {
            (Some(false), problem) => p class="alert error" role="alert" {
                strong { "The audit history is broken: " }
                (problem.as_deref().unwrap_or("a row was changed"))
            },
            (Some(true), _) => p class="muted" id="chain" {
                "Audit history verified: " (history.sync_runs) " sync runs, " (history.audit_rows) " audit rows."
            },
            _ => p class="muted" id="chain" { "Audit history not verified yet." },
        }
        div class="scroll" {
            table id="sources" data-live="sources" {
                caption class="visually-hidden" { "Every source's state" }
                thead {
                    tr {
                        th scope="col" { "Source" }
                        th scope="col" { "State" }
                        th scope="col" { "Applied" }
                        th scope="col" { "Attempted" }
                        th scope="col" { "Commit" }
                        th scope="col" { "Last attempt" }
                        th scope="col" { "Last success" }
                        th scope="col" { "Managed" }
                        th scope="col" { "Drift" }
                        th scope="col" { "Conflicts" }
                        th scope="col" { "Message" }
                    }
                }
                tbody {
                    @for s in &statuses {
                        (source_row(s))
                    }
                }
            }
        }
        section aria-labelledby="drift-heading" {
            h2 id="drift-heading" { "Open drift" }
            (items_table("drift", &statuses.iter().flat_map(|s| &s.drift).collect::<Vec<_>>(), None, "Objects edited by hand and left in place (report mode)", "No open drift."))
        }
        @for s in statuses.iter().filter(|s| !s.errors.is_empty()) {
            section class="errors" aria-labelledby=(format!("errors-{}", s.name)) {
                h2 id=(format!("errors-{}", s.name)) { "Errors of " (s.name) }
                (errors_list(&s.errors, 5, &format!("/sources/{}", urlencode(&s.name))))
            }
        }
        @if !receivers.is_empty() {
            h2 { "Notifications" }
            table {
                thead { tr { th scope="col" { "Receiver" } th scope="col" { "Delivered" } th scope="col" { "Pending" } th scope="col" { "Dropped" } th scope="col" { "Last error" } } }
                tbody {
                    @for r in &receivers {
                        tr {
                            td { (r.name) " " span class="muted" { "(" (r.provider) ")" } }
                            td { (r.delivered) }
                            td { (r.pending) }
                            td { (r.dropped) }
                            td { @if let Some(error) = &r.last_error { span class="error-text" { (error) } " " (time(r.last_error_at)) } }
                        }
                    }
                }
            }
        }
    };
    page(StatusCode::OK, layout("Overview", "/", body))
}

fn source_row(s: &SourceStatus) -> Markup {
    html! {
        tr data-source=(s.name) {
            th scope="row" { a href=(format!("/sources/{}", urlencode(&s.name))) { (s.name) } " " span class="muted" { (s.kind) } }
            td data-field="state" { (state_badge(s.state)) }
            td data-field="applied" { (revision(s.last_applied_revision.as_deref())) }
            td data-field="attempted" { (revision(s.last_attempted_revision.as_deref())) }
            td data-field="commit" { (commits(s)) }
            td data-field="attempt" { (time(s.last_attempt_at)) }
            td data-field="success" { (time(s.last_success_at)) }
            td data-field="managed" { (s.counts.managed) }
            td data-field="drift" { (s.drift.len()) }
            td data-field="conflicts" { (s.conflicts.len()) }
            td data-field="message" { (clip(&s.message, CLIP)) }
        }
    }
}

/// Percent-encodes a path segment (source names are ids, but nothing here
/// trusts that).
pub(super) fn urlencode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Which page of a source's sync history to show.
#[derive(Debug, Default, serde::Deserialize)]
struct HistoryPage {
    /// Runs older than this one.
    before: Option<i64>,
}

/// `GET /sources/{name}`: one source, its commit (Git), its open drift and
/// conflicts with their diffs, the buttons to sync it or approve refused
/// deletions, and its sync history.
async fn source_page(
    Extract(state): Extract<Arc<State>>,
    Path(name): Path<String>,
    page_query: Result<Query<HistoryPage>, axum::extract::rejection::QueryRejection>,
) -> Response {
    // A malformed query string shows the newest history rather than an error.
    let HistoryPage { before } = page_query.map(|Query(p)| p).unwrap_or_default();
    let Some(handle) = state.source(&name) else {
        let body = html! {
            h1 { "No such source" }
            p { "No source is named " code { (name) } ". " a href="/" { "Back to the overview" } }
        };
        return page(StatusCode::NOT_FOUND, layout("Not found", "", body));
    };
    let s = handle.status();
    let history = history::section(&state.store, &s.name, before).await;
    let body = html! {
        h1 { "Source " (s.name) " " span data-live="state" data-source=(s.name) { (state_badge(s.state)) } }
        p { (s.kind) " · " code { (s.location) } }
        p data-live="message" data-source=(s.name) { (clip(&s.message, CLIP)) }
        dl class="facts" {
            dt { "Applied revision" } dd { (revision(s.last_applied_revision.as_deref())) }
            @if let Some(commit) = &s.last_applied_commit {
                dt { "Applied commit" } dd { (commit_whole(commit)) }
            }
            dt { "Attempted revision" } dd { (revision(s.last_attempted_revision.as_deref())) }
            @if let Some(commit) = attempted_commit(&s) {
                dt { "Attempted commit" } dd { (commit_whole(commit)) }
            }
            dt { "Last attempt" } dd { (time(s.last_attempt_at)) }
            dt { "Last success" } dd { (time(s.last_success_at)) }
            dt { "Managed objects" } dd { (s.counts.managed) }
            dt { "Syncs since start" } dd { (s.attempts) }
        }
        div class="actions" {
            button type="button" class="needs-token" data-post=(format!("/api/v1/sources/{}/sync", urlencode(&s.name))) { "Sync now" }
            @if let Some(refused) = &s.deletion_refused {
                div class="alert error" role="alert" {
                    p { strong { "Deletions refused: " } (refused.message) }
                    button type="button" class="needs-token" data-post=(format!("/api/v1/sources/{}/approve-deletions", urlencode(&s.name))) data-body=(serde_json::json!({"set": refused.set}).to_string()) data-confirm=(format!("Approve deleting these {} rows of source {}?", refused.deletes, s.name)) { "Approve these deletions" }
                }
            }
            output class="result" aria-live="polite" {}
        }
        @if !s.errors.is_empty() {
            h2 { "Errors of the attempted revision" }
            (errors_list(&s.errors, SHOWN, "/api/v1/status"))
        }
        h2 { "Open drift" }
        (items_table("drift", &s.drift.iter().collect::<Vec<_>>(), Some(&s.name), "Objects edited by hand and left in place (report mode)", "No open drift."))
        h2 { "Conflicts" }
        (items_table("conflicts", &s.conflicts.iter().collect::<Vec<_>>(), Some(&s.name), "Keys this source declares that another source (or nobody) owns", "No conflicts."))
        p { a href=(format!("/audit?source={}", urlencode(&s.name))) { "This source's audit log" } }
        (history)
    };
    page(
        StatusCode::OK,
        layout(&format!("Source {}", s.name), "", body),
    )
}
