//! `GET /access`: who can do what, and why, over the live database — the
//! answers of `/api/v1/access/*` as a page. The query lives in the URL.

use std::sync::Arc;

use axum::extract::{Query, State as Extract};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{html, Markup};
use serde::Deserialize;

use super::{given, layout, more, page, urlencode, SHOWN};
use crate::access::{GrantRef, Path, PermitRef, Subject};
use crate::controller::state::State;

#[derive(Debug, Default, Deserialize)]
pub struct Ask {
    user: Option<String>,
    contact: Option<String>,
    slug: Option<String>,
    permission: Option<String>,
    app: Option<String>,
}

/// Answers listed on the page at most (paths, permits, holders); the API
/// answers the same question whole.
const ANSWERS: usize = 4 * SHOWN;

/// The first `ANSWERS` items of `groups`, group by group.
fn first_of<T>(groups: &std::collections::BTreeMap<String, Vec<T>>) -> Vec<(&String, &[T])> {
    let mut left = ANSWERS;
    let mut shown = Vec::new();
    for (group, items) in groups {
        if left == 0 {
            break;
        }
        let take = items.len().min(left);
        shown.push((group, &items[..take]));
        left -= take;
    }
    shown
}

impl Ask {
    /// The same question to the JSON API (`can`, `who-can` or `subject`).
    fn api(&self, endpoint: &str) -> String {
        let parts: Vec<String> = [
            ("user", &self.user),
            ("contact", &self.contact),
            ("slug", &self.slug),
            ("permission", &self.permission),
            ("app", &self.app),
        ]
        .into_iter()
        .filter_map(|(name, value)| given(value).map(|v| format!("{name}={}", urlencode(v))))
        .collect();
        format!("/api/v1/access/{endpoint}?{}", parts.join("&"))
    }
}

fn place(permit: &PermitRef) -> Markup {
    html! { span class="muted" { " (" (permit.place.to_string()) ")" } }
}

fn grant(grant: &GrantRef) -> Markup {
    html! {
        @match &grant.member_role {
            Some(role) => { "member of organization " code { (grant.id) } " as " (role) },
            None => { "enrollment " code { (grant.id) } @if grant.app == crate::access::EVERY_APP { " (every app)" } },
        }
        " gives " code { (grant.holder.to_string()) } " the role " code { (grant.role) }
        span class="muted" { " (" (grant.place.to_string()) ")" }
    }
}

fn path(path: &Path) -> Markup {
    html! {
        li {
            "app " code { (path.app) } ": "
            @match (&path.slug, &path.grant) {
                (Some(slug), _) => { "permit " code { (path.permit.id) } (place(&path.permit)) " names slug " code { (slug) } },
                (None, Some(g)) => { (grant(g)) " → permit " code { (path.permit.id) } (place(&path.permit)) " grants " code { (path.permission_id) } " to " code { (path.pattern.clone().unwrap_or_default()) } },
                _ => {},
            }
        }
    }
}

pub async fn access_page(
    Extract(state): Extract<Arc<State>>,
    ask: Result<Query<Ask>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let ask = ask.map(|Query(a)| a).unwrap_or_default();
    let value = |v: &Option<String>| given(v).unwrap_or_default().to_owned();
    let form = html! {
        form class="filters" method="get" action="/access" role="search" {
            label { "User " input type="text" name="user" value=(value(&ask.user)); }
            label { "Contact " input type="text" name="contact" value=(value(&ask.contact)); }
            label { "Slug " input type="text" name="slug" value=(value(&ask.slug)); }
            label { "Permission " input type="text" name="permission" value=(value(&ask.permission)); }
            label { "App " input type="text" name="app" value=(value(&ask.app)); }
            button type="submit" { "Ask" }
        }
        p class="muted" { "A subject and a permission: can it, and why. A permission alone: who holds it. A subject alone: everything it holds." }
    };
    let (user, contact, slug) = (given(&ask.user), given(&ask.contact), given(&ask.slug));
    let asked = user.is_some() || contact.is_some() || slug.is_some();
    let permission = given(&ask.permission);
    let app = given(&ask.app);
    if !asked && permission.is_none() {
        return page(
            StatusCode::OK,
            layout("Access", "/access", html! { h1 { "Access" } (form) }),
        );
    }
    let subject = if !asked {
        None
    } else {
        match Subject::of(user, contact, slug) {
            Ok(subject) => Some(subject),
            Err(e) => {
                let body = html! { h1 { "Access" } (form) p class="alert error" role="alert" { (e.to_string()) } };
                return page(StatusCode::BAD_REQUEST, layout("Access", "/access", body));
            }
        }
    };
    let index = match state.access.get(&state.store).await {
        Ok(index) => index,
        Err(e) => {
            let body = html! { h1 { "Access" } (form) p class="alert error" role="alert" { "The database does not answer: " (e.to_string()) } };
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                layout("Access", "/access", body),
            );
        }
    };
    let answer = match (&subject, permission) {
        (Some(subject), Some(permission)) => {
            let decision = index.can(subject, permission, app);
            html! {
                @if decision.allowed {
                    p class="answer" { span class="badge synced" { "✓ allowed" } " " code { (decision.subject) } " can " code { (permission) } }
                    ul { @for p in decision.paths.iter().take(ANSWERS) { (path(p)) } }
                    (more(decision.paths.len(), ANSWERS, "paths", &ask.api("can")))
                } @else {
                    p class="answer" { span class="badge error" { "✕ denied" } " " code { (decision.subject) } " cannot " code { (permission) } }
                    @if decision.permits.is_empty() {
                        p { "No permit grants " code { (permission) } "." }
                    } @else {
                        p { "It is granted by:" }
                        ul { @for p in decision.permits.iter().take(ANSWERS) {
                            li { "permit " code { (p.id) } " in app " code { (p.app) } " to roles " code { (p.roles.join(", ")) } " and slugs " code { (p.slugs.join(", ")) } (place(p)) }
                        } }
                        (more(decision.permits.len(), ANSWERS, "permits", &ask.api("can")))
                    }
                }
            }
        }
        (None, Some(permission)) => {
            let who = index.who_can_by_app(permission, app);
            html! {
                h2 { "Who holds " code { (permission) } }
                @if who.apps.is_empty() { p class="muted" { "Nobody." } }
                @for (app, holdings) in first_of(&who.apps) {
                    h3 { "App " code { (app) } }
                    ul { @for h in holdings { li { code { (h.holder.to_string()) } ": " @match &h.path.grant { Some(g) => (grant(g)), None => { "named by permit " code { (h.path.permit.id) } } } } } }
                }
                (more(who.apps.values().map(Vec::len).sum(), ANSWERS, "holders", &ask.api("who-can")))
            }
        }
        (Some(subject), None) => {
            let held = index.access_by_app(subject, app);
            html! {
                h2 { "What " code { (held.subject) } " holds" }
                @if held.apps.is_empty() { p class="muted" { "No permission." } }
                @for (app, paths) in first_of(&held.apps) {
                    h3 { "App " code { (app) } }
                    ul { @for p in paths { li { code { (p.permission_id) } ": " @match &p.grant { Some(g) => (grant(g)), None => { "as slug" } } " → permit " code { (p.permit.id) } } } }
                }
                (more(held.apps.values().map(Vec::len).sum(), ANSWERS, "permissions", &ask.api("subject")))
            }
        }
        (None, None) => html! {},
    };
    page(
        StatusCode::OK,
        layout(
            "Access",
            "/access",
            html! { h1 { "Access" } (form) (answer) },
        ),
    )
}
