//! Actions and request plans: the action row (its timeline and reset baseline), state changes
//! that only apply from the expected state, the selections the worker and readiness need, and
//! `write_request_plan`, the one transaction every request path commits (claims, the daily cap,
//! ended and new actions, device changes, waves, the batch window, audit events).

use std::collections::HashMap;

use async_trait::async_trait;
use redeploy_core::action::{Action, ActionKind, ActionState, ResetBaseline, TimelineEntry};
use redeploy_core::command::DeviceCommand;
use redeploy_core::ids::{ActionId, BatchId, DeviceId};
use redeploy_core::store::{
    from_micros, to_micros, ActionStore, RequestPlan, StoreError, StoreResult, WriteOutcome,
};
use time::OffsetDateTime;

use crate::audit::insert_audit_in;
use crate::commands::insert_commands;
use crate::dialect::{Arg, Dialect, On, SqlRow};
use crate::schedules::insert_batch_window_in;
use crate::sql::{placeholders, sql, RowExt};
use crate::waves::insert_wave_in;
use crate::{SqlStore, Tx};

/// Every column of `actions`, in the order [`row_action`] and the INSERT use.
pub(crate) const ACTION_COLS: &str =
    "id, device_id, kind, state, reason, last_error, batch_id, requested_by, \
     created_at, updated_at, timeline, baseline";

fn timeline_json(timeline: &[TimelineEntry]) -> String {
    serde_json::Value::Array(
        timeline
            .iter()
            .map(|e| serde_json::json!({"state": e.state.as_str(), "at": to_micros(e.at), "note": e.note}))
            .collect(),
    )
    .to_string()
}

fn timeline_from_json(text: &str) -> StoreResult<Vec<TimelineEntry>> {
    let bad = || StoreError::Corrupt(format!("action timeline {text:?}"));
    let value: serde_json::Value = serde_json::from_str(text).map_err(|_| bad())?;
    value
        .as_array()
        .ok_or_else(bad)?
        .iter()
        .map(|e| {
            Ok(TimelineEntry {
                state: ActionState::parse(e["state"].as_str().ok_or_else(bad)?)?,
                at: from_micros(e["at"].as_i64().ok_or_else(bad)?)?,
                note: e["note"].as_str().map(str::to_owned),
            })
        })
        .collect()
}

/// An action from a row holding [`ACTION_COLS`].
pub(crate) fn row_action(r: &impl SqlRow) -> StoreResult<Action> {
    let timeline = r
        .json("timeline")?
        .ok_or_else(|| StoreError::Corrupt("column timeline: NULL".into()))?;
    Ok(Action {
        id: r.id("id")?,
        device: r.id("device_id")?,
        kind: ActionKind::from_code(&r.string("kind")?)?,
        state: ActionState::parse(&r.string("state")?)?,
        reason: r.text("reason")?,
        last_error: r.opt_u32("last_error")?,
        batch: r.opt_id("batch_id")?,
        requested_by: r.string("requested_by")?,
        created_at: r.at("created_at")?,
        updated_at: r.at("updated_at")?,
        timeline: timeline_from_json(&timeline)?,
        baseline: r
            .text("baseline")?
            .map(|b| ResetBaseline::from_text(&b))
            .transpose()?,
    })
}

/// Reads (and on PostgreSQL locks) action `id` in `tx`.
pub(crate) async fn action_in<D: Dialect>(tx: &mut Tx<D>, id: ActionId) -> StoreResult<Action> {
    let row = sql(format!(
        "SELECT {ACTION_COLS} FROM actions WHERE id = $1{}",
        D::FOR_UPDATE
    ))
    .bind(id)
    .fetch_optional(tx.on())
    .await?
    .ok_or_else(|| StoreError::NotFound(format!("action {id}")))?;
    row_action(&row)
}

