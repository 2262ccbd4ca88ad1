//! The decision of a device message as tables, without a store: each case builds [`Loaded`] by
//! hand, runs [`decide`] and checks the step, the reply skeleton and the audit events.

use syncml::{AlertCode, Command, SyncMl};
use time::macros::{datetime, time};
use time::{Duration, OffsetDateTime};

use super::*;
use crate::action::{baseline_commands, status_reads, Action, ActionKind, ActionState};
use crate::command::{
    first_sync_done_uri, CommandState, DeviceCommand, SentIn, Verb, AUTOPILOT_LAST_ERROR_URI,
    AUTOPILOT_RESET_EXEC_URI, AUTOPILOT_STATUS_URI, WINRE_STATUS_URI,
};
use crate::device::Device;
use crate::ids::{ActionId, BatchId, CommandId};
use crate::inventory::InventoryValue;
use crate::preflight::HR_WINRE_DISABLED;
use crate::schedule::{BatchWindow, MaintenanceWindow, HELD_NOTE_PREFIX};
use crate::store::SendBatch;

const T0: OffsetDateTime = datetime!(2026-05-04 9:00 UTC);
const SERVER: &str = "https://mdm.example.org/ManagementServer/MDM.svc";
const DEV_ID: &str = "B5B954E81FBCB94EB79BD08BE625F4EE";
const SESSION: &str = "s1";
const UNENROLL: &str = r#"<Alert><CmdID>9</CmdID><Data>1226</Data><Item><Meta><Type xmlns="syncml:metinf">com.microsoft:mdm.unenrollment.userrequest</Type><Format xmlns="syncml:metinf">int</Format></Meta><Data>1</Data></Item></Alert>"#;

fn cfg() -> SessionConfig {
    SessionConfig {
        server_url: SERVER.into(),
        ..SessionConfig::default()
    }
}

/// A PC whose WinRE is known good, whose inventory was read an hour ago and whose IsSyncDone
/// read true half an hour ago: a session start asks it nothing.
fn idle() -> Loaded {
    let mut d = Device::new(DeviceId::generate(), "pc-1", T0 - Duration::days(10));
    d.mdm_device_id = Some(DEV_ID.into());
    d.winre_checked_at = Some(T0 - Duration::days(1));
    d.winre_enabled = Some(true);
    d.primary_user = Some("ada@contoso.com".into());
    let id = d.id;
    let mut loaded = Loaded::new(d);
    loaded.inventory_read_at = Some(T0 - Duration::hours(1));
    loaded.sync_done_read = Some(sync_done_read(id, "true", T0 - Duration::minutes(30)));
    loaded
}

/// The stored value `value` of our IsSyncDone, read at `at`.
fn sync_done_read(device: DeviceId, value: &str, at: OffsetDateTime) -> InventoryValue {
    InventoryValue {
        device,
        uri: first_sync_done_uri("Redeploy"),
        value: value.into(),
        format: Some("bool".into()),
        at,
    }
}

/// [`decide`] on `msg` as the next message of its session (the device's last message the one
/// before it), as when the device's messages arrive in order.
fn decide_next(
    loaded: &Loaded,
    msg: &SyncMl,
    now: OffsetDateTime,
    cfg: &SessionConfig,
) -> Result<Decision, SessionError> {
    decide(&following(loaded, msg), msg, now, cfg)
}

/// `loaded` with the device's last message the one before `msg` in its session.
fn following(loaded: &Loaded, msg: &SyncMl) -> Loaded {
    let mut loaded = loaded.clone();
    let n: u64 = msg.hdr.msg_id.parse().unwrap();
    loaded.device.last_message = crate::device::MessageSeq {
        session_id: msg.hdr.session_id.clone(),
        msg_id: n.saturating_sub(1),
    };
    loaded
}

/// A device message with MsgID `msg_id` and `body`, with Final unless `last` is false.
fn message(msg_id: u32, body: &str, last: bool) -> SyncMl {
    let xml = format!(
        r#"<SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto><SessionID>{SESSION}</SessionID><MsgID>{msg_id}</MsgID><Target><LocURI>{SERVER}</LocURI></Target><Source><LocURI>{DEV_ID}</LocURI></Source></SyncHdr><SyncBody>{body}{}</SyncBody></SyncML>"#,
        if last { "<Final/>" } else { "" }
    );
    syncml::parse(xml.as_bytes()).unwrap()
}

/// Package #1 of a session (Alert 1201) with `extra` commands.
fn start(extra: &str) -> SyncMl {
    message(
        1,
        &format!("<Alert><CmdID>2</CmdID><Data>1201</Data></Alert>{extra}"),
        true,
    )
}

/// The Status (and Results for a Get answered with `value`) of our command `c`.
fn answer_of(c: &DeviceCommand, code: u16, value: Option<&str>) -> String {
    let s = c.sent_in.as_ref().unwrap();
    let (m, id) = (&s.msg_id, &s.cmd_id);
    let mut out = format!(
        "<Status><CmdID>1</CmdID><MsgRef>{m}</MsgRef><CmdRef>{id}</CmdRef><Cmd>{}</Cmd><Data>{code}</Data></Status>",
        c.verb
    );
    if let Some(v) = value {
        out.push_str(&format!(
            r#"<Results><CmdID>1</CmdID><MsgRef>{m}</MsgRef><CmdRef>{id}</CmdRef><Item><Source><LocURI>{}</LocURI></Source><Data>{v}</Data></Item></Results>"#,
            c.uri
        ));
    }
    out
}

/// `c` as the store holds it after it went out in our message `msg_id` as CmdID `cmd_id`.
fn sent(mut c: DeviceCommand, msg_id: u32, cmd_id: u32) -> DeviceCommand {
    c.state = CommandState::Sent;
    c.sent_in = Some(SentIn {
        session_id: SESSION.into(),
        msg_id: msg_id.to_string(),
        cmd_id: cmd_id.to_string(),
    });
    c.sent_at = Some(c.created_at);
    c.attempts = 1;
    c
}

