//! The HTTP API of `accord run`: health, metrics, status, drift, audit,
//! sync triggers, push webhooks and the per-organization GitOps switch.
//! Errors are RFC 7807 problem documents.

pub mod hooks;
pub mod listen;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Query, Request, State as Extract};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::controller::state::{HistoryStatus, OpenItem, SourceStatus, State, SyncState};
use crate::model::Kind;
use crate::store::{Approval, ApprovalError, AuditQuery, OrgSwitch, Store};

/// A problem document (RFC 7807), the one error shape of the API.
#[derive(Debug, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    kind: &'static str,
    title: &'static str,
    status: u16,
    detail: String,
}

impl Problem {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Problem {
        Problem {
            kind: "about:blank",
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail: detail.into(),
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, Json(&self)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/problem+json"),
        );
        response
    }
}

type ApiResult<T> = Result<T, Problem>;

/// A query string, whose parse errors are problem documents like every other error.
pub struct ApiQuery<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Problem> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| ApiQuery(value))
            .map_err(|rejection| Problem::new(StatusCode::BAD_REQUEST, rejection.body_text()))
    }
}

/// How long a `POST …/sync` waits for the sync it asked for.
const SYNC_WAIT: Duration = Duration::from_secs(120);
/// Webhook payloads are small; anything bigger is refused before it is read.
const HOOK_BODY_LIMIT: usize = 1024 * 1024;

pub fn router(state: Arc<State>) -> Router {
    let mutating = Router::new()
        .route("/api/v1/sources/{name}/sync", post(sync_source))
        .route(
            "/api/v1/sources/{name}/approve-deletions",
            post(approve_deletions),
        )
        .route("/api/v1/organizations/{slug}/gitops/sync", post(org_sync))
        .route(
            "/api/v1/organizations/{slug}/gitops/enable",
            post(org_enable),
        )
        .route(
            "/api/v1/organizations/{slug}/gitops/disable",
            post(org_disable),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/", get(dashboard))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/status", get(status))
        .route("/api/v1/drift", get(drift))
        .route("/api/v1/audit", get(audit))
        .route(
            "/api/v1/organizations/{slug}/gitops/status",
            get(org_status),
        )
        .route("/api/v1/organizations/{slug}/gitops/drift", get(org_drift))
        .route(
            "/hooks/{source}",
            post(hooks::receive).layer(DefaultBodyLimit::max(HOOK_BODY_LIMIT)),
        )
        .merge(mutating)
        .fallback(|| async { Problem::new(StatusCode::NOT_FOUND, "no such endpoint") })
        .method_not_allowed_fallback(|| async {
            Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "this endpoint does not take that method",
            )
        })
        .layer(middleware::map_response(problem_documents))
        .with_state(state)
}

/// Every error is a problem document, including those answered before a
/// handler runs (a body over its limit: 413; a body too slow: 408).
async fn problem_documents(response: Response) -> Response {
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    if is_problem || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 16 * 1024)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let detail = match text.trim() {
        "" => status.canonical_reason().unwrap_or("error").to_owned(),
        text => text.to_owned(),
    };
    let mut problem = Problem::new(status, detail).into_response();
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            problem.headers_mut().insert(name.clone(), value.clone());
        }
    }
    problem
}

/// Constant-time equality, so a token cannot be guessed byte by byte.
pub fn same_secret(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn require_token(
    Extract(state): Extract<Arc<State>>,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Response {
    if let Some(token) = &state.api_token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|g| same_secret(g.as_bytes(), token.as_bytes())) {
            let mut response = Problem::new(
                StatusCode::UNAUTHORIZED,
                "this endpoint needs `Authorization: Bearer <token>` with the configured API token",
            )
            .into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            return response;
        }
    }
    next.run(request).await
}

