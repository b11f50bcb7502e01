//! Malformed requests against fsjail (its own process, driven by the guest driver's raw entry
//! points). Each one must get an errno reply carrying the request's `unique` (or no reply where
//! the protocol has none: FORGET, BATCH_FORGET, INTERRUPT), after which a good request still
//! works and the process is still alive.

mod common;

use std::fs;

use common::{assert_errno_reply, out_header, Backend, Config, Kind};
use guest_driver::abi::{
    BatchForgetIn, CopyFileRangeIn, CreateIn, ForgetIn, ForgetOne, GetxattrIn, InHeader,
    InterruptIn, LinkIn, LseekIn, MkdirIn, MknodIn, Opcode, OpenIn, ReadIn, Rename2In, RenameIn,
    SetattrIn, SetxattrIn, WriteIn, ROOT_ID,
};
use guest_driver::{RawReply, Session};
use vm_memory::ByteValued;

const HDR: usize = std::mem::size_of::<InHeader>();

/// A request header; `len` is whatever the test wants it to claim.
fn header(len: usize, opcode: u32, unique: u64, nodeid: u64) -> InHeader {
    InHeader {
        len: len as u32,
        opcode,
        unique,
        nodeid,
        // SAFETY: getuid takes no arguments and cannot fail.
        uid: unsafe { libc::getuid() },
        // SAFETY: getgid takes no arguments and cannot fail.
        gid: unsafe { libc::getgid() },
        pid: std::process::id(),
        total_extlen: 0,
        padding: 0,
    }
}

/// Header (with the honest length) followed by `body`, as one buffer.
fn request(opcode: Opcode, unique: u64, nodeid: u64, body: &[&[u8]]) -> Vec<u8> {
    let len = HDR + body.iter().map(|b| b.len()).sum::<usize>();
    let mut v = header(len, opcode as u32, unique, nodeid)
        .as_slice()
        .to_vec();
    for b in body {
        v.extend_from_slice(b);
    }
    v
}

fn name(s: &[u8]) -> Vec<u8> {
    let mut v = s.to_vec();
    v.push(0);
    v
}

struct Fixture {
    b: Backend,
    s: Session,
}

impl Fixture {
    fn new(cfg: &Config) -> Fixture {
        let b = Backend::start(Kind::Fsjail, cfg);
        fs::write(b.host("file"), b"content").unwrap();
        fs::create_dir(b.host("dir")).unwrap();
        let s = b.session();
        Fixture { b, s }
    }

    /// Sends `bytes` as one readable descriptor with a writable buffer of `wlen`.
    fn send(&self, bytes: &[u8], wlen: u32) -> RawReply {
        self.send_on(1, bytes, wlen)
    }

    fn send_on(&self, queue: u16, bytes: &[u8], wlen: u32) -> RawReply {
        let w: &[u32] = if wlen == 0 {
            &[]
        } else {
            std::slice::from_ref(&wlen)
        };
        self.s
            .send_raw(queue, &[bytes], w)
            .unwrap_or_else(|e| panic!("raw request: {e}\n{}", self.b.log()))
    }

    /// Sends and expects an errno reply with `unique`, then proves the device still serves.
    #[track_caller]
    fn refused(&mut self, bytes: &[u8], unique: u64, errno: i32, what: &str) {
        let r = self.send(bytes, 4096);
        assert_errno_reply(&r, unique, errno, what);
        self.still_works(what);
    }

    /// Sends on the hiprio queue and expects no reply at all.
    #[track_caller]
    fn silent(&mut self, bytes: &[u8], what: &str) {
        let r = self.send_on(0, bytes, 256);
        assert_eq!(
            r.used_len, 0,
            "{what}: expected no reply, got {:?}",
            r.bytes
        );
        self.still_works(what);
    }

    /// A good request works and the process is alive.
    #[track_caller]
    fn still_works(&mut self, after: &str) {
        let e = self
            .s
            .lookup(ROOT_ID, "file")
            .unwrap_or_else(|e| panic!("LOOKUP after {after}: {e}\n{}", self.b.log()));
        assert_eq!(e.attr.size, 7, "after {after}");
        self.s
            .getattr(ROOT_ID, None)
            .unwrap_or_else(|e| panic!("GETATTR after {after}: {e}"));
        self.s.forget(e.nodeid, 1).unwrap();
        self.b.assert_alive();
    }

    fn lookup(&self, n: &str) -> u64 {
        self.s.lookup(ROOT_ID, n).unwrap().nodeid
    }
}

