//! Step 1 of a device message: read from the store everything [`super::decide`] needs, before
//! deciding anything. What to read follows from the message alone (its alerts and the commands
//! its Statuses and Results refer to), so the decision never goes back to the store.

use std::collections::{HashMap, HashSet};

use syncml::SyncMl;
use time::OffsetDateTime;

use super::inventory::INVENTORY_MARKER;
use super::message::{Alerts, Answers};
use super::reset_watch::is_watch_get;
use super::{SessionConfig, SessionError};
use crate::action::{Action, ActionState};
use crate::command::{first_sync_done_uri, CommandState, DeviceCommand};
use crate::device::Device;
use crate::ids::{ActionId, BatchId};
use crate::inventory::InventoryValue;
use crate::schedule::BatchWindow;
use crate::store::{CheckInView, Store};

/// What the store knows that one device message's decision needs, read by [`load`] (or built by
/// hand in tests). Each field says when it is filled; where the message does not need it, it is
/// empty.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The device as identified for this message.
    pub device: Device,
    /// Our commands the message's Statuses and Results refer to, by (MsgRef, CmdRef), sent in
    /// this message's session (in any state); references to nothing of ours are absent.
    pub referenced: HashMap<(String, String), DeviceCommand>,
    /// The device's actions. When the message starts a session, asks to unenroll or answers the
    /// reset watch's Get: every one, newest first (as
    /// [`crate::store::ActionStore::actions_of_device`]). Else those of the referenced commands
    /// still `sent`, and the pending ones in [`Self::pending_windows`].
    pub actions: Vec<Action>,
    /// Every command of each action the message may advance, in queue order: the actions of the
    /// referenced commands still `sent`, and at a session start (without unenrollment) every
    /// action neither settled nor blocked.
    pub commands_of_action: HashMap<ActionId, Vec<DeviceCommand>>,
    /// The device's queue in order, up to `max_commands_per_message + 1` commands (one more than
    /// a reply carries, to know whether more follows).
    pub queued: Vec<DeviceCommand>,
    /// At a session start: commands sent in earlier sessions and never answered, oldest first.
    pub unanswered: Vec<DeviceCommand>,
    /// At a session start: when inventory was last read (the stored time of `./DevDetail/SwV`);
    /// `None` if never.
    pub inventory_read_at: Option<OffsetDateTime>,
    /// The stored value of our `FirstSyncStatus/IsSyncDone` (the last read of it, by the reset
    /// watch or by a reset action): at a session start, and when the message answers the reset
    /// watch's Get of it (then [`Self::actions`] holds every action of the device too).
    /// `None` if never read, or not needed.
    pub sync_done_read: Option<InventoryValue>,
    /// The device's pending actions whose batch has a maintenance window, oldest first.
    pub pending_windows: Vec<(ActionId, BatchWindow)>,
    /// The maintenance windows of the batches of actions in [`Self::commands_of_action`] that
    /// may go back to pending in this message (a batch without a window is absent).
    pub batch_windows: HashMap<BatchId, BatchWindow>,
    /// Push configured, at a session start: the device's stored channel (`None` if it never
    /// reported one).
    pub push_channel: Option<crate::push::PushChannel>,
    /// Push configured, at a session start: the device's pending actions a push was delivered
    /// (or sent, its answer not yet recorded) for, and those whose wake is already recorded.
    pub pushed: Vec<ActionId>,
    pub woken: Vec<ActionId>,
}

impl Loaded {
    /// Nothing loaded yet for `device`: what a message that needs nothing from the store sees.
    pub fn new(device: Device) -> Self {
        Self {
            device,
            referenced: HashMap::new(),
            actions: Vec::new(),
            commands_of_action: HashMap::new(),
            queued: Vec::new(),
            unanswered: Vec::new(),
            inventory_read_at: None,
            sync_done_read: None,
            pending_windows: Vec::new(),
            batch_windows: HashMap::new(),
            push_channel: None,
            pushed: Vec::new(),
            woken: Vec::new(),
        }
    }
}

/// The actions a message may advance, in order and once each: those of `answered` (the actions
/// of the answered commands still `sent`: an answered one, e.g. after a SessionID was reused by
/// a reset, counts for nothing), then at a session start without unenrollment every action of
/// the device neither settled nor blocked, to follow up.
pub(super) fn advancing(
    answered: Vec<ActionId>,
    alerts: &Alerts,
    actions: &[Action],
) -> Vec<ActionId> {
    let mut out: Vec<ActionId> = Vec::new();
    let follow_up = alerts.session_start && !alerts.unenroll;
    let others = actions
        .iter()
        .filter(|a| follow_up && !a.state.is_terminal() && a.state != ActionState::Blocked)
        .map(|a| a.id);
    for id in answered.into_iter().chain(others) {
        if !out.contains(&id) {
            out.push(id);
        }
    }
    out
}

/// The inventory nodes a check-in's first read brings along ([`CheckInView::inventory`]): those
/// a session start needs (inventory's marker, the reset watch's last read of IsSyncDone).
pub fn check_in_uris(cfg: &SessionConfig) -> [String; 2] {
    [
        INVENTORY_MARKER.to_owned(),
        first_sync_done_uri(&cfg.provider_id),
    ]
}

