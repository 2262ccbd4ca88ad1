//! What the accept loop does when `accept()` fails: wait before the next try, 10 ms doubling to
//! 1 s and back to nothing after a success, and log at most one line a second saying how many
//! failures it left out. Out of file descriptors (`EMFILE`), `accept()` fails at once for as
//! long as every descriptor is held; retrying without a pause spun a core and wrote ~380,000
//! WARN lines a second (issue #14).

use std::time::{Duration, Instant};

/// The first pause after a failure.
pub const FIRST_PAUSE: Duration = Duration::from_millis(10);
/// The longest pause.
pub const MAX_PAUSE: Duration = Duration::from_secs(1);
/// At most one log line per this.
pub const LOG_EVERY: Duration = Duration::from_secs(1);

/// The accept loop's memory of its failures. Pure: the caller passes the time.
#[derive(Debug, Default)]
pub struct AcceptBackoff {
    /// The pause after the next failure; zero after a success.
    next_pause: Duration,
    /// When the last line was logged.
    logged_at: Option<Instant>,
    /// Failures since that line that were not logged.
    suppressed: u64,
}

/// What to do after one failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AfterFailure {
    /// How long to wait before accepting again.
    pub pause: Duration,
    /// `Some(n)`: log this failure, saying that `n` earlier ones were left out; `None`: say
    /// nothing.
    pub log: Option<u64>,
}

impl AcceptBackoff {
    /// One failed `accept()` at `now`.
    pub fn failed(&mut self, now: Instant) -> AfterFailure {
        let pause = self.next_pause.max(FIRST_PAUSE);
        self.next_pause = (pause * 2).min(MAX_PAUSE);
        let due = self
            .logged_at
            .is_none_or(|at| now.saturating_duration_since(at) >= LOG_EVERY);
        let log = if due {
            self.logged_at = Some(now);
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        };
        AfterFailure { pause, log }
    }

    /// A connection was accepted: the next failure pauses [`FIRST_PAUSE`] again. The log
    /// limit holds on (a server alternating failures and successes still logs once a second).
    pub fn succeeded(&mut self) {
        self.next_pause = Duration::ZERO;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_to_a_second_and_reset_after_a_success() {
        let mut b = AcceptBackoff::default();
        let t = Instant::now();
        let pauses: Vec<u64> = (0..10)
            .map(|_| b.failed(t).pause.as_millis() as u64)
            .collect();
        assert_eq!(pauses, [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
        b.succeeded();
        assert_eq!(b.failed(t).pause, FIRST_PAUSE);
        assert_eq!(b.failed(t).pause, Duration::from_millis(20));
    }

    #[test]
    fn logs_once_a_second_with_the_count_left_out() {
        let mut b = AcceptBackoff::default();
        let t = Instant::now();
        assert_eq!(b.failed(t).log, Some(0), "the first failure is logged");
        for i in 1..=500 {
            let at = t + Duration::from_millis(i);
            assert_eq!(b.failed(at).log, None, "inside the second");
        }
        b.succeeded();
        assert_eq!(b.failed(t + Duration::from_millis(900)).log, None);
        assert_eq!(
            b.failed(t + Duration::from_secs(1)).log,
            Some(501),
            "the next line says how many were left out"
        );
        assert_eq!(b.failed(t + Duration::from_millis(1500)).log, None);
        assert_eq!(b.failed(t + Duration::from_secs(3)).log, Some(1));
    }
}
