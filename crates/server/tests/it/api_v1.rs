//! The admin REST API over real HTTPS: the fixed device/action shapes, pagination, emulated PCs
//! with readiness and actions reaching them, auth (401/403 + audit), problem documents, hashed
//! token storage, and the typed `api::Client` round-tripping every operation.

use api::{ActionKind, ActionListQuery, AuditQuery, Client, DeviceListQuery, NewApiToken};
use device::client::{self, EnrollOptions};
use device::state::{DeviceState, JoinType as PcJoin};
use device::{DeviceProfile, HttpsTransport};
use redeploy_core::SecretHash;
use serde_json::Value;
use testkit::app::{spawn_app, Backend, TestApp};
use time::OffsetDateTime;

use testkit::on_both_backends;

pub(crate) fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// Enrolls an emulated PC and runs its first session (inventory); returns the server's device id.
pub(crate) async fn enrolled_pc(
    app: &TestApp,
    transport: &HttpsTransport,
    id: &str,
    seed: u64,
    join: Option<PcJoin>,
) -> (DeviceState, String) {
    let mut profile = DeviceProfile::default();
    if let Some(j) = join {
        profile.join = j;
    }
    let mut state = profile.build_seeded(id, seed, now());
    let options = EnrollOptions {
        server: app.base_url.clone(),
        token: app.enrollment_token.clone(),
        issuer: None,
    };
    client::enroll(transport, &mut state, &options, now())
        .await
        .expect("enrollment");
    client::check_in(transport, &mut state, now())
        .await
        .expect("first check-in");
    let device = app
        .store
        .device_by_mdm_device_id(&state.dev_id)
        .await
        .unwrap()
        .expect("device known");
    (state, device.id.to_string())
}

pub(crate) fn admin(app: &TestApp) -> Client {
    Client::new(&app.base_url, &app.admin_token, Some(&app.ca_pem)).unwrap()
}

async fn get_json(app: &TestApp, path: &str) -> (u16, String, Value) {
    let r = app
        .client()
        .get(app.url(path))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let ct = content_type(&r);
    (status, ct, r.json().await.unwrap())
}

pub(crate) fn content_type(r: &reqwest::Response) -> String {
    r.headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

pub(crate) fn assert_problem(status: u16, ct: &str, body: &Value, expected: u16) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(ct, "application/problem+json");
    assert_eq!(body["status"], expected, "{body}");
    assert!(
        body["type"].is_string() && body["title"].is_string(),
        "{body}"
    );
    assert!(body["detail"].is_string(), "{body}");
}

on_both_backends!(
    devices_appear_with_readiness_and_a_reset_reaches_the_pc,
    auth_roles_problems_and_hashed_tokens,
    typed_client_round_trips_every_operation,
    a_winre_failure_shows_its_hresult_and_blocks_the_next_reset,
    a_device_support_trail_shows_its_check_ins_to_helpdesk_only,
    a_pc_reporting_another_pcs_hardware_id_keeps_checking_in_and_is_flagged,
);