#[test]
fn truncated_header() {
    let mut f = Fixture::new(&Config::default());
    let full = request(Opcode::Getattr, 77, ROOT_ID, &[&[0u8; 16]]);
    // The header cannot even be read, so there is no `unique` to echo: the reply carries 0.
    for cut in [0usize, 1, 8, 20, HDR - 1] {
        let r = if cut == 0 {
            f.s.send_raw(1, &[], &[4096]).unwrap()
        } else {
            f.send(&full[..cut], 4096)
        };
        assert_errno_reply(&r, 0, libc::EINVAL, &format!("{cut}-byte header"));
        f.still_works("truncated header");
    }
    // A truncated header split over several descriptors is no different.
    let r =
        f.s.send_raw(1, &[&full[..10], &full[10..20]], &[8, 8])
            .unwrap();
    assert_errno_reply(&r, 0, libc::EINVAL, "split truncated header");
    f.still_works("split truncated header");
}

#[test]
fn header_len_disagrees_with_the_chain() {
    let mut f = Fixture::new(&Config::default());
    let body = [0u8; 16]; // GetattrIn
    let mut u = 1000;
    for claimed in [
        HDR + 17,
        HDR + 100,
        HDR + 4096,
        u32::MAX as usize,
        HDR + 15,
        HDR,
        HDR - 1,
        0,
    ] {
        u += 1;
        let mut req = header(claimed, Opcode::Getattr as u32, u, ROOT_ID)
            .as_slice()
            .to_vec();
        req.extend_from_slice(&body);
        f.refused(
            &req,
            u,
            libc::EINVAL,
            &format!("len {claimed} for {} bytes", HDR + 16),
        );
    }
    // A WRITE whose header promises more payload than the chain has: nothing reaches the host.
    let (node, fh) = {
        let (e, o) =
            f.s.create(ROOT_ID, "w", libc::S_IFREG | 0o644, libc::O_RDWR as u32, 0)
                .unwrap();
        (e.nodeid, o.fh)
    };
    let data = b"payload";
    let arg = WriteIn {
        fh,
        offset: 0,
        size: data.len() as u32,
        ..Default::default()
    };
    let mut req = request(Opcode::Write, 2000, node, &[arg.as_slice(), data]);
    let honest = req.len();
    req[0..4].copy_from_slice(&((honest + 64) as u32).to_le_bytes());
    f.refused(&req, 2000, libc::EINVAL, "WRITE len past the chain");
    req[0..4].copy_from_slice(&((honest - 3) as u32).to_le_bytes());
    req[8..16].copy_from_slice(&2001u64.to_le_bytes());
    f.refused(&req, 2001, libc::EINVAL, "WRITE len short of the chain");
    // WriteIn.size disagreeing with the payload.
    let arg = WriteIn {
        fh,
        offset: 0,
        size: 100,
        ..Default::default()
    };
    f.refused(
        &request(Opcode::Write, 2002, node, &[arg.as_slice(), data]),
        2002,
        libc::EINVAL,
        "WRITE size",
    );
    assert_eq!(
        fs::read(f.b.host("w")).unwrap(),
        b"",
        "a refused WRITE wrote"
    );
}

