//! A Microsoft Graph-compatible subset under `/graph/v1.0/deviceManagement/managedDevices`, so
//! that scripts written for Intune work against Redeploy: list (with `$filter`, `$select`,
//! `$top`, `$skipToken`), get, and the `wipe`, `syncDevice`, `rebootNow` and `retire` actions.
//! Same bearer tokens and roles as `/api/v1`; errors in Graph's `{"error":{"code","message"}}`.
//! Property names and semantics follow Microsoft's Graph docs "managedDevice resource type",
//! "List managedDevices", "managedDevice: wipe" (intune-devices-manageddevice-wipe), and
//! "Use query parameters" for the OData options.

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::middleware::{from_fn, from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use http::{header, HeaderValue, StatusCode};
use redeploy_core::store::{device_sort_key, Cursor, DeviceQuery, DeviceSort};
use redeploy_core::{Action, ActionKind, ActionState, Device, DeviceId, JoinType};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::api::auth::{authenticate, Caller};
use crate::api::ApiError;
use crate::dto::ts;
use crate::problem::PROBLEM_JSON;
use crate::service::actions as service;
use crate::service::{devices, ServiceError};
use crate::state::AppState;

const BASE: &str = "/graph/v1.0/deviceManagement/managedDevices";
const DEFAULT_TOP: usize = 100;
const MAX_TOP: usize = 1000;
/// What Graph shows for a date that was never set.
const NEVER: &str = "0001-01-01T00:00:00Z";

/// Every property a managedDevice has here, in output order (also what `$select` accepts).
const PROPERTIES: &[&str] = &[
    "id",
    "deviceName",
    "serialNumber",
    "operatingSystem",
    "osVersion",
    "lastSyncDateTime",
    "userPrincipalName",
    "joinType",
    "azureADDeviceId",
    "manufacturer",
    "model",
    "enrolledDateTime",
    "managementState",
    "deviceActionResults",
];

/// Properties `$filter` may name; `lastSyncDateTime` compares as a date.
const FILTERABLE: &[&str] = &[
    "deviceName",
    "serialNumber",
    "osVersion",
    "userPrincipalName",
    "joinType",
    "operatingSystem",
    "lastSyncDateTime",
];

/// The Graph routes, merged into the app's router.
pub fn routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route(BASE, get(list_devices))
        .route(&format!("{BASE}/{{id}}"), get(get_device))
        .route(&format!("{BASE}/{{id}}/wipe"), post(wipe))
        .route(&format!("{BASE}/{{id}}/syncDevice"), post(sync_device))
        .route(&format!("{BASE}/{{id}}/rebootNow"), post(reboot_now))
        .route(&format!("{BASE}/{{id}}/retire"), post(retire))
        .route_layer(from_fn_with_state(state.clone(), authenticate))
        .layer(from_fn(graph_errors))
}

/// Rewrites the problem documents our shared code answers (auth, roles, store errors) into
/// Graph's error shape, keeping the status.
async fn graph_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    if !is_problem {
        return response;
    }
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    let problem: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let message = problem["detail"]
        .as_str()
        .or(problem["title"].as_str())
        .unwrap_or("error")
        .to_owned();
    let mut out = graph_error(parts.status, message);
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}

/// `{"error":{"code","message"}}` with Graph's code words for the status.
fn graph_error(status: StatusCode, message: impl Into<String>) -> Response {
    let code = match status {
        StatusCode::BAD_REQUEST => "BadRequest",
        StatusCode::UNAUTHORIZED => "Unauthorized",
        StatusCode::FORBIDDEN => "Forbidden",
        StatusCode::NOT_FOUND => "ResourceNotFound",
        StatusCode::CONFLICT => "Conflict",
        StatusCode::METHOD_NOT_ALLOWED => "MethodNotAllowed",
        StatusCode::PAYLOAD_TOO_LARGE => "RequestEntityTooLarge",
        StatusCode::SERVICE_UNAVAILABLE => "ServiceUnavailable",
        _ => "InternalServerError",
    };
    let body = json!({"error": {"code": code, "message": message.into()}});
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::bad_request(message)
}

// ---------------------------------------------------------------------------------------------
// Mapping our devices and actions onto Graph's managedDevice

