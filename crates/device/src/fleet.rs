//! Many emulated PCs in one process: each PC enrolls (or resumes from its state file), then
//! lives on its poll schedule and the reset engine; at most `max_in_flight` HTTPS sessions run
//! at once; every PC's state is saved after each session; a summary is returned at the end.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use time::{Duration, OffsetDateTime};
use tokio::sync::{watch, Notify, Semaphore};

use crate::client::{self, EnrollOptions};
use crate::error::{DeviceError, Result};
use crate::idle::PackedState;
use crate::persist;
use crate::profile::{device_seed, DeviceProfile};
use crate::reset::Transition;
use crate::schedule::{self, Clock};
use crate::state::{DeviceState, EventKind, JoinType, Operation, ResetCounts};
use crate::transport::Transport;

/// A build too old for remote Autopilot Reset (Windows 10 1803); used by the old-build mix.
pub const OLD_BUILD: u32 = 17134;
/// Battery charge used by the low-battery mix (below the reset threshold, on battery).
pub const LOW_BATTERY_PCT: u8 = 15;
/// How long a PC whose enrollment failed waits before trying again (device time).
pub const ENROLL_RETRY: Duration = Duration::minutes(15);

/// Shares of the fleet (0.0–1.0) that differ from the base profile.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FleetMix {
    pub hybrid: f64,
    pub winre_disabled: f64,
    pub old_build: f64,
    pub low_battery: f64,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// Server base URL for enrollment discovery.
    pub server: String,
    /// Enrollment token (UsernameToken password).
    pub token: String,
    /// `--issuer`: the token issuer Entra-joined and registered PCs get their tokens from
    /// ([`crate::client::EnrollOptions::issuer`]); `None` enrolls every PC with `token`.
    pub issuer: Option<String>,
    pub devices: usize,
    pub state_dir: PathBuf,
    pub seed: u64,
    pub profile: DeviceProfile,
    pub mix: FleetMix,
    /// The name of the package on the USB drive when the profile plugs one in.
    pub usb_package_name: Option<String>,
    /// Most HTTPS sessions (enrollments and check-ins) at once.
    pub max_in_flight: usize,
    /// Device time at which the run ends; `None`: until `shutdown`.
    pub stop_at: Option<OffsetDateTime>,
    /// Set to `true` to stop the run early (Ctrl+C); PCs finish their current step first.
    pub shutdown: Option<watch::Receiver<bool>>,
    /// `--drop-replies`: when set, every PC of the run (resumed ones too) gets this share of
    /// cut OMA-DM exchanges ([`crate::state::FaultSettings::drop_replies_pct`]); `None` keeps each PC's own.
    pub drop_replies_pct: Option<u8>,
    /// `--stale-status-after-restore`: like `drop_replies_pct`, for
    /// [`crate::state::FaultSettings::stale_status_after_restore_pct`].
    pub stale_status_after_restore_pct: Option<u8>,
    /// Keep the PCs in `state_dir` (default). `false` keeps them in memory only: no file, no
    /// lock (the memory measurement).
    pub state_files: bool,
    /// Mixed into the identities of new PCs ([`crate::persist::fleet_salt`] of the state folder);
    /// 0 keeps the identities the seed alone gives.
    pub identity_salt: u64,
    /// `--wns-listen`: the stand-in WNS the PCs register with; a push to a PC's channel makes
    /// it check in at once. `None`: no WNS (a PFN set by the server gives no channel).
    pub wns: Option<Arc<crate::wns::StandInWns>>,
}

impl FleetConfig {
    pub fn new(
        server: impl Into<String>,
        token: impl Into<String>,
        devices: usize,
        state_dir: impl Into<PathBuf>,
    ) -> Self {
        FleetConfig {
            server: server.into(),
            token: token.into(),
            issuer: None,
            devices,
            state_dir: state_dir.into(),
            seed: 1,
            profile: DeviceProfile::default(),
            mix: FleetMix::default(),
            usb_package_name: None,
            max_in_flight: 64,
            stop_at: None,
            shutdown: None,
            drop_replies_pct: None,
            stale_status_after_restore_pct: None,
            state_files: true,
            identity_salt: 0,
            wns: None,
        }
    }
}

