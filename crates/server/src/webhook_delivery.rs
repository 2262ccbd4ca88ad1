//! Webhook notifications: finds actions that ended (done / failed / expired = "stuck") or went
//! silent for `webhook_stuck_after` in sent / acknowledged / in progress (also "stuck"), puts one
//! signed JSON delivery per subscription in the store's outbox, and POSTs due deliveries with
//! retries. [`tick`] does one round; the periodic worker calls it, tests call it directly.
//!
//! Finding events without touching the session engine: each tick asks the store for actions in a
//! subscribed terminal state, updated at or after the subscription was created (or last
//! re-enabled: `notify_since`), that have no
//! delivery for that subscription yet
//! ([`redeploy_core::store::WebhookStore::unnotified_actions`]). The outbox row is
//! the watermark: it is unique per (webhook, action, event), so a second server process that
//! finds the same action enqueues nothing, and a terminal action never changes again, so it is
//! found exactly once per subscription. This is chosen over a stored time watermark because
//! actions do not end in `updated_at` order across processes (a slow commit could end "in the
//! past" and be skipped forever by a moving watermark).
//!
//! Sending is at-least-once: an attempt is claimed in the store before the POST (the claim sets
//! the retry time, so a process that dies mid-send leaves a delivery that is retried later), and
//! only one process wins each claim. Receivers deduplicate on `delivery_id`.
//!
//! Batch events (`batch.done` / `batch.failed` / `batch.stuck`) and the Teams, Slack and e-mail
//! kinds of subscription are `crate::notifications`; they go through this same outbox.

use std::collections::HashMap;
use std::sync::OnceLock;

use async_trait::async_trait;
use futures::stream::{self, StreamExt};
use redeploy_core::store::DeliveryResult;
use redeploy_core::webhook::{self, Delivery, Webhook, WebhookEvent, WebhookKind};
use redeploy_core::{Action, AuditOutcome, DeviceId, NewAuditEvent, StoreError, WebhookId};
use ring::hmac;
use time::OffsetDateTime;

use crate::dto::{action_dto, ts};
use crate::state::AppState;

pub use crate::notifications::SEND_TIMEOUT;
use crate::notifications::{error_chain, stuck_after, SILENT_STATES};
/// Actions looked at per subscription and tick (the rest waits for the next tick).
const ENQUEUE_PER_TICK: u32 = 500;
/// Deliveries attempted per tick.
const SEND_PER_TICK: u32 = 200;
/// POSTs in flight at once.
const PARALLEL_SENDS: usize = 8;

/// One signed POST, ready to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedRequest {
    pub url: String,
    pub event: String,
    pub delivery_id: String,
    /// Unix seconds, also part of the signed text.
    pub timestamp: i64,
    /// `sha256=<hex>`.
    pub signature: String,
    pub body: String,
}

