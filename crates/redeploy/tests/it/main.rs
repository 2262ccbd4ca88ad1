//! Integration tests of the `redeploy` binary, run as a user would run it.

mod admin;
mod architecture;
mod backup;
mod batches;
mod cli;
mod docs;
mod e2e;
mod emulate;
mod faults;
mod inspect;
mod packaging;
mod push;
mod renewal;
mod scale;
mod serve;
mod story;

pub use testkit::pc::sync_until_quiet;
