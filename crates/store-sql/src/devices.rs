//! Devices: the row and its reads, lookups by each identity, and the filtered, sorted, paged list.

use async_trait::async_trait;
use redeploy_core::action::{ActionKind, ActionState, ReadinessInputs};
use redeploy_core::device::{Device, EnrollmentType, JoinEvidence, JoinType, MessageSeq};
use redeploy_core::device_condition::{Comparison, DeviceCondition, TextField, TextOp, TimeField};
use redeploy_core::ids::{DeviceId, GroupId};
use redeploy_core::preflight::HR_WINRE_DISABLED;
use redeploy_core::store::{
    device_sort_key, from_micros, Cursor, CursorKey, DeviceQuery, DeviceSort, DeviceStore, Page,
    StoreError, StoreResult, NEVER_SEEN_KEY,
};
use sea_query::{
    Alias, Cond, Expr, Func, LikeExpr, Order, Query, SelectStatement, SimpleExpr, UpdateStatement,
};
use time::{Duration, OffsetDateTime};

use crate::dialect::{Arg, Dialect, On, SqlRow};
use crate::query::{built, insert_row, lit, v, written, Shapes};
use crate::schema::{Actions as A, Devices as Dv, GroupMembers as Gm};
use crate::sql::RowExt;
use crate::sql::Sql;
use crate::{SqlStore, Tx};

pub(crate) const DEVICE_COLS: [Dv; 33] = [
    Dv::Id,
    Dv::Name,
    Dv::HardwareId,
    Dv::MdmDeviceId,
    Dv::Serial,
    Dv::Manufacturer,
    Dv::Model,
    Dv::OsVersion,
    Dv::OsPlatform,
    Dv::JoinType,
    Dv::EnrollmentType,
    Dv::AadDeviceId,
    Dv::DomainName,
    Dv::DnsComputerName,
    Dv::TotalRamMb,
    Dv::TotalStorageMb,
    Dv::LastSeen,
    Dv::CurrentUserName,
    Dv::PrimaryUser,
    Dv::Shared,
    Dv::CertThumbprint,
    Dv::CertNotAfter,
    Dv::LocalResetDesired,
    Dv::LocalResetReported,
    Dv::AutopilotStatus,
    Dv::AutopilotLastError,
    Dv::WinreEnabled,
    Dv::WinreCheckedAt,
    Dv::EnrolledAt,
    Dv::UnenrolledAt,
    Dv::LastSignInUser,
    Dv::LastSignInAt,
    Dv::JoinEvidence,
];

/// Every device, to be narrowed and ordered: rows for [`row_device`]. Beside [`DEVICE_COLS`]
/// it reads the last message taken, which only the session step writes
/// ([`step_device_row_in`]).
pub(crate) fn select_devices() -> SelectStatement {
    Query::select()
        .columns(DEVICE_COLS)
        .columns([Dv::DmSessionId, Dv::DmMsgId])
        .from(Dv::Table)
        .to_owned()
}

/// What one device message changes in its device row, written by [`step_device_row_in`] as one
/// UPDATE: the message sequence moved on (compare-and-set), the device's new values, and when it
/// was last seen by whom.
pub(crate) struct DeviceRowStep<'a> {
    pub(crate) id: DeviceId,
    pub(crate) sequence: Option<&'a (MessageSeq, MessageSeq)>,
    pub(crate) update: Option<&'a Device>,
    /// The device `update` was made from: only the fields that differ are written.
    pub(crate) was: Option<&'a Device>,
    pub(crate) seen: Option<(OffsetDateTime, Option<String>)>,
}

/// Writes `step` in one statement (a check-in changes its device row once, not once per kind of
/// change). With a sequence, no row changed means another request took this message meanwhile
/// ([`StoreError::SequenceMoved`]); without one, that the device is unknown.
pub(crate) async fn step_device_row_in<D: Dialect>(
    tx: &mut Tx<D>,
    shapes: &Shapes,
    step: DeviceRowStep<'_>,
) -> StoreResult<()> {
    let Some(update) = RowUpdate::of(&step)? else {
        return Ok(());
    };
    let changed = update.sql::<D>(shapes, false)?.execute(tx.on()).await?;
    device_row_stepped(&step, changed)
}

/// What no row changed by a [`RowUpdate`] means: the message taken meanwhile, or no such
/// device.
pub(crate) fn device_row_stepped(step: &DeviceRowStep<'_>, changed: u64) -> StoreResult<()> {
    if changed > 0 {
        return Ok(());
    }
    Err(match step.sequence {
        Some(_) => StoreError::SequenceMoved,
        None => StoreError::NotFound(format!("device {}", step.id)),
    })
}

/// The UPDATE that writes a [`DeviceRowStep`]: the columns it sets, in order, with their values,
/// then the row's id and (with a sequence) the message it expects to follow.
pub(crate) struct RowUpdate {
    pub(crate) set: Vec<(Dv, Arg)>,
    id: DeviceId,
    pub(crate) after: Option<(String, i64)>,
    /// Which columns are set in which order, and whether a sequence is compared: the
    /// statement's shape.
    shape: u64,
}

