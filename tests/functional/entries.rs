//! Names and inodes: INIT/DESTROY, LOOKUP/FORGET, GETATTR/SETATTR, links, MKNOD, MKDIR/RMDIR, UNLINK, RENAME.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use crate::common::{Backend, Config, Kind};
use guest_driver::abi::ROOT_ID;
use guest_driver::{InitOptions, Setattr};

use super::helpers::*;

// ---------------------------------------------------------------------------------------------
// tests

/// INIT negotiates 7.x down to what both sides know; DESTROY ends the session (its data is on
/// the host), and a new INIT on the same device starts a fresh one, as a guest remount does.
pub(crate) fn init_and_destroy(kind: Kind) {
    let b = Backend::start(kind, &Config::default());
    let s = b.connect(b.options());
    // Nothing but INIT is served before INIT (fsjail says EIO as libfuse does; virtiofsd
    // answers EBADF).
    let before = errno(s.getattr(ROOT_ID, None));
    if kind == Kind::Fsjail {
        assert_eq!(before, libc::EIO, "GETATTR before INIT");
    }
    let init = s.init().unwrap();
    assert_eq!(init.major, 7);
    assert!((27..=38).contains(&init.minor), "minor {}", init.minor);
    assert!(init.max_write >= 4096);
    let offered = InitOptions::default().flags;
    assert_eq!(
        s.granted_flags() & !offered,
        0,
        "granted flags the guest never offered"
    );
    if kind == Kind::Fsjail {
        // A second INIT in the same session is refused (virtiofsd renegotiates instead).
        assert_errno(s.init(), libc::EIO, "second INIT");
    }

    let (node, fh) = create_rw(&s, ROOT_ID, "before-destroy", 0o644);
    assert_eq!(s.write(node, fh, 0, b"kept").unwrap(), 4);
    s.destroy().unwrap();
    assert_eq!(fs::read(b.host("before-destroy")).unwrap(), b"kept");

    let again = s.init().unwrap();
    assert_eq!(again.major, 7);
    let e = s.lookup(ROOT_ID, "before-destroy").unwrap();
    assert_attr_eq(&e.attr, &lmeta(b.host("before-destroy")), "after re-INIT");
    let o = s.open(e.nodeid, RDONLY).unwrap();
    assert_eq!(s.read(e.nodeid, o.fh, 0, 100).unwrap(), b"kept");
    s.release(e.nodeid, o.fh, 0, 0, 0).unwrap();
}

/// LOOKUP returns the host's attributes and one node per inode; FORGET and BATCH_FORGET drop
/// lookup references (no reply), which the host sees as the backend closing its fds.
pub(crate) fn lookup_and_forget(kind: Kind) {
    let b = Backend::start(kind, &Config::default());
    let s = b.session();
    fs::write(b.host("a"), b"hello").unwrap();
    let e1 = s.lookup(ROOT_ID, "a").unwrap();
    let e2 = s.lookup(ROOT_ID, "a").unwrap();
    assert_eq!(e1.nodeid, e2.nodeid);
    assert_ne!(e1.nodeid, ROOT_ID);
    assert_attr_eq(&e1.attr, &lmeta(b.host("a")), "lookup");
    assert_errno(s.lookup(ROOT_ID, "missing"), libc::ENOENT, "lookup missing");

    // Two lookups: one FORGET leaves the node usable, the second drops it.
    s.forget(e1.nodeid, 1).unwrap();
    assert_eq!(s.getattr(e1.nodeid, None).unwrap().attr.ino, e1.attr.ino);
    s.forget(e1.nodeid, 1).unwrap();
    assert_errno(
        s.getattr(e1.nodeid, None),
        libc::EBADF,
        "GETATTR on a forgotten node",
    );

    // BATCH_FORGET. In fsjail each looked-up inode holds one host O_PATH fd until forgotten,
    // so the host sees the forget as the worker's fd count dropping back. (virtiofsd 1.14
    // may use file handles instead of fds, so only the protocol side is checked there.)
    let names: Vec<String> = (0..16).map(|i| format!("batch{i}")).collect();
    for n in &names {
        fs::write(b.host(n), n.as_bytes()).unwrap();
    }
    let before = b.open_fds();
    let ids: Vec<u64> = names
        .iter()
        .map(|n| s.lookup(ROOT_ID, n).unwrap().nodeid)
        .collect();
    if kind == Kind::Fsjail {
        assert_eq!(
            b.open_fds(),
            before + names.len(),
            "one host fd per looked-up inode"
        );
    }
    let items: Vec<(u64, u64)> = ids.iter().map(|&id| (id, 1)).collect();
    s.batch_forget(&items).unwrap();
    if kind == Kind::Fsjail {
        assert_eq!(b.open_fds(), before, "BATCH_FORGET closed the host fds");
    }
    for id in ids {
        assert_errno(
            s.getattr(id, None),
            libc::EBADF,
            "GETATTR after BATCH_FORGET",
        );
    }
    // A fresh lookup works again.
    let e = s.lookup(ROOT_ID, "batch3").unwrap();
    assert_attr_eq(&e.attr, &lmeta(b.host("batch3")), "lookup after forget");
}

