//! The attribute fsjail keeps on a host file to show the guest something the host file is not:
//! a device node, or an owner and mode bits the host cannot hold.
//!
//! One extended attribute, [`NAME`], with one short line of ASCII text:
//!
//! ```text
//! v=1 type=c perm=0620 uid=0 gid=5 rdev=4:1
//! ```
//!
//! - `v`: the format version, `1`. Any other version is not understood (the file is then shown
//!   as the plain host file).
//! - `type`: what the guest sees: `c` character device, `b` block device, `p` FIFO, `s` socket
//!   (each on an empty regular host file), `l` symbolic link (on a regular host file holding
//!   the link's target, made only with emulated ownership), `f` regular file, `d` directory (on
//!   a host file of that type: only the owner and mode are emulated).
//! - `perm`: the permission bits the guest sees (octal, at most `7777`: setuid, setgid, sticky,
//!   rwx).
//! - `uid`, `gid`: the owner the guest sees (decimal, as the worker's id space names them).
//! - `rdev`: `major:minor` of a device (decimal, Linux's 12-bit major and 20-bit minor), `0:0`
//!   otherwise.
//!
//! Text rather than binary so that an operator can read it with `getfattr -n user.fsjail.stat`;
//! the parser is strict (exact field order, no spaces but single separators, no leading `+`,
//! bounded length) so that anything it did not write itself is refused, not guessed at.

use std::fmt;

/// The attribute's name. In the `user.` namespace because the jailed worker holds no
/// CAP_SYS_ADMIN, which `trusted.` needs in the host's initial user namespace.
pub const NAME: &std::ffi::CStr = c"user.fsjail.stat";

/// Every attribute name starting with this is fsjail's: the guest can neither see nor set any.
pub const RESERVED_PREFIX: &[u8] = b"user.fsjail.";

/// Longest value we read or accept; the longest valid record is well under it.
pub const MAX_LEN: usize = 96;

/// Largest major and minor number a guest kernel can encode (`new_encode_dev`).
const MAX_MAJOR: u32 = (1 << 12) - 1;
const MAX_MINOR: u32 = (1 << 20) - 1;

/// The file type a record makes the guest see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Char,
    Block,
    /// A FIFO: emulated only with `ownership = "emulate"`, so that its owner can be recorded.
    Fifo,
    /// A socket node, likewise.
    Socket,
    /// A symbolic link, likewise (a host symlink cannot carry a `user.` attribute); the regular
    /// host file holds the target.
    Symlink,
    Regular,
    Directory,
}

impl Kind {
    /// The `S_IFMT` bits of this type.
    pub fn ifmt(self) -> u32 {
        match self {
            Kind::Char => libc::S_IFCHR,
            Kind::Block => libc::S_IFBLK,
            Kind::Fifo => libc::S_IFIFO,
            Kind::Socket => libc::S_IFSOCK,
            Kind::Symlink => libc::S_IFLNK,
            Kind::Regular => libc::S_IFREG,
            Kind::Directory => libc::S_IFDIR,
        }
    }

    /// The kinds an empty regular host file stands in for, from a guest `mknod` mode; `None`
    /// for any other type.
    pub fn special_from_mode(mode: u32) -> Option<Kind> {
        match mode & libc::S_IFMT {
            libc::S_IFCHR => Some(Kind::Char),
            libc::S_IFBLK => Some(Kind::Block),
            libc::S_IFIFO => Some(Kind::Fifo),
            libc::S_IFSOCK => Some(Kind::Socket),
            _ => None,
        }
    }

    /// Whether this is a device (with an rdev).
    pub fn is_device(self) -> bool {
        matches!(self, Kind::Char | Kind::Block)
    }

    /// Whether the host file is a regular stand-in (a device, FIFO, socket or symlink), never
    /// opened for the guest.
    pub fn is_placeholder(self) -> bool {
        !matches!(self, Kind::Regular | Kind::Directory)
    }

    /// The `S_IFMT` bits the host file carrying a record of this kind must have.
    pub fn host_ifmt(self) -> u32 {
        match self {
            Kind::Char
            | Kind::Block
            | Kind::Fifo
            | Kind::Socket
            | Kind::Symlink
            | Kind::Regular => libc::S_IFREG,
            Kind::Directory => libc::S_IFDIR,
        }
    }

    fn letter(self) -> char {
        match self {
            Kind::Char => 'c',
            Kind::Block => 'b',
            Kind::Fifo => 'p',
            Kind::Socket => 's',
            Kind::Symlink => 'l',
            Kind::Regular => 'f',
            Kind::Directory => 'd',
        }
    }

