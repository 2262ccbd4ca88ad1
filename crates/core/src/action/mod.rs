//! Admin actions and their whole lifecycle, in one place (docs/design.md §4 "The Autopilot Reset
//! action lifecycle"; ARCHITECTURE.md "The reset lifecycle"):
//! - [`mod@model`]: the action, its states and the transitions the lifecycle allows;
//! - [`mod@request`]: asking for, canceling, retrying and expiring actions (the one request path);
//! - [`mod@advance`]: the pure rule that moves an action from what the device reported;
//! - [`mod@readiness`]: whether a device can take a reset now (preflight plus its actions).

pub mod advance;
pub mod model;
pub mod readiness;
pub mod request;

pub use advance::*;
pub use model::*;
pub use readiness::*;
pub use request::*;
