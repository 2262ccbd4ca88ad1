//! Narrow storage traits, one per concern, bundled as [`Store`] and passed as `Arc<dyn Store>`.
//! Backends (`store-sqlite`, `store-postgres`) implement them and hold no business rules: the rules
//! they apply (command state after a Status, action state after a send) are functions of this crate.

use async_trait::async_trait;
use time::{Duration, OffsetDateTime};

use crate::account::{Account, AccountName, Principal};
use crate::action::{Action, ActionKind, ActionState};
use crate::audit::{AuditEvent, NewAuditEvent};
use crate::autopilot::AutopilotRecord;
use crate::command::DeviceCommand;
use crate::console_session::ConsoleSession;
use crate::device::{Device, JoinType, MessageSeq};
use crate::device_condition::DeviceCondition;
use crate::enrollment::renewal::CertificateRenewal;
use crate::enrollment::{ApiToken, Enrollment, EnrollmentToken, SecretHash};
use crate::group::Group;
use crate::ids::{
    ActionId, AuditId, BatchId, CommandId, DeliveryId, DeviceId, EnrollmentId, GroupId, ScheduleId,
    TokenId, WebhookId,
};
use crate::inventory::InventoryValue;
use crate::schedule::{BatchWindow, Schedule};
use crate::trail::TrailMessage;
use crate::webhook::{Delivery, Webhook, WebhookEvent};

/// Errors of every storage operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A referenced row does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The row exists but is not in the state the operation expects (or the id is taken).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The enrollment token is past its expiry.
    #[error("the enrollment token has expired")]
    TokenExpired,
    /// The enrollment token has no uses left.
    #[error("the enrollment token has no uses left")]
    TokenExhausted,
    /// A stored value could not be read back into a domain type.
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    /// The database failed (connection, I/O, migration).
    #[error("storage backend: {0}")]
    Backend(String),
    /// Another message of the device was taken since this one's sequence was judged (a
    /// concurrent duplicate): nothing was written.
    #[error("another message of this device was taken meanwhile")]
    SequenceMoved,
}

/// Result of storage operations.
pub type StoreResult<T> = std::result::Result<T, StoreError>;

impl From<crate::error::Error> for StoreError {
    fn from(e: crate::error::Error) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}

/// Microseconds since the Unix epoch: how both backends store instants (sortable integers).
pub fn to_micros(at: OffsetDateTime) -> i64 {
    (at.unix_timestamp_nanos() / 1_000) as i64
}

/// Inverse of [`to_micros`].
pub fn from_micros(micros: i64) -> StoreResult<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000)
        .map_err(|e| StoreError::Corrupt(format!("timestamp {micros}: {e}")))
}

// ---------------------------------------------------------------------------------------------
// Queries and pages

/// Sort order of device lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DeviceSort {
    /// By name, then id.
    #[default]
    Name,
    /// By last check-in (never seen sorts first ascending), then id.
    LastSeen,
    /// By enrollment time, then id.
    EnrolledAt,
    /// By serial number (no serial sorts as the empty text, first ascending), then id.
    Serial,
}

impl DeviceSort {
    fn tag(&self) -> &'static str {
        match self {
            Self::Name => "name",
            Self::LastSeen => "last_seen",
            Self::EnrolledAt => "enrolled_at",
            Self::Serial => "serial",
        }
    }
}

/// The sort value of the last row of a page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CursorKey {
    /// A text sort key (name).
    Text(String),
    /// An integer sort key (instants as [`to_micros`]; never seen = [`NEVER_SEEN_KEY`]).
    Int(i64),
}

/// Opaque position in a device list; only valid with the same sort.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor(String);

impl Cursor {
    /// Parses a cursor a client sent back (checked when used).
    pub fn parse(text: &str) -> Self {
        Self(text.to_owned())
    }

    /// The text to hand to clients.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Builds the cursor after a row with sort value `key` and id `id`.
    pub fn after(sort: DeviceSort, key: &CursorKey, id: DeviceId) -> Self {
        let key = match key {
            CursorKey::Text(t) => format!("t{}", hex::encode(t.as_bytes())),
            CursorKey::Int(i) => format!("i{i}"),
        };
        Self(format!("{}.{key}.{id}", sort.tag()))
    }

    /// Reads the position back; `Conflict` if it is malformed or was made for another sort.
    pub fn decode(&self, sort: DeviceSort) -> StoreResult<(CursorKey, DeviceId)> {
        let bad = || StoreError::Conflict(format!("invalid cursor {:?}", self.0));
        let mut parts = self.0.splitn(3, '.');
        let (tag, key, id) = (parts.next(), parts.next(), parts.next());
        let (Some(tag), Some(key), Some(id)) = (tag, key, id) else {
            return Err(bad());
        };
        if tag != sort.tag() {
            return Err(bad());
        }
        let id = DeviceId::parse(id).map_err(|_| bad())?;
        let key = if let Some(h) = key.strip_prefix('t') {
            let bytes = hex::decode(h).map_err(|_| bad())?;
            CursorKey::Text(String::from_utf8(bytes).map_err(|_| bad())?)
        } else if let Some(i) = key.strip_prefix('i') {
            CursorKey::Int(i.parse().map_err(|_| bad())?)
        } else {
            return Err(bad());
        };
        Ok((key, id))
    }
}

impl Cursor {
    /// The cursor after the row at insertion position `seq` of a list tagged `tag` (actions:
    /// `a`, batches: `b`), for lists ordered by one increasing position, newest first.
    pub fn at_position(tag: char, seq: i64) -> Self {
        Self(format!("{tag}{seq}"))
    }

    /// Reads [`Self::at_position`] back; `Conflict` if malformed or made for another list.
    pub fn position(&self, tag: char) -> StoreResult<i64> {
        self.0
            .strip_prefix(tag)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| StoreError::Conflict(format!("invalid cursor {:?}", self.0)))
    }
}

/// Which actions to list, newest first (most recently created), a page at a time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActionQuery {
    /// Only this device's.
    pub device: Option<DeviceId>,
    /// Only those in this state.
    pub state: Option<ActionState>,
    /// Only those of this bulk request.
    pub batch: Option<BatchId>,
    /// Only this kind.
    pub kind: Option<ActionKind>,
    /// Only those created at or after this instant.
    pub created_from: Option<OffsetDateTime>,
    /// Page size (at least 1).
    pub limit: u32,
    /// Continue after this position ([`Page::next`] of the previous page).
    pub cursor: Option<Cursor>,
}

impl Default for ActionQuery {
    fn default() -> Self {
        Self {
            device: None,
            state: None,
            batch: None,
            kind: None,
            created_from: None,
            limit: 100,
            cursor: None,
        }
    }
}

/// A bulk request as started: who asked what of how many devices, and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchRecord {
    /// Identity (every action and wave of the request carries it).
    pub id: BatchId,
    /// What was asked.
    pub kind: ActionKind,
    /// Who asked.
    pub requested_by: String,
    /// When.
    pub created_at: OffsetDateTime,
    /// On what, in words: `group "lab" (<id>)`, `filter …`, `12 devices`.
    pub target: String,
    /// How many devices it named.
    pub devices: u32,
    /// Running, paused or canceled by an admin.
    pub state: BatchState,
    /// The last pause, resume or cancel: when and by whom; `None` while never steered.
    pub steered: Option<(OffsetDateTime, String)>,
}

/// Whether a batch's waiting waves are released (issue #15 item 1). A batch starts `Running`;
/// `Paused` holds its waiting waves until it is resumed; `Canceled` never releases them and its
/// not-yet-sent actions are canceled. Whether it has settled is derived from its actions
/// ([`crate::batch::batch_settled`]), not stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BatchState {
    /// Waves are released when due.
    Running,
    /// Waiting waves are held.
    Paused,
    /// Waiting waves are never released.
    Canceled,
}

impl BatchState {
    /// Stable code (storage, API).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Canceled => "canceled",
        }
    }

    /// Parses [`Self::as_str`].
    pub fn parse(s: &str) -> StoreResult<Self> {
        match s {
            "running" => Ok(Self::Running),
            "paused" => Ok(Self::Paused),
            "canceled" => Ok(Self::Canceled),
            other => Err(StoreError::Corrupt(format!(
                "unknown batch state {other:?}"
            ))),
        }
    }
}

