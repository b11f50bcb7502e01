//! What the guest knows, kept at the `FileSystem` trait so it can be migrated.
//!
//! [`Tracked`] hands the guest its own node ids and file handles and translates them to the
//! inner filesystem's on every call. On the source that costs one map lookup per id; what it
//! buys is the destination's ability to serve the *same* ids: after [`Tracked::restore`] each
//! id the guest holds maps to the inode (or handle) re-opened there, whatever number the inner
//! filesystem gave it. PassthroughFs keeps its own table private, so this record (lookup
//! counts, forgets, opens and releases) is ours.
//!
//! Paths are not kept: a node's path is read when the state is saved, through the inner
//! filesystem's own descriptor for it (`/proc/self/fd/N`, see [`PathFn`]), and confirmed by
//! comparing the device and inode of that path with the descriptor's. A file deleted while the
//! guest knows it has no path; on the destination it follows [`MigrationOnError`].

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use fuse_backend_rs::api::filesystem::{Context, Entry, FileSystem};

use super::format::{HandleRecord, Kind, NodeRecord, ROOT};
use crate::id_hash::{id_map, id_map_with_capacity, IdMap};

/// Names an inner inode by its current path: relative to the worker's root (the share in a
/// jail), or absolute (unjailed; the resolver then strips the share's root).
pub type PathFn = Box<dyn Fn(u64) -> io::Result<PathBuf> + Send + Sync>;

pub use settings::{MigrationOnError, ParseMigrationOnError};

/// Why a state could not be saved or restored.
#[derive(Debug, thiserror::Error)]
pub enum TrackError {
    #[error("this share's filesystem cannot name its inodes, so its state cannot be saved")]
    NoPaths,
    #[error("the destination already serves a guest (it holds {0} nodes or handles)")]
    NotFresh(usize),
    #[error("node {node} ({path}): cannot be found again: {source}")]
    Vanished {
        node: u64,
        path: String,
        source: io::Error,
    },
    #[error("handle {fh} on node {node}: cannot be re-opened: {source}")]
    Reopen {
        fh: u64,
        node: u64,
        source: io::Error,
    },
}

struct Node {
    /// The inner filesystem's inode; 0 for a broken node (it answers EIO).
    inner: u64,
    /// The guest's lookup count.
    lookups: u64,
    /// Lookups we made on the inner inode; all are forgotten when the guest's count is 0.
    inner_refs: u64,
    generation: u64,
    kind: Kind,
    /// Open handles on it. A node the guest forgot while it still has the file open (Linux
    /// does that) stays until the last handle is released, so the handle keeps working and can
    /// be migrated.
    handles: u64,
}

struct Open {
    /// The inner handle; `None` for a broken handle (it answers EIO).
    inner: Option<u64>,
    node: u64,
    flags: u32,
    dir: bool,
}

struct Tables {
    nodes: IdMap<u64, Node>,
    by_inner: IdMap<u64, u64>,
    handles: IdMap<u64, Open>,
    next_node: u64,
    next_handle: u64,
}

/// A released handle: see [`Tracked::take_handle`].
struct Taken {
    handle: Option<u64>,
    inode: u64,
    forget: Option<(u64, u64)>,
}

/// Saved tables: what [`Tracked::snapshot`] returns.
pub struct Snapshot {
    pub nodes: Vec<NodeRecord>,
    pub handles: Vec<HandleRecord>,
    pub next_node: u64,
    pub next_handle: u64,
}

/// The tracking wrapper around an inner filesystem whose root is node 1.
pub struct Tracked<F> {
    inner: F,
    tables: RwLock<Tables>,
    /// Names inner inodes, and the directory their names are under (the share's root as the
    /// resolver sees it: `/` in a jail).
    paths: Option<(PathFn, PathBuf)>,
    on_error: MigrationOnError,
}

