//! Attack catalogue, framing, with the sentinel check on every case.
//!
//! Already covered by `tests/malformed.rs`, by name: `len` smaller than the header
//! (`truncated_header`), larger or smaller than the chain (`header_len_disagrees_with_the_chain`),
//! BATCH_FORGET `count` beyond the bytes present (`no_reply_opcodes_stay_silent_when_malformed`),
//! READ/READDIR/READDIRPLUS `size` beyond the writable space or `u32::MAX`
//! (`read_size_beyond_the_writable_space`), GETXATTR `size` `u32::MAX` and beyond the chain
//! (`getxattr_with_a_huge_size_is_capped`), a second INIT (`second_init`) and requests before
//! INIT (`requests_before_init`).
//!
//! Here: `len` beyond `max_write` (WRITE payloads and whole requests), REMOVEMAPPING `count`
//! far beyond the bytes present, LISTXATTR and READDIR sizes beyond the writable space, a
//! request cut into one-byte descriptors, and the malformed.rs framing cases again with the
//! sentinel beside the share checked after each.

#[path = "attacks/mod.rs"]
mod attacks;
mod common;

use std::fs;

use attacks::{assert_errno_reply, cname, header, request, unique, Arena, HDR};
use common::Config;
use guest_driver::abi::{
    BatchForgetIn, ForgetOne, GetattrIn, GetxattrIn, InitIn, Opcode, ReadIn, RemovemappingIn,
    RemovemappingOne, WriteIn, ROOT_ID,
};
use guest_driver::{Layout, Options};
use vm_memory::ByteValued;

fn arena() -> Arena {
    let cfg = Config {
        xattr: true,
        fsjail_args: vec!["--dax-window".into(), "4M".into()],
        ..Config::default()
    };
    let b = Arena::backend(&cfg);
    // Room for a request cut into one-byte descriptors.
    let s = b.session_with(Options {
        queue_size: 512,
        ..b.options()
    });
    Arena::with(b, s)
}

#[test]
fn lengths_beyond_max_write() {
    let mut a = arena();
    let max = a.s.max_write();
    let (e, o) =
        a.s.create(ROOT_ID, "w", libc::S_IFREG | 0o644, libc::O_RDWR as u32, 0)
            .unwrap();
    // A WRITE one byte over max_write, honestly framed.
    for size in [max + 1, max + 4096, 2 * max] {
        let data = vec![0x77u8; size as usize];
        let arg = WriteIn {
            fh: o.fh,
            size,
            ..Default::default()
        };
        a.refused(
            &request(Opcode::Write, e.nodeid, &[arg.as_slice(), &data]),
            libc::EINVAL,
            &format!("WRITE of {size} bytes"),
        );
    }
    assert_eq!(
        fs::metadata(a.b.host("w")).unwrap().len(),
        0,
        "a refused WRITE wrote"
    );
    // A request far longer than any opcode needs (a GETATTR padded to 4 MiB): EINVAL before
    // anything is copied.
    let pad = vec![0u8; 4 << 20];
    a.refused(
        &request(
            Opcode::Getattr,
            ROOT_ID,
            &[GetattrIn::default().as_slice(), &pad],
        ),
        libc::EINVAL,
        "4 MiB GETATTR",
    );
    // The largest WRITE allowed still works.
    let data = vec![0x11u8; max as usize];
    assert_eq!(a.s.write(e.nodeid, o.fh, 0, &data).unwrap(), max);
    // READ of max_write + 1 into a big enough chain: EINVAL.
    let arg = ReadIn {
        fh: o.fh,
        size: max + 1,
        ..Default::default()
    };
    let (req, u) = request(Opcode::Read, e.nodeid, &[arg.as_slice()]);
    let r = a.send(&req, max + 4096);
    assert_errno_reply(&r, u, libc::EINVAL, "READ of max_write + 1");
    a.verify("lengths beyond max_write");
}

#[test]
fn removemapping_count_beyond_the_bytes_present() {
    let mut a = arena();
    let f = a.lookup("probe");
    let one = RemovemappingOne {
        moffset: 0,
        len: 2 << 20,
    };
    for (count, entries) in [
        (2u32, 1usize),
        (1000, 1),
        (u32::MAX, 1),
        (1, 0),
        (0, 0),
        (0, 1),
        (257, 257),
    ] {
        let mut body = RemovemappingIn { count }.as_slice().to_vec();
        for _ in 0..entries {
            body.extend_from_slice(one.as_slice());
        }
        a.refused(
            &request(Opcode::Removemapping, f, &[&body]),
            libc::EINVAL,
            &format!("REMOVEMAPPING count {count} with {entries} entries"),
        );
    }
    // Half an entry.
    let mut body = RemovemappingIn { count: 1 }.as_slice().to_vec();
    body.extend_from_slice(&one.as_slice()[..8]);
    a.refused(
        &request(Opcode::Removemapping, f, &[&body]),
        libc::EINVAL,
        "REMOVEMAPPING half an entry",
    );
    // The same for BATCH_FORGET, which never replies: silence, and the probe's node survives.
    let node = a.lookup("probe");
    for count in [2u32, 1 << 20, u32::MAX] {
        let head = BatchForgetIn { count, dummy: 0 };
        let entry = ForgetOne {
            nodeid: node,
            nlookup: 1,
        };
        let (req, _) = request(Opcode::BatchForget, 0, &[head.as_slice(), entry.as_slice()]);
        let r = a.send_on(0, &req, 256);
        assert_eq!(r.used_len, 0, "BATCH_FORGET count {count} replied");
        a.verify(&format!("BATCH_FORGET count {count}"));
    }
    assert_eq!(
        a.s.getattr(node, None).unwrap().attr.size,
        attacks::PROBE.len() as u64
    );
}

