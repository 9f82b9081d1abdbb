//! What every request leaves behind: an `x-request-id` (the client's, or a
//! new UUID) echoed on the response, one log line, and the HTTP metrics,
//! all labelled by the route template the request matched (`unmatched`
//! when none did), never by its raw path.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State as Extract};
use axum::http::Method;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use tracing::Span;

use crate::controller::state::State;
use crate::metrics::{RequestLabels, RouteLabel};

/// The label of a request no route matched.
pub const UNMATCHED: &str = "unmatched";

/// Routes polled by machines every few seconds: probes, scrapes, and the
/// dashboard, which reloads itself. Their successful answers are logged at
/// `debug`, so an `info` log is not a stream of them.
const POLLED: [&str; 6] = ["/", "/health", "/healthz", "/ready", "/readyz", "/metrics"];

/// `router` with a request id, a log line and metrics for every request.
/// Added with `Router::layer`, so each layer sees the route the request
/// matched (axum's `MatchedPath`), and the fallback's answers are counted
/// too.
pub fn layer(router: Router<Arc<State>>, state: Arc<State>) -> Router<Arc<State>> {
    router
        .layer(middleware::from_fn_with_state(state, record))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(span)
                .on_request(())
                .on_response(log)
                .on_failure(()),
        )
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}

fn route<B>(request: &axum::http::Request<B>) -> &str {
    request
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED, MatchedPath::as_str)
}

/// The method as a label: one of the standard ones, or `other`, so a
/// client cannot invent series.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The request's span, whose fields every line logged while it is answered
/// carries. A polled route's span is named `probe`, which `log` reads.
fn span<B>(request: &axum::http::Request<B>) -> Span {
    let route = route(request);
    let method = method_label(request.method());
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if request.method() == Method::GET && POLLED.contains(&route) {
        tracing::info_span!("probe", request_id, method, route)
    } else {
        tracing::info_span!("request", request_id, method, route)
    }
}

/// One line per request, inside its span: status and duration.
fn log<B>(response: &axum::http::Response<B>, latency: Duration, span: &Span) {
    let status = response.status().as_u16();
    // Milliseconds to the microsecond: precise enough, and short to read.
    let duration_ms = (latency.as_secs_f64() * 1e6).round() / 1e3;
    let polled = span.metadata().is_some_and(|m| m.name() == "probe");
    if polled && response.status().is_success() {
        tracing::debug!(status, duration_ms, "request answered");
    } else {
        tracing::info!(status, duration_ms, "request answered");
    }
}

async fn record(Extract(state): Extract<Arc<State>>, request: Request, next: Next) -> Response {
    let route = route(&request).to_owned();
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    let metrics = &state.metrics;
    metrics
        .http_requests
        .get_or_create(&RequestLabels {
            route: route.clone(),
            method: method.into(),
            status: response.status().as_str().into(),
        })
        .inc();
    metrics
        .http_duration
        .get_or_create(&RouteLabel { route })
        .observe(started.elapsed().as_secs_f64());
    response
}
