//! Router tests: `app(state).oneshot(request)` on in-memory SQLite, no network.

use axum::body::Body;
use http::{Request, StatusCode};
use tower::ServiceExt;

#[tokio::test]
async fn discovery_probe_and_discover_in_process() {
    let state = testkit::app::router_state().await;
    let app = server::app(state);
    let probe = app
        .clone()
        .oneshot(
            Request::get("/EnrollmentServer/Discovery.svc")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(probe.status(), StatusCode::OK);

    let discover = enroll::write_discover_request(&enroll::DiscoverRequest {
        message_id: "urn:uuid:1".into(),
        request_version: Some("4.0".into()),
        auth_policies: vec![enroll::AuthPolicy::OnPremise],
        ..Default::default()
    });
    let response = app
        .oneshot(
            Request::post("/EnrollmentServer/Discovery.svc")
                .header("content-type", "application/soap+xml; charset=utf-8")
                .body(Body::from(discover))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let enroll::EnrollResponse::Discover { response, .. } = enroll::parse_response(&body).unwrap()
    else {
        panic!("not a DiscoverResponse")
    };
    assert_eq!(response.enrollment_version, "4.0");
    assert_eq!(
        response.enrollment_service_url,
        "https://redeploy.test/EnrollmentServer/Enrollment.svc"
    );
}