/// Drops the queued (never sent) commands of `action`; how many.
pub(crate) async fn discard_queued_in<D: Dialect>(
    tx: &mut Tx<D>,
    action: ActionId,
) -> StoreResult<u64> {
    sql("UPDATE commands SET state = 'failed' WHERE action_id = $1 AND state = 'queued'")
        .bind(action)
        .execute(tx.on())
        .await
}

/// Writes `a` over the stored action if that is still in state `expected`: `Conflict` if it
/// moved on meanwhile, `NotFound` if there is none.
pub(crate) async fn update_action_in<D: Dialect>(
    tx: &mut Tx<D>,
    expected: ActionState,
    a: &Action,
) -> StoreResult<()> {
    let changed = sql(
        "UPDATE actions SET state = $3, reason = $4, last_error = $5, updated_at = $6, \
         timeline = $7, baseline = $8 WHERE id = $1 AND state = $2",
    )
    .bind(a.id)
    .bind(expected.as_str())
    .bind(a.state.as_str())
    .bind(a.reason.clone())
    .bind(a.last_error)
    .bind(a.updated_at)
    .bind(Arg::json(timeline_json(&a.timeline)))
    .bind(a.baseline.map(|b| b.to_text()))
    .execute(tx.on())
    .await?;
    if changed == 0 {
        let exists = sql("SELECT state FROM actions WHERE id = $1")
            .bind(a.id)
            .fetch_optional(tx.on())
            .await?;
        return Err(match exists {
            None => StoreError::NotFound(format!("action {}", a.id)),
            Some(r) => StoreError::Conflict(format!(
                "action {} is {}, not {expected}",
                a.id,
                r.string("state")?
            )),
        });
    }
    Ok(())
}

async fn insert_action_in<D: Dialect>(
    tx: &mut Tx<D>,
    action: &Action,
    commands: &[DeviceCommand],
) -> StoreResult<()> {
    sql(format!(
        "INSERT INTO actions ({ACTION_COLS}) VALUES ({})",
        placeholders(1, 12)
    ))
    .bind(action.id)
    .bind(action.device)
    .bind(action.kind.code())
    .bind(action.state.as_str())
    .bind(action.reason.clone())
    .bind(action.last_error)
    .bind(action.batch)
    .bind(action.requested_by.clone())
    .bind(action.created_at)
    .bind(action.updated_at)
    .bind(Arg::json(timeline_json(&action.timeline)))
    .bind(action.baseline.map(|b| b.to_text()))
    .execute(tx.on())
    .await?;
    insert_commands(tx, commands).await
}

/// Not-blocked actions of `kinds` created in `[from, to)`: what the daily cap counts.
pub(crate) async fn count_created_on<D: Dialect>(
    on: On<'_, D>,
    kinds: &[ActionKind],
    from: OffsetDateTime,
    to: OffsetDateTime,
) -> StoreResult<u64> {
    if kinds.is_empty() {
        return Ok(0);
    }
    sql(format!(
        "SELECT COUNT(*) AS n FROM actions WHERE created_at >= $1 AND created_at < $2 \
         AND state <> $3 AND kind IN ({})",
        placeholders(4, kinds.len())
    ))
    .bind(from)
    .bind(to)
    .bind(ActionState::Blocked.as_str())
    .bind_all(kinds.iter().map(|k| k.code()))
    .fetch_one(on)
    .await?
    .count("n")
}

impl<D: Dialect> SqlStore<D> {
    async fn actions_where(&self, tail: &str, arg: Arg) -> StoreResult<Vec<Action>> {
        let rows = sql(format!("SELECT {ACTION_COLS} FROM actions WHERE {tail}"))
            .bind(arg)
            .fetch_all(self.db())
            .await?;
        rows.iter().map(row_action).collect()
    }
}

