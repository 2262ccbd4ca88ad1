//! Operations endpoints: `GET /healthz` (200 when the store answers) and `GET /metrics`
//! (Prometheus text format).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};
use redeploy_core::DeviceId;

use crate::problem::Problem;
use crate::state::AppState;

/// 200 `ok` when a trivial store query succeeds, else a 503 problem document.
pub async fn healthz(State(state): State<AppState>) -> Response {
    // A primary-key lookup of an id that cannot exist: cheap on both backends.
    match state.store.device(DeviceId::generate()).await {
        Ok(_) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            )],
            "ok\n",
        )
            .into_response(),
        Err(err) => {
            tracing::warn!(%err, "health check: store unavailable");
            Problem::new(StatusCode::SERVICE_UNAVAILABLE)
                .detail(format!("the database does not answer: {err}"))
                .into_response()
        }
    }
}

/// Every metric in the Prometheus text exposition format 0.0.4.
pub async fn metrics(State(state): State<AppState>) -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        state.metrics.render(),
    )
        .into_response()
}
