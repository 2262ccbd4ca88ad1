//! Device groups: a fixed list of devices (static) or every device matching a [`DeviceFilter`]
//! (dynamic), the targets of bulk resets and schedules (issue "Autopilot Reset end to end", item 5).

use time::{Duration, OffsetDateTime};

use crate::device::{Device, JoinType};
use crate::error::{Error, Result};
use crate::ids::{DeviceId, GroupId};

/// How a text field of a device is compared with the filter's text (case-insensitive).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TextMatch {
    /// The field starts with the text.
    Prefix(String),
    /// The field contains the text.
    Contains(String),
}

impl TextMatch {
    /// Whether `value` satisfies the match; an unknown (absent) value never does.
    pub fn matches(&self, value: Option<&str>) -> bool {
        let Some(value) = value else { return false };
        let value = value.to_lowercase();
        match self {
            Self::Prefix(p) => value.starts_with(&p.to_lowercase()),
            Self::Contains(c) => value.contains(&c.to_lowercase()),
        }
    }

    fn to_json(&self) -> serde_json::Value {
        match self {
            Self::Prefix(p) => serde_json::json!({ "prefix": p }),
            Self::Contains(c) => serde_json::json!({ "contains": c }),
        }
    }

    fn from_json(v: &serde_json::Value) -> Result<Self> {
        if let Some(p) = v.get("prefix").and_then(|p| p.as_str()) {
            Ok(Self::Prefix(p.to_owned()))
        } else if let Some(c) = v.get("contains").and_then(|c| c.as_str()) {
            Ok(Self::Contains(c.to_owned()))
        } else {
            Err(bad_filter(v))
        }
    }
}

/// Which devices a dynamic group holds: every condition that is set must hold (AND).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceFilter {
    /// Only this join type.
    pub join_type: Option<JoinType>,
    /// Device name condition.
    pub name: Option<TextMatch>,
    /// SMBIOS serial condition (devices without a known serial never match).
    pub serial: Option<TextMatch>,
    /// Autopilot group tag (from the Autopilot registry, matched by serial; case-insensitive).
    pub group_tag: Option<String>,
    /// OS build at least this (devices with an unknown build never match a build bound).
    pub os_build_min: Option<u32>,
    /// OS build at most this.
    pub os_build_max: Option<u32>,
    /// Checked in at most this long before `now` (never seen never matches).
    pub last_seen_within: Option<Duration>,
    /// Also match devices that unenrolled (they cannot be reset, so off by default).
    pub include_unenrolled: bool,
}

impl DeviceFilter {
    /// Whether `device` matches at `now`; `group_tag` is the device's Autopilot group tag, if any.
    pub fn matches(&self, device: &Device, now: OffsetDateTime, group_tag: Option<&str>) -> bool {
        if device.unenrolled_at.is_some() && !self.include_unenrolled {
            return false;
        }
        if self.join_type.is_some_and(|j| j != device.join_type) {
            return false;
        }
        if self
            .name
            .as_ref()
            .is_some_and(|m| !m.matches(Some(&device.name)))
        {
            return false;
        }
        if self
            .serial
            .as_ref()
            .is_some_and(|m| !m.matches(device.serial.as_deref()))
        {
            return false;
        }
        if let Some(tag) = &self.group_tag {
            if group_tag.is_none_or(|g| !g.eq_ignore_ascii_case(tag)) {
                return false;
            }
        }
        if self.os_build_min.is_some() || self.os_build_max.is_some() {
            let Some(build) = device.os_build() else {
                return false;
            };
            if self.os_build_min.is_some_and(|m| build < m)
                || self.os_build_max.is_some_and(|m| build > m)
            {
                return false;
            }
        }
        if let Some(within) = self.last_seen_within {
            if device.last_seen.is_none_or(|s| now - s > within) {
                return false;
            }
        }
        true
    }

