//! Extended attributes, directories, locks and ACCESS.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use crate::common::{Backend, Config, Kind};
use guest_driver::abi::{FileLock, ROOT_ID};
use guest_driver::{Context, XattrReply};

use super::helpers::*;

/// SETXATTR/GETXATTR/LISTXATTR/REMOVEXATTR (with --xattr) agree with the host's xattrs.
pub(crate) fn xattrs_round_trip_to_the_host(kind: Kind) {
    let b = Backend::start(kind, &Config::xattr());
    let s = b.session();
    let (node, fh) = create_rw(&s, ROOT_ID, "f", 0o644);
    let path = b.host("f");

    s.setxattr(node, "user.k", b"value", 0).unwrap();
    assert_eq!(
        host_getxattr(&path, "user.k").as_deref(),
        Some(&b"value"[..])
    );
    assert_eq!(s.getxattr(node, "user.k", 0).unwrap(), XattrReply::Size(5));
    assert_eq!(
        s.getxattr(node, "user.k", 64).unwrap(),
        XattrReply::Data(b"value".to_vec())
    );
    assert_errno(
        s.getxattr(node, "user.k", 2),
        libc::ERANGE,
        "GETXATTR into a small buffer",
    );

    // Set on the host, seen by the guest; binary values pass unchanged.
    let binary: Vec<u8> = (0..=255u8).collect();
    host_setxattr(&path, "user.host", &binary);
    assert_eq!(
        s.getxattr(node, "user.host", 4096).unwrap(),
        XattrReply::Data(binary)
    );

    // flags
    assert_errno(
        s.setxattr(node, "user.k", b"again", libc::XATTR_CREATE as u32),
        libc::EEXIST,
        "XATTR_CREATE on an existing name",
    );
    assert_errno(
        s.setxattr(node, "user.none", b"x", libc::XATTR_REPLACE as u32),
        libc::ENODATA,
        "XATTR_REPLACE on a missing name",
    );
    s.setxattr(node, "user.k", b"replaced", libc::XATTR_REPLACE as u32)
        .unwrap();
    assert_eq!(
        host_getxattr(&path, "user.k").as_deref(),
        Some(&b"replaced"[..])
    );
    s.setxattr(node, "user.empty", b"", 0).unwrap();
    assert_eq!(
        host_getxattr(&path, "user.empty").as_deref(),
        Some(&b""[..])
    );

    // LISTXATTR: the host's list exactly.
    let host = host_listxattr(&path);
    let XattrReply::Size(n) = s.listxattr(node, 0).unwrap() else {
        panic!("size query")
    };
    let XattrReply::Data(list) = s.listxattr(node, n).unwrap() else {
        panic!("data")
    };
    assert_eq!(split_names(&list), host);
    for want in ["user.k", "user.host", "user.empty"] {
        assert!(host.contains(want.as_bytes()), "{want} in {host:?}");
    }
    assert_errno(
        s.listxattr(node, 3),
        libc::ERANGE,
        "LISTXATTR into a small buffer",
    );

    // REMOVEXATTR
    s.removexattr(node, "user.k").unwrap();
    assert_eq!(host_getxattr(&path, "user.k"), None);
    assert_errno(
        s.getxattr(node, "user.k", 0),
        libc::ENODATA,
        "GETXATTR after remove",
    );
    assert_errno(
        s.removexattr(node, "user.k"),
        libc::ENODATA,
        "REMOVEXATTR twice",
    );

    // On a directory too.
    let d = s.mkdir(ROOT_ID, "d", 0o755, 0).unwrap();
    s.setxattr(d.nodeid, "user.dir", b"1", 0).unwrap();
    assert_eq!(
        host_getxattr(&b.host("d"), "user.dir").as_deref(),
        Some(&b"1"[..])
    );
    s.release(node, fh, 0, 0, 0).unwrap();
}

/// Without --xattr the xattr opcodes are unsupported (ENOSYS, as in virtiofsd) and the host
/// is untouched.
pub(crate) fn xattrs_off_by_default(kind: Kind) {
    let b = Backend::start(kind, &Config::default());
    let s = b.session();
    fs::write(b.host("f"), b"").unwrap();
    host_setxattr(&b.host("f"), "user.host", b"v");
    let e = s.lookup(ROOT_ID, "f").unwrap();
    assert_errno(
        s.setxattr(e.nodeid, "user.k", b"v", 0),
        libc::ENOSYS,
        "SETXATTR",
    );
    assert_eq!(host_getxattr(&b.host("f"), "user.k"), None);
    assert_errno(
        s.getxattr(e.nodeid, "user.host", 64),
        libc::ENOSYS,
        "GETXATTR",
    );
    assert_errno(s.listxattr(e.nodeid, 256), libc::ENOSYS, "LISTXATTR");
    assert_errno(
        s.removexattr(e.nodeid, "user.host"),
        libc::ENOSYS,
        "REMOVEXATTR",
    );
    assert_eq!(
        host_getxattr(&b.host("f"), "user.host").as_deref(),
        Some(&b"v"[..])
    );
}

