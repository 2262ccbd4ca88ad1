//! The device CA: issued certificates chain, carry the device id, refuse tampered CSRs.

use enroll::ca::{self, CertificateAuthority, KeyAlgorithm};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::support::{fixture, rst, NOW};

#[test]
fn issued_certificate_chains_to_the_ca_and_names_the_device() {
    let authority = CertificateAuthority::generate("Redeploy CA", NOW).unwrap();
    let (_key, csr) = ca::new_device_key_and_csr("emulated-pc").unwrap();
    let verified = ca::verify_csr(&csr).unwrap();
    assert_eq!(verified.key_algorithm, KeyAlgorithm::EcdsaP256);
    assert_eq!(verified.subject_common_name.as_deref(), Some("emulated-pc"));
    let issued = authority
        .issue_device_certificate(&verified, "DEV 42/α", NOW, 365)
        .unwrap();
    authority.verify_issued(&issued.der).unwrap();
    assert_eq!(
        ca::device_id_from_certificate(&issued.der).unwrap(),
        "DEV 42/α"
    );
    assert_eq!(issued.thumbprint, ca::thumbprint(&issued.der));
    assert_eq!(issued.not_after, NOW + time::Duration::days(365));
    assert!(issued.not_before <= NOW);
    assert!(issued.pem.starts_with("-----BEGIN CERTIFICATE-----"));

    let (_, cert) = X509Certificate::from_der(&issued.der).unwrap();
    assert_eq!(hex::encode_upper(cert.raw_serial()), issued.serial);
    let eku = cert.extended_key_usage().unwrap().unwrap();
    assert!(eku.value.client_auth);
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .unwrap()
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(cn, "DEV 42/α");
    // The certificate carries the device's own public key.
    assert_eq!(cert.public_key().raw, verified.public_key_der.as_slice());
}

#[test]
fn windows_rsa_csr_is_accepted() {
    let request = rst(&fixture("fleet-win10-21h1/07-enroll-request.xml"));
    let authority = CertificateAuthority::generate("Redeploy CA", NOW).unwrap();
    let verified = ca::verify_csr(&request.csr_der).unwrap();
    let issued = authority
        .issue_device_certificate(&verified, "B5B954E81FBCB94EB79BD08BE625F4EE", NOW, 365)
        .unwrap();
    authority.verify_issued(&issued.der).unwrap();
    assert_eq!(
        ca::device_id_from_certificate(&issued.der).unwrap(),
        "B5B954E81FBCB94EB79BD08BE625F4EE"
    );
}

#[test]
fn tampered_csr_is_refused() {
    let (_key, mut csr) = ca::new_device_key_and_csr("emulated-pc").unwrap();
    // Change one letter of the subject CN: the self-signature no longer matches.
    let at = csr.windows(11).position(|w| w == b"emulated-pc").unwrap();
    csr[at] = b'E';
    let err = ca::verify_csr(&csr).unwrap_err();
    assert_eq!(err.fault_code(), enroll::FaultCode::CertificateRequest);
    assert!(err.to_string().contains("self-signature"), "{err}");
    assert!(ca::verify_csr(b"not a csr").is_err());
}

#[test]
fn thumbprint_is_40_uppercase_hex() {
    let authority = CertificateAuthority::generate("Redeploy CA", NOW).unwrap();
    let t = ca::thumbprint(authority.cert_der());
    assert_eq!(t.len(), 40);
    assert!(
        t.chars()
            .all(|c| c.is_ascii_digit() || ('A'..='F').contains(&c)),
        "{t}"
    );
}

#[test]
fn saved_ca_reloads_and_keeps_issuing_into_the_same_chain() {
    let first = CertificateAuthority::generate("Redeploy CA", NOW).unwrap();
    let reloaded = CertificateAuthority::from_pem(first.cert_pem(), &first.key_pem()).unwrap();
    assert_eq!(reloaded.cert_der(), first.cert_der());
    let (_key, csr) = ca::new_device_key_and_csr("pc").unwrap();
    let issued = reloaded
        .issue_device_certificate(&ca::verify_csr(&csr).unwrap(), "pc-1", NOW, 10)
        .unwrap();
    first.verify_issued(&issued.der).unwrap();

    let other = CertificateAuthority::generate("Other CA", NOW).unwrap();
    assert!(other.verify_issued(&issued.der).is_err());
    assert!(CertificateAuthority::from_pem(first.cert_pem(), &other.key_pem()).is_err());
}

#[test]
fn server_certificate_covers_localhost_and_extra_names() {
    let authority = CertificateAuthority::generate("Redeploy CA", NOW).unwrap();
    let (cert_pem, key_pem) = authority
        .issue_server_certificate(&["mdm.example.test".into(), "10.0.0.5".into()], NOW)
        .unwrap();
    assert!(key_pem.contains("PRIVATE KEY"));
    let der = enroll::decode_base64(
        cert_pem
            .trim()
            .trim_start_matches("-----BEGIN CERTIFICATE-----")
            .trim_end_matches("-----END CERTIFICATE-----"),
    )
    .unwrap();
    authority.verify_issued(&der).unwrap();
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    let san = cert.subject_alternative_name().unwrap().unwrap();
    let names: Vec<String> = san
        .value
        .general_names
        .iter()
        .map(|n| match n {
            GeneralName::DNSName(d) => d.to_string(),
            GeneralName::IPAddress(ip) => format!("{ip:?}"),
            other => format!("{other:?}"),
        })
        .collect();
    assert!(names.contains(&"localhost".to_string()), "{names:?}");
    assert!(names.contains(&"mdm.example.test".to_string()), "{names:?}");
    assert!(
        names.contains(&format!("{:?}", [127u8, 0, 0, 1].as_slice())),
        "{names:?}"
    );
    assert!(
        names.contains(&format!("{:?}", [10u8, 0, 0, 5].as_slice())),
        "{names:?}"
    );
    assert!(
        cert.extended_key_usage()
            .unwrap()
            .unwrap()
            .value
            .server_auth
    );
}

#[test]
fn short_rsa_keys_are_refused() {
    let request = rst(&fixture("fleet-win10-21h1/07-enroll-request.xml"));
    let authority = CertificateAuthority::generate("Redeploy CA", NOW).unwrap();
    let mut verified = ca::verify_csr(&request.csr_der).unwrap();
    verified.key_algorithm = KeyAlgorithm::Rsa { bits: 1024 };
    let err = authority
        .issue_device_certificate(&verified, "dev", NOW, 30)
        .unwrap_err();
    assert_eq!(err.fault_code(), enroll::FaultCode::CertificateRequest);
}
