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

mod processes {
    use std::collections::HashSet;
    use std::sync::Arc;

    use redeploy_core::command::{DeviceCommand, Verb};
    use redeploy_core::device::Device;
    use redeploy_core::enrollment::Enrollment;
    use redeploy_core::ids::{CommandId, DeviceId, EnrollmentId};
    use redeploy_core::store::{
        CommandQueue, EnrollmentStore, SendBatch, SessionStep, StoreResult,
    };
    use redeploy_core::EnrollmentType;
    use sqlx::{Connection, PgConnection};
    use store_postgres::PostgresStore;
    use time::macros::datetime;

    async fn maintenance(base: &str, statement: String) {
        let mut conn = PgConnection::connect(&format!("{base}/postgres"))
            .await
            .unwrap();
        sqlx::query(&statement).execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
    }

    /// Two server processes (two independent pools, each having run the migrations) share one
    /// database and serve the same device at once: every queued command goes out exactly once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_processes_never_send_the_same_command() {
        let base = std::env::var("REDEPLOY_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned());
        let base = base.trim_end_matches('/').to_owned();
        let name = format!("redeploy_test_{}", uuid::Uuid::new_v4().simple());
        maintenance(&base, format!("CREATE DATABASE {name}")).await;
        let url = format!("{base}/{name}");
        let (a, b) = tokio::join!(PostgresStore::connect(&url), PostgresStore::connect(&url));
        let (a, b) = (Arc::new(a.unwrap()), Arc::new(b.unwrap()));

        let at = datetime!(2026-03-01 12:00 UTC);
        let device = Device::new(DeviceId::generate(), "shared", at);
        let enrollment = Enrollment {
            id: EnrollmentId::generate(),
            device: device.id,
            enrollment_type: EnrollmentType::Device,
            upn: None,
            auth_method: "token".into(),
            context: vec![],
            raw_request: vec![],
            cert_thumbprint: "aa".into(),
            cert_serial: "01".into(),
            cert_not_after: at,
            created_at: at,
            replaced_by: None,
        };
        let d = a
            .create_enrollment(device, enrollment)
            .await
            .unwrap()
            .device;
        let cmds: Vec<_> = (0..60)
            .map(|i| {
                DeviceCommand::new(
                    CommandId::generate(),
                    d,
                    None,
                    Verb::Get,
                    format!("./n/{i}"),
                    at,
                )
            })
            .collect();
        b.enqueue(&cmds).await.unwrap();

        async fn drain(
            store: Arc<PostgresStore>,
            session: &'static str,
            d: DeviceId,
        ) -> StoreResult<Vec<CommandId>> {
            let mut got = Vec::new();
            for m in 1.. {
                let mut step = SessionStep::new(d, session, datetime!(2026-03-01 12:01 UTC));
                step.send = Some(SendBatch {
                    msg_id: m.to_string(),
                    first_cmd_id: 2,
                    limit: 4,
                });
                let sent = store.session_step(step).await?.sent;
                if sent.is_empty() {
                    return Ok(got);
                }
                got.extend(sent.iter().map(|c| c.id));
            }
            Ok(got)
        }
        let (ra, rb) = tokio::join!(
            tokio::spawn(drain(Arc::clone(&a), "A", d)),
            tokio::spawn(drain(Arc::clone(&b), "B", d))
        );
        let mut all = ra.unwrap().unwrap();
        all.extend(rb.unwrap().unwrap());
        assert_eq!(all.len(), 60);
        assert_eq!(
            all.iter().collect::<HashSet<_>>().len(),
            60,
            "no command sent twice"
        );

        a.close().await;
        b.close().await;
        maintenance(
            &base,
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        )
        .await;
    }
}

mod upgrade {
    use std::sync::Arc;

    use sqlx::migrate::Migrator;
    use sqlx::{Connection, PgConnection, PgPool};
    use store_postgres::PostgresStore;
    use testkit::upgrade::{
        duplicate_resets, duplicate_resets_resolved, ONE_ACTIVE_ERASING_VERSION,
    };

    async fn maintenance(base: &str, statement: String) {
        let mut conn = PgConnection::connect(&format!("{base}/postgres"))
            .await
            .unwrap();
        sqlx::query(&statement).execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
    }

    /// A directory holding this crate's migrations older than `version`: the schema a database
    /// written by an earlier release has.
    fn migrations_before(version: i64) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "redeploy-pg-migrations-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let src = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations");
        for entry in std::fs::read_dir(src).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            let v: i64 = name.split('_').next().unwrap().parse().unwrap();
            if v < version {
                std::fs::copy(&path, dir.join(&name)).unwrap();
            }
        }
        dir
    }

    /// A database that already holds two active resets on one device (a race before the index)
    /// upgrades: the extra one is expired, and the index holds afterwards.
    #[tokio::test]
    async fn duplicate_active_resets_do_not_break_the_upgrade() {
        let base = std::env::var("REDEPLOY_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned());
        let base = base.trim_end_matches('/').to_owned();
        let name = format!("redeploy_test_{}", uuid::Uuid::new_v4().simple());
        maintenance(&base, format!("CREATE DATABASE {name}")).await;
        let url = format!("{base}/{name}");
        let pool = PgPool::connect(&url).await.unwrap();
        let old = migrations_before(ONE_ACTIVE_ERASING_VERSION);
        Migrator::new(old.as_path())
            .await
            .unwrap()
            .run(&pool)
            .await
            .unwrap();
        std::fs::remove_dir_all(&old).unwrap();
        let seed = duplicate_resets();
        for statement in &seed.statements {
            sqlx::query(statement).execute(&pool).await.unwrap();
        }
        pool.close().await;
        let store = PostgresStore::connect(&url).await.unwrap();
        duplicate_resets_resolved(Arc::new(store.clone()), &seed).await;
        store.close().await;
        maintenance(
            &base,
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        )
        .await;
    }
}
