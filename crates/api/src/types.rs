//! Request and response bodies of `/api/v1` (docs/design.md §7: the device list, device and
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
    /// What the join type rests on: `claimed` (only the PC's own EnrollmentType: never enough
    /// for an Autopilot Reset), `entra_token` (an Entra device token validated at enrollment
    /// named this device) or `admin_token` (it enrolled with an enrollment token an admin
    /// created to vouch for Entra join).
    #[serde(default)]
    pub join_evidence: String,
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
    /// A shared (multi-user) device: no user becomes primary on their own.
    #[serde(default)]
    pub shared: bool,
    /// Expiry of the device's current MDM client certificate (RFC 3339); the PC renews it
    /// before then. Null if unknown.
    #[serde(default)]
    pub certificate_expires_at: Option<String>,
    /// The user of the last sign-in a check-in reported (kept after they sign out).
    #[serde(default)]
    pub last_sign_in_user: Option<String>,
    /// When the server first saw that sign-in (RFC 3339); null if never.
    #[serde(default)]
    pub last_sign_in_at: Option<String>,
    /// The PC's WNS push channel (shown on one device; null in lists, without `[push]`, or
    /// when the PC never reported one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push: Option<PushChannel>,
}

/// A PC's WNS push channel as it last reported it (`DMClient/Provider/<id>/Push`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PushChannel {
    /// `active` (the server pushes to it), `missing` (no channel, or Push/Status not 0),
    /// `refused` (not https on an allowed host) or `expired` (WNS answered 410).
    pub state: String,
    /// The PC's `Push/Status` (0 success … 8 unknown; ITPRO dmclient-csp.md).
    pub device_status: Option<i64>,
    /// When the PC reported it (RFC 3339).
    pub seen_at: String,
    /// When its state last changed (RFC 3339).
    pub updated_at: String,
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
    /// Other enrolled devices reporting the same hardware id, serial or Entra device id (two
    /// PCs cloned from one image, a PC re-enrolled as a new record): empty when none.
    #[serde(default)]
    pub identity_clashes: Vec<IdentityClash>,
}

/// An identity attribute this device shares with another enrolled device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct IdentityClash {
    /// The other device's id.
    pub device: String,
    /// Its name.
    pub name: String,
    /// `hw_dev_id`, `serial` or `aad_device_id`.
    pub attribute: String,
    /// The shared value.
    pub value: String,
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

impl ActionKind {
    /// Whether the kind erases the PC (Autopilot Reset or a wipe): what a group request must
    /// confirm by typing the group's name. The wire twin of `redeploy_core::action::is_erasing`
    /// (this crate does not depend on the core); a server test checks that both agree.
    pub fn erases_the_pc(self) -> bool {
        matches!(
            self,
            Self::AutopilotReset
                | Self::Wipe
                | Self::WipeKeepProvisioning
                | Self::WipeKeepUserData
                | Self::WipeProtected
        )
    }
}

/// `POST /api/v1/devices/{id}/actions`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NewAction {
    pub kind: ActionKind,
}

/// `POST /api/v1/actions/{id}/retry` (the body is optional).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RetryAction {
    /// Why the admin retries, kept in the audit log and the new action's timeline. Given, it
    /// also overrides preflight's WinRE checks (an earlier 0x80070032 failure, or the PC
    /// reporting WinRE not configured): for a PC fixed with `reagentc /enable` that cannot
    /// report it. Every other preflight reason still applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
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
    /// The batch (bulk request) it belongs to; null for a single request.
    #[serde(default)]
    pub batch_id: Option<String>,
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
    /// What brought the action to its PC, with `[push]` configured: `push` (a session that
    /// started after a push for it was delivered) or `poll` (the PC came on its own); null
    /// before it reached the PC, or in lists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub woken_by: Option<String>,
}

/// A list of actions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ActionList {
    pub items: Vec<Action>,
    /// The `cursor` of the next page; null on the last page.
    #[serde(default)]
    pub next: Option<String>,
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
    /// Only actions of this batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<String>,
    /// Page size, 1..=500 (default 100). Newest first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// The `next` of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// `GET /api/v1/readiness`: fleet-wide preflight counts (enrolled devices).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FleetReadiness {
    pub total: u64,
    pub ready: u64,
    /// Devices per blocking reason code (a device may count under several).
    pub blocked_by_reason: BTreeMap<String, u64>,
    /// Enrolled devices whose MDM certificate has expired (they can no longer check in).
    #[serde(default)]
    pub certificates_expired: u64,
    /// Enrolled devices whose MDM certificate expires within 30 days.
    #[serde(default)]
    pub certificates_expiring_30d: u64,
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
    /// The bulk request (batch) the entry belongs to, if any.
    #[serde(default)]
    pub batch: Option<String>,
}

