//! A signed-in web console session: the browser holds a random session id in a cookie; only its
//! hash is stored, with the API token it was opened with (its role applies) and the CSRF secret
//! every console form must echo back.

use time::OffsetDateTime;

use crate::enrollment::SecretHash;
use crate::ids::TokenId;

/// One console session as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsoleSession {
    /// SHA-256 of the session id in the cookie (the id itself is never stored).
    pub id_hash: SecretHash,
    /// The API token the admin signed in with; its role and revocation apply to the session.
    pub token: TokenId,
    /// The per-session CSRF secret, echoed by every form as a hidden field.
    pub csrf_secret: String,
    /// When the admin signed in.
    pub created_at: OffsetDateTime,
    /// After this instant the session no longer exists.
    pub expires_at: OffsetDateTime,
}
