//! The admin CLI's contract as a new user meets it (issue #15 item 3, README "Admin CLI"): exit
//! codes, a closed pipe, an unreachable server, per-device results of multi-device commands,
//! `--wait` through a server restart, readable times and decoded results (`--json` raw), and
//! `audit --device NAME`. The real binary against a real server, on both backends.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStderr, Stdio};
use std::time::Duration;

use device::state::JoinType as PcJoin;
use device::{DeviceProfile, HttpsTransport};
use redeploy_core::{ActionState, DeviceId};
use testkit::app::Backend;
use testkit::outage::Forwarder;
use time::OffsetDateTime;

use crate::admin::{bare, devices, run, setup_on, stdout_json, text, Setup};

testkit::on_both_backends!(
    exit_codes_are_0_success_1_refused_or_failed_2_bad_usage,
    a_multi_device_command_goes_ahead_for_the_devices_it_finds,
    reset_wait_survives_a_server_restart,
    times_are_readable_and_a_failure_is_decoded_and_json_keeps_both_raw,
);

/// A hybrid-joined PC: preflight blocks its Autopilot Reset.
fn hybrid() -> DeviceProfile {
    DeviceProfile {
        join: PcJoin::Hybrid,
        ..DeviceProfile::default()
    }
}

/// The id of the device named `name`, from `devices list --json`.
async fn id_of(s: &Setup, name: &str) -> String {
    devices(s)
        .await
        .into_iter()
        .find(|d| d.1 == name)
        .unwrap_or_else(|| panic!("no device {name}"))
        .0
}

async fn exit_codes_are_0_success_1_refused_or_failed_2_bad_usage(backend: Backend) {
    let s = setup_on(backend).await;
    let blocked = s.enroll_pc_seeded("pc-exit-h", 201, hybrid()).await;
    let ready = s
        .enroll_pc_seeded("pc-exit-r", 202, DeviceProfile::default())
        .await;

    // A reset preflight blocks is a refused request: exit 1, the reason on standard error.
    let out = s.cli(&["reset", &blocked.computer_name]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("blocked"),
        "{}",
        text(&out.stdout)
    );
    let stderr = text(&out.stderr);
    assert!(stderr.to_lowercase().contains("hybrid"), "{stderr}");
    assert!(stderr.contains("0 of 1 devices queued"), "{stderr}");
    // The same with --json: the blocked action on standard output, still exit 1.
    let out = s.cli(&["reset", &blocked.computer_name, "--json"]).await;
    assert_eq!(out.status.code(), Some(1));
    let actions: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(actions[0]["state"], "blocked", "{actions}");

    // A batch with a blocked device is partly refused: exit 1 after its summary line.
    let out = s
        .cli(&[
            "groups",
            "create",
            "Hybrid",
            "--device",
            &blocked.computer_name,
        ])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = s
        .cli(&["reset", "--group", "Hybrid", "--confirm", "Hybrid"])
        .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("0 queued, 1 blocked"),
        "{}",
        text(&out.stdout)
    );

    // Success: exit 0.
    let queued = stdout_json(&s.cli(&["reset", &ready.computer_name, "--json"]).await);
    assert_eq!(queued[0]["state"], "pending", "{queued}");
    // A retry of the blocked action is blocked again: exit 1.
    let blocked_id = actions[0]["id"].as_str().unwrap();
    let out = s.cli(&["actions", "retry", blocked_id]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));

    // An unknown device: exit 1, named.
    for args in [
        &["reset", "no-such-pc"][..],
        &["devices", "show", "no-such-pc"],
        &["audit", "--device", "no-such-pc"],
    ] {
        let out = s.cli(args).await;
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(text(&out.stderr).contains("no-such-pc"), "{args:?}");
    }

    // Bad usage: exit 2.
    for args in [
        &["reset"][..],
        &["devices", "list", "--limit", "many"],
        &["reset", "--group", "g", "--filter", "x=y"],
        &["groups", "create", "Bad", "--filter", "colour=red"],
    ] {
        assert_eq!(s.cli(args).await.status.code(), Some(2), "{args:?}");
    }

    // `audit --device NAME` resolves the name: the events of that PC only, as for its id.
    let by_name = stdout_json(
        &s.cli(&["audit", "--device", &ready.computer_name, "--json"])
            .await,
    );
    let ready_id = id_of(&s, &ready.computer_name).await;
    let by_id = stdout_json(&s.cli(&["audit", "--device", &ready_id, "--json"]).await);
    let events = by_name["items"].as_array().unwrap();
    assert!(
        events.iter().any(|e| e["action"] == "action.create"),
        "{by_name}"
    );
    assert!(
        events.iter().all(|e| e["targets"]
            .as_array()
            .unwrap()
            .contains(&ready_id.as_str().into())),
        "{by_name}"
    );
    assert_eq!(by_name, by_id);
    // `actions list --device NAME` likewise.
    let listed = stdout_json(
        &s.cli(&[
            "actions",
            "list",
            "--device",
            &ready.computer_name,
            "--json",
        ])
        .await,
    );
    assert_eq!(listed["items"][0]["id"], queued[0]["id"], "{listed}");
    assert_eq!(listed["items"].as_array().unwrap().len(), 1, "{listed}");
}