impl RowUpdate {
    /// `None` when `step` changes nothing.
    pub(crate) fn of(step: &DeviceRowStep<'_>) -> StoreResult<Option<Self>> {
        // Bits 0..33: the columns of DEVICE_COLS that changed; then whether the last-seen pair
        // and the sequence pair come after them.
        let mut shape = 0u64;
        let mut set: Vec<(Dv, Arg)> = match (step.update, step.was) {
            // Only what changed: an unchanged indexed column costs no index write.
            (Some(d), Some(was)) => DEVICE_COLS
                .into_iter()
                .zip(device_args(d).into_iter().zip(device_args(was)))
                .enumerate()
                .skip(1)
                .filter(|(_, (_, (new, old)))| new != old)
                .map(|(i, (col, (new, _)))| {
                    shape |= 1 << i;
                    (col, new)
                })
                .collect(),
            (Some(d), None) => {
                shape = (1 << DEVICE_COLS.len()) - 2;
                DEVICE_COLS
                    .into_iter()
                    .zip(device_args(d))
                    .skip(1)
                    .collect()
            }
            (None, _) => Vec::new(),
        };
        let mut put = |col: Dv, value: Arg| match set.iter_mut().find(|(c, _)| *c == col) {
            Some(slot) => slot.1 = value,
            None => set.push((col, value)),
        };
        if let Some((at, user)) = &step.seen {
            put(Dv::LastSeen, Arg::from(*at));
            put(Dv::CurrentUserName, Arg::from(user.clone()));
            shape |= 1 << 40;
        }
        let as_int =
            |n: u64| i64::try_from(n).map_err(|_| StoreError::Corrupt(format!("MsgID {n}")));
        let mut after = None;
        if let Some((last, next)) = step.sequence {
            put(Dv::DmSessionId, Arg::from(next.session_id.clone()));
            put(Dv::DmMsgId, Arg::from(as_int(next.msg_id)?));
            after = Some((last.session_id.clone(), as_int(last.msg_id)?));
            shape |= 1 << 41;
        }
        if set.is_empty() {
            return Ok(None);
        }
        Ok(Some(Self {
            set,
            id: step.id,
            after,
            shape,
        }))
    }

    /// The statement, `RETURNING id` when `returning`.
    pub(crate) fn statement(&self, returning: bool) -> UpdateStatement {
        let mut update = Query::update();
        update
            .table(Dv::Table)
            .values(self.set.iter().map(|(c, a)| (*c, v(a.clone()))))
            .and_where(Expr::col(Dv::Id).eq(v(self.id)));
        if let Some((session, msg)) = &self.after {
            update
                .and_where(Expr::col(Dv::DmSessionId).eq(v(session.clone())))
                .and_where(Expr::col(Dv::DmMsgId).eq(v(*msg)));
        }
        if returning {
            update.returning_col(Dv::Id);
        }
        update
    }

    /// Its arguments, in the order the statement's text takes them.
    pub(crate) fn args(&self) -> Vec<Arg> {
        let mut args: Vec<Arg> = self.set.iter().map(|(_, a)| a.clone()).collect();
        args.push(Arg::from(self.id));
        if let Some((session, msg)) = &self.after {
            args.push(Arg::from(session.clone()));
            args.push(Arg::from(*msg));
        }
        args
    }

    /// The shape key of the statement (with `returning` or not).
    pub(crate) fn shape(&self, returning: bool) -> u64 {
        self.shape | (u64::from(returning) << 42)
    }

    /// The statement in `D`'s SQL, its text written once per shape.
    pub(crate) fn sql<D: Dialect>(&self, shapes: &Shapes, returning: bool) -> StoreResult<Sql> {
        shapes.sql(("device_row", self.shape(returning)), self.args(), || {
            written::<D>(&self.statement(returning))
        })
    }
}

/// The values of [`DEVICE_COLS`], in order.
pub(crate) fn device_values(d: &Device) -> [SimpleExpr; 33] {
    device_args(d).map(v)
}

/// The values of [`DEVICE_COLS`] as arguments, in order.
pub(crate) fn device_args(d: &Device) -> [Arg; 33] {
    [
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
        d.last_sign_in_user.clone().into(),
        d.last_sign_in_at.into(),
        d.join_evidence.as_str().into(),
    ]
}

/// `COALESCE(col, '')` with the empty string written inline: the expression of the
/// `devices_serial_sort` index (migration 20261126000007), which neither a bound `''` nor
/// sea-query's `if_null` (`IFNULL` on SQLite) would match.
fn or_empty(col: Dv) -> SimpleExpr {
    Func::coalesce([Expr::col(col).into(), SimpleExpr::Constant("".into())]).into()
}

/// The dialect's literal of the instant that stands for "never seen" ([`Dialect::NEVER_SEEN`]):
/// a typed literal on PostgreSQL, which no sea-query value writes, so it goes in as SQL text.
fn never_seen<D: Dialect>() -> SimpleExpr {
    Expr::cust(D::NEVER_SEEN)
}