/// `c` answered with `code` (and `value` for a Get) in an earlier message.
fn answered(mut c: DeviceCommand, code: u16, value: Option<&str>) -> DeviceCommand {
    c = sent(c, 1, 99);
    c.state = CommandState::after_status(code);
    c.status = Some(code);
    c.result = value.map(str::to_owned);
    c
}

/// Puts `commands` in `loaded` as what the message's answers refer to.
fn refer(loaded: &mut Loaded, commands: &[DeviceCommand]) {
    for c in commands {
        let s = c.sent_in.as_ref().unwrap();
        loaded
            .referenced
            .insert((s.msg_id.clone(), s.cmd_id.clone()), c.clone());
    }
}

/// The `doAutomaticRedeployment` Exec of the reset `a`, queued at `at`.
fn reset_exec(a: &Action, at: OffsetDateTime) -> DeviceCommand {
    DeviceCommand::new(
        CommandId::generate(),
        a.device,
        Some(a.id),
        Verb::Exec,
        AUTOPILOT_RESET_EXEC_URI,
        at,
    )
}

/// An action of `kind` on the loaded device moved through `states` at T0 − 1 h.
fn action(loaded: &Loaded, kind: ActionKind, states: &[ActionState]) -> Action {
    let at = T0 - Duration::hours(1);
    let mut a = Action::new(
        ActionId::generate(),
        loaded.device.id,
        kind,
        "admin",
        None,
        at,
    );
    for s in states {
        a.transition(*s, at, None).unwrap();
    }
    a
}

/// The LocURIs of the Gets the step queues.
fn enqueued_gets(d: &Decision) -> Vec<&str> {
    d.step
        .enqueue
        .iter()
        .filter(|c| c.verb == Verb::Get)
        .map(|c| c.uri.as_str())
        .collect()
}

fn update(d: &Decision, id: ActionId) -> Option<&Action> {
    d.step
        .action_updates
        .iter()
        .find(|u| u.action.id == id)
        .map(|u| &u.action)
}

fn audit_actions(d: &Decision) -> Vec<&str> {
    d.audits.iter().map(|e| e.action.as_str()).collect()
}

fn queued_replaces(loaded: &Loaded, n: usize, data_len: usize) -> Vec<DeviceCommand> {
    (0..n)
        .map(|i| {
            DeviceCommand::new(
                CommandId::generate(),
                loaded.device.id,
                None,
                Verb::Replace,
                format!("./Vendor/MSFT/Policy/Config/Test/Node{i}"),
                T0,
            )
            .with_data("chr", "x".repeat(data_len))
        })
        .collect()
}

#[test]
fn what_a_session_start_asks_for() {
    // (case, edit of the idle PC, Gets queued in order)
    type Edit = fn(&mut Loaded);
    let inventory = inventory_uris("Redeploy");
    let inventory: Vec<&str> = inventory.iter().map(String::as_str).collect();
    let winre_then_inventory: Vec<&str> = std::iter::once(WINRE_STATUS_URI)
        .chain(inventory.iter().copied().filter(|u| *u != WINRE_STATUS_URI))
        .collect();
    let cases: Vec<(&str, Edit, Vec<&str>)> = vec![
        ("idle, known good", |_| {}, vec![]),
        (
            "WinRE never asked",
            |l| l.device.winre_checked_at = None,
            vec![WINRE_STATUS_URI],
        ),
        (
            "WinRE reported not configured",
            |l| l.device.winre_enabled = Some(false),
            vec![WINRE_STATUS_URI],
        ),
        (
            "the last reset failed for WinRE",
            |l| l.device.autopilot_last_error = Some(HR_WINRE_DISABLED),
            vec![WINRE_STATUS_URI],
        ),
        (
            "no WinRE node: asked once, answered",
            |l| l.device.winre_enabled = None,
            vec![],
        ),
        (
            "inventory never read",
            |l| l.inventory_read_at = None,
            inventory.clone(),
        ),
        (
            "inventory read 23 hours ago",
            |l| l.inventory_read_at = Some(T0 - Duration::hours(23)),
            vec![],
        ),
        (
            "inventory read 24 hours ago",
            |l| l.inventory_read_at = Some(T0 - Duration::hours(24)),
            inventory.clone(),
        ),
        (
            "WinRE in doubt and inventory due: WinRE once, first",
            |l| {
                l.device.winre_checked_at = None;
                l.inventory_read_at = None;
            },
            winre_then_inventory,
        ),
        (
            "a Get already queued is not queued twice",
            |l| {
                l.device.winre_checked_at = None;
                let id = l.device.id;
                l.queued.push(DeviceCommand::new(
                    CommandId::generate(),
                    id,
                    None,
                    Verb::Get,
                    WINRE_STATUS_URI,
                    T0,
                ));
            },
            vec![],
        ),
    ];
    for (case, edit, want) in cases {
        let mut loaded = idle();
        edit(&mut loaded);
        let d = decide_next(&loaded, &start(""), T0, &cfg()).unwrap();
        assert_eq!(enqueued_gets(&d), want, "{case}");
        let total = loaded.queued.len() + d.step.enqueue.len();
        assert_eq!(
            d.step.send.as_ref().map_or(0, |s| s.limit) as usize,
            total,
            "{case}: everything goes out"
        );
        assert!(d.step.seen, "{case}");
        // The check-in is recorded on the row.
        assert_eq!(
            d.step.device_update.as_ref().map(|u| u.last_seen),
            Some(Some(T0)),
            "{case}"
        );
    }
}

