//! Errno mapping and read-only shares.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use crate::common::{Backend, Config, Kind};
use guest_driver::abi::{CopyFileRangeIn, ROOT_ID};
use guest_driver::{Setattr, XattrReply};

use super::helpers::*;

/// The host's errors reach the guest with the right errno.
pub(crate) fn errors_map_to_the_right_errno(kind: Kind) {
    let b = Backend::start(kind, &Config::default());
    let s = b.session();
    fs::write(b.host("file"), b"x").unwrap();
    fs::create_dir(b.host("dir")).unwrap();
    fs::write(b.host("dir/inside"), b"y").unwrap();
    let file = s.lookup(ROOT_ID, "file").unwrap();
    let dir = s.lookup(ROOT_ID, "dir").unwrap();

    assert_errno(s.lookup(ROOT_ID, "nope"), libc::ENOENT, "ENOENT lookup");
    assert_errno(s.unlink(ROOT_ID, "nope"), libc::ENOENT, "ENOENT unlink");
    assert_errno(
        s.mkdir(ROOT_ID, "file", 0o755, 0),
        libc::EEXIST,
        "EEXIST mkdir",
    );
    assert_errno(
        s.create(
            ROOT_ID,
            "dir",
            REG | 0o644,
            RDWR | (libc::O_CREAT | libc::O_EXCL) as u32,
            0,
        ),
        libc::EEXIST,
        "EEXIST create",
    );
    assert_errno(s.rmdir(ROOT_ID, "dir"), libc::ENOTEMPTY, "ENOTEMPTY");
    let long = "n".repeat(256);
    assert_errno(
        s.lookup(ROOT_ID, &long),
        libc::ENAMETOOLONG,
        "ENAMETOOLONG lookup",
    );
    assert_errno(
        s.create(ROOT_ID, &long, REG | 0o644, RDWR, 0),
        libc::ENAMETOOLONG,
        "ENAMETOOLONG create",
    );
    assert_errno(
        s.mkdir(ROOT_ID, &long, 0o755, 0),
        libc::ENAMETOOLONG,
        "ENAMETOOLONG mkdir",
    );
    let max = "m".repeat(255);
    s.mkdir(ROOT_ID, &max, 0o755, 0).unwrap();
    assert!(b.host(&max).is_dir(), "a 255-byte name is fine");
    assert_errno(
        s.lookup(file.nodeid, "x"),
        libc::ENOTDIR,
        "ENOTDIR lookup under a file",
    );
    assert_errno(
        s.mkdir(file.nodeid, "x", 0o755, 0),
        libc::ENOTDIR,
        "ENOTDIR mkdir under a file",
    );
    assert_errno(s.rmdir(ROOT_ID, "file"), libc::ENOTDIR, "ENOTDIR rmdir");
    assert_errno(s.open(dir.nodeid, RDWR), libc::EISDIR, "EISDIR open");
    assert_errno(s.unlink(ROOT_ID, "dir"), libc::EISDIR, "EISDIR unlink");
    let o = s.open(file.nodeid, RDONLY).unwrap();
    assert_errno(
        s.read(file.nodeid, 0xdead_beef, 0, 10),
        libc::EBADF,
        "EBADF forged fh",
    );
    assert_errno(
        s.getattr(0xdead_beef, None),
        libc::EBADF,
        "EBADF forged node",
    );
    assert_errno(
        s.lookup(0xdead_beef, "x"),
        libc::EBADF,
        "EBADF forged parent",
    );
    s.release(file.nodeid, o.fh, 0, 0, 0).unwrap();

    drop(s);
    drop(b);

    // EXDEV: a different filesystem mounted inside the share (needs root). It is mounted
    // before the backend starts: a jailed worker serves the mount tree it saw at start.
    let b = Backend::start(
        kind,
        &Config {
            tmpfs_at: Some("mnt"),
            ..Config::default()
        },
    );
    if !b.has_tmpfs() {
        crate::common::skip::skip(
            "the EXDEV checks",
            "cannot mount a tmpfs in the share (needs CAP_SYS_ADMIN)",
        );
        return;
    }
    let s = b.session();
    fs::write(b.host("file"), b"x").unwrap();
    let file = s.lookup(ROOT_ID, "file").unwrap();
    let mnt = s.lookup(ROOT_ID, "mnt").unwrap();
    assert_errno(
        s.rename(ROOT_ID, "file", mnt.nodeid, "file"),
        libc::EXDEV,
        "EXDEV rename",
    );
    assert_errno(
        s.link(file.nodeid, mnt.nodeid, "hard"),
        libc::EXDEV,
        "EXDEV link",
    );
    assert!(b.host("file").exists());
    assert!(!b.host("mnt/file").exists() && !b.host("mnt/hard").exists());
    // Within the mount everything works.
    let (n, fh) = create_rw(&s, mnt.nodeid, "on-tmpfs", 0o600);
    s.write(n, fh, 0, b"t").unwrap();
    s.release(n, fh, 0, 0, 0).unwrap();
    assert_eq!(fs::read(b.host("mnt/on-tmpfs")).unwrap(), b"t");
    s.forget(n, 1).unwrap();
    s.forget(mnt.nodeid, 1).unwrap();
}

