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

    /// The migration that gives PostgreSQL its own types (`20261206000001_native_types.sql`).
    const NATIVE_TYPES_VERSION: i64 = 20261206000001;

    /// A database written before native types (ids as text, instants as BIGINT microseconds,
    /// JSON as text) is converted in place: every row reads back through the store as it was
    /// written, every instant to the microsecond, and the columns have their native types.
    #[tokio::test]
    async fn native_types_keep_every_row_to_the_microsecond() {
        use redeploy_core::action::{ActionKind, ActionState, ResetBaseline};
        use redeploy_core::command::CommandState;
        use redeploy_core::group::{DeviceFilter, GroupKind};
        use redeploy_core::ids::{
            ActionId, BatchId, CommandId, DeliveryId, DeviceId, EnrollmentId, GroupId, ScheduleId,
            TokenId, WebhookId,
        };
        use redeploy_core::store::{
            from_micros, AuditQuery, DeviceQuery, DeviceSort, NewAction, RequestPlan, WriteOutcome,
        };
        use redeploy_core::{Action, Principal, SecretHash, SessionHolder, Store};
        use sqlx::Row;

        let base = std::env::var("REDEPLOY_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned());
        let base = base.trim_end_matches('/').to_owned();
        let name = format!("redeploy_test_{}", uuid::Uuid::new_v4().simple());
        maintenance(&base, format!("CREATE DATABASE {name}")).await;
        let url = format!("{base}/{name}");
        let pool = PgPool::connect(&url).await.unwrap();
        let old = migrations_before(NATIVE_TYPES_VERSION);
        Migrator::new(old.as_path())
            .await
            .unwrap()
            .run(&pool)
            .await
            .unwrap();
        std::fs::remove_dir_all(&old).unwrap();

        // Microseconds that a float conversion would round (2025-12-05 21:34:56.123457 UTC).
        let t: i64 = 1_764_970_496_123_457;
        let at = |plus: i64| from_micros(t + plus).unwrap();
        let (device, enrollment, action, command) = (
            DeviceId::generate(),
            EnrollmentId::generate(),
            ActionId::generate(),
            CommandId::generate(),
        );
        let (batch, filtered, fixed, schedule) = (
            BatchId::generate(),
            GroupId::generate(),
            GroupId::generate(),
            ScheduleId::generate(),
        );
        let (enroll_token, api_token, webhook, delivery) = (
            TokenId::generate(),
            TokenId::generate(),
            WebhookId::generate(),
            DeliveryId::generate(),
        );
        let baseline = ResetBaseline {
            status: Some(1),
            last_error: Some(0x8007_0032),
            sync_done: Some(true),
        };
        let filter = r#"{"join_type":"entra_joined","os_build_min":22000}"#;
        let (hash_e, hash_a, hash_c) = ("e".repeat(64), "a".repeat(64), "c".repeat(64));
        let statements = [
            format!(
                "INSERT INTO devices (id, name, hw_dev_id, serial, join_type, shared, last_seen, \
                 cert_not_after, winre_enabled, winre_checked_at, enrolled_at) VALUES \
                 ('{device}', 'pc-1', 'hw-1', 'SN1', 'entra_joined', FALSE, {}, {}, TRUE, {}, {t})",
                t + 1,
                t + 2,
                t + 3
            ),
            format!(
                "INSERT INTO enrollments (id, device_id, enrollment_type, auth_method, context, \
                 raw_request, cert_thumbprint, cert_serial, cert_not_after, created_at) VALUES \
                 ('{enrollment}', '{device}', 'device', 'token', \
                 '[[\"UPN\",\"a@example.com\"],[\"DeviceType\",\"CIMClient_Windows\"]]', \
                 '\\x0102ff', 'aa', '01', {}, {t})",
                t + 2
            ),
            format!(
                "INSERT INTO enrollment_tokens (id, label, secret_hash, expires_at, max_uses, uses, \
                 created_at) VALUES ('{enroll_token}', 'lab', '{hash_e}', {}, 5, 1, {t})",
                t + 10
            ),
            format!(
                "INSERT INTO api_tokens (id, name, secret_hash, role, created_at) VALUES \
                 ('{api_token}', 'admin', '{hash_a}', 'admin', {t})"
            ),
            format!(
                "INSERT INTO console_sessions (id_hash, token_id, csrf_secret, created_at, \
                 expires_at) VALUES ('{hash_c}', '{api_token}', 'csrf', {}, {})",
                t + 4,
                t + 86_400_000_000
            ),
            format!(
                "INSERT INTO actions (id, device_id, kind, state, batch_id, requested_by, \
                 created_at, updated_at, timeline, baseline) VALUES ('{action}', '{device}', \
                 'autopilot_reset', 'sent', '{batch}', 'admin', {}, {}, \
                 '[{{\"state\":\"requested\",\"at\":{},\"note\":null}},\
                 {{\"state\":\"sent\",\"at\":{},\"note\":\"out\"}}]', '{}')",
                t + 5,
                t + 6,
                t + 5,
                t + 6,
                baseline.to_text()
            ),
            format!(
                "INSERT INTO commands (id, device_id, action_id, verb, uri, state, session_id, \
                 msg_id, cmd_id, created_at, sent_at, attempts) VALUES ('{command}', '{device}', \
                 '{action}', 'Exec', './x', 'sent', '1', '2', '3', {}, {}, 1)",
                t + 5,
                t + 6
            ),
            format!(
                "INSERT INTO inventory (device_id, uri, value, at) VALUES \
                 ('{device}', './DevDetail/SwV', '10.0.22631', {})",
                t + 7
            ),
            format!(
                "INSERT INTO audit_events (at, actor, action, targets, batch_id, outcome, details) \
                 VALUES ({}, 'admin', 'reset', '{device}', '{batch}', 'success', 'd')",
                t + 8
            ),
            format!(
                "INSERT INTO audit_targets (audit_seq, device_id) \
                 SELECT max(seq), '{device}' FROM audit_events"
            ),
            format!(
                "INSERT INTO device_groups (id, name, filter, created_at) VALUES \
                 ('{filtered}', 'filtered', '{filter}', {t}), ('{fixed}', 'fixed', NULL, {t})"
            ),
            format!("INSERT INTO group_members (group_id, device_id) VALUES ('{fixed}', '{device}')"),
            format!(
                "INSERT INTO schedules (id, name, group_id, kind, tz, recurrence, window_start, \
                 window_end, enabled, next_run) VALUES ('{schedule}', 'nightly', '{fixed}', \
                 'autopilot_reset', 'Europe/Berlin', 'daily:02:00:00', 7200, 18000, TRUE, {})",
                t + 9
            ),
            format!(
                "INSERT INTO batch_waves (batch_id, wave_index, kind, actor, devices, due_at, \
                 daily_cap) VALUES ('{batch}', 1, 'autopilot_reset', 'admin', '{device}', {}, 10)",
                t + 11
            ),
            format!(
                "INSERT INTO batch_windows (batch_id, window_start, window_end, tz) VALUES \
                 ('{batch}', 7200, 18000, 'Europe/Berlin')"
            ),
            format!(
                "INSERT INTO webhooks (id, name, url, secret, events, enabled, created_at, \
                 notify_since) VALUES ('{webhook}', 'hook', 'https://hooks.example', 's', \
                 'done,failed', TRUE, {t}, {})",
                t + 12
            ),
            format!(
                "INSERT INTO webhook_deliveries (id, webhook_id, event, action_id, payload, \
                 attempts, next_attempt_at, created_at) VALUES ('{delivery}', '{webhook}', \
                 'done', '{action}', '{{\"b\": 1, \"a\": 2}}', 0, {}, {})",
                t + 13,
                t + 13
            ),
        ];
        for statement in &statements {
            sqlx::query(statement).execute(&pool).await.unwrap();
        }
        pool.close().await;

        let store = PostgresStore::connect(&url).await.unwrap();
        let types = sqlx::query(
            "SELECT table_name, column_name, data_type FROM information_schema.columns \
             WHERE (table_name, column_name) IN (('devices', 'id'), ('devices', 'enrolled_at'), \
             ('actions', 'timeline'), ('commands', 'action_id'), ('webhooks', 'notify_since')) \
             ORDER BY table_name, column_name",
        )
        .fetch_all(store.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<String, _>("data_type"))
        .collect::<Vec<_>>();
        assert_eq!(
            types,
            [
                "jsonb",
                "uuid",
                "timestamp with time zone",
                "uuid",
                "timestamp with time zone"
            ]
        );

        let store: Arc<dyn Store> = Arc::new(store.clone());
        let d = store.device(device).await.unwrap().unwrap();
        assert_eq!(
            (d.name.as_str(), d.serial.as_deref(), d.winre_enabled),
            ("pc-1", Some("SN1"), Some(true))
        );
        assert_eq!(
            (
                d.enrolled_at,
                d.last_seen,
                d.cert_not_after,
                d.winre_checked_at
            ),
            (at(0), Some(at(1)), Some(at(2)), Some(at(3)))
        );
        assert_eq!(
            d.enrolled_at.nanosecond(),
            123_457_000,
            "exact to the microsecond"
        );
        let e = store.enrollments_of_device(device).await.unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].id, enrollment);
        assert_eq!(e[0].context_value("UPN"), Some("a@example.com"));
        assert_eq!(e[0].context.len(), 2);
        assert_eq!(e[0].raw_request, vec![1, 2, 0xff]);
        assert_eq!((e[0].cert_not_after, e[0].created_at), (at(2), at(0)));

        let tokens = store.list_enrollment_tokens().await.unwrap();
        assert_eq!(tokens.len(), 1);
        assert_eq!(
            (tokens[0].id, tokens[0].expires_at, tokens[0].uses),
            (enroll_token, Some(at(10)), 1)
        );
        let (session, token) = store
            .console_session(&SecretHash::from_stored(&hash_c).unwrap(), at(100))
            .await
            .unwrap()
            .expect("the console session survives");
        assert_eq!(
            (session.holder, session.created_at),
            (SessionHolder::Token(api_token), at(4))
        );
        let Principal::Token(token) = token else {
            panic!("the session is held by its token: {token:?}")
        };
        assert_eq!((token.id, token.created_at), (api_token, at(0)));

        let a = store.action(action).await.unwrap().unwrap();
        assert_eq!(
            (a.kind, a.state, a.batch, a.baseline),
            (
                ActionKind::AutopilotReset,
                ActionState::Sent,
                Some(batch),
                Some(baseline)
            )
        );
        assert_eq!((a.created_at, a.updated_at), (at(5), at(6)));
        let timeline: Vec<_> = a
            .timeline
            .iter()
            .map(|e| (e.state, e.at, e.note.clone()))
            .collect();
        assert_eq!(
            timeline,
            [
                (ActionState::Requested, at(5), None),
                (ActionState::Sent, at(6), Some("out".to_owned()))
            ]
        );
        let c = store.commands_of_action(action).await.unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(
            (c[0].id, c[0].state, c[0].sent_at, c[0].attempts),
            (command, CommandState::Sent, Some(at(6)), 1)
        );
        assert_eq!(c[0].sent_in.as_ref().unwrap().cmd_id, "3");
        let inv = store.inventory(device).await.unwrap();
        assert_eq!(
            (inv.len(), inv[0].value.as_str(), inv[0].at),
            (1, "10.0.22631", at(7))
        );
        let audit = store
            .list_audit(&AuditQuery {
                device: Some(device),
                ..AuditQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(audit.len(), 1);
        assert_eq!(
            (audit[0].at, audit[0].batch, audit[0].targets.clone()),
            (at(8), Some(batch), vec![device])
        );

        let g = store.group_by_name("filtered").await.unwrap().unwrap();
        assert_eq!(
            g.kind,
            GroupKind::Filter {
                filter: DeviceFilter::from_text(filter).unwrap()
            }
        );
        assert_eq!(
            store.group_member_ids(fixed, at(100)).await.unwrap(),
            vec![device]
        );
        let s = store.schedule(schedule).await.unwrap().unwrap();
        assert_eq!(
            (s.group, s.next_run, s.last_run),
            (fixed, Some(at(9)), None)
        );
        let waves = store.waves_of_batch(batch).await.unwrap();
        assert_eq!(
            (waves.len(), waves[0].due_at, waves[0].daily_cap),
            (1, at(11), Some(10))
        );
        assert!(store.batch_window(batch).await.unwrap().is_some());
        assert_eq!(
            store.pending_action_windows(device).await.unwrap().len(),
            0,
            "the action is sent, not pending"
        );
        let w = store.webhook(webhook).await.unwrap().unwrap();
        assert_eq!((w.created_at, w.notify_since), (at(0), at(12)));
        let del = store.delivery(delivery).await.unwrap().unwrap();
        assert_eq!(
            (del.action, del.next_attempt_at, del.payload.as_str()),
            (Some(action), Some(at(13)), r#"{"b": 1, "a": 2}"#),
            "the payload keeps its exact text (it is signed as sent)"
        );

        // Sorting by an instant and writing through the converted keys both work.
        let page = store
            .list_devices(&DeviceQuery {
                sort: DeviceSort::LastSeen,
                ..DeviceQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(page.items.len(), 1);
        let mut wipe = Action::new(
            ActionId::generate(),
            device,
            ActionKind::Wipe,
            "admin",
            None,
            at(20),
        );
        wipe.transition(ActionState::Blocked, at(20), None).unwrap();
        let mut plan = RequestPlan::new(at(20));
        plan.create.push(NewAction {
            action: wipe.clone(),
            commands: Vec::new(),
        });
        assert_eq!(
            store.write_request_plan(&plan).await.unwrap(),
            WriteOutcome::Written
        );
        assert_eq!(store.actions_of_device(device).await.unwrap().len(), 2);

        drop(store);
        maintenance(
            &base,
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        )
        .await;
    }
}

mod statistics {
    use std::sync::Arc;

    use sqlx::{Connection, PgConnection};
    use store_postgres::PostgresStore;

    /// How many times `actions` was analysed and vacuumed other than by autovacuum.
    async fn maintained(url: &str) -> (i64, i64) {
        let mut conn = PgConnection::connect(url).await.unwrap();
        let n: (i64, i64) = sqlx::query_as(
            "SELECT analyze_count, vacuum_count FROM pg_stat_user_tables \
             WHERE relname = 'actions'",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        conn.close().await.unwrap();
        n
    }

    /// A group's actions queued by the database are followed by `ANALYZE actions` and `VACUUM
    /// actions`, not left to autovacuum: until the first runs, every read plans the table as
    /// if the new rows were not there (the dashboard after a 100,000-PC reset chose a parallel
    /// sort, issue #16); until the second, the census reads the active resets from the heap,
    /// not from the index `actions_one_active_erasing` alone (the visibility map is not set).
    #[tokio::test]
    async fn a_bulk_queue_gathers_the_actions_statistics() {
        let (name, url) = testkit::app::fresh_postgres_database().await;
        let store = PostgresStore::connect(&url).await.unwrap();
        let before = maintained(&url).await;
        testkit::store_suite::a_group_reset_queued_by_the_database_matches_device_by_device(
            Arc::new(store.clone()),
        )
        .await;
        // The statements run in a task of their own once the plan committed: wait for them.
        let done = |after: (i64, i64)| after.0 > before.0 && after.1 > before.1;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut after = maintained(&url).await;
        while !done(after) && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            after = maintained(&url).await;
        }
        store.close().await;
        testkit::app::drop_postgres_database(&name).await;
        assert!(
            done(after),
            "(analysed, vacuumed) {before:?} times before, {after:?} after"
        );
    }
}
