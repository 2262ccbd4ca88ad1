//! Preflight: can this device take a remote Autopilot Reset now? Every reason is shown to the
//! admin (docs/design.md §5; docs/protocol.md §1.3).

use time::{Duration, OffsetDateTime};

use crate::device::{Device, EnrollmentType, JoinEvidence, JoinType};

/// Thresholds for preflight.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreflightSettings {
    /// A device not seen for longer than this is refused (it would not pick the reset up soon).
    pub seen_within: Duration,
    /// Minimum OS build for remote reset: 17763 (1809), ITPRO remotewipe-csp.md.
    pub min_build_remote: u32,
    /// Minimum OS build for local reset: 16299 (1709), ITPRO policy-csp-credentialproviders.md.
    pub min_build_local: u32,
}

impl Default for PreflightSettings {
    fn default() -> Self {
        Self {
            seen_within: Duration::days(7),
            min_build_remote: 17763,
            min_build_local: 16299,
        }
    }
}

/// One reason a device is not ready.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlockReason {
    /// The device unenrolled or was retired.
    Unenrolled,
    /// Entra hybrid joined: Autopilot Reset is not supported, a full wipe is needed.
    HybridJoined,
    /// Not Entra joined (registered, not joined, or unknown).
    NotEntraJoined {
        /// The join type we know.
        join_type: JoinType,
    },
    /// The PC says it is Entra joined, but nothing verified it: no validated Entra device token
    /// named it at enrollment and no admin vouched for it (issue #13 item 2).
    JoinNotVerified,
    /// OS version not reported yet.
    OsBuildUnknown,
    /// OS build below the minimum.
    OsTooOld {
        /// The device's build.
        build: u32,
        /// The minimum for this kind of reset.
        minimum: u32,
    },
    /// Windows SE has no RemoteWipe CSP.
    WindowsSe,
    /// Not seen within the configured window.
    NotSeenRecently {
        /// Last check-in, if any.
        last_seen: Option<OffsetDateTime>,
    },
    /// An earlier reset failed with 0x80070032 (WinRE disabled), none succeeded since, and the
    /// PC has not reported WinRE enabled since that failure.
    EarlierWinReFailure,
    /// The PC reports WinRE is not configured (BitLocker `DeviceEncryptionStatus` bit 12).
    WinReNotConfigured,
    /// The MDM client certificate is expired; the device cannot check in.
    EnrollmentCertExpired {
        /// Expiry.
        not_after: OffsetDateTime,
    },
    /// Another action is already running on the device.
    ActionAlreadyRunning,
    /// The device already waits in a later wave of another batch (issue #15 item 1: a second
    /// reset must not be queued behind the first).
    WaitingInBatch {
        /// That batch.
        batch: crate::ids::BatchId,
        /// Its wave.
        wave: u32,
        /// When that wave is due.
        due_at: OffsetDateTime,
    },
}

impl BlockReason {
    /// Whether its text names something of the one device (when it was last seen, when its
    /// certificate expired, the wave it waits in): devices with equal readiness inputs may then
    /// differ in it.
    pub fn is_per_device(&self) -> bool {
        matches!(
            self,
            Self::NotSeenRecently { .. }
                | Self::EnrollmentCertExpired { .. }
                | Self::WaitingInBatch { .. }
        )
    }

    /// Whether this is one of the WinRE reasons an admin's retry with a reason overrides.
    pub fn is_winre(&self) -> bool {
        matches!(self, Self::EarlierWinReFailure | Self::WinReNotConfigured)
    }

