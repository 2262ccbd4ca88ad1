//! Request and response bodies of `/api/v1` (DESIGN.md "Contract": the device list, device and
//! action shapes are fixed). Timestamps are RFC 3339 strings, ids are UUID strings.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// An RFC 9457 problem document: every error of the API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// A URI naming the problem type; `about:blank` means "see the status code".
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// One reason a device is not ready for a remote Autopilot Reset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReadinessReason {
    /// Stable code, e.g. `hybrid_joined`, `winre_failure`, `not_seen_recently`.
    pub code: String,
    /// What it means and what to do.
    pub text: String,
}

/// Preflight for a remote Autopilot Reset, computed now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Readiness {
    pub ready: bool,
    pub reasons: Vec<ReadinessReason>,
}

/// A managed device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Device {
    pub id: String,
    pub name: String,
    pub serial: Option<String>,
    pub os_version: Option<String>,
    /// `entra_joined`, `hybrid_joined`, `registered`, `not_joined` or `unknown`.
    pub join_type: String,
    /// Last check-in (RFC 3339); null if never.
    pub last_seen: Option<String>,
    pub primary_user: Option<String>,
    pub readiness: Readiness,
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    /// The user signed in at the last check-in.
    pub current_user: Option<String>,
    pub enrolled_at: String,
    pub unenrolled_at: Option<String>,
    /// Local reset (CTRL+WIN+R) policy we asked for; null if never set.
    pub local_reset_desired: Option<bool>,
    /// Local reset policy the device reported.
    pub local_reset_reported: Option<bool>,
}

/// `GET /api/v1/devices`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DevicePage {
    pub items: Vec<Device>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next: Option<String>,
}

/// Query of `GET /api/v1/devices`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeviceListQuery {
    /// Case-insensitive substring of name, serial or primary user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q: Option<String>,
    /// Only this join type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join_type: Option<String>,
    /// Only devices that are (or are not) ready for a remote Autopilot Reset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<bool>,
    /// `name` (default), `last_seen`, `serial` or `enrolled_at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sort: Option<String>,
    /// Page size, 1..=500 (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// The `next` of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// One inventory node as last reported.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InventoryValue {
    pub uri: String,
    pub value: String,
    pub at: String,
}

/// `GET /api/v1/devices/{id}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeviceDetail {
    pub device: Device,
    /// Ordered by uri.
    pub inventory: Vec<InventoryValue>,
    /// Newest first.
    pub actions: Vec<Action>,
}

/// What an admin can ask a device to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    AutopilotReset,
    Wipe,
    WipeKeepProvisioning,
    WipeKeepUserData,
    WipeProtected,
    Restart,
    Sync,
    Retire,
    /// Only through `POST /api/v1/devices/{id}/local-reset`; shown on such actions.
    SetLocalResetPolicy,
}

/// `POST /api/v1/devices/{id}/actions`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NewAction {
    pub kind: ActionKind,
}

/// `POST /api/v1/devices/{id}/local-reset`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LocalResetPolicy {
    /// Whether CTRL+WIN+R Autopilot Reset is allowed on the device.
    pub allowed: bool,
}

/// One step of an action's history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TimelineEntry {
    /// A lifecycle word (see [`Action::state`]).
    pub state: String,
    pub at: String,
    pub note: Option<String>,
}

/// An action on a device and where it is in its lifecycle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Action {
    pub id: String,
    pub kind: ActionKind,
    pub device_id: String,
    /// `requested`, `blocked`, `pending`, `sent`, `acknowledged`, `in_progress`, `done`,
    /// `failed`, `canceled` or `expired`.
    pub state: String,
    /// Why it is blocked or failed.
    pub reason: Option<String>,
    /// The device's HRESULT, `0x%08X`.
    pub last_error: Option<String>,
    /// What `last_error` means, when known.
    pub last_error_meaning: Option<String>,
    /// For `set_local_reset_policy`: the policy asked for.
    pub allowed: Option<bool>,
    pub requested_by: String,
    pub created_at: String,
    pub updated_at: String,
    pub timeline: Vec<TimelineEntry>,
}

/// A list of actions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ActionList {
    pub items: Vec<Action>,
}

/// Query of `GET /api/v1/actions`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ActionListQuery {
    /// Only actions of this device (newest first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Only actions in this lifecycle state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// At most this many (default 100, at most 500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// `GET /api/v1/readiness`: fleet-wide preflight counts (enrolled devices).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FleetReadiness {
    pub total: u64,
    pub ready: u64,
    /// Devices per blocking reason code (a device may count under several).
    pub blocked_by_reason: BTreeMap<String, u64>,
}

