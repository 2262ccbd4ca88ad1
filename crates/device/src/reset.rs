//! The reset engine: Autopilot Reset (remote and local), the RemoteWipe wipes and reboots as an
//! explicit, pure state machine over [`DeviceState`]. The runner drives it with [`advance`] (or
//! [`step`]) and a `now` it chooses; nothing here reads a clock.
//!
//! What is removed and kept follows docs/protocol.md §1.2 (MEM windows-autopilot-reset.md, MEM
//! autopilot-reset-overview.md, ITPRO remotewipe-csp.md). The transitions and timings follow the
//! suggested machine of docs/protocol.md §1.7, which is INFERENCE from the Status node's values:
//! real devices' exact transitions are UNCONFIRMED.
//!
//! Choices where the sources are silent (each is marked INFERENCE where it is made):
//! - Remote: Exec → 200 and Status 10 → 20 → offline → back with Status 1 / LastError 0.
//!   WinRE disabled or not Entra joined → Exec 500, Status 30 at once, nothing else changes
//!   (0x80070032 for WinRE; E_NOTIMPL 0x80004001 for the join type). Power is checked when the
//!   reboot is due (Status 40, PC stays up). An injected failure → Status 50, rolled back.
//! - A second Exec while one is pending is acknowledged (200) without starting anything.
//! - Local accounts are rebuilt with the OS: only those a provisioning package creates return.
//! - MDM-delivered apps are uninstalled with the other non-Microsoft apps and come back with the
//!   first MDM sync after the reset (the sync the desktop waits for).
//! - Policies (the MDM policy store) survive the reset with the enrollment.
//! - A local reset leaves the AutomaticRedeployment Status/LastError nodes untouched
//!   (what Windows reports there is UNCONFIRMED, docs/protocol.md §1.4).
//!
//! Not Windows behaviour but an injected fault ([`crate::fault`], `--stale-status-after-restore`):
//! a completed remote reset may leave the nodes reporting the values from before its Exec
//! (`FaultSettings::stale_reset_nodes`) until the PC's next reset.

use time::{Duration, OffsetDateTime};

use crate::fault;
use crate::state::{
    reset_status, AppOrigin, CertificateKind, DeviceState, Edition, EventKind, JoinType, Operation,
    PendingOperation, Phase, ResetTrigger, WipeKind,
};

/// `HRESULT_FROM_WIN32(ERROR_NOT_SUPPORTED)`: logged when WinRE is not enabled (MEM
/// windows-autopilot-reset.md "Troubleshooting").
pub const HR_WINRE_DISABLED: i32 = 0x8007_0032_u32 as i32;
/// `E_NOTIMPL`, reported when the PC is not Entra joined (hybrid, registered, workgroup).
/// INFERENCE: the docs only say hybrid is "not supported"; the device-side code is UNCONFIRMED.
/// A code distinct from [`HR_WINRE_DISABLED`] keeps a server from telling the admin to fix WinRE.
pub const HR_JOIN_NOT_SUPPORTED: i32 = 0x8000_4001_u32 as i32;
/// `HRESULT_FROM_WIN32(ERROR_NOT_READY)`, with Status 40. INFERENCE: the code is UNCONFIRMED.
pub const HR_POWER_NOT_MET: i32 = 0x8007_0015_u32 as i32;
/// `E_FAIL`: the default for an injected reset failure.
pub const HR_E_FAIL: i32 = 0x8000_4005_u32 as i32;

/// Below this battery charge, off AC power, a reset does not start. INFERENCE: Windows' PBR
/// power rule is not documented; 40% is this emulator's choice.
pub const MIN_BATTERY_PCT: u8 = 40;
/// `AutomaticRedeployment` nodes exist from Windows 10 1809 (ITPRO remotewipe-csp.md).
pub const MIN_BUILD_REMOTE_RESET: u32 = 17763;
/// The local-reset policy exists from Windows 10 1709 (ITPRO policy-csp-credentialproviders.md).
pub const MIN_BUILD_LOCAL_RESET: u32 = 16299;

