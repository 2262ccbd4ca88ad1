//! `emulate show --json` keys (docs/design.md §7) and state persistence.

use device::state::DeviceState;

use crate::common::*;

#[test]
fn show_json_has_the_contract_keys() {
    let s = device();
    let v = s.to_show_json();
    for key in [
        "id",
        "primary_user",
        "users",
        "personal_files",
        "apps",
        "settings",
        "region",
        "language",
        "keyboard",
        "wifi_profiles",
        "provisioning_packages",
        "certificates",
        "entra_join",
        "mdm_enrollment",
        "winre_enabled",
        "desktop_available",
        "autopilot_reset",
        "events",
    ] {
        assert!(v.get(key).is_some(), "missing {key}");
    }
    assert!(v["autopilot_reset"]["status"].is_i64());
    assert!(v["autopilot_reset"]["last_error"].is_i64());
    assert_eq!(v["id"], "pc-0001");
    assert_eq!(v["entra_join"]["type"], "joined");
    assert!(v["personal_files"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["user"].is_string() && f["path"].is_string()));
    let text = v.to_string();
    assert!(!text.contains("Redeploy!2024"), "no passwords");
    assert!(!text.contains("PRIVATE KEY"), "no private key");
}

#[test]
fn state_round_trips_through_json() {
    let mut s = device();
    run(&mut s, &exec("1", RESET_NODE));
    let text = serde_json::to_string_pretty(&s).unwrap();
    let back: DeviceState = serde_json::from_str(&text).unwrap();
    assert_eq!(back, s);
}
