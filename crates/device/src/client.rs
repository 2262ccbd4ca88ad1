//! The PC's protocol client: MS-MDE2 enrollment (discovery GET, Discover, GetPolicies, RST) and
//! OMA-DM check-in sessions (MS-MDM), over any [`Transport`]. It answers the server from the CSP
//! tree ([`crate::csp::execute`]) and records what happened in the PC's event log.

use syncml::codes::{ALERT_TYPE_AAD_USER_TOKEN, ALERT_TYPE_LOGIN_STATUS, CONTENT_TYPE};
use syncml::{
    Alert, AlertCode, Command, Data, Item, ItemCommand, LocUri, Meta, Status, StatusCode, SyncBody,
    SyncHdr, SyncMl,
};
use time::OffsetDateTime;

use crate::csp::{self, CmdIdAllocator};
use crate::error::{DeviceError, Result};
use crate::fault::{self, Cut};
use crate::reset;
use crate::state::{
    CertRenewal, DeviceState, Edition, EnrollmentType, EventKind, FirstSyncStatus, JoinType,
    MdmEnrollment, PollSchedule,
};
use crate::transport::{Identity, Transport, MAX_RESPONSE_BYTES};

/// SOAP 1.2 content type of every enrollment POST (fixture 03 headers).
pub const SOAP_CONTENT_TYPE: &str = "application/soap+xml; charset=utf-8";
/// Discovery path on the enrollment host (MS-MDE2 3.1.5.1).
pub const DISCOVERY_PATH: &str = "/EnrollmentServer/Discovery.svc";
/// Events a PC keeps; older ones are dropped after each session so a long-running fleet's
/// state files stay small.
pub const MAX_EVENTS: usize = 1000;
/// A session that takes more messages than this is abandoned (a server loop, not Windows).
pub const MAX_MESSAGES_PER_SESSION: u32 = 64;

/// What the PC presents to the enrollment server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollOptions {
    /// The server's base URL (`https://host:port`); discovery is `{server}/EnrollmentServer/Discovery.svc`.
    pub server: String,
    /// The enrollment token, sent as the UsernameToken password (OnPremise auth policy).
    pub token: String,
    /// A token issuer standing in for Entra ID (the base URL of a `test-issuer`): when set and
    /// the server answers Discover with the Federated auth policy, an Entra-joined (or hybrid)
    /// PC enrolls with its device token and a registered PC with its user's token
    /// ([`crate::entra`]); the PC keeps the issuer for its users' tokens. `None`, or a PC
    /// without Entra: OnPremise with `token`.
    pub issuer: Option<String>,
}

/// What one enrollment did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollReport {
    pub provider_id: String,
    /// The OMA-DM URL (w7 ADDR) the PC now checks in to.
    pub management_url: String,
    pub thumbprint: String,
    pub enrollment_type: EnrollmentType,
    /// The AdditionalContext the RST carried, in order.
    pub additional_context: Vec<(String, String)>,
}

/// What one OMA-DM session did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionReport {
    pub session_id: u64,
    /// Messages the PC sent (package #1 included).
    pub messages_sent: u32,
    /// Server commands executed, with the status the PC answered: (command, target, code).
    pub executed: Vec<(String, String, u16)>,
}

/// Windows' numeric OS SKU for the AdditionalContext `OSEdition` (GetProductInfo values):
/// Pro 48, Enterprise 4, Education 121, SE (CloudEdition) 203.
pub fn os_edition_sku(edition: Edition) -> u32 {
    match edition {
        Edition::Pro => 48,
        Edition::Enterprise => 4,
        Edition::Education => 121,
        Edition::SE => 203,
    }
}

/// The enrollment type Windows asks for: `Device` when the PC is Entra joined (the MDM
/// certificate goes to `My/System`), `Full` otherwise (docs/protocol.md §2.4, fact 8).
pub fn enrollment_type_for(state: &DeviceState) -> EnrollmentType {
    match state.entra_join.kind {
        JoinType::Joined | JoinType::Hybrid => EnrollmentType::Device,
        JoinType::Registered | JoinType::None => EnrollmentType::Full,
    }
}

/// The user the PC enrolls as: the primary user, else the first Entra user, else the local
/// administrator.
pub fn enrolling_user(state: &DeviceState) -> String {
    state
        .primary_user
        .clone()
        .or_else(|| state.entra_users.first().map(|u| u.upn.clone()))
        .or_else(|| state.local_users.first().map(|u| u.name.clone()))
        .unwrap_or_default()
}

