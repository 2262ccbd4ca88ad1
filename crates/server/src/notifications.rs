//! Notifications about batches (issue #15 item 5): `batch.done`, `batch.failed` and
//! `batch.stuck` events, and the bodies a subscription of each [`WebhookKind`] gets — signed JSON
//! (`raw`), a Teams card, a Slack message or an e-mail sent through the configured SMTP server.
//!
//! They ride the webhook outbox of [`crate::webhook_delivery`]: each tick looks at the batches a
//! subscription has no delivery of an event for yet ([`WebhookStore::unnotified_batches`]),
//! decides from the batch's progress whether the event has happened, and enqueues one delivery
//! per (webhook, batch, event), which the store keeps unique (so each is told once per
//! subscription, even with two server processes). Retries, backoff and giving up are the
//! outbox's.
//!
//! [`WebhookStore::unnotified_batches`]: redeploy_core::store::WebhookStore::unnotified_batches

use std::collections::{BTreeMap, HashMap};

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use redeploy_core::batch::{batch_progress, BatchProgress};
use redeploy_core::session::SessionError;
use redeploy_core::webhook::{batch_outcome, Delivery, Webhook, WebhookEvent, WebhookKind};
use redeploy_core::{ActionState, BatchId, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::dto::ts;
use crate::settings::{SmtpSecurity, SmtpSettings};
use crate::state::AppState;

/// How long one POST (or one SMTP conversation) may take.
pub const SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// States in which the device owes an answer; silence here for `webhook_stuck_after` is
/// "stuck". `pending` and `blocked` are not: they wait on the server (waves, holds, check-ins
/// the PC has not made yet), not on a PC that took a command.
pub(crate) const SILENT_STATES: &[ActionState] = &[
    ActionState::Sent,
    ActionState::Acknowledged,
    ActionState::InProgress,
];

pub(crate) fn stuck_after(state: &AppState) -> time::Duration {
    time::Duration::try_from(state.settings.webhook_stuck_after).unwrap_or(time::Duration::hours(2))
}

/// An error and its sources on one line, at most 500 characters.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text.chars().take(500).collect()
}

/// Batches looked at per subscription, event and tick (newest first; the rest waits).
const BATCHES_PER_TICK: u32 = 100;
/// Device names listed in one notification.
const NAMED_DEVICES: usize = 20;

/// Progress of the batches read in one tick, shared by every subscription.
pub(crate) type ProgressCache = HashMap<BatchId, BatchProgress>;

async fn progress<'a>(
    state: &AppState,
    cache: &'a mut ProgressCache,
    batch: BatchId,
) -> Result<&'a BatchProgress, StoreError> {
    use std::collections::hash_map::Entry;
    match cache.entry(batch) {
        Entry::Occupied(known) => Ok(known.into_mut()),
        Entry::Vacant(slot) => {
            let read = batch_progress(state.store.as_ref(), batch)
                .await
                .map_err(|e| match e {
                    SessionError::Store(e) => e,
                    other => StoreError::Backend(other.to_string()),
                })?;
            Ok(slot.insert(read))
        }
    }
}

