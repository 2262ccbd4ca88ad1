//! The command queue and device sessions: commands queued per device, taken in order (each
//! exactly once, even across processes), matched to the device's answers by their refs; one
//! session step commits a whole message's effects in one transaction.

use async_trait::async_trait;
use redeploy_core::action::action_after_send;
use redeploy_core::command::{CommandState, DeviceCommand, SentIn, Verb};
use redeploy_core::ids::{ActionId, CommandId, DeviceId};
use redeploy_core::store::{
    CheckInView, CommandQueue, SessionStep, StepOutcome, StoreError, StoreResult,
};
use sea_query::{Cond, Expr, Keyword, LockType, Order, Query, SelectStatement, SimpleExpr};

use crate::actions::{action_in, discard_queued_in, insert_action_in, update_action_in};
use crate::bulk::insert_rows;
use crate::check_in::step_in_one_statement;
use crate::devices::step_device_row_in;
use crate::dialect::{Dialect, SqlRow};
use crate::inventory::upsert_inventory_in;
use crate::query::{built, built_locked, v};
use crate::schema::Commands as C;
use crate::sql::RowExt;
use crate::step_batch::row_of;
use crate::{SqlStore, Tx};

pub(crate) const COMMAND_COLS: [C; 17] = [
    C::Id,
    C::DeviceId,
    C::ActionId,
    C::Verb,
    C::Uri,
    C::Format,
    C::Data,
    C::State,
    C::SessionId,
    C::MsgId,
    C::CmdId,
    C::Status,
    C::Result,
    C::CreatedAt,
    C::SentAt,
    C::AnsweredAt,
    C::Attempts,
];

/// The values of [`COMMAND_COLS`], in order.
pub(crate) fn command_values(c: &DeviceCommand) -> [SimpleExpr; 17] {
    let sent = c.sent_in.as_ref();
    [
        v(c.id),
        v(c.device),
        v(c.action),
        v(c.verb.as_str()),
        v(c.uri.clone()),
        v(c.format.clone()),
        v(c.data.clone()),
        v(c.state.as_str()),
        v(sent.map(|s| s.session_id.clone())),
        v(sent.map(|s| s.msg_id.clone())),
        v(sent.map(|s| s.cmd_id.clone())),
        v(c.status),
        v(c.result.clone()),
        v(c.created_at),
        v(c.sent_at),
        v(c.answered_at),
        v(c.attempts),
    ]
}

/// Every command, to be narrowed and ordered: rows for [`row_command`].
fn select_commands() -> SelectStatement {
    Query::select()
        .columns(COMMAND_COLS)
        .from(C::Table)
        .to_owned()
}

/// `state = <state>`.
fn in_state(state: CommandState) -> SimpleExpr {
    Expr::col(C::State).eq(v(state.as_str()))
}

fn row_command(r: &impl SqlRow) -> StoreResult<DeviceCommand> {
    let sent_in = match (r.text("session_id")?, r.text("msg_id")?, r.text("cmd_id")?) {
        (Some(session_id), Some(msg_id), Some(cmd_id)) => Some(SentIn {
            session_id,
            msg_id,
            cmd_id,
        }),
        _ => None,
    };
    Ok(DeviceCommand {
        id: r.id("id")?,
        device: r.id("device_id")?,
        action: r.opt_id("action_id")?,
        verb: Verb::parse(&r.string("verb")?)?,
        uri: r.string("uri")?,
        format: r.text("format")?,
        data: r.text("data")?,
        state: CommandState::parse(&r.string("state")?)?,
        sent_in,
        status: r.opt_u16("status")?,
        result: r.text("result")?,
        created_at: r.at("created_at")?,
        sent_at: r.time("sent_at")?,
        answered_at: r.time("answered_at")?,
        attempts: r.u32("attempts")?,
    })
}

/// Queues `commands` (each must be queued) in `tx`.
pub(crate) async fn insert_commands<D: Dialect>(
    tx: &mut Tx<D>,
    commands: &[DeviceCommand],
) -> StoreResult<()> {
    let commands: Vec<&DeviceCommand> = commands.iter().collect();
    insert_all_commands(tx, &commands).await
}

/// [`insert_commands`] of commands borrowed from elsewhere (a plan's new actions), as multi-row
/// INSERTs in queue order.
pub(crate) async fn insert_all_commands<D: Dialect>(
    tx: &mut Tx<D>,
    commands: &[&DeviceCommand],
) -> StoreResult<()> {
    if let Some(c) = commands.iter().find(|c| c.state != CommandState::Queued) {
        return Err(StoreError::Conflict(format!(
            "command {} is not queued",
            c.id
        )));
    }
    insert_rows(tx, C::Table, COMMAND_COLS, commands, |c| command_values(c)).await
}

/// Reads (and on PostgreSQL locks) command `id` in `tx`.
async fn command_in<D: Dialect>(tx: &mut Tx<D>, id: CommandId) -> StoreResult<DeviceCommand> {
    let select = select_commands()
        .and_where(Expr::col(C::Id).eq(v(id)))
        .lock(LockType::Update)
        .to_owned();
    let row = built::<D>(&select)?
        .fetch_optional(tx.on())
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("command {id}")))?;
    row_command(&row)
}

