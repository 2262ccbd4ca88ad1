//! MDM client certificate renewal (docs/protocol.md §2.9): who may renew ([`decide_renewal`],
//! pure) and which certificate a check-in may present while a renewal is under way
//! ([`judge_check_in_certificate`], pure). The server checks the PKCS#7 signature and the CA's
//! signature on the signing certificate, loads the device and its unseen renewals, calls these,
//! then has the CA sign and commits [`RenewalGrant::records`] in one
//! [`crate::store::CertificateRenewalStore::renew_device_certificate`].
//!
//! The old certificate stays usable after a renewal until the device checks in with the new
//! one, or until the old one expires, whichever comes first: a PC whose renewal answer was lost
//! is not locked out (it checks in with the old certificate and renews again), and once the new
//! certificate has been seen the old one is refused.

use time::OffsetDateTime;

use super::decide::{EnrollRequest, IssuedCertificate, Refusal, RefusalKind};
use super::Enrollment;
use crate::audit::{AuditOutcome, NewAuditEvent};
use crate::device::{Device, EnrollmentType};
use crate::ids::{DeviceId, EnrollmentId};

/// A certificate that expires within this is shown as expiring soon (API, console).
pub const EXPIRY_WARNING: time::Duration = time::Duration::days(30);

/// The auth method recorded on the enrollment of a renewal.
pub const RENEWAL_AUTH_METHOD: &str = "Renewal";

/// One renewal: the certificate that signed it, the one issued, and whether the device has used
/// the new one yet (from then on the old one is refused).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateRenewal {
    /// The enrollment record of this renewal (its key).
    pub enrollment: EnrollmentId,
    /// The device renewed (the same record before and after).
    pub device: DeviceId,
    /// Thumbprint (lowercase hex) of the certificate that signed the request.
    pub old_thumbprint: String,
    /// Its expiry: the old certificate is refused from then on anyway.
    pub old_not_after: OffsetDateTime,
    /// Thumbprint (lowercase hex) of the certificate issued.
    pub new_thumbprint: String,
    /// Its expiry.
    pub new_not_after: OffsetDateTime,
    /// The device's current certificate when the renewal was decided (the store commits only if
    /// it still is): the old one, or a newer one never used when the PC renews again.
    pub replaces: String,
    /// When it was granted.
    pub renewed_at: OffsetDateTime,
    /// The first check-in with the new certificate (or a later one); `None` while unseen.
    pub new_seen_at: Option<OffsetDateTime>,
}

/// A certificate as the server read it from a request (PKCS#7 signer or TLS client
/// certificate).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PresentedCertificate {
    /// SHA-1 thumbprint, hex (any case).
    pub thumbprint: String,
    /// Validity start.
    pub not_before: OffsetDateTime,
    /// Validity end.
    pub not_after: OffsetDateTime,
    /// The device it names (`None`: names none of ours).
    pub device: Option<DeviceId>,
    /// Why it is not one our CA issued, if it is not.
    pub not_ours: Option<String>,
}

impl PresentedCertificate {
    fn thumbprint(&self) -> String {
        self.thumbprint.to_ascii_lowercase()
    }

    fn is(&self, thumbprint: Option<&str>) -> bool {
        thumbprint.is_some_and(|t| t.eq_ignore_ascii_case(&self.thumbprint))
    }
}

/// What a renewal request carried, as the server checked it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenewalRequest {
    /// The certificate that signed the PKCS#7 (whose signature verified).
    pub signer: PresentedCertificate,
    /// The thumbprint of the TLS client certificate, when the client presented one (MS-MDE2:
    /// the client renews over client TLS with its existing certificate).
    pub tls_thumbprint: Option<String>,
    /// Why the PKCS#10 inside is unusable, if it is.
    pub csr_problem: Option<String>,
    /// The AdditionalContext and raw bytes.
    pub request: EnrollRequest,
}

/// A renewal granted: the device keeps its record; given the new certificate, the records to
/// write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenewalGrant {
    /// The device the new certificate names (the signer's).
    pub device_id: DeviceId,
    /// Where the certificate goes: the device's current enrollment type.
    pub enrollment_type: EnrollmentType,
    /// The signing certificate.
    pub signer: PresentedCertificate,
    /// The device's current certificate now (what the commit expects to replace).
    pub replaces: String,
    /// The request the enrollment record keeps.
    pub request: EnrollRequest,
    /// When.
    pub at: OffsetDateTime,
}