/// One audit log entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditEvent {
    /// Position in the log (pass as `after` to continue).
    pub id: i64,
    pub at: String,
    pub actor: String,
    /// e.g. `action.create`, `action.cancel`, `api.forbidden`, `token.create`.
    pub action: String,
    pub targets: Vec<String>,
    /// `success`, `refused` or `failed`.
    pub outcome: String,
    pub details: String,
}

/// `GET /api/v1/audit`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    pub items: Vec<AuditEvent>,
    /// Pass as `after` for the next page; null when this page was not full.
    pub next: Option<i64>,
}

/// Query of `GET /api/v1/audit`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only events naming this device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Only events after this position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<i64>,
    /// At most this many (default 100, at most 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// `json` (default) or `csv`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
}

/// An enrollment token (the secret is shown only when created).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EnrollmentToken {
    pub id: String,
    pub label: String,
    pub expires_at: Option<String>,
    pub max_uses: Option<i64>,
    pub uses: i64,
    pub created_at: String,
}

/// `POST /api/v1/enrollment-tokens`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NewEnrollmentToken {
    pub label: String,
    /// RFC 3339; null = never expires.
    #[serde(default)]
    pub expires_at: Option<String>,
    /// null = unlimited.
    #[serde(default)]
    pub max_uses: Option<i64>,
}

/// The created enrollment token and its secret (shown once).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreatedEnrollmentToken {
    pub token: EnrollmentToken,
    pub secret: String,
}

/// A list of enrollment tokens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EnrollmentTokenList {
    pub items: Vec<EnrollmentToken>,
}

/// An API token (the secret is shown only when created).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ApiToken {
    pub id: String,
    pub name: String,
    /// `viewer`, `helpdesk`, `operator` or `admin`.
    pub role: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

/// `POST /api/v1/tokens`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NewApiToken {
    pub name: String,
    /// `viewer`, `helpdesk`, `operator` or `admin`.
    pub role: String,
}

/// The created API token and its secret (shown once).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreatedApiToken {
    pub token: ApiToken,
    pub secret: String,
}

/// A list of API tokens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ApiTokenList {
    pub items: Vec<ApiToken>,
}

/// A webhook subscription (the secret is shown only when the server generated it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Webhook {
    pub id: String,
    pub name: String,
    pub url: String,
    /// Subscribed events: `done`, `failed`, `stuck` (an action that expired).
    pub events: Vec<String>,
    pub enabled: bool,
    pub created_at: String,
}

/// `POST /api/v1/webhooks`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NewWebhook {
    /// `http://` or `https://` URL the events are POSTed to.
    pub url: String,
    /// Unique name; defaults to the URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The HMAC-SHA256 key; generated (and returned once) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Default: all of `done`, `failed`, `stuck`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<String>>,
}

/// The created webhook; `secret` is set only when the server generated it (shown once).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreatedWebhook {
    pub webhook: Webhook,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// A list of webhooks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WebhookList {
    pub items: Vec<Webhook>,
}

/// One event sent (or to be sent) to a webhook, with its attempts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WebhookDelivery {
    pub id: String,
    pub webhook_id: String,
    /// `done`, `failed`, `stuck` or `ping`.
    pub event: String,
    pub action_id: Option<String>,
    /// `pending`, `delivered` or `given_up`.
    pub status: String,
    pub attempts: u32,
    pub next_attempt_at: Option<String>,
    pub delivered_at: Option<String>,
    /// HTTP status of the last attempt.
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub created_at: String,
}

/// Deliveries of a webhook, newest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WebhookDeliveryList {
    pub items: Vec<WebhookDelivery>,
}

/// The device an event is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WebhookDevice {
    pub id: String,
    pub name: String,
    pub serial: Option<String>,
}

/// The JSON body POSTed to a webhook. Headers: `X-Redeploy-Event`, `X-Redeploy-Delivery`,
/// `X-Redeploy-Timestamp` (Unix seconds) and `X-Redeploy-Signature:
/// sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WebhookPayload {
    /// `done`, `failed`, `stuck` or `ping`.
    pub event: String,
    /// Same on every retry: receivers deduplicate on it.
    pub delivery_id: String,
    /// When the action reached its state (when the ping was asked for).
    pub occurred_at: String,
    /// Absent for `ping`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// Absent for `ping`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<WebhookDevice>,
}
