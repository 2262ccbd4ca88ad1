//! Whether a device can take a remote Autopilot Reset now, given its actions: the one place that
//! combines preflight with what the device's own actions say (an active reset or wipe, an earlier
//! WinRE failure not yet lifted). Requests and every surface that shows readiness use it.

use time::OffsetDateTime;

use super::model::{Action, ActionState};
use super::request::is_erasing;
use crate::device::Device;
use crate::preflight::{preflight, winre_blocks, PreflightSettings, Readiness};

/// Whether one of `actions` is an active (not terminal, not blocked) reset or wipe.
pub fn has_active_erase(actions: &[Action]) -> bool {
    actions
        .iter()
        .any(|a| !a.state.is_terminal() && a.state != ActionState::Blocked && is_erasing(a.kind))
}

/// Preflight of a remote Autopilot Reset of `device` at `now`, given all its actions (any order).
pub fn readiness(
    device: &Device,
    actions: &[Action],
    now: OffsetDateTime,
    settings: &PreflightSettings,
) -> Readiness {
    preflight(
        device,
        now,
        settings,
        has_active_erase(actions),
        winre_blocks(device, actions),
    )
}
