//! Building a share's filesystem: the host directory a guest sees through virtio-fs.
//!
//! A share is a host directory served by a [`PassthroughFs`]. [`new_passthrough`] turns the
//! user's [`ShareOptions`] into a ready (imported) passthrough filesystem; the per-share policy
//! (read-only, no device nodes, no ioctls) is layered on top of it by [`policy::SharePolicy`], so
//! that the policy is enforced at the `FileSystem` trait whatever filesystem sits underneath.

pub mod adapter;
mod bounce;
pub mod confine;
pub mod policy;
pub mod special;
mod xattr_path;

use std::fs::File;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use fuse_backend_rs::passthrough::{self, PassthroughFs};

pub use adapter::FuseAdapter;
pub use policy::SharePolicy;
pub use special::{Emulation, Ownership, SpecialFiles};

pub use settings::{CachePolicy, ParseCachePolicyError};

/// The passthrough filesystem's own name for a cache policy.
fn passthrough_cache(policy: CachePolicy) -> passthrough::CachePolicy {
    match policy {
        CachePolicy::Never => passthrough::CachePolicy::Never,
        CachePolicy::Auto => passthrough::CachePolicy::Auto,
        CachePolicy::Always => passthrough::CachePolicy::Always,
    }
}

/// What the user asked for one share.
///
/// There is deliberately no `Default`: a share without a root directory makes no sense. Use
/// [`ShareOptions::new`], which fills in the defaults (cache `auto`, xattrs on, everything else
/// off).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareOptions {
    /// Host directory exported to the guest. Resolved against the current directory when the
    /// filesystem imports it (at creation and again on FUSE `destroy`), so prefer an absolute path.
    pub root: PathBuf,
    /// Refuse every modification (see [`policy::SharePolicy`]).
    pub readonly: bool,
    /// Guest cache policy.
    pub cache: CachePolicy,
    /// Serve extended attributes.
    pub xattr: bool,
    /// Let the guest use writeback caching (only honoured for writable shares with caching on).
    pub writeback: bool,
}

impl ShareOptions {
    /// Options for sharing `root` with the defaults.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        ShareOptions {
            root: root.into(),
            readonly: false,
            cache: CachePolicy::Auto,
            xattr: true,
            writeback: false,
        }
    }
}

impl ShareOptions {
    /// The passthrough options for serving `root` as `settings` say. The passthrough always
    /// serves xattrs: the emulation of special files keeps its records there, and it alone
    /// decides whether the guest's own xattr requests go through (`settings.xattr`).
    pub fn for_settings(root: impl Into<PathBuf>, settings: &settings::DeviceSettings) -> Self {
        ShareOptions {
            root: root.into(),
            readonly: settings.readonly,
            cache: settings.cache,
            xattr: true,
            writeback: false,
        }
    }
}

/// Why a share's filesystem could not be built. Every variant names the root, as a daemon may
/// serve several shares.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The root could not be stat'ed (missing, permission denied, ...).
    #[error("share root {}: {source}", path.display())]
    RootAccess {
        /// The share root.
        path: PathBuf,
        /// The error from stat(2).
        source: io::Error,
    },
    /// The root exists but is no directory.
    #[error("share root {} is not a directory", path.display())]
    RootNotDirectory {
        /// The share root.
        path: PathBuf,
    },
    /// The root cannot be passed to the passthrough filesystem, which takes a UTF-8 string
    /// without NUL bytes.
    #[error("share root {} is not valid UTF-8 or contains a NUL byte", path.display())]
    RootNotRepresentable {
        /// The share root.
        path: PathBuf,
    },
    /// `PassthroughFs::new` failed (e.g. /proc/self/fd not available).
    #[error("creating the passthrough filesystem for share root {}: {source}", path.display())]
    Create {
        /// The share root.
        path: PathBuf,
        /// The error from the passthrough filesystem.
        source: io::Error,
    },
    /// Importing (opening) the root into the passthrough filesystem failed.
    #[error("importing share root {}: {source}", path.display())]
    Import {
        /// The share root.
        path: PathBuf,
        /// The error from the passthrough filesystem.
        source: io::Error,
    },
}

