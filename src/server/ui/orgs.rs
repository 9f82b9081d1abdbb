//! `GET /organizations` and `/organizations/{slug}`: each organization with
//! its members, budget and allowed models, its GitOps switch (turned with
//! the token, after a confirmation), and its open drift.

use std::sync::Arc;

use axum::extract::{Path, Query, State as Extract};
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;
use serde::Deserialize;

use super::{diff, given, layout, page, urlencode};
use crate::controller::state::State;
use crate::model::{Key, Kind, Object};
use crate::store::Store;

/// Organizations listed on one page at most; the next page starts after
/// the last one shown (by app and slug, a key the index serves).
const LIMIT: u32 = 200;

/// Members listed on one page at most, in each app.
const MEMBERS: usize = 500;

/// Where a page of the list starts: after this app and slug.
#[derive(Debug, Default, Deserialize)]
pub struct Page {
    after_app: Option<String>,
    after_slug: Option<String>,
}

pub async fn list(
    Extract(state): Extract<Arc<State>>,
    page_of: Result<Query<Page>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let page_of = page_of.map(|Query(p)| p).unwrap_or_default();
    let after = given(&page_of.after_app).zip(given(&page_of.after_slug));
    let switches = match state.store.organizations(after, LIMIT + 1).await {
        Ok(switches) => switches,
        Err(error) => return unavailable(&error.to_string()),
    };
    let body = html! {
        h1 { "Organizations" }
        @if switches.is_empty() {
            p class="muted" { "No organization exists yet." }
        } @else {
            div class="scroll" {
                table {
                    caption class="visually-hidden" { "Every organization, by app" }
                    thead { tr { th scope="col" { "Organization" } th scope="col" { "App" } th scope="col" { "GitOps" } th scope="col" { "Managed by" } } }
                    tbody {
                        @for org in switches.iter().take(LIMIT as usize) {
                            tr {
                                th scope="row" { a href=(format!("/organizations/{}", urlencode(&org.slug))) { (org.slug) } }
                                td { code { (org.app) } }
                                td { @if org.gitops { "on" } @else { span class="badge suspended" { "‖ suspended" } } }
                                td { (org.managed_by.as_deref().unwrap_or("nobody")) }
                            }
                        }
                    }
                }
            }
            nav class="pages" aria-label="Pages" {
                @if after.is_some() {
                    a href="/organizations" { "First" }
                }
                @if switches.len() > LIMIT as usize {
                    @if let Some(last) = switches.get(LIMIT as usize - 1) {
                        " " a href=(format!("/organizations?after_app={}&after_slug={}", urlencode(&last.app), urlencode(&last.slug))) rel="next" { "More organizations" }
                    }
                }
            }
        }
    };
    page(
        StatusCode::OK,
        layout("Organizations", "/organizations", body),
    )
}

fn unavailable(error: &str) -> Response {
    let body = html! { h1 { "Organizations" } p class="alert error" role="alert" { "The database does not answer: " (error) } };
    page(
        StatusCode::SERVICE_UNAVAILABLE,
        layout("Organizations", "/organizations", body),
    )
}

/// Where the members shown start.
#[derive(Debug, Default, Deserialize)]
pub struct Members {
    from: Option<usize>,
}

