//! The `fuse_server` harness: fsjail's FUSE server over a real `PassthroughFs` on a temporary
//! directory (created once per process, emptied before every input), behind the share policy,
//! with DAX on and a recording window owner in the process. Each input is a sequence of
//! requests (see [`crate::record`]) laid out as descriptor chains in guest memory.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use devices::dax::DAX_BLOCK;
use devices::fs::{CachePolicy, ShareOptions};
use devices::fuse::abi::{InHeader, Opcode, OutHeader};
use devices::share::{ShareDevice, ShareFs, ShareServer};
use devices::transport::split_chain;
use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemoryMmap};

use crate::guest::{self, BUFFERS, WRITE};
use crate::record::{self, Record, CONFIG_READONLY, FLAG_FIX_LEN, FLAG_STRADDLE};
use crate::window::Recorder;

/// Guest memory: region 0 holds the rings and the readable parts; region 1, right after it,
/// the writable parts (a straddling one starts 2 KiB before the boundary).
const REGION0: (u64, usize) = (0, 0x10_0000);
const REGION1: (u64, usize) = (0x10_0000, 0x12_0000);
/// The DAX window: two 2 MiB blocks.
pub const WINDOW: u64 = 2 * DAX_BLOCK;
/// Most descriptors per side of one chain (the queue has 256 entries).
const MAX_DESCS_PER_SIDE: usize = 120;


pub struct FuseHarness {
    _dir: tempfile::TempDir,
    share: PathBuf,
    mem: GuestMemoryMmap<()>,
    pub recorder: Arc<Recorder>,
}

/// The process-wide harness (libFuzzer runs inputs one at a time).
pub fn harness() -> &'static Mutex<FuseHarness> {
    static H: OnceLock<Mutex<FuseHarness>> = OnceLock::new();
    H.get_or_init(|| Mutex::new(FuseHarness::new()))
}

/// Caps what one input can do to the host: files at 16 MiB (FALLOCATE, WRITE at a huge offset
/// and SETATTR size fail with EFBIG instead of filling the disk).
fn limit_host_effects() {
    // SAFETY: plain setrlimit/signal calls with valid arguments.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        let lim = libc::rlimit {
            rlim_cur: 16 << 20,
            rlim_max: 16 << 20,
        };
        libc::setrlimit(libc::RLIMIT_FSIZE, &lim);
    }
}

impl FuseHarness {
    fn new() -> FuseHarness {
        limit_host_effects();
        let dir = tempfile::Builder::new()
            .prefix("fsjail-fuzz.")
            .tempdir()
            .expect("temporary directory");
        let share = dir.path().join("share");
        fs::create_dir(&share).unwrap();
        FuseHarness {
            _dir: dir,
            share,
            mem: guest::memory(&[REGION0, REGION1]),
            recorder: Arc::new(Recorder::new(WINDOW)),
        }
    }

    /// Empties the share and restores its root's mode and owner.
    pub fn reset_share(&self) {
        for e in fs::read_dir(&self.share).unwrap().flatten() {
            let p = e.path();
            let _ = fs::remove_dir_all(&p).or_else(|_| fs::remove_file(&p));
        }
        let _ = fs::set_permissions(&self.share, fs::Permissions::from_mode(0o755));
        let _ = std::os::unix::fs::chown(&self.share, Some(0), Some(0));
    }

    /// A fresh device over the (empty) share, its DAX window connected to the recording owner.
    pub fn device(&self, readonly: bool) -> ShareDevice {
        self.reset_share();
        self.device_over_share(readonly)
    }

    /// A fresh device over the share as it is now (the read-only harness keeps its files).
    pub fn device_over_share(&self, readonly: bool) -> ShareDevice {
        self.recorder.reset();
        let settings = settings::DeviceSettings {
            readonly,
            cache: CachePolicy::Never,
            xattr: true,
            dax_window: WINDOW,
            ..Default::default()
        };
        let share = ShareFs::open(&ShareOptions::for_settings(&self.share, &settings))
            .expect("share");
        let device = ShareDevice::build(&settings, share).expect("device settings");
        device
            .dax()
            .expect("DAX is on")
            .connect(self.recorder.clone());
        device
    }

    pub fn share(&self) -> &Path {
        &self.share
    }

    /// Runs one input: config byte, then each record as a request.
    pub fn run(&self, data: &[u8]) {
        let (config, records) = record::decode(data);
        let device = self.device(config & CONFIG_READONLY != 0);
        let server = device.server();
        for r in &records {
            self.request(&server, r);
        }
    }