/// READDIR and READDIRPLUS list the host's names (fsjail omits "." and "..", virtiofsd lists
/// them: both are filtered), paginate through offsets with small buffers, and carry the host's
/// attributes; FSYNCDIR and RELEASEDIR work on the handle.
pub(crate) fn readdir_and_readdirplus(kind: Kind) {
    let b = Backend::start(kind, &Config::default());
    let s = b.session();
    let mut want: Vec<String> = (0..40)
        .map(|i| format!("file-{i:02}-{}", "x".repeat(i % 17)))
        .collect();
    for n in &want {
        fs::write(b.host(n), n.as_bytes()).unwrap();
    }
    fs::create_dir(b.host("subdir")).unwrap();
    std::os::unix::fs::symlink("file-00-", b.host("symlink")).unwrap();
    want.push("subdir".into());
    want.push("symlink".into());
    want.sort();
    assert_eq!(host_names(b.share()), want);

    let dh = s.opendir(ROOT_ID, RDONLY).unwrap();
    let not_dot = |n: &String| n != "." && n != "..";

    // One big READDIR: names, types and inode numbers as on the host.
    let all = s.readdir(ROOT_ID, dh.fh, 0, 64 * 1024).unwrap();
    let dots = all.iter().filter(|d| !not_dot(&d.name_str())).count();
    match kind {
        Kind::Fsjail => assert_eq!(dots, 0, "fsjail lists no \".\" or \"..\""),
        Kind::Peer => assert_eq!(dots, 2, "virtiofsd lists \".\" and \"..\""),
    }
    let mut names: Vec<String> = all.iter().map(|d| d.name_str()).filter(not_dot).collect();
    names.sort();
    assert_eq!(names, want);
    for d in all.iter().filter(|d| not_dot(&d.name_str())) {
        let md = lmeta(b.host(d.name_str()));
        assert_eq!(d.ino, md.ino(), "{}", d.name_str());
        let dt = match md.file_type() {
            t if t.is_dir() => libc::DT_DIR,
            t if t.is_symlink() => libc::DT_LNK,
            _ => libc::DT_REG,
        };
        assert_eq!(d.type_, dt as u32, "{}", d.name_str());
    }
    // Continuing from an entry's offset gives exactly the entries after it.
    let rest = s.readdir(ROOT_ID, dh.fh, all[3].off, 64 * 1024).unwrap();
    assert_eq!(rest, all[4..]);
    // The last entry's offset is the end.
    assert!(s
        .readdir(ROOT_ID, dh.fh, all.last().unwrap().off, 4096)
        .unwrap()
        .is_empty());

    // Small buffers: each reply is a non-empty prefix; following the offsets visits every
    // name exactly once.
    for size in [64u32, 100, 256] {
        let mut seen = Vec::new();
        let mut off = 0;
        loop {
            let page = s.readdir(ROOT_ID, dh.fh, off, size).unwrap();
            let Some(last) = page.last() else { break };
            off = last.off;
            seen.extend(page.iter().map(|d| d.name_str()));
        }
        seen.retain(not_dot);
        let unique: BTreeSet<&String> = seen.iter().collect();
        assert_eq!(
            unique.len(),
            seen.len(),
            "duplicates with {size}-byte pages"
        );
        seen.sort();
        assert_eq!(seen, want, "{size}-byte pages");
    }

    // READDIRPLUS: the same names, each with a node and the host's attributes.
    let plus = s.readdirplus(ROOT_ID, dh.fh, 0, 64 * 1024).unwrap();
    let mut pnames: Vec<String> = plus
        .iter()
        .map(|p| p.dirent.name_str())
        .filter(not_dot)
        .collect();
    pnames.sort();
    assert_eq!(pnames, want);
    for p in plus.iter().filter(|p| not_dot(&p.dirent.name_str())) {
        let name = p.dirent.name_str();
        assert_ne!(p.entry.nodeid, 0, "{name}");
        assert_attr_eq(&p.entry.attr, &lmeta(b.host(&name)), &name);
        // The node it hands out is the one LOOKUP gives.
        if name == "subdir" {
            assert_eq!(s.lookup(ROOT_ID, "subdir").unwrap().nodeid, p.entry.nodeid);
        }
    }
    let mut seen = Vec::new();
    let mut off = 0;
    loop {
        let page = s.readdirplus(ROOT_ID, dh.fh, off, 400).unwrap();
        let Some(last) = page.last() else { break };
        off = last.dirent.off;
        for p in &page {
            let name = p.dirent.name_str();
            if not_dot(&name) {
                assert_eq!(p.entry.attr.ino, lmeta(b.host(&name)).ino(), "{name}");
            }
            seen.push(name);
        }
    }
    seen.retain(not_dot);
    let n = seen.len();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), n, "READDIRPLUS pages repeat entries");
    assert_eq!(seen, want);

    // A subdirectory: empty apart from what the host puts there.
    let sub = s.lookup(ROOT_ID, "subdir").unwrap();
    let sh = s.opendir(sub.nodeid, RDONLY).unwrap();
    let mut names: Vec<String> = s
        .readdir(sub.nodeid, sh.fh, 0, 4096)
        .unwrap()
        .iter()
        .map(|d| d.name_str())
        .collect();
    names.retain(not_dot);
    assert!(names.is_empty(), "{names:?}");
    s.fsyncdir(sub.nodeid, sh.fh, false).unwrap();
    s.fsyncdir(sub.nodeid, sh.fh, true).unwrap();
    s.releasedir(sub.nodeid, sh.fh, 0).unwrap();

    s.fsyncdir(ROOT_ID, dh.fh, false).unwrap();
    let fds = b.open_fds();
    s.releasedir(ROOT_ID, dh.fh, 0).unwrap();
    if kind == Kind::Fsjail {
        assert_eq!(b.open_fds(), fds - 1, "RELEASEDIR closed the host fd");
    }
    assert_errno(
        s.readdir(ROOT_ID, dh.fh, 0, 4096),
        libc::EBADF,
        "READDIR after RELEASEDIR",
    );
    assert_errno(
        s.opendir(sub.nodeid + 1_000_000, RDONLY),
        libc::EBADF,
        "OPENDIR forged node",
    );
    fs::write(b.host("plain"), b"").unwrap();
    let f = s.lookup(ROOT_ID, "plain").unwrap();
    assert_errno(
        s.opendir(f.nodeid, RDONLY),
        libc::ENOTDIR,
        "OPENDIR on a file",
    );
}

