//! The emulation over a real PassthroughFs (and the share policy) on temporary directories.
//!
//! These run as whatever user runs the tests: the worker's own uid is then the owner whose
//! files may carry a record, as in a real worker.

use std::ffi::CString;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use fuse_backend_rs::abi::fuse_abi::stat64;
use fuse_backend_rs::api::filesystem::{
    Context, DirEntry, Entry, FileSystem, ListxattrReply, SetattrValid, ROOT_ID,
};
use fuse_backend_rs::passthrough::PassthroughFs;
use tempfile::TempDir;

use super::record;
use super::{Emulation, Ownership, SpecialFiles};
use crate::fs::{new_passthrough, ShareOptions, SharePolicy};

type Fs = Emulation<SharePolicy<PassthroughFs>>;

fn ctx() -> Context {
    let mut ctx = Context::new();
    // SAFETY: geteuid/getegid cannot fail.
    unsafe {
        ctx.uid = libc::geteuid();
        ctx.gid = libc::getegid();
    }
    ctx
}

fn cstr(s: &str) -> CString {
    CString::new(s).unwrap()
}

fn errno<T>(r: io::Result<T>) -> i32 {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.raw_os_error().unwrap(),
    }
}

fn share_with(special: SpecialFiles, ownership: Ownership, guest_xattr: bool) -> (TempDir, Fs) {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = ShareOptions::new(dir.path());
    // The emulation reaches its record through the inner filesystem's xattr calls.
    opts.xattr = true;
    let pfs = new_passthrough(&opts).unwrap();
    let policy = SharePolicy::new(pfs, false).with_allow_devices(special == SpecialFiles::Host);
    (dir, Emulation::new(policy, special, ownership, guest_xattr))
}

fn share() -> (TempDir, Fs) {
    share_with(SpecialFiles::Emulate, Ownership::Host, true)
}