/// What the PC answers to an `Exec` that asks for a reset, wipe or reboot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecOutcome {
    /// Accepted and scheduled: Status 200.
    Accepted,
    /// The same operation is already scheduled or running; nothing new is started: Status 200.
    AlreadyPending,
    /// Refused at once (WinRE, join type, another operation running): Status 500.
    /// INFERENCE: the Exec's status code on refusal is UNCONFIRMED (docs/protocol.md §1.7, §8).
    Refused,
}

/// One step the machine took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Status 10 → 20.
    WaitingForReboot,
    /// The PC rebooted and is silent.
    WentOffline(Operation),
    /// The reset did not start: on battery below [`MIN_BATTERY_PCT`] (Status 40).
    PowerRequirementsNotMet,
    /// The PC is back with the operation done.
    Completed(Operation),
    /// The PC is back, rolled back to its state before the operation (Status 50 for a reset).
    Failed(Operation, i32),
}

/// Why CTRL+WIN+R did not start a reset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocalResetError {
    #[error(
        "the Autopilot Reset credential provider is hidden: DisableAutomaticReDeploymentCredentials \
         is {0} (0 enables local reset)"
    )]
    CredentialProviderHidden(i64),
    #[error("the user name or password is incorrect")]
    BadCredentials,
    #[error("{0} is not a local administrator")]
    NotLocalAdministrator(String),
    #[error("Windows build {0} is older than 16299 (1709)")]
    OsTooOld(u32),
    #[error("WinRE is not enabled (0x80070032): run reagentc.exe /enable")]
    WinReDisabled,
    #[error("Autopilot Reset is not supported on hybrid-joined devices")]
    HybridJoined,
    #[error("Autopilot Reset needs an Entra-joined device; this one is {0}")]
    NotEntraJoined(&'static str),
    #[error("power requirements not met: connect the charger")]
    PowerRequirementsNotMet,
    #[error("another reset, wipe or reboot is already in progress")]
    Busy,
}

/// Why `reagentc` did not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReagentcError {
    #[error("the PC is not running Windows: it is rebooting for {0}")]
    NotRunning(String),
}

/// `reagentc.exe /enable` (`enable`) or `/disable` run by an administrator on the PC: turns the
/// Windows Recovery Environment on or off — the fix MEM windows-autopilot-reset.md gives for a
/// reset that failed with 0x80070032. Logged in the PC's event log; returns whether the
/// setting changed. Refused while the PC is rebooting into a reset, wipe or restart (phase
/// Offline). The next Exec of a reset sees the new value; a reset already accepted is not
/// re-checked (the emulator checks WinRE at Exec only).
pub fn reagentc(
    state: &mut DeviceState,
    enable: bool,
    now: OffsetDateTime,
) -> Result<bool, ReagentcError> {
    if let Some(p) = state.pending.as_ref().filter(|p| p.phase == Phase::Offline) {
        return Err(ReagentcError::NotRunning(format!("{:?}", p.operation)));
    }
    let (flag, word) = if enable {
        ("/enable", "enabled")
    } else {
        ("/disable", "disabled")
    };
    let changed = state.winre_enabled != enable;
    state.winre_enabled = enable;
    state.log(
        now,
        EventKind::WinreConfigured,
        if changed {
            format!("reagentc {flag}: WinRE {word}")
        } else {
            format!("reagentc {flag}: WinRE was already {word}")
        },
    );
    Ok(changed)
}

/// Whether `RemoteWipe/AutomaticRedeployment` exists on this PC: build 17763+ and not SE.
pub fn autopilot_reset_nodes_exist(state: &DeviceState) -> bool {
    state.os.build >= MIN_BUILD_REMOTE_RESET && state.os.edition != Edition::SE
}

/// On AC, or a battery at [`MIN_BATTERY_PCT`] or more (or no battery at all).
pub fn power_ok(state: &DeviceState) -> bool {
    state.power.on_ac || state.power.battery_pct.is_none_or(|p| p >= MIN_BATTERY_PCT)
}