#[test]
fn bad_names() {
    let mut f = Fixture::new(&Config::default());
    let dir = f.lookup("dir");
    let cases: Vec<(&str, Vec<u8>, i32)> = vec![
        ("slash", name(b"a/b"), libc::EINVAL),
        ("leading slash", name(b"/etc"), libc::EINVAL),
        ("no NUL", b"file".to_vec(), libc::EINVAL),
        ("junk after NUL", b"file\0junk".to_vec(), libc::EINVAL),
        ("empty", name(b""), libc::EINVAL),
        ("256 bytes", name(&[b'a'; 256]), libc::ENAMETOOLONG),
        ("4096 bytes", name(&[b'a'; 4096]), libc::ENAMETOOLONG),
        // Longer than any valid names part: the server copies these to the heap rather than
        // its stack buffer, and they must still get the same errno as shorter bad names.
        ("8192 bytes", name(&[b'a'; 8192]), libc::ENAMETOOLONG),
        (
            "junk after NUL past 4 KiB",
            [&b"file\0"[..], &[b'j'; 8192]].concat(),
            libc::EINVAL,
        ),
        (".", name(b"."), libc::EINVAL),
        ("..", name(b".."), libc::EINVAL),
    ];
    let mut u = 3000;
    for (what, n, errno) in &cases {
        for (op, fixed) in [
            (Opcode::Lookup, Vec::new()),
            (Opcode::Unlink, Vec::new()),
            (Opcode::Rmdir, Vec::new()),
            (
                Opcode::Mkdir,
                MkdirIn {
                    mode: 0o755,
                    umask: 0,
                }
                .as_slice()
                .to_vec(),
            ),
            (
                Opcode::Mknod,
                MknodIn {
                    mode: libc::S_IFIFO | 0o600,
                    ..Default::default()
                }
                .as_slice()
                .to_vec(),
            ),
            (
                Opcode::Create,
                CreateIn {
                    flags: libc::O_RDWR as u32,
                    mode: libc::S_IFREG | 0o644,
                    ..Default::default()
                }
                .as_slice()
                .to_vec(),
            ),
            (
                Opcode::Link,
                LinkIn {
                    oldnodeid: f.lookup("file"),
                }
                .as_slice()
                .to_vec(),
            ),
        ] {
            u += 1;
            let req = request(op, u, dir, &[&fixed, n]);
            f.refused(&req, u, *errno, &format!("{op:?} name {what}"));
        }
        // Either side of a rename.
        let good = name(b"file");
        u += 1;
        let req = request(
            Opcode::Rename,
            u,
            ROOT_ID,
            &[RenameIn { newdir: dir }.as_slice(), &good, n],
        );
        f.refused(&req, u, *errno, &format!("RENAME new name {what}"));
        if n.ends_with(&[0]) {
            u += 1;
            let req = request(
                Opcode::Rename,
                u,
                ROOT_ID,
                &[RenameIn { newdir: dir }.as_slice(), n, &good],
            );
            f.refused(&req, u, *errno, &format!("RENAME old name {what}"));
        }
        // SYMLINK's entry name.
        if n.ends_with(&[0]) {
            u += 1;
            let req = request(Opcode::Symlink, u, dir, &[n, &name(b"target")]);
            f.refused(&req, u, *errno, &format!("SYMLINK name {what}"));
        }
    }
    // SYMLINK: a target without its NUL, or empty.
    f.refused(
        &request(Opcode::Symlink, 3900, dir, &[&name(b"l"), b"target"]),
        3900,
        libc::EINVAL,
        "target no NUL",
    );
    f.refused(
        &request(Opcode::Symlink, 3901, dir, &[&name(b"l"), &name(b"")]),
        3901,
        libc::EINVAL,
        "empty target",
    );
    // Nothing was made anywhere: the share and its parent are as before.
    let mut names: Vec<String> = fs::read_dir(f.b.share())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["dir", "file"]);
    assert_eq!(fs::read_dir(f.b.host("dir")).unwrap().count(), 0);
    let parent: Vec<_> = fs::read_dir(f.b.share().parent().unwrap())
        .unwrap()
        .collect();
    assert_eq!(parent.len(), 3, "share, socket and log only: {parent:?}");
}

#[test]
fn unknown_and_unsupported_opcodes() {
    let mut f = Fixture::new(&Config::default());
    let mut u = 4000;
    for op in [
        0u32,
        7,
        19,
        9999,
        u32::MAX,
        Opcode::Bmap as u32,
        Opcode::Poll as u32,
        Opcode::Statx as u32,
    ] {
        u += 1;
        let body = [0u8; 24];
        let mut req = header(HDR + body.len(), op, u, ROOT_ID).as_slice().to_vec();
        req.extend_from_slice(&body);
        f.refused(&req, u, libc::ENOSYS, &format!("opcode {op}"));
    }
}

#[test]
fn requests_before_init() {
    let b = Backend::start(Kind::Fsjail, &Config::default());
    fs::write(b.host("file"), b"content").unwrap();
    let s = b.connect(b.options());
    let mut f = Fixture { b, s };
    let mut u = 5000;
    for (op, body) in [
        (Opcode::Getattr, vec![0u8; 16]),
        (Opcode::Lookup, name(b"file")),
        (Opcode::Statfs, vec![]),
        (Opcode::Destroy, vec![]),
    ] {
        u += 1;
        let r = f.send(&request(op, u, ROOT_ID, &[&body]), 4096);
        assert_errno_reply(&r, u, libc::EIO, &format!("{op:?} before INIT"));
        f.b.assert_alive();
    }
    // The no-reply opcodes stay silent before INIT too.
    let forget = ForgetIn { nlookup: 1 };
    let r = f.send_on(
        0,
        &request(Opcode::Forget, 5100, ROOT_ID, &[forget.as_slice()]),
        64,
    );
    assert_eq!(r.used_len, 0, "FORGET before INIT replied");
    let intr = InterruptIn { unique: 5000 };
    let r = f.send_on(
        0,
        &request(Opcode::Interrupt, 5101, 0, &[intr.as_slice()]),
        64,
    );
    assert_eq!(r.used_len, 0, "INTERRUPT before INIT replied");
    f.b.assert_alive();
    f.s.init().unwrap();
    f.still_works("requests before INIT");
}

