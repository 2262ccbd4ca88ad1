//! The device certificate authority: issues MDM client certificates from a device's PKCS#10
//! (RSA-2048 TPM keys or ECDSA), the HTTPS server certificate, SHA-1 thumbprints, and reads the
//! device id back from a TLS client certificate. The emulator's key + CSR helper lives here too.

use std::net::IpAddr;

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use sha1::{Digest, Sha1};
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate, X509CertificationRequest};

use crate::{Error, Result};

/// Certificates start this long before `now`, so a device whose clock is slightly behind the
/// server's still accepts them.
pub const CLOCK_SKEW_ALLOWANCE: Duration = Duration::hours(1);
/// Prefix of the SAN URI that carries the device id in issued client certificates.
pub const DEVICE_URI_PREFIX: &str = "urn:redeploy:device:";
/// Smallest RSA key accepted in a device CSR (Windows TPM keys are RSA-2048).
pub const MIN_RSA_BITS: usize = 2048;
/// CA lifetime.
const CA_VALIDITY: Duration = Duration::days(3650);
/// HTTPS server certificate lifetime (the 397-day ceiling browsers enforce).
const SERVER_VALIDITY: Duration = Duration::days(397);

fn cert_err(context: &str) -> impl Fn(rcgen::Error) -> Error + '_ {
    move |e| Error::Certificate(format!("{context}: {e}"))
}

/// A CA certificate with its private key.
pub struct CertificateAuthority {
    issuer: rcgen::Certificate,
    key: KeyPair,
    cert_pem: String,
    cert_der: Vec<u8>,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("CertificateAuthority")
            .field("thumbprint", &thumbprint(&self.cert_der))
            .finish_non_exhaustive()
    }
}

/// The key algorithm of a CSR's public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyAlgorithm {
    Rsa { bits: usize },
    EcdsaP256,
    EcdsaP384,
    Other(String),
}

/// A CSR whose self-signature verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCsr {
    /// The first CN of the subject, if any (Windows puts a GUID-ish id or the UPN there).
    pub subject_common_name: Option<String>,
    /// The SubjectPublicKeyInfo, DER.
    pub public_key_der: Vec<u8>,
    pub key_algorithm: KeyAlgorithm,
}