/// `Exec` of `doAutomaticRedeployment`. The caller has checked that the node exists.
pub fn request_remote_reset(state: &mut DeviceState, now: OffsetDateTime) -> ExecOutcome {
    let op = Operation::AutopilotReset {
        trigger: ResetTrigger::Remote,
    };
    if let Some(outcome) = busy(state, op, now) {
        return outcome;
    }
    // WinRE is checked before anything happens and the reset "fails immediately" (MEM
    // windows-autopilot-reset.md): Status 30 and the HRESULT, nothing else changes.
    if !state.winre_enabled {
        return refuse_reset(state, HR_WINRE_DISABLED, "WinRE is disabled", now);
    }
    // Entra joined only (MEM windows-autopilot-reset.md). INFERENCE: that the refusal shows as
    // Status 30 at Exec time.
    if state.entra_join.kind != JoinType::Joined || state.is_hybrid() {
        let why = format!(
            "join type {} is not supported (Entra joined only)",
            if state.is_hybrid() {
                "hybrid"
            } else {
                state.entra_join.kind.as_str()
            }
        );
        return refuse_reset(state, HR_JOIN_NOT_SUPPORTED, &why, now);
    }
    let before = state.reported_reset_nodes();
    // The Exec rewrites the nodes: a stale value an earlier reset left ends here.
    state.faults.stale_reset_nodes = None;
    state.autopilot_reset.status = reset_status::SCHEDULED;
    state.autopilot_reset.last_error = 0;
    state.pending = Some(PendingOperation {
        operation: op,
        phase: Phase::Scheduled,
        next_at: now + Duration::seconds(state.timings.schedule_secs),
        reset_nodes_before: Some(before),
    });
    state.log(
        now,
        EventKind::ResetScheduled,
        "remote Autopilot Reset accepted",
    );
    ExecOutcome::Accepted
}

/// `Exec` of a RemoteWipe wipe node.
pub fn request_wipe(state: &mut DeviceState, wipe: WipeKind, now: OffsetDateTime) -> ExecOutcome {
    let op = Operation::Wipe { wipe };
    if let Some(outcome) = busy(state, op, now) {
        return outcome;
    }
    // PBR runs in WinRE. INFERENCE: a wipe without WinRE is refused at Exec like a reset.
    if !state.winre_enabled {
        state.log(
            now,
            EventKind::WipeRefused,
            format!("{wipe:?}: WinRE is disabled (0x80070032)"),
        );
        return ExecOutcome::Refused;
    }
    schedule_reboot(state, op, now);
    state.log(now, EventKind::WipeScheduled, format!("{wipe:?} accepted"));
    ExecOutcome::Accepted
}

/// `Exec` of `Reboot/RebootNow`.
pub fn request_reboot(state: &mut DeviceState, now: OffsetDateTime) -> ExecOutcome {
    if let Some(outcome) = busy(state, Operation::Reboot, now) {
        return outcome;
    }
    schedule_reboot(state, Operation::Reboot, now);
    state.log(now, EventKind::RebootScheduled, "RebootNow accepted");
    ExecOutcome::Accepted
}

/// CTRL+WIN+R at the lock screen, then `user`'s credentials (MEM local-autopilot-reset.md).
/// On success the PC reboots at once into the reset (phase Offline); finish it with [`advance`]
/// or [`run_to_completion`].
pub fn local_reset(
    state: &mut DeviceState,
    user: &str,
    password: &str,
    now: OffsetDateTime,
) -> Result<(), LocalResetError> {
    let result = check_local_reset(state, user, password);
    if let Err(e) = &result {
        state.log(now, EventKind::ResetRefused, format!("local reset: {e}"));
        return result;
    }
    state.signed_in_user = None;
    state.online = false;
    state.pending = Some(PendingOperation {
        operation: Operation::AutopilotReset {
            trigger: ResetTrigger::Local,
        },
        phase: Phase::Offline,
        next_at: now + Duration::seconds(state.timings.reset_secs),
        reset_nodes_before: None,
    });
    state.log(
        now,
        EventKind::ResetScheduled,
        format!(
            "local Autopilot Reset by {user}{}",
            match &state.usb_package {
                Some(p) => format!(", using {} from USB", p.name),
                None => String::new(),
            }
        ),
    );
    state.log(
        now,
        EventKind::WentOffline,
        "rebooting into Autopilot Reset",
    );
    Ok(())
}

