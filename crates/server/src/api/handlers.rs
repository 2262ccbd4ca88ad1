//! Handlers of `/api/v1` for devices, actions, readiness, the audit log and tokens: each parses
//! its input into domain values, calls the use case in `crate::service`, and answers with `api`
//! DTOs (or a problem document).

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use http::{header, StatusCode};
use redeploy_core::store::{ActionQuery, AuditOrder, Cursor, DeviceQuery, DeviceSort};
use redeploy_core::{
    ActionId, ActionKind, ActionState, AuditId, BatchId, DeviceId, JoinType, Role, TokenId,
};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::auth::Caller;
use super::ApiError;
use crate::dto::*;
use crate::service::actions as service;
use crate::service::{audit, devices, tokens, trail};
use crate::state::AppState;

pub(crate) type ApiResult<T> = Result<T, ApiError>;

pub(crate) const MAX_PAGE: u32 = 500;

/// A list's `limit`: 100 when absent, else 1..=[`MAX_PAGE`] (a 400 problem otherwise).
pub(crate) fn page_size(limit: Option<u32>) -> ApiResult<u32> {
    match limit.unwrap_or(100) {
        n @ 1..=MAX_PAGE => Ok(n),
        _ => Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_PAGE}"
        ))),
    }
}

pub(crate) fn device_id(text: &str) -> ApiResult<DeviceId> {
    DeviceId::parse(text).map_err(|_| ApiError::bad_request(format!("not a device id: {text:?}")))
}

fn action_id(text: &str) -> ApiResult<ActionId> {
    ActionId::parse(text).map_err(|_| ApiError::bad_request(format!("not an action id: {text:?}")))
}

/// List devices, with their readiness for a remote Autopilot Reset.
#[utoipa::path(get, path = "/api/v1/devices", tag = "devices",
    params(api::DeviceListQuery),
    responses(
        (status = 200, body = api::DevicePage),
        (status = 400, body = api::Problem, content_type = "application/problem+json"),
        (status = 401, body = api::Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_devices(
    State(state): State<AppState>,
    query: Result<Query<api::DeviceListQuery>, QueryRejection>,
) -> ApiResult<Json<api::DevicePage>> {
    let Query(q) = query?;
    let limit = page_size(q.limit)?;
    let sort = match q.sort.as_deref() {
        Some("serial") => DeviceSort::Serial,
        None | Some("name") => DeviceSort::Name,
        Some("last_seen") => DeviceSort::LastSeen,
        Some("enrolled_at") => DeviceSort::EnrolledAt,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "sort {other:?}: expected name, last_seen, serial or enrolled_at"
            )))
        }
    };
    let join_type = q
        .join_type
        .as_deref()
        .map(JoinType::parse)
        .transpose()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let listed = devices::list(
        &state,
        devices::Listing {
            query: DeviceQuery {
                search: q.q.filter(|s| !s.is_empty()),
                join_type,
                sort,
                limit,
                cursor: q.cursor.as_deref().map(Cursor::parse),
                ..DeviceQuery::default()
            },
            ready: q.ready,
            seen_recently: None,
        },
    )
    .await?;
    Ok(Json(api::DevicePage {
        items: listed.rows.iter().map(|(d, r)| device_dto(d, r)).collect(),
        next: listed.next,
    }))
}

