//! Enrollments: a new enrollment creates its device or takes over the known one (same HWDevID),
//! replacing that device's earlier enrollments, in one transaction.

use async_trait::async_trait;
use redeploy_core::device::{Device, EnrollmentType};
use redeploy_core::enrollment::Enrollment;
use redeploy_core::ids::{DeviceId, EnrollmentId};
use redeploy_core::store::{EnrollOutcome, EnrollmentStore, StoreError, StoreResult};

use crate::devices::insert_device;
use crate::dialect::{Arg, Dialect, SqlRow};
use crate::sql::{placeholders, sql, RowExt};
use crate::SqlStore;

const ENROLLMENT_COLS: &str = "id, device_id, enrollment_type, upn, auth_method, context, \
     raw_request, cert_thumbprint, cert_serial, cert_not_after, created_at, replaced_by";

fn context_json(context: &[(String, String)]) -> String {
    serde_json::Value::Array(
        context
            .iter()
            .map(|(n, v)| serde_json::json!([n, v]))
            .collect(),
    )
    .to_string()
}

fn context_from_json(text: &str) -> StoreResult<Vec<(String, String)>> {
    let bad = || StoreError::Corrupt(format!("enrollment context {text:?}"));
    let value: serde_json::Value = serde_json::from_str(text).map_err(|_| bad())?;
    value
        .as_array()
        .ok_or_else(bad)?
        .iter()
        .map(|pair| match pair.as_array().map(Vec::as_slice) {
            Some([n, v]) => Ok((
                n.as_str().ok_or_else(bad)?.to_owned(),
                v.as_str().ok_or_else(bad)?.to_owned(),
            )),
            _ => Err(bad()),
        })
        .collect()
}

fn row_enrollment(r: &impl SqlRow) -> StoreResult<Enrollment> {
    let context = r
        .json("context")?
        .ok_or_else(|| StoreError::Corrupt("column context: NULL".into()))?;
    Ok(Enrollment {
        id: r.id("id")?,
        device: r.id("device_id")?,
        enrollment_type: EnrollmentType::parse(&r.string("enrollment_type")?)?,
        upn: r.text("upn")?,
        auth_method: r.string("auth_method")?,
        context: context_from_json(&context)?,
        raw_request: r
            .bytes("raw_request")?
            .ok_or_else(|| StoreError::Corrupt("column raw_request: NULL".into()))?,
        cert_thumbprint: r.string("cert_thumbprint")?,
        cert_serial: r.string("cert_serial")?,
        cert_not_after: r.at("cert_not_after")?,
        created_at: r.at("created_at")?,
        replaced_by: r.opt_id("replaced_by")?,
    })
}

#[async_trait]
impl<D: Dialect> EnrollmentStore for SqlStore<D> {
    async fn create_enrollment(
        &self,
        device: Device,
        mut enrollment: Enrollment,
    ) -> StoreResult<EnrollOutcome> {
        let mut tx = self.begin().await?;
        let existing: Option<DeviceId> = match &device.hw_dev_id {
            Some(hw) => sql(format!(
                "SELECT id FROM devices WHERE hw_dev_id = $1{}",
                D::FOR_UPDATE
            ))
            .bind(hw.clone())
            .fetch_optional(tx.on())
            .await?
            .map(|r| r.id("id"))
            .transpose()?,
            None => None,
        };
        let mut replaced = Vec::new();
        let device_id = match existing {
            Some(id) => {
                sql("UPDATE devices SET name = $2, mdm_device_id = $3, \
                     serial = COALESCE($4, serial), manufacturer = COALESCE($5, manufacturer), \
                     model = COALESCE($6, model), os_version = COALESCE($7, os_version), \
                     join_type = CASE WHEN $8 = 'unknown' THEN join_type ELSE $8 END, \
                     enrollment_type = $9, aad_device_id = COALESCE($10, aad_device_id), \
                     cert_thumbprint = $11, cert_not_after = $12, enrolled_at = $13, \
                     unenrolled_at = NULL WHERE id = $1")
                .bind(id)
                .bind(device.name.clone())
                .bind(device.mdm_device_id.clone())
                .bind(device.serial.clone())
                .bind(device.manufacturer.clone())
                .bind(device.model.clone())
                .bind(device.os_version.clone())
                .bind(device.join_type.as_str())
                .bind(device.enrollment_type.map(|e| e.as_str()))
                .bind(device.aad_device_id.clone())
                .bind(device.cert_thumbprint.clone())
                .bind(device.cert_not_after)
                .bind(device.enrolled_at)
                .execute(tx.on())
                .await?;
                let rows = sql("UPDATE enrollments SET replaced_by = $1 \
                     WHERE device_id = $2 AND replaced_by IS NULL RETURNING id")
                .bind(enrollment.id)
                .bind(id)
                .fetch_all(tx.on())
                .await?;
                for r in &rows {
                    replaced.push(r.id::<EnrollmentId>("id")?);
                }
                replaced.sort();
                id
            }
            None => {
                insert_device(&mut tx, &device).await?;
                device.id
            }
        };
        enrollment.device = device_id;
        sql(format!(
            "INSERT INTO enrollments ({ENROLLMENT_COLS}) VALUES ({})",
            placeholders(1, 12)
        ))
        .bind(enrollment.id)
        .bind(device_id)
        .bind(enrollment.enrollment_type.as_str())
        .bind(enrollment.upn.clone())
        .bind(enrollment.auth_method.clone())
        .bind(Arg::json(context_json(&enrollment.context)))
        .bind(enrollment.raw_request.clone())
        .bind(enrollment.cert_thumbprint.clone())
        .bind(enrollment.cert_serial.clone())
        .bind(enrollment.cert_not_after)
        .bind(enrollment.created_at)
        .bind(enrollment.replaced_by)
        .execute(tx.on())
        .await?;
        tx.commit().await?;
        Ok(EnrollOutcome {
            device: device_id,
            enrollment: enrollment.id,
            device_was_known: device_id != device.id,
            replaced,
        })
    }

    async fn enrollment(&self, id: EnrollmentId) -> StoreResult<Option<Enrollment>> {
        let row = sql(format!(
            "SELECT {ENROLLMENT_COLS} FROM enrollments WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.db())
        .await?;
        row.as_ref().map(row_enrollment).transpose()
    }

    async fn enrollments_of_device(&self, device: DeviceId) -> StoreResult<Vec<Enrollment>> {
        let rows = sql(format!(
            "SELECT {ENROLLMENT_COLS} FROM enrollments WHERE device_id = $1 ORDER BY created_at, id"
        ))
        .bind(device)
        .fetch_all(self.db())
        .await?;
        rows.iter().map(row_enrollment).collect()
    }
}
