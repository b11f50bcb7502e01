//! systemd's readiness protocol (`sd_notify(3)`) without libsystemd.
//!
//! Under `Type=notify` systemd passes a datagram socket in `$NOTIFY_SOCKET` and waits for a
//! `READY=1` datagram before it considers the service started (and before units ordered after
//! it, such as the VMs, start). The broker sends it once every share's socket listens, so a
//! frontend started after fsjail never finds a missing socket.
//!
//! The variable names either a filesystem path or, with a leading `@`, a Linux abstract socket
//! (systemd uses a path; containers and test harnesses often use abstract names). Anything else
//! (`vsock:` addresses, relative paths) is refused with an error rather than ignored, because a
//! service that never reports readiness is killed by systemd after `TimeoutStartSec`.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

use thiserror::Error;

/// The environment variable systemd sets for `Type=notify` services.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

#[derive(Debug, Error)]
pub enum NotifyError {
    #[error("$NOTIFY_SOCKET={0:?}: only absolute paths and @abstract names are supported")]
    Unsupported(OsString),
    #[error("$NOTIFY_SOCKET={addr:?}: {source}")]
    Address { addr: OsString, source: io::Error },
    #[error("sending {state:?} to $NOTIFY_SOCKET={addr:?}: {source}")]
    Send {
        state: String,
        addr: OsString,
        source: io::Error,
    },
    #[error("sending {state:?} to $NOTIFY_SOCKET={addr:?}: short write ({sent} of {len} bytes)")]
    Short {
        state: String,
        addr: OsString,
        sent: usize,
        len: usize,
    },
}

/// Sends `state` (for example `"READY=1"`, `"RELOADING=1"`, `"STOPPING=1"`, or several
/// newline-separated assignments) to the service manager.
///
/// Returns `Ok(false)` when `$NOTIFY_SOCKET` is unset or empty: not running under systemd (or
/// not as `Type=notify`) is normal and not an error.
pub fn notify(state: &str) -> Result<bool, NotifyError> {
    match std::env::var_os(NOTIFY_SOCKET) {
        Some(addr) if !addr.is_empty() => notify_to(&addr, state).map(|()| true),
        _ => Ok(false),
    }
}

/// Sends `state` to the notification socket `addr` (a `$NOTIFY_SOCKET` value).
pub fn notify_to(addr: &OsStr, state: &str) -> Result<(), NotifyError> {
    let sockaddr = parse_addr(addr)?;
    let sock = UnixDatagram::unbound().map_err(|source| NotifyError::Send {
        state: state.to_owned(),
        addr: addr.to_owned(),
        source,
    })?;
    let sent = sock
        .send_to_addr(state.as_bytes(), &sockaddr)
        .map_err(|source| NotifyError::Send {
            state: state.to_owned(),
            addr: addr.to_owned(),
            source,
        })?;
    // A datagram is all or nothing in practice; check anyway so a truncated READY=1 is not
    // mistaken for success.
    if sent != state.len() {
        return Err(NotifyError::Short {
            state: state.to_owned(),
            addr: addr.to_owned(),
            sent,
            len: state.len(),
        });
    }
    Ok(())
}

fn parse_addr(addr: &OsStr) -> Result<SocketAddr, NotifyError> {
    let bytes = addr.as_bytes();
    let result = match bytes.first() {
        Some(b'@') => SocketAddr::from_abstract_name(&bytes[1..]),
        Some(b'/') => SocketAddr::from_pathname(addr),
        _ => return Err(NotifyError::Unsupported(addr.to_owned())),
    };
    result.map_err(|source| NotifyError::Address {
        addr: addr.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn recv(sock: &UnixDatagram) -> String {
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 256];
        let n = sock.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn path_socket_receives_ready() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).unwrap();
        notify_to(path.as_os_str(), "READY=1").unwrap();
        assert_eq!(recv(&server), "READY=1");
    }

    #[test]
    fn abstract_socket_receives_ready() {
        let name = format!("fsjail-sd-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let server = UnixDatagram::bind_addr(&addr).unwrap();
        notify_to(OsStr::new(&format!("@{name}")), "READY=1\nSTATUS=serving").unwrap();
        assert_eq!(recv(&server), "READY=1\nSTATUS=serving");
    }

    #[test]
    fn unsupported_and_missing_addresses_are_errors() {
        for bad in ["vsock:2:1234", "relative/path", ""] {
            let err = notify_to(OsStr::new(bad), "READY=1").unwrap_err();
            assert!(matches!(err, NotifyError::Unsupported(_)), "{bad}: {err}");
        }
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nobody-listens");
        let err = notify_to(missing.as_os_str(), "READY=1").unwrap_err();
        assert!(matches!(err, NotifyError::Send { .. }), "{err}");
        assert!(err.to_string().contains("nobody-listens"), "{err}");
    }
}
