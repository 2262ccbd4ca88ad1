//! `redeploy emulate` subcommands run as a user runs them, on state folders built with the
//! `device` library: no server needed.

use std::path::Path;
use std::process::{Command, Output};

use device::fleet::{self, FleetConfig};
use device::persist;
use device::state::DeviceState;
use serde_json::Value;
use time::macros::datetime;

fn redeploy(args: &[&str], state: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_redeploy"))
        .args(args)
        .arg("--state")
        .arg(state)
        .env_remove("REDEPLOY_SERVER")
        .output()
        .expect("redeploy runs")
}

fn stdout_json(out: &Output, what: &str) -> Value {
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{what}: {:?}\n{text}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {text}"))
}

/// `n` PCs of a fleet saved in `dir`, as `redeploy emulate --devices n` would build them.
fn fleet_in(dir: &Path, n: usize) -> Vec<DeviceState> {
    let config = FleetConfig::new("https://127.0.0.1:8443", "", n, dir);
    (0..n)
        .map(|i| {
            let pc = fleet::build_device(&config, i, datetime!(2025-03-03 09:00 UTC));
            persist::save(dir, &pc).unwrap();
            pc
        })
        .collect()
}

#[test]
fn emulate_show_all_lists_every_pc_with_its_reset_counts_in_one_call() {
    let dir = tempfile::tempdir().unwrap();
    let mut pcs = fleet_in(dir.path(), 3);
    pcs[1].resets.remote_autopilot = 2;
    pcs[1].resets.wipes = 1;
    persist::save(dir.path(), &pcs[1]).unwrap();

    let all = stdout_json(
        &redeploy(&["emulate", "show", "--all", "--json"], dir.path()),
        "show --all --json",
    );
    let all = all.as_array().expect("an array");
    let ids: Vec<&str> = all.iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["pc-0000", "pc-0001", "pc-0002"]);
    assert_eq!(
        all[1]["resets"],
        serde_json::json!({"remote_autopilot": 2, "local_autopilot": 0, "wipes": 1})
    );
    assert_eq!(all[0]["resets"]["remote_autopilot"], 0);
    assert!(all.iter().all(|p| p.get("events").is_none()));
    assert_eq!(all[2]["computer_name"], pcs[2].computer_name.as_str());

    let one = stdout_json(
        &redeploy(&["emulate", "show", "pc-0001", "--json"], dir.path()),
        "show pc-0001 --json",
    );
    assert_eq!(one["resets"]["remote_autopilot"], 2);
    assert!(one["events"].is_array());

    let table = redeploy(&["emulate", "show", "--all"], dir.path());
    assert!(table.status.success());
    let table = String::from_utf8_lossy(&table.stdout);
    assert_eq!(table.lines().count(), 4, "{table}");
    assert!(
        table.lines().nth(2).unwrap().starts_with("pc-0001"),
        "{table}"
    );

    // Neither a PC nor --all is bad usage.
    let bad = redeploy(&["emulate", "show"], dir.path());
    assert_eq!(bad.status.code(), Some(2));
    // An empty or missing folder is an empty list.
    let empty = stdout_json(
        &redeploy(
            &["emulate", "show", "--all", "--json"],
            &dir.path().join("none"),
        ),
        "show --all on nothing",
    );
    assert_eq!(empty, serde_json::json!([]));
}

#[test]
fn emulate_reagentc_enables_winre_logs_it_and_flags_the_change_for_a_running_fleet() {
    let dir = tempfile::tempdir().unwrap();
    let mut pcs = fleet_in(dir.path(), 2);
    pcs[0].winre_enabled = false;
    persist::save(dir.path(), &pcs[0]).unwrap();
    let name = pcs[0].computer_name.clone();

    let out = stdout_json(
        &redeploy(
            &["emulate", "reagentc", &name, "--enable", "--json"],
            dir.path(),
        ),
        "reagentc --enable",
    );
    assert_eq!(out["id"], "pc-0000");
    assert_eq!(out["winre_enabled"], true);
    assert_eq!(out["was_enabled"], false);
    assert_eq!(out["changed"], true);
    assert_eq!(out["bitlocker"]["device_encryption_status"], 0);
    // A running fleet reloads the PC before its next step instead of overwriting it.
    let flagged = persist::take_external_change(dir.path(), "pc-0000").unwrap();
    assert!(flagged.expect("flagged for a running fleet").winre_enabled);

    let shown = stdout_json(
        &redeploy(&["emulate", "show", "pc-0000", "--json"], dir.path()),
        "show",
    );
    assert_eq!(shown["winre_enabled"], true);
    let events = shown["events"].as_array().unwrap();
    let last = events.last().unwrap();
    assert_eq!(last["kind"], "winre_configured");
    assert_eq!(last["detail"], "reagentc /enable: WinRE enabled");

    let again = stdout_json(
        &redeploy(
            &["emulate", "reagentc", "pc-0000", "--enable", "--json"],
            dir.path(),
        ),
        "reagentc --enable again",
    );
    assert_eq!(again["changed"], false);

    let text = redeploy(&["emulate", "reagentc", "pc-0000", "--disable"], dir.path());
    assert!(text.status.success());
    assert_eq!(
        String::from_utf8_lossy(&text.stdout).trim(),
        format!("pc-0000 ({name}): WinRE disabled (was enabled)")
    );
    let off = stdout_json(
        &redeploy(&["emulate", "show", "pc-0000", "--json"], dir.path()),
        "show",
    );
    assert_eq!(off["winre_enabled"], false);
    assert_eq!(off["bitlocker"]["device_encryption_status"], 4096);

    // Exactly one of --enable / --disable.
    for args in [
        &["emulate", "reagentc", "pc-0000"][..],
        &["emulate", "reagentc", "pc-0000", "--enable", "--disable"][..],
    ] {
        assert_eq!(
            redeploy(args, dir.path()).status.code(),
            Some(2),
            "{args:?}"
        );
    }
    assert!(
        !redeploy(&["emulate", "reagentc", "pc-9999", "--enable"], dir.path())
            .status
            .success()
    );
}

