//! What a request costs: CPU seconds (user + system) the backend and the driver spent per
//! 1,000 FUSE requests. Throughput on a shared machine swings with background load; the CPU a
//! request takes does not, and a faster-looking figure bought with a spinning thread shows up
//! here.
//!
//! The backend's CPU is read for every process in its tree (the broker, the jailed worker
//! below it, any helper) and every thread of each, from `/proc/PID/task/TID/schedstat`: the
//! time the scheduler ran the thread (user + system), in nanoseconds. `/proc/PID/stat`'s
//! utime + stime count the same in clock ticks (10 ms), too coarse for a short sample; it is
//! the fallback where schedstat is missing (and it also counts threads that already exited,
//! which the per-thread sum misses: none do while a figure is sampled). The driver's is this
//! process's own (the guest driver runs in it).

/// Clock ticks per second for /proc's utime and stime.
fn ticks_per_second() -> f64 {
    // SAFETY: sysconf reads a constant of the running system; no pointers are involved.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// utime + stime of one process (all its threads), in seconds; `None` when it is gone.
pub fn process_cpu_s(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    cpu_of_stat(&stat).map(|ticks| ticks as f64 / ticks_per_second())
}

/// utime + stime (fields 14 and 15) of a /proc stat line, in ticks.
fn cpu_of_stat(stat: &str) -> Option<u64> {
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses; cut at the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After the ')': state is field 3, so utime (14) is the 12th and stime the 13th.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Run time of every thread of `pid`, in seconds, from schedstat; `None` when it cannot be
/// read (the process is gone, or the kernel has no schedstat).
fn threads_cpu_s(pid: u32) -> Option<f64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut ns: u64 = 0;
    for t in tasks.flatten() {
        let Ok(text) = std::fs::read_to_string(t.path().join("schedstat")) else {
            // A thread that ended between the listing and the read ran no more.
            continue;
        };
        ns += text.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(ns as f64 / 1e9)
}

/// CPU seconds of one process, every thread.
fn cpu_s(pid: u32) -> Option<f64> {
    threads_cpu_s(pid).or_else(|| process_cpu_s(pid))
}

/// CPU seconds of `pid` and every process below it.
pub fn tree_cpu_s(pid: u32) -> f64 {
    crate::backend::descendants(pid)
        .into_iter()
        .filter_map(cpu_s)
        .sum()
}

/// CPU seconds of this process (the driver).
pub fn self_cpu_s() -> f64 {
    cpu_s(std::process::id()).unwrap_or(0.0)
}

/// What a subject can be asked, so its cost can be read around each sample.
pub struct Probe {
    /// The backend's top process (the tree below it is counted).
    pub backend_pid: u32,
    /// FUSE requests the driver submitted so far on this connection.
    pub requests: u64,
}

/// One reading, taken before or after a sample.
#[derive(Clone, Copy, Debug)]
pub struct Reading {
    backend_s: f64,
    driver_s: f64,
    requests: u64,
}

impl Reading {
    pub fn take(probe: &Probe) -> Reading {
        Reading {
            backend_s: tree_cpu_s(probe.backend_pid),
            driver_s: self_cpu_s(),
            requests: probe.requests,
        }
    }
}

/// The sum of the measured rounds' deltas.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Cost {
    pub backend_s: f64,
    pub driver_s: f64,
    pub requests: u64,
}

impl Cost {
    /// Adds the work between `before` and `after`.
    pub fn add(&mut self, before: Reading, after: Reading) {
        self.backend_s += (after.backend_s - before.backend_s).max(0.0);
        self.driver_s += (after.driver_s - before.driver_s).max(0.0);
        self.requests += after.requests.saturating_sub(before.requests);
    }

    /// Backend CPU seconds per 1,000 requests.
    pub fn backend_per_k(&self) -> Option<f64> {
        (self.requests > 0).then(|| 1000.0 * self.backend_s / self.requests as f64)
    }

    /// Driver CPU seconds per 1,000 requests.
    pub fn driver_per_k(&self) -> Option<f64> {
        (self.requests > 0).then(|| 1000.0 * self.driver_s / self.requests as f64)
    }
}

/// CPU per 1,000 requests for the table: milliseconds, 3 significant digits.
pub fn format_ms_per_k(s: f64) -> String {
    let ms = s * 1000.0;
    if ms >= 100.0 {
        format!("{ms:.0}")
    } else if ms >= 10.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_utime_and_stime() {
        let line = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 7 5 0 0 20 0 1 0 9 0 0";
        assert_eq!(cpu_of_stat(line), Some(12));
        assert_eq!(cpu_of_stat("garbage"), None);
    }

    #[test]
    fn our_own_cpu_is_counted() {
        let before = self_cpu_s();
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while t.elapsed().as_millis() < 150 {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        std::hint::black_box(x);
        assert!(self_cpu_s() > before, "a busy loop added no CPU time");
    }

    #[test]
    fn cost_per_thousand() {
        let mut c = Cost::default();
        let r = |b, d, n| Reading {
            backend_s: b,
            driver_s: d,
            requests: n,
        };
        c.add(r(1.0, 2.0, 100), r(1.5, 2.25, 1100));
        assert_eq!(c.backend_per_k(), Some(0.5));
        assert_eq!(c.driver_per_k(), Some(0.25));
        assert_eq!(Cost::default().backend_per_k(), None);
        assert_eq!(format_ms_per_k(0.5), "500");
    }
}
