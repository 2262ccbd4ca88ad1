//! The tables and columns the sea-query statements name, as `Iden` enums (`Table` is the
//! table; each other variant a column, in snake case): a name that is not here does not compile.
//! The schema itself is in each backend's `migrations/`.

use sea_query::Iden;

/// `console_sessions`: web console sessions.
#[derive(Clone, Copy, Iden)]
pub(crate) enum ConsoleSessions {
    Table,
    IdHash,
    TokenId,
    AccountId,
    OpenidSubject,
    OpenidName,
    OpenidRole,
    CsrfSecret,
    CreatedAt,
    ExpiresAt,
}

/// `accounts`: named local accounts of the web console.
#[derive(Clone, Copy, Iden)]
pub(crate) enum Accounts {
    Table,
    Id,
    Name,
    PasswordHash,
    Role,
    CreatedAt,
    DisabledAt,
}

/// `api_tokens`: bearer tokens of the admin API and the console.
#[derive(Clone, Copy, Iden)]
pub(crate) enum ApiTokens {
    Table,
    Id,
    Name,
    SecretHash,
    Role,
    CreatedAt,
    RevokedAt,
}

/// `enrollment_tokens`: the tokens PCs enroll with.
#[derive(Clone, Copy, Iden)]
pub(crate) enum EnrollmentTokens {
    Table,
    Id,
    Label,
    SecretHash,
    ExpiresAt,
    MaxUses,
    Uses,
    CreatedAt,
    VouchesEntraJoin,
}

/// `autopilot_devices`: the Autopilot registry, keyed by upper-case serial.
#[derive(Clone, Copy, Iden)]
pub(crate) enum AutopilotDevices {
    Table,
    SerialKey,
    Serial,
    ProductId,
    HardwareHash,
    GroupTag,
    AssignedUser,
}

/// `devices`: one row per PC (kept after unenrollment, with `unenrolled_at` set).
#[derive(Clone, Copy, PartialEq, Eq, Iden)]
pub(crate) enum Devices {
    Table,
    Id,
    Name,
    HardwareId,
    MdmDeviceId,
    Serial,
    Manufacturer,
    Model,
    OsVersion,
    OsPlatform,
    JoinType,
    EnrollmentType,
    AadDeviceId,
    DomainName,
    DnsComputerName,
    TotalRamMb,
    TotalStorageMb,
    LastSeen,
    CurrentUserName,
    PrimaryUser,
    Shared,
    CertThumbprint,
    CertNotAfter,
    LocalResetDesired,
    LocalResetReported,
    AutopilotStatus,
    AutopilotLastError,
    WinreEnabled,
    WinreCheckedAt,
    EnrolledAt,
    UnenrolledAt,
    LastSignInUser,
    LastSignInAt,
    JoinEvidence,
    DmSessionId,
    DmMsgId,
}

/// `enrollments`: one row per enrollment of a device, newest replacing the earlier ones.
#[derive(Clone, Copy, Iden)]
pub(crate) enum Enrollments {
    Table,
    Id,
    DeviceId,
    EnrollmentType,
    Upn,
    AuthMethod,
    Context,
    RawRequest,
    CertThumbprint,
    CertSerial,
    CertNotAfter,
    CreatedAt,
    ReplacedBy,
}

/// `commands`: the command queue, in `seq` order per device.
#[derive(Clone, Copy, Iden)]
pub(crate) enum Commands {
    Table,
    Seq,
    Id,
    DeviceId,
    ActionId,
    Verb,
    Uri,
    Format,
    Data,
    State,
    SessionId,
    MsgId,
    CmdId,
    Status,
    Result,
    CreatedAt,
    SentAt,
    AnsweredAt,
    Attempts,
}

/// `inventory`: the latest value of each reported CSP node per device.
#[derive(Clone, Copy, Iden)]
pub(crate) enum Inventory {
    Table,
    DeviceId,
    Uri,
    Value,
    Format,
    At,
}

/// `schedules`: recurring bulk requests.
#[derive(Clone, Copy, Iden)]
pub(crate) enum Schedules {
    Table,
    Id,
    Name,
    GroupId,
    Kind,
    Tz,
    Recurrence,
    WindowStart,
    WindowEnd,
    Enabled,
    NextRun,
    LastRun,
}

