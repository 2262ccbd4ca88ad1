//! The router: enrollment, management (`crate::mgmt`), health and metrics, wrapped in the
//! limits every request gets (body size, timeout), latency metrics and problem-document errors.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{from_fn, from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use http::{header, HeaderValue, StatusCode};

use crate::problem::{problem_errors, Problem};
use crate::ratelimit::{limit_by_ip, RateLimiter};
use crate::state::AppState;
use crate::{enrollment, ops};

/// Every route of the server, ready to serve.
pub fn app(state: AppState) -> Router {
    let limiter = Arc::new(RateLimiter::new(state.settings.enroll_rate));
    let enrollment = enrollment::routes().route_layer(from_fn_with_state(limiter, limit_by_ip));
    // Metrics name devices' traffic and the fleet's size: only API tokens see them, unless the
    // operator opened them (or serves them on a private listener, `metrics_listen`).
    let metrics = Router::new().route("/metrics", get(ops::metrics));
    let metrics = match state.settings.metrics_public {
        true => metrics,
        false => metrics.route_layer(from_fn_with_state(
            state.clone(),
            crate::api::auth::authenticate,
        )),
    };
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .merge(metrics)
        .merge(enrollment)
        .merge(management_routes(&state))
        .merge(crate::api::routes(&state))
        .merge(crate::console::routes(&state))
        .merge(crate::graph::routes(&state))
        .fallback(not_found)
        // Bodies without a Content-Length (chunked) are cut off here while being read.
        .layer(DefaultBodyLimit::max(state.settings.max_body_bytes))
        .layer(from_fn_with_state(state.clone(), limits_and_latency))
        .layer(from_fn(problem_errors))
        .with_state(state)
}

/// The router of the plain-HTTP `metrics_listen` listener: `/metrics` only, no token.
pub fn metrics_only(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(ops::metrics))
        .fallback(not_found)
        .with_state(state)
}

/// The management endpoint, also reading the client certificate from a trusted proxy's header
/// when the operator configured one (`client_cert_header` + `trusted_proxies`).
fn management_routes(state: &AppState) -> Router<AppState> {
    match &state.settings.client_cert_header {
        Some(header) => crate::mgmt::routes_with_proxy(crate::mgmt::ClientCertProxy {
            header: header.clone(),
            trusted: state.settings.trusted_proxies.clone(),
        }),
        None => crate::mgmt::routes(),
    }
}

async fn not_found(request: Request) -> Response {
    Problem::new(StatusCode::NOT_FOUND)
        .detail(format!(
            "no such endpoint: {} {}",
            request.method(),
            request.uri().path()
        ))
        .into_response()
}

/// Refuses a declared body over the limit (413) before reading it, bounds the handler's time
/// (503 after `request_timeout`), gives every 503 a `Retry-After` (`retry_after`), and
/// records the latency under the route pattern.
async fn limits_and_latency(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let endpoint = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let limit = state.settings.max_body_bytes;
    let response = if declared.is_some_and(|n| n > limit as u64) {
        Problem::new(StatusCode::PAYLOAD_TOO_LARGE)
            .detail(format!("the request body is larger than {limit} bytes"))
            .into_response()
    } else {
        match tokio::time::timeout(state.settings.request_timeout, next.run(request)).await {
            Ok(response) => response,
            Err(_) => {
                tracing::warn!(%endpoint, "request timed out");
                Problem::new(StatusCode::SERVICE_UNAVAILABLE)
                    .detail("the request took too long")
                    .into_response()
            }
        }
    };
    let response = with_retry_after(response, state.settings.retry_after);
    let elapsed = started.elapsed();
    state.metrics.record_request(&endpoint, elapsed);
    tracing::debug!(%endpoint, status = response.status().as_u16(), elapsed_ms = elapsed.as_millis() as u64, "request");
    response
}

/// A 503 says "try again later" (RFC 9110 §15.6.4); `Retry-After` says when (§10.2.3), unless
/// the handler said it already. Windows' OMA-DM client retries a session answered 503 on its
/// own (Microsoft's "OMA DM Client Connection Retry" lists 503 among the statuses it reconnects
/// on; a Windows Mobile page: INFERENCE for desktop Windows, whose poll schedule retries anyway).
fn with_retry_after(mut response: Response, after: std::time::Duration) -> Response {
    if response.status() == StatusCode::SERVICE_UNAVAILABLE
        && !response.headers().contains_key(header::RETRY_AFTER)
    {
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(after.as_secs().max(1)),
        );
    }
    response
}
