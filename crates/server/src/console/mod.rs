//! The web console under `/console`: server-rendered HTML (maud), the CSS and the small
//! auto-refresh script embedded in the binary, a session cookie opened by pasting an API token,
//! and CSRF protection on every form. Pages call `redeploy_core` and the store directly, the way
//! the REST handlers do; the console never calls the REST API over HTTP.

mod actions;
mod audit;
mod autopilot;
mod batches;
mod charts;
mod devices;
mod groups;
mod schedules;
mod sign_in;

use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use http::request::Parts;
use http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use maud::{html, Markup, DOCTYPE};
use redeploy_core::{ConsoleSession, Role};
use time::OffsetDateTime;

use crate::api::ApiError;
use crate::service::{console_sessions, Caller, ServiceError};
use crate::state::AppState;

pub use sign_in::SESSION_COOKIE;

/// Every console route, plus `GET /` → `/console`.
pub fn routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/console") }))
        .route("/console", get(devices::dashboard))
        .route("/console/", get(|| async { Redirect::to("/console") }))
        .route("/console/assets/{file}", get(asset))
        .merge(sign_in::routes())
        .route("/console/devices", get(devices::list))
        .route("/console/devices.csv", get(devices::csv))
        .route("/console/devices/bulk", post(devices::bulk))
        .route("/console/devices/{id}", get(devices::page))
        .route("/console/devices/{id}/reset", get(devices::confirm_reset))
        .route("/console/devices/{id}/wipe", get(devices::confirm_wipe))
        .route("/console/devices/{id}/actions", post(devices::request))
        .route(
            "/console/devices/{id}/local-reset",
            post(devices::local_reset),
        )
        .route(
            "/console/devices/{id}/primary-user",
            post(devices::primary_user),
        )
        .route("/console/actions", get(actions::list))
        .route("/console/actions/{id}", get(actions::page))
        .route("/console/actions/{id}/cancel", post(actions::cancel))
        .route("/console/actions/{id}/retry", post(actions::retry))
        .route("/console/batches", get(batches::list))
        .route("/console/batches/{id}", get(batches::page))
        .route("/console/batches/{id}/{verb}", post(batches::steer))
        .route("/console/groups", get(groups::list).post(groups::create))
        .route("/console/groups/{id}", get(groups::page))
        .route("/console/groups/{id}/reset", post(groups::reset))
        .route(
            "/console/schedules",
            get(schedules::list).post(schedules::create),
        )
        .route("/console/schedules/{id}/{verb}", post(schedules::change))
        .route("/console/audit", get(audit::list))
        .route("/console/audit.csv", get(audit::csv))
        .route(
            "/console/autopilot",
            get(autopilot::list).post(autopilot::import),
        )
        .route("/console/{*rest}", get(unknown_page))
        .route_layer(from_fn_with_state(state.clone(), error_pages_with_nav))
}

async fn unknown_page(Path(rest): Path<String>) -> PageError {
    PageError::not_found(format!("There is no console page /console/{rest}."))
}

/// What an error page said, so that [`error_pages_with_nav`] can draw it again with the nav.
#[derive(Clone, Debug)]
struct ErrorShown {
    status: StatusCode,
    message: String,
}

/// Error pages are made where the session is not at hand; for a signed-in admin they are drawn
/// again inside the full layout (nav, sign-out), so an error never strands them.
async fn error_pages_with_nav(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let headers = request.headers().clone();
    let response = next.run(request).await;
    let Some(shown) = response.extensions().get::<ErrorShown>().cloned() else {
        return response;
    };
    match signed_in(&state, &headers).await {
        Ok(Some(signed)) => error_page(&shown, Some(&signed)),
        _ => response,
    }
}

fn error_page(shown: &ErrorShown, signed: Option<&Signed>) -> Response {
    let title = match shown.status {
        StatusCode::FORBIDDEN => "Not allowed",
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::BAD_REQUEST => "Cannot do that",
        StatusCode::CONFLICT => "Cannot do that now",
        _ => "Something went wrong",
    };
    let mut response = page(
        shown.status,
        layout(
            title,
            signed,
            Section::None,
            html! {
                p.error role="alert" { (shown.message) }
                p { a href="/console" { "Back to the dashboard" } }
            },
        ),
    );
    response.extensions_mut().insert(shown.clone());
    response
}

// ---------------------------------------------------------------------------------------------
// Assets

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");
const ICON: &str = include_str!("assets/icon.svg");

