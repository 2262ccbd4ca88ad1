//! `/api/v1/groups`: static and filter groups (create, list, show with a page of members,
//! rename, delete, change members) and the local-reset setting applied to every member.
//! Path `{id}` is a group id or its exact name.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use http::StatusCode;
use redeploy_core::action::Decision;
use redeploy_core::{DeviceId, Group, GroupKind};

use super::auth::Caller;
use super::common::*;
use super::handlers::{ApiResult, MAX_PAGE};
use super::ApiError;
use crate::dto::*;
use crate::service::groups;
use crate::state::AppState;

/// The wire form of a group with its members now.
fn group_dto(g: &Group, members: &[DeviceId]) -> api::Group {
    let (kind, filter) = match &g.kind {
        GroupKind::Static { .. } => ("static", None),
        GroupKind::Filter { filter } => ("filter", Some(filter_dto(filter))),
    };
    api::Group {
        id: g.id.to_string(),
        name: g.name.clone(),
        kind: kind.to_owned(),
        filter,
        member_count: members.len() as u64,
        created_at: ts(g.created_at),
    }
}

/// The wire form of a group, reading its members now.
async fn group_now(state: &AppState, g: &Group) -> ApiResult<api::Group> {
    Ok(group_dto(g, &groups::members(state, g).await?))
}

/// Every group with its member count, ordered by name.
#[utoipa::path(get, path = "/api/v1/groups", tag = "groups",
    responses((status = 200, body = api::GroupList)))]
pub async fn list_groups(State(state): State<AppState>) -> ApiResult<Json<api::GroupList>> {
    let items = groups::list(&state)
        .await?
        .iter()
        .map(|(g, members)| group_dto(g, members))
        .collect();
    Ok(Json(api::GroupList { items }))
}

/// Create a group: a filter group when `filter` is given, otherwise a static one.
#[utoipa::path(post, path = "/api/v1/groups", tag = "groups",
    request_body = api::NewGroup,
    responses(
        (status = 201, body = api::Group),
        (status = 400, body = api::Problem, content_type = "application/problem+json"),
        (status = 403, body = api::Problem, content_type = "application/problem+json"),
        (status = 404, body = api::Problem, content_type = "application/problem+json", description = "A member device is unknown"),
        (status = 409, body = api::Problem, content_type = "application/problem+json", description = "The name is taken"),
    ))]
pub async fn create_group(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Result<Json<api::NewGroup>, JsonRejection>,
) -> ApiResult<Response> {
    let Json(body) = body?;
    let members = match &body.filter {
        Some(_) if !body.members.is_empty() => {
            return Err(ApiError::bad_request(
                "a group has either a filter or static members, not both",
            ))
        }
        Some(f) => groups::NewMembers::Filter(filter_from_dto(f)?),
        None => groups::NewMembers::Static(device_ids("members", &body.members)?),
    };
    let group = groups::create(&state, &caller, &body.name, members).await?;
    Ok((StatusCode::CREATED, Json(group_now(&state, &group).await?)).into_response())
}

/// One group and a page of its members (ordered by device id), with their readiness.
#[utoipa::path(get, path = "/api/v1/groups/{id}", tag = "groups",
    params(("id" = String, Path, description = "Group id or exact name"), api::GroupMembersQuery),
    responses(
        (status = 200, body = api::GroupDetail),
        (status = 400, body = api::Problem, content_type = "application/problem+json"),
        (status = 404, body = api::Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_group(
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<api::GroupMembersQuery>, QueryRejection>,
) -> ApiResult<Json<api::GroupDetail>> {
    let Query(q) = query?;
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_PAGE}"
        )));
    }
    let after = q
        .cursor
        .as_deref()
        .map(|c| {
            DeviceId::parse(c).map_err(|_| ApiError::bad_request(format!("invalid cursor {c:?}")))
        })
        .transpose()?;
    let group = groups::find(&state, &id).await?;
    let ids = groups::members(&state, &group).await?;
    let (page, next) = groups::members_page(&state, &ids, after, limit).await?;
    Ok(Json(api::GroupDetail {
        group: group_dto(&group, &ids),
        members: page.iter().map(|(d, r)| device_dto(d, r)).collect(),
        next,
    }))
}

