//! A database outage under a running server (issue #14 item 2): `/healthz` (liveness) stays
//! 200, `/readyz` answers 503, a PC's check-in a quick 503 with `Retry-After`, the API a 503
//! problem document with `Retry-After`, enrollment a SOAP fault — each within a bound far
//! below the old ~10 s — and once the database is back everything works without a restart.
//! PostgreSQL: its connections cut and new ones refused; SQLite: its write lock held by
//! another connection.

use std::time::{Duration, Instant};

use device::{client, HttpsTransport};
use testkit::app::{Backend, TestApp};
use testkit::on_both_backends;
use testkit::outage::spawn_app_with_outage;

use crate::api_v1::{enrolled_pc, now};
use crate::common::{context, enroll, new_csr, password, post, rst_xml};

on_both_backends!(an_outage_is_answered_fast_and_recovery_needs_no_restart);

/// What every answer during the outage must beat: the database timeout (1 s here), a second
/// try of it, and a loaded test machine. The request limit is set far above it, so a pass
/// shows the database timeout at work, not the request limit.
const BOUND: Duration = Duration::from_secs(5);

fn timed<T>(started: Instant, what: &str, value: T) -> T {
    let took = started.elapsed();
    assert!(took < BOUND, "{what} took {took:?}");
    value
}

fn retry_after(r: &reqwest::Response) -> u64 {
    r.headers()
        .get("retry-after")
        .unwrap_or_else(|| panic!("no Retry-After: {:?}", r.headers()))
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// `POST /api/v1/devices/{id}/actions` `{"kind": "sync"}`: a write through the API.
async fn request_sync(app: &TestApp, device: &str) -> reqwest::Response {
    app.client()
        .post(app.url(&format!("/api/v1/devices/{device}/actions")))
        .bearer_auth(&app.admin_token)
        .json(&serde_json::json!({"kind": "sync"}))
        .send()
        .await
        .unwrap()
}

/// A client presenting the PC's certificate, for the raw management request.
fn pc_client(app: &TestApp, pc: &device::state::DeviceState) -> reqwest::Client {
    let enrollment = pc.mdm_enrollment.as_ref().expect("enrolled");
    let pem = format!(
        "{}\n{}",
        enrollment.client_cert_pem, enrollment.client_key_pem
    );
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(app.ca_pem.as_bytes()).unwrap())
        .identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap())
        .build()
        .unwrap()
}

async fn an_outage_is_answered_fast_and_recovery_needs_no_restart(backend: Backend) {
    let (app, mut outage) = spawn_app_with_outage(backend, |s| {
        s.database_timeout = Duration::from_secs(1);
        s.readiness_timeout = Duration::from_secs(1);
        s.request_timeout = Duration::from_secs(60);
        s.retry_after = Duration::from_secs(7);
    })
    .await;
    let transport = HttpsTransport::new(&app.ca_pem).unwrap();
    let (mut pc, pc_id) = enrolled_pc(&app, &transport, "pc-outage", 51, None).await;
    let web = app.client();
    let ready = web.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    assert_eq!(ready.text().await.unwrap(), "ready\n");

    outage.begin().await;

    // Liveness does not ask the database.
    let started = Instant::now();
    let health = web.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(timed(started, "/healthz", health.status()), 200);

    // Readiness says not ready, as a problem document.
    let started = Instant::now();
    let ready = web.get(app.url("/readyz")).send().await.unwrap();
    timed(started, "/readyz", ());
    assert_eq!(ready.status(), 503);
    assert_eq!(retry_after(&ready), 7);
    assert_eq!(ready.headers()["content-type"], "application/problem+json");

    // The API: a 503 problem document with Retry-After. A write: on SQLite reads still work
    // while another connection holds the write lock.
    let started = Instant::now();
    let refused = request_sync(&app, &pc_id).await;
    timed(started, "an API request", ());
    assert_eq!(refused.status(), 503);
    assert_eq!(retry_after(&refused), 7);
    assert_eq!(
        refused.headers()["content-type"],
        "application/problem+json"
    );
    let problem: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(problem["status"], 503, "{problem}");

    // A check-in: 503 with Retry-After, which Windows retries; the emulator sees the 503.
    let message = syncml::write(&client::package_one(
        &pc,
        &pc.mdm_enrollment.as_ref().unwrap().server_url,
        pc.dm_client.last_session_id + 1,
        now(),
    ));
    let started = Instant::now();
    let check_in = pc_client(&app, &pc)
        .post(app.url("/ManagementServer/MDM.svc"))
        .header("content-type", syncml::codes::CONTENT_TYPE)
        .body(message)
        .send()
        .await
        .unwrap();
    timed(started, "a check-in", ());
    assert_eq!(check_in.status(), 503);
    assert_eq!(retry_after(&check_in), 7);
    let started = Instant::now();
    let failed = client::check_in(&transport, &mut pc, now()).await;
    timed(started, "the emulated PC's check-in", ());
    assert!(
        matches!(failed, Err(device::DeviceError::Http { status: 503, .. })),
        "{failed:?}"
    );

    // Enrollment: a SOAP fault, quickly.
    let started = Instant::now();
    let fault = post(
        &app,
        "/EnrollmentServer/Enrollment.svc",
        rst_xml(
            &app,
            password(&app.enrollment_token),
            new_csr(),
            context(&"E".repeat(64), "Device"),
        ),
    )
    .await;
    timed(started, "an enrollment", ());
    assert_eq!(fault.fault_code(), "a:InternalServiceFault");

    outage.end().await;

    // Recovery without a restart: ready again, then everything works.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ready = web.get(app.url("/readyz")).send().await.unwrap();
        if ready.status() == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not ready again after the outage"
        );
    }
    let accepted = request_sync(&app, &pc_id).await;
    assert_eq!(accepted.status(), 202, "{:?}", accepted.text().await);
    testkit::pc::sync_until_quiet(&transport, &mut pc, now()).await;
    let enrolled = enroll(&app, &"F".repeat(64), "Device").await;
    crate::common::provisioning(&enrolled);
    let metrics = web
        .get(app.url("/metrics"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
}