impl SignedRequest {
    /// The headers sent with the body.
    pub fn headers(&self) -> [(&'static str, String); 5] {
        [
            ("content-type", "application/json".to_owned()),
            ("x-redeploy-event", self.event.clone()),
            ("x-redeploy-delivery", self.delivery_id.clone()),
            ("x-redeploy-timestamp", self.timestamp.to_string()),
            ("x-redeploy-signature", self.signature.clone()),
        ]
    }
}

/// Sends a signed request; answers the HTTP status, or why no answer came.
#[async_trait]
pub trait WebhookSender: Send + Sync {
    async fn send(&self, request: &SignedRequest) -> Result<u16, String>;
}

/// The real sender: reqwest with rustls (the workspace's TLS stack), the public web roots,
/// a 10 s timeout, and no redirects (a 3xx is a failed attempt, not a hop to elsewhere).
#[derive(Clone, Debug)]
pub struct HttpSender {
    client: reqwest::Client,
}

impl HttpSender {
    pub fn new() -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(SEND_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("Redeploy-Webhook/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self { client })
    }
}

#[async_trait]
impl WebhookSender for HttpSender {
    async fn send(&self, request: &SignedRequest) -> Result<u16, String> {
        let mut rb = self.client.post(&request.url).body(request.body.clone());
        for (name, value) in request.headers() {
            rb = rb.header(name, value);
        }
        match rb.send().await {
            Ok(response) => Ok(response.status().as_u16()),
            Err(e) if e.is_timeout() => Err(format!("no answer within {SEND_TIMEOUT:?}")),
            Err(e) => Err(error_chain(&e)),
        }
    }
}

/// The process-wide HTTP sender: one connection pool for every tick (built on first use).
fn default_sender() -> Result<&'static HttpSender, StoreError> {
    static SENDER: OnceLock<HttpSender> = OnceLock::new();
    if let Some(s) = SENDER.get() {
        return Ok(s);
    }
    let built = HttpSender::new().map_err(StoreError::Backend)?;
    Ok(SENDER.get_or_init(|| built))
}

/// `sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`. The timestamp is signed so that a
/// captured delivery cannot be replayed later with a fresh timestamp header.
pub fn signature(secret: &str, timestamp: i64, body: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body.as_bytes());
    format!("sha256={}", hex::encode(ctx.sign().as_ref()))
}

/// What a receiver does: recomputes the signature of `timestamp.body` with its copy of the secret
/// and compares in constant time.
pub fn verify_signature(secret: &str, timestamp: &str, body: &str, signature: &str) -> bool {
    let Some(hex_mac) = signature.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(mac) = hex::decode(hex_mac) else {
        return false;
    };
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let signed = format!("{timestamp}.{body}");
    hmac::verify(&key, signed.as_bytes(), &mac).is_ok()
}

/// What one [`tick`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WebhookReport {
    /// New deliveries put in the outbox.
    pub enqueued: u32,
    /// Deliveries a receiver accepted.
    pub delivered: u32,
    /// Failed attempts that will be retried.
    pub retrying: u32,
    /// Failed attempts that were the last allowed (audited as `webhook.given_up`).
    pub given_up: u32,
}

/// One round with the real HTTP sender: enqueue new events, then send what is due.
pub async fn tick(state: &AppState) -> Result<WebhookReport, StoreError> {
    tick_with(state, default_sender()?).await
}

/// [`tick`] with another sender.
pub async fn tick_with(
    state: &AppState,
    sender: &dyn WebhookSender,
) -> Result<WebhookReport, StoreError> {
    let mut report = WebhookReport {
        enqueued: enqueue_events(state).await?,
        ..WebhookReport::default()
    };
    let now = state.clock.now();
    let due = state.store.due_deliveries(now, SEND_PER_TICK).await?;
    let mut hooks: HashMap<WebhookId, Option<Webhook>> = HashMap::new();
    let mut work = Vec::new();
    for d in due {
        let hook = match hooks.get(&d.webhook) {
            Some(known) => known.clone(),
            None => {
                let loaded = state.store.webhook(d.webhook).await?;
                hooks.insert(d.webhook, loaded.clone());
                loaded
            }
        };
        // A webhook deleted since the delivery was read takes its deliveries with it.
        if let Some(hook) = hook {
            work.push((hook, d));
        }
    }
    let outcomes: Vec<Result<Attempt, StoreError>> = stream::iter(work)
        .map(|(hook, d)| async move { attempt(state, sender, &hook, &d, true).await })
        .buffer_unordered(PARALLEL_SENDS)
        .collect()
        .await;
    for outcome in outcomes {
        match outcome? {
            Attempt::Delivered => report.delivered += 1,
            Attempt::Retrying => report.retrying += 1,
            Attempt::GivenUp => report.given_up += 1,
            Attempt::NotClaimed => {}
        }
    }
    Ok(report)
}

