//! Idle check-in steps of many PCs written by one statement where a statement is a round trip
//! to another process and may change rows inside a `WITH` clause (PostgreSQL:
//! [`crate::dialect::Dialect::BATCHED_READS`] and [`crate::dialect::Dialect::WRITABLE_CTE`]).
//! An idle PC's step sets when it was seen, by whom, and the message it took (a compare-and-set
//! on the one before) and upserts its session start's inventory values; steps arriving while
//! one is in flight are written together — the device rows by one `UPDATE … FROM (VALUES …)`,
//! their inventory by one upsert reading the rows that UPDATE changed — in autocommit, so each
//! step is still committed before its check-in is answered (docs/benchmarks.md, session 13).
//!
//! A statement holds distinct devices only (two messages of one PC in one UPDATE would change its
//! row once, and neither would know which); the steps of one statement set the same columns and
//! upsert as many values. A step whose message was taken meanwhile (or whose device is gone) finds
//! no row and gets [`StoreError::SequenceMoved`] alone; any other error writes each step of the
//! statement again on its own.

use std::collections::HashSet;

use redeploy_core::ids::DeviceId;
use redeploy_core::store::{SessionStep, StoreError, StoreResult};
use sea_query::Iden;

use crate::check_in::step_in_one_statement;
use crate::devices::RowUpdate;
use crate::dialect::{Arg, Dialect};
use crate::gather::{self, Gather};
use crate::inventory::latest_of;
use crate::schema::Devices as Dv;
use crate::sql::RowExt;
use crate::step_batch::row_of;
use crate::SqlStore;

/// Most steps one statement writes.
const MAX_BATCH: usize = 64;

/// The idle steps waiting.
pub(crate) type IdleBatches = Gather<IdleStep, ()>;

type Waiting = gather::Waiting<IdleStep, ()>;

/// A [`batchable`] step with its device row's update, worked out once.
pub(crate) struct IdleStep {
    step: SessionStep,
    update: RowUpdate,
}

impl IdleStep {
    /// Its statement shape: the row update's (returning or not does not matter here) and how
    /// many inventory values it upserts.
    fn shape(&self) -> (u64, usize) {
        (
            self.update.shape(false),
            latest_of(&self.step.inventory).len(),
        )
    }
}

/// The columns an idle step may set, with their PostgreSQL types (a `VALUES` list types its
/// columns from its first row: each is cast).
const IDLE_COLS: [(Dv, &str); 4] = [
    (Dv::LastSeen, "TIMESTAMPTZ"),
    (Dv::CurrentUserName, "TEXT"),
    (Dv::DmSessionId, "TEXT"),
    (Dv::DmMsgId, "BIGINT"),
];

fn sql_type(col: Dv) -> Option<&'static str> {
    IDLE_COLS.iter().find(|(c, _)| *c == col).map(|(_, t)| *t)
}

/// `step` (a step that writes its device row and inventory only) with its row update, if it
/// can be written with others: it takes a message by compare-and-set, sets only
/// [`IDLE_COLS`], and its values are its own device's.
pub(crate) fn batchable<D: Dialect>(
    step: SessionStep,
) -> StoreResult<Result<IdleStep, SessionStep>> {
    if !(D::BATCHED_READS && D::WRITABLE_CTE)
        || step.sequence.is_none()
        || step.inventory.iter().any(|i| i.device != step.device)
    {
        return Ok(Err(step));
    }
    match RowUpdate::of(&row_of(&step))? {
        Some(update) if update.set.iter().all(|(col, _)| sql_type(*col).is_some()) => {
            Ok(Ok(IdleStep { step, update }))
        }
        _ => Ok(Err(step)),
    }
}

impl<D: Dialect> SqlStore<D> {
    /// Writes `step` with the idle steps waiting alongside it; returns once its statement has
    /// run.
    pub(crate) async fn idle_step_in_batch(&self, step: IdleStep) -> StoreResult<()> {
        let store = self.clone();
        self.idle_steps
            .submit(step, MAX_BATCH, |batch| async move {
                store.write_idle_steps(batch).await
            })
            .await
    }

    async fn write_idle_steps(&self, mut batch: Vec<Waiting>) {
        while !batch.is_empty() {
            // One statement's steps: the first step's shape, distinct devices.
            let shape = batch[0].item.shape();
            let mut devices = HashSet::new();
            let (mut these, mut rest): (Vec<_>, Vec<_>) = batch
                .into_iter()
                .partition(|w| w.item.shape() == shape && devices.insert(w.item.step.device));
            // A power of two of them: each size is a statement text kept and prepared on every
            // pooled connection, so few sizes (a size per count held 40 MiB more at 64 in flight).
            let size = 1 << these.len().ilog2();
            rest.extend(these.drain(size..));
            batch = rest;
            if these.len() == 1 {
                self.each_alone(these).await;
                continue;
            }
            match self.write_together(&these).await {
                Ok(stepped) => {
                    for w in these {
                        let written = if stepped.contains(&w.item.step.device) {
                            Ok(())
                        } else {
                            Err(StoreError::SequenceMoved)
                        };
                        let _ = w.done.send(written);
                    }
                }
                Err(_) => self.each_alone(these).await,
            }
        }
    }

