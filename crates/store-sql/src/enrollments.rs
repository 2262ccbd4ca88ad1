//! Enrollments: a new enrollment creates its device, or re-enrolls the record the core bound it
//! to (replacing that record's earlier enrollments), in one transaction.

use async_trait::async_trait;
use redeploy_core::device::{Device, EnrollmentType, JoinType};
use redeploy_core::enrollment::Enrollment;
use redeploy_core::ids::{DeviceId, EnrollmentId};
use redeploy_core::store::{EnrollOutcome, EnrollmentStore, StoreError, StoreResult};
use sea_query::{
    Expr, Func, InsertStatement, Keyword, LockType, Order, Query, SelectStatement, SimpleExpr,
};

use crate::devices::{insert_device, set_device_values};
use crate::dialect::{Arg, Dialect, SqlRow};
use crate::query::{built, insert_row, v};
use crate::schema::{Devices as Dv, Enrollments as E};
use crate::sql::RowExt;
use crate::SqlStore;

pub(crate) const ENROLLMENT_COLS: [E; 12] = [
    E::Id,
    E::DeviceId,
    E::EnrollmentType,
    E::Upn,
    E::AuthMethod,
    E::Context,
    E::RawRequest,
    E::CertThumbprint,
    E::CertSerial,
    E::CertNotAfter,
    E::CreatedAt,
    E::ReplacedBy,
];

/// The values of [`ENROLLMENT_COLS`], in order.
pub(crate) fn enrollment_values(e: &Enrollment) -> [SimpleExpr; 12] {
    [
        v(e.id),
        v(e.device),
        v(e.enrollment_type.as_str()),
        v(e.upn.clone()),
        v(e.auth_method.clone()),
        v(Arg::json(context_json(&e.context))),
        v(e.raw_request.clone()),
        v(e.cert_thumbprint.clone()),
        v(e.cert_serial.clone()),
        v(e.cert_not_after),
        v(e.created_at),
        v(e.replaced_by),
    ]
}

/// The INSERT of `e` (also used by a certificate renewal, which records an enrollment too).
pub(crate) fn insert_enrollment(e: &Enrollment) -> StoreResult<InsertStatement> {
    insert_row(E::Table, ENROLLMENT_COLS, enrollment_values(e))
}

/// Every enrollment, to be narrowed and ordered.
fn select_enrollments() -> SelectStatement {
    Query::select()
        .columns(ENROLLMENT_COLS)
        .from(E::Table)
        .to_owned()
}

/// `COALESCE(value, col)`: the new value, or the stored one where the new enrollment has none.
fn or_stored(value: Option<String>, col: Dv) -> SimpleExpr {
    Func::coalesce([v(value), Expr::col(col).into()]).into()
}

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
        // The core chose the record (`enrollment::identity::rebind`): it exists or it is new.
        // FOR UPDATE on PostgreSQL (the SQLite builder writes none: its write transaction
        // already excludes every other writer).
        let select = Query::select()
            .column(Dv::Id)
            .from(Dv::Table)
            .and_where(Expr::col(Dv::Id).eq(v(device.id)))
            .lock(LockType::Update)
            .to_owned();
        let existing: Option<DeviceId> = built::<D>(&select)?
            .fetch_optional(tx.on())
            .await?
            .map(|r| r.id("id"))
            .transpose()?;
        let mut replaced = Vec::new();
        let device_id = match existing {
            Some(id) => {
                // An unknown join type does not overwrite the one already known.
                let join_type = match device.join_type {
                    JoinType::Unknown => Expr::col(Dv::JoinType).into(),
                    known => v(known.as_str()),
                };
                let values = [
                    (Dv::Name, v(device.name.clone())),
                    (Dv::MdmDeviceId, v(device.mdm_device_id.clone())),
                    (
                        Dv::HardwareId,
                        or_stored(device.hw_dev_id.clone(), Dv::HardwareId),
                    ),
                    (Dv::Serial, or_stored(device.serial.clone(), Dv::Serial)),
                    (
                        Dv::Manufacturer,
                        or_stored(device.manufacturer.clone(), Dv::Manufacturer),
                    ),
                    (Dv::Model, or_stored(device.model.clone(), Dv::Model)),
                    (
                        Dv::OsVersion,
                        or_stored(device.os_version.clone(), Dv::OsVersion),
                    ),
                    (Dv::JoinType, join_type),
                    (Dv::JoinEvidence, v(device.join_evidence.as_str())),
                    (
                        Dv::EnrollmentType,
                        v(device.enrollment_type.map(|e| e.as_str())),
                    ),
                    (
                        Dv::AadDeviceId,
                        or_stored(device.aad_device_id.clone(), Dv::AadDeviceId),
                    ),
                    (Dv::CertThumbprint, v(device.cert_thumbprint.clone())),
                    (Dv::CertNotAfter, v(device.cert_not_after)),
                    (Dv::EnrolledAt, v(device.enrolled_at)),
                    (Dv::UnenrolledAt, Keyword::Null.into()),
                ];
                set_device_values(tx.on(), id, values).await?;
                let update = Query::update()
                    .table(E::Table)
                    .value(E::ReplacedBy, v(enrollment.id))
                    .and_where(Expr::col(E::DeviceId).eq(v(id)))
                    .and_where(Expr::col(E::ReplacedBy).is_null())
                    .returning_col(E::Id)
                    .to_owned();
                let rows = built::<D>(&update)?.fetch_all(tx.on()).await?;
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
        let insert = insert_enrollment(&enrollment)?;
        built::<D>(&insert)?.execute(tx.on()).await?;
        tx.commit().await?;
        Ok(EnrollOutcome {
            device: device_id,
            enrollment: enrollment.id,
            device_was_known: existing.is_some(),
            replaced,
        })
    }

    async fn enrollment(&self, id: EnrollmentId) -> StoreResult<Option<Enrollment>> {
        let select = select_enrollments()
            .and_where(Expr::col(E::Id).eq(v(id)))
            .to_owned();
        let row = built::<D>(&select)?.fetch_optional(self.db()).await?;
        row.as_ref().map(row_enrollment).transpose()
    }

    async fn enrollments_of_device(&self, device: DeviceId) -> StoreResult<Vec<Enrollment>> {
        let select = select_enrollments()
            .and_where(Expr::col(E::DeviceId).eq(v(device)))
            .order_by(E::CreatedAt, Order::Asc)
            .order_by(E::Id, Order::Asc)
            .to_owned();
        let rows = built::<D>(&select)?.fetch_all(self.db()).await?;
        rows.iter().map(row_enrollment).collect()
    }
}
