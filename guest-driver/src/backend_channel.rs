//! The backend-to-frontend request channel (SET_BACKEND_REQ_FD): a socketpair whose far end
//! goes to the backend, served on a thread by vhost's `FrontendReqHandler` which forwards each
//! request to a pluggable handler.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::thread::JoinHandle;

use vhost::vhost_user::message::{VhostUserMMap, VhostUserSharedMsg};
use vhost::vhost_user::{
    Error as VhostUserError, FrontendReqHandler, HandlerResult, VhostUserFrontend,
    VhostUserFrontendReqHandler,
};

use crate::error::{Error, Result};

/// What the user plugs in to serve backend requests (e.g. a DAX window mapper implementing
/// `shmem_map`/`shmem_unmap`). Every method defaults to refusing with ENOSYS.
pub type BackendRequestHandler = dyn VhostUserFrontendReqHandler + Send + Sync;

/// A handler that refuses everything.
#[derive(Debug, Default)]
pub struct RefuseAll;

impl VhostUserFrontendReqHandler for RefuseAll {}

/// Adapts a trait object to the sized type `FrontendReqHandler` wants.
struct Forward(Arc<BackendRequestHandler>);

impl VhostUserFrontendReqHandler for Forward {
    fn handle_config_change(&self) -> HandlerResult<u64> {
        self.0.handle_config_change()
    }
    fn shared_object_add(&self, uuid: &VhostUserSharedMsg) -> HandlerResult<u64> {
        self.0.shared_object_add(uuid)
    }
    fn shared_object_remove(&self, uuid: &VhostUserSharedMsg) -> HandlerResult<u64> {
        self.0.shared_object_remove(uuid)
    }
    fn shared_object_lookup(
        &self,
        uuid: &VhostUserSharedMsg,
        fd: &dyn AsRawFd,
    ) -> HandlerResult<u64> {
        self.0.shared_object_lookup(uuid, fd)
    }
    fn shmem_map(&self, req: &VhostUserMMap, fd: &dyn AsRawFd) -> HandlerResult<u64> {
        self.0.shmem_map(req, fd)
    }
    fn shmem_unmap(&self, req: &VhostUserMMap) -> HandlerResult<u64> {
        self.0.shmem_unmap(req)
    }
}

/// The running channel. Dropping it shuts the socket down and joins the thread.
pub struct BackendChannel {
    // A dup of the serving end, used only to shut the socket down from this side.
    shutdown_fd: OwnedFd,
    thread: Option<JoinHandle<()>>,
}

impl BackendChannel {
    /// Creates the socketpair, hands one end to the backend and starts serving the other.
    pub fn start(
        frontend: &mut vhost::vhost_user::Frontend,
        handler: Arc<BackendRequestHandler>,
        reply_ack: bool,
    ) -> Result<Self> {
        let mut server = FrontendReqHandler::new(Arc::new(Forward(handler)))
            .map_err(|e| Error::Vhost(vhost::Error::VhostUserProtocol(e)))?;
        server.set_reply_ack_flag(reply_ack);
        // SAFETY: the fd belongs to `server`, which is alive for the duration of this borrow;
        // we immediately duplicate it into an fd we own.
        let shutdown_fd = unsafe { BorrowedFd::borrow_raw(server.as_raw_fd()) }
            .try_clone_to_owned()
            .map_err(|e| Error::io("dup backend channel", e))?;
        let tx = server.get_tx_raw_fd();
        frontend.set_backend_request_fd(&tx)?;
        let thread = std::thread::Builder::new()
            .name("backend-req".into())
            .spawn(move || serve(server))
            .map_err(|e| Error::io("spawn backend channel thread", e))?;
        Ok(BackendChannel {
            shutdown_fd,
            thread: Some(thread),
        })
    }
}

fn serve(mut server: FrontendReqHandler<Forward>) {
    // The tx end must stay open until the backend got it, which `set_backend_request_fd`
    // guaranteed before this thread started; the server owns it and keeps it open.
    loop {
        match server.handle_request() {
            Ok(_) => {}
            // The handler refused (and the backend got the refusal as an ack): keep serving.
            Err(VhostUserError::ReqHandlerError(_)) => {}
            // A malformed message: the endpoint can still read the next one.
            Err(VhostUserError::InvalidMessage) => {}
            Err(_) => break,
        }
    }
}

impl Drop for BackendChannel {
    fn drop(&mut self) {
        // SAFETY: `shutdown_fd` is an fd we own; shutdown has no memory-safety preconditions.
        unsafe { libc::shutdown(self.shutdown_fd.as_raw_fd(), libc::SHUT_RDWR) };
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
