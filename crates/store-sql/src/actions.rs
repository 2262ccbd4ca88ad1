//! Actions and request plans: the action row (its timeline and reset baseline), state changes
//! that only apply from the expected state, the selections the worker and readiness need, and
//! `write_request_plan`, the one transaction every request path commits (claims, the daily cap,
//! ended and new actions, device changes, waves, the batch window, audit events).

use std::collections::HashMap;

use async_trait::async_trait;
use redeploy_core::action::{
    Action, ActionKind, ActionState, ResetBaseline, TimelineEntry, LOCAL_RESET_OBSERVER,
};
use redeploy_core::command::{CommandState, DeviceCommand};
use redeploy_core::ids::{ActionId, BatchId, DeviceId};
use redeploy_core::store::{
    from_micros, to_micros, ActionQuery, ActionStore, DayCount, Page, RequestPlan, StoreError,
    StoreResult, WriteOutcome,
};
use sea_query::{
    Alias, Asterisk, Cond, Expr, LockType, Order, Query, SelectStatement, SimpleExpr,
    UpdateStatement,
};
use time::OffsetDateTime;

use crate::audit::insert_audits_in;
use crate::bulk::insert_rows;
use crate::commands::{insert_all_commands, insert_commands};
use crate::devices::set_device_values;
use crate::dialect::{Arg, Dialect, On, SqlRow};
use crate::query::{built, v};
use crate::schedules::insert_batch_window_in;
use crate::schema::{Actions as A, BatchWaves as B, Commands as C, Devices as Dv, Schedules as S};
use crate::sql::{RowExt, Sql};
use crate::waves::insert_wave_in;
use crate::{SqlStore, Tx};

/// Every column of `actions`, as [`row_action`] reads them: first those fixed when the action
/// is created, then the [`ACTION_CHANGES`] that [`update_action_in`] writes.
pub(crate) const ACTION_COLS: [A; 12] = [
    A::Id,
    A::DeviceId,
    A::Kind,
    A::BatchId,
    A::RequestedBy,
    A::CreatedAt,
    A::State,
    A::Reason,
    A::LastError,
    A::UpdatedAt,
    A::Timeline,
    A::Baseline,
];

/// How many of the last [`ACTION_COLS`] change after the insert.
const ACTION_CHANGES: usize = 6;

/// The values of [`ACTION_COLS`], in order.
pub(crate) fn action_values(a: &Action) -> [SimpleExpr; 12] {
    [
        v(a.id),
        v(a.device),
        v(a.kind.code()),
        v(a.batch),
        v(a.requested_by.clone()),
        v(a.created_at),
        v(a.state.as_str()),
        v(a.reason.clone()),
        v(a.last_error),
        v(a.updated_at),
        v(Arg::json(timeline_json(&a.timeline))),
        v(a.baseline.map(|b| b.to_text())),
    ]
}

/// Every action, to be narrowed and ordered: rows for [`row_action`].
pub(crate) fn select_actions() -> SelectStatement {
    Query::select()
        .columns(ACTION_COLS)
        .from(A::Table)
        .to_owned()
}

/// `state NOT IN (<the terminal states>)`: the action may still move on.
fn not_ended() -> SimpleExpr {
    let terminal = ActionState::ALL
        .iter()
        .filter(|s| s.is_terminal())
        .map(|s| v(s.as_str()));
    Expr::col(A::State).is_not_in(terminal)
}

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

/// An action from a row of [`select_actions`].
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
    let select = select_actions()
        .and_where(Expr::col(A::Id).eq(v(id)))
        .lock(LockType::Update)
        .to_owned();
    let row = built::<D>(&select)?
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
    let update = Query::update()
        .table(C::Table)
        .value(C::State, v(CommandState::Failed.as_str()))
        .and_where(Expr::col(C::ActionId).eq(v(action)))
        .and_where(Expr::col(C::State).eq(v(CommandState::Queued.as_str())))
        .to_owned();
    built::<D>(&update)?.execute(tx.on()).await
}

