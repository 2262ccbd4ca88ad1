//! Step 2 of a device message: the decision, a pure function of what [`super::load`] read, the
//! message, the time and the settings. No store, no clock, no I/O: it says what to commit, the
//! reply without our commands, and what to audit; [`super::commit`] does it.

use syncml::{AlertCode, Command, LocUri, Status, StatusCode, SyncMl};
use time::OffsetDateTime;

use super::inventory::{apply_inventory, inventory_uris};
use super::load::{advancing, Loaded};
use super::message::{Alerts, Answers};
use super::reset_watch::{self, Verdict};
use super::{SessionConfig, SessionError};
use crate::action::{
    self, parse_bool, Action, ActionKind, ActionState, Answered, LOCAL_RESET_OBSERVER,
};
use crate::audit::{AuditOutcome, NewAuditEvent};
use crate::command::{
    first_sync_done_uri, CommandState, DeviceCommand, Resend, Verb, WINRE_STATUS_URI,
};
use crate::device::Device;
use crate::ids::{ActionId, CommandId};
use crate::inventory::InventoryValue;
use crate::store::{ActionUpdate, CommandAnswer, SendBatch, SessionStep};

/// What one device message decided.
#[derive(Clone, Debug)]
pub struct Decision {
    /// Everything to commit in one transaction, including which queued commands go out.
    pub step: SessionStep,
    /// The reply without our commands: the Statuses for the device's header and commands, and
    /// Alert 1222 when the device's package is not complete. [`super::commit`] appends the
    /// commands the step took and sets Final.
    pub reply: SyncMl,
    /// More commands are waiting than this reply may carry: it goes without Final (if it carries
    /// any) and the device asks for the rest with Alert 1222.
    pub more_follows: bool,
    /// Audit events to append once the step committed.
    pub audits: Vec<NewAuditEvent>,
    /// The device as updated, when this message changed what it reports as its identity
    /// (hardware id, serial, Entra device id): [`super::commit`] looks for clashes.
    pub identity_changed: Option<Device>,
    /// Push configured: the channel this message reported (`Push/ChannelURI` and `Push/Status`
    /// answered), to store once the step committed.
    pub push_channel: Option<crate::push::PushChannel>,
    /// Push configured, at a session start: what woke each pending action's PC, to record once
    /// the step committed (an action keeps its first record).
    pub wakes: Vec<(ActionId, crate::push::WokenBy, OffsetDateTime)>,
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

pub(super) fn loc(uri: &str) -> Result<LocUri, SessionError> {
    LocUri::parse(uri).map_err(|_| SessionError::BadUri(uri.to_owned()))
}

/// Decides what `msg` changes, given what the store knew ([`Loaded`]) at `now`. Refuses only what
/// cannot be: an invalid `server_url`, or an action transition the lifecycle forbids.
pub fn decide(
    loaded: &Loaded,
    msg: &SyncMl,
    now: OffsetDateTime,
    cfg: &SessionConfig,
) -> Result<Decision, SessionError> {
    let device = &loaded.device;
    let session_id = msg.hdr.session_id.clone();
    // 0. The message must follow the last one taken from this device (replay, issue #13).
    let position = super::sequence::judge(&device.last_message, &session_id, &msg.hdr.msg_id)?;
    let msg_id = our_msg_id(msg);
    let mut reply = SyncMl::reply_to(msg, loc(&cfg.server_url)?, msg_id.clone());
    let mut ids = syncml::CmdIds::starting_at(2);
    reply.body.commands.push(Command::Status(Status::for_header(
        msg.hdr.msg_id.clone(),
        StatusCode::Ok,
    )));

    let mut dev = device.clone();
    let mut step = SessionStep::new(device.id, session_id, now);
    step.sequence = Some((device.last_message.clone(), position));
    let alerts = Alerts::of(msg);
    let answers = Answers::of(msg);

    // 1. Statuses for the device's commands; read DevInfo and other reported values.
    for cmd in &msg.body.commands {
        match cmd {
            Command::Status(_) | Command::Results(_) => continue,
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
    // A sign-in: a user the previous check-in did not report signed in.
    if let Some(user) = &current_user {
        if dev.current_user.as_ref() != Some(user) || dev.last_sign_in_at.is_none() {
            dev.last_sign_in_user = Some(user.clone());
            dev.last_sign_in_at = Some(now);
        }
    }
    dev.current_user = current_user.clone();
    dev.last_seen = Some(now);
    step.seen = true;
    step.current_user = current_user;

    // 3. Match the device's Statuses/Results to what we sent, by (session, MsgRef, CmdRef).
    let mut by_action: Vec<(ActionId, Vec<Answered>)> = Vec::new();
    // The reset watch's read of IsSyncDone, when this message answers it.
    let mut watch_answer: Option<bool> = None;
    // Push: the answers to the reads of Push/ChannelURI (Some once answered, its value if any)
    // and Push/Status.
    let mut push_answer: (Option<Option<String>>, Option<i64>) = (None, None);
    for key in answers.refs() {
        let Some(command) = loaded.referenced.get(&key) else {
            continue;
        };
        // Already answered (a SessionID reused after a reset): not ours to overwrite.
        if command.state != CommandState::Sent {
            continue;
        }
        let status = answers.status.get(&key).copied().unwrap_or(200);
        let (result, format) = answers.results.get(&key).cloned().unwrap_or((None, None));
        // Asked, and answered (also "no such node", e.g. a build without BitLocker's CSP or a
        // client that does not have it): not asked again at every check-in for that.
        if command.verb == Verb::Get && command.uri == WINRE_STATUS_URI {
            dev.winre_checked_at = Some(now);
        }
        if cfg.push.is_some() && command.verb == Verb::Get {
            let ok = (200..300).contains(&status);
            if command.uri == crate::push::channel_uri_uri(&cfg.provider_id) {
                push_answer.0 = Some(result.clone().filter(|_| ok));
            } else if command.uri == crate::push::status_uri(&cfg.provider_id) {
                push_answer.1 = result
                    .as_deref()
                    .filter(|_| ok)
                    .and_then(|v| v.trim().parse().ok());
            }
        }
        if reset_watch::is_watch_get(command, &cfg.provider_id) && (200..300).contains(&status) {
            watch_answer = result.as_deref().and_then(parse_bool).or(watch_answer);
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
            let answered = Answered {
                command: command.clone(),
                status,
                result,
            };
            match by_action.iter_mut().find(|(id, _)| *id == a) {
                Some((_, list)) => list.push(answered),
                None => by_action.push((a, vec![answered])),
            }
        }
    }

    // 4. Unenrollment requested by the user (Alert 1226): no more commands, pending actions canceled.
    let mut audits = Vec::new();
    if alerts.unenroll {
        if dev.unenrolled_at.is_none() {
            dev.unenrolled_at = Some(now);
        }
        for a in &loaded.actions {
            if matches!(
                a.state,
                ActionState::Requested | ActionState::Blocked | ActionState::Pending
            ) {
                let mut a = a.clone();
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
        audits.push(NewAuditEvent::new(now, format!("device:{}", device.id), "device.unenroll").targets([device.id]).details("the user removed the work account (Alert 1226 com.microsoft:mdm.unenrollment.userrequest)"));
    }

    // 5. Actions: advance those the device answered for; at a session start, follow up the others.
    let ids_to_check = advancing(
        by_action.iter().map(|(id, _)| *id).collect(),
        &alerts,
        &loaded.actions,
    );
    let mut queued = loaded.queued.clone();
    if alerts.session_start {
        // Unanswered idempotent commands of earlier sessions go back in the queue; Execs are
        // followed up through their action (never re-executed blindly, docs/design.md §4).
        for c in &loaded.unanswered {
            if c.may_resend() == Resend::Yes {
                let mut c = c.clone();
                step.requeue.push(c.id);
                c.state = CommandState::Queued;
                queued.insert(0, c);
            }
        }
    }
    let mut touched: Vec<ActionUpdate> = Vec::new();
    for action_id in ids_to_check {
        if step.action_updates.iter().any(|u| u.action.id == action_id) {
            continue;
        }
        let Some(original) = loaded.actions.iter().find(|a| a.id == action_id) else {
            continue;
        };
        let answered = by_action
            .iter_mut()
            .find(|(id, _)| *id == action_id)
            .map(|(_, list)| std::mem::take(list));
        if original.state.is_terminal() && answered.is_none() {
            continue;
        }
        let mut action = original.clone();
        let cmds = loaded
            .commands_of_action
            .get(&action_id)
            .map_or(&[][..], Vec::as_slice);
        let answered = answered.unwrap_or_default();
        let mut adv = action::advance(&mut action, &answered, cmds, &cfg.provider_id, now);
        if alerts.session_start {
            // `cmds` is every command of the action only when it was read.
            let read = loaded.commands_of_action.contains_key(&action_id);
            action::follow_up(
                &mut action,
                cmds,
                read,
                &queued,
                &mut adv,
                &cfg.provider_id,
                now,
            );
        }
        action::apply_to_device(&mut dev, &adv, now);
        step.enqueue.append(&mut adv.enqueue);
        if action != *original {
            touched.push(ActionUpdate {
                expected: original.state,
                action,
            });
        }
    }
    step.action_updates.append(&mut touched);

    // 5b. The reset watch's answer: a `false` re-arms IsSyncDone; after a `true` read since our
    //     last reset or wipe, it is a reset we did not send (reset_watch.rs). The primary user is
    //     kept: a local reset keeps it (MEM windows-autopilot-reset.md; docs/protocol.md §1.2).
    let enrolled = !alerts.unenroll && dev.unenrolled_at.is_none();
    let watch_uri = first_sync_done_uri(&cfg.provider_id);
    if let Some(answer) = watch_answer.filter(|_| enrolled) {
        let previous = loaded.sync_done_read.as_ref();
        let verdict = reset_watch::judge(previous, answer, &loaded.actions);
        if verdict != Verdict::Nothing {
            step.enqueue
                .push(reset_watch::rearm(device.id, &cfg.provider_id, now));
            get_once(&queued, &mut step, &watch_uri, now);
        }
        if verdict == Verdict::Observed {
            let observed = Action::observed(
                ActionId::generate(),
                device.id,
                ActionKind::AutopilotReset,
                LOCAL_RESET_OBSERVER,
                now,
                reset_watch::OBSERVED_NOTE,
            );
            audits.push(
                NewAuditEvent::new(
                    now,
                    format!("device:{}", device.id),
                    "device.local_reset_observed",
                )
                .targets([device.id])
                .details(format!(
                    "{} {}: IsSyncDone read false at check-in after it had read true, with no \
                     reset or wipe sent by this server since: a local Autopilot Reset \
                     (CTRL+WIN+R) or a reset at the PC; the primary user is kept",
                    observed.kind.code(),
                    observed.id
                )),
            );
            step.new_actions.push(observed);
        }
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
    // The reset watch: IsSyncDone once per `reset_watch_interval`, while no reset or wipe of
    // ours is active (one more round trip per interval at most).
    let watch_due = reset_watch::due(
        loaded.sync_done_read.as_ref().map(|v| v.at),
        &loaded.actions,
        now,
        cfg.reset_watch_interval,
    );
    if alerts.session_start && enrolled && watch_due {
        get_once(&queued, &mut step, &watch_uri, now);
    }
    // Push (WNS): provision the PFN and read the channel while it is not active, and re-read it
    // daily (core::push::session_commands); record what woke each pending action's PC.
    let mut wakes = Vec::new();
    if let (Some(push), true) = (&cfg.push, alerts.session_start && enrolled) {
        for c in crate::push::session_commands(
            device.id,
            loaded.push_channel.as_ref(),
            &cfg.provider_id,
            push,
            now,
        ) {
            let already = queued
                .iter()
                .chain(step.enqueue.iter())
                .any(|q| q.verb == c.verb && q.uri == c.uri && q.action.is_none());
            if !already {
                step.enqueue.push(c);
            }
        }
        for a in &loaded.actions {
            if a.state != ActionState::Pending || loaded.woken.contains(&a.id) {
                continue;
            }
            let by = if loaded.pushed.contains(&a.id) {
                crate::push::WokenBy::Push
            } else {
                crate::push::WokenBy::Poll
            };
            wakes.push((a.id, by, now));
        }
    }
    let push_channel = match (&cfg.push, push_answer) {
        (Some(push), (Some(uri), status)) => Some(crate::push::PushChannel::reported(
            device.id,
            uri,
            status,
            &push.channel_hosts,
            now,
        )),
        _ => None,
    };
    if alerts.session_start {
        let due = loaded
            .inventory_read_at
            .is_none_or(|at| now - at >= cfg.inventory_interval);
        if due && !alerts.unenroll {
            for uri in inventory_uris(&cfg.provider_id) {
                get_once(&queued, &mut step, &uri, now);
            }
        }
    }
    let identity = |d: &Device| {
        (
            d.hw_dev_id.clone(),
            d.serial.clone(),
            d.aad_device_id.clone(),
        )
    };
    let identity_changed = (identity(&dev) != identity(device)).then(|| dev.clone());
    if dev != *device {
        step.device_update = Some(dev.clone());
        step.device_was = Some(device.clone());
    }

    // 7. Maintenance windows: a pending action of a scheduled batch does not start outside its
    //    window; its commands stay queued and its timeline says why, once.
    hold_outside_windows(loaded, now, &mut step);
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
        let base = syncml::written_len(&reply) + 64;
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
        audits.push(
            NewAuditEvent::new(
                now,
                format!("device:{}", device.name),
                format!("action.{}", a.state.as_str()),
            )
            .targets([device.id])
            .batch(a.batch)
            .outcome(if a.state == ActionState::Done {
                AuditOutcome::Success
            } else {
                AuditOutcome::Failed
            })
            .details(match &a.reason {
                Some(reason) => format!("{} {}: {reason}", a.kind.code(), a.id),
                None => format!("{} {}", a.kind.code(), a.id),
            }),
        );
    }

    Ok(Decision {
        step,
        reply,
        more_follows,
        audits,
        identity_changed,
        push_channel,
        wakes,
    })
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
fn hold_outside_windows(loaded: &Loaded, now: OffsetDateTime, step: &mut SessionStep) {
    let mut windows = loaded.pending_windows.clone();
    for u in &step.action_updates {
        let becomes_pending =
            u.action.state == ActionState::Pending && u.expected != ActionState::Pending;
        if let (true, Some(batch)) = (becomes_pending, u.action.batch) {
            if let Some(w) = loaded.batch_windows.get(&batch) {
                windows.push((u.action.id, *w));
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
        let Some(action) = loaded.actions.iter().find(|a| a.id == action_id) else {
            continue;
        };
        if action.state == ActionState::Pending && !already_noted(action) {
            let mut action = action.clone();
            action.add_note(now, note);
            step.action_updates.push(ActionUpdate {
                expected: ActionState::Pending,
                action,
            });
        }
    }
}