/// The record as stored on the host, read with the host's own getxattr.
fn host_record(path: &Path) -> Option<String> {
    let p = cstr(path.to_str().unwrap());
    let mut buf = [0u8; 256];
    // SAFETY: NUL-terminated strings; `buf` is writable for its length.
    let n = unsafe {
        libc::lgetxattr(
            p.as_ptr(),
            record::NAME.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    (n >= 0).then(|| String::from_utf8_lossy(&buf[..n as usize]).into_owned())
}

fn set_host_record(path: &Path, value: &[u8]) {
    let p = cstr(path.to_str().unwrap());
    // SAFETY: NUL-terminated strings; `value` is a valid slice.
    let rc = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            record::NAME.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(rc, 0, "lsetxattr: {}", io::Error::last_os_error());
}

/// `rdev` as a guest kernel encodes it (new_encode_dev).
fn guest_dev(major: u32, minor: u32) -> u32 {
    (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)
}

/// A guest chown: SETATTR of the owner, and of the group when given; returns the attributes
/// of the reply.
fn chown<F: FileSystem<Inode = u64, Handle = u64>>(
    fs: &F,
    inode: u64,
    uid: u32,
    gid: Option<u32>,
) -> stat64 {
    // SAFETY: stat64 is plain integers.
    let mut attr: stat64 = unsafe { std::mem::zeroed() };
    attr.st_uid = uid;
    let mut valid = SetattrValid::UID;
    if let Some(gid) = gid {
        attr.st_gid = gid;
        valid |= SetattrValid::GID;
    }
    fs.setattr(&ctx(), inode, attr, None, valid).unwrap().0
}

fn mknod_chr(fs: &Fs, name: &str, perm: u32) -> Entry {
    fs.mknod(
        &ctx(),
        ROOT_ID,
        &cstr(name),
        libc::S_IFCHR | perm,
        guest_dev(4, 1),
        0o022,
    )
    .unwrap()
}

fn assert_device(st: &stat64, fmt: u32, perm: u32, major: u32, minor: u32) {
    assert_eq!(st.st_mode & libc::S_IFMT, fmt, "type {:o}", st.st_mode);
    assert_eq!(st.st_mode & 0o7777, perm, "perm {:o}", st.st_mode);
    assert_eq!(
        (libc::major(st.st_rdev), libc::minor(st.st_rdev)),
        (major, minor)
    );
}

fn assert_plain_host_file(path: &Path) {
    let m = std::fs::symlink_metadata(path).unwrap();
    assert!(m.file_type().is_file(), "{path:?} is {:?}", m.file_type());
    assert_eq!(m.rdev(), 0);
    assert_eq!(m.len(), 0);
    assert_eq!(m.permissions().mode() & 0o7777, 0o600);
}

#[test]
fn mknod_makes_a_regular_host_file_and_shows_the_device() {
    let (dir, fs) = share();
    let e = mknod_chr(&fs, "tty", 0o666);
    // The guest's umask applies to the bits the guest sees.
    assert_device(&e.attr, libc::S_IFCHR, 0o644, 4, 1);
    let host = dir.path().join("tty");
    assert_plain_host_file(&host);
    assert_eq!(
        host_record(&host).unwrap(),
        format!(
            "v=1 type=c perm=0644 uid={} gid={} rdev=4:1",
            ctx().uid,
            ctx().gid
        )
    );

    let blk = fs
        .mknod(
            &ctx(),
            ROOT_ID,
            &cstr("sda"),
            libc::S_IFBLK | 0o660,
            guest_dev(259, 70000),
            0,
        )
        .unwrap();
    assert_device(&blk.attr, libc::S_IFBLK, 0o660, 259, 70000);
    assert_plain_host_file(&dir.path().join("sda"));

    // LOOKUP, GETATTR and READDIRPLUS agree, d_type included.
    let l = fs.lookup(&ctx(), ROOT_ID, &cstr("tty")).unwrap();
    assert_eq!(l.inode, e.inode);
    assert_device(&l.attr, libc::S_IFCHR, 0o644, 4, 1);
    let (st, _) = fs.getattr(&ctx(), e.inode, None).unwrap();
    assert_device(&st, libc::S_IFCHR, 0o644, 4, 1);
    let (h, _) = fs.opendir(&ctx(), ROOT_ID, 0).unwrap();
    let mut seen = Vec::new();
    fs.readdirplus(
        &ctx(),
        ROOT_ID,
        h.unwrap(),
        4096,
        0,
        &mut |d: DirEntry, e: Entry| {
            seen.push((
                String::from_utf8_lossy(d.name).into_owned(),
                d.type_,
                e.attr.st_mode & libc::S_IFMT,
            ));
            Ok(1)
        },
    )
    .unwrap();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            ("sda".into(), u32::from(libc::DT_BLK), libc::S_IFBLK),
            ("tty".into(), u32::from(libc::DT_CHR), libc::S_IFCHR),
        ]
    );
    // Existing name: EEXIST, as for any mknod.
    assert_eq!(
        errno(fs.mknod(&ctx(), ROOT_ID, &cstr("tty"), libc::S_IFCHR | 0o600, 0, 0)),
        libc::EEXIST
    );
}

