//! Attack catalogue, handles: FORGET with an nlookup larger than the count, double
//! FORGET, and forged nodeids and file handles (0, never issued, `u64::MAX`, another file's,
//! one already released) for every opcode that takes one. Each gets EBADF (or, for FORGET,
//! silence), never a crash, and the worker keeps serving with the sentinel untouched.
//!
//! `tests/malformed.rs` (`no_reply_opcodes_stay_silent_when_malformed`) covers FORGET and
//! BATCH_FORGET framing (missing argument, count beyond the entries, root with `u64::MAX`).

#[path = "attacks/mod.rs"]
mod attacks;
mod common;

use std::fs;

use attacks::{assert_errno, cname, request, Arena};
use common::Config;
use guest_driver::abi::{
    CopyFileRangeIn, CreateIn, FallocateIn, FlushIn, FsyncIn, GetattrIn, GetxattrIn, LinkIn,
    LseekIn, MkdirIn, Opcode, OpenIn, ReadIn, ReleaseIn, RenameIn, SetattrIn, SetupmappingIn,
    SetxattrIn, WriteIn, ROOT_ID,
};
use vm_memory::ByteValued;

const FORGED: [u64; 4] = [0, 0xdead_beef, 1 << 40, u64::MAX];
const RDWR: u32 = libc::O_RDWR as u32;

/// Every nodeid-taking request, with `node` as its nodeid (or its second nodeid).
fn node_requests(node: u64, good: u64) -> Vec<(&'static str, (Vec<u8>, u64))> {
    let n = cname(b"x");
    let getattr = GetattrIn::default();
    let setattr = SetattrIn {
        valid: 1, // MODE
        mode: 0o600,
        ..Default::default()
    };
    let open = OpenIn {
        flags: libc::O_RDONLY as u32,
        open_flags: 0,
    };
    let mkdir = MkdirIn {
        mode: 0o755,
        umask: 0,
    };
    let create = CreateIn {
        flags: RDWR,
        mode: libc::S_IFREG | 0o644,
        ..Default::default()
    };
    let xq = GetxattrIn {
        size: 100,
        padding: 0,
    };
    let xs = SetxattrIn { size: 1, flags: 0 };
    let access = [0u8; 8]; // AccessIn { mask: F_OK }
    vec![
        (
            "GETATTR",
            request(Opcode::Getattr, node, &[getattr.as_slice()]),
        ),
        (
            "SETATTR",
            request(Opcode::Setattr, node, &[setattr.as_slice()]),
        ),
        ("LOOKUP", request(Opcode::Lookup, node, &[&cname(b"probe")])),
        ("READLINK", request(Opcode::Readlink, node, &[])),
        ("OPEN", request(Opcode::Open, node, &[open.as_slice()])),
        (
            "OPENDIR",
            request(Opcode::Opendir, node, &[open.as_slice()]),
        ),
        (
            "MKDIR",
            request(Opcode::Mkdir, node, &[mkdir.as_slice(), &n]),
        ),
        (
            "CREATE",
            request(Opcode::Create, node, &[create.as_slice(), &n]),
        ),
        ("UNLINK", request(Opcode::Unlink, node, &[&cname(b"probe")])),
        ("RMDIR", request(Opcode::Rmdir, node, &[&n])),
        (
            "SYMLINK",
            request(Opcode::Symlink, node, &[&n, &cname(b"t")]),
        ),
        (
            "RENAME olddir",
            request(
                Opcode::Rename,
                node,
                &[RenameIn { newdir: good }.as_slice(), &n, &n],
            ),
        ),
        (
            "RENAME newdir",
            request(
                Opcode::Rename,
                good,
                &[RenameIn { newdir: node }.as_slice(), &cname(b"probe"), &n],
            ),
        ),
        (
            "LINK oldnodeid",
            request(
                Opcode::Link,
                good,
                &[LinkIn { oldnodeid: node }.as_slice(), &n],
            ),
        ),
        (
            "LINK parent",
            request(
                Opcode::Link,
                node,
                &[LinkIn { oldnodeid: good }.as_slice(), &n],
            ),
        ),
        (
            "GETXATTR",
            request(Opcode::Getxattr, node, &[xq.as_slice(), &cname(b"user.k")]),
        ),
        (
            "LISTXATTR",
            request(Opcode::Listxattr, node, &[xq.as_slice()]),
        ),
        (
            "SETXATTR",
            request(
                Opcode::Setxattr,
                node,
                &[xs.as_slice(), &cname(b"user.k"), b"v"],
            ),
        ),
        (
            "REMOVEXATTR",
            request(Opcode::Removexattr, node, &[&cname(b"user.k")]),
        ),
        ("ACCESS", request(Opcode::Access, node, &[&access])),
    ]
}