async fn a_multi_device_command_goes_ahead_for_the_devices_it_finds(backend: Backend) {
    let s = setup_on(backend).await;
    let a = s
        .enroll_pc_seeded("pc-multi-a", 211, DeviceProfile::default())
        .await;
    let b = s
        .enroll_pc_seeded("pc-multi-b", 212, DeviceProfile::default())
        .await;
    let (a, b) = (a.computer_name, b.computer_name);

    // One request per device: the unknown name is reported, the two others are queued.
    let out = s.cli(&["reset", &a, "no-such-pc", &b, "--json"]).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("no-such-pc"), "{stderr}");
    assert!(
        stderr.contains("2 of 3 devices queued, 1 not"),
        "a summary line: {stderr}"
    );
    let queued: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut ids: Vec<&str> = queued
        .as_array()
        .unwrap()
        .iter()
        .inspect(|q| assert_eq!(q["state"], "pending", "{queued}"))
        .map(|q| q["device_id"].as_str().unwrap())
        .collect();
    ids.sort();
    let mut want = vec![id_of(&s, &a).await, id_of(&s, &b).await];
    want.sort();
    assert_eq!(ids, want);

    // One batch (waves): the devices found make the batch; exit 1 for the one that was not.
    let out = s
        .cli(&[
            "reset",
            &a,
            "no-such-pc",
            &b,
            "--kind",
            "sync",
            "--wave-size",
            "5",
            "--json",
        ])
        .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("no-such-pc"));
    let batch: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(batch["counts"]["queued"], 2, "{batch}");

    // Group members likewise: the group gets the devices found.
    let out = s
        .cli(&[
            "groups",
            "create",
            "Lab",
            "--device",
            &a,
            "--device",
            "no-such-pc",
        ])
        .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let out = s.cli(&["groups", "add", "Lab", "no-such-pc", &b]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("1 of 2 devices found"));
    let shown = stdout_json(&s.cli(&["groups", "show", "Lab", "--json"]).await);
    assert_eq!(shown["group"]["member_count"], 2, "{shown}");
    // Every page of members with --all.
    let paged = stdout_json(
        &s.cli(&["groups", "show", "Lab", "--limit", "1", "--all", "--json"])
            .await,
    );
    assert_eq!(paged["members"].as_array().unwrap().len(), 2, "{paged}");
    assert!(paged["next"].is_null(), "{paged}");
}

