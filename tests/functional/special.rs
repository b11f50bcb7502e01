//! Emulated device nodes and owners (fsjail only: virtiofsd makes real device nodes).
//!
//! Through `fsjail serve` with its defaults (the namespace jail), a guest `mknod` of a block or
//! character device shows the guest that device in every reply, while the host holds an empty
//! regular file, mode 0600, with the record in `user.fsjail.stat`, which the guest can neither
//! see nor forge.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use guest_driver::abi::{Attr, ROOT_ID};
use guest_driver::Setattr;

use crate::common::{Backend, Config, Kind};
use crate::helpers::{assert_errno, host_getxattr, host_setxattr, lmeta, split_names, RDWR};

const RECORD: &str = "user.fsjail.stat";

/// `rdev` as a guest kernel encodes it (new_encode_dev), as FUSE carries it both ways.
fn guest_dev(major: u32, minor: u32) -> u32 {
    (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)
}

#[track_caller]
fn assert_dev(a: &Attr, fmt: u32, perm: u32, major: u32, minor: u32, what: &str) {
    assert_eq!(
        a.mode & libc::S_IFMT,
        fmt,
        "{what}: type (mode {:o})",
        a.mode
    );
    assert_eq!(a.mode & 0o7777, perm, "{what}: perm (mode {:o})", a.mode);
    assert_eq!(a.rdev, guest_dev(major, minor), "{what}: rdev");
    assert_eq!(a.size, 0, "{what}: size");
}

/// The host side of an emulated node: a plain empty regular file, mode 0600, no device bits.
#[track_caller]
fn assert_host_placeholder(b: &Backend, name: &str) {
    let md = lmeta(b.host(name));
    assert!(md.file_type().is_file(), "{name}: {:?}", md.file_type());
    assert_eq!(md.mode(), libc::S_IFREG | 0o600, "{name}: host mode");
    assert_eq!((md.rdev(), md.len()), (0, 0), "{name}: host rdev and size");
}

fn start(args: &[&str], xattr: bool) -> Backend {
    Backend::start(
        Kind::Fsjail,
        &Config {
            xattr,
            fsjail_args: args.iter().map(|a| a.to_string()).collect(),
            ..Config::default()
        },
    )
}

