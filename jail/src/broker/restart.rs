//! When to restart a failed worker: exponential backoff, and a limit on how often.
//!
//! Backoff starts at 100 ms and doubles with each failure in a row, up to 5 s; a worker that
//! stayed up for [`HEALTHY_UPTIME`] starts the series again. Independently, 5 failures within
//! any 60 s give up: a share that keeps crashing stays down and the broker says so, rather
//! than burning CPU and flooding the log.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

pub const FIRST_DELAY: Duration = Duration::from_millis(100);
pub const MAX_DELAY: Duration = Duration::from_secs(5);
pub const MAX_FAILURES: usize = 5;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// A worker up this long was healthy: its failure starts a new backoff series.
pub const HEALTHY_UPTIME: Duration = Duration::from_secs(10);

/// What to do after a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    RestartAfter(Duration),
    /// [`MAX_FAILURES`] failures within [`FAILURE_WINDOW`].
    GiveUp,
}

#[derive(Debug, Default)]
pub struct RestartTracker {
    failures: VecDeque<Instant>,
    in_a_row: u32,
}

impl RestartTracker {
    /// Records a failure at `now` of a worker that had been up for `uptime`.
    pub fn failed(&mut self, now: Instant, uptime: Duration) -> Decision {
        while self
            .failures
            .front()
            .is_some_and(|&t| now.duration_since(t) >= FAILURE_WINDOW)
        {
            self.failures.pop_front();
        }
        self.failures.push_back(now);
        if self.failures.len() >= MAX_FAILURES {
            return Decision::GiveUp;
        }
        if uptime >= HEALTHY_UPTIME {
            self.in_a_row = 0;
        }
        let delay = FIRST_DELAY
            .saturating_mul(1u32 << self.in_a_row.min(16))
            .min(MAX_DELAY);
        self.in_a_row = self.in_a_row.saturating_add(1);
        Decision::RestartAfter(delay)
    }

    /// Forgets the history (the share's settings changed: a new series).
    pub fn reset(&mut self) {
        *self = RestartTracker::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHORT: Duration = Duration::from_millis(10);

    #[test]
    fn doubles_then_gives_up_at_five_in_a_minute() {
        let mut t = RestartTracker::default();
        let start = Instant::now();
        let got: Vec<Decision> = (0..5)
            .map(|i| t.failed(start + Duration::from_secs(i), SHORT))
            .collect();
        assert_eq!(
            got,
            [
                Decision::RestartAfter(Duration::from_millis(100)),
                Decision::RestartAfter(Duration::from_millis(200)),
                Decision::RestartAfter(Duration::from_millis(400)),
                Decision::RestartAfter(Duration::from_millis(800)),
                Decision::GiveUp,
            ]
        );
    }

    #[test]
    fn old_failures_leave_the_window_and_delay_caps_at_five_seconds() {
        let mut t = RestartTracker::default();
        let start = Instant::now();
        let mut last = Decision::GiveUp;
        // One failure every 20 s: never 5 in 60 s, so it never gives up.
        for i in 0..12 {
            last = t.failed(start + Duration::from_secs(20 * i), SHORT);
            assert_ne!(last, Decision::GiveUp, "failure {i}");
        }
        assert_eq!(last, Decision::RestartAfter(MAX_DELAY));
    }

    #[test]
    fn a_healthy_run_restarts_the_series() {
        let mut t = RestartTracker::default();
        let start = Instant::now();
        t.failed(start, SHORT);
        t.failed(start + Duration::from_secs(1), SHORT);
        assert_eq!(
            t.failed(start + Duration::from_secs(30), HEALTHY_UPTIME),
            Decision::RestartAfter(FIRST_DELAY)
        );
    }
}