#[test]
fn sizes_beyond_the_writable_space() {
    let mut a = arena();
    let f = a.lookup("probe");
    a.s.setxattr(f, "user.k", b"value", 0).unwrap();
    let dir = a.s.opendir(ROOT_ID, libc::O_RDONLY as u32).unwrap().fh;
    for size in [4097u32, 1 << 20, u32::MAX] {
        // LISTXATTR: the list fits the chain, whatever size claims.
        let q = GetxattrIn { size, padding: 0 };
        let (req, u) = request(Opcode::Listxattr, f, &[q.as_slice()]);
        let r = a.send(&req, 4096);
        let (len, err, uu) = attacks::out_header(&r);
        assert_eq!((err, uu), (0, u), "LISTXATTR size {size}");
        assert!(len as usize > 16 && len <= 4096);
        // Into a chain too small for the list: ERANGE.
        let r = a.send(&req, 18);
        assert_errno_reply(
            &r,
            u,
            libc::ERANGE,
            &format!("LISTXATTR size {size} into 18"),
        );
        // READDIR with a size beyond the chain: EINVAL, not an overrun.
        let arg = ReadIn {
            fh: dir,
            size,
            ..Default::default()
        };
        let (req, u) = request(Opcode::Readdir, ROOT_ID, &[arg.as_slice()]);
        let r = a.send(&req, 4096);
        assert_errno_reply(
            &r,
            u,
            libc::EINVAL,
            &format!("READDIR size {size} into 4096"),
        );
        a.verify(&format!("size {size}"));
    }
}

/// A request cut into one-byte descriptors (header, struct and name straddle them), and the
/// malformed.rs framing cases once more with the sentinel.
#[test]
fn fragmented_and_malformed_framing_leave_the_host_alone() {
    let mut a = arena();
    for n in [1, 3, 7] {
        a.s.set_layout(Layout::Fragmented(n));
        let e = a.s.lookup(ROOT_ID, "probe").unwrap();
        assert_eq!(e.attr.size, attacks::PROBE.len() as u64);
        a.s.getattr(e.nodeid, None).unwrap();
        a.s.set_layout(Layout::PerArg);
        a.verify(&format!("{n}-byte descriptors"));
    }

    let full = request(Opcode::Getattr, ROOT_ID, &[GetattrIn::default().as_slice()]).0;
    for cut in [1usize, 20, HDR - 1] {
        let r = a.send(&full[..cut], 4096);
        assert_errno_reply(&r, 0, libc::EINVAL, &format!("{cut}-byte header"));
        a.verify("truncated header");
    }
    for claimed in [0usize, HDR - 1, HDR + 17, u32::MAX as usize] {
        let u = unique();
        let mut req = header(claimed, Opcode::Getattr as u32, u, ROOT_ID)
            .as_slice()
            .to_vec();
        req.extend_from_slice(GetattrIn::default().as_slice());
        a.refused(&(req, u), libc::EINVAL, &format!("len {claimed}"));
    }
    // A second INIT, with a different max_write and a newer minor: refused, nothing changes.
    let init = InitIn {
        major: 7,
        minor: 99,
        max_readahead: u32::MAX,
        flags: u32::MAX,
        flags2: u32::MAX,
        unused: [0; 11],
    };
    let max = a.s.max_write();
    a.refused(
        &request(Opcode::Init, 0, &[init.as_slice()]),
        libc::EIO,
        "second INIT",
    );
    assert_eq!(a.s.max_write(), max);
    // GETXATTR of a name with no NUL, LOOKUP with the name split over descriptors.
    let q = GetxattrIn {
        size: 64,
        padding: 0,
    };
    a.refused(
        &request(Opcode::Getxattr, ROOT_ID, &[q.as_slice(), b"user.k"]),
        libc::EINVAL,
        "xattr name without NUL",
    );
    let (req, u) = request(Opcode::Lookup, ROOT_ID, &[&cname(b"probe")]);
    let parts: Vec<&[u8]> = req.chunks(7).collect();
    let r = a.s.send_raw(1, &parts, &[64, 64, 64]).unwrap();
    let (_, err, uu) = attacks::out_header(&r);
    assert_eq!((err, uu), (0, u), "LOOKUP split over descriptors");
    a.verify("framing");
}