#[test]
fn chmod_chown_times_link_rename_unlink_act_on_the_emulated_node() {
    let (dir, fs) = share();
    let e = mknod_chr(&fs, "null", 0o666);
    let c = ctx();
    // SAFETY: stat64 is plain integers.
    let mut attr: stat64 = unsafe { std::mem::zeroed() };

    attr.st_mode = 0o4640;
    let (st, _) = fs
        .setattr(&c, e.inode, attr, None, SetattrValid::MODE)
        .unwrap();
    assert_device(&st, libc::S_IFCHR, 0o4640, 4, 1);

    let st = chown(&fs, e.inode, 65533, Some(65532));
    assert_eq!((st.st_uid, st.st_gid), (65533, 65532));
    assert_device(&st, libc::S_IFCHR, 0o4640, 4, 1);

    attr.st_mtime = 1_000_000;
    attr.st_atime = 2_000_000;
    let (st, _) = fs
        .setattr(
            &c,
            e.inode,
            attr,
            None,
            SetattrValid::ATIME | SetattrValid::MTIME,
        )
        .unwrap();
    assert_eq!((st.st_mtime, st.st_atime), (1_000_000, 2_000_000));
    assert_eq!(st.st_uid, 65533);

    let host = dir.path().join("null");
    assert_plain_host_file(&host);
    let m = std::fs::metadata(&host).unwrap();
    assert_eq!((m.uid(), m.mtime()), (c.uid, 1_000_000));
    // truncate(2) of a device is EINVAL; the host file stays empty.
    attr.st_size = 10;
    assert_eq!(
        errno(fs.setattr(&c, e.inode, attr, None, SetattrValid::SIZE)),
        libc::EINVAL
    );
    // OPEN is refused: the host file is never handed to the guest as the device.
    assert_eq!(
        errno(fs.open(&c, e.inode, libc::O_RDWR as u32, 0)),
        libc::EBADF
    );

    let l = fs.link(&c, e.inode, ROOT_ID, &cstr("null2")).unwrap();
    assert_eq!(l.attr.st_nlink, 2);
    assert_device(&l.attr, libc::S_IFCHR, 0o4640, 4, 1);
    fs.rename(&c, ROOT_ID, &cstr("null"), ROOT_ID, &cstr("moved"), 0)
        .unwrap();
    let m = fs.lookup(&c, ROOT_ID, &cstr("moved")).unwrap();
    assert_device(&m.attr, libc::S_IFCHR, 0o4640, 4, 1);
    fs.unlink(&c, ROOT_ID, &cstr("moved")).unwrap();
    let (st, _) = fs.getattr(&c, l.inode, None).unwrap();
    assert_eq!(st.st_nlink, 1);
    assert_device(&st, libc::S_IFCHR, 0o4640, 4, 1);
    fs.unlink(&c, ROOT_ID, &cstr("null2")).unwrap();
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn the_guest_cannot_see_or_forge_the_record() {
    let (dir, fs) = share();
    let e = mknod_chr(&fs, "tty", 0o600);
    let c = ctx();
    let name = record::NAME;
    assert_eq!(errno(fs.getxattr(&c, e.inode, name, 0)), libc::ENODATA);
    assert_eq!(errno(fs.getxattr(&c, e.inode, name, 256)), libc::ENODATA);
    assert_eq!(
        errno(fs.getxattr(&c, e.inode, c"user.fsjail.other", 256)),
        libc::ENODATA
    );
    match fs.listxattr(&c, e.inode, 0).unwrap() {
        ListxattrReply::Count(n) => assert_eq!(n, 0),
        ListxattrReply::Names(_) => panic!("size 0 answers a count"),
    }
    // A guest attribute of its own is listed, ours is not.
    fs.setxattr(&c, e.inode, c"user.mine", b"1", 0).unwrap();
    match fs.listxattr(&c, e.inode, 1024).unwrap() {
        ListxattrReply::Names(n) => assert_eq!(n, b"user.mine\0"),
        ListxattrReply::Count(_) => panic!("expected names"),
    }
    match fs.listxattr(&c, e.inode, 0).unwrap() {
        ListxattrReply::Count(n) => assert_eq!(n, 10),
        ListxattrReply::Names(_) => panic!("size 0 answers a count"),
    }
    assert_eq!(
        errno(fs.listxattr(&c, e.inode, 3)),
        libc::ERANGE,
        "too small for the guest's own names"
    );
    // Setting or removing ours answers as for a missing attribute and changes nothing.
    let forged = b"v=1 type=b perm=0666 uid=0 gid=0 rdev=8:0";
    assert_eq!(
        errno(fs.setxattr(&c, e.inode, name, forged, 0)),
        libc::ENODATA
    );
    assert_eq!(errno(fs.removexattr(&c, e.inode, name)), libc::ENODATA);
    let f = fs
        .create(
            &c,
            ROOT_ID,
            &cstr("plain"),
            fuse_backend_rs::abi::fuse_abi::CreateIn {
                flags: libc::O_RDWR as u32,
                mode: 0o600,
                umask: 0,
                fuse_flags: 0,
            },
        )
        .unwrap()
        .0;
    assert_eq!(
        errno(fs.setxattr(&c, f.inode, name, forged, 0)),
        libc::ENODATA
    );
    let (st, _) = fs.getattr(&c, f.inode, None).unwrap();
    assert_eq!(st.st_mode & libc::S_IFMT, libc::S_IFREG);
    assert_eq!(host_record(&dir.path().join("plain")), None);
    assert!(host_record(&dir.path().join("tty"))
        .unwrap()
        .starts_with("v=1 type=c"));

    // A share without xattrs refuses them all, ours included, as the passthrough does.
    let (_d2, no_x) = share_with(SpecialFiles::Emulate, Ownership::Host, false);
    let e2 = mknod_chr(&no_x, "tty", 0o600);
    assert_device(&e2.attr, libc::S_IFCHR, 0o600, 4, 1);
    assert_eq!(errno(no_x.getxattr(&c, e2.inode, name, 64)), libc::ENOSYS);
    assert_eq!(errno(no_x.listxattr(&c, e2.inode, 64)), libc::ENOSYS);
    assert_eq!(
        errno(no_x.setxattr(&c, e2.inode, name, forged, 0)),
        libc::ENOSYS
    );
    assert_eq!(errno(no_x.removexattr(&c, e2.inode, name)), libc::ENOSYS);
}

#[test]
fn a_record_not_written_by_the_worker_is_not_honoured() {
    let (dir, fs) = share();
    let c = ctx();
    let make = |name: &str, mode: u32, value: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, b"").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        set_host_record(&p, value);
        fs.lookup(&c, ROOT_ID, &cstr(name)).unwrap()
    };
    let good = b"v=1 type=b perm=0600 uid=0 gid=0 rdev=8:0";
    assert_eq!(
        make("ok", 0o600, good).attr.st_mode & libc::S_IFMT,
        libc::S_IFBLK
    );
    // Malformed, unknown version, wrong host type: the plain host file.
    for (name, value) in [
        ("garbage", &b"\xff\xfe nonsense"[..]),
        ("v2", &b"v=2 type=b perm=0600 uid=0 gid=0 rdev=8:0"[..]),
        (
            "dir-record",
            &b"v=1 type=d perm=0755 uid=0 gid=0 rdev=0:0"[..],
        ),
        ("long", &[b'x'; 200][..]),
    ] {
        let e = make(name, 0o600, value);
        assert_eq!(e.attr.st_mode, libc::S_IFREG | 0o600, "{name}");
    }
    // Writable by group or others: anyone could have set it.
    for (name, mode) in [("g-w", 0o620), ("o-w", 0o606)] {
        let e = make(name, mode, good);
        assert_eq!(e.attr.st_mode & libc::S_IFMT, libc::S_IFREG, "{name}");
    }
    // Not empty: a device's host file never holds data.
    let p = dir.path().join("data");
    std::fs::write(&p, b"x").unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    set_host_record(&p, good);
    let e = fs.lookup(&c, ROOT_ID, &cstr("data")).unwrap();
    assert_eq!(e.attr.st_mode & libc::S_IFMT, libc::S_IFREG);
    // The plain file opens as one.
    let (h, _, _) = fs.open(&c, e.inode, libc::O_RDONLY as u32, 0).unwrap();
    fs.release(&c, e.inode, 0, h.unwrap(), false, false, None)
        .unwrap();
}

