//! The enrollment exchange as a Windows PC runs it, and every refusal's SOAP fault.

use enroll::provisioning::CertStore;
use enroll::{AuthPolicy, EnrollResponse};
use redeploy_core::{EnrollmentToken, SecretHash, TokenId};
use testkit::app::{spawn_app, Backend};
use time::{Duration, OffsetDateTime};

use crate::common::*;
use testkit::on_both_backends;

on_both_backends!(
    full_exchange_device_enrollment,
    full_enrollment_goes_to_my_user,
    re_enrollment_with_an_enrollment_token_is_a_new_record_flagged_as_a_clash,
    concurrent_enrollments_of_one_pc_never_fail,
    wrong_token_is_an_authentication_fault,
    expired_and_used_up_tokens_are_authorization_faults,
    tampered_csr_is_a_certificate_request_fault_and_spends_nothing,
    malformed_xml_is_a_message_format_fault,
);

async fn full_exchange_device_enrollment(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = app.client();

    // 1. The reachability probe: 200, empty body.
    let probe = client
        .get(app.url("/EnrollmentServer/Discovery.svc"))
        .send()
        .await
        .unwrap();
    assert_eq!(probe.status(), 200);
    assert!(probe.text().await.unwrap().is_empty());

    // 2. Discover: OnPremise, both services on our host, version not above the request.
    let answer = post(
        &app,
        "/EnrollmentServer/Discovery.svc",
        discover_xml(&app, vec![AuthPolicy::OnPremise, AuthPolicy::Federated]),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.content_type, SOAP_XML);
    assert_eq!(answer.content_length, Some(answer.body.len() as u64));
    let EnrollResponse::Discover {
        relates_to,
        response,
    } = answer.parsed()
    else {
        panic!("not a DiscoverResponse: {}", answer.body)
    };
    assert_eq!(
        relates_to.as_deref(),
        Some("urn:uuid:11111111-1111-1111-1111-111111111111")
    );
    assert_eq!(
        response.auth_policy,
        AuthPolicy::OnPremise,
        "no federation configured"
    );
    assert_eq!(response.enrollment_version, "6.0");
    assert_eq!(
        response.enrollment_service_url,
        app.url("/EnrollmentServer/Enrollment.svc")
    );
    assert_eq!(
        response.enrollment_policy_service_url,
        Some(app.url("/EnrollmentServer/Policy.svc"))
    );

    // 3. GetPolicies with the enrollment token.
    let answer = post(
        &app,
        "/EnrollmentServer/Policy.svc",
        policies_xml(&app, password(&app.enrollment_token)),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let EnrollResponse::GetPolicies { response, .. } = answer.parsed() else {
        panic!("not a GetPoliciesResponse: {}", answer.body)
    };
    assert!(response.minimal_key_length >= 2048);
    assert!(response.enroll_permission);

    // 4. RequestSecurityToken → RSTR with the provisioning document.
    let hw = "A".repeat(64);
    let answer = enroll(&app, &hw, "Device").await;
    assert_eq!(answer.content_type, SOAP_XML);
    assert_eq!(answer.content_length, Some(answer.body.len() as u64));
    let doc = provisioning(&answer);
    assert_eq!(doc.client_store, CertStore::System, "Device → My/System");
    assert_chains_to(&doc.client_certificate_der, &app.ca_pem);
    let ca_der = x509_parser::pem::parse_x509_pem(app.ca_pem.as_bytes())
        .unwrap()
        .1
        .contents;
    assert_eq!(doc.root_certificate_der, ca_der, "Root/System is our CA");
    assert_eq!(doc.addr, app.url("/ManagementServer/MDM.svc"));
    assert_eq!(doc.provider_id, "Redeploy");
    assert_eq!(doc.app_auth.len(), 2, "both APPAUTH blocks");
    assert_eq!(
        doc.poll.interval_for_remaining_scheduled_retries,
        Some(1560)
    );
    assert!(doc
        .dmclient_parms
        .iter()
        .any(|(n, v)| n == "UPN" && v == "user@example.org"));

    // The certificate carries the device id; the store has the device and the enrollment.
    let device_id = enroll::ca::device_id_from_certificate(&doc.client_certificate_der).unwrap();
    let device_id = redeploy_core::DeviceId::parse(&device_id).unwrap();
    let device = app
        .store
        .device(device_id)
        .await
        .unwrap()
        .expect("device stored");
    assert_eq!(device.hw_dev_id.as_deref(), Some(hw.as_str()));
    assert_eq!(device.name, "PC-LAB-01");
    assert_eq!(device.join_type, redeploy_core::JoinType::EntraJoined);
    assert_eq!(
        device.cert_thumbprint.as_deref(),
        Some(
            enroll::ca::thumbprint(&doc.client_certificate_der)
                .to_ascii_lowercase()
                .as_str()
        )
    );
    let enrollments = app.store.enrollments_of_device(device_id).await.unwrap();
    assert_eq!(enrollments.len(), 1);
    let e = &enrollments[0];
    assert_eq!(e.auth_method, "OnPremise");
    assert_eq!(e.upn.as_deref(), Some("user@example.org"));
    assert_eq!(e.context_value("OSVersion"), Some("10.0.22631.4037"));
    assert_eq!(
        e.context.iter().filter(|(n, _)| n == "MAC").count(),
        2,
        "every context item is kept, repeated ones too"
    );
    assert!(String::from_utf8_lossy(&e.raw_request).contains("RequestSecurityToken"));

    // An audit entry names the device.
    let audit = app
        .store
        .list_audit(&redeploy_core::store::AuditQuery {
            device: Some(device_id),
            after: None,
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(audit
        .iter()
        .any(|a| a.action == "device.enroll" && a.outcome == redeploy_core::AuditOutcome::Success));
}

async fn full_enrollment_goes_to_my_user(backend: Backend) {
    let app = spawn_app(backend).await;
    let doc = provisioning(&enroll(&app, &"B".repeat(64), "Full").await);
    assert_eq!(doc.client_store, CertStore::User, "Full → My/User");
    assert_chains_to(&doc.client_certificate_der, &app.ca_pem);
}

/// Issue #13: an enrollment token proves nothing about which PC holds it, so a PC that
/// enrolls again with one (or anyone who knows its hardware id) gets a record of its own; the
/// old record keeps its certificate and history, and the shared hardware id is flagged.
async fn re_enrollment_with_an_enrollment_token_is_a_new_record_flagged_as_a_clash(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let hw = "6F2C8A14D3B5E7F90A1B2C3D4E5F60718293A4B5C6D7E8F90A1B2C3D4E5F6071";
    let first = provisioning(&enroll(&app, hw, "Device").await);
    let second = provisioning(&enroll(&app, &hw.to_lowercase(), "Device").await);
    let id_of = |doc: &enroll::provisioning::EnrollmentProvisioning| {
        redeploy_core::DeviceId::parse(
            &enroll::ca::device_id_from_certificate(&doc.client_certificate_der).unwrap(),
        )
        .unwrap()
    };
    let (id1, id2) = (id_of(&first), id_of(&second));
    assert_ne!(id1, id2, "no takeover by a claimed hardware id");
    let old = app.store.device(id1).await.unwrap().unwrap();
    assert_eq!(
        old.cert_thumbprint.as_deref(),
        Some(
            enroll::ca::thumbprint(&first.client_certificate_der)
                .to_ascii_lowercase()
                .as_str()
        ),
        "the first PC still answers to its own certificate"
    );
    assert_eq!(app.store.enrollments_of_device(id1).await.unwrap().len(), 1);
    assert_ne!(
        old.join_evidence,
        redeploy_core::JoinEvidence::EntraToken,
        "an enrollment token names no Entra device"
    );

    // Flagged in the API, for both records, and in the audit log.
    for (me, other) in [(id1, id2), (id2, id1)] {
        let detail = device_detail(&app, me).await;
        let clashes = detail["identity_clashes"].as_array().unwrap();
        assert_eq!(clashes.len(), 1, "{detail}");
        assert_eq!(clashes[0]["device"], other.to_string());
        assert_eq!(clashes[0]["attribute"], "hw_dev_id");
    }
    let audit = app
        .store
        .list_audit(&redeploy_core::store::AuditQuery::default())
        .await
        .unwrap();
    let enrolls: Vec<_> = audit
        .iter()
        .filter(|e| e.action == "device.enroll")
        .collect();
    assert!(
        enrolls.iter().all(|e| e.details.contains("new device")),
        "{enrolls:?}"
    );
    let clash = audit
        .iter()
        .find(|e| e.action == "device.identity_clash")
        .expect("the clash is audited");
    assert_eq!(clash.targets, [id2, id1]);

    // A placeholder hardware id clashes with nothing.
    let zeros = "0".repeat(64);
    let a = id_of(&provisioning(&enroll(&app, &zeros, "Device").await));
    let detail = app.store.device(a).await.unwrap().unwrap();
    assert!(redeploy_core::enrollment::identity::clashes(
        &detail,
        &app.store
            .devices_by_identity(Some(&zeros), None, None)
            .await
            .unwrap()
    )
    .is_empty());
}

/// Several enrollments of one PC at once (a client retrying) all succeed, each a record.
async fn concurrent_enrollments_of_one_pc_never_fail(backend: Backend) {
    let app = spawn_app(backend).await;
    let hw = "A1B2C3D4E5F60718293A4B5C6D7E8F90A1B2C3D4E5F60718293A4B5C6D7E8F9";
    let answers = futures::future::join_all((0..6).map(|_| enroll(&app, hw, "Device"))).await;
    let ids: std::collections::BTreeSet<String> = answers
        .iter()
        .map(|a| {
            enroll::ca::device_id_from_certificate(&provisioning(a).client_certificate_der).unwrap()
        })
        .collect();
    assert_eq!(ids.len(), 6, "{ids:?}");
    assert_eq!(
        app.store
            .devices_by_identity(Some(hw), None, None)
            .await
            .unwrap()
            .len(),
        6
    );
}

async fn wrong_token_is_an_authentication_fault(backend: Backend) {
    let app = spawn_app(backend).await;
    let policy = post(
        &app,
        "/EnrollmentServer/Policy.svc",
        policies_xml(&app, password("not-a-token")),
    )
    .await;
    assert_eq!(policy.fault_code(), "s:Authentication");
    let rst = post(
        &app,
        "/EnrollmentServer/Enrollment.svc",
        rst_xml(
            &app,
            password("not-a-token"),
            new_csr(),
            context(&"E".repeat(64), "Device"),
        ),
    )
    .await;
    assert_eq!(rst.fault_code(), "s:Authentication");
    let no_credentials = post(
        &app,
        "/EnrollmentServer/Enrollment.svc",
        rst_xml(
            &app,
            enroll::SecurityToken::None,
            new_csr(),
            context(&"E".repeat(64), "Device"),
        ),
    )
    .await;
    assert_eq!(no_credentials.fault_code(), "s:Authentication");
    // A refusal is audited.
    let audit = app
        .store
        .list_audit(&redeploy_core::store::AuditQuery {
            device: None,
            after: None,
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(audit
        .iter()
        .any(|a| a.outcome == redeploy_core::AuditOutcome::Refused
            && a.details.contains("s:Authentication")));
}

async fn add_token(
    app: &testkit::app::TestApp,
    secret: &str,
    expires_at: Option<OffsetDateTime>,
    max_uses: Option<i64>,
) {
    app.store
        .create_enrollment_token(&EnrollmentToken {
            id: TokenId::generate(),
            label: secret.into(),
            secret_hash: SecretHash::of_secret(secret),
            expires_at,
            max_uses,
            uses: 0,
            created_at: OffsetDateTime::now_utc(),
            vouches_entra_join: false,
        })
        .await
        .unwrap();
}

async fn expired_and_used_up_tokens_are_authorization_faults(backend: Backend) {
    let app = spawn_app(backend).await;
    let now = OffsetDateTime::now_utc();
    add_token(&app, "expired-token", Some(now - Duration::hours(1)), None).await;
    add_token(
        &app,
        "one-use-token",
        Some(now + Duration::hours(1)),
        Some(1),
    )
    .await;

    let rst =
        |secret: &str, hw: &str| rst_xml(&app, password(secret), new_csr(), context(hw, "Device"));
    let expired = post(
        &app,
        "/EnrollmentServer/Enrollment.svc",
        rst("expired-token", &"F".repeat(64)),
    )
    .await;
    assert_eq!(expired.fault_code(), "s:Authorization");
    let policy = post(
        &app,
        "/EnrollmentServer/Policy.svc",
        policies_xml(&app, password("expired-token")),
    )
    .await;
    assert_eq!(policy.fault_code(), "s:Authorization");

    let first = post(
        &app,
        "/EnrollmentServer/Enrollment.svc",
        rst("one-use-token", &"1".repeat(64)),
    )
    .await;
    provisioning(&first);
    let second = post(
        &app,
        "/EnrollmentServer/Enrollment.svc",
        rst("one-use-token", &"2".repeat(64)),
    )
    .await;
    assert_eq!(second.fault_code(), "s:Authorization");
}

async fn tampered_csr_is_a_certificate_request_fault_and_spends_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    add_token(&app, "one-use-token", None, Some(1)).await;
    let mut csr = new_csr();
    // Flip a byte inside the signed part: the self-signature no longer verifies.
    let middle = csr.len() / 2;
    csr[middle] ^= 0x01;
    let answer = post(
        &app,
        "/EnrollmentServer/Enrollment.svc",
        rst_xml(
            &app,
            password("one-use-token"),
            csr,
            context(&"9".repeat(64), "Device"),
        ),
    )
    .await;
    assert_eq!(answer.fault_code(), "s:CertificateRequest");
    let garbage = post(
        &app,
        "/EnrollmentServer/Enrollment.svc",
        rst_xml(
            &app,
            password("one-use-token"),
            b"not a csr".to_vec(),
            context(&"9".repeat(64), "Device"),
        ),
    )
    .await;
    assert_eq!(garbage.fault_code(), "s:CertificateRequest");
    // The one use is still there.
    let ok = post(
        &app,
        "/EnrollmentServer/Enrollment.svc",
        rst_xml(
            &app,
            password("one-use-token"),
            new_csr(),
            context(&"9".repeat(64), "Device"),
        ),
    )
    .await;
    provisioning(&ok);
}

async fn malformed_xml_is_a_message_format_fault(backend: Backend) {
    let app = spawn_app(backend).await;
    for path in [
        "/EnrollmentServer/Discovery.svc",
        "/EnrollmentServer/Policy.svc",
        "/EnrollmentServer/Enrollment.svc",
    ] {
        let answer = post(&app, path, "<s:Envelope><unclosed>".into()).await;
        assert_eq!(answer.fault_code(), "s:MessageFormat", "{path}");
    }
    // Well-formed, but the wrong message for the service.
    let answer = post(
        &app,
        "/EnrollmentServer/Enrollment.svc",
        discover_xml(&app, vec![AuthPolicy::OnPremise]),
    )
    .await;
    assert_eq!(answer.fault_code(), "s:MessageFormat");
    assert_eq!(
        app.server()
            .state
            .metrics
            .enrollment_count("enrollment", "MessageFormat"),
        2
    );
}