/// One message of a device's support trail: what the PC sent (`in`) or what the server answered
/// (`out`), secrets redacted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeviceMessage {
    /// RFC 3339, UTC.
    pub at: String,
    /// `in` (from the device) or `out` (our answer).
    pub direction: String,
    /// The OMA-DM SessionID and MsgID of the message (empty when it could not be read).
    pub session_id: String,
    pub msg_id: String,
    /// Size on the wire in bytes (before redaction; a body over 64 KiB is cut).
    pub size: u64,
    /// The message, redacted.
    pub body: String,
}

/// `GET /api/v1/devices/{id}/messages`: newest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeviceMessageList {
    pub items: Vec<DeviceMessage>,
}

/// Query of `GET /api/v1/devices/{id}/messages`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeviceMessagesQuery {
    /// How many, newest first (1–200, default 20).
    pub limit: Option<u32>,
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
    /// Continue after this position in the listing order (the `next` of the previous page):
    /// events with a greater id for `asc`, a smaller one for `desc`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<i64>,
    /// At most this many (default 100, at most 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// `asc` (default: oldest first) or `desc` (newest first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<String>,
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
    /// The admin vouches that the PCs enrolling with it are Entra joined: their join type rests
    /// on this (`join_evidence` `admin_token`) instead of their own claim.
    #[serde(default)]
    pub vouches_entra_join: bool,
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
    /// Vouch that the PCs enrolling with it are Entra joined (default false: their join rests
    /// on their own claim, which never makes them eligible for Autopilot Reset).
    #[serde(default)]
    pub vouches_entra_join: bool,
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

/// A named local account of the web console (its password is never shown, only checked).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Account {
    pub id: String,
    pub name: String,
    /// `viewer`, `helpdesk`, `operator` or `admin`.
    pub role: String,
    pub created_at: String,
    /// When an admin disabled it; a disabled account cannot sign in.
    pub disabled_at: Option<String>,
}

/// `POST /api/v1/accounts`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NewAccount {
    /// 1 to 64 letters, digits, `.`, `_`, `-` or `@`.
    pub name: String,
    /// `viewer`, `helpdesk`, `operator` or `admin`.
    pub role: String,
    /// At least 12 characters; stored only as an Argon2id hash.
    pub password: String,
}

/// A list of accounts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AccountList {
    pub items: Vec<Account>,
}

// ---------------------------------------------------------------------------------------------
// Groups, bulk actions and batches, schedules, the Autopilot registry, primary user

/// Which devices a filter group (or a bulk request) takes: every field that is set must hold.
/// Text matches are case-insensitive; an unknown field is refused.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceFilter {
    /// Only this join type (`entra_joined`, `hybrid_joined`, `registered`, `not_joined`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join_type: Option<String>,
    /// The device name starts with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_prefix: Option<String>,
    /// The device name contains this (not together with `name_prefix`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_contains: Option<String>,
    /// The serial starts with this (devices without a known serial never match).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial_prefix: Option<String>,
    /// The serial contains this (not together with `serial_prefix`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial_contains: Option<String>,
    /// The Autopilot group tag (from the Autopilot registry, matched by serial).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_tag: Option<String>,
    /// OS build at least this (e.g. 22631).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_build_min: Option<u32>,
    /// OS build at most this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_build_max: Option<u32>,
    /// Checked in at most this many seconds ago.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen_within_secs: Option<i64>,
    /// Also match devices that unenrolled (they cannot be reset).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub include_unenrolled: bool,
}

/// A named set of devices: a fixed list (`static`) or every device matching a filter (`filter`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Group {
    pub id: String,
    /// Unique; also what an admin types to confirm a group-wide reset or wipe.
    pub name: String,
    /// `static` or `filter`.
    pub kind: String,
    /// The condition of a filter group.
    pub filter: Option<DeviceFilter>,
    /// Members now (a filter group is resolved at the time of the request).
    pub member_count: u64,
    pub created_at: String,
}

/// `GET /api/v1/groups`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GroupList {
    pub items: Vec<Group>,
}

/// `POST /api/v1/groups`: a filter group when `filter` is given, otherwise a static group with
/// `members` (device ids, may be empty).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NewGroup {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<DeviceFilter>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
}

