//! Integration tests of the `redeploy` binary.

mod serve;
