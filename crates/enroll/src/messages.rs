//! Typed enrollment messages: the three requests a device sends, the server's answers, faults.

use time::OffsetDateTime;

use crate::ns;
use crate::provisioning::ProvisioningDoc;

/// Any enrollment SOAP request a device sends (docs/protocol.md §2.2–2.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnrollMessage {
    Discover(DiscoverRequest),
    GetPolicies(GetPoliciesRequest),
    RequestSecurityToken(RstRequest),
}

impl EnrollMessage {
    /// The WS-Addressing MessageID, which the answer's RelatesTo must echo.
    pub fn message_id(&self) -> &str {
        match self {
            EnrollMessage::Discover(m) => &m.message_id,
            EnrollMessage::GetPolicies(m) => &m.message_id,
            EnrollMessage::RequestSecurityToken(m) => &m.message_id,
        }
    }
}

/// How the client may authenticate (MS-MDE2 AuthPolicy).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AuthPolicy {
    /// Credentials as a WS-Security UsernameToken.
    OnPremise,
    /// A token from the AuthenticationServiceUrl (web authentication broker) or Entra.
    Federated,
    /// Client-certificate authentication.
    Certificate,
    Other(String),
}

impl AuthPolicy {
    pub fn parse(s: &str) -> Self {
        match s.trim() {
            "OnPremise" => AuthPolicy::OnPremise,
            "Federated" => AuthPolicy::Federated,
            "Certificate" => AuthPolicy::Certificate,
            other => AuthPolicy::Other(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            AuthPolicy::OnPremise => "OnPremise",
            AuthPolicy::Federated => "Federated",
            AuthPolicy::Certificate => "Certificate",
            AuthPolicy::Other(s) => s,
        }
    }
}

/// `Discover` request body (docs/protocol.md §2.2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DiscoverRequest {
    pub message_id: String,
    pub to: Option<String>,
    /// An email address, or `domain\user`; empty in the Entra-join path.
    pub email_address: String,
    pub request_version: Option<String>,
    pub device_type: Option<String>,
    pub application_version: Option<String>,
    pub os_edition: Option<String>,
    pub os_version: Option<String>,
    pub auth_policies: Vec<AuthPolicy>,
}

/// The credential a device puts in the `wsse:Security` header (docs/protocol.md §2.3–2.4).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SecurityToken {
    #[default]
    None,
    /// OnPremise: plain-text username and password.
    UsernameToken { username: String, password: String },
    /// Federated or Entra: an opaque token, normally base64.
    BinarySecurityToken {
        value_type: String,
        encoding_type: String,
        value: String,
    },
}

impl SecurityToken {
    /// An Entra access token (`urn:ietf:params:oauth:token-type:jwt`, docs/protocol.md fact 9).
    pub fn is_entra_jwt(&self) -> bool {
        matches!(self, SecurityToken::BinarySecurityToken { value_type, .. } if value_type.trim() == ns::TOKEN_TYPE_JWT)
    }

    /// A federated (web authentication broker) DeviceEnrollmentUserToken.
    pub fn is_device_enrollment_user_token(&self) -> bool {
        matches!(self, SecurityToken::BinarySecurityToken { value_type, .. }
            if value_type.trim().trim_end_matches('/').eq_ignore_ascii_case(ns::TOKEN_TYPE_USER_TOKEN))
    }

    /// The decoded bytes of a base64 BinarySecurityToken (for a JWT: the compact JWS text).
    pub fn decoded_value(&self) -> Option<Vec<u8>> {
        match self {
            SecurityToken::BinarySecurityToken { value, .. } => decode_base64(value).ok(),
            _ => None,
        }
    }
}

/// `GetPolicies` request (docs/protocol.md §2.3); the body carries only nil filters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GetPoliciesRequest {
    pub message_id: String,
    pub to: Option<String>,
    pub security: SecurityToken,
}

/// The AdditionalContext `EnrollmentType` (docs/protocol.md §2.4 table).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EnrollmentType {
    /// User / MDM-only / work-account enrollment: the client cert goes to `My/User`.
    Full,
    /// Entra join: the client cert goes to `My/System`.
    Device,
    Other(String),
}

