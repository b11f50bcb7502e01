//! Tests of the share policy over a real PassthroughFs on temporary directories.

use super::*;
use crate::fs::{new_passthrough, ShareOptions};
use fuse_backend_rs::api::filesystem::ROOT_ID;
use fuse_backend_rs::file_buf::FileVolatileSlice;
use fuse_backend_rs::file_traits::FileReadWriteVolatile;
use fuse_backend_rs::passthrough::PassthroughFs;
use std::ffi::CString;
use std::path::Path;
use tempfile::TempDir;

/// PassthroughFs switches to the request's credentials; root keeps it from switching.
fn ctx() -> Context {
    let mut ctx = Context::new();
    ctx.uid = 0;
    ctx.gid = 0;
    ctx.pid = std::process::id() as libc::pid_t;
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

/// A share holding `f` ("hello") and directory `d`.
fn share(readonly: bool, writeback: bool) -> (TempDir, SharePolicy<PassthroughFs>) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), b"hello").unwrap();
    std::fs::create_dir(dir.path().join("d")).unwrap();
    let mut opts = ShareOptions::new(dir.path());
    opts.writeback = writeback;
    let fs = new_passthrough(&opts).unwrap();
    (dir, SharePolicy::new(fs, readonly))
}

/// Collects what `read` copies out.
struct VecWriter(Vec<u8>);

impl io::Write for VecWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ZeroCopyWriter for VecWriter {
    fn write_from(
        &mut self,
        f: &mut dyn FileReadWriteVolatile,
        count: usize,
        off: u64,
    ) -> io::Result<usize> {
        let mut buf = vec![0u8; count];
        // SAFETY: `buf` outlives the slice and nothing else accesses it meanwhile.
        let slice = unsafe { FileVolatileSlice::from_mut_slice(&mut buf) };
        let n = f.read_at_volatile(slice, off)?;
        self.0.extend_from_slice(&buf[..n]);
        Ok(n)
    }
    fn available_bytes(&self) -> usize {
        usize::MAX
    }
}

/// A write on a read-only share must be refused before the data is looked at.
struct UnreadReader;

impl io::Read for UnreadReader {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        panic!("write data read on a read-only share")
    }
}

impl ZeroCopyReader for UnreadReader {
    fn read_to(
        &mut self,
        _: &mut dyn FileReadWriteVolatile,
        _: usize,
        _: u64,
    ) -> io::Result<usize> {
        panic!("write data read on a read-only share")
    }
}

fn exists(root: &Path, name: &str) -> bool {
    root.join(name).symlink_metadata().is_ok()
}

#[test]
fn readonly_reads_work() {
    let (_dir, fs) = share(true, false);
    let c = ctx();
    let e = fs.lookup(&c, ROOT_ID, &cstr("f")).unwrap();
    let (st, _) = fs.getattr(&c, e.inode, None).unwrap();
    assert_eq!(st.st_size, 5);
    fs.lookup(&c, ROOT_ID, &cstr("d")).unwrap();

    let (h, _, _) = fs.open(&c, e.inode, libc::O_RDONLY as u32, 0).unwrap();
    let h = h.unwrap();
    let mut w = VecWriter(Vec::new());
    let n = fs.read(&c, e.inode, h, &mut w, 4096, 0, None, 0).unwrap();
    assert_eq!(n, 5);
    assert_eq!(w.0, b"hello");

    // Writes through a read-only handle are refused by the policy, not the host.
    let r = fs.write(&c, e.inode, h, &mut UnreadReader, 1, 0, None, false, 0, 0);
    assert_eq!(errno(r), libc::EROFS);
    fs.release(&c, e.inode, 0, h, false, false, None).unwrap();

    let (dh, _) = fs.opendir(&c, ROOT_ID, 0).unwrap();
    let mut names = Vec::new();
    fs.readdir(&c, ROOT_ID, dh.unwrap(), 4096, 0, &mut |d| {
        names.push(d.name.to_vec());
        Ok(1)
    })
    .unwrap();
    assert!(names.contains(&b"f".to_vec()) && names.contains(&b"d".to_vec()));
}

#[test]
fn readonly_refuses_writing_opens() {
    let (_dir, fs) = share(true, false);
    let c = ctx();
    let e = fs.lookup(&c, ROOT_ID, &cstr("f")).unwrap();
    for flags in [
        libc::O_WRONLY,
        libc::O_RDWR,
        libc::O_RDONLY | libc::O_TRUNC,
        libc::O_RDONLY | libc::O_APPEND,
        libc::O_RDONLY | libc::O_CREAT,
        libc::O_ACCMODE,
    ] {
        let r = fs.open(&c, e.inode, flags as u32, 0);
        assert_eq!(errno(r), libc::EROFS, "flags {flags:#o}");
    }
}

