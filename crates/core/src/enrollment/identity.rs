//! Device identity (issue #13): a device record is the MDM certificate it was issued. Hardware
//! id, serial and Entra device id are attributes a PC reports about itself; they are never keys,
//! so two records may share one (a clash, shown to the admin) and no report can break a session.
//!
//! A re-enrolling PC keeps its old record only when a credential the server validated binds it
//! to that record ([`rebind`]); whatever the client claims alone (a hardware id, an enrollment
//! type, an enrollment token anyone on the lab bench may hold) makes a new record, and the old
//! one keeps its history.

use time::OffsetDateTime;

use super::decide::{Credential, EnrollRequest};
use super::Enrollment;
use crate::audit::{AuditOutcome, NewAuditEvent};
use crate::autopilot::AutopilotRecord;
use crate::device::{Device, EnrollmentType, JoinEvidence};
use crate::ids::DeviceId;
use crate::store::{Store, StoreResult};

/// Whether `value` is a placeholder rather than an identity: blank, or one character repeated
/// (Windows and imitating clients send `000…0` when they have no hardware id). Placeholders
/// never match and never clash.
pub fn is_placeholder(value: &str) -> bool {
    let value = value.trim();
    let mut chars = value.chars().filter(|c| *c != '-');
    match chars.next() {
        None => true,
        Some(first) => chars.all(|c| c.eq_ignore_ascii_case(&first)),
    }
}

/// `value` trimmed, unless it is a placeholder.
fn identity(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|v| !is_placeholder(v))
}

/// An existing record the request might belong to, with what its latest enrollment proved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// The record.
    pub device: Device,
    /// Its current (latest) enrollment.
    pub enrollment: Option<Enrollment>,
    /// Its serial is in the Autopilot registry the admin imported.
    pub autopilot: Option<AutopilotRecord>,
}

/// Why a re-enrolling PC was given its old record back (audited).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Binding {
    /// The validated token names the Entra device the record belongs to.
    EntraDevice(String),
    /// A user-driven enrollment by the user who enrolled the record, both validated.
    SameUser(String),
    /// Hardware the admin registered through Autopilot import, re-enrolled with a validated
    /// token of the organisation.
    Autopilot(String),
}

impl Binding {
    /// How the audit log says it.
    pub fn describe(&self) -> String {
        match self {
            Binding::EntraDevice(id) => format!("the token's Entra device id {id}"),
            Binding::SameUser(upn) => format!("the same signed-in user {upn}"),
            Binding::Autopilot(serial) => format!("Autopilot-registered serial {serial}"),
        }
    }
}

/// The record a re-enrolling PC keeps, and why; `None` means a new record. `candidates` are the
/// records sharing the request's hardware id or the token's Entra device id; unenrolled ones
/// qualify too (a PC that left and came back). Only a validated (federated) credential can
/// bind; of several candidates the newest enrolled wins.
pub fn rebind(
    request: &EnrollRequest,
    credential: &Credential,
    candidates: &[Candidate],
) -> Option<(DeviceId, Binding)> {
    let Credential::Federated { upn, device_id } = credential else {
        return None;
    };
    let hw = identity(request.hw_dev_id());
    let mut newest_first: Vec<&Candidate> = candidates.iter().collect();
    newest_first.sort_by_key(|c| std::cmp::Reverse(c.device.enrolled_at));
    let same_hardware =
        |c: &Candidate| hw.is_some() && identity(c.device.hw_dev_id.as_deref()) == hw;

    // 1. The token itself names the Entra device.
    if let Some(token_device) = identity(device_id.as_deref()) {
        // Only an Entra device id a validated token gave: one a PC merely reported could be
        // anyone's.
        let found = newest_first.iter().find(|c| {
            c.device.join_evidence == JoinEvidence::EntraToken
                && identity(c.device.aad_device_id.as_deref())
                    .is_some_and(|id| id.eq_ignore_ascii_case(token_device))
        });
        if let Some(c) = found {
            return Some((c.device.id, Binding::EntraDevice(token_device.to_owned())));
        }
    }
    // 2. The same user enrolls the same hardware again (a work account added back).
    if let (Some(user), EnrollmentType::Full) = (upn.as_deref(), request.enrollment_type()) {
        let found = newest_first.iter().find(|c| {
            same_hardware(c)
                && c.enrollment.as_ref().is_some_and(|e| {
                    e.auth_method == "Federated"
                        && e.upn
                            .as_deref()
                            .is_some_and(|u| u.eq_ignore_ascii_case(user))
                })
        });
        if let Some(c) = found {
            return Some((c.device.id, Binding::SameUser(user.to_owned())));
        }
    }
    // 3. Hardware the admin registered as the organisation's.
    newest_first.iter().find_map(|c| {
        let record = c.autopilot.as_ref()?;
        same_hardware(c).then(|| (c.device.id, Binding::Autopilot(record.serial.clone())))
    })
}

