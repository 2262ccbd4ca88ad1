//! State files, resume after a restart, and the fleet runner under a manual clock.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use device::fleet::{self, FleetConfig, FleetMix};
use device::schedule::{Clock, ManualClock};
use device::state::JoinType;
use device::{persist, DeviceProfile};
use time::{Duration, OffsetDateTime};

use crate::common::{device, t0};
use crate::fake::{FakeServer, Mdm, SERVER, TOKEN};
use device::reset;
use device::state::{reset_status, EventKind};

#[test]
fn state_files_round_trip_atomically_and_are_found_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let pc = device();
    persist::save(dir.path(), &pc).unwrap();
    persist::save(dir.path(), &pc).unwrap();
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        vec![format!("{}.json", pc.id)],
        "no temporary file left"
    );
    assert_eq!(persist::load_id(dir.path(), &pc.id).unwrap().unwrap(), pc);
    assert_eq!(persist::find(dir.path(), &pc.computer_name).unwrap(), pc);
    assert_eq!(
        persist::find(dir.path(), &pc.computer_name.to_lowercase()).unwrap(),
        pc
    );
    let missing = persist::find(dir.path(), "PC-NOPE").unwrap_err();
    assert!(missing.to_string().contains("PC-NOPE"));
    assert!(persist::load_all(&dir.path().join("absent"))
        .unwrap()
        .is_empty());
}

#[test]
fn fleet_mix_is_seeded_and_applies_the_shares() {
    let base = DeviceProfile::default();
    let all = FleetMix {
        hybrid: 1.0,
        low_battery: 1.0,
        ..FleetMix::default()
    };
    let p = fleet::profile_for(&base, &all, 9, 3);
    assert_eq!(p.join, JoinType::Hybrid);
    assert_eq!(p.battery_pct, Some(fleet::LOW_BATTERY_PCT));
    assert!(p.winre_enabled);

    let half = FleetMix {
        winre_disabled: 0.5,
        ..FleetMix::default()
    };
    let disabled = (0..400)
        .filter(|i| !fleet::profile_for(&base, &half, 9, *i).winre_enabled)
        .count();
    assert!((150..250).contains(&disabled), "{disabled} of 400");
    let again = (0..400)
        .filter(|i| !fleet::profile_for(&base, &half, 9, *i).winre_enabled)
        .count();
    assert_eq!(disabled, again, "same seed, same fleet");

    let mut config = FleetConfig::new(SERVER, TOKEN, 1, "unused");
    config.profile.usb_package = true;
    config.usb_package_name = Some("Lab-Refresh.ppkg".into());
    let pc = fleet::build_device(&config, 0, t0());
    assert_eq!(pc.usb_package.unwrap().name, "Lab-Refresh.ppkg");
    assert_eq!(
        fleet::build_device(&config, 5, t0()),
        fleet::build_device(&config, 5, t0()),
        "PC 5 is the same PC on every run"
    );
}

/// Runs the fleet to `stop_at`, moving the manual clock a minute at a time.
async fn drive(
    config: FleetConfig,
    server: Arc<FakeServer>,
    start: OffsetDateTime,
) -> fleet::FleetSummary {
    let clock = Arc::new(ManualClock::new(start));
    let run = {
        let clock: Arc<dyn Clock> = clock.clone();
        let server: Arc<dyn device::Transport> = server;
        tokio::spawn(async move { fleet::run(&config, server, clock, None).await })
    };
    while !run.is_finished() {
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        clock.advance(Duration::minutes(1));
    }
    run.await.unwrap().unwrap()
}

