//! `/api/v1/groups`: static and filter groups (create, list, show with a page of members,
//! rename, delete, change members) and the local-reset setting applied to every member.
//! Path `{id}` is a group id or its exact name.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use http::StatusCode;
use redeploy_core::action;
use redeploy_core::{
    ActionKind, AuditOutcome, DeviceId, Group, GroupId, GroupKind, NewAuditEvent, Role,
};

use super::auth::Caller;
use super::common::*;
use super::convert::*;
use super::handlers::{ApiResult, MAX_PAGE};
use super::ApiError;
use crate::service::actions::action_settings;
use crate::state::AppState;

/// The wire group and its members now.
async fn group_dto(state: &AppState, g: &Group) -> ApiResult<(api::Group, Vec<DeviceId>)> {
    let members = state
        .store
        .group_member_ids(g.id, state.clock.now())
        .await?;
    let (kind, filter) = match &g.kind {
        GroupKind::Static { .. } => ("static", None),
        GroupKind::Filter { filter } => ("filter", Some(filter_dto(filter))),
    };
    Ok((
        api::Group {
            id: g.id.to_string(),
            name: g.name.clone(),
            kind: kind.to_owned(),
            filter,
            member_count: members.len() as u64,
            created_at: ts(g.created_at),
        },
        members,
    ))
}

fn valid_name(name: &str) -> ApiResult<String> {
    let name = name.trim();
    if name.is_empty() {
        return Err(ApiError::bad_request("name must not be empty"));
    }
    if name.chars().count() > 200 {
        return Err(ApiError::bad_request("name: at most 200 characters"));
    }
    Ok(name.to_owned())
}

/// Every group with its member count, ordered by name.
#[utoipa::path(get, path = "/api/v1/groups", tag = "groups",
    responses((status = 200, body = api::GroupList)))]
pub async fn list_groups(State(state): State<AppState>) -> ApiResult<Json<api::GroupList>> {
    let mut items = Vec::new();
    for g in state.store.list_groups().await? {
        items.push(group_dto(&state, &g).await?.0);
    }
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
    caller
        .require(&state, Role::Operator, "create a group", None)
        .await?;
    let name = valid_name(&body.name)?;
    let now = state.clock.now();
    let group = match &body.filter {
        Some(f) => {
            if !body.members.is_empty() {
                return Err(ApiError::bad_request(
                    "a group has either a filter or static members, not both",
                ));
            }
            Group::new_filter(GroupId::generate(), name, filter_from_dto(f)?, now)
        }
        None => {
            let mut members = device_ids("members", &body.members)?;
            members.sort();
            members.dedup();
            Group::new_static(GroupId::generate(), name, members, now)
        }
    };
    state.store.create_group(&group).await?;
    let (dto, members) = group_dto(&state, &group).await?;
    audit_targets(
        &state,
        &caller,
        "group.create",
        match &group.kind {
            GroupKind::Static { members } => members.clone(),
            GroupKind::Filter { .. } => Vec::new(),
        },
        format!(
            "{} {:?} ({}, {} members)",
            group.id,
            group.name,
            dto.kind,
            members.len()
        ),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(dto)).into_response())
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
    let group = find_group(&state, &id).await?;
    let (dto, mut ids) = group_dto(&state, &group).await?;
    // Member ids come ordered by device id, so the last id of a page is the cursor.
    if let Some(after) = after {
        ids.retain(|d| *d > after);
    }
    let now = state.clock.now();
    let mut members = Vec::new();
    let mut next = None;
    for (i, member) in ids.iter().enumerate() {
        let Some(d) = state.store.device(*member).await? else {
            continue;
        };
        let acts = state.store.actions_of_device(d.id).await?;
        members.push(device_dto(&d, &readiness(&d, &acts, now)));
        if members.len() as u32 == limit {
            if i + 1 < ids.len() {
                next = Some(member.to_string());
            }
            break;
        }
    }
    Ok(Json(api::GroupDetail {
        group: dto,
        members,
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
    caller
        .require(&state, Role::Operator, "rename a group", None)
        .await?;
    let name = valid_name(&body.name)?;
    let mut group = find_group(&state, &id).await?;
    state.store.rename_group(group.id, &name).await?;
    audit_targets(
        &state,
        &caller,
        "group.rename",
        Vec::new(),
        format!("{} {:?} -> {name:?}", group.id, group.name),
    )
    .await?;
    group.name = name;
    Ok(Json(group_dto(&state, &group).await?.0))
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
    caller
        .require(&state, Role::Operator, "delete a group", None)
        .await?;
    let group = find_group(&state, &id).await?;
    let users: Vec<String> = state
        .store
        .list_schedules()
        .await?
        .into_iter()
        .filter(|s| s.group == group.id)
        .map(|s| format!("{:?}", s.name))
        .collect();
    if !users.is_empty() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "group {:?} is used by schedule(s) {}: delete those first",
                group.name,
                users.join(", ")
            ),
        ));
    }
    state.store.delete_group(group.id).await?;
    audit_targets(
        &state,
        &caller,
        "group.delete",
        Vec::new(),
        format!("{} {:?}", group.id, group.name),
    )
    .await?;
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
    caller
        .require(&state, Role::Operator, "change group members", None)
        .await?;
    let add = device_ids("add", &body.add)?;
    let remove = device_ids("remove", &body.remove)?;
    let group = find_group(&state, &id).await?;
    if matches!(group.kind, GroupKind::Filter { .. }) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "group {:?} is a filter group: its members come from its filter",
                group.name
            ),
        ));
    }
    if !add.is_empty() {
        state.store.add_group_members(group.id, &add).await?;
    }
    if !remove.is_empty() {
        state.store.remove_group_members(group.id, &remove).await?;
    }
    audit_targets(
        &state,
        &caller,
        "group.members",
        add.iter().chain(&remove).copied().collect(),
        format!(
            "{} {:?}: {} added, {} removed",
            group.id,
            group.name,
            add.len(),
            remove.len()
        ),
    )
    .await?;
    Ok(Json(group_dto(&state, &group).await?.0))
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
    let group = find_group(&state, &id).await?;
    let kind = ActionKind::SetLocalResetPolicy(body.allowed);
    caller
        .require(
            &state,
            crate::service::actions::role_for(kind),
            &format!("{} on group {:?}", kind.code(), group.name),
            None,
        )
        .await?;
    let now = state.clock.now();
    let members = state.store.group_member_ids(group.id, now).await?;
    // One transaction: every member's action and the group's own audit entry, or nothing.
    let summary = NewAuditEvent {
        at: now,
        actor: caller.actor(),
        action: "group.local_reset".to_owned(),
        targets: members.clone(),
        batch: None,
        outcome: AuditOutcome::Success,
        details: format!(
            "{} on group {:?} ({}): {} devices",
            kind.code(),
            group.name,
            group.id,
            members.len()
        ),
    };
    let decisions = action::request_for_devices(
        state.store.as_ref(),
        &members,
        kind,
        &caller.actor(),
        now,
        &action_settings(&state),
        summary,
    )
    .await?;
    let items = decisions
        .into_iter()
        .map(|(device, decision)| match decision {
            action::Decision::Created(a) => api::DeviceResult {
                device_id: device.to_string(),
                action: Some(action_dto(&a)),
                error: None,
            },
            action::Decision::NotFound => api::DeviceResult {
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
