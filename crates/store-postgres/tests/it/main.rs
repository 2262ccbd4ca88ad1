//! Integration tests of the PostgreSQL store: the shared `Store` conformance suite, each test
//! on a fresh database `redeploy_test_<random>` created on the server named by
//! `REDEPLOY_TEST_POSTGRES` (default `postgres://postgres@127.0.0.1:5432`) and dropped after.

mod conformance {
    use std::sync::Arc;

    use sqlx::{Connection, PgConnection};
    use store_postgres::PostgresStore;
    use testkit::Fixture;

    fn base_url() -> String {
        std::env::var("REDEPLOY_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
            .trim_end_matches('/')
            .to_owned()
    }

    async fn maintenance(statement: String) {
        let mut conn = PgConnection::connect(&format!("{}/postgres", base_url()))
            .await
            .expect("PostgreSQL must be reachable at REDEPLOY_TEST_POSTGRES");
        sqlx::query(&statement).execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
    }

    async fn fresh() -> Fixture {
        let name = format!("redeploy_test_{}", uuid::Uuid::new_v4().simple());
        maintenance(format!("CREATE DATABASE {name}")).await;
        let store = PostgresStore::connect(&format!("{}/{name}", base_url()))
            .await
            .unwrap();
        let closer = store.clone();
        Fixture::new(Arc::new(store)).on_finish(async move {
            closer.close().await;
            maintenance(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
        })
    }

    testkit::store_conformance_tests!(fresh);
}

/// Both backends run the same query text; a change to one copy must be made to the other.
#[test]
fn shared_queries_match_the_sqlite_backend() {
    let here = include_str!("../../src/imp.rs");
    let sqlite = include_str!("../../../store-sqlite/src/imp.rs");
    assert!(
        here == sqlite,
        "crates/store-postgres/src/imp.rs and crates/store-sqlite/src/imp.rs differ"
    );
}
