//! The worker's side of the window: checks each mapping's file descriptor, keeps the mapping
//! table, and sends SHMEM_MAP / SHMEM_UNMAP (with the fd) to the window owner.
//!
//! The owner is anything implementing vhost's `VhostUserFrontendReqHandler`: the
//! backend-request channel's `Backend` (the fd travels over SCM_RIGHTS to the VMM), or a
//! [`WindowMapper`](super::WindowMapper) in the same process.
//!
//! Each request is planned into exact steps ([`super::plan`]) under the table lock, the table
//! is updated as if they all succeed, and the lock is released before the first message: a
//! round trip to the owner blocks no other request. Requests whose window ranges overlap wait
//! for each other (the range is "busy" while its steps are in flight), so the owner sees each
//! range's steps in the order the table records them. When the owner refuses a step, the steps
//! already made are undone, newest first, and the table is corrected to exactly what the owner
//! holds; the guest gets an errno. When the channel itself fails, nobody knows what the owner
//! holds: the owner is dropped and the table cleared, and later requests get EIO.
//!
//! Pieces of a mapping that a request splits must be mapped again, so the channel keeps one
//! descriptor per (node, writable) that some live mapping uses.

use std::collections::HashMap;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use fuse_backend_rs::abi::virtio_fs::RemovemappingOne;
use fuse_backend_rs::transport::FsCacheReqHandler;
use log::{error, warn};
use thiserror::Error;
use vhost::vhost_user::message::{VhostUserMMap, VhostUserMMapFlags};
use vhost::vhost_user::VhostUserFrontendReqHandler;

use super::fd_check::{check_fd, check_not_empty, FdError};
use super::handles::{HandleError, OpenHandles};
use super::plan::{plan_map, plan_unmap, Step, Unit};
use super::table::{Mapping, MappingTable, TableFull};
use super::validate::{check_map, check_range, CheckError, MapRequest, Window};
use super::window::CACHE_SHMID;

/// Whoever owns the window and answers SHMEM_MAP / SHMEM_UNMAP.
pub type WindowOwner = Arc<dyn VhostUserFrontendReqHandler + Send + Sync>;

/// Most live mappings the worker tracks. A Linux guest maps 2 MiB blocks, so a 64 GiB window
/// needs 32768; twice that leaves room for splits.
pub const MAX_TABLE_ENTRIES: usize = 1 << 16;

