//! One message with file descriptors over a `SOCK_SEQPACKET` socket (`SCM_RIGHTS`).
//!
//! The broker hands each worker its listening socket this way; a message carries up to `MAX_FDS`
//! descriptors, so it can pass more (a DAX memfd, a log pipe). Both ends are ours, but the
//! receiving end is the jailed worker and the sending end is the broker that trusts nothing the
//! worker says, so both directions check everything: a message that does not fit the buffer
//! (`MSG_TRUNC`), descriptors that did not fit the control buffer (`MSG_CTRUNC`), a control message
//! that is not `SCM_RIGHTS`, or a number of descriptors other than the one expected is an error,
//! and any descriptor that did arrive is closed rather than leaked.
//!
//! Received descriptors are close-on-exec from the moment they exist (`MSG_CMSG_CLOEXEC`), so a
//! concurrent `exec` elsewhere in the process can never inherit one.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::socket::{self, ControlMessage, ControlMessageOwned, MsgFlags};
use thiserror::Error;

/// Largest payload one message may carry. The handover (a `ShareConfig` as JSON) is well under
/// a kilobyte; the bound keeps a confused peer from making us allocate without limit.
pub const MAX_PAYLOAD: usize = 64 * 1024;
/// Most descriptors one message may carry. The kernel allows 253 (`SCM_MAX_FD`); we never need
/// more than a few.
pub const MAX_FDS: usize = 8;
/// The kernel's limit on descriptors in one `SCM_RIGHTS` message (`include/net/scm.h`).
const SCM_MAX_FD: usize = 253;

#[derive(Debug, Error)]
pub enum FdPassError {
    #[error("message of {len} bytes is larger than the {MAX_PAYLOAD}-byte limit")]
    PayloadTooLarge { len: usize },
    #[error("{count} descriptors in one message; at most {MAX_FDS}")]
    TooManyFds { count: usize },
    #[error("sendmsg on the control socket: {0}")]
    Send(Errno),
    #[error(
        "sendmsg sent {sent} of {len} bytes (a SOCK_SEQPACKET socket must send all or nothing)"
    )]
    ShortSend { sent: usize, len: usize },
    #[error("recvmsg on the control socket: {0}")]
    Recv(Errno),
    #[error("the peer closed the control socket")]
    Closed,
    #[error("message truncated: larger than the {limit}-byte buffer")]
    Truncated { limit: usize },
    #[error("descriptors truncated: the peer sent more than {limit}")]
    FdsTruncated { limit: usize },
    #[error("unexpected control message on the control socket: {0}")]
    UnexpectedControl(String),
    #[error("expected {expected} descriptors, received {received}")]
    FdCount { expected: usize, received: usize },
}

