//! Webhooks: subscriptions (enable/disable moves `notify_since`), the finished and stale actions
//! each has not been told about yet, and the delivery outbox (unique per webhook, action and
//! event; attempts claimed by one conditional update so one process delivers each).

use async_trait::async_trait;
use redeploy_core::action::{Action, ActionState};
use redeploy_core::ids::{DeliveryId, WebhookId};
use redeploy_core::store::BatchRecord;
use redeploy_core::store::{DeliveryResult, StoreError, StoreResult, WebhookStore};
use redeploy_core::webhook::{Delivery, Webhook, WebhookEvent, WebhookKind};
use sea_query::{Expr, OnConflict, Order, Query, SelectStatement, SimpleExpr};
use time::OffsetDateTime;

use crate::actions::select_actions;
use crate::batches::{row_batch, select_batches};
use crate::dialect::{Dialect, SqlRow};
use crate::query::{built, insert_row, v};
use crate::schema::{Actions as A, Batches as B, WebhookDeliveries as WD, Webhooks as W};
use crate::sql::RowExt;
use crate::SqlStore;

const WEBHOOK_COLS: [W; 9] = [
    W::Id,
    W::Name,
    W::Url,
    W::Secret,
    W::Events,
    W::Enabled,
    W::CreatedAt,
    W::NotifySince,
    W::Kind,
];

const DELIVERY_COLS: [WD; 12] = [
    WD::Id,
    WD::WebhookId,
    WD::Event,
    WD::ActionId,
    WD::BatchId,
    WD::Payload,
    WD::Attempts,
    WD::NextAttemptAt,
    WD::DeliveredAt,
    WD::LastStatus,
    WD::LastError,
    WD::CreatedAt,
];

/// The values of [`WEBHOOK_COLS`], in order (events as a comma-separated list).
fn webhook_values(w: &Webhook) -> [SimpleExpr; 9] {
    let events = w
        .events
        .iter()
        .map(|e| e.as_str())
        .collect::<Vec<_>>()
        .join(",");
    [
        v(w.id),
        v(w.name.clone()),
        v(w.url.clone()),
        v(w.secret.clone()),
        v(events),
        v(w.enabled),
        v(w.created_at),
        v(w.notify_since),
        v(w.kind.as_str()),
    ]
}

/// The values of [`DELIVERY_COLS`], in order.
fn delivery_values(d: &Delivery) -> [SimpleExpr; 12] {
    [
        v(d.id),
        v(d.webhook),
        v(d.event.as_str()),
        v(d.action),
        v(d.batch),
        v(d.payload.clone()),
        v(d.attempts),
        v(d.next_attempt_at),
        v(d.delivered_at),
        v(d.last_status),
        v(d.last_error.clone()),
        v(d.created_at),
    ]
}

/// Every webhook, to be narrowed and ordered.
fn select_webhooks() -> SelectStatement {
    Query::select()
        .columns(WEBHOOK_COLS)
        .from(W::Table)
        .to_owned()
}

/// Every delivery, to be narrowed and ordered.
fn select_deliveries() -> SelectStatement {
    Query::select()
        .columns(DELIVERY_COLS)
        .from(WD::Table)
        .to_owned()
}

/// Actions of `states` updated since `since` that `webhook` has no delivery of `event` for
/// (`event` is written over the outer `actions` row), to be narrowed and ordered.
fn select_unnotified(
    webhook: WebhookId,
    states: &[ActionState],
    since: OffsetDateTime,
    event: SimpleExpr,
) -> SelectStatement {
    let delivered = Query::select()
        .column((WD::Table, WD::Seq))
        .from(WD::Table)
        .and_where(Expr::col((WD::Table, WD::WebhookId)).eq(v(webhook)))
        .and_where(Expr::col((WD::Table, WD::ActionId)).equals((A::Table, A::Id)))
        .and_where(Expr::col((WD::Table, WD::Event)).eq(event))
        .to_owned();
    select_actions()
        .and_where(Expr::col((A::Table, A::UpdatedAt)).gte(v(since)))
        .and_where(Expr::col((A::Table, A::State)).is_in(states.iter().map(|s| v(s.as_str()))))
        .and_where(Expr::exists(delivered).not())
        .to_owned()
}

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
        kind: WebhookKind::parse(&r.string("kind")?)?,
    })
}

