//! The OpenID Connect provider side of the test issuer, for the console's sign-in: the
//! authorization code flow (OpenID Connect Core 1.0 §3.1) with PKCE (RFC 7636), cut to what a
//! relying party's test needs. `GET /authorize` signs in the configured test user at once (no
//! page) and redirects to the client's `redirect_uri` with a code and the client's `state`
//! (RFC 6749 §4.1.2); `POST /oauth2/token` redeems a code once, checking the client's secret
//! (HTTP Basic, RFC 6749 §2.3.1, or in the form), the `redirect_uri` and the PKCE `code_verifier`
//! against the `S256` challenge (RFC 7636 §4.6), and answers with an ID token (Core §3.1.3.3)
//! carrying the request's `nonce`, `preferred_username`, `name` and a `groups` claim.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::extract::{Form, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::{unix_now, Inner, TOKEN_LIFETIME_SECS};

/// The person `/authorize` signs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignInUser {
    /// `sub`.
    pub subject: String,
    /// `preferred_username` and `name`.
    pub name: String,
    /// The `groups` claim.
    pub groups: Vec<String>,
}

/// How ID tokens are spoiled, to test that a relying party refuses them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum IdTokenFault {
    /// Sound tokens.
    #[default]
    None,
    /// The payload is changed after signing (more groups): the signature no longer matches.
    TamperedPayload,
    /// Issued for another client (`aud`).
    WrongAudience,
    /// Expired an hour ago.
    Expired,
    /// Carries another `nonce` than the authorization request's.
    WrongNonce,
    /// Signed by a key the issuer never publishes (its `kid` is in no key set).
    UnknownKey,
}

/// A code waiting to be redeemed.
#[derive(Debug, Clone)]
struct Grant {
    redirect_uri: String,
    nonce: Option<String>,
    challenge: Option<String>,
    user: SignInUser,
}

#[derive(Debug, Default)]
struct ProviderState {
    user: Option<SignInUser>,
    fault: IdTokenFault,
    codes: HashMap<String, Grant>,
}

/// The sign-in state of a running issuer.
#[derive(Debug, Default)]
pub(crate) struct Provider {
    state: Mutex<ProviderState>,
}

impl Provider {
    fn lock(&self) -> std::sync::MutexGuard<'_, ProviderState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn set_user(&self, user: Option<SignInUser>) {
        self.lock().user = user;
    }

    pub(crate) fn set_fault(&self, fault: IdTokenFault) {
        self.lock().fault = fault;
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct AuthorizeQuery {
    response_type: String,
    client_id: String,
    redirect_uri: String,
    state: Option<String>,
    nonce: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({ "error": error, "error_description": description })),
    )
        .into_response()
}

/// `redirect_uri` with `pairs` added to its query, or a 400 if it is not a URL.
fn back_to(redirect_uri: &str, pairs: &[(&str, &str)]) -> Response {
    match url::Url::parse(redirect_uri) {
        Ok(mut url) => {
            url.query_pairs_mut().extend_pairs(pairs);
            Redirect::to(url.as_str()).into_response()
        }
        Err(e) => oauth_error(StatusCode::BAD_REQUEST, "invalid_request", &e.to_string()),
    }
}

pub(crate) async fn authorize(
    State(inner): State<Arc<Inner>>,
    Query(q): Query<AuthorizeQuery>,
) -> Response {
    if !inner.available.load(Ordering::SeqCst) {
        return crate::unavailable();
    }
    // Errors about the client itself are shown, not sent back (RFC 6749 §4.1.2.1).
    if q.client_id != inner.config.client_id {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_client",
            "unknown client_id",
        );
    }
    let state = q.state.clone().unwrap_or_default();
    let with_state = |mut pairs: Vec<(&'static str, String)>| {
        if q.state.is_some() {
            pairs.push(("state", state.clone()));
        }
        let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        back_to(&q.redirect_uri, &pairs)
    };
    if q.response_type != "code" {
        return with_state(vec![("error", "unsupported_response_type".into())]);
    }
    if q.code_challenge.is_some() && q.code_challenge_method.as_deref() != Some("S256") {
        return with_state(vec![
            ("error", "invalid_request".into()),
            ("error_description", "only S256 PKCE challenges".into()),
        ]);
    }
    let mut provider = inner.sign_in.lock();
    let Some(user) = provider.user.clone() else {
        drop(provider);
        return with_state(vec![
            ("error", "access_denied".into()),
            ("error_description", "no test user is set".into()),
        ]);
    };
    let code = hex::encode(rand::random::<[u8; 16]>());
    provider.codes.insert(
        code.clone(),
        Grant {
            redirect_uri: q.redirect_uri.clone(),
            nonce: q.nonce.clone(),
            challenge: q.code_challenge.clone(),
            user,
        },
    );
    drop(provider);
    with_state(vec![("code", code)])
}

