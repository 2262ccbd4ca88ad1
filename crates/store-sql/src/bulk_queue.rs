//! A [`BulkQueue`] written set-based: the ready members of a group get their actions and audit
//! events from `INSERT … SELECT`s, so that a reset of 100,000 PCs sends the database a few
//! statements and holds nothing per device in this process (issue #16). Their commands are made
//! at each PC's next session start.

use redeploy_core::store::{BulkQueue, BulkVerdict, StoreError, StoreResult};
use sea_query::{Alias, BinOper, Cond, Expr, Order, Query, SelectStatement, SimpleExpr};

use crate::actions::{action_values, ACTION_COLS};
use crate::audit::{audit_values, AUDIT_COLS};
use crate::devices::{count_members, inputs_in, member_of};
use crate::dialect::Dialect;
use crate::query::{built, v};
use crate::schema::{Actions as A, AuditEvents as E, Devices as Dv, GroupMembers as Gm};
use crate::sql::RowExt;
use crate::Tx;

/// Writes `bulk` inside the plan's transaction `tx`, after the plan's own actions (a device the
/// planner handled already has an action of the batch and is skipped). `Conflict` when the
/// group or the devices moved since the census: the caller plans again.
pub(crate) async fn queue_bulk_in<D: Dialect>(
    tx: &mut Tx<D>,
    bulk: &BulkQueue,
    at: time::OffsetDateTime,
) -> StoreResult<()> {
    if let Some(settings) = D::BULK_SETTINGS {
        crate::sql::Sql::new(settings.to_owned(), Vec::new())
            .execute(tx.on())
            .await?;
    }
    let members = count_members(tx.on(), bulk.group).await?;
    if members != bulk.members {
        return Err(StoreError::Conflict(format!(
            "group {} has {members} members, not the {} planned for",
            bulk.group, bulk.members
        )));
    }
    for verdict in &bulk.verdicts {
        give_verdict(tx, bulk, verdict, at).await?;
    }
    // A blocked member's own event names it alone: the `audit_events_one_target` index finds it
    // by its text, with no target row (0.22 s of 100,000, issue #16).
    //
    // The request's own event, naming every member in its text. No target row per member: a
    // member's history finds it through the member's action of the batch (every enrolled
    // member was given one above), and the 100,000 rows took 0.23 s (issue #16).
    if let Some(summary) = &bulk.summary {
        let mut values = audit_values(summary);
        values[3] = SimpleExpr::SubQuery(
            None,
            Box::new(
                Query::select()
                    .from(Gm::Table)
                    .and_where(Expr::col(Gm::GroupId).eq(v(bulk.group)))
                    .expr(Expr::cust(D::join_ids("device_id")))
                    .to_owned()
                    .into_sub_query_statement(),
            ),
        );
        let insert = Query::insert()
            .into_table(E::Table)
            .columns(AUDIT_COLS)
            .values(values)
            .map_err(|e| StoreError::Backend(e.to_string()))?
            .to_owned();
        built::<D>(&insert)?.execute(tx.on()).await?;
    }
    Ok(())
}

/// Gives every enrolled member of the group with one of `verdict`'s inputs, and no action of the
/// batch yet, a copy of its action and (a blocking verdict) of its audit event; `Conflict`
/// unless the census's count.
async fn give_verdict<D: Dialect>(
    tx: &mut Tx<D>,
    bulk: &BulkQueue,
    verdict: &BulkVerdict,
    at: time::OffsetDateTime,
) -> StoreResult<()> {
    let batch = bulk.batch;
    let actions_before = max_seq::<D>(tx, A::Table, A::Seq).await?;
    let of_batch = Query::select()
        .column((A::Table, A::DeviceId))
        .from(A::Table)
        .and_where(Expr::col((A::Table, A::BatchId)).eq(v(batch)))
        .to_owned();
    let mut values = action_values(&verdict.action);
    values[0] = time_ordered_id::<D>(at, bulk.id_bits);
    values[1] = Expr::col((Dv::Table, Dv::Id)).into();
    let mut select = Query::select();
    select
        .exprs(values)
        .from(Dv::Table)
        .and_where(member_of(bulk.group))
        .and_where(Expr::col((Dv::Table, Dv::UnenrolledAt)).is_null())
        .and_where(inputs_in(at, bulk.seen_within, &verdict.inputs))
        .and_where(Expr::col((Dv::Table, Dv::Id)).not_in_subquery(of_batch))
        .order_by((Dv::Table, Dv::Id), Order::Asc);
    let given = insert_select(tx, A::Table, ACTION_COLS, select).await?;
    if given != verdict.expected {
        return Err(StoreError::Conflict(format!(
            "{given} devices of group {} are {} now, not the {} counted",
            bulk.group, verdict.action.state, verdict.expected
        )));
    }
    // Their audit events, each naming its device and its action (blocked devices only: the
    // request's own event names each queued one).
    let Some(audit) = &verdict.audit else {
        return Ok(());
    };
    let template = around(&audit.details, &verdict.action.id.to_string())?;
    let mut values = audit_values(audit);
    values[3] = Expr::cust("CAST(actions.device_id AS TEXT)");
    values[6] = concat([
        v(template.0),
        Expr::cust("CAST(actions.id AS TEXT)"),
        v(template.1),
    ]);
    let these = Cond::all()
        .add(Expr::col((A::Table, A::BatchId)).eq(v(batch)))
        .add(Expr::col((A::Table, A::Seq)).gt(actions_before));
    insert_select(tx, E::Table, AUDIT_COLS, from_actions(values, these)).await?;
    Ok(())
}

