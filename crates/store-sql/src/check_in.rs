//! A check-in's first read ([`CheckInView`]): the device row and, in the same statement, whether
//! the reads a session start makes next can find anything — unseen certificate renewals, open
//! actions, open commands — and the stored values of a few inventory nodes. An idle PC's
//! check-in reads nothing more (docs/benchmarks.md "Check-ins against the TLS floor").

use redeploy_core::action::ActionState;
use redeploy_core::command::CommandState;
use redeploy_core::ids::DeviceId;
use redeploy_core::inventory::InventoryValue;
use redeploy_core::store::{CheckInView, StoreResult};
use sea_query::{Alias, Cond, Expr, IntoIden, Query, SelectStatement, SimpleExpr, TableRef};

use crate::devices::{device_row_stepped, row_device, select_devices, DeviceRowStep, RowUpdate};
use crate::dialect::{Arg, Dialect, SqlRow};
use crate::inventory::latest_of;
use crate::query::{v, written};
use crate::schema::{
    Actions as A, CertificateRenewals as R, Commands as C, Devices as Dv, Inventory as I,
};
use crate::sql::RowExt;
use crate::SqlStore;

/// The states an action settles in: the others are open.
const SETTLED: [ActionState; 4] = [
    ActionState::Done,
    ActionState::Failed,
    ActionState::Canceled,
    ActionState::Expired,
];

/// `EXISTS (SELECT 1 FROM table WHERE table.device_id = devices.id AND cond)`.
fn any_of_device<T: sea_query::Iden + Copy + 'static>(
    table: T,
    device_col: T,
    cond: Cond,
) -> SimpleExpr {
    Expr::exists(
        Query::select()
            .expr(Expr::cust("1"))
            .from(table)
            .and_where(Expr::col((table, device_col)).equals((Dv::Table, Dv::Id)))
            .cond_where(cond)
            .to_owned(),
    )
}

