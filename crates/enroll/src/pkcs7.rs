//! The PKCS#7 of an MS-MDE2 certificate renewal: a CMS SignedData (RFC 5652 §5) whose content
//! is the new PKCS#10 and whose signer is the device's current MDM certificate. The server side
//! ([`open_renewal`]) checks the signature and hands back the request and the signing certificate;
//! whether that certificate is one of ours, current and not expired is for the caller (the CA
//! and the domain rules). The emulator side ([`sign_renewal`]) builds one. Sans-IO.
//!
//! Facts used (docs/protocol.md §2.9): MS-MDE2 3.4.4.1.1.1 (renewal: RequestType `.../Renew`,
//! BinarySecurityToken ValueType `...enrollment#PKCS7`, client TLS with the existing
//! certificate); ITPRO certificate-renewal-windows-mdm.md (the client signs the PKCS#7 with the
//! existing certificate; the server checks that signature, that the certificate is its own and
//! takes the PKCS#10 out of it); MS-WCCE 3.2.1.4.2.1.4.2.1 (ContentInfo is id-signedData, the
//! encapsulated content is id-data holding the PKCS#10).

use cms::cert::x509::der::asn1::{ObjectIdentifier, OctetString, SetOfVec};
use cms::cert::x509::der::{Any, Decode, Encode};
use cms::cert::x509::ext::pkix::SubjectKeyIdentifier;
use cms::cert::x509::spki::AlgorithmIdentifierOwned;
use cms::cert::x509::Certificate;
use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{
    CertificateSet, EncapsulatedContentInfo, SignedData, SignerIdentifier, SignerInfo, SignerInfos,
};
use ring::signature::{self as sig, UnparsedPublicKey, VerificationAlgorithm};
use sha2::Digest as _;

use crate::{Error, Result};

/// RFC 5652 §5.1: ContentInfo content type of a SignedData.
const ID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
/// RFC 5652 §4: the `data` content type (MS-WCCE: the PKCS#10 travels as id-data).
const ID_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.1");
/// RFC 5652 §11.1 and §11.2: the signed attributes every signer with attributes must carry.
const ID_CONTENT_TYPE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.3");
const ID_MESSAGE_DIGEST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");

// Digest algorithms (RFC 5754, RFC 3370).
const SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.14.3.2.26");
const SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
const SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3");

// Signature algorithms (RFC 5754 §3, RFC 5758 §3.2; Windows may name the key algorithm alone).
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const SHA1_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.5");
const SHA256_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const SHA384_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
const SHA512_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const ECDSA_WITH_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");

/// A renewal request whose PKCS#7 signature verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRenewal {
    /// The new PKCS#10 request the SignedData carries (DER; its own self-signature is checked
    /// separately, [`crate::ca::verify_csr`]).
    pub csr_der: Vec<u8>,
    /// The certificate whose key signed (DER), taken from the SignedData's certificates.
    pub signer_certificate_der: Vec<u8>,
}

fn bad(why: impl Into<String>) -> Error {
    Error::Renewal(why.into())
}

