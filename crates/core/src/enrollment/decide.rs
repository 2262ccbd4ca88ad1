//! Who may enroll, and as which device record: the rules of one MS-MDE2 enrollment request
//! (docs/protocol.md §2.4) as a pure function, [`decide`]. The server authenticates (reads the token,
//! verifies a JWT), checks the CSR's signature, loads the records it might keep ([`candidates`]),
//! calls [`decide`], then spends the token, has the CA sign, commits [`Grant::records`] and audits
//! [`Grant::audit`]; it writes the SOAP either way.

use time::OffsetDateTime;

use super::identity::{self, Binding, Candidate};
use super::{Enrollment, EnrollmentToken, SecretHash, TokenRefusal};
use crate::audit::NewAuditEvent;
use crate::device::{Device, EnrollmentType, JoinEvidence, JoinType};
use crate::ids::{DeviceId, EnrollmentId};
use crate::store::{EnrollOutcome, Store, StoreError, StoreResult};

/// What an enrollment request (RST) says, as the server parsed it: its AdditionalContext items
/// (docs/protocol.md §2.4) and the raw bytes, kept with the enrollment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EnrollRequest {
    /// `EnrollmentType`: `Device` or `Full`; `None` when absent or another value.
    pub enrollment_type: Option<EnrollmentType>,
    /// `HWDevID`, as sent.
    pub hw_dev_id: Option<String>,
    /// `DeviceName`.
    pub device_name: Option<String>,
    /// `DeviceID`: the DevId the PC will use as SyncHdr Source.
    pub mdm_device_id: Option<String>,
    /// `OSVersion`.
    pub os_version: Option<String>,
    /// `DomainName`: an AD domain beside the join (hybrid).
    pub domain_name: Option<String>,
    /// Every AdditionalContext item (name, value) in request order.
    pub context: Vec<(String, String)>,
    /// The request's bytes as received.
    pub raw: Vec<u8>,
}

impl EnrollRequest {
    /// The HWDevID, trimmed; `None` when absent or blank.
    pub fn hw_dev_id(&self) -> Option<&str> {
        self.hw_dev_id
            .as_deref()
            .map(str::trim)
            .filter(|h| !h.is_empty())
    }

    /// Device for an Entra join (`Device`); anything else is a work-account (`Full`) enrollment.
    pub fn enrollment_type(&self) -> EnrollmentType {
        self.enrollment_type.unwrap_or(EnrollmentType::Full)
    }
}

/// The records a re-enrolling PC might keep ([`identity::rebind`] picks): those sharing the
/// request's real hardware id or the validated token's Entra device id, each with its latest
/// enrollment and its Autopilot registration. Placeholder ids load nothing.
pub async fn candidates(
    store: &dyn Store,
    request: &EnrollRequest,
    credential: &Credential,
) -> StoreResult<Vec<Candidate>> {
    let hw = request.hw_dev_id().filter(|h| !identity::is_placeholder(h));
    let entra = match credential {
        Credential::Federated { device_id, .. } => device_id
            .as_deref()
            .map(str::trim)
            .filter(|d| !identity::is_placeholder(d)),
        Credential::Token { .. } => None,
    };
    let devices = store.devices_by_identity(hw, None, entra).await?;
    let mut found = Vec::with_capacity(devices.len());
    for device in devices {
        let enrollment = store
            .enrollments_of_device(device.id)
            .await?
            .into_iter()
            .max_by_key(|e| e.created_at);
        let autopilot = match device.serial.as_deref() {
            Some(serial) if !identity::is_placeholder(serial) => {
                store.autopilot_record(serial).await?
            }
            _ => None,
        };
        found.push(Candidate {
            device,
            enrollment,
            autopilot,
        });
    }
    Ok(found)
}

