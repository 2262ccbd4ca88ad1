//! End to end, with the server on a manual clock that the tests move and `TestApp::tick` (one
//! background-worker tick): a group reset of hundreds of emulated PCs in waves, a nightly
//! schedule with a maintenance window (and a daily cap), and expiry of a reset whose PC never
//! came back. PCs enroll and check in over real HTTPS with mutual TLS.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use device::client::{self, EnrollOptions};
use device::state::{reset_status, DeviceState};
use device::{reset, DeviceProfile, HttpsTransport};
use redeploy_core::action::ActionSettings;
use redeploy_core::batch::{self, Target, WaveSettings};
use redeploy_core::group::Group;
use redeploy_core::schedule::{
    next_occurrence, BatchWindow, MaintenanceWindow, Recurrence, Schedule, HELD_NOTE_PREFIX,
};
use redeploy_core::store::AuditQuery;
use redeploy_core::{
    Action, ActionKind, ActionState, Clock, DeviceId, GroupId, ManualClock, ScheduleId, Store,
};
use testkit::app::{spawn_app_with_clock, Backend, TestApp};
use time::macros::time;
use time::{Duration, OffsetDateTime};

/// One emulated PC and the id the server gave it.
struct Pc {
    state: DeviceState,
    id: DeviceId,
}

/// The server on a manual clock standing at `start`, enrollment rate limit off (a whole fleet
/// enrolls from one address), and `configure` applied.
async fn app_at(
    backend: Backend,
    start: OffsetDateTime,
    configure: impl FnOnce(&mut server::Settings),
) -> (TestApp, Arc<ManualClock>) {
    // Whole seconds: the store keeps microseconds, so a stored instant must equal the clock's.
    let clock = Arc::new(ManualClock::new(start.replace_nanosecond(0).unwrap()));
    let app = spawn_app_with_clock(backend, clock.clone(), |s| {
        s.enroll_rate.per_second = 0.0;
        configure(s);
    })
    .await;
    (app, clock)
}

/// Builds, signs in (so there is a user with files to lose), enrolls and syncs `n` PCs named
/// `<prefix>-NNNN`, `tasks` at a time, each over its own HTTPS connections.
async fn enroll_fleet(
    app: &TestApp,
    transport: &HttpsTransport,
    prefix: &str,
    n: usize,
    tasks: usize,
    now: OffsetDateTime,
) -> Vec<Pc> {
    let options = EnrollOptions {
        server: app.base_url.clone(),
        token: app.enrollment_token.clone(),
        issuer: None,
    };
    let mut handles = Vec::new();
    for t in 0..tasks {
        let (transport, options, store) = (transport.clone(), options.clone(), app.store.clone());
        let prefix = prefix.to_owned();
        handles.push(tokio::spawn(async move {
            let mut pcs = Vec::new();
            for i in (t..n).step_by(tasks) {
                let mut state = DeviceProfile::default().build_seeded(
                    &format!("{prefix}-{i:04}"),
                    1000 + i as u64,
                    now,
                );
                let user = state.entra_users[0].upn.clone();
                state.sign_in(&user, now);
                client::enroll(&transport, &mut state, &options, now)
                    .await
                    .expect("enrollment");
                client::check_in(&transport, &mut state, now)
                    .await
                    .expect("first check-in (inventory)");
                let id = store
                    .device_by_mdm_device_id(&state.dev_id)
                    .await
                    .unwrap()
                    .expect("the server knows the PC")
                    .id;
                pcs.push((i, Pc { state, id }));
            }
            pcs
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.expect("enrollment task"));
    }
    all.sort_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, pc)| pc).collect()
}

/// How many resets the PC itself started (its event log).
fn resets_started(state: &DeviceState) -> usize {
    state
        .events
        .iter()
        .filter(|e| e.detail.contains("doAutomaticRedeployment") && e.detail.contains("200"))
        .count()
}

/// Whether the PC received an Exec of the reset in a check-in.
fn got_reset(report: &client::SessionReport) -> bool {
    report
        .executed
        .iter()
        .any(|(verb, target, _)| verb == "Exec" && target.ends_with("doAutomaticRedeployment"))
}

