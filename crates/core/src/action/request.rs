//! Requesting, canceling, retrying and expiring admin actions (docs/design.md §4 "The Autopilot
//! Reset action lifecycle").

use std::collections::HashMap;

use time::{Duration, OffsetDateTime};

use super::model::{Action, ActionKind, ActionState};
use crate::audit::{AuditOutcome, NewAuditEvent};
use crate::command::{commands_for, DeviceCommand, Verb, LOCAL_RESET_POLICY_URI};
use crate::device::Device;
use crate::ids::{ActionId, BatchId, CommandId, DeviceId};
use crate::preflight::{preflight, BlockReason, PreflightSettings};
use crate::session::SessionError;
use crate::store::{
    ActionUpdate, DailyCap, DeviceChange, NewAction, RequestPlan, Store, StoreError, WaitingDevice,
    WriteOutcome,
};

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
    /// A group reset in one wave of more devices than this queues its ready devices
    /// set-based ([`crate::store::BulkQueue`]); [`crate::batch::BULK_FROM`] by default.
    pub bulk_from: usize,
}

impl Default for ActionSettings {
    fn default() -> Self {
        Self {
            preflight: PreflightSettings::default(),
            provider_id: "Redeploy".to_owned(),
            winre_override: None,
            bulk_from: crate::batch::BULK_FROM,
        }
    }
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
        // ITPRO dmclient-csp.md (docs/protocol.md §3.8): Exec Provider/<id>/Unenroll with Data =
        // ProviderID.
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
/// Everything it changes (the action and its commands, the superseded resets and their queued
/// commands, the device's local-reset wish, the audit event) is written in one transaction
/// ([`request_under_cap`]). `DeviceNotFound` for an unknown device.
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
///
/// An erasing kind is also blocked while the device waits in a wave of another batch
/// (`waiting`): the batch would reset it again when that wave is released.
pub(crate) fn assess_with(
    device: &Device,
    existing: &[Action],
    waiting: &[WaitingDevice],
    kind: ActionKind,
    now: OffsetDateTime,
    settings: &ActionSettings,
) -> (Vec<BlockReason>, Vec<Action>) {
    // Superseded resets go first, so that they no longer count as active.
    let mut superseded = Vec::new();
    if supersedes_resets(kind) {
        for a in existing
            .iter()
            .filter(|a| is_erasing(a.kind) && not_sent_yet(a.state))
        {
            superseded.push(a.clone());
        }
    }
    let active_reset = existing.iter().any(|a| {
        !a.state.is_terminal()
            && a.state != ActionState::Blocked
            && is_erasing(a.kind)
            && !superseded.iter().any(|s| s.id == a.id)
    });

    let mut reasons: Vec<BlockReason> = if kind.is_autopilot_reset() {
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
        if is_erasing(kind) && active_reset {
            r.push(BlockReason::ActionAlreadyRunning);
        }
        r
    };
    if is_erasing(kind) {
        reasons.extend(waiting.iter().map(|w| BlockReason::WaitingInBatch {
            batch: w.batch,
            wave: w.wave,
            due_at: w.due_at,
        }));
    }
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
    let waiting = store.waiting_wave_devices(Some(&[device_id])).await?;
    Ok(Some(
        assess_with(&device, &existing, &waiting, kind, now, settings).0,
    ))
}

/// Whether `kind` erases the device (Autopilot Reset or a wipe): at most one of them may be
/// active on a device, and they are what the daily cap counts.
pub fn is_erasing(kind: ActionKind) -> bool {
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

/// [`request_in_batch`] under a daily cap: an action of one of the cap's kinds that would be
/// queued is created only if the store's count of the day (taken in the creating transaction)
/// leaves room; `None` (and nothing stored or audited) when the day is full. Blocked actions are
/// not counted or capped.
///
/// Reads the device and its actions, plans with [`plan_request`], and writes the plan in one
/// transaction ([`crate::store::ActionStore::write_request_plan`]). When the store refuses the
/// plan because the world moved meanwhile (another request created an active reset on the
/// device, a superseded reset was sent, the day filled up) it reads again and re-plans, so the
/// second of two concurrent resets ends up blocked with the usual reason.
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
    let cap = cap.filter(|c| c.kinds.contains(&kind));
    let mut last_conflict = None;
    for _ in 0..PLAN_ATTEMPTS {
        let targets = read_targets(store, &[device_id], batch).await?;
        let used = match cap {
            Some(c) => Some(store.count_actions_created(&c.kinds, c.from, c.to).await?),
            None => None,
        };
        let planned = plan_requests(&targets, kind, actor, now, settings, batch, cap.zip(used));
        let action = match planned.decisions.into_iter().next() {
            Some((_, Decision::Created(a))) => a,
            Some((_, Decision::NotFound)) => return Err(SessionError::DeviceNotFound(device_id)),
            // The day is full.
            None => return Ok(None),
        };
        match write_or_replan(store, &planned.plan, &mut last_conflict).await? {
            Some(WriteOutcome::Written) => return Ok(Some(action)),
            // Another writer took the last slot between our count and our transaction.
            Some(WriteOutcome::CapReached { .. }) => {
                last_conflict = Some("the daily cap filled meanwhile".to_owned());
            }
            None => {}
            // The plan claims nothing, so this cannot happen; an error rather than a panic.
            Some(WriteOutcome::ClaimLost) => return Err(claim_lost()),
        }
    }
    Err(kept_changing(&format!("device {device_id}"), last_conflict))
}

/// Writes `plan`; `None` when the store refused it because a device moved meanwhile (the
/// reason goes to `last_conflict`): read again and re-plan.
async fn write_or_replan(
    store: &dyn Store,
    plan: &RequestPlan,
    last_conflict: &mut Option<String>,
) -> Result<Option<WriteOutcome>, SessionError> {
    match store.write_request_plan(plan).await {
        Ok(outcome) => Ok(Some(outcome)),
        Err(StoreError::Conflict(why)) => {
            *last_conflict = Some(why);
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

fn claim_lost() -> SessionError {
    StoreError::Conflict("a plan without claims lost a claim".into()).into()
}

/// The conflict a request path answers when the store refused its plan [`PLAN_ATTEMPTS`] times
/// (409 on the API): `what` kept changing; `last_conflict` is the store's last reason.
pub(crate) fn kept_changing(what: &str, last_conflict: Option<String>) -> SessionError {
    let why = last_conflict.map_or_else(String::new, |w| format!(" ({w})"));
    StoreError::Conflict(format!(
        "{what} kept changing while the request was written{why}; try again"
    ))
    .into()
}

/// How often a request path reads and plans again after the store refused its plan because the
/// world moved meanwhile; each refusal means another writer committed, so this is only reached
/// under a storm of writers on the same devices.
pub(crate) const PLAN_ATTEMPTS: usize = 8;

/// One device to plan a request for, as read just before planning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestTarget {
    /// The requested id.
    pub id: DeviceId,
    /// The device; `None` if the id is unknown.
    pub device: Option<Device>,
    /// Its actions that planning looks at, newest first: the ones not ended and the Autopilot
    /// Resets that ended ([`crate::store::ActionStore::actions_for_readiness`]).
    pub actions: Vec<Action>,
    /// The waves of other batches it still waits in.
    pub waiting: Vec<WaitingDevice>,
}

/// Reads what planning needs of each device, in order, in a few queries whatever their number
/// (the devices and their actions 500 at a time, the waiting waves once): a group of 100,000
/// PCs is read in a second, not in 200,000 queries.
/// `own` is the batch the request belongs to: its own waiting waves do not count.
pub(crate) async fn read_targets(
    store: &dyn Store,
    ids: &[DeviceId],
    own: Option<BatchId>,
) -> Result<Vec<RequestTarget>, SessionError> {
    let mut waiting: HashMap<DeviceId, Vec<WaitingDevice>> = HashMap::new();
    for w in store.waiting_wave_devices(Some(ids)).await? {
        if Some(w.batch) != own {
            waiting.entry(w.device).or_default().push(w);
        }
    }
    let devices = store.devices_by_ids(ids).await?;
    let actions = store.actions_for_readiness(ids).await?;
    Ok(ids
        .iter()
        .map(|&id| RequestTarget {
            id,
            // Cloned, not taken: an id given twice reads the same.
            device: devices.get(&id).cloned(),
            actions: actions.get(&id).cloned().unwrap_or_default(),
            waiting: waiting.get(&id).cloned().unwrap_or_default(),
        })
        .collect())
}

/// Everything one request for `kind` on one device decides ([`plan_request`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedAction {
    /// The new action (`pending` with its commands, or `blocked` with the reasons) and its
    /// queued commands.
    pub new: NewAction,
    /// Not-yet-sent resets it supersedes, canceled (only when the new action is queued).
    pub cancel: Vec<ActionUpdate>,
    /// The device column it changes (the local-reset wish), only when queued.
    pub device_change: Option<DeviceChange>,
    /// Its `action.create` audit event.
    pub audit: NewAuditEvent,
}

/// Decides a request for `kind` on `device` given its `existing` actions, without I/O: preflight
/// (with reasons) → `blocked`, or `pending` with its commands queued for the next check-in. A
/// wipe or retire cancels a reset that has not gone out yet; a second reset/wipe while one is
/// active is blocked. Audited as `action.create` (refused when blocked).
#[allow(clippy::too_many_arguments)]
pub fn plan_request(
    device: &Device,
    existing: &[Action],
    waiting: &[WaitingDevice],
    kind: ActionKind,
    actor: &str,
    now: OffsetDateTime,
    settings: &ActionSettings,
    batch: Option<BatchId>,
) -> PlannedAction {
    let (reasons, superseded) = assess_with(device, existing, waiting, kind, now, settings);
    let action = decided_action(device.id, kind, actor, now, settings, batch, &reasons);
    let (commands, cancel, device_change) = if reasons.is_empty() {
        let note = format!("superseded by {} {}", kind.name(), action.id);
        let cancel = superseded
            .into_iter()
            .filter_map(|mut old| {
                let expected = old.state;
                old.transition(ActionState::Canceled, now, Some(&note))
                    .ok()
                    .map(|()| ActionUpdate {
                        expected,
                        action: old,
                    })
            })
            .collect();
        let change = match kind {
            ActionKind::SetLocalResetPolicy(allowed) => Some(DeviceChange {
                device: device.id,
                local_reset_desired: allowed,
            }),
            _ => None,
        };
        (
            commands_for_action(kind, device.id, action.id, now, settings),
            cancel,
            change,
        )
    } else {
        (Vec::new(), Vec::new(), None)
    };
    let audit = creation_audit(&action, now);
    PlannedAction {
        new: NewAction { action, commands },
        cancel,
        device_change,
        audit,
    }
}

/// The `action.create` audit event of a new `action` (refused when it is blocked).
pub(crate) fn creation_audit(action: &Action, now: OffsetDateTime) -> NewAuditEvent {
    NewAuditEvent::new(now, action.requested_by.clone(), "action.create")
        .targets([action.device])
        .batch(action.batch)
        .outcome(if action.state == ActionState::Blocked {
            AuditOutcome::Refused
        } else {
            AuditOutcome::Success
        })
        .details(format!(
            "{} {} -> {}{}",
            action.kind.code(),
            action.id,
            action.state,
            action
                .reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        ))
}

/// A new action of `kind` on `device` as a request with preflight's `reasons` makes it:
/// `pending` ("queued", with the note of a WinRE override) when there are none, else `blocked`
/// with them as its reason. Before any supersession.
pub(crate) fn decided_action(
    device: DeviceId,
    kind: ActionKind,
    actor: &str,
    now: OffsetDateTime,
    settings: &ActionSettings,
    batch: Option<BatchId>,
    reasons: &[BlockReason],
) -> Action {
    let mut action = Action::new(ActionId::generate(), device, kind, actor, batch, now);
    // Requested → pending and requested → blocked are always allowed.
    if reasons.is_empty() {
        let _ = action.transition(ActionState::Pending, now, Some("queued"));
        if let (Some(why), true) = (&settings.winre_override, kind.is_autopilot_reset()) {
            action.add_note(now, format!("WinRE checks overridden by {actor}: {why}"));
        }
    } else {
        let text = reasons
            .iter()
            .map(BlockReason::text)
            .collect::<Vec<_>>()
            .join("; ");
        let _ = action.transition(ActionState::Blocked, now, Some(&text));
    }
    action
}

/// What planning decided for one device of [`plan_requests`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// An action is created (`pending` or `blocked`).
    Created(Action),
    /// No such device: nothing is created.
    NotFound,
}

/// What [`plan_requests`] decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedRequests {
    /// One decision per device handled, in target order.
    pub decisions: Vec<(DeviceId, Decision)>,
    /// Devices left over because the day's cap was reached, in target order (nothing planned
    /// for them).
    pub over_cap: Vec<DeviceId>,
    /// The writes, for one transaction; `cap` is set when the cap applied.
    pub plan: RequestPlan,
}

