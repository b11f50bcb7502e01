//! The process's logger: one line per record, to stderr or to the local syslog socket.
//!
//! Every line carries the pid and, when known, the share's tag, so the lines of several workers
//! can be told apart in one journal:
//!
//! ```text
//! stderr:  fsjail[4242] [vm1-data] WARN: dropping malformed descriptor chain 7: ...
//! syslog:  <28>May  1 12:00:00 fsjail[4242]: [vm1-data] WARN: dropping malformed ...
//! ```
//!
//! Syslog lines follow RFC 3164 the way glibc's `syslog(3)` writes them to `/dev/log` (no
//! hostname: the local daemon adds it), facility `daemon`. journald listens on `/dev/log` too, so
//! `journalctl -t fsjail` finds them. The socket is connected once at startup, before any jail is
//! entered, so logging keeps working after the filesystem view is cut down.
//!
//! Guests control much of what ends up in a log line (names, request fields). Control characters
//! are escaped so a file name with a newline cannot forge a second line, and lines from
//! `fuse-backend-rs` (which logs some failed guest requests at error level, beyond our reach) go
//! through a rate limit, like our own guest-triggered lines do (`devices::guest_warn!`).

use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

use devices::ratelimit::{RateLimit, Verdict, BURST, INTERVAL};
use log::{Level, LevelFilter, Log, Metadata, Record};
use thiserror::Error;

/// The local syslog socket (journald's and rsyslog's).
pub const SYSLOG_SOCKET: &str = "/dev/log";
/// The identifier syslog lines carry (`journalctl -t fsjail`).
const IDENT: &str = "fsjail";
/// syslog facility `daemon` (3), shifted as the PRI field wants it.
const FACILITY_DAEMON: u8 = 3 << 3;
/// Longest message we send in one datagram: far below the default socket buffer, so a huge
/// record (a long path in an error) is truncated rather than refused with EMSGSIZE.
const MAX_SYSLOG_MESSAGE: usize = 8 * 1024;

/// How the process logs.
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// Most verbose level written.
    pub level: LevelFilter,
    /// Send lines to the local syslog socket instead of stderr.
    pub syslog: bool,
    /// The share's tag, shown on every line (the broker's workers get it from the policy;
    /// `fsjail serve` uses the shared directory's name).
    pub tag: Option<String>,
}

#[derive(Debug, Error)]
pub enum LogError {
    #[error("--syslog: cannot reach the local syslog socket {}: {source}", path.display())]
    Syslog { path: PathBuf, source: io::Error },
}

struct Syslog {
    path: PathBuf,
    /// `None` after a failed reconnect; the next line tries again.
    sock: Mutex<Option<UnixDatagram>>,
}

struct Config {
    tag: Option<String>,
    syslog: Option<Syslog>,
}

struct Logger {
    config: RwLock<Config>,
    /// Shared budget for third-party lines a guest may trigger (see the module docs).
    third_party: RateLimit,
}

static LOGGER: Logger = Logger {
    config: RwLock::new(Config {
        tag: None,
        syslog: None,
    }),
    third_party: RateLimit::new(BURST, INTERVAL),
};

/// Installs the stderr logger at `level`, without a tag. Cannot fail. (Kept for the
/// subcommands that log to stderr without a share tag.)
#[allow(dead_code)]
pub fn init(level: LevelFilter) {
    // Without syslog there is nothing to connect, so init_with cannot fail.
    let _ = init_with(LogOptions {
        level,
        syslog: false,
        tag: None,
    });
}

/// Installs the logger. A second call (tests, or a subcommand re-initialising) replaces the
/// options; the `log` crate keeps the same logger object.
pub fn init_with(opts: LogOptions) -> Result<(), LogError> {
    let syslog = if opts.syslog {
        Some(Syslog::connect(Path::new(SYSLOG_SOCKET))?)
    } else {
        None
    };
    install(opts.level, opts.tag, syslog);
    Ok(())
}

