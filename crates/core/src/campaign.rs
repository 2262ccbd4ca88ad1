//! Bulk requests: a dry-run [`plan`] over a target (devices, a group, a filter) with no size cap,
//! and [`execute`], which requests the first wave at once and stores later waves for
//! [`release_due_waves`] (a tick the server drives; no sleeping or spawning here). A daily cap
//! limits how many erasing actions (resets, wipes) are requested per UTC day across all batches.

use std::collections::HashSet;

use time::{Duration, OffsetDateTime, Time};

use crate::action::{assess, is_erasing, request_under_cap, ActionSettings};
use crate::action::{ActionKind, ActionState};
use crate::audit::{AuditOutcome, NewAuditEvent};
use crate::group::DeviceFilter;
use crate::ids::{ActionId, BatchId, DeviceId, GroupId};
use crate::preflight::BlockReason;
use crate::schedule::BatchWindow;
use crate::session::SessionError;
use crate::store::{DailyCap, DeviceQuery, Store, StoreError, Wave};

/// Every erasing kind, as the daily cap counts them.
const ERASING: &[ActionKind] = &[
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
    /// One item per device handled.
    pub items: Vec<BatchItem>,
}

impl BatchResult {
    fn count(&self, f: impl Fn(&ItemOutcome) -> bool) -> usize {
        self.items.iter().filter(|i| f(&i.outcome)).count()
    }
    /// How many were queued.
    pub fn queued(&self) -> usize {
        self.count(|o| matches!(o, ItemOutcome::Queued(_)))
    }
    /// How many were blocked.
    pub fn blocked(&self) -> usize {
        self.count(|o| matches!(o, ItemOutcome::Blocked(..)))
    }
    /// How many were unknown.
    pub fn not_found(&self) -> usize {
        self.count(|o| matches!(o, ItemOutcome::NotFound))
    }
    /// How many were deferred.
    pub fn deferred(&self) -> usize {
        self.count(|o| matches!(o, ItemOutcome::Deferred { .. }))
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
            Ok((store.group_member_ids(*id, now).await?, Some(group.name)))
        }
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

/// Dry run: what requesting `kind` on every device of `target` would do now. No size cap.
pub async fn plan(
    store: &dyn Store,
    target: &Target,
    kind: ActionKind,
    now: OffsetDateTime,
    settings: &ActionSettings,
) -> Result<Plan, SessionError> {
    let (ids, _) = resolve(store, target, now).await?;
    let mut items = Vec::with_capacity(ids.len());
    for device_id in ids {
        let outcome = match assess(store, device_id, kind, now, settings).await? {
            None => PlanOutcome::NotFound,
            Some(r) if r.is_empty() => PlanOutcome::WouldQueue,
            Some(r) => PlanOutcome::Blocked(r),
        };
        items.push(PlanItem { device_id, outcome });
    }
    Ok(Plan { kind, items })
}

/// Start of the UTC day containing `at`.
fn utc_day_start(at: OffsetDateTime) -> OffsetDateTime {
    at.to_offset(time::UtcOffset::UTC)
        .replace_time(Time::MIDNIGHT)
}

/// Requests `kind` on `devices` in order under the daily cap; returns the items handled and the
/// devices left over because the cap was reached. The count read first stops early in the common
/// case; the authoritative check is the store's, in the transaction creating each action, so two
/// processes (or a wave and a schedule) releasing at once never exceed the cap together.
#[allow(clippy::too_many_arguments)]
async fn request_some(
    store: &dyn Store,
    batch: BatchId,
    devices: &[DeviceId],
    kind: ActionKind,
    actor: &str,
    now: OffsetDateTime,
    settings: &ActionSettings,
    daily_cap: Option<u32>,
) -> Result<(Vec<BatchItem>, Vec<DeviceId>), SessionError> {
    let capped = daily_cap.filter(|_| is_erasing(kind));
    let day = utc_day_start(now);
    let cap = capped.map(|cap| DailyCap {
        kinds: ERASING.to_vec(),
        from: day,
        to: day + Duration::days(1),
        cap,
    });
    let mut used = match capped {
        Some(_) => {
            store
                .count_actions_created(ERASING, day, day + Duration::days(1))
                .await?
        }
        None => 0,
    };
    let mut items = Vec::new();
    for (i, &device_id) in devices.iter().enumerate() {
        if capped.is_some_and(|cap| used >= u64::from(cap)) {
            return Ok((items, devices[i..].to_vec()));
        }
        let requested = request_under_cap(
            store,
            device_id,
            kind,
            actor,
            now,
            settings,
            Some(batch),
            cap.as_ref(),
        )
        .await;
        let outcome = match requested {
            Err(SessionError::DeviceNotFound(_)) => ItemOutcome::NotFound,
            Err(e) => return Err(e),
            // Another process filled the day between our count and this insert.
            Ok(None) => return Ok((items, devices[i..].to_vec())),
            Ok(Some(a)) if a.state == ActionState::Blocked => {
                ItemOutcome::Blocked(a.id, a.reason.unwrap_or_default())
            }
            Ok(Some(a)) => {
                used += 1;
                ItemOutcome::Queued(a.id)
            }
        };
        items.push(BatchItem { device_id, outcome });
    }
    Ok((items, Vec::new()))
}

/// Stores `devices` as wave `index` due at `due_at` (released under `daily_cap`) and reports
/// them deferred.
#[allow(clippy::too_many_arguments)]
async fn defer(
    store: &dyn Store,
    batch: BatchId,
    index: u32,
    kind: ActionKind,
    actor: &str,
    devices: Vec<DeviceId>,
    due_at: OffsetDateTime,
    daily_cap: Option<u32>,
) -> Result<Vec<BatchItem>, SessionError> {
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
    store
        .save_wave(&Wave {
            batch,
            index,
            kind,
            actor: actor.to_owned(),
            devices,
            due_at,
            released_at: None,
            daily_cap,
        })
        .await?;
    Ok(items)
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
/// is stored for the batch before any action is created, and the session engine holds a pending
/// action of the batch while its device checks in outside it.
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
    if let Some(w) = window {
        store.save_batch_window(batch_id, w).await?;
    }
    let size = waves.wave_size.max(1) as usize;
    let mut chunks = ids.chunks(size);
    let first = chunks.next().unwrap_or_default();
    let (mut items, over_cap) = request_some(
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
    let mut index = 1;
    if !over_cap.is_empty() {
        let due = utc_day_start(now) + Duration::days(1);
        items.extend(
            defer(
                store,
                batch_id,
                index,
                kind,
                actor,
                over_cap,
                due,
                waves.daily_cap,
            )
            .await?,
        );
        index += 1;
    }
    for (n, chunk) in chunks.enumerate() {
        let due = now + waves.interval * (n as u32 + 1);
        items.extend(
            defer(
                store,
                batch_id,
                index,
                kind,
                actor,
                chunk.to_vec(),
                due,
                waves.daily_cap,
            )
            .await?,
        );
        index += 1;
    }
    let result = BatchResult { batch_id, items };
    let target_text = match (target, &group_name) {
        (Target::Group(id), Some(name)) => format!("group {name:?} ({id})"),
        (Target::Filter(f), _) => format!("filter {}", f.to_text()),
        _ => format!("{} devices", ids.len()),
    };
    store
        .append_audit(NewAuditEvent {
            at: now,
            actor: actor.to_owned(),
            action: "batch.create".to_owned(),
            targets: ids.clone(),
            batch: Some(batch_id),
            outcome: AuditOutcome::Success,
            details: format!(
                "{} on {target_text}: {} queued, {} blocked, {} not found, {} deferred",
                kind.code(),
                result.queued(),
                result.blocked(),
                result.not_found(),
                result.deferred()
            ),
        })
        .await?;
    Ok(result)
}

/// Releases every stored wave due at `now`: requests its actions (preflight runs again), moving
/// devices over the daily cap to a new wave at the next UTC midnight. A wave is released under
/// the cap its bulk request stored with it ([`Wave::daily_cap`]); `default_daily_cap` (the
/// server-wide setting) applies to waves stored without one. A wave another tick already
/// released is skipped. Audited as `batch.wave` per wave. Returns one result per released wave.
pub async fn release_due_waves(
    store: &dyn Store,
    now: OffsetDateTime,
    settings: &ActionSettings,
    default_daily_cap: Option<u32>,
) -> Result<Vec<BatchResult>, SessionError> {
    let mut results = Vec::new();
    for wave in store.due_waves(now, 1_000).await? {
        let daily_cap = wave.daily_cap.or(default_daily_cap);
        match store.mark_wave_released(wave.batch, wave.index, now).await {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) => continue,
            Err(e) => return Err(e.into()),
        }
        let (mut items, over_cap) = request_some(
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
        if !over_cap.is_empty() {
            let next_index = store
                .waves_of_batch(wave.batch)
                .await?
                .iter()
                .map(|w| w.index + 1)
                .max()
                .unwrap_or(wave.index + 1);
            let due = utc_day_start(now) + Duration::days(1);
            items.extend(
                defer(
                    store,
                    wave.batch,
                    next_index,
                    wave.kind,
                    &wave.actor,
                    over_cap,
                    due,
                    wave.daily_cap,
                )
                .await?,
            );
        }
        let result = BatchResult {
            batch_id: wave.batch,
            items,
        };
        store
            .append_audit(NewAuditEvent {
                at: now,
                actor: wave.actor.clone(),
                action: "batch.wave".to_owned(),
                targets: wave.devices.clone(),
                batch: Some(wave.batch),
                outcome: AuditOutcome::Success,
                details: format!(
                    "{} wave {}: {} queued, {} blocked, {} not found, {} deferred",
                    wave.kind.code(),
                    wave.index,
                    result.queued(),
                    result.blocked(),
                    result.not_found(),
                    result.deferred()
                ),
            })
            .await?;
        results.push(result);
    }
    Ok(results)
}
