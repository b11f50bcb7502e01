//! Process and socket setup for `fsjail serve` that virtiofsd's command line asks for: a
//! listening socket inherited from the caller (`--fd`), the socket's group (`--socket-group`),
//! and the open-file limit (`--rlimit-nofile`).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use thiserror::Error;
use vhost::vhost_user::Listener;

#[derive(Debug, Error)]
pub enum SetupError {
    #[error("--fd {0}: descriptors 0 to 2 are stdin, stdout and stderr; pass a listening socket on 3 or above")]
    FdStdio(i32),
    #[error("--fd {fd}: {source}")]
    FdInvalid { fd: i32, source: io::Error },
    #[error("--fd {fd}: not a {what}")]
    FdNotListening { fd: i32, what: &'static str },
    #[error("--socket-group {group:?}: no such group")]
    NoSuchGroup { group: String },
    #[error("--socket-group {group:?}: looking the group up: {source}")]
    GroupLookup { group: String, source: io::Error },
    #[error("--socket-group {group:?}: setting the group of {}: {source}", path.display())]
    Chown {
        group: String,
        path: PathBuf,
        source: io::Error,
    },
    #[error("--rlimit-nofile {limit}: {source}")]
    Rlimit { limit: u64, source: io::Error },
}

/// Takes over an inherited descriptor that must be a listening `AF_UNIX` stream socket (what
/// libvirt and Kata hand virtiofsd with `--fd`). Checked up front so a wrong number fails at
/// startup with the number in the message, not at the first accept.
pub fn listener_from_fd(fd: i32) -> Result<Listener, SetupError> {
    if (0..=2).contains(&fd) {
        return Err(SetupError::FdStdio(fd));
    }
    // SAFETY: F_GETFD only reads the descriptor's flags; an invalid number yields EBADF.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(SetupError::FdInvalid {
            fd,
            source: io::Error::last_os_error(),
        });
    }
    let domain = sockopt(fd, libc::SO_DOMAIN)?;
    if domain != libc::AF_UNIX {
        return Err(SetupError::FdNotListening {
            fd,
            what: "unix domain socket",
        });
    }
    if sockopt(fd, libc::SO_TYPE)? != libc::SOCK_STREAM {
        return Err(SetupError::FdNotListening {
            fd,
            what: "stream socket",
        });
    }
    if sockopt(fd, libc::SO_ACCEPTCONN)? != 1 {
        return Err(SetupError::FdNotListening {
            fd,
            what: "listening socket (listen(2) was not called)",
        });
    }
    // SAFETY: the descriptor is open (F_GETFD succeeded) and was inherited from our parent, so
    // nothing else in this process owns it; from here on the OwnedFd is its only owner.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // Keep the socket out of anything we might exec later; the caller cleared FD_CLOEXEC only
    // so that it reached us.
    // SAFETY: F_SETFD on a descriptor we own, with a valid flag value.
    if unsafe { libc::fcntl(owned.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
        return Err(SetupError::FdInvalid {
            fd,
            source: io::Error::last_os_error(),
        });
    }
    Ok(Listener::from(UnixListener::from(owned)))
}

fn sockopt(fd: i32, opt: libc::c_int) -> Result<libc::c_int, SetupError> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: value and len point to live locals of the size getsockopt is told about.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        let source = io::Error::last_os_error();
        return Err(if source.raw_os_error() == Some(libc::ENOTSOCK) {
            SetupError::FdNotListening { fd, what: "socket" }
        } else {
            SetupError::FdInvalid { fd, source }
        });
    }
    Ok(value)
}

