//! `Store` on SQLite: the shared queries of `store-sql` with this crate's [`Sqlite`] dialect —
//! WAL, busy timeout, foreign keys, a small pool; writes that must be atomic run in
//! `BEGIN IMMEDIATE` transactions so concurrent writers queue instead of failing. Ids are stored
//! as hyphenated lowercase UUID text, instants as microseconds since the Unix epoch
//! (`redeploy_core::store::to_micros`), JSON as text.

use std::str::FromStr;

use async_trait::async_trait;
use redeploy_core::store::{from_micros, to_micros, StoreError, StoreResult};
use rusqlite::types::Value;
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::Row as _;
use store_sql::{backend, corrupt, Arg, ConnectOptions, Dialect, On, SqlRow};
use time::OffsetDateTime;
use uuid::Uuid;

pub mod backup;
mod checkpoint;
mod writer;

use writer::{Turn, Turns};

/// The writer connection's page cache, in KiB (SQLite's default is 2,000 KiB): room for a large
/// transaction's dirty pages. Measured on a 100,000-PC group reset (docs/benchmarks.md): 32 MiB
/// bought about a tenth of a second and cost 30–60 MiB of peak memory.
const WRITER_CACHE_KIB: u32 = 8 * 1024;

/// Connections for short reads run in place (a check-in's first read): one per core of the
/// machine this was measured on; a read finding them busy uses the pool.
const READERS: usize = 2;

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

/// The connection pool (reads) and this process's writer (module `writer`: writes take turns and run
/// on a connection of their own).
#[derive(Clone, Debug)]
pub struct SqlitePool {
    pool: sqlx::SqlitePool,
    turns: Turns,
    /// Short reads run in place (`writer::Readers`; none for an in-memory database).
    readers: std::sync::Arc<writer::Readers>,
}

impl SqlitePool {
    /// The sqlx pool (tools and tests that run their own statements).
    pub fn sqlx(&self) -> &sqlx::SqlitePool {
        &self.pool
    }
}

impl std::ops::Deref for SqlitePool {
    type Target = sqlx::SqlitePool;

    fn deref(&self) -> &sqlx::SqlitePool {
        &self.pool
    }
}

/// A write transaction, holding the process's writer turn until it commits or is dropped
/// (dropped uncommitted: rolled back).
#[derive(Debug)]
pub struct SqliteTx(TxOn);

#[derive(Debug)]
enum TxOn {
    /// On the writer connection (a database file). `None` once committed.
    Writer(Option<Turn>),
    /// On the one pooled connection of an in-memory database (sqlx rolls it back if dropped).
    Pooled {
        tx: Option<sqlx::Transaction<'static, sqlx::Sqlite>>,
        _turn: Turn,
    },
}

impl Drop for SqliteTx {
    fn drop(&mut self) {
        if let TxOn::Writer(turn) = &mut self.0 {
            if let Some(turn) = turn.take() {
                writer::abandon(turn);
            }
        }
    }
}

/// Runs sqlx query method `$method` of `$q` where `$on` says: reads on the pool; statements of
/// a transaction on the in-memory database's one connection. (Statements of a transaction on the
/// writer connection run in place, module `writer`; `execute` on the pool is a write, in turn.)
macro_rules! run_on {
    ($on:expr, $q:expr, $method:ident) => {
        match $on {
            On::Pool(pool) => $q.$method(&pool.pool).await,
            On::Tx(tx) => match &mut tx.0 {
                TxOn::Pooled { tx: Some(tx), .. } => $q.$method(&mut **tx).await,
                _ => return Err(StoreError::Backend("transaction already finished".into())),
            },
        }
    };
}

