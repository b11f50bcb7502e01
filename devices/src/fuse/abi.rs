//! FUSE wire structures (protocol 7.x, as in Linux `include/uapi/linux/fuse.h`) plus the
//! virtio-fs opcodes. Each struct is plain old data so it can be copied out of guest memory in
//! one piece; structs whose fields carry meaning beyond "any bit pattern is fine" have an
//! `is_valid()` that the server calls on the copy before using it.

use vm_memory::ByteValued;

/// The protocol major version we speak.
pub const KERNEL_VERSION: u32 = 7;
/// The highest minor version we understand; INIT negotiates down to the guest's if lower.
pub const KERNEL_MINOR_VERSION: u32 = 38;
/// The oldest minor we accept: virtio-fs itself appeared in 7.31.
pub const MIN_KERNEL_MINOR_VERSION: u32 = 27;

/// The root's node id.
pub const ROOT_ID: u64 = 1;

/// Largest name a guest may send (bytes, without the NUL), as Linux's NAME_MAX.
pub const NAME_MAX: usize = 255;
/// Largest symlink target or xattr name (bytes, without the NUL), as Linux's PATH_MAX - 1.
pub const PATH_MAX: usize = 4095;
/// Largest xattr value we move (Linux's XATTR_SIZE_MAX).
pub const XATTR_SIZE_MAX: usize = 65536;

/// The request opcodes (`enum fuse_opcode`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opcode {
    Lookup = 1,
    Forget = 2,
    Getattr = 3,
    Setattr = 4,
    Readlink = 5,
    Symlink = 6,
    Mknod = 8,
    Mkdir = 9,
    Unlink = 10,
    Rmdir = 11,
    Rename = 12,
    Link = 13,
    Open = 14,
    Read = 15,
    Write = 16,
    Statfs = 17,
    Release = 18,
    Fsync = 20,
    Setxattr = 21,
    Getxattr = 22,
    Listxattr = 23,
    Removexattr = 24,
    Flush = 25,
    Init = 26,
    Opendir = 27,
    Readdir = 28,
    Releasedir = 29,
    Fsyncdir = 30,
    Getlk = 31,
    Setlk = 32,
    Setlkw = 33,
    Access = 34,
    Create = 35,
    Interrupt = 36,
    Bmap = 37,
    Destroy = 38,
    Ioctl = 39,
    Poll = 40,
    NotifyReply = 41,
    BatchForget = 42,
    Fallocate = 43,
    Readdirplus = 44,
    Rename2 = 45,
    Lseek = 46,
    CopyFileRange = 47,
    Setupmapping = 48,
    Removemapping = 49,
    Syncfs = 50,
    Tmpfile = 51,
    Statx = 52,
}

impl Opcode {
    /// Maps a wire value to an opcode; `None` for values no FUSE version defines.
    pub fn from_u32(value: u32) -> Option<Opcode> {
        use Opcode::*;
        const ALL: [Opcode; 50] = [
            Lookup,
            Forget,
            Getattr,
            Setattr,
            Readlink,
            Symlink,
            Mknod,
            Mkdir,
            Unlink,
            Rmdir,
            Rename,
            Link,
            Open,
            Read,
            Write,
            Statfs,
            Release,
            Fsync,
            Setxattr,
            Getxattr,
            Listxattr,
            Removexattr,
            Flush,
            Init,
            Opendir,
            Readdir,
            Releasedir,
            Fsyncdir,
            Getlk,
            Setlk,
            Setlkw,
            Access,
            Create,
            Interrupt,
            Bmap,
            Destroy,
            Ioctl,
            Poll,
            NotifyReply,
            BatchForget,
            Fallocate,
            Readdirplus,
            Rename2,
            Lseek,
            CopyFileRange,
            Setupmapping,
            Removemapping,
            Syncfs,
            Tmpfile,
            Statx,
        ];
        ALL.iter().copied().find(|op| *op as u32 == value)
    }
}

