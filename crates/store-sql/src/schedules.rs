//! Schedules (recurring bulk requests with a maintenance window, claimed by `next_run`) and the
//! maintenance windows of the batches they fired.

use async_trait::async_trait;
use redeploy_core::action::{ActionKind, ActionState};
use redeploy_core::ids::{ActionId, BatchId, DeviceId, ScheduleId};
use redeploy_core::schedule::{
    seconds_of_day, time_of_seconds, BatchWindow, MaintenanceWindow, Recurrence, Schedule,
};
use redeploy_core::store::{ScheduleStore, StoreError, StoreResult};
use time::OffsetDateTime;

use crate::dialect::{Arg, Dialect, On, SqlRow};
use crate::sql::{placeholders, sql, RowExt};
use crate::SqlStore;

const SCHEDULE_COLS: &[&str] = &[
    "id",
    "name",
    "group_id",
    "kind",
    "tz",
    "recurrence",
    "window_start",
    "window_end",
    "enabled",
    "next_run",
    "last_run",
];

/// The values of [`SCHEDULE_COLS`], in order.
fn schedule_args(s: &Schedule) -> Vec<Arg> {
    vec![
        s.id.into(),
        s.name.clone().into(),
        s.group.into(),
        s.kind.code().into(),
        s.tz.name().into(),
        s.recurrence.to_text().into(),
        s.window.map(|w| seconds_of_day(w.start)).into(),
        s.window.map(|w| seconds_of_day(w.end)).into(),
        s.enabled.into(),
        s.next_run.into(),
        s.last_run.into(),
    ]
}

/// The IANA time zone in column `tz`.
fn time_zone<Z: std::str::FromStr>(r: &impl SqlRow) -> StoreResult<Z> {
    let name = r.string("tz")?;
    name.parse()
        .map_err(|_| StoreError::Corrupt(format!("time zone {name:?}")))
}

fn row_schedule(r: &impl SqlRow) -> StoreResult<Schedule> {
    let window = match (r.int("window_start")?, r.int("window_end")?) {
        (Some(start), Some(end)) => Some(MaintenanceWindow {
            start: time_of_seconds(start)?,
            end: time_of_seconds(end)?,
        }),
        _ => None,
    };
    Ok(Schedule {
        id: r.id("id")?,
        name: r.string("name")?,
        group: r.id("group_id")?,
        kind: ActionKind::from_code(&r.string("kind")?)?,
        tz: time_zone(r)?,
        recurrence: Recurrence::from_text(&r.string("recurrence")?)?,
        window,
        enabled: r.flag("enabled")?,
        next_run: r.time("next_run")?,
        last_run: r.time("last_run")?,
    })
}

fn row_batch_window(r: &impl SqlRow) -> StoreResult<BatchWindow> {
    Ok(BatchWindow {
        window: MaintenanceWindow {
            start: time_of_seconds(r.i64("window_start")?)?,
            end: time_of_seconds(r.i64("window_end")?)?,
        },
        tz: time_zone(r)?,
    })
}

/// Stores the maintenance window of `batch`.
pub(crate) async fn insert_batch_window_in<D: Dialect>(
    on: On<'_, D>,
    batch: BatchId,
    window: &BatchWindow,
) -> StoreResult<()> {
    sql(
        "INSERT INTO batch_windows (batch_id, window_start, window_end, tz) \
         VALUES ($1, $2, $3, $4)",
    )
    .bind(batch)
    .bind(seconds_of_day(window.window.start))
    .bind(seconds_of_day(window.window.end))
    .bind(window.tz.name())
    .execute(on)
    .await?;
    Ok(())
}

impl<D: Dialect> SqlStore<D> {
    async fn schedules_where(&self, tail: &str, args: Vec<Arg>) -> StoreResult<Vec<Schedule>> {
        let rows = sql(format!(
            "SELECT {} FROM schedules {tail}",
            SCHEDULE_COLS.join(", ")
        ))
        .bind_all(args)
        .fetch_all(self.db())
        .await?;
        rows.iter().map(row_schedule).collect()
    }
}

#[async_trait]
impl<D: Dialect> ScheduleStore for SqlStore<D> {
    async fn create_schedule(&self, schedule: &Schedule) -> StoreResult<()> {
        sql(format!(
            "INSERT INTO schedules ({}) VALUES ({})",
            SCHEDULE_COLS.join(", "),
            placeholders(1, SCHEDULE_COLS.len())
        ))
        .bind_all(schedule_args(schedule))
        .execute(self.db())
        .await?;
        Ok(())
    }

    async fn schedule(&self, id: ScheduleId) -> StoreResult<Option<Schedule>> {
        Ok(self
            .schedules_where("WHERE id = $1", vec![id.into()])
            .await?
            .into_iter()
            .next())
    }

    async fn list_schedules(&self) -> StoreResult<Vec<Schedule>> {
        self.schedules_where("ORDER BY name, id", Vec::new()).await
    }

    async fn update_schedule(&self, schedule: &Schedule) -> StoreResult<()> {
        let sets: Vec<String> = SCHEDULE_COLS
            .iter()
            .enumerate()
            .skip(1)
            .map(|(i, c)| format!("{c} = ${}", i + 1))
            .collect();
        let changed = sql(format!(
            "UPDATE schedules SET {} WHERE id = $1",
            sets.join(", ")
        ))
        .bind_all(schedule_args(schedule))
        .execute(self.db())
        .await?;
        if changed == 0 {
            return Err(StoreError::NotFound(format!("schedule {}", schedule.id)));
        }
        Ok(())
    }

    async fn delete_schedule(&self, id: ScheduleId) -> StoreResult<()> {
        let deleted = sql("DELETE FROM schedules WHERE id = $1")
            .bind(id)
            .execute(self.db())
            .await?;
        if deleted == 0 {
            return Err(StoreError::NotFound(format!("schedule {id}")));
        }
        Ok(())
    }

    async fn due_schedules(&self, now: OffsetDateTime) -> StoreResult<Vec<Schedule>> {
        self.schedules_where(
            "WHERE enabled AND next_run IS NOT NULL AND next_run <= $1 ORDER BY next_run, id",
            vec![now.into()],
        )
        .await
    }

    async fn save_batch_window(&self, batch: BatchId, window: &BatchWindow) -> StoreResult<()> {
        insert_batch_window_in(self.db(), batch, window).await
    }

    async fn batch_window(&self, batch: BatchId) -> StoreResult<Option<BatchWindow>> {
        let row = sql("SELECT window_start, window_end, tz FROM batch_windows WHERE batch_id = $1")
            .bind(batch)
            .fetch_optional(self.db())
            .await?;
        row.as_ref().map(row_batch_window).transpose()
    }

    async fn pending_action_windows(
        &self,
        device: DeviceId,
    ) -> StoreResult<Vec<(ActionId, BatchWindow)>> {
        let rows = sql(
            "SELECT a.id AS action_id, w.window_start, w.window_end, w.tz \
             FROM actions a JOIN batch_windows w ON w.batch_id = a.batch_id \
             WHERE a.device_id = $1 AND a.state = $2 ORDER BY a.created_at, a.seq",
        )
        .bind(device)
        .bind(ActionState::Pending.as_str())
        .fetch_all(self.db())
        .await?;
        rows.iter()
            .map(|r| Ok((r.id("action_id")?, row_batch_window(r)?)))
            .collect()
    }
}
