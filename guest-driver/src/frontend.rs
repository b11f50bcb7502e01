//! The vhost-user frontend: connects to a backend's socket, negotiates features, shares guest
//! RAM and sets up the virtqueues. virtio-fs numbering: queue 0 is hiprio, 1.. are requests.

use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use vhost::vhost_user::message::{VhostUserHeaderFlag, VhostUserShMemConfig};
use vhost::vhost_user::{
    Frontend, VhostUserFrontend, VhostUserProtocolFeatures, VhostUserVirtioFeatures,
};
use vhost::{VhostBackend, VringConfigData};

use crate::backend_channel::{BackendChannel, BackendRequestHandler, RefuseAll};
use crate::error::{Error, Result};
use crate::memory::GuestRam;
use crate::virtqueue::VirtQueue;

/// VIRTIO_F_VERSION_1.
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;
/// VIRTIO_RING_F_INDIRECT_DESC.
pub const VIRTIO_RING_F_INDIRECT_DESC: u64 = 1 << 28;
/// VIRTIO_RING_F_EVENT_IDX.
pub const VIRTIO_RING_F_EVENT_IDX: u64 = 1 << 29;
/// VHOST_USER_F_PROTOCOL_FEATURES.
pub const VHOST_USER_F_PROTOCOL_FEATURES: u64 = 1 << 30;

/// The protocol features this frontend knows how to use (never CONFIG).
pub fn wanted_protocol_features() -> VhostUserProtocolFeatures {
    VhostUserProtocolFeatures::MQ
        | VhostUserProtocolFeatures::REPLY_ACK
        | VhostUserProtocolFeatures::BACKEND_REQ
        | VhostUserProtocolFeatures::BACKEND_SEND_FD
        | VhostUserProtocolFeatures::SHMEM
        | VhostUserProtocolFeatures::DEVICE_STATE
        | VhostUserProtocolFeatures::LOG_SHMFD
}

/// Connection parameters.
#[derive(Clone)]
pub struct Options {
    /// Guest RAM size in bytes (page multiple).
    pub mem_size: usize,
    /// Guest physical address where RAM starts.
    pub mem_base: u64,
    /// Entries per virtqueue (power of two).
    pub queue_size: u16,
    /// Request queues besides hiprio; must not exceed what the backend offers.
    pub num_request_queues: u16,
    /// Negotiate VIRTIO_RING_F_EVENT_IDX when offered.
    pub event_idx: bool,
    /// Further virtio feature bits to accept if offered (e.g. INDIRECT_DESC for hostile tests).
    pub extra_features: u64,
    /// Protocol features to accept if offered; intersected with what we support.
    pub protocol_features: VhostUserProtocolFeatures,
    /// Set NEED_REPLY on every message once REPLY_ACK is negotiated, so failures surface.
    pub need_reply: bool,
    /// Kick on every submission, ignoring the device's suppression.
    pub always_kick: bool,
    /// How long to keep retrying the connection (the backend may still be starting).
    pub connect_timeout: Duration,
    /// Default wait for a reply.
    pub request_timeout: Duration,
    /// Serves backend requests when BACKEND_REQ is negotiated; `None` refuses everything.
    pub backend_handler: Option<Arc<BackendRequestHandler>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            mem_size: 64 << 20,
            mem_base: 0,
            queue_size: 128,
            num_request_queues: 1,
            event_idx: true,
            extra_features: 0,
            protocol_features: wanted_protocol_features(),
            need_reply: true,
            always_kick: false,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            backend_handler: None,
        }
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("mem_size", &self.mem_size)
            .field("mem_base", &self.mem_base)
            .field("queue_size", &self.queue_size)
            .field("num_request_queues", &self.num_request_queues)
            .field("event_idx", &self.event_idx)
            .field("extra_features", &self.extra_features)
            .field("protocol_features", &self.protocol_features)
            .field("need_reply", &self.need_reply)
            .field("always_kick", &self.always_kick)
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}

/// A connected, running virtio-fs device as seen from the guest.
pub struct Device {
    // Dropped first (field order): stops the backend channel before closing the main socket.
    backend_channel: Option<BackendChannel>,
    frontend: Mutex<Frontend>,
    queues: Vec<Arc<VirtQueue>>,
    ram: Arc<GuestRam>,
    offered_features: u64,
    acked_features: u64,
    offered_protocol: VhostUserProtocolFeatures,
    acked_protocol: VhostUserProtocolFeatures,
    backend_queue_num: Option<u64>,
    request_timeout: Duration,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("queues", &self.queues.len())
            .field(
                "acked_features",
                &format_args!("{:#x}", self.acked_features),
            )
            .field("acked_protocol", &self.acked_protocol)
            .finish_non_exhaustive()
    }
}