/// The id of the fleet's PC number `index` (`pc-0000`, `pc-0001`, ...).
pub fn device_id(index: usize) -> String {
    format!("pc-{index:04}")
}

/// The profile of PC `index`: the base profile with the mix applied, drawn from the seed so the
/// same fleet seed always gives the same PCs.
pub fn profile_for(base: &DeviceProfile, mix: &FleetMix, seed: u64, index: usize) -> DeviceProfile {
    let mut rng = StdRng::seed_from_u64(device_seed(seed ^ 0x6D69_7800, index as u32));
    let mut p = base.clone();
    if rng.gen_bool(mix.hybrid.clamp(0.0, 1.0)) {
        p.join = JoinType::Hybrid;
    }
    if rng.gen_bool(mix.winre_disabled.clamp(0.0, 1.0)) {
        p.winre_enabled = false;
    }
    if rng.gen_bool(mix.old_build.clamp(0.0, 1.0)) {
        p.os_build = Some(OLD_BUILD);
    }
    if rng.gen_bool(mix.low_battery.clamp(0.0, 1.0)) {
        p.battery_pct = Some(LOW_BATTERY_PCT);
    }
    p
}

/// Salt of the fault seed a resumed PC gets when its state file has none.
const FAULT_SEED_SALT: u64 = 0x6661_756C_7400_0000;

/// Applies the run's fault flags to a PC (see [`FleetConfig::drop_replies_pct`]) and gives a
/// PC without a fault seed (a state file from before faults existed) one drawn from the fleet
/// seed, so two PCs never share their fault decisions. Returns whether anything changed.
pub fn apply_run_faults(config: &FleetConfig, state: &mut DeviceState, index: usize) -> bool {
    let before = state.faults;
    if let Some(pct) = config.drop_replies_pct {
        state.faults.drop_replies_pct = pct.min(100);
    }
    if let Some(pct) = config.stale_status_after_restore_pct {
        state.faults.stale_status_after_restore_pct = pct.min(100);
    }
    if state.faults.seed == 0 {
        state.faults.seed = device_seed(config.seed ^ FAULT_SEED_SALT, index as u32);
    }
    state.faults != before
}

/// Builds PC `index` of the fleet (not enrolled).
pub fn build_device(config: &FleetConfig, index: usize, now: OffsetDateTime) -> DeviceState {
    let mut state = profile_for(&config.profile, &config.mix, config.seed, index).build_seeded(
        &device_id(index),
        device_seed(config.seed, index as u32),
        now,
    );
    if config.identity_salt != 0 {
        crate::profile::reidentify(
            &mut state,
            device_seed(config.seed ^ config.identity_salt, index as u32),
        );
    }
    if let (Some(pkg), Some(name)) = (state.usb_package.as_mut(), &config.usb_package_name) {
        pkg.name = name.clone();
    }
    state
}

/// The end-of-run numbers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FleetSummary {
    pub devices: usize,
    /// PCs enrolled at the end (resumed or new).
    pub enrolled: usize,
    /// Enrollments done in this run.
    pub enrollments: u64,
    pub resumed: usize,
    pub sessions_ok: u64,
    pub sessions_failed: u64,
    pub resets_done: u64,
    pub resets_failed: u64,
    pub wipes_done: u64,
    /// What the PCs themselves counted, summed over the fleet at the end of the run: every
    /// completed reset and wipe since each PC was built, this run or earlier ones
    /// ([`DeviceState::resets`]).
    pub pc_resets: ResetCounts,
    /// Failures by [`DeviceError::kind`].
    pub errors_by_kind: BTreeMap<String, u64>,
}

impl std::fmt::Display for FleetSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "devices: {} ({} enrolled, {} enrolled this run, {} resumed)",
            self.devices, self.enrolled, self.enrollments, self.resumed
        )?;
        writeln!(
            f,
            "sessions: {} ok, {} failed",
            self.sessions_ok, self.sessions_failed
        )?;
        writeln!(
            f,
            "resets: {} done, {} failed; wipes: {} done",
            self.resets_done, self.resets_failed, self.wipes_done
        )?;
        writeln!(
            f,
            "completed on the PCs (all runs): {} remote Autopilot Resets, {} local Autopilot \
             Resets, {} wipes",
            self.pc_resets.remote_autopilot, self.pc_resets.local_autopilot, self.pc_resets.wipes
        )?;
        if self.errors_by_kind.is_empty() {
            write!(f, "errors: none")
        } else {
            let kinds: Vec<String> = self
                .errors_by_kind
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            write!(f, "errors: {}", kinds.join(", "))
        }
    }
}