/// `batch_windows`: the maintenance window of a scheduled batch.
#[derive(Clone, Copy, Iden)]
pub(crate) enum BatchWindows {
    Table,
    BatchId,
    WindowStart,
    WindowEnd,
    Tz,
}

/// `actions`: what admins asked of devices, in `seq` order.
#[derive(Clone, Copy, Iden)]
pub(crate) enum Actions {
    Table,
    Seq,
    Id,
    DeviceId,
    Kind,
    State,
    Reason,
    LastError,
    BatchId,
    RequestedBy,
    CreatedAt,
    UpdatedAt,
    Timeline,
    Baseline,
}

/// `batches`: every bulk request as started, in `seq` order.
#[derive(Clone, Copy, Iden)]
pub(crate) enum Batches {
    Table,
    Seq,
    Id,
    Kind,
    RequestedBy,
    CreatedAt,
    Target,
    Devices,
    State,
    SteeredAt,
    SteeredBy,
}

/// `batch_waves`: the later waves of a bulk request.
#[derive(Clone, Copy, Iden)]
pub(crate) enum BatchWaves {
    Table,
    BatchId,
    WaveIndex,
    Kind,
    Actor,
    Devices,
    DueAt,
    ReleasedAt,
    DailyCap,
}

/// `device_messages`: the support trail, in `seq` order per device.
#[derive(Clone, Copy, Iden)]
pub(crate) enum DeviceMessages {
    Table,
    Seq,
    DeviceId,
    At,
    Direction,
    SessionId,
    MsgId,
    Body,
    Size,
}

/// `audit_events`: the audit log, in `seq` order.
#[derive(Clone, Copy, Iden)]
pub(crate) enum AuditEvents {
    Table,
    Seq,
    At,
    Actor,
    Action,
    Targets,
    BatchId,
    Outcome,
    Details,
}

/// `audit_targets`: one row per target device of an audit event.
#[derive(Clone, Copy, Iden)]
pub(crate) enum AuditTargets {
    Table,
    AuditSeq,
    DeviceId,
}

/// `device_groups`: groups, static (`filter` NULL) or by filter.
#[derive(Clone, Copy, Iden)]
pub(crate) enum DeviceGroups {
    Table,
    Id,
    Name,
    Filter,
    CreatedAt,
}

/// `group_members`: the members of static groups.
#[derive(Clone, Copy, Iden)]
pub(crate) enum GroupMembers {
    Table,
    GroupId,
    DeviceId,
}

/// `webhooks`: webhook subscriptions.
#[derive(Clone, Copy, Iden)]
pub(crate) enum Webhooks {
    Table,
    Id,
    Name,
    Url,
    Secret,
    Events,
    Enabled,
    CreatedAt,
    NotifySince,
    Kind,
}

/// `webhook_deliveries`: the outbox of webhook deliveries, unique per webhook, action and event.
#[derive(Clone, Copy, Iden)]
pub(crate) enum WebhookDeliveries {
    Table,
    Seq,
    Id,
    WebhookId,
    Event,
    ActionId,
    BatchId,
    Payload,
    Attempts,
    NextAttemptAt,
    DeliveredAt,
    LastStatus,
    LastError,
    CreatedAt,
}

/// `certificate_renewals`: one row per MDM certificate renewal, keyed by its enrollment.
#[derive(Clone, Copy, Iden)]
pub(crate) enum CertificateRenewals {
    Table,
    EnrollmentId,
    DeviceId,
    OldThumbprint,
    OldNotAfter,
    NewThumbprint,
    NewNotAfter,
    Replaces,
    RenewedAt,
    NewSeenAt,
}

/// `push_channels`: each device's WNS channel as last reported (core::push::PushChannel).
#[derive(Clone, Copy, Iden)]
pub(crate) enum PushChannels {
    Table,
    DeviceId,
    Uri,
    DeviceStatus,
    State,
    SeenAt,
    UpdatedAt,
}

/// `push_attempts`: one row per (action, attempt), the claim that makes one process push it.
#[derive(Clone, Copy, Iden)]
pub(crate) enum PushAttempts {
    Table,
    ActionId,
    Attempt,
    DeviceId,
    ClaimedAt,
    Outcome,
    FinishedAt,
}

/// `action_wakes`: what brought each action's commands to its PC (push or poll), once.
#[derive(Clone, Copy, Iden)]
pub(crate) enum ActionWakes {
    Table,
    ActionId,
    WokenBy,
    At,
}
