//! `fuzz-seed`: rebuilds the seed corpus under `fuzz/corpus/` (docs/fuzzing.md). It copies the
//! real captures of `shared/fixtures/real/` (found above the repository) into each target's
//! folder and makes what no capture holds: the CSR of the real RST as DER, an emulator CSR, a
//! signed renewal PKCS#7 and its RST, a SOAP fault, JWTs signed with a new key (whose public
//! half goes to `fuzz/keys/jwks.json`), and a few hand-made inputs.
//!
//! Usage: `cargo run -p fuzz-smoke --bin fuzz-seed` (or `fuzz/seed.sh`).

use std::path::{Path, PathBuf};

use base64::Engine;
use enroll::ca::{self, CertificateAuthority};
use enroll::{ns, EnrollMessage, RstRequest, SecurityToken};
use fuzz_smoke::corpus::fuzz_dir;
use fuzz_smoke::targets::{self, TARGETS};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use rsa::traits::PublicKeyParts;
use serde_json::json;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> Result<()> {
    let fixtures = fixtures_dir()?;
    let corpus = fuzz_dir().join("corpus");
    for target in TARGETS {
        let dir = corpus.join(target.name);
        if dir.is_dir() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&dir)?;
    }
    let out = |target: &str, name: &str, bytes: &[u8]| {
        std::fs::write(corpus.join(target).join(name), bytes)
    };
    let copy = |target: &str, rel: &str| -> Result<()> {
        let bytes = std::fs::read(fixtures.join(rel)).map_err(|e| format!("{rel}: {e}"))?;
        out(target, &rel.replace('/', "-"), &bytes)?;
        Ok(())
    };

    // SyncML: every real device and server message, and a few of our shapes.
    for dir in ["fleet-win10-21h1", "fleet-win10-21h1-readme"] {
        let mut names: Vec<String> = std::fs::read_dir(fixtures.join(dir))?
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .filter(|name| name.contains("-syncml-") && name.ends_with(".xml"))
            .collect();
        names.sort();
        for name in names {
            copy("syncml_parse", &format!("{dir}/{name}"))?;
        }
    }
    copy("syncml_parse", "mattrax/basic-1.xml")?;
    let testdata = Path::new(env!("CARGO_MANIFEST_DIR")).join("../syncml/testdata");
    for name in [
        "f18-atomic-autopilot-reset.xml",
        "f11-client-results.xml",
        "f12-status-chal.xml",
    ] {
        out("syncml_parse", name, &std::fs::read(testdata.join(name))?)?;
    }
    out(
        "syncml_parse",
        "handmade-nested.xml",
        HANDMADE_SYNCML.as_bytes(),
    )?;

    // Enrollment requests: the real discovery, policy and RST messages, the pytune RST.
    for rel in [
        "fleet-win10-21h1/03-discovery-request.xml",
        "fleet-win10-21h1/05-policy-request.xml",
        "fleet-win10-21h1/07-enroll-request.xml",
        "mattrax/discovery-1.xml",
        "pytune/rst-enroll-request.template.xml",
    ] {
        copy("enroll_parse", rel)?;
    }
    // Server answers, as the emulated PC reads them.
    for rel in [
        "fleet-win10-21h1/04-discovery-response.xml",
        "fleet-win10-21h1/06-policy-response.xml",
        "fleet-win10-21h1/08-enroll-response.xml",
    ] {
        copy("enroll_response", rel)?;
    }
    let fault = enroll::Fault::new(enroll::FaultCode::Authentication, "token refused");
    let fault = enroll::write_fault(&fault, "urn:uuid:0d5a1441-5891-453b-becf-a2e5f6ea3749");
    out("enroll_response", "handmade-fault.xml", fault.as_bytes())?;

    // PKCS#10: the real CSR of 07 and one the emulator makes (P-256).
    let real_rst = std::fs::read(fixtures.join("fleet-win10-21h1/07-enroll-request.xml"))?;
    let Ok(EnrollMessage::RequestSecurityToken(rst)) = enroll::parse_message(&real_rst) else {
        return Err("07-enroll-request.xml is not an RST".into());
    };
    out("csr", "fleet-win10-21h1-07-rsa2048.der", &rst.csr_der)?;
    let (_, emulator_csr) = ca::new_device_key_and_csr("fuzz-pc")?;
    out("csr", "emulator-p256.der", &emulator_csr)?;

    // PKCS#7 renewal: a device certificate from a CA, a new CSR signed with its key, and the
    // renewal RST that carries it.
    let now = targets::fixed_now();
    let authority = CertificateAuthority::generate("Redeploy fuzz seed CA", now)?;
    let (device_key, csr) = ca::new_device_key_and_csr("fuzz-pc")?;
    let cert = authority.issue_device_certificate(&ca::verify_csr(&csr)?, "dev-1", now, 365)?;
    let (_, new_csr) = ca::new_device_key_and_csr("fuzz-pc")?;
    let pkcs7 = enroll::pkcs7::sign_renewal(&new_csr, &cert.der, &device_key)?;
    out("pkcs7_renewal", "emulator-renewal.p7", &pkcs7)?;
    let renewal = RstRequest {
        message_id: "urn:uuid:5d3c0f66-3c7d-4c44-9d1a-6a0c2b1e0f11".into(),
        request_type: ns::REQUEST_TYPE_RENEW.into(),
        csr_value_type: ns::VALUE_TYPE_PKCS7.into(),
        csr_der: pkcs7,
        ..rst.clone()
    };
    out(
        "enroll_parse",
        "emulator-renewal-rst.xml",
        enroll::write_rst_request(&renewal).as_bytes(),
    )?;

    // JWTs signed with a new RS256 key; its public half is what the `jwt` target checks with.
    let jwts = jwt_seeds()?;
    for (name, token) in &jwts.tokens {
        out("jwt", name, token.as_bytes())?;
    }
    out("jwt", "handmade-alg-none.jwt", HANDMADE_ALG_NONE.as_bytes())?;
    let keys = fuzz_dir().join("keys");
    std::fs::create_dir_all(&keys)?;
    std::fs::write(keys.join("jwks.json"), jwts.jwks)?;
    let entra = RstRequest {
        message_id: "urn:uuid:9a1b2c3d-0000-4000-8000-000000000001".into(),
        security: SecurityToken::BinarySecurityToken {
            value_type: ns::TOKEN_TYPE_JWT.into(),
            encoding_type: ns::BASE64_BINARY.into(),
            value: base64::engine::general_purpose::STANDARD.encode(&jwts.tokens[0].1),
        },
        ..rst
    };
    out(
        "enroll_parse",
        "emulator-entra-rst.xml",
        enroll::write_rst_request(&entra).as_bytes(),
    )?;

    for target in TARGETS {
        let count = std::fs::read_dir(corpus.join(target.name))?.count();
        println!("{}: {count} seeds", target.name);
    }
    Ok(())
}

