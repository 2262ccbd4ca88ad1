//! Requesting, canceling, retrying and expiring admin actions (DESIGN.md "The Autopilot Reset
//! action lifecycle").

use time::{Duration, OffsetDateTime};

use super::model::{Action, ActionKind, ActionState};
use crate::audit::{AuditOutcome, NewAuditEvent};
use crate::command::{commands_for, DeviceCommand, Verb, LOCAL_RESET_POLICY_URI};
use crate::device::Device;
use crate::ids::{ActionId, BatchId, CommandId, DeviceId};
use crate::preflight::{preflight, BlockReason, PreflightSettings};
use crate::session::SessionError;
use crate::store::{DailyCap, Store};

/// What [`request`] needs besides the device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActionSettings {
    /// Preflight thresholds.
    pub preflight: PreflightSettings,
    /// Our `DMClient/Provider/<id>` name (the provisioning document's PROVIDER-ID), used by Retire.
    pub provider_id: String,
    /// Set for one request only: an admin's reason to skip preflight's WinRE checks (a PC fixed
    /// with `reagentc /enable` that cannot report it). Set by [`retry`] with a reason.
    pub winre_override: Option<String>,
}

impl Default for ActionSettings {
    fn default() -> Self {
        Self {
            preflight: PreflightSettings::default(),
            provider_id: "Redeploy".to_owned(),
            winre_override: None,
        }
    }
}

/// Kinds that erase the device: at most one of them may be active on a device.
fn is_reset_kind(kind: ActionKind) -> bool {
    matches!(
        kind,
        ActionKind::AutopilotReset
            | ActionKind::Wipe
            | ActionKind::WipeKeepProvisioning
            | ActionKind::WipeKeepUserData
            | ActionKind::WipeProtected
    )
}

/// Kinds that supersede a reset that has not gone out yet.
fn supersedes_resets(kind: ActionKind) -> bool {
    matches!(
        kind,
        ActionKind::Wipe
            | ActionKind::WipeKeepProvisioning
            | ActionKind::WipeKeepUserData
            | ActionKind::WipeProtected
            | ActionKind::Retire
    )
}

/// States in which nothing reached the device yet (a cancel is still honest).
fn not_sent_yet(state: ActionState) -> bool {
    matches!(
        state,
        ActionState::Requested | ActionState::Blocked | ActionState::Pending
    )
}

/// The commands that carry out `kind` on `device` (queue order).
pub fn commands_for_action(
    kind: ActionKind,
    device: DeviceId,
    action: ActionId,
    at: OffsetDateTime,
    settings: &ActionSettings,
) -> Vec<DeviceCommand> {
    match kind {
        // ITPRO dmclient-csp.md (protocol.md §3.8): Exec Provider/<id>/Unenroll with Data = ProviderID.
        ActionKind::Retire => vec![DeviceCommand::new(
            CommandId::generate(),
            device,
            Some(action),
            Verb::Exec,
            format!(
                "./Device/Vendor/MSFT/DMClient/Provider/{}/Unenroll",
                settings.provider_id
            ),
            at,
        )
        .with_data("chr", settings.provider_id.clone())],
        // Replace the policy, then read it back to verify what the device really holds.
        ActionKind::SetLocalResetPolicy(_) => {
            let mut cmds = commands_for(kind, device, action, at);
            cmds.push(DeviceCommand::new(
                CommandId::generate(),
                device,
                Some(action),
                Verb::Get,
                LOCAL_RESET_POLICY_URI,
                at,
            ));
            cmds
        }
        // The baseline first; the Exec follows in the same session once it is read
        // (super::advance, ARCHITECTURE.md "Never falsely done").
        ActionKind::AutopilotReset => {
            super::advance::baseline_commands(device, action, &settings.provider_id, at)
        }
        other => commands_for(other, device, action, at),
    }
}

/// Asks for `kind` on a device: preflight (with reasons) → `blocked`, or `pending` with its
/// commands queued for the next check-in. A wipe or retire cancels a reset that has not gone out
/// yet; a second reset/wipe while one is active is blocked. Audited as `action.create`.
/// `DeviceNotFound` for an unknown device.
pub async fn request(
    store: &dyn Store,
    device_id: DeviceId,
    kind: ActionKind,
    actor: &str,
    now: OffsetDateTime,
    settings: &ActionSettings,
) -> Result<Action, SessionError> {
    request_in_batch(store, device_id, kind, actor, now, settings, None).await
}