/// Parses a renewal's PKCS#7 and verifies its one signer's signature with the public key of the
/// certificate it names. Refuses: not a SignedData, content other than id-data or empty, no
/// signer, a signer whose certificate is not enclosed, a message digest that does not match the
/// content, a signature that does not verify, and algorithms other than RSA (PKCS#1 v1.5) and
/// ECDSA P-256/P-384 with SHA-1/256/384/512.
pub fn open_renewal(der: &[u8]) -> Result<SignedRenewal> {
    let info =
        ContentInfo::from_der(der).map_err(|e| bad(format!("not a PKCS#7 ContentInfo: {e}")))?;
    if info.content_type != ID_SIGNED_DATA {
        return Err(bad(format!(
            "the PKCS#7 holds {}, not SignedData",
            info.content_type
        )));
    }
    let signed: SignedData = info
        .content
        .decode_as()
        .map_err(|e| bad(format!("the PKCS#7 SignedData does not parse: {e}")))?;
    let content = &signed.encap_content_info;
    if content.econtent_type != ID_DATA {
        return Err(bad(format!(
            "the SignedData carries {}, not data (a PKCS#10)",
            content.econtent_type
        )));
    }
    let csr_der = content
        .econtent
        .as_ref()
        .ok_or_else(|| bad("the SignedData carries no content (detached)"))?
        .decode_as::<OctetString>()
        .map_err(|e| {
            bad(format!(
                "the SignedData content is not an OCTET STRING: {e}"
            ))
        })?
        .into_bytes();
    if csr_der.is_empty() {
        return Err(bad("the SignedData content is empty"));
    }
    let signer = signed
        .signer_infos
        .0
        .iter()
        .next()
        .ok_or_else(|| bad("the PKCS#7 is not signed (no SignerInfo)"))?;
    let certificate = signer_certificate(&signed, &signer.sid)?;
    verify_signer(signer, &certificate, &csr_der)?;
    let signer_certificate_der = certificate
        .to_der()
        .map_err(|e| bad(format!("the signer certificate does not encode: {e}")))?;
    Ok(SignedRenewal {
        csr_der,
        signer_certificate_der,
    })
}

/// The enclosed certificate the SignerInfo's `sid` names (RFC 5652 §5.3).
fn signer_certificate(signed: &SignedData, sid: &SignerIdentifier) -> Result<Certificate> {
    let certificates = signed
        .certificates
        .as_ref()
        .map(|set| set.0.iter().collect::<Vec<_>>())
        .unwrap_or_default();
    certificates
        .into_iter()
        .filter_map(|c| match c {
            CertificateChoices::Certificate(cert) => Some(cert),
            CertificateChoices::Other(_) => None,
        })
        .find(|cert| match sid {
            SignerIdentifier::IssuerAndSerialNumber(id) => {
                cert.tbs_certificate.issuer == id.issuer
                    && cert.tbs_certificate.serial_number == id.serial_number
            }
            SignerIdentifier::SubjectKeyIdentifier(ski) => {
                subject_key_id(cert).as_ref() == Some(ski)
            }
        })
        .cloned()
        .ok_or_else(|| bad("the signer's certificate is not in the PKCS#7"))
}

fn subject_key_id(cert: &Certificate) -> Option<SubjectKeyIdentifier> {
    use cms::cert::x509::der::oid::AssociatedOid;
    cert.tbs_certificate
        .extensions
        .as_ref()?
        .iter()
        .find(|e| e.extn_id == SubjectKeyIdentifier::OID)
        .and_then(|e| SubjectKeyIdentifier::from_der(e.extn_value.as_bytes()).ok())
}

fn digest(algorithm: &ObjectIdentifier, data: &[u8]) -> Result<Vec<u8>> {
    Ok(match *algorithm {
        SHA1 => sha1::Sha1::digest(data).to_vec(),
        SHA256 => sha2::Sha256::digest(data).to_vec(),
        SHA384 => sha2::Sha384::digest(data).to_vec(),
        SHA512 => sha2::Sha512::digest(data).to_vec(),
        other => return Err(bad(format!("unsupported digest algorithm {other}"))),
    })
}