    /// Writes each of `these` by its own statement and answers it.
    async fn each_alone(&self, these: Vec<Waiting>) {
        for w in these {
            let step = &w.item.step;
            let written = match step_in_one_statement(self, &row_of(step), &step.inventory).await {
                Ok(Some(())) => Ok(()),
                Ok(None) => Err(StoreError::Backend("an idle step that is not one".into())),
                Err(e) => Err(e),
            };
            let _ = w.done.send(written);
        }
    }

    /// The steps of `these` (same shape, distinct devices) in one statement: the devices whose
    /// row it changed.
    async fn write_together(&self, these: &[Waiting]) -> StoreResult<HashSet<DeviceId>> {
        let (shape, count) = these[0].item.shape();
        let key = shape | (count as u64) << 48 | (these.len() as u64) << 56;
        let mut args = Vec::new();
        for w in these {
            let update = &w.item.update;
            args.push(Arg::from(w.item.step.device));
            args.extend(update.set.iter().map(|(_, a)| a.clone()));
            let (session, msg) = update.after.clone().unwrap_or_default();
            args.extend([Arg::from(session), Arg::from(msg)]);
        }
        for w in these {
            for value in latest_of(&w.item.step.inventory) {
                args.extend([
                    Arg::from(value.device),
                    Arg::Text(Some(value.uri.clone())),
                    Arg::Text(Some(value.value.clone())),
                    Arg::Text(value.format.clone()),
                    Arg::Time(Some(value.at)),
                ]);
            }
        }
        let columns: Vec<Dv> = these[0].item.update.set.iter().map(|(c, _)| *c).collect();
        let sql = self.shapes.text(("idle_steps", key), args, || {
            statement::<D>(&columns, these.len(), count)
        });
        let rows = sql
            .fetch_all_held::<D>(&self.held.idle_steps, self.pool())
            .await?;
        rows.iter().map(|r| r.id("id")).collect()
    }
}

/// The text: `steps` rows of (id, the columns, the expected session and message) feeding the
/// UPDATE, then `steps × values` inventory rows upserted for the devices it changed.
fn statement<D: Dialect>(columns: &[Dv], steps: usize, values: usize) -> String {
    let mut n = 0;
    let mut p = |ty: &str| {
        n += 1;
        format!("CAST({} AS {ty})", D::placeholder(n))
    };
    let mut rows = Vec::with_capacity(steps);
    for _ in 0..steps {
        let mut row = vec![p(D::ID_TYPE)];
        for col in columns {
            row.push(p(sql_type(*col).unwrap_or("TEXT")));
        }
        row.push(p("TEXT"));
        row.push(p("BIGINT"));
        rows.push(format!("({})", row.join(", ")));
    }
    let names: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
    let set: Vec<String> = names.iter().map(|c| format!("{c} = v.{c}")).collect();
    let (session, msg) = (Dv::DmSessionId.to_string(), Dv::DmMsgId.to_string());
    let mut text = format!(
        "WITH v (id, {}, expected_session, expected_msg) AS (VALUES {}), \
         step AS (UPDATE devices SET {} FROM v WHERE devices.id = v.id \
         AND devices.{session} = v.expected_session AND devices.{msg} = v.expected_msg \
         RETURNING devices.id)",
        names.join(", "),
        rows.join(", "),
        set.join(", "),
    );
    if values > 0 {
        let mut inventory = Vec::with_capacity(steps * values);
        for _ in 0..steps * values {
            inventory.push(format!(
                "({}, {}, {}, {}, {})",
                p(D::ID_TYPE),
                p("TEXT"),
                p("TEXT"),
                p("TEXT"),
                p("TIMESTAMPTZ")
            ));
        }
        // The same upsert as `upsert_inventory_in`: a value never replaces a newer one.
        text.push_str(&format!(
            ", inv AS (INSERT INTO inventory (device_id, uri, value, format, at) \
             SELECT u.device_id, u.uri, u.value, u.format, u.at FROM (VALUES {}) \
             AS u (device_id, uri, value, format, at) JOIN step ON step.id = u.device_id \
             ON CONFLICT (device_id, uri) DO UPDATE SET value = excluded.value, \
             format = excluded.format, at = excluded.at WHERE excluded.at >= inventory.at)",
            inventory.join(", ")
        ));
    }
    text.push_str(" SELECT id FROM step");
    text
}