#[test]
fn what_goes_out_in_the_reply() {
    // (case, message, data size of the 3 queued Replaces, settings, Alert 1222 in the reply,
    //  commands taken, more follows)
    type Case = (
        &'static str,
        SyncMl,
        usize,
        fn(&mut SessionConfig),
        bool,
        u32,
        bool,
    );
    let keep: fn(&mut SessionConfig) = |_| {};
    let not_final = message(1, "<Alert><CmdID>2</CmdID><Data>1201</Data></Alert>", false);
    let abort = start("<Alert><CmdID>3</CmdID><Data>1223</Data></Alert>");
    let cases: [Case; 6] = [
        ("all of a short queue", start(""), 10, keep, false, 3, false),
        (
            "an incomplete package: ask for the rest",
            not_final,
            10,
            keep,
            true,
            0,
            false,
        ),
        ("the session is aborted", abort, 10, keep, false, 0, false),
        (
            "at most max_commands_per_message",
            start(""),
            10,
            |c| c.max_commands_per_message = 2,
            false,
            2,
            true,
        ),
        (
            // Two commands of ~1.5 kB fit beside the Statuses, a third does not.
            "the byte budget: what fits",
            start(""),
            1000,
            |c| c.max_message_bytes = 4000,
            false,
            2,
            true,
        ),
        (
            "the byte budget: the first command goes even when it alone is over",
            start(""),
            1000,
            |c| c.max_message_bytes = 100,
            false,
            1,
            true,
        ),
    ];
    for (name, msg, data_len, edit, alert_1222, taken, more) in cases {
        let mut loaded = idle();
        loaded.queued = queued_replaces(&loaded, 3, data_len);
        let mut cfg = cfg();
        edit(&mut cfg);
        let d = decide_next(&loaded, &msg, T0, &cfg).unwrap();
        let has_1222 = d
            .reply
            .body
            .commands
            .iter()
            .any(|c| matches!(c, Command::Alert(a) if a.code == AlertCode::NextMessage));
        assert_eq!(has_1222, alert_1222, "{name}");
        assert_eq!(d.step.send.as_ref().map_or(0, |s| s.limit), taken, "{name}");
        assert_eq!(d.more_follows, more, "{name}");
        if let Some(send) = &d.step.send {
            // Our commands follow the Statuses: header, Alert 1201 (and any other command).
            let statuses = d.reply.body.commands.len() as u32;
            assert_eq!(
                *send,
                SendBatch {
                    msg_id: "1".into(),
                    first_cmd_id: statuses + 1,
                    limit: taken
                },
                "{name}"
            );
        }
        assert!(d
            .reply
            .body
            .commands
            .iter()
            .all(|c| matches!(c, Command::Status(_) | Command::Alert(_))));
    }
}

#[test]
fn answers_advance_a_reset() {
    // (case, Exec status, Status, LastError, IsSyncDone read after the Exec, state, audit)
    type Case<'a> = (
        &'a str,
        u16,
        &'a str,
        &'a str,
        &'a str,
        ActionState,
        &'a [&'a str],
    );
    let cases: [Case; 5] = [
        (
            "accepted, scheduled",
            200,
            "10",
            "0",
            "true",
            ActionState::InProgress,
            &[],
        ),
        (
            "accepted, first sync again",
            200,
            "1",
            "0",
            "false",
            ActionState::Done,
            &["action.done"],
        ),
        (
            "accepted, unchanged",
            200,
            "0",
            "0",
            "true",
            ActionState::Acknowledged,
            &[],
        ),
        (
            "accepted, WinRE off",
            200,
            "30",
            "-2147024846",
            "true",
            ActionState::Failed,
            &["action.failed"],
        ),
        (
            "refused",
            500,
            "0",
            "0",
            "true",
            ActionState::Failed,
            &["action.failed"],
        ),
    ];
    for (case, exec_code, status, last_error, sync_done, want, audits) in cases {
        let mut loaded = idle();
        let id = loaded.device.id;
        let mut a = action(&loaded, ActionKind::AutopilotReset, &[ActionState::Pending]);
        a.baseline = Some(crate::action::ResetBaseline {
            status: Some(0),
            last_error: Some(0),
            sync_done: Some(true),
        });
        a.transition(ActionState::Sent, T0 - Duration::hours(1), None)
            .unwrap();
        let base: Vec<DeviceCommand> =
            baseline_commands(id, a.id, "Redeploy", T0 - Duration::hours(2))
                .into_iter()
                .map(|c| answered(c, 200, Some("0")))
                .collect();
        // Sent in our message 2: the Exec and its reads; the device answers in its message 3.
        let at = T0 - Duration::hours(1);
        let exec = sent(reset_exec(&a, at), 2, 5);
        let reads: Vec<DeviceCommand> = status_reads(id, a.id, "Redeploy", at)
            .into_iter()
            .zip(6..)
            .map(|(c, n)| sent(c, 2, n))
            .collect();
        let values = [status, last_error, sync_done];
        let mut body = answer_of(&exec, exec_code, None);
        for (c, v) in reads.iter().zip(values) {
            body.push_str(&answer_of(c, 200, Some(v)));
        }
        let mut cmds = base.clone();
        cmds.push(exec.clone());
        cmds.extend(reads.iter().cloned());
        refer(&mut loaded, &cmds[base.len()..]);
        loaded.commands_of_action.insert(a.id, cmds);
        loaded.actions.push(a.clone());

        let d = decide_next(&loaded, &message(3, &body, true), T0, &cfg()).unwrap();
        let moved = update(&d, a.id).unwrap_or(&a);
        assert_eq!(moved.state, want, "{case}: {:?}", moved.timeline);
        assert_eq!(audit_actions(&d), audits, "{case}");
        assert_eq!(d.step.answers.len(), 4, "{case}");
        assert!(d.step.enqueue.is_empty(), "{case}: nothing more to ask");
        // The reads land in the inventory and on the device row.
        let uris: Vec<&str> = d.step.inventory.iter().map(|v| v.uri.as_str()).collect();
        assert_eq!(
            uris,
            [
                AUTOPILOT_STATUS_URI,
                AUTOPILOT_LAST_ERROR_URI,
                &first_sync_done_uri("Redeploy")
            ],
            "{case}"
        );
        let cleared = d
            .step
            .device_update
            .as_ref()
            .unwrap()
            .primary_user
            .is_none();
        assert_eq!(
            cleared,
            want == ActionState::Done,
            "{case}: primary user cleared only when done"
        );
    }
}

