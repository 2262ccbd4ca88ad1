//! Schedules (recurring bulk requests with a maintenance window, claimed by `next_run`) and the
//! maintenance windows of the batches they fired.

use async_trait::async_trait;
use redeploy_core::action::{ActionKind, ActionState};
use redeploy_core::ids::{ActionId, BatchId, DeviceId, ScheduleId};
use redeploy_core::schedule::{
    seconds_of_day, time_of_seconds, BatchWindow, MaintenanceWindow, Recurrence, Schedule,
};
use redeploy_core::store::{ScheduleStore, StoreError, StoreResult};
use sea_query::{Alias, Expr, Order, Query, SelectStatement, SimpleExpr};
use time::OffsetDateTime;

use crate::dialect::{Dialect, On, SqlRow};
use crate::query::{built, insert_row, v};
use crate::schema::{Actions as A, BatchWindows as W, Schedules as S};
use crate::sql::RowExt;
use crate::SqlStore;

const SCHEDULE_COLS: [S; 11] = [
    S::Id,
    S::Name,
    S::GroupId,
    S::Kind,
    S::Tz,
    S::Recurrence,
    S::WindowStart,
    S::WindowEnd,
    S::Enabled,
    S::NextRun,
    S::LastRun,
];

/// The values of [`SCHEDULE_COLS`], in order.
fn schedule_values(s: &Schedule) -> [SimpleExpr; 11] {
    [
        v(s.id),
        v(s.name.clone()),
        v(s.group),
        v(s.kind.code()),
        v(s.tz.name()),
        v(s.recurrence.to_text()),
        v(s.window.map(|w| seconds_of_day(w.start))),
        v(s.window.map(|w| seconds_of_day(w.end))),
        v(s.enabled),
        v(s.next_run),
        v(s.last_run),
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
    let insert = insert_row(
        W::Table,
        [W::BatchId, W::WindowStart, W::WindowEnd, W::Tz],
        [
            v(batch),
            v(seconds_of_day(window.window.start)),
            v(seconds_of_day(window.window.end)),
            v(window.tz.name()),
        ],
    )?;
    built::<D>(&insert)?.execute(on).await?;
    Ok(())
}

/// Every schedule, to be narrowed and ordered.
fn select_schedules() -> SelectStatement {
    Query::select()
        .columns(SCHEDULE_COLS)
        .from(S::Table)
        .to_owned()
}

impl<D: Dialect> SqlStore<D> {
    async fn schedules(&self, select: &SelectStatement) -> StoreResult<Vec<Schedule>> {
        let rows = built::<D>(select)?.fetch_all(self.db()).await?;
        rows.iter().map(row_schedule).collect()
    }
}

#[async_trait]
impl<D: Dialect> ScheduleStore for SqlStore<D> {
    async fn create_schedule(&self, schedule: &Schedule) -> StoreResult<()> {
        let insert = insert_row(S::Table, SCHEDULE_COLS, schedule_values(schedule))?;
        built::<D>(&insert)?.execute(self.db()).await?;
        Ok(())
    }

    async fn schedule(&self, id: ScheduleId) -> StoreResult<Option<Schedule>> {
        let select = select_schedules()
            .and_where(Expr::col(S::Id).eq(v(id)))
            .to_owned();
        Ok(self.schedules(&select).await?.into_iter().next())
    }

    async fn list_schedules(&self) -> StoreResult<Vec<Schedule>> {
        let select = select_schedules()
            .order_by(S::Name, Order::Asc)
            .order_by(S::Id, Order::Asc)
            .to_owned();
        self.schedules(&select).await
    }

    async fn update_schedule(&self, schedule: &Schedule) -> StoreResult<()> {
        let update = Query::update()
            .table(S::Table)
            .values(
                SCHEDULE_COLS
                    .into_iter()
                    .zip(schedule_values(schedule))
                    .skip(1),
            )
            .and_where(Expr::col(S::Id).eq(v(schedule.id)))
            .to_owned();
        if built::<D>(&update)?.execute(self.db()).await? == 0 {
            return Err(StoreError::NotFound(format!("schedule {}", schedule.id)));
        }
        Ok(())
    }

    async fn delete_schedule(&self, id: ScheduleId) -> StoreResult<()> {
        let delete = Query::delete()
            .from_table(S::Table)
            .and_where(Expr::col(S::Id).eq(v(id)))
            .to_owned();
        if built::<D>(&delete)?.execute(self.db()).await? == 0 {
            return Err(StoreError::NotFound(format!("schedule {id}")));
        }
        Ok(())
    }

    async fn due_schedules(&self, now: OffsetDateTime) -> StoreResult<Vec<Schedule>> {
        let select = select_schedules()
            .and_where(Expr::col(S::Enabled).eq(v(true)))
            .and_where(Expr::col(S::NextRun).is_not_null())
            .and_where(Expr::col(S::NextRun).lte(v(now)))
            .order_by(S::NextRun, Order::Asc)
            .order_by(S::Id, Order::Asc)
            .to_owned();
        self.schedules(&select).await
    }

    async fn save_batch_window(&self, batch: BatchId, window: &BatchWindow) -> StoreResult<()> {
        insert_batch_window_in(self.db(), batch, window).await
    }

    async fn batch_window(&self, batch: BatchId) -> StoreResult<Option<BatchWindow>> {
        let select = Query::select()
            .columns([W::WindowStart, W::WindowEnd, W::Tz])
            .from(W::Table)
            .and_where(Expr::col(W::BatchId).eq(v(batch)))
            .to_owned();
        let row = built::<D>(&select)?.fetch_optional(self.db()).await?;
        row.as_ref().map(row_batch_window).transpose()
    }

    async fn pending_action_windows(
        &self,
        device: DeviceId,
    ) -> StoreResult<Vec<(ActionId, BatchWindow)>> {
        let select = Query::select()
            .expr_as(Expr::col((A::Table, A::Id)), Alias::new("action_id"))
            .columns([
                (W::Table, W::WindowStart),
                (W::Table, W::WindowEnd),
                (W::Table, W::Tz),
            ])
            .from(A::Table)
            .inner_join(
                W::Table,
                Expr::col((W::Table, W::BatchId)).equals((A::Table, A::BatchId)),
            )
            .and_where(Expr::col((A::Table, A::DeviceId)).eq(v(device)))
            .and_where(Expr::col((A::Table, A::State)).eq(v(ActionState::Pending.as_str())))
            .order_by((A::Table, A::CreatedAt), Order::Asc)
            .order_by((A::Table, A::Seq), Order::Asc)
            .to_owned();
        let rows = built::<D>(&select)?.fetch_all(self.db()).await?;
        rows.iter()
            .map(|r| Ok((r.id("action_id")?, row_batch_window(r)?)))
            .collect()
    }
}
