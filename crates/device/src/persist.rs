//! A fleet's state on disk: one JSON file per PC (`<id>.json`) under the `--state` folder,
//! written atomically (temporary file, then rename) so a crash never leaves half a PC.

use std::path::{Path, PathBuf};

use crate::error::{DeviceError, Result};
use crate::state::DeviceState;

fn state_err(path: &Path, e: impl std::fmt::Display) -> DeviceError {
    DeviceError::State {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// The file of PC `id` in `dir`.
pub fn path_for(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.json"))
}

/// Writes the PC's state to `dir/<id>.json` atomically.
pub fn save(dir: &Path, state: &DeviceState) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| state_err(dir, e))?;
    let path = path_for(dir, &state.id);
    let tmp = dir.join(format!(".{}.json.tmp", state.id));
    let json = serde_json::to_vec(state).map_err(|e| state_err(&path, e))?;
    std::fs::write(&tmp, json).map_err(|e| state_err(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| state_err(&path, e))?;
    Ok(())
}

/// Reads one PC's state file.
pub fn load(path: &Path) -> Result<DeviceState> {
    let bytes = std::fs::read(path).map_err(|e| state_err(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| state_err(path, e))
}

/// Reads PC `id` from `dir`, or `None` when it has no file yet.
pub fn load_id(dir: &Path, id: &str) -> Result<Option<DeviceState>> {
    let path = path_for(dir, id);
    if !path.exists() {
        return Ok(None);
    }
    load(&path).map(Some)
}

/// Every PC in `dir`, sorted by id. A missing folder is an empty fleet.
pub fn load_all(dir: &Path) -> Result<Vec<DeviceState>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(state_err(dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| state_err(dir, e))?.path();
        let is_state = path.extension().is_some_and(|x| x == "json")
            && !path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if is_state {
            out.push(load(&path)?);
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// Finds a PC by its emulator id (`pc-0007`), computer name, serial or DevId
/// (case-insensitive).
pub fn find(dir: &Path, device: &str) -> Result<DeviceState> {
    if let Some(state) = load_id(dir, device)? {
        return Ok(state);
    }
    load_all(dir)?
        .into_iter()
        .find(|s| {
            s.id.eq_ignore_ascii_case(device)
                || s.computer_name.eq_ignore_ascii_case(device)
                || s.hardware.serial.eq_ignore_ascii_case(device)
                || s.dev_id.eq_ignore_ascii_case(device)
        })
        .ok_or_else(|| DeviceError::State {
            path: dir.display().to_string(),
            message: format!("no emulated PC named {device}"),
        })
}
