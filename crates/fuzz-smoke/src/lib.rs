//! Fuzzing of every parser that reads bytes from the network, on stable Rust and in bounded time
//! (docs/fuzzing.md): [`targets`] names each parser entry and what it must never do, [`mutate`]
//! makes new inputs from the seed corpus, [`run`] drives a target over its corpus, its
//! regressions and a time budget of mutants and reports executions or the input that failed,
//! [`corpus`] finds the committed inputs under `fuzz/`.

pub mod corpus;
pub mod mutate;
pub mod run;
pub mod targets;
