//! The command queue and device sessions: commands queued per device, taken in order (each
//! exactly once, even across processes), matched to the device's answers by their refs; one
//! session step commits a whole message's effects in one transaction.

use async_trait::async_trait;
use redeploy_core::action::action_after_send;
use redeploy_core::command::{CommandState, DeviceCommand, SentIn, Verb};
use redeploy_core::ids::{ActionId, CommandId, DeviceId};
use redeploy_core::store::{CommandQueue, SessionStep, StepOutcome, StoreError, StoreResult};

use crate::actions::{action_in, discard_queued_in, update_action_in};
use crate::devices::{record_seen_on, update_device_in};
use crate::dialect::{Arg, Dialect, SqlRow};
use crate::inventory::upsert_inventory_in;
use crate::sql::{placeholders, sql, RowExt};
use crate::{SqlStore, Tx};

const COMMAND_COLS: &str = "id, device_id, action_id, verb, uri, format, data, state, session_id, \
     msg_id, cmd_id, status, result, created_at, sent_at, answered_at, attempts";

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
    let text = format!(
        "INSERT INTO commands ({COMMAND_COLS}) VALUES ({})",
        placeholders(1, 17)
    );
    for c in commands {
        if c.state != CommandState::Queued {
            return Err(StoreError::Conflict(format!(
                "command {} is not queued",
                c.id
            )));
        }
        let sent = c.sent_in.as_ref();
        sql(text.as_str())
            .bind(c.id)
            .bind(c.device)
            .bind(c.action)
            .bind(c.verb.as_str())
            .bind(c.uri.clone())
            .bind(c.format.clone())
            .bind(c.data.clone())
            .bind(c.state.as_str())
            .bind(sent.map(|s| s.session_id.clone()))
            .bind(sent.map(|s| s.msg_id.clone()))
            .bind(sent.map(|s| s.cmd_id.clone()))
            .bind(c.status)
            .bind(c.result.clone())
            .bind(c.created_at)
            .bind(c.sent_at)
            .bind(c.answered_at)
            .bind(c.attempts)
            .execute(tx.on())
            .await?;
    }
    Ok(())
}

async fn command_in<D: Dialect>(tx: &mut Tx<D>, id: CommandId) -> StoreResult<DeviceCommand> {
    let row = sql(format!(
        "SELECT {COMMAND_COLS} FROM commands WHERE id = $1{}",
        D::FOR_UPDATE
    ))
    .bind(id)
    .fetch_optional(tx.on())
    .await?
    .ok_or_else(|| StoreError::NotFound(format!("command {id}")))?;
    row_command(&row)
}

impl<D: Dialect> SqlStore<D> {
    async fn commands_where(&self, cond: &str, args: Vec<Arg>) -> StoreResult<Vec<DeviceCommand>> {
        let rows = sql(format!("SELECT {COMMAND_COLS} FROM commands WHERE {cond}"))
            .bind_all(args)
            .fetch_all(self.db())
            .await?;
        rows.iter().map(row_command).collect()
    }
}

#[async_trait]
impl<D: Dialect> CommandQueue for SqlStore<D> {
    async fn enqueue(&self, commands: &[DeviceCommand]) -> StoreResult<()> {
        if commands.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        insert_commands(&mut tx, commands).await?;
        tx.commit().await
    }

    async fn command(&self, id: CommandId) -> StoreResult<Option<DeviceCommand>> {
        Ok(self
            .commands_where("id = $1", vec![id.into()])
            .await?
            .into_iter()
            .next())
    }

    async fn queued_commands(
        &self,
        device: DeviceId,
        limit: u32,
    ) -> StoreResult<Vec<DeviceCommand>> {
        self.commands_where(
            "device_id = $1 AND state = 'queued' ORDER BY seq LIMIT $2",
            vec![device.into(), limit.into()],
        )
        .await
    }

    async fn sent_command_by_ref(
        &self,
        device: DeviceId,
        session_id: &str,
        msg_ref: &str,
        cmd_ref: &str,
    ) -> StoreResult<Option<DeviceCommand>> {
        let found = self
            .commands_where(
                "device_id = $1 AND session_id = $2 AND msg_id = $3 AND cmd_id = $4 \
                 ORDER BY sent_at DESC LIMIT 1",
                vec![
                    device.into(),
                    session_id.into(),
                    msg_ref.into(),
                    cmd_ref.into(),
                ],
            )
            .await?;
        Ok(found.into_iter().next())
    }