/// mknod b/c, then every attribute reply, chmod, chown, utimens, link, rename, unlink; for
/// the jail (the default) and for `--sandbox none`.
#[test]
fn device_nodes_are_emulated() {
    for args in [&[][..], &["--sandbox", "none"][..]] {
        let b = start(args, false);
        let s = b.session();
        let c = s.mknod(
            ROOT_ID,
            "tty",
            libc::S_IFCHR | 0o666,
            guest_dev(4, 1),
            0o022,
        );
        let c = c.unwrap_or_else(|e| panic!("{args:?}: mknod: {e}"));
        assert_dev(&c.attr, libc::S_IFCHR, 0o644, 4, 1, "MKNOD c");
        let blk = s
            .mknod(
                ROOT_ID,
                "nvme",
                libc::S_IFBLK | 0o660,
                guest_dev(259, 70000),
                0,
            )
            .unwrap();
        assert_dev(&blk.attr, libc::S_IFBLK, 0o660, 259, 70000, "MKNOD b");
        assert_eq!(
            (c.attr.uid, c.attr.gid),
            (0, 0),
            "the request's credentials"
        );
        assert_host_placeholder(&b, "tty");
        assert_host_placeholder(&b, "nvme");
        assert_eq!(
            host_getxattr(&b.host("tty"), RECORD).as_deref(),
            Some(&b"v=1 type=c perm=0644 uid=0 gid=0 rdev=4:1"[..])
        );

        let l = s.lookup(ROOT_ID, "tty").unwrap();
        assert_dev(&l.attr, libc::S_IFCHR, 0o644, 4, 1, "LOOKUP");
        let g = s.getattr(c.nodeid, None).unwrap();
        assert_dev(&g.attr, libc::S_IFCHR, 0o644, 4, 1, "GETATTR");
        let dir = s.opendir(ROOT_ID, 0).unwrap();
        let plus = s.readdirplus(ROOT_ID, dir.fh, 0, 4096).unwrap();
        for e in &plus {
            let (ty, fmt) = match &e.dirent.name[..] {
                b"tty" => (libc::DT_CHR, libc::S_IFCHR),
                b"nvme" => (libc::DT_BLK, libc::S_IFBLK),
                other => panic!("unexpected {other:?}"),
            };
            assert_eq!(e.dirent.type_, u32::from(ty), "READDIRPLUS d_type");
            assert_eq!(e.entry.attr.mode & libc::S_IFMT, fmt, "READDIRPLUS attr");
        }
        assert_eq!(plus.len(), 2);
        let plain = s.readdir(ROOT_ID, dir.fh, 0, 4096).unwrap();
        let mut types: Vec<(Vec<u8>, u32)> =
            plain.iter().map(|d| (d.name.clone(), d.type_)).collect();
        types.sort();
        assert_eq!(
            types,
            vec![
                (b"nvme".to_vec(), u32::from(libc::DT_BLK)),
                (b"tty".to_vec(), u32::from(libc::DT_CHR)),
            ],
            "READDIR d_type"
        );

        // chmod, chown, utimens: on the emulated node, as a kernel would do them.
        let a = s.setattr(c.nodeid, &Setattr::new().mode(0o620)).unwrap();
        assert_dev(&a.attr, libc::S_IFCHR, 0o620, 4, 1, "chmod");
        let a = s
            .setattr(c.nodeid, &Setattr::new().uid(65533).gid(5))
            .unwrap();
        assert_eq!((a.attr.uid, a.attr.gid), (65533, 5), "chown");
        assert_dev(&a.attr, libc::S_IFCHR, 0o620, 4, 1, "chown");
        let a = s
            .setattr(c.nodeid, &Setattr::new().mtime(1_000_000, 7))
            .unwrap();
        assert_eq!((a.attr.mtime, a.attr.mtimensec), (1_000_000, 7), "utimens");
        assert_eq!(lmeta(b.host("tty")).mtime(), 1_000_000);
        assert_errno(
            s.setattr(c.nodeid, &Setattr::new().size(5)),
            libc::EINVAL,
            "truncate of a device",
        );
        // The worker never opens the placeholder as the device.
        assert_errno(
            s.open(c.nodeid, RDWR),
            libc::EBADF,
            "OPEN of an emulated node",
        );
        assert_host_placeholder(&b, "tty");
        assert_eq!(
            lmeta(b.host("tty")).uid(),
            0,
            "the host file keeps its owner"
        );

        let linked = s.link(c.nodeid, ROOT_ID, "tty-link").unwrap();
        assert_eq!(linked.attr.nlink, 2);
        assert_dev(&linked.attr, libc::S_IFCHR, 0o620, 4, 1, "LINK");
        assert_eq!(linked.attr.uid, 65533);
        s.rename(ROOT_ID, "tty", ROOT_ID, "tty-moved").unwrap();
        let moved = s.lookup(ROOT_ID, "tty-moved").unwrap();
        assert_dev(&moved.attr, libc::S_IFCHR, 0o620, 4, 1, "after RENAME");
        s.unlink(ROOT_ID, "tty-moved").unwrap();
        let left = s.getattr(linked.nodeid, None).unwrap();
        assert_eq!(left.attr.nlink, 1);
        assert_dev(&left.attr, libc::S_IFCHR, 0o620, 4, 1, "after UNLINK");
        // mknod on an existing name: EEXIST, whatever the type.
        assert_errno(
            s.mknod(ROOT_ID, "tty-link", libc::S_IFIFO | 0o600, 0, 0),
            libc::EEXIST,
            "mknod over an emulated node",
        );
        s.unlink(ROOT_ID, "tty-link").unwrap();
        s.unlink(ROOT_ID, "nvme").unwrap();
        assert_eq!(fs::read_dir(b.share()).unwrap().count(), 0, "{args:?}");
    }
}

