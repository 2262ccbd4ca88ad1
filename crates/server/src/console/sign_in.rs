//! Signing in and out. Three ways, one page: through the OpenID Connect provider when one is
//! configured (`service::openid`: a link starts the flow, the provider sends the browser back to
//! the callback), with a local account's name and password (`service::accounts`), or by pasting
//! an API token (as scripts' owners always could). Each opens a console session (stored hashed,
//! shared by every server process on the database) whose random id is set in the
//! `redeploy_session` cookie (HttpOnly, Secure, SameSite=Strict, 12 hours).

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use http::request::Parts;
use http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use maud::html;
use redeploy_core::Principal;

use super::{layout, origin_ok, page, see_other, signed_in, PageError, PostForm, Section};
use crate::service::accounts::{self, PasswordSignIn};
use crate::service::console_sessions::{self, TokenCheck, SESSION_LIFETIME};
use crate::service::openid::{self, Callback, OpenIdRefusal, CALLBACK_PATH, FLOW_COOKIE};
use crate::state::AppState;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "redeploy_session";

/// The sign-in routes (merged into the console's).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/sign-in", get(sign_in_page).post(sign_in))
        .route("/console/sign-in/password", post(sign_in_with_password))
        .route("/console/sign-in/oidc", get(begin_openid))
        .route(CALLBACK_PATH, get(finish_openid))
        .route("/console/sign-out", post(sign_out))
}

fn sign_in_form(state: &AppState, error: Option<&str>, status: StatusCode) -> Response {
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
                @if let Some(oidc) = &state.settings.oidc {
                    p.card {
                        a.button #sign-in-oidc href="/console/sign-in/oidc" {
                            "Sign in with " (oidc.provider_name)
                        }
                    }
                }
                form.card method="post" action="/console/sign-in/password" {
                    h2 { "Account" }
                    label for="account-name" { "Name" }
                    input #account-name type="text" name="name" autocomplete="username" required;
                    label for="account-password" { "Password" }
                    input #account-password type="password" name="password"
                        autocomplete="current-password" required;
                    p.help { "An admin creates accounts with " code { "redeploy accounts create" } "." }
                    button type="submit" { "Sign in with password" }
                }
                form.card method="post" action="/console/sign-in" {
                    h2 { "API token" }
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
        _ => sign_in_form(&state, None, StatusCode::OK),
    }
}

/// The value of cookie `name` in the request, if any.
pub(super) fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value.trim())
        .filter(|v| !v.is_empty())
}

/// Opens a session for `principal` and answers with its cookie and `then`.
async fn open_session(
    state: &AppState,
    principal: &Principal,
    method: &str,
    mut then: Response,
) -> Result<Response, PageError> {
    let id = console_sessions::open(state, principal, method).await?;
    let cookie = format!(
        "{SESSION_COOKIE}={id}; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age={}",
        SESSION_LIFETIME.whole_seconds()
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        then.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(then)
}

/// A sign-in form posted from another site is refused: there is no session yet to hold a CSRF
/// secret, so SameSite=Strict and this Origin check keep another site from signing a browser in
/// with the attacker's credentials.
fn cross_site(state: &AppState, headers: &HeaderMap, uri: &Uri) -> Option<Response> {
    (!origin_ok(headers, uri)).then(|| {
        sign_in_form(
            state,
            Some("This sign-in was posted from another site."),
            StatusCode::FORBIDDEN,
        )
    })
}

fn field<'f>(form: &'f [(String, String)], name: &str) -> &'f str {
    form.iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_default()
}

pub async fn sign_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    if let Some(refused) = cross_site(&state, &headers, &uri) {
        return Ok(refused);
    }
    let token_text = field(&form, "token").trim();
    if token_text.is_empty() {
        return Ok(sign_in_form(
            &state,
            Some("Paste an API token to sign in."),
            StatusCode::BAD_REQUEST,
        ));
    }
    let token = match console_sessions::check_token(&state, token_text).await? {
        TokenCheck::Valid(t) => t,
        TokenCheck::Revoked(t) => {
            console_sessions::refuse(&state, &t).await?;
            return Ok(sign_in_form(
                &state,
                Some("This API token was revoked. Ask an admin for a new one."),
                StatusCode::UNAUTHORIZED,
            ));
        }
        TokenCheck::Unknown => {
            return Ok(sign_in_form(
                &state,
                Some("Unknown API token. Check that you pasted the whole token."),
                StatusCode::UNAUTHORIZED,
            ))
        }
    };
    open_session(
        &state,
        &Principal::Token(token),
        "token",
        see_other("/console"),
    )
    .await
}

