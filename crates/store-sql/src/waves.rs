//! Batches in waves: the later waves of a bulk request, due in order and released once, and the
//! count of actions a daily cap limits.

use async_trait::async_trait;
use redeploy_core::action::ActionKind;
use redeploy_core::ids::{BatchId, DeviceId};
use std::collections::HashMap;

use redeploy_core::store::{
    BatchCounts, BatchRecord, BatchState, Cursor, Page, StoreResult, WaitingDevice, Wave, WaveStore,
};
use sea_query::{Expr, Order, Query, SelectStatement};
use time::OffsetDateTime;

use crate::actions::count_created_on;
use crate::dialect::{Dialect, On, SqlRow};
use crate::query::{built, insert_row, v};
use crate::schema::BatchWaves as B;
use crate::sql::RowExt;
use crate::SqlStore;

const WAVE_COLS: [B; 8] = [
    B::BatchId,
    B::WaveIndex,
    B::Kind,
    B::Actor,
    B::Devices,
    B::DueAt,
    B::ReleasedAt,
    B::DailyCap,
];

fn row_wave(r: &impl SqlRow) -> StoreResult<Wave> {
    let devices = r
        .string("devices")?
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| Ok(DeviceId::parse(s)?))
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(Wave {
        batch: r.id("batch_id")?,
        index: r.u32("wave_index")?,
        kind: ActionKind::from_code(&r.string("kind")?)?,
        actor: r.string("actor")?,
        devices,
        due_at: r.at("due_at")?,
        released_at: r.time("released_at")?,
        daily_cap: r.opt_u32("daily_cap")?,
    })
}

/// Stores `wave` (devices as a comma-separated list).
pub(crate) async fn insert_wave_in<D: Dialect>(on: On<'_, D>, wave: &Wave) -> StoreResult<()> {
    let devices = wave
        .devices
        .iter()
        .map(DeviceId::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let insert = insert_row(
        B::Table,
        WAVE_COLS,
        [
            v(wave.batch),
            v(wave.index),
            v(wave.kind.code()),
            v(wave.actor.clone()),
            v(devices),
            v(wave.due_at),
            v(wave.released_at),
            v(wave.daily_cap),
        ],
    )?;
    built::<D>(&insert)?.execute(on).await?;
    Ok(())
}

/// Every wave, to be narrowed and ordered.
fn select_waves() -> SelectStatement {
    Query::select().columns(WAVE_COLS).from(B::Table).to_owned()
}

impl<D: Dialect> SqlStore<D> {
    async fn waves(&self, select: &SelectStatement) -> StoreResult<Vec<Wave>> {
        let rows = built::<D>(select)?.fetch_all(self.db()).await?;
        rows.iter().map(row_wave).collect()
    }
}

#[async_trait]
impl<D: Dialect> WaveStore for SqlStore<D> {
    async fn save_wave(&self, wave: &Wave) -> StoreResult<()> {
        insert_wave_in(self.db(), wave).await
    }

    async fn due_waves(&self, now: OffsetDateTime, limit: u32) -> StoreResult<Vec<Wave>> {
        let select = select_waves()
            .and_where(Expr::col(B::ReleasedAt).is_null())
            .and_where(Expr::col(B::DueAt).lte(v(now)))
            .and_where(
                Expr::col(B::BatchId).not_in_subquery(crate::batches::batches_in(&[
                    BatchState::Paused,
                    BatchState::Canceled,
                ])),
            )
            .order_by(B::DueAt, Order::Asc)
            .order_by(B::BatchId, Order::Asc)
            .order_by(B::WaveIndex, Order::Asc)
            .limit(u64::from(limit))
            .to_owned();
        self.waves(&select).await
    }

    async fn waves_of_batch(&self, batch: BatchId) -> StoreResult<Vec<Wave>> {
        let select = select_waves()
            .and_where(Expr::col(B::BatchId).eq(v(batch)))
            .order_by(B::WaveIndex, Order::Asc)
            .to_owned();
        self.waves(&select).await
    }

    async fn batch_record(&self, id: BatchId) -> StoreResult<Option<BatchRecord>> {
        crate::batches::batch_record(self, id).await
    }

    async fn list_batches(
        &self,
        limit: u32,
        cursor: Option<&Cursor>,
    ) -> StoreResult<Page<BatchRecord>> {
        crate::batches::list_batches(self, limit, cursor).await
    }

    async fn batch_counts(
        &self,
        batches: &[BatchId],
    ) -> StoreResult<HashMap<BatchId, BatchCounts>> {
        crate::batches::batch_counts(self, batches).await
    }

    async fn waiting_wave_devices(
        &self,
        only: Option<&[DeviceId]>,
    ) -> StoreResult<Vec<WaitingDevice>> {
        crate::batches::waiting_wave_devices(self, only).await
    }

    async fn count_actions_created(
        &self,
        kinds: &[ActionKind],
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> StoreResult<u64> {
        count_created_on(self.db(), kinds, from, to).await
    }
}
