//! What the FUSE protocol asks of a share that fuse-backend-rs's `FileSystem` trait does not
//! give directly, built from the calls it does give.
//!
//! [`FuseAdapter`] sits between the FUSE server and the share's filesystem stack (the policy
//! wrapper over `PassthroughFs`): every `FileSystem` call reaches the stack unchanged through
//! `Deref`, and the adapter adds
//! - SYNCFS: `syncfs(2)` on the share's root descriptor (the trait has no syncfs);
//! - TMPFILE: a uniquely named file created and unlinked at once (the trait has no O_TMPFILE);
//! - COPY_FILE_RANGE: a READ into a bounce buffer and a WRITE out of it (the trait has no copy
//!   between two handles);
//! - READDIR with the host's inode numbers: PassthroughFs's own readdir reports its node ids as
//!   d_ino, which a guest would show (`ls -i`) next to a different st_ino, so the entries come
//!   from its readdirplus and the lookups that carries are dropped again.
//!
//! Everything here goes through the wrapped stack, so the share's policy (read-only, special
//! files) applies to these requests as to any other. The server only decodes, checks and
//! encodes.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::ops::Deref;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};

use fuse_backend_rs::abi::fuse_abi::CreateIn;
use fuse_backend_rs::api::filesystem::{Context, DirEntry, Entry, FileSystem, OpenOptions};

use super::bounce::BounceBuffer;

fn errno(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

/// The share's filesystem stack as the FUSE server uses it.
pub struct FuseAdapter<F> {
    inner: F,
    /// The share's root, for SYNCFS; without it SYNCFS answers ENOSYS.
    share_root: Option<File>,
    /// Names the TMPFILE emulation's short-lived entries.
    tmpfile_seq: AtomicU64,
}

impl<F> Deref for FuseAdapter<F> {
    type Target = F;

    fn deref(&self) -> &F {
        &self.inner
    }
}

impl<F> FuseAdapter<F>
where
    F: FileSystem<Inode = u64, Handle = u64>,
{
    pub fn new(inner: F, share_root: Option<File>) -> Self {
        FuseAdapter {
            inner,
            share_root,
            tmpfile_seq: AtomicU64::new(0),
        }
    }

    /// syncfs(2) of the filesystem holding the share.
    pub fn syncfs(&self) -> io::Result<()> {
        let root = self
            .share_root
            .as_ref()
            .ok_or_else(|| errno(libc::ENOSYS))?;
        // SAFETY: syncfs only reads the fd, which `root` keeps open for the call.
        if unsafe { libc::syncfs(root.as_raw_fd()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// O_TMPFILE, emulated: an unnamed file cannot be opened through the trait, so a uniquely
    /// named one is created and unlinked at once. The open handle keeps the inode alive; unlike a
    /// real O_TMPFILE it cannot be given a name later with linkat(AT_EMPTY_PATH). The entry's
    /// link count is 0, as the guest expects of an unnamed file.
    pub fn tmpfile(
        &self,
        ctx: &Context,
        parent: u64,
        args: CreateIn,
    ) -> io::Result<(Entry, Option<u64>, OpenOptions)> {
        let seq = self.tmpfile_seq.fetch_add(1, Ordering::Relaxed);
        let name = CString::new(format!(".fsjail-tmpfile.{}.{seq}", std::process::id()))
            .map_err(|_| errno(libc::EINVAL))?;
        let tmpfile_bits = (libc::O_TMPFILE | libc::O_DIRECTORY) as u32;
        let args = CreateIn {
            flags: (args.flags & !tmpfile_bits) | (libc::O_CREAT | libc::O_EXCL) as u32,
            ..args
        };
        let (mut entry, handle, options, _) = self.inner.create(ctx, parent, &name, args)?;
        if let Err(e) = self.inner.unlink(ctx, parent, &name) {
            if let Some(h) = handle {
                let _ = self
                    .inner
                    .release(ctx, entry.inode, 0, h, false, false, None);
            }
            self.inner.forget(ctx, entry.inode, 1);
            return Err(e);
        }
        entry.attr.st_nlink = 0;
        Ok((entry, handle, options))
    }

    /// Copies at most `len` bytes from one open file to another through a bounce buffer; a
    /// short count is what copy_file_range(2) allows (the guest loops).
    #[allow(clippy::too_many_arguments)] // the two (node, handle, offset) triples of the request
    pub fn copy_file_range(
        &self,
        ctx: &Context,
        inode_in: u64,
        handle_in: u64,
        offset_in: u64,
        inode_out: u64,
        handle_out: u64,
        offset_out: u64,
        len: u32,
    ) -> io::Result<u32> {
        let mut bounce = BounceBuffer::with_capacity(len as usize);
        self.inner.read(
            ctx,
            inode_in,
            handle_in,
            &mut bounce,
            len,
            offset_in,
            None,
            0,
        )?;
        let filled = bounce.filled() as u32;
        if filled == 0 {
            return Ok(0);
        }
        let written = self.inner.write(
            ctx,
            inode_out,
            handle_out,
            &mut bounce,
            filled,
            offset_out,
            None,
            false,
            0,
            0,
        )?;
        u32::try_from(written).map_err(|_| errno(libc::EIO))
    }

    /// READDIR entries with the host's inode numbers as d_ino. `add_entry` returns the bytes
    /// the entry took, 0 when it did not fit (which ends the listing).
    pub fn readdir_host_ino(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
        size: u32,
        offset: u64,
        add_entry: &mut dyn FnMut(DirEntry) -> io::Result<usize>,
    ) -> io::Result<()> {
        let mut listed = Vec::new();
        let res = self.inner.readdirplus(
            ctx,
            inode,
            handle,
            size,
            offset,
            &mut |d: DirEntry, e: Entry| {
                let r = add_entry(d);
                // An entry that did not fit was not counted as looked up by the stack.
                if r.as_ref().map_or(true, |&n| n > 0) {
                    listed.push((e.inode, 1));
                }
                r
            },
        );
        if !listed.is_empty() {
            self.inner.batch_forget(ctx, listed);
        }
        res
    }
}