/// Enqueues the batch events of `hook` that happened and it was not told about; returns how
/// many were new.
pub(crate) async fn enqueue_batch_events(
    state: &AppState,
    hook: &Webhook,
    cache: &mut ProgressCache,
) -> Result<u32, StoreError> {
    let mut enqueued = 0;
    let now = state.clock.now();
    let stale_before = now - stuck_after(state);
    // A batch settles with the last transition of its actions, so one whose actions all stopped
    // moving longer than the action expiry ago has been told about already (or never will be:
    // a failed batch to a done-only subscription); a stuck one has an action still in flight.
    let expiry =
        time::Duration::try_from(state.settings.action_expiry).unwrap_or(time::Duration::days(7));
    let settled_since = hook.notify_since.max(now - expiry);
    for &event in hook.events.iter().filter(|e| e.is_batch()) {
        let (since, states) = match event {
            WebhookEvent::BatchStuck => (hook.notify_since, Some(SILENT_STATES)),
            _ => (settled_since, None),
        };
        let candidates = state
            .store
            .unnotified_batches(hook.id, event, since, states, BATCHES_PER_TICK)
            .await?;
        for record in candidates {
            let p = progress(state, cache, record.id).await?;
            // Actions silent in flight since before the threshold (and not before the
            // subscription, which is not told about history).
            let stuck: Vec<_> = p
                .actions
                .iter()
                .filter(|a| {
                    SILENT_STATES.contains(&a.state)
                        && a.updated_at <= stale_before
                        && a.updated_at >= hook.notify_since
                })
                .collect();
            let (happened, to_check) = match event {
                WebhookEvent::BatchStuck => (!stuck.is_empty(), stuck),
                _ => (
                    batch_outcome(p) == Some(event),
                    p.actions
                        .iter()
                        .filter(|a| a.state != ActionState::Done)
                        .collect(),
                ),
            };
            if !happened {
                continue;
            }
            let mut names = Vec::new();
            for a in to_check.iter().take(NAMED_DEVICES) {
                let name = state.store.device(a.device).await?.map(|d| d.name);
                names.push(name.unwrap_or_else(|| a.device.to_string()));
            }
            let mut counts = BTreeMap::new();
            for a in &p.actions {
                *counts.entry(a.state.as_str().to_owned()).or_insert(0u64) += 1;
            }
            let batch = api::WebhookBatch {
                id: record.id.to_string(),
                kind: record.kind.to_string(),
                target: record.target.clone(),
                requested_by: record.requested_by.clone(),
                devices: record.devices,
                state: record.state.as_str().to_owned(),
                counts,
                devices_to_check: names,
                url: format!("{}/console/batches/{}", state.public_url, record.id),
            };
            let mut delivery = Delivery::new(hook.id, event, None, String::new(), now);
            delivery.batch = Some(record.id);
            let notice = Notice::about(event, &batch);
            delivery.payload = render(hook.kind, &notice, || api::WebhookPayload {
                event: event.as_str().to_owned(),
                delivery_id: delivery.id.to_string(),
                occurred_at: ts(now),
                action: None,
                device: None,
                batch: Some(batch.clone()),
            });
            if state.store.enqueue_delivery(&delivery).await? {
                enqueued += 1;
            }
        }
    }
    Ok(enqueued)
}

/// What a person is told, whatever the channel: a title, one line, facts, a link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Notice {
    pub title: String,
    pub text: String,
    pub facts: Vec<(String, String)>,
    /// The console page to open; `None` for a test notification.
    pub link: Option<String>,
    /// Good news (green) or not (red).
    pub good: bool,
}

