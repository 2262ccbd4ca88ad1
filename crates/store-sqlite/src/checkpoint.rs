//! The WAL's frames copied back into the database file by a thread of their own.
//!
//! Left to SQLite, the connection that commits a transaction growing the WAL past 1,000 pages
//! checkpoints it at once, before its statement returns: the commit of a 100,000-PC group reset
//! then copied ~20,000 pages and its admin waited 0.33 s more for the 202 (docs/benchmarks.md,
//! session 16). So the writer connection does not checkpoint (`wal_autocheckpoint = 0`); this
//! thread does, on its own connection, within [`PERIOD`] of a write: first a passive checkpoint
//! while this process's writers go on (the bulk of the copying), then another holding the writer
//! turn, which copies only what was committed meanwhile and so completes — SQLite starts the WAL
//! over at the next write only after a checkpoint copied all of it, and one racing a steady
//! stream of check-ins never would, so the WAL would grow without bound.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Weak};
use std::time::Duration;

use redeploy_core::store::{StoreError, StoreResult};
use rusqlite::Connection;
use tokio::sync::Mutex;

use crate::writer::Writer;

/// How long after a write its frames may wait in the WAL.
pub(crate) const PERIOD: Duration = Duration::from_millis(200);

/// The checkpointing thread's handle, kept by the writer; the thread stops when it is dropped.
#[derive(Debug)]
pub(crate) struct Checkpointer {
    /// Set by each committed write; the thread checkpoints when it finds it set.
    written: Arc<AtomicBool>,
    /// Never sent on: dropped with this handle, which wakes and ends the thread.
    _stop: Sender<()>,
}

impl Checkpointer {
    /// Starts the thread on `conn`, a connection of its own to the database file, taking the
    /// turn of `writer` for each checkpoint's second half (it ends when the writer is gone).
    pub(crate) fn start(conn: Connection, writer: Weak<Mutex<Writer>>) -> StoreResult<Self> {
        let written = Arc::new(AtomicBool::new(false));
        let (stop, stopped) = mpsc::channel::<()>();
        let seen = written.clone();
        let checkpoint = move || {
            // Busy (another process checkpointing, a backup) or failed: the next period tries
            // again; the WAL only grows meanwhile.
            let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
        };
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || {
                // Woken every period until the handle (the sender) is dropped.
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(PERIOD) {
                    if !seen.swap(false, Ordering::AcqRel) {
                        continue;
                    }
                    checkpoint();
                    let Some(writer) = writer.upgrade() else {
                        break;
                    };
                    // A plain thread, not a runtime's: it may block on the async mutex.
                    let _turn = writer.blocking_lock();
                    checkpoint();
                }
            })
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        Ok(Self {
            written,
            _stop: stop,
        })
    }

    /// A write was committed: checkpoint within [`PERIOD`].
    pub(crate) fn wrote(&self) {
        self.written.store(true, Ordering::Release);
    }
}
