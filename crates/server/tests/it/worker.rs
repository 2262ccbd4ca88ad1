//! The background worker: `worker::tick` on the in-memory router state with a manual clock
//! (expiry, waves, schedules, metrics), and the server's own loop ticking on a real server.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use axum::body::Body;
use http::Request;
use redeploy_core::action::{self, ActionSettings};
use redeploy_core::batch::{self, Target, WaveSettings};
use redeploy_core::group::Group;
use redeploy_core::schedule::{Recurrence, Schedule};
use redeploy_core::{
    ActionKind, ActionState, Clock, Device, DeviceId, Enrollment, EnrollmentId, EnrollmentType,
    GroupId, JoinType, ManualClock, ScheduleId, Store,
};
use server::worker::{tick, TickReport};
use server::AppState;
use time::macros::{datetime, time};
use time::{Duration, OffsetDateTime};
use tower::ServiceExt;

const T0: OffsetDateTime = datetime!(2026-06-01 10:00 UTC);

/// Router state on a manual clock at [`T0`] with `n` healthy Entra-joined devices seen at T0.
async fn state_with_devices(n: usize) -> (AppState, Arc<ManualClock>, Vec<DeviceId>) {
    let mut state = testkit::app::router_state().await;
    let clock = Arc::new(ManualClock::new(T0));
    state.clock = clock.clone();
    let mut ids = Vec::new();
    for i in 0..n {
        let mut d = Device::new(DeviceId::generate(), format!("PC-{i}"), T0);
        d.hw_dev_id = Some(format!("HW-{i}"));
        d.enrollment_type = Some(EnrollmentType::Device);
        d.join_type = JoinType::EntraJoined;
        d.join_evidence = redeploy_core::JoinEvidence::EntraToken;
        d.cert_not_after = Some(T0 + Duration::days(365));
        d.os_version = Some("10.0.22631.4037".into());
        d.os_platform = Some("Windows 11 Enterprise".into());
        d.last_seen = Some(T0);
        let e = Enrollment {
            id: EnrollmentId::generate(),
            device: d.id,
            enrollment_type: EnrollmentType::Device,
            upn: None,
            auth_method: "OnPremise".into(),
            context: vec![],
            raw_request: b"<s:Envelope/>".to_vec(),
            cert_thumbprint: format!("{i:040}"),
            cert_serial: "01".into(),
            cert_not_after: T0 + Duration::days(365),
            created_at: T0,
            replaced_by: None,
        };
        ids.push(state.store.create_enrollment(d, e).await.unwrap().device);
    }
    (state, clock, ids)
}

async fn group_of(store: &dyn Store, name: &str, ids: &[DeviceId]) -> GroupId {
    let g = Group::new_static(GroupId::generate(), name, ids.to_vec(), T0);
    store.create_group(&g).await.unwrap();
    g.id
}

fn nightly(group: GroupId, next_run: OffsetDateTime) -> Schedule {
    Schedule {
        id: ScheduleId::generate(),
        name: "Nightly".into(),
        group,
        kind: ActionKind::AutopilotReset,
        tz: "Europe/Berlin".parse().unwrap(),
        recurrence: Recurrence::Daily(time!(2:00)),
        window: None,
        enabled: true,
        next_run: Some(next_run),
        last_run: None,
    }
}

async fn metrics(state: &AppState) -> String {
    // Served to anyone here: the router is asked directly, without an API token.
    let mut state = state.clone();
    Arc::make_mut(&mut state.settings).metrics_public = true;
    let response = server::app(state)
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    String::from_utf8(body.to_vec()).unwrap()
}

