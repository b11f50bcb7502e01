//! The state format: round trips, and every field truncated, oversized or out of range.

use super::*;

fn sample() -> DeviceState {
    DeviceState {
        fuse: FuseSettings {
            minor: 38,
            flags: 0x1_0000_0123,
            max_write: 1 << 20,
        },
        next_node: 10,
        next_handle: 7,
        nodes: vec![
            NodeRecord {
                id: 2,
                generation: 0,
                lookups: 3,
                kind: Kind::Directory,
                path: Some(b"dir".to_vec()),
            },
            NodeRecord {
                id: 5,
                generation: 9,
                lookups: 1,
                kind: Kind::File,
                path: Some(b"dir/file with spaces".to_vec()),
            },
            NodeRecord {
                id: 9,
                generation: 0,
                lookups: 2,
                kind: Kind::Other,
                path: None,
            },
        ],
        handles: vec![
            HandleRecord {
                fh: 1,
                node: 5,
                flags: libc::O_RDWR as u32,
                dir: false,
            },
            HandleRecord {
                fh: 6,
                node: 1,
                flags: libc::O_RDONLY as u32 | libc::O_DIRECTORY as u32,
                dir: true,
            },
        ],
        dax: vec![DaxRecord {
            moffset: 0,
            len: 2 << 20,
            foffset: 4 << 20,
            node: 5,
            writable: true,
        }],
    }
}

#[test]
fn round_trip() {
    let mut s = sample();
    // Node 5 is forgotten by the guest but open (handle 1): it is kept with no lookups.
    s.nodes[1].lookups = 0;
    let bytes = s.encode().unwrap();
    assert_eq!(DeviceState::decode(&bytes).unwrap(), s);
    // Through a reader in chunks, as from the frontend's pipe.
    let mut r = std::io::Cursor::new(bytes.clone());
    assert_eq!(DeviceState::read_from(&mut r).unwrap(), s);
    let mut out = Vec::new();
    s.write_to(&mut out).unwrap();
    assert_eq!(out, bytes);
    // An empty state (nothing known yet) round-trips too.
    let empty = DeviceState {
        nodes: vec![],
        handles: vec![],
        dax: vec![],
        ..s
    };
    assert_eq!(
        DeviceState::decode(&empty.encode().unwrap()).unwrap(),
        empty
    );
    // A device the guest never initialised.
    let fresh = DeviceState {
        fuse: FuseSettings {
            minor: 0,
            flags: 0,
            max_write: 0,
        },
        ..empty
    };
    assert_eq!(
        DeviceState::decode(&fresh.encode().unwrap()).unwrap(),
        fresh
    );
}

#[test]
fn every_truncation_is_refused() {
    let bytes = sample().encode().unwrap();
    for len in 0..bytes.len() {
        match DeviceState::decode(&bytes[..len]) {
            Err(StateError::Truncated(_)) | Err(StateError::BadMagic) => {}
            // Cut inside a path: the shorter path reads, and what follows no longer parses or
            // no longer matches the checksum.
            Err(_) => {}
            Ok(s) => panic!("a stream cut at {len} of {} decoded: {s:?}", bytes.len()),
        }
    }
    assert!(matches!(
        DeviceState::decode(&bytes[..20]),
        Err(StateError::Truncated(_))
    ));
}

#[test]
fn trailing_bytes_and_corruption_are_refused() {
    let mut bytes = sample().encode().unwrap();
    bytes.push(0);
    assert!(matches!(
        DeviceState::decode(&bytes),
        Err(StateError::Trailing(1))
    ));
    let mut bytes = sample().encode().unwrap();
    // Flip one bit in every byte of the body in turn: each is refused (checksum, or the field).
    let body = bytes.len() - 16;
    for i in 0..body {
        bytes[i] ^= 0x10;
        assert!(
            DeviceState::decode(&bytes).is_err(),
            "bit flip at {i} accepted"
        );
        bytes[i] ^= 0x10;
    }
    DeviceState::decode(&bytes).unwrap();
    let end = bytes.len() - 16;
    bytes[end] = b'X';
    assert!(matches!(
        DeviceState::decode(&bytes),
        Err(StateError::BadTrailer)
    ));
}