    /// Stable machine-readable code (API, scripts).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unenrolled => "unenrolled",
            Self::HybridJoined => "hybrid_joined",
            Self::NotEntraJoined { .. } => "not_entra_joined",
            Self::JoinNotVerified => "join_not_verified",
            Self::OsBuildUnknown => "os_build_unknown",
            Self::OsTooOld { .. } => "os_too_old",
            Self::WindowsSe => "windows_se",
            Self::NotSeenRecently { .. } => "not_seen_recently",
            Self::EarlierWinReFailure => "winre_failure",
            Self::WinReNotConfigured => "winre_not_configured",
            Self::EnrollmentCertExpired { .. } => "enrollment_cert_expired",
            Self::ActionAlreadyRunning => "action_already_running",
            Self::WaitingInBatch { .. } => "waiting_in_batch",
        }
    }

    /// Human text for the admin, including what to do.
    pub fn text(&self) -> String {
        match self {
            Self::Unenrolled => "the device is no longer enrolled".to_owned(),
            Self::HybridJoined => {
                "the device is Entra hybrid joined; Autopilot Reset supports only Entra-joined devices (use a full wipe)".to_owned()
            }
            Self::NotEntraJoined { join_type } => {
                format!("the device is not Entra joined (join type: {join_type}); Autopilot Reset needs an Entra-joined device")
            }
            Self::JoinNotVerified => {
                "the PC says it is Entra joined, but nothing verified it; it becomes eligible once it enrolls with an Entra device token (Federated enrollment), or with an enrollment token an admin created to vouch for Entra join (`redeploy enrollment-tokens create --vouch-entra-join`)".to_owned()
            }
            Self::OsBuildUnknown => {
                "the OS version is not known yet; wait for the device to report its inventory".to_owned()
            }
            Self::OsTooOld { build, minimum } => {
                format!("Windows build {build} is too old; build {minimum} or later is required")
            }
            Self::WindowsSe => "Windows SE does not support Autopilot Reset".to_owned(),
            Self::NotSeenRecently { last_seen: Some(at) } => {
                format!("the device has not checked in since {at}")
            }
            Self::NotSeenRecently { last_seen: None } => "the device has never checked in".to_owned(),
            Self::EarlierWinReFailure => {
                "an earlier reset failed because WinRE is disabled (0x80070032); run `reagentc.exe /enable` on the device: it becomes eligible at its next check-in once it reports WinRE enabled (or retry with a reason)".to_owned()
            }
            Self::WinReNotConfigured => {
                "the device reports WinRE is not configured; run `reagentc.exe /enable` on it (or retry with a reason)".to_owned()
            }
            Self::EnrollmentCertExpired { not_after } => {
                format!("the enrollment certificate expired at {not_after}; the device must re-enroll")
            }
            Self::ActionAlreadyRunning => "another action is already running on the device".to_owned(),
            Self::WaitingInBatch { batch, wave, due_at } => format!(
                "it already waits in wave {wave} of batch {batch} (due {due_at}); cancel that batch first"
            ),
        }
    }
}

/// The outcome of preflight.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Readiness {
    /// True when `reasons` is empty.
    pub ready: bool,
    /// Every reason found, in a fixed order.
    pub reasons: Vec<BlockReason>,
}

/// Checks whether `device` can take a remote Autopilot Reset at `now`. Pure: the caller says
/// whether another action is active and whether an earlier reset failed with 0x80070032 since
/// the last successful one.
pub fn preflight(
    device: &Device,
    now: OffsetDateTime,
    settings: &PreflightSettings,
    active_action: bool,
    earlier_winre_failure: bool,
) -> Readiness {
    let mut reasons = Vec::new();
    if device.unenrolled_at.is_some() {
        reasons.push(BlockReason::Unenrolled);
    }
    if device.is_hybrid() {
        reasons.push(BlockReason::HybridJoined);
    } else {
        let entra = match device.join_type {
            JoinType::EntraJoined => true,
            JoinType::Unknown => device.enrollment_type == Some(EnrollmentType::Device),
            _ => false,
        };
        if !entra {
            reasons.push(BlockReason::NotEntraJoined {
                join_type: device.join_type,
            });
        } else if device.join_evidence == JoinEvidence::Claimed {
            // The PC's claim alone never makes it eligible (ARCHITECTURE.md "Join type").
            reasons.push(BlockReason::JoinNotVerified);
        }
    }
    match device.os_build() {
        None => reasons.push(BlockReason::OsBuildUnknown),
        Some(build) if build < settings.min_build_remote => reasons.push(BlockReason::OsTooOld {
            build,
            minimum: settings.min_build_remote,
        }),
        Some(_) => {}
    }
    if device.is_windows_se() {
        reasons.push(BlockReason::WindowsSe);
    }
    if device
        .last_seen
        .is_none_or(|at| now - at > settings.seen_within)
    {
        reasons.push(BlockReason::NotSeenRecently {
            last_seen: device.last_seen,
        });
    }
    if earlier_winre_failure {
        reasons.push(BlockReason::EarlierWinReFailure);
    } else if device.winre_enabled == Some(false) {
        reasons.push(BlockReason::WinReNotConfigured);
    }
    if let Some(not_after) = device.cert_not_after {
        if now >= not_after {
            reasons.push(BlockReason::EnrollmentCertExpired { not_after });
        }
    }
    if active_action {
        reasons.push(BlockReason::ActionAlreadyRunning);
    }
    Readiness {
        ready: reasons.is_empty(),
        reasons,
    }
}

