//! The HTTP API of `accord run`: health, metrics, status, drift, audit,
//! sync triggers, push webhooks, the per-organization GitOps switch and
//! the access queries.
//! Errors are RFC 7807 problem documents. Each route is declared once, with
//! the handler that serves it and the OpenAPI operation that describes it
//! (`#[utoipa::path]`), so the document `openapi()` returns cannot leave a
//! route out.

mod access;
pub mod doc;
pub mod hooks;
pub mod listen;
mod observe;
pub mod ui;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Query, State as Extract};
use axum::http::{header, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use crate::controller::state::{HistoryStatus, OpenItem, SourceStatus, State, SyncState};
use crate::model::Kind;
use crate::store::{Approval, ApprovalError, AuditEntry, AuditQuery, OrgSwitch, Store};

/// A problem document (RFC 7807), the one error shape of the API.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// Always `about:blank`: the status code says what went wrong.
    #[serde(rename = "type")]
    kind: &'static str,
    /// The status code's reason phrase.
    title: &'static str,
    status: u16,
    /// What went wrong, for a person.
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
            header::HeaderValue::from_static(PROBLEM_JSON),
        );
        response
    }
}

/// The media type of a problem document.
pub const PROBLEM_JSON: &str = "application/problem+json";

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

/// Proof that a mutating request carries the API token (when one is
/// configured). Every POST handler but the webhook's takes it first, so the
/// token is checked before anything else about the request; the OpenAPI
/// document marks those operations with the `bearer` security scheme, and
/// tests/api.rs checks each such operation refuses a request without it.
pub struct Authorized;

impl FromRequestParts<Arc<State>> for Authorized {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &Arc<State>,
    ) -> Result<Self, Response> {
        if state.read_only {
            return Err(Problem::new(
                StatusCode::FORBIDDEN,
                "this is `accord ui`, which only reads the database; changes go through `accord run`",
            )
            .into_response());
        }
        let Some(token) = &state.api_token else {
            return Ok(Authorized);
        };
        let given = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given.is_some_and(|g| same_secret(g.as_bytes(), token.as_bytes())) {
            return Ok(Authorized);
        }
        let mut response = Problem::new(
            StatusCode::UNAUTHORIZED,
            "this endpoint needs `Authorization: Bearer <token>` with the configured API token",
        )
        .into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        Err(response)
    }
}

/// How long a `POST …/sync` waits for the sync it asked for.
const SYNC_WAIT: Duration = Duration::from_secs(120);
/// Webhook payloads are small; anything bigger is refused before it is read.
const HOOK_BODY_LIMIT: usize = 1024 * 1024;

/// Every route with its OpenAPI operation.
fn api() -> OpenApiRouter<Arc<State>> {
    OpenApiRouter::with_openapi(doc::ApiDoc::openapi())
        .routes(routes!(dashboard))
        .routes(routes!(health))
        .routes(routes!(healthz))
        .routes(routes!(ready))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .routes(routes!(openapi_json))
        .routes(routes!(status))
        .routes(routes!(drift))
        .routes(routes!(audit_logs))
        .routes(routes!(audit))
        .routes(routes!(audit_entry))
        .routes(routes!(sync_source))
        .routes(routes!(approve_deletions))
        .routes(routes!(org_status))
        .routes(routes!(org_drift))
        .routes(routes!(org_sync))
        .routes(routes!(org_enable))
        .routes(routes!(org_disable))
        .routes(routes!(access::can))
        .routes(routes!(access::who_can))
        .routes(routes!(access::subject))
        .routes(routes!(hooks::receive).layer(DefaultBodyLimit::max(HOOK_BODY_LIMIT)))
}

/// The OpenAPI 3.1 document of the HTTP API (`GET /api/v1/openapi.json`,
/// `accord openapi`).
pub fn openapi() -> utoipa::openapi::OpenApi {
    api().into_openapi()
}

pub fn router(state: Arc<State>) -> Router {
    let (routes, _) = api().split_for_parts();
    let routes = routes
        .merge(ui::routes())
        .fallback(|| async { Problem::new(StatusCode::NOT_FOUND, "no such endpoint") })
        .method_not_allowed_fallback(|| async {
            Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "this endpoint does not take that method",
            )
        })
        .layer(middleware::map_response(problem_documents));
    observe::layer(routes, state.clone()).with_state(state)
}

/// Every error is a problem document, including those answered before a
/// handler runs (a body over its limit: 413; a body too slow: 408).
async fn problem_documents(response: Response) -> Response {
    let status = response.status();
    // A problem already, or a page for people (which says what went wrong itself).
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| {
            v.as_bytes().starts_with(PROBLEM_JSON.as_bytes())
                || v.as_bytes().starts_with(b"text/html")
        });
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