/// Plans `kind` on each of `targets` in order ([`plan_request`] per known device) as one plan.
/// `cap` is the day's cap with the count of it already used; it applies when `kind` is one of
/// its kinds: once the queued actions fill the room left, every remaining device is left over
/// (`over_cap`), whatever it would have become. Blocked actions take no room. No I/O.
#[allow(clippy::too_many_arguments)]
pub fn plan_requests(
    targets: &[RequestTarget],
    kind: ActionKind,
    actor: &str,
    now: OffsetDateTime,
    settings: &ActionSettings,
    batch: Option<BatchId>,
    cap: Option<(&DailyCap, u64)>,
) -> PlannedRequests {
    let cap = cap.filter(|(c, _)| c.kinds.contains(&kind));
    let mut plan = RequestPlan::new(now);
    plan.cap = cap.map(|(c, _)| c.clone());
    let mut room = cap.map(|(c, used)| u64::from(c.cap).saturating_sub(used));
    let mut decisions = Vec::with_capacity(targets.len());
    for (i, target) in targets.iter().enumerate() {
        if room == Some(0) {
            return PlannedRequests {
                decisions,
                over_cap: targets[i..].iter().map(|t| t.id).collect(),
                plan,
            };
        }
        let Some(device) = &target.device else {
            decisions.push((target.id, Decision::NotFound));
            continue;
        };
        let planned = plan_request(
            device,
            &target.actions,
            &target.waiting,
            kind,
            actor,
            now,
            settings,
            batch,
        );
        if planned.new.action.state == ActionState::Pending {
            room = room.map(|r| r - 1);
        }
        decisions.push((target.id, Decision::Created(planned.new.action.clone())));
        plan.end.extend(planned.cancel);
        plan.create.push(planned.new);
        plan.device_changes.extend(planned.device_change);
        plan.audit.push(planned.audit);
    }
    PlannedRequests {
        decisions,
        over_cap: Vec::new(),
        plan,
    }
}

