//! Running a sqlx query on either side of [`On`], for dialects whose pool and transaction are
//! sqlx's own: the part of `Dialect::execute`/`fetch_*` that does not depend on the database.

use redeploy_core::store::StoreResult;
use sqlx::query::Query;
use sqlx::{Database, Executor, IntoArguments, Pool, Transaction};

use crate::dialect::{backend, Dialect, On};

/// One function per sqlx query method: runs the query on the pool or in the transaction.
macro_rules! on_either {
    ($($(#[$doc:meta])* $method:ident -> $out:ty;)*) => {
        $(
            $(#[$doc])*
            pub async fn $method<'a, D, DB>(
                on: On<'a, D>,
                q: Query<'a, DB, <DB as Database>::Arguments<'a>>,
            ) -> StoreResult<$out>
            where
                D: Dialect<Pool = Pool<DB>, Tx = Transaction<'static, DB>>,
                DB: Database,
                <DB as Database>::Arguments<'a>: IntoArguments<'a, DB>,
                for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
            {
                match on {
                    On::Pool(pool) => q.$method(pool).await,
                    On::Tx(tx) => q.$method(&mut **tx).await,
                }
                .map_err(backend)
            }
        )*
    };
}

on_either! {
    /// Runs `q`; the database's result (its changed-rows count).
    execute -> DB::QueryResult;
    /// Runs `q`; every row.
    fetch_all -> Vec<DB::Row>;
    /// Runs `q`; its first row, if any.
    fetch_optional -> Option<DB::Row>;
}