fn check_local_reset(
    state: &DeviceState,
    user: &str,
    password: &str,
) -> Result<(), LocalResetError> {
    if state.os.build < MIN_BUILD_LOCAL_RESET {
        return Err(LocalResetError::OsTooOld(state.os.build));
    }
    // The policy only shows the credential provider; without it CTRL+WIN+R does nothing
    // (ITPRO policy-csp-credentialproviders.md).
    let policy = state.local_reset_policy();
    if policy != 0 {
        return Err(LocalResetError::CredentialProviderHidden(policy));
    }
    let account = state
        .local_users
        .iter()
        .find(|u| u.name.eq_ignore_ascii_case(user))
        .filter(|u| u.password == password)
        .ok_or(LocalResetError::BadCredentials)?;
    if !account.is_admin {
        return Err(LocalResetError::NotLocalAdministrator(account.name.clone()));
    }
    if state.pending.is_some() {
        return Err(LocalResetError::Busy);
    }
    if !state.winre_enabled {
        return Err(LocalResetError::WinReDisabled);
    }
    if state.is_hybrid() {
        return Err(LocalResetError::HybridJoined);
    }
    // A work account (Entra registered) does not make the PC the organisation's: Autopilot Reset
    // is for Entra-joined devices (MEM windows-autopilot-reset.md; docs/protocol.md §1.1). A PC
    // in a workgroup set up by a provisioning package (Set up School PCs) keeps its local reset.
    if state.entra_join.kind == JoinType::Registered {
        return Err(LocalResetError::NotEntraJoined(
            "Entra registered (a work account), not joined",
        ));
    }
    if !power_ok(state) {
        return Err(LocalResetError::PowerRequirementsNotMet);
    }
    Ok(())
}

/// Moves the pending operation through every phase that is due at `now`.
pub fn advance(state: &mut DeviceState, now: OffsetDateTime) -> Vec<Transition> {
    let mut out = Vec::new();
    while let Some(at) = state.pending.as_ref().map(|p| p.next_at) {
        if at > now {
            break;
        }
        match step(state, at) {
            Some(t) => out.push(t),
            None => break,
        }
    }
    out
}

/// Runs the pending operation to its end, whatever the timings (for one-shot CLI commands and
/// tests). Events carry the times the phases would have had.
pub fn run_to_completion(state: &mut DeviceState) -> Vec<Transition> {
    let mut out = Vec::new();
    while let Some(at) = state.pending.as_ref().map(|p| p.next_at) {
        match step(state, at) {
            Some(t) => out.push(t),
            None => break,
        }
    }
    out
}

/// Takes the next transition now, whether or not it is due. `None` when nothing is pending.
pub fn step(state: &mut DeviceState, now: OffsetDateTime) -> Option<Transition> {
    let pending = state.pending.clone()?;
    let op = pending.operation;
    Some(match pending.phase {
        Phase::Scheduled => {
            state.autopilot_reset.status = reset_status::WAITING_FOR_REBOOT;
            state.pending = Some(PendingOperation {
                phase: Phase::WaitingForReboot,
                next_at: now + Duration::seconds(state.timings.reboot_after_secs),
                ..pending
            });
            state.log(
                now,
                EventKind::ResetWaitingForReboot,
                "Autopilot Reset waiting for reboot",
            );
            Transition::WaitingForReboot
        }
        Phase::WaitingForReboot => {
            let is_reset = matches!(op, Operation::AutopilotReset { .. });
            // INFERENCE: the power rule is checked when the reset is about to start, so the Exec
            // was accepted (200) and the failure shows later as Status 40.
            if is_reset && !power_ok(state) {
                state.pending = None;
                state.autopilot_reset.status = reset_status::POWER_NOT_MET;
                state.autopilot_reset.last_error = HR_POWER_NOT_MET;
                state.log(
                    now,
                    EventKind::ResetFailed,
                    format!(
                        "power requirements not met (battery {}%, not on AC)",
                        state.power.battery_pct.unwrap_or(0)
                    ),
                );
                return Some(Transition::PowerRequirementsNotMet);
            }
            let secs = match op {
                Operation::AutopilotReset { .. } => state.timings.reset_secs,
                Operation::Wipe { .. } => state.timings.wipe_secs,
                Operation::Reboot => state.timings.reboot_secs,
            };
            state.online = false;
            state.signed_in_user = None;
            state.pending = Some(PendingOperation {
                phase: Phase::Offline,
                next_at: now + Duration::seconds(secs),
                ..pending
            });
            state.log(now, EventKind::WentOffline, format!("rebooting for {op:?}"));
            Transition::WentOffline(op)
        }
        Phase::Offline => {
            state.pending = None;
            let t = finish(state, &pending, now);
            state.online = state.has_network();
            if state.online {
                state.log(now, EventKind::CameOnline, "back on the network");
            }
            t
        }
    })
}

