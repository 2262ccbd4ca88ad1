//! The emulator's error type: what can go wrong talking to a server, enrolling or keeping state.

use crate::fault::Cut;

/// Everything the protocol client, scheduler and fleet runner can fail with.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("bad URL: {0}")]
    Url(String),
    #[error("cannot reach the server: {0}")]
    Connect(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("the server's answer is {size} bytes, over the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    /// An HTTP status other than the one the protocol step expects.
    #[error("{step}: HTTP {status} from the server")]
    Http { step: &'static str, status: u16 },
    /// HTTP 401/403, or a SyncML 401/407 on the SyncHdr.
    #[error("{step}: the server refused the device's credentials ({code})")]
    Unauthorized { step: &'static str, code: u16 },
    /// The enrollment server answered with a SOAP fault (MS-MDE2).
    #[error("enrollment refused: {subcode}: {message}")]
    EnrollmentFault { subcode: String, message: String },
    /// The server's answer could not be understood.
    #[error("{step}: {message}")]
    Protocol { step: &'static str, message: String },
    #[error("enrollment: {0}")]
    Enroll(#[from] enroll::Error),
    #[error("the PC is not enrolled")]
    NotEnrolled,
    #[error("the PC is offline")]
    Offline,
    #[error("no enrollment token: pass --token-file, --token or REDEPLOY_TOKEN_FILE")]
    NoToken,
    #[error("state file {path}: {message}")]
    State { path: String, message: String },
    /// The connection dropped mid-exchange: an injected fault (`--drop-replies`,
    /// [`crate::fault::exchange_cut`]), which the PC handles like any transport error.
    #[error("{url}: connection lost: {} (injected fault)", .cut.describe())]
    LinkCut { url: String, cut: Cut },
}

impl DeviceError {
    /// A short, stable name for summaries ("errors by kind").
    pub fn kind(&self) -> &'static str {
        match self {
            DeviceError::Url(_) => "url",
            DeviceError::Connect(_) => "connect",
            DeviceError::Tls(_) => "tls",
            DeviceError::TooLarge { .. } => "too_large",
            DeviceError::Http { .. } => "http",
            DeviceError::Unauthorized { .. } => "unauthorized",
            DeviceError::EnrollmentFault { .. } => "enrollment_fault",
            DeviceError::Protocol { .. } => "protocol",
            DeviceError::Enroll(_) => "enroll",
            DeviceError::NotEnrolled => "not_enrolled",
            DeviceError::Offline => "offline",
            DeviceError::NoToken => "no_token",
            DeviceError::State { .. } => "state",
            DeviceError::LinkCut { cut, .. } => cut.kind(),
        }
    }
}

pub type Result<T, E = DeviceError> = std::result::Result<T, E>;
