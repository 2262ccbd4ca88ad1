//! Bulk resets of a 500-device group in waves, driven by a manual clock: dry run, typed
//! confirmation, wave release, and the daily cap.

use std::collections::HashMap;

use redeploy_core::action::ActionSettings;
use redeploy_core::batch::{
    execute, plan, release_due_waves, ItemOutcome, PlanOutcome, Target, WaveSettings,
};
use redeploy_core::group::Group;
use redeploy_core::session::SessionError;
use redeploy_core::store::{GroupStore, WaveStore};
use redeploy_core::{
    ActionKind, ActionState, Clock, Device, DeviceId, Enrollment, EnrollmentId, EnrollmentType,
    GroupId, JoinType, ManualClock,
};
use store_sqlite::SqliteStore;
use time::macros::datetime;
use time::Duration;

use crate::harness::{ActionStore, AuditLog, EnrollmentStore};

async fn lab(n: usize, old_build_at: usize) -> (SqliteStore, Vec<DeviceId>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::connect(dir.path().join("t.db").to_str().unwrap())
        .await
        .unwrap();
    let at = datetime!(2026-04-01 8:00 UTC);
    let mut ids = Vec::new();
    for i in 0..n {
        let mut d = Device::new(DeviceId::generate(), format!("LAB-{i:03}"), at);
        d.hw_dev_id = Some(format!("HW-{i}"));
        d.enrollment_type = Some(EnrollmentType::Device);
        d.join_type = JoinType::EntraJoined;
        d.join_evidence = redeploy_core::JoinEvidence::EntraToken;
        d.cert_not_after = Some(at + Duration::days(365));
        d.os_version = Some(if i == old_build_at {
            "10.0.10240.1".into()
        } else {
            "10.0.22631.4037".into()
        });
        d.os_platform = Some("Windows 11 Education".into());
        d.last_seen = Some(datetime!(2026-05-04 8:00 UTC));
        let e = Enrollment {
            id: EnrollmentId::generate(),
            device: d.id,
            enrollment_type: EnrollmentType::Device,
            upn: None,
            auth_method: "Federated".into(),
            context: vec![],
            raw_request: b"<s:Envelope/>".to_vec(),
            cert_thumbprint: format!("{i:040}"),
            cert_serial: "01".into(),
            cert_not_after: at + Duration::days(365),
            created_at: at,
            replaced_by: None,
        };
        ids.push(store.create_enrollment(d, e).await.unwrap().device);
    }
    (store, ids, dir)
}

#[tokio::test]
async fn group_of_500_is_reset_in_waves_of_100_under_a_daily_cap() {
    let (store, ids, _dir) = lab(500, 7).await;
    let clock = ManualClock::new(datetime!(2026-05-04 9:00 UTC));
    let settings = ActionSettings::default();
    let group = Group::new_static(GroupId::generate(), "Lab 2", ids.clone(), clock.now());
    store.create_group(&group).await.unwrap();
    let target = Target::Group(group.id);
    let kind = ActionKind::AutopilotReset;

    // Dry run: no cap on size, one blocked device, nothing created.
    let p = plan(&store, &target, kind, clock.now(), &settings)
        .await
        .unwrap();
    assert_eq!(p.items.len(), 500);
    assert_eq!(p.would_queue(), 499);
    let blocked: Vec<_> = p
        .items
        .iter()
        .filter(|i| matches!(i.outcome, PlanOutcome::Blocked(_)))
        .collect();
    assert_eq!(blocked.len(), 1);
    assert_eq!(blocked[0].device_id, ids[7]);
    assert!(store.actions_of_device(ids[0]).await.unwrap().is_empty());

    // Group-wide resets need the group's name typed.
    let waves = WaveSettings {
        wave_size: 100,
        interval: Duration::hours(1),
        daily_cap: Some(350),
    };
    for typed in [None, Some("lab 2")] {
        let err = execute(
            &store,
            &target,
            kind,
            "admin",
            clock.now(),
            &settings,
            typed,
            &waves,
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&err, SessionError::NotAllowed(m) if m.contains("\"Lab 2\"")),
            "{err}"
        );
    }
    assert!(store.actions_of_device(ids[0]).await.unwrap().is_empty());

    let first = execute(
        &store,
        &target,
        kind,
        "admin",
        clock.now(),
        &settings,
        Some("Lab 2"),
        &waves,
    )
    .await
    .unwrap();
    assert_eq!(first.items.len(), 500);
    assert_eq!(first.queued() + first.blocked(), 100);
    assert_eq!(first.deferred(), 400);
    let batch = first.batch_id;
    let audit = store
        .list_audit(&redeploy_core::store::AuditQuery {
            device: None,
            after: None,
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap();
    let created: Vec<_> = audit
        .iter()
        .filter(|e| e.action == "batch.create")
        .collect();
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].batch, Some(batch));
    assert!(
        created[0].details.contains("400 deferred"),
        "{}",
        created[0].details
    );

    // Nothing is due before the interval.
    clock.advance(Duration::minutes(30));
    assert!(
        release_due_waves(&store, clock.now(), &settings, waves.daily_cap)
            .await
            .unwrap()
            .is_empty()
    );
    let mut day1 = 0;
    for _ in 0..4 {
        clock.set(clock.now().replace_minute(0).unwrap() + Duration::hours(1));
        let released = release_due_waves(&store, clock.now(), &settings, waves.daily_cap)
            .await
            .unwrap();
        assert_eq!(released.len(), 1, "one wave per hour");
        day1 += released[0].queued();
    }
    let queued_day1 = first.queued() + day1;
    assert_eq!(queued_day1, 350, "the daily cap holds across waves");
    let day = datetime!(2026-05-04 0:00 UTC);
    assert_eq!(
        store
            .count_actions_created(&[kind], day, day + Duration::days(1))
            .await
            .unwrap(),
        350
    );
    // Waves left over by the cap wait for the next UTC day.
    clock.set(datetime!(2026-05-04 23:59 UTC));
    assert!(
        release_due_waves(&store, clock.now(), &settings, waves.daily_cap)
            .await
            .unwrap()
            .is_empty()
    );
    clock.set(datetime!(2026-05-05 0:00 UTC));
    let next_day = release_due_waves(&store, clock.now(), &settings, waves.daily_cap)
        .await
        .unwrap();
    assert_eq!(next_day.iter().map(|r| r.queued()).sum::<usize>(), 149);
    assert!(next_day.iter().all(|r| r.deferred() == 0));

    // Every device got exactly one action in the batch; only the old build is blocked.
    let actions = store.actions_of_batch(batch).await.unwrap();
    assert_eq!(actions.len(), 500);
    let by_device: HashMap<_, _> = actions.iter().map(|a| (a.device, a)).collect();
    assert_eq!(by_device.len(), 500);
    for (i, id) in ids.iter().enumerate() {
        let expected = if i == 7 {
            ActionState::Blocked
        } else {
            ActionState::Pending
        };
        assert_eq!(by_device[id].state, expected, "device {i}");
    }
    // Released waves are never released twice.
    assert!(
        release_due_waves(&store, clock.now(), &settings, waves.daily_cap)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store
        .waves_of_batch(batch)
        .await
        .unwrap()
        .iter()
        .all(|w| w.released_at.is_some()));
}

