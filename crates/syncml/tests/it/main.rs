//! Integration tests of the syncml crate: real captures, Microsoft-documented shapes, rejections,
//! builders and a write/parse round trip.

mod builders;
mod fixtures;
mod rejections;
mod roundtrip;
mod samples;

use std::path::PathBuf;

/// `shared/fixtures/real`, found by walking up from this crate (worktrees and CI differ).
pub fn fixtures_dir() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for dir in manifest.ancestors() {
        let candidate = dir.join("shared/fixtures/real");
        if candidate.is_dir() {
            return candidate;
        }
    }
    panic!(
        "shared/fixtures/real not found above {}",
        manifest.display()
    );
}

/// A real capture's bytes.
pub fn fixture(rel: &str) -> Vec<u8> {
    let path = fixtures_dir().join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// One of our own test messages in `testdata/`.
pub fn testdata(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Parse, panicking with the error's position on failure.
pub fn parse_ok(bytes: &[u8]) -> syncml::SyncMl {
    match syncml::parse(bytes) {
        Ok(m) => m,
        Err(e) => panic!("parse failed: {e} (element {:?})", e.element),
    }
}
