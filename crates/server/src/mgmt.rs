//! Management endpoint `POST /ManagementServer/MDM.svc` (MS-MDM OMA-DM over HTTPS): identifies the
//! device from its client certificate, parses the SyncML with limits, and frames the bytes around
//! the session engine (`redeploy_core::session::handle`), which holds every rule.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Router};
use base64::Engine as _;
use http::{header, HeaderValue, StatusCode};
use redeploy_core::enrollment::renewal::{
    judge_check_in_certificate, CertificateUse, PresentedCertificate,
};
use redeploy_core::session::{check_in_uris, handle, SessionConfig, SessionError};
use redeploy_core::store::{CheckInView, StoreError};
use redeploy_core::{AuditOutcome, Device, DeviceId, NewAuditEvent};
use rustls_pki_types::CertificateDer;

use crate::problem::Problem;
use crate::service::trail::{self, MessageIds};
use crate::state::AppState;
use crate::tls::PeerCertificate;

/// The path Windows posts its OMA-DM messages to (the provisioning document's ADDR).
pub const MANAGEMENT_PATH: &str = "/ManagementServer/MDM.svc";

/// Accept the device certificate from a TLS-terminating reverse proxy: only from peers in
/// `trusted`, in header `header` (URL-encoded PEM as nginx's `$ssl_client_escaped_cert`, plain
/// PEM, or base64 DER). The proxy must verify the certificate against our CA itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertProxy {
    /// Header carrying the certificate, e.g. `X-Client-Cert`.
    pub header: String,
    /// Proxy addresses allowed to set it.
    pub trusted: Vec<IpAddr>,
}

/// The management routes (client certificate from the TLS handshake only).
pub fn routes() -> Router<AppState> {
    Router::new().route(MANAGEMENT_PATH, post(mdm))
}

/// The management routes, also accepting the certificate from a trusted proxy's header.
pub fn routes_with_proxy(proxy: ClientCertProxy) -> Router<AppState> {
    routes().layer(Extension(Arc::new(proxy)))
}

/// Why a request was refused before the engine ran.
struct Refusal {
    status: StatusCode,
    detail: String,
    device: Option<DeviceId>,
    outcome: &'static str,
}

impl Refusal {
    fn new(status: StatusCode, outcome: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            detail: detail.into(),
            device: None,
            outcome,
        }
    }

    fn device(mut self, id: DeviceId) -> Self {
        self.device = Some(id);
        self
    }
}

async fn mdm(State(state): State<AppState>, request: Request) -> Response {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let limit = state.settings.max_body_bytes;
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(_) => {
            return Problem::new(StatusCode::PAYLOAD_TOO_LARGE)
                .detail(format!("the message is larger than {limit} bytes"))
                .into_response()
        }
    };
    let now = state.clock.now();
    let cfg = session_config(&state);
    let outcome = match identify(&state, &parts, &cfg).await {
        Ok(view) => serve(&state, view, &bytes, now, &cfg).await,
        Err(r) => Err(r),
    };
    match outcome {
        Ok((response, outcome)) => {
            state.metrics.record_session(outcome, started.elapsed());
            response
        }
        Err(r) => {
            state.metrics.record_session(r.outcome, started.elapsed());
            if matches!(r.status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
                let event = NewAuditEvent::new(
                    now,
                    r.device
                        .map_or_else(|| "anonymous".to_string(), |d| format!("device:{d}")),
                    "mgmt.refused",
                )
                .targets(r.device)
                .outcome(AuditOutcome::Refused)
                .details(r.detail.clone());
                if let Err(e) = state.store.append_audit(event).await {
                    tracing::warn!(error = %e, "audit entry for a refused check-in was not written");
                }
            }
            Problem::new(r.status).detail(r.detail).into_response()
        }
    }
}

/// The session engine's settings.
fn session_config(state: &AppState) -> SessionConfig {
    SessionConfig {
        server_url: format!("{}{MANAGEMENT_PATH}", state.public_url),
        provider_id: state.settings.provider_id.clone(),
        reset_watch_interval: state
            .settings
            .reset_watch
            .try_into()
            .unwrap_or(time::Duration::MAX),
        push: state
            .settings
            .push
            .as_ref()
            .map(|p| redeploy_core::push::PushConfig {
                pfn: p.pfn.clone(),
                channel_hosts: p.channel_hosts.clone(),
            }),
        ..SessionConfig::default()
    }
}

