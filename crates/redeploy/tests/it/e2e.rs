//! End to end: emulated Windows PCs enroll into the real server over HTTPS with mutual TLS,
//! check in, and go through Autopilot Reset and its failure modes — on SQLite and PostgreSQL.
//! Time on the device side is driven explicitly (no sleeps); the server uses its real clock.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use device::client::{self, EnrollOptions};
use device::fleet::{self, FleetConfig};
use device::schedule::{Clock, ManualClock};
use device::state::{reset_status, DeviceState, JoinType as PcJoin};
use device::transport::{Identity, Response, Transport};
use device::{reset, DeviceProfile, HttpsTransport};
use redeploy_core::action::{self, ActionSettings};
use redeploy_core::{Action, ActionKind, ActionState, Device, JoinType, Store};
use testkit::app::{spawn_app, spawn_app_with, Backend, TestApp};
use time::OffsetDateTime;

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn pc(id: &str, seed: u64, tweak: impl FnOnce(&mut DeviceProfile)) -> DeviceState {
    let mut profile = DeviceProfile::default();
    tweak(&mut profile);
    profile.build_seeded(id, seed, now())
}

/// Enrolls `state` into `app` and runs its first session (which carries the inventory Gets).
async fn enroll_and_sync(
    app: &TestApp,
    transport: &dyn Transport,
    state: &mut DeviceState,
) -> Device {
    let options = EnrollOptions {
        server: app.base_url.clone(),
        token: app.enrollment_token.clone(),
        issuer: None,
    };
    client::enroll(transport, state, &options, now())
        .await
        .expect("enrollment");
    client::check_in(transport, state, now())
        .await
        .expect("first check-in");
    server_device(&*app.store, state).await
}

async fn server_device(store: &dyn Store, state: &DeviceState) -> Device {
    store
        .device_by_mdm_device_id(&state.dev_id)
        .await
        .unwrap()
        .expect("the server knows the PC by its DevId")
}

async fn request(app: &TestApp, device: &Device, kind: ActionKind) -> Action {
    action::request(
        &*app.store,
        device.id,
        kind,
        "e2e-admin",
        now(),
        &ActionSettings::default(),
    )
    .await
    .expect("action request")
}

async fn action(app: &TestApp, id: redeploy_core::ActionId) -> Action {
    app.store.action(id).await.unwrap().expect("action stored")
}

fn states(action: &Action) -> Vec<ActionState> {
    action.timeline.iter().map(|t| t.state).collect()
}

testkit::on_both_backends!(
    enrollment_and_check_in_fill_the_inventory,
    remote_reset_reaches_done_and_the_pc_keeps_only_the_keep_list,
    winre_disabled_fails_with_the_decoded_reason_and_the_pc_is_untouched,
    hybrid_joined_pc_is_blocked_by_preflight,
    a_lost_reply_after_the_exec_never_causes_a_second_reset,
    an_exec_that_never_reached_the_pc_is_found_out_and_the_pc_resets_once,
    local_reset_allowed_by_the_server_then_performed_on_the_pc,
    a_local_reset_is_observed_at_the_next_check_in_and_a_remote_one_is_not,
    a_fleet_of_packed_idle_pcs_carries_out_a_reset_the_server_queued,
);

async fn enrollment_and_check_in_fill_the_inventory(backend: Backend) {
    let app = spawn_app(backend).await;
    let transport = HttpsTransport::new(&app.ca_pem).unwrap();
    let mut state = pc("pc-inv", 11, |_| {});
    let device = enroll_and_sync(&app, &transport, &mut state).await;

    assert_eq!(device.join_type, JoinType::EntraJoined);
    assert_eq!(
        device.serial.as_deref(),
        Some(state.hardware.serial.as_str())
    );
    assert_eq!(
        device.manufacturer.as_deref(),
        Some(state.hardware.manufacturer.as_str())
    );
    let version = device
        .os_version
        .clone()
        .expect("OS version from DevDetail/SwV");
    assert!(version.starts_with("10.0."), "{version}");
    assert!(device.last_seen.is_some());
    assert_eq!(
        device.dns_computer_name.as_deref(),
        Some(state.computer_name.as_str())
    );

    // The session used the certificate issued at enrollment: the PC's thumbprint is the one the
    // server recorded.
    let thumbprint = &state.mdm_enrollment.as_ref().unwrap().thumbprint;
    let by_cert = app
        .store
        .device_by_cert_thumbprint(&thumbprint.to_lowercase())
        .await
        .unwrap()
        .expect("device found by its certificate thumbprint");
    assert_eq!(by_cert.id, device.id);
}

