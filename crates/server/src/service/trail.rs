//! The support trail as the device endpoint fills it and support reads it: every device
//! message and our answer are kept, redacted, up to `support_trail_messages` per device
//! (`redeploy_core::trail`). Keeping it never fails or slows a check-in: the messages go
//! through [`crate::trail_buffer`], and a store error is logged.

use redeploy_core::trail::{Direction, TrailMessage};
use redeploy_core::{DeviceId, Role};
use time::OffsetDateTime;

use super::{devices, Caller, Result};
use crate::state::AppState;

/// Most messages one read returns.
pub const MAX_READ: u32 = 200;

/// The ids a message carried, for the trail.
#[derive(Debug, Clone, Copy, Default)]
pub struct MessageIds<'a> {
    pub session_id: &'a str,
    pub msg_id: &'a str,
}

/// Keeps what `device` sent and, when we answered, our answer (with the ids of our reply).
pub fn record(
    state: &AppState,
    device: DeviceId,
    now: OffsetDateTime,
    received: (MessageIds<'_>, &[u8]),
    answered: Option<(MessageIds<'_>, &[u8])>,
) {
    let keep = state.settings.support_trail_messages;
    if keep == 0 {
        return;
    }
    let (ids, bytes) = received;
    let mut messages = vec![TrailMessage::new(
        device,
        now,
        Direction::FromDevice,
        ids.session_id,
        ids.msg_id,
        bytes,
    )];
    if let Some((ids, bytes)) = answered {
        messages.push(TrailMessage::new(
            device,
            now,
            Direction::ToDevice,
            ids.session_id,
            ids.msg_id,
            bytes,
        ));
    }
    state.trail.push(messages, keep);
}

/// The newest `limit` (at most [`MAX_READ`]) messages of `device`, newest first. Helpdesk and
/// above: messages name users and show the PC's inventory.
pub async fn recent(
    state: &AppState,
    caller: &Caller,
    device: DeviceId,
    limit: u32,
) -> Result<Vec<TrailMessage>> {
    caller
        .require(
            state,
            Role::Helpdesk,
            &format!("read the messages of device {device}"),
            Some(device),
        )
        .await?;
    devices::load(state, device).await?;
    state.trail.flush().await;
    // Never more than the trail keeps: a trail is trimmed to its bound a moment after it
    // grows past it (crate::trail_buffer).
    let keep = state.settings.support_trail_messages.max(1);
    Ok(state
        .store
        .trail(device, limit.clamp(1, MAX_READ).min(keep))
        .await?)
}
