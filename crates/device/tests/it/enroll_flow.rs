//! Enrollment against an in-memory server that answers with `enroll`'s writers and a real CA.

use device::client::{self, EnrollOptions};
use device::state::{EnrollmentType, EventKind, JoinType};
use device::{DeviceError, DeviceProfile};

use crate::common::{has_event, t0};
use crate::fake::{FakeServer, Mdm, ADDR, SERVER, TOKEN};

fn options() -> EnrollOptions {
    EnrollOptions {
        server: SERVER.into(),
        token: TOKEN.into(),
        issuer: None,
    }
}

fn new_pc(join: JoinType) -> device::DeviceState {
    DeviceProfile {
        join,
        ..DeviceProfile::default()
    }
    .build_seeded("pc-0001", 11, t0())
}

fn rst_of(server: &FakeServer) -> enroll::RstRequest {
    let seen = server.seen();
    let rst = seen
        .iter()
        .find(|s| s.url.ends_with("/EnrollmentServer/Enrollment.svc"))
        .expect("an RST was sent");
    match enroll::parse_message(&rst.body).unwrap() {
        enroll::EnrollMessage::RequestSecurityToken(r) => r,
        other => panic!("expected an RST, got {other:?}"),
    }
}

#[tokio::test]
async fn entra_joined_pc_enrolls_like_windows_and_records_the_provisioning() {
    let server = FakeServer::new(Mdm::Idle);
    let mut pc = new_pc(JoinType::Joined);
    assert!(!pc.is_enrolled());
    let report = client::enroll(&server, &mut pc, &options(), t0())
        .await
        .unwrap();

    // The Windows sequence: discovery GET, Discover, GetPolicies, RST; SOAP 1.2 POSTs.
    let seen = server.seen();
    let steps: Vec<(&str, String)> = seen
        .iter()
        .map(|s| (s.method, s.url.trim_start_matches(SERVER).to_string()))
        .collect();
    assert_eq!(
        steps,
        vec![
            ("GET", "/EnrollmentServer/Discovery.svc".to_string()),
            ("POST", "/EnrollmentServer/Discovery.svc".to_string()),
            ("POST", "/EnrollmentServer/Policy.svc".to_string()),
            ("POST", "/EnrollmentServer/Enrollment.svc".to_string()),
        ]
    );
    for s in seen.iter().filter(|s| s.method == "POST") {
        assert_eq!(s.content_type, "application/soap+xml; charset=utf-8");
        assert!(
            s.identity.is_none(),
            "no client certificate before enrollment"
        );
    }

    // OnPremise credentials: the enrolling user's UPN and the enrollment token.
    let rst = rst_of(&server);
    match &rst.security {
        enroll::SecurityToken::UsernameToken { username, password } => {
            assert_eq!(username, &client::enrolling_user(&pc));
            assert!(username.contains('@'), "a UPN: {username}");
            assert_eq!(password, TOKEN);
        }
        other => panic!("expected a UsernameToken, got {other:?}"),
    }
    let ctx = &rst.context;
    assert_eq!(ctx.device_id(), Some(pc.dev_id.as_str()));
    assert_eq!(ctx.hw_dev_id(), Some(pc.hardware.hw_dev_id.as_str()));
    assert_eq!(ctx.enrollment_type(), Some(enroll::EnrollmentType::Device));
    assert_eq!(ctx.os_version(), Some(pc.os.version.as_str()));
    assert_eq!(ctx.application_version(), Some(pc.os.version.as_str()));
    assert_eq!(ctx.device_name(), Some(pc.computer_name.as_str()));
    assert_eq!(ctx.device_type(), Some("CIMClient_Windows"));
    assert_eq!(ctx.request_version(), Some("5.0"));
    assert_eq!(ctx.locale(), Some(pc.language.current.as_str()));
    assert!(ctx.os_edition().unwrap().parse::<u32>().is_ok());
    assert_eq!(ctx.macs().len(), 2);
    assert_eq!(ctx.not_in_oobe(), Some(true));
    assert_eq!(ctx.ux_initiated(), Some(false));
    assert_eq!(ctx.items, report.additional_context);
    // The CSR verifies and names the device.
    let csr = enroll::ca::verify_csr(&rst.csr_der).unwrap();
    assert_eq!(csr.subject_common_name.as_deref(), Some(pc.dev_id.as_str()));

    // The provisioning document is applied.
    let e = pc.mdm_enrollment.as_ref().unwrap();
    assert!(pc.is_enrolled());
    assert_eq!(e.server_url, ADDR);
    assert_eq!(e.provider_id, "Redeploy");
    assert_eq!(e.enrollment_type, EnrollmentType::Device);
    assert_eq!(e.ent_dm_id.as_deref(), Some(pc.dev_id.as_str()));
    assert!(e.client_key_pem.contains("PRIVATE KEY"));
    let der = enroll::decode_base64(&e.client_cert_pem).unwrap();
    server.ca.verify_issued(&der).unwrap();
    assert_eq!(e.thumbprint, enroll::ca::thumbprint(&der));
    assert_eq!(report.thumbprint, e.thumbprint);
    assert_eq!(
        enroll::decode_base64(&e.root_cert_pem).unwrap(),
        server.ca.cert_der()
    );
    // The recommended poll schedule from the document: 8 × 15 min, 5 × 3 min, then 1560 min.
    assert_eq!(e.poll.number_of_first_retries, 8);
    assert_eq!(e.poll.interval_for_first_set_of_retries, 15);
    assert_eq!(e.poll.interval_for_remaining_scheduled_retries, 1560);
    assert!(pc.certificates.iter().any(|c| c.thumbprint == e.thumbprint));
    assert!(has_event(&pc, EventKind::Enrolled));
    // The first session is due at once.
    assert!(device::schedule::check_in_due(&pc, t0()));
}

