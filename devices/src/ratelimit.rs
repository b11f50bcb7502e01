//! Rate limits for log lines a guest can trigger.
//!
//! A guest controls what arrives on its queues, so any line logged because of a bad request is a
//! line the guest can make us write as fast as it can post chains. Left alone, that lets one VM
//! fill the host's journal and drown every other service's messages. Such lines go through
//! [`guest_warn!`](crate::guest_warn) / [`guest_debug!`](crate::guest_debug) instead of
//! `log::warn!` / `log::debug!`: each call site gets its own budget of [`BURST`] lines per
//! [`INTERVAL`]; lines over budget are counted, not written, and the first line of the next
//! window says how many were dropped.
//!
//! Per call site rather than one global budget, so a flood of one kind of bad request cannot
//! hide a different error that happens meanwhile. The number of call sites is fixed at build
//! time, so the total stays bounded: at most `sites * (BURST + 1)` lines per `INTERVAL`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Lines one call site may write per [`INTERVAL`] (the Linux kernel's printk default).
pub const BURST: u32 = 10;
/// Length of one budget window (the Linux kernel's printk default).
pub const INTERVAL: Duration = Duration::from_secs(5);

/// A fixed-window budget: `burst` lines per `interval`.
///
/// A mutex rather than atomics: this is only reached for lines whose level is enabled, which
/// are already on a slow path (formatting, a write(2) to stderr or syslog).
pub struct RateLimit {
    burst: u32,
    interval: Duration,
    state: Mutex<Window>,
}

struct Window {
    start: Option<Instant>,
    passed: u32,
    suppressed: u64,
}

/// The verdict for one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Write the line. `suppressed` lines of this call site were dropped since the last line
    /// that was written; say so first when it is not 0.
    Log { suppressed: u64 },
    /// Over budget: drop the line (it has been counted).
    Drop,
}

impl RateLimit {
    /// A budget of `burst` lines per `interval`. `const` so that each call site can keep its
    /// own in a `static`.
    pub const fn new(burst: u32, interval: Duration) -> Self {
        RateLimit {
            burst,
            interval,
            state: Mutex::new(Window {
                start: None,
                passed: 0,
                suppressed: 0,
            }),
        }
    }

    /// Decides for one line at the current time.
    pub fn check(&self) -> Verdict {
        self.check_at(Instant::now())
    }

    /// Decides for one line at time `now` (separate so tests need not sleep).
    pub fn check_at(&self, now: Instant) -> Verdict {
        // A poisoned lock only means another thread panicked while logging; the counters are
        // still plain numbers, so keep using them.
        let mut w = match self.state.lock() {
            Ok(w) => w,
            Err(poisoned) => poisoned.into_inner(),
        };
        let expired = match w.start {
            None => true,
            Some(start) => now.saturating_duration_since(start) >= self.interval,
        };
        if expired {
            w.start = Some(now);
            w.passed = 0;
        }
        if w.passed < self.burst {
            w.passed += 1;
            let suppressed = std::mem::take(&mut w.suppressed);
            Verdict::Log { suppressed }
        } else {
            w.suppressed = w.suppressed.saturating_add(1);
            Verdict::Drop
        }
    }
}

/// Logs a guest-triggerable line at `level` through a per-call-site [`RateLimit`]. Use the
/// [`guest_warn!`](crate::guest_warn) and [`guest_debug!`](crate::guest_debug) shorthands.
///
/// The level is checked first, so a disabled level costs what `log::debug!` costs: nothing is
/// formatted and no lock is taken.
#[macro_export]
macro_rules! guest_log {
    ($level:expr, $($arg:tt)+) => {{
        let level: ::log::Level = $level;
        if ::log::log_enabled!(level) {
            static LIMIT: $crate::ratelimit::RateLimit =
                $crate::ratelimit::RateLimit::new($crate::ratelimit::BURST, $crate::ratelimit::INTERVAL);
            if let $crate::ratelimit::Verdict::Log { suppressed } = LIMIT.check() {
                if suppressed > 0 {
                    ::log::log!(
                        level,
                        "rate limit: {} similar guest-triggered lines from {}:{} were not logged",
                        suppressed,
                        file!(),
                        line!()
                    );
                }
                ::log::log!(level, $($arg)+);
            }
        }
    }};
}

/// `log::warn!` for lines a guest can trigger: rate-limited per call site (see the module docs).
#[macro_export]
macro_rules! guest_warn {
    ($($arg:tt)+) => { $crate::guest_log!(::log::Level::Warn, $($arg)+) };
}

