//! When the PC checks in: the DMClient Poll schedule (ITPRO dmclient-csp.md `Poll/*`: the first
//! set of retries, the second set, then the remaining interval), the reset engine's phases, and
//! the [`Clock`] that drives them — a scaled real clock for runs, a [`ManualClock`] that tests
//! move by hand so no test sleeps.

use std::sync::Mutex;

use async_trait::async_trait;
use time::{Duration, OffsetDateTime};
use tokio::sync::Notify;

use crate::client::{self, SessionReport};
use crate::error::Result;
use crate::reset::{self, Transition};
use crate::state::{DeviceState, PollSchedule};
use crate::transport::Transport;

/// The device's notion of time. All device times (poll schedule, reset durations) are in
/// device seconds; a scaled clock makes them pass faster than real time.
#[async_trait]
pub trait Clock: Send + Sync {
    fn now(&self) -> OffsetDateTime;
    /// Returns once [`Clock::now`] is at or after `at`.
    async fn sleep_until(&self, at: OffsetDateTime);
}

/// Real time sped up by `time_scale`: real seconds = device seconds / time_scale.
#[derive(Debug, Clone)]
pub struct ScaledClock {
    origin_real: tokio::time::Instant,
    origin: OffsetDateTime,
    time_scale: f64,
}

impl ScaledClock {
    /// Device time starts at `origin` now and runs `time_scale` times faster than real time
    /// (values at or below 0 are taken as 1).
    pub fn new(origin: OffsetDateTime, time_scale: f64) -> Self {
        ScaledClock {
            origin_real: tokio::time::Instant::now(),
            origin,
            time_scale: if time_scale > 0.0 { time_scale } else { 1.0 },
        }
    }

    pub fn time_scale(&self) -> f64 {
        self.time_scale
    }
}

#[async_trait]
impl Clock for ScaledClock {
    fn now(&self) -> OffsetDateTime {
        let real = self.origin_real.elapsed().as_secs_f64();
        self.origin + Duration::seconds_f64(real * self.time_scale)
    }

    async fn sleep_until(&self, at: OffsetDateTime) {
        let device_secs = (at - self.origin).as_seconds_f64().max(0.0);
        let real = std::time::Duration::from_secs_f64(device_secs / self.time_scale);
        tokio::time::sleep_until(self.origin_real + real).await;
    }
}

/// A clock that only moves when told to ([`ManualClock::set`], [`ManualClock::advance`]).
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<OffsetDateTime>,
    moved: Notify,
}

impl ManualClock {
    pub fn new(start: OffsetDateTime) -> Self {
        ManualClock {
            now: Mutex::new(start),
            moved: Notify::new(),
        }
    }

    /// Moves the clock to `at` (never backwards) and wakes every sleeper that is due.
    pub fn set(&self, at: OffsetDateTime) {
        {
            let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
            if at > *now {
                *now = at;
            }
        }
        self.moved.notify_waiters();
    }

    pub fn advance(&self, by: Duration) {
        let at = self.now() + by;
        self.set(at);
    }
}

#[async_trait]
impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *self.now.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn sleep_until(&self, at: OffsetDateTime) {
        loop {
            let moved = self.moved.notified();
            tokio::pin!(moved);
            // Register before checking, so a `set` between the check and the await is not lost.
            moved.as_mut().enable();
            if self.now() >= at {
                return;
            }
            moved.await;
        }
    }
}

/// The wait, in minutes, before scheduled poll number `index` (0-based, counted from
/// enrollment): `IntervalForFirstSetOfRetries` for the first `NumberOfFirstRetries` polls, then
/// the second set, then `IntervalForRemainingScheduledRetries` for
/// `NumberOfRemainingScheduledRetries` polls (0 = forever). `None` when the schedule is over.
/// A set whose interval is 0 is skipped.
pub fn poll_interval_minutes(poll: &PollSchedule, index: u32) -> Option<u32> {
    let mut start = 0u32;
    for (count, interval) in [
        (
            poll.number_of_first_retries,
            poll.interval_for_first_set_of_retries,
        ),
        (
            poll.number_of_second_retries,
            poll.interval_for_second_set_of_retries,
        ),
    ] {
        let end = start.saturating_add(count);
        if index < end && interval > 0 {
            return Some(interval);
        }
        start = end;
    }
    let remaining = poll.number_of_remaining_scheduled_retries;
    let interval = poll.interval_for_remaining_scheduled_retries;
    if interval > 0 && (remaining == 0 || index < start.saturating_add(remaining)) {
        Some(interval)
    } else {
        None
    }
}

