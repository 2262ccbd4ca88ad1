//! `/api/v1/webhooks`: subscriptions to action outcomes (admin role), their deliveries, and a
//! test `ping`. The use cases are `crate::service::webhooks`; sending is `crate::webhook_delivery`.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use http::StatusCode;
use redeploy_core::webhook::{Delivery, Webhook, WebhookEvent, WebhookKind};
use redeploy_core::WebhookId;

use super::auth::Caller;
use super::ApiError;
use crate::dto::ts;
use crate::service::webhooks;
use crate::state::AppState;

type ApiResult<T> = Result<T, ApiError>;

pub fn webhook_dto(w: &Webhook) -> api::Webhook {
    api::Webhook {
        id: w.id.to_string(),
        name: w.name.clone(),
        url: w.url.clone(),
        events: w.events.iter().map(|e| e.as_str().to_owned()).collect(),
        kind: w.kind.as_str().to_owned(),
        enabled: w.enabled,
        created_at: ts(w.created_at),
    }
}

pub fn delivery_dto(d: &Delivery) -> api::WebhookDelivery {
    api::WebhookDelivery {
        id: d.id.to_string(),
        webhook_id: d.webhook.to_string(),
        event: d.event.as_str().to_owned(),
        action_id: d.action.map(|a| a.to_string()),
        batch_id: d.batch.map(|b| b.to_string()),
        status: d.status().as_str().to_owned(),
        attempts: d.attempts,
        next_attempt_at: d.next_attempt_at.map(ts),
        delivered_at: d.delivered_at.map(ts),
        last_status: d.last_status,
        last_error: d.last_error.clone(),
        created_at: ts(d.created_at),
    }
}

fn webhook_id(text: &str) -> ApiResult<WebhookId> {
    WebhookId::parse(text).map_err(|_| ApiError::bad_request(format!("not a webhook id: {text:?}")))
}

/// Webhook subscriptions (without secrets).
#[utoipa::path(get, path = "/api/v1/webhooks", tag = "webhooks",
    responses((status = 200, body = api::WebhookList),
        (status = 403, body = api::Problem, content_type = "application/problem+json")))]
pub async fn list_webhooks(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<api::WebhookList>> {
    let hooks = webhooks::list(&state, &caller).await?;
    Ok(Json(api::WebhookList {
        items: hooks.iter().map(webhook_dto).collect(),
    }))
}

/// Subscribe a URL to action outcomes, or a Teams/Slack channel or an e-mail address to batch
/// outcomes (`kind`). Raw deliveries are signed with the secret
/// (`X-Redeploy-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`); a generated
/// secret is in this answer only.
#[utoipa::path(post, path = "/api/v1/webhooks", tag = "webhooks",
    request_body = api::NewWebhook,
    responses((status = 201, body = api::CreatedWebhook),
        (status = 400, body = api::Problem, content_type = "application/problem+json"),
        (status = 403, body = api::Problem, content_type = "application/problem+json"),
        (status = 409, body = api::Problem, content_type = "application/problem+json")))]
pub async fn create_webhook(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Result<Json<api::NewWebhook>, JsonRejection>,
) -> ApiResult<Response> {
    let Json(body) = body?;
    let events = body
        .events
        .as_ref()
        .map(|list| {
            WebhookEvent::parse_list(&list.join(",")).map_err(|e| {
                ApiError::bad_request(format!(
                    "events: {e}; expected some of done, failed, stuck, batch.done, \
                     batch.failed, batch.stuck"
                ))
            })
        })
        .transpose()?;
    let kind = body
        .kind
        .as_deref()
        .map(|k| {
            WebhookKind::parse(k.trim()).map_err(|e| {
                ApiError::bad_request(format!("kind: {e}; expected raw, teams, slack or email"))
            })
        })
        .transpose()?;
    let new = webhooks::NewWebhook {
        url: body.url,
        kind,
        name: body.name,
        events,
        secret: body.secret,
    };
    let (hook, secret) = webhooks::create(&state, &caller, new).await?;
    Ok((
        StatusCode::CREATED,
        Json(api::CreatedWebhook {
            webhook: webhook_dto(&hook),
            secret,
        }),
    )
        .into_response())
}

/// Delete a webhook and its deliveries.
#[utoipa::path(delete, path = "/api/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "Webhook id")),
    responses((status = 204, description = "Deleted"),
        (status = 403, body = api::Problem, content_type = "application/problem+json"),
        (status = 404, body = api::Problem, content_type = "application/problem+json")))]
pub async fn delete_webhook(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    webhooks::delete(&state, &caller, webhook_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Enable or disable a webhook. Disabled: nothing new is enqueued and due deliveries wait.
/// Enabled again: those deliveries go out, but actions that ended while it was disabled are not
/// sent (it notifies about actions updated from the re-enable on).
#[utoipa::path(patch, path = "/api/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "Webhook id")),
    request_body = api::WebhookPatch,
    responses((status = 200, body = api::Webhook),
        (status = 400, body = api::Problem, content_type = "application/problem+json"),
        (status = 403, body = api::Problem, content_type = "application/problem+json"),
        (status = 404, body = api::Problem, content_type = "application/problem+json")))]
pub async fn patch_webhook(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Result<Json<api::WebhookPatch>, JsonRejection>,
) -> ApiResult<Json<api::Webhook>> {
    let Json(body) = body?;
    let hook = webhooks::set_enabled(&state, &caller, webhook_id(&id)?, body.enabled).await?;
    Ok(Json(webhook_dto(&hook)))
}

/// The latest deliveries of a webhook (newest first) with their attempts.
#[utoipa::path(get, path = "/api/v1/webhooks/{id}/deliveries", tag = "webhooks",
    params(("id" = String, Path, description = "Webhook id")),
    responses((status = 200, body = api::WebhookDeliveryList),
        (status = 403, body = api::Problem, content_type = "application/problem+json"),
        (status = 404, body = api::Problem, content_type = "application/problem+json")))]
pub async fn list_deliveries(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<api::WebhookDeliveryList>> {
    let list = webhooks::deliveries(&state, &caller, webhook_id(&id)?).await?;
    Ok(Json(api::WebhookDeliveryList {
        items: list.iter().map(delivery_dto).collect(),
    }))
}

/// Send a `ping` event now (one attempt) and answer how it went.
#[utoipa::path(post, path = "/api/v1/webhooks/{id}/test", tag = "webhooks",
    params(("id" = String, Path, description = "Webhook id")),
    responses((status = 200, body = api::WebhookDelivery,
            description = "The ping's delivery: status `delivered` or `given_up` with last_error"),
        (status = 403, body = api::Problem, content_type = "application/problem+json"),
        (status = 404, body = api::Problem, content_type = "application/problem+json")))]
pub async fn test_webhook(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<api::WebhookDelivery>> {
    let delivery = webhooks::test(&state, &caller, webhook_id(&id)?).await?;
    Ok(Json(delivery_dto(&delivery)))
}