/// An admin's pause, resume or cancel of a batch, written by [`ActionStore::write_request_plan`]
/// as a claim: only if the batch is still in `expected` (else `Conflict`, nothing written).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchChange {
    /// The batch.
    pub batch: BatchId,
    /// The state it was read in.
    pub expected: BatchState,
    /// The new state.
    pub state: BatchState,
    /// Who steered it (the plan's `at` is when).
    pub by: String,
    /// Every wave of the batch read as waiting, with its due time from now on (shifted by the
    /// pause on resume): `Conflict` if one of them was released since or another is waiting.
    pub waiting: Vec<(u32, OffsetDateTime)>,
}

/// How far a batch has come, counted in the store for a page of batches.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchCounts {
    /// Its actions per state.
    pub by_state: std::collections::HashMap<ActionState, u64>,
    /// Its later waves not released yet.
    pub waves_waiting: u64,
}

/// Sort key of a device that never checked in (`COALESCE(last_seen, -1)` in SQL).
pub const NEVER_SEEN_KEY: i64 = -1;

/// The sort key of `device` under `sort`.
pub fn device_sort_key(device: &Device, sort: DeviceSort) -> CursorKey {
    match sort {
        DeviceSort::Name => CursorKey::Text(device.name.clone()),
        DeviceSort::LastSeen => CursorKey::Int(device.last_seen.map_or(NEVER_SEEN_KEY, to_micros)),
        DeviceSort::EnrolledAt => CursorKey::Int(to_micros(device.enrolled_at)),
        DeviceSort::Serial => CursorKey::Text(device.serial.clone().unwrap_or_default()),
    }
}

/// Filter, sort and page of a device list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceQuery {
    /// Case-insensitive substring of name, serial or primary user.
    pub search: Option<String>,
    /// Only this join type.
    pub join_type: Option<JoinType>,
    /// Only devices meeting this condition (evaluated in the store's query).
    pub condition: Option<DeviceCondition>,
    /// Also list devices that unenrolled.
    pub include_unenrolled: bool,
    /// Sort key.
    pub sort: DeviceSort,
    /// Descending instead of ascending.
    pub descending: bool,
    /// Page size (at least 1).
    pub limit: u32,
    /// Continue after this position.
    pub cursor: Option<Cursor>,
}

impl Default for DeviceQuery {
    fn default() -> Self {
        Self {
            search: None,
            join_type: None,
            condition: None,
            include_unenrolled: false,
            sort: DeviceSort::Name,
            descending: false,
            limit: 100,
            cursor: None,
        }
    }
}

/// One page of a list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page<T> {
    /// The rows.
    pub items: Vec<T>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<Cursor>,
}

/// In which order audit events are listed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AuditOrder {
    /// Oldest first (position ascending).
    #[default]
    OldestFirst,
    /// Newest first (position descending).
    NewestFirst,
}

/// Which audit events to list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only events naming this device.
    pub device: Option<DeviceId>,
    /// Continue after this position in the listing order: only events with a greater position
    /// when oldest first, a smaller one when newest first (the last id of the previous page).
    pub after: Option<AuditId>,
    /// At most this many.
    pub limit: u32,
    /// Oldest or newest first.
    pub order: AuditOrder,
}

impl Default for AuditQuery {
    /// Every device, from the start, oldest first, 100 at a time.
    fn default() -> Self {
        Self {
            device: None,
            after: None,
            limit: 100,
            order: AuditOrder::OldestFirst,
        }
    }
}

/// What [`EnrollmentStore::create_enrollment`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnrollOutcome {
    /// The device the enrollment belongs to (an existing one when the HWDevID was known).
    pub device: DeviceId,
    /// The new enrollment.
    pub enrollment: EnrollmentId,
    /// Whether the device record already existed (a re-enrollment the core bound to it).
    pub device_was_known: bool,
    /// Earlier enrollments that the new one replaced.
    pub replaced: Vec<EnrollmentId>,
}

// ---------------------------------------------------------------------------------------------
// One management-session step

/// The device's Status (and Results) for one of our commands, already matched by MsgRef/CmdRef.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandAnswer {
    /// The command answered.
    pub command: CommandId,
    /// The device's Status code.
    pub status: u16,
    /// Results Data, for a Get.
    pub result: Option<String>,
}

/// An action saved only if its stored state is still `expected` (another process may have moved it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActionUpdate {
    /// The state the caller read.
    pub expected: ActionState,
    /// The action as it should be stored.
    pub action: Action,
}

/// Take the next queued commands of the device into the reply being built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendBatch {
    /// Our MsgID of the reply.
    pub msg_id: String,
    /// The CmdID of the first taken command; the others follow 1 by 1.
    pub first_cmd_id: u32,
    /// At most this many commands.
    pub limit: u32,
}

/// Everything one management-session message changes, committed together or not at all
/// ("a command counts as sent only when the reply carrying it was committed").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionStep {
    /// The device in session.
    pub device: DeviceId,
    /// The SyncHdr SessionID (opaque).
    pub session_id: String,
    /// Now.
    pub at: OffsetDateTime,
    /// Record a check-in: `last_seen = at`, `current_user = current_user`.
    pub seen: bool,
    /// Signed-in user reported in this session (stored when `seen`).
    pub current_user: Option<String>,
    /// Save this device row first (inventory-derived fields); must be `device`.
    pub device_update: Option<Device>,
    /// The device as the step's decision read it: with it, only the fields `device_update`
    /// changes are written (a check-in rewrites no index of an unchanged column, and keeps a
    /// change made meanwhile to a field it did not touch); without it, every field.
    pub device_was: Option<Device>,
    /// Statuses/results for commands that were sent; each must be `sent` and belong to `device`.
    pub answers: Vec<CommandAnswer>,
    /// Inventory values to upsert; each must be for `device`.
    pub inventory: Vec<InventoryValue>,
    /// Actions advanced by the engine.
    pub action_updates: Vec<ActionUpdate>,
    /// Actions to insert as they are, without commands: what the device was seen to do without
    /// being asked (a local Autopilot Reset, created `done`); each must be for `device`.
    pub new_actions: Vec<Action>,
    /// Sent-but-unanswered commands to put back in the queue (allowed only for [`crate::command::Resend::Yes`] cases; the engine decides).
    pub requeue: Vec<CommandId>,
    /// New commands to append to the device's queue (e.g. a re-check Get).
    pub enqueue: Vec<DeviceCommand>,
    /// Take commands for the reply, after all of the above.
    pub send: Option<SendBatch>,
    /// Commands of these actions are not taken for the reply (held outside their maintenance
    /// window); they stay queued.
    pub held_actions: Vec<ActionId>,
    /// Record this message as the device's last: (the last message as loaded, this one). The
    /// step fails with [`StoreError::SequenceMoved`], writing nothing, when the stored last
    /// message is no longer the loaded one.
    pub sequence: Option<(MessageSeq, MessageSeq)>,
}

impl SessionStep {
    /// A step that changes nothing yet.
    pub fn new(device: DeviceId, session_id: impl Into<String>, at: OffsetDateTime) -> Self {
        Self {
            device,
            session_id: session_id.into(),
            at,
            seen: false,
            current_user: None,
            device_update: None,
            device_was: None,
            answers: Vec::new(),
            inventory: Vec::new(),
            action_updates: Vec::new(),
            new_actions: Vec::new(),
            requeue: Vec::new(),
            enqueue: Vec::new(),
            send: None,
            held_actions: Vec::new(),
            sequence: None,
        }
    }
}

/// What a committed step produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepOutcome {
    /// Commands taken for the reply, in queue order, state `sent`, `sent_in` set.
    pub sent: Vec<DeviceCommand>,
    /// Actions that moved to `sent` because one of their commands went out.
    pub actions_sent: Vec<Action>,
}

// ---------------------------------------------------------------------------------------------
// One request plan

/// A new action and the queued commands that carry it out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewAction {
    /// The action, in its first stored state (`pending` or `blocked`).
    pub action: Action,
    /// Its commands, state `queued`, in queue order; empty for a blocked action.
    pub commands: Vec<DeviceCommand>,
}

/// A change a request makes to a device row: only the named column is written, so a check-in
/// saving inventory-derived fields at the same time loses nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceChange {
    /// The device.
    pub device: DeviceId,
    /// The new `local_reset_desired` (the admin's wish for CTRL+WIN+R).
    pub local_reset_desired: bool,
}

