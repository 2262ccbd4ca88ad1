//! Request parsing shared by the group and bulk handlers: device ids of a body and device
//! filters between wire and domain. (Finding groups and schedules by name, the
//! typed-confirmation rule and auditing are use cases in `crate::service`.)

use redeploy_core::{DeviceFilter, DeviceId, JoinType, TextMatch};
use time::Duration;

use super::handlers::ApiResult;
use super::ApiError;

/// Device ids of a request body; the first one that is not an id is refused, naming `field`.
pub(crate) fn device_ids(field: &str, texts: &[String]) -> ApiResult<Vec<DeviceId>> {
    texts
        .iter()
        .map(|t| {
            DeviceId::parse(t.trim())
                .map_err(|_| ApiError::bad_request(format!("{field}: not a device id: {t:?}")))
        })
        .collect()
}

fn text_match(
    field: &str,
    prefix: &Option<String>,
    contains: &Option<String>,
) -> ApiResult<Option<TextMatch>> {
    match (prefix, contains) {
        (Some(_), Some(_)) => Err(ApiError::bad_request(format!(
            "filter: give {field}_prefix or {field}_contains, not both"
        ))),
        (Some(p), None) => Ok(Some(TextMatch::Prefix(p.clone()))),
        (None, Some(c)) => Ok(Some(TextMatch::Contains(c.clone()))),
        (None, None) => Ok(None),
    }
}

/// The domain filter of a wire filter; a bad join type or negative duration is a 400.
pub(crate) fn filter_from_dto(f: &api::DeviceFilter) -> ApiResult<DeviceFilter> {
    let join_type = f
        .join_type
        .as_deref()
        .map(JoinType::parse)
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("filter.join_type: {e}")))?;
    let last_seen_within = match f.last_seen_within_secs {
        Some(s) if s < 0 => {
            return Err(ApiError::bad_request(
                "filter.last_seen_within_secs must not be negative",
            ))
        }
        other => other.map(Duration::seconds),
    };
    Ok(DeviceFilter {
        join_type,
        name: text_match("name", &f.name_prefix, &f.name_contains)?,
        serial: text_match("serial", &f.serial_prefix, &f.serial_contains)?,
        group_tag: f.group_tag.clone(),
        os_build_min: f.os_build_min,
        os_build_max: f.os_build_max,
        last_seen_within,
        include_unenrolled: f.include_unenrolled,
    })
}

/// The wire form of a domain filter.
pub(crate) fn filter_dto(f: &DeviceFilter) -> api::DeviceFilter {
    let split = |m: &Option<TextMatch>| match m {
        Some(TextMatch::Prefix(p)) => (Some(p.clone()), None),
        Some(TextMatch::Contains(c)) => (None, Some(c.clone())),
        None => (None, None),
    };
    let (name_prefix, name_contains) = split(&f.name);
    let (serial_prefix, serial_contains) = split(&f.serial);
    api::DeviceFilter {
        join_type: f.join_type.map(|j| j.as_str().to_owned()),
        name_prefix,
        name_contains,
        serial_prefix,
        serial_contains,
        group_tag: f.group_tag.clone(),
        os_build_min: f.os_build_min,
        os_build_max: f.os_build_max,
        last_seen_within_secs: f.last_seen_within.map(|d| d.whole_seconds()),
        include_unenrolled: f.include_unenrolled,
    }
}
