//! Writes the seed corpora into `fuzz/corpus/TARGET/seed-*`:
//!
//! - `fuse_server`: the guest driver's real requests. The driver (typed calls, its own header
//!   and argument encoding) talks vhost-user to fsjail's backend in this process, serving a
//!   fresh server exactly like the fuzz harness's (same options, DAX window, empty share), so
//!   replayed nodeids and handles are valid. After each call the request is read back out of
//!   the driver's guest RAM (the last chain of the queue it used) and recorded.
//! - `vhost_user_messages`: a frontend that sets up a request queue and kicks an INIT through it.
//! - `policy_parser`: the example policy and a few variants.
//!
//! Run from the repository root: `cargo run --manifest-path fuzz/Cargo.toml --example gen_corpus`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use devices::fuse::abi::{CopyFileRangeIn, InHeader, InitIn, Opcode, ROOT_ID};
use devices::vhost_user::serve_connection;
use fsjail_fuzz::record::{self, Record, FLAG_FIX_LEN};
use guest_driver::{Device, Options, Session, Setattr, VhostUserProtocolFeatures};
use vhost::vhost_user::Listener;
use vm_memory::ByteValued;

fn out_dir(target: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The newest chain on `queue`, as the driver laid it out: readable bytes and writable length.
fn snoop(dev: &Device, queue: u16) -> Record {
    let q = dev.queue(queue).unwrap();
    let a = q.ring_addresses();
    let ram = dev.ram();
    let u16_at = |addr: u64| u16::from_le_bytes(ram.read(addr, 2).unwrap().try_into().unwrap());
    let idx = u16_at(a.avail + 2);
    let slot = idx.wrapping_sub(1) % q.size();
    let mut i = u16_at(a.avail + 4 + 2 * slot as u64);
    let (mut bytes, mut wlen) = (Vec::new(), 0u32);
    for _ in 0..q.size() {
        let d = ram.read(a.desc + 16 * i as u64, 16).unwrap();
        let addr = u64::from_le_bytes(d[0..8].try_into().unwrap());
        let len = u32::from_le_bytes(d[8..12].try_into().unwrap());
        let flags = u16::from_le_bytes(d[12..14].try_into().unwrap());
        if flags & 2 != 0 {
            wlen += len;
        } else {
            bytes.extend_from_slice(&ram.read(addr, len as usize).unwrap());
        }
        if flags & 1 == 0 {
            break;
        }
        i = u16::from_le_bytes(d[14..16].try_into().unwrap());
    }
    Record {
        flags: FLAG_FIX_LEN,
        wlen,
        bytes,
    }
}

/// Records every request made through `s` on request queue 1 (or hiprio for FORGET).
struct Rec<'a> {
    s: &'a Session,
    records: Vec<Record>,
}

impl Rec<'_> {
    fn take(&mut self, queue: u16) {
        let r = snoop(self.s.device(), queue);
        let mut h = InHeader::default();
        h.as_mut_slice().copy_from_slice(&r.bytes[..40]);
        eprintln!(
            "  recorded opcode {} ({} bytes, {} writable)",
            h.opcode,
            r.bytes.len(),
            r.wlen
        );
        self.records.push(r);
    }
}