/// INIT flags (`FUSE_*` capability bits; bits 32.. travel in `flags2`).
pub mod init_flags {
    pub const ASYNC_READ: u64 = 1 << 0;
    pub const POSIX_LOCKS: u64 = 1 << 1;
    pub const FILE_OPS: u64 = 1 << 2;
    pub const ATOMIC_O_TRUNC: u64 = 1 << 3;
    pub const EXPORT_SUPPORT: u64 = 1 << 4;
    pub const BIG_WRITES: u64 = 1 << 5;
    pub const DONT_MASK: u64 = 1 << 6;
    pub const SPLICE_WRITE: u64 = 1 << 7;
    pub const SPLICE_MOVE: u64 = 1 << 8;
    pub const SPLICE_READ: u64 = 1 << 9;
    pub const FLOCK_LOCKS: u64 = 1 << 10;
    pub const HAS_IOCTL_DIR: u64 = 1 << 11;
    pub const AUTO_INVAL_DATA: u64 = 1 << 12;
    pub const DO_READDIRPLUS: u64 = 1 << 13;
    pub const READDIRPLUS_AUTO: u64 = 1 << 14;
    pub const ASYNC_DIO: u64 = 1 << 15;
    pub const WRITEBACK_CACHE: u64 = 1 << 16;
    pub const NO_OPEN_SUPPORT: u64 = 1 << 17;
    pub const PARALLEL_DIROPS: u64 = 1 << 18;
    pub const HANDLE_KILLPRIV: u64 = 1 << 19;
    pub const POSIX_ACL: u64 = 1 << 20;
    pub const ABORT_ERROR: u64 = 1 << 21;
    pub const MAX_PAGES: u64 = 1 << 22;
    pub const CACHE_SYMLINKS: u64 = 1 << 23;
    pub const NO_OPENDIR_SUPPORT: u64 = 1 << 24;
    pub const EXPLICIT_INVAL_DATA: u64 = 1 << 25;
    pub const MAP_ALIGNMENT: u64 = 1 << 26;
    pub const SUBMOUNTS: u64 = 1 << 27;
    pub const HANDLE_KILLPRIV_V2: u64 = 1 << 28;
    pub const SETXATTR_EXT: u64 = 1 << 29;
    pub const INIT_EXT: u64 = 1 << 30;
    pub const INIT_RESERVED: u64 = 1 << 31;
    pub const SECURITY_CTX: u64 = 1 << 32;
    pub const HAS_INODE_DAX: u64 = 1 << 33;
    pub const CREATE_SUPP_GROUP: u64 = 1 << 34;
    pub const HAS_EXPIRE_ONLY: u64 = 1 << 35;
    pub const DIRECT_IO_ALLOW_MMAP: u64 = 1 << 36;
}

/// SETATTR `valid` bits.
pub mod setattr_valid {
    pub const MODE: u32 = 1 << 0;
    pub const UID: u32 = 1 << 1;
    pub const GID: u32 = 1 << 2;
    pub const SIZE: u32 = 1 << 3;
    pub const ATIME: u32 = 1 << 4;
    pub const MTIME: u32 = 1 << 5;
    pub const FH: u32 = 1 << 6;
    pub const ATIME_NOW: u32 = 1 << 7;
    pub const MTIME_NOW: u32 = 1 << 8;
    pub const LOCKOWNER: u32 = 1 << 9;
    pub const CTIME: u32 = 1 << 10;
    pub const KILL_SUIDGID: u32 = 1 << 11;
    /// Every bit we understand; others are refused with EINVAL.
    pub const KNOWN: u32 = (1 << 12) - 1;
}

/// Flags in `OpenOut::open_flags`.
pub mod open_out_flags {
    pub const DIRECT_IO: u32 = 1 << 0;
    pub const KEEP_CACHE: u32 = 1 << 1;
    pub const NONSEEKABLE: u32 = 1 << 2;
    pub const CACHE_DIR: u32 = 1 << 3;
    pub const STREAM: u32 = 1 << 4;
    pub const NOFLUSH: u32 = 1 << 5;
}

