//! The queries behind every `Store` trait, compiled into both `store-sqlite` and `store-postgres`
//! (the latter includes this file with `#[path]`; both backends accept `$N` placeholders). The
//! backend-specific parts (connect, transaction start, lock clauses) live in each crate's `lib.rs`.

use async_trait::async_trait;
use redeploy_core::action::action_after_send;
use redeploy_core::action::{Action, ActionKind, ActionState, ResetBaseline, TimelineEntry};
use redeploy_core::audit::{AuditEvent, AuditOutcome, NewAuditEvent};
use redeploy_core::autopilot::AutopilotRecord;
use redeploy_core::command::{CommandState, DeviceCommand, SentIn, Verb};
use redeploy_core::console_session::ConsoleSession;
use redeploy_core::device::{Device, EnrollmentType, JoinType};
use redeploy_core::enrollment::{
    ApiToken, Enrollment, EnrollmentToken, Role, SecretHash, TokenRefusal,
};
use redeploy_core::group::{DeviceFilter, Group, GroupKind};
use redeploy_core::ids::{
    ActionId, AuditId, BatchId, CommandId, DeviceId, EnrollmentId, GroupId, ScheduleId, TokenId,
};
use redeploy_core::ids::{DeliveryId, WebhookId};
use redeploy_core::inventory::InventoryValue;
use redeploy_core::schedule::{
    seconds_of_day, time_of_seconds, BatchWindow, MaintenanceWindow, Recurrence, Schedule,
};
use redeploy_core::store::{
    device_sort_key, from_micros, to_micros, ActionStore, AuditLog, AuditOrder, AuditQuery,
    AutopilotRegistry, CommandQueue, ConsoleSessionStore, Cursor, CursorKey, DeviceQuery,
    DeviceSort, DeviceStore, EnrollOutcome, EnrollmentStore, GroupStore, InventoryStore, Page,
    ScheduleStore, SessionStep, StepOutcome, StoreError, StoreResult, TokenStore, Wave, WaveStore,
    NEVER_SEEN_KEY,
};
use redeploy_core::store::{DeliveryResult, WebhookStore};
use redeploy_core::store::{RequestPlan, SupportTrail, WriteOutcome};
use redeploy_core::trail::{Direction, TrailMessage};
use redeploy_core::webhook::{Delivery, Webhook, WebhookEvent};
use sqlx::error::ErrorKind;
use sqlx::Row;
use time::OffsetDateTime;

use super::{Backend, DbRow, Tx, CAP_LOCK, FOR_UPDATE, Q, TAKE_LOCK};

/// Maps a sqlx error: unique violations are conflicts, foreign-key violations name a missing row.
/// A transaction PostgreSQL aborted to break a deadlock (SQLSTATE 40P01) or a serialization
/// failure (40001) is a conflict too: it was rolled back whole, and reading again is the remedy.
pub(crate) fn backend(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(d) = &e {
        if matches!(d.code().as_deref(), Some("40P01" | "40001")) {
            return StoreError::Conflict(d.message().to_owned());
        }
        match d.kind() {
            ErrorKind::UniqueViolation => return StoreError::Conflict(d.message().to_owned()),
            ErrorKind::ForeignKeyViolation => {
                return StoreError::NotFound(format!("referenced row: {}", d.message()))
            }
            _ => {}
        }
    }
    StoreError::Backend(e.to_string())
}

fn get<'r, T>(row: &'r DbRow, col: &str) -> StoreResult<T>
where
    T: sqlx::Decode<'r, super::Db> + sqlx::Type<super::Db>,
{
    row.try_get::<T, _>(col)
        .map_err(|e| StoreError::Corrupt(format!("column {col}: {e}")))
}

fn time_col(row: &DbRow, col: &str) -> StoreResult<OffsetDateTime> {
    from_micros(get::<i64>(row, col)?)
}

fn opt_time_col(row: &DbRow, col: &str) -> StoreResult<Option<OffsetDateTime>> {
    get::<Option<i64>>(row, col)?.map(from_micros).transpose()
}

fn micros_opt(at: Option<OffsetDateTime>) -> Option<i64> {
    at.map(to_micros)
}

fn uuid_text<T>(parse: fn(&str) -> redeploy_core::Result<T>, text: &str) -> StoreResult<T> {
    Ok(parse(text)?)
}

/// `$from, $from+1, ..., $from+n-1`.
fn placeholders(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------------------------------------------
// Devices

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

fn device_select() -> String {
    format!("SELECT {} FROM devices", DEVICE_COLS.join(", "))
}

fn bind_device<'q>(q: Q<'q>, d: &Device) -> Q<'q> {
    q.bind(d.id.to_string())
        .bind(d.name.clone())
        .bind(d.hw_dev_id.clone())
        .bind(d.mdm_device_id.clone())
        .bind(d.serial.clone())
        .bind(d.manufacturer.clone())
        .bind(d.model.clone())
        .bind(d.os_version.clone())
        .bind(d.os_platform.clone())
        .bind(d.join_type.as_str())
        .bind(d.enrollment_type.map(|e| e.as_str()))
        .bind(d.aad_device_id.clone())
        .bind(d.domain_name.clone())
        .bind(d.dns_computer_name.clone())
        .bind(d.total_ram_mb)
        .bind(d.total_storage_mb)
        .bind(micros_opt(d.last_seen))
        .bind(d.current_user.clone())
        .bind(d.primary_user.clone())
        .bind(d.shared)
        .bind(d.cert_thumbprint.clone())
        .bind(micros_opt(d.cert_not_after))
        .bind(d.local_reset_desired)
        .bind(d.local_reset_reported)
        .bind(d.autopilot_status)
        .bind(d.autopilot_last_error.map(i64::from))
        .bind(d.winre_enabled)
        .bind(micros_opt(d.winre_checked_at))
        .bind(to_micros(d.enrolled_at))
        .bind(micros_opt(d.unenrolled_at))
}

fn row_device(r: &DbRow) -> StoreResult<Device> {
    Ok(Device {
        id: uuid_text(DeviceId::parse, &get::<String>(r, "id")?)?,
        name: get(r, "name")?,
        hw_dev_id: get(r, "hw_dev_id")?,
        mdm_device_id: get(r, "mdm_device_id")?,
        serial: get(r, "serial")?,
        manufacturer: get(r, "manufacturer")?,
        model: get(r, "model")?,
        os_version: get(r, "os_version")?,
        os_platform: get(r, "os_platform")?,
        join_type: JoinType::parse(&get::<String>(r, "join_type")?)?,
        enrollment_type: get::<Option<String>>(r, "enrollment_type")?
            .map(|e| EnrollmentType::parse(&e))
            .transpose()?,
        aad_device_id: get(r, "aad_device_id")?,
        domain_name: get(r, "domain_name")?,
        dns_computer_name: get(r, "dns_computer_name")?,
        total_ram_mb: get(r, "total_ram_mb")?,
        total_storage_mb: get(r, "total_storage_mb")?,
        last_seen: opt_time_col(r, "last_seen")?,
        current_user: get(r, "current_user_name")?,
        primary_user: get(r, "primary_user")?,
        shared: get(r, "shared")?,
        cert_thumbprint: get(r, "cert_thumbprint")?,
        cert_not_after: opt_time_col(r, "cert_not_after")?,
        local_reset_desired: get(r, "local_reset_desired")?,
        local_reset_reported: get(r, "local_reset_reported")?,
        autopilot_status: get(r, "autopilot_status")?,
        autopilot_last_error: get::<Option<i64>>(r, "autopilot_last_error")?
            .map(|e| u32::try_from(e).map_err(|_| StoreError::Corrupt(format!("HRESULT {e}"))))
            .transpose()?,
        winre_enabled: get(r, "winre_enabled")?,
        winre_checked_at: opt_time_col(r, "winre_checked_at")?,
        enrolled_at: time_col(r, "enrolled_at")?,
        unenrolled_at: opt_time_col(r, "unenrolled_at")?,
    })
}

async fn insert_device(tx: &mut Tx, d: &Device) -> StoreResult<()> {
    let sql = format!(
        "INSERT INTO devices ({}) VALUES ({})",
        DEVICE_COLS.join(", "),
        placeholders(1, DEVICE_COLS.len())
    );
    bind_device(sqlx::query(&sql), d)
        .execute(&mut **tx)
        .await
        .map_err(backend)?;
    Ok(())
}

async fn update_device_in(tx: &mut Tx, d: &Device) -> StoreResult<()> {
    let sets: Vec<String> = DEVICE_COLS
        .iter()
        .enumerate()
        .skip(1)
        .map(|(i, c)| format!("{c} = ${}", i + 1))
        .collect();
    let sql = format!("UPDATE devices SET {} WHERE id = $1", sets.join(", "));
    let done = bind_device(sqlx::query(&sql), d)
        .execute(&mut **tx)
        .await
        .map_err(backend)?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound(format!("device {}", d.id)));
    }
    Ok(())
}

async fn device_where(store: &Backend, col: &str, value: String) -> StoreResult<Option<Device>> {
    let sql = format!(
        "{} WHERE {col} = $1 ORDER BY enrolled_at DESC LIMIT 1",
        device_select()
    );
    let row = sqlx::query(&sql)
        .bind(value)
        .fetch_optional(&store.pool)
        .await
        .map_err(backend)?;
    row.as_ref().map(row_device).transpose()
}

// ---------------------------------------------------------------------------------------------
// Enrollments

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

fn row_enrollment(r: &DbRow) -> StoreResult<Enrollment> {
    Ok(Enrollment {
        id: uuid_text(EnrollmentId::parse, &get::<String>(r, "id")?)?,
        device: uuid_text(DeviceId::parse, &get::<String>(r, "device_id")?)?,
        enrollment_type: EnrollmentType::parse(&get::<String>(r, "enrollment_type")?)?,
        upn: get(r, "upn")?,
        auth_method: get(r, "auth_method")?,
        context: context_from_json(&get::<String>(r, "context")?)?,
        raw_request: get(r, "raw_request")?,
        cert_thumbprint: get(r, "cert_thumbprint")?,
        cert_serial: get(r, "cert_serial")?,
        cert_not_after: time_col(r, "cert_not_after")?,
        created_at: time_col(r, "created_at")?,
        replaced_by: get::<Option<String>>(r, "replaced_by")?
            .map(|t| uuid_text(EnrollmentId::parse, &t))
            .transpose()?,
    })
}

