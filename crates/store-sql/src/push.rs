//! Push (WNS): each device's channel (upserted per report, expired on WNS's 410), the claimed
//! attempts of pending actions (the primary key (action, attempt) is the claim: an insert that
//! conflicts claims nothing), and what woke each action's PC, recorded once.

use async_trait::async_trait;
use redeploy_core::action::ActionState;
use redeploy_core::ids::{ActionId, DeviceId};
use redeploy_core::push::{
    ChannelState, PushAttempt, PushCandidate, PushChannel, PushOutcome, WokenBy,
};
use redeploy_core::store::{PushStore, StoreError, StoreResult};
use sea_query::{Expr, OnConflict, Order, Query};
use time::OffsetDateTime;

use crate::dialect::{Dialect, SqlRow};
use crate::query::{built, insert_row, v};
use crate::schema::{ActionWakes as W, Actions as A, PushAttempts as PA, PushChannels as PC};
use crate::sql::RowExt;
use crate::SqlStore;

const CHANNEL_COLS: [PC; 6] = [
    PC::DeviceId,
    PC::Uri,
    PC::DeviceStatus,
    PC::State,
    PC::SeenAt,
    PC::UpdatedAt,
];

const ATTEMPT_COLS: [PA; 6] = [
    PA::ActionId,
    PA::Attempt,
    PA::DeviceId,
    PA::ClaimedAt,
    PA::Outcome,
    PA::FinishedAt,
];

fn corrupt(what: &str, text: &str) -> StoreError {
    StoreError::Corrupt(format!("{what} {text:?}"))
}

fn row_channel(r: &impl SqlRow) -> StoreResult<PushChannel> {
    let state = r.string("state")?;
    Ok(PushChannel {
        device: r.id("device_id")?,
        uri: r.text("uri")?,
        device_status: r.int("device_status")?,
        state: ChannelState::parse(&state).ok_or_else(|| corrupt("push channel state", &state))?,
        seen_at: r.at("seen_at")?,
        updated_at: r.at("updated_at")?,
    })
}

fn row_attempt(r: &impl SqlRow) -> StoreResult<PushAttempt> {
    let outcome = match r.text("outcome")? {
        Some(text) => {
            Some(PushOutcome::parse(&text).ok_or_else(|| corrupt("push outcome", &text))?)
        }
        None => None,
    };
    Ok(PushAttempt {
        action: r.id("action_id")?,
        attempt: r.u32("attempt")?,
        device: r.id("device_id")?,
        claimed_at: r.at("claimed_at")?,
        outcome,
        finished_at: r.time("finished_at")?,
    })
}

#[async_trait]
impl<D: Dialect> PushStore for SqlStore<D> {
    async fn record_push_channel(&self, c: &PushChannel) -> StoreResult<()> {
        let upsert = insert_row(
            PC::Table,
            CHANNEL_COLS,
            [
                v(c.device),
                v(c.uri.clone()),
                v(c.device_status),
                v(c.state.as_str()),
                v(c.seen_at),
                v(c.updated_at),
            ],
        )?
        .on_conflict(
            OnConflict::column(PC::DeviceId)
                .update_columns([
                    PC::Uri,
                    PC::DeviceStatus,
                    PC::State,
                    PC::SeenAt,
                    PC::UpdatedAt,
                ])
                .to_owned(),
        )
        .to_owned();
        built::<D>(&upsert)?.execute(self.db()).await?;
        Ok(())
    }

    async fn push_channel(&self, device: DeviceId) -> StoreResult<Option<PushChannel>> {
        let select = Query::select()
            .columns(CHANNEL_COLS)
            .from(PC::Table)
            .and_where(Expr::col(PC::DeviceId).eq(v(device)))
            .to_owned();
        built::<D>(&select)?
            .fetch_optional(self.db())
            .await?
            .as_ref()
            .map(row_channel)
            .transpose()
    }

    async fn expire_push_channel(
        &self,
        device: DeviceId,
        uri: &str,
        at: OffsetDateTime,
    ) -> StoreResult<bool> {
        let update = Query::update()
            .table(PC::Table)
            .values([
                (PC::State, v(ChannelState::Expired.as_str())),
                (PC::UpdatedAt, v(at)),
            ])
            .and_where(Expr::col(PC::DeviceId).eq(v(device)))
            .and_where(Expr::col(PC::Uri).eq(v(uri.to_owned())))
            .to_owned();
        Ok(built::<D>(&update)?.execute(self.db()).await? > 0)
    }

