//! `Store` on PostgreSQL: the shared queries of `store-sql` with this crate's [`Postgres`]
//! dialect. Safe for several server processes sharing one database: rows read before a change
//! are locked (`FOR UPDATE`), queued commands are taken with `FOR UPDATE SKIP LOCKED`, so two
//! processes never send the same command twice, and daily-cap checks take an advisory lock.
//! Ids are `uuid`, instants `timestamptz` (microseconds, as on SQLite), JSON documents `jsonb`
//! (migration `20261206000001_native_types.sql` converted the earlier text and integer forms).

use async_trait::async_trait;
use redeploy_core::store::{from_micros, to_micros, StoreError, StoreResult};
use sqlx::postgres::{PgArguments, PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{PgPool, Row as _};
use store_sql::{backend, corrupt, run, Arg, ConnectOptions, Dialect, On, SqlRow};
use time::OffsetDateTime;
use uuid::Uuid;

pub mod backup;

/// The PostgreSQL store.
pub type PostgresStore = store_sql::SqlStore<Postgres>;

/// The PostgreSQL dialect of the shared queries.
#[derive(Debug)]
pub enum Postgres {}

type Query<'q> = sqlx::query::Query<'q, sqlx::Postgres, PgArguments>;

/// `at` cut to whole microseconds the way SQLite stores it (`to_micros`), so that both backends
/// hold and compare the same instant.
fn micros(at: OffsetDateTime) -> StoreResult<OffsetDateTime> {
    from_micros(to_micros(at))
}

fn query(sql: &str, args: Vec<Arg>) -> StoreResult<Query<'_>> {
    let mut q = sqlx::query(sql);
    for arg in args {
        q = match arg {
            Arg::Text(v) => q.bind(v),
            Arg::Int(v) => q.bind(v),
            Arg::Bool(v) => q.bind(v),
            Arg::Bytes(v) => q.bind(v),
            Arg::Id(v) => q.bind(v),
            Arg::Time(v) => q.bind(v.map(micros).transpose()?),
            Arg::Json(v) => q.bind(
                v.map(|text| {
                    serde_json::from_str::<serde_json::Value>(&text)
                        .map_err(|e| StoreError::Corrupt(format!("JSON {text:?}: {e}")))
                })
                .transpose()?,
            ),
        };
    }
    Ok(q)
}

#[async_trait]
impl Dialect for Postgres {
    type Pool = PgPool;
    type Tx = sqlx::Transaction<'static, sqlx::Postgres>;
    type Row = Row;
    type Held = tokio::sync::Mutex<Option<sqlx::pool::PoolConnection<sqlx::Postgres>>>;

