//! Push webhooks: `POST /hooks/{source}` from GitHub (`X-Hub-Signature-256`),
//! Gitea (`X-Gitea-Signature`) or GitLab (`X-Gitlab-Token`), checked against
//! the source's secret in constant time. A valid one asks for a sync; anything
//! else is 401 and triggers nothing.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State as Extract};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use utoipa::ToSchema;

use super::{same_secret, Problem, PROBLEM_JSON};
use crate::controller::state::State;

/// A webhook whose signature holds: the source syncs soon.
#[derive(Serialize, ToSchema)]
pub struct HookAccepted {
    accepted: bool,
    /// `github`, `gitea` or `gitlab`.
    provider: &'static str,
}

/// Asks a Git source to sync now, for a push its host reports.
#[utoipa::path(post, path = "/hooks/{source}", tag = "webhooks",
    params(
        ("source" = String, Path, description = "The source's name"),
        ("X-Hub-Signature-256" = Option<String>, Header, nullable = false, description = "GitHub: `sha256=` and the HMAC-SHA256 of the body, keyed with the webhook secret"),
        ("X-Gitea-Signature" = Option<String>, Header, nullable = false, description = "Gitea: the hex HMAC-SHA256 of the body, keyed with the webhook secret"),
        ("X-Gitlab-Token" = Option<String>, Header, nullable = false, description = "GitLab: the webhook secret itself"),
    ),
    request_body(content = Object, content_type = "application/json",
        description = "The host's push payload (at most 1 MiB); only its signature is read"),
    responses(
        (status = 202, description = "Accepted: the source syncs soon", body = HookAccepted),
        (status = 401, description = "No signature, or one that does not match", body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "No source has this name, or it takes no webhooks", body = Problem, content_type = PROBLEM_JSON),
        (status = 413, description = "The body is over 1 MiB", body = Problem, content_type = PROBLEM_JSON),
    ))]
pub async fn receive(
    Extract(state): Extract<Arc<State>>,
    Path(source): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(handle) = state.source(&source) else {
        return Problem::new(StatusCode::NOT_FOUND, format!("no source named `{source}`"))
            .into_response();
    };
    let Some(secret) = &handle.webhook_secret else {
        return Problem::new(
            StatusCode::NOT_FOUND,
            format!("source `{source}` has no webhookSecretFile, so it takes no webhooks"),
        )
        .into_response();
    };
    match verify(&headers, &body, secret.as_bytes()) {
        Ok(provider) => {
            tracing::info!(source = %source, provider, "webhook accepted");
            handle.poke("webhook");
            (
                StatusCode::ACCEPTED,
                Json(HookAccepted {
                    accepted: true,
                    provider,
                }),
            )
                .into_response()
        }
        Err(reason) => {
            tracing::warn!(source = %source, reason, "webhook refused");
            Problem::new(StatusCode::UNAUTHORIZED, reason).into_response()
        }
    }
}

/// Which provider signed the request, or why it is refused.
pub fn verify(
    headers: &HeaderMap,
    body: &[u8],
    secret: &[u8],
) -> Result<&'static str, &'static str> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(signature) = header("x-hub-signature-256") {
        let hex = signature
            .strip_prefix("sha256=")
            .ok_or("X-Hub-Signature-256 must start with sha256=")?;
        return hmac_matches(secret, body, hex)
            .then_some("github")
            .ok_or("X-Hub-Signature-256 does not match");
    }
    if let Some(signature) = header("x-gitea-signature") {
        return hmac_matches(secret, body, signature)
            .then_some("gitea")
            .ok_or("X-Gitea-Signature does not match");
    }
    if let Some(token) = header("x-gitlab-token") {
        return same_secret(token.as_bytes(), secret)
            .then_some("gitlab")
            .ok_or("X-Gitlab-Token does not match");
    }
    Err("missing signature: expected X-Hub-Signature-256, X-Gitea-Signature or X-Gitlab-Token")
}

fn hmac_matches(secret: &[u8], body: &[u8], hex_signature: &str) -> bool {
    let Ok(expected) = hex::decode(hex_signature.trim()) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// `sha256=<hex>` for a body, as GitHub signs it.
pub fn github_signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(name: &'static str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(value).expect("header"));
        h
    }

    #[test]
    fn each_provider_is_verified_and_a_wrong_secret_is_refused() {
        let body = br#"{"ref":"refs/heads/main"}"#;
        let github = github_signature(b"s3cret", body);
        assert_eq!(
            verify(&headers("x-hub-signature-256", &github), body, b"s3cret"),
            Ok("github")
        );
        assert!(verify(&headers("x-hub-signature-256", &github), body, b"other").is_err());
        assert!(verify(
            &headers("x-hub-signature-256", &github),
            b"tampered",
            b"s3cret"
        )
        .is_err());
        let gitea = github.trim_start_matches("sha256=").to_owned();
        assert_eq!(
            verify(&headers("x-gitea-signature", &gitea), body, b"s3cret"),
            Ok("gitea")
        );
        assert_eq!(
            verify(&headers("x-gitlab-token", "s3cret"), body, b"s3cret"),
            Ok("gitlab")
        );
        assert!(verify(&headers("x-gitlab-token", "s3cre"), body, b"s3cret").is_err());
        assert!(verify(&HeaderMap::new(), body, b"s3cret").is_err());
    }
}
