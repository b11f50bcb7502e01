//! A one-line progress bar on stderr, redrawn with `\r`.

use std::io::Write;
use std::time::Instant;

const WIDTH: usize = 28;

/// Counts finished steps (one per sample) out of a total known up front.
pub struct Progress {
    total: usize,
    done: usize,
    started: Instant,
    enabled: bool,
    last_len: usize,
}

impl Progress {
    pub fn new(total: usize, enabled: bool) -> Self {
        Progress {
            total: total.max(1),
            done: 0,
            started: Instant::now(),
            enabled,
            last_len: 0,
        }
    }

    /// Shows what is running now.
    pub fn show(&mut self, what: &str) {
        if !self.enabled {
            return;
        }
        let filled = WIDTH * self.done.min(self.total) / self.total;
        let bar: String = (0..WIDTH)
            .map(|i| if i < filled { '#' } else { '.' })
            .collect();
        let line = format!(
            "[{bar}] {:>3}% {:>4.0}s  {what}",
            100 * self.done / self.total,
            self.started.elapsed().as_secs_f64()
        );
        let pad = self.last_len.saturating_sub(line.chars().count());
        self.last_len = line.chars().count();
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r{line}{:pad$}", "");
        let _ = err.flush();
    }

    /// Marks `n` steps finished.
    pub fn advance(&mut self, n: usize) {
        self.done += n;
    }

    /// Clears the line.
    pub fn finish(&mut self) {
        if self.enabled && self.last_len > 0 {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r{:w$}\r", "", w = self.last_len);
            let _ = err.flush();
            self.last_len = 0;
        }
    }

    /// Prints a message on its own line without losing the bar.
    pub fn note(&mut self, msg: &str) {
        self.finish();
        eprintln!("{msg}");
    }
}