/// RFC 5652 §5.4: with signed attributes the signature covers their DER (as a SET OF) and the
/// message-digest attribute must equal the content's digest; without, it covers the content.
fn verify_signer(signer: &SignerInfo, cert: &Certificate, content: &[u8]) -> Result<()> {
    let digest_alg = signer.digest_alg.oid;
    let signed_bytes = match &signer.signed_attrs {
        None => content.to_vec(),
        Some(attrs) => {
            let value_of = |oid: ObjectIdentifier| {
                attrs
                    .iter()
                    .find(|a| a.oid == oid)
                    .and_then(|a| a.values.iter().next())
            };
            let content_type = value_of(ID_CONTENT_TYPE)
                .and_then(|v| v.decode_as::<ObjectIdentifier>().ok())
                .ok_or_else(|| bad("the signed attributes have no content-type"))?;
            if content_type != ID_DATA {
                return Err(bad("the signed content-type is not data"));
            }
            let claimed = value_of(ID_MESSAGE_DIGEST)
                .and_then(|v| v.decode_as::<OctetString>().ok())
                .ok_or_else(|| bad("the signed attributes have no message-digest"))?;
            if claimed.as_bytes() != digest(&digest_alg, content)?.as_slice() {
                return Err(bad(
                    "the message digest does not match the PKCS#10 (the content was altered)",
                ));
            }
            attrs
                .to_der()
                .map_err(|e| bad(format!("the signed attributes do not encode: {e}")))?
        }
    };
    let spki = &cert.tbs_certificate.subject_public_key_info;
    let key_alg = spki.algorithm.oid;
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
    let sig_alg = signer.signature_algorithm.oid;
    let hash = match sig_alg {
        SHA1_WITH_RSA => SHA1,
        SHA256_WITH_RSA | ECDSA_WITH_SHA256 => SHA256,
        SHA384_WITH_RSA | ECDSA_WITH_SHA384 => SHA384,
        SHA512_WITH_RSA => SHA512,
        // The key algorithm alone: the hash is the SignerInfo's digest algorithm.
        RSA_ENCRYPTION | EC_PUBLIC_KEY => digest_alg,
        other => return Err(bad(format!("unsupported signature algorithm {other}"))),
    };
    let algorithm: &'static dyn VerificationAlgorithm = match (key_alg, curve, hash) {
        (RSA_ENCRYPTION, _, SHA1) => &sig::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
        (RSA_ENCRYPTION, _, SHA256) => &sig::RSA_PKCS1_2048_8192_SHA256,
        (RSA_ENCRYPTION, _, SHA384) => &sig::RSA_PKCS1_2048_8192_SHA384,
        (RSA_ENCRYPTION, _, SHA512) => &sig::RSA_PKCS1_2048_8192_SHA512,
        (EC_PUBLIC_KEY, Some(P256), SHA256) => &sig::ECDSA_P256_SHA256_ASN1,
        (EC_PUBLIC_KEY, Some(P256), SHA384) => &sig::ECDSA_P256_SHA384_ASN1,
        (EC_PUBLIC_KEY, Some(P384), SHA256) => &sig::ECDSA_P384_SHA256_ASN1,
        (EC_PUBLIC_KEY, Some(P384), SHA384) => &sig::ECDSA_P384_SHA384_ASN1,
        _ => {
            return Err(bad(format!(
                "unsupported signer key {key_alg} with hash {hash}"
            )))
        }
    };
    UnparsedPublicKey::new(algorithm, spki.subject_public_key.raw_bytes())
        .verify(&signed_bytes, signer.signature.as_bytes())
        .map_err(|_| bad("the PKCS#7 signature does not verify with the signer's certificate"))
}