/// Why `kind` would be blocked on `device` given its `existing` actions (empty: it would be
/// queued), and the not-yet-sent resets it would supersede.
fn assess_with(
    device: &Device,
    existing: &[Action],
    kind: ActionKind,
    now: OffsetDateTime,
    settings: &ActionSettings,
) -> (Vec<BlockReason>, Vec<Action>) {
    // Superseded resets go first, so that they no longer count as active.
    let mut superseded = Vec::new();
    if supersedes_resets(kind) {
        for a in existing
            .iter()
            .filter(|a| is_reset_kind(a.kind) && not_sent_yet(a.state))
        {
            superseded.push(a.clone());
        }
    }
    let active_reset = existing.iter().any(|a| {
        !a.state.is_terminal()
            && a.state != ActionState::Blocked
            && is_reset_kind(a.kind)
            && !superseded.iter().any(|s| s.id == a.id)
    });

    let reasons: Vec<BlockReason> = if kind.is_autopilot_reset() {
        preflight(
            device,
            now,
            &settings.preflight,
            active_reset,
            crate::preflight::winre_blocks(device, existing),
        )
        .reasons
        .into_iter()
        .filter(|r| settings.winre_override.is_none() || !r.is_winre())
        .collect()
    } else {
        let mut r = Vec::new();
        if device.unenrolled_at.is_some() {
            r.push(BlockReason::Unenrolled);
        }
        if is_reset_kind(kind) && active_reset {
            r.push(BlockReason::ActionAlreadyRunning);
        }
        r
    };
    (reasons, superseded)
}

/// What [`request`] would decide for `kind` on a device, without changing anything: `None` for
/// an unknown device, otherwise the block reasons (empty: it would be queued).
pub async fn assess(
    store: &dyn Store,
    device_id: DeviceId,
    kind: ActionKind,
    now: OffsetDateTime,
    settings: &ActionSettings,
) -> Result<Option<Vec<BlockReason>>, SessionError> {
    let Some(device) = store.device(device_id).await? else {
        return Ok(None);
    };
    let existing = store.actions_of_device(device_id).await?;
    Ok(Some(assess_with(&device, &existing, kind, now, settings).0))
}

/// Whether `kind` erases the device (Autopilot Reset or a wipe): what the daily cap counts.
pub fn is_erasing(kind: ActionKind) -> bool {
    is_reset_kind(kind)
}

/// [`request`] as part of a bulk request: the action carries `batch` (and so does its audit event).
pub async fn request_in_batch(
    store: &dyn Store,
    device_id: DeviceId,
    kind: ActionKind,
    actor: &str,
    now: OffsetDateTime,
    settings: &ActionSettings,
    batch: Option<BatchId>,
) -> Result<Action, SessionError> {
    request_under_cap(store, device_id, kind, actor, now, settings, batch, None)
        .await?
        // Unreachable: only a cap refuses to create.
        .ok_or_else(|| SessionError::NotAllowed("the daily cap is reached".to_owned()))
}

/// [`request_in_batch`] under a daily cap: an action that would be queued is created only if
/// the store's count of the day (taken in the creating transaction) leaves room; `None` (and
/// nothing stored or audited) when the day is full. Blocked actions are not counted or capped.
#[allow(clippy::too_many_arguments)]
pub async fn request_under_cap(
    store: &dyn Store,
    device_id: DeviceId,
    kind: ActionKind,
    actor: &str,
    now: OffsetDateTime,
    settings: &ActionSettings,
    batch: Option<BatchId>,
    cap: Option<&DailyCap>,
) -> Result<Option<Action>, SessionError> {
    let device = store
        .device(device_id)
        .await?
        .ok_or(SessionError::DeviceNotFound(device_id))?;
    let existing = store.actions_of_device(device_id).await?;
    let mut action = Action::new(ActionId::generate(), device_id, kind, actor, batch, now);
    let (reasons, superseded) = assess_with(&device, &existing, kind, now, settings);

    let commands = if reasons.is_empty() {
        action.transition(ActionState::Pending, now, Some("queued"))?;
        if let (Some(why), true) = (&settings.winre_override, kind.is_autopilot_reset()) {
            action.add_note(now, format!("WinRE checks overridden by {actor}: {why}"));
        }
        commands_for_action(kind, device_id, action.id, now, settings)
    } else {
        let text = reasons
            .iter()
            .map(BlockReason::text)
            .collect::<Vec<_>>()
            .join("; ");
        action.transition(ActionState::Blocked, now, Some(&text))?;
        Vec::new()
    };
    match cap.filter(|_| action.state == ActionState::Pending) {
        Some(cap) => {
            if !store
                .create_action_under_cap(&action, &commands, cap)
                .await?
            {
                return Ok(None);
            }
        }
        None => store.create_action(&action, &commands).await?,
    }

    if action.state == ActionState::Pending {
        for mut old in superseded {
            let before = old.state;
            let note = format!("superseded by {} {}", kind.name(), action.id);
            old.transition(ActionState::Canceled, now, Some(&note))?;
            store.discard_queued_commands(old.id).await?;
            store.update_action(before, &old).await?;
        }
        if let ActionKind::SetLocalResetPolicy(allowed) = kind {
            let mut d = device.clone();
            d.local_reset_desired = Some(allowed);
            store.update_device(&d).await?;
        }
    }
    store
        .append_audit(NewAuditEvent {
            at: now,
            actor: actor.to_owned(),
            action: "action.create".to_owned(),
            targets: vec![device_id],
            batch,
            outcome: if action.state == ActionState::Blocked {
                AuditOutcome::Refused
            } else {
                AuditOutcome::Success
            },
            details: format!(
                "{} {} -> {}{}",
                kind.code(),
                action.id,
                action.state,
                action
                    .reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            ),
        })
        .await?;
    Ok(Some(action))
}

