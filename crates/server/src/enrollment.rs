//! MS-MDE2 enrollment endpoints (docs/protocol.md §2): discovery, XCEP GetPolicies and the WSTEP
//! enrollment service. axum only frames bytes: `enroll` parses and writes the SOAP, the CA signs,
//! the store records; every refusal is a SOAP 1.2 fault with the documented subcode. A
//! RequestSecurityToken of RequestType Renew is a certificate renewal (docs/protocol.md §2.9).

use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, State};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use base64::Engine;
use enroll::provisioning::{AppAuth, CertStore, EnrollmentProvisioning};
use enroll::{
    ns, AuthPolicy, DiscoverRequest, DiscoverResponse, EnrollMessage, EnrollmentErrorType, Fault,
    FaultCode, GetPoliciesRequest, PolicyResponse, RstRequest, Rstr, SecurityToken,
};
use http::{header, HeaderValue, StatusCode};
use redeploy_core::enrollment::decide::{
    self, Authentication, EnrollRequest, IssuedCertificate, RefusalKind,
};
use redeploy_core::enrollment::identity;
use redeploy_core::enrollment::renewal::{self, PresentedCertificate, RenewalRequest};
use redeploy_core::store::StoreError;
use redeploy_core::{AuditOutcome, EnrollmentType, NewAuditEvent, SecretHash};

use crate::state::AppState;
use crate::tls::PeerCertificate;

/// Content type of every enrollment answer (docs/protocol.md §2.1).
pub const SOAP_XML: &str = "application/soap+xml; charset=utf-8";
/// Path of the discovery service (GET probe and POST Discover).
pub const DISCOVERY_PATH: &str = "/EnrollmentServer/Discovery.svc";
/// Path of the XCEP enrollment policy service.
pub const POLICY_PATH: &str = "/EnrollmentServer/Policy.svc";
/// Path of the WSTEP enrollment service.
pub const ENROLLMENT_PATH: &str = "/EnrollmentServer/Enrollment.svc";
/// Path of the OMA-DM management endpoint handed to devices as w7 `ADDR`.
pub const MANAGEMENT_PATH: &str = "/ManagementServer/MDM.svc";
/// WS-Addressing's action for faults (W3C WS-Addressing 1.0 SOAP Binding §6).
const FAULT_ACTION: &str = "http://www.w3.org/2005/08/addressing/soap/fault";
/// Highest EnrollmentVersion we answer with; Windows 11 asks for 6.0 (docs/protocol.md §2.2).
const MAX_ENROLLMENT_VERSION: f64 = 6.0;

/// The enrollment routes (the caller adds the rate limit).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(DISCOVERY_PATH, post(discovery).get(discovery_probe))
        .route(POLICY_PATH, post(policy))
        .route(ENROLLMENT_PATH, post(enrollment))
}

/// Why a request is refused: the SOAP fault to answer with.
struct Refusal {
    fault: Fault,
}

impl Refusal {
    fn new(code: FaultCode, reason: impl Into<String>) -> Self {
        Refusal {
            fault: Fault::new(code, reason),
        }
    }
}

fn soap(status: StatusCode, body: String) -> Response {
    let length = body.len();
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(SOAP_XML));
    // One message, never chunked (docs/protocol.md fact 9).
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    response
}

/// SOAP 1.2 Part 2 §7.4.1.1: a fault travels with HTTP 500.
fn fault_response(fault: &Fault, action: &str, relates_to: &str) -> Response {
    soap(
        StatusCode::INTERNAL_SERVER_ERROR,
        enroll::write_fault_with_action(fault, action, relates_to),
    )
}

fn outcome_label(code: FaultCode) -> &'static str {
    code.qname().rsplit(':').next().unwrap_or("Fault")
}

/// `GET Discovery.svc`: the client's reachability probe, answered 200 with an empty body.
async fn discovery_probe() -> Response {
    soap(StatusCode::OK, String::new())
}

fn parse(body: &[u8]) -> Result<EnrollMessage, Refusal> {
    enroll::parse_message(body).map_err(|e| Refusal {
        fault: Fault::from(&e),
    })
}