/// Claims the release of a stored wave ([`Wave`]) in the plan's transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaveRelease {
    /// The batch.
    pub batch: BatchId,
    /// The wave's index.
    pub index: u32,
}

/// Claims one firing of a due schedule in the plan's transaction: `last_run` and `next_run` are
/// set only if the schedule is enabled and its stored `next_run` is still `due_at`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScheduleClaim {
    /// The schedule.
    pub schedule: ScheduleId,
    /// The firing claimed (the `next_run` the caller read).
    pub due_at: OffsetDateTime,
    /// The new `last_run`.
    pub last_run: OffsetDateTime,
    /// The new `next_run` (`None`: no firing left).
    pub next_run: Option<OffsetDateTime>,
}

/// Everything one request path decided (one admin request, a bulk request's first wave, a wave
/// release, a schedule firing), written together by [`ActionStore::write_request_plan`] or not
/// at all. Built by the pure planners in [`crate::action`] and [`crate::batch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestPlan {
    /// Now: the wave's `released_at`.
    pub at: OffsetDateTime,
    /// Claim this wave's release first.
    pub release_wave: Option<WaveRelease>,
    /// Claim this schedule firing first.
    pub claim_schedule: Option<ScheduleClaim>,
    /// Check the day's cap in the transaction before creating anything.
    pub cap: Option<DailyCap>,
    /// Existing actions the plan ends (superseded or canceled before they were sent, expired):
    /// each saved only if its stored state is still `expected`, its queued commands dropped.
    pub end: Vec<ActionUpdate>,
    /// An action of `end` whose stored state moved on since it was read is left as it is
    /// instead of failing the plan: a batch's cancel ends what is still unsent at its commit,
    /// and an action a check-in sent meanwhile cannot be called back anyway. Without it, a
    /// cancel during a busy wave would lose the race to the check-ins again and again.
    pub end_skips_moved: bool,
    /// New actions with their commands.
    pub create: Vec<NewAction>,
    /// Device columns the requests change.
    pub device_changes: Vec<DeviceChange>,
    /// Later waves to store (`released_at` None).
    pub waves: Vec<Wave>,
    /// The maintenance window of a new batch.
    pub window: Option<(BatchId, BatchWindow)>,
    /// A new bulk request to record (the plan that starts it).
    pub batch: Option<BatchRecord>,
    /// A pause, resume or cancel of a batch (a claim: checked before anything else is written).
    pub batch_change: Option<BatchChange>,
    /// Audit events, appended in order.
    pub audit: Vec<NewAuditEvent>,
    /// Actions the database makes itself for a large group's devices, after everything above
    /// (set-based: see [`BulkQueue`]).
    pub bulk: Option<BulkQueue>,
}

/// A bulk request's devices, given their actions by the database in a few `INSERT … SELECT`s
/// instead of row by row (issue #16: 100,000 PCs in seconds, with nothing per device held in
/// memory).
///
/// The pure planner counted the group's devices by their [`ReadinessInputs`] (a census: devices
/// with equal inputs are equally ready) and judged each kind of inputs once: each
/// [`BulkVerdict`] is the action every device with one of its inputs gets. Devices whose
/// reasons name something of their own (when they were last seen, …) it planned itself, in the
/// same plan. In the plan's transaction the store gives every enrolled member of `group`
/// matching a verdict, and that has no action of the batch yet, a copy of the verdict's
/// `action` (its own id) and of its `audit` (if any) naming it; then appends `summary` naming
/// every member. A queued reset has no commands: its PC's next session start makes them
/// ([`crate::action::follow_up`]), so that 100,000 resets are not 400,000 command rows written
/// before the request can answer. The plan is refused with `Conflict` (nothing written; plan
/// again) unless each verdict found exactly its `expected` devices and the group still has
/// `members` members.
///
/// [`ReadinessInputs`]: crate::action::ReadinessInputs
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BulkQueue {
    /// The batch every action of it belongs to.
    pub batch: crate::ids::BatchId,
    /// The group whose members are queued.
    pub group: crate::ids::GroupId,
    /// How the inputs are judged at the plan's instant: preflight's window.
    pub seen_within: time::Duration,
    /// How many members the group had when planned.
    pub members: u64,
    /// What the devices of each kind of inputs get (at least one).
    pub verdicts: Vec<BulkVerdict>,
    /// The request's own audit event, appended last with every member as target.
    pub summary: Option<NewAuditEvent>,
    /// The 12 bits every action id of this write carries besides its instant and its device's
    /// own bits (the store's time-ordered ids), drawn for each plan: a second write of the same
    /// millisecond naming a device collides with the first only if it drew the same bits, and
    /// is then refused with `Conflict` and planned again with new ones.
    pub id_bits: u16,
}

/// The action every device with one of `inputs` gets ([`BulkQueue`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BulkVerdict {
    /// The readiness inputs (`seen_recently` plays no part).
    pub inputs: Vec<crate::action::ReadinessInputs>,
    /// How many devices the census found with them.
    pub expected: u64,
    /// The action each gets: every field but id and device is copied.
    pub action: Action,
    /// Its audit event, one per device, when the verdict blocks: `details` names `action`'s id,
    /// replaced by each copy's. `None` for a queued verdict: the request's own event
    /// ([`BulkQueue::summary`]) names each queued device, and each device's history lists it
    /// through the device's action of the batch; 100,000 copies of it were a fifth of the
    /// request's time on PostgreSQL (issue #16). The exceptions (blocked devices, usually few)
    /// are each audited with their reasons.
    pub audit: Option<NewAuditEvent>,
}

impl RequestPlan {
    /// A plan that writes nothing yet.
    pub fn new(at: OffsetDateTime) -> Self {
        Self {
            at,
            release_wave: None,
            claim_schedule: None,
            cap: None,
            end: Vec::new(),
            end_skips_moved: false,
            create: Vec::new(),
            device_changes: Vec::new(),
            waves: Vec::new(),
            window: None,
            batch: None,
            batch_change: None,
            audit: Vec::new(),
            bulk: None,
        }
    }

    /// Whether the plan writes nothing.
    pub fn is_empty(&self) -> bool {
        self.release_wave.is_none()
            && self.claim_schedule.is_none()
            && self.end.is_empty()
            && self.create.is_empty()
            && self.device_changes.is_empty()
            && self.waves.is_empty()
            && self.window.is_none()
            && self.batch.is_none()
            && self.batch_change.is_none()
            && self.audit.is_empty()
            && self.bulk.is_none()
    }
}

/// What [`ActionStore::write_request_plan`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Everything was written.
    Written,
    /// Nothing was written: the day's cap has no room for the plan's new actions; `used` is the
    /// count the store read (re-plan with it).
    CapReached {
        /// Not-blocked actions of the cap's kinds already created in its day.
        used: u64,
    },
    /// Nothing was written: another writer already claimed the wave or the schedule firing.
    ClaimLost,
}

// ---------------------------------------------------------------------------------------------
// The traits

/// Enrollments.
#[async_trait]
pub trait EnrollmentStore: Send + Sync {
    /// Stores a granted enrollment with the device it names. When a device with `device.id`
    /// exists (the core bound the PC to it: `enrollment::identity::rebind`), that device keeps
    /// its primary user, policies and history: its enrollment fields (name, mdm device id,
    /// cert, join/enrollment type, enrolled_at) are overwritten, `unenrolled_at` is cleared and
    /// its earlier un-replaced enrollments get `replaced_by` = the new one. Otherwise `device`
    /// is inserted as new; another record sharing its hardware id is no obstacle. `Conflict` if
    /// the enrollment id exists.
    async fn create_enrollment(
        &self,
        device: Device,
        enrollment: Enrollment,
    ) -> StoreResult<EnrollOutcome>;

    /// The enrollment with this id; `None` if there is none.
    async fn enrollment(&self, id: EnrollmentId) -> StoreResult<Option<Enrollment>>;

    /// Every enrollment of a device, oldest first; empty if none (or unknown device).
    async fn enrollments_of_device(&self, device: DeviceId) -> StoreResult<Vec<Enrollment>>;
}

/// How many enrolled devices' certificates are expired or expire soon.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CertificateExpiry {
    /// Enrolled devices whose certificate's notAfter is at or before `now`.
    pub expired: u64,
    /// Enrolled devices whose certificate expires after `now` and at or before `now + within`.
    pub expiring: u64,
}