#[tokio::test]
async fn a_fleet_enrolls_checks_in_persists_and_resumes_without_re_enrolling() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = FleetConfig::new(SERVER, TOKEN, 3, dir.path());
    config.stop_at = Some(t0() + Duration::minutes(50));
    config.max_in_flight = 2;

    let server = Arc::new(FakeServer::new(Mdm::Idle));
    let summary = drive(config.clone(), server.clone(), t0()).await;
    assert_eq!(summary.devices, 3);
    assert_eq!(summary.enrolled, 3);
    assert_eq!(summary.enrollments, 3);
    assert_eq!(summary.resumed, 0);
    assert_eq!(summary.sessions_failed, 0, "{summary}");
    // At once after enrollment, then every 15 minutes: 4 sessions each in 50 minutes.
    assert!(summary.sessions_ok >= 12, "{summary}");
    assert_eq!(server.count("/EnrollmentServer/Enrollment.svc"), 3);
    let saved = persist::load_all(dir.path()).unwrap();
    assert_eq!(saved.len(), 3);
    assert!(saved.iter().all(|s| s.is_enrolled()));
    let sessions_before: u64 = saved.iter().map(|s| s.dm_client.sessions_ok).sum();

    // A restart 50 minutes later: the same PCs come back from their files, do not enroll
    // again and go on with their poll schedule.
    let server = Arc::new(FakeServer::new(Mdm::Idle));
    config.stop_at = Some(t0() + Duration::minutes(100));
    let summary = drive(config, server.clone(), t0() + Duration::minutes(50)).await;
    assert_eq!(summary.resumed, 3);
    assert_eq!(summary.enrollments, 0);
    assert_eq!(summary.enrolled, 3);
    assert_eq!(server.count("/EnrollmentServer/"), 0);
    let resumed = persist::load_all(dir.path()).unwrap();
    let thumbs = |v: &[device::DeviceState]| -> Vec<String> {
        v.iter()
            .map(|s| s.mdm_enrollment.as_ref().unwrap().thumbprint.clone())
            .collect()
    };
    assert_eq!(thumbs(&resumed), thumbs(&saved));
    let sessions_after: u64 = resumed.iter().map(|s| s.dm_client.sessions_ok).sum();
    assert!(sessions_after > sessions_before);
}

#[tokio::test]
async fn failed_enrollments_are_counted_by_kind() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = FleetConfig::new(SERVER, TOKEN, 2, dir.path());
    config.stop_at = Some(t0() + Duration::minutes(20));
    let mut server = FakeServer::new(Mdm::Idle);
    server.rst_fault = Some(enroll::Fault::new(
        enroll::FaultCode::Authorization,
        "not allowed",
    ));
    let summary = drive(config, Arc::new(server), t0()).await;
    assert_eq!(summary.enrolled, 0);
    // Two PCs, each tried at 0 and again after 15 minutes.
    assert_eq!(
        summary.errors_by_kind.get("enrollment_fault"),
        Some(&4),
        "{summary}"
    );
    assert!(summary.to_string().contains("enrollment_fault 4"));
}

#[tokio::test]
async fn a_fleet_runs_remote_resets_and_counts_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = FleetConfig::new(SERVER, TOKEN, 4, dir.path());
    // PC 0 and 2 have WinRE disabled; the reset takes 30 minutes offline.
    config.stop_at = Some(t0() + Duration::minutes(90));
    let server = Arc::new(FakeServer::new(Mdm::ResetEachPcOnce(Default::default())));
    let mut winre_off = Vec::new();
    for i in 0..4 {
        let mut pc = fleet::build_device(&config, i, t0());
        if i % 2 == 0 {
            pc.winre_enabled = false;
            winre_off.push(pc.id.clone());
        }
        persist::save(dir.path(), &pc).unwrap();
    }
    let summary = drive(config, server.clone(), t0()).await;
    assert_eq!(summary.resumed, 4, "not enrolled yet, but built and saved");
    assert_eq!(summary.enrollments, 4);
    assert_eq!(summary.resets_done, 2, "{summary}");
    assert_eq!(summary.resets_failed, 2, "refused at Exec: {summary}");
    assert_eq!(summary.pc_resets.remote_autopilot, 2, "{summary}");
    assert_eq!(summary.pc_resets.wipes, 0);
    assert!(
        summary
            .to_string()
            .contains("completed on the PCs (all runs): 2 remote Autopilot Resets"),
        "{summary}"
    );
    let pcs = persist::load_all(dir.path()).unwrap();
    for pc in &pcs {
        let want = if winre_off.contains(&pc.id) {
            device::state::reset_status::FAILED_AT_EXEC
        } else {
            device::state::reset_status::COMPLETE
        };
        assert_eq!(pc.autopilot_reset.status, want, "{}", pc.id);
        assert!(pc.online);
    }
}

