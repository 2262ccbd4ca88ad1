//! MDM client certificate renewals: the renewal, the device's new certificate and the
//! enrollment record committed together; the unseen renewals a check-in asks about; the
//! fleet's certificate expiry counts.

use async_trait::async_trait;
use redeploy_core::enrollment::renewal::CertificateRenewal;
use redeploy_core::enrollment::Enrollment;
use redeploy_core::ids::DeviceId;
use redeploy_core::store::{CertificateExpiry, CertificateRenewalStore, StoreError, StoreResult};
use sea_query::{Expr, LockType, Order, Query, SelectStatement};
use time::{Duration, OffsetDateTime};

use crate::dialect::{Dialect, SqlRow};
use crate::enrollments::insert_enrollment;
use crate::query::{built, insert_row, v};
use crate::schema::{CertificateRenewals as R, Devices as D, Enrollments as E};
use crate::sql::RowExt;
use crate::SqlStore;

const RENEWAL_COLS: [R; 9] = [
    R::EnrollmentId,
    R::DeviceId,
    R::OldThumbprint,
    R::OldNotAfter,
    R::NewThumbprint,
    R::NewNotAfter,
    R::Replaces,
    R::RenewedAt,
    R::NewSeenAt,
];

fn row_renewal(r: &impl SqlRow) -> StoreResult<CertificateRenewal> {
    Ok(CertificateRenewal {
        enrollment: r.id("enrollment_id")?,
        device: r.id("device_id")?,
        old_thumbprint: r.string("old_thumbprint")?,
        old_not_after: r.at("old_not_after")?,
        new_thumbprint: r.string("new_thumbprint")?,
        new_not_after: r.at("new_not_after")?,
        replaces: r.string("replaces")?,
        renewed_at: r.at("renewed_at")?,
        new_seen_at: r.time("new_seen_at")?,
    })
}

fn renewals_of(device: DeviceId) -> SelectStatement {
    Query::select()
        .columns(RENEWAL_COLS)
        .from(R::Table)
        .and_where(Expr::col(R::DeviceId).eq(v(device)))
        .order_by(R::RenewedAt, Order::Asc)
        .order_by(R::EnrollmentId, Order::Asc)
        .to_owned()
}

impl<D2: Dialect> SqlStore<D2> {
    async fn renewals(&self, select: &SelectStatement) -> StoreResult<Vec<CertificateRenewal>> {
        let rows = built::<D2>(select)?.fetch_all(self.db()).await?;
        rows.iter().map(row_renewal).collect()
    }

    async fn count_devices(&self, select: &SelectStatement) -> StoreResult<u64> {
        built::<D2>(select)?.fetch_one(self.db()).await?.count("n")
    }
}

/// Enrolled devices with a certificate, to be narrowed by expiry and counted as `n`.
fn count_enrolled() -> SelectStatement {
    Query::select()
        .expr_as(Expr::col(D::Id).count(), sea_query::Alias::new("n"))
        .from(D::Table)
        .and_where(Expr::col(D::UnenrolledAt).is_null())
        .and_where(Expr::col(D::CertNotAfter).is_not_null())
        .to_owned()
}

#[async_trait]
impl<D2: Dialect> CertificateRenewalStore for SqlStore<D2> {
    async fn renew_device_certificate(
        &self,
        renewal: &CertificateRenewal,
        enrollment: &Enrollment,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        // The device as it is now (row-locked on PostgreSQL; SQLite's write transaction
        // already excludes every other writer).
        let select = Query::select()
            .columns([D::CertThumbprint, D::UnenrolledAt])
            .from(D::Table)
            .and_where(Expr::col(D::Id).eq(v(renewal.device)))
            .lock(LockType::Update)
            .to_owned();
        let row = built::<D2>(&select)?
            .fetch_optional(tx.on())
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("device {}", renewal.device)))?;
        if row.time("unenrolled_at")?.is_some() {
            return Err(StoreError::Conflict(format!(
                "device {} was unenrolled",
                renewal.device
            )));
        }
        let current = row.text("cert_thumbprint")?.unwrap_or_default();
        if !current.eq_ignore_ascii_case(&renewal.replaces) {
            return Err(StoreError::Conflict(format!(
                "device {} has another certificate now",
                renewal.device
            )));
        }
        let update = Query::update()
            .table(D::Table)
            .value(D::CertThumbprint, v(renewal.new_thumbprint.clone()))
            .value(D::CertNotAfter, v(renewal.new_not_after))
            .and_where(Expr::col(D::Id).eq(v(renewal.device)))
            .to_owned();
        built::<D2>(&update)?.execute(tx.on()).await?;
        let replace = Query::update()
            .table(E::Table)
            .value(E::ReplacedBy, v(enrollment.id))
            .and_where(Expr::col(E::DeviceId).eq(v(renewal.device)))
            .and_where(Expr::col(E::ReplacedBy).is_null())
            .to_owned();
        built::<D2>(&replace)?.execute(tx.on()).await?;
        let insert = insert_enrollment(&Enrollment {
            device: renewal.device,
            ..enrollment.clone()
        })?;
        built::<D2>(&insert)?.execute(tx.on()).await?;
        let insert = insert_row(
            R::Table,
            RENEWAL_COLS,
            [
                v(renewal.enrollment),
                v(renewal.device),
                v(renewal.old_thumbprint.clone()),
                v(renewal.old_not_after),
                v(renewal.new_thumbprint.clone()),
                v(renewal.new_not_after),
                v(renewal.replaces.clone()),
                v(renewal.renewed_at),
                v(renewal.new_seen_at),
            ],
        )?;
        built::<D2>(&insert)?.execute(tx.on()).await?;
        tx.commit().await
    }

    async fn unseen_renewals(&self, device: DeviceId) -> StoreResult<Vec<CertificateRenewal>> {
        let select = renewals_of(device)
            .and_where(Expr::col(R::NewSeenAt).is_null())
            .to_owned();
        self.renewals(&select).await
    }

    async fn retire_renewed_certificates(
        &self,
        device: DeviceId,
        at: OffsetDateTime,
    ) -> StoreResult<u64> {
        let update = Query::update()
            .table(R::Table)
            .value(R::NewSeenAt, v(at))
            .and_where(Expr::col(R::DeviceId).eq(v(device)))
            .and_where(Expr::col(R::NewSeenAt).is_null())
            .to_owned();
        built::<D2>(&update)?.execute(self.db()).await
    }

    async fn renewals_of_device(&self, device: DeviceId) -> StoreResult<Vec<CertificateRenewal>> {
        self.renewals(&renewals_of(device)).await
    }

    async fn certificate_expiry(
        &self,
        now: OffsetDateTime,
        within: Duration,
    ) -> StoreResult<CertificateExpiry> {
        let expired = count_enrolled()
            .and_where(Expr::col(D::CertNotAfter).lte(v(now)))
            .to_owned();
        let expiring = count_enrolled()
            .and_where(Expr::col(D::CertNotAfter).gt(v(now)))
            .and_where(Expr::col(D::CertNotAfter).lte(v(now + within)))
            .to_owned();
        Ok(CertificateExpiry {
            expired: self.count_devices(&expired).await?,
            expiring: self.count_devices(&expiring).await?,
        })
    }
}
