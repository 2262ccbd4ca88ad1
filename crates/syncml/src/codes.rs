//! SyncML status codes and alert codes, as MS-MDM uses them.
//!
//! Sources: ITPRO oma-dm-protocol-support.md "SyncML response status codes"; MS-MDM 2.2.7.2 (alerts).

use std::fmt;

macro_rules! code_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $value:expr),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vm])* $variant,)+
            /// A code this crate has no name for; kept as sent.
            Other(u16),
        }

        impl $name {
            pub fn from_u16(n: u16) -> Self {
                match n {
                    $($value => $name::$variant,)+
                    other => $name::Other(other),
                }
            }

            pub fn as_u16(self) -> u16 {
                match self {
                    $($name::$variant => $value,)+
                    $name::Other(n) => n,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.as_u16())
            }
        }

        impl From<u16> for $name {
            fn from(n: u16) -> Self {
                $name::from_u16(n)
            }
        }
    };
}

code_enum! {
    /// The `Data` of a `Status` command.
    StatusCode {
        /// 200: the command succeeded.
        Ok = 200,
        /// 202: accepted for asynchronous processing.
        Accepted = 202,
        /// 212: authentication accepted; no further credentials this session.
        AuthenticationAccepted = 212,
        /// 214: operation cancelled; done, but no more commands are processed this session.
        OperationCancelled = 214,
        /// 215: not executed (the user cancelled).
        NotExecuted = 215,
        /// 216: Atomic roll back OK.
        AtomicRollBackOk = 216,
        /// 400: bad request, malformed command.
        BadRequest = 400,
        /// 401: invalid credentials.
        InvalidCredentials = 401,
        /// 403: forbidden.
        Forbidden = 403,
        /// 404: the node does not exist.
        NotFound = 404,
        /// 405: the command is not allowed on this node (e.g. a write to a read-only node).
        CommandNotAllowed = 405,
        /// 406: optional feature not supported.
        OptionalFeatureNotSupported = 406,
        /// 407: authentication required (missing credentials).
        MissingCredentials = 407,
        /// 415: unsupported media type or format.
        UnsupportedMediaTypeOrFormat = 415,
        /// 418: the node already exists (Add).
        AlreadyExists = 418,
        /// 425: permission denied by the node's ACL.
        PermissionDenied = 425,
        /// 500: the command failed.
        CommandFailed = 500,
        /// 507: the Atomic failed (rolled back).
        AtomicFailed = 507,
        /// 516: Atomic roll back failed.
        AtomicRollBackFailed = 516,
    }
}

impl StatusCode {
    /// 2xx: the other side did (or accepted) what was asked.
    pub fn is_success(self) -> bool {
        (200..300).contains(&self.as_u16())
    }
}

code_enum! {
    /// The `Data` of an `Alert` command.
    AlertCode {
        /// 1200: session started because of a server trigger (push).
        ServerInitiatedMgmt = 1200,
        /// 1201: client-initiated session (a normal check-in).
        ClientInitiatedMgmt = 1201,
        /// 1222: send the next message of a multi-message package.
        NextMessage = 1222,
        /// 1223: the sender aborts the session.
        SessionAbort = 1223,
        /// 1224: client event (LoginStatus, AADUserToken, synctype).
        ClientEvent = 1224,
        /// 1225: a chunked large object ended without its last chunk.
        NoEndOfData = 1225,
        /// 1226: generic alert (async CSP completion, user unenrollment).
        GenericAlert = 1226,
    }
}

/// Alert 1224 item type: who is signed in (`user`, `others`, `none`). ITPRO azure-ad-integration doc.
pub const ALERT_TYPE_LOGIN_STATUS: &str = "com.microsoft/MDM/LoginStatus";
/// Alert 1224 item type: the signed-in Entra user's token.
pub const ALERT_TYPE_AAD_USER_TOKEN: &str = "com.microsoft/MDM/AADUserToken";
/// Alert 1224 item type: the scope of this session (`user`, `device`, `mixed`). MS-MDM 3.2.5.1.5.
pub const ALERT_TYPE_SYNC_TYPE: &str = "com.microsoft.mdm.synctype";
/// Alert 1226 item type: the user disconnected the device from MDM.
/// ITPRO disconnecting-from-mdm-unenrollment.md.
pub const ALERT_TYPE_UNENROLL_USER_REQUEST: &str = "com.microsoft:mdm.unenrollment.userrequest";

/// The SyncML namespace a Windows client and server use (`SYNCML:SYNCML1.2`).
pub const SYNCML_NS: &str = "SYNCML:SYNCML1.2";
/// The MetInf namespace on Format/Type.
pub const METINF_NS: &str = "syncml:metinf";
/// HTTP content type of an XML-encoded SyncML DM message (MS-MDM 2.1).
pub const CONTENT_TYPE: &str = "application/vnd.syncml.dm+xml";
