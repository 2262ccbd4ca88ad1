//! The fuzz targets: each one feeds untrusted bytes to a parser the way the server (or, for
//! server answers, the emulated PC) does, and follows an accepted input down the same path.
//! A target returns whether the input was accepted (the error text when not, used by
//! [`crate::run`] as a cheap sign of a new path); it panics only on a bug: a parser that panics,
//! or a property that does not hold (a SyncML message that does not survive write → parse).

use std::sync::OnceLock;

use base64::Engine;
use enroll::ca::{self, CertificateAuthority};
use enroll::EnrollMessage;
use jsonwebtoken::jwk::JwkSet;
use server::federated::{self, KeyCache};
use server::settings::{FederatedSettings, JwksSource};
use time::OffsetDateTime;

/// What a target does with one input: `Ok` when the parser accepted it, else its error text.
pub type Outcome = Result<(), String>;

/// How an input is built, for the structure-aware mutations of [`crate::mutate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// XML text (SyncML, SOAP).
    Xml,
    /// DER (PKCS#10, PKCS#7).
    Der,
    /// A compact JWT: base64url JSON segments joined by dots.
    Jwt,
}

/// One fuzz target: its name (the folder of its corpus and regressions under `fuzz/`), the shape
/// of its inputs and the function under test.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    pub name: &'static str,
    pub shape: Shape,
    pub run: fn(&[u8]) -> Outcome,
}

/// Every target, in the order the docs list them.
pub const TARGETS: [Target; 6] = [
    Target {
        name: "syncml_parse",
        shape: Shape::Xml,
        run: syncml_parse,
    },
    Target {
        name: "enroll_parse",
        shape: Shape::Xml,
        run: enroll_parse,
    },
    Target {
        name: "enroll_response",
        shape: Shape::Xml,
        run: enroll_response,
    },
    Target {
        name: "csr",
        shape: Shape::Der,
        run: csr,
    },
    Target {
        name: "pkcs7_renewal",
        shape: Shape::Der,
        run: pkcs7_renewal,
    },
    Target {
        name: "jwt",
        shape: Shape::Jwt,
        run: jwt,
    },
];

