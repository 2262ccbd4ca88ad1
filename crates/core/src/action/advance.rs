//! How an action moves when its device answers: a pure function of the action, its commands and
//! what the device reported (no I/O). The session engine ([`crate::session`]) calls [`advance`].
//!
//! For an Autopilot Reset the rule is "never falsely done" (ARCHITECTURE.md, with its table of
//! cases): the baseline of the PC's status nodes is read in the session that sends the Exec,
//! before it; only a value newer than that baseline, or the Exec's own status, is evidence.
//! [`judge_reset`] is that rule as a table over plain values.

use time::OffsetDateTime;

use super::model::{
    autopilot_status_meaning, decode_hresult, format_hresult, Action, ActionKind, ActionState,
    ResetBaseline,
};
use crate::command::{
    first_sync_done_uri, is_first_sync_done_uri, CommandState, DeviceCommand, Verb,
    AUTOPILOT_LAST_ERROR_URI, AUTOPILOT_RESET_EXEC_URI, AUTOPILOT_STATUS_URI,
    LOCAL_RESET_POLICY_URI,
};
use crate::device::Device;
use crate::ids::{ActionId, CommandId, DeviceId};

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
    /// Commands to queue (status re-checks, the Exec after its baseline, a re-sent Exec).
    pub enqueue: Vec<DeviceCommand>,
    /// Clear the device's primary user (a remote reset finished).
    pub clear_primary_user: bool,
    /// Mark the device unenrolled (a retire was accepted).
    pub unenroll: bool,
    /// The local-reset policy value the device reported (allowed = true).
    pub local_reset_reported: Option<bool>,
}

/// Reads an `int` node value as an HRESULT: Windows may send it signed (`-2147024846`), unsigned
/// (`2147942450`) or in hex (docs/protocol.md §1.7: the textual form is UNCONFIRMED).
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

/// Reads a `bool` node value (`true`/`false`, also `1`/`0`, any case).
pub fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

fn command(
    device: DeviceId,
    action: ActionId,
    verb: Verb,
    uri: impl Into<String>,
    at: OffsetDateTime,
) -> DeviceCommand {
    DeviceCommand::new(CommandId::generate(), device, Some(action), verb, uri, at)
}

/// Gets of the reset's status nodes, in the order the device answers them: `AutomaticRedeployment/
/// Status` and `LastError` (ITPRO remotewipe-csp.md; docs/protocol.md §7 fact 2) and
/// `FirstSyncStatus/IsSyncDone` (ITPRO dmclient-csp.md).
pub fn status_reads(
    device: DeviceId,
    action: ActionId,
    provider_id: &str,
    at: OffsetDateTime,
) -> Vec<DeviceCommand> {
    vec![
        command(device, action, Verb::Get, AUTOPILOT_STATUS_URI, at),
        command(device, action, Verb::Get, AUTOPILOT_LAST_ERROR_URI, at),
        command(
            device,
            action,
            Verb::Get,
            first_sync_done_uri(provider_id),
            at,
        ),
    ]
}

/// What a new Autopilot Reset sends first: `IsSyncDone` set to true (so that a reset, which sends
/// the PC through its first sync again, shows as false afterwards), then the baseline reads.
/// The Exec follows in the same session when they are answered ([`judge_reset`]).
pub fn baseline_commands(
    device: DeviceId,
    action: ActionId,
    provider_id: &str,
    at: OffsetDateTime,
) -> Vec<DeviceCommand> {
    let mut out = vec![command(
        device,
        action,
        Verb::Replace,
        first_sync_done_uri(provider_id),
        at,
    )
    .with_data("bool", "true")];
    out.extend(status_reads(device, action, provider_id, at));
    out
}

/// The Exec, then reads of the status nodes in the same message: the device runs commands in
/// order, so their answers tell what the Exec did at once (Status 10 accepted, 30 refused).
fn exec_with_reads(
    device: DeviceId,
    action: ActionId,
    provider_id: &str,
    at: OffsetDateTime,
) -> Vec<DeviceCommand> {
    let mut out = vec![command(
        device,
        action,
        Verb::Exec,
        AUTOPILOT_RESET_EXEC_URI,
        at,
    )];
    out.extend(status_reads(device, action, provider_id, at));
    out
}

