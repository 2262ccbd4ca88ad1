//! Admin commands run as a user runs them: the real binary against a real server over HTTPS,
//! with the CA and token handed over in files; exit codes follow DESIGN.md "Contract".

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use device::client::{self, EnrollOptions};
use device::state::JoinType as PcJoin;
use device::{DeviceProfile, HttpsTransport};
use testkit::app::{spawn_app, Backend, TestApp};
use time::OffsetDateTime;

/// A server plus the files a user would point the CLI at.
struct Setup {
    app: TestApp,
    dir: tempfile::TempDir,
    ca: PathBuf,
    token: PathBuf,
}

async fn setup() -> Setup {
    let app = spawn_app(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    let token = dir.path().join("admin-token");
    std::fs::write(&ca, &app.ca_pem).unwrap();
    std::fs::write(&token, format!("{}\n", app.admin_token)).unwrap();
    Setup {
        app,
        dir,
        ca,
        token,
    }
}

/// A `redeploy` command with no REDEPLOY_* settings inherited, run from `cwd`.
fn bare(cwd: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_redeploy"));
    cmd.current_dir(cwd);
    for var in [
        "REDEPLOY_SERVER",
        "REDEPLOY_TOKEN",
        "REDEPLOY_TOKEN_FILE",
        "REDEPLOY_CA_FILE",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// Runs the binary off the async runtime (the server under test shares it).
async fn run(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || cmd.output().expect("redeploy runs"))
        .await
        .unwrap()
}

impl Setup {
    /// `redeploy ARGS --server … --ca-file … --token-file …`.
    async fn cli(&self, args: &[&str]) -> Output {
        let mut cmd = bare(self.dir.path());
        cmd.args(args)
            .arg("--server")
            .arg(&self.app.base_url)
            .arg("--ca-file")
            .arg(&self.ca)
            .arg("--token-file")
            .arg(&self.token);
        run(cmd).await
    }

    /// Enrolls an emulated PC and runs its first check-in (inventory).
    async fn enroll_pc(&self, id: &str, profile: DeviceProfile) {
        let now = OffsetDateTime::now_utc();
        let mut state = profile.build_seeded(id, 7, now);
        let transport = HttpsTransport::new(&self.app.ca_pem).unwrap();
        let options = EnrollOptions {
            server: self.app.base_url.clone(),
            token: self.app.enrollment_token.clone(),
        };
        client::enroll(&transport, &mut state, &options, now)
            .await
            .expect("enrollment");
        client::check_in(&transport, &mut state, now)
            .await
            .expect("first check-in");
    }
}

fn stdout_json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "exit {:?}, stderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_list_shows_an_enrolled_pc_and_reset_queues_it() {
    let s = setup().await;
    s.enroll_pc("pc-admin-1", DeviceProfile::default()).await;

    let list = stdout_json(&s.cli(&["devices", "list", "--json"]).await);
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{list}");
    let id = items[0]["id"].as_str().unwrap().to_string();
    assert_eq!(items[0]["join_type"], "entra_joined", "{list}");

    // The readable table names the PC too.
    let table = s.cli(&["devices", "list"]).await;
    assert!(table.status.success());
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains(&id) && text.contains("entra_joined"),
        "{text}"
    );

    let shown = stdout_json(&s.cli(&["devices", "show", &id, "--json"]).await);
    assert_eq!(shown["device"]["id"], id.as_str());

    let reset = stdout_json(&s.cli(&["reset", &id, "--json"]).await);
    let actions = reset.as_array().unwrap();
    assert_eq!(actions.len(), 1, "{reset}");
    assert_eq!(actions[0]["state"], "pending", "{reset}");
    assert_eq!(actions[0]["kind"], "autopilot_reset", "{reset}");
    let action_id = actions[0]["id"].as_str().unwrap().to_string();

    // The action is visible, and can be canceled before delivery.
    let listed = stdout_json(&s.cli(&["actions", "list", "--device", &id, "--json"]).await);
    assert_eq!(listed["items"][0]["id"], action_id.as_str(), "{listed}");
    let canceled = stdout_json(&s.cli(&["actions", "cancel", &action_id, "--json"]).await);
    assert_eq!(canceled["state"], "canceled", "{canceled}");

    let ready = stdout_json(&s.cli(&["readiness", "--json"]).await);
    assert_eq!(ready["total"], 1, "{ready}");
    assert_eq!(ready["ready"], 1, "{ready}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_requests_exit_1_with_the_problem_detail() {
    let s = setup().await;
    let unknown = "00000000-0000-4000-8000-000000000000";
    let out = s.cli(&["reset", unknown, "--json"]).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("no device {unknown}")), "{stderr}");

    let out = s.cli(&["devices", "show", unknown]).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("404"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_usage_exits_2() {
    let s = setup().await;
    let out = s.cli(&["devices", "list", "--no-such-flag"]).await;
    assert_eq!(out.status.code(), Some(2));
    let out = s.cli(&["reset", "x", "--kind", "explode"]).await;
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_exits_1_with_a_clear_message() {
    let s = setup().await;
    let mut cmd = bare(s.dir.path());
    cmd.args(["readiness", "--server", &s.app.base_url, "--ca-file"])
        .arg(&s.ca);
    let out = run(cmd).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no API token"), "{stderr}");
    assert!(stderr.contains("--token-file"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defaults_come_from_redeploy_data_in_the_working_folder() {
    let s = setup().await;
    let data = s.dir.path().join("redeploy-data");
    std::fs::create_dir(&data).unwrap();
    std::fs::copy(&s.ca, data.join("ca.pem")).unwrap();
    std::fs::copy(&s.token, data.join("admin-token")).unwrap();
    let mut cmd = bare(s.dir.path());
    cmd.args(["readiness", "--json"])
        .env("REDEPLOY_SERVER", &s.app.base_url);
    let ready = stdout_json(&run(cmd).await);
    assert_eq!(ready["total"], 0, "{ready}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_wait_on_a_blocked_pc_prints_the_reason_and_exits_1() {
    let s = setup().await;
    let profile = DeviceProfile {
        join: PcJoin::Hybrid,
        ..DeviceProfile::default()
    };
    s.enroll_pc("pc-admin-hybrid", profile).await;
    let list = stdout_json(&s.cli(&["devices", "list", "--json"]).await);
    let id = list["items"][0]["id"].as_str().unwrap().to_string();

    // Blocked is settled: --wait returns at once, and a reset that will not happen is a failure.
    let out = s.cli(&["reset", &id, "--wait", "--timeout", "30"]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("blocked"), "{stdout}");
    assert!(stdout.to_lowercase().contains("hybrid"), "{stdout}");

    let table = s.cli(&["devices", "list", "--ready", "false"]).await;
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("not ready: hybrid_joined"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_created_listed_and_revoked() {
    let s = setup().await;
    let created = stdout_json(
        &s.cli(&[
            "tokens",
            "create",
            "--name",
            "helpdesk-1",
            "--role",
            "helpdesk",
            "--json",
        ])
        .await,
    );
    let id = created["token"]["id"].as_str().unwrap().to_string();
    assert!(!created["secret"].as_str().unwrap().is_empty());
    let list = stdout_json(&s.cli(&["tokens", "list", "--json"]).await);
    assert!(
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["id"] == id.as_str()),
        "{list}"
    );
    let out = s.cli(&["tokens", "revoke", &id]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The audit log records it, also as CSV.
    let csv = s.cli(&["audit", "--csv"]).await;
    let text = String::from_utf8_lossy(&csv.stdout);
    assert!(csv.status.success() && text.contains("token"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_created_tested_listed_and_deleted() {
    let s = setup().await;
    // Port 1 on loopback: nothing listens, so the ping fails at once.
    let created = stdout_json(
        &s.cli(&[
            "webhooks",
            "create",
            "--url",
            "http://127.0.0.1:1/hook",
            "--name",
            "ops",
            "--events",
            "done,stuck",
            "--json",
        ])
        .await,
    );
    let id = created["webhook"]["id"].as_str().unwrap().to_string();
    assert_eq!(
        created["webhook"]["events"],
        serde_json::json!(["done", "stuck"])
    );
    assert!(created["secret"]
        .as_str()
        .unwrap()
        .starts_with("rdp_whsec_"));
    let list = stdout_json(&s.cli(&["webhooks", "list", "--json"]).await);
    assert_eq!(list["items"][0]["id"], id.as_str(), "{list}");
    assert!(list["items"][0].get("secret").is_none(), "{list}");

    let ping = s.cli(&["webhooks", "test", &id, "--json"]).await;
    assert_eq!(ping.status.code(), Some(1), "an undelivered ping exits 1");
    let ping: serde_json::Value = serde_json::from_slice(&ping.stdout).unwrap();
    assert_eq!(ping["status"], "given_up", "{ping}");
    let deliveries = stdout_json(&s.cli(&["webhooks", "deliveries", &id, "--json"]).await);
    assert_eq!(deliveries["items"][0]["event"], "ping", "{deliveries}");

    let bad = s
        .cli(&[
            "webhooks", "create", "--url", "http://x", "--events", "finished",
        ])
        .await;
    assert_eq!(bad.status.code(), Some(1), "a refused request exits 1");
    let usage = s.cli(&["webhooks", "create"]).await;
    assert_eq!(usage.status.code(), Some(2), "a missing --url is bad usage");

    assert!(s.cli(&["webhooks", "delete", &id]).await.status.success());
    assert_eq!(
        s.cli(&["webhooks", "delete", &id]).await.status.code(),
        Some(1)
    );
    let list = stdout_json(&s.cli(&["webhooks", "list", "--json"]).await);
    assert_eq!(list["items"], serde_json::json!([]));
}