/// One device with its inventory, readiness and actions (with timelines).
#[utoipa::path(get, path = "/api/v1/devices/{id}", tag = "devices",
    params(("id" = String, Path, description = "Device id")),
    responses(
        (status = 200, body = api::DeviceDetail),
        (status = 404, body = api::Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_device(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<api::DeviceDetail>> {
    let detail = devices::detail(&state, device_id(&id)?).await?;
    let mut device = device_dto(&detail.device, &detail.readiness);
    if state.push.is_some() {
        device.push = state
            .store
            .push_channel(detail.device.id)
            .await
            .map_err(crate::service::ServiceError::from)?
            .as_ref()
            .map(crate::dto::push_channel_dto);
    }
    Ok(Json(api::DeviceDetail {
        device,
        inventory: detail.inventory.iter().map(inventory_dto).collect(),
        actions: detail.actions.iter().map(action_dto).collect(),
        identity_clashes: detail
            .clashes
            .iter()
            .map(|c| api::IdentityClash {
                device: c.other.to_string(),
                name: c.other_name.clone(),
                attribute: c.attribute.as_str().to_owned(),
                value: c.value.clone(),
            })
            .collect(),
    }))
}

/// The device's support trail: the last messages it sent and our answers, newest first,
/// secrets redacted (helpdesk role and above).
#[utoipa::path(get, path = "/api/v1/devices/{id}/messages", tag = "devices",
    params(("id" = String, Path, description = "Device id"), api::DeviceMessagesQuery),
    responses(
        (status = 200, body = api::DeviceMessageList),
        (status = 403, body = api::Problem, content_type = "application/problem+json"),
        (status = 404, body = api::Problem, content_type = "application/problem+json"),
    ))]
pub async fn device_messages(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    query: Result<Query<api::DeviceMessagesQuery>, QueryRejection>,
) -> ApiResult<Json<api::DeviceMessageList>> {
    let Query(q) = query?;
    let id = device_id(&id)?;
    let messages = trail::recent(&state, &caller, id, q.limit.unwrap_or(20)).await?;
    Ok(Json(api::DeviceMessageList {
        items: messages.iter().map(device_message_dto).collect(),
    }))
}

async fn request_kind(
    state: &AppState,
    caller: &Caller,
    id: DeviceId,
    kind: ActionKind,
) -> ApiResult<Response> {
    let action = service::request(state, caller, id, kind, "").await?;
    Ok((StatusCode::ACCEPTED, Json(action_dto(&action))).into_response())
}

/// Ask a device to do something. A refused preflight is still 202, with state `blocked` and the
/// reason.
#[utoipa::path(post, path = "/api/v1/devices/{id}/actions", tag = "actions",
    params(("id" = String, Path, description = "Device id")),
    request_body = api::NewAction,
    responses(
        (status = 202, body = api::Action),
        (status = 400, body = api::Problem, content_type = "application/problem+json"),
        (status = 403, body = api::Problem, content_type = "application/problem+json"),
        (status = 404, body = api::Problem, content_type = "application/problem+json"),
    ))]
pub async fn request_action(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Result<Json<api::NewAction>, JsonRejection>,
) -> ApiResult<Response> {
    let id = device_id(&id)?;
    let Json(body) = body?;
    let kind = kind_from_dto(body.kind).ok_or_else(|| {
        ApiError::bad_request(
            "set the local-reset policy with POST /api/v1/devices/{id}/local-reset",
        )
    })?;
    request_kind(&state, &caller, id, kind).await
}

/// Allow or forbid local Autopilot Reset (CTRL+WIN+R) on a device: queues the policy change.
#[utoipa::path(post, path = "/api/v1/devices/{id}/local-reset", tag = "actions",
    params(("id" = String, Path, description = "Device id")),
    request_body = api::LocalResetPolicy,
    responses(
        (status = 202, body = api::Action),
        (status = 403, body = api::Problem, content_type = "application/problem+json"),
        (status = 404, body = api::Problem, content_type = "application/problem+json"),
    ))]
pub async fn set_local_reset(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Result<Json<api::LocalResetPolicy>, JsonRejection>,
) -> ApiResult<Response> {
    let id = device_id(&id)?;
    let Json(body) = body?;
    request_kind(
        &state,
        &caller,
        id,
        ActionKind::SetLocalResetPolicy(body.allowed),
    )
    .await
}