/// The record is fsjail's: not listed, not readable, not settable, not removable; with
/// xattrs on and off.
#[test]
fn the_record_is_hidden_from_the_guest() {
    let b = start(&[], true);
    let s = b.session();
    let c = s
        .mknod(ROOT_ID, "tty", libc::S_IFCHR | 0o600, guest_dev(4, 1), 0)
        .unwrap();
    let stored = host_getxattr(&b.host("tty"), RECORD).unwrap();
    assert_errno(
        s.getxattr(c.nodeid, RECORD, 0),
        libc::ENODATA,
        "GETXATTR size",
    );
    assert_errno(s.getxattr(c.nodeid, RECORD, 256), libc::ENODATA, "GETXATTR");
    s.setxattr(c.nodeid, "user.guest", b"1", 0).unwrap();
    match s.listxattr(c.nodeid, 4096).unwrap() {
        guest_driver::XattrReply::Data(d) => {
            assert_eq!(split_names(&d), [b"user.guest".to_vec()].into())
        }
        other => panic!("LISTXATTR: {other:?}"),
    }
    match s.listxattr(c.nodeid, 0).unwrap() {
        guest_driver::XattrReply::Size(n) => assert_eq!(n, 11, "the size leaves ours out"),
        other => panic!("LISTXATTR size: {other:?}"),
    }
    let forged = b"v=1 type=b perm=0666 uid=0 gid=0 rdev=8:0";
    assert_errno(
        s.setxattr(c.nodeid, RECORD, forged, 0),
        libc::ENODATA,
        "SETXATTR of the record",
    );
    assert_errno(
        s.removexattr(c.nodeid, RECORD),
        libc::ENODATA,
        "REMOVEXATTR",
    );
    assert_eq!(host_getxattr(&b.host("tty"), RECORD), Some(stored));

    // Forging one on a plain file: refused, and the file stays what it is.
    let f = s
        .mknod(ROOT_ID, "plain", libc::S_IFREG | 0o600, 0, 0)
        .unwrap();
    assert_errno(
        s.setxattr(f.nodeid, RECORD, forged, 0),
        libc::ENODATA,
        "SETXATTR on a plain file",
    );
    assert_errno(
        s.setxattr(f.nodeid, "user.fsjail.other", b"x", 0),
        libc::ENODATA,
        "the whole user.fsjail. prefix is reserved",
    );
    assert_eq!(host_getxattr(&b.host("plain"), RECORD), None);
    let l = s.lookup(ROOT_ID, "plain").unwrap();
    assert_eq!(l.attr.mode, libc::S_IFREG | 0o600);

    // Without --xattr the guest gets no xattrs at all, and still sees the device.
    let b = start(&[], false);
    let s = b.session();
    let c = s
        .mknod(ROOT_ID, "tty", libc::S_IFCHR | 0o600, guest_dev(4, 1), 0)
        .unwrap();
    assert_dev(&c.attr, libc::S_IFCHR, 0o600, 4, 1, "MKNOD without xattrs");
    assert_errno(s.getxattr(c.nodeid, RECORD, 256), libc::ENOSYS, "GETXATTR");
    assert_errno(s.listxattr(c.nodeid, 256), libc::ENOSYS, "LISTXATTR");
    assert_errno(
        s.setxattr(c.nodeid, RECORD, forged, 0),
        libc::ENOSYS,
        "SETXATTR",
    );
    assert_errno(s.removexattr(c.nodeid, RECORD), libc::ENOSYS, "REMOVEXATTR");
}

/// A record the worker did not write (on a file others could write), or a malformed one, is
/// not honoured: the guest sees the plain host file, and the log says why once.
#[test]
fn records_from_elsewhere_are_not_honoured() {
    let b = start(&[], false);
    let good = b"v=1 type=b perm=0600 uid=0 gid=0 rdev=8:0";
    for (name, mode, value) in [
        ("ok", 0o600, &good[..]),
        ("group-writable", 0o620, &good[..]),
        ("malformed", 0o600, &b"v=1 type=b perm=99 uid=0"[..]),
    ] {
        fs::write(b.host(name), b"").unwrap();
        fs::set_permissions(b.host(name), fs::Permissions::from_mode(mode)).unwrap();
        host_setxattr(&b.host(name), RECORD, value);
    }
    let s = b.session();
    let ok = s.lookup(ROOT_ID, "ok").unwrap();
    assert_dev(
        &ok.attr,
        libc::S_IFBLK,
        0o600,
        8,
        0,
        "a record as fsjail writes it",
    );
    let gw = s.lookup(ROOT_ID, "group-writable").unwrap();
    assert_eq!(gw.attr.mode, libc::S_IFREG | 0o620);
    let bad = s.lookup(ROOT_ID, "malformed").unwrap();
    assert_eq!(bad.attr.mode, libc::S_IFREG | 0o600);
    assert!(
        b.log_shows(
            "malformed user.fsjail.stat",
            std::time::Duration::from_secs(10)
        ),
        "no warning in the log:\n{}",
        b.log()
    );
    // A plain file opens as one.
    let o = s.open(bad.nodeid, RDWR).unwrap();
    s.release(bad.nodeid, o.fh, RDWR, 0, 0).unwrap();
}

/// `--special-files host` makes a real node (the worker keeps CAP_MKNOD), as virtiofsd does.
#[test]
fn special_files_host_makes_real_nodes() {
    let b = start(&["--special-files", "host"], false);
    let s = b.session();
    let c = s
        .mknod(ROOT_ID, "null", libc::S_IFCHR | 0o666, guest_dev(1, 3), 0)
        .unwrap();
    use std::os::unix::fs::FileTypeExt;
    let md = lmeta(b.host("null"));
    assert!(md.file_type().is_char_device());
    assert_eq!(md.rdev(), libc::makedev(1, 3));
    assert_eq!(c.attr.mode, libc::S_IFCHR | 0o666);
    assert_errno(
        s.open(c.nodeid, RDWR),
        libc::EBADF,
        "OPEN of a host device node",
    );
}

