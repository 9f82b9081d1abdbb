//! The access queries over the live database: the same answers, in the same
//! JSON, as `accord can`, `accord who-can` and `accord access --database`.

use std::sync::Arc;

use axum::extract::State as Extract;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;

use super::{unavailable, ApiQuery, ApiResult, Problem, PROBLEM_JSON};
use crate::access::{Decision, Subject, SubjectAccess, WhoCan};
use crate::controller::state::State;

/// Who is asking about: a user, a contact, a slug — or a user and a
/// contact together, one person with both.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SubjectParams {
    /// A user id.
    user: Option<String>,
    /// A contact (e-mail-like id).
    contact: Option<String>,
    /// A service slug.
    slug: Option<String>,
    /// Only this app.
    app: Option<String>,
}

impl SubjectParams {
    fn subject(&self) -> ApiResult<Subject> {
        subject_of(&self.user, &self.contact, &self.slug)
    }
}

fn subject_of(
    user: &Option<String>,
    contact: &Option<String>,
    slug: &Option<String>,
) -> ApiResult<Subject> {
    Subject::of(user.as_deref(), contact.as_deref(), slug.as_deref()).map_err(|e| {
        let detail = match e {
            crate::access::SubjectError::None => {
                "give the subject as `user`, `contact` or `slug` (or `user` and `contact`)"
                    .to_owned()
            }
            e => e.to_string(),
        };
        Problem::new(StatusCode::BAD_REQUEST, detail)
    })
}

/// A subject and a permission.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CanParams {
    /// A user id.
    user: Option<String>,
    /// A contact (e-mail-like id).
    contact: Option<String>,
    /// A service slug.
    slug: Option<String>,
    /// The permission, e.g. `payment-svc:refund`.
    permission: String,
    /// Only this app.
    app: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WhoCanParams {
    /// The permission, e.g. `payment-svc:refund`.
    permission: String,
    /// Only this app.
    app: Option<String>,
}

async fn index(state: &State) -> ApiResult<Arc<crate::access::Access>> {
    state.access.get(&state.store).await.map_err(unavailable)
}

/// Can the subject do the permission? Every path that grants it; when none
/// does, the permits that grant it to others.
#[utoipa::path(get, path = "/api/v1/access/can", tag = "access",
    params(CanParams),
    responses(
        (status = 200, description = "The decision, allowed or not, with its paths", body = Decision),
        (status = 400, description = "No subject, or a malformed one", body = Problem, content_type = PROBLEM_JSON),
        (status = 503, description = "The database does not answer", body = Problem, content_type = PROBLEM_JSON),
    ))]
pub async fn can(
    Extract(state): Extract<Arc<State>>,
    ApiQuery(params): ApiQuery<CanParams>,
) -> ApiResult<Json<Decision>> {
    let subject = subject_of(&params.user, &params.contact, &params.slug)?;
    let access = index(&state).await?;
    Ok(Json(access.can(
        &subject,
        &params.permission,
        params.app.as_deref(),
    )))
}

/// Every holder of the permission, by app, with how it holds it.
#[utoipa::path(get, path = "/api/v1/access/who-can", tag = "access",
    params(WhoCanParams),
    responses(
        (status = 200, description = "The holders, by app", body = WhoCan),
        (status = 400, description = "No permission given", body = Problem, content_type = PROBLEM_JSON),
        (status = 503, description = "The database does not answer", body = Problem, content_type = PROBLEM_JSON),
    ))]
pub async fn who_can(
    Extract(state): Extract<Arc<State>>,
    ApiQuery(params): ApiQuery<WhoCanParams>,
) -> ApiResult<Json<WhoCan>> {
    let access = index(&state).await?;
    Ok(Json(
        access.who_can_by_app(&params.permission, params.app.as_deref()),
    ))
}

/// Every permission the subject holds, by app, and through what.
#[utoipa::path(get, path = "/api/v1/access/subject", tag = "access",
    params(SubjectParams),
    responses(
        (status = 200, description = "The subject's permissions, by app", body = SubjectAccess),
        (status = 400, description = "No subject, or a malformed one", body = Problem, content_type = PROBLEM_JSON),
        (status = 503, description = "The database does not answer", body = Problem, content_type = PROBLEM_JSON),
    ))]
pub async fn subject(
    Extract(state): Extract<Arc<State>>,
    ApiQuery(params): ApiQuery<SubjectParams>,
) -> ApiResult<Json<SubjectAccess>> {
    let subject = params.subject()?;
    let access = index(&state).await?;
    Ok(Json(access.access_by_app(&subject, params.app.as_deref())))
}
