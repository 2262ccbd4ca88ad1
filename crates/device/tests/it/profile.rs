//! Seeded profiles: reproducible, realistic, and honouring the scenario knobs.

use device::state::*;
use device::{device_seed, DeviceProfile};

use crate::common::t0;

#[test]
fn same_seed_same_pc_different_seed_different_pc() {
    let p = DeviceProfile::default();
    assert_eq!(p.build_seeded("a", 1, t0()), p.build_seeded("a", 1, t0()));
    assert_ne!(
        p.build_seeded("a", 1, t0()).hardware,
        p.build_seeded("a", 2, t0()).hardware
    );
    assert_eq!(device_seed(99, 3), device_seed(99, 3));
    assert_ne!(device_seed(99, 3), device_seed(99, 4));
}

#[test]
fn values_look_like_a_real_fleet() {
    let p = DeviceProfile::default();
    let fleet: Vec<DeviceState> = (0..40)
        .map(|i| p.build_seeded(&format!("pc-{i}"), device_seed(5, i), t0()))
        .collect();
    let makers: std::collections::BTreeSet<_> = fleet
        .iter()
        .map(|d| d.hardware.manufacturer.clone())
        .collect();
    assert!(makers.len() >= 3, "a mix of manufacturers: {makers:?}");
    for d in &fleet {
        assert_eq!(d.hardware.hw_dev_id.len(), 64);
        assert!(d.hardware.hw_dev_id.chars().all(|c| c.is_ascii_hexdigit()));
        assert!(d.os.version.starts_with(&format!("10.0.{}.", d.os.build)));
        assert!(!d.hardware.serial.is_empty());
        assert_eq!(d.dev_id.len(), 36);
        assert!(d.primary_user.is_some());
        assert!(d.local_users.iter().any(|u| u.is_admin));
        assert!(d.winre_enabled);
    }
    let serials: std::collections::BTreeSet<_> =
        fleet.iter().map(|d| d.hardware.serial.clone()).collect();
    assert_eq!(serials.len(), fleet.len(), "unique serials");
}

#[test]
fn knobs_are_applied() {
    let d = DeviceProfile {
        join: JoinType::Hybrid,
        winre_enabled: false,
        os_build: Some(19045),
        edition: Some(Edition::Education),
        battery_pct: Some(15),
        users: 3,
        apps: 5,
        wifi_profiles: 1,
        packages: 2,
        usb_package: true,
        local_reset_policy: Some(0),
        ..DeviceProfile::default()
    }
    .build_seeded("x", 3, t0());
    assert_eq!(d.entra_join.kind, JoinType::Hybrid);
    assert!(d.ad_domain.is_some() && d.is_hybrid());
    assert!(!d.winre_enabled);
    assert_eq!(
        (d.os.build, d.os.version.as_str()),
        (19045, "10.0.19045.5131")
    );
    assert_eq!(d.os.platform(), "Windows 10 Education");
    assert_eq!((d.power.on_ac, d.power.battery_pct), (false, Some(15)));
    assert_eq!(d.entra_users.len(), 3);
    assert_eq!(d.profiles.len(), 3);
    assert_eq!(
        d.apps
            .iter()
            .filter(|a| a.origin == AppOrigin::UserInstalled)
            .count(),
        5
    );
    assert_eq!(d.provisioning_packages.len(), 2);
    assert!(d.usb_package.is_some());
    assert_eq!(d.local_reset_policy(), 0);
    assert!(
        d.wifi_profiles.len() >= 2,
        "one of the user's and the package's"
    );

    let none = DeviceProfile {
        join: JoinType::None,
        ..DeviceProfile::default()
    }
    .build_seeded("y", 3, t0());
    assert!(none.entra_join.tenant_id.is_none() && none.entra_users.is_empty());
    assert_eq!(
        none.local_reset_policy(),
        1,
        "default 1 when no package set it"
    );
}