/// Reads what `msg` from the device of `view` needs (see [`Loaded`] for what is read when). Only
/// reads; what `view` says cannot be found (no open action, no open command, the inventory
/// values it holds) is not read again.
pub async fn load(
    store: &dyn Store,
    view: &CheckInView,
    msg: &SyncMl,
    cfg: &SessionConfig,
) -> Result<Loaded, SessionError> {
    let device = &view.device;
    let session_id = msg.hdr.session_id.as_str();
    let alerts = Alerts::of(msg);
    let mut loaded = Loaded::new(device.clone());

    // The commands answered, matched by (session, MsgRef, CmdRef): a command of an earlier
    // message of this session is found as well as one of the message just before.
    for key in Answers::of(msg).refs() {
        if let Some(command) = store
            .sent_command_by_ref(device.id, session_id, &key.0, &key.1)
            .await?
        {
            loaded.referenced.insert(key, command);
        }
    }
    let answered: Vec<ActionId> = loaded
        .referenced
        .values()
        .filter(|c| c.state == CommandState::Sent)
        .filter_map(|c| c.action)
        .collect();
    // The reset watch judges its answer against the last stored read and every action.
    let watch_answered = loaded
        .referenced
        .values()
        .any(|c| c.state == CommandState::Sent && is_watch_get(c, &cfg.provider_id));
    // Without an open action, a session start or an unenrollment has nothing to advance or
    // cancel; the watch's answer is judged against every action, settled ones too.
    if watch_answered || ((alerts.session_start || alerts.unenroll) && view.open_actions) {
        loaded.actions = store.actions_of_device(device.id).await?;
    }
    // Both stored reads a session start needs (inventory's marker, the watch's last read), from
    // the view or in one query; an answer to the watch needs the second alone.
    let sync_done_uri = first_sync_done_uri(&cfg.provider_id);
    if alerts.session_start || watch_answered {
        let uris: &[&str] = if alerts.session_start {
            &[INVENTORY_MARKER, &sync_done_uri]
        } else {
            &[&sync_done_uri]
        };
        // The view holds both of these nodes (it was read with `check_in_uris`).
        let values = match &view.inventory {
            Some(known) => known.clone(),
            None => store.inventory_values(device.id, uris).await?,
        };
        for value in values
            .into_iter()
            .filter(|v| uris.contains(&v.uri.as_str()))
        {
            if value.uri == INVENTORY_MARKER {
                loaded.inventory_read_at = Some(value.at);
            } else {
                loaded.sync_done_read = Some(value);
            }
        }
    }
    let advancing = advancing(answered, &alerts, &loaded.actions);
    if view.open_actions {
        loaded.pending_windows = store.pending_action_windows(device.id).await?;
    }
    let wanted: Vec<ActionId> = advancing
        .iter()
        .copied()
        .chain(loaded.pending_windows.iter().map(|(id, _)| *id))
        .collect();
    for id in wanted {
        if loaded.actions.iter().any(|a| a.id == id) {
            continue;
        }
        if let Some(action) = store.action(id).await? {
            loaded.actions.push(action);
        }
    }

    let mut batches = HashSet::new();
    for id in &advancing {
        loaded
            .commands_of_action
            .insert(*id, store.commands_of_action(*id).await?);
        let Some(action) = loaded.actions.iter().find(|a| a.id == *id) else {
            continue;
        };
        // A reset whose Exec the PC never ran goes back to pending (and so under its window).
        if let (true, Some(batch)) = (action.state.can_go_to(ActionState::Pending), action.batch) {
            if batches.insert(batch) {
                if let Some(window) = store.batch_window(batch).await? {
                    loaded.batch_windows.insert(batch, window);
                }
            }
        }
    }

    if view.open_commands {
        loaded.queued = store
            .queued_commands(device.id, cfg.max_commands_per_message.saturating_add(1))
            .await?;
    }
    if alerts.session_start && view.open_commands {
        loaded.unanswered = store
            .unanswered_commands(device.id, Some(session_id))
            .await?;
    }
    if alerts.session_start && cfg.push.is_some() {
        loaded.push_channel = store.push_channel(device.id).await?;
        let pending: Vec<ActionId> = loaded
            .actions
            .iter()
            .filter(|a| a.state == ActionState::Pending)
            .map(|a| a.id)
            .collect();
        if !pending.is_empty() {
            loaded.pushed = store
                .push_attempts(&pending)
                .await?
                .into_iter()
                // Delivered, or sent and WNS's answer not recorded yet: the PC may start its
                // session before the server has read WNS's 200.
                .filter(|a| {
                    a.outcome
                        .is_none_or(|o| o == crate::push::PushOutcome::Delivered)
                })
                .map(|a| a.action)
                .collect();
            loaded.woken = store
                .wakes(&pending)
                .await?
                .into_iter()
                .map(|(a, _)| a)
                .collect();
        }
    }
    Ok(loaded)
}
