//! The Autopilot device registry (`POST /api/v1/autopilot/import` with the Intune hardware-hash
//! CSV, `GET /api/v1/autopilot/devices`) and a device's primary user
//! (`PUT /api/v1/devices/{id}/primary-user`).

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use http::{header, HeaderMap, StatusCode};

use super::auth::Caller;
use super::handlers::{device_id, ApiResult};
use super::ApiError;
use crate::dto::*;
use crate::service::{autopilot, devices};
use crate::state::AppState;

/// Import the CSV admins export with `Get-WindowsAutopilotInfo` (columns `Device Serial
/// Number,Windows Product ID,Hardware Hash[,Group Tag[,Assigned User]]`) as `text/csv`. Valid
/// rows are stored (a known serial is replaced); refused rows come back with their line. 422 when
/// no row is valid.
#[utoipa::path(post, path = "/api/v1/autopilot/import", tag = "autopilot",
    request_body(content = String, content_type = "text/csv", description = "The Intune Autopilot CSV"),
    responses(
        (status = 200, body = api::AutopilotImportResult),
        (status = 403, body = api::Problem, content_type = "application/problem+json"),
        (status = 415, body = api::Problem, content_type = "application/problem+json"),
        (status = 422, body = api::Problem, content_type = "application/problem+json", description = "No valid row; the detail lists the lines"),
    ))]
pub async fn import_autopilot(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<api::AutopilotImportResult>> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if !content_type.starts_with("text/csv") && !content_type.starts_with("text/plain") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "send the Autopilot CSV as text/csv (got {:?})",
                if content_type.is_empty() {
                    "no content type"
                } else {
                    content_type.as_str()
                }
            ),
        ));
    }
    let parsed = autopilot::import(&state, &caller, &body).await?;
    let errors: Vec<api::ImportError> = parsed
        .errors
        .iter()
        .map(|e| api::ImportError {
            line: e.line as u64,
            message: e.message.clone(),
        })
        .collect();
    if parsed.records.is_empty() {
        let lines: Vec<String> = errors
            .iter()
            .take(10)
            .map(|e| format!("line {}: {}", e.line, e.message))
            .collect();
        let detail = if lines.is_empty() {
            "the CSV has no device rows".to_owned()
        } else {
            format!("no valid row: {}", lines.join("; "))
        };
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, detail));
    }
    let records = parsed.records;
    Ok(Json(api::AutopilotImportResult {
        imported: records.len() as u64,
        errors,
    }))
}

/// The Autopilot registry, ordered by serial, with the enrolled device of the same serial.
#[utoipa::path(get, path = "/api/v1/autopilot/devices", tag = "autopilot",
    responses((status = 200, body = api::AutopilotDeviceList)))]
pub async fn list_autopilot(
    State(state): State<AppState>,
) -> ApiResult<Json<api::AutopilotDeviceList>> {
    let items = autopilot::records(&state)
        .await?
        .into_iter()
        .map(|(r, device)| api::AutopilotDevice {
            serial: r.serial,
            product_id: r.product_id,
            group_tag: r.group_tag,
            assigned_user: r.assigned_user,
            device_id: device.map(|d| d.to_string()),
        })
        .collect();
    Ok(Json(api::AutopilotDeviceList { items }))
}

/// Set or clear a device's primary user, and whether it is shared (a shared device never gets
/// a primary user from whoever signs in).
#[utoipa::path(put, path = "/api/v1/devices/{id}/primary-user", tag = "devices",
    params(("id" = String, Path, description = "Device id")),
    request_body = api::PrimaryUser,
    responses(
        (status = 200, body = api::Device),
        (status = 400, body = api::Problem, content_type = "application/problem+json"),
        (status = 403, body = api::Problem, content_type = "application/problem+json"),
        (status = 404, body = api::Problem, content_type = "application/problem+json"),
    ))]
pub async fn set_primary_user(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Result<Json<api::PrimaryUser>, JsonRejection>,
) -> ApiResult<Json<api::Device>> {
    let id = device_id(&id)?;
    let Json(body) = body?;
    let device =
        devices::set_primary_user(&state, &caller, id, body.user.as_deref(), body.shared).await?;
    let r = devices::detail(&state, id).await?.readiness;
    Ok(Json(device_dto(&device, &r)))
}
