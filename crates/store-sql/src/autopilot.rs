//! The Autopilot device registry: records keyed by upper-case serial, linked to the newest
//! enrolled device with that serial, and their group tags (which filter groups match on).

use std::collections::HashMap;

use async_trait::async_trait;
use redeploy_core::autopilot::AutopilotRecord;
use redeploy_core::ids::DeviceId;
use redeploy_core::store::{AutopilotRegistry, StoreResult};
use sea_query::{Expr, OnConflict, Order, Query};

use crate::dialect::{Dialect, SqlRow};
use crate::query::{built, insert_row, v};
use crate::schema::{AutopilotDevices as P, Devices};
use crate::sql::RowExt;
use crate::SqlStore;

const AUTOPILOT_COLS: [P; 6] = [
    P::SerialKey,
    P::Serial,
    P::ProductId,
    P::HardwareHash,
    P::GroupTag,
    P::AssignedUser,
];

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
        let select = Query::select()
            .columns([P::SerialKey, P::GroupTag])
            .from(P::Table)
            .and_where(Expr::col(P::GroupTag).is_not_null())
            .to_owned();
        let rows = built::<D>(&select)?.fetch_all(self.db()).await?;
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
        for r in records {
            let upsert = insert_row(
                P::Table,
                AUTOPILOT_COLS,
                [
                    v(AutopilotRecord::serial_key(&r.serial)),
                    v(r.serial.clone()),
                    v(r.product_id.clone()),
                    v(r.hardware_hash.clone()),
                    v(r.group_tag.clone()),
                    v(r.assigned_user.clone()),
                ],
            )?
            .on_conflict(
                OnConflict::column(P::SerialKey)
                    .update_columns(AUTOPILOT_COLS.into_iter().skip(1))
                    .to_owned(),
            )
            .to_owned();
            built::<D>(&upsert)?.execute(tx.on()).await?;
        }
        tx.commit().await
    }

    async fn autopilot_record(&self, serial: &str) -> StoreResult<Option<AutopilotRecord>> {
        let select = Query::select()
            .columns(AUTOPILOT_COLS)
            .from(P::Table)
            .and_where(Expr::col(P::SerialKey).eq(v(AutopilotRecord::serial_key(serial))))
            .to_owned();
        let row = built::<D>(&select)?.fetch_optional(self.db()).await?;
        row.as_ref().map(row_autopilot).transpose()
    }

    async fn autopilot_records(&self) -> StoreResult<Vec<(AutopilotRecord, Option<DeviceId>)>> {
        let records = Query::select()
            .columns(AUTOPILOT_COLS)
            .from(P::Table)
            .order_by(P::SerialKey, Order::Asc)
            .to_owned();
        let rows = built::<D>(&records)?.fetch_all(self.db()).await?;
        let enrolled = Query::select()
            .columns([Devices::Id, Devices::Serial])
            .from(Devices::Table)
            .and_where(Expr::col(Devices::Serial).is_not_null())
            .order_by(Devices::EnrolledAt, Order::Asc)
            .to_owned();
        let links = built::<D>(&enrolled)?.fetch_all(self.db()).await?;
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