#[test]
fn a_pc_lock_is_exclusive_and_an_external_change_is_taken_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut pc = device();
    persist::save(dir.path(), &pc).unwrap();
    let held = persist::lock(dir.path(), &pc.id).unwrap();
    assert!(
        persist::try_lock(dir.path(), &pc.id).unwrap().is_none(),
        "a second holder waits"
    );
    assert!(persist::try_lock(dir.path(), "pc-other").unwrap().is_some());
    assert!(persist::take_external_change(dir.path(), &pc.id)
        .unwrap()
        .is_none());
    pc.winre_enabled = false;
    persist::save_external(dir.path(), &pc).unwrap();
    drop(held);
    let _again = persist::try_lock(dir.path(), &pc.id)
        .unwrap()
        .expect("free");
    let taken = persist::take_external_change(dir.path(), &pc.id).unwrap();
    assert_eq!(taken, Some(pc.clone()));
    assert!(persist::take_external_change(dir.path(), &pc.id)
        .unwrap()
        .is_none());
    // Lock and flag files are not PCs.
    assert_eq!(persist::load_all(dir.path()).unwrap(), vec![pc]);
}

#[tokio::test]
async fn a_change_saved_by_a_one_shot_command_while_the_fleet_runs_is_kept_and_used() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = FleetConfig::new(SERVER, TOKEN, 1, dir.path());
    config.stop_at = Some(t0() + Duration::hours(3));
    let mut pc = fleet::build_device(&config, 0, t0());
    pc.winre_enabled = false;
    persist::save(dir.path(), &pc).unwrap();
    let id = pc.id.clone();

    let server = Arc::new(FakeServer::new(Mdm::Idle));
    let clock = Arc::new(ManualClock::new(t0()));
    let run = {
        let (clock, server): (Arc<dyn Clock>, Arc<dyn device::Transport>) =
            (clock.clone(), server.clone());
        let config = config.clone();
        tokio::spawn(async move { fleet::run(&config, server, clock, None).await })
    };
    let settle = || async {
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
    };
    // Enrolled and checked in once.
    loop {
        settle().await;
        let saved = persist::load_id(dir.path(), &id).unwrap().unwrap();
        if saved.dm_client.sessions_ok >= 1 {
            break;
        }
        clock.advance(Duration::minutes(1));
    }
    // What `redeploy emulate reagentc pc-0000 --enable` does, while the fleet runs.
    {
        let _lock = persist::lock(dir.path(), &id).unwrap();
        let mut s = persist::load_id(dir.path(), &id).unwrap().unwrap();
        assert!(reset::reagentc(&mut s, true, clock.now()).unwrap());
        persist::save_external(dir.path(), &s).unwrap();
    }
    // From now on the server resets each PC at its next session.
    *server.mdm.lock().unwrap() = Mdm::ResetEachPcOnce(Default::default());
    while !run.is_finished() {
        settle().await;
        clock.advance(Duration::minutes(1));
    }
    let summary = run.await.unwrap().unwrap();
    let s = persist::load_id(dir.path(), &id).unwrap().unwrap();
    assert!(s.winre_enabled, "the fleet did not overwrite the change");
    assert!(s
        .events
        .iter()
        .any(|e| e.kind == EventKind::WinreConfigured
            && e.detail == "reagentc /enable: WinRE enabled"));
    assert_eq!(
        s.resets.remote_autopilot, 1,
        "the Exec after reagentc was accepted"
    );
    assert_eq!(s.autopilot_reset.status, 1);
    assert_eq!(summary.resets_failed, 0, "{summary}");
    assert_eq!(summary.pc_resets.remote_autopilot, 1);
}

/// The fake server behind a switch: while `down`, every request fails as a refused
/// connection, as when the server process is stopped or restarting.
struct Outage {
    server: Arc<FakeServer>,
    down: AtomicBool,
    refused: AtomicUsize,
}

#[async_trait::async_trait]
impl device::Transport for Outage {
    async fn post(
        &self,
        url: &str,
        content_type: &str,
        body: Vec<u8>,
        identity: Option<&device::transport::Identity>,
    ) -> device::Result<device::Response> {
        if self.down.load(Ordering::SeqCst) {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return Err(device::DeviceError::Connect(format!(
                "{url}: Connection refused (os error 111)"
            )));
        }
        self.server.post(url, content_type, body, identity).await
    }

    async fn get(&self, url: &str) -> device::Result<device::Response> {
        if self.down.load(Ordering::SeqCst) {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return Err(device::DeviceError::Connect(format!(
                "{url}: Connection refused (os error 111)"
            )));
        }
        self.server.get(url).await
    }
}

