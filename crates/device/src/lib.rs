//! The Windows PC emulator as a library. The sans-IO part: the device's state model
//! ([`state`]), scenario profiles ([`profile`]), the CSP tree that answers OMA-DM commands
//! ([`csp`]), the reset / wipe engine ([`reset`]) and injected faults ([`fault`]). The I/O part: the protocol client
//! ([`client`]) over a [`Transport`] ([`transport`], HTTPS by default), the poll scheduler and
//! clocks ([`schedule`]), state files ([`persist`]) and the fleet runner ([`fleet`]), which keeps idle
//! PCs packed ([`idle`]). It is an
//! independent client: it uses only the `syncml` and `enroll` crates of this workspace, never
//! server code.

pub mod client;
pub mod csp;
pub mod entra;
pub mod error;
pub mod fault;
pub mod fleet;
pub mod idle;
pub mod persist;
pub mod profile;
pub mod reset;
pub mod schedule;
pub mod state;
pub mod transport;
pub mod wns;

pub use csp::{execute, CmdIdAllocator};
pub use error::{DeviceError, Result};
pub use profile::{device_seed, DeviceProfile};
pub use reset::{
    advance, local_reset, mdm_sync_completed, reagentc, run_to_completion, step, ExecOutcome,
    LocalResetError, ReagentcError, Transition,
};
pub use schedule::{Clock, ManualClock, ScaledClock};
pub use state::DeviceState;
pub use transport::{HttpsTransport, Identity, Response, ServiceTransport, Transport};