/// The action id of the device in `devices.id`: its first 48 bits are `at` in milliseconds, then
/// the version digit 7 (the layout of RFC 9562's UUIDv7), the write's 12 bits `bits`
/// ([`BulkQueue::id_bits`]), then the device id's last 64 bits (its variant and random part,
/// whether it is a version-4 or a version-7 id). So the rows of one bulk write land in one
/// narrow range of each index on their ids instead of all over it (random version-4 ids made
/// each of 100,000 inserts touch a different page of the `id` and `action_id` indexes), and no
/// random number is drawn per row (PostgreSQL's `gen_random_uuid()` was 0.13–0.16 s of a
/// 100,000-PC reset, SQLite's `randomblob` text 0.3 s). Distinct devices give distinct ids; two
/// writes of the same millisecond naming one device collide only if they carry the same bits,
/// and the second then fails as a conflict (the unique `id`) and is planned again with new
/// ones. Ids stay opaque: nothing orders by them.
fn time_ordered_id<D: Dialect>(at: time::OffsetDateTime, bits: u16) -> SimpleExpr {
    let ms = (at.unix_timestamp_nanos() / 1_000_000) as u64 & 0xffff_ffff_ffff;
    let hex = format!("{ms:012x}");
    let bits = bits & 0xfff;
    // "tttttttt-tttt-7bbb-" then the device id's "vxxx-xxxxxxxxxxxx".
    let prefix = format!("{}-{}-7{bits:03x}-", &hex[..8], &hex[8..]);
    let id = v(prefix).binary(
        BinOper::Custom("||"),
        Expr::cust("substr(CAST(devices.id AS TEXT), 20)"),
    );
    Expr::expr(id).cast_as(Alias::new(D::ID_TYPE))
}

/// The text before and after `id` in `details`.
fn around(details: &str, id: &str) -> StoreResult<(String, String)> {
    details
        .split_once(id)
        .map(|(before, after)| (before.to_owned(), after.to_owned()))
        .ok_or_else(|| StoreError::Backend(format!("audit details {details:?} name no {id}")))
}

/// `INSERT INTO table (columns) select`: how many rows it wrote.
async fn insert_select<D: Dialect, C: sea_query::IntoIden>(
    tx: &mut Tx<D>,
    table: impl sea_query::IntoTableRef,
    columns: impl IntoIterator<Item = C>,
    select: SelectStatement,
) -> StoreResult<u64> {
    let insert = Query::insert()
        .into_table(table)
        .columns(columns)
        .select_from(select)
        .map_err(|e| StoreError::Backend(e.to_string()))?
        .to_owned();
    built::<D>(&insert)?.execute(tx.on()).await
}

/// `SELECT values FROM actions WHERE which ORDER BY seq`.
fn from_actions<const N: usize>(values: [SimpleExpr; N], which: Cond) -> SelectStatement {
    Query::select()
        .exprs(values)
        .from(A::Table)
        .cond_where(which)
        .order_by((A::Table, A::Seq), Order::Asc)
        .to_owned()
}

/// `a || b || …`: text concatenation, the same operator on both databases.
fn concat(parts: [SimpleExpr; 3]) -> SimpleExpr {
    let [a, b, c] = parts;
    a.binary(BinOper::Custom("||"), b)
        .binary(BinOper::Custom("||"), c)
}

/// The highest `seq` of `table` so far (0 when empty): rows this transaction adds after it
/// are above it.
async fn max_seq<D: Dialect>(
    tx: &mut Tx<D>,
    table: impl sea_query::Iden + 'static,
    seq: impl sea_query::Iden + 'static,
) -> StoreResult<i64> {
    let select = Query::select()
        .expr_as(
            sea_query::Func::coalesce([Expr::col(seq).max(), Expr::val(0i64).into()]),
            Alias::new("seq"),
        )
        .from(table)
        .to_owned();
    built::<D>(&select)?.fetch_one(tx.on()).await?.i64("seq")
}
