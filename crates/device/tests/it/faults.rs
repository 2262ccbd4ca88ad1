//! Injected faults: network cuts inside an OMA-DM session (`--drop-replies`) and status nodes
//! that report the values from before a completed reset (`--stale-status-after-restore`).

use device::client;
use device::fault::{exchange_cut, stale_after_restore, Cut};
use device::reset;
use device::schedule;
use device::state::*;
use device::{DeviceError, DeviceProfile};
use time::Duration;

use crate::common::*;
use crate::fake::{hdr_status, server_message, FakeServer, Mdm};

/// A fault seed under which the PC's next session meets `want`.
fn seed_where(pc: &DeviceState, want: impl Fn(&FaultSettings, u64) -> bool) -> u64 {
    let session = pc.dm_client.last_session_id + 1;
    (1..100_000)
        .find(|&seed| want(&FaultSettings { seed, ..pc.faults }, session))
        .expect("a seed")
}

fn dropping(pct: u8) -> DeviceState {
    let mut pc = device();
    pc.faults.drop_replies_pct = pct;
    pc
}

#[test]
fn cuts_follow_the_percentage_split_in_halves_and_are_reproducible() {
    let faults = FaultSettings {
        drop_replies_pct: 30,
        seed: 42,
        ..FaultSettings::default()
    };
    let draws: Vec<Option<Cut>> = (1..=400u64)
        .flat_map(|session| (1..=5).map(move |ex| (session, ex)))
        .map(|(session, ex)| exchange_cut(&faults, session, ex))
        .collect();
    let lost_requests = draws
        .iter()
        .filter(|c| **c == Some(Cut::RequestLost))
        .count();
    let lost_replies = draws.iter().filter(|c| **c == Some(Cut::ReplyLost)).count();
    let cut = lost_requests + lost_replies;
    assert!((500..700).contains(&cut), "{cut} of 2000 at 30%");
    assert!(
        (cut * 4 / 10..cut * 6 / 10).contains(&lost_requests),
        "{lost_requests} requests and {lost_replies} replies lost"
    );
    let again: Vec<Option<Cut>> = (1..=400u64)
        .flat_map(|session| (1..=5).map(move |ex| (session, ex)))
        .map(|(session, ex)| exchange_cut(&faults, session, ex))
        .collect();
    assert_eq!(draws, again, "same seed, same cuts");
    let other = FaultSettings { seed: 43, ..faults };
    assert!((1..=400u64).any(|s| exchange_cut(&other, s, 1) != exchange_cut(&faults, s, 1)));

    let never = FaultSettings {
        drop_replies_pct: 0,
        ..faults
    };
    let always = FaultSettings {
        drop_replies_pct: 100,
        ..faults
    };
    assert!((1..=200u64).all(|s| exchange_cut(&never, s, 1).is_none()));
    assert!((1..=200u64).all(|s| exchange_cut(&always, s, 1).is_some()));

    let stale = |pct| FaultSettings {
        stale_status_after_restore_pct: pct,
        ..faults
    };
    assert!((1..=50).all(|n| !stale_after_restore(&stale(0), n)));
    assert!((1..=50).all(|n| stale_after_restore(&stale(100), n)));
    let half = (1..=400)
        .filter(|n| stale_after_restore(&stale(50), *n))
        .count();
    assert!((150..250).contains(&half), "{half} of 400 at 50%");
}

