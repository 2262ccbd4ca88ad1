//! `/api/v1/accounts`: the web console's named local accounts (admin role, audited): listed,
//! created with a password (kept only as an Argon2id hash), disabled. The use cases are
//! `crate::service::accounts`.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use http::StatusCode;
use redeploy_core::{Account, Role};

use super::auth::Caller;
use super::ApiError;
use crate::dto::ts;
use crate::service::accounts;
use crate::state::AppState;

type ApiResult<T> = Result<T, ApiError>;

pub fn account_dto(a: &Account) -> api::Account {
    api::Account {
        id: a.id.to_string(),
        name: a.name.to_string(),
        role: a.role.as_str().to_owned(),
        created_at: ts(a.created_at),
        disabled_at: a.disabled_at.map(ts),
    }
}

/// Accounts, oldest first (admin role).
#[utoipa::path(get, path = "/api/v1/accounts", tag = "accounts",
    responses((status = 200, body = api::AccountList),
        (status = 403, body = api::Problem, content_type = "application/problem+json")))]
pub async fn list_accounts(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<api::AccountList>> {
    let items = accounts::list(&state, &caller).await?;
    Ok(Json(api::AccountList {
        items: items.iter().map(account_dto).collect(),
    }))
}

/// Create an account with a role and a password (admin role).
#[utoipa::path(post, path = "/api/v1/accounts", tag = "accounts",
    request_body = api::NewAccount,
    responses((status = 201, body = api::Account),
        (status = 400, body = api::Problem, content_type = "application/problem+json"),
        (status = 403, body = api::Problem, content_type = "application/problem+json"),
        (status = 409, body = api::Problem, content_type = "application/problem+json")))]
pub async fn create_account(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Result<Json<api::NewAccount>, JsonRejection>,
) -> ApiResult<Response> {
    let Json(body) = body?;
    let role = Role::parse(&body.role).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let account = accounts::create(&state, &caller, &body.name, role, &body.password).await?;
    Ok((StatusCode::CREATED, Json(account_dto(&account))).into_response())
}

/// Disable an account: it cannot sign in again and its console sessions end (admin role).
#[utoipa::path(post, path = "/api/v1/accounts/{name}/disable", tag = "accounts",
    params(("name" = String, Path, description = "Account name")),
    responses((status = 200, body = api::Account),
        (status = 403, body = api::Problem, content_type = "application/problem+json"),
        (status = 404, body = api::Problem, content_type = "application/problem+json")))]
pub async fn disable_account(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> ApiResult<Json<api::Account>> {
    let account = accounts::disable(&state, &caller, &name).await?;
    Ok(Json(account_dto(&account)))
}
