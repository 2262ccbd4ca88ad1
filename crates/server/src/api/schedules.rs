//! `/api/v1/schedules`: bulk requests on a group that fire on a recurrence in an IANA time zone,
//! with an optional maintenance window. Path `{id}` is a schedule id or its exact name.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono_tz::Tz;
use http::StatusCode;
use redeploy_core::schedule::{next_occurrence, MaintenanceWindow, Recurrence, Schedule};
use redeploy_core::{ActionKind, Role, ScheduleId};
use time::Time;

use super::auth::Caller;
use super::common::*;
use super::convert::*;
use super::handlers::ApiResult;
use super::ApiError;
use crate::state::AppState;

fn parse_tz(text: &str) -> ApiResult<Tz> {
    text.trim().parse::<Tz>().map_err(|_| {
        ApiError::bad_request(format!(
            "tz: {text:?} is not an IANA time zone (e.g. Europe/Paris, America/New_York, UTC)"
        ))
    })
}

/// The recurrence text, accepting `HH:MM` where the stored form has `HH:MM:SS`.
fn parse_recurrence(text: &str) -> ApiResult<Recurrence> {
    let text = text.trim();
    Recurrence::from_text(text)
        .or_else(|_| Recurrence::from_text(&format!("{text}:00")))
        .map_err(|_| {
            ApiError::bad_request(format!(
                "recurrence: {text:?} is not one of daily:HH:MM, weekly:mon,fri:HH:MM or \
                 once:YYYY-MM-DDTHH:MM (e.g. daily:02:00)"
            ))
        })
}

fn parse_time(field: &str, text: &str) -> ApiResult<Time> {
    let bad = || ApiError::bad_request(format!("{field}: {text:?} is not a time HH:MM"));
    let parts: Vec<&str> = text.trim().split(':').collect();
    if !(2..=3).contains(&parts.len()) {
        return Err(bad());
    }
    let num = |s: &str| s.parse::<u8>().map_err(|_| bad());
    let second = match parts.get(2) {
        Some(s) => num(s)?,
        None => 0,
    };
    Time::from_hms(num(parts[0])?, num(parts[1])?, second).map_err(|_| bad())
}

fn parse_window(w: &api::TimeWindow) -> ApiResult<MaintenanceWindow> {
    let window = MaintenanceWindow {
        start: parse_time("window.start", &w.start)?,
        end: parse_time("window.end", &w.end)?,
    };
    if window.start == window.end {
        return Err(ApiError::bad_request(
            "window: start and end are the same time",
        ));
    }
    Ok(window)
}

fn parse_kind(kind: api::ActionKind) -> ApiResult<ActionKind> {
    kind_from_dto(kind)
        .ok_or_else(|| ApiError::bad_request("kind: set_local_reset_policy cannot be scheduled"))
}

/// The group named in a body: a missing one is a bad field, not a missing resource.
async fn body_group(state: &AppState, text: &str) -> ApiResult<redeploy_core::Group> {
    find_group(state, text).await.map_err(|e| {
        if e.0.status == StatusCode::NOT_FOUND.as_u16() {
            ApiError::bad_request(format!("group: no group with id or name {text:?}"))
        } else {
            e
        }
    })
}

fn hm(t: Time) -> String {
    if t.second() == 0 {
        format!("{:02}:{:02}", t.hour(), t.minute())
    } else {
        format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second())
    }
}

async fn schedule_dto(state: &AppState, s: &Schedule) -> ApiResult<api::Schedule> {
    let group_name = state.store.group(s.group).await?.map(|g| g.name);
    Ok(api::Schedule {
        id: s.id.to_string(),
        name: s.name.clone(),
        group_id: s.group.to_string(),
        group_name,
        kind: kind_dto(s.kind),
        tz: s.tz.name().to_owned(),
        recurrence: s.recurrence.to_text(),
        window: s.window.map(|w| api::TimeWindow {
            start: hm(w.start),
            end: hm(w.end),
        }),
        enabled: s.enabled,
        next_run: s.next_run.map(ts),
        last_run: s.last_run.map(ts),
    })
}

/// Every schedule, ordered by name.
#[utoipa::path(get, path = "/api/v1/schedules", tag = "schedules",
    responses((status = 200, body = api::ScheduleList)))]
pub async fn list_schedules(State(state): State<AppState>) -> ApiResult<Json<api::ScheduleList>> {
    let mut items = Vec::new();
    for s in state.store.list_schedules().await? {
        items.push(schedule_dto(&state, &s).await?);
    }
    Ok(Json(api::ScheduleList { items }))
}

/// Create a schedule. A reset or wipe needs `confirm` equal to the group's name.
#[utoipa::path(post, path = "/api/v1/schedules", tag = "schedules",
    request_body = api::NewSchedule,
    responses(
        (status = 201, body = api::Schedule),
        (status = 400, body = api::Problem, content_type = "application/problem+json", description = "A bad field (tz, recurrence, window, group, kind, name), named in the detail"),
        (status = 403, body = api::Problem, content_type = "application/problem+json"),
        (status = 409, body = api::Problem, content_type = "application/problem+json", description = "The name is taken, or the confirmation is missing"),
    ))]