/// The first MDM session after a reset completed: the desktop opens (if packages are applied)
/// and the MDM apps the reset removed are back. Call it after every successful session; it only
/// acts once.
///
/// `FirstSyncStatus/IsSyncDone` is not set here: the MDM server sets it (ITPRO dmclient-csp.md:
/// a Get tells the server whether the first syncs are done, a Set makes the status page tell the
/// user that the device is provisioned), so it stays false until a server Replaces it with true.
/// INFERENCE: the desktop gate opens after one successful session whether or not the server set
/// the node (docs/protocol.md §3.8: the gate's link to the FirstSyncStatus nodes is UNCONFIRMED).
pub fn mdm_sync_completed(state: &mut DeviceState, now: OffsetDateTime) {
    if !state.desktop.waiting_for_mdm_sync && state.mdm_apps_awaiting_sync.is_empty() {
        return;
    }
    state.desktop.waiting_for_mdm_sync = false;
    let apps = std::mem::take(&mut state.mdm_apps_awaiting_sync);
    let names: Vec<String> = apps.iter().map(|a| a.name.clone()).collect();
    for app in apps {
        if !state.apps.iter().any(|a| a.name == app.name) {
            state.apps.push(app);
        }
    }
    state.log(
        now,
        EventKind::MdmSyncCompleted,
        if names.is_empty() {
            "first MDM sync after reset".to_string()
        } else {
            format!(
                "first MDM sync after reset; reinstalled {}",
                names.join(", ")
            )
        },
    );
    if state.desktop_available() {
        state.log(
            now,
            EventKind::DesktopAvailable,
            "sign-in to the desktop allowed",
        );
    }
}

fn busy(state: &mut DeviceState, op: Operation, now: OffsetDateTime) -> Option<ExecOutcome> {
    let pending = state.pending.as_ref()?;
    let same = pending.operation == op;
    state.log(
        now,
        EventKind::DuplicateRequestIgnored,
        format!("{op:?} requested while {:?} is pending", pending.operation),
    );
    // A second Exec never starts a second reset. INFERENCE: the same request is acknowledged
    // again; a different one is refused.
    Some(if same {
        ExecOutcome::AlreadyPending
    } else {
        ExecOutcome::Refused
    })
}

fn refuse_reset(
    state: &mut DeviceState,
    hresult: i32,
    why: &str,
    now: OffsetDateTime,
) -> ExecOutcome {
    state.faults.stale_reset_nodes = None;
    state.autopilot_reset.status = reset_status::FAILED_AT_EXEC;
    state.autopilot_reset.last_error = hresult;
    state.log(
        now,
        EventKind::ResetRefused,
        format!("{why} (0x{:08X})", hresult as u32),
    );
    ExecOutcome::Refused
}

fn schedule_reboot(state: &mut DeviceState, op: Operation, now: OffsetDateTime) {
    state.pending = Some(PendingOperation {
        operation: op,
        phase: Phase::WaitingForReboot,
        next_at: now + Duration::seconds(state.timings.reboot_after_secs),
        reset_nodes_before: None,
    });
}

