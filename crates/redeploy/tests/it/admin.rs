//! Admin commands run as a user runs them: the real binary against a real server over HTTPS,
//! with the CA and token handed over in files; exit codes follow docs/design.md §7.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use device::client::{self, EnrollOptions};
use device::state::{DeviceState, JoinType as PcJoin};
use device::{DeviceProfile, HttpsTransport};
use serde_json::json;
use testkit::app::{spawn_app, Backend, TestApp};
use time::OffsetDateTime;

/// A server plus the files a user would point the CLI at.
pub(crate) struct Setup {
    pub(crate) app: TestApp,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) ca: PathBuf,
    pub(crate) token: PathBuf,
}

async fn setup() -> Setup {
    setup_on(Backend::Sqlite).await
}

/// A server on `backend` and the CA and token files next to a working folder.
pub(crate) async fn setup_on(backend: Backend) -> Setup {
    let app = spawn_app(backend).await;
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
pub(crate) fn bare(cwd: &Path) -> Command {
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
pub(crate) async fn run(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || cmd.output().expect("redeploy runs"))
        .await
        .unwrap()
}

impl Setup {
    /// `redeploy ARGS --server … --ca-file … --token-file …`.
    pub(crate) async fn cli(&self, args: &[&str]) -> Output {
        run(self.command(args)).await
    }

    /// The command [`Setup::cli`] runs, for a test that starts it itself.
    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut cmd = bare(self.dir.path());
        cmd.args(args)
            .arg("--server")
            .arg(&self.app.base_url)
            .arg("--ca-file")
            .arg(&self.ca)
            .arg("--token-file")
            .arg(&self.token);
        cmd
    }

    /// Enrolls an emulated PC and runs its first check-in (inventory).
    pub(crate) async fn enroll_pc(&self, id: &str, profile: DeviceProfile) {
        self.enroll_pc_seeded(id, 7, profile).await;
    }

    /// [`Setup::enroll_pc`] with a seed of its own; returns the PC.
    pub(crate) async fn enroll_pc_seeded(
        &self,
        id: &str,
        seed: u64,
        profile: DeviceProfile,
    ) -> DeviceState {
        let now = OffsetDateTime::now_utc();
        let mut state = profile.build_seeded(id, seed, now);
        let transport = HttpsTransport::new(&self.app.ca_pem).unwrap();
        let options = EnrollOptions {
            server: self.app.base_url.clone(),
            token: self.app.enrollment_token.clone(),
            issuer: None,
        };
        client::enroll(&transport, &mut state, &options, now)
            .await
            .expect("enrollment");
        client::check_in(&transport, &mut state, now)
            .await
            .expect("first check-in");
        state
    }
}

pub(crate) fn stdout_json(out: &Output) -> serde_json::Value {
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
    // The closing list of what did not get done names the PC, though it was asked for by id.
    let name = list["items"][0]["name"].as_str().unwrap().to_string();
    let (_, tail) = stdout.split_once("not done:").expect("a not-done list");
    assert!(tail.contains(&format!("device {name}")), "{stdout}");
    assert!(!tail.contains(&id), "{stdout}");

    // The audit table names the PC in its devices column.
    let audit = s.cli(&["audit"]).await;
    let audit = String::from_utf8_lossy(&audit.stdout);
    assert!(audit.starts_with("AT"), "{audit}");
    let created = audit
        .lines()
        .find(|l| l.contains("action.create"))
        .unwrap_or_else(|| panic!("no action.create row: {audit}"));
    assert!(created.contains(&name), "{audit}");

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

    // An enrollment token that vouches for the Entra join of its PCs, and one that does not.
    let out = s
        .cli(&[
            "enrollment-tokens",
            "create",
            "--label",
            "lab 7",
            "--vouch-entra-join",
        ])
        .await;
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("admin_token"),
        "{said}"
    );
    let plain = stdout_json(
        &s.cli(&["enrollment-tokens", "create", "--label", "guests", "--json"])
            .await,
    );
    assert_eq!(plain["token"]["vouches_entra_join"], false);
    let list = s.cli(&["enrollment-tokens", "list"]).await;
    let table = String::from_utf8_lossy(&list.stdout);
    let row = |label: &str| {
        table
            .lines()
            .find(|l| l.contains(label))
            .unwrap_or_else(|| panic!("{label} in {table}"))
            .to_string()
    };
    assert!(table.contains("VOUCHES ENTRA JOIN"), "{table}");
    assert!(row("lab 7").trim_end().ends_with("yes"), "{table}");
    assert!(row("guests").trim_end().ends_with("no"), "{table}");
    let audit = stdout_json(&s.cli(&["audit", "--json"]).await);
    assert!(
        audit.to_string().contains("vouches for the Entra join"),
        "{audit}"
    );
}