#[async_trait]
impl EnrollmentStore for Backend {
    async fn create_enrollment(
        &self,
        device: Device,
        mut enrollment: Enrollment,
    ) -> StoreResult<EnrollOutcome> {
        let mut tx = self.begin().await?;
        let existing = match &device.hw_dev_id {
            Some(hw) => {
                let sql = format!("SELECT id FROM devices WHERE hw_dev_id = $1{FOR_UPDATE}");
                sqlx::query(&sql)
                    .bind(hw.clone())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(backend)?
                    .map(|r| get::<String>(&r, "id"))
                    .transpose()?
            }
            None => None,
        };
        let mut replaced = Vec::new();
        let device_id = match existing {
            Some(id_text) => {
                let id = uuid_text(DeviceId::parse, &id_text)?;
                sqlx::query(
                    "UPDATE devices SET name = $2, mdm_device_id = $3, \
                     serial = COALESCE($4, serial), manufacturer = COALESCE($5, manufacturer), \
                     model = COALESCE($6, model), os_version = COALESCE($7, os_version), \
                     join_type = CASE WHEN $8 = 'unknown' THEN join_type ELSE $8 END, \
                     enrollment_type = $9, aad_device_id = COALESCE($10, aad_device_id), \
                     cert_thumbprint = $11, cert_not_after = $12, enrolled_at = $13, \
                     unenrolled_at = NULL WHERE id = $1",
                )
                .bind(id_text.clone())
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
                .bind(micros_opt(device.cert_not_after))
                .bind(to_micros(device.enrolled_at))
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
                let rows = sqlx::query(
                    "UPDATE enrollments SET replaced_by = $1 \
                     WHERE device_id = $2 AND replaced_by IS NULL RETURNING id",
                )
                .bind(enrollment.id.to_string())
                .bind(id_text)
                .fetch_all(&mut *tx)
                .await
                .map_err(backend)?;
                for r in &rows {
                    replaced.push(uuid_text(EnrollmentId::parse, &get::<String>(r, "id")?)?);
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
        let sql = format!(
            "INSERT INTO enrollments ({ENROLLMENT_COLS}) VALUES ({})",
            placeholders(1, 12)
        );
        sqlx::query(&sql)
            .bind(enrollment.id.to_string())
            .bind(device_id.to_string())
            .bind(enrollment.enrollment_type.as_str())
            .bind(enrollment.upn.clone())
            .bind(enrollment.auth_method.clone())
            .bind(context_json(&enrollment.context))
            .bind(enrollment.raw_request.clone())
            .bind(enrollment.cert_thumbprint.clone())
            .bind(enrollment.cert_serial.clone())
            .bind(to_micros(enrollment.cert_not_after))
            .bind(to_micros(enrollment.created_at))
            .bind(enrollment.replaced_by.map(|r| r.to_string()))
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(EnrollOutcome {
            device: device_id,
            enrollment: enrollment.id,
            device_was_known: device_id != device.id,
            replaced,
        })
    }

    async fn enrollment(&self, id: EnrollmentId) -> StoreResult<Option<Enrollment>> {
        let sql = format!("SELECT {ENROLLMENT_COLS} FROM enrollments WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.as_ref().map(row_enrollment).transpose()
    }

    async fn enrollments_of_device(&self, device: DeviceId) -> StoreResult<Vec<Enrollment>> {
        let sql = format!(
            "SELECT {ENROLLMENT_COLS} FROM enrollments WHERE device_id = $1 ORDER BY created_at, id"
        );
        let rows = sqlx::query(&sql)
            .bind(device.to_string())
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.iter().map(row_enrollment).collect()
    }
}

// ---------------------------------------------------------------------------------------------

#[async_trait]
impl DeviceStore for Backend {
    async fn device(&self, id: DeviceId) -> StoreResult<Option<Device>> {
        device_where(self, "id", id.to_string()).await
    }

    async fn device_by_cert_thumbprint(&self, thumbprint: &str) -> StoreResult<Option<Device>> {
        device_where(self, "cert_thumbprint", thumbprint.to_ascii_lowercase()).await
    }

    async fn device_by_mdm_device_id(&self, mdm_device_id: &str) -> StoreResult<Option<Device>> {
        device_where(self, "mdm_device_id", mdm_device_id.to_owned()).await
    }

    async fn device_by_hw_dev_id(&self, hw_dev_id: &str) -> StoreResult<Option<Device>> {
        device_where(self, "hw_dev_id", hw_dev_id.to_owned()).await
    }

    async fn update_device(&self, device: &Device) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        update_device_in(&mut tx, device).await?;
        tx.commit().await.map_err(backend)
    }

    async fn set_primary_user(
        &self,
        id: DeviceId,
        user: Option<&str>,
        shared: bool,
    ) -> StoreResult<Device> {
        let mut tx = self.begin().await?;
        let done = sqlx::query("UPDATE devices SET primary_user = $2, shared = $3 WHERE id = $1")
            .bind(id.to_string())
            .bind(user.map(str::to_owned))
            .bind(shared)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("device {id}")));
        }
        let sql = format!("{} WHERE id = $1", device_select());
        let row = sqlx::query(&sql)
            .bind(id.to_string())
            .fetch_one(&mut *tx)
            .await
            .map_err(backend)?;
        let device = row_device(&row)?;
        tx.commit().await.map_err(backend)?;
        Ok(device)
    }