    /// The devices of `devices` that match, in input order; `tag_of` gives a device's group tag.
    pub fn select<'a>(
        &self,
        devices: &'a [Device],
        now: OffsetDateTime,
        tag_of: impl Fn(&Device) -> Option<String>,
    ) -> Vec<&'a Device> {
        devices
            .iter()
            .filter(|d| self.matches(d, now, tag_of(d).as_deref()))
            .collect()
    }

    /// The stable text form used for storage (a JSON object).
    pub fn to_text(&self) -> String {
        let mut o = serde_json::Map::new();
        if let Some(j) = self.join_type {
            o.insert("join_type".into(), j.as_str().into());
        }
        if let Some(n) = &self.name {
            o.insert("name".into(), n.to_json());
        }
        if let Some(s) = &self.serial {
            o.insert("serial".into(), s.to_json());
        }
        if let Some(t) = &self.group_tag {
            o.insert("group_tag".into(), t.as_str().into());
        }
        if let Some(m) = self.os_build_min {
            o.insert("os_build_min".into(), m.into());
        }
        if let Some(m) = self.os_build_max {
            o.insert("os_build_max".into(), m.into());
        }
        if let Some(w) = self.last_seen_within {
            o.insert("last_seen_within_s".into(), w.whole_seconds().into());
        }
        if self.include_unenrolled {
            o.insert("include_unenrolled".into(), true.into());
        }
        serde_json::Value::Object(o).to_string()
    }

    /// Parses [`Self::to_text`].
    pub fn from_text(text: &str) -> Result<Self> {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|_| Error::InvalidValue {
            kind: "device filter",
            value: text.to_owned(),
        })?;
        let u32_of = |k: &str| -> Result<Option<u32>> {
            match v.get(k) {
                None => Ok(None),
                Some(n) => n
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .map(Some)
                    .ok_or_else(|| bad_filter(&v)),
            }
        };
        Ok(Self {
            join_type: v
                .get("join_type")
                .map(|j| JoinType::parse(j.as_str().unwrap_or_default()))
                .transpose()?,
            name: v.get("name").map(TextMatch::from_json).transpose()?,
            serial: v.get("serial").map(TextMatch::from_json).transpose()?,
            group_tag: v
                .get("group_tag")
                .and_then(|t| t.as_str())
                .map(str::to_owned),
            os_build_min: u32_of("os_build_min")?,
            os_build_max: u32_of("os_build_max")?,
            last_seen_within: v
                .get("last_seen_within_s")
                .map(|s| {
                    s.as_i64()
                        .map(Duration::seconds)
                        .ok_or_else(|| bad_filter(&v))
                })
                .transpose()?,
            include_unenrolled: v
                .get("include_unenrolled")
                .and_then(|b| b.as_bool())
                .unwrap_or(false),
        })
    }
}

fn bad_filter(v: &serde_json::Value) -> Error {
    Error::InvalidValue {
        kind: "device filter",
        value: v.to_string(),
    }
}

/// What a group holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupKind {
    /// A fixed list of devices (ordered by device id when read back).
    Static {
        /// The member devices.
        members: Vec<DeviceId>,
    },
    /// Every device matching the filter at the time it is resolved.
    Filter {
        /// The condition.
        filter: DeviceFilter,
    },
}

/// A named set of devices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    /// Identity.
    pub id: GroupId,
    /// Unique display name; also the text an admin types to confirm a group-wide reset.
    pub name: String,
    /// Static list or filter.
    pub kind: GroupKind,
    /// Creation time.
    pub created_at: OffsetDateTime,
}

impl Group {
    /// A static group with these members.
    pub fn new_static(
        id: GroupId,
        name: impl Into<String>,
        members: Vec<DeviceId>,
        at: OffsetDateTime,
    ) -> Self {
        Self {
            id,
            name: name.into(),
            kind: GroupKind::Static { members },
            created_at: at,
        }
    }

