//! The poll schedule and the reset's offline window, driven by explicit times (no sleeps).

use std::sync::Arc;

use device::client::{self, EnrollOptions};
use device::schedule::{self, poll_interval_minutes, Clock, ManualClock};
use device::state::{reset_status, EventKind, PollSchedule};
use device::DeviceProfile;
use time::{Duration, OffsetDateTime};

use crate::common::{exec, t0, RESET_NODE};
use crate::fake::{hdr_status, server_message, FakeServer, Mdm, SERVER, TOKEN};

fn recommended() -> PollSchedule {
    PollSchedule {
        interval_for_first_set_of_retries: 15,
        number_of_first_retries: 8,
        interval_for_second_set_of_retries: 3,
        number_of_second_retries: 5,
        interval_for_remaining_scheduled_retries: 1560,
        number_of_remaining_scheduled_retries: 0,
        poll_on_login: true,
        all_users_poll_on_first_login: true,
    }
}

#[test]
fn poll_intervals_follow_the_three_sets() {
    let p = recommended();
    let got: Vec<Option<u32>> = (0..16).map(|i| poll_interval_minutes(&p, i)).collect();
    let mut want = vec![Some(15); 8];
    want.extend(vec![Some(3); 5]);
    want.extend(vec![Some(1560); 3]);
    assert_eq!(got, want);
    assert_eq!(
        poll_interval_minutes(&p, 10_000),
        Some(1560),
        "0 remaining = forever"
    );

    let limited = PollSchedule {
        number_of_remaining_scheduled_retries: 2,
        ..p
    };
    assert_eq!(poll_interval_minutes(&limited, 14), Some(1560));
    assert_eq!(
        poll_interval_minutes(&limited, 15),
        None,
        "the schedule ran out"
    );

    let no_second = PollSchedule {
        number_of_second_retries: 5,
        interval_for_second_set_of_retries: 0,
        ..p
    };
    assert_eq!(poll_interval_minutes(&no_second, 8), Some(1560));
}

async fn enrolled_pc(server: &FakeServer, at: OffsetDateTime) -> device::DeviceState {
    let mut pc = DeviceProfile::default().build_seeded("pc-0003", 3, at);
    client::enroll(
        server,
        &mut pc,
        &EnrollOptions {
            server: SERVER.into(),
            token: TOKEN.into(),
            issuer: None,
        },
        at,
    )
    .await
    .unwrap();
    pc
}

#[tokio::test]
async fn check_ins_follow_the_provisioned_poll_schedule() {
    let server = FakeServer::new(Mdm::Idle);
    let mut pc = enrolled_pc(&server, t0()).await;
    let mut now = t0();
    let mut session_times = Vec::new();
    for _ in 0..16 {
        let tick = schedule::tick(&server, &mut pc, now).await;
        if let Some(s) = tick.session {
            s.unwrap();
            session_times.push(now);
        }
        now = tick
            .next_wake
            .expect("an enrolled PC always has a next poll");
    }
    let gaps: Vec<i64> = session_times
        .windows(2)
        .map(|w| (w[1] - w[0]).whole_minutes())
        .collect();
    // The first session right after enrollment, then 8 × 15 min, 5 × 3 min, then 1560 min.
    let mut want = vec![15; 8];
    want.extend(vec![3; 5]);
    want.extend(vec![1560; 2]);
    assert_eq!(session_times[0], t0());
    assert_eq!(gaps, want);
    // Nothing happens between polls.
    let quiet = schedule::tick(&server, &mut pc, now - Duration::minutes(1)).await;
    assert!(quiet.session.is_none());
}

