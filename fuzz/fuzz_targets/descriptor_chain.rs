//! The transport: arbitrary descriptor tables (loops, INDIRECT, addresses outside or across
//! guest memory regions, lengths that overflow) popped through virtio-queue and split by
//! `split_chain`, then read and written through `Reader`/`Writer` (plain, struct, skip, split
//! and zero-copy to and from a file) in arbitrary orders.
//!
//! Checked against a model computed independently from the same descriptors:
//! - `split_chain` accepts exactly the chains that are in memory, in order and not too long,
//!   and each side's length is the sum of its descriptors;
//! - every byte read is the guest's byte at that position of the readable part (snapshot taken
//!   before any write);
//! - every byte written lands at its position of the writable part, and no byte of guest memory
//!   outside the writable descriptors ever changes.

#![no_main]

use std::io::{Read, Write};
use std::os::unix::fs::FileExt;

use devices::fuse::abi::InHeader;
use devices::transport::{split_chain, Error, Reader, Writer, MAX_DESCRIPTORS};
use fsjail_fuzz::guest::{self, BUFFERS};
use fuse_backend_rs::api::filesystem::{ZeroCopyReader, ZeroCopyWriter};
use libfuzzer_sys::arbitrary::{Result as ArbResult, Unstructured};
use libfuzzer_sys::fuzz_target;
use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemoryMmap};

const WRITE: u16 = 2;

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});

fn pattern(addr: u64) -> u8 {
    (addr.wrapping_mul(0x9e37_79b9) >> 11) as u8
}

fn run(u: &mut Unstructured<'_>) -> ArbResult<()> {
    // Memory: region 0 at 0 (rings + buffers), then up to two more, with or without gaps.
    let mut regions = vec![(0u64, 0x4000usize + 0x1000 * u.int_in_range(0..=12)?)];
    for _ in 0..u.int_in_range(0..=2)? {
        let (start, len) = *regions.last().unwrap();
        let gap = 0x1000 * u.int_in_range(0..=2)? as u64;
        regions.push((start + len as u64 + gap, 0x1000 * u.int_in_range(1..=16)?));
    }
    let mem = guest::memory(&regions);
    for &(start, len) in &regions {
        let fill: Vec<u8> = (start..start + len as u64).map(pattern).collect();
        mem.write_slice(&fill, GuestAddress(start)).unwrap();
    }
    let end = regions.last().map(|&(s, l)| s + l as u64).unwrap();
    // Optional raw bytes in region 0 (e.g. an indirect table).
    if u.arbitrary::<bool>()? {
        let blob: Vec<u8> = (0..u.int_in_range(0..=512)?)
            .map(|_| u.arbitrary::<u8>())
            .collect::<ArbResult<_>>()?;
        mem.write_slice(&blob, GuestAddress(BUFFERS)).unwrap();
    }

    let mut table = Vec::new();
    for _ in 0..u.int_in_range(1..=24)? {
        let addr = match u.int_in_range(0..=4)? {
            0 => u.int_in_range(0..=end)?,
            1 => end - u.int_in_range(0..=64u64)?,
            2 => BUFFERS + u.int_in_range(0..=0x2000u64)?,
            3 => u64::MAX - u.int_in_range(0..=64u64)?,
            _ => u.arbitrary()?,
        };
        let len = match u.int_in_range(0..=3)? {
            0 => u.int_in_range(0..=64u32)?,
            1 => u.int_in_range(0..=0x4000u32)?,
            2 => u32::MAX - u.int_in_range(0..=16u32)?,
            _ => u.arbitrary()?,
        };
        let flags = u.arbitrary::<u16>()? & 0x7;
        let next = u.int_in_range(0..=31u16)?;
        table.push((addr, len, flags, next));
    }
    let heads: Vec<u16> = (0..u.int_in_range(1..=4)?)
        .map(|_| u.int_in_range(0..=31u16))
        .collect::<ArbResult<_>>()?;
    let Some(mut queue) = guest::raw_queue(&mem, &table, &heads) else {
        return Ok(());
    };
    for chain in guest::pop_all(&mut queue, &mem) {
        check_chain(u, &mem, &regions, chain)?;
    }
    Ok(())
}

