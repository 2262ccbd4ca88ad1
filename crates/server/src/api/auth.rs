//! Bearer-token authentication of `/api/v1` and the role each operation needs. A refused role is
//! audited (`api.forbidden`) so that an admin can see who tried what.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{header, StatusCode};
use redeploy_core::{ApiToken, AuditOutcome, DeviceId, NewAuditEvent, Role, SecretHash};

use super::ApiError;
use crate::problem::Problem;
use crate::state::AppState;

/// The authenticated caller, put in the request extensions by [`authenticate`].
#[derive(Clone, Debug)]
pub struct Caller {
    pub token: ApiToken,
}

impl Caller {
    /// How the caller appears in the audit log and on actions: `name (token id)`.
    pub fn actor(&self) -> String {
        format!("{} ({})", self.token.name, self.token.id)
    }

    /// `Ok` if the caller's role includes `needed`; otherwise audits `api.forbidden` with what was
    /// attempted and answers 403.
    pub async fn require(
        &self,
        state: &AppState,
        needed: Role,
        attempted: &str,
        device: Option<DeviceId>,
    ) -> Result<(), ApiError> {
        if self.token.role.includes(needed) {
            return Ok(());
        }
        state
            .store
            .append_audit(NewAuditEvent {
                at: state.clock.now(),
                actor: self.actor(),
                action: "api.forbidden".into(),
                targets: device.into_iter().collect(),
                batch: None,
                outcome: AuditOutcome::Refused,
                details: format!(
                    "{attempted}: needs role {needed}, token has {}",
                    self.token.role
                ),
            })
            .await?;
        Err(ApiError(Problem::new(StatusCode::FORBIDDEN).detail(
            format!(
                "{attempted} needs the {needed} role; this token has {}",
                self.token.role
            ),
        )))
    }
}

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
    let token = match state
        .store
        .api_token_by_hash(&SecretHash::of_secret(&secret))
        .await
    {
        Ok(Some(t)) => t,
        Ok(None) => return unauthorized("unknown API token"),
        Err(e) => return ApiError::from(e).into_response(),
    };
    if token.revoked_at.is_some() {
        return unauthorized("this API token was revoked");
    }
    request.extensions_mut().insert(Caller { token });
    next.run(request).await
}