#[test]
fn second_init() {
    let mut f = Fixture::new(&Config::default());
    let first = f.s.init_out().unwrap();
    let e = f.s.init().unwrap_err();
    assert_eq!(e.errno(), Some(libc::EIO), "{e}");
    // Raw, to check the unique as well.
    let init = guest_driver::abi::InitIn {
        major: 7,
        minor: 38,
        max_readahead: 0,
        flags: 0,
        flags2: 0,
        unused: [0; 11],
    };
    f.refused(
        &request(Opcode::Init, 6000, 0, &[init.as_slice()]),
        6000,
        libc::EIO,
        "second INIT",
    );
    // The first negotiation still holds: a max_write-sized WRITE is accepted.
    let (e, o) =
        f.s.create(
            ROOT_ID,
            "big",
            libc::S_IFREG | 0o644,
            libc::O_RDWR as u32,
            0,
        )
        .unwrap();
    let data = vec![7u8; first.max_write as usize];
    assert_eq!(
        f.s.write(e.nodeid, o.fh, 0, &data).unwrap(),
        first.max_write
    );
    assert_eq!(fs::read(f.b.host("big")).unwrap(), data);
}

#[test]
fn read_size_beyond_the_writable_space() {
    let mut f = Fixture::new(&Config::default());
    let node = f.lookup("file");
    let fh = f.s.open(node, libc::O_RDONLY as u32).unwrap().fh;
    let max = f.s.max_write();
    let dir = f.lookup("dir");
    let dh = f.s.opendir(dir, libc::O_RDONLY as u32).unwrap().fh;
    let mut u = 7000;
    for (op, nodeid, fh, size, wlen) in [
        (Opcode::Read, node, fh, 65536u32, 4096u32),
        (Opcode::Read, node, fh, 4097 - 16, 4096),
        (Opcode::Read, node, fh, max + 1, max + 4096),
        (Opcode::Read, node, fh, u32::MAX, 4096),
        (Opcode::Readdir, dir, dh, 65536, 4096),
        (Opcode::Readdirplus, dir, dh, u32::MAX, 4096),
    ] {
        u += 1;
        let arg = ReadIn {
            fh,
            offset: 0,
            size,
            ..Default::default()
        };
        let r = f.send(&request(op, u, nodeid, &[arg.as_slice()]), wlen);
        assert_errno_reply(
            &r,
            u,
            libc::EINVAL,
            &format!("{op:?} size {size} into {wlen}"),
        );
        f.still_works("oversized READ");
    }
    // Offsets past i64::MAX are refused rather than wrapped.
    let arg = ReadIn {
        fh,
        offset: u64::MAX,
        size: 10,
        ..Default::default()
    };
    f.refused(
        &request(Opcode::Read, 7100, node, &[arg.as_slice()]),
        7100,
        libc::EINVAL,
        "READ offset",
    );
    // The exact fit works.
    let arg = ReadIn {
        fh,
        offset: 0,
        size: 4096 - 16,
        ..Default::default()
    };
    let r = f.send(&request(Opcode::Read, 7101, node, &[arg.as_slice()]), 4096);
    assert_eq!(out_header(&r), (16 + 7, 0, 7101));
    assert_eq!(&r.bytes[16..23], b"content");
}

