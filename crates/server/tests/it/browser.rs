//! The console in a real browser: headless Chromium driven by `tests/browser/console.mjs`
//! (playwright-core) signs in, finds one of ten emulated PCs, resets it and watches its timeline
//! reach "done" while the PCs keep checking in; screenshots of the main pages land in
//! `target/screenshots/<backend>/`. Node.js and Chromium are required: `scripts/test.sh`
//! installs them.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use device::client::{self, EnrollOptions};
use device::state::DeviceState;
use device::{reset, DeviceProfile, HttpsTransport};
use redeploy_core::store::AuditQuery;
use redeploy_core::{ActionKind, ActionState};
use testkit::app::{spawn_app, Backend};
use time::OffsetDateTime;

use testkit::on_both_backends;

const CHROMIUM: &str = "/usr/bin/chromium";
const SCREENSHOTS: &[&str] = &[
    "dashboard",
    "devices",
    "device",
    "confirmation",
    "timeline-done",
    "groups",
    "schedules",
    "autopilot",
    "audit",
];

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

fn have(program: &str) -> bool {
    std::process::Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Node, npm and Chromium must be there; a missing one fails the test (never skips it).
fn require_tools() {
    for (tool, what) in [("node", "Node.js"), ("npm", "npm"), (CHROMIUM, "Chromium")] {
        assert!(
            have(tool),
            "{what} ({tool}) is missing: the console browser test needs it. Run scripts/test.sh, \
             which installs Node.js, npm and Debian's chromium package."
        );
    }
    if !browser_dir().join("node_modules/playwright-core").is_dir() {
        let status = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(browser_dir())
            .status()
            .expect("npm ci");
        assert!(
            status.success(),
            "npm ci failed in {}",
            browser_dir().display()
        );
    }
}

/// Checks every PC in once; a PC that was told to reset runs the reset and reports back.
async fn check_in_all(transport: &HttpsTransport, pcs: &mut [DeviceState]) {
    for pc in pcs.iter_mut() {
        if pc.pending.is_some() {
            reset::run_to_completion(pc);
        }
        if let Err(e) = client::check_in(transport, pc, OffsetDateTime::now_utc()).await {
            eprintln!("check-in of {} failed: {e}", pc.dev_id);
        }
    }
}

on_both_backends!(
    console_in_chromium_resets_a_pc_and_watches_it_reach_done,
    console_in_chromium_steers_a_wave_reset_and_fits_a_phone,
    console_in_chromium_shows_whether_push_or_the_poll_reached_the_pc,
);

async fn console_in_chromium_resets_a_pc_and_watches_it_reach_done(backend: Backend) {
    require_tools();
    let app = spawn_app(backend).await;
    let transport = HttpsTransport::new(&app.ca_pem).unwrap();
    let now = OffsetDateTime::now_utc();
    let options = EnrollOptions {
        server: app.base_url.clone(),
        token: app.enrollment_token.clone(),
        issuer: None,
    };
    let mut pcs = Vec::new();
    for i in 0..10u64 {
        let mut pc = DeviceProfile::default().build_seeded(&format!("lab-{i:02}"), 100 + i, now);
        client::enroll(&transport, &mut pc, &options, now)
            .await
            .expect("enrollment");
        pcs.push(pc);
    }
    check_in_all(&transport, &mut pcs).await;
    let target = app
        .store
        .device_by_mdm_device_id(&pcs[3].dev_id)
        .await
        .unwrap()
        .expect("the server knows the PC");

    let shots = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/screenshots")
        .join(format!("{backend:?}").to_lowercase());
    let _ = std::fs::remove_dir_all(&shots);
    std::fs::create_dir_all(&shots).unwrap();

    // The PCs keep checking in (paced, not timed: the script waits for what it needs to see)
    // until the browser script ends.
    let stop = Arc::new(AtomicBool::new(false));
    let pump = {
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let mut pace = tokio::time::interval(std::time::Duration::from_millis(500));
            while !stop.load(Ordering::Relaxed) {
                pace.tick().await;
                check_in_all(&transport, &mut pcs).await;
            }
        })
    };
    let node = tokio::process::Command::new("node")
        .arg("console.mjs")
        .current_dir(browser_dir())
        .env("REDEPLOY_URL", &app.base_url)
        .env("REDEPLOY_TOKEN", &app.admin_token)
        .env("REDEPLOY_DEVICE_NAME", &target.name)
        .env("REDEPLOY_SCREENSHOTS", &shots)
        .env("REDEPLOY_CHROMIUM", CHROMIUM)
        .kill_on_drop(true)
        .output()
        .await
        .expect("node runs");
    stop.store(true, Ordering::Relaxed);
    pump.await.unwrap();
    let stdout = String::from_utf8_lossy(&node.stdout);
    let stderr = String::from_utf8_lossy(&node.stderr);
    assert!(
        node.status.success(),
        "console.mjs failed ({}):\n{stdout}\n{stderr}",
        node.status
    );

    for name in SCREENSHOTS {
        let file = shots.join(format!("{name}.png"));
        let size = std::fs::metadata(&file)
            .unwrap_or_else(|e| panic!("{}: {e}\n{stdout}", file.display()))
            .len();
        assert!(size > 1000, "{} is suspiciously small", file.display());
    }

    let actions = app.store.actions_of_device(target.id).await.unwrap();
    let reset = actions
        .iter()
        .find(|a| a.kind == ActionKind::AutopilotReset)
        .expect("the console requested an Autopilot Reset");
    assert_eq!(reset.state, ActionState::Done, "{:?}", reset.timeline);
    let audit = app
        .store
        .list_audit(&AuditQuery {
            device: Some(target.id),
            after: None,
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        audit.iter().any(|e| e.action == "action.create"
            && e.details.contains("autopilot_reset")
            && e.actor.starts_with("first admin")),
        "the audit log holds the reset: {audit:?}"
    );
}

