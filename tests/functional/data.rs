//! Open files and data: OPEN/READ/WRITE/FLUSH/FSYNC/RELEASE, STATFS, CREATE, INTERRUPT, FALLOCATE, LSEEK, COPY_FILE_RANGE, SYNCFS, TMPFILE, IOCTL.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use crate::common::{Backend, Config, Kind};
use guest_driver::abi::{CopyFileRangeIn, InterruptIn, Opcode, ROOT_ID};
use guest_driver::{Context, Error};
use vm_memory::ByteValued;

use super::helpers::*;

/// OPEN, READ, WRITE, FLUSH, FSYNC and RELEASE move the right bytes to and from the host.
pub(crate) fn open_read_write_flush_fsync_release(kind: Kind) {
    let b = Backend::start(kind, &Config::default());
    let s = b.session();
    fs::write(b.host("existing"), b"from the host").unwrap();
    let e = s.lookup(ROOT_ID, "existing").unwrap();
    let o = s.open(e.nodeid, RDONLY).unwrap();
    assert_eq!(s.read(e.nodeid, o.fh, 0, 4096).unwrap(), b"from the host");
    assert_eq!(s.read(e.nodeid, o.fh, 5, 3).unwrap(), b"the");
    assert_eq!(s.read(e.nodeid, o.fh, 13, 10).unwrap(), b"", "read at EOF");
    assert_eq!(
        s.read(e.nodeid, o.fh, 1000, 10).unwrap(),
        b"",
        "read past EOF"
    );
    // The host changes the file; the guest reads the new bytes through its handle.
    fs::write(b.host("existing"), b"changed").unwrap();
    assert_eq!(s.read(e.nodeid, o.fh, 0, 4096).unwrap(), b"changed");
    assert!(errno(s.write(e.nodeid, o.fh, 0, b"nope")) == libc::EBADF);
    s.release(e.nodeid, o.fh, 0, 0, 0).unwrap();

    // In fsjail an open handle is one host fd, closed by RELEASE.
    let fds = b.open_fds();
    let o = s.open(e.nodeid, RDONLY).unwrap();
    if kind == Kind::Fsjail {
        assert_eq!(b.open_fds(), fds + 1, "OPEN opened a host fd");
    }
    s.release(e.nodeid, o.fh, 0, 0, 0).unwrap();
    if kind == Kind::Fsjail {
        assert_eq!(b.open_fds(), fds, "RELEASE closed the host fd");
    }

    // Large write in max_write chunks, checked on the host.
    let (node, fh) = create_rw(&s, ROOT_ID, "new.txt", 0o644);
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let mut off = 0u64;
    for part in data.chunks(s.max_write() as usize) {
        assert_eq!(s.write(node, fh, off, part).unwrap() as usize, part.len());
        off += part.len() as u64;
    }
    s.flush(node, fh, 0).unwrap();
    s.fsync(node, fh, false).unwrap();
    s.fsync(node, fh, true).unwrap();
    assert_eq!(fs::read(b.host("new.txt")).unwrap(), data);
    assert_eq!(
        s.read(node, fh, 100_000, 65536).unwrap(),
        &data[100_000..165_536]
    );
    assert_eq!(
        s.getattr(node, Some(fh)).unwrap().attr.size,
        data.len() as u64
    );
    // Overwrite in the middle, and a write past EOF leaves a zero-filled gap.
    s.write(node, fh, 10, b"MIDDLE").unwrap();
    s.write(node, fh, 400_000, b"tail").unwrap();
    let host = fs::read(b.host("new.txt")).unwrap();
    assert_eq!(&host[10..16], b"MIDDLE");
    assert_eq!(host.len(), 400_004);
    assert!(host[300_000..400_000].iter().all(|&x| x == 0));
    assert_eq!(&host[400_000..], b"tail");
    s.release(node, fh, 0, 0, 0).unwrap();
    assert_errno(
        s.read(node, fh, 0, 10),
        libc::EBADF,
        "READ on a released handle",
    );

    // O_TRUNC (ATOMIC_O_TRUNC) empties the host file.
    let o = s
        .open(node, (libc::O_WRONLY | libc::O_TRUNC) as u32)
        .unwrap();
    assert_eq!(lmeta(b.host("new.txt")).len(), 0);
    s.release(node, o.fh, 0, 0, 0).unwrap();
    // Opening a directory for writing.
    let d = s.mkdir(ROOT_ID, "dir", 0o755, 0).unwrap();
    assert_errno(
        s.open(d.nodeid, RDWR),
        libc::EISDIR,
        "open a directory O_RDWR",
    );
}