/// The held writer turn of `on`, if its statements run on the writer connection.
fn writer_turn<'a>(on: &'a mut On<'_, Sqlite>) -> StoreResult<Option<&'a mut Turn>> {
    match on {
        On::Tx(tx) => match &mut tx.0 {
            TxOn::Writer(Some(turn)) => Ok(Some(turn)),
            TxOn::Writer(None) => Err(StoreError::Backend("transaction already finished".into())),
            TxOn::Pooled { .. } => Ok(None),
        },
        On::Pool(_) => Ok(None),
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
    type Tx = SqliteTx;
    type Row = Row;
    type Held = ();

    /// None: a `BEGIN IMMEDIATE` transaction already holds the database's single write lock.
    const FOR_UPDATE: &'static str = "";
    /// None, as for `FOR_UPDATE`.
    const TAKE_LOCK: &'static str = "";
    /// None needed: `BEGIN IMMEDIATE` already holds the database's single write lock, so a
    /// count and the insert after it cannot interleave.
    const CAP_LOCK: Option<&'static str> = None;
    const NEVER_SEEN: &'static str = "-1";
    const ID_TYPE: &'static str = "TEXT";
    const WRITABLE_CTE: bool = false;
    const ANALYZE: Option<&'static str> = None;
    const MAINTAIN_AFTER_BULK: &'static [&'static str] = &[];
    const TRAIL_FOREIGN_KEY: bool = true;
    const SEARCH_TABLE: Option<&'static str> = Some("devices_search");
    const PACKED_CENSUS: bool = true;
    const BULK_SETTINGS: Option<&'static str> = None;
    const BATCHED_READS: bool = false;
    const QUERY_BUILDER: &'static dyn sea_query::QueryBuilder = &sea_query::SqliteQueryBuilder;

    fn placeholder(_n: usize) -> String {
        "?".to_owned()
    }

    /// Instants are integer microseconds since the epoch (never before it here: integer
    /// division is the floor).
    fn utc_day(col: &str) -> String {
        format!("({col} / 86400000000)")
    }

    fn join_ids(col: &str) -> String {
        format!("group_concat({col}, ' ')")
    }

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
            // A file connection does not go stale as a network one does; testing it before
            // each use would cost a round trip to its worker thread per statement.
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await
            .map_err(backend)?;
        sqlx::migrate!()
            .run(&pool)
            .await
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        // The writer's own connection to the file (an in-memory database is private to its
        // one pooled connection: its writes run there).
        let conn = if in_memory {
            None
        } else {
            // A larger page cache than SQLite's default 2 MiB: a transaction that writes many
            // rows (a group's reset of 100,000 PCs) spills fewer dirty pages to the WAL before
            // its commit (issue #16). Memory is taken only as pages are used.
            Some(writer::open(
                options.get_filename(),
                connect.wait,
                WRITER_CACHE_KIB,
            )?)
        };
        let readers = if in_memory {
            writer::Readers::default()
        } else {
            writer::Readers::new(
                (0..READERS)
                    .map(|_| writer::open_reader(options.get_filename(), connect.wait))
                    .collect::<StoreResult<_>>()?,
            )
        };
        let checkpoints = if in_memory {
            None
        } else {
            Some(writer::open_plain(options.get_filename(), connect.wait)?)
        };
        Ok(SqlitePool {
            pool,
            turns: Turns::new(conn, checkpoints, connect.wait)?,
            readers: std::sync::Arc::new(readers),
        })
    }

    async fn close(pool: &SqlitePool) {
        pool.readers.close();
        pool.turns.close().await;
        pool.pool.close().await;
    }

    async fn begin(pool: &SqlitePool) -> StoreResult<Self::Tx> {
        // This process's writers in turn first (no connection is held while waiting); then
        // IMMEDIATE takes the write lock up front (writer::begin).
        let mut turn = pool.turns.take().await?;
        if !writer::has_connection(&turn) {
            let tx = pool
                .pool
                .begin_with("BEGIN IMMEDIATE")
                .await
                .map_err(backend)?;
            return Ok(SqliteTx(TxOn::Pooled {
                tx: Some(tx),
                _turn: turn,
            }));
        }
        writer::begin(&mut turn)?;
        Ok(SqliteTx(TxOn::Writer(Some(turn))))
    }

    async fn commit(mut tx: Self::Tx) -> StoreResult<()> {
        match &mut tx.0 {
            TxOn::Writer(turn) => match turn.as_mut() {
                Some(t) => writer::commit(t),
                None => Ok(()),
            },
            TxOn::Pooled { tx: inner, .. } => match inner.take() {
                Some(inner) => inner.commit().await.map_err(backend),
                None => Ok(()),
            },
        }
    }

    async fn execute(mut on: On<'_, Self>, sql: &str, args: Vec<Arg>) -> StoreResult<u64> {
        if let Some(turn) = writer_turn(&mut on)? {
            return writer::execute(turn, sql, args);
        }
        let done = match on {
            // A statement on its own that changes something: a write, in its turn.
            On::Pool(pool) => {
                let mut turn = pool.turns.take().await?;
                if writer::has_connection(&turn) {
                    return writer::execute(&mut turn, sql, args);
                }
                query(sql, args).execute(&pool.pool).await
            }
            on => run_on!(on, query(sql, args), execute),
        };
        Ok(done.map_err(backend)?.rows_affected())
    }

    async fn fetch_all(mut on: On<'_, Self>, sql: &str, args: Vec<Arg>) -> StoreResult<Vec<Row>> {
        if let Some(turn) = writer_turn(&mut on)? {
            let rows = writer::fetch(turn, sql, args, None)?;
            return Ok(rows.into_iter().map(|r| Row(RowOf::Raw(r))).collect());
        }
        let rows = run_on!(on, query(sql, args), fetch_all);
        Ok(rows
            .map_err(backend)?
            .into_iter()
            .map(|r| Row(RowOf::Sqlx(r)))
            .collect())
    }

    async fn fetch_short(pool: &SqlitePool, sql: &str, args: Vec<Arg>) -> StoreResult<Option<Row>> {
        match pool.readers.fetch_first(sql, args) {
            Ok(row) => Ok(row?.map(|r| Row(RowOf::Raw(r)))),
            Err(args) => Self::fetch_optional(On::Pool(pool), sql, args).await,
        }
    }

    async fn fetch_optional(
        mut on: On<'_, Self>,
        sql: &str,
        args: Vec<Arg>,
    ) -> StoreResult<Option<Row>> {
        if let Some(turn) = writer_turn(&mut on)? {
            let rows = writer::fetch(turn, sql, args, Some(1))?;
            return Ok(rows.into_iter().next().map(|r| Row(RowOf::Raw(r))));
        }
        let row = run_on!(on, query(sql, args), fetch_optional);
        Ok(row.map_err(backend)?.map(|r| Row(RowOf::Sqlx(r))))
    }
}