    async fn record_seen(
        &self,
        id: DeviceId,
        at: OffsetDateTime,
        current_user: Option<&str>,
    ) -> StoreResult<()> {
        let done =
            sqlx::query("UPDATE devices SET last_seen = $2, current_user_name = $3 WHERE id = $1")
                .bind(id.to_string())
                .bind(to_micros(at))
                .bind(current_user.map(str::to_owned))
                .execute(&self.pool)
                .await
                .map_err(backend)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("device {id}")));
        }
        Ok(())
    }

    async fn list_devices(&self, query: &DeviceQuery) -> StoreResult<Page<Device>> {
        let key_expr = match query.sort {
            DeviceSort::Name => "name".to_owned(),
            DeviceSort::LastSeen => format!("COALESCE(last_seen, {NEVER_SEEN_KEY})"),
            DeviceSort::EnrolledAt => "enrolled_at".to_owned(),
            // Same expression as the `devices_serial_sort` index (migration 20261126000007).
            DeviceSort::Serial => "COALESCE(serial, '')".to_owned(),
        };
        let (dir, cmp) = if query.descending {
            ("DESC", "<")
        } else {
            ("ASC", ">")
        };
        let mut sql = format!("{} WHERE 1 = 1", device_select());
        let mut n = 0;
        let mut next = || {
            n += 1;
            format!("${n}")
        };
        if !query.include_unenrolled {
            sql.push_str(" AND unenrolled_at IS NULL");
        }
        let pattern = query.search.as_ref().map(|s| {
            let escaped = s
                .to_lowercase()
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            format!("%{escaped}%")
        });
        if pattern.is_some() {
            let p = next();
            sql.push_str(&format!(
                " AND (lower(name) LIKE {p} ESCAPE '\\' \
                 OR lower(COALESCE(serial, '')) LIKE {p} ESCAPE '\\' \
                 OR lower(COALESCE(primary_user, '')) LIKE {p} ESCAPE '\\')"
            ));
        }
        if query.join_type.is_some() {
            sql.push_str(&format!(" AND join_type = {}", next()));
        }
        let after = query
            .cursor
            .as_ref()
            .map(|c| c.decode(query.sort))
            .transpose()?;
        if after.is_some() {
            let (k, i) = (next(), next());
            sql.push_str(&format!(" AND ({key_expr}, id) {cmp} ({k}, {i})"));
        }
        let limit = query.limit.max(1);
        sql.push_str(&format!(
            " ORDER BY {key_expr} {dir}, id {dir} LIMIT {}",
            next()
        ));

        let mut q = sqlx::query(&sql);
        if let Some(p) = pattern {
            q = q.bind(p);
        }
        if let Some(j) = query.join_type {
            q = q.bind(j.as_str());
        }
        if let Some((key, id)) = after {
            q = match key {
                CursorKey::Text(t) => q.bind(t),
                CursorKey::Int(i) => q.bind(i),
            };
            q = q.bind(id.to_string());
        }
        q = q.bind(i64::from(limit) + 1);
        let rows = q.fetch_all(&self.pool).await.map_err(backend)?;
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

// ---------------------------------------------------------------------------------------------
// Commands

const COMMAND_COLS: &str = "id, device_id, action_id, verb, uri, format, data, state, session_id, \
     msg_id, cmd_id, status, result, created_at, sent_at, answered_at, attempts";

fn row_command(r: &DbRow) -> StoreResult<DeviceCommand> {
    let session_id: Option<String> = get(r, "session_id")?;
    let msg_id: Option<String> = get(r, "msg_id")?;
    let cmd_id: Option<String> = get(r, "cmd_id")?;
    let sent_in = match (session_id, msg_id, cmd_id) {
        (Some(session_id), Some(msg_id), Some(cmd_id)) => Some(SentIn {
            session_id,
            msg_id,
            cmd_id,
        }),
        _ => None,
    };
    Ok(DeviceCommand {
        id: uuid_text(CommandId::parse, &get::<String>(r, "id")?)?,
        device: uuid_text(DeviceId::parse, &get::<String>(r, "device_id")?)?,
        action: get::<Option<String>>(r, "action_id")?
            .map(|a| uuid_text(ActionId::parse, &a))
            .transpose()?,
        verb: Verb::parse(&get::<String>(r, "verb")?)?,
        uri: get(r, "uri")?,
        format: get(r, "format")?,
        data: get(r, "data")?,
        state: CommandState::parse(&get::<String>(r, "state")?)?,
        sent_in,
        status: get::<Option<i64>>(r, "status")?
            .map(|s| u16::try_from(s).map_err(|_| StoreError::Corrupt(format!("status {s}"))))
            .transpose()?,
        result: get(r, "result")?,
        created_at: time_col(r, "created_at")?,
        sent_at: opt_time_col(r, "sent_at")?,
        answered_at: opt_time_col(r, "answered_at")?,
        attempts: u32::try_from(get::<i64>(r, "attempts")?)
            .map_err(|_| StoreError::Corrupt("attempts".into()))?,
    })
}

async fn insert_commands(tx: &mut Tx, commands: &[DeviceCommand]) -> StoreResult<()> {
    let sql = format!(
        "INSERT INTO commands ({COMMAND_COLS}) VALUES ({})",
        placeholders(1, 17)
    );
    for c in commands {
        if c.state != CommandState::Queued {
            return Err(StoreError::Conflict(format!(
                "command {} is not queued",
                c.id
            )));
        }
        let sent = c.sent_in.clone();
        sqlx::query(&sql)
            .bind(c.id.to_string())
            .bind(c.device.to_string())
            .bind(c.action.map(|a| a.to_string()))
            .bind(c.verb.as_str())
            .bind(c.uri.clone())
            .bind(c.format.clone())
            .bind(c.data.clone())
            .bind(c.state.as_str())
            .bind(sent.as_ref().map(|s| s.session_id.clone()))
            .bind(sent.as_ref().map(|s| s.msg_id.clone()))
            .bind(sent.as_ref().map(|s| s.cmd_id.clone()))
            .bind(c.status.map(i64::from))
            .bind(c.result.clone())
            .bind(to_micros(c.created_at))
            .bind(micros_opt(c.sent_at))
            .bind(micros_opt(c.answered_at))
            .bind(i64::from(c.attempts))
            .execute(&mut **tx)
            .await
            .map_err(backend)?;
    }
    Ok(())
}

async fn command_in(tx: &mut Tx, id: CommandId) -> StoreResult<DeviceCommand> {
    let sql = format!("SELECT {COMMAND_COLS} FROM commands WHERE id = $1{FOR_UPDATE}");
    let row = sqlx::query(&sql)
        .bind(id.to_string())
        .fetch_optional(&mut **tx)
        .await
        .map_err(backend)?
        .ok_or_else(|| StoreError::NotFound(format!("command {id}")))?;
    row_command(&row)
}

async fn commands_where(
    store: &Backend,
    cond: &str,
    binds: Vec<String>,
) -> StoreResult<Vec<DeviceCommand>> {
    let sql = format!("SELECT {COMMAND_COLS} FROM commands WHERE {cond}");
    let mut q = sqlx::query(&sql);
    for b in binds {
        q = q.bind(b);
    }
    let rows = q.fetch_all(&store.pool).await.map_err(backend)?;
    rows.iter().map(row_command).collect()
}

async fn upsert_inventory_in(tx: &mut Tx, values: &[InventoryValue]) -> StoreResult<()> {
    for v in values {
        sqlx::query(
            "INSERT INTO inventory (device_id, uri, value, format, at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (device_id, uri) DO UPDATE SET value = excluded.value, \
             format = excluded.format, at = excluded.at WHERE excluded.at >= inventory.at",
        )
        .bind(v.device.to_string())
        .bind(v.uri.clone())
        .bind(v.value.clone())
        .bind(v.format.clone())
        .bind(to_micros(v.at))
        .execute(&mut **tx)
        .await
        .map_err(backend)?;
    }
    Ok(())
}

#[async_trait]
impl CommandQueue for Backend {
    async fn enqueue(&self, commands: &[DeviceCommand]) -> StoreResult<()> {
        if commands.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        insert_commands(&mut tx, commands).await?;
        tx.commit().await.map_err(backend)
    }

    async fn command(&self, id: CommandId) -> StoreResult<Option<DeviceCommand>> {
        Ok(commands_where(self, "id = $1", vec![id.to_string()])
            .await?
            .into_iter()
            .next())
    }

    async fn queued_commands(
        &self,
        device: DeviceId,
        limit: u32,
    ) -> StoreResult<Vec<DeviceCommand>> {
        let sql = format!(
            "SELECT {COMMAND_COLS} FROM commands WHERE device_id = $1 AND state = 'queued' \
             ORDER BY seq LIMIT $2"
        );
        let rows = sqlx::query(&sql)
            .bind(device.to_string())
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.iter().map(row_command).collect()
    }

    async fn sent_command_by_ref(
        &self,
        device: DeviceId,
        session_id: &str,
        msg_ref: &str,
        cmd_ref: &str,
    ) -> StoreResult<Option<DeviceCommand>> {
        let found = commands_where(
            self,
            "device_id = $1 AND session_id = $2 AND msg_id = $3 AND cmd_id = $4 \
             ORDER BY sent_at DESC LIMIT 1",
            vec![
                device.to_string(),
                session_id.to_owned(),
                msg_ref.to_owned(),
                cmd_ref.to_owned(),
            ],
        )
        .await?;
        Ok(found.into_iter().next())
    }

    async fn unanswered_commands(
        &self,
        device: DeviceId,
        except_session: Option<&str>,
    ) -> StoreResult<Vec<DeviceCommand>> {
        // An impossible session id keeps the query shape fixed when nothing is excluded.
        commands_where(
            self,
            "device_id = $1 AND state = 'sent' AND status IS NULL AND session_id <> $2 \
             ORDER BY sent_at, seq",
            vec![
                device.to_string(),
                except_session.unwrap_or("\u{1}none").to_owned(),
            ],
        )
        .await
    }

    async fn commands_of_action(&self, action: ActionId) -> StoreResult<Vec<DeviceCommand>> {
        commands_where(
            self,
            "action_id = $1 ORDER BY seq",
            vec![action.to_string()],
        )
        .await
    }

    async fn discard_queued_commands(&self, action: ActionId) -> StoreResult<u64> {
        let mut tx = self.begin().await?;
        let n = discard_queued_in(&mut tx, action).await?;
        tx.commit().await.map_err(backend)?;
        Ok(n)
    }

    async fn session_step(&self, step: SessionStep) -> StoreResult<StepOutcome> {
        let mut tx = self.begin().await?;
        let device = step.device;
        let foreign =
            |what: &str| StoreError::Conflict(format!("{what} is not for device {device}"));
        if let Some(d) = &step.device_update {
            if d.id != device {
                return Err(foreign("device update"));
            }
            update_device_in(&mut tx, d).await?;
        }
        if step.seen {
            let done = sqlx::query(
                "UPDATE devices SET last_seen = $2, current_user_name = $3 WHERE id = $1",
            )
            .bind(device.to_string())
            .bind(to_micros(step.at))
            .bind(step.current_user.clone())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound(format!("device {device}")));
            }
        }
        for a in &step.answers {
            let c = command_in(&mut tx, a.command).await?;
            if c.device != device {
                return Err(foreign(&format!("command {}", c.id)));
            }
            if c.state != CommandState::Sent {
                return Err(StoreError::Conflict(format!(
                    "command {} is {}, not sent",
                    c.id, c.state
                )));
            }
            sqlx::query(
                "UPDATE commands SET state = $2, status = $3, result = $4, answered_at = $5 WHERE id = $1",
            )
            .bind(c.id.to_string())
            .bind(CommandState::after_status(a.status).as_str())
            .bind(i64::from(a.status))
            .bind(a.result.clone())
            .bind(to_micros(step.at))
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        if step.inventory.iter().any(|v| v.device != device) {
            return Err(foreign("an inventory value"));
        }
        upsert_inventory_in(&mut tx, &step.inventory).await?;
        for u in &step.action_updates {
            if u.action.device != device {
                return Err(foreign(&format!("action {}", u.action.id)));
            }
            update_action_in(&mut tx, u.expected, &u.action).await?;
        }
        for id in &step.requeue {
            let c = command_in(&mut tx, *id).await?;
            if c.device != device {
                return Err(foreign(&format!("command {id}")));
            }
            if c.state != CommandState::Sent || c.status.is_some() {
                return Err(StoreError::Conflict(format!(
                    "command {id} is not sent-unanswered"
                )));
            }
            sqlx::query(
                "UPDATE commands SET state = 'queued', session_id = NULL, msg_id = NULL, \
                 cmd_id = NULL WHERE id = $1",
            )
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        if step.enqueue.iter().any(|c| c.device != device) {
            return Err(foreign("an enqueued command"));
        }
        insert_commands(&mut tx, &step.enqueue).await?;

        let mut outcome = StepOutcome {
            sent: Vec::new(),
            actions_sent: Vec::new(),
        };
        if let Some(batch) = &step.send {
            // Held actions' commands stay queued (NULL action_id: never held).
            let held = if step.held_actions.is_empty() {
                String::new()
            } else {
                format!(
                    " AND (action_id IS NULL OR action_id NOT IN ({}))",
                    placeholders(3, step.held_actions.len())
                )
            };
            let sql = format!(
                "SELECT {COMMAND_COLS} FROM commands WHERE device_id = $1 AND state = 'queued'{held} \
                 ORDER BY seq LIMIT $2{TAKE_LOCK}"
            );
            let mut q = sqlx::query(&sql)
                .bind(device.to_string())
                .bind(i64::from(batch.limit));
            for a in &step.held_actions {
                q = q.bind(a.to_string());
            }
            let rows = q.fetch_all(&mut *tx).await.map_err(backend)?;
            for (i, row) in rows.iter().enumerate() {
                let mut c = row_command(row)?;
                let cmd_id = (u64::from(batch.first_cmd_id) + i as u64).to_string();
                // `state = 'queued'` again: never take a command another transaction took meanwhile.
                let done = sqlx::query(
                    "UPDATE commands SET state = 'sent', session_id = $2, msg_id = $3, cmd_id = $4, \
                     sent_at = $5, attempts = attempts + 1 WHERE id = $1 AND state = 'queued'",
                )
                .bind(c.id.to_string())
                .bind(step.session_id.clone())
                .bind(batch.msg_id.clone())
                .bind(cmd_id.clone())
                .bind(to_micros(step.at))
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
                if done.rows_affected() == 0 {
                    continue;
                }
                c.state = CommandState::Sent;
                c.sent_in = Some(SentIn {
                    session_id: step.session_id.clone(),
                    msg_id: batch.msg_id.clone(),
                    cmd_id,
                });
                c.sent_at = Some(step.at);
                c.attempts += 1;
                if let Some(action_id) = c.action {
                    let mut action = action_in(&mut tx, action_id).await?;
                    let before = action.state;
                    if action_after_send(&mut action, &c, step.at)? {
                        update_action_in(&mut tx, before, &action).await?;
                        outcome.actions_sent.push(action);
                    }
                }
                outcome.sent.push(c);
            }
        }
        tx.commit().await.map_err(backend)?;
        Ok(outcome)
    }
}

// ---------------------------------------------------------------------------------------------

fn row_inventory(r: &DbRow) -> StoreResult<InventoryValue> {
    Ok(InventoryValue {
        device: uuid_text(DeviceId::parse, &get::<String>(r, "device_id")?)?,
        uri: get(r, "uri")?,
        value: get(r, "value")?,
        format: get(r, "format")?,
        at: time_col(r, "at")?,
    })
}

#[async_trait]
impl InventoryStore for Backend {
    async fn upsert_inventory(&self, values: &[InventoryValue]) -> StoreResult<()> {
        if values.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        upsert_inventory_in(&mut tx, values).await?;
        tx.commit().await.map_err(backend)
    }

    async fn inventory(&self, device: DeviceId) -> StoreResult<Vec<InventoryValue>> {
        let rows = sqlx::query(
            "SELECT device_id, uri, value, format, at FROM inventory WHERE device_id = $1 ORDER BY uri",
        )
        .bind(device.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter().map(row_inventory).collect()
    }

    async fn inventory_value(
        &self,
        device: DeviceId,
        uri: &str,
    ) -> StoreResult<Option<InventoryValue>> {
        let row = sqlx::query(
            "SELECT device_id, uri, value, format, at FROM inventory WHERE device_id = $1 AND uri = $2",
        )
        .bind(device.to_string())
        .bind(uri.to_owned())
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        row.as_ref().map(row_inventory).transpose()
    }
}

// ---------------------------------------------------------------------------------------------
// Actions

const ACTION_COLS: &str =
    "id, device_id, kind, state, reason, last_error, batch_id, requested_by, \
     created_at, updated_at, timeline, baseline";

fn timeline_json(timeline: &[TimelineEntry]) -> String {
    serde_json::Value::Array(
        timeline
            .iter()
            .map(|e| serde_json::json!({"state": e.state.as_str(), "at": to_micros(e.at), "note": e.note}))
            .collect(),
    )
    .to_string()
}

fn timeline_from_json(text: &str) -> StoreResult<Vec<TimelineEntry>> {
    let bad = || StoreError::Corrupt(format!("action timeline {text:?}"));
    let value: serde_json::Value = serde_json::from_str(text).map_err(|_| bad())?;
    value
        .as_array()
        .ok_or_else(bad)?
        .iter()
        .map(|e| {
            Ok(TimelineEntry {
                state: ActionState::parse(e["state"].as_str().ok_or_else(bad)?)?,
                at: from_micros(e["at"].as_i64().ok_or_else(bad)?)?,
                note: e["note"].as_str().map(str::to_owned),
            })
        })
        .collect()
}

fn row_action(r: &DbRow) -> StoreResult<Action> {
    Ok(Action {
        id: uuid_text(ActionId::parse, &get::<String>(r, "id")?)?,
        device: uuid_text(DeviceId::parse, &get::<String>(r, "device_id")?)?,
        kind: ActionKind::from_code(&get::<String>(r, "kind")?)?,
        state: ActionState::parse(&get::<String>(r, "state")?)?,
        reason: get(r, "reason")?,
        last_error: get::<Option<i64>>(r, "last_error")?
            .map(|e| u32::try_from(e).map_err(|_| StoreError::Corrupt(format!("HRESULT {e}"))))
            .transpose()?,
        batch: get::<Option<String>>(r, "batch_id")?
            .map(|b| uuid_text(BatchId::parse, &b))
            .transpose()?,
        requested_by: get(r, "requested_by")?,
        created_at: time_col(r, "created_at")?,
        updated_at: time_col(r, "updated_at")?,
        timeline: timeline_from_json(&get::<String>(r, "timeline")?)?,
        baseline: get::<Option<String>>(r, "baseline")?
            .map(|b| ResetBaseline::from_text(&b))
            .transpose()?,
    })
}

async fn action_in(tx: &mut Tx, id: ActionId) -> StoreResult<Action> {
    let sql = format!("SELECT {ACTION_COLS} FROM actions WHERE id = $1{FOR_UPDATE}");
    let row = sqlx::query(&sql)
        .bind(id.to_string())
        .fetch_optional(&mut **tx)
        .await
        .map_err(backend)?
        .ok_or_else(|| StoreError::NotFound(format!("action {id}")))?;
    row_action(&row)
}

/// Drops the queued (never sent) commands of `action`; how many.
async fn discard_queued_in(tx: &mut Tx, action: ActionId) -> StoreResult<u64> {
    let done = sqlx::query(
        "UPDATE commands SET state = 'failed' WHERE action_id = $1 AND state = 'queued'",
    )
    .bind(action.to_string())
    .execute(&mut **tx)
    .await
    .map_err(backend)?;
    Ok(done.rows_affected())
}

async fn update_action_in(tx: &mut Tx, expected: ActionState, a: &Action) -> StoreResult<()> {
    let done = sqlx::query(
        "UPDATE actions SET state = $3, reason = $4, last_error = $5, updated_at = $6, timeline = $7, \
         baseline = $8 WHERE id = $1 AND state = $2",
    )
    .bind(a.id.to_string())
    .bind(expected.as_str())
    .bind(a.state.as_str())
    .bind(a.reason.clone())
    .bind(a.last_error.map(i64::from))
    .bind(to_micros(a.updated_at))
    .bind(timeline_json(&a.timeline))
    .bind(a.baseline.map(|b| b.to_text()))
    .execute(&mut **tx)
    .await
    .map_err(backend)?;
    if done.rows_affected() == 0 {
        let exists = sqlx::query("SELECT state FROM actions WHERE id = $1")
            .bind(a.id.to_string())
            .fetch_optional(&mut **tx)
            .await
            .map_err(backend)?;
        return Err(match exists {
            None => StoreError::NotFound(format!("action {}", a.id)),
            Some(r) => StoreError::Conflict(format!(
                "action {} is {}, not {expected}",
                a.id,
                get::<String>(&r, "state")?
            )),
        });
    }
    Ok(())
}

async fn insert_action_in(
    tx: &mut Tx,
    action: &Action,
    commands: &[DeviceCommand],
) -> StoreResult<()> {
    let sql = format!(
        "INSERT INTO actions ({ACTION_COLS}) VALUES ({})",
        placeholders(1, 12)
    );
    sqlx::query(&sql)
        .bind(action.id.to_string())
        .bind(action.device.to_string())
        .bind(action.kind.code())
        .bind(action.state.as_str())
        .bind(action.reason.clone())
        .bind(action.last_error.map(i64::from))
        .bind(action.batch.map(|b| b.to_string()))
        .bind(action.requested_by.clone())
        .bind(to_micros(action.created_at))
        .bind(to_micros(action.updated_at))
        .bind(timeline_json(&action.timeline))
        .bind(action.baseline.map(|b| b.to_text()))
        .execute(&mut **tx)
        .await
        .map_err(backend)?;
    insert_commands(tx, commands).await
}

/// Not-blocked actions of `kinds` created in `[$1, $2)` (what the daily cap counts).
fn count_created_sql(kinds: &[ActionKind]) -> String {
    format!(
        "SELECT COUNT(*) AS n FROM actions WHERE created_at >= $1 AND created_at < $2 \
         AND state <> $3 AND kind IN ({})",
        placeholders(4, kinds.len())
    )
}

fn count_created_query<'q>(
    sql: &'q str,
    kinds: &[ActionKind],
    from: OffsetDateTime,
    to: OffsetDateTime,
) -> Q<'q> {
    let mut q = sqlx::query(sql)
        .bind(to_micros(from))
        .bind(to_micros(to))
        .bind(ActionState::Blocked.as_str());
    for k in kinds {
        q = q.bind(k.code());
    }
    q
}