fn in_memory(regions: &[(u64, usize)], addr: u64, len: u32) -> bool {
    if len == 0 {
        return true;
    }
    let (mut a, mut left) = (addr, len as u64);
    while left > 0 {
        let Some(&(s, l)) = regions.iter().find(|&&(s, l)| a >= s && a < s + l as u64) else {
            return false;
        };
        let n = (s + l as u64 - a).min(left);
        left -= n;
        a += n;
    }
    true
}

/// What `split_chain` must answer for these descriptors.
enum Expect {
    Ok {
        readable: Vec<(u64, u32)>,
        writable: Vec<(u64, u32)>,
    },
    Err(&'static str),
}

fn expect(regions: &[(u64, usize)], descs: &[virtio_queue::desc::split::Descriptor]) -> Expect {
    let (mut readable, mut writable) = (Vec::new(), Vec::new());
    let (mut rlen, mut wlen) = (0u32, 0u32);
    let mut seen_writable = false;
    for (i, d) in descs.iter().enumerate() {
        if i >= MAX_DESCRIPTORS {
            return Expect::Err("too many");
        }
        let is_write = d.flags() & WRITE != 0;
        if is_write {
            seen_writable = true;
        } else if seen_writable {
            return Expect::Err("order");
        }
        let total = if is_write { &mut wlen } else { &mut rlen };
        match total.checked_add(d.len()) {
            Some(t) => *total = t,
            None => return Expect::Err("overflow"),
        }
        if !in_memory(regions, d.addr().0, d.len()) {
            return Expect::Err("range");
        }
        let side = if is_write {
            &mut writable
        } else {
            &mut readable
        };
        side.push((d.addr().0, d.len()));
    }
    Expect::Ok { readable, writable }
}

fn err_name(e: &Error) -> &'static str {
    match e {
        Error::TooManyDescriptors { .. } => "too many",
        Error::ReadableAfterWritable => "order",
        Error::TotalLengthOverflow => "overflow",
        Error::AddressOutOfRange { .. } => "range",
        other => panic!("split_chain failed in an unexpected way: {other}"),
    }
}

fn check_chain(
    u: &mut Unstructured<'_>,
    mem: &GuestMemoryMmap<()>,
    regions: &[(u64, usize)],
    chain: virtio_queue::DescriptorChain<&GuestMemoryMmap<()>>,
) -> ArbResult<()> {
    let descs: Vec<_> = chain.clone().take(MAX_DESCRIPTORS + 1).collect();
    let want = expect(regions, &descs);
    let snapshot = snapshot(mem, regions);
    match (split_chain(mem, chain), want) {
        (Err(e), Expect::Err(w)) => assert_eq!(err_name(&e), w, "split_chain: {e}"),
        (Err(e), Expect::Ok { .. }) => panic!("split_chain refused a good chain: {e}"),
        (Ok(_), Expect::Err(w)) => panic!("split_chain accepted a bad chain ({w}): {descs:?}"),
        (Ok((r, w)), Expect::Ok { readable, writable }) => {
            let rsum: u64 = readable.iter().map(|d| d.1 as u64).sum();
            let wsum: u64 = writable.iter().map(|d| d.1 as u64).sum();
            assert_eq!(r.available_bytes() as u64, rsum);
            assert_eq!(w.available_bytes() as u64, wsum);
            exercise_reader(u, &stream(mem, &readable), r)?;
            let written = exercise_writer(u, wsum as usize, w)?;
            check_memory(mem, regions, &snapshot, &writable, &written);
        }
    }
    Ok(())
}

fn snapshot(mem: &GuestMemoryMmap<()>, regions: &[(u64, usize)]) -> Vec<Vec<u8>> {
    regions
        .iter()
        .map(|&(s, l)| {
            let mut v = vec![0u8; l];
            mem.read_slice(&mut v, GuestAddress(s)).unwrap();
            v
        })
        .collect()
}