async fn readyz(Extract(state): Extract<Arc<State>>) -> ApiResult<&'static str> {
    // Probes give up after a second or two; answer before they do.
    let unreachable = |detail: String| Problem::new(StatusCode::SERVICE_UNAVAILABLE, detail);
    match tokio::time::timeout(Duration::from_secs(2), state.store.ping()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(unreachable(format!("database unreachable: {e}"))),
        Err(_) => {
            return Err(unreachable(
                "database unreachable: no answer within 2 s".into(),
            ))
        }
    }
    // A replica standing by for the leader lease syncs nothing; it is ready
    // when the database answers, or a rolling update would never finish.
    let standing_by = state.leadership.as_ref().is_some_and(|l| !l.is_leader());
    if !state.synced_once() && !standing_by {
        return Err(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not every source has synced yet",
        ));
    }
    Ok("ready\n")
}

async fn metrics(Extract(state): Extract<Arc<State>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusBody {
    sources: Vec<SourceStatus>,
    /// The history's hash chain, as last verified.
    audit_chain: HistoryStatus,
}

async fn status(Extract(state): Extract<Arc<State>>) -> Json<StatusBody> {
    Json(StatusBody {
        sources: state.statuses(),
        audit_chain: state.history(),
    })
}

#[derive(Serialize)]
struct DriftBody {
    items: Vec<OpenItem>,
    conflicts: Vec<OpenItem>,
}

fn open_items(state: &State, keep: impl Fn(&OpenItem) -> bool) -> DriftBody {
    let statuses = state.statuses();
    DriftBody {
        items: statuses
            .iter()
            .flat_map(|s| s.drift.iter())
            .filter(|i| keep(i))
            .cloned()
            .collect(),
        conflicts: statuses
            .iter()
            .flat_map(|s| s.conflicts.iter())
            .filter(|i| keep(i))
            .cloned()
            .collect(),
    }
}

async fn drift(Extract(state): Extract<Arc<State>>) -> Json<DriftBody> {
    Json(open_items(&state, |_| true))
}

#[derive(Deserialize)]
struct AuditParams {
    source: Option<String>,
    kind: Option<String>,
    since: Option<DateTime<Utc>>,
    limit: Option<u32>,
}

async fn audit(
    Extract(state): Extract<Arc<State>>,
    ApiQuery(params): ApiQuery<AuditParams>,
) -> ApiResult<Json<serde_json::Value>> {
    let kind = match params.kind.as_deref() {
        None => None,
        Some(text) => Some(
            Kind::ALL
                .into_iter()
                .find(|k| k.as_str().eq_ignore_ascii_case(text))
                .ok_or_else(|| {
                    Problem::new(
                        StatusCode::BAD_REQUEST,
                        format!(
                            "unknown kind `{text}`, expected Organization, Permit or Enrollment"
                        ),
                    )
                })?,
        ),
    };
    let query = AuditQuery {
        source: params.source,
        kind,
        since: params.since,
        limit: params.limit.unwrap_or(100).min(10_000),
        ..AuditQuery::default()
    };
    let entries = state
        .store
        .audit(&query)
        .await
        .map_err(|e| Problem::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    Ok(Json(json!({ "entries": entries })))
}

async fn sync_source(
    Extract(state): Extract<Arc<State>>,
    Path(name): Path<String>,
) -> ApiResult<Json<SourceStatus>> {
    let source = state
        .source(&name)
        .ok_or_else(|| Problem::new(StatusCode::NOT_FOUND, format!("no source named `{name}`")))?;
    match tokio::time::timeout(SYNC_WAIT, source.sync_now("api")).await {
        Ok(Some(status)) => Ok(Json(status)),
        Ok(None) => Err(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the source is shutting down",
        )),
        Err(_) => Err(Problem::new(
            StatusCode::GATEWAY_TIMEOUT,
            "the sync is still running",
        )),
    }
}

/// An approval of refused deletions. `set`, when given, must be the set
/// the source's status shows (`deletionRefused.set`), so an approval made
/// from a status that has since changed approves nothing.
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ApproveBody {
    set: Option<String>,
    /// Who approves, for the sync record; `api` when not given.
    approved_by: Option<String>,
}

async fn approve_deletions(
    Extract(state): Extract<Arc<State>>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Approval>> {
    let source = state
        .source(&name)
        .ok_or_else(|| Problem::new(StatusCode::NOT_FOUND, format!("no source named `{name}`")))?;
    let body: ApproveBody = if body.iter().all(u8::is_ascii_whitespace) {
        ApproveBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                format!("the body is not an approval: {e}"),
            )
        })?
    };
    let by = body.approved_by.unwrap_or_else(|| "api".into());
    let approval = state
        .store
        .approve_deletions(&name, body.set.as_deref(), &by)
        .await
        .map_err(|e| match e {
            ApprovalError::Store(e) => Problem::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
            other => Problem::new(StatusCode::CONFLICT, other.to_string()),
        })?;
    tracing::info!(source = %name, set = %approval.set, deletes = approval.deletes, approved_by = %approval.approved_by, "deletions approved");
    source.poke("deletions approved");
    Ok(Json(approval))
}

