//! The FUSE server: decodes one request from a descriptor chain, checks it, calls the share's
//! `FileSystem`, and encodes the reply with the request's `unique` echoed.
//!
//! Every request is copied out of guest memory once (header, then the opcode's struct, then
//! any names), checked on the copy, and only then acted on. Bad input gets an errno reply; a
//! request whose header cannot even be read gets an EINVAL reply with `unique` 0 if the chain has
//! room for one. Nothing here panics on guest input.

mod attr;
mod names;
mod ops;
mod session;
mod submounts;

use std::fs::File;
use std::io::{self, Write};
use std::mem::size_of;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use fuse_backend_rs::api::filesystem::{Context, FileSystem, FsOptions};
use vm_memory::ByteValued;

use crate::dax::handles::OpenHandles;
use crate::dax::{settings, DaxChannel, SettingsError, Window};
use crate::fs::FuseAdapter;
use crate::fuse::abi::{self, init_flags, InHeader, InitIn, InitOut, Opcode, OutHeader};
use crate::transport::{Reader, Writer};

pub use attr::attr_from_stat;
pub use names::NameError;
pub use session::SessionError;

/// Largest name part of any request: two entry names or a name and a symlink target.
const MAX_NAMES_LEN: usize = abi::PATH_MAX + 1 + abi::NAME_MAX + 1;
/// Largest fixed part of any request after the header (COPY_FILE_RANGE's).
const MAX_OPCODE_STRUCT: usize = 64;

/// Settings of one share's server that the guest cannot change.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// Largest WRITE (and READ) payload we accept, in bytes. Offered to the guest in INIT.
    pub max_write: u32,
    /// The guest's page size: the st_blksize every attribute reply is clamped to. A power of
    /// two from 512 to 65536; 4096 by default.
    pub blksize: u32,
    /// Size of the DAX window in bytes; 0 (the default) turns DAX off. A multiple of 2 MiB and
    /// of `host_page_size`, at most 64 GiB.
    pub dax_window: u64,
    /// The host page size every DAX offset and length must be a multiple of, and that INIT
    /// reports as `map_alignment`. Defaults to this host's; a larger power of two makes a host
    /// enforce a larger-page host's rules.
    pub host_page_size: u64,
    /// Mark directories that are other host mounts with FUSE_ATTR_SUBMOUNT (when the guest
    /// offers FUSE_SUBMOUNTS), so the guest mounts each separately with its own st_dev. Off by
    /// default: the guest then sees one filesystem whose inode numbers may collide across
    /// host mounts.
    pub announce_submounts: bool,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            max_write: 1 << 20,
            blksize: settings::DEFAULT_BLKSIZE,
            dax_window: 0,
            host_page_size: settings::host_page_size(),
            announce_submounts: false,
        }
    }
}

impl ServerOptions {
    /// Checks `blksize`, the page size and the DAX window; the error says which is wrong.
    pub fn check(&self) -> Result<(), SettingsError> {
        settings::check_blksize(self.blksize)?;
        settings::check_window(self.dax_window, self.host_page_size)
    }

    /// The DAX window's geometry, `None` when DAX is off.
    fn dax_geometry(&self) -> Result<Option<Window>, SettingsError> {
        self.check()?;
        if self.dax_window == 0 {
            return Ok(None);
        }
        Window::new(self.dax_window, self.host_page_size).map(Some)
    }

    /// Largest request we accept: header, the largest opcode struct, names, and a full WRITE
    /// or xattr value.
    fn max_request_len(&self) -> usize {
        let payload = (self.max_write as usize).max(abi::XATTR_SIZE_MAX + abi::NAME_MAX + 1);
        size_of::<InHeader>() + MAX_OPCODE_STRUCT + MAX_NAMES_LEN + payload
    }

    /// `max_pages` for INIT: how many guest pages one READ/WRITE may span.
    fn max_pages(&self) -> u16 {
        let pages = self.max_write / self.blksize.max(1);
        u16::try_from(pages).unwrap_or(u16::MAX).max(1)
    }
}

/// The INIT capabilities we can honour ourselves, whatever the filesystem wants. The rest of
/// what we offer comes from the filesystem's `init`, and only what the guest offered stays.
const SERVER_CAPABILITIES: u64 = init_flags::ASYNC_READ
    | init_flags::ATOMIC_O_TRUNC
    | init_flags::BIG_WRITES
    | init_flags::MAX_PAGES
    | init_flags::PARALLEL_DIROPS
    | init_flags::ASYNC_DIO
    | init_flags::INIT_EXT;

/// Capabilities the filesystem may ask for that we can carry on the wire.
const FS_CAPABILITIES: u64 = init_flags::DO_READDIRPLUS
    | init_flags::READDIRPLUS_AUTO
    | init_flags::WRITEBACK_CACHE
    | init_flags::HANDLE_KILLPRIV_V2;

