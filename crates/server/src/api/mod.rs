//! The admin REST API under `/api/v1` (docs/design.md §7): bearer-token auth with roles,
//! devices with readiness, actions, fleet readiness, audit log, enrollment and API tokens, and
//! groups, bulk actions and batches, schedules, the Autopilot registry, and its OpenAPI
//! description generated from these handlers.

pub mod accounts;
pub mod auth;
pub mod autopilot;
pub mod batches;
mod common;
pub mod groups;
pub mod handlers;
pub mod schedules;
pub mod webhooks;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::Router;
use http::StatusCode;
use redeploy_core::{SessionError, StoreError};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::problem::Problem;
use crate::service::ServiceError;
use crate::state::AppState;

/// An error answer of the API: always a problem document.
#[derive(Debug)]
pub struct ApiError(pub Problem);

impl ApiError {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self(Problem::new(status).detail(detail))
    }
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.0.into_response()
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        let status = match &e {
            ServiceError::Invalid(_) => StatusCode::BAD_REQUEST,
            ServiceError::NotFound(_) => StatusCode::NOT_FOUND,
            ServiceError::Forbidden(_) => StatusCode::FORBIDDEN,
            ServiceError::Conflict(_) => StatusCode::CONFLICT,
            ServiceError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        };
        Self::new(status, e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ServiceError::from(e).into()
    }
}

impl From<SessionError> for ApiError {
    fn from(e: SessionError) -> Self {
        ServiceError::from(e).into()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> Self {
        Self::bad_request(format!("invalid JSON body: {}", e.body_text()))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        Self::bad_request(format!("invalid query: {}", e.body_text()))
    }
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The OpenAPI description of `/api/v1`.
#[derive(OpenApi)]
#[openapi(
    info(title = "Redeploy admin API", description = "Devices, Autopilot Reset and other actions (one device at a time, or a batch in waves), groups, schedules, the Autopilot registry, readiness, audit log, tokens and console accounts. Errors are RFC 9457 problem documents."),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    paths(
        handlers::list_devices,
        handlers::get_device,
        handlers::device_messages,
        handlers::request_action,
        handlers::set_local_reset,
        handlers::get_action,
        handlers::list_actions,
        handlers::cancel_action,
        handlers::retry_action,
        handlers::fleet_readiness,
        handlers::list_audit,
        handlers::list_enrollment_tokens,
        handlers::create_enrollment_token,
        handlers::list_api_tokens,
        handlers::create_api_token,
        handlers::revoke_api_token,
        accounts::list_accounts,
        accounts::create_account,
        accounts::disable_account,
        groups::list_groups,
        groups::create_group,
        groups::get_group,
        groups::rename_group,
        groups::delete_group,
        groups::change_members,
        groups::group_local_reset,
        batches::bulk_action,
        batches::list_batches,
        batches::get_batch,
        batches::steer_batch,
        schedules::list_schedules,
        schedules::create_schedule,
        schedules::get_schedule,
        schedules::update_schedule,
        schedules::delete_schedule,
        autopilot::import_autopilot,
        autopilot::list_autopilot,
        autopilot::set_primary_user,
        webhooks::list_webhooks,
        webhooks::create_webhook,
        webhooks::delete_webhook,
        webhooks::patch_webhook,
        webhooks::list_deliveries,
        webhooks::test_webhook,
    ),
    components(schemas(
        api::Problem, api::Device, api::PushChannel, api::DevicePage, api::Readiness, api::ReadinessReason,
        api::DeviceDetail, api::InventoryValue, api::Action, api::ActionKind, api::ActionList,
        api::NewAction, api::RetryAction, api::LocalResetPolicy, api::TimelineEntry, api::FleetReadiness,
        api::AuditEvent, api::AuditPage, api::DeviceMessage, api::DeviceMessageList,
        api::EnrollmentToken, api::NewEnrollmentToken,
        api::CreatedEnrollmentToken, api::EnrollmentTokenList, api::ApiToken, api::NewApiToken,
        api::CreatedApiToken, api::ApiTokenList, api::Account, api::NewAccount, api::AccountList,
        api::DeviceFilter, api::Group, api::GroupList, api::NewGroup, api::GroupPatch,
        api::GroupDetail, api::GroupMembersChange, api::DeviceResult, api::GroupLocalResetResult,
        api::BulkRequest, api::PlanCounts, api::PlanItem, api::BulkPlan, api::BatchCounts,
        api::BatchItem, api::BatchCreated, api::BatchWave, api::BatchStatus, api::BatchSummary, api::BatchPage, api::TimeWindow,
        api::Schedule, api::ScheduleList, api::NewSchedule, api::SchedulePatch, api::ImportError,
        api::AutopilotImportResult, api::AutopilotDevice, api::AutopilotDeviceList,
        api::PrimaryUser,
        api::Webhook, api::NewWebhook, api::WebhookPatch, api::CreatedWebhook, api::WebhookList,
        api::WebhookDelivery, api::WebhookDeliveryList, api::WebhookPayload, api::WebhookDevice,
    ))
)]
pub struct ApiDoc;