impl RenewalGrant {
    /// The renewal and its enrollment record, once `cert` was issued.
    pub fn records(&self, cert: &IssuedCertificate) -> (CertificateRenewal, Enrollment) {
        let id = EnrollmentId::generate();
        let thumbprint = cert.thumbprint.to_ascii_lowercase();
        let renewal = CertificateRenewal {
            enrollment: id,
            device: self.device_id,
            old_thumbprint: self.signer.thumbprint(),
            old_not_after: self.signer.not_after,
            new_thumbprint: thumbprint.clone(),
            new_not_after: cert.not_after,
            replaces: self.replaces.clone(),
            renewed_at: self.at,
            new_seen_at: None,
        };
        let enrollment = Enrollment {
            id,
            device: self.device_id,
            enrollment_type: self.enrollment_type,
            upn: None,
            auth_method: RENEWAL_AUTH_METHOD.into(),
            context: self.request.context.clone(),
            raw_request: self.request.raw.clone(),
            cert_thumbprint: thumbprint,
            cert_serial: cert.serial.clone(),
            cert_not_after: cert.not_after,
            created_at: self.at,
            replaced_by: None,
        };
        (renewal, enrollment)
    }

    /// The audit event of the committed renewal.
    pub fn audit(&self, renewal: &CertificateRenewal) -> NewAuditEvent {
        NewAuditEvent {
            at: self.at,
            actor: format!("device:{}", self.device_id),
            action: "device.renew".into(),
            targets: vec![self.device_id],
            batch: None,
            outcome: AuditOutcome::Success,
            details: format!(
                "certificate {} (expires {}) renewed as {} (expires {}); enrollment {}",
                renewal.old_thumbprint,
                renewal.old_not_after,
                renewal.new_thumbprint,
                renewal.new_not_after,
                renewal.enrollment
            ),
        }
    }
}

fn refuse(kind: RefusalKind, why: impl Into<String>) -> Refusal {
    Refusal {
        kind,
        reason: why.into(),
    }
}

/// Whether `cert` may still be used by `device`: its current certificate, or the old one of a
/// renewal whose new certificate is current and has not been seen yet.
fn current_or_in_grace(
    device: &Device,
    cert: &PresentedCertificate,
    unseen: &[CertificateRenewal],
) -> bool {
    cert.is(device.cert_thumbprint.as_deref())
        || unseen.iter().any(|r| {
            r.device == device.id
                && r.new_seen_at.is_none()
                && cert.is(Some(&r.old_thumbprint))
                && device
                    .cert_thumbprint
                    .as_deref()
                    .is_some_and(|c| c.eq_ignore_ascii_case(&r.new_thumbprint))
        })
}

/// Decides a renewal request (MS-MDE2 3.4.4.1.1.1; the checks ITPRO
/// certificate-renewal-windows-mdm.md lists: the PKCS#7 signature — verified before — the
/// certificate issued by this service, the requester the one that enrolled). `device` is the
/// device the signer names, `unseen` its renewals whose new certificate is not seen yet.
///
/// Refused, in this order: a signer our CA did not issue or that names no device of ours
/// (`Authentication`); a TLS client certificate other than the signer (`Authentication`); an
/// unenrolled device, a replaced certificate, or one expired or not yet valid
/// (`NotEligibleToRenew`); AdditionalContext naming other hardware (`Authorization`); an
/// unusable PKCS#10 (`CertificateRequest`). Renewing is allowed at any time within the
/// certificate's validity (the RenewPeriod is the client's schedule; we do not refuse early).
pub fn decide_renewal(
    request: &RenewalRequest,
    device: Option<&Device>,
    unseen: &[CertificateRenewal],
    now: OffsetDateTime,
) -> Result<RenewalGrant, Refusal> {
    let signer = &request.signer;
    if let Some(why) = &signer.not_ours {
        return Err(refuse(
            RefusalKind::Authentication,
            format!("the signing certificate was not issued by this server: {why}"),
        ));
    }
    if let Some(tls) = &request.tls_thumbprint {
        if !signer.is(Some(tls)) {
            return Err(refuse(
                RefusalKind::Authentication,
                "the TLS client certificate is not the certificate that signed the renewal",
            ));
        }
    }
    let device = match (signer.device, device) {
        (Some(id), Some(d)) if d.id == id => d,
        _ => {
            return Err(refuse(
                RefusalKind::Authentication,
                "the signing certificate names no device of this server",
            ))
        }
    };
    if device.unenrolled_at.is_some() {
        return Err(refuse(
            RefusalKind::NotEligibleToRenew,
            format!("device {} is no longer enrolled", device.id),
        ));
    }
    if !current_or_in_grace(device, signer, unseen) {
        return Err(refuse(
            RefusalKind::NotEligibleToRenew,
            "the signing certificate was replaced (renewed or re-enrolled)",
        ));
    }
    if now >= signer.not_after {
        return Err(refuse(
            RefusalKind::NotEligibleToRenew,
            format!("the signing certificate expired at {}", signer.not_after),
        ));
    }
    if now < signer.not_before {
        return Err(refuse(
            RefusalKind::NotEligibleToRenew,
            "the signing certificate is not valid yet",
        ));
    }
    let differs = |said: Option<&str>, known: Option<&str>| match (said, known) {
        (Some(s), Some(k)) => !s.trim().eq_ignore_ascii_case(k.trim()),
        _ => false,
    };
    if differs(request.request.hw_dev_id(), device.hw_dev_id.as_deref()) {
        return Err(refuse(
            RefusalKind::Authorization,
            "the request's HWDevID is not the signing device's",
        ));
    }
    if differs(
        request.request.mdm_device_id.as_deref(),
        device.mdm_device_id.as_deref(),
    ) {
        return Err(refuse(
            RefusalKind::Authorization,
            "the request's DeviceID is not the signing device's",
        ));
    }
    if let Some(why) = &request.csr_problem {
        return Err(refuse(RefusalKind::CertificateRequest, why.clone()));
    }
    Ok(RenewalGrant {
        device_id: device.id,
        enrollment_type: device.enrollment_type.unwrap_or(EnrollmentType::Full),
        signer: signer.clone(),
        replaces: device
            .cert_thumbprint
            .clone()
            .unwrap_or_default()
            .to_ascii_lowercase(),
        request: request.request.clone(),
        at: now,
    })
}

