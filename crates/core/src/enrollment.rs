//! Enrollment records and the tokens that authorise enrollment and API calls; [`decide`] holds
//! the rules of one enrollment request, [`renewal`] those of a certificate renewal.

pub mod decide;
pub mod identity;
pub mod renewal;

use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::device::{text_enum, EnrollmentType};
use crate::ids::{DeviceId, EnrollmentId, TokenId};

/// One granted enrollment (MS-MDE2 RST -> RSTR), kept with the raw request for audit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Enrollment {
    /// Identity of this enrollment.
    pub id: EnrollmentId,
    /// The device it belongs to (kept across re-enrollments bound to it: `identity::rebind`).
    pub device: DeviceId,
    /// Device or Full.
    pub enrollment_type: EnrollmentType,
    /// User principal name of the enrolling user, if any.
    pub upn: Option<String>,
    /// How the request authenticated (e.g. `OnPremise`, `Federated`, `token`).
    pub auth_method: String,
    /// Every AdditionalContext item (name, value) in request order.
    pub context: Vec<(String, String)>,
    /// The raw RST request bytes as received.
    pub raw_request: Vec<u8>,
    /// SHA-1 thumbprint (lowercase hex) of the issued client certificate.
    pub cert_thumbprint: String,
    /// Serial number (hex) of the issued client certificate.
    pub cert_serial: String,
    /// Expiry of the issued client certificate.
    pub cert_not_after: OffsetDateTime,
    /// When it was granted.
    pub created_at: OffsetDateTime,
    /// A later enrollment of the same hardware that superseded this one.
    pub replaced_by: Option<EnrollmentId>,
}

impl Enrollment {
    /// The value of the AdditionalContext item `name` (case-insensitive), if present.
    pub fn context_value(&self, name: &str) -> Option<&str> {
        self.context
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// SHA-256 of a secret (hex, lowercase). Only this is stored; the secret is shown once.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SecretHash(String);

impl SecretHash {
    /// Hashes a secret as presented by a client.
    pub fn of_secret(secret: &str) -> Self {
        Self(hex::encode(Sha256::digest(secret.as_bytes())))
    }

    /// Wraps a stored hash (64 lowercase hex characters); `None` if it is not one.
    pub fn from_stored(hex_text: &str) -> Option<Self> {
        (hex_text.len() == 64
            && hex_text
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .then(|| Self(hex_text.to_owned()))
    }

    /// The hex text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A token that allows enrolling devices (bulk or one-off).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnrollmentToken {
    /// Identity.
    pub id: TokenId,
    /// Free text label.
    pub label: String,
    /// Hash of the secret.
    pub secret_hash: SecretHash,
    /// Not usable at or after this instant.
    pub expires_at: Option<OffsetDateTime>,
    /// How many enrollments it may authorise (`None`: unlimited).
    pub max_uses: Option<i64>,
    /// How many it has authorised.
    pub uses: i64,
    /// Creation time.
    pub created_at: OffsetDateTime,
    /// The admin who created it vouches that the PCs enrolling with it are Entra joined: their
    /// join type then rests on [`crate::device::JoinEvidence::AdminToken`] (issue #13 item 2).
    pub vouches_entra_join: bool,
}

impl EnrollmentToken {
    /// Why the token cannot be used at `now`, if it cannot.
    pub fn refusal(&self, now: OffsetDateTime) -> Option<TokenRefusal> {
        if self.expires_at.is_some_and(|e| now >= e) {
            Some(TokenRefusal::Expired)
        } else if self.max_uses.is_some_and(|m| self.uses >= m) {
            Some(TokenRefusal::Exhausted)
        } else {
            None
        }
    }
}

/// Why an enrollment token was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenRefusal {
    /// Past its expiry.
    Expired,
    /// All uses spent.
    Exhausted,
}

text_enum!(
    /// What an API token may do; each role includes the ones before it.
    Role, "role" {
        /// Read only.
        Viewer => "viewer",
        /// Read, sync and restart devices.
        Helpdesk => "helpdesk",
        /// Everything on devices including resets and wipes.
        Operator => "operator",
        /// Everything, including tokens and settings.
        Admin => "admin",
    }
);

impl Role {
    /// Whether this role includes `other`.
    pub fn includes(&self, other: Role) -> bool {
        let rank = |r: Role| Role::ALL.iter().position(|x| *x == r).unwrap_or(0);
        rank(*self) >= rank(other)
    }
}

/// A bearer token for the admin API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiToken {
    /// Identity.
    pub id: TokenId,
    /// Who or what it is for.
    pub name: String,
    /// Hash of the secret.
    pub secret_hash: SecretHash,
    /// What it may do.
    pub role: Role,
    /// Creation time.
    pub created_at: OffsetDateTime,
    /// Revocation time, if revoked.
    pub revoked_at: Option<OffsetDateTime>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn secret_hash_is_sha256_hex() {
        let h = SecretHash::of_secret("abc");
        assert_eq!(
            h.as_str(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(SecretHash::from_stored(h.as_str()), Some(h));
        assert_eq!(SecretHash::from_stored("xyz"), None);
    }

    #[test]
    fn token_refusal_reasons() {
        let now = datetime!(2026-01-01 0:00 UTC);
        let mut t = EnrollmentToken {
            id: TokenId::generate(),
            label: "lab".into(),
            secret_hash: SecretHash::of_secret("s"),
            expires_at: Some(now),
            max_uses: Some(1),
            uses: 0,
            created_at: now,
            vouches_entra_join: false,
        };
        assert_eq!(t.refusal(now), Some(TokenRefusal::Expired));
        t.expires_at = None;
        assert_eq!(t.refusal(now), None);
        t.uses = 1;
        assert_eq!(t.refusal(now), Some(TokenRefusal::Exhausted));
    }

    #[test]
    fn roles_are_ordered() {
        assert!(Role::Admin.includes(Role::Viewer));
        assert!(!Role::Helpdesk.includes(Role::Operator));
    }
}