/// STATFS equals the host's statvfs of the share (free counts may drift meanwhile).
pub(crate) fn statfs_matches_host_statvfs(kind: Kind) {
    let b = Backend::start(kind, &Config::default());
    let s = b.session();
    fs::create_dir(b.host("d")).unwrap();
    let d = s.lookup(ROOT_ID, "d").unwrap();
    for node in [ROOT_ID, d.nodeid] {
        let st = s.statfs(node).unwrap();
        // SAFETY: statvfs64 is plain data; all-zero is valid, and statvfs fills it.
        let mut h: libc::statvfs64 = unsafe { std::mem::zeroed() };
        let path = cpath(b.share());
        // SAFETY: a valid path and an out struct of the right type.
        assert_eq!(unsafe { libc::statvfs64(path.as_ptr(), &mut h) }, 0);
        assert_eq!(st.blocks, h.f_blocks, "blocks");
        assert_eq!(st.bsize as u64, h.f_bsize, "bsize");
        assert_eq!(st.frsize as u64, h.f_frsize, "frsize");
        assert_eq!(st.namelen as u64, h.f_namemax, "namelen");
        assert_eq!(st.files, h.f_files, "files");
        let drift = |a: u64, b: u64| a.abs_diff(b) <= (b / 100).max(4096);
        assert!(
            drift(st.bfree, h.f_bfree),
            "bfree {} vs {}",
            st.bfree,
            h.f_bfree
        );
        assert!(
            drift(st.bavail, h.f_bavail),
            "bavail {} vs {}",
            st.bavail,
            h.f_bavail
        );
        assert!(
            drift(st.ffree, h.f_ffree),
            "ffree {} vs {}",
            st.ffree,
            h.f_ffree
        );
        assert!(st.bavail <= st.bfree && st.bfree <= st.blocks && st.ffree <= st.files);
    }
}

/// CREATE makes the host file with the requested mode (minus umask) and the caller as owner,
/// and returns a working handle.
pub(crate) fn create(kind: Kind) {
    let b = Backend::start(kind, &Config::default());
    let s = b.session();
    let ctx = s.context();
    let (e, o) = s.create(ROOT_ID, "c", REG | 0o640, RDWR, 0).unwrap();
    let md = lmeta(b.host("c"));
    assert!(md.is_file());
    assert_eq!(md.mode() & 0o7777, 0o640);
    assert_eq!((md.uid(), md.gid()), (ctx.uid, ctx.gid));
    assert_attr_eq(&e.attr, &md, "create");
    assert_eq!(s.write(e.nodeid, o.fh, 0, b"created").unwrap(), 7);
    assert_eq!(fs::read(b.host("c")).unwrap(), b"created");
    s.release(e.nodeid, o.fh, 0, 0, 0).unwrap();

    let (e2, o2) = s
        .create(ROOT_ID, "masked", REG | 0o666, RDWR, 0o027)
        .unwrap();
    assert_eq!(
        lmeta(b.host("masked")).mode() & 0o777,
        masked(kind, 0o666, 0o027)
    );
    s.release(e2.nodeid, o2.fh, 0, 0, 0).unwrap();

    let excl = RDWR | (libc::O_CREAT | libc::O_EXCL) as u32;
    assert_errno(
        s.create(ROOT_ID, "c", REG | 0o600, excl, 0),
        libc::EEXIST,
        "O_EXCL",
    );
    assert_eq!(fs::read(b.host("c")).unwrap(), b"created");

    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        // Another caller creates in a world-writable directory: the host file is theirs.
        fs::create_dir(b.host("pub")).unwrap();
        fs::set_permissions(b.host("pub"), fs::Permissions::from_mode(0o777)).unwrap();
        let p = s.lookup(ROOT_ID, "pub").unwrap();
        s.set_context(Context {
            uid: 1000,
            gid: 1001,
            ..ctx
        });
        let (e3, o3) = s.create(p.nodeid, "theirs", REG | 0o600, RDWR, 0).unwrap();
        s.set_context(ctx);
        let md = lmeta(b.host("pub/theirs"));
        assert_eq!((md.uid(), md.gid()), (1000, 1001));
        assert_attr_eq(&e3.attr, &md, "create as another user");
        s.release(e3.nodeid, o3.fh, 0, 0, 0).unwrap();
    } else {
        crate::common::skip::skip("CREATE as another user", "not root");
    }
}

