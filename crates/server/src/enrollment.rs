//! MS-MDE2 enrollment endpoints (protocol.md §2): discovery, XCEP GetPolicies and the WSTEP
//! enrollment service. axum only frames bytes: `enroll` parses and writes the SOAP, the CA signs,
//! the store records; every refusal is a SOAP 1.2 fault with the documented subcode.

use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, State};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use base64::Engine;
use enroll::provisioning::{AppAuth, CertStore, EnrollmentProvisioning};
use enroll::{
    ns, AuthPolicy, DiscoverRequest, DiscoverResponse, EnrollMessage, Fault, FaultCode,
    GetPoliciesRequest, PolicyResponse, RstRequest, Rstr, SecurityToken,
};
use http::{header, HeaderValue, StatusCode};
use redeploy_core::store::StoreError;
use redeploy_core::{
    AuditOutcome, Device, DeviceId, Enrollment, EnrollmentId, EnrollmentToken, EnrollmentType,
    JoinType, NewAuditEvent, SecretHash,
};

use crate::state::AppState;

/// Content type of every enrollment answer (protocol.md §2.1).
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
/// Highest EnrollmentVersion we answer with; Windows 11 asks for 6.0 (protocol.md §2.2).
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
    // One message, never chunked (protocol.md fact 9).
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
        // Same host for both services (protocol.md §2.1).
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
/// negotiation rules are UNCONFIRMED, protocol.md §2.2). No version given → the samples' 3.0.
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

/// Who the credentials say the caller is.
enum Credential {
    /// OnPremise: a valid (not yet spent) enrollment token and the UsernameToken's user.
    Token {
        token: EnrollmentToken,
        username: String,
    },
    /// Federated: a verified JWT.
    Federated(crate::federated::FederatedIdentity),
}

impl Credential {
    fn method(&self) -> &'static str {
        match self {
            Credential::Token { .. } => "OnPremise",
            Credential::Federated(_) => "Federated",
        }
    }

    fn upn(&self) -> Option<String> {
        match self {
            Credential::Token { username, .. } => {
                Some(username.trim().to_string()).filter(|u| !u.is_empty())
            }
            Credential::Federated(id) => id.upn.clone(),
        }
    }
}

fn store_fault(err: &StoreError) -> Refusal {
    tracing::error!(%err, "store failure during enrollment");
    Refusal::new(
        FaultCode::InternalServiceFault,
        "the server could not reach its database",
    )
}

/// Checks the WS-Security credential without spending anything: an enrollment token that
/// exists, is not expired and has uses left (OnPremise), or a valid JWT (Federated).
async fn authenticate(state: &AppState, security: &SecurityToken) -> Result<Credential, Refusal> {
    match security {
        SecurityToken::UsernameToken { username, password } => {
            let hash = SecretHash::of_secret(password.trim());
            let tokens = state
                .store
                .list_enrollment_tokens()
                .await
                .map_err(|e| store_fault(&e))?;
            let token = tokens
                .into_iter()
                .find(|t| t.secret_hash == hash)
                .ok_or_else(|| {
                    Refusal::new(FaultCode::Authentication, "unknown enrollment token")
                })?;
            match token.refusal(state.clock.now()) {
                Some(redeploy_core::enrollment::TokenRefusal::Expired) => Err(Refusal::new(
                    FaultCode::Authorization,
                    "the enrollment token has expired",
                )),
                Some(redeploy_core::enrollment::TokenRefusal::Exhausted) => Err(Refusal::new(
                    FaultCode::Authorization,
                    "the enrollment token has no uses left",
                )),
                None => Ok(Credential::Token {
                    token,
                    username: username.clone(),
                }),
            }
        }
        SecurityToken::BinarySecurityToken { value, .. } => {
            let Some(federated) = &state.federated else {
                return Err(Refusal::new(
                    FaultCode::Authentication,
                    "federated enrollment is not configured on this server",
                ));
            };
            // The value is base64 of the compact JWS (ITPRO federated doc); accept the bare
            // JWS too, since some clients do not wrap it.
            let jwt = security
                .decoded_value()
                .and_then(|b| String::from_utf8(b).ok())
                .filter(|t| t.split('.').count() == 3)
                .unwrap_or_else(|| value.trim().to_string());
            federated
                .verify(&jwt)
                .map(Credential::Federated)
                .map_err(|e| Refusal::new(FaultCode::Authentication, e.to_string()))
        }
        SecurityToken::None => Err(Refusal::new(
            FaultCode::Authentication,
            "the request carries no credentials",
        )),
    }
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
        authenticate(&state, &request.security).await?;
        Ok(request)
    }
    .await;
    match result {
        Ok(request) => {
            state.metrics.record_enrollment("policy", "ok");
            let policy = PolicyResponse {
                validity_period_seconds: u64::from(state.settings.device_cert_validity_days)
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
    body: Bytes,
) -> Response {
    let peer = peer.map(|c| c.0 .0.ip().to_string());
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
            let audit = NewAuditEvent {
                at: state.clock.now(),
                actor: format!("device@{}", peer.as_deref().unwrap_or("unknown")),
                action: "device.enroll".into(),
                targets: Vec::new(),
                batch: None,
                outcome: AuditOutcome::Refused,
                details: format!("{}: {}", refusal.fault.code.qname(), refusal.fault.reason),
            };
            if let Err(err) = state.store.append_audit(audit).await {
                tracing::warn!(%err, "could not audit a refused enrollment");
            }
            fault_response(&refusal.fault, ns::ACTION_RSTRC, &message_id_of(&body))
        }
    }
}

