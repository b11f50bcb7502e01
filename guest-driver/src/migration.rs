//! The frontend's half of a live migration's device state (vhost-user DEVICE_STATE):
//! SET_DEVICE_STATE_FD with a pipe, then CHECK_DEVICE_STATE, as QEMU does for a stopped device.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};

use vhost::vhost_user::message::{VhostTransferStateDirection, VhostTransferStatePhase};
use vhost::vhost_user::VhostUserFrontend;

use crate::error::{Error, Result};
use crate::frontend::Device;
use crate::fuse_client::Session;
use devices::fuse::abi::InitOut;

/// A pipe: (read end, write end), both close-on-exec.
fn pipe() -> Result<(File, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(Error::io("pipe2", std::io::Error::last_os_error()));
    }
    // SAFETY: pipe2 just returned these two descriptors; nothing else owns them.
    Ok(unsafe { (File::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

impl Device {
    /// Saves the backend's state: SET_DEVICE_STATE_FD(SAVE) with a pipe's write end, reads the
    /// state to EOF, then CHECK_DEVICE_STATE. The queues should be idle, as QEMU stops them.
    pub fn save_state(&self) -> Result<Vec<u8>> {
        let (mut r, w) = pipe()?;
        let reply = self.frontend().set_device_state_fd(
            VhostTransferStateDirection::SAVE,
            VhostTransferStatePhase::STOPPED,
            w,
        )?;
        if reply.is_some() {
            return Err(Error::Protocol(
                "the backend answered SAVE with its own descriptor".into(),
            ));
        }
        let mut bytes = Vec::new();
        r.read_to_end(&mut bytes)
            .map_err(|e| Error::io("reading the device state", e))?;
        self.frontend().check_device_state()?;
        Ok(bytes)
    }

    /// Loads `state` into the backend: SET_DEVICE_STATE_FD(LOAD) with a pipe's read end,
    /// writes the bytes and closes, then CHECK_DEVICE_STATE (whose error is the load's).
    pub fn load_state(&self, state: &[u8]) -> Result<()> {
        let (r, w) = pipe()?;
        let reply = self.frontend().set_device_state_fd(
            VhostTransferStateDirection::LOAD,
            VhostTransferStatePhase::STOPPED,
            // SAFETY: `r` is open and owned by us; into_raw_fd hands that ownership over.
            unsafe { OwnedFd::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(r)) },
        )?;
        if reply.is_some() {
            return Err(Error::Protocol(
                "the backend answered LOAD with its own descriptor".into(),
            ));
        }
        let mut w = File::from(w);
        // The backend may stop reading early (a bad header): a broken pipe is its answer, which
        // CHECK_DEVICE_STATE reports.
        let _ = w.write_all(state);
        drop(w);
        self.frontend().check_device_state()?;
        Ok(())
    }
}

impl Session {
    /// Continues a session whose INIT went to the migration's source: requests go out as
    /// after that reply.
    pub fn adopt_init(&self, out: InitOut) {
        *self.init_out.lock().unwrap() = Some(out);
    }
}