#[tokio::test]
async fn a_lost_request_sends_nothing_and_the_pc_retries_at_its_next_poll() {
    let server = FakeServer::new(Mdm::Idle);
    let mut pc = dropping(100);
    pc.dm_client.sync_now = true;
    pc.dm_client.next_poll_at = Some(t0() + Duration::minutes(15));
    pc.faults.seed = seed_where(&pc, |f, s| exchange_cut(f, s, 1) == Some(Cut::RequestLost));

    let tick = schedule::tick(&server, &mut pc, t0()).await;
    let err = tick.session.unwrap().unwrap_err();
    assert!(
        matches!(
            err,
            DeviceError::LinkCut {
                cut: Cut::RequestLost,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.kind(), "request_lost");
    assert!(
        server.dm_messages().is_empty(),
        "nothing reached the server"
    );
    assert_eq!(pc.dm_client.sessions_failed, 1);
    let failed = pc.events.last().unwrap();
    assert_eq!(failed.kind, EventKind::SessionFailed);
    assert!(
        failed.detail.contains("injected fault"),
        "{}",
        failed.detail
    );
    // Like Windows after a failed session: nothing until the next scheduled poll.
    assert_eq!(tick.next_wake, Some(t0() + Duration::minutes(15)));
    assert!(!schedule::check_in_due(&pc, t0() + Duration::minutes(14)));

    pc.faults.drop_replies_pct = 0;
    let next = schedule::tick(&server, &mut pc, t0() + Duration::minutes(15)).await;
    next.session.unwrap().unwrap();
    assert_eq!(server.dm_messages().len(), 1);
}

#[tokio::test]
async fn a_lost_reply_reaches_the_server_but_the_pc_never_acts_on_it() {
    // The server's answer to package #1 carries the reset Exec.
    let server = FakeServer::scripted(vec![server_message(
        "1",
        "1",
        vec![hdr_status("1"), exec("2", RESET_NODE)],
        true,
    )]);
    let mut pc = dropping(100);
    pc.faults.seed = seed_where(&pc, |f, s| exchange_cut(f, s, 1) == Some(Cut::ReplyLost));

    let err = client::check_in(&server, &mut pc, t0()).await.unwrap_err();
    assert_eq!(err.kind(), "reply_lost");
    assert_eq!(
        server.dm_messages().len(),
        1,
        "package #1 reached the server"
    );
    assert_eq!(pc.pending, None, "the Exec was never read");
    assert_eq!(pc.autopilot_reset.status, reset_status::NEVER_RUN);
    assert!(!has_event(&pc, EventKind::CommandExecuted));
    assert!(!has_event(&pc, EventKind::ResetScheduled));
}

#[tokio::test]
async fn a_cut_after_the_exec_was_accepted_still_ends_in_a_completed_reset() {
    let server = FakeServer::scripted(vec![
        server_message("1", "1", vec![hdr_status("1"), exec("2", RESET_NODE)], true),
        // Never delivered: the PC's statuses (message 2) are lost.
        server_message("1", "2", vec![hdr_status("2")], true),
    ]);
    let mut pc = dropping(50);
    pc.faults.seed = seed_where(&pc, |f, s| {
        exchange_cut(f, s, 1).is_none() && exchange_cut(f, s, 2) == Some(Cut::RequestLost)
    });
    let err = client::check_in(&server, &mut pc, t0()).await.unwrap_err();
    assert_eq!(err.kind(), "request_lost");
    assert_eq!(
        server.dm_messages().len(),
        1,
        "the Exec's status never left"
    );
    assert_eq!(pc.autopilot_reset.status, reset_status::SCHEDULED);

    pc.faults.drop_replies_pct = 0;
    reset::run_to_completion(&mut pc);
    assert_eq!(pc.autopilot_reset.status, reset_status::COMPLETE);
    assert_eq!(pc.resets.remote_autopilot, 1);
    let is_sync_done = "./Device/Vendor/MSFT/DMClient/Provider/Redeploy/FirstSyncStatus/IsSyncDone";
    assert_eq!(get_data(&mut pc, is_sync_done), "false");
    *server.mdm.lock().unwrap() = Mdm::Idle;
    client::check_in(&server, &mut pc, t0()).await.unwrap();
    assert!(pc.desktop_available(), "the first session after the reset");
    assert_eq!(
        get_data(&mut pc, is_sync_done),
        "false",
        "until the server sets it"
    );
}

#[test]
fn a_stale_pc_reports_the_status_from_before_the_exec_after_a_complete_reset() {
    let mut pc = device_with(DeviceProfile {
        winre_enabled: false,
        ..DeviceProfile::default()
    });
    pc.faults.stale_status_after_restore_pct = 100;
    // A first attempt refused for WinRE leaves Status 30 / 0x80070032; then reagentc /enable.
    assert_eq!(code(&mut pc, exec("1", RESET_NODE)), 500);
    reset::reagentc(&mut pc, true, t0()).unwrap();
    let upn = pc.primary_user.clone().unwrap();

    assert_eq!(code(&mut pc, exec("2", RESET_NODE)), 200);
    assert_eq!(
        get_data(&mut pc, STATUS_NODE),
        "10",
        "the Exec itself is reported"
    );
    reset::step(&mut pc, t0());
    assert_eq!(get_data(&mut pc, STATUS_NODE), "20");
    reset::run_to_completion(&mut pc);

    // The reset happened: users gone, the first-sync flag down, counted once.
    assert_eq!(pc.resets.remote_autopilot, 1);
    assert!(pc.profiles.is_empty());
    assert_eq!(pc.primary_user, None);
    let is_sync_done = "./Vendor/MSFT/DMClient/Provider/Redeploy/FirstSyncStatus/IsSyncDone";
    assert_eq!(get_data(&mut pc, is_sync_done), "false");
    assert_eq!(
        pc.autopilot_reset,
        AutopilotResetNodes {
            status: 1,
            last_error: 0
        }
    );
    // But the nodes lie.
    assert_eq!(get_data(&mut pc, STATUS_NODE), "30");
    assert_eq!(
        get_data(&mut pc, LAST_ERROR_NODE),
        (0x8007_0032_u32 as i32).to_string()
    );
    let shown = pc.to_show_json();
    assert_eq!(shown["autopilot_reset"]["status"], 1);
    assert_eq!(shown["faults"]["stale_autopilot_reset"]["status"], 30);
    assert!(has_event(&pc, EventKind::FaultInjected));
    // Until the next reset: still lying after syncs and sign-ins.
    reset::mdm_sync_completed(&mut pc, t0());
    assert!(pc.sign_in(&upn, t0()));
    assert_eq!(get_data(&mut pc, STATUS_NODE), "30");

    // A second Exec is accepted and runs a second reset (which a server must never send).
    assert_eq!(code(&mut pc, exec("3", RESET_NODE)), 200);
    assert_eq!(get_data(&mut pc, STATUS_NODE), "10");
    pc.faults.stale_status_after_restore_pct = 0;
    reset::run_to_completion(&mut pc);
    assert_eq!(pc.resets.remote_autopilot, 2);
    assert_eq!(get_data(&mut pc, STATUS_NODE), "1");
    assert_eq!(
        pc.to_show_json()["faults"]["stale_autopilot_reset"],
        serde_json::Value::Null
    );
}

#[test]
fn without_the_fault_or_after_a_rollback_the_nodes_tell_the_truth() {
    let mut pc = device();
    assert_eq!(code(&mut pc, exec("1", RESET_NODE)), 200);
    reset::run_to_completion(&mut pc);
    assert_eq!(get_data(&mut pc, STATUS_NODE), "1");
    assert_eq!(get_data(&mut pc, LAST_ERROR_NODE), "0");

    // A failed (rolled-back) reset is not "completed": no stale status, Status 50.
    let mut pc = device();
    pc.faults.stale_status_after_restore_pct = 100;
    pc.inject_reset_failure = Some(reset::HR_E_FAIL);
    assert_eq!(code(&mut pc, exec("1", RESET_NODE)), 200);
    reset::run_to_completion(&mut pc);
    assert_eq!(get_data(&mut pc, STATUS_NODE), "50");
    assert_eq!(pc.faults.stale_reset_nodes, None);

    // A local reset ends the lie ("until its next reset").
    let mut pc = device_with(DeviceProfile {
        local_reset_policy: Some(0),
        ..DeviceProfile::default()
    });
    pc.faults.stale_status_after_restore_pct = 100;
    run(&mut pc, &exec("1", RESET_NODE));
    reset::run_to_completion(&mut pc);
    assert_eq!(get_data(&mut pc, STATUS_NODE), "0", "stale: never run");
    let admin = pc.local_users.iter().find(|u| u.is_admin).unwrap().clone();
    reset::local_reset(&mut pc, &admin.name, &admin.password, t0()).unwrap();
    reset::run_to_completion(&mut pc);
    assert_eq!(get_data(&mut pc, STATUS_NODE), "1");
}