impl EnrollmentType {
    pub fn parse(s: &str) -> Self {
        match s.trim() {
            v if v.eq_ignore_ascii_case("Full") => EnrollmentType::Full,
            v if v.eq_ignore_ascii_case("Device") => EnrollmentType::Device,
            other => EnrollmentType::Other(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            EnrollmentType::Full => "Full",
            EnrollmentType::Device => "Device",
            EnrollmentType::Other(s) => s,
        }
    }
}

/// `ac:AdditionalContext`: ordered (name, value) pairs; names may repeat (one `MAC` per NIC).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AdditionalContext {
    pub items: Vec<(String, String)>,
}

impl AdditionalContext {
    pub fn new(items: Vec<(String, String)>) -> Self {
        AdditionalContext { items }
    }

    /// First value of an item (names compared ASCII-case-insensitively).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.items
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.items
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn flag(&self, name: &str) -> Option<bool> {
        self.get(name).and_then(|v| match v.trim() {
            t if t.eq_ignore_ascii_case("true") || t == "1" => Some(true),
            t if t.eq_ignore_ascii_case("false") || t == "0" => Some(false),
            _ => None,
        })
    }

    pub fn hw_dev_id(&self) -> Option<&str> {
        self.get("HWDevID")
    }
    pub fn device_id(&self) -> Option<&str> {
        self.get("DeviceID")
    }
    pub fn enrollment_type(&self) -> Option<EnrollmentType> {
        self.get("EnrollmentType").map(EnrollmentType::parse)
    }
    pub fn os_version(&self) -> Option<&str> {
        self.get("OSVersion")
    }
    pub fn os_edition(&self) -> Option<&str> {
        self.get("OSEdition")
    }
    pub fn device_name(&self) -> Option<&str> {
        self.get("DeviceName")
    }
    pub fn macs(&self) -> Vec<&str> {
        self.get_all("MAC").collect()
    }
    pub fn locale(&self) -> Option<&str> {
        self.get("Locale")
    }
    pub fn not_in_oobe(&self) -> Option<bool> {
        self.flag("NotInOobe")
    }
    pub fn ux_initiated(&self) -> Option<bool> {
        self.flag("UXInitiated")
    }
    pub fn targeted_user_logged_in(&self) -> Option<bool> {
        self.flag("TargetedUserLoggedIn")
    }
    pub fn application_version(&self) -> Option<&str> {
        self.get("ApplicationVersion")
    }
    pub fn device_type(&self) -> Option<&str> {
        self.get("DeviceType")
    }
    pub fn request_version(&self) -> Option<&str> {
        self.get("RequestVersion")
    }
    /// Terms-of-use OpaqueBlob passed through by Entra flows (docs/protocol.md §2.7).
    pub fn enrollment_data(&self) -> Option<&str> {
        self.get("EnrollmentData")
    }
    /// Present for hybrid (AD-joined) devices, which Autopilot Reset does not support.
    pub fn domain_name(&self) -> Option<&str> {
        self.get("DomainName")
    }
}

/// `wst:RequestSecurityToken` (docs/protocol.md §2.4).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RstRequest {
    pub message_id: String,
    pub to: Option<String>,
    pub security: SecurityToken,
    pub token_type: String,
    pub request_type: String,
    /// ValueType of the request token: `...enrollment#PKCS10` for a new enrollment (renewals
    /// may send `#PKCS7`, MS-WSTEP). Empty means PKCS#10 when writing.
    pub csr_value_type: String,
    /// The certificate request, DER (decoded from the base64 BinarySecurityToken).
    pub csr_der: Vec<u8>,
    pub context: AdditionalContext,
}

impl RstRequest {
    /// A certificate renewal (MS-MDE2 3.4.4.1.1.1): RequestType `.../Renew`. Its request token
    /// is then a PKCS#7 (ValueType `...#PKCS7`) signed with the current certificate.
    pub fn is_renewal(&self) -> bool {
        self.request_type
            .trim()
            .eq_ignore_ascii_case(ns::REQUEST_TYPE_RENEW)
    }

    /// The request token is a PKCS#7 (`...enrollment#PKCS7`). The ITPRO renewal sample writes
    /// the WSS secext namespace before `#PKCS7`, so only the fragment is compared.
    pub fn token_is_pkcs7(&self) -> bool {
        self.csr_value_type.trim().ends_with("#PKCS7")
    }
}

/// Server → device discovery answer (docs/protocol.md §2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoverResponse {
    pub auth_policy: AuthPolicy,
    pub enrollment_version: String,
    /// Optional: without it the client uses the default policy.
    pub enrollment_policy_service_url: Option<String>,
    pub enrollment_service_url: String,
    /// Mandatory for Federated.
    pub authentication_service_url: Option<String>,
}