/// Sets `values` on device `id`; `NotFound` if there is no such device.
pub(crate) async fn set_device_values<D: Dialect>(
    on: On<'_, D>,
    id: DeviceId,
    values: impl IntoIterator<Item = (Dv, SimpleExpr)>,
) -> StoreResult<()> {
    let update = Query::update()
        .table(Dv::Table)
        .values(values)
        .and_where(Expr::col(Dv::Id).eq(v(id)))
        .to_owned();
    if built::<D>(&update)?.execute(on).await? == 0 {
        return Err(StoreError::NotFound(format!("device {id}")));
    }
    Ok(())
}

/// A device from a row of [`select_devices`].
pub(crate) fn row_device(r: &impl SqlRow) -> StoreResult<Device> {
    Ok(Device {
        id: r.id("id")?,
        name: r.string("name")?,
        hw_dev_id: r.text("hardware_id")?,
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
        last_sign_in_user: r.text("last_sign_in_user")?,
        last_sign_in_at: r.time("last_sign_in_at")?,
        join_evidence: JoinEvidence::parse(&r.string("join_evidence")?)?,
        last_message: MessageSeq {
            session_id: r.string("dm_session_id")?,
            msg_id: u64::try_from(r.i64("dm_msg_id")?)
                .map_err(|_| StoreError::Corrupt("column dm_msg_id: negative".into()))?,
        },
    })
}

pub(crate) async fn insert_device<D: Dialect>(tx: &mut Tx<D>, d: &Device) -> StoreResult<()> {
    let insert = insert_row(Dv::Table, DEVICE_COLS, device_values(d))?;
    built::<D>(&insert)?.execute(tx.on()).await?;
    Ok(())
}

pub(crate) async fn update_device_in<D: Dialect>(tx: &mut Tx<D>, d: &Device) -> StoreResult<()> {
    let values = DEVICE_COLS.into_iter().zip(device_values(d)).skip(1);
    set_device_values(tx.on(), d.id, values).await
}

/// Marks `id` seen at `at` by `current_user`; `NotFound` for an unknown device.
pub(crate) async fn record_seen_on<D: Dialect>(
    on: On<'_, D>,
    id: DeviceId,
    at: OffsetDateTime,
    current_user: Option<String>,
) -> StoreResult<()> {
    let values = [
        (Dv::LastSeen, v(at)),
        (Dv::CurrentUserName, v(current_user)),
    ];
    set_device_values(on, id, values).await
}

impl<D: Dialect> SqlStore<D> {
    async fn device_where(&self, col: Dv, value: SimpleExpr) -> StoreResult<Option<Device>> {
        let select = select_devices()
            .and_where(Expr::col(col).eq(value))
            .order_by(Dv::EnrolledAt, Order::Desc)
            .limit(1)
            .to_owned();
        let row = built::<D>(&select)?.fetch_optional(self.db()).await?;
        row.as_ref().map(row_device).transpose()
    }
}

#[async_trait]
impl<D: Dialect> DeviceStore for SqlStore<D> {
    async fn device(&self, id: DeviceId) -> StoreResult<Option<Device>> {
        self.device_where(Dv::Id, v(id)).await
    }

    async fn device_by_cert_thumbprint(&self, thumbprint: &str) -> StoreResult<Option<Device>> {
        self.device_where(Dv::CertThumbprint, v(thumbprint.to_ascii_lowercase()))
            .await
    }

    async fn device_by_mdm_device_id(&self, mdm_device_id: &str) -> StoreResult<Option<Device>> {
        self.device_where(Dv::MdmDeviceId, v(mdm_device_id)).await
    }

    async fn device_by_hw_dev_id(&self, hw_dev_id: &str) -> StoreResult<Option<Device>> {
        self.device_where(Dv::HardwareId, v(hw_dev_id)).await
    }