fn install(level: LevelFilter, tag: Option<String>, syslog: Option<Syslog>) {
    match LOGGER.config.write() {
        Ok(mut c) => *c = Config { tag, syslog },
        Err(poisoned) => *poisoned.into_inner() = Config { tag, syslog },
    }
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

/// Set once the seccomp filter is about to go on: from then on a broken syslog connection is
/// not reopened (socket(2) and connect(2) are outside the filter), and lines fall back to
/// stderr instead.
static SEALED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Stops the logger from opening sockets; call before installing the seccomp filter.
pub fn seal() {
    SEALED.store(true, std::sync::atomic::Ordering::Release);
}

impl Syslog {
    fn connect(path: &Path) -> Result<Syslog, LogError> {
        let sock = UnixDatagram::unbound()
            .and_then(|s| s.connect(path).map(|()| s))
            .map_err(|source| LogError::Syslog {
                path: path.to_owned(),
                source,
            })?;
        Ok(Syslog {
            path: path.to_owned(),
            sock: Mutex::new(Some(sock)),
        })
    }

    /// Sends one datagram; on a broken connection (the syslog daemon restarted) reconnects
    /// once. Returns the error when the line could not be delivered, so the caller can fall
    /// back to stderr instead of losing it.
    fn send(&self, line: &[u8]) -> io::Result<()> {
        let mut guard = match self.sock.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(sock) = guard.as_ref() {
            match sock.send(line) {
                Ok(_) => return Ok(()),
                Err(e)
                    if !matches!(
                        e.raw_os_error(),
                        Some(libc::ECONNREFUSED | libc::ENOTCONN | libc::ECONNRESET)
                    ) =>
                {
                    return Err(e)
                }
                Err(_) => {}
            }
        }
        *guard = None;
        if SEALED.load(std::sync::atomic::Ordering::Acquire) {
            return Err(io::Error::from_raw_os_error(libc::ENOTCONN));
        }
        let sock = UnixDatagram::unbound()?;
        sock.connect(&self.path)?;
        sock.send(line)?;
        *guard = Some(sock);
        Ok(())
    }
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        if record.target().starts_with("fuse_backend_rs") {
            match self.third_party.check() {
                Verdict::Drop => return,
                Verdict::Log { suppressed } if suppressed > 0 => self.emit(
                    Level::Warn,
                    &format!("rate limit: {suppressed} lines from fuse_backend_rs were not logged"),
                ),
                Verdict::Log { .. } => {}
            }
        }
        let mut message = String::new();
        let _ = write!(message, "{}", record.args());
        self.emit(record.level(), &message);
    }

    fn flush(&self) {}
}

impl Logger {
    fn emit(&self, level: Level, message: &str) {
        let config = match self.config.read() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        let pid = std::process::id();
        let body = format_body(config.tag.as_deref(), level, message);
        if let Some(syslog) = &config.syslog {
            let line = syslog_line(level, pid, &body, &local_timestamp());
            if syslog.send(line.as_bytes()).is_ok() {
                return;
            }
        }
        // One write per line, so lines of concurrent threads do not interleave. Errors (a
        // closed stderr) are dropped: a logger must never take the process down.
        let line = format!("{IDENT}[{pid}] {body}\n");
        let _ = io::stderr().lock().write_all(line.as_bytes());
    }
}

/// `[tag] LEVEL: message`, with control characters escaped.
fn format_body(tag: Option<&str>, level: Level, message: &str) -> String {
    let mut out = String::with_capacity(message.len() + 32);
    if let Some(tag) = tag {
        out.push('[');
        escape_into(&mut out, tag);
        out.push_str("] ");
    }
    let _ = write!(out, "{level}: ");
    escape_into(&mut out, message);
    out
}

