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

/// What [`readiness`] reads of one enrolled device, with its instants already judged against
/// `now` by the store: devices with equal inputs are equally ready, so a fleet is counted by
/// grouping its devices on these in one query ([`crate::store::DeviceStore::readiness_census`])
/// and judging one device of each group, with the rules kept here and in preflight.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ReadinessInputs {
    /// How it is joined.
    pub join_type: crate::device::JoinType,
    /// What verified the join.
    pub join_evidence: crate::device::JoinEvidence,
    /// Device or user enrollment.
    pub enrollment_type: Option<crate::device::EnrollmentType>,
    /// Its AD domain (hybrid join), as stored.
    pub domain_name: Option<String>,
    /// Whether it has an Entra device id.
    pub has_aad_device_id: bool,
    /// `./DevDetail/SwV`, as stored.
    pub os_version: Option<String>,
    /// The edition, as stored.
    pub os_platform: Option<String>,
    /// It checked in within preflight's `seen_within` of now.
    pub seen_within: bool,
    /// It checked in within the census's `recent` window (shown on the dashboard).
    pub seen_recently: bool,
    /// WinRE as the PC reported it.
    pub winre_enabled: Option<bool>,
    /// Its MDM certificate's notAfter is at or before now.
    pub cert_expired: bool,
    /// It has an active reset or wipe ([`has_active_erase`]).
    pub active_erase: bool,
    /// An earlier WinRE failure still blocks it ([`winre_blocks`]).
    pub winre_blocked: bool,
}

impl ReadinessInputs {
    /// The readiness of every device with these inputs at `now` (reasons that carry an instant
    /// carry a stand-in: a census counts reasons by code).
    pub fn readiness(&self, now: OffsetDateTime, settings: &PreflightSettings) -> Readiness {
        let mut d = Device::new(crate::ids::DeviceId::generate(), "", now);
        d.join_type = self.join_type;
        d.join_evidence = self.join_evidence;
        d.enrollment_type = self.enrollment_type;
        d.domain_name = self.domain_name.clone();
        d.aad_device_id = self.has_aad_device_id.then(String::new);
        d.os_version = self.os_version.clone();
        d.os_platform = self.os_platform.clone();
        d.last_seen = self.seen_within.then_some(now);
        d.winre_enabled = self.winre_enabled;
        d.cert_not_after = Some(if self.cert_expired {
            now
        } else {
            now + time::Duration::days(1)
        });
        preflight(&d, now, settings, self.active_erase, self.winre_blocked)
    }
}