/// JWT seeds and the key set that verifies them.
struct JwtSeeds {
    tokens: Vec<(&'static str, String)>,
    jwks: String,
}

fn jwt_seeds() -> Result<JwtSeeds> {
    let private = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048)?;
    let pem = private.to_pkcs8_pem(LineEnding::LF)?;
    let encoding = EncodingKey::from_rsa_pem(pem.as_bytes())?;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let kid = "fuzz-key-1";
    let jwks = json!({ "keys": [{
        "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
        "n": b64.encode(private.n().to_bytes_be()), "e": b64.encode(private.e().to_bytes_be()),
    }]});
    let base = json!({
        "iss": targets::JWT_ISSUER,
        "aud": targets::JWT_AUDIENCE,
        "tid": targets::JWT_TENANT,
        "iat": targets::JWT_ISSUED_AT,
        "nbf": targets::JWT_ISSUED_AT,
        "exp": targets::JWT_ISSUED_AT + 3600,
    });
    let with = |extra: serde_json::Value| {
        let mut claims = base.clone();
        if let (Some(c), Some(e)) = (claims.as_object_mut(), extra.as_object()) {
            c.extend(e.clone());
        }
        claims
    };
    let sign = |kid: Option<&str>, claims: serde_json::Value| {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = kid.map(str::to_string);
        jsonwebtoken::encode(&header, &claims, &encoding)
    };
    let device = "5f0c8a8e-0000-4000-8000-000000000001";
    let tokens = vec![
        (
            "device-token.jwt",
            sign(
                Some(kid),
                with(json!({ "deviceid": device, "sub": device })),
            )?,
        ),
        (
            "user-token.jwt",
            sign(
                Some(kid),
                with(json!({
                    "upn": "ada@contoso.test", "unique_name": "ada@contoso.test",
                    "oid": "0a0b0c0d-0000-4000-8000-000000000002", "deviceid": device,
                })),
            )?,
        ),
        (
            "no-kid-token.jwt",
            sign(
                None,
                with(json!({ "preferred_username": "bo@contoso.test" })),
            )?,
        ),
    ];
    Ok(JwtSeeds {
        tokens,
        jwks: serde_json::to_string_pretty(&jwks)? + "\n",
    })
}

/// `shared/fixtures/real`, found by walking up from this crate (worktrees and CI differ).
fn fixtures_dir() -> Result<PathBuf> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .map(|dir| dir.join("shared/fixtures/real"))
        .find(|candidate| candidate.is_dir())
        .ok_or_else(|| {
            format!(
                "shared/fixtures/real not found above {}",
                manifest.display()
            )
            .into()
        })
}

/// SyncML with the nesting the parser allows (Atomic in Sequence), a CDATA Data and the
/// predefined entities.
const HANDMADE_SYNCML: &str = r#"<SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto><SessionID>1</SessionID><MsgID>2</MsgID><Target><LocURI>https://mdm.test/ManagementServer/MDM.svc</LocURI></Target><Source><LocURI>B5B954E81FBCB94EB79BD08BE625F4EE</LocURI></Source></SyncHdr><SyncBody><Sequence><CmdID>1</CmdID><Atomic><CmdID>2</CmdID><Replace><CmdID>3</CmdID><Item><Target><LocURI>./Vendor/MSFT/Policy/Config/A&amp;B</LocURI></Target><Meta><Format xmlns="syncml:metinf">chr</Format></Meta><Data><![CDATA[<x>&lt;</x>]]></Data></Item></Replace></Atomic></Sequence><Results><CmdID>4</CmdID><MsgRef>1</MsgRef><CmdRef>3</CmdRef><Item><Source><LocURI>./DevDetail/SwV</LocURI></Source><Meta><Format xmlns="syncml:metinf">xml</Format></Meta><Data><a><b>10.0.19043</b></a></Data></Item></Results><Final/></SyncBody></SyncML>"#;

/// A JWT whose header asks for no signature (`{"alg":"none","typ":"JWT"}`, `{}`).
const HANDMADE_ALG_NONE: &str = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.e30.";
