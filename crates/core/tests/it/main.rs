//! Integration tests of the domain crate against the real SQLite store (fresh temp DB per test).

mod actions;
mod batch;
mod harness;
mod session;