    /// Serves one record and checks the reply and the DAX state. Returns the reply bytes.
    pub fn request(&self, server: &ShareServer, r: &Record) -> Vec<u8> {
        let mut bytes = r.bytes.clone();
        if r.flags & FLAG_FIX_LEN != 0 && bytes.len() >= 4 {
            let len = bytes.len() as u32;
            bytes[..4].copy_from_slice(&len.to_le_bytes());
        }
        let rstart = BUFFERS;
        self.mem
            .write_slice(&bytes, GuestAddress(rstart))
            .expect("readable part fits region 0");
        let wstart = if r.flags & FLAG_STRADDLE != 0 {
            REGION1.0 - 0x800
        } else {
            REGION1.0
        };
        let wlen = r.wlen as usize;
        // No stale reply header from an earlier request.
        let _ = self.mem.write_slice(&[0u8; 16], GuestAddress(wstart));

        let frag = record::fragment(r.flags);
        let mut descs = Vec::new();
        split_side(&mut descs, rstart, bytes.len(), frag, 0);
        split_side(&mut descs, wstart, wlen, frag, WRITE);
        if descs.is_empty() {
            descs.push((rstart, 0, 0));
        }
        let chain = guest::chain(&self.mem, &descs).expect("a chain the mock can build");
        let (reader, writer) = split_chain(&self.mem, chain).expect("an in-memory chain splits");
        let used = server.handle(reader, writer);

        let reply = {
            let mut v = vec![0u8; used.min(wlen)];
            self.mem
                .read_slice(&mut v, GuestAddress(wstart))
                .expect("read the reply");
            v
        };
        check_reply(&bytes, wlen, used, &reply);
        let dax = server.dax().expect("DAX is on");
        self.recorder.assert_agrees(&dax.mappings());
        reply
    }
}

/// Appends descriptors covering `len` bytes at `start`, cut into `frag`-byte pieces.
fn split_side(
    descs: &mut Vec<(u64, u32, u16)>,
    start: u64,
    len: usize,
    frag: Option<usize>,
    flags: u16,
) {
    if len == 0 {
        return;
    }
    let mut piece = frag.unwrap_or(len).max(1);
    if len.div_ceil(piece) > MAX_DESCS_PER_SIDE {
        piece = len.div_ceil(MAX_DESCS_PER_SIDE);
    }
    let mut off = 0;
    while off < len {
        let n = piece.min(len - off);
        descs.push((start + off as u64, n as u32, flags));
        off += n;
    }
}

fn no_reply_opcode(op: u32) -> bool {
    op == Opcode::Forget as u32
        || op == Opcode::BatchForget as u32
        || op == Opcode::Interrupt as u32
        || op == 41 // NOTIFY_REPLY
}

/// The invariants of every reply: its `len` equals the used length, it echoes `unique`, its
/// error is 0 or a negative errno with no body; no reply only where FUSE has none or the chain
/// has no room for one.
pub fn check_reply(req: &[u8], wlen: usize, used: usize, reply: &[u8]) {
    assert!(
        used <= wlen,
        "used length {used} beyond the {wlen} writable bytes"
    );
    let header: Option<InHeader> = (req.len() >= std::mem::size_of::<InHeader>()).then(|| {
        let mut h = InHeader::default();
        h.as_mut_slice()
            .copy_from_slice(&req[..std::mem::size_of::<InHeader>()]);
        h
    });
    if used == 0 {
        let silent_ok = wlen < std::mem::size_of::<OutHeader>()
            || header.is_some_and(|h| no_reply_opcode(h.opcode));
        assert!(
            silent_ok,
            "no reply to opcode {:?} with {wlen} writable bytes",
            header.map(|h| h.opcode)
        );
        return;
    }
    assert!(used >= 16, "a {used}-byte reply");
    let mut out = OutHeader::default();
    out.as_mut_slice().copy_from_slice(&reply[..16]);
    assert_eq!(
        out.len as usize, used,
        "reply len {} != used {used}",
        out.len
    );
    assert_eq!(
        out.unique,
        header.map_or(0, |h| h.unique),
        "reply does not echo unique"
    );
    assert!(
        (-4095..=0).contains(&out.error),
        "error field {} is not 0 or a negative errno",
        out.error
    );
    if out.error != 0 {
        assert_eq!(used, 16, "an error reply with a body");
    }
    if let Some(h) = header {
        assert!(
            !no_reply_opcode(h.opcode) || out.error != 0,
            "a successful reply to no-reply opcode {}",
            h.opcode
        );
    }
}