/// A certificate issued to a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCertificate {
    pub der: Vec<u8>,
    pub pem: String,
    /// Uppercase hex SHA-1 of the DER (the provisioning-doc characteristic name).
    pub thumbprint: String,
    /// Serial number, uppercase hex.
    pub serial: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl CertificateAuthority {
    /// A new self-signed ECDSA P-256 CA valid from `now` (minus the skew allowance) for 10 years.
    pub fn generate(common_name: &str, now: OffsetDateTime) -> Result<Self> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(cert_err("CA key"))?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        dn.push(DnType::OrganizationName, "Redeploy");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = now - CLOCK_SKEW_ALLOWANCE;
        params.not_after = now + CA_VALIDITY;
        params.serial_number = Some(random_serial());
        let cert = params
            .self_signed(&key)
            .map_err(cert_err("CA certificate"))?;
        let cert_pem = cert.pem();
        let cert_der = cert.der().to_vec();
        Ok(CertificateAuthority {
            issuer: cert,
            key,
            cert_pem,
            cert_der,
        })
    }

    /// Loads a CA saved with [`cert_pem`](Self::cert_pem) and [`key_pem`](Self::key_pem).
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self> {
        let key = KeyPair::from_pem(key_pem).map_err(cert_err("CA key PEM"))?;
        let params = CertificateParams::from_ca_cert_pem(cert_pem)
            .map_err(cert_err("CA certificate PEM"))?;
        let cert_der = pem_to_der(cert_pem, "CERTIFICATE")?;
        let (_, parsed) = X509Certificate::from_der(&cert_der)
            .map_err(|e| Error::Certificate(format!("CA certificate: {e}")))?;
        if parsed.public_key().raw != key.public_key_der().as_slice() {
            return Err(Error::Certificate(
                "the CA key does not belong to the CA certificate".into(),
            ));
        }
        // rcgen signs with an issuer `Certificate`; re-deriving one from the saved params keeps
        // the same subject and key identifier, so issued certificates chain to the saved DER.
        let issuer = params
            .self_signed(&key)
            .map_err(cert_err("CA certificate"))?;
        Ok(CertificateAuthority {
            issuer,
            key,
            cert_pem: cert_pem.to_string(),
            cert_der,
        })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// Issues a client-authentication certificate for a device: subject CN = `device_id`,
    /// SAN URI `urn:redeploy:device:<id>` (read back by [`device_id_from_certificate`]).
    pub fn issue_device_certificate(
        &self,
        csr: &VerifiedCsr,
        device_id: &str,
        now: OffsetDateTime,
        validity_days: u32,
    ) -> Result<IssuedCertificate> {
        self.issue_device_certificate_for(
            csr,
            device_id,
            now,
            Duration::days(i64::from(validity_days)),
        )
    }

    /// [`Self::issue_device_certificate`] with a lifetime of any length (valid until
    /// `now + validity`; tests use minutes).
    pub fn issue_device_certificate_for(
        &self,
        csr: &VerifiedCsr,
        device_id: &str,
        now: OffsetDateTime,
        validity: Duration,
    ) -> Result<IssuedCertificate> {
        if device_id.is_empty() {
            return Err(Error::Certificate("device id is empty".into()));
        }
        // The policy we publish asks for 2048-bit keys at least (docs/protocol.md §2.3).
        if let KeyAlgorithm::Rsa { bits } = csr.key_algorithm {
            if bits < MIN_RSA_BITS {
                return Err(Error::CertificateRequest(format!(
                    "RSA key of {bits} bits is shorter than the required {MIN_RSA_BITS}"
                )));
            }
        }
        let public_key =
            rcgen::SubjectPublicKeyInfo::from_der(&csr.public_key_der).map_err(|e| {
                Error::CertificateRequest(format!("unsupported public key in the request: {e}"))
            })?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, device_id);
        params.distinguished_name = dn;
        let uri = format!("{DEVICE_URI_PREFIX}{}", percent_encode(device_id));
        params.subject_alt_names = vec![SanType::URI(
            uri.try_into().map_err(cert_err("device id URI"))?,
        )];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.use_authority_key_identifier_extension = true;
        params.not_before = now - CLOCK_SKEW_ALLOWANCE;
        params.not_after = now + validity;
        params.serial_number = Some(random_serial());
        let cert = params
            .signed_by(&public_key, &self.issuer, &self.key)
            .map_err(cert_err("device certificate"))?;
        let der = cert.der().to_vec();
        let (_, parsed) = X509Certificate::from_der(&der)
            .map_err(|e| Error::Certificate(format!("issued certificate: {e}")))?;
        Ok(IssuedCertificate {
            pem: cert.pem(),
            thumbprint: thumbprint(&der),
            serial: hex::encode_upper(parsed.raw_serial()),
            not_before: parsed.validity().not_before.to_datetime(),
            not_after: parsed.validity().not_after.to_datetime(),
            der,
        })
    }

    /// A TLS server certificate (and its new ECDSA key) for the HTTPS listener: SANs
    /// `localhost`, 127.0.0.1, ::1 and `hostnames` (IP literals become IP SANs).
    pub fn issue_server_certificate(
        &self,
        hostnames: &[String],
        now: OffsetDateTime,
    ) -> Result<(String, String)> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(cert_err("server key"))?;
        let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
        for h in hostnames {
            if !names.iter().any(|n| n.eq_ignore_ascii_case(h)) {
                names.push(h.clone());
            }
        }
        let mut sans = Vec::new();
        for n in &names {
            match n.parse::<IpAddr>() {
                Ok(ip) => sans.push(SanType::IpAddress(ip)),
                Err(_) => sans.push(SanType::DnsName(
                    n.clone().try_into().map_err(cert_err("server host name"))?,
                )),
            }
        }
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            hostnames.first().map_or("localhost", String::as_str),
        );
        params.distinguished_name = dn;
        params.subject_alt_names = sans;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        params.not_before = now - CLOCK_SKEW_ALLOWANCE;
        params.not_after = now + SERVER_VALIDITY;
        params.serial_number = Some(random_serial());
        let cert = params
            .signed_by(&key, &self.issuer, &self.key)
            .map_err(cert_err("server certificate"))?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// Checks that `der` is a certificate signed by this CA (signature only; no time check).
    pub fn verify_issued(&self, der: &[u8]) -> Result<()> {
        let (_, ca) = X509Certificate::from_der(&self.cert_der)
            .map_err(|e| Error::Certificate(format!("CA certificate: {e}")))?;
        let (_, cert) = X509Certificate::from_der(der)
            .map_err(|e| Error::Certificate(format!("certificate: {e}")))?;
        if cert.issuer() != ca.subject() {
            return Err(Error::Certificate(
                "certificate was not issued by this CA (issuer name differs)".into(),
            ));
        }
        cert.verify_signature(Some(ca.public_key()))
            .map_err(|e| Error::Certificate(format!("certificate signature does not verify: {e}")))
    }
}