/// The status-node values answered in one message (`None` if the Status Get is not among them).
pub fn reading_of(answers: &[Answered]) -> Option<ResetBaseline> {
    let mut reading = ResetBaseline::default();
    let mut has_status = false;
    for a in answers.iter().filter(|a| a.command.verb == Verb::Get) {
        let ok = (200..300).contains(&a.status);
        let value = a.result.as_deref().unwrap_or("").trim();
        if a.command.uri == AUTOPILOT_STATUS_URI {
            has_status = true;
            reading.status = value.parse().ok().filter(|_| ok);
        } else if a.command.uri == AUTOPILOT_LAST_ERROR_URI {
            reading.last_error = parse_hresult(value).filter(|_| ok);
        } else if is_first_sync_done_uri(&a.command.uri) {
            reading.sync_done = parse_bool(value).filter(|_| ok);
        }
    }
    has_status.then_some(reading)
}

/// Where the reset's latest Exec is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExecFate {
    /// No Exec yet: the baseline is being read.
    NotCreated,
    /// Created, not in a committed reply yet.
    Queued,
    /// Sent; the device's Status for it never came (the reply or its answer was lost).
    Unanswered,
    /// The device accepted it (2xx).
    Accepted(u16),
    /// The device refused it (the code).
    Refused(u16),
}

/// What the evidence says about a reset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResetVerdict {
    /// Nothing new: wait for the next reading.
    Wait,
    /// The baseline was read: keep it and send the Exec, with reads after it, in this session.
    SendExec(ResetBaseline),
    /// The PC reports the reset scheduled or waiting for its reboot (Status 10/20).
    InProgress(i64),
    /// The PC was reset; the text says by what evidence.
    Done(&'static str),
    /// The reset failed: the status nodes' values (newer than the baseline), or the Exec's code.
    Failed {
        /// `AutomaticRedeployment/Status` read after the Exec.
        status: Option<i64>,
        /// `AutomaticRedeployment/LastError` read after the Exec.
        last_error: Option<u32>,
        /// The device's Status for a refused Exec.
        exec_status: Option<u16>,
    },
    /// The PC never ran the Exec (its nodes are unchanged since the baseline and it never
    /// acknowledged): send it again now; the reading just taken is the new baseline.
    Resend(ResetBaseline),
}

/// The "never falsely done" rule (ARCHITECTURE.md has it as a table): what a reset's evidence
/// means, given the baseline read before its Exec, where the Exec is, the status nodes read in
/// this message (after the Exec), and whether a reading after the Exec already showed it
/// scheduled (Status 10/20). A stale value — equal to the baseline — is never evidence.
pub fn judge_reset(
    baseline: Option<ResetBaseline>,
    exec: ExecFate,
    reading: Option<ResetBaseline>,
    saw_progress: bool,
) -> ResetVerdict {
    use ResetVerdict::*;
    let exec_status = match exec {
        ExecFate::Refused(code) => {
            return Failed {
                status: reading.and_then(|r| r.status),
                last_error: reading.and_then(|r| r.last_error),
                exec_status: Some(code),
            }
        }
        ExecFate::NotCreated => return reading.map_or(Wait, SendExec),
        ExecFate::Queued => return Wait,
        ExecFate::Unanswered => None,
        ExecFate::Accepted(code) => Some(code),
    };
    let Some(r) = reading else { return Wait };
    // A legacy action sent before baselines existed: only movement we saw ourselves counts.
    let changed = baseline.is_some_and(|b| {
        r.status != b.status || (r.last_error.is_some() && r.last_error != b.last_error)
    });
    // The reset sends the PC through its first sync again: IsSyncDone, set true before the
    // baseline, reads false until that sync completes.
    let first_sync_again =
        baseline.is_some_and(|b| b.sync_done == Some(true)) && r.sync_done == Some(false);
    let moved = changed || saw_progress;
    let err = r.last_error.unwrap_or(0);
    match r.status {
        Some(s @ (10 | 20)) => InProgress(s),
        Some(1) if err == 0 && first_sync_again => {
            Done("Status 1, LastError 0, and IsSyncDone false: the PC went through its first sync again")
        }
        Some(1) if err == 0 && moved => Done("Status 1 (complete), LastError 0, newer than the baseline"),
        // (Status 1 with LastError 0 was taken by the arms above.)
        Some(1 | 30 | 40 | 50) if moved => Failed {
            status: r.status,
            last_error: r.last_error,
            exec_status: None,
        },
        _ if first_sync_again => Done(
            "IsSyncDone false: the PC went through its first sync again (its reset status nodes are stale)",
        ),
        // Unanswered and unchanged: the Exec never reached the PC (a PC that ran it shows 10/20,
        // a new value, or IsSyncDone false). Anything else unexplained: wait, never guess.
        _ if exec_status.is_none() && !saw_progress && r.status.is_some() && !changed
            && baseline.is_some() =>
        {
            Resend(r)
        }
        _ => Wait,
    }
}

