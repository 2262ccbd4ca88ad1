//! Batches: one kind of action asked of many devices (a list, a group or a filter) in waves
//! under a daily cap, as every surface starts and follows them. A dry run shows what would
//! happen to each device; starting one needs the role for the kind and, for a reset or wipe of
//! a whole group, the group's name typed back; a batch's progress counts its actions by state
//! and says whether it has settled.

use redeploy_core::batch::{
    self, BatchProgress, BatchResult, Plan, Steer, Steered, Target, WaveSettings,
};
use redeploy_core::store::{BatchCounts, BatchRecord, Cursor, WaitingDevice};
use redeploy_core::{ActionKind, BatchId, DeviceFilter, DeviceId, Group};
use time::Duration;

use super::actions::{action_settings, role_for};
use super::groups::{self, require_confirmation};
use super::{Caller, Result, ServiceError};
use crate::state::AppState;

/// Which devices a batch is for.
#[derive(Debug, Clone)]
pub enum Targets {
    Devices(Vec<DeviceId>),
    /// A group by id or exact name.
    Group(String),
    Filter(DeviceFilter),
}

/// The resolved target: the core's target, the group when it is one, and how the audit log
/// and refusals name it.
struct Resolved {
    target: Target,
    group: Option<Group>,
    text: String,
}

async fn resolve(state: &AppState, targets: Targets) -> Result<Resolved> {
    Ok(match targets {
        Targets::Devices(ids) => Resolved {
            text: format!("{} devices", ids.len()),
            target: Target::Devices(ids),
            group: None,
        },
        Targets::Group(text) => {
            let group = groups::find(state, &text).await?;
            Resolved {
                text: format!("group {:?}", group.name),
                target: Target::ReadGroup(Box::new(group.clone())),
                group: Some(group),
            }
        }
        Targets::Filter(f) => Resolved {
            target: Target::Filter(f),
            group: None,
            text: "a filter".to_owned(),
        },
    })
}

/// What would happen to each device if `kind` were asked of `targets` now, changing nothing
/// (no role needed: it is a read). The group comes back too when the target is one.
pub async fn preview(
    state: &AppState,
    targets: Targets,
    kind: ActionKind,
) -> Result<(Plan, Option<Group>)> {
    let r = resolve(state, targets).await?;
    plan(state, r, kind).await
}

async fn plan(state: &AppState, r: Resolved, kind: ActionKind) -> Result<(Plan, Option<Group>)> {
    let plan = batch::plan(
        state.store.as_ref(),
        &r.target,
        kind,
        state.clock.now(),
        &action_settings(state),
    )
    .await?;
    Ok((plan, r.group))
}

/// [`preview`] for a caller who holds the role to ask for `kind` (the API's dry run, refused
/// and audited like the real request).
pub async fn dry_run(
    state: &AppState,
    caller: &Caller,
    targets: Targets,
    kind: ActionKind,
) -> Result<(Plan, Option<Group>)> {
    let r = resolve(state, targets).await?;
    require_role(state, caller, kind, &r.text).await?;
    plan(state, r, kind).await
}

async fn require_role(
    state: &AppState,
    caller: &Caller,
    kind: ActionKind,
    text: &str,
) -> Result<()> {
    caller
        .require(
            state,
            role_for(kind),
            &format!("a batch of {} on {text}", kind.code()),
            None,
        )
        .await
}

/// How a batch is split in time.
#[derive(Debug, Clone, Copy, Default)]
pub struct Waves {
    /// Devices per wave (`None` = all at once).
    pub size: Option<u32>,
    /// Time between the starts of two waves.
    pub interval: Duration,
    /// This batch's own cap of erasing actions per UTC day (`None` = the server's `daily_cap`).
    pub daily_cap: Option<u32>,
}