/// Called after every PC step with the running totals.
pub type ProgressFn = Arc<dyn Fn(&FleetSummary) + Send + Sync>;

struct Shared {
    summary: Mutex<FleetSummary>,
    progress: Option<ProgressFn>,
    /// PCs that have taken their first step (the memory measurement waits for all).
    started: std::sync::atomic::AtomicUsize,
}

/// What every PC task of a run shares, in one allocation for the whole fleet rather than a copy
/// of the configuration and a handful of reference counts per PC.
struct Fleet {
    config: FleetConfig,
    transport: Arc<dyn Transport>,
    clock: Arc<dyn Clock>,
    /// Sessions (enrollments and check-ins) in flight: `max_in_flight`.
    sessions: Semaphore,
    /// PCs unpacked at once ([`crate::idle`]): a PC takes a permit before it unpacks its state
    /// and gives it back once the state is packed again, so a burst of due PCs (the start of a
    /// run, a clock jump, the end of the run) never unpacks the whole fleet at once.
    unpacked: Semaphore,
    shared: Shared,
}

impl Fleet {
    fn new(
        config: FleetConfig,
        transport: Arc<dyn Transport>,
        clock: Arc<dyn Clock>,
        progress: Option<ProgressFn>,
    ) -> Arc<Fleet> {
        let sessions = config.max_in_flight.max(1);
        Arc::new(Fleet {
            shared: Shared {
                summary: Mutex::new(FleetSummary {
                    devices: config.devices,
                    ..FleetSummary::default()
                }),
                progress,
                started: Default::default(),
            },
            config,
            transport,
            clock,
            sessions: Semaphore::new(sessions),
            unpacked: Semaphore::new(unpacked_limit(sessions)),
        })
    }
}

/// The running PC tasks of a fleet, and how to wake each one.
#[derive(Default)]
struct Pcs {
    tasks: tokio::task::JoinSet<DeviceEnd>,
    wakers: HashMap<String, Arc<Notify>>,
}

impl Pcs {
    /// Starts PC `index` from `state`, packed at once; `on_disk`: its file holds this state.
    fn start(&mut self, fleet: &Arc<Fleet>, index: usize, mut state: DeviceState, on_disk: bool) {
        let woken = Arc::new(Notify::new());
        let id = device_id(index);
        if let Some(wns) = &fleet.config.wns {
            state.push.wns_url = Some(wns.base_url());
            if state.push.pfn.is_some() {
                // A resumed PC registers again with this run's WNS.
                state.push.channel_uri = Some(wns.channel_uri(&id));
            }
            wns.register(&id, woken.clone());
        }
        self.wakers.insert(id, woken.clone());
        let pc = Pc {
            index,
            fleet: fleet.clone(),
            woken,
        };
        self.tasks
            .spawn(run_device(PackedState::pack(state), on_disk, pc));
    }
}

/// How many PCs of a run may be unpacked at once: every session in flight, and as many again
/// waiting for a session or taking a step without one (a reset phase).
fn unpacked_limit(sessions: usize) -> usize {
    sessions.saturating_mul(2)
}

impl Shared {
    fn update(&self, f: impl FnOnce(&mut FleetSummary)) {
        let snapshot = {
            let mut s = self.summary.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut s);
            s.clone()
        };
        if let Some(p) = &self.progress {
            p(&snapshot);
        }
    }

    /// Counts an error of one PC; the first of each kind is logged as a warning (what went
    /// wrong, once, for whoever watches the run), the others at debug level.
    fn error(&self, e: &DeviceError) {
        let mut first = false;
        self.update(|s| {
            let count = s.errors_by_kind.entry(e.kind().to_string()).or_default();
            *count += 1;
            first = *count == 1;
        });
        if first {
            tracing::warn!(
                kind = e.kind(),
                "emulated PC: {e} (further errors of this kind at debug level)"
            );
        } else {
            tracing::debug!(kind = e.kind(), "emulated PC: {e}");
        }
    }
}

