//! A Microsoft Graph-compatible subset under `/graph/v1.0/deviceManagement/managedDevices` (and
//! `/graph/beta/…`, the same), so that scripts written for Intune work against Redeploy: list
//! (`$filter`, `$orderby`, `$select`, `$top`, `$count`, `$skipToken`), `…/$count`, get, and the
//! `wipe`, `syncDevice`, `rebootNow` and `retire` actions. Same bearer tokens and roles as
//! `/api/v1`; errors in Graph's `{"error":{"code","message"}}`. Property names and semantics
//! follow Microsoft's Graph docs "managedDevice resource type", "List managedDevices",
//! "managedDevice: wipe" (intune-devices-manageddevice-wipe), and "Use query parameters" for the
//! OData options. Filters, order and pages run in the store's query (`DeviceQuery::condition`).

mod filter;
mod resource;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::middleware::{from_fn, from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use http::{header, HeaderValue, StatusCode};
use redeploy_core::store::{Cursor, DeviceQuery, DeviceSort};
use redeploy_core::{ActionKind, ActionState, DeviceId};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::HashMap;

use crate::api::auth::{authenticate, Caller};
use crate::api::ApiError;
use crate::problem::PROBLEM_JSON;
use crate::service::actions as service;
use crate::service::{devices, ServiceError};
use crate::state::AppState;

pub use filter::{parse_filter, parse_orderby, Filter};
pub use resource::wipe_kind;

/// The API versions served, the same under both names: scripts written for either work.
const VERSIONS: [&str; 2] = ["v1.0", "beta"];
const COLLECTION: &str = "deviceManagement/managedDevices";
const DEFAULT_TOP: u32 = 100;
const MAX_TOP: u32 = 1000;
/// The query options the list understands.
const OPTIONS: [&str; 7] = [
    "$top",
    "$skipToken",
    "$select",
    "$filter",
    "$orderby",
    "$count",
    "$skiptoken",
];

/// Which version's path a request came in on (`v1.0` or `beta`): links answer in the same.
#[derive(Clone, Copy)]
struct Version(&'static str);

/// The Graph routes, merged into the app's router.
pub fn routes(state: &AppState) -> Router<AppState> {
    VERSIONS
        .iter()
        .fold(Router::new(), |router, version| {
            let base = format!("/graph/{version}/{COLLECTION}");
            router.merge(
                Router::new()
                    .route(&base, get(list_devices))
                    .route(&format!("{base}/$count"), get(count_devices))
                    .route(&format!("{base}/{{id}}"), get(get_device))
                    .route(&format!("{base}/{{id}}/wipe"), post(wipe))
                    .route(&format!("{base}/{{id}}/syncDevice"), post(sync_device))
                    .route(&format!("{base}/{{id}}/rebootNow"), post(reboot_now))
                    .route(&format!("{base}/{{id}}/retire"), post(retire))
                    .layer(Extension(Version(version))),
            )
        })
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

/// The store query of a list's `$filter`, `$orderby`, `$top` and `$skipToken`; every option it
/// does not know is a 400 (never silently ignored: a script would act on the wrong devices).
fn list_query(state: &AppState, params: &HashMap<String, String>) -> GraphResult<DeviceQuery> {
    if let Some(key) = params
        .keys()
        .find(|k| k.starts_with('$') && !OPTIONS.contains(&k.as_str()))
    {
        return Err(bad_request(format!(
            "query option {key} is not supported; supported: $top, $skipToken, $select, \
             $filter, $orderby, $count"
        )));
    }
    let limit = match params.get("$top") {
        None => DEFAULT_TOP,
        Some(t) => t
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_TOP).contains(n))
            .ok_or_else(|| bad_request(format!("$top must be a number from 1 to {MAX_TOP}")))?,
    };
    let condition = params
        .get("$filter")
        .map(|f| {
            parse_filter(f)
                .and_then(|f| f.condition(state.clock.now()))
                .map_err(|e| bad_request(format!("invalid $filter: {e}")))
        })
        .transpose()?;
    let (sort, descending) = match params.get("$orderby") {
        None => (DeviceSort::Name, false),
        Some(o) => parse_orderby(o).map_err(bad_request)?,
    };
    let cursor = params
        .get("$skipToken")
        .or(params.get("$skiptoken"))
        .map(|t| Cursor::parse(t));
    if cursor.as_ref().is_some_and(|c| c.decode(sort).is_err()) {
        return Err(invalid_skip_token());
    }
    Ok(DeviceQuery {
        condition,
        sort,
        descending,
        limit,
        cursor,
        ..DeviceQuery::default()
    })
}

fn invalid_skip_token() -> ApiError {
    bad_request("invalid $skipToken (it belongs to a request with the same $orderby)")
}

/// Whether `$count=true` asks for `@odata.count`. The Graph SDKs send `ConsistencyLevel:
/// eventual` with it, which directory objects need; here every count is exact, so the header is
/// accepted and changes nothing.
fn wants_count(params: &HashMap<String, String>) -> GraphResult<bool> {
    match params
        .get("$count")
        .map(|c| c.to_ascii_lowercase())
        .as_deref()
    {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(bad_request(format!(
            "$count must be true or false, not {other:?}"
        ))),
    }
}

fn context(state: &AppState, version: Version, suffix: &str) -> Value {
    Value::String(format!(
        "{}/graph/{}/$metadata#{COLLECTION}{suffix}",
        state.public_url, version.0
    ))
}

/// `GET …/managedDevices`: `$top` (default 100, at most 1000), `$skipToken` from
/// `@odata.nextLink`, `$select`, `$filter`, `$orderby`, `$count`. One store query reads the page
/// (keyset paging, ties broken by id, so a nextLink never repeats or skips a device under any
/// order).
async fn list_devices(
    State(state): State<AppState>,
    Extension(version): Extension<Version>,
    Query(params): Query<HashMap<String, String>>,
) -> GraphResult<Response> {
    let query = list_query(&state, &params)?;
    let count = wants_count(&params)?;
    let select = params.get("$select").map(|s| parse_select(s)).transpose()?;
    let page = devices::page(&state, &query).await.map_err(|e| match e {
        ServiceError::Invalid(_) => invalid_skip_token(),
        other => other.into(),
    })?;
    let now = state.clock.now();
    let mut items = Vec::with_capacity(page.items.len());
    for d in &page.items {
        let acts = actions_of(&state, d.id).await?;
        items.push(select_fields(
            resource::managed_device(d, &acts, now),
            select.as_deref(),
        ));
    }
    let mut body = Map::new();
    body.insert("@odata.context".into(), context(&state, version, ""));
    if count {
        let n = devices::count(&state, &query).await?;
        body.insert("@odata.count".into(), Value::from(n));
    }
    body.insert("value".into(), Value::Array(items));
    if let Some(cursor) = page.next {
        body.insert(
            "@odata.nextLink".into(),
            Value::String(next_link(&state, version, &params, cursor.as_str())),
        );
    }
    Ok(Json(Value::Object(body)).into_response())
}

/// `GET …/managedDevices/$count`: the number of devices `$filter` keeps, as plain text (OData
/// v4.01 URL conventions §4.8, "Addressing the Count of a Collection").
async fn count_devices(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> GraphResult<Response> {
    if let Some(key) = params
        .keys()
        .find(|k| k.starts_with('$') && *k != "$filter")
    {
        return Err(bad_request(format!(
            "query option {key} is not supported on $count; supported: $filter"
        )));
    }
    let query = list_query(&state, &params)?;
    let n = devices::count(&state, &query).await?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        n.to_string(),
    )
        .into_response())
}

fn parse_select(text: &str) -> GraphResult<Vec<String>> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            resource::PROPERTIES
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
fn next_link(
    state: &AppState,
    version: Version,
    params: &HashMap<String, String>,
    token: &str,
) -> String {
    let base = format!("{}/graph/{}/{COLLECTION}", state.public_url, version.0);
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
    Extension(version): Extension<Version>,
    Path(id): Path<String>,
) -> GraphResult<Json<Value>> {
    let id = device_id(&id)?;
    let device = devices::load(&state, id).await.map_err(|e| match e {
        ServiceError::NotFound(_) => ApiError::not_found(format!("no managedDevice {id}")),
        other => other.into(),
    })?;
    let acts = actions_of(&state, id).await?;
    let mut value = resource::managed_device(&device, &acts, state.clock.now());
    if let Value::Object(map) = &mut value {
        map.insert(
            "@odata.context".into(),
            context(&state, version, "/$entity"),
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
    /// Beta's protected wipe (`doWipeProtected`).
    #[serde(default)]
    use_protected_wipe: Option<bool>,
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
        body.use_protected_wipe.unwrap_or(false),
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
