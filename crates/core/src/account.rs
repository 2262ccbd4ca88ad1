//! Who signs in to the web console: a named local account (its password kept only as an Argon2
//! PHC string, hashed and checked by the server), a user an OpenID Connect provider vouched for
//! (its role mapped from a group claim at sign-in), or the holder of an API token.

use time::OffsetDateTime;

use crate::enrollment::{ApiToken, Role};
use crate::error::{Error, Result};
use crate::ids::AccountId;

/// An account's name: 1 to 64 characters of letters, digits and `.`, `_`, `-`, `@` (an e-mail
/// address or a login name), compared exactly.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AccountName(String);

impl AccountName {
    /// Parses a name as typed (surrounding blanks removed).
    pub fn parse(text: &str) -> Result<Self> {
        let name = text.trim();
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@');
        if name.is_empty() || name.len() > 64 || !name.chars().all(allowed) {
            return Err(Error::InvalidValue {
                kind: "account name (1 to 64 letters, digits, '.', '_', '-' or '@')",
                value: name.to_owned(),
            });
        }
        Ok(Self(name.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for AccountName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A named local account of the web console.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// Identity.
    pub id: AccountId,
    /// The name typed at sign-in (unique).
    pub name: AccountName,
    /// The password as an Argon2id PHC string (`$argon2id$v=19$m=…$salt$hash`); never the
    /// password itself.
    pub password_hash: String,
    /// What it may do (the roles of API tokens).
    pub role: Role,
    /// Creation time.
    pub created_at: OffsetDateTime,
    /// When an admin disabled it; a disabled account cannot sign in and its sessions end.
    pub disabled_at: Option<OffsetDateTime>,
}

/// A user an OpenID Connect provider vouched for; nothing of it is kept but its console sessions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenIdUser {
    /// The ID token's `sub` (unique at the issuer).
    pub subject: String,
    /// What the console shows: `preferred_username`, `email`, `name` or else `sub`.
    pub name: String,
    /// The role its groups mapped to at sign-in.
    pub role: Role,
}

/// Who is acting: every use case's caller is one of these.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// The holder of an API token (scripts, the CLI, the console's token sign-in).
    Token(ApiToken),
    /// A named local account.
    Account(Account),
    /// A user signed in through OpenID Connect.
    OpenId(OpenIdUser),
}

impl Principal {
    /// The name shown and audited.
    pub fn name(&self) -> &str {
        match self {
            Principal::Token(t) => &t.name,
            Principal::Account(a) => a.name.as_str(),
            Principal::OpenId(u) => &u.name,
        }
    }

    /// What it may do.
    pub fn role(&self) -> Role {
        match self {
            Principal::Token(t) => t.role,
            Principal::Account(a) => a.role,
            Principal::OpenId(u) => u.role,
        }
    }

    /// How it appears in the audit log and on actions: `name (token id)` for a token (as
    /// always), `name (account id)` and `name (openid subject)` for the others.
    pub fn actor(&self) -> String {
        match self {
            Principal::Token(t) => format!("{} ({})", t.name, t.id),
            Principal::Account(a) => format!("{} (account {})", a.name, a.id),
            Principal::OpenId(u) => format!("{} (openid {})", u.name, u.subject),
        }
    }

    /// Whether it may no longer act: a revoked token or a disabled account.
    pub fn ended(&self) -> bool {
        match self {
            Principal::Token(t) => t.revoked_at.is_some(),
            Principal::Account(a) => a.disabled_at.is_some(),
            Principal::OpenId(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_names_parse() {
        assert_eq!(
            AccountName::parse(" ada@example.org ").unwrap().as_str(),
            "ada@example.org"
        );
        for bad in ["", "a b", "ä", &"x".repeat(65), "a/b"] {
            assert!(AccountName::parse(bad).is_err(), "{bad:?}");
        }
    }
}