/// INTERRUPT takes no reply (virtio-fs cannot interrupt), and the next request works.
pub(crate) fn interrupt_gets_no_reply(kind: Kind) {
    let b = Backend::start(kind, &Config::default());
    let s = b.session();
    for target in [12345u64, s.next_unique() + 1] {
        let arg = InterruptIn { unique: target };
        let p = s
            .submit_on(0, Opcode::Interrupt as u32, 0, &[arg.as_slice()], Some(&[]))
            .unwrap();
        let raw = s.complete_raw(p).unwrap();
        assert_eq!(raw.used_len, 0, "INTERRUPT got a reply: {:?}", raw.bytes);
    }
    s.interrupt(777).unwrap();
    assert_eq!(
        s.getattr(ROOT_ID, None).unwrap().attr.ino,
        lmeta(b.share()).ino()
    );
}

/// FALLOCATE allocates host blocks (and size unless KEEP_SIZE); PUNCH_HOLE frees them.
pub(crate) fn fallocate(kind: Kind) {
    let b = Backend::start(kind, &Config::default());
    let s = b.session();
    let (node, fh) = create_rw(&s, ROOT_ID, "f", 0o644);
    s.fallocate(node, fh, 0, 1 << 16, 0).unwrap();
    let md = lmeta(b.host("f"));
    assert_eq!(md.len(), 1 << 16);
    assert!(md.blocks() * 512 >= 1 << 16, "blocks {}", md.blocks());
    assert_attr_eq(
        &s.getattr(node, Some(fh)).unwrap().attr,
        &md,
        "after fallocate",
    );

    let keep = libc::FALLOC_FL_KEEP_SIZE as u32;
    s.fallocate(node, fh, 1 << 16, 1 << 16, keep).unwrap();
    let md2 = lmeta(b.host("f"));
    assert_eq!(md2.len(), 1 << 16, "KEEP_SIZE kept the size");
    assert!(md2.blocks() * 512 >= 1 << 17, "blocks {}", md2.blocks());

    let punch = (libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE) as u32;
    s.fallocate(node, fh, 0, 1 << 16, punch).unwrap();
    let md3 = lmeta(b.host("f"));
    assert_eq!(md3.len(), 1 << 16);
    assert!(
        md3.blocks() < md2.blocks(),
        "punch freed blocks: {} -> {}",
        md2.blocks(),
        md3.blocks()
    );
    s.release(node, fh, 0, 0, 0).unwrap();
    let o = s.open(node, RDONLY).unwrap();
    assert_errno(
        s.fallocate(node, o.fh, 0, 4096, 0),
        libc::EBADF,
        "FALLOCATE on a read-only fd",
    );
    s.release(node, o.fh, 0, 0, 0).unwrap();
}