/// Build and import the passthrough filesystem for a share.
///
/// The root is checked up front so that a typo gives a clear error at startup instead of an
/// opaque failure at the guest's first `FUSE_INIT`. `inode_file_handles` stays off because it
/// needs `CAP_DAC_READ_SEARCH`, which a sandboxed device should not hold. Writeback is never
/// asked for on a read-only share: there is nothing to write back.
///
/// Note that importing clears the process umask (the guest's mode bits must reach the host
/// unchanged); the passthrough filesystem does that, not this function.
pub fn new_passthrough(opts: &ShareOptions) -> Result<PassthroughFs, Error> {
    let fs = new_passthrough_unimported(opts)?;
    fs.import().map_err(|source| Error::Import {
        path: opts.root.clone(),
        source,
    })?;
    Ok(fs)
}

/// Build the passthrough filesystem for a share without importing its root.
///
/// For a jailed worker: `PassthroughFs::new` opens `/proc/self/fd` and `/proc/self/mountinfo`
/// by literal path, which the worker can only reach before it chroots into the share, while
/// the root (`opts.root`, typically `/`) must be opened after. The caller runs
/// `PassthroughFs::import` once its root is in place. The same checks as [`new_passthrough`]
/// apply to `opts.root` as it resolves now.
pub fn new_passthrough_unimported(opts: &ShareOptions) -> Result<PassthroughFs, Error> {
    let path = &opts.root;
    let meta = std::fs::metadata(path).map_err(|source| Error::RootAccess {
        path: path.clone(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(Error::RootNotDirectory { path: path.clone() });
    }
    // `PassthroughFs::import` panics on a NUL byte, so reject it here.
    let root_dir = path
        .to_str()
        .filter(|s| !s.contains('\0'))
        .ok_or_else(|| Error::RootNotRepresentable { path: path.clone() })?
        .to_owned();

    let timeout = opts.cache.timeout();
    let cfg = passthrough::Config {
        root_dir,
        cache_policy: passthrough_cache(opts.cache),
        entry_timeout: timeout,
        attr_timeout: timeout,
        xattr: opts.xattr,
        do_import: true,
        writeback: opts.writeback && !opts.readonly,
        inode_file_handles: false,
        ..Default::default()
    };

    PassthroughFs::new(cfg).map_err(|source| Error::Create {
        path: path.clone(),
        source,
    })
}

/// Open a share's root directory (`O_DIRECTORY | O_RDONLY | O_CLOEXEC`).
///
/// The server keeps this descriptor to `syncfs(2)` the share's filesystem; `O_DIRECTORY` makes
/// the open fail if the root was swapped for something else, and `O_CLOEXEC` (std always sets it)
/// keeps it out of any child.
pub fn open_share_root(path: impl AsRef<Path>) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_options_defaults() {
        let o = ShareOptions::new("/srv");
        assert_eq!(o.root, PathBuf::from("/srv"));
        assert_eq!(o.cache, CachePolicy::Auto);
        assert!(o.xattr);
        assert!(!o.readonly && !o.writeback);
    }

    /// `PassthroughFs` is not `Debug`, so `unwrap_err` is out.
    fn build_err(o: &ShareOptions) -> Error {
        match new_passthrough(o) {
            Ok(_) => panic!("share root {} was accepted", o.root.display()),
            Err(e) => e,
        }
    }

    #[test]
    fn new_passthrough_missing_root() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err = build_err(&ShareOptions::new(&missing));
        assert!(matches!(err, Error::RootAccess { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains(&*missing.to_string_lossy()), "{msg}");
    }

    #[test]
    fn new_passthrough_regular_file_root() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let err = build_err(&ShareOptions::new(file.path()));
        assert!(matches!(err, Error::RootNotDirectory { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains(&*file.path().to_string_lossy()), "{msg}");
        assert!(msg.contains("not a directory"), "{msg}");
    }

    #[test]
    fn new_passthrough_directory_root() {
        let dir = tempfile::tempdir().unwrap();
        for cache in [CachePolicy::Never, CachePolicy::Auto, CachePolicy::Always] {
            let mut o = ShareOptions::new(dir.path());
            o.cache = cache;
            o.writeback = true;
            new_passthrough(&o).unwrap();
        }
    }

    #[test]
    fn open_share_root_only_opens_directories() {
        let dir = tempfile::tempdir().unwrap();
        open_share_root(dir.path()).unwrap();
        let file = tempfile::NamedTempFile::new().unwrap();
        let err = open_share_root(file.path()).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOTDIR));
    }
}
