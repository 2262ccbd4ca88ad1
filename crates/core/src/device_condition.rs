//! Conditions a device list narrows by ([`crate::store::DeviceQuery::condition`]), written as data
//! so the store evaluates them inside its query (filters, sort and page in one statement) while
//! [`DeviceCondition::matches`] says what each one means. The store conformance suite holds both
//! backends to `matches` (`testkit::store_suite::device_conditions_match_in_sql`).

use time::OffsetDateTime;

use crate::device::{Device, JoinType};
use crate::store::to_micros;

/// A text property of a device; an absent value reads as the empty text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextField {
    /// The device name.
    Name,
    /// The serial number.
    Serial,
    /// The OS version (`10.0.22631.2861`).
    OsVersion,
    /// The primary user's UPN.
    PrimaryUser,
    /// The manufacturer.
    Manufacturer,
    /// The model.
    Model,
    /// The Entra device id.
    AadDeviceId,
}

impl TextField {
    /// The value of this property on `device` (absent = empty).
    pub fn of<'a>(&self, device: &'a Device) -> &'a str {
        let value = match self {
            Self::Name => return &device.name,
            Self::Serial => &device.serial,
            Self::OsVersion => &device.os_version,
            Self::PrimaryUser => &device.primary_user,
            Self::Manufacturer => &device.manufacturer,
            Self::Model => &device.model,
            Self::AadDeviceId => &device.aad_device_id,
        };
        value.as_deref().unwrap_or_default()
    }
}

/// How a text property is compared, always without regard to letter case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextOp {
    /// Equal.
    Eq,
    /// Starts with the value.
    StartsWith,
    /// Contains the value.
    Contains,
}

/// An instant of a device, which may be absent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeField {
    /// The last check-in (absent: never checked in).
    LastSeen,
    /// The enrollment (always present).
    EnrolledAt,
    /// The MDM certificate's expiry (absent: not known).
    CertNotAfter,
    /// The unenrollment (absent: enrolled).
    UnenrolledAt,
}

impl TimeField {
    /// The value of this instant on `device`.
    pub fn of(&self, device: &Device) -> Option<OffsetDateTime> {
        match self {
            Self::LastSeen => device.last_seen,
            Self::EnrolledAt => Some(device.enrolled_at),
            Self::CertNotAfter => device.cert_not_after,
            Self::UnenrolledAt => device.unenrolled_at,
        }
    }
}

/// A comparison of an instant with a given one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Comparison {
    /// `=`.
    Eq,
    /// `<>`.
    Ne,
    /// `<`.
    Lt,
    /// `<=`.
    Le,
    /// `>`.
    Gt,
    /// `>=`.
    Ge,
}

impl Comparison {
    /// Whether `a` compares so with `b`.
    pub fn holds<T: Ord>(&self, a: T, b: T) -> bool {
        match self {
            Self::Eq => a == b,
            Self::Ne => a != b,
            Self::Lt => a < b,
            Self::Le => a <= b,
            Self::Gt => a > b,
            Self::Ge => a >= b,
        }
    }
}

/// A condition on one device. Every leaf is two-valued (an absent value makes a comparison false,
/// never "unknown"), so [`Self::Not`] means the same in SQL as here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceCondition {
    /// Every one holds (none: true).
    All(Vec<DeviceCondition>),
    /// At least one holds (none: false).
    Any(Vec<DeviceCondition>),
    /// It does not hold.
    Not(Box<DeviceCondition>),
    /// A text property compared with `value`, case-insensitively (letter case as the database's
    /// `LOWER` folds it: ASCII on SQLite).
    Text {
        /// Which property.
        field: TextField,
        /// How.
        op: TextOp,
        /// With what.
        value: String,
    },
    /// An instant compared with `at` to the microsecond (what both backends store); false when
    /// the device has no such instant.
    Time {
        /// Which instant.
        field: TimeField,
        /// How.
        cmp: Comparison,
        /// With what.
        at: OffsetDateTime,
    },
    /// The device has no such instant (never seen, still enrolled, …).
    NoTime(TimeField),
    /// The join type is one of these.
    JoinTypeIn(Vec<JoinType>),
    /// The PC reported WinRE enabled (`true`) or not configured (`false`); false when it never
    /// reported.
    WinReEnabled(bool),
}

impl DeviceCondition {
    /// Whether `device` meets the condition: the meaning the store's query must have.
    pub fn matches(&self, device: &Device) -> bool {
        match self {
            Self::All(all) => all.iter().all(|c| c.matches(device)),
            Self::Any(any) => any.iter().any(|c| c.matches(device)),
            Self::Not(c) => !c.matches(device),
            Self::Text { field, op, value } => {
                let have = field.of(device).to_lowercase();
                let want = value.to_lowercase();
                match op {
                    TextOp::Eq => have == want,
                    TextOp::StartsWith => have.starts_with(&want),
                    TextOp::Contains => have.contains(&want),
                }
            }
            Self::Time { field, cmp, at } => field
                .of(device)
                .is_some_and(|t| cmp.holds(to_micros(t), to_micros(*at))),
            Self::NoTime(field) => field.of(device).is_none(),
            Self::JoinTypeIn(types) => types.contains(&device.join_type),
            Self::WinReEnabled(want) => device.winre_enabled == Some(*want),
        }
    }

    /// `self` and `other`.
    pub fn and(self, other: DeviceCondition) -> DeviceCondition {
        Self::All(vec![self, other])
    }

    /// Not `self`.
    pub fn negate(self) -> DeviceCondition {
        Self::Not(Box::new(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::DeviceId;
    use time::macros::datetime;

    #[test]
    fn leaves_are_two_valued_and_case_blind() {
        let now = datetime!(2026-03-01 12:00 UTC);
        let mut d = Device::new(DeviceId::generate(), "Lab-PC-01", now);
        d.serial = Some("SN-42".into());
        let text = |field, op, value: &str| DeviceCondition::Text {
            field,
            op,
            value: value.into(),
        };
        assert!(text(TextField::Name, TextOp::StartsWith, "lab-pc").matches(&d));
        assert!(text(TextField::Serial, TextOp::Contains, "n-4").matches(&d));
        assert!(
            text(TextField::Model, TextOp::Eq, "").matches(&d),
            "absent reads as ''"
        );
        let seen = DeviceCondition::Time {
            field: TimeField::LastSeen,
            cmp: Comparison::Le,
            at: now,
        };
        assert!(!seen.matches(&d), "never seen compares false");
        assert!(seen.clone().negate().matches(&d));
        assert!(DeviceCondition::NoTime(TimeField::LastSeen).matches(&d));
        assert!(!DeviceCondition::WinReEnabled(false).matches(&d));
        assert!(DeviceCondition::All(vec![]).matches(&d));
        assert!(!DeviceCondition::Any(vec![]).matches(&d));
        d.last_seen = Some(now);
        assert!(seen.matches(&d));
    }
}
