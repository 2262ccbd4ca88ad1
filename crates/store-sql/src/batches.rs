//! Bulk requests as records: written by the plan that starts one, listed newest first a page at
//! a time, and counted (actions per state, waves still waiting) for a page in two queries.

use std::collections::HashMap;

use redeploy_core::action::{ActionKind, ActionState};
use redeploy_core::ids::BatchId;
use redeploy_core::store::{BatchCounts, BatchRecord, Cursor, Page, StoreResult};
use sea_query::{Alias, Asterisk, Expr, Order, Query, SelectStatement};

use crate::dialect::{Dialect, On, SqlRow};
use crate::query::{built, insert_row, v};
use crate::schema::{Actions as A, BatchWaves as W, Batches as B};
use crate::sql::RowExt;
use crate::SqlStore;

/// The cursor tag of batch lists ([`Cursor::at_position`]).
const TAG: char = 'b';

const BATCH_COLS: [B; 6] = [
    B::Id,
    B::Kind,
    B::RequestedBy,
    B::CreatedAt,
    B::Target,
    B::Devices,
];

fn row_batch(r: &impl SqlRow) -> StoreResult<BatchRecord> {
    Ok(BatchRecord {
        id: r.id("id")?,
        kind: ActionKind::from_code(&r.string("kind")?)?,
        requested_by: r.string("requested_by")?,
        created_at: r.at("created_at")?,
        target: r.string("target")?,
        devices: u32::try_from(r.i64("devices")?).unwrap_or(u32::MAX),
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
        ],
    )?;
    built::<D>(&insert)?.execute(on).await?;
    Ok(())
}

fn select_batches() -> SelectStatement {
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
