//! Identifier newtypes: private fields, built only through `parse`, `from_uuid` or `generate`.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

use crate::error::{Error, Result};

macro_rules! uuid_id {
    ($(#[$meta:meta])* $name:ident, $what:literal) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Uuid);

        impl $name {
            /// Parses the textual (hyphenated or simple) UUID form.
            pub fn parse(text: &str) -> Result<Self> {
                Uuid::parse_str(text.trim())
                    .map(Self)
                    .map_err(|_| Error::InvalidId { kind: $what, value: text.to_owned() })
            }

            /// Wraps a UUID that came from a trusted place (a database row, a generator).
            pub fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            /// A fresh random (v4) identifier.
            pub fn generate() -> Self {
                Self(Uuid::new_v4())
            }

            /// The underlying UUID.
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                Self::parse(s)
            }
        }
    };
}

uuid_id!(
    /// Our own identity of a device; survives re-enrollment of the same hardware (HWDevID).
    DeviceId,
    "device id"
);
uuid_id!(
    /// One enrollment (one WSTEP request that was granted a certificate).
    EnrollmentId,
    "enrollment id"
);
uuid_id!(
    /// One admin-requested action (reset, wipe, ...).
    ActionId,
    "action id"
);
uuid_id!(
    /// One queued OMA-DM command for a device.
    CommandId,
    "command id"
);
uuid_id!(
    /// A device group.
    GroupId,
    "group id"
);
uuid_id!(
    /// An enrollment token or an API token.
    TokenId,
    "token id"
);
uuid_id!(
    /// A named local account that signs in to the web console with a password.
    AccountId,
    "account id"
);
uuid_id!(
    /// A bulk request that created several actions at once.
    BatchId,
    "batch id"
);

uuid_id!(
    /// A recurring or one-off scheduled bulk request.
    ScheduleId,
    "schedule id"
);

uuid_id!(
    /// A webhook subscription.
    WebhookId,
    "webhook id"
);

uuid_id!(
    /// One webhook delivery (one event for one subscription, with its retries).
    DeliveryId,
    "delivery id"
);

/// Position of an audit event in the append-only log; assigned by the store, increasing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AuditId(i64);

impl AuditId {
    /// Wraps a sequence number read from the store.
    pub fn from_i64(n: i64) -> Self {
        Self(n)
    }
    /// The sequence number.
    pub fn as_i64(&self) -> i64 {
        self.0
    }
}

impl fmt::Display for AuditId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_round_trips_and_rejects_garbage() {
        let id = DeviceId::parse("6F9619FF-8B86-D011-B42D-00C04FC964FF").unwrap();
        assert_eq!(id.to_string(), "6f9619ff-8b86-d011-b42d-00c04fc964ff");
        assert_eq!(DeviceId::parse(&id.to_string()).unwrap(), id);
        let err = ActionId::parse("not-a-uuid").unwrap_err();
        assert!(err.to_string().contains("action id"), "{err}");
    }
}
