//! Bulk requests as records: written by the plan that starts one, listed newest first a page at
//! a time, and counted (actions per state, waves still waiting) for a page in two queries.

use std::collections::HashMap;

use redeploy_core::action::{ActionKind, ActionState};
use redeploy_core::ids::{BatchId, DeviceId};
use redeploy_core::store::{
    BatchChange, BatchCounts, BatchRecord, BatchState, Cursor, Page, StoreError, StoreResult,
    WaitingDevice,
};
use sea_query::{Alias, Asterisk, Cond, Expr, Order, Query, SelectStatement};
use time::OffsetDateTime;

use crate::dialect::{Dialect, On, SqlRow};
use crate::query::{built, insert_row, v};
use crate::schema::{Actions as A, BatchWaves as W, Batches as B};
use crate::sql::RowExt;
use crate::{SqlStore, Tx};

/// The cursor tag of batch lists ([`Cursor::at_position`]).
const TAG: char = 'b';

const BATCH_COLS: [B; 9] = [
    B::Id,
    B::Kind,
    B::RequestedBy,
    B::CreatedAt,
    B::Target,
    B::Devices,
    B::State,
    B::SteeredAt,
    B::SteeredBy,
];

pub(crate) fn row_batch(r: &impl SqlRow) -> StoreResult<BatchRecord> {
    Ok(BatchRecord {
        id: r.id("id")?,
        kind: ActionKind::from_code(&r.string("kind")?)?,
        requested_by: r.string("requested_by")?,
        created_at: r.at("created_at")?,
        target: r.string("target")?,
        devices: u32::try_from(r.i64("devices")?).unwrap_or(u32::MAX),
        state: BatchState::parse(&r.string("state")?)?,
        steered: match (r.time("steered_at")?, r.text("steered_by")?) {
            (Some(at), Some(by)) => Some((at, by)),
            _ => None,
        },
    })
}

/// Records `batch` (inside the transaction of the plan that starts it).
pub(crate) async fn insert_batch_in<D: Dialect>(
    on: On<'_, D>,
    batch: &BatchRecord,
) -> StoreResult<()> {
    let insert = insert_row(
        B::Table,
        BATCH_COLS,
        [
            v(batch.id),
            v(batch.kind.code()),
            v(batch.requested_by.clone()),
            v(batch.created_at),
            v(batch.target.clone()),
            v(i64::from(batch.devices)),
            v(batch.state.as_str()),
            v(batch.steered.as_ref().map(|(at, _)| *at)),
            v(batch.steered.as_ref().map(|(_, by)| by.clone())),
        ],
    )?;
    built::<D>(&insert)?.execute(on).await?;
    Ok(())
}

pub(crate) fn select_batches() -> SelectStatement {
    Query::select()
        .columns(BATCH_COLS)
        .column(B::Seq)
        .from(B::Table)
        .to_owned()
}

/// The batch `id`; `None` if unknown.
pub(crate) async fn batch_record<D: Dialect>(
    store: &SqlStore<D>,
    id: BatchId,
) -> StoreResult<Option<BatchRecord>> {
    let select = select_batches()
        .and_where(Expr::col(B::Id).eq(v(id)))
        .to_owned();
    built::<D>(&select)?
        .fetch_optional(store.db())
        .await?
        .as_ref()
        .map(row_batch)
        .transpose()
}

/// A page of batches, newest first.
pub(crate) async fn list_batches<D: Dialect>(
    store: &SqlStore<D>,
    limit: u32,
    cursor: Option<&Cursor>,
) -> StoreResult<Page<BatchRecord>> {
    let limit = limit.max(1);
    let mut select = select_batches()
        .order_by(B::Seq, Order::Desc)
        .limit(u64::from(limit) + 1)
        .to_owned();
    if let Some(c) = cursor {
        select.and_where(Expr::col(B::Seq).lt(v(c.position(TAG)?)));
    }
    let rows = built::<D>(&select)?.fetch_all(store.db()).await?;
    crate::query::page_by_seq(&rows, limit, TAG, row_batch)
}

/// Actions per state and waiting waves of each of `batches`.
pub(crate) async fn batch_counts<D: Dialect>(
    store: &SqlStore<D>,
    batches: &[BatchId],
) -> StoreResult<HashMap<BatchId, BatchCounts>> {
    let mut out: HashMap<BatchId, BatchCounts> = HashMap::new();
    if batches.is_empty() {
        return Ok(out);
    }
    let n = Alias::new("n");
    let by_state = Query::select()
        .column(A::BatchId)
        .column(A::State)
        .expr_as(Expr::col(Asterisk).count(), n.clone())
        .from(A::Table)
        .and_where(Expr::col(A::BatchId).is_in(batches.iter().map(|b| v(*b))))
        .group_by_col(A::BatchId)
        .group_by_col(A::State)
        .to_owned();
    for r in built::<D>(&by_state)?.fetch_all(store.db()).await? {
        let batch: BatchId = r.id("batch_id")?;
        let state = ActionState::parse(&r.string("state")?)?;
        let count = u64::try_from(r.i64("n")?).unwrap_or_default();
        *out.entry(batch)
            .or_default()
            .by_state
            .entry(state)
            .or_default() += count;
    }
    let waiting = Query::select()
        .column(W::BatchId)
        .expr_as(Expr::col(Asterisk).count(), n)
        .from(W::Table)
        .and_where(Expr::col(W::BatchId).is_in(batches.iter().map(|b| v(*b))))
        .and_where(Expr::col(W::ReleasedAt).is_null())
        .group_by_col(W::BatchId)
        .to_owned();
    for r in built::<D>(&waiting)?.fetch_all(store.db()).await? {
        let batch: BatchId = r.id("batch_id")?;
        out.entry(batch).or_default().waves_waiting =
            u64::try_from(r.i64("n")?).unwrap_or_default();
    }
    Ok(out)
}

