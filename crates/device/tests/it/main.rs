//! Integration tests of the device emulator: the sans-IO core (state, profiles, CSP tree,
//! resets) and the protocol client, scheduler, state files, fleet runner and HTTPS transport.

mod common;
mod csp_nodes;
mod enroll_flow;
mod fake;
mod faults;
mod fleet;
mod https;
mod idle;
mod local_reset;
mod profile;
mod remote_reset;
mod reset_counts;
mod scheduler;
mod session;
mod show_json;
mod support;
mod wipes;