/// A reset queued in bulk has no commands yet: the session start that finds it makes its
/// baseline and sends it at once; a reset whose baseline is queued gets no second one.
#[test]
fn a_pending_reset_without_commands_gets_its_baseline_at_the_session_start() {
    let mut loaded = idle();
    let id = loaded.device.id;
    let a = action(&loaded, ActionKind::AutopilotReset, &[ActionState::Pending]);
    loaded.actions.push(a.clone());
    loaded.commands_of_action.insert(a.id, Vec::new());
    let d = decide_next(&loaded, &start(""), T0, &cfg()).unwrap();
    let made: Vec<(Verb, String)> = d
        .step
        .enqueue
        .iter()
        .filter(|c| c.action == Some(a.id))
        .map(|c| (c.verb, c.uri.clone()))
        .collect();
    let baseline: Vec<(Verb, String)> = baseline_commands(id, a.id, "Redeploy", T0)
        .into_iter()
        .map(|c| (c.verb, c.uri))
        .collect();
    assert_eq!(made, baseline);
    let send = d.step.send.as_ref().expect("sent in this session");
    assert!(send.limit as usize >= baseline.len(), "{send:?}");
    assert!(update(&d, a.id).is_none_or(|u| u.state == ActionState::Pending));

    // Its commands not read: nothing is made (it may have some).
    loaded.commands_of_action.remove(&a.id);
    let d = decide_next(&loaded, &start(""), T0, &cfg()).unwrap();
    assert!(d.step.enqueue.iter().all(|c| c.action != Some(a.id)));

    // Its baseline queued already (a reset requested device by device): nothing more.
    let queued = baseline_commands(id, a.id, "Redeploy", T0 - Duration::minutes(5));
    loaded.commands_of_action.insert(a.id, queued.clone());
    loaded.queued = queued;
    let d = decide_next(&loaded, &start(""), T0, &cfg()).unwrap();
    assert!(
        d.step.enqueue.iter().all(|c| c.action != Some(a.id)),
        "{:?}",
        d.step.enqueue
    );
}

#[test]
fn answers_to_the_baseline_send_the_exec_in_the_same_session() {
    let mut loaded = idle();
    let id = loaded.device.id;
    let a = action(&loaded, ActionKind::AutopilotReset, &[ActionState::Pending]);
    // The baseline went out in our message 1; the answers come in two device messages, the
    // second one referring back to our message 1.
    let cmds: Vec<DeviceCommand> = baseline_commands(id, a.id, "Redeploy", T0)
        .into_iter()
        .zip(3..)
        .map(|(c, n)| sent(c, 1, n))
        .collect();
    refer(&mut loaded, &cmds);
    loaded.commands_of_action.insert(a.id, cmds.clone());
    loaded.actions.push(a.clone());
    let mut body = answer_of(&cmds[0], 200, None);
    for (c, v) in cmds[1..].iter().zip(["0", "0", "true"]) {
        body.push_str(&answer_of(c, 200, Some(v)));
    }
    let d = decide_next(&loaded, &message(3, &body, true), T0, &cfg()).unwrap();
    let moved = update(&d, a.id).unwrap();
    assert_eq!(
        moved.state,
        ActionState::Pending,
        "reads change nothing on the PC"
    );
    assert_eq!(
        moved
            .baseline
            .map(|b| (b.status, b.last_error, b.sync_done)),
        Some((Some(0), Some(0), Some(true)))
    );
    let verbs: Vec<(Verb, &str)> = d
        .step
        .enqueue
        .iter()
        .map(|c| (c.verb, c.uri.as_str()))
        .collect();
    assert_eq!(verbs[0], (Verb::Exec, AUTOPILOT_RESET_EXEC_URI));
    assert_eq!(verbs.len(), 4, "the Exec and its three reads");
    assert_eq!(
        d.step.send.as_ref().unwrap().limit,
        4,
        "and they go out in this reply"
    );
    assert_eq!(d.step.answers.len(), 4);
}

#[test]
fn a_status_for_nothing_of_ours_or_an_answered_command_changes_nothing() {
    let mut loaded = idle();
    let id = loaded.device.id;
    let a = action(
        &loaded,
        ActionKind::Restart,
        &[ActionState::Pending, ActionState::Sent],
    );
    // Answered already (a SessionID reused after a reset).
    let old = answered(
        DeviceCommand::new(
            CommandId::generate(),
            id,
            Some(a.id),
            Verb::Exec,
            "./Device/Vendor/MSFT/Reboot/RebootNow",
            T0,
        ),
        200,
        None,
    );
    refer(&mut loaded, std::slice::from_ref(&old));
    loaded.actions.push(a);
    let body = format!(
        "{}<Status><CmdID>2</CmdID><MsgRef>7</MsgRef><CmdRef>7</CmdRef><Cmd>Get</Cmd><Data>200</Data></Status>",
        answer_of(&old, 500, None)
    );
    let d = decide_next(&loaded, &message(3, &body, true), T0, &cfg()).unwrap();
    assert!(d.step.answers.is_empty());
    assert!(d.step.action_updates.is_empty());
    // Statuses are not answered with Statuses: only the header's.
    assert_eq!(d.reply.body.commands.len(), 1);
}

