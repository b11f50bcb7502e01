//! Adaptive polling of a request queue: after serving, the queue thread watches the avail ring
//! for a while (with guest notifications off) before it goes back to sleep, so a guest that
//! sends its next request soon does not pay a kick (an eventfd write, and for a real guest a
//! VM exit) and we do not pay a wake-up.
//!
//! How long is adapted as QEMU adapts its iothreads' poll time (poll-grow / poll-shrink): each
//! time the thread is woken by a kick, the time it slept says whether polling would have paid.
//! A sleep shorter than the ceiling means a longer poll would have caught the request: the
//! window grows (from 4 µs, doubling, up to the ceiling). A sleep longer than the ceiling means
//! the guest is idle or slow: the window drops to zero, so a quiet queue costs nothing. A
//! thread never polls unless it has just served a request, so an idle worker uses no CPU.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The window the first grow step gives (QEMU's starting value too).
const START: Duration = Duration::from_micros(4);

#[derive(Debug, Default)]
struct State {
    window: Duration,
    asleep_since: Option<Instant>,
}

/// One queue's polling state. Used by that queue's thread only; the lock is never contended.
#[derive(Debug)]
pub struct Poller {
    max: Duration,
    state: Mutex<State>,
}

impl Poller {
    /// A poller whose window never exceeds `max_us` microseconds; 0 turns polling off.
    pub fn new(max_us: u32) -> Poller {
        Poller {
            max: Duration::from_micros(u64::from(max_us)),
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The thread was woken (by a kick): adapt the window to how long it slept.
    pub fn woken(&self) {
        if self.max.is_zero() {
            return;
        }
        let mut st = self.state();
        let Some(since) = st.asleep_since.take() else {
            return;
        };
        let slept = since.elapsed();
        st.window = adapt(st.window, slept, self.max);
    }

    /// The thread goes back to sleep now.
    pub fn sleeping(&self) {
        if !self.max.is_zero() {
            self.state().asleep_since = Some(Instant::now());
        }
    }

    /// How long to poll before sleeping.
    pub fn window(&self) -> Duration {
        if self.max.is_zero() {
            return Duration::ZERO;
        }
        self.state().window
    }
}

/// The next window after a sleep of `slept`.
fn adapt(window: Duration, slept: Duration, max: Duration) -> Duration {
    if slept <= window {
        // Polling a little longer would have caught it: keep polling as long as this.
        window
    } else if slept > max {
        Duration::ZERO
    } else if window.is_zero() {
        START.min(max)
    } else {
        (window * 2).min(max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: Duration = Duration::from_micros(1);

    #[test]
    fn grows_while_it_pays_and_drops_to_zero_when_it_does_not() {
        let max = 50 * US;
        let mut w = Duration::ZERO;
        w = adapt(w, 10 * US, max);
        assert_eq!(w, 4 * US);
        w = adapt(w, 10 * US, max);
        assert_eq!(w, 8 * US);
        w = adapt(w, 10 * US, max);
        assert_eq!(w, 16 * US);
        w = adapt(w, 10 * US, max);
        assert_eq!(w, 16 * US, "a sleep inside the window keeps it");
        w = adapt(w, 40 * US, max);
        w = adapt(w, 40 * US, max);
        assert_eq!(w, max, "capped at the ceiling");
        assert_eq!(adapt(w, 1000 * US, max), Duration::ZERO);
    }

    #[test]
    fn off_means_off() {
        let p = Poller::new(0);
        p.sleeping();
        p.woken();
        assert_eq!(p.window(), Duration::ZERO);
        let p = Poller::new(100);
        p.sleeping();
        p.woken();
        assert!(
            p.window() > Duration::ZERO,
            "a short sleep grows the window"
        );
    }
}