/// GETATTR equals the host's stat; SETATTR changes mode, owner, size and times on the host.
pub(crate) fn getattr_and_setattr(kind: Kind) {
    let b = Backend::start(kind, &Config::default());
    let s = b.session();
    let root = s.getattr(ROOT_ID, None).unwrap();
    assert_attr_eq(&root.attr, &lmeta(b.share()), "root");

    fs::write(b.host("f"), b"0123456789abcdef").unwrap();
    let e = s.lookup(ROOT_ID, "f").unwrap();
    let a = s.getattr(e.nodeid, None).unwrap();
    assert_attr_eq(&a.attr, &lmeta(b.host("f")), "getattr");

    // mode
    let a = s.setattr(e.nodeid, &Setattr::new().mode(0o604)).unwrap();
    let md = lmeta(b.host("f"));
    assert_eq!(md.mode(), REG | 0o604);
    assert_attr_eq(&a.attr, &md, "after chmod");

    // owner (needs root on the host)
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        let a = s
            .setattr(e.nodeid, &Setattr::new().uid(1234).gid(5678))
            .unwrap();
        let md = lmeta(b.host("f"));
        assert_eq!((md.uid(), md.gid()), (1234, 5678));
        assert_attr_eq(&a.attr, &md, "after chown");
        let a = s.setattr(e.nodeid, &Setattr::new().gid(4321)).unwrap();
        let md = lmeta(b.host("f"));
        assert_eq!((md.uid(), md.gid()), (1234, 4321), "gid alone leaves uid");
        assert_attr_eq(&a.attr, &md, "after chgrp");
    } else {
        crate::common::skip::skip("the chown checks", "not root");
    }

    // size: truncate and extend
    let a = s.setattr(e.nodeid, &Setattr::new().size(4)).unwrap();
    assert_eq!(fs::read(b.host("f")).unwrap(), b"0123");
    assert_eq!(a.attr.size, 4);
    let a = s.setattr(e.nodeid, &Setattr::new().size(8192)).unwrap();
    let data = fs::read(b.host("f")).unwrap();
    assert_eq!(data.len(), 8192);
    assert_eq!(&data[..4], b"0123");
    assert!(data[4..].iter().all(|&x| x == 0));
    assert_attr_eq(&a.attr, &lmeta(b.host("f")), "after extend");
    // size through an open handle
    let o = s.open(e.nodeid, RDWR).unwrap();
    let a = s
        .setattr(e.nodeid, &Setattr::new().size(2).fh(o.fh))
        .unwrap();
    assert_eq!(fs::read(b.host("f")).unwrap(), b"01");
    assert_eq!(a.attr.size, 2);
    s.release(e.nodeid, o.fh, 0, 0, 0).unwrap();

    // explicit atime / mtime, with nanoseconds
    let a = s
        .setattr(
            e.nodeid,
            &Setattr::new()
                .atime(1_000_000_000, 123_456_789)
                .mtime(1_100_000_000, 987_654_321),
        )
        .unwrap();
    let md = lmeta(b.host("f"));
    assert_eq!((md.atime(), md.atime_nsec()), (1_000_000_000, 123_456_789));
    assert_eq!((md.mtime(), md.mtime_nsec()), (1_100_000_000, 987_654_321));
    assert_attr_eq(&a.attr, &md, "after utimens");
    // mtime alone leaves atime
    s.setattr(e.nodeid, &Setattr::new().mtime(1_200_000_000, 5))
        .unwrap();
    let md = lmeta(b.host("f"));
    assert_eq!((md.atime(), md.atime_nsec()), (1_000_000_000, 123_456_789));
    assert_eq!((md.mtime(), md.mtime_nsec()), (1_200_000_000, 5));

    // *_NOW: the host's clock, not the values in the request
    let before = now_secs();
    let a = s
        .setattr(e.nodeid, &Setattr::new().atime_now().mtime_now())
        .unwrap();
    let after = now_secs();
    let md = lmeta(b.host("f"));
    for (what, t) in [("atime", md.atime()), ("mtime", md.mtime())] {
        assert!(
            (before - 1..=after + 1).contains(&t),
            "{what} {t} not within [{before}, {after}]"
        );
    }
    assert_attr_eq(&a.attr, &md, "after *_NOW");
    // ATIME_NOW alone leaves mtime
    s.setattr(e.nodeid, &Setattr::new().mtime(1_300_000_000, 0))
        .unwrap();
    s.setattr(e.nodeid, &Setattr::new().atime_now()).unwrap();
    let md = lmeta(b.host("f"));
    assert_eq!(md.mtime(), 1_300_000_000);
    assert!(md.atime() >= before - 1);

    // GETATTR through a handle
    let o = s.open(e.nodeid, RDONLY).unwrap();
    let a = s.getattr(e.nodeid, Some(o.fh)).unwrap();
    assert_attr_eq(&a.attr, &lmeta(b.host("f")), "getattr by fh");
    s.release(e.nodeid, o.fh, 0, 0, 0).unwrap();
}

