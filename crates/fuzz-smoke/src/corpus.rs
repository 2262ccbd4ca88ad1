//! The committed inputs of a target: `fuzz/corpus/<target>/` (seeds: real captures and a few
//! made by `fuzz-seed`) and `fuzz/regressions/<target>/` (every input that once failed).

use std::path::{Path, PathBuf};

/// The repository's `fuzz/` folder.
pub fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// One committed input and where it came from.
#[derive(Debug, Clone)]
pub struct Input {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
}

/// The seed corpus of `target`, sorted by file name.
pub fn seeds(target: &str) -> std::io::Result<Vec<Input>> {
    read_dir(&fuzz_dir().join("corpus").join(target))
}

/// The regressions of `target` (none yet is an empty list), sorted by file name.
pub fn regressions(target: &str) -> std::io::Result<Vec<Input>> {
    let dir = fuzz_dir().join("regressions").join(target);
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    read_dir(&dir)
}

fn read_dir(dir: &Path) -> std::io::Result<Vec<Input>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    paths.retain(|p| p.is_file() && !is_readme(p));
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path)?;
            Ok(Input { path, bytes })
        })
        .collect()
}

fn is_readme(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.eq_ignore_ascii_case("README.md"))
}