#[test]
fn a_session_start_follows_up_actions_and_requeues_unanswered_reads() {
    let mut loaded = idle();
    let id = loaded.device.id;
    let at = T0 - Duration::hours(1);
    // A reset whose Exec was accepted before the PC went silent; its reads were never answered.
    let reset = action(
        &loaded,
        ActionKind::AutopilotReset,
        &[
            ActionState::Pending,
            ActionState::Sent,
            ActionState::Acknowledged,
        ],
    );
    let exec = answered(reset_exec(&reset, at), 200, None);
    loaded.commands_of_action.insert(reset.id, vec![exec]);
    // A sync asked for: done when the PC checks in.
    let sync = action(&loaded, ActionKind::Sync, &[ActionState::Pending]);
    loaded.commands_of_action.insert(sync.id, vec![]);
    // Settled and blocked actions are not followed up.
    let done = action(
        &loaded,
        ActionKind::Restart,
        &[
            ActionState::Pending,
            ActionState::Sent,
            ActionState::Acknowledged,
            ActionState::Done,
        ],
    );
    let blocked = action(&loaded, ActionKind::Sync, &[ActionState::Blocked]);
    loaded.actions = vec![blocked.clone(), done.clone(), sync.clone(), reset.clone()];
    // An inventory Get of an earlier session that was never answered, and an Exec: only the Get
    // goes back in the queue, before what was queued.
    let lost_get = sent(
        DeviceCommand::new(
            CommandId::generate(),
            id,
            None,
            Verb::Get,
            "./DevInfo/Man",
            at,
        ),
        4,
        9,
    );
    let lost_exec = sent(
        DeviceCommand::new(
            CommandId::generate(),
            id,
            None,
            Verb::Exec,
            "./Device/Vendor/MSFT/Reboot/RebootNow",
            at,
        ),
        4,
        10,
    );
    loaded.unanswered = vec![lost_get.clone(), lost_exec];
    loaded.queued = queued_replaces(&loaded, 1, 10);

    let d = decide_next(&loaded, &start(""), T0, &cfg()).unwrap();
    assert_eq!(d.step.requeue, [lost_get.id]);
    assert_eq!(update(&d, reset.id).unwrap().state, ActionState::InProgress);
    assert_eq!(update(&d, sync.id).unwrap().state, ActionState::Done);
    assert!(update(&d, done.id).is_none() && update(&d, blocked.id).is_none());
    assert_eq!(
        enqueued_gets(&d),
        [
            AUTOPILOT_STATUS_URI,
            AUTOPILOT_LAST_ERROR_URI,
            &first_sync_done_uri("Redeploy")
        ],
        "the reset's reads again"
    );
    assert_eq!(audit_actions(&d), ["action.done"]);
    // The requeued Get, the queued Replace and the three reads.
    assert_eq!(d.step.send.as_ref().unwrap().limit, 5);
    assert!(!d.more_follows);
}

#[test]
fn alert_1226_unenrolls_cancels_what_has_not_gone_out_and_sends_nothing() {
    let mut loaded = idle();
    loaded.device.winre_checked_at = None;
    loaded.inventory_read_at = None;
    let pending = action(&loaded, ActionKind::Restart, &[ActionState::Pending]);
    let sent_one = action(
        &loaded,
        ActionKind::Restart,
        &[ActionState::Pending, ActionState::Sent],
    );
    loaded.actions = vec![pending.clone(), sent_one.clone()];
    loaded.queued = queued_replaces(&loaded, 2, 10);

    let d = decide_next(&loaded, &start(UNENROLL), T0, &cfg()).unwrap();
    let canceled = update(&d, pending.id).unwrap();
    assert_eq!(canceled.state, ActionState::Canceled);
    assert!(
        update(&d, sent_one.id).is_none(),
        "what went out cannot be canceled"
    );
    assert_eq!(
        d.step.device_update.as_ref().unwrap().unenrolled_at,
        Some(T0)
    );
    assert_eq!(audit_actions(&d), ["device.unenroll", "action.canceled"]);
    assert!(d.step.send.is_none());
    assert!(d.step.enqueue.is_empty(), "no WinRE read, no inventory");
    // The alert itself is acknowledged.
    assert!(matches!(&d.reply.body.commands[2], Command::Status(s) if s.cmd_ref == "9"));
}

/// 02:00–05:00 in Berlin: T0 (11:00 there) is outside.
fn night_window() -> BatchWindow {
    BatchWindow {
        window: MaintenanceWindow {
            start: time!(2:00),
            end: time!(5:00),
        },
        tz: "Europe/Berlin".parse().unwrap(),
    }
}

/// Whether the last timeline entry of `a` is the note of an action held outside its window.
fn last_note_is_held(a: &Action) -> bool {
    a.timeline
        .last()
        .and_then(|e| e.note.as_deref())
        .is_some_and(|n| n.starts_with(HELD_NOTE_PREFIX))
}

#[test]
fn a_pending_action_outside_its_maintenance_window_is_held_and_noted_once() {
    let window = night_window();
    let inside = datetime!(2026-05-05 0:30 UTC);
    // (case, now, already noted, held, a note added)
    let cases = [
        ("outside", T0, false, true, true),
        ("outside, noted before", T0, true, true, false),
        ("inside", inside, false, false, false),
    ];
    for (case, now, noted, held, note) in cases {
        let mut loaded = idle();
        loaded.inventory_read_at = Some(now - Duration::hours(1));
        let id = loaded.device.id;
        let mut a = action(&loaded, ActionKind::AutopilotReset, &[ActionState::Pending]);
        a.batch = Some(BatchId::generate());
        if noted {
            a.add_note(T0 - Duration::hours(1), window.held_note());
        }
        loaded.queued = baseline_commands(id, a.id, "Redeploy", T0 - Duration::hours(1));
        loaded.pending_windows = vec![(a.id, window)];
        loaded
            .commands_of_action
            .insert(a.id, loaded.queued.clone());
        loaded.actions = vec![a.clone()];

        let d = decide_next(&loaded, &start(""), now, &cfg()).unwrap();
        assert_eq!(d.step.held_actions.contains(&a.id), held, "{case}");
        let new_note = update(&d, a.id)
            .is_some_and(|u| u.timeline.len() > a.timeline.len() && last_note_is_held(u));
        assert_eq!(new_note, note, "{case}");
        let taken = d.step.send.as_ref().map_or(0, |s| s.limit);
        assert_eq!(taken, if held { 0 } else { 4 }, "{case}");
    }
}