/// MDM client certificate renewals (`enrollment::renewal`).
#[async_trait]
pub trait CertificateRenewalStore: Send + Sync {
    /// Commits a renewal in one transaction: the device's `cert_thumbprint`/`cert_not_after`
    /// become the new certificate's, its earlier un-replaced enrollments get `replaced_by` =
    /// `enrollment`, `enrollment` is inserted, and `renewal` is recorded (unseen). The device
    /// keeps its id and everything else. `Conflict` when the device's current thumbprint is no
    /// longer `renewal.replaces` (a concurrent renewal or re-enrollment) or it was unenrolled;
    /// `NotFound` for an unknown device. Nothing is written on an error.
    async fn renew_device_certificate(
        &self,
        renewal: &CertificateRenewal,
        enrollment: &Enrollment,
    ) -> StoreResult<()>;

    /// The device's renewals whose new certificate has not been seen yet, oldest first; empty
    /// when there are none (the usual case).
    async fn unseen_renewals(&self, device: DeviceId) -> StoreResult<Vec<CertificateRenewal>>;

    /// Marks every unseen renewal of the device seen at `at` (its current certificate checked
    /// in; the old ones are refused from now on). Returns how many; 0 when none was unseen.
    async fn retire_renewed_certificates(
        &self,
        device: DeviceId,
        at: OffsetDateTime,
    ) -> StoreResult<u64>;

    /// Every renewal of the device, oldest first; empty if none.
    async fn renewals_of_device(&self, device: DeviceId) -> StoreResult<Vec<CertificateRenewal>>;

    /// Counts enrolled (not unenrolled) devices with a certificate by expiry at `now`.
    async fn certificate_expiry(
        &self,
        now: OffsetDateTime,
        within: Duration,
    ) -> StoreResult<CertificateExpiry>;
}

/// Devices.
#[async_trait]
pub trait DeviceStore: Send + Sync {
    /// The device with this id; `None` if unknown.
    async fn device(&self, id: DeviceId) -> StoreResult<Option<Device>>;
    /// The device whose current client cert has this SHA-1 thumbprint (lowercase hex); `None` if none.
    async fn device_by_cert_thumbprint(&self, thumbprint: &str) -> StoreResult<Option<Device>>;
    /// The device whose `./DevInfo/DevId` is `mdm_device_id`; `None` if none.
    async fn device_by_mdm_device_id(&self, mdm_device_id: &str) -> StoreResult<Option<Device>>;
    /// The newest enrolled device with this HWDevID; `None` if none.
    async fn device_by_hw_dev_id(&self, hw_dev_id: &str) -> StoreResult<Option<Device>>;
    /// The devices with these ids, in one query per 500 ids, keyed by id; unknown ids are
    /// absent and an empty slice gives an empty map.
    async fn devices_by_ids(
        &self,
        ids: &[DeviceId],
    ) -> StoreResult<std::collections::HashMap<DeviceId, Device>>;
    /// Every device (enrolled or not) with this HWDevID, serial or Entra device id (each
    /// compared case-insensitively; `None` asks nothing of that attribute), oldest enrolled
    /// first; empty when all three are `None`.
    async fn devices_by_identity(
        &self,
        hw_dev_id: Option<&str>,
        serial: Option<&str>,
        aad_device_id: Option<&str>,
    ) -> StoreResult<Vec<Device>>;
    /// Saves every field of an existing device; `NotFound` if its id is unknown.
    async fn update_device(&self, device: &Device) -> StoreResult<()>;
    /// Sets only the primary user and the shared flag (`None` clears the user) and returns the
    /// device as stored afterwards; every other column is left as it is, so a check-in saving
    /// inventory-derived fields at the same time loses nothing. `NotFound` if unknown.
    async fn set_primary_user(
        &self,
        id: DeviceId,
        user: Option<&str>,
        shared: bool,
    ) -> StoreResult<Device>;
    /// Records a check-in: `last_seen = at`, `current_user = current_user` (None clears it);
    /// `NotFound` if unknown.
    async fn record_seen(
        &self,
        id: DeviceId,
        at: OffsetDateTime,
        current_user: Option<&str>,
    ) -> StoreResult<()>;
    /// A page of devices matching `query`, ordered by the sort key then id (keyset pagination:
    /// rows added or changed elsewhere never make a cursor repeat or skip unchanged rows). An empty
    /// page has `next = None`; `Conflict` for a cursor made for another sort.
    async fn list_devices(&self, query: &DeviceQuery) -> StoreResult<Page<Device>>;
    /// How many devices match `query`'s search, join type, condition and unenrolled choice
    /// (its sort, limit and cursor play no part); 0 when none.
    async fn count_listed_devices(&self, query: &DeviceQuery) -> StoreResult<u64>;
    /// The enrolled (not unenrolled) devices grouped by their
    /// [`crate::action::ReadinessInputs`] at `now`, with how many have each, in ONE query (a
    /// GROUP BY, never the devices themselves): `seen_within` is preflight's window,
    /// `recent` the one `seen_recently` judges. Empty when no device is enrolled.
    async fn readiness_census(
        &self,
        now: OffsetDateTime,
        seen_within: Duration,
        recent: Duration,
    ) -> StoreResult<Vec<(crate::action::ReadinessInputs, u64)>>;
    /// [`Self::readiness_census`] of the enrolled members of static group `group` only (with
    /// `recent` = `seen_within`).
    async fn group_readiness_census(
        &self,
        group: crate::ids::GroupId,
        now: OffsetDateTime,
        seen_within: Duration,
    ) -> StoreResult<Vec<(crate::action::ReadinessInputs, u64)>>;
    /// The members of `group` that are unenrolled or whose inputs at `now` are none of `ready`
    /// (the devices a [`BulkQueue`] leaves to the planner).
    async fn group_devices_not_in(
        &self,
        group: crate::ids::GroupId,
        now: OffsetDateTime,
        seen_within: Duration,
        ready: &[crate::action::ReadinessInputs],
    ) -> StoreResult<Vec<DeviceId>>;
}

/// Actions created on one UTC day in one state ([`ActionStore::action_counts_by_day`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DayCount {
    /// The UTC day of their creation.
    pub day: time::Date,
    /// Their state now.
    pub state: ActionState,
    /// How many.
    pub count: u64,
}

/// What a check-in reads first, in one query ([`CommandQueue::check_in_view`]): the device, and
/// whether the reads a session start would make next can find anything at all. An idle PC's
/// check-in (no renewal in flight, no action open, nothing queued or unanswered) reads nothing
/// more. A flag `true` means "may have some: read them".
#[derive(Clone, Debug, PartialEq)]
pub struct CheckInView {
    /// The device.
    pub device: Device,
    /// Some renewal of the device's certificate whose new certificate was not seen yet
    /// ([`CertificateRenewalStore::unseen_renewals`] is not empty).
    pub unseen_renewals: bool,
    /// Some action of the device is not terminal (requested, blocked, pending, sent, in
    /// progress).
    pub open_actions: bool,
    /// Some command of the device is queued, or sent and not answered.
    pub open_commands: bool,
    /// The stored values of the inventory nodes asked for (a node never stored is absent);
    /// `None`: not read.
    pub inventory: Option<Vec<InventoryValue>>,
}

impl CheckInView {
    /// A view that knows nothing beyond `device`: every later read is made (tests, tools).
    pub fn of(device: Device) -> Self {
        Self {
            device,
            unseen_renewals: true,
            open_actions: true,
            open_commands: true,
            inventory: None,
        }
    }
}

