//! Schedules as every surface manages them: bulk requests on a group that fire on a recurrence
//! in an IANA time zone, optionally inside a maintenance window. Found by id or exact name,
//! listed with their group's name, created, changed, enabled or disabled, deleted — operators
//! only, each change audited. Making a schedule erase a group (a reset or wipe), or pointing
//! such a schedule at another group, needs the group's name typed back, on every surface.

use redeploy_core::batch::WaveSettings;
use redeploy_core::schedule::{
    self, next_occurrence, MaintenanceWindow, Recurrence, Schedule, TimeZone,
};
use redeploy_core::{ActionKind, Group, Role, ScheduleId, StoreError};

use super::actions::action_settings;
use super::groups::{self, require_confirmation};
use super::{audit, Caller, Result, ServiceError};
use crate::state::AppState;

/// The schedule whose id or exact name is `text`.
pub async fn find(state: &AppState, text: &str) -> Result<Schedule> {
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
        .ok_or_else(|| ServiceError::NotFound(format!("no schedule with id or name {text:?}")))
}

/// Every schedule, ordered by name, with the name of its group (`None` when it is gone).
pub async fn list(state: &AppState) -> Result<Vec<(Schedule, Option<String>)>> {
    let mut out = Vec::new();
    for s in state.store.list_schedules().await? {
        let group = group_name(state, &s).await?;
        out.push((s, group));
    }
    Ok(out)
}

/// The name of the schedule's group, `None` when the group is gone.
pub async fn group_name(state: &AppState, s: &Schedule) -> Result<Option<String>> {
    Ok(state.store.group(s.group).await?.map(|g| g.name))
}

/// What a new schedule is to be.
#[derive(Debug, Clone)]
pub struct NewSchedule {
    pub name: String,
    /// The group's id or exact name.
    pub group: String,
    pub kind: ActionKind,
    pub tz: TimeZone,
    pub recurrence: Recurrence,
    pub window: Option<MaintenanceWindow>,
    pub enabled: bool,
    /// The group's name typed back (needed when `kind` erases the PCs).
    pub confirm: Option<String>,
    /// Refuse a schedule that would never run (a one-off already past) instead of storing it.
    pub refuse_past: bool,
}

/// The group a request names: one that does not exist is a bad field, not a missing resource.
async fn named_group(state: &AppState, text: &str) -> Result<Group> {
    groups::find(state, text).await.map_err(|e| match e {
        ServiceError::NotFound(_) => {
            ServiceError::Invalid(format!("group: no group with id or name {text:?}"))
        }
        other => other,
    })
}

fn valid_name(name: &str) -> Result<String> {
    let name = name.trim();
    if name.is_empty() {
        return Err(ServiceError::Invalid("name must not be empty".into()));
    }
    Ok(name.to_owned())
}

fn name_taken(name: &str) -> impl FnOnce(StoreError) -> ServiceError + '_ {
    move |e| match e {
        StoreError::Conflict(_) => {
            ServiceError::Conflict(format!("a schedule named {name:?} already exists"))
        }
        other => other.into(),
    }
}

/// Creates a schedule (operators). A one-off already past never runs; with `refuse_past` it is
/// refused instead.
pub async fn create(state: &AppState, caller: &Caller, new: NewSchedule) -> Result<Schedule> {
    caller
        .require(state, Role::Operator, "create a schedule", None)
        .await?;
    let name = valid_name(&new.name)?;
    let group = named_group(state, &new.group).await?;
    require_confirmation(new.kind, &group, new.confirm.as_deref())?;
    let mut schedule = Schedule {
        id: ScheduleId::generate(),
        name,
        group: group.id,
        kind: new.kind,
        tz: new.tz,
        recurrence: new.recurrence,
        window: new.window,
        enabled: new.enabled,
        next_run: None,
        last_run: None,
    };
    schedule.next_run = next_occurrence(&schedule, state.clock.now());
    if new.refuse_past && schedule.enabled && schedule.next_run.is_none() {
        return Err(ServiceError::Invalid(
            "recurrence: that time is already in the past".into(),
        ));
    }
    state
        .store
        .create_schedule(&schedule)
        .await
        .map_err(name_taken(&schedule.name))?;
    audit::record(
        state,
        caller,
        "schedule.create",
        format!(
            "{} {:?}: {} on group {:?}, {} {}",
            schedule.id,
            schedule.name,
            schedule.kind.code(),
            group.name,
            schedule.recurrence.to_text(),
            schedule.tz.name()
        ),
    )
    .await?;
    Ok(schedule)
}

