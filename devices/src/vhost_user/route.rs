//! Which requests go to the request pool, and what they are ordered on.
//!
//! Requests that may block for long go to the pool, so the queue thread keeps answering the
//! cheap ones: FSYNC, FSYNCDIR, SYNCFS, FALLOCATE, COPY_FILE_RANGE, READ and WRITE of at least
//! [`LARGE_IO`] bytes, and READDIR/READDIRPLUS past the first reply of a directory (a
//! directory that needs more than one reply is a large one; the first reply is bounded by the
//! guest's buffer). Everything else is cheap and stays on the queue thread, unless a request
//! it is ordered behind is still in the pool (see [`super::order`]): then it goes to the pool
//! too, behind that one.
//!
//! The decision is made on a peeked copy of the request, which the guest could change before
//! the server reads it again. That only changes where and in which order the guest's own
//! requests run, never what a request may do: the server checks what it reads, as always.

use std::mem::size_of;

use vm_memory::ByteValued;

use super::order::{Keys, Mode};
use crate::fuse::abi::{
    BatchForgetIn, CopyFileRangeIn, InHeader, LinkIn, Opcode, ReadIn, RenameIn, WriteIn,
};

/// READ and WRITE of at least this many bytes go to the pool. Smaller ones cost less than the
/// hand-off to another thread (two wake-ups).
pub const LARGE_IO: u32 = 128 << 10;

/// Bytes of the request peeked to decide: the header and the largest opcode struct routing
/// looks at.
pub const PEEK: usize = size_of::<InHeader>() + size_of::<CopyFileRangeIn>();

/// Where a request is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// On the queue thread, now, unless its keys are busy in the pool.
    Inline(Keys, Mode),
    /// On the pool.
    Pool(Keys, Mode),
    /// On the queue thread once the pool has nothing outstanding (INIT, DESTROY).
    Barrier,
    /// FORGET, BATCH_FORGET: on the queue thread, after the pool drained if a node they name
    /// is busy there (see [`forgets_busy`]).
    Forget,
    /// On the queue thread with no ordering (INTERRUPT, NOTIFY_REPLY, requests too short to
    /// classify: the server answers those with an error).
    Free,
}

/// Classifies a request from its first bytes (`head`, up to [`PEEK`] of them).
pub fn route(head: &[u8]) -> Route {
    let Some(h) = obj::<InHeader>(head, 0) else {
        return Route::Free;
    };
    let node = h.nodeid;
    let body = size_of::<InHeader>();
    let Some(op) = Opcode::from_u32(h.opcode) else {
        return Route::Free;
    };
    use Mode::{Exclusive, Shared};
    use Opcode::*;
    let one = Keys::one(node);
    match op {
        Init | Destroy => Route::Barrier,
        Forget | BatchForget => Route::Forget,
        Interrupt | NotifyReply => Route::Free,
        Fsync | Fsyncdir | Syncfs => Route::Pool(one, Shared),
        Fallocate => Route::Pool(one, Exclusive),
        CopyFileRange => match obj::<CopyFileRangeIn>(head, body) {
            Some(c) => Route::Pool(Keys::two(node, c.nodeid_out), Exclusive),
            None => Route::Free,
        },
        Read => match obj::<ReadIn>(head, body) {
            Some(r) if r.size >= LARGE_IO => Route::Pool(one, Shared),
            Some(_) => Route::Inline(one, Shared),
            None => Route::Free,
        },
        Write => match obj::<WriteIn>(head, body) {
            Some(w) if w.size >= LARGE_IO => Route::Pool(one, Exclusive),
            Some(_) => Route::Inline(one, Exclusive),
            None => Route::Free,
        },
        // READDIR's body is a ReadIn; past offset 0 the directory needed more than one reply.
        // Exclusive: the calls of one directory handle share its position.
        Readdir | Readdirplus => match obj::<ReadIn>(head, body) {
            Some(r) if r.offset != 0 => Route::Pool(one, Exclusive),
            Some(_) => Route::Inline(one, Exclusive),
            None => Route::Free,
        },
        Rename | Rename2 => match obj::<RenameIn>(head, body) {
            Some(r) => Route::Inline(Keys::two(node, r.newdir), Exclusive),
            None => Route::Free,
        },
        Link => match obj::<LinkIn>(head, body) {
            Some(l) => Route::Inline(Keys::two(node, l.oldnodeid), Exclusive),
            None => Route::Free,
        },
        Lookup | Getattr | Readlink | Getxattr | Listxattr | Access | Statfs | Lseek | Getlk
        | Bmap | Poll | Statx => Route::Inline(one, Shared),
        Setattr | Symlink | Mknod | Mkdir | Unlink | Rmdir | Open | Opendir | Release
        | Releasedir | Setxattr | Removexattr | Flush | Setlk | Setlkw | Create | Ioctl
        | Setupmapping | Removemapping | Tmpfile => Route::Inline(one, Exclusive),
    }
}