/// Sends `payload` and `fds` as one message. Blocks until the kernel accepts it.
pub fn send(
    sock: BorrowedFd<'_>,
    payload: &[u8],
    fds: &[BorrowedFd<'_>],
) -> Result<(), FdPassError> {
    if payload.len() > MAX_PAYLOAD {
        return Err(FdPassError::PayloadTooLarge { len: payload.len() });
    }
    if fds.len() > MAX_FDS {
        return Err(FdPassError::TooManyFds { count: fds.len() });
    }
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let rights = [ControlMessage::ScmRights(&raw)];
    // An empty SCM_RIGHTS message is legal but pointless; send no control message instead.
    let cmsgs: &[ControlMessage<'_>] = if raw.is_empty() { &[] } else { &rights };
    let iov = [IoSlice::new(payload)];
    let sent = loop {
        match socket::sendmsg::<()>(sock.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None) {
            Ok(n) => break n,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(FdPassError::Send(e)),
        }
    };
    if sent != payload.len() {
        return Err(FdPassError::ShortSend {
            sent,
            len: payload.len(),
        });
    }
    Ok(())
}

/// Receives one message of at most `max_payload` bytes carrying exactly `expected_fds`
/// descriptors. A zero-length read is the peer closing the socket ([`FdPassError::Closed`]), so
/// callers must not send empty messages.
pub fn recv(
    sock: BorrowedFd<'_>,
    max_payload: usize,
    expected_fds: usize,
) -> Result<(Vec<u8>, Vec<OwnedFd>), FdPassError> {
    let max_payload = max_payload.min(MAX_PAYLOAD);
    let mut buf = vec![0u8; max_payload];
    // Room for the kernel's per-message maximum (SCM_MAX_FD), not just what we expect: then
    // MSG_CTRUNC cannot happen, and a peer sending too many is reported as a wrong count with
    // every one of its descriptors owned (and closed) by us. With a smaller buffer the kernel
    // would install the ones that fit and set MSG_CTRUNC, and nix refuses to walk a truncated
    // buffer, which would leak them.
    let mut cmsg_buf = nix::cmsg_space!([RawFd; SCM_MAX_FD]);
    let mut iov = [IoSliceMut::new(&mut buf)];
    let msg = loop {
        match socket::recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg_buf),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(m) => break m,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(FdPassError::Recv(e)),
        }
    };
    let len = msg.bytes;
    let flags = msg.flags;

    // Take ownership of every descriptor that arrived before checking anything else, so that
    // every error path below closes them.
    let mut fds = Vec::new();
    let mut unexpected = None;
    let cmsgs = match msg.cmsgs() {
        Ok(c) => c,
        // MSG_CTRUNC: cannot happen with a buffer for SCM_MAX_FD (see above).
        Err(_) => return Err(FdPassError::FdsTruncated { limit: SCM_MAX_FD }),
    };
    for cmsg in cmsgs {
        match cmsg {
            ControlMessageOwned::ScmRights(raw) => {
                for fd in raw {
                    // SAFETY: the kernel just installed `fd` in our table for this message;
                    // nothing else in the process knows the number, so we are its only owner.
                    fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
                }
            }
            other => unexpected = Some(format!("{other:?}")),
        }
    }
    if let Some(what) = unexpected {
        return Err(FdPassError::UnexpectedControl(what));
    }
    if flags.contains(MsgFlags::MSG_CTRUNC) {
        return Err(FdPassError::FdsTruncated { limit: SCM_MAX_FD });
    }
    if flags.contains(MsgFlags::MSG_TRUNC) {
        return Err(FdPassError::Truncated { limit: max_payload });
    }
    if len == 0 && fds.is_empty() {
        return Err(FdPassError::Closed);
    }
    if fds.len() != expected_fds {
        return Err(FdPassError::FdCount {
            expected: expected_fds,
            received: fds.len(),
        });
    }
    buf.truncate(len);
    Ok((buf, fds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    use std::io::{Read, Write};
    use std::os::fd::AsFd;

    fn pair() -> (OwnedFd, OwnedFd) {
        socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap()
    }

    fn is_cloexec(fd: &OwnedFd) -> bool {
        let flags = nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFD).unwrap();
        flags & libc::FD_CLOEXEC != 0
    }

    #[test]
    fn payload_and_fd_round_trip() {
        let (a, b) = pair();
        let (r, w) = nix::unistd::pipe().unwrap();
        send(a.as_fd(), b"hello", &[w.as_fd()]).unwrap();
        drop(w);
        let (data, mut fds) = recv(b.as_fd(), 100, 1).unwrap();
        assert_eq!(data, b"hello");
        assert_eq!(fds.len(), 1);
        assert!(is_cloexec(&fds[0]));
        let mut w2 = std::fs::File::from(fds.remove(0));
        w2.write_all(b"x").unwrap();
        drop(w2);
        let mut got = String::new();
        std::fs::File::from(r).read_to_string(&mut got).unwrap();
        assert_eq!(got, "x");
    }

    #[test]
    fn wrong_fd_count_is_an_error() {
        let (a, b) = pair();
        let (r, w) = nix::unistd::pipe().unwrap();
        send(a.as_fd(), b"two", &[r.as_fd(), w.as_fd()]).unwrap();
        let err = recv(b.as_fd(), 100, 1).unwrap_err();
        assert!(
            matches!(
                err,
                FdPassError::FdCount {
                    expected: 1,
                    received: 2
                }
            ),
            "{err}"
        );
        send(a.as_fd(), b"none", &[]).unwrap();
        let err = recv(b.as_fd(), 100, 1).unwrap_err();
        assert!(
            matches!(
                err,
                FdPassError::FdCount {
                    expected: 1,
                    received: 0
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn oversized_message_is_truncated_error() {
        let (a, b) = pair();
        send(a.as_fd(), &[7u8; 200], &[]).unwrap();
        let err = recv(b.as_fd(), 100, 0).unwrap_err();
        assert!(
            matches!(err, FdPassError::Truncated { limit: 100 }),
            "{err}"
        );
    }

    #[test]
    fn limits_on_send() {
        let (a, _b) = pair();
        let big = vec![0u8; MAX_PAYLOAD + 1];
        assert!(matches!(
            send(a.as_fd(), &big, &[]),
            Err(FdPassError::PayloadTooLarge { .. })
        ));
        let fds: Vec<_> = (0..=MAX_FDS).map(|_| a.as_fd()).collect();
        assert!(matches!(
            send(a.as_fd(), b"x", &fds),
            Err(FdPassError::TooManyFds { .. })
        ));
    }

    #[test]
    fn closed_peer() {
        let (a, b) = pair();
        drop(a);
        assert!(matches!(recv(b.as_fd(), 100, 0), Err(FdPassError::Closed)));
    }
}
