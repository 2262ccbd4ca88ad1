//! Running a sqlx query on either side of [`On`], for dialects whose pool and transaction are
//! sqlx's own: the part of `Dialect::execute`/`fetch_*` that does not depend on the database.

use redeploy_core::store::StoreResult;
use sqlx::query::Query;
use sqlx::{Database, Executor, IntoArguments, Pool, Transaction};

use crate::dialect::{backend, Dialect, On};

/// Runs `q`; the database's result (its changed-rows count).
pub async fn execute<'a, D, DB>(
    on: On<'a, D>,
    q: Query<'a, DB, <DB as Database>::Arguments<'a>>,
) -> StoreResult<DB::QueryResult>
where
    D: Dialect<Pool = Pool<DB>, Tx = Transaction<'static, DB>>,
    DB: Database,
    <DB as Database>::Arguments<'a>: IntoArguments<'a, DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    match on {
        On::Pool(pool) => q.execute(pool).await,
        On::Tx(tx) => q.execute(&mut **tx).await,
    }
    .map_err(backend)
}

/// Runs `q`; every row.
pub async fn fetch_all<'a, D, DB>(
    on: On<'a, D>,
    q: Query<'a, DB, <DB as Database>::Arguments<'a>>,
) -> StoreResult<Vec<DB::Row>>
where
    D: Dialect<Pool = Pool<DB>, Tx = Transaction<'static, DB>>,
    DB: Database,
    <DB as Database>::Arguments<'a>: IntoArguments<'a, DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    match on {
        On::Pool(pool) => q.fetch_all(pool).await,
        On::Tx(tx) => q.fetch_all(&mut **tx).await,
    }
    .map_err(backend)
}

/// Runs `q`; its first row, if any.
pub async fn fetch_optional<'a, D, DB>(
    on: On<'a, D>,
    q: Query<'a, DB, <DB as Database>::Arguments<'a>>,
) -> StoreResult<Option<DB::Row>>
where
    D: Dialect<Pool = Pool<DB>, Tx = Transaction<'static, DB>>,
    DB: Database,
    <DB as Database>::Arguments<'a>: IntoArguments<'a, DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    match on {
        On::Pool(pool) => q.fetch_optional(pool).await,
        On::Tx(tx) => q.fetch_optional(&mut **tx).await,
    }
    .map_err(backend)
}
