//! Actions: preflight, queueing, and the Autopilot Reset lifecycle driven by scripted device
//! messages through the session engine.

use std::collections::HashMap;

use redeploy_core::action::{self, ActionSettings};
use redeploy_core::command::{CommandState, AUTOPILOT_LAST_ERROR_URI, AUTOPILOT_STATUS_URI};
use redeploy_core::{Action, ActionKind, ActionState};
use time::{Duration, OffsetDateTime};

use crate::harness::*;

const DO_RESET: &str =
    "./Device/Vendor/MSFT/RemoteWipe/AutomaticRedeployment/doAutomaticRedeployment";

async fn request(env: &Env, kind: ActionKind, at: OffsetDateTime) -> Action {
    action::request(
        &env.store,
        env.device,
        kind,
        "admin",
        at,
        &ActionSettings::default(),
    )
    .await
    .unwrap()
}

async fn reload(env: &Env, a: &Action) -> Action {
    env.store.action(a.id).await.unwrap().unwrap()
}

fn states(a: &Action) -> Vec<ActionState> {
    a.timeline.iter().map(|e| e.state).collect()
}

fn nodes_with(
    status: &'static str,
    last_error: &'static str,
) -> HashMap<&'static str, &'static str> {
    let mut n = pc_nodes();
    n.insert(AUTOPILOT_STATUS_URI, status);
    n.insert(AUTOPILOT_LAST_ERROR_URI, last_error);
    n
}

/// Status, LastError and IsSyncDone as the PC reports them.
fn reset_nodes(
    status: &'static str,
    last_error: &'static str,
    sync_done: &'static str,
) -> HashMap<&'static str, &'static str> {
    let mut n = nodes_with(status, last_error);
    n.insert(SYNC_DONE, sync_done);
    n
}

const BASELINE_READS: [(&str, &str); 4] = [
    ("Replace", SYNC_DONE),
    ("Get", AUTOPILOT_STATUS_URI),
    ("Get", AUTOPILOT_LAST_ERROR_URI),
    ("Get", SYNC_DONE),
];
const EXEC_THEN_READS: [(&str, &str); 4] = [
    ("Exec", DO_RESET),
    ("Get", AUTOPILOT_STATUS_URI),
    ("Get", AUTOPILOT_LAST_ERROR_URI),
    ("Get", SYNC_DONE),
];

fn pairs(list: &[(&str, &str)]) -> Vec<(&'static str, String)> {
    list.iter()
        .map(|(v, u)| {
            let v: &'static str = match *v {
                "Replace" => "Replace",
                "Get" => "Get",
                _ => "Exec",
            };
            (v, u.to_string())
        })
        .collect()
}

