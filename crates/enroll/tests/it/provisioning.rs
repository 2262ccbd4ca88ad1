//! The wap-provisioningdoc: the captured one exposes what a client needs; ours follows
//! docs/protocol.md §2.5 / fact 8; arbitrary documents round-trip.

use enroll::provisioning::{
    self, CertStore, Characteristic, EnrollmentProvisioning, Parm, ProvisioningDoc,
};
use proptest::prelude::*;

use crate::support::{fixture_text, NOW};

#[test]
fn captured_document_exposes_what_a_client_applies() {
    let doc = provisioning::parse(&fixture_text(
        "fleet-win10-21h1/08-enroll-response.wap-provisioningdoc.xml",
    ))
    .unwrap();
    let e = doc.enrollment().unwrap();
    assert_eq!(
        enroll::ca::thumbprint(&e.root_certificate_der),
        "D9A88E04AF18A4D399CEE62F2C71469C3AE1E675"
    );
    assert_eq!(
        enroll::ca::thumbprint(&e.client_certificate_der),
        "8F2EBD13F3612D7C48C30E24CC73A88492613849"
    );
    assert_eq!(e.client_store, CertStore::User);
    assert_eq!(e.provider_id, "DEMO MDM");
    assert_eq!(e.name, "FleetDM Demo Server - Windows");
    assert!(e.backcompat_retry_disabled);
    assert_eq!(
        e.default_encoding.as_deref(),
        Some("application/vnd.syncml.dm+xml")
    );
    assert_eq!(e.poll.number_of_first_retries, Some(8));
    assert_eq!(e.poll.interval_for_first_set_of_retries, None);
    assert_eq!(e.renewal, None);
    assert_eq!(e.app_auth.len(), 2);
    assert_eq!(e.app_auth[0].level, "CLIENT");
    assert_eq!(e.app_auth[1].name.as_deref(), Some("dummy"));
    let extra: Vec<_> = e.extra_w7_parms.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(extra, ["ServerList", "ROLE"]);
    assert_eq!(doc.w7().unwrap().parm_value("APPID"), Some("w7"));
}

fn plan(store: CertStore) -> EnrollmentProvisioning {
    let ca = enroll::ca::CertificateAuthority::generate("CA", NOW).unwrap();
    let (_, csr) = enroll::ca::new_device_key_and_csr("dev").unwrap();
    let issued = ca
        .issue_device_certificate(&enroll::ca::verify_csr(&csr).unwrap(), "dev-1", NOW, 30)
        .unwrap();
    let mut p = EnrollmentProvisioning::new(
        ca.cert_der().to_vec(),
        issued.der,
        store,
        "Redeploy",
        "Redeploy MDM",
        "https://mdm.example.test/ManagementServer/MDM.svc",
    );
    p.app_auth = vec![
        provisioning::AppAuth::client_digest("s3cret", "bm9uY2U="),
        provisioning::AppAuth::server_digest("dev-1", "s3cret"),
    ];
    p.dmclient_parms = vec![
        ("EntDMID".into(), "dev-1".into()),
        ("UPN".into(), "a@b.c".into()),
    ];
    p
}

