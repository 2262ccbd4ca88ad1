//! Driving an emulated PC (`device`) against a test server.

use device::client::{self, EnrollOptions};
use device::state::DeviceState;
use device::transport::Transport;
use time::OffsetDateTime;

use crate::app::TestApp;

/// Enrolls `state` into `app` with the app's enrollment token (which vouches for the Entra
/// join), then checks in until the server has nothing more for it.
pub async fn enroll_and_sync(
    app: &TestApp,
    transport: &dyn Transport,
    state: &mut DeviceState,
    now: OffsetDateTime,
) {
    let options = EnrollOptions {
        server: app.base_url.clone(),
        token: app.enrollment_token.clone(),
        issuer: None,
    };
    client::enroll(transport, state, &options, now)
        .await
        .expect("enrollment");
    sync_until_quiet(transport, state, now).await;
}

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
