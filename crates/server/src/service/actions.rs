//! Asking for, canceling and retrying actions as a caller: the role check (a refusal is audited
//! and answered 403) and the core's one request path (`redeploy_core::action`). REST, the
//! console and Graph call these; none of them requests an action on its own.

use redeploy_core::action::{self, ActionSettings};
use redeploy_core::{Action, ActionId, ActionKind, ActionState, DeviceId, Role};

use super::{Caller, Result, ServiceError};
use crate::state::AppState;

/// The least role that may ask for (or cancel, or retry) `kind`: sync and restart are helpdesk
/// work, everything that changes or erases a PC needs an operator.
pub fn role_for(kind: ActionKind) -> Role {
    match kind {
        ActionKind::Sync | ActionKind::Restart => Role::Helpdesk,
        _ => Role::Operator,
    }
}

/// The core's action settings from the server's (our DMClient provider id).
pub fn action_settings(state: &AppState) -> ActionSettings {
    ActionSettings {
        provider_id: state.settings.provider_id.clone(),
        ..ActionSettings::default()
    }
}

/// Asks for `kind` on `device` as `caller`: 403 (audited) without the role; otherwise the
/// action, `pending` or `blocked` with its reasons. `surface` names where the request came from
/// in a refusal's audit entry (e.g. "Graph").
pub async fn request(
    state: &AppState,
    caller: &Caller,
    device: DeviceId,
    kind: ActionKind,
    surface: &str,
) -> Result<Action> {
    caller
        .require(
            state,
            role_for(kind),
            &format!("{surface}{} on device {device}", kind.code()),
            Some(device),
        )
        .await?;
    let action = action::request(
        state.store.as_ref(),
        device,
        kind,
        &caller.actor(),
        state.clock.now(),
        &action_settings(state),
    )
    .await?;
    if action.state == ActionState::Pending {
        state.wake_push();
    }
    Ok(action)
}

/// The action `id`, once `caller` holds the role its kind needs for `verb` (404, or 403 audited).
async fn load_for(state: &AppState, caller: &Caller, id: ActionId, verb: &str) -> Result<Action> {
    let action = get(state, id).await?;
    caller
        .require(
            state,
            role_for(action.kind),
            &format!("{verb} action {id} ({})", action.kind.code()),
            Some(action.device),
        )
        .await?;
    Ok(action)
}

/// Cancels an action that has not reached its PC (409 once it was sent).
pub async fn cancel(state: &AppState, caller: &Caller, id: ActionId) -> Result<Action> {
    load_for(state, caller, id, "cancel").await?;
    Ok(action::cancel(state.store.as_ref(), id, &caller.actor(), state.clock.now()).await?)
}

/// Asks again for a failed, expired, canceled or blocked action: the new action (409 while the
/// old one is still active). A `reason` is audited and overrides preflight's WinRE checks
/// ([`action::retry`]).
pub async fn retry(
    state: &AppState,
    caller: &Caller,
    id: ActionId,
    reason: Option<&str>,
) -> Result<Action> {
    load_for(state, caller, id, "retry").await?;
    let action = action::retry(
        state.store.as_ref(),
        id,
        &caller.actor(),
        state.clock.now(),
        &action_settings(state),
        reason,
    )
    .await?;
    state.wake_push();
    Ok(action)
}

/// The action `id`, or [`ServiceError::NotFound`].
pub async fn get(state: &AppState, id: ActionId) -> Result<Action> {
    state
        .store
        .action(id)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("There is no action {id}.")))
}

/// Which actions a list shows.
#[derive(Debug, Clone, Copy, Default)]
pub struct ActionFilter {
    /// Only this device's actions (newest first).
    pub device: Option<DeviceId>,
    /// Only actions in this state.
    pub state: Option<ActionState>,
    /// At most this many.
    pub limit: u32,
    /// Newest change first (the console's view), instead of the store's order for one state
    /// (oldest change first) and newest creation first for all states.
    pub by_update: bool,
}

/// How many actions of one state a list sorted by change reads before sorting.
const SORT_WINDOW: u32 = 1000;

/// Actions of a device (newest first) and/or in a state; without either, the newest actions
/// of every state.
pub async fn list(state: &AppState, filter: ActionFilter) -> Result<Vec<Action>> {
    let ActionFilter {
        device,
        state: wanted,
        limit,
        by_update,
    } = filter;
    let mut list = match (device, wanted) {
        (Some(d), _) => {
            let mut acts = state.store.actions_of_device(d).await?;
            acts.retain(|a| wanted.is_none_or(|w| a.state == w));
            acts
        }
        (None, Some(w)) if by_update => state.store.actions_in_state(w, SORT_WINDOW).await?,
        (None, Some(w)) => state.store.actions_in_state(w, limit).await?,
        (None, None) => {
            let mut all = Vec::new();
            for s in ActionState::ALL {
                all.extend(state.store.actions_in_state(*s, limit).await?);
            }
            all.sort_by_key(|a| std::cmp::Reverse(a.created_at));
            all
        }
    };
    if by_update {
        list.sort_by_key(|a| std::cmp::Reverse(a.updated_at));
    }
    list.truncate(limit as usize);
    Ok(list)
}

/// Expires every active or blocked action without a transition for the server's
/// `action_expiry` (timed work of the worker): how many were expired.
pub async fn expire_stuck(state: &AppState) -> Result<usize> {
    let expiry =
        time::Duration::try_from(state.settings.action_expiry).unwrap_or(time::Duration::days(7));
    Ok(
        action::expire_stuck(state.store.as_ref(), state.clock.now(), expiry)
            .await?
            .len(),
    )
}

/// One page of the actions `query` selects, newest first, and the cursor of the next page. A
/// cursor this list did not make is invalid input.
pub async fn page(
    state: &AppState,
    query: &redeploy_core::store::ActionQuery,
) -> Result<redeploy_core::store::Page<Action>> {
    super::listed(state.store.list_actions(query).await)
}

/// Autopilot Resets requested on one UTC day, by how far they came.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResetDay {
    pub day: time::Date,
    pub done: u64,
    pub failed: u64,
    /// Blocked, canceled or expired: never reached the PC, or never came back.
    pub stopped: u64,
    /// Still on their way.
    pub in_flight: u64,
}

/// The Autopilot Resets requested on each of the last `days` UTC days (today included, oldest
/// first), counted by the store.
pub async fn reset_history(state: &AppState, days: u32) -> Result<Vec<ResetDay>> {
    let today = state.clock.now().to_offset(time::UtcOffset::UTC).date();
    let first = today - time::Duration::days(i64::from(days.max(1)) - 1);
    let mut out: Vec<ResetDay> = (0..days.max(1))
        .map(|i| ResetDay {
            day: first + time::Duration::days(i64::from(i)),
            done: 0,
            failed: 0,
            stopped: 0,
            in_flight: 0,
        })
        .collect();
    // Counted in the store by day and state: a chart of 100,000 resets reads 30 × 9 numbers,
    // not 100,000 actions (issue #16).
    let counts = state
        .store
        .action_counts_by_day(ActionKind::AutopilotReset, first.midnight().assume_utc())
        .await?;
    for c in counts {
        let Some(slot) = out.iter_mut().find(|d| d.day == c.day) else {
            continue;
        };
        match c.state {
            ActionState::Done => slot.done += c.count,
            ActionState::Failed => slot.failed += c.count,
            ActionState::Blocked | ActionState::Canceled | ActionState::Expired => {
                slot.stopped += c.count
            }
            _ => slot.in_flight += c.count,
        }
    }
    Ok(out)
}