fn message_id_of(body: &[u8]) -> String {
    enroll::parse_message(body)
        .map(|m| m.message_id().to_string())
        .unwrap_or_default()
}

async fn discovery(State(state): State<AppState>, body: Bytes) -> Response {
    let started = Instant::now();
    let result = parse(&body).and_then(|m| match m {
        EnrollMessage::Discover(request) => Ok(request),
        _ => Err(Refusal::new(
            FaultCode::MessageFormat,
            "the discovery service expects a Discover message",
        )),
    });
    let response = match result {
        Ok(request) => {
            let answer = discover_response(&state, &request);
            state.metrics.record_enrollment("discovery", "ok");
            tracing::info!(
                email = %request.email_address,
                request_version = request.request_version.as_deref().unwrap_or(""),
                auth_policy = answer.auth_policy.as_str(),
                "discovery"
            );
            soap(
                StatusCode::OK,
                enroll::write_discover_response(&answer, &request.message_id),
            )
        }
        Err(refusal) => {
            state
                .metrics
                .record_enrollment("discovery", outcome_label(refusal.fault.code));
            tracing::info!(reason = %refusal.fault.reason, "discovery refused");
            fault_response(&refusal.fault, FAULT_ACTION, &message_id_of(&body))
        }
    };
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "discovery done"
    );
    response
}

/// What we answer a Discover with: Federated only when configured and offered, else OnPremise.
fn discover_response(state: &AppState, request: &DiscoverRequest) -> DiscoverResponse {
    let federated =
        state.federated.is_some() && request.auth_policies.contains(&AuthPolicy::Federated);
    let auth_policy = if federated {
        AuthPolicy::Federated
    } else {
        AuthPolicy::OnPremise
    };
    DiscoverResponse {
        auth_policy,
        enrollment_version: enrollment_version(request.request_version.as_deref()),
        // Same host for both services (docs/protocol.md §2.1).
        enrollment_policy_service_url: Some(format!("{}{POLICY_PATH}", state.public_url)),
        enrollment_service_url: format!("{}{ENROLLMENT_PATH}", state.public_url),
        authentication_service_url: if federated {
            state
                .federated
                .as_ref()
                .and_then(|f| f.settings().authentication_service_url.clone())
        } else {
            None
        },
    }
}

/// An EnrollmentVersion not above the client's RequestVersion (what FLEET does; exact
/// negotiation rules are UNCONFIRMED, docs/protocol.md §2.2). No version given → the samples' 3.0.
fn enrollment_version(requested: Option<&str>) -> String {
    match requested
        .map(str::trim)
        .and_then(|v| v.parse::<f64>().ok().map(|n| (v, n)))
    {
        Some((_, n)) if n > MAX_ENROLLMENT_VERSION => format!("{MAX_ENROLLMENT_VERSION:.1}"),
        Some((text, n)) if n >= 1.0 => text.to_string(),
        _ => "3.0".into(),
    }
}

fn store_fault(err: &StoreError) -> Refusal {
    tracing::error!(%err, "store failure during enrollment");
    Refusal::new(
        FaultCode::InternalServiceFault,
        "the server could not reach its database",
    )
}

/// The SOAP fault of a refusal the core decided (docs/protocol.md §2.6).
impl From<decide::Refusal> for Refusal {
    fn from(r: decide::Refusal) -> Self {
        let code = match r.kind {
            RefusalKind::Authentication => FaultCode::Authentication,
            RefusalKind::Authorization => FaultCode::Authorization,
            RefusalKind::CertificateRequest => FaultCode::CertificateRequest,
            // MS-MDE2's errortype for a certificate that may not be renewed rides in the
            // fault's detail (docs/protocol.md §2.6, §2.9).
            RefusalKind::NotEligibleToRenew => {
                return Refusal {
                    fault: Fault::new(FaultCode::Authorization, r.reason.clone()).with_detail(
                        EnrollmentErrorType::NotEligibleToRenew,
                        r.reason,
                        "",
                    ),
                }
            }
        };
        Refusal::new(code, r.reason)
    }
}