fn finish(state: &mut DeviceState, pending: &PendingOperation, now: OffsetDateTime) -> Transition {
    let op = pending.operation;
    // An injected failure inside PBR: the reset rolls back (ITPRO remotewipe-csp.md: "if
    // interrupted tries to roll back"); the changes below are simply never made.
    if let (Some(hr), Operation::AutopilotReset { .. } | Operation::Wipe { .. }) =
        (state.inject_reset_failure, op)
    {
        if let Operation::AutopilotReset { trigger } = op {
            // INFERENCE: what a local reset reports in the status nodes is UNCONFIRMED
            // (docs/protocol.md §1.4); only the remote reset writes them here.
            if trigger == ResetTrigger::Remote {
                state.autopilot_reset.status = reset_status::FAILED_INTERNALLY;
                state.autopilot_reset.last_error = hr;
            }
            state.log(
                now,
                EventKind::ResetFailed,
                format!("reset internals failed (0x{:08X}); rolled back", hr as u32),
            );
        } else {
            state.log(
                now,
                EventKind::WipeFailed,
                format!("{op:?} failed (0x{:08X}); rolled back", hr as u32),
            );
        }
        return Transition::Failed(op, hr);
    }
    if !matches!(op, Operation::Reboot) {
        // A stale status (crate::fault) lasts until the PC's next reset or wipe.
        state.faults.stale_reset_nodes = None;
    }
    match op {
        Operation::AutopilotReset { trigger } => {
            apply_autopilot_reset(state, trigger, now);
            match trigger {
                ResetTrigger::Remote => {
                    state.resets.remote_autopilot += 1;
                    state.autopilot_reset.status = reset_status::COMPLETE;
                    state.autopilot_reset.last_error = 0;
                    stale_status_fault(state, pending, now);
                }
                ResetTrigger::Local => state.resets.local_autopilot += 1,
            }
            state.log(
                now,
                EventKind::ResetCompleted,
                format!("{trigger:?} Autopilot Reset complete"),
            );
        }
        Operation::Wipe { wipe } => {
            apply_wipe(state, wipe, now);
            state.resets.wipes += 1;
            state.log(now, EventKind::WipeCompleted, format!("{wipe:?} complete"));
        }
        Operation::Reboot => {
            state.log(now, EventKind::RebootCompleted, "restarted");
        }
    }
    Transition::Completed(op)
}

/// The `--stale-status-after-restore` fault: the restored PC goes back to reporting the
/// Status/LastError it had before this reset's Exec, until the next reset's Exec or a wipe.
/// Everything else about the reset happened.
fn stale_status_fault(state: &mut DeviceState, pending: &PendingOperation, now: OffsetDateTime) {
    let Some(before) = pending.reset_nodes_before else {
        return;
    };
    if !fault::stale_after_restore(&state.faults, state.resets.remote_autopilot) {
        return;
    }
    state.faults.stale_reset_nodes = Some(before);
    state.log(
        now,
        EventKind::FaultInjected,
        format!(
            "stale status: AutomaticRedeployment reports Status {} and LastError 0x{:08X} \
             (from before the Exec) instead of 1 and 0",
            before.status, before.last_error as u32
        ),
    );
}

/// Removes what Autopilot Reset removes and keeps what it keeps (docs/protocol.md §1.2).
fn apply_autopilot_reset(state: &mut DeviceState, trigger: ResetTrigger, now: OffsetDateTime) {
    // Primary user: cleared by a remote reset only (MEM windows-autopilot-reset.md).
    if trigger == ResetTrigger::Remote {
        state.primary_user = None;
    }
    // All user profiles, with their files, per-user settings and user-scope policies.
    state.profiles.clear();
    state.signed_in_user = None;
    // INFERENCE: PBR rebuilds the OS, so local accounts go too; those a provisioning package
    // created come back when the package is re-applied below. Entra accounts live in Entra: the
    // emulator keeps the list of users who may sign in.
    state.local_users.clear();
    remove_apps_for_reset(state);
    restore_settings(state);
    // Certificates: MDM and SCEP stay (docs/protocol.md §1.2); user-imported ones go with the
    // profiles.
    state
        .certificates
        .retain(|c| c.kind != CertificateKind::UserImported);
    // Kept: Wi-Fi profiles, Entra join, MDM enrollment (same cert, same DevId), policies.
    // INFERENCE: policies are kept as part of the MDM state; a server re-sends them anyway.
    reapply_packages(state, now);
    state.desktop.at_oobe = false;
    state.desktop.waiting_for_mdm_sync = state.is_enrolled();
    if let Some(e) = state.mdm_enrollment.as_mut() {
        e.first_sync.is_sync_done = false;
    }
}