    fn from_letter(s: &str) -> Option<Kind> {
        match s {
            "c" => Some(Kind::Char),
            "b" => Some(Kind::Block),
            "p" => Some(Kind::Fifo),
            "s" => Some(Kind::Socket),
            "l" => Some(Kind::Symlink),
            "f" => Some(Kind::Regular),
            "d" => Some(Kind::Directory),
            _ => None,
        }
    }
}

/// What the guest sees of one host file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    pub kind: Kind,
    /// Permission bits only (`0o7777` at most).
    pub perm: u32,
    pub uid: u32,
    pub gid: u32,
    pub major: u32,
    pub minor: u32,
}

/// Why a stored value is not a record.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("longer than {MAX_LEN} bytes")]
    TooLong,
    #[error("not ASCII text")]
    NotText,
    #[error("version {0:?} is not understood (this fsjail writes v=1)")]
    Version(String),
    #[error("field {index} should be `{key}=...`")]
    Field { index: usize, key: &'static str },
    #[error("{key}: bad value {value:?}")]
    Value { key: &'static str, value: String },
    #[error("{0} fields, expected 6")]
    Count(usize),
}

/// The guest's 32-bit device number (`new_encode_dev`, as FUSE carries `rdev`) split into
/// major and minor.
pub fn split_guest_rdev(rdev: u32) -> (u32, u32) {
    (
        (rdev & 0xfff00) >> 8,
        (rdev & 0xff) | ((rdev >> 12) & 0xfff00),
    )
}

impl Record {
    /// The host `dev_t` to put in an attribute reply for this record.
    pub fn dev(&self) -> u64 {
        libc::makedev(self.major, self.minor)
    }

    /// Checks the ranges a record must respect (a parsed one, or one about to be written).
    pub fn valid(&self) -> bool {
        let dev_ok = if self.kind.is_device() {
            self.major <= MAX_MAJOR && self.minor <= MAX_MINOR
        } else {
            self.major == 0 && self.minor == 0
        };
        self.perm & !0o7777 == 0 && dev_ok
    }

    /// Parses a stored value; anything but exactly what [`Record`]'s `Display` writes is an
    /// error.
    pub fn parse(value: &[u8]) -> Result<Record, ParseError> {
        if value.len() > MAX_LEN {
            return Err(ParseError::TooLong);
        }
        let text = std::str::from_utf8(value)
            .ok()
            .filter(|t| t.is_ascii())
            .ok_or(ParseError::NotText)?;
        let fields: Vec<&str> = text.split(' ').collect();
        const KEYS: [&str; 6] = ["v", "type", "perm", "uid", "gid", "rdev"];
        if let Some(v) = fields.first().and_then(|f| f.strip_prefix("v=")) {
            if v != "1" {
                return Err(ParseError::Version(v.to_owned()));
            }
        }
        if fields.len() != KEYS.len() {
            return Err(ParseError::Count(fields.len()));
        }
        let mut values = [""; 6];
        for (index, (field, key)) in fields.iter().zip(KEYS).enumerate() {
            values[index] = field
                .strip_prefix(key)
                .and_then(|rest| rest.strip_prefix('='))
                .ok_or(ParseError::Field { index, key })?;
        }
        let bad = |key: &'static str, value: &str| ParseError::Value {
            key,
            value: value.to_owned(),
        };
        let kind = Kind::from_letter(values[1]).ok_or_else(|| bad("type", values[1]))?;
        let perm = parse_num(values[2], 8).ok_or_else(|| bad("perm", values[2]))?;
        let uid = parse_num(values[3], 10).ok_or_else(|| bad("uid", values[3]))?;
        let gid = parse_num(values[4], 10).ok_or_else(|| bad("gid", values[4]))?;
        let (major, minor) = values[5]
            .split_once(':')
            .and_then(|(a, b)| Some((parse_num(a, 10)?, parse_num(b, 10)?)))
            .ok_or_else(|| bad("rdev", values[5]))?;
        let record = Record {
            kind,
            perm,
            uid,
            gid,
            major,
            minor,
        };
        if !record.valid() {
            return Err(bad("perm or rdev", text));
        }
        Ok(record)
    }

    /// The value to store.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_string().into_bytes()
    }
}