/// The id, name and serial of every device, from `devices list --json`.
pub(crate) async fn devices(s: &Setup) -> Vec<(String, String, String)> {
    let list = stdout_json(&s.cli(&["devices", "list", "--json"]).await);
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["id"].as_str().unwrap().to_owned(),
                d["name"].as_str().unwrap().to_owned(),
                d["serial"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_are_created_filled_by_serial_and_name_and_shown() {
    let s = setup().await;
    let a = s
        .enroll_pc_seeded("pc-grp-1", 101, DeviceProfile::default())
        .await;
    s.enroll_pc_seeded("pc-grp-2", 102, DeviceProfile::default())
        .await;
    let all = devices(&s).await;
    assert_eq!(all.len(), 2);
    let other = all
        .iter()
        .find(|d| d.2 != a.hardware.serial)
        .expect("two serials");

    let out = s.cli(&["groups", "create", "Lab 1"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("Lab 1"), "{}", text(&out.stdout));
    // One PC by serial, the other by name.
    let added = stdout_json(
        &s.cli(&[
            "groups",
            "add",
            "Lab 1",
            &a.hardware.serial,
            &other.1,
            "--json",
        ])
        .await,
    );
    assert_eq!(added["member_count"], 2, "{added}");
    let shown = stdout_json(&s.cli(&["groups", "show", "Lab 1", "--json"]).await);
    assert_eq!(shown["group"]["member_count"], 2, "{shown}");
    let mut ids: Vec<&str> = shown["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    ids.sort();
    let mut want: Vec<&str> = all.iter().map(|d| d.0.as_str()).collect();
    want.sort();
    assert_eq!(ids, want);
    let table = s.cli(&["groups", "list"]).await;
    let listed = text(&table.stdout);
    assert!(
        listed.contains("Lab 1") && listed.contains("static"),
        "{listed}"
    );

    // A filter group; a bad filter key or an unknown device is refused.
    let filtered = stdout_json(
        &s.cli(&[
            "groups",
            "create",
            "Entra",
            "--filter",
            "join_type=entra_joined",
            "--filter",
            "last_seen_within=1d",
            "--json",
        ])
        .await,
    );
    assert_eq!(filtered["kind"], "filter", "{filtered}");
    assert_eq!(filtered["member_count"], 2, "{filtered}");
    let out = s
        .cli(&["groups", "create", "Bad", "--filter", "colour=red"])
        .await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("colour"));
    let out = s.cli(&["groups", "add", "Lab 1", "no-such-pc"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no-such-pc"),
        "{}",
        text(&out.stderr)
    );

    // The primary user, by serial.
    let d = stdout_json(
        &s.cli(&[
            "devices",
            "set-primary-user",
            &a.hardware.serial,
            "ada@example.org",
            "--json",
        ])
        .await,
    );
    assert_eq!(d["primary_user"], "ada@example.org", "{d}");
    let d = stdout_json(
        &s.cli(&[
            "devices",
            "set-primary-user",
            &a.hardware.serial,
            "--clear",
            "--shared",
            "--json",
        ])
        .await,
    );
    assert_eq!(
        (d["primary_user"].is_null(), &d["shared"]),
        (true, &json!(true)),
        "{d}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_reset_is_refused_without_the_typed_name_and_runs_with_it() {
    let s = setup().await;
    s.enroll_pc_seeded("pc-grp-r", 111, DeviceProfile::default())
        .await;
    let id = devices(&s).await[0].0.clone();
    let out = s.cli(&["groups", "create", "Lab", "--device", &id]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));

    // Dry run: the plan, exit 0, nothing queued.
    let out = s.cli(&["reset", "--group", "Lab", "--dry-run"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("1 would be queued"),
        "{}",
        text(&out.stdout)
    );

    // No --confirm: the plan and what to type, exit 1, nothing queued.
    let out = s.cli(&["reset", "--group", "Lab"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("would_queue"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stderr).contains("--confirm Lab"),
        "{}",
        text(&out.stderr)
    );
    let listed = stdout_json(&s.cli(&["actions", "list", "--json"]).await);
    assert!(listed["items"].as_array().unwrap().is_empty(), "{listed}");

    // A wrong name is refused by the server.
    let out = s
        .cli(&["reset", "--group", "Lab", "--confirm", "lab"])
        .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("409"), "{}", text(&out.stderr));

    let batch = stdout_json(
        &s.cli(&["reset", "--group", "Lab", "--confirm", "Lab", "--json"])
            .await,
    );
    assert_eq!(batch["counts"]["queued"], 1, "{batch}");
    assert_eq!(batch["items"][0]["device_id"], id.as_str(), "{batch}");
    let listed = stdout_json(&s.cli(&["actions", "list", "--json"]).await);
    assert_eq!(listed["items"][0]["state"], "pending", "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autopilot_import_reports_the_bad_row_and_exits_1() {
    let s = setup().await;
    let csv = s.dir.path().join("hashes.csv");
    std::fs::write(
        &csv,
        "Device Serial Number,Windows Product ID,Hardware Hash,Group Tag,Assigned User\n\
         SN-001,,QUJD,Lab,\n\
         SN-002,,%%%,Lab,\n",
    )
    .unwrap();
    let out = s.cli(&["autopilot", "import", csv.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("imported 1"), "{stdout}");
    assert!(
        stdout.contains("line 3") && stdout.contains("SN-002"),
        "{stdout}"
    );
    let list = stdout_json(&s.cli(&["autopilot", "list", "--json"]).await);
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["items"][0]["serial"], "SN-001");
    assert_eq!(list["items"][0]["group_tag"], "Lab");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_wait_follows_the_pc_from_pending_to_done() {
    let s = setup().await;
    let mut pc = s
        .enroll_pc_seeded("pc-wait", 121, DeviceProfile::default())
        .await;
    let (id, name, _) = devices(&s).await.remove(0);
    let device_id = redeploy_core::DeviceId::parse(&id).unwrap();

    // The CLI runs on its own while the PC checks in.
    let mut cmd = bare(s.dir.path());
    cmd.args(["reset", &name, "--wait", "--timeout", "120"])
        .arg("--server")
        .arg(&s.app.base_url)
        .arg("--ca-file")
        .arg(&s.ca)
        .arg("--token-file")
        .arg(&s.token)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().expect("redeploy runs");

    // Wait until the CLI queued the reset (poll the store, bounded).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let actions = s.app.store.actions_of_device(device_id).await.unwrap();
        if !actions.is_empty() {
            assert_eq!(actions[0].state, redeploy_core::ActionState::Pending);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the CLI queued nothing"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // The PC takes the reset, runs it, and comes back.
    let transport = HttpsTransport::new(&s.app.ca_pem).unwrap();
    let now = OffsetDateTime::now_utc;
    client::check_in(&transport, &mut pc, now()).await.unwrap();
    device::reset::run_to_completion(&mut pc);
    for _ in 0..5 {
        let report = client::check_in(&transport, &mut pc, now()).await.unwrap();
        if report.executed.is_empty() {
            break;
        }
    }

    let out = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()),
    )
    .await
    .expect("the CLI returns once the reset is done")
    .unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    assert!(stdout.contains("pending"), "{stdout}");
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        last.contains(" done ") || last.ends_with("done"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_reset_wait_on_a_blocked_pc_settles_at_once_and_exits_1_with_the_reason() {
    let s = setup().await;
    let profile = DeviceProfile {
        join: PcJoin::Hybrid,
        ..DeviceProfile::default()
    };
    s.enroll_pc_seeded("pc-grp-h", 131, profile).await;
    let id = devices(&s).await[0].0.clone();
    let out = s
        .cli(&["groups", "create", "Hybrid", "--device", &id])
        .await;
    assert!(out.status.success(), "{}", text(&out.stderr));

    // The batch holds only a blocked action: settled, but not done.
    let out = s
        .cli(&[
            "reset",
            "--group",
            "Hybrid",
            "--confirm",
            "Hybrid",
            "--wait",
            "--timeout",
            "30",
        ])
        .await;
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    assert!(stdout.contains("1 blocked"), "{stdout}");
    assert!(stdout.to_lowercase().contains("hybrid"), "{stdout}");
    assert!(!stdout.contains("every action is done"), "{stdout}");
    // The failure lines after the batch summary name the PC rather than its id.
    let name = devices(&s).await[0].1.clone();
    let (_, tail) = stdout.split_once("batch ").expect("a batch summary");
    assert!(tail.contains(&format!("device {name}")), "{stdout}");
    assert!(!tail.contains(&format!("device {id}")), "{stdout}");

    // With --json the final batch status is printed.
    let out = s
        .cli(&[
            "reset",
            "--group",
            "Hybrid",
            "--confirm",
            "Hybrid",
            "--wait",
            "--json",
        ])
        .await;
    assert_eq!(out.status.code(), Some(1));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["settled"], true, "{status}");
    assert_eq!(status["counts"]["blocked"], 1, "{status}");
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

    let off = stdout_json(&s.cli(&["webhooks", "disable", &id, "--json"]).await);
    assert_eq!(off["enabled"], false, "{off}");
    let list = stdout_json(&s.cli(&["webhooks", "list", "--json"]).await);
    assert_eq!(list["items"][0]["enabled"], false, "{list}");
    let on = s.cli(&["webhooks", "enable", &id]).await;
    assert!(on.status.success());
    assert!(
        String::from_utf8_lossy(&on.stdout).starts_with(&format!("enabled {id}")),
        "{on:?}"
    );

    // An e-mail subscription gets the batch events; without [smtp] its test mail fails.
    let mail = stdout_json(
        &s.cli(&[
            "webhooks",
            "create",
            "--kind",
            "email",
            "--to",
            "ops@example.org",
            "--json",
        ])
        .await,
    );
    assert_eq!(mail["webhook"]["kind"], "email", "{mail}");
    assert_eq!(
        mail["webhook"]["events"],
        serde_json::json!(["batch.done", "batch.failed", "batch.stuck"])
    );
    let mail_id = mail["webhook"]["id"].as_str().unwrap().to_string();
    let ping = s.cli(&["webhooks", "test", &mail_id, "--json"]).await;
    assert_eq!(ping.status.code(), Some(1));
    let ping: serde_json::Value = serde_json::from_slice(&ping.stdout).unwrap();
    assert!(
        ping["last_error"]
            .as_str()
            .unwrap()
            .contains("no SMTP server"),
        "{ping}"
    );
    let usage = s
        .cli(&["webhooks", "create", "--kind", "pager", "--url", "http://x"])
        .await;
    assert_eq!(usage.status.code(), Some(2), "an unknown kind is bad usage");
    assert!(s
        .cli(&["webhooks", "delete", &mail_id])
        .await
        .status
        .success());

    assert!(s.cli(&["webhooks", "delete", &id]).await.status.success());
    assert_eq!(
        s.cli(&["webhooks", "delete", &id]).await.status.code(),
        Some(1)
    );
    let list = stdout_json(&s.cli(&["webhooks", "list", "--json"]).await);
    assert_eq!(list["items"], serde_json::json!([]));
}

/// `redeploy inspect --device NAME`: the PC's last messages from the server's support trail,
/// each decoded like `inspect FILE` decodes one; `--json` gives the raw (redacted) bodies too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_device_decodes_the_pcs_last_messages() {
    let s = setup().await;
    s.enroll_pc("pc-inspect", DeviceProfile::default()).await;
    let list = stdout_json(&s.cli(&["devices", "list", "--json"]).await);
    let name = list["items"][0]["name"].as_str().unwrap().to_owned();

    let text = s.cli(&["inspect", "--device", &name, "--last", "2"]).await;
    assert!(
        text.status.success(),
        "{}",
        String::from_utf8_lossy(&text.stderr)
    );
    let out = String::from_utf8_lossy(&text.stdout);
    assert!(
        out.contains("to the PC") && out.contains("from the PC"),
        "{out}"
    );
    assert!(out.contains("SyncML"), "decoded, not just dumped: {out}");

    let json = stdout_json(&s.cli(&["inspect", "--device", &name, "--json"]).await);
    let items = json.as_array().unwrap();
    assert!(items.len() >= 2, "{json}");
    assert_eq!(items[0]["direction"], "out");
    assert!(items[0]["decoded"].is_object(), "{}", items[0]);
    assert!(items[1]["body"].as_str().unwrap().contains("<SyncML"));

    let unknown = s.cli(&["inspect", "--device", "no-such-pc"]).await;
    assert_eq!(unknown.status.code(), Some(1), "{unknown:?}");
    // A file and a device at once is bad usage.
    let both = s.cli(&["inspect", "x.xml", "--device", &name]).await;
    assert_eq!(both.status.code(), Some(2), "{both:?}");
}

/// Issue #14 item 6: `--all` follows every page of devices, actions, batches and the audit log
/// (JSON and CSV), and `batches list|show` tell how far each bulk request came.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_follow_every_page_with_all_and_batches_are_listed() {
    let s = setup().await;
    for (i, name) in ["pc-p1", "pc-p2", "pc-p3"].into_iter().enumerate() {
        s.enroll_pc_seeded(name, 40 + i as u64, DeviceProfile::default())
            .await;
    }
    let ids: Vec<String> = devices(&s).await.into_iter().map(|(id, _, _)| id).collect();
    assert_eq!(ids.len(), 3);
    // Two bulk syncs of the three PCs: two batches, six actions.
    let mut batches = Vec::new();
    for _ in 0..2 {
        let created = s
            .app
            .client()
            .post(s.app.url("/api/v1/actions/bulk"))
            .bearer_auth(&s.app.admin_token)
            .json(&json!({"kind": "sync", "devices": ids}))
            .send()
            .await
            .unwrap();
        let created: serde_json::Value = created.json().await.unwrap();
        batches.push(created["batch_id"].as_str().unwrap().to_owned());
    }

    let count = |v: &serde_json::Value| v["items"].as_array().unwrap().len();
    let one = stdout_json(&s.cli(&["devices", "list", "--limit", "1", "--json"]).await);
    assert_eq!(count(&one), 1);
    assert!(one["next"].is_string());
    let all = stdout_json(
        &s.cli(&["devices", "list", "--limit", "1", "--all", "--json"])
            .await,
    );
    assert_eq!(count(&all), 3);
    let all = stdout_json(
        &s.cli(&["actions", "list", "--limit", "2", "--all", "--json"])
            .await,
    );
    assert_eq!(count(&all), 6);
    let of_batch = stdout_json(
        &s.cli(&["actions", "list", "--batch", &batches[0], "--all", "--json"])
            .await,
    );
    assert_eq!(count(&of_batch), 3);
    let listed = stdout_json(
        &s.cli(&["batches", "list", "--limit", "1", "--all", "--json"])
            .await,
    );
    let listed_ids: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["batch_id"].as_str().unwrap())
        .collect();
    assert_eq!(listed_ids, [batches[1].as_str(), batches[0].as_str()]);
    let table = s.cli(&["batches", "list"]).await;
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.status.success() && text.contains("3 devices") && text.contains("sync"),
        "{text}"
    );
    let shown = s.cli(&["batches", "show", &batches[0]]).await;
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.status.success() && text.contains(&batches[0]),
        "{text}"
    );

    // The audit log, two at a time: every event once, as JSON and as CSV.
    let whole = stdout_json(&s.cli(&["audit", "--limit", "1000", "--json"]).await);
    let events = count(&whole);
    assert!(events >= 5, "{whole}");
    let paged = stdout_json(&s.cli(&["audit", "--limit", "2", "--all", "--json"]).await);
    assert_eq!(count(&paged), events);
    let csv = s.cli(&["audit", "--limit", "2", "--all", "--csv"]).await;
    let text = String::from_utf8_lossy(&csv.stdout);
    assert!(csv.status.success());
    assert_eq!(
        text.lines().filter(|l| l.starts_with("id,")).count(),
        1,
        "{text}"
    );
    assert_eq!(text.lines().count(), events + 1, "{text}");
}

#[tokio::test]
async fn accounts_are_created_from_a_file_or_stdin_listed_and_disabled() {
    let s = setup().await;
    let file = s.dir.path().join("password");
    std::fs::write(&file, "a long enough password\n").unwrap();
    let out = s
        .cli(&[
            "accounts",
            "create",
            "ada",
            "--role",
            "operator",
            "--password-file",
            file.to_str().unwrap(),
        ])
        .await;
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("created account ada (operator)"),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // From standard input (not a terminal): its first line.
    let mut cmd = bare(s.dir.path());
    cmd.args(["accounts", "create", "bob", "--role", "viewer", "--json"])
        .args(["--server", &s.app.base_url])
        .arg("--ca-file")
        .arg(&s.ca)
        .arg("--token-file")
        .arg(&s.token)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let out = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = cmd.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"another long password\n")
            .unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    let bob = stdout_json(&out);
    assert_eq!(
        (bob["name"].as_str(), bob["role"].as_str()),
        (Some("bob"), Some("viewer"))
    );

    // A short password is refused by the server (exit 1), an empty one before asking (exit 2).
    std::fs::write(&file, "short\n").unwrap();
    let args = [
        "accounts",
        "create",
        "eve",
        "--role",
        "admin",
        "--password-file",
    ];
    let out = s
        .cli(&[&args[..], &[file.to_str().unwrap()]].concat())
        .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("12 characters"));
    std::fs::write(&file, "\n").unwrap();
    let out = s
        .cli(&[&args[..], &[file.to_str().unwrap()]].concat())
        .await;
    assert_eq!(out.status.code(), Some(2));

    let out = s.cli(&["accounts", "disable", "bob"]).await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("disabled account bob"));
    let list = stdout_json(&s.cli(&["accounts", "list", "--json"]).await);
    let disabled: Vec<(&str, bool)> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["name"].as_str().unwrap(), !a["disabled_at"].is_null()))
        .collect();
    assert_eq!(disabled, [("ada", false), ("bob", true)], "{list}");
    let table = s.cli(&["accounts", "list"]).await;
    assert!(String::from_utf8_lossy(&table.stdout).contains("operator"));
    let audit = s.cli(&["audit", "--csv"]).await;
    let text = String::from_utf8_lossy(&audit.stdout);
    assert!(
        text.contains("account.create") && text.contains("account.disable"),
        "{text}"
    );
}
