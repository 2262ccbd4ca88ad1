//! The PC's own count of completed resets and wipes (`emulate show --json` "resets"): only an
//! operation that finished counts; a refused, failed or rolled-back one does not.

use device::reset::{self, HR_E_FAIL};
use device::state::*;
use device::DeviceProfile;

use crate::common::*;

fn counts(s: &DeviceState) -> (u64, u64, u64) {
    (
        s.resets.remote_autopilot,
        s.resets.local_autopilot,
        s.resets.wipes,
    )
}

#[test]
fn completed_operations_are_counted_by_kind() {
    let mut s = device_with(DeviceProfile {
        local_reset_policy: Some(0),
        ..DeviceProfile::default()
    });
    assert_eq!(counts(&s), (0, 0, 0));

    assert_eq!(code(&mut s, exec("1", RESET_NODE)), 200);
    assert_eq!(counts(&s), (0, 0, 0), "accepted is not done");
    reset::run_to_completion(&mut s);
    assert_eq!(counts(&s), (1, 0, 0));

    let admin = s.local_users.iter().find(|u| u.is_admin).unwrap().clone();
    reset::local_reset(&mut s, &admin.name, &admin.password, t0()).unwrap();
    assert_eq!(counts(&s), (1, 0, 0), "started is not done");
    reset::run_to_completion(&mut s);
    assert_eq!(counts(&s), (1, 1, 0));

    assert_eq!(
        code(
            &mut s,
            exec("2", "./Vendor/MSFT/RemoteWipe/doWipeProtected")
        ),
        200
    );
    reset::run_to_completion(&mut s);
    assert_eq!(counts(&s), (1, 1, 1));
    assert_eq!(
        s.to_show_json()["resets"],
        serde_json::json!({"remote_autopilot": 1, "local_autopilot": 1, "wipes": 1})
    );
    let listing = s.to_listing_json();
    assert_eq!(listing["resets"], s.to_show_json()["resets"]);
    assert!(
        listing.get("events").is_none(),
        "a listing leaves the event log out"
    );
    assert_eq!(listing["id"], "pc-0001");
}

#[test]
fn a_second_exec_while_pending_counts_one_reset() {
    let mut s = device();
    assert_eq!(code(&mut s, exec("1", RESET_NODE)), 200);
    reset::step(&mut s, t0());
    assert_eq!(code(&mut s, exec("2", RESET_NODE)), 200);
    reset::run_to_completion(&mut s);
    assert_eq!(counts(&s), (1, 0, 0));
}

#[test]
fn refused_failed_and_rolled_back_operations_are_not_counted() {
    // WinRE disabled: refused at Exec.
    let mut s = device_with(DeviceProfile {
        winre_enabled: false,
        ..DeviceProfile::default()
    });
    assert_eq!(code(&mut s, exec("1", RESET_NODE)), 500);
    assert_eq!(
        code(&mut s, exec("2", "./Vendor/MSFT/RemoteWipe/doWipe")),
        500
    );
    reset::run_to_completion(&mut s);
    assert_eq!(counts(&s), (0, 0, 0));

    // Power requirements not met at the reboot (Status 40).
    let mut s = device_with(DeviceProfile {
        battery_pct: Some(10),
        ..DeviceProfile::default()
    });
    assert_eq!(code(&mut s, exec("1", RESET_NODE)), 200);
    reset::run_to_completion(&mut s);
    assert_eq!(s.autopilot_reset.status, reset_status::POWER_NOT_MET);
    assert_eq!(counts(&s), (0, 0, 0));

    // Failed inside PBR and rolled back (Status 50), and a wipe that rolled back.
    let mut s = device();
    s.inject_reset_failure = Some(HR_E_FAIL);
    assert_eq!(code(&mut s, exec("1", RESET_NODE)), 200);
    reset::run_to_completion(&mut s);
    assert_eq!(s.autopilot_reset.status, reset_status::FAILED_INTERNALLY);
    assert_eq!(
        code(&mut s, exec("2", "./Vendor/MSFT/RemoteWipe/doWipe")),
        200
    );
    reset::run_to_completion(&mut s);
    assert_eq!(counts(&s), (0, 0, 0));

    // A reboot is not a reset.
    let mut s = device();
    assert_eq!(
        code(&mut s, exec("1", "./Vendor/MSFT/Reboot/RebootNow")),
        200
    );
    reset::run_to_completion(&mut s);
    assert_eq!(counts(&s), (0, 0, 0));
}

#[test]
fn counts_survive_the_state_file() {
    let mut s = device();
    run(&mut s, &exec("1", RESET_NODE));
    reset::run_to_completion(&mut s);
    let dir = tempfile::tempdir().unwrap();
    device::persist::save(dir.path(), &s).unwrap();
    let back = device::persist::load_id(dir.path(), &s.id)
        .unwrap()
        .unwrap();
    assert_eq!(back.resets.remote_autopilot, 1);
    // A state file written before the counts existed reads as zero.
    let mut old = serde_json::to_value(&s).unwrap();
    old.as_object_mut().unwrap().remove("resets");
    let old: DeviceState = serde_json::from_value(old).unwrap();
    assert_eq!(old.resets, ResetCounts::default());
}
