//! Driving an emulated PC (`device`) against a test server.

use device::client;
use device::state::DeviceState;
use device::transport::Transport;
use time::OffsetDateTime;

/// Checks in until the server has nothing more for the PC (bounded: a loop would be a bug).
/// Quiet means no command but the reads a session start may carry on its own: WinRE's state,
/// which a PC is asked at every session start until it has reported WinRE enabled, and the reset
/// watch's read of `FirstSyncStatus/IsSyncDone` (at every session start with
/// `reset_watch_minutes = 0`).
pub async fn sync_until_quiet(
    transport: &dyn Transport,
    state: &mut DeviceState,
    now: OffsetDateTime,
) {
    let mut last = Vec::new();
    for _ in 0..5 {
        let report = client::check_in(transport, state, now)
            .await
            .expect("check-in");
        last = report.executed.clone();
        if report.executed.iter().all(|(verb, target, _)| {
            verb == "Get"
                && (target.ends_with("DeviceEncryptionStatus")
                    || target.ends_with("FirstSyncStatus/IsSyncDone"))
        }) {
            return;
        }
    }
    panic!("the server kept sending commands for 5 sessions, the last: {last:?}");
}
