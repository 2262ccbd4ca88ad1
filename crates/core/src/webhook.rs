//! Webhook subscriptions and their delivery outbox: which action outcomes notify whom, and the
//! retry rule (exponential backoff, a bounded number of attempts) applied to failed deliveries.
//! A subscription is of a [`WebhookKind`]: today's signed JSON (`raw`), or a notification to a
//! Teams or Slack channel or an e-mail address about a batch that is done, failed or stuck.

use time::{Duration, OffsetDateTime};

use crate::action::ActionState;
use crate::batch::BatchProgress;
use crate::device::text_enum;
use crate::error::{Error, Result};
use crate::ids::{ActionId, BatchId, DeliveryId, WebhookId};
use crate::store::BatchState;

text_enum!(
    /// What a webhook notifies about. The words are the `event` field and the
    /// `X-Redeploy-Event` header of a delivery.
    WebhookEvent, "webhook event" {
        /// An action reached `done`.
        Done => "done",
        /// An action reached `failed`.
        Failed => "failed",
        /// An action reached `expired`: the device went silent past the expiry ("stuck").
        Stuck => "stuck",
        /// A test delivery asked for by an admin; never subscribed to.
        Ping => "ping",
        /// A batch settled and every one of its actions is done.
        BatchDone => "batch.done",
        /// A batch settled with an action failed, blocked or expired.
        BatchFailed => "batch.failed",
        /// An action of a batch has been silent in flight for the stuck threshold.
        BatchStuck => "batch.stuck",
    }
);

text_enum!(
    /// How a subscription is told: the body and the transport of its deliveries.
    WebhookKind, "webhook kind" {
        /// Signed JSON POSTed to a URL (every event).
        Raw => "raw",
        /// A Microsoft Teams / Office 365 incoming-webhook card (batch events).
        Teams => "teams",
        /// A Slack incoming-webhook message (batch events).
        Slack => "slack",
        /// An e-mail through the configured SMTP server; the target is the recipient (batch events).
        Email => "email",
    }
);

impl WebhookKind {
    /// The events a subscription of this kind gets when it names none.
    pub fn default_events(self) -> &'static [WebhookEvent] {
        match self {
            Self::Raw => WebhookEvent::ACTION_EVENTS,
            _ => WebhookEvent::BATCH_EVENTS,
        }
    }

    /// Whether this kind can carry `event`: raw carries all; a channel or a mailbox is told
    /// about batches only (one message per action of a 300-PC batch would drown it).
    pub fn carries(self, event: WebhookEvent) -> bool {
        self == Self::Raw || event.is_batch()
    }
}

impl WebhookEvent {
    /// The events a subscription may choose (every one but `ping`).
    pub const SUBSCRIBABLE: &'static [WebhookEvent] = &[
        Self::Done,
        Self::Failed,
        Self::Stuck,
        Self::BatchDone,
        Self::BatchFailed,
        Self::BatchStuck,
    ];
    /// The events about one action.
    pub const ACTION_EVENTS: &'static [WebhookEvent] = &[Self::Done, Self::Failed, Self::Stuck];
    /// The events about one batch.
    pub const BATCH_EVENTS: &'static [WebhookEvent] =
        &[Self::BatchDone, Self::BatchFailed, Self::BatchStuck];

    /// Whether it is about a batch.
    pub fn is_batch(&self) -> bool {
        Self::BATCH_EVENTS.contains(self)
    }

    /// The event an action's terminal state raises; `None` for states that notify nobody.
    pub fn for_state(state: ActionState) -> Option<Self> {
        match state {
            ActionState::Done => Some(Self::Done),
            ActionState::Failed => Some(Self::Failed),
            ActionState::Expired => Some(Self::Stuck),
            _ => None,
        }
    }

    /// The action state that raises this event; `None` for `ping`.
    pub fn action_state(&self) -> Option<ActionState> {
        match self {
            Self::Done => Some(ActionState::Done),
            Self::Failed => Some(ActionState::Failed),
            Self::Stuck => Some(ActionState::Expired),
            Self::Ping | Self::BatchDone | Self::BatchFailed | Self::BatchStuck => None,
        }
    }

    /// Parses a comma-separated list of subscribable events (`done,failed,stuck`), without
    /// duplicates, in [`Self::SUBSCRIBABLE`] order. Empty or `ping` → error.
    pub fn parse_list(text: &str) -> Result<Vec<Self>> {
        let mut wanted = Vec::new();
        for word in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            let event = Self::parse(word)?;
            if event == Self::Ping {
                return Err(Error::InvalidValue {
                    kind: "webhook event (ping cannot be subscribed to)",
                    value: word.to_owned(),
                });
            }
            wanted.push(event);
        }
        let list: Vec<Self> = Self::SUBSCRIBABLE
            .iter()
            .copied()
            .filter(|e| wanted.contains(e))
            .collect();
        if list.is_empty() {
            return Err(Error::InvalidValue {
                kind: "webhook events",
                value: text.to_owned(),
            });
        }
        Ok(list)
    }
}