/// The OpenAPI document as served and as committed in `docs/openapi.json`.
pub fn openapi_json() -> String {
    let mut text = ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    text.push('\n');
    text
}

async fn openapi() -> Response {
    (
        [(http::header::CONTENT_TYPE, "application/json")],
        openapi_json(),
    )
        .into_response()
}

/// Every `/api/v1` route; all but `openapi.json` need a bearer token.
pub fn routes(state: &AppState) -> Router<AppState> {
    use handlers::*;
    let protected = Router::new()
        .route("/api/v1/devices", get(list_devices))
        .route("/api/v1/devices/{id}", get(get_device))
        .route("/api/v1/devices/{id}/actions", post(request_action))
        .route(
            "/api/v1/devices/{id}/messages",
            get(handlers::device_messages),
        )
        .route("/api/v1/devices/{id}/local-reset", post(set_local_reset))
        .route(
            "/api/v1/devices/{id}/primary-user",
            put(autopilot::set_primary_user),
        )
        .route(
            "/api/v1/groups",
            get(groups::list_groups).post(groups::create_group),
        )
        .route(
            "/api/v1/groups/{id}",
            get(groups::get_group)
                .patch(groups::rename_group)
                .delete(groups::delete_group),
        )
        .route("/api/v1/groups/{id}/members", post(groups::change_members))
        .route(
            "/api/v1/groups/{id}/local-reset",
            post(groups::group_local_reset),
        )
        .route("/api/v1/actions/bulk", post(batches::bulk_action))
        .route("/api/v1/batches", get(batches::list_batches))
        .route("/api/v1/batches/{id}", get(batches::get_batch))
        .route("/api/v1/batches/{id}/{verb}", post(batches::steer_batch))
        .route(
            "/api/v1/schedules",
            get(schedules::list_schedules).post(schedules::create_schedule),
        )
        .route(
            "/api/v1/schedules/{id}",
            get(schedules::get_schedule)
                .patch(schedules::update_schedule)
                .delete(schedules::delete_schedule),
        )
        .route(
            "/api/v1/autopilot/import",
            post(autopilot::import_autopilot),
        )
        .route("/api/v1/autopilot/devices", get(autopilot::list_autopilot))
        .route("/api/v1/actions", get(list_actions))
        .route("/api/v1/actions/{id}", get(get_action))
        .route("/api/v1/actions/{id}/cancel", post(cancel_action))
        .route("/api/v1/actions/{id}/retry", post(retry_action))
        .route("/api/v1/readiness", get(fleet_readiness))
        .route("/api/v1/audit", get(list_audit))
        .route(
            "/api/v1/enrollment-tokens",
            get(list_enrollment_tokens).post(create_enrollment_token),
        )
        .route(
            "/api/v1/tokens",
            get(list_api_tokens).post(create_api_token),
        )
        .route("/api/v1/tokens/{id}", delete(revoke_api_token))
        .route(
            "/api/v1/accounts",
            get(accounts::list_accounts).post(accounts::create_account),
        )
        .route(
            "/api/v1/accounts/{name}/disable",
            post(accounts::disable_account),
        )
        .route(
            "/api/v1/webhooks",
            get(webhooks::list_webhooks).post(webhooks::create_webhook),
        )
        .route(
            "/api/v1/webhooks/{id}",
            delete(webhooks::delete_webhook).patch(webhooks::patch_webhook),
        )
        .route(
            "/api/v1/webhooks/{id}/deliveries",
            get(webhooks::list_deliveries),
        )
        .route("/api/v1/webhooks/{id}/test", post(webhooks::test_webhook))
        .route_layer(from_fn_with_state(state.clone(), auth::authenticate));
    Router::new()
        .route("/api/v1/openapi.json", get(openapi))
        .merge(protected)
}
