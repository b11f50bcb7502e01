//! Submount announcements: a directory inside the share that is another host mount (a volume,
//! a tmpfs, a bind mount of another filesystem) is marked FUSE_ATTR_SUBMOUNT in the entry that
//! names it, so a Linux guest that offered FUSE_SUBMOUNTS mounts it separately, with its own
//! st_dev. Without this, every file of the share shows the guest's one st_dev and the host's
//! st_ino, and inode numbers of two host filesystems can collide (hard-link detection in `tar`,
//! `du`, `find -samefile` then goes wrong).
//!
//! The rule is virtiofsd's with the device number as the key: a directory whose st_dev differs
//! from its parent's. A bind mount of a directory of the same filesystem keeps its st_dev and
//! is not announced; its inode numbers cannot collide with its parent's.

use fuse_backend_rs::api::filesystem::{Context, Entry, FileSystem};
use std::sync::atomic::Ordering;

use super::Server;
use crate::fuse::abi::ATTR_SUBMOUNT;

/// Whether `st` describes a directory.
fn is_dir(mode: u32) -> bool {
    mode & libc::S_IFMT == libc::S_IFDIR
}

impl<F> Server<F>
where
    F: FileSystem<Inode = u64, Handle = u64> + Sync,
{
    /// Whether submounts are announced on this connection (negotiated in INIT).
    pub(super) fn announcing_submounts(&self) -> bool {
        self.submounts.load(Ordering::Acquire)
    }

    /// The device of `parent`, when submounts are announced; `None` otherwise, or when the
    /// parent cannot be stat'ed (then nothing is announced: the entry itself is still right).
    pub(super) fn parent_dev(&self, ctx: &Context, parent: u64) -> Option<u64> {
        if !self.announcing_submounts() {
            return None;
        }
        self.fs
            .getattr(ctx, parent, None)
            .ok()
            .map(|(st, _)| st.st_dev)
    }

    /// Marks `entry` as a submount root when it is a directory on another device than its
    /// parent (`parent_dev`, from [`Server::parent_dev`]).
    pub(super) fn mark_submount(parent_dev: Option<u64>, entry: &mut Entry) {
        if let Some(dev) = parent_dev {
            if is_dir(entry.attr.st_mode) && entry.attr.st_dev != dev {
                entry.attr_flags |= ATTR_SUBMOUNT;
            }
        }
    }

    /// LOOKUP's entry with the submount mark when it applies. Only a directory costs a stat of
    /// the parent; other entries are returned as they are.
    pub(super) fn with_submount_mark(&self, ctx: &Context, parent: u64, mut entry: Entry) -> Entry {
        if self.announcing_submounts() && is_dir(entry.attr.st_mode) {
            Self::mark_submount(self.parent_dev(ctx, parent), &mut entry);
        }
        entry
    }
}
