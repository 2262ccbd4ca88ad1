//! Devices: the row and its reads, lookups by each identity, and the filtered, sorted, paged list.

use async_trait::async_trait;
use redeploy_core::device::{Device, EnrollmentType, JoinType};
use redeploy_core::ids::DeviceId;
use redeploy_core::store::{
    device_sort_key, from_micros, Cursor, CursorKey, DeviceQuery, DeviceSort, DeviceStore, Page,
    StoreError, StoreResult, NEVER_SEEN_KEY,
};
use time::OffsetDateTime;

use crate::dialect::{Arg, Dialect, On, SqlRow};
use crate::sql::{placeholders, sql, RowExt};
use crate::{SqlStore, Tx};

const DEVICE_COLS: &[&str] = &[
    "id",
    "name",
    "hw_dev_id",
    "mdm_device_id",
    "serial",
    "manufacturer",
    "model",
    "os_version",
    "os_platform",
    "join_type",
    "enrollment_type",
    "aad_device_id",
    "domain_name",
    "dns_computer_name",
    "total_ram_mb",
    "total_storage_mb",
    "last_seen",
    "current_user_name",
    "primary_user",
    "shared",
    "cert_thumbprint",
    "cert_not_after",
    "local_reset_desired",
    "local_reset_reported",
    "autopilot_status",
    "autopilot_last_error",
    "winre_enabled",
    "winre_checked_at",
    "enrolled_at",
    "unenrolled_at",
];

/// `SELECT <every device column> FROM devices`.
pub(crate) fn device_select() -> String {
    format!("SELECT {} FROM devices", DEVICE_COLS.join(", "))
}

/// The values of [`DEVICE_COLS`], in order.
fn device_args(d: &Device) -> Vec<Arg> {
    vec![
        d.id.into(),
        d.name.clone().into(),
        d.hw_dev_id.clone().into(),
        d.mdm_device_id.clone().into(),
        d.serial.clone().into(),
        d.manufacturer.clone().into(),
        d.model.clone().into(),
        d.os_version.clone().into(),
        d.os_platform.clone().into(),
        d.join_type.as_str().into(),
        d.enrollment_type.map(|e| e.as_str()).into(),
        d.aad_device_id.clone().into(),
        d.domain_name.clone().into(),
        d.dns_computer_name.clone().into(),
        d.total_ram_mb.into(),
        d.total_storage_mb.into(),
        d.last_seen.into(),
        d.current_user.clone().into(),
        d.primary_user.clone().into(),
        d.shared.into(),
        d.cert_thumbprint.clone().into(),
        d.cert_not_after.into(),
        d.local_reset_desired.into(),
        d.local_reset_reported.into(),
        d.autopilot_status.into(),
        d.autopilot_last_error.into(),
        d.winre_enabled.into(),
        d.winre_checked_at.into(),
        d.enrolled_at.into(),
        d.unenrolled_at.into(),
    ]
}

/// A device from a row of [`device_select`].
pub(crate) fn row_device(r: &impl SqlRow) -> StoreResult<Device> {
    Ok(Device {
        id: r.id("id")?,
        name: r.string("name")?,
        hw_dev_id: r.text("hw_dev_id")?,
        mdm_device_id: r.text("mdm_device_id")?,
        serial: r.text("serial")?,
        manufacturer: r.text("manufacturer")?,
        model: r.text("model")?,
        os_version: r.text("os_version")?,
        os_platform: r.text("os_platform")?,
        join_type: JoinType::parse(&r.string("join_type")?)?,
        enrollment_type: r
            .text("enrollment_type")?
            .map(|e| EnrollmentType::parse(&e))
            .transpose()?,
        aad_device_id: r.text("aad_device_id")?,
        domain_name: r.text("domain_name")?,
        dns_computer_name: r.text("dns_computer_name")?,
        total_ram_mb: r.int("total_ram_mb")?,
        total_storage_mb: r.int("total_storage_mb")?,
        last_seen: r.time("last_seen")?,
        current_user: r.text("current_user_name")?,
        primary_user: r.text("primary_user")?,
        shared: r.flag("shared")?,
        cert_thumbprint: r.text("cert_thumbprint")?,
        cert_not_after: r.time("cert_not_after")?,
        local_reset_desired: r.bool("local_reset_desired")?,
        local_reset_reported: r.bool("local_reset_reported")?,
        autopilot_status: r.int("autopilot_status")?,
        autopilot_last_error: r.opt_u32("autopilot_last_error")?,
        winre_enabled: r.bool("winre_enabled")?,
        winre_checked_at: r.time("winre_checked_at")?,
        enrolled_at: r.at("enrolled_at")?,
        unenrolled_at: r.time("unenrolled_at")?,
    })
}

