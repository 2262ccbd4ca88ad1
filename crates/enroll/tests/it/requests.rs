//! Device → server requests: every real capture and sample parses with the expected contents,
//! and our client-side writers produce messages that parse back to the same values.

use base64::Engine;
use enroll::{parse_message, AuthPolicy, EnrollMessage, EnrollmentType, SecurityToken};

use crate::support::{fixture, pytune_rst, rst, testdata};

fn discover(bytes: &[u8]) -> enroll::DiscoverRequest {
    match parse_message(bytes).unwrap() {
        EnrollMessage::Discover(d) => d,
        other => panic!("expected Discover, got {other:?}"),
    }
}

fn get_policies(bytes: &[u8]) -> enroll::GetPoliciesRequest {
    match parse_message(bytes).unwrap() {
        EnrollMessage::GetPolicies(g) => g,
        other => panic!("expected GetPolicies, got {other:?}"),
    }
}

#[test]
fn win10_discover_capture_parses() {
    let d = discover(&fixture("fleet-win10-21h1/03-discovery-request.xml"));
    assert_eq!(
        d.message_id,
        "urn:uuid:748132ec-a575-4329-b01b-6171a9cf8478"
    );
    assert_eq!(
        d.to.as_deref(),
        Some("https://EnterpriseEnrollment.fleetdm.ngrok.io:443/EnrollmentServer/Discovery.svc")
    );
    assert_eq!(d.email_address, "demo@fleetdm.ngrok.io");
    assert_eq!(d.request_version.as_deref(), Some("4.0"));
    assert_eq!(d.device_type.as_deref(), Some("CIMClient_Windows"));
    assert_eq!(d.application_version.as_deref(), Some("10.0.19043.2364"));
    assert_eq!(d.os_edition.as_deref(), Some("72"));
    assert_eq!(d.os_version, None);
    assert_eq!(
        d.auth_policies,
        vec![AuthPolicy::OnPremise, AuthPolicy::Federated]
    );
}

#[test]
fn win11_discover_capture_parses() {
    let d = discover(&fixture("mattrax/discovery-1.xml"));
    assert_eq!(d.email_address, "oscar@otbeaumont.me");
    assert_eq!(d.request_version.as_deref(), Some("6.0"));
    assert_eq!(d.application_version.as_deref(), Some("10.0.22621.3155"));
    assert_eq!(d.os_edition.as_deref(), Some("101"));
    assert_eq!(
        d.auth_policies,
        vec![AuthPolicy::OnPremise, AuthPolicy::Federated]
    );
}

#[test]
fn ms_federated_discover_with_trailing_slash_namespace_parses() {
    let d = discover(&testdata("f1-discover-federated.xml"));
    assert_eq!(d.email_address, "user@contoso.com");
    assert_eq!(d.request_version.as_deref(), Some("3.0"));
    assert_eq!(d.os_version.as_deref(), Some("10.0.18362.0"));
}

#[test]
fn get_policies_capture_carries_the_username_token() {
    let g = get_policies(&fixture("fleet-win10-21h1/05-policy-request.xml"));
    assert_eq!(
        g.message_id,
        "urn:uuid:72048B64-0F19-448F-8C2E-B4C661860AA0"
    );
    assert_eq!(
        g.to.as_deref(),
        Some("https://windows.fleetdm.ngrok.io/EnrollmentServer/Policy.svc")
    );
    assert_eq!(
        g.security,
        SecurityToken::UsernameToken {
            username: "demio".into(),
            password: "demo".into()
        }
    );
}

#[test]
fn ms_federated_get_policies_carries_a_user_token() {
    let g = get_policies(&testdata("f1-get-policies-federated.xml"));
    assert!(g.security.is_device_enrollment_user_token());
    assert!(!g.security.is_entra_jwt());
    assert_eq!(g.security.decoded_value().unwrap(), b"token-removed");
}

