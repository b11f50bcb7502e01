//! An unprivileged broker (a real non-root user, through `setpriv`) emulates what its user
//! cannot do on the host: device nodes, chown to ids outside its one-id map, files made by guest
//! users that have no host id. The guest sees owners and modes a kernel can make its
//! permission checks on (it mounts with default_permissions); the host sees only regular files,
//! directories and symlinks owned by the broker's user (a guest FIFO is a regular file too).

mod broker_support;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use broker_support::{Broker, Dir};
use guest_driver::abi::ROOT_ID;
use guest_driver::{Context, Device, Session, Setattr};

const NOBODY: u32 = 65534;

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    for entry in fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if entry.file_type().unwrap().is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn as_user(s: &Session, uid: u32) {
    s.set_context(Context {
        uid,
        gid: uid,
        pid: 1,
    });
}

#[test]
fn an_unprivileged_broker_emulates_devices_and_owners() {
    // SAFETY: geteuid takes no arguments, touches no memory and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test becomes uid {NOBODY} with setpriv and needs root to start"
    );
    let dir = Dir::new();
    dir.write_policy(&dir.shares_policy(&["a"], ""));
    for entry in walk(&dir.path()) {
        std::os::unix::fs::lchown(&entry, Some(NOBODY), Some(NOBODY)).unwrap();
    }
    let ids = NOBODY.to_string();
    let mut broker =
        Broker::start_with(&dir, &["--reuid", &ids, "--regid", &ids, "--clear-groups"]);
    broker.wait_worker("a", 1);

    let s = Session::new(Arc::new(Device::connect(dir.socket("a")).unwrap()));
    s.init().unwrap();
    let share = dir.path().join("a");

    // A device node: the broker's user could never make one.
    let c = s
        .mknod(ROOT_ID, "tty", libc::S_IFCHR | 0o620, (4 << 8) | 1, 0)
        .unwrap();
    assert_eq!(c.attr.mode, libc::S_IFCHR | 0o620);
    assert_eq!(c.attr.rdev, (4 << 8) | 1);

    // A FIFO stands in as a regular file too, so that its owner can be recorded.
    let p = s
        .mknod(ROOT_ID, "fifo", libc::S_IFIFO | 0o644, 0, 0)
        .unwrap();
    let a = s.setattr(p.nodeid, &Setattr::new().uid(65533)).unwrap();
    assert_eq!((a.attr.uid, a.attr.mode), (65533, libc::S_IFIFO | 0o644));

    // chown to an id outside the map, and back.
    let f = s.mknod(ROOT_ID, "f", libc::S_IFREG | 0o644, 0, 0).unwrap();
    let a = s
        .setattr(f.nodeid, &Setattr::new().uid(65533).gid(65533))
        .unwrap();
    assert_eq!((a.attr.uid, a.attr.gid), (65533, 65533));
    assert_eq!(s.getattr(f.nodeid, None).unwrap().attr.uid, 65533);
    let a = s.setattr(f.nodeid, &Setattr::new().mode(0o4755)).unwrap();
    assert_eq!(a.attr.mode, libc::S_IFREG | 0o4755, "setuid, shown");
    assert_eq!((a.attr.uid, a.attr.gid), (65533, 65533));
    let a = s
        .setattr(f.nodeid, &Setattr::new().uid(0).gid(0).mode(0o644))
        .unwrap();
    assert_eq!(
        (a.attr.uid, a.attr.gid, a.attr.mode),
        (0, 0, libc::S_IFREG | 0o644)
    );

    // A sticky directory, a file in it made by guest user 1000 (no host id), renamed by its
    // owner. What a guest kernel checks a rename by another user against is the sticky bit and
    // the owners shown here.
    let t = s.mkdir(ROOT_ID, "tmp", 0o1777, 0).unwrap();
    assert_eq!(t.attr.mode, libc::S_IFDIR | 0o1777);
    as_user(&s, 1000);
    let mine = s
        .mknod(t.nodeid, "mine", libc::S_IFREG | 0o644, 0, 0)
        .unwrap();
    assert_eq!((mine.attr.uid, mine.attr.gid), (1000, 1000));
    let sub = s.mkdir(t.nodeid, "dir1000", 0o755, 0).unwrap();
    assert_eq!((sub.attr.uid, sub.attr.mode), (1000, libc::S_IFDIR | 0o755));
    s.rename(t.nodeid, "mine", t.nodeid, "mine2").unwrap();
    let l = s.lookup(t.nodeid, "mine2").unwrap();
    assert_eq!((l.attr.uid, l.attr.gid), (1000, 1000));
    as_user(&s, 1001);
    let theirs = s.lookup(t.nodeid, "mine2").unwrap();
    assert_eq!(
        theirs.attr.uid, 1000,
        "what the kernel's sticky check compares with"
    );
    as_user(&s, 0);
    drop(s);

    // The host: nothing but regular files, directories and symlinks, all the broker user's;
    // no setuid bit, no device.
    for p in walk(&share) {
        let md = fs::symlink_metadata(&p).unwrap();
        let ft = md.file_type();
        assert!(
            ft.is_file() || ft.is_dir() || ft.is_symlink(),
            "{p:?}: {ft:?}"
        );
        assert_eq!((md.uid(), md.gid()), (NOBODY, NOBODY), "{p:?}");
        assert_eq!(md.permissions().mode() & 0o6000, 0, "{p:?}");
        assert_eq!(md.rdev(), 0, "{p:?}");
    }
    broker.signal(libc::SIGTERM);
    assert_eq!(broker.wait_exit().code(), Some(0), "{}", broker.log());
}
