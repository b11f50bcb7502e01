//! The FUSE client core: builds requests into descriptor chains, submits them, and checks every
//! reply (`unique` echoed, `len` equal to the used length, `error` zero or a negative errno).
//! The typed operations live in `fuse_ops`.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use devices::fuse::abi::{InHeader, InitOut, Opcode, OutHeader};
use vm_memory::ByteValued;

use crate::error::{Error, Result};
use crate::frontend::Device;
use crate::memory::{GuestBuf, MIN_ALIGN};
use crate::virtqueue::{Completion, Token};

/// Size of the request header on the wire.
pub const IN_HEADER_LEN: usize = std::mem::size_of::<InHeader>();
/// Size of the reply header on the wire.
pub const OUT_HEADER_LEN: usize = std::mem::size_of::<OutHeader>();

/// The caller identity stamped into every request header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Context {
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
}

impl Default for Context {
    fn default() -> Self {
        // SAFETY: getuid/getgid/getpid cannot fail and touch no memory.
        unsafe {
            Context {
                uid: libc::getuid(),
                gid: libc::getgid(),
                pid: libc::getpid() as u32,
            }
        }
    }
}

/// How a request's bytes are cut into descriptors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Layout {
    /// Like Linux: header and each argument in its own descriptor, on both sides.
    #[default]
    PerArg,
    /// One readable and one writable descriptor.
    Single,
    /// Everything cut into descriptors of at most this many bytes (> 0).
    Fragmented(usize),
}

/// What the device returned for a raw request: the used length and the bytes written into
/// the writable buffers (up to the used length).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawReply {
    pub used_len: u32,
    pub bytes: Vec<u8>,
}

/// A request in flight; finish it with [`Session::complete`].
#[derive(Debug)]
#[must_use = "a pending request holds guest memory and descriptors until completed"]
pub struct Pending {
    pub queue: u16,
    pub token: Token,
    pub unique: u64,
    pub opcode: u32,
    /// The chain had no writable buffer (FORGET, BATCH_FORGET): no reply is expected.
    pub no_reply: bool,
}

/// A FUSE session over one device.
pub struct Session {
    dev: Arc<Device>,
    unique: AtomicU64,
    next_queue: AtomicUsize,
    ctx: Mutex<Context>,
    layout: Mutex<Layout>,
    timeout: Mutex<Duration>,
    pub(crate) init_out: Mutex<Option<InitOut>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("dev", &self.dev)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Wraps a connected device. Call [`Session::init`] before anything else.
    pub fn new(dev: Arc<Device>) -> Self {
        let timeout = dev.request_timeout();
        Session {
            dev,
            unique: AtomicU64::new(1),
            next_queue: AtomicUsize::new(0),
            ctx: Mutex::new(Context::default()),
            layout: Mutex::new(Layout::default()),
            timeout: Mutex::new(timeout),
            init_out: Mutex::new(None),
        }
    }

    /// The device underneath.
    pub fn device(&self) -> &Arc<Device> {
        &self.dev
    }

    /// Sets the uid/gid/pid put in request headers.
    pub fn set_context(&self, ctx: Context) {
        *self.ctx.lock().unwrap() = ctx;
    }

    /// The current caller identity.
    pub fn context(&self) -> Context {
        *self.ctx.lock().unwrap()
    }

    /// Chooses how requests are cut into descriptors.
    pub fn set_layout(&self, layout: Layout) {
        *self.layout.lock().unwrap() = layout;
    }

    /// Sets the reply timeout.
    pub fn set_timeout(&self, timeout: Duration) {
        *self.timeout.lock().unwrap() = timeout;
    }

    /// The reply timeout.
    pub fn timeout(&self) -> Duration {
        *self.timeout.lock().unwrap()
    }

    /// The INIT reply, once [`Session::init`] succeeded.
    pub fn init_out(&self) -> Option<InitOut> {
        *self.init_out.lock().unwrap()
    }

    /// Largest WRITE payload the server accepts (from INIT; 4096 before INIT).
    pub fn max_write(&self) -> u32 {
        self.init_out().map_or(4096, |i| i.max_write.max(4096))
    }

    /// Allocates the next request id.
    pub fn next_unique(&self) -> u64 {
        self.unique.fetch_add(1, Ordering::Relaxed)
    }

    /// Picks a request queue round-robin.
    pub fn request_queue(&self) -> u16 {
        let n = self.dev.num_request_queues() as usize;
        1 + (self.next_queue.fetch_add(1, Ordering::Relaxed) % n) as u16
    }

    /// Builds and submits a request on a request queue. `args` follow the header;
    /// `out_sizes` are the reply's parts after the out header (may be empty).
    pub fn submit(
        &self,
        opcode: Opcode,
        nodeid: u64,
        args: &[&[u8]],
        out: &[usize],
    ) -> Result<Pending> {
        let q = self.request_queue();
        self.submit_on(q, opcode as u32, nodeid, args, Some(out))
    }

