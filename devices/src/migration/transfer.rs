//! SAVE and LOAD of the device state over the frontend's descriptor (vhost-user
//! SET_DEVICE_STATE_FD / CHECK_DEVICE_STATE).
//!
//! SET_DEVICE_STATE_FD must not block, so the transfer runs on its own thread; CHECK_DEVICE_STATE
//! waits for it and reports its result. SAVE writes the state and closes the descriptor (the
//! frontend reads to EOF). LOAD reads to EOF (bounded), checks every field, and only then
//! re-creates the nodes and handles and continues the FUSE session; any error leaves the share
//! and the device as they were, and makes CHECK_DEVICE_STATE fail.

use std::fs::File;
use std::io;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use fuse_backend_rs::api::filesystem::FileSystem;
use thiserror::Error;
use vhost::vhost_user::message::{VhostTransferStateDirection, VhostTransferStatePhase};

use super::format::{DaxRecord, DeviceState, StateError};
use super::tracked::{TrackError, Tracked};
use crate::fuse::server::{Server, SessionError};

/// Why a transfer failed.
#[derive(Debug, Error)]
pub enum MigrationError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Track(#[from] TrackError),
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error("DAX mappings cannot be restored (the destination's window is empty); unmap before migrating")]
    DaxMappings,
    #[error("no device state transfer was started")]
    NoTransfer,
    #[error("a device state transfer is already running")]
    Busy,
    #[error("only the STOPPED phase is supported")]
    Phase,
    #[error("the transfer thread: {0}")]
    Thread(String),
}

/// One share's save and load.
pub trait StateHandler: Send + Sync {
    fn save(&self) -> Result<DeviceState, MigrationError>;
    fn load(&self, state: DeviceState) -> Result<(), MigrationError>;
}

/// The state of a share served by a [`Server`] over a [`Tracked`] filesystem.
pub struct ShareState<X> {
    server: Arc<Server<Tracked<X>>>,
}

impl<X> ShareState<X> {
    pub fn new(server: Arc<Server<Tracked<X>>>) -> Self {
        ShareState { server }
    }
}

impl<X> StateHandler for ShareState<X>
where
    X: FileSystem<Inode = u64, Handle = u64> + Send + Sync,
{
    fn save(&self) -> Result<DeviceState, MigrationError> {
        let fuse = self.server.session();
        let snap = self.server.filesystem().snapshot()?;
        let dax = self
            .server
            .dax()
            .map(|d| d.mappings())
            .unwrap_or_default()
            .into_iter()
            .map(|m| DaxRecord {
                moffset: m.moffset,
                len: m.len,
                foffset: m.foffset,
                node: m.nodeid,
                writable: m.writable,
            })
            .collect();
        let state = DeviceState {
            fuse,
            next_node: snap.next_node,
            next_handle: snap.next_handle,
            nodes: snap.nodes,
            handles: snap.handles,
            dax,
        };
        state.validate()?;
        Ok(state)
    }

    fn load(&self, state: DeviceState) -> Result<(), MigrationError> {
        state.validate()?;
        if !state.dax.is_empty() {
            return Err(MigrationError::DaxMappings);
        }
        self.server.check_session(&state.fuse)?;
        self.server.filesystem().restore(
            &state.nodes,
            &state.handles,
            state.next_node,
            state.next_handle,
        )?;
        self.server.commit_session(&state.fuse);
        Ok(())
    }
}

/// The transfer in flight, for the vhost-user backend.
pub struct Transfer {
    handler: Arc<dyn StateHandler>,
    job: Mutex<Option<JoinHandle<Result<(), MigrationError>>>>,
}

impl Transfer {
    pub fn new(handler: Arc<dyn StateHandler>) -> Self {
        Transfer {
            handler,
            job: Mutex::new(None),
        }
    }

    /// SET_DEVICE_STATE_FD: starts the transfer on its own thread and returns at once. Never
    /// hands a descriptor back (the frontend's is used).
    pub fn start(
        &self,
        direction: VhostTransferStateDirection,
        phase: VhostTransferStatePhase,
        mut file: File,
    ) -> io::Result<Option<File>> {
        log::debug!("migration: SET_DEVICE_STATE_FD {direction:?} {phase:?}");
        if phase != VhostTransferStatePhase::STOPPED {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                MigrationError::Phase.to_string(),
            ));
        }
        let mut job = self.job.lock().unwrap_or_else(|p| p.into_inner());
        if job.as_ref().is_some_and(|j| !j.is_finished()) {
            log::error!("migration: {}", MigrationError::Busy);
            return Err(io::Error::other(MigrationError::Busy.to_string()));
        }
        let handler = self.handler.clone();
        let thread = std::thread::Builder::new().name("fsjail-migrate".into());
        let spawned = match direction {
            VhostTransferStateDirection::SAVE => thread.spawn(move || {
                let state = handler.save()?;
                log::info!(
                    "migration: saving {} nodes, {} handles",
                    state.nodes.len(),
                    state.handles.len()
                );
                state.write_to(&mut file)?;
                Ok(())
            }),
            VhostTransferStateDirection::LOAD => thread.spawn(move || {
                let state = DeviceState::read_from(&mut file)?;
                let (n, h) = (state.nodes.len(), state.handles.len());
                handler.load(state)?;
                log::info!("migration: loaded {n} nodes, {h} handles");
                Ok(())
            }),
        };
        match spawned {
            Ok(j) => *job = Some(j),
            Err(e) => {
                log::error!("migration: starting the transfer thread: {e}");
                return Err(e);
            }
        }
        Ok(None)
    }

    /// CHECK_DEVICE_STATE: waits for the transfer and reports how it ended.
    pub fn check(&self) -> io::Result<()> {
        let job = self.job.lock().unwrap_or_else(|p| p.into_inner()).take();
        let result = match job {
            None => Err(MigrationError::NoTransfer),
            Some(j) => j
                .join()
                .unwrap_or_else(|_| Err(MigrationError::Thread("panicked".into()))),
        };
        result.map_err(|e| {
            log::error!("migration: {e}");
            io::Error::other(e.to_string())
        })
    }
}