/// Each file's last answer is remembered while its ctime holds (`super::seen`): a record set
/// or removed on the host behind the worker's back must still show at the very next reply.
#[test]
fn a_record_changed_on_the_host_shows_at_the_next_reply() {
    let (dir, fs) = share();
    let c = ctx();
    let p = dir.path().join("later");
    std::fs::write(&p, b"").unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    let e = fs.lookup(&c, ROOT_ID, &cstr("later")).unwrap();
    assert_eq!(e.attr.st_mode, libc::S_IFREG | 0o600);
    let (st, _) = fs.getattr(&c, e.inode, None).unwrap();
    assert_eq!(
        st.st_mode,
        libc::S_IFREG | 0o600,
        "twice, the second answer remembered"
    );

    set_host_record(&p, b"v=1 type=b perm=0640 uid=0 gid=0 rdev=8:1");
    let (st, _) = fs.getattr(&c, e.inode, None).unwrap();
    assert_device(&st, libc::S_IFBLK, 0o640, 8, 1);

    let name = cstr(p.to_str().unwrap());
    // SAFETY: NUL-terminated strings that outlive the call.
    let rc = unsafe { libc::lremovexattr(name.as_ptr(), record::NAME.as_ptr()) };
    assert_eq!(rc, 0, "lremovexattr: {}", io::Error::last_os_error());
    let (st, _) = fs.getattr(&c, e.inode, None).unwrap();
    assert_eq!(st.st_mode, libc::S_IFREG | 0o600);

    // The worker's own write of a record: a guest chmod of an emulated node.
    let dev = mknod_chr(&fs, "tty", 0o600);
    let (st, _) = fs.getattr(&c, dev.inode, None).unwrap();
    assert_device(&st, libc::S_IFCHR, 0o600, 4, 1);
    let mut attr = st;
    attr.st_mode = 0o604;
    fs.setattr(&c, dev.inode, attr, None, SetattrValid::MODE)
        .unwrap();
    let (st, _) = fs.getattr(&c, dev.inode, None).unwrap();
    assert_device(&st, libc::S_IFCHR, 0o604, 4, 1);
}

