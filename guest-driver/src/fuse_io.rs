//! Typed FUSE operations, part 2: open files and directories, data, xattrs, locks, DAX.

use devices::fuse::abi::{
    init_flags, AccessIn, CopyFileRangeIn, CreateIn, EntryOut, FallocateIn, FileLock, FlushIn,
    FsyncIn, GetxattrIn, GetxattrOut, IoctlIn, IoctlOut, Kstatfs, LkIn, LkOut, LseekIn, LseekOut,
    Opcode, OpenIn, OpenOut, ReadIn, ReleaseIn, RemovemappingIn, RemovemappingOne, SetupmappingIn,
    SetxattrIn, StatfsOut, SyncfsIn, WriteIn, WriteOut, FSYNC_FDATASYNC, LK_FLOCK,
};
use vm_memory::ByteValued;

use crate::dirent::{parse_direntplus, parse_dirents, DirEntry, DirEntryPlus};
use crate::error::{Error, Result};
use crate::fuse_client::{copy_struct, parse_exact, Pending, Session};
use crate::fuse_ops::cstr;

/// Reply to GETXATTR / LISTXATTR: the needed size (when asked with size 0) or the data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum XattrReply {
    Size(u32),
    Data(Vec<u8>),
}

/// SETXATTR's request with SETXATTR_EXT (7.33+), used when the server granted that flag.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SetxattrInExt {
    pub size: u32,
    pub flags: u32,
    pub setxattr_flags: u32,
    pub padding: u32,
}
// SAFETY: repr(C), four u32 with no padding; any bit pattern is valid.
unsafe impl ByteValued for SetxattrInExt {}

const OPEN_OUT: usize = std::mem::size_of::<OpenOut>();
const ENTRY: usize = std::mem::size_of::<EntryOut>();

impl Session {
    /// OPEN with `O_*` flags.
    pub fn open(&self, nodeid: u64, flags: u32) -> Result<OpenOut> {
        self.open_op(Opcode::Open, nodeid, flags)
    }

    /// OPENDIR.
    pub fn opendir(&self, nodeid: u64, flags: u32) -> Result<OpenOut> {
        self.open_op(Opcode::Opendir, nodeid, flags)
    }

    fn open_op(&self, op: Opcode, nodeid: u64, flags: u32) -> Result<OpenOut> {
        let arg = OpenIn {
            flags,
            open_flags: 0,
        };
        let body = self.call(op, nodeid, &[arg.as_slice()], &[OPEN_OUT])?;
        parse_exact(op, &body)
    }

    /// CREATE `name` in `parent` and open it.
    pub fn create(
        &self,
        parent: u64,
        name: impl AsRef<[u8]>,
        mode: u32,
        flags: u32,
        umask: u32,
    ) -> Result<(EntryOut, OpenOut)> {
        self.create_op(Opcode::Create, parent, &cstr(name), mode, flags, umask)
    }

    /// TMPFILE in `parent` (sends the name "/" as Linux does).
    pub fn tmpfile(
        &self,
        parent: u64,
        mode: u32,
        flags: u32,
        umask: u32,
    ) -> Result<(EntryOut, OpenOut)> {
        self.create_op(Opcode::Tmpfile, parent, &cstr("/"), mode, flags, umask)
    }

    fn create_op(
        &self,
        op: Opcode,
        parent: u64,
        name: &[u8],
        mode: u32,
        flags: u32,
        umask: u32,
    ) -> Result<(EntryOut, OpenOut)> {
        let arg = CreateIn {
            flags,
            mode,
            umask,
            open_flags: 0,
        };
        let body = self.call(op, parent, &[arg.as_slice(), name], &[ENTRY, OPEN_OUT])?;
        if body.len() != ENTRY + OPEN_OUT {
            return Err(Error::Protocol(format!(
                "{op:?}: {}-byte reply body",
                body.len()
            )));
        }
        Ok((copy_struct(&body), copy_struct(&body[ENTRY..])))
    }

    /// Starts a READ without waiting (for pipelined benchmarks); finish with
    /// [`Session::complete`], whose body is the data.
    pub fn submit_read(&self, nodeid: u64, fh: u64, offset: u64, size: u32) -> Result<Pending> {
        let arg = ReadIn {
            fh,
            offset,
            size,
            ..Default::default()
        };
        self.submit(Opcode::Read, nodeid, &[arg.as_slice()], &[size as usize])
    }

    /// READ up to `size` bytes at `offset`.
    pub fn read(&self, nodeid: u64, fh: u64, offset: u64, size: u32) -> Result<Vec<u8>> {
        let p = self.submit_read(nodeid, fh, offset, size)?;
        let data = self.complete(p)?;
        if data.len() > size as usize {
            return Err(Error::Protocol(format!(
                "READ: {} bytes for {size}",
                data.len()
            )));
        }
        Ok(data)
    }

