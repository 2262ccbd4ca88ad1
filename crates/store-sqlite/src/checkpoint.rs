//! The WAL's frames copied back into the database file by a thread of their own.
//!
//! Left to SQLite, the connection that commits a transaction growing the WAL past 1,000 pages
//! checkpoints it at once, before its statement returns: the commit of a 100,000-PC group reset
//! then copied ~20,000 pages and its admin waited 0.33 s more for the 202 (docs/benchmarks.md,
//! session 16). So the writer connection does not checkpoint (`wal_autocheckpoint = 0`); this
//! thread does, on its own connection, a passive checkpoint (it never waits for, nor blocks,
//! readers and the writer) within [`PERIOD`] of a write.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::Duration;

use redeploy_core::store::StoreResult;

/// How long after a write its frames may wait in the WAL.
pub(crate) const PERIOD: Duration = Duration::from_millis(200);

/// The checkpointing thread; it stops when this is dropped (or its pool closes).
#[derive(Debug)]
pub(crate) struct Checkpointer {
    /// Set by each write turn; the thread checkpoints when it finds it set.
    written: Arc<AtomicBool>,
    /// Dropped to stop the thread.
    stop: std::sync::Mutex<Option<Sender<()>>>,
}

impl Checkpointer {
    /// Starts the thread on a connection of its own to database file `path`.
    pub(crate) fn start(path: &Path, wait: Duration) -> StoreResult<Self> {
        let conn = crate::writer::open_plain(path, wait)?;
        let written = Arc::new(AtomicBool::new(false));
        let (stop, stopped) = mpsc::channel::<()>();
        let seen = written.clone();
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || {
                // Woken every period until stopped (a message or the sender dropped).
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(PERIOD) {
                    if seen.swap(false, Ordering::AcqRel) {
                        // Busy (another process checkpointing, a backup) or failed: the next
                        // period tries again; the WAL only grows meanwhile.
                        let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                    }
                }
            })
            .map_err(|e| redeploy_core::store::StoreError::Backend(e.to_string()))?;
        Ok(Self {
            written,
            stop: std::sync::Mutex::new(Some(stop)),
        })
    }

    /// A write turn was taken: checkpoint within [`PERIOD`].
    pub(crate) fn wrote(&self) {
        self.written.store(true, Ordering::Release);
    }

    /// Stops the thread (its connection closes with it).
    pub(crate) fn stop(&self) {
        self.stop.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}