async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn a_pc_resets_through_a_long_outage_keeps_polling_and_checks_in_when_the_server_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = FleetConfig::new(SERVER, TOKEN, 1, dir.path());
    // The fake server's poll schedule: 8 polls 15 minutes apart, 5 polls 3 minutes apart,
    // then one every 1560 minutes; 40 hours see the first poll after the outage.
    config.stop_at = Some(t0() + Duration::hours(40));
    let link = Arc::new(Outage {
        server: Arc::new(FakeServer::new(Mdm::ResetEachPcOnce(Default::default()))),
        down: AtomicBool::new(false),
        refused: AtomicUsize::new(0),
    });
    let clock = Arc::new(ManualClock::new(t0()));
    let run = {
        let (clock, link): (Arc<dyn Clock>, Arc<dyn device::Transport>) =
            (clock.clone(), link.clone());
        let config = config.clone();
        tokio::spawn(async move { fleet::run(&config, link, clock, None).await })
    };
    let saved = || persist::load_id(dir.path(), "pc-0000").unwrap().unwrap();
    let is_sync_done =
        |s: &device::DeviceState| s.mdm_enrollment.as_ref().unwrap().first_sync.is_sync_done;
    // The first session (at enrollment) delivers the reset's Exec; the server then goes away
    // for ten hours: the whole reset (10, 20, offline, back) and every poll after it fail.
    let outage = (t0() + Duration::minutes(2), t0() + Duration::hours(10));
    let mut in_outage = None;
    while !run.is_finished() {
        settle().await;
        let now = clock.now();
        link.down
            .store(now >= outage.0 && now < outage.1, Ordering::SeqCst);
        if now == t0() + Duration::hours(9) {
            in_outage = Some(saved());
        }
        clock.advance(Duration::minutes(1));
    }
    let summary = run.await.unwrap().unwrap();

    let during = in_outage.expect("looked during the outage");
    assert_eq!(during.resets.remote_autopilot, 1, "reset completed offline");
    assert_eq!(during.autopilot_reset.status, reset_status::COMPLETE);
    assert!(during.online && !is_sync_done(&during) && !during.desktop_available());
    assert!(
        during.dm_client.sessions_failed >= 10,
        "kept polling: {} failed sessions",
        during.dm_client.sessions_failed
    );

    let after = saved();
    assert_eq!(after.resets.remote_autopilot, 1, "reset once");
    assert!(
        !is_sync_done(&after),
        "the fake server never sets IsSyncDone: the PC does not set it itself"
    );
    assert!(
        after.desktop_available(),
        "the first session after the outage completed the sync"
    );
    assert!(after.dm_client.sessions_ok > during.dm_client.sessions_ok);
    let back: Vec<EventKind> = after
        .events
        .iter()
        .filter(|e| e.at >= outage.1)
        .map(|e| e.kind)
        .collect();
    assert!(
        back.starts_with(&[EventKind::SessionStarted, EventKind::SessionEnded]),
        "{back:?}"
    );
    assert!(back.contains(&EventKind::MdmSyncCompleted), "{back:?}");
    assert!(link.refused.load(Ordering::SeqCst) >= 10);
    assert_eq!(summary.enrolled, 1);
    assert_eq!(summary.resets_done, 1, "{summary}");
    assert!(summary.errors_by_kind["connect"] >= 10, "{summary}");
}

/// Runs a fresh fleet of 3 PCs for 6 hours with 40% of exchanges cut.
async fn fleet_with_cuts() -> (fleet::FleetSummary, Vec<device::DeviceState>) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = FleetConfig::new(SERVER, TOKEN, 3, dir.path());
    config.stop_at = Some(t0() + Duration::hours(6));
    config.drop_replies_pct = Some(40);
    let summary = drive(config, Arc::new(FakeServer::new(Mdm::Idle)), t0()).await;
    (summary, persist::load_all(dir.path()).unwrap())
}