/// The process is up and serving HTTP.
#[utoipa::path(get, path = "/health", tag = "health",
    responses((status = 200, description = "Alive", body = String, content_type = "text/plain", example = "ok\n")))]
async fn health() -> &'static str {
    "ok\n"
}

/// The same as `/health`, under its older name.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "Alive", body = String, content_type = "text/plain", example = "ok\n")))]
async fn healthz() -> &'static str {
    health().await
}

/// Ready for traffic: the database answers within 2 s and every source has
/// synced once (a replica standing by for the leader lease: the database
/// answers).
#[utoipa::path(get, path = "/ready", tag = "health",
    responses(
        (status = 200, description = "Ready", body = String, content_type = "text/plain", example = "ready\n"),
        (status = 503, description = "The database does not answer, or a source has not synced yet", body = Problem, content_type = PROBLEM_JSON),
    ))]
async fn ready(Extract(state): Extract<Arc<State>>) -> ApiResult<&'static str> {
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

/// The same as `/ready`, under its older name.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "Ready", body = String, content_type = "text/plain", example = "ready\n"),
        (status = 503, description = "The database does not answer, or a source has not synced yet", body = Problem, content_type = PROBLEM_JSON),
    ))]
async fn readyz(state: Extract<Arc<State>>) -> ApiResult<&'static str> {
    ready(state).await
}

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Prometheus metrics: OpenMetrics when the `Accept` header asks for
/// `application/openmetrics-text` (as Prometheus does), else the classic
/// text format.
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "The metrics", content(
        (String = "text/plain; version=0.0.4"),
        (String = "application/openmetrics-text; version=1.0.0"),
    ))))]
async fn metrics(
    Extract(state): Extract<Arc<State>>,
    headers: axum::http::HeaderMap,
) -> impl IntoResponse {
    let (size, idle) = match &*state.store {
        crate::store::AnyStore::Sqlite(s) => (s.pool().size(), s.pool().num_idle()),
        crate::store::AnyStore::Postgres(s) => (s.pool().size(), s.pool().num_idle()),
    };
    state.metrics.set_db_connections(size, idle);
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    if openmetrics {
        (
            [(header::CONTENT_TYPE, OPENMETRICS)],
            state.metrics.encode(),
        )
    } else {
        (
            [(header::CONTENT_TYPE, PROMETHEUS_TEXT)],
            state.metrics.encode_classic(),
        )
    }
}

/// This API's OpenAPI 3.1 document (also printed by `accord openapi`).
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "meta",
    responses((status = 200, description = "The OpenAPI document", body = Object, content_type = "application/json")))]
async fn openapi_json() -> Response {
    static DOCUMENT: std::sync::LazyLock<Result<String, String>> =
        std::sync::LazyLock::new(|| openapi().to_json().map_err(|e| e.to_string()));
    match &*DOCUMENT {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json.as_str()).into_response(),
        Err(e) => Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot write the OpenAPI document: {e}"),
        )
        .into_response(),
    }
}

/// Every source's state, and the history's hash chain as last verified.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct StatusBody {
    sources: Vec<SourceStatus>,
    /// The history's hash chain, as last verified.
    audit_chain: HistoryStatus,
    /// Each notification receiver's deliveries and last failure (empty when
    /// none is configured).
    notifications: Vec<crate::controller::notifications::ReceiverStatus>,
}

/// Every source's state.
#[utoipa::path(get, path = "/api/v1/status", tag = "status",
    responses((status = 200, description = "Every source's state", body = StatusBody)))]
async fn status(Extract(state): Extract<Arc<State>>) -> Json<StatusBody> {
    Json(StatusBody {
        sources: state.statuses(),
        audit_chain: state.history(),
        notifications: state
            .notifier
            .as_ref()
            .map(|n| n.statuses())
            .unwrap_or_default(),
    })
}

/// Objects left differing from what is declared.
#[derive(Serialize, ToSchema)]
struct DriftBody {
    /// Open drift (report mode).
    items: Vec<OpenItem>,
    /// Rows another source (or nobody) manages that a source declares.
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

/// Open drift items (report mode) and conflicts, with diffs.
#[utoipa::path(get, path = "/api/v1/drift", tag = "status",
    responses((status = 200, description = "Open drift and conflicts", body = DriftBody)))]