/// Two MAC addresses derived from the hardware id, so a PC always reports the same NICs.
pub fn mac_addresses(state: &DeviceState) -> Vec<String> {
    let hex = state.hardware.hw_dev_id.as_bytes();
    (0..2)
        .map(|nic| {
            let bytes: Vec<String> = (0..6)
                .map(|i| {
                    let at = (nic * 12 + i * 2) % hex.len().max(2);
                    let pair = hex.get(at..at + 2).unwrap_or(b"00");
                    let mut s = String::from_utf8_lossy(pair).to_uppercase();
                    if i == 0 {
                        // A locally administered unicast address.
                        let v = u8::from_str_radix(&s, 16).unwrap_or(0) & 0xFC | 0x02;
                        s = format!("{v:02X}");
                    }
                    s
                })
                .collect();
            bytes.join("-")
        })
        .collect()
}

/// The AdditionalContext a real PC puts in its RST (fixture 07, docs/protocol.md §2.4).
pub fn additional_context(state: &DeviceState) -> Vec<(String, String)> {
    let kind = enrollment_type_for(state);
    let user_driven = kind == EnrollmentType::Full;
    let mut items = vec![
        ("UXInitiated".to_string(), user_driven.to_string()),
        ("HWDevID".into(), state.hardware.hw_dev_id.clone()),
        ("Locale".into(), state.language.current.clone()),
        (
            "TargetedUserLoggedIn".into(),
            state.signed_in_user.is_some().to_string(),
        ),
        (
            "OSEdition".into(),
            os_edition_sku(state.os.edition).to_string(),
        ),
        ("DeviceName".into(), state.computer_name.clone()),
    ];
    for mac in mac_addresses(state) {
        items.push(("MAC".into(), mac));
    }
    items.extend([
        ("DeviceID".to_string(), state.dev_id.clone()),
        ("EnrollmentType".into(), kind.as_str().to_string()),
        ("DeviceType".into(), "CIMClient_Windows".into()),
        ("OSVersion".into(), state.os.version.clone()),
        ("ApplicationVersion".into(), state.os.version.clone()),
        ("NotInOobe".into(), (!state.desktop.at_oobe).to_string()),
        ("RequestVersion".into(), "5.0".into()),
    ]);
    if let Some(domain) = &state.ad_domain {
        items.push(("DomainName".into(), domain.clone()));
    }
    items
}

fn new_message_id() -> String {
    format!("urn:uuid:{}", uuid::Uuid::new_v4())
}

fn base_url(server: &str) -> &str {
    server.trim_end_matches('/')
}

fn fault_error(fault: &enroll::Fault) -> DeviceError {
    let message = match &fault.detail {
        Some(d) => format!(
            "{} ({}: {})",
            fault.reason,
            d.error_type.as_str(),
            d.message
        ),
        None => fault.reason.clone(),
    };
    DeviceError::EnrollmentFault {
        subcode: fault.code.qname().to_string(),
        message,
    }
}

async fn soap(
    transport: &dyn Transport,
    step: &'static str,
    url: &str,
    body: String,
) -> Result<enroll::EnrollResponse> {
    soap_as(transport, step, url, body, None).await
}

/// [`soap`], presenting `identity` in the TLS handshake (a renewal: MS-MDE2 3.4.4.1.1.1).
async fn soap_as(
    transport: &dyn Transport,
    step: &'static str,
    url: &str,
    body: String,
    identity: Option<&Identity>,
) -> Result<enroll::EnrollResponse> {
    let resp = transport
        .post(url, SOAP_CONTENT_TYPE, body.into_bytes(), identity)
        .await?;
    // A fault comes with HTTP 500 (SOAP 1.2 binding); try to read it whatever the status.
    match enroll::parse_response(&resp.body) {
        Ok(enroll::EnrollResponse::Fault { fault, .. }) => Err(fault_error(&fault)),
        Ok(other) if resp.status == 200 => Ok(other),
        _ if matches!(resp.status, 401 | 403) => Err(DeviceError::Unauthorized {
            step,
            code: resp.status,
        }),
        _ if resp.status != 200 => Err(DeviceError::Http {
            step,
            status: resp.status,
        }),
        Ok(other) => Ok(other),
        Err(e) => Err(DeviceError::Protocol {
            step,
            message: e.to_string(),
        }),
    }
}