/// The target called `name`.
pub fn by_name(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

/// The instant every target judges times at (the JWT seeds are valid then), so that a run
/// does not depend on the day it runs.
pub fn fixed_now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(JWT_NOW).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Unix time of [`fixed_now`]; the JWT seeds are issued at [`JWT_ISSUED_AT`].
pub const JWT_NOW: i64 = 1_800_000_100;
/// `iat`/`nbf` of the JWT seeds (`fuzz-seed`).
pub const JWT_ISSUED_AT: i64 = 1_800_000_000;
/// `iss` of the JWT seeds and of the settings the `jwt` target checks them with.
pub const JWT_ISSUER: &str = "https://issuer.fuzz.test/tenant/v2.0";
/// `aud` of the JWT seeds.
pub const JWT_AUDIENCE: &str = "api://redeploy";
/// `tid` of the JWT seeds.
pub const JWT_TENANT: &str = "00000000-0000-4000-8000-00000000beef";

/// SyncML from a PC (`mgmt`: `syncml::parse_with_limits` with the server's limits) or from the
/// server (the emulator); what parses must survive write → parse unchanged.
pub fn syncml_parse(data: &[u8]) -> Outcome {
    let msg = syncml::parse_with_limits(data, &syncml::Limits::default()).map_err(text)?;
    let written = syncml::write(&msg);
    match syncml::parse(written.as_bytes()) {
        Ok(again) => assert_eq!(again, msg, "write → parse changed the message:\n{written}"),
        Err(e) => panic!("our own output does not parse: {e}\n{written}"),
    }
    Ok(())
}

/// An enrollment request (discovery, XCEP policy, WSTEP RST) as the server's enrollment
/// endpoints read it; an RST's token is then opened as the server does: a renewal's PKCS#7, or
/// a new enrollment's PKCS#10.
pub fn enroll_parse(data: &[u8]) -> Outcome {
    let message = enroll::parse_message(data).map_err(text)?;
    let _ = message.message_id();
    if let EnrollMessage::RequestSecurityToken(rst) = message {
        if rst.is_renewal() || rst.token_is_pkcs7() {
            pkcs7_renewal(&rst.csr_der)?;
        } else {
            csr(&rst.csr_der)?;
        }
    }
    Ok(())
}

/// A server's answer (discovery, policy, RSTRC with its provisioning document, SOAP fault) as
/// the emulated PC reads it.
pub fn enroll_response(data: &[u8]) -> Outcome {
    let response = enroll::parse_response(data).map_err(text)?;
    if let enroll::EnrollResponse::Rstr { response, .. } = response {
        response.provisioning.client_certificate().map_err(text)?;
        response.provisioning.enrollment().map_err(text)?;
    }
    Ok(())
}

/// A PKCS#10 request as the server checks it (`ca::verify_csr`), then signed by a CA.
pub fn csr(data: &[u8]) -> Outcome {
    let verified = ca::verify_csr(data).map_err(text)?;
    let issued = test_ca()
        .issue_device_certificate(&verified, "fuzz-device", fixed_now(), 1)
        .map_err(text)?;
    ca::device_id_from_certificate(&issued.der).map_err(text)?;
    Ok(())
}

/// A renewal's PKCS#7 as the server opens it (`pkcs7::open_renewal`), then what it reads of the
/// signer's certificate (`presented_certificate`) and the new PKCS#10.
pub fn pkcs7_renewal(data: &[u8]) -> Outcome {
    let signed = enroll::pkcs7::open_renewal(data).map_err(text)?;
    let signer = &signed.signer_certificate_der;
    let _ = ca::certificate_validity(signer);
    let _ = test_ca().verify_issued(signer);
    let _ = ca::device_id_from_certificate(signer);
    let _ = ca::thumbprint(signer);
    csr(&signed.csr_der)
}

/// A federated enrollment's JWT (`federated::FederatedAuth::verify`): the untrusted header, the
/// key it names in the committed key set, the signature, `iss`, `aud`, then the claims. The
/// claims are also read without the signature, so that mutated claims reach
/// [`federated::check_claims`] too.
pub fn jwt(data: &[u8]) -> Outcome {
    let token = std::str::from_utf8(data).map_err(text)?;
    if let Some(payload) = token.split('.').nth(1) {
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok());
        if let Some(claims) = claims {
            let _ = federated::check_claims(&claims, fixed_now(), Some(JWT_TENANT));
        }
    }
    let kid = federated::read_header(token).map_err(text)?;
    let (keys, settings) = jwt_keys();
    let jwk = keys
        .find(kid.as_deref())
        .ok_or_else(|| format!("no key {kid:?}"))?;
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).map_err(text)?;
    federated::verify_with_key(token, &key, settings, fixed_now()).map_err(text)?;
    Ok(())
}

/// The public keys the JWT seeds are signed with (`fuzz/keys/jwks.json`, written by
/// `fuzz-seed`) and the settings that accept the seeds.
fn jwt_keys() -> &'static (KeyCache, FederatedSettings) {
    static KEYS: OnceLock<(KeyCache, FederatedSettings)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let set: JwkSet = serde_json::from_str(include_str!("../../../fuzz/keys/jwks.json"))
            .expect("fuzz/keys/jwks.json is a JSON Web Key Set");
        let settings = FederatedSettings {
            issuer: JWT_ISSUER.into(),
            audience: JWT_AUDIENCE.into(),
            jwks: JwksSource::File("fuzz/keys/jwks.json".into()),
            tenant_id: Some(JWT_TENANT.into()),
            jwks_ca_file: None,
            authentication_service_url: None,
        };
        (KeyCache::fixed(set), settings)
    })
}

/// One CA for every run of the certificate targets (made once: key generation is slow).
fn test_ca() -> &'static CertificateAuthority {
    static CA: OnceLock<CertificateAuthority> = OnceLock::new();
    CA.get_or_init(|| {
        CertificateAuthority::generate("Redeploy fuzz CA", fixed_now())
            .expect("a CA can be generated")
    })
}

fn text(e: impl std::fmt::Display) -> String {
    e.to_string()
}