/// Rename a group.
#[utoipa::path(patch, path = "/api/v1/groups/{id}", tag = "groups",
    params(("id" = String, Path, description = "Group id or exact name")),
    request_body = api::GroupPatch,
    responses(
        (status = 200, body = api::Group),
        (status = 400, body = api::Problem, content_type = "application/problem+json"),
        (status = 403, body = api::Problem, content_type = "application/problem+json"),
        (status = 404, body = api::Problem, content_type = "application/problem+json"),
        (status = 409, body = api::Problem, content_type = "application/problem+json", description = "The name is taken"),
    ))]
pub async fn rename_group(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Result<Json<api::GroupPatch>, JsonRejection>,
) -> ApiResult<Json<api::Group>> {
    let Json(body) = body?;
    let group = groups::rename(&state, &caller, &id, &body.name).await?;
    Ok(Json(group_now(&state, &group).await?))
}

/// Delete a group (never its devices). Refused while a schedule targets it.
#[utoipa::path(delete, path = "/api/v1/groups/{id}", tag = "groups",
    params(("id" = String, Path, description = "Group id or exact name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, body = api::Problem, content_type = "application/problem+json"),
        (status = 404, body = api::Problem, content_type = "application/problem+json"),
        (status = 409, body = api::Problem, content_type = "application/problem+json", description = "A schedule targets the group"),
    ))]
pub async fn delete_group(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    groups::delete(&state, &caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Add and remove members of a static group (a filter group's members come from its filter).
#[utoipa::path(post, path = "/api/v1/groups/{id}/members", tag = "groups",
    params(("id" = String, Path, description = "Group id or exact name")),
    request_body = api::GroupMembersChange,
    responses(
        (status = 200, body = api::Group),
        (status = 400, body = api::Problem, content_type = "application/problem+json"),
        (status = 403, body = api::Problem, content_type = "application/problem+json"),
        (status = 404, body = api::Problem, content_type = "application/problem+json"),
        (status = 409, body = api::Problem, content_type = "application/problem+json", description = "A filter group"),
    ))]
pub async fn change_members(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Result<Json<api::GroupMembersChange>, JsonRejection>,
) -> ApiResult<Json<api::Group>> {
    let Json(body) = body?;
    let add = device_ids("add", &body.add)?;
    let remove = device_ids("remove", &body.remove)?;
    let group = groups::change_members(&state, &caller, &id, &add, &remove).await?;
    Ok(Json(group_now(&state, &group).await?))
}

/// Allow or forbid local Autopilot Reset (CTRL+WIN+R) on every member: one policy action per
/// device, with a result per device (a device that cannot take it says why).
#[utoipa::path(post, path = "/api/v1/groups/{id}/local-reset", tag = "groups",
    params(("id" = String, Path, description = "Group id or exact name")),
    request_body = api::LocalResetPolicy,
    responses(
        (status = 202, body = api::GroupLocalResetResult),
        (status = 403, body = api::Problem, content_type = "application/problem+json"),
        (status = 404, body = api::Problem, content_type = "application/problem+json"),
    ))]
pub async fn group_local_reset(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Result<Json<api::LocalResetPolicy>, JsonRejection>,
) -> ApiResult<Response> {
    let Json(body) = body?;
    let decisions = groups::local_reset(&state, &caller, &id, body.allowed).await?;
    let items = decisions
        .into_iter()
        .map(|(device, decision)| match decision {
            Decision::Created(a) => api::DeviceResult {
                device_id: device.to_string(),
                action: Some(action_dto(&a)),
                error: None,
            },
            Decision::NotFound => api::DeviceResult {
                device_id: device.to_string(),
                action: None,
                error: Some(format!("device {device} not found")),
            },
        })
        .collect();
    Ok((
        StatusCode::ACCEPTED,
        Json(api::GroupLocalResetResult { items }),
    )
        .into_response())
}