    const FOR_UPDATE: &'static str = " FOR UPDATE";
    /// Skip rows a concurrent session step already holds.
    const TAKE_LOCK: &'static str = " FOR UPDATE SKIP LOCKED";
    /// Under READ COMMITTED two transactions could otherwise both see room for the last slot;
    /// the lock is released at commit or rollback.
    const CAP_LOCK: Option<&'static str> =
        Some("SELECT pg_advisory_xact_lock(hashtext('redeploy.daily_cap'))");
    /// One microsecond before the Unix epoch: the instant `NEVER_SEEN_KEY` (-1) stands for.
    const NEVER_SEEN: &'static str = "TIMESTAMPTZ '1969-12-31 23:59:59.999999+00'";
    const ID_TYPE: &'static str = "uuid";
    const WRITABLE_CTE: bool = true;
    const ANALYZE: Option<&'static str> = Some("VACUUM ANALYZE");
    const MAINTAIN_AFTER_BULK: &'static [&'static str] = &["ANALYZE actions", "VACUUM actions"];
    const TRAIL_FOREIGN_KEY: bool = false;
    const SEARCH_TABLE: Option<&'static str> = None;
    const PACKED_CENSUS: bool = false;
    const BULK_SETTINGS: Option<&'static str> = Some("SET LOCAL work_mem = '64MB'");
    const BATCHED_READS: bool = true;
    const QUERY_BUILDER: &'static dyn sea_query::QueryBuilder = &sea_query::PostgresQueryBuilder;

    fn placeholder(n: usize) -> String {
        format!("${n}")
    }

    fn utc_day(col: &str) -> String {
        // Date arithmetic, not `EXTRACT(EPOCH …)`: that is numeric, and its division cost the
        // dashboard's chart 30–50 ms over 100,000 resets (issue #16).
        format!("((({col} AT TIME ZONE 'UTC')::date - DATE '1970-01-01')::BIGINT)")
    }

    fn join_ids(col: &str) -> String {
        format!("string_agg({col}::text, ' ')")
    }

    /// Connects to `url` (`postgres://...`) and runs the embedded migrations (sqlx serialises
    /// concurrent migrators with an advisory lock, so several processes may start at once).
    /// `options.wait` bounds the wait for a pooled connection: sqlx keeps retrying a refused
    /// connection until then, so while PostgreSQL is down a statement fails after `wait`, and
    /// the pool connects again by itself once it is back.
    async fn connect(url: &str, options: &ConnectOptions) -> StoreResult<PgPool> {
        // No JIT: our statements are short, and PostgreSQL compiled some of a check-in's with
        // LLVM on every run once its estimate passed `jit_above_cost` (perf: LLVM in the
        // postgres processes, 45 % of a 2-core machine under check-in load).
        let connect = url
            .parse::<PgConnectOptions>()
            .map_err(backend)?
            // Generic plans from the first run: each of the pool's connections otherwise plans
            // each statement shape five times before settling, and with 30 connections and
            // the check-in batches' shapes that planning was a quarter of PostgreSQL's work
            // in a 10-second load (pg_stat_statements; docs/benchmarks.md, session 14). A
            // statement whose best plan depends on its values asks for its own
            // (`fetch_all_planned_for_args`).
            .options([("jit", "off"), ("plan_cache_mode", "force_generic_plan")]);
        let pool = PgPoolOptions::new()
            .max_connections(30)
            .acquire_timeout(options.wait)
            // No ping before each use (a round trip per statement): sqlx already pings a
            // connection when it goes back to the pool and closes it if that fails, so a
            // connection PostgreSQL dropped is found then, or fails the one statement that
            // meets it (answered 503, retried by the PC's next check-in).
            .test_before_acquire(false)
            .connect_with(connect)
            .await
            .map_err(backend)?;
        sqlx::migrate!()
            .run(&pool)
            .await
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        Ok(pool)
    }

    async fn close(pool: &PgPool) {
        pool.close().await;
    }

    async fn begin(pool: &PgPool) -> StoreResult<Self::Tx> {
        pool.begin().await.map_err(backend)
    }

    async fn commit(tx: Self::Tx) -> StoreResult<()> {
        tx.commit().await.map_err(backend)
    }

    async fn execute(on: On<'_, Self>, sql: &str, args: Vec<Arg>) -> StoreResult<u64> {
        Ok(run::execute(on, query(sql, args)?).await?.rows_affected())
    }

    async fn fetch_all(on: On<'_, Self>, sql: &str, args: Vec<Arg>) -> StoreResult<Vec<Row>> {
        let rows = run::fetch_all(on, query(sql, args)?).await?;
        Ok(rows.into_iter().map(Row).collect())
    }

    async fn fetch_all_planned_for_args(
        on: On<'_, Self>,
        sql: &str,
        args: Vec<Arg>,
    ) -> StoreResult<Vec<Row>> {
        // Connections plan every statement generically (`plan_cache_mode` in `connect`); this
        // one is planned for its values, in a transaction of its own when it has none.
        const CUSTOM: &str = "SET LOCAL plan_cache_mode = force_custom_plan";
        let rows = match on {
            On::Tx(tx) => {
                sqlx::query(CUSTOM)
                    .execute(&mut **tx)
                    .await
                    .map_err(backend)?;
                run::fetch_all(On::<Self>::Tx(tx), query(sql, args)?).await?
            }
            On::Pool(pool) => {
                let mut tx = pool.begin().await.map_err(backend)?;
                sqlx::query(CUSTOM)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?;
                let rows = run::fetch_all(On::<Self>::Tx(&mut tx), query(sql, args)?).await?;
                tx.commit().await.map_err(backend)?;
                rows
            }
        };
        Ok(rows.into_iter().map(Row).collect())
    }

    async fn fetch_all_held(
        held: &Self::Held,
        pool: &PgPool,
        sql: &str,
        args: Vec<Arg>,
    ) -> StoreResult<Vec<Row>> {
        // One batch of a kind at a time: the lock is never waited for in practice.
        let mut slot = held.lock().await;
        let conn = match &mut *slot {
            Some(conn) => conn,
            empty => empty.insert(key_lookups(pool).await?),
        };
        let result = query(sql, args)?.fetch_all(&mut **conn).await;
        // Whatever the error, the connection may be what failed: it is closed (its place in
        // the pool freed), the next statement takes one that works. A pool closing meanwhile
        // waits for every connection: this one is closed at once.
        if result.is_err() || pool.is_closed() {
            *slot = None;
        }
        Ok(result.map_err(backend)?.into_iter().map(Row).collect())
    }

    async fn release_held(held: &Self::Held) {
        held.lock().await.take();
    }

    async fn fetch_optional(
        on: On<'_, Self>,
        sql: &str,
        args: Vec<Arg>,
    ) -> StoreResult<Option<Row>> {
        Ok(run::fetch_optional(on, query(sql, args)?).await?.map(Row))
    }
}

/// A pooled connection for the batched check-in statements (`Dialect::Held`), which look up at
/// most 64 devices by key: planned with index lookups only. On a small fleet PostgreSQL's costs
/// otherwise prefer reading whole tables — with 200 PCs a view read of 32 hashed every device
/// row and all 3,600 inventory rows, 10× the work of the 32 lookups (docs/benchmarks.md,
/// session 17) — and generic plans made while the tables were nearly empty (a fleet's first
/// enrollments) are kept until statistics change. The settings stay on this connection: it
/// is closed, not given back to the pool, when it is let go.
async fn key_lookups(pool: &PgPool) -> StoreResult<sqlx::pool::PoolConnection<sqlx::Postgres>> {
    const KEY_LOOKUPS: &str = "SELECT set_config('enable_seqscan', 'off', false), \
         set_config('enable_hashjoin', 'off', false), set_config('enable_mergejoin', 'off', false)";
    let mut conn = pool.acquire().await.map_err(backend)?;
    conn.close_on_drop();
    sqlx::query(KEY_LOOKUPS)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    Ok(conn)
}

/// A result row, read in this dialect's encodings.
pub struct Row(PgRow);

fn get<'r, T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>>(
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
        get(self, col)
    }

    fn time(&self, col: &str) -> StoreResult<Option<OffsetDateTime>> {
        get(self, col)
    }

    fn json(&self, col: &str) -> StoreResult<Option<String>> {
        Ok(get::<Option<serde_json::Value>>(self, col)?.map(|v| v.to_string()))
    }
}
