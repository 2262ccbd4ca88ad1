//! Local Autopilot Reset (CTRL+WIN+R): the policy gate, the credential checks, and what it
//! removes and keeps — the primary user stays (MEM windows-autopilot-reset.md).

use device::reset::{self, LocalResetError};
use device::state::*;
use device::DeviceProfile;

use crate::common::*;

fn admin(s: &DeviceState) -> (String, String) {
    let u = s.local_users.iter().find(|u| u.is_admin).unwrap();
    (u.name.clone(), u.password.clone())
}

#[test]
fn refused_while_the_policy_is_1() {
    let mut s = device();
    assert_eq!(s.local_reset_policy(), 1);
    let (user, pw) = admin(&s);
    let before = s.clone();
    assert_eq!(
        reset::local_reset(&mut s, &user, &pw, t0()),
        Err(LocalResetError::CredentialProviderHidden(1))
    );
    assert_eq!(
        without_status_and_events(&s),
        without_status_and_events(&before)
    );

    let mut s = device_with(DeviceProfile {
        local_reset_policy: Some(1),
        ..DeviceProfile::default()
    });
    assert_eq!(
        reset::local_reset(&mut s, &user, &pw, t0()),
        Err(LocalResetError::CredentialProviderHidden(1))
    );
}

#[test]
fn refused_for_non_admins_and_wrong_passwords() {
    let mut s = device_with(DeviceProfile {
        local_reset_policy: Some(0),
        ..DeviceProfile::default()
    });
    let (user, pw) = admin(&s);
    s.local_users.push(LocalUser {
        name: "student".into(),
        password: "pw".into(),
        is_admin: false,
        created_by_package: None,
    });
    let before = s.clone();
    assert_eq!(
        reset::local_reset(&mut s, "student", "pw", t0()),
        Err(LocalResetError::NotLocalAdministrator("student".into()))
    );
    assert_eq!(
        reset::local_reset(&mut s, &user, "wrong", t0()),
        Err(LocalResetError::BadCredentials)
    );
    assert_eq!(
        reset::local_reset(&mut s, "nobody", &pw, t0()),
        Err(LocalResetError::BadCredentials)
    );
    assert_eq!(
        without_status_and_events(&s),
        without_status_and_events(&before)
    );
    assert!(has_event(&s, EventKind::ResetRefused));
}

#[test]
fn refused_without_winre_or_when_hybrid() {
    let mut s = device_with(DeviceProfile {
        local_reset_policy: Some(0),
        winre_enabled: false,
        ..DeviceProfile::default()
    });
    let (user, pw) = admin(&s);
    assert_eq!(
        reset::local_reset(&mut s, &user, &pw, t0()),
        Err(LocalResetError::WinReDisabled)
    );
    assert_eq!(s.pending, None);
    let mut s = device_with(DeviceProfile {
        local_reset_policy: Some(0),
        join: JoinType::Hybrid,
        ..DeviceProfile::default()
    });
    assert_eq!(
        reset::local_reset(&mut s, &user, &pw, t0()),
        Err(LocalResetError::HybridJoined)
    );
    // A registered PC (a work account, not joined) is refused.
    let mut s = device_with(DeviceProfile {
        local_reset_policy: Some(0),
        join: JoinType::Registered,
        ..DeviceProfile::default()
    });
    let (user, pw) = admin(&s);
    assert!(matches!(
        reset::local_reset(&mut s, &user, &pw, t0()),
        Err(LocalResetError::NotEntraJoined(_))
    ));
    assert_eq!(s.pending, None);
}

#[test]
fn policy_replaced_to_0_over_the_csp_enables_local_reset() {
    let mut s = device_with(DeviceProfile {
        usb_package: true,
        ..DeviceProfile::default()
    });
    let (user, pw) = admin(&s);
    assert!(reset::local_reset(&mut s, &user, &pw, t0()).is_err());
    assert_eq!(code(&mut s, replace("1", POLICY_NODE, "int", "0")), 200);
    let before = s.clone();
    reset::local_reset(&mut s, &user, &pw, t0()).unwrap();
    assert!(!s.online, "rebooted into the reset");
    reset::run_to_completion(&mut s);
    assert!(s.online);

    assert_eq!(
        s.primary_user, before.primary_user,
        "local reset keeps the primary user"
    );
    assert!(s.profiles.is_empty());
    assert!(!s.apps.iter().any(|a| a.origin == AppOrigin::UserInstalled));
    assert!(s.device_settings.values().all(|v| v.current == v.original));
    assert_eq!(
        (&s.region.current, &s.language.current, &s.keyboard.current),
        (
            &before.region.original,
            &before.language.original,
            &before.keyboard.original
        )
    );
    for w in &before.wifi_profiles {
        assert!(s.wifi_profiles.contains(w), "Wi-Fi {} kept", w.ssid);
    }
    assert!(
        s.provisioning_packages
            .iter()
            .any(|p| p.name == "USB-Refresh.ppkg"),
        "USB package used"
    );
    assert_eq!(s.entra_join, before.entra_join);
    assert_eq!(
        s.mdm_enrollment.as_ref().unwrap().thumbprint,
        before.mdm_enrollment.as_ref().unwrap().thumbprint
    );
    assert!(s
        .certificates
        .iter()
        .any(|c| c.kind == CertificateKind::Scep));
    assert!(!s
        .certificates
        .iter()
        .any(|c| c.kind == CertificateKind::UserImported));
    assert_eq!(s.local_reset_policy(), 0, "policy kept");
    assert_eq!(
        s.autopilot_reset, before.autopilot_reset,
        "status nodes untouched by a local reset"
    );
    assert!(
        s.local_users.iter().any(|u| u.name == user && u.is_admin),
        "the package admin is back"
    );
    assert!(!s.desktop_available());
    reset::mdm_sync_completed(&mut s, t0());
    assert!(s.desktop_available());
    // And it can be done again.
    reset::local_reset(&mut s, &user, &pw, t0()).unwrap();
}