/// Issue #13: the hardware id is an attribute. A PC that starts reporting the hardware id of
/// another enrolled PC (a cloned image, an imitating client) keeps checking in; both records
/// show the clash and the audit log says it, once.
async fn a_pc_reporting_another_pcs_hardware_id_keeps_checking_in_and_is_flagged(backend: Backend) {
    let clock = std::sync::Arc::new(redeploy_core::ManualClock::new(now()));
    let app = testkit::app::spawn_app_with_clock(backend, clock.clone(), |_| {}).await;
    let transport = HttpsTransport::new(&app.ca_pem).unwrap();
    let (a, a_id) = enrolled_pc(&app, &transport, "pc-a", 31, None).await;
    let (mut b, b_id) = enrolled_pc(&app, &transport, "pc-b", 32, None).await;
    b.hardware.hw_dev_id = a.hardware.hw_dev_id.clone();
    // The next inventory read is due a day later.
    clock.advance(time::Duration::hours(25));
    for _ in 0..2 {
        client::check_in(&transport, &mut b, now())
            .await
            .expect("check-ins go on");
    }
    let client = admin(&app);
    for (me, other) in [(&b_id, &a_id), (&a_id, &b_id)] {
        let detail = client.device(me).await.unwrap();
        let clashes: Vec<_> = detail
            .identity_clashes
            .iter()
            .map(|c| (c.device.as_str(), c.attribute.as_str(), c.value.as_str()))
            .collect();
        assert_eq!(
            clashes,
            [(other.as_str(), "hw_dev_id", a.hardware.hw_dev_id.as_str())]
        );
    }
    let b_uuid = redeploy_core::DeviceId::parse(&b_id).unwrap();
    assert_eq!(
        app.store.device(b_uuid).await.unwrap().unwrap().hw_dev_id,
        Some(a.hardware.hw_dev_id.clone()),
        "what the PC reports is kept"
    );
    let audit = app
        .store
        .list_audit(&redeploy_core::store::AuditQuery::default())
        .await
        .unwrap();
    let flagged: Vec<_> = audit
        .iter()
        .filter(|e| e.action == "device.identity_clash")
        .collect();
    assert_eq!(
        flagged.len(),
        1,
        "once, when the identity changed: {flagged:?}"
    );
    assert_eq!(flagged[0].targets[0], b_uuid);
}

async fn a_winre_failure_shows_its_hresult_and_blocks_the_next_reset(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = admin(&app);
    let transport = HttpsTransport::new(&app.ca_pem).unwrap();
    let profile = DeviceProfile::default();
    let mut pc = profile.build_seeded("pc-winre", 9, now());
    let options = EnrollOptions {
        server: app.base_url.clone(),
        token: app.enrollment_token.clone(),
        issuer: None,
    };
    client::enroll(&transport, &mut pc, &options, now())
        .await
        .unwrap();
    client::check_in(&transport, &mut pc, now()).await.unwrap();
    // WinRE was fine when the server last read it; `reagentc /disable` ran on the PC since.
    pc.winre_enabled = false;
    let id = app
        .store
        .device_by_mdm_device_id(&pc.dev_id)
        .await
        .unwrap()
        .unwrap()
        .id
        .to_string();

    let reset = client
        .request_action(&id, ActionKind::AutopilotReset)
        .await
        .unwrap();
    assert_eq!(reset.state, "pending");
    for _ in 0..5 {
        let report = client::check_in(&transport, &mut pc, now()).await.unwrap();
        if report.executed.is_empty() {
            break;
        }
    }
    let failed = client.action(&reset.id).await.unwrap();
    assert_eq!(failed.state, "failed", "{failed:?}");
    assert_eq!(failed.last_error.as_deref(), Some("0x80070032"));
    assert!(failed.reason.unwrap_or_default().contains("reagentc"));

    let device = client.device(&id).await.unwrap().device;
    assert!(device
        .readiness
        .reasons
        .iter()
        .any(|r| r.code == "winre_failure"));
    let again = client
        .request_action(&id, ActionKind::AutopilotReset)
        .await
        .unwrap();
    assert_eq!(again.state, "blocked");

    // An admin who fixed WinRE on a PC that cannot report it retries with a reason: queued,
    // audited with the reason. A body that is not JSON is a 400 problem.
    let forced = client
        .retry_action_because(&failed.id, "reagentc /enable run by hand")
        .await
        .unwrap();
    assert_eq!(forced.state, "pending", "{forced:?}");
    let audit = app
        .store
        .list_audit(&redeploy_core::store::AuditQuery::default())
        .await
        .unwrap();
    assert!(audit
        .iter()
        .any(|e| e.action == "action.retry" && e.details.contains("reagentc /enable run by hand")));
    let r = app
        .client()
        .post(app.url(&format!("/api/v1/actions/{}/retry", failed.id)))
        .bearer_auth(&app.admin_token)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    let (status, ct) = (r.status().as_u16(), content_type(&r));
    assert_problem(status, &ct, &r.json().await.unwrap(), 400);
}

