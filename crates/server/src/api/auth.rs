//! Bearer-token authentication of `/api/v1` (and the Graph subset): the token becomes the
//! [`Caller`] of the use cases in `crate::service`, which check its role.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{header, StatusCode};
use redeploy_core::Principal;

use super::ApiError;
use crate::problem::Problem;
use crate::service::console_sessions::{self, TokenCheck};
pub use crate::service::Caller;
use crate::state::AppState;

fn unauthorized(detail: &str) -> Response {
    let mut response = Problem::new(StatusCode::UNAUTHORIZED)
        .detail(detail)
        .into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        http::HeaderValue::from_static("Bearer"),
    );
    response
}

/// `Authorization: Bearer <token>` → the stored token with the same hash (as created by
/// `bootstrap`), not revoked → [`Caller`]; otherwise 401.
pub async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        })
        .filter(|t| !t.is_empty())
        .map(str::to_owned);
    let Some(secret) = presented else {
        return unauthorized("an `Authorization: Bearer <token>` header is required");
    };
    let token = match console_sessions::check_token(&state, &secret).await {
        Ok(TokenCheck::Valid(t)) => t,
        Ok(TokenCheck::Revoked(_)) => return unauthorized("this API token was revoked"),
        Ok(TokenCheck::Unknown) => return unauthorized("unknown API token"),
        Err(e) => return ApiError::from(e).into_response(),
    };
    request.extensions_mut().insert(Caller {
        principal: Principal::Token(token),
    });
    next.run(request).await
}