/// Checks the WS-Security token (the I/O half: the enrollment token its password names, or the
/// JWT's signature); the core's rules judge what was found ([`decide::authenticate`]).
async fn authenticate(
    state: &AppState,
    security: &SecurityToken,
) -> Result<Authentication, Refusal> {
    Ok(match security {
        SecurityToken::UsernameToken { username, password } => {
            let hash = SecretHash::of_secret(password.trim());
            let tokens = state
                .store
                .list_enrollment_tokens()
                .await
                .map_err(|e| store_fault(&e))?;
            Authentication::Token {
                username: username.clone(),
                token: tokens.into_iter().find(|t| t.secret_hash == hash),
            }
        }
        SecurityToken::BinarySecurityToken { value, .. } => {
            let Some(federated) = &state.federated else {
                return Ok(Authentication::Refused(
                    "federated enrollment is not configured on this server".into(),
                ));
            };
            // The value is base64 of the compact JWS (ITPRO federated doc); accept the bare
            // JWS too, since some clients do not wrap it.
            let jwt = security
                .decoded_value()
                .and_then(|b| String::from_utf8(b).ok())
                .filter(|t| t.split('.').count() == 3)
                .unwrap_or_else(|| value.trim().to_string());
            match federated.verify(&jwt).await {
                Ok(id) => Authentication::Federated {
                    upn: id.upn,
                    device_id: id.device_id,
                },
                Err(e) => Authentication::Refused(e.to_string()),
            }
        }
        SecurityToken::None => Authentication::Refused("the request carries no credentials".into()),
    })
}

async fn policy(State(state): State<AppState>, body: Bytes) -> Response {
    let result = async {
        let request: GetPoliciesRequest = match parse(&body)? {
            EnrollMessage::GetPolicies(r) => r,
            _ => {
                return Err(Refusal::new(
                    FaultCode::MessageFormat,
                    "the policy service expects a GetPolicies message",
                ))
            }
        };
        let auth = authenticate(&state, &request.security).await?;
        decide::authenticate(&auth, state.clock.now())?;
        Ok(request)
    }
    .await;
    match result {
        Ok(request) => {
            state.metrics.record_enrollment("policy", "ok");
            let policy = PolicyResponse {
                validity_period_seconds: state.settings.device_cert_validity.as_secs(),
                renewal_period_seconds: u64::from(state.settings.device_cert_renew_period_days)
                    * 86_400,
                ..PolicyResponse::default()
            };
            soap(
                StatusCode::OK,
                enroll::write_get_policies_response(&policy, &request.message_id),
            )
        }
        Err(refusal) => {
            state
                .metrics
                .record_enrollment("policy", outcome_label(refusal.fault.code));
            tracing::info!(reason = %refusal.fault.reason, "policy request refused");
            fault_response(&refusal.fault, FAULT_ACTION, &message_id_of(&body))
        }
    }
}

async fn enrollment(
    State(state): State<AppState>,
    peer: Option<axum::Extension<ConnectInfo<std::net::SocketAddr>>>,
    tls: Option<axum::Extension<PeerCertificate>>,
    body: Bytes,
) -> Response {
    let peer = peer.map(|c| c.0 .0.ip().to_string());
    let tls_cert = tls.and_then(|t| t.0 .0);
    let mut audited_action = "device.enroll";
    let result = async {
        let request = match parse(&body)? {
            EnrollMessage::RequestSecurityToken(r) => r,
            _ => {
                return Err(Refusal::new(
                    FaultCode::MessageFormat,
                    "the enrollment service expects a RequestSecurityToken message",
                ))
            }
        };
        if request.is_renewal() {
            audited_action = "device.renew";
            return renew_device(&state, &request, &body, tls_cert.as_deref()).await;
        }
        enroll_device(&state, &request, &body).await
    }
    .await;
    match result {
        Ok(xml) => {
            state.metrics.record_enrollment("enrollment", "ok");
            soap(StatusCode::OK, xml)
        }
        Err(refusal) => {
            state
                .metrics
                .record_enrollment("enrollment", outcome_label(refusal.fault.code));
            tracing::info!(reason = %refusal.fault.reason, code = refusal.fault.code.qname(), "enrollment refused");
            let audit = NewAuditEvent::new(
                state.clock.now(),
                format!("device@{}", peer.as_deref().unwrap_or("unknown")),
                audited_action,
            )
            .outcome(AuditOutcome::Refused)
            .details(format!(
                "{}: {}",
                refusal.fault.code.qname(),
                refusal.fault.reason
            ));
            if let Err(err) = state.store.append_audit(audit).await {
                tracing::warn!(%err, "could not audit a refused enrollment");
            }
            fault_response(&refusal.fault, ns::ACTION_RSTRC, &message_id_of(&body))
        }
    }
}