/// One share's FUSE server. Shared by every queue thread of the share.
pub struct Server<F> {
    /// The share's filesystem stack, with what FUSE needs that the stack lacks added.
    fs: FuseAdapter<F>,
    options: ServerOptions,
    initialized: AtomicBool,
    minor: AtomicU32,
    /// The DAX window, when `options.dax_window` is not 0.
    dax: Option<Arc<DaxChannel>>,
    /// Open file handles, recorded only with DAX on (SETUPMAPPING checks them).
    handles: Arc<OpenHandles>,
    /// Whether FUSE_SUBMOUNTS was negotiated in INIT (announce_submounts and the guest's offer).
    submounts: AtomicBool,
    /// The capabilities granted in INIT (flags | flags2 << 32), for a migration's state.
    granted: AtomicU64,
}

/// Errors that only end one request; the guest gets the errno.
fn errno_of(e: &io::Error) -> i32 {
    match e.raw_os_error() {
        Some(code) if code > 0 => code,
        _ => match e.kind() {
            io::ErrorKind::UnexpectedEof => libc::EINVAL,
            io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData => libc::EINVAL,
            io::ErrorKind::WriteZero => libc::ENOSPC,
            _ => libc::EIO,
        },
    }
}

pub(crate) fn err(errno: i32) -> io::Error {
    io::Error::from_raw_os_error(errno)
}

impl<F> Server<F>
where
    F: FileSystem<Inode = u64, Handle = u64> + Sync,
{
    /// A server for `fs`. Fails when `options` cannot work (see [`ServerOptions::check`]):
    /// a bad setting is the caller's to report, never quietly replaced.
    pub fn try_new(
        fs: F,
        options: ServerOptions,
        share_root: Option<File>,
    ) -> Result<Self, SettingsError> {
        let dax = options
            .dax_geometry()?
            .map(|w| Arc::new(DaxChannel::new(w)));
        Ok(Self::build(fs, options, share_root, dax))
    }

    fn build(
        fs: F,
        options: ServerOptions,
        share_root: Option<File>,
        dax: Option<Arc<DaxChannel>>,
    ) -> Self {
        Server {
            fs: FuseAdapter::new(fs, share_root),
            options,
            initialized: AtomicBool::new(false),
            minor: AtomicU32::new(0),
            dax,
            handles: Arc::default(),
            submounts: AtomicBool::new(false),
            granted: AtomicU64::new(0),
        }
    }

    /// The DAX window's worker side, `None` when DAX is off. The vhost-user backend connects
    /// the window owner to it; an embedding VMM may connect a `WindowMapper` directly.
    pub fn dax(&self) -> Option<&Arc<DaxChannel>> {
        self.dax.as_ref()
    }

    pub fn filesystem(&self) -> &F {
        &self.fs
    }

    pub fn options(&self) -> &ServerOptions {
        &self.options
    }

    /// Serves one request. Returns the number of bytes written into the device-writable part
    /// of the chain (the used length to report), 0 when the request takes no reply.
    pub fn handle(&self, mut r: Reader<'_>, mut w: Writer<'_>) -> usize {
        let present = r.available_bytes();
        let header = match r.read_obj::<InHeader>() {
            Ok(h) => h,
            Err(_) => return reply_error(&mut w, 0, libc::EINVAL),
        };
        let unique = header.unique;
        match self.check_header(&header, present) {
            Ok(opcode) => {
                let ctx = Context {
                    uid: header.uid,
                    gid: header.gid,
                    pid: header.pid as i32,
                };
                let mut req = ops::Request { header, ctx, r, w };
                match self.dispatch(opcode, &mut req) {
                    Ok(used) => used,
                    Err(e) => {
                        let errno = errno_of(&e);
                        crate::guest_debug!("{:?} unique {unique}: errno {errno}", opcode);
                        reply_error(&mut req.w, unique, errno)
                    }
                }
            }
            Err(Refusal::NoReply) => 0,
            Err(Refusal::Errno(errno)) => {
                crate::guest_debug!(
                    "opcode {} unique {unique}: refused, errno {errno}",
                    header.opcode
                );
                reply_error(&mut w, unique, errno)
            }
        }
    }

    /// Header checks that do not depend on the opcode's body.
    fn check_header(&self, header: &InHeader, present: usize) -> Result<Opcode, Refusal> {
        let len = header.len as usize;
        if len != present || len < size_of::<InHeader>() || len > self.options.max_request_len() {
            return Err(Refusal::Errno(libc::EINVAL));
        }
        if header.total_extlen != 0 {
            // Request extensions exist only when SECURITY_CTX or CREATE_SUPP_GROUP was
            // negotiated, and we offer neither.
            return Err(Refusal::Errno(libc::EINVAL));
        }
        let opcode = Opcode::from_u32(header.opcode).ok_or(Refusal::Errno(libc::ENOSYS))?;
        let initialized = self.initialized.load(Ordering::Acquire);
        match opcode {
            Opcode::Init if initialized => Err(Refusal::Errno(libc::EIO)),
            Opcode::Init => Ok(opcode),
            // These never take a reply, even when refused.
            Opcode::Forget | Opcode::BatchForget | Opcode::Interrupt | Opcode::NotifyReply
                if !initialized =>
            {
                Err(Refusal::NoReply)
            }
            _ if !initialized => Err(Refusal::Errno(libc::EIO)),
            _ => Ok(opcode),
        }
    }

    fn init(&self, req: &mut ops::Request<'_>) -> io::Result<usize> {
        let mut init = InitIn::default();
        let present = req.r.available_bytes();
        if present < abi::INIT_IN_COMPAT_SIZE {
            return Err(err(libc::EINVAL));
        }
        let take = present.min(size_of::<InitIn>());
        io::Read::read_exact(&mut req.r, &mut init.as_mut_slice()[..take])?;

        if init.major != abi::KERNEL_VERSION || init.minor < abi::MIN_KERNEL_MINOR_VERSION {
            return Err(err(libc::EPROTO));
        }
        let mut offered = u64::from(init.flags);
        if offered & init_flags::INIT_EXT != 0 {
            offered |= u64::from(init.flags2) << 32;
        }
        let fs_wants = self.fs.init(FsOptions::from_bits_truncate(offered))?.bits();
        if let Some(dax) = &self.dax {
            // A new session: the window may still hold the last one's mappings.
            dax.restart();
        }
        // With DAX on, tell the guest the host page: it must align every mapping to it.
        let dax_caps = if self.dax.is_some() {
            init_flags::MAP_ALIGNMENT
        } else {
            0
        };
        let submount_caps = if self.options.announce_submounts {
            init_flags::SUBMOUNTS
        } else {
            0
        };
        let enabled = offered
            & (SERVER_CAPABILITIES | dax_caps | submount_caps | (fs_wants & FS_CAPABILITIES));
        self.submounts
            .store(enabled & init_flags::SUBMOUNTS != 0, Ordering::Release);
        self.granted.store(enabled, Ordering::Release);
        let map_alignment = match &self.dax {
            Some(dax) if enabled & init_flags::MAP_ALIGNMENT != 0 => dax.window().map_alignment(),
            _ => 0,
        };

        let minor = init.minor.min(abi::KERNEL_MINOR_VERSION);
        self.minor.store(minor, Ordering::Release);
        let out = InitOut {
            major: abi::KERNEL_VERSION,
            minor,
            max_readahead: init.max_readahead,
            flags: enabled as u32,
            flags2: (enabled >> 32) as u32,
            max_background: 64,
            congestion_threshold: 48,
            max_write: self.options.max_write,
            time_gran: 1,
            max_pages: self.options.max_pages(),
            map_alignment,
            max_stack_depth: 0,
            unused: [0; 6],
        };
        self.initialized.store(true, Ordering::Release);
        reply(&mut req.w, req.header.unique, &[out.as_slice()])
    }

    fn destroy(&self, req: &mut ops::Request<'_>) -> io::Result<usize> {
        self.fs.destroy();
        // Destroying the filesystem closed every handle.
        self.handles.clear();
        self.submounts.store(false, Ordering::Release);
        self.initialized.store(false, Ordering::Release);
        reply(&mut req.w, req.header.unique, &[])
    }
}