/// Whether the device's OS can use local Autopilot Reset (CTRL+WIN+R), build 16299 or later.
pub fn local_reset_supported(device: &Device, settings: &PreflightSettings) -> bool {
    device
        .os_build()
        .is_some_and(|b| b >= settings.min_build_local)
        && !device.is_windows_se()
}

/// `HRESULT_FROM_WIN32(ERROR_NOT_SUPPORTED)`: what a reset reports when WinRE is disabled (MEM
/// windows-autopilot-reset.md "Troubleshooting"; docs/protocol.md §1.3).
pub const HR_WINRE_DISABLED: u32 = 0x8007_0032;

/// Whether the newest Autopilot Reset that ended failed with 0x80070032 (WinRE disabled), i.e.
/// no reset succeeded since that failure. `actions` in any order; other kinds are ignored.
pub fn winre_failure_since_last_success(actions: &[crate::action::Action]) -> bool {
    winre_failure_at(actions).is_some()
}

/// When the newest ended Autopilot Reset failed with 0x80070032, if it did.
fn winre_failure_at(actions: &[crate::action::Action]) -> Option<OffsetDateTime> {
    use crate::action::{ActionKind, ActionState};
    actions
        .iter()
        .filter(|a| a.kind == ActionKind::AutopilotReset)
        .filter(|a| matches!(a.state, ActionState::Done | ActionState::Failed))
        .max_by_key(|a| a.updated_at)
        .filter(|a| a.state == ActionState::Failed && a.last_error == Some(HR_WINRE_DISABLED))
        .map(|a| a.updated_at)
}