/// Graph `joinType` words (managedDevice resource, beta `joinType` enum).
fn join_type(j: JoinType) -> &'static str {
    match j {
        JoinType::EntraJoined => "azureADJoined",
        JoinType::HybridJoined => "hybridAzureADJoined",
        JoinType::Registered => "azureADRegistered",
        JoinType::NotJoined | JoinType::Unknown => "unknown",
    }
}

/// Graph `actionName` of a device action result: the name of the Graph action that asks for it.
/// An Autopilot Reset is asked for through `wipe` (keepEnrollmentData), so it reads `wipe` too.
fn action_name(k: ActionKind) -> &'static str {
    match k {
        ActionKind::AutopilotReset
        | ActionKind::Wipe
        | ActionKind::WipeKeepProvisioning
        | ActionKind::WipeKeepUserData
        | ActionKind::WipeProtected => "wipe",
        ActionKind::Restart => "rebootNow",
        ActionKind::Sync => "syncDevice",
        ActionKind::Retire => "retire",
        ActionKind::SetLocalResetPolicy(_) => "setLocalResetPolicy",
    }
}

/// Our lifecycle onto Graph's `actionState` (`none|pending|canceled|active|done|failed|
/// notSupported`): not yet at the device = pending; at the device and not finished = active;
/// refused by preflight = notSupported (the device cannot do it as it is); expired = failed
/// (it never finished, and Graph has no "timed out").
fn action_state(s: ActionState) -> &'static str {
    match s {
        ActionState::Requested | ActionState::Pending => "pending",
        ActionState::Blocked => "notSupported",
        ActionState::Sent | ActionState::Acknowledged | ActionState::InProgress => "active",
        ActionState::Done => "done",
        ActionState::Failed | ActionState::Expired => "failed",
        ActionState::Canceled => "canceled",
    }
}

/// Graph `managementState`: a pending wipe or retire shows as such, otherwise `managed`
/// (`retireIssued` once the device unenrolled).
fn management_state(d: &Device, actions: &[Action]) -> &'static str {
    if d.unenrolled_at.is_some() {
        return "retireIssued";
    }
    let active = |f: fn(ActionKind) -> bool| {
        actions
            .iter()
            .any(|a| f(a.kind) && !a.state.is_terminal() && a.state != ActionState::Blocked)
    };
    if active(|k| k == ActionKind::Retire) {
        "retirePending"
    } else if active(|k| action_name(k) == "wipe") {
        "wipePending"
    } else {
        "managed"
    }
}

fn managed_device(d: &Device, actions: &[Action]) -> Value {
    let text = |v: &Option<String>| Value::String(v.clone().unwrap_or_default());
    json!({
        "id": d.id.to_string(),
        "deviceName": d.name,
        "serialNumber": text(&d.serial),
        "operatingSystem": "Windows",
        "osVersion": text(&d.os_version),
        "lastSyncDateTime": d.last_seen.map(ts).unwrap_or_else(|| NEVER.to_owned()),
        "userPrincipalName": text(&d.primary_user),
        "joinType": join_type(d.join_type),
        "azureADDeviceId": text(&d.aad_device_id),
        "manufacturer": text(&d.manufacturer),
        "model": text(&d.model),
        "enrolledDateTime": ts(d.enrolled_at),
        "managementState": management_state(d, actions),
        "deviceActionResults": actions.iter().map(|a| json!({
            "actionName": action_name(a.kind),
            "actionState": action_state(a.state),
            "startDateTime": ts(a.created_at),
            "lastUpdatedDateTime": ts(a.updated_at),
        })).collect::<Vec<_>>(),
    })
}

// ---------------------------------------------------------------------------------------------
// $filter: a small parser of our own for the subset scripts use

/// A parsed `$filter` expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    /// `field op literal`.
    Compare {
        field: String,
        op: CompareOp,
        value: String,
    },
    /// `startswith(field, 'prefix')`.
    StartsWith {
        field: String,
        prefix: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Ne,
    Ge,
    Le,
    Gt,
    Lt,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Text(String),
    Open,
    Close,
    Comma,
}