#[test]
fn header_is_checked() {
    let mut bytes = sample().encode().unwrap();
    bytes[0] = b'X';
    assert!(matches!(
        DeviceState::decode(&bytes),
        Err(StateError::BadMagic)
    ));
    let mut bytes = sample().encode().unwrap();
    bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
    DeviceState::reseal(&mut bytes);
    assert!(matches!(
        DeviceState::decode(&bytes),
        Err(StateError::Version(2))
    ));
}

/// Offsets of the counts in the sample's stream.
fn count_offsets(s: &DeviceState) -> (usize, usize, usize) {
    let nodes = 8 + 4 + 4 + 8 + 4 + 8 + 8;
    let mut handles = nodes + 4;
    for n in &s.nodes {
        handles += 8 + 8 + 8 + 1 + 2 + n.path.as_ref().map_or(0, Vec::len);
    }
    let dax = handles + 4 + s.handles.len() * 21;
    (nodes, handles, dax)
}

#[test]
fn oversized_counts_are_refused_before_allocating() {
    let s = sample();
    let (nodes, handles, dax) = count_offsets(&s);
    for (at, max, what) in [
        (nodes, MAX_NODES, "nodes"),
        (handles, MAX_HANDLES, "handles"),
        (dax, MAX_DAX, "DAX mappings"),
    ] {
        let mut bytes = s.encode().unwrap();
        bytes[at..at + 4].copy_from_slice(&(max + 1).to_le_bytes());
        DeviceState::reseal(&mut bytes);
        match DeviceState::decode(&bytes) {
            Err(StateError::TooMany { what: w, .. }) => assert_eq!(w, what),
            other => panic!("{what}: {other:?}"),
        }
        // A count within the limit but beyond the bytes present is truncation.
        let mut bytes = s.encode().unwrap();
        bytes[at..at + 4].copy_from_slice(&max.to_le_bytes());
        DeviceState::reseal(&mut bytes);
        assert!(
            matches!(DeviceState::decode(&bytes), Err(StateError::Truncated(_))),
            "{what}"
        );
    }
    // A stream longer than the bound is refused while it is read.
    let mut r = std::io::Read::take(std::io::repeat(0), MAX_STATE_BYTES + 1);
    assert!(matches!(
        DeviceState::read_from(&mut r),
        Err(StateError::TooLarge)
    ));
}

/// One alteration of the sample state.
type Change = Box<dyn Fn(&mut DeviceState)>;