/// `PATCH /api/v1/groups/{id}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GroupPatch {
    /// The new name.
    pub name: String,
}

/// `GET /api/v1/groups/{id}`: the group and one page of its members (ordered by device id).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GroupDetail {
    pub group: Group,
    pub members: Vec<Device>,
    /// Pass as `cursor` for the next page of members; null on the last page.
    pub next: Option<String>,
}

/// Query of `GET /api/v1/groups/{id}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GroupMembersQuery {
    /// Members per page, 1..=500 (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// The `next` of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// `POST /api/v1/groups/{id}/members` (static groups only): device ids to add and to remove.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GroupMembersChange {
    #[serde(default)]
    pub add: Vec<String>,
    #[serde(default)]
    pub remove: Vec<String>,
}

/// What happened on one device of a group-wide request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeviceResult {
    pub device_id: String,
    /// The action created (it may be `blocked`, with the reason).
    pub action: Option<Action>,
    /// Why no action was created.
    pub error: Option<String>,
}

/// `POST /api/v1/groups/{id}/local-reset`: one result per member.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GroupLocalResetResult {
    pub items: Vec<DeviceResult>,
}

/// `POST /api/v1/actions/bulk`: exactly one of `devices`, `group` and `filter`. No size cap:
/// waves spread a large request out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BulkRequest {
    pub kind: ActionKind,
    /// Device ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<Vec<String>>,
    /// A group id or exact name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Every device matching this now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<DeviceFilter>,
    /// Only answer what would happen (200 and a plan); nothing is changed.
    #[serde(default)]
    pub dry_run: bool,
    /// For a reset or wipe of a group: the group's exact name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirm: Option<String>,
    /// Devices per wave (default: all at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wave_size: Option<u32>,
    /// Seconds between the start of two waves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wave_interval_secs: Option<u64>,
    /// At most this many resets/wipes requested per UTC day (all batches together); the rest
    /// move to the next day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily_cap: Option<u32>,
}

impl BulkRequest {
    /// A request of `kind` with no target yet.
    pub fn new(kind: ActionKind) -> Self {
        Self {
            kind,
            devices: None,
            group: None,
            filter: None,
            dry_run: false,
            confirm: None,
            wave_size: None,
            wave_interval_secs: None,
            daily_cap: None,
        }
    }
}

/// Counts of a dry run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PlanCounts {
    pub would_queue: u64,
    pub blocked: u64,
    pub not_found: u64,
}

/// One device of a dry run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PlanItem {
    pub device_id: String,
    /// `would_queue`, `blocked` or `not_found`.
    pub outcome: String,
    /// Why it would be blocked.
    pub reasons: Vec<ReadinessReason>,
}

/// A dry run of a bulk request (`dry_run: true`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BulkPlan {
    pub kind: ActionKind,
    /// For a group target: its name (what `confirm` must be for a reset or wipe).
    pub group: Option<String>,
    pub counts: PlanCounts,
    pub items: Vec<PlanItem>,
}

/// Counts of a created batch.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BatchCounts {
    pub queued: u64,
    pub blocked: u64,
    pub not_found: u64,
    pub deferred: u64,
}

/// One device of a created batch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BatchItem {
    pub device_id: String,
    /// `queued`, `blocked`, `not_found` or `deferred`.
    pub outcome: String,
    pub action_id: Option<String>,
    /// Why it was blocked.
    pub reason: Option<String>,
    /// For `deferred`: the wave it waits in.
    pub wave: Option<u32>,
    /// For `deferred`: not requested before this.
    pub due_at: Option<String>,
}

/// `POST /api/v1/actions/bulk` (202): the batch created. A batch of at most
/// [`BATCH_ITEMS_IN_FULL`] devices lists every device in `items`; a larger one lists only the
/// devices blocked or not found, at most that many (`items_complete` false), so that the answer
/// for 100,000 PCs stays small: its actions are listed by `GET /api/v1/batches/{id}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BatchCreated {
    pub batch_id: String,
    /// How many distinct devices the batch names.
    #[serde(default)]
    pub devices: u64,
    pub counts: BatchCounts,
    pub items: Vec<BatchItem>,
    /// Whether `items` lists every device of the batch.
    #[serde(default = "listed_in_full")]
    pub items_complete: bool,
}

/// The most devices [`BatchCreated::items`] lists.
pub const BATCH_ITEMS_IN_FULL: usize = 1_000;

fn listed_in_full() -> bool {
    true
}