pub(crate) async fn insert_device<D: Dialect>(tx: &mut Tx<D>, d: &Device) -> StoreResult<()> {
    sql(format!(
        "INSERT INTO devices ({}) VALUES ({})",
        DEVICE_COLS.join(", "),
        placeholders(1, DEVICE_COLS.len())
    ))
    .bind_all(device_args(d))
    .execute(tx.on())
    .await?;
    Ok(())
}

pub(crate) async fn update_device_in<D: Dialect>(tx: &mut Tx<D>, d: &Device) -> StoreResult<()> {
    let sets: Vec<String> = DEVICE_COLS
        .iter()
        .enumerate()
        .skip(1)
        .map(|(i, c)| format!("{c} = ${}", i + 1))
        .collect();
    let changed = sql(format!(
        "UPDATE devices SET {} WHERE id = $1",
        sets.join(", ")
    ))
    .bind_all(device_args(d))
    .execute(tx.on())
    .await?;
    if changed == 0 {
        return Err(StoreError::NotFound(format!("device {}", d.id)));
    }
    Ok(())
}

/// Marks `id` seen at `at` by `current_user`; `NotFound` for an unknown device.
pub(crate) async fn record_seen_on<D: Dialect>(
    on: On<'_, D>,
    id: DeviceId,
    at: OffsetDateTime,
    current_user: Option<String>,
) -> StoreResult<()> {
    let changed = sql("UPDATE devices SET last_seen = $2, current_user_name = $3 WHERE id = $1")
        .bind(id)
        .bind(at)
        .bind(current_user)
        .execute(on)
        .await?;
    if changed == 0 {
        return Err(StoreError::NotFound(format!("device {id}")));
    }
    Ok(())
}

impl<D: Dialect> SqlStore<D> {
    async fn device_where(&self, col: &str, value: Arg) -> StoreResult<Option<Device>> {
        let row = sql(format!(
            "{} WHERE {col} = $1 ORDER BY enrolled_at DESC LIMIT 1",
            device_select()
        ))
        .bind(value)
        .fetch_optional(self.db())
        .await?;
        row.as_ref().map(row_device).transpose()
    }
}

#[async_trait]
impl<D: Dialect> DeviceStore for SqlStore<D> {
    async fn device(&self, id: DeviceId) -> StoreResult<Option<Device>> {
        self.device_where("id", id.into()).await
    }

    async fn device_by_cert_thumbprint(&self, thumbprint: &str) -> StoreResult<Option<Device>> {
        self.device_where("cert_thumbprint", thumbprint.to_ascii_lowercase().into())
            .await
    }

    async fn device_by_mdm_device_id(&self, mdm_device_id: &str) -> StoreResult<Option<Device>> {
        self.device_where("mdm_device_id", mdm_device_id.into())
            .await
    }

    async fn device_by_hw_dev_id(&self, hw_dev_id: &str) -> StoreResult<Option<Device>> {
        self.device_where("hw_dev_id", hw_dev_id.into()).await
    }

