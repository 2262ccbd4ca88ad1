//! `Store` on SQLite: the shared queries of `store-sql` with this crate's [`Sqlite`] dialect —
//! WAL, busy timeout, foreign keys, a small pool; writes that must be atomic run in
//! `BEGIN IMMEDIATE` transactions so concurrent writers queue instead of failing. Ids are stored
//! as hyphenated lowercase UUID text, instants as microseconds since the Unix epoch
//! (`redeploy_core::store::to_micros`), JSON as text.

use std::str::FromStr;

use async_trait::async_trait;
use redeploy_core::store::{from_micros, to_micros, StoreError, StoreResult};
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row as _, SqlitePool};
use store_sql::{backend, corrupt, run, Arg, ConnectOptions, Dialect, On, SqlRow};
use time::OffsetDateTime;
use uuid::Uuid;

pub mod backup;

/// The SQLite store.
pub type SqliteStore = store_sql::SqlStore<Sqlite>;

/// The SQLite dialect of the shared queries.
#[derive(Debug)]
pub enum Sqlite {}

/// The connect options of a `sqlite:` URL or a plain file path.
fn parse_options(url_or_path: &str) -> StoreResult<SqliteConnectOptions> {
    if url_or_path.starts_with("sqlite:") {
        SqliteConnectOptions::from_str(url_or_path).map_err(backend)
    } else {
        Ok(SqliteConnectOptions::new().filename(url_or_path))
    }
}

type Query<'q> = sqlx::query::Query<'q, sqlx::Sqlite, SqliteArguments<'q>>;

fn query(sql: &str, args: Vec<Arg>) -> Query<'_> {
    args.into_iter().fold(sqlx::query(sql), |q, arg| match arg {
        Arg::Text(v) | Arg::Json(v) => q.bind(v),
        Arg::Int(v) => q.bind(v),
        Arg::Bool(v) => q.bind(v),
        Arg::Bytes(v) => q.bind(v),
        Arg::Id(v) => q.bind(v.map(|u| u.hyphenated().to_string())),
        Arg::Time(v) => q.bind(v.map(to_micros)),
    })
}

#[async_trait]
impl Dialect for Sqlite {
    type Pool = SqlitePool;
    type Tx = sqlx::Transaction<'static, sqlx::Sqlite>;
    type Row = Row;

    /// None: a `BEGIN IMMEDIATE` transaction already holds the database's single write lock.
    const FOR_UPDATE: &'static str = "";
    /// None, as for `FOR_UPDATE`.
    const TAKE_LOCK: &'static str = "";
    /// None needed: `BEGIN IMMEDIATE` already holds the database's single write lock, so a
    /// count and the insert after it cannot interleave.
    const CAP_LOCK: Option<&'static str> = None;
    const NEVER_SEEN: &'static str = "-1";
    const QUERY_BUILDER: &'static dyn sea_query::QueryBuilder = &sea_query::SqliteQueryBuilder;

    /// Opens (creating if missing) the database at a `sqlite:` URL or a file path, and runs the
    /// embedded migrations. `sqlite::memory:` gives a private in-memory database (one connection).
    /// `connect.wait` bounds both the wait for a pooled connection and for the write lock (the
    /// busy timeout), so a database another process keeps locked fails a write in that time.
    async fn connect(url_or_path: &str, connect: &ConnectOptions) -> StoreResult<SqlitePool> {
        let options = parse_options(url_or_path)?;
        let in_memory = url_or_path.contains(":memory:") || url_or_path.contains("mode=memory");
        let options = options
            .create_if_missing(true)
            .journal_mode(if in_memory {
                SqliteJournalMode::Memory
            } else {
                SqliteJournalMode::Wal
            })
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(connect.wait)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(if in_memory { 1 } else { 4 })
            .acquire_timeout(connect.wait)
            .connect_with(options)
            .await
            .map_err(backend)?;
        sqlx::migrate!()
            .run(&pool)
            .await
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        Ok(pool)
    }

    async fn close(pool: &SqlitePool) {
        pool.close().await;
    }

    async fn begin(pool: &SqlitePool) -> StoreResult<Self::Tx> {
        // IMMEDIATE: take the write lock up front, so two writers wait (busy_timeout) instead of
        // one failing with SQLITE_BUSY when it upgrades from a read.
        pool.begin_with("BEGIN IMMEDIATE").await.map_err(backend)
    }

    async fn commit(tx: Self::Tx) -> StoreResult<()> {
        tx.commit().await.map_err(backend)
    }

    async fn execute(on: On<'_, Self>, sql: &str, args: Vec<Arg>) -> StoreResult<u64> {
        Ok(run::execute(on, query(sql, args)).await?.rows_affected())
    }

    async fn fetch_all(on: On<'_, Self>, sql: &str, args: Vec<Arg>) -> StoreResult<Vec<Row>> {
        let rows = run::fetch_all(on, query(sql, args)).await?;
        Ok(rows.into_iter().map(Row).collect())
    }

    async fn fetch_optional(
        on: On<'_, Self>,
        sql: &str,
        args: Vec<Arg>,
    ) -> StoreResult<Option<Row>> {
        Ok(run::fetch_optional(on, query(sql, args)).await?.map(Row))
    }
}

/// A result row, read in this dialect's encodings.
pub struct Row(SqliteRow);

fn get<'r, T: sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>>(
    row: &'r Row,
    col: &str,
) -> StoreResult<T> {
    row.0.try_get::<T, _>(col).map_err(|e| corrupt(col, e))
}

impl SqlRow for Row {
    fn text(&self, col: &str) -> StoreResult<Option<String>> {
        get(self, col)
    }

    fn int(&self, col: &str) -> StoreResult<Option<i64>> {
        get(self, col)
    }

    fn bool(&self, col: &str) -> StoreResult<Option<bool>> {
        get(self, col)
    }

    fn bytes(&self, col: &str) -> StoreResult<Option<Vec<u8>>> {
        get(self, col)
    }

    fn uuid(&self, col: &str) -> StoreResult<Option<Uuid>> {
        get::<Option<String>>(self, col)?
            .map(|t| Uuid::parse_str(t.trim()).map_err(|e| corrupt(col, e)))
            .transpose()
    }

    fn time(&self, col: &str) -> StoreResult<Option<OffsetDateTime>> {
        get::<Option<i64>>(self, col)?.map(from_micros).transpose()
    }

    fn json(&self, col: &str) -> StoreResult<Option<String>> {
        get(self, col)
    }
}