/// Reads `stderr` line by line (off the runtime) until a line contains `needle`; returns the
/// lines read and the rest of the stream.
async fn read_until(
    stderr: BufReader<ChildStderr>,
    needle: &'static str,
) -> (Vec<String>, BufReader<ChildStderr>) {
    let reading = tokio::task::spawn_blocking(move || {
        let mut stderr = stderr;
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let n = stderr.read_line(&mut line).expect("stderr");
            assert!(n > 0, "the CLI ended before saying {needle:?}: {lines:?}");
            lines.push(line);
            if lines.last().unwrap().contains(needle) {
                return (lines, stderr);
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(60), reading)
        .await
        .unwrap_or_else(|_| panic!("no {needle:?} on stderr within 60 s"))
        .unwrap()
}

/// `redeploy ARGS` (a request for the device `name` with `--wait`) reaching the server through
/// a forwarder (which the test stops to cut the CLI off), returned once the device's action is
/// queued, with the forwarder and its URL.
///
/// Stopping the forwarder cuts the CLI's open connection and refuses new ones, as a stopped
/// server process does (a test server's open connections outlive its `stop`, being tasks of
/// the test's runtime).
async fn wait_through_forwarder(
    s: &Setup,
    name: &str,
    args: &[&str],
) -> (Forwarder, String, Child) {
    let id = DeviceId::parse(&id_of(s, name).await).unwrap();
    let forwarder = Forwarder::start(s.app.addr.to_string()).await;
    let via = format!("https://{}", forwarder.addr());
    let mut cmd = bare(s.dir.path());
    cmd.args(args)
        .args(["--server", &via, "--ca-file"])
        .arg(&s.ca)
        .arg("--token-file")
        .arg(&s.token)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().expect("redeploy runs");
    // The reset is queued (polled in the store, bounded).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while s.app.store.actions_of_device(id).await.unwrap().is_empty() {
        assert!(std::time::Instant::now() < deadline, "nothing queued");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (forwarder, via, child)
}

/// The CLI's output once it ended (bounded).
async fn finished(child: Child) -> std::process::Output {
    tokio::time::timeout(
        Duration::from_secs(60),
        tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()),
    )
    .await
    .expect("the CLI ends within 60 s")
    .unwrap()
}

async fn reset_wait_survives_a_server_restart(backend: Backend) {
    let mut s = setup_on(backend).await;
    let mut pc = s
        .enroll_pc_seeded("pc-restart", 221, DeviceProfile::default())
        .await;
    let id = DeviceId::parse(&id_of(&s, &pc.computer_name).await).unwrap();
    let (forwarder, via, mut child) = wait_through_forwarder(
        &s,
        &pc.computer_name,
        &["reset", &pc.computer_name, "--wait", "--timeout", "300"],
    )
    .await;
    let stderr = BufReader::new(child.stderr.take().unwrap());
    // The server goes away.
    forwarder.stop().await;
    s.app.stop().await;
    let (said, stderr) = read_until(stderr, "retrying").await;
    let last = said.last().unwrap();
    assert!(
        last.contains("connection refused") && last.contains(&via),
        "{said:?}"
    );

    // The server comes back on the same port and database; the PC takes the reset.
    s.app.settings.listen = s.app.addr;
    s.app.restart().await;
    forwarder.restart().await;
    let transport = HttpsTransport::new(&s.app.ca_pem).unwrap();
    let now = OffsetDateTime::now_utc;
    device::client::check_in(&transport, &mut pc, now())
        .await
        .unwrap();
    device::reset::run_to_completion(&mut pc);
    crate::sync_until_quiet(&transport, &mut pc, now()).await;
    let actions = s.app.store.actions_of_device(id).await.unwrap();
    assert_eq!(actions[0].state, ActionState::Done);

    let (said, _) = read_until(stderr, "answers again").await;
    let out = finished(child).await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{said:?}");
    assert!(
        stdout.lines().last().unwrap().contains("  done  "),
        "{stdout}"
    );
}

/// `2026-12-06 09:14:03 UTC`: the one readable time style.
fn readable_time(text: &str) -> bool {
    let shape = "dddd-dd-dd dd:dd:dd UTC";
    text.len() >= shape.len()
        && (0..=text.len() - shape.len()).any(|start| {
            text[start..start + shape.len()]
                .chars()
                .zip(shape.chars())
                .all(|(c, s)| if s == 'd' { c.is_ascii_digit() } else { c == s })
        })
}

async fn times_are_readable_and_a_failure_is_decoded_and_json_keeps_both_raw(backend: Backend) {
    let s = setup_on(backend).await;
    let mut pc = s
        .enroll_pc_seeded("pc-readable", 231, DeviceProfile::default())
        .await;
    // `reagentc /disable` after enrollment: the Exec goes out and fails with 0x80070032.
    device::reset::reagentc(&mut pc, false, OffsetDateTime::now_utc()).unwrap();
    let queued = stdout_json(&s.cli(&["reset", &pc.computer_name, "--json"]).await);
    let action = queued[0]["id"].as_str().unwrap().to_owned();
    let transport = HttpsTransport::new(&s.app.ca_pem).unwrap();
    crate::sync_until_quiet(&transport, &mut pc, OffsetDateTime::now_utc()).await;

    let shown = s.cli(&["actions", "show", &action]).await;
    let shown = text(&shown.stdout);
    assert!(shown.contains("failed"), "{shown}");
    assert!(
        shown.contains("WinRE is disabled: run reagentc.exe /enable on the device (0x80070032)"),
        "{shown}"
    );
    for line in shown.lines().skip(1) {
        assert!(readable_time(line), "{line}");
        assert!(!line.contains('T') || !line.contains('Z'), "{line}");
    }
    let device = s.cli(&["devices", "show", &pc.computer_name]).await;
    let device = text(&device.stdout);
    assert!(
        device.contains("reset status:  30 (failed during CSP Execute)"),
        "{device}"
    );
    assert!(device.contains("WinRE is disabled"), "{device}");
    let listed = text(&s.cli(&["devices", "list"]).await.stdout);
    assert!(readable_time(listed.lines().nth(1).unwrap()), "{listed}");
    let audit = text(&s.cli(&["audit"]).await.stdout);
    assert!(
        audit.lines().skip(1).all(readable_time),
        "every event's time: {audit}"
    );

    // --json keeps the server's values: RFC 3339 times, the code as the PC gave it.
    let raw = stdout_json(&s.cli(&["actions", "show", &action, "--json"]).await);
    assert_eq!(raw["last_error"], "0x80070032", "{raw}");
    let at = raw["timeline"][0]["at"].as_str().unwrap();
    assert!(
        time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).is_ok(),
        "{at}"
    );
}