    async fn update_device(&self, device: &Device) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        update_device_in(&mut tx, device).await?;
        tx.commit().await
    }

    async fn set_primary_user(
        &self,
        id: DeviceId,
        user: Option<&str>,
        shared: bool,
    ) -> StoreResult<Device> {
        let mut tx = self.begin().await?;
        let changed = sql("UPDATE devices SET primary_user = $2, shared = $3 WHERE id = $1")
            .bind(id)
            .bind(user)
            .bind(shared)
            .execute(tx.on())
            .await?;
        if changed == 0 {
            return Err(StoreError::NotFound(format!("device {id}")));
        }
        let row = sql(format!("{} WHERE id = $1", device_select()))
            .bind(id)
            .fetch_one(tx.on())
            .await?;
        let device = row_device(&row)?;
        tx.commit().await?;
        Ok(device)
    }

    async fn record_seen(
        &self,
        id: DeviceId,
        at: OffsetDateTime,
        current_user: Option<&str>,
    ) -> StoreResult<()> {
        record_seen_on(self.db(), id, at, current_user.map(str::to_owned)).await
    }

    async fn list_devices(&self, query: &DeviceQuery) -> StoreResult<Page<Device>> {
        let key_expr = match query.sort {
            DeviceSort::Name => "name".to_owned(),
            DeviceSort::LastSeen => format!("COALESCE(last_seen, {})", D::NEVER_SEEN),
            DeviceSort::EnrolledAt => "enrolled_at".to_owned(),
            // Same expression as the `devices_serial_sort` index (migration 20261126000007).
            DeviceSort::Serial => "COALESCE(serial, '')".to_owned(),
        };
        let (dir, cmp) = if query.descending {
            ("DESC", "<")
        } else {
            ("ASC", ">")
        };
        let mut text = format!("{} WHERE 1 = 1", device_select());
        let mut args: Vec<Arg> = Vec::new();
        let mut next = |arg: Arg| {
            args.push(arg);
            format!("${}", args.len())
        };
        if !query.include_unenrolled {
            text.push_str(" AND unenrolled_at IS NULL");
        }
        if let Some(s) = &query.search {
            let escaped = s
                .to_lowercase()
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            let p = next(format!("%{escaped}%").into());
            text.push_str(&format!(
                " AND (lower(name) LIKE {p} ESCAPE '\\' \
                 OR lower(COALESCE(serial, '')) LIKE {p} ESCAPE '\\' \
                 OR lower(COALESCE(primary_user, '')) LIKE {p} ESCAPE '\\')"
            ));
        }
        if let Some(j) = query.join_type {
            let p = next(j.as_str().into());
            text.push_str(&format!(" AND join_type = {p}"));
        }
        let after = query
            .cursor
            .as_ref()
            .map(|c| c.decode(query.sort))
            .transpose()?;
        if let Some((key, id)) = after {
            let k = match key {
                CursorKey::Text(t) => next(t.into()),
                // The key of devices never seen sorts before every instant.
                CursorKey::Int(NEVER_SEEN_KEY) => D::NEVER_SEEN.to_owned(),
                CursorKey::Int(micros) => next(from_micros(micros)?.into()),
            };
            let i = next(id.into());
            text.push_str(&format!(" AND ({key_expr}, id) {cmp} ({k}, {i})"));
        }
        let limit = query.limit.max(1);
        let p = next((i64::from(limit) + 1).into());
        text.push_str(&format!(" ORDER BY {key_expr} {dir}, id {dir} LIMIT {p}"));

        let rows = sql(text).bind_all(args).fetch_all(self.db()).await?;
        let mut items = rows
            .iter()
            .map(row_device)
            .collect::<StoreResult<Vec<_>>>()?;
        let next = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items
                .last()
                .map(|d| Cursor::after(query.sort, &device_sort_key(d, query.sort), d.id))
        } else {
            None
        };
        Ok(Page { items, next })
    }
}
