//! Parsing of READDIR and READDIRPLUS reply streams.

use devices::fuse::abi::{dirent_align, Dirent, Direntplus, EntryOut};

use crate::error::{Error, Result};
use crate::fuse_client::copy_struct;

const DIRENT_LEN: usize = std::mem::size_of::<Dirent>();
const DIRENTPLUS_LEN: usize = std::mem::size_of::<Direntplus>();

/// One READDIR entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    pub ino: u64,
    /// Offset to pass to the next READDIR to continue after this entry.
    pub off: u64,
    /// `DT_*` type.
    pub type_: u32,
    pub name: Vec<u8>,
}

impl DirEntry {
    /// The name as UTF-8 (lossy), for assertions.
    pub fn name_str(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }
}

/// One READDIRPLUS entry: the dirent plus a full lookup result.
#[derive(Clone, Debug)]
pub struct DirEntryPlus {
    pub entry: EntryOut,
    pub dirent: DirEntry,
}

fn dirent_at(buf: &[u8], pos: usize, fixed: usize) -> Result<(Dirent, Vec<u8>, usize)> {
    let d: Dirent = copy_struct(&buf[pos + fixed - DIRENT_LEN..]);
    let namelen = d.namelen as usize;
    if namelen == 0 || namelen > 1024 {
        return Err(Error::Protocol(format!(
            "dirent at {pos}: name length {namelen}"
        )));
    }
    let end = pos + fixed + namelen;
    if end > buf.len() {
        return Err(Error::Protocol(format!(
            "dirent at {pos}: name runs past the {}-byte reply",
            buf.len()
        )));
    }
    let name = buf[pos + fixed..end].to_vec();
    // The last record's padding may be cut off by the reply's end, as Linux tolerates.
    let next = (pos + dirent_align(fixed + namelen)).min(buf.len());
    Ok((d, name, next))
}

/// Parses a READDIR reply body.
pub fn parse_dirents(buf: &[u8]) -> Result<Vec<DirEntry>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        if buf.len() - pos < DIRENT_LEN {
            return Err(Error::Protocol(format!("truncated dirent at {pos}")));
        }
        let (d, name, next) = dirent_at(buf, pos, DIRENT_LEN)?;
        out.push(DirEntry {
            ino: d.ino,
            off: d.off,
            type_: d.type_,
            name,
        });
        pos = next;
    }
    Ok(out)
}

/// Parses a READDIRPLUS reply body.
pub fn parse_direntplus(buf: &[u8]) -> Result<Vec<DirEntryPlus>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        if buf.len() - pos < DIRENTPLUS_LEN {
            return Err(Error::Protocol(format!("truncated direntplus at {pos}")));
        }
        let entry: EntryOut = copy_struct(&buf[pos..]);
        let (d, name, next) = dirent_at(buf, pos, DIRENTPLUS_LEN)?;
        out.push(DirEntryPlus {
            entry,
            dirent: DirEntry {
                ino: d.ino,
                off: d.off,
                type_: d.type_,
                name,
            },
        });
        pos = next;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::ByteValued;

    fn record(ino: u64, off: u64, name: &[u8]) -> Vec<u8> {
        let d = Dirent {
            ino,
            off,
            namelen: name.len() as u32,
            type_: 4,
        };
        let mut v = d.as_slice().to_vec();
        v.extend_from_slice(name);
        v.resize(dirent_align(v.len()), 0);
        v
    }

    #[test]
    fn parses_a_stream() {
        let mut buf = record(1, 1, b".");
        buf.extend(record(2, 2, b"hello-world"));
        let v = parse_dirents(&buf).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[1].name, b"hello-world");
        assert_eq!(v[1].off, 2);
        assert!(parse_dirents(&buf[..buf.len() - 10]).is_err());
    }

    #[test]
    fn parses_plus() {
        let mut buf = EntryOut {
            nodeid: 7,
            ..Default::default()
        }
        .as_slice()
        .to_vec();
        buf.extend(record(7, 1, b"x"));
        let v = parse_direntplus(&buf).unwrap();
        assert_eq!(v[0].entry.nodeid, 7);
        assert_eq!(v[0].dirent.name, b"x");
    }
}
