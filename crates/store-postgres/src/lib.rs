//! `Store` on PostgreSQL (sqlx). Safe for several server processes sharing one database:
//! rows read before a change are locked (`FOR UPDATE`), queued commands are taken with
//! `FOR UPDATE SKIP LOCKED`, so two processes never send the same command twice.
//! Holds no business rules: the rules it applies are functions of `redeploy_core`.

use std::time::Duration;

use redeploy_core::store::{StoreError, StoreResult};
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Postgres};

// The queries are shared with store-sqlite: one file, compiled once per backend against this
// crate's `Backend`, `Tx`, lock clauses and row type (see that file's header).
#[path = "../../store-sqlite/src/imp.rs"]
mod imp;

use imp::backend;

/// The backend this crate implements the shared queries (`imp.rs`) for.
type Backend = PostgresStore;
type Db = Postgres;
type DbRow = sqlx::postgres::PgRow;
type Tx = sqlx::Transaction<'static, Db>;
type Q<'q> = sqlx::query::Query<'q, Db, <Db as sqlx::Database>::Arguments<'q>>;

/// Row lock for rows read before being changed in a transaction.
const FOR_UPDATE: &str = " FOR UPDATE";
/// Taking queued commands: skip rows a concurrent session step already holds.
const TAKE_LOCK: &str = " FOR UPDATE SKIP LOCKED";
/// Serialises daily-cap checks (count, then insert) of concurrent transactions, in any process:
/// under READ COMMITTED two of them could otherwise both see room for the last slot. The lock is
/// released at commit or rollback.
const CAP_LOCK: &str = "SELECT pg_advisory_xact_lock(hashtext('redeploy.daily_cap'))";

/// The PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://...`) and runs the embedded migrations (sqlx serialises
    /// concurrent migrators with an advisory lock, so several processes may start at once).
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await
            .map_err(backend)?;
        sqlx::migrate!()
            .run(&pool)
            .await
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        Ok(Self { pool })
    }

    /// The underlying pool (for health checks and tools).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn begin(&self) -> StoreResult<Tx> {
        self.pool.begin().await.map_err(backend)
    }
}