/// What checking the request's WS-Security token found (the server reads the token by its hash
/// or verifies the JWT; the rules on what it found are here).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Authentication {
    /// OnPremise: the UsernameToken's user, and the enrollment token whose secret is its password
    /// (`None`: no token has that secret).
    Token {
        /// The UsernameToken's Username.
        username: String,
        /// The token found.
        token: Option<EnrollmentToken>,
    },
    /// Federated: a JWT the server verified, and its user.
    Federated {
        /// The token's user principal name, if it has one.
        upn: Option<String>,
        /// The token's Entra device id (`deviceid` claim), if it names one.
        device_id: Option<String>,
    },
    /// Refused before any rule here applies (no credentials, federated enrollment not
    /// configured, a JWT that does not verify): why.
    Refused(String),
}

/// Who the caller is, once authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    /// OnPremise: a usable enrollment token and the UsernameToken's user.
    Token {
        /// The token, not yet spent.
        token: EnrollmentToken,
        /// The UsernameToken's Username.
        username: String,
    },
    /// Federated: a verified JWT's user and, for a device token, its Entra device.
    Federated {
        /// Its user principal name, if any.
        upn: Option<String>,
        /// Its Entra device id (`deviceid` claim), if any.
        device_id: Option<String>,
    },
}

impl Credential {
    /// The auth method as MS-MDE2 names it: `OnPremise` or `Federated`.
    pub fn method(&self) -> &'static str {
        match self {
            Credential::Token { .. } => "OnPremise",
            Credential::Federated { .. } => "Federated",
        }
    }

    /// The enrolling user: the UsernameToken's user (if not blank) or the JWT's.
    pub fn upn(&self) -> Option<String> {
        match self {
            Credential::Token { username, .. } => {
                Some(username.trim().to_owned()).filter(|u| !u.is_empty())
            }
            Credential::Federated { upn, .. } => upn.clone(),
        }
    }

    /// How the audit log names it: `enrollment token "lab"`, `federated ada@contoso.com`.
    fn label(&self) -> String {
        match self {
            Credential::Token { token, .. } => format!("enrollment token {:?}", token.label),
            Credential::Federated { upn, .. } => {
                format!("federated {}", upn.as_deref().unwrap_or("?"))
            }
        }
    }
}

/// The SOAP fault an enrollment is refused with: its `s:Subcode` (ITPRO
/// mobile-device-enrollment.md; docs/protocol.md §2.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefusalKind {
    /// `AuthenticationFailure`: who the caller is could not be established.
    Authentication,
    /// `AuthorizationFailure`: known, but not allowed (an expired or spent token).
    Authorization,
    /// `CertificateRequestFailure`: the CSR is unusable.
    CertificateRequest,
    /// A renewal the certificate does not allow (expired, replaced, device unenrolled): an
    /// authorization fault with the MS-MDE2 errortype `NotEligibleToRenew` (docs/protocol.md
    /// §2.6, §2.9).
    NotEligibleToRenew,
}

/// Why an enrollment is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The fault.
    pub kind: RefusalKind,
    /// Its reason text.
    pub reason: String,
}

impl Refusal {
    fn new(kind: RefusalKind, reason: impl Into<String>) -> Self {
        Self {
            kind,
            reason: reason.into(),
        }
    }

    fn unknown_token() -> Self {
        Self::new(RefusalKind::Authentication, "unknown enrollment token")
    }

    fn token(why: TokenRefusal) -> Self {
        match why {
            TokenRefusal::Expired => Self::new(
                RefusalKind::Authorization,
                "the enrollment token has expired",
            ),
            TokenRefusal::Exhausted => Self::new(
                RefusalKind::Authorization,
                "the enrollment token has no uses left",
            ),
        }
    }

    /// The refusal for a token the store would not spend (it re-checks atomically what
    /// [`authenticate`] saw, which a concurrent enrollment may have changed); `None` for a store
    /// failure, which is no refusal of the caller.
    pub fn of_token_spend(err: &StoreError) -> Option<Self> {
        match err {
            StoreError::NotFound(_) => Some(Self::unknown_token()),
            StoreError::TokenExpired => Some(Self::token(TokenRefusal::Expired)),
            StoreError::TokenExhausted => Some(Self::token(TokenRefusal::Exhausted)),
            _ => None,
        }
    }
}