/// The per-device command queue and the atomic session step.
#[async_trait]
pub trait CommandQueue: Send + Sync {
    /// A check-in's first read, one query: device `id` (`None` if unknown), whether it has
    /// unseen renewals, open actions and open commands, and its stored values of `inventory`
    /// ([`CheckInView`]).
    async fn check_in_view(
        &self,
        id: DeviceId,
        inventory: &[&str],
    ) -> StoreResult<Option<CheckInView>>;
    /// Appends commands (state `queued`) after the device's existing ones, in slice order.
    /// Empty slice: nothing happens. `Conflict` if an id exists, `NotFound` for an unknown device.
    async fn enqueue(&self, commands: &[DeviceCommand]) -> StoreResult<()>;
    /// The command with this id; `None` if unknown.
    async fn command(&self, id: CommandId) -> StoreResult<Option<DeviceCommand>>;
    /// Up to `limit` queued commands of a device in queue order, without taking them; empty if none.
    async fn queued_commands(
        &self,
        device: DeviceId,
        limit: u32,
    ) -> StoreResult<Vec<DeviceCommand>>;
    /// The command of `device` sent in `session_id` with our MsgID `msg_ref` and CmdID `cmd_ref`
    /// (what the device's Status/Results reference), in any state; `None` if no such command.
    async fn sent_command_by_ref(
        &self,
        device: DeviceId,
        session_id: &str,
        msg_ref: &str,
        cmd_ref: &str,
    ) -> StoreResult<Option<DeviceCommand>>;
    /// Commands of `device` in state `sent` without an answer, oldest send first, excluding those
    /// sent in session `except_session`; empty if none.
    async fn unanswered_commands(
        &self,
        device: DeviceId,
        except_session: Option<&str>,
    ) -> StoreResult<Vec<DeviceCommand>>;
    /// Every command of an action in queue order; empty if none.
    async fn commands_of_action(&self, action: ActionId) -> StoreResult<Vec<DeviceCommand>>;
    /// Takes the still-queued commands of an action out of the queue (state `failed`, no status),
    /// so that a canceled or expired action never reaches the device; sent or answered commands are
    /// left alone. Returns how many were dropped (0 if none or the action is unknown).
    async fn discard_queued_commands(&self, action: ActionId) -> StoreResult<u64>;
    /// Applies one session step in a single transaction, in this order: device_update, seen,
    /// answers (state from [`crate::command::CommandState::after_status`]), inventory, action
    /// updates, requeue, enqueue, send. Sending takes up to `limit` queued commands in queue order
    /// (never a command another concurrent step took), marks them `sent` with
    /// `(session_id, msg_id, first_cmd_id + i)`, `sent_at = at`, `attempts + 1`, and moves their
    /// actions per [`crate::action::action_after_send`]; commands of `held_actions` are
    /// skipped (they stay queued). Any error (`NotFound` for an unknown
    /// device/command/action, `Conflict` for a command not `sent`, a foreign device's row, or an
    /// action whose state moved) rolls everything back.
    async fn session_step(&self, step: SessionStep) -> StoreResult<StepOutcome>;
}

/// Inventory values.
#[async_trait]
pub trait InventoryStore: Send + Sync {
    /// Upserts by (device, uri), keeping whichever value has the later `at` (an older report never
    /// overwrites a newer one). Empty slice: nothing happens.
    async fn upsert_inventory(&self, values: &[InventoryValue]) -> StoreResult<()>;
    /// Every stored value of a device, ordered by uri; empty if none.
    async fn inventory(&self, device: DeviceId) -> StoreResult<Vec<InventoryValue>>;
    /// The stored value of one node; `None` if never reported.
    async fn inventory_value(
        &self,
        device: DeviceId,
        uri: &str,
    ) -> StoreResult<Option<InventoryValue>>;
    /// The stored values of the nodes `uris`, in one query; nodes never reported are absent.
    async fn inventory_values(
        &self,
        device: DeviceId,
        uris: &[&str],
    ) -> StoreResult<Vec<InventoryValue>>;
}

/// Actions.
#[async_trait]
pub trait ActionStore: Send + Sync {
    /// How many actions of `kind` created at or after `from` are in each state, per UTC day of
    /// their creation: one GROUP BY for a chart, however many actions there are. Days and
    /// states without actions are absent.
    async fn action_counts_by_day(
        &self,
        kind: ActionKind,
        from: OffsetDateTime,
    ) -> StoreResult<Vec<DayCount>>;
    /// Stores a new action and enqueues its commands, atomically. `Conflict` if the id exists,
    /// `NotFound` if the device is unknown.
    async fn create_action(&self, action: &Action, commands: &[DeviceCommand]) -> StoreResult<()>;
    /// The action with this id (with its timeline); `None` if unknown.
    async fn action(&self, id: ActionId) -> StoreResult<Option<Action>>;
    /// Every action of a device, newest first; empty if none.
    async fn actions_of_device(&self, device: DeviceId) -> StoreResult<Vec<Action>>;
    /// Every action of a bulk request, oldest first; empty if none.
    async fn actions_of_batch(&self, batch: BatchId) -> StoreResult<Vec<Action>>;
    /// What readiness ([`crate::preflight()`]) needs of many devices, in one query per 500 ids:
    /// each device's non-terminal actions (blocked included) and its Autopilot Resets that ended
    /// `done` or `failed`, newest first like [`Self::actions_of_device`] (so a readiness computed
    /// from them equals one computed from every action). Devices with none, and unknown ids, are
    /// absent from the map; an empty slice gives an empty map.
    async fn actions_for_readiness(
        &self,
        devices: &[DeviceId],
    ) -> StoreResult<std::collections::HashMap<DeviceId, Vec<Action>>>;
    /// The newest non-terminal action of a device; `None` if all are terminal or there are none.
    async fn active_action(&self, device: DeviceId) -> StoreResult<Option<Action>>;
    /// Up to `limit` actions in `state`, oldest update first (for expiry ticks); empty if none.
    async fn actions_in_state(&self, state: ActionState, limit: u32) -> StoreResult<Vec<Action>>;
    /// How many actions are in `state`, counting no further than `cap` (the dashboard's
    /// in-flight counts, shown as "1000+"): the count alone, no action read.
    async fn count_actions_in_state(&self, state: ActionState, cap: u32) -> StoreResult<u64>;
    /// One page of the actions `query` selects, newest first (creation order), and the cursor of
    /// the next page (`None` on the last). `Conflict` for a cursor not made by this list.
    async fn list_actions(&self, query: &ActionQuery) -> StoreResult<Page<Action>>;
    /// Up to `limit` actions whose state is one of `states` and whose `updated_at` is strictly
    /// before `updated_before`, oldest update first (then creation order): what an expiry tick
    /// needs, read through the `(state, updated_at)` index instead of every action in a state.
    /// Empty if none match or `states` is empty.
    async fn stale_actions(
        &self,
        states: &[ActionState],
        updated_before: OffsetDateTime,
        limit: u32,
    ) -> StoreResult<Vec<Action>>;
    /// Saves state, reason, last_error, updated_at and timeline if the stored state is still
    /// `expected`; `Conflict` otherwise, `NotFound` if unknown.
    async fn update_action(&self, expected: ActionState, action: &Action) -> StoreResult<()>;
    /// Writes everything a request plan decided in ONE transaction, in this order, or nothing:
    /// 1. the claims: `release_wave` sets the wave's `released_at = plan.at` only if it is still
    ///    NULL and its batch is neither paused nor canceled, `batch_change` moves the batch to
    ///    its new state only if it is still in `expected` (else `Conflict`) and then sets the
    ///    due times of its `waiting` waves (`Conflict` unless exactly those still wait), `claim_schedule` moves the schedule on only if it is enabled and its `next_run` is
    ///    still `due_at` (a conditional update each, so of several processes writing plans with
    ///    the same claim exactly one gets [`WriteOutcome::Written`]; the others get
    ///    [`WriteOutcome::ClaimLost`] and nothing is written);
    /// 2. the daily cap: counts as [`WaveStore::count_actions_created`] does, serialised with
    ///    every other capped writer (other processes included), and refuses with
    ///    [`WriteOutcome::CapReached`] (nothing written) if the plan creates not-blocked actions
    ///    of `cap.kinds` in `[cap.from, cap.to)` and that count plus them exceeds `cap.cap` (a
    ///    plan creating none of them passes, even over a full day);
    /// 3. `end`: each action saved only if its stored state is still `expected`, its queued
    ///    commands dropped as [`CommandQueue::discard_queued_commands`] does;
    /// 4. `create`: the new actions with their queued commands, in order;
    /// 5. `device_changes`, `waves`, `window`, then `audit` in order.
    ///
    /// Any error rolls everything back: `NotFound` for an unknown wave, schedule, device or
    /// ended action; `Conflict` when an ended action's state moved, an id is taken, the
    /// device already has an active erasing action (at most one of Autopilot Reset or a wipe in
    /// requested/pending/sent/acknowledged/in_progress per device: a second one is refused even
    /// if two processes insert it at once), or the database gave up on the transaction under
    /// concurrency (a deadlock): each of those means "read again and re-plan". An empty plan
    /// writes nothing and is `Written`.
    async fn write_request_plan(&self, plan: &RequestPlan) -> StoreResult<WriteOutcome>;
}

