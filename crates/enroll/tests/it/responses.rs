//! Server → device answers: captured responses parse, ours carry the same information, faults
//! carry the documented subcodes.

use enroll::provisioning::{CertStore, EnrollmentProvisioning, ProvisioningDoc};
use enroll::{
    parse_message, parse_response, AuthPolicy, DiscoverResponse, EnrollMessage, EnrollResponse,
    EnrollmentErrorType, Fault, FaultCode, PolicyResponse, Rstr,
};

use crate::support::{fixture, fixture_text, rst, testdata, NOW};

fn discover_response(bytes: &[u8]) -> (Option<String>, DiscoverResponse) {
    match parse_response(bytes).unwrap() {
        EnrollResponse::Discover {
            relates_to,
            response,
        } => (relates_to, response),
        other => panic!("expected DiscoverResponse, got {other:?}"),
    }
}

#[test]
fn our_discover_response_for_03_carries_what_04_carries() {
    let (relates, theirs) =
        discover_response(&fixture("fleet-win10-21h1/04-discovery-response.xml"));
    assert_eq!(
        relates.as_deref(),
        Some("urn:uuid:748132ec-a575-4329-b01b-6171a9cf8478")
    );
    assert_eq!(theirs.auth_policy, AuthPolicy::OnPremise);
    assert_eq!(theirs.enrollment_version, "4.0");
    assert_eq!(
        theirs.enrollment_service_url,
        "https://windows.fleetdm.ngrok.io/EnrollmentServer/Enrollment.svc"
    );

    let EnrollMessage::Discover(request) =
        parse_message(&fixture("fleet-win10-21h1/03-discovery-request.xml")).unwrap()
    else {
        panic!("03 is a Discover")
    };
    let ours = DiscoverResponse {
        auth_policy: AuthPolicy::OnPremise,
        enrollment_version: request.request_version.clone().unwrap(),
        enrollment_policy_service_url: Some(
            "https://windows.fleetdm.ngrok.io/EnrollmentServer/Policy.svc".into(),
        ),
        enrollment_service_url: "https://windows.fleetdm.ngrok.io/EnrollmentServer/Enrollment.svc"
            .into(),
        authentication_service_url: None,
    };
    let xml = enroll::write_discover_response(&ours, &request.message_id);
    let (our_relates, parsed) = discover_response(xml.as_bytes());
    assert_eq!(our_relates, relates);
    assert_eq!(parsed.auth_policy, theirs.auth_policy);
    assert_eq!(parsed.enrollment_version, theirs.enrollment_version);
    assert_eq!(
        parsed.enrollment_policy_service_url,
        theirs.enrollment_policy_service_url
    );
    assert_eq!(parsed.enrollment_service_url, theirs.enrollment_service_url);
    assert_eq!(
        parsed.authentication_service_url,
        theirs.authentication_service_url
    );
}

#[test]
fn federated_discover_response_keeps_the_authentication_url() {
    let (_, sample) = discover_response(&testdata("f1-discover-response-federated.xml"));
    assert_eq!(sample.auth_policy, AuthPolicy::Federated);
    assert_eq!(
        sample.authentication_service_url.as_deref(),
        Some("https://portal.contoso.com/")
    );
    let (_, back) =
        discover_response(enroll::write_discover_response(&sample, "urn:uuid:1").as_bytes());
    assert_eq!(back, sample);
}

#[test]
fn fixture_06_policy_response_is_rejected_as_malformed() {
    let text = fixture_text("fleet-win10-21h1/06-policy-response.xml");
    let (line_index, line) = text
        .split('\n')
        .enumerate()
        .find(|(_, l)| l.contains("<algorithmOIDReferencexsi"))
        .unwrap();
    let column = line.find('<').unwrap() + 1;
    let err = parse_response(text.as_bytes()).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("line {}, column {column}: ", line_index + 1)),
        "{err}"
    );
    assert!(err.contains("algorithmOIDReferencexsi:nil"), "{err}");
}