async fn remote_reset_reaches_done_and_the_pc_keeps_only_the_keep_list(backend: Backend) {
    let app = spawn_app(backend).await;
    let transport = HttpsTransport::new(&app.ca_pem).unwrap();
    let mut state = pc("pc-reset", 21, |p| p.usb_package = true);
    let user = state
        .entra_users
        .first()
        .map(|u| u.upn.clone())
        .expect("an Entra user");
    state.sign_in(&user, now());
    let device = enroll_and_sync(&app, &transport, &mut state).await;
    let before = state.clone();
    assert!(!before.profiles.is_empty() && before.primary_user.is_some());

    let requested = request(&app, &device, ActionKind::AutopilotReset).await;
    assert_eq!(
        requested.state,
        ActionState::Pending,
        "{:?}",
        requested.reason
    );

    // Next check-in: the Exec goes out, the PC accepts it (200) and schedules the reset.
    let report = client::check_in(&transport, &mut state, now())
        .await
        .unwrap();
    assert!(
        report
            .executed
            .iter()
            .any(|(verb, target, code)| verb == "Exec"
                && target.ends_with("doAutomaticRedeployment")
                && *code == 200),
        "{:?}",
        report.executed
    );
    let mid = action(&app, requested.id).await;
    assert!(
        matches!(
            mid.state,
            ActionState::Acknowledged | ActionState::InProgress
        ),
        "an accepted Exec is not 'done': {:?}",
        mid.state
    );

    // The PC resets (goes silent) and comes back with the same enrollment.
    reset::run_to_completion(&mut state);
    assert_eq!(state.autopilot_reset.status, reset_status::COMPLETE);
    assert!(
        !state.desktop_available(),
        "desktop blocked until the first MDM sync"
    );
    crate::sync_until_quiet(&transport, &mut state, now()).await;
    assert!(
        state.desktop_available(),
        "the MDM sync released the desktop"
    );

    let done = action(&app, requested.id).await;
    assert_eq!(
        done.state,
        ActionState::Done,
        "timeline: {:?}",
        done.timeline
    );
    let seen = states(&done);
    for s in [ActionState::Pending, ActionState::Sent, ActionState::Done] {
        assert!(seen.contains(&s), "{s:?} missing from {seen:?}");
    }
    let after = server_device(&*app.store, &state).await;
    assert_eq!(
        after.id, device.id,
        "same device after the reset, not a new one"
    );
    assert_eq!(
        after.primary_user, None,
        "a remote reset clears the primary user"
    );

    // What the PC kept and lost (docs/protocol.md §1.2).
    assert!(state.profiles.is_empty(), "profiles removed");
    assert_eq!(state.primary_user, None);
    for wifi in &before.wifi_profiles {
        assert!(state.wifi_profiles.contains(wifi), "Wi-Fi {wifi:?} kept");
    }
    assert_eq!(state.entra_join, before.entra_join, "Entra join kept");
    let (b, a) = (
        before.mdm_enrollment.as_ref().unwrap(),
        state.mdm_enrollment.as_ref().unwrap(),
    );
    assert_eq!(a.thumbprint, b.thumbprint, "MDM enrollment kept");
    assert_eq!(state.region.current, before.region.original);
    assert_eq!(state.language.current, before.language.original);
    assert_eq!(state.keyboard.current, before.keyboard.original);
    assert!(state.provisioning_packages.len() >= before.provisioning_packages.len());
}