/// Runs the fleet until `config.stop_at` (device time on `clock`) or `config.shutdown`.
/// PCs found in `config.state_dir` are resumed (an enrolled PC does not enroll again); the
/// others are built from the seed and enrolled. Errors of single PCs are counted in the
/// summary, not returned; `Err` only for a state folder that cannot be read.
///
/// One-shot commands may change a PC's file while the fleet runs (see [`persist`]): each PC
/// takes its lock for every step and reloads the file when such a change was saved; a watcher
/// wakes the PC within [`EXTERNAL_CHANGE_CHECK`] of the change.
pub async fn run(
    config: &FleetConfig,
    transport: Arc<dyn Transport>,
    clock: Arc<dyn Clock>,
    progress: Option<ProgressFn>,
) -> Result<FleetSummary> {
    let fleet = Fleet::new(config.clone(), transport, clock, progress);
    let mut pcs = Pcs::default();
    for index in 0..config.devices {
        let id = device_id(index);
        let (mut state, resumed) = match persist::load_id(&config.state_dir, &id)? {
            Some(s) => (s, true),
            None => (build_device(config, index, fleet.clock.now()), false),
        };
        let faults_changed = apply_run_faults(config, &mut state, index);
        if resumed {
            fleet.shared.update(|s| s.resumed += 1);
        }
        pcs.start(&fleet, index, state, resumed && !faults_changed);
    }
    let Pcs { mut tasks, wakers } = pcs;
    let watcher = tokio::spawn(watch_external_changes(config.state_dir.clone(), wakers));
    let mut enrolled = 0;
    let mut pc_resets = ResetCounts::default();
    while let Some(done) = tasks.join_next().await {
        if let Ok(end) = done {
            enrolled += usize::from(end.enrolled);
            pc_resets.add(&end.resets);
        }
    }
    watcher.abort();
    let mut summary = fleet
        .shared
        .summary
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    summary.enrolled = enrolled;
    summary.pc_resets = pc_resets;
    Ok(summary)
}

/// How often (real time) the fleet looks for changes that one-shot commands saved.
pub const EXTERNAL_CHANGE_CHECK: std::time::Duration = std::time::Duration::from_millis(500);

/// Wakes the PCs whose files a one-shot command changed (a flag in
/// [`persist::changed_dir`], see [`persist::save_external`]), so that, say, a PC reset by
/// `emulate local-reset` checks in at once rather than at its next poll. The PC clears the
/// flag when it reloads; until then a second wake is harmless (a step with nothing due does
/// nothing).
async fn watch_external_changes(dir: PathBuf, wakers: HashMap<String, Arc<Notify>>) {
    let flags = persist::changed_dir(&dir);
    let mut every = tokio::time::interval(EXTERNAL_CHANGE_CHECK);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let Ok(entries) = std::fs::read_dir(&flags) else {
            continue;
        };
        for entry in entries.flatten() {
            if let Some(woken) = wakers.get(entry.file_name().to_string_lossy().as_ref()) {
                woken.notify_one();
            }
        }
    }
}