/// GETLK/SETLK/SETLKW answer ENOSYS (fsjail by design, virtiofsd by default), so the guest
/// keeps locks locally; nothing is locked on the host.
pub(crate) fn locks_answer_enosys(kind: Kind) {
    let b = Backend::start(kind, &Config::default());
    let s = b.session();
    let (node, fh) = create_rw(&s, ROOT_ID, "locked", 0o644);
    let wr = FileLock {
        start: 0,
        end: 99,
        type_: libc::F_WRLCK as u32,
        pid: 0,
    };
    let rd = FileLock {
        type_: libc::F_RDLCK as u32,
        ..wr
    };
    assert_errno(s.getlk(node, fh, 1, rd), libc::ENOSYS, "GETLK");
    assert_errno(s.setlk(node, fh, 1, wr, false), libc::ENOSYS, "SETLK");
    assert_errno(s.setlkw(node, fh, 1, wr, false), libc::ENOSYS, "SETLKW");
    assert_errno(s.setlk(node, fh, 1, wr, true), libc::ENOSYS, "SETLK flock");

    // Host side: no lock is held on the file by anyone.
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(b.host("locked"))
        .unwrap();
    // SAFETY: flock is plain data; all-zero is valid.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as i16;
    fl.l_whence = libc::SEEK_SET as i16;
    fl.l_len = 0;
    use std::os::fd::AsRawFd;
    // SAFETY: F_OFD_GETLK only writes `fl`, a live local.
    let rc = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_OFD_GETLK, &mut fl) };
    assert_eq!(rc, 0);
    assert_eq!(
        fl.l_type,
        libc::F_UNLCK as i16,
        "a lock is held on the host"
    );
    // SAFETY: flock(2) takes two integers; the fd is our own open file.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    assert_eq!(rc, 0);
    s.release(node, fh, 0, 0, 0).unwrap();
}

/// ACCESS checks the caller's rights against the host's mode bits.
pub(crate) fn access(kind: Kind) {
    let b = Backend::start(kind, &Config::default());
    let s = b.session();
    let all = (libc::R_OK | libc::W_OK | libc::X_OK) as u32;
    s.access(ROOT_ID, all).unwrap();
    s.access(ROOT_ID, libc::F_OK as u32).unwrap();
    fs::write(b.host("noexec"), b"").unwrap();
    fs::set_permissions(b.host("noexec"), fs::Permissions::from_mode(0o644)).unwrap();
    let e = s.lookup(ROOT_ID, "noexec").unwrap();
    s.access(e.nodeid, (libc::R_OK | libc::W_OK) as u32)
        .unwrap();
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        crate::common::skip::skip("the access checks as another user", "not root");
        return;
    }
    assert_errno(
        s.access(e.nodeid, libc::X_OK as u32),
        libc::EACCES,
        "X_OK without x bits",
    );
    // Another caller: "other" bits apply.
    let root_ctx = s.context();
    s.set_context(Context {
        uid: 1000,
        gid: 1000,
        ..root_ctx
    });
    s.access(e.nodeid, libc::R_OK as u32).unwrap();
    assert_errno(
        s.access(e.nodeid, libc::W_OK as u32),
        libc::EACCES,
        "W_OK as other",
    );
    s.set_context(root_ctx);
    fs::set_permissions(b.host("noexec"), fs::Permissions::from_mode(0o755)).unwrap();
    s.access(e.nodeid, libc::X_OK as u32).unwrap();
}