impl<D: Dialect> SqlStore<D> {
    async fn commands(&self, select: &SelectStatement) -> StoreResult<Vec<DeviceCommand>> {
        let rows = built::<D>(select)?.fetch_all(self.db()).await?;
        rows.iter().map(row_command).collect()
    }
}

#[async_trait]
impl<D: Dialect> CommandQueue for SqlStore<D> {
    async fn check_in_view(
        &self,
        id: DeviceId,
        inventory: &[&str],
    ) -> StoreResult<Option<CheckInView>> {
        self.read_check_in_view(id, inventory).await
    }

    async fn enqueue(&self, commands: &[DeviceCommand]) -> StoreResult<()> {
        if commands.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        insert_commands(&mut tx, commands).await?;
        tx.commit().await
    }

    async fn command(&self, id: CommandId) -> StoreResult<Option<DeviceCommand>> {
        let select = select_commands()
            .and_where(Expr::col(C::Id).eq(v(id)))
            .to_owned();
        Ok(self.commands(&select).await?.into_iter().next())
    }

    async fn queued_commands(
        &self,
        device: DeviceId,
        limit: u32,
    ) -> StoreResult<Vec<DeviceCommand>> {
        let select = select_commands()
            .and_where(Expr::col(C::DeviceId).eq(v(device)))
            .and_where(in_state(CommandState::Queued))
            .order_by(C::Seq, Order::Asc)
            .limit(u64::from(limit))
            .to_owned();
        self.commands(&select).await
    }

    async fn sent_command_by_ref(
        &self,
        device: DeviceId,
        session_id: &str,
        msg_ref: &str,
        cmd_ref: &str,
    ) -> StoreResult<Option<DeviceCommand>> {
        let select = select_commands()
            .and_where(Expr::col(C::DeviceId).eq(v(device)))
            .and_where(Expr::col(C::SessionId).eq(v(session_id)))
            .and_where(Expr::col(C::MsgId).eq(v(msg_ref)))
            .and_where(Expr::col(C::CmdId).eq(v(cmd_ref)))
            .order_by(C::SentAt, Order::Desc)
            .limit(1)
            .to_owned();
        Ok(self.commands(&select).await?.into_iter().next())
    }

    async fn unanswered_commands(
        &self,
        device: DeviceId,
        except_session: Option<&str>,
    ) -> StoreResult<Vec<DeviceCommand>> {
        // An impossible session id keeps the query shape fixed when nothing is excluded.
        let select = select_commands()
            .and_where(Expr::col(C::DeviceId).eq(v(device)))
            .and_where(in_state(CommandState::Sent))
            .and_where(Expr::col(C::Status).is_null())
            .and_where(Expr::col(C::SessionId).ne(v(except_session.unwrap_or("\u{1}none"))))
            .order_by(C::SentAt, Order::Asc)
            .order_by(C::Seq, Order::Asc)
            .to_owned();
        self.commands(&select).await
    }

    async fn commands_of_action(&self, action: ActionId) -> StoreResult<Vec<DeviceCommand>> {
        let select = select_commands()
            .and_where(Expr::col(C::ActionId).eq(v(action)))
            .order_by(C::Seq, Order::Asc)
            .to_owned();
        self.commands(&select).await
    }

    async fn discard_queued_commands(&self, action: ActionId) -> StoreResult<u64> {
        let mut tx = self.begin().await?;
        let n = discard_queued_in(&mut tx, action).await?;
        tx.commit().await?;
        Ok(n)
    }