#[test]
fn special_files_host_and_refuse() {
    let c = ctx();
    let (_d, refuse) = share_with(SpecialFiles::Refuse, Ownership::Host, false);
    assert_eq!(
        errno(refuse.mknod(
            &c,
            ROOT_ID,
            &cstr("tty"),
            libc::S_IFCHR | 0o600,
            guest_dev(4, 1),
            0
        )),
        libc::EPERM
    );
    // FIFOs stay real under every setting; OPEN of one is refused (the guest opens its own),
    // by the passthrough, which opens only regular files and directories.
    for special in [SpecialFiles::Emulate, SpecialFiles::Refuse] {
        let (dir, fs) = share_with(special, Ownership::Host, false);
        let e = fs
            .mknod(&c, ROOT_ID, &cstr("fifo"), libc::S_IFIFO | 0o644, 0, 0)
            .unwrap();
        assert_eq!(e.attr.st_mode, libc::S_IFIFO | 0o644);
        use std::os::unix::fs::FileTypeExt;
        let ft = std::fs::symlink_metadata(dir.path().join("fifo"))
            .unwrap()
            .file_type();
        assert!(ft.is_fifo());
        assert_eq!(
            errno(fs.open(&c, e.inode, libc::O_RDONLY as u32, 0)),
            libc::EBADF
        );
    }
    if c.uid == 0 {
        let (dir, host) = share_with(SpecialFiles::Host, Ownership::Host, false);
        let e = host
            .mknod(
                &c,
                ROOT_ID,
                &cstr("null"),
                libc::S_IFCHR | 0o666,
                guest_dev(1, 3),
                0,
            )
            .unwrap();
        assert_eq!(e.attr.st_mode & libc::S_IFMT, libc::S_IFCHR);
        use std::os::unix::fs::FileTypeExt;
        assert!(std::fs::symlink_metadata(dir.path().join("null"))
            .unwrap()
            .file_type()
            .is_char_device());
    }
}