/// Why a mapping request failed in the worker.
#[derive(Debug, Error)]
pub enum DaxError {
    #[error(transparent)]
    Check(#[from] CheckError),
    #[error(transparent)]
    Fd(#[from] FdError),
    #[error(transparent)]
    Handle(#[from] HandleError),
    #[error(transparent)]
    Table(#[from] TableFull),
    #[error("no window owner is connected (no backend request channel)")]
    NoOwner,
    #[error("keeping the mapping's descriptor: {0}")]
    Dup(io::Error),
    #[error("the window owner refused the request: {0}")]
    Owner(io::Error),
    #[error("the channel to the window owner failed, its window is unknown now: {0}")]
    Channel(io::Error),
    #[error("the filesystem asked for a different mapping than the one checked")]
    Mismatch,
}

impl DaxError {
    pub fn errno(&self) -> i32 {
        match self {
            DaxError::Check(e) => e.errno(),
            DaxError::Fd(e) => e.errno(),
            DaxError::Handle(e) => e.errno(),
            DaxError::Table(_) => libc::ENOMEM,
            DaxError::Dup(e) => e.raw_os_error().unwrap_or(libc::EMFILE),
            // An in-process owner gives its errno; over vhost-user a refusal is only "1" (QEMU)
            // or a negative errno (vhost's frontend), and arrives without it.
            DaxError::Owner(e) => match e.raw_os_error() {
                Some(errno) if errno > 0 => errno,
                _ => libc::EIO,
            },
            DaxError::NoOwner | DaxError::Channel(_) | DaxError::Mismatch => libc::EIO,
        }
    }
}

impl From<DaxError> for io::Error {
    fn from(e: DaxError) -> Self {
        io::Error::from_raw_os_error(e.errno())
    }
}

/// How one message to the owner ended.
enum Sent {
    Done,
    /// The owner answered no: its window is as before the message.
    Refused(io::Error),
    /// No answer, or a garbled one: the owner's window is unknown.
    Broken(io::Error),
}

/// An in-process owner refuses with an errno; vhost's `Backend` turns a non-zero reply (QEMU
/// sends 1, not an errno) into `FrontendInternalError`. Anything else is the channel failing.
fn classify(e: io::Error) -> Sent {
    if e.raw_os_error().is_some() {
        return Sent::Refused(e);
    }
    let refused = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<vhost::vhost_user::Error>())
        .is_some_and(|inner| matches!(inner, vhost::vhost_user::Error::FrontendInternalError));
    if refused {
        Sent::Refused(e)
    } else {
        Sent::Broken(e)
    }
}

fn send(owner: &WindowOwner, step: &Step, fd: &OwnedFd) -> Sent {
    let m = step.mapping();
    let mut msg = VhostUserMMap {
        shmid: CACHE_SHMID,
        padding: [0; 7],
        fd_offset: 0,
        shm_offset: m.moffset,
        len: m.len,
        flags: 0,
    };
    let result = match step {
        Step::Map(m) => {
            msg.fd_offset = m.foffset;
            // Read-only is flags 0: the owner maps it PROT_READ.
            if m.writable {
                msg.flags = VhostUserMMapFlags::WRITABLE.bits();
            }
            owner.shmem_map(&msg, fd)
        }
        Step::Unmap(_) => owner.shmem_unmap(&msg),
    };
    match result {
        Ok(_) => Sent::Done,
        Err(e) => classify(e),
    }
}

/// A unit's steps with the descriptor of each step's mapping.
struct Flight {
    steps: Vec<(Step, Arc<OwnedFd>)>,
    /// How many of `steps`, from the first, the owner holds in the end.
    in_effect: usize,
}

/// Why a unit did not complete.
enum Failed {
    /// The owner refused a step; the ones before it were undone as far as the owner let us.
    Refused(io::Error),
    /// The channel failed: what the owner holds is unknown.
    Broken(io::Error),
}

/// Sends a unit's steps in order; on a refusal undoes the ones made, newest first.
fn fly(owner: &WindowOwner, flight: &mut Flight) -> Result<(), Failed> {
    for k in 0..flight.steps.len() {
        let (step, fd) = &flight.steps[k];
        match send(owner, step, fd) {
            Sent::Done => flight.in_effect = k + 1,
            Sent::Broken(e) => return Err(Failed::Broken(e)),
            Sent::Refused(e) => {
                while flight.in_effect > 0 {
                    let (done, fd) = &flight.steps[flight.in_effect - 1];
                    match send(owner, &done.inverse(), fd) {
                        Sent::Done => flight.in_effect -= 1,
                        Sent::Refused(undo) => {
                            warn!("DAX: the owner refused to undo {done:?}: {undo}");
                            break;
                        }
                        Sent::Broken(b) => return Err(Failed::Broken(b)),
                    }
                }
                return Err(Failed::Refused(e));
            }
        }
    }
    Ok(())
}

/// The descriptors live mappings were made from, by (node, writable), each with the number of
/// table entries using it.
#[derive(Default)]
struct Fds {
    by_key: HashMap<(u64, bool), (Arc<OwnedFd>, usize)>,
}

impl Fds {
    fn key(m: &Mapping) -> (u64, bool) {
        (m.nodeid, m.writable)
    }

    fn get(&self, m: &Mapping) -> Option<Arc<OwnedFd>> {
        self.by_key.get(&Self::key(m)).map(|(fd, _)| fd.clone())
    }

    fn hold(&mut self, m: &Mapping, fd: &Arc<OwnedFd>) {
        let entry = self
            .by_key
            .entry(Self::key(m))
            .or_insert_with(|| (fd.clone(), 0));
        entry.1 += 1;
    }

    fn release(&mut self, m: &Mapping) {
        let key = Self::key(m);
        if let Some(entry) = self.by_key.get_mut(&key) {
            entry.1 = entry.1.saturating_sub(1);
            if entry.1 == 0 {
                self.by_key.remove(&key);
            }
        }
    }

    /// Makes `fd` the one new steps for `m`'s key use (the freshest checked descriptor).
    fn refresh(&mut self, m: &Mapping, fd: &Arc<OwnedFd>) {
        if let Some(entry) = self.by_key.get_mut(&Self::key(m)) {
            entry.0 = fd.clone();
        }
    }

    fn clear(&mut self) {
        self.by_key.clear();
    }
}

struct State {
    table: MappingTable,
    fds: Fds,
    owner: Option<WindowOwner>,
    /// Bumped whenever the table is thrown away, so a request in flight across it does not
    /// correct the new table with its old steps.
    generation: u64,
    /// Window ranges whose steps are in flight, by request id.
    busy: Vec<(u64, u64, u64)>,
    next_id: u64,
    /// Requests waiting for a busy range, so a request wakes them only when there are any
    /// (a futex wake per request was a measurable share of a SETUPMAPPING's cost).
    waiting: usize,
}

impl State {
    fn is_busy(&self, span: (u64, u64)) -> bool {
        self.busy
            .iter()
            .any(|&(_, start, end)| start < span.1 && span.0 < end)
    }

    /// Applies a step to the table and the descriptor counts.
    fn apply(&mut self, step: &Step, fd: &Arc<OwnedFd>) {
        if step.apply(&mut self.table) {
            match step {
                Step::Map(m) => self.fds.hold(m, fd),
                Step::Unmap(m) => self.fds.release(m),
            }
        } else {
            // The planner only plans what fits, and busy ranges keep others out meanwhile.
            error!("DAX table out of step: {step:?} does not fit it");
        }
    }

    fn forget_all(&mut self) {
        self.table.clear();
        self.fds.clear();
        self.generation = self.generation.wrapping_add(1);
    }
}

/// One share's window as the worker sees it.
pub struct DaxChannel {
    window: Window,
    state: Mutex<State>,
    /// Signalled whenever busy ranges are released.
    idle: Condvar,
}

impl DaxChannel {
    pub fn new(window: Window) -> Self {
        DaxChannel {
            window,
            state: Mutex::new(State {
                table: MappingTable::new(MAX_TABLE_ENTRIES),
                fds: Fds::default(),
                owner: None,
                generation: 0,
                busy: Vec::new(),
                next_id: 0,
                waiting: 0,
            }),
            idle: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update of the state is a single assignment or a table step that keeps the
        // table consistent, so a panicking holder leaves nothing half-done.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wait<'a>(&self, mut guard: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        guard.waiting += 1;
        let mut guard = self.idle.wait(guard).unwrap_or_else(|p| p.into_inner());
        guard.waiting -= 1;
        guard
    }

    /// Releases request `id`'s ranges and wakes whoever waits for them.
    fn release(&self, mut st: MutexGuard<'_, State>, id: u64) {
        st.busy.retain(|b| b.0 != id);
        let wake = st.waiting > 0;
        drop(st);
        if wake {
            self.idle.notify_all();
        }
    }

    /// The window's geometry.
    pub fn window(&self) -> &Window {
        &self.window
    }

    /// A new owner (the frontend set up the backend-request channel). Its window is empty, so
    /// the table starts empty too.
    pub fn connect(&self, owner: WindowOwner) {
        let mut st = self.lock();
        st.forget_all();
        st.owner = Some(owner);
    }

    /// The owner went away (frontend disconnect): forget it and everything mapped.
    pub fn disconnect(&self) {
        let mut st = self.lock();
        st.forget_all();
        st.owner = None;
    }

    /// The frontend reset the device, which drops every mapping on its side: forget them.
    pub fn reset(&self) {
        self.lock().forget_all();
    }

    /// A new FUSE session (INIT). Whatever the table still holds belongs to the last one:
    /// either the owner dropped it with a device reset the worker was not told of, or a guest
    /// started over without unmapping. Each is unmapped; a refusal means the owner had already
    /// dropped it. Either way the table ends empty and true.
    pub fn restart(&self) {
        let ranges: Vec<(u64, u64)> = self.mappings().iter().map(|m| (m.moffset, m.len)).collect();
        if ranges.is_empty() {
            return;
        }
        if let Err(e) = self.unmap(&ranges) {
            log::debug!("DAX: mappings of the last session: {e}");
        }
        let mut st = self.lock();
        if !st.table.is_empty() {
            // Refused unmaps: the owner did not have them.
            st.forget_all();
        }
    }

    pub fn is_connected(&self) -> bool {
        self.lock().owner.is_some()
    }

    /// Bytes of the window currently mapped.
    pub fn mapped_bytes(&self) -> u64 {
        self.lock().table.mapped_bytes()
    }

    /// A copy of the live mappings, in window order.
    pub fn mappings(&self) -> Vec<Mapping> {
        self.lock().table.iter().copied().collect()
    }

    /// Checks `fd` and asks the owner to map it, over whatever the range held (FUSE's
    /// semantics); records the mapping when the owner agrees. `req` was checked by the server
    /// already; it is checked again because this is a public entry point.
    pub fn map(&self, nodeid: u64, req: &MapRequest, fd: BorrowedFd<'_>) -> Result<(), DaxError> {
        let access = check_map(&self.window, req)?;
        check_fd(fd, access)?;
        check_not_empty(fd)?;
        let fd = Arc::new(fd.try_clone_to_owned().map_err(DaxError::Dup)?);
        let mapping = Mapping {
            moffset: req.moffset,
            len: req.len,
            foffset: req.foffset,
            nodeid,
            writable: access.writable(),
        };
        let mut st = self.lock();
        let unit = loop {
            if st.owner.is_none() {
                return Err(DaxError::NoOwner);
            }
            let unit = plan_map(&st.table, mapping)?;
            if !st.is_busy(unit.span) {
                break unit;
            }
            st = self.wait(st);
        };
        st.fds.refresh(&mapping, &fd);
        self.run(st, vec![unit], Some(fd))
    }

    /// Asks the owner to unmap each `(moffset, len)` (FUSE's semantics: holes are fine, parts
    /// of mappings stay mapped) and updates the table. All ranges are checked and planned
    /// together before the first message is sent.
    pub fn unmap(&self, ranges: &[(u64, u64)]) -> Result<(), DaxError> {
        for &(moffset, len) in ranges {
            check_range(&self.window, moffset, len)?;
        }
        let mut st = self.lock();
        let units = loop {
            if st.owner.is_none() {
                return Err(DaxError::NoOwner);
            }
            let units = plan_unmap(&st.table, ranges)?;
            if !units.iter().any(|u| st.is_busy(u.span)) {
                break units;
            }
            st = self.wait(st);
        };
        self.run(st, units, None)
    }

    /// Records `units` in the table, marks their ranges busy, sends them without the lock, and
    /// corrects the table to what the owner holds. `new_fd` is the descriptor of a new mapping
    /// (the last step of a SETUPMAPPING).
    fn run(
        &self,
        mut st: MutexGuard<'_, State>,
        units: Vec<Unit>,
        new_fd: Option<Arc<OwnedFd>>,
    ) -> Result<(), DaxError> {
        let Some(owner) = st.owner.clone() else {
            return Err(DaxError::NoOwner);
        };
        // Every descriptor is found before the table changes, so a missing one (which cannot
        // happen: each live mapping holds its own) leaves the table as it was.
        let mut flights = Vec::with_capacity(units.len());
        for unit in &units {
            let mut steps = Vec::with_capacity(unit.steps.len());
            for step in &unit.steps {
                let fd = match (st.fds.get(step.mapping()), &new_fd) {
                    (Some(fd), _) => fd,
                    (None, Some(fd)) => fd.clone(),
                    (None, None) => {
                        error!("DAX: no descriptor for {step:?}");
                        return Err(DaxError::Mismatch);
                    }
                };
                steps.push((*step, fd));
            }
            flights.push(Flight {
                steps,
                in_effect: 0,
            });
        }
        // In order: an old mapping's unmap may release its descriptor, which the map of a piece
        // of it then holds again (each step carries its own reference).
        for flight in &flights {
            for (step, fd) in &flight.steps {
                st.apply(step, fd);
            }
        }
        let id = st.next_id;
        st.next_id = st.next_id.wrapping_add(1);
        for unit in &units {
            st.busy.push((id, unit.span.0, unit.span.1));
        }
        let generation = st.generation;
        drop(st);

        let mut first_error = None;
        let mut broken = None;
        for flight in &mut flights {
            match fly(&owner, flight) {
                Ok(()) => {}
                Err(Failed::Refused(e)) => {
                    first_error.get_or_insert(DaxError::Owner(e));
                }
                Err(Failed::Broken(e)) => {
                    broken = Some(e);
                    break;
                }
            }
        }

        let mut st = self.lock();
        if st.generation == generation {
            if let Some(e) = broken {
                error!("DAX: the channel to the window owner failed: {e}");
                st.forget_all();
                st.owner = None;
                self.release(st, id);
                return Err(DaxError::Channel(e));
            }
            for flight in &flights {
                for (step, fd) in flight.steps[flight.in_effect..].iter().rev() {
                    st.apply(&step.inverse(), fd);
                }
            }
        }
        self.release(st, id);
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// The `FsCacheReqHandler` the server hands to `FileSystem::setupmapping` for one request. It
/// only forwards the exact mapping the server checked, once, and only if the guest's handle
/// allows it: the check runs here, after the share policy had its say (so a read-only share
/// answers EROFS), and before the fd leaves the worker.
pub struct SetupHandler {
    channel: Arc<DaxChannel>,
    handles: Arc<OpenHandles>,
    nodeid: u64,
    fh: u64,
    expected: MapRequest,
    done: bool,
}

impl SetupHandler {
    pub fn new(
        channel: Arc<DaxChannel>,
        handles: Arc<OpenHandles>,
        nodeid: u64,
        fh: u64,
        expected: MapRequest,
    ) -> Self {
        SetupHandler {
            channel,
            handles,
            nodeid,
            fh,
            expected,
            done: false,
        }
    }

    /// Whether the filesystem forwarded the mapping (and the owner made it).
    pub fn done(&self) -> bool {
        self.done
    }

    fn forward(&mut self, asked: MapRequest, fd: RawFd) -> Result<(), DaxError> {
        if self.done || asked != self.expected {
            return Err(DaxError::Mismatch);
        }
        let access = check_map(self.channel.window(), &asked)?;
        self.handles.check(self.nodeid, self.fh, access)?;
        if fd < 0 {
            return Err(FdError::Stat(io::Error::from_raw_os_error(libc::EBADF)).into());
        }
        // SAFETY: the filesystem lends an open descriptor for the duration of this call, and
        // the borrow does not outlive it.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        self.channel.map(self.nodeid, &asked, fd)?;
        self.done = true;
        Ok(())
    }
}

fn refuse(e: DaxError) -> io::Error {
    log::debug!("DAX request refused: {e}");
    e.into()
}

impl FsCacheReqHandler for SetupHandler {
    fn map(
        &mut self,
        foffset: u64,
        moffset: u64,
        len: u64,
        flags: u64,
        fd: RawFd,
    ) -> io::Result<()> {
        self.forward(
            MapRequest {
                foffset,
                moffset,
                len,
                flags,
            },
            fd,
        )
        .map_err(refuse)
    }

    fn unmap(&mut self, _requests: Vec<RemovemappingOne>) -> io::Result<()> {
        Err(refuse(DaxError::Mismatch))
    }
}

/// The `FsCacheReqHandler` for one REMOVEMAPPING: forwards exactly the checked ranges, once.
pub struct RemoveHandler {
    channel: Arc<DaxChannel>,
    expected: Vec<(u64, u64)>,
    done: bool,
}

impl RemoveHandler {
    pub fn new(channel: Arc<DaxChannel>, expected: Vec<(u64, u64)>) -> Self {
        RemoveHandler {
            channel,
            expected,
            done: false,
        }
    }

    pub fn done(&self) -> bool {
        self.done
    }
}

impl FsCacheReqHandler for RemoveHandler {
    fn map(&mut self, _: u64, _: u64, _: u64, _: u64, _: RawFd) -> io::Result<()> {
        Err(refuse(DaxError::Mismatch))
    }

    fn unmap(&mut self, requests: Vec<RemovemappingOne>) -> io::Result<()> {
        let asked: Vec<(u64, u64)> = requests.iter().map(|r| (r.moffset, r.len)).collect();
        if self.done || asked != self.expected {
            return Err(refuse(DaxError::Mismatch));
        }
        self.channel.unmap(&self.expected).map_err(refuse)?;
        self.done = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
