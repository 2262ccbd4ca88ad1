//! The support trail: each device's last raw (redacted) messages, appended in order and trimmed
//! to the newest `keep` per device in the same transaction.

use async_trait::async_trait;
use redeploy_core::ids::DeviceId;
use redeploy_core::store::{StoreError, StoreResult, SupportTrail};
use redeploy_core::trail::{Direction, TrailMessage};

use sea_query::{Alias, Expr, Order, Query};

use crate::bulk::{insert_rows, shaped_chunks, PARAMS_PER_STATEMENT};
use crate::dialect::{Dialect, SqlRow};
use crate::query::{built, v};
use crate::schema::{DeviceMessages as M, Devices as Dv};
use crate::sql::RowExt;
use crate::SqlStore;

/// The columns of a trail message, as written and read.
const TRAIL_COLS: [M; 7] = [
    M::DeviceId,
    M::At,
    M::Direction,
    M::SessionId,
    M::MsgId,
    M::Body,
    M::Size,
];

fn row_trail(r: &impl SqlRow) -> StoreResult<TrailMessage> {
    let direction = r.string("direction")?;
    Ok(TrailMessage {
        device: r.id("device_id")?,
        at: r.at("at")?,
        direction: Direction::parse(&direction)
            .ok_or_else(|| StoreError::Corrupt(format!("trail direction {direction:?}")))?,
        session_id: r.string("session_id")?,
        msg_id: r.string("msg_id")?,
        body: r.string("body")?,
        size: usize::try_from(r.i64("size")?)
            .map_err(|_| StoreError::Corrupt("trail size".into()))?,
    })
}

#[async_trait]
impl<D: Dialect> SupportTrail for SqlStore<D> {
    async fn append_trail(
        &self,
        messages: &[TrailMessage],
        keep: u32,
        trim: &[DeviceId],
    ) -> StoreResult<()> {
        if (messages.is_empty() && trim.is_empty()) || keep == 0 {
            return Ok(());
        }
        // The messages in multi-row INSERTs, then one DELETE per chunk of `trim` of what lies
        // beyond each device's `keep` newest (the writer holds the database's write lock
        // meanwhile; check-ins wait).
        let devices = distinct(trim.iter().copied());
        let mut tx = self.begin().await?;
        // Messages of known devices only (NotFound, nothing written, otherwise): where the
        // trail has no foreign key (PostgreSQL: a check per row, which also locked the device's
        // row; migration `20261220000001`), checked here once per device.
        let named = if D::TRAIL_FOREIGN_KEY {
            Vec::new()
        } else {
            distinct(messages.iter().map(|m| m.device))
        };
        for chunk in shaped_chunks(&named, PARAMS_PER_STATEMENT) {
            let known = Query::select()
                .expr_as(Expr::col(Dv::Id).count(), Alias::new("known"))
                .from(Dv::Table)
                .and_where(Expr::col(Dv::Id).is_in(chunk.iter().map(|d| v(*d))))
                .to_owned();
            let known = built::<D>(&known)?.fetch_one(tx.on()).await?.i64("known")?;
            if known != chunk.len() as i64 {
                return Err(StoreError::NotFound(format!(
                    "{} of the trail's devices",
                    chunk.len() as i64 - known
                )));
            }
        }
        insert_rows(&mut tx, M::Table, TRAIL_COLS, messages, |m| {
            [
                v(m.device),
                v(m.at),
                v(m.direction.as_str()),
                v(m.session_id.clone()),
                v(m.msg_id.clone()),
                v(m.body.clone()),
                v(i64::try_from(m.size).unwrap_or(i64::MAX)),
            ]
        })
        .await?;
        // What lies beyond each device's `keep` newest: its messages ranked newest first, each
        // device's rows read once (a per-row "keep-th newest" subquery read ~`keep` index
        // entries for every row: hundreds of tuples per check-in on PostgreSQL).
        for chunk in shaped_chunks(&devices, PARAMS_PER_STATEMENT) {
            let these = || Expr::col(M::DeviceId).is_in(chunk.iter().map(|d| v(*d)));
            let ranked = Query::select()
                .column(M::Seq)
                .expr_as(
                    Expr::cust("ROW_NUMBER() OVER (PARTITION BY device_id ORDER BY seq DESC)"),
                    Alias::new("newer_than"),
                )
                .from(M::Table)
                .and_where(these())
                .to_owned();
            let beyond = Query::select()
                .column(M::Seq)
                .from_subquery(ranked, Alias::new("ranked"))
                .and_where(Expr::col(Alias::new("newer_than")).gt(i64::from(keep)))
                .to_owned();
            // The devices named again: on PostgreSQL the trail's one index is (device_id, seq).
            let delete = Query::delete()
                .from_table(M::Table)
                .and_where(these())
                .and_where(Expr::col(M::Seq).in_subquery(beyond))
                .to_owned();
            built::<D>(&delete)?.execute(tx.on()).await?;
        }
        tx.commit().await
    }

    async fn trail(&self, device: DeviceId, limit: u32) -> StoreResult<Vec<TrailMessage>> {
        let select = Query::select()
            .columns(TRAIL_COLS)
            .from(M::Table)
            .and_where(Expr::col(M::DeviceId).eq(v(device)))
            .order_by(M::Seq, Order::Desc)
            .limit(u64::from(limit))
            .to_owned();
        let rows = built::<D>(&select)?.fetch_all(self.db()).await?;
        rows.iter().map(row_trail).collect()
    }
}

/// `ids` sorted, each once.
fn distinct(ids: impl Iterator<Item = DeviceId>) -> Vec<DeviceId> {
    let mut ids: Vec<DeviceId> = ids.collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}