#[test]
fn forged_nodeids_get_ebadf() {
    let mut a = Arena::new(&Config::xattr());
    for node in FORGED {
        for (what, req) in node_requests(node, ROOT_ID) {
            a.refused(&req, libc::EBADF, &format!("{what} nodeid {node:#x}"));
        }
    }
    // Nothing was made or removed in the share.
    let names: Vec<_> = fs::read_dir(a.b.share()).unwrap().collect();
    assert_eq!(names.len(), 1, "{names:?}");
}

#[test]
fn forget_beyond_the_count_and_twice() {
    let mut a = Arena::new(&Config::default());
    fs::write(a.b.host("f"), b"data").unwrap();
    // Two lookups, then a FORGET of a thousand: the node is gone, nothing else.
    let node = a.lookup("f");
    assert_eq!(a.lookup("f"), node);
    a.s.forget(node, 1000).unwrap();
    a.verify("FORGET nlookup 1000 of 2");
    assert_errno(a.s.getattr(node, None), libc::EBADF, "GETATTR after FORGET");
    // Forgetting it again (and again) is a no-op.
    a.s.forget(node, 1).unwrap();
    a.s.forget(node, u64::MAX).unwrap();
    a.s.batch_forget(&[(node, 1), (node, 1), (0xdead_beef, 1), (u64::MAX, u64::MAX)])
        .unwrap();
    a.verify("double FORGET");
    // A fresh LOOKUP brings the file back.
    let again = a.lookup("f");
    assert_eq!(a.s.getattr(again, None).unwrap().attr.size, 4);
    // Forgetting the root, however hard, leaves it usable.
    a.s.forget(ROOT_ID, u64::MAX).unwrap();
    a.s.batch_forget(&[(ROOT_ID, u64::MAX), (ROOT_ID, u64::MAX)])
        .unwrap();
    a.verify("FORGET of the root");
    // An open handle outlives the FORGET of its node (the kernel may forget a node whose file
    // it still has open); reading through it still works and RELEASE frees it.
    let o = a.s.open(again, libc::O_RDONLY as u32).unwrap();
    a.s.forget(again, 1).unwrap();
    assert_eq!(a.s.read(again, o.fh, 0, 10).unwrap(), b"data");
    a.s.release(again, o.fh, 0, 0, 0).unwrap();
    a.verify("FORGET with an open handle");
}

