//! This process's writes, one at a time, on one connection of their own, run in place.
//!
//! SQLite has one write lock per database. Left to SQLite, concurrent writers of one process
//! would wait in its busy handler, which sleeps (1 ms, 2 ms, 5 ms, … up to 100 ms between
//! tries) while the lock may long be free: under a burst of check-ins the machine idled a third
//! of the time (docs/benchmarks.md "Check-ins against the TLS floor"). Here writers take turns
//! in order ([`Writer`] behind a fair async mutex), then write on the writer connection.
//!
//! The writer connection is a plain (rusqlite) connection whose statements run on the thread of
//! the task that holds the turn, not sent to a connection thread as sqlx does: a statement
//! there was two thread hand-offs, and the task holding the turn waited for a runtime worker
//! behind TLS handshakes after each one, so the turn — the whole database's writes — was held
//! for about a millisecond per transaction while the CPU idled (docs/benchmarks.md, session 12).
//! A statement of a check-in runs in tens of microseconds; a large one (a 100,000-PC group
//! reset) holds its runtime worker as long as it holds the write lock, which every other writer
//! waits for anyway. The busy timeout still bounds waits on other processes (a backup,
//! `redeploy migrate`).
//!
//! A transaction dropped uncommitted (an error, a canceled request) is rolled back where it is
//! dropped ([`abandon`]).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use redeploy_core::store::{to_micros, StoreError, StoreResult};
use rusqlite::types::{Value, ValueRef};
use rusqlite::{ffi, Connection, OpenFlags};
use store_sql::Arg;
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::checkpoint::Checkpointer;

/// How many prepared statements the writer keeps (rusqlite's default is 16: a check-in's
/// statements alone nearly fill it).
const STATEMENT_CACHE: usize = 256;

/// The writer connection and what is known of its state.
#[derive(Debug)]
pub(crate) struct Writer {
    /// Where this process writes; `None` for an in-memory database, whose one pooled
    /// connection is the whole database (writes take their turn here and run there).
    conn: Option<Connection>,
    /// The connection may be inside a transaction nobody will finish: roll back before use.
    dirty: bool,
    /// Told of each write committed (the writer connection does not checkpoint itself).
    checkpoints: Option<Checkpointer>,
}

/// The writer turn: the mutex and how long a writer waits for it.
#[derive(Clone, Debug)]
pub(crate) struct Turns {
    writer: Arc<Mutex<Writer>>,
    wait: Duration,
}

/// A held turn.
pub(crate) type Turn = OwnedMutexGuard<Writer>;

/// Opens the writer connection to database file `path` with the pool's settings: WAL (already
/// set on the file by the pool), `synchronous = NORMAL`, foreign keys, busy timeout `wait`, and
/// a page cache of `cache_kib`; it leaves checkpoints to a [`Checkpointer`].
pub(crate) fn open(path: &Path, wait: Duration, cache_kib: u32) -> StoreResult<Connection> {
    let conn = open_plain(path, wait)?;
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; \
         PRAGMA cache_size = -{cache_kib}; PRAGMA wal_autocheckpoint = 0;"
    ))
    .map_err(error)?;
    Ok(conn)
}

/// A connection to database file `path` for short reads run in place ([`Readers`]): it can only
/// read (`query_only`).
pub(crate) fn open_reader(path: &Path, wait: Duration) -> StoreResult<Connection> {
    let conn = open_plain(path, wait)?;
    conn.execute_batch("PRAGMA query_only = ON;")
        .map_err(error)?;
    Ok(conn)
}

pub(crate) fn open_plain(path: &Path, wait: Duration) -> StoreResult<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags).map_err(error)?;
    conn.busy_timeout(wait).map_err(error)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// Connections for the short reads a check-in makes (a few index probes), run in place on the
/// task that asks, as the writer's statements are: through sqlx's pool each was two thread
/// hand-offs (docs/benchmarks.md, session 12). A read that finds them all busy goes to the pool.
#[derive(Debug, Default)]
pub(crate) struct Readers(Vec<std::sync::Mutex<Option<Connection>>>);

impl Readers {
    pub(crate) fn new(conns: Vec<Connection>) -> Self {
        Self(
            conns
                .into_iter()
                .map(|c| std::sync::Mutex::new(Some(c)))
                .collect(),
        )
    }