fn ebadf() -> io::Error {
    io::Error::from_raw_os_error(libc::EBADF)
}
fn eio() -> io::Error {
    io::Error::from_raw_os_error(libc::EIO)
}

fn kind_of(mode: u32) -> Kind {
    match mode & libc::S_IFMT {
        libc::S_IFREG => Kind::File,
        libc::S_IFDIR => Kind::Directory,
        _ => Kind::Other,
    }
}

impl<F> Tracked<F> {
    /// Wraps `inner`. Without [`Tracked::with_paths`] the state cannot be saved (the share
    /// still serves and can still be a destination).
    pub fn new(inner: F, on_error: MigrationOnError) -> Self {
        Tracked {
            inner,
            tables: RwLock::new(Tables {
                nodes: id_map(),
                by_inner: id_map(),
                handles: id_map(),
                next_node: ROOT + 1,
                next_handle: 1,
            }),
            paths: None,
            on_error,
        }
    }

    /// Names inner inodes with `paths`, whose answers lie under `root` (`/` in a jail, where
    /// the share is the root; the share's host path unjailed).
    pub fn with_paths(mut self, paths: PathFn, root: PathBuf) -> Self {
        self.paths = Some((paths, root));
        self
    }

    pub fn inner(&self) -> &F {
        &self.inner
    }

    pub fn on_error(&self) -> MigrationOnError {
        self.on_error
    }