/// `--ownership emulate` as root: a chown the host does not get, shown to the guest.
#[test]
fn ownership_emulate_records_the_owner() {
    let b = start(&["--ownership", "emulate"], false);
    let s = b.session();
    let f = s.mknod(ROOT_ID, "f", libc::S_IFREG | 0o644, 0, 0).unwrap();
    let a = s
        .setattr(f.nodeid, &Setattr::new().uid(65533).gid(65533))
        .unwrap();
    assert_eq!((a.attr.uid, a.attr.gid), (65533, 65533));
    let a = s.setattr(f.nodeid, &Setattr::new().mode(0o4755)).unwrap();
    assert_eq!(a.attr.mode, libc::S_IFREG | 0o4755);
    let md = lmeta(b.host("f"));
    assert_eq!(
        (md.uid(), md.gid()),
        (0, 0),
        "the host file stays the worker's"
    );
    assert_eq!(md.mode() & 0o7777, 0o755, "no setuid bit on the host");
    // And back: the record goes, the host holds it all.
    let a = s.setattr(f.nodeid, &Setattr::new().uid(0).gid(0)).unwrap();
    assert_eq!(
        (a.attr.uid, a.attr.gid, a.attr.mode & 0o7777),
        (0, 0, 0o4755)
    );
    assert_eq!(host_getxattr(&b.host("f"), RECORD), None);
}

/// What the guest sees of device nodes is the same with virtiofsd (real nodes on the host) and
/// fsjail (emulated): mknod b/c, then stat, chmod, chown, link, rename and unlink, each reply
/// compared with what a kernel keeps for a real node. Only the host side differs.
pub(crate) fn device_nodes_as_the_guest_sees_them(kind: Kind) {
    let b = Backend::start(kind, &Config::default());
    let s = b.session();
    let c = s
        .mknod(ROOT_ID, "c", libc::S_IFCHR | 0o640, guest_dev(1, 3), 0)
        .unwrap();
    let k = s
        .mknod(ROOT_ID, "b", libc::S_IFBLK | 0o600, guest_dev(7, 0), 0)
        .unwrap();
    assert_dev(&c.attr, libc::S_IFCHR, 0o640, 1, 3, "MKNOD c");
    assert_dev(&k.attr, libc::S_IFBLK, 0o600, 7, 0, "MKNOD b");
    assert_eq!((c.attr.uid, c.attr.gid, c.attr.nlink), (0, 0, 1));
    let a = s.setattr(c.nodeid, &Setattr::new().mode(0o604)).unwrap();
    assert_dev(&a.attr, libc::S_IFCHR, 0o604, 1, 3, "chmod");
    let a = s
        .setattr(k.nodeid, &Setattr::new().uid(4242).gid(4343))
        .unwrap();
    assert_eq!((a.attr.uid, a.attr.gid), (4242, 4343), "chown");
    assert_dev(&a.attr, libc::S_IFBLK, 0o600, 7, 0, "chown");
    let l = s.link(c.nodeid, ROOT_ID, "c2").unwrap();
    assert_eq!(l.attr.nlink, 2);
    assert_dev(&l.attr, libc::S_IFCHR, 0o604, 1, 3, "LINK");
    s.unlink(ROOT_ID, "c").unwrap();
    s.rename(ROOT_ID, "c2", ROOT_ID, "c3").unwrap();
    let g = s.getattr(l.nodeid, None).unwrap();
    assert_eq!(g.attr.nlink, 1);
    assert_dev(
        &g.attr,
        libc::S_IFCHR,
        0o604,
        1,
        3,
        "after UNLINK and RENAME",
    );
    let g = s.lookup(ROOT_ID, "b").unwrap();
    assert_eq!((g.attr.uid, g.attr.gid), (4242, 4343));
    use std::os::unix::fs::FileTypeExt;
    let host = lmeta(b.host("c3"));
    match kind {
        Kind::Peer => assert!(
            host.file_type().is_char_device(),
            "virtiofsd makes real nodes"
        ),
        Kind::Fsjail => assert_host_placeholder(&b, "c3"),
    }
    s.unlink(ROOT_ID, "c3").unwrap();
    s.unlink(ROOT_ID, "b").unwrap();
    assert_eq!(fs::read_dir(b.share()).unwrap().count(), 0);
}
