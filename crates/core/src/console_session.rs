//! A signed-in web console session: the browser holds a random session id in a cookie; only its
//! hash is stored, with who signed in (an API token, a local account or an OpenID Connect user;
//! the role of that holder applies) and the CSRF secret every console form must echo back.

use time::OffsetDateTime;

use crate::account::{OpenIdUser, Principal};
use crate::enrollment::SecretHash;
use crate::ids::{AccountId, TokenId};

/// Who a console session was opened for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionHolder {
    /// An API token; its role and revocation apply to the session.
    Token(TokenId),
    /// A local account; its role and disabling apply to the session.
    Account(AccountId),
    /// A user an OpenID Connect provider vouched for, with the role mapped at sign-in.
    OpenId(OpenIdUser),
}

/// One console session as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsoleSession {
    /// SHA-256 of the session id in the cookie (the id itself is never stored).
    pub id_hash: SecretHash,
    /// Who signed in.
    pub holder: SessionHolder,
    /// The per-session CSRF secret, echoed by every form as a hidden field.
    pub csrf_secret: String,
    /// When the admin signed in.
    pub created_at: OffsetDateTime,
    /// After this instant the session no longer exists.
    pub expires_at: OffsetDateTime,
}

impl From<&Principal> for SessionHolder {
    fn from(principal: &Principal) -> Self {
        match principal {
            Principal::Token(t) => SessionHolder::Token(t.id),
            Principal::Account(a) => SessionHolder::Account(a.id),
            Principal::OpenId(u) => SessionHolder::OpenId(u.clone()),
        }
    }
}