async fn winre_disabled_fails_with_the_decoded_reason_and_the_pc_is_untouched(backend: Backend) {
    let app = spawn_app(backend).await;
    let transport = HttpsTransport::new(&app.ca_pem).unwrap();
    // A PC that reports WinRE off is refused up front, before any Exec.
    let mut off = pc("pc-winre-off", 32, |p| p.winre_enabled = false);
    let off_device = enroll_and_sync(&app, &transport, &mut off).await;
    let refused = request(&app, &off_device, ActionKind::AutopilotReset).await;
    assert_eq!(refused.state, ActionState::Blocked);
    assert!(
        refused
            .reason
            .as_deref()
            .unwrap_or_default()
            .contains("WinRE"),
        "{:?}",
        refused.reason
    );

    // This one reported WinRE fine at enrollment; `reagentc /disable` ran on it since, so the
    // Exec goes out and fails there.
    let mut state = pc("pc-winre", 31, |_| {});
    let device = enroll_and_sync(&app, &transport, &mut state).await;
    reset::reagentc(&mut state, false, now()).expect("reagentc /disable");
    let profiles_before = state.profiles.clone();

    let requested = request(&app, &device, ActionKind::AutopilotReset).await;
    assert_eq!(requested.state, ActionState::Pending);
    crate::sync_until_quiet(&transport, &mut state, now()).await;

    let failed = action(&app, requested.id).await;
    assert_eq!(
        failed.state,
        ActionState::Failed,
        "timeline: {:?}",
        failed.timeline
    );
    assert_eq!(failed.last_error, Some(0x8007_0032));
    let reason = failed.reason.clone().unwrap_or_default();
    assert!(reason.contains("WinRE"), "{reason}");
    assert!(reason.contains("reagentc"), "the fix is given: {reason}");
    assert_eq!(state.autopilot_reset.status, reset_status::FAILED_AT_EXEC);
    assert_eq!(state.profiles, profiles_before, "nothing on the PC changed");

    // A later attempt is blocked by preflight with the earlier WinRE failure as the reason.
    let again = request(&app, &device, ActionKind::AutopilotReset).await;
    assert_eq!(again.state, ActionState::Blocked);

    // Fixed on the PC (`reagentc /enable`): at its next check-in it reports WinRE enabled and
    // is eligible again; the retried reset runs once and is done.
    reset::reagentc(&mut state, true, now()).expect("reagentc /enable");
    crate::sync_until_quiet(&transport, &mut state, now()).await;
    let retried = request(&app, &device, ActionKind::AutopilotReset).await;
    assert_eq!(retried.state, ActionState::Pending, "{:?}", retried.reason);
    client::check_in(&transport, &mut state, now())
        .await
        .expect("check-in");
    assert_eq!(state.autopilot_reset.status, reset_status::SCHEDULED);
    reset::run_to_completion(&mut state);
    crate::sync_until_quiet(&transport, &mut state, now()).await;
    let done = action(&app, retried.id).await;
    assert_eq!(
        done.state,
        ActionState::Done,
        "timeline: {:?}",
        done.timeline
    );
    assert_eq!(state.autopilot_reset.status, reset_status::COMPLETE);
}

async fn hybrid_joined_pc_is_blocked_by_preflight(backend: Backend) {
    let app = spawn_app(backend).await;
    let transport = HttpsTransport::new(&app.ca_pem).unwrap();
    let mut state = pc("pc-hybrid", 41, |p| p.join = PcJoin::Hybrid);
    let device = enroll_and_sync(&app, &transport, &mut state).await;
    assert_eq!(
        device.join_type,
        JoinType::HybridJoined,
        "DomainName told the server"
    );

    let blocked = request(&app, &device, ActionKind::AutopilotReset).await;
    assert_eq!(blocked.state, ActionState::Blocked);
    let reason = blocked.reason.unwrap_or_default().to_lowercase();
    assert!(reason.contains("hybrid"), "{reason}");
    // Nothing reaches the PC.
    let report = client::check_in(&transport, &mut state, now())
        .await
        .unwrap();
    assert!(
        report.executed.iter().all(|(verb, ..)| verb != "Exec"),
        "{:?}",
        report.executed
    );
}

/// A transport that fails the PC's `n`-th POST (counted from creation), as when Wi-Fi drops
/// mid-session: either the request never leaves the PC, or it reaches the server and the reply
/// is lost on the way back.
struct FlakyLink {
    inner: HttpsTransport,
    posts: AtomicUsize,
    fail_post: usize,
    request_reaches_server: bool,
}

impl FlakyLink {
    fn new(inner: &HttpsTransport, fail_post: usize, request_reaches_server: bool) -> Self {
        FlakyLink {
            inner: inner.clone(),
            posts: AtomicUsize::new(0),
            fail_post,
            request_reaches_server,
        }
    }
}