/// Waits until `at` (or forever), returning `false` when the run must stop first. Returns
/// early (`true`) when `woken` is notified.
async fn wait(
    clock: &dyn Clock,
    at: Option<OffsetDateTime>,
    config: &FleetConfig,
    woken: &Notify,
) -> bool {
    let target = match (at, config.stop_at) {
        (Some(a), Some(s)) => Some(a.min(s)),
        (a, s) => a.or(s),
    };
    let sleep = async {
        match target {
            Some(t) => clock.sleep_until(t).await,
            None => std::future::pending::<()>().await,
        }
    };
    let mut shutdown = config.shutdown.clone();
    let stop = async {
        match shutdown.as_mut() {
            Some(rx) => {
                while !*rx.borrow() {
                    if rx.changed().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = sleep => {}
        () = woken.notified() => {}
        () = stop => return false,
    }
    config.stop_at.is_none_or(|s| clock.now() < s)
}

fn save(config: &FleetConfig, state: &DeviceState, shared: &Shared) {
    if !config.state_files {
        return;
    }
    if let Err(e) = persist::save(&config.state_dir, state) {
        shared.error(&e);
    }
}

/// How long a PC waits (real time) before it tries again for its lock, which a one-shot
/// command holds for one read-modify-write of the file.
const LOCK_RETRY: std::time::Duration = std::time::Duration::from_millis(20);

/// Takes the PC's lock (see [`persist`]); `None` when the run keeps no state files or the lock
/// file cannot be opened (counted; the PC goes on without it).
async fn lock_device(pc: &Pc, id: &str) -> Option<persist::PcLock> {
    let config = &pc.fleet.config;
    if !config.state_files {
        return None;
    }
    loop {
        match persist::try_lock(&config.state_dir, id) {
            Ok(Some(lock)) => return Some(lock),
            Ok(None) => tokio::time::sleep(LOCK_RETRY).await,
            Err(e) => {
                pc.fleet.shared.error(&e);
                return None;
            }
        }
    }
}

/// Reloads the PC from its file when a one-shot command saved a change to it; call with the
/// PC's lock held. Returns whether it did.
fn adopt_external_change(pc: &Pc, state: &mut DeviceState) -> bool {
    let config = &pc.fleet.config;
    if !config.state_files {
        return false;
    }
    match persist::take_external_change(&config.state_dir, &state.id) {
        Ok(Some(changed)) => {
            *state = changed;
            apply_run_faults(config, state, pc.index);
            true
        }
        Ok(None) => false,
        Err(e) => {
            pc.fleet.shared.error(&e);
            false
        }
    }
}

/// One PC task's handle on the run.
struct Pc {
    /// The PC's number in the fleet.
    index: usize,
    fleet: Arc<Fleet>,
    /// Notified when a one-shot command changed this PC's file.
    woken: Arc<Notify>,
}

/// How a PC ended its run.
#[derive(Default)]
struct DeviceEnd {
    enrolled: bool,
    resets: ResetCounts,
}

/// One PC's life; returns whether it is enrolled at the end and its reset counts. Between
/// steps the state stays packed ([`crate::idle`]). The step and the end are boxed: a future
/// awaited inline takes its full size in every task even while the task only waits, and the
/// enrollment and check-in futures are large.
async fn run_device(mut packed: PackedState, on_disk: bool, pc: Pc) -> DeviceEnd {
    let fleet = pc.fleet.as_ref();
    let (config, clock) = (&fleet.config, fleet.clock.as_ref());
    let mut saved_once = on_disk;
    let mut first_step = true;
    loop {
        if config.stop_at.is_some_and(|s| clock.now() >= s)
            || config.shutdown.as_ref().is_some_and(|rx| *rx.borrow())
        {
            break;
        }
        // The permit first: a PC waiting for it holds no step future yet.
        let permit = fleet.unpacked.acquire().await;
        let step = Box::pin(step_packed(&mut packed, &mut saved_once, &pc)).await;
        drop(permit);
        let wake = match step {
            Ok(wake) => wake,
            Err(e) => {
                fleet.shared.error(&e);
                return DeviceEnd::default();
            }
        };
        if first_step {
            first_step = false;
            fleet
                .shared
                .started
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        if !wait(clock, wake, config, &pc.woken).await {
            break;
        }
    }
    let _permit = fleet.unpacked.acquire().await;
    Box::pin(end_device(packed, &pc)).await
}

/// One step of a packed PC, under an unpack permit ([`Fleet::unpacked`]): unpack,
/// [`step_device`] under the PC's lock (held for the whole step, so a one-shot command never
/// interleaves with it), pack again. Returns when the PC next needs attention; `Err` only for
/// a packed state that does not read back.
async fn step_packed(
    packed: &mut PackedState,
    saved_once: &mut bool,
    pc: &Pc,
) -> Result<Option<OffsetDateTime>> {
    let mut state = packed.unpack()?;
    let wake = {
        let _lock = lock_device(pc, &state.id).await;
        adopt_external_change(pc, &mut state);
        step_device(&mut state, saved_once, pc).await
    };
    *packed = PackedState::pack(state);
    Ok(wake)
}

/// The end of a PC's run, under an unpack permit: its last save, and what the summary counts.
async fn end_device(packed: PackedState, pc: &Pc) -> DeviceEnd {
    let mut state = match packed.unpack() {
        Ok(state) => state,
        Err(e) => {
            pc.fleet.shared.error(&e);
            return DeviceEnd::default();
        }
    };
    drop(packed);
    {
        let _lock = lock_device(pc, &state.id).await;
        // Every step saved what it changed, so a change a one-shot command saved since is
        // newer than anything held here: take it rather than overwrite it.
        adopt_external_change(pc, &mut state);
        save(&pc.fleet.config, &state, &pc.fleet.shared);
    }
    DeviceEnd {
        enrolled: state.is_enrolled(),
        resets: state.resets,
    }
}

/// One step of a PC: enroll if it never did, else [`schedule::tick`]; counts what happened,
/// saves the state when it changed, and returns when the PC next needs attention.
async fn step_device(
    state: &mut DeviceState,
    saved_once: &mut bool,
    pc: &Pc,
) -> Option<OffsetDateTime> {
    let fleet = pc.fleet.as_ref();
    let (config, shared, clock) = (&fleet.config, &fleet.shared, fleet.clock.as_ref());
    let transport = fleet.transport.as_ref();
    // A PC that was never enrolled enrolls; one that a wipe unenrolled stays unmanaged.
    if state.mdm_enrollment.is_none() && !state.events.iter().any(|e| e.kind == EventKind::Enrolled)
    {
        let options = EnrollOptions {
            server: config.server.clone(),
            token: config.token.clone(),
            issuer: config.issuer.clone(),
        };
        let result = {
            let _permit = fleet.sessions.acquire().await;
            client::enroll(transport, state, &options, clock.now()).await
        };
        match result {
            Ok(_) => shared.update(|s| s.enrollments += 1),
            Err(e) => {
                shared.error(&e);
                save(config, state, shared);
                *saved_once = true;
                return Some(clock.now() + ENROLL_RETRY);
            }
        }
        save(config, state, shared);
        *saved_once = true;
    }
    // A raw notification on the PC's channel: Windows starts a session at once
    // (ITPRO push-notification-windows-mdm.md).
    if config
        .wns
        .as_ref()
        .is_some_and(|w| w.take_pushed(&state.id))
        && state.push.channel_uri.is_some()
    {
        state.dm_client.sync_now = true;
    }
    let now = clock.now();
    let tick = if schedule::check_in_due(state, now) {
        let _permit = fleet.sessions.acquire().await;
        schedule::tick(transport, state, clock.now()).await
    } else {
        schedule::tick(transport, state, now).await
    };
    let mut changed = !tick.transitions.is_empty();
    for t in &tick.transitions {
        match t {
            Transition::Completed(Operation::AutopilotReset { .. }) => {
                shared.update(|s| s.resets_done += 1)
            }
            Transition::Completed(Operation::Wipe { .. }) => shared.update(|s| s.wipes_done += 1),
            Transition::Failed(Operation::AutopilotReset { .. }, _)
            | Transition::PowerRequirementsNotMet => shared.update(|s| s.resets_failed += 1),
            _ => {}
        }
    }
    if let Some(session) = &tick.session {
        changed = true;
        match session {
            Ok(report) => {
                // A reset refused at once (WinRE, join type) never reaches the engine.
                let refused = report
                    .executed
                    .iter()
                    .filter(|(cmd, target, code)| {
                        cmd == "Exec" && target.ends_with("doAutomaticRedeployment") && *code >= 300
                    })
                    .count() as u64;
                shared.update(|s| {
                    s.sessions_ok += 1;
                    s.resets_failed += refused;
                })
            }
            Err(e) => {
                shared.update(|s| s.sessions_failed += 1);
                shared.error(e);
            }
        }
    }
    if changed || !*saved_once {
        save(config, state, shared);
        *saved_once = true;
    }
    tick.next_wake
}

/// Resident memory of this process in KiB (`VmRSS` of /proc/self/status); `None` off Linux.
pub fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Memory of idle emulated PCs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryReport {
    pub devices: usize,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
}

impl MemoryReport {
    pub fn bytes_per_device(&self) -> u64 {
        (self.rss_after_kib.saturating_sub(self.rss_before_kib) * 1024) / self.devices.max(1) as u64
    }
}

/// A transport for PCs that must not talk to anyone.
struct NoNetwork;

#[async_trait::async_trait]
impl Transport for NoNetwork {
    async fn post(
        &self,
        url: &str,
        _content_type: &str,
        _body: Vec<u8>,
        _client_identity: Option<&crate::transport::Identity>,
    ) -> Result<crate::transport::Response> {
        Err(DeviceError::Connect(format!(
            "{url}: no network in this measurement"
        )))
    }

    async fn get(&self, url: &str) -> Result<crate::transport::Response> {
        Err(DeviceError::Connect(format!(
            "{url}: no network in this measurement"
        )))
    }
}

/// Runs `n` enrolled, idle PCs exactly as [`run`] does (one task each, waiting for its next
/// poll on a clock that does not move) and measures RSS before building them and once they
/// are all parked. Nothing is written to disk. `None` when RSS is unavailable (not Linux).
pub async fn measure_idle_memory(n: usize, seed: u64, now: OffsetDateTime) -> Option<MemoryReport> {
    let before = rss_kib()?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let config = FleetConfig {
        seed,
        shutdown: Some(stop_rx),
        state_files: false,
        ..FleetConfig::new("https://127.0.0.1:8443", "", n, std::env::temp_dir())
    };
    let clock: Arc<dyn Clock> = Arc::new(crate::schedule::ManualClock::new(now));
    let fleet = Fleet::new(config, Arc::new(NoNetwork), clock, None);
    let mut rng = StdRng::seed_from_u64(seed);
    // One CA for the fleet, as a server has.
    let root_cert_pem = client::der_to_pem("CERTIFICATE", &random_bytes(&mut rng, SAMPLE_CERT_LEN));
    let mut pcs = Pcs::default();
    for i in 0..n {
        let mut s = build_device(&fleet.config, i, now);
        let enrollment = sample_enrollment(&mut rng, &root_cert_pem, s.primary_user.clone(), now);
        s.record_enrollment(enrollment, now);
        s.dm_client.next_poll_at = Some(now + Duration::days(1));
        pcs.start(&fleet, i, s, true);
    }
    // Let every PC take its first step and park.
    while fleet
        .shared
        .started
        .load(std::sync::atomic::Ordering::Relaxed)
        < n
    {
        tokio::task::yield_now().await;
    }
    let after = rss_kib()?;
    pcs.tasks.abort_all();
    while pcs.tasks.join_next().await.is_some() {}
    drop(stop_tx);
    Some(MemoryReport {
        devices: n,
        rss_before_kib: before,
        rss_after_kib: after,
    })
}

/// DER size of a PC's ECDSA P-256 key in PKCS#8, as the emulator makes it.
const SAMPLE_KEY_LEN: usize = 138;
/// DER size of a certificate of the size our CA issues.
const SAMPLE_CERT_LEN: usize = 510;

/// The enrollment of a PC the measurement builds: a key and a certificate of the real sizes,
/// with random contents as real ones have (filler that repeats would pack far smaller than a
/// real PC does), and a random thumbprint.
fn sample_enrollment(
    rng: &mut StdRng,
    root_cert_pem: &str,
    upn: Option<String>,
    now: OffsetDateTime,
) -> crate::state::MdmEnrollment {
    crate::state::MdmEnrollment {
        provider_id: "Redeploy".into(),
        server_url: "https://127.0.0.1:8443/ManagementServer/MDM.svc".into(),
        client_cert_pem: client::der_to_pem("CERTIFICATE", &random_bytes(rng, SAMPLE_CERT_LEN)),
        client_key_pem: client::der_to_pem("PRIVATE KEY", &random_bytes(rng, SAMPLE_KEY_LEN)),
        thumbprint: hex::encode_upper(random_bytes(rng, 20)),
        enrollment_type: crate::state::EnrollmentType::Device,
        upn,
        ent_dm_id: None,
        poll: Default::default(),
        first_sync: Default::default(),
        enrolled: true,
        enrolled_at: now,
        root_cert_pem: root_cert_pem.to_string(),
        renewal: None,
    }
}

fn random_bytes(rng: &mut StdRng, len: usize) -> Vec<u8> {
    (0..len).map(|_| rng.gen()).collect()
}