/// Emulator side: a renewal PKCS#7 (SignedData, SHA-256, signed attributes content-type and
/// message-digest) around `csr_der`, signed with the ECDSA P-256 key `key_pem` (PKCS#8 PEM) of
/// the current certificate `cert_der`, which it encloses.
pub fn sign_renewal(csr_der: &[u8], cert_der: &[u8], key_pem: &str) -> Result<Vec<u8>> {
    let cert = Certificate::from_der(cert_der)
        .map_err(|e| Error::Certificate(format!("current certificate: {e}")))?;
    let enc = |e: cms::cert::x509::der::Error| Error::Certificate(format!("PKCS#7: {e}"));
    let sha256 = AlgorithmIdentifierOwned {
        oid: SHA256,
        parameters: None,
    };
    let attribute = |oid, value: Any| -> Result<cms::cert::x509::attr::Attribute> {
        Ok(cms::cert::x509::attr::Attribute {
            oid,
            values: SetOfVec::try_from(vec![value]).map_err(enc)?,
        })
    };
    let digest = OctetString::new(sha2::Sha256::digest(csr_der).to_vec()).map_err(enc)?;
    let signed_attrs = SetOfVec::try_from(vec![
        attribute(ID_CONTENT_TYPE, Any::encode_from(&ID_DATA).map_err(enc)?)?,
        attribute(ID_MESSAGE_DIGEST, Any::encode_from(&digest).map_err(enc)?)?,
    ])
    .map_err(enc)?;
    let to_sign = signed_attrs.to_der().map_err(enc)?;
    let signature = sign_p256(key_pem, &to_sign)?;
    let signer = SignerInfo {
        version: CmsVersion::V1,
        sid: SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
            issuer: cert.tbs_certificate.issuer.clone(),
            serial_number: cert.tbs_certificate.serial_number.clone(),
        }),
        digest_alg: sha256.clone(),
        signed_attrs: Some(signed_attrs),
        signature_algorithm: AlgorithmIdentifierOwned {
            oid: ECDSA_WITH_SHA256,
            parameters: None,
        },
        signature: OctetString::new(signature).map_err(enc)?,
        unsigned_attrs: None,
    };
    let signed = SignedData {
        version: CmsVersion::V1,
        digest_algorithms: SetOfVec::try_from(vec![sha256]).map_err(enc)?,
        encap_content_info: EncapsulatedContentInfo {
            econtent_type: ID_DATA,
            econtent: Some(
                Any::encode_from(&OctetString::new(csr_der.to_vec()).map_err(enc)?).map_err(enc)?,
            ),
        },
        certificates: Some(CertificateSet(
            SetOfVec::try_from(vec![CertificateChoices::Certificate(cert)]).map_err(enc)?,
        )),
        crls: None,
        signer_infos: SignerInfos(SetOfVec::try_from(vec![signer]).map_err(enc)?),
    };
    ContentInfo {
        content_type: ID_SIGNED_DATA,
        content: Any::encode_from(&signed).map_err(enc)?,
    }
    .to_der()
    .map_err(enc)
}