#[test]
fn getxattr_with_a_huge_size_is_capped() {
    let mut f = Fixture::new(&Config::xattr());
    let node = f.lookup("file");
    f.s.setxattr(node, "user.k", b"value", 0).unwrap();
    let q = GetxattrIn {
        size: u32::MAX,
        padding: 0,
    };
    // Room for the value: the value comes back.
    let r = f.send(
        &request(
            Opcode::Getxattr,
            8000,
            node,
            &[q.as_slice(), &name(b"user.k")],
        ),
        4096,
    );
    assert_eq!(out_header(&r), (16 + 5, 0, 8000));
    assert_eq!(&r.bytes[16..21], b"value");
    f.still_works("GETXATTR u32::MAX");
    // No room in the chain: ERANGE, not an overrun.
    let r = f.send(
        &request(
            Opcode::Getxattr,
            8002,
            node,
            &[q.as_slice(), &name(b"user.k")],
        ),
        18,
    );
    assert_errno_reply(
        &r,
        8002,
        libc::ERANGE,
        "GETXATTR value larger than the chain",
    );
    f.still_works("GETXATTR small chain");
    let r = f.send(
        &request(Opcode::Listxattr, 8003, node, &[q.as_slice()]),
        4096,
    );
    let (len, err, u) = out_header(&r);
    assert_eq!((err, u), (0, 8003));
    assert!(r.bytes[16..len as usize]
        .split(|b| *b == 0)
        .any(|n| n == b"user.k"));
    f.still_works("LISTXATTR u32::MAX");
    // SETXATTR whose size disagrees with the value, or beyond XATTR_SIZE_MAX.
    let set = SetxattrIn {
        size: 100,
        flags: 0,
    };
    f.refused(
        &request(
            Opcode::Setxattr,
            8004,
            node,
            &[set.as_slice(), &name(b"user.x"), b"abc"],
        ),
        8004,
        libc::EINVAL,
        "SETXATTR size",
    );
    let set = SetxattrIn {
        size: u32::MAX,
        flags: 0,
    };
    f.refused(
        &request(
            Opcode::Setxattr,
            8005,
            node,
            &[set.as_slice(), &name(b"user.x"), b"abc"],
        ),
        8005,
        libc::E2BIG,
        "SETXATTR huge",
    );
    f.refused(
        &request(Opcode::Getxattr, 8006, node, &[q.as_slice(), b"user.k"]),
        8006,
        libc::EINVAL,
        "xattr name no NUL",
    );
}

#[test]
fn no_reply_opcodes_stay_silent_when_malformed() {
    let mut f = Fixture::new(&Config::default());
    let node = f.lookup("file");
    // FORGET without its argument, with a forged node, and with a huge count.
    f.silent(
        &request(Opcode::Forget, 9000, node, &[]),
        "FORGET without ForgetIn",
    );
    f.silent(
        &request(
            Opcode::Forget,
            9001,
            0xdead_beef,
            &[ForgetIn { nlookup: 1 }.as_slice()],
        ),
        "FORGET forged node",
    );
    f.silent(
        &request(
            Opcode::Forget,
            9002,
            ROOT_ID,
            &[ForgetIn { nlookup: u64::MAX }.as_slice()],
        ),
        "FORGET root u64::MAX",
    );
    // BATCH_FORGET whose count does not match the entries.
    let one = ForgetOne {
        nodeid: node,
        nlookup: 1,
    };
    for count in [2u32, u32::MAX, 0] {
        let head = BatchForgetIn { count, dummy: 0 };
        f.silent(
            &request(
                Opcode::BatchForget,
                9010,
                0,
                &[head.as_slice(), one.as_slice()],
            ),
            &format!("BATCH_FORGET count {count}"),
        );
    }
    f.silent(
        &request(Opcode::BatchForget, 9011, 0, &[&[1, 0]]),
        "BATCH_FORGET truncated",
    );
    let head = BatchForgetIn { count: 1, dummy: 0 };
    f.silent(
        &request(
            Opcode::BatchForget,
            9012,
            0,
            &[head.as_slice(), &one.as_slice()[..12]],
        ),
        "BATCH_FORGET partial entry",
    );
    // The node above was looked up once (by `lookup`) and none of the malformed forgets dropped it.
    assert_eq!(f.s.getattr(node, None).unwrap().attr.size, 7);
    // INTERRUPT without its argument, and for a request that does not exist.
    f.silent(
        &request(Opcode::Interrupt, 9020, 0, &[]),
        "INTERRUPT truncated",
    );
    f.silent(
        &request(
            Opcode::Interrupt,
            9021,
            0,
            &[InterruptIn { unique: 1 << 60 }.as_slice()],
        ),
        "INTERRUPT unknown",
    );
}

