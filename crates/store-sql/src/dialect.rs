//! What differs between the databases, behind one trait: connecting (with the migrations),
//! transactions, row locks, the daily-cap lock, and how ids, instants and JSON are bound and read.

use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;
use redeploy_core::store::{StoreError, StoreResult};
use sqlx::error::ErrorKind;
use time::OffsetDateTime;
use uuid::Uuid;

/// One statement parameter in the store's own terms. The dialect picks the database type: ids,
/// instants and JSON are where the backends differ; `None` is SQL NULL of that type.
#[derive(Clone, Debug, PartialEq)]
pub enum Arg {
    /// Text.
    Text(Option<String>),
    /// A 64-bit integer.
    Int(Option<i64>),
    /// A boolean.
    Bool(Option<bool>),
    /// Bytes.
    Bytes(Vec<u8>),
    /// An identifier.
    Id(Option<Uuid>),
    /// An instant (microsecond precision: finer parts are never stored).
    Time(Option<OffsetDateTime>),
    /// A JSON document, as its text.
    Json(Option<String>),
}

/// How the pool waits on the database. An unreachable or locked database fails a statement
/// after `wait` instead of holding the request that runs it (issue #14 item 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectOptions {
    /// The longest a statement waits for a pooled connection (both backends; on PostgreSQL
    /// this includes reconnecting while the server refuses connections) and, on SQLite, for the
    /// database's write lock (its busy timeout).
    pub wait: Duration,
}

impl Default for ConnectOptions {
    /// Ten seconds: tools and tests, which would rather wait than fail. The server passes its
    /// own `database_timeout`.
    fn default() -> Self {
        ConnectOptions {
            wait: Duration::from_secs(10),
        }
    }
}

/// Typed reads of one result row; each returns `None` for SQL NULL and `Corrupt` for a value of
/// another type.
pub trait SqlRow: Send + Sync {
    /// A text column.
    fn text(&self, col: &str) -> StoreResult<Option<String>>;
    /// An integer column.
    fn int(&self, col: &str) -> StoreResult<Option<i64>>;
    /// A boolean column.
    fn bool(&self, col: &str) -> StoreResult<Option<bool>>;
    /// A bytes column.
    fn bytes(&self, col: &str) -> StoreResult<Option<Vec<u8>>>;
    /// An id column (as the dialect binds [`Arg::Id`]).
    fn uuid(&self, col: &str) -> StoreResult<Option<Uuid>>;
    /// An instant column (as the dialect binds [`Arg::Time`]).
    fn time(&self, col: &str) -> StoreResult<Option<OffsetDateTime>>;
    /// A JSON column, as its text (as the dialect binds [`Arg::Json`]).
    fn json(&self, col: &str) -> StoreResult<Option<String>>;
}

