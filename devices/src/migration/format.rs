//! The device state a migrating worker hands to the next one: its wire format.
//!
//! Little-endian, length-prefixed, version 1. Every count and length is checked against a
//! limit before anything is allocated, every value against its range, and the stream ends with
//! a checksum of everything before it, so a truncated, oversized or altered stream is refused
//! with an error naming the field, never half-applied.
//!
//! ```text
//! header    magic "FSJAILMS" (8 bytes), version u32 = 1
//! fuse      minor u32, flags u64 (granted in INIT, flags2 << 32 | flags), max_write u32;
//!           all three 0 (and no nodes, handles or mappings) when the guest never sent INIT
//! counters  next_node u64, next_handle u64   (the next ids the guest will be handed)
//! nodes     count u32 (<= MAX_NODES), then per node:
//!             id u64 (2.. < next_node), generation u64, lookups u64 (0 only for a node
//!             the guest forgot while a handle on it is open), kind u8
//!             (0 file, 1 directory, 2 other), path_len u16, path bytes
//!             (relative to the share, components separated by '/', no "", ".", "..", NUL;
//!             path_len VANISHED = 0xffff and no bytes: the source could not name it)
//! handles   count u32 (<= MAX_HANDLES), then per handle:
//!             fh u64 (1.. < next_handle), node u64 (1 or a node above), flags u32
//!             (open(2) flags the guest opened with), kind u8 (0 file, 1 directory)
//! dax       count u32 (<= MAX_DAX), then per mapping:
//!             moffset u64, len u64, foffset u64, node u64, writable u8 (0 or 1)
//! trailer   magic "FSJAILME" (8 bytes), checksum u64 (FNV-1a 64 of every byte before it)
//! ```
//!
//! The root (node 1) is never listed: it always exists and is never forgotten.

use std::collections::HashSet;
use std::io::{self, Read, Write};

use thiserror::Error;

pub const MAGIC: &[u8; 8] = b"FSJAILMS";
pub const END_MAGIC: &[u8; 8] = b"FSJAILME";
pub const VERSION: u32 = 1;
/// Nodes a state may list: far more than a guest's dentry cache holds.
pub const MAX_NODES: u32 = 1 << 20;
/// Open handles a state may list (the worker's fd budget is lower).
pub const MAX_HANDLES: u32 = 1 << 20;
/// DAX mappings a state may list.
pub const MAX_DAX: u32 = 1 << 16;
/// Longest path: PATH_MAX.
pub const MAX_PATH: usize = 4095;
/// Longest component: NAME_MAX.
pub const MAX_NAME: usize = 255;
/// `path_len` of a node the source could not name.
pub const VANISHED: u16 = 0xffff;
/// The whole stream, bounded before it is read: the fixed parts, every node with the longest
/// path, every handle and mapping.
pub const MAX_STATE_BYTES: u64 = 256 << 20;
/// FUSE minors a state may carry (what the server negotiates).
pub const MIN_MINOR: u32 = 27;
pub const MAX_MINOR: u32 = 38;
/// The root's node id.
pub const ROOT: u64 = 1;
/// Chunk size for writing the stream.
const CHUNK: usize = 64 << 10;

/// What kind of inode a node is; directories are re-opened with opendir.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Directory,
    Other,
}

impl Kind {
    fn code(self) -> u8 {
        match self {
            Kind::File => 0,
            Kind::Directory => 1,
            Kind::Other => 2,
        }
    }
}

/// FUSE settings negotiated in INIT, which the guest will not send again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FuseSettings {
    pub minor: u32,
    pub flags: u64,
    pub max_write: u32,
}

/// One inode the guest knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeRecord {
    pub id: u64,
    pub generation: u64,
    pub lookups: u64,
    pub kind: Kind,
    /// Relative to the share, `None` when the source could not name it (deleted while known).
    pub path: Option<Vec<u8>>,
}