/// A result row, read in this dialect's encodings: from sqlx (the pool, an in-memory
/// database) or from the writer connection.
pub struct Row(RowOf);

enum RowOf {
    Sqlx(SqliteRow),
    Raw(writer::RawRow),
}

fn get<'r, T: sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>>(
    row: &'r SqliteRow,
    col: &str,
) -> StoreResult<T> {
    row.try_get::<T, _>(col).map_err(|e| corrupt(col, e))
}

/// Column `col` of a writer row as `T`, read by `read` (`None` for another type than it
/// takes); SQL NULL is `None`.
fn raw<T>(
    row: &writer::RawRow,
    col: &str,
    want: &str,
    read: impl FnOnce(&Value) -> Option<T>,
) -> StoreResult<Option<T>> {
    let value = row.value(col)?;
    if matches!(value, Value::Null) {
        return Ok(None);
    }
    read(value)
        .map(Some)
        .ok_or_else(|| corrupt(col, format!("{} is not {want}", writer::kind(value))))
}

fn raw_int(v: &Value) -> Option<i64> {
    match v {
        Value::Integer(i) => Some(*i),
        _ => None,
    }
}

fn raw_text(v: &Value) -> Option<String> {
    match v {
        Value::Text(t) => Some(t.clone()),
        _ => None,
    }
}

impl SqlRow for Row {
    fn text(&self, col: &str) -> StoreResult<Option<String>> {
        match &self.0 {
            RowOf::Sqlx(r) => get(r, col),
            RowOf::Raw(r) => raw(r, col, "TEXT", raw_text),
        }
    }

    fn int(&self, col: &str) -> StoreResult<Option<i64>> {
        match &self.0 {
            RowOf::Sqlx(r) => get(r, col),
            RowOf::Raw(r) => raw(r, col, "INTEGER", raw_int),
        }
    }

    fn bool(&self, col: &str) -> StoreResult<Option<bool>> {
        match &self.0 {
            RowOf::Sqlx(r) => get(r, col),
            RowOf::Raw(r) => raw(r, col, "a boolean", |v| raw_int(v).map(|i| i != 0)),
        }
    }

    fn bytes(&self, col: &str) -> StoreResult<Option<Vec<u8>>> {
        match &self.0 {
            RowOf::Sqlx(r) => get(r, col),
            RowOf::Raw(r) => raw(r, col, "BLOB", |v| match v {
                Value::Blob(b) => Some(b.clone()),
                Value::Text(t) => Some(t.clone().into_bytes()),
                _ => None,
            }),
        }
    }

    fn uuid(&self, col: &str) -> StoreResult<Option<Uuid>> {
        self.text(col)?
            .map(|t| Uuid::parse_str(t.trim()).map_err(|e| corrupt(col, e)))
            .transpose()
    }

    fn time(&self, col: &str) -> StoreResult<Option<OffsetDateTime>> {
        self.int(col)?.map(from_micros).transpose()
    }

    fn json(&self, col: &str) -> StoreResult<Option<String>> {
        self.text(col)
    }
}