/// Puts a delivery in the outbox for every action that ended since the last look, for every
/// enabled subscription to its event; returns how many were new.
async fn enqueue_events(state: &AppState) -> Result<u32, StoreError> {
    let mut enqueued = 0;
    let mut devices = HashMap::new();
    let mut batches = crate::notifications::ProgressCache::new();
    for hook in state.store.list_webhooks().await? {
        if !hook.enabled {
            continue;
        }
        enqueued += crate::notifications::enqueue_batch_events(state, &hook, &mut batches).await?;
        let ended = state
            .store
            .unnotified_actions(
                hook.id,
                &hook.subscribed_states(),
                hook.notify_since,
                ENQUEUE_PER_TICK,
            )
            .await?;
        let mut found: Vec<(WebhookEvent, OffsetDateTime, Action)> = ended
            .into_iter()
            .filter_map(|a| WebhookEvent::for_state(a.state).map(|e| (e, a.updated_at, a)))
            .collect();
        if hook.events.contains(&WebhookEvent::Stuck) {
            // Silent for too long while the device owes an answer: "stuck" now rather than at
            // expiry days later. The same (webhook, action, stuck) key makes a later expiry of
            // the same action enqueue nothing.
            let after = stuck_after(state);
            let silent = state
                .store
                .unnotified_stale_actions(
                    hook.id,
                    SILENT_STATES,
                    hook.notify_since,
                    state.clock.now() - after,
                    ENQUEUE_PER_TICK,
                )
                .await?;
            found.extend(
                silent
                    .into_iter()
                    .map(|a| (WebhookEvent::Stuck, a.updated_at + after, a)),
            );
        }
        for (event, occurred_at, action) in found {
            let device = match devices.get(&action.device) {
                Some(d) => d,
                None => {
                    let d = state
                        .store
                        .device(action.device)
                        .await?
                        .map(|d| api::WebhookDevice {
                            id: d.id.to_string(),
                            name: d.name,
                            serial: d.serial,
                        });
                    devices.entry(action.device).or_insert(d)
                }
            };
            let mut delivery = Delivery::new(
                hook.id,
                event,
                Some(action.id),
                String::new(),
                state.clock.now(),
            );
            delivery.payload = payload_json(&api::WebhookPayload {
                event: event.as_str().to_owned(),
                delivery_id: delivery.id.to_string(),
                occurred_at: ts(occurred_at),
                action: Some(action_dto(&action)),
                device: device.clone(),
                batch: None,
            });
            if state.store.enqueue_delivery(&delivery).await? {
                enqueued += 1;
            }
        }
    }
    Ok(enqueued)
}

fn payload_json(payload: &api::WebhookPayload) -> String {
    serde_json::to_string(payload).unwrap_or_else(|_| "{}".to_owned())
}

enum Attempt {
    Delivered,
    Retrying,
    GivenUp,
    /// Another process took this attempt (or it was delivered meanwhile).
    NotClaimed,
}

/// Claims, signs, sends and records one attempt. `retry` false: the only attempt (pings).
async fn attempt(
    state: &AppState,
    sender: &dyn WebhookSender,
    hook: &Webhook,
    d: &Delivery,
    retry: bool,
) -> Result<Attempt, StoreError> {
    let started = state.clock.now();
    let retry_at = if retry {
        webhook::retry_at(d.attempts, started)
    } else {
        None
    };
    if !state
        .store
        .claim_delivery(d.id, d.attempts, retry_at)
        .await?
    {
        return Ok(Attempt::NotClaimed);
    }
    let timestamp = started.unix_timestamp();
    let request = SignedRequest {
        url: hook.url.clone(),
        event: d.event.as_str().to_owned(),
        delivery_id: d.id.to_string(),
        timestamp,
        signature: signature(&hook.secret, timestamp, &d.payload),
        body: d.payload.clone(),
    };
    let answer = match hook.kind {
        // SMTP's 250 ("requested mail action okay, completed", RFC 5321 §4.2.2) is the only
        // success lettre reports; a refusal or a broken connection is an `Err`.
        WebhookKind::Email => crate::notifications::send_mail(state, &hook.url, &d.payload)
            .await
            .map(|()| 250),
        _ => sender.send(&request).await,
    };
    let now = state.clock.now();
    let (result, outcome) = match answer {
        Ok(status) if (200..300).contains(&status) => (
            DeliveryResult {
                status: Some(status),
                error: None,
                delivered_at: Some(now),
                next_attempt_at: None,
            },
            Attempt::Delivered,
        ),
        other => {
            let (status, error) = match other {
                Ok(status) => (Some(status), format!("the receiver answered HTTP {status}")),
                Err(why) => (None, why),
            };
            let outcome = if retry_at.is_some() {
                Attempt::Retrying
            } else {
                Attempt::GivenUp
            };
            (
                DeliveryResult {
                    status,
                    error: Some(error),
                    delivered_at: None,
                    next_attempt_at: retry_at,
                },
                outcome,
            )
        }
    };
    state.store.finish_delivery(d.id, &result).await?;
    if matches!(outcome, Attempt::GivenUp) && retry {
        audit_given_up(state, hook, d, &result, now).await?;
    }
    Ok(outcome)
}