pub async fn one(
    Extract(state): Extract<Arc<State>>,
    Path(slug): Path<String>,
    members: Result<Query<Members>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let from = members.ok().and_then(|Query(m)| m.from).unwrap_or(0);
    let to = from.saturating_add(MEMBERS);
    let switches = match state.store.gitops(&slug, None).await {
        Ok(switches) => switches,
        Err(error) => return unavailable(&error.to_string()),
    };
    if switches.is_empty() {
        let body = html! {
            h1 { "No such organization" }
            p { "No organization has the slug " code { (slug) } ". " a href="/organizations" { "All organizations" } }
        };
        return page(
            StatusCode::NOT_FOUND,
            layout("Not found", "/organizations", body),
        );
    }
    let keys: Vec<Key> = switches
        .iter()
        .map(|s| Key {
            kind: Kind::Organization,
            app: s.app.as_str().into(),
            id: s.slug.as_str().into(),
        })
        .collect();
    let rows = match state.store.read_rows(&keys).await {
        Ok(rows) => rows,
        Err(error) => return unavailable(&error.to_string()),
    };
    let statuses = state.statuses();
    let body = html! {
        h1 { "Organization " code { (slug) } }
        @for switch in &switches {
            @let key = Key { kind: Kind::Organization, app: switch.app.as_str().into(), id: switch.slug.as_str().into() };
            @let org = rows.get(&key).and_then(|row| row.object()).and_then(|o| match o { Object::Organization(org) => Some(org), _ => None });
            section aria-labelledby=(format!("app-{}", switch.app)) {
                h2 id=(format!("app-{}", switch.app)) { "In app " code { (switch.app) } }
                dl class="facts" {
                    dt { "Name" } dd { (org.as_ref().and_then(|o| o.name.clone()).unwrap_or_default()) }
                    dt { "Managed by" } dd { (switch.managed_by.as_deref().unwrap_or("nobody")) }
                    dt { "Monthly token budget" } dd { @match org.as_ref().and_then(|o| o.budget.as_ref()) { Some(b) => (b.monthly_tokens), None => span class="muted" { "none" } } }
                    dt { "Allowed models" } dd { (org.as_ref().map(|o| o.allowed_models.join(", ")).unwrap_or_default()) }
                    dt { "GitOps" } dd {
                        @if switch.gitops { "on: accord keeps it as declared" } @else { span class="badge suspended" { "‖ suspended" } " accord leaves it alone" }
                    }
                }
                div class="actions" {
                    @let (action, label) = if switch.gitops { ("disable", "Suspend GitOps") } else { ("enable", "Resume GitOps") };
                    // Reloaded after the switch, the page shows it turned.
                    button type="button" class="needs-token" data-reload
                        data-post=(format!("/api/v1/organizations/{}/gitops/{action}?app={}", urlencode(&slug), urlencode(&switch.app)))
                        data-confirm=(format!("{label} for organization {slug} in app {}?", switch.app)) { (label) }
                    output class="result" aria-live="polite" {}
                }
                @if let Some(org) = &org {
                    table {
                        caption { "Members" @if org.members.len() > MEMBERS { " " (from.min(org.members.len()) + 1) "–" (to.min(org.members.len())) " of " (org.members.len()) } }
                        thead { tr { th scope="col" { "Member" } th scope="col" { "Role" } th scope="col" { "Token limit" } } }
                        tbody {
                            @for member in org.members.iter().skip(from).take(MEMBERS) {
                                tr {
                                    td { code { (member.user_id.as_deref().map(|u| format!("user:{u}")).or_else(|| member.contact_id.as_deref().map(|c| format!("contact:{c}"))).unwrap_or_default()) } }
                                    td { (member.role) }
                                    td { (member.token_limit.map(|t| t.to_string()).unwrap_or_default()) }
                                }
                            }
                        }
                    }
                    nav class="pages" aria-label="Members" {
                        @if from > 0 {
                            a href=(format!("/organizations/{}", urlencode(&slug))) { "First members" }
                        }
                        @if to < org.members.len() {
                            " " a href=(format!("/organizations/{}?from={to}", urlencode(&slug))) rel="next" { "More members" }
                        }
                    }
                }
                @for item in statuses.iter().flat_map(|s| s.drift.iter().chain(s.conflicts.iter())).filter(|i| i.kind == "Organization" && i.id == slug && i.app == switch.app) {
                    div class="alert" {
                        p { strong { (item.note) } " (source " (item.source) ")" }
                        (diff(&item.diff, &format!("/api/v1/organizations/{}/gitops/drift", urlencode(&slug))))
                    }
                }
                p { a href=(format!("/audit?kind=Organization&app={}&id={}", urlencode(&switch.app), urlencode(&slug))) { "History" } }
            }
        }
    };
    page(
        StatusCode::OK,
        layout(&format!("Organization {slug}"), "/organizations", body),
    )
}
