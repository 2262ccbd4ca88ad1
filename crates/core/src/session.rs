//! The management-session engine: one device message in, our reply out, everything it changes
//! committed in one store step (DESIGN.md "The flow of one check-in"; protocol.md §3.3).
//! No HTTP: the server frames bytes around [`handle`].

use std::collections::{BTreeMap, HashMap};

use base64::Engine as _;
use syncml::{
    codes::{ALERT_TYPE_AAD_USER_TOKEN, ALERT_TYPE_LOGIN_STATUS, ALERT_TYPE_UNENROLL_USER_REQUEST},
    AlertCode, Command, Item, ItemCommand, LocUri, Status, StatusCode, SyncMl,
};
use time::{Duration, OffsetDateTime};

use crate::action::{self, Answered};
use crate::action::{Action, ActionState};
use crate::audit::{AuditOutcome, NewAuditEvent};
use crate::command::{
    CommandState, DeviceCommand, Resend, Verb, AUTOPILOT_LAST_ERROR_URI, AUTOPILOT_STATUS_URI,
    WINRE_NOT_CONFIGURED_BIT, WINRE_STATUS_URI,
};
use crate::device::{Device, EnrollmentType, JoinType};
use crate::ids::{ActionId, CommandId, DeviceId};
use crate::inventory::InventoryValue;
use crate::store::{ActionUpdate, CommandAnswer, SendBatch, SessionStep, Store, StoreError};

/// Errors of the session engine and of action requests.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The store failed; nothing was committed and no reply may be sent.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A domain rule refused a step.
    #[error(transparent)]
    Domain(#[from] crate::error::Error),
    /// No such device.
    #[error("device {0} not found")]
    DeviceNotFound(DeviceId),
    /// No such action.
    #[error("action {0} not found")]
    ActionNotFound(ActionId),
    /// The request is not allowed in the current state.
    #[error("{0}")]
    NotAllowed(String),
    /// A URI we were about to send is not a valid LocURI (configuration error).
    #[error("invalid LocURI {0:?}")]
    BadUri(String),
}

/// Engine settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// Our management URL: the Source of our replies.
    pub server_url: String,
    /// Budget of one reply in bytes (Intune announces 524288; Windows ignores SyncHdr Meta, so the
    /// budget is ours to respect; protocol.md §3.2).
    pub max_message_bytes: usize,
    /// At most this many of our commands in one reply.
    pub max_commands_per_message: u32,
    /// Re-read inventory when the last read is older than this.
    pub inventory_interval: Duration,
    /// Our `DMClient/Provider/<id>` name.
    pub provider_id: String,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            server_url: "https://127.0.0.1:8443/ManagementServer/MDM.svc".to_owned(),
            max_message_bytes: 512 * 1024,
            max_commands_per_message: 1000,
            inventory_interval: Duration::hours(24),
            provider_id: "Redeploy".to_owned(),
        }
    }
}

