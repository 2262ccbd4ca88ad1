//! The audit log: append-only events with their target devices (one row per target, so a
//! device's history is an index lookup), listed by keyset paging in either direction.

use std::collections::BTreeSet;

use async_trait::async_trait;
use redeploy_core::audit::{AuditEvent, AuditOutcome, NewAuditEvent};
use redeploy_core::ids::{AuditId, DeviceId};
use redeploy_core::store::{AuditLog, AuditOrder, AuditQuery, StoreError, StoreResult};

use redeploy_core::batch::BATCH_CREATE;
use sea_query::{Expr, Func, Order, Query, UnionType};

use crate::bulk::insert_rows;
use crate::dialect::{Dialect, SqlRow};
use crate::query::{built, insert_row, lit, v};
use crate::schema::{Actions as Ac, AuditEvents as A, AuditTargets as T};
use crate::sql::RowExt;
use crate::{SqlStore, Tx};

/// The columns of an audit event after its `seq`, as written and read.
pub(crate) const AUDIT_COLS: [A; 7] = [
    A::At,
    A::Actor,
    A::Action,
    A::Targets,
    A::BatchId,
    A::Outcome,
    A::Details,
];

fn row_audit(r: &impl SqlRow) -> StoreResult<AuditEvent> {
    Ok(AuditEvent {
        id: AuditId::from_i64(r.i64("seq")?),
        at: r.at("at")?,
        actor: r.string("actor")?,
        action: r.string("action")?,
        targets: r.joined_ids("targets")?,
        batch: r.opt_id("batch_id")?,
        outcome: AuditOutcome::parse(&r.string("outcome")?)?,
        details: r.string("details")?,
    })
}

/// Appends one audit event (and its target rows) in `tx`; returns its position.
pub(crate) async fn insert_audit_in<D: Dialect>(
    tx: &mut Tx<D>,
    event: &NewAuditEvent,
) -> StoreResult<i64> {
    let insert = insert_row(A::Table, AUDIT_COLS, audit_values(event))?
        .returning_col(A::Seq)
        .to_owned();
    let seq = built::<D>(&insert)?.fetch_one(tx.on()).await?.i64("seq")?;
    let mut seen = BTreeSet::new();
    for t in target_rows(event).filter(|t| seen.insert(**t)) {
        let insert = insert_row(T::Table, [T::AuditSeq, T::DeviceId], [v(seq), v(*t)])?;
        built::<D>(&insert)?.execute(tx.on()).await?;
    }
    Ok(seq)
}

/// Appends `events` in order (positions increasing in that order) with their target rows, as
/// multi-row INSERTs: the audit of a group's 100,000 actions in a few hundred statements.
pub(crate) async fn insert_audits_in<D: Dialect>(
    tx: &mut Tx<D>,
    events: &[NewAuditEvent],
) -> StoreResult<()> {
    if events.len() == 1 {
        return insert_audit_in(tx, &events[0]).await.map(|_| ());
    }
    let per_statement = crate::bulk::PARAMS_PER_STATEMENT / AUDIT_COLS.len();
    for chunk in events.chunks(per_statement) {
        let mut insert = Query::insert();
        insert.into_table(A::Table).columns(AUDIT_COLS);
        for event in chunk {
            insert
                .values(audit_values(event))
                .map_err(|e| StoreError::Backend(e.to_string()))?;
        }
        insert.returning(Query::returning().columns([A::Seq]));
        let seqs = built::<D>(&insert)?
            .fetch_all(tx.on())
            .await?
            .iter()
            .map(|r| r.i64("seq"))
            .collect::<StoreResult<Vec<i64>>>()?;
        // The positions come back in any order; each event's is found by rank, as the rows
        // were numbered in the order written.
        let mut seqs = seqs;
        seqs.sort_unstable();
        if seqs.len() != chunk.len() {
            return Err(StoreError::Backend(
                "audit insert returned too few rows".into(),
            ));
        }
        let mut targets: Vec<(i64, DeviceId)> = Vec::new();
        for (event, seq) in chunk.iter().zip(&seqs) {
            let mut seen = BTreeSet::new();
            targets.extend(
                target_rows(event)
                    .filter(|t| seen.insert(**t))
                    .map(|t| (*seq, *t)),
            );
        }
        insert_rows(
            tx,
            T::Table,
            [T::AuditSeq, T::DeviceId],
            &targets,
            |(seq, t)| [v(*seq), v(*t)],
        )
        .await?;
    }
    Ok(())
}

