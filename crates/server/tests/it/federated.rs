//! Federated enrollment: an Entra-style RS256 JWT in the BinarySecurityToken, checked against
//! the configured issuer, audience and JWKS. The tests make their own RSA keys.

use std::sync::OnceLock;

use base64::Engine;
use enroll::{AuthPolicy, EnrollResponse, SecurityToken};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::traits::PublicKeyParts;
use server::{FederatedSettings, JwksSource};
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
    jwt_with(key, issuer, audience, serde_json::json!({}))
}

/// A token with `extra` claims added to (or replacing) the usual ones.
fn jwt_with(key: &Key, issuer: &str, audience: &str, extra: serde_json::Value) -> String {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("issuer-key".into());
    let mut claims = serde_json::json!({
        "iss": issuer, "aud": audience, "iat": now, "nbf": now - 10, "exp": now + 3600,
        "upn": "alice@contoso.test", "oid": "0000-oid", "tid": "tenant-1",
    });
    if let (Some(claims), Some(extra)) = (claims.as_object_mut(), extra.as_object()) {
        claims.extend(extra.clone());
    }
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
            jwks: JwksSource::File(jwks_file),
            tenant_id: None,
            jwks_ca_file: None,
            authentication_service_url: None,
        });
    })
    .await
}

on_both_backends!(
    federated_discovery_and_valid_jwt_enroll,
    jwt_with_wrong_issuer_audience_or_signature_is_refused,
    only_a_validated_token_gives_a_re_enrolling_pc_its_record_back,
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

/// Issue #13: a re-enrolling PC keeps its record only when the validated token binds it (the
/// token's Entra device id, or the same user re-adding a work account on the same hardware);
/// an enrollment token holder claiming the same hardware id gets a record of its own.
async fn only_a_validated_token_gives_a_re_enrolling_pc_its_record_back(backend: Backend) {
    let app = federated_app(backend).await;
    let hw = "6F2C8A14D3B5E7F90A1B2C3D4E5F60718293A4B5C6D7E8F90A1B2C3D4E5F6071";
    let enroll_with = |token: enroll::SecurityToken, hw: &'static str, kind: &'static str| {
        let app = &app;
        async move {
            let answer = post(
                app,
                "/EnrollmentServer/Enrollment.svc",
                rst_xml(app, token, new_csr(), context(hw, kind)),
            )
            .await;
            let doc = provisioning(&answer);
            redeploy_core::DeviceId::parse(
                &enroll::ca::device_id_from_certificate(&doc.client_certificate_der).unwrap(),
            )
            .unwrap()
        }
    };
    let device_token = |device: &str| {
        bst(&jwt_with(
            &keys().0,
            ISSUER,
            AUDIENCE,
            serde_json::json!({ "deviceid": device }),
        ))
    };
    let joined = enroll_with(
        device_token("7d3c1f7e-aad0-4d4e-9c1a-000000000001"),
        hw,
        "Device",
    )
    .await;
    let stored = app.store.device(joined).await.unwrap().unwrap();
    assert_eq!(
        stored.aad_device_id.as_deref(),
        Some("7d3c1f7e-aad0-4d4e-9c1a-000000000001"),
        "the validated device claim"
    );

    // Someone with an enrollment token and the PC's hardware id: a new record.
    let intruder = enroll_with(password(&app.enrollment_token), hw, "Device").await;
    assert_ne!(intruder, joined);

    // The PC itself, with a token naming its Entra device: its record back, history kept.
    let again = enroll_with(
        device_token("7D3C1F7E-AAD0-4D4E-9C1A-000000000001"),
        "0000000000000000000000000000000000000000000000000000000000000000",
        "Device",
    )
    .await;
    assert_eq!(again, joined);
    let enrollments = app.store.enrollments_of_device(joined).await.unwrap();
    assert_eq!(enrollments.len(), 2);
    assert_eq!(enrollments[0].replaced_by, Some(enrollments[1].id));
    // Another Entra device id: another record.
    let other = enroll_with(device_token("another-device"), hw, "Device").await;
    assert_ne!(other, joined);

    // A work account: the same user on the same hardware keeps the record; another user not.
    let user = |upn: &str| {
        bst(&jwt_with(
            &keys().0,
            ISSUER,
            AUDIENCE,
            serde_json::json!({ "upn": upn }),
        ))
    };
    let laptop = "0A1B2C3D4E5F60718293A4B5C6D7E8F90A1B2C3D4E5F60718293A4B5C6D7E8F9";
    let first = enroll_with(user("bob@contoso.test"), laptop, "Full").await;
    assert_eq!(
        enroll_with(user("BOB@contoso.test"), laptop, "Full").await,
        first
    );
    assert_ne!(
        enroll_with(user("eve@contoso.test"), laptop, "Full").await,
        first
    );

    let audit = app
        .store
        .list_audit(&redeploy_core::store::AuditQuery::default())
        .await
        .unwrap();
    assert!(
        audit.iter().any(|e| e.action == "device.enroll"
            && e.targets == [joined]
            && e.details.contains(
                "re-enrollment of the known device, bound by the token's Entra device id"
            )),
        "re-enrollment audited as such"
    );
}

on_both_backends!(
    keys_from_a_jwks_url_follow_rotation_tenant_and_outages,
    entra_joined_emulated_pc_enrolls_federated_and_its_users_sign_in,
    a_pc_whose_clock_runs_ahead_still_enrolls_and_signs_in_by_token,
    a_claimed_entra_join_never_makes_a_pc_eligible,
);

/// An emulated PC's clock runs ahead of the world's (`redeploy emulate --time-scale 900` passes
/// a device hour in four real seconds): the Entra tokens it asks for are still stamped with the
/// issuer's time, so its device token enrolls it and its user's token names the primary user.
/// (Stamped with the PC's time, both were refused as not yet valid once the PC's clock was a
/// minute ahead: a fleet started under load enrolled none of its PCs.)
async fn a_pc_whose_clock_runs_ahead_still_enrolls_and_signs_in_by_token(backend: Backend) {
    use device::client::{self, EnrollOptions};
    use device::state::JoinType as PcJoin;
    use device::{DeviceProfile, HttpsTransport};
    use test_issuer::{IssuerConfig, RunningIssuer};

    let issuer = RunningIssuer::start(([127, 0, 0, 1], 0).into(), IssuerConfig::default())
        .await
        .unwrap();
    let app = spawn_app_with(backend, |s| s.federated = Some(federated_settings(&issuer))).await;
    // The PC's clock: two hours ahead of the server's and the issuer's.
    let ahead = || time::OffsetDateTime::now_utc() + time::Duration::hours(2);
    let transport = HttpsTransport::new(&app.ca_pem).unwrap();
    let profile = DeviceProfile {
        join: PcJoin::Joined,
        ..DeviceProfile::default()
    };
    let mut pc = profile.build_seeded("pc-ahead", 78, ahead());
    pc.primary_user = None;
    pc.signed_in_user = None;
    let user = pc.entra_users[0].upn.clone();
    let options = EnrollOptions {
        server: app.base_url.clone(),
        token: String::new(),
        issuer: Some(issuer.url().to_string()),
    };
    client::enroll(&transport, &mut pc, &options, ahead())
        .await
        .expect("the device token of a PC whose clock runs ahead enrolls it");
    assert!(pc.sign_in(&user, ahead()));
    testkit::pc::sync_until_quiet(&transport, &mut pc, ahead()).await;
    let device = app
        .store
        .device_by_mdm_device_id(&pc.dev_id)
        .await
        .unwrap()
        .expect("enrolled");
    assert_eq!(
        device.join_evidence,
        redeploy_core::JoinEvidence::EntraToken
    );
    assert_eq!(
        device.primary_user.as_deref(),
        Some(user.as_str()),
        "the user's token was accepted"
    );
    let refused = app
        .store
        .list_audit(&redeploy_core::store::AuditQuery::default())
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "mgmt.user_token_refused")
        .count();
    assert_eq!(refused, 0, "no token refused");
}