/// An XCEP object identifier entry (`oIDs/oID`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyOid {
    pub value: String,
    pub group: u32,
    pub reference_id: u32,
    pub default_name: String,
}

/// Server → device GetPolicies answer: the attributes Windows honours (docs/protocol.md §2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyResponse {
    pub minimal_key_length: u32,
    /// Hash algorithm OID; `None` writes `xsi:nil`.
    pub hash_algorithm: Option<PolicyOid>,
    pub validity_period_seconds: u64,
    pub renewal_period_seconds: u64,
    pub enroll_permission: bool,
}

impl Default for PolicyResponse {
    /// 2048-bit keys, one-year certificates renewable in the last 42 days; the hash OID is
    /// the one in Microsoft's sample response (szOID_OIWSEC_sha1RSASign, ITPRO federated doc),
    /// which Windows is documented to accept.
    fn default() -> Self {
        PolicyResponse {
            minimal_key_length: 2048,
            hash_algorithm: Some(PolicyOid {
                value: "1.3.14.3.2.29".into(),
                group: 1,
                reference_id: 0,
                default_name: "szOID_OIWSEC_sha1RSASign".into(),
            }),
            validity_period_seconds: 365 * 24 * 3600,
            renewal_period_seconds: 42 * 24 * 3600,
            enroll_permission: true,
        }
    }
}

/// Server → device enrollment answer: the provisioning document for the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rstr {
    pub provisioning: ProvisioningDoc,
}

/// A parsed RSTRC (device side / `inspect`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RstrResponse {
    pub token_type: Option<String>,
    pub value_type: String,
    /// The decoded wap-provisioningdoc text.
    pub provisioning_xml: String,
    pub provisioning: ProvisioningDoc,
    pub created: Option<String>,
    pub expires: Option<String>,
}

/// SOAP fault subcodes of MS-MDE2 (ITPRO mobile-device-enrollment.md; docs/protocol.md §2.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultCode {
    MessageFormat,
    Authentication,
    Authorization,
    CertificateRequest,
    EnrollmentServer,
    InternalServiceFault,
    InvalidSecurity,
}

impl FaultCode {
    pub const ALL: [FaultCode; 7] = [
        FaultCode::MessageFormat,
        FaultCode::Authentication,
        FaultCode::Authorization,
        FaultCode::CertificateRequest,
        FaultCode::EnrollmentServer,
        FaultCode::InternalServiceFault,
        FaultCode::InvalidSecurity,
    ];

    /// The qualified subcode as written on the wire (`s:` = SOAP envelope, `a:` = addressing).
    pub fn qname(self) -> &'static str {
        match self {
            FaultCode::MessageFormat => "s:MessageFormat",
            FaultCode::Authentication => "s:Authentication",
            FaultCode::Authorization => "s:Authorization",
            FaultCode::CertificateRequest => "s:CertificateRequest",
            FaultCode::EnrollmentServer => "s:EnrollmentServer",
            FaultCode::InternalServiceFault => "a:InternalServiceFault",
            FaultCode::InvalidSecurity => "a:InvalidSecurity",
        }
    }

    /// The HRESULT the Windows enrollment client reports for this subcode.
    pub fn hresult(self) -> u32 {
        match self {
            FaultCode::MessageFormat => 0x8018_0001,
            FaultCode::Authentication => 0x8018_0002,
            FaultCode::Authorization => 0x8018_0003,
            FaultCode::CertificateRequest => 0x8018_0004,
            FaultCode::EnrollmentServer => 0x8018_0005,
            FaultCode::InternalServiceFault => 0x8018_0006,
            FaultCode::InvalidSecurity => 0x8018_0007,
        }
    }

    /// Recognises a subcode by its local part, ignoring prefix and case.
    pub fn parse(value: &str) -> Option<FaultCode> {
        let local = value.trim().rsplit(':').next().unwrap_or_default();
        FaultCode::ALL.into_iter().find(|c| {
            c.qname()
                .rsplit(':')
                .next()
                .is_some_and(|l| l.eq_ignore_ascii_case(local))
        })
    }
}

/// `deviceenrollmentserviceerror/errortype` values (Windows 10 1507+).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EnrollmentErrorType {
    DeviceCapReached,
    DeviceNotSupported,
    NotSupported,
    NotEligibleToRenew,
    InMaintenance,
    UserLicense,
    InvalidEnrollmentData,
    Other(String),
}