/// The nodes a FORGET or BATCH_FORGET names, from the whole request `bytes` (its entries are
/// peeked one by one); `busy` says whether the pool has requests outstanding on a node. True
/// when one named node is busy: the forget then waits for the pool to drain, so no request
/// in the pool loses its node before it ran. (A guest never forgets a node it still has
/// requests in flight on, so the wait is for misbehaving guests only.)
pub fn forgets_busy(bytes: &[u8], busy: impl Fn(u64) -> bool) -> bool {
    let Some(h) = obj::<InHeader>(bytes, 0) else {
        return false;
    };
    match Opcode::from_u32(h.opcode) {
        Some(Opcode::Forget) => busy(h.nodeid),
        Some(Opcode::BatchForget) => {
            let start = size_of::<InHeader>() + size_of::<BatchForgetIn>();
            // Each entry is { nodeid: u64, nlookup: u64 }.
            bytes
                .get(start..)
                .unwrap_or(&[])
                .chunks_exact(16)
                .any(|e| busy(u64::from_ne_bytes(e[..8].try_into().unwrap_or([0; 8]))))
        }
        _ => false,
    }
}

/// A `T` at `at` in `bytes`, if there are enough of them.
fn obj<T: ByteValued>(bytes: &[u8], at: usize) -> Option<T> {
    let slice = bytes.get(at..at.checked_add(size_of::<T>())?)?;
    T::from_slice(slice).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<T: ByteValued>(opcode: Opcode, nodeid: u64, body: T) -> Vec<u8> {
        let h = InHeader {
            opcode: opcode as u32,
            nodeid,
            ..Default::default()
        };
        let mut v = h.as_slice().to_vec();
        v.extend_from_slice(body.as_slice());
        v
    }

    #[test]
    fn slow_ones_go_to_the_pool() {
        let big = ReadIn {
            size: LARGE_IO,
            ..Default::default()
        };
        let small = ReadIn {
            size: 4096,
            ..Default::default()
        };
        assert_eq!(
            route(&req(Opcode::Read, 3, big)),
            Route::Pool(Keys::one(3), Mode::Shared)
        );
        assert_eq!(
            route(&req(Opcode::Read, 3, small)),
            Route::Inline(Keys::one(3), Mode::Shared)
        );
        assert!(matches!(
            route(&req(Opcode::Fsync, 3, [0u8; 16])),
            Route::Pool(_, Mode::Shared)
        ));
        let w = WriteIn {
            size: 1 << 20,
            ..Default::default()
        };
        assert_eq!(
            route(&req(Opcode::Write, 9, w)),
            Route::Pool(Keys::one(9), Mode::Exclusive)
        );
        let c = CopyFileRangeIn {
            nodeid_out: 4,
            ..Default::default()
        };
        assert_eq!(
            route(&req(Opcode::CopyFileRange, 3, c)),
            Route::Pool(Keys::two(3, 4), Mode::Exclusive)
        );
        let later = ReadIn {
            offset: 77,
            size: 4096,
            ..Default::default()
        };
        assert!(matches!(
            route(&req(Opcode::Readdirplus, 1, later)),
            Route::Pool(..)
        ));
        assert!(matches!(
            route(&req(Opcode::Readdirplus, 1, small)),
            Route::Inline(..)
        ));
    }

    #[test]
    fn short_or_unknown_requests_are_free() {
        assert_eq!(route(&[1, 2, 3]), Route::Free);
        assert_eq!(route(&req(Opcode::Read, 3, [0u8; 4])), Route::Free);
        let mut bad = req(Opcode::Lookup, 1, [0u8; 0]);
        bad[4] = 200;
        assert_eq!(route(&bad), Route::Free);
        assert_eq!(route(&req(Opcode::Init, 0, [0u8; 0])), Route::Barrier);
    }

    #[test]
    fn forgets_of_busy_nodes_are_found() {
        let mut v = req(Opcode::BatchForget, 0, BatchForgetIn { count: 2, dummy: 0 });
        for (n, k) in [(7u64, 1u64), (8, 1)] {
            v.extend_from_slice(&n.to_ne_bytes());
            v.extend_from_slice(&k.to_ne_bytes());
        }
        assert!(forgets_busy(&v, |n| n == 8));
        assert!(!forgets_busy(&v, |n| n == 9));
        assert!(forgets_busy(&req(Opcode::Forget, 5, [0u8; 8]), |n| n == 5));
    }
}