/// The embedded assets. They change only with the binary, so browsers may keep them an hour;
/// the version in the URL (`?v=`) makes a new build fetch them again.
async fn asset(Path(file): Path<String>) -> Response {
    let (content_type, body) = match file.as_str() {
        "console.css" => ("text/css; charset=utf-8", CSS),
        "console.js" => ("text/javascript; charset=utf-8", JS),
        "icon.svg" => ("image/svg+xml", ICON),
        _ => return PageError::not_found(format!("no asset {file:?}")).into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

fn asset_url(file: &str) -> String {
    format!("/console/assets/{file}?v={}", env!("CARGO_PKG_VERSION"))
}

// ---------------------------------------------------------------------------------------------
// The signed-in admin

/// A request from a signed-in admin: the stored session and the API token it was opened with
/// (whose role applies, exactly as on the REST API).
#[derive(Clone, Debug)]
pub struct Signed {
    pub session: ConsoleSession,
    pub caller: Caller,
}

impl Signed {
    pub fn role(&self) -> Role {
        self.caller.role()
    }

    pub fn can(&self, role: Role) -> bool {
        self.role().includes(role)
    }

    /// `Caller::require` (audits `api.forbidden` on refusal), answered as a console page.
    pub async fn require(
        &self,
        state: &AppState,
        needed: Role,
        attempted: &str,
        device: Option<redeploy_core::DeviceId>,
    ) -> Result<(), PageError> {
        self.caller
            .require(state, needed, attempted, device)
            .await
            .map_err(PageError::from)
    }

    /// The hidden field every form carries.
    pub fn csrf_field(&self) -> Markup {
        html! { input type="hidden" name="csrf" value=(self.session.csrf_secret); }
    }
}

/// The session id from the `Cookie` header, if any.
fn session_cookie(headers: &HeaderMap) -> Option<String> {
    sign_in::cookie(headers, SESSION_COOKIE).map(str::to_owned)
}

/// Looks the cookie's session up; a session whose token was revoked (or account disabled) is
/// deleted and refused.
async fn signed_in(state: &AppState, headers: &HeaderMap) -> Result<Option<Signed>, PageError> {
    let Some(id) = session_cookie(headers) else {
        return Ok(None);
    };
    Ok(console_sessions::find(state, &id)
        .await?
        .map(|(session, caller)| Signed { session, caller }))
}

impl FromRequestParts<AppState> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        match signed_in(state, &parts.headers).await {
            Ok(Some(s)) => Ok(s),
            Ok(None) => Err(Redirect::to("/console/sign-in").into_response()),
            Err(e) => Err(e.into_response()),
        }
    }
}

/// `Origin`, when the browser sent one, must be this server (`scheme://host` of the request):
/// a cross-site form post fails here even before the CSRF token is compared.
fn origin_ok(headers: &HeaderMap, uri: &Uri) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    // HTTP/1.1 names the host in `Host`; HTTP/2 in the `:authority` the URI carries.
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
        .unwrap_or_default();
    let origin_host = origin.split_once("://").map(|(_, h)| h).unwrap_or("");
    !host.is_empty() && origin_host.eq_ignore_ascii_case(host)
}

/// Constant-time comparison of the posted CSRF token with the session's secret.
fn csrf_matches(posted: &str, secret: &str) -> bool {
    let (a, b) = (posted.as_bytes(), secret.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Checks the Origin header and the posted CSRF token against the session; 403 page otherwise.
pub fn check_csrf(
    signed: &Signed,
    headers: &HeaderMap,
    uri: &Uri,
    posted: Option<&str>,
) -> Result<(), PageError> {
    if !origin_ok(headers, uri) {
        return Err(PageError::new(
            StatusCode::FORBIDDEN,
            "this form was posted from another site (the Origin header does not match this server)",
        ));
    }
    match posted {
        Some(p) if csrf_matches(p, &signed.session.csrf_secret) => Ok(()),
        _ => Err(PageError::new(
            StatusCode::FORBIDDEN,
            "the form's security token is missing or does not match your session; reload the page and try again",
        )),
    }
}

/// The fields of a posted form, in order.
#[derive(Debug, Default)]
pub struct Fields(Vec<(String, String)>);

impl Fields {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a repeated field (ticked checkboxes), in order.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The trimmed value, `None` when missing or blank.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.get(name).map(str::trim).filter(|v| !v.is_empty())
    }

    /// A checkbox: present means checked.
    pub fn checked(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

/// A form posted by a signed-in admin whose Origin and CSRF token were checked.
#[derive(Debug)]
pub struct PostForm {
    pub signed: Signed,
    pub fields: Fields,
}

impl FromRequest<AppState> for PostForm {
    type Rejection = Response;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = request.into_parts();
        let signed = Signed::from_request_parts(&mut parts, state).await?;
        let (headers, uri) = (parts.headers.clone(), parts.uri.clone());
        let request = Request::from_parts(parts, body);
        let fields = match Form::<Vec<(String, String)>>::from_request(request, state).await {
            Ok(Form(f)) => Fields(f),
            // An unreadable body has no token either: refuse it the same way.
            Err(_) => Fields::default(),
        };
        check_csrf(&signed, &headers, &uri, fields.get("csrf"))
            .map_err(IntoResponse::into_response)?;
        Ok(PostForm { signed, fields })
    }
}

// ---------------------------------------------------------------------------------------------
// Pages and errors

/// The console's sections, for the nav.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    Dashboard,
    Devices,
    Actions,
    Batches,
    Groups,
    Schedules,
    Audit,
    Autopilot,
    None,
}

const NAV: &[(Section, &str, &str)] = &[
    (Section::Dashboard, "/console", "Dashboard"),
    (Section::Devices, "/console/devices", "Devices"),
    (Section::Actions, "/console/actions", "Actions"),
    (Section::Batches, "/console/batches", "Batches"),
    (Section::Groups, "/console/groups", "Groups"),
    (Section::Schedules, "/console/schedules", "Schedules"),
    (Section::Audit, "/console/audit", "Audit log"),
    (
        Section::Autopilot,
        "/console/autopilot",
        "Autopilot devices",
    ),
];

/// A whole page: head, skip link, nav (when signed in), `<main>` with the page's heading.
pub fn layout(title: &str, signed: Option<&Signed>, section: Section, body: Markup) -> Markup {
    layout_with(title, signed, section, None, body)
}

/// [`layout`] with `data-refresh` seconds on `<main>` (the script reloads the page; without
/// JavaScript the page has a plain "Refresh" link instead).
pub fn layout_with(
    title: &str,
    signed: Option<&Signed>,
    section: Section,
    refresh: Option<u32>,
    body: Markup,
) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " — Redeploy" }
                link rel="icon" href=(asset_url("icon.svg")) type="image/svg+xml";
                link rel="stylesheet" href=(asset_url("console.css"));
                script src=(asset_url("console.js")) defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/console" { "Redeploy" }
                    @if let Some(s) = signed {
                        nav aria-label="Main" {
                            ul {
                                @for (sec, href, label) in NAV {
                                    li {
                                        @if *sec == section {
                                            a href=(href) aria-current="page" { (label) }
                                        } @else {
                                            a href=(href) { (label) }
                                        }
                                    }
                                }
                            }
                        }
                        form.signout method="post" action="/console/sign-out" {
                            (s.csrf_field())
                            span.who { (s.caller.name()) " · " (s.role().as_str()) }
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                @match refresh {
                    Some(secs) => main #main data-refresh=(secs) { h1 { (title) } (body) },
                    None => main #main { h1 { (title) } (body) },
                }
            }
        }
    }
}