/// The device behind the request's client certificate, if it may check in, read with what its
/// session needs first ([`CheckInView`]).
async fn identify(
    state: &AppState,
    parts: &http::request::Parts,
    cfg: &SessionConfig,
) -> Result<CheckInView, Refusal> {
    let der = client_certificate(parts).ok_or_else(|| {
        Refusal::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "a client certificate issued at enrollment is required",
        )
    })?;
    let unknown =
        |detail: String| Refusal::new(StatusCode::UNAUTHORIZED, "unauthenticated", detail);
    let facts = certificate_facts(der.as_ref())
        .map_err(|e| unknown(format!("unusable client certificate: {e}")))?;
    let id_text = &facts.device_id;
    let id = DeviceId::parse(id_text).map_err(|_| {
        unknown(format!(
            "the certificate names no device of ours ({id_text:?})"
        ))
    })?;
    let uris = check_in_uris(cfg);
    let uris = [uris[0].as_str(), uris[1].as_str()];
    let view = state
        .store
        .check_in_view(id, &uris)
        .await
        .map_err(|e| {
            Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_error",
                e.to_string(),
            )
        })?
        .ok_or_else(|| unknown(format!("unknown device {id}")).device(id))?;
    let device = &view.device;
    if device.unenrolled_at.is_some() {
        return Err(Refusal::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("device {id} is no longer enrolled"),
        )
        .device(id));
    }
    // Which certificate this is (current, or the old one of a renewal the PC has not used
    // yet) is the core's rule; the unseen renewals are almost always none.
    let presented = PresentedCertificate {
        thumbprint: facts.thumbprint.clone(),
        not_before: facts.not_before,
        not_after: facts.not_after,
        device: Some(id),
        not_ours: None,
    };
    let store_down = |e: redeploy_core::StoreError| {
        Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_error",
            e.to_string(),
        )
    };
    let unseen = if view.unseen_renewals {
        state.store.unseen_renewals(id).await.map_err(store_down)?
    } else {
        Vec::new()
    };
    let now = state.clock.now();
    match judge_check_in_certificate(device, &presented, &unseen, now) {
        Ok(CertificateUse::Current { retire_old: true }) => {
            // The renewed certificate is in use: from now on the old one is refused.
            state
                .store
                .retire_renewed_certificates(id, now)
                .await
                .map_err(store_down)?;
        }
        Ok(CertificateUse::Current { retire_old: false } | CertificateUse::Previous) => {}
        Err(why) => {
            return Err(Refusal::new(StatusCode::FORBIDDEN, "forbidden", why).device(id));
        }
    }
    Ok(view)
}

/// Parses and answers one message for an identified device.
async fn serve(
    state: &AppState,
    view: CheckInView,
    bytes: &[u8],
    now: time::OffsetDateTime,
    cfg: &SessionConfig,
) -> Result<(Response, &'static str), Refusal> {
    let device = &view.device;
    let parsed = syncml::parse_with_limits(bytes, &syncml::Limits::default());
    if parsed.is_err() {
        // Kept for support (what did this PC send?); nothing else is stored for it.
        trail::record(state, device.id, now, (MessageIds::default(), bytes), None);
    }
    let mut msg = parsed.map_err(|e| {
        Refusal::new(
            StatusCode::BAD_REQUEST,
            "bad_message",
            format!(
                "malformed SyncML at line {}, column {}: {}",
                e.line, e.column, e.message
            ),
        )
        .device(device.id)
    })?;
    let source = msg.hdr.source.as_ref().map(|s| s.as_str());
    if let Some(expected) = device.mdm_device_id.as_deref() {
        if source != Some(expected) {
            return Err(Refusal::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "SyncHdr Source {:?} is not this certificate's device ({expected})",
                    source.unwrap_or("")
                ),
            )
            .device(device.id));
        }
    }
    if let Some(federated) = &state.federated {
        drop_unverified_user_tokens(state, federated, device, &mut msg, now).await;
    }
    let reply = match handle(state.store.as_ref(), &view, &msg, now, cfg).await {
        Ok(reply) => reply,
        Err(SessionError::Sequence(why)) => {
            return Ok(
                refuse_out_of_order(state, device, &msg, bytes, now, cfg, why.to_string()).await,
            )
        }
        Err(SessionError::Store(StoreError::SequenceMoved)) => {
            let why = format!(
                "message {} of session {:?} was taken by a concurrent request",
                msg.hdr.msg_id, msg.hdr.session_id
            );
            return Ok(refuse_out_of_order(state, device, &msg, bytes, now, cfg, why).await);
        }
        Err(e) => {
            tracing::warn!(device = %device.id, error = %e, "session step failed; no reply sent");
            return Err(Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_error",
                "the server could not record this message; retry later",
            )
            .device(device.id));
        }
    };
    let sent = reply
        .body
        .commands
        .iter()
        .filter(|c| !matches!(c, syncml::Command::Status(_) | syncml::Command::Alert(_)))
        .count();
    if sent > 0 {
        state.metrics.record_command("sent", sent as u64);
        // Committed as sent, not yet on its way to the device.
        state.crash_point(crate::crash::AFTER_REPLY_COMMIT);
    }
    Ok((answer(state, device, &msg, bytes, now, &reply), "ok"))
}

