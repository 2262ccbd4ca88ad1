//! `redeploy seed` as the 100,000-PC benchmark uses it (docs/benchmarks.md "100,000 PCs"), at a
//! small size and on both backends: the seeded PCs are listed, found by name and by serial,
//! counted ready, and a reset of the group holding them all queues every one of them in one
//! batch, answered with the counts rather than a line per PC. Correctness only: the figures are
//! the benchmark's.

use crate::backup::{redeploy, Serve};

use api::{BulkRequest, DeviceListQuery};
use testkit::app::{drop_postgres_database, fresh_postgres_database, Backend};

testkit::on_both_backends!(a_seeded_fleet_is_found_counted_and_reset_as_one_group);

const PCS: usize = 2_000;

/// `redeploy serve ARGS` on a free port, and its address once it printed it.
async fn serve(args: Vec<String>) -> (Serve, String) {
    let listen = ["--listen".to_string(), "127.0.0.1:0".to_string()];
    crate::backup::serve(listen.into_iter().chain(args).collect()).await
}

async fn a_seeded_fleet_is_found_counted_and_reset_as_one_group(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let postgres = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => Some(fresh_postgres_database().await),
    };
    let mut where_args = vec!["--data-dir".to_owned(), dir.path().display().to_string()];
    if let Some((_, url)) = &postgres {
        where_args.extend(["--database".to_owned(), url.clone()]);
    }
    let mut seed = vec![
        "seed".to_owned(),
        "--devices".to_owned(),
        PCS.to_string(),
        "--group".to_owned(),
        "lab".to_owned(),
    ];
    seed.extend(where_args.clone());
    let out = redeploy(seed).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains(&format!("seeded {PCS} PCs and group \"lab\"")),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (server, addr) = serve(where_args).await;
    let ca = std::fs::read_to_string(dir.path().join("ca.pem")).unwrap();
    let token = std::fs::read_to_string(dir.path().join("admin-token")).unwrap();
    let client = api::Client::new(&format!("https://{addr}"), token.trim(), Some(&ca)).unwrap();

    // Found by name and by serial, and counted ready: they read back as enrolled PCs.
    let by_name = client
        .list_devices(&DeviceListQuery {
            q: Some("pc-001234".into()),
            ..DeviceListQuery::default()
        })
        .await
        .unwrap();
    let names: Vec<&str> = by_name.items.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["pc-001234"]);
    let by_serial = client
        .list_devices(&DeviceListQuery {
            q: Some("PC00000042".into()),
            ..DeviceListQuery::default()
        })
        .await
        .unwrap();
    let names: Vec<&str> = by_serial.items.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["pc-000042"]);
    let fleet = client.readiness().await.unwrap();
    assert_eq!((fleet.total, fleet.ready), (PCS as u64, PCS as u64));

    // The whole group in one batch: every PC queued, the answer only counts.
    let batch = client
        .bulk_action(&BulkRequest {
            group: Some("lab".into()),
            confirm: Some("lab".into()),
            ..BulkRequest::new(api::ActionKind::AutopilotReset)
        })
        .await
        .unwrap();
    assert_eq!(batch.devices, PCS as u64);
    assert_eq!(batch.counts.queued, PCS as u64);
    assert_eq!(
        (
            batch.counts.blocked,
            batch.counts.not_found,
            batch.counts.deferred
        ),
        (0, 0, 0)
    );
    assert!(!batch.items_complete && batch.items.is_empty());
    let status = client.batch(&batch.batch_id).await.unwrap();
    assert_eq!(status.actions.len(), PCS);
    assert_eq!(status.counts.get("pending"), Some(&(PCS as u64)));
    // Now every PC has a reset running, which the fleet's readiness counts.
    let fleet = client.readiness().await.unwrap();
    assert_eq!(fleet.ready, 0);
    assert_eq!(
        fleet.blocked_by_reason.get("action_already_running"),
        Some(&(PCS as u64))
    );
    // A PC of the group has its reset's first commands queued, as a single request would.
    let found = client
        .list_devices(&DeviceListQuery {
            q: Some("pc-001999".into()),
            ..DeviceListQuery::default()
        })
        .await
        .unwrap();
    let detail = client.device(&found.items[0].id).await.unwrap();
    assert_eq!(detail.actions.len(), 1);
    assert_eq!(detail.actions[0].state, "pending");

    drop(server);
    if let Some((name, _)) = postgres {
        drop_postgres_database(&name).await;
    }
}
