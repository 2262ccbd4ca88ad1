//! Locating the shared real captures (`shared/fixtures/real`) from a worktree or CI layout.

use std::path::PathBuf;

pub fn fixtures() -> PathBuf {
    let mut dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    loop {
        let candidate = dir.join("shared/fixtures/real");
        if candidate.is_dir() {
            return candidate;
        }
        assert!(
            dir.pop(),
            "shared/fixtures/real not found above {}",
            env!("CARGO_MANIFEST_DIR")
        );
    }
}

pub fn fixture(path: &str) -> Vec<u8> {
    let p = fixtures().join(path);
    std::fs::read(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}