/// Writes `reply` to `msg` once (the engine kept it under its byte budget with
/// `syncml::written_len`, which counts without writing), keeps both in the support trail and
/// answers with those bytes.
fn answer(
    state: &AppState,
    device: &Device,
    msg: &syncml::SyncMl,
    bytes: &[u8],
    now: time::OffsetDateTime,
    reply: &syncml::SyncMl,
) -> Response {
    let answer = syncml::write(reply);
    trail::record(
        state,
        device.id,
        now,
        (
            MessageIds {
                session_id: &msg.hdr.session_id,
                msg_id: &msg.hdr.msg_id,
            },
            bytes,
        ),
        Some((
            MessageIds {
                session_id: &reply.hdr.session_id,
                msg_id: &reply.hdr.msg_id,
            },
            answer.as_bytes(),
        )),
    );
    let mut response = Response::new(Body::from(answer));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(syncml::codes::CONTENT_TYPE),
    );
    response
}

/// With an Entra issuer configured, the user a check-in names through Alert 1224
/// `com.microsoft/MDM/AADUserToken` (docs/protocol.md §4.4) counts only when its token verifies
/// like an enrollment token (signature, issuer, audience, tenant, lifetime): an item that does
/// not is removed before the session engine sees the message, so a forged token can never make
/// someone the primary user. Each refusal is audited (`mgmt.user_token_refused`). Without an
/// issuer nothing can be verified and the token is taken as the PC states it (README, limits).
async fn drop_unverified_user_tokens(
    state: &AppState,
    federated: &crate::federated::FederatedAuth,
    device: &Device,
    msg: &mut syncml::SyncMl,
    now: time::OffsetDateTime,
) {
    for cmd in &mut msg.body.commands {
        let syncml::Command::Alert(alert) = cmd else {
            continue;
        };
        let mut kept = Vec::with_capacity(alert.items.len());
        for item in std::mem::take(&mut alert.items) {
            if item.meta_type() != Some(syncml::codes::ALERT_TYPE_AAD_USER_TOKEN) {
                kept.push(item);
                continue;
            }
            let token = item.data_str().unwrap_or_default().trim().to_owned();
            match federated.verify(&token).await {
                Ok(_) => kept.push(item),
                Err(why) => {
                    tracing::info!(device = %device.id, %why, "user token refused");
                    let event = NewAuditEvent::new(
                        now,
                        format!("device:{}", device.id),
                        "mgmt.user_token_refused",
                    )
                    .targets([device.id])
                    .outcome(AuditOutcome::Refused)
                    .details(format!("AADUserToken ignored: {why}"));
                    if let Err(e) = state.store.append_audit(event).await {
                        tracing::warn!(error = %e, "audit entry for a refused user token was not written");
                    }
                }
            }
        }
        alert.items = kept;
    }
}

