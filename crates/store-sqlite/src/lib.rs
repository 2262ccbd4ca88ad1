//! `Store` on SQLite (sqlx): WAL, busy timeout, foreign keys, a small pool; writes that must be
//! atomic run in `BEGIN IMMEDIATE` transactions so concurrent writers queue instead of failing.
//! Holds no business rules: the rules it applies are functions of `redeploy_core`.

use std::str::FromStr;
use std::time::Duration;

use redeploy_core::store::{StoreError, StoreResult};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool};

mod imp;

use imp::backend;

/// The backend this crate implements the shared queries (`imp.rs`) for.
type Backend = SqliteStore;
type Db = Sqlite;
type DbRow = sqlx::sqlite::SqliteRow;
type Tx = sqlx::Transaction<'static, Db>;
type Q<'q> = sqlx::query::Query<'q, Db, <Db as sqlx::Database>::Arguments<'q>>;

/// Row lock clause for rows read before being changed in a transaction. SQLite has none: a
/// `BEGIN IMMEDIATE` transaction already holds the database's single write lock.
const FOR_UPDATE: &str = "";
/// Lock clause when taking queued commands (see `FOR_UPDATE`).
const TAKE_LOCK: &str = "";
/// Statement serialising daily-cap checks; none needed: `BEGIN IMMEDIATE` already holds the
/// database's single write lock, so a count and the insert after it cannot interleave.
const CAP_LOCK: &str = "";

/// The SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if missing) the database at a `sqlite:` URL or a file path, and runs the
    /// embedded migrations. `sqlite::memory:` gives a private in-memory database (one connection).
    pub async fn connect(url_or_path: &str) -> StoreResult<Self> {
        let options = if url_or_path.starts_with("sqlite:") {
            SqliteConnectOptions::from_str(url_or_path).map_err(backend)?
        } else {
            SqliteConnectOptions::new().filename(url_or_path)
        };
        let in_memory = url_or_path.contains(":memory:") || url_or_path.contains("mode=memory");
        let options = options
            .create_if_missing(true)
            .journal_mode(if in_memory {
                SqliteJournalMode::Memory
            } else {
                SqliteJournalMode::Wal
            })
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(if in_memory { 1 } else { 4 })
            .connect_with(options)
            .await
            .map_err(backend)?;
        sqlx::migrate!()
            .run(&pool)
            .await
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        Ok(Self { pool })
    }

    /// The underlying pool (for health checks and tools).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn begin(&self) -> StoreResult<Tx> {
        // IMMEDIATE: take the write lock up front, so two writers wait (busy_timeout) instead of
        // one failing with SQLITE_BUSY when it upgrades from a read.
        self.pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(backend)
    }
}