    async fn devices_by_ids(
        &self,
        ids: &[DeviceId],
    ) -> StoreResult<std::collections::HashMap<DeviceId, Device>> {
        let mut found = std::collections::HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let select = select_devices()
                .and_where(Expr::col(Dv::Id).is_in(chunk.iter().map(|id| v(*id))))
                .to_owned();
            for row in built::<D>(&select)?.fetch_all(self.db()).await? {
                let device = row_device(&row)?;
                found.insert(device.id, device);
            }
        }
        Ok(found)
    }

    async fn devices_by_identity(
        &self,
        hw_dev_id: Option<&str>,
        serial: Option<&str>,
        aad_device_id: Option<&str>,
    ) -> StoreResult<Vec<Device>> {
        let mut any = Cond::any();
        for (col, value) in [
            (Dv::HardwareId, hw_dev_id),
            (Dv::Serial, serial),
            (Dv::AadDeviceId, aad_device_id),
        ] {
            if let Some(value) = value {
                // The same expression as the `devices_*_identity` indexes.
                any = any.add(
                    Expr::expr(Func::lower(Expr::col(col))).eq(v(value.trim().to_lowercase())),
                );
            }
        }
        if any.is_empty() {
            return Ok(Vec::new());
        }
        let select = select_devices()
            .cond_where(any)
            .order_by(Dv::EnrolledAt, Order::Asc)
            .order_by(Dv::Id, Order::Asc)
            .to_owned();
        let rows = built::<D>(&select)?.fetch_all(self.db()).await?;
        rows.iter().map(row_device).collect()
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
        let values = [(Dv::PrimaryUser, v(user)), (Dv::Shared, v(shared))];
        set_device_values(tx.on(), id, values).await?;
        let select = select_devices()
            .and_where(Expr::col(Dv::Id).eq(v(id)))
            .to_owned();
        let row = built::<D>(&select)?.fetch_one(tx.on()).await?;
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
        let key: SimpleExpr = match query.sort {
            DeviceSort::Name => Expr::col(Dv::Name).into(),
            DeviceSort::LastSeen => {
                Func::coalesce([Expr::col(Dv::LastSeen).into(), never_seen::<D>()]).into()
            }
            DeviceSort::EnrolledAt => Expr::col(Dv::EnrolledAt).into(),
            // Same expression as the `devices_serial_sort` index (migration 20261126000007).
            DeviceSort::Serial => or_empty(Dv::Serial),
        };
        let order = if query.descending {
            Order::Desc
        } else {
            Order::Asc
        };
        let mut select = select_devices();
        narrow::<D>(&mut select, query);
        let after = query
            .cursor
            .as_ref()
            .map(|c| c.decode(query.sort))
            .transpose()?;
        if let Some((after_key, after_id)) = after {
            let k = match after_key {
                CursorKey::Text(t) => v(t),
                // The key of devices never seen sorts before every instant.
                CursorKey::Int(NEVER_SEEN_KEY) => never_seen::<D>(),
                CursorKey::Int(micros) => v(from_micros(micros)?),
            };
            // The keyset condition `(key, id) > (k, i)` (`<` descending), as a row comparison.
            let row = Expr::expr(SimpleExpr::Tuple(vec![
                key.clone(),
                Expr::col(Dv::Id).into(),
            ]));
            let cursor = SimpleExpr::Tuple(vec![k, v(after_id)]);
            select.and_where(if query.descending {
                row.lt(cursor)
            } else {
                row.gt(cursor)
            });
        }
        let limit = query.limit.max(1);
        select
            .order_by_expr(key, order.clone())
            .order_by(Dv::Id, order)
            .limit(u64::from(limit) + 1);

        let rows = listed::<D>(&select, query, self.db()).await?;
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

    async fn count_listed_devices(&self, query: &DeviceQuery) -> StoreResult<u64> {
        let mut select = Query::select()
            .expr_as(Expr::col(Dv::Id).count(), Alias::new("n"))
            .from(Dv::Table)
            .to_owned();
        narrow::<D>(&mut select, query);
        listed::<D>(&select, query, self.db())
            .await?
            .first()
            .ok_or_else(|| StoreError::Backend("no row from a count".into()))?
            .count("n")
    }

    async fn readiness_census(
        &self,
        now: OffsetDateTime,
        seen_within: Duration,
        recent: Duration,
    ) -> StoreResult<Vec<(ReadinessInputs, u64)>> {
        let select = census_select::<D>(now, seen_within, recent);
        census_rows::<D>(self.db(), &select).await
    }

    async fn group_readiness_census(
        &self,
        group: GroupId,
        now: OffsetDateTime,
        seen_within: Duration,
    ) -> StoreResult<Vec<(ReadinessInputs, u64)>> {
        // Tested per device as the census walks its index (`EXISTS`): `IN` would have SQLite
        // walk the members and sort them for the grouping (390 ms against 220 at 100,000).
        let select = census_select::<D>(now, seen_within, seen_within)
            .and_where(member_exists(group))
            .to_owned();
        census_rows::<D>(self.db(), &select).await
    }

    async fn group_devices_not_in(
        &self,
        group: GroupId,
        now: OffsetDateTime,
        seen_within: Duration,
        ready: &[ReadinessInputs],
    ) -> StoreResult<Vec<DeviceId>> {
        let select = Query::select()
            .column((Dv::Table, Dv::Id))
            .from(Dv::Table)
            .and_where(member_of(group))
            .cond_where(
                Cond::any()
                    .add(Expr::col((Dv::Table, Dv::UnenrolledAt)).is_not_null())
                    .add(inputs_in(now, seen_within, ready).not()),
            )
            .order_by((Dv::Table, Dv::Id), Order::Asc)
            .to_owned();
        built::<D>(&select)?
            .fetch_all(self.db())
            .await?
            .iter()
            .map(|r| r.id("id"))
            .collect()
    }
}

/// How many members static group `group` has.
pub(crate) async fn count_members<D: Dialect>(on: On<'_, D>, group: GroupId) -> StoreResult<u64> {
    let select = Query::select()
        .expr_as(Expr::col(Gm::DeviceId).count(), Alias::new("n"))
        .from(Gm::Table)
        .and_where(Expr::col(Gm::GroupId).eq(v(group)))
        .to_owned();
    built::<D>(&select)?.fetch_one(on).await?.count("n")
}

/// The census of [`DeviceStore::readiness_census`]: its grouping expressions, named, in the
/// order of [`ReadinessInputs`]'s fields.
/// The census inputs that are yes/no expressions (not the device's own columns), by their
/// index in [`census_inputs`]: seen within, seen recently, certificate expired, active erase,
/// WinRE blocked.
const CENSUS_FLAGS: [usize; 5] = [7, 8, 10, 11, 12];