#[test]
fn emulated_ownership_records_what_the_host_cannot_hold() {
    let (dir, fs) = share_with(SpecialFiles::Emulate, Ownership::Emulate, false);
    let c = ctx();
    let f = fs
        .create(
            &c,
            ROOT_ID,
            &cstr("f"),
            fuse_backend_rs::abi::fuse_abi::CreateIn {
                flags: libc::O_RDWR as u32,
                mode: 0o666,
                umask: 0,
                fuse_flags: 0,
            },
        )
        .unwrap()
        .0;
    let st = chown(&fs, f.inode, 65533, None);
    assert_eq!((st.st_uid, st.st_mode), (65533, libc::S_IFREG | 0o666));
    let host = dir.path().join("f");
    let m = std::fs::metadata(&host).unwrap();
    assert_eq!(m.uid(), c.uid, "the host file stays the worker's");
    assert_eq!(m.mode() & 0o7777, 0o644, "no group/other write on the host");
    // SAFETY: stat64 is plain integers.
    let mut attr: stat64 = unsafe { std::mem::zeroed() };
    attr.st_mode = 0o4755;
    let (st, _) = fs
        .setattr(&c, f.inode, attr, None, SetattrValid::MODE)
        .unwrap();
    assert_eq!((st.st_uid, st.st_mode), (65533, libc::S_IFREG | 0o4755));
    assert_eq!(
        std::fs::metadata(&host).unwrap().mode() & 0o7777,
        0o755,
        "setuid is the guest's only"
    );
    // Back to the host's owner: the record goes, the host holds the mode.
    let st = chown(&fs, f.inode, c.uid, None);
    assert_eq!((st.st_uid, st.st_mode & 0o7777), (c.uid, 0o4755));
    assert_eq!(host_record(&host), None);
    // A directory too.
    let d = fs.mkdir(&c, ROOT_ID, &cstr("d"), 0o1777, 0).unwrap();
    let st = chown(&fs, d.inode, 65534, Some(65534));
    assert_eq!(
        (st.st_uid, st.st_gid, st.st_mode),
        (65534, 65534, libc::S_IFDIR | 0o1777)
    );
    let l = fs.lookup(&c, ROOT_ID, &cstr("d")).unwrap();
    assert_eq!(l.attr.st_uid, 65534);
    // A setgid directory hands its recorded group down, and its setgid bit to subdirectories.
    attr.st_mode = 0o2775;
    fs.setattr(&c, d.inode, attr, None, SetattrValid::MODE)
        .unwrap();
    let sub = fs.mkdir(&c, d.inode, &cstr("sub"), 0o755, 0).unwrap();
    assert_eq!(
        (sub.attr.st_gid, sub.attr.st_mode),
        (65534, libc::S_IFDIR | 0o2755)
    );
    let file = fs
        .mknod(&c, d.inode, &cstr("file"), libc::S_IFREG | 0o644, 0, 0)
        .unwrap();
    assert_eq!((file.attr.st_uid, file.attr.st_gid), (c.uid, 65534));
    let dev = fs
        .mknod(&c, d.inode, &cstr("dev"), libc::S_IFCHR | 0o600, 0x103, 0)
        .unwrap();
    assert_eq!(
        (dev.attr.st_gid, dev.attr.st_mode),
        (65534, libc::S_IFCHR | 0o600)
    );

    // A FIFO is a placeholder too, so that its owner can be recorded.
    let fifo = fs
        .mknod(&c, ROOT_ID, &cstr("fifo"), libc::S_IFIFO | 0o640, 0, 0)
        .unwrap();
    assert_eq!(fifo.attr.st_mode, libc::S_IFIFO | 0o640);
    assert_plain_host_file(&dir.path().join("fifo"));
    let st = chown(&fs, fifo.inode, 65533, None);
    assert_eq!((st.st_uid, st.st_mode), (65533, libc::S_IFIFO | 0o640));
    assert_eq!(
        errno(fs.open(&c, fifo.inode, libc::O_RDONLY as u32, 0)),
        libc::EBADF
    );

    // With ownership "host" the same record is not honoured: the operator switched it off.
    let pfs = {
        let mut opts = ShareOptions::new(dir.path());
        opts.xattr = true;
        new_passthrough(&opts).unwrap()
    };
    let host_fs = Emulation::new(
        SharePolicy::new(pfs, false),
        SpecialFiles::Emulate,
        Ownership::Host,
        false,
    );
    let l = host_fs.lookup(&c, ROOT_ID, &cstr("d")).unwrap();
    assert_eq!(l.attr.st_uid, c.uid);
    // ... but a FIFO's is: it is a special file, like a device.
    let l = host_fs.lookup(&c, ROOT_ID, &cstr("fifo")).unwrap();
    assert_eq!(
        (l.attr.st_uid, l.attr.st_mode),
        (65533, libc::S_IFIFO | 0o640)
    );
}

/// The stack a worker outside a jail builds (`ShareDevice::build`): symlink stand-ins are
/// reached through the passthrough's `/proc/self/fd` links.
fn share_with_content_paths(
    ownership: Ownership,
) -> (
    TempDir,
    Emulation<SharePolicy<std::sync::Arc<PassthroughFs>>>,
) {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = ShareOptions::new(dir.path());
    opts.xattr = true;
    let pfs = std::sync::Arc::new(new_passthrough(&opts).unwrap());
    let resolver = pfs.clone();
    let fs = Emulation::new(
        SharePolicy::new(pfs, false),
        SpecialFiles::Emulate,
        ownership,
        false,
    )
    .with_content_paths(Box::new(move |inode| resolver.readlinkat_proc_file(inode)));
    (dir, fs)
}