#[async_trait]
impl Transport for FlakyLink {
    async fn post(
        &self,
        url: &str,
        content_type: &str,
        body: Vec<u8>,
        identity: Option<&Identity>,
    ) -> device::Result<Response> {
        let n = self.posts.fetch_add(1, Ordering::SeqCst) + 1;
        let lost = || {
            Err(device::DeviceError::Connect(
                "connection reset (test)".into(),
            ))
        };
        if n == self.fail_post && !self.request_reaches_server {
            return lost();
        }
        let response = self.inner.post(url, content_type, body, identity).await?;
        if n == self.fail_post {
            return lost();
        }
        Ok(response)
    }

    async fn get(&self, url: &str) -> device::Result<Response> {
        self.inner.get(url).await
    }
}

/// How many resets the PC actually started (its own event log).
fn resets_started(state: &DeviceState) -> usize {
    state
        .events
        .iter()
        .filter(|e| e.detail.contains("doAutomaticRedeployment") && e.detail.contains("200"))
        .count()
}

async fn a_lost_reply_after_the_exec_never_causes_a_second_reset(backend: Backend) {
    let app = spawn_app(backend).await;
    let transport = HttpsTransport::new(&app.ca_pem).unwrap();
    let mut state = pc("pc-lost", 51, |_| {});
    let device = enroll_and_sync(&app, &transport, &mut state).await;
    let requested = request(&app, &device, ActionKind::AutopilotReset).await;

    // POST 1 = package #1, answered with the baseline reads; POST 2 = their answers, answered
    // with the Exec; the PC accepts it and schedules the reset; POST 3 (its statuses) never
    // leaves the PC. The server never hears the Exec's status.
    let flaky = FlakyLink::new(&transport, 3, false);
    let _ = client::check_in(&flaky, &mut state, now()).await;
    assert_eq!(resets_started(&state), 1, "events: {:#?}", state.events);
    let sent = action(&app, requested.id).await;
    assert_eq!(sent.state, ActionState::Sent, "no status came back");

    // The PC resets and comes back; the server asks before it acts: no second Exec.
    reset::run_to_completion(&mut state);
    crate::sync_until_quiet(&transport, &mut state, now()).await;
    crate::sync_until_quiet(&transport, &mut state, now()).await;
    assert_eq!(resets_started(&state), 1, "events: {:#?}", state.events);
    let settled = action(&app, requested.id).await;
    assert_eq!(
        settled.state,
        ActionState::Done,
        "timeline: {:?}",
        settled.timeline
    );
    let execs = app
        .store
        .commands_of_action(requested.id)
        .await
        .unwrap()
        .iter()
        .filter(|c| c.uri.ends_with("doAutomaticRedeployment"))
        .count();
    assert_eq!(execs, 1, "the Exec was queued once and never re-queued");
}

async fn an_exec_that_never_reached_the_pc_is_found_out_and_the_pc_resets_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let transport = HttpsTransport::new(&app.ca_pem).unwrap();
    let mut state = pc("pc-never", 71, |_| {});
    let device = enroll_and_sync(&app, &transport, &mut state).await;
    let requested = request(&app, &device, ActionKind::AutopilotReset).await;

    // The reply carrying the Exec (to POST 2, the baseline's answers) is lost: the server counts
    // it as sent, the PC never saw it.
    let flaky = FlakyLink::new(&transport, 2, true);
    let _ = client::check_in(&flaky, &mut state, now()).await;
    assert_eq!(resets_started(&state), 0);

    // Later sessions: the server learns from the Status node that no reset ran, and the PC ends
    // up reset exactly once.
    for _ in 0..4 {
        let _ = client::check_in(&transport, &mut state, now())
            .await
            .unwrap();
        if state.pending.is_some() {
            reset::run_to_completion(&mut state);
        }
    }
    crate::sync_until_quiet(&transport, &mut state, now()).await;
    assert_eq!(resets_started(&state), 1, "events: {:#?}", state.events);
    let settled = action(&app, requested.id).await;
    assert_eq!(
        settled.state,
        ActionState::Done,
        "timeline: {:?}",
        settled.timeline
    );
}
async fn local_reset_allowed_by_the_server_then_performed_on_the_pc(backend: Backend) {
    let app = spawn_app(backend).await;
    let transport = HttpsTransport::new(&app.ca_pem).unwrap();
    let mut state = pc("pc-local", 61, |_| {});
    let user = state
        .entra_users
        .first()
        .map(|u| u.upn.clone())
        .expect("an Entra user");
    state.sign_in(&user, now());
    let device = enroll_and_sync(&app, &transport, &mut state).await;
    assert_eq!(
        state.local_reset_policy(),
        1,
        "local reset is off by default"
    );
    let (admin, password) = state
        .local_users
        .iter()
        .find(|u| u.is_admin)
        .map(|u| (u.name.clone(), u.password.clone()))
        .expect("a local administrator");
    assert!(reset::local_reset(&mut state.clone(), &admin, &password, now()).is_err());

    let allow = request(&app, &device, ActionKind::SetLocalResetPolicy(true)).await;
    crate::sync_until_quiet(&transport, &mut state, now()).await;
    assert_eq!(
        state.local_reset_policy(),
        0,
        "the server delivered 0 (enabled)"
    );
    let done = action(&app, allow.id).await;
    assert_eq!(
        done.state,
        ActionState::Done,
        "verified by reading it back: {:?}",
        done.timeline
    );

    let primary = state.primary_user.clone();
    reset::local_reset(&mut state, &admin, &password, now())
        .expect("CTRL+WIN+R with admin credentials");
    reset::run_to_completion(&mut state);
    crate::sync_until_quiet(&transport, &mut state, now()).await;
    assert!(state.profiles.is_empty());
    assert_eq!(
        state.primary_user, primary,
        "a local reset leaves the primary user"
    );
    let after = server_device(&*app.store, &state).await;
    assert_eq!(after.id, device.id);
}

