//! Webhooks end to end: emulated PCs finish actions, `webhook_delivery::tick` posts signed deliveries
//! to a real HTTP receiver on 127.0.0.1:0, failures are retried on a manual clock with backoff
//! and given up after ten attempts, and the `/api/v1/webhooks` endpoints.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use api::{ActionKind, AuditQuery, Client, NewApiToken, NewWebhook, WebhookPayload};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::routing::post;
use axum::Router;
use device::client::{self, EnrollOptions};
use device::state::DeviceState;
use device::{DeviceProfile, HttpsTransport};
use http::{HeaderMap, StatusCode};
use redeploy_core::ManualClock;
use server::webhook_delivery::{self, WebhookReport};
use testkit::app::{spawn_app, Backend, TestApp};
use time::{Duration, OffsetDateTime};

use testkit::on_both_backends;

on_both_backends!(
    a_finished_reset_is_posted_once_with_a_valid_signature,
    a_failing_receiver_is_retried_with_backoff_and_given_up_after_ten_attempts,
    webhook_endpoints_create_list_ping_and_delete,
    a_silent_reset_is_reported_stuck_once_after_two_hours_and_not_again_at_expiry,
    a_disabled_webhook_holds_its_deliveries_and_does_not_replay_on_enable,
);

/// One request the receiver got.
#[derive(Clone, Debug)]
pub(crate) struct Hit {
    pub(crate) path: String,
    pub(crate) headers: HeaderMap,
    pub(crate) body: String,
}