/// A state's name written into the statement's text, not bound: the flags' conditions are the
/// same in every statement, and only a condition the planner can read proves that a partial
/// index (`commands_open`) covers it — a bound parameter proves nothing to a generic plan
/// (PostgreSQL) or to SQLite's planner. The names are our own constants.
fn state(name: &str) -> SimpleExpr {
    debug_assert!(name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
    Expr::cust(format!("'{name}'"))
}

/// The view's statement: [`select_devices`] narrowed to `ids`, with the flags and the
/// inventory columns (`inv{i}_value`, `inv{i}_format`, `inv{i}_at` for `uris[i]`).
pub(crate) fn select_view(ids: &[DeviceId], uris: &[&str]) -> SelectStatement {
    let mut select = select_devices();
    match ids {
        [id] => select.and_where(Expr::col((Dv::Table, Dv::Id)).eq(v(*id))),
        _ => select.and_where(Expr::col((Dv::Table, Dv::Id)).is_in(ids.iter().map(|id| v(*id)))),
    };
    select.expr_as(
        any_of_device(
            R::Table,
            R::DeviceId,
            Cond::all().add(Expr::col((R::Table, R::NewSeenAt)).is_null()),
        ),
        Alias::new("unseen_renewals"),
    );
    select.expr_as(
        any_of_device(
            A::Table,
            A::DeviceId,
            Cond::all().add(
                Expr::col((A::Table, A::State))
                    .is_not_in(SETTLED.iter().map(|s| state(s.as_str()))),
            ),
        ),
        Alias::new("open_actions"),
    );
    // Open commands: the condition of the partial index `commands_open` (migration
    // 20261218000001), so the probe reads only open commands. Without it PostgreSQL's plan for a
    // batch of a dozen devices hashed every command ever sent (1.2 ms with 3,600 of them).
    select.expr_as(
        any_of_device(
            C::Table,
            C::DeviceId,
            Cond::any()
                .add(Expr::col((C::Table, C::State)).eq(state(CommandState::Queued.as_str())))
                .add(
                    Cond::all()
                        .add(Expr::col((C::Table, C::State)).eq(state(CommandState::Sent.as_str())))
                        .add(Expr::col((C::Table, C::Status)).is_null()),
                ),
        ),
        Alias::new("open_commands"),
    );
    // Each node's stored value by one join on the inventory's key (device, node): one index
    // probe per node, where a scalar subquery per column was three (and three subplans to
    // start on PostgreSQL).
    for (i, uri) in uris.iter().enumerate() {
        let alias = Alias::new(format!("inv{i}"));
        select.left_join(
            TableRef::TableAlias(I::Table.into_iden(), alias.clone().into_iden()),
            Cond::all()
                .add(Expr::col((alias.clone(), I::DeviceId)).equals((Dv::Table, Dv::Id)))
                .add(Expr::col((alias.clone(), I::Uri)).eq(v(*uri))),
        );
        for (col, name) in [(I::Value, "value"), (I::Format, "format"), (I::At, "at")] {
            select.expr_as(
                Expr::col((alias.clone(), col)),
                Alias::new(format!("inv{i}_{name}")),
            );
        }
    }
    select
}

/// The arguments of [`select_view`], in the order its text takes them: the inventory joins'
/// nodes, the devices.
pub(crate) fn view_args(ids: &[DeviceId], uris: &[&str]) -> Vec<Arg> {
    let mut args: Vec<Arg> = uris
        .iter()
        .map(|u| Arg::Text(Some((*u).to_owned())))
        .collect();
    args.extend(ids.iter().map(|id| Arg::from(*id)));
    args
}

pub(crate) fn row_view(r: &impl SqlRow, id: DeviceId, uris: &[&str]) -> StoreResult<CheckInView> {
    let flag = |col: &str| Ok::<_, redeploy_core::store::StoreError>(r.bool(col)?.unwrap_or(true));
    let mut inventory = Vec::new();
    for (i, uri) in uris.iter().enumerate() {
        let (Some(value), Some(at)) = (
            r.text(&format!("inv{i}_value"))?,
            r.time(&format!("inv{i}_at"))?,
        ) else {
            continue;
        };
        inventory.push(InventoryValue {
            device: id,
            uri: (*uri).to_owned(),
            value,
            format: r.text(&format!("inv{i}_format"))?,
            at,
        });
    }
    Ok(CheckInView {
        device: row_device(r)?,
        unseen_renewals: flag("unseen_renewals")?,
        open_actions: flag("open_actions")?,
        open_commands: flag("open_commands")?,
        inventory: Some(inventory),
    })
}

impl<D: Dialect> SqlStore<D> {
    /// [`redeploy_core::store::CommandQueue::check_in_view`].
    pub(crate) async fn read_check_in_view(
        &self,
        id: DeviceId,
        uris: &[&str],
    ) -> StoreResult<Option<CheckInView>> {
        if D::BATCHED_READS {
            return self.view_in_batch(id, uris).await;
        }
        let row = self
            .shapes
            .sql(
                ("check_in_view", uris.len() as u64),
                view_args(&[id], uris),
                || written::<D>(&select_view(&[id], uris)),
            )?
            .fetch_short::<D>(self.pool())
            .await?;
        row.as_ref().map(|r| row_view(r, id, uris)).transpose()
    }
}

/// A check-in step that writes only the device row and inventory values (an idle PC's), as one
/// statement where the dialect allows it ([`Dialect::WRITABLE_CTE`]): the device row's UPDATE
/// in a `WITH` clause, the inventory upsert reading the row it changed, so a message taken
/// meanwhile (no row changed) stores no inventory either. One round trip in autocommit instead
/// of BEGIN, UPDATE, INSERT, COMMIT: on PostgreSQL each statement is a round trip and an
/// executor start (docs/benchmarks.md, session 12). `None` when the step is not of that kind or
/// the dialect cannot: the caller runs its transaction.
pub(crate) async fn step_in_one_statement<D: Dialect>(
    store: &SqlStore<D>,
    row: &DeviceRowStep<'_>,
    inventory: &[InventoryValue],
) -> StoreResult<Option<()>> {
    if !D::WRITABLE_CTE {
        return Ok(None);
    }
    let Some(update) = RowUpdate::of(row)? else {
        return Ok(None);
    };
    if inventory.iter().any(|i| i.device != row.id) {
        return Ok(None);
    }
    let latest = latest_of(inventory);
    let mut args = update.args();
    for value in &latest {
        args.extend([
            Arg::Text(Some(value.uri.clone())),
            Arg::Text(Some(value.value.clone())),
            Arg::Text(value.format.clone()),
            Arg::Time(Some(value.at)),
        ]);
    }
    let shape = update.shape(true) | (latest.len() as u64) << 48;
    let statement = store.shapes.sql(("idle_step", shape), args, || {
        let (text, mut args) = written::<D>(&update.statement(true))?;
        let mut text = format!("WITH step AS ({text})");
        if !latest.is_empty() {
            let mut rows = Vec::with_capacity(latest.len());
            for value in &latest {
                let mut p = |arg: Arg| {
                    args.push(arg);
                    D::placeholder(args.len())
                };
                rows.push(format!(
                    "(CAST({} AS TEXT), CAST({} AS TEXT), CAST({} AS TEXT), CAST({} AS TIMESTAMPTZ))",
                    p(Arg::Text(Some(value.uri.clone()))),
                    p(Arg::Text(Some(value.value.clone()))),
                    p(Arg::Text(value.format.clone())),
                    p(Arg::Time(Some(value.at))),
                ));
            }
            // The same upsert as `upsert_inventory_in`: a value never replaces a newer one.
            text.push_str(&format!(
                ", inv AS (INSERT INTO inventory (device_id, uri, value, format, at) \
                 SELECT step.id, u.uri, u.value, u.format, u.at FROM step, (VALUES {}) \
                 AS u (uri, value, format, at) \
                 ON CONFLICT (device_id, uri) DO UPDATE SET value = excluded.value, \
                 format = excluded.format, at = excluded.at WHERE excluded.at >= inventory.at)",
                rows.join(", ")
            ));
        }
        text.push_str(" SELECT COUNT(*) AS stepped FROM step");
        Ok((text, args))
    })?;
    let stepped = statement.fetch_one(store.db()).await?.i64("stepped")?;
    device_row_stepped(row, u64::try_from(stepped).unwrap_or(0))?;
    Ok(Some(()))
}