/// What the request's AdditionalContext says, for the core's rules.
fn request_facts(request: &RstRequest, raw: &[u8]) -> EnrollRequest {
    let context = &request.context;
    EnrollRequest {
        enrollment_type: match context.enrollment_type() {
            Some(enroll::EnrollmentType::Device) => Some(EnrollmentType::Device),
            Some(enroll::EnrollmentType::Full) => Some(EnrollmentType::Full),
            Some(enroll::EnrollmentType::Other(_)) | None => None,
        },
        hw_dev_id: context.hw_dev_id().map(str::to_string),
        device_name: context.device_name().map(str::to_string),
        mdm_device_id: context.device_id().map(str::to_string),
        os_version: context.os_version().map(str::to_string),
        domain_name: context.domain_name().map(str::to_string),
        context: context.items.clone(),
        raw: raw.to_vec(),
    }
}

/// The enrollment proper: authenticate and load (I/O), the core decides
/// ([`redeploy_core::enrollment::decide`]), then spend the token, sign, commit, audit, and write
/// the provisioning document.
async fn enroll_device(
    state: &AppState,
    request: &RstRequest,
    raw: &[u8],
) -> Result<String, Refusal> {
    let auth = authenticate(state, &request.security).await?;
    let csr = enroll::ca::verify_csr(&request.csr_der);
    let facts = request_facts(request, raw);
    let now = state.clock.now();
    // The records this PC might keep, loaded only for a credential that could bind it.
    let candidates = match decide::authenticate(&auth, now) {
        Ok(credential) => decide::candidates(state.store.as_ref(), &facts, &credential)
            .await
            .map_err(|e| store_fault(&e))?,
        Err(_) => Vec::new(),
    };
    let csr_problem = csr.as_ref().err().map(ToString::to_string);
    let grant = decide::decide(&facts, &auth, csr_problem.as_deref(), &candidates, now)?;
    // The decision refused an unusable CSR already; this only takes the verified one.
    let csr = csr.map_err(|e| Refusal::new(FaultCode::CertificateRequest, e.to_string()))?;
    if let Some(hash) = &grant.spend {
        state
            .store
            .consume_enrollment_token(hash, now)
            .await
            .map_err(|e| match decide::Refusal::of_token_spend(&e) {
                Some(r) => Refusal::from(r),
                None => store_fault(&e),
            })?;
    }
    let (cert, issued) = issue(state, &csr, grant.device_id, now)?;
    let (device, enrollment) = grant.records(&issued);
    let outcome = state
        .store
        .create_enrollment(device, enrollment)
        .await
        .map_err(|e| store_fault(&e))?;
    if let Err(err) = state.store.append_audit(grant.audit(&outcome)).await {
        tracing::warn!(%err, "could not audit an enrollment");
    }
    // A record that shares its hardware id, serial or Entra device id with another is flagged,
    // never refused: the PC enrolled with a valid credential (core::enrollment::identity).
    let clash = match state.store.device(outcome.device).await {
        Ok(Some(device)) => identity::find_clashes(state.store.as_ref(), &device)
            .await
            .map(|c| identity::clash_audit(&device, &c, now)),
        Ok(None) => Ok(None),
        Err(e) => Err(e),
    };
    match clash {
        Ok(Some(event)) => {
            if let Err(err) = state.store.append_audit(event).await {
                tracing::warn!(%err, "could not audit an identity clash");
            }
        }
        Ok(None) => {}
        Err(err) => tracing::warn!(%err, "identity clashes not looked for"),
    }
    let enrollment_type = grant.enrollment_type;
    tracing::info!(
        device = %outcome.device,
        enrollment = %outcome.enrollment,
        enrollment_type = %enrollment_type,
        re_enrollment = outcome.device_was_known,
        "device enrolled"
    );

    let store = match enrollment_type {
        EnrollmentType::Device => CertStore::System,
        EnrollmentType::Full => CertStore::User,
    };
    let mut provisioning = provisioning_for(state, cert.der.clone(), store);
    // Both APPAUTH blocks must be present (ITPRO w7-application-csp.md); devices authenticate
    // with their client certificate, so the DIGEST secrets are random and never checked.
    provisioning.app_auth = vec![
        AppAuth::client_digest(random_secret(), random_secret()),
        AppAuth::server_digest(outcome.device.to_string(), random_secret()),
    ];
    provisioning.poll = state.settings.poll.clone();
    provisioning.dmclient_parms = vec![("EntDMID".into(), outcome.device.to_string())];
    if let Some(upn) = grant.upn {
        provisioning.dmclient_parms.push(("UPN".into(), upn));
    }
    let rstr = Rstr {
        provisioning: provisioning.to_doc(),
    };
    Ok(enroll::write_rstr(&rstr, &request.message_id, now))
}

