//! Batches: one kind of action asked of many devices (a list, a group or a filter), released in
//! waves. A dry-run [`plan`] over a target with no size cap, and [`execute`], which requests the
//! first wave at once and stores later waves for [`release_due_waves`] (a tick the server drives;
//! no sleeping or spawning here). A daily cap limits how many erasing actions (resets, wipes) are
//! requested per UTC day across all batches. (A "bulk request" is the API call that starts a
//! batch: `POST /api/v1/actions/bulk`.)

use std::collections::HashSet;

use time::{Duration, OffsetDateTime, Time};

use crate::action::request::assess_with;
use crate::action::request::{kept_changing, read_targets, PLAN_ATTEMPTS};
use crate::action::{is_erasing, plan_requests, ActionSettings, Decision, RequestTarget};
use crate::action::{Action, ActionKind, ActionState, ReadinessInputs};
use crate::audit::NewAuditEvent;
use crate::group::{DeviceFilter, Group};
use crate::ids::{ActionId, BatchId, DeviceId, GroupId};
use crate::preflight::BlockReason;
use crate::schedule::BatchWindow;
use crate::session::SessionError;
use crate::store::{
    ActionUpdate, BatchChange, BatchRecord, BatchState, BulkQueue, BulkVerdict, DailyCap,
    DeviceQuery, RequestPlan, ScheduleClaim, Store, StoreError, Wave, WaveRelease, WriteOutcome,
};

/// Every erasing kind, as the daily cap counts them ([`is_erasing`]).
pub const ERASING: &[ActionKind] = &[
    ActionKind::AutopilotReset,
    ActionKind::Wipe,
    ActionKind::WipeKeepProvisioning,
    ActionKind::WipeKeepUserData,
    ActionKind::WipeProtected,
];

/// Which devices a bulk request is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// These devices (duplicates are taken once; unknown ids are reported as not found).
    Devices(Vec<DeviceId>),
    /// The resolved members of a group; erasing it needs the group's name typed as confirmation.
    Group(GroupId),
    /// [`Target::Group`] for a group the caller has read already (with its members): not read
    /// again (a static group of 100,000 is a tenth of a second).
    ReadGroup(Box<Group>),
    /// Every device matching the filter now.
    Filter(DeviceFilter),
}

/// What would happen to one device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlanOutcome {
    /// The action would be queued.
    WouldQueue,
    /// Preflight would block it.
    Blocked(Vec<BlockReason>),
    /// No such device.
    NotFound,
}

/// One device of a plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanItem {
    /// The device (or the unknown id).
    pub device_id: DeviceId,
    /// What would happen.
    pub outcome: PlanOutcome,
}

/// A dry run: what a bulk request would do now, device by device. Changes nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// What would be requested.
    pub kind: ActionKind,
    /// One item per distinct target device, in target order (groups and filters: by device id).
    pub items: Vec<PlanItem>,
}

impl Plan {
    /// How many would be queued.
    pub fn would_queue(&self) -> usize {
        self.items
            .iter()
            .filter(|i| i.outcome == PlanOutcome::WouldQueue)
            .count()
    }
}

/// How a bulk request is spread out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WaveSettings {
    /// Devices per wave (at least 1).
    pub wave_size: u32,
    /// Time between the start of two waves.
    pub interval: Duration,
    /// At most this many erasing actions requested per UTC day across all batches.
    pub daily_cap: Option<u32>,
}

impl Default for WaveSettings {
    fn default() -> Self {
        Self {
            wave_size: u32::MAX,
            interval: Duration::ZERO,
            daily_cap: None,
        }
    }
}

/// What happened to one device of a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ItemOutcome {
    /// The action was created and its commands queued.
    Queued(ActionId),
    /// The action was created blocked; the text says why.
    Blocked(ActionId, String),
    /// No such device.
    NotFound,
    /// Left to a later wave (or the next UTC day under the daily cap).
    Deferred {
        /// The wave's index within the batch.
        wave: u32,
        /// Not released before this.
        due_at: OffsetDateTime,
    },
}

/// One device of a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchItem {
    /// The device (or the unknown id).
    pub device_id: DeviceId,
    /// What happened.
    pub outcome: ItemOutcome,
}

/// What [`execute`] or [`release_due_waves`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchResult {
    /// The batch every created action carries.
    pub batch_id: BatchId,
    /// One item per device handled, but those the database gave their action ([`BulkQueue`]).
    pub items: Vec<BatchItem>,
    /// How many devices the database queued (not in `items`).
    pub queued_in_bulk: usize,
    /// How many devices the database blocked and `items` does not list (it lists the first
    /// [`BULK_FROM`] of them).
    pub blocked_in_bulk: usize,
}