/// Appends `s` with every control character (newline included) written as `\xNN`, so one
/// record is always exactly one line.
fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        if c.is_control() {
            let _ = write!(out, "\\x{:02x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
}

/// syslog severity for a level (RFC 5424 numbering, which RFC 3164 shares).
fn severity(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// `<PRI>TIMESTAMP fsjail[PID]: BODY`, truncated to [`MAX_SYSLOG_MESSAGE`] on a char boundary.
fn syslog_line(level: Level, pid: u32, body: &str, timestamp: &str) -> String {
    let pri = FACILITY_DAEMON | severity(level);
    let mut end = body.len().min(MAX_SYSLOG_MESSAGE);
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    format!("<{pri}>{timestamp} {IDENT}[{pid}]: {}", &body[..end])
}

/// RFC 3164 timestamp (`Mmm dd hh:mm:ss`, day padded with a space) in local time; UTC when no
/// time zone data is reachable (inside a jail).
fn local_timestamp() -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    // SAFETY: time(NULL) only returns the clock.
    let now = unsafe { libc::time(std::ptr::null_mut()) };
    // SAFETY: an all-zero `tm` is a valid value of this plain C struct.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the duration of the call; localtime_r is the
    // thread-safe variant and writes only into `tm`.
    if unsafe { libc::localtime_r(&now, &mut tm) }.is_null() {
        return "Jan  1 00:00:00".to_owned();
    }
    let month = MONTHS.get(tm.tm_mon as usize).copied().unwrap_or("Jan");
    format!(
        "{month} {:>2} {:02}:{:02}:{:02}",
        tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn body_has_tag_level_and_no_control_characters() {
        let body = format_body(Some("vm1"), Level::Warn, "bad name \"a\nb\x1b[31m\"");
        assert_eq!(body, "[vm1] WARN: bad name \"a\\x0ab\\x1b[31m\"");
        assert_eq!(format_body(None, Level::Info, "up"), "INFO: up");
        assert!(!format_body(Some("t\nx"), Level::Info, "m").contains('\n'));
    }

    #[test]
    fn syslog_line_is_rfc3164() {
        let line = syslog_line(Level::Warn, 42, "[vm1] WARN: x", "May  1 12:00:00");
        // daemon (3) * 8 + warning (4) = 28
        assert_eq!(line, "<28>May  1 12:00:00 fsjail[42]: [vm1] WARN: x");
        assert!(syslog_line(Level::Error, 1, "m", "Jan  1 00:00:00").starts_with("<27>"));
        assert!(syslog_line(Level::Trace, 1, "m", "Jan  1 00:00:00").starts_with("<31>"));
        let long = "é".repeat(MAX_SYSLOG_MESSAGE);
        let line = syslog_line(Level::Info, 1, &long, "Jan  1 00:00:00");
        assert!(line.len() < MAX_SYSLOG_MESSAGE + 64);
    }

    #[test]
    fn timestamp_shape() {
        let ts = local_timestamp();
        assert_eq!(ts.len(), 15, "{ts:?}");
        assert_eq!(&ts[3..4], " ");
        assert_eq!(&ts[9..10], ":");
    }

    #[test]
    fn syslog_sink_delivers_datagrams_and_reconnects() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let server = UnixDatagram::bind(&path).unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let sink = Syslog::connect(&path).unwrap();
        sink.send(b"<30>Jan  1 00:00:00 fsjail[1]: one").unwrap();
        let mut buf = [0u8; 128];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"<30>Jan  1 00:00:00 fsjail[1]: one");

        // The daemon restarts: a new socket at the same path.
        drop(server);
        std::fs::remove_file(&path).unwrap();
        let server = UnixDatagram::bind(&path).unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        sink.send(b"two").unwrap();
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"two");
    }

    #[test]
    fn missing_syslog_socket_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no-log");
        let Err(err) = Syslog::connect(&path) else {
            panic!("connected to nothing")
        };
        let msg = err.to_string();
        assert!(msg.contains("--syslog") && msg.contains("no-log"), "{msg}");
    }
}
