//! Operations endpoints: `GET /healthz` (liveness: the process serves requests; no database),
//! `GET /readyz` (readiness: the database answers within `readiness_timeout`) and
//! `GET /metrics` (Prometheus text format). Liveness and readiness are apart so that a
//! database outage makes a load balancer stop sending traffic (`/readyz`) without an
//! orchestrator restarting a process that would not fix it (`/healthz`).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};

use crate::problem::Problem;
use crate::state::AppState;

fn text(body: &'static str) -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        body,
    )
        .into_response()
}

/// 200 `ok` whenever the process answers at all.
pub async fn healthz() -> Response {
    text("ok\n")
}

/// 200 `ready` when the store's [`HealthCheck::ping`](redeploy_core::store::HealthCheck::ping)
/// succeeds within `readiness_timeout`, else a 503 problem document (with `Retry-After`, added
/// to every 503 by `crate::app`).
pub async fn readyz(State(state): State<AppState>) -> Response {
    let limit = state.settings.readiness_timeout;
    let why = match tokio::time::timeout(limit, state.store.ping()).await {
        Ok(Ok(())) => return text("ready\n"),
        Ok(Err(err)) => format!("the database failed: {err}"),
        Err(_) => format!(
            "the database did not answer within {} ms",
            limit.as_millis()
        ),
    };
    tracing::warn!(%why, "readiness check failed");
    Problem::new(StatusCode::SERVICE_UNAVAILABLE)
        .detail(why)
        .into_response()
}

/// Every metric in the OpenMetrics text format.
pub async fn metrics(State(state): State<AppState>) -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
        )],
        state.metrics.render(),
    )
        .into_response()
}
