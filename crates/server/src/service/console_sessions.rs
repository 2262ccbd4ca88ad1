//! Console sessions (the web console's sign-in, as opposed to a device session): who a presented
//! API token is, opening a session for a token, an account or an OpenID Connect user (stored
//! hashed, shared by every server process on the database, 12 hours), finding the session a
//! cookie names, and closing it. Sign-ins are audited as `console.sign_in` (with how: `token`,
//! `password`, `openid`), sign-outs as `console.sign_out`.

use rand::RngCore;
use redeploy_core::{
    ApiToken, AuditOutcome, ConsoleSession, NewAuditEvent, Principal, SecretHash, SessionHolder,
};
use time::Duration;

use super::{Caller, Result};
use crate::state::AppState;

/// How long a console session lasts.
pub const SESSION_LIFETIME: Duration = Duration::hours(12);

/// What a presented API token secret is.
#[derive(Debug, Clone)]
pub enum TokenCheck {
    /// A token that may be used.
    Valid(ApiToken),
    /// A token an admin revoked.
    Revoked(ApiToken),
    /// No token has this secret.
    Unknown,
}

/// Looks the secret up by its hash (the REST API's bearer check and the console's sign-in).
pub async fn check_token(state: &AppState, secret: &str) -> Result<TokenCheck> {
    Ok(
        match state
            .store
            .api_token_by_hash(&SecretHash::of_secret(secret))
            .await?
        {
            Some(t) if t.revoked_at.is_none() => TokenCheck::Valid(t),
            Some(t) => TokenCheck::Revoked(t),
            None => TokenCheck::Unknown,
        },
    )
}

pub(crate) fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

/// Audits a sign-in of `actor` by `method` (`token`, `password`, `openid`) with its outcome
/// and, when refused, why.
pub(crate) async fn audit_sign_in(
    state: &AppState,
    actor: String,
    method: &str,
    outcome: AuditOutcome,
    why: Option<&str>,
) -> Result<()> {
    let details = match why {
        Some(why) => format!("{method}: {why}"),
        None => method.to_owned(),
    };
    state
        .store
        .append_audit(
            NewAuditEvent::new(state.clock.now(), actor, "console.sign_in")
                .outcome(outcome)
                .details(details),
        )
        .await?;
    Ok(())
}

/// Records a sign-in refused because the token was revoked.
pub async fn refuse(state: &AppState, token: &ApiToken) -> Result<()> {
    let actor = Principal::Token(token.clone()).actor();
    audit_sign_in(
        state,
        actor,
        "token",
        AuditOutcome::Refused,
        Some("revoked"),
    )
    .await
}

/// Opens a console session for `principal`, signed in by `method`: the session id for the
/// cookie (only its hash is stored). Expired sessions are swept here rather than by a timer:
/// sign-ins are rare.
pub async fn open(state: &AppState, principal: &Principal, method: &str) -> Result<String> {
    let now = state.clock.now();
    state.store.delete_expired_console_sessions(now).await?;
    let id = random_hex(32);
    let session = ConsoleSession {
        id_hash: SecretHash::of_secret(&id),
        holder: SessionHolder::from(principal),
        csrf_secret: random_hex(32),
        created_at: now,
        expires_at: now + SESSION_LIFETIME,
    };
    state.store.create_console_session(&session).await?;
    audit_sign_in(
        state,
        principal.actor(),
        method,
        AuditOutcome::Success,
        None,
    )
    .await?;
    Ok(id)
}

/// The live session whose id is `id`, with its caller; a session whose token was revoked or
/// whose account was disabled is deleted and not found.
pub async fn find(state: &AppState, id: &str) -> Result<Option<(ConsoleSession, Caller)>> {
    let hash = SecretHash::of_secret(id);
    let Some((session, principal)) = state
        .store
        .console_session(&hash, state.clock.now())
        .await?
    else {
        return Ok(None);
    };
    if principal.ended() {
        // A revoked token or a disabled account ends every console session it opened.
        state.store.delete_console_session(&hash).await?;
        return Ok(None);
    }
    Ok(Some((session, Caller { principal })))
}

/// Ends the session of `caller` (sign-out, audited).
pub async fn close(state: &AppState, session: &ConsoleSession, caller: &Caller) -> Result<()> {
    state.store.delete_console_session(&session.id_hash).await?;
    state
        .store
        .append_audit(NewAuditEvent::new(
            state.clock.now(),
            caller.actor(),
            "console.sign_out",
        ))
        .await?;
    Ok(())
}
