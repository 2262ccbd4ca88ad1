//! A managed device: what we know from enrollment, check-ins and inventory.

use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::ids::DeviceId;

macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident, $what:literal { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stable lowercase word used in storage and the API.
            pub fn as_str(&self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            /// Parses the word produced by [`Self::as_str`].
            pub fn parse(text: &str) -> $crate::error::Result<Self> {
                match text {
                    $($text => Ok($name::$variant),)+
                    other => Err($crate::error::Error::InvalidValue { kind: $what, value: other.to_owned() }),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use text_enum;

text_enum!(
    /// How the device is joined to a directory (docs/protocol.md §1.9).
    JoinType, "join type" {
        /// Microsoft Entra joined: the only join type Autopilot Reset supports.
        EntraJoined => "entra_joined",
        /// Entra hybrid joined (AD domain + Entra): not supported by Autopilot Reset.
        HybridJoined => "hybrid_joined",
        /// Entra registered (work account added to a personal device).
        Registered => "registered",
        /// Not joined to any directory.
        NotJoined => "not_joined",
        /// Not known yet.
        Unknown => "unknown",
    }
);

text_enum!(
    /// What the join type rests on (issue #13 item 2): the PC's own claim (its `EnrollmentType`
    /// and domain), an Entra device token the server validated at enrollment, whose `deviceid`
    /// claim names the PC's Entra device, or an admin's vouching enrollment token. A claim alone
    /// never makes a PC eligible for Autopilot Reset (`preflight::BlockReason::JoinNotVerified`).
    JoinEvidence, "join evidence" {
        /// Only what the PC said about itself.
        Claimed => "claimed",
        /// A validated Entra token named the device at enrollment.
        EntraToken => "entra_token",
        /// The PC enrolled with an enrollment token an admin created to vouch that the PCs
        /// using it are Entra joined (`vouches_entra_join`): the admin's word, not the PC's.
        AdminToken => "admin_token",
    }
);

text_enum!(
    /// The MS-MDE2 `EnrollmentType` AdditionalContext item (docs/protocol.md §1.9, DMClient CSP).
    EnrollmentType, "enrollment type" {
        /// Device (Entra join) enrollment; cert in My/System.
        Device => "device",
        /// User / work-account enrollment; cert in My/User.
        Full => "full",
    }
);

impl JoinType {
    /// The one rule for the join type (docs/protocol.md §1.9, §2.7), used at enrollment and when
    /// the PC reports its nodes: a `Device` (Entra join) enrollment with an AD domain beside it is
    /// hybrid, without one Entra joined; a `Full` (work account) enrollment is registered; an AD
    /// domain alone means hybrid. `None` when nothing is known yet (keep what we had).
    pub fn derive(enrollment_type: Option<EnrollmentType>, domain: Option<&str>) -> Option<Self> {
        let domain = domain.map(str::trim).filter(|d| !d.is_empty());
        match (enrollment_type, domain) {
            (Some(EnrollmentType::Device), Some(_)) => Some(Self::HybridJoined),
            (Some(EnrollmentType::Device), None) => Some(Self::EntraJoined),
            (Some(EnrollmentType::Full), _) => Some(Self::Registered),
            (None, Some(_)) => Some(Self::HybridJoined),
            (None, None) => None,
        }
    }
}

impl EnrollmentType {
    /// Parses the wire spelling (`Device` / `Full`, case-insensitive).
    pub fn from_wire(text: &str) -> Result<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "device" => Ok(Self::Device),
            "full" => Ok(Self::Full),
            _ => Err(Error::InvalidValue {
                kind: "enrollment type",
                value: text.to_owned(),
            }),
        }
    }
}

/// Where a device's message stands in its OMA-DM sessions: the SyncHdr SessionID (opaque) and
/// MsgID (`core::session::sequence`). The default is "no message taken yet".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MessageSeq {
    /// SessionID as sent.
    pub session_id: String,
    /// MsgID; 0 before the first message.
    pub msg_id: u64,
}

/// A device as the server knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    /// Our identity; kept when the same hardware re-enrolls.
    pub id: DeviceId,
    /// Display name (DNS computer name or DevDetail DeviceName).
    pub name: String,
    /// `./Vendor/MSFT/DMClient/HWDevID`, used to recognise re-enrollment of the same hardware.
    pub hw_dev_id: Option<String>,
    /// `./DevInfo/DevId`: the DeviceID the client sends in the SyncHdr Source.
    pub mdm_device_id: Option<String>,
    /// SMBIOS serial number.
    pub serial: Option<String>,
    /// `./DevInfo/Man`.
    pub manufacturer: Option<String>,
    /// `./DevInfo/Mod`.
    pub model: Option<String>,
    /// `./DevDetail/SwV`, e.g. `10.0.22631.4037`.
    pub os_version: Option<String>,
    /// OSPlatform / edition text, e.g. `Windows 11 Enterprise`.
    pub os_platform: Option<String>,
    /// Directory join.
    pub join_type: JoinType,
    /// What [`Self::join_type`] rests on; set at enrollment, and falls back to
    /// [`JoinEvidence::Claimed`] when the PC reports an Entra device id other than the one its
    /// validated token named.
    pub join_evidence: JoinEvidence,
    /// Enrollment type of the current enrollment.
    pub enrollment_type: Option<EnrollmentType>,
    /// `DMClient/Provider/{id}/AADDeviceID`.
    pub aad_device_id: Option<String>,
    /// `DeviceStatus/DomainName` (non-empty means AD domain joined).
    pub domain_name: Option<String>,
    /// `DevDetail/Ext/Microsoft/DNSComputerName`.
    pub dns_computer_name: Option<String>,
    /// `DevDetail/Ext/Microsoft/TotalRAM` in MB.
    pub total_ram_mb: Option<i64>,
    /// `DevDetail/Ext/Microsoft/TotalStorage` in MB.
    pub total_storage_mb: Option<i64>,
    /// Last committed check-in.
    pub last_seen: Option<OffsetDateTime>,
    /// User signed in at the last check-in.
    pub current_user: Option<String>,
    /// Primary user (cleared by a remote Autopilot Reset).
    pub primary_user: Option<String>,
    /// The user of the last sign-in a check-in reported (kept after they sign out).
    pub last_sign_in_user: Option<String>,
    /// When the server first saw [`Self::last_sign_in_user`] signed in (the check-in that
    /// reported the sign-in; the PC does not say when it happened).
    pub last_sign_in_at: Option<OffsetDateTime>,
    /// Shared (multi-user) device.
    pub shared: bool,
    /// SHA-1 thumbprint (hex, lowercase) of the current MDM client certificate.
    pub cert_thumbprint: Option<String>,
    /// Expiry of the current MDM client certificate.
    pub cert_not_after: Option<OffsetDateTime>,
    /// Local reset allowed, as the admin wants it (`None`: not managed).
    pub local_reset_desired: Option<bool>,
    /// Local reset allowed, as the device last reported it.
    pub local_reset_reported: Option<bool>,
    /// `RemoteWipe/AutomaticRedeployment/Status` last reported.
    pub autopilot_status: Option<i64>,
    /// `RemoteWipe/AutomaticRedeployment/LastError` last reported (HRESULT).
    pub autopilot_last_error: Option<u32>,
    /// Whether WinRE is configured, as the PC last reported it through the BitLocker CSP's
    /// `Status/DeviceEncryptionStatus` bit 12 (ITPRO bitlocker-csp.md); `None` until reported.
    pub winre_enabled: Option<bool>,
    /// When [`Self::winre_enabled`] was last read from the PC.
    pub winre_checked_at: Option<OffsetDateTime>,
    /// First enrollment (or last re-enrollment) time.
    pub enrolled_at: OffsetDateTime,
    /// Set once the device unenrolled (Alert 1226) or was retired.
    pub unenrolled_at: Option<OffsetDateTime>,
    /// The last message taken from the device. Read with the device; written only by the
    /// session step that takes the next one (`SessionStep::sequence`), never by a device update.
    pub last_message: MessageSeq,
}