impl BatchResult {
    fn count(&self, f: impl Fn(&ItemOutcome) -> bool) -> usize {
        self.items.iter().filter(|i| f(&i.outcome)).count()
    }
    /// How many devices the batch handled.
    pub fn devices(&self) -> usize {
        self.items.len() + self.queued_in_bulk + self.blocked_in_bulk
    }
    /// How many were queued.
    pub fn queued(&self) -> usize {
        self.count(|o| matches!(o, ItemOutcome::Queued(_))) + self.queued_in_bulk
    }
    /// How many were blocked.
    pub fn blocked(&self) -> usize {
        self.count(|o| matches!(o, ItemOutcome::Blocked(..))) + self.blocked_in_bulk
    }
    /// How many were unknown.
    pub fn not_found(&self) -> usize {
        self.count(|o| matches!(o, ItemOutcome::NotFound))
    }
    /// How many were deferred.
    pub fn deferred(&self) -> usize {
        self.count(|o| matches!(o, ItemOutcome::Deferred { .. }))
    }
    /// The counts as the audit log words them: `3 queued, 1 blocked, 0 not found, 2 deferred`.
    pub fn counts_text(&self) -> String {
        format!(
            "{} queued, {} blocked, {} not found, {} deferred",
            self.queued(),
            self.blocked(),
            self.not_found(),
            self.deferred()
        )
    }
}

/// The device ids of a target, distinct, plus the group name when it is a group.
async fn resolve(
    store: &dyn Store,
    target: &Target,
    now: OffsetDateTime,
) -> Result<(Vec<DeviceId>, Option<String>), SessionError> {
    match target {
        Target::Devices(ids) => {
            let mut seen = HashSet::new();
            Ok((
                ids.iter().copied().filter(|id| seen.insert(*id)).collect(),
                None,
            ))
        }
        Target::Group(id) => {
            let group = store
                .group(*id)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("group {id}")))?;
            members(store, group, now).await
        }
        Target::ReadGroup(group) => members(store, (**group).clone(), now).await,
        Target::Filter(filter) => {
            let tags = store.autopilot_group_tags().await?;
            let mut query = DeviceQuery {
                include_unenrolled: true,
                limit: 500,
                ..DeviceQuery::default()
            };
            let mut ids = Vec::new();
            loop {
                let page = store.list_devices(&query).await?;
                for d in &page.items {
                    let tag = d
                        .serial
                        .as_deref()
                        .and_then(|s| tags.get(&s.to_uppercase()))
                        .map(String::as_str);
                    if filter.matches(d, now, tag) {
                        ids.push(d.id);
                    }
                }
                match page.next {
                    Some(c) => query.cursor = Some(c),
                    None => break,
                }
            }
            ids.sort();
            Ok((ids, None))
        }
    }
}

/// The members of `group` and its name: a static group's came with it (read once: 100,000 are
/// a tenth of a second); a filter group's are the devices matching it now.
async fn members(
    store: &dyn Store,
    group: Group,
    now: OffsetDateTime,
) -> Result<(Vec<DeviceId>, Option<String>), SessionError> {
    let ids = match group.kind {
        crate::group::GroupKind::Static { members } => members,
        crate::group::GroupKind::Filter { .. } => store.group_member_ids(group.id, now).await?,
    };
    Ok((ids, Some(group.name)))
}

impl Target {
    /// The group this target is, if it is one.
    fn group(&self) -> Option<GroupId> {
        match self {
            Target::Group(id) => Some(*id),
            Target::ReadGroup(group) => Some(group.id),
            Target::Devices(_) | Target::Filter(_) => None,
        }
    }
}

/// Dry run: what requesting `kind` on every device of `target` would do now. No size cap.
pub async fn plan(
    store: &dyn Store,
    target: &Target,
    kind: ActionKind,
    now: OffsetDateTime,
    settings: &ActionSettings,
) -> Result<Plan, SessionError> {
    let (ids, _) = resolve(store, target, now).await?;
    // Read in a few queries whatever the target's size, like a real request.
    let items = read_targets(store, &ids, None)
        .await?
        .into_iter()
        .map(|t| {
            let outcome = match &t.device {
                None => PlanOutcome::NotFound,
                Some(d) => {
                    let (reasons, _) = assess_with(d, &t.actions, &t.waiting, kind, now, settings);
                    if reasons.is_empty() {
                        PlanOutcome::WouldQueue
                    } else {
                        PlanOutcome::Blocked(reasons)
                    }
                }
            };
            PlanItem {
                device_id: t.id,
                outcome,
            }
        })
        .collect();
    Ok(Plan { kind, items })
}

/// Start of the UTC day containing `at`.
fn utc_day_start(at: OffsetDateTime) -> OffsetDateTime {
    at.to_offset(time::UtcOffset::UTC)
        .replace_time(Time::MIDNIGHT)
}