/// Cancels an action that has not reached the device (requested, blocked or pending) and drops
/// its queued commands. `ActionNotFound` if unknown; `NotAllowed` once it was sent (the device may
/// act on it whatever we record).
pub async fn cancel(
    store: &dyn Store,
    action_id: ActionId,
    actor: &str,
    now: OffsetDateTime,
) -> Result<Action, SessionError> {
    let mut action = store
        .action(action_id)
        .await?
        .ok_or(SessionError::ActionNotFound(action_id))?;
    if !not_sent_yet(action.state) {
        return Err(SessionError::NotAllowed(format!(
            "action {action_id} is {}; only requested, blocked or pending actions can be canceled",
            action.state
        )));
    }
    let before = action.state;
    action.transition(
        ActionState::Canceled,
        now,
        Some(&format!("canceled by {actor}")),
    )?;
    store.discard_queued_commands(action_id).await?;
    store.update_action(before, &action).await?;
    store
        .append_audit(NewAuditEvent {
            at: now,
            actor: actor.to_owned(),
            action: "action.cancel".to_owned(),
            targets: vec![action.device],
            batch: action.batch,
            outcome: AuditOutcome::Success,
            details: format!("{} {}", action.kind.code(), action.id),
        })
        .await?;
    Ok(action)
}

/// Asks again for the kind of a failed, expired, canceled or blocked action: a new action through
/// [`request`] (preflight runs again). `NotAllowed` while the action is still active. With a
/// `reason` (an admin who fixed the PC, e.g. with `reagentc /enable`, when it cannot report
/// WinRE's state), preflight's WinRE checks are skipped — a PC whose WinRE is still off refuses
/// the Exec at once and nothing happens to it — and the retry is audited as `action.retry`
/// with the reason.
pub async fn retry(
    store: &dyn Store,
    action_id: ActionId,
    actor: &str,
    now: OffsetDateTime,
    settings: &ActionSettings,
    reason: Option<&str>,
) -> Result<Action, SessionError> {
    let action = store
        .action(action_id)
        .await?
        .ok_or(SessionError::ActionNotFound(action_id))?;
    if !(action.state.is_terminal() || action.state == ActionState::Blocked)
        || action.state == ActionState::Done
    {
        return Err(SessionError::NotAllowed(format!(
            "action {action_id} is {}; only failed, expired, canceled or blocked actions can be retried",
            action.state
        )));
    }
    let Some(reason) = reason else {
        return request(store, action.device, action.kind, actor, now, settings).await;
    };
    let settings = ActionSettings {
        winre_override: Some(reason.to_owned()),
        ..settings.clone()
    };
    let again = request(store, action.device, action.kind, actor, now, &settings).await?;
    store
        .append_audit(NewAuditEvent {
            at: now,
            actor: actor.to_owned(),
            action: "action.retry".to_owned(),
            targets: vec![action.device],
            batch: action.batch,
            outcome: if again.state == ActionState::Blocked {
                AuditOutcome::Refused
            } else {
                AuditOutcome::Success
            },
            details: format!(
                "{} {} retried as {} ({}): {reason}",
                action.kind.code(),
                action.id,
                again.id,
                again.state
            ),
        })
        .await?;
    Ok(again)
}

/// Expires every active (pending, sent, acknowledged, in progress) or blocked action whose last
/// transition is older than `after`, dropping its queued commands. Returns the expired actions.
/// At most [`EXPIRE_PER_TICK`] per call (oldest first); the rest go on the next call.
pub async fn expire_stuck(
    store: &dyn Store,
    now: OffsetDateTime,
    after: Duration,
) -> Result<Vec<Action>, SessionError> {
    const STUCK: &[ActionState] = &[
        ActionState::Blocked,
        ActionState::Pending,
        ActionState::Sent,
        ActionState::Acknowledged,
        ActionState::InProgress,
    ];
    let mut expired = Vec::new();
    // "Older than `after`": now - updated_at > after, i.e. updated_at < now - after.
    for mut a in store
        .stale_actions(STUCK, now - after, EXPIRE_PER_TICK)
        .await?
    {
        let state = a.state;
        let note = format!("no progress since {}", a.updated_at);
        a.transition(ActionState::Expired, now, Some(&note))?;
        store.discard_queued_commands(a.id).await?;
        match store.update_action(state, &a).await {
            Ok(()) => expired.push(a),
            // Moved meanwhile (a check-in advanced it): not stuck after all.
            Err(crate::store::StoreError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    for a in &expired {
        store
            .append_audit(NewAuditEvent {
                at: now,
                actor: "worker".to_owned(),
                action: "action.expired".to_owned(),
                targets: vec![a.device],
                batch: a.batch,
                outcome: AuditOutcome::Failed,
                details: format!(
                    "{} {}: no progress for {} h",
                    a.kind.code(),
                    a.id,
                    after.whole_hours()
                ),
            })
            .await?;
    }
    Ok(expired)
}

/// How many actions one [`expire_stuck`] call expires at most, so one tick stays short.
pub const EXPIRE_PER_TICK: u32 = 1_000;