/// A subscription: POST the chosen events to `url`, signed with `secret`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Webhook {
    /// Identity.
    pub id: WebhookId,
    /// Unique display name.
    pub name: String,
    /// Where deliveries are POSTed (`http://` or `https://`).
    pub url: String,
    /// The HMAC key. Stored as given, not hashed: every delivery must be signed with it.
    pub secret: String,
    /// Subscribed events, never `ping`, never empty.
    pub events: Vec<WebhookEvent>,
    /// How it is told; for [`WebhookKind::Email`], `url` is the recipient address.
    pub kind: WebhookKind,
    /// Disabled subscriptions get nothing enqueued, and their due deliveries wait.
    pub enabled: bool,
    /// When it was created.
    pub created_at: OffsetDateTime,
    /// Only actions updated at or after this instant notify it (no flood of history): the
    /// creation time, moved to the re-enable time when a disabled subscription is enabled again
    /// (what ended while it was off is not replayed).
    pub notify_since: OffsetDateTime,
}

impl Webhook {
    /// The action states whose actions this subscription is told about.
    pub fn subscribed_states(&self) -> Vec<ActionState> {
        self.events
            .iter()
            .filter_map(WebhookEvent::action_state)
            .collect()
    }
}

/// One event for one subscription in the outbox, with its delivery attempts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// Identity; the `delivery_id` and `X-Redeploy-Delivery` a receiver may deduplicate on.
    pub id: DeliveryId,
    /// The subscription.
    pub webhook: WebhookId,
    /// What happened.
    pub event: WebhookEvent,
    /// The action it is about (`None` for `ping` and batch events).
    pub action: Option<ActionId>,
    /// The batch it is about (batch events only).
    pub batch: Option<BatchId>,
    /// The JSON body, built once at enqueue time so that every retry sends the same bytes.
    pub payload: String,
    /// Attempts started so far.
    pub attempts: u32,
    /// When the next attempt is due; `None` when no attempt is scheduled (delivered, given up,
    /// or a ping, which is sent by the request that made it).
    pub next_attempt_at: Option<OffsetDateTime>,
    /// When a receiver accepted it (2xx).
    pub delivered_at: Option<OffsetDateTime>,
    /// HTTP status of the last attempt (none if the connection failed).
    pub last_status: Option<u16>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When it was enqueued.
    pub created_at: OffsetDateTime,
}

/// Where a delivery stands, as the API shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Waiting for its first attempt or a retry.
    Pending,
    /// A receiver accepted it.
    Delivered,
    /// No more attempts will be made.
    GivenUp,
}

impl DeliveryStatus {
    /// `pending`, `delivered` or `given_up`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::GivenUp => "given_up",
        }
    }
}

impl Delivery {
    /// A new delivery due at `at` (a ping is not scheduled: its request sends it).
    pub fn new(
        webhook: WebhookId,
        event: WebhookEvent,
        action: Option<ActionId>,
        payload: String,
        at: OffsetDateTime,
    ) -> Self {
        Self {
            id: DeliveryId::generate(),
            webhook,
            event,
            action,
            batch: None,
            payload,
            attempts: 0,
            next_attempt_at: (event != WebhookEvent::Ping).then_some(at),
            delivered_at: None,
            last_status: None,
            last_error: None,
            created_at: at,
        }
    }

    /// Where it stands.
    pub fn status(&self) -> DeliveryStatus {
        if self.delivered_at.is_some() {
            DeliveryStatus::Delivered
        } else if self.next_attempt_at.is_none() && self.attempts > 0 {
            DeliveryStatus::GivenUp
        } else {
            DeliveryStatus::Pending
        }
    }
}

/// How a settled batch ended, as a notification tells it: `batch.failed` when an action failed,
/// was blocked or expired; `batch.done` when every action is done (a batch an admin canceled
/// with nothing failed notifies neither: the admin knows). `None` while it has not settled.
pub fn batch_outcome(progress: &BatchProgress) -> Option<WebhookEvent> {
    if !progress.settled {
        return None;
    }
    let failed = progress.actions.iter().any(|a| {
        matches!(
            a.state,
            ActionState::Failed | ActionState::Blocked | ActionState::Expired
        )
    });
    let canceled = progress
        .record
        .as_ref()
        .is_some_and(|r| r.state == BatchState::Canceled);
    if failed {
        Some(WebhookEvent::BatchFailed)
    } else if !canceled
        && progress
            .actions
            .iter()
            .all(|a| a.state == ActionState::Done)
    {
        Some(WebhookEvent::BatchDone)
    } else {
        None
    }
}

