//! The vhost-user side of the device: feature negotiation with the frontend, one thread per
//! request queue, and the loop that moves descriptor chains through the FUSE server.

pub mod config;
pub mod dirty_log;
mod memory;
mod order;
mod poll;
mod pool;
#[cfg(test)]
mod pool_tests;
mod queue;
#[cfg(test)]
mod queue_tests;
mod route;

pub use pool::MAX_POOL_THREADS;

/// Guest memory with a dirty-page bitmap per region, for migration (see [`dirty_log`]).
pub type GuestMem = GuestMemoryMmap<dirty_log::LogBitmap>;
/// A queue over [`GuestMem`].
pub type Vring = VringRwLock<GuestMemoryAtomic<GuestMem>>;

/// VHOST_F_LOG_ALL: the frontend turns it on while migration copies guest memory. We log
/// whenever a log is installed (see [`dirty_log`]), so offering it is all it takes.
const VHOST_F_LOG_ALL: u64 = 26;

use std::io;
// Every lock here guards a value replaced or pushed in one step, so a holder that panicked
// cannot have left it half-written: a poisoned lock is taken as it is.
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use fuse_backend_rs::api::filesystem::FileSystem;
use log::{error, info, warn};
use thiserror::Error;
use vhost::vhost_user::message::{
    VhostUserProtocolFeatures, VhostUserShMemConfig, VhostUserVirtioFeatures,
};
use vhost::vhost_user::{Backend, Listener};
use vhost_user_backend::{VhostUserBackend, VhostUserDaemon, VringRwLock};
use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::virtio_ring::{VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC};
use vm_memory::{GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::event::{
    new_event_consumer_and_notifier, EventConsumer, EventFlag, EventNotifier,
};

use crate::fuse::server::Server;

/// Queue 0 is virtio-fs's high-priority queue (FORGET, INTERRUPT); request queues follow.
pub const HIPRIO_QUEUES: usize = 1;
/// Largest ring size we accept from the frontend (the virtio maximum for split rings).
pub const MAX_QUEUE_SIZE: usize = 32768;
pub use settings::MAX_REQUEST_QUEUES;

#[derive(Debug, Error)]
pub enum Error {
    #[error("num_request_queues {0}")]
    BadQueueCount(#[from] settings::LimitError),
    #[error("creating the exit event for queue thread {0}: {1}")]
    ExitEvent(usize, io::Error),
    #[error("setting up the vhost-user daemon: {0}")]
    Daemon(vhost_user_backend::Error),
    #[error("accepting a vhost-user frontend: {0}")]
    Accept(vhost_user_backend::Error),
    #[error("serving the vhost-user frontend: {0}")]
    Serve(vhost_user_backend::Error),
    #[error("--thread-pool-size must be at most {MAX_POOL_THREADS}, not {0}")]
    BadPoolSize(usize),
    #[error("starting the request pool: {0}")]
    PoolThread(io::Error),
}

/// One share's virtio-fs device, shared by the vhost-user message thread and the queue threads.
pub struct FsBackend<F> {
    server: Arc<Server<F>>,
    num_request_queues: usize,
    event_idx: std::sync::atomic::AtomicBool,
    mem: RwLock<Option<GuestMemoryAtomic<GuestMem>>>,
    /// Our copy of each queue thread's exit notifier; the consumers went to the threads.
    exit_notifiers: Mutex<Vec<EventNotifier>>,
    /// Device state transfer (DEVICE_STATE), when the share can be migrated.
    migration: Option<crate::migration::transfer::Transfer>,
    /// The configuration space GET_CONFIG answers with; `None` keeps CONFIG off.
    config: Option<config::FsConfig>,
    /// The share's request pool, when it has one (see [`FsBackend::with_tuning`]).
    pool: Option<pool::Pool>,
    /// One poller per queue (the hiprio one never polls), when polling is on.
    pollers: Vec<poll::Poller>,
}

impl<F> FsBackend<F>
where
    F: FileSystem<Inode = u64, Handle = u64> + Send + Sync + 'static,
{
    pub fn new(server: Arc<Server<F>>, num_request_queues: usize) -> Result<Self, Error> {
        settings::check_request_queues(num_request_queues)?;
        Ok(FsBackend {
            server,
            num_request_queues,
            event_idx: std::sync::atomic::AtomicBool::new(false),
            mem: RwLock::new(None),
            exit_notifiers: Mutex::new(Vec::new()),
            migration: None,
            config: None,
            pool: None,
            pollers: Vec::new(),
        })
    }

    /// Offers the DEVICE_STATE protocol feature and saves and loads the share's state with
    /// `handler` (see `crate::migration`).
    pub fn with_migration(
        mut self,
        handler: Arc<dyn crate::migration::transfer::StateHandler>,
    ) -> Self {
        self.migration = Some(crate::migration::transfer::Transfer::new(handler));
        self
    }

    /// Offers protocol feature CONFIG and answers GET_CONFIG with `tag` (virtiofsd's `--tag`),
    /// for frontends that read the tag from the backend, such as QEMU's generic
    /// `vhost-user-test-device-pci`. Off unless asked: QEMU 7.1 to 8.0 crash on CONFIG.
    pub fn with_config_tag(mut self, tag: &str) -> Result<Self, config::TagError> {
        self.config = Some(config::FsConfig::new(tag, self.num_request_queues)?);
        Ok(self)
    }

    /// Adds a request pool of `pool_threads` threads (0: none, every request is served on its
    /// queue's thread) and adaptive polling of the request queues for up to `poll_max_us`
    /// microseconds after serving (0: off). The pool threads start here: call this before the
    /// worker installs its seccomp filter, like every other thread it has.
    pub fn with_tuning(mut self, pool_threads: usize, poll_max_us: u32) -> Result<Self, Error> {
        if pool_threads > MAX_POOL_THREADS {
            return Err(Error::BadPoolSize(pool_threads));
        }
        if pool_threads > 0 {
            self.pool = Some(pool::Pool::new(pool_threads).map_err(Error::PoolThread)?);
        }
        self.pollers = if poll_max_us > 0 {
            (0..HIPRIO_QUEUES + self.num_request_queues)
                .map(|q| poll::Poller::new(if q < HIPRIO_QUEUES { 0 } else { poll_max_us }))
                .collect()
        } else {
            Vec::new()
        };
        Ok(self)
    }

    /// Threads in the request pool (0: none).
    pub fn pool_size(&self) -> usize {
        self.pool.as_ref().map_or(0, |p| p.size())
    }

    /// Waits until the request pool served everything handed to it.
    fn drain_pool(&self) {
        if let Some(p) = &self.pool {
            p.wait_idle();
        }
    }

    /// How many queue threads the daemon runs: one per request queue, the first also taking the
    /// hiprio queue.
    fn thread_count(&self) -> usize {
        self.num_request_queues
    }

    /// The frontend went away: its window went with it, so forget every DAX mapping and drop
    /// the backend-request channel.
    pub fn disconnect(&self) {
        if let Some(dax) = self.server.dax() {
            dax.disconnect();
        }
    }

    /// Wakes every queue thread so it leaves its event loop.
    pub fn signal_exit(&self) {
        let notifiers = self
            .exit_notifiers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for notifier in notifiers.iter() {
            if let Err(e) = notifier.notify() {
                warn!("waking a queue thread to exit: {e}");
            }
        }
    }
}

impl<F> VhostUserBackend for FsBackend<F>
where
    F: FileSystem<Inode = u64, Handle = u64> + Send + Sync + 'static,
{
    type Bitmap = dirty_log::LogBitmap;
    type Vring = Vring;

    fn num_queues(&self) -> usize {
        HIPRIO_QUEUES + self.num_request_queues
    }

    fn max_queue_size(&self) -> usize {
        MAX_QUEUE_SIZE
    }

    fn features(&self) -> u64 {
        (1 << VIRTIO_F_VERSION_1)
            | (1 << VIRTIO_RING_F_INDIRECT_DESC)
            | (1 << VIRTIO_RING_F_EVENT_IDX)
            | (1 << VHOST_F_LOG_ALL)
            | VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits()
    }

    /// CONFIG only with a configured tag: QEMU 7.1 to 8.0 crash when a virtio-fs backend
    /// offers it. SHMEM (the DAX window) only when the share has one.
    fn protocol_features(&self) -> VhostUserProtocolFeatures {
        let mut features = VhostUserProtocolFeatures::MQ
            | VhostUserProtocolFeatures::REPLY_ACK
            | VhostUserProtocolFeatures::BACKEND_REQ
            | VhostUserProtocolFeatures::BACKEND_SEND_FD
            | VhostUserProtocolFeatures::LOG_SHMFD;
        if self.migration.is_some() {
            features |= VhostUserProtocolFeatures::DEVICE_STATE;
        }
        if self.config.is_some() {
            features |= VhostUserProtocolFeatures::CONFIG;
        }
        if self.server.dax().is_some() {
            features | VhostUserProtocolFeatures::SHMEM
        } else {
            features
        }
    }

    /// One region, the DAX window (virtio-fs's cache, shmid 0). Only asked when SHMEM was
    /// negotiated, which needs DAX on.
    fn get_shmem_config(&self) -> io::Result<VhostUserShMemConfig> {
        match self.server.dax() {
            Some(dax) => Ok(VhostUserShMemConfig::new(1, &[dax.window().len()])),
            None => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "this share has no DAX window",
            )),
        }
    }

    /// SET_DEVICE_STATE_FD: the transfer runs on its own thread (this must not block).
    fn set_device_state_fd(
        &self,
        direction: vhost::vhost_user::message::VhostTransferStateDirection,
        phase: vhost::vhost_user::message::VhostTransferStatePhase,
        file: std::fs::File,
    ) -> io::Result<Option<std::fs::File>> {
        match &self.migration {
            Some(t) => t.start(direction, phase, file),
            None => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "this share cannot be migrated",
            )),
        }
    }

    /// CHECK_DEVICE_STATE: how the last transfer ended.
    fn check_device_state(&self) -> io::Result<()> {
        match &self.migration {
            Some(t) => t.check(),
            None => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "this share cannot be migrated",
            )),
        }
    }

    /// The virtio-fs configuration space (only asked when CONFIG was offered). A range outside
    /// it gets an empty answer, which the frontend takes as a failure.
    fn get_config(&self, offset: u32, size: u32) -> Vec<u8> {
        match &self.config {
            Some(c) => c.read(offset, size).unwrap_or_default(),
            None => Vec::new(),
        }
    }

    /// RESET_DEVICE: the frontend dropped the window with the device, so the table goes too.
    fn reset_device(&self) {
        if let Some(dax) = self.server.dax() {
            dax.reset();
        }
    }

    /// The channel SHMEM_MAP / SHMEM_UNMAP go over. Without DAX nothing is ever sent on it.
    fn set_backend_req_fd(&self, backend: Backend) {
        if let Some(dax) = self.server.dax() {
            dax.connect(Arc::new(backend));
        }
    }

    /// GET_VRING_BASE: the ring is stopped. Requests still in the pool are finished first, so
    /// every chain popped before the stop is in the used ring when the frontend reads the
    /// ring's state (and none is written after).
    fn stop_vring(&self, _queue_index: u32) -> io::Result<()> {
        self.drain_pool();
        Ok(())
    }

    fn set_event_idx(&self, enabled: bool) {
        self.event_idx
            .store(enabled, std::sync::atomic::Ordering::Release);
    }

    /// Refuses a table with a region past the end of its file (see [`memory::check_backing`]):
    /// the error ends the connection before any later message touches the memory, and the
    /// queue threads get no memory to touch.
    ///
    /// The queue threads get a copy of the table, never the crate's shared `mem`: the crate
    /// installs a new table in `mem` before it asks us, so a queue thread still serving from
    /// `mem` would read a refused region (SIGBUS past the end of its file) in that window. The
    /// `vhost_user_messages` fuzz target found it. The copy shares the regions (and their
    /// dirty bitmaps), so a table stays mapped while a thread still uses it.
    fn update_memory(&self, mem: GuestMemoryAtomic<GuestMem>) -> io::Result<()> {
        let table = vm_memory::GuestAddressSpace::memory(&mem).into_inner();
        let checked = memory::check_backing(&table);
        let mem = match checked {
            Ok(()) => Some(GuestMemoryAtomic::from(table)),
            Err(ref e) => {
                error!("refusing the frontend's guest memory table: {e}");
                None
            }
        };
        *self.mem.write().unwrap_or_else(PoisonError::into_inner) = mem;
        checked
    }

    /// Thread 0 serves the hiprio queue and the first request queue; thread i serves request
    /// queue i.
    fn queues_per_thread(&self) -> Vec<u64> {
        (0..self.thread_count())
            .map(|t| {
                if t == 0 {
                    0b11
                } else {
                    1u64 << (t + HIPRIO_QUEUES)
                }
            })
            .collect()
    }

    fn exit_event(&self, thread_index: usize) -> Option<(EventConsumer, EventNotifier)> {
        let pair = new_event_consumer_and_notifier(EventFlag::NONBLOCK | EventFlag::CLOEXEC)
            .map_err(|e| Error::ExitEvent(thread_index, e));
        let (consumer, notifier) = match pair {
            Ok(p) => p,
            Err(e) => {
                error!("{e}");
                return None;
            }
        };
        let ours = match notifier.try_clone() {
            Ok(n) => n,
            Err(e) => {
                error!("{}", Error::ExitEvent(thread_index, e));
                return None;
            }
        };
        self.exit_notifiers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(ours);
        Some((consumer, notifier))
    }

    fn handle_event(
        &self,
        device_event: u16,
        evset: EventSet,
        vrings: &[Vring],
        _thread_id: usize,
    ) -> io::Result<()> {
        if evset != EventSet::IN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "unexpected event set",
            ));
        }
        let vring = vrings.get(device_event as usize).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("no queue {device_event}"),
            )
        })?;
        let mem = self
            .mem
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let Some(mem) = mem else {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "no guest memory yet",
            ));
        };
        let event_idx = self.event_idx.load(std::sync::atomic::Ordering::Acquire);
        let tuning = queue::Tuning {
            pool: self.pool.as_ref(),
            poller: self.pollers.get(device_event as usize),
        };
        queue::process_with(&self.server, &mem, vring, event_idx, tuning)
    }
}