#[test]
fn a_reset_sent_again_goes_back_under_its_window() {
    let window = night_window();
    let mut loaded = idle();
    let id = loaded.device.id;
    let batch = BatchId::generate();
    let mut a = action(&loaded, ActionKind::AutopilotReset, &[ActionState::Pending]);
    a.batch = Some(batch);
    let before = crate::action::ResetBaseline {
        status: Some(0),
        last_error: Some(0),
        sync_done: Some(true),
    };
    a.baseline = Some(before);
    a.transition(ActionState::Sent, T0 - Duration::hours(2), None)
        .unwrap();
    // The Exec went out in an earlier session and was never answered; this session's reads say
    // the PC is as before it: the PC never got it.
    let at = T0 - Duration::hours(2);
    let mut exec = sent(reset_exec(&a, at), 2, 5);
    exec.sent_in.as_mut().unwrap().session_id = "s0".into();
    let reads: Vec<DeviceCommand> = status_reads(id, a.id, "Redeploy", T0)
        .into_iter()
        .zip(2..)
        .map(|(c, n)| sent(c, 1, n))
        .collect();
    let mut body = String::new();
    for (c, v) in reads.iter().zip(["0", "0", "true"]) {
        body.push_str(&answer_of(c, 200, Some(v)));
    }
    refer(&mut loaded, &reads);
    let mut cmds = vec![exec];
    cmds.extend(reads);
    loaded.commands_of_action.insert(a.id, cmds);
    loaded.actions = vec![a.clone()];
    loaded.batch_windows.insert(batch, window);

    let d = decide_next(&loaded, &message(2, &body, true), T0, &cfg()).unwrap();
    let moved = update(&d, a.id).unwrap();
    assert_eq!(moved.state, ActionState::Pending, "{:?}", moved.timeline);
    assert!(d.step.held_actions.contains(&a.id));
    assert!(last_note_is_held(moved));
    assert!(d.step.send.is_none(), "its Exec waits for the window");

    // Without a window it goes out at once.
    loaded.batch_windows.clear();
    let d = decide_next(&loaded, &message(2, &body, true), T0, &cfg()).unwrap();
    assert!(d.step.held_actions.is_empty());
    assert_eq!(d.step.send.as_ref().unwrap().limit, 4);
}

