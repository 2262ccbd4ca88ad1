//! The audit log as the surfaces read and write it: a page of events (by device, position and
//! order, with text filters on action and actor and an outcome filter) and an entry for what a
//! caller did.

use redeploy_core::store::{AuditOrder, AuditQuery};
use redeploy_core::{AuditEvent, AuditId, DeviceId, NewAuditEvent};

use super::{Caller, Result};
use crate::state::AppState;

/// Largest store page read at once.
const STEP: u32 = 500;

/// Which events a page shows.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    /// Only events naming this device.
    pub device: Option<DeviceId>,
    /// Continue after this position (in `order`).
    pub after: Option<AuditId>,
    pub order: AuditOrder,
    /// At most this many events.
    pub limit: u32,
    /// Only events whose action contains this text (any case).
    pub action: Option<String>,
    /// Only events whose actor contains this text (any case).
    pub actor: Option<String>,
    /// Only events with this outcome (`success`, `refused`, `failed`).
    pub outcome: Option<String>,
}

impl Listing {
    fn filters(&self) -> bool {
        self.action.is_some() || self.actor.is_some() || self.outcome.is_some()
    }

    fn keeps(&self, e: &AuditEvent) -> bool {
        let contains = |hay: &str, needle: &Option<String>| {
            needle
                .as_deref()
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .is_none_or(|n| hay.to_lowercase().contains(&n.to_lowercase()))
        };
        contains(&e.action, &self.action)
            && contains(&e.actor, &self.actor)
            && self
                .outcome
                .as_deref()
                .filter(|o| !o.is_empty())
                .is_none_or(|o| e.outcome.as_str() == o)
    }
}

/// A page of the audit log: up to `limit` events and the position to continue after, when the
/// log may hold more. The text filters apply after the store's query, so this reads store pages
/// until the page is full or the log ends.
pub async fn list(
    state: &AppState,
    listing: &Listing,
) -> Result<(Vec<AuditEvent>, Option<AuditId>)> {
    let limit = listing.limit.max(1) as usize;
    // Without filters a store page of `limit` is the answer; with them, read in larger steps.
    let step = if listing.filters() {
        STEP
    } else {
        listing.limit.clamp(1, STEP)
    };
    let mut after = listing.after;
    let mut out = Vec::new();
    loop {
        let batch = state
            .store
            .list_audit(&AuditQuery {
                device: listing.device,
                after,
                limit: step,
                order: listing.order,
            })
            .await?;
        let full = batch.len() == step as usize;
        for e in batch {
            after = Some(e.id);
            if listing.keeps(&e) {
                out.push(e);
                if out.len() == limit {
                    return Ok((out, after));
                }
            }
        }
        if !full {
            return Ok((out, None));
        }
    }
}

/// The event of `caller` doing `action` now: successful and about no device until the
/// builder methods of [`NewAuditEvent`] say otherwise.
pub fn by(state: &AppState, caller: &Caller, action: &str) -> NewAuditEvent {
    NewAuditEvent::new(state.clock.now(), caller.actor(), action)
}

/// Appends `event` to the audit log.
pub async fn append(state: &AppState, event: NewAuditEvent) -> Result<()> {
    state.store.append_audit(event).await?;
    Ok(())
}

/// Records that `caller` did `action` (successfully), with `details`.
pub async fn record(
    state: &AppState,
    caller: &Caller,
    action: &str,
    details: String,
) -> Result<()> {
    append(state, by(state, caller, action).details(details)).await
}