/// The census's SELECT over `devices` (enrolled ones; callers may narrow it further). With
/// [`Dialect::PACKED_CENSUS`], grouped by the device's own columns only (the `devices_census`
/// index's order: no sort) with each device's yes/no inputs packed into one character of the
/// group's `flags` text; otherwise grouped by all 13 inputs.
fn census_select<D: Dialect>(
    now: OffsetDateTime,
    seen_within: Duration,
    recent: Duration,
) -> SelectStatement {
    let inputs = census_inputs(now, seen_within, recent);
    let mut select = Query::select();
    select.from(Dv::Table);
    let mut keys = 0;
    for (i, (name, expr)) in inputs.iter().enumerate() {
        if !D::PACKED_CENSUS || !CENSUS_FLAGS.contains(&i) {
            select.expr_as(expr.clone(), Alias::new(*name));
            keys += 1;
        }
    }
    if D::PACKED_CENSUS {
        // 'A' + the flags as bits, one character per device.
        let bits = CENSUS_FLAGS.iter().enumerate().fold(
            SimpleExpr::from(Expr::val(65)),
            |sum, (bit, &i)| {
                let set = Expr::case(inputs[i].1.clone(), 1 << bit).finally(0);
                sum.add(SimpleExpr::Case(Box::new(set)))
            },
        );
        let packed = Func::cust(Alias::new("group_concat"))
            .arg(Func::cust(Alias::new("char")).arg(bits))
            .arg(Expr::val(""));
        select.expr_as(packed, Alias::new("flags"));
    }
    select
        .expr_as(Expr::col((Dv::Table, Dv::Id)).count(), Alias::new("n"))
        .and_where(Expr::col((Dv::Table, Dv::UnenrolledAt)).is_null())
        // By position: both databases read a bare integer in GROUP BY as a column of the list.
        .add_group_by((1..=keys).map(|i| Expr::cust(i.to_string())))
        .to_owned()
}

/// Runs a [`census_select`] and reads its groups back as readiness inputs and counts.
async fn census_rows<D: Dialect>(
    on: On<'_, D>,
    select: &SelectStatement,
) -> StoreResult<Vec<(ReadinessInputs, u64)>> {
    let rows = built::<D>(select)?.fetch_all(on).await?;
    let mut census = Vec::new();
    for r in &rows {
        if !D::PACKED_CENSUS {
            census.push(row_census(r)?);
            continue;
        }
        let packed = r.string("flags")?;
        let mut counts = [0u64; 1 << CENSUS_FLAGS.len()];
        for c in packed.bytes() {
            let bits = usize::from(c.wrapping_sub(b'A'));
            *counts
                .get_mut(bits)
                .ok_or_else(|| crate::dialect::corrupt("flags", format!("census flag {c}")))? += 1;
        }
        let own = row_inputs(r)?;
        for (bits, n) in counts.into_iter().enumerate().filter(|(_, n)| *n > 0) {
            // Bit k is the input `CENSUS_FLAGS[k]` names, in `census_select`'s order.
            let flag = |k: usize| bits & (1 << k) != 0;
            let inputs = ReadinessInputs {
                seen_within: flag(0),
                seen_recently: flag(1),
                cert_expired: flag(2),
                active_erase: flag(3),
                winre_blocked: flag(4),
                ..own.clone()
            };
            census.push((inputs, n));
        }
    }
    Ok(census)
}

/// `EXISTS (a membership of the device in static group `group`)`: the same rows as
/// [`member_of`], tested per device.
fn member_exists(group: GroupId) -> SimpleExpr {
    Expr::exists(
        Query::select()
            .expr(Expr::val(1))
            .from(Gm::Table)
            .and_where(Expr::col((Gm::Table, Gm::GroupId)).eq(v(group)))
            .and_where(Expr::col((Gm::Table, Gm::DeviceId)).equals((Dv::Table, Dv::Id)))
            .to_owned(),
    )
}

/// `devices.id IN (the members of static group `group`)`.
pub(crate) fn member_of(group: GroupId) -> SimpleExpr {
    Expr::col((Dv::Table, Dv::Id)).in_subquery(
        Query::select()
            .column((Gm::Table, Gm::DeviceId))
            .from(Gm::Table)
            .and_where(Expr::col((Gm::Table, Gm::GroupId)).eq(v(group)))
            .to_owned(),
    )
}

