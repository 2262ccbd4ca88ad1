//! An idle PC kept small. Between two steps a fleet PC does nothing but wait for its next poll,
//! so the fleet runner ([`crate::fleet`]) keeps its [`DeviceState`] packed: serialized to compact
//! JSON (the format of its state file, so whatever a state file keeps, a packed PC keeps) and
//! deflated. A step unpacks it, works on the plain state and packs it again. An unpacked state is
//! a tree of small allocations (names, apps, settings, certificates, the event log); packed it is
//! one allocation of a few KB (docs/benchmarks.md, "Emulator memory per idle PC").

use std::io::Write;

use flate2::write::{DeflateDecoder, DeflateEncoder};
use flate2::Compression;

use crate::error::{DeviceError, Result};
use crate::state::DeviceState;

/// One PC's state, packed: deflated compact JSON in one exact-size allocation, or, for a state
/// that JSON cannot hold (a time outside the years RFC 3339 writes, which its state file could
/// not hold either), the state itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedState(Packed);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Packed {
    Deflated(Box<[u8]>),
    Plain(Box<DeviceState>),
}

impl PackedState {
    /// Packs `state`. Never fails: a state that cannot be serialized is kept as it is.
    pub fn pack(state: DeviceState) -> PackedState {
        match deflate(&state) {
            Ok(bytes) => PackedState(Packed::Deflated(bytes)),
            Err(_) => PackedState(Packed::Plain(Box::new(state))),
        }
    }

    /// The state again, equal to the one packed.
    pub fn unpack(&self) -> Result<DeviceState> {
        match &self.0 {
            Packed::Deflated(bytes) => inflate(bytes),
            Packed::Plain(state) => Ok((**state).clone()),
        }
    }

    /// Bytes the packed state holds on the heap (the deflated JSON; for a state kept plain, the
    /// size of its JSON is unknown and the size of the struct is given).
    pub fn packed_len(&self) -> usize {
        match &self.0 {
            Packed::Deflated(bytes) => bytes.len(),
            Packed::Plain(_) => std::mem::size_of::<DeviceState>(),
        }
    }

    /// Whether the state is held deflated (false only for a state JSON cannot hold).
    pub fn is_deflated(&self) -> bool {
        matches!(self.0, Packed::Deflated(_))
    }
}

fn deflate(state: &DeviceState) -> serde_json::Result<Box<[u8]>> {
    let mut encoder = DeflateEncoder::new(Vec::with_capacity(4096), Compression::default());
    serde_json::to_writer(&mut encoder, state)?;
    // Writing into a Vec cannot fail; `finish` only flushes the last block into it.
    let bytes = encoder.finish().map_err(serde_json::Error::io)?;
    Ok(bytes.into_boxed_slice())
}

fn inflate(bytes: &[u8]) -> Result<DeviceState> {
    let corrupt = |message: String| DeviceError::State {
        path: "(packed in memory)".into(),
        message,
    };
    let mut decoder = DeflateDecoder::new(Vec::with_capacity(bytes.len() * 4));
    decoder
        .write_all(bytes)
        .map_err(|e| corrupt(e.to_string()))?;
    let json = decoder.finish().map_err(|e| corrupt(e.to_string()))?;
    serde_json::from_slice(&json).map_err(|e| corrupt(e.to_string()))
}
