//! Helpers: a device's side of the enrollment exchange, built with `enroll`'s client writers.

use enroll::{
    AdditionalContext, AuthPolicy, DiscoverRequest, EnrollResponse, GetPoliciesRequest, RstRequest,
    SecurityToken,
};
use testkit::app::TestApp;

pub const SOAP_XML: &str = "application/soap+xml; charset=utf-8";

/// What the server answered: status, content type, content length, parsed body (if SOAP).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub content_length: Option<u64>,
    pub body: String,
}

impl Answer {
    pub fn parsed(&self) -> EnrollResponse {
        enroll::parse_response(self.body.as_bytes())
            .unwrap_or_else(|e| panic!("unparseable answer ({e}): {}", self.body))
    }

    /// The fault subcode (`s:Authentication`…), asserting a SOAP 1.2 fault on HTTP 500.
    pub fn fault_code(&self) -> &'static str {
        assert_eq!(
            self.status, 500,
            "faults travel with HTTP 500: {}",
            self.body
        );
        assert_eq!(self.content_type, SOAP_XML);
        match self.parsed() {
            EnrollResponse::Fault { fault, .. } => fault.code.qname(),
            other => panic!("expected a fault, got {other:?}"),
        }
    }
}

pub async fn post(app: &TestApp, path: &str, body: String) -> Answer {
    let response = app
        .client()
        .post(app.url(path))
        .header("content-type", SOAP_XML)
        .body(body)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let content_type = header("content-type").unwrap_or_default();
    let content_length = header("content-length").and_then(|v| v.parse().ok());
    assert!(
        header("transfer-encoding").is_none(),
        "enrollment answers are never chunked"
    );
    let body = response.text().await.expect("body");
    Answer {
        status,
        content_type,
        content_length,
        body,
    }
}

pub fn discover_xml(app: &TestApp, policies: Vec<AuthPolicy>) -> String {
    enroll::write_discover_request(&DiscoverRequest {
        message_id: "urn:uuid:11111111-1111-1111-1111-111111111111".into(),
        to: Some(app.url("/EnrollmentServer/Discovery.svc")),
        email_address: "user@example.org".into(),
        request_version: Some("6.0".into()),
        device_type: Some("CIMClient_Windows".into()),
        application_version: Some("10.0.22621.3155".into()),
        os_edition: Some("4".into()),
        os_version: None,
        auth_policies: policies,
    })
}

pub fn policies_xml(app: &TestApp, security: SecurityToken) -> String {
    enroll::write_get_policies_request(&GetPoliciesRequest {
        message_id: "urn:uuid:22222222-2222-2222-2222-222222222222".into(),
        to: Some(app.url("/EnrollmentServer/Policy.svc")),
        security,
    })
}

pub fn password(token: &str) -> SecurityToken {
    SecurityToken::UsernameToken {
        username: "user@example.org".into(),
        password: token.into(),
    }
}

/// The AdditionalContext a Windows 11 PC sends (fixture shapes), with our HWDevID and type.
pub fn context(hw_dev_id: &str, enrollment_type: &str) -> AdditionalContext {
    AdditionalContext::new(
        [
            ("UXInitiated", "false"),
            ("HWDevID", hw_dev_id),
            ("Locale", "en-US"),
            ("TargetedUserLoggedIn", "true"),
            ("OSEdition", "4"),
            ("DeviceName", "PC-LAB-01"),
            ("MAC", "00-0C-29-AA-BB-01"),
            ("MAC", "00-0C-29-AA-BB-02"),
            ("DeviceID", "AB12CD34EF56AB12CD34EF56AB12CD34"),
            ("EnrollmentType", enrollment_type),
            ("DeviceType", "CIMClient_Windows"),
            ("OSVersion", "10.0.22631.4037"),
            ("ApplicationVersion", "10.0.22631.4037"),
            ("NotInOobe", "false"),
            ("RequestVersion", "6.0"),
        ]
        .into_iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect(),
    )
}

pub fn rst_xml(
    app: &TestApp,
    security: SecurityToken,
    csr_der: Vec<u8>,
    context: AdditionalContext,
) -> String {
    enroll::write_rst_request(&RstRequest {
        message_id: "urn:uuid:33333333-3333-3333-3333-333333333333".into(),
        to: Some(app.url("/EnrollmentServer/Enrollment.svc")),
        security,
        token_type: String::new(),
        request_type: String::new(),
        csr_value_type: String::new(),
        csr_der,
        context,
    })
}

pub fn new_csr() -> Vec<u8> {
    enroll::ca::new_device_key_and_csr("device").unwrap().1
}

/// Enrolls with the app's first enrollment token; returns the answer.
pub async fn enroll(app: &TestApp, hw_dev_id: &str, enrollment_type: &str) -> Answer {
    post(
        app,
        "/EnrollmentServer/Enrollment.svc",
        rst_xml(
            app,
            password(&app.enrollment_token),
            new_csr(),
            context(hw_dev_id, enrollment_type),
        ),
    )
    .await
}

/// The provisioning document of a successful enrollment answer.
pub fn provisioning(answer: &Answer) -> enroll::provisioning::EnrollmentProvisioning {
    assert_eq!(answer.status, 200, "{}", answer.body);
    match answer.parsed() {
        EnrollResponse::Rstr { response, .. } => response.provisioning.enrollment().unwrap(),
        other => panic!("expected an RSTR, got {other:?}"),
    }
}

/// Checks `der` is signed by the CA in `ca_pem`.
pub fn assert_chains_to(der: &[u8], ca_pem: &str) {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let ca_der = x509_parser::pem::parse_x509_pem(ca_pem.as_bytes())
        .unwrap()
        .1
        .contents;
    let (_, ca) = X509Certificate::from_der(&ca_der).unwrap();
    let (_, cert) = X509Certificate::from_der(der).unwrap();
    assert_eq!(cert.issuer(), ca.subject());
    cert.verify_signature(Some(ca.public_key()))
        .expect("the client certificate is signed by ca.pem");
}

/// `GET /api/v1/devices/{id}` as the admin.
pub async fn device_detail(app: &TestApp, id: impl std::fmt::Display) -> serde_json::Value {
    app.client()
        .get(app.url(&format!("/api/v1/devices/{id}")))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// An HTTPS client trusting only the app's CA that does not follow redirects (a browser whose
/// cookies the test keeps by hand).
pub fn browser_client(app: &TestApp) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(app.ca_pem.as_bytes()).unwrap();
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}