impl Notice {
    fn about(event: WebhookEvent, b: &api::WebhookBatch) -> Self {
        let (word, text) = match event {
            WebhookEvent::BatchDone => ("done", "Every action of the batch is done."),
            WebhookEvent::BatchFailed => (
                "failed",
                "The batch has settled, and some of its actions did not end done.",
            ),
            _ => (
                "stuck",
                "A PC of the batch took its command and has not been heard from since.",
            ),
        };
        let counts = b
            .counts
            .iter()
            .map(|(state, n)| format!("{n} {state}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut facts = vec![
            ("Batch".to_owned(), b.id.clone()),
            ("Target".to_owned(), b.target.clone()),
            ("Requested by".to_owned(), b.requested_by.clone()),
            ("Devices".to_owned(), b.devices.to_string()),
            ("Actions".to_owned(), counts),
        ];
        if !b.devices_to_check.is_empty() {
            facts.push(("Devices to check".to_owned(), b.devices_to_check.join(", ")));
        }
        Self {
            title: format!("Redeploy: batch {word} - {} of {}", b.kind, b.target),
            text: text.to_owned(),
            facts,
            link: Some(b.url.clone()),
            good: event == WebhookEvent::BatchDone,
        }
    }

    /// The body of a test delivery (`ping`) to a channel or mailbox.
    pub(crate) fn ping() -> Self {
        Self {
            title: "Redeploy: test notification".to_owned(),
            text: "This channel will be told when a batch is done, failed or stuck.".to_owned(),
            facts: Vec::new(),
            link: None,
            good: true,
        }
    }
}

/// The stored body of a delivery to a subscription of `kind`: `raw` gets the signed JSON
/// payload `raw()` builds, the others the notice in their own format.
pub(crate) fn render(
    kind: WebhookKind,
    notice: &Notice,
    raw: impl FnOnce() -> api::WebhookPayload,
) -> String {
    let value = match kind {
        WebhookKind::Raw => serde_json::to_value(raw()).unwrap_or(Value::Null),
        WebhookKind::Teams => teams_card(notice),
        WebhookKind::Slack => slack_message(notice),
        WebhookKind::Email => serde_json::to_value(Mail::of(notice)).unwrap_or(Value::Null),
    };
    value.to_string()
}

/// An Office 365 connector card ("MessageCard"), the format a Teams *Incoming Webhook* takes:
/// `@type`/`@context`, `summary` (required when there is no text; shown in notifications),
/// `title`, `text`, `themeColor`, `sections[].facts[]` of `name`/`value`, and an `OpenUri`
/// action with `targets[]` of `os`/`uri`. Source: Microsoft Learn, "Create an Incoming Webhook"
/// (msteams-docs `webhooks-and-connectors/how-to/add-incoming-webhook.md`) and its "Legacy
/// actionable message card reference".
fn teams_card(n: &Notice) -> Value {
    let facts: Vec<Value> = n
        .facts
        .iter()
        .map(|(name, value)| json!({ "name": name, "value": value }))
        .collect();
    let mut card = json!({
        "@type": "MessageCard",
        "@context": "https://schema.org/extensions",
        "summary": n.title,
        "themeColor": if n.good { "2E7D32" } else { "C62828" },
        "title": n.title,
        "text": n.text,
        "sections": [{ "facts": facts }],
    });
    if let Some(link) = &n.link {
        card["potentialAction"] = json!([{
            "@type": "OpenUri",
            "name": "Open in Redeploy",
            "targets": [{ "os": "default", "uri": link }],
        }]);
    }
    card
}

/// Slack `mrkdwn` text: `&`, `<` and `>` are escaped (they start links and mentions).
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A Slack incoming-webhook message: `text` (the notification and fallback text when `blocks`
/// are given) and Block Kit `blocks` — a `header` (plain text), a `section` with `mrkdwn`
/// `fields` (at most 10), and an `actions` block with a link `button`. Source: Slack API docs,
/// "Sending messages using incoming webhooks" and the Block Kit block reference.
fn slack_message(n: &Notice) -> Value {
    let fields: Vec<Value> = n
        .facts
        .iter()
        .take(10)
        .map(|(name, value)| {
            json!({
                "type": "mrkdwn",
                "text": format!("*{}*\n{}", slack_escape(name), slack_escape(value)),
            })
        })
        .collect();
    let mut blocks = vec![
        json!({ "type": "header", "text": { "type": "plain_text", "text": n.title } }),
        json!({ "type": "section", "text": { "type": "mrkdwn", "text": slack_escape(&n.text) } }),
    ];
    if !fields.is_empty() {
        blocks.push(json!({ "type": "section", "fields": fields }));
    }
    let mut text = format!("{}: {}", slack_escape(&n.title), slack_escape(&n.text));
    if let Some(link) = &n.link {
        blocks.push(json!({
            "type": "actions",
            "elements": [{
                "type": "button",
                "text": { "type": "plain_text", "text": "Open in Redeploy" },
                "url": link,
            }],
        }));
        text.push_str(&format!(" <{link}|Open in Redeploy>"));
    }
    json!({ "text": text, "blocks": blocks })
}

/// The stored body of an e-mail delivery: subject and plain-text body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Mail {
    pub subject: String,
    pub body: String,
}

impl Mail {
    fn of(n: &Notice) -> Self {
        let mut body = format!("{}\n\n", n.text);
        for (name, value) in &n.facts {
            body.push_str(&format!("{name}: {value}\n"));
        }
        if let Some(link) = &n.link {
            body.push_str(&format!("\nOpen in Redeploy: {link}\n"));
        }
        Self {
            subject: n.title.clone(),
            body,
        }
    }
}

/// Sends the stored e-mail `payload` to `to` through the configured SMTP server; `Err` says why
/// it was not accepted.
pub(crate) async fn send_mail(state: &AppState, to: &str, payload: &str) -> Result<(), String> {
    let smtp = state
        .settings
        .smtp
        .as_ref()
        .ok_or("no SMTP server is configured ([smtp] in redeploy.toml)")?;
    let mail: Mail = serde_json::from_str(payload).map_err(|e| format!("stored mail: {e}"))?;
    let from: Mailbox = smtp
        .from
        .parse()
        .map_err(|e| format!("smtp from {:?}: {e}", smtp.from))?;
    let to: Mailbox = to.parse().map_err(|e| format!("recipient {to:?}: {e}"))?;
    let message = Message::builder()
        .from(from)
        .to(to)
        .subject(mail.subject)
        .header(ContentType::TEXT_PLAIN)
        .body(mail.body)
        .map_err(|e| format!("building the mail: {e}"))?;
    transport(smtp)?
        .send(message)
        .await
        .map(|_| ())
        .map_err(|e| error_chain(&e))
}

/// A transport to the configured server: STARTTLS required, TLS from the start, or none
/// (rustls with the public web roots through lettre's `tokio1-rustls-tls`).
fn transport(smtp: &SmtpSettings) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
    let tls = || TlsParameters::new(smtp.host.clone()).map_err(|e| error_chain(&e));
    let tls = match smtp.security {
        SmtpSecurity::StartTls => Tls::Required(tls()?),
        SmtpSecurity::Tls => Tls::Wrapper(tls()?),
        SmtpSecurity::None => Tls::None,
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host)
        .port(smtp.port)
        .tls(tls)
        .timeout(Some(SEND_TIMEOUT));
    if let Some(user) = &smtp.user {
        let password = match &smtp.password_file {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|e| format!("smtp password_file {}: {e}", path.display()))?
                .trim()
                .to_owned(),
            None => String::new(),
        };
        builder = builder.credentials(Credentials::new(user.clone(), password));
    }
    Ok(builder.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice() -> Notice {
        Notice {
            title: "Redeploy: batch failed - reset of group <lab>".into(),
            text: "Some did not end done.".into(),
            facts: vec![("Devices to check".into(), "PC-1 & PC-2".into())],
            link: Some("https://mdm.example.org/console/batches/b1".into()),
            good: false,
        }
    }

    #[test]
    fn teams_card_is_a_message_card_with_facts_and_a_link() {
        let card = teams_card(&notice());
        assert_eq!(card["@type"], "MessageCard");
        assert_eq!(card["summary"], card["title"]);
        assert_eq!(card["sections"][0]["facts"][0]["value"], "PC-1 & PC-2");
        assert_eq!(
            card["potentialAction"][0]["targets"][0]["uri"],
            "https://mdm.example.org/console/batches/b1"
        );
        assert!(teams_card(&Notice::ping()).get("potentialAction").is_none());
    }

    #[test]
    fn slack_message_escapes_mrkdwn_and_links_the_batch() {
        let m = slack_message(&notice());
        let text = m["text"].as_str().unwrap();
        assert!(text.contains("group &lt;lab&gt;"), "{text}");
        assert!(text.ends_with("<https://mdm.example.org/console/batches/b1|Open in Redeploy>"));
        assert_eq!(m["blocks"][0]["type"], "header");
        assert_eq!(
            m["blocks"][2]["fields"][0]["text"],
            "*Devices to check*\nPC-1 &amp; PC-2"
        );
        assert_eq!(
            m["blocks"][3]["elements"][0]["url"],
            "https://mdm.example.org/console/batches/b1"
        );
    }
}
