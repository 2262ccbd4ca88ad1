//! The Autopilot device registry: records keyed by upper-case serial, linked to the newest
//! enrolled device with that serial, and their group tags (which filter groups match on).

use std::collections::HashMap;

use async_trait::async_trait;
use redeploy_core::autopilot::AutopilotRecord;
use redeploy_core::ids::DeviceId;
use redeploy_core::store::{AutopilotRegistry, StoreResult};

use crate::dialect::{Dialect, SqlRow};
use crate::sql::{placeholders, sql, RowExt};
use crate::SqlStore;

const AUTOPILOT_COLS: &str =
    "serial_key, serial, product_id, hardware_hash, group_tag, assigned_user";

fn row_autopilot(r: &impl SqlRow) -> StoreResult<AutopilotRecord> {
    Ok(AutopilotRecord {
        serial: r.string("serial")?,
        product_id: r.text("product_id")?,
        hardware_hash: r.string("hardware_hash")?,
        group_tag: r.text("group_tag")?,
        assigned_user: r.text("assigned_user")?,
    })
}

impl<D: Dialect> SqlStore<D> {
    /// Autopilot group tags by upper-case serial.
    pub(crate) async fn group_tags(&self) -> StoreResult<HashMap<String, String>> {
        let rows =
            sql("SELECT serial_key, group_tag FROM autopilot_devices WHERE group_tag IS NOT NULL")
                .fetch_all(self.db())
                .await?;
        rows.iter()
            .map(|r| Ok((r.string("serial_key")?, r.string("group_tag")?)))
            .collect()
    }
}

#[async_trait]
impl<D: Dialect> AutopilotRegistry for SqlStore<D> {
    async fn upsert_autopilot(&self, records: &[AutopilotRecord]) -> StoreResult<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        let text = format!(
            "INSERT INTO autopilot_devices ({AUTOPILOT_COLS}) VALUES ({}) \
             ON CONFLICT (serial_key) DO UPDATE SET serial = excluded.serial, \
             product_id = excluded.product_id, hardware_hash = excluded.hardware_hash, \
             group_tag = excluded.group_tag, assigned_user = excluded.assigned_user",
            placeholders(1, 6)
        );
        for r in records {
            sql(text.as_str())
                .bind(AutopilotRecord::serial_key(&r.serial))
                .bind(r.serial.clone())
                .bind(r.product_id.clone())
                .bind(r.hardware_hash.clone())
                .bind(r.group_tag.clone())
                .bind(r.assigned_user.clone())
                .execute(tx.on())
                .await?;
        }
        tx.commit().await
    }

    async fn autopilot_record(&self, serial: &str) -> StoreResult<Option<AutopilotRecord>> {
        let row = sql(format!(
            "SELECT {AUTOPILOT_COLS} FROM autopilot_devices WHERE serial_key = $1"
        ))
        .bind(AutopilotRecord::serial_key(serial))
        .fetch_optional(self.db())
        .await?;
        row.as_ref().map(row_autopilot).transpose()
    }

    async fn autopilot_records(&self) -> StoreResult<Vec<(AutopilotRecord, Option<DeviceId>)>> {
        let rows = sql(format!(
            "SELECT {AUTOPILOT_COLS} FROM autopilot_devices ORDER BY serial_key"
        ))
        .fetch_all(self.db())
        .await?;
        let links =
            sql("SELECT id, serial FROM devices WHERE serial IS NOT NULL ORDER BY enrolled_at")
                .fetch_all(self.db())
                .await?;
        let mut by_serial = HashMap::new();
        for l in &links {
            // Later enrollments overwrite earlier ones: the newest device wins.
            by_serial.insert(
                AutopilotRecord::serial_key(&l.string("serial")?),
                l.id::<DeviceId>("id")?,
            );
        }
        rows.iter()
            .map(|r| {
                let rec = row_autopilot(r)?;
                let device = by_serial
                    .get(&AutopilotRecord::serial_key(&rec.serial))
                    .copied();
                Ok((rec, device))
            })
            .collect()
    }

    async fn autopilot_group_tags(&self) -> StoreResult<HashMap<String, String>> {
        self.group_tags().await
    }
}
