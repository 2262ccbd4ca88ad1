//! The new-user story of issue 6, with only the real binaries and a real browser: `redeploy
//! serve`, ten PCs from `redeploy emulate`, one Autopilot Reset from the console in Chromium
//! (`crates/server/tests/browser/story.mjs`), a group reset from the CLI, every step in
//! `redeploy audit`, and the reset PCs' own state from `redeploy emulate show`. SQLite, the default.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const CHROMIUM: &str = "/usr/bin/chromium";
const PCS: usize = 10;

/// A child process that is killed when the test ends, also when an assertion fails.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What `redeploy serve` printed at start.
struct Printed {
    console: String,
    base: String,
    ca: PathBuf,
    admin_token: PathBuf,
    enrollment_token: PathBuf,
}

/// The value after `label` on one of `lines`, without a trailing "(…)" note.
fn printed(lines: &[String], label: &str) -> String {
    let text = lines.join("\n");
    let value = lines
        .iter()
        .find_map(|l| l.trim().strip_prefix(label))
        .unwrap_or_else(|| panic!("`redeploy serve` printed no {label:?}:\n{text}"))
        .trim();
    value.split(" (").next().unwrap().to_string()
}

/// Starts `redeploy serve` on port 0 and reads the URLs and file paths it prints.
fn serve(data: &Path) -> (Running, Printed) {
    let mut child = Running(
        Command::new(env!("CARGO_BIN_EXE_redeploy"))
            .args([
                "serve",
                "--test-issuer",
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(data)
            // The PCs poll every 15 device minutes once enrolled (one real second at the
            // emulator's --time-scale 900), so a reset starts within about a second.
            .env(
                "REDEPLOY_POLL_INTERVAL_FOR_REMAINING_SCHEDULED_RETRIES",
                "15",
            )
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("redeploy serve runs"),
    );
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.expect("serve's stdout");
        let last = line.contains("Database:");
        seen.push(line);
        if last {
            break;
        }
    }
    // Keep reading so that the server never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    let console = printed(&seen, "Console:");
    let base = console
        .strip_suffix("/console")
        .unwrap_or_else(|| panic!("console URL {console}"))
        .to_string();
    assert!(
        printed(&seen, "Test issuer:").starts_with("http://127.0.0.1:"),
        "{seen:?}"
    );
    let printed = Printed {
        base,
        console,
        ca: printed(&seen, "CA certificate:").into(),
        admin_token: printed(&seen, "Admin token:").into(),
        enrollment_token: printed(&seen, "Enrollment token:").into(),
    };
    (child, printed)
}

/// `redeploy ARGS` the way a user who exported the three settings runs it.
fn cli(p: &Printed, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_redeploy"))
        .args(args)
        .env("REDEPLOY_SERVER", &p.base)
        .env("REDEPLOY_CA_FILE", &p.ca)
        .env("REDEPLOY_TOKEN_FILE", &p.admin_token)
        .env_remove("REDEPLOY_TOKEN")
        .output()
        .expect("redeploy runs")
}

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json(out: &Output, what: &str) -> Value {
    let text = ok(out, what);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {text}"))
}

/// Polls `check` until it returns `Some`, or fails after `limit` with `what` and the last value.
fn poll<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        match check() {
            Ok(v) => return v,
            Err(last) if Instant::now() > deadline => panic!("{what} within {limit:?}: {last}"),
            // A short pause between two looks, not a guess at how long anything takes.
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../server/tests/browser")
}

/// Node and Chromium must be installed (a missing one fails the test, never skips it); the
/// script's node_modules are installed when absent.
fn require_browser() {
    for tool in ["node", "npm", CHROMIUM] {
        let there = Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(there, "{tool} is missing: scripts/test.sh installs it");
    }
    if !browser_dir().join("node_modules/playwright-core").is_dir() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(browser_dir())
            .status()
            .expect("npm ci");
        assert!(status.success(), "npm ci in {}", browser_dir().display());
    }
}

/// Runs `f`, prints how long the step took (the measured numbers in the story's report).
fn timed<T>(step: &str, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let value = f();
    eprintln!("story: {step}: {:.1} s", start.elapsed().as_secs_f64());
    value
}

/// `redeploy emulate show NAME --json` for the PC the server knows as `name`.
fn emulated_pc(state: &Path, name: &str) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_redeploy"))
        .args(["emulate", "show", name, "--json", "--state"])
        .arg(state)
        .output()
        .expect("redeploy emulate show runs");
    json(&out, &format!("emulate show {name}"))
}