    /// Starts a WRITE without waiting; the completed body is a `WriteOut`.
    pub fn submit_write(
        &self,
        nodeid: u64,
        fh: u64,
        offset: u64,
        data: &[u8],
        write_flags: u32,
    ) -> Result<Pending> {
        let arg = WriteIn {
            fh,
            offset,
            size: data.len() as u32,
            write_flags,
            ..Default::default()
        };
        self.submit(
            Opcode::Write,
            nodeid,
            &[arg.as_slice(), data],
            &[std::mem::size_of::<WriteOut>()],
        )
    }

    /// WRITE `data` at `offset`; returns the byte count the server reports.
    pub fn write(&self, nodeid: u64, fh: u64, offset: u64, data: &[u8]) -> Result<u32> {
        self.write_with_flags(nodeid, fh, offset, data, 0)
    }

    /// WRITE with `WRITE_*` flags.
    pub fn write_with_flags(
        &self,
        nodeid: u64,
        fh: u64,
        offset: u64,
        data: &[u8],
        write_flags: u32,
    ) -> Result<u32> {
        let p = self.submit_write(nodeid, fh, offset, data, write_flags)?;
        let out: WriteOut = parse_exact(Opcode::Write, &self.complete(p)?)?;
        if out.size as usize > data.len() {
            return Err(Error::Protocol(format!(
                "WRITE: {} written of {}",
                out.size,
                data.len()
            )));
        }
        Ok(out.size)
    }

    /// STATFS.
    pub fn statfs(&self, nodeid: u64) -> Result<Kstatfs> {
        let body = self.call(
            Opcode::Statfs,
            nodeid,
            &[],
            &[std::mem::size_of::<StatfsOut>()],
        )?;
        Ok(parse_exact::<StatfsOut>(Opcode::Statfs, &body)?.st)
    }

    /// RELEASE an open file.
    pub fn release(
        &self,
        nodeid: u64,
        fh: u64,
        flags: u32,
        release_flags: u32,
        lock_owner: u64,
    ) -> Result<()> {
        self.release_op(
            Opcode::Release,
            nodeid,
            fh,
            flags,
            release_flags,
            lock_owner,
        )
    }

    /// RELEASEDIR.
    pub fn releasedir(&self, nodeid: u64, fh: u64, flags: u32) -> Result<()> {
        self.release_op(Opcode::Releasedir, nodeid, fh, flags, 0, 0)
    }

    fn release_op(
        &self,
        op: Opcode,
        nodeid: u64,
        fh: u64,
        flags: u32,
        release_flags: u32,
        lock_owner: u64,
    ) -> Result<()> {
        let arg = ReleaseIn {
            fh,
            flags,
            release_flags,
            lock_owner,
        };
        self.call(op, nodeid, &[arg.as_slice()], &[]).map(drop)
    }

    /// FSYNC (`datasync` sets FSYNC_FDATASYNC).
    pub fn fsync(&self, nodeid: u64, fh: u64, datasync: bool) -> Result<()> {
        self.fsync_op(Opcode::Fsync, nodeid, fh, datasync)
    }

    /// FSYNCDIR.
    pub fn fsyncdir(&self, nodeid: u64, fh: u64, datasync: bool) -> Result<()> {
        self.fsync_op(Opcode::Fsyncdir, nodeid, fh, datasync)
    }

    fn fsync_op(&self, op: Opcode, nodeid: u64, fh: u64, datasync: bool) -> Result<()> {
        let arg = FsyncIn {
            fh,
            fsync_flags: if datasync { FSYNC_FDATASYNC } else { 0 },
            padding: 0,
        };
        self.call(op, nodeid, &[arg.as_slice()], &[]).map(drop)
    }

    /// FLUSH.
    pub fn flush(&self, nodeid: u64, fh: u64, lock_owner: u64) -> Result<()> {
        let arg = FlushIn {
            fh,
            lock_owner,
            ..Default::default()
        };
        self.call(Opcode::Flush, nodeid, &[arg.as_slice()], &[])
            .map(drop)
    }

    /// SETXATTR (`flags`: XATTR_CREATE / XATTR_REPLACE).
    pub fn setxattr(
        &self,
        nodeid: u64,
        name: impl AsRef<[u8]>,
        value: &[u8],
        flags: u32,
    ) -> Result<()> {
        let ext = self.granted_flags() & init_flags::SETXATTR_EXT != 0;
        let head = if ext {
            SetxattrInExt {
                size: value.len() as u32,
                flags,
                ..Default::default()
            }
            .as_slice()
            .to_vec()
        } else {
            SetxattrIn {
                size: value.len() as u32,
                flags,
            }
            .as_slice()
            .to_vec()
        };
        self.call(Opcode::Setxattr, nodeid, &[&head, &cstr(name), value], &[])
            .map(drop)
    }

