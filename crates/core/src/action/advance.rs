//! How an action moves when its device answers: a pure function of the action, its commands and
//! what the device reported (no I/O). The session engine ([`crate::session`]) calls [`advance`].

use time::OffsetDateTime;

use super::model::{
    autopilot_status_meaning, decode_hresult, format_hresult, Action, ActionKind, ActionState,
};
use super::request::reset_status_gets;
use crate::command::{
    CommandState, DeviceCommand, Verb, AUTOPILOT_LAST_ERROR_URI, AUTOPILOT_STATUS_URI,
    LOCAL_RESET_POLICY_URI,
};
use crate::device::Device;
use crate::ids::CommandId;

/// One of the action's commands that the device answered in this message.
#[derive(Clone, Debug)]
pub struct Answered {
    /// The command as stored before the answer.
    pub command: DeviceCommand,
    /// The device's Status code.
    pub status: u16,
    /// Results data (Gets).
    pub result: Option<String>,
}

/// What [`advance`] decided besides the action's own state.
#[derive(Clone, Debug, Default)]
pub struct Advance {
    /// Commands to queue (status re-checks, a re-sent Exec).
    pub enqueue: Vec<DeviceCommand>,
    /// Clear the device's primary user (a remote reset finished).
    pub clear_primary_user: bool,
    /// Mark the device unenrolled (a retire was accepted).
    pub unenroll: bool,
    /// The local-reset policy value the device reported (allowed = true).
    pub local_reset_reported: Option<bool>,
}

/// Reads an `int` node value as an HRESULT: Windows may send it signed (`-2147024846`), unsigned
/// (`2147942450`) or in hex (protocol.md §1.7: the textual form is UNCONFIRMED).
pub fn parse_hresult(text: &str) -> Option<u32> {
    let t = text.trim();
    if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        return u32::from_str_radix(h, 16).ok();
    }
    let n: i64 = t.parse().ok()?;
    if (i64::from(i32::MIN)..=i64::from(u32::MAX)).contains(&n) {
        // Two's complement: a negative i32 is the same 32 bits as the unsigned HRESULT.
        Some(n as u32)
    } else {
        None
    }
}

/// Moves `action` according to the device's answers to its commands in one message.
/// `exec_commands` are every command of the action (for the Exec's earlier status);
/// `same_session_as_exec` tells whether this message belongs to the session that delivered the
/// Exec (the device has not been away yet). Refuses nothing: impossible transitions are skipped.
pub fn advance(
    action: &mut Action,
    answers: &[Answered],
    all_commands: &[DeviceCommand],
    same_session_as_exec: bool,
    now: OffsetDateTime,
) -> Advance {
    let mut out = Advance::default();
    let mut status_node: Option<i64> = None;
    let mut last_error: Option<u32> = None;
    let device = action.device;
    for a in answers {
        let c = &a.command;
        let ok = (200..300).contains(&a.status);
        match c.verb {
            Verb::Exec | Verb::Replace | Verb::Add | Verb::Delete => {
                if ok {
                    let note = format!("acknowledged: {} {} (status {})", c.verb, c.uri, a.status);
                    let _ = action.transition(ActionState::Acknowledged, now, Some(&note));
                    match action.kind {
                        ActionKind::AutopilotReset => {
                            out.enqueue
                                .extend(reset_status_gets(device, action.id, now));
                        }
                        ActionKind::Retire => {
                            out.unenroll = true;
                            let _ = action.transition(
                                ActionState::Done,
                                now,
                                Some("the device accepted the unenrollment"),
                            );
                        }
                        _ => {}
                    }
                } else if action.kind == ActionKind::AutopilotReset && c.verb == Verb::Exec {
                    // The Exec status is acceptance only; ask the Status node why it refused.
                    out.enqueue
                        .extend(reset_status_gets(device, action.id, now));
                } else {
                    let note = format!(
                        "the device refused {} {} with status {}",
                        c.verb, c.uri, a.status
                    );
                    let _ = action.transition(ActionState::Failed, now, Some(&note));
                }
            }
            Verb::Get => {
                let value = a.result.as_deref().unwrap_or("").trim();
                if c.uri == AUTOPILOT_STATUS_URI && ok {
                    status_node = value.parse().ok();
                } else if c.uri == AUTOPILOT_LAST_ERROR_URI && ok {
                    last_error = parse_hresult(value);
                } else if c.uri == LOCAL_RESET_POLICY_URI {
                    if let ActionKind::SetLocalResetPolicy(allowed) = action.kind {
                        let reported = if ok { value.parse::<i64>().ok() } else { None };
                        out.local_reset_reported = reported.map(|v| v == 0);
                        if reported.map(|v| v == 0) == Some(allowed) {
                            let note = format!("the device reports the policy at {value}");
                            let _ = action.transition(ActionState::Done, now, Some(&note));
                        } else {
                            let note = format!(
                                "the device reports the policy at {:?} (status {})",
                                value, a.status
                            );
                            let _ = action.transition(ActionState::Failed, now, Some(&note));
                        }
                    }
                }
            }
        }
    }
    if action.kind == ActionKind::AutopilotReset {
        if let Some(status) = status_node {
            reset_from_status(
                action,
                status,
                last_error,
                all_commands,
                same_session_as_exec,
                now,
                &mut out,
            );
        }
    }
    out
}