#[derive(Debug, Deserialize)]
pub(crate) struct TokenForm {
    grant_type: String,
    code: Option<String>,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// The client id and secret from HTTP Basic (form-urlencoded parts, RFC 6749 §2.3.1) or the form.
fn client_credentials(headers: &HeaderMap, form: &TokenForm) -> Option<(String, String)> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| {
            let (id, secret) = text.split_once(':')?;
            let decode = |s: &str| {
                url::form_urlencoded::parse(format!("x={s}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
            };
            Some((decode(id)?, decode(secret)?))
        });
    basic.or_else(|| Some((form.client_id.clone()?, form.client_secret.clone()?)))
}

pub(crate) async fn token(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Response {
    if !inner.available.load(Ordering::SeqCst) {
        return crate::unavailable();
    }
    let config = &inner.config;
    if client_credentials(&headers, &form)
        != Some((config.client_id.clone(), config.client_secret.clone()))
    {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "wrong client credentials",
        );
    }
    if form.grant_type != "authorization_code" {
        return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", "");
    }
    // A code is redeemed once, whatever happens next (RFC 6749 §4.1.2).
    let (grant, fault) = {
        let mut provider = inner.sign_in.lock();
        let grant = form.code.as_deref().and_then(|c| provider.codes.remove(c));
        (grant, provider.fault)
    };
    let Some(grant) = grant else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "unknown or used code",
        );
    };
    if form.redirect_uri.as_deref() != Some(grant.redirect_uri.as_str()) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "redirect_uri differs",
        );
    }
    if let Some(challenge) = &grant.challenge {
        let verifier = form.code_verifier.as_deref().unwrap_or_default();
        let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(Sha256::digest(verifier.as_bytes()));
        if &computed != challenge {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                "PKCE verification failed",
            );
        }
    }
    match id_token(&inner, &grant, fault) {
        Ok(id_token) => Json(json!({
            "access_token": hex::encode(rand::random::<[u8; 16]>()),
            "token_type": "Bearer",
            "expires_in": TOKEN_LIFETIME_SECS,
            "id_token": id_token,
        }))
        .into_response(),
        Err(e) => oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", &e),
    }
}

fn id_token(inner: &Inner, grant: &Grant, fault: IdTokenFault) -> Result<String, String> {
    let now = unix_now();
    let issued = if fault == IdTokenFault::Expired {
        now - 2 * TOKEN_LIFETIME_SECS
    } else {
        now
    };
    let audience = if fault == IdTokenFault::WrongAudience {
        "another-client".to_owned()
    } else {
        inner.config.client_id.clone()
    };
    let nonce = if fault == IdTokenFault::WrongNonce {
        Some("not-the-nonce".to_owned())
    } else {
        grant.nonce.clone()
    };
    let mut claims = json!({
        "iss": inner.url,
        "aud": audience,
        "sub": grant.user.subject,
        "iat": issued,
        "exp": issued + TOKEN_LIFETIME_SECS,
        "preferred_username": grant.user.name,
        "name": grant.user.name,
        "groups": grant.user.groups,
    });
    if let (Some(nonce), Some(map)) = (nonce, claims.as_object_mut()) {
        map.insert("nonce".into(), Value::String(nonce));
    }
    let token = if fault == IdTokenFault::UnknownKey {
        crate::SigningKey::generate()
            .and_then(|key| key.sign(&claims))
            .map_err(|e| e.to_string())?
    } else {
        inner.sign(&claims).map_err(|e| e.to_string())?
    };
    if fault != IdTokenFault::TamperedPayload {
        return Ok(token);
    }
    // The same header and signature over a payload that grants more.
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    claims["groups"] = json!(["admins", "lab-admins"]);
    parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&claims).map_err(|e| e.to_string())?);
    Ok(parts.join("."))
}
