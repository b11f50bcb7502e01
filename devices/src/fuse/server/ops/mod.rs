//! Per-opcode handlers. Each one copies its opcode's struct and names out of the request,
//! checks them, calls the filesystem and writes the reply. `dispatch` maps opcodes to them.

mod dax;
mod dir;
mod file;
mod node;

use std::io;
use std::mem::{size_of, MaybeUninit};

use fuse_backend_rs::api::filesystem::{Context, FileSystem};
use vm_memory::ByteValued;

use super::{err, reply, Server, MAX_NAMES_LEN};
use crate::fuse::abi::{InHeader, Opcode};
use crate::transport::{Reader, Writer};

/// One request on its way through the server.
pub(crate) struct Request<'a> {
    pub header: InHeader,
    pub ctx: Context,
    pub r: Reader<'a>,
    pub w: Writer<'a>,
}

impl Request<'_> {
    fn nodeid(&self) -> u64 {
        self.header.nodeid
    }

    /// Copies the opcode's fixed struct; EINVAL if the request is too short for it.
    fn read<T: ByteValued>(&mut self) -> io::Result<T> {
        if self.r.available_bytes() < size_of::<T>() {
            return Err(err(libc::EINVAL));
        }
        self.r.read_obj::<T>()
    }

    /// Copies the rest of the request onto the heap: for SETXATTR, whose value may be up to
    /// XATTR_SIZE_MAX. Its length was bounded when the header was checked.
    fn rest(&mut self) -> io::Result<Vec<u8>> {
        let len = self.r.available_bytes();
        let mut buf = Vec::with_capacity(len);
        self.r.read_to_vec(&mut buf, len)?;
        Ok(buf)
    }

    /// Copies the rest of the request, which holds only names (entry names, a symlink target,
    /// an xattr name), into `buf`: onto the stack for every well-formed request, so LOOKUP,
    /// CREATE and the like allocate nothing. The bytes are copied out of guest memory once, as
    /// with [`Request::rest`], and checked on the copy.
    fn names<'b>(&mut self, buf: &'b mut NameBuf) -> io::Result<&'b [u8]> {
        let len = self.r.available_bytes();
        if len > MAX_NAMES_LEN {
            // Always malformed (no names-only body is this long), but it goes to the heap and
            // through the same checks, so the guest gets the same errno as for any other
            // bad name rather than a new one for its size.
            self.r.read_to_vec(&mut buf.heap, len)?;
            return Ok(&buf.heap);
        }
        let part = &mut buf.stack[..len];
        // Only the bytes used are initialised (a name is usually a few bytes; the buffer is
        // 4 KiB).
        part.fill(MaybeUninit::new(0));
        // SAFETY: all `len` bytes of `part` were initialised just above, and any byte is a
        // valid u8. The slice borrows `buf` mutably for 'b, so nothing else can reach it.
        let bytes = unsafe { std::slice::from_raw_parts_mut(part.as_mut_ptr().cast::<u8>(), len) };
        io::Read::read_exact(&mut self.r, bytes)?;
        Ok(bytes)
    }

    /// A reply with a fixed body.
    fn ok(&mut self, parts: &[&[u8]]) -> io::Result<usize> {
        reply(&mut self.w, self.header.unique, parts)
    }

    /// The request body must be exactly consumed: trailing bytes mean a malformed request.
    fn expect_end(&self) -> io::Result<()> {
        if self.r.available_bytes() != 0 {
            return Err(err(libc::EINVAL));
        }
        Ok(())
    }
}

/// Room for one request's names, on the handler's stack: every well-formed names-only body
/// (two entry names, or a name and a symlink target) fits in `MAX_NAMES_LEN` bytes. `heap` is
/// only used, and only allocates, for a longer (malformed) body.
pub(crate) struct NameBuf {
    stack: [MaybeUninit<u8>; MAX_NAMES_LEN],
    heap: Vec<u8>,
}

impl NameBuf {
    pub(crate) fn new() -> Self {
        NameBuf {
            stack: [MaybeUninit::uninit(); MAX_NAMES_LEN],
            heap: Vec::new(),
        }
    }
}

fn name_err(e: super::NameError) -> io::Error {
    err(e.errno())
}

impl<F> Server<F>
where
    F: FileSystem<Inode = u64, Handle = u64> + Sync,
{
    pub(super) fn dispatch(&self, opcode: Opcode, req: &mut Request<'_>) -> io::Result<usize> {
        use Opcode::*;
        match opcode {
            Init => self.init(req),
            Destroy => self.destroy(req),
            Lookup => self.lookup(req),
            Forget => self.forget(req),
            BatchForget => self.batch_forget(req),
            Getattr => self.getattr(req),
            Setattr => self.setattr(req),
            Readlink => self.readlink(req),
            Symlink => self.symlink(req),
            Mknod => self.mknod(req),
            Mkdir => self.mkdir(req),
            Unlink => self.unlink(req),
            Rmdir => self.rmdir(req),
            Rename => self.rename(req),
            Rename2 => self.rename2(req),
            Link => self.link(req),
            Statfs => self.statfs(req),
            Access => self.access(req),
            Setxattr => self.setxattr(req),
            Getxattr => self.getxattr(req),
            Listxattr => self.listxattr(req),
            Removexattr => self.removexattr(req),
            Open => self.open(req),
            Create => self.create(req),
            Tmpfile => self.tmpfile(req),
            Read => self.read(req),
            Write => self.write(req),
            Release => self.release(req),
            Flush => self.flush(req),
            Fsync => self.fsync(req),
            Fallocate => self.fallocate(req),
            Lseek => self.lseek(req),
            CopyFileRange => self.copy_file_range(req),
            Getlk => self.getlk(req),
            Setlk => self.setlk(req, false),
            Setlkw => self.setlk(req, true),
            Ioctl => self.ioctl(req),
            Syncfs => self.syncfs(req),
            Opendir => self.opendir(req),
            Readdir => self.readdir(req, false),
            Readdirplus => self.readdir(req, true),
            Releasedir => self.releasedir(req),
            Fsyncdir => self.fsyncdir(req),
            // Virtio-fs has no interrupts to deliver, and INTERRUPT never takes a reply.
            Interrupt | NotifyReply => Ok(0),
            // ENOSYS when the share has no DAX window.
            Setupmapping => self.setupmapping(req),
            Removemapping => self.removemapping(req),
            Bmap | Poll | Statx => Err(err(libc::ENOSYS)),
        }
    }
}
