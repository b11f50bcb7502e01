//! Opcodes about names and inodes: lookups, metadata, links, xattrs.

use std::io;
use std::mem::size_of;

use fuse_backend_rs::abi::fuse_abi::stat64;
use fuse_backend_rs::api::filesystem::{FileSystem, GetxattrReply, ListxattrReply, SetattrValid};
use vm_memory::ByteValued;

use super::{name_err, NameBuf, Request};
use crate::fuse::abi::{
    self, AccessIn, BatchForgetIn, ForgetIn, ForgetOne, GetattrIn, GetxattrIn, GetxattrOut, LinkIn,
    MkdirIn, MknodIn, Rename2In, RenameIn, SetattrIn, SetxattrIn, GETATTR_FH,
};
use crate::fuse::server::attr::{attr_out, entry_out, kstatfs};
use crate::fuse::server::names::{
    check_link_target, check_xattr_name, single_entry_name, split_cstr, two_entry_names,
};
use crate::fuse::server::{err, Server};

impl<F> Server<F>
where
    F: FileSystem<Inode = u64, Handle = u64> + Sync,
{
    fn entry_reply(
        &self,
        req: &mut Request<'_>,
        entry: &fuse_backend_rs::api::filesystem::Entry,
    ) -> io::Result<usize> {
        let out = entry_out(entry, self.options.blksize);
        req.ok(&[out.as_slice()])
    }

    pub(super) fn lookup(&self, req: &mut Request<'_>) -> io::Result<usize> {
        let mut names = NameBuf::new();
        let body = req.names(&mut names)?;
        let name = single_entry_name(body).map_err(name_err)?;
        let entry = self.fs.lookup(&req.ctx, req.nodeid(), name)?;
        let entry = self.with_submount_mark(&req.ctx, req.nodeid(), entry);
        self.entry_reply(req, &entry)
    }

    pub(super) fn forget(&self, req: &mut Request<'_>) -> io::Result<usize> {
        if let Ok(arg) = req.read::<ForgetIn>() {
            self.fs.forget(&req.ctx, req.nodeid(), arg.nlookup);
        }
        Ok(0)
    }

    pub(super) fn batch_forget(&self, req: &mut Request<'_>) -> io::Result<usize> {
        let Ok(arg) = req.read::<BatchForgetIn>() else {
            return Ok(0);
        };
        // The count must match the entries actually present; a count beyond them is a forged
        // request and is dropped whole (BATCH_FORGET never takes a reply).
        let present = req.r.available_bytes() / size_of::<ForgetOne>();
        if arg.count as usize != present
            || !req
                .r
                .available_bytes()
                .is_multiple_of(size_of::<ForgetOne>())
        {
            return Ok(0);
        }
        let mut requests = Vec::with_capacity(present);
        for _ in 0..present {
            let one = req.r.read_obj::<ForgetOne>()?;
            requests.push((one.nodeid, one.nlookup));
        }
        self.fs.batch_forget(&req.ctx, requests);
        Ok(0)
    }

    pub(super) fn getattr(&self, req: &mut Request<'_>) -> io::Result<usize> {
        let arg = req.read::<GetattrIn>()?;
        let handle = (arg.getattr_flags & GETATTR_FH != 0).then_some(arg.fh);
        let (st, timeout) = self.fs.getattr(&req.ctx, req.nodeid(), handle)?;
        let out = attr_out(&st, timeout, self.options.blksize);
        req.ok(&[out.as_slice()])
    }

    pub(super) fn setattr(&self, req: &mut Request<'_>) -> io::Result<usize> {
        let arg = req.read::<SetattrIn>()?;
        if !arg.is_valid() {
            return Err(err(libc::EINVAL));
        }
        // SAFETY: stat64 is a plain C struct of integers; all-zero is a valid value.
        let mut st: stat64 = unsafe { std::mem::zeroed() };
        st.st_mode = arg.mode;
        st.st_uid = arg.uid;
        st.st_gid = arg.gid;
        st.st_size = i64::try_from(arg.size).map_err(|_| err(libc::EFBIG))?;
        st.st_atime = i64::try_from(arg.atime).map_err(|_| err(libc::EINVAL))?;
        st.st_atime_nsec = i64::from(arg.atimensec);
        st.st_mtime = i64::try_from(arg.mtime).map_err(|_| err(libc::EINVAL))?;
        st.st_mtime_nsec = i64::from(arg.mtimensec);
        st.st_ctime = i64::try_from(arg.ctime).map_err(|_| err(libc::EINVAL))?;
        st.st_ctime_nsec = i64::from(arg.ctimensec);
        let handle = (arg.valid & abi::setattr_valid::FH != 0).then_some(arg.fh);
        let valid = SetattrValid::from_bits_truncate(arg.valid);
        let (st, timeout) = self.fs.setattr(&req.ctx, req.nodeid(), st, handle, valid)?;
        let out = attr_out(&st, timeout, self.options.blksize);
        req.ok(&[out.as_slice()])
    }

    pub(super) fn readlink(&self, req: &mut Request<'_>) -> io::Result<usize> {
        let target = self.fs.readlink(&req.ctx, req.nodeid())?;
        req.ok(&[&target])
    }

    pub(super) fn symlink(&self, req: &mut Request<'_>) -> io::Result<usize> {
        let mut names = NameBuf::new();
        let body = req.names(&mut names)?;
        let (name, rest) = split_cstr(body).map_err(name_err)?;
        let name = crate::fuse::server::names::check_entry_name(name).map_err(name_err)?;
        let (target, tail) = split_cstr(rest).map_err(name_err)?;
        let target = check_link_target(target).map_err(name_err)?;
        if !tail.is_empty() {
            return Err(err(libc::EINVAL));
        }
        let entry = self.fs.symlink(&req.ctx, target, req.nodeid(), name)?;
        self.entry_reply(req, &entry)
    }

    pub(super) fn mknod(&self, req: &mut Request<'_>) -> io::Result<usize> {
        let arg = req.read::<MknodIn>()?;
        let mut names = NameBuf::new();
        let body = req.names(&mut names)?;
        let name = single_entry_name(body).map_err(name_err)?;
        let entry = self
            .fs
            .mknod(&req.ctx, req.nodeid(), name, arg.mode, arg.rdev, arg.umask)?;
        self.entry_reply(req, &entry)
    }

    pub(super) fn mkdir(&self, req: &mut Request<'_>) -> io::Result<usize> {
        let arg = req.read::<MkdirIn>()?;
        let mut names = NameBuf::new();
        let body = req.names(&mut names)?;
        let name = single_entry_name(body).map_err(name_err)?;
        let entry = self
            .fs
            .mkdir(&req.ctx, req.nodeid(), name, arg.mode, arg.umask)?;
        self.entry_reply(req, &entry)
    }

    pub(super) fn unlink(&self, req: &mut Request<'_>) -> io::Result<usize> {
        let mut names = NameBuf::new();
        let body = req.names(&mut names)?;
        let name = single_entry_name(body).map_err(name_err)?;
        self.fs.unlink(&req.ctx, req.nodeid(), name)?;
        req.ok(&[])
    }

    pub(super) fn rmdir(&self, req: &mut Request<'_>) -> io::Result<usize> {
        let mut names = NameBuf::new();
        let body = req.names(&mut names)?;
        let name = single_entry_name(body).map_err(name_err)?;
        self.fs.rmdir(&req.ctx, req.nodeid(), name)?;
        req.ok(&[])
    }

    pub(super) fn rename(&self, req: &mut Request<'_>) -> io::Result<usize> {
        let arg = req.read::<RenameIn>()?;
        self.do_rename(req, arg.newdir, 0)
    }

    pub(super) fn rename2(&self, req: &mut Request<'_>) -> io::Result<usize> {
        let arg = req.read::<Rename2In>()?;
        if !arg.is_valid() {
            return Err(err(libc::EINVAL));
        }
        self.do_rename(req, arg.newdir, arg.flags)
    }

    fn do_rename(&self, req: &mut Request<'_>, newdir: u64, flags: u32) -> io::Result<usize> {
        let mut names = NameBuf::new();
        let body = req.names(&mut names)?;
        let (old, new) = two_entry_names(body).map_err(name_err)?;
        self.fs
            .rename(&req.ctx, req.nodeid(), old, newdir, new, flags)?;
        req.ok(&[])
    }

    pub(super) fn link(&self, req: &mut Request<'_>) -> io::Result<usize> {
        let arg = req.read::<LinkIn>()?;
        let mut names = NameBuf::new();
        let body = req.names(&mut names)?;
        let name = single_entry_name(body).map_err(name_err)?;
        let entry = self.fs.link(&req.ctx, arg.oldnodeid, req.nodeid(), name)?;
        self.entry_reply(req, &entry)
    }

    pub(super) fn statfs(&self, req: &mut Request<'_>) -> io::Result<usize> {
        let st = self.fs.statfs(&req.ctx, req.nodeid())?;
        let out = abi::StatfsOut { st: kstatfs(&st) };
        req.ok(&[out.as_slice()])
    }

    pub(super) fn access(&self, req: &mut Request<'_>) -> io::Result<usize> {
        let arg = req.read::<AccessIn>()?;
        self.fs.access(&req.ctx, req.nodeid(), arg.mask)?;
        req.ok(&[])
    }

    pub(super) fn setxattr(&self, req: &mut Request<'_>) -> io::Result<usize> {
        let arg = req.read::<SetxattrIn>()?;
        if arg.size as usize > abi::XATTR_SIZE_MAX {
            return Err(err(libc::E2BIG));
        }
        let body = req.rest()?;
        let (name, value) = split_cstr(&body).map_err(name_err)?;
        let name = check_xattr_name(name).map_err(name_err)?;
        if value.len() != arg.size as usize {
            return Err(err(libc::EINVAL));
        }
        self.fs
            .setxattr(&req.ctx, req.nodeid(), name, value, arg.flags)?;
        req.ok(&[])
    }

    pub(super) fn getxattr(&self, req: &mut Request<'_>) -> io::Result<usize> {
        let arg = req.read::<GetxattrIn>()?;
        let mut names = NameBuf::new();
        let body = req.names(&mut names)?;
        let (name, tail) = split_cstr(body).map_err(name_err)?;
        let name = check_xattr_name(name).map_err(name_err)?;
        if !tail.is_empty() {
            return Err(err(libc::EINVAL));
        }
        // A size beyond what any xattr can hold is capped: it only bounds the reply.
        let size = arg.size.min(abi::XATTR_SIZE_MAX as u32);
        match self.fs.getxattr(&req.ctx, req.nodeid(), name, size)? {
            GetxattrReply::Value(value) => self.xattr_value_reply(req, size, &value),
            GetxattrReply::Count(count) => {
                let out = GetxattrOut {
                    size: count,
                    padding: 0,
                };
                req.ok(&[out.as_slice()])
            }
        }
    }

    pub(super) fn listxattr(&self, req: &mut Request<'_>) -> io::Result<usize> {
        let arg = req.read::<GetxattrIn>()?;
        req.expect_end()?;
        let size = arg.size.min(abi::XATTR_SIZE_MAX as u32);
        match self.fs.listxattr(&req.ctx, req.nodeid(), size)? {
            ListxattrReply::Names(names) => self.xattr_value_reply(req, size, &names),
            ListxattrReply::Count(count) => {
                let out = GetxattrOut {
                    size: count,
                    padding: 0,
                };
                req.ok(&[out.as_slice()])
            }
        }
    }

    /// A value larger than the guest's buffer is ERANGE, as getxattr(2) says; a size-0 query
    /// was answered with a count before we get here.
    fn xattr_value_reply(
        &self,
        req: &mut Request<'_>,
        size: u32,
        value: &[u8],
    ) -> io::Result<usize> {
        if size == 0 {
            let out = GetxattrOut {
                size: value.len() as u32,
                padding: 0,
            };
            return req.ok(&[out.as_slice()]);
        }
        if value.len() > size as usize {
            return Err(err(libc::ERANGE));
        }
        req.ok(&[value])
    }

    pub(super) fn removexattr(&self, req: &mut Request<'_>) -> io::Result<usize> {
        let mut names = NameBuf::new();
        let body = req.names(&mut names)?;
        let (name, tail) = split_cstr(body).map_err(name_err)?;
        let name = check_xattr_name(name).map_err(name_err)?;
        if !tail.is_empty() {
            return Err(err(libc::EINVAL));
        }
        self.fs.removexattr(&req.ctx, req.nodeid(), name)?;
        req.ok(&[])
    }
}