/// Each out-of-range field, made through the unchecked encoder: decode refuses it.
#[test]
fn out_of_range_fields_are_refused() {
    let cases: Vec<(&str, Change)> = vec![
        ("minor low", Box::new(|s| s.fuse.minor = 26)),
        ("minor high", Box::new(|s| s.fuse.minor = 39)),
        ("max_write low", Box::new(|s| s.fuse.max_write = 4095)),
        (
            "max_write high",
            Box::new(|s| s.fuse.max_write = (16 << 20) + 1),
        ),
        ("next_node", Box::new(|s| s.next_node = 1)),
        (
            "uninitialised with nodes",
            Box::new(|s| {
                s.fuse = FuseSettings {
                    minor: 0,
                    flags: 0,
                    max_write: 0,
                };
            }),
        ),
        (
            "uninitialised with flags",
            Box::new(|s| {
                s.fuse = FuseSettings {
                    minor: 0,
                    flags: 1,
                    max_write: 0,
                };
                s.nodes.clear();
                s.handles.clear();
                s.dax.clear();
            }),
        ),
        ("next_handle", Box::new(|s| s.next_handle = 0)),
        ("node id 0", Box::new(|s| s.nodes[0].id = 0)),
        ("node id root", Box::new(|s| s.nodes[0].id = ROOT)),
        ("node id past next", Box::new(|s| s.nodes[0].id = 10)),
        ("node twice", Box::new(|s| s.nodes[1].id = 2)),
        (
            "no lookups, no handle",
            Box::new(|s| s.nodes[2].lookups = 0),
        ),
        ("empty path", Box::new(|s| s.nodes[0].path = Some(vec![]))),
        (
            "absolute",
            Box::new(|s| s.nodes[0].path = Some(b"/etc".to_vec())),
        ),
        (
            "dotdot",
            Box::new(|s| s.nodes[0].path = Some(b"dir/../..".to_vec())),
        ),
        (
            "dot",
            Box::new(|s| s.nodes[0].path = Some(b"./dir".to_vec())),
        ),
        (
            "double slash",
            Box::new(|s| s.nodes[0].path = Some(b"a//b".to_vec())),
        ),
        (
            "trailing slash",
            Box::new(|s| s.nodes[0].path = Some(b"a/".to_vec())),
        ),
        (
            "nul",
            Box::new(|s| s.nodes[0].path = Some(b"a\0b".to_vec())),
        ),
        (
            "long name",
            Box::new(|s| s.nodes[0].path = Some(vec![b'a'; 256])),
        ),
        (
            "long path",
            Box::new(|s| {
                let mut p = Vec::new();
                while p.len() <= MAX_PATH {
                    p.extend_from_slice(b"abcdefgh/");
                }
                p.extend_from_slice(b"x");
                s.nodes[0].path = Some(p);
            }),
        ),
        ("handle 0", Box::new(|s| s.handles[0].fh = 0)),
        ("handle past next", Box::new(|s| s.handles[0].fh = 7)),
        ("handle twice", Box::new(|s| s.handles[1].fh = 1)),
        (
            "handle on unknown node",
            Box::new(|s| s.handles[0].node = 3),
        ),
        ("dir handle on file", Box::new(|s| s.handles[0].dir = true)),
        ("file handle on dir", Box::new(|s| s.handles[1].dir = false)),
        ("open flags", Box::new(|s| s.handles[0].flags = 0x8000_0000)),
        (
            "O_TMPFILE",
            Box::new(|s| s.handles[0].flags = libc::O_TMPFILE as u32 | 2),
        ),
        ("dax len 0", Box::new(|s| s.dax[0].len = 0)),
        ("dax wraps", Box::new(|s| s.dax[0].moffset = u64::MAX)),
        ("dax file wraps", Box::new(|s| s.dax[0].foffset = u64::MAX)),
        ("dax unknown node", Box::new(|s| s.dax[0].node = 4)),
    ];
    for (what, change) in cases {
        let mut s = sample();
        change(&mut s);
        assert!(s.validate().is_err(), "{what}: validate accepted it");
        assert!(s.encode().is_err(), "{what}: encode accepted it");
        let bytes = s.encode_unchecked();
        match DeviceState::decode(&bytes) {
            Ok(_) => panic!("{what}: decoded"),
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
    // Bytes the encoder never writes: a bad kind, a bad bool.
    let s = sample();
    let (nodes, handles, _) = count_offsets(&s);
    let mut bytes = s.encode().unwrap();
    bytes[nodes + 4 + 24] = 7; // first node's kind
    DeviceState::reseal(&mut bytes);
    assert!(matches!(
        DeviceState::decode(&bytes),
        Err(StateError::OutOfRange {
            what: "node kind",
            value: 7
        })
    ));
    let mut bytes = s.encode().unwrap();
    bytes[handles + 4 + 20] = 2; // first handle's kind
    DeviceState::reseal(&mut bytes);
    assert!(matches!(
        DeviceState::decode(&bytes),
        Err(StateError::OutOfRange {
            what: "handle kind",
            value: 2
        })
    ));
    // A path length above PATH_MAX (but not the vanished marker).
    let mut bytes = s.encode().unwrap();
    let at = nodes + 4 + 25;
    bytes[at..at + 2].copy_from_slice(&5000u16.to_le_bytes());
    DeviceState::reseal(&mut bytes);
    assert!(matches!(
        DeviceState::decode(&bytes),
        Err(StateError::BadPath { node: 2, .. })
    ));
}