/// The client's address, when the connection has one (in-process tests have none).
pub struct ClientIp(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

pub async fn sign_in_with_password(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    ClientIp(client): ClientIp,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    if let Some(refused) = cross_site(&state, &headers, &uri) {
        return Ok(refused);
    }
    let (name, password) = (field(&form, "name"), field(&form, "password"));
    if name.trim().is_empty() || password.is_empty() {
        return Ok(sign_in_form(
            &state,
            Some("Type the account's name and password."),
            StatusCode::BAD_REQUEST,
        ));
    }
    match accounts::sign_in(&state, name, password, client).await? {
        PasswordSignIn::Accepted(account) => {
            open_session(
                &state,
                &Principal::Account(account),
                "password",
                see_other("/console"),
            )
            .await
        }
        PasswordSignIn::Refused => Ok(sign_in_form(
            &state,
            Some("The name or the password is wrong."),
            StatusCode::UNAUTHORIZED,
        )),
        PasswordSignIn::Throttled(wait) => {
            let secs = wait.as_secs().max(1);
            let mut response = sign_in_form(
                &state,
                Some(&format!(
                    "Too many failed sign-ins. Try again in {secs} seconds."
                )),
                StatusCode::TOO_MANY_REQUESTS,
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            Ok(response)
        }
    }
}

fn flow_cookie(value: &str, max_age: u64) -> Option<HeaderValue> {
    // SameSite=Lax, not Strict: the provider's redirect back is a cross-site navigation, on
    // which a browser sends Lax cookies but not Strict ones.
    HeaderValue::from_str(&format!(
        "{FLOW_COOKIE}={value}; HttpOnly; Secure; SameSite=Lax; Path=/console/sign-in/oidc; Max-Age={max_age}"
    ))
    .ok()
}

fn refused_openid(state: &AppState, refusal: &OpenIdRefusal) -> Response {
    let status = match refusal {
        OpenIdRefusal::ProviderUnreachable(_) => StatusCode::BAD_GATEWAY,
        OpenIdRefusal::NoRole { .. } => StatusCode::FORBIDDEN,
        _ => StatusCode::UNAUTHORIZED,
    };
    let mut response = sign_in_form(state, Some(&refusal.to_string()), status);
    if let Some(clear) = flow_cookie("", 0) {
        response.headers_mut().append(header::SET_COOKIE, clear);
    }
    response
}

/// `GET /console/sign-in/oidc`: to the provider, with the flow cookie. A link rather than a
/// form: the console's `form-action 'self'` would stop a form's redirect to the provider.
pub async fn begin_openid(State(state): State<AppState>) -> Result<Response, PageError> {
    let Some(oidc) = state.settings.oidc.clone() else {
        return Err(PageError::not_found(
            "Single sign-on is not configured on this server (setting [oidc]).",
        ));
    };
    match openid::begin(&state, &oidc).await {
        Ok((url, flow)) => {
            let mut response = see_other(&url);
            if let Some(v) = flow_cookie(&flow, openid::FLOW_LIFETIME.as_secs()) {
                response.headers_mut().append(header::SET_COOKIE, v);
            }
            Ok(response)
        }
        Err(refusal) => Ok(refused_openid(&state, &refusal)),
    }
}

/// The provider's redirect back. On success the session cookie is set on a page that moves on
/// to the dashboard itself: a browser withholds SameSite=Strict cookies from a redirect chain
/// that passed through another site, but sends them on a navigation this page starts.
pub async fn finish_openid(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(callback): Query<Callback>,
) -> Result<Response, PageError> {
    let Some(oidc) = state.settings.oidc.clone() else {
        return Err(PageError::not_found(
            "Single sign-on is not configured on this server (setting [oidc]).",
        ));
    };
    let flow = cookie(&headers, FLOW_COOKIE);
    let user = match openid::finish(&state, &oidc, flow, &callback).await? {
        Ok(user) => user,
        Err(refusal) => return Ok(refused_openid(&state, &refusal)),
    };
    let onward = page(
        StatusCode::OK,
        html! {
            (maud::DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta http-equiv="refresh" content="0; url=/console";
                    title { "Signed in — Redeploy" }
                    link rel="icon" href=(super::asset_url("icon.svg")) type="image/svg+xml";
                }
                body { main { h1 { "Signed in" } p { a href="/console" { "Go to the dashboard" } } } }
            }
        },
    );
    let mut response = open_session(&state, &Principal::OpenId(user), "openid", onward).await?;
    if let Some(clear) = flow_cookie("", 0) {
        response.headers_mut().append(header::SET_COOKIE, clear);
    }
    Ok(response)
}

pub async fn sign_out(
    State(state): State<AppState>,
    form: PostForm,
) -> Result<Response, PageError> {
    console_sessions::close(&state, &form.signed.session, &form.signed.caller).await?;
    let mut response = see_other("/console/sign-in");
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "redeploy_session=; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=0",
        ),
    );
    Ok(response.into_response())
}