/// One action with its timeline.
#[utoipa::path(get, path = "/api/v1/actions/{id}", tag = "actions",
    params(("id" = String, Path, description = "Action id")),
    responses(
        (status = 200, body = api::Action),
        (status = 404, body = api::Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_action(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<api::Action>> {
    let action = service::get(&state, action_id(&id)?).await?;
    let mut dto = action_dto(&action);
    if state.push.is_some() {
        dto.woken_by = state
            .store
            .wakes(&[action.id])
            .await
            .map_err(crate::service::ServiceError::from)?
            .first()
            .map(|(_, by)| by.as_str().to_owned());
    }
    Ok(Json(dto))
}

/// Actions of a device (newest first) and/or in a state.
#[utoipa::path(get, path = "/api/v1/actions", tag = "actions",
    params(api::ActionListQuery),
    responses(
        (status = 200, body = api::ActionList),
        (status = 400, body = api::Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_actions(
    State(state): State<AppState>,
    query: Result<Query<api::ActionListQuery>, QueryRejection>,
) -> ApiResult<Json<api::ActionList>> {
    let Query(q) = query?;
    let limit = page_size(q.limit)?;
    let wanted = q
        .state
        .as_deref()
        .map(ActionState::parse)
        .transpose()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let device = q.device.as_deref().map(device_id).transpose()?;
    let batch = q
        .batch
        .as_deref()
        .map(|b| {
            BatchId::parse(b).map_err(|_| ApiError::bad_request(format!("not a batch id: {b:?}")))
        })
        .transpose()?;
    let page = service::page(
        &state,
        &ActionQuery {
            device,
            state: wanted,
            batch,
            limit,
            cursor: q.cursor.as_deref().map(Cursor::parse),
            ..ActionQuery::default()
        },
    )
    .await?;
    Ok(Json(api::ActionList {
        items: page.items.iter().map(action_dto).collect(),
        next: page.next.map(|c| c.as_str().to_owned()),
    }))
}

/// Cancel an action that has not reached the device (requested, blocked or pending).
#[utoipa::path(post, path = "/api/v1/actions/{id}/cancel", tag = "actions",
    params(("id" = String, Path, description = "Action id")),
    responses(
        (status = 200, body = api::Action),
        (status = 404, body = api::Problem, content_type = "application/problem+json"),
        (status = 409, body = api::Problem, content_type = "application/problem+json"),
    ))]
pub async fn cancel_action(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<api::Action>> {
    let action = service::cancel(&state, &caller, action_id(&id)?).await?;
    Ok(Json(action_dto(&action)))
}

/// Ask again for a failed, expired, canceled or blocked action: answers the new action. An
/// optional `reason` is audited and overrides preflight's WinRE checks.
#[utoipa::path(post, path = "/api/v1/actions/{id}/retry", tag = "actions",
    params(("id" = String, Path, description = "Action id")),
    request_body(content = Option<api::RetryAction>, description = "optional"),
    responses(
        (status = 202, body = api::Action),
        (status = 400, body = api::Problem, content_type = "application/problem+json"),
        (status = 404, body = api::Problem, content_type = "application/problem+json"),
        (status = 409, body = api::Problem, content_type = "application/problem+json"),
    ))]
pub async fn retry_action(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    // The body is optional: older clients post nothing.
    let body: api::RetryAction = if body.iter().all(u8::is_ascii_whitespace) {
        api::RetryAction::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("retry body: {e}")))?
    };
    let reason = body
        .reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty());
    let action = service::retry(&state, &caller, action_id(&id)?, reason).await?;
    Ok((StatusCode::ACCEPTED, Json(action_dto(&action))).into_response())
}

/// Fleet-wide readiness for remote Autopilot Reset (enrolled devices).
#[utoipa::path(get, path = "/api/v1/readiness", tag = "devices",
    responses((status = 200, body = api::FleetReadiness)))]
pub async fn fleet_readiness(
    State(state): State<AppState>,
) -> ApiResult<Json<api::FleetReadiness>> {
    let fleet = devices::fleet_readiness(&state).await?;
    Ok(Json(api::FleetReadiness {
        total: fleet.total,
        ready: fleet.ready,
        blocked_by_reason: fleet.blocked_by_reason,
        certificates_expired: fleet.certificates.expired,
        certificates_expiring_30d: fleet.certificates.expiring,
    }))
}