/// SYMLINK makes the host link with the target verbatim; READLINK returns it.
pub(crate) fn symlink_and_readlink(kind: Kind) {
    let b = Backend::start(kind, &Config::default());
    let s = b.session();
    let l = s.symlink(ROOT_ID, "l", "target/../x").unwrap();
    let md = lmeta(b.host("l"));
    assert!(md.file_type().is_symlink());
    assert_eq!(
        fs::read_link(b.host("l")).unwrap(),
        Path::new("target/../x")
    );
    assert_attr_eq(&l.attr, &md, "symlink");
    assert_eq!(l.attr.size, 11);
    assert_eq!(s.readlink(l.nodeid).unwrap(), b"target/../x");

    // A link made on the host, absolute and dangling: returned as is, not followed.
    std::os::unix::fs::symlink("/nonexistent/abs", b.host("hl")).unwrap();
    let h = s.lookup(ROOT_ID, "hl").unwrap();
    assert_eq!(h.attr.mode & libc::S_IFMT, libc::S_IFLNK);
    assert_eq!(s.readlink(h.nodeid).unwrap(), b"/nonexistent/abs");

    assert_errno(
        s.symlink(ROOT_ID, "l", "other"),
        libc::EEXIST,
        "symlink over a name",
    );
    assert_eq!(
        fs::read_link(b.host("l")).unwrap(),
        Path::new("target/../x")
    );
    fs::write(b.host("reg"), b"x").unwrap();
    let r = s.lookup(ROOT_ID, "reg").unwrap();
    // A Linux guest never sends this; both backends pass on readlinkat(fd, "")'s ENOENT.
    let e = errno(s.readlink(r.nodeid));
    assert!(
        e == libc::ENOENT || e == libc::EINVAL,
        "READLINK on a regular file: errno {e}"
    );
}

/// MKNOD makes FIFOs and regular files on the host; fsjail's device nodes are emulated (see
/// `tests/functional/special.rs`), and refused (EPERM) with `--special-files refuse`.
pub(crate) fn mknod(kind: Kind) {
    let b = Backend::start(kind, &Config::default());
    let s = b.session();
    let f = s
        .mknod(ROOT_ID, "fifo", libc::S_IFIFO | 0o640, 0, 0)
        .unwrap();
    let md = lmeta(b.host("fifo"));
    assert!(md.file_type().is_fifo());
    assert_eq!(md.mode() & 0o7777, 0o640);
    assert_attr_eq(&f.attr, &md, "fifo");

    let r = s.mknod(ROOT_ID, "reg", REG | 0o600, 0, 0).unwrap();
    let md = lmeta(b.host("reg"));
    assert!(md.file_type().is_file());
    assert_eq!(md.len(), 0);
    assert_attr_eq(&r.attr, &md, "regular");

    let m = s
        .mknod(ROOT_ID, "masked", libc::S_IFIFO | 0o666, 0, 0o022)
        .unwrap();
    let want = masked(kind, 0o666, 0o022);
    assert_eq!(lmeta(b.host("masked")).mode() & 0o777, want, "umask");
    assert_eq!(m.attr.mode & 0o777, want);

    assert_errno(
        s.mknod(ROOT_ID, "fifo", libc::S_IFIFO | 0o600, 0, 0),
        libc::EEXIST,
        "exists",
    );

    if kind == Kind::Fsjail {
        // `refuse`: no guest-made device nodes, even on a writable share.
        let b = Backend::start(
            kind,
            &Config {
                fsjail_args: vec!["--special-files".into(), "refuse".into()],
                ..Config::default()
            },
        );
        let s = b.session();
        let null = libc::makedev(1, 3) as u32;
        assert_errno(
            s.mknod(ROOT_ID, "chr", libc::S_IFCHR | 0o600, null, 0),
            libc::EPERM,
            "chr",
        );
        assert_errno(
            s.mknod(ROOT_ID, "blk", libc::S_IFBLK | 0o600, null, 0),
            libc::EPERM,
            "blk",
        );
        assert!(!b.host("chr").exists() && !b.host("blk").exists());
    }
}