/// The audit log: append and read, never change.
#[async_trait]
pub trait AuditLog: Send + Sync {
    /// Appends an event and returns it with its position (greater than every earlier one).
    async fn append_audit(&self, event: NewAuditEvent) -> StoreResult<AuditEvent>;
    /// Events matching `query` in position order (ascending or descending per `query.order`);
    /// empty if none.
    async fn list_audit(&self, query: &AuditQuery) -> StoreResult<Vec<AuditEvent>>;
}

/// Enrollment tokens and API tokens (stored hashed).
#[async_trait]
pub trait TokenStore: Send + Sync {
    /// Stores a new enrollment token; `Conflict` if the id or hash exists.
    async fn create_enrollment_token(&self, token: &EnrollmentToken) -> StoreResult<()>;
    /// Atomically spends one use of the token with this secret hash and returns it (uses already
    /// incremented). `NotFound` if no such token, `TokenExpired` at/after its expiry,
    /// `TokenExhausted` when `uses >= max_uses`; refused attempts spend nothing. Concurrent
    /// consumers never exceed `max_uses` together.
    async fn consume_enrollment_token(
        &self,
        secret_hash: &SecretHash,
        now: OffsetDateTime,
    ) -> StoreResult<EnrollmentToken>;
    /// Every enrollment token, oldest first; empty if none.
    async fn list_enrollment_tokens(&self) -> StoreResult<Vec<EnrollmentToken>>;
    /// Stores a new API token; `Conflict` if the id or hash exists.
    async fn create_api_token(&self, token: &ApiToken) -> StoreResult<()>;
    /// The API token with this hash, revoked ones included (the caller refuses those); `None` if none.
    async fn api_token_by_hash(&self, secret_hash: &SecretHash) -> StoreResult<Option<ApiToken>>;
    /// Every API token, oldest first; empty if none.
    async fn list_api_tokens(&self) -> StoreResult<Vec<ApiToken>>;
    /// Marks a token revoked at `at` (idempotent: an earlier revocation time is kept);
    /// `NotFound` if unknown.
    async fn revoke_api_token(&self, id: TokenId, at: OffsetDateTime) -> StoreResult<()>;
}

/// Device groups (static member lists and filters).
#[async_trait]
pub trait GroupStore: Send + Sync {
    /// Stores a new group (with its static members). `Conflict` if the id or name is taken,
    /// `NotFound` if a static member is an unknown device.
    async fn create_group(&self, group: &Group) -> StoreResult<()>;
    /// The group with this id (static members ordered by device id); `None` if unknown.
    async fn group(&self, id: GroupId) -> StoreResult<Option<Group>>;
    /// The group with this exact name; `None` if none.
    async fn group_by_name(&self, name: &str) -> StoreResult<Option<Group>>;
    /// Every group, ordered by name.
    async fn list_groups(&self) -> StoreResult<Vec<Group>>;
    /// Renames a group; `NotFound` if unknown, `Conflict` if the name is taken.
    async fn rename_group(&self, id: GroupId, name: &str) -> StoreResult<()>;
    /// Deletes a group (never its devices); `NotFound` if unknown.
    async fn delete_group(&self, id: GroupId) -> StoreResult<()>;
    /// Adds devices to a static group (already-members are ignored). `NotFound` for an unknown
    /// group or device, `Conflict` for a filter group.
    async fn add_group_members(&self, id: GroupId, devices: &[DeviceId]) -> StoreResult<()>;
    /// Removes devices from a static group (non-members are ignored). `NotFound` for an unknown
    /// group, `Conflict` for a filter group.
    async fn remove_group_members(&self, id: GroupId, devices: &[DeviceId]) -> StoreResult<()>;
    /// The resolved members at `now`, ordered by device id: the static members, or every device
    /// matching the filter ([`crate::group::DeviceFilter::matches`], group tag from the Autopilot
    /// registry by serial). `NotFound` if the group is unknown.
    async fn group_member_ids(
        &self,
        id: GroupId,
        now: OffsetDateTime,
    ) -> StoreResult<Vec<DeviceId>>;
}

/// A later wave of a bulk request, stored until [`crate::batch::release_due_waves`] requests
/// its actions (the claim, the actions and their audit in one [`RequestPlan`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wave {
    /// The bulk request.
    pub batch: BatchId,
    /// Position within the batch (0 is the wave requested at once); unique per batch.
    pub index: u32,
    /// What to request.
    pub kind: ActionKind,
    /// Who asked for the batch.
    pub actor: String,
    /// Devices of this wave, in request order.
    pub devices: Vec<DeviceId>,
    /// Not released before this instant.
    pub due_at: OffsetDateTime,
    /// When it was released; `None` while waiting.
    pub released_at: Option<OffsetDateTime>,
    /// The daily cap of the bulk request this wave belongs to; `None` if the request gave none
    /// (then the server-wide cap applies when it is released).
    pub daily_cap: Option<u32>,
}

/// A device named by a wave still waiting (see [`WaveStore::waiting_wave_devices`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WaitingDevice {
    /// The device.
    pub device: DeviceId,
    /// Its batch.
    pub batch: BatchId,
    /// The wave's index.
    pub wave: u32,
    /// When the wave is due.
    pub due_at: OffsetDateTime,
    /// Whether the batch is paused (the wave waits for a resume).
    pub paused: bool,
}

/// A limit on erasing actions per day, checked in the same transaction that creates the actions
/// (see [`ActionStore::write_request_plan`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DailyCap {
    /// The kinds that count.
    pub kinds: Vec<ActionKind>,
    /// Start of the day (inclusive).
    pub from: OffsetDateTime,
    /// End of the day (exclusive).
    pub to: OffsetDateTime,
    /// At most this many not-blocked actions of `kinds` created in `[from, to)`.
    pub cap: u32,
}