    fn read(&self) -> RwLockReadGuard<'_, Tables> {
        self.tables.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Tables> {
        self.tables.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Nodes and handles the guest holds.
    pub fn known(&self) -> (usize, usize) {
        let t = self.read();
        (t.nodes.len(), t.handles.len())
    }

    /// The inner inode behind a guest node id.
    fn node(&self, guest: u64) -> io::Result<u64> {
        if guest == ROOT {
            return Ok(ROOT);
        }
        match self.read().nodes.get(&guest) {
            Some(n) if n.inner == 0 => Err(eio()),
            Some(n) => Ok(n.inner),
            None => Err(ebadf()),
        }
    }

    /// The inner handle behind a guest handle.
    fn handle(&self, fh: u64) -> io::Result<u64> {
        match self.read().handles.get(&fh) {
            Some(Open { inner: Some(h), .. }) => Ok(*h),
            Some(_) => Err(eio()),
            None => Err(ebadf()),
        }
    }

    fn opt_handle(&self, fh: Option<u64>) -> io::Result<Option<u64>> {
        fh.map(|h| self.handle(h)).transpose()
    }

    /// Records one lookup of `entry`'s inode and gives it its guest id.
    fn register(&self, entry: &mut Entry) {
        let inner = entry.inode;
        if inner == 0 || inner == ROOT {
            return;
        }
        let mut t = self.write();
        if let Some(&guest) = t.by_inner.get(&inner) {
            if let Some(n) = t.nodes.get_mut(&guest) {
                n.lookups = n.lookups.saturating_add(1);
                n.inner_refs = n.inner_refs.saturating_add(1);
                entry.inode = guest;
                return;
            }
        }
        let guest = t.next_node;
        t.next_node += 1;
        t.nodes.insert(
            guest,
            Node {
                inner,
                lookups: 1,
                inner_refs: 1,
                generation: entry.generation,
                kind: kind_of(entry.attr.st_mode),
                handles: 0,
            },
        );
        t.by_inner.insert(inner, guest);
        entry.inode = guest;
    }

    /// Undoes one [`Tracked::register`] of `guest` whose inner lookup the inner filesystem
    /// dropped itself (a READDIRPLUS entry that did not fit).
    fn unregister(&self, guest: u64) {
        let mut t = self.write();
        let Some(n) = t.nodes.get_mut(&guest) else {
            return;
        };
        n.lookups = n.lookups.saturating_sub(1);
        n.inner_refs = n.inner_refs.saturating_sub(1);
        if n.lookups == 0 && n.handles == 0 {
            let inner = n.inner;
            t.nodes.remove(&guest);
            if t.by_inner.get(&inner) == Some(&guest) {
                t.by_inner.remove(&inner);
            }
        }
    }

    /// Takes `count` of the guest's lookups off `guest`; returns the inner inode and its refs
    /// to forget when the guest's count reached zero.
    fn drop_lookups(&self, guest: u64, count: u64) -> Option<(u64, u64)> {
        if guest == ROOT {
            return None;
        }
        let mut t = self.write();
        let n = t.nodes.get_mut(&guest)?;
        n.lookups = n.lookups.saturating_sub(count);
        if n.lookups != 0 || n.handles != 0 {
            return None;
        }
        let (inner, refs) = (n.inner, n.inner_refs);
        t.nodes.remove(&guest);
        if t.by_inner.get(&inner) == Some(&guest) {
            t.by_inner.remove(&inner);
        }
        (inner != 0).then_some((inner, refs))
    }

    fn add_handle(&self, node: u64, inner: Option<u64>, flags: u32, dir: bool) -> Option<u64> {
        let inner = inner?;
        let mut t = self.write();
        if let Some(n) = t.nodes.get_mut(&node) {
            n.handles += 1;
        }
        let fh = t.next_handle;
        t.next_handle += 1;
        t.handles.insert(
            fh,
            Open {
                inner: Some(inner),
                node,
                flags,
                dir,
            },
        );
        Some(fh)
    }

    /// Removes a guest handle; returns its inner handle (`None` if it was broken), the inner
    /// inode it was opened on, and that inode's refs to forget when the guest had forgotten
    /// the node already and this was its last handle.
    fn take_handle(&self, fh: u64) -> io::Result<Taken> {
        let mut t = self.write();
        let o = t.handles.remove(&fh).ok_or_else(ebadf)?;
        if o.node == ROOT {
            return Ok(Taken {
                handle: o.inner,
                inode: ROOT,
                forget: None,
            });
        }
        let Some(n) = t.nodes.get_mut(&o.node) else {
            return Ok(Taken {
                handle: o.inner,
                inode: 0,
                forget: None,
            });
        };
        n.handles = n.handles.saturating_sub(1);
        let inode = n.inner;
        let mut forget = None;
        if n.handles == 0 && n.lookups == 0 {
            let refs = n.inner_refs;
            t.nodes.remove(&o.node);
            if t.by_inner.get(&inode) == Some(&o.node) {
                t.by_inner.remove(&inode);
            }
            forget = (inode != 0).then_some((inode, refs));
        }
        Ok(Taken {
            handle: o.inner,
            inode,
            forget,
        })
    }
}

impl<F: FileSystem<Inode = u64, Handle = u64>> Tracked<F> {
    /// The tables as records, each node named by its current path (`None` when it has none).
    pub fn snapshot(&self) -> Result<Snapshot, TrackError> {
        let (paths, root) = self.paths.as_ref().ok_or(TrackError::NoPaths)?;
        let t = self.read();
        let mut nodes = Vec::with_capacity(t.nodes.len());
        for (&id, n) in &t.nodes {
            let path = if n.inner == 0 {
                None
            } else {
                self.confirmed_path(paths, root, n.inner)
            };
            nodes.push(NodeRecord {
                id,
                generation: n.generation,
                lookups: n.lookups,
                kind: n.kind,
                path,
            });
        }
        nodes.sort_by_key(|n| n.id);
        let mut handles: Vec<HandleRecord> = t
            .handles
            .iter()
            .map(|(&fh, o)| HandleRecord {
                fh,
                node: o.node,
                flags: o.flags,
                dir: o.dir,
            })
            .collect();
        handles.sort_by_key(|h| h.fh);
        Ok(Snapshot {
            nodes,
            handles,
            next_node: t.next_node,
            next_handle: t.next_handle,
        })
    }