async fn drift(Extract(state): Extract<Arc<State>>) -> Json<DriftBody> {
    Json(open_items(&state, |_| true))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct AuditParams {
    /// Only entries of this source.
    source: Option<String>,
    /// Only entries of this kind: `Organization`, `Permit` or `Enrollment`
    /// (any case).
    kind: Option<String>,
    /// Only entries made at or after this time (RFC 3339).
    since: Option<DateTime<Utc>>,
    /// At most this many entries (default 100; at most 10,000 are returned).
    limit: Option<u32>,
}

/// Audit entries, newest first.
#[derive(Serialize, ToSchema)]
struct AuditLog {
    entries: Vec<AuditEntry>,
}

fn unavailable(error: impl std::fmt::Display) -> Problem {
    Problem::new(StatusCode::SERVICE_UNAVAILABLE, error.to_string())
}

/// The audit log, newest first.
#[utoipa::path(get, path = "/api/v1/audit-logs", tag = "audit", params(AuditParams),
    responses(
        (status = 200, description = "Audit entries, newest first", body = AuditLog),
        (status = 400, description = "A query parameter is malformed", body = Problem, content_type = PROBLEM_JSON),
        (status = 503, description = "The database does not answer", body = Problem, content_type = PROBLEM_JSON),
    ))]
async fn audit_logs(
    Extract(state): Extract<Arc<State>>,
    ApiQuery(params): ApiQuery<AuditParams>,
) -> ApiResult<Json<AuditLog>> {
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
    let entries = state.store.audit(&query).await.map_err(unavailable)?;
    Ok(Json(AuditLog { entries }))
}

/// The same as `/api/v1/audit-logs`, under its older name.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(AuditParams),
    responses(
        (status = 200, description = "Audit entries, newest first", body = AuditLog),
        (status = 400, description = "A query parameter is malformed", body = Problem, content_type = PROBLEM_JSON),
        (status = 503, description = "The database does not answer", body = Problem, content_type = PROBLEM_JSON),
    ))]
async fn audit(
    state: Extract<Arc<State>>,
    params: ApiQuery<AuditParams>,
) -> ApiResult<Json<AuditLog>> {
    audit_logs(state, params).await
}

/// One audit entry, by its `seq`.
#[utoipa::path(get, path = "/api/v1/audit-logs/{id}", tag = "audit",
    params(("id" = i64, Path, description = "The entry's `seq`")),
    responses(
        (status = 200, description = "The entry", body = AuditEntry),
        (status = 400, description = "The id is not a whole number", body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "No entry has this `seq`", body = Problem, content_type = PROBLEM_JSON),
        (status = 503, description = "The database does not answer", body = Problem, content_type = PROBLEM_JSON),
    ))]
async fn audit_entry(
    Extract(state): Extract<Arc<State>>,
    Path(id): Path<String>,
) -> ApiResult<Json<AuditEntry>> {
    let seq: i64 = id.parse().map_err(|_| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            format!("`{id}` is not an audit entry id (its `seq`, a whole number)"),
        )
    })?;
    let query = AuditQuery {
        seq: Some(seq),
        limit: 1,
        ..AuditQuery::default()
    };
    let entries = state.store.audit(&query).await.map_err(unavailable)?;
    entries
        .into_iter()
        .next()
        .map(Json)
        .ok_or_else(|| Problem::new(StatusCode::NOT_FOUND, format!("no audit entry {seq}")))
}

/// Syncs a source now and answers with its status after that sync.
#[utoipa::path(post, path = "/api/v1/sources/{name}/sync", tag = "sources",
    params(("name" = String, Path, description = "The source's name")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The source's status after the sync", body = SourceStatus),
        (status = 401, description = "No API token, or a wrong one", body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "No source has this name", body = Problem, content_type = PROBLEM_JSON),
        (status = 503, description = "The source is shutting down", body = Problem, content_type = PROBLEM_JSON),
        (status = 504, description = "The sync is still running after 120 s", body = Problem, content_type = PROBLEM_JSON),
    ))]
async fn sync_source(
    _: Authorized,
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
#[derive(Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ApproveBody {
    set: Option<String>,
    /// Who approves, for the sync record; `api` when not given.
    approved_by: Option<String>,
}

/// Approves the deletions the deletion guard refused for a source; its next
/// sync applies them.
#[utoipa::path(post, path = "/api/v1/sources/{name}/approve-deletions", tag = "sources",
    params(("name" = String, Path, description = "The source's name")),
    request_body(content = Option<ApproveBody>, content_type = "application/json",
        description = "Optional; an empty body approves whatever set is refused now"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The approval", body = Approval),
        (status = 400, description = "The body is not an approval", body = Problem, content_type = PROBLEM_JSON),
        (status = 401, description = "No API token, or a wrong one", body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "No source has this name", body = Problem, content_type = PROBLEM_JSON),
        (status = 409, description = "Nothing is refused, or the refused set is not the one given", body = Problem, content_type = PROBLEM_JSON),
        (status = 503, description = "The database does not answer", body = Problem, content_type = PROBLEM_JSON),
    ))]
async fn approve_deletions(
    _: Authorized,
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
            ApprovalError::Store(e) => unavailable(e),
            other => Problem::new(StatusCode::CONFLICT, other.to_string()),
        })?;
    tracing::info!(source = %name, set = %approval.set, deletes = approval.deletes, approved_by = %approval.approved_by, "deletions approved");
    source.poke("deletions approved");
    Ok(Json(approval))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct OrgParams {
    /// Only the organization in this app (default: in every app).
    app: Option<String>,
}