#[tokio::test]
async fn device_list_reports_unknown_ids_and_needs_no_confirmation() {
    let (store, ids, _dir) = lab(3, 99).await;
    let settings = ActionSettings::default();
    let now = datetime!(2026-05-04 9:00 UTC);
    let ghost = DeviceId::generate();
    let target = Target::Devices(vec![ids[0], ghost, ids[1], ids[0]]);
    let p = plan(&store, &target, ActionKind::Wipe, now, &settings)
        .await
        .unwrap();
    let outcomes: Vec<_> = p.items.iter().map(|i| i.outcome.clone()).collect();
    assert_eq!(
        outcomes,
        [
            PlanOutcome::WouldQueue,
            PlanOutcome::NotFound,
            PlanOutcome::WouldQueue
        ]
    );
    let r = execute(
        &store,
        &target,
        ActionKind::Wipe,
        "admin",
        now,
        &settings,
        None,
        &WaveSettings::default(),
    )
    .await
    .unwrap();
    assert_eq!((r.queued(), r.not_found(), r.deferred()), (2, 1, 0));
    assert!(matches!(r.items[1].outcome, ItemOutcome::NotFound));
    let a = store.actions_of_device(ids[0]).await.unwrap();
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].batch, Some(r.batch_id));
    assert!(store.actions_of_device(ids[2]).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_nightly_schedule_fires_a_batch_and_moves_to_the_next_night() {
    use redeploy_core::schedule::{fire_due, next_occurrence, Recurrence, Schedule};
    use redeploy_core::store::ScheduleStore;
    use redeploy_core::ScheduleId;

    let (store, ids, _dir) = lab(3, 99).await;
    let settings = ActionSettings::default();
    let group = Group::new_static(
        GroupId::generate(),
        "Night lab",
        ids.clone(),
        datetime!(2026-05-01 0:00 UTC),
    );
    store.create_group(&group).await.unwrap();
    let mut s = Schedule {
        id: ScheduleId::generate(),
        name: "Nightly".into(),
        group: group.id,
        kind: ActionKind::AutopilotReset,
        tz: "Europe/Berlin".parse().unwrap(),
        recurrence: Recurrence::Daily(time::macros::time!(22:00)),
        window: None,
        enabled: true,
        next_run: None,
        last_run: None,
    };
    let start = datetime!(2026-05-04 9:00 UTC);
    s.next_run = next_occurrence(&s, start);
    assert_eq!(s.next_run, Some(datetime!(2026-05-04 20:00 UTC)));
    store.create_schedule(&s).await.unwrap();

    let waves = WaveSettings::default();
    assert!(fire_due(&store, start, &settings, &waves)
        .await
        .unwrap()
        .is_empty());
    let at = datetime!(2026-05-04 20:00 UTC);
    let fired = fire_due(&store, at, &settings, &waves).await.unwrap();
    assert_eq!(fired.len(), 1);
    let batch = fired[0].1.as_ref().unwrap();
    assert_eq!(batch.queued(), 3);
    let after = store.schedule(s.id).await.unwrap().unwrap();
    assert_eq!(after.last_run, Some(at));
    assert_eq!(after.next_run, Some(datetime!(2026-05-05 20:00 UTC)));
    assert!(fire_due(&store, at, &settings, &waves)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn filter_target_uses_names_and_autopilot_group_tags() {
    use redeploy_core::autopilot::parse_autopilot_csv;
    use redeploy_core::group::{DeviceFilter, TextMatch};
    use redeploy_core::store::{AutopilotRegistry, DeviceStore};

    let (store, ids, _dir) = lab(4, 99).await;
    for (i, id) in ids.iter().enumerate() {
        let mut d = store.device(*id).await.unwrap().unwrap();
        d.serial = Some(format!("SN-{i}"));
        store.update_device(&d).await.unwrap();
    }
    let csv = "Device Serial Number,Windows Product ID,Hardware Hash,Group Tag\n\
               SN-0,,QUJD,Lab\nSN-1,,QUJD,Office\nsn-2,,QUJD,lab\n";
    let import = parse_autopilot_csv(csv.as_bytes());
    assert!(import.errors.is_empty());
    let records: Vec<_> = import.records.into_iter().map(|(_, r)| r).collect();
    store.upsert_autopilot(&records).await.unwrap();

    let now = datetime!(2026-05-04 9:00 UTC);
    let target = Target::Filter(DeviceFilter {
        name: Some(TextMatch::Prefix("lab-".into())),
        group_tag: Some("LAB".into()),
        ..DeviceFilter::default()
    });
    let p = plan(
        &store,
        &target,
        ActionKind::AutopilotReset,
        now,
        &ActionSettings::default(),
    )
    .await
    .unwrap();
    let mut expected = vec![ids[0], ids[2]];
    expected.sort();
    assert_eq!(
        p.items.iter().map(|i| i.device_id).collect::<Vec<_>>(),
        expected
    );
    assert_eq!(p.would_queue(), 2);
}

/// A bulk request's own daily cap is stored with its later waves and the worker releases them
/// under it, not under the server-wide default; waves stored without a cap take the default.
#[tokio::test]
async fn later_waves_keep_the_daily_cap_of_their_request() {
    let (store, ids, _dir) = lab(6, 99).await;
    let settings = ActionSettings::default();
    let now = datetime!(2026-05-04 9:00 UTC);
    let waves = WaveSettings {
        wave_size: 2,
        interval: Duration::hours(1),
        daily_cap: Some(3),
    };
    let target = Target::Devices(ids[..4].to_vec());
    let r = execute(
        &store,
        &target,
        ActionKind::Wipe,
        "admin",
        now,
        &settings,
        None,
        &waves,
    )
    .await
    .unwrap();
    assert_eq!((r.queued(), r.deferred()), (2, 2));
    let stored = store.waves_of_batch(r.batch_id).await.unwrap();
    assert_eq!(stored[0].daily_cap, Some(3));

    // The server has no cap, yet the wave stops at the request's 3 and defers the last device
    // to the next UTC midnight (with the same cap).
    let released = release_due_waves(&store, now + Duration::hours(1), &settings, None)
        .await
        .unwrap();
    assert_eq!(released.len(), 1);
    assert_eq!((released[0].queued(), released[0].deferred()), (1, 1));
    let next = store.waves_of_batch(r.batch_id).await.unwrap();
    let next = next.last().unwrap();
    assert_eq!(
        (next.due_at, next.daily_cap),
        (datetime!(2026-05-05 0:00 UTC), Some(3))
    );

    // A request without a cap: its wave follows the server-wide default at release time.
    let uncapped = WaveSettings {
        daily_cap: None,
        ..waves
    };
    let day2 = datetime!(2026-05-06 9:00 UTC);
    let r = execute(
        &store,
        &Target::Devices(ids[4..].to_vec()),
        ActionKind::Wipe,
        "admin",
        day2,
        &settings,
        None,
        &WaveSettings {
            wave_size: 1,
            ..uncapped
        },
    )
    .await
    .unwrap();
    assert_eq!((r.queued(), r.deferred()), (1, 1));
    assert_eq!(
        store.waves_of_batch(r.batch_id).await.unwrap()[0].daily_cap,
        None
    );
    // (The earlier batch's deferred wave is due too: it keeps its own cap of 3 and goes out.)
    let released = release_due_waves(&store, day2 + Duration::hours(1), &settings, Some(1))
        .await
        .unwrap();
    let counts: Vec<_> = released
        .iter()
        .map(|b| (b.batch_id == r.batch_id, b.queued(), b.deferred()))
        .collect();
    assert_eq!(counts, [(false, 1, 0), (true, 0, 1)]);
}