/// The nodes read for inventory (protocol.md §4, §1.9).
pub fn inventory_uris(provider_id: &str) -> Vec<String> {
    let mut v: Vec<String> = [
        "./DevDetail/SwV",
        "./DevDetail/Ext/Microsoft/OSPlatform",
        "./DevDetail/Ext/Microsoft/SMBIOSSerialNumber",
        "./DevDetail/Ext/Microsoft/DNSComputerName",
        "./DevDetail/Ext/Microsoft/TotalRAM",
        "./DevDetail/Ext/Microsoft/TotalStorage",
        "./DevInfo/Man",
        "./DevInfo/Mod",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    v.push(format!(
        "./Vendor/MSFT/DMClient/Provider/{provider_id}/EnrollmentType"
    ));
    v.push(format!(
        "./Vendor/MSFT/DMClient/Provider/{provider_id}/AADDeviceID"
    ));
    v.push("./Vendor/MSFT/DMClient/HWDevID".to_owned());
    v.push("./Vendor/MSFT/DeviceStatus/DomainName".to_owned());
    v.push(AUTOPILOT_STATUS_URI.to_owned());
    v.push(AUTOPILOT_LAST_ERROR_URI.to_owned());
    v.push(WINRE_STATUS_URI.to_owned());
    v
}

/// The node whose stored time says when inventory was last read.
const INVENTORY_MARKER: &str = "./DevDetail/SwV";

/// Applies one reported node value to the device row; returns whether anything changed.
pub fn apply_inventory(device: &mut Device, uri: &str, value: &str) -> bool {
    let before = device.clone();
    let v = value.trim();
    let opt = || (!v.is_empty()).then(|| v.to_owned());
    let leaf = uri.rsplit('/').next().unwrap_or("");
    match uri {
        "./DevDetail/SwV" => device.os_version = opt(),
        "./DevDetail/Ext/Microsoft/OSPlatform" => device.os_platform = opt(),
        "./DevDetail/Ext/Microsoft/SMBIOSSerialNumber" => device.serial = opt(),
        "./DevDetail/Ext/Microsoft/DNSComputerName" => {
            device.dns_computer_name = opt();
            if !v.is_empty() {
                device.name = v.to_owned();
            }
        }
        "./DevDetail/Ext/Microsoft/TotalRAM" => device.total_ram_mb = v.parse().ok(),
        "./DevDetail/Ext/Microsoft/TotalStorage" => device.total_storage_mb = v.parse().ok(),
        "./DevInfo/Man" => device.manufacturer = opt(),
        "./DevInfo/Mod" => device.model = opt(),
        "./Vendor/MSFT/DMClient/HWDevID" if !v.is_empty() => device.hw_dev_id = Some(v.to_owned()),
        "./Vendor/MSFT/DeviceStatus/DomainName" => device.domain_name = Some(v.to_owned()),
        AUTOPILOT_STATUS_URI => device.autopilot_status = v.parse().ok(),
        AUTOPILOT_LAST_ERROR_URI => device.autopilot_last_error = action::parse_hresult(v),
        WINRE_STATUS_URI => {
            device.winre_enabled = v
                .parse::<u32>()
                .ok()
                .map(|bits| bits & WINRE_NOT_CONFIGURED_BIT == 0);
        }
        _ if uri.starts_with("./Vendor/MSFT/DMClient/Provider/") && leaf == "EnrollmentType" => {
            device.enrollment_type = EnrollmentType::from_wire(v).ok();
        }
        _ if uri.starts_with("./Vendor/MSFT/DMClient/Provider/") && leaf == "AADDeviceID" => {
            device.aad_device_id = opt();
        }
        _ => {}
    }
    derive_join_type(device);
    *device != before
}

/// Join type from EnrollmentType and DomainName ([`JoinType::derive`]).
fn derive_join_type(device: &mut Device) {
    if let Some(join) = JoinType::derive(device.enrollment_type, device.domain_name.as_deref()) {
        device.join_type = join;
    }
}

/// The UPN of an Entra token, read without verifying it (we only record who signed in):
/// `upn`, else `unique_name`, else `sub`.
pub fn upn_from_jwt(token: &str) -> Option<String> {
    let payload = token.trim().split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    ["upn", "unique_name", "sub"]
        .iter()
        .find_map(|k| claims.get(*k)?.as_str().map(str::to_owned))
}

/// Our MsgID for the reply to `msg`: the device's own MsgID. Each device message gets exactly one
/// reply, so both counters start at 1 and move together (MS-MDM: server messages start at 1 and
/// increase by 1), and nothing needs storing between the messages of a session.
fn our_msg_id(msg: &SyncMl) -> String {
    msg.hdr.msg_id.clone()
}

/// Rough size of a command in our reply, to stay under the message budget.
fn command_size(c: &DeviceCommand) -> usize {
    // Element overhead of <Verb><CmdID/><Item><Target><LocURI/></Target><Meta/><Data/></Item>;
    // data may grow when escaped.
    220 + c.uri.len() + c.data.as_ref().map_or(0, |d| d.len() + d.len() / 4)
}

fn loc(uri: &str) -> Result<LocUri, SessionError> {
    LocUri::parse(uri).map_err(|_| SessionError::BadUri(uri.to_owned()))
}

/// Our SyncML command for a queued command with CmdID `cmd_id`.
pub fn to_syncml(c: &DeviceCommand, cmd_id: &str) -> Result<Command, SessionError> {
    let uri = loc(&c.uri)?;
    let format = c.format.as_deref().unwrap_or("chr");
    let data = c.data.clone().unwrap_or_default();
    Ok(match c.verb {
        Verb::Get => Command::Get(ItemCommand::get(cmd_id, uri)),
        Verb::Exec => Command::Exec(ItemCommand::exec(cmd_id, uri, c.data.as_deref())),
        Verb::Replace => Command::Replace(ItemCommand::replace(cmd_id, uri, format, data)),
        Verb::Add => Command::Add(ItemCommand::add(cmd_id, uri, format, data)),
        Verb::Delete => Command::Delete(ItemCommand::delete(cmd_id, uri)),
    })
}

fn item_type(i: &Item) -> Option<&str> {
    i.meta_type()
}

/// What the device's alerts said.
#[derive(Default)]
struct Alerts {
    session_start: bool,
    abort: bool,
    login: Option<String>,
    token_user: Option<String>,
    unenroll: bool,
}

/// Handles one device message and returns our reply. Every change (check-in, answers, inventory,
/// action progress, commands taken for the reply) is committed in one
/// [`crate::store::CommandQueue::session_step`]; if it fails, the error comes back and the reply
/// must not be sent (nothing was marked sent).
pub async fn handle(
    store: &dyn Store,
    device: &Device,
    msg: &SyncMl,
    now: OffsetDateTime,
    cfg: &SessionConfig,
) -> Result<SyncMl, SessionError> {
    let session_id = msg.hdr.session_id.clone();
    let msg_id = our_msg_id(msg);
    let mut reply = SyncMl::reply_to(msg, loc(&cfg.server_url)?, msg_id.clone());
    let mut ids = syncml::CmdIds::starting_at(2);
    reply.body.commands.push(Command::Status(Status::for_header(
        msg.hdr.msg_id.clone(),
        StatusCode::Ok,
    )));

    let mut dev = device.clone();
    let mut step = SessionStep::new(device.id, session_id.clone(), now);
    let mut alerts = Alerts::default();
    let mut status_by_ref: BTreeMap<(String, String), u16> = BTreeMap::new();
    let mut results_by_ref: BTreeMap<(String, String), (Option<String>, Option<String>)> =
        BTreeMap::new();

    // 1. Statuses for the device's commands; read alerts, DevInfo and answers.
    for cmd in &msg.body.commands {
        match cmd {
            Command::Status(s) => {
                if !s.is_for_header() {
                    status_by_ref.insert((s.msg_ref.clone(), s.cmd_ref.clone()), s.code.as_u16());
                }
                continue;
            }
            Command::Results(r) => {
                let item = r.items.first();
                results_by_ref.insert(
                    (r.msg_ref.clone(), r.cmd_ref.clone()),
                    (
                        // An empty node (e.g. DomainName of a non-domain PC) may come without Data.
                        item.map(|i| i.data_str().unwrap_or("").to_owned()),
                        item.and_then(Item::format).map(str::to_owned),
                    ),
                );
                continue;
            }
            Command::Alert(a) => read_alert(a, &mut alerts),
            Command::Replace(c) | Command::Add(c) => {
                for i in &c.items {
                    let (Some(src), Some(data)) = (&i.source, i.data_str()) else {
                        continue;
                    };
                    if syncml::is_dev_id_uri(src.as_str()) {
                        continue;
                    }
                    apply_inventory(&mut dev, src.as_str(), data);
                    step.inventory.push(InventoryValue {
                        device: device.id,
                        uri: src.as_str().to_owned(),
                        value: data.to_owned(),
                        format: i.format().map(str::to_owned),
                        at: now,
                    });
                }
            }
            _ => {}
        }
        let code = match cmd {
            Command::Alert(_) | Command::Replace(_) | Command::Add(_) => StatusCode::Ok,
            // A device has no business sending these to a server (MS-MDM 3.1.5).
            _ => StatusCode::CommandNotAllowed,
        };
        reply
            .body
            .commands
            .push(Command::Status(Status::for_command(
                ids.next_id(),
                msg.hdr.msg_id.clone(),
                cmd,
                code,
            )));
    }

    // 2. Users (package #1 alerts; later messages keep what the session started with).
    let current_user = if alerts.session_start || alerts.login.is_some() {
        match (alerts.login.as_deref(), &alerts.token_user) {
            (Some("none"), _) => None,
            (_, Some(upn)) => Some(upn.clone()),
            (Some("others"), None) => None,
            _ => dev.current_user.clone(),
        }
    } else {
        dev.current_user.clone()
    };
    if let Some(upn) = &alerts.token_user {
        if dev.primary_user.is_none() && !dev.shared {
            dev.primary_user = Some(upn.clone());
        }
    }
    dev.current_user = current_user.clone();
    dev.last_seen = Some(now);
    step.seen = true;
    step.current_user = current_user;

    // 3. Match the device's Statuses/Results to what we sent, by (session, MsgRef, CmdRef).
    let mut refs: Vec<(String, String)> = status_by_ref.keys().cloned().collect();
    refs.extend(
        results_by_ref
            .keys()
            .filter(|k| !status_by_ref.contains_key(*k))
            .cloned(),
    );
    let mut by_action: HashMap<ActionId, Vec<Answered>> = HashMap::new();
    for key in refs {
        let Some(command) = store
            .sent_command_by_ref(device.id, &session_id, &key.0, &key.1)
            .await?
        else {
            continue;
        };
        // Already answered (a SessionID reused after a reset): not ours to overwrite.
        if command.state != CommandState::Sent {
            continue;
        }
        let status = status_by_ref.get(&key).copied().unwrap_or(200);
        let (result, format) = results_by_ref.get(&key).cloned().unwrap_or((None, None));
        // Asked, and answered (also "no such node", e.g. a build without BitLocker's CSP or a
        // client that does not have it): not asked again at every check-in for that.
        if command.verb == Verb::Get && command.uri == WINRE_STATUS_URI {
            dev.winre_checked_at = Some(now);
        }
        if let (Verb::Get, Some(value)) = (command.verb, &result) {
            if (200..300).contains(&status) {
                apply_inventory(&mut dev, &command.uri, value);
                step.inventory.push(InventoryValue {
                    device: device.id,
                    uri: command.uri.clone(),
                    value: value.clone(),
                    format,
                    at: now,
                });
            }
        }
        step.answers.push(CommandAnswer {
            command: command.id,
            status,
            result: result.clone(),
        });
        if let Some(a) = command.action {
            by_action.entry(a).or_default().push(Answered {
                command,
                status,
                result,
            });
        }
    }

    // 4. Unenrollment requested by the user (Alert 1226): no more commands, pending actions canceled.
    let mut audits = Vec::new();
    if alerts.unenroll {
        if dev.unenrolled_at.is_none() {
            dev.unenrolled_at = Some(now);
        }
        for mut a in store.actions_of_device(device.id).await? {
            if matches!(
                a.state,
                ActionState::Requested | ActionState::Blocked | ActionState::Pending
            ) {
                let before = a.state;
                a.transition(
                    ActionState::Canceled,
                    now,
                    Some("the device unenrolled (user request)"),
                )?;
                step.action_updates.push(ActionUpdate {
                    expected: before,
                    action: a,
                });
            }
        }
        audits.push(NewAuditEvent {
            at: now,
            actor: format!("device:{}", device.id),
            action: "device.unenroll".to_owned(),
            targets: vec![device.id],
            batch: None,
            outcome: AuditOutcome::Success,
            details: "the user removed the work account (Alert 1226 com.microsoft:mdm.unenrollment.userrequest)".to_owned(),
        });
    }

    // 5. Actions: advance those the device answered for; at a session start, follow up the others.
    let mut touched: HashMap<ActionId, (ActionState, Action)> = HashMap::new();
    let mut ids_to_check: Vec<ActionId> = by_action.keys().copied().collect();
    let active: Vec<Action> = if alerts.session_start && !alerts.unenroll {
        store
            .actions_of_device(device.id)
            .await?
            .into_iter()
            .filter(|a| !a.state.is_terminal() && a.state != ActionState::Blocked)
            .collect()
    } else {
        Vec::new()
    };
    for a in &active {
        if !ids_to_check.contains(&a.id) {
            ids_to_check.push(a.id);
        }
    }
    let mut queued = store
        .queued_commands(device.id, cfg.max_commands_per_message.saturating_add(1))
        .await?;
    if alerts.session_start {
        // Unanswered idempotent commands of earlier sessions go back in the queue; Execs are
        // followed up through their action (never re-executed blindly, DESIGN.md).
        for mut c in store
            .unanswered_commands(device.id, Some(&session_id))
            .await?
        {
            if c.may_resend() == Resend::Yes {
                step.requeue.push(c.id);
                c.state = CommandState::Queued;
                queued.insert(0, c);
            }
        }
    }
    for action_id in ids_to_check {
        if step.action_updates.iter().any(|u| u.action.id == action_id) {
            continue;
        }
        let Some(mut action) = store.action(action_id).await? else {
            continue;
        };
        if action.state.is_terminal() && !by_action.contains_key(&action_id) {
            continue;
        }
        let before = action.state;
        let original = action.clone();
        let cmds = store.commands_of_action(action_id).await?;
        let answered = by_action.remove(&action_id).unwrap_or_default();
        let mut adv = action::advance(&mut action, &answered, &cmds, &cfg.provider_id, now);
        if alerts.session_start {
            action::follow_up(&mut action, &cmds, &queued, &mut adv, &cfg.provider_id, now);
        }
        action::apply_to_device(&mut dev, &adv, now);
        step.enqueue.append(&mut adv.enqueue);
        if action != original {
            touched.insert(action_id, (before, action));
        }
    }
    for (_, (expected, action)) in touched {
        step.action_updates.push(ActionUpdate { expected, action });
    }

    // 6. At a session start: read WinRE's state while it is in doubt — never asked, reported
    //    off, or the last reset failed for WinRE (so that such a PC becomes eligible at the
    //    check-in after `reagentc /enable`) — and inventory (which includes it) when due. A PC
    //    known good, or without the node, is not asked every time: one more Get would double the
    //    messages of every idle check-in.
    let winre_in_doubt = dev.winre_checked_at.is_none()
        || dev.winre_enabled == Some(false)
        || dev.autopilot_last_error == Some(crate::preflight::HR_WINRE_DISABLED);
    if alerts.session_start && !alerts.unenroll && winre_in_doubt {
        get_once(&queued, &mut step, WINRE_STATUS_URI, now);
    }
    if alerts.session_start {
        let last = store.inventory_value(device.id, INVENTORY_MARKER).await?;
        let due = last.is_none_or(|v| now - v.at >= cfg.inventory_interval);
        if due && !alerts.unenroll {
            for uri in inventory_uris(&cfg.provider_id) {
                get_once(&queued, &mut step, &uri, now);
            }
        }
    }
    if dev != *device {
        step.device_update = Some(dev.clone());
    }

    // 7. Maintenance windows: a pending action of a scheduled batch does not start outside its
    //    window; its commands stay queued and its timeline says why, once.
    hold_outside_windows(store, device.id, now, &mut step).await?;
    let held_ids = step.held_actions.clone();
    let held = |c: &DeviceCommand| c.action.is_some_and(|a| held_ids.contains(&a));
    queued.retain(|c| !held(c));

    // 8. What goes out: nothing when the device's package is not complete (ask for the rest with
    //    1222), aborted or unenrolled; else queued commands up to the budget.
    let mut more_follows = false;
    if !msg.body.is_final {
        reply.body.commands.push(Command::Alert(syncml::Alert::new(
            ids.next_id(),
            AlertCode::NextMessage,
        )));
    } else if !alerts.abort && !alerts.unenroll && dev.unenrolled_at.is_none() {
        let base = syncml::write(&reply).len() + 64;
        let mut candidates: Vec<&DeviceCommand> = queued.iter().collect();
        candidates.extend(step.enqueue.iter().filter(|c| !held(c)));
        let mut size = base;
        let mut limit = 0u32;
        for c in &candidates {
            let s = command_size(c);
            if (limit > 0 && size + s > cfg.max_message_bytes)
                || limit >= cfg.max_commands_per_message
            {
                break;
            }
            size += s;
            limit += 1;
        }
        more_follows = (limit as usize) < candidates.len();
        if limit > 0 {
            let first: u32 = ids.next_id().parse().unwrap_or(2);
            step.send = Some(SendBatch {
                msg_id: msg_id.clone(),
                first_cmd_id: first,
                limit,
            });
        }
    }

    // 9. The outcomes this message decided (the device's own word: done or failed) go to the
    //    audit log beside the request, so that an admin finds every step of a reset there.
    for u in &step.action_updates {
        let a = &u.action;
        if !a.state.is_terminal() || u.expected.is_terminal() {
            continue;
        }
        audits.push(NewAuditEvent {
            at: now,
            actor: format!("device:{}", device.name),
            action: format!("action.{}", a.state.as_str()),
            targets: vec![device.id],
            batch: a.batch,
            outcome: if a.state == ActionState::Done {
                AuditOutcome::Success
            } else {
                AuditOutcome::Failed
            },
            details: match &a.reason {
                Some(reason) => format!("{} {}: {reason}", a.kind.code(), a.id),
                None => format!("{} {}", a.kind.code(), a.id),
            },
        });
    }

    let outcome = store.session_step(step).await?;
    for c in &outcome.sent {
        let cmd_id = c
            .sent_in
            .as_ref()
            .map(|s| s.cmd_id.clone())
            .unwrap_or_default();
        reply.body.commands.push(to_syncml(c, &cmd_id)?);
    }
    // A message without Final: the device answers and asks for the rest with Alert 1222.
    reply.body.is_final = !more_follows || outcome.sent.is_empty();

    for e in audits {
        // After the commit: the audit log is append-only and a failure here must not resend.
        if let Err(err) = store.append_audit(e).await {
            tracing::warn!(error = %err, "audit entry for a device message was not written");
        }
    }
    Ok(reply)
}

/// Queues a Get of `uri` for the device (no action) unless one is already queued or in this step.
fn get_once(queued: &[DeviceCommand], step: &mut SessionStep, uri: &str, now: OffsetDateTime) {
    let already = queued
        .iter()
        .chain(step.enqueue.iter())
        .any(|c| c.verb == Verb::Get && c.uri == uri && c.action.is_none());
    if !already {
        step.enqueue.push(DeviceCommand::new(
            CommandId::generate(),
            step.device,
            None,
            Verb::Get,
            uri,
            now,
        ));
    }
}

/// Puts every pending action of the device whose batch has a maintenance window that `now` is
/// outside of into `step.held_actions`, and notes it on the action's timeline unless the last
/// entry already is that note (so a PC checking in every few minutes adds one line, not one per
/// check-in). Covers actions this step moves back to pending too (a reset re-queued after the
/// device never got it).
async fn hold_outside_windows(
    store: &dyn Store,
    device: DeviceId,
    now: OffsetDateTime,
    step: &mut SessionStep,
) -> Result<(), SessionError> {
    let mut windows = store.pending_action_windows(device).await?;
    for u in &step.action_updates {
        let becomes_pending =
            u.action.state == ActionState::Pending && u.expected != ActionState::Pending;
        if let (true, Some(batch)) = (becomes_pending, u.action.batch) {
            if let Some(w) = store.batch_window(batch).await? {
                windows.push((u.action.id, w));
            }
        }
    }
    for (action_id, window) in windows {
        if window.contains(now) || step.held_actions.contains(&action_id) {
            continue;
        }
        step.held_actions.push(action_id);
        let note = window.held_note();
        let already_noted = |a: &Action| {
            a.timeline
                .last()
                .and_then(|e| e.note.as_deref())
                .is_some_and(|n| n.starts_with(crate::schedule::HELD_NOTE_PREFIX))
        };
        if let Some(u) = step
            .action_updates
            .iter_mut()
            .find(|u| u.action.id == action_id)
        {
            if u.action.state == ActionState::Pending && !already_noted(&u.action) {
                u.action.add_note(now, note);
            }
            continue;
        }
        let Some(mut action) = store.action(action_id).await? else {
            continue;
        };
        if action.state == ActionState::Pending && !already_noted(&action) {
            action.add_note(now, note);
            step.action_updates.push(ActionUpdate {
                expected: ActionState::Pending,
                action,
            });
        }
    }
    Ok(())
}

fn read_alert(a: &syncml::Alert, out: &mut Alerts) {
    match a.code {
        AlertCode::ClientInitiatedMgmt | AlertCode::ServerInitiatedMgmt => out.session_start = true,
        AlertCode::SessionAbort => out.abort = true,
        AlertCode::ClientEvent => {
            for i in &a.items {
                match item_type(i) {
                    Some(ALERT_TYPE_LOGIN_STATUS) => {
                        out.login = i.data_str().map(|d| d.trim().to_ascii_lowercase());
                    }
                    Some(ALERT_TYPE_AAD_USER_TOKEN) => {
                        out.token_user = i.data_str().and_then(upn_from_jwt);
                    }
                    _ => {}
                }
            }
        }
        AlertCode::GenericAlert
            if a.items
                .iter()
                .any(|i| item_type(i) == Some(ALERT_TYPE_UNENROLL_USER_REQUEST)) =>
        {
            out.unenroll = true;
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upn_comes_from_the_token_payload() {
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"upn":"ada@contoso.com","sub":"x"}"#);
        assert_eq!(
            upn_from_jwt(&format!("eyJhbGciOiJub25lIn0.{payload}.sig")).as_deref(),
            Some("ada@contoso.com")
        );
        let payload =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"sub":"subject-1"}"#);
        assert_eq!(
            upn_from_jwt(&format!("h.{payload}.s")).as_deref(),
            Some("subject-1")
        );
        assert_eq!(upn_from_jwt("garbage"), None);
    }

    #[test]
    fn join_type_follows_enrollment_type_and_domain() {
        let mut d = Device::new(
            DeviceId::generate(),
            "pc",
            time::macros::datetime!(2026-01-01 0:00 UTC),
        );
        apply_inventory(
            &mut d,
            "./Vendor/MSFT/DMClient/Provider/Redeploy/EnrollmentType",
            "Device",
        );
        apply_inventory(&mut d, "./Vendor/MSFT/DeviceStatus/DomainName", "");
        assert_eq!(d.join_type, JoinType::EntraJoined);
        apply_inventory(
            &mut d,
            "./Vendor/MSFT/DeviceStatus/DomainName",
            "corp.contoso.com",
        );
        assert_eq!(d.join_type, JoinType::HybridJoined);
        apply_inventory(&mut d, "./DevDetail/Ext/Microsoft/TotalRAM", "16384");
        assert_eq!(d.total_ram_mb, Some(16384));
    }
}
