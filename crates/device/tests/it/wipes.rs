//! RemoteWipe wipes (ITPRO remotewipe-csp.md) and what each leaves.

use device::reset;
use device::state::*;
use device::DeviceProfile;

use crate::common::*;

fn wiped(node: &str) -> (DeviceState, DeviceState) {
    let mut s = device();
    let before = s.clone();
    assert_eq!(
        code(
            &mut s,
            exec("1", &format!("./Device/Vendor/MSFT/RemoteWipe/{node}"))
        ),
        200
    );
    assert!(s.online, "accepted, not yet rebooted");
    reset::run_to_completion(&mut s);
    (before, s)
}

fn assert_fully_wiped(s: &DeviceState) {
    assert_eq!(s.primary_user, None);
    assert!(s.profiles.is_empty() && s.entra_users.is_empty());
    assert!(s
        .apps
        .iter()
        .all(|a| matches!(a.origin, AppOrigin::Inbox | AppOrigin::ProvisioningPackage)));
    assert!(s.device_settings.values().all(|v| v.current == v.original));
    assert_eq!(s.entra_join.kind, JoinType::None);
    assert!(s.mdm_enrollment.is_none(), "comes back unenrolled");
    assert!(s.certificates.is_empty());
    assert!(s.desktop.at_oobe && !s.desktop_available());
    assert_eq!(s.autopilot_reset, AutopilotResetNodes::default());
}

#[test]
fn do_wipe_removes_everything() {
    let (_, s) = wiped("doWipe");
    assert_fully_wiped(&s);
    assert!(s.wifi_profiles.is_empty());
    assert!(s.provisioning_packages.is_empty());
    assert!(s.local_users.is_empty());
    assert!(s.apps.iter().all(|a| a.origin == AppOrigin::Inbox));
    assert!(has_event(&s, EventKind::WipeCompleted));
}

#[test]
fn do_wipe_protected_is_a_full_wipe() {
    let (_, s) = wiped("doWipeProtected");
    assert_fully_wiped(&s);
    assert!(s.provisioning_packages.is_empty());
}

#[test]
fn persist_provisioned_data_keeps_and_reapplies_packages() {
    let (before, s) = wiped("doWipePersistProvisionedData");
    assert_fully_wiped(&s);
    assert_eq!(s.provisioning_packages, before.provisioning_packages);
    assert!(
        s.local_users.iter().any(|u| u.is_admin),
        "package admin re-created"
    );
    assert!(s
        .apps
        .iter()
        .any(|a| a.origin == AppOrigin::ProvisioningPackage));
    let pkg_wifi: Vec<_> = before
        .provisioning_packages
        .iter()
        .flat_map(|p| p.wifi_profiles.clone())
        .collect();
    assert!(!pkg_wifi.is_empty());
    assert_eq!(s.wifi_profiles, pkg_wifi, "only the packages' Wi-Fi");
}

#[test]
fn persist_user_data_keeps_users_files_and_enrollment() {
    let (before, s) = wiped("doWipePersistUserData");
    assert_eq!(s.primary_user, before.primary_user);
    assert_eq!(s.entra_users, before.entra_users);
    let files = |st: &DeviceState| {
        st.profiles
            .iter()
            .map(|p| (p.user.clone(), p.files.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(files(&s), files(&before));
    assert!(!s.apps.iter().any(|a| a.origin == AppOrigin::UserInstalled));
    assert_eq!(s.entra_join, before.entra_join);
    assert_eq!(
        s.mdm_enrollment.as_ref().unwrap().thumbprint,
        before.mdm_enrollment.as_ref().unwrap().thumbprint
    );
    assert!(s.device_settings.values().all(|v| v.current == v.original));
    assert!(s
        .certificates
        .iter()
        .any(|c| c.kind == CertificateKind::UserImported));
    assert!(!s.desktop.at_oobe);
    assert!(!s.desktop_available());
    let mut s = s;
    reset::mdm_sync_completed(&mut s, t0());
    assert!(s.desktop_available());
}

#[test]
fn wipe_without_winre_is_refused() {
    let mut s = device_with(DeviceProfile {
        winre_enabled: false,
        ..DeviceProfile::default()
    });
    let before = s.clone();
    assert_eq!(
        code(&mut s, exec("1", "./Vendor/MSFT/RemoteWipe/doWipe")),
        500
    );
    assert_eq!(
        without_status_and_events(&s),
        without_status_and_events(&before)
    );
}

#[test]
fn wipe_nodes_follow_the_os_build() {
    let mut s = device_with(DeviceProfile {
        os_build: Some(15063),
        ..DeviceProfile::default()
    });
    assert_eq!(
        code(
            &mut s,
            exec("1", "./Vendor/MSFT/RemoteWipe/doWipePersistUserData")
        ),
        404,
        "1709+"
    );
    assert_eq!(
        code(
            &mut s,
            exec("2", "./Vendor/MSFT/RemoteWipe/doWipeProtected")
        ),
        200,
        "1703+"
    );
}