/// Which identity attribute two records share.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Attribute {
    /// `HWDevID`.
    HardwareId,
    /// The SMBIOS serial number.
    Serial,
    /// The Entra device id.
    EntraDeviceId,
}

impl Attribute {
    /// Its name in the API and the console.
    pub fn as_str(self) -> &'static str {
        match self {
            Attribute::HardwareId => "hw_dev_id",
            Attribute::Serial => "serial",
            Attribute::EntraDeviceId => "aad_device_id",
        }
    }
}

/// Another enrolled record that reports the same identity attribute as this one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Clash {
    /// The other record.
    pub other: DeviceId,
    /// Its name.
    pub other_name: String,
    /// What they share.
    pub attribute: Attribute,
    /// The shared value.
    pub value: String,
}

/// The clashes of `device` with `others` (records found by its attributes): enrolled records
/// other than itself sharing a real (non-placeholder) hardware id, serial or Entra device id.
pub fn clashes(device: &Device, others: &[Device]) -> Vec<Clash> {
    let attributes = |d: &Device| {
        [
            (Attribute::HardwareId, d.hw_dev_id.clone()),
            (Attribute::Serial, d.serial.clone()),
            (Attribute::EntraDeviceId, d.aad_device_id.clone()),
        ]
    };
    let mut found = Vec::new();
    for other in others {
        if other.id == device.id || other.unenrolled_at.is_some() {
            continue;
        }
        for ((attribute, mine), (_, theirs)) in
            attributes(device).into_iter().zip(attributes(other))
        {
            if let (Some(mine), Some(theirs)) =
                (identity(mine.as_deref()), identity(theirs.as_deref()))
            {
                if mine.eq_ignore_ascii_case(theirs) {
                    found.push(Clash {
                        other: other.id,
                        other_name: other.name.clone(),
                        attribute,
                        value: mine.to_owned(),
                    });
                }
            }
        }
    }
    found.sort_by_key(|c| (c.attribute, c.other));
    found
}

/// The clashes of `device` with the other records the store finds by its real identity
/// attributes.
pub async fn find_clashes(store: &dyn Store, device: &Device) -> StoreResult<Vec<Clash>> {
    let others = store
        .devices_by_identity(
            identity(device.hw_dev_id.as_deref()),
            identity(device.serial.as_deref()),
            identity(device.aad_device_id.as_deref()),
        )
        .await?;
    Ok(clashes(device, &others))
}