/// Smaller flag sets, each named by the field that carries it.
pub const GETATTR_FH: u32 = 1 << 0;
pub const READ_LOCKOWNER: u32 = 1 << 1;
pub const WRITE_CACHE: u32 = 1 << 0;
pub const WRITE_LOCKOWNER: u32 = 1 << 1;
pub const WRITE_KILL_SUIDGID: u32 = 1 << 2;
pub const RELEASE_FLUSH: u32 = 1 << 0;
pub const RELEASE_FLOCK_UNLOCK: u32 = 1 << 1;
pub const FSYNC_FDATASYNC: u32 = 1 << 0;
pub const LK_FLOCK: u32 = 1 << 0;
/// `fuse_attr.flags`: this directory is the root of a submount (needs FUSE_SUBMOUNTS).
pub const ATTR_SUBMOUNT: u32 = 1 << 0;
pub const SETUPMAPPING_FLAG_WRITE: u64 = 1 << 0;
pub const SETUPMAPPING_FLAG_READ: u64 = 1 << 1;
pub const IOCTL_UNRESTRICTED: u32 = 1 << 1;
pub const IOCTL_DIR: u32 = 1 << 4;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct InHeader {
    pub len: u32,
    pub opcode: u32,
    pub unique: u64,
    pub nodeid: u64,
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
    pub total_extlen: u16,
    pub padding: u16,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct OutHeader {
    pub len: u32,
    pub error: i32,
    pub unique: u64,
}

/// INIT's request. Guests older than 7.36 send only the first four fields; the server copies
/// what is present and leaves the rest zero.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct InitIn {
    pub major: u32,
    pub minor: u32,
    pub max_readahead: u32,
    pub flags: u32,
    pub flags2: u32,
    pub unused: [u32; 11],
}
/// Size of INIT's request before 7.36 added `flags2`.
pub const INIT_IN_COMPAT_SIZE: usize = 16;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct InitOut {
    pub major: u32,
    pub minor: u32,
    pub max_readahead: u32,
    pub flags: u32,
    pub max_background: u16,
    pub congestion_threshold: u16,
    pub max_write: u32,
    pub time_gran: u32,
    pub max_pages: u16,
    pub map_alignment: u16,
    pub flags2: u32,
    pub max_stack_depth: u32,
    pub unused: [u32; 6],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Attr {
    pub ino: u64,
    pub size: u64,
    pub blocks: u64,
    pub atime: u64,
    pub mtime: u64,
    pub ctime: u64,
    pub atimensec: u32,
    pub mtimensec: u32,
    pub ctimensec: u32,
    pub mode: u32,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u32,
    pub blksize: u32,
    pub flags: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct EntryOut {
    pub nodeid: u64,
    pub generation: u64,
    pub entry_valid: u64,
    pub attr_valid: u64,
    pub entry_valid_nsec: u32,
    pub attr_valid_nsec: u32,
    pub attr: Attr,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct AttrOut {
    pub attr_valid: u64,
    pub attr_valid_nsec: u32,
    pub dummy: u32,
    pub attr: Attr,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct GetattrIn {
    pub getattr_flags: u32,
    pub dummy: u32,
    pub fh: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SetattrIn {
    pub valid: u32,
    pub padding: u32,
    pub fh: u64,
    pub size: u64,
    pub lock_owner: u64,
    pub atime: u64,
    pub mtime: u64,
    pub ctime: u64,
    pub atimensec: u32,
    pub mtimensec: u32,
    pub ctimensec: u32,
    pub mode: u32,
    pub unused4: u32,
    pub uid: u32,
    pub gid: u32,
    pub unused5: u32,
}

impl SetattrIn {
    /// Unknown `valid` bits or nanoseconds out of range are refused rather than guessed at.
    pub fn is_valid(&self) -> bool {
        self.valid & !setattr_valid::KNOWN == 0
            && self.atimensec < 1_000_000_000
            && self.mtimensec < 1_000_000_000
            && self.ctimensec < 1_000_000_000
    }
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct MknodIn {
    pub mode: u32,
    pub rdev: u32,
    pub umask: u32,
    pub padding: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct MkdirIn {
    pub mode: u32,
    pub umask: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RenameIn {
    pub newdir: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Rename2In {
    pub newdir: u64,
    pub flags: u32,
    pub padding: u32,
}

impl Rename2In {
    /// Only RENAME_NOREPLACE, RENAME_EXCHANGE and RENAME_WHITEOUT exist, and the first two
    /// exclude each other.
    pub fn is_valid(&self) -> bool {
        let known = libc::RENAME_NOREPLACE | libc::RENAME_EXCHANGE | libc::RENAME_WHITEOUT;
        self.flags & !known == 0
            && self.flags & (libc::RENAME_NOREPLACE | libc::RENAME_EXCHANGE)
                != (libc::RENAME_NOREPLACE | libc::RENAME_EXCHANGE)
    }
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct LinkIn {
    pub oldnodeid: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenIn {
    pub flags: u32,
    pub open_flags: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct CreateIn {
    pub flags: u32,
    pub mode: u32,
    pub umask: u32,
    pub open_flags: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenOut {
    pub fh: u64,
    pub open_flags: u32,
    pub backing_id: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ReleaseIn {
    pub fh: u64,
    pub flags: u32,
    pub release_flags: u32,
    pub lock_owner: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct FlushIn {
    pub fh: u64,
    pub unused: u32,
    pub padding: u32,
    pub lock_owner: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ReadIn {
    pub fh: u64,
    pub offset: u64,
    pub size: u32,
    pub read_flags: u32,
    pub lock_owner: u64,
    pub flags: u32,
    pub padding: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct WriteIn {
    pub fh: u64,
    pub offset: u64,
    pub size: u32,
    pub write_flags: u32,
    pub lock_owner: u64,
    pub flags: u32,
    pub padding: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct WriteOut {
    pub size: u32,
    pub padding: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Kstatfs {
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub bsize: u32,
    pub namelen: u32,
    pub frsize: u32,
    pub padding: u32,
    pub spare: [u32; 6],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct StatfsOut {
    pub st: Kstatfs,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct FsyncIn {
    pub fh: u64,
    pub fsync_flags: u32,
    pub padding: u32,
}

/// SETXATTR's request in its pre-SETXATTR_EXT form. We do not negotiate SETXATTR_EXT, so the
/// guest sends exactly this.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SetxattrIn {
    pub size: u32,
    pub flags: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct GetxattrIn {
    pub size: u32,
    pub padding: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct GetxattrOut {
    pub size: u32,
    pub padding: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct FileLock {
    pub start: u64,
    pub end: u64,
    pub type_: u32,
    pub pid: u32,
}

impl FileLock {
    /// A lock type must be one of F_RDLCK, F_WRLCK, F_UNLCK and the range must not be inverted.
    pub fn is_valid(&self) -> bool {
        let known = [libc::F_RDLCK, libc::F_WRLCK, libc::F_UNLCK];
        known.iter().any(|t| *t as u32 == self.type_) && self.start <= self.end
    }
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct LkIn {
    pub fh: u64,
    pub owner: u64,
    pub lk: FileLock,
    pub lk_flags: u32,
    pub padding: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct LkOut {
    pub lk: FileLock,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct AccessIn {
    pub mask: u32,
    pub padding: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct InterruptIn {
    pub unique: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct IoctlIn {
    pub fh: u64,
    pub flags: u32,
    pub cmd: u32,
    pub arg: u64,
    pub in_size: u32,
    pub out_size: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct IoctlOut {
    pub result: i32,
    pub flags: u32,
    pub in_iovs: u32,
    pub out_iovs: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct FallocateIn {
    pub fh: u64,
    pub offset: u64,
    pub length: u64,
    pub mode: u32,
    pub padding: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct LseekIn {
    pub fh: u64,
    pub offset: u64,
    pub whence: u32,
    pub padding: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct LseekOut {
    pub offset: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct CopyFileRangeIn {
    pub fh_in: u64,
    pub off_in: u64,
    pub nodeid_out: u64,
    pub fh_out: u64,
    pub off_out: u64,
    pub len: u64,
    pub flags: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ForgetIn {
    pub nlookup: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct BatchForgetIn {
    pub count: u32,
    pub dummy: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ForgetOne {
    pub nodeid: u64,
    pub nlookup: u64,
}

/// One READDIR entry's fixed part; the name follows, padded to 8 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Dirent {
    pub ino: u64,
    pub off: u64,
    pub namelen: u32,
    pub type_: u32,
}

/// One READDIRPLUS entry's fixed part; the name follows, padded to 8 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Direntplus {
    pub entry_out: EntryOut,
    pub dirent: Dirent,
}

/// Rounds a dirent record length up to the 8-byte alignment the protocol demands.
pub const fn dirent_align(len: usize) -> usize {
    (len + 7) & !7
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SyncfsIn {
    pub padding: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SetupmappingIn {
    pub fh: u64,
    pub foffset: u64,
    pub len: u64,
    pub flags: u64,
    pub moffset: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RemovemappingIn {
    pub count: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RemovemappingOne {
    pub moffset: u64,
    pub len: u64,
}

macro_rules! plain_old_data {
    ($($t:ty),* $(,)?) => {
        $(
            // SAFETY: the type is #[repr(C)], made only of integers (and arrays and structs of
            // them) with no implicit padding, so every bit pattern is a valid value and the
            // struct can be read from or written to guest memory as bytes.
            unsafe impl ByteValued for $t {}
        )*
    };
}

plain_old_data!(
    InHeader,
    OutHeader,
    InitIn,
    InitOut,
    Attr,
    EntryOut,
    AttrOut,
    GetattrIn,
    SetattrIn,
    MknodIn,
    MkdirIn,
    RenameIn,
    Rename2In,
    LinkIn,
    OpenIn,
    CreateIn,
    OpenOut,
    ReleaseIn,
    FlushIn,
    ReadIn,
    WriteIn,
    WriteOut,
    Kstatfs,
    StatfsOut,
    FsyncIn,
    SetxattrIn,
    GetxattrIn,
    GetxattrOut,
    FileLock,
    LkIn,
    LkOut,
    AccessIn,
    InterruptIn,
    IoctlIn,
    IoctlOut,
    FallocateIn,
    LseekIn,
    LseekOut,
    CopyFileRangeIn,
    ForgetIn,
    BatchForgetIn,
    ForgetOne,
    Dirent,
    Direntplus,
    SyncfsIn,
    SetupmappingIn,
    RemovemappingIn,
    RemovemappingOne,
);

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::size_of;

    /// Sizes from the kernel's header; a mismatch would corrupt every request of that kind.
    #[test]
    fn wire_sizes_match_the_kernel() {
        let table: &[(&str, usize, usize)] = &[
            ("InHeader", size_of::<InHeader>(), 40),
            ("OutHeader", size_of::<OutHeader>(), 16),
            ("InitIn", size_of::<InitIn>(), 64),
            ("InitOut", size_of::<InitOut>(), 64),
            ("Attr", size_of::<Attr>(), 88),
            ("EntryOut", size_of::<EntryOut>(), 128),
            ("AttrOut", size_of::<AttrOut>(), 104),
            ("GetattrIn", size_of::<GetattrIn>(), 16),
            ("SetattrIn", size_of::<SetattrIn>(), 88),
            ("MknodIn", size_of::<MknodIn>(), 16),
            ("Rename2In", size_of::<Rename2In>(), 16),
            ("CreateIn", size_of::<CreateIn>(), 16),
            ("OpenOut", size_of::<OpenOut>(), 16),
            ("ReleaseIn", size_of::<ReleaseIn>(), 24),
            ("FlushIn", size_of::<FlushIn>(), 24),
            ("ReadIn", size_of::<ReadIn>(), 40),
            ("WriteIn", size_of::<WriteIn>(), 40),
            ("Kstatfs", size_of::<Kstatfs>(), 80),
            ("LkIn", size_of::<LkIn>(), 48),
            ("IoctlIn", size_of::<IoctlIn>(), 32),
            ("FallocateIn", size_of::<FallocateIn>(), 32),
            ("LseekIn", size_of::<LseekIn>(), 24),
            ("CopyFileRangeIn", size_of::<CopyFileRangeIn>(), 56),
            ("Dirent", size_of::<Dirent>(), 24),
            ("Direntplus", size_of::<Direntplus>(), 152),
            ("SetupmappingIn", size_of::<SetupmappingIn>(), 40),
            ("RemovemappingOne", size_of::<RemovemappingOne>(), 16),
        ];
        for (name, got, want) in table {
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn opcodes_round_trip_and_unknown_values_are_none() {
        assert_eq!(Opcode::from_u32(26), Some(Opcode::Init));
        assert_eq!(Opcode::from_u32(51), Some(Opcode::Tmpfile));
        assert_eq!(Opcode::from_u32(7), None);
        assert_eq!(Opcode::from_u32(19), None);
        assert_eq!(Opcode::from_u32(u32::MAX), None);
    }

    #[test]
    fn rename2_flags_are_checked() {
        let ok = Rename2In {
            newdir: 1,
            flags: libc::RENAME_NOREPLACE,
            padding: 0,
        };
        let both = Rename2In {
            newdir: 1,
            flags: libc::RENAME_NOREPLACE | libc::RENAME_EXCHANGE,
            padding: 0,
        };
        let unknown = Rename2In {
            newdir: 1,
            flags: 1 << 9,
            padding: 0,
        };
        assert!(ok.is_valid());
        assert!(!both.is_valid());
        assert!(!unknown.is_valid());
    }
}