async fn audit_given_up(
    state: &AppState,
    hook: &Webhook,
    d: &Delivery,
    result: &DeliveryResult,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    let target: Option<DeviceId> = match d.action {
        Some(a) => state.store.action(a).await?.map(|a| a.device),
        None => None,
    };
    state
        .store
        .append_audit(
            NewAuditEvent::new(now, "system", "webhook.given_up")
                .targets(target)
                .outcome(AuditOutcome::Failed)
                .details(format!(
                    "webhook {} ({}) delivery {} event {} given up after {} attempts: {}",
                    hook.id,
                    hook.name,
                    d.id,
                    d.event,
                    d.attempts + 1,
                    result.error.as_deref().unwrap_or("")
                )),
        )
        .await?;
    Ok(())
}

/// Sends a `ping` to `hook` now (one attempt, no retries) and answers the stored delivery.
pub async fn ping(state: &AppState, hook: &Webhook) -> Result<Delivery, StoreError> {
    ping_with(state, hook, default_sender()?).await
}

/// [`ping`] with another sender.
pub async fn ping_with(
    state: &AppState,
    hook: &Webhook,
    sender: &dyn WebhookSender,
) -> Result<Delivery, StoreError> {
    let now = state.clock.now();
    let mut delivery = Delivery::new(hook.id, WebhookEvent::Ping, None, String::new(), now);
    delivery.payload =
        crate::notifications::render(hook.kind, &crate::notifications::Notice::ping(), || {
            api::WebhookPayload {
                event: WebhookEvent::Ping.as_str().to_owned(),
                delivery_id: delivery.id.to_string(),
                occurred_at: ts(now),
                action: None,
                device: None,
                batch: None,
            }
        });
    state.store.enqueue_delivery(&delivery).await?;
    attempt(state, sender, hook, &delivery, false).await?;
    state
        .store
        .delivery(delivery.id)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("delivery {}", delivery.id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_of_timestamp_dot_body() {
        // RFC 4231 test case 2 shape: key "Jefe"; our message is "<ts>.<body>".
        let sig = signature("Jefe", 0, "what do ya want for nothing?");
        assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64, "{sig}");
        assert!(verify_signature(
            "Jefe",
            "0",
            "what do ya want for nothing?",
            &sig
        ));
        assert!(!verify_signature(
            "Jeff",
            "0",
            "what do ya want for nothing?",
            &sig
        ));
        assert!(!verify_signature(
            "Jefe",
            "1",
            "what do ya want for nothing?",
            &sig
        ));
        assert!(!verify_signature("Jefe", "0", "x", "md5=00"));
        // Independent check against the plain HMAC of the same text.
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"Jefe");
        let tag = hmac::sign(&key, b"0.what do ya want for nothing?");
        assert_eq!(sig, format!("sha256={}", hex::encode(tag.as_ref())));
    }
}