impl EnrollmentErrorType {
    const KNOWN: [(EnrollmentErrorType, &'static str, u32); 7] = [
        (
            EnrollmentErrorType::DeviceCapReached,
            "DeviceCapReached",
            0x8018_0013,
        ),
        (
            EnrollmentErrorType::DeviceNotSupported,
            "DeviceNotSupported",
            0x8018_0014,
        ),
        (
            EnrollmentErrorType::NotSupported,
            "NotSupported",
            0x8018_0015,
        ),
        (
            EnrollmentErrorType::NotEligibleToRenew,
            "NotEligibleToRenew",
            0x8018_0016,
        ),
        (
            EnrollmentErrorType::InMaintenance,
            "InMaintenance",
            0x8018_0017,
        ),
        (EnrollmentErrorType::UserLicense, "UserLicense", 0x8018_0018),
        (
            EnrollmentErrorType::InvalidEnrollmentData,
            "InvalidEnrollmentData",
            0x8018_0019,
        ),
    ];

    pub fn parse(s: &str) -> Self {
        let s = s.trim();
        Self::KNOWN
            .iter()
            .find(|(_, name, _)| name.eq_ignore_ascii_case(s))
            .map(|(t, _, _)| t.clone())
            .unwrap_or_else(|| EnrollmentErrorType::Other(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        match self {
            EnrollmentErrorType::Other(s) => s,
            known => Self::KNOWN
                .iter()
                .find(|(t, _, _)| t == known)
                .map_or("", |(_, name, _)| name),
        }
    }

    /// The client HRESULT, for known types.
    pub fn hresult(&self) -> Option<u32> {
        Self::KNOWN
            .iter()
            .find(|(t, _, _)| t == self)
            .map(|(_, _, h)| *h)
    }
}

/// Optional fault detail `deviceenrollmentserviceerror`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollmentServiceError {
    pub error_type: EnrollmentErrorType,
    pub message: String,
    /// Free text Windows logs, so support can find the server-side state.
    pub trace_id: String,
}

/// A SOAP fault (always Code `s:Receiver` + one subcode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub code: FaultCode,
    pub reason: String,
    pub detail: Option<EnrollmentServiceError>,
}

impl Fault {
    pub fn new(code: FaultCode, reason: impl Into<String>) -> Self {
        Fault {
            code,
            reason: reason.into(),
            detail: None,
        }
    }

    pub fn with_detail(
        mut self,
        error_type: EnrollmentErrorType,
        message: impl Into<String>,
        trace_id: impl Into<String>,
    ) -> Self {
        self.detail = Some(EnrollmentServiceError {
            error_type,
            message: message.into(),
            trace_id: trace_id.into(),
        });
        self
    }
}

impl From<&crate::Error> for Fault {
    fn from(err: &crate::Error) -> Self {
        Fault::new(err.fault_code(), err.to_string())
    }
}

/// Any server → device enrollment message, for the emulator and `redeploy inspect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnrollResponse {
    Discover {
        relates_to: Option<String>,
        response: DiscoverResponse,
    },
    GetPolicies {
        relates_to: Option<String>,
        response: PolicyResponse,
    },
    Rstr {
        relates_to: Option<String>,
        response: Box<RstrResponse>,
    },
    Fault {
        relates_to: Option<String>,
        fault: Fault,
    },
}

impl EnrollResponse {
    pub fn relates_to(&self) -> Option<&str> {
        match self {
            EnrollResponse::Discover { relates_to, .. }
            | EnrollResponse::GetPolicies { relates_to, .. }
            | EnrollResponse::Rstr { relates_to, .. }
            | EnrollResponse::Fault { relates_to, .. } => relates_to.as_deref(),
        }
    }
}

/// Base64 decoding that ignores whitespace (captures wrap base64 in LF+TAB, fixture 08) and
/// PEM armour lines (some emulators send the CSR as PEM).
pub fn decode_base64(value: &str) -> Result<Vec<u8>, base64::DecodeError> {
    use base64::Engine;
    let cleaned: String = value
        .lines()
        .filter(|l| !l.trim_start().starts_with("-----"))
        .flat_map(|l| l.chars())
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD.decode(cleaned)
}

/// Formats a SOAP timestamp (`2018-11-30T00:32:59.420Z` form).
pub(crate) fn soap_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}