/// A JWKS URL served by the local test issuer: fetched once and cached; a token signed with a
/// rotated key is refused while the rate limit holds and accepted after one refetch; a wrong
/// tenant is refused; an issuer outage keeps the cached keys working. Time moves only with the
/// manual clock (the server's and the tokens').
async fn keys_from_a_jwks_url_follow_rotation_tenant_and_outages(backend: Backend) {
    use std::sync::Arc;
    use test_issuer::{IssuerConfig, RunningIssuer, TokenKind, TokenRequest};

    let issuer = RunningIssuer::start(
        ([127, 0, 0, 1], 0).into(),
        IssuerConfig {
            keys_max_age_secs: 600,
            ..IssuerConfig::default()
        },
    )
    .await
    .unwrap();
    let clock = Arc::new(redeploy_core::ManualClock::new(
        time::OffsetDateTime::now_utc(),
    ));
    let app = testkit::app::spawn_app_with_clock(backend, clock.clone(), |s| {
        s.federated = Some(federated_settings(&issuer));
    })
    .await;
    let hw = "5A".repeat(32);
    let token = |tenant: Option<&str>| {
        issuer
            .mint(&TokenRequest {
                kind: TokenKind::Device,
                device_id: Some("4b1f3c2a-0000-4000-8000-000000000042".into()),
                tenant_id: tenant.map(str::to_string),
                issued_at: Some(redeploy_core::Clock::now(clock.as_ref()).unix_timestamp()),
                ..TokenRequest::default()
            })
            .unwrap()
    };
    let try_enroll = |token: String| {
        let (app, hw) = (&app, hw.clone());
        async move {
            post(
                app,
                "/EnrollmentServer/Enrollment.svc",
                rst_xml(app, bst(&token), new_csr(), context(&hw, "Device")),
            )
            .await
        }
    };
    let accepted = |answer: &Answer| answer.status == 200;

    assert!(accepted(&try_enroll(token(None)).await));
    assert!(accepted(&try_enroll(token(None)).await));
    assert_eq!(issuer.keys_served(), 1, "fetched once, then cached");

    let wrong = try_enroll(token(Some("another-tenant"))).await;
    assert_eq!(wrong.fault_code(), "s:Authentication", "wrong tenant");

    // Rotation: the new key is unknown; within 30 s of the last fetch no refetch happens.
    issuer.rotate(false).unwrap();
    let early = try_enroll(token(None)).await;
    assert_eq!(early.fault_code(), "s:Authentication");
    assert_eq!(issuer.keys_served(), 1, "rate-limited, refused at once");
    clock.advance(time::Duration::seconds(31));
    assert!(
        accepted(&try_enroll(token(None)).await),
        "after one refetch"
    );
    assert_eq!(issuer.keys_served(), 2);

    // Outage: the keys expire (max-age 600) but the fetch fails: the last good keys still work.
    issuer.set_available(false);
    clock.advance(time::Duration::seconds(700));
    assert!(accepted(&try_enroll(token(None)).await), "cached keys kept");
    // A key rotated during the outage cannot be learnt until the issuer is back.
    issuer.rotate(false).unwrap();
    clock.advance(time::Duration::seconds(31));
    assert_eq!(
        try_enroll(token(None)).await.fault_code(),
        "s:Authentication"
    );
    issuer.set_available(true);
    clock.advance(time::Duration::seconds(31));
    assert!(accepted(&try_enroll(token(None)).await), "back");
    assert_eq!(issuer.keys_served(), 3);
}