/// A number in `radix` made of digits only (no sign, no spaces), fitting in u32.
fn parse_num(s: &str, radix: u32) -> Option<u32> {
    if s.is_empty() || s.len() > 11 || !s.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u32::from_str_radix(s, radix).ok()
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "v=1 type={} perm={:04o} uid={} gid={} rdev={}:{}",
            self.kind.letter(),
            self.perm,
            self.uid,
            self.gid,
            self.major,
            self.minor
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(kind: Kind, perm: u32, major: u32, minor: u32) -> Record {
        Record {
            kind,
            perm,
            uid: 0,
            gid: 5,
            major,
            minor,
        }
    }

    #[test]
    fn round_trip() {
        let rows = [
            dev(Kind::Char, 0o620, 4, 1),
            dev(Kind::Block, 0o660, 8, 0),
            dev(Kind::Char, 0o7777, MAX_MAJOR, MAX_MINOR),
            Record {
                kind: Kind::Regular,
                perm: 0o4755,
                uid: 65533,
                gid: 4_000_000_000,
                major: 0,
                minor: 0,
            },
            Record {
                kind: Kind::Fifo,
                perm: 0o640,
                uid: 1000,
                gid: 1000,
                major: 0,
                minor: 0,
            },
            Record {
                kind: Kind::Directory,
                perm: 0o1777,
                uid: 1,
                gid: 2,
                major: 0,
                minor: 0,
            },
        ];
        for r in rows {
            let bytes = r.to_bytes();
            assert!(bytes.len() <= MAX_LEN, "{r}");
            assert_eq!(Record::parse(&bytes), Ok(r), "{r}");
        }
        assert_eq!(
            dev(Kind::Char, 0o620, 4, 1).to_string(),
            "v=1 type=c perm=0620 uid=0 gid=5 rdev=4:1"
        );
    }

    #[test]
    fn anything_else_is_refused() {
        let bad: &[&[u8]] = &[
            b"",
            b"v=1",
            b"v=2 type=c perm=0620 uid=0 gid=5 rdev=4:1",
            b"v=1 type=c perm=0620 uid=0 gid=5 rdev=4:1 ",
            b"v=1 type=c perm=0620 uid=0 gid=5 rdev=4:1\n",
            b"v=1  type=c perm=0620 uid=0 gid=5 rdev=4:1",
            b"v=1 type=p perm=0620 uid=0 gid=5 rdev=4:1",
            b"v=1 type=c perm=0820 uid=0 gid=5 rdev=4:1",
            b"v=1 type=c perm=17777 uid=0 gid=5 rdev=4:1",
            b"v=1 type=c perm=0620 uid=-1 gid=5 rdev=4:1",
            b"v=1 type=c perm=0620 uid=+1 gid=5 rdev=4:1",
            b"v=1 type=c perm=0620 uid=4294967296 gid=5 rdev=4:1",
            b"v=1 type=c perm=0620 uid=0 gid=5 rdev=4096:1",
            b"v=1 type=c perm=0620 uid=0 gid=5 rdev=4:1048576",
            b"v=1 type=c perm=0620 uid=0 gid=5 rdev=4",
            b"v=1 type=f perm=0644 uid=0 gid=5 rdev=4:1",
            b"v=1 type=p perm=0644 uid=0 gid=5 rdev=4:1",
            b"v=1 perm=0620 type=c uid=0 gid=5 rdev=4:1",
            b"v=1 type=c perm=0620 uid=0 gid=5 rdev=4:1\0",
            b"v=1 type=\xc3\xa9 perm=0620 uid=0 gid=5 rdev=4:1",
        ];
        for b in bad {
            assert!(
                Record::parse(b).is_err(),
                "{:?} parsed",
                String::from_utf8_lossy(b)
            );
        }
        assert_eq!(
            Record::parse(&[b'v'; MAX_LEN + 1]),
            Err(ParseError::TooLong)
        );
        assert!(matches!(
            Record::parse(b"v=7 whatever"),
            Err(ParseError::Version(v)) if v == "7"
        ));
    }

    #[test]
    fn guest_rdev_split_matches_the_kernel_encoding() {
        // new_encode_dev(MKDEV(4, 1)) == 0x401; MKDEV(259, 70000): minor spills above bit 20.
        assert_eq!(split_guest_rdev(0x401), (4, 1));
        let (major, minor) = (259u32, 70000u32);
        let enc = (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12);
        assert_eq!(split_guest_rdev(enc), (major, minor));
        // The host dev_t's low 32 bits are what FUSE carries back.
        let r = dev(Kind::Block, 0o600, major, minor);
        assert_eq!(r.dev() as u32, enc);
    }
}