/// One open handle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandleRecord {
    pub fh: u64,
    pub node: u64,
    pub flags: u32,
    pub dir: bool,
}

/// One live DAX mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DaxRecord {
    pub moffset: u64,
    pub len: u64,
    pub foffset: u64,
    pub node: u64,
    pub writable: bool,
}

/// The whole state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceState {
    pub fuse: FuseSettings,
    pub next_node: u64,
    pub next_handle: u64,
    pub nodes: Vec<NodeRecord>,
    pub handles: Vec<HandleRecord>,
    pub dax: Vec<DaxRecord>,
}

/// Why a stream was refused. Each names the field.
#[derive(Debug, Error)]
pub enum StateError {
    #[error("reading the device state: {0}")]
    Io(#[from] io::Error),
    #[error("device state truncated in {0}")]
    Truncated(&'static str),
    #[error("not an fsjail device state (bad magic)")]
    BadMagic,
    #[error("device state version {0} is not supported (this worker reads version {VERSION})")]
    Version(u32),
    #[error("device state larger than {MAX_STATE_BYTES} bytes")]
    TooLarge,
    #[error("device state: {what} count {count} exceeds {max}")]
    TooMany {
        what: &'static str,
        count: u32,
        max: u32,
    },
    #[error("device state: {what} {value} out of range")]
    OutOfRange { what: &'static str, value: u64 },
    #[error("device state: {what} {value} listed twice")]
    Duplicate { what: &'static str, value: u64 },
    #[error("device state: node {node}: path {why}")]
    BadPath { node: u64, why: &'static str },
    #[error("device state: bad end marker")]
    BadTrailer,
    #[error("device state: checksum mismatch")]
    Checksum,
    #[error("device state: {0} bytes after the end")]
    Trailing(usize),
}

/// FNV-1a, 64 bit: enough to catch truncation and corruption of a local pipe's stream (this is
/// no MAC: the frontend that carries the stream could forge any state, which is why every field
/// is checked on its own).
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Checks one path: relative, components of 1..=NAME_MAX bytes, none "." or "..", no NUL.
pub fn check_path(node: u64, path: &[u8]) -> Result<(), StateError> {
    let bad = |why| Err(StateError::BadPath { node, why });
    if path.is_empty() {
        return bad("is empty");
    }
    if path.len() > MAX_PATH {
        return bad("is longer than PATH_MAX");
    }
    if path.contains(&0) {
        return bad("holds a NUL byte");
    }
    for part in path.split(|&b| b == b'/') {
        match part {
            b"" => return bad("has an empty component (leading, trailing or double '/')"),
            b"." | b".." => return bad("has a '.' or '..' component"),
            p if p.len() > MAX_NAME => return bad("has a component longer than NAME_MAX"),
            _ => {}
        }
    }
    Ok(())
}

impl DeviceState {
    /// Checks every field and the relations between them (ids unique and below the counters,
    /// handles on known nodes, directory handles on directories, DAX on known nodes).
    pub fn validate(&self) -> Result<(), StateError> {
        let f = &self.fuse;
        if f.minor == 0 {
            // The guest never sent INIT: nothing else may be there.
            if f.flags != 0 || f.max_write != 0 {
                return Err(StateError::OutOfRange {
                    what: "FUSE settings of an uninitialised device",
                    value: f.flags | u64::from(f.max_write),
                });
            }
            if !(self.nodes.is_empty() && self.handles.is_empty() && self.dax.is_empty()) {
                return Err(StateError::OutOfRange {
                    what: "entries of an uninitialised device",
                    value: (self.nodes.len() + self.handles.len() + self.dax.len()) as u64,
                });
            }
        } else if !(MIN_MINOR..=MAX_MINOR).contains(&f.minor) {
            return Err(StateError::OutOfRange {
                what: "FUSE minor",
                value: f.minor.into(),
            });
        }
        if f.minor != 0 && !(4096..=(16 << 20)).contains(&f.max_write) {
            return Err(StateError::OutOfRange {
                what: "max_write",
                value: f.max_write.into(),
            });
        }
        if self.next_node <= ROOT {
            return Err(StateError::OutOfRange {
                what: "next node id",
                value: self.next_node,
            });
        }
        if self.next_handle == 0 {
            return Err(StateError::OutOfRange {
                what: "next handle",
                value: 0,
            });
        }
        count_ok("nodes", self.nodes.len(), MAX_NODES)?;
        count_ok("handles", self.handles.len(), MAX_HANDLES)?;
        count_ok("DAX mappings", self.dax.len(), MAX_DAX)?;
        let mut dirs = HashSet::new();
        let mut nodes = HashSet::with_capacity(self.nodes.len());
        for n in &self.nodes {
            if n.id <= ROOT || n.id >= self.next_node {
                return Err(StateError::OutOfRange {
                    what: "node id",
                    value: n.id,
                });
            }
            if !nodes.insert(n.id) {
                return Err(StateError::Duplicate {
                    what: "node",
                    value: n.id,
                });
            }
            if let Some(p) = &n.path {
                check_path(n.id, p)?;
            }
            if n.kind == Kind::Directory {
                dirs.insert(n.id);
            }
        }
        let known = |id: u64| id == ROOT || nodes.contains(&id);
        let is_dir = |id: u64| id == ROOT || dirs.contains(&id);
        let mut fhs = HashSet::with_capacity(self.handles.len());
        for h in &self.handles {
            if h.fh == 0 || h.fh >= self.next_handle {
                return Err(StateError::OutOfRange {
                    what: "handle",
                    value: h.fh,
                });
            }
            if !fhs.insert(h.fh) {
                return Err(StateError::Duplicate {
                    what: "handle",
                    value: h.fh,
                });
            }
            if !known(h.node) {
                return Err(StateError::OutOfRange {
                    what: "handle's node",
                    value: h.node,
                });
            }
            if h.dir != is_dir(h.node) {
                return Err(StateError::OutOfRange {
                    what: "handle kind for node",
                    value: h.node,
                });
            }
            // Only open(2)'s flags, and no O_TMPFILE: the server makes a guest's TMPFILE with
            // a named create, so no handle was ever opened with it.
            let tmpfile_bit = (libc::O_TMPFILE & !libc::O_DIRECTORY) as u32;
            if h.flags & !0o37_777_777 != 0 || h.flags & tmpfile_bit != 0 {
                return Err(StateError::OutOfRange {
                    what: "open flags",
                    value: h.flags.into(),
                });
            }
        }
        // A node the guest forgot is there only for the handles still open on it.
        for n in &self.nodes {
            if n.lookups == 0 && !self.handles.iter().any(|h| h.node == n.id) {
                return Err(StateError::OutOfRange {
                    what: "lookup count of a node without handles",
                    value: n.id,
                });
            }
        }
        for m in &self.dax {
            if m.len == 0 || m.moffset.checked_add(m.len).is_none() {
                return Err(StateError::OutOfRange {
                    what: "DAX mapping length",
                    value: m.len,
                });
            }
            if m.foffset.checked_add(m.len).is_none() {
                return Err(StateError::OutOfRange {
                    what: "DAX file offset",
                    value: m.foffset,
                });
            }
            if !nodes.contains(&m.node) {
                return Err(StateError::OutOfRange {
                    what: "DAX mapping's node",
                    value: m.node,
                });
            }
        }
        Ok(())
    }

    /// The stream, checked first: a state that would not load is never written.
    pub fn encode(&self) -> Result<Vec<u8>, StateError> {
        self.validate()?;
        let b = self.encode_unchecked();
        if b.len() as u64 > MAX_STATE_BYTES {
            return Err(StateError::TooLarge);
        }
        Ok(b)
    }

    /// The stream without the checks (for tests that need a hostile stream).
    pub fn encode_unchecked(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(64 + self.nodes.len() * 64 + self.handles.len() * 21);
        b.extend_from_slice(MAGIC);
        put32(&mut b, VERSION);
        put32(&mut b, self.fuse.minor);
        put64(&mut b, self.fuse.flags);
        put32(&mut b, self.fuse.max_write);
        put64(&mut b, self.next_node);
        put64(&mut b, self.next_handle);
        put32(&mut b, self.nodes.len() as u32);
        for n in &self.nodes {
            put64(&mut b, n.id);
            put64(&mut b, n.generation);
            put64(&mut b, n.lookups);
            b.push(n.kind.code());
            match &n.path {
                Some(p) => {
                    put16(&mut b, p.len() as u16);
                    b.extend_from_slice(p);
                }
                None => put16(&mut b, VANISHED),
            }
        }
        put32(&mut b, self.handles.len() as u32);
        for h in &self.handles {
            put64(&mut b, h.fh);
            put64(&mut b, h.node);
            put32(&mut b, h.flags);
            b.push(u8::from(h.dir));
        }
        put32(&mut b, self.dax.len() as u32);
        for m in &self.dax {
            put64(&mut b, m.moffset);
            put64(&mut b, m.len);
            put64(&mut b, m.foffset);
            put64(&mut b, m.node);
            b.push(u8::from(m.writable));
        }
        let sum = fnv1a(&b);
        b.extend_from_slice(END_MAGIC);
        put64(&mut b, sum);
        b
    }

    /// Replaces the checksum at the end of `bytes` with the right one (for tests that alter a
    /// field and want only that field to be refused).
    pub fn reseal(bytes: &mut [u8]) {
        if bytes.len() >= 16 {
            let end = bytes.len() - 16;
            let sum = fnv1a(&bytes[..end]);
            bytes[end + 8..].copy_from_slice(&sum.to_le_bytes());
        }
    }

    /// Writes the stream to `w` in chunks.
    pub fn write_to(&self, w: &mut impl Write) -> Result<(), StateError> {
        let bytes = self.encode()?;
        for chunk in bytes.chunks(CHUNK) {
            w.write_all(chunk)?;
        }
        w.flush()?;
        Ok(())
    }

    /// Reads a whole stream from `r` (at most [`MAX_STATE_BYTES`]) and decodes it.
    pub fn read_from(r: &mut impl Read) -> Result<DeviceState, StateError> {
        let mut bytes = Vec::new();
        let mut chunk = vec![0u8; CHUNK];
        loop {
            let n = match r.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            if bytes.len() as u64 + n as u64 > MAX_STATE_BYTES {
                return Err(StateError::TooLarge);
            }
            bytes.extend_from_slice(&chunk[..n]);
        }
        Self::decode(&bytes)
    }

    /// Decodes and validates a whole stream.
    pub fn decode(bytes: &[u8]) -> Result<DeviceState, StateError> {
        if bytes.len() as u64 > MAX_STATE_BYTES {
            return Err(StateError::TooLarge);
        }
        let mut c = Cursor { b: bytes, pos: 0 };
        if c.take(8, "header")? != MAGIC {
            return Err(StateError::BadMagic);
        }
        let version = c.u32("version")?;
        if version != VERSION {
            return Err(StateError::Version(version));
        }
        let fuse = FuseSettings {
            minor: c.u32("FUSE minor")?,
            flags: c.u64("FUSE flags")?,
            max_write: c.u32("max_write")?,
        };
        let next_node = c.u64("next node id")?;
        let next_handle = c.u64("next handle")?;

        let count = c.count("nodes", MAX_NODES)?;
        // Each node takes at least 27 bytes: a count beyond what is present is truncation,
        // found before allocating for it.
        c.need(count as usize * 27, "nodes")?;
        let mut nodes = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let id = c.u64("node id")?;
            let generation = c.u64("node generation")?;
            let lookups = c.u64("lookup count")?;
            let kind = match c.u8("node kind")? {
                0 => Kind::File,
                1 => Kind::Directory,
                2 => Kind::Other,
                k => {
                    return Err(StateError::OutOfRange {
                        what: "node kind",
                        value: k.into(),
                    })
                }
            };
            let len = c.u16("path length")?;
            let path = if len == VANISHED {
                None
            } else if len as usize > MAX_PATH {
                return Err(StateError::BadPath {
                    node: id,
                    why: "is longer than PATH_MAX",
                });
            } else {
                Some(c.take(len as usize, "path")?.to_vec())
            };
            nodes.push(NodeRecord {
                id,
                generation,
                lookups,
                kind,
                path,
            });
        }

        let count = c.count("handles", MAX_HANDLES)?;
        c.need(count as usize * 21, "handles")?;
        let mut handles = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let fh = c.u64("handle")?;
            let node = c.u64("handle's node")?;
            let flags = c.u32("open flags")?;
            let dir = c.bool("handle kind")?;
            handles.push(HandleRecord {
                fh,
                node,
                flags,
                dir,
            });
        }

        let count = c.count("DAX mappings", MAX_DAX)?;
        c.need(count as usize * 33, "DAX mappings")?;
        let mut dax = Vec::with_capacity(count as usize);
        for _ in 0..count {
            dax.push(DaxRecord {
                moffset: c.u64("DAX window offset")?,
                len: c.u64("DAX mapping length")?,
                foffset: c.u64("DAX file offset")?,
                node: c.u64("DAX mapping's node")?,
                writable: c.bool("DAX writable flag")?,
            });
        }

        let body_end = c.pos;
        if c.take(8, "end marker")? != END_MAGIC {
            return Err(StateError::BadTrailer);
        }
        let sum = c.u64("checksum")?;
        if sum != fnv1a(&bytes[..body_end]) {
            return Err(StateError::Checksum);
        }
        if c.pos != bytes.len() {
            return Err(StateError::Trailing(bytes.len() - c.pos));
        }
        let state = DeviceState {
            fuse,
            next_node,
            next_handle,
            nodes,
            handles,
            dax,
        };
        state.validate()?;
        Ok(state)
    }
}

fn count_ok(what: &'static str, n: usize, max: u32) -> Result<(), StateError> {
    if n > max as usize {
        return Err(StateError::TooMany {
            what,
            count: u32::try_from(n).unwrap_or(u32::MAX),
            max,
        });
    }
    Ok(())
}

fn put16(b: &mut Vec<u8>, v: u16) {
    b.extend_from_slice(&v.to_le_bytes());
}
fn put32(b: &mut Vec<u8>, v: u32) {
    b.extend_from_slice(&v.to_le_bytes());
}
fn put64(b: &mut Vec<u8>, v: u64) {
    b.extend_from_slice(&v.to_le_bytes());
}

/// Reads fields off the stream; running out names the field.
struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn need(&self, n: usize, what: &'static str) -> Result<(), StateError> {
        if self.b.len() - self.pos < n {
            return Err(StateError::Truncated(what));
        }
        Ok(())
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], StateError> {
        self.need(n, what)?;
        let s = &self.b[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], StateError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, StateError> {
        Ok(self.array::<1>(what)?[0])
    }
    fn bool(&mut self, what: &'static str) -> Result<bool, StateError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(StateError::OutOfRange {
                what,
                value: v.into(),
            }),
        }
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, StateError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, StateError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    fn u64(&mut self, what: &'static str) -> Result<u64, StateError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    fn count(&mut self, what: &'static str, max: u32) -> Result<u32, StateError> {
        let n = self.u32(what)?;
        if n > max {
            return Err(StateError::TooMany {
                what,
                count: n,
                max,
            });
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests;
