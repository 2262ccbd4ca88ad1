//! Webhook subscriptions as an admin manages them: list, subscribe a URL to action outcomes
//! (with a given or generated signing secret), delete, enable or disable, list deliveries, and
//! send a test `ping`. Admins only; each change audited. Sending itself is
//! `crate::webhook_delivery`.

use redeploy_core::webhook::{Delivery, Webhook, WebhookEvent, WebhookKind};
use redeploy_core::{Role, WebhookId};

use super::{audit, Caller, Result, ServiceError};
use crate::state::AppState;

/// Deliveries listed at once.
const DELIVERY_PAGE: u32 = 100;

/// The webhook `id`, or [`ServiceError::NotFound`].
async fn load(state: &AppState, id: WebhookId) -> Result<Webhook> {
    state
        .store
        .webhook(id)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("no webhook {id}")))
}

/// Every subscription.
pub async fn list(state: &AppState, caller: &Caller) -> Result<Vec<Webhook>> {
    caller
        .require(state, Role::Admin, "list webhooks", None)
        .await?;
    Ok(state.store.list_webhooks().await?)
}

/// What a new subscription is to be.
#[derive(Debug, Clone)]
pub struct NewWebhook {
    /// An absolute `http://` or `https://` URL; for [`WebhookKind::Email`], the recipient.
    pub url: String,
    /// `None` = [`WebhookKind::Raw`].
    pub kind: Option<WebhookKind>,
    /// `None` = the URL.
    pub name: Option<String>,
    /// `None` = every event one can subscribe to.
    pub events: Option<Vec<WebhookEvent>>,
    /// `None` = a generated one, returned once.
    pub secret: Option<String>,
}

/// An absolute `http://` or `https://` URL with a host.
fn check_url(url: &str) -> Result<String> {
    let url = url.trim();
    let parsed: http::Uri = url
        .parse()
        .map_err(|e| ServiceError::Invalid(format!("url {url:?} is not a URL: {e}")))?;
    let scheme_ok = matches!(parsed.scheme_str(), Some("http" | "https"));
    if !scheme_ok || parsed.host().is_none_or(str::is_empty) {
        return Err(ServiceError::Invalid(format!(
            "url {url:?} must be an absolute http:// or https:// URL"
        )));
    }
    Ok(url.to_owned())
}

/// A single e-mail address (`someone@example.org`, or `Name <someone@example.org>`).
fn check_address(text: &str) -> Result<String> {
    let text = text.trim();
    text.parse::<lettre::message::Mailbox>()
        .map_err(|e| ServiceError::Invalid(format!("{text:?} is not an e-mail address: {e}")))?;
    Ok(text.to_owned())
}

/// Subscribes a URL: the webhook and, when the server generated it, its secret (shown once).
pub async fn create(
    state: &AppState,
    caller: &Caller,
    new: NewWebhook,
) -> Result<(Webhook, Option<String>)> {
    caller
        .require(state, Role::Admin, "create a webhook", None)
        .await?;
    let kind = new.kind.unwrap_or(WebhookKind::Raw);
    let url = match kind {
        WebhookKind::Email => check_address(&new.url)?,
        _ => check_url(&new.url)?,
    };
    let name = match new.name.as_deref().map(str::trim) {
        Some("") => return Err(ServiceError::Invalid("name must not be empty".into())),
        Some(n) => n.to_owned(),
        None => url.clone(),
    };
    let events = new.events.unwrap_or_else(|| kind.default_events().to_vec());
    if let Some(e) = events.iter().find(|e| !kind.carries(**e)) {
        return Err(ServiceError::Invalid(format!(
            "a {kind} subscription is told about batches only (batch.done, batch.failed, \
             batch.stuck), not {e}"
        )));
    }
    let (secret, generated) = match new.secret {
        Some(s) if s.trim().is_empty() => {
            return Err(ServiceError::Invalid("secret must not be empty".into()))
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
        kind,
        enabled: true,
        created_at: now,
        notify_since: now,
    };
    state.store.create_webhook(&hook).await?;
    audit::record(
        state,
        caller,
        "webhook.create",
        format!("{} {:?} {} -> {}", hook.id, hook.name, hook.kind, hook.url),
    )
    .await?;
    let shown = generated.then(|| hook.secret.clone());
    Ok((hook, shown))
}

/// Deletes a webhook and its deliveries.
pub async fn delete(state: &AppState, caller: &Caller, id: WebhookId) -> Result<()> {
    caller
        .require(state, Role::Admin, "delete a webhook", None)
        .await?;
    state.store.delete_webhook(id).await?;
    audit::record(state, caller, "webhook.delete", id.to_string()).await
}

/// Enables or disables a webhook: disabled, nothing new is enqueued and due deliveries wait;
/// enabled again, it notifies about actions updated from then on.
pub async fn set_enabled(
    state: &AppState,
    caller: &Caller,
    id: WebhookId,
    enabled: bool,
) -> Result<Webhook> {
    caller
        .require(state, Role::Admin, "enable or disable a webhook", None)
        .await?;
    let hook = load(state, id).await?;
    state
        .store
        .set_webhook_enabled(hook.id, enabled, state.clock.now())
        .await?;
    let (action, was) = if enabled {
        ("webhook.enable", hook.enabled)
    } else {
        ("webhook.disable", !hook.enabled)
    };
    let note = if was { " (already)" } else { "" };
    audit::record(
        state,
        caller,
        action,
        format!("{} {:?}{note}", hook.id, hook.name),
    )
    .await?;
    load(state, id).await
}

/// The latest deliveries of a webhook, newest first.
pub async fn deliveries(state: &AppState, caller: &Caller, id: WebhookId) -> Result<Vec<Delivery>> {
    caller
        .require(state, Role::Admin, "list webhook deliveries", None)
        .await?;
    let hook = load(state, id).await?;
    Ok(state
        .store
        .deliveries_of_webhook(hook.id, DELIVERY_PAGE)
        .await?)
}

/// Sends a `ping` now (one attempt): its delivery, audited as `webhook.test`.
pub async fn test(state: &AppState, caller: &Caller, id: WebhookId) -> Result<Delivery> {
    caller
        .require(state, Role::Admin, "test a webhook", None)
        .await?;
    let hook = load(state, id).await?;
    let delivery = crate::webhook_delivery::ping(state, &hook).await?;
    audit::record(
        state,
        caller,
        "webhook.test",
        format!("{} ping {}", hook.id, delivery.status().as_str()),
    )
    .await?;
    Ok(delivery)
}
