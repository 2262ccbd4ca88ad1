//! Integration tests of the device emulator's sans-IO core: state, profiles, CSP tree, resets.

mod common;
mod csp_nodes;
mod local_reset;
mod profile;
mod remote_reset;
mod show_json;
mod wipes;
