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

mod upgrade {
    use std::sync::Arc;

    use sqlx::migrate::Migrator;
    use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};
    use store_sqlite::SqliteStore;
    use testkit::upgrade::{
        duplicate_resets, duplicate_resets_resolved, ONE_ACTIVE_ERASING_VERSION,
    };

    /// A directory holding this crate's migrations older than `version`: the schema a database
    /// written by an earlier release has.
    fn migrations_before(version: i64) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let src = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations");
        for entry in std::fs::read_dir(src).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            let v: i64 = name.split('_').next().unwrap().parse().unwrap();
            if v < version {
                std::fs::copy(&path, dir.path().join(&name)).unwrap();
            }
        }
        dir
    }

    /// A snapshot of an earlier release's database (`redeploy backup`) keeps its schema
    /// version, and the first start on it after a restore brings it forward to this build's.
    #[tokio::test]
    async fn a_snapshot_of_an_older_database_is_migrated_forward() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true);
        let pool = SqlitePool::connect_with(options).await.unwrap();
        let old = migrations_before(ONE_ACTIVE_ERASING_VERSION);
        let migrator = Migrator::new(old.path()).await.unwrap();
        migrator.run(&pool).await.unwrap();
        let copy = dir.path().join("copy.db");
        store_sqlite::backup::snapshot(path.to_str().unwrap(), &copy)
            .await
            .unwrap();
        pool.close().await;
        let copy = copy.to_str().unwrap();
        let before = store_sqlite::backup::schema_version(copy).await.unwrap();
        assert_eq!(before, Some(store_sql::newest_migration(&migrator)));
        assert!(before < Some(ONE_ACTIVE_ERASING_VERSION));
        SqliteStore::connect(copy).await.unwrap().close().await;
        assert_eq!(
            store_sqlite::backup::schema_version(copy).await.unwrap(),
            Some(store_sqlite::backup::latest_migration())
        );
    }

    /// A database that already holds two active resets on one device (a race before the index)
    /// upgrades: the extra one is expired, and the index holds afterwards.
    #[tokio::test]
    async fn duplicate_active_resets_do_not_break_the_upgrade() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("redeploy.db");
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .foreign_keys(true);
        let pool = SqlitePool::connect_with(options).await.unwrap();
        let old = migrations_before(ONE_ACTIVE_ERASING_VERSION);
        Migrator::new(old.path())
            .await
            .unwrap()
            .run(&pool)
            .await
            .unwrap();
        let seed = duplicate_resets();
        for statement in &seed.statements {
            sqlx::query(statement).execute(&pool).await.unwrap();
        }
        pool.close().await;
        let store = SqliteStore::connect(path.to_str().unwrap()).await.unwrap();
        duplicate_resets_resolved(Arc::new(store), &seed).await;
    }
}

mod checkpoint {
    use std::time::{Duration, Instant};

    use redeploy_core::group::Group;
    use redeploy_core::ids::GroupId;
    use redeploy_core::store::GroupStore;
    use rusqlite::{Connection, OpenFlags};
    use store_sqlite::SqliteStore;

    /// Whether the database file itself (the WAL ignored: `immutable`) holds group `name`.
    fn in_the_file(path: &std::path::Path, name: &str) -> bool {
        let url = format!("file:{}?immutable=1", path.display());
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI;
        let Ok(conn) = Connection::open_with_flags(url, flags) else {
            return false;
        };
        conn.query_row(
            "SELECT COUNT(*) FROM device_groups WHERE name = ?1",
            [name],
            |r| r.get::<_, i64>(0),
        )
        .is_ok_and(|n| n == 1)
    }

    /// The writer leaves checkpoints to a thread of its own (a large commit does not wait for
    /// one): what it commits still reaches the database file while the store stays open and
    /// nothing else is written.
    #[tokio::test]
    async fn a_commit_reaches_the_database_file_without_another_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("redeploy.db");
        let store = SqliteStore::connect(path.to_str().unwrap()).await.unwrap();
        let t0 = time::OffsetDateTime::UNIX_EPOCH;
        for i in 0..3 {
            let name = format!("checkpointed-{i}");
            assert!(!in_the_file(&path, &name));
            store
                .create_group(&Group::new_static(GroupId::generate(), &name, vec![], t0))
                .await
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(30);
            while !in_the_file(&path, &name) {
                assert!(Instant::now() < deadline, "{name} never left the WAL");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        store.close().await;
    }
}
