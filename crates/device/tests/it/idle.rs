//! Idle PCs kept packed (`device::idle`): a packed PC unpacks to the very state it was packed
//! from at every point of its life — in use, with a reset pending, after the reset, after a
//! local reset with a USB package and injected faults — and a PC packed between every step of a
//! reset goes through it exactly as one that was never packed.

use device::idle::PackedState;
use device::reset;
use device::state::*;
use device::DeviceProfile;
use time::Duration;

use crate::common::*;

/// Packs `state` and unpacks it again, checking on the way that it was deflated.
fn through_packing(state: &DeviceState) -> DeviceState {
    let packed = PackedState::pack(state.clone());
    assert!(packed.is_deflated());
    let json = serde_json::to_vec(state).unwrap().len();
    assert!(
        packed.packed_len() * 2 < json,
        "packed in {} bytes, its JSON is {json}",
        packed.packed_len()
    );
    packed.unpack().expect("a packed PC unpacks")
}

/// Moves `plain` and `packed` (packed and unpacked around every step) through their pending
/// operation a minute at a time; both must take the same transitions and stay equal.
fn run_both_to_the_end(plain: &mut DeviceState, packed: &mut DeviceState) -> usize {
    let mut at = t0();
    let mut transitions = 0;
    for _ in 0..24 * 60 {
        if plain.pending.is_none() {
            break;
        }
        at += Duration::minutes(1);
        let expected = reset::advance(plain, at);
        let mut unpacked = through_packing(packed);
        let got = reset::advance(&mut unpacked, at);
        *packed = unpacked;
        assert_eq!(got, expected, "at {at}");
        assert_eq!(packed, plain, "at {at}");
        transitions += got.len();
    }
    assert!(plain.pending.is_none(), "the operation ended within a day");
    transitions
}

#[test]
fn a_packed_pc_unpacks_to_the_same_state_and_goes_through_a_reset_the_same_way() {
    let mut plain = device();
    plain.faults = FaultSettings {
        drop_replies_pct: 30,
        stale_status_after_restore_pct: 100,
        seed: u64::MAX - 7,
        stale_reset_nodes: None,
    };
    plain.dm_client.next_poll_at = Some(t0() + Duration::minutes(15));
    assert_eq!(through_packing(&plain), plain, "in use");

    // The server's Exec: the reset is accepted and pending (Status 10).
    assert_eq!(code(&mut plain, exec("5", RESET_NODE)), 200);
    assert!(plain.pending.is_some());
    let mut packed = through_packing(&plain);
    assert_eq!(packed, plain, "with the reset pending");

    let transitions = run_both_to_the_end(&mut plain, &mut packed);
    assert!(
        transitions >= 3,
        "10 -> 20 -> offline -> done: {transitions}"
    );
    assert_eq!(plain.resets.remote_autopilot, 1);
    assert_eq!(
        plain.primary_user, None,
        "the reset cleared the primary user"
    );
    assert!(
        plain.faults.stale_reset_nodes.is_some(),
        "the stale-status fault took effect"
    );
    assert_eq!(through_packing(&plain), plain, "after the reset");

    // A second Exec while nothing is pending, then the first sync of the reset PC.
    assert_eq!(code(&mut plain, exec("6", RESET_NODE)), 200);
    reset::mdm_sync_completed(&mut plain, t0());
    assert_eq!(through_packing(&plain), plain, "a second reset pending");
}

#[test]
fn a_packed_pc_keeps_a_local_reset_in_progress_and_its_usb_package() {
    let mut plain = device_with(DeviceProfile {
        usb_package: true,
        local_reset_policy: Some(0),
        ..DeviceProfile::default()
    });
    plain.inject_reset_failure = Some(0x8007_0032_u32 as i32);
    let (admin, password) = DeviceProfile::default().local_admin;
    reset::local_reset(&mut plain, &admin, &password, t0()).expect("local reset allowed");
    assert!(!plain.online, "rebooted into the reset");
    let mut packed = through_packing(&plain);
    assert_eq!(packed, plain, "with a local reset in progress");
    run_both_to_the_end(&mut plain, &mut packed);
    assert!(
        has_event(&plain, EventKind::ResetFailed),
        "the injected failure rolled the reset back"
    );
    assert_eq!(through_packing(&plain), plain, "after the failed reset");
}