/// The PC resets (goes silent, comes back) and syncs until quiet.
async fn finish_reset(transport: &HttpsTransport, pc: &mut Pc, now: OffsetDateTime) {
    reset::run_to_completion(&mut pc.state);
    assert_eq!(pc.state.autopilot_reset.status, reset_status::COMPLETE);
    crate::sync_until_quiet(transport, &mut pc.state, now).await;
}

/// What an Autopilot Reset leaves (docs/protocol.md §1.2): users and their files gone, Entra join,
/// MDM enrollment and Wi-Fi kept.
fn assert_reset_result(before: &DeviceState, after: &DeviceState) {
    assert!(!before.profiles.is_empty(), "{} had a user", before.id);
    assert!(after.profiles.is_empty(), "{}: profiles removed", after.id);
    assert_eq!(after.primary_user, None);
    assert_eq!(after.entra_join, before.entra_join, "Entra join kept");
    assert_eq!(
        after.mdm_enrollment.as_ref().map(|e| &e.thumbprint),
        before.mdm_enrollment.as_ref().map(|e| &e.thumbprint),
        "MDM enrollment kept"
    );
    for wifi in &before.wifi_profiles {
        assert!(after.wifi_profiles.contains(wifi), "Wi-Fi {wifi:?} kept");
    }
    assert!(
        after.desktop_available(),
        "the first sync released the desktop"
    );
}

async fn action_of(store: &dyn Store, device: DeviceId) -> Vec<Action> {
    store.actions_of_device(device).await.unwrap()
}

// ---------------------------------------------------------------------------------------------
// a. A group reset in waves

