//! Webhooks: subscriptions (enable/disable moves `notify_since`), the finished and stale actions
//! each has not been told about yet, and the delivery outbox (unique per webhook, action and
//! event; attempts claimed by one conditional update so one process delivers each).

use async_trait::async_trait;
use redeploy_core::action::{Action, ActionState};
use redeploy_core::ids::{DeliveryId, WebhookId};
use redeploy_core::store::{DeliveryResult, StoreError, StoreResult, WebhookStore};
use redeploy_core::webhook::{Delivery, Webhook, WebhookEvent};
use time::OffsetDateTime;

use crate::actions::{row_action, ACTION_COLS};
use crate::dialect::{Dialect, SqlRow};
use crate::sql::{placeholders, sql, RowExt};
use crate::SqlStore;

const WEBHOOK_COLS: &str = "id, name, url, secret, events, enabled, created_at, notify_since";
const DELIVERY_COLS: &str = "id, webhook_id, event, action_id, payload, attempts, \
     next_attempt_at, delivered_at, last_status, last_error, created_at";

fn row_webhook(r: &impl SqlRow) -> StoreResult<Webhook> {
    let events = r
        .string("events")?
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| Ok(WebhookEvent::parse(s)?))
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(Webhook {
        id: r.id("id")?,
        name: r.string("name")?,
        url: r.string("url")?,
        secret: r.string("secret")?,
        events,
        enabled: r.flag("enabled")?,
        created_at: r.at("created_at")?,
        notify_since: r.at("notify_since")?,
    })
}

fn row_delivery(r: &impl SqlRow) -> StoreResult<Delivery> {
    Ok(Delivery {
        id: r.id("id")?,
        webhook: r.id("webhook_id")?,
        event: WebhookEvent::parse(&r.string("event")?)?,
        action: r.opt_id("action_id")?,
        payload: r.string("payload")?,
        attempts: r.u32("attempts")?,
        next_attempt_at: r.time("next_attempt_at")?,
        delivered_at: r.time("delivered_at")?,
        last_status: r.opt_u16("last_status")?,
        last_error: r.text("last_error")?,
        created_at: r.at("created_at")?,
    })
}

impl<D: Dialect> SqlStore<D> {
    async fn deliveries_where(
        &self,
        tail: &str,
        args: Vec<crate::Arg>,
    ) -> StoreResult<Vec<Delivery>> {
        let rows = sql(format!(
            "SELECT {DELIVERY_COLS} FROM webhook_deliveries WHERE {tail}"
        ))
        .bind_all(args)
        .fetch_all(self.db())
        .await?;
        rows.iter().map(row_delivery).collect()
    }
}

#[async_trait]
impl<D: Dialect> WebhookStore for SqlStore<D> {
    async fn create_webhook(&self, webhook: &Webhook) -> StoreResult<()> {
        let events = webhook
            .events
            .iter()
            .map(|e| e.as_str())
            .collect::<Vec<_>>()
            .join(",");
        sql(format!(
            "INSERT INTO webhooks ({WEBHOOK_COLS}) VALUES ({})",
            placeholders(1, 8)
        ))
        .bind(webhook.id)
        .bind(webhook.name.clone())
        .bind(webhook.url.clone())
        .bind(webhook.secret.clone())
        .bind(events)
        .bind(webhook.enabled)
        .bind(webhook.created_at)
        .bind(webhook.notify_since)
        .execute(self.db())
        .await?;
        Ok(())
    }