/// LSEEK finds data and holes in a sparse file exactly where the host does.
pub(crate) fn lseek_data_and_hole(kind: Kind) {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::FileExt;
    let b = Backend::start(kind, &Config::default());
    let s = b.session();
    let mib = 1u64 << 20;
    let f = fs::File::create(b.host("sparse")).unwrap();
    f.write_all_at(&[1u8; 4096], 0).unwrap();
    f.write_all_at(&[2u8; 4096], mib).unwrap();
    f.set_len(2 * mib).unwrap();
    f.sync_all().unwrap();
    let hf = fs::File::open(b.host("sparse")).unwrap();
    let host_seek = |off: u64, whence: i32| -> Result<u64, i32> {
        // SAFETY: lseek on our own fd.
        let r = unsafe { libc::lseek(hf.as_raw_fd(), off as i64, whence) };
        if r < 0 {
            Err(std::io::Error::last_os_error().raw_os_error().unwrap())
        } else {
            Ok(r as u64)
        }
    };

    let e = s.lookup(ROOT_ID, "sparse").unwrap();
    let o = s.open(e.nodeid, RDONLY).unwrap();
    let cases = [
        (0, libc::SEEK_DATA),
        (0, libc::SEEK_HOLE),
        (4096, libc::SEEK_DATA),
        (100, libc::SEEK_HOLE),
        (mib, libc::SEEK_HOLE),
        (mib + 4096, libc::SEEK_DATA),
        (2 * mib + 1, libc::SEEK_DATA),
        (2 * mib + 1, libc::SEEK_HOLE),
        (123, libc::SEEK_SET),
        (0, libc::SEEK_END),
    ];
    for (off, whence) in cases {
        let want = host_seek(off, whence);
        let got = match s.lseek(e.nodeid, o.fh, off, whence as u32) {
            Ok(v) => Ok(v),
            Err(Error::Errno(e)) => Err(e),
            Err(e) => panic!("lseek: {e}"),
        };
        assert_eq!(got, want, "lseek({off}, whence {whence})");
    }
    // The sparse layout really is sparse on this host (else the test proves little).
    assert!(host_seek(0, libc::SEEK_HOLE).unwrap() < mib);
    assert_eq!(host_seek(4096, libc::SEEK_DATA), Ok(mib));
    assert_errno(
        s.lseek(e.nodeid, o.fh, mib + 4096, libc::SEEK_DATA as u32),
        libc::ENXIO,
        "no data",
    );
    s.release(e.nodeid, o.fh, 0, 0, 0).unwrap();
}

/// COPY_FILE_RANGE copies the bytes on the host (a short count is allowed: loop).
pub(crate) fn copy_file_range(kind: Kind) {
    let b = Backend::start(kind, &Config::default());
    let s = b.session();
    let src: Vec<u8> = (0..3_000_000u32).map(|i| (i * 13 % 256) as u8).collect();
    fs::write(b.host("src"), &src).unwrap();
    let a = s.lookup(ROOT_ID, "src").unwrap();
    let ao = s.open(a.nodeid, RDONLY).unwrap();
    let (dst, dfh) = create_rw(&s, ROOT_ID, "dst", 0o644);

    let copy = |off_in: u64, off_out: u64, len: u64| -> u64 {
        let n = s
            .copy_file_range(
                a.nodeid,
                CopyFileRangeIn {
                    fh_in: ao.fh,
                    off_in,
                    nodeid_out: dst,
                    fh_out: dfh,
                    off_out,
                    len,
                    flags: 0,
                },
            )
            .unwrap();
        u64::from(n)
    };
    // A small copy to an offset.
    assert_eq!(copy(5, 100, 9), 9);
    let host = fs::read(b.host("dst")).unwrap();
    assert_eq!(host.len(), 109);
    assert_eq!(&host[100..], &src[5..14]);
    // The whole file, looping over short counts.
    let mut done = 0u64;
    while done < src.len() as u64 {
        let n = copy(done, done, src.len() as u64 - done);
        assert!(n > 0, "no progress at {done}");
        done += n;
    }
    assert_eq!(fs::read(b.host("dst")).unwrap(), src);
    assert_eq!(copy(src.len() as u64, 0, 100), 0, "copy from EOF");
    s.release(a.nodeid, ao.fh, 0, 0, 0).unwrap();
    s.release(dst, dfh, 0, 0, 0).unwrap();
}

/// SYNCFS succeeds and what was written is on the host.
pub(crate) fn syncfs(kind: Kind) {
    let b = Backend::start(kind, &Config::default());
    let s = b.session();
    let (node, fh) = create_rw(&s, ROOT_ID, "synced", 0o644);
    s.write(node, fh, 0, b"durable").unwrap();
    s.syncfs(ROOT_ID).unwrap();
    assert_eq!(fs::read(b.host("synced")).unwrap(), b"durable");
    let d = s.mkdir(ROOT_ID, "d", 0o755, 0).unwrap();
    s.syncfs(d.nodeid).unwrap();
    s.release(node, fh, 0, 0, 0).unwrap();
}

