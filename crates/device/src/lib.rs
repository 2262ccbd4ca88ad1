//! The Windows PC emulator as a library. This part is sans-IO: the device's state model
//! ([`state`]), scenario profiles ([`profile`]), the CSP tree that answers OMA-DM commands
//! ([`csp`]) and the reset / wipe engine ([`reset`]). It is an independent client: it uses only
//! the `syncml` and `enroll` crates of this workspace, never server code.

pub mod csp;
pub mod profile;
pub mod reset;
pub mod state;

pub use csp::{execute, CmdIdAllocator};
pub use profile::{device_seed, DeviceProfile};
pub use reset::{
    advance, local_reset, mdm_sync_completed, run_to_completion, step, ExecOutcome,
    LocalResetError, Transition,
};
pub use state::DeviceState;