/// Plans `kind` on `devices` of `batch` in order under the daily cap: reads them and decides with
/// [`plan_requests`]. Returns the items handled, the devices left over because the cap was
/// reached, and the writes. The count read here is a guess that stops early in the common case;
/// the authoritative check is the store's, in the transaction writing the plan, so two processes
/// (or a wave and a schedule) releasing at once never exceed the cap together.
#[allow(clippy::too_many_arguments)]
async fn plan_some(
    store: &dyn Store,
    batch: BatchId,
    devices: &[DeviceId],
    kind: ActionKind,
    actor: &str,
    now: OffsetDateTime,
    settings: &ActionSettings,
    daily_cap: Option<u32>,
) -> Result<(Vec<BatchItem>, Vec<DeviceId>, RequestPlan), SessionError> {
    let day = utc_day_start(now);
    let cap = daily_cap.filter(|_| is_erasing(kind)).map(|cap| DailyCap {
        kinds: ERASING.to_vec(),
        from: day,
        to: day + Duration::days(1),
        cap,
    });
    let used = match &cap {
        Some(c) => store.count_actions_created(&c.kinds, c.from, c.to).await?,
        None => 0,
    };
    // A full day leaves every device over: no need to read them.
    let full = cap.as_ref().is_some_and(|c| used >= u64::from(c.cap));
    let targets = if full {
        devices
            .iter()
            .map(|&id| RequestTarget {
                id,
                device: None,
                actions: Vec::new(),
                waiting: Vec::new(),
            })
            .collect()
    } else {
        read_targets(store, devices, Some(batch)).await?
    };
    let planned = plan_requests(
        &targets,
        kind,
        actor,
        now,
        settings,
        Some(batch),
        cap.as_ref().map(|c| (c, used)),
    );
    let items = planned
        .decisions
        .into_iter()
        .map(|(device_id, decision)| BatchItem {
            device_id,
            outcome: match decision {
                Decision::NotFound => ItemOutcome::NotFound,
                Decision::Created(a) if a.state == ActionState::Blocked => {
                    ItemOutcome::Blocked(a.id, a.reason.unwrap_or_default())
                }
                Decision::Created(a) => ItemOutcome::Queued(a.id),
            },
        })
        .collect();
    Ok((items, planned.over_cap, planned.plan))
}

/// The audit action of a bulk request: one event per request, naming every device it was for.
/// A device's history lists it when it names the device or when the device has an action of
/// its batch (a group reset queued by the database names its members in the event's text
/// only: 100,000 index rows were a tenth of the request, issue #16).
pub const BATCH_CREATE: &str = "batch.create";

/// Above this many devices a group reset in one wave queues its ready devices set-based
/// ([`BulkQueue`]); the API lists the devices of a batch up to the same size.
pub const BULK_FROM: usize = 1_000;

/// The most distinct readiness inputs a [`BulkQueue`] is planned with (its SQL names each):
/// more, and the group is planned device by device.
const BULK_MOST_INPUTS: usize = 256;

/// Plans a reset of every member of static group `group` (`ids`, in one wave, no cap) with the
/// actions left to the database: the group's devices are counted by readiness inputs
/// ([`crate::store::DeviceStore::group_readiness_census`]), each kind of inputs judged once
/// with preflight's rules; devices whose reasons name something of their own (when they were
/// last seen, when their certificate expired) are planned here, device by device. `None` when
/// the group is better planned device by device: a member waits in another batch's wave, no
/// device can be judged by its inputs alone, or there are too many distinct inputs. Returns the planned devices' items, the plan, and how
/// many the database will queue and block.
#[allow(clippy::too_many_arguments)]
async fn plan_bulk(
    store: &dyn Store,
    group: GroupId,
    batch: BatchId,
    ids: &[DeviceId],
    kind: ActionKind,
    actor: &str,
    now: OffsetDateTime,
    settings: &ActionSettings,
) -> Result<Option<(Vec<BatchItem>, RequestPlan, usize, usize)>, SessionError> {
    let members: HashSet<DeviceId> = ids.iter().copied().collect();
    let waiting_elsewhere = store
        .waiting_wave_devices(None)
        .await?
        .iter()
        .any(|w| w.batch != batch && members.contains(&w.device));
    if waiting_elsewhere {
        return Ok(None);
    }
    let seen_within = settings.preflight.seen_within;
    let census = store
        .group_readiness_census(group, now, seen_within)
        .await?;
    // The members as read with the group: the write counts them again and is refused (and
    // planned again) if the group changed since.
    let member_count = ids.len() as u64;
    // One verdict per outcome: queued, or blocked with one reason text.
    let mut verdicts: Vec<BulkVerdict> = Vec::new();
    let mut queued = 0;
    for (inputs, count) in census {
        let inputs = ReadinessInputs {
            seen_recently: false,
            ..inputs
        };
        // The same filter as `assess_with`: an override lifts the WinRE reasons only.
        let reasons: Vec<BlockReason> = inputs
            .readiness(now, &settings.preflight)
            .reasons
            .into_iter()
            .filter(|r| settings.winre_override.is_none() || !r.is_winre())
            .collect();
        if reasons.iter().any(BlockReason::is_per_device) {
            // Planned device by device below, with its own instants.
            continue;
        }
        // A template: the database gives each copy its own id and device.
        let action = crate::action::request::decided_action(
            DeviceId::from_uuid(uuid::Uuid::nil()),
            kind,
            actor,
            now,
            settings,
            Some(batch),
            &reasons,
        );
        if reasons.is_empty() {
            queued += count;
        }
        match verdicts
            .iter_mut()
            .find(|v| v.action.state == action.state && v.action.reason == action.reason)
        {
            Some(v) => {
                v.inputs.push(inputs);
                v.expected += count;
            }
            None => verdicts.push(BulkVerdict {
                inputs: vec![inputs],
                expected: count,
                // Blocked devices are audited one by one; queued ones by the request's event.
                audit: (action.state == ActionState::Blocked)
                    .then(|| crate::action::request::creation_audit(&action, now)),
                action,
            }),
        }
    }
    // Nothing to leave to the database (every device's reasons are its own), or too much to
    // name in SQL: device by device.
    let inputs = verdicts.iter().map(|v| v.inputs.len()).sum::<usize>();
    if inputs == 0 || inputs > BULK_MOST_INPUTS {
        return Ok(None);
    }
    // Every member enrolled and judged by its inputs: none is left to plan here.
    let judged: u64 = verdicts.iter().map(|v| v.expected).sum();
    let others = if judged == member_count {
        Vec::new()
    } else {
        let all: Vec<ReadinessInputs> = verdicts.iter().flat_map(|v| v.inputs.clone()).collect();
        store
            .group_devices_not_in(group, now, seen_within, &all)
            .await?
    };
    let (items, over_cap, mut plan) =
        plan_some(store, batch, &others, kind, actor, now, settings, None).await?;
    debug_assert!(over_cap.is_empty(), "no cap");
    let blocked: u64 = judged - queued;
    plan.bulk = Some(BulkQueue {
        batch,
        group,
        seen_within,
        members: member_count,
        verdicts,
        summary: None,
        // Drawn per plan: a plan made again after a collision draws new ones.
        id_bits: (uuid::Uuid::new_v4().as_u128() & 0xfff) as u16,
    });
    let count = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
    Ok(Some((items, plan, count(queued), count(blocked))))
}