/// The bytes of `ranges` in guest memory, concatenated.
fn stream(mem: &GuestMemoryMmap<()>, ranges: &[(u64, u32)]) -> Vec<u8> {
    let mut v = Vec::new();
    for &(a, l) in ranges {
        let mut part = vec![0u8; l as usize];
        mem.read_slice(&mut part, GuestAddress(a)).unwrap();
        v.extend_from_slice(&part);
    }
    v
}

/// A memfd, one per purpose and process.
fn memfd(name: &'static std::ffi::CStr) -> std::fs::File {
    use std::os::fd::FromRawFd;
    // SAFETY: a NUL-terminated name; the returned descriptor is owned by the File.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    assert!(fd >= 0, "memfd_create");
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    unsafe { std::fs::File::from_raw_fd(fd) }
}

fn sink() -> &'static std::fs::File {
    static F: std::sync::OnceLock<std::fs::File> = std::sync::OnceLock::new();
    F.get_or_init(|| memfd(c"fuzz-sink"))
}

const SOURCE_LEN: usize = 8192;

fn source() -> &'static std::fs::File {
    static F: std::sync::OnceLock<std::fs::File> = std::sync::OnceLock::new();
    F.get_or_init(|| {
        let f = memfd(c"fuzz-source");
        let data: Vec<u8> = (0..SOURCE_LEN as u64)
            .map(|a| pattern(a ^ 0x5555))
            .collect();
        f.write_all_at(&data, 0).unwrap();
        f
    })
}

fn exercise_reader(u: &mut Unstructured<'_>, expected: &[u8], mut r: Reader<'_>) -> ArbResult<()> {
    let total = expected.len();
    let mut pos = 0usize;
    for _ in 0..u.int_in_range(0..=12)? {
        let avail = total - pos;
        let n = u.int_in_range(0..=avail + 16)?;
        match u.int_in_range(0..=5)? {
            0 => match r.read_obj::<u64>() {
                Ok(v) => {
                    assert_eq!(&v.to_ne_bytes()[..], &expected[pos..pos + 8]);
                    pos += 8;
                }
                Err(_) => assert!(avail < 8, "read_obj::<u64> failed with {avail} left"),
            },
            1 => match r.read_obj::<InHeader>() {
                Ok(v) => {
                    assert_eq!(v.as_slice(), &expected[pos..pos + 40]);
                    pos += 40;
                }
                Err(_) => assert!(avail < 40, "read_obj::<InHeader> failed with {avail} left"),
            },
            2 => {
                let mut buf = vec![7u8; 3];
                match r.read_to_vec(&mut buf, n) {
                    Ok(()) => {
                        assert_eq!(buf, &expected[pos..pos + n]);
                        pos += n;
                    }
                    Err(_) => assert!(n > avail && buf.is_empty()),
                }
            }
            3 => match r.skip(n) {
                Ok(()) => pos += n,
                Err(_) => assert!(n > avail),
            },
            4 => {
                let mut buf = vec![0u8; n];
                let k = r.read(&mut buf).unwrap();
                assert_eq!(k, n.min(avail));
                assert_eq!(&buf[..k], &expected[pos..pos + k]);
                pos += k;
            }
            _ => {
                let off = u.int_in_range(0..=4096u64)?;
                match r.read_to(&mut sink().try_clone().unwrap(), n, off) {
                    Ok(k) => {
                        assert_eq!(k, n.min(avail), "zero-copy read_to moved {k} of {n}");
                        let mut back = vec![0u8; k];
                        sink().read_exact_at(&mut back, off).unwrap();
                        assert_eq!(back, &expected[pos..pos + k]);
                        pos += k;
                    }
                    Err(e) => panic!("read_to a memfd failed: {e}"),
                }
            }
        }
        assert_eq!(r.available_bytes(), total - pos);
        assert_eq!(r.bytes_read(), pos);
    }
    Ok(())
}

