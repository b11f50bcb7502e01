//! Drives the reference backend (virtiofsd) to prove the driver is a faithful client.
//! Skips (with a message) when no virtiofsd is available. `FSJAIL_PEER` overrides the path.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use guest_driver::abi::{FileLock, ROOT_ID};
use guest_driver::{Device, Error, Layout, Options, Session, Setattr, XattrReply};

struct Peer {
    child: Child,
    dir: tempfile::TempDir,
    sock: PathBuf,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn peer_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("FSJAIL_PEER") {
        return Some(PathBuf::from(p));
    }
    let home = std::env::var_os("HOME")?;
    let p = Path::new(&home).join(".cargo/bin/virtiofsd");
    p.exists().then_some(p)
}

fn spawn(extra: &[&str]) -> Option<Peer> {
    let Some(bin) = peer_binary() else {
        eprintln!("SKIP: no virtiofsd (set FSJAIL_PEER or install ~/.cargo/bin/virtiofsd)");
        return None;
    };
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    let sock = dir.path().join("vfsd.sock");
    let child = Command::new(bin)
        .arg(format!("--socket-path={}", sock.display()))
        .arg(format!("--shared-dir={}", shared.display()))
        .args(["--sandbox=none", "--cache=auto"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn virtiofsd");
    Some(Peer { child, dir, sock })
}

impl Peer {
    fn shared(&self) -> PathBuf {
        self.dir.path().join("shared")
    }

    fn session(&self, opts: Options) -> Session {
        let dev = Device::connect_with(&self.sock, opts).expect("connect");
        let s = Session::new(Arc::new(dev));
        let init = s.init().expect("init");
        assert_eq!(init.major, 7);
        assert!(init.max_write >= 4096);
        s
    }
}

#[test]
fn negotiation_reports_features() {
    let Some(peer) = spawn(&[]) else { return };
    let dev = Device::connect_with(&peer.sock, Options::default()).unwrap();
    let offered = dev.backend_protocol_features();
    assert!(offered.contains(guest_driver::VhostUserProtocolFeatures::MQ));
    assert!(dev
        .acked_protocol_features()
        .contains(guest_driver::VhostUserProtocolFeatures::REPLY_ACK));
    assert_eq!(dev.backend_queue_num(), Some(2));
    assert!(dev.has_backend_channel());
    assert_ne!(
        dev.acked_features() & guest_driver::frontend::VIRTIO_RING_F_EVENT_IDX,
        0
    );
}

#[test]
fn file_lifecycle_matches_host() {
    let Some(mut peer) = spawn(&[]) else { return };
    let fs = peer.session(Options::default());
    std::fs::write(peer.shared().join("existing"), b"from the host").unwrap();

    // lookup an existing file and read it
    let e = fs.lookup(ROOT_ID, "existing").unwrap();
    assert_eq!(e.attr.size, 13);
    let o = fs.open(e.nodeid, libc::O_RDONLY as u32).unwrap();
    assert_eq!(fs.read(e.nodeid, o.fh, 0, 4096).unwrap(), b"from the host");
    assert_eq!(fs.read(e.nodeid, o.fh, 5, 3).unwrap(), b"the");
    fs.release(e.nodeid, o.fh, 0, 0, 0).unwrap();

    // missing name
    let err = fs.lookup(ROOT_ID, "missing").unwrap_err();
    assert_eq!(err.errno(), Some(libc::ENOENT), "{err}");

    // create + write, checked on the host
    let (ce, co) = fs
        .create(
            ROOT_ID,
            "new.txt",
            0o644 | libc::S_IFREG,
            libc::O_RDWR as u32,
            0,
        )
        .unwrap();
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let mut off = 0;
    let chunk = fs.max_write() as usize;
    for part in data.chunks(chunk) {
        assert_eq!(
            fs.write(ce.nodeid, co.fh, off, part).unwrap() as usize,
            part.len()
        );
        off += part.len() as u64;
    }
    fs.flush(ce.nodeid, co.fh, 0).unwrap();
    fs.fsync(ce.nodeid, co.fh, false).unwrap();
    assert_eq!(std::fs::read(peer.shared().join("new.txt")).unwrap(), data);
    let back = fs.read(ce.nodeid, co.fh, 100_000, 65536).unwrap();
    assert_eq!(back, &data[100_000..165_536]);
    let a = fs.getattr(ce.nodeid, Some(co.fh)).unwrap();
    assert_eq!(a.attr.size, data.len() as u64);

    // setattr: truncate + chmod
    let a = fs
        .setattr(ce.nodeid, &Setattr::new().size(10).mode(0o600))
        .unwrap();
    assert_eq!(a.attr.size, 10);
    let md = std::fs::metadata(peer.shared().join("new.txt")).unwrap();
    assert_eq!(md.len(), 10);
    assert_eq!(md.mode() & 0o777, 0o600);
    fs.release(ce.nodeid, co.fh, 0, 0, 0).unwrap();

    // directories, symlinks, rename, readdirplus
    let d = fs.mkdir(ROOT_ID, "sub", 0o755, 0).unwrap();
    assert!(peer.shared().join("sub").is_dir());
    let l = fs.symlink(d.nodeid, "link", "../new.txt").unwrap();
    assert_eq!(fs.readlink(l.nodeid).unwrap(), b"../new.txt");
    fs.rename(ROOT_ID, "new.txt", d.nodeid, "moved.txt")
        .unwrap();
    assert!(peer.shared().join("sub/moved.txt").exists());
    let h = fs.link(ce.nodeid, ROOT_ID, "hard").unwrap();
    assert_eq!(h.attr.nlink, 2);

    let dh = fs.opendir(ROOT_ID, libc::O_RDONLY as u32).unwrap();
    let plus = fs.readdirplus(ROOT_ID, dh.fh, 0, 8192).unwrap();
    // virtiofsd lists "." and ".."; other backends may leave them out.
    let mut names: Vec<String> = plus.iter().map(|p| p.dirent.name_str()).collect();
    names.retain(|n| n != "." && n != "..");
    names.sort();
    assert_eq!(names, ["existing", "hard", "sub"]);
    let sub = plus.iter().find(|p| p.dirent.name == b"sub").unwrap();
    assert_eq!(sub.entry.nodeid, d.nodeid);
    let plain = fs.readdir(ROOT_ID, dh.fh, 0, 8192).unwrap();
    assert_eq!(plain.len(), plus.len());
    // continue from the second entry's offset
    let rest = fs.readdir(ROOT_ID, dh.fh, plain[1].off, 8192).unwrap();
    assert_eq!(rest, plain[2..]);
    // a buffer too small for everything returns a prefix
    let first = fs.readdir(ROOT_ID, dh.fh, 0, 40).unwrap();
    assert_eq!(first, plain[..1]);
    fs.releasedir(ROOT_ID, dh.fh, 0).unwrap();

    // unlink / rmdir, checked on the host
    fs.unlink(ROOT_ID, "hard").unwrap();
    assert!(!peer.shared().join("hard").exists());
    fs.unlink(d.nodeid, "moved.txt").unwrap();
    fs.unlink(d.nodeid, "link").unwrap();
    fs.rmdir(ROOT_ID, "sub").unwrap();
    assert!(!peer.shared().join("sub").exists());
    assert_eq!(
        fs.rmdir(ROOT_ID, "sub").unwrap_err().errno(),
        Some(libc::ENOENT)
    );

    let st = fs.statfs(ROOT_ID).unwrap();
    assert!(st.bsize > 0);
    fs.access(ROOT_ID, libc::R_OK as u32).unwrap();

    fs.forget(ce.nodeid, 2).unwrap();
    fs.batch_forget(&[(d.nodeid, 1), (l.nodeid, 1), (e.nodeid, 1)])
        .unwrap();
    fs.syncfs(ROOT_ID).unwrap();
    fs.destroy().unwrap();
    let _ = peer.child.try_wait();
}

#[test]
fn locks_xattrs_fallocate_lseek() {
    let Some(peer) = spawn(&["--xattr"]) else {
        return;
    };
    let fs = peer.session(Options::default());
    let (e, o) = fs
        .create(ROOT_ID, "f", 0o644 | libc::S_IFREG, libc::O_RDWR as u32, 0)
        .unwrap();
    fs.setxattr(e.nodeid, "user.k", b"value", 0).unwrap();
    assert_eq!(
        fs.getxattr(e.nodeid, "user.k", 0).unwrap(),
        XattrReply::Size(5)
    );
    assert_eq!(
        fs.getxattr(e.nodeid, "user.k", 64).unwrap(),
        XattrReply::Data(b"value".to_vec())
    );
    match fs.listxattr(e.nodeid, 256).unwrap() {
        XattrReply::Data(d) => assert!(d.split(|b| *b == 0).any(|n| n == b"user.k")),
        r => panic!("{r:?}"),
    }
    assert_eq!(
        fs.getxattr(e.nodeid, "user.k", 2).unwrap_err().errno(),
        Some(libc::ERANGE)
    );
    fs.removexattr(e.nodeid, "user.k").unwrap();
    assert_eq!(
        fs.getxattr(e.nodeid, "user.k", 0).unwrap_err().errno(),
        Some(libc::ENODATA)
    );

    let lk = FileLock {
        start: 0,
        end: 99,
        type_: libc::F_WRLCK as u32,
        pid: 0,
    };
    fs.setlk(e.nodeid, o.fh, 1, lk, false)
        .unwrap_or_else(|err| {
            // virtiofsd refuses POSIX locks unless asked to support them.
            assert_eq!(err.errno(), Some(libc::ENOSYS), "{err}");
        });

    fs.fallocate(e.nodeid, o.fh, 0, 1 << 16, 0).unwrap();
    assert_eq!(
        std::fs::metadata(peer.shared().join("f")).unwrap().len(),
        1 << 16
    );
    assert_eq!(
        fs.lseek(e.nodeid, o.fh, 100, libc::SEEK_SET as u32)
            .unwrap(),
        100
    );
    fs.release(e.nodeid, o.fh, 0, 0, 0).unwrap();
}

#[test]
fn pipelined_requests_and_threads() {
    let Some(peer) = spawn(&["--thread-pool-size=4"]) else {
        return;
    };
    let fs = Arc::new(peer.session(Options {
        queue_size: 64,
        ..Options::default()
    }));
    let data: Vec<u8> = (0..1 << 20).map(|i: u32| (i * 7) as u8).collect();
    std::fs::write(peer.shared().join("big"), &data).unwrap();
    let e = fs.lookup(ROOT_ID, "big").unwrap();
    let o = fs.open(e.nodeid, libc::O_RDONLY as u32).unwrap();

    // 16 reads in flight at once on one queue (32 descriptors of 64).
    let pend: Vec<_> = (0..16u64)
        .map(|i| fs.submit_read(e.nodeid, o.fh, i * 65536, 65536).unwrap())
        .collect();
    for (i, p) in pend.into_iter().enumerate().rev() {
        let got = fs.complete(p).unwrap();
        assert_eq!(got, &data[i * 65536..(i + 1) * 65536]);
    }

    // More requests than descriptors: submit waits for free slots.
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let fs = Arc::clone(&fs);
            let data = data.clone();
            let (node, fh) = (e.nodeid, o.fh);
            std::thread::spawn(move || {
                for i in 0..50u64 {
                    let off = ((t * 50 + i) * 4093) % (1 << 19);
                    let got = fs.read(node, fh, off, 8192).unwrap();
                    assert_eq!(got, &data[off as usize..off as usize + 8192]);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let q = fs.device().queue(1).unwrap();
    assert_eq!(q.in_flight(), 0);
    assert_eq!(q.free_descriptors(), 64);
    fs.release(e.nodeid, o.fh, 0, 0, 0).unwrap();
}

#[test]
fn layouts_and_raw_requests() {
    // virtiofsd serves a single connection, so each session gets its own instance.
    for layout in [Layout::Single, Layout::Fragmented(7), Layout::PerArg] {
        let Some(peer) = spawn(&[]) else { return };
        std::fs::write(peer.shared().join("x"), b"0123456789").unwrap();
        let fs = peer.session(Options {
            event_idx: layout != Layout::Single,
            ..Options::default()
        });
        fs.set_layout(layout);
        let e = fs.lookup(ROOT_ID, "x").unwrap();
        let o = fs.open(e.nodeid, libc::O_RDONLY as u32).unwrap();
        assert_eq!(
            fs.read(e.nodeid, o.fh, 2, 5).unwrap(),
            b"23456",
            "{layout:?}"
        );
        fs.release(e.nodeid, o.fh, 0, 0, 0).unwrap();
    }

    let Some(peer) = spawn(&[]) else { return };
    let fs = peer.session(Options::default());
    // An unknown opcode gets ENOSYS.
    let unique = 0xabcdu64;
    let mut hdr = Vec::new();
    hdr.extend_from_slice(&40u32.to_le_bytes());
    hdr.extend_from_slice(&9999u32.to_le_bytes());
    hdr.extend_from_slice(&unique.to_le_bytes());
    hdr.extend_from_slice(&ROOT_ID.to_le_bytes());
    hdr.extend_from_slice(&[0u8; 16]);
    let r = fs
        .send_raw(1, &[&hdr[..10], &hdr[10..]], &[8, 8, 100])
        .unwrap();
    assert_eq!(r.used_len, 16);
    assert_eq!(
        i32::from_le_bytes(r.bytes[4..8].try_into().unwrap()),
        -libc::ENOSYS
    );
    assert_eq!(
        u64::from_le_bytes(r.bytes[8..16].try_into().unwrap()),
        unique
    );

    // The session still works afterwards.
    fs.getattr(ROOT_ID, None).unwrap();
    match fs.lookup(ROOT_ID, "nope") {
        Err(Error::Errno(e)) => assert_eq!(e, libc::ENOENT),
        r => panic!("{r:?}"),
    }
}

#[test]
fn drop_disconnects_and_backend_exits() {
    let Some(mut peer) = spawn(&[]) else { return };
    let fs = peer.session(Options::default());
    fs.getattr(ROOT_ID, None).unwrap();
    drop(fs);
    for _ in 0..100 {
        if let Some(status) = peer.child.try_wait().unwrap() {
            eprintln!("virtiofsd exited: {status}");
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("virtiofsd still running 5s after the frontend went away");
}

#[test]
fn more_ops_are_well_formed() {
    let Some(peer) = spawn(&[]) else { return };
    let fs = peer.session(Options::default());
    let fifo = fs
        .mknod(ROOT_ID, "fifo", libc::S_IFIFO | 0o600, 0, 0)
        .unwrap();
    assert_eq!(fifo.attr.mode & libc::S_IFMT, libc::S_IFIFO);
    let (a, ao) = fs
        .create(ROOT_ID, "a", libc::S_IFREG | 0o644, libc::O_RDWR as u32, 0)
        .unwrap();
    let (b, bo) = fs
        .create(ROOT_ID, "b", libc::S_IFREG | 0o644, libc::O_RDWR as u32, 0)
        .unwrap();
    fs.write(a.nodeid, ao.fh, 0, b"copy me please").unwrap();
    let n = fs
        .copy_file_range(
            a.nodeid,
            guest_driver::abi::CopyFileRangeIn {
                fh_in: ao.fh,
                off_in: 5,
                nodeid_out: b.nodeid,
                fh_out: bo.fh,
                off_out: 0,
                len: 9,
                flags: 0,
            },
        )
        .unwrap();
    assert_eq!(n, 9);
    assert_eq!(
        std::fs::read(peer.shared().join("b")).unwrap(),
        b"me please"
    );
    let err = fs
        .rename2(ROOT_ID, "a", ROOT_ID, "b", libc::RENAME_NOREPLACE)
        .unwrap_err();
    assert_eq!(err.errno(), Some(libc::EEXIST));
    fs.rename2(ROOT_ID, "a", ROOT_ID, "b", libc::RENAME_EXCHANGE)
        .unwrap();
    assert_eq!(
        std::fs::read(peer.shared().join("a")).unwrap(),
        b"me please"
    );
    let lk = FileLock {
        start: 0,
        end: 10,
        type_: libc::F_RDLCK as u32,
        pid: 0,
    };
    match fs.getlk(a.nodeid, ao.fh, 1, lk) {
        Ok(l) => assert_eq!(l.type_, libc::F_UNLCK as u32),
        Err(e) => assert_eq!(e.errno(), Some(libc::ENOSYS), "{e}"),
    }
    // Each of these may be unsupported; what matters is a well-formed reply.
    let checks: Vec<(&str, guest_driver::Result<()>)> = vec![
        (
            "tmpfile",
            fs.tmpfile(ROOT_ID, libc::S_IFREG | 0o600, libc::O_RDWR as u32, 0)
                .map(drop),
        ),
        (
            "ioctl",
            fs.ioctl(a.nodeid, ao.fh, 0, 0x8008_6601, 0, &[], 8)
                .map(drop),
        ),
        (
            "setupmapping",
            fs.setupmapping(a.nodeid, ao.fh, 0, 4096, 1, 0),
        ),
        ("removemapping", fs.removemapping(a.nodeid, &[(0, 4096)])),
        ("fsyncdir", fs.fsyncdir(ROOT_ID, 0, false)),
        ("interrupt", fs.interrupt(12345)),
    ];
    for (what, r) in checks {
        match r {
            Ok(()) | Err(Error::Errno(_)) => eprintln!("{what}: {r:?}"),
            Err(e) => panic!("{what}: {e}"),
        }
    }
    fs.getattr(ROOT_ID, None).unwrap();
}

#[test]
fn hostile_descriptors_do_not_hang_the_driver() {
    use guest_driver::virtqueue::VIRTQ_DESC_F_NEXT;
    use guest_driver::{Descriptor, RawDesc};
    let Some(peer) = spawn(&[]) else { return };
    let fs = peer.session(Options::default());
    let dev = fs.device();
    let q = dev.queue(1).unwrap();
    // A chain whose `next` loops back to itself.
    let looped = [
        RawDesc {
            index: 0,
            desc: Descriptor {
                addr: 0x10000,
                len: 40,
                flags: VIRTQ_DESC_F_NEXT,
                next: 1,
            },
        },
        RawDesc {
            index: 1,
            desc: Descriptor {
                addr: 0x10000,
                len: 40,
                flags: VIRTQ_DESC_F_NEXT,
                next: 0,
            },
        },
    ];
    let t = q.post_raw(&looped, 0, Vec::new()).unwrap();
    let r = q.wait(t, Duration::from_secs(1));
    eprintln!("looped chain: {:?}", r.as_ref().map(|c| c.used_len));
    // An address outside guest memory.
    let outside = [RawDesc {
        index: 5,
        desc: Descriptor {
            addr: 1 << 40,
            len: 40,
            flags: 0,
            next: 0,
        },
    }];
    let t = q.post_raw(&outside, 5, Vec::new()).unwrap();
    let r = q.wait(t, Duration::from_secs(1));
    eprintln!("outside chain: {:?}", r.as_ref().map(|c| c.used_len));
    fs.set_timeout(Duration::from_secs(1));
    eprintln!("after: {:?}", fs.getattr(ROOT_ID, None).map(|a| a.attr.ino));
}

#[test]
fn many_threads_on_a_small_queue() {
    let Some(peer) = spawn(&["--thread-pool-size=8"]) else {
        return;
    };
    let fs = Arc::new(peer.session(Options {
        queue_size: 8,
        ..Options::default()
    }));
    fs.set_timeout(Duration::from_secs(5));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let fs = Arc::clone(&fs);
            std::thread::spawn(move || {
                for i in 0..300 {
                    if (t + i) % 3 == 0 {
                        assert_eq!(
                            fs.lookup(ROOT_ID, "none").unwrap_err().errno(),
                            Some(libc::ENOENT)
                        );
                    } else {
                        fs.getattr(ROOT_ID, None).unwrap();
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let q = fs.device().queue(1).unwrap();
    assert_eq!(q.free_descriptors(), 8);
    assert!(q.take_unexpected().is_empty());
    let s = q.stats();
    eprintln!(
        "submitted {} completed {} kicks {} suppressed {} calls {}",
        s.submitted.load(std::sync::atomic::Ordering::Relaxed),
        s.completed.load(std::sync::atomic::Ordering::Relaxed),
        s.kicks.load(std::sync::atomic::Ordering::Relaxed),
        s.kicks_suppressed
            .load(std::sync::atomic::Ordering::Relaxed),
        s.calls.load(std::sync::atomic::Ordering::Relaxed),
    );
}

#[test]
fn backend_death_is_reported_not_timed_out() {
    let Some(mut peer) = spawn(&[]) else { return };
    let fs = peer.session(Options::default());
    assert!(fs.device().backend_alive());
    peer.child.kill().unwrap();
    peer.child.wait().unwrap();
    let t = std::time::Instant::now();
    let err = fs.getattr(ROOT_ID, None).unwrap_err();
    assert!(matches!(err, Error::Disconnected), "{err}");
    assert!(t.elapsed() < Duration::from_secs(2));
    assert!(!fs.device().backend_alive());
}