/// Gives the socket at `path` to `group` (a name or a numeric gid) with mode 0660, so a
/// frontend running as another user in that group (QEMU as `qemu:kvm`) can connect and nobody
/// else can.
pub fn set_socket_group(path: &Path, group: &str) -> Result<(), SetupError> {
    let gid = resolve_group(group)?;
    let chown_err = |source| SetupError::Chown {
        group: group.to_owned(),
        path: path.to_owned(),
        source,
    };
    std::os::unix::fs::chown(path, None, Some(gid)).map_err(chown_err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(chown_err)?;
    Ok(())
}

fn resolve_group(group: &str) -> Result<u32, SetupError> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    let no_such = || SetupError::NoSuchGroup {
        group: group.to_owned(),
    };
    let name = CString::new(group).map_err(|_| no_such())?;
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: an all-zero `group` is a valid value of this plain C struct.
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::group = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call; getgrnam_r writes strings into `buf`
        // (whose real length it is told) and sets `result` to `&grp` or null.
        let rc = unsafe {
            libc::getgrnam_r(
                name.as_ptr(),
                &mut grp,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        if rc == libc::ERANGE && buf.len() < (1 << 20) {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if rc != 0 {
            return Err(SetupError::GroupLookup {
                group: group.to_owned(),
                source: io::Error::from_raw_os_error(rc),
            });
        }
        if result.is_null() {
            return Err(no_such());
        }
        return Ok(grp.gr_gid);
    }
}

/// Applies `--rlimit-nofile`. `Some(0)` leaves the limit alone (virtiofsd's meaning);
/// `Some(n)` sets soft and hard limit to `n` (raising the hard limit needs
/// CAP_SYS_RESOURCE); `None` raises the soft limit to the hard limit, which needs no privilege:
/// the passthrough filesystem keeps one descriptor per inode the guest knows, and the usual
/// soft limit of 1024 is soon reached. Returns the soft limit now in force.
pub fn apply_rlimit_nofile(limit: Option<u64>) -> Result<u64, SetupError> {
    let mut current = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    let requested = limit.unwrap_or(0);
    let fail = |source| SetupError::Rlimit {
        limit: requested,
        source,
    };
    // SAFETY: `current` is a live rlimit for getrlimit to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut current) } < 0 {
        return Err(fail(io::Error::last_os_error()));
    }
    let wanted = match limit {
        Some(0) => return Ok(current.rlim_cur),
        Some(n) => libc::rlimit {
            rlim_cur: n,
            rlim_max: n,
        },
        None if current.rlim_cur >= current.rlim_max => return Ok(current.rlim_cur),
        None => libc::rlimit {
            rlim_cur: current.rlim_max,
            rlim_max: current.rlim_max,
        },
    };
    // SAFETY: `wanted` is a valid rlimit; setrlimit only reads it.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) } < 0 {
        return Err(fail(io::Error::last_os_error()));
    }
    Ok(wanted.rlim_cur)
}

/// The tag `fsjail serve`'s log lines carry: the shared directory's name (a serve process has
/// one share; the broker's workers use the policy's tag instead).
pub fn share_tag(shared_dir: &Path) -> String {
    shared_dir
        .file_name()
        .map(|n| String::from_utf8_lossy(n.as_bytes()).into_owned())
        .unwrap_or_else(|| shared_dir.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::IntoRawFd;

    #[test]
    fn fd_checks_name_the_descriptor() {
        let Err(e) = listener_from_fd(1) else {
            panic!("stdout accepted")
        };
        assert!(e.to_string().contains("--fd 1"), "{e}");
        let Err(e) = listener_from_fd(987_654) else {
            panic!("closed fd accepted")
        };
        assert!(e.to_string().contains("--fd 987654"), "{e}");

        let file = tempfile::tempfile().unwrap().into_raw_fd();
        let Err(e) = listener_from_fd(file) else {
            panic!("file accepted")
        };
        assert!(e.to_string().contains("not a socket"), "{e}");
        // SAFETY: `file` came from into_raw_fd above and was not taken over on error.
        drop(unsafe { OwnedFd::from_raw_fd(file) });

        let dgram = std::os::unix::net::UnixDatagram::unbound()
            .unwrap()
            .into_raw_fd();
        let Err(e) = listener_from_fd(dgram) else {
            panic!("datagram accepted")
        };
        assert!(e.to_string().contains("stream"), "{e}");
        // SAFETY: as above.
        drop(unsafe { OwnedFd::from_raw_fd(dgram) });
    }

    #[test]
    fn listening_socket_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let listener = UnixListener::bind(dir.path().join("s")).unwrap();
        let fd = listener.into_raw_fd();
        let taken = listener_from_fd(fd).unwrap();
        assert_eq!(taken.as_raw_fd(), fd);
        // SAFETY: F_GETFD only reads flags of a descriptor `taken` owns.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        assert_eq!(flags & libc::FD_CLOEXEC, libc::FD_CLOEXEC);
    }

    #[test]
    fn socket_group_numeric_and_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let _l = UnixListener::bind(&path).unwrap();
        // SAFETY: getegid has no preconditions.
        let gid = unsafe { libc::getegid() };
        set_socket_group(&path, &gid.to_string()).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o660);
        let err = set_socket_group(&path, "no-such-group-fsjail").unwrap_err();
        assert!(err.to_string().contains("no-such-group-fsjail"), "{err}");
    }

    #[test]
    fn rlimit_zero_leaves_the_limit_alone() {
        let before = apply_rlimit_nofile(Some(0)).unwrap();
        assert_eq!(apply_rlimit_nofile(Some(0)).unwrap(), before);
        assert!(apply_rlimit_nofile(None).unwrap() >= before);
    }

    #[test]
    fn share_tag_is_the_directory_name() {
        assert_eq!(share_tag(Path::new("/srv/vm1-data")), "vm1-data");
        assert_eq!(share_tag(Path::new("/")), "/");
    }
}