/// PEM text: base64 in lines of 64 characters (RFC 7468).
pub(crate) fn der_to_pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn poll_from(p: &enroll::provisioning::PollSchedule) -> PollSchedule {
    let d = PollSchedule::default();
    PollSchedule {
        interval_for_first_set_of_retries: p
            .interval_for_first_set_of_retries
            .unwrap_or(d.interval_for_first_set_of_retries),
        number_of_first_retries: p
            .number_of_first_retries
            .unwrap_or(d.number_of_first_retries),
        interval_for_second_set_of_retries: p
            .interval_for_second_set_of_retries
            .unwrap_or(d.interval_for_second_set_of_retries),
        number_of_second_retries: p
            .number_of_second_retries
            .unwrap_or(d.number_of_second_retries),
        interval_for_remaining_scheduled_retries: p
            .interval_for_remaining_scheduled_retries
            .unwrap_or(d.interval_for_remaining_scheduled_retries),
        number_of_remaining_scheduled_retries: p
            .number_of_remaining_scheduled_retries
            .unwrap_or(d.number_of_remaining_scheduled_retries),
        poll_on_login: p.poll_on_login.unwrap_or(d.poll_on_login),
        all_users_poll_on_first_login: p
            .all_users_poll_on_first_login
            .unwrap_or(d.all_users_poll_on_first_login),
    }
}

/// Enrolls the PC as Windows does (MS-MDE2): discovery GET (expects 200), Discover, GetPolicies
/// (when the server names a policy service), then RST with a fresh key and PKCS#10 request.
/// On success the provisioning document is applied ([`DeviceState::record_enrollment`]) and the
/// first check-in is due at once. A SOAP fault becomes [`DeviceError::EnrollmentFault`].
/// Failures are also written to the PC's event log.
pub async fn enroll(
    transport: &dyn Transport,
    state: &mut DeviceState,
    options: &EnrollOptions,
    now: OffsetDateTime,
) -> Result<EnrollReport> {
    let result = enroll_inner(transport, state, options, now).await;
    if let Err(e) = &result {
        state.log(now, EventKind::EnrollmentFailed, e.to_string());
    }
    result
}