fn reset_from_status(
    action: &mut Action,
    status: i64,
    last_error: Option<u32>,
    all_commands: &[DeviceCommand],
    same_session_as_exec: bool,
    now: OffsetDateTime,
    out: &mut Advance,
) {
    let exec = all_commands.iter().rev().find(|c| c.verb == Verb::Exec);
    let exec_refused = exec
        .and_then(|c| c.status)
        .filter(|s| !(200..300).contains(s));
    let exec_unanswered = exec.is_some_and(|c| c.state == CommandState::Sent);
    let err = last_error.unwrap_or(0);
    let fail = |action: &mut Action, status: i64| {
        let (meaning, fix) = decode_hresult(err);
        let mut text = format!(
            "{meaning} (LastError {}, Status {status}: {})",
            format_hresult(err),
            autopilot_status_meaning(status)
        );
        if let Some(fix) = fix {
            text.push_str(&format!("; fix: {fix}"));
        }
        if err != 0 {
            action.last_error = Some(err);
        }
        let _ = action.transition(ActionState::Failed, now, Some(&text));
    };
    match status {
        30 | 40 | 50 => fail(action, status),
        1 if err != 0 => fail(action, status),
        10 | 20 => {
            if action.state != ActionState::InProgress {
                let note = format!("the device reports: {}", autopilot_status_meaning(status));
                let _ = action.transition(ActionState::InProgress, now, Some(&note));
            }
        }
        1 => {
            // Done only from the device's own Status read after it came back; a 1 read in the
            // session that delivered the Exec may be an earlier reset's.
            if action.state == ActionState::InProgress
                || (action.state == ActionState::Sent && !same_session_as_exec)
            {
                let _ = action.transition(
                    ActionState::Done,
                    now,
                    Some("came back: first sync done, Status 1 (complete), LastError 0; primary user cleared"),
                );
                out.clear_primary_user = true;
            }
        }
        _ => {
            if let Some(code) = exec_refused {
                let note = format!(
                    "the device refused the Exec with status {code} (Status {status}: {})",
                    autopilot_status_meaning(status)
                );
                let _ = action.transition(ActionState::Failed, now, Some(&note));
            } else if action.state == ActionState::Sent && exec_unanswered && !same_session_as_exec
            {
                // The device never got the Exec (the session was lost before it): send it again.
                let _ = action.transition(
                    ActionState::Pending,
                    now,
                    Some("the device never received the reset (Status 0); queued again"),
                );
                if let Some(e) = exec {
                    out.enqueue.push(DeviceCommand::new(
                        CommandId::generate(),
                        action.device,
                        Some(action.id),
                        Verb::Exec,
                        e.uri.clone(),
                        now,
                    ));
                }
            }
        }
    }
}

/// Device fields changed by [`Advance`].
pub fn apply_to_device(device: &mut Device, adv: &Advance, now: OffsetDateTime) {
    if adv.clear_primary_user {
        device.primary_user = None;
    }
    if adv.unenroll && device.unenrolled_at.is_none() {
        device.unenrolled_at = Some(now);
    }
    if let Some(v) = adv.local_reset_reported {
        device.local_reset_reported = Some(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hresults_in_every_textual_form() {
        assert_eq!(parse_hresult("-2147024846"), Some(0x8007_0032));
        assert_eq!(parse_hresult("2147942450"), Some(0x8007_0032));
        assert_eq!(parse_hresult("0x80070032"), Some(0x8007_0032));
        assert_eq!(parse_hresult("0"), Some(0));
        assert_eq!(parse_hresult("nope"), None);
        assert_eq!(parse_hresult("99999999999"), None);
    }
}