    /// GETXATTR; `size == 0` asks for the value's size.
    pub fn getxattr(&self, nodeid: u64, name: impl AsRef<[u8]>, size: u32) -> Result<XattrReply> {
        let arg = GetxattrIn { size, padding: 0 };
        self.xattr_query(
            Opcode::Getxattr,
            nodeid,
            &[arg.as_slice(), &cstr(name)],
            size,
        )
    }

    /// LISTXATTR; `size == 0` asks for the list's size. The data is NUL-separated names.
    pub fn listxattr(&self, nodeid: u64, size: u32) -> Result<XattrReply> {
        let arg = GetxattrIn { size, padding: 0 };
        self.xattr_query(Opcode::Listxattr, nodeid, &[arg.as_slice()], size)
    }

    fn xattr_query(
        &self,
        op: Opcode,
        nodeid: u64,
        args: &[&[u8]],
        size: u32,
    ) -> Result<XattrReply> {
        if size == 0 {
            let body = self.call(op, nodeid, args, &[std::mem::size_of::<GetxattrOut>()])?;
            Ok(XattrReply::Size(
                parse_exact::<GetxattrOut>(op, &body)?.size,
            ))
        } else {
            let body = self.call(op, nodeid, args, &[size as usize])?;
            Ok(XattrReply::Data(body))
        }
    }

    /// REMOVEXATTR.
    pub fn removexattr(&self, nodeid: u64, name: impl AsRef<[u8]>) -> Result<()> {
        self.call(Opcode::Removexattr, nodeid, &[&cstr(name)], &[])
            .map(drop)
    }

    /// READDIR from `offset` with a `size`-byte buffer.
    pub fn readdir(&self, nodeid: u64, fh: u64, offset: u64, size: u32) -> Result<Vec<DirEntry>> {
        let body = self.readdir_op(Opcode::Readdir, nodeid, fh, offset, size)?;
        parse_dirents(&body)
    }

    /// READDIRPLUS from `offset` with a `size`-byte buffer.
    pub fn readdirplus(
        &self,
        nodeid: u64,
        fh: u64,
        offset: u64,
        size: u32,
    ) -> Result<Vec<DirEntryPlus>> {
        let body = self.readdir_op(Opcode::Readdirplus, nodeid, fh, offset, size)?;
        parse_direntplus(&body)
    }

    fn readdir_op(
        &self,
        op: Opcode,
        nodeid: u64,
        fh: u64,
        offset: u64,
        size: u32,
    ) -> Result<Vec<u8>> {
        let arg = ReadIn {
            fh,
            offset,
            size,
            ..Default::default()
        };
        let body = self.call(op, nodeid, &[arg.as_slice()], &[size as usize])?;
        if body.len() > size as usize {
            return Err(Error::Protocol(format!(
                "{op:?}: {} bytes for {size}",
                body.len()
            )));
        }
        Ok(body)
    }

    /// GETLK: the first lock that would conflict with `lk` (type F_UNLCK if none).
    pub fn getlk(&self, nodeid: u64, fh: u64, owner: u64, lk: FileLock) -> Result<FileLock> {
        let arg = LkIn {
            fh,
            owner,
            lk,
            lk_flags: 0,
            padding: 0,
        };
        let body = self.call(
            Opcode::Getlk,
            nodeid,
            &[arg.as_slice()],
            &[std::mem::size_of::<LkOut>()],
        )?;
        Ok(parse_exact::<LkOut>(Opcode::Getlk, &body)?.lk)
    }

    /// SETLK (non-blocking); `flock` selects BSD flock semantics.
    pub fn setlk(&self, nodeid: u64, fh: u64, owner: u64, lk: FileLock, flock: bool) -> Result<()> {
        self.lk_op(Opcode::Setlk, nodeid, fh, owner, lk, flock)
    }

    /// SETLKW (blocking).
    pub fn setlkw(
        &self,
        nodeid: u64,
        fh: u64,
        owner: u64,
        lk: FileLock,
        flock: bool,
    ) -> Result<()> {
        self.lk_op(Opcode::Setlkw, nodeid, fh, owner, lk, flock)
    }

    fn lk_op(
        &self,
        op: Opcode,
        nodeid: u64,
        fh: u64,
        owner: u64,
        lk: FileLock,
        flock: bool,
    ) -> Result<()> {
        let arg = LkIn {
            fh,
            owner,
            lk,
            lk_flags: if flock { LK_FLOCK } else { 0 },
            padding: 0,
        };
        self.call(op, nodeid, &[arg.as_slice()], &[]).map(drop)
    }