/// Issue #15 items 1 and 2: an admin starts a group reset in waves from the console (the group's
/// name typed), pauses and cancels it from the batch's page, and every page fits a phone.
async fn console_in_chromium_steers_a_wave_reset_and_fits_a_phone(backend: Backend) {
    require_tools();
    let app = spawn_app(backend).await;
    let transport = HttpsTransport::new(&app.ca_pem).unwrap();
    let now = OffsetDateTime::now_utc();
    let options = EnrollOptions {
        server: app.base_url.clone(),
        token: app.enrollment_token.clone(),
        issuer: None,
    };
    let mut ids = Vec::new();
    for i in 0..6u64 {
        let mut pc = DeviceProfile::default().build_seeded(&format!("wave-{i:02}"), 300 + i, now);
        client::enroll(&transport, &mut pc, &options, now)
            .await
            .expect("enrollment");
        client::check_in(&transport, &mut pc, now)
            .await
            .expect("check-in");
        let d = app
            .store
            .device_by_mdm_device_id(&pc.dev_id)
            .await
            .unwrap()
            .unwrap();
        ids.push(d.id);
    }
    let group = redeploy_core::group::Group::new_static(
        redeploy_core::GroupId::generate(),
        "Room 12",
        ids.clone(),
        now,
    );
    app.store.create_group(&group).await.unwrap();
    let shots = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/screenshots")
        .join(format!("batches-{backend:?}").to_lowercase());
    let _ = std::fs::remove_dir_all(&shots);
    std::fs::create_dir_all(&shots).unwrap();
    let node = tokio::process::Command::new("node")
        .arg("batches.mjs")
        .current_dir(browser_dir())
        .env("REDEPLOY_URL", &app.base_url)
        .env("REDEPLOY_TOKEN", &app.admin_token)
        .env("REDEPLOY_GROUP", &group.name)
        .env("REDEPLOY_SCREENSHOTS", &shots)
        .env("REDEPLOY_CHROMIUM", CHROMIUM)
        .kill_on_drop(true)
        .output()
        .await
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&node.stdout);
    let stderr = String::from_utf8_lossy(&node.stderr);
    assert!(
        node.status.success(),
        "batches.mjs failed ({}):\n{stdout}\n{stderr}",
        node.status
    );
    // What the clicks did, as stored: one batch, paused then canceled by the admin, its first
    // wave's two resets still pending, the rest canceled or never released.
    let audit = app
        .store
        .list_audit(&AuditQuery {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    for what in ["batch.create", "batch.pause", "batch.cancel"] {
        assert_eq!(
            audit.iter().filter(|e| e.action == what).count(),
            1,
            "{what}: {audit:?}"
        );
    }
    let page = app.store.list_batches(10, None).await.unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(
        page.items[0].state,
        redeploy_core::store::BatchState::Canceled
    );
    let actions = app.store.actions_of_batch(page.items[0].id).await.unwrap();
    assert_eq!(actions.len(), 2, "only the first wave was released");
    assert!(actions.iter().all(|a| a.state == ActionState::Canceled));
}

on_both_backends!(console_in_chromium_signs_in_through_openid_connect_and_with_an_account);

/// Runs `sign_in.mjs` in `mode` with `env`; its output when it fails.
async fn sign_in_script(app: &testkit::app::TestApp, mode: &str, env: &[(&str, &str)]) {
    let shots = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/screenshots/sign-in")
        .join(format!("{:?}", app.backend).to_lowercase());
    std::fs::create_dir_all(&shots).unwrap();
    let node = tokio::process::Command::new("node")
        .arg("sign_in.mjs")
        .current_dir(browser_dir())
        .env("REDEPLOY_URL", &app.base_url)
        .env("REDEPLOY_SCREENSHOTS", &shots)
        .env("REDEPLOY_CHROMIUM", CHROMIUM)
        .env("REDEPLOY_SIGN_IN_MODE", mode)
        .envs(env.iter().copied())
        .kill_on_drop(true)
        .output()
        .await
        .expect("node runs");
    assert!(
        node.status.success(),
        "sign_in.mjs {mode} failed ({}):\n{}\n{}",
        node.status,
        String::from_utf8_lossy(&node.stdout),
        String::from_utf8_lossy(&node.stderr)
    );
}

async fn console_in_chromium_signs_in_through_openid_connect_and_with_an_account(backend: Backend) {
    require_tools();
    let (issuer, oidc) = crate::sign_in::provider().await;
    let app = testkit::app::spawn_app_with(backend, |s| s.oidc = Some(oidc)).await;
    let admin = api::Client::new(&app.base_url, &app.admin_token, Some(&app.ca_pem)).unwrap();
    admin
        .create_account(&api::NewAccount {
            name: "lab-operator".into(),
            role: "operator".into(),
            password: "a long enough password".into(),
        })
        .await
        .unwrap();

    issuer.set_sign_in_user(Some(crate::sign_in::user(
        "ada@contoso.test",
        &["lab-admins"],
    )));
    sign_in_script(
        &app,
        "allowed",
        &[
            ("REDEPLOY_OIDC_WHO", "ada@contoso.test · admin"),
            ("REDEPLOY_ACCOUNT", "lab-operator"),
            ("REDEPLOY_PASSWORD", "a long enough password"),
            ("REDEPLOY_ACCOUNT_WHO", "lab-operator · operator"),
        ],
    )
    .await;

    issuer.set_sign_in_user(Some(crate::sign_in::user(
        "mallory@contoso.test",
        &["students"],
    )));
    sign_in_script(&app, "no-role", &[]).await;

    let audit = app
        .store
        .list_audit(&AuditQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    let count = |action: &str, details: &str| {
        audit
            .iter()
            .filter(|e| e.action == action && e.details.starts_with(details))
            .count()
    };
    assert_eq!(
        count("console.sign_in", "openid"),
        2,
        "one signed in, one refused"
    );
    assert_eq!(
        count("console.sign_in", "password"),
        2,
        "one signed in, one refused"
    );
    assert_eq!(count("console.sign_out", ""), 2, "both signed out");
}

/// The console's push lines (issue #16 item 5, "the console shows which") in Chromium: one PC on
/// a stand-in WNS whose own clock never moves, so only a push or a poll the test allows brings
/// it. `push.mjs push`: the device page says push wakes it, a Sync asked there reaches it by push.
/// Then WNS answers 410 Gone: `push.mjs poll` asks another Sync, sees the channel expired on the
/// device page; only then does the test let the PC's poll come due, and the action page says the
/// poll brought it.
async fn console_in_chromium_shows_whether_push_or_the_poll_reached_the_pc(backend: Backend) {
    require_tools();
    let (app, wns) = crate::push::push_app(backend).await;
    let pc = crate::push::LivePc::start(&app, &wns).await;
    pc.sessions(1).await;
    let devices = app
        .store
        .list_devices(&Default::default())
        .await
        .unwrap()
        .items;
    assert_eq!(devices.len(), 1);
    let device = &devices[0];
    let shots = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/screenshots")
        .join(format!("push-{backend:?}").to_lowercase());
    let _ = std::fs::remove_dir_all(&shots);
    std::fs::create_dir_all(&shots).unwrap();

    push_script(&app, &device.name, &shots, "push", None).await;
    wns.answer_next(&[410]);
    push_script(&app, &device.name, &shots, "poll", Some(&pc)).await;

    // What the clicks did, as stored: two syncs, the first woken by push, the second by the poll.
    let mut syncs = app.store.actions_of_device(device.id).await.unwrap();
    syncs.retain(|a| a.kind == ActionKind::Sync);
    syncs.sort_by_key(|a| a.created_at);
    assert_eq!(syncs.len(), 2, "{syncs:?}");
    let wakes = app.store.wakes(&[syncs[0].id, syncs[1].id]).await.unwrap();
    let by = |id| wakes.iter().find(|(a, _)| *a == id).map(|(_, by)| *by);
    assert_eq!(by(syncs[0].id), Some(redeploy_core::push::WokenBy::Push));
    assert_eq!(by(syncs[1].id), Some(redeploy_core::push::WokenBy::Poll));
}

/// Runs `push.mjs` in `mode`; with `pc`, moves the PC's clock past its poll once the script says
/// it saw the channel expired. Its output when it fails.
async fn push_script(
    app: &testkit::app::TestApp,
    device: &str,
    shots: &Path,
    mode: &str,
    pc: Option<&crate::push::LivePc>,
) {
    use tokio::io::AsyncBufReadExt;
    let mut node = tokio::process::Command::new("node")
        .arg("push.mjs")
        .current_dir(browser_dir())
        .env("REDEPLOY_URL", &app.base_url)
        .env("REDEPLOY_TOKEN", &app.admin_token)
        .env("REDEPLOY_DEVICE_NAME", device)
        .env("REDEPLOY_PUSH_MODE", mode)
        .env("REDEPLOY_SCREENSHOTS", shots)
        .env("REDEPLOY_CHROMIUM", CHROMIUM)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs");
    let stderr = node.stderr.take().unwrap();
    let errors = tokio::spawn(async move {
        let mut text = String::new();
        let mut lines = tokio::io::BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            text.push_str(&line);
            text.push('\n');
        }
        text
    });
    let mut out = String::new();
    let mut lines = tokio::io::BufReader::new(node.stdout.take().unwrap()).lines();
    while let Some(line) = lines.next_line().await.unwrap() {
        if line == "step: the channel expired" {
            if let Some(pc) = pc {
                pc.clock.advance(time::Duration::days(2));
            }
        }
        out.push_str(&line);
        out.push('\n');
    }
    let status = node.wait().await.unwrap();
    let errors = errors.await.unwrap();
    assert!(
        status.success(),
        "push.mjs {mode} failed ({status}):\n{out}\n{errors}"
    );
}