/// Asks for `kind` on every device of `ids` as one request: every action, cancellation, device
/// change and audit entry — `summary` too, the request's own audit entry (e.g. `group.local_reset`)
/// — in one transaction, re-planned when the store refuses the plan because a device moved
/// meanwhile. One decision per id, in order (`NotFound` for an unknown id). No daily cap.
pub async fn request_for_devices(
    store: &dyn Store,
    ids: &[DeviceId],
    kind: ActionKind,
    actor: &str,
    now: OffsetDateTime,
    settings: &ActionSettings,
    summary: NewAuditEvent,
) -> Result<Vec<(DeviceId, Decision)>, SessionError> {
    let mut last_conflict = None;
    for _ in 0..PLAN_ATTEMPTS {
        let targets = read_targets(store, ids, None).await?;
        let mut planned = plan_requests(&targets, kind, actor, now, settings, None, None);
        planned.plan.audit.push(summary.clone());
        match write_or_replan(store, &planned.plan, &mut last_conflict).await? {
            Some(WriteOutcome::Written) => return Ok(planned.decisions),
            // No cap and no claims in this plan: neither can be refused.
            Some(WriteOutcome::CapReached { .. } | WriteOutcome::ClaimLost) => {
                return Err(claim_lost())
            }
            None => {}
        }
    }
    Err(kept_changing("the devices", last_conflict))
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
    // The state check, the dropped commands and the audit event in one transaction: a cancel
    // that lost a race with a check-in sending the action changes nothing (`Conflict`).
    let mut plan = RequestPlan::new(now);
    plan.audit.push(
        NewAuditEvent::new(now, actor.to_owned(), "action.cancel")
            .targets([action.device])
            .batch(action.batch)
            .details(format!("{} {}", action.kind.code(), action.id)),
    );
    plan.end.push(ActionUpdate {
        expected: before,
        action: action.clone(),
    });
    store.write_request_plan(&plan).await?;
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
        .append_audit(
            NewAuditEvent::new(now, actor.to_owned(), "action.retry")
                .targets([action.device])
                .batch(action.batch)
                .outcome(if again.state == ActionState::Blocked {
                    AuditOutcome::Refused
                } else {
                    AuditOutcome::Success
                })
                .details(format!(
                    "{} {} retried as {} ({}): {reason}",
                    action.kind.code(),
                    action.id,
                    again.id,
                    again.state
                )),
        )
        .await?;
    Ok(again)
}

