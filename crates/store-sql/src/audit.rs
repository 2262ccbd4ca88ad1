//! The audit log: append-only events with their target devices (one row per target, so a
//! device's history is an index lookup), listed by keyset paging in either direction.

use std::collections::BTreeSet;

use async_trait::async_trait;
use redeploy_core::audit::{AuditEvent, AuditOutcome, NewAuditEvent};
use redeploy_core::ids::{AuditId, DeviceId};
use redeploy_core::store::{AuditLog, AuditOrder, AuditQuery, StoreResult};

use crate::dialect::{Dialect, SqlRow};
use crate::sql::{sql, RowExt};
use crate::{SqlStore, Tx};

fn row_audit(r: &impl SqlRow) -> StoreResult<AuditEvent> {
    Ok(AuditEvent {
        id: AuditId::from_i64(r.i64("seq")?),
        at: r.at("at")?,
        actor: r.string("actor")?,
        action: r.string("action")?,
        targets: r
            .string("targets")?
            .split(' ')
            .filter(|t| !t.is_empty())
            .map(|t| Ok(DeviceId::parse(t)?))
            .collect::<StoreResult<_>>()?,
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
    let targets = event
        .targets
        .iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(" ");
    let seq = sql(
        "INSERT INTO audit_events (at, actor, action, targets, batch_id, outcome, details) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING seq",
    )
    .bind(event.at)
    .bind(event.actor.clone())
    .bind(event.action.clone())
    .bind(targets)
    .bind(event.batch)
    .bind(event.outcome.as_str())
    .bind(event.details.clone())
    .fetch_one(tx.on())
    .await?
    .i64("seq")?;
    let mut seen = BTreeSet::new();
    for t in event.targets.iter().filter(|t| seen.insert(**t)) {
        sql("INSERT INTO audit_targets (audit_seq, device_id) VALUES ($1, $2)")
            .bind(seq)
            .bind(*t)
            .execute(tx.on())
            .await?;
    }
    Ok(seq)
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
        let (cmp, dir, start) = match query.order {
            AuditOrder::OldestFirst => (">", "", 0),
            AuditOrder::NewestFirst => ("<", " DESC", i64::MAX),
        };
        let rows = sql(format!(
            "SELECT seq, at, actor, action, targets, batch_id, outcome, details FROM audit_events \
             WHERE seq {cmp} $1 AND ($2 IS NULL OR EXISTS (SELECT 1 FROM audit_targets t \
             WHERE t.audit_seq = audit_events.seq AND t.device_id = $2)) \
             ORDER BY seq{dir} LIMIT $3"
        ))
        .bind(query.after.map_or(start, |a| a.as_i64()))
        .bind(query.device)
        .bind(query.limit)
        .fetch_all(self.db())
        .await?;
        rows.iter().map(row_audit).collect()
    }
}
