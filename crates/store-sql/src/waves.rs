//! Batches in waves: the later waves of a bulk request, due in order and released once, and the
//! count of actions a daily cap limits.

use async_trait::async_trait;
use redeploy_core::action::ActionKind;
use redeploy_core::ids::{BatchId, DeviceId};
use redeploy_core::store::{StoreResult, Wave, WaveStore};
use time::OffsetDateTime;

use crate::actions::count_created_on;
use crate::dialect::{Dialect, On, SqlRow};
use crate::sql::{placeholders, sql, RowExt};
use crate::SqlStore;

const WAVE_COLS: &str =
    "batch_id, wave_index, kind, actor, devices, due_at, released_at, daily_cap";

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
    sql(format!(
        "INSERT INTO batch_waves ({WAVE_COLS}) VALUES ({})",
        placeholders(1, 8)
    ))
    .bind(wave.batch)
    .bind(wave.index)
    .bind(wave.kind.code())
    .bind(wave.actor.clone())
    .bind(devices)
    .bind(wave.due_at)
    .bind(wave.released_at)
    .bind(wave.daily_cap)
    .execute(on)
    .await?;
    Ok(())
}

#[async_trait]
impl<D: Dialect> WaveStore for SqlStore<D> {
    async fn save_wave(&self, wave: &Wave) -> StoreResult<()> {
        insert_wave_in(self.db(), wave).await
    }

    async fn due_waves(&self, now: OffsetDateTime, limit: u32) -> StoreResult<Vec<Wave>> {
        let rows = sql(format!(
            "SELECT {WAVE_COLS} FROM batch_waves WHERE released_at IS NULL AND due_at <= $1 \
             ORDER BY due_at, batch_id, wave_index LIMIT $2"
        ))
        .bind(now)
        .bind(limit)
        .fetch_all(self.db())
        .await?;
        rows.iter().map(row_wave).collect()
    }

    async fn waves_of_batch(&self, batch: BatchId) -> StoreResult<Vec<Wave>> {
        let rows = sql(format!(
            "SELECT {WAVE_COLS} FROM batch_waves WHERE batch_id = $1 ORDER BY wave_index"
        ))
        .bind(batch)
        .fetch_all(self.db())
        .await?;
        rows.iter().map(row_wave).collect()
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