#[test]
fn our_document_follows_the_windows_rules() {
    let p = plan(CertStore::User);
    let xml = p.to_doc().to_xml();
    let root_thumb = enroll::ca::thumbprint(&p.root_certificate_der);
    let client_thumb = enroll::ca::thumbprint(&p.client_certificate_der);
    for needle in [
        format!(r#"<characteristic type="Root"><characteristic type="System"><characteristic type="{root_thumb}"><parm name="EncodedCertificate""#),
        format!(r#"<characteristic type="My"><characteristic type="User"><characteristic type="{client_thumb}">"#),
        r#"<characteristic type="PrivateKeyContainer"></characteristic>"#.to_string(),
        r#"<parm name="ROBOSupport" value="true" datatype="boolean"/>"#.to_string(),
        r#"<parm name="RenewPeriod" value="42" datatype="integer"/>"#.to_string(),
        r#"<parm name="APPID" value="w7"/><parm name="PROVIDER-ID" value="Redeploy"/>"#.to_string(),
        r#"<parm name="BACKCOMPATRETRYDISABLED"/>"#.to_string(),
        r#"<parm name="DEFAULTENCODING" value="application/vnd.syncml.dm+xml"/>"#.to_string(),
        r#"<parm name="AAUTHLEVEL" value="CLIENT"/><parm name="AAUTHTYPE" value="DIGEST"/><parm name="AAUTHSECRET" value="s3cret"/><parm name="AAUTHDATA" value="bm9uY2U="/>"#.to_string(),
        r#"<parm name="AAUTHLEVEL" value="APPSRV"/><parm name="AAUTHTYPE" value="DIGEST"/><parm name="AAUTHNAME" value="dev-1"/>"#.to_string(),
        r#"<characteristic type="DMClient"><characteristic type="Provider"><characteristic type="Redeploy"><parm name="EntDMID" value="dev-1"/>"#.to_string(),
        r#"<parm name="IntervalForRemainingScheduledRetries" value="1560" datatype="integer"/>"#.to_string(),
        r#"<parm name="AllUsersPollOnFirstLogin" value="true" datatype="boolean"/>"#.to_string(),
    ] {
        assert!(xml.contains(&needle), "missing {needle}\nin {xml}");
    }
    assert_eq!(provisioning::parse(&xml).unwrap().enrollment().unwrap(), p);
}

#[test]
fn device_enrollments_put_the_client_certificate_in_my_system() {
    assert_eq!(
        CertStore::for_enrollment(&enroll::EnrollmentType::Device),
        CertStore::System
    );
    assert_eq!(
        CertStore::for_enrollment(&enroll::EnrollmentType::Full),
        CertStore::User
    );
    let xml = plan(CertStore::System).to_doc().to_xml();
    assert!(xml.contains(r#"<characteristic type="My"><characteristic type="System">"#));
    assert!(!xml.contains(r#"<characteristic type="User">"#));
}

#[test]
fn missing_private_key_container_is_reported() {
    let p = plan(CertStore::User);
    let xml = p.to_doc().to_xml().replace(
        r#"<characteristic type="PrivateKeyContainer"></characteristic>"#,
        "",
    );
    let err = provisioning::parse(&xml)
        .unwrap()
        .enrollment()
        .unwrap_err()
        .to_string();
    assert!(err.contains("PrivateKeyContainer"), "{err}");
}

#[test]
fn mismatched_provider_id_is_reported() {
    let xml = plan(CertStore::User).to_doc().to_xml().replace(
        r#"<characteristic type="Redeploy">"#,
        r#"<characteristic type="Other">"#,
    );
    let err = provisioning::parse(&xml)
        .unwrap()
        .enrollment()
        .unwrap_err()
        .to_string();
    assert!(err.contains("DMClient/Provider/Redeploy"), "{err}");
}

fn text() -> impl Strategy<Value = String> {
    // Any XML-legal text, including markup characters, quotes and whitespace controls.
    proptest::string::string_regex("[ -~\t\n\ré€\u{1F600}]{0,12}").unwrap()
}

fn parm() -> impl Strategy<Value = Parm> {
    (
        text(),
        proptest::option::of(text()),
        proptest::option::of(prop_oneof![
            Just("integer".to_string()),
            Just("boolean".to_string()),
            text()
        ]),
    )
        .prop_map(|(name, value, datatype)| Parm {
            name,
            value,
            datatype,
        })
}

fn characteristic() -> impl Strategy<Value = Characteristic> {
    let leaf = (text(), proptest::collection::vec(parm(), 0..4)).prop_map(|(kind, parms)| {
        Characteristic {
            kind,
            parms,
            children: Vec::new(),
        }
    });
    leaf.prop_recursive(4, 24, 4, |inner| {
        (
            text(),
            proptest::collection::vec(parm(), 0..3),
            proptest::collection::vec(inner, 0..4),
        )
            .prop_map(|(kind, parms, children)| Characteristic {
                kind,
                parms,
                children,
            })
    })
}

proptest! {
    #[test]
    fn arbitrary_documents_round_trip(
        version in text(),
        characteristics in proptest::collection::vec(characteristic(), 0..4),
    ) {
        let doc = ProvisioningDoc { version, characteristics };
        let parsed = provisioning::parse(&doc.to_xml()).unwrap();
        prop_assert_eq!(parsed, doc);
    }
}