/// Scheduled waves of bulk requests and the counts the daily cap needs.
#[async_trait]
pub trait WaveStore: Send + Sync {
    /// Stores a wave; `Conflict` if (batch, index) exists.
    async fn save_wave(&self, wave: &Wave) -> StoreResult<()>;
    /// Unreleased waves with `due_at <= now` of batches not paused or canceled, by due time,
    /// batch, index; at most `limit`.
    async fn due_waves(&self, now: OffsetDateTime, limit: u32) -> StoreResult<Vec<Wave>>;
    /// Every wave of a batch by index; empty if none.
    async fn waves_of_batch(&self, batch: BatchId) -> StoreResult<Vec<Wave>>;
    /// The bulk request `id` as started; `None` if unknown.
    async fn batch_record(&self, id: BatchId) -> StoreResult<Option<BatchRecord>>;
    /// One page of bulk requests, newest first, `limit` (at least 1) at a time after `cursor`,
    /// and the cursor of the next page. `Conflict` for a cursor not made by this list.
    async fn list_batches(
        &self,
        limit: u32,
        cursor: Option<&Cursor>,
    ) -> StoreResult<Page<BatchRecord>>;
    /// [`BatchCounts`] of each of `batches` (absent ones count nothing), in one query each
    /// for actions and waves.
    async fn batch_counts(
        &self,
        batches: &[BatchId],
    ) -> StoreResult<std::collections::HashMap<BatchId, BatchCounts>>;
    /// The devices of waves still waiting in batches not canceled, with the batch, the wave's
    /// index and due time; `only` narrows it to these devices (`None`: every device).
    async fn waiting_wave_devices(
        &self,
        only: Option<&[DeviceId]>,
    ) -> StoreResult<Vec<WaitingDevice>>;
    /// How many actions of these kinds were created in `[from, to)` and not blocked (blocked
    /// actions never reach a device).
    async fn count_actions_created(
        &self,
        kinds: &[ActionKind],
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> StoreResult<u64>;
}

/// Scheduled bulk requests.
#[async_trait]
pub trait ScheduleStore: Send + Sync {
    /// Stores a new schedule; `Conflict` if the id or name is taken, `NotFound` for an unknown group.
    async fn create_schedule(&self, schedule: &Schedule) -> StoreResult<()>;
    /// The schedule with this id; `None` if unknown.
    async fn schedule(&self, id: ScheduleId) -> StoreResult<Option<Schedule>>;
    /// Every schedule, ordered by name.
    async fn list_schedules(&self) -> StoreResult<Vec<Schedule>>;
    /// Saves every field; `NotFound` if unknown, `Conflict` if the new name is taken.
    async fn update_schedule(&self, schedule: &Schedule) -> StoreResult<()>;
    /// Deletes a schedule; `NotFound` if unknown.
    async fn delete_schedule(&self, id: ScheduleId) -> StoreResult<()>;
    /// Enabled schedules with `next_run <= now`, by next_run then id.
    async fn due_schedules(&self, now: OffsetDateTime) -> StoreResult<Vec<Schedule>>;
    /// Stores the maintenance window of a batch; `Conflict` if the batch already has one.
    async fn save_batch_window(&self, batch: BatchId, window: &BatchWindow) -> StoreResult<()>;
    /// The maintenance window of a batch; `None` if it has none.
    async fn batch_window(&self, batch: BatchId) -> StoreResult<Option<BatchWindow>>;
    /// The device's `pending` actions whose batch has a maintenance window, oldest first, with
    /// that window; empty if none (the common case: one indexed query per check-in).
    async fn pending_action_windows(
        &self,
        device: DeviceId,
    ) -> StoreResult<Vec<(ActionId, BatchWindow)>>;
}

/// The Autopilot device registry, keyed by serial (case-insensitive).
#[async_trait]
pub trait AutopilotRegistry: Send + Sync {
    /// Inserts or replaces records by serial, atomically. Empty slice: nothing happens.
    async fn upsert_autopilot(&self, records: &[AutopilotRecord]) -> StoreResult<()>;
    /// The record for this serial; `None` if not registered.
    async fn autopilot_record(&self, serial: &str) -> StoreResult<Option<AutopilotRecord>>;
    /// Every record with the enrolled device of the same serial (the newest enrollment if several),
    /// ordered by serial.
    async fn autopilot_records(&self) -> StoreResult<Vec<(AutopilotRecord, Option<DeviceId>)>>;
    /// Group tags by [`AutopilotRecord::serial_key`] (records without a tag are left out).
    async fn autopilot_group_tags(&self) -> StoreResult<std::collections::HashMap<String, String>>;
}

/// Web console sessions, shared by every server process on the same database.
#[async_trait]
pub trait ConsoleSessionStore: Send + Sync {
    /// Stores a new session. `Conflict` if the id hash exists, `NotFound` if the token or account
    /// it names is unknown.
    async fn create_console_session(&self, session: &ConsoleSession) -> StoreResult<()>;
    /// The session with this id hash and who holds it (a revoked token or a disabled account
    /// included: the caller refuses those), if the session exists and `expires_at > now`;
    /// `None` otherwise.
    async fn console_session(
        &self,
        id_hash: &SecretHash,
        now: OffsetDateTime,
    ) -> StoreResult<Option<(ConsoleSession, Principal)>>;
    /// Deletes a session (sign-out); `false` if there was none.
    async fn delete_console_session(&self, id_hash: &SecretHash) -> StoreResult<bool>;
    /// Deletes every session with `expires_at <= now`; returns how many (0 if none).
    async fn delete_expired_console_sessions(&self, now: OffsetDateTime) -> StoreResult<u64>;
}

/// Named local accounts of the web console (passwords stored only as PHC hash strings).
#[async_trait]
pub trait AccountStore: Send + Sync {
    /// Stores a new account; `Conflict` if the id or the name is taken.
    async fn create_account(&self, account: &Account) -> StoreResult<()>;
    /// The account with this name, disabled ones included (the caller refuses those); `None`
    /// if none.
    async fn account_by_name(&self, name: &AccountName) -> StoreResult<Option<Account>>;
    /// Every account, oldest first; empty if none.
    async fn list_accounts(&self) -> StoreResult<Vec<Account>>;
    /// Marks the account disabled at `at` (idempotent: an earlier time is kept) and returns it
    /// as stored; `NotFound` if no account has this name.
    async fn disable_account(&self, name: &AccountName, at: OffsetDateTime)
        -> StoreResult<Account>;
}

/// The support trail: the last raw (redacted) messages of each device ([`crate::trail`]).
#[async_trait]
pub trait SupportTrail: Send + Sync {
    /// Appends `messages` (in the order given) to their devices' trails, then trims the trail
    /// of every device in `trim` (whether or not it has messages here) to its newest `keep`
    /// messages, in one transaction; `keep == 0` stores nothing. Nothing to do when both are
    /// empty. A device of `messages` that does not exist is `NotFound`. A trail longer than
    /// `keep` until its trim is the caller's choice: the server trims each device it wrote at
    /// most every [`crate::trail::TRIM_EVERY`], so that one statement drops many check-ins'
    /// old messages at once.
    async fn append_trail(
        &self,
        messages: &[TrailMessage],
        keep: u32,
        trim: &[DeviceId],
    ) -> StoreResult<()>;
    /// The newest `limit` messages of `device`, newest first; empty when it has none.
    async fn trail(&self, device: DeviceId, limit: u32) -> StoreResult<Vec<TrailMessage>>;
}

/// What one delivery attempt ended with ([`WebhookStore::finish_delivery`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryResult {
    /// HTTP status the receiver answered; `None` if there was no answer.
    pub status: Option<u16>,
    /// Why it failed; `None` on success.
    pub error: Option<String>,
    /// Set when the receiver accepted it.
    pub delivered_at: Option<OffsetDateTime>,
    /// The next attempt; `None` when delivered or given up.
    pub next_attempt_at: Option<OffsetDateTime>,
}

/// Webhook subscriptions and the outbox of their deliveries.
#[async_trait]
pub trait WebhookStore: Send + Sync {
    /// Stores a new subscription; `Conflict` if the id or name is taken.
    async fn create_webhook(&self, webhook: &Webhook) -> StoreResult<()>;
    /// The subscription with this id; `None` if unknown.
    async fn webhook(&self, id: WebhookId) -> StoreResult<Option<Webhook>>;
    /// Every subscription, oldest first; empty if none.
    async fn list_webhooks(&self) -> StoreResult<Vec<Webhook>>;
    /// Deletes a subscription with its deliveries; `NotFound` if unknown.
    async fn delete_webhook(&self, id: WebhookId) -> StoreResult<()>;
    /// Enables or disables a subscription. Enabling a disabled one sets its `notify_since` to
    /// `at`; anything else leaves `notify_since` alone (enabling twice changes nothing).
    /// `NotFound` if unknown.
    async fn set_webhook_enabled(
        &self,
        id: WebhookId,
        enabled: bool,
        at: OffsetDateTime,
    ) -> StoreResult<()>;
    /// Up to `limit` actions in one of `states` with `updated_at >= since` for which `webhook`
    /// has no delivery of the event their state raises yet (`done` → done, `failed` → failed,
    /// `expired` → stuck), oldest update first; empty if none (or `states` is empty). An action
    /// already reported stuck while silent is thus not reported again when it expires, but is
    /// reported when it ends in `done` or `failed` after all.
    async fn unnotified_actions(
        &self,
        webhook: WebhookId,
        states: &[ActionState],
        since: OffsetDateTime,
        limit: u32,
    ) -> StoreResult<Vec<Action>>;
    /// Up to `limit` actions in one of `states` whose last transition lies in
    /// `[since, updated_until]` (both inclusive) and for which `webhook` has no `stuck` delivery
    /// yet, oldest update first; empty if none (or `states` is empty). Finds actions silent for
    /// too long.
    async fn unnotified_stale_actions(
        &self,
        webhook: WebhookId,
        states: &[ActionState],
        since: OffsetDateTime,
        updated_until: OffsetDateTime,
        limit: u32,
    ) -> StoreResult<Vec<Action>>;
    /// Adds a delivery to the outbox. Idempotent per (webhook, action, event): returns `false`
    /// and stores nothing if one exists (so two server processes never enqueue an event twice);
    /// deliveries without an action (pings) are always stored. `NotFound` for an unknown webhook.
    async fn enqueue_delivery(&self, delivery: &Delivery) -> StoreResult<bool>;
    /// Up to `limit` batches, newest first, with an action updated at or after `since` (and in
    /// one of `states`, when given) and no delivery of `event` (a batch event) for `webhook`
    /// yet: the batches a batch subscription may still have to be told about. Idempotent
    /// enqueueing is per (webhook, batch, event), like actions'.
    async fn unnotified_batches(
        &self,
        webhook: WebhookId,
        event: WebhookEvent,
        since: OffsetDateTime,
        states: Option<&[ActionState]>,
        limit: u32,
    ) -> StoreResult<Vec<BatchRecord>>;
    /// The delivery with this id; `None` if unknown.
    async fn delivery(&self, id: DeliveryId) -> StoreResult<Option<Delivery>>;
    /// Up to `limit` undelivered deliveries of enabled subscriptions with
    /// `next_attempt_at <= now`, earliest due first (a disabled subscription's deliveries wait).
    async fn due_deliveries(&self, now: OffsetDateTime, limit: u32) -> StoreResult<Vec<Delivery>>;
    /// Claims the next attempt of a delivery: if it is undelivered and still has
    /// `attempts_seen` attempts, sets `attempts + 1` and `next_attempt_at = retry_at` (the retry
    /// time should this attempt never report back) and returns `true`; otherwise `false` (another
    /// process took this attempt, or it was delivered). `NotFound` if unknown.
    async fn claim_delivery(
        &self,
        id: DeliveryId,
        attempts_seen: u32,
        retry_at: Option<OffsetDateTime>,
    ) -> StoreResult<bool>;
    /// Records how the claimed attempt ended; `NotFound` if unknown.
    async fn finish_delivery(&self, id: DeliveryId, result: &DeliveryResult) -> StoreResult<()>;
    /// Up to `limit` deliveries of a webhook, newest first; empty if none.
    async fn deliveries_of_webhook(
        &self,
        webhook: WebhookId,
        limit: u32,
    ) -> StoreResult<Vec<Delivery>>;
}