/// `log::debug!` for lines a guest can trigger: rate-limited per call site (see the module docs).
#[macro_export]
macro_rules! guest_debug {
    ($($arg:tt)+) => { $crate::guest_log!(::log::Level::Debug, $($arg)+) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_drop_then_report() {
        let limit = RateLimit::new(3, Duration::from_secs(5));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limit.check_at(t0), Verdict::Log { suppressed: 0 });
        }
        for i in 1..=100 {
            assert_eq!(limit.check_at(t0 + Duration::from_millis(i)), Verdict::Drop);
        }
        // Next window: the first line carries the count of what was dropped, once.
        let t1 = t0 + Duration::from_secs(5);
        assert_eq!(limit.check_at(t1), Verdict::Log { suppressed: 100 });
        assert_eq!(limit.check_at(t1), Verdict::Log { suppressed: 0 });
    }

    #[test]
    fn bounded_under_flood() {
        let limit = RateLimit::new(BURST, INTERVAL);
        let t0 = Instant::now();
        // 10,000 lines spread over 12 seconds: three windows at most.
        let logged = (0..10_000u64)
            .filter(|i| {
                let t = t0 + Duration::from_micros(i * 1200);
                matches!(limit.check_at(t), Verdict::Log { .. })
            })
            .count();
        assert!(logged <= 3 * BURST as usize, "{logged} lines passed");
        assert!(logged >= BURST as usize);
    }

    #[test]
    fn clock_going_backwards_is_harmless() {
        let limit = RateLimit::new(1, Duration::from_secs(5));
        let t0 = Instant::now() + Duration::from_secs(10);
        assert_eq!(limit.check_at(t0), Verdict::Log { suppressed: 0 });
        // An earlier instant (another thread read the clock first) stays in the same window.
        assert_eq!(limit.check_at(t0 - Duration::from_secs(1)), Verdict::Drop);
    }

    /// Keeps the lines this module's macro test logs (other tests in the process may log too).
    struct Recorder(Mutex<Vec<(log::Level, String)>>);

    impl log::Log for Recorder {
        fn enabled(&self, _: &log::Metadata<'_>) -> bool {
            true
        }
        fn log(&self, record: &log::Record<'_>) {
            let line = record.args().to_string();
            if line.contains("ratelimit-test") {
                self.0.lock().unwrap().push((record.level(), line));
            }
        }
        fn flush(&self) {}
    }

    static RECORDER: Recorder = Recorder(Mutex::new(Vec::new()));

    /// Counts how often it is formatted.
    struct Counted<'a>(&'a std::sync::atomic::AtomicUsize);

    impl std::fmt::Display for Counted<'_> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            f.write_str("counted")
        }
    }

    #[test]
    fn macros_limit_each_call_site_and_skip_disabled_levels() {
        // The only logger any test in this crate installs.
        log::set_logger(&RECORDER).expect("no other logger in the devices tests");
        log::set_max_level(log::LevelFilter::Warn);
        let formatted = std::sync::atomic::AtomicUsize::new(0);
        for i in 0..100 {
            crate::guest_warn!("ratelimit-test bad chain {i}");
            crate::guest_debug!("ratelimit-test refused {}", Counted(&formatted));
        }
        // Two sites, each with its own budget: the other one is not held back by the flood.
        crate::guest_warn!("ratelimit-test another site");
        let lines = std::mem::take(&mut *RECORDER.0.lock().unwrap());
        let bad_chain: Vec<&String> = lines
            .iter()
            .filter(|(_, l)| l.contains("bad chain"))
            .map(|(_, l)| l)
            .collect();
        // Within one window: the first BURST lines of the flood, in order, and nothing else.
        let want: Vec<String> = (0..BURST)
            .map(|i| format!("ratelimit-test bad chain {i}"))
            .collect();
        assert_eq!(bad_chain, want.iter().collect::<Vec<_>>());
        assert!(lines.iter().all(|(level, _)| *level == log::Level::Warn));
        assert!(lines
            .iter()
            .any(|(_, l)| l == "ratelimit-test another site"));
        assert_eq!(lines.len(), BURST as usize + 1, "{lines:?}");
        // Debug is disabled: no line, and its arguments were never formatted.
        assert_eq!(formatted.load(std::sync::atomic::Ordering::Relaxed), 0);
    }
}