/// Whether an earlier WinRE failure still blocks a reset of `device`: it failed with 0x80070032
/// ([`winre_failure_since_last_success`]) and the PC has not reported WinRE enabled since (the
/// session engine reads it at every check-in; `reagentc /enable` on the PC lifts the block).
pub fn winre_blocks(device: &Device, actions: &[crate::action::Action]) -> bool {
    winre_failure_at(actions).is_some_and(|failed_at| {
        !(device.winre_enabled == Some(true)
            && device.winre_checked_at.is_some_and(|at| at > failed_at))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::DeviceId;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-03-01 12:00 UTC);

    fn ready_device() -> Device {
        let mut d = Device::new(DeviceId::generate(), "pc-1", datetime!(2026-01-01 0:00 UTC));
        d.join_type = JoinType::EntraJoined;
        d.enrollment_type = Some(EnrollmentType::Device);
        d.aad_device_id = Some("aad".into());
        d.join_evidence = JoinEvidence::EntraToken;
        d.os_version = Some("10.0.22631.4037".into());
        d.os_platform = Some("Windows 11 Enterprise".into());
        d.last_seen = Some(NOW - Duration::hours(1));
        d.cert_not_after = Some(datetime!(2027-01-01 0:00 UTC));
        d
    }

    fn codes(d: &Device, active: bool, winre: bool) -> Vec<&'static str> {
        let r = preflight(d, NOW, &PreflightSettings::default(), active, winre);
        assert_eq!(r.ready, r.reasons.is_empty());
        r.reasons.iter().map(BlockReason::code).collect()
    }

    #[test]
    fn winre_failure_counts_until_a_reset_succeeds() {
        use crate::action::{Action, ActionKind, ActionState};
        use crate::ids::ActionId;
        let d = DeviceId::generate();
        let ended = |state, err, minute| {
            let mut a = Action::new(
                ActionId::generate(),
                d,
                ActionKind::AutopilotReset,
                "a",
                None,
                NOW,
            );
            a.state = state;
            a.last_error = err;
            a.updated_at = NOW + Duration::minutes(minute);
            a
        };
        let failed = ended(ActionState::Failed, Some(0x8007_0032), 1);
        assert!(!winre_failure_since_last_success(&[]));
        assert!(winre_failure_since_last_success(std::slice::from_ref(
            &failed
        )));
        let later_done = ended(ActionState::Done, None, 2);
        assert!(!winre_failure_since_last_success(&[
            failed.clone(),
            later_done
        ]));
        let earlier_done = ended(ActionState::Done, None, 0);
        assert!(winre_failure_since_last_success(&[earlier_done, failed]));
        let other_error = ended(ActionState::Failed, Some(0x8000_4005), 3);
        assert!(!winre_failure_since_last_success(&[other_error]));
    }

    #[test]
    fn a_healthy_entra_device_is_ready() {
        assert_eq!(codes(&ready_device(), false, false), Vec::<&str>::new());
    }

    #[test]
    fn hybrid_is_detected_from_domain_name() {
        let mut d = ready_device();
        d.domain_name = Some("corp.example.com".into());
        assert_eq!(codes(&d, false, false), ["hybrid_joined"]);
        d.domain_name = Some(String::new());
        assert!(
            codes(&d, false, false).is_empty(),
            "empty DomainName means not domain joined"
        );
    }

    #[test]
    fn registered_and_full_enrollments_are_not_entra_joined() {
        let mut d = ready_device();
        d.join_type = JoinType::Registered;
        assert_eq!(codes(&d, false, false), ["not_entra_joined"]);
        d.join_type = JoinType::Unknown;
        d.enrollment_type = Some(EnrollmentType::Full);
        assert_eq!(codes(&d, false, false), ["not_entra_joined"]);
        d.enrollment_type = Some(EnrollmentType::Device);
        assert!(
            codes(&d, false, false).is_empty(),
            "Device enrollment implies Entra join"
        );
    }

    #[test]
    fn a_claimed_entra_join_is_not_eligible_until_verified() {
        for (evidence, join, enrollment, want) in [
            (
                JoinEvidence::Claimed,
                JoinType::EntraJoined,
                Some(EnrollmentType::Device),
                vec!["join_not_verified"],
            ),
            (
                JoinEvidence::Claimed,
                JoinType::Unknown,
                Some(EnrollmentType::Device),
                vec!["join_not_verified"],
            ),
            (
                JoinEvidence::EntraToken,
                JoinType::EntraJoined,
                Some(EnrollmentType::Device),
                vec![],
            ),
            (
                JoinEvidence::AdminToken,
                JoinType::EntraJoined,
                Some(EnrollmentType::Device),
                vec![],
            ),
            // Evidence never overrides what the PC says against itself.
            (
                JoinEvidence::EntraToken,
                JoinType::Registered,
                Some(EnrollmentType::Full),
                vec!["not_entra_joined"],
            ),
            (
                JoinEvidence::AdminToken,
                JoinType::HybridJoined,
                Some(EnrollmentType::Device),
                vec!["hybrid_joined"],
            ),
            (
                JoinEvidence::Claimed,
                JoinType::Registered,
                Some(EnrollmentType::Full),
                vec!["not_entra_joined"],
            ),
        ] {
            let mut d = ready_device();
            d.join_evidence = evidence;
            d.join_type = join;
            d.enrollment_type = enrollment;
            assert_eq!(codes(&d, false, false), want, "{evidence:?} {join:?}");
        }
        assert!(BlockReason::JoinNotVerified
            .text()
            .contains("--vouch-entra-join"));
    }

    #[test]
    fn build_thresholds_for_remote_and_local() {
        let mut d = ready_device();
        d.os_version = Some("10.0.17134.1".into());
        let r = preflight(&d, NOW, &PreflightSettings::default(), false, false);
        assert_eq!(
            r.reasons,
            [BlockReason::OsTooOld {
                build: 17134,
                minimum: 17763
            }]
        );
        assert!(r.reasons[0].text().contains("17763"));
        assert!(local_reset_supported(&d, &PreflightSettings::default()));
        d.os_version = Some("10.0.17763.1".into());
        assert!(codes(&d, false, false).is_empty());
        d.os_version = Some("10.0.15063.0".into());
        assert!(!local_reset_supported(&d, &PreflightSettings::default()));
        d.os_version = None;
        assert_eq!(codes(&d, false, false), ["os_build_unknown"]);
    }

    #[test]
    fn every_other_reason_is_reported_together() {
        let mut d = ready_device();
        d.os_platform = Some("Windows 11 SE".into());
        d.last_seen = Some(NOW - Duration::days(30));
        d.cert_not_after = Some(NOW - Duration::days(1));
        d.unenrolled_at = Some(NOW - Duration::days(2));
        assert_eq!(
            codes(&d, true, true),
            [
                "unenrolled",
                "windows_se",
                "not_seen_recently",
                "winre_failure",
                "enrollment_cert_expired",
                "action_already_running"
            ]
        );
        let r = preflight(&d, NOW, &PreflightSettings::default(), true, true);
        assert!(r
            .reasons
            .iter()
            .any(|r| r.text().contains("reagentc.exe /enable")));
        d.last_seen = None;
        let r = preflight(&d, NOW, &PreflightSettings::default(), false, false);
        assert!(r
            .reasons
            .contains(&BlockReason::NotSeenRecently { last_seen: None }));
    }
}