impl Device {
    /// A device with only the required fields set; everything else unknown.
    pub fn new(id: DeviceId, name: impl Into<String>, enrolled_at: OffsetDateTime) -> Self {
        Self {
            id,
            name: name.into(),
            hw_dev_id: None,
            mdm_device_id: None,
            serial: None,
            manufacturer: None,
            model: None,
            os_version: None,
            os_platform: None,
            join_type: JoinType::Unknown,
            join_evidence: JoinEvidence::Claimed,
            enrollment_type: None,
            aad_device_id: None,
            domain_name: None,
            dns_computer_name: None,
            total_ram_mb: None,
            total_storage_mb: None,
            last_seen: None,
            current_user: None,
            primary_user: None,
            last_sign_in_user: None,
            last_sign_in_at: None,
            shared: false,
            cert_thumbprint: None,
            cert_not_after: None,
            local_reset_desired: None,
            local_reset_reported: None,
            autopilot_status: None,
            autopilot_last_error: None,
            winre_enabled: None,
            winre_checked_at: None,
            enrolled_at,
            unenrolled_at: None,
            last_message: MessageSeq::default(),
        }
    }

    /// The OS build number (third component of `Major.Minor.Build.QFE`), if known.
    pub fn os_build(&self) -> Option<u32> {
        self.os_version
            .as_deref()?
            .split('.')
            .nth(2)?
            .trim()
            .parse()
            .ok()
    }

