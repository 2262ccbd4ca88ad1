//! The background worker: [`tick`] does the server's timed work once at `state.clock.now()`
//! (expire stuck actions, release due waves, fire due schedules); [`spawn`] runs it every
//! `worker_interval` until the server stops. Tests call [`tick`] directly with a manual clock.
//!
//! Several server processes may tick against one PostgreSQL database at the same moment: every
//! step claims its rows with a conditional update (an action's expected state, a wave's
//! `released_at`, a schedule's `next_run`) in the same transaction that writes the work, so each
//! piece of work is done by exactly one of them, and a process killed mid-tick leaves it undone
//! for the next tick rather than half done.

use std::fmt;
use std::time::Duration;

use redeploy_core::action;
use redeploy_core::campaign::{self, WaveSettings};
use redeploy_core::schedule;
use redeploy_core::session::SessionError;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::state::AppState;

/// What one tick did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TickReport {
    /// Actions moved to `expired` (no transition for `action_expiry`).
    pub expired: usize,
    /// Stored waves of bulk requests whose actions were requested.
    pub waves_released: usize,
    /// Schedules fired (claimed by this tick; a schedule whose group is gone counts too).
    pub schedules_fired: usize,
    /// Webhook deliveries a receiver accepted in this tick (`crate::webhooks::tick`).
    pub webhooks_delivered: usize,
}

impl TickReport {
    /// Whether the tick found nothing to do.
    pub fn is_idle(&self) -> bool {
        *self == TickReport::default()
    }
}

/// A tick in which at least one step failed; the other steps still ran.
#[derive(Debug)]
pub struct TickError {
    /// What the steps that worked did.
    pub report: TickReport,
    /// Each failed step with its error.
    pub failures: Vec<(&'static str, SessionError)>,
}

impl fmt::Display for TickError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .failures
            .iter()
            .map(|(step, e)| format!("{step}: {e}"))
            .collect();
        write!(f, "worker tick failed: {}", parts.join("; "))
    }
}

impl std::error::Error for TickError {}

/// Runs the timed work once at `state.clock.now()`: expires actions without progress for
/// `action_expiry`, releases due waves and fires due schedules (both under `daily_cap`). Each
/// step runs even if an earlier one failed (a broken schedule row must not stop expiry); the
/// counts are added to `/metrics` either way.
pub async fn tick(state: &AppState) -> Result<TickReport, TickError> {
    let now = state.clock.now();
    let store = state.store.as_ref();
    let settings = crate::service::actions::action_settings(state);
    let expiry =
        time::Duration::try_from(state.settings.action_expiry).unwrap_or(time::Duration::days(7));
    let daily_cap = state.settings.daily_cap;
    let mut report = TickReport::default();
    let mut failures = Vec::new();

    match action::expire_stuck(store, now, expiry).await {
        Ok(expired) => report.expired = expired.len(),
        Err(e) => failures.push(("expire stuck actions", e)),
    }
    state.crash_point(crate::crash::BEFORE_WAVE_RELEASE);
    match campaign::release_due_waves(store, now, &settings, daily_cap).await {
        Ok(released) => report.waves_released = released.len(),
        Err(e) => failures.push(("release due waves", e)),
    }
    if report.waves_released > 0 {
        state.crash_point(crate::crash::AFTER_WAVE_RELEASE);
    }
    let waves = WaveSettings {
        daily_cap,
        ..WaveSettings::default()
    };
    match schedule::fire_due(store, now, &settings, &waves).await {
        Ok(fired) => report.schedules_fired = fired.len(),
        Err(e) => failures.push(("fire due schedules", e)),
    }
    // Webhooks last, so that the events the steps above produced (an action expired: "stuck")
    // go out in the same tick.
    match crate::webhooks::tick(state).await {
        Ok(delivered) => report.webhooks_delivered = delivered.delivered as usize,
        Err(e) => failures.push(("deliver webhooks", e.into())),
    }

    state
        .metrics
        .record_tick(if failures.is_empty() { "ok" } else { "error" }, &report);
    if failures.is_empty() {
        Ok(report)
    } else {
        Err(TickError { report, failures })
    }
}

/// Calls [`tick`] every `worker_interval` (the first one interval after the start, so a test
/// with a long interval never sees it). Failures are logged and the loop keeps going; the task
/// ends when the returned handle is aborted (the server does that when it stops).
pub fn spawn(state: AppState) -> JoinHandle<()> {
    let period = state
        .settings
        .worker_interval
        .max(Duration::from_millis(10));
    tokio::spawn(async move {
        let mut every = tokio::time::interval_at(Instant::now() + period, period);
        // A slow tick (a big wave) delays the next one instead of bunching them up.
        every.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            match tick(&state).await {
                Ok(r) if r.is_idle() => tracing::debug!("worker tick: nothing to do"),
                Ok(r) => tracing::info!(
                    expired = r.expired,
                    waves_released = r.waves_released,
                    schedules_fired = r.schedules_fired,
                    webhooks_delivered = r.webhooks_delivered,
                    "worker tick"
                ),
                Err(e) => tracing::warn!(error = %e, "worker tick failed; trying again next tick"),
            }
        }
    })
}