#[test]
fn emulate_reagentc_is_refused_while_the_pc_reboots() {
    let dir = tempfile::tempdir().unwrap();
    let mut pc = fleet_in(dir.path(), 1).remove(0);
    pc.pending = Some(device::state::PendingOperation {
        operation: device::state::Operation::Reboot,
        phase: device::state::Phase::Offline,
        next_at: datetime!(2025-03-03 09:10 UTC),
        reset_nodes_before: None,
    });
    pc.online = false;
    persist::save(dir.path(), &pc).unwrap();
    let out = redeploy(&["emulate", "reagentc", "pc-0000", "--disable"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not running Windows"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        persist::load_id(dir.path(), "pc-0000")
            .unwrap()
            .unwrap()
            .winre_enabled
    );
}

#[test]
fn emulate_help_documents_reagentc_show_all_and_the_fault_flags() {
    let help = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_redeploy"))
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let emulate = help(&["emulate", "--help"]);
    for text in [
        "reagentc",
        "Fault injection",
        "--drop-replies <PCT>",
        "--stale-status-after-restore <PCT>",
        "--json",
    ] {
        assert!(emulate.contains(text), "{text} in {emulate}");
    }
    assert!(help(&["emulate", "show", "--help"]).contains("--all"));
    let reagentc = help(&["emulate", "reagentc", "--help"]);
    assert!(reagentc.contains("--enable") && reagentc.contains("--disable"));
}

#[test]
fn emulate_fault_flags_take_percentages_only() {
    let dir = tempfile::tempdir().unwrap();
    for bad in ["101", "-1", "half"] {
        for flag in ["--drop-replies", "--stale-status-after-restore"] {
            let out = redeploy(&["emulate", flag, bad], dir.path());
            assert_eq!(out.status.code(), Some(2), "{flag} {bad}");
        }
    }
}

#[test]
fn emulate_run_applies_the_fault_flags_keeps_going_without_a_server_and_prints_json() {
    let dir = tempfile::tempdir().unwrap();
    let ca =
        enroll::ca::CertificateAuthority::generate("Unused CA", time::OffsetDateTime::now_utc())
            .unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.cert_pem()).unwrap();
    let state = dir.path().join("pcs");
    // An enrolled PC whose server is gone (nothing listens on port 1), due to check in now.
    let mut pc = fleet_in(&state, 1).remove(0);
    pc.record_enrollment(
        device::state::MdmEnrollment {
            provider_id: "Redeploy".into(),
            server_url: "https://127.0.0.1:1/ManagementServer/MDM.svc".into(),
            client_cert_pem: ca.cert_pem().to_string(),
            client_key_pem: ca.key_pem(),
            thumbprint: "00".repeat(20),
            enrollment_type: device::state::EnrollmentType::Device,
            upn: None,
            ent_dm_id: None,
            poll: Default::default(),
            first_sync: Default::default(),
            enrolled: true,
            enrolled_at: time::OffsetDateTime::now_utc(),
            root_cert_pem: ca.cert_pem().to_string(),
            renewal: None,
        },
        time::OffsetDateTime::now_utc(),
    );
    pc.dm_client.sync_now = true;
    persist::save(&state, &pc).unwrap();

    let out = Command::new(env!("CARGO_BIN_EXE_redeploy"))
        .args(["emulate", "--devices", "1", "--duration", "0.5", "--json"])
        .args([
            "--drop-replies",
            "100",
            "--stale-status-after-restore",
            "25",
        ])
        .arg("--ca-file")
        .arg(&ca_file)
        .arg("--state")
        .arg(&state)
        .env_remove("REDEPLOY_SERVER")
        .env_remove("REDEPLOY_TOKEN")
        .env_remove("REDEPLOY_TOKEN_FILE")
        .current_dir(dir.path())
        .output()
        .unwrap();
    let summary = stdout_json(&out, "emulate --json");
    assert_eq!(summary["devices"], 1);
    assert_eq!(summary["enrolled"], 1);
    assert_eq!(summary["sessions_ok"], 0);
    assert!(
        summary["sessions_failed"].as_u64().unwrap() >= 1,
        "{summary}"
    );
    assert_eq!(
        summary["resets"],
        serde_json::json!({"remote_autopilot": 0, "local_autopilot": 0, "wipes": 0})
    );
    // Every session was cut or refused, and the run went on to its end.
    let errors = summary["errors_by_kind"].as_object().unwrap();
    assert!(
        errors
            .keys()
            .all(|k| ["request_lost", "connect"].contains(&k.as_str())),
        "{summary}"
    );
    let shown = stdout_json(
        &redeploy(&["emulate", "show", "pc-0000", "--json"], &state),
        "show",
    );
    assert_eq!(shown["faults"]["drop_replies_pct"], 100);
    assert_eq!(shown["faults"]["stale_status_after_restore_pct"], 25);
    assert_eq!(shown["faults"]["stale_autopilot_reset"], Value::Null);
}
