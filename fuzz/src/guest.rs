//! Guest memory and descriptor chains for the fuzz targets, built with virtio-queue's
//! `MockSplitQueue` so the chains the server sees come out of a real `Queue` iterator.

use virtio_bindings::bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::split::Descriptor as SplitDescriptor;
use virtio_queue::desc::RawDescriptor;
use virtio_queue::mock::MockSplitQueue;
use virtio_queue::{DescriptorChain, Queue, QueueOwnedT, QueueT};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryMmap};

/// Descriptor flag: device-writable.
pub const WRITE: u16 = VRING_DESC_F_WRITE as u16;
/// Descriptor flag: chained.
pub const NEXT: u16 = VRING_DESC_F_NEXT as u16;

/// Entries of the mock queue. The rings live at guest address 0 and take under 8 KiB.
pub const QUEUE_SIZE: u16 = 256;
/// First guest address free for buffers (after the rings).
pub const BUFFERS: u64 = 0x2000;

/// Guest memory made of `regions` as (start, length). Unbacked holes between regions are how
/// the targets put descriptors "outside guest memory".
pub fn memory(regions: &[(u64, usize)]) -> GuestMemoryMmap<()> {
    let ranges: Vec<(GuestAddress, usize)> =
        regions.iter().map(|&(a, l)| (GuestAddress(a), l)).collect();
    GuestMemoryMmap::<()>::from_ranges(&ranges).expect("guest memory for the fuzz target")
}

/// The queue laid out at address 0 of `mem`.
pub fn mock(mem: &GuestMemoryMmap<()>) -> MockSplitQueue<'_, GuestMemoryMmap<()>> {
    MockSplitQueue::new(mem, QUEUE_SIZE)
}

/// Publishes `descs` as one chain (NEXT links filled in, in order) at the head of a fresh
/// queue and returns the chain the device would pop. `descs` holds (addr, len, flags).
pub fn chain<'m>(
    mem: &'m GuestMemoryMmap<()>,
    descs: &[(u64, u32, u16)],
) -> Option<DescriptorChain<&'m GuestMemoryMmap<()>>> {
    if descs.is_empty() || descs.len() > QUEUE_SIZE as usize {
        return None;
    }
    let q = mock(mem);
    // Every chain goes in at avail index 0 of a fresh queue; reset the index the mock keeps
    // in guest memory so it never wraps (the mock's u16 arithmetic would overflow).
    mem.write_obj(0u16, q.avail_addr().unchecked_add(2)).ok()?;
    let raw: Vec<RawDescriptor> = descs
        .iter()
        .map(|&(addr, len, flags)| RawDescriptor::from(SplitDescriptor::new(addr, len, flags, 0)))
        .collect();
    // The mock's own chain borrows the mock; re-read it through a fresh Queue so it only
    // borrows `mem`.
    q.build_desc_chain(&raw).ok()?;
    let mut queue: Queue = q.create_queue().ok()?;
    queue.iter(mem).ok()?.next()
}

/// Writes raw descriptors verbatim (no NEXT fix-ups: loops, INDIRECT, anything) into the
/// table, publishes `heads` in the avail ring, and returns a queue ready to pop them.
pub fn raw_queue(
    mem: &GuestMemoryMmap<()>,
    table: &[(u64, u32, u16, u16)],
    heads: &[u16],
) -> Option<Queue> {
    let q = mock(mem);
    for (i, &(addr, len, flags, next)) in table.iter().take(QUEUE_SIZE as usize).enumerate() {
        let d = RawDescriptor::from(SplitDescriptor::new(addr, len, flags, next));
        q.desc_table().store(i as u16, d).ok()?;
    }
    let avail = q.avail_addr();
    for (i, &h) in heads.iter().take(QUEUE_SIZE as usize).enumerate() {
        mem.write_obj(h, avail.unchecked_add(4 + 2 * i as u64))
            .ok()?;
    }
    let n = heads.len().min(QUEUE_SIZE as usize) as u16;
    mem.write_obj(n, avail.unchecked_add(2)).ok()?;
    let mut queue: Queue = q.create_queue().ok()?;
    queue.set_event_idx(false);
    Some(queue)
}

/// Pops every chain of `queue` (bounded by the queue size, as a device loop would be).
pub fn pop_all<'m>(
    queue: &mut Queue,
    mem: &'m GuestMemoryMmap<()>,
) -> Vec<DescriptorChain<&'m GuestMemoryMmap<()>>> {
    let mut out = Vec::new();
    if let Ok(iter) = queue.iter(mem) {
        for c in iter.take(QUEUE_SIZE as usize) {
            out.push(c);
        }
    }
    out
}
