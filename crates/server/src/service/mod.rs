//! Use cases that every surface calls — REST (`api`), the console, the Graph subset and the
//! worker — so that the rules (roles, the one request path of the core, how a list is paged and
//! filtered) live once. Handlers only translate HTTP in and out: they parse their input, call a
//! function here, and turn its value or [`ServiceError`] into their own answer (a problem
//! document, a console page, a Graph error).
//!
//! Layering inside the server (each module uses only those before it): `settings`, `crash`,
//! `metrics`, `federated`, `state`, `dto`, `service`, `webhooks`, `worker`, then the surfaces
//! (`api`, `console`, `graph`, `mgmt`, `enrollment`, `ops`). `scripts/check-module-cycles.py`
//! fails CI on a cycle.

pub mod accounts;
pub mod actions;
pub mod audit;
pub mod autopilot;
pub mod batches;
pub mod caller;
pub mod console_sessions;
pub mod devices;
pub mod groups;
pub mod openid;
pub mod schedules;
pub mod tokens;
pub mod trail;
pub mod webhooks;

pub use caller::Caller;

use redeploy_core::{SessionError, StoreError};

/// Why a use case did not happen, in words every surface can show.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The input was wrong (a bad id, an unknown sort key, a limit out of range).
    #[error("{0}")]
    Invalid(String),
    /// What the input names does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The caller's role does not allow it (already audited as `api.forbidden`).
    #[error("{0}")]
    Forbidden(String),
    /// It contradicts the current state (an action already sent, a name taken).
    #[error("{0}")]
    Conflict(String),
    /// The database failed; trying again may work.
    #[error("the database failed; try again")]
    Unavailable,
}

/// What every use case returns.
pub type Result<T, E = ServiceError> = std::result::Result<T, E>;

/// A list page from the store: a cursor the store cannot read (its `Conflict`) is the caller's
/// invalid input, not a conflict with stored data.
pub(crate) fn listed<T>(page: std::result::Result<T, StoreError>) -> Result<T> {
    match page {
        Err(StoreError::Conflict(why)) => Err(ServiceError::Invalid(why)),
        other => Ok(other?),
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => Self::NotFound(format!("not found: {what}")),
            StoreError::Conflict(what) => Self::Conflict(what),
            other => {
                tracing::error!(error = %other, "store error");
                Self::Unavailable
            }
        }
    }
}

impl From<SessionError> for ServiceError {
    fn from(e: SessionError) -> Self {
        match e {
            SessionError::Store(s) => s.into(),
            SessionError::DeviceNotFound(id) => Self::NotFound(format!("no device {id}")),
            SessionError::ActionNotFound(id) => Self::NotFound(format!("no action {id}")),
            SessionError::NotAllowed(why) => Self::Conflict(why),
            other => Self::Conflict(other.to_string()),
        }
    }
}