/// Adds `devices` to `plan` as wave `index` due at `due_at` (released under `daily_cap`) and
/// reports them deferred.
#[allow(clippy::too_many_arguments)]
fn defer(
    plan: &mut RequestPlan,
    batch: BatchId,
    index: u32,
    kind: ActionKind,
    actor: &str,
    devices: Vec<DeviceId>,
    due_at: OffsetDateTime,
    daily_cap: Option<u32>,
) -> Vec<BatchItem> {
    let items = devices
        .iter()
        .map(|&device_id| BatchItem {
            device_id,
            outcome: ItemOutcome::Deferred {
                wave: index,
                due_at,
            },
        })
        .collect();
    plan.waves.push(Wave {
        batch,
        index,
        kind,
        actor: actor.to_owned(),
        devices,
        due_at,
        released_at: None,
        daily_cap,
    });
    items
}

/// Requests `kind` on every device of `target` as one batch: the first wave at once, later
/// waves stored `interval` apart for [`release_due_waves`]; devices over the daily cap move to
/// the next UTC day. Erasing a group needs `confirmation` equal to the group's name
/// (`NotAllowed` naming what to type otherwise). Audited as `batch.create` with the counts.
#[allow(clippy::too_many_arguments)]
pub async fn execute(
    store: &dyn Store,
    target: &Target,
    kind: ActionKind,
    actor: &str,
    now: OffsetDateTime,
    settings: &ActionSettings,
    confirmation: Option<&str>,
    waves: &WaveSettings,
) -> Result<BatchResult, SessionError> {
    execute_in_window(
        store,
        target,
        kind,
        actor,
        now,
        settings,
        confirmation,
        waves,
        None,
    )
    .await
}

/// [`execute`] whose actions (later waves included) may only start inside `window`: the window
/// is stored with the batch, and the session engine holds a pending action of the batch while
/// its device checks in outside it.
///
/// The first wave's actions, the later waves, the window and the `batch.create` audit event are
/// written in one transaction: a crash leaves either the whole batch or nothing.
#[allow(clippy::too_many_arguments)]
pub async fn execute_in_window(
    store: &dyn Store,
    target: &Target,
    kind: ActionKind,
    actor: &str,
    now: OffsetDateTime,
    settings: &ActionSettings,
    confirmation: Option<&str>,
    waves: &WaveSettings,
    window: Option<&BatchWindow>,
) -> Result<BatchResult, SessionError> {
    execute_claiming(
        store,
        target,
        kind,
        actor,
        now,
        settings,
        confirmation,
        waves,
        window,
        None,
    )
    .await?
    // Unreachable: only a claim can be lost.
    .ok_or_else(|| kept_changing("the bulk request", None))
}