/// Attempts made before a delivery is given up.
pub const MAX_ATTEMPTS: u32 = 10;

/// Longest wait between two attempts.
pub const MAX_RETRY_DELAY: Duration = Duration::hours(1);

/// Wait after the `attempts`-th failed attempt: 1 min, 2, 4, … capped at one hour.
pub fn retry_delay(attempts: u32) -> Duration {
    let exponent = attempts.saturating_sub(1).min(16);
    let minutes = 1i64 << exponent;
    Duration::minutes(minutes).min(MAX_RETRY_DELAY)
}

/// When the attempt that is about to start (number `attempts + 1`) is retried if it fails or
/// never reports back; `None` when it is the last one allowed (then it is given up).
pub fn retry_at(attempts_before: u32, now: OffsetDateTime) -> Option<OffsetDateTime> {
    let this_attempt = attempts_before + 1;
    (this_attempt < MAX_ATTEMPTS).then(|| now + retry_delay(this_attempt))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn backoff_doubles_from_one_minute_and_caps_at_an_hour() {
        let delays: Vec<i64> = (1..=9).map(|n| retry_delay(n).whole_minutes()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        let now = datetime!(2026-01-01 0:00 UTC);
        assert_eq!(retry_at(0, now), Some(now + Duration::minutes(1)));
        assert_eq!(retry_at(8, now), Some(now + Duration::hours(1)));
        assert_eq!(
            retry_at(MAX_ATTEMPTS - 1, now),
            None,
            "the 10th attempt is the last"
        );
    }

    #[test]
    fn a_settled_batch_is_done_failed_or_neither_when_canceled() {
        use crate::action::{Action, ActionKind};
        use crate::ids::DeviceId;
        use crate::store::BatchRecord;
        let at = datetime!(2026-01-01 0:00 UTC);
        let action = |state| {
            let mut a = Action::new(
                ActionId::generate(),
                DeviceId::generate(),
                ActionKind::AutopilotReset,
                "admin",
                None,
                at,
            );
            a.state = state;
            a
        };
        let progress = |states: &[ActionState], settled, batch_state| BatchProgress {
            record: Some(BatchRecord {
                id: BatchId::generate(),
                kind: ActionKind::AutopilotReset,
                requested_by: "admin".into(),
                created_at: at,
                target: "2 devices".into(),
                devices: 2,
                state: batch_state,
                steered: None,
            }),
            actions: states.iter().map(|&s| action(s)).collect(),
            waves: Vec::new(),
            settled,
        };
        use ActionState::*;
        let running = BatchState::Running;
        assert_eq!(
            batch_outcome(&progress(&[Done, Done], true, running)),
            Some(WebhookEvent::BatchDone)
        );
        assert_eq!(
            batch_outcome(&progress(&[Done, Blocked], true, running)),
            Some(WebhookEvent::BatchFailed)
        );
        assert_eq!(
            batch_outcome(&progress(&[Done, Expired], true, BatchState::Canceled)),
            Some(WebhookEvent::BatchFailed)
        );
        assert_eq!(
            batch_outcome(&progress(&[Done, Canceled], true, BatchState::Canceled)),
            None,
            "the admin who canceled it knows"
        );
        assert_eq!(
            batch_outcome(&progress(&[Done, Sent], false, running)),
            None
        );
    }

    #[test]
    fn event_lists_parse_and_map_to_states() {
        assert_eq!(
            WebhookEvent::parse_list("stuck, done,done").unwrap(),
            [WebhookEvent::Done, WebhookEvent::Stuck]
        );
        assert!(WebhookEvent::parse_list("").is_err());
        assert!(WebhookEvent::parse_list("ping").is_err());
        assert!(WebhookEvent::parse_list("done,finished").is_err());
        assert_eq!(
            WebhookEvent::parse_list("batch.stuck,batch.done").unwrap(),
            [WebhookEvent::BatchDone, WebhookEvent::BatchStuck]
        );
        assert!(WebhookKind::Teams.carries(WebhookEvent::BatchFailed));
        assert!(!WebhookKind::Slack.carries(WebhookEvent::Done));
        assert!(WebhookKind::Raw.carries(WebhookEvent::BatchDone));
        assert_eq!(
            WebhookEvent::for_state(ActionState::Expired),
            Some(WebhookEvent::Stuck)
        );
        assert_eq!(WebhookEvent::for_state(ActionState::Canceled), None);
    }
}