    /// Closes the readers (waiting for a read in progress); later reads use the pool.
    pub(crate) fn close(&self) {
        for reader in &self.0 {
            let conn = reader.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(conn) = conn {
                let _ = conn.close();
            }
        }
    }

    /// The first row of query `sql` with `args` on a free reader, or the arguments back when
    /// none is free.
    pub(crate) fn fetch_first(
        &self,
        sql: &str,
        args: Vec<Arg>,
    ) -> Result<StoreResult<Option<RawRow>>, Vec<Arg>> {
        let free = self
            .0
            .iter()
            .filter_map(|c| c.try_lock().ok())
            .find(|c| c.is_some());
        let Some(conn) = free.as_ref().and_then(|c| c.as_ref()) else {
            return Err(args);
        };
        Ok(fetch_on(conn, sql, args, Some(1)).map(|rows| rows.into_iter().next()))
    }
}

impl Turns {
    /// The turns of writer connection `conn` (`None` for an in-memory database), with
    /// `checkpoints`, a connection of its own to the file, for its [`Checkpointer`].
    pub(crate) fn new(
        conn: Option<Connection>,
        checkpoints: Option<Connection>,
        wait: Duration,
    ) -> StoreResult<Self> {
        let writer = Arc::new(Mutex::new(Writer {
            conn,
            dirty: false,
            checkpoints: None,
        }));
        if let Some(c) = checkpoints {
            let checkpointer = Checkpointer::start(c, Arc::downgrade(&writer))?;
            writer
                .try_lock()
                .map_err(|_| StoreError::Backend("a new writer is locked".into()))?
                .checkpoints = Some(checkpointer);
        }
        Ok(Self { writer, wait })
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
        settle(&mut turn);
        Ok(turn)
    }

    /// Closes the writer connection.
    pub(crate) async fn close(&self) {
        let mut writer = self.writer.lock().await;
        if let Some(conn) = writer.conn.take() {
            let _ = conn.close();
        }
        // Stops its thread (whose connection closes with it).
        writer.checkpoints.take();
    }
}

/// Rolls back what a dropped transaction left open (an error here means none was open).
fn settle(writer: &mut Writer) {
    if !writer.dirty {
        return;
    }
    if let Some(conn) = writer.conn.as_mut() {
        if !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
    }
    writer.dirty = false;
}

/// Whether the turn's database has a writer connection (a file; not an in-memory database).
pub(crate) fn has_connection(turn: &Turn) -> bool {
    turn.conn.is_some()
}

fn connection(writer: &mut Writer) -> StoreResult<&mut Connection> {
    writer
        .conn
        .as_mut()
        .ok_or_else(|| StoreError::Backend("no writer connection".into()))
}

/// Starts a write transaction on the turn's connection: `BEGIN IMMEDIATE` takes the write lock
/// up front, so a writer of another process makes this one wait (busy timeout) instead of
/// failing on upgrading from a read.
pub(crate) fn begin(turn: &mut Turn) -> StoreResult<()> {
    let writer = &mut **turn;
    // Marked before the statement: a BEGIN that failed half way is rolled back by the next use.
    writer.dirty = true;
    connection(writer)?
        .execute_batch("BEGIN IMMEDIATE")
        .map_err(error)
}

/// Commits the turn's open transaction.
pub(crate) fn commit(turn: &mut Turn) -> StoreResult<()> {
    let writer = &mut **turn;
    connection(writer)?.execute_batch("COMMIT").map_err(error)?;
    writer.dirty = false;
    wrote(writer);
    Ok(())
}

/// A turn given up with its transaction open: rolled back now, before the turn passes on.
pub(crate) fn abandon(mut turn: Turn) {
    settle(&mut turn);
}

/// A result row read on the writer connection: its column names (shared by the rows of one
/// statement) and values.
#[derive(Debug)]
pub(crate) struct RawRow {
    columns: Arc<[String]>,
    values: Vec<Value>,
}

impl RawRow {
    /// The value of column `col` (the first of that name, as sqlx reads it).
    pub(crate) fn value(&self, col: &str) -> StoreResult<&Value> {
        self.columns
            .iter()
            .position(|c| c == col)
            .or_else(|| {
                self.columns
                    .iter()
                    .position(|c| c.eq_ignore_ascii_case(col))
            })
            .map(|i| &self.values[i])
            .ok_or_else(|| StoreError::Corrupt(format!("no column {col} in the row")))
    }
}

