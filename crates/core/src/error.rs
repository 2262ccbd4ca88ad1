//! The one error type of the domain crate.

use crate::action::ActionState;

/// Errors of pure domain operations (parsing, state transitions).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum Error {
    /// A textual identifier did not parse.
    #[error("invalid {kind}: {value:?}")]
    InvalidId {
        /// Which identifier was expected.
        kind: &'static str,
        /// The rejected text.
        value: String,
    },
    /// A textual value of an enumeration did not parse.
    #[error("invalid {kind}: {value:?}")]
    InvalidValue {
        /// Which kind of value was expected.
        kind: &'static str,
        /// The rejected text.
        value: String,
    },
    /// The action state machine does not allow this step.
    #[error("an action cannot go from {from} to {to}")]
    IllegalTransition {
        /// Current state.
        from: ActionState,
        /// Requested state.
        to: ActionState,
    },
}

/// Result with the domain [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