    /// Builds and submits a request on queue `queue`. `out == None` sends no writable buffer
    /// at all (no reply expected); `Some(sizes)` adds the out header plus those parts.
    pub fn submit_on(
        &self,
        queue: u16,
        opcode: u32,
        nodeid: u64,
        args: &[&[u8]],
        out: Option<&[usize]>,
    ) -> Result<Pending> {
        let unique = self.next_unique();
        let ctx = self.context();
        let total: usize = IN_HEADER_LEN + args.iter().map(|a| a.len()).sum::<usize>();
        let header = InHeader {
            len: u32::try_from(total)
                .map_err(|_| Error::InvalidArgument(format!("request of {total} bytes")))?,
            opcode,
            unique,
            nodeid,
            uid: ctx.uid,
            gid: ctx.gid,
            pid: ctx.pid,
            total_extlen: 0,
            padding: 0,
        };
        let mut readable: Vec<&[u8]> = vec![header.as_slice()];
        readable.extend_from_slice(args);
        let writable: Vec<usize> = match out {
            None => Vec::new(),
            Some(sizes) => std::iter::once(OUT_HEADER_LEN)
                .chain(sizes.iter().copied())
                .collect(),
        };
        let token = self.post(queue, &readable, &writable)?;
        Ok(Pending {
            queue,
            token,
            unique,
            opcode,
            no_reply: out.is_none(),
        })
    }

    /// Lays the parts out per the current [`Layout`] and submits the chain.
    fn post(&self, queue: u16, readable: &[&[u8]], writable: &[usize]) -> Result<Token> {
        let ram = self.dev.ram();
        let layout = *self.layout.lock().unwrap();
        let mut rbufs = Vec::new();
        let mut wbufs = Vec::new();
        match layout {
            Layout::PerArg => {
                for part in readable {
                    rbufs.push(ram.alloc_with(part)?);
                }
                // Device-writable buffers are not zeroed: the device fills them and only the
                // used length is read back.
                for &len in writable {
                    wbufs.push(ram.alloc_uninit(len, MIN_ALIGN)?);
                }
            }
            Layout::Single | Layout::Fragmented(_) => {
                let bytes: Vec<u8> = readable.concat();
                let wlen: usize = writable.iter().sum();
                let chunk = match layout {
                    Layout::Fragmented(n) if n > 0 => n,
                    Layout::Fragmented(_) => {
                        return Err(Error::InvalidArgument("fragment size 0".into()))
                    }
                    _ => usize::MAX,
                };
                for part in bytes.chunks(chunk.min(bytes.len().max(1))) {
                    rbufs.push(ram.alloc_with(part)?);
                }
                let mut left = wlen;
                while left > 0 {
                    let n = left.min(chunk);
                    wbufs.push(ram.alloc_uninit(n, MIN_ALIGN)?);
                    left -= n;
                }
            }
        }
        self.dev.queue(queue)?.submit(rbufs, wbufs, self.timeout())
    }

    /// Waits for a pending request and checks its reply. Returns the reply body (the bytes
    /// after the out header); a FUSE error reply becomes [`Error::Errno`].
    pub fn complete(&self, p: Pending) -> Result<Vec<u8>> {
        let c = self.wait(&p)?;
        if p.no_reply {
            if c.used_len != 0 {
                return Err(Error::Protocol(format!(
                    "opcode {}: used len {} on a chain without writable buffers",
                    p.opcode, c.used_len
                )));
            }
            return Ok(Vec::new());
        }
        check_reply(&p, &c)?;
        // The body, copied out of guest memory once.
        c.written_from(OUT_HEADER_LEN)
    }

    /// Like [`Session::complete`] for a request with a reply, with the same checks of the
    /// header, but the body is left in guest memory: it is the completion's writable bytes
    /// after the out header ([`Completion::copy_written`] reads them). For bulk READs, where
    /// copying every byte out would be a second memcpy per request that no guest does.
    pub fn complete_in_place(&self, p: Pending) -> Result<Completion> {
        if p.no_reply {
            return Err(Error::InvalidArgument(format!(
                "opcode {}: complete_in_place on a request that takes no reply",
                p.opcode
            )));
        }
        let c = self.wait(&p)?;
        check_reply(&p, &c)?;
        Ok(c)
    }

    /// Waits for a pending request without interpreting the reply.
    pub fn complete_raw(&self, p: Pending) -> Result<RawReply> {
        let c = self.wait(&p)?;
        Ok(RawReply {
            used_len: c.used_len,
            bytes: c.written_bytes()?,
        })
    }

    fn wait(&self, p: &Pending) -> Result<Completion> {
        self.dev.queue(p.queue)?.wait(p.token, self.timeout())
    }