fn count_col(row: &DbRow) -> StoreResult<u64> {
    let n = get::<i64>(row, "n")?;
    u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("count {n}")))
}

async fn count_created_in(
    tx: &mut Tx,
    kinds: &[ActionKind],
    from: OffsetDateTime,
    to: OffsetDateTime,
) -> StoreResult<u64> {
    if kinds.is_empty() {
        return Ok(0);
    }
    let sql = count_created_sql(kinds);
    let row = count_created_query(&sql, kinds, from, to)
        .fetch_one(&mut **tx)
        .await
        .map_err(backend)?;
    count_col(&row)
}

async fn actions_where(store: &Backend, tail: &str, bind: String) -> StoreResult<Vec<Action>> {
    let sql = format!("SELECT {ACTION_COLS} FROM actions WHERE {tail}");
    let rows = sqlx::query(&sql)
        .bind(bind)
        .fetch_all(&store.pool)
        .await
        .map_err(backend)?;
    rows.iter().map(row_action).collect()
}

#[async_trait]
impl ActionStore for Backend {
    async fn create_action(&self, action: &Action, commands: &[DeviceCommand]) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        insert_action_in(&mut tx, action, commands).await?;
        tx.commit().await.map_err(backend)
    }

    async fn action(&self, id: ActionId) -> StoreResult<Option<Action>> {
        Ok(actions_where(self, "id = $1", id.to_string())
            .await?
            .into_iter()
            .next())
    }

    async fn actions_of_device(&self, device: DeviceId) -> StoreResult<Vec<Action>> {
        actions_where(
            self,
            "device_id = $1 ORDER BY created_at DESC, seq DESC",
            device.to_string(),
        )
        .await
    }

    async fn actions_of_batch(&self, batch: BatchId) -> StoreResult<Vec<Action>> {
        actions_where(
            self,
            "batch_id = $1 ORDER BY created_at, seq",
            batch.to_string(),
        )
        .await
    }

    async fn actions_for_readiness(
        &self,
        devices: &[DeviceId],
    ) -> StoreResult<std::collections::HashMap<DeviceId, Vec<Action>>> {
        let mut by_device = std::collections::HashMap::<DeviceId, Vec<Action>>::new();
        for chunk in devices.chunks(500) {
            // Same order as `actions_of_device`, so per-device lists are its subsequences.
            let sql = format!(
                "SELECT {ACTION_COLS} FROM actions WHERE device_id IN ({}) \
                 AND (state NOT IN ('done', 'failed', 'canceled', 'expired') \
                 OR (kind = 'autopilot_reset' AND state IN ('done', 'failed'))) \
                 ORDER BY device_id, created_at DESC, seq DESC",
                placeholders(1, chunk.len())
            );
            let mut q = sqlx::query(&sql);
            for d in chunk {
                q = q.bind(d.to_string());
            }
            for row in q.fetch_all(&self.pool).await.map_err(backend)? {
                let a = row_action(&row)?;
                by_device.entry(a.device).or_default().push(a);
            }
        }
        Ok(by_device)
    }

    async fn active_action(&self, device: DeviceId) -> StoreResult<Option<Action>> {
        let active = actions_where(
            self,
            "device_id = $1 AND state NOT IN ('done', 'failed', 'canceled', 'expired') \
             ORDER BY created_at DESC, seq DESC LIMIT 1",
            device.to_string(),
        )
        .await?;
        Ok(active.into_iter().next())
    }

    async fn actions_in_state(&self, state: ActionState, limit: u32) -> StoreResult<Vec<Action>> {
        let sql = format!(
            "SELECT {ACTION_COLS} FROM actions WHERE state = $1 ORDER BY updated_at, seq LIMIT $2"
        );
        let rows = sqlx::query(&sql)
            .bind(state.as_str())
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.iter().map(row_action).collect()
    }

    async fn stale_actions(
        &self,
        states: &[ActionState],
        updated_before: OffsetDateTime,
        limit: u32,
    ) -> StoreResult<Vec<Action>> {
        if states.is_empty() {
            return Ok(Vec::new());
        }
        // `state IN (...) AND updated_at < $n` is a range scan per state on `actions_state`.
        let sql = format!(
            "SELECT {ACTION_COLS} FROM actions WHERE state IN ({}) AND updated_at < ${} \
             ORDER BY updated_at, seq LIMIT ${}",
            placeholders(1, states.len()),
            states.len() + 1,
            states.len() + 2
        );
        let mut q = sqlx::query(&sql);
        for s in states {
            q = q.bind(s.as_str());
        }
        let rows = q
            .bind(to_micros(updated_before))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.iter().map(row_action).collect()
    }

    async fn update_action(&self, expected: ActionState, action: &Action) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        update_action_in(&mut tx, expected, action).await?;
        tx.commit().await.map_err(backend)
    }

    async fn write_request_plan(&self, plan: &RequestPlan) -> StoreResult<WriteOutcome> {
        if plan.is_empty() {
            return Ok(WriteOutcome::Written);
        }
        // Every early return below drops `tx`, which rolls back whatever was written so far.
        let mut tx = self.begin().await?;
        // Claims first, so that a writer that lost the race stops before touching anything else
        // (on PostgreSQL it waits for the winner's row lock, then sees the claim taken).
        if let Some(w) = &plan.release_wave {
            let done = sqlx::query(
                "UPDATE batch_waves SET released_at = $3 \
                 WHERE batch_id = $1 AND wave_index = $2 AND released_at IS NULL",
            )
            .bind(w.batch.to_string())
            .bind(i64::from(w.index))
            .bind(to_micros(plan.at))
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
            if done.rows_affected() == 0 {
                let exists = sqlx::query(
                    "SELECT 1 FROM batch_waves WHERE batch_id = $1 AND wave_index = $2",
                )
                .bind(w.batch.to_string())
                .bind(i64::from(w.index))
                .fetch_optional(&mut *tx)
                .await
                .map_err(backend)?;
                return match exists {
                    Some(_) => Ok(WriteOutcome::ClaimLost),
                    None => Err(StoreError::NotFound(format!(
                        "wave {} of batch {}",
                        w.index, w.batch
                    ))),
                };
            }
        }
        if let Some(c) = &plan.claim_schedule {
            let done = sqlx::query(
                "UPDATE schedules SET last_run = $2, next_run = $3 \
                 WHERE id = $1 AND enabled AND next_run = $4",
            )
            .bind(c.schedule.to_string())
            .bind(to_micros(c.last_run))
            .bind(micros_opt(c.next_run))
            .bind(to_micros(c.due_at))
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
            if done.rows_affected() == 0 {
                let exists = sqlx::query("SELECT 1 FROM schedules WHERE id = $1")
                    .bind(c.schedule.to_string())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(backend)?;
                return match exists {
                    Some(_) => Ok(WriteOutcome::ClaimLost),
                    None => Err(StoreError::NotFound(format!("schedule {}", c.schedule))),
                };
            }
        }
        if let Some(cap) = &plan.cap {
            // Serialises cap checks across processes (SQLite: the write lock BEGIN IMMEDIATE
            // took), so the count below cannot miss another writer's uncommitted actions.
            if !CAP_LOCK.is_empty() {
                sqlx::query(CAP_LOCK)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?;
            }
            let used = count_created_in(&mut tx, &cap.kinds, cap.from, cap.to).await?;
            // The same rule as `count_actions_created`, applied to the rows about to be inserted.
            let adds = plan
                .create
                .iter()
                .filter(|n| {
                    let a = &n.action;
                    cap.kinds.contains(&a.kind)
                        && a.state != ActionState::Blocked
                        && a.created_at >= cap.from
                        && a.created_at < cap.to
                })
                .count() as u64;
            // A plan adding nothing capped passes even over a full day (a lower cap of another
            // batch may have been exceeded by a higher one's).
            if adds > 0 && used + adds > u64::from(cap.cap) {
                return Ok(WriteOutcome::CapReached { used });
            }
        }
        // Ended actions before new ones: a superseded reset must leave the active set before
        // the wipe that supersedes it enters it (the one-active-erasing-action index). The
        // commands are dropped only after the state check passed.
        for u in &plan.end {
            update_action_in(&mut tx, u.expected, &u.action).await?;
            discard_queued_in(&mut tx, u.action.id).await?;
        }
        for n in &plan.create {
            insert_action_in(&mut tx, &n.action, &n.commands).await?;
        }
        for c in &plan.device_changes {
            let done = sqlx::query("UPDATE devices SET local_reset_desired = $2 WHERE id = $1")
                .bind(c.device.to_string())
                .bind(c.local_reset_desired)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound(format!("device {}", c.device)));
            }
        }
        for w in &plan.waves {
            insert_wave_in(&mut tx, w).await?;
        }
        if let Some((batch, window)) = &plan.window {
            insert_batch_window_in(&mut tx, *batch, window).await?;
        }
        for e in &plan.audit {
            insert_audit_in(&mut tx, e).await?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(WriteOutcome::Written)
    }
}

