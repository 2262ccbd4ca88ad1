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

use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::service::{actions, batches, schedules, ServiceError};
use crate::state::AppState;

pub use crate::metrics::TickReport;

/// A tick in which at least one step failed; the other steps still ran.
#[derive(Debug)]
pub struct TickError {
    /// What the steps that worked did.
    pub report: TickReport,
    /// Each failed step with its error.
    pub failures: Vec<(&'static str, ServiceError)>,
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
    let mut report = TickReport::default();
    let mut failures: Vec<(&'static str, ServiceError)> = Vec::new();

    match actions::expire_stuck(state).await {
        Ok(n) => report.expired = n,
        Err(e) => failures.push(("expire stuck actions", e)),
    }
    state.crash_point(crate::crash::BEFORE_WAVE_RELEASE);
    match batches::release_due_waves(state).await {
        Ok(n) => report.waves_released = n,
        Err(e) => failures.push(("release due waves", e)),
    }
    if report.waves_released > 0 {
        state.crash_point(crate::crash::AFTER_WAVE_RELEASE);
    }
    match schedules::fire_due(state).await {
        Ok(n) => report.schedules_fired = n,
        Err(e) => failures.push(("fire due schedules", e)),
    }
    // Webhooks last, so that the events the steps above produced (an action expired: "stuck")
    // go out in the same tick.
    match crate::webhook_delivery::tick(state).await {
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