#[test]
fn emulated_ownership_makes_guest_symlinks_stand_ins_that_can_change_owner() {
    let (dir, fs) = share_with_content_paths(Ownership::Emulate);
    let c = ctx();
    let target = "../elsewhere/target";
    let e = fs.symlink(&c, &cstr(target), ROOT_ID, &cstr("ln")).unwrap();
    assert_eq!(e.attr.st_mode, libc::S_IFLNK | 0o777);
    assert_eq!(e.attr.st_size, target.len() as i64);
    assert_eq!(
        e.attr.st_blocks, 0,
        "a short target fits in the inode, as on ext4"
    );
    let host = dir.path().join("ln");
    let m = std::fs::symlink_metadata(&host).unwrap();
    assert!(m.file_type().is_file(), "the host holds a regular file");
    assert_eq!(m.mode() & 0o7777, 0o600);
    assert_eq!(std::fs::read(&host).unwrap(), target.as_bytes());
    assert_eq!(
        host_record(&host).unwrap(),
        format!("v=1 type=l perm=0777 uid={} gid={} rdev=0:0", c.uid, c.gid)
    );
    assert_eq!(fs.readlink(&c, e.inode).unwrap(), target.as_bytes());

    // lchown to an id the host cannot hold, then look it up afresh.
    let st = chown(&fs, e.inode, 65533, Some(65532));
    assert_eq!(
        (st.st_uid, st.st_gid, st.st_mode),
        (65533, 65532, libc::S_IFLNK | 0o777)
    );
    let again = fs.lookup(&c, ROOT_ID, &cstr("ln")).unwrap();
    assert_eq!(
        (again.attr.st_uid, again.attr.st_mode),
        (65533, libc::S_IFLNK | 0o777)
    );
    assert_eq!(std::fs::metadata(&host).unwrap().uid(), c.uid);

    // Never opened as a file; renamed and hard-linked as a link.
    assert_eq!(
        errno(fs.open(&c, e.inode, libc::O_RDONLY as u32, 0)),
        libc::EBADF
    );
    fs.rename(&c, ROOT_ID, &cstr("ln"), ROOT_ID, &cstr("moved"), 0)
        .unwrap();
    let l2 = fs.link(&c, e.inode, ROOT_ID, &cstr("hard")).unwrap();
    assert_eq!(l2.attr.st_mode, libc::S_IFLNK | 0o777);
    // The host file's blocks get allocated by now (a sync forces it); the guest's do not move.
    // SAFETY: sync takes no arguments.
    unsafe { libc::sync() };
    let moved = fs.lookup(&c, ROOT_ID, &cstr("moved")).unwrap();
    assert_eq!(
        (moved.attr.st_blocks, moved.attr.st_size),
        (0, target.len() as i64)
    );
    let long = "d/".repeat(50);
    let l = fs
        .symlink(&c, &cstr(&long), ROOT_ID, &cstr("long-target"))
        .unwrap();
    assert_eq!(
        l.attr.st_blocks, 8,
        "a 100-byte target takes a block, as on ext4"
    );
    assert_eq!(fs.readlink(&c, l2.inode).unwrap(), target.as_bytes());

    // Empty and overlong targets are refused as symlink(2) refuses them.
    assert_eq!(
        errno(fs.symlink(&c, &cstr(""), ROOT_ID, &cstr("empty"))),
        libc::ENOENT
    );
    let long = "x".repeat(4096);
    assert_eq!(
        errno(fs.symlink(&c, &cstr(&long), ROOT_ID, &cstr("long"))),
        libc::ENAMETOOLONG
    );
    assert!(!dir.path().join("empty").exists() && !dir.path().join("long").exists());
}

#[test]
fn a_stand_in_swapped_on_the_host_is_never_read_through() {
    let (dir, fs) = share_with_content_paths(Ownership::Emulate);
    let c = ctx();
    let e = fs
        .symlink(&c, &cstr("target"), ROOT_ID, &cstr("ln"))
        .unwrap();
    // A host process replaces the stand-in's name with a symlink to a file outside.
    let outside = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(outside.path(), b"secret").unwrap();
    let host = dir.path().join("ln");
    std::fs::remove_file(&host).unwrap();
    std::os::unix::fs::symlink(outside.path(), &host).unwrap();
    // The stand-in's own name is gone, and the name it had now leads outside: an error, never
    // the outside file's bytes.
    let got = fs.readlink(&c, e.inode);
    assert!(got.is_err(), "read through a swapped path: {got:?}");
}

#[test]
fn with_host_ownership_guest_symlinks_stay_host_symlinks() {
    let (dir, fs) = share_with_content_paths(Ownership::Host);
    let c = ctx();
    let e = fs
        .symlink(&c, &cstr("target"), ROOT_ID, &cstr("ln"))
        .unwrap();
    assert_eq!(e.attr.st_mode & libc::S_IFMT, libc::S_IFLNK);
    let m = std::fs::symlink_metadata(dir.path().join("ln")).unwrap();
    assert!(m.file_type().is_symlink());
    assert_eq!(fs.readlink(&c, e.inode).unwrap(), b"target");
}