// ---------------------------------------------------------------------------------------------
// Audit

fn row_audit(r: &DbRow) -> StoreResult<AuditEvent> {
    let targets: String = get(r, "targets")?;
    Ok(AuditEvent {
        id: AuditId::from_i64(get(r, "seq")?),
        at: time_col(r, "at")?,
        actor: get(r, "actor")?,
        action: get(r, "action")?,
        targets: targets
            .split(' ')
            .filter(|t| !t.is_empty())
            .map(|t| uuid_text(DeviceId::parse, t))
            .collect::<StoreResult<_>>()?,
        batch: get::<Option<String>>(r, "batch_id")?
            .map(|b| uuid_text(BatchId::parse, &b))
            .transpose()?,
        outcome: AuditOutcome::parse(&get::<String>(r, "outcome")?)?,
        details: get(r, "details")?,
    })
}

/// Appends one audit event (and its target rows) in `tx`; returns its position.
async fn insert_audit_in(tx: &mut Tx, event: &NewAuditEvent) -> StoreResult<i64> {
    let targets = event
        .targets
        .iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(" ");
    let row = sqlx::query(
        "INSERT INTO audit_events (at, actor, action, targets, batch_id, outcome, details) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING seq",
    )
    .bind(to_micros(event.at))
    .bind(event.actor.clone())
    .bind(event.action.clone())
    .bind(targets)
    .bind(event.batch.map(|b| b.to_string()))
    .bind(event.outcome.as_str())
    .bind(event.details.clone())
    .fetch_one(&mut **tx)
    .await
    .map_err(backend)?;
    let seq: i64 = get(&row, "seq")?;
    let mut seen = std::collections::BTreeSet::new();
    for t in event.targets.iter().filter(|t| seen.insert(**t)) {
        sqlx::query("INSERT INTO audit_targets (audit_seq, device_id) VALUES ($1, $2)")
            .bind(seq)
            .bind(t.to_string())
            .execute(&mut **tx)
            .await
            .map_err(backend)?;
    }
    Ok(seq)
}

#[async_trait]
impl AuditLog for Backend {
    async fn append_audit(&self, event: NewAuditEvent) -> StoreResult<AuditEvent> {
        let mut tx = self.begin().await?;
        let seq = insert_audit_in(&mut tx, &event).await?;
        tx.commit().await.map_err(backend)?;
        Ok(AuditEvent::from_new(AuditId::from_i64(seq), event))
    }

    async fn list_audit(&self, query: &AuditQuery) -> StoreResult<Vec<AuditEvent>> {
        // Keyset paging on the primary key in either direction.
        let (cmp, dir, start) = match query.order {
            AuditOrder::OldestFirst => (">", "", 0),
            AuditOrder::NewestFirst => ("<", " DESC", i64::MAX),
        };
        let sql = format!(
            "SELECT seq, at, actor, action, targets, batch_id, outcome, details FROM audit_events \
             WHERE seq {cmp} $1 AND ($2 = '' OR EXISTS (SELECT 1 FROM audit_targets t \
             WHERE t.audit_seq = audit_events.seq AND t.device_id = $2)) \
             ORDER BY seq{dir} LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(query.after.map_or(start, |a| a.as_i64()))
            .bind(query.device.map(|d| d.to_string()).unwrap_or_default())
            .bind(i64::from(query.limit))
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.iter().map(row_audit).collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Tokens

const ENROLLMENT_TOKEN_COLS: &str =
    "id, label, secret_hash, expires_at, max_uses, uses, created_at";
const API_TOKEN_COLS: &str = "id, name, secret_hash, role, created_at, revoked_at";

fn hash_col(r: &DbRow) -> StoreResult<SecretHash> {
    let text: String = get(r, "secret_hash")?;
    SecretHash::from_stored(&text).ok_or_else(|| StoreError::Corrupt("secret hash".into()))
}

fn row_enrollment_token(r: &DbRow) -> StoreResult<EnrollmentToken> {
    Ok(EnrollmentToken {
        id: uuid_text(TokenId::parse, &get::<String>(r, "id")?)?,
        label: get(r, "label")?,
        secret_hash: hash_col(r)?,
        expires_at: opt_time_col(r, "expires_at")?,
        max_uses: get(r, "max_uses")?,
        uses: get(r, "uses")?,
        created_at: time_col(r, "created_at")?,
    })
}

fn row_api_token(r: &DbRow) -> StoreResult<ApiToken> {
    Ok(ApiToken {
        id: uuid_text(TokenId::parse, &get::<String>(r, "id")?)?,
        name: get(r, "name")?,
        secret_hash: hash_col(r)?,
        role: Role::parse(&get::<String>(r, "role")?)?,
        created_at: time_col(r, "created_at")?,
        revoked_at: opt_time_col(r, "revoked_at")?,
    })
}

#[async_trait]
impl TokenStore for Backend {
    async fn create_enrollment_token(&self, token: &EnrollmentToken) -> StoreResult<()> {
        let sql = format!(
            "INSERT INTO enrollment_tokens ({ENROLLMENT_TOKEN_COLS}) VALUES ({})",
            placeholders(1, 7)
        );
        sqlx::query(&sql)
            .bind(token.id.to_string())
            .bind(token.label.clone())
            .bind(token.secret_hash.as_str().to_owned())
            .bind(micros_opt(token.expires_at))
            .bind(token.max_uses)
            .bind(token.uses)
            .bind(to_micros(token.created_at))
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn consume_enrollment_token(
        &self,
        secret_hash: &SecretHash,
        now: OffsetDateTime,
    ) -> StoreResult<EnrollmentToken> {
        let mut tx = self.begin().await?;
        let sql = format!(
            "SELECT {ENROLLMENT_TOKEN_COLS} FROM enrollment_tokens WHERE secret_hash = $1{FOR_UPDATE}"
        );
        let row = sqlx::query(&sql)
            .bind(secret_hash.as_str().to_owned())
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?
            .ok_or_else(|| StoreError::NotFound("enrollment token".into()))?;
        let mut token = row_enrollment_token(&row)?;
        match token.refusal(now) {
            Some(TokenRefusal::Expired) => return Err(StoreError::TokenExpired),
            Some(TokenRefusal::Exhausted) => return Err(StoreError::TokenExhausted),
            None => {}
        }
        sqlx::query("UPDATE enrollment_tokens SET uses = uses + 1 WHERE id = $1")
            .bind(token.id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        token.uses += 1;
        Ok(token)
    }

    async fn list_enrollment_tokens(&self) -> StoreResult<Vec<EnrollmentToken>> {
        let sql = format!(
            "SELECT {ENROLLMENT_TOKEN_COLS} FROM enrollment_tokens ORDER BY created_at, id"
        );
        let rows = sqlx::query(&sql)
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.iter().map(row_enrollment_token).collect()
    }

    async fn create_api_token(&self, token: &ApiToken) -> StoreResult<()> {
        let sql = format!(
            "INSERT INTO api_tokens ({API_TOKEN_COLS}) VALUES ({})",
            placeholders(1, 6)
        );
        sqlx::query(&sql)
            .bind(token.id.to_string())
            .bind(token.name.clone())
            .bind(token.secret_hash.as_str().to_owned())
            .bind(token.role.as_str())
            .bind(to_micros(token.created_at))
            .bind(micros_opt(token.revoked_at))
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn api_token_by_hash(&self, secret_hash: &SecretHash) -> StoreResult<Option<ApiToken>> {
        let sql = format!("SELECT {API_TOKEN_COLS} FROM api_tokens WHERE secret_hash = $1");
        let row = sqlx::query(&sql)
            .bind(secret_hash.as_str().to_owned())
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.as_ref().map(row_api_token).transpose()
    }

    async fn list_api_tokens(&self) -> StoreResult<Vec<ApiToken>> {
        let sql = format!("SELECT {API_TOKEN_COLS} FROM api_tokens ORDER BY created_at, id");
        let rows = sqlx::query(&sql)
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.iter().map(row_api_token).collect()
    }

    async fn revoke_api_token(&self, id: TokenId, at: OffsetDateTime) -> StoreResult<()> {
        let done = sqlx::query(
            "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1",
        )
        .bind(id.to_string())
        .bind(to_micros(at))
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("api token {id}")));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Groups

async fn group_in(
    conn: &mut <super::Db as sqlx::Database>::Connection,
    col: &str,
    value: String,
) -> StoreResult<Option<Group>> {
    let sql = format!("SELECT id, name, filter, created_at FROM device_groups WHERE {col} = $1");
    let Some(row) = sqlx::query(&sql)
        .bind(value)
        .fetch_optional(&mut *conn)
        .await
        .map_err(backend)?
    else {
        return Ok(None);
    };
    let id = uuid_text(GroupId::parse, &get::<String>(&row, "id")?)?;
    let kind = match get::<Option<String>>(&row, "filter")? {
        Some(text) => GroupKind::Filter {
            filter: DeviceFilter::from_text(&text)?,
        },
        None => {
            let rows = sqlx::query(
                "SELECT device_id FROM group_members WHERE group_id = $1 ORDER BY device_id",
            )
            .bind(id.to_string())
            .fetch_all(&mut *conn)
            .await
            .map_err(backend)?;
            let members = rows
                .iter()
                .map(|r| uuid_text(DeviceId::parse, &get::<String>(r, "device_id")?))
                .collect::<StoreResult<Vec<_>>>()?;
            GroupKind::Static { members }
        }
    };
    Ok(Some(Group {
        id,
        name: get(&row, "name")?,
        kind,
        created_at: time_col(&row, "created_at")?,
    }))
}

async fn insert_members(tx: &mut Tx, id: GroupId, devices: &[DeviceId]) -> StoreResult<()> {
    for d in devices {
        sqlx::query(
            "INSERT INTO group_members (group_id, device_id) VALUES ($1, $2) \
             ON CONFLICT DO NOTHING",
        )
        .bind(id.to_string())
        .bind(d.to_string())
        .execute(&mut **tx)
        .await
        .map_err(|e| match backend(e) {
            StoreError::NotFound(_) => StoreError::NotFound(format!("device {d}")),
            other => other,
        })?;
    }
    Ok(())
}

/// The group to change the members of: `NotFound` if unknown, `Conflict` for a filter group.
async fn static_group_in(tx: &mut Tx, id: GroupId) -> StoreResult<()> {
    let sql = format!("SELECT filter FROM device_groups WHERE id = $1{FOR_UPDATE}");
    let row = sqlx::query(&sql)
        .bind(id.to_string())
        .fetch_optional(&mut **tx)
        .await
        .map_err(backend)?
        .ok_or_else(|| StoreError::NotFound(format!("group {id}")))?;
    if get::<Option<String>>(&row, "filter")?.is_some() {
        return Err(StoreError::Conflict(format!(
            "group {id} is a filter group; its members follow the filter"
        )));
    }
    Ok(())
}

#[async_trait]
impl GroupStore for Backend {
    async fn create_group(&self, group: &Group) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let filter = match &group.kind {
            GroupKind::Filter { filter } => Some(filter.to_text()),
            GroupKind::Static { .. } => None,
        };
        sqlx::query(
            "INSERT INTO device_groups (id, name, filter, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(group.id.to_string())
        .bind(group.name.clone())
        .bind(filter)
        .bind(to_micros(group.created_at))
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        if let GroupKind::Static { members } = &group.kind {
            insert_members(&mut tx, group.id, members).await?;
        }
        tx.commit().await.map_err(backend)
    }

    async fn group(&self, id: GroupId) -> StoreResult<Option<Group>> {
        let mut conn = self.pool.acquire().await.map_err(backend)?;
        group_in(&mut conn, "id", id.to_string()).await
    }

    async fn group_by_name(&self, name: &str) -> StoreResult<Option<Group>> {
        let mut conn = self.pool.acquire().await.map_err(backend)?;
        group_in(&mut conn, "name", name.to_owned()).await
    }

    async fn list_groups(&self) -> StoreResult<Vec<Group>> {
        let mut conn = self.pool.acquire().await.map_err(backend)?;
        let rows = sqlx::query("SELECT id FROM device_groups ORDER BY name, id")
            .fetch_all(&mut *conn)
            .await
            .map_err(backend)?;
        let mut groups = Vec::with_capacity(rows.len());
        for r in rows {
            if let Some(g) = group_in(&mut conn, "id", get::<String>(&r, "id")?).await? {
                groups.push(g);
            }
        }
        Ok(groups)
    }

    async fn rename_group(&self, id: GroupId, name: &str) -> StoreResult<()> {
        let done = sqlx::query("UPDATE device_groups SET name = $2 WHERE id = $1")
            .bind(id.to_string())
            .bind(name.to_owned())
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("group {id}")));
        }
        Ok(())
    }

    async fn delete_group(&self, id: GroupId) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM group_members WHERE group_id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        let done = sqlx::query("DELETE FROM device_groups WHERE id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("group {id}")));
        }
        tx.commit().await.map_err(backend)
    }

    async fn add_group_members(&self, id: GroupId, devices: &[DeviceId]) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        static_group_in(&mut tx, id).await?;
        insert_members(&mut tx, id, devices).await?;
        tx.commit().await.map_err(backend)
    }

    async fn remove_group_members(&self, id: GroupId, devices: &[DeviceId]) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        static_group_in(&mut tx, id).await?;
        for d in devices {
            sqlx::query("DELETE FROM group_members WHERE group_id = $1 AND device_id = $2")
                .bind(id.to_string())
                .bind(d.to_string())
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)
    }