/// The audit log in position order, oldest first (`?order=desc`: newest first; `?format=csv` for
/// a CSV export). `next` is the `after` of the following page in the same order.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit",
    params(api::AuditQuery),
    responses(
        (status = 200, body = api::AuditPage, description = "JSON, or text/csv with format=csv"),
        (status = 400, body = api::Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_audit(
    State(state): State<AppState>,
    query: Result<Query<api::AuditQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(q) = query?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let device = q.device.as_deref().map(device_id).transpose()?;
    let order = match q.order.as_deref() {
        None | Some("asc") => AuditOrder::OldestFirst,
        Some("desc") => AuditOrder::NewestFirst,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "order {other:?}: expected asc or desc"
            )))
        }
    };
    let (events, next) = audit::list(
        &state,
        &audit::Listing {
            device,
            after: q.after.map(AuditId::from_i64),
            limit,
            order,
            ..audit::Listing::default()
        },
    )
    .await?;
    match q.format.as_deref() {
        None | Some("json") => Ok(Json(api::AuditPage {
            items: events.iter().map(audit_dto).collect(),
            next: next.map(|a| a.as_i64()),
        })
        .into_response()),
        Some("csv") => {
            let out = crate::dto::audit_csv(&events);
            Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], out).into_response())
        }
        Some(other) => Err(ApiError::bad_request(format!(
            "format {other:?}: expected json or csv"
        ))),
    }
}

/// Enrollment tokens (without secrets).
#[utoipa::path(get, path = "/api/v1/enrollment-tokens", tag = "tokens",
    responses((status = 200, body = api::EnrollmentTokenList),
        (status = 403, body = api::Problem, content_type = "application/problem+json")))]
pub async fn list_enrollment_tokens(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<api::EnrollmentTokenList>> {
    let tokens = tokens::enrollment_tokens(&state, &caller).await?;
    Ok(Json(api::EnrollmentTokenList {
        items: tokens.iter().map(enrollment_token_dto).collect(),
    }))
}

/// Create an enrollment token; the secret is in this answer only.
#[utoipa::path(post, path = "/api/v1/enrollment-tokens", tag = "tokens",
    request_body = api::NewEnrollmentToken,
    responses((status = 201, body = api::CreatedEnrollmentToken),
        (status = 400, body = api::Problem, content_type = "application/problem+json"),
        (status = 403, body = api::Problem, content_type = "application/problem+json")))]
pub async fn create_enrollment_token(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Result<Json<api::NewEnrollmentToken>, JsonRejection>,
) -> ApiResult<Response> {
    let Json(body) = body?;
    let expires_at = body
        .expires_at
        .as_deref()
        .map(|t| OffsetDateTime::parse(t, &Rfc3339))
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("expires_at is not RFC 3339: {e}")))?;
    let (token, secret) = tokens::create_enrollment_token(
        &state,
        &caller,
        tokens::NewEnrollmentToken {
            label: body.label,
            expires_at,
            max_uses: body.max_uses,
            vouches_entra_join: body.vouches_entra_join,
        },
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(api::CreatedEnrollmentToken {
            token: enrollment_token_dto(&token),
            secret,
        }),
    )
        .into_response())
}

/// API tokens (without secrets).
#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens",
    responses((status = 200, body = api::ApiTokenList),
        (status = 403, body = api::Problem, content_type = "application/problem+json")))]
pub async fn list_api_tokens(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<api::ApiTokenList>> {
    let tokens = tokens::api_tokens(&state, &caller).await?;
    Ok(Json(api::ApiTokenList {
        items: tokens.iter().map(api_token_dto).collect(),
    }))
}

/// Create an API token with a role; the secret is in this answer only (stored hashed).
#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens",
    request_body = api::NewApiToken,
    responses((status = 201, body = api::CreatedApiToken),
        (status = 400, body = api::Problem, content_type = "application/problem+json"),
        (status = 403, body = api::Problem, content_type = "application/problem+json")))]
pub async fn create_api_token(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Result<Json<api::NewApiToken>, JsonRejection>,
) -> ApiResult<Response> {
    let Json(body) = body?;
    let role = Role::parse(&body.role).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let (token, secret) = tokens::create_api_token(&state, &caller, &body.name, role).await?;
    Ok((
        StatusCode::CREATED,
        Json(api::CreatedApiToken {
            token: api_token_dto(&token),
            secret,
        }),
    )
        .into_response())
}

/// Revoke an API token.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "tokens",
    params(("id" = String, Path, description = "Token id")),
    responses((status = 204, description = "Revoked"),
        (status = 403, body = api::Problem, content_type = "application/problem+json"),
        (status = 404, body = api::Problem, content_type = "application/problem+json")))]
pub async fn revoke_api_token(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id = TokenId::parse(&id)
        .map_err(|_| ApiError::bad_request(format!("not a token id: {id:?}")))?;
    tokens::revoke_api_token(&state, &caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