pub async fn create_schedule(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Result<Json<api::NewSchedule>, JsonRejection>,
) -> ApiResult<Response> {
    let Json(body) = body?;
    caller
        .require(&state, Role::Operator, "create a schedule", None)
        .await?;
    let name = body.name.trim();
    if name.is_empty() {
        return Err(ApiError::bad_request("name must not be empty"));
    }
    let kind = parse_kind(body.kind)?;
    let tz = parse_tz(&body.tz)?;
    let recurrence = parse_recurrence(&body.recurrence)?;
    let window = body.window.as_ref().map(parse_window).transpose()?;
    let group = body_group(&state, &body.group).await?;
    require_confirmation(kind, &group, body.confirm.as_deref())?;
    let now = state.clock.now();
    let mut schedule = Schedule {
        id: ScheduleId::generate(),
        name: name.to_owned(),
        group: group.id,
        kind,
        tz,
        recurrence,
        window,
        enabled: body.enabled,
        next_run: None,
        last_run: None,
    };
    schedule.next_run = next_occurrence(&schedule, now);
    state.store.create_schedule(&schedule).await?;
    audit_targets(
        &state,
        &caller,
        "schedule.create",
        Vec::new(),
        format!(
            "{} {:?}: {} on group {:?}, {} {}",
            schedule.id,
            schedule.name,
            kind.code(),
            group.name,
            schedule.recurrence.to_text(),
            tz.name()
        ),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(schedule_dto(&state, &schedule).await?),
    )
        .into_response())
}

/// One schedule.
#[utoipa::path(get, path = "/api/v1/schedules/{id}", tag = "schedules",
    params(("id" = String, Path, description = "Schedule id or exact name")),
    responses(
        (status = 200, body = api::Schedule),
        (status = 404, body = api::Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_schedule(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<api::Schedule>> {
    let s = find_schedule(&state, &id).await?;
    Ok(Json(schedule_dto(&state, &s).await?))
}

/// Change a schedule (only the fields given). Making it a reset or wipe of a group, or moving a
/// reset or wipe to another group, needs `confirm` equal to the group's name.
#[utoipa::path(patch, path = "/api/v1/schedules/{id}", tag = "schedules",
    params(("id" = String, Path, description = "Schedule id or exact name")),
    request_body = api::SchedulePatch,
    responses(
        (status = 200, body = api::Schedule),
        (status = 400, body = api::Problem, content_type = "application/problem+json"),
        (status = 403, body = api::Problem, content_type = "application/problem+json"),
        (status = 404, body = api::Problem, content_type = "application/problem+json"),
        (status = 409, body = api::Problem, content_type = "application/problem+json"),
    ))]
pub async fn update_schedule(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Result<Json<api::SchedulePatch>, JsonRejection>,
) -> ApiResult<Json<api::Schedule>> {
    let Json(body) = body?;
    caller
        .require(&state, Role::Operator, "change a schedule", None)
        .await?;
    let mut s = find_schedule(&state, &id).await?;
    let mut retime = false;
    let mut retarget = false;
    if let Some(name) = &body.name {
        let name = name.trim();
        if name.is_empty() {
            return Err(ApiError::bad_request("name must not be empty"));
        }
        s.name = name.to_owned();
    }
    if let Some(kind) = body.kind {
        let kind = parse_kind(kind)?;
        retarget |= kind != s.kind;
        s.kind = kind;
    }
    if let Some(tz) = &body.tz {
        s.tz = parse_tz(tz)?;
        retime = true;
    }
    if let Some(r) = &body.recurrence {
        s.recurrence = parse_recurrence(r)?;
        retime = true;
    }
    if let Some(w) = &body.window {
        s.window = w.as_ref().map(parse_window).transpose()?;
    }
    if let Some(enabled) = body.enabled {
        retime |= enabled != s.enabled;
        s.enabled = enabled;
    }
    let group = match &body.group {
        Some(g) => {
            let group = body_group(&state, g).await?;
            retarget |= group.id != s.group;
            s.group = group.id;
            Some(group)
        }
        None => state.store.group(s.group).await?,
    };
    if retarget {
        if let Some(group) = &group {
            require_confirmation(s.kind, group, body.confirm.as_deref())?;
        }
    }
    if retime {
        // Only a changed time recomputes the next run: a firing already due stays due.
        s.next_run = next_occurrence(&s, state.clock.now());
    }
    state.store.update_schedule(&s).await?;
    audit_targets(
        &state,
        &caller,
        "schedule.update",
        Vec::new(),
        format!(
            "{} {:?}: {} {} {}, {}",
            s.id,
            s.name,
            s.kind.code(),
            s.recurrence.to_text(),
            s.tz.name(),
            if s.enabled { "enabled" } else { "disabled" }
        ),
    )
    .await?;
    Ok(Json(schedule_dto(&state, &s).await?))
}

/// Delete a schedule.
#[utoipa::path(delete, path = "/api/v1/schedules/{id}", tag = "schedules",
    params(("id" = String, Path, description = "Schedule id or exact name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, body = api::Problem, content_type = "application/problem+json"),
        (status = 404, body = api::Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete_schedule(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller
        .require(&state, Role::Operator, "delete a schedule", None)
        .await?;
    let s = find_schedule(&state, &id).await?;
    state.store.delete_schedule(s.id).await?;
    audit_targets(
        &state,
        &caller,
        "schedule.delete",
        Vec::new(),
        format!("{} {:?}", s.id, s.name),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