/// Runs statement `sql` with `args` on the turn's connection; how many rows it changed.
pub(crate) fn execute(turn: &mut Turn, sql: &str, args: Vec<Arg>) -> StoreResult<u64> {
    let conn = connection(turn)?;
    let mut stmt = conn.prepare_cached(sql).map_err(error)?;
    bind(&mut stmt, args)?;
    let readonly = stmt.readonly();
    let mut rows = stmt.raw_query();
    while rows.next().map_err(error)?.is_some() {}
    drop(rows);
    drop(stmt);
    let changed = if readonly { 0 } else { conn.changes() };
    if !readonly && conn.is_autocommit() {
        wrote(turn);
    }
    Ok(changed)
}

/// A write was committed on the writer's connection.
fn wrote(writer: &Writer) {
    if let Some(checkpoints) = &writer.checkpoints {
        checkpoints.wrote();
    }
}

/// Runs query `sql` with `args` on the turn's connection: its rows, at most `limit`.
pub(crate) fn fetch(
    turn: &mut Turn,
    sql: &str,
    args: Vec<Arg>,
    limit: Option<usize>,
) -> StoreResult<Vec<RawRow>> {
    fetch_on(connection(turn)?, sql, args, limit)
}

/// Runs query `sql` with `args` on `conn`: its rows, at most `limit`.
pub(crate) fn fetch_on(
    conn: &Connection,
    sql: &str,
    args: Vec<Arg>,
    limit: Option<usize>,
) -> StoreResult<Vec<RawRow>> {
    let mut stmt = conn.prepare_cached(sql).map_err(error)?;
    bind(&mut stmt, args)?;
    let columns: Arc<[String]> = stmt.column_names().into_iter().map(String::from).collect();
    let width = columns.len();
    let mut out = Vec::new();
    let mut rows = stmt.raw_query();
    while let Some(row) = rows.next().map_err(error)? {
        let values = (0..width)
            .map(|i| row.get_ref(i).map(Value::from).map_err(error))
            .collect::<StoreResult<Vec<_>>>()?;
        out.push(RawRow {
            columns: columns.clone(),
            values,
        });
        if limit.is_some_and(|l| out.len() >= l) {
            break;
        }
    }
    Ok(out)
}

/// Binds `args` to the statement's parameters in order, in this dialect's encodings (ids as
/// hyphenated text, instants as microseconds since the epoch, JSON as text, booleans as 0/1).
fn bind(stmt: &mut rusqlite::CachedStatement<'_>, args: Vec<Arg>) -> StoreResult<()> {
    for (i, arg) in args.into_iter().enumerate() {
        let at = i + 1;
        let bound = match arg {
            Arg::Text(v) | Arg::Json(v) => stmt.raw_bind_parameter(at, v),
            Arg::Int(v) => stmt.raw_bind_parameter(at, v),
            Arg::Bool(v) => stmt.raw_bind_parameter(at, v),
            Arg::Bytes(v) => stmt.raw_bind_parameter(at, v),
            Arg::Id(v) => stmt.raw_bind_parameter(at, v.map(|u| u.hyphenated().to_string())),
            Arg::Time(v) => stmt.raw_bind_parameter(at, v.map(to_micros)),
        };
        bound.map_err(error)?;
    }
    Ok(())
}

/// Maps a rusqlite error as `store_sql::backend` maps sqlx's: a unique or primary-key violation
/// is a conflict, a foreign-key violation names a missing row.
pub(crate) fn error(e: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(f, message) = &e {
        let message = message.clone().unwrap_or_else(|| f.to_string());
        match f.extended_code {
            ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                return StoreError::Conflict(message)
            }
            ffi::SQLITE_CONSTRAINT_FOREIGNKEY => {
                return StoreError::NotFound(format!("referenced row: {message}"))
            }
            _ => {}
        }
    }
    StoreError::Backend(e.to_string())
}

/// What a value reads as, for a column error.
pub(crate) fn kind(v: &Value) -> &'static str {
    match ValueRef::from(v) {
        ValueRef::Null => "NULL",
        ValueRef::Integer(_) => "INTEGER",
        ValueRef::Real(_) => "REAL",
        ValueRef::Text(_) => "TEXT",
        ValueRef::Blob(_) => "BLOB",
    }
}
