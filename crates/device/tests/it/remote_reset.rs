//! Remote Autopilot Reset: the Exec, the Status node's path 10 → 20 → offline → 1, what is removed
//! and kept (docs/protocol.md §1.2), the desktop gate, and every failure mode.

use std::collections::BTreeSet;

use device::reset::{self, Transition, HR_E_FAIL, HR_JOIN_NOT_SUPPORTED, HR_POWER_NOT_MET};
use device::state::*;
use device::DeviceProfile;
use time::Duration;

use crate::common::*;

fn names<T, F: Fn(&T) -> String>(v: &[T], f: F) -> BTreeSet<String> {
    v.iter().map(f).collect()
}

#[test]
fn remote_reset_walks_the_status_node_and_keeps_only_the_keep_list() {
    let mut s = device();
    let before = s.clone();
    assert!(before.primary_user.is_some());
    assert!(!before.profiles.is_empty() && before.profiles.iter().any(|p| !p.files.is_empty()));
    assert!(before
        .apps
        .iter()
        .any(|a| a.origin == AppOrigin::UserInstalled));
    assert!(before
        .certificates
        .iter()
        .any(|c| c.kind == CertificateKind::UserImported));
    assert!(before
        .certificates
        .iter()
        .any(|c| c.kind == CertificateKind::Scep));
    assert!(!before.wifi_profiles.is_empty());
    assert!(!before.provisioning_packages.is_empty());

    assert_eq!(code(&mut s, exec("5", RESET_NODE)), 200, "Exec accepted");
    assert_eq!(get_data(&mut s, STATUS_NODE), "10");
    assert!(s.online, "still online to finish the session");

    assert_eq!(
        reset::step(&mut s, t0()),
        Some(Transition::WaitingForReboot)
    );
    assert_eq!(get_data(&mut s, STATUS_NODE), "20");
    let op = Operation::AutopilotReset {
        trigger: ResetTrigger::Remote,
    };
    assert_eq!(reset::step(&mut s, t0()), Some(Transition::WentOffline(op)));
    assert!(!s.online, "silent during the reset");
    assert_eq!(reset::step(&mut s, t0()), Some(Transition::Completed(op)));
    assert!(s.online);
    assert_eq!(reset::step(&mut s, t0()), None);

    // Removed / reset.
    assert_eq!(s.primary_user, None, "remote reset clears the primary user");
    assert!(s.profiles.is_empty(), "all user profiles");
    assert_eq!(s.to_show_json()["personal_files"], serde_json::json!([]));
    assert!(!s.apps.iter().any(|a| a.origin == AppOrigin::UserInstalled));
    assert!(s.device_settings.values().all(|v| v.current == v.original));
    assert_eq!(s.region.current, before.region.original);
    assert_eq!(s.language.current, before.language.original);
    assert_eq!(s.keyboard.current, before.keyboard.original);
    assert!(!s
        .certificates
        .iter()
        .any(|c| c.kind == CertificateKind::UserImported));
    // Kept.
    let inbox = |st: &DeviceState| {
        names(&st.apps, |a: &App| format!("{:?}{}", a.origin, a.name))
            .into_iter()
            .filter(|n| n.starts_with("Inbox") || n.starts_with("ProvisioningPackage"))
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(inbox(&s), inbox(&before), "Inbox and package apps stay");
    assert_eq!(
        names(&s.wifi_profiles, |w: &WifiProfile| w.ssid.clone()),
        names(&before.wifi_profiles, |w: &WifiProfile| w.ssid.clone())
    );
    assert_eq!(
        names(&s.provisioning_packages, |p: &ProvisioningPackage| p
            .name
            .clone()),
        names(&before.provisioning_packages, |p: &ProvisioningPackage| p
            .name
            .clone())
    );
    assert!(
        s.local_users.iter().any(|u| u.is_admin),
        "package admin re-created"
    );
    assert_eq!(s.entra_join, before.entra_join);
    assert_eq!(s.dev_id, before.dev_id);
    let (e, b) = (
        s.mdm_enrollment.clone().unwrap(),
        before.mdm_enrollment.clone().unwrap(),
    );
    assert_eq!(
        (e.thumbprint, e.client_cert_pem, e.provider_id),
        (b.thumbprint, b.client_cert_pem, b.provider_id)
    );
    assert!(s
        .certificates
        .iter()
        .any(|c| c.kind == CertificateKind::Mdm));
    assert!(s
        .certificates
        .iter()
        .any(|c| c.kind == CertificateKind::Scep));
    assert_eq!(s.policies, before.policies);
    // Status nodes.
    assert_eq!(get_data(&mut s, STATUS_NODE), "1");
    assert_eq!(get_data(&mut s, LAST_ERROR_NODE), "0");
    assert!(
        s.events
            .iter()
            .filter(|e| e.kind == EventKind::PackageApplied)
            .count()
            > before
                .events
                .iter()
                .filter(|e| e.kind == EventKind::PackageApplied)
                .count()
    );

    // Desktop gate: closed until the first MDM sync; the MDM app comes back with it.
    assert!(!s.desktop_available());
    assert!(!s.apps.iter().any(|a| a.name == "Company Portal"));
    let upn = before.primary_user.clone().unwrap();
    assert!(!s.sign_in(&upn, t0()), "no sign-in before the sync");
    let is_sync_done = "./Vendor/MSFT/DMClient/Provider/Redeploy/FirstSyncStatus/IsSyncDone";
    assert_eq!(get_data(&mut s, is_sync_done), "false");
    reset::mdm_sync_completed(&mut s, t0());
    assert!(s.desktop_available());
    assert_eq!(
        get_data(&mut s, is_sync_done),
        "false",
        "the server sets it, not the PC"
    );
    assert!(s
        .apps
        .iter()
        .any(|a| a.name == "Company Portal" && a.origin == AppOrigin::Mdm));
    assert!(s.sign_in(&upn, t0()));
    assert_eq!(
        s.primary_user.as_deref(),
        Some(upn.as_str()),
        "next user becomes primary"
    );
}

#[test]
fn usb_package_is_applied_by_the_reset() {
    let mut s = device_with(DeviceProfile {
        usb_package: true,
        ..DeviceProfile::default()
    });
    assert_eq!(code(&mut s, exec("1", RESET_NODE)), 200);
    reset::run_to_completion(&mut s);
    assert!(s
        .provisioning_packages
        .iter()
        .any(|p| p.name == "USB-Refresh.ppkg"));
    assert!(s
        .apps
        .iter()
        .any(|a| a.name == "Contoso Exam Browser" && a.origin == AppOrigin::ProvisioningPackage));
    assert!(s.wifi_profiles.iter().any(|w| w.ssid == "Contoso-Exam"));
}

#[test]
fn advance_follows_the_timings() {
    let mut s = device();
    let t = s.timings.clone();
    run(&mut s, &exec("1", RESET_NODE));
    assert!(reset::advance(&mut s, t0() + Duration::seconds(t.schedule_secs - 1)).is_empty());
    assert_eq!(s.autopilot_reset.status, 10);
    let t1 = t0() + Duration::seconds(t.schedule_secs);
    assert_eq!(
        reset::advance(&mut s, t1),
        vec![Transition::WaitingForReboot]
    );
    let t2 = t1 + Duration::seconds(t.reboot_after_secs);
    assert_eq!(reset::advance(&mut s, t2).len(), 1);
    assert!(!s.online);
    assert!(reset::advance(&mut s, t2 + Duration::seconds(t.reset_secs - 1)).is_empty());
    assert!(!s.online, "still resetting");
    let done = reset::advance(&mut s, t2 + Duration::seconds(t.reset_secs));
    assert!(matches!(done.as_slice(), [Transition::Completed(_)]));
    assert_eq!(s.autopilot_reset.status, 1);
}

#[test]
fn a_second_exec_does_not_start_a_second_reset() {
    let mut s = device();
    assert_eq!(code(&mut s, exec("1", RESET_NODE)), 200);
    let scheduled = s.pending.clone();
    // At Status 10 and at Status 20 a repeated Exec is acknowledged and changes nothing.
    assert_eq!(code(&mut s, exec("1b", RESET_NODE)), 200);
    assert_eq!(s.pending, scheduled, "not rescheduled");
    assert_eq!(s.autopilot_reset.status, 10);
    reset::step(&mut s, t0());
    assert_eq!(
        code(&mut s, exec("2", RESET_NODE)),
        200,
        "acknowledged again"
    );
    assert_eq!(s.autopilot_reset.status, 20, "not rescheduled");
    assert!(has_event(&s, EventKind::DuplicateRequestIgnored));
    reset::run_to_completion(&mut s);
    let completed = s
        .events
        .iter()
        .filter(|e| e.kind == EventKind::ResetCompleted)
        .count();
    assert_eq!(completed, 1);
    assert_eq!(s.resets.remote_autopilot, 1);
    assert_eq!(
        code(&mut s, exec("3", "./Vendor/MSFT/RemoteWipe/doWipe")),
        200
    );
    assert_eq!(
        code(&mut s, exec("4", RESET_NODE)),
        500,
        "another operation is pending"
    );
}

#[test]
fn winre_disabled_fails_at_once_and_changes_nothing_else() {
    let mut s = device_with(DeviceProfile {
        winre_enabled: false,
        ..DeviceProfile::default()
    });
    let before = s.clone();
    assert_eq!(code(&mut s, exec("1", RESET_NODE)), 500);
    assert_eq!(get_data(&mut s, STATUS_NODE), "30");
    assert_eq!(
        get_data(&mut s, LAST_ERROR_NODE),
        "-2147024846",
        "0x80070032 as signed int"
    );
    assert_eq!(s.autopilot_reset.last_error, 0x8007_0032_u32 as i32);
    assert_eq!(s.pending, None);
    assert_eq!(
        without_status_and_events(&s),
        without_status_and_events(&before)
    );
    assert!(has_event(&s, EventKind::ResetRefused));
}

#[test]
fn hybrid_joined_is_refused() {
    let mut s = device_with(DeviceProfile {
        join: JoinType::Hybrid,
        ..DeviceProfile::default()
    });
    assert_eq!(
        get_data(&mut s, "./Vendor/MSFT/DeviceStatus/DomainName"),
        "corp.contoso.com"
    );
    let before = s.clone();
    assert_eq!(code(&mut s, exec("1", RESET_NODE)), 500);
    assert_eq!(s.autopilot_reset.status, 30);
    assert_eq!(s.autopilot_reset.last_error, HR_JOIN_NOT_SUPPORTED);
    assert_eq!(
        without_status_and_events(&s),
        without_status_and_events(&before)
    );
}

#[test]
fn old_builds_and_windows_se_have_no_reset_node() {
    for profile in [
        DeviceProfile {
            os_build: Some(17134),
            ..DeviceProfile::default()
        },
        DeviceProfile {
            edition: Some(Edition::SE),
            ..DeviceProfile::default()
        },
    ] {
        let mut s = device_with(profile);
        assert_eq!(code(&mut s, exec("1", RESET_NODE)), 404);
        assert_eq!(get_one(&mut s, STATUS_NODE).0, 404);
        let listing = get_data(&mut s, "./Vendor/MSFT/RemoteWipe");
        assert!(!listing.contains("AutomaticRedeployment"), "{listing}");
        assert!(listing.contains("doWipe"));
        assert_eq!(s.pending, None);
    }
    let mut s = device_with(DeviceProfile {
        os_build: Some(17763),
        ..DeviceProfile::default()
    });
    assert_eq!(
        code(&mut s, exec("1", RESET_NODE)),
        200,
        "1809 has the node"
    );
}

#[test]
fn low_battery_fails_with_status_40_and_changes_nothing_else() {
    let mut s = device_with(DeviceProfile {
        battery_pct: Some(20),
        ..DeviceProfile::default()
    });
    assert!(!s.power.on_ac);
    let before = s.clone();
    assert_eq!(code(&mut s, exec("1", RESET_NODE)), 200);
    assert_eq!(
        reset::step(&mut s, t0()),
        Some(Transition::WaitingForReboot)
    );
    assert_eq!(
        reset::step(&mut s, t0()),
        Some(Transition::PowerRequirementsNotMet)
    );
    assert_eq!(
        (s.autopilot_reset.status, s.autopilot_reset.last_error),
        (40, HR_POWER_NOT_MET)
    );
    assert!(s.online);
    assert_eq!(
        without_status_and_events(&s),
        without_status_and_events(&before)
    );

    // On AC the same battery is fine.
    let mut s = device_with(DeviceProfile {
        battery_pct: Some(20),
        ..DeviceProfile::default()
    });
    s.power.on_ac = true;
    run(&mut s, &exec("1", RESET_NODE));
    reset::run_to_completion(&mut s);
    assert_eq!(s.autopilot_reset.status, 1);
}

#[test]
fn injected_internal_failure_rolls_back_with_status_50() {
    let mut s = device();
    s.inject_reset_failure = Some(HR_E_FAIL);
    let before = s.clone();
    assert_eq!(code(&mut s, exec("1", RESET_NODE)), 200);
    let steps = reset::run_to_completion(&mut s);
    assert!(matches!(steps.last(), Some(Transition::Failed(_, hr)) if *hr == HR_E_FAIL));
    assert_eq!(get_data(&mut s, STATUS_NODE), "50");
    assert_eq!(
        get_data(&mut s, LAST_ERROR_NODE),
        (0x8000_4005_u32 as i32).to_string()
    );
    assert!(s.online);
    let mut expected = without_status_and_events(&before);
    // The reboot signed the user out; nothing else may differ.
    expected.signed_in_user = None;
    assert_eq!(without_status_and_events(&s), expected);
}

#[test]
fn without_a_network_that_reconnects_the_pc_stays_offline_after_reset() {
    let mut s = device_with(DeviceProfile {
        ethernet: Some(false),
        packages: 0,
        ..DeviceProfile::default()
    });
    for w in &mut s.wifi_profiles {
        w.auto_connect = false;
    }
    run(&mut s, &exec("1", RESET_NODE));
    reset::run_to_completion(&mut s);
    assert_eq!(s.autopilot_reset.status, 1);
    assert!(
        !s.online,
        "no Ethernet and no Wi-Fi set to connect automatically"
    );
    assert!(
        !s.desktop_available(),
        "still waiting for the MDM sync it cannot make"
    );
}

const IS_SYNC_DONE: &str =
    "./Device/Vendor/MSFT/DMClient/Provider/Redeploy/FirstSyncStatus/IsSyncDone";

/// What the server's "done" rests on, through the protocol client: Status 10 once the Exec is
/// accepted, 20 before the reboot, silence while offline, 1 / LastError 0 when back, and
/// IsSyncDone false until the server sets it; the desktop opens after the first *successful*
/// session after the reset.
#[tokio::test]
async fn status_walks_10_20_offline_1_and_the_desktop_waits_for_a_successful_session() {
    use crate::fake::{hdr_status, server_message, FakeServer, Mdm, Unreachable};
    use device::client;

    let server = FakeServer::scripted(vec![
        server_message(
            "1",
            "1",
            vec![
                hdr_status("1"),
                exec("2", RESET_NODE),
                get("3", &[STATUS_NODE, LAST_ERROR_NODE]),
            ],
            true,
        ),
        server_message("1", "2", vec![hdr_status("2")], true),
    ]);
    let mut s = device();
    let report = client::check_in(&server, &mut s, t0()).await.unwrap();
    assert_eq!(report.executed[0], ("Exec".into(), RESET_NODE.into(), 200));
    let answer = &server.dm_messages()[1];
    let results: Vec<String> = answer
        .body
        .commands
        .iter()
        .filter_map(|c| match c {
            syncml::Command::Results(r) => Some(r),
            _ => None,
        })
        .flat_map(|r| r.items.iter().map(|i| i.data_str().unwrap().to_string()))
        .collect();
    assert_eq!(results, ["10", "0"], "Status 10 in the Exec's own session");

    assert_eq!(
        reset::step(&mut s, t0()),
        Some(Transition::WaitingForReboot)
    );
    assert_eq!(get_data(&mut s, STATUS_NODE), "20");
    assert!(matches!(
        reset::step(&mut s, t0()),
        Some(Transition::WentOffline(_))
    ));
    let sent = server.dm_messages().len();
    let offline = client::check_in(&server, &mut s, t0()).await.unwrap_err();
    assert_eq!(offline.kind(), "offline");
    assert_eq!(server.dm_messages().len(), sent, "silent while offline");

    assert!(matches!(
        reset::step(&mut s, t0()),
        Some(Transition::Completed(_))
    ));
    assert_eq!(get_data(&mut s, STATUS_NODE), "1");
    assert_eq!(get_data(&mut s, LAST_ERROR_NODE), "0");
    assert_eq!(get_data(&mut s, IS_SYNC_DONE), "false");

    // Failed sessions (the server is down) do not complete the first sync.
    for _ in 0..3 {
        let err = client::check_in(&Unreachable, &mut s, t0())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), "connect");
    }
    assert_eq!(get_data(&mut s, IS_SYNC_DONE), "false");
    assert!(!s.desktop_available());

    *server.mdm.lock().unwrap() = Mdm::Idle;
    client::check_in(&server, &mut s, t0()).await.unwrap();
    assert_eq!(
        get_data(&mut s, IS_SYNC_DONE),
        "false",
        "a server that does not set it leaves it false"
    );
    assert!(s.desktop_available());
    assert_eq!(get_data(&mut s, STATUS_NODE), "1", "still 1 after the sync");
    assert_eq!(s.resets.remote_autopilot, 1);
}

#[test]
fn the_server_may_replace_is_sync_done_with_a_bool_true() {
    let mut s = device();
    run(&mut s, &exec("1", RESET_NODE));
    reset::run_to_completion(&mut s);
    assert_eq!(get_data(&mut s, IS_SYNC_DONE), "false");
    assert_eq!(
        code(&mut s, replace("2", IS_SYNC_DONE, "bool", "true")),
        200
    );
    assert_eq!(
        get_one(&mut s, IS_SYNC_DONE),
        (200, Some(("bool".into(), "true".into())))
    );
    assert!(s.mdm_enrollment.as_ref().unwrap().first_sync.is_sync_done);
    // And back, in the short form too.
    let short = IS_SYNC_DONE.replacen("./Device/", "./", 1);
    assert_eq!(code(&mut s, replace("3", &short, "bool", "false")), 200);
    assert_eq!(get_data(&mut s, &short), "false");
}
