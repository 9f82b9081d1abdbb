//! `GET /audit`: the audit log, filtered by what the URL says (so a link
//! can be shared), newest first, a page at a time by key (`before` the last
//! `seq` shown), each entry with its diff; with kind, app and id given, one
//! object's whole history; with `run`, the changes of one sync run. The
//! table of entries is the one every page that lists entries shows.

use std::cell::Cell;
use std::sync::Arc;

use axum::extract::{Query, State as Extract};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use maud::{html, Markup};
use serde::Deserialize;

use super::{diff, given, layout, revision, time, urlencode};
use crate::controller::state::State;
use crate::model::Kind;
use crate::store::{AuditEntry, AuditQuery, Store};

/// Entries per page.
const PAGE: u32 = 50;

/// The filters, as the form sends them: empty fields mean no filter.
#[derive(Debug, Default, Deserialize)]
pub struct Filters {
    source: Option<String>,
    kind: Option<String>,
    app: Option<String>,
    id: Option<String>,
    actor: Option<String>,
    action: Option<String>,
    since: Option<String>,
    until: Option<String>,
    run: Option<String>,
    before: Option<String>,
}

/// RFC 3339, or what a `datetime-local` or `date` input sends (taken as UTC).
fn instant(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M")
                .ok()
                .map(|t| t.and_utc())
        })
        .or_else(|| {
            NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|t| t.and_utc())
        })
}

impl Filters {
    /// The query, or what is wrong with a filter.
    fn query(&self) -> Result<AuditQuery, String> {
        let owned = |field: &Option<String>| given(field).map(str::to_owned);
        let kind = match given(&self.kind) {
            None => None,
            Some(text) => Some(
                Kind::ALL
                    .into_iter()
                    .find(|k| k.as_str().eq_ignore_ascii_case(text))
                    .ok_or(format!(
                        "unknown kind `{text}`: Organization, Permit or Enrollment"
                    ))?,
            ),
        };
        let time = |field: &Option<String>, name: &str| match given(field) {
            None => Ok(None),
            Some(text) => instant(text).map(Some).ok_or(format!(
                "`{text}` is not a time for `{name}` (e.g. 2026-12-07T10:00)"
            )),
        };
        let number = |field: &Option<String>, what: &str| match given(field) {
            None => Ok(None),
            Some(text) => text
                .parse()
                .map(Some)
                .map_err(|_| format!("`{text}` is not {what}")),
        };
        let before = number(&self.before, "an entry number")?;
        let run = number(&self.run, "a sync run number")?;
        Ok(AuditQuery {
            source: owned(&self.source),
            kind,
            since: time(&self.since, "since")?,
            until: time(&self.until, "until")?,
            app: owned(&self.app),
            id: owned(&self.id),
            actor: owned(&self.actor),
            action: owned(&self.action),
            before,
            run,
            // One more than shown: whether an older page exists.
            limit: PAGE + 1,
            ..AuditQuery::default()
        })
    }

    /// The filters as a query string, with `before` replaced.
    fn link(&self, before: Option<i64>) -> String {
        let mut parts = Vec::new();
        for (name, value) in [
            ("source", &self.source),
            ("kind", &self.kind),
            ("app", &self.app),
            ("id", &self.id),
            ("actor", &self.actor),
            ("action", &self.action),
            ("since", &self.since),
            ("until", &self.until),
            ("run", &self.run),
        ] {
            if let Some(value) = given(value) {
                parts.push(format!("{name}={}", urlencode(value)));
            }
        }
        if let Some(before) = before {
            parts.push(format!("before={before}"));
        }
        format!("/audit?{}", parts.join("&"))
    }
}