/// What a certificate presented to us says, for the core's rules: thumbprint, validity, the
/// device it names, and whether our CA issued it.
fn presented_certificate(state: &AppState, der: &[u8]) -> Result<PresentedCertificate, Refusal> {
    let (not_before, not_after) = enroll::ca::certificate_validity(der)
        .map_err(|e| Refusal::new(FaultCode::Authentication, e.to_string()))?;
    let not_ours = state.ca.verify_issued(der).err().map(|e| e.to_string());
    let device = enroll::ca::device_id_from_certificate(der)
        .ok()
        .and_then(|id| redeploy_core::DeviceId::parse(&id).ok());
    Ok(PresentedCertificate {
        thumbprint: enroll::ca::thumbprint(der),
        not_before,
        not_after,
        device,
        not_ours,
    })
}

/// A certificate renewal (MS-MDE2 3.4.4.1.1.1; docs/protocol.md §2.9): the PKCS#7's signature
/// (enroll), the signer and the device (I/O), the core's rules
/// ([`redeploy_core::enrollment::renewal::decide_renewal`]), then the CA signs and the store
/// commits the new certificate for the same device record; the answer carries only the new
/// certificate (ITPRO certificate-renewal-windows-mdm.md).
async fn renew_device(
    state: &AppState,
    request: &RstRequest,
    raw: &[u8],
    tls_cert: Option<&[u8]>,
) -> Result<String, Refusal> {
    if !request.token_is_pkcs7() {
        return Err(Refusal::new(
            FaultCode::MessageFormat,
            format!(
                "a renewal carries a PKCS#7 (ValueType {}), not {:?}",
                ns::VALUE_TYPE_PKCS7,
                request.csr_value_type
            ),
        ));
    }
    let signed = enroll::pkcs7::open_renewal(&request.csr_der)
        .map_err(|e| Refusal::new(e.fault_code(), e.to_string()))?;
    let signer = presented_certificate(state, &signed.signer_certificate_der)?;
    let device = match signer.device {
        Some(id) => state.store.device(id).await.map_err(|e| store_fault(&e))?,
        None => None,
    };
    let unseen = match &device {
        Some(d) => state
            .store
            .unseen_renewals(d.id)
            .await
            .map_err(|e| store_fault(&e))?,
        None => Vec::new(),
    };
    let csr = enroll::ca::verify_csr(&signed.csr_der);
    let facts = RenewalRequest {
        signer,
        tls_thumbprint: tls_cert.map(enroll::ca::thumbprint),
        csr_problem: csr.as_ref().err().map(ToString::to_string),
        request: request_facts(request, raw),
    };
    let now = state.clock.now();
    let grant = renewal::decide_renewal(&facts, device.as_ref(), &unseen, now)?;
    // The decision refused an unusable CSR already; this only takes the verified one.
    let csr = csr.map_err(|e| Refusal::new(FaultCode::CertificateRequest, e.to_string()))?;
    let (cert, issued) = issue(state, &csr, grant.device_id, now)?;
    let (record, enrollment) = grant.records(&issued);
    state
        .store
        .renew_device_certificate(&record, &enrollment)
        .await
        .map_err(|e| match e {
            // A concurrent renewal or re-enrollment replaced the certificate, or the device
            // was unenrolled, since the decision: that certificate may not renew any more.
            StoreError::Conflict(why) | StoreError::NotFound(why) => {
                Refusal::from(decide::Refusal {
                    kind: RefusalKind::NotEligibleToRenew,
                    reason: why,
                })
            }
            other => store_fault(&other),
        })?;
    if let Err(err) = state.store.append_audit(grant.audit(&record)).await {
        tracing::warn!(%err, "could not audit a certificate renewal");
    }
    tracing::info!(
        device = %grant.device_id,
        old = %record.old_thumbprint,
        new = %record.new_thumbprint,
        not_after = %record.new_not_after,
        "device certificate renewed"
    );
    let store = match grant.enrollment_type {
        EnrollmentType::Device => CertStore::System,
        EnrollmentType::Full => CertStore::User,
    };
    let provisioning = provisioning_for(state, cert.der, store);
    let rstr = Rstr {
        provisioning: provisioning.to_renewal_doc(),
    };
    Ok(enroll::write_rstr(&rstr, &request.message_id, now))
}