/// The length of one device id as text: an event whose `targets` text is this long names
/// exactly one device, and is found by the `audit_events_one_target` index on that text.
pub(crate) const ONE_TARGET_LEN: i64 = 36;

/// The devices of `event` that get a row in `audit_targets`: none when it names one device (the
/// `audit_events_one_target` index finds it by its text: a row per event was a tenth of a
/// 100,000-PC group reset, issue #16), else every one.
fn target_rows(event: &NewAuditEvent) -> impl Iterator<Item = &DeviceId> {
    let rows = if event.targets.len() == 1 {
        &[][..]
    } else {
        &event.targets[..]
    };
    rows.iter()
}

/// The values of [`AUDIT_COLS`] of `event`, in order.
pub(crate) fn audit_values(event: &NewAuditEvent) -> [sea_query::SimpleExpr; 7] {
    let targets = event
        .targets
        .iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(" ");
    [
        v(event.at),
        v(event.actor.clone()),
        v(event.action.clone()),
        v(targets),
        v(event.batch),
        v(event.outcome.as_str()),
        v(event.details.clone()),
    ]
}

#[async_trait]
impl<D: Dialect> AuditLog for SqlStore<D> {
    async fn append_audit(&self, event: NewAuditEvent) -> StoreResult<AuditEvent> {
        let mut tx = self.begin().await?;
        let seq = insert_audit_in(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(AuditEvent::from_new(AuditId::from_i64(seq), event))
    }

    async fn list_audit(&self, query: &AuditQuery) -> StoreResult<Vec<AuditEvent>> {
        // Keyset paging on the primary key in either direction.
        let (before, order, start) = match query.order {
            AuditOrder::OldestFirst => (false, Order::Asc, 0),
            AuditOrder::NewestFirst => (true, Order::Desc, i64::MAX),
        };
        let after = v(query.after.map_or(start, |a| a.as_i64()));
        let mut select = Query::select()
            .column(A::Seq)
            .columns(AUDIT_COLS)
            .from(A::Table)
            .and_where(if before {
                Expr::col(A::Seq).lt(after)
            } else {
                Expr::col(A::Seq).gt(after)
            })
            .order_by(A::Seq, order)
            .limit(u64::from(query.limit))
            .to_owned();
        if let Some(device) = query.device {
            // The events naming the device (by their one target's text, or by a target row
            // when they name several), and the request events of the batches it has an action
            // in: a group reset queued by the database names its members in the request's
            // text only (issue #16). Each set is read by index: `audit_events_one_target`,
            // `audit_targets`' key, `actions_device` then `audit_events_batch_create`.
            let mut named = Query::select()
                .column(T::AuditSeq)
                .from(T::Table)
                .and_where(Expr::col(T::DeviceId).eq(v(device)))
                .to_owned();
            let alone = Query::select()
                .column(A::Seq)
                .from(A::Table)
                .and_where(
                    Expr::expr(Func::char_length(Expr::col(A::Targets))).eq(lit(ONE_TARGET_LEN)),
                )
                .and_where(Expr::col(A::Targets).eq(v(device.to_string())))
                .to_owned();
            let batches = Query::select()
                .column(Ac::BatchId)
                .from(Ac::Table)
                .and_where(Expr::col(Ac::DeviceId).eq(v(device)))
                .and_where(Expr::col(Ac::BatchId).is_not_null())
                .to_owned();
            let requests = Query::select()
                .column(A::Seq)
                .from(A::Table)
                .and_where(Expr::col(A::Action).eq(lit(BATCH_CREATE)))
                .and_where(Expr::col(A::BatchId).in_subquery(batches))
                .to_owned();
            select.and_where(
                Expr::col(A::Seq).in_subquery(
                    named
                        .union(UnionType::Distinct, alone)
                        .union(UnionType::Distinct, requests)
                        .to_owned(),
                ),
            );
        }
        let rows = built::<D>(&select)?.fetch_all(self.db()).await?;
        rows.iter().map(row_audit).collect()
    }
}