    async fn group_member_ids(
        &self,
        id: GroupId,
        now: OffsetDateTime,
    ) -> StoreResult<Vec<DeviceId>> {
        let group = self
            .group(id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("group {id}")))?;
        match group.kind {
            GroupKind::Static { members } => Ok(members),
            GroupKind::Filter { filter } => {
                let sql = format!("{} ORDER BY id", device_select());
                let rows = sqlx::query(&sql)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(backend)?;
                let tags = group_tags(self).await?;
                let mut ids = Vec::new();
                for r in &rows {
                    let d = row_device(r)?;
                    let tag = d
                        .serial
                        .as_deref()
                        .and_then(|s| tags.get(&s.to_uppercase()))
                        .map(String::as_str);
                    if filter.matches(&d, now, tag) {
                        ids.push(d.id);
                    }
                }
                Ok(ids)
            }
        }
    }
}

/// Autopilot group tags by upper-case serial.
async fn group_tags(store: &Backend) -> StoreResult<std::collections::HashMap<String, String>> {
    let rows = sqlx::query(
        "SELECT serial_key, group_tag FROM autopilot_devices WHERE group_tag IS NOT NULL",
    )
    .fetch_all(&store.pool)
    .await
    .map_err(backend)?;
    rows.iter()
        .map(|r| {
            Ok((
                get::<String>(r, "serial_key")?,
                get::<String>(r, "group_tag")?,
            ))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Waves

const WAVE_COLS: &str =
    "batch_id, wave_index, kind, actor, devices, due_at, released_at, daily_cap";

fn row_wave(r: &DbRow) -> StoreResult<Wave> {
    let devices = get::<String>(r, "devices")?
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| uuid_text(DeviceId::parse, s))
        .collect::<StoreResult<Vec<_>>>()?;
    let index = get::<i64>(r, "wave_index")?;
    Ok(Wave {
        batch: uuid_text(BatchId::parse, &get::<String>(r, "batch_id")?)?,
        index: u32::try_from(index)
            .map_err(|_| StoreError::Corrupt(format!("wave index {index}")))?,
        kind: ActionKind::from_code(&get::<String>(r, "kind")?)?,
        actor: get(r, "actor")?,
        devices,
        due_at: time_col(r, "due_at")?,
        released_at: opt_time_col(r, "released_at")?,
        daily_cap: get::<Option<i64>>(r, "daily_cap")?
            .map(|c| u32::try_from(c).map_err(|_| StoreError::Corrupt(format!("daily cap {c}"))))
            .transpose()?,
    })
}

async fn insert_wave_in(
    conn: &mut <super::Db as sqlx::Database>::Connection,
    wave: &Wave,
) -> StoreResult<()> {
    let devices = wave
        .devices
        .iter()
        .map(DeviceId::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let sql = format!(
        "INSERT INTO batch_waves ({WAVE_COLS}) VALUES ({})",
        placeholders(1, 8)
    );
    sqlx::query(&sql)
        .bind(wave.batch.to_string())
        .bind(i64::from(wave.index))
        .bind(wave.kind.code())
        .bind(wave.actor.clone())
        .bind(devices)
        .bind(to_micros(wave.due_at))
        .bind(micros_opt(wave.released_at))
        .bind(wave.daily_cap.map(i64::from))
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    Ok(())
}

#[async_trait]
impl WaveStore for Backend {
    async fn save_wave(&self, wave: &Wave) -> StoreResult<()> {
        let mut conn = self.pool.acquire().await.map_err(backend)?;
        insert_wave_in(&mut conn, wave).await
    }

    async fn due_waves(&self, now: OffsetDateTime, limit: u32) -> StoreResult<Vec<Wave>> {
        let sql = format!(
            "SELECT {WAVE_COLS} FROM batch_waves WHERE released_at IS NULL AND due_at <= $1 \
             ORDER BY due_at, batch_id, wave_index LIMIT $2"
        );
        let rows = sqlx::query(&sql)
            .bind(to_micros(now))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.iter().map(row_wave).collect()
    }

    async fn waves_of_batch(&self, batch: BatchId) -> StoreResult<Vec<Wave>> {
        let sql =
            format!("SELECT {WAVE_COLS} FROM batch_waves WHERE batch_id = $1 ORDER BY wave_index");
        let rows = sqlx::query(&sql)
            .bind(batch.to_string())
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.iter().map(row_wave).collect()
    }

    async fn count_actions_created(
        &self,
        kinds: &[ActionKind],
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> StoreResult<u64> {
        if kinds.is_empty() {
            return Ok(0);
        }
        let sql = count_created_sql(kinds);
        let row = count_created_query(&sql, kinds, from, to)
            .fetch_one(&self.pool)
            .await
            .map_err(backend)?;
        count_col(&row)
    }
}

// ---------------------------------------------------------------------------------------------
// Schedules

const SCHEDULE_COLS: &[&str] = &[
    "id",
    "name",
    "group_id",
    "kind",
    "tz",
    "recurrence",
    "window_start",
    "window_end",
    "enabled",
    "next_run",
    "last_run",
];

fn bind_schedule<'q>(q: Q<'q>, s: &Schedule) -> Q<'q> {
    q.bind(s.id.to_string())
        .bind(s.name.clone())
        .bind(s.group.to_string())
        .bind(s.kind.code())
        .bind(s.tz.name().to_owned())
        .bind(s.recurrence.to_text())
        .bind(s.window.map(|w| seconds_of_day(w.start)))
        .bind(s.window.map(|w| seconds_of_day(w.end)))
        .bind(s.enabled)
        .bind(micros_opt(s.next_run))
        .bind(micros_opt(s.last_run))
}

fn row_schedule(r: &DbRow) -> StoreResult<Schedule> {
    let tz_name = get::<String>(r, "tz")?;
    let window = match (
        get::<Option<i64>>(r, "window_start")?,
        get::<Option<i64>>(r, "window_end")?,
    ) {
        (Some(start), Some(end)) => Some(MaintenanceWindow {
            start: time_of_seconds(start)?,
            end: time_of_seconds(end)?,
        }),
        _ => None,
    };
    Ok(Schedule {
        id: uuid_text(ScheduleId::parse, &get::<String>(r, "id")?)?,
        name: get(r, "name")?,
        group: uuid_text(GroupId::parse, &get::<String>(r, "group_id")?)?,
        kind: ActionKind::from_code(&get::<String>(r, "kind")?)?,
        tz: tz_name
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("time zone {tz_name:?}")))?,
        recurrence: Recurrence::from_text(&get::<String>(r, "recurrence")?)?,
        window,
        enabled: get(r, "enabled")?,
        next_run: opt_time_col(r, "next_run")?,
        last_run: opt_time_col(r, "last_run")?,
    })
}

