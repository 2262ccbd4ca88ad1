//! The support trail: each device's last raw (redacted) messages, appended in order and trimmed
//! to the newest `keep` per device in the same transaction.

use async_trait::async_trait;
use redeploy_core::ids::DeviceId;
use redeploy_core::store::{StoreError, StoreResult, SupportTrail};
use redeploy_core::trail::{Direction, TrailMessage};

use crate::dialect::{Dialect, SqlRow};
use crate::sql::{sql, RowExt};
use crate::SqlStore;

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
    async fn append_trail(&self, messages: &[TrailMessage], keep: u32) -> StoreResult<()> {
        if messages.is_empty() || keep == 0 {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        let mut devices: Vec<DeviceId> = Vec::new();
        for m in messages {
            sql(
                "INSERT INTO device_messages (device_id, at, direction, session_id, msg_id, body, \
                 size) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(m.device)
            .bind(m.at)
            .bind(m.direction.as_str())
            .bind(m.session_id.clone())
            .bind(m.msg_id.clone())
            .bind(m.body.clone())
            .bind(i64::try_from(m.size).unwrap_or(i64::MAX))
            .execute(tx.on())
            .await?;
            if !devices.contains(&m.device) {
                devices.push(m.device);
            }
        }
        for device in devices {
            // Everything older than the device's `keep`-th newest message goes.
            sql(
                "DELETE FROM device_messages WHERE device_id = $1 AND seq < (SELECT MIN(seq) \
                 FROM (SELECT seq FROM device_messages WHERE device_id = $2 ORDER BY seq DESC \
                 LIMIT $3) AS newest)",
            )
            .bind(device)
            .bind(device)
            .bind(i64::from(keep))
            .execute(tx.on())
            .await?;
        }
        tx.commit().await
    }

    async fn trail(&self, device: DeviceId, limit: u32) -> StoreResult<Vec<TrailMessage>> {
        let rows = sql(
            "SELECT device_id, at, direction, session_id, msg_id, body, size FROM device_messages \
             WHERE device_id = $1 ORDER BY seq DESC LIMIT $2",
        )
        .bind(device)
        .bind(i64::from(limit))
        .fetch_all(self.db())
        .await?;
        rows.iter().map(row_trail).collect()
    }
}