fn fuse_seeds() {
    let dir = out_dir("fuse_server");
    let h = fsjail_fuzz::fuse::harness().lock().unwrap();
    let sock = h.share().parent().unwrap().join("gen.sock");
    let device = h.device(false);
    let backend = device.backend().clone();
    let mut listener = Listener::new(&sock, true).unwrap();
    std::thread::spawn(move || serve_connection(backend, &mut listener));
    // No backend-request channel: SETUPMAPPING goes to the harness's in-process window owner,
    // as it will when the seeds are replayed.
    let opts = Options {
        protocol_features: VhostUserProtocolFeatures::MQ | VhostUserProtocolFeatures::REPLY_ACK,
        // Under the harness's 16 MiB file size limit.
        mem_size: 8 << 20,
        ..Options::default()
    };
    let s = Session::new(Arc::new(Device::connect_with(&sock, opts).unwrap()));
    let mut r = Rec {
        s: &s,
        records: Vec::new(),
    };
    let rw = libc::O_RDWR as u32;

    s.init().unwrap();
    r.take(1);
    let _ = s.lookup(ROOT_ID, "missing");
    r.take(1);
    let (e, o) = s
        .create(ROOT_ID, "f", libc::S_IFREG | 0o644, rw, 0)
        .unwrap();
    r.take(1);
    s.write(e.nodeid, o.fh, 0, &[0x42; 5000]).unwrap();
    r.take(1);
    s.read(e.nodeid, o.fh, 0, 4096).unwrap();
    r.take(1);
    s.setupmapping(e.nodeid, o.fh, 0, 2 << 20, 3, 0).unwrap();
    r.take(1);
    s.removemapping(e.nodeid, &[(0, 2 << 20)]).unwrap();
    r.take(1);
    let d = s.mkdir(ROOT_ID, "d", 0o755, 0).unwrap();
    r.take(1);
    let dh = s.opendir(ROOT_ID, libc::O_RDONLY as u32).unwrap();
    r.take(1);
    s.readdirplus(ROOT_ID, dh.fh, 0, 4096).unwrap();
    r.take(1);
    s.releasedir(ROOT_ID, dh.fh, 0).unwrap();
    r.take(1);
    let core = r.records.clone();
    write(&dir, "seed-core", &core);

    s.setxattr(e.nodeid, "user.k", b"value", 0).unwrap();
    r.take(1);
    s.getxattr(e.nodeid, "user.k", 64).unwrap();
    r.take(1);
    s.listxattr(e.nodeid, 0).unwrap();
    r.take(1);
    s.symlink(d.nodeid, "l", "../f").unwrap();
    r.take(1);
    s.link(e.nodeid, d.nodeid, "hard").unwrap();
    r.take(1);
    s.rename(ROOT_ID, "f", d.nodeid, "g").unwrap();
    r.take(1);
    s.setattr(e.nodeid, &Setattr::new().size(100).mode(0o600))
        .unwrap();
    r.take(1);
    s.fallocate(e.nodeid, o.fh, 0, 8192, 0).unwrap();
    r.take(1);
    s.lseek(e.nodeid, o.fh, 0, libc::SEEK_DATA as u32).unwrap();
    r.take(1);
    let cfr = CopyFileRangeIn {
        fh_in: o.fh,
        off_in: 0,
        nodeid_out: e.nodeid,
        fh_out: o.fh,
        off_out: 200,
        len: 50,
        flags: 0,
    };
    s.copy_file_range(e.nodeid, cfr).unwrap();
    r.take(1);
    s.fsync(e.nodeid, o.fh, false).unwrap();
    r.take(1);
    s.flush(e.nodeid, o.fh, 0).unwrap();
    r.take(1);
    s.release(e.nodeid, o.fh, rw, 0, 0).unwrap();
    r.take(1);
    s.statfs(ROOT_ID).unwrap();
    r.take(1);
    let _ = s.tmpfile(d.nodeid, libc::S_IFREG | 0o600, rw, 0);
    r.take(1);
    s.unlink(d.nodeid, "hard").unwrap();
    r.take(1);
    s.forget(e.nodeid, 1).unwrap();
    r.take(0);
    s.destroy().unwrap();
    r.take(1);
    write(&dir, "seed-full", &r.records);
    let records = r.records;
    drop(s);

    // The seeds replay cleanly through the fuzz harness: every reply but the first LOOKUP's
    // (ENOENT) and FORGET's (none) is a success.
    let device = h.device(false);
    for (i, rec) in records.iter().enumerate() {
        let reply = h.request(device.server(), rec);
        let error = reply
            .get(4..8)
            .map(|b| i32::from_le_bytes(b.try_into().unwrap()));
        eprintln!("  replay {i}: {} reply bytes, error {error:?}", reply.len());
        if i != 1 && rec.wlen > 0 {
            assert_eq!(error, Some(0), "request {i} fails on replay");
        }
    }

    // One seed per request after INIT, for mutations that start from a single opcode.
    for (i, one) in records.iter().enumerate().skip(1) {
        write(
            &dir,
            &format!("seed-op{i:02}"),
            &[core[0].clone(), one.clone()],
        );
    }
}

fn write(dir: &Path, name: &str, records: &[Record]) {
    std::fs::write(dir.join(name), record::encode(0, records)).unwrap();
}

fn vhost_seeds() {
    let dir = out_dir("vhost_user_messages");
    let init = InitIn {
        major: 7,
        minor: 38,
        max_readahead: 0,
        flags: 0,
        flags2: 0,
        unused: [0; 11],
    };
    let mut req = InHeader {
        len: 40 + std::mem::size_of::<InitIn>() as u32,
        opcode: Opcode::Init as u32,
        unique: 1,
        ..Default::default()
    }
    .as_slice()
    .to_vec();
    req.extend_from_slice(init.as_slice());
    std::fs::write(
        dir.join("seed-setup-init"),
        fsjail_fuzz::vhost::input::setup_and_kick(&req),
    )
    .unwrap();
}

fn policy_seeds() {
    let dir = out_dir("policy_parser");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let example = std::fs::read_to_string(root.join("policies/example.toml")).unwrap();
    std::fs::write(dir.join("seed-example"), &example).unwrap();
    let minimal = "[[share]]\ntag = \"a\"\npath = \"/tmp\"\nsocket = \"/tmp/a.sock\"\n";
    std::fs::write(dir.join("seed-minimal"), minimal).unwrap();
    let full = format!(
        "{minimal}readonly = true\ncache = \"never\"\nxattr = true\n\
         uid_map = [{{ guest = 0, host = 1000, count = 1 }}]\n\
         gid_map = [{{ guest = 0, host = 1000, count = 1 }}]\n\
         rlimit_nofile = 64\nrestart = \"never\"\nsandbox = \"none\"\nnum_request_queues = 4\n\
         \n[[share]]\ntag = \"b\"\npath = \"/tmp\"\ncreate = true\n"
    );
    std::fs::write(dir.join("seed-full"), full).unwrap();
}

fn main() {
    fuse_seeds();
    vhost_seeds();
    policy_seeds();
    eprintln!("seeds written under {}/corpus", env!("CARGO_MANIFEST_DIR"));
}