/// A change of some fields of a schedule (`None` = keep).
#[derive(Debug, Clone, Default)]
pub struct ScheduleChange {
    pub name: Option<String>,
    /// The group's id or exact name.
    pub group: Option<String>,
    pub kind: Option<ActionKind>,
    pub tz: Option<TimeZone>,
    pub recurrence: Option<Recurrence>,
    /// `Some(None)` removes the window.
    pub window: Option<Option<MaintenanceWindow>>,
    pub enabled: Option<bool>,
    /// The group's name typed back (needed when the change makes it erase a group).
    pub confirm: Option<String>,
}

/// Changes the schedule `text` (operators), audited as `schedule.update`. Only a changed time
/// (time zone, recurrence, enabling) recomputes the next run: a firing already due stays due.
pub async fn change(
    state: &AppState,
    caller: &Caller,
    text: &str,
    change: ScheduleChange,
) -> Result<Schedule> {
    apply(state, caller, text, change, "schedule.update").await
}

/// Switches the schedule `text` on or off (operators), audited as `schedule.enable` or
/// `schedule.disable`. Switching a reset or wipe schedule on needs its group's name in
/// `confirm`.
pub async fn set_enabled(
    state: &AppState,
    caller: &Caller,
    text: &str,
    enabled: bool,
    confirm: Option<&str>,
) -> Result<Schedule> {
    let change = ScheduleChange {
        enabled: Some(enabled),
        confirm: confirm.map(str::to_owned),
        ..ScheduleChange::default()
    };
    let action = if enabled {
        "schedule.enable"
    } else {
        "schedule.disable"
    };
    apply(state, caller, text, change, action).await
}

async fn apply(
    state: &AppState,
    caller: &Caller,
    text: &str,
    change: ScheduleChange,
    action: &str,
) -> Result<Schedule> {
    caller
        .require(state, Role::Operator, "change a schedule", None)
        .await?;
    let mut s = find(state, text).await?;
    let mut retime = false;
    let mut retarget = false;
    if let Some(name) = &change.name {
        s.name = valid_name(name)?;
    }
    if let Some(kind) = change.kind {
        retarget |= kind != s.kind;
        s.kind = kind;
    }
    if let Some(tz) = change.tz {
        s.tz = tz;
        retime = true;
    }
    if let Some(r) = change.recurrence {
        s.recurrence = r;
        retime = true;
    }
    if let Some(w) = change.window {
        s.window = w;
    }
    if let Some(enabled) = change.enabled {
        retime |= enabled != s.enabled;
        // Switching a reset or wipe schedule back on arms it to erase the group again: typed
        // confirmation as for creating it (issue #15 item 2).
        retarget |= enabled && !s.enabled;
        s.enabled = enabled;
    }
    let group = match &change.group {
        Some(g) => {
            let group = named_group(state, g).await?;
            retarget |= group.id != s.group;
            s.group = group.id;
            Some(group)
        }
        None => state.store.group(s.group).await?,
    };
    if retarget {
        if let Some(group) = &group {
            require_confirmation(s.kind, group, change.confirm.as_deref())?;
        }
    }
    if retime {
        s.next_run = next_occurrence(&s, state.clock.now());
    }
    state
        .store
        .update_schedule(&s)
        .await
        .map_err(name_taken(&s.name))?;
    audit::record(
        state,
        caller,
        action,
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
    Ok(s)
}

/// Deletes the schedule `text` (operators).
pub async fn delete(state: &AppState, caller: &Caller, text: &str) -> Result<Schedule> {
    caller
        .require(state, Role::Operator, "delete a schedule", None)
        .await?;
    let s = find(state, text).await?;
    state.store.delete_schedule(s.id).await?;
    audit::record(
        state,
        caller,
        "schedule.delete",
        format!("{} {:?}", s.id, s.name),
    )
    .await?;
    Ok(s)
}

/// Fires the schedules that are due (timed work of the worker), each claimed in the
/// transaction that writes its batch, under the server's `daily_cap`: how many fired.
pub async fn fire_due(state: &AppState) -> Result<usize> {
    let waves = WaveSettings {
        daily_cap: state.settings.daily_cap,
        ..WaveSettings::default()
    };
    let fired = schedule::fire_due(
        state.store.as_ref(),
        state.clock.now(),
        &action_settings(state),
        &waves,
    )
    .await?
    .len();
    if fired > 0 {
        state.wake_push();
    }
    Ok(fired)
}