pub async fn audit_page(
    Extract(state): Extract<Arc<State>>,
    filters: Result<Query<Filters>, axum::extract::rejection::QueryRejection>,
) -> Response {
    // A malformed query string shows the page unfiltered rather than an error.
    let filters = filters.map(|Query(f)| f).unwrap_or_default();
    let value = |field: &Option<String>| given(field).unwrap_or_default().to_owned();
    let form = html! {
        form class="filters" method="get" action="/audit" role="search" {
            @for (name, label, field) in [
                ("source", "Source", &filters.source),
                ("kind", "Kind", &filters.kind),
                ("app", "App", &filters.app),
                ("id", "Object id", &filters.id),
                ("actor", "Actor", &filters.actor),
                ("action", "Action", &filters.action),
                ("run", "Sync run", &filters.run),
            ] {
                label { (label) " " input type="text" name=(name) value=(value(field)); }
            }
            label { "Since " input type="datetime-local" name="since" value=(value(&filters.since)); }
            label { "Until " input type="datetime-local" name="until" value=(value(&filters.until)); }
            button type="submit" { "Filter" }
            " " a href="/audit" { "Clear" }
        }
    };
    let query = match filters.query() {
        Ok(query) => query,
        Err(problem) => {
            let body = html! { h1 { "Audit log" } (form) p class="alert error" role="alert" { (problem) } };
            return super::page(StatusCode::BAD_REQUEST, layout("Audit", "/audit", body));
        }
    };
    let mut entries = match state.store.audit(&query).await {
        Ok(entries) => entries,
        Err(error) => {
            let body = html! { h1 { "Audit log" } p class="alert error" role="alert" { "The database does not answer: " (error.to_string()) } };
            return super::page(
                StatusCode::SERVICE_UNAVAILABLE,
                layout("Audit", "/audit", body),
            );
        }
    };
    let more = entries.len() > PAGE as usize;
    entries.truncate(PAGE as usize);
    let object = match (&query.kind, &query.app, &query.id) {
        (Some(kind), Some(app), Some(id)) => Some(format!("{kind} {app}/{id}")),
        _ => None,
    };
    let body = html! {
        @match &object {
            Some(object) => h1 { "History of " code { (object) } },
            None => h1 { "Audit log" },
        }
        (form)
        @if entries.is_empty() {
            p class="muted" { "No entries match." }
        } @else {
            (entries_table(Some("audit"), &entries, &Diffs::Whole))
        }
        nav class="pages" aria-label="Pages" {
            @if query.before.is_some() {
                a href=(filters.link(None)) { "Newest" }
            }
            @if more {
                @if let Some(last) = entries.last() {
                    " " a href=(filters.link(Some(last.seq))) rel="next" { "Older entries" }
                }
            }
        }
    };
    super::page(StatusCode::OK, layout("Audit", "/audit", body))
}

/// How much of each diff an entries table shows: the audit page shows them
/// whole; a page listing the entries of many sync runs keeps to a budget,
/// so that it stays small, and links each diff it cuts to its entry here.
pub enum Diffs {
    Whole,
    Budget {
        /// At most this many bytes of one diff.
        each: usize,
        /// Bytes left for the rest of the page's diffs.
        left: Cell<usize>,
    },
}

impl Diffs {
    /// The part of `text` to show: whole lines, within the budget.
    fn shown<'t>(&self, text: &'t str) -> &'t str {
        let Diffs::Budget { each, left } = self else {
            return text;
        };
        let room = (*each).min(left.get());
        let shown = if text.len() <= room {
            text
        } else {
            // Up to the last line that fits whole (a newline is one byte,
            // so the cut falls between characters).
            let end = text.as_bytes()[..room]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1);
            &text[..end]
        };
        left.set(left.get() - shown.len());
        shown
    }
}

/// The entries, newest first, each with its diff (within `diffs`).
pub fn entries_table(id: Option<&str>, entries: &[AuditEntry], diffs: &Diffs) -> Markup {
    html! {
        div class="scroll" {
            table id=[id] class="audit" {
                caption class="visually-hidden" { "Audit entries, newest first" }
                thead { tr {
                    th scope="col" { "#" } th scope="col" { "When" } th scope="col" { "Action" }
                    th scope="col" { "Object" } th scope="col" { "Actor" } th scope="col" { "Source" }
                    th scope="col" { "Revision" } th scope="col" { "Change" }
                } }
                tbody {
                    @for entry in entries {
                        @let shown = diffs.shown(&entry.diff);
                        tr data-seq=(entry.seq) {
                            td { a href=(format!("/api/v1/audit-logs/{}", entry.seq)) { (entry.seq) } }
                            td { (time(Some(entry.at))) }
                            td { (entry.action) }
                            td {
                                a href=(format!("/audit?kind={}&app={}&id={}", urlencode(&entry.kind), urlencode(&entry.app), urlencode(&entry.id))) {
                                    (entry.kind) " " code { (entry.app) "/" (entry.id) }
                                }
                            }
                            td { (entry.actor) }
                            td { (entry.source) }
                            td { (revision(Some(&entry.revision))) }
                            td {
                                details {
                                    summary { "diff" @if let Some(origin) = &entry.origin { " · " (origin) } }
                                    (diff(shown, &format!("/api/v1/audit-logs/{}", entry.seq)))
                                    @if shown.len() < entry.diff.len() {
                                        p class="muted" {
                                            "Diff cut here: "
                                            a href=(format!("/audit?source={}&before={}", urlencode(&entry.source), entry.seq + 1)) { "the whole entry in the audit log" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