    /// The path of an inner inode relative to the share, if the path still leads to the same
    /// file (same device and inode as the inner filesystem's descriptor). A deleted file's
    /// name (the kernel's "... (deleted)") leads nowhere, or to another file.
    fn confirmed_path(&self, paths: &PathFn, root: &Path, inner: u64) -> Option<Vec<u8>> {
        match self.try_path(paths, root, inner) {
            Ok(p) => Some(p),
            Err(why) => {
                log::warn!("migration: inode {inner} cannot be named: {why}");
                None
            }
        }
    }

    fn try_path(&self, paths: &PathFn, root: &Path, inner: u64) -> Result<Vec<u8>, String> {
        let path = paths(inner).map_err(|e| format!("reading its name: {e}"))?;
        let meta =
            std::fs::symlink_metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let (st, _) = self
            .inner
            .getattr(&Context::default(), inner, None)
            .map_err(|e| format!("stat: {e}"))?;
        if meta.dev() != st.st_dev || meta.ino() != st.st_ino {
            return Err(format!("{} is another file now", path.display()));
        }
        let rel = path
            .strip_prefix(root)
            .map_err(|_| format!("{} is outside {}", path.display(), root.display()))?;
        let rel = rel.as_os_str().as_bytes();
        super::format::check_path(0, rel).map_err(|e| e.to_string())?;
        Ok(rel.to_vec())
    }

    /// Re-creates the guest's nodes and handles from a saved state: each node is looked up
    /// again component by component from the root (never following a symlink), each handle
    /// re-opened with its flags (less O_CREAT, O_EXCL and O_TRUNC). Only lookups and opens: the
    /// share is not changed. With [`MigrationOnError::Abort`] the first failure undoes
    /// everything done so far and is returned; with `GuestError` the node or handle is kept
    /// broken (EIO).
    pub fn restore(
        &self,
        nodes: &[NodeRecord],
        handles: &[HandleRecord],
        next_node: u64,
        next_handle: u64,
    ) -> Result<(), TrackError> {
        {
            let t = self.read();
            let held = t.nodes.len() + t.handles.len();
            if held != 0 {
                return Err(TrackError::NotFresh(held));
            }
        }
        let ctx = Context::default();
        let mut made: IdMap<u64, Node> = id_map_with_capacity(nodes.len());
        let mut opened: IdMap<u64, Open> = id_map_with_capacity(handles.len());
        let undo = |made: &IdMap<u64, Node>, opened: &IdMap<u64, Open>| {
            for o in opened.values() {
                if let (Some(h), Some(n)) = (o.inner, made.get(&o.node).map(|n| n.inner)) {
                    if o.dir {
                        let _ = self.inner.releasedir(&ctx, n, 0, h);
                    } else {
                        let _ = self.inner.release(&ctx, n, 0, h, false, false, None);
                    }
                } else if let (Some(h), true) = (o.inner, o.node == ROOT) {
                    let _ = self.inner.releasedir(&ctx, ROOT, 0, h);
                }
            }
            for n in made.values() {
                if n.inner != 0 {
                    self.inner.forget(&ctx, n.inner, n.inner_refs);
                }
            }
        };
        for rec in nodes {
            let found = match &rec.path {
                Some(p) => self.find(&ctx, p, rec.kind),
                None => Err(io::Error::from_raw_os_error(libc::ENOENT)),
            };
            let inner = match found {
                Ok(inner) => inner,
                Err(source) if self.on_error == MigrationOnError::Abort => {
                    undo(&made, &opened);
                    return Err(TrackError::Vanished {
                        node: rec.id,
                        path: rec
                            .path
                            .as_ref()
                            .map_or("deleted on the source".into(), |p| {
                                String::from_utf8_lossy(p).into_owned()
                            }),
                        source,
                    });
                }
                Err(e) => {
                    log::warn!(
                        "migration: node {} ({}) is gone: {e}; the guest gets EIO on it",
                        rec.id,
                        rec.path
                            .as_ref()
                            .map_or("deleted on the source".into(), |p| {
                                String::from_utf8_lossy(p).into_owned()
                            })
                    );
                    0
                }
            };
            made.insert(
                rec.id,
                Node {
                    inner,
                    lookups: rec.lookups,
                    inner_refs: u64::from(inner != 0),
                    generation: rec.generation,
                    kind: rec.kind,
                    handles: 0,
                },
            );
        }
        for rec in handles {
            let node_inner = if rec.node == ROOT {
                ROOT
            } else {
                made.get(&rec.node).map_or(0, |n| n.inner)
            };
            let reopened = if node_inner == 0 {
                Err(eio())
            } else if rec.dir {
                // A directory handle only ever lists: nothing the stream says may add to that.
                self.inner
                    .opendir(
                        &ctx,
                        node_inner,
                        (libc::O_RDONLY | libc::O_DIRECTORY) as u32,
                    )
                    .map(|(h, _)| h)
            } else {
                // Re-opening must not create, truncate or make a file: those flags did their
                // work on the source.
                let strip = libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC | libc::O_TMPFILE;
                let flags = rec.flags & !(strip as u32);
                self.inner
                    .open(&ctx, node_inner, flags, 0)
                    .map(|(h, _, _)| h)
            };
            let inner = match reopened {
                Ok(Some(h)) => Some(h),
                Ok(None) | Err(_) if self.on_error == MigrationOnError::GuestError => None,
                Ok(None) => {
                    undo(&made, &opened);
                    return Err(TrackError::Reopen {
                        fh: rec.fh,
                        node: rec.node,
                        source: io::Error::other("the filesystem gave no handle"),
                    });
                }
                Err(source) => {
                    undo(&made, &opened);
                    return Err(TrackError::Reopen {
                        fh: rec.fh,
                        node: rec.node,
                        source,
                    });
                }
            };
            if let Some(n) = made.get_mut(&rec.node) {
                n.handles += 1;
            }
            opened.insert(
                rec.fh,
                Open {
                    inner,
                    node: rec.node,
                    flags: rec.flags,
                    dir: rec.dir,
                },
            );
        }
        let mut t = self.write();
        for (&id, n) in &made {
            if n.inner != 0 {
                t.by_inner.entry(n.inner).or_insert(id);
            }
        }
        t.nodes = made;
        t.handles = opened;
        t.next_node = t.next_node.max(next_node);
        t.next_handle = t.next_handle.max(next_handle);
        Ok(())
    }

