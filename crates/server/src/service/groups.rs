//! Groups as every surface manages them: found by id or exact name (admins type names), listed
//! with their members now, created (static or filter), renamed, deleted (never while a schedule
//! targets one), static members changed, a page of members with readiness, the local-reset
//! setting applied to every member in one transaction, and the typed-confirmation rule for
//! erasing a whole group. Each change is audited.

use redeploy_core::action::{self, is_erasing, Decision};
use redeploy_core::{
    ActionKind, Device, DeviceFilter, DeviceId, Group, GroupId, GroupKind, Readiness, Role,
    StoreError,
};

use super::actions::{action_settings, role_for};
use super::{audit, Caller, Result, ServiceError};
use crate::state::AppState;

/// The group whose id or exact name is `text`: an id is tried first, then the name (a name
/// that happens to look like a UUID still works).
pub async fn find(state: &AppState, text: &str) -> Result<Group> {
    if let Ok(id) = GroupId::parse(text) {
        if let Some(g) = state.store.group(id).await? {
            return Ok(g);
        }
    }
    state
        .store
        .group_by_name(text)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("no group with id or name {text:?}")))
}

/// The group `id`, or [`ServiceError::NotFound`].
pub async fn get(state: &AppState, id: GroupId) -> Result<Group> {
    state
        .store
        .group(id)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("There is no group {id}.")))
}

/// The members of `group` now (a filter group's are computed), ordered by device id.
pub async fn members(state: &AppState, group: &Group) -> Result<Vec<DeviceId>> {
    Ok(state
        .store
        .group_member_ids(group.id, state.clock.now())
        .await?)
}

/// Every group, ordered by name, with its members now.
pub async fn list(state: &AppState) -> Result<Vec<(Group, Vec<DeviceId>)>> {
    let mut out = Vec::new();
    for g in state.store.list_groups().await? {
        let m = members(state, &g).await?;
        out.push((g, m));
    }
    Ok(out)
}

/// A store conflict on a group's name, said as an admin reads it.
fn name_taken(name: &str, e: StoreError) -> ServiceError {
    match e {
        StoreError::Conflict(_) => {
            ServiceError::Conflict(format!("a group named {name:?} already exists"))
        }
        other => other.into(),
    }
}

/// A group name as typed: trimmed, not empty, at most 200 characters.
pub fn valid_name(name: &str) -> Result<String> {
    let name = name.trim();
    if name.is_empty() {
        return Err(ServiceError::Invalid("name must not be empty".into()));
    }
    if name.chars().count() > 200 {
        return Err(ServiceError::Invalid("name: at most 200 characters".into()));
    }
    Ok(name.to_owned())
}

/// What a new group holds.
#[derive(Debug, Clone)]
pub enum NewMembers {
    /// These devices (duplicates dropped).
    Static(Vec<DeviceId>),
    /// Whatever matches the filter at the time it is read.
    Filter(DeviceFilter),
}

/// Creates a group (operators): audited as `group.create` naming its static members.
pub async fn create(
    state: &AppState,
    caller: &Caller,
    name: &str,
    members: NewMembers,
) -> Result<Group> {
    caller
        .require(state, Role::Operator, "create a group", None)
        .await?;
    let name = valid_name(name)?;
    let now = state.clock.now();
    let group = match members {
        NewMembers::Filter(filter) => Group::new_filter(GroupId::generate(), name, filter, now),
        NewMembers::Static(mut members) => {
            members.sort();
            members.dedup();
            Group::new_static(GroupId::generate(), name, members, now)
        }
    };
    state
        .store
        .create_group(&group)
        .await
        .map_err(|e| name_taken(&group.name, e))?;
    let count = self::members(state, &group).await?.len();
    let (kind, targets) = match &group.kind {
        GroupKind::Static { members } => ("static", members.clone()),
        GroupKind::Filter { .. } => ("filter", Vec::new()),
    };
    audit::append(
        state,
        audit::by(state, caller, "group.create")
            .targets(targets)
            .details(format!(
                "{} {:?} ({kind}, {count} members)",
                group.id, group.name
            )),
    )
    .await?;
    Ok(group)
}

/// Renames the group `text` (operators); a taken name is a conflict.
pub async fn rename(state: &AppState, caller: &Caller, text: &str, name: &str) -> Result<Group> {
    caller
        .require(state, Role::Operator, "rename a group", None)
        .await?;
    let name = valid_name(name)?;
    let mut group = find(state, text).await?;
    state
        .store
        .rename_group(group.id, &name)
        .await
        .map_err(|e| name_taken(&name, e))?;
    audit::append(
        state,
        audit::by(state, caller, "group.rename")
            .details(format!("{} {:?} -> {name:?}", group.id, group.name)),
    )
    .await?;
    group.name = name;
    Ok(group)
}

