//! Attack catalogue, file types, privilege and xattrs.
//!
//! - Device nodes: MKNOD of a character or block device never makes one on the host
//!   (CVE-2020-35517): an empty regular file stands in for it (or EPERM with
//!   `--special-files refuse`), and neither it nor a device node planted by the host is ever
//!   opened for the guest (EBADF).
//! - FIFOs and sockets: OPEN never blocks a worker thread (EBADF at once: only regular files
//!   and directories are opened without O_PATH), and the next request is served.
//! - setgid: an unprivileged guest uid creating a 02755 file in a setgid, world-writable
//!   directory whose group it is not in does not get the setgid bit (CVE-2022-0358), by
//!   CREATE, MKNOD or TMPFILE. (SETATTR is not part of it: a Linux guest clears S_ISGID itself
//!   before sending SETATTR, since virtiofs mounts use default_permissions, and a guest root can
//!   chown and chmod freely inside its share anyway.)
//! - xattrs, fsjail's policy with `--xattr`: names pass through unmapped and the host kernel
//!   decides with the jailed worker's credentials. The worker keeps only CAP_CHOWN,
//!   CAP_DAC_OVERRIDE, CAP_FOWNER, CAP_FSETID, CAP_SETGID and CAP_SETUID, so even a root guest
//!   gets EPERM for `trusted.*` (needs CAP_SYS_ADMIN) and `security.capability` (needs
//!   CAP_SETFCAP): no file capability can be planted for the host to execute. `user.*` works.
//!   Size 0 is a size query, a too small size gives ERANGE, and sizes are capped at 64 KiB.
//! - Read-only shares: every mutating opcode gives EROFS — `tests/functional.rs`
//!   (`readonly_refuses_every_change`) covers each opcode and checks the host; here only the
//!   DAX-free remainder with the sentinel.

#[path = "attacks/mod.rs"]
mod attacks;
mod common;

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use attacks::{assert_errno, assert_errno_reply, cname, lgetxattr, lsetxattr, request, Arena};
use common::Config;
use guest_driver::abi::{GetxattrIn, MknodIn, Opcode, SetxattrIn, ROOT_ID};
use guest_driver::{Context, XattrReply};
use vm_memory::ByteValued;

const REG: u32 = libc::S_IFREG;
const RDONLY: u32 = libc::O_RDONLY as u32;

fn host_mknod(p: &Path, mode: u32, dev: libc::dev_t) {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    // SAFETY: a NUL-terminated path that lives for the call.
    let r = unsafe { libc::mknod(c.as_ptr(), mode, dev) };
    assert_eq!(
        r,
        0,
        "mknod {}: {}",
        p.display(),
        std::io::Error::last_os_error()
    );
}

#[test]
fn device_nodes_are_never_made_on_the_host_nor_opened() {
    let null = libc::makedev(1, 3) as u32;
    let mem = libc::makedev(1, 1) as u32; // /dev/mem
    let sda = libc::makedev(8, 0) as u32;
    let nodes = [
        ("chr", libc::S_IFCHR | 0o666, null),
        ("mem", libc::S_IFCHR | 0o600, mem),
        ("blk", libc::S_IFBLK | 0o600, sda),
        ("chr_setuid", libc::S_IFCHR | 0o4777, mem),
    ];
    // `special_files = "refuse"`: EPERM, nothing on the host.
    let mut refuse = Arena::new(&Config {
        fsjail_args: vec!["--special-files".into(), "refuse".into()],
        ..Config::default()
    });
    for (name, mode, rdev) in nodes {
        assert_errno(
            refuse.s.mknod(ROOT_ID, name, mode, rdev, 0),
            libc::EPERM,
            name,
        );
        assert!(!refuse.b.host(name).exists(), "{name} exists on the host");
        refuse.verify(&format!("MKNOD {name}"));
    }
    // The default, "emulate": the guest gets its node, the host an empty 0600 regular file,
    // which OPEN never hands out.
    let mut a = Arena::new(&Config::default());
    for (name, mode, rdev) in nodes {
        let e = a.s.mknod(ROOT_ID, name, mode, rdev, 0).unwrap();
        assert_eq!(e.attr.mode, mode, "{name}: the guest's node");
        let md = fs::symlink_metadata(a.b.host(name)).unwrap();
        assert!(md.file_type().is_file(), "{name}: {:?}", md.file_type());
        assert_eq!(
            (md.permissions().mode(), md.len()),
            (libc::S_IFREG | 0o600, 0),
            "{name} on the host"
        );
        for flags in [RDONLY, libc::O_RDWR as u32] {
            assert_errno(a.s.open(e.nodeid, flags), libc::EBADF, name);
        }
        a.verify(&format!("MKNOD {name}"));
    }
    // A device node that is there anyway (made by the host) is never opened for the guest.
    host_mknod(
        &a.b.host("planted_mem"),
        libc::S_IFCHR | 0o666,
        libc::makedev(1, 1),
    );
    host_mknod(
        &a.b.host("planted_blk"),
        libc::S_IFBLK | 0o666,
        libc::makedev(7, 0),
    );
    for name in ["planted_mem", "planted_blk"] {
        let e = a.s.lookup(ROOT_ID, name).unwrap();
        for flags in [RDONLY, libc::O_RDWR as u32] {
            assert_errno(
                a.s.open(e.nodeid, flags),
                libc::EBADF,
                &format!("OPEN {name}"),
            );
        }
        a.verify(&format!("OPEN {name}"));
    }
}