async fn enroll_inner(
    transport: &dyn Transport,
    state: &mut DeviceState,
    options: &EnrollOptions,
    now: OffsetDateTime,
) -> Result<EnrollReport> {
    let discovery_url = format!("{}{DISCOVERY_PATH}", base_url(&options.server));
    let probe = transport.get(&discovery_url).await?;
    if probe.status != 200 {
        return Err(DeviceError::Http {
            step: "discovery GET",
            status: probe.status,
        });
    }
    let user = enrolling_user(state);
    let edition = os_edition_sku(state.os.edition).to_string();
    let discover = enroll::DiscoverRequest {
        message_id: new_message_id(),
        to: Some(discovery_url.clone()),
        email_address: user.clone(),
        request_version: Some("5.0".into()),
        device_type: Some("CIMClient_Windows".into()),
        application_version: Some(state.os.version.clone()),
        os_edition: Some(edition),
        os_version: Some(state.os.version.clone()),
        auth_policies: vec![enroll::AuthPolicy::OnPremise, enroll::AuthPolicy::Federated],
    };
    let discovered = match soap(
        transport,
        "Discover",
        &discovery_url,
        enroll::write_discover_request(&discover),
    )
    .await?
    {
        enroll::EnrollResponse::Discover { response, .. } => response,
        other => {
            return Err(DeviceError::Protocol {
                step: "Discover",
                message: format!("expected a DiscoverResponse, got {other:?}"),
            })
        }
    };
    let security = match (&options.issuer, discovered.auth_policy) {
        (Some(issuer), enroll::AuthPolicy::Federated)
            if state.entra_join.kind != JoinType::None =>
        {
            let minted = match enrollment_type_for(state) {
                EnrollmentType::Device => crate::entra::device_token(issuer, state, now).await?,
                EnrollmentType::Full => crate::entra::user_token(issuer, state, &user, now)
                    .await?
                    .ok_or_else(|| DeviceError::Protocol {
                        step: "Entra token",
                        message: format!("{user:?} is not an Entra user of this PC"),
                    })?,
            };
            // The PC is joined to the tenant the issuer stands for.
            state.entra_join.tenant_id = Some(minted.tenant_id);
            state.entra_join.token_issuer = Some(issuer.clone());
            // Base64 of the compact JWS in a BinarySecurityToken (ITPRO federated enrollment
            // doc; docs/protocol.md §2.7).
            use base64::Engine as _;
            enroll::SecurityToken::BinarySecurityToken {
                value_type: enroll::ns::TOKEN_TYPE_JWT.to_string(),
                encoding_type: enroll::ns::BASE64_BINARY.to_string(),
                value: base64::engine::general_purpose::STANDARD.encode(minted.access_token),
            }
        }
        _ => enroll::SecurityToken::UsernameToken {
            username: user.clone(),
            password: options.token.clone(),
        },
    };
    if let Some(policy_url) = &discovered.enrollment_policy_service_url {
        let request = enroll::GetPoliciesRequest {
            message_id: new_message_id(),
            to: Some(policy_url.clone()),
            security: security.clone(),
        };
        match soap(
            transport,
            "GetPolicies",
            policy_url,
            enroll::write_get_policies_request(&request),
        )
        .await?
        {
            enroll::EnrollResponse::GetPolicies { .. } => {}
            other => {
                return Err(DeviceError::Protocol {
                    step: "GetPolicies",
                    message: format!("expected a GetPoliciesResponse, got {other:?}"),
                })
            }
        }
    }
    let (key_pem, csr_der) = enroll::ca::new_device_key_and_csr(&state.dev_id)?;
    let context = additional_context(state);
    let rst = enroll::RstRequest {
        message_id: new_message_id(),
        to: Some(discovered.enrollment_service_url.clone()),
        security,
        token_type: enroll::ns::TOKEN_TYPE_DEVICE_ENROLLMENT.to_string(),
        request_type: enroll::ns::REQUEST_TYPE_ISSUE.to_string(),
        csr_value_type: enroll::ns::VALUE_TYPE_PKCS10.to_string(),
        csr_der,
        context: enroll::AdditionalContext::new(context.clone()),
    };
    let rstr = match soap(
        transport,
        "RequestSecurityToken",
        &discovered.enrollment_service_url,
        enroll::write_rst_request(&rst),
    )
    .await?
    {
        enroll::EnrollResponse::Rstr { response, .. } => response,
        other => {
            return Err(DeviceError::Protocol {
                step: "RequestSecurityToken",
                message: format!("expected a RequestSecurityTokenResponse, got {other:?}"),
            })
        }
    };
    let prov = rstr.provisioning.enrollment()?;
    let enrollment_type = enrollment_type_for(state);
    let thumbprint = enroll::ca::thumbprint(&prov.client_certificate_der);
    let parm = |name: &str| {
        prov.dmclient_parms
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let enrollment = MdmEnrollment {
        provider_id: prov.provider_id.clone(),
        server_url: prov.addr.clone(),
        client_cert_pem: der_to_pem("CERTIFICATE", &prov.client_certificate_der),
        client_key_pem: key_pem,
        thumbprint: thumbprint.clone(),
        enrollment_type,
        upn: parm("UPN").or_else(|| Some(user.clone()).filter(|u| !u.is_empty())),
        ent_dm_id: parm("EntDMID"),
        poll: poll_from(&prov.poll),
        first_sync: FirstSyncStatus::default(),
        enrolled: true,
        enrolled_at: now,
        root_cert_pem: der_to_pem("CERTIFICATE", &prov.root_certificate_der),
        renewal: match &prov.renewal {
            Some(r) => Some(CertRenewal {
                server_url: discovered.enrollment_service_url.clone(),
                robo_support: r.robo_support,
                renew_period_days: r.renew_period_days,
                retry_interval_days: r.retry_interval_days,
                cert_not_after: enroll::ca::certificate_validity(&prov.client_certificate_der)?.1,
                last_failed_attempt: None,
                renewals: 0,
            }),
            None => None,
        },
    };
    state.record_enrollment(enrollment, now);
    // Windows starts the first OMA-DM session right after enrollment, then follows the Poll
    // schedule (ITPRO dmclient-csp.md).
    state.dm_client.scheduled_polls = 0;
    state.dm_client.sync_now = true;
    state.dm_client.next_poll_at = crate::schedule::next_poll_after(state, now);
    Ok(EnrollReport {
        provider_id: prov.provider_id,
        management_url: prov.addr,
        thumbprint,
        enrollment_type,
        additional_context: context,
    })
}

/// What one certificate renewal did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenewReport {
    pub old_thumbprint: String,
    pub new_thumbprint: String,
    pub not_after: OffsetDateTime,
}

/// Whether the PC renews its MDM certificate at `now` (ITPRO certificate-renewal-windows-mdm.md,
/// certificatestore-csp.md): renewal provisioned with ROBOSupport, within RenewPeriod days of
/// the certificate's expiry, not expired (Windows does not renew an expired certificate
/// automatically), and RetryInterval days after a failed attempt.
pub fn renewal_due(state: &DeviceState, now: OffsetDateTime) -> bool {
    let Some(r) = state
        .mdm_enrollment
        .as_ref()
        .filter(|e| e.enrolled)
        .and_then(|e| e.renewal.as_ref())
    else {
        return false;
    };
    let period = time::Duration::days(i64::from(r.renew_period_days));
    let retry = time::Duration::days(i64::from(r.retry_interval_days.max(1)));
    r.robo_support
        && state.online
        && now < r.cert_not_after
        && now >= r.cert_not_after - period
        && r.last_failed_attempt.is_none_or(|at| now >= at + retry)
}

