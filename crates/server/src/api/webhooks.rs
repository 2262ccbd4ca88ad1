//! `/api/v1/webhooks`: subscriptions to action outcomes (admin role), their deliveries, and a
//! test `ping`. Sending itself lives in `crate::webhooks`.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use http::StatusCode;
use redeploy_core::webhook::{Delivery, Webhook, WebhookEvent};
use redeploy_core::{AuditOutcome, NewAuditEvent, Role, WebhookId};

use super::auth::Caller;
use super::convert::ts;
use super::ApiError;
use crate::state::AppState;

type ApiResult<T> = Result<T, ApiError>;

/// Deliveries listed per request.
const DELIVERY_PAGE: u32 = 100;

pub fn webhook_dto(w: &Webhook) -> api::Webhook {
    api::Webhook {
        id: w.id.to_string(),
        name: w.name.clone(),
        url: w.url.clone(),
        events: w.events.iter().map(|e| e.as_str().to_owned()).collect(),
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

async fn load(state: &AppState, id: &str) -> ApiResult<Webhook> {
    let id = webhook_id(id)?;
    state
        .store
        .webhook(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no webhook {id}")))
}

async fn audit(state: &AppState, caller: &Caller, action: &str, details: String) -> ApiResult<()> {
    state
        .store
        .append_audit(NewAuditEvent {
            at: state.clock.now(),
            actor: caller.actor(),
            action: action.to_owned(),
            targets: Vec::new(),
            batch: None,
            outcome: AuditOutcome::Success,
            details,
        })
        .await?;
    Ok(())
}

/// An absolute `http://` or `https://` URL with a host.
fn check_url(url: &str) -> ApiResult<String> {
    let url = url.trim();
    let parsed: http::Uri = url
        .parse()
        .map_err(|e| ApiError::bad_request(format!("url {url:?} is not a URL: {e}")))?;
    let scheme_ok = matches!(parsed.scheme_str(), Some("http" | "https"));
    if !scheme_ok || parsed.host().is_none_or(str::is_empty) {
        return Err(ApiError::bad_request(format!(
            "url {url:?} must be an absolute http:// or https:// URL"
        )));
    }
    Ok(url.to_owned())
}

/// Webhook subscriptions (without secrets).
#[utoipa::path(get, path = "/api/v1/webhooks", tag = "webhooks",
    responses((status = 200, body = api::WebhookList),
        (status = 403, body = api::Problem, content_type = "application/problem+json")))]
pub async fn list_webhooks(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<api::WebhookList>> {
    caller
        .require(&state, Role::Admin, "list webhooks", None)
        .await?;
    let hooks = state.store.list_webhooks().await?;
    Ok(Json(api::WebhookList {
        items: hooks.iter().map(webhook_dto).collect(),
    }))
}

/// Subscribe a URL to action outcomes. Deliveries are signed with the secret
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
    caller
        .require(&state, Role::Admin, "create a webhook", None)
        .await?;
    let url = check_url(&body.url)?;
    let name = match body.name.as_deref().map(str::trim) {
        Some("") => return Err(ApiError::bad_request("name must not be empty")),
        Some(n) => n.to_owned(),
        None => url.clone(),
    };
    let events = match &body.events {
        None => WebhookEvent::SUBSCRIBABLE.to_vec(),
        Some(list) => WebhookEvent::parse_list(&list.join(",")).map_err(|e| {
            ApiError::bad_request(format!("events: {e}; expected some of done, failed, stuck"))
        })?,
    };
    let (secret, generated) = match body.secret {
        Some(s) if s.trim().is_empty() => {
            return Err(ApiError::bad_request("secret must not be empty"))
        }
        Some(s) => (s, false),
        None => (crate::bootstrap::new_secret("rdp_whsec_"), true),
    };
    let now = state.clock.now();
    let hook = Webhook {
        id: WebhookId::generate(),
        name,
        url,
        secret,
        events,
        enabled: true,
        created_at: now,
        notify_since: now,
    };
    state.store.create_webhook(&hook).await?;
    audit(
        &state,
        &caller,
        "webhook.create",
        format!("{} {:?} -> {}", hook.id, hook.name, hook.url),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(api::CreatedWebhook {
            webhook: webhook_dto(&hook),
            secret: generated.then_some(hook.secret),
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
    caller
        .require(&state, Role::Admin, "delete a webhook", None)
        .await?;
    let id = webhook_id(&id)?;
    state.store.delete_webhook(id).await?;
    audit(&state, &caller, "webhook.delete", id.to_string()).await?;
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
    caller
        .require(&state, Role::Admin, "enable or disable a webhook", None)
        .await?;
    let hook = load(&state, &id).await?;
    state
        .store
        .set_webhook_enabled(hook.id, body.enabled, state.clock.now())
        .await?;
    let (action, was) = if body.enabled {
        ("webhook.enable", hook.enabled)
    } else {
        ("webhook.disable", !hook.enabled)
    };
    let note = if was { " (already)" } else { "" };
    audit(
        &state,
        &caller,
        action,
        format!("{} {:?}{note}", hook.id, hook.name),
    )
    .await?;
    let now = load(&state, &id).await?;
    Ok(Json(webhook_dto(&now)))
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
    caller
        .require(&state, Role::Admin, "list webhook deliveries", None)
        .await?;
    let hook = load(&state, &id).await?;
    let list = state
        .store
        .deliveries_of_webhook(hook.id, DELIVERY_PAGE)
        .await?;
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
    caller
        .require(&state, Role::Admin, "test a webhook", None)
        .await?;
    let hook = load(&state, &id).await?;
    let delivery = crate::webhooks::ping(&state, &hook).await?;
    audit(
        &state,
        &caller,
        "webhook.test",
        format!("{} ping {}", hook.id, delivery.status().as_str()),
    )
    .await?;
    Ok(Json(delivery_dto(&delivery)))
}