#[derive(Deserialize)]
struct OrgParams {
    app: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OrgStatus {
    slug: String,
    /// `Suspended` when reconciliation is off in every app, else the state
    /// of the sources that manage it.
    state: SyncState,
    apps: Vec<OrgSwitch>,
    drift: Vec<OpenItem>,
}

async fn org_switches(state: &State, slug: &str, app: Option<&str>) -> ApiResult<Vec<OrgSwitch>> {
    let switches = state
        .store
        .gitops(slug, app)
        .await
        .map_err(|e| Problem::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    if switches.is_empty() {
        return Err(Problem::new(
            StatusCode::NOT_FOUND,
            format!(
                "no organization `{slug}`{}",
                app.map(|a| format!(" in app `{a}`")).unwrap_or_default()
            ),
        ));
    }
    Ok(switches)
}

fn org_report(state: &State, slug: &str, switches: Vec<OrgSwitch>) -> OrgStatus {
    let drift = open_items(state, |i| i.kind == "Organization" && i.id == slug).items;
    let owners: Vec<SourceStatus> = switches
        .iter()
        .filter_map(|s| s.managed_by.as_deref())
        .filter_map(|name| state.source(name).map(|h| h.status()))
        .collect();
    let suspended_in_source = owners.iter().any(|s| {
        s.suspended
            .iter()
            .any(|i| i.kind == "Organization" && i.id == slug)
    });
    let org_state = if suspended_in_source || switches.iter().all(|s| !s.gitops) {
        SyncState::Suspended
    } else if !drift.is_empty() {
        SyncState::OutOfSync
    } else if owners.iter().any(|s| s.state == SyncState::Error) {
        SyncState::Error
    } else {
        SyncState::Synced
    };
    OrgStatus {
        slug: slug.to_owned(),
        state: org_state,
        apps: switches,
        drift,
    }
}

async fn org_status(
    Extract(state): Extract<Arc<State>>,
    Path(slug): Path<String>,
    ApiQuery(params): ApiQuery<OrgParams>,
) -> ApiResult<Json<OrgStatus>> {
    let switches = org_switches(&state, &slug, params.app.as_deref()).await?;
    Ok(Json(org_report(&state, &slug, switches)))
}

async fn org_drift(
    Extract(state): Extract<Arc<State>>,
    Path(slug): Path<String>,
    ApiQuery(params): ApiQuery<OrgParams>,
) -> ApiResult<Json<DriftBody>> {
    org_switches(&state, &slug, params.app.as_deref()).await?;
    Ok(Json(open_items(&state, |i| {
        i.kind == "Organization" && i.id == slug
    })))
}

async fn org_sync(
    Extract(state): Extract<Arc<State>>,
    Path(slug): Path<String>,
    ApiQuery(params): ApiQuery<OrgParams>,
) -> ApiResult<Json<OrgStatus>> {
    let switches = org_switches(&state, &slug, params.app.as_deref()).await?;
    let mut owners: Vec<&str> = switches
        .iter()
        .filter_map(|s| s.managed_by.as_deref())
        .collect();
    owners.dedup();
    for owner in owners {
        if let Some(source) = state.source(owner) {
            let _ = tokio::time::timeout(SYNC_WAIT, source.sync_now("organization sync")).await;
        }
    }
    let switches = org_switches(&state, &slug, params.app.as_deref()).await?;
    Ok(Json(org_report(&state, &slug, switches)))
}

async fn set_gitops(
    state: &State,
    slug: &str,
    app: Option<&str>,
    enabled: bool,
) -> ApiResult<Json<OrgStatus>> {
    org_switches(state, slug, app).await?;
    let switches = state
        .store
        .set_gitops(slug, app, enabled)
        .await
        .map_err(|e| Problem::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    tracing::info!(organization = slug, app = ?app, enabled, "gitops switched");
    // The owners re-plan now, so status shows the org as suspended or synced.
    for owner in switches.iter().filter_map(|s| s.managed_by.as_deref()) {
        if let Some(source) = state.source(owner) {
            source.poke("gitops switch");
        }
    }
    Ok(Json(org_report(state, slug, switches)))
}

async fn org_enable(
    Extract(state): Extract<Arc<State>>,
    Path(slug): Path<String>,
    ApiQuery(params): ApiQuery<OrgParams>,
) -> ApiResult<Json<OrgStatus>> {
    set_gitops(&state, &slug, params.app.as_deref(), true).await
}

async fn org_disable(
    Extract(state): Extract<Arc<State>>,
    Path(slug): Path<String>,
    ApiQuery(params): ApiQuery<OrgParams>,
) -> ApiResult<Json<OrgStatus>> {
    set_gitops(&state, &slug, params.app.as_deref(), false).await
}

/// A small page for people: every source's state, refreshed every 5 seconds.
async fn dashboard(Extract(state): Extract<Arc<State>>) -> Html<String> {
    let escape = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let mut rows = String::new();
    for s in state.statuses() {
        rows.push_str(&format!(
            "<tr class=\"{state:?}\"><td>{name}</td><td>{kind}</td><td>{state:?}</td><td><code>{rev}</code></td><td>{success}</td><td>{managed}</td><td>{drift}</td><td>{message}</td></tr>\n",
            name = escape(&s.name),
            kind = s.kind,
            state = s.state,
            rev = escape(s.last_applied_revision.as_deref().unwrap_or("—")),
            success = s.last_success_at.map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string()).unwrap_or_else(|| "never".into()),
            managed = s.counts.managed,
            drift = s.drift.len(),
            message = escape(&s.message),
        ));
    }
    let history = state.history();
    let chain = match (history.ok, &history.problem) {
        (Some(false), Some(problem)) => format!(
            "<p class=\"Error\" role=\"alert\"><strong>Audit history broken:</strong> {}</p>",
            escape(problem)
        ),
        (Some(true), _) => format!(
            "<p>Audit history verified: {} sync runs, {} audit rows.</p>",
            history.sync_runs, history.audit_rows
        ),
        _ => "<p>Audit history not verified yet.</p>".to_owned(),
    };
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"5\"><title>accord</title>\
<style>body{{font-family:system-ui,sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{padding:.3em .8em;border-bottom:1px solid #ddd;text-align:left}}\
.Error td:nth-child(3),p.Error{{color:#b00}}.OutOfSync td:nth-child(3){{color:#a60}}.Synced td:nth-child(3){{color:#070}}</style></head>\
<body><h1>accord</h1>{chain}<table><tr><th>source</th><th>type</th><th>state</th><th>applied revision</th><th>last success</th><th>managed</th><th>open drift</th><th>message</th></tr>\n{rows}</table>\
<p><a href=\"/api/v1/status\">status</a> · <a href=\"/api/v1/drift\">drift</a> · <a href=\"/api/v1/audit\">audit</a> · <a href=\"/metrics\">metrics</a></p></body></html>"
    ))
}
