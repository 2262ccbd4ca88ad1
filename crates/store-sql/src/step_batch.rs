//! Idle check-in steps of many PCs in one transaction where a step cannot be one statement
//! (SQLite: [`crate::dialect::Dialect::WRITABLE_CTE`] is false). Each step still commits before
//! its check-in is answered, but many check-ins arriving together share one `BEGIN IMMEDIATE`
//! and one `COMMIT`, and the pages they all change (the newest end of the last-seen index, the
//! inventory's) are written to the log once per batch instead of once per check-in: the commit
//! was the largest single cost of an idle check-in on SQLite (docs/benchmarks.md, session 12).
//!
//! Batches are gathered as [`crate::gather`] does. A step that finds its message taken meanwhile, or its device gone,
//! writes nothing and gets that error alone; any other error rolls the batch back and each of
//! its steps is written again in a transaction of its own, so one step never fails another.

use redeploy_core::store::{SessionStep, StoreError, StoreResult};

use crate::devices::{step_device_row_in, DeviceRowStep};
use crate::dialect::Dialect;
use crate::gather::{self, Gather};
use crate::inventory::upsert_inventory_in;
use crate::query::Shapes;
use crate::{SqlStore, Tx};

/// Most steps one transaction writes.
const MAX_BATCH: usize = 256;

/// The steps waiting for a batch.
pub(crate) type StepBatches = Gather<SessionStep, ()>;

type Waiting = gather::Waiting<SessionStep, ()>;

impl<D: Dialect> SqlStore<D> {
    /// Writes `step` (its device row and inventory values only) in a batch with the steps
    /// waiting alongside it; returns once its batch committed.
    pub(crate) async fn step_in_batch(&self, step: SessionStep) -> StoreResult<()> {
        let store = self.clone();
        self.steps
            .submit(step, MAX_BATCH, |batch| async move {
                store.write_batch(batch).await
            })
            .await
    }

    async fn write_batch(&self, batch: Vec<Waiting>) {
        match self.try_batch(&batch).await {
            Ok(results) => {
                for (w, r) in batch.into_iter().zip(results) {
                    let _ = w.done.send(r);
                }
            }
            Err(_) => {
                for w in batch {
                    let written = self.step_alone(&w.item).await;
                    let _ = w.done.send(written);
                }
            }
        }
    }

    /// Every step of `batch` in one transaction: each one's own result, or the error that
    /// rolled the whole batch back.
    async fn try_batch(&self, batch: &[Waiting]) -> StoreResult<Vec<StoreResult<()>>> {
        let mut tx = self.begin().await?;
        let mut results = Vec::with_capacity(batch.len());
        for w in batch {
            match write_step(&mut tx, &self.shapes, &w.item).await {
                // Nothing written: the step alone is refused.
                Err(e @ (StoreError::SequenceMoved | StoreError::NotFound(_))) => {
                    results.push(Err(e))
                }
                Err(e) => return Err(e),
                Ok(()) => results.push(Ok(())),
            }
        }
        tx.commit().await?;
        Ok(results)
    }

    async fn step_alone(&self, step: &SessionStep) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        write_step(&mut tx, &self.shapes, step).await?;
        tx.commit().await
    }
}

/// The device row, then (only if it was written) the inventory values.
async fn write_step<D: Dialect>(
    tx: &mut Tx<D>,
    shapes: &Shapes,
    step: &SessionStep,
) -> StoreResult<()> {
    step_device_row_in(tx, shapes, row_of(step)).await?;
    upsert_inventory_in(tx, shapes, &step.inventory).await
}

/// What `step` changes in its device row.
pub(crate) fn row_of(step: &SessionStep) -> DeviceRowStep<'_> {
    DeviceRowStep {
        id: step.device,
        sequence: step.sequence.as_ref(),
        update: step.device_update.as_ref(),
        was: step.device_was.as_ref(),
        seen: step.seen.then(|| (step.at, step.current_user.clone())),
    }
}