/// The provisioning of a PC enrolled with `client_certificate_der` in `store`: our root, the
/// management URL, and renewal `device_cert_renew_period_days` before expiry (none when 0).
fn provisioning_for(
    state: &AppState,
    client_certificate_der: Vec<u8>,
    store: CertStore,
) -> EnrollmentProvisioning {
    let mut provisioning = EnrollmentProvisioning::new(
        state.ca.cert_der().to_vec(),
        client_certificate_der,
        store,
        state.settings.provider_id.clone(),
        "Redeploy",
        format!("{}{MANAGEMENT_PATH}", state.public_url),
    );
    provisioning.renewal = match state.settings.device_cert_renew_period_days {
        0 => None,
        days => provisioning.renewal.map(|r| enroll::provisioning::Renewal {
            renew_period_days: days,
            ..r
        }),
    };
    provisioning
}

/// Has the CA sign `csr` for `device` with the configured lifetime: the certificate, and what
/// the core's records keep of it (enrollment and renewal alike).
fn issue(
    state: &AppState,
    csr: &enroll::ca::VerifiedCsr,
    device: redeploy_core::DeviceId,
    now: time::OffsetDateTime,
) -> Result<(enroll::ca::IssuedCertificate, IssuedCertificate), Refusal> {
    let validity = time::Duration::try_from(state.settings.device_cert_validity)
        .map_err(|e| Refusal::new(FaultCode::EnrollmentServer, e.to_string()))?;
    let cert = state
        .ca
        .issue_device_certificate_for(csr, &device.to_string(), now, validity)
        .map_err(|e| Refusal::new(e.fault_code(), e.to_string()))?;
    let issued = IssuedCertificate {
        thumbprint: cert.thumbprint.clone(),
        serial: cert.serial.clone(),
        not_after: cert.not_after,
    };
    Ok((cert, issued))
}

fn random_secret() -> String {
    let bytes: [u8; 18] = rand::random();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enrollment_version_never_exceeds_the_request() {
        assert_eq!(enrollment_version(Some("6.0")), "6.0");
        assert_eq!(enrollment_version(Some("5.0")), "5.0");
        assert_eq!(enrollment_version(Some("9.0")), "6.0");
        assert_eq!(enrollment_version(None), "3.0");
        assert_eq!(enrollment_version(Some("x")), "3.0");
    }
}