/// What a server can see of a local reset: the PC goes through its first sync again, so
/// `IsSyncDone`, which the server had set, reads false — and stays false until the server sets it
/// again (ITPRO dmclient-csp.md: the server sets the node; the PC never does).
#[test]
fn a_local_reset_sends_is_sync_done_back_to_false_until_the_server_sets_it() {
    const IS_SYNC_DONE: &str =
        "./Device/Vendor/MSFT/DMClient/Provider/Redeploy/FirstSyncStatus/IsSyncDone";
    let mut s = device_with(DeviceProfile {
        local_reset_policy: Some(0),
        ..DeviceProfile::default()
    });
    assert_eq!(
        get_data(&mut s, IS_SYNC_DONE),
        "false",
        "a fresh enrollment"
    );
    assert_eq!(
        code(&mut s, replace("1", IS_SYNC_DONE, "bool", "true")),
        200
    );
    let (user, pw) = admin(&s);
    reset::local_reset(&mut s, &user, &pw, t0()).unwrap();
    reset::run_to_completion(&mut s);
    assert_eq!(get_data(&mut s, IS_SYNC_DONE), "false");
    reset::mdm_sync_completed(&mut s, t0());
    assert!(s.desktop_available(), "the first session opens the desktop");
    assert_eq!(
        get_data(&mut s, IS_SYNC_DONE),
        "false",
        "the PC does not set it"
    );
    assert_eq!(
        code(&mut s, replace("2", IS_SYNC_DONE, "bool", "true")),
        200
    );
    assert_eq!(get_data(&mut s, IS_SYNC_DONE), "true");
}

#[test]
fn local_reset_with_the_package_policy_0_on_an_unenrolled_pc() {
    let mut s = device_with(DeviceProfile {
        join: JoinType::None,
        local_reset_policy: Some(0),
        ..DeviceProfile::default()
    });
    assert!(s.mdm_enrollment.is_none());
    let (user, pw) = admin(&s);
    reset::local_reset(&mut s, &user, &pw, t0()).unwrap();
    reset::run_to_completion(&mut s);
    assert!(s.profiles.is_empty());
    assert!(s.desktop_available(), "no MDM sync to wait for");
}

#[test]
fn reagentc_enable_turns_winre_on_logs_it_and_lets_the_next_exec_through() {
    let mut s = device_with(DeviceProfile {
        winre_enabled: false,
        ..DeviceProfile::default()
    });
    assert_eq!(code(&mut s, exec("1", RESET_NODE)), 500, "WinRE is off");
    assert_eq!(
        get_data(
            &mut s,
            "./Vendor/MSFT/BitLocker/Status/DeviceEncryptionStatus"
        ),
        "4096"
    );

    assert_eq!(reset::reagentc(&mut s, true, t0()), Ok(true));
    assert!(s.winre_enabled);
    let last = s.events.last().unwrap();
    assert_eq!(last.kind, EventKind::WinreConfigured);
    assert_eq!(last.detail, "reagentc /enable: WinRE enabled");
    assert_eq!(
        get_data(
            &mut s,
            "./Vendor/MSFT/BitLocker/Status/DeviceEncryptionStatus"
        ),
        "0"
    );
    assert_eq!(s.to_show_json()["winre_enabled"], true);
    assert_eq!(reset::reagentc(&mut s, true, t0()), Ok(false), "no change");
    assert_eq!(
        s.events.last().unwrap().detail,
        "reagentc /enable: WinRE was already enabled"
    );

    // The retried Exec is accepted and the reset completes.
    assert_eq!(code(&mut s, exec("2", RESET_NODE)), 200);
    reset::run_to_completion(&mut s);
    assert_eq!(
        s.autopilot_reset,
        AutopilotResetNodes {
            status: 1,
            last_error: 0
        }
    );

    assert_eq!(reset::reagentc(&mut s, false, t0()), Ok(true));
    assert!(!s.winre_enabled);
    assert_eq!(
        s.events.last().unwrap().detail,
        "reagentc /disable: WinRE disabled"
    );
}

#[test]
fn reagentc_is_refused_while_the_pc_reboots() {
    let mut s = device();
    run(&mut s, &exec("1", RESET_NODE));
    reset::step(&mut s, t0());
    // Status 20: Windows still runs.
    assert_eq!(reset::reagentc(&mut s, true, t0()), Ok(false));
    reset::step(&mut s, t0());
    assert!(!s.online, "rebooted into the reset");
    assert!(matches!(
        reset::reagentc(&mut s, false, t0()),
        Err(reset::ReagentcError::NotRunning(_))
    ));
    assert!(s.winre_enabled, "unchanged");
}