/// Renews the MDM certificate as Windows' automatic renewal (ROBO) does: a new key and PKCS#10,
/// wrapped in a PKCS#7 signed with the current certificate's key, sent as a RequestSecurityToken
/// of RequestType Renew over client TLS with the current certificate and without a security
/// token (MS-MDE2 3.4.4.1.1.1). On success the new certificate and key replace the old ones
/// for every later check-in; a failure is logged and retried after RetryInterval days.
pub async fn renew_certificate(
    transport: &dyn Transport,
    state: &mut DeviceState,
    now: OffsetDateTime,
) -> Result<RenewReport> {
    let result = renew_inner(transport, state).await;
    match &result {
        Ok(report) => state.log(
            now,
            EventKind::CertificateRenewed,
            format!(
                "{} -> {} (expires {})",
                report.old_thumbprint, report.new_thumbprint, report.not_after
            ),
        ),
        Err(e) => {
            if let Some(r) = state
                .mdm_enrollment
                .as_mut()
                .and_then(|m| m.renewal.as_mut())
            {
                r.last_failed_attempt = Some(now);
            }
            state.log(now, EventKind::CertificateRenewalFailed, e.to_string());
        }
    }
    result
}

async fn renew_inner(transport: &dyn Transport, state: &mut DeviceState) -> Result<RenewReport> {
    let Some(current) = state.mdm_enrollment.clone().filter(|e| e.enrolled) else {
        return Err(DeviceError::NotEnrolled);
    };
    let Some(renewal) = current.renewal.clone() else {
        return Err(DeviceError::Protocol {
            step: "renewal",
            message: "the enrollment did not provision certificate renewal".into(),
        });
    };
    let cert_der =
        enroll::decode_base64(&current.client_cert_pem).map_err(|e| DeviceError::Protocol {
            step: "renewal",
            message: format!("the MDM certificate is not PEM: {e}"),
        })?;
    let (key_pem, csr_der) = enroll::ca::new_device_key_and_csr(&state.dev_id)?;
    let pkcs7 = enroll::pkcs7::sign_renewal(&csr_der, &cert_der, &current.client_key_pem)?;
    let rst = enroll::RstRequest {
        message_id: new_message_id(),
        to: Some(renewal.server_url.clone()),
        security: enroll::SecurityToken::None,
        token_type: enroll::ns::TOKEN_TYPE_DEVICE_ENROLLMENT.to_string(),
        request_type: enroll::ns::REQUEST_TYPE_RENEW.to_string(),
        csr_value_type: enroll::ns::VALUE_TYPE_PKCS7.to_string(),
        csr_der: pkcs7,
        context: enroll::AdditionalContext::new(additional_context(state)),
    };
    let identity = Identity {
        cert_pem: current.client_cert_pem.clone(),
        key_pem: current.client_key_pem.clone(),
    };
    let rstr = match soap_as(
        transport,
        "renewal",
        &renewal.server_url,
        enroll::write_rst_request(&rst),
        Some(&identity),
    )
    .await?
    {
        enroll::EnrollResponse::Rstr { response, .. } => response,
        other => {
            return Err(DeviceError::Protocol {
                step: "renewal",
                message: format!("expected a RequestSecurityTokenResponse, got {other:?}"),
            })
        }
    };
    let (_, new_der) = rstr.provisioning.client_certificate()?;
    let not_after = enroll::ca::certificate_validity(&new_der)?.1;
    let new_thumbprint = enroll::ca::thumbprint(&new_der);
    let mut enrollment = current;
    let old_thumbprint = std::mem::replace(&mut enrollment.thumbprint, new_thumbprint.clone());
    enrollment.client_cert_pem = der_to_pem("CERTIFICATE", &new_der);
    enrollment.client_key_pem = key_pem;
    enrollment.renewal = Some(CertRenewal {
        cert_not_after: not_after,
        last_failed_attempt: None,
        renewals: renewal.renewals.saturating_add(1),
        ..renewal
    });
    for c in &mut state.certificates {
        if c.kind == crate::state::CertificateKind::Mdm {
            c.thumbprint = new_thumbprint.clone();
        }
    }
    state.mdm_enrollment = Some(enrollment);
    Ok(RenewReport {
        old_thumbprint,
        new_thumbprint,
        not_after,
    })
}

/// The URL a check-in posts to: ADDR with `mode=Machine&Platform=WoA` (fixture 09 headers use
/// `mode=Maintenance` for a user-initiated sync; scheduled device sessions use `Machine`).
pub fn check_in_url(addr: &str) -> String {
    let sep = if addr.contains('?') { '&' } else { '?' };
    format!("{addr}{sep}mode=Machine&Platform=WoA")
}