async fn group_reset_in_waves(backend: Backend, n: usize, wave_size: usize) {
    let started = Instant::now();
    let (app, clock) = app_at(backend, OffsetDateTime::now_utc(), |_| {}).await;
    let transport = HttpsTransport::new(&app.ca_pem).unwrap();
    let store = app.store.clone();
    let mut pcs = enroll_fleet(&app, &transport, "lab", n, 8, clock.now()).await;
    let enrolled_in = started.elapsed();
    let before: Vec<DeviceState> = pcs.iter().map(|p| p.state.clone()).collect();
    let ids: Vec<DeviceId> = pcs.iter().map(|p| p.id).collect();
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), n);

    let group = Group::new_static(GroupId::generate(), "Lab all", ids.clone(), clock.now());
    store.create_group(&group).await.unwrap();
    let interval = Duration::minutes(30);
    let batch = batch::execute(
        &*store,
        &Target::Group(group.id),
        ActionKind::AutopilotReset,
        "e2e-admin",
        clock.now(),
        &ActionSettings::default(),
        Some("Lab all"),
        &WaveSettings {
            wave_size: wave_size as u32,
            interval,
            daily_cap: None,
        },
    )
    .await
    .unwrap();
    let waves = n.div_ceil(wave_size);
    assert_eq!(
        (batch.queued(), batch.deferred()),
        (wave_size, n - wave_size)
    );
    let actions = store.actions_of_batch(batch.batch_id).await.unwrap();
    assert_eq!(actions.len(), wave_size, "only wave 1 has actions");
    assert!(actions.iter().all(|a| a.state == ActionState::Pending));

    let batch_started = Instant::now();
    let mut done: HashSet<DeviceId> = HashSet::new();
    for wave in 0..waves {
        if wave > 0 {
            clock.advance(interval - Duration::minutes(1));
            assert_eq!(app.tick().await.waves_released, 0, "not due yet");
            clock.advance(Duration::minutes(1));
            assert_eq!(app.tick().await.waves_released, 1, "wave {wave} released");
        }
        let now = clock.now();
        // Every PC not reset yet checks in; exactly this wave's PCs get the reset.
        let mut reset_now = Vec::new();
        for (i, pc) in pcs.iter_mut().enumerate() {
            if done.contains(&pc.id) {
                continue;
            }
            let report = client::check_in(&transport, &mut pc.state, now)
                .await
                .expect("check-in");
            if got_reset(&report) {
                reset_now.push(i);
            }
        }
        assert_eq!(reset_now.len(), wave_size, "wave {wave}: one wave's worth");
        for &i in &reset_now {
            finish_reset(&transport, &mut pcs[i], now).await;
            assert!(done.insert(pcs[i].id), "a PC reset in two waves");
        }
        for pc in pcs.iter().filter(|p| !done.contains(&p.id)) {
            assert_eq!(resets_started(&pc.state), 0, "{} untouched", pc.state.id);
            let original = before.iter().find(|b| b.id == pc.state.id).unwrap();
            assert_eq!(
                pc.state.profiles, original.profiles,
                "{} untouched",
                pc.state.id
            );
        }
    }
    assert_eq!(app.tick().await.waves_released, 0, "no wave left");
    let batch_took = batch_started.elapsed();

    // Each PC reset exactly once, each action done, one action per device.
    for (pc, original) in pcs.iter().zip(&before) {
        assert_eq!(resets_started(&pc.state), 1, "{}", pc.state.id);
        assert_reset_result(original, &pc.state);
        let acts = action_of(&*store, pc.id).await;
        assert_eq!(acts.len(), 1, "{}: one action", pc.state.id);
        assert_eq!(acts[0].state, ActionState::Done, "{:?}", acts[0].timeline);
    }
    let actions = store.actions_of_batch(batch.batch_id).await.unwrap();
    assert_eq!(actions.len(), n);
    assert!(actions.iter().all(|a| a.batch == Some(batch.batch_id)));
    let audit: Vec<_> = store
        .list_audit(&AuditQuery {
            device: None,
            after: None,
            limit: 100_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.batch == Some(batch.batch_id))
        .collect();
    let count = |what: &str| audit.iter().filter(|e| e.action == what).count();
    assert_eq!(count("batch.create"), 1);
    assert_eq!(count("batch.wave"), waves - 1);
    assert_eq!(count("action.create"), n);
    let create = audit.iter().find(|e| e.action == "batch.create").unwrap();
    assert_eq!(create.targets.len(), n);
    assert!(
        create.details.contains(&format!("{wave_size} queued")),
        "{}",
        create.details
    );

    println!(
        "group reset of {n} PCs in {waves} waves of {wave_size} on {backend:?}: \
         enrollment {:.1} s, waves {:.1} s, total {:.1} s",
        enrolled_in.as_secs_f64(),
        batch_took.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_reset_of_500_pcs_in_waves_of_100_on_sqlite() {
    group_reset_in_waves(Backend::Sqlite, 500, 100).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_reset_of_60_pcs_in_waves_of_20_on_postgres() {
    group_reset_in_waves(Backend::Postgres, 60, 20).await;
}

/// A group reset queued by the database (`BulkQueue`, here from 10 devices up instead of 1,000)
/// reaches real PCs as one made device by device does: a PC whose WinRE is off is blocked with
/// its reason; every other PC gets the reset's commands at its next check-in, in order, runs
/// the reset and reports it done; one action per PC, one `action.create` event for the blocked
/// PC and one request event naming every PC.
async fn a_group_reset_queued_by_the_database_resets_every_pc(backend: Backend) {
    let n = 24;
    let (app, clock) = app_at(backend, OffsetDateTime::now_utc(), |_| {}).await;
    let transport = HttpsTransport::new(&app.ca_pem).unwrap();
    let store = app.store.clone();
    let mut pcs = enroll_fleet(&app, &transport, "bulk", n, 4, clock.now()).await;
    let before: Vec<DeviceState> = pcs.iter().map(|p| p.state.clone()).collect();
    let ids: Vec<DeviceId> = pcs.iter().map(|p| p.id).collect();
    // One PC reports WinRE disabled: preflight blocks it.
    let mut off = store.device(ids[5]).await.unwrap().unwrap();
    off.winre_enabled = Some(false);
    store.update_device(&off).await.unwrap();

    let group = Group::new_static(GroupId::generate(), "Lab bulk", ids.clone(), clock.now());
    store.create_group(&group).await.unwrap();
    let settings = ActionSettings {
        bulk_from: 10,
        ..ActionSettings::default()
    };
    let batch = batch::execute(
        &*store,
        &Target::Group(group.id),
        ActionKind::AutopilotReset,
        "e2e-admin",
        clock.now(),
        &settings,
        Some("Lab bulk"),
        &WaveSettings {
            wave_size: u32::MAX,
            interval: Duration::ZERO,
            daily_cap: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(batch.queued_in_bulk, n - 1, "queued by the database");
    assert_eq!((batch.queued(), batch.blocked()), (n - 1, 1));

    let now = clock.now();
    for (i, pc) in pcs.iter_mut().enumerate() {
        let report = client::check_in(&transport, &mut pc.state, now)
            .await
            .expect("check-in");
        if i == 5 {
            assert!(!got_reset(&report), "the blocked PC gets no reset");
            continue;
        }
        assert!(got_reset(&report), "{}: {:?}", pc.state.id, report.executed);
        finish_reset(&transport, pc, now).await;
    }
    for (i, (pc, original)) in pcs.iter().zip(&before).enumerate() {
        let acts = action_of(&*store, pc.id).await;
        assert_eq!(acts.len(), 1, "{}: one action", pc.state.id);
        if i == 5 {
            assert_eq!(resets_started(&pc.state), 0);
            assert_eq!(acts[0].state, ActionState::Blocked);
            assert!(
                acts[0].reason.as_deref().unwrap_or("").contains("WinRE"),
                "{:?}",
                acts[0].reason
            );
        } else {
            assert_eq!(resets_started(&pc.state), 1, "{}", pc.state.id);
            assert_reset_result(original, &pc.state);
            assert_eq!(acts[0].state, ActionState::Done, "{:?}", acts[0].timeline);
        }
    }
    let audit: Vec<_> = store
        .list_audit(&AuditQuery {
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.batch == Some(batch.batch_id))
        .collect();
    // The blocked PC's own event with its reason; the request's event names every PC.
    let created: Vec<_> = audit
        .iter()
        .filter(|e| e.action == "action.create")
        .collect();
    assert_eq!(created.len(), 1, "{created:?}");
    assert_eq!(created[0].targets, vec![ids[5]]);
    assert!(
        created[0].details.contains("WinRE"),
        "{}",
        created[0].details
    );
    let request: Vec<_> = audit
        .iter()
        .filter(|e| e.action == "batch.create")
        .collect();
    assert_eq!(request.len(), 1);
    let mut named = request[0].targets.clone();
    named.sort();
    let mut all = ids.clone();
    all.sort();
    assert_eq!(named, all);
}

testkit::on_both_backends!(a_group_reset_queued_by_the_database_resets_every_pc);

// ---------------------------------------------------------------------------------------------
// b. A nightly schedule with a maintenance window

testkit::on_both_backends!(
    a_nightly_schedule_fires_at_two_and_resets_only_inside_its_window,
    a_schedule_under_a_daily_cap_defers_the_rest_to_the_next_utc_day,
    a_reset_whose_pc_never_returns_is_expired_by_the_worker,
);

/// A nightly 02:00 Europe/Berlin schedule on `group`, window 02:00–05:00.
fn nightly(group: GroupId, now: OffsetDateTime) -> Schedule {
    let mut s = Schedule {
        id: ScheduleId::generate(),
        name: "Lab nightly".into(),
        group,
        kind: ActionKind::AutopilotReset,
        tz: "Europe/Berlin".parse().unwrap(),
        recurrence: Recurrence::Daily(time!(2:00)),
        window: Some(MaintenanceWindow {
            start: time!(2:00),
            end: time!(5:00),
        }),
        enabled: true,
        next_run: None,
        last_run: None,
    };
    s.next_run = next_occurrence(&s, now);
    s
}

/// The instant of the last local `at` in Berlin at or before the real now (the server's
/// certificates must already be valid for the HTTPS clients, which use the real time).
fn last_berlin(at: time::Time) -> OffsetDateTime {
    let probe = Schedule {
        recurrence: Recurrence::Daily(at),
        ..nightly(GroupId::generate(), OffsetDateTime::now_utc())
    };
    next_occurrence(&probe, OffsetDateTime::now_utc() - Duration::days(1)).unwrap()
}

fn held_notes(a: &Action) -> Vec<String> {
    a.timeline
        .iter()
        .filter_map(|e| e.note.clone())
        .filter(|n| n.starts_with(HELD_NOTE_PREFIX))
        .collect()
}

async fn a_nightly_schedule_fires_at_two_and_resets_only_inside_its_window(backend: Backend) {
    let (app, clock) = app_at(backend, last_berlin(time!(1:59)), |_| {}).await;
    let transport = HttpsTransport::new(&app.ca_pem).unwrap();
    let store = app.store.clone();
    let mut pcs = enroll_fleet(&app, &transport, "night", 3, 3, clock.now()).await;
    let ids: Vec<_> = pcs.iter().map(|p| p.id).collect();
    let group = Group::new_static(GroupId::generate(), "Night lab", ids.clone(), clock.now());
    store.create_group(&group).await.unwrap();
    let schedule = nightly(group.id, clock.now());
    let two = schedule.next_run.unwrap();
    assert_eq!(
        two - clock.now(),
        Duration::minutes(1),
        "02:00 is a minute away"
    );
    store.create_schedule(&schedule).await.unwrap();

    // 01:59: nothing fires.
    assert!(app.tick().await.is_idle());
    assert!(action_of(&*store, ids[0]).await.is_empty());
    // 02:00: fires, one pending reset per lab PC.
    clock.set(two);
    assert_eq!(app.tick().await.schedules_fired, 1);
    for id in &ids {
        let acts = action_of(&*store, *id).await;
        assert_eq!(acts.len(), 1);
        assert_eq!(acts[0].state, ActionState::Pending, "{:?}", acts[0].reason);
        assert_eq!(acts[0].requested_by, "schedule:Lab nightly");
    }
    let fired = store.schedule(schedule.id).await.unwrap().unwrap();
    assert_eq!(fired.last_run, Some(two));
    assert_eq!(
        fired.next_run,
        Some(two + Duration::days(1)),
        "next_run moved to the following night"
    );
    assert!(app.tick().await.is_idle(), "fired once");

    // 06:00 the same day: out of the window. The PC checks in twice and gets nothing.
    clock.set(two + Duration::hours(4));
    let pc = &mut pcs[0];
    for _ in 0..2 {
        let report = client::check_in(&transport, &mut pc.state, clock.now())
            .await
            .unwrap();
        assert!(!got_reset(&report), "{:?}", report.executed);
    }
    let held = action_of(&*store, pc.id).await.remove(0);
    assert_eq!(held.state, ActionState::Pending);
    assert_eq!(
        held_notes(&held),
        ["held: outside maintenance window 02:00\u{2013}05:00 Europe/Berlin"],
        "noted once: {:?}",
        held.timeline
    );
    assert_eq!(resets_started(&pc.state), 0);

    // The next night at 02:10 (no tick in between): inside the window, the reset goes out.
    clock.set(two + Duration::days(1) + Duration::minutes(10));
    let before = pc.state.clone();
    let report = client::check_in(&transport, &mut pc.state, clock.now())
        .await
        .unwrap();
    assert!(got_reset(&report), "{:?}", report.executed);
    finish_reset(&transport, pc, clock.now()).await;
    assert_reset_result(&before, &pc.state);
    let done = action_of(&*store, pc.id).await.remove(0);
    assert_eq!(done.state, ActionState::Done, "{:?}", done.timeline);
    assert_eq!(resets_started(&pc.state), 1);
}

async fn a_schedule_under_a_daily_cap_defers_the_rest_to_the_next_utc_day(backend: Backend) {
    let (app, clock) = app_at(backend, last_berlin(time!(2:00)), |s| s.daily_cap = Some(2)).await;
    let transport = HttpsTransport::new(&app.ca_pem).unwrap();
    let store = app.store.clone();
    let mut pcs = enroll_fleet(&app, &transport, "capped", 3, 3, clock.now()).await;
    let ids: Vec<_> = pcs.iter().map(|p| p.id).collect();
    let group = Group::new_static(GroupId::generate(), "Capped lab", ids.clone(), clock.now());
    store.create_group(&group).await.unwrap();
    let mut schedule = nightly(group.id, clock.now() - Duration::seconds(1));
    schedule.name = "Capped nightly".into();
    assert_eq!(schedule.next_run, Some(clock.now()));
    store.create_schedule(&schedule).await.unwrap();

    assert_eq!(app.tick().await.schedules_fired, 1);
    let mut with_action = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        if !action_of(&*store, *id).await.is_empty() {
            with_action.push(i);
        }
    }
    assert_eq!(with_action.len(), 2, "the daily cap let two through");
    let late = (0..3).find(|i| !with_action.contains(i)).unwrap();

    // The next UTC midnight the deferred wave is released; its action carries the window, so
    // at 00:00 UTC (01:00 or 02:00 in Berlin) it goes out only if that is inside 02:00–05:00.
    let midnight = (clock.now() + Duration::days(1)).replace_time(time::Time::MIDNIGHT);
    clock.set(midnight);
    assert_eq!(app.tick().await.waves_released, 1);
    let acts = action_of(&*store, ids[late]).await;
    assert_eq!(acts.len(), 1);
    assert_eq!(acts[0].state, ActionState::Pending);
    let window = BatchWindow {
        window: schedule.window.unwrap(),
        tz: schedule.tz,
    };
    let pc = &mut pcs[late];
    let report = client::check_in(&transport, &mut pc.state, clock.now())
        .await
        .unwrap();
    assert_eq!(
        got_reset(&report),
        window.contains(midnight),
        "the released wave keeps the batch's window"
    );
    if !window.contains(midnight) {
        // 02:30 Berlin the same night: inside the window; the reset goes out.
        clock.set(two_thirty_after(midnight));
        let report = client::check_in(&transport, &mut pc.state, clock.now())
            .await
            .unwrap();
        assert!(got_reset(&report), "{:?}", report.executed);
    }
    finish_reset(&transport, pc, clock.now()).await;
    assert_eq!(
        action_of(&*store, ids[late]).await[0].state,
        ActionState::Done
    );
}

/// The first 02:30 Berlin after `t`.
fn two_thirty_after(t: OffsetDateTime) -> OffsetDateTime {
    let probe = Schedule {
        recurrence: Recurrence::Daily(time!(2:30)),
        ..nightly(GroupId::generate(), t)
    };
    next_occurrence(&probe, t).unwrap()
}

// ---------------------------------------------------------------------------------------------
// c. Expiry through the worker

async fn a_reset_whose_pc_never_returns_is_expired_by_the_worker(backend: Backend) {
    let (app, clock) = app_at(backend, OffsetDateTime::now_utc(), |s| {
        s.action_expiry = std::time::Duration::from_secs(6 * 3600);
    })
    .await;
    let transport = HttpsTransport::new(&app.ca_pem).unwrap();
    let store = app.store.clone();
    let mut pcs = enroll_fleet(&app, &transport, "lost", 1, 1, clock.now()).await;
    let pc = &mut pcs[0];
    let action = redeploy_core::action::request(
        &*store,
        pc.id,
        ActionKind::AutopilotReset,
        "e2e-admin",
        clock.now(),
        &ActionSettings::default(),
    )
    .await
    .unwrap();
    // The PC takes the Exec, accepts it, starts resetting, and is never heard of again.
    let report = client::check_in(&transport, &mut pc.state, clock.now())
        .await
        .unwrap();
    assert!(got_reset(&report));
    assert!(
        pc.state.pending.is_some(),
        "the reset is scheduled on the PC"
    );
    let taken = store.action(action.id).await.unwrap().unwrap();
    assert!(
        matches!(
            taken.state,
            ActionState::Acknowledged | ActionState::InProgress
        ),
        "{:?}",
        taken.state
    );

    clock.advance(Duration::hours(6));
    assert_eq!(app.tick().await.expired, 0, "not past the expiry yet");
    clock.advance(Duration::minutes(1));
    assert_eq!(app.tick().await.expired, 1);
    let expired = store.action(action.id).await.unwrap().unwrap();
    assert_eq!(expired.state, ActionState::Expired);
    let note = expired.timeline.last().unwrap().note.clone().unwrap();
    assert!(note.starts_with("no progress since"), "{note}");
    let metrics = app
        .client()
        .get(app.url("/metrics"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("redeploy_actions_expired_total 1"),
        "{metrics}"
    );
}

// ---------------------------------------------------------------------------------------------
// d. Steering a wave reset from the CLI: pause, resume, cancel (issue #15 item 1)

testkit::on_both_backends!(an_admin_pauses_resumes_and_cancels_a_wave_reset_from_the_cli);

/// `redeploy ARGS` against `app` with its CA and admin token, off the async runtime.
async fn cli(app: &TestApp, dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    let ca = dir.join("ca.pem");
    let token = dir.join("admin-token");
    std::fs::write(&ca, &app.ca_pem).unwrap();
    std::fs::write(&token, &app.admin_token).unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_redeploy"));
    cmd.args(args)
        .arg("--server")
        .arg(&app.base_url)
        .arg("--ca-file")
        .arg(&ca)
        .arg("--token-file")
        .arg(&token);
    for var in ["REDEPLOY_SERVER", "REDEPLOY_TOKEN", "REDEPLOY_TOKEN_FILE"] {
        cmd.env_remove(var);
    }
    tokio::task::spawn_blocking(move || cmd.output().expect("redeploy runs"))
        .await
        .unwrap()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every PC not reset yet checks in at `now`; those that got the reset finish it. Returns how
/// many got it.
async fn check_in_all(
    transport: &HttpsTransport,
    pcs: &mut [Pc],
    done: &mut HashSet<DeviceId>,
    now: OffsetDateTime,
) -> usize {
    let mut reset_now = 0;
    for pc in pcs.iter_mut() {
        if done.contains(&pc.id) {
            continue;
        }
        let report = client::check_in(transport, &mut pc.state, now)
            .await
            .expect("check-in");
        if got_reset(&report) {
            finish_reset(transport, pc, now).await;
            done.insert(pc.id);
            reset_now += 1;
        }
    }
    reset_now
}

async fn an_admin_pauses_resumes_and_cancels_a_wave_reset_from_the_cli(backend: Backend) {
    let (app, clock) = app_at(backend, OffsetDateTime::now_utc(), |_| {}).await;
    let t0 = clock.now();
    let dir = tempfile::tempdir().unwrap();
    let transport = HttpsTransport::new(&app.ca_pem).unwrap();
    let store = app.store.clone();
    // Three waves; REDEPLOY_STEER_PCS=300 runs the lab of issue #15 (docs/benchmarks.md).
    let n: usize = std::env::var("REDEPLOY_STEER_PCS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12)
        .max(3)
        / 3
        * 3;
    let wave = n / 3;
    let wave_text = wave.to_string();
    let mut pcs = enroll_fleet(&app, &transport, "steer", n, 4, t0).await;
    let ids: Vec<DeviceId> = pcs.iter().map(|p| p.id).collect();
    let group = Group::new_static(GroupId::generate(), "Lab steer", ids.clone(), t0);
    store.create_group(&group).await.unwrap();

    // Started from the CLI: three waves of four, 30 minutes apart.
    let out = cli(
        &app,
        dir.path(),
        &[
            "reset",
            "--group",
            "Lab steer",
            "--confirm",
            "Lab steer",
            "--wave-size",
            &wave_text,
            "--wave-interval",
            "1800",
            "--json",
        ],
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = created["batch_id"].as_str().unwrap().to_owned();

    // Paused a minute in: the first wave still goes out, the other two are held.
    clock.advance(Duration::minutes(1));
    let out = cli(&app, dir.path(), &["batches", "pause", &id]).await;
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout(&out).contains("is paused: 2 waves held"),
        "{}",
        stdout(&out)
    );
    let again = cli(&app, dir.path(), &["batches", "pause", &id]).await;
    assert_eq!(again.status.code(), Some(1), "{again:?}");
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("resume or cancel"),
        "{again:?}"
    );
    let mut done = HashSet::new();
    assert_eq!(
        check_in_all(&transport, &mut pcs, &mut done, clock.now()).await,
        wave
    );

    // A PC of a waiting wave is not offered a second reset meanwhile.
    let waiting = store
        .waiting_wave_devices(Some(&ids))
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.device)
        .collect::<HashSet<_>>();
    assert_eq!(waiting.len(), 2 * wave);
    let other = *waiting.iter().next().unwrap();
    let out = cli(&app, dir.path(), &["reset", &other.to_string(), "--json"]).await;
    let single: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert!(
        format!("{single}{}", String::from_utf8_lossy(&out.stdout)).contains("waits in wave"),
        "{out:?}"
    );

    // Past both due times: nothing is released while paused.
    clock.advance(Duration::minutes(90));
    assert_eq!(app.tick().await.waves_released, 0, "paused");
    assert_eq!(
        check_in_all(&transport, &mut pcs, &mut done, clock.now()).await,
        0
    );

    // Resumed at t0+91: each wave is due 90 minutes later than planned (t0+120, t0+150).
    let out = cli(&app, dir.path(), &["batches", "resume", &id]).await;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(app.tick().await.waves_released, 0, "the spacing is kept");
    clock.set(t0 + Duration::minutes(120));
    assert_eq!(app.tick().await.waves_released, 1);

    // Canceled before the second wave's PCs check in: its actions and the third wave go.
    let out = cli(&app, dir.path(), &["batches", "cancel", &id, "--json"]).await;
    assert!(out.status.success(), "{out:?}");
    let steered: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(steered["batch"]["state"], "canceled");
    assert_eq!(
        (
            steered["waves"].as_u64(),
            steered["canceled_actions"].as_u64()
        ),
        (Some(1), Some(wave as u64))
    );
    clock.advance(Duration::days(2));
    assert_eq!(app.tick().await.waves_released, 0, "canceled");
    assert_eq!(
        check_in_all(&transport, &mut pcs, &mut done, clock.now()).await,
        0
    );
    for pc in &pcs {
        let expected = usize::from(done.contains(&pc.id));
        assert_eq!(resets_started(&pc.state), expected, "{}", pc.state.id);
    }

    // `batches wait` returns at once on a settled batch, exit 1: not every action is done.
    let out = cli(
        &app,
        dir.path(),
        &["batches", "wait", &id, "--timeout", "30"],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stdout(&out).contains(&format!("{wave} canceled")),
        "{}",
        stdout(&out)
    );

    // Followed from the CLI: settled once canceled and the first wave is done.
    let out = cli(&app, dir.path(), &["batches", "show", &id, "--json"]).await;
    assert!(out.status.success(), "{out:?}");
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["settled"], true, "{status}");
    assert_eq!(status["batch"]["state"], "canceled");
    assert_eq!(status["counts"]["done"], wave);
    assert_eq!(status["counts"]["canceled"], wave);
    let waves: Vec<(u64, bool)> = status["waves"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["index"].as_u64().unwrap(),
                w["released"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(waves, vec![(0, true), (1, true), (2, false)]);
    let audit: Vec<String> = store
        .list_audit(&AuditQuery {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.batch.map(|b| b.to_string()) == Some(id.clone()))
        .map(|e| e.action)
        .collect();
    for verb in [
        "batch.create",
        "batch.pause",
        "batch.resume",
        "batch.wave",
        "batch.cancel",
    ] {
        assert!(audit.iter().any(|a| a == verb), "{verb} in {audit:?}");
    }
}