/// The PC's `FirstSyncStatus/IsSyncDone`, as it would answer a Get.
fn is_sync_done(state: &DeviceState) -> bool {
    state
        .mdm_enrollment
        .as_ref()
        .expect("enrolled")
        .first_sync
        .is_sync_done
}

/// Issue #13 item 6: a local Autopilot Reset (CTRL+WIN+R) shows at the PC's next check-in as
/// IsSyncDone false after the server had set it true; the server records it as a `done`
/// Autopilot Reset requested by the device, with the audit event `device.local_reset_observed`,
/// and keeps the primary user. A remote reset of ours, later, is never taken for a local one.
async fn a_local_reset_is_observed_at_the_next_check_in_and_a_remote_one_is_not(backend: Backend) {
    const OBSERVER: &str = "device (local reset)";
    let app = spawn_app_with(backend, |s| s.reset_watch = std::time::Duration::ZERO).await;
    let transport = HttpsTransport::new(&app.ca_pem).unwrap();
    let api = api::Client::new(&app.base_url, &app.admin_token, Some(&app.ca_pem)).unwrap();
    let mut state = pc("pc-watched", 71, |_| {});
    let user = state
        .entra_users
        .first()
        .map(|u| u.upn.clone())
        .expect("an Entra user");
    state.sign_in(&user, now());
    let device = enroll_and_sync(&app, &transport, &mut state).await;
    assert!(
        is_sync_done(&state),
        "the first check-in read false (a fresh enrollment) and set it true"
    );
    let id = device.id.to_string();
    let observed = |detail: &api::DeviceDetail| -> Vec<api::Action> {
        detail
            .actions
            .iter()
            .filter(|a| a.requested_by == OBSERVER)
            .cloned()
            .collect()
    };
    let audited = || async {
        let query = api::AuditQuery {
            device: Some(id.clone()),
            ..Default::default()
        };
        let page = api.audit(&query).await.expect("audit");
        page.items
            .into_iter()
            .filter(|e| e.action == "device.local_reset_observed")
            .collect::<Vec<_>>()
    };

    // The server allows local reset; quiet check-ins observe nothing.
    request(&app, &device, ActionKind::SetLocalResetPolicy(true)).await;
    crate::sync_until_quiet(&transport, &mut state, now()).await;
    crate::sync_until_quiet(&transport, &mut state, now()).await;
    assert_eq!(state.local_reset_policy(), 0);
    assert!(observed(&api.device(&id).await.unwrap()).is_empty());
    let primary = server_device(&*app.store, &state).await.primary_user;
    assert_eq!(primary.as_deref(), Some(user.as_str()));

    // A local administrator resets the PC at its lock screen; it reboots and completes.
    let (admin, password) = state
        .local_users
        .iter()
        .find(|u| u.is_admin)
        .map(|u| (u.name.clone(), u.password.clone()))
        .expect("a local administrator");
    reset::local_reset(&mut state, &admin, &password, now())
        .expect("CTRL+WIN+R with admin credentials");
    reset::run_to_completion(&mut state);
    assert_eq!(state.resets.local_autopilot, 1);
    assert!(
        !is_sync_done(&state),
        "the reset sent it through its first sync"
    );

    // The next check-in: observed, recorded, re-armed.
    crate::sync_until_quiet(&transport, &mut state, now()).await;
    let detail = api.device(&id).await.unwrap();
    let seen = observed(&detail);
    assert_eq!(seen.len(), 1, "{:#?}", detail.actions);
    let local = &seen[0];
    assert_eq!(
        (local.kind, local.state.as_str()),
        (api::ActionKind::AutopilotReset, "done")
    );
    assert_eq!(local.timeline.len(), 1, "{:?}", local.timeline);
    let note = local.timeline[0].note.clone().unwrap_or_default();
    assert!(
        note.contains("IsSyncDone went from true to false"),
        "{note}"
    );
    assert_eq!(api.action(&local.id).await.unwrap().state, "done");
    let events = audited().await;
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0].actor, format!("device:{id}"));
    assert_eq!(events[0].targets, std::slice::from_ref(&id));
    assert!(
        events[0].details.contains(&local.id),
        "{}",
        events[0].details
    );
    assert_eq!(
        server_device(&*app.store, &state).await.primary_user,
        primary,
        "a local reset keeps the primary user"
    );
    assert!(is_sync_done(&state), "the server set it true again");
    // Later check-ins see it true: nothing more.
    crate::sync_until_quiet(&transport, &mut state, now()).await;
    assert_eq!(observed(&api.device(&id).await.unwrap()).len(), 1);

    // A remote reset of ours, later, settles as ours and is not reported as a local one.
    let remote = request(&app, &device, ActionKind::AutopilotReset).await;
    assert_eq!(remote.state, ActionState::Pending, "{:?}", remote.reason);
    client::check_in(&transport, &mut state, now())
        .await
        .unwrap();
    reset::run_to_completion(&mut state);
    assert_eq!(state.resets.remote_autopilot, 1);
    crate::sync_until_quiet(&transport, &mut state, now()).await;
    crate::sync_until_quiet(&transport, &mut state, now()).await;
    let done = action(&app, remote.id).await;
    assert_eq!(done.state, ActionState::Done, "{:?}", done.timeline);
    assert_eq!(done.requested_by, "e2e-admin");
    assert_eq!(observed(&api.device(&id).await.unwrap()).len(), 1);
    assert_eq!(audited().await.len(), 1);
    assert_eq!(
        server_device(&*app.store, &state).await.primary_user,
        None,
        "a remote reset clears it"
    );
    assert!(is_sync_done(&state), "re-armed after our reset settled");
}