async fn devices_appear_with_readiness_and_a_reset_reaches_the_pc(backend: Backend) {
    let app = spawn_app(backend).await;
    let transport = HttpsTransport::new(&app.ca_pem).unwrap();
    let (mut entra, entra_id) = enrolled_pc(&app, &transport, "pc-a", 1, None).await;
    let (_hybrid, hybrid_id) = enrolled_pc(&app, &transport, "pc-b", 2, Some(PcJoin::Hybrid)).await;
    let (_third, _) = enrolled_pc(&app, &transport, "pc-c", 3, None).await;

    // The fixed list shape, two pages.
    let (status, _, page) = get_json(&app, "/api/v1/devices?limit=2").await;
    assert_eq!(status, 200, "{page}");
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    for d in items {
        for key in [
            "id",
            "name",
            "serial",
            "os_version",
            "join_type",
            "last_seen",
            "primary_user",
            "readiness",
        ] {
            assert!(d.get(key).is_some(), "{key} missing from {d}");
        }
        assert!(d["readiness"]["ready"].is_boolean(), "{d}");
        assert!(d["readiness"]["reasons"].is_array(), "{d}");
    }
    let next = page["next"].as_str().expect("a next cursor").to_owned();
    let (_, _, page2) = get_json(&app, &format!("/api/v1/devices?limit=2&cursor={next}")).await;
    assert_eq!(page2["items"].as_array().unwrap().len(), 1, "{page2}");
    assert!(page2["next"].is_null(), "{page2}");
    let mut ids: Vec<String> = items
        .iter()
        .chain(page2["items"].as_array().unwrap())
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "each device exactly once across pages");

    // By serial, also in pages.
    let (_, _, s1) = get_json(&app, "/api/v1/devices?sort=serial&limit=2").await;
    let cursor = s1["next"].as_str().expect("next page by serial").to_owned();
    let (_, _, s2) = get_json(
        &app,
        &format!("/api/v1/devices?sort=serial&limit=2&cursor={cursor}"),
    )
    .await;
    let serials: Vec<&str> = s1["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(s2["items"].as_array().unwrap())
        .map(|d| d["serial"].as_str().unwrap())
        .collect();
    assert_eq!(serials.len(), 3);
    assert!(serials.windows(2).all(|w| w[0] <= w[1]), "{serials:?}");
    assert!(s2["next"].is_null());

    // Readiness: the Entra PC is ready, the hybrid one is not and says why.
    let client = admin(&app);
    let all = client
        .list_devices(&DeviceListQuery::default())
        .await
        .unwrap();
    let by_id = |id: &str| all.items.iter().find(|d| d.id == id).unwrap().clone();
    let e = by_id(&entra_id);
    assert!(e.readiness.ready, "{:?}", e.readiness);
    assert_eq!(e.join_type, "entra_joined");
    assert!(e.last_seen.is_some() && e.os_version.is_some() && e.serial.is_some());
    let h = by_id(&hybrid_id);
    assert!(!h.readiness.ready);
    assert!(h
        .readiness
        .reasons
        .iter()
        .any(|r| r.code == "hybrid_joined"));
    let not_ready = client
        .list_devices(&DeviceListQuery {
            ready: Some(false),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(not_ready.items.len(), 1);
    assert_eq!(not_ready.items[0].id, hybrid_id);
    let fleet = client.readiness().await.unwrap();
    assert_eq!((fleet.total, fleet.ready), (3, 2));
    assert_eq!(fleet.blocked_by_reason.get("hybrid_joined"), Some(&1));

    // Autopilot Reset: 202 pending; after the PC's check-in it went out, with a timeline.
    let r = app
        .client()
        .post(app.url(&format!("/api/v1/devices/{entra_id}/actions")))
        .bearer_auth(&app.admin_token)
        .json(&serde_json::json!({"kind": "autopilot_reset"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let action: Value = r.json().await.unwrap();
    assert_eq!(action["state"], "pending", "{action}");
    assert_eq!(action["kind"], "autopilot_reset");
    assert_eq!(action["device_id"], entra_id.as_str());
    for key in ["id", "reason", "last_error", "timeline"] {
        assert!(action.get(key).is_some(), "{key} missing from {action}");
    }
    client::check_in(&transport, &mut entra, now())
        .await
        .unwrap();
    let (_, _, after) = get_json(
        &app,
        &format!("/api/v1/actions/{}", action["id"].as_str().unwrap()),
    )
    .await;
    let state = after["state"].as_str().unwrap();
    assert!(
        ["sent", "acknowledged", "in_progress"].contains(&state),
        "{after}"
    );
    let timeline: Vec<&str> = after["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["state"].as_str().unwrap())
        .collect();
    assert!(
        timeline.contains(&"pending") && timeline.contains(&"sent"),
        "{timeline:?}"
    );
    assert!(after["timeline"][0]["at"].as_str().unwrap().contains('T'));

    // The device now shows the running reset as a reason, and its detail has inventory.
    let detail = client.device(&entra_id).await.unwrap();
    assert!(!detail.device.readiness.ready);
    assert!(!detail.inventory.is_empty());
    assert_eq!(detail.actions[0].id, after["id"].as_str().unwrap());

    // A hybrid PC: still 202, but blocked with the reason.
    let blocked = client
        .request_action(&hybrid_id, ActionKind::AutopilotReset)
        .await
        .unwrap();
    assert_eq!(blocked.state, "blocked");
    assert!(
        blocked.reason.unwrap_or_default().contains("hybrid"),
        "the reason names the hybrid join"
    );
}

async fn auth_roles_problems_and_hashed_tokens(backend: Backend) {
    let app = spawn_app(backend).await;
    let http = app.client();

    // No token, a wrong token.
    let r = http.get(app.url("/api/v1/devices")).send().await.unwrap();
    let (s, ct) = (r.status().as_u16(), content_type(&r));
    assert_problem(s, &ct, &r.json().await.unwrap(), 401);
    let r = http
        .get(app.url("/api/v1/devices"))
        .bearer_auth("rdp_admin_nope")
        .send()
        .await
        .unwrap();
    let (s, ct) = (r.status().as_u16(), content_type(&r));
    assert_problem(s, &ct, &r.json().await.unwrap(), 401);

    // Unknown device, bad JSON, unknown kind.
    let missing = uuid::Uuid::new_v4();
    let (s, ct, body) = get_json(&app, &format!("/api/v1/devices/{missing}")).await;
    assert_problem(s, &ct, &body, 404);
    for bad in ["{not json", r#"{"kind": "format_c"}"#] {
        let r = http
            .post(app.url(&format!("/api/v1/devices/{missing}/actions")))
            .bearer_auth(&app.admin_token)
            .header("content-type", "application/json")
            .body(bad)
            .send()
            .await
            .unwrap();
        let (s, ct) = (r.status().as_u16(), content_type(&r));
        assert_problem(s, &ct, &r.json().await.unwrap(), 400);
    }

    // A viewer may read but not reset: 403 and an audit entry naming the token.
    let client = admin(&app);
    let viewer = client
        .create_api_token(&NewApiToken {
            name: "dashboard".into(),
            role: "viewer".into(),
        })
        .await
        .unwrap();
    let transport = HttpsTransport::new(&app.ca_pem).unwrap();
    let (_pc, device_id) = enrolled_pc(&app, &transport, "pc-v", 7, None).await;
    let as_viewer = Client::new(&app.base_url, &viewer.secret, Some(&app.ca_pem)).unwrap();
    assert_eq!(
        as_viewer
            .list_devices(&DeviceListQuery::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    let err = as_viewer
        .request_action(&device_id, ActionKind::AutopilotReset)
        .await
        .unwrap_err();
    assert_eq!(err.status().map(|s| s.as_u16()), Some(403), "{err}");
    let err = as_viewer
        .create_api_token(&NewApiToken {
            name: "escalate".into(),
            role: "admin".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.status().map(|s| s.as_u16()), Some(403), "{err}");
    let audit = client.audit(&AuditQuery::default()).await.unwrap();
    let forbidden: Vec<_> = audit
        .items
        .iter()
        .filter(|e| e.action == "api.forbidden")
        .collect();
    assert_eq!(forbidden.len(), 2, "{:?}", audit.items);
    assert!(forbidden[0].actor.contains("dashboard"));
    assert!(forbidden[0].details.contains("autopilot_reset"));
    assert_eq!(forbidden[0].targets, vec![device_id.clone()]);
    assert_eq!(forbidden[0].outcome, "refused");
    assert!(
        client
            .list_actions(&ActionListQuery {
                device: Some(device_id),
                ..Default::default()
            })
            .await
            .unwrap()
            .items
            .is_empty(),
        "nothing was queued"
    );

    // Tokens are stored hashed: the store has the hash, never the secret.
    let stored = app.store.list_api_tokens().await.unwrap();
    let row = stored.iter().find(|t| t.name == "dashboard").unwrap();
    assert_eq!(row.secret_hash, SecretHash::of_secret(&viewer.secret));
    if backend == Backend::Sqlite {
        for file in ["redeploy.db", "redeploy.db-wal"] {
            if let Ok(bytes) = std::fs::read(app.data_dir.join(file)) {
                let text = String::from_utf8_lossy(&bytes);
                assert!(!text.contains(&viewer.secret), "plaintext secret in {file}");
                assert!(
                    !text.contains(&app.admin_token),
                    "plaintext admin token in {file}"
                );
            }
        }
    }
}

async fn typed_client_round_trips_every_operation(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = admin(&app);
    let transport = HttpsTransport::new(&app.ca_pem).unwrap();
    let (mut pc, id) = enrolled_pc(&app, &transport, "pc-rt", 5, None).await;

    let page = client
        .list_devices(&DeviceListQuery {
            q: Some(pc.hardware.serial.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    assert!(page.next.is_none());
    assert_eq!(client.device(&id).await.unwrap().device.id, id);

    // Request, read, list, cancel, retry.
    let sync = client.request_action(&id, ActionKind::Sync).await.unwrap();
    assert_eq!(sync.state, "pending");
    assert_eq!(client.action(&sync.id).await.unwrap(), sync);
    let canceled = client.cancel_action(&sync.id).await.unwrap();
    assert_eq!(canceled.state, "canceled");
    let retried = client.retry_action(&sync.id).await.unwrap();
    assert_ne!(retried.id, sync.id);
    assert_eq!(retried.state, "pending");
    let pending = client
        .list_actions(&ActionListQuery {
            state: Some("pending".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(pending.items.len(), 1);
    assert_eq!(pending.items[0].id, retried.id);
    let of_device = client
        .list_actions(&ActionListQuery {
            device: Some(id.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(of_device.items.len(), 2);
    let err = client
        .cancel_action(&uuid::Uuid::new_v4().to_string())
        .await
        .unwrap_err();
    assert_eq!(err.status().map(|s| s.as_u16()), Some(404));

    // Local reset policy is queued and reaches the PC.
    let policy = client.set_local_reset(&id, true).await.unwrap();
    assert_eq!(policy.kind, ActionKind::SetLocalResetPolicy);
    assert_eq!(policy.allowed, Some(true));
    assert_eq!(policy.state, "pending");
    client::check_in(&transport, &mut pc, now()).await.unwrap();
    assert_ne!(client.action(&policy.id).await.unwrap().state, "pending");

    assert_eq!(client.readiness().await.unwrap().total, 1);

    // Audit: JSON and CSV.
    let audit = client
        .audit(&AuditQuery {
            device: Some(id.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(audit.items.iter().any(|e| e.action == "action.create"));
    assert!(audit.items.iter().any(|e| e.action == "action.cancel"));
    let csv = client.audit_csv(&AuditQuery::default()).await.unwrap();
    assert!(csv.starts_with("id,at,actor,action,targets,outcome,details"));
    assert!(csv.contains("action.cancel"));

    // Enrollment tokens: the secret works for a new PC.
    let created = client
        .create_enrollment_token(&api::NewEnrollmentToken {
            label: "lab".into(),
            expires_at: Some("2099-01-01T00:00:00Z".into()),
            max_uses: Some(1),
            vouches_entra_join: true,
        })
        .await
        .unwrap();
    assert_eq!(created.token.max_uses, Some(1));
    assert!(created.token.vouches_entra_join);
    let listed = client.enrollment_tokens().await.unwrap();
    assert!(listed.items.iter().any(|t| t.id == created.token.id));
    let mut other = DeviceProfile::default().build_seeded("pc-rt2", 6, now());
    client::enroll(
        &transport,
        &mut other,
        &EnrollOptions {
            server: app.base_url.clone(),
            token: created.secret.clone(),
            issuer: None,
        },
        now(),
    )
    .await
    .expect("the new enrollment token works");
    let listed = client.enrollment_tokens().await.unwrap();
    let used = listed
        .items
        .iter()
        .find(|t| t.id == created.token.id)
        .unwrap();
    assert_eq!(used.uses, 1);

    // API tokens: create, list, revoke → the revoked token gets 401.
    let helpdesk = client
        .create_api_token(&NewApiToken {
            name: "helpdesk".into(),
            role: "helpdesk".into(),
        })
        .await
        .unwrap();
    let as_helpdesk = Client::new(&app.base_url, &helpdesk.secret, Some(&app.ca_pem)).unwrap();
    let restart = as_helpdesk
        .request_action(&id, ActionKind::Restart)
        .await
        .unwrap();
    assert!(restart.requested_by.contains("helpdesk"));
    let err = as_helpdesk
        .request_action(&id, ActionKind::Wipe)
        .await
        .unwrap_err();
    assert_eq!(err.status().map(|s| s.as_u16()), Some(403));
    assert!(client
        .api_tokens()
        .await
        .unwrap()
        .items
        .iter()
        .any(|t| t.id == helpdesk.token.id && t.role == "helpdesk"));
    client.revoke_api_token(&helpdesk.token.id).await.unwrap();
    let err = as_helpdesk.readiness().await.unwrap_err();
    assert_eq!(err.status().map(|s| s.as_u16()), Some(401));

    // The served OpenAPI document is the generated one.
    let served = client.openapi().await.unwrap();
    let generated: Value = serde_json::from_str(&server::api::openapi_json()).unwrap();
    assert_eq!(served, generated);
}

/// `docs/openapi.json` is the generated document; `REDEPLOY_BLESS=1 cargo test -p server
/// openapi` rewrites it.
#[test]
fn openapi_document_is_committed_and_current() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
    let generated = server::api::openapi_json();
    if std::env::var_os("REDEPLOY_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/openapi.json differs from the API in the code; regenerate it with \
         `REDEPLOY_BLESS=1 cargo test -p server openapi` and commit it"
    );
}

/// `GET /api/v1/devices/{id}/messages`: the PC's check-ins and our answers, newest first, as
/// they went over the wire; helpdesk and above (a viewer is refused, audited).
async fn a_device_support_trail_shows_its_check_ins_to_helpdesk_only(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = admin(&app);
    let transport = HttpsTransport::new(&app.ca_pem).unwrap();
    let (mut pc, id) = enrolled_pc(&app, &transport, "pc-trail", 11, None).await;
    client::check_in(&transport, &mut pc, now()).await.unwrap();

    let trail = client.device_messages(&id, 3).await.unwrap();
    assert_eq!(trail.items.len(), 3, "{trail:?}");
    assert_eq!(
        trail.items[0].direction, "out",
        "our last answer comes first"
    );
    assert_eq!(trail.items[1].direction, "in");
    assert!(
        trail.items[1].body.contains("<SyncML"),
        "{:?}",
        trail.items[1]
    );
    assert!(
        trail.items[1].body.contains(&pc.dev_id),
        "the PC's own message names it"
    );
    assert_eq!(trail.items[1].size as usize, trail.items[1].body.len());
    let all = client.device_messages(&id, 200).await.unwrap();
    assert!(
        all.items.len() >= 4,
        "both sessions kept: {}",
        all.items.len()
    );

    let created = client
        .create_api_token(&api::NewApiToken {
            name: "viewer-trail".into(),
            role: "viewer".into(),
        })
        .await
        .unwrap();
    let viewer = Client::new(&app.base_url, &created.secret, Some(&app.ca_pem)).unwrap();
    let err = viewer.device_messages(&id, 3).await.unwrap_err();
    assert!(err.to_string().contains("403"), "{err}");
    let unknown = client
        .device_messages(&uuid::Uuid::new_v4().to_string(), 3)
        .await
        .unwrap_err();
    assert!(unknown.to_string().contains("404"), "{unknown}");
}