async fn schedules_where(
    store: &Backend,
    tail: &str,
    bind: Option<i64>,
) -> StoreResult<Vec<Schedule>> {
    let sql = format!("SELECT {} FROM schedules {tail}", SCHEDULE_COLS.join(", "));
    let mut q = sqlx::query(&sql);
    if let Some(b) = bind {
        q = q.bind(b);
    }
    let rows = q.fetch_all(&store.pool).await.map_err(backend)?;
    rows.iter().map(row_schedule).collect()
}

#[async_trait]
impl ScheduleStore for Backend {
    async fn create_schedule(&self, schedule: &Schedule) -> StoreResult<()> {
        let sql = format!(
            "INSERT INTO schedules ({}) VALUES ({})",
            SCHEDULE_COLS.join(", "),
            placeholders(1, SCHEDULE_COLS.len())
        );
        bind_schedule(sqlx::query(&sql), schedule)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn schedule(&self, id: ScheduleId) -> StoreResult<Option<Schedule>> {
        let sql = format!(
            "SELECT {} FROM schedules WHERE id = $1",
            SCHEDULE_COLS.join(", ")
        );
        let row = sqlx::query(&sql)
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.as_ref().map(row_schedule).transpose()
    }

    async fn list_schedules(&self) -> StoreResult<Vec<Schedule>> {
        schedules_where(self, "ORDER BY name, id", None).await
    }

    async fn update_schedule(&self, schedule: &Schedule) -> StoreResult<()> {
        let sets: Vec<String> = SCHEDULE_COLS
            .iter()
            .enumerate()
            .skip(1)
            .map(|(i, c)| format!("{c} = ${}", i + 1))
            .collect();
        let sql = format!("UPDATE schedules SET {} WHERE id = $1", sets.join(", "));
        let done = bind_schedule(sqlx::query(&sql), schedule)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("schedule {}", schedule.id)));
        }
        Ok(())
    }

    async fn delete_schedule(&self, id: ScheduleId) -> StoreResult<()> {
        let done = sqlx::query("DELETE FROM schedules WHERE id = $1")
            .bind(id.to_string())
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("schedule {id}")));
        }
        Ok(())
    }

    async fn due_schedules(&self, now: OffsetDateTime) -> StoreResult<Vec<Schedule>> {
        schedules_where(
            self,
            "WHERE enabled AND next_run IS NOT NULL AND next_run <= $1 ORDER BY next_run, id",
            Some(to_micros(now)),
        )
        .await
    }

    async fn save_batch_window(&self, batch: BatchId, window: &BatchWindow) -> StoreResult<()> {
        let mut conn = self.pool.acquire().await.map_err(backend)?;
        insert_batch_window_in(&mut conn, batch, window).await
    }

    async fn batch_window(&self, batch: BatchId) -> StoreResult<Option<BatchWindow>> {
        let row = sqlx::query(
            "SELECT window_start, window_end, tz FROM batch_windows WHERE batch_id = $1",
        )
        .bind(batch.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        row.as_ref().map(row_batch_window).transpose()
    }

    async fn pending_action_windows(
        &self,
        device: DeviceId,
    ) -> StoreResult<Vec<(ActionId, BatchWindow)>> {
        let rows = sqlx::query(
            "SELECT a.id AS action_id, w.window_start, w.window_end, w.tz \
             FROM actions a JOIN batch_windows w ON w.batch_id = a.batch_id \
             WHERE a.device_id = $1 AND a.state = $2 ORDER BY a.created_at, a.seq",
        )
        .bind(device.to_string())
        .bind(ActionState::Pending.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(|r| {
                Ok((
                    uuid_text(ActionId::parse, &get::<String>(r, "action_id")?)?,
                    row_batch_window(r)?,
                ))
            })
            .collect()
    }
}

async fn insert_batch_window_in(
    conn: &mut <super::Db as sqlx::Database>::Connection,
    batch: BatchId,
    window: &BatchWindow,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO batch_windows (batch_id, window_start, window_end, tz) \
         VALUES ($1, $2, $3, $4)",
    )
    .bind(batch.to_string())
    .bind(seconds_of_day(window.window.start))
    .bind(seconds_of_day(window.window.end))
    .bind(window.tz.name().to_owned())
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    Ok(())
}

fn row_batch_window(r: &DbRow) -> StoreResult<BatchWindow> {
    let tz_name = get::<String>(r, "tz")?;
    Ok(BatchWindow {
        window: MaintenanceWindow {
            start: time_of_seconds(get::<i64>(r, "window_start")?)?,
            end: time_of_seconds(get::<i64>(r, "window_end")?)?,
        },
        tz: tz_name
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("time zone {tz_name:?}")))?,
    })
}

// ---------------------------------------------------------------------------------------------
// Autopilot registry

const AUTOPILOT_COLS: &str =
    "serial_key, serial, product_id, hardware_hash, group_tag, assigned_user";

fn row_autopilot(r: &DbRow) -> StoreResult<AutopilotRecord> {
    Ok(AutopilotRecord {
        serial: get(r, "serial")?,
        product_id: get(r, "product_id")?,
        hardware_hash: get(r, "hardware_hash")?,
        group_tag: get(r, "group_tag")?,
        assigned_user: get(r, "assigned_user")?,
    })
}