/// Where a statement runs: the pool (autocommit) or an open transaction.
pub enum On<'a, D: Dialect> {
    /// Any pooled connection, one statement on its own.
    Pool(&'a D::Pool),
    /// Inside a transaction.
    Tx(&'a mut D::Tx),
}

/// One database family. The shared queries (sea-query statements, written by
/// [`Self::QUERY_BUILDER`] with this database's placeholders) are run through these methods; the
/// implementation binds each [`Arg`] in its own types.
#[async_trait]
pub trait Dialect: Send + Sync + Sized + 'static {
    /// The connection pool.
    type Pool: Clone + Debug + Send + Sync;
    /// An open transaction (rolled back when dropped uncommitted).
    type Tx: Send;
    /// One result row.
    type Row: SqlRow;
    /// A connection one kind of batched statement keeps between its statements (`view_batch`,
    /// `idle_batch`: one batch of a kind runs at a time), where taking a pooled connection and
    /// giving it back cost more than the statement's own round trip (PostgreSQL: sqlx pings a
    /// connection it takes back, a round trip per statement). `()` where there is nothing to keep.
    type Held: Default + Send + Sync;

    /// Row lock clause of a SELECT of rows about to be changed in a transaction. The shared
    /// statements write it as sea-query's `LockType::Update`, which gives the same clause (none
    /// on SQLite); this names it for statements written outside sea-query.
    const FOR_UPDATE: &'static str;
    /// Lock clause appended when taking queued commands (`query::built_locked`): rows another
    /// transaction holds are skipped, never waited for nor taken twice.
    const TAKE_LOCK: &'static str;
    /// Statement run before a daily-cap count, serialising the count-then-insert of concurrent
    /// transactions; `None` where the transaction already excludes every other writer.
    const CAP_LOCK: Option<&'static str>;
    /// SQL literal of the instant that stands for "never seen" in device lists sorted by last
    /// seen: before every real instant (`redeploy_core::store::NEVER_SEEN_KEY`).
    const NEVER_SEEN: &'static str;
    /// The type an id column has, for a `CAST` of text to an id.
    const ID_TYPE: &'static str;
    /// Whether a statement may change rows inside a `WITH` clause (PostgreSQL; not SQLite): a
    /// check-in step that only writes the device row and inventory is then one statement, one
    /// round trip, instead of a transaction of four (`check_in::step_in_one_statement`).
    const WRITABLE_CTE: bool;
    /// Whether a statement costs a round trip to another process (PostgreSQL; not SQLite, which
    /// runs in this one): check-in reads arriving together are then read by one statement
    /// (`view_batch`).
    const BATCHED_READS: bool;
    /// The statement that gathers the planner's statistics after a bulk load, if the
    /// database's plans depend on them (`BulkLoad::refresh_statistics`); run outside a
    /// transaction.
    const ANALYZE: Option<&'static str>;
    /// The statements run in the background, in order, once a plan that queued a group's
    /// actions in bulk ([`redeploy_core::store::BulkQueue`]) committed: until autovacuum comes
    /// by (a minute or more) PostgreSQL plans every read of the table as if the 100,000 new rows
    /// were not there (`ANALYZE`), and reads the active resets from the heap rather than from
    /// the partial index alone, its visibility map unset (`VACUUM`: the dashboard with 100,000
    /// resets pending went from 0.175–0.197 to 0.142–0.158 s p50, issue #16).
    const MAINTAIN_AFTER_BULK: &'static [&'static str];
    /// Whether the support trail's rows have a foreign key to their device (SQLite), which
    /// refuses a message of an unknown device (NotFound) by itself; without one (PostgreSQL,
    /// migration `20261220000001`) `append_trail` checks its devices once per batch.
    const TRAIL_FOREIGN_KEY: bool;
    /// The full-text table that narrows a device search before its `LIKE` decides (SQLite: an
    /// FTS5 trigram index keyed by the device row's rowid, migration `20261217000001`); `None`
    /// where indexes on the searched expressions serve the `LIKE` itself (PostgreSQL: pg_trgm).
    const SEARCH_TABLE: Option<&'static str>;
    /// Whether the readiness census groups by the device's own columns only, in the order of
    /// the `devices_census` index, with each device's yes/no inputs packed into one character
    /// of a per-group text (SQLite: its GROUP BY of all 13 inputs sorts every device, most of
    /// the dashboard's time at 100,000 PCs); otherwise one GROUP BY of all inputs (PostgreSQL
    /// hashes them).
    const PACKED_CENSUS: bool;
    /// Statement run at the start of a group reset's set-based writes, inside their transaction
    /// (`bulk_queue`): PostgreSQL raises `work_mem` for it (`SET LOCAL`), so its sorts of
    /// 100,000 rows stay in memory instead of spilling 20–30 MB each to disk.
    const BULK_SETTINGS: Option<&'static str>;
    /// The sea-query builder that writes this dialect's SQL (placeholders, quoting, locks).
    const QUERY_BUILDER: &'static dyn sea_query::QueryBuilder;

    /// Placeholder `n` (counted from 1) in this dialect's SQL, for text written outside
    /// sea-query.
    fn placeholder(n: usize) -> String;
    /// SQL of the UTC day of instant column `col`, as whole days since the Unix epoch (an
    /// integer): how a count groups by day.
    fn utc_day(col: &str) -> String;
    /// SQL of an aggregate joining id column `col` of a group's rows as text, separated by
    /// spaces.
    fn join_ids(col: &str) -> String;
    /// Opens the pool for `url`, waiting on the database as `options` say, and runs the
    /// migrations.
    async fn connect(url: &str, options: &ConnectOptions) -> StoreResult<Self::Pool>;
    /// Closes every connection.
    async fn close(pool: &Self::Pool);
    /// Starts a transaction that may write.
    async fn begin(pool: &Self::Pool) -> StoreResult<Self::Tx>;
    /// Commits.
    async fn commit(tx: Self::Tx) -> StoreResult<()>;
    /// Runs a statement; how many rows it changed.
    async fn execute(on: On<'_, Self>, sql: &str, args: Vec<Arg>) -> StoreResult<u64>;
    /// Runs a query; every row.
    async fn fetch_all(on: On<'_, Self>, sql: &str, args: Vec<Arg>) -> StoreResult<Vec<Self::Row>>;
    /// Runs a query; its first row, if any.
    async fn fetch_optional(
        on: On<'_, Self>,
        sql: &str,
        args: Vec<Arg>,
    ) -> StoreResult<Option<Self::Row>>;
    /// Runs a query planned for these arguments, not with a generic plan (device search:
    /// PostgreSQL's generic plan for `LIKE $1` walks the name index through every device,
    /// 85 ms at 100,000 PCs, where a plan for the pattern reads the trigram indexes in 2);
    /// every row.
    async fn fetch_all_planned_for_args(
        on: On<'_, Self>,
        sql: &str,
        args: Vec<Arg>,
    ) -> StoreResult<Vec<Self::Row>> {
        Self::fetch_all(on, sql, args).await
    }
    /// Runs a query on `held`'s connection — taken from `pool` when it has none, given up after
    /// an error (it may be broken; the next statement takes another) — where the dialect keeps
    /// one; otherwise on the pool. Every row.
    async fn fetch_all_held(
        held: &Self::Held,
        pool: &Self::Pool,
        sql: &str,
        args: Vec<Arg>,
    ) -> StoreResult<Vec<Self::Row>> {
        let _ = held;
        Self::fetch_all(On::Pool(pool), sql, args).await
    }
    /// Gives `held`'s connection back to the pool (before the pool closes, which waits for
    /// every connection).
    async fn release_held(held: &Self::Held) {
        let _ = held;
    }
    /// Runs a short query on its own (a few index probes: a check-in's first read); its first
    /// row, if any. A dialect may run it in place instead of on a pooled connection.
    async fn fetch_short(
        pool: &Self::Pool,
        sql: &str,
        args: Vec<Arg>,
    ) -> StoreResult<Option<Self::Row>> {
        Self::fetch_optional(On::Pool(pool), sql, args).await
    }
}

/// Maps a sqlx error: unique violations are conflicts, foreign-key violations name a missing row.
/// A transaction PostgreSQL aborted to break a deadlock (SQLSTATE 40P01) or a serialization
/// failure (40001) is a conflict too: it was rolled back whole, and reading again is the remedy.
pub fn backend(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(d) = &e {
        if matches!(d.code().as_deref(), Some("40P01" | "40001")) {
            return StoreError::Conflict(d.message().to_owned());
        }
        match d.kind() {
            ErrorKind::UniqueViolation => return StoreError::Conflict(d.message().to_owned()),
            ErrorKind::ForeignKeyViolation => {
                return StoreError::NotFound(format!("referenced row: {}", d.message()))
            }
            _ => {}
        }
    }
    StoreError::Backend(e.to_string())
}

/// A column that could not be read as the type asked for.
pub fn corrupt(col: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("column {col}: {e}"))
}
