//! Integration tests of the `redeploy` binary, run as a user would run it.

mod inspect;
mod serve;