/// A device's readiness inputs (the census's expressions over `devices`) are one of `ready`:
/// [`ReadinessInputs::seen_recently`] plays no part. Inputs every one of `ready` shares are
/// tested once; the others as one alternative per distinct combination.
pub(crate) fn inputs_in(
    now: OffsetDateTime,
    seen_within: Duration,
    ready: &[ReadinessInputs],
) -> SimpleExpr {
    if ready.is_empty() {
        return Expr::val(1).eq(0);
    }
    let exprs = census_inputs(now, seen_within, seen_within);
    let tests: Vec<Vec<SimpleExpr>> = ready
        .iter()
        .map(|i| {
            input_tests(i)
                .into_iter()
                .zip(&exprs)
                .filter_map(|(test, (_, expr))| test.map(|t| t.on(expr.clone())))
                .collect()
        })
        .collect();
    let fields = tests[0].len();
    let shared: Vec<bool> = (0..fields)
        .map(|f| tests.iter().all(|t| t[f] == tests[0][f]))
        .collect();
    let mut all = Cond::all();
    for (f, same) in shared.iter().enumerate() {
        if *same {
            all = all.add(tests[0][f].clone());
        }
    }
    let mut alternatives: Vec<Vec<SimpleExpr>> = tests
        .iter()
        .map(|t| {
            t.iter()
                .zip(&shared)
                .filter(|(_, same)| !**same)
                .map(|(e, _)| e.clone())
                .collect()
        })
        .collect();
    alternatives.dedup();
    if alternatives.iter().any(|a| !a.is_empty()) {
        let mut any = Cond::any();
        for a in alternatives {
            any = any.add(a.into_iter().fold(Cond::all(), Cond::add));
        }
        all = all.add(any);
    }
    all.into()
}

/// How one census input is tested against a value.
enum InputTest {
    /// A yes/no expression: true or false.
    Flag(bool),
    /// A column: equal to the value, or NULL.
    Value(Option<sea_query::Value>),
}

impl InputTest {
    fn on(self, expr: SimpleExpr) -> SimpleExpr {
        match self {
            InputTest::Flag(true) => expr,
            InputTest::Flag(false) => expr.not(),
            InputTest::Value(None) => Expr::expr(expr).is_null(),
            InputTest::Value(Some(value)) => expr.eq(value),
        }
    }
}

/// The tests of `i`, in the order of [`census_inputs`] (`None`: not tested).
fn input_tests(i: &ReadinessInputs) -> [Option<InputTest>; 13] {
    let text = |t: Option<&str>| Some(InputTest::Value(t.map(|t| t.to_owned().into())));
    [
        text(Some(i.join_type.as_str())),
        text(Some(i.join_evidence.as_str())),
        text(i.enrollment_type.map(|e| e.as_str())),
        text(i.domain_name.as_deref()),
        Some(InputTest::Flag(i.has_aad_device_id)),
        text(i.os_version.as_deref()),
        text(i.os_platform.as_deref()),
        Some(InputTest::Flag(i.seen_within)),
        None,
        Some(InputTest::Value(i.winre_enabled.map(Into::into))),
        Some(InputTest::Flag(i.cert_expired)),
        Some(InputTest::Flag(i.active_erase)),
        Some(InputTest::Flag(i.winre_blocked)),
    ]
}