#[test]
fn readonly_refuses_modifications() {
    let (dir, fs) = share(true, false);
    let root = dir.path();
    let c = ctx();
    let f = fs.lookup(&c, ROOT_ID, &cstr("f")).unwrap().inode;
    let args = CreateIn {
        flags: (libc::O_RDWR | libc::O_CREAT) as u32,
        mode: libc::S_IFREG | 0o644,
        umask: 0,
        fuse_flags: 0,
    };
    assert_eq!(
        errno(fs.create(&c, ROOT_ID, &cstr("new"), args)),
        libc::EROFS
    );
    assert_eq!(
        errno(fs.mkdir(&c, ROOT_ID, &cstr("nd"), 0o755, 0)),
        libc::EROFS
    );
    let mode = libc::S_IFREG | 0o644;
    assert_eq!(
        errno(fs.mknod(&c, ROOT_ID, &cstr("nf"), mode, 0, 0)),
        libc::EROFS
    );
    assert_eq!(
        errno(fs.symlink(&c, &cstr("f"), ROOT_ID, &cstr("sl"))),
        libc::EROFS
    );
    assert_eq!(errno(fs.link(&c, f, ROOT_ID, &cstr("hl"))), libc::EROFS);
    assert_eq!(errno(fs.unlink(&c, ROOT_ID, &cstr("f"))), libc::EROFS);
    assert_eq!(errno(fs.rmdir(&c, ROOT_ID, &cstr("d"))), libc::EROFS);
    let r = fs.rename(&c, ROOT_ID, &cstr("f"), ROOT_ID, &cstr("g"), 0);
    assert_eq!(errno(r), libc::EROFS);

    // SAFETY: stat64 is plain old data; all zeroes is a valid value.
    let attr: stat64 = unsafe { std::mem::zeroed() };
    let r = fs.setattr(&c, f, attr, None, SetattrValid::SIZE);
    assert_eq!(errno(r), libc::EROFS);
    let r = fs.setxattr(&c, f, &cstr("user.x"), b"1", 0);
    assert_eq!(errno(r), libc::EROFS);
    assert_eq!(errno(fs.removexattr(&c, f, &cstr("user.x"))), libc::EROFS);

    for name in ["new", "nd", "nf", "sl", "hl", "g"] {
        assert!(!exists(root, name), "{name} was created");
    }
    assert_eq!(std::fs::read(root.join("f")).unwrap(), b"hello");
    assert!(root.join("d").is_dir());
}

#[test]
fn writable_share_passes_through() {
    let (dir, fs) = share(false, false);
    let c = ctx();
    let args = CreateIn {
        flags: (libc::O_RDWR | libc::O_CREAT) as u32,
        mode: libc::S_IFREG | 0o644,
        umask: 0,
        fuse_flags: 0,
    };
    fs.create(&c, ROOT_ID, &cstr("new"), args).unwrap();
    fs.mkdir(&c, ROOT_ID, &cstr("nd"), 0o755, 0).unwrap();
    let fifo = libc::S_IFIFO | 0o600;
    fs.mknod(&c, ROOT_ID, &cstr("fifo"), fifo, 0, 0).unwrap();
    let e = fs.lookup(&c, ROOT_ID, &cstr("f")).unwrap();
    fs.open(&c, e.inode, libc::O_RDWR as u32, 0).unwrap();
    for name in ["new", "nd", "fifo"] {
        assert!(exists(dir.path(), name), "{name} missing");
    }
}

#[test]
fn device_nodes_refused() {
    for readonly in [false, true] {
        let (dir, fs) = share(readonly, false);
        let c = ctx();
        let rdev = libc::makedev(1, 3) as u32; // /dev/null
        for (name, kind) in [("chr", libc::S_IFCHR), ("blk", libc::S_IFBLK)] {
            let r = fs.mknod(&c, ROOT_ID, &cstr(name), kind | 0o666, rdev, 0);
            assert_eq!(errno(r), libc::EPERM, "{name} readonly={readonly}");
            assert!(!exists(dir.path(), name));
        }
    }
    let (_dir, fs) = share(false, false);
    assert!(!fs.allow_devices());
    assert!(fs.with_allow_devices(true).allow_devices());
}

#[test]
fn ioctl_refused() {
    let (_dir, fs) = share(false, false);
    let c = ctx();
    let e = fs.lookup(&c, ROOT_ID, &cstr("f")).unwrap();
    let (h, _, _) = fs.open(&c, e.inode, libc::O_RDONLY as u32, 0).unwrap();
    let r = fs.ioctl(
        &c,
        e.inode,
        h.unwrap(),
        0,
        libc::FIONREAD as u32,
        IoctlData::default(),
        4,
    );
    assert_eq!(errno(r), libc::ENOTTY);
}

#[test]
fn readonly_init_drops_writeback() {
    let capable = FsOptions::WRITEBACK_CACHE | FsOptions::DO_READDIRPLUS;
    let (_dir, fs) = share(false, true);
    assert!(fs
        .init(capable)
        .unwrap()
        .contains(FsOptions::WRITEBACK_CACHE));
    // The inner filesystem is configured for writeback: the policy alone removes it.
    let fs = SharePolicy::new(fs.into_inner(), true);
    let opts = fs.init(capable).unwrap();
    assert!(!opts.contains(FsOptions::WRITEBACK_CACHE));
    assert!(opts.contains(FsOptions::DO_READDIRPLUS));
}

#[test]
fn open_flag_classification() {
    assert!(!open_flags_write(libc::O_RDONLY as u32));
    let ro = (libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_LARGEFILE) as u32;
    assert!(!open_flags_write(ro));
    assert!(open_flags_write((libc::O_WRONLY | libc::O_TMPFILE) as u32));
    assert!(mode_is_device(libc::S_IFCHR | 0o600));
    assert!(mode_is_device(libc::S_IFBLK));
    assert!(!mode_is_device(libc::S_IFIFO | 0o600));
    assert!(!mode_is_device(libc::S_IFREG | 0o600));
    assert!(!mode_is_device(libc::S_IFSOCK));
}