/// How a check-in's client certificate relates to its device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CertificateUse {
    /// The current certificate. `retire_old`: renewals are waiting for it to be seen, so the
    /// old certificates are refused from now on (the server marks them seen).
    Current {
        /// Whether to mark the device's unseen renewals seen.
        retire_old: bool,
    },
    /// The old certificate of a renewal not yet seen, before its expiry: accepted.
    Previous,
}

/// Whether a check-in may use `cert` for `device` (already known to be enrolled and named by
/// the certificate): see the module doc for the grace rule. A certificate past its notAfter
/// (on the server's clock) is refused.
pub fn judge_check_in_certificate(
    device: &Device,
    cert: &PresentedCertificate,
    unseen: &[CertificateRenewal],
    now: OffsetDateTime,
) -> Result<CertificateUse, String> {
    if now >= cert.not_after {
        return Err(format!(
            "the client certificate of device {} expired at {}",
            device.id, cert.not_after
        ));
    }
    if device.cert_thumbprint.is_none() || cert.is(device.cert_thumbprint.as_deref()) {
        return Ok(CertificateUse::Current {
            retire_old: unseen.iter().any(|r| r.new_seen_at.is_none()),
        });
    }
    if current_or_in_grace(device, cert, unseen) {
        return Ok(CertificateUse::Previous);
    }
    Err(format!(
        "device {} renewed or re-enrolled: this certificate was replaced",
        device.id
    ))
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;
    use time::Duration;

    use super::*;

    const NOW: OffsetDateTime = datetime!(2026-05-04 9:00 UTC);

    fn device() -> Device {
        let mut d = Device::new(DeviceId::generate(), "PC-1", NOW - Duration::days(300));
        d.hw_dev_id = Some("HW-1".into());
        d.mdm_device_id = Some("DEV-1".into());
        d.enrollment_type = Some(EnrollmentType::Device);
        d.cert_thumbprint = Some("aaaa".into());
        d.cert_not_after = Some(NOW + Duration::days(30));
        d
    }

    fn cert(d: &Device, thumbprint: &str, expires_in: Duration) -> PresentedCertificate {
        PresentedCertificate {
            thumbprint: thumbprint.to_ascii_uppercase(),
            not_before: NOW - Duration::days(335),
            not_after: NOW + expires_in,
            device: Some(d.id),
            not_ours: None,
        }
    }

    fn request(signer: PresentedCertificate) -> RenewalRequest {
        RenewalRequest {
            tls_thumbprint: Some(signer.thumbprint.clone()),
            signer,
            csr_problem: None,
            request: EnrollRequest {
                hw_dev_id: Some("HW-1".into()),
                mdm_device_id: Some("DEV-1".into()),
                raw: b"<renew/>".to_vec(),
                ..EnrollRequest::default()
            },
        }
    }

    /// A renewal of `d` from `old` to `new`, not seen yet.
    fn pending(d: &Device, old: &str, new: &str) -> CertificateRenewal {
        CertificateRenewal {
            enrollment: EnrollmentId::generate(),
            device: d.id,
            old_thumbprint: old.into(),
            old_not_after: NOW + Duration::days(30),
            new_thumbprint: new.into(),
            new_not_after: NOW + Duration::days(365),
            replaces: old.into(),
            renewed_at: NOW - Duration::hours(1),
            new_seen_at: None,
        }
    }

    #[test]
    fn who_may_renew() {
        type Edit = fn(&mut RenewalRequest, &mut Device, &mut Vec<CertificateRenewal>);
        // (case, edit, refusal or Ok)
        type Case<'a> = (&'a str, Edit, Result<(), (RefusalKind, &'a str)>);
        let cases: Vec<Case> = vec![
            ("the current certificate, over TLS", |_, _, _| {}, Ok(())),
            (
                "PKCS#7 alone (no TLS certificate)",
                |r, _, _| r.tls_thumbprint = None,
                Ok(()),
            ),
            (
                "the old certificate while its renewal is unseen (the answer was lost)",
                |r, d, u| {
                    d.cert_thumbprint = Some("bbbb".into());
                    u.push(pending(d, "aaaa", "bbbb"));
                    r.signer.thumbprint = "AAAA".into();
                },
                Ok(()),
            ),
            (
                "another CA",
                |r, _, _| r.signer.not_ours = Some("issuer name differs".into()),
                Err((RefusalKind::Authentication, "not issued by this server")),
            ),
            (
                "a TLS certificate of another device",
                |r, _, _| r.tls_thumbprint = Some("cccc".into()),
                Err((RefusalKind::Authentication, "TLS client certificate")),
            ),
            (
                "a certificate naming an unknown device",
                |r, _, _| r.signer.device = Some(DeviceId::generate()),
                Err((RefusalKind::Authentication, "names no device")),
            ),
            (
                "an unenrolled device",
                |_, d, _| d.unenrolled_at = Some(NOW - Duration::days(1)),
                Err((RefusalKind::NotEligibleToRenew, "no longer enrolled")),
            ),
            (
                "a certificate replaced by a re-enrollment",
                |_, d, _| d.cert_thumbprint = Some("dddd".into()),
                Err((RefusalKind::NotEligibleToRenew, "was replaced")),
            ),
            (
                "the old certificate once the new one was seen",
                |_, d, u| {
                    d.cert_thumbprint = Some("bbbb".into());
                    let mut seen = pending(d, "aaaa", "bbbb");
                    seen.new_seen_at = Some(NOW);
                    u.push(seen);
                },
                Err((RefusalKind::NotEligibleToRenew, "was replaced")),
            ),
            (
                "the old certificate after a second renewal superseded the first",
                |_, d, u| {
                    d.cert_thumbprint = Some("cccc".into());
                    u.push(pending(d, "aaaa", "bbbb"));
                    u.push(pending(d, "bbbb", "cccc"));
                },
                Err((RefusalKind::NotEligibleToRenew, "was replaced")),
            ),
            (
                "expired",
                |r, _, _| r.signer.not_after = NOW,
                Err((RefusalKind::NotEligibleToRenew, "expired")),
            ),
            (
                "not valid yet",
                |r, _, _| r.signer.not_before = NOW + Duration::minutes(1),
                Err((RefusalKind::NotEligibleToRenew, "not valid yet")),
            ),
            (
                "the context names other hardware",
                |r, _, _| r.request.hw_dev_id = Some("HW-2".into()),
                Err((RefusalKind::Authorization, "HWDevID")),
            ),
            (
                "the context names another DeviceID",
                |r, _, _| r.request.mdm_device_id = Some("DEV-2".into()),
                Err((RefusalKind::Authorization, "DeviceID")),
            ),
            (
                "a bad PKCS#10",
                |r, _, _| {
                    r.csr_problem = Some("the request's self-signature does not verify".into())
                },
                Err((RefusalKind::CertificateRequest, "self-signature")),
            ),
            (
                "the signer is judged before the PKCS#10",
                |r, _, _| {
                    r.signer.not_ours = Some("x".into());
                    r.csr_problem = Some("bad".into());
                },
                Err((RefusalKind::Authentication, "not issued")),
            ),
        ];
        for (case, edit, want) in cases {
            let mut d = device();
            let mut r = request(cert(&d, "aaaa", Duration::days(30)));
            let mut unseen = Vec::new();
            edit(&mut r, &mut d, &mut unseen);
            let got = decide_renewal(&r, Some(&d), &unseen, NOW);
            match (got, want) {
                (Ok(g), Ok(())) => {
                    assert_eq!(g.device_id, d.id, "{case}");
                    assert_eq!(
                        Some(g.replaces.as_str()),
                        d.cert_thumbprint.as_deref(),
                        "{case}"
                    );
                }
                (Err(e), Err((kind, text))) => {
                    assert_eq!(e.kind, kind, "{case}: {}", e.reason);
                    assert!(e.reason.contains(text), "{case}: {}", e.reason);
                }
                (got, want) => panic!("{case}: got {got:?}, want {want:?}"),
            }
        }
        // No device loaded at all.
        let d = device();
        let r = request(cert(&d, "aaaa", Duration::days(30)));
        assert_eq!(
            decide_renewal(&r, None, &[], NOW).unwrap_err().kind,
            RefusalKind::Authentication
        );
    }

    #[test]
    fn what_a_renewal_writes() {
        let d = device();
        let g = decide_renewal(
            &request(cert(&d, "aaaa", Duration::days(30))),
            Some(&d),
            &[],
            NOW,
        )
        .unwrap();
        let issued = IssuedCertificate {
            thumbprint: "BBBB".into(),
            serial: "0A".into(),
            not_after: NOW + Duration::days(365),
        };
        let (renewal, enrollment) = g.records(&issued);
        assert_eq!(renewal.device, d.id);
        assert_eq!(enrollment.device, d.id, "the same device record");
        assert_eq!(renewal.enrollment, enrollment.id);
        assert_eq!(
            (
                renewal.old_thumbprint.as_str(),
                renewal.new_thumbprint.as_str()
            ),
            ("aaaa", "bbbb")
        );
        assert_eq!(renewal.replaces, "aaaa");
        assert_eq!(renewal.new_seen_at, None);
        assert_eq!(enrollment.enrollment_type, EnrollmentType::Device);
        assert_eq!(enrollment.auth_method, RENEWAL_AUTH_METHOD);
        assert_eq!(enrollment.cert_thumbprint, "bbbb");
        assert_eq!(enrollment.cert_not_after, issued.not_after);
        assert_eq!(enrollment.raw_request, b"<renew/>");
        let audit = g.audit(&renewal);
        assert_eq!(audit.action, "device.renew");
        assert_eq!(audit.targets, [d.id]);
        assert!(audit.details.contains("aaaa") && audit.details.contains("bbbb"));
    }

    #[test]
    fn which_certificate_a_check_in_may_use() {
        let mut d = device();
        d.cert_thumbprint = Some("bbbb".into());
        let unseen = vec![pending(&d, "aaaa", "bbbb")];
        let day = Duration::days(1);
        // (case, presented, unseen renewals, verdict)
        type Case<'a> = (
            &'a str,
            PresentedCertificate,
            Vec<CertificateRenewal>,
            Result<CertificateUse, &'a str>,
        );
        let mut seen = unseen.clone();
        seen[0].new_seen_at = Some(NOW);
        let cases: Vec<Case> = vec![
            (
                "the current one, nothing pending",
                cert(&d, "bbbb", day),
                vec![],
                Ok(CertificateUse::Current { retire_old: false }),
            ),
            (
                "the new one's first use retires the old",
                cert(&d, "bbbb", day),
                unseen.clone(),
                Ok(CertificateUse::Current { retire_old: true }),
            ),
            (
                "the old one before the new is seen",
                cert(&d, "aaaa", day),
                unseen.clone(),
                Ok(CertificateUse::Previous),
            ),
            (
                "the old one after the new was seen",
                cert(&d, "aaaa", day),
                seen,
                Err("was replaced"),
            ),
            (
                "the old one, expired",
                cert(&d, "aaaa", Duration::ZERO),
                unseen.clone(),
                Err("expired"),
            ),
            (
                "the current one, expired on the server's clock",
                cert(&d, "bbbb", -day),
                vec![],
                Err("expired"),
            ),
            (
                "a certificate never renewed from",
                cert(&d, "eeee", day),
                unseen.clone(),
                Err("was replaced"),
            ),
        ];
        for (case, presented, renewals, want) in cases {
            let got = judge_check_in_certificate(&d, &presented, &renewals, NOW);
            match (got, want) {
                (Ok(g), Ok(w)) => assert_eq!(g, w, "{case}"),
                (Err(e), Err(text)) => assert!(e.contains(text), "{case}: {e}"),
                (got, want) => panic!("{case}: got {got:?}, want {want:?}"),
            }
        }
    }
}
