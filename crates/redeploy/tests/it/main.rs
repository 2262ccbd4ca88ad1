//! Integration tests of the `redeploy` binary, run as a user would run it.

mod admin;
mod campaign;
mod e2e;
mod faults;
mod inspect;
mod serve;
mod story;