/// Why a request was refused before its opcode ran.
enum Refusal {
    Errno(i32),
    /// The opcode never takes a reply.
    NoReply,
}

/// Writes a successful reply: the header and `parts` in order. Nothing is written unless the
/// whole reply fits.
pub(crate) fn reply(w: &mut Writer<'_>, unique: u64, parts: &[&[u8]]) -> io::Result<usize> {
    let body: usize = parts.iter().map(|p| p.len()).sum();
    let len = size_of::<OutHeader>() + body;
    if len > w.available_bytes() {
        return Err(err(libc::ERANGE));
    }
    let len32 = u32::try_from(len).map_err(|_| err(libc::ERANGE))?;
    w.write_obj(OutHeader {
        len: len32,
        error: 0,
        unique,
    })?;
    for part in parts {
        w.write_all(part)?;
    }
    Ok(len)
}

/// Writes the header of a reply whose body is already in the chain after it.
pub(crate) fn reply_header_for_body(
    w: &mut Writer<'_>,
    unique: u64,
    body_len: usize,
) -> io::Result<usize> {
    let len = size_of::<OutHeader>() + body_len;
    let len32 = u32::try_from(len).map_err(|_| err(libc::ERANGE))?;
    w.write_obj(OutHeader {
        len: len32,
        error: 0,
        unique,
    })?;
    Ok(len)
}

/// Writes an error reply; 0 if the chain has no room for one.
fn reply_error(w: &mut Writer<'_>, unique: u64, errno: i32) -> usize {
    let header = OutHeader {
        len: size_of::<OutHeader>() as u32,
        error: -errno,
        unique,
    };
    match w.write_obj(header) {
        Ok(()) => size_of::<OutHeader>(),
        Err(_) => 0,
    }
}