fn sorted(mut v: Vec<(&'static str, String)>) -> Vec<(&'static str, String)> {
    v.sort();
    v
}

/// Requests a reset and runs the session that reads its baseline from `baseline` and sends the
/// Exec; returns that session's last reply (the one carrying the Exec and the reads after it).
async fn reset_sent(
    env: &Env,
    session: &str,
    at: OffsetDateTime,
    baseline: &HashMap<&'static str, &'static str>,
) -> (Action, syncml::SyncMl) {
    let action = request(env, ActionKind::AutopilotReset, at).await;
    assert_eq!(action.state, ActionState::Pending);
    let r1 = env.send(&start(session, ""), at).await;
    assert_eq!(
        verbs_and_uris(&r1),
        pairs(&BASELINE_READS),
        "baseline first"
    );
    assert_eq!(
        reload(env, &action).await.state,
        ActionState::Pending,
        "reading the baseline changes nothing on the PC"
    );
    let r2 = env
        .send(&answer(session, 2, &r1, baseline, 200, ""), at)
        .await;
    assert_eq!(
        verbs_and_uris(&r2),
        pairs(&EXEC_THEN_READS),
        "then the Exec, in the same session"
    );
    let exec = &ours(&r2)[0];
    assert!(exec.1.parse::<u32>().is_ok(), "numeric CmdID");
    (action, r2)
}

#[tokio::test]
async fn autopilot_reset_runs_its_whole_lifecycle_and_clears_the_primary_user() {
    let env = env().await;
    env.edit(|d| d.primary_user = Some("ada@contoso.com".into()))
        .await;
    // First session reads inventory; the reset is requested afterwards.
    check_in(&env, "1", T0, &pc_nodes()).await;
    let t1 = T0 + Duration::minutes(5);
    let t2 = t1 + Duration::minutes(10);
    let (action, r2) = reset_sent(&env, "2", t2, &pc_nodes()).await;
    let a = reload(&env, &action).await;
    assert_eq!(a.state, ActionState::Sent);
    assert_eq!(
        a.baseline.map(|b| (b.status, b.last_error, b.sync_done)),
        Some((Some(0), Some(0), Some(true)))
    );

    // 200 and Status 10 in the same message: acknowledged, in progress. Then the device goes
    // silent (it is resetting).
    let r3 = env
        .send(
            &answer("2", 3, &r2, &reset_nodes("10", "0", "true"), 200, ""),
            t2,
        )
        .await;
    assert!(ours(&r3).is_empty());
    let a = reload(&env, &action).await;
    assert_eq!(a.state, ActionState::InProgress);
    assert_eq!(
        env.device().await.primary_user.as_deref(),
        Some("ada@contoso.com")
    );

    // It comes back 40 minutes later (reusing the SessionID of the Exec's session, as a PC
    // whose counters were reset might): the engine reads the status nodes, never re-executes.
    let t3 = t2 + Duration::minutes(40);
    let back = env.send(&start("2", ""), t3).await;
    let uris: Vec<String> = ours(&back).into_iter().map(|c| c.2).collect();
    assert!(uris.contains(&AUTOPILOT_STATUS_URI.to_owned()));
    assert!(!uris.contains(&DO_RESET.to_owned()), "never executed twice");
    env.send(
        &answer("2", 2, &back, &reset_nodes("1", "0", "false"), 200, ""),
        t3,
    )
    .await;
    let a = reload(&env, &action).await;
    assert_eq!(a.state, ActionState::Done);
    let mut distinct = states(&a);
    distinct.dedup();
    assert_eq!(
        distinct,
        [
            ActionState::Requested,
            ActionState::Pending,
            ActionState::Sent,
            ActionState::Acknowledged,
            ActionState::InProgress,
            ActionState::Done
        ]
    );
    assert_eq!(a.timeline.last().unwrap().at, t3);
    assert!(a
        .timeline
        .last()
        .unwrap()
        .note
        .as_deref()
        .unwrap()
        .contains("came back"));
    let d = env.device().await;
    assert_eq!(
        d.primary_user, None,
        "a remote reset clears the primary user"
    );
    assert_eq!(d.autopilot_status, Some(1));

    // The next user who signs in becomes primary.
    let tok = {
        use base64::Engine;
        let e = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        format!(
            "{}.{}.{}",
            e(b"{}"),
            e(br#"{"upn":"bob@contoso.com"}"#),
            e(b"s")
        )
    };
    env.send(
        &start("2", &alert_1224(3, "com.microsoft/MDM/AADUserToken", &tok)),
        t3 + Duration::minutes(5),
    )
    .await;
    assert_eq!(
        env.device().await.primary_user.as_deref(),
        Some("bob@contoso.com")
    );
}

#[tokio::test]
async fn winre_disabled_fails_the_reset_then_reagentc_enable_makes_it_eligible_again() {
    let env = env().await;
    check_in(&env, "1", T0, &pc_nodes()).await;
    let (action, r2) = reset_sent(&env, "2", T0, &pc_nodes()).await;
    // The Exec fails right away (500); the reads after it in the same message say Status 30,
    // LastError 0x80070032 as a signed int.
    let r3 = env
        .send(
            &answer(
                "2",
                3,
                &r2,
                &reset_nodes("30", "-2147024846", "true"),
                500,
                "",
            ),
            T0,
        )
        .await;
    assert!(ours(&r3).is_empty());
    let a = reload(&env, &action).await;
    assert_eq!(a.state, ActionState::Failed);
    assert_eq!(a.last_error_text().as_deref(), Some("0x80070032"));
    let reason = a.reason.unwrap();
    assert!(reason.contains("WinRE is disabled"), "{reason}");
    assert!(reason.contains("reagentc.exe /enable"), "{reason}");

    // Preflight refuses another reset while the PC does not report WinRE enabled since.
    let again = request(&env, ActionKind::AutopilotReset, T0 + Duration::minutes(1)).await;
    assert_eq!(again.state, ActionState::Blocked);
    assert!(again.reason.unwrap().contains("WinRE"));
    let mut disabled = reset_nodes("30", "-2147024846", "true");
    disabled.insert(redeploy_core::command::WINRE_STATUS_URI, "4096");
    check_in(&env, "3", T0 + Duration::minutes(2), &disabled).await;
    assert_eq!(env.device().await.winre_enabled, Some(false));
    let still = request(&env, ActionKind::AutopilotReset, T0 + Duration::minutes(3)).await;
    assert_eq!(still.state, ActionState::Blocked);

    // `reagentc /enable` on the PC: bit 12 clears; at its next check-in it is eligible again.
    let mut enabled = reset_nodes("30", "-2147024846", "true");
    enabled.insert(redeploy_core::command::WINRE_STATUS_URI, "0");
    check_in(&env, "4", T0 + Duration::minutes(4), &enabled).await;
    assert_eq!(env.device().await.winre_enabled, Some(true));
    let t = T0 + Duration::minutes(5);
    let (retry, r2) = reset_sent(&env, "5", t, &enabled).await;
    env.send(
        &answer("5", 3, &r2, &reset_nodes("10", "0", "true"), 200, ""),
        t,
    )
    .await;
    let back = env.send(&start("6", ""), t + Duration::minutes(30)).await;
    env.send(
        &answer("6", 2, &back, &reset_nodes("1", "0", "false"), 200, ""),
        t + Duration::minutes(30),
    )
    .await;
    assert_eq!(reload(&env, &retry).await.state, ActionState::Done);
}

#[tokio::test]
async fn an_exec_lost_with_its_session_is_resent_only_when_the_pc_shows_it_never_ran() {
    // The Exec went out (committed), then the connection dropped: neither its Status nor the
    // reads after it came back. What the PC reports at its next session decides.
    async fn lost_exec(
        baseline: HashMap<&'static str, &'static str>,
        next: HashMap<&'static str, &'static str>,
    ) -> (Env, Action, syncml::SyncMl) {
        let env = env().await;
        check_in(&env, "1", T0, &baseline).await;
        let (action, _lost) = reset_sent(&env, "2", T0, &baseline).await;
        assert_eq!(reload(&env, &action).await.state, ActionState::Sent);
        let t = T0 + Duration::hours(1);
        let r = env.send(&start("3", ""), t).await;
        assert_eq!(
            sorted(verbs_and_uris(&r)),
            sorted(pairs(&EXEC_THEN_READS[1..])),
            "the status nodes are read first; no Exec"
        );
        assert_eq!(reload(&env, &action).await.state, ActionState::Sent);
        let r = env.send(&answer("3", 2, &r, &next, 200, ""), t).await;
        (env, action, r)
    }

    // Unchanged (Status 0, IsSyncDone still true): it never got it → sent again now.
    let (env, action, r) = lost_exec(pc_nodes(), reset_nodes("0", "0", "true")).await;
    assert_eq!(verbs_and_uris(&r), pairs(&EXEC_THEN_READS));
    let a = reload(&env, &action).await;
    assert_eq!(a.state, ActionState::Sent);
    assert!(states(&a).contains(&ActionState::Pending));

    // A STALE Status 1 from an earlier reset is not "done": unchanged since the baseline, so
    // the Exec never ran → sent again (the false "done" of issue 11).
    let (env, action, r) =
        lost_exec(reset_nodes("1", "0", "true"), reset_nodes("1", "0", "true")).await;
    assert_eq!(verbs_and_uris(&r), pairs(&EXEC_THEN_READS));
    assert_ne!(reload(&env, &action).await.state, ActionState::Done);

    // The PC did run it (Status 1 again, but IsSyncDone false: it went through its first sync
    // again): done, and never executed a second time.
    let (env, action, r) = lost_exec(
        reset_nodes("1", "0", "true"),
        reset_nodes("1", "0", "false"),
    )
    .await;
    assert!(ours(&r).is_empty(), "never executed twice");
    assert_eq!(reload(&env, &action).await.state, ActionState::Done);

    // Still scheduled (20): in progress, nothing re-sent.
    let (env, action, r) = lost_exec(pc_nodes(), reset_nodes("20", "0", "true")).await;
    assert!(ours(&r).is_empty());
    assert_eq!(reload(&env, &action).await.state, ActionState::InProgress);

    // A stale failure (50 from an earlier attempt) is not a failure of this one.
    let (env, action, r) = lost_exec(
        reset_nodes("50", "-2147467259", "true"),
        reset_nodes("50", "-2147467259", "true"),
    )
    .await;
    assert_eq!(verbs_and_uris(&r), pairs(&EXEC_THEN_READS));
    assert_eq!(reload(&env, &action).await.state, ActionState::Sent);
}

#[tokio::test]
async fn a_hybrid_joined_device_is_blocked_by_preflight_with_the_reason() {
    let env = env().await;
    let mut nodes = pc_nodes();
    nodes.insert("./Vendor/MSFT/DeviceStatus/DomainName", "corp.contoso.com");
    check_in(&env, "1", T0, &nodes).await;
    assert_eq!(
        env.device().await.join_type,
        redeploy_core::JoinType::HybridJoined
    );
    let a = request(&env, ActionKind::AutopilotReset, T0).await;
    assert_eq!(a.state, ActionState::Blocked);
    assert!(
        a.reason.as_deref().unwrap().contains("hybrid"),
        "{:?}",
        a.reason
    );
    let r = env.send(&start("2", ""), T0 + Duration::minutes(1)).await;
    assert!(ours(&r).is_empty(), "nothing queued for a blocked action");
}

#[tokio::test]
async fn a_wipe_cancels_a_pending_reset_and_only_the_wipe_goes_out() {
    let env = env().await;
    check_in(&env, "1", T0, &pc_nodes()).await;
    let reset = request(&env, ActionKind::AutopilotReset, T0).await;
    let second = request(&env, ActionKind::AutopilotReset, T0).await;
    assert_eq!(
        second.state,
        ActionState::Blocked,
        "never two active resets"
    );
    let wipe = request(&env, ActionKind::Wipe, T0).await;
    assert_eq!(wipe.state, ActionState::Pending);
    let r = reload(&env, &reset).await;
    assert_eq!(r.state, ActionState::Canceled);
    let cmds = env.store.commands_of_action(reset.id).await.unwrap();
    assert!(cmds.iter().all(|c| c.state != CommandState::Queued));
    let reply = env.send(&start("2", ""), T0).await;
    let uris: Vec<String> = ours(&reply).into_iter().map(|c| c.2).collect();
    assert_eq!(uris, ["./Device/Vendor/MSFT/RemoteWipe/doWipe"]);
}

#[tokio::test]
async fn cancel_retry_and_expiry() {
    let env = env().await;
    check_in(&env, "1", T0, &pc_nodes()).await;
    let a = request(&env, ActionKind::Restart, T0).await;
    let c = action::cancel(&env.store, a.id, "admin", T0).await.unwrap();
    assert_eq!(c.state, ActionState::Canceled);
    assert!(ours(&env.send(&start("2", ""), T0).await).is_empty());
    let b = action::retry(
        &env.store,
        a.id,
        "admin",
        T0,
        &ActionSettings::default(),
        None,
    )
    .await
    .unwrap();
    assert_eq!(b.state, ActionState::Pending);
    assert_ne!(b.id, a.id);
    // Sent but the device never comes back: expired after the window, not before.
    env.send(&start("3", ""), T0).await;
    assert_eq!(reload(&env, &b).await.state, ActionState::Sent);
    assert!(action::cancel(&env.store, b.id, "admin", T0).await.is_err());
    let none = action::expire_stuck(&env.store, T0 + Duration::hours(1), Duration::days(3))
        .await
        .unwrap();
    assert!(none.is_empty());
    let gone = action::expire_stuck(&env.store, T0 + Duration::days(4), Duration::days(3))
        .await
        .unwrap();
    assert_eq!(gone.iter().map(|a| a.id).collect::<Vec<_>>(), [b.id]);
    assert_eq!(reload(&env, &b).await.state, ActionState::Expired);
}

#[tokio::test]
async fn local_reset_policy_is_replaced_then_read_back() {
    let env = env().await;
    check_in(&env, "1", T0, &pc_nodes()).await;
    let a = request(&env, ActionKind::SetLocalResetPolicy(true), T0).await;
    let r = env.send(&start("2", ""), T0).await;
    let cmds = ours(&r);
    let policy = redeploy_core::command::LOCAL_RESET_POLICY_URI;
    assert_eq!(
        cmds.iter().map(|c| (c.0, c.2.as_str())).collect::<Vec<_>>(),
        [("Replace", policy), ("Get", policy)]
    );
    let mut nodes = pc_nodes();
    nodes.insert(policy, "0");
    env.send(&answer("2", 2, &r, &nodes, 200, ""), T0).await;
    assert_eq!(reload(&env, &a).await.state, ActionState::Done);
    let d = env.device().await;
    assert_eq!(
        (d.local_reset_desired, d.local_reset_reported),
        (Some(true), Some(true))
    );
}

#[tokio::test]
async fn restart_sync_and_retire_finish_from_the_devices_answers() {
    let env = env().await;
    check_in(&env, "1", T0, &pc_nodes()).await;
    let restart = request(&env, ActionKind::Restart, T0).await;
    let sync = request(&env, ActionKind::Sync, T0).await;
    let r = env.send(&start("2", ""), T0).await;
    assert_eq!(
        ours(&r).into_iter().map(|c| c.2).collect::<Vec<_>>(),
        ["./Device/Vendor/MSFT/Reboot/RebootNow"]
    );
    assert_eq!(
        reload(&env, &sync).await.state,
        ActionState::Done,
        "the check-in is the sync"
    );
    env.send(&answer("2", 2, &r, &pc_nodes(), 200, ""), T0)
        .await;
    assert_eq!(
        reload(&env, &restart).await.state,
        ActionState::Acknowledged
    );
    // It rebooted and checks in again.
    let t = T0 + Duration::minutes(3);
    check_in(&env, "3", t, &pc_nodes()).await;
    assert_eq!(reload(&env, &restart).await.state, ActionState::Done);

    let retire = request(&env, ActionKind::Retire, t).await;
    let r = env.send(&start("4", ""), t).await;
    let cmds = ours(&r);
    assert_eq!(
        (cmds[0].0, cmds[0].2.as_str()),
        (
            "Exec",
            "./Device/Vendor/MSFT/DMClient/Provider/Redeploy/Unenroll"
        )
    );
    env.send(&answer("4", 2, &r, &pc_nodes(), 200, ""), t).await;
    assert_eq!(reload(&env, &retire).await.state, ActionState::Done);
    assert_eq!(env.device().await.unenrolled_at, Some(t));
}

#[tokio::test]
async fn a_retry_with_a_reason_overrides_the_winre_block_and_is_audited() {
    let env = env().await;
    check_in(&env, "1", T0, &pc_nodes()).await;
    let (failed, r2) = reset_sent(&env, "2", T0, &pc_nodes()).await;
    env.send(
        &answer(
            "2",
            3,
            &r2,
            &reset_nodes("30", "-2147024846", "true"),
            500,
            "",
        ),
        T0,
    )
    .await;
    assert_eq!(reload(&env, &failed).await.state, ActionState::Failed);
    let settings = ActionSettings::default();

    // Without a reason: preflight blocks it (the PC never reported WinRE enabled since).
    let plain = action::retry(&env.store, failed.id, "ops", T0, &settings, None)
        .await
        .unwrap();
    assert_eq!(plain.state, ActionState::Blocked);

    // With one: queued, the reason in its timeline and in the audit log.
    let why = "ran reagentc /enable on site, BitLocker status not reported";
    let forced = action::retry(&env.store, failed.id, "ops", T0, &settings, Some(why))
        .await
        .unwrap();
    assert_eq!(forced.state, ActionState::Pending, "{:?}", forced.reason);
    assert!(forced
        .timeline
        .iter()
        .any(|e| e.note.as_deref().is_some_and(|n| n.contains(why))));
    let audit = env
        .store
        .list_audit(&redeploy_core::store::AuditQuery::default())
        .await
        .unwrap();
    assert!(audit
        .iter()
        .any(|e| e.action == "action.retry" && e.actor == "ops" && e.details.contains(why)));
    // Every other preflight reason still holds: a second forced retry is blocked by the first.
    let again = action::retry(&env.store, failed.id, "ops", T0, &settings, Some(why))
        .await
        .unwrap();
    assert_eq!(again.state, ActionState::Blocked);
}