/// The credential rules, without spending anything (the policy service uses them alone): an
/// enrollment token that exists, is not expired and has uses left at `now`, or a verified JWT.
pub fn authenticate(auth: &Authentication, now: OffsetDateTime) -> Result<Credential, Refusal> {
    match auth {
        Authentication::Token { username, token } => {
            let token = token.as_ref().ok_or_else(Refusal::unknown_token)?;
            match token.refusal(now) {
                Some(why) => Err(Refusal::token(why)),
                None => Ok(Credential::Token {
                    token: token.clone(),
                    username: username.clone(),
                }),
            }
        }
        Authentication::Federated { upn, device_id } => Ok(Credential::Federated {
            upn: upn.clone(),
            device_id: device_id.clone(),
        }),
        Authentication::Refused(why) => Err(Refusal::new(RefusalKind::Authentication, why)),
    }
}

/// An enrollment granted: what to spend, which device the certificate names, and (given the
/// certificate) the records to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The device the certificate must name: the record a validated binding gave back
    /// ([`identity::rebind`]) or a new one.
    pub device_id: DeviceId,
    /// Why the PC keeps an existing record; `None` for a new record.
    pub binding: Option<Binding>,
    /// Device or Full: where the certificate goes and the join type.
    pub enrollment_type: EnrollmentType,
    /// The enrolling user (the provisioning document's `UPN`).
    pub upn: Option<String>,
    /// The enrollment token to spend before signing (OnPremise); `None` for Federated.
    pub spend: Option<SecretHash>,
    /// The request the records are made of.
    pub request: EnrollRequest,
    /// Who enrolled.
    pub credential: Credential,
    /// When.
    pub at: OffsetDateTime,
}

/// The certificate the CA issued for [`Grant::device_id`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedCertificate {
    /// SHA-1 thumbprint (hex, any case).
    pub thumbprint: String,
    /// Serial number (hex).
    pub serial: String,
    /// Expiry.
    pub not_after: OffsetDateTime,
}

impl Grant {
    /// The device record and the enrollment to store once `cert` was issued for
    /// [`Self::device_id`]. For known hardware the store keeps everything of the record but its
    /// enrollment fields ([`crate::store::EnrollmentStore::create_enrollment`]). Each call makes a
    /// new enrollment id (an attempt after a lost race is a new enrollment).
    pub fn records(&self, cert: &IssuedCertificate) -> (Device, Enrollment) {
        let r = &self.request;
        let id = self.device_id;
        let thumbprint = cert.thumbprint.to_ascii_lowercase();
        let name = r
            .device_name
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| format!("device-{}", &id.to_string()[..8]));
        let mut device = Device::new(id, name, self.at);
        device.hw_dev_id = r.hw_dev_id().map(str::to_owned);
        device.mdm_device_id = r.mdm_device_id.clone();
        device.os_version = r.os_version.clone();
        device.domain_name = r.domain_name.clone().filter(|d| !d.trim().is_empty());
        device.enrollment_type = Some(self.enrollment_type);
        device.join_type =
            JoinType::derive(Some(self.enrollment_type), device.domain_name.as_deref())
                .unwrap_or(JoinType::Unknown);
        device.cert_thumbprint = Some(thumbprint.clone());
        device.cert_not_after = Some(cert.not_after);
        // Only a validated token's device claim is taken as the Entra device id here; what
        // the PC reports later is an attribute like any other.
        match &self.credential {
            Credential::Federated {
                device_id: Some(entra),
                ..
            } => {
                device.aad_device_id = Some(entra.trim().to_owned()).filter(|d| !d.is_empty());
                if device.aad_device_id.is_some() {
                    device.join_evidence = JoinEvidence::EntraToken;
                }
            }
            // An admin created this token to vouch for Entra join: the join type rests on the
            // admin's word (it still follows the claim: a domain makes the PC hybrid).
            Credential::Token { token, .. } if token.vouches_entra_join => {
                device.join_evidence = JoinEvidence::AdminToken;
            }
            _ => {}
        }
        let enrollment = Enrollment {
            id: EnrollmentId::generate(),
            device: id,
            enrollment_type: self.enrollment_type,
            upn: self.upn.clone(),
            auth_method: self.credential.method().into(),
            context: r.context.clone(),
            raw_request: r.raw.clone(),
            cert_thumbprint: thumbprint,
            cert_serial: cert.serial.clone(),
            cert_not_after: cert.not_after,
            created_at: self.at,
            replaced_by: None,
        };
        (device, enrollment)
    }

    /// The audit event of the committed enrollment.
    pub fn audit(&self, outcome: &EnrollOutcome) -> NewAuditEvent {
        NewAuditEvent::new(
            self.at,
            format!("device:{}", outcome.device),
            "device.enroll",
        )
        .targets([outcome.device])
        .details(format!(
            "enrollment {} ({}, {}) by {}; {}; hwdevid {}",
            outcome.enrollment,
            self.enrollment_type,
            self.credential.method(),
            self.credential.label(),
            match &self.binding {
                Some(b) => format!(
                    "re-enrollment of the known device, bound by {}",
                    b.describe()
                ),
                None => "new device".to_owned(),
            },
            self.request.hw_dev_id().unwrap_or("none"),
        ))
    }
}

