//! The device-session engine: one device message in, our reply out, everything it changes
//! committed in one store step (docs/design.md §2; docs/protocol.md §3.3).
//!
//! [`handle`] is three steps, one file each: [`load`] reads from the store everything the
//! decision needs ([`Loaded`]); [`decide`] is pure — loaded state, message, time and settings in;
//! the [`SessionStep`](crate::store::SessionStep) to commit, the reply without our commands and
//! the audit events out ([`Decision`]); [`commit`] applies the step in one transaction, puts the
//! commands it took into the reply, then writes the audit events. No HTTP: the server frames
//! bytes around [`handle`].

mod commit;
mod decide;
mod inventory;
mod load;
mod message;
mod reset_watch;
pub mod sequence;
#[cfg(test)]
mod tests;

use syncml::SyncMl;
use time::{Duration, OffsetDateTime};

use crate::ids::{ActionId, DeviceId};
use crate::store::{CheckInView, Store, StoreError};

pub use commit::{commit, to_syncml};
pub use decide::{decide, Decision};
pub use inventory::{apply_inventory, inventory_label, inventory_uris};
pub use load::{check_in_uris, load, Loaded};
pub use message::upn_from_jwt;

/// Errors of the session engine and of action requests.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The store failed; nothing was committed and no reply may be sent.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A domain rule refused a step.
    #[error(transparent)]
    Domain(#[from] crate::error::Error),
    /// No such device.
    #[error("device {0} not found")]
    DeviceNotFound(DeviceId),
    /// No such action.
    #[error("action {0} not found")]
    ActionNotFound(ActionId),
    /// The request is not allowed in the current state.
    #[error("{0}")]
    NotAllowed(String),
    /// A URI we were about to send is not a valid LocURI (configuration error).
    #[error("invalid LocURI {0:?}")]
    BadUri(String),
    /// The message is a replay or out of order ([`sequence`]); nothing of it was taken.
    #[error(transparent)]
    Sequence(#[from] sequence::SequenceRefusal),
}

/// Engine settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// Our management URL: the Source of our replies.
    pub server_url: String,
    /// Budget of one reply in bytes (Intune announces 524288; Windows ignores SyncHdr Meta, so the
    /// budget is ours to respect; docs/protocol.md §3.2).
    pub max_message_bytes: usize,
    /// At most this many of our commands in one reply.
    pub max_commands_per_message: u32,
    /// Re-read inventory when the last read is older than this.
    pub inventory_interval: Duration,
    /// Our `DMClient/Provider/<id>` name.
    pub provider_id: String,
    /// Read `FirstSyncStatus/IsSyncDone` at a session start when the last read is older than
    /// this, to notice a reset this server did not send (a local Autopilot Reset; the reset
    /// watch, `session/reset_watch.rs`). Zero reads it at every session start.
    pub reset_watch_interval: Duration,
    /// Push (WNS): when set, a session start provisions `Push/PFN` and reads the PC's channel
    /// (`crate::push::session_commands`), the channel a PC reports is stored, and a pending
    /// action's first session records whether a push or the PC's poll brought it. `None` adds
    /// nothing to any session.
    pub push: Option<crate::push::PushConfig>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            server_url: "https://127.0.0.1:8443/ManagementServer/MDM.svc".to_owned(),
            max_message_bytes: 512 * 1024,
            max_commands_per_message: 1000,
            inventory_interval: Duration::hours(24),
            provider_id: "Redeploy".to_owned(),
            reset_watch_interval: Duration::hours(1),
            push: None,
        }
    }
}

/// Handles one device message and returns our reply: [`load`], [`decide`], [`commit`]. Every
/// change (check-in, answers, inventory, action progress, commands taken for the reply) is
/// committed in one [`crate::store::CommandQueue::session_step`]; if it fails, the error comes
/// back and the reply must not be sent (nothing was marked sent).
///
/// `view` is the check-in's first read ([`crate::store::CommandQueue::check_in_view`] with
/// [`check_in_uris`]), or [`CheckInView::of`] a device to read everything.
pub async fn handle(
    store: &dyn Store,
    view: &CheckInView,
    msg: &SyncMl,
    now: OffsetDateTime,
    cfg: &SessionConfig,
) -> Result<SyncMl, SessionError> {
    let loaded = load(store, view, msg, cfg).await?;
    let decision = decide(&loaded, msg, now, cfg)?;
    commit(store, decision).await
}
