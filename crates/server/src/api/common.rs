//! Helpers shared by the group, bulk, schedule and Autopilot handlers: finding a group or a
//! schedule by id or exact name (admins type names), device filters between wire and domain,
//! audit entries with targets, and the typed-confirmation rule for erasing a group.

use http::StatusCode;
use redeploy_core::action::is_erasing;
use redeploy_core::{
    ActionKind, AuditOutcome, DeviceFilter, DeviceId, Group, GroupId, JoinType, NewAuditEvent,
    ScheduleId, TextMatch,
};
use time::Duration;

use super::auth::Caller;
use super::handlers::ApiResult;
use super::ApiError;
use crate::state::AppState;

/// The group whose id or exact name is `text`: an id is tried first, then the name (a name
/// that happens to look like a UUID still works).
pub(crate) async fn find_group(state: &AppState, text: &str) -> ApiResult<Group> {
    if let Ok(id) = GroupId::parse(text) {
        if let Some(g) = state.store.group(id).await? {
            return Ok(g);
        }
    }
    state
        .store
        .group_by_name(text)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no group with id or name {text:?}")))
}

/// The schedule whose id or exact name is `text`.
pub(crate) async fn find_schedule(
    state: &AppState,
    text: &str,
) -> ApiResult<redeploy_core::schedule::Schedule> {
    if let Ok(id) = ScheduleId::parse(text) {
        if let Some(s) = state.store.schedule(id).await? {
            return Ok(s);
        }
    }
    state
        .store
        .list_schedules()
        .await?
        .into_iter()
        .find(|s| s.name == text)
        .ok_or_else(|| ApiError::not_found(format!("no schedule with id or name {text:?}")))
}

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

/// Appends a successful audit event by the caller naming `targets`.
pub(crate) async fn audit_targets(
    state: &AppState,
    caller: &Caller,
    action: &str,
    targets: Vec<DeviceId>,
    details: String,
) -> ApiResult<()> {
    state
        .store
        .append_audit(NewAuditEvent {
            at: state.clock.now(),
            actor: caller.actor(),
            action: action.to_owned(),
            targets,
            batch: None,
            outcome: AuditOutcome::Success,
            details,
        })
        .await?;
    Ok(())
}

/// A reset or wipe of every device of a group needs the group's exact name typed back: 409
/// saying exactly what to send (and what to pass to the CLI) otherwise.
pub(crate) fn require_confirmation(
    kind: ActionKind,
    group: &Group,
    confirm: Option<&str>,
) -> ApiResult<()> {
    if !is_erasing(kind) || confirm == Some(group.name.as_str()) {
        return Ok(());
    }
    let name = &group.name;
    let given = match confirm {
        Some(c) => format!(" ({c:?} does not match)"),
        None => String::new(),
    };
    Err(ApiError::new(
        StatusCode::CONFLICT,
        format!(
            "{} erases every device in group {name:?}: to confirm, send \"confirm\": {name:?} \
             (CLI: --confirm {name:?}){given}",
            kind.name()
        ),
    ))
}