/// Decides an enrollment request: the credential rules ([`authenticate`]), then the CSR
/// (`csr_problem`: why the server found it unusable, checked before a token use is spent on it),
/// then the device the certificate names: one of `candidates` ([`candidates`]) when a
/// validated binding holds ([`identity::rebind`]), else a new one.
pub fn decide(
    request: &EnrollRequest,
    auth: &Authentication,
    csr_problem: Option<&str>,
    candidates: &[Candidate],
    now: OffsetDateTime,
) -> Result<Grant, Refusal> {
    let credential = authenticate(auth, now)?;
    if let Some(why) = csr_problem {
        return Err(Refusal::new(RefusalKind::CertificateRequest, why));
    }
    let spend = match &credential {
        Credential::Token { token, .. } => Some(token.secret_hash.clone()),
        Credential::Federated { .. } => None,
    };
    let rebound = identity::rebind(request, &credential, candidates);
    Ok(Grant {
        device_id: rebound
            .as_ref()
            .map_or_else(DeviceId::generate, |(id, _)| *id),
        binding: rebound.map(|(_, why)| why),
        enrollment_type: request.enrollment_type(),
        upn: credential.upn(),
        spend,
        request: request.clone(),
        credential,
        at: now,
    })
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;
    use time::Duration;

    use super::*;
    use crate::ids::TokenId;

    const NOW: OffsetDateTime = datetime!(2026-05-04 9:00 UTC);

    fn token(expires_in: Option<i64>, max_uses: Option<i64>, uses: i64) -> EnrollmentToken {
        EnrollmentToken {
            id: TokenId::generate(),
            label: "lab".into(),
            secret_hash: SecretHash::of_secret("s3cret"),
            expires_at: expires_in.map(|h| NOW + Duration::hours(h)),
            max_uses,
            uses,
            created_at: NOW - Duration::days(1),
            vouches_entra_join: false,
        }
    }

    fn with_token(t: Option<EnrollmentToken>) -> Authentication {
        Authentication::Token {
            username: "ada@contoso.com".into(),
            token: t,
        }
    }

    fn request() -> EnrollRequest {
        EnrollRequest {
            enrollment_type: Some(EnrollmentType::Device),
            hw_dev_id: Some(" HW-1 ".into()),
            device_name: Some("DESKTOP-ADA".into()),
            mdm_device_id: Some("B5B954E8".into()),
            os_version: Some("10.0.22631.4037".into()),
            domain_name: None,
            context: vec![("EnrollmentType".into(), "Device".into())],
            raw: b"<s:Envelope/>".to_vec(),
        }
    }

    fn cert() -> IssuedCertificate {
        IssuedCertificate {
            thumbprint: "AB12CD".into(),
            serial: "01".into(),
            not_after: NOW + Duration::days(365),
        }
    }

    #[test]
    fn who_may_enroll() {
        // (case, authentication, CSR problem, refusal or the method granted)
        type Case<'a> = (
            &'a str,
            Authentication,
            Option<&'a str>,
            Result<&'a str, (RefusalKind, &'a str)>,
        );
        let cases: Vec<Case> = vec![
            (
                "a usable token",
                with_token(Some(token(None, None, 0))),
                None,
                Ok("OnPremise"),
            ),
            (
                "a token with uses left",
                with_token(Some(token(Some(1), Some(2), 1))),
                None,
                Ok("OnPremise"),
            ),
            (
                "no token has that secret",
                with_token(None),
                None,
                Err((RefusalKind::Authentication, "unknown enrollment token")),
            ),
            (
                "expired",
                with_token(Some(token(Some(0), None, 0))),
                None,
                Err((
                    RefusalKind::Authorization,
                    "the enrollment token has expired",
                )),
            ),
            (
                "spent",
                with_token(Some(token(None, Some(3), 3))),
                None,
                Err((
                    RefusalKind::Authorization,
                    "the enrollment token has no uses left",
                )),
            ),
            (
                "a verified JWT",
                Authentication::Federated {
                    upn: Some("bob@contoso.com".into()),
                    device_id: None,
                },
                None,
                Ok("Federated"),
            ),
            (
                "refused by the server's checks",
                Authentication::Refused("the request carries no credentials".into()),
                None,
                Err((
                    RefusalKind::Authentication,
                    "the request carries no credentials",
                )),
            ),
            (
                "a bad CSR, once authenticated",
                with_token(Some(token(None, None, 0))),
                Some("the CSR signature does not verify"),
                Err((
                    RefusalKind::CertificateRequest,
                    "the CSR signature does not verify",
                )),
            ),
            (
                "credentials are judged before the CSR",
                with_token(None),
                Some("the CSR signature does not verify"),
                Err((RefusalKind::Authentication, "unknown enrollment token")),
            ),
        ];
        for (case, auth, csr, want) in cases {
            let got = decide(&request(), &auth, csr, &[], NOW);
            let got = got
                .as_ref()
                .map(|g| g.credential.method())
                .map_err(|r| (r.kind, r.reason.as_str()));
            assert_eq!(got, want, "{case}");
            // The policy service applies the same credential rules (it has no CSR).
            if csr.is_none() {
                let policy = authenticate(&auth, NOW);
                let policy = policy
                    .as_ref()
                    .map(Credential::method)
                    .map_err(|r| (r.kind, r.reason.as_str()));
                assert_eq!(policy, want, "{case}");
            }
        }
    }

    #[test]
    fn what_is_spent_and_who_enrolls() {
        let t = token(None, None, 0);
        let g = decide(&request(), &with_token(Some(t.clone())), None, &[], NOW).unwrap();
        assert_eq!(g.spend, Some(t.secret_hash.clone()));
        assert_eq!(g.upn.as_deref(), Some("ada@contoso.com"));
        let blank = Authentication::Token {
            username: "  ".into(),
            token: Some(t),
        };
        assert_eq!(
            decide(&request(), &blank, None, &[], NOW).unwrap().upn,
            None
        );
        let fed = Authentication::Federated {
            upn: None,
            device_id: None,
        };
        let g = decide(&request(), &fed, None, &[], NOW).unwrap();
        assert_eq!((g.spend, g.upn), (None, None));
    }

    #[test]
    fn a_bound_pc_keeps_its_identity_anyone_else_gets_a_new_id() {
        let mut known = Device::new(DeviceId::generate(), "old", NOW - Duration::days(30));
        known.hw_dev_id = Some("HW-1".into());
        known.aad_device_id = Some("AAD-1".into());
        known.join_evidence = JoinEvidence::EntraToken;
        let candidates = [Candidate {
            device: known.clone(),
            enrollment: None,
            autopilot: None,
        }];
        let fed = Authentication::Federated {
            upn: None,
            device_id: Some("AAD-1".into()),
        };
        let g = decide(&request(), &fed, None, &candidates, NOW).unwrap();
        assert_eq!(g.device_id, known.id);
        let (device, enrollment) = g.records(&cert());
        assert_eq!((device.id, enrollment.device), (known.id, known.id));
        // The same hardware id with an enrollment token: a new record, twice.
        let auth = with_token(Some(token(None, None, 0)));
        let first = decide(&request(), &auth, None, &candidates, NOW).unwrap();
        let second = decide(&request(), &auth, None, &candidates, NOW).unwrap();
        assert_eq!(first.binding, None);
        assert_ne!(first.device_id, second.device_id);
        assert_ne!(first.device_id, known.id);
    }

    #[test]
    fn the_records_follow_the_request() {
        type Edit = fn(&mut EnrollRequest);
        // (case, edit of the request, enrollment type, join type, HWDevID, domain)
        type Case<'a> = (
            &'a str,
            Edit,
            EnrollmentType,
            JoinType,
            Option<&'a str>,
            Option<&'a str>,
        );
        let cases: Vec<Case> = vec![
            (
                "Entra join",
                |_| {},
                EnrollmentType::Device,
                JoinType::EntraJoined,
                Some("HW-1"),
                None,
            ),
            (
                "hybrid join",
                |r| r.domain_name = Some("corp.contoso.com".into()),
                EnrollmentType::Device,
                JoinType::HybridJoined,
                Some("HW-1"),
                Some("corp.contoso.com"),
            ),
            (
                "a blank domain is none",
                |r| r.domain_name = Some("  ".into()),
                EnrollmentType::Device,
                JoinType::EntraJoined,
                Some("HW-1"),
                None,
            ),
            (
                "work account",
                |r| r.enrollment_type = Some(EnrollmentType::Full),
                EnrollmentType::Full,
                JoinType::Registered,
                Some("HW-1"),
                None,
            ),
            (
                "no EnrollmentType is a work account",
                |r| r.enrollment_type = None,
                EnrollmentType::Full,
                JoinType::Registered,
                Some("HW-1"),
                None,
            ),
            (
                "a blank HWDevID is none",
                |r| r.hw_dev_id = Some(" ".into()),
                EnrollmentType::Device,
                JoinType::EntraJoined,
                None,
                None,
            ),
        ];
        let auth = with_token(Some(token(None, None, 0)));
        for (case, edit, kind, join, hw, domain) in cases {
            let mut r = request();
            edit(&mut r);
            let g = decide(&r, &auth, None, &[], NOW).unwrap();
            let (d, e) = g.records(&cert());
            assert_eq!(d.enrollment_type, Some(kind), "{case}");
            assert_eq!(e.enrollment_type, kind, "{case}");
            assert_eq!(d.join_type, join, "{case}");
            assert_eq!(d.hw_dev_id.as_deref(), hw, "{case}");
            assert_eq!(d.domain_name.as_deref(), domain, "{case}");
            assert_eq!(d.name, "DESKTOP-ADA", "{case}");
            assert_eq!(d.mdm_device_id.as_deref(), Some("B5B954E8"), "{case}");
            assert_eq!(d.cert_thumbprint.as_deref(), Some("ab12cd"), "{case}");
            assert_eq!(
                (e.cert_thumbprint.as_str(), e.cert_serial.as_str()),
                ("ab12cd", "01"),
                "{case}"
            );
            assert_eq!(d.cert_not_after, Some(e.cert_not_after), "{case}");
            assert_eq!(e.auth_method, "OnPremise", "{case}");
            assert_eq!((e.created_at, d.enrolled_at), (NOW, NOW), "{case}");
            assert_eq!(e.raw_request, r.raw, "{case}");
        }
    }

    #[test]
    fn the_join_evidence_is_the_credential_never_the_claim() {
        let mut vouching = token(None, None, 0);
        vouching.vouches_entra_join = true;
        for (case, auth, want) in [
            (
                "an enrollment token: the claim alone",
                with_token(Some(token(None, None, 0))),
                JoinEvidence::Claimed,
            ),
            (
                "an admin's vouching token",
                with_token(Some(vouching)),
                JoinEvidence::AdminToken,
            ),
            (
                "a validated device token",
                Authentication::Federated {
                    upn: None,
                    device_id: Some("AAD-1".into()),
                },
                JoinEvidence::EntraToken,
            ),
            (
                "a user token names no device",
                Authentication::Federated {
                    upn: Some("ada@contoso.com".into()),
                    device_id: None,
                },
                JoinEvidence::Claimed,
            ),
        ] {
            let g = decide(&request(), &auth, None, &[], NOW).unwrap();
            let (d, _) = g.records(&cert());
            assert_eq!(d.join_evidence, want, "{case}");
            assert_eq!(d.join_type, JoinType::EntraJoined, "{case}: the claim");
        }
    }

    #[test]
    fn a_pc_without_a_name_is_named_after_its_id_and_each_attempt_is_a_new_enrollment() {
        let mut r = request();
        r.device_name = Some(String::new());
        let mut g = decide(&r, &with_token(Some(token(None, None, 0))), None, &[], NOW).unwrap();
        let (d, e1) = g.records(&cert());
        assert_eq!(d.name, format!("device-{}", &g.device_id.to_string()[..8]));
        // Another attempt, another id.
        g.device_id = DeviceId::generate();
        let (d2, e2) = g.records(&cert());
        assert_eq!(d2.name, format!("device-{}", &g.device_id.to_string()[..8]));
        assert_ne!(e1.id, e2.id);
    }

    #[test]
    fn the_audit_says_how_and_whether_the_pc_was_known() {
        let outcome = |known| EnrollOutcome {
            device: DeviceId::generate(),
            enrollment: EnrollmentId::generate(),
            device_was_known: known,
            replaced: Vec::new(),
        };
        let g = decide(
            &request(),
            &with_token(Some(token(None, None, 0))),
            None,
            &[],
            NOW,
        )
        .unwrap();
        let o = outcome(false);
        let e = g.audit(&o);
        assert_eq!(e.action, "device.enroll");
        assert_eq!(e.actor, format!("device:{}", o.device));
        assert_eq!(e.targets, [o.device]);
        assert_eq!(e.outcome, crate::audit::AuditOutcome::Success);
        assert_eq!(
            e.details,
            format!(
                "enrollment {} (device, OnPremise) by enrollment token \"lab\"; new device; hwdevid HW-1",
                o.enrollment
            )
        );
        let mut r = request();
        r.hw_dev_id = None;
        let fed = Authentication::Federated {
            upn: Some("bob@contoso.com".into()),
            device_id: Some("AAD-1".into()),
        };
        let mut known = Device::new(DeviceId::generate(), "old", NOW - Duration::days(30));
        known.aad_device_id = Some("AAD-1".into());
        known.join_evidence = JoinEvidence::EntraToken;
        let known = Candidate {
            device: known,
            enrollment: None,
            autopilot: None,
        };
        let g = decide(&r, &fed, None, &[known], NOW).unwrap();
        let o = outcome(true);
        assert_eq!(
            g.audit(&o).details,
            format!(
                "enrollment {} (device, Federated) by federated bob@contoso.com; re-enrollment of the known device, bound by the token's Entra device id AAD-1; hwdevid none",
                o.enrollment
            )
        );
    }

    #[test]
    fn a_token_the_store_will_not_spend_is_refused_like_one_seen_unusable() {
        let kind = |e: &StoreError| Refusal::of_token_spend(e).map(|r| (r.kind, r.reason));
        assert_eq!(
            kind(&StoreError::TokenExpired),
            Some((
                RefusalKind::Authorization,
                "the enrollment token has expired".into()
            ))
        );
        assert_eq!(
            kind(&StoreError::TokenExhausted).map(|r| r.0),
            Some(RefusalKind::Authorization)
        );
        assert_eq!(
            kind(&StoreError::NotFound("token".into())).map(|r| r.0),
            Some(RefusalKind::Authentication)
        );
        assert_eq!(kind(&StoreError::Conflict("x".into())), None);
    }
}