/// Every fh-taking request on `node` with handle `fh`.
fn handle_requests(node: u64, fh: u64, dir: u64) -> Vec<(&'static str, (Vec<u8>, u64))> {
    let read = ReadIn {
        fh,
        size: 100,
        ..Default::default()
    };
    let write = WriteIn {
        fh,
        size: 1,
        ..Default::default()
    };
    let fsync = FsyncIn {
        fh,
        fsync_flags: 0,
        padding: 0,
    };
    let flush = FlushIn {
        fh,
        ..Default::default()
    };
    let fallocate = FallocateIn {
        fh,
        offset: 0,
        length: 4096,
        mode: 0,
        padding: 0,
    };
    let lseek = LseekIn {
        fh,
        offset: 0,
        whence: libc::SEEK_DATA as u32,
        padding: 0,
    };
    let getattr = GetattrIn {
        getattr_flags: 1, // GETATTR_FH
        dummy: 0,
        fh,
    };
    let cfr = CopyFileRangeIn {
        fh_in: fh,
        off_in: 0,
        nodeid_out: node,
        fh_out: fh,
        off_out: 10,
        len: 1,
        flags: 0,
    };
    let release = ReleaseIn {
        fh,
        ..Default::default()
    };
    let map = SetupmappingIn {
        fh,
        foffset: 0,
        len: 2 << 20,
        flags: 2, // READ
        moffset: 0,
    };
    vec![
        ("READ", request(Opcode::Read, node, &[read.as_slice()])),
        (
            "WRITE",
            request(Opcode::Write, node, &[write.as_slice(), b"x"]),
        ),
        ("FSYNC", request(Opcode::Fsync, node, &[fsync.as_slice()])),
        ("FLUSH", request(Opcode::Flush, node, &[flush.as_slice()])),
        (
            "FALLOCATE",
            request(Opcode::Fallocate, node, &[fallocate.as_slice()]),
        ),
        ("LSEEK", request(Opcode::Lseek, node, &[lseek.as_slice()])),
        (
            "GETATTR_FH",
            request(Opcode::Getattr, node, &[getattr.as_slice()]),
        ),
        (
            "COPY_FILE_RANGE",
            request(Opcode::CopyFileRange, node, &[cfr.as_slice()]),
        ),
        (
            "SETUPMAPPING",
            request(Opcode::Setupmapping, node, &[map.as_slice()]),
        ),
        ("READDIR", request(Opcode::Readdir, dir, &[read.as_slice()])),
        (
            "READDIRPLUS",
            request(Opcode::Readdirplus, dir, &[read.as_slice()]),
        ),
        (
            "FSYNCDIR",
            request(Opcode::Fsyncdir, dir, &[fsync.as_slice()]),
        ),
        (
            "RELEASE",
            request(Opcode::Release, node, &[release.as_slice()]),
        ),
        (
            "RELEASEDIR",
            request(Opcode::Releasedir, dir, &[release.as_slice()]),
        ),
    ]
}

#[test]
fn forged_released_and_foreign_handles_get_ebadf() {
    let cfg = Config {
        fsjail_args: vec!["--dax-window".into(), "4M".into()],
        ..Config::default()
    };
    let mut a = Arena::new(&cfg);
    fs::write(a.b.host("mine"), b"mine").unwrap();
    fs::write(a.b.host("other"), b"other").unwrap();
    fs::create_dir(a.b.host("d")).unwrap();
    let mine = a.lookup("mine");
    let other = a.lookup("other");
    let dir = a.lookup("d");
    // A handle of another file, a released one, and a directory handle used as a file's.
    let foreign = a.s.open(other, RDWR).unwrap().fh;
    let released = a.s.open(mine, RDWR).unwrap().fh;
    a.s.release(mine, released, RDWR, 0, 0).unwrap();
    let dirfh = a.s.opendir(dir, libc::O_RDONLY as u32).unwrap().fh;
    let mut cases: Vec<(String, u64)> = FORGED.iter().map(|f| (format!("fh {f:#x}"), *f)).collect();
    cases.push(("released fh".into(), released));
    for (what, fh) in &cases {
        for (op, req) in handle_requests(mine, *fh, dir) {
            a.refused(&req, libc::EBADF, &format!("{op} with {what}"));
        }
    }
    // Another file's handle on this node, and a directory handle on a file: refused too (the
    // directory ops get the file handle in return).
    for (op, req) in handle_requests(mine, foreign, dir)
        .into_iter()
        .chain(handle_requests(mine, dirfh, mine))
    {
        if op == "RELEASE" || op == "RELEASEDIR" {
            continue;
        }
        a.refused(&req, libc::EBADF, &format!("{op} with a foreign handle"));
    }
    assert_eq!(fs::read(a.b.host("mine")).unwrap(), b"mine");
    assert_eq!(fs::read(a.b.host("other")).unwrap(), b"other");
    // The real handles still work.
    assert_eq!(a.s.read(other, foreign, 0, 10).unwrap(), b"other");
    a.s.releasedir(dir, dirfh, 0).unwrap();
    a.s.release(other, foreign, RDWR, 0, 0).unwrap();
    a.verify("forged handles");
}