impl Device {
    /// Connects with default [`Options`].
    pub fn connect(socket: impl AsRef<Path>) -> Result<Self> {
        Self::connect_with(socket, Options::default())
    }

    /// Connects, negotiates and brings every queue up.
    pub fn connect_with(socket: impl AsRef<Path>, opts: Options) -> Result<Self> {
        let num_queues = 1 + opts.num_request_queues as usize;
        if opts.num_request_queues == 0 {
            return Err(Error::InvalidArgument(
                "need at least one request queue".into(),
            ));
        }
        let mut fe = connect_retrying(socket.as_ref(), num_queues as u64, opts.connect_timeout)?;
        fe.set_owner()?;

        let offered_features = fe.get_features()?;
        let mut want = VIRTIO_F_VERSION_1 | VHOST_USER_F_PROTOCOL_FEATURES | opts.extra_features;
        if opts.event_idx {
            want |= VIRTIO_RING_F_EVENT_IDX;
        }
        if offered_features & VIRTIO_F_VERSION_1 == 0 {
            return Err(Error::Unsupported("VIRTIO_F_VERSION_1".into()));
        }
        let acked_features = offered_features & want;

        let mut offered_protocol = VhostUserProtocolFeatures::empty();
        let mut acked_protocol = VhostUserProtocolFeatures::empty();
        if offered_features & VHOST_USER_F_PROTOCOL_FEATURES != 0 {
            offered_protocol = fe.get_protocol_features()?;
            acked_protocol = offered_protocol
                & opts.protocol_features
                & wanted_protocol_features()
                & !VhostUserProtocolFeatures::CONFIG;
            fe.set_protocol_features(acked_protocol)?;
        }
        fe.set_features(acked_features)?;
        if opts.need_reply && acked_protocol.contains(VhostUserProtocolFeatures::REPLY_ACK) {
            fe.set_hdr_flags(VhostUserHeaderFlag::NEED_REPLY);
        }

        let mut backend_queue_num = None;
        if acked_protocol.contains(VhostUserProtocolFeatures::MQ) {
            let n = fe.get_queue_num()?;
            backend_queue_num = Some(n);
            if (num_queues as u64) > n {
                return Err(Error::Unsupported(format!(
                    "{} request queues (backend has {n} queues)",
                    opts.num_request_queues
                )));
            }
        }

        let backend_channel = if acked_protocol.contains(VhostUserProtocolFeatures::BACKEND_REQ) {
            let handler = opts
                .backend_handler
                .clone()
                .unwrap_or_else(|| Arc::new(RefuseAll));
            let reply_ack = acked_protocol.contains(VhostUserProtocolFeatures::REPLY_ACK);
            Some(BackendChannel::start(&mut fe, handler, reply_ack)?)
        } else {
            None
        };

        let ram = GuestRam::new(opts.mem_base, opts.mem_size)?;
        fe.set_mem_table(&[ram.region_info()?])?;

        let event_idx = acked_features & VIRTIO_RING_F_EVENT_IDX != 0;
        let mut queues = Vec::with_capacity(num_queues);
        for i in 0..num_queues {
            // SAFETY: the socket fd belongs to `fe`, alive for this borrow; we dup it at once.
            let hangup = unsafe { BorrowedFd::borrow_raw(fe.as_raw_fd()) }
                .try_clone_to_owned()
                .map_err(|e| Error::io("dup vhost-user socket", e))?;
            let q = VirtQueue::new(
                &ram,
                i as u16,
                opts.queue_size,
                event_idx,
                opts.always_kick,
                Some(hangup),
            )?;
            let a = q.ring_addresses();
            fe.set_vring_num(i, opts.queue_size)?;
            fe.set_vring_base(i, 0)?;
            let cfg = VringConfigData {
                queue_max_size: opts.queue_size,
                queue_size: opts.queue_size,
                flags: 0,
                desc_table_addr: ram.host_address(a.desc)?,
                used_ring_addr: ram.host_address(a.used)?,
                avail_ring_addr: ram.host_address(a.avail)?,
                log_addr: None,
            };
            fe.set_vring_addr(i, &cfg)?;
            fe.set_vring_call(i, q.call_fd())?;
            fe.set_vring_kick(i, q.kick_fd())?;
            if acked_features & VHOST_USER_F_PROTOCOL_FEATURES != 0 {
                fe.set_vring_enable(i, true)?;
            }
            queues.push(Arc::new(q));
        }

        Ok(Device {
            backend_channel,
            frontend: Mutex::new(fe),
            queues,
            ram,
            offered_features,
            acked_features,
            offered_protocol,
            acked_protocol,
            backend_queue_num,
            request_timeout: opts.request_timeout,
        })
    }