fn row_delivery(r: &impl SqlRow) -> StoreResult<Delivery> {
    Ok(Delivery {
        id: r.id("id")?,
        webhook: r.id("webhook_id")?,
        event: WebhookEvent::parse(&r.string("event")?)?,
        action: r.opt_id("action_id")?,
        batch: r.opt_id("batch_id")?,
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
    async fn deliveries(&self, select: &SelectStatement) -> StoreResult<Vec<Delivery>> {
        let rows = built::<D>(select)?.fetch_all(self.db()).await?;
        rows.iter().map(row_delivery).collect()
    }
}

#[async_trait]
impl<D: Dialect> WebhookStore for SqlStore<D> {
    async fn create_webhook(&self, webhook: &Webhook) -> StoreResult<()> {
        let insert = insert_row(W::Table, WEBHOOK_COLS, webhook_values(webhook))?;
        built::<D>(&insert)?.execute(self.db()).await?;
        Ok(())
    }

    async fn webhook(&self, id: WebhookId) -> StoreResult<Option<Webhook>> {
        let select = select_webhooks()
            .and_where(Expr::col(W::Id).eq(v(id)))
            .to_owned();
        let row = built::<D>(&select)?.fetch_optional(self.db()).await?;
        row.as_ref().map(row_webhook).transpose()
    }

    async fn list_webhooks(&self) -> StoreResult<Vec<Webhook>> {
        let select = select_webhooks()
            .order_by(W::CreatedAt, Order::Asc)
            .order_by(W::Id, Order::Asc)
            .to_owned();
        let rows = built::<D>(&select)?.fetch_all(self.db()).await?;
        rows.iter().map(row_webhook).collect()
    }

    async fn delete_webhook(&self, id: WebhookId) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        // Explicit rather than relying on ON DELETE CASCADE alone: SQLite applies it only with
        // foreign keys on, which a tool opening the file may not have set.
        let deliveries = Query::delete()
            .from_table(WD::Table)
            .and_where(Expr::col(WD::WebhookId).eq(v(id)))
            .to_owned();
        built::<D>(&deliveries)?.execute(tx.on()).await?;
        let webhook = Query::delete()
            .from_table(W::Table)
            .and_where(Expr::col(W::Id).eq(v(id)))
            .to_owned();
        let deleted = built::<D>(&webhook)?.execute(tx.on()).await?;
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
        // `notify_since` from different requests. `notify_since` moves only when a disabled
        // webhook is enabled (the CASE reads the row as it was before this update).
        let notify_since = Expr::case(v(enabled).and(Expr::col(W::Enabled).not()), v(at))
            .finally(Expr::col(W::NotifySince));
        let update = Query::update()
            .table(W::Table)
            .values([
                (W::NotifySince, notify_since.into()),
                (W::Enabled, v(enabled)),
            ])
            .and_where(Expr::col(W::Id).eq(v(id)))
            .to_owned();
        if built::<D>(&update)?.execute(self.db()).await? == 0 {
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
        // The event an action's state is reported as: an expired action is reported stuck.
        let state = || Expr::col((A::Table, A::State));
        let event = Expr::case(
            state().eq(v(ActionState::Expired.as_str())),
            v(WebhookEvent::Stuck.as_str()),
        )
        .finally(state());
        let select = select_unnotified(webhook, states, since, event.into())
            .order_by(A::UpdatedAt, Order::Asc)
            .order_by(A::Seq, Order::Asc)
            .limit(u64::from(limit))
            .to_owned();
        self.actions(&select).await
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
        let event = v(WebhookEvent::Stuck.as_str());
        let select = select_unnotified(webhook, states, since, event)
            .and_where(Expr::col((A::Table, A::UpdatedAt)).lte(v(updated_until)))
            .order_by(A::UpdatedAt, Order::Asc)
            .order_by(A::Seq, Order::Asc)
            .limit(u64::from(limit))
            .to_owned();
        self.actions(&select).await
    }

    async fn enqueue_delivery(&self, d: &Delivery) -> StoreResult<bool> {
        // The conflict target names the unique index the row can collide on: a batch event's
        // (webhook, batch, event), else an action event's (webhook, action, event).
        let about = if d.batch.is_some() {
            WD::BatchId
        } else {
            WD::ActionId
        };
        let insert = insert_row(WD::Table, DELIVERY_COLS, delivery_values(d))?
            .on_conflict(
                OnConflict::columns([WD::WebhookId, about, WD::Event])
                    .do_nothing()
                    .to_owned(),
            )
            .to_owned();
        let inserted = built::<D>(&insert)?.execute(self.db()).await?;
        Ok(inserted == 1)
    }

    async fn unnotified_batches(
        &self,
        webhook: WebhookId,
        event: WebhookEvent,
        since: OffsetDateTime,
        states: Option<&[ActionState]>,
        limit: u32,
    ) -> StoreResult<Vec<BatchRecord>> {
        let delivered = Query::select()
            .column((WD::Table, WD::Seq))
            .from(WD::Table)
            .and_where(Expr::col((WD::Table, WD::WebhookId)).eq(v(webhook)))
            .and_where(Expr::col((WD::Table, WD::BatchId)).equals((B::Table, B::Id)))
            .and_where(Expr::col((WD::Table, WD::Event)).eq(v(event.as_str())))
            .to_owned();
        let mut moved = Query::select()
            .column((A::Table, A::Seq))
            .from(A::Table)
            .and_where(Expr::col((A::Table, A::BatchId)).equals((B::Table, B::Id)))
            .and_where(Expr::col((A::Table, A::UpdatedAt)).gte(v(since)))
            .to_owned();
        if let Some(states) = states {
            moved.and_where(
                Expr::col((A::Table, A::State)).is_in(states.iter().map(|s| v(s.as_str()))),
            );
        }
        let select = select_batches()
            .and_where(Expr::exists(delivered).not())
            .and_where(Expr::exists(moved))
            .order_by((B::Table, B::Seq), Order::Desc)
            .limit(u64::from(limit))
            .to_owned();
        let rows = built::<D>(&select)?.fetch_all(self.db()).await?;
        rows.iter().map(row_batch).collect()
    }

    async fn delivery(&self, id: DeliveryId) -> StoreResult<Option<Delivery>> {
        let select = select_deliveries()
            .and_where(Expr::col(WD::Id).eq(v(id)))
            .to_owned();
        Ok(self.deliveries(&select).await?.into_iter().next())
    }

    async fn due_deliveries(&self, now: OffsetDateTime, limit: u32) -> StoreResult<Vec<Delivery>> {
        let enabled = Query::select()
            .column((W::Table, W::Id))
            .from(W::Table)
            .and_where(Expr::col((W::Table, W::Id)).equals((WD::Table, WD::WebhookId)))
            .and_where(Expr::col((W::Table, W::Enabled)).into())
            .to_owned();
        let select = select_deliveries()
            .and_where(Expr::col((WD::Table, WD::DeliveredAt)).is_null())
            .and_where(Expr::col((WD::Table, WD::NextAttemptAt)).lte(v(now)))
            .and_where(Expr::exists(enabled))
            .order_by(WD::NextAttemptAt, Order::Asc)
            .order_by(WD::Seq, Order::Asc)
            .limit(u64::from(limit))
            .to_owned();
        self.deliveries(&select).await
    }

    async fn claim_delivery(
        &self,
        id: DeliveryId,
        attempts_seen: u32,
        retry_at: Option<OffsetDateTime>,
    ) -> StoreResult<bool> {
        // One conditional UPDATE: under concurrent claims PostgreSQL re-checks the WHERE clause
        // after the first claimer commits (attempts moved on), so only one process wins.
        let claim = Query::update()
            .table(WD::Table)
            .values([
                (WD::Attempts, Expr::col(WD::Attempts).add(1)),
                (WD::NextAttemptAt, v(retry_at)),
            ])
            .and_where(Expr::col(WD::Id).eq(v(id)))
            .and_where(Expr::col(WD::Attempts).eq(v(attempts_seen)))
            .and_where(Expr::col(WD::DeliveredAt).is_null())
            .to_owned();
        if built::<D>(&claim)?.execute(self.db()).await? == 1 {
            return Ok(true);
        }
        match self.delivery(id).await? {
            Some(_) => Ok(false),
            None => Err(StoreError::NotFound(format!("delivery {id}"))),
        }
    }

    async fn finish_delivery(&self, id: DeliveryId, result: &DeliveryResult) -> StoreResult<()> {
        let update = Query::update()
            .table(WD::Table)
            .values([
                (WD::LastStatus, v(result.status)),
                (WD::LastError, v(result.error.clone())),
                (WD::DeliveredAt, v(result.delivered_at)),
                (WD::NextAttemptAt, v(result.next_attempt_at)),
            ])
            .and_where(Expr::col(WD::Id).eq(v(id)))
            .to_owned();
        if built::<D>(&update)?.execute(self.db()).await? == 0 {
            return Err(StoreError::NotFound(format!("delivery {id}")));
        }
        Ok(())
    }

    async fn deliveries_of_webhook(
        &self,
        webhook: WebhookId,
        limit: u32,
    ) -> StoreResult<Vec<Delivery>> {
        let select = select_deliveries()
            .and_where(Expr::col(WD::WebhookId).eq(v(webhook)))
            .order_by(WD::CreatedAt, Order::Desc)
            .order_by(WD::Seq, Order::Desc)
            .limit(u64::from(limit))
            .to_owned();
        self.deliveries(&select).await
    }
}
