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

mod connect {
    use redeploy_core::store::{DeviceQuery, DeviceStore};
    use store_sqlite::SqliteStore;

    /// The server hands over `sqlite://<data_dir>/redeploy.db`; a bare path works too, and the
    /// file is created with the schema on first start.
    #[tokio::test]
    async fn url_path_and_memory_forms_open_a_migrated_database() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("redeploy.db").display());
        let store = SqliteStore::connect(&url).await.unwrap();
        assert!(store
            .list_devices(&DeviceQuery::default())
            .await
            .unwrap()
            .items
            .is_empty());
        store.close().await;
        assert!(dir.path().join("redeploy.db").exists());
        // Reopening runs no migration twice.
        let again = SqliteStore::connect(dir.path().join("redeploy.db").to_str().unwrap()).await;
        assert!(again.is_ok());
        let memory = SqliteStore::connect("sqlite::memory:").await.unwrap();
        assert!(memory
            .list_devices(&DeviceQuery::default())
            .await
            .unwrap()
            .items
            .is_empty());
    }
}
