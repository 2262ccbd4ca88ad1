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

#[tokio::test]
async fn autopilot_reset_runs_its_whole_lifecycle_and_clears_the_primary_user() {
    let env = env().await;
    env.edit(|d| d.primary_user = Some("ada@contoso.com".into()))
        .await;
    // First session reads inventory; the reset is requested afterwards.
    check_in(&env, "1", T0, &pc_nodes()).await;
    let t1 = T0 + Duration::minutes(5);
    let action = request(&env, ActionKind::AutopilotReset, t1).await;
    assert_eq!(action.state, ActionState::Pending);

    // Next check-in: the Exec goes out, top level, numeric CmdID, no Data.
    let t2 = t1 + Duration::minutes(10);
    let r1 = env.send(&start("2", ""), t2).await;
    let cmds = commands(&r1);
    assert_eq!(cmds.len(), 1);
    assert_eq!((cmds[0].0, cmds[0].2.as_str()), ("Exec", DO_RESET));
    assert!(cmds[0].1.parse::<u32>().is_ok());
    assert_eq!(reload(&env, &action).await.state, ActionState::Sent);

    // 200 → acknowledged; the engine asks for the Status node right away.
    let r2 = env
        .send(&answer("2", 2, &r1, &pc_nodes(), 200, ""), t2)
        .await;
    assert_eq!(reload(&env, &action).await.state, ActionState::Acknowledged);
    let uris: Vec<String> = commands(&r2).into_iter().map(|c| c.2).collect();
    assert_eq!(uris, [AUTOPILOT_STATUS_URI, AUTOPILOT_LAST_ERROR_URI]);

    // Status 10: scheduled → in progress. Then the device goes silent (it is resetting).
    let r3 = env
        .send(&answer("2", 3, &r2, &nodes_with("10", "0"), 200, ""), t2)
        .await;
    assert!(commands(&r3).is_empty());
    let a = reload(&env, &action).await;
    assert_eq!(a.state, ActionState::InProgress);
    assert_eq!(
        env.device().await.primary_user.as_deref(),
        Some("ada@contoso.com")
    );

    // It comes back 40 minutes later (reusing the SessionID of the Exec's session, as a PC
    // whose counters were reset might): the engine reads Status/LastError first.
    let t3 = t2 + Duration::minutes(40);
    let back = env.send(&start("2", ""), t3).await;
    let uris: Vec<String> = commands(&back).into_iter().map(|c| c.2).collect();
    assert!(uris.contains(&AUTOPILOT_STATUS_URI.to_owned()));
    assert!(!uris.contains(&DO_RESET.to_owned()), "never executed twice");
    env.send(&answer("2", 2, &back, &nodes_with("1", "0"), 200, ""), t3)
        .await;
    let a = reload(&env, &action).await;
    assert_eq!(a.state, ActionState::Done);
    assert_eq!(
        states(&a),
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
async fn winre_disabled_fails_the_reset_with_the_reason_and_the_fix() {
    let env = env().await;
    check_in(&env, "1", T0, &pc_nodes()).await;
    let action = request(&env, ActionKind::AutopilotReset, T0).await;
    let r1 = env.send(&start("2", ""), T0).await;
    // The Exec fails right away (500); Status 30, LastError 0x80070032 as a signed int.
    let r2 = env
        .send(&answer("2", 2, &r1, &pc_nodes(), 500, ""), T0)
        .await;
    let uris: Vec<String> = commands(&r2).into_iter().map(|c| c.2).collect();
    assert_eq!(uris, [AUTOPILOT_STATUS_URI, AUTOPILOT_LAST_ERROR_URI]);
    env.send(
        &answer("2", 3, &r2, &nodes_with("30", "-2147024846"), 200, ""),
        T0,
    )
    .await;
    let a = reload(&env, &action).await;
    assert_eq!(a.state, ActionState::Failed);
    assert_eq!(a.last_error_text().as_deref(), Some("0x80070032"));
    let reason = a.reason.unwrap();
    assert!(reason.contains("WinRE is disabled"), "{reason}");
    assert!(reason.contains("reagentc.exe /enable"), "{reason}");

    // Preflight now refuses another reset until WinRE is fixed and a reset succeeds.
    let again = request(&env, ActionKind::AutopilotReset, T0 + Duration::minutes(1)).await;
    assert_eq!(again.state, ActionState::Blocked);
    assert!(again.reason.unwrap().contains("WinRE"));
}

#[tokio::test]
async fn an_exec_lost_with_its_session_is_never_resent_before_the_status_is_read() {
    let env = env().await;
    check_in(&env, "1", T0, &pc_nodes()).await;
    let action = request(&env, ActionKind::AutopilotReset, T0).await;
    let r1 = env.send(&start("2", ""), T0).await;
    assert_eq!(commands(&r1)[0].2, DO_RESET);
    // The device never answers (the connection dropped). Next session:
    let t = T0 + Duration::hours(1);
    let r = env.send(&start("3", ""), t).await;
    let uris: Vec<String> = commands(&r).into_iter().map(|c| c.2).collect();
    assert_eq!(uris, [AUTOPILOT_STATUS_URI, AUTOPILOT_LAST_ERROR_URI]);
    assert_eq!(reload(&env, &action).await.state, ActionState::Sent);

    // Status 0: the device never got it → queued again and sent in this same session.
    let r = env
        .send(&answer("3", 2, &r, &nodes_with("0", "0"), 200, ""), t)
        .await;
    let uris: Vec<String> = commands(&r).into_iter().map(|c| c.2).collect();
    assert_eq!(uris, [DO_RESET]);
    let a = reload(&env, &action).await;
    assert_eq!(a.state, ActionState::Sent);
    assert!(states(&a).contains(&ActionState::Pending));

    // Had the device reported 10 instead, it would be in progress and nothing re-sent.
    let env2 = crate::harness::env().await;
    check_in(&env2, "1", T0, &pc_nodes()).await;
    let action2 = request(&env2, ActionKind::AutopilotReset, T0).await;
    env2.send(&start("2", ""), T0).await;
    let r = env2.send(&start("3", ""), t).await;
    let r = env2
        .send(&answer("3", 2, &r, &nodes_with("20", "0"), 200, ""), t)
        .await;
    assert!(commands(&r).is_empty());
    assert_eq!(reload(&env2, &action2).await.state, ActionState::InProgress);
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
    assert!(
        commands(&r).is_empty(),
        "nothing queued for a blocked action"
    );
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
    let uris: Vec<String> = commands(&reply).into_iter().map(|c| c.2).collect();
    assert_eq!(uris, ["./Device/Vendor/MSFT/RemoteWipe/doWipe"]);
}

#[tokio::test]
async fn cancel_retry_and_expiry() {
    let env = env().await;
    check_in(&env, "1", T0, &pc_nodes()).await;
    let a = request(&env, ActionKind::Restart, T0).await;
    let c = action::cancel(&env.store, a.id, "admin", T0).await.unwrap();
    assert_eq!(c.state, ActionState::Canceled);
    assert!(commands(&env.send(&start("2", ""), T0).await).is_empty());
    let b = action::retry(&env.store, a.id, "admin", T0, &ActionSettings::default())
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
    let cmds = commands(&r);
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
        commands(&r).into_iter().map(|c| c.2).collect::<Vec<_>>(),
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
    let cmds = commands(&r);
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
