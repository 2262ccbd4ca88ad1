//! OMA-DM 1.2 SyncML as Windows speaks it (MS-MDM): the message model, a parser that is tolerant
//! where real clients differ from the spec and strict where ambiguity would be unsafe, and a writer
//! that produces the form Windows accepts. No I/O.
//!
//! - [`parse()`] / [`parse_with_limits`]: bytes -> [`SyncMl`], or a [`ParseError`] with line, column
//!   and element.
//! - [`write()`]: [`SyncMl`] -> compact XML in the shape Windows accepts; [`written_len`]: its
//!   length without writing it (to keep a reply under its byte budget).
//! - [`build`]: constructors for replies, Status, Get/Exec/Replace/Add/Delete, Results, Alerts.

pub mod build;
pub mod codes;
pub mod locuri;
pub mod model;

pub use build::{is_dev_id_uri, CmdIds};
pub use codes::{AlertCode, StatusCode};
pub use locuri::{LocUri, LocUriError};
pub use model::*;
pub mod parse;
pub mod write;

pub use parse::{parse, parse_with_limits, Limits, ParseError};
pub use write::{write, written_len};
