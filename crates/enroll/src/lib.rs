//! MS-MDE2 enrollment codecs (discovery, XCEP GetPolicies, WSTEP RST/RSTR, SOAP faults),
//! the wap-provisioningdoc model, and the device certificate authority. Sans-IO: bytes in,
//! typed messages out and back; time and keys are parameters.

pub mod ca;
mod messages;
pub mod ns;
pub mod pkcs7;
pub mod provisioning;
mod read;
mod write;
mod xml;

pub use messages::*;
pub use read::{parse_message, parse_response};
pub use write::{
    write_discover_request, write_discover_response, write_fault, write_fault_with_action,
    write_get_policies_request, write_get_policies_response, write_rst_request, write_rstr,
};
pub use xml::{MAX_DEPTH, MAX_ELEMENTS, MAX_MESSAGE_BYTES};

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bytes are not acceptable XML (malformed, DOCTYPE, entities, limits exceeded).
    #[error("line {line}, column {column}: {message}")]
    Xml {
        line: usize,
        column: usize,
        message: String,
    },
    /// Well-formed XML that is not the enrollment message it claims to be.
    #[error("line {line}, column {column}: {message}")]
    Message {
        line: usize,
        column: usize,
        message: String,
    },
    /// A well-formed provisioning document that lacks what an enrollment needs.
    #[error("provisioning document: {0}")]
    Provisioning(String),
    /// The message is larger than [`MAX_MESSAGE_BYTES`].
    #[error("line 1, column 1: message is {size} bytes, over the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    /// A PKCS#10 request that cannot be parsed or whose self-signature does not verify.
    #[error("certificate request: {0}")]
    CertificateRequest(String),
    /// Certificate or key generation, parsing or signing failed.
    #[error("certificate: {0}")]
    Certificate(String),
    /// A renewal's PKCS#7 that cannot be parsed or whose signature does not verify
    /// ([`pkcs7::open_renewal`]).
    #[error("renewal request: {0}")]
    Renewal(String),
}

impl Error {
    /// The SOAP fault subcode a server should answer this error with (MS-MDE2 via
    /// ITPRO mobile-device-enrollment.md): bad XML or message → `s:MessageFormat`,
    /// bad CSR → `s:CertificateRequest`, our own certificate trouble → `s:EnrollmentServer`.
    pub fn fault_code(&self) -> FaultCode {
        match self {
            Error::Xml { .. }
            | Error::Message { .. }
            | Error::TooLarge { .. }
            | Error::Provisioning(_) => FaultCode::MessageFormat,
            Error::CertificateRequest(_) => FaultCode::CertificateRequest,
            Error::Certificate(_) => FaultCode::EnrollmentServer,
            // The signature is the renewal's only credential (MS-MDE2 3.4.4.1.1.1: no security
            // token in the header), so one that does not verify is an authentication failure.
            Error::Renewal(_) => FaultCode::Authentication,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
