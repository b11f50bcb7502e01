//! The per-queue loop: pop descriptor chains, hand each to the FUSE server, return it to the
//! used ring, and notify the guest once per batch (EVENT_IDX tells us when it wants one).

use std::io;

use fuse_backend_rs::api::filesystem::FileSystem;
use vhost_user_backend::{VringRwLock, VringT};
use virtio_queue::QueueOwnedT;
use vm_memory::{GuestAddressSpace, GuestMemoryAtomic, GuestMemoryMmap};

use crate::fuse::server::Server;
use crate::transport::split_chain;

fn queue_err(e: virtio_queue::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

/// Drains `vring`. With EVENT_IDX, re-enables notifications and drains again if the guest
/// added chains meanwhile, so none is left waiting for a kick that already happened.
pub fn process<F>(
    server: &Server<F>,
    mem: &GuestMemoryAtomic<GuestMemoryMmap>,
    vring: &VringRwLock,
    event_idx: bool,
) -> io::Result<()>
where
    F: FileSystem<Inode = u64, Handle = u64> + Sync,
{
    loop {
        if event_idx {
            vring.disable_notification().map_err(queue_err)?;
        }
        drain(server, mem, vring, event_idx)?;
        if !event_idx || !vring.enable_notification().map_err(queue_err)? {
            break;
        }
    }
    Ok(())
}

fn drain<F>(
    server: &Server<F>,
    mem: &GuestMemoryAtomic<GuestMemoryMmap>,
    vring: &VringRwLock,
    event_idx: bool,
) -> io::Result<()>
where
    F: FileSystem<Inode = u64, Handle = u64> + Sync,
{
    let guard = mem.memory();
    let mut served = 0usize;
    loop {
        let chain = {
            let mut state = vring.get_mut();
            let mut iter = state.get_queue_mut().iter(guard.clone()).map_err(queue_err)?;
            iter.next()
        };
        let Some(chain) = chain else { break };
        let head = chain.head_index();
        let used = match split_chain(&*guard, chain) {
            Ok((reader, writer)) => server.handle(reader, writer),
            Err(e) => {
                // A chain we cannot even walk gets no reply; it is returned so the ring does
                // not leak the slot.
                crate::guest_warn!("dropping malformed descriptor chain {head}: {e}");
                0
            }
        };
        let used = u32::try_from(used).unwrap_or(0);
        vring.add_used(head, used).map_err(queue_err)?;
        served += 1;
        // With EVENT_IDX the guest says which used index it wants to hear about, so asking
        // after every completion costs no extra interrupts and lets the guest start on early
        // replies while later requests are still being served (a signal only at the end of the
        // batch made guest and device take turns).
        if event_idx && vring.needs_notification().map_err(queue_err)? {
            vring.signal_used_queue()?;
        }
    }
    if !event_idx && served > 0 {
        vring.signal_used_queue()?;
    }
    Ok(())
}