/// Parses a PKCS#10 request and verifies its self-signature (proof the device holds the key).
pub fn verify_csr(der: &[u8]) -> Result<VerifiedCsr> {
    let (rest, csr) = X509CertificationRequest::from_der(der)
        .map_err(|e| Error::CertificateRequest(format!("not a PKCS#10 request: {e}")))?;
    if !rest.is_empty() {
        return Err(Error::CertificateRequest(format!(
            "{} bytes after the PKCS#10 request",
            rest.len()
        )));
    }
    csr.verify_signature().map_err(|e| {
        Error::CertificateRequest(format!("the request's self-signature does not verify: {e}"))
    })?;
    let info = &csr.certification_request_info;
    let subject_common_name = info
        .subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string);
    let spki = &info.subject_pki;
    let oid = spki.algorithm.algorithm.to_id_string();
    let key_algorithm = match oid.as_str() {
        "1.2.840.113549.1.1.1" => KeyAlgorithm::Rsa {
            bits: match spki.parsed() {
                Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => rsa.key_size(),
                _ => 0,
            },
        },
        "1.2.840.10045.2.1" => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string());
            match curve.as_deref() {
                Some("1.2.840.10045.3.1.7") => KeyAlgorithm::EcdsaP256,
                Some("1.3.132.0.34") => KeyAlgorithm::EcdsaP384,
                other => KeyAlgorithm::Other(format!("EC {}", other.unwrap_or("?"))),
            }
        }
        other => KeyAlgorithm::Other(other.to_string()),
    };
    Ok(VerifiedCsr {
        subject_common_name,
        public_key_der: spki.raw.to_vec(),
        key_algorithm,
    })
}

/// Uppercase hex SHA-1 of a DER certificate (40 characters).
pub fn thumbprint(der: &[u8]) -> String {
    hex::encode_upper(Sha1::digest(der))
}

/// The device id of a client certificate we issued: the `urn:redeploy:device:` SAN URI,
/// or else the subject CN.
pub fn device_id_from_certificate(der: &[u8]) -> Result<String> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| Error::Certificate(format!("client certificate: {e}")))?;
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::URI(uri) = name {
                if let Some(id) = uri.strip_prefix(DEVICE_URI_PREFIX) {
                    return percent_decode(id);
                }
            }
        }
    }
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .filter(|cn| !cn.is_empty())
        .map(str::to_string);
    cn.ok_or_else(|| Error::Certificate("client certificate carries no device id".into()))
}

/// The validity window (notBefore, notAfter) of a DER certificate.
pub fn certificate_validity(der: &[u8]) -> Result<(OffsetDateTime, OffsetDateTime)> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| Error::Certificate(format!("certificate: {e}")))?;
    let validity = cert.validity();
    Ok((
        validity.not_before.to_datetime(),
        validity.not_after.to_datetime(),
    ))
}

/// Emulator side: a new ECDSA P-256 key (PKCS#8 PEM) and a PKCS#10 request (DER) for it.
pub fn new_device_key_and_csr(common_name: &str) -> Result<(String, Vec<u8>)> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(cert_err("device key"))?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    let csr = params
        .serialize_request(&key)
        .map_err(cert_err("certificate request"))?;
    Ok((key.serialize_pem(), csr.der().to_vec()))
}

fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    // Positive and without a leading zero byte, as RFC 5280 §4.1.2.2 asks.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&bytes)
}

fn pem_to_der(pem_text: &str, label: &str) -> Result<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem_text
        .find(&begin)
        .ok_or_else(|| Error::Certificate(format!("no {begin} block")))?;
    let body = &pem_text[start + begin.len()..];
    let stop = body
        .find(&end)
        .ok_or_else(|| Error::Certificate(format!("no {end} line")))?;
    crate::decode_base64(&body[..stop])
        .map_err(|e| Error::Certificate(format!("PEM body is not base64: {e}")))
}

/// The device id as a URI path. Device ids are UUIDs, whose letters, digits and hyphens stay as
/// they are; any other byte is percent-encoded.
fn percent_encode(s: &str) -> String {
    const KEPT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-');
    utf8_percent_encode(s, KEPT).to_string()
}

fn percent_decode(s: &str) -> Result<String> {
    percent_decode_str(s)
        .decode_utf8()
        .map(|id| id.into_owned())
        .map_err(|_| Error::Certificate("device id is not UTF-8".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_round_trip() {
        let id = "dev/ice id%ü";
        assert_eq!(percent_decode(&percent_encode(id)).unwrap(), id);
    }
}