/// Writes `a` over the stored action if that is still in state `expected`: `Conflict` if it
/// moved on meanwhile, `NotFound` if there is none.
pub(crate) async fn update_action_in<D: Dialect>(
    tx: &mut Tx<D>,
    expected: ActionState,
    a: &Action,
) -> StoreResult<()> {
    let fixed = ACTION_COLS.len() - ACTION_CHANGES;
    let update = Query::update()
        .table(A::Table)
        .values(ACTION_COLS.into_iter().zip(action_values(a)).skip(fixed))
        .and_where(Expr::col(A::Id).eq(v(a.id)))
        .and_where(Expr::col(A::State).eq(v(expected.as_str())))
        .to_owned();
    let changed = built::<D>(&update)?.execute(tx.on()).await?;
    if changed == 0 {
        let select = Query::select()
            .column(A::State)
            .from(A::Table)
            .and_where(Expr::col(A::Id).eq(v(a.id)))
            .to_owned();
        let exists = built::<D>(&select)?.fetch_optional(tx.on()).await?;
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

pub(crate) async fn insert_action_in<D: Dialect>(
    tx: &mut Tx<D>,
    action: &Action,
    commands: &[DeviceCommand],
) -> StoreResult<()> {
    // Copied from its device's row, so that an unknown device is refused (PostgreSQL has no
    // foreign key from actions to devices: migration 20261219000001).
    let of_device = Query::select()
        .exprs(action_values(action))
        .from(Dv::Table)
        .and_where(Expr::col(Dv::Id).eq(v(action.device)))
        .to_owned();
    let insert = Query::insert()
        .into_table(A::Table)
        .columns(ACTION_COLS)
        .select_from(of_device)
        .map_err(|e| StoreError::Backend(e.to_string()))?
        .to_owned();
    if built::<D>(&insert)?.execute(tx.on()).await? == 0 {
        return Err(StoreError::NotFound(format!("device {}", action.device)));
    }
    insert_commands(tx, commands).await
}

/// Not-blocked actions of `kinds` created in `[from, to)`: what the daily cap counts. A local
/// reset the server only observed (`LOCAL_RESET_OBSERVER`) is not one it asked for: not counted.
pub(crate) async fn count_created_on<D: Dialect>(
    on: On<'_, D>,
    kinds: &[ActionKind],
    from: OffsetDateTime,
    to: OffsetDateTime,
) -> StoreResult<u64> {
    if kinds.is_empty() {
        return Ok(0);
    }
    let select = Query::select()
        .expr_as(Expr::col(Asterisk).count(), Alias::new("n"))
        .from(A::Table)
        .and_where(Expr::col(A::CreatedAt).gte(v(from)))
        .and_where(Expr::col(A::CreatedAt).lt(v(to)))
        .and_where(Expr::col(A::State).ne(v(ActionState::Blocked.as_str())))
        .and_where(Expr::col(A::Kind).is_in(kinds.iter().map(|k| v(k.code()))))
        .and_where(Expr::col(A::RequestedBy).ne(v(LOCAL_RESET_OBSERVER)))
        .to_owned();
    built::<D>(&select)?.fetch_one(on).await?.count("n")
}

/// Runs `claim`, a conditional UPDATE of one row: `None` if it took the row; if not,
/// `ClaimLost` where `row` (a SELECT of that row by its key) finds it, `NotFound` (naming `what`)
/// where there is no such row.
async fn claim_in<D: Dialect>(
    tx: &mut Tx<D>,
    claim: &UpdateStatement,
    row: &SelectStatement,
    what: impl FnOnce() -> String,
) -> StoreResult<Option<WriteOutcome>> {
    if built::<D>(claim)?.execute(tx.on()).await? > 0 {
        return Ok(None);
    }
    match built::<D>(row)?.fetch_optional(tx.on()).await? {
        Some(_) => Ok(Some(WriteOutcome::ClaimLost)),
        None => Err(StoreError::NotFound(what())),
    }
}

impl<D: Dialect> SqlStore<D> {
    /// The actions `select` (over [`select_actions`]) finds.
    pub(crate) async fn actions(&self, select: &SelectStatement) -> StoreResult<Vec<Action>> {
        let rows = built::<D>(select)?.fetch_all(self.db()).await?;
        rows.iter().map(row_action).collect()
    }
}

/// The Julian day number of 1970-01-01 (a day count since the epoch read as a date).
const UNIX_EPOCH_JULIAN_DAY: i32 = 2_440_588;

#[async_trait]
impl<D: Dialect> ActionStore for SqlStore<D> {
    async fn action_counts_by_day(
        &self,
        kind: ActionKind,
        from: OffsetDateTime,
    ) -> StoreResult<Vec<DayCount>> {
        let select = Query::select()
            .expr_as(Expr::cust(D::utc_day("created_at")), Alias::new("day"))
            .column(A::State)
            // Every column it reads is in `actions_created` (migration `20261222000001`): an
            // index-only scan.
            .expr_as(Expr::col(Asterisk).count(), Alias::new("n"))
            .from(A::Table)
            .and_where(Expr::col(A::Kind).eq(v(kind.code())))
            .and_where(Expr::col(A::CreatedAt).gte(v(from)))
            // By position: both databases read a bare integer in GROUP BY as a column of the list.
            .add_group_by([Expr::cust("1"), Expr::cust("2")])
            .to_owned();
        let rows = built::<D>(&select)?.fetch_all(self.db()).await?;
        rows.iter()
            .map(|r| {
                let day = r.i64("day")?;
                let day = time::Date::from_julian_day(
                    i32::try_from(day + i64::from(UNIX_EPOCH_JULIAN_DAY))
                        .map_err(|_| StoreError::Corrupt(format!("day {day}")))?,
                )
                .map_err(|e| StoreError::Corrupt(format!("day {day}: {e}")))?;
                Ok(DayCount {
                    day,
                    state: ActionState::parse(&r.string("state")?)?,
                    count: r.count("n")?,
                })
            })
            .collect()
    }

    async fn create_action(&self, action: &Action, commands: &[DeviceCommand]) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        insert_action_in(&mut tx, action, commands).await?;
        tx.commit().await
    }

    async fn action(&self, id: ActionId) -> StoreResult<Option<Action>> {
        let select = select_actions()
            .and_where(Expr::col(A::Id).eq(v(id)))
            .to_owned();
        Ok(self.actions(&select).await?.into_iter().next())
    }

    async fn actions_of_device(&self, device: DeviceId) -> StoreResult<Vec<Action>> {
        let select = select_actions()
            .and_where(Expr::col(A::DeviceId).eq(v(device)))
            .order_by(A::CreatedAt, Order::Desc)
            .order_by(A::Seq, Order::Desc)
            .to_owned();
        self.actions(&select).await
    }

    async fn actions_of_batch(&self, batch: BatchId) -> StoreResult<Vec<Action>> {
        let select = select_actions()
            .and_where(Expr::col(A::BatchId).eq(v(batch)))
            .order_by(A::CreatedAt, Order::Asc)
            .order_by(A::Seq, Order::Asc)
            .to_owned();
        self.actions(&select).await
    }

    async fn actions_for_readiness(
        &self,
        devices: &[DeviceId],
    ) -> StoreResult<HashMap<DeviceId, Vec<Action>>> {
        let mut by_device = HashMap::<DeviceId, Vec<Action>>::new();
        for chunk in devices.chunks(500) {
            // Same order as `actions_of_device`, so per-device lists are its subsequences.
            let ended_reset = Cond::all()
                .add(Expr::col(A::Kind).eq(v(ActionKind::AutopilotReset.code())))
                .add(Expr::col(A::State).is_in([
                    v(ActionState::Done.as_str()),
                    v(ActionState::Failed.as_str()),
                ]));
            let select = select_actions()
                .and_where(Expr::col(A::DeviceId).is_in(chunk.iter().map(|d| v(*d))))
                .cond_where(Cond::any().add(not_ended()).add(ended_reset))
                .order_by(A::DeviceId, Order::Asc)
                .order_by(A::CreatedAt, Order::Desc)
                .order_by(A::Seq, Order::Desc)
                .to_owned();
            for a in self.actions(&select).await? {
                by_device.entry(a.device).or_default().push(a);
            }
        }
        Ok(by_device)
    }

    async fn active_action(&self, device: DeviceId) -> StoreResult<Option<Action>> {
        let select = select_actions()
            .and_where(Expr::col(A::DeviceId).eq(v(device)))
            .and_where(not_ended())
            .order_by(A::CreatedAt, Order::Desc)
            .order_by(A::Seq, Order::Desc)
            .limit(1)
            .to_owned();
        Ok(self.actions(&select).await?.into_iter().next())
    }

    async fn actions_in_state(&self, state: ActionState, limit: u32) -> StoreResult<Vec<Action>> {
        let select = select_actions()
            .and_where(Expr::col(A::State).eq(v(state.as_str())))
            .order_by(A::UpdatedAt, Order::Asc)
            .order_by(A::Seq, Order::Asc)
            .limit(u64::from(limit))
            .to_owned();
        self.actions(&select).await
    }

    async fn count_actions_in_state(&self, state: ActionState, cap: u32) -> StoreResult<u64> {
        // The capped rows counted from `actions_state` alone, in its order: so PostgreSQL's
        // generic plan walks the index and stops at the cap. Unordered, it scanned the whole
        // table for a state no action was in once one state held 100,000 (issue #16).
        let capped = Query::select()
            .expr(Expr::val(1))
            .from(A::Table)
            .and_where(Expr::col(A::State).eq(v(state.as_str())))
            .order_by(A::UpdatedAt, Order::Asc)
            .order_by(A::Seq, Order::Asc)
            .limit(u64::from(cap))
            .to_owned();
        let select = Query::select()
            .expr_as(Expr::col(Asterisk).count(), Alias::new("n"))
            .from_subquery(capped, Alias::new("capped"))
            .to_owned();
        built::<D>(&select)?.fetch_one(self.db()).await?.count("n")
    }

    async fn list_actions(&self, query: &ActionQuery) -> StoreResult<Page<Action>> {
        const TAG: char = 'a';
        let limit = query.limit.max(1);
        let mut select = select_actions()
            .column(A::Seq)
            .order_by(A::Seq, Order::Desc)
            .limit(u64::from(limit) + 1)
            .to_owned();
        if let Some(d) = query.device {
            select.and_where(Expr::col(A::DeviceId).eq(v(d)));
        }
        if let Some(s) = query.state {
            select.and_where(Expr::col(A::State).eq(v(s.as_str())));
        }
        if let Some(b) = query.batch {
            select.and_where(Expr::col(A::BatchId).eq(v(b)));
        }
        if let Some(k) = query.kind {
            select.and_where(Expr::col(A::Kind).eq(v(k.code())));
        }
        if let Some(from) = query.created_from {
            select.and_where(Expr::col(A::CreatedAt).gte(v(from)));
        }
        if let Some(c) = &query.cursor {
            select.and_where(Expr::col(A::Seq).lt(v(c.position(TAG)?)));
        }
        let rows = built::<D>(&select)?.fetch_all(self.db()).await?;
        crate::query::page_by_seq(&rows, limit, TAG, row_action)
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
        // `state IN (...) AND updated_at < <before>` is a range scan per state on `actions_state`.
        let select = select_actions()
            .and_where(Expr::col(A::State).is_in(states.iter().map(|s| v(s.as_str()))))
            .and_where(Expr::col(A::UpdatedAt).lt(v(updated_before)))
            .order_by(A::UpdatedAt, Order::Asc)
            .order_by(A::Seq, Order::Asc)
            .limit(u64::from(limit))
            .to_owned();
        self.actions(&select).await
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
        if let Some(c) = &plan.batch_change {
            crate::batches::change_batch_in(&mut tx, plan.at, c).await?;
        }
        if let Some(w) = &plan.release_wave {
            // A paused or canceled batch releases nothing (checked under the batch row's lock).
            if !crate::batches::batch_runs_in(&mut tx, w.batch).await? {
                return Ok(WriteOutcome::ClaimLost);
            }
            let key = Cond::all()
                .add(Expr::col(B::BatchId).eq(v(w.batch)))
                .add(Expr::col(B::WaveIndex).eq(v(w.index)));
            let claim = Query::update()
                .table(B::Table)
                .value(B::ReleasedAt, v(plan.at))
                .cond_where(key.clone())
                .and_where(Expr::col(B::ReleasedAt).is_null())
                .to_owned();
            let wave = Query::select()
                .column(B::WaveIndex)
                .from(B::Table)
                .cond_where(key)
                .to_owned();
            let what = || format!("wave {} of batch {}", w.index, w.batch);
            if let Some(lost) = claim_in(&mut tx, &claim, &wave, what).await? {
                return Ok(lost);
            }
        }
        if let Some(c) = &plan.claim_schedule {
            let key = Expr::col(S::Id).eq(v(c.schedule));
            let claim = Query::update()
                .table(S::Table)
                .values([(S::LastRun, v(c.last_run)), (S::NextRun, v(c.next_run))])
                .and_where(key.clone())
                .and_where(Expr::col(S::Enabled).into())
                .and_where(Expr::col(S::NextRun).eq(v(c.due_at)))
                .to_owned();
            let schedule = Query::select()
                .column(S::Id)
                .from(S::Table)
                .and_where(key)
                .to_owned();
            let what = || format!("schedule {}", c.schedule);
            if let Some(lost) = claim_in(&mut tx, &claim, &schedule, what).await? {
                return Ok(lost);
            }
        }
        if let Some(cap) = &plan.cap {
            // Serialises cap checks across processes (SQLite: the write lock its transactions
            // take up front), so the count below cannot miss another writer's uncommitted actions.
            if let Some(lock) = D::CAP_LOCK {
                Sql::new(lock.to_owned(), Vec::new())
                    .execute(tx.on())
                    .await?;
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
            match update_action_in(&mut tx, u.expected, &u.action).await {
                // Moved on (sent by a check-in): not ended, its commands kept.
                Err(StoreError::Conflict(_)) if plan.end_skips_moved => continue,
                done => done?,
            }
            discard_queued_in(&mut tx, u.action.id).await?;
        }
        // The new actions, then their commands, as multi-row INSERTs: a group of 100,000 PCs in
        // a few hundred statements rather than half a million.
        insert_rows(&mut tx, A::Table, ACTION_COLS, &plan.create, |n| {
            action_values(&n.action)
        })
        .await?;
        let commands: Vec<&DeviceCommand> = plan.create.iter().flat_map(|n| &n.commands).collect();
        insert_all_commands(&mut tx, &commands).await?;
        for c in &plan.device_changes {
            let values = [(Dv::LocalResetDesired, v(c.local_reset_desired))];
            set_device_values(tx.on(), c.device, values).await?;
        }
        for w in &plan.waves {
            insert_wave_in(tx.on(), w).await?;
        }
        if let Some((batch, window)) = &plan.window {
            insert_batch_window_in(tx.on(), *batch, window).await?;
        }
        if let Some(batch) = &plan.batch {
            crate::batches::insert_batch_in(tx.on(), batch).await?;
        }
        insert_audits_in(&mut tx, &plan.audit).await?;
        if let Some(bulk) = &plan.bulk {
            crate::bulk_queue::queue_bulk_in(&mut tx, bulk, plan.at).await?;
        }
        tx.commit().await?;
        if plan.bulk.is_some() && !D::MAINTAIN_AFTER_BULK.is_empty() {
            // Not awaited: the request has its answer; a failure only leaves it to autovacuum.
            let pool = self.pool.clone();
            tokio::spawn(async move {
                for statement in D::MAINTAIN_AFTER_BULK {
                    let done = crate::sql::Sql::new((*statement).to_owned(), Vec::new())
                        .execute(On::<D>::Pool(&pool))
                        .await;
                    if done.is_err() {
                        break;
                    }
                }
            });
        }
        Ok(WriteOutcome::Written)
    }
}