#[async_trait]
impl<D: Dialect> ActionStore for SqlStore<D> {
    async fn create_action(&self, action: &Action, commands: &[DeviceCommand]) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        insert_action_in(&mut tx, action, commands).await?;
        tx.commit().await
    }

    async fn action(&self, id: ActionId) -> StoreResult<Option<Action>> {
        Ok(self
            .actions_where("id = $1", id.into())
            .await?
            .into_iter()
            .next())
    }

    async fn actions_of_device(&self, device: DeviceId) -> StoreResult<Vec<Action>> {
        self.actions_where(
            "device_id = $1 ORDER BY created_at DESC, seq DESC",
            device.into(),
        )
        .await
    }

    async fn actions_of_batch(&self, batch: BatchId) -> StoreResult<Vec<Action>> {
        self.actions_where("batch_id = $1 ORDER BY created_at, seq", batch.into())
            .await
    }

    async fn actions_for_readiness(
        &self,
        devices: &[DeviceId],
    ) -> StoreResult<HashMap<DeviceId, Vec<Action>>> {
        let mut by_device = HashMap::<DeviceId, Vec<Action>>::new();
        for chunk in devices.chunks(500) {
            // Same order as `actions_of_device`, so per-device lists are its subsequences.
            let rows = sql(format!(
                "SELECT {ACTION_COLS} FROM actions WHERE device_id IN ({}) \
                 AND (state NOT IN ('done', 'failed', 'canceled', 'expired') \
                 OR (kind = 'autopilot_reset' AND state IN ('done', 'failed'))) \
                 ORDER BY device_id, created_at DESC, seq DESC",
                placeholders(1, chunk.len())
            ))
            .bind_all(chunk.iter().copied())
            .fetch_all(self.db())
            .await?;
            for row in rows {
                let a = row_action(&row)?;
                by_device.entry(a.device).or_default().push(a);
            }
        }
        Ok(by_device)
    }

    async fn active_action(&self, device: DeviceId) -> StoreResult<Option<Action>> {
        let active = self
            .actions_where(
                "device_id = $1 AND state NOT IN ('done', 'failed', 'canceled', 'expired') \
                 ORDER BY created_at DESC, seq DESC LIMIT 1",
                device.into(),
            )
            .await?;
        Ok(active.into_iter().next())
    }

    async fn actions_in_state(&self, state: ActionState, limit: u32) -> StoreResult<Vec<Action>> {
        let rows = sql(format!(
            "SELECT {ACTION_COLS} FROM actions WHERE state = $1 ORDER BY updated_at, seq LIMIT $2"
        ))
        .bind(state.as_str())
        .bind(limit)
        .fetch_all(self.db())
        .await?;
        rows.iter().map(row_action).collect()
    }

    async fn stale_actions(
        &self,
        states: &[ActionState],
        updated_before: OffsetDateTime,
        limit: u32,
    ) -> StoreResult<Vec<Action>> {
        if states.is_empty() {
            return Ok(Vec::new());
        }
        // `state IN (...) AND updated_at < $n` is a range scan per state on `actions_state`.
        let rows = sql(format!(
            "SELECT {ACTION_COLS} FROM actions WHERE state IN ({}) AND updated_at < ${} \
             ORDER BY updated_at, seq LIMIT ${}",
            placeholders(1, states.len()),
            states.len() + 1,
            states.len() + 2
        ))
        .bind_all(states.iter().map(|s| s.as_str()))
        .bind(updated_before)
        .bind(limit)
        .fetch_all(self.db())
        .await?;
        rows.iter().map(row_action).collect()
    }

    async fn update_action(&self, expected: ActionState, action: &Action) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        update_action_in(&mut tx, expected, action).await?;
        tx.commit().await
    }

    async fn write_request_plan(&self, plan: &RequestPlan) -> StoreResult<WriteOutcome> {
        if plan.is_empty() {
            return Ok(WriteOutcome::Written);
        }
        // Every early return below drops `tx`, which rolls back whatever was written so far.
        let mut tx = self.begin().await?;
        // Claims first, so that a writer that lost the race stops before touching anything else
        // (on PostgreSQL it waits for the winner's row lock, then sees the claim taken).
        if let Some(w) = &plan.release_wave {
            let claimed = sql("UPDATE batch_waves SET released_at = $3 \
                 WHERE batch_id = $1 AND wave_index = $2 AND released_at IS NULL")
            .bind(w.batch)
            .bind(w.index)
            .bind(plan.at)
            .execute(tx.on())
            .await?;
            if claimed == 0 {
                let exists =
                    sql("SELECT 1 FROM batch_waves WHERE batch_id = $1 AND wave_index = $2")
                        .bind(w.batch)
                        .bind(w.index)
                        .fetch_optional(tx.on())
                        .await?;
                return match exists {
                    Some(_) => Ok(WriteOutcome::ClaimLost),
                    None => Err(StoreError::NotFound(format!(
                        "wave {} of batch {}",
                        w.index, w.batch
                    ))),
                };
            }
        }
        if let Some(c) = &plan.claim_schedule {
            let claimed = sql("UPDATE schedules SET last_run = $2, next_run = $3 \
                 WHERE id = $1 AND enabled AND next_run = $4")
            .bind(c.schedule)
            .bind(c.last_run)
            .bind(c.next_run)
            .bind(c.due_at)
            .execute(tx.on())
            .await?;
            if claimed == 0 {
                let exists = sql("SELECT 1 FROM schedules WHERE id = $1")
                    .bind(c.schedule)
                    .fetch_optional(tx.on())
                    .await?;
                return match exists {
                    Some(_) => Ok(WriteOutcome::ClaimLost),
                    None => Err(StoreError::NotFound(format!("schedule {}", c.schedule))),
                };
            }
        }
        if let Some(cap) = &plan.cap {
            // Serialises cap checks across processes (SQLite: the write lock its transactions
            // take up front), so the count below cannot miss another writer's uncommitted actions.
            if let Some(lock) = D::CAP_LOCK {
                sql(lock).execute(tx.on()).await?;
            }
            let used = count_created_on(tx.on(), &cap.kinds, cap.from, cap.to).await?;
            // The same rule as `count_actions_created`, applied to the rows about to be inserted.
            let adds = plan
                .create
                .iter()
                .filter(|n| {
                    let a = &n.action;
                    cap.kinds.contains(&a.kind)
                        && a.state != ActionState::Blocked
                        && a.created_at >= cap.from
                        && a.created_at < cap.to
                })
                .count() as u64;
            // A plan adding nothing capped passes even over a full day (a lower cap of another
            // batch may have been exceeded by a higher one's).
            if adds > 0 && used + adds > u64::from(cap.cap) {
                return Ok(WriteOutcome::CapReached { used });
            }
        }
        // Ended actions before new ones: a superseded reset must leave the active set before
        // the wipe that supersedes it enters it (the one-active-erasing-action index). The
        // commands are dropped only after the state check passed.
        for u in &plan.end {
            update_action_in(&mut tx, u.expected, &u.action).await?;
            discard_queued_in(&mut tx, u.action.id).await?;
        }
        for n in &plan.create {
            insert_action_in(&mut tx, &n.action, &n.commands).await?;
        }
        for c in &plan.device_changes {
            let changed = sql("UPDATE devices SET local_reset_desired = $2 WHERE id = $1")
                .bind(c.device)
                .bind(c.local_reset_desired)
                .execute(tx.on())
                .await?;
            if changed == 0 {
                return Err(StoreError::NotFound(format!("device {}", c.device)));
            }
        }
        for w in &plan.waves {
            insert_wave_in(tx.on(), w).await?;
        }
        if let Some((batch, window)) = &plan.window {
            insert_batch_window_in(tx.on(), *batch, window).await?;
        }
        for e in &plan.audit {
            insert_audit_in(&mut tx, e).await?;
        }
        tx.commit().await?;
        Ok(WriteOutcome::Written)
    }
}