/// The census's expressions over `devices`, named, in the order of [`ReadinessInputs`]'s
/// fields.
fn census_inputs(
    now: OffsetDateTime,
    seen_within: Duration,
    recent: Duration,
) -> [(&'static str, SimpleExpr); 13] {
    let (f, g) = (Alias::new("f"), Alias::new("g"));
    let device_id = || Expr::col((Dv::Table, Dv::Id));
    let reset = || lit(ActionKind::AutopilotReset.code());
    // An active reset or wipe: the rule of `has_active_erase`.
    let erasing = redeploy_core::batch::ERASING.iter().map(|k| lit(k.code()));
    let active_states = ActionState::ALL
        .iter()
        .filter(|s| !s.is_terminal() && **s != ActionState::Blocked)
        .map(|s| lit(s.as_str()));
    // Sets read once (`IN` an uncorrelated subquery: one pass over the actions, then a lookup
    // per device), not a subquery run per device: 100,000 PCs with as many resets pending
    // took most of a second so (issue #16).
    let active = Query::select()
        .column((A::Table, A::DeviceId))
        .from(A::Table)
        .and_where(Expr::col((A::Table, A::Kind)).is_in(erasing))
        .and_where(Expr::col((A::Table, A::State)).is_in(active_states))
        .to_owned();
    let failed_for_winre = Query::select()
        .column((A::Table, A::DeviceId))
        .from(A::Table)
        .and_where(Expr::col((A::Table, A::Kind)).eq(reset()))
        .and_where(Expr::col((A::Table, A::State)).eq(lit(ActionState::Failed.as_str())))
        .and_where(Expr::col((A::Table, A::LastError)).eq(lit(i64::from(HR_WINRE_DISABLED))))
        .to_owned();
    // An earlier WinRE failure that still blocks: the rule of `preflight::winre_blocks` — the
    // newest ended reset failed with 0x80070032 and WinRE was not reported enabled since.
    let ended = || {
        [
            lit(ActionState::Done.as_str()),
            lit(ActionState::Failed.as_str()),
        ]
    };
    let newer_end = Query::select()
        .expr(Expr::val(1))
        .from_as(A::Table, g.clone())
        .and_where(Expr::col((g.clone(), A::DeviceId)).eq(device_id()))
        .and_where(Expr::col((g.clone(), A::Kind)).eq(reset()))
        .and_where(Expr::col((g.clone(), A::State)).is_in(ended()))
        .and_where(Expr::col((g.clone(), A::UpdatedAt)).gt(Expr::col((f.clone(), A::UpdatedAt))))
        .to_owned();
    let lifted = Expr::col((Dv::Table, Dv::WinreEnabled))
        .eq(v(true))
        .and(Expr::col((Dv::Table, Dv::WinreCheckedAt)).gt(Expr::col((f.clone(), A::UpdatedAt))));
    let winre = Query::select()
        .expr(Expr::val(1))
        .from_as(A::Table, f.clone())
        .and_where(Expr::col((f.clone(), A::DeviceId)).eq(device_id()))
        .and_where(Expr::col((f.clone(), A::Kind)).eq(reset()))
        .and_where(Expr::col((f.clone(), A::State)).eq(lit(ActionState::Failed.as_str())))
        .and_where(Expr::col((f.clone(), A::LastError)).eq(lit(i64::from(HR_WINRE_DISABLED))))
        .and_where(Expr::exists(newer_end).not())
        .and_where(Expr::expr(Func::coalesce([lifted, v(false)])).not())
        .to_owned();
    let seen_since = |at: OffsetDateTime| {
        Func::coalesce([Expr::col((Dv::Table, Dv::LastSeen)).gte(v(at)), v(false)])
    };
    [
        ("join_type", Expr::col((Dv::Table, Dv::JoinType)).into()),
        (
            "join_evidence",
            Expr::col((Dv::Table, Dv::JoinEvidence)).into(),
        ),
        (
            "enrollment_type",
            Expr::col((Dv::Table, Dv::EnrollmentType)).into(),
        ),
        ("domain_name", Expr::col((Dv::Table, Dv::DomainName)).into()),
        (
            "has_aad",
            Expr::col((Dv::Table, Dv::AadDeviceId)).is_not_null(),
        ),
        ("os_version", Expr::col((Dv::Table, Dv::OsVersion)).into()),
        ("os_platform", Expr::col((Dv::Table, Dv::OsPlatform)).into()),
        ("seen_within", seen_since(now - seen_within).into()),
        ("seen_recently", seen_since(now - recent).into()),
        (
            "winre_enabled",
            Expr::col((Dv::Table, Dv::WinreEnabled)).into(),
        ),
        (
            "cert_expired",
            Func::coalesce([
                Expr::col((Dv::Table, Dv::CertNotAfter)).lte(v(now)),
                v(false),
            ])
            .into(),
        ),
        ("active_erase", device_id().in_subquery(active)),
        (
            "winre_blocked",
            // The correlated rule only for the few devices with such a failure.
            device_id()
                .in_subquery(failed_for_winre)
                .and(Expr::exists(winre)),
        ),
    ]
}

fn row_census(r: &impl SqlRow) -> StoreResult<(ReadinessInputs, u64)> {
    let flag = |col: &str| Ok::<_, StoreError>(r.bool(col)?.unwrap_or(false));
    Ok((
        ReadinessInputs {
            seen_within: flag("seen_within")?,
            seen_recently: flag("seen_recently")?,
            cert_expired: flag("cert_expired")?,
            active_erase: flag("active_erase")?,
            winre_blocked: flag("winre_blocked")?,
            ..row_inputs(r)?
        },
        r.count("n")?,
    ))
}

/// The device's own columns of a census row (its yes/no inputs false).
fn row_inputs(r: &impl SqlRow) -> StoreResult<ReadinessInputs> {
    Ok(ReadinessInputs {
        join_type: JoinType::parse(&r.string("join_type")?)?,
        join_evidence: JoinEvidence::parse(&r.string("join_evidence")?)?,
        enrollment_type: r
            .text("enrollment_type")?
            .map(|e| EnrollmentType::parse(&e))
            .transpose()?,
        domain_name: r.text("domain_name")?,
        has_aad_device_id: r.bool("has_aad")?.unwrap_or(false),
        os_version: r.text("os_version")?,
        os_platform: r.text("os_platform")?,
        seen_within: false,
        seen_recently: false,
        winre_enabled: r.bool("winre_enabled")?,
        cert_expired: false,
        active_erase: false,
        winre_blocked: false,
    })
}

/// Runs a select [`narrow`]ed to `query`: planned for its arguments when it holds text
/// patterns (a search, a condition), whose best plan depends on the pattern.
async fn listed<D: Dialect>(
    select: &SelectStatement,
    query: &DeviceQuery,
    on: On<'_, D>,
) -> StoreResult<Vec<D::Row>> {
    let sql = built::<D>(select)?;
    if query.search.is_some() || query.condition.is_some() {
        sql.fetch_all_planned_for_args(on).await
    } else {
        sql.fetch_all(on).await
    }
}

/// Narrows a select over the devices table to what `query` lists (not its sort or page).
fn narrow<D: Dialect>(select: &mut SelectStatement, query: &DeviceQuery) {
    if !query.include_unenrolled {
        select.and_where(Expr::col(Dv::UnenrolledAt).is_null());
    }
    if let Some(s) = &query.search {
        let pattern = format!("%{}%", escape_like(s));
        select.cond_where(
            Cond::any()
                .add(like(Dv::Name, &pattern))
                .add(like(Dv::Serial, &pattern))
                .add(like(Dv::PrimaryUser, &pattern)),
        );
        // FTS5's trigram index matches nothing for fewer than three characters: those scan.
        if let Some(table) = D::SEARCH_TABLE.filter(|_| s.chars().count() >= 3) {
            select.and_where(search_table_holds(table, s));
        }
    }
    if let Some(j) = query.join_type {
        select.and_where(Expr::col(Dv::JoinType).eq(v(j.as_str())));
    }
    if let Some(c) = &query.condition {
        select.and_where(condition(c));
    }
}

/// The device rows whose name, serial or primary user the full-text `table` finds `text` in
/// (as one phrase: every trigram of it, in order): a superset of the search `LIKE`'s rows (both
/// fold case; the index beyond ASCII too), which the `LIKE` narrows to its own.
fn search_table_holds(table: &str, text: &str) -> SimpleExpr {
    // An FTS5 string: double quotes around, a double quote inside doubled.
    let phrase = format!("\"{}\"", text.replace('"', "\"\""));
    Expr::cust_with_values(
        format!("\"devices\".rowid IN (SELECT rowid FROM {table} WHERE {table} MATCH ?)"),
        [phrase],
    )
}

/// `text` lowercased, with LIKE's wildcards and the escape character escaped (`\`).
fn escape_like(text: &str) -> String {
    text.to_lowercase()
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// `LOWER(COALESCE(col, '')) LIKE pattern ESCAPE '\'`.
fn like(col: Dv, pattern: &str) -> SimpleExpr {
    Expr::expr(Func::lower(or_empty(col))).like(LikeExpr::new(pattern).escape('\\'))
}

/// The SQL of a [`DeviceCondition`], with the meaning of [`DeviceCondition::matches`]: every
/// leaf is true or false, never NULL (an absent value is `''` for text and makes a comparison
/// false), so `NOT` agrees with Rust's `!`.
fn condition(c: &DeviceCondition) -> SimpleExpr {
    // Written without literals: the id is never NULL.
    let always = || Expr::col(Dv::Id).is_not_null();
    let never = || Expr::col(Dv::Id).is_null();
    match c {
        DeviceCondition::All(all) => all
            .iter()
            .map(condition)
            .reduce(SimpleExpr::and)
            .unwrap_or_else(always),
        DeviceCondition::Any(any) => any
            .iter()
            .map(condition)
            .reduce(SimpleExpr::or)
            .unwrap_or_else(never),
        DeviceCondition::Not(c) => condition(c).not(),
        DeviceCondition::Text { field, op, value } => {
            let col = text_column(*field);
            match op {
                TextOp::Eq => Expr::expr(Func::lower(or_empty(col))).eq(v(value.to_lowercase())),
                TextOp::StartsWith => like(col, &format!("{}%", escape_like(value))),
                TextOp::Contains => like(col, &format!("%{}%", escape_like(value))),
            }
        }
        DeviceCondition::Time { field, cmp, at } => {
            let col = Expr::col(time_column(*field));
            let at = v(*at);
            let compared = match cmp {
                Comparison::Eq => col.clone().eq(at),
                Comparison::Ne => col.clone().ne(at),
                Comparison::Lt => col.clone().lt(at),
                Comparison::Le => col.clone().lte(at),
                Comparison::Gt => col.clone().gt(at),
                Comparison::Ge => col.clone().gte(at),
            };
            col.is_not_null().and(compared)
        }
        DeviceCondition::NoTime(field) => Expr::col(time_column(*field)).is_null(),
        DeviceCondition::JoinTypeIn(types) if types.is_empty() => never(),
        DeviceCondition::JoinTypeIn(types) => {
            Expr::col(Dv::JoinType).is_in(types.iter().map(|j| v(j.as_str())))
        }
        DeviceCondition::WinReEnabled(want) => Expr::col(Dv::WinreEnabled)
            .is_not_null()
            .and(Expr::col(Dv::WinreEnabled).eq(v(*want))),
    }
}

fn text_column(field: TextField) -> Dv {
    match field {
        TextField::Name => Dv::Name,
        TextField::Serial => Dv::Serial,
        TextField::OsVersion => Dv::OsVersion,
        TextField::PrimaryUser => Dv::PrimaryUser,
        TextField::Manufacturer => Dv::Manufacturer,
        TextField::Model => Dv::Model,
        TextField::AadDeviceId => Dv::AadDeviceId,
    }
}

fn time_column(field: TimeField) -> Dv {
    match field {
        TimeField::LastSeen => Dv::LastSeen,
        TimeField::EnrolledAt => Dv::EnrolledAt,
        TimeField::CertNotAfter => Dv::CertNotAfter,
        TimeField::UnenrolledAt => Dv::UnenrolledAt,
    }
}

#[cfg(test)]
mod tests {
    use sea_query::{PostgresQueryBuilder, SqliteQueryBuilder};

    use super::*;

    /// The serial sort key is written exactly as the `devices_serial_sort` index expression
    /// (`COALESCE(serial, '')`), so both databases can use the index for the sort.
    #[test]
    fn serial_sort_key_is_the_index_expression() {
        let select = Query::select().expr(or_empty(Dv::Serial)).to_owned();
        assert_eq!(
            select.to_string(SqliteQueryBuilder),
            r#"SELECT COALESCE("serial", '')"#
        );
        assert_eq!(
            select.to_string(PostgresQueryBuilder),
            r#"SELECT COALESCE("serial", '')"#
        );
    }
}
