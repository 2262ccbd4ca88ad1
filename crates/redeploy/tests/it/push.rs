//! Push (WNS, issue #16 item 5) through the binaries an admin runs: `redeploy serve` with the
//! `[push]` settings in its environment (as the README shows), `redeploy emulate --wns-listen`
//! holding the stand-in WNS and the PCs. An Autopilot Reset asked through the API reaches each PC
//! because the server pushed: the emulator runs on the real clock, and its PCs' next poll is
//! minutes away.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use api::ActionKind;
use testkit::app::{drop_postgres_database, fresh_postgres_database, Backend};

use crate::backup::{bare, serve_with};

testkit::on_both_backends!(emulated_pcs_on_the_stand_in_wns_are_woken_by_the_servers_push);

/// Kills the emulator even when an assertion fails.
struct Emulator(Child);

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An address nothing listens on now.
fn free_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

async fn emulated_pcs_on_the_stand_in_wns_are_woken_by_the_servers_push(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let wns = free_address();
    let database = match backend {
        Backend::Postgres => Some(fresh_postgres_database().await),
        Backend::Sqlite => None,
    };
    let mut args = vec![
        "--listen".to_owned(),
        "127.0.0.1:0".to_owned(),
        "--data-dir".to_owned(),
        data.display().to_string(),
    ];
    if let Some((_, url)) = &database {
        args.extend(["--database".to_owned(), url.clone()]);
    }
    let push = [
        (
            "REDEPLOY_PUSH_PACKAGE_SID",
            "ms-app://s-1-15-2-1234-5678".to_owned(),
        ),
        ("REDEPLOY_PUSH_CLIENT_SECRET", "stand-in-secret".to_owned()),
        (
            "REDEPLOY_PUSH_PFN",
            "Redeploy.Test_8wekyb3d8bbwe".to_owned(),
        ),
        (
            "REDEPLOY_PUSH_TOKEN_URL",
            format!("http://{wns}/accesstoken.srf"),
        ),
        ("REDEPLOY_PUSH_CHANNEL_HOSTS", format!("http://{wns}")),
    ];
    let (server, addr) = serve_with(args, &push).await;
    let base = format!("https://{addr}");
    let read = |name: &str| std::fs::read_to_string(data.join(name)).unwrap();
    let admin = api::Client::new(&base, read("admin-token").trim(), Some(&read("ca.pem"))).unwrap();
    // A token vouching for the PCs' Entra join, so they may take an Autopilot Reset.
    let enrollment = admin
        .create_enrollment_token(&api::NewEnrollmentToken {
            label: "lab".into(),
            expires_at: None,
            max_uses: None,
            vouches_entra_join: true,
        })
        .await
        .unwrap();
    let emulator = Emulator(
        bare()
            .args([
                "emulate",
                "--devices",
                "3",
                "--duration",
                "300",
                "--wns-listen",
                &wns,
            ])
            .args(["--server", &base])
            .arg("--ca-file")
            .arg(data.join("ca.pem"))
            .arg("--state")
            .arg(dir.path().join("pcs"))
            .env("REDEPLOY_TOKEN", &enrollment.secret)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redeploy emulate runs"),
    );

    // Each PC enrolled, and its first session stored the channel it registered on the stand-in.
    let deadline = Instant::now() + Duration::from_secs(60);
    let devices = loop {
        let items = admin.list_devices(&Default::default()).await.unwrap().items;
        let mut active = 0;
        for d in &items {
            let detail = admin.device(&d.id).await.unwrap().device;
            active += usize::from(detail.push.is_some_and(|p| p.state == "active"));
        }
        if items.len() == 3 && active == 3 {
            break items;
        }
        assert!(
            Instant::now() < deadline,
            "3 PCs with an active channel: {items:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    let mut took = Vec::new();
    for d in &devices {
        let asked = Instant::now();
        let action = admin
            .request_action(&d.id, ActionKind::AutopilotReset)
            .await
            .unwrap();
        let action = loop {
            let a = admin.action(&action.id).await.unwrap();
            if a.state != "pending" || asked.elapsed() > Duration::from_secs(30) {
                break a;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        took.push(asked.elapsed());
        assert_ne!(
            action.state, "pending",
            "the push brought no session: {action:?}"
        );
        assert_eq!(action.woken_by.as_deref(), Some("push"), "{action:?}");
    }
    eprintln!("{backend:?}: request to Exec through the binaries: {took:?}");
    drop(emulator);
    drop(server);
    if let Some((name, _)) = database {
        drop_postgres_database(&name).await;
    }
}