    /// ACCESS with an `R_OK|W_OK|X_OK` mask.
    pub fn access(&self, nodeid: u64, mask: u32) -> Result<()> {
        let arg = AccessIn { mask, padding: 0 };
        self.call(Opcode::Access, nodeid, &[arg.as_slice()], &[])
            .map(drop)
    }

    /// FALLOCATE.
    pub fn fallocate(
        &self,
        nodeid: u64,
        fh: u64,
        offset: u64,
        length: u64,
        mode: u32,
    ) -> Result<()> {
        let arg = FallocateIn {
            fh,
            offset,
            length,
            mode,
            padding: 0,
        };
        self.call(Opcode::Fallocate, nodeid, &[arg.as_slice()], &[])
            .map(drop)
    }

    /// LSEEK (SEEK_DATA / SEEK_HOLE / ...); returns the resulting offset.
    pub fn lseek(&self, nodeid: u64, fh: u64, offset: u64, whence: u32) -> Result<u64> {
        let arg = LseekIn {
            fh,
            offset,
            whence,
            padding: 0,
        };
        let body = self.call(
            Opcode::Lseek,
            nodeid,
            &[arg.as_slice()],
            &[std::mem::size_of::<LseekOut>()],
        )?;
        Ok(parse_exact::<LseekOut>(Opcode::Lseek, &body)?.offset)
    }

    /// COPY_FILE_RANGE from (`nodeid_in`, `args.fh_in`, `args.off_in`) to the out side in
    /// `args`; returns the byte count copied.
    pub fn copy_file_range(&self, nodeid_in: u64, args: CopyFileRangeIn) -> Result<u32> {
        let body = self.call(
            Opcode::CopyFileRange,
            nodeid_in,
            &[args.as_slice()],
            &[std::mem::size_of::<WriteOut>()],
        )?;
        Ok(parse_exact::<WriteOut>(Opcode::CopyFileRange, &body)?.size)
    }

    /// SYNCFS.
    pub fn syncfs(&self, nodeid: u64) -> Result<()> {
        let arg = SyncfsIn::default();
        self.call(Opcode::Syncfs, nodeid, &[arg.as_slice()], &[])
            .map(drop)
    }

    /// IOCTL; returns the reply struct and up to `out_size` bytes of output.
    #[allow(clippy::too_many_arguments)]
    pub fn ioctl(
        &self,
        nodeid: u64,
        fh: u64,
        flags: u32,
        cmd: u32,
        arg: u64,
        in_data: &[u8],
        out_size: u32,
    ) -> Result<(IoctlOut, Vec<u8>)> {
        let a = IoctlIn {
            fh,
            flags,
            cmd,
            arg,
            in_size: in_data.len() as u32,
            out_size,
        };
        let out_len = std::mem::size_of::<IoctlOut>();
        let mut args: Vec<&[u8]> = vec![a.as_slice()];
        if !in_data.is_empty() {
            args.push(in_data);
        }
        let mut outs = vec![out_len];
        if out_size > 0 {
            outs.push(out_size as usize);
        }
        let body = self.call(Opcode::Ioctl, nodeid, &args, &outs)?;
        if body.len() < out_len {
            return Err(Error::Protocol(format!(
                "IOCTL: {}-byte reply body",
                body.len()
            )));
        }
        Ok((copy_struct(&body), body[out_len..].to_vec()))
    }

    /// SETUPMAPPING (DAX): map `len` bytes of file `fh` at `foffset` to window offset `moffset`.
    pub fn setupmapping(
        &self,
        nodeid: u64,
        fh: u64,
        foffset: u64,
        len: u64,
        flags: u64,
        moffset: u64,
    ) -> Result<()> {
        let arg = SetupmappingIn {
            fh,
            foffset,
            len,
            flags,
            moffset,
        };
        self.call(Opcode::Setupmapping, nodeid, &[arg.as_slice()], &[])
            .map(drop)
    }

    /// REMOVEMAPPING (DAX) of `(moffset, len)` ranges.
    pub fn removemapping(&self, nodeid: u64, ranges: &[(u64, u64)]) -> Result<()> {
        let head = RemovemappingIn {
            count: ranges.len() as u32,
        };
        let mut list = Vec::with_capacity(ranges.len() * 16);
        for &(moffset, len) in ranges {
            list.extend_from_slice(RemovemappingOne { moffset, len }.as_slice());
        }
        self.call(
            Opcode::Removemapping,
            nodeid,
            &[head.as_slice(), &list],
            &[],
        )
        .map(drop)
    }
}
