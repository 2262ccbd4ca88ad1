//! Inventory: the latest value of each CSP node a device reported, kept per (device, URI).

use async_trait::async_trait;
use redeploy_core::ids::DeviceId;
use redeploy_core::inventory::InventoryValue;
use redeploy_core::store::{InventoryStore, StoreResult};

use crate::dialect::{Dialect, SqlRow};
use crate::sql::{sql, RowExt};
use crate::{SqlStore, Tx};

const INVENTORY_SELECT: &str = "SELECT device_id, uri, value, format, at FROM inventory";

fn row_inventory(r: &impl SqlRow) -> StoreResult<InventoryValue> {
    Ok(InventoryValue {
        device: r.id("device_id")?,
        uri: r.string("uri")?,
        value: r.string("value")?,
        format: r.text("format")?,
        at: r.at("at")?,
    })
}

/// Stores `values` in `tx`; a value never replaces a newer one.
pub(crate) async fn upsert_inventory_in<D: Dialect>(
    tx: &mut Tx<D>,
    values: &[InventoryValue],
) -> StoreResult<()> {
    for v in values {
        sql("INSERT INTO inventory (device_id, uri, value, format, at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (device_id, uri) DO UPDATE SET value = excluded.value, \
             format = excluded.format, at = excluded.at WHERE excluded.at >= inventory.at")
        .bind(v.device)
        .bind(v.uri.clone())
        .bind(v.value.clone())
        .bind(v.format.clone())
        .bind(v.at)
        .execute(tx.on())
        .await?;
    }
    Ok(())
}

#[async_trait]
impl<D: Dialect> InventoryStore for SqlStore<D> {
    async fn upsert_inventory(&self, values: &[InventoryValue]) -> StoreResult<()> {
        if values.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        upsert_inventory_in(&mut tx, values).await?;
        tx.commit().await
    }

    async fn inventory(&self, device: DeviceId) -> StoreResult<Vec<InventoryValue>> {
        let rows = sql(format!(
            "{INVENTORY_SELECT} WHERE device_id = $1 ORDER BY uri"
        ))
        .bind(device)
        .fetch_all(self.db())
        .await?;
        rows.iter().map(row_inventory).collect()
    }

    async fn inventory_value(
        &self,
        device: DeviceId,
        uri: &str,
    ) -> StoreResult<Option<InventoryValue>> {
        let row = sql(format!(
            "{INVENTORY_SELECT} WHERE device_id = $1 AND uri = $2"
        ))
        .bind(device)
        .bind(uri)
        .fetch_optional(self.db())
        .await?;
        row.as_ref().map(row_inventory).transpose()
    }
}
