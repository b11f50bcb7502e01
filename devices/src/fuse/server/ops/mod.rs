//! Per-opcode handlers. Each one copies its opcode's struct and names out of the request,
//! checks them, calls the filesystem and writes the reply. `dispatch` maps opcodes to them.

mod dax;
mod dir;
mod file;
mod node;

use std::io;
use std::mem::size_of;

use fuse_backend_rs::api::filesystem::{Context, FileSystem};
use vm_memory::ByteValued;

use super::{err, reply, Server};
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

    /// Copies the rest of the request (names, xattr values). Its length was bounded when the
    /// header was checked.
    fn rest(&mut self) -> io::Result<Vec<u8>> {
        let len = self.r.available_bytes();
        let mut buf = Vec::with_capacity(len);
        self.r.read_to_vec(&mut buf, len)?;
        Ok(buf)
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