#[test]
fn other_malformed_bodies() {
    let mut f = Fixture::new(&Config::default());
    let node = f.lookup("file");
    let fh = f.s.open(node, libc::O_RDWR as u32).unwrap().fh;
    let mut u = 10_000;
    let check = |f: &mut Fixture, req: Vec<u8>, unique: u64, errno: i32, what: &str| {
        f.refused(&req, unique, errno, what);
    };
    // Opcode structs cut short.
    let open = OpenIn {
        flags: 0,
        open_flags: 0,
    };
    for (op, body) in [
        (Opcode::Open, &open.as_slice()[..4]),
        (Opcode::Getattr, &[0u8; 8][..]),
        (Opcode::Setattr, &[0u8; 40][..]),
        (Opcode::Read, &[0u8; 20][..]),
        (Opcode::Mkdir, &[0u8; 4][..]),
        (Opcode::Lseek, &[0u8; 8][..]),
    ] {
        u += 1;
        check(
            &mut f,
            request(op, u, node, &[body]),
            u,
            libc::EINVAL,
            &format!("{op:?} short struct"),
        );
    }
    // Trailing bytes after a fixed-size struct.
    u += 1;
    check(
        &mut f,
        request(Opcode::Open, u, node, &[open.as_slice(), b"xx"]),
        u,
        libc::EINVAL,
        "OPEN trailing bytes",
    );
    // Request extensions we never offered.
    u += 1;
    let mut h = header(HDR + 16, Opcode::Getattr as u32, u, ROOT_ID);
    h.total_extlen = 1;
    let mut req = h.as_slice().to_vec();
    req.extend_from_slice(&[0u8; 16]);
    check(&mut f, req, u, libc::EINVAL, "total_extlen");
    // SETATTR with bits nobody defined.
    u += 1;
    let sa = SetattrIn {
        valid: 1 << 31,
        ..Default::default()
    };
    check(
        &mut f,
        request(Opcode::Setattr, u, node, &[sa.as_slice()]),
        u,
        libc::EINVAL,
        "SETATTR valid bits",
    );
    // RENAME2 with unknown flags.
    u += 1;
    let r2 = Rename2In {
        newdir: ROOT_ID,
        flags: 1 << 20,
        padding: 0,
    };
    check(
        &mut f,
        request(
            Opcode::Rename2,
            u,
            ROOT_ID,
            &[r2.as_slice(), &name(b"file"), &name(b"x")],
        ),
        u,
        libc::EINVAL,
        "RENAME2 flags",
    );
    // LSEEK with an unknown whence; COPY_FILE_RANGE with flags.
    u += 1;
    let ls = LseekIn {
        fh,
        offset: 0,
        whence: 42,
        padding: 0,
    };
    check(
        &mut f,
        request(Opcode::Lseek, u, node, &[ls.as_slice()]),
        u,
        libc::EINVAL,
        "LSEEK whence",
    );
    u += 1;
    let cfr = CopyFileRangeIn {
        fh_in: fh,
        off_in: 0,
        nodeid_out: node,
        fh_out: fh,
        off_out: 0,
        len: 1,
        flags: 1,
    };
    check(
        &mut f,
        request(Opcode::CopyFileRange, u, node, &[cfr.as_slice()]),
        u,
        libc::EINVAL,
        "COPY_FILE_RANGE flags",
    );
    // WRITE at an offset past i64::MAX.
    u += 1;
    let w = WriteIn {
        fh,
        offset: u64::MAX - 1,
        size: 1,
        ..Default::default()
    };
    check(
        &mut f,
        request(Opcode::Write, u, node, &[w.as_slice(), b"x"]),
        u,
        libc::EINVAL,
        "WRITE offset",
    );
    assert_eq!(fs::read(f.b.host("file")).unwrap(), b"content");

    // A request that needs a reply but has no writable buffer: dropped, nothing breaks.
    let r = f.send(&request(Opcode::Getattr, 10_100, ROOT_ID, &[&[0u8; 16]]), 0);
    assert_eq!(r.used_len, 0);
    f.still_works("no writable buffer");
    // A writable buffer too small for even the out header.
    let r = f.send(&request(Opcode::Getattr, 10_101, ROOT_ID, &[&[0u8; 16]]), 8);
    assert_eq!(r.used_len, 0, "{:?}", r.bytes);
    f.still_works("tiny writable buffer");
    // A reply that does not fit (GETATTR needs 104 + 16 bytes).
    let r = f.send(
        &request(Opcode::Getattr, 10_102, ROOT_ID, &[&[0u8; 16]]),
        40,
    );
    assert_errno_reply(&r, 10_102, libc::ERANGE, "GETATTR into 40 bytes");
    f.still_works("short reply buffer");
}