    /// Whether the device is hybrid joined: an explicit join type, or an AD domain name
    /// next to an Entra device id (docs/protocol.md §1.9).
    pub fn is_hybrid(&self) -> bool {
        self.join_type == JoinType::HybridJoined
            || (self
                .domain_name
                .as_deref()
                .is_some_and(|d| !d.trim().is_empty())
                && self.aad_device_id.is_some())
    }

    /// Whether the edition is Windows SE (RemoteWipe is not available there).
    pub fn is_windows_se(&self) -> bool {
        self.os_platform.as_deref().is_some_and(|p| {
            let p = p.to_ascii_lowercase();
            p.contains("windows se") || p.ends_with(" se") || p.contains("cloudedition")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn one_join_type_rule() {
        use EnrollmentType::{Device as Dev, Full};
        for (et, domain, want) in [
            (Some(Dev), None, Some(JoinType::EntraJoined)),
            (Some(Dev), Some(""), Some(JoinType::EntraJoined)),
            (
                Some(Dev),
                Some("corp.contoso.com"),
                Some(JoinType::HybridJoined),
            ),
            (Some(Full), None, Some(JoinType::Registered)),
            (
                Some(Full),
                Some("corp.contoso.com"),
                Some(JoinType::Registered),
            ),
            (None, Some("corp.contoso.com"), Some(JoinType::HybridJoined)),
            (None, Some(" "), None),
            (None, None, None),
        ] {
            assert_eq!(JoinType::derive(et, domain), want, "{et:?} {domain:?}");
        }
    }

    #[test]
    fn os_build_comes_from_the_third_component() {
        let mut d = Device::new(DeviceId::generate(), "pc", datetime!(2026-01-01 0:00 UTC));
        assert_eq!(d.os_build(), None);
        d.os_version = Some("10.0.22631.4037".into());
        assert_eq!(d.os_build(), Some(22631));
        d.os_version = Some("garbage".into());
        assert_eq!(d.os_build(), None);
    }

    #[test]
    fn enums_round_trip_through_text() {
        for j in JoinType::ALL {
            assert_eq!(JoinType::parse(j.as_str()).unwrap(), *j);
        }
        assert_eq!(
            EnrollmentType::from_wire("Device").unwrap(),
            EnrollmentType::Device
        );
        assert!(JoinType::parse("sideways").is_err());
    }
}