/// Behind a TLS-terminating proxy the device's certificate arrives in a header; the server takes
/// it only when configured to, and only from the proxy's address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxy_may_pass_the_client_certificate_in_a_header() {
    let app = testkit::app::spawn_app_with(Backend::Sqlite, |s| {
        s.client_cert_header = Some("X-Client-Cert".into());
        s.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    let transport = HttpsTransport::new(&app.ca_pem).unwrap();
    let mut state = pc("pc-proxy", 81, |_| {});
    enroll_and_sync(&app, &transport, &mut state).await;

    let enrollment = state.mdm_enrollment.clone().unwrap();
    let body = syncml::write(&client::package_one(
        &state,
        &enrollment.server_url,
        99,
        now(),
    ));
    // nginx's $ssl_client_escaped_cert: the PEM, URL-encoded.
    let escaped = percent_encoding::utf8_percent_encode(
        &enrollment.client_cert_pem,
        percent_encoding::NON_ALPHANUMERIC,
    )
    .to_string();
    let client = app.client(); // trusts the CA, presents no client certificate
    let send = |with_header: bool| {
        let mut request = client
            .post(app.url("/ManagementServer/MDM.svc"))
            .header("Content-Type", "application/vnd.syncml.dm+xml")
            .body(body.clone());
        if with_header {
            request = request.header("X-Client-Cert", escaped.clone());
        }
        request.send()
    };
    assert_eq!(
        send(false).await.unwrap().status(),
        401,
        "no certificate at all"
    );
    let response = send(true).await.unwrap();
    assert_eq!(response.status(), 200);
    let reply = syncml::parse(&response.bytes().await.unwrap()).expect("a SyncML reply");
    assert_eq!(reply.hdr.session_id, "99");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_setting_a_certificate_header_is_ignored() {
    let app = spawn_app(Backend::Sqlite).await;
    let transport = HttpsTransport::new(&app.ca_pem).unwrap();
    let mut state = pc("pc-noproxy", 82, |_| {});
    enroll_and_sync(&app, &transport, &mut state).await;
    let enrollment = state.mdm_enrollment.clone().unwrap();
    let body = syncml::write(&client::package_one(
        &state,
        &enrollment.server_url,
        7,
        now(),
    ));
    let response = app
        .client()
        .post(app.url("/ManagementServer/MDM.svc"))
        .header("Content-Type", "application/vnd.syncml.dm+xml")
        .header(
            "X-Client-Cert",
            enrollment.client_cert_pem.replace('\n', "%0A"),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

/// Moves the fleet's device clock a minute at a time, letting the PCs work in between, until
/// `reached` holds (at most a simulated week, and two minutes of real time).
async fn drive_fleet_until<F, Fut>(clock: &ManualClock, what: &str, mut reached: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    for _ in 0..7 * 24 * 60 {
        if reached().await {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{what}: not reached");
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        clock.advance(time::Duration::minutes(1));
    }
    panic!("{what}: not reached within a simulated week");
}

/// A fleet keeps its idle PCs packed between steps (`device::idle`), and at most two of them
/// unpacked at once here. After the five PCs enrolled, checked in and went idle, a reset the
/// server queues for one of them is picked up at its next poll and carried through to `done` —
/// the PC unpacked for each step and packed again, its reset pending across the packings — and
/// the other PCs are left alone.
async fn a_fleet_of_packed_idle_pcs_carries_out_a_reset_the_server_queued(backend: Backend) {
    let app = spawn_app(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(now()));
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let mut config = FleetConfig::new(&app.base_url, &app.enrollment_token, 5, dir.path());
    config.max_in_flight = 1;
    config.shutdown = Some(shutdown);
    let pcs: Vec<DeviceState> = (0..5)
        .map(|i| fleet::build_device(&config, i, now()))
        .collect();
    let run = {
        let (config, clock) = (config.clone(), clock.clone() as Arc<dyn Clock>);
        let transport = Arc::new(HttpsTransport::new(&app.ca_pem).unwrap());
        tokio::spawn(async move { fleet::run(&config, transport, clock, None).await })
    };

    let (store, built) = (&*app.store, &pcs);
    drive_fleet_until(
        &clock,
        "every PC enrolled and checked in",
        move || async move {
            for pc in built {
                match store.device_by_mdm_device_id(&pc.dev_id).await.unwrap() {
                    Some(d) if d.os_version.is_some() && d.winre_enabled == Some(true) => {}
                    _ => return false,
                }
            }
            true
        },
    )
    .await;

    let target = server_device(store, &pcs[2]).await;
    let requested = request(&app, &target, ActionKind::AutopilotReset).await;
    assert_eq!(
        requested.state,
        ActionState::Pending,
        "{:?}",
        requested.reason
    );
    let (app_ref, id) = (&app, requested.id);
    drive_fleet_until(&clock, "the reset done", move || async move {
        action(app_ref, id).await.state == ActionState::Done
    })
    .await;
    stop.send(true).unwrap();
    let summary = run.await.unwrap().unwrap();
    assert_eq!((summary.enrolled, summary.enrollments), (5, 5), "{summary}");
    assert_eq!(summary.pc_resets.remote_autopilot, 1, "{summary}");

    let done = action(&app, requested.id).await;
    let seen = states(&done);
    for s in [
        ActionState::Sent,
        ActionState::Acknowledged,
        ActionState::Done,
    ] {
        assert!(seen.contains(&s), "{s:?} missing from {seen:?}");
    }
    for (i, pc) in pcs.iter().enumerate() {
        let saved = device::persist::load_id(dir.path(), &pc.id)
            .unwrap()
            .expect("saved at the end of the run");
        assert!(saved.is_enrolled(), "{}", pc.id);
        let resets = if i == 2 { 1 } else { 0 };
        assert_eq!(saved.resets.remote_autopilot, resets, "{}", pc.id);
    }
}