/// When the next scheduled poll falls, counted from `now`, given the polls already done.
pub fn next_poll_after(state: &DeviceState, now: OffsetDateTime) -> Option<OffsetDateTime> {
    let poll = &state.mdm_enrollment.as_ref()?.poll;
    poll_interval_minutes(poll, state.dm_client.scheduled_polls)
        .map(|m| now + Duration::minutes(i64::from(m)))
}

/// Whether a check-in is due at `now`.
pub fn check_in_due(state: &DeviceState, now: OffsetDateTime) -> bool {
    state.online
        && state.is_enrolled()
        && (state.dm_client.sync_now || state.dm_client.next_poll_at.is_some_and(|t| t <= now))
}

/// When the PC next needs attention: its next poll or the next phase of a pending reset.
pub fn next_wake(state: &DeviceState) -> Option<OffsetDateTime> {
    let poll = if state.online && state.is_enrolled() {
        state.dm_client.next_poll_at
    } else {
        None
    };
    let phase = state.pending.as_ref().map(|p| p.next_at);
    match (poll, phase) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// What one [`tick`] did.
#[derive(Debug)]
pub struct Tick {
    /// Reset / wipe / reboot phases taken.
    pub transitions: Vec<Transition>,
    /// The certificate renewal, if one was due (before the check-in, which then uses the new
    /// certificate).
    pub renewal: Option<Result<client::RenewReport>>,
    /// The check-in, if one was due.
    pub session: Option<Result<SessionReport>>,
    /// When to tick again (`None`: nothing scheduled).
    pub next_wake: Option<OffsetDateTime>,
}

/// One step of a PC's life at `now`: the reset engine moves on ([`reset::advance`]); a
/// certificate within its renewal period is renewed ([`client::renewal_due`]); a PC that
/// comes back from a reset or reboot checks in at once (as Windows does at the first boot after
/// a reset); an offline PC stays silent; otherwise it checks in when its poll is due and plans
/// the next poll. Tests drive this with explicit times.
pub async fn tick(transport: &dyn Transport, state: &mut DeviceState, now: OffsetDateTime) -> Tick {
    let transitions = reset::advance(state, now);
    let came_back = transitions
        .iter()
        .any(|t| matches!(t, Transition::Completed(_) | Transition::Failed(..)));
    if came_back && state.online && state.is_enrolled() {
        state.dm_client.sync_now = true;
    }
    let mut session = None;
    let renewal = if client::renewal_due(state, now) {
        Some(client::renew_certificate(transport, state, now).await)
    } else {
        None
    };
    if check_in_due(state, now) {
        let immediate = std::mem::take(&mut state.dm_client.sync_now);
        let scheduled = state.dm_client.next_poll_at.is_some_and(|t| t <= now);
        session = Some(client::check_in(transport, state, now).await);
        if scheduled || !immediate {
            state.dm_client.scheduled_polls = state.dm_client.scheduled_polls.saturating_add(1);
            state.dm_client.next_poll_at = next_poll_after(state, now);
        } else if state.dm_client.next_poll_at.is_none() {
            state.dm_client.next_poll_at = next_poll_after(state, now);
        }
        // The session may have scheduled a reset: its first phase is due at once or soon.
        let more = reset::advance(state, now);
        let mut transitions = transitions;
        transitions.extend(more);
        return Tick {
            transitions,
            renewal,
            session,
            next_wake: next_wake(state),
        };
    }
    Tick {
        transitions,
        renewal,
        session,
        next_wake: next_wake(state),
    }
}