/// OPEN of a FIFO (made by the host or by the guest) returns at once, and the worker serves on.
#[test]
fn opening_a_fifo_never_blocks_the_worker() {
    let mut a = Arena::new(&Config::default());
    host_mknod(&a.b.host("host_fifo"), libc::S_IFIFO | 0o666, 0);
    a.s.mknod(ROOT_ID, "guest_fifo", libc::S_IFIFO | 0o666, 0, 0)
        .unwrap();
    assert!(fs::metadata(a.b.host("guest_fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
    // A unix socket node, too.
    let _listener = std::os::unix::net::UnixListener::bind(a.b.host("sock")).unwrap();
    // One request queue: a blocked open would stall every later request, so the timeout on
    // the driver side catches it.
    a.s.set_timeout(Duration::from_secs(3));
    for name in ["host_fifo", "guest_fifo", "sock"] {
        let e = a.s.lookup(ROOT_ID, name).unwrap();
        for flags in [
            libc::O_RDONLY,
            libc::O_WRONLY,
            libc::O_RDWR,
            libc::O_RDONLY | libc::O_NONBLOCK,
        ] {
            let t = Instant::now();
            let r = a.s.open(e.nodeid, flags as u32);
            assert!(
                t.elapsed() < Duration::from_secs(1),
                "OPEN {name} took {:?}",
                t.elapsed()
            );
            assert_errno(r, libc::EBADF, &format!("OPEN {name} flags {flags:#o}"));
        }
        assert_errno(a.s.opendir(e.nodeid, RDONLY), libc::EBADF, name);
        a.verify(&format!("OPEN {name}"));
    }
}

/// CVE-2022-0358: no setgid bit for a creator outside the directory's group.
#[test]
fn unprivileged_creator_in_a_setgid_directory_gets_no_setgid_bit() {
    let mut a = Arena::new(&Config::default());
    let dir = a.b.host("sgid");
    fs::create_dir(&dir).unwrap();
    std::os::unix::fs::chown(&dir, Some(0), Some(4242)).unwrap();
    attacks::set_mode(&dir, 0o2777);
    let d = a.lookup("sgid");
    a.s.set_context(Context {
        uid: 1000,
        gid: 1000,
        pid: 4242,
    });
    let (e, _) =
        a.s.create(d, "created", REG | 0o2755, libc::O_RDWR as u32, 0)
            .unwrap();
    let n = a.s.mknod(d, "mknoded", REG | 0o2755, 0, 0).unwrap();
    let (t, _) =
        a.s.tmpfile(d, REG | 0o2755, libc::O_RDWR as u32, 0)
            .unwrap();
    for (what, mode) in [
        ("CREATE", e.attr.mode),
        ("MKNOD", n.attr.mode),
        ("TMPFILE", t.attr.mode),
    ] {
        assert_eq!(
            mode & libc::S_ISGID,
            0,
            "{what}: the guest was told mode {mode:o}"
        );
    }
    for name in ["created", "mknoded"] {
        let md = fs::metadata(dir.join(name)).unwrap();
        assert_eq!(
            md.mode() & libc::S_ISGID,
            0,
            "{name}: host mode {:o}",
            md.mode()
        );
        // The file still belongs to the creator and, by inheritance, to the directory's group.
        assert_eq!((md.uid(), md.gid()), (1000, 4242), "{name}");
    }
    // A directory made there inherits the setgid bit, as on any Linux filesystem.
    let sub = a.s.mkdir(d, "subdir", 0o755, 0).unwrap();
    assert_ne!(sub.attr.mode & libc::S_ISGID, 0);
    a.s.set_context(Context::default());
    a.verify("setgid directory");
}

#[test]
fn trusted_and_security_capability_xattrs_are_refused() {
    let mut a = Arena::new(&Config::xattr());
    fs::write(a.b.host("bin"), b"#!/bin/sh\n").unwrap();
    attacks::set_mode(&a.b.host("bin"), 0o755);
    let f = a.lookup("bin");
    // VFS_CAP_REVISION_2 with every capability permitted and effective.
    let mut fcap = vec![0u8; 20];
    fcap[..4].copy_from_slice(&(0x0200_0001u32).to_le_bytes());
    fcap[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    for name in ["trusted.planted", "security.capability"] {
        // As the guest's root (the test's own uid 0) and as an unprivileged guest user.
        for ctx in [
            Context::default(),
            Context {
                uid: 1000,
                gid: 1000,
                pid: 1,
            },
        ] {
            a.s.set_context(ctx);
            assert_errno(a.s.setxattr(f, name, &fcap, 0), libc::EPERM, name);
        }
        a.s.set_context(Context::default());
        assert_eq!(
            lgetxattr(&a.b.host("bin"), name),
            None,
            "{name} reached the host"
        );
        a.verify(&format!("SETXATTR {name}"));
    }
    // Set by the host (trusted.* needs CAP_SYS_ADMIN there), a guest cannot remove them either.
    if lsetxattr(&a.b.host("bin"), "trusted.host", b"h").is_ok() {
        assert_errno(
            a.s.removexattr(f, "trusted.host"),
            libc::EPERM,
            "REMOVEXATTR trusted",
        );
        assert_eq!(
            lgetxattr(&a.b.host("bin"), "trusted.host").as_deref(),
            Some(&b"h"[..])
        );
    }
    // user.* is the guest's to use.
    a.s.setxattr(f, "user.ok", b"v", 0).unwrap();
    assert_eq!(
        lgetxattr(&a.b.host("bin"), "user.ok").as_deref(),
        Some(&b"v"[..])
    );
    a.verify("user xattr");
}

#[test]
fn xattr_sizes_query_range_and_cap() {
    let mut a = Arena::new(&Config::xattr());
    fs::write(a.b.host("f"), b"").unwrap();
    // ext4 keeps xattrs in one block: 3000 bytes fit anywhere.
    const BIG: u32 = 3000;
    let big = vec![0x5au8; BIG as usize];
    lsetxattr(&a.b.host("f"), "user.big", &big).unwrap();
    lsetxattr(&a.b.host("f"), "user.small", b"0123456789").unwrap();
    let f = a.lookup("f");
    // Size queries.
    assert_eq!(
        a.s.getxattr(f, "user.small", 0).unwrap(),
        XattrReply::Size(10)
    );
    assert_eq!(
        a.s.getxattr(f, "user.big", 0).unwrap(),
        XattrReply::Size(BIG)
    );
    let XattrReply::Size(list) = a.s.listxattr(f, 0).unwrap() else {
        panic!()
    };
    assert!(list as usize >= "user.big\0user.small\0".len());
    // Too small: ERANGE, for the value and the list.
    assert_errno(a.s.getxattr(f, "user.small", 9), libc::ERANGE, "GETXATTR 9");
    assert_errno(
        a.s.getxattr(f, "user.big", BIG - 1),
        libc::ERANGE,
        "GETXATTR short",
    );
    assert_errno(a.s.listxattr(f, list - 1), libc::ERANGE, "LISTXATTR short");
    // Huge sizes are capped at 64 KiB (XATTR_SIZE_MAX) rather than refused or allocated: the
    // value comes back whole, into a chain with room for 64 KiB.
    for size in [BIG, 65536u32, 65537, 1 << 20, u32::MAX] {
        let q = GetxattrIn { size, padding: 0 };
        let req = request(Opcode::Getxattr, f, &[q.as_slice(), &cname(b"user.big")]);
        let r = a.send(&req.0, 16 + 65536);
        let (len, err, u) = attacks::out_header(&r);
        assert_eq!((len, err, u), (16 + BIG, 0, req.1), "GETXATTR size {size}");
        assert!(r.bytes[16..].iter().all(|b| *b == 0x5a));
        a.verify(&format!("GETXATTR size {size}"));
    }
    // No room in the chain for the value: ERANGE, not an overrun.
    let q = GetxattrIn {
        size: u32::MAX,
        padding: 0,
    };
    let req = request(Opcode::Getxattr, f, &[q.as_slice(), &cname(b"user.big")]);
    let r = a.send(&req.0, 16 + BIG - 1);
    assert_errno_reply(&r, req.1, libc::ERANGE, "GETXATTR into a short chain");
    // SETXATTR beyond 64 KiB: E2BIG, nothing set.
    let value = vec![1u8; 65537];
    let s = SetxattrIn {
        size: 65537,
        flags: 0,
    };
    a.refused(
        &request(
            Opcode::Setxattr,
            f,
            &[s.as_slice(), &cname(b"user.huge"), &value],
        ),
        libc::E2BIG,
        "SETXATTR 64 KiB + 1",
    );
    assert_eq!(lgetxattr(&a.b.host("f"), "user.huge"), None);
    // Exactly 64 KiB passes the check; ext4 then says ENOSPC (one block per inode), another
    // filesystem stores it.
    match a.s.setxattr(f, "user.max", &vec![1u8; 65536], 0) {
        Ok(()) => assert_eq!(lgetxattr(&a.b.host("f"), "user.max").unwrap().len(), 65536),
        Err(e) => assert_eq!(e.errno(), Some(libc::ENOSPC), "SETXATTR 64 KiB: {e}"),
    }
    a.verify("xattr sizes");
}

/// The rest of the read-only catalogue with the sentinel check (functional.rs checks every
/// opcode's EROFS and the share itself): raw MKNOD of a device says EROFS (it is emulated by a
/// regular file, which a read-only share refuses), and a
/// read-only share with xattrs on refuses SETXATTR of a privileged name with EROFS.
#[test]
fn readonly_share_refuses_before_anything_else() {
    let mut a = Arena::new(&Config {
        readonly: true,
        xattr: true,
        ..Config::default()
    });
    let m = MknodIn {
        mode: libc::S_IFCHR | 0o666,
        rdev: libc::makedev(1, 1) as u32,
        ..Default::default()
    };
    a.refused(
        &request(Opcode::Mknod, ROOT_ID, &[m.as_slice(), &cname(b"mem")]),
        libc::EROFS,
        "MKNOD chr on a read-only share",
    );
    let p = a.lookup("probe");
    for name in ["trusted.x", "security.capability", "user.x"] {
        assert_errno(a.s.setxattr(p, name, b"v", 0), libc::EROFS, name);
        assert_errno(a.s.removexattr(p, name), libc::EROFS, name);
    }
    assert_errno(a.s.mkdir(ROOT_ID, "d", 0o755, 0), libc::EROFS, "MKDIR");
    assert_errno(
        a.s.create(ROOT_ID, "c", REG | 0o644, libc::O_RDWR as u32, 0),
        libc::EROFS,
        "CREATE",
    );
    assert_errno(
        a.s.open(p, libc::O_WRONLY as u32),
        libc::EROFS,
        "OPEN for writing",
    );
    a.verify("read-only share");
}
