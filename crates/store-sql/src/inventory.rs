//! Inventory: the latest value of each CSP node a device reported, kept per (device, URI).

use std::collections::HashMap;

use async_trait::async_trait;
use redeploy_core::ids::DeviceId;
use redeploy_core::inventory::InventoryValue;
use redeploy_core::store::{InventoryStore, StoreError, StoreResult};
use sea_query::{Alias, Expr, OnConflict, Order, Query, SelectStatement};

use crate::bulk::insert_rows_or;
use crate::dialect::{Arg, Dialect, SqlRow};
use crate::query::{built, v, written, Shapes};
use crate::schema::Inventory as I;
use crate::sql::RowExt;
use crate::{SqlStore, Tx};

/// Most values an upsert writes with a text kept per row count (a check-in's few); more are
/// written as the bulk insert writes them.
const SHAPED_ROWS: usize = 16;

pub(crate) const INVENTORY_COLS: [I; 5] = [I::DeviceId, I::Uri, I::Value, I::Format, I::At];

fn row_inventory(r: &impl SqlRow) -> StoreResult<InventoryValue> {
    Ok(InventoryValue {
        device: r.id("device_id")?,
        uri: r.string("uri")?,
        value: r.string("value")?,
        format: r.text("format")?,
        at: r.at("at")?,
    })
}

/// The inventory of `device`.
fn select_of(device: DeviceId) -> SelectStatement {
    Query::select()
        .columns(INVENTORY_COLS)
        .from(I::Table)
        .and_where(Expr::col(I::DeviceId).eq(v(device)))
        .to_owned()
}

/// The values of [`INVENTORY_COLS`], in order.
fn inventory_args(val: &InventoryValue) -> [Arg; 5] {
    [
        val.device.into(),
        val.uri.clone().into(),
        val.value.clone().into(),
        val.format.clone().into(),
        val.at.into(),
    ]
}

/// The newest of `values` for each device and node (an upsert may name a row once).
pub(crate) fn latest_of(values: &[InventoryValue]) -> Vec<&InventoryValue> {
    let mut latest: Vec<&InventoryValue> = Vec::with_capacity(values.len());
    let mut index: HashMap<(DeviceId, &str), usize> = HashMap::with_capacity(values.len());
    for val in values {
        match index.get(&(val.device, val.uri.as_str())) {
            Some(&i) if val.at >= latest[i].at => latest[i] = val,
            Some(_) => {}
            None => {
                index.insert((val.device, val.uri.as_str()), latest.len());
                latest.push(val);
            }
        }
    }
    latest
}

/// Stores `values` in `tx`; a value never replaces a newer one. One statement for them all (as
/// few as the parameter limit allows): a check-in's DevInfo and an inventory answer are one
/// write each, not one per node. Of two values for one node the newer is kept (the later of
/// equals), as writing them one by one would: a single INSERT may not change a row twice.
pub(crate) async fn upsert_inventory_in<D: Dialect>(
    tx: &mut Tx<D>,
    shapes: &Shapes,
    values: &[InventoryValue],
) -> StoreResult<()> {
    let latest = latest_of(values);
    if latest.is_empty() {
        return Ok(());
    }
    let newer_only = OnConflict::columns([I::DeviceId, I::Uri])
        .update_columns([I::Value, I::Format, I::At])
        .action_and_where(
            Expr::col((Alias::new("excluded"), I::At)).gte(Expr::col((I::Table, I::At))),
        )
        .to_owned();
    if latest.len() > SHAPED_ROWS {
        return insert_rows_or(
            tx,
            I::Table,
            INVENTORY_COLS,
            &latest,
            |val| inventory_args(val).map(v),
            Some(newer_only),
        )
        .await;
    }
    // A check-in's few values: one statement whose text is written once per row count.
    let args: Vec<Arg> = latest.iter().flat_map(|val| inventory_args(val)).collect();
    shapes
        .sql(("inventory_upsert", latest.len() as u64), args, || {
            let mut insert = Query::insert();
            insert
                .into_table(I::Table)
                .columns(INVENTORY_COLS)
                .on_conflict(newer_only);
            for val in &latest {
                insert
                    .values(inventory_args(val).map(v))
                    .map_err(|e| StoreError::Backend(e.to_string()))?;
            }
            written::<D>(&insert)
        })?
        .execute(tx.on())
        .await?;
    Ok(())
}

#[async_trait]
impl<D: Dialect> InventoryStore for SqlStore<D> {
    async fn upsert_inventory(&self, values: &[InventoryValue]) -> StoreResult<()> {
        if values.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        upsert_inventory_in(&mut tx, &self.shapes, values).await?;
        tx.commit().await
    }

    async fn inventory(&self, device: DeviceId) -> StoreResult<Vec<InventoryValue>> {
        let select = select_of(device).order_by(I::Uri, Order::Asc).to_owned();
        let rows = built::<D>(&select)?.fetch_all(self.db()).await?;
        rows.iter().map(row_inventory).collect()
    }

    async fn inventory_value(
        &self,
        device: DeviceId,
        uri: &str,
    ) -> StoreResult<Option<InventoryValue>> {
        let select = select_of(device)
            .and_where(Expr::col(I::Uri).eq(v(uri)))
            .to_owned();
        let row = built::<D>(&select)?.fetch_optional(self.db()).await?;
        row.as_ref().map(row_inventory).transpose()
    }

    async fn inventory_values(
        &self,
        device: DeviceId,
        uris: &[&str],
    ) -> StoreResult<Vec<InventoryValue>> {
        if uris.is_empty() {
            return Ok(Vec::new());
        }
        let select = select_of(device)
            .and_where(Expr::col(I::Uri).is_in(uris.iter().map(|u| v(*u))))
            .to_owned();
        let rows = built::<D>(&select)?.fetch_all(self.db()).await?;
        rows.iter().map(row_inventory).collect()
    }
}