fn header(state: &DeviceState, addr: &str, session_id: u64, msg_id: u32) -> SyncHdr {
    SyncHdr {
        ver_dtd: "1.2".into(),
        ver_proto: "DM/1.2".into(),
        session_id: session_id.to_string(),
        msg_id: msg_id.to_string(),
        target: LocUri::parse(addr).ok(),
        source: LocUri::parse(state.dev_id.clone()).ok(),
        ..SyncHdr::default()
    }
}

fn alert_1224(cmd_id: String, kind: &str, data: &str) -> Command {
    Command::Alert(Alert {
        cmd_id,
        no_resp: false,
        code: AlertCode::ClientEvent,
        items: vec![Item {
            meta: Some(Meta {
                r#type: Some(kind.to_string()),
                ..Meta::default()
            }),
            data: Some(Data::Text(data.to_string())),
            ..Item::default()
        }],
    })
}

/// Package #1 of a session (fixtures 09 and 11, mattrax basic-1): Alert 1201, Alert 1224
/// LoginStatus, Alert 1224 AADUserToken when an Entra user is signed in, Replace of
/// ./DevInfo/{DevId,Man,Mod,DmV,Lang} and DMClient/HWDevID, Final. CmdIDs start at 2 as in
/// fixture 09.
pub fn package_one(
    state: &DeviceState,
    addr: &str,
    session_id: u64,
    now: OffsetDateTime,
) -> SyncMl {
    package_one_with(state, addr, session_id, now, &AadUserToken::Unsigned)
}

/// The AADUserToken a session's package #1 carries for a signed-in Entra user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AadUserToken {
    /// The emulator's unsigned stand-in (shaped like a JWT, `alg: none`): the PC has no token
    /// issuer.
    Unsigned,
    /// A token from the PC's issuer ([`crate::entra::user_token`]).
    Signed(String),
    /// None: the issuer could not be reached (LoginStatus still says `user`).
    Omitted,
}

/// [`package_one`] with the signed-in user's token chosen by the caller.
pub fn package_one_with(
    state: &DeviceState,
    addr: &str,
    session_id: u64,
    now: OffsetDateTime,
    aad: &AadUserToken,
) -> SyncMl {
    let mut ids = CmdIdAllocator::new(2);
    let mut commands = vec![Command::Alert(Alert {
        cmd_id: ids.next_id(),
        no_resp: false,
        code: AlertCode::ClientInitiatedMgmt,
        items: Vec::new(),
    })];
    let login = if state.signed_in_user.is_some() {
        "user"
    } else {
        "none"
    };
    commands.push(alert_1224(ids.next_id(), ALERT_TYPE_LOGIN_STATUS, login));
    let entra_user = state
        .signed_in_user
        .as_ref()
        .and_then(|user| state.entra_users.iter().find(|u| &u.upn == user));
    let token = match (entra_user, aad) {
        (Some(_), AadUserToken::Signed(token)) => Some(token.clone()),
        (Some(entra), AadUserToken::Unsigned) => {
            // Not a real Entra token: the PC has no token issuer. Shaped like a JWT.
            use base64::Engine;
            let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            Some(format!(
                "{}.{}.{}",
                b64.encode(r#"{"typ":"JWT","alg":"none"}"#),
                b64.encode(format!(
                    r#"{{"upn":"{}","oid":"{}","deviceid":"{}"}}"#,
                    entra.upn,
                    entra.object_id,
                    state.entra_join.device_id.as_deref().unwrap_or_default()
                )),
                b64.encode("emulator")
            ))
        }
        _ => None,
    };
    if let Some(token) = token {
        commands.push(alert_1224(ids.next_id(), ALERT_TYPE_AAD_USER_TOKEN, &token));
    }
    let mut items = Vec::new();
    for uri in [
        "./DevInfo/DevId",
        "./DevInfo/Man",
        "./DevInfo/Mod",
        "./DevInfo/DmV",
        "./DevInfo/Lang",
        "./Vendor/MSFT/DMClient/HWDevID",
    ] {
        if let Some((_, value)) = csp::get_value(state, uri, now) {
            items.push(Item {
                source: LocUri::parse(uri).ok(),
                data: Some(Data::Text(value)),
                ..Item::default()
            });
        }
    }
    commands.push(Command::Replace(ItemCommand {
        cmd_id: ids.next_id(),
        no_resp: false,
        meta: None,
        items,
    }));
    SyncMl {
        hdr: header(state, addr, session_id, 1),
        body: SyncBody {
            commands,
            is_final: true,
        },
    }
}

/// What the PC does with one server message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Send this message and read the server's next one.
    Send(Box<SyncMl>),
    /// The session is over.
    Done,
}