    /// Looks `path` up from the root, one component at a time; the intermediate directories'
    /// lookups are forgotten again. The last component must be of `kind`.
    fn find(&self, ctx: &Context, path: &[u8], kind: Kind) -> io::Result<u64> {
        let mut cur = ROOT;
        let mut parts = path.split(|&b| b == b'/').peekable();
        while let Some(part) = parts.next() {
            let name = CString::new(part).map_err(|_| ebadf())?;
            let looked = self.inner.lookup(ctx, cur, &name);
            if cur != ROOT {
                self.inner.forget(ctx, cur, 1);
            }
            let entry = looked?;
            cur = entry.inode;
            if parts.peek().is_none() && kind_of(entry.attr.st_mode) != kind {
                self.inner.forget(ctx, cur, 1);
                return Err(io::Error::from_raw_os_error(libc::ESTALE));
            }
        }
        Ok(cur)
    }

    fn forget_inner(&self, ctx: &Context, guest: u64, count: u64) {
        if let Some((inner, refs)) = self.drop_lookups(guest, count) {
            self.inner.forget(ctx, inner, refs);
        }
    }

    fn entry(&self, r: io::Result<Entry>) -> io::Result<Entry> {
        let mut e = r?;
        self.register(&mut e);
        Ok(e)
    }
}

mod filesystem;

#[cfg(test)]
mod tests;