fn federated_settings(issuer: &test_issuer::RunningIssuer) -> FederatedSettings {
    FederatedSettings {
        issuer: issuer.url().to_string(),
        audience: issuer.audience().to_string(),
        jwks: JwksSource::Url(issuer.jwks_url()),
        tenant_id: Some(issuer.tenant_id().to_string()),
        jwks_ca_file: None,
        authentication_service_url: None,
    }
}

/// The emulator's Entra-joined PC enrolls with a device token from the local issuer (its record
/// carries its Entra device id), then its users sign in: the first becomes primary user, a remote
/// Autopilot Reset clears it, the next user to sign in becomes primary, a local reset keeps it.
/// Sessions carry the signed-in user's token from the issuer.
async fn entra_joined_emulated_pc_enrolls_federated_and_its_users_sign_in(backend: Backend) {
    use device::client::{self, EnrollOptions};
    use device::state::{EntraUser, JoinType as PcJoin};
    use device::{reset, DeviceProfile, HttpsTransport};
    use redeploy_core::action::{self, ActionSettings};
    use redeploy_core::{ActionKind, ActionState};
    use test_issuer::{IssuerConfig, RunningIssuer};

    let issuer = RunningIssuer::start(([127, 0, 0, 1], 0).into(), IssuerConfig::default())
        .await
        .unwrap();
    let app = spawn_app_with(backend, |s| s.federated = Some(federated_settings(&issuer))).await;
    let now = time::OffsetDateTime::now_utc;
    let transport = HttpsTransport::new(&app.ca_pem).unwrap();
    let profile = DeviceProfile {
        join: PcJoin::Joined,
        ..DeviceProfile::default()
    };
    let mut pc = profile.build_seeded("pc-entra", 77, now());
    pc.primary_user = None;
    pc.signed_in_user = None;
    pc.entra_users.truncate(1);
    pc.entra_users.push(EntraUser {
        upn: "grace@contoso.edu".into(),
        object_id: "7f0c7d1e-0000-4000-8000-00000000f00d".into(),
        display_name: "Grace".into(),
    });
    let (ada, grace) = (pc.entra_users[0].upn.clone(), pc.entra_users[1].upn.clone());
    let entra_device = pc.entra_join.device_id.clone().expect("an Entra device id");

    let options = EnrollOptions {
        server: app.base_url.clone(),
        token: String::new(),
        issuer: Some(issuer.url().to_string()),
    };
    client::enroll(&transport, &mut pc, &options, now())
        .await
        .expect("federated enrollment with the issuer's device token");
    assert_eq!(pc.entra_join.tenant_id.as_deref(), Some(issuer.tenant_id()));
    testkit::pc::sync_until_quiet(&transport, &mut pc, now()).await;
    let device = app
        .store
        .device_by_mdm_device_id(&pc.dev_id)
        .await
        .unwrap()
        .expect("enrolled");
    assert_eq!(device.aad_device_id.as_deref(), Some(entra_device.as_str()));
    assert_eq!(
        device.join_evidence,
        redeploy_core::JoinEvidence::EntraToken,
        "the join rests on the validated device token"
    );
    let enrollments = app.store.enrollments_of_device(device.id).await.unwrap();
    assert_eq!(enrollments[0].auth_method, "Federated");
    assert_eq!(device.primary_user, None, "nobody signed in yet");
    let stored = || async { app.store.device(device.id).await.unwrap().unwrap() };

    // The first user to sign in becomes primary.
    assert!(pc.sign_in(&ada, now()));
    testkit::pc::sync_until_quiet(&transport, &mut pc, now()).await;
    let d = stored().await;
    assert_eq!(d.primary_user.as_deref(), Some(ada.as_str()));
    assert_eq!(d.current_user.as_deref(), Some(ada.as_str()));
    assert_eq!(d.last_sign_in_user.as_deref(), Some(ada.as_str()));
    assert!(d.last_sign_in_at.is_some());
    assert!(
        pc.events
            .iter()
            .all(|e| !e.detail.contains("no Entra token")),
        "the session carried the issuer's user token"
    );

    // A remote Autopilot Reset clears it.
    let requested = action::request(
        &*app.store,
        device.id,
        ActionKind::AutopilotReset,
        "test-admin",
        now(),
        &ActionSettings::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        requested.state,
        ActionState::Pending,
        "{:?}",
        requested.reason
    );
    // The check-in that carries the Exec; the PC schedules the reset.
    client::check_in(&transport, &mut pc, now())
        .await
        .expect("check-in");
    reset::run_to_completion(&mut pc);
    testkit::pc::sync_until_quiet(&transport, &mut pc, now()).await;
    let done = app.store.action(requested.id).await.unwrap().unwrap();
    assert_eq!(done.state, ActionState::Done, "{:?}", done.timeline);
    let d = stored().await;
    assert_eq!(
        d.primary_user, None,
        "a remote reset clears the primary user"
    );
    assert_eq!(d.id, device.id);

    // A user token the issuer did not sign (an imitating client's stand-in) names nobody: it is
    // dropped before the session engine and audited, and the PC stays without a primary user.
    let issuer_url = pc.entra_join.token_issuer.take();
    assert!(pc.sign_in(&grace, now()));
    testkit::pc::sync_until_quiet(&transport, &mut pc, now()).await;
    assert_eq!(
        stored().await.primary_user,
        None,
        "an unverified token counts for nothing"
    );
    let refused = app
        .store
        .list_audit(&redeploy_core::store::AuditQuery::default())
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "mgmt.user_token_refused" && e.targets == [device.id])
        .count();
    assert!(refused >= 1, "the refusal is audited");

    // The same user with the issuer's token becomes primary.
    pc.entra_join.token_issuer = issuer_url;
    testkit::pc::sync_until_quiet(&transport, &mut pc, now()).await;
    let d = stored().await;
    assert_eq!(d.primary_user.as_deref(), Some(grace.as_str()));
    assert_eq!(d.last_sign_in_user.as_deref(), Some(grace.as_str()));

    // The API and the console show primary user and last sign-in.
    let shown = device_detail(&app, device.id).await;
    assert_eq!(shown["device"]["primary_user"], grace.as_str());
    assert_eq!(shown["device"]["last_sign_in_user"], grace.as_str());
    assert!(shown["device"]["last_sign_in_at"].is_string());
    assert_eq!(shown["device"]["join_evidence"], "entra_token");
    let console = console_page(&app, &format!("/console/devices/{}", device.id)).await;
    assert!(
        console.contains(&format!("Primary user</dt><dd id=\"primary-user\">{grace}")),
        "{console}"
    );
    assert!(
        console.contains(&format!("<dd id=\"last-sign-in\">{grace}, ")),
        "{console}"
    );
    assert!(
        console.contains("verified: an Entra device token named this PC"),
        "{console}"
    );

    // A local reset keeps the primary user.
    pc.policies.insert(
        device::state::LOCAL_RESET_POLICY.into(),
        device::state::PolicyValue::int(0),
    );
    let (admin, password) = pc
        .local_users
        .iter()
        .find(|u| u.is_admin)
        .map(|u| (u.name.clone(), u.password.clone()))
        .expect("a local administrator");
    reset::local_reset(&mut pc, &admin, &password, now()).expect("CTRL+WIN+R");
    reset::run_to_completion(&mut pc);
    testkit::pc::sync_until_quiet(&transport, &mut pc, now()).await;
    assert_eq!(
        stored().await.primary_user.as_deref(),
        Some(grace.as_str()),
        "a local reset leaves the primary user"
    );
}