/// Runs writer operations; returns what each position of the writable part should now hold.
fn exercise_writer(
    u: &mut Unstructured<'_>,
    total: usize,
    w: Writer<'_>,
) -> ArbResult<Vec<Option<u8>>> {
    let mut written: Vec<Option<u8>> = vec![None; total];
    // (writer, position, end) in stream coordinates.
    let mut writers = vec![(w, 0usize, total)];
    for _ in 0..u.int_in_range(0..=12)? {
        let i = u.int_in_range(0..=writers.len() - 1)?;
        let (w, pos, end) = &mut writers[i];
        let avail = *end - *pos;
        assert_eq!(w.available_bytes(), avail);
        let n = u.int_in_range(0..=avail + 16)?;
        let mut record = |at: usize, bytes: &[u8]| {
            for (k, b) in bytes.iter().enumerate() {
                written[at + k] = Some(*b);
            }
        };
        match u.int_in_range(0..=3)? {
            0 => {
                let v: u64 = u.arbitrary()?;
                match w.write_obj(v) {
                    Ok(()) => {
                        record(*pos, &v.to_ne_bytes());
                        *pos += 8;
                    }
                    Err(_) => assert!(avail < 8),
                }
            }
            1 => {
                let buf: Vec<u8> = (0..n).map(|k| (k as u8) ^ 0xa5).collect();
                let k = w.write(&buf).unwrap();
                assert_eq!(k, n.min(avail));
                record(*pos, &buf[..k]);
                *pos += k;
            }
            2 => {
                let at = n;
                match w.split_at(at) {
                    Ok(tail) => {
                        assert!(at <= avail);
                        assert_eq!(tail.bytes_written(), 0);
                        let split = (tail, *pos + at, *end);
                        *end = *pos + at;
                        if writers.len() < 4 {
                            writers.push(split);
                        }
                    }
                    Err(_) => assert!(at > avail),
                }
            }
            _ => {
                let off = u.int_in_range(0..=SOURCE_LEN as u64)?;
                let k = w
                    .write_from(&mut source().try_clone().unwrap(), n, off)
                    .unwrap_or_else(|e| panic!("write_from a memfd failed: {e}"));
                let want = n.min(avail).min(SOURCE_LEN - off as usize);
                assert_eq!(k, want, "zero-copy write_from moved {k}, want {want}");
                let mut data = vec![0u8; k];
                source().read_exact_at(&mut data, off).unwrap();
                record(*pos, &data);
                *pos += k;
            }
        }
    }
    Ok(written)
}

/// Nothing outside the writable descriptors changed; inside them (when they do not overlap
/// each other) every written position holds what was written.
fn check_memory(
    mem: &GuestMemoryMmap<()>,
    regions: &[(u64, usize)],
    before: &[Vec<u8>],
    writable: &[(u64, u32)],
    written: &[Option<u8>],
) {
    let after = snapshot(mem, regions);
    let inside = |a: u64| writable.iter().any(|&(s, l)| a >= s && a < s + l as u64);
    for (ri, &(start, len)) in regions.iter().enumerate() {
        for off in 0..len {
            let a = start + off as u64;
            if before[ri][off] != after[ri][off] {
                assert!(
                    inside(a),
                    "guest byte {a:#x} outside every writable descriptor changed"
                );
            }
        }
    }
    let mut sorted: Vec<(u64, u64)> = writable
        .iter()
        .filter(|d| d.1 > 0)
        .map(|&(s, l)| (s, s + l as u64))
        .collect();
    sorted.sort_unstable();
    if sorted.windows(2).any(|p| p[0].1 > p[1].0) {
        return;
    }
    let mut pos = 0usize;
    for &(a, l) in writable {
        for k in 0..l as usize {
            if let Some(b) = written[pos + k] {
                let mut got = [0u8];
                mem.read_slice(&mut got, GuestAddress(a + k as u64))
                    .unwrap();
                assert_eq!(
                    got[0],
                    b,
                    "writable position {} (guest {:#x})",
                    pos + k,
                    a + k as u64
                );
            }
        }
        pos += l as usize;
    }
}