impl Hit {
    pub(crate) fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }

    /// Checks the signature the way a receiver would, with ring directly: HMAC-SHA256 over
    /// `<timestamp>.<body>`, hex after `sha256=`.
    fn signed_with(&self, secret: &str) -> bool {
        let signature = self.header("x-redeploy-signature");
        let Some(mac) = signature
            .strip_prefix("sha256=")
            .and_then(|h| hex::decode(h).ok())
        else {
            return false;
        };
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
        let text = format!("{}.{}", self.header("x-redeploy-timestamp"), self.body);
        ring::hmac::verify(&key, text.as_bytes(), &mac).is_ok()
    }

    fn payload(&self) -> WebhookPayload {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// A real HTTP receiver: `/ok` answers `status` (settable), `/broken` always 500.
#[derive(Clone)]
pub(crate) struct Receiver {
    addr: SocketAddr,
    hits: Arc<Mutex<Vec<Hit>>>,
    status: Arc<AtomicU16>,
}

impl Receiver {
    pub(crate) async fn start() -> Self {
        let receiver = Receiver {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            hits: Arc::default(),
            status: Arc::new(AtomicU16::new(200)),
        };
        let app = Router::new()
            .route("/{path}", post(receive))
            .with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind(receiver.addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { addr, ..receiver }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}/{path}", self.addr)
    }

    pub(crate) fn hits(&self, path: &str) -> Vec<Hit> {
        self.hits
            .lock()
            .unwrap()
            .iter()
            .filter(|h| h.path == path)
            .cloned()
            .collect()
    }
}

async fn receive(
    State(r): State<Receiver>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    r.hits.lock().unwrap().push(Hit {
        path: path.clone(),
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    if path == "broken" {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    StatusCode::from_u16(r.status.load(Ordering::SeqCst)).unwrap()
}

pub(crate) fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

pub(crate) fn admin(app: &TestApp) -> Client {
    Client::new(&app.base_url, &app.admin_token, Some(&app.ca_pem)).unwrap()
}

pub(crate) async fn enrolled_pc(
    app: &TestApp,
    transport: &HttpsTransport,
    name: &str,
) -> (DeviceState, String) {
    enrolled_pc_with(app, transport, name, DeviceProfile::default()).await
}

/// [`enrolled_pc`] with a given profile.
pub(crate) async fn enrolled_pc_with(
    app: &TestApp,
    transport: &HttpsTransport,
    name: &str,
    profile: DeviceProfile,
) -> (DeviceState, String) {
    let mut pc = profile.build_seeded(name, 7, now());
    let options = EnrollOptions {
        server: app.base_url.clone(),
        token: app.enrollment_token.clone(),
        issuer: None,
    };
    client::enroll(transport, &mut pc, &options, now())
        .await
        .expect("enrollment");
    client::check_in(transport, &mut pc, now())
        .await
        .expect("first check-in");
    let id = app
        .store
        .device_by_mdm_device_id(&pc.dev_id)
        .await
        .unwrap()
        .expect("device known")
        .id
        .to_string();
    (pc, id)
}

/// Checks in (letting the PC carry out what it accepted) until the action is terminal (at most `rounds` sessions); answers its state.
pub(crate) async fn check_in_until_settled(
    client: &Client,
    transport: &HttpsTransport,
    pc: &mut DeviceState,
    action: &str,
    rounds: usize,
) -> String {
    for _ in 0..rounds {
        let state = client.action(action).await.unwrap().state;
        if ["done", "failed", "expired", "canceled"].contains(&state.as_str()) {
            return state;
        }
        client::check_in(transport, pc, now()).await.unwrap();
        // The PC performs what it accepted (a reset goes silent, then comes back).
        device::reset::run_to_completion(pc);
    }
    client.action(action).await.unwrap().state
}

fn report(enqueued: u32, delivered: u32, retrying: u32, given_up: u32) -> WebhookReport {
    WebhookReport {
        enqueued,
        delivered,
        retrying,
        given_up,
    }
}

async fn a_finished_reset_is_posted_once_with_a_valid_signature(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = admin(&app);
    let receiver = Receiver::start().await;
    let created = client
        .create_webhook(&NewWebhook {
            url: receiver.url("ok"),
            secret: Some("whsec-given".into()),
            ..NewWebhook::default()
        })
        .await
        .unwrap();
    assert_eq!(created.secret, None, "a given secret is not echoed");
    assert_eq!(created.webhook.events, ["done", "failed", "stuck"]);

    let transport = HttpsTransport::new(&app.ca_pem).unwrap();
    let (mut pc, device_id) = enrolled_pc(&app, &transport, "pc-hook").await;
    let state = &app.server().state;
    assert_eq!(
        webhook_delivery::tick(state).await.unwrap(),
        WebhookReport::default(),
        "nothing ended yet"
    );
    let reset = client
        .request_action(&device_id, ActionKind::AutopilotReset)
        .await
        .unwrap();
    assert_eq!(reset.state, "pending");
    let end = check_in_until_settled(&client, &transport, &mut pc, &reset.id, 8).await;
    assert_eq!(end, "done", "the emulated PC finishes its reset");

    // Two ticks at once (as two server processes on one database would run them; one of them is
    // the server's whole worker tick, which delivers webhooks last): sent once.
    let (a, b) = tokio::join!(webhook_delivery::tick(state), app.tick());
    let a = a.unwrap();
    assert_eq!(
        a.delivered as usize + b.webhooks_delivered,
        1,
        "{a:?} {b:?}"
    );
    let hits = receiver.hits("ok");
    assert_eq!(hits.len(), 1);
    let hit = &hits[0];
    assert_eq!(hit.header("content-type"), "application/json");
    assert_eq!(hit.header("x-redeploy-event"), "done");
    let timestamp: i64 = hit.header("x-redeploy-timestamp").parse().unwrap();
    assert!(
        (timestamp - now().unix_timestamp()).abs() < 300,
        "unix seconds"
    );
    assert!(hit.signed_with("whsec-given"), "the signature verifies");
    assert!(
        !hit.signed_with("whsec-wrong"),
        "a wrong secret does not verify"
    );
    assert!(webhook_delivery::verify_signature(
        "whsec-given",
        &hit.header("x-redeploy-timestamp"),
        &hit.body,
        &hit.header("x-redeploy-signature")
    ));
    let payload = hit.payload();
    assert_eq!(payload.event, "done");
    assert_eq!(payload.delivery_id, hit.header("x-redeploy-delivery"));
    let action = payload.action.expect("the action");
    assert_eq!(
        action,
        client.action(&reset.id).await.unwrap(),
        "same shape as the REST action"
    );
    let device = payload.device.expect("the device");
    assert_eq!(device.id, device_id);
    assert_eq!(
        device.name,
        client.device(&device_id).await.unwrap().device.name
    );
    let body: serde_json::Value = serde_json::from_str(&hit.body).unwrap();
    for key in ["event", "delivery_id", "occurred_at", "action", "device"] {
        assert!(body.get(key).is_some(), "{key} missing from {body}");
    }

    // Further ticks (and a second server process's tick, same store) never send it again.
    assert_eq!(
        webhook_delivery::tick(state).await.unwrap(),
        WebhookReport::default()
    );
    assert_eq!(
        webhook_delivery::tick(state).await.unwrap(),
        WebhookReport::default()
    );
    assert_eq!(receiver.hits("ok").len(), 1);
    let deliveries = client
        .webhook_deliveries(&created.webhook.id)
        .await
        .unwrap()
        .items;
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].status, "delivered");
    assert_eq!(deliveries[0].attempts, 1);
    assert_eq!(deliveries[0].last_status, Some(200));
    assert_eq!(deliveries[0].action_id.as_deref(), Some(reset.id.as_str()));
}

async fn a_failing_receiver_is_retried_with_backoff_and_given_up_after_ten_attempts(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let client = admin(&app);
    let receiver = Receiver::start().await;
    receiver.status.store(503, Ordering::SeqCst);
    for (name, path) in [("recovers", "ok"), ("broken", "broken")] {
        client
            .create_webhook(&NewWebhook {
                url: receiver.url(path),
                name: Some(name.into()),
                secret: Some(format!("secret-{name}")),
                events: Some(vec!["done".into()]),
                ..NewWebhook::default()
            })
            .await
            .unwrap();
    }
    let transport = HttpsTransport::new(&app.ca_pem).unwrap();
    let (mut pc, device_id) = enrolled_pc(&app, &transport, "pc-retry").await;
    let sync = client
        .request_action(&device_id, ActionKind::Sync)
        .await
        .unwrap();
    let end = check_in_until_settled(&client, &transport, &mut pc, &sync.id, 3).await;
    assert_eq!(end, "done");

    // The same server state, on a clock the test moves.
    let clock = Arc::new(ManualClock::new(now() + Duration::seconds(1)));
    let mut state = app.server().state.clone();
    state.clock = clock.clone();

    assert_eq!(
        webhook_delivery::tick(&state).await.unwrap(),
        report(2, 0, 2, 0)
    );
    assert_eq!(receiver.hits("ok").len(), 1);
    assert_eq!(
        webhook_delivery::tick(&state).await.unwrap(),
        WebhookReport::default()
    );
    clock.advance(Duration::seconds(59));
    assert_eq!(
        webhook_delivery::tick(&state).await.unwrap(),
        WebhookReport::default(),
        "not retried before a minute passed"
    );
    assert_eq!(receiver.hits("ok").len(), 1);
    assert_eq!(receiver.hits("broken").len(), 1);
    clock.advance(Duration::seconds(1));
    assert_eq!(
        webhook_delivery::tick(&state).await.unwrap(),
        report(0, 0, 2, 0)
    );
    assert_eq!(receiver.hits("ok").len(), 2);
    clock.advance(Duration::seconds(119));
    assert_eq!(
        webhook_delivery::tick(&state).await.unwrap(),
        WebhookReport::default(),
        "then two minutes"
    );

    receiver.status.store(204, Ordering::SeqCst);
    clock.advance(Duration::seconds(1));
    assert_eq!(
        webhook_delivery::tick(&state).await.unwrap(),
        report(0, 1, 1, 0)
    );
    let ok = receiver.hits("ok");
    assert_eq!(ok.len(), 3);
    assert_eq!(ok[0].body, ok[2].body, "every retry sends the same body");
    assert_eq!(
        ok[0].header("x-redeploy-delivery"),
        ok[2].header("x-redeploy-delivery")
    );
    assert!(ok.iter().all(|h| h.signed_with("secret-recovers")));
    assert!(!ok[2].signed_with("secret-broken"));

    // The broken receiver: attempts 4..=10 at the backoff times, then given up (audited).
    let mut given_up = 0;
    for _ in 0..20 {
        clock.advance(Duration::hours(1));
        given_up += webhook_delivery::tick(&state).await.unwrap().given_up;
    }
    assert_eq!(given_up, 1);
    assert_eq!(receiver.hits("broken").len(), 10, "ten attempts in all");
    assert_eq!(
        receiver.hits("ok").len(),
        3,
        "a delivered event is never sent again"
    );
    let hooks = client.webhooks().await.unwrap().items;
    let broken = hooks.iter().find(|h| h.name == "broken").unwrap();
    let d = &client.webhook_deliveries(&broken.id).await.unwrap().items[0];
    assert_eq!(
        (d.status.as_str(), d.attempts, d.last_status),
        ("given_up", 10, Some(500))
    );
    assert!(d.next_attempt_at.is_none());
    let audit = client
        .audit(&AuditQuery {
            limit: Some(1000),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    let event = audit
        .items
        .iter()
        .find(|e| e.action == "webhook.given_up")
        .expect("given up is audited");
    assert_eq!(event.targets, [device_id]);
    assert_eq!(event.outcome, "failed");
}

async fn webhook_endpoints_create_list_ping_and_delete(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = admin(&app);
    let receiver = Receiver::start().await;
    let created = client
        .create_webhook(&NewWebhook {
            url: receiver.url("ok"),
            name: Some("ops".into()),
            events: Some(vec!["stuck".into(), "failed".into()]),
            ..NewWebhook::default()
        })
        .await
        .unwrap();
    let secret = created
        .secret
        .clone()
        .expect("a generated secret is returned once");
    assert_eq!(created.webhook.events, ["failed", "stuck"]);
    let listed = client.webhooks().await.unwrap().items;
    assert_eq!(listed, std::slice::from_ref(&created.webhook));
    let raw = app
        .client()
        .get(app.url("/api/v1/webhooks"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!raw.contains(&secret), "the list never shows secrets");

    // Bad input → 400 problem documents; a taken name → 409.
    for bad in [
        NewWebhook {
            url: "ftp://example.org/x".into(),
            ..NewWebhook::default()
        },
        NewWebhook {
            url: "not a url".into(),
            ..NewWebhook::default()
        },
        NewWebhook {
            url: receiver.url("ok"),
            events: Some(vec!["finished".into()]),
            ..NewWebhook::default()
        },
        NewWebhook {
            url: receiver.url("ok"),
            events: Some(vec!["ping".into()]),
            ..NewWebhook::default()
        },
    ] {
        let err = client.create_webhook(&bad).await.unwrap_err();
        assert_eq!(
            err.status().map(|s| s.as_u16()),
            Some(400),
            "{bad:?}: {err}"
        );
    }
    let err = client
        .create_webhook(&NewWebhook {
            url: receiver.url("ok"),
            name: Some("ops".into()),
            ..NewWebhook::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.status().map(|s| s.as_u16()), Some(409), "{err}");

    // Ping: sent now, signed with the generated secret.
    let ping = client.test_webhook(&created.webhook.id).await.unwrap();
    assert_eq!(
        (ping.event.as_str(), ping.status.as_str()),
        ("ping", "delivered")
    );
    let hits = receiver.hits("ok");
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].header("x-redeploy-event"), "ping");
    assert!(hits[0].signed_with(&secret));
    assert_eq!(hits[0].payload().delivery_id, ping.id);
    // A ping to a failing receiver reports the failure at once and is not retried.
    let broken = client
        .create_webhook(&NewWebhook {
            url: receiver.url("broken"),
            ..NewWebhook::default()
        })
        .await
        .unwrap();
    let failed = client.test_webhook(&broken.webhook.id).await.unwrap();
    assert_eq!(
        (failed.status.as_str(), failed.last_status),
        ("given_up", Some(500))
    );
    assert!(failed.last_error.unwrap().contains("500"));

    // Roles: a viewer may not see or change webhooks.
    let viewer = client
        .create_api_token(&NewApiToken {
            name: "viewer".into(),
            role: "viewer".into(),
        })
        .await
        .unwrap();
    let viewer = Client::new(&app.base_url, &viewer.secret, Some(&app.ca_pem)).unwrap();
    assert_eq!(
        viewer
            .webhooks()
            .await
            .unwrap_err()
            .status()
            .map(|s| s.as_u16()),
        Some(403)
    );
    let err = viewer
        .create_webhook(&NewWebhook {
            url: receiver.url("ok"),
            ..NewWebhook::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.status().map(|s| s.as_u16()), Some(403));
    let err = viewer
        .set_webhook_enabled(&created.webhook.id, false)
        .await
        .unwrap_err();
    assert_eq!(err.status().map(|s| s.as_u16()), Some(403));

    client.delete_webhook(&created.webhook.id).await.unwrap();
    let err = client
        .webhook_deliveries(&created.webhook.id)
        .await
        .unwrap_err();
    assert_eq!(err.status().map(|s| s.as_u16()), Some(404));
    let err = client
        .delete_webhook(&created.webhook.id)
        .await
        .unwrap_err();
    assert_eq!(err.status().map(|s| s.as_u16()), Some(404));
    let err = client.delete_webhook("nope").await.unwrap_err();
    assert_eq!(err.status().map(|s| s.as_u16()), Some(400));
    assert_eq!(client.webhooks().await.unwrap().items.len(), 1);
}

async fn a_silent_reset_is_reported_stuck_once_after_two_hours_and_not_again_at_expiry(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let client = admin(&app);
    let receiver = Receiver::start().await;
    let hook = client
        .create_webhook(&NewWebhook {
            url: receiver.url("ok"),
            ..NewWebhook::default()
        })
        .await
        .unwrap()
        .webhook;
    let transport = HttpsTransport::new(&app.ca_pem).unwrap();
    let (mut pc, device_id) = enrolled_pc(&app, &transport, "pc-silent").await;
    let reset = client
        .request_action(&device_id, ActionKind::AutopilotReset)
        .await
        .unwrap();
    // The PC takes the Exec in one session and is never heard from again.
    client::check_in(&transport, &mut pc, now()).await.unwrap();
    let taken = app
        .store
        .action(reset.id.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(
        ["sent", "acknowledged", "in_progress"].contains(&taken.state.as_str()),
        "{:?}",
        taken.state
    );
    assert_eq!(
        app.server().state.settings.webhook_stuck_after.as_secs(),
        7200
    );

    let clock = Arc::new(ManualClock::new(taken.updated_at + Duration::minutes(119)));
    let mut state = app.server().state.clone();
    state.clock = clock.clone();
    assert_eq!(
        webhook_delivery::tick(&state).await.unwrap(),
        WebhookReport::default(),
        "119 minutes of silence is not stuck yet"
    );
    clock.advance(Duration::minutes(1));
    assert_eq!(
        webhook_delivery::tick(&state).await.unwrap(),
        report(1, 1, 0, 0)
    );
    let hits = receiver.hits("ok");
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].header("x-redeploy-event"), "stuck");
    let payload = hits[0].payload();
    assert_eq!(payload.event, "stuck");
    assert_eq!(payload.action.expect("the action").id, reset.id);
    assert_eq!(payload.device.expect("the device").id, device_id);
    clock.advance(Duration::hours(1));
    assert_eq!(
        webhook_delivery::tick(&state).await.unwrap(),
        WebhookReport::default(),
        "still silent: not reported again"
    );

    // Days later the worker expires it: the same event, so nothing new is sent.
    clock.advance(Duration::days(8));
    let worker = server::worker::tick(&state).await.unwrap();
    assert_eq!(
        (worker.expired, worker.webhooks_delivered),
        (1, 0),
        "{worker:?}"
    );
    assert_eq!(client.action(&reset.id).await.unwrap().state, "expired");
    assert_eq!(
        webhook_delivery::tick(&state).await.unwrap(),
        WebhookReport::default()
    );
    assert_eq!(receiver.hits("ok").len(), 1);
    let deliveries = client.webhook_deliveries(&hook.id).await.unwrap().items;
    assert_eq!(deliveries.len(), 1);
    assert_eq!(
        (deliveries[0].event.as_str(), deliveries[0].status.as_str()),
        ("stuck", "delivered")
    );
}

async fn a_disabled_webhook_holds_its_deliveries_and_does_not_replay_on_enable(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = admin(&app);
    let receiver = Receiver::start().await;
    receiver.status.store(503, Ordering::SeqCst);
    let hook = client
        .create_webhook(&NewWebhook {
            url: receiver.url("ok"),
            events: Some(vec!["done".into()]),
            ..NewWebhook::default()
        })
        .await
        .unwrap()
        .webhook;
    let transport = HttpsTransport::new(&app.ca_pem).unwrap();
    let (mut pc, device_id) = enrolled_pc(&app, &transport, "pc-toggle").await;
    let sync = || async {
        client
            .request_action(&device_id, ActionKind::Sync)
            .await
            .unwrap()
            .id
    };
    let clock = Arc::new(ManualClock::new(now() + Duration::seconds(1)));
    let mut state = app.server().state.clone();
    state.clock = clock.clone();

    // Ended while enabled; the first attempt fails, a retry is due in a minute.
    let first = sync().await;
    let end = check_in_until_settled(&client, &transport, &mut pc, &first, 3).await;
    assert_eq!(end, "done");
    assert_eq!(
        webhook_delivery::tick(&state).await.unwrap(),
        report(1, 0, 1, 0)
    );

    let off = client.set_webhook_enabled(&hook.id, false).await.unwrap();
    assert!(!off.enabled);
    assert!(!client.webhooks().await.unwrap().items[0].enabled);
    let second = sync().await;
    let end = check_in_until_settled(&client, &transport, &mut pc, &second, 3).await;
    assert_eq!(end, "done");
    receiver.status.store(204, Ordering::SeqCst);
    clock.advance(Duration::minutes(5));
    assert_eq!(
        webhook_delivery::tick(&state).await.unwrap(),
        WebhookReport::default(),
        "disabled: nothing enqueued, the due retry waits"
    );
    assert_eq!(receiver.hits("ok").len(), 1);

    let on = client.set_webhook_enabled(&hook.id, true).await.unwrap();
    assert!(on.enabled);
    assert_eq!(
        webhook_delivery::tick(&state).await.unwrap(),
        report(0, 1, 0, 0),
        "the waiting retry goes out; what ended while disabled is not replayed"
    );
    let third = sync().await;
    let end = check_in_until_settled(&client, &transport, &mut pc, &third, 3).await;
    assert_eq!(end, "done");
    assert_eq!(
        webhook_delivery::tick(&state).await.unwrap(),
        report(1, 1, 0, 0)
    );
    let sent: Vec<String> = receiver
        .hits("ok")
        .iter()
        .filter_map(|h| h.payload().action.map(|a| a.id))
        .collect();
    assert_eq!(sent, [first.clone(), first, third]);
    let deliveries = client.webhook_deliveries(&hook.id).await.unwrap().items;
    assert!(deliveries
        .iter()
        .all(|d| d.action_id.as_deref() != Some(second.as_str())));

    let audit = client
        .audit(&AuditQuery {
            limit: Some(1000),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    for action in ["webhook.disable", "webhook.enable"] {
        let e = audit
            .items
            .iter()
            .find(|e| e.action == action)
            .unwrap_or_else(|| panic!("{action} audited"));
        assert!(e.details.contains(&hook.id), "{e:?}");
    }
    let err = client
        .set_webhook_enabled("not-an-id", true)
        .await
        .unwrap_err();
    assert_eq!(err.status().map(|s| s.as_u16()), Some(400));
    client.delete_webhook(&hook.id).await.unwrap();
    let err = client
        .set_webhook_enabled(&hook.id, true)
        .await
        .unwrap_err();
    assert_eq!(err.status().map(|s| s.as_u16()), Some(404));
}