    async fn session_step(&self, step: SessionStep) -> StoreResult<StepOutcome> {
        let device = step.device;
        let foreign =
            |what: &str| StoreError::Conflict(format!("{what} is not for device {device}"));
        if step.device_update.as_ref().is_some_and(|d| d.id != device) {
            return Err(foreign("device update"));
        }
        let row_only = step.answers.is_empty()
            && step.action_updates.is_empty()
            && step.new_actions.is_empty()
            && step.requeue.is_empty()
            && step.enqueue.is_empty()
            && step.send.is_none();
        if row_only {
            let idle_done = StepOutcome {
                sent: Vec::new(),
                actions_sent: Vec::new(),
            };
            let step = match crate::idle_batch::batchable::<D>(step)? {
                Ok(idle) => {
                    self.idle_step_in_batch(idle).await?;
                    return Ok(idle_done);
                }
                Err(step) => step,
            };
            if step_in_one_statement(self, &row_of(&step), &step.inventory)
                .await?
                .is_some()
            {
                return Ok(idle_done);
            }
            if step.inventory.iter().any(|v| v.device != device) {
                return Err(foreign("an inventory value"));
            }
            self.step_in_batch(step).await?;
            return Ok(idle_done);
        }
        let mut tx = self.begin().await?;
        // First, in one statement: a message taken meanwhile (a concurrent duplicate) makes
        // this step nothing; else the device's new values and when it was seen.
        step_device_row_in(&mut tx, &self.shapes, row_of(&step)).await?;
        for a in &step.answers {
            let c = command_in(&mut tx, a.command).await?;
            if c.device != device {
                return Err(foreign(&format!("command {}", c.id)));
            }
            if c.state != CommandState::Sent {
                return Err(StoreError::Conflict(format!(
                    "command {} is {}, not sent",
                    c.id, c.state
                )));
            }
            let update = Query::update()
                .table(C::Table)
                .values([
                    (C::State, v(CommandState::after_status(a.status).as_str())),
                    (C::Status, v(a.status)),
                    (C::Result, v(a.result.clone())),
                    (C::AnsweredAt, v(step.at)),
                ])
                .and_where(Expr::col(C::Id).eq(v(c.id)))
                .to_owned();
            built::<D>(&update)?.execute(tx.on()).await?;
        }
        if step.inventory.iter().any(|v| v.device != device) {
            return Err(foreign("an inventory value"));
        }
        upsert_inventory_in(&mut tx, &self.shapes, &step.inventory).await?;
        for u in &step.action_updates {
            if u.action.device != device {
                return Err(foreign(&format!("action {}", u.action.id)));
            }
            update_action_in(&mut tx, u.expected, &u.action).await?;
        }
        for a in &step.new_actions {
            if a.device != device {
                return Err(foreign(&format!("action {}", a.id)));
            }
            insert_action_in(&mut tx, a, &[]).await?;
        }
        for id in &step.requeue {
            let c = command_in(&mut tx, *id).await?;
            if c.device != device {
                return Err(foreign(&format!("command {id}")));
            }
            if c.state != CommandState::Sent || c.status.is_some() {
                return Err(StoreError::Conflict(format!(
                    "command {id} is not sent-unanswered"
                )));
            }
            let update = Query::update()
                .table(C::Table)
                .values([
                    (C::State, v(CommandState::Queued.as_str())),
                    (C::SessionId, Keyword::Null.into()),
                    (C::MsgId, Keyword::Null.into()),
                    (C::CmdId, Keyword::Null.into()),
                ])
                .and_where(Expr::col(C::Id).eq(v(*id)))
                .to_owned();
            built::<D>(&update)?.execute(tx.on()).await?;
        }
        if step.enqueue.iter().any(|c| c.device != device) {
            return Err(foreign("an enqueued command"));
        }
        insert_commands(&mut tx, &step.enqueue).await?;

        let mut outcome = StepOutcome {
            sent: Vec::new(),
            actions_sent: Vec::new(),
        };
        if let Some(batch) = &step.send {
            let mut select = select_commands()
                .and_where(Expr::col(C::DeviceId).eq(v(device)))
                .and_where(in_state(CommandState::Queued))
                .order_by(C::Seq, Order::Asc)
                .limit(u64::from(batch.limit))
                .to_owned();
            // Held actions' commands stay queued (NULL action_id: never held).
            if !step.held_actions.is_empty() {
                let held = step.held_actions.iter().map(|a| v(*a));
                select.cond_where(
                    Cond::any()
                        .add(Expr::col(C::ActionId).is_null())
                        .add(Expr::col(C::ActionId).is_not_in(held)),
                );
            }
            let rows = built_locked::<D>(&select, D::TAKE_LOCK)?
                .fetch_all(tx.on())
                .await?;
            for (i, row) in rows.iter().enumerate() {
                let mut c = row_command(row)?;
                let cmd_id = (u64::from(batch.first_cmd_id) + i as u64).to_string();
                // `state = 'queued'` again: never take a command another transaction took meanwhile.
                let update = Query::update()
                    .table(C::Table)
                    .values([
                        (C::State, v(CommandState::Sent.as_str())),
                        (C::SessionId, v(step.session_id.clone())),
                        (C::MsgId, v(batch.msg_id.clone())),
                        (C::CmdId, v(cmd_id.clone())),
                        (C::SentAt, v(step.at)),
                        (C::Attempts, Expr::col(C::Attempts).add(1)),
                    ])
                    .and_where(Expr::col(C::Id).eq(v(c.id)))
                    .and_where(in_state(CommandState::Queued))
                    .to_owned();
                let taken = built::<D>(&update)?.execute(tx.on()).await?;
                if taken == 0 {
                    continue;
                }
                c.state = CommandState::Sent;
                c.sent_in = Some(SentIn {
                    session_id: step.session_id.clone(),
                    msg_id: batch.msg_id.clone(),
                    cmd_id,
                });
                c.sent_at = Some(step.at);
                c.attempts += 1;
                if let Some(action_id) = c.action {
                    let mut action = action_in(&mut tx, action_id).await?;
                    let before = action.state;
                    if action_after_send(&mut action, &c, step.at)? {
                        update_action_in(&mut tx, before, &action).await?;
                        outcome.actions_sent.push(action);
                    }
                }
                outcome.sent.push(c);
            }
        }
        tx.commit().await?;
        Ok(outcome)
    }
}