/// HTML response with the console's security headers (no framing, no sniffing, no caching of
/// pages that show fleet data).
pub fn page(status: StatusCode, markup: Markup) -> Response {
    let mut response = (status, Html(markup.into_string())).into_response();
    let h = response.headers_mut();
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; style-src 'self'; script-src 'self'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// 200 page.
pub fn ok(markup: Markup) -> Response {
    page(StatusCode::OK, markup)
}

/// 303 to `to` (after a successful post).
pub fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// A problem shown as a page, in words.
#[derive(Debug)]
pub struct PageError {
    pub status: StatusCode,
    pub message: String,
}

impl PageError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
}

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        let status = StatusCode::from_u16(e.0.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Self::new(status, e.0.detail.unwrap_or(e.0.title))
    }
}

impl From<ServiceError> for PageError {
    fn from(e: ServiceError) -> Self {
        ApiError::from(e).into()
    }
}

impl From<redeploy_core::StoreError> for PageError {
    fn from(e: redeploy_core::StoreError) -> Self {
        ServiceError::from(e).into()
    }
}

impl From<redeploy_core::SessionError> for PageError {
    fn from(e: redeploy_core::SessionError) -> Self {
        ServiceError::from(e).into()
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        error_page(
            &ErrorShown {
                status: self.status,
                message: self.message,
            },
            None,
        )
    }
}

pub type PageResult = Result<Response, PageError>;

// ---------------------------------------------------------------------------------------------
// Small shared pieces

/// `2026-11-26 13:42:05 UTC`: readable, unambiguous, sortable.
pub fn when(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

pub fn when_opt(at: Option<OffsetDateTime>, never: &str) -> String {
    at.map_or_else(|| never.to_owned(), when)
}

/// A state word in a badge (colour by family; the word itself carries the meaning).
pub fn state_badge(state: redeploy_core::ActionState) -> Markup {
    use redeploy_core::ActionState::*;
    let family = match state {
        Done => "good",
        Failed | Expired | Blocked => "bad",
        Canceled => "muted",
        _ => "busy",
    };
    html! { span class={ "badge " (family) } { (state.as_str()) } }
}

/// Human name of an action kind.
pub fn kind_label(kind: redeploy_core::ActionKind) -> &'static str {
    use redeploy_core::ActionKind::*;
    match kind {
        AutopilotReset => "Autopilot Reset",
        Wipe => "Wipe",
        WipeKeepProvisioning => "Wipe (keep provisioning)",
        WipeKeepUserData => "Wipe (keep user data)",
        WipeProtected => "Protected wipe",
        Restart => "Restart",
        Sync => "Sync",
        Retire => "Retire",
        SetLocalResetPolicy(true) => "Allow local reset",
        SetLocalResetPolicy(false) => "Forbid local reset",
    }
}

/// Flash message carried in `?msg=` after a redirect.
pub fn flash(msg: Option<&str>) -> Markup {
    html! {
        @if let Some(m) = msg.filter(|m| !m.is_empty()) {
            p.notice role="status" { (m) }
        }
    }
}

/// Encodes a query value (`application/x-www-form-urlencoded`, as axum's `Query` reads it).
pub fn enc(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}
