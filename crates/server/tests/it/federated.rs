//! Federated enrollment: an Entra-style RS256 JWT in the BinarySecurityToken, checked against
//! the configured issuer, audience and JWKS. The tests make their own RSA keys.

use std::sync::OnceLock;

use base64::Engine;
use enroll::{AuthPolicy, EnrollResponse, SecurityToken};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::traits::PublicKeyParts;
use server::FederatedSettings;
use testkit::app::{spawn_app_with, Backend, TestApp};

use crate::common::*;
use testkit::on_both_backends;

const ISSUER: &str = "https://login.example.test/tenant-1/v2.0";
const AUDIENCE: &str = "api://redeploy-test";

struct Key {
    encoding: EncodingKey,
    jwk: serde_json::Value,
}

fn make_key(kid: &str) -> Key {
    let private = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap();
    let der = private.to_pkcs1_der().unwrap();
    let b64 = |bytes: Vec<u8>| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    Key {
        encoding: EncodingKey::from_rsa_der(der.as_bytes()),
        jwk: serde_json::json!({
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
            "n": b64(private.n().to_bytes_be()), "e": b64(private.e().to_bytes_be()),
        }),
    }
}

/// (the issuer's key, a stranger's key), generated once per test binary.
fn keys() -> &'static (Key, Key) {
    static KEYS: OnceLock<(Key, Key)> = OnceLock::new();
    KEYS.get_or_init(|| (make_key("issuer-key"), make_key("issuer-key")))
}

fn jwt(key: &Key, issuer: &str, audience: &str) -> String {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("issuer-key".into());
    let claims = serde_json::json!({
        "iss": issuer, "aud": audience, "iat": now, "nbf": now - 10, "exp": now + 3600,
        "upn": "alice@contoso.test", "oid": "0000-oid", "tid": "tenant-1",
    });
    jsonwebtoken::encode(&header, &claims, &key.encoding).unwrap()
}

fn bst(token: &str) -> SecurityToken {
    SecurityToken::BinarySecurityToken {
        value_type: enroll::ns::TOKEN_TYPE_JWT.into(),
        encoding_type: enroll::ns::BASE64_BINARY.into(),
        value: base64::engine::general_purpose::STANDARD.encode(token),
    }
}

async fn federated_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, move |s| {
        // Beside the data folder, in the app's temp dir (removed with it).
        let jwks_file = s.data_dir.parent().unwrap().join("jwks.json");
        std::fs::write(
            &jwks_file,
            serde_json::json!({ "keys": [keys().0.jwk] }).to_string(),
        )
        .unwrap();
        s.federated = Some(FederatedSettings {
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
            jwks_file,
            authentication_service_url: None,
        });
    })
    .await
}

on_both_backends!(
    federated_discovery_and_valid_jwt_enroll,
    jwt_with_wrong_issuer_audience_or_signature_is_refused,
);

async fn federated_discovery_and_valid_jwt_enroll(backend: Backend) {
    let app = federated_app(backend).await;
    let answer = post(
        &app,
        "/EnrollmentServer/Discovery.svc",
        discover_xml(&app, vec![AuthPolicy::OnPremise, AuthPolicy::Federated]),
    )
    .await;
    let EnrollResponse::Discover { response, .. } = answer.parsed() else {
        panic!("{}", answer.body)
    };
    assert_eq!(response.auth_policy, AuthPolicy::Federated);
    // A client that offers only OnPremise still gets OnPremise.
    let answer = post(
        &app,
        "/EnrollmentServer/Discovery.svc",
        discover_xml(&app, vec![AuthPolicy::OnPremise]),
    )
    .await;
    let EnrollResponse::Discover { response, .. } = answer.parsed() else {
        panic!("{}", answer.body)
    };
    assert_eq!(response.auth_policy, AuthPolicy::OnPremise);

    let token = jwt(&keys().0, ISSUER, AUDIENCE);
    let policy = post(
        &app,
        "/EnrollmentServer/Policy.svc",
        policies_xml(&app, bst(&token)),
    )
    .await;
    assert_eq!(policy.status, 200, "{}", policy.body);
    let answer = post(
        &app,
        "/EnrollmentServer/Enrollment.svc",
        rst_xml(
            &app,
            bst(&token),
            new_csr(),
            context(&"7".repeat(64), "Device"),
        ),
    )
    .await;
    let doc = provisioning(&answer);
    assert!(doc
        .dmclient_parms
        .iter()
        .any(|(n, v)| n == "UPN" && v == "alice@contoso.test"));
    let id = enroll::ca::device_id_from_certificate(&doc.client_certificate_der).unwrap();
    let id = redeploy_core::DeviceId::parse(&id).unwrap();
    let enrollments = app.store.enrollments_of_device(id).await.unwrap();
    assert_eq!(enrollments[0].auth_method, "Federated");
    assert_eq!(enrollments[0].upn.as_deref(), Some("alice@contoso.test"));
}

async fn jwt_with_wrong_issuer_audience_or_signature_is_refused(backend: Backend) {
    let app = federated_app(backend).await;
    let (good, stranger) = keys();
    for (what, token) in [
        ("issuer", jwt(good, "https://evil.example/v2.0", AUDIENCE)),
        ("audience", jwt(good, ISSUER, "api://someone-else")),
        ("signature", jwt(stranger, ISSUER, AUDIENCE)),
        ("format", "not.a.jwt".to_string()),
    ] {
        let answer = post(
            &app,
            "/EnrollmentServer/Enrollment.svc",
            rst_xml(
                &app,
                bst(&token),
                new_csr(),
                context(&"8".repeat(64), "Device"),
            ),
        )
        .await;
        assert_eq!(answer.fault_code(), "s:Authentication", "wrong {what}");
    }
    // Without federation configured, a JWT is refused too.
    let plain = testkit::app::spawn_app(backend).await;
    let answer = post(
        &plain,
        "/EnrollmentServer/Enrollment.svc",
        rst_xml(
            &plain,
            bst(&jwt(good, ISSUER, AUDIENCE)),
            new_csr(),
            context(&"8".repeat(64), "Device"),
        ),
    )
    .await;
    assert_eq!(answer.fault_code(), "s:Authentication");
}