fn sign_p256(key_pem: &str, message: &[u8]) -> Result<Vec<u8>> {
    let key = rcgen::KeyPair::from_pem(key_pem)
        .map_err(|e| Error::Certificate(format!("device key: {e}")))?;
    let rng = ring::rand::SystemRandom::new();
    let pair = sig::EcdsaKeyPair::from_pkcs8(
        &sig::ECDSA_P256_SHA256_ASN1_SIGNING,
        &key.serialize_der(),
        &rng,
    )
    .map_err(|e| Error::Certificate(format!("device key is not ECDSA P-256: {e}")))?;
    pair.sign(&rng, message)
        .map(|s| s.as_ref().to_vec())
        .map_err(|e| Error::Certificate(format!("signing the PKCS#7: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::{new_device_key_and_csr, verify_csr, CertificateAuthority};
    use time::OffsetDateTime;

    /// A device certificate from a fresh CA, with its key.
    fn device() -> (Vec<u8>, String) {
        let now = OffsetDateTime::now_utc();
        let ca = CertificateAuthority::generate("test CA", now).unwrap();
        let (key, csr) = new_device_key_and_csr("pc").unwrap();
        let cert = ca
            .issue_device_certificate(&verify_csr(&csr).unwrap(), "dev-1", now, 1)
            .unwrap();
        (cert.der, key)
    }

    fn signed_data(der: &[u8]) -> SignedData {
        ContentInfo::from_der(der)
            .unwrap()
            .content
            .decode_as()
            .unwrap()
    }

    fn wrap(signed: &SignedData) -> Vec<u8> {
        ContentInfo {
            content_type: ID_SIGNED_DATA,
            content: Any::encode_from(signed).unwrap(),
        }
        .to_der()
        .unwrap()
    }

    #[test]
    fn a_signed_renewal_opens_to_its_request_and_signer() {
        let (cert, key) = device();
        let (_, csr) = new_device_key_and_csr("pc").unwrap();
        let p7 = sign_renewal(&csr, &cert, &key).unwrap();
        let opened = open_renewal(&p7).unwrap();
        assert_eq!(opened.csr_der, csr);
        assert_eq!(opened.signer_certificate_der, cert);
        verify_csr(&opened.csr_der).unwrap();
    }

    #[test]
    fn what_is_refused() {
        let (cert, key) = device();
        let (other_cert, _) = device();
        let (_, csr) = new_device_key_and_csr("pc").unwrap();
        let good = sign_renewal(&csr, &cert, &key).unwrap();
        type Edit = fn(&mut SignedData, &[u8]);
        let cases: Vec<(&str, Edit, &str)> = vec![
            (
                "no signer",
                |s, _| s.signer_infos = SignerInfos(SetOfVec::new()),
                "not signed",
            ),
            (
                "signature altered",
                |s, _| {
                    let mut signer = s.signer_infos.0.iter().next().unwrap().clone();
                    let mut bytes = signer.signature.as_bytes().to_vec();
                    let last = bytes.len() - 1;
                    bytes[last] ^= 1;
                    signer.signature = OctetString::new(bytes).unwrap();
                    s.signer_infos = SignerInfos(SetOfVec::try_from(vec![signer]).unwrap());
                },
                "does not verify",
            ),
            (
                "content swapped",
                |s, _| {
                    let (_, other) = new_device_key_and_csr("other").unwrap();
                    s.encap_content_info.econtent =
                        Some(Any::encode_from(&OctetString::new(other).unwrap()).unwrap());
                },
                "content was altered",
            ),
            (
                "signer certificate left out",
                |s, _| s.certificates = None,
                "not in the PKCS#7",
            ),
            (
                "another certificate enclosed instead",
                |s, other| {
                    let other = Certificate::from_der(other).unwrap();
                    s.certificates = Some(CertificateSet(
                        SetOfVec::try_from(vec![CertificateChoices::Certificate(other)]).unwrap(),
                    ));
                },
                "not in the PKCS#7",
            ),
        ];
        for (case, edit, want) in cases {
            let mut s = signed_data(&good);
            edit(&mut s, &other_cert);
            let err = open_renewal(&wrap(&s)).unwrap_err().to_string();
            assert!(err.contains(want), "{case}: {err}");
        }
        // Signed by a key that is not the enclosed certificate's.
        let (_, stranger_key) = device();
        let forged = sign_renewal(&csr, &cert, &stranger_key).unwrap();
        assert!(open_renewal(&forged)
            .unwrap_err()
            .to_string()
            .contains("does not verify"));
        // A bare PKCS#10 where a PKCS#7 belongs.
        assert!(open_renewal(&csr).is_err());
        assert!(open_renewal(b"junk").is_err());
    }

    #[test]
    fn a_renewal_rst_round_trips_through_the_soap_codec() {
        let (cert, key) = device();
        let (_, csr) = new_device_key_and_csr("pc").unwrap();
        let p7 = sign_renewal(&csr, &cert, &key).unwrap();
        let rst = crate::RstRequest {
            message_id: "urn:uuid:1".into(),
            request_type: crate::ns::REQUEST_TYPE_RENEW.into(),
            csr_value_type: crate::ns::VALUE_TYPE_PKCS7.into(),
            csr_der: p7.clone(),
            ..crate::RstRequest::default()
        };
        let xml = crate::write_rst_request(&rst);
        let crate::EnrollMessage::RequestSecurityToken(parsed) =
            crate::parse_message(xml.as_bytes()).unwrap()
        else {
            panic!("not an RST")
        };
        assert!(parsed.is_renewal() && parsed.token_is_pkcs7());
        assert_eq!(parsed.security, crate::SecurityToken::None);
        assert_eq!(open_renewal(&parsed.csr_der).unwrap().csr_der, csr);
        // The ITPRO sample's ValueType spelling is a PKCS#7 too.
        let sample = crate::RstRequest {
            csr_value_type: format!("{}#PKCS7", crate::ns::WSSE),
            ..parsed
        };
        assert!(sample.token_is_pkcs7());
    }
}