    /// Sends a request and returns the checked reply body.
    pub fn call(
        &self,
        opcode: Opcode,
        nodeid: u64,
        args: &[&[u8]],
        out: &[usize],
    ) -> Result<Vec<u8>> {
        let p = self.submit(opcode, nodeid, args, out)?;
        self.complete(p)
    }

    /// Sends a request that gets no reply (no writable buffers) on `queue`.
    pub fn call_no_reply(
        &self,
        queue: u16,
        opcode: Opcode,
        nodeid: u64,
        args: &[&[u8]],
    ) -> Result<()> {
        let p = self.submit_on(queue, opcode as u32, nodeid, args, None)?;
        self.complete(p).map(|_| ())
    }

    /// Hostile-test entry: arbitrary bytes, one descriptor per readable slice and one
    /// writable descriptor per length, nothing checked.
    pub fn send_raw(
        &self,
        queue: u16,
        readable: &[&[u8]],
        writable_len: &[u32],
    ) -> Result<RawReply> {
        let ram = self.dev.ram();
        let rbufs = readable
            .iter()
            .map(|r| ram.alloc_with(r))
            .collect::<Result<Vec<GuestBuf>>>()?;
        let wbufs = writable_len
            .iter()
            .map(|&l| ram.alloc(l as usize, MIN_ALIGN))
            .collect::<Result<Vec<GuestBuf>>>()?;
        let q = self.dev.queue(queue)?;
        let token = q.submit(rbufs, wbufs, self.timeout())?;
        let c = q.wait(token, self.timeout())?;
        Ok(RawReply {
            used_len: c.used_len,
            bytes: c.written_bytes()?,
        })
    }
}

/// Checks the reply header against the request and the used length; a FUSE error reply
/// becomes [`Error::Errno`]. Only the header is copied out of guest memory.
fn check_reply(p: &Pending, c: &Completion) -> Result<()> {
    let capacity: usize = c.writable().iter().map(|b| b.len()).sum();
    if c.used_len as usize > capacity {
        return Err(Error::Protocol(format!(
            "opcode {}: used len {} exceeds the {} writable bytes",
            p.opcode, c.used_len, capacity
        )));
    }
    if c.written_len() < OUT_HEADER_LEN {
        return Err(Error::Protocol(format!(
            "opcode {}: reply of {} bytes is shorter than the out header",
            p.opcode, c.used_len
        )));
    }
    let mut raw = [0u8; OUT_HEADER_LEN];
    c.copy_written(0, &mut raw)?;
    let hdr: OutHeader = copy_struct(&raw);
    if hdr.unique != p.unique {
        return Err(Error::Protocol(format!(
            "opcode {}: reply unique {} != request unique {}",
            p.opcode, hdr.unique, p.unique
        )));
    }
    if hdr.len != c.used_len {
        return Err(Error::Protocol(format!(
            "opcode {}: header len {} != used len {}",
            p.opcode, hdr.len, c.used_len
        )));
    }
    if hdr.error > 0 || hdr.error < -4095 {
        return Err(Error::Protocol(format!(
            "opcode {}: error field {}",
            p.opcode, hdr.error
        )));
    }
    if hdr.error < 0 {
        if hdr.len as usize != OUT_HEADER_LEN {
            return Err(Error::Protocol(format!(
                "opcode {}: error reply carries {} bytes of body",
                p.opcode,
                hdr.len as usize - OUT_HEADER_LEN
            )));
        }
        return Err(Error::Errno(-hdr.error));
    }
    Ok(())
}

/// Copies a whole reply struct out of `body`, which must be exactly its size.
pub fn parse_exact<T: ByteValued + Default>(opcode: Opcode, body: &[u8]) -> Result<T> {
    if body.len() != std::mem::size_of::<T>() {
        return Err(Error::Protocol(format!(
            "{opcode:?}: reply body of {} bytes, want {}",
            body.len(),
            std::mem::size_of::<T>()
        )));
    }
    let mut v = T::default();
    v.as_mut_slice().copy_from_slice(body);
    Ok(v)
}

/// Copies the first `size_of::<T>()` bytes of `bytes` (which must be long enough) into a `T`,
/// whatever their alignment.
pub(crate) fn copy_struct<T: ByteValued + Default>(bytes: &[u8]) -> T {
    let mut v = T::default();
    let n = std::mem::size_of::<T>();
    v.as_mut_slice().copy_from_slice(&bytes[..n]);
    v
}

/// Copies a reply struct out of `body`, zero-filling a shorter (older-protocol) body.
pub fn parse_prefix<T: ByteValued + Default>(opcode: Opcode, body: &[u8], min: usize) -> Result<T> {
    let size = std::mem::size_of::<T>();
    if body.len() < min || body.len() > size {
        return Err(Error::Protocol(format!(
            "{opcode:?}: reply body of {} bytes, want {min}..={size}",
            body.len()
        )));
    }
    let mut v = T::default();
    v.as_mut_slice()[..body.len()].copy_from_slice(body);
    Ok(v)
}
