//! A fleet's state on disk: one JSON file per PC (`<id>.json`) under the `--state` folder,
//! written atomically (temporary file, then rename) so a crash never leaves half a PC.
//!
//! Two processes may change the same PC: a running fleet (`redeploy emulate`) and a one-shot
//! command (`emulate local-reset`, `reagentc`, `sync`). Each holds the PC's lock
//! (`.<id>.lock`, an advisory `flock`) across its read-modify-write. A one-shot command saves
//! with [`save_external`], which also leaves a `.changed/<id>` flag; the fleet, under the same
//! lock before each step of that PC, takes the flag ([`take_external_change`]) and reloads the
//! file, so neither side overwrites the other's change. Readers (`emulate show`) need no lock:
//! a save is a rename.

use std::path::{Path, PathBuf};

use crate::error::{DeviceError, Result};
use crate::state::DeviceState;

fn state_err(path: &Path, e: impl std::fmt::Display) -> DeviceError {
    DeviceError::State {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// The identity salt of the fleet kept in `dir` (`fleet-salt`, created at random on first use):
/// mixed into the identities of the PCs built there, so two state folders started with the same
/// `--seed` get the same kinds of PCs but never the same hardware ids, serials or DevIds (two
/// fleets would otherwise be clones of one another in the server's eyes).
pub fn fleet_salt(dir: &Path) -> Result<u64> {
    let path = dir.join("fleet-salt");
    match std::fs::read_to_string(&path) {
        Ok(text) => text
            .trim()
            .parse()
            .map_err(|e| state_err(&path, format!("not a fleet salt: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(|e| state_err(dir, e))?;
            let salt = rand::random::<u64>().max(1);
            let tmp = dir.join(".fleet-salt.tmp");
            std::fs::write(&tmp, salt.to_string()).map_err(|e| state_err(&tmp, e))?;
            // A concurrent first run may have written its own: the first rename wins for both.
            if path.exists() {
                let _ = std::fs::remove_file(&tmp);
                return fleet_salt(dir);
            }
            std::fs::rename(&tmp, &path).map_err(|e| state_err(&path, e))?;
            fleet_salt(dir)
        }
        Err(e) => Err(state_err(&path, e)),
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

/// The lock file of PC `id` (kept; only the `flock` on it matters).
fn lock_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!(".{id}.lock"))
}

/// The folder of the flags [`save_external`] leaves for a running fleet: a folder of its own,
/// so a fleet of thousands looks for changes without listing every state file.
pub fn changed_dir(dir: &Path) -> PathBuf {
    dir.join(".changed")
}

fn changed_path(dir: &Path, id: &str) -> PathBuf {
    changed_dir(dir).join(id)
}

/// This process's exclusive hold on one PC's state; released when dropped (or when the process
/// ends, however it ends).
#[derive(Debug)]
pub struct PcLock {
    _file: std::fs::File,
}

fn open_lock_file(dir: &Path, id: &str) -> Result<std::fs::File> {
    std::fs::create_dir_all(dir).map_err(|e| state_err(dir, e))?;
    let path = lock_path(dir, id);
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| state_err(&path, e))
}

/// Takes PC `id`'s lock in `dir`, waiting while another process holds it (a fleet holds it
/// for one step of that PC: at most one check-in).
pub fn lock(dir: &Path, id: &str) -> Result<PcLock> {
    let file = open_lock_file(dir, id)?;
    #[cfg(unix)]
    loop {
        use rustix::fs::{flock, FlockOperation};
        match flock(&file, FlockOperation::LockExclusive) {
            Ok(()) => break,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(state_err(&lock_path(dir, id), e)),
        }
    }
    Ok(PcLock { _file: file })
}

/// Takes PC `id`'s lock if no other process holds it; `None` when one does.
/// Without `flock` (not Unix) there is no locking and this always succeeds.
pub fn try_lock(dir: &Path, id: &str) -> Result<Option<PcLock>> {
    let file = open_lock_file(dir, id)?;
    #[cfg(unix)]
    loop {
        use rustix::fs::{flock, FlockOperation};
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => break,
            Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::WOULDBLOCK) => return Ok(None),
            Err(e) => return Err(state_err(&lock_path(dir, id), e)),
        }
    }
    Ok(Some(PcLock { _file: file }))
}

/// Saves a change made outside the fleet runner and flags it, so that a fleet running on
/// `dir` reloads the PC before its next step instead of overwriting the change. Call with the
/// PC's [`lock`] held, on a state read under that same lock.
pub fn save_external(dir: &Path, state: &DeviceState) -> Result<()> {
    save(dir, state)?;
    let flags = changed_dir(dir);
    std::fs::create_dir_all(&flags).map_err(|e| state_err(&flags, e))?;
    let flag = changed_path(dir, &state.id);
    std::fs::write(&flag, b"").map_err(|e| state_err(&flag, e))
}

/// The PC's state as [`save_external`] left it, once per flag: `Some` when a change was saved
/// since the last call (the flag is cleared), `None` otherwise. Call with the PC's lock held.
pub fn take_external_change(dir: &Path, id: &str) -> Result<Option<DeviceState>> {
    let flag = changed_path(dir, id);
    if !flag.exists() {
        return Ok(None);
    }
    let state = load(&path_for(dir, id))?;
    match std::fs::remove_file(&flag) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(state_err(&flag, e)),
    }
    Ok(Some(state))
}