/// MKDIR on the host with its mode; RMDIR refuses a non-empty directory, then removes it.
pub(crate) fn mkdir_and_rmdir(kind: Kind) {
    let b = Backend::start(kind, &Config::default());
    let s = b.session();
    let d = s.mkdir(ROOT_ID, "d", 0o750, 0).unwrap();
    let md = lmeta(b.host("d"));
    assert!(md.is_dir());
    assert_eq!(md.mode() & 0o7777, 0o750);
    assert_eq!(md.nlink(), 2);
    assert_attr_eq(&d.attr, &md, "mkdir");
    s.mkdir(ROOT_ID, "masked", 0o777, 0o022).unwrap();
    assert_eq!(
        lmeta(b.host("masked")).mode() & 0o777,
        masked(kind, 0o777, 0o022)
    );
    assert_errno(
        s.mkdir(ROOT_ID, "d", 0o755, 0),
        libc::EEXIST,
        "mkdir over a name",
    );

    let inner = s.mkdir(d.nodeid, "inner", 0o700, 0).unwrap();
    assert!(b.host("d/inner").is_dir());
    assert_eq!(lmeta(b.host("d")).nlink(), 3);
    assert_eq!(s.getattr(d.nodeid, None).unwrap().attr.nlink, 3);
    fs::write(b.host("d/inner/file"), b"x").unwrap();
    assert_errno(s.rmdir(ROOT_ID, "d"), libc::ENOTEMPTY, "rmdir non-empty");
    assert_errno(
        s.rmdir(d.nodeid, "inner"),
        libc::ENOTEMPTY,
        "rmdir non-empty",
    );
    assert!(b.host("d/inner/file").exists());
    s.unlink(inner.nodeid, "file").unwrap();
    s.rmdir(d.nodeid, "inner").unwrap();
    assert!(!b.host("d/inner").exists());
    s.rmdir(ROOT_ID, "d").unwrap();
    assert!(!b.host("d").exists());
    assert_errno(s.rmdir(ROOT_ID, "d"), libc::ENOENT, "rmdir missing");
    fs::write(b.host("file"), b"x").unwrap();
    assert_errno(s.rmdir(ROOT_ID, "file"), libc::ENOTDIR, "rmdir on a file");
    assert!(b.host("file").exists());
}

/// UNLINK removes the host name (and only a non-directory).
pub(crate) fn unlink(kind: Kind) {
    let b = Backend::start(kind, &Config::default());
    let s = b.session();
    fs::write(b.host("u"), b"bye").unwrap();
    fs::write(b.host("keep"), b"stay").unwrap();
    s.unlink(ROOT_ID, "u").unwrap();
    assert!(!b.host("u").exists());
    assert_eq!(host_names(b.share()), ["keep"]);
    assert_errno(s.unlink(ROOT_ID, "u"), libc::ENOENT, "unlink missing");
    fs::create_dir(b.host("dir")).unwrap();
    assert_errno(s.unlink(ROOT_ID, "dir"), libc::EISDIR, "unlink a directory");
    assert!(b.host("dir").is_dir());

    // An open file stays readable after its name is gone.
    let (node, fh) = create_rw(&s, ROOT_ID, "open-then-unlinked", 0o600);
    s.write(node, fh, 0, b"still here").unwrap();
    s.unlink(ROOT_ID, "open-then-unlinked").unwrap();
    assert!(!b.host("open-then-unlinked").exists());
    assert_eq!(s.read(node, fh, 0, 64).unwrap(), b"still here");
    assert_eq!(s.getattr(node, Some(fh)).unwrap().attr.nlink, 0);
    s.release(node, fh, 0, 0, 0).unwrap();
}

