//! Health, metrics, limits (body size, rate) and problem documents.

use testkit::app::{spawn_app, spawn_app_with, Backend};

use crate::common::*;
use testkit::on_both_backends;

on_both_backends!(
    healthz_and_metrics_answer,
    body_over_the_limit_is_413,
    enrollment_rate_limit_is_429_with_retry_after,
    unknown_paths_are_problem_documents,
    metrics_are_opened_or_served_on_their_own_listener_only_when_configured,
);

/// Issue #14 item 6: `/metrics` is closed to anonymous callers unless the operator opens it
/// (`metrics_public`) or serves it on a listener of its own (`metrics_listen`, plain HTTP).
async fn metrics_are_opened_or_served_on_their_own_listener_only_when_configured(backend: Backend) {
    let open = spawn_app_with(backend, |s| s.metrics_public = true).await;
    let r = open
        .client()
        .get(open.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    drop(open);

    let app = spawn_app_with(backend, |s| {
        s.metrics_listen = Some(([127, 0, 0, 1], 0).into())
    })
    .await;
    let addr = app
        .server()
        .metrics_addr
        .expect("the metrics listener is bound");
    let plain = reqwest::Client::new();
    let r = plain
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("redeploy_"));
    let other = plain
        .get(format!("http://{addr}/api/v1/devices"))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404, "only /metrics there");
    // The main listener still wants a token; a viewer's is enough, a made-up one is not.
    let anonymous = app.client().get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let created: serde_json::Value = app
        .client()
        .post(app.url("/api/v1/tokens"))
        .bearer_auth(&app.admin_token)
        .json(&serde_json::json!({"name": "prometheus", "role": "viewer"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let viewer = created["secret"].as_str().unwrap();
    let r = app
        .client()
        .get(app.url("/metrics"))
        .bearer_auth(viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = app
        .client()
        .get(app.url("/metrics"))
        .bearer_auth("rdp_admin_made_up")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

async fn healthz_and_metrics_answer(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = app.client();
    let health = client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);

    provisioning(&enroll(&app, &"A".repeat(64), "Device").await);
    let refused = post(
        &app,
        "/EnrollmentServer/Enrollment.svc",
        rst_xml(
            &app,
            password("wrong"),
            new_csr(),
            context(&"B".repeat(64), "Device"),
        ),
    )
    .await;
    assert_eq!(refused.fault_code(), "s:Authentication");

    // Only an API token sees the metrics (any role; Prometheus sends it as a bearer token).
    let anonymous = client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let metrics = client
        .get(app.url("/metrics"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(metrics.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text; version=1.0.0"));
    let text = metrics.text().await.unwrap();
    assert!(
        text.contains(
            "redeploy_enrollment_requests_total{service=\"enrollment\",outcome=\"ok\"} 1"
        ),
        "{text}"
    );
    assert!(text.contains(
        "redeploy_enrollment_requests_total{service=\"enrollment\",outcome=\"Authentication\"} 1"
    ));
    assert!(text.contains(
        "redeploy_http_request_duration_seconds_count{endpoint=\"/EnrollmentServer/Enrollment.svc\"} 2"
    ));
    assert!(text.contains("redeploy_http_request_duration_seconds_count{endpoint=\"/healthz\"} 1"));
}

async fn body_over_the_limit_is_413(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.max_body_bytes = 10_000).await;
    let response = app
        .client()
        .post(app.url("/EnrollmentServer/Enrollment.svc"))
        .header("content-type", SOAP_XML)
        .body("x".repeat(20_000))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem: serde_json::Value = response.json().await.unwrap();
    assert_eq!(problem["status"], 413);

    // A chunked body (no Content-Length) is cut off while being read.
    let chunks = futures::stream::iter(
        (0..20).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'x'; 1000]))),
    );
    let response = app
        .client()
        .post(app.url("/EnrollmentServer/Enrollment.svc"))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
}

async fn enrollment_rate_limit_is_429_with_retry_after(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        s.enroll_rate = server::RateLimit {
            burst: 3,
            per_second: 0.01,
        }
    })
    .await;
    let client = app.client();
    for _ in 0..3 {
        let r = client
            .get(app.url("/EnrollmentServer/Discovery.svc"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let limited = client
        .get(app.url("/EnrollmentServer/Discovery.svc"))
        .send()
        .await
        .unwrap();
    assert_eq!(limited.status(), 429);
    let retry: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    assert_eq!(
        limited.headers()["content-type"],
        "application/problem+json"
    );
    // Only the enrollment endpoints are limited.
    let health = client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
}

async fn unknown_paths_are_problem_documents(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = app.client();
    let missing = client.get(app.url("/nope")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.headers()["content-type"],
        "application/problem+json"
    );
    let wrong_method = client.delete(app.url("/healthz")).send().await.unwrap();
    assert_eq!(wrong_method.status(), 405);
    assert_eq!(
        wrong_method.headers()["content-type"],
        "application/problem+json"
    );
}