/// Apps: Inbox and provisioning-package apps stay; user-installed apps go. MDM-delivered apps
/// are uninstalled with the other non-Microsoft apps (MEM autopilot-reset-overview.md) and
/// INFERENCE: come back with the first MDM sync, which the desktop waits for.
fn remove_apps_for_reset(state: &mut DeviceState) {
    let mut kept = Vec::new();
    for app in std::mem::take(&mut state.apps) {
        match app.origin {
            AppOrigin::Inbox | AppOrigin::ProvisioningPackage => kept.push(app),
            AppOrigin::Mdm => {
                if state.is_enrolled() {
                    state.mdm_apps_awaiting_sync.push(app);
                }
            }
            AppOrigin::UserInstalled => {}
        }
    }
    state.apps = kept;
}

fn restore_settings(state: &mut DeviceState) {
    for setting in state.device_settings.values_mut() {
        setting.restore();
    }
    state.region.restore();
    state.language.restore();
    state.keyboard.restore();
}

/// Re-applies the kept packages, then the USB package if one is plugged in; the USB package is
/// recorded with the others so later resets re-apply it too (docs/protocol.md §1.2).
fn reapply_packages(state: &mut DeviceState, now: OffsetDateTime) {
    state.desktop.waiting_for_packages = true;
    let packages = state.provisioning_packages.clone();
    for pkg in &packages {
        state.apply_package(pkg, now);
    }
    if let Some(usb) = state.usb_package.clone() {
        state.apply_package(&usb, now);
    }
    state.desktop.waiting_for_packages = false;
}

/// What each RemoteWipe node leaves (ITPRO remotewipe-csp.md; the "keep" readings are marked).
fn apply_wipe(state: &mut DeviceState, wipe: WipeKind, now: OffsetDateTime) {
    match wipe {
        WipeKind::Wipe | WipeKind::Protected | WipeKind::PersistProvisionedData => {
            // "Remove everything": a fresh OS at OOBE, unenrolled and not joined.
            state.primary_user = None;
            state.signed_in_user = None;
            state.profiles.clear();
            state.local_users.clear();
            state.entra_users.clear();
            state.apps.retain(|a| a.origin == AppOrigin::Inbox);
            state.mdm_apps_awaiting_sync.clear();
            restore_settings(state);
            state.wifi_profiles.clear();
            state.certificates.clear();
            state.entra_join.kind = JoinType::None;
            state.entra_join.tenant_id = None;
            state.entra_join.device_id = None;
            state.entra_join.token_issuer = None;
            state.ad_domain = None;
            state.mdm_enrollment = None;
            state.policies.clear();
            state.autopilot_reset = Default::default();
            state.desktop.waiting_for_mdm_sync = false;
            state.desktop.waiting_for_packages = false;
            state.desktop.at_oobe = true;
            let packages = std::mem::take(&mut state.provisioning_packages);
            if wipe == WipeKind::PersistProvisionedData {
                // Packages are backed up and restored on resume (ITPRO remotewipe-csp.md).
                for pkg in &packages {
                    state.apply_package(pkg, now);
                }
            }
        }
        WipeKind::PersistUserData => {
            // "Reset this PC > Keep my files" / Intune "Retain enrollment state and user
            // account": accounts, profiles and files stay; apps and settings go back; Entra
            // join and MDM enrollment stay. Apps are treated as in Autopilot Reset (package apps
            // come back with the packages, MDM apps with the first sync).
            // INFERENCE: Wi-Fi profiles are settings and go;
            // per-user settings go back to their originals; packages are re-applied; SCEP and
            // user certificates stay (the enrollment and user data stay).
            remove_apps_for_reset(state);
            restore_settings(state);
            for profile in &mut state.profiles {
                for s in profile.settings.values_mut() {
                    s.restore();
                }
            }
            state.signed_in_user = None;
            state.wifi_profiles.clear();
            reapply_packages(state, now);
            state.desktop.at_oobe = false;
            state.desktop.waiting_for_mdm_sync = state.is_enrolled();
        }
    }
}