/// RENAME moves names on the host; RENAME2 honours NOREPLACE (EEXIST) and EXCHANGE (swap).
pub(crate) fn rename_and_rename2(kind: Kind) {
    let b = Backend::start(kind, &Config::default());
    let s = b.session();
    fs::write(b.host("a"), b"A").unwrap();
    fs::write(b.host("b"), b"B").unwrap();
    let sub = s.mkdir(ROOT_ID, "sub", 0o755, 0).unwrap().nodeid;

    s.rename(ROOT_ID, "a", ROOT_ID, "a2").unwrap();
    assert!(!b.host("a").exists());
    assert_eq!(fs::read(b.host("a2")).unwrap(), b"A");
    s.rename(ROOT_ID, "a2", sub, "a3").unwrap();
    assert_eq!(fs::read(b.host("sub/a3")).unwrap(), b"A");
    assert!(!b.host("a2").exists());

    assert_errno(
        s.rename2(sub, "a3", ROOT_ID, "b", libc::RENAME_NOREPLACE),
        libc::EEXIST,
        "RENAME_NOREPLACE onto a name",
    );
    assert_eq!(fs::read(b.host("sub/a3")).unwrap(), b"A");
    assert_eq!(fs::read(b.host("b")).unwrap(), b"B");
    s.rename2(sub, "a3", ROOT_ID, "fresh", libc::RENAME_NOREPLACE)
        .unwrap();
    assert_eq!(fs::read(b.host("fresh")).unwrap(), b"A");
    assert!(!b.host("sub/a3").exists());

    s.rename2(ROOT_ID, "fresh", ROOT_ID, "b", libc::RENAME_EXCHANGE)
        .unwrap();
    assert_eq!(fs::read(b.host("fresh")).unwrap(), b"B");
    assert_eq!(fs::read(b.host("b")).unwrap(), b"A");
    assert_errno(
        s.rename2(ROOT_ID, "b", ROOT_ID, "nothing", libc::RENAME_EXCHANGE),
        libc::ENOENT,
        "RENAME_EXCHANGE with a missing side",
    );

    // A plain rename replaces the target.
    fs::write(b.host("c"), b"C").unwrap();
    s.rename(ROOT_ID, "c", ROOT_ID, "b").unwrap();
    assert_eq!(fs::read(b.host("b")).unwrap(), b"C");
    assert_eq!(host_names(b.share()), ["b", "fresh", "sub"]);
    assert_errno(
        s.rename(ROOT_ID, "gone", ROOT_ID, "x"),
        libc::ENOENT,
        "rename missing",
    );
    // A directory onto a non-empty directory.
    fs::create_dir(b.host("full")).unwrap();
    fs::write(b.host("full/x"), b"").unwrap();
    fs::create_dir(b.host("empty")).unwrap();
    let err = errno(s.rename(ROOT_ID, "empty", ROOT_ID, "full"));
    assert!(err == libc::ENOTEMPTY || err == libc::EEXIST, "errno {err}");
    assert!(b.host("full/x").exists());
}

/// LINK adds a host name for the same inode (nlink 2 on the host).
pub(crate) fn link(kind: Kind) {
    let b = Backend::start(kind, &Config::default());
    let s = b.session();
    fs::write(b.host("orig"), b"shared").unwrap();
    let e = s.lookup(ROOT_ID, "orig").unwrap();
    let sub = s.mkdir(ROOT_ID, "sub", 0o755, 0).unwrap().nodeid;
    let l = s.link(e.nodeid, sub, "hard").unwrap();
    assert_eq!(l.attr.nlink, 2);
    assert_eq!(l.attr.ino, e.attr.ino);
    let (mo, mh) = (lmeta(b.host("orig")), lmeta(b.host("sub/hard")));
    assert_eq!(mo.nlink(), 2);
    assert_eq!(mh.nlink(), 2);
    assert_eq!(mo.ino(), mh.ino());
    assert_eq!(s.getattr(e.nodeid, None).unwrap().attr.nlink, 2);
    assert_errno(
        s.link(e.nodeid, ROOT_ID, "orig"),
        libc::EEXIST,
        "link over a name",
    );
    s.unlink(ROOT_ID, "orig").unwrap();
    assert_eq!(lmeta(b.host("sub/hard")).nlink(), 1);
    assert_eq!(fs::read(b.host("sub/hard")).unwrap(), b"shared");
}