#[tokio::test]
async fn drop_replies_cuts_both_halves_the_fleet_goes_on_and_the_same_seed_cuts_the_same() {
    let (summary, pcs) = fleet_with_cuts().await;
    let lost_requests = summary
        .errors_by_kind
        .get("request_lost")
        .copied()
        .unwrap_or(0);
    let lost_replies = summary
        .errors_by_kind
        .get("reply_lost")
        .copied()
        .unwrap_or(0);
    assert!(lost_requests > 0 && lost_replies > 0, "{summary}");
    assert_eq!(
        summary.sessions_failed,
        lost_requests + lost_replies,
        "{summary}"
    );
    assert!(summary.sessions_ok > 0, "{summary}");
    assert_eq!(summary.enrolled, 3, "enrollment is not cut");
    assert!(pcs.iter().all(|p| p.faults.drop_replies_pct == 40));
    let seeds: std::collections::BTreeSet<u64> = pcs.iter().map(|p| p.faults.seed).collect();
    assert_eq!(seeds.len(), 3, "each PC has its own fault seed");

    let (again, _) = fleet_with_cuts().await;
    assert_eq!(again.errors_by_kind, summary.errors_by_kind, "reproducible");
    assert_eq!(again.sessions_ok, summary.sessions_ok);
}

#[tokio::test(start_paused = true)]
async fn a_pc_changed_by_a_one_shot_command_wakes_up_without_waiting_for_its_poll() {
    let dir = tempfile::tempdir().unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut config = FleetConfig::new(SERVER, TOKEN, 1, dir.path());
    config.shutdown = Some(stopped);
    let server = Arc::new(FakeServer::new(Mdm::Idle));
    // Enrolled, first session done, next poll 15 minutes away.
    let mut pc = fleet::build_device(&config, 0, t0());
    let options = device::client::EnrollOptions {
        server: SERVER.into(),
        token: TOKEN.into(),
        issuer: None,
    };
    device::client::enroll(server.as_ref(), &mut pc, &options, t0())
        .await
        .unwrap();
    device::schedule::tick(server.as_ref(), &mut pc, t0()).await;
    persist::save(dir.path(), &pc).unwrap();

    // The device clock stands still at t0 + 1 minute for the whole test.
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(t0() + Duration::minutes(1)));
    let transport: Arc<dyn device::Transport> = server.clone();
    let run = tokio::spawn(async move { fleet::run(&config, transport, clock, None).await });
    settle().await;
    let sessions = server.dm_messages().len();

    // What `emulate local-reset` leaves behind: a PC due to check in at once.
    {
        let _lock = persist::lock(dir.path(), &pc.id).unwrap();
        let mut s = persist::load_id(dir.path(), &pc.id).unwrap().unwrap();
        s.dm_client.sync_now = true;
        persist::save_external(dir.path(), &s).unwrap();
    }
    // One period of the watcher (tokio's paused clock, not the device clock).
    tokio::time::advance(fleet::EXTERNAL_CHANGE_CHECK).await;
    settle().await;
    assert_eq!(
        server.dm_messages().len(),
        sessions + 1,
        "checked in before its poll was due"
    );
    stop.send(true).unwrap();
    let summary = run.await.unwrap().unwrap();
    assert_eq!(summary.sessions_ok, 1, "{summary}");
    assert!(
        !persist::changed_dir(dir.path()).join(&pc.id).exists(),
        "flag taken"
    );
}

/// Two state folders started with the same seed are two fleets: the same kinds of PCs, never
/// the same identities; the same folder always builds the same PCs.
#[test]
fn the_state_folder_makes_the_fleets_identity() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let salt_a = persist::fleet_salt(a.path()).unwrap();
    assert_eq!(persist::fleet_salt(a.path()).unwrap(), salt_a, "kept");
    let salt_b = persist::fleet_salt(b.path()).unwrap();
    assert_ne!(salt_a, salt_b);
    let pc = |dir: &std::path::Path, salt: u64| {
        let mut config = FleetConfig::new("https://mdm.test", "t", 1, dir);
        config.seed = 7;
        config.identity_salt = salt;
        fleet::build_device(&config, 0, OffsetDateTime::now_utc())
    };
    let (pa, pa_again, pb) = (
        pc(a.path(), salt_a),
        pc(a.path(), salt_a),
        pc(b.path(), salt_b),
    );
    assert_eq!(pa.hardware.hw_dev_id, pa_again.hardware.hw_dev_id);
    assert_eq!(pa.dev_id, pa_again.dev_id);
    assert_eq!(
        (&pa.hardware.model, pa.os.build),
        (&pb.hardware.model, pb.os.build),
        "same kind"
    );
    assert_ne!(pa.hardware.hw_dev_id, pb.hardware.hw_dev_id);
    assert_ne!(pa.hardware.serial, pb.hardware.serial);
    assert_ne!(pa.dev_id, pb.dev_id);
    assert_ne!(pa.entra_join.device_id, pb.entra_join.device_id);
}