/// One organization's GitOps switch in each app, and its state.
#[derive(Serialize, ToSchema)]
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
    let switches = state.store.gitops(slug, app).await.map_err(unavailable)?;
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

/// One organization's GitOps switch in each app, and its state.
#[utoipa::path(get, path = "/api/v1/organizations/{slug}/gitops/status", tag = "organizations",
    params(("slug" = String, Path, description = "The organization's slug"), OrgParams),
    responses(
        (status = 200, description = "The organization", body = OrgStatus),
        (status = 404, description = "No such organization (in that app)", body = Problem, content_type = PROBLEM_JSON),
        (status = 503, description = "The database does not answer", body = Problem, content_type = PROBLEM_JSON),
    ))]
async fn org_status(
    Extract(state): Extract<Arc<State>>,
    Path(slug): Path<String>,
    ApiQuery(params): ApiQuery<OrgParams>,
) -> ApiResult<Json<OrgStatus>> {
    let switches = org_switches(&state, &slug, params.app.as_deref()).await?;
    Ok(Json(org_report(&state, &slug, switches)))
}

/// One organization's open drift and conflicts.
#[utoipa::path(get, path = "/api/v1/organizations/{slug}/gitops/drift", tag = "organizations",
    params(("slug" = String, Path, description = "The organization's slug"), OrgParams),
    responses(
        (status = 200, description = "The organization's drift and conflicts", body = DriftBody),
        (status = 404, description = "No such organization (in that app)", body = Problem, content_type = PROBLEM_JSON),
        (status = 503, description = "The database does not answer", body = Problem, content_type = PROBLEM_JSON),
    ))]
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

/// Syncs the sources that manage an organization now.
#[utoipa::path(post, path = "/api/v1/organizations/{slug}/gitops/sync", tag = "organizations",
    params(("slug" = String, Path, description = "The organization's slug"), OrgParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The organization after the syncs", body = OrgStatus),
        (status = 401, description = "No API token, or a wrong one", body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "No such organization (in that app)", body = Problem, content_type = PROBLEM_JSON),
        (status = 503, description = "The database does not answer", body = Problem, content_type = PROBLEM_JSON),
    ))]
async fn org_sync(
    _: Authorized,
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
        .map_err(unavailable)?;
    tracing::info!(organization = slug, app = ?app, enabled, "gitops switched");
    // The owners re-plan now, so status shows the org as suspended or synced.
    for owner in switches.iter().filter_map(|s| s.managed_by.as_deref()) {
        if let Some(source) = state.source(owner) {
            source.poke("gitops switch");
        }
    }
    Ok(Json(org_report(state, slug, switches)))
}

/// Turns reconciliation of an organization back on.
#[utoipa::path(post, path = "/api/v1/organizations/{slug}/gitops/enable", tag = "organizations",
    params(("slug" = String, Path, description = "The organization's slug"), OrgParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The organization after the switch", body = OrgStatus),
        (status = 401, description = "No API token, or a wrong one", body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "No such organization (in that app)", body = Problem, content_type = PROBLEM_JSON),
        (status = 503, description = "The database does not answer", body = Problem, content_type = PROBLEM_JSON),
    ))]
async fn org_enable(
    _: Authorized,
    Extract(state): Extract<Arc<State>>,
    Path(slug): Path<String>,
    ApiQuery(params): ApiQuery<OrgParams>,
) -> ApiResult<Json<OrgStatus>> {
    set_gitops(&state, &slug, params.app.as_deref(), true).await
}

/// Suspends reconciliation of an organization: accord leaves its rows alone
/// until it is enabled again.
#[utoipa::path(post, path = "/api/v1/organizations/{slug}/gitops/disable", tag = "organizations",
    params(("slug" = String, Path, description = "The organization's slug"), OrgParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The organization after the switch", body = OrgStatus),
        (status = 401, description = "No API token, or a wrong one", body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "No such organization (in that app)", body = Problem, content_type = PROBLEM_JSON),
        (status = 503, description = "The database does not answer", body = Problem, content_type = PROBLEM_JSON),
    ))]
async fn org_disable(
    _: Authorized,
    Extract(state): Extract<Arc<State>>,
    Path(slug): Path<String>,
    ApiQuery(params): ApiQuery<OrgParams>,
) -> ApiResult<Json<OrgStatus>> {
    set_gitops(&state, &slug, params.app.as_deref(), false).await
}

/// The overview page for people: every source's state, updated in place.
#[utoipa::path(get, path = "/", tag = "status",
    responses((status = 200, description = "The overview page", body = String, content_type = "text/html")))]
async fn dashboard(Extract(state): Extract<Arc<State>>) -> Response {
    ui::overview(&state)
}
