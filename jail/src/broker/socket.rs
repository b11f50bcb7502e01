//! The vhost-user listening socket of a share, bound by the broker outside the jail.
//!
//! The broker keeps the listener for the life of the share, so a restarted worker takes over
//! the same socket and a frontend that reconnects finds it. A file already at the path is
//! replaced only if it is a socket nobody listens on (a leftover of a killed broker); a live
//! one belongs to someone else and is an error. On the way out the broker removes the path
//! only if it still is the socket it bound (same device and inode).

use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum SocketError {
    #[error("socket {path:?}: a process is listening on it (another broker?)")]
    InUse { path: PathBuf },
    #[error("socket {path:?}: exists and is not a socket")]
    NotASocket { path: PathBuf },
    #[error("socket {path:?}: removing the stale socket: {source}")]
    RemoveStale { path: PathBuf, source: io::Error },
    #[error("socket {path:?}: {source}")]
    Bind { path: PathBuf, source: io::Error },
}

#[derive(Debug)]
pub struct BoundSocket {
    path: PathBuf,
    listener: OwnedFd,
    dev: u64,
    ino: u64,
    /// Bound by our caller (`fsjail serve --fd`, or serve's own `--socket-path`): the broker
    /// uses it but never removes its path.
    inherited: bool,
}

impl BoundSocket {
    /// A listener our caller bound and keeps the path of; `path` only names it in logs.
    pub fn inherited(listener: OwnedFd, path: &Path) -> BoundSocket {
        BoundSocket {
            path: path.to_path_buf(),
            listener,
            dev: 0,
            ino: 0,
            inherited: true,
        }
    }

    pub fn bind(path: &Path) -> Result<BoundSocket, SocketError> {
        remove_stale(path)?;
        let err = |source| SocketError::Bind {
            path: path.to_path_buf(),
            source,
        };
        let listener = UnixListener::bind(path).map_err(err)?;
        let meta = fs::symlink_metadata(path).map_err(err)?;
        Ok(BoundSocket {
            path: path.to_path_buf(),
            listener: OwnedFd::from(listener),
            inherited: false,
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }

    /// The listening socket, handed to each worker the share starts.
    pub fn listener(&self) -> &OwnedFd {
        &self.listener
    }

    /// Unlinks the path if it is still our socket (it may have been replaced behind our back;
    /// then it is not ours to remove), and closes the listener.
    pub fn remove(self) {
        if self.inherited {
            return;
        }
        if let Ok(meta) = fs::symlink_metadata(&self.path) {
            if meta.dev() == self.dev && meta.ino() == self.ino {
                if let Err(e) = fs::remove_file(&self.path) {
                    log::warn!("removing socket {:?}: {e}", self.path);
                }
            }
        }
    }
}

fn remove_stale(path: &Path) -> Result<(), SocketError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(SocketError::Bind {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    if !meta.file_type().is_socket() {
        return Err(SocketError::NotASocket {
            path: path.to_path_buf(),
        });
    }
    // Connecting tells a live listener from a leftover: only a leftover refuses.
    match UnixStream::connect(path) {
        Ok(_) => Err(SocketError::InUse {
            path: path.to_path_buf(),
        }),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => fs::remove_file(path)
            .or_else(|e| {
                if e.kind() == io::ErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(e)
                }
            })
            .map_err(|source| SocketError::RemoveStale {
                path: path.to_path_buf(),
                source,
            }),
        Err(source) => Err(SocketError::Bind {
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_a_stale_socket_but_not_a_live_one_or_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        drop(UnixListener::bind(&path).unwrap()); // leaves a stale socket file
        let bound = BoundSocket::bind(&path).unwrap();
        assert!(matches!(
            BoundSocket::bind(&path),
            Err(SocketError::InUse { .. })
        ));
        UnixStream::connect(&path).unwrap();
        bound.remove();
        assert!(!path.exists());

        fs::write(&path, b"x").unwrap();
        assert!(matches!(
            BoundSocket::bind(&path),
            Err(SocketError::NotASocket { .. })
        ));
        assert!(path.exists());
    }

    #[test]
    fn remove_leaves_a_replaced_path_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let bound = BoundSocket::bind(&path).unwrap();
        fs::remove_file(&path).unwrap();
        fs::write(&path, b"someone else's").unwrap();
        bound.remove();
        assert_eq!(fs::read(&path).unwrap(), b"someone else's");
    }
}