    async fn unanswered_commands(
        &self,
        device: DeviceId,
        except_session: Option<&str>,
    ) -> StoreResult<Vec<DeviceCommand>> {
        // An impossible session id keeps the query shape fixed when nothing is excluded.
        self.commands_where(
            "device_id = $1 AND state = 'sent' AND status IS NULL AND session_id <> $2 \
             ORDER BY sent_at, seq",
            vec![device.into(), except_session.unwrap_or("\u{1}none").into()],
        )
        .await
    }

    async fn commands_of_action(&self, action: ActionId) -> StoreResult<Vec<DeviceCommand>> {
        self.commands_where("action_id = $1 ORDER BY seq", vec![action.into()])
            .await
    }

    async fn discard_queued_commands(&self, action: ActionId) -> StoreResult<u64> {
        let mut tx = self.begin().await?;
        let n = discard_queued_in(&mut tx, action).await?;
        tx.commit().await?;
        Ok(n)
    }

    async fn session_step(&self, step: SessionStep) -> StoreResult<StepOutcome> {
        let mut tx = self.begin().await?;
        let device = step.device;
        let foreign =
            |what: &str| StoreError::Conflict(format!("{what} is not for device {device}"));
        if let Some(d) = &step.device_update {
            if d.id != device {
                return Err(foreign("device update"));
            }
            update_device_in(&mut tx, d).await?;
        }
        if step.seen {
            record_seen_on(tx.on(), device, step.at, step.current_user.clone()).await?;
        }
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
            sql(
                "UPDATE commands SET state = $2, status = $3, result = $4, answered_at = $5 \
                 WHERE id = $1",
            )
            .bind(c.id)
            .bind(CommandState::after_status(a.status).as_str())
            .bind(a.status)
            .bind(a.result.clone())
            .bind(step.at)
            .execute(tx.on())
            .await?;
        }
        if step.inventory.iter().any(|v| v.device != device) {
            return Err(foreign("an inventory value"));
        }
        upsert_inventory_in(&mut tx, &step.inventory).await?;
        for u in &step.action_updates {
            if u.action.device != device {
                return Err(foreign(&format!("action {}", u.action.id)));
            }
            update_action_in(&mut tx, u.expected, &u.action).await?;
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
            sql(
                "UPDATE commands SET state = 'queued', session_id = NULL, msg_id = NULL, \
                 cmd_id = NULL WHERE id = $1",
            )
            .bind(*id)
            .execute(tx.on())
            .await?;
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
            // Held actions' commands stay queued (NULL action_id: never held).
            let held = if step.held_actions.is_empty() {
                String::new()
            } else {
                format!(
                    " AND (action_id IS NULL OR action_id NOT IN ({}))",
                    placeholders(3, step.held_actions.len())
                )
            };
            let rows = sql(format!(
                "SELECT {COMMAND_COLS} FROM commands WHERE device_id = $1 AND state = 'queued'\
                 {held} ORDER BY seq LIMIT $2{}",
                D::TAKE_LOCK
            ))
            .bind(device)
            .bind(batch.limit)
            .bind_all(step.held_actions.iter().copied())
            .fetch_all(tx.on())
            .await?;
            for (i, row) in rows.iter().enumerate() {
                let mut c = row_command(row)?;
                let cmd_id = (u64::from(batch.first_cmd_id) + i as u64).to_string();
                // `state = 'queued'` again: never take a command another transaction took meanwhile.
                let taken = sql(
                    "UPDATE commands SET state = 'sent', session_id = $2, msg_id = $3, \
                     cmd_id = $4, sent_at = $5, attempts = attempts + 1 \
                     WHERE id = $1 AND state = 'queued'",
                )
                .bind(c.id)
                .bind(step.session_id.clone())
                .bind(batch.msg_id.clone())
                .bind(cmd_id.clone())
                .bind(step.at)
                .execute(tx.on())
                .await?;
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