/// The sans-IO heart of a session: executes the server message's commands against the PC and
/// builds the answer (MS-MDM 3.1.5.2.1): a Status for its SyncHdr (CmdRef 0), a Status (and
/// Results for Gets) per command, Alert 1222 when the server's message had no Final.
/// `Done` when the server sent nothing but Status/Results and its message was final.
/// Executed commands are appended to `executed`.
pub fn answer(
    state: &mut DeviceState,
    server: &SyncMl,
    addr: &str,
    session_id: u64,
    msg_id: u32,
    now: OffsetDateTime,
    executed: &mut Vec<(String, String, u16)>,
) -> Result<Reply> {
    for cmd in &server.body.commands {
        if let Command::Status(s) = cmd {
            if s.cmd_ref == "0" && matches!(s.code.as_u16(), 401 | 407) {
                return Err(DeviceError::Unauthorized {
                    step: "check-in",
                    code: s.code.as_u16(),
                });
            }
        }
    }
    let server_msg = server.hdr.msg_id.clone();
    let mut ids = CmdIdAllocator::new(1);
    let mut out = vec![Command::Status(Status {
        cmd_id: ids.next_id(),
        msg_ref: server_msg.clone(),
        cmd_ref: "0".into(),
        cmd: "SyncHdr".into(),
        target_refs: server
            .hdr
            .target
            .iter()
            .map(|t| t.as_str().to_string())
            .collect(),
        source_refs: server
            .hdr
            .source
            .iter()
            .map(|t| t.as_str().to_string())
            .collect(),
        chal: None,
        code: StatusCode::Ok,
        items: Vec::new(),
    })];
    let mut has_commands = false;
    for cmd in &server.body.commands {
        match cmd {
            Command::Status(_) | Command::Results(_) => continue,
            Command::Alert(a) if a.code == AlertCode::SessionAbort => return Ok(Reply::Done),
            _ => {}
        }
        has_commands = true;
        let answers = csp::execute(state, cmd, &server_msg, &mut ids, now);
        for a in &answers {
            if let Command::Status(s) = a {
                let target =
                    s.target_refs.first().cloned().unwrap_or_else(|| {
                        first_target(cmd).map(str::to_string).unwrap_or_default()
                    });
                let code = s.code.as_u16();
                state.log(
                    now,
                    EventKind::CommandExecuted,
                    format!("{} {} -> {}", s.cmd, target, code),
                );
                executed.push((s.cmd.clone(), target, code));
            }
        }
        out.extend(answers);
    }
    if !server.body.is_final {
        // MS-MDM 3.1.5.2.1 / OMA-DM RepPro §8.3: ask for the rest of the server's package.
        out.push(Command::Alert(Alert {
            cmd_id: ids.next_id(),
            no_resp: false,
            code: AlertCode::NextMessage,
            items: Vec::new(),
        }));
    } else if !has_commands {
        return Ok(Reply::Done);
    }
    Ok(Reply::Send(Box::new(SyncMl {
        hdr: header(state, addr, session_id, msg_id),
        body: SyncBody {
            commands: out,
            is_final: true,
        },
    })))
}

fn first_target(cmd: &Command) -> Option<&str> {
    match cmd {
        Command::Add(c)
        | Command::Replace(c)
        | Command::Delete(c)
        | Command::Get(c)
        | Command::Exec(c) => c
            .items
            .first()
            .and_then(|i| i.target.as_ref())
            .map(LocUri::as_str),
        _ => None,
    }
}

/// One OMA-DM session ("check-in"): package #1, then answer the server until it has nothing
/// more to say. Uses mutual TLS with the PC's MDM certificate. The session is logged (started,
/// each command with its status, ended or failed); after a successful one the post-reset first
/// sync is completed ([`reset::mdm_sync_completed`]). A PC that is not enrolled (e.g. after a
/// wipe) or is offline sends nothing.
pub async fn check_in(
    transport: &dyn Transport,
    state: &mut DeviceState,
    now: OffsetDateTime,
) -> Result<SessionReport> {
    if !state.is_enrolled() {
        return Err(DeviceError::NotEnrolled);
    }
    if !state.online {
        return Err(DeviceError::Offline);
    }
    state.dm_client.last_session_id += 1;
    let session_id = state.dm_client.last_session_id;
    state.log(
        now,
        EventKind::SessionStarted,
        format!("OMA-DM session {session_id}"),
    );
    let mut report = SessionReport {
        session_id,
        ..SessionReport::default()
    };
    let result = session(transport, state, now, &mut report).await;
    let result = finish_session(state, session_id, now, &report, result);
    if state.events.len() > MAX_EVENTS {
        let excess = state.events.len() - MAX_EVENTS;
        state.events.drain(..excess);
    }
    result.map(|()| report)
}