/// Moves a batch as `change` says, in the transaction of its plan (see
/// `ActionStore::write_request_plan`): the batch row first (a wave release locks it too, so the
/// two serialise on PostgreSQL), then every wave read as waiting gets its due time, and exactly
/// those must still wait. `Conflict` otherwise: the caller reads again.
pub(crate) async fn change_batch_in<D: Dialect>(
    tx: &mut Tx<D>,
    at: OffsetDateTime,
    change: &BatchChange,
) -> StoreResult<()> {
    let claim = Query::update()
        .table(B::Table)
        .values([
            (B::State, v(change.state.as_str())),
            (B::SteeredAt, v(at)),
            (B::SteeredBy, v(change.by.clone())),
        ])
        .and_where(Expr::col(B::Id).eq(v(change.batch)))
        .and_where(Expr::col(B::State).eq(v(change.expected.as_str())))
        .to_owned();
    if built::<D>(&claim)?.execute(tx.on()).await? == 0 {
        return Err(StoreError::Conflict(format!(
            "batch {} is no longer {}",
            change.batch,
            change.expected.as_str()
        )));
    }
    let of_batch = || {
        Cond::all()
            .add(Expr::col(W::BatchId).eq(v(change.batch)))
            .add(Expr::col(W::ReleasedAt).is_null())
    };
    for (index, due) in &change.waiting {
        let update = Query::update()
            .table(W::Table)
            .value(W::DueAt, v(*due))
            .cond_where(of_batch())
            .and_where(Expr::col(W::WaveIndex).eq(v(*index)))
            .to_owned();
        if built::<D>(&update)?.execute(tx.on()).await? == 0 {
            return Err(StoreError::Conflict(format!(
                "wave {index} of batch {} was released meanwhile",
                change.batch
            )));
        }
    }
    let n = Alias::new("n");
    let count = Query::select()
        .expr_as(Expr::col(Asterisk).count(), n)
        .from(W::Table)
        .cond_where(of_batch())
        .to_owned();
    let waiting = built::<D>(&count)?.fetch_one(tx.on()).await?.count("n")?;
    if waiting != change.waiting.len() as u64 {
        return Err(StoreError::Conflict(format!(
            "batch {} has another wave waiting",
            change.batch
        )));
    }
    Ok(())
}

/// Whether the waves of `batch` may be released now, in a wave release's transaction: its
/// batch runs, or it has no record (waves stored alone). Locks the batch row on PostgreSQL
/// (a no-op update) so a pause or cancel writing at the same time waits for the release, or
/// the release for it.
pub(crate) async fn batch_runs_in<D: Dialect>(tx: &mut Tx<D>, batch: BatchId) -> StoreResult<bool> {
    let running = BatchState::Running.as_str();
    let touch = Query::update()
        .table(B::Table)
        .value(B::State, v(running))
        .and_where(Expr::col(B::Id).eq(v(batch)))
        .and_where(Expr::col(B::State).eq(v(running)))
        .to_owned();
    if built::<D>(&touch)?.execute(tx.on()).await? > 0 {
        return Ok(true);
    }
    let record = Query::select()
        .column(B::Id)
        .from(B::Table)
        .and_where(Expr::col(B::Id).eq(v(batch)))
        .to_owned();
    Ok(built::<D>(&record)?
        .fetch_optional(tx.on())
        .await?
        .is_none())
}

/// The ids of batches in `state`, as a subquery.
pub(crate) fn batches_in(states: &[BatchState]) -> SelectStatement {
    Query::select()
        .column(B::Id)
        .from(B::Table)
        .and_where(Expr::col(B::State).is_in(states.iter().map(|s| v(s.as_str()))))
        .to_owned()
}

/// See `WaveStore::waiting_wave_devices`.
pub(crate) async fn waiting_wave_devices<D: Dialect>(
    store: &SqlStore<D>,
    only: Option<&[DeviceId]>,
) -> StoreResult<Vec<WaitingDevice>> {
    let select = Query::select()
        .columns([W::BatchId, W::WaveIndex, W::DueAt, W::Devices])
        .from(W::Table)
        .and_where(Expr::col(W::ReleasedAt).is_null())
        .and_where(Expr::col(W::BatchId).not_in_subquery(batches_in(&[BatchState::Canceled])))
        .order_by(W::DueAt, Order::Asc)
        .to_owned();
    let paused: std::collections::HashSet<BatchId> =
        built::<D>(&batches_in(&[BatchState::Paused]))?
            .fetch_all(store.db())
            .await?
            .iter()
            .map(|r| r.id("id"))
            .collect::<StoreResult<_>>()?;
    let only: Option<std::collections::HashSet<&DeviceId>> = only.map(|o| o.iter().collect());
    let mut out = Vec::new();
    for r in built::<D>(&select)?.fetch_all(store.db()).await? {
        let batch: BatchId = r.id("batch_id")?;
        let wave = r.u32("wave_index")?;
        let due_at = r.at("due_at")?;
        for d in r.string("devices")?.split(',').filter(|s| !s.is_empty()) {
            let device = DeviceId::parse(d)?;
            if only.as_ref().is_none_or(|o| o.contains(&device)) {
                out.push(WaitingDevice {
                    device,
                    batch,
                    wave,
                    due_at,
                    paused: paused.contains(&batch),
                });
            }
        }
    }
    Ok(out)
}