fn tokenize(input: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut chars = input.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' => {
                chars.next();
                out.push(Token::Open);
            }
            ')' => {
                chars.next();
                out.push(Token::Close);
            }
            ',' => {
                chars.next();
                out.push(Token::Comma);
            }
            '\'' => {
                chars.next();
                let mut text = String::new();
                loop {
                    match chars.next() {
                        // OData escapes a quote inside a string by doubling it.
                        Some('\'') if chars.peek() == Some(&'\'') => {
                            chars.next();
                            text.push('\'');
                        }
                        Some('\'') => break,
                        Some(ch) => text.push(ch),
                        None => return Err("a string literal is not closed".into()),
                    }
                }
                out.push(Token::Text(text));
            }
            _ => {
                let mut word = String::new();
                while let Some(&ch) = chars.peek() {
                    if ch.is_whitespace() || matches!(ch, '(' | ')' | ',' | '\'') {
                        break;
                    }
                    word.push(ch);
                    chars.next();
                }
                out.push(Token::Word(word));
            }
        }
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn keyword(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(w)) if w.eq_ignore_ascii_case(word))
    }

    fn expect(&mut self, want: Token, what: &str) -> Result<(), String> {
        match self.next() {
            Some(t) if t == want => Ok(()),
            other => Err(format!(
                "expected {what}, found {}",
                describe(other.as_ref())
            )),
        }
    }

    fn or_expr(&mut self) -> Result<Filter, String> {
        let mut left = self.and_expr()?;
        while self.keyword("or") {
            self.next();
            left = Filter::Or(Box::new(left), Box::new(self.and_expr()?));
        }
        Ok(left)
    }

    fn and_expr(&mut self) -> Result<Filter, String> {
        let mut left = self.term()?;
        while self.keyword("and") {
            self.next();
            left = Filter::And(Box::new(left), Box::new(self.term()?));
        }
        Ok(left)
    }

    fn field(&mut self) -> Result<String, String> {
        match self.next() {
            Some(Token::Word(w)) => FILTERABLE
                .iter()
                .find(|f| f.eq_ignore_ascii_case(&w))
                .map(|f| (*f).to_owned())
                .ok_or_else(|| {
                    format!(
                        "property {w:?} cannot be filtered on; supported: {}",
                        FILTERABLE.join(", ")
                    )
                }),
            other => Err(format!(
                "expected a property name, found {}",
                describe(other.as_ref())
            )),
        }
    }

    fn term(&mut self) -> Result<Filter, String> {
        if self.peek() == Some(&Token::Open) {
            self.next();
            let inner = self.or_expr()?;
            self.expect(Token::Close, "')'")?;
            return Ok(inner);
        }
        if self.keyword("startswith") {
            self.next();
            self.expect(Token::Open, "'(' after startswith")?;
            let field = self.field()?;
            self.expect(Token::Comma, "',' in startswith(property, 'prefix')")?;
            let prefix = match self.next() {
                Some(Token::Text(t)) => t,
                other => {
                    return Err(format!(
                        "startswith needs a quoted prefix, found {}",
                        describe(other.as_ref())
                    ))
                }
            };
            self.expect(Token::Close, "')' closing startswith")?;
            return Ok(Filter::StartsWith { field, prefix });
        }
        let field = self.field()?;
        let op = match self.next() {
            Some(Token::Word(w)) => match w.to_ascii_lowercase().as_str() {
                "eq" => CompareOp::Eq,
                "ne" => CompareOp::Ne,
                "ge" => CompareOp::Ge,
                "le" => CompareOp::Le,
                "gt" => CompareOp::Gt,
                "lt" => CompareOp::Lt,
                other => return Err(format!("operator {other:?} is not supported (eq, ne, ge, le, gt, lt, startswith, and, or)")),
            },
            other => return Err(format!("expected an operator after {field}, found {}", describe(other.as_ref()))),
        };
        let is_date = field == "lastSyncDateTime";
        let value = match self.next() {
            Some(Token::Text(t)) => t,
            // OData writes DateTimeOffset literals unquoted.
            Some(Token::Word(w)) if is_date => w,
            other => {
                return Err(format!(
                    "expected a quoted value after {field}, found {}",
                    describe(other.as_ref())
                ))
            }
        };
        if is_date {
            OffsetDateTime::parse(&value, &Rfc3339)
                .map_err(|_| format!("{value:?} is not a date-time like 2026-01-31T00:00:00Z"))?;
        } else if !matches!(op, CompareOp::Eq | CompareOp::Ne) {
            return Err(format!(
                "{field} supports eq, ne and startswith; ordering is only for lastSyncDateTime"
            ));
        }
        Ok(Filter::Compare { field, op, value })
    }
}