    async fn push_candidates(
        &self,
        since: OffsetDateTime,
        limit: u32,
    ) -> StoreResult<Vec<PushCandidate>> {
        let select = Query::select()
            .expr_as(
                Expr::col((A::Table, A::Id)),
                sea_query::Alias::new("action_id"),
            )
            .expr_as(
                Expr::col((A::Table, A::DeviceId)),
                sea_query::Alias::new("device_id"),
            )
            .column((PC::Table, PC::Uri))
            .from(A::Table)
            .inner_join(
                PC::Table,
                Expr::col((PC::Table, PC::DeviceId)).equals((A::Table, A::DeviceId)),
            )
            .and_where(Expr::col((A::Table, A::State)).eq(v(ActionState::Pending.as_str())))
            .and_where(Expr::col((A::Table, A::CreatedAt)).gte(v(since)))
            .and_where(Expr::col((PC::Table, PC::State)).eq(v(ChannelState::Active.as_str())))
            .and_where(Expr::col((PC::Table, PC::Uri)).is_not_null())
            .order_by((A::Table, A::Seq), Order::Asc)
            .limit(u64::from(limit))
            .to_owned();
        let rows = built::<D>(&select)?.fetch_all(self.db()).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            out.push(PushCandidate {
                action: r.id("action_id")?,
                device: r.id("device_id")?,
                channel: r.string("uri")?,
                last: None,
            });
        }
        let ids: Vec<ActionId> = out.iter().map(|c| c.action).collect();
        for attempt in self.push_attempts(&ids).await? {
            if let Some(c) = out.iter_mut().find(|c| c.action == attempt.action) {
                // Attempts come in order, so the last one seen is the latest.
                c.last = Some(attempt);
            }
        }
        Ok(out)
    }

    async fn claim_push_attempt(&self, a: &PushAttempt) -> StoreResult<bool> {
        let insert = insert_row(
            PA::Table,
            ATTEMPT_COLS,
            [
                v(a.action),
                v(i64::from(a.attempt)),
                v(a.device),
                v(a.claimed_at),
                v(a.outcome.map(PushOutcome::as_str)),
                v(a.finished_at),
            ],
        )?
        .on_conflict(
            OnConflict::columns([PA::ActionId, PA::Attempt])
                .do_nothing()
                .to_owned(),
        )
        .to_owned();
        Ok(built::<D>(&insert)?.execute(self.db()).await? == 1)
    }

    async fn finish_push_attempt(
        &self,
        action: ActionId,
        attempt: u32,
        outcome: PushOutcome,
        at: OffsetDateTime,
    ) -> StoreResult<()> {
        let update = Query::update()
            .table(PA::Table)
            .values([(PA::Outcome, v(outcome.as_str())), (PA::FinishedAt, v(at))])
            .and_where(Expr::col(PA::ActionId).eq(v(action)))
            .and_where(Expr::col(PA::Attempt).eq(v(i64::from(attempt))))
            .to_owned();
        built::<D>(&update)?.execute(self.db()).await?;
        Ok(())
    }

    async fn push_attempts(&self, actions: &[ActionId]) -> StoreResult<Vec<PushAttempt>> {
        if actions.is_empty() {
            return Ok(Vec::new());
        }
        let select = Query::select()
            .columns(ATTEMPT_COLS)
            .from(PA::Table)
            .and_where(Expr::col(PA::ActionId).is_in(actions.iter().map(|a| v(*a))))
            .order_by(PA::ActionId, Order::Asc)
            .order_by(PA::Attempt, Order::Asc)
            .to_owned();
        let rows = built::<D>(&select)?.fetch_all(self.db()).await?;
        rows.iter().map(row_attempt).collect()
    }

    async fn record_wakes(&self, wakes: &[(ActionId, WokenBy, OffsetDateTime)]) -> StoreResult<()> {
        for (action, by, at) in wakes {
            let insert = insert_row(
                W::Table,
                [W::ActionId, W::WokenBy, W::At],
                [v(*action), v(by.as_str()), v(*at)],
            )?
            .on_conflict(OnConflict::column(W::ActionId).do_nothing().to_owned())
            .to_owned();
            built::<D>(&insert)?.execute(self.db()).await?;
        }
        Ok(())
    }

    async fn wakes(&self, actions: &[ActionId]) -> StoreResult<Vec<(ActionId, WokenBy)>> {
        if actions.is_empty() {
            return Ok(Vec::new());
        }
        let select = Query::select()
            .columns([W::ActionId, W::WokenBy])
            .from(W::Table)
            .and_where(Expr::col(W::ActionId).is_in(actions.iter().map(|a| v(*a))))
            .to_owned();
        let rows = built::<D>(&select)?.fetch_all(self.db()).await?;
        rows.iter()
            .map(|r| {
                let by = r.string("woken_by")?;
                Ok((
                    r.id("action_id")?,
                    WokenBy::parse(&by).ok_or_else(|| corrupt("woken_by", &by))?,
                ))
            })
            .collect()
    }
}