/// The enrollment proper: credentials, CSR, token spend, certificate, store, provisioning doc.
async fn enroll_device(
    state: &AppState,
    request: &RstRequest,
    raw: &[u8],
) -> Result<String, Refusal> {
    let credential = authenticate(state, &request.security).await?;
    // Check the CSR before spending a token use on it.
    let csr = enroll::ca::verify_csr(&request.csr_der)
        .map_err(|e| Refusal::new(FaultCode::CertificateRequest, e.to_string()))?;
    let now = state.clock.now();
    if let Credential::Token { token, .. } = &credential {
        state
            .store
            .consume_enrollment_token(&token.secret_hash, now)
            .await
            .map_err(|e| match e {
                StoreError::NotFound(_) => {
                    Refusal::new(FaultCode::Authentication, "unknown enrollment token")
                }
                StoreError::TokenExpired => {
                    Refusal::new(FaultCode::Authorization, "the enrollment token has expired")
                }
                StoreError::TokenExhausted => Refusal::new(
                    FaultCode::Authorization,
                    "the enrollment token has no uses left",
                ),
                other => store_fault(&other),
            })?;
    }
    let context = &request.context;
    let enrollment_type = match context.enrollment_type() {
        Some(enroll::EnrollmentType::Device) => EnrollmentType::Device,
        _ => EnrollmentType::Full,
    };
    let hw_dev_id = context
        .hw_dev_id()
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(str::to_string);
    // Re-enrollment of known hardware keeps its identity, so the certificate must carry the
    // existing id (the store rewrites the enrollment to it as well).
    let known = match &hw_dev_id {
        Some(h) => state
            .store
            .device_by_hw_dev_id(h)
            .await
            .map_err(|e| store_fault(&e))?,
        None => None,
    };
    let mut device_id = known.as_ref().map_or_else(DeviceId::generate, |d| d.id);
    let upn = credential.upn();
    let mut attempt = 0;
    let (cert, outcome) = loop {
        attempt += 1;
        let cert = state
            .ca
            .issue_device_certificate(
                &csr,
                &device_id.to_string(),
                now,
                state.settings.device_cert_validity_days,
            )
            .map_err(|e| Refusal::new(e.fault_code(), e.to_string()))?;
        let thumbprint = cert.thumbprint.to_ascii_lowercase();
        let name = context
            .device_name()
            .map(str::to_string)
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| format!("device-{}", &device_id.to_string()[..8]));
        // For known hardware the store keeps everything but these enrollment fields
        // (EnrollmentStore::create_enrollment), e.g. the primary user and inventory.
        let mut device = Device::new(device_id, name, now);
        device.hw_dev_id = hw_dev_id.clone();
        device.mdm_device_id = context.device_id().map(str::to_string);
        device.os_version = context.os_version().map(str::to_string);
        device.domain_name = context
            .domain_name()
            .map(str::to_string)
            .filter(|d| !d.trim().is_empty());
        device.enrollment_type = Some(enrollment_type);
        device.join_type = JoinType::derive(Some(enrollment_type), device.domain_name.as_deref())
            .unwrap_or(JoinType::Unknown);
        device.cert_thumbprint = Some(thumbprint.clone());
        device.cert_not_after = Some(cert.not_after);
        let enrollment = Enrollment {
            id: EnrollmentId::generate(),
            device: device_id,
            enrollment_type,
            upn: upn.clone(),
            auth_method: credential.method().into(),
            context: context.items.clone(),
            raw_request: raw.to_vec(),
            cert_thumbprint: thumbprint,
            cert_serial: cert.serial.clone(),
            cert_not_after: cert.not_after,
            created_at: now,
            replaced_by: None,
        };
        let outcome = match state.store.create_enrollment(device, enrollment).await {
            Ok(outcome) => outcome,
            Err(StoreError::Conflict(why)) if attempt < 3 && hw_dev_id.is_some() => {
                // A concurrent first enrollment of this hardware inserted the device first
                // (HWDevID is unique): enroll again, as a re-enrollment of that device.
                tracing::info!(%why, "concurrent first enrollment of one HWDevID; retrying");
                if let Some(hw) = &hw_dev_id {
                    if let Some(d) = state
                        .store
                        .device_by_hw_dev_id(hw)
                        .await
                        .map_err(|e| store_fault(&e))?
                    {
                        device_id = d.id;
                    }
                }
                continue;
            }
            Err(e) => return Err(store_fault(&e)),
        };
        if outcome.device == device_id || attempt >= 3 {
            break (cert, outcome);
        }
        // Two first enrollments of the same hardware raced and the store kept the other
        // device id: enroll again under that id so the certificate names the device the
        // store knows (the new enrollment replaces the one just made).
        tracing::warn!(cert_device = %device_id, stored_device = %outcome.device, "concurrent first enrollment of one HWDevID; re-issuing");
        device_id = outcome.device;
    };
    let token_label = match &credential {
        Credential::Token { token, .. } => format!("enrollment token {:?}", token.label),
        Credential::Federated(id) => format!("federated {}", id.upn.as_deref().unwrap_or("?")),
    };
    let audit = NewAuditEvent {
        at: now,
        actor: format!("device:{}", outcome.device),
        action: "device.enroll".into(),
        targets: vec![outcome.device],
        batch: None,
        outcome: AuditOutcome::Success,
        details: format!(
            "enrollment {} ({}, {}) by {token_label}; {}; hwdevid {}",
            outcome.enrollment,
            enrollment_type,
            credential.method(),
            if outcome.device_was_known {
                "re-enrollment of a known device"
            } else {
                "new device"
            },
            hw_dev_id.as_deref().unwrap_or("none"),
        ),
    };
    if let Err(err) = state.store.append_audit(audit).await {
        tracing::warn!(%err, "could not audit an enrollment");
    }
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
    let mut provisioning = EnrollmentProvisioning::new(
        state.ca.cert_der().to_vec(),
        cert.der.clone(),
        store,
        state.settings.provider_id.clone(),
        "Redeploy",
        format!("{}{MANAGEMENT_PATH}", state.public_url),
    );
    // Both APPAUTH blocks must be present (ITPRO w7-application-csp.md); devices authenticate
    // with their client certificate, so the DIGEST secrets are random and never checked.
    provisioning.app_auth = vec![
        AppAuth::client_digest(random_secret(), random_secret()),
        AppAuth::server_digest(outcome.device.to_string(), random_secret()),
    ];
    provisioning.poll = state.settings.poll.clone();
    provisioning.dmclient_parms = vec![("EntDMID".into(), outcome.device.to_string())];
    if let Some(upn) = upn {
        provisioning.dmclient_parms.push(("UPN".into(), upn));
    }
    let rstr = Rstr {
        provisioning: provisioning.to_doc(),
    };
    Ok(enroll::write_rstr(&rstr, &request.message_id, now))
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
