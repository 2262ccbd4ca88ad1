//! A device's compliance as Graph's `managedDevice.complianceState` reports it, derived from what
//! this server knows: Redeploy evaluates no compliance policies, so the state says whether the PC
//! keeps in touch and is fit to be reset, nothing more. The rules are data
//! ([`DeviceCondition`]s, first match wins), so a Graph `$filter` on the state runs in the store's
//! query and means exactly what [`compliance`] computes.
//!
//! The words and their meaning are Graph's `complianceState` enum (Microsoft Graph v1.0,
//! "complianceState enum type", intune-devices-compliancestate): `unknown`, `compliant`,
//! `noncompliant` ("blocked from corporate resources"), `inGracePeriod` ("non-compliant but still
//! has access"); `conflict`, `error` and `configManager` never arise here.

use time::{Duration, OffsetDateTime};

use crate::device::Device;
use crate::device_condition::{Comparison, DeviceCondition, TextField, TextOp, TimeField};
use crate::preflight::PreflightSettings;

/// How long a check-in vouches for a device: past it the device is `noncompliant`. Intune's
/// tenant setting is Graph's `deviceManagementSettings.deviceComplianceCheckinThresholdDays`
/// ("the number of days a device is allowed to go without checking in to remain compliant",
/// 1 to 120); the Intune portal's "Compliance status validity period" defaults to 30.
pub const VALIDITY: Duration = Duration::days(30);

/// Graph's `complianceState` values this server reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ComplianceState {
    /// Nothing to judge yet (never checked in, no inventory) or no longer managed.
    Unknown,
    /// Checked in within the preflight window, reports nothing wrong.
    Compliant,
    /// Silent past [`VALIDITY`], its MDM certificate expired, or WinRE not configured.
    Noncompliant,
    /// Silent for longer than the preflight window (7 days) but within [`VALIDITY`].
    InGracePeriod,
}

impl ComplianceState {
    /// Every state, in Graph's enum order.
    pub const ALL: [ComplianceState; 4] = [
        Self::Unknown,
        Self::Compliant,
        Self::Noncompliant,
        Self::InGracePeriod,
    ];

    /// Graph's word for it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Compliant => "compliant",
            Self::Noncompliant => "noncompliant",
            Self::InGracePeriod => "inGracePeriod",
        }
    }
}

/// The rules at `now`, in order: the first that holds gives the state; none holding is
/// `compliant`.
fn rules(now: OffsetDateTime) -> Vec<(ComplianceState, DeviceCondition)> {
    use ComplianceState::*;
    let seen_before = |ago: Duration| DeviceCondition::Time {
        field: TimeField::LastSeen,
        cmp: Comparison::Lt,
        at: now - ago,
    };
    vec![
        // Retired or unenrolled: not managed any more.
        (
            Unknown,
            DeviceCondition::NoTime(TimeField::UnenrolledAt).negate(),
        ),
        (Unknown, DeviceCondition::NoTime(TimeField::LastSeen)),
        // An expired MDM certificate cannot check in again (preflight's
        // `enrollment_cert_expired`).
        (
            Noncompliant,
            DeviceCondition::Time {
                field: TimeField::CertNotAfter,
                cmp: Comparison::Lt,
                at: now,
            },
        ),
        (Noncompliant, seen_before(VALIDITY)),
        // BitLocker DeviceEncryptionStatus bit 12 (ARCHITECTURE.md "WinRE"): the PC cannot
        // reset itself.
        (Noncompliant, DeviceCondition::WinReEnabled(false)),
        // No inventory yet: nothing to judge.
        (
            Unknown,
            DeviceCondition::Text {
                field: TextField::OsVersion,
                op: TextOp::Eq,
                value: String::new(),
            },
        ),
        (
            InGracePeriod,
            seen_before(PreflightSettings::default().seen_within),
        ),
    ]
}

/// The compliance state of `device` at `now`.
pub fn compliance(device: &Device, now: OffsetDateTime) -> ComplianceState {
    rules(now)
        .into_iter()
        .find(|(_, rule)| rule.matches(device))
        .map_or(ComplianceState::Compliant, |(state, _)| state)
}

/// The condition that holds exactly for the devices [`compliance`] puts in `state` at `now`.
pub fn condition(state: ComplianceState, now: OffsetDateTime) -> DeviceCondition {
    let mut earlier = Vec::new();
    let mut any = Vec::new();
    for (s, rule) in rules(now) {
        if s == state {
            any.push(
                rule.clone()
                    .and(DeviceCondition::Any(earlier.clone()).negate()),
            );
        }
        earlier.push(rule);
    }
    if state == ComplianceState::Compliant {
        any.push(DeviceCondition::Any(earlier).negate());
    }
    DeviceCondition::Any(any)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::DeviceId;
    use time::macros::datetime;
    use ComplianceState::*;

    const NOW: OffsetDateTime = datetime!(2026-03-01 12:00 UTC);

    fn pc(seen_days_ago: Option<i64>) -> Device {
        let mut d = Device::new(DeviceId::generate(), "pc", NOW - Duration::days(90));
        d.last_seen = seen_days_ago.map(|n| NOW - Duration::days(n));
        d.os_version = Some("10.0.22631.2861".into());
        d.cert_not_after = Some(NOW + Duration::days(300));
        d
    }

    #[test]
    fn states_follow_check_ins_and_health() {
        let mut cases = vec![
            (pc(Some(0)), Compliant),
            (pc(Some(6)), Compliant),
            (pc(Some(8)), InGracePeriod),
            (pc(Some(31)), Noncompliant),
            (pc(None), Unknown),
        ];
        let mut no_inventory = pc(Some(0));
        no_inventory.os_version = None;
        cases.push((no_inventory, Unknown));
        let mut winre_off = pc(Some(0));
        winre_off.winre_enabled = Some(false);
        cases.push((winre_off, Noncompliant));
        let mut expired = pc(Some(0));
        expired.cert_not_after = Some(NOW - Duration::days(1));
        cases.push((expired, Noncompliant));
        let mut retired = pc(Some(0));
        retired.unenrolled_at = Some(NOW);
        cases.push((retired, Unknown));
        for (device, want) in &cases {
            assert_eq!(compliance(device, NOW), *want, "{device:?}");
            // Each device meets exactly the condition of its own state.
            for state in ComplianceState::ALL {
                assert_eq!(
                    condition(state, NOW).matches(device),
                    state == *want,
                    "{state:?} for {device:?}"
                );
            }
        }
    }
}
