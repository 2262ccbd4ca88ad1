//! `/api/v1/schedules`: bulk requests on a group that fire on a recurrence in an IANA time zone,
//! with an optional maintenance window. Path `{id}` is a schedule id or its exact name.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use http::StatusCode;
use redeploy_core::schedule::{MaintenanceWindow, Recurrence, Schedule, TimeZone};
use redeploy_core::ActionKind;
use time::Time;

use super::auth::Caller;
use super::handlers::ApiResult;
use super::ApiError;
use crate::dto::*;
use crate::service::schedules;
use crate::state::AppState;

fn parse_tz(text: &str) -> ApiResult<TimeZone> {
    text.trim().parse::<TimeZone>().map_err(|_| {
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

fn hm(t: Time) -> String {
    if t.second() == 0 {
        format!("{:02}:{:02}", t.hour(), t.minute())
    } else {
        format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second())
    }
}

fn schedule_dto(s: &Schedule, group_name: Option<String>) -> api::Schedule {
    api::Schedule {
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
    }
}

/// The wire form of a schedule, reading its group's name now.
async fn schedule_now(state: &AppState, s: &Schedule) -> ApiResult<api::Schedule> {
    Ok(schedule_dto(s, schedules::group_name(state, s).await?))
}

/// Every schedule, ordered by name.
#[utoipa::path(get, path = "/api/v1/schedules", tag = "schedules",
    responses((status = 200, body = api::ScheduleList)))]
pub async fn list_schedules(State(state): State<AppState>) -> ApiResult<Json<api::ScheduleList>> {
    let items = schedules::list(&state)
        .await?
        .into_iter()
        .map(|(s, group)| schedule_dto(&s, group))
        .collect();
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
    let new = schedules::NewSchedule {
        name: body.name,
        group: body.group,
        kind: parse_kind(body.kind)?,
        tz: parse_tz(&body.tz)?,
        recurrence: parse_recurrence(&body.recurrence)?,
        window: body.window.as_ref().map(parse_window).transpose()?,
        enabled: body.enabled,
        confirm: body.confirm,
        refuse_past: false,
    };
    let schedule = schedules::create(&state, &caller, new).await?;
    Ok((
        StatusCode::CREATED,
        Json(schedule_now(&state, &schedule).await?),
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
    let s = schedules::find(&state, &id).await?;
    Ok(Json(schedule_now(&state, &s).await?))
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
    let change = schedules::ScheduleChange {
        name: body.name,
        group: body.group,
        kind: body.kind.map(parse_kind).transpose()?,
        tz: body.tz.as_deref().map(parse_tz).transpose()?,
        recurrence: body
            .recurrence
            .as_deref()
            .map(parse_recurrence)
            .transpose()?,
        window: body
            .window
            .map(|w| w.as_ref().map(parse_window).transpose())
            .transpose()?,
        enabled: body.enabled,
        confirm: body.confirm,
    };
    let s = schedules::change(&state, &caller, &id, change).await?;
    Ok(Json(schedule_now(&state, &s).await?))
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
    schedules::delete(&state, &caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