    /// A dynamic group over `filter`.
    pub fn new_filter(
        id: GroupId,
        name: impl Into<String>,
        filter: DeviceFilter,
        at: OffsetDateTime,
    ) -> Self {
        Self {
            id,
            name: name.into(),
            kind: GroupKind::Filter { filter },
            created_at: at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-06-01 12:00 UTC);

    fn pc(name: &str, serial: Option<&str>, build: &str, seen_h: Option<i64>) -> Device {
        let mut d = Device::new(DeviceId::generate(), name, NOW - Duration::days(30));
        d.serial = serial.map(str::to_owned);
        d.os_version = Some(format!("10.0.{build}.1"));
        d.join_type = JoinType::EntraJoined;
        d.last_seen = seen_h.map(|h| NOW - Duration::hours(h));
        d
    }

    #[test]
    fn every_set_condition_must_hold() {
        let lab = pc("LAB-A-01", Some("SN100"), "22631", Some(2));
        let old = pc("LAB-A-02", Some("SN101"), "19045", Some(2));
        let silent = pc("LAB-A-03", Some("SN102"), "22631", Some(24 * 40));
        let office = pc("OFFICE-1", Some("XY1"), "22631", Some(1));
        let mut hybrid = pc("LAB-A-04", Some("SN104"), "22631", Some(1));
        hybrid.join_type = JoinType::HybridJoined;
        let mut gone = pc("LAB-A-05", Some("SN105"), "22631", Some(1));
        gone.unenrolled_at = Some(NOW);
        let all = [lab, old, silent, office, hybrid, gone];
        let f = DeviceFilter {
            join_type: Some(JoinType::EntraJoined),
            name: Some(TextMatch::Prefix("lab-a".into())),
            os_build_min: Some(22000),
            last_seen_within: Some(Duration::days(30)),
            ..DeviceFilter::default()
        };
        let names: Vec<_> = f
            .select(&all, NOW, |_| None)
            .iter()
            .map(|d| d.name.clone())
            .collect();
        assert_eq!(names, ["LAB-A-01"]);
        // The empty filter takes every enrolled device.
        assert_eq!(DeviceFilter::default().select(&all, NOW, |_| None).len(), 5);
    }

    #[test]
    fn serial_substring_group_tag_and_build_ceiling() {
        let a = pc("a", Some("abcSN-77"), "22631", None);
        let b = pc("b", None, "22631", None);
        let f = DeviceFilter {
            serial: Some(TextMatch::Contains("sn-7".into())),
            os_build_max: Some(22631),
            ..DeviceFilter::default()
        };
        assert!(f.matches(&a, NOW, None));
        assert!(!f.matches(&b, NOW, None), "unknown serial never matches");
        let tagged = DeviceFilter {
            group_tag: Some("Lab".into()),
            ..DeviceFilter::default()
        };
        assert!(tagged.matches(&a, NOW, Some("LAB")));
        assert!(!tagged.matches(&a, NOW, Some("Office")));
        assert!(!tagged.matches(&a, NOW, None));
    }

    #[test]
    fn text_form_round_trips() {
        let f = DeviceFilter {
            join_type: Some(JoinType::EntraJoined),
            name: Some(TextMatch::Prefix("LAB".into())),
            serial: Some(TextMatch::Contains("x".into())),
            group_tag: Some("Lab".into()),
            os_build_min: Some(1),
            os_build_max: Some(2),
            last_seen_within: Some(Duration::hours(5)),
            include_unenrolled: true,
        };
        assert_eq!(DeviceFilter::from_text(&f.to_text()).unwrap(), f);
        assert_eq!(
            DeviceFilter::from_text("{}").unwrap(),
            DeviceFilter::default()
        );
        assert!(DeviceFilter::from_text("nope").is_err());
        assert!(DeviceFilter::from_text(r#"{"os_build_min":-1}"#).is_err());
    }
}