/// The answer to a replayed or out-of-order message (`core::session::sequence`): a SyncML reply
/// whose SyncHdr Status is 400 and that carries nothing else, so the device ends the session and
/// starts a new one at its next poll; nothing of the message was taken. Audited and kept in the
/// support trail.
async fn refuse_out_of_order(
    state: &AppState,
    device: &Device,
    msg: &syncml::SyncMl,
    bytes: &[u8],
    now: time::OffsetDateTime,
    cfg: &SessionConfig,
    why: String,
) -> (Response, &'static str) {
    tracing::info!(device = %device.id, %why, "message refused: replay or out of order");
    let event = NewAuditEvent::new(now, format!("device:{}", device.id), "mgmt.out_of_order")
        .targets([device.id])
        .outcome(AuditOutcome::Refused)
        .details(why);
    if let Err(e) = state.store.append_audit(event).await {
        tracing::warn!(error = %e, "audit entry for an out-of-order message was not written");
    }
    let mut reply = match syncml::LocUri::parse(cfg.server_url.clone()) {
        Ok(source) => syncml::SyncMl::reply_to(msg, source, msg.hdr.msg_id.clone()),
        Err(_) => {
            return (
                Problem::new(StatusCode::BAD_REQUEST).into_response(),
                "out_of_order",
            )
        }
    };
    reply
        .body
        .commands
        .push(syncml::Command::Status(syncml::Status::for_header(
            msg.hdr.msg_id.clone(),
            syncml::StatusCode::BadRequest,
        )));
    reply.body.is_final = true;
    (
        answer(state, device, msg, bytes, now, &reply),
        "out_of_order",
    )
}

/// What a check-in reads from its client certificate: a function of the certificate's bytes
/// alone, so kept per certificate (by its SHA-256, bounded) for the whole process — parsing
/// it twice and hashing it with SHA-1 at every check-in was 3 % of the server's CPU
/// (docs/benchmarks.md, session 17). Only certificates that could be read are kept.
struct CertificateFacts {
    device_id: String,
    thumbprint: String,
    not_before: time::OffsetDateTime,
    not_after: time::OffsetDateTime,
}

static CERTIFICATE_FACTS: std::sync::LazyLock<crate::kept::Kept<Arc<CertificateFacts>>> =
    std::sync::LazyLock::new(Default::default);

fn certificate_facts(der: &[u8]) -> Result<Arc<CertificateFacts>, enroll::Error> {
    let key = crate::kept::key_of(der);
    if let Some(facts) = CERTIFICATE_FACTS.get(&key) {
        return Ok(facts);
    }
    let (not_before, not_after) = enroll::ca::certificate_validity(der)?;
    let facts = Arc::new(CertificateFacts {
        device_id: enroll::ca::device_id_from_certificate(der)?,
        thumbprint: enroll::ca::thumbprint(der),
        not_before,
        not_after,
    });
    CERTIFICATE_FACTS.insert(key, facts.clone());
    Ok(facts)
}

/// The DER client certificate: from the TLS handshake, else from a trusted proxy's header.
fn client_certificate(parts: &http::request::Parts) -> Option<CertificateDer<'static>> {
    if let Some(PeerCertificate(Some(cert))) = parts.extensions.get::<PeerCertificate>() {
        return Some(cert.clone());
    }
    let proxy = parts.extensions.get::<Arc<ClientCertProxy>>()?;
    let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>()?.0.ip();
    if !proxy.trusted.contains(&peer) {
        return None;
    }
    let value = parts.headers.get(proxy.header.as_str())?.to_str().ok()?;
    cert_from_header(value)
}

/// Reads a certificate forwarded by a proxy: URL-encoded or plain PEM, or base64 DER.
pub fn cert_from_header(value: &str) -> Option<CertificateDer<'static>> {
    let text = percent_encoding::percent_decode_str(value.trim())
        .decode_utf8()
        .ok()?;
    if text.contains("-----BEGIN") {
        return crate::tls::certs_from_pem(&text).ok()?.into_iter().next();
    }
    let der = base64::engine::general_purpose::STANDARD
        .decode(text.split_whitespace().collect::<String>())
        .ok()?;
    Some(CertificateDer::from(der))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forwarded_certificate_is_read_url_encoded_plain_or_as_base64_der() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["pc".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let pem = cert.pem();
        let escaped =
            percent_encoding::utf8_percent_encode(&pem, percent_encoding::NON_ALPHANUMERIC);
        let base64_der = base64::engine::general_purpose::STANDARD.encode(cert.der());
        for header in [escaped.to_string(), pem, base64_der] {
            assert_eq!(
                cert_from_header(&header).as_ref(),
                Some(cert.der()),
                "{header}"
            );
        }
        assert!(cert_from_header("not a certificate !").is_none());
        assert!(cert_from_header("%zz").is_none());
    }
}