/// Issue #13 item 2: three Entra-joined PCs that say the same about themselves. The one that
/// enrolled with the server's first enrollment token rests on its claim: not eligible, and a
/// reset of it is blocked with the reason; the one an admin's vouching token enrolled and the
/// one an Entra device token named are eligible. When the token-verified PC later reports
/// another Entra device id, its join rests on its claim again.
async fn a_claimed_entra_join_never_makes_a_pc_eligible(backend: Backend) {
    use device::client::{self, EnrollOptions};
    use device::state::JoinType as PcJoin;
    use device::{DeviceProfile, HttpsTransport};
    use test_issuer::{IssuerConfig, RunningIssuer};

    let issuer = RunningIssuer::start(([127, 0, 0, 1], 0).into(), IssuerConfig::default())
        .await
        .unwrap();
    let start = time::OffsetDateTime::now_utc();
    let clock = std::sync::Arc::new(redeploy_core::ManualClock::new(start));
    let app = testkit::app::spawn_app_with_clock(backend, clock.clone(), |s| {
        s.federated = Some(federated_settings(&issuer))
    })
    .await;
    let transport = HttpsTransport::new(&app.ca_pem).unwrap();
    let profile = DeviceProfile {
        join: PcJoin::Joined,
        ..DeviceProfile::default()
    };
    // (name, enrollment token, issuer, evidence, ready)
    let cases = [
        (
            "pc-claim",
            app.claim_only_enrollment_token.clone(),
            None,
            "claimed",
            false,
        ),
        (
            "pc-vouched",
            app.enrollment_token.clone(),
            None,
            "admin_token",
            true,
        ),
        (
            "pc-token",
            String::new(),
            Some(issuer.url().to_string()),
            "entra_token",
            true,
        ),
    ];
    let mut pcs = Vec::new();
    for (seed, (name, token, issuer, evidence, ready)) in cases.into_iter().enumerate() {
        let mut pc = profile.build_seeded(name, 300 + seed as u64, start);
        let options = EnrollOptions {
            server: app.base_url.clone(),
            token,
            issuer,
        };
        client::enroll(&transport, &mut pc, &options, start)
            .await
            .unwrap_or_else(|e| panic!("{name} enrolls: {e}"));
        testkit::pc::sync_until_quiet(&transport, &mut pc, start).await;
        let id = app
            .store
            .device_by_mdm_device_id(&pc.dev_id)
            .await
            .unwrap()
            .expect("enrolled")
            .id;
        let shown = device_detail(&app, id).await;
        let d = &shown["device"];
        assert_eq!(d["join_type"], "entra_joined", "{name}: {d}");
        assert_eq!(d["join_evidence"], evidence, "{name}: {d}");
        assert_eq!(d["readiness"]["ready"], ready, "{name}: {d}");
        let codes: Vec<&str> = d["readiness"]["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["code"].as_str().unwrap())
            .collect();
        let want: &[&str] = if ready { &[] } else { &["join_not_verified"] };
        assert_eq!(codes, want, "{name}");
        pcs.push((id, pc));
    }

    // A reset of the PC that only claims its join is blocked, with the reason and the fix.
    let r = app
        .client()
        .post(app.url(&format!("/api/v1/devices/{}/actions", pcs[0].0)))
        .bearer_auth(&app.admin_token)
        .json(&serde_json::json!({"kind": "autopilot_reset"}))
        .send()
        .await
        .unwrap();
    let action: serde_json::Value = r.json().await.unwrap();
    assert_eq!(action["state"], "blocked", "{action}");
    let reason = action["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("nothing verified it") && reason.contains("--vouch-entra-join"),
        "{reason}"
    );
    let console = console_page(&app, &format!("/console/devices/{}", pcs[0].0)).await;
    assert!(console.contains("(as the PC states it)"), "{console}");
    let console = console_page(&app, &format!("/console/devices/{}", pcs[1].0)).await;
    assert!(
        console.contains("vouched for: it enrolled with an admin"),
        "{console}"
    );

    // The token-verified PC reports another Entra device id at its next inventory read (a
    // day later): its token is contradicted, the join rests on its claim again.
    let (id, pc) = &mut pcs[2];
    let named = pc.entra_join.device_id.clone();
    pc.entra_join.device_id = Some("0badc0de-0000-4000-8000-000000000001".into());
    clock.advance(time::Duration::hours(25));
    let later = start + time::Duration::hours(25);
    testkit::pc::sync_until_quiet(&transport, pc, later).await;
    let shown = device_detail(&app, *id).await;
    let d = &shown["device"];
    assert_eq!(d["join_evidence"], "claimed", "{d}");
    assert_eq!(d["readiness"]["ready"], false, "{d}");
    let stored = app.store.device(*id).await.unwrap().unwrap();
    assert_eq!(
        stored.aad_device_id, named,
        "the token's id stays on record"
    );
}

/// The console page at `path`, signed in with the admin token.
async fn console_page(app: &TestApp, path: &str) -> String {
    let http = browser_client(app);
    let signed_in = http
        .post(app.url("/console/sign-in"))
        .header("origin", &app.base_url)
        .form(&[("token", app.admin_token.as_str())])
        .send()
        .await
        .unwrap();
    let cookie = signed_in.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    http.get(app.url(path))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}
