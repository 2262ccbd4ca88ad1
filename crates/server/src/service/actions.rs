//! Asking for, canceling and retrying actions as a caller: the role check (a refusal is audited
//! and answered 403) and the core's one request path (`redeploy_core::action`). REST, the
//! console and Graph call these; none of them requests an action on its own.

use redeploy_core::action::{self, ActionSettings};
use redeploy_core::{Action, ActionId, ActionKind, DeviceId, Role};

use crate::api::auth::Caller;
use crate::api::ApiError;
use crate::state::AppState;

type Result<T> = std::result::Result<T, ApiError>;

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
    Ok(action::request(
        state.store.as_ref(),
        device,
        kind,
        &caller.actor(),
        state.clock.now(),
        &action_settings(state),
    )
    .await?)
}

/// The action `id`, once `caller` holds the role its kind needs for `verb` (404, or 403 audited).
async fn load_for(state: &AppState, caller: &Caller, id: ActionId, verb: &str) -> Result<Action> {
    let action = state
        .store
        .action(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no action {id}")))?;
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
    Ok(action::retry(
        state.store.as_ref(),
        id,
        &caller.actor(),
        state.clock.now(),
        &action_settings(state),
        reason,
    )
    .await?)
}