/// With --readonly every opcode that would change the share answers EROFS and the host is
/// untouched; reading still works.
pub(crate) fn readonly_refuses_every_change(kind: Kind) {
    let cfg = Config {
        readonly: true,
        xattr: true,
        ..Config::default()
    };
    let b = Backend::start(kind, &cfg);
    fs::write(b.host("f"), b"original").unwrap();
    fs::set_permissions(b.host("f"), fs::Permissions::from_mode(0o644)).unwrap();
    host_setxattr(&b.host("f"), "user.k", b"v");
    fs::create_dir(b.host("d")).unwrap();
    fs::write(b.host("d/inner"), b"").unwrap();
    fs::create_dir(b.host("empty")).unwrap();
    let snapshot = |b: &Backend| {
        let mut v = Vec::new();
        for n in ["f", "d", "d/inner", "empty"] {
            let md = lmeta(b.host(n));
            v.push((
                n,
                md.mode(),
                md.len(),
                md.mtime(),
                md.mtime_nsec(),
                md.nlink(),
            ));
        }
        (
            v,
            host_names(b.share()),
            host_names(b.host("d")),
            fs::read(b.host("f")).unwrap(),
        )
    };
    let before = snapshot(&b);

    let s = b.session();
    let f = s.lookup(ROOT_ID, "f").unwrap();
    let d = s.lookup(ROOT_ID, "d").unwrap();
    let ro = s.open(f.nodeid, RDONLY).unwrap();
    let erofs = |r: guest_driver::Result<()>, what: &str| assert_errno(r, libc::EROFS, what);

    erofs(
        s.setattr(f.nodeid, &Setattr::new().mode(0o600)).map(drop),
        "SETATTR mode",
    );
    erofs(
        s.setattr(f.nodeid, &Setattr::new().size(0)).map(drop),
        "SETATTR size",
    );
    erofs(
        s.setattr(f.nodeid, &Setattr::new().mtime_now()).map(drop),
        "SETATTR mtime",
    );
    erofs(s.symlink(ROOT_ID, "l", "f").map(drop), "SYMLINK");
    erofs(
        s.mknod(ROOT_ID, "fifo", libc::S_IFIFO | 0o600, 0, 0)
            .map(drop),
        "MKNOD",
    );
    erofs(s.mkdir(ROOT_ID, "new", 0o755, 0).map(drop), "MKDIR");
    erofs(s.unlink(ROOT_ID, "f"), "UNLINK");
    erofs(s.rmdir(ROOT_ID, "empty"), "RMDIR");
    erofs(s.rename(ROOT_ID, "f", ROOT_ID, "g"), "RENAME");
    erofs(
        s.rename2(ROOT_ID, "f", ROOT_ID, "d", libc::RENAME_EXCHANGE),
        "RENAME2",
    );
    erofs(s.link(f.nodeid, ROOT_ID, "hard").map(drop), "LINK");
    erofs(
        s.create(ROOT_ID, "c", REG | 0o644, RDWR, 0).map(drop),
        "CREATE",
    );
    match kind {
        Kind::Fsjail => erofs(
            s.tmpfile(ROOT_ID, REG | 0o600, RDWR, 0).map(drop),
            "TMPFILE",
        ),
        // virtiofsd 1.14 does not implement TMPFILE at all.
        Kind::Peer => {
            let e = errno(s.tmpfile(ROOT_ID, REG | 0o600, RDWR, 0));
            assert!(e == libc::EROFS || e == libc::ENOSYS, "TMPFILE: errno {e}");
        }
    }
    erofs(
        s.open(f.nodeid, libc::O_WRONLY as u32).map(drop),
        "OPEN O_WRONLY",
    );
    erofs(s.open(f.nodeid, RDWR).map(drop), "OPEN O_RDWR");
    let trunc = s
        .open(f.nodeid, (libc::O_RDONLY | libc::O_TRUNC) as u32)
        .map(drop);
    match kind {
        Kind::Fsjail => erofs(trunc, "OPEN O_TRUNC"),
        // virtiofsd refuses O_TRUNC without write access before asking the host.
        Kind::Peer => assert!(
            [libc::EROFS, libc::EINVAL].contains(&errno(trunc)),
            "O_TRUNC"
        ),
    }
    erofs(s.setxattr(f.nodeid, "user.k", b"w", 0), "SETXATTR");
    erofs(s.removexattr(f.nodeid, "user.k"), "REMOVEXATTR");
    if kind == Kind::Fsjail {
        // Through a read-only handle the host would say EBADF; fsjail's policy refuses first.
        erofs(s.write(f.nodeid, ro.fh, 0, b"x").map(drop), "WRITE");
        erofs(s.fallocate(f.nodeid, ro.fh, 0, 4096, 0), "FALLOCATE");
        let cfr = CopyFileRangeIn {
            fh_in: ro.fh,
            off_in: 0,
            nodeid_out: f.nodeid,
            fh_out: ro.fh,
            off_out: 100,
            len: 4,
            flags: 0,
        };
        erofs(
            s.copy_file_range(f.nodeid, cfr).map(drop),
            "COPY_FILE_RANGE",
        );
    } else {
        assert!(s.write(f.nodeid, ro.fh, 0, b"x").is_err());
        assert!(s.fallocate(f.nodeid, ro.fh, 0, 4096, 0).is_err());
    }

    // Reading works.
    assert_eq!(s.read(f.nodeid, ro.fh, 0, 100).unwrap(), b"original");
    assert_eq!(
        s.getxattr(f.nodeid, "user.k", 10).unwrap(),
        XattrReply::Data(b"v".to_vec())
    );
    let dh = s.opendir(d.nodeid, RDONLY).unwrap();
    let names: Vec<String> = s
        .readdir(d.nodeid, dh.fh, 0, 4096)
        .unwrap()
        .iter()
        .map(|e| e.name_str())
        .collect();
    assert!(names.contains(&"inner".to_string()));
    s.releasedir(d.nodeid, dh.fh, 0).unwrap();
    s.release(f.nodeid, ro.fh, 0, 0, 0).unwrap();
    s.statfs(ROOT_ID).unwrap();

    assert_eq!(snapshot(&b), before, "the host changed");
    assert_eq!(
        host_getxattr(&b.host("f"), "user.k").as_deref(),
        Some(&b"v"[..])
    );
}