fn finish_session(
    state: &mut DeviceState,
    session_id: u64,
    now: OffsetDateTime,
    report: &SessionReport,
    result: Result<()>,
) -> Result<()> {
    match result {
        Ok(()) => {
            state.dm_client.sessions_ok += 1;
            state.log(
                now,
                EventKind::SessionEnded,
                format!(
                    "OMA-DM session {session_id}: {} messages sent, {} commands executed",
                    report.messages_sent,
                    report.executed.len()
                ),
            );
            reset::mdm_sync_completed(state, now);
            Ok(())
        }
        Err(e) => {
            state.dm_client.sessions_failed += 1;
            state.log(
                now,
                EventKind::SessionFailed,
                format!("OMA-DM session {session_id}: {e}"),
            );
            Err(e)
        }
    }
}

/// The signed-in Entra user's token for this session: from the PC's issuer when it has one
/// (a failure is logged and the token left out), else the unsigned stand-in.
async fn session_user_token(state: &mut DeviceState, now: OffsetDateTime) -> AadUserToken {
    let (Some(issuer), Some(user)) = (
        state.entra_join.token_issuer.clone(),
        state.signed_in_user.clone(),
    ) else {
        return AadUserToken::Unsigned;
    };
    match crate::entra::user_token(&issuer, state, &user, now).await {
        Ok(Some(minted)) => AadUserToken::Signed(minted.access_token),
        // A local account: no Entra token to send.
        Ok(None) => AadUserToken::Omitted,
        Err(e) => {
            state.log(
                now,
                EventKind::SessionFailed,
                format!("no Entra token for {user}: {e}"),
            );
            AadUserToken::Omitted
        }
    }
}

async fn session(
    transport: &dyn Transport,
    state: &mut DeviceState,
    now: OffsetDateTime,
    report: &mut SessionReport,
) -> Result<()> {
    let (addr, identity) = match &state.mdm_enrollment {
        Some(e) => (
            e.server_url.clone(),
            Identity {
                cert_pem: e.client_cert_pem.clone(),
                key_pem: e.client_key_pem.clone(),
            },
        ),
        None => return Err(DeviceError::NotEnrolled),
    };
    let url = check_in_url(&addr);
    let session_id = report.session_id;
    let aad = session_user_token(state, now).await;
    let mut outgoing = package_one_with(state, &addr, session_id, now, &aad);
    let mut msg_id = 1;
    loop {
        let body = syncml::write(&outgoing).into_bytes();
        // An injected network cut (--drop-replies) ends the session like a dropped connection;
        // the PC tries again at its next poll, as after any failed session.
        let cut = fault::exchange_cut(&state.faults, session_id, report.messages_sent + 1);
        if let Some(cut @ Cut::RequestLost) = cut {
            return Err(DeviceError::LinkCut { url, cut });
        }
        report.messages_sent += 1;
        let resp = transport
            .post(&url, CONTENT_TYPE, body, Some(&identity))
            .await?;
        if let Some(cut @ Cut::ReplyLost) = cut {
            // The server processed the message and answered; the PC never reads the answer.
            return Err(DeviceError::LinkCut { url, cut });
        }
        match resp.status {
            200 => {}
            401 | 403 => {
                return Err(DeviceError::Unauthorized {
                    step: "check-in",
                    code: resp.status,
                })
            }
            status => {
                return Err(DeviceError::Http {
                    step: "check-in",
                    status,
                })
            }
        }
        if resp.body.len() > MAX_RESPONSE_BYTES {
            return Err(DeviceError::TooLarge {
                size: resp.body.len(),
                limit: MAX_RESPONSE_BYTES,
            });
        }
        if resp.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        let server = syncml::parse(&resp.body).map_err(|e| DeviceError::Protocol {
            step: "check-in",
            message: format!("server message: {e}"),
        })?;
        msg_id += 1;
        match answer(
            state,
            &server,
            &addr,
            session_id,
            msg_id,
            now,
            &mut report.executed,
        )? {
            Reply::Done => return Ok(()),
            Reply::Send(next) => outgoing = *next,
        }
        if report.messages_sent >= MAX_MESSAGES_PER_SESSION {
            return Err(DeviceError::Protocol {
                step: "check-in",
                message: format!(
                    "the server kept the session going past {MAX_MESSAGES_PER_SESSION} messages"
                ),
            });
        }
    }
}
