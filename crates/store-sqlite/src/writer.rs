//! This process's writes, one at a time, on one connection of their own.
//!
//! SQLite has one write lock per database. Left to SQLite, concurrent writers of one process
//! would wait in its busy handler, which sleeps (1 ms, 2 ms, 5 ms, … up to 100 ms between
//! tries) while the lock may long be free: under a burst of check-ins the machine idled a third
//! of the time (docs/benchmarks.md "Check-ins against the TLS floor"). Here writers take turns
//! in order ([`Writer`] behind a fair async mutex), then write on the writer connection: no
//! pooled connection to take and give back (sqlx pings a connection each time it goes back to
//! its pool, one more trip to the connection's thread), the lock free when asked for. The busy
//! timeout still bounds waits on other processes (a backup, `redeploy migrate`).
//!
//! A transaction dropped uncommitted (an error, a canceled request) leaves the connection marked
//! [`Writer::dirty`]: a task rolls it back at once, or the next writer does before its own work.

use std::sync::Arc;
use std::time::Duration;

use redeploy_core::store::{StoreError, StoreResult};
use sqlx::sqlite::SqliteConnection;
use sqlx::{Connection as _, Executor as _};
use tokio::sync::{Mutex, OwnedMutexGuard};

use store_sql::backend;

/// The writer connection and what is known of its state.
#[derive(Debug)]
pub(crate) struct Writer {
    /// Where this process writes; `None` for an in-memory database, whose one pooled
    /// connection is the whole database (writes take their turn here and run there).
    conn: Option<SqliteConnection>,
    /// The connection may be inside a transaction nobody will finish: roll back before use.
    dirty: bool,
}

/// The writer turn: the mutex and how long a writer waits for it.
#[derive(Clone, Debug)]
pub(crate) struct Turns {
    writer: Arc<Mutex<Writer>>,
    wait: Duration,
}

/// A held turn.
pub(crate) type Turn = OwnedMutexGuard<Writer>;

impl Turns {
    pub(crate) fn new(conn: Option<SqliteConnection>, wait: Duration) -> Self {
        Self {
            writer: Arc::new(Mutex::new(Writer { conn, dirty: false })),
            wait,
        }
    }

    /// This process's turn to write, within the wait a write lock gets (a turn held longer
    /// than that is a writer stuck, or waiting for itself: fail as SQLite's busy timeout would).
    pub(crate) async fn take(&self) -> StoreResult<Turn> {
        let mut turn = tokio::time::timeout(self.wait, self.writer.clone().lock_owned())
            .await
            .map_err(|_| {
                StoreError::Backend(format!(
                    "database is locked: no turn to write within {:?}",
                    self.wait
                ))
            })?;
        settle(&mut turn).await;
        Ok(turn)
    }

    /// Closes the writer connection.
    pub(crate) async fn close(&self) {
        let mut writer = self.writer.lock().await;
        if let Some(conn) = writer.conn.take() {
            let _ = conn.close().await;
        }
    }
}

/// Rolls back what a dropped transaction left open (an error here means none was open).
async fn settle(turn: &mut Turn) {
    let writer = &mut **turn;
    if !writer.dirty {
        return;
    }
    if let Some(conn) = writer.conn.as_mut() {
        let _ = conn.execute("ROLLBACK").await;
    }
    writer.dirty = false;
}

/// The writer connection of a turn, if the database has one.
pub(crate) fn connection(turn: &mut Turn) -> Option<&mut SqliteConnection> {
    turn.conn.as_mut()
}

/// Starts a write transaction on the turn's connection: `BEGIN IMMEDIATE` takes the write lock
/// up front, so a writer of another process makes this one wait (busy timeout) instead of
/// failing on upgrading from a read.
pub(crate) async fn begin(turn: &mut Turn) -> StoreResult<()> {
    let writer = &mut **turn;
    let Some(conn) = writer.conn.as_mut() else {
        return Err(StoreError::Backend("no writer connection".into()));
    };
    // Marked before the statement: a BEGIN canceled on its way is rolled back by the next use.
    writer.dirty = true;
    conn.execute("BEGIN IMMEDIATE").await.map_err(backend)?;
    Ok(())
}

/// Commits the turn's open transaction.
pub(crate) async fn commit(turn: &mut Turn) -> StoreResult<()> {
    let writer = &mut **turn;
    let Some(conn) = writer.conn.as_mut() else {
        return Err(StoreError::Backend("no writer connection".into()));
    };
    conn.execute("COMMIT").await.map_err(backend)?;
    writer.dirty = false;
    Ok(())
}

/// A turn given up with its transaction open: rolled back by a task now, so that the write
/// lock is not kept until the next writer comes (or by the next writer, without a runtime).
pub(crate) fn abandon(mut turn: Turn) {
    if !turn.dirty {
        return;
    }
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(async move { settle(&mut turn).await });
    }
}