#[test]
fn win10_rst_capture_parses_with_its_context_and_a_valid_csr() {
    let r = rst(&fixture("fleet-win10-21h1/07-enroll-request.xml"));
    assert_eq!(
        r.message_id,
        "urn:uuid:0d5a1441-5891-453b-becf-a2e5f6ea3749"
    );
    assert_eq!(
        r.token_type,
        "http://schemas.microsoft.com/5.0.0.0/ConfigurationManager/Enrollment/DeviceEnrollmentToken"
    );
    assert_eq!(
        r.request_type,
        "http://docs.oasis-open.org/ws-sx/ws-trust/200512/Issue"
    );
    assert_eq!(
        r.csr_value_type,
        "http://schemas.microsoft.com/windows/pki/2009/01/enrollment#PKCS10"
    );
    let c = &r.context;
    assert_eq!(
        c.hw_dev_id(),
        Some("3B3ED6D0EA88CBFCF37D36F90F22FE61172348C0162FC3840D6703149870CE76")
    );
    assert_eq!(c.enrollment_type(), Some(EnrollmentType::Full));
    assert_eq!(c.os_version(), Some("10.0.19043.2364"));
    assert_eq!(c.device_id(), Some("B5B954E81FBCB94EB79BD08BE625F4EE"));
    assert_eq!(c.device_name(), Some("DESKTOP-28FGAI6"));
    assert_eq!(c.os_edition(), Some("72"));
    assert_eq!(c.locale(), Some("en-US"));
    assert_eq!(c.not_in_oobe(), Some(false));
    assert_eq!(c.ux_initiated(), Some(true));
    assert_eq!(c.macs().len(), 6);
    assert_eq!(c.macs()[0], "00-0C-29-51-60-9D");
    assert_eq!(c.items.first().unwrap().0, "UXInitiated");
    assert_eq!(c.items.last().unwrap().0, "NotInOobe");
    let csr = enroll::ca::verify_csr(&r.csr_der).unwrap();
    assert!(matches!(
        csr.key_algorithm,
        enroll::ca::KeyAlgorithm::Rsa { bits: 2048 }
    ));
}

#[test]
fn entra_rst_template_parses_with_jwt_and_device_enrollment() {
    let (_key, csr) =
        enroll::ca::new_device_key_and_csr("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0").unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJ1cG4iOiJhQGIuYyJ9.c2ln";
    let xml = pytune_rst(&b64.encode(&csr), &b64.encode(jwt));
    let r = rst(xml.as_bytes());
    assert!(r.security.is_entra_jwt());
    assert_eq!(r.security.decoded_value().unwrap(), jwt.as_bytes());
    assert_eq!(
        r.to.as_deref(),
        Some("https://mdm.example.test/EnrollmentServer/Enrollment.svc")
    );
    let c = &r.context;
    assert_eq!(c.enrollment_type(), Some(EnrollmentType::Device));
    assert_eq!(c.device_id(), Some("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"));
    assert_eq!(c.domain_name(), Some("evil.local"));
    assert_eq!(c.get("ZeroTouchProvisioning"), Some("ztd-1234"));
    assert_eq!(c.enrollment_data(), Some("null"));
    assert_eq!(c.os_version(), Some("10.0.22631.4460"));
    assert_eq!(c.items[1].0, "DomainName", "order is kept");
    assert_eq!(r.csr_der, csr);
    let verified = enroll::ca::verify_csr(&r.csr_der).unwrap();
    assert_eq!(
        verified.subject_common_name.as_deref(),
        Some("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0")
    );
}

#[test]
fn ms_onpremise_rst_parses_escaped_password() {
    let r = rst(&testdata("f2-rst-onpremise.xml"));
    assert_eq!(
        r.security,
        SecurityToken::UsernameToken {
            username: "user@contoso.com".into(),
            password: "mypass&word".into()
        }
    );
    assert_eq!(r.csr_der, vec![0, 1, 2, 3, 4, 5]);
    assert_eq!(
        r.context.device_id(),
        Some("7BA748C8703241C6A4CE1D3B5D77C5E0")
    );
}

#[test]
fn client_writers_reproduce_the_captured_requests() {
    let d = discover(&fixture("fleet-win10-21h1/03-discovery-request.xml"));
    assert_eq!(discover(enroll::write_discover_request(&d).as_bytes()), d);

    let g = get_policies(&fixture("fleet-win10-21h1/05-policy-request.xml"));
    assert_eq!(
        get_policies(enroll::write_get_policies_request(&g).as_bytes()),
        g
    );

    let r = rst(&fixture("fleet-win10-21h1/07-enroll-request.xml"));
    assert_eq!(rst(enroll::write_rst_request(&r).as_bytes()), r);

    let b64 = base64::engine::general_purpose::STANDARD;
    let entra = rst(pytune_rst(&b64.encode([1u8, 2, 3]), "dG9r").as_bytes());
    assert_eq!(rst(enroll::write_rst_request(&entra).as_bytes()), entra);
}

#[test]
fn written_rst_uses_the_windows_names_and_namespaces() {
    let r = rst(&fixture("fleet-win10-21h1/07-enroll-request.xml"));
    let xml = enroll::write_rst_request(&r);
    for needle in [
        r#"<a:Action s:mustUnderstand="1">http://schemas.microsoft.com/windows/pki/2009/01/enrollment/RST/wstep</a:Action>"#,
        r#"ValueType="http://schemas.microsoft.com/windows/pki/2009/01/enrollment#PKCS10""#,
        r#"<ac:ContextItem Name="HWDevID"><ac:Value>3B3ED6D0EA88CBFCF37D36F90F22FE61172348C0162FC3840D6703149870CE76</ac:Value></ac:ContextItem>"#,
        "<wsse:Username>demio</wsse:Username>",
    ] {
        assert!(xml.contains(needle), "missing {needle}");
    }
}