/// [`execute_in_window`] that also claims `claim` (a schedule firing) in the batch's
/// transaction: `None` (nothing written) when another writer claimed it first.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn execute_claiming(
    store: &dyn Store,
    target: &Target,
    kind: ActionKind,
    actor: &str,
    now: OffsetDateTime,
    settings: &ActionSettings,
    confirmation: Option<&str>,
    waves: &WaveSettings,
    window: Option<&BatchWindow>,
    claim: Option<ScheduleClaim>,
) -> Result<Option<BatchResult>, SessionError> {
    let (ids, group_name) = resolve(store, target, now).await?;
    if let Some(name) = &group_name {
        if is_erasing(kind) && confirmation != Some(name.as_str()) {
            return Err(SessionError::NotAllowed(format!(
                "{} of every device in group {name:?} needs confirmation: type the group name {name:?}",
                kind.name()
            )));
        }
    }
    let batch_id = BatchId::generate();
    let size = waves.wave_size.max(1) as usize;
    let first = ids.chunks(size).next().unwrap_or_default();
    let target_text = match (target, target.group(), &group_name) {
        (_, Some(id), Some(name)) => format!("group {name:?} ({id})"),
        (Target::Filter(f), _, _) => format!("filter {}", f.to_text()),
        _ => format!("{} devices", ids.len()),
    };
    // A large group reset in one wave, uncapped: its ready devices are queued by the database.
    let bulk_group = target.group().filter(|_| {
        kind == ActionKind::AutopilotReset
            && waves.daily_cap.is_none()
            && first.len() == ids.len()
            && ids.len() > settings.bulk_from
    });
    for _ in 0..PLAN_ATTEMPTS {
        let bulk = match bulk_group {
            Some(group) => {
                plan_bulk(store, group, batch_id, &ids, kind, actor, now, settings).await?
            }
            None => None,
        };
        let (mut items, over_cap, mut plan, queued_in_bulk, blocked_in_bulk) = match bulk {
            Some((items, plan, queued, blocked)) => (items, Vec::new(), plan, queued, blocked),
            None => {
                let (items, over_cap, plan) = plan_some(
                    store,
                    batch_id,
                    first,
                    kind,
                    actor,
                    now,
                    settings,
                    waves.daily_cap,
                )
                .await?;
                (items, over_cap, plan, 0, 0)
            }
        };
        plan.claim_schedule = claim;
        plan.window = window.map(|w| (batch_id, *w));
        plan.batch = Some(crate::store::BatchRecord {
            id: batch_id,
            kind,
            requested_by: actor.to_owned(),
            created_at: now,
            target: target_text.clone(),
            devices: u32::try_from(ids.len()).unwrap_or(u32::MAX),
            state: BatchState::Running,
            steered: None,
        });
        let mut index = 1;
        if !over_cap.is_empty() {
            let due = utc_day_start(now) + Duration::days(1);
            items.extend(defer(
                &mut plan,
                batch_id,
                index,
                kind,
                actor,
                over_cap,
                due,
                waves.daily_cap,
            ));
            index += 1;
        }
        for (n, chunk) in ids.chunks(size).skip(1).enumerate() {
            let due = now + waves.interval * (n as u32 + 1);
            items.extend(defer(
                &mut plan,
                batch_id,
                index,
                kind,
                actor,
                chunk.to_vec(),
                due,
                waves.daily_cap,
            ));
            index += 1;
        }
        let result = BatchResult {
            batch_id,
            items,
            queued_in_bulk,
            blocked_in_bulk,
        };
        let summary = NewAuditEvent::new(now, actor.to_owned(), BATCH_CREATE)
            .batch(batch_id)
            .details(format!(
                "{} on {target_text}: {}",
                kind.code(),
                result.counts_text()
            ));
        match plan.bulk.as_mut() {
            // Every member named by the database.
            Some(bulk) => bulk.summary = Some(summary),
            None => plan.audit.push(summary.targets(ids.clone())),
        }
        match store.write_request_plan(&plan).await {
            Ok(WriteOutcome::Written) => {
                let mut result = result;
                list_blocked_in_bulk(store, &mut result).await?;
                return Ok(Some(result));
            }
            Ok(WriteOutcome::ClaimLost) => return Ok(None),
            // The world moved between our reads and the transaction: read again.
            Ok(WriteOutcome::CapReached { .. }) | Err(StoreError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Err(kept_changing("the bulk request", None))
}

/// Lists devices the database blocked ([`BulkQueue`]) among `result`'s items, up to
/// [`BULK_FROM`] of them: the exceptions an admin looks at first (which PCs, and why).
async fn list_blocked_in_bulk(
    store: &dyn Store,
    result: &mut BatchResult,
) -> Result<(), SessionError> {
    if result.blocked_in_bulk == 0 {
        return Ok(());
    }
    let listed: HashSet<DeviceId> = result.items.iter().map(|i| i.device_id).collect();
    let page = store
        .list_actions(&crate::store::ActionQuery {
            batch: Some(result.batch_id),
            state: Some(ActionState::Blocked),
            limit: u32::try_from(BULK_FROM).unwrap_or(u32::MAX),
            ..crate::store::ActionQuery::default()
        })
        .await?;
    for a in page.items {
        if result.blocked_in_bulk == 0 || listed.contains(&a.device) {
            continue;
        }
        result.blocked_in_bulk -= 1;
        result.items.push(BatchItem {
            device_id: a.device,
            outcome: ItemOutcome::Blocked(a.id, a.reason.unwrap_or_default()),
        });
    }
    Ok(())
}

/// Releases every stored wave due at `now`: requests its actions (preflight runs again), moving
/// devices over the daily cap to a new wave at the next UTC midnight. A wave is released under
/// the cap its bulk request stored with it ([`Wave::daily_cap`]); `default_daily_cap` (the
/// server-wide setting) applies to waves stored without one. Audited as `batch.wave` per wave.
///
/// Exactly once: the claim (`released_at`), the wave's actions, the deferred over-cap wave and
/// the audit event are written in one transaction, so a crash leaves the wave either fully
/// released or untouched (the next tick releases it), and of several processes releasing the
/// same wave exactly one does it (the others skip it). Returns one result per wave this call
/// released.
pub async fn release_due_waves(
    store: &dyn Store,
    now: OffsetDateTime,
    settings: &ActionSettings,
    default_daily_cap: Option<u32>,
) -> Result<Vec<BatchResult>, SessionError> {
    let mut results = Vec::new();
    for wave in store.due_waves(now, 1_000).await? {
        if let Some(result) = release_wave(store, &wave, now, settings, default_daily_cap).await? {
            results.push(result);
        }
    }
    Ok(results)
}

/// Releases one wave (see [`release_due_waves`]); `None` if another writer released it first.
async fn release_wave(
    store: &dyn Store,
    wave: &Wave,
    now: OffsetDateTime,
    settings: &ActionSettings,
    default_daily_cap: Option<u32>,
) -> Result<Option<BatchResult>, SessionError> {
    let daily_cap = wave.daily_cap.or(default_daily_cap);
    for _ in 0..PLAN_ATTEMPTS {
        let (mut items, over_cap, mut plan) = plan_some(
            store,
            wave.batch,
            &wave.devices,
            wave.kind,
            &wave.actor,
            now,
            settings,
            daily_cap,
        )
        .await?;
        plan.release_wave = Some(WaveRelease {
            batch: wave.batch,
            index: wave.index,
        });
        if !over_cap.is_empty() {
            // Two releases of one batch picking the same index collide on the wave's key and
            // re-plan: the later one then sees the earlier one's wave.
            let next_index = store
                .waves_of_batch(wave.batch)
                .await?
                .iter()
                .map(|w| w.index + 1)
                .max()
                .unwrap_or(wave.index + 1);
            let due = utc_day_start(now) + Duration::days(1);
            items.extend(defer(
                &mut plan,
                wave.batch,
                next_index,
                wave.kind,
                &wave.actor,
                over_cap,
                due,
                wave.daily_cap,
            ));
        }
        let result = BatchResult {
            batch_id: wave.batch,
            items,
            queued_in_bulk: 0,
            blocked_in_bulk: 0,
        };
        plan.audit.push(
            NewAuditEvent::new(now, wave.actor.clone(), "batch.wave")
                .targets(wave.devices.clone())
                .batch(wave.batch)
                .details(format!(
                    "{} wave {}: {}",
                    wave.kind.code(),
                    wave.index,
                    result.counts_text()
                )),
        );
        match store.write_request_plan(&plan).await {
            Ok(WriteOutcome::Written) => return Ok(Some(result)),
            Ok(WriteOutcome::ClaimLost) => return Ok(None),
            Ok(WriteOutcome::CapReached { .. }) | Err(StoreError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Err(kept_changing(
        &format!("wave {} of batch {}", wave.index, wave.batch),
        None,
    ))
}

/// Whether a batch has settled, given its stored (later) waves, its actions and which of the
/// devices named by its released waves are unknown: every wave is released, every action is
/// settled ([`ActionState::is_settled`]: terminal or blocked), and every device of every
/// released wave has an action in the batch (one deferred over the cap gets it from a later
/// wave) or is unknown (it was reported not found at release). A device of a released wave
/// with no action is one whose action was lost: the batch never settles then, rather than
/// claiming a reset that did not happen. The first wave is not stored: its actions are written
/// with the batch, in one transaction, so none of its devices can be missing.
///
/// A canceled batch's waiting waves are never released: they count as settled, and their
/// devices need no action.
pub fn batch_settled(
    waves: &[Wave],
    actions: &[Action],
    unknown: &HashSet<DeviceId>,
    canceled: bool,
) -> bool {
    let with_action: HashSet<DeviceId> = actions.iter().map(|a| a.device).collect();
    let released = || waves.iter().filter(|w| w.released_at.is_some());
    (canceled || waves.iter().all(|w| w.released_at.is_some()))
        && actions.iter().all(|a| a.state.is_settled())
        && released()
            .flat_map(|w| &w.devices)
            .all(|d| with_action.contains(d) || unknown.contains(d))
}

/// Where a batch is: its record, its actions (oldest first), its stored waves (by index) and
/// whether it has settled ([`batch_settled`]). No record and empty lists for an unknown batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchProgress {
    /// The batch as started and steered; `None` for an unknown batch.
    pub record: Option<BatchRecord>,
    /// The batch's actions, oldest first.
    pub actions: Vec<Action>,
    /// Its later waves, by index.
    pub waves: Vec<Wave>,
    /// Whether it has settled.
    pub settled: bool,
}

/// Reads a batch and decides whether it has settled ([`batch_settled`]); a device of a released
/// wave without an action is looked up to tell "not found at release" (devices are never
/// deleted, so unknown now means unknown then) from a lost action.
pub async fn batch_progress(
    store: &dyn Store,
    batch: BatchId,
) -> Result<BatchProgress, SessionError> {
    let record = store.batch_record(batch).await?;
    let actions = store.actions_of_batch(batch).await?;
    let waves = store.waves_of_batch(batch).await?;
    let with_action: HashSet<DeviceId> = actions.iter().map(|a| a.device).collect();
    let mut unknown = HashSet::new();
    for &d in waves
        .iter()
        .filter(|w| w.released_at.is_some())
        .flat_map(|w| &w.devices)
    {
        if !with_action.contains(&d) && store.device(d).await?.is_none() {
            unknown.insert(d);
        }
    }
    let canceled = record
        .as_ref()
        .is_some_and(|r| r.state == BatchState::Canceled);
    let settled = batch_settled(&waves, &actions, &unknown, canceled);
    Ok(BatchProgress {
        record,
        actions,
        waves,
        settled,
    })
}

/// An admin's steering of a batch (issue #15 item 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Steer {
    /// Hold the waves still waiting (actions already released still go out).
    Pause,
    /// Release the held waves again, each later by as long as the pause lasted.
    Resume,
    /// Never release the waiting waves, and cancel the actions not sent yet.
    Cancel,
}

impl Steer {
    /// Parses [`Self::verb`]; `None` for any other word.
    pub fn parse(verb: &str) -> Option<Self> {
        [Self::Pause, Self::Resume, Self::Cancel]
            .into_iter()
            .find(|s| s.verb() == verb)
    }

    /// The verb, as commands and audit events name it.
    pub fn verb(self) -> &'static str {
        match self {
            Self::Pause => "pause",
            Self::Resume => "resume",
            Self::Cancel => "cancel",
        }
    }
}

/// What a [`steer`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Steered {
    /// The batch as it is now.
    pub record: BatchRecord,
    /// Waves still waiting (held by a pause, moved by a resume, dropped by a cancel).
    pub waves: usize,
    /// Actions a cancel canceled before they were sent.
    pub canceled_actions: usize,
}

/// Pauses, resumes or cancels the batch `id` for `actor`, audited as `batch.pause`,
/// `batch.resume` or `batch.cancel`.
///
/// - Pause: a running batch with waves still waiting stops releasing them. Actions already
///   released (the first wave, released waves) still go out; cancel stops those not sent yet.
/// - Resume: a paused batch runs again; each waiting wave becomes due later by as long as the
///   pause lasted, so the spacing between waves is kept (a wave due during the pause is due at
///   once plus the part of its wait the pause interrupted).
/// - Cancel: a running or paused batch never releases its waiting waves, and every action of it
///   not sent yet (requested, pending) is canceled; sent ones cannot be taken back (the PC may
///   act on them whatever we record).
///
/// The state claim, the actions canceled, the new due times and the audit event are written in
/// one transaction ([`RequestPlan::batch_change`]); a check-in sending one of the actions at
/// the same moment makes it read again. `NotAllowed` when the batch's state does not allow it,
/// naming what does.
pub async fn steer(
    store: &dyn Store,
    id: BatchId,
    how: Steer,
    actor: &str,
    now: OffsetDateTime,
) -> Result<Option<Steered>, SessionError> {
    for _ in 0..PLAN_ATTEMPTS {
        let Some(record) = store.batch_record(id).await? else {
            return Ok(None);
        };
        let waves = store.waves_of_batch(id).await?;
        let waiting: Vec<&Wave> = waves.iter().filter(|w| w.released_at.is_none()).collect();
        let mut plan = RequestPlan::new(now);
        let (state, shift, end) = match (how, record.state) {
            (Steer::Pause, BatchState::Running) if waiting.is_empty() => {
                return Err(SessionError::NotAllowed(format!(
                    "batch {id} has no wave left to hold: every wave was released \
                     (cancel it to cancel the actions not sent yet)"
                )));
            }
            (Steer::Pause, BatchState::Running) => (BatchState::Paused, Duration::ZERO, Vec::new()),
            (Steer::Resume, BatchState::Paused) => {
                let since = record.steered.as_ref().map_or(now, |(at, _)| *at);
                (
                    BatchState::Running,
                    (now - since).max(Duration::ZERO),
                    Vec::new(),
                )
            }
            (Steer::Cancel, BatchState::Running | BatchState::Paused) => {
                let note = format!("canceled with batch {id} by {actor}");
                let mut end = Vec::new();
                for a in store.actions_of_batch(id).await? {
                    if matches!(a.state, ActionState::Requested | ActionState::Pending) {
                        let mut ended = a.clone();
                        ended.transition(ActionState::Canceled, now, Some(&note))?;
                        end.push(ActionUpdate {
                            expected: a.state,
                            action: ended,
                        });
                    }
                }
                (BatchState::Canceled, Duration::ZERO, end)
            }
            (_, current) => {
                let allowed = match current {
                    BatchState::Running => "pause or cancel",
                    BatchState::Paused => "resume or cancel",
                    BatchState::Canceled => "nothing: it is canceled",
                };
                return Err(SessionError::NotAllowed(format!(
                    "batch {id} is {}; it cannot {} (allowed: {allowed})",
                    current.as_str(),
                    how.verb()
                )));
            }
        };
        let canceled_actions = end.len();
        let details = match how {
            Steer::Pause => format!("{} waves held", waiting.len()),
            Steer::Resume => format!("{} waves released again", waiting.len()),
            Steer::Cancel => format!(
                "{} waves dropped, {canceled_actions} actions canceled before they were sent",
                waiting.len()
            ),
        };
        plan.audit.push(
            NewAuditEvent::new(now, actor.to_owned(), format!("batch.{}", how.verb()))
                .targets(end.iter().map(|u: &ActionUpdate| u.action.device))
                .batch(id)
                .details(format!(
                    "{} on {}: {details}",
                    record.kind.code(),
                    record.target
                )),
        );
        plan.end = end;
        plan.end_skips_moved = true;
        plan.batch_change = Some(BatchChange {
            batch: id,
            expected: record.state,
            state,
            by: actor.to_owned(),
            waiting: waiting
                .iter()
                .map(|w| (w.index, w.due_at + shift))
                .collect(),
        });
        match store.write_request_plan(&plan).await {
            Ok(_) => {
                let record = BatchRecord {
                    state,
                    steered: Some((now, actor.to_owned())),
                    ..record
                };
                let waves = waiting.len();
                return Ok(Some(Steered {
                    record,
                    waves,
                    canceled_actions,
                }));
            }
            // A check-in sent an action, a wave was released or another admin steered it:
            // read again.
            Err(StoreError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Err(kept_changing(&format!("batch {id}"), None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-05-04 9:00 UTC);

    fn wave(index: u32, devices: &[DeviceId], released: bool) -> Wave {
        Wave {
            batch: BatchId::generate(),
            index,
            kind: ActionKind::AutopilotReset,
            actor: "ada".into(),
            devices: devices.to_vec(),
            due_at: NOW,
            released_at: released.then_some(NOW),
            daily_cap: None,
        }
    }

    fn action(device: DeviceId, states: &[ActionState]) -> Action {
        let mut a = Action::new(
            ActionId::generate(),
            device,
            ActionKind::AutopilotReset,
            "ada",
            None,
            NOW,
        );
        for s in states {
            a.transition(*s, NOW, None).unwrap();
        }
        a
    }

    #[test]
    fn a_batch_settles_when_every_device_of_every_wave_has_a_settled_action() {
        use ActionState::*;
        let [a, b, c, ghost] = [(); 4].map(|()| DeviceId::generate());
        let none = HashSet::new();
        let done = action(a, &[Pending, Sent, Acknowledged, Done]);
        let blocked = action(b, &[Blocked]);
        let failed = action(c, &[Pending, Sent, Failed]);
        // Only a first wave (not stored): its actions decide.
        assert!(batch_settled(
            &[],
            &[done.clone(), blocked.clone()],
            &none,
            false
        ));
        assert!(!batch_settled(&[], &[action(a, &[Pending])], &none, false));
        // A waiting wave holds the batch open.
        let waiting = wave(1, &[c], false);
        assert!(!batch_settled(
            std::slice::from_ref(&waiting),
            std::slice::from_ref(&done),
            &none,
            false
        ));
        // Released, and its device's action is settled.
        let released = wave(1, &[c], true);
        assert!(batch_settled(
            std::slice::from_ref(&released),
            &[done.clone(), failed.clone()],
            &none,
            false
        ));
        // Released, but a device has no action: lost, never settled (issue #11) ...
        let with_ghost = wave(1, &[c, ghost], true);
        assert!(!batch_settled(
            std::slice::from_ref(&with_ghost),
            &[done.clone(), failed.clone()],
            &none,
            false
        ));
        // ... unless that device was not found at release.
        let unknown = HashSet::from([ghost]);
        assert!(batch_settled(
            std::slice::from_ref(&with_ghost),
            &[done.clone(), failed.clone()],
            &unknown,
            false
        ));
        // A device deferred over the cap gets its action from a later wave.
        let deferred = [wave(1, &[c], true), wave(2, &[c], true)];
        assert!(batch_settled(
            &deferred,
            std::slice::from_ref(&failed),
            &none,
            false
        ));
        let deferred_waiting = [wave(1, &[c], true), wave(2, &[c], false)];
        assert!(!batch_settled(&deferred_waiting, &[], &none, false));
        // A canceled batch's waiting waves never release: settled once its actions are.
        assert!(batch_settled(
            &[wave(1, &[a], true), wave(2, &[c], false)],
            std::slice::from_ref(&done),
            &none,
            true
        ));
        assert!(!batch_settled(
            &[wave(1, &[a], true), wave(2, &[c], false)],
            &[action(a, &[Pending])],
            &none,
            true
        ));
        // Any unsettled action keeps it open.
        assert!(!batch_settled(
            std::slice::from_ref(&released),
            &[action(c, &[Pending, Sent])],
            &none,
            false
        ));
    }
}
