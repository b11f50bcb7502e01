//! Symbolic links a guest makes when ownership is emulated.
//!
//! A guest `lchown` of its own symlink to an id the host cannot hold has to be recorded, and a
//! host symlink cannot carry a `user.` attribute (the kernel refuses them on anything but
//! regular files and directories). So with `ownership = "emulate"` a guest SYMLINK makes a
//! regular host file, mode 0600, holding the target, with a record of type `l`; the guest sees
//! a symlink of that target, owned as recorded, and READLINK reads the file. On the host such a
//! link is inert: nothing there follows it. Host symlinks, and every symlink with `ownership =
//! "host"`, stay real.
//!
//! The worker reads and writes the stand-in by a path (its descriptors are O_PATH), opened with
//! O_NOFOLLOW and checked to be the same regular file afterwards, so a path swapped on the host
//! in between gets an error, never another file's bytes.

use std::ffi::CStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::PathBuf;

use fuse_backend_rs::abi::fuse_abi::stat64;
use fuse_backend_rs::api::filesystem::{Context, Entry, FileSystem};

use super::record::Kind;
use super::wrapper::errno;
use super::Emulation;

/// Longest target a link may have, its terminating NUL excluded (PATH_MAX is 4096 with it).
const MAX_TARGET: usize = libc::PATH_MAX as usize - 1;

impl<F: FileSystem<Inode = u64, Handle = u64>> Emulation<F> {
    /// Whether a guest SYMLINK makes a stand-in rather than a host symlink.
    pub(super) fn emulates_symlinks(&self) -> bool {
        self.ownership == super::Ownership::Emulate
            && (self.paths.is_some() || self.content_paths.is_some())
    }

    /// A guest SYMLINK as a stand-in (see the module docs).
    pub(super) fn symlink_standin(
        &self,
        ctx: &Context,
        target: &CStr,
        parent: u64,
        name: &CStr,
    ) -> io::Result<Entry> {
        let target = target.to_bytes();
        if target.is_empty() {
            return Err(errno(libc::ENOENT));
        }
        if target.len() > MAX_TARGET {
            return Err(errno(libc::ENAMETOOLONG));
        }
        self.make_standin(ctx, parent, name, Kind::Symlink, 0o777, 0, target)
    }

    /// The target a stand-in whose host stat is `st` holds.
    pub(super) fn read_target(&self, inode: u64, st: &stat64) -> io::Result<Vec<u8>> {
        let file = self.open_standin(inode, st, libc::O_RDONLY)?;
        let mut target = Vec::with_capacity(st.st_size.clamp(0, 4096) as usize);
        // One byte more than a target may have, to tell a stand-in that grew on the host.
        file.take(MAX_TARGET as u64 + 1).read_to_end(&mut target)?;
        if target.is_empty() || target.len() > MAX_TARGET || target.contains(&0) {
            crate::guest_warn!(
                "host inode {}: a symlink stand-in of {} bytes cannot be a link target; EIO",
                st.st_ino,
                target.len()
            );
            return Err(errno(libc::EIO));
        }
        Ok(target)
    }

    /// Writes `content` at the start of the fresh stand-in whose host stat is `st`.
    pub(super) fn write_content(&self, inode: u64, st: &stat64, content: &[u8]) -> io::Result<()> {
        self.open_standin(inode, st, libc::O_WRONLY)?
            .write_all_at(content, 0)
    }

    /// Opens the regular host file behind `inode` by a path, refusing anything that is not the
    /// very file `st` describes.
    fn open_standin(&self, inode: u64, st: &stat64, access: i32) -> io::Result<File> {
        let path = self.host_path(inode, st)?;
        let file = std::fs::OpenOptions::new()
            .read(access == libc::O_RDONLY)
            .write(access == libc::O_WRONLY)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(&path)?;
        let meta = file.metadata()?;
        if !meta.file_type().is_file() || meta.dev() != st.st_dev || meta.ino() != st.st_ino {
            return Err(errno(libc::ESTALE));
        }
        Ok(file)
    }

    fn host_path(&self, inode: u64, st: &stat64) -> io::Result<PathBuf> {
        match (&self.paths, &self.content_paths) {
            (Some(paths), _) => paths.path(inode, st),
            (None, Some(resolve)) => resolve(inode),
            (None, None) => Err(errno(libc::EOPNOTSUPP)),
        }
    }
}