    /// Guest RAM shared with the backend.
    pub fn ram(&self) -> &Arc<GuestRam> {
        &self.ram
    }

    /// Queue `index` (0 = hiprio).
    pub fn queue(&self, index: u16) -> Result<&Arc<VirtQueue>> {
        self.queues
            .get(index as usize)
            .ok_or_else(|| Error::InvalidArgument(format!("no queue {index}")))
    }

    /// All queues, hiprio first.
    pub fn queues(&self) -> &[Arc<VirtQueue>] {
        &self.queues
    }

    /// Number of request queues (excluding hiprio).
    pub fn num_request_queues(&self) -> u16 {
        (self.queues.len() - 1) as u16
    }

    /// Virtio feature bits the backend offered.
    pub fn offered_features(&self) -> u64 {
        self.offered_features
    }

    /// Virtio feature bits in effect.
    pub fn acked_features(&self) -> u64 {
        self.acked_features
    }

    /// Protocol features the backend offered.
    pub fn backend_protocol_features(&self) -> VhostUserProtocolFeatures {
        self.offered_protocol
    }

    /// Protocol features in effect.
    pub fn acked_protocol_features(&self) -> VhostUserProtocolFeatures {
        self.acked_protocol
    }

    /// The backend's GET_QUEUE_NUM answer, when MQ was negotiated.
    pub fn backend_queue_num(&self) -> Option<u64> {
        self.backend_queue_num
    }

    /// Whether the backend-request channel is running.
    pub fn has_backend_channel(&self) -> bool {
        self.backend_channel.is_some()
    }

    /// Default reply timeout.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// The backend's shared memory regions (GET_SHMEM_CONFIG; needs SHMEM negotiated).
    pub fn shmem_config(&self) -> Result<VhostUserShMemConfig> {
        if !self
            .acked_protocol
            .contains(VhostUserProtocolFeatures::SHMEM)
        {
            return Err(Error::Unsupported("VHOST_USER_PROTOCOL_F_SHMEM".into()));
        }
        Ok(self.frontend().get_shmem_config()?)
    }

    /// Whether the backend still holds its end of the vhost-user socket.
    pub fn backend_alive(&self) -> bool {
        let fe = self.frontend();
        let mut pfd = libc::pollfd {
            fd: fe.as_raw_fd(),
            events: libc::POLLRDHUP,
            revents: 0,
        };
        // SAFETY: `pfd` is one valid pollfd that outlives the call; timeout 0 never blocks.
        let r = unsafe { libc::poll(&mut pfd, 1, 0) };
        r == 0 || pfd.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) == 0
    }

    /// Escape hatch: the raw vhost-user frontend, to send arbitrary control messages.
    pub fn frontend(&self) -> MutexGuard<'_, Frontend> {
        self.frontend.lock().unwrap()
    }
}

/// Connects to the backend's socket, retrying until `timeout` while it is missing or not yet
/// listening. The socket is connected here rather than by `Frontend::connect`, which sleeps
/// 100 ms on ECONNREFUSED: a socket file exists from bind() but refuses until listen(), so a
/// caller that waits for the file and then connects would often pay those 100 ms (start-time
/// figures showed them as outliers for every backend).
fn connect_retrying(path: &Path, num_queues: u64, timeout: Duration) -> Result<Frontend> {
    let deadline = Instant::now() + timeout;
    loop {
        match UnixStream::connect(path) {
            Ok(sock) => return Ok(Frontend::from_stream(sock, num_queues)),
            Err(e) if Instant::now() >= deadline => {
                return Err(Error::Connect {
                    path: path.display().to_string(),
                    source: vhost::Error::VhostUserProtocol(
                        vhost::vhost_user::Error::SocketConnect(e),
                    ),
                })
            }
            Err(_) => std::thread::sleep(Duration::from_millis(1)),
        }
    }
}

/// True if the virtio feature bitmask has the vhost-user protocol-features bit.
pub fn has_protocol_features(features: u64) -> bool {
    features & VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits() != 0
}