/// Push (WNS) channels of devices, the claimed push attempts of pending actions, and what woke
/// each action's PC (`core::push`).
#[async_trait]
pub trait PushStore: Send + Sync {
    /// Stores `channel` as its device's channel, replacing the one stored before.
    async fn record_push_channel(&self, channel: &crate::push::PushChannel) -> StoreResult<()>;

    /// The device's stored channel; `None` when it never reported one.
    async fn push_channel(&self, device: DeviceId)
        -> StoreResult<Option<crate::push::PushChannel>>;

    /// Marks the device's channel expired at `at` when its URI is still `uri` (a newer report
    /// wins); whether it did.
    async fn expire_push_channel(
        &self,
        device: DeviceId,
        uri: &str,
        at: OffsetDateTime,
    ) -> StoreResult<bool>;

    /// Pending actions created at or after `since` whose device has an active channel, each
    /// with its latest attempt, oldest action first, at most `limit`; empty when none.
    async fn push_candidates(
        &self,
        since: OffsetDateTime,
        limit: u32,
    ) -> StoreResult<Vec<crate::push::PushCandidate>>;

    /// Claims attempt `attempt.attempt` of `attempt.action`: `true` for exactly one caller
    /// however many processes claim the same (action, attempt) at once; `false` when it was
    /// claimed before.
    async fn claim_push_attempt(&self, attempt: &crate::push::PushAttempt) -> StoreResult<bool>;

    /// Records how a claimed attempt ended; nothing when no such attempt was claimed.
    async fn finish_push_attempt(
        &self,
        action: ActionId,
        attempt: u32,
        outcome: crate::push::PushOutcome,
        at: OffsetDateTime,
    ) -> StoreResult<()>;

    /// Every attempt of these actions, by action then attempt; empty for none.
    async fn push_attempts(
        &self,
        actions: &[ActionId],
    ) -> StoreResult<Vec<crate::push::PushAttempt>>;

    /// Records what woke each action's PC, once: an action that already has one keeps it.
    async fn record_wakes(
        &self,
        wakes: &[(ActionId, crate::push::WokenBy, OffsetDateTime)],
    ) -> StoreResult<()>;

    /// What woke these actions' PCs, for those recorded; empty for none.
    async fn wakes(
        &self,
        actions: &[ActionId],
    ) -> StoreResult<Vec<(ActionId, crate::push::WokenBy)>>;
}

/// One enrolled PC as [`BulkLoad::bulk_load`] writes it: the device row, its enrollment and
/// the inventory it reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeedDevice {
    /// The device (a new id).
    pub device: Device,
    /// Its enrollment (`device` must be the device's id).
    pub enrollment: Enrollment,
    /// Its inventory values (each for the device).
    pub inventory: Vec<InventoryValue>,
}

/// Loading many enrolled PCs at once (`redeploy seed`, the 100,000-PC benchmark of issue #16).
#[async_trait]
pub trait BulkLoad: Send + Sync {
    /// Inserts every device of `devices` with its enrollment and inventory, with multi-row
    /// INSERTs in ONE transaction: all of them or nothing. They read back as if each had been
    /// enrolled ([`EnrollmentStore::create_enrollment`]) and had reported its inventory.
    /// `Conflict` if a device or enrollment id is taken; an empty slice writes nothing.
    async fn bulk_load(&self, devices: &[SeedDevice]) -> StoreResult<()>;

    /// Has the database gather its planner's statistics now, after a bulk load: PostgreSQL's
    /// `VACUUM ANALYZE` (its autovacuum would run it only a minute or more later, and until then
    /// the fresh rows are planned as if the tables were empty, and device search reads the
    /// trigram indexes' unsorted pending lists: 90 ms instead of 2 at 100,000 PCs); nothing on
    /// SQLite, whose plans do not depend on statistics it was never given.
    async fn refresh_statistics(&self) -> StoreResult<()>;
}

/// Whether the database can do the store's work right now (readiness, `/readyz`).
#[async_trait]
pub trait HealthCheck: Send + Sync {
    /// `Ok` when the database answers a statement inside a transaction that could write (so a
    /// database whose write lock another process holds is not ready); the database's error
    /// otherwise. Writes nothing. Waits no longer than the store waits for any statement; a
    /// caller that needs a tighter bound wraps it in its own timeout.
    async fn ping(&self) -> StoreResult<()>;
}

/// Every storage concern; what the server holds as `Arc<dyn Store>`.
pub trait Store:
    EnrollmentStore
    + CertificateRenewalStore
    + DeviceStore
    + CommandQueue
    + InventoryStore
    + ActionStore
    + AuditLog
    + TokenStore
    + GroupStore
    + WaveStore
    + ScheduleStore
    + AutopilotRegistry
    + ConsoleSessionStore
    + AccountStore
    + WebhookStore
    + SupportTrail
    + HealthCheck
    + PushStore
    + BulkLoad
    + Send
    + Sync
{
}

impl<T> Store for T where
    T: EnrollmentStore
        + CertificateRenewalStore
        + DeviceStore
        + CommandQueue
        + InventoryStore
        + ActionStore
        + AuditLog
        + TokenStore
        + GroupStore
        + WaveStore
        + ScheduleStore
        + AutopilotRegistry
        + ConsoleSessionStore
        + AccountStore
        + WebhookStore
        + SupportTrail
        + HealthCheck
        + PushStore
        + BulkLoad
        + Send
        + Sync
{
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn cursor_round_trips_and_rejects_other_sorts() {
        let id = DeviceId::generate();
        let c = Cursor::after(DeviceSort::Name, &CursorKey::Text("pc.1 é".into()), id);
        assert_eq!(
            Cursor::parse(c.as_str()).decode(DeviceSort::Name).unwrap(),
            (CursorKey::Text("pc.1 é".into()), id)
        );
        assert!(c.decode(DeviceSort::LastSeen).is_err());
        let c = Cursor::after(DeviceSort::LastSeen, &CursorKey::Int(NEVER_SEEN_KEY), id);
        assert_eq!(
            c.decode(DeviceSort::LastSeen).unwrap().0,
            CursorKey::Int(NEVER_SEEN_KEY)
        );
        assert!(Cursor::parse("garbage").decode(DeviceSort::Name).is_err());
    }

    #[test]
    fn micros_round_trip() {
        let t = datetime!(2026-05-06 7:08:09.123456 UTC);
        assert_eq!(from_micros(to_micros(t)).unwrap(), t);
    }
}