/// Deletes the group `text` (never its devices; operators). Refused while a schedule targets it.
pub async fn delete(state: &AppState, caller: &Caller, text: &str) -> Result<()> {
    caller
        .require(state, Role::Operator, "delete a group", None)
        .await?;
    let group = find(state, text).await?;
    let users: Vec<String> = state
        .store
        .list_schedules()
        .await?
        .into_iter()
        .filter(|s| s.group == group.id)
        .map(|s| format!("{:?}", s.name))
        .collect();
    if !users.is_empty() {
        return Err(ServiceError::Conflict(format!(
            "group {:?} is used by schedule(s) {}: delete those first",
            group.name,
            users.join(", ")
        )));
    }
    state.store.delete_group(group.id).await?;
    audit::append(
        state,
        audit::by(state, caller, "group.delete").details(format!("{} {:?}", group.id, group.name)),
    )
    .await?;
    Ok(())
}

/// Adds and removes members of the static group `text` (operators); a filter group's members
/// come from its filter (conflict).
pub async fn change_members(
    state: &AppState,
    caller: &Caller,
    text: &str,
    add: &[DeviceId],
    remove: &[DeviceId],
) -> Result<Group> {
    caller
        .require(state, Role::Operator, "change group members", None)
        .await?;
    let group = find(state, text).await?;
    if matches!(group.kind, GroupKind::Filter { .. }) {
        return Err(ServiceError::Conflict(format!(
            "group {:?} is a filter group: its members come from its filter",
            group.name
        )));
    }
    if !add.is_empty() {
        state.store.add_group_members(group.id, add).await?;
    }
    if !remove.is_empty() {
        state.store.remove_group_members(group.id, remove).await?;
    }
    audit::append(
        state,
        audit::by(state, caller, "group.members")
            .targets(add.iter().chain(remove).copied())
            .details(format!(
                "{} {:?}: {} added, {} removed",
                group.id,
                group.name,
                add.len(),
                remove.len()
            )),
    )
    .await?;
    Ok(group)
}

/// A page of `members` (ordered by device id) after `after`, with their readiness: up to
/// `limit` devices and the cursor (the last id shown) when more follow. A member that is gone
/// is skipped.
pub async fn members_page(
    state: &AppState,
    members: &[DeviceId],
    after: Option<DeviceId>,
    limit: u32,
) -> Result<(Vec<(Device, Readiness)>, Option<String>)> {
    let ids: Vec<DeviceId> = members
        .iter()
        .copied()
        .filter(|d| after.is_none_or(|a| *d > a))
        .collect();
    // The page's devices and their readiness in one read each (members that are gone are
    // skipped, so read a little more than a page).
    let mut page = Vec::new();
    let mut start = 0;
    while start < ids.len() {
        let end = (start + limit as usize + 16).min(ids.len());
        let found = state.store.devices_by_ids(&ids[start..end]).await?;
        let devices: Vec<Device> = ids[start..end]
            .iter()
            .filter_map(|id| found.get(id).cloned())
            .collect();
        let ready = super::devices::readiness_of_many(state, &devices).await?;
        for (d, r) in devices.into_iter().zip(ready) {
            let id = d.id;
            page.push((d, r));
            if page.len() as u32 == limit {
                let at = ids.iter().position(|m| *m == id).unwrap_or(ids.len());
                let next = (at + 1 < ids.len()).then(|| id.to_string());
                return Ok((page, next));
            }
        }
        start = end;
    }
    Ok((page, None))
}

/// Allows or forbids local Autopilot Reset on every member of the group `text`: one policy
/// action per device, all of them and the group's `group.local_reset` audit entry in one
/// transaction, with a decision per device.
pub async fn local_reset(
    state: &AppState,
    caller: &Caller,
    text: &str,
    allowed: bool,
) -> Result<Vec<(DeviceId, Decision)>> {
    let group = find(state, text).await?;
    let kind = ActionKind::SetLocalResetPolicy(allowed);
    caller
        .require(
            state,
            role_for(kind),
            &format!("{} on group {:?}", kind.code(), group.name),
            None,
        )
        .await?;
    let now = state.clock.now();
    let members = members(state, &group).await?;
    let summary = audit::by(state, caller, "group.local_reset")
        .targets(members.clone())
        .details(format!(
            "{} on group {:?} ({}): {} devices",
            kind.code(),
            group.name,
            group.id,
            members.len()
        ));
    Ok(action::request_for_devices(
        state.store.as_ref(),
        &members,
        kind,
        &caller.actor(),
        now,
        &action_settings(state),
        summary,
    )
    .await?)
}

/// A reset or wipe of every device of a group needs the group's exact name typed back: a
/// conflict saying exactly what to send (and what to pass to the CLI) otherwise.
pub fn require_confirmation(kind: ActionKind, group: &Group, confirm: Option<&str>) -> Result<()> {
    if !is_erasing(kind) || confirm == Some(group.name.as_str()) {
        return Ok(());
    }
    let name = &group.name;
    let given = match confirm {
        Some(c) => format!(" ({c:?} does not match)"),
        None => String::new(),
    };
    Err(ServiceError::Conflict(format!(
        "{} erases every device in group {name:?}: to confirm, type the group name {name:?} \
         (API: send \"confirm\": {name:?}; CLI: --confirm {name:?}){given}",
        kind.name()
    )))
}