    async fn webhook(&self, id: WebhookId) -> StoreResult<Option<Webhook>> {
        let row = sql(format!("SELECT {WEBHOOK_COLS} FROM webhooks WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.db())
            .await?;
        row.as_ref().map(row_webhook).transpose()
    }

    async fn list_webhooks(&self) -> StoreResult<Vec<Webhook>> {
        let rows = sql(format!(
            "SELECT {WEBHOOK_COLS} FROM webhooks ORDER BY created_at, id"
        ))
        .fetch_all(self.db())
        .await?;
        rows.iter().map(row_webhook).collect()
    }

    async fn delete_webhook(&self, id: WebhookId) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        // Explicit rather than relying on ON DELETE CASCADE alone: SQLite applies it only with
        // foreign keys on, which a tool opening the file may not have set.
        sql("DELETE FROM webhook_deliveries WHERE webhook_id = $1")
            .bind(id)
            .execute(tx.on())
            .await?;
        let deleted = sql("DELETE FROM webhooks WHERE id = $1")
            .bind(id)
            .execute(tx.on())
            .await?;
        if deleted == 0 {
            return Err(StoreError::NotFound(format!("webhook {id}")));
        }
        tx.commit().await
    }

    async fn set_webhook_enabled(
        &self,
        id: WebhookId,
        enabled: bool,
        at: OffsetDateTime,
    ) -> StoreResult<()> {
        // One statement, so that two admins toggling at once cannot leave `enabled` and
        // `notify_since` from different requests.
        let changed = sql(
            "UPDATE webhooks SET notify_since = CASE WHEN $2 AND NOT enabled \
             THEN $3 ELSE notify_since END, enabled = $2 WHERE id = $1",
        )
        .bind(id)
        .bind(enabled)
        .bind(at)
        .execute(self.db())
        .await?;
        if changed == 0 {
            return Err(StoreError::NotFound(format!("webhook {id}")));
        }
        Ok(())
    }

    async fn unnotified_actions(
        &self,
        webhook: WebhookId,
        states: &[ActionState],
        since: OffsetDateTime,
        limit: u32,
    ) -> StoreResult<Vec<Action>> {
        if states.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sql(format!(
            "SELECT {ACTION_COLS} FROM actions WHERE updated_at >= $2 AND state IN ({}) \
             AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d \
                             WHERE d.webhook_id = $1 AND d.action_id = actions.id \
                             AND d.event = CASE actions.state WHEN 'expired' THEN 'stuck' \
                                           ELSE actions.state END) \
             ORDER BY updated_at, seq LIMIT $3",
            placeholders(4, states.len())
        ))
        .bind(webhook)
        .bind(since)
        .bind(limit)
        .bind_all(states.iter().map(|s| s.as_str()))
        .fetch_all(self.db())
        .await?;
        rows.iter().map(row_action).collect()
    }

    async fn unnotified_stale_actions(
        &self,
        webhook: WebhookId,
        states: &[ActionState],
        since: OffsetDateTime,
        updated_until: OffsetDateTime,
        limit: u32,
    ) -> StoreResult<Vec<Action>> {
        if states.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sql(format!(
            "SELECT {ACTION_COLS} FROM actions WHERE updated_at >= $2 AND updated_at <= $3 \
             AND state IN ({}) \
             AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d \
                             WHERE d.webhook_id = $1 AND d.action_id = actions.id \
                             AND d.event = 'stuck') \
             ORDER BY updated_at, seq LIMIT $4",
            placeholders(5, states.len())
        ))
        .bind(webhook)
        .bind(since)
        .bind(updated_until)
        .bind(limit)
        .bind_all(states.iter().map(|s| s.as_str()))
        .fetch_all(self.db())
        .await?;
        rows.iter().map(row_action).collect()
    }

    async fn enqueue_delivery(&self, d: &Delivery) -> StoreResult<bool> {
        let inserted = sql(format!(
            "INSERT INTO webhook_deliveries ({DELIVERY_COLS}) VALUES ({}) \
             ON CONFLICT (webhook_id, action_id, event) DO NOTHING",
            placeholders(1, 11)
        ))
        .bind(d.id)
        .bind(d.webhook)
        .bind(d.event.as_str())
        .bind(d.action)
        .bind(d.payload.clone())
        .bind(d.attempts)
        .bind(d.next_attempt_at)
        .bind(d.delivered_at)
        .bind(d.last_status)
        .bind(d.last_error.clone())
        .bind(d.created_at)
        .execute(self.db())
        .await?;
        Ok(inserted == 1)
    }

    async fn delivery(&self, id: DeliveryId) -> StoreResult<Option<Delivery>> {
        Ok(self
            .deliveries_where("id = $1", vec![id.into()])
            .await?
            .into_iter()
            .next())
    }

    async fn due_deliveries(&self, now: OffsetDateTime, limit: u32) -> StoreResult<Vec<Delivery>> {
        self.deliveries_where(
            "delivered_at IS NULL AND next_attempt_at <= $1 \
             AND EXISTS (SELECT 1 FROM webhooks w \
                         WHERE w.id = webhook_deliveries.webhook_id AND w.enabled) \
             ORDER BY next_attempt_at, seq LIMIT $2",
            vec![now.into(), limit.into()],
        )
        .await
    }

    async fn claim_delivery(
        &self,
        id: DeliveryId,
        attempts_seen: u32,
        retry_at: Option<OffsetDateTime>,
    ) -> StoreResult<bool> {
        // One conditional UPDATE: under concurrent claims PostgreSQL re-checks the WHERE clause
        // after the first claimer commits (attempts moved on), so only one process wins.
        let claimed = sql(
            "UPDATE webhook_deliveries SET attempts = attempts + 1, next_attempt_at = $3 \
             WHERE id = $1 AND attempts = $2 AND delivered_at IS NULL",
        )
        .bind(id)
        .bind(attempts_seen)
        .bind(retry_at)
        .execute(self.db())
        .await?;
        if claimed == 1 {
            return Ok(true);
        }
        match self.delivery(id).await? {
            Some(_) => Ok(false),
            None => Err(StoreError::NotFound(format!("delivery {id}"))),
        }
    }

    async fn finish_delivery(&self, id: DeliveryId, result: &DeliveryResult) -> StoreResult<()> {
        let changed = sql(
            "UPDATE webhook_deliveries SET last_status = $2, last_error = $3, delivered_at = $4, \
             next_attempt_at = $5 WHERE id = $1",
        )
        .bind(id)
        .bind(result.status)
        .bind(result.error.clone())
        .bind(result.delivered_at)
        .bind(result.next_attempt_at)
        .execute(self.db())
        .await?;
        if changed == 0 {
            return Err(StoreError::NotFound(format!("delivery {id}")));
        }
        Ok(())
    }

    async fn deliveries_of_webhook(
        &self,
        webhook: WebhookId,
        limit: u32,
    ) -> StoreResult<Vec<Delivery>> {
        self.deliveries_where(
            "webhook_id = $1 ORDER BY created_at DESC, seq DESC LIMIT $2",
            vec![webhook.into(), limit.into()],
        )
        .await
    }
}
