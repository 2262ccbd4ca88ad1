//! Enrollment tokens (what a PC presents to enroll) and API tokens (what scripts, the CLI and
//! console sign-ins present): listed, created and revoked by an admin, audited. A secret exists
//! only in the answer that creates it; the store keeps its hash.

use redeploy_core::{ApiToken, EnrollmentToken, Role, SecretHash, TokenId};
use time::OffsetDateTime;

use super::{audit, Caller, Result, ServiceError};
use crate::state::AppState;

/// Every enrollment token (admins only).
pub async fn enrollment_tokens(state: &AppState, caller: &Caller) -> Result<Vec<EnrollmentToken>> {
    caller
        .require(state, Role::Admin, "list enrollment tokens", None)
        .await?;
    Ok(state.store.list_enrollment_tokens().await?)
}

/// What a new enrollment token is to be.
#[derive(Debug, Clone)]
pub struct NewEnrollmentToken {
    pub label: String,
    pub expires_at: Option<OffsetDateTime>,
    pub max_uses: Option<i64>,
    /// The admin vouches that the PCs enrolling with it are Entra joined (issue #13 item 2).
    pub vouches_entra_join: bool,
}

/// Creates an enrollment token (admins only): the token and its secret.
pub async fn create_enrollment_token(
    state: &AppState,
    caller: &Caller,
    new: NewEnrollmentToken,
) -> Result<(EnrollmentToken, String)> {
    caller
        .require(state, Role::Admin, "create an enrollment token", None)
        .await?;
    if new.label.trim().is_empty() {
        return Err(ServiceError::Invalid("label must not be empty".into()));
    }
    if new.max_uses.is_some_and(|m| m < 1) {
        return Err(ServiceError::Invalid("max_uses must be at least 1".into()));
    }
    let secret = crate::bootstrap::new_secret("rdp_enroll_");
    let token = EnrollmentToken {
        id: TokenId::generate(),
        label: new.label.trim().to_owned(),
        secret_hash: SecretHash::of_secret(&secret),
        expires_at: new.expires_at,
        max_uses: new.max_uses,
        uses: 0,
        created_at: state.clock.now(),
        vouches_entra_join: new.vouches_entra_join,
    };
    state.store.create_enrollment_token(&token).await?;
    audit::record(
        state,
        caller,
        "enrollment_token.create",
        format!(
            "{} {:?}{}",
            token.id,
            token.label,
            if token.vouches_entra_join {
                "; vouches for the Entra join of the PCs enrolling with it"
            } else {
                ""
            }
        ),
    )
    .await?;
    Ok((token, secret))
}

/// Every API token (admins only).
pub async fn api_tokens(state: &AppState, caller: &Caller) -> Result<Vec<ApiToken>> {
    caller
        .require(state, Role::Admin, "list API tokens", None)
        .await?;
    Ok(state.store.list_api_tokens().await?)
}

/// Creates an API token with `role` (admins only): the token and its secret.
pub async fn create_api_token(
    state: &AppState,
    caller: &Caller,
    name: &str,
    role: Role,
) -> Result<(ApiToken, String)> {
    caller
        .require(state, Role::Admin, "create an API token", None)
        .await?;
    if name.trim().is_empty() {
        return Err(ServiceError::Invalid("name must not be empty".into()));
    }
    let secret = crate::bootstrap::new_secret("rdp_api_");
    let token = ApiToken {
        id: TokenId::generate(),
        name: name.trim().to_owned(),
        secret_hash: SecretHash::of_secret(&secret),
        role,
        created_at: state.clock.now(),
        revoked_at: None,
    };
    state.store.create_api_token(&token).await?;
    audit::record(
        state,
        caller,
        "token.create",
        format!("{} {:?} role {role}", token.id, token.name),
    )
    .await?;
    Ok((token, secret))
}

/// Revokes the API token `id` (admins only); console sessions opened with it end too.
pub async fn revoke_api_token(state: &AppState, caller: &Caller, id: TokenId) -> Result<()> {
    caller
        .require(state, Role::Admin, "revoke an API token", None)
        .await?;
    state.store.revoke_api_token(id, state.clock.now()).await?;
    audit::record(state, caller, "token.revoke", id.to_string()).await
}