/// A later wave of a batch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BatchWave {
    /// 0 is the wave requested when the batch started.
    pub index: u32,
    pub due_at: String,
    pub released: bool,
    pub released_at: Option<String>,
    /// Devices in the wave.
    pub devices: u64,
    /// Actions of the wave's devices per lifecycle state (a device deferred over the daily cap
    /// counts in the last wave that names it).
    #[serde(default)]
    pub counts: BTreeMap<String, u64>,
}

/// Query of `GET /api/v1/batches`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BatchListQuery {
    /// Page size, 1..=500 (default 100). Newest first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// The `next` of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// One bulk request in a list: what, on what, by whom, and how far it has come.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BatchSummary {
    pub batch_id: String,
    /// What was asked (`autopilot_reset`, …).
    pub kind: String,
    pub requested_by: String,
    pub created_at: String,
    /// On what, in words (`group "lab" (…)`, `filter …`, `12 devices`).
    pub target: String,
    /// Devices it named.
    pub devices: u32,
    /// Its actions per lifecycle state.
    pub counts: BTreeMap<String, u64>,
    /// Later waves not released yet.
    pub waves_waiting: u64,
    /// `running`, `paused` (its waiting waves are held) or `canceled` (they never will be).
    #[serde(default = "running")]
    pub state: String,
    /// When and by whom it was last paused, resumed or canceled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steered_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steered_by: Option<String>,
}

fn running() -> String {
    "running".to_owned()
}

/// `POST /api/v1/batches/{id}/pause|resume|cancel`: the batch as it is now, how many waves
/// were held, moved or dropped, and how many actions a cancel canceled before they were sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BatchSteered {
    pub batch: BatchSummary,
    pub waves: u64,
    pub canceled_actions: u64,
}

/// `GET /api/v1/batches`: one page of bulk requests, newest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BatchPage {
    pub items: Vec<BatchSummary>,
    /// The `cursor` of the next page; null on the last page.
    pub next: Option<String>,
}

/// `GET /api/v1/batches/{id}`: where a batch is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BatchStatus {
    pub batch_id: String,
    /// Every wave released, and every device of the batch has an action that is done, failed,
    /// canceled, expired or blocked (or was not found): nothing more will happen on its own.
    pub settled: bool,
    /// Actions per lifecycle state.
    pub counts: BTreeMap<String, u64>,
    /// The batch's actions, oldest first.
    pub actions: Vec<Action>,
    /// Its waves by index, the first (index 0) included.
    pub waves: Vec<BatchWave>,
    /// What it is, as listed (null for a batch started before batches were recorded).
    #[serde(default)]
    pub batch: Option<BatchSummary>,
}

/// Local hours in which a schedule's resets may start; crosses midnight when `end <= start`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TimeWindow {
    /// `HH:MM` (or `HH:MM:SS`), local time.
    #[schema(example = "02:00")]
    pub start: String,
    /// `HH:MM` (or `HH:MM:SS`), local time.
    #[schema(example = "05:00")]
    pub end: String,
}

/// A scheduled bulk request on a group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Schedule {
    pub id: String,
    pub name: String,
    pub group_id: String,
    /// The group's name (null if it was deleted).
    pub group_name: Option<String>,
    pub kind: ActionKind,
    /// IANA time zone, e.g. `Europe/Paris`.
    pub tz: String,
    /// See [`NewSchedule::recurrence`].
    pub recurrence: String,
    pub window: Option<TimeWindow>,
    pub enabled: bool,
    /// Next firing (RFC 3339); null when none is left.
    pub next_run: Option<String>,
    pub last_run: Option<String>,
}

/// `GET /api/v1/schedules`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ScheduleList {
    pub items: Vec<Schedule>,
}

fn yes() -> bool {
    true
}

/// `POST /api/v1/schedules`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NewSchedule {
    pub name: String,
    /// Group id or exact name.
    pub group: String,
    pub kind: ActionKind,
    /// IANA time zone the times are in, e.g. `Europe/Paris`, `America/New_York`, `UTC`.
    pub tz: String,
    /// When it fires, in local time of `tz`: `daily:HH:MM[:SS]` (e.g. `daily:02:00` every night
    /// at 02:00), `weekly:DAYS:HH:MM[:SS]` with days `mon,tue,wed,thu,fri,sat,sun` (e.g.
    /// `weekly:mon,fri:22:30`), or `once:YYYY-MM-DDTHH:MM[:SS]` (e.g.
    /// `once:2026-12-24T03:00`). A local time skipped by a DST change fires at the end of the gap.
    #[schema(example = "daily:02:00")]
    pub recurrence: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<TimeWindow>,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// For a reset or wipe: the group's exact name, as for a group-wide bulk request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirm: Option<String>,
}

fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// `PATCH /api/v1/schedules/{id}`: only the fields given change.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SchedulePatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Group id or exact name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ActionKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tz: Option<String>,
    /// As in [`NewSchedule::recurrence`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recurrence: Option<String>,
    /// A window, or null to remove it.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<TimeWindow>)]
    pub window: Option<Option<TimeWindow>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// The group's name, needed when the change makes it a reset or wipe of another group or
    /// kind, or switches a reset or wipe schedule back on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirm: Option<String>,
}

/// One refused line of an Autopilot CSV import.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ImportError {
    /// Line of the file (1 is the header).
    pub line: u64,
    pub message: String,
}

/// `POST /api/v1/autopilot/import`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AutopilotImportResult {
    /// Rows stored (a known serial is replaced).
    pub imported: u64,
    pub errors: Vec<ImportError>,
}

/// A device in the Autopilot registry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AutopilotDevice {
    pub serial: String,
    pub product_id: Option<String>,
    pub group_tag: Option<String>,
    pub assigned_user: Option<String>,
    /// The enrolled device with the same serial, if any.
    pub device_id: Option<String>,
}

/// `GET /api/v1/autopilot/devices`, ordered by serial.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AutopilotDeviceList {
    pub items: Vec<AutopilotDevice>,
}

/// `PUT /api/v1/devices/{id}/primary-user`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PrimaryUser {
    /// UPN; null clears it (the next user who signs in becomes primary, unless shared).
    pub user: Option<String>,
    /// A shared (multi-user) device never gets a primary user on its own.
    #[serde(default)]
    pub shared: bool,
}

/// A webhook subscription (the secret is shown only when the server generated it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Webhook {
    pub id: String,
    pub name: String,
    pub url: String,
    /// Subscribed events: `done`, `failed`, `stuck` (an action silent for
    /// `webhook_stuck_after_minutes`, or one that expired); `batch.done`, `batch.failed`,
    /// `batch.stuck` (a batch settled, or one of its actions is stuck).
    pub events: Vec<String>,
    /// `raw` (signed JSON), `teams`, `slack` or `email` (then `url` is the recipient address).
    #[serde(default)]
    pub kind: String,
    pub enabled: bool,
    pub created_at: String,
}

/// `POST /api/v1/webhooks`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NewWebhook {
    /// `http://` or `https://` URL the events are POSTed to (the Teams or Slack incoming-webhook
    /// URL for those kinds); for kind `email`, the recipient address.
    pub url: String,
    /// `raw` (default: signed JSON), `teams`, `slack` or `email`. Teams, Slack and e-mail
    /// subscriptions are told about batches only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Unique name; defaults to the URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The HMAC-SHA256 key; generated (and returned once) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Default: `done`, `failed`, `stuck` for kind `raw`; `batch.done`, `batch.failed`,
    /// `batch.stuck` for the others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<String>>,
}

/// `PATCH /api/v1/webhooks/{id}`: enable or disable. A disabled webhook gets no new events and
/// its due deliveries wait; once enabled again, actions that ended while it was disabled are not
/// sent (deliveries enqueued before it was disabled are).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookPatch {
    pub enabled: bool,
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
    /// `done`, `failed`, `stuck`, `ping`, `batch.done`, `batch.failed` or `batch.stuck`.
    pub event: String,
    pub action_id: Option<String>,
    /// The batch of a `batch.*` event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_id: Option<String>,
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
    /// The batch of a `batch.*` event (absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<WebhookBatch>,
}

/// A batch as a `batch.done`, `batch.failed` or `batch.stuck` event tells about it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WebhookBatch {
    pub id: String,
    /// What was asked (`reset`, `wipe`, …).
    pub kind: String,
    /// On what, in words.
    pub target: String,
    pub requested_by: String,
    /// Devices it named.
    pub devices: u32,
    /// `running`, `paused` or `canceled`.
    pub state: String,
    /// Its actions per state (`done`, `failed`, …), states with none left out.
    pub counts: std::collections::BTreeMap<String, u64>,
    /// Names of the devices whose action is stuck (`batch.stuck`) or did not end done
    /// (`batch.failed`), at most 20.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices_to_check: Vec<String>,
    /// The batch's console page.
    pub url: String,
}