/// `redeploy audit | head`: standard output closed before the CLI writes ends it quietly with
/// exit 0 (not a panic, 101). The pipe's read end is closed before the CLI starts, so every
/// write fails with EPIPE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_pipe_ends_the_command_quietly_with_exit_0() {
    let s = setup_on(Backend::Sqlite).await;
    let pc = s
        .enroll_pc_seeded("pc-pipe", 241, DeviceProfile::default())
        .await;
    for args in [
        &["audit"][..],
        &["audit", "--csv"],
        &["audit", "--all", "--json"],
        &["devices", "list"],
        &["devices", "show", &pc.computer_name],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let mut cmd = s.command(args);
        cmd.stdout(writer);
        let out = run(cmd).await;
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert_eq!(text(&out.stderr), "", "{args:?}");
    }
}

/// One line naming the server URL, what failed, and what to check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_named_with_what_failed_and_a_hint() {
    let s = setup_on(Backend::Sqlite).await;
    // A port nothing listens on: bound, then let go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("https://127.0.0.1:{port}");
    let mut cmd = bare(s.dir.path());
    cmd.args(["devices", "list", "--server", &url, "--token-file"])
        .arg(&s.token);
    let out = run(cmd).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    for part in [
        &url[..],
        "connection refused",
        "redeploy serve",
        "REDEPLOY_SERVER",
    ] {
        assert!(stderr.contains(part), "{part}: {stderr}");
    }
    // A multi-device command says it once, not once per device.
    let mut cmd = bare(s.dir.path());
    cmd.args(["reset", "pc-1", "pc-2", "--server", &url, "--token-file"])
        .arg(&s.token);
    let out = run(cmd).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr).lines().count(),
        1,
        "{}",
        text(&out.stderr)
    );

    // The real server, but its CA not given: a TLS failure, with the flag that fixes it.
    let mut cmd = bare(s.dir.path());
    cmd.args([
        "devices",
        "list",
        "--server",
        &s.app.base_url,
        "--token-file",
    ])
    .arg(&s.token);
    let out = run(cmd).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    for part in [&s.app.base_url[..], "TLS", "--ca-file", "REDEPLOY_CA_FILE"] {
        assert!(stderr.contains(part), "{part}: {stderr}");
    }
}

/// `--wait` gives up when the server stays away past its limit (here `--timeout`): exit 1,
/// after saying on standard error that it retried and why it stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_wait_gives_up_when_the_server_stays_away() {
    let s = setup_on(Backend::Sqlite).await;
    let one = s
        .enroll_pc_seeded("pc-away", 251, DeviceProfile::default())
        .await
        .computer_name;
    let other = s
        .enroll_pc_seeded("pc-away-2", 252, DeviceProfile::default())
        .await
        .computer_name;
    let out = s
        .cli(&["groups", "create", "Lab", "--device", &other])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // One device, and a group as one batch (the `--wait` of batches).
    for (name, args) in [
        (&one, &["reset", &one, "--wait", "--timeout", "10"][..]),
        (
            &other,
            &[
                "reset",
                "--group",
                "Lab",
                "--confirm",
                "Lab",
                "--wait",
                "--timeout",
                "10",
            ],
        ),
    ] {
        let (forwarder, _, child) = wait_through_forwarder(&s, name, args).await;
        forwarder.stop().await;
        let out = finished(child).await;
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains("retrying"), "{args:?}: {stderr}");
        assert!(
            stderr.contains("gave up waiting (--timeout)"),
            "{args:?}: {stderr}"
        );
    }
}