#[test]
fn users_come_from_the_first_package() {
    let token = |upn: &str| {
        use base64::Engine as _;
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(format!(r#"{{"upn":"{upn}"}}"#));
        format!("h.{payload}.s")
    };
    let alert = |ty: &str, data: &str| {
        format!(
            r#"<Alert><CmdID>5</CmdID><Data>1224</Data><Item><Meta><Type xmlns="syncml:metinf">{ty}</Type></Meta><Data>{data}</Data></Item></Alert>"#
        )
    };
    let login = alert("com.microsoft/MDM/LoginStatus", "user");
    let aad = alert("com.microsoft/MDM/AADUserToken", &token("bob@contoso.com"));
    let nobody = alert("com.microsoft/MDM/LoginStatus", "none");
    // (case, message, current user, primary user)
    let mut unowned = idle();
    unowned.device.primary_user = None;
    let cases = [
        (
            "token",
            start(&format!("{login}{aad}")),
            Some("bob@contoso.com"),
            Some("ada@contoso.com"),
        ),
        (
            "nobody signed in",
            start(&nobody),
            None,
            Some("ada@contoso.com"),
        ),
        (
            "a later message keeps the user",
            message(2, "", true),
            Some("carol@contoso.com"),
            Some("ada@contoso.com"),
        ),
    ];
    for (case, msg, current, primary) in cases {
        let mut loaded = idle();
        loaded.device.current_user = Some("carol@contoso.com".into());
        let d = decide_next(&loaded, &msg, T0, &cfg()).unwrap();
        assert_eq!(d.step.current_user.as_deref(), current, "{case}");
        let dev = d.step.device_update.as_ref().unwrap();
        assert_eq!(dev.primary_user.as_deref(), primary, "{case}");
    }
    // A PC without a primary user gets the first token's user.
    let d = decide_next(&unowned, &start(&aad), T0, &cfg()).unwrap();
    assert_eq!(
        d.step.device_update.unwrap().primary_user.as_deref(),
        Some("bob@contoso.com")
    );
}

#[test]
fn a_sign_in_is_a_user_the_previous_check_in_did_not_report() {
    let token = {
        use base64::Engine as _;
        let payload =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"upn":"bob@contoso.com"}"#);
        format!("h.{payload}.s")
    };
    let msg = start(&format!(
        r#"<Alert><CmdID>5</CmdID><Data>1224</Data><Item><Meta><Type xmlns="syncml:metinf">com.microsoft/MDM/AADUserToken</Type></Meta><Data>{token}</Data></Item></Alert>"#
    ));
    let mut loaded = idle();
    loaded.device.current_user = None;
    let d = decide_next(&loaded, &msg, T0, &cfg()).unwrap();
    let dev = d.step.device_update.unwrap();
    assert_eq!(dev.last_sign_in_user.as_deref(), Some("bob@contoso.com"));
    assert_eq!(dev.last_sign_in_at, Some(T0));
    // Still signed in at the next check-in: the same sign-in, its time kept.
    let mut loaded = idle();
    loaded.device = dev;
    let later = T0 + time::Duration::hours(1);
    let d = decide_next(&loaded, &msg, later, &cfg()).unwrap();
    let dev = d.step.device_update.unwrap();
    assert_eq!(dev.last_sign_in_at, Some(T0));
}

/// An action of `kind` on the loaded device moved through `states`, each transition at `at`.
fn action_at(
    loaded: &Loaded,
    kind: ActionKind,
    states: &[ActionState],
    at: OffsetDateTime,
) -> Action {
    let mut a = Action::new(
        ActionId::generate(),
        loaded.device.id,
        kind,
        "admin",
        None,
        at,
    );
    for s in states {
        a.transition(*s, at, None).unwrap();
    }
    a
}

#[test]
fn when_the_reset_watch_reads_is_sync_done() {
    use ActionState::*;
    // (case, edit of the idle PC (IsSyncDone read true 30 minutes ago), IsSyncDone asked)
    type Edit = fn(&mut Loaded);
    let never: Edit = |l| l.sync_done_read = None;
    let cases: Vec<(&str, Edit, bool)> = vec![
        ("read 30 minutes ago", |_| {}, false),
        ("never read (a fresh enrollment)", never, true),
        (
            "read an hour ago",
            |l| l.sync_done_read.as_mut().unwrap().at = T0 - Duration::hours(1),
            true,
        ),
        (
            "read an hour ago, false",
            |l| {
                let r = l.sync_done_read.as_mut().unwrap();
                r.at = T0 - Duration::hours(1);
                r.value = "false".into();
            },
            true,
        ),
        (
            "never read, a reset of ours pending: its flow owns the node",
            |l| {
                l.sync_done_read = None;
                let a = action(l, ActionKind::AutopilotReset, &[Pending]);
                l.actions.push(a);
            },
            false,
        ),
        (
            "never read, a reset of ours in progress",
            |l| {
                l.sync_done_read = None;
                let a = action(l, ActionKind::AutopilotReset, &[Pending, Sent, InProgress]);
                l.actions.push(a);
            },
            false,
        ),
        (
            "never read, a wipe of ours acknowledged",
            |l| {
                l.sync_done_read = None;
                let a = action(
                    l,
                    ActionKind::WipeKeepUserData,
                    &[Pending, Sent, Acknowledged],
                );
                l.actions.push(a);
            },
            false,
        ),
        (
            "never read, a reset of ours done",
            |l| {
                l.sync_done_read = None;
                let a = action(l, ActionKind::AutopilotReset, &[Pending, Sent, Done]);
                l.actions.push(a);
            },
            true,
        ),
        (
            "never read, a reset blocked by preflight (it never goes out)",
            |l| {
                l.sync_done_read = None;
                let a = action(l, ActionKind::AutopilotReset, &[Blocked]);
                l.actions.push(a);
            },
            true,
        ),
        (
            "never read, a restart pending (not a reset)",
            |l| {
                l.sync_done_read = None;
                let a = action(l, ActionKind::Restart, &[Pending]);
                l.actions.push(a);
            },
            true,
        ),
        (
            "never read, already queued",
            |l| {
                l.sync_done_read = None;
                let id = l.device.id;
                let get = DeviceCommand::new(
                    CommandId::generate(),
                    id,
                    None,
                    Verb::Get,
                    first_sync_done_uri("Redeploy"),
                    T0,
                );
                l.queued.push(get);
            },
            false,
        ),
        (
            "never read, the device unenrolled earlier",
            |l| {
                l.sync_done_read = None;
                l.device.unenrolled_at = Some(T0 - Duration::days(1));
            },
            false,
        ),
    ];
    let uri = first_sync_done_uri("Redeploy");
    for (case, edit, asked) in cases {
        let mut loaded = idle();
        edit(&mut loaded);
        let d = decide_next(&loaded, &start(""), T0, &cfg()).unwrap();
        // The watch's own Get has no action (a reset's follow-up reads the node as its own).
        let asks = d
            .step
            .enqueue
            .iter()
            .any(|c| c.verb == Verb::Get && c.uri == uri && c.action.is_none());
        assert_eq!(asks, asked, "{case}: {:?}", enqueued_gets(&d));
        if asked {
            assert_eq!(enqueued_gets(&d), [uri.as_str()], "{case}: only that");
        }
    }
    // A zero interval reads it at every session start; never at an unenrollment.
    let zero = SessionConfig {
        reset_watch_interval: Duration::ZERO,
        ..cfg()
    };
    let d = decide_next(&idle(), &start(""), T0, &zero).unwrap();
    assert_eq!(enqueued_gets(&d), [uri.as_str()]);
    let d = decide_next(&idle(), &start(UNENROLL), T0, &zero).unwrap();
    assert!(d.step.enqueue.is_empty());
    // Not asked in a later message of the session.
    let d = decide_next(&idle(), &message(2, "", true), T0, &zero).unwrap();
    assert!(d.step.enqueue.is_empty());
}

#[test]
fn what_an_answer_of_the_reset_watch_means() {
    use ActionState::*;
    // (case, stored value before the answer and how long ago it was read, the device's Status
    //  and value for the Get, our actions as (kind, states, how long ago), re-armed, observed)
    type Actions<'a> = &'a [(ActionKind, &'a [ActionState], i64)];
    type Case<'a> = (
        &'a str,
        Option<(&'a str, i64)>,
        u16,
        &'a str,
        Actions<'a>,
        bool,
        bool,
    );
    const RESET: ActionKind = ActionKind::AutopilotReset;
    let cases: [Case; 14] = [
        (
            "true -> false: a reset we did not send",
            Some(("true", 60)),
            200,
            "false",
            &[],
            true,
            true,
        ),
        (
            "true -> false, answered as 0",
            Some(("true", 60)),
            200,
            "0",
            &[],
            true,
            true,
        ),
        (
            "none -> false: a fresh enrollment",
            None,
            200,
            "false",
            &[],
            true,
            false,
        ),
        (
            "false -> false: not armed yet, arm it",
            Some(("false", 60)),
            200,
            "false",
            &[],
            true,
            false,
        ),
        (
            "true -> true: armed, nothing to do",
            Some(("true", 60)),
            200,
            "true",
            &[],
            false,
            false,
        ),
        ("none -> true", None, 200, "true", &[], false, false),
        (
            "no such node",
            Some(("true", 60)),
            404,
            "false",
            &[],
            false,
            false,
        ),
        (
            "true -> false while a reset of ours is in flight: never local",
            Some(("true", 60)),
            200,
            "false",
            &[(RESET, &[Pending, Sent, Acknowledged], 30)],
            false,
            false,
        ),
        (
            "true -> false while a reset of ours waits for its baseline",
            Some(("true", 60)),
            200,
            "false",
            &[(RESET, &[Pending], 30)],
            false,
            false,
        ),
        (
            "true -> false, our reset went out after the true and settled",
            Some(("true", 60)),
            200,
            "false",
            &[(RESET, &[Pending, Sent, Done], 30)],
            true,
            false,
        ),
        (
            "true -> false, a wipe of ours went out after the true",
            Some(("true", 60)),
            200,
            "false",
            &[(ActionKind::WipeKeepUserData, &[Pending, Sent, Failed], 30)],
            true,
            false,
        ),
        (
            "true -> false, our reset went out before the true but expired unanswered after it",
            Some(("true", 60)),
            200,
            "false",
            &[
                (RESET, &[Pending, Sent, Acknowledged, InProgress], 120),
                (RESET, &[], 30),
            ],
            true,
            false,
        ),
        (
            "true -> false, our reset settled before the true",
            Some(("true", 60)),
            200,
            "false",
            &[(RESET, &[Pending, Sent, Done], 120)],
            true,
            true,
        ),
        (
            "true -> false, a reset of ours blocked after the true (never sent)",
            Some(("true", 60)),
            200,
            "false",
            &[(RESET, &[Blocked], 30)],
            true,
            true,
        ),
    ];
    let uri = first_sync_done_uri("Redeploy");
    for (case, previous, code, value, actions, rearmed, observed) in cases {
        let mut loaded = idle();
        let id = loaded.device.id;
        loaded.sync_done_read =
            previous.map(|(v, ago)| sync_done_read(id, v, T0 - Duration::minutes(ago)));
        for (kind, states, ago) in actions {
            let at = T0 - Duration::minutes(*ago);
            if states.is_empty() {
                // The one before, expired now (its last entry moved to `ago`).
                let mut a = loaded.actions.pop().unwrap();
                a.transition(Expired, at, Some("no answer")).unwrap();
                loaded.actions.push(a);
                continue;
            }
            let a = action_at(&loaded, *kind, states, at);
            loaded.actions.push(a);
        }
        // The watch's Get went out in our message 1 of this session; the PC answers in its 2.
        let get = sent(
            DeviceCommand::new(CommandId::generate(), id, None, Verb::Get, uri.clone(), T0),
            1,
            5,
        );
        refer(&mut loaded, std::slice::from_ref(&get));
        let msg = message(2, &answer_of(&get, code, Some(value)), true);
        let d = decide_next(&loaded, &msg, T0, &cfg()).unwrap();

        let enqueued: Vec<(Verb, &str, Option<&str>)> = d
            .step
            .enqueue
            .iter()
            .map(|c| (c.verb, c.uri.as_str(), c.data.as_deref()))
            .collect();
        let want: Vec<(Verb, &str, Option<&str>)> = if rearmed {
            vec![
                (Verb::Replace, uri.as_str(), Some("true")),
                (Verb::Get, uri.as_str(), None),
            ]
        } else {
            vec![]
        };
        assert_eq!(enqueued, want, "{case}");
        if rearmed {
            let replace = &d.step.enqueue[0];
            assert_eq!(replace.format.as_deref(), Some("bool"), "{case}");
            assert!(replace.action.is_none(), "{case}");
            assert_eq!(d.step.send.as_ref().unwrap().limit, 2, "{case}: sent now");
        }
        assert_eq!(d.step.new_actions.len(), usize::from(observed), "{case}");
        let audits = audit_actions(&d);
        assert_eq!(
            audits.contains(&"device.local_reset_observed"),
            observed,
            "{case}: {audits:?}"
        );
        if observed {
            let a = &d.step.new_actions[0];
            assert_eq!(
                (a.kind, a.state, a.device, a.requested_by.as_str()),
                (RESET, Done, id, "device (local reset)"),
                "{case}"
            );
            assert_eq!(a.timeline.len(), 1, "{case}");
            let note = a.timeline[0].note.as_deref().unwrap();
            assert!(
                note.contains("IsSyncDone went from true to false"),
                "{case}: {note}"
            );
            let e = &d.audits[0];
            assert_eq!(e.actor, format!("device:{id}"), "{case}");
            assert_eq!(e.targets, [id], "{case}");
            assert!(e.details.contains(&a.id.to_string()), "{case}");
        }
        // A local reset keeps the primary user.
        let dev = d.step.device_update.as_ref().unwrap_or(&loaded.device);
        assert_eq!(
            dev.primary_user.as_deref(),
            Some("ada@contoso.com"),
            "{case}"
        );
        // The answer is the new stored value (when the PC answered it).
        let stored: Vec<&str> = d
            .step
            .inventory
            .iter()
            .filter(|v| v.uri == uri)
            .map(|v| v.value.as_str())
            .collect();
        let want: &[&str] = if code == 200 { &[value] } else { &[] };
        assert_eq!(stored, want, "{case}");
    }
}

/// A remote reset of ours, from its request to the check-in after it settled, never reads as a
/// local one: the watch stays out while it is active, and the `false` it left is no evidence.
#[test]
fn a_remote_reset_is_never_reported_as_local() {
    use ActionState::*;
    let uri = first_sync_done_uri("Redeploy");
    let zero = SessionConfig {
        reset_watch_interval: Duration::ZERO,
        ..cfg()
    };
    let mut loaded = idle();
    let id = loaded.device.id;
    // Its baseline read true, its Exec went out; the PC reset; the follow-up read false: done.
    let at = T0 - Duration::minutes(20);
    let mut reset = action_at(&loaded, ActionKind::AutopilotReset, &[Pending, Sent], at);
    loaded.sync_done_read = Some(sync_done_read(id, "true", at));
    loaded.actions = vec![reset.clone()];
    let d = decide_next(&loaded, &start(""), T0, &zero).unwrap();
    assert!(
        !enqueued_gets(&d).is_empty() && d.step.enqueue.iter().all(|c| c.action == Some(reset.id)),
        "only the reset's own reads while it is active"
    );
    reset
        .transition(Done, T0 - Duration::minutes(10), None)
        .unwrap();
    loaded.actions = vec![reset];
    loaded.sync_done_read = Some(sync_done_read(id, "false", T0 - Duration::minutes(10)));
    // The next session start asks; the answer false re-arms and reports nothing.
    let d = decide_next(&loaded, &start(""), T0, &zero).unwrap();
    assert_eq!(enqueued_gets(&d), [uri.as_str()]);
    let get = sent(d.step.enqueue[0].clone(), 1, 3);
    refer(&mut loaded, std::slice::from_ref(&get));
    let d = decide_next(
        &loaded,
        &message(2, &answer_of(&get, 200, Some("false")), true),
        T0,
        &zero,
    )
    .unwrap();
    assert!(d.step.new_actions.is_empty() && d.audits.is_empty());
    assert_eq!(d.step.enqueue.len(), 2, "re-armed");
}
