//! The reset watch: how the server notices an Autopilot Reset it did not send — a local one
//! (CTRL+WIN+R at the PC's lock screen) or one started at the PC some other way. Pure: what to
//! ask at a session start and what an answer means; [`super::decide`] calls it.
//!
//! Windows reports nothing of a local reset to the MDM as far as Microsoft documents
//! (docs/protocol.md §1.4: UNCONFIRMED). The watch uses the signal the remote reset already
//! relies on (ARCHITECTURE.md "Never falsely done"): `DMClient/Provider/<id>/FirstSyncStatus/
//! IsSyncDone` is set by the server (ITPRO dmclient-csp.md: a Get tells the server whether the
//! first syncs are done; a Set makes the status page tell the user the device is provisioned;
//! it cannot be set from true to false, nor from true to true), and a reset sends the PC through
//! its first sync again, which shows as false after the server had set it true. INFERENCE: the
//! emulator models it; Windows' behaviour across a reset is UNCONFIRMED (docs/protocol.md §3.8).
//!
//! The rule, as a table in `session/tests.rs`:
//! - at a session start, with no reset or wipe of this server active (the action flow owns the
//!   node then), read IsSyncDone when the last read (by the watch or by a reset action: both land
//!   in inventory) is absent or older than `reset_watch_interval`;
//! - an answer `false` re-arms the node (Replace true, then a Get so that the stored value is
//!   the PC's `true` at once and a reset right after shows);
//! - an answer `false` after a stored `true` that was read after the last Exec of every reset or
//!   wipe this server sent (and after the expiry of any such action that went out and never
//!   settled) is a reset this server did not send: "local reset observed".

use time::{Duration, OffsetDateTime};

use crate::action::{has_active_erase, is_erasing, parse_bool, Action, ActionState};
use crate::command::{first_sync_done_uri, DeviceCommand, Verb};
use crate::ids::{CommandId, DeviceId};
use crate::inventory::InventoryValue;

/// The timeline note of an observed local reset ([`Action::observed`]).
pub const OBSERVED_NOTE: &str = "observed at check-in: IsSyncDone went from true to false with \
     no reset sent by this server — a local Autopilot Reset (CTRL+WIN+R) or a reset at the PC";

/// Whether a session start reads IsSyncDone: no reset or wipe of the device is active (the action
/// flow reads and sets the node then), and the last read, at `last_read`, is absent or at least
/// `interval` old.
pub fn due(
    last_read: Option<OffsetDateTime>,
    actions: &[Action],
    now: OffsetDateTime,
    interval: Duration,
) -> bool {
    !has_active_erase(actions) && last_read.is_none_or(|at| now - at >= interval)
}

/// What an answer to the watch's Get of IsSyncDone means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing to do: `true` (armed), or a reset or wipe of ours is active (its flow owns the
    /// node).
    Nothing,
    /// `false` without evidence of a reset we did not send (a fresh enrollment, the first read,
    /// or after one of our resets): set it true again so that the next reset shows.
    Rearm,
    /// `false` after a `true` read since our last reset or wipe: the PC was reset and we did
    /// not send it. Re-arm as well.
    Observed,
}

/// Judges the watch's answer `answer`, given the stored value before it (`previous`, the last
/// read of the node by anyone) and every action of the device.
pub fn judge(previous: Option<&InventoryValue>, answer: bool, actions: &[Action]) -> Verdict {
    if answer || has_active_erase(actions) {
        return Verdict::Nothing;
    }
    let Some(previous) = previous else {
        return Verdict::Rearm;
    };
    let was_true = parse_bool(&previous.value) == Some(true);
    // A `true` read before one of our Execs (or before such an action expired unanswered) says
    // nothing about who reset the PC after it.
    let ours_since = last_own_erase(actions).is_some_and(|at| at >= previous.at);
    if was_true && !ours_since {
        Verdict::Observed
    } else {
        Verdict::Rearm
    }
}

/// The last moment a reset or wipe of this server may have been under way on the PC: the latest
/// `sent` of such an action, or the expiry of one that went out and never settled (the PC may
/// have run its Exec after we stopped looking).
fn last_own_erase(actions: &[Action]) -> Option<OffsetDateTime> {
    actions
        .iter()
        .filter(|a| is_erasing(a.kind))
        .filter_map(|a| {
            let sent = a
                .timeline
                .iter()
                .filter(|e| e.state == ActionState::Sent)
                .map(|e| e.at)
                .max()?;
            Some(if a.state == ActionState::Expired {
                sent.max(a.updated_at)
            } else {
                sent
            })
        })
        .max()
}

/// Whether `c` is the watch's own Get of IsSyncDone (no action: a reset action's reads are its
/// own business).
pub fn is_watch_get(c: &DeviceCommand, provider_id: &str) -> bool {
    c.verb == Verb::Get && c.action.is_none() && c.uri == first_sync_done_uri(provider_id)
}

/// The Replace that sets IsSyncDone true (format `bool`), as a reset's baseline does
/// ([`crate::action::baseline_commands`]), without an action.
pub fn rearm(device: DeviceId, provider_id: &str, now: OffsetDateTime) -> DeviceCommand {
    DeviceCommand::new(
        CommandId::generate(),
        device,
        None,
        Verb::Replace,
        first_sync_done_uri(provider_id),
        now,
    )
    .with_data("bool", "true")
}