/// TMPFILE: the handle reads and writes, and no name is left in the directory (fsjail
/// emulates it with create + unlink).
pub(crate) fn tmpfile(kind: Kind) {
    let b = Backend::start(kind, &Config::default());
    let s = b.session();
    fs::create_dir(b.host("d")).unwrap();
    let d = s.lookup(ROOT_ID, "d").unwrap();
    let (e, o) = match s.tmpfile(d.nodeid, REG | 0o600, RDWR, 0) {
        Ok(v) => v,
        Err(Error::Errno(err))
            if kind == Kind::Peer && [libc::ENOSYS, libc::EOPNOTSUPP].contains(&err) =>
        {
            eprintln!("peer does not support TMPFILE (errno {err})");
            return;
        }
        Err(err) => panic!("TMPFILE: {err}"),
    };
    assert_eq!(e.attr.mode & libc::S_IFMT, libc::S_IFREG);
    assert_eq!(e.attr.nlink, 0);
    assert!(
        host_names(b.host("d")).is_empty(),
        "{:?}",
        host_names(b.host("d"))
    );
    assert!(
        host_names(b.share()) == ["d"],
        "{:?}",
        host_names(b.share())
    );
    assert_eq!(s.write(e.nodeid, o.fh, 0, b"anonymous").unwrap(), 9);
    assert_eq!(s.read(e.nodeid, o.fh, 0, 100).unwrap(), b"anonymous");
    assert_eq!(s.getattr(e.nodeid, Some(o.fh)).unwrap().attr.size, 9);
    s.fsync(e.nodeid, o.fh, false).unwrap();
    s.release(e.nodeid, o.fh, 0, 0, 0).unwrap();
    assert!(host_names(b.host("d")).is_empty());
}

/// IOCTL answers ENOTTY, an unknown opcode ENOSYS, and the DAX opcodes ENOSYS without a DAX
/// window; the session keeps working.
pub(crate) fn ioctl_unknown_opcode_and_dax_opcodes(kind: Kind) {
    let b = Backend::start(kind, &Config::default());
    let s = b.session();
    let (node, fh) = create_rw(&s, ROOT_ID, "f", 0o644);
    const TCGETS: u32 = 0x5401;
    let e = errno(s.ioctl(node, fh, 0, TCGETS, 0, &[], 64));
    if kind == Kind::Fsjail {
        assert_eq!(e, libc::ENOTTY, "IOCTL TCGETS");
    } else {
        // virtiofsd answers ENOSYS for ioctls it does not implement.
        assert!(
            e == libc::ENOTTY || e == libc::ENOSYS,
            "IOCTL TCGETS: errno {e}"
        );
    }
    if kind == Kind::Fsjail {
        // No ioctl is allowlisted: even a common one is refused.
        const FS_IOC_GETFLAGS: u32 = 0x8008_6601;
        assert_errno(
            s.ioctl(node, fh, 0, FS_IOC_GETFLAGS, 0, &[], 8),
            libc::ENOTTY,
            "GETFLAGS",
        );
    }
    for opcode in [9999u32, 0, u32::MAX] {
        let p = s.submit_on(1, opcode, ROOT_ID, &[], Some(&[])).unwrap();
        assert_errno(s.complete(p), libc::ENOSYS, &format!("opcode {opcode}"));
    }
    assert_errno(
        s.setupmapping(node, fh, 0, 4096, 1, 0),
        libc::ENOSYS,
        "SETUPMAPPING",
    );
    assert_errno(
        s.removemapping(node, &[(0, 4096)]),
        libc::ENOSYS,
        "REMOVEMAPPING",
    );
    assert_eq!(s.write(node, fh, 0, b"ok").unwrap(), 2);
    assert_eq!(fs::read(b.host("f")).unwrap(), b"ok");
    s.release(node, fh, 0, 0, 0).unwrap();
}