/// Starts a batch: the first wave is asked for now, later waves and devices over the daily cap
/// are stored for the worker to release. Erasing a whole group needs `confirm` equal to its
/// name. One transaction per wave (see `redeploy_core::batch::execute`).
pub async fn start(
    state: &AppState,
    caller: &Caller,
    targets: Targets,
    kind: ActionKind,
    waves: Waves,
    confirm: Option<&str>,
) -> Result<BatchResult> {
    if waves.size == Some(0) {
        return Err(ServiceError::Invalid("wave_size must be at least 1".into()));
    }
    if waves.daily_cap == Some(0) {
        return Err(ServiceError::Invalid(
            "daily_cap must be at least 1 (leave it out for the server's daily_cap)".into(),
        ));
    }
    let r = resolve(state, targets).await?;
    require_role(state, caller, kind, &r.text).await?;
    if let Some(g) = &r.group {
        require_confirmation(kind, g, confirm)?;
    }
    let settings = WaveSettings {
        wave_size: waves.size.unwrap_or(u32::MAX),
        interval: waves.interval,
        // Stored with every later wave, so the worker releases them under the same cap.
        daily_cap: waves.daily_cap.or(state.settings.daily_cap),
    };
    let result = batch::execute(
        state.store.as_ref(),
        &r.target,
        kind,
        &caller.actor(),
        state.clock.now(),
        &action_settings(state),
        confirm,
        &settings,
    )
    .await?;
    state.wake_push();
    Ok(result)
}

/// Where the batch `id` is: its actions, its waves and whether it has settled
/// ([`batch::batch_settled`]); a batch with neither is not found.
pub async fn progress(state: &AppState, id: BatchId) -> Result<BatchProgress> {
    let progress = batch::batch_progress(state.store.as_ref(), id).await?;
    if progress.record.is_none() && progress.actions.is_empty() && progress.waves.is_empty() {
        return Err(ServiceError::NotFound(format!("no batch {id}")));
    }
    Ok(progress)
}

/// Releases the waves that are due (timed work of the worker), each claimed in the transaction
/// that requests its actions, under the server's `daily_cap`: how many were released.
pub async fn release_due_waves(state: &AppState) -> Result<usize> {
    let released = batch::release_due_waves(
        state.store.as_ref(),
        state.clock.now(),
        &action_settings(state),
        state.settings.daily_cap,
    )
    .await?
    .len();
    if released > 0 {
        state.wake_push();
    }
    Ok(released)
}

/// One page of bulk requests, newest first, each with its counts, and the cursor of the next
/// page. A cursor this list did not make is invalid input.
pub async fn list(
    state: &AppState,
    limit: u32,
    cursor: Option<&Cursor>,
) -> Result<(Vec<(BatchRecord, BatchCounts)>, Option<Cursor>)> {
    let page = super::listed(state.store.list_batches(limit, cursor).await)?;
    let ids: Vec<BatchId> = page.items.iter().map(|b| b.id).collect();
    let mut counts = state.store.batch_counts(&ids).await?;
    let rows = page
        .items
        .into_iter()
        .map(|b| {
            let c = counts.remove(&b.id).unwrap_or_default();
            (b, c)
        })
        .collect();
    Ok((rows, page.next))
}

/// Pauses, resumes or cancels the batch `id` (see [`batch::steer`]): needs the role that may
/// ask for the batch's kind; audited. Returns the batch as it is now, with its counts.
pub async fn steer(
    state: &AppState,
    caller: &Caller,
    id: BatchId,
    how: Steer,
) -> Result<(Steered, BatchCounts)> {
    let record = state
        .store
        .batch_record(id)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("no batch {id}")))?;
    caller
        .require(
            state,
            role_for(record.kind),
            &format!("{} batch {id}", how.verb()),
            None,
        )
        .await?;
    let steered = batch::steer(
        state.store.as_ref(),
        id,
        how,
        &caller.actor(),
        state.clock.now(),
    )
    .await?
    .ok_or_else(|| ServiceError::NotFound(format!("no batch {id}")))?;
    let counts = state
        .store
        .batch_counts(&[id])
        .await?
        .remove(&id)
        .unwrap_or_default();
    Ok((steered, counts))
}

/// Devices named by waves still waiting in batches not canceled (paused ones included), with
/// their batch and wave; `only` narrows it to these devices.
pub async fn waiting(state: &AppState, only: Option<&[DeviceId]>) -> Result<Vec<WaitingDevice>> {
    Ok(state.store.waiting_wave_devices(only).await?)
}