/// A PC after an Autopilot Reset: no user profile, file or primary user left; the Entra join
/// and the MDM enrollment kept (ITPRO windows-autopilot-reset.md, "what is kept").
fn assert_reset_kept_the_right_things(pc: &Value) {
    let name = &pc["computer_name"];
    let users = pc["users"].as_array().expect("users");
    assert!(
        users.iter().all(|u| u["has_profile"] == false),
        "{name}: user profiles left: {users:?}"
    );
    assert_eq!(pc["personal_files"], serde_json::json!([]), "{name}");
    assert_eq!(pc["primary_user"], Value::Null, "{name}");
    assert_eq!(
        pc["entra_join"]["type"], "joined",
        "{name}: {}",
        pc["entra_join"]
    );
    assert_eq!(
        pc["mdm_enrollment"]["enrolled"], true,
        "{name}: {}",
        pc["mdm_enrollment"]
    );
    assert_eq!(
        pc["autopilot_reset"]["status"], 1,
        "{name}: {}",
        pc["autopilot_reset"]
    );
}

#[test]
fn new_user_story_console_reset_group_reset_and_audit() {
    require_browser();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("redeploy-data");
    let pcs_state = dir.path().join("pcs");
    let emulator_log = dir.path().join("emulate.log");

    let (_server, p) = timed("redeploy serve until it printed its URLs", || serve(&data));
    assert!(p.console.starts_with("https://127.0.0.1:"), "{}", p.console);

    let _emulator = Running(
        Command::new(env!("CARGO_BIN_EXE_redeploy"))
            .args([
                "emulate",
                "--devices",
                &PCS.to_string(),
                "--time-scale",
                "900",
            ])
            .arg("--server")
            .arg(&p.base)
            .arg("--ca-file")
            .arg(&p.ca)
            .arg("--token-file")
            .arg(&p.enrollment_token)
            .arg("--state")
            .arg(&pcs_state)
            .env("RUST_LOG", "warn,device=debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&emulator_log).unwrap())
            .spawn()
            .expect("redeploy emulate runs"),
    );
    let emulator_says = || std::fs::read_to_string(&emulator_log).unwrap_or_default();

    // Ten PCs enrolled and ready for a reset (their inventory arrived).
    let devices: Vec<(String, String)> = timed("10 PCs enrolled and ready", || {
        poll(
            "10 ready PCs in `devices list`",
            Duration::from_secs(120),
            || {
                let list = json(&cli(&p, &["devices", "list", "--json"]), "devices list");
                let items = list["items"].as_array().cloned().unwrap_or_default();
                let ready = items
                    .iter()
                    .filter(|d| d["readiness"]["ready"] == true)
                    .count();
                if items.len() == PCS && ready == PCS {
                    // Ready because an Entra device token from the test issuer named each PC,
                    // not because the PC said so.
                    for d in &items {
                        assert_eq!(d["join_evidence"], "entra_token", "{d}");
                    }
                    let mut named: Vec<(String, String)> = items
                        .iter()
                        .map(|d| {
                            let field = |k: &str| d[k].as_str().unwrap().to_string();
                            (field("name"), field("id"))
                        })
                        .collect();
                    named.sort();
                    Ok(named)
                } else {
                    Err(format!(
                        "{} devices, {ready} ready; emulator: {}",
                        items.len(),
                        emulator_says()
                    ))
                }
            },
        )
    });
    let (single_name, single_id) = devices[0].clone();
    let lab = &devices[1..4];

    // The console, in Chromium: sign in, open one PC, reset it, watch it reach done.
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots/story");
    let _ = std::fs::remove_dir_all(&shots);
    std::fs::create_dir_all(&shots).unwrap();
    let token = std::fs::read_to_string(&p.admin_token).expect("the printed admin-token file");
    let node = timed("console: sign in, reset one PC, see done", || {
        Command::new("node")
            .arg("story.mjs")
            .current_dir(browser_dir())
            .env("REDEPLOY_URL", &p.console)
            .env("REDEPLOY_TOKEN", token.trim())
            .env("REDEPLOY_DEVICE_NAME", &single_name)
            .env("REDEPLOY_SCREENSHOTS", &shots)
            .env("REDEPLOY_CHROMIUM", CHROMIUM)
            .output()
            .expect("node runs")
    });
    let said = ok(&node, "story.mjs");
    let action_id = said
        .lines()
        .find_map(|l| l.strip_prefix("reset action "))
        .and_then(|l| l.strip_suffix(" done"))
        .unwrap_or_else(|| panic!("story.mjs named no action: {said}"))
        .to_string();
    for shot in [
        "sign-in",
        "dashboard",
        "devices",
        "device",
        "confirmation",
        "timeline",
    ] {
        let file = shots.join(format!("{shot}.png"));
        let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
        assert!(size > 1000, "{} missing or tiny", file.display());
    }
    let action = json(
        &cli(&p, &["actions", "show", &action_id, "--json"]),
        "actions show",
    );
    assert_eq!(action["state"], "done", "{action}");
    assert_eq!(action["device_id"], single_id.as_str(), "{action}");

    // The CLI: a group of three other PCs, reset as one batch, followed to the end.
    let mut create = vec!["groups", "create", "lab"];
    for (name, _) in lab {
        create.extend(["--device", name]);
    }
    let created = timed("groups create lab", || cli(&p, &create));
    let created = ok(&created, "groups create");
    assert!(created.contains("3 members"), "{created}");
    // Without --confirm, a new user sees the plan by PC name and the command to go ahead.
    let unconfirmed = cli(&p, &["reset", "--group", "lab"]);
    assert_eq!(unconfirmed.status.code(), Some(1), "{unconfirmed:?}");
    let plan = String::from_utf8_lossy(&unconfirmed.stdout);
    for (name, _) in lab {
        assert!(
            plan.contains(name.as_str()),
            "the plan names {name}: {plan}"
        );
    }
    assert!(
        String::from_utf8_lossy(&unconfirmed.stderr).contains("--confirm lab"),
        "{unconfirmed:?}"
    );
    let reset = timed("reset --group lab --confirm lab --wait", || {
        cli(
            &p,
            &[
                "reset",
                "--group",
                "lab",
                "--confirm",
                "lab",
                "--wait",
                "--timeout",
                "300",
            ],
        )
    });
    let said = ok(&reset, "reset --group lab --wait");
    assert!(said.contains("every action is done"), "{said}");
    for (name, _) in lab {
        assert!(
            said.contains(name.as_str()),
            "the batch names {name}: {said}"
        );
    }

    // Every step in the audit log, by the token's name.
    let audit = json(
        &cli(&p, &["audit", "--json", "--limit", "1000"]),
        "audit --json",
    );
    let entries = audit["items"].as_array().expect("audit items").clone();
    let by_admin = |action: &str| -> Vec<&Value> {
        entries
            .iter()
            .filter(|e| {
                e["action"] == action
                    && e["actor"]
                        .as_str()
                        .is_some_and(|a| a.starts_with("first admin"))
                    && e["outcome"] == "success"
            })
            .collect()
    };
    let targets = |e: &Value| -> HashSet<String> {
        e["targets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect()
    };
    let all = format!("{audit:#}");
    assert_eq!(by_admin("console.sign_in").len(), 1, "{all}");
    let creates = by_admin("action.create");
    let reset_of = |id: &str| {
        creates
            .iter()
            .filter(|e| {
                targets(e) == HashSet::from([id.to_string()])
                    && e["details"].as_str().unwrap().contains("autopilot_reset")
            })
            .count()
    };
    assert_eq!(reset_of(&single_id), 1, "the console reset: {all}");
    for (name, id) in lab {
        assert_eq!(reset_of(id), 1, "the group reset of {name}: {all}");
    }
    assert_eq!(creates.len(), 4, "one reset per PC, nothing else: {all}");
    let lab_ids: HashSet<String> = lab.iter().map(|(_, id)| id.clone()).collect();
    let groups = by_admin("group.create");
    assert_eq!(groups.len(), 1, "{all}");
    assert!(
        groups[0]["details"].as_str().unwrap().contains("\"lab\""),
        "{all}"
    );
    assert_eq!(targets(groups[0]), lab_ids, "{all}");
    let batches = by_admin("batch.create");
    assert_eq!(batches.len(), 1, "{all}");
    assert_eq!(targets(batches[0]), lab_ids, "{all}");
    assert!(
        batches[0]["details"]
            .as_str()
            .unwrap()
            .contains("group \"lab\""),
        "{all}"
    );

    // And each PC's own outcome: done, said by the device itself, in the lab's batch for the
    // group reset.
    let done_of = |id: &str| -> Vec<&Value> {
        entries
            .iter()
            .filter(|e| {
                e["action"] == "action.done"
                    && e["outcome"] == "success"
                    && e["actor"]
                        .as_str()
                        .is_some_and(|a| a.starts_with("device:"))
                    && targets(e) == HashSet::from([id.to_string()])
            })
            .collect()
    };
    assert_eq!(
        done_of(&single_id).len(),
        1,
        "the console reset done: {all}"
    );
    for (name, id) in lab {
        let done = done_of(id);
        assert_eq!(done.len(), 1, "the group reset of {name} done: {all}");
        assert_eq!(done[0]["batch"], batches[0]["batch"], "{all}");
    }

    // The PCs themselves: user data gone, Entra join and enrollment kept; an untouched PC still
    // has its users' files.
    assert_reset_kept_the_right_things(&emulated_pc(&pcs_state, &single_name));
    for (name, _) in lab {
        assert_reset_kept_the_right_things(&emulated_pc(&pcs_state, name));
    }
    let untouched = emulated_pc(&pcs_state, &devices[PCS - 1].0);
    assert_ne!(
        untouched["personal_files"],
        serde_json::json!([]),
        "{untouched}"
    );
}