#[test]
fn our_policy_response_is_well_formed_and_round_trips() {
    let policy = PolicyResponse::default();
    let xml = enroll::write_get_policies_response(
        &policy,
        "urn:uuid:72048B64-0F19-448F-8C2E-B4C661860AA0",
    );
    assert!(xml.contains("<minimalKeyLength>2048</minimalKeyLength>"));
    assert!(xml.contains(r#"<algorithmOIDReference xsi:nil="true"/>"#));
    match parse_response(xml.as_bytes()).unwrap() {
        EnrollResponse::GetPolicies {
            relates_to,
            response,
        } => {
            assert_eq!(
                relates_to.as_deref(),
                Some("urn:uuid:72048B64-0F19-448F-8C2E-B4C661860AA0")
            );
            assert_eq!(response, policy);
        }
        other => panic!("{other:?}"),
    }
    let no_hash = PolicyResponse {
        hash_algorithm: None,
        ..PolicyResponse::default()
    };
    match parse_response(enroll::write_get_policies_response(&no_hash, "x").as_bytes()).unwrap() {
        EnrollResponse::GetPolicies { response, .. } => assert_eq!(response, no_hash),
        other => panic!("{other:?}"),
    }
}

fn parsed_rstr(bytes: &[u8]) -> (Option<String>, enroll::RstrResponse) {
    match parse_response(bytes).unwrap() {
        EnrollResponse::Rstr {
            relates_to,
            response,
        } => (relates_to, *response),
        other => panic!("expected RSTRC, got {other:?}"),
    }
}

#[test]
fn fixture_08_rstr_parses_with_its_provisioning_document() {
    let (relates, r) = parsed_rstr(&fixture("fleet-win10-21h1/08-enroll-response.xml"));
    assert_eq!(
        relates.as_deref(),
        Some("urn:uuid:0d5a1441-5891-453b-becf-a2e5f6ea3749")
    );
    assert_eq!(
        r.value_type,
        "http://schemas.microsoft.com/5.0.0.0/ConfigurationManager/Enrollment/DeviceEnrollmentProvisionDoc"
    );
    assert_eq!(r.created.as_deref(), Some("2018-11-30T00:32:59.420Z"));
    assert_eq!(
        r.provisioning_xml,
        fixture_text("fleet-win10-21h1/08-enroll-response.wap-provisioningdoc.xml")
    );
    let e = r.provisioning.enrollment().unwrap();
    assert_eq!(e.provider_id, "DEMO MDM");
    assert_eq!(
        e.addr,
        "https://windows.fleetdm.ngrok.io/ManagementServer/MDM.svc"
    );
    assert_eq!(e.client_store, CertStore::User);
}

/// Every (characteristic path, parm name) of a document, with certificate thumbprints and the
/// provider id replaced by placeholders so two documents for different certs compare.
fn shape(
    doc: &ProvisioningDoc,
    provider: &str,
    thumbs: &[String],
) -> std::collections::BTreeSet<String> {
    fn walk(
        c: &enroll::provisioning::Characteristic,
        path: &str,
        provider: &str,
        thumbs: &[String],
        out: &mut std::collections::BTreeSet<String>,
    ) {
        let kind = if thumbs.contains(&c.kind) {
            "<THUMBPRINT>"
        } else if c.kind == provider {
            "<PROVIDER>"
        } else {
            &c.kind
        };
        let path = format!("{path}/{kind}");
        out.insert(path.clone());
        for p in &c.parms {
            out.insert(format!("{path}@{}", p.name));
        }
        for child in &c.children {
            walk(child, &path, provider, thumbs, out);
        }
    }
    let mut out = std::collections::BTreeSet::new();
    for c in &doc.characteristics {
        walk(c, "", provider, thumbs, &mut out);
    }
    out
}

#[test]
fn our_rstr_for_07_has_the_shape_of_08() {
    let request = rst(&fixture("fleet-win10-21h1/07-enroll-request.xml"));
    let ca = enroll::ca::CertificateAuthority::generate("Redeploy Test CA", NOW).unwrap();
    let csr = enroll::ca::verify_csr(&request.csr_der).unwrap();
    let device_id = request.context.device_id().unwrap();
    let issued = ca
        .issue_device_certificate(&csr, device_id, NOW, 365)
        .unwrap();
    let store = CertStore::for_enrollment(&request.context.enrollment_type().unwrap());
    let mut plan = EnrollmentProvisioning::new(
        ca.cert_der().to_vec(),
        issued.der.clone(),
        store,
        "DEMO MDM",
        "Redeploy",
        "https://windows.fleetdm.ngrok.io/ManagementServer/MDM.svc",
    );
    plan.dmclient_parms = vec![("EntDMID".into(), device_id.into())];
    let xml = enroll::write_rstr(
        &Rstr {
            provisioning: plan.to_doc(),
        },
        &request.message_id,
        NOW,
    );
    let (relates, ours) = parsed_rstr(xml.as_bytes());
    assert_eq!(relates.as_deref(), Some(request.message_id.as_str()));
    assert_eq!(ours.created.as_deref(), Some("2026-11-26T10:00:00.000Z"));
    assert_eq!(ours.expires.as_deref(), Some("2026-11-26T10:05:00.000Z"));
    assert_eq!(ours.provisioning.enrollment().unwrap(), plan);

    let (_, theirs) = parsed_rstr(&fixture("fleet-win10-21h1/08-enroll-response.xml"));
    let their_plan = theirs.provisioning.enrollment().unwrap();
    let their_thumbs = [
        enroll::ca::thumbprint(&their_plan.root_certificate_der),
        enroll::ca::thumbprint(&their_plan.client_certificate_der),
    ];
    let our_thumbs = [
        issued.thumbprint.clone(),
        enroll::ca::thumbprint(ca.cert_der()),
    ];
    let their_shape = shape(&theirs.provisioning, "DEMO MDM", &their_thumbs);
    let our_shape = shape(&ours.provisioning, "DEMO MDM", &our_thumbs);
    // 08 also sends ServerList and ROLE, which Fleet later dropped (docs/protocol.md §2.5,
    // minimal set).
    let optional = ["/APPLICATION@ServerList", "/APPLICATION@ROLE"];
    let missing: Vec<_> = their_shape
        .iter()
        .filter(|s| !our_shape.contains(*s) && !optional.contains(&s.as_str()))
        .collect();
    assert!(missing.is_empty(), "our document lacks {missing:?}");
    assert_eq!(their_plan.client_store, plan.client_store);
}

#[test]
fn faults_carry_the_documented_subcodes() {
    for code in FaultCode::ALL {
        let fault = Fault::new(code, "nope <because>").with_detail(
            EnrollmentErrorType::InvalidEnrollmentData,
            "bad blob",
            "trace-1",
        );
        let xml = enroll::write_fault(&fault, "urn:uuid:abc");
        assert!(
            xml.contains(&format!("<s:Value>{}</s:Value>", code.qname())),
            "{xml}"
        );
        assert!(xml.contains("<s:Value>s:Receiver</s:Value>"));
        match parse_response(xml.as_bytes()).unwrap() {
            EnrollResponse::Fault {
                relates_to,
                fault: back,
            } => {
                assert_eq!(relates_to.as_deref(), Some("urn:uuid:abc"));
                assert_eq!(back, fault);
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(FaultCode::CertificateRequest.hresult(), 0x8018_0004);
    assert_eq!(
        EnrollmentErrorType::DeviceCapReached.hresult(),
        Some(0x8018_0013)
    );
}

#[test]
fn microsoft_fault_samples_parse_despite_lowercased_names() {
    match parse_response(&testdata("f4-fault-authorization.xml")).unwrap() {
        EnrollResponse::Fault { fault, .. } => {
            assert_eq!(fault.code, FaultCode::Authorization);
            assert_eq!(fault.reason, "This User is not authorized to enroll");
            assert_eq!(fault.detail, None);
        }
        other => panic!("{other:?}"),
    }
    match parse_response(&testdata("f4-fault-devicecap.xml")).unwrap() {
        EnrollResponse::Fault { fault, .. } => {
            let detail = fault.detail.unwrap();
            assert_eq!(detail.error_type, EnrollmentErrorType::DeviceCapReached);
            assert_eq!(detail.trace_id, "2493ee37-beeb-4cb9-833c-cadde9067645");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn parse_errors_map_to_message_format_faults() {
    let err = parse_message(b"<nope/>").unwrap_err();
    let fault = Fault::from(&err);
    assert_eq!(fault.code, FaultCode::MessageFormat);
    assert!(
        fault.reason.starts_with("line 1, column 1:"),
        "{}",
        fault.reason
    );
}

#[test]
fn soap_11_rstr_is_accepted() {
    let ca = enroll::ca::CertificateAuthority::generate("CA", NOW).unwrap();
    let (_, csr) = enroll::ca::new_device_key_and_csr("dev").unwrap();
    let csr = enroll::ca::verify_csr(&csr).unwrap();
    let issued = ca.issue_device_certificate(&csr, "dev", NOW, 30).unwrap();
    let plan = EnrollmentProvisioning::new(
        ca.cert_der().to_vec(),
        issued.der,
        CertStore::System,
        "P",
        "N",
        "https://x/MDM.svc",
    );
    let xml = enroll::write_rstr(
        &Rstr {
            provisioning: plan.to_doc(),
        },
        "urn:uuid:1",
        NOW,
    )
    .replace(enroll::ns::SOAP12, enroll::ns::SOAP11);
    let (_, r) = parsed_rstr(xml.as_bytes());
    assert_eq!(
        r.provisioning.enrollment().unwrap().client_store,
        CertStore::System
    );
}

#[test]
fn fault_wire_format_is_stable() {
    let fault = Fault::new(FaultCode::Authorization, "device cap reached").with_detail(
        EnrollmentErrorType::DeviceCapReached,
        "device cap reached",
        "2493ee37",
    );
    expect_test::expect![[r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://www.w3.org/2005/08/addressing" xmlns:u="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"><s:Header><a:Action s:mustUnderstand="1">http://schemas.microsoft.com/windows/pki/2009/01/enrollment/RSTRC/wstep</a:Action><a:RelatesTo>urn:uuid:1</a:RelatesTo></s:Header><s:Body><s:Fault><s:Code><s:Value>s:Receiver</s:Value><s:Subcode><s:Value>s:Authorization</s:Value></s:Subcode></s:Code><s:Reason><s:Text xml:lang="en-US">device cap reached</s:Text></s:Reason><s:Detail><deviceenrollmentserviceerror xmlns="http://schemas.microsoft.com/windows/pki/2009/01/enrollment"><errortype>DeviceCapReached</errortype><message>device cap reached</message><traceid>2493ee37</traceid></deviceenrollmentserviceerror></s:Detail></s:Fault></s:Body></s:Envelope>"#]].assert_eq(&enroll::write_fault(&fault, "urn:uuid:1"));
}

#[test]
fn discover_response_wire_format_is_stable() {
    let response = DiscoverResponse {
        auth_policy: AuthPolicy::Federated,
        enrollment_version: "5.0".into(),
        enrollment_policy_service_url: Some(
            "https://mdm.example.test/EnrollmentServer/Policy.svc".into(),
        ),
        enrollment_service_url: "https://mdm.example.test/EnrollmentServer/Enrollment.svc".into(),
        authentication_service_url: Some("https://mdm.example.test/auth".into()),
    };
    expect_test::expect![[r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://www.w3.org/2005/08/addressing" xmlns:u="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"><s:Header><a:Action s:mustUnderstand="1">http://schemas.microsoft.com/windows/management/2012/01/enrollment/IDiscoveryService/DiscoverResponse</a:Action><a:RelatesTo>urn:uuid:1</a:RelatesTo></s:Header><s:Body><DiscoverResponse xmlns="http://schemas.microsoft.com/windows/management/2012/01/enrollment"><DiscoverResult><AuthPolicy>Federated</AuthPolicy><EnrollmentVersion>5.0</EnrollmentVersion><EnrollmentPolicyServiceUrl>https://mdm.example.test/EnrollmentServer/Policy.svc</EnrollmentPolicyServiceUrl><EnrollmentServiceUrl>https://mdm.example.test/EnrollmentServer/Enrollment.svc</EnrollmentServiceUrl><AuthenticationServiceUrl>https://mdm.example.test/auth</AuthenticationServiceUrl></DiscoverResult></DiscoverResponse></s:Body></s:Envelope>"#]].assert_eq(&enroll::write_discover_response(&response, "urn:uuid:1"));
}