#[tokio::test]
async fn workgroup_pc_asks_for_a_full_enrollment() {
    let server = FakeServer::new(Mdm::Idle);
    let mut pc = new_pc(JoinType::None);
    client::enroll(&server, &mut pc, &options(), t0())
        .await
        .unwrap();
    let rst = rst_of(&server);
    assert_eq!(
        rst.context.enrollment_type(),
        Some(enroll::EnrollmentType::Full)
    );
    assert_eq!(rst.context.ux_initiated(), Some(true));
    assert_eq!(
        pc.mdm_enrollment.as_ref().unwrap().enrollment_type,
        EnrollmentType::Full
    );
}

#[tokio::test]
async fn a_soap_fault_is_a_clear_error_and_the_pc_stays_unenrolled() {
    let mut server = FakeServer::new(Mdm::Idle);
    server.rst_fault = Some(enroll::Fault::new(
        enroll::FaultCode::Authentication,
        "the enrollment token is not valid",
    ));
    let mut pc = new_pc(JoinType::Joined);
    let err = client::enroll(&server, &mut pc, &options(), t0())
        .await
        .unwrap_err();
    match &err {
        DeviceError::EnrollmentFault { subcode, message } => {
            assert!(subcode.ends_with("Authentication"), "{subcode}");
            assert!(message.contains("not valid"), "{message}");
        }
        other => panic!("expected a fault, got {other:?}"),
    }
    assert!(err.to_string().contains("Authentication"));
    assert!(!pc.is_enrolled());
    assert!(has_event(&pc, EventKind::EnrollmentFailed));
}

#[tokio::test]
async fn hybrid_pc_reports_its_domain() {
    let server = FakeServer::new(Mdm::Idle);
    let mut pc = new_pc(JoinType::Hybrid);
    client::enroll(&server, &mut pc, &options(), t0())
        .await
        .unwrap();
    let rst = rst_of(&server);
    assert_eq!(
        rst.context.enrollment_type(),
        Some(enroll::EnrollmentType::Device)
    );
    assert_eq!(rst.context.domain_name(), pc.ad_domain.as_deref());
    assert!(rst.context.domain_name().is_some());
}

#[test]
fn check_in_url_adds_the_windows_query() {
    assert_eq!(
        client::check_in_url(ADDR),
        format!("{ADDR}?mode=Machine&Platform=WoA")
    );
    assert_eq!(
        client::check_in_url("https://h/MDM.svc?tenant=1"),
        "https://h/MDM.svc?tenant=1&mode=Machine&Platform=WoA"
    );
}