/// Expires every active (pending, sent, acknowledged, in progress) or blocked action whose last
/// transition is older than `after`, dropping its queued commands, audited as `action.expired`
/// (each action with its commands and event in one transaction; one that moved meanwhile is
/// left alone). Returns the expired actions. At most [`EXPIRE_PER_TICK`] per call (oldest
/// first); the rest go on the next call.
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
        let mut plan = RequestPlan::new(now);
        plan.audit.push(
            NewAuditEvent::new(now, "worker", "action.expired")
                .targets([a.device])
                .batch(a.batch)
                .outcome(AuditOutcome::Failed)
                .details(format!(
                    "{} {}: no progress for {} h",
                    a.kind.code(),
                    a.id,
                    after.whole_hours()
                )),
        );
        plan.end.push(ActionUpdate {
            expected: state,
            action: a.clone(),
        });
        match store.write_request_plan(&plan).await {
            Ok(_) => expired.push(a),
            // Moved meanwhile (a check-in advanced it): not stuck after all.
            Err(StoreError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(expired)
}

/// How many actions one [`expire_stuck`] call expires at most, so one tick stays short.
pub const EXPIRE_PER_TICK: u32 = 1_000;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::{EnrollmentType, JoinType};
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-05-04 9:00 UTC);

    /// A device that passes the reset preflight at [`NOW`].
    fn ready(name: &str) -> Device {
        let mut d = Device::new(DeviceId::generate(), name, datetime!(2026-01-01 0:00 UTC));
        d.join_type = JoinType::EntraJoined;
        d.join_evidence = crate::device::JoinEvidence::EntraToken;
        d.enrollment_type = Some(EnrollmentType::Device);
        d.os_version = Some("10.0.22631.4037".into());
        d.os_platform = Some("Windows 11 Enterprise".into());
        d.last_seen = Some(NOW - Duration::hours(1));
        d.cert_not_after = Some(NOW + Duration::days(300));
        d
    }

    fn existing(device: &Device, kind: ActionKind, states: &[ActionState]) -> Action {
        let at = NOW - Duration::hours(2);
        let mut a = Action::new(ActionId::generate(), device.id, kind, "earlier", None, at);
        for s in states {
            a.transition(*s, at, None).unwrap();
        }
        a
    }

    fn plan(device: &Device, existing: &[Action], kind: ActionKind) -> PlannedAction {
        plan_request(
            device,
            existing,
            &[],
            kind,
            "ada",
            NOW,
            &ActionSettings::default(),
            None,
        )
    }

    #[test]
    fn a_ready_device_gets_a_pending_reset_with_its_baseline_reads_and_an_audit_event() {
        let d = ready("pc-1");
        let p = plan(&d, &[], ActionKind::AutopilotReset);
        let a = &p.new.action;
        assert_eq!(
            (a.state, a.device, a.created_at),
            (ActionState::Pending, d.id, NOW)
        );
        // The baseline reads first; the Exec follows once they are answered (advance.rs).
        let verbs: Vec<Verb> = p.new.commands.iter().map(|c| c.verb).collect();
        assert_eq!(verbs, [Verb::Replace, Verb::Get, Verb::Get, Verb::Get]);
        assert!(p.new.commands.iter().all(|c| c.action == Some(a.id)));
        assert!(p.cancel.is_empty() && p.device_change.is_none());
        assert_eq!(p.audit.action, "action.create");
        assert_eq!(p.audit.outcome, AuditOutcome::Success);
        assert_eq!(p.audit.targets, [d.id]);
        assert_eq!(
            p.audit.details,
            format!("autopilot_reset {} -> pending", a.id)
        );
    }

    #[test]
    fn a_device_that_fails_preflight_gets_a_blocked_action_and_nothing_else() {
        let mut d = ready("pc-old");
        d.last_seen = None;
        let reset = existing(&d, ActionKind::AutopilotReset, &[ActionState::Pending]);
        let p = plan(&d, std::slice::from_ref(&reset), ActionKind::AutopilotReset);
        let a = &p.new.action;
        assert_eq!(a.state, ActionState::Blocked);
        let reason = a.reason.as_deref().unwrap();
        assert!(reason.contains("already running"), "{reason}");
        assert!(p.new.commands.is_empty() && p.cancel.is_empty());
        assert_eq!(p.audit.outcome, AuditOutcome::Refused);
        assert!(p.audit.details.ends_with(&format!("-> blocked: {reason}")));
    }

    #[test]
    fn a_wipe_supersedes_resets_not_sent_yet_but_not_a_sent_one() {
        let d = ready("pc-2");
        let pending = existing(&d, ActionKind::AutopilotReset, &[ActionState::Pending]);
        let blocked = existing(&d, ActionKind::AutopilotReset, &[ActionState::Blocked]);
        let sync = existing(&d, ActionKind::Sync, &[ActionState::Pending]);
        let p = plan(
            &d,
            &[pending.clone(), blocked.clone(), sync],
            ActionKind::Wipe,
        );
        assert_eq!(p.new.action.state, ActionState::Pending);
        let canceled: Vec<_> = p
            .cancel
            .iter()
            .map(|u| (u.action.id, u.expected, u.action.state))
            .collect();
        assert_eq!(
            canceled,
            [
                (pending.id, ActionState::Pending, ActionState::Canceled),
                (blocked.id, ActionState::Blocked, ActionState::Canceled)
            ]
        );
        let note = p.cancel[0].action.timeline.last().unwrap().note.clone();
        assert_eq!(
            note.unwrap(),
            format!("superseded by wipe {}", p.new.action.id)
        );

        let sent = existing(
            &d,
            ActionKind::AutopilotReset,
            &[ActionState::Pending, ActionState::Sent],
        );
        let p = plan(&d, &[sent], ActionKind::Wipe);
        assert_eq!(p.new.action.state, ActionState::Blocked);
        assert!(p.cancel.is_empty(), "a sent reset cannot be called back");
    }

    #[test]
    fn a_local_reset_policy_changes_the_devices_wish_only_when_queued() {
        let d = ready("pc-3");
        let p = plan(&d, &[], ActionKind::SetLocalResetPolicy(true));
        assert_eq!(
            p.device_change,
            Some(DeviceChange {
                device: d.id,
                local_reset_desired: true
            })
        );
        assert_eq!(p.new.commands.len(), 2, "Replace, then Get to verify");
        let mut gone = d.clone();
        gone.unenrolled_at = Some(NOW);
        let p = plan(&gone, &[], ActionKind::SetLocalResetPolicy(false));
        assert_eq!(p.new.action.state, ActionState::Blocked);
        assert_eq!(p.device_change, None);
    }

    fn targets(devices: &[Option<Device>]) -> Vec<RequestTarget> {
        devices
            .iter()
            .map(|d| RequestTarget {
                id: d.as_ref().map_or_else(DeviceId::generate, |d| d.id),
                device: d.clone(),
                actions: Vec::new(),
                waiting: Vec::new(),
            })
            .collect()
    }

    #[test]
    fn many_devices_in_one_plan_under_a_cap_blocked_take_no_room() {
        let mut old = ready("old");
        old.os_version = Some("10.0.10240.1".into());
        let t = targets(&[
            Some(ready("a")),
            None,
            Some(old),
            Some(ready("b")),
            Some(ready("c")),
            None,
        ]);
        let cap = DailyCap {
            kinds: vec![ActionKind::AutopilotReset, ActionKind::Wipe],
            from: datetime!(2026-05-04 0:00 UTC),
            to: datetime!(2026-05-05 0:00 UTC),
            cap: 5,
        };
        let batch = BatchId::generate();
        // Three used already: room for two queued resets.
        let p = plan_requests(
            &t,
            ActionKind::AutopilotReset,
            "ada",
            NOW,
            &ActionSettings::default(),
            Some(batch),
            Some((&cap, 3)),
        );
        let states: Vec<_> = p
            .decisions
            .iter()
            .map(|(id, d)| {
                let state = match d {
                    Decision::Created(a) => {
                        assert_eq!((a.device, a.batch), (*id, Some(batch)));
                        Some(a.state)
                    }
                    Decision::NotFound => None,
                };
                (*id, state)
            })
            .collect();
        assert_eq!(
            states,
            [
                (t[0].id, Some(ActionState::Pending)),
                (t[1].id, None),
                (t[2].id, Some(ActionState::Blocked)),
                (t[3].id, Some(ActionState::Pending)),
            ]
        );
        assert_eq!(
            p.over_cap,
            [t[4].id, t[5].id],
            "the rest, whatever they are"
        );
        assert_eq!(p.plan.create.len(), 3);
        assert_eq!(p.plan.audit.len(), 3, "one action.create per action");
        assert!(p.plan.audit.iter().all(|e| e.batch == Some(batch)));
        assert_eq!(p.plan.cap.as_ref(), Some(&cap));
        assert_eq!(p.plan.at, NOW);

        // A full day leaves everything over; a kind the cap does not count is not capped.
        let full = plan_requests(
            &t,
            ActionKind::AutopilotReset,
            "ada",
            NOW,
            &ActionSettings::default(),
            None,
            Some((&cap, 9)),
        );
        assert!(full.decisions.is_empty() && full.plan.create.is_empty());
        assert_eq!(full.over_cap.len(), 6);
        let restart = plan_requests(
            &t,
            ActionKind::Restart,
            "ada",
            NOW,
            &ActionSettings::default(),
            None,
            Some((&cap, 9)),
        );
        assert!(restart.over_cap.is_empty() && restart.plan.cap.is_none());
        assert_eq!(restart.plan.create.len(), 4);
    }
}