fn describe(t: Option<&Token>) -> String {
    match t {
        None => "the end".into(),
        Some(Token::Word(w)) => format!("{w:?}"),
        Some(Token::Text(t)) => format!("'{t}'"),
        Some(Token::Open) => "'('".into(),
        Some(Token::Close) => "')'".into(),
        Some(Token::Comma) => "','".into(),
    }
}

/// Parses a `$filter` value; the error says what is wrong.
pub fn parse_filter(input: &str) -> Result<Filter, String> {
    let mut p = Parser {
        tokens: tokenize(input)?,
        at: 0,
    };
    let filter = p.or_expr()?;
    if p.at < p.tokens.len() {
        return Err(format!(
            "unexpected {} after the expression",
            describe(p.peek())
        ));
    }
    Ok(filter)
}

impl Filter {
    /// Whether a managedDevice (as rendered) matches. Text compares case-insensitively, as
    /// Intune does; dates compare as instants.
    pub fn matches(&self, device: &Value) -> bool {
        match self {
            Filter::And(a, b) => a.matches(device) && b.matches(device),
            Filter::Or(a, b) => a.matches(device) || b.matches(device),
            Filter::StartsWith { field, prefix } => device[field.as_str()]
                .as_str()
                .unwrap_or_default()
                .to_lowercase()
                .starts_with(&prefix.to_lowercase()),
            Filter::Compare { field, op, value } => {
                let have = device[field.as_str()].as_str().unwrap_or_default();
                if field == "lastSyncDateTime" {
                    let (Ok(a), Ok(b)) = (
                        OffsetDateTime::parse(have, &Rfc3339),
                        OffsetDateTime::parse(value, &Rfc3339),
                    ) else {
                        return false;
                    };
                    return match op {
                        CompareOp::Eq => a == b,
                        CompareOp::Ne => a != b,
                        CompareOp::Ge => a >= b,
                        CompareOp::Le => a <= b,
                        CompareOp::Gt => a > b,
                        CompareOp::Lt => a < b,
                    };
                }
                let equal = have.to_lowercase() == value.to_lowercase();
                match op {
                    CompareOp::Ne => !equal,
                    _ => equal,
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Handlers

type GraphResult<T> = Result<T, ApiError>;

/// Every action of device `id` (a managedDevice's wipe and reset states come from them).
async fn actions_of(state: &AppState, id: DeviceId) -> GraphResult<Vec<redeploy_core::Action>> {
    let filter = service::ActionFilter {
        device: Some(id),
        limit: u32::MAX,
        ..service::ActionFilter::default()
    };
    Ok(service::list(state, filter).await?)
}

fn device_id(text: &str) -> GraphResult<DeviceId> {
    DeviceId::parse(text).map_err(|_| ApiError::not_found(format!("no managedDevice {text:?}")))
}

/// `GET …/managedDevices`: `$top` (default 100, at most 1000), `$skipToken` from
/// `@odata.nextLink`, `$select`, `$filter`.
async fn list_devices(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> GraphResult<Response> {
    for key in params.keys() {
        if key.starts_with('$')
            && !["$top", "$skipToken", "$skiptoken", "$select", "$filter"].contains(&key.as_str())
        {
            return Err(bad_request(format!(
                "query option {key} is not supported; supported: $top, $skipToken, $select, $filter"
            )));
        }
    }
    let top = match params.get("$top") {
        None => DEFAULT_TOP,
        Some(t) => match t.parse::<usize>() {
            Ok(n) if (1..=MAX_TOP).contains(&n) => n,
            _ => {
                return Err(bad_request(format!(
                    "$top must be a number from 1 to {MAX_TOP}"
                )))
            }
        },
    };
    let filter = params
        .get("$filter")
        .map(|f| parse_filter(f).map_err(|e| bad_request(format!("invalid $filter: {e}"))))
        .transpose()?;
    let select = params.get("$select").map(|s| parse_select(s)).transpose()?;
    let skip = params
        .get("$skipToken")
        .or(params.get("$skiptoken"))
        .map(|t| Cursor::parse(t));
    if let Some(c) = &skip {
        c.decode(DeviceSort::Name)
            .map_err(|_| bad_request("invalid $skipToken"))?;
    }

    let mut query = DeviceQuery {
        sort: DeviceSort::Name,
        limit: 500,
        cursor: skip,
        ..DeviceQuery::default()
    };
    let mut items = Vec::new();
    let mut next = None;
    'pages: loop {
        let page = devices::page(&state, &query).await.map_err(|e| match e {
            ServiceError::Invalid(_) => bad_request("invalid $skipToken"),
            other => other.into(),
        })?;
        let n = page.items.len();
        for (i, d) in page.items.iter().enumerate() {
            let acts = actions_of(&state, d.id).await?;
            let value = managed_device(d, &acts);
            if filter.as_ref().is_some_and(|f| !f.matches(&value)) {
                continue;
            }
            items.push(select_fields(value, select.as_deref()));
            if items.len() == top {
                if i + 1 < n || page.next.is_some() {
                    next = Some(Cursor::after(
                        DeviceSort::Name,
                        &device_sort_key(d, DeviceSort::Name),
                        d.id,
                    ));
                }
                break 'pages;
            }
        }
        match page.next {
            Some(c) => query.cursor = Some(c),
            None => break,
        }
    }
    let mut body = Map::new();
    body.insert(
        "@odata.context".into(),
        Value::String(format!(
            "{}/graph/v1.0/$metadata#deviceManagement/managedDevices",
            state.public_url
        )),
    );
    body.insert("value".into(), Value::Array(items));
    if let Some(cursor) = next {
        body.insert(
            "@odata.nextLink".into(),
            Value::String(next_link(&state, &params, cursor.as_str())),
        );
    }
    Ok(Json(Value::Object(body)).into_response())
}

fn parse_select(text: &str) -> GraphResult<Vec<String>> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            PROPERTIES
                .iter()
                .find(|p| p.eq_ignore_ascii_case(s))
                .map(|p| (*p).to_owned())
                .ok_or_else(|| bad_request(format!("$select: unknown property {s:?}")))
        })
        .collect()
}

fn select_fields(value: Value, select: Option<&[String]>) -> Value {
    match (select, value) {
        (Some(fields), Value::Object(mut all)) => Value::Object(
            fields
                .iter()
                .filter_map(|f| all.remove(f).map(|v| (f.clone(), v)))
                .collect(),
        ),
        (_, value) => value,
    }
}

/// The same request with `$skipToken` set to continue after the last returned device.
fn next_link(state: &AppState, params: &HashMap<String, String>, token: &str) -> String {
    let base = format!("{}{BASE}", state.public_url);
    let Ok(mut url) = reqwest::Url::parse(&base) else {
        return format!("{base}?$skipToken={token}");
    };
    {
        let mut q = url.query_pairs_mut();
        let mut keys: Vec<&String> = params
            .keys()
            .filter(|k| !k.eq_ignore_ascii_case("$skipToken"))
            .collect();
        keys.sort();
        for k in keys {
            q.append_pair(k, &params[k]);
        }
        q.append_pair("$skipToken", token);
    }
    url.to_string()
}

/// `GET …/managedDevices/{id}`.
async fn get_device(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> GraphResult<Json<Value>> {
    let id = device_id(&id)?;
    let device = devices::load(&state, id).await.map_err(|e| match e {
        ServiceError::NotFound(_) => ApiError::not_found(format!("no managedDevice {id}")),
        other => other.into(),
    })?;
    let acts = actions_of(&state, id).await?;
    let mut value = managed_device(&device, &acts);
    if let Value::Object(map) = &mut value {
        map.insert(
            "@odata.context".into(),
            Value::String(format!(
                "{}/graph/v1.0/$metadata#deviceManagement/managedDevices/$entity",
                state.public_url
            )),
        );
    }
    Ok(Json(value))
}

/// Body of `POST …/wipe` (managedDevice: wipe). `macOsUnlockCode` and `persistEsimDataPlan`
/// have no meaning for Windows PCs and are accepted and ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WipeBody {
    #[serde(default)]
    keep_enrollment_data: Option<bool>,
    #[serde(default)]
    keep_user_data: Option<bool>,
    #[serde(default)]
    #[allow(dead_code)]
    mac_os_unlock_code: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    persist_esim_data_plan: Option<bool>,
}

/// Which of our actions a Graph wipe body asks for. Per "managedDevice: wipe": keepEnrollmentData
/// keeps the device enrolled and keepUserData keeps user data. On Windows, keeping enrollment but
/// not user data is what Autopilot Reset does; neither is a full wipe; user data only is
/// `doWipePersistUserData`; both has no Windows RemoteWipe equivalent.
pub fn wipe_kind(keep_enrollment: bool, keep_user_data: bool) -> Result<ActionKind, String> {
    match (keep_enrollment, keep_user_data) {
        (true, false) => Ok(ActionKind::AutopilotReset),
        (false, false) => Ok(ActionKind::Wipe),
        (false, true) => Ok(ActionKind::WipeKeepUserData),
        (true, true) => Err(
            "keepEnrollmentData and keepUserData together are not a Windows \
             wipe; use keepEnrollmentData alone for Autopilot Reset or keepUserData alone"
                .into(),
        ),
    }
}

async fn wipe(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> GraphResult<Response> {
    let body: WipeBody = if body.iter().all(u8::is_ascii_whitespace) {
        WipeBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| bad_request(format!("invalid JSON body: {e}")))?
    };
    let kind = wipe_kind(
        body.keep_enrollment_data.unwrap_or(false),
        body.keep_user_data.unwrap_or(false),
    )
    .map_err(bad_request)?;
    request(&state, &caller, &id, kind).await
}

async fn sync_device(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> GraphResult<Response> {
    request(&state, &caller, &id, ActionKind::Sync).await
}

async fn reboot_now(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> GraphResult<Response> {
    request(&state, &caller, &id, ActionKind::Restart).await
}

async fn retire(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> GraphResult<Response> {
    request(&state, &caller, &id, ActionKind::Retire).await
}

/// Creates the action like `POST /api/v1/devices/{id}/actions` (same roles: helpdesk for sync
/// and restart, operator for the rest) and answers 204 like Graph; a preflight refusal is 409
/// with the reasons (Graph has no "accepted but blocked").
async fn request(
    state: &AppState,
    caller: &Caller,
    id: &str,
    kind: ActionKind,
) -> GraphResult<Response> {
    let id = device_id(id)?;
    let action = service::request(state, caller, id, kind, "Graph ").await?;
    if action.state == ActionState::Blocked {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "the device cannot do this now: {}",
                action.reason.unwrap_or_default()
            ),
        ));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(name: &str, join: &str, sync: &str) -> Value {
        json!({"deviceName": name, "joinType": join, "lastSyncDateTime": sync,
               "serialNumber": "", "osVersion": "10.0.22631.1", "userPrincipalName": "",
               "operatingSystem": "Windows"})
    }

    #[test]
    fn filters_parse_and_match() {
        let a = device("PC-Lab-01", "azureADJoined", "2026-03-01T10:00:00Z");
        let b = device("Kiosk 'A'", "hybridAzureADJoined", NEVER);
        let f =
            parse_filter("startswith(deviceName,'pc-') and joinType eq 'azureADJoined'").unwrap();
        assert!(f.matches(&a) && !f.matches(&b));
        let f = parse_filter("deviceName eq 'Kiosk ''A''' or (joinType ne 'hybridAzureADJoined')")
            .unwrap();
        assert!(f.matches(&a) && f.matches(&b));
        let f = parse_filter("lastSyncDateTime ge 2026-02-01T00:00:00Z").unwrap();
        assert!(f.matches(&a) && !f.matches(&b));
        let f = parse_filter("lastSyncDateTime le '2026-02-01T00:00:00Z'").unwrap();
        assert!(!f.matches(&a) && f.matches(&b));
        assert!(parse_filter("OPERATINGSYSTEM EQ 'windows'")
            .unwrap()
            .matches(&a));
    }

    #[test]
    fn unsupported_filters_are_refused_with_a_reason() {
        for (bad, says) in [
            ("deviceName gt 'a'", "ordering"),
            ("model eq 'x'", "cannot be filtered"),
            ("deviceName eq", "expected a quoted value"),
            ("deviceName eq 'x", "not closed"),
            ("contains(deviceName,'x')", "cannot be filtered"),
            ("deviceName eq 'a' xor deviceName eq 'b'", "unexpected"),
            ("(deviceName eq 'a'", "')'"),
            ("lastSyncDateTime ge yesterday", "date-time"),
            ("deviceName has 'a'", "not supported"),
        ] {
            let err = parse_filter(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn wipe_flags_map_to_windows_actions() {
        assert_eq!(wipe_kind(true, false), Ok(ActionKind::AutopilotReset));
        assert_eq!(wipe_kind(false, false), Ok(ActionKind::Wipe));
        assert_eq!(wipe_kind(false, true), Ok(ActionKind::WipeKeepUserData));
        assert!(wipe_kind(true, true).is_err());
    }
}