#[async_trait]
impl AutopilotRegistry for Backend {
    async fn upsert_autopilot(&self, records: &[AutopilotRecord]) -> StoreResult<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        let sql = format!(
            "INSERT INTO autopilot_devices ({AUTOPILOT_COLS}) VALUES ({}) \
             ON CONFLICT (serial_key) DO UPDATE SET serial = excluded.serial, \
             product_id = excluded.product_id, hardware_hash = excluded.hardware_hash, \
             group_tag = excluded.group_tag, assigned_user = excluded.assigned_user",
            placeholders(1, 6)
        );
        for r in records {
            sqlx::query(&sql)
                .bind(AutopilotRecord::serial_key(&r.serial))
                .bind(r.serial.clone())
                .bind(r.product_id.clone())
                .bind(r.hardware_hash.clone())
                .bind(r.group_tag.clone())
                .bind(r.assigned_user.clone())
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)
    }

    async fn autopilot_record(&self, serial: &str) -> StoreResult<Option<AutopilotRecord>> {
        let sql = format!("SELECT {AUTOPILOT_COLS} FROM autopilot_devices WHERE serial_key = $1");
        let row = sqlx::query(&sql)
            .bind(AutopilotRecord::serial_key(serial))
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.as_ref().map(row_autopilot).transpose()
    }

    async fn autopilot_records(&self) -> StoreResult<Vec<(AutopilotRecord, Option<DeviceId>)>> {
        let sql = format!("SELECT {AUTOPILOT_COLS} FROM autopilot_devices ORDER BY serial_key");
        let rows = sqlx::query(&sql)
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        let links = sqlx::query(
            "SELECT id, serial FROM devices WHERE serial IS NOT NULL ORDER BY enrolled_at",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        let mut by_serial = std::collections::HashMap::new();
        for l in &links {
            // Later enrollments overwrite earlier ones: the newest device wins.
            by_serial.insert(
                AutopilotRecord::serial_key(&get::<String>(l, "serial")?),
                uuid_text(DeviceId::parse, &get::<String>(l, "id")?)?,
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

    async fn autopilot_group_tags(&self) -> StoreResult<std::collections::HashMap<String, String>> {
        group_tags(self).await
    }
}

// ---------------------------------------------------------------------------------------------
// Web console sessions

#[async_trait]
impl ConsoleSessionStore for Backend {
    async fn create_console_session(&self, session: &ConsoleSession) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO console_sessions (id_hash, token_id, csrf_secret, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(session.id_hash.as_str().to_owned())
        .bind(session.token.to_string())
        .bind(session.csrf_secret.clone())
        .bind(to_micros(session.created_at))
        .bind(to_micros(session.expires_at))
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn console_session(
        &self,
        id_hash: &SecretHash,
        now: OffsetDateTime,
    ) -> StoreResult<Option<(ConsoleSession, ApiToken)>> {
        let sql = format!(
            "SELECT s.id_hash, s.token_id, s.csrf_secret, s.created_at AS session_created_at, \
             s.expires_at, {} FROM console_sessions s JOIN api_tokens t ON t.id = s.token_id \
             WHERE s.id_hash = $1 AND s.expires_at > $2",
            API_TOKEN_COLS
                .split(", ")
                .map(|c| format!("t.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let row = sqlx::query(&sql)
            .bind(id_hash.as_str().to_owned())
            .bind(to_micros(now))
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        let Some(r) = row else {
            return Ok(None);
        };
        let stored_hash: String = get(&r, "id_hash")?;
        let session = ConsoleSession {
            id_hash: SecretHash::from_stored(&stored_hash)
                .ok_or_else(|| StoreError::Corrupt("console session id hash".into()))?,
            token: uuid_text(TokenId::parse, &get::<String>(&r, "token_id")?)?,
            csrf_secret: get(&r, "csrf_secret")?,
            created_at: time_col(&r, "session_created_at")?,
            expires_at: time_col(&r, "expires_at")?,
        };
        Ok(Some((session, row_api_token(&r)?)))
    }

    async fn delete_console_session(&self, id_hash: &SecretHash) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM console_sessions WHERE id_hash = $1")
            .bind(id_hash.as_str().to_owned())
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete_expired_console_sessions(&self, now: OffsetDateTime) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM console_sessions WHERE expires_at <= $1")
            .bind(to_micros(now))
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(done.rows_affected())
    }
}

// ---------------------------------------------------------------------------------------------
// Webhooks

const WEBHOOK_COLS: &str = "id, name, url, secret, events, enabled, created_at, notify_since";
const DELIVERY_COLS: &str = "id, webhook_id, event, action_id, payload, attempts, \
     next_attempt_at, delivered_at, last_status, last_error, created_at";

fn row_webhook(r: &DbRow) -> StoreResult<Webhook> {
    let events = get::<String>(r, "events")?
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| Ok(WebhookEvent::parse(s)?))
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(Webhook {
        id: uuid_text(WebhookId::parse, &get::<String>(r, "id")?)?,
        name: get(r, "name")?,
        url: get(r, "url")?,
        secret: get(r, "secret")?,
        events,
        enabled: get(r, "enabled")?,
        created_at: time_col(r, "created_at")?,
        notify_since: time_col(r, "notify_since")?,
    })
}

fn row_delivery(r: &DbRow) -> StoreResult<Delivery> {
    let attempts = get::<i64>(r, "attempts")?;
    let last_status = get::<Option<i64>>(r, "last_status")?;
    Ok(Delivery {
        id: uuid_text(DeliveryId::parse, &get::<String>(r, "id")?)?,
        webhook: uuid_text(WebhookId::parse, &get::<String>(r, "webhook_id")?)?,
        event: WebhookEvent::parse(&get::<String>(r, "event")?)?,
        action: get::<Option<String>>(r, "action_id")?
            .map(|a| uuid_text(ActionId::parse, &a))
            .transpose()?,
        payload: get(r, "payload")?,
        attempts: u32::try_from(attempts)
            .map_err(|_| StoreError::Corrupt(format!("delivery attempts {attempts}")))?,
        next_attempt_at: opt_time_col(r, "next_attempt_at")?,
        delivered_at: opt_time_col(r, "delivered_at")?,
        last_status: last_status
            .map(|s| u16::try_from(s).map_err(|_| StoreError::Corrupt(format!("HTTP status {s}"))))
            .transpose()?,
        last_error: get(r, "last_error")?,
        created_at: time_col(r, "created_at")?,
    })
}

#[async_trait]
impl WebhookStore for Backend {
    async fn create_webhook(&self, webhook: &Webhook) -> StoreResult<()> {
        let events = webhook
            .events
            .iter()
            .map(|e| e.as_str())
            .collect::<Vec<_>>()
            .join(",");
        let sql = format!(
            "INSERT INTO webhooks ({WEBHOOK_COLS}) VALUES ({})",
            placeholders(1, 8)
        );
        sqlx::query(&sql)
            .bind(webhook.id.to_string())
            .bind(webhook.name.clone())
            .bind(webhook.url.clone())
            .bind(webhook.secret.clone())
            .bind(events)
            .bind(webhook.enabled)
            .bind(to_micros(webhook.created_at))
            .bind(to_micros(webhook.notify_since))
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn webhook(&self, id: WebhookId) -> StoreResult<Option<Webhook>> {
        let sql = format!("SELECT {WEBHOOK_COLS} FROM webhooks WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.as_ref().map(row_webhook).transpose()
    }

    async fn list_webhooks(&self) -> StoreResult<Vec<Webhook>> {
        let sql = format!("SELECT {WEBHOOK_COLS} FROM webhooks ORDER BY created_at, id");
        let rows = sqlx::query(&sql)
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.iter().map(row_webhook).collect()
    }

    async fn delete_webhook(&self, id: WebhookId) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        // Explicit rather than relying on ON DELETE CASCADE alone: SQLite applies it only with
        // foreign keys on, which a tool opening the file may not have set.
        sqlx::query("DELETE FROM webhook_deliveries WHERE webhook_id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        let done = sqlx::query("DELETE FROM webhooks WHERE id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("webhook {id}")));
        }
        tx.commit().await.map_err(backend)
    }

    async fn set_webhook_enabled(
        &self,
        id: WebhookId,
        enabled: bool,
        at: OffsetDateTime,
    ) -> StoreResult<()> {
        // One statement, so that two admins toggling at once cannot leave `enabled` and
        // `notify_since` from different requests.
        let done = sqlx::query(
            "UPDATE webhooks SET notify_since = CASE WHEN $2 AND NOT enabled THEN $3 \
             ELSE notify_since END, enabled = $2 WHERE id = $1",
        )
        .bind(id.to_string())
        .bind(enabled)
        .bind(to_micros(at))
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("webhook {id}")));
        }
        Ok(())
    }

    async fn unnotified_actions(
        &self,
        webhook: WebhookId,
        states: &[ActionState],
        since: OffsetDateTime,
        limit: u32,
    ) -> StoreResult<Vec<Action>> {
        if states.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {ACTION_COLS} FROM actions WHERE updated_at >= $2 AND state IN ({}) \
             AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d \
                             WHERE d.webhook_id = $1 AND d.action_id = actions.id \
                             AND d.event = CASE actions.state WHEN 'expired' THEN 'stuck' \
                                           ELSE actions.state END) \
             ORDER BY updated_at, seq LIMIT $3",
            placeholders(4, states.len())
        );
        let mut q = sqlx::query(&sql)
            .bind(webhook.to_string())
            .bind(to_micros(since))
            .bind(i64::from(limit));
        for s in states {
            q = q.bind(s.as_str());
        }
        let rows = q.fetch_all(&self.pool).await.map_err(backend)?;
        rows.iter().map(row_action).collect()
    }

    async fn unnotified_stale_actions(
        &self,
        webhook: WebhookId,
        states: &[ActionState],
        since: OffsetDateTime,
        updated_until: OffsetDateTime,
        limit: u32,
    ) -> StoreResult<Vec<Action>> {
        if states.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {ACTION_COLS} FROM actions WHERE updated_at >= $2 AND updated_at <= $3 \
             AND state IN ({}) \
             AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d \
                             WHERE d.webhook_id = $1 AND d.action_id = actions.id \
                             AND d.event = 'stuck') \
             ORDER BY updated_at, seq LIMIT $4",
            placeholders(5, states.len())
        );
        let mut q = sqlx::query(&sql)
            .bind(webhook.to_string())
            .bind(to_micros(since))
            .bind(to_micros(updated_until))
            .bind(i64::from(limit));
        for s in states {
            q = q.bind(s.as_str());
        }
        let rows = q.fetch_all(&self.pool).await.map_err(backend)?;
        rows.iter().map(row_action).collect()
    }

    async fn enqueue_delivery(&self, d: &Delivery) -> StoreResult<bool> {
        let sql = format!(
            "INSERT INTO webhook_deliveries ({DELIVERY_COLS}) VALUES ({}) \
             ON CONFLICT (webhook_id, action_id, event) DO NOTHING",
            placeholders(1, 11)
        );
        let done = sqlx::query(&sql)
            .bind(d.id.to_string())
            .bind(d.webhook.to_string())
            .bind(d.event.as_str())
            .bind(d.action.map(|a| a.to_string()))
            .bind(d.payload.clone())
            .bind(i64::from(d.attempts))
            .bind(micros_opt(d.next_attempt_at))
            .bind(micros_opt(d.delivered_at))
            .bind(d.last_status.map(i64::from))
            .bind(d.last_error.clone())
            .bind(to_micros(d.created_at))
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn delivery(&self, id: DeliveryId) -> StoreResult<Option<Delivery>> {
        let sql = format!("SELECT {DELIVERY_COLS} FROM webhook_deliveries WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.as_ref().map(row_delivery).transpose()
    }

    async fn due_deliveries(&self, now: OffsetDateTime, limit: u32) -> StoreResult<Vec<Delivery>> {
        let sql = format!(
            "SELECT {DELIVERY_COLS} FROM webhook_deliveries \
             WHERE delivered_at IS NULL AND next_attempt_at <= $1 \
             AND EXISTS (SELECT 1 FROM webhooks w \
                         WHERE w.id = webhook_deliveries.webhook_id AND w.enabled) \
             ORDER BY next_attempt_at, seq LIMIT $2"
        );
        let rows = sqlx::query(&sql)
            .bind(to_micros(now))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.iter().map(row_delivery).collect()
    }

    async fn claim_delivery(
        &self,
        id: DeliveryId,
        attempts_seen: u32,
        retry_at: Option<OffsetDateTime>,
    ) -> StoreResult<bool> {
        // One conditional UPDATE: under concurrent claims PostgreSQL re-checks the WHERE clause
        // after the first claimer commits (attempts moved on), so only one process wins.
        let done = sqlx::query(
            "UPDATE webhook_deliveries SET attempts = attempts + 1, next_attempt_at = $3 \
             WHERE id = $1 AND attempts = $2 AND delivered_at IS NULL",
        )
        .bind(id.to_string())
        .bind(i64::from(attempts_seen))
        .bind(micros_opt(retry_at))
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        if done.rows_affected() == 1 {
            return Ok(true);
        }
        match self.delivery(id).await? {
            Some(_) => Ok(false),
            None => Err(StoreError::NotFound(format!("delivery {id}"))),
        }
    }

    async fn finish_delivery(&self, id: DeliveryId, result: &DeliveryResult) -> StoreResult<()> {
        let done = sqlx::query(
            "UPDATE webhook_deliveries SET last_status = $2, last_error = $3, delivered_at = $4, \
             next_attempt_at = $5 WHERE id = $1",
        )
        .bind(id.to_string())
        .bind(result.status.map(i64::from))
        .bind(result.error.clone())
        .bind(micros_opt(result.delivered_at))
        .bind(micros_opt(result.next_attempt_at))
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("delivery {id}")));
        }
        Ok(())
    }

    async fn deliveries_of_webhook(
        &self,
        webhook: WebhookId,
        limit: u32,
    ) -> StoreResult<Vec<Delivery>> {
        let sql = format!(
            "SELECT {DELIVERY_COLS} FROM webhook_deliveries WHERE webhook_id = $1 \
             ORDER BY created_at DESC, seq DESC LIMIT $2"
        );
        let rows = sqlx::query(&sql)
            .bind(webhook.to_string())
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.iter().map(row_delivery).collect()
    }
}

// ---------------------------------------------------------------------------------------------
// The support trail

fn row_trail(r: &DbRow) -> StoreResult<TrailMessage> {
    let direction: String = get(r, "direction")?;
    Ok(TrailMessage {
        device: uuid_text(DeviceId::parse, &get::<String>(r, "device_id")?)?,
        at: time_col(r, "at")?,
        direction: Direction::parse(&direction)
            .ok_or_else(|| StoreError::Corrupt(format!("trail direction {direction:?}")))?,
        session_id: get(r, "session_id")?,
        msg_id: get(r, "msg_id")?,
        body: get(r, "body")?,
        size: usize::try_from(get::<i64>(r, "size")?)
            .map_err(|_| StoreError::Corrupt("trail size".into()))?,
    })
}

#[async_trait]
impl SupportTrail for Backend {
    async fn append_trail(&self, messages: &[TrailMessage], keep: u32) -> StoreResult<()> {
        if messages.is_empty() || keep == 0 {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        let mut devices: Vec<DeviceId> = Vec::new();
        for m in messages {
            sqlx::query(
                "INSERT INTO device_messages (device_id, at, direction, session_id, msg_id, body, \
                 size) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(m.device.to_string())
            .bind(to_micros(m.at))
            .bind(m.direction.as_str())
            .bind(m.session_id.clone())
            .bind(m.msg_id.clone())
            .bind(m.body.clone())
            .bind(i64::try_from(m.size).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
            if !devices.contains(&m.device) {
                devices.push(m.device);
            }
        }
        for device in devices {
            // Everything older than the device's `keep`-th newest message goes.
            sqlx::query(
                "DELETE FROM device_messages WHERE device_id = $1 AND seq < (SELECT MIN(seq) \
                 FROM (SELECT seq FROM device_messages WHERE device_id = $1 ORDER BY seq DESC \
                 LIMIT $2) AS newest)",
            )
            .bind(device.to_string())
            .bind(i64::from(keep))
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)
    }

    async fn trail(&self, device: DeviceId, limit: u32) -> StoreResult<Vec<TrailMessage>> {
        let rows = sqlx::query(
            "SELECT device_id, at, direction, session_id, msg_id, body, size FROM device_messages \
             WHERE device_id = $1 ORDER BY seq DESC LIMIT $2",
        )
        .bind(device.to_string())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter().map(row_trail).collect()
    }
}