/// Serves one frontend connection on `listener`, then stops the queue threads. Returns when
/// the frontend disconnects.
pub fn serve_connection<F>(backend: Arc<FsBackend<F>>, listener: &mut Listener) -> Result<(), Error>
where
    F: FileSystem<Inode = u64, Handle = u64> + Send + Sync + 'static,
{
    let mut daemon = VhostUserDaemon::new(
        "fsjail".to_string(),
        backend.clone(),
        GuestMemoryAtomic::new(GuestMem::new()),
    )
    .map_err(Error::Daemon)?;
    daemon.start(listener).map_err(Error::Accept)?;
    info!("frontend connected");
    let result = daemon.wait();
    // The daemon's queue threads only leave their loops through the exit events; dropping the
    // daemon alone would leave them blocked in epoll.
    backend.signal_exit();
    // Requests still in the pool finish (into the old rings, which their jobs hold) before the
    // next frontend can connect.
    backend.drain_pool();
    backend.disconnect();
    match result {
        Ok(()) => Ok(()),
        Err(vhost_user_backend::Error::HandleRequest(
            vhost::vhost_user::Error::Disconnected | vhost::vhost_user::Error::PartialMessage,
        )) => Ok(()),
        Err(e) => Err(Error::Serve(e)),
    }
}
