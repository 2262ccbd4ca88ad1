//! Integration tests of the SQLite store: the shared `Store` conformance suite on a fresh
//! temp-file database per test.

mod conformance {
    use std::sync::Arc;

    use store_sqlite::SqliteStore;
    use testkit::Fixture;

    async fn fresh() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("redeploy.db");
        let store = SqliteStore::connect(path.to_str().unwrap()).await.unwrap();
        Fixture::new(Arc::new(store)).keep(dir)
    }

    testkit::store_conformance_tests!(fresh);
}
