//! Signing in and out: the admin pastes an API token; a console session (stored hashed, shared by
//! every server process on the database) is opened and its random id set in the
//! `redeploy_session` cookie (HttpOnly, Secure, SameSite=Strict, 12 hours).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Form;
use http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use maud::html;

use super::{layout, origin_ok, page, see_other, signed_in, PageError, PostForm, Section};
use crate::service::console_sessions::{self, TokenCheck, SESSION_LIFETIME};
use crate::state::AppState;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "redeploy_session";

fn sign_in_form(error: Option<&str>, status: StatusCode) -> Response {
    page(
        status,
        layout(
            "Sign in",
            None,
            Section::None,
            html! {
                @if let Some(e) = error {
                    p.error role="alert" #sign-in-error { (e) }
                }
                form.card method="post" action="/console/sign-in" {
                    label for="token" { "API token" }
                    input #token type="password" name="token" autocomplete="off" required
                        aria-describedby="token-help";
                    p.help #token-help {
                        "Paste an API token. The first admin token was written by "
                        code { "redeploy serve" } " to " code { "./redeploy-data/admin-token" }
                        " (" code { "cat ./redeploy-data/admin-token" } "). Create more with "
                        code { "redeploy tokens create" } "; the token's role decides what you may do here."
                    }
                    button type="submit" { "Sign in" }
                }
            },
        ),
    )
}

pub async fn sign_in_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match signed_in(&state, &headers).await {
        Ok(Some(_)) => see_other("/console"),
        _ => sign_in_form(None, StatusCode::OK),
    }
}

pub async fn sign_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    // There is no session yet to hold a CSRF secret; SameSite=Strict and the Origin check keep
    // another site from signing a browser in with the attacker's token.
    if !origin_ok(&headers, &uri) {
        return Ok(sign_in_form(
            Some("This sign-in was posted from another site."),
            StatusCode::FORBIDDEN,
        ));
    }
    let token_text = form
        .iter()
        .find(|(n, _)| n == "token")
        .map(|(_, v)| v.trim())
        .unwrap_or_default();
    if token_text.is_empty() {
        return Ok(sign_in_form(
            Some("Paste an API token to sign in."),
            StatusCode::BAD_REQUEST,
        ));
    }
    let token = match console_sessions::check_token(&state, token_text).await? {
        TokenCheck::Valid(t) => t,
        TokenCheck::Revoked(t) => {
            console_sessions::refuse(&state, &t).await?;
            return Ok(sign_in_form(
                Some("This API token was revoked. Ask an admin for a new one."),
                StatusCode::UNAUTHORIZED,
            ));
        }
        TokenCheck::Unknown => {
            return Ok(sign_in_form(
                Some("Unknown API token. Check that you pasted the whole token."),
                StatusCode::UNAUTHORIZED,
            ))
        }
    };
    let id = console_sessions::open(&state, &token).await?;
    let cookie = format!(
        "{SESSION_COOKIE}={id}; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age={}",
        SESSION_LIFETIME.whole_seconds()
    );
    let mut response = see_other("/console");
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(response)
}

pub async fn sign_out(
    State(state): State<AppState>,
    form: PostForm,
) -> Result<Response, PageError> {
    console_sessions::close(&state, &form.signed.session).await?;
    let mut response = see_other("/console/sign-in");
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "redeploy_session=; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=0",
        ),
    );
    Ok(response.into_response())
}