#[tokio::test]
async fn a_remote_reset_goes_offline_then_checks_in_as_soon_as_it_is_back() {
    let server = FakeServer::new(Mdm::Idle);
    let mut pc = enrolled_pc(&server, t0()).await;
    // The first session delivers the reset.
    *server.mdm.lock().unwrap() = Mdm::Script(
        vec![crate::fake::ok_syncml(&server_message(
            "1",
            "1",
            vec![hdr_status("1"), exec("2", RESET_NODE)],
            true,
        ))]
        .into(),
    );
    let first = schedule::tick(&server, &mut pc, t0()).await;
    first.session.unwrap().unwrap();
    *server.mdm.lock().unwrap() = Mdm::Idle;
    let t = pc.timings.clone();
    // The status goes 10 → 20 (schedule_secs is the delay before 20).
    assert!(matches!(
        pc.autopilot_reset.status,
        reset_status::SCHEDULED | reset_status::WAITING_FOR_REBOOT
    ));
    let mut now = t0();
    let mut seen_20 = pc.autopilot_reset.status == reset_status::WAITING_FOR_REBOOT;
    let mut offline_at = None;
    let mut back_session_at = None;
    let mut sessions_while_offline = 0;
    for _ in 0..200 {
        let before = server.dm_messages().len();
        let tick = schedule::tick(&server, &mut pc, now).await;
        if pc.autopilot_reset.status == reset_status::WAITING_FOR_REBOOT {
            seen_20 = true;
        }
        if !pc.online && offline_at.is_none() {
            offline_at = Some(now);
        }
        if offline_at.is_some() && back_session_at.is_none() {
            if pc.online && tick.session.is_some() {
                back_session_at = Some(now);
                break;
            }
            sessions_while_offline += server.dm_messages().len() - before;
        }
        // Step at most one minute so scheduled polls inside the offline window are tried.
        let next = tick.next_wake.unwrap_or(now + Duration::minutes(1));
        now = next
            .min(now + Duration::minutes(1))
            .max(now + Duration::seconds(1));
    }
    assert!(seen_20, "Status 20 was reported before the reboot");
    let offline_at = offline_at.expect("the PC rebooted into the reset");
    let back = back_session_at.expect("the PC checked in after the reset");
    assert_eq!(sessions_while_offline, 0, "no check-ins while offline");
    let offline_for = (back - offline_at).whole_seconds();
    assert!(
        offline_for >= t.reset_secs && offline_for <= t.reset_secs + 60,
        "offline {offline_for} s for a {} s reset",
        t.reset_secs
    );
    assert_eq!(pc.autopilot_reset.status, reset_status::COMPLETE);
    assert!(pc
        .events
        .iter()
        .any(|e| e.kind == EventKind::ResetCompleted));
    // That first session after the reset was the post-reset MDM sync the desktop waits for.
    assert!(!pc.desktop.waiting_for_mdm_sync);
}

#[tokio::test]
async fn manual_clock_wakes_sleepers_only_when_moved_past_their_time() {
    let clock = Arc::new(ManualClock::new(t0()));
    let sleeper = {
        let clock = clock.clone();
        tokio::spawn(async move {
            clock.sleep_until(t0() + Duration::minutes(10)).await;
            clock.now()
        })
    };
    clock.advance(Duration::minutes(5));
    tokio::task::yield_now().await;
    assert!(!sleeper.is_finished());
    clock.advance(Duration::minutes(5));
    assert_eq!(sleeper.await.unwrap(), t0() + Duration::minutes(10));
}

#[tokio::test(start_paused = true)]
async fn scaled_clock_runs_device_time_faster_than_real_time() {
    use device::ScaledClock;
    let started = tokio::time::Instant::now();
    let clock = ScaledClock::new(t0(), 60.0);
    // A 15-minute poll interval takes 15 real seconds at time scale 60.
    clock.sleep_until(t0() + Duration::minutes(15)).await;
    assert_eq!(started.elapsed(), std::time::Duration::from_secs(15));
    assert_eq!(clock.now(), t0() + Duration::minutes(15));
    // A time in the past does not wait.
    clock.sleep_until(t0()).await;
    assert_eq!(started.elapsed(), std::time::Duration::from_secs(15));
    assert_eq!(ScaledClock::new(t0(), 0.0).time_scale(), 1.0);
}