/// The audit event flagging `clashes` of `device` (all records concerned as targets); `None`
/// without clashes.
pub fn clash_audit(
    device: &Device,
    clashes: &[Clash],
    at: OffsetDateTime,
) -> Option<NewAuditEvent> {
    if clashes.is_empty() {
        return None;
    }
    let what: Vec<String> = clashes
        .iter()
        .map(|c| {
            format!(
                "{} {} with {} ({})",
                c.attribute.as_str(),
                c.value,
                c.other_name,
                c.other
            )
        })
        .collect();
    Some(
        NewAuditEvent::new(at, "system", "device.identity_clash")
            .targets(std::iter::once(device.id).chain(clashes.iter().map(|c| c.other)))
            .outcome(AuditOutcome::Failed)
            .details(format!(
                "{} ({}) shares its identity: {}",
                device.name,
                device.id,
                what.join("; ")
            )),
    )
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;
    use time::Duration;

    use super::*;
    use crate::ids::EnrollmentId;

    const NOW: OffsetDateTime = datetime!(2026-05-04 9:00 UTC);
    const HW: &str = "6F2C8A14D3B5E7F90A1B2C3D4E5F60718293A4B5C6D7E8F90A1B2C3D4E5F6071";

    fn device(name: &str, hw: Option<&str>, days_ago: i64) -> Device {
        let mut d = Device::new(DeviceId::generate(), name, NOW - Duration::days(days_ago));
        d.hw_dev_id = hw.map(str::to_owned);
        d
    }

    fn enrollment(d: &Device, method: &str, upn: Option<&str>) -> Enrollment {
        Enrollment {
            id: EnrollmentId::generate(),
            device: d.id,
            enrollment_type: EnrollmentType::Full,
            upn: upn.map(str::to_owned),
            auth_method: method.into(),
            context: Vec::new(),
            raw_request: Vec::new(),
            cert_thumbprint: "ab".into(),
            cert_serial: "01".into(),
            cert_not_after: NOW + Duration::days(300),
            created_at: d.enrolled_at,
            replaced_by: None,
        }
    }

    fn candidate(d: &Device, e: Option<Enrollment>, autopilot: bool) -> Candidate {
        Candidate {
            device: d.clone(),
            enrollment: e,
            autopilot: autopilot.then(|| AutopilotRecord {
                serial: "SN-1".into(),
                product_id: None,
                hardware_hash: String::new(),
                group_tag: None,
                assigned_user: None,
            }),
        }
    }

    fn request(kind: EnrollmentType, hw: Option<&str>) -> EnrollRequest {
        EnrollRequest {
            enrollment_type: Some(kind),
            hw_dev_id: hw.map(str::to_owned),
            ..EnrollRequest::default()
        }
    }

    fn federated(upn: Option<&str>, device: Option<&str>) -> Credential {
        Credential::Federated {
            upn: upn.map(str::to_owned),
            device_id: device.map(str::to_owned),
        }
    }

    fn token() -> Credential {
        Credential::Token {
            token: crate::enrollment::EnrollmentToken {
                id: crate::ids::TokenId::generate(),
                label: "lab".into(),
                secret_hash: crate::enrollment::SecretHash::of_secret("s"),
                expires_at: None,
                max_uses: None,
                uses: 0,
                created_at: NOW,
                vouches_entra_join: false,
            },
            username: "ada@contoso.com".into(),
        }
    }

    #[test]
    fn placeholders_are_not_identities() {
        for p in [
            "",
            "   ",
            "0000000000000000",
            "FFFFFFFF",
            "ffffFFFF",
            "0000-0000",
            "-",
        ] {
            assert!(is_placeholder(p), "{p:?}");
        }
        for real in [HW, "SN-1", "a1"] {
            assert!(!is_placeholder(real), "{real:?}");
        }
    }

    #[test]
    fn only_a_validated_binding_keeps_the_old_record() {
        let mut entra = device("entra", Some(HW), 30);
        entra.aad_device_id = Some("AAD-1".into());
        entra.join_evidence = JoinEvidence::EntraToken;
        // A record whose Entra device id the PC only reported: never bound by it.
        let mut reported = device("reported", Some("OTHER-HW"), 1);
        reported.aad_device_id = Some("AAD-1".into());
        let user = device("user", Some(HW), 20);
        let registered = device("registered", Some(HW), 10);
        let zero = device("zero", Some("0000000000000000"), 5);
        let candidates = [
            candidate(&reported, None, false),
            candidate(&entra, Some(enrollment(&entra, "Federated", None)), false),
            candidate(
                &user,
                Some(enrollment(&user, "Federated", Some("ada@contoso.com"))),
                false,
            ),
            candidate(&registered, None, true),
            candidate(
                &zero,
                Some(enrollment(&zero, "Federated", Some("bob@contoso.com"))),
                true,
            ),
        ];
        let dev = request(EnrollmentType::Device, Some(HW));
        let full = request(EnrollmentType::Full, Some(HW));
        let other = request(EnrollmentType::Device, Some("OTHER"));
        let zeros = request(EnrollmentType::Full, Some("0000000000000000"));
        // (case, request, credential, the record kept)
        let cases: Vec<(&str, &EnrollRequest, Credential, Option<DeviceId>)> = vec![
            (
                "the token names the Entra device",
                &dev,
                federated(None, Some("aad-1")),
                Some(entra.id),
            ),
            (
                "the token names the Entra device, whatever the claimed hardware",
                &other,
                federated(None, Some("AAD-1")),
                Some(entra.id),
            ),
            (
                "the same user adds the work account back on the same hardware",
                &full,
                federated(Some("ADA@contoso.com"), None),
                Some(user.id),
            ),
            (
                "a user of the organisation on Autopilot-registered hardware",
                &full,
                federated(Some("carol@contoso.com"), None),
                Some(registered.id),
            ),
            (
                "an enrollment token holder claiming the hardware id",
                &dev,
                token(),
                None,
            ),
            (
                "an unknown Entra device id, unregistered hardware",
                &other,
                federated(Some("ada@contoso.com"), Some("AAD-9")),
                None,
            ),
            (
                "a placeholder hardware id matches nothing",
                &zeros,
                federated(Some("bob@contoso.com"), None),
                None,
            ),
        ];
        for (case, req, credential, want) in cases {
            assert_eq!(
                rebind(req, &credential, &candidates).map(|(id, _)| id),
                want,
                "{case}"
            );
        }
    }

    #[test]
    fn the_newest_record_wins_and_the_binding_is_said() {
        let mut old = device("old", Some(HW), 30);
        old.aad_device_id = Some("AAD-1".into());
        old.join_evidence = JoinEvidence::EntraToken;
        let mut new = device("new", Some(HW), 1);
        new.aad_device_id = Some("AAD-1".into());
        new.join_evidence = JoinEvidence::EntraToken;
        let (id, why) = rebind(
            &request(EnrollmentType::Device, Some(HW)),
            &federated(None, Some("AAD-1")),
            &[candidate(&old, None, false), candidate(&new, None, false)],
        )
        .unwrap();
        assert_eq!(id, new.id);
        assert_eq!(why.describe(), "the token's Entra device id AAD-1");
    }

    #[test]
    fn clashes_are_real_shared_attributes_of_enrolled_records() {
        let mut me = device("me", Some(HW), 3);
        me.serial = Some("SN-1".into());
        let mut twin = device("twin", Some(&HW.to_lowercase()), 2);
        twin.serial = Some("0000".into());
        let mut serial_twin = device("serial-twin", Some("OTHER"), 2);
        serial_twin.serial = Some("sn-1".into());
        let mut gone = device("gone", Some(HW), 9);
        gone.unenrolled_at = Some(NOW);
        let found = clashes(&me, &[me.clone(), twin.clone(), serial_twin.clone(), gone]);
        let got: Vec<_> = found
            .iter()
            .map(|c| (c.other_name.as_str(), c.attribute.as_str()))
            .collect();
        assert_eq!(got, [("twin", "hw_dev_id"), ("serial-twin", "serial")]);
        let zeros = device("zeros", Some("0000000000000000"), 1);
        assert!(clashes(&zeros, &[device("z2", Some("0000000000000000"), 1)]).is_empty());
    }
}