#[tokio::test]
async fn a_tick_expires_releases_and_fires_and_metrics_count_it() {
    let (state, clock, ids) = state_with_devices(4).await;
    let store = state.store.as_ref();
    assert_eq!(tick(&state).await.unwrap(), TickReport::default());

    // A sync on PC-0 that never goes out: expired once action_expiry (7 days) passed.
    let stuck = action::request(
        store,
        ids[0],
        ActionKind::Sync,
        "admin",
        T0,
        &ActionSettings::default(),
    )
    .await
    .unwrap();
    // Resets on PC-1 and PC-2 in waves of one, 30 minutes apart.
    let batch = batch::execute(
        store,
        &Target::Devices(vec![ids[1], ids[2]]),
        ActionKind::AutopilotReset,
        "admin",
        T0,
        &ActionSettings::default(),
        None,
        &WaveSettings {
            wave_size: 1,
            interval: Duration::minutes(30),
            daily_cap: None,
        },
    )
    .await
    .unwrap();
    assert_eq!((batch.queued(), batch.deferred()), (1, 1));
    // A schedule on PC-3 due at T0 + 30 min.
    let group = group_of(store, "Lab 3", &ids[3..]).await;
    let s = nightly(group, T0 + Duration::minutes(30));
    store.create_schedule(&s).await.unwrap();

    clock.advance(Duration::minutes(29));
    assert_eq!(tick(&state).await.unwrap(), TickReport::default());
    clock.advance(Duration::minutes(1));
    let report = tick(&state).await.unwrap();
    assert_eq!(
        report,
        TickReport {
            expired: 0,
            waves_released: 1,
            schedules_fired: 1,
            webhooks_delivered: 0,
        }
    );
    assert_eq!(
        store.actions_of_batch(batch.batch_id).await.unwrap().len(),
        2
    );
    let fired = store.schedule(s.id).await.unwrap().unwrap();
    assert_eq!(fired.last_run, Some(clock.now()));
    assert!(fired.next_run.unwrap() > clock.now());
    assert_eq!(
        store
            .active_action(ids[3])
            .await
            .unwrap()
            .unwrap()
            .requested_by,
        "schedule:Nightly"
    );

    clock.set(T0 + Duration::days(7) + Duration::seconds(1));
    // The sync and wave 1's reset: nothing moved for 7 days; the later two are younger.
    assert_eq!(tick(&state).await.unwrap().expired, 2);
    clock.set(T0 + Duration::days(7) + Duration::minutes(31));
    assert_eq!(tick(&state).await.unwrap().expired, 2);
    let expired = store.action(stuck.id).await.unwrap().unwrap();
    assert_eq!(expired.state, ActionState::Expired);

    let text = metrics(&state).await;
    for line in [
        "redeploy_worker_ticks_total{outcome=\"ok\"} 5",
        "redeploy_actions_expired_total 4",
        "redeploy_waves_released_total 1",
        // The nightly schedule fired again at the first tick a week later.
        "redeploy_schedules_fired_total 2",
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
}

#[tokio::test]
async fn two_ticks_at_the_same_moment_fire_a_schedule_once() {
    let (state, _clock, ids) = state_with_devices(2).await;
    let store = state.store.as_ref();
    let group = group_of(store, "Pair", &ids).await;
    store.create_schedule(&nightly(group, T0)).await.unwrap();
    let (a, b) = tokio::join!(tick(&state), tick(&state));
    let fired = a.unwrap().schedules_fired + b.unwrap().schedules_fired;
    assert_eq!(fired, 1);
    for id in &ids {
        assert_eq!(store.actions_of_device(*id).await.unwrap().len(), 1);
    }
}

/// The server's own loop: with a short interval it expires a stuck action without any test
/// calling `tick`, and it stops with the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_loop_ticks_on_its_own() {
    let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
    let app =
        testkit::app::spawn_app_with_clock(testkit::app::Backend::Sqlite, clock.clone(), |s| {
            s.worker_interval = StdDuration::from_millis(20);
            s.action_expiry = StdDuration::from_secs(3600);
        })
        .await;
    let mut d = Device::new(DeviceId::generate(), "PC-loop", clock.now());
    d.hw_dev_id = Some("HW-loop".into());
    let e = Enrollment {
        id: EnrollmentId::generate(),
        device: d.id,
        enrollment_type: EnrollmentType::Device,
        upn: None,
        auth_method: "OnPremise".into(),
        context: vec![],
        raw_request: b"<s:Envelope/>".to_vec(),
        cert_thumbprint: "ab".repeat(20),
        cert_serial: "01".into(),
        cert_not_after: clock.now() + Duration::days(365),
        created_at: clock.now(),
        replaced_by: None,
    };
    let device = app.store.create_enrollment(d, e).await.unwrap().device;
    let sync = action::request(
        &*app.store,
        device,
        ActionKind::Sync,
        "admin",
        clock.now(),
        &ActionSettings::default(),
    )
    .await
    .unwrap();
    assert_eq!(sync.state, ActionState::Pending);
    clock.advance(Duration::hours(2));
    let deadline = std::time::Instant::now() + StdDuration::from_secs(20);
    loop {
        let now = app.store.action(sync.id).await.unwrap().unwrap();
        if now.state == ActionState::Expired {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the loop did not expire the action: {:?}",
            now.timeline
        );
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
    // The tick records its counts when all its steps (webhooks last) are through, a moment after
    // the expiry is stored.
    loop {
        let text = app
            .client()
            .get(app.url("/metrics"))
            .bearer_auth(&app.admin_token)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if text.contains("redeploy_actions_expired_total 1") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{text}");
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
}