/// Moves `action` according to the device's answers to its commands in one message.
/// `all_commands` are every command of the action as stored before this message (for the
/// Exec's fate and earlier readings); `provider_id` names our DMClient provider node.
/// Refuses nothing: impossible transitions are skipped.
pub fn advance(
    action: &mut Action,
    answers: &[Answered],
    all_commands: &[DeviceCommand],
    provider_id: &str,
    now: OffsetDateTime,
) -> Advance {
    let mut out = Advance::default();
    if action.kind == ActionKind::AutopilotReset {
        advance_reset(action, answers, all_commands, provider_id, now, &mut out);
        return out;
    }
    for a in answers {
        let c = &a.command;
        let ok = (200..300).contains(&a.status);
        match c.verb {
            Verb::Exec | Verb::Replace | Verb::Add | Verb::Delete => {
                if ok {
                    let note = format!("acknowledged: {} {} (status {})", c.verb, c.uri, a.status);
                    let _ = action.transition(ActionState::Acknowledged, now, Some(&note));
                    if action.kind == ActionKind::Retire {
                        out.unenroll = true;
                        let _ = action.transition(
                            ActionState::Done,
                            now,
                            Some("the device accepted the unenrollment"),
                        );
                    }
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
                if c.uri == LOCAL_RESET_POLICY_URI {
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
    out
}

/// The latest Exec of the action (as stored), with its status from this message if answered now.
fn exec_fate<'a>(
    answers: &[Answered],
    all_commands: &'a [DeviceCommand],
) -> (ExecFate, Option<&'a DeviceCommand>) {
    let Some(exec) = all_commands
        .iter()
        .filter(|c| c.verb == Verb::Exec)
        .max_by_key(|c| c.created_at)
    else {
        return (ExecFate::NotCreated, None);
    };
    let code = answers
        .iter()
        .find(|a| a.command.id == exec.id)
        .map(|a| a.status)
        .or(exec.status);
    let fate = match (code, exec.state) {
        (Some(c), _) if (200..300).contains(&c) => ExecFate::Accepted(c),
        (Some(c), _) => ExecFate::Refused(c),
        (None, CommandState::Queued) => ExecFate::Queued,
        (None, _) => ExecFate::Unanswered,
    };
    (fate, Some(exec))
}

/// Whether a Status read sent after `exec` already reported 10/20 (scheduled / waiting for
/// reboot): the reset was seen moving.
fn saw_progress(exec: Option<&DeviceCommand>, all_commands: &[DeviceCommand]) -> bool {
    let Some(exec) = exec else { return false };
    all_commands.iter().any(|c| {
        c.verb == Verb::Get
            && c.uri == AUTOPILOT_STATUS_URI
            && c.created_at >= exec.created_at
            && matches!(
                c.result
                    .as_deref()
                    .map(str::trim)
                    .and_then(|v| v.parse::<i64>().ok()),
                Some(10 | 20)
            )
    })
}

fn advance_reset(
    action: &mut Action,
    answers: &[Answered],
    all_commands: &[DeviceCommand],
    provider_id: &str,
    now: OffsetDateTime,
    out: &mut Advance,
) {
    let (fate, exec) = exec_fate(answers, all_commands);
    if let (ExecFate::Accepted(code), Some(e)) = (fate, exec) {
        if answers.iter().any(|a| a.command.id == e.id) {
            let note = format!("acknowledged: Exec {} (status {code})", e.uri);
            let _ = action.transition(ActionState::Acknowledged, now, Some(&note));
        }
    }
    let progress = saw_progress(exec, all_commands);
    let verdict = judge_reset(action.baseline, fate, reading_of(answers), progress);
    let (device, id) = (action.device, action.id);
    match verdict {
        ResetVerdict::Wait => {}
        ResetVerdict::SendExec(baseline) => {
            if action.state == ActionState::Pending {
                action.baseline = Some(baseline);
                action.add_note(now, format!("baseline read: {}", baseline.describe()));
                out.enqueue
                    .extend(exec_with_reads(device, id, provider_id, now));
            }
        }
        ResetVerdict::InProgress(status) => {
            if action.state != ActionState::InProgress {
                let note = format!("the device reports: {}", autopilot_status_meaning(status));
                let _ = action.transition(ActionState::InProgress, now, Some(&note));
            }
        }
        ResetVerdict::Done(evidence) => {
            let note = format!("came back reset: {evidence}; primary user cleared");
            if action
                .transition(ActionState::Done, now, Some(&note))
                .is_ok()
            {
                out.clear_primary_user = true;
            }
        }
        ResetVerdict::Failed {
            status,
            last_error,
            exec_status,
        } => {
            let err = last_error.unwrap_or(0);
            let (meaning, fix) = decode_hresult(err);
            let status_text = status.map_or_else(
                || "Status not read".to_owned(),
                |s| format!("Status {s}: {}", autopilot_status_meaning(s)),
            );
            let mut text = match exec_status {
                Some(code) if err == 0 => {
                    format!("the device refused the Exec with status {code} ({status_text})")
                }
                _ => format!(
                    "{meaning} (LastError {}, {status_text})",
                    format_hresult(err)
                ),
            };
            if let Some(fix) = fix {
                text.push_str(&format!("; fix: {fix}"));
            }
            if err != 0 {
                action.last_error = Some(err);
            }
            let _ = action.transition(ActionState::Failed, now, Some(&text));
        }
        ResetVerdict::Resend(baseline) => {
            let note = format!(
                "the PC never ran the reset (no acknowledgement; {} as before the Exec): sending it again",
                baseline.describe()
            );
            if action
                .transition(ActionState::Pending, now, Some(&note))
                .is_ok()
            {
                action.baseline = Some(baseline);
                out.enqueue
                    .extend(exec_with_reads(device, id, provider_id, now));
            }
        }
    }
}

/// At a new session, an action still waiting on the device: a pending reset without commands
/// (queued in bulk) gets its baseline — when `cmds_read` says `cmds` are all its commands; a
/// device that accepted a reset and went away came back (`in_progress`), and the reset's
/// Status/LastError are read until settled; other acknowledged commands count as done once the
/// device checks in again; a Sync is done.
pub fn follow_up(
    action: &mut Action,
    cmds: &[DeviceCommand],
    cmds_read: bool,
    queued: &[DeviceCommand],
    adv: &mut Advance,
    provider_id: &str,
    now: OffsetDateTime,
) {
    let id = action.id;
    let has_open_status_get = cmds
        .iter()
        .chain(queued.iter())
        .chain(adv.enqueue.iter())
        .any(|c| {
            c.action == Some(id) && c.uri == AUTOPILOT_STATUS_URI && c.state == CommandState::Queued
        });
    match action.kind {
        ActionKind::AutopilotReset => {
            // A reset queued in bulk (`crate::store::BulkQueue`) has no commands until its PC
            // comes: the baseline now, sent in this session; the Exec follows as for any reset.
            let has_commands = cmds
                .iter()
                .chain(queued.iter())
                .chain(adv.enqueue.iter())
                .any(|c| c.action == Some(id));
            if action.state == ActionState::Pending && cmds_read && !has_commands {
                adv.enqueue
                    .extend(baseline_commands(action.device, id, provider_id, now));
            }
            if action.state == ActionState::Acknowledged {
                let _ = action.transition(
                    ActionState::InProgress,
                    now,
                    Some("went silent after accepting the reset; came back"),
                );
            }
            if matches!(
                action.state,
                ActionState::Sent | ActionState::InProgress | ActionState::Acknowledged
            ) && !has_open_status_get
            {
                adv.enqueue
                    .extend(status_reads(action.device, action.id, provider_id, now));
            }
        }
        ActionKind::Sync => {
            if action.state == ActionState::Pending {
                let _ = action.transition(ActionState::Sent, now, Some("the device checked in"));
                let _ = action.transition(ActionState::Done, now, Some("sync done"));
            }
        }
        ActionKind::Restart
        | ActionKind::Wipe
        | ActionKind::WipeKeepProvisioning
        | ActionKind::WipeKeepUserData
        | ActionKind::WipeProtected => {
            if action.state == ActionState::Acknowledged {
                let _ = action.transition(
                    ActionState::Done,
                    now,
                    Some("the device checked in again after accepting the command"),
                );
            }
        }
        ActionKind::Retire | ActionKind::SetLocalResetPolicy(_) => {}
    }
}

/// What happens to an action when one of its commands goes out in a committed reply: a `pending`
/// action becomes `sent`; an action in any other state is left alone. For an Autopilot Reset only
/// its Exec counts: the reads of its baseline before it change nothing on the PC, so the action
/// stays `pending` (and cancelable) until the Exec itself goes out. Returns whether it changed.
pub fn action_after_send(
    action: &mut Action,
    command: &DeviceCommand,
    at: OffsetDateTime,
) -> crate::error::Result<bool> {
    if action.state != ActionState::Pending {
        return Ok(false);
    }
    if action.kind.is_autopilot_reset() && command.verb != Verb::Exec {
        return Ok(false);
    }
    let note = command.sent_in.as_ref().map(|s| {
        format!(
            "{} {} in session {} message {}",
            command.verb, command.uri, s.session_id, s.msg_id
        )
    });
    action.transition(ActionState::Sent, at, note.as_deref())?;
    Ok(true)
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
    use ExecFate::*;
    use ResetVerdict::*;

    #[test]
    fn hresults_in_every_textual_form() {
        assert_eq!(parse_hresult("-2147024846"), Some(0x8007_0032));
        assert_eq!(parse_hresult("2147942450"), Some(0x8007_0032));
        assert_eq!(parse_hresult("0x80070032"), Some(0x8007_0032));
        assert_eq!(parse_hresult("0"), Some(0));
        assert_eq!(parse_hresult("nope"), None);
        assert_eq!(parse_hresult("99999999999"), None);
        assert_eq!(parse_bool("True"), Some(true));
        assert_eq!(parse_bool("0"), Some(false));
        assert_eq!(parse_bool("maybe"), None);
    }

    fn nodes(status: i64, last_error: u32, sync_done: bool) -> Option<ResetBaseline> {
        Some(ResetBaseline {
            status: Some(status),
            last_error: Some(last_error),
            sync_done: Some(sync_done),
        })
    }

    const WINRE: u32 = 0x8007_0032;
    const EFAIL: u32 = 0x8000_4005;

    type Check = fn(&ResetVerdict) -> bool;
    type Case = (
        &'static str,
        Option<ResetBaseline>,
        ExecFate,
        Option<ResetBaseline>,
        bool,
        Check,
    );

    /// The table of ARCHITECTURE.md "Never falsely done", case by case:
    /// (case, baseline, exec, reading after the Exec, a 10/20 already seen, verdict).
    #[test]
    fn the_never_falsely_done_table() {
        let done = |v: &ResetVerdict| matches!(v, Done(_));
        let failed = |v: &ResetVerdict| matches!(v, Failed { .. });
        let cases: Vec<Case> = vec![
            (
                "baseline read: send the Exec",
                None,
                NotCreated,
                nodes(1, 0, true),
                false,
                |v| matches!(v, SendExec(b) if b.status == Some(1)),
            ),
            (
                "Exec still queued",
                nodes(0, 0, true),
                Queued,
                nodes(0, 0, true),
                false,
                |v| *v == Wait,
            ),
            (
                "accepted, Status 10 right after",
                nodes(0, 0, true),
                Accepted(200),
                nodes(10, 0, true),
                false,
                |v| *v == InProgress(10),
            ),
            (
                "accepted, waiting for reboot",
                nodes(1, 0, true),
                Accepted(200),
                nodes(20, 0, true),
                true,
                |v| *v == InProgress(20),
            ),
            (
                "first reset: back with 1 after 0",
                nodes(0, 0, true),
                Accepted(200),
                nodes(1, 0, false),
                true,
                done,
            ),
            (
                "second reset: 1 -> 1, first sync again",
                nodes(1, 0, true),
                Accepted(200),
                nodes(1, 0, false),
                true,
                done,
            ),
            (
                "second reset, ack lost, PC ran it",
                nodes(1, 0, true),
                Unanswered,
                nodes(1, 0, false),
                false,
                done,
            ),
            (
                "ack lost, still scheduled",
                nodes(1, 0, true),
                Unanswered,
                nodes(20, 0, true),
                false,
                |v| *v == InProgress(20),
            ),
            (
                "STALE 1 from an earlier reset, Exec never arrived",
                nodes(1, 0, true),
                Unanswered,
                nodes(1, 0, true),
                false,
                |v| *v == Resend(nodes(1, 0, true).unwrap()),
            ),
            (
                "stale 0, Exec never arrived",
                nodes(0, 0, true),
                Unanswered,
                nodes(0, 0, true),
                false,
                |v| matches!(v, Resend(_)),
            ),
            (
                "STALE failure 50 from before, Exec never arrived",
                nodes(50, EFAIL, true),
                Unanswered,
                nodes(50, EFAIL, true),
                false,
                |v| matches!(v, Resend(_)),
            ),
            (
                "stale status after restore: nodes lie, first sync again",
                nodes(1, 0, true),
                Unanswered,
                nodes(1, 0, false),
                false,
                done,
            ),
            (
                "stale status after restore, 0 before",
                nodes(0, 0, true),
                Accepted(200),
                nodes(0, 0, false),
                true,
                done,
            ),
            (
                "accepted but nodes unchanged and no progress: wait, never resend",
                nodes(1, 0, true),
                Accepted(200),
                nodes(1, 0, true),
                false,
                |v| *v == Wait,
            ),
            (
                "seen scheduled, back with 1, first sync already completed",
                nodes(1, 0, true),
                Accepted(200),
                nodes(1, 0, true),
                true,
                done,
            ),
            (
                "WinRE refusal at Exec",
                nodes(0, 0, true),
                Refused(500),
                nodes(30, WINRE, true),
                false,
                failed,
            ),
            (
                "WinRE again after an earlier WinRE failure",
                nodes(30, WINRE, true),
                Refused(500),
                nodes(30, WINRE, true),
                false,
                failed,
            ),
            (
                "power not met after acceptance",
                nodes(1, 0, true),
                Accepted(200),
                nodes(40, 0x8007_0015, true),
                true,
                failed,
            ),
            (
                "reset internals failed, rolled back",
                nodes(1, 0, true),
                Accepted(200),
                nodes(50, EFAIL, true),
                true,
                failed,
            ),
            (
                "stale 30 after an unanswered Exec is not a failure",
                nodes(30, WINRE, true),
                Unanswered,
                nodes(30, WINRE, true),
                false,
                |v| matches!(v, Resend(_)),
            ),
            (
                "no reading in this message",
                nodes(1, 0, true),
                Accepted(200),
                None,
                false,
                |v| *v == Wait,
            ),
            (
                "legacy action without baseline: stale 1 is not done",
                None,
                Unanswered,
                nodes(1, 0, true),
                false,
                |v| *v == Wait,
            ),
            (
                "legacy action seen in progress, back with 1",
                None,
                Accepted(200),
                nodes(1, 0, true),
                true,
                done,
            ),
        ];
        for (case, baseline, exec, reading, progress, check) in cases {
            let v = judge_reset(baseline, exec, reading, progress);
            assert!(check(&v), "{case}: got {v:?}");
        }
    }

    #[test]
    fn only_a_moved_value_or_first_sync_ever_makes_done() {
        // Exhaustive over small domains: Done needs IsSyncDone true -> false, a Status/LastError
        // different from the baseline, or a 10/20 seen after the Exec.
        let statuses = [
            None,
            Some(0),
            Some(1),
            Some(10),
            Some(20),
            Some(30),
            Some(40),
            Some(50),
        ];
        let errors = [None, Some(0), Some(WINRE), Some(EFAIL)];
        let syncs = [None, Some(true), Some(false)];
        let fates = [Unanswered, Accepted(200), Refused(500), Queued];
        for bs in statuses {
            for be in errors {
                for bsync in syncs {
                    let b = ResetBaseline {
                        status: bs,
                        last_error: be,
                        sync_done: bsync,
                    };
                    for rs in statuses {
                        for re in errors {
                            for rsync in syncs {
                                let r = ResetBaseline {
                                    status: rs,
                                    last_error: re,
                                    sync_done: rsync,
                                };
                                for fate in fates {
                                    for progress in [false, true] {
                                        let v = judge_reset(Some(b), fate, Some(r), progress);
                                        let evidence = (bsync == Some(true)
                                            && rsync == Some(false))
                                            || rs != bs
                                            || (re.is_some() && re != be)
                                            || progress;
                                        if matches!(v, Done(_)) {
                                            assert!(evidence, "{b:?} -> {r:?} {fate:?}: {v:?}");
                                        }
                                        if matches!(v, Resend(_)) {
                                            assert_eq!(fate, Unanswered);
                                            assert!(
                                                rs == bs && rs.is_some() && !progress,
                                                "{b:?} -> {r:?}: {v:?}"
                                            );
                                        }
                                        if matches!(v, Failed { .. }) && !matches!(fate, Refused(_))
                                        {
                                            assert!(evidence, "{b:?} -> {r:?} {fate:?}: {v:?}");
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
