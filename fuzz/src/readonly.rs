//! The `fuse_server_readonly` harness: the same server, policy and request layout as
//! [`crate::fuse`], but the share is always read-only and holds files before each input: a
//! file, a directory with a file, a symlink, a FIFO and an xattr. After every input the share
//! must be exactly as it was (names, kinds, modes, owners, sizes, contents, link targets,
//! modification and change times, xattrs): a read-only share that any request sequence can
//! change is a policy hole, whatever errno the requests got.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::fuse::FuseHarness;
use crate::record;

/// What a guest could change about one path (access times aside: reading moves them).
#[derive(Debug, PartialEq, Eq)]
struct State {
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    content: Vec<u8>,
    xattr: Option<Vec<u8>>,
}

type Snapshot = BTreeMap<PathBuf, State>;

/// Fills the (empty) share with one of each kind of entry.
fn populate(share: &Path) {
    fs::write(share.join("file"), b"read-only file\n").expect("populate: file");
    fs::create_dir(share.join("dir")).expect("populate: dir");
    fs::write(share.join("dir/inner"), vec![b'x'; 8192]).expect("populate: dir/inner");
    std::os::unix::fs::symlink("file", share.join("link")).expect("populate: link");
    let fifo = CString::new(share.join("fifo").as_os_str().as_bytes()).expect("no NUL");
    // SAFETY: a NUL-terminated path that outlives the call.
    unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) };
    let path = CString::new(share.join("file").as_os_str().as_bytes()).expect("no NUL");
    // SAFETY: NUL-terminated strings and a value slice that live across the call. A filesystem
    // without user xattrs just leaves the snapshot without one.
    unsafe {
        libc::lsetxattr(
            path.as_ptr(),
            c"user.fuzz".as_ptr(),
            b"value".as_ptr().cast(),
            5,
            0,
        )
    };
}

fn xattr(path: &Path) -> Option<Vec<u8>> {
    let c = CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut buf = vec![0u8; 256];
    // SAFETY: NUL-terminated strings; `buf` is writable for its length.
    let n = unsafe {
        libc::lgetxattr(
            c.as_ptr(),
            c"user.fuzz".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    (n >= 0).then(|| {
        buf.truncate(n as usize);
        buf
    })
}

fn snapshot(root: &Path) -> Snapshot {
    let mut out = Snapshot::new();
    let mut todo = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        let path = root.join(&rel);
        let md = fs::symlink_metadata(&path).expect("snapshot: lstat");
        let kind = md.mode() & libc::S_IFMT;
        let content = match kind {
            libc::S_IFREG => fs::read(&path).expect("snapshot: read"),
            libc::S_IFLNK => fs::read_link(&path)
                .expect("snapshot: readlink")
                .as_os_str()
                .as_bytes()
                .to_vec(),
            libc::S_IFDIR => {
                let mut names: Vec<_> = fs::read_dir(&path)
                    .expect("snapshot: read_dir")
                    .map(|e| e.expect("snapshot: entry").file_name())
                    .collect();
                names.sort();
                for n in &names {
                    todo.push(rel.join(n));
                }
                names.join(std::ffi::OsStr::new("/")).as_bytes().to_vec()
            }
            _ => Vec::new(),
        };
        out.insert(
            rel,
            State {
                mode: md.mode(),
                uid: md.uid(),
                gid: md.gid(),
                nlink: md.nlink(),
                size: md.size(),
                mtime: (md.mtime(), md.mtime_nsec()),
                ctime: (md.ctime(), md.ctime_nsec()),
                content,
                xattr: xattr(&path),
            },
        );
    }
    out
}

/// Runs one input against a fresh read-only server over the populated share and checks the
/// share did not change. The config byte is ignored: the share is always read-only.
///
/// The share is filled and its snapshot taken once per process: every input that returns has
/// left it exactly as that snapshot says (or this panics), so the next input starts from the
/// same share without emptying and refilling it (which was most of an input's system calls).
pub fn run(h: &FuseHarness, data: &[u8]) {
    static PRISTINE: OnceLock<Snapshot> = OnceLock::new();
    let (_config, records) = record::decode(data);
    let before = PRISTINE.get_or_init(|| {
        h.reset_share();
        populate(h.share());
        snapshot(h.share())
    });
    let device = h.device_over_share(true);
    for r in &records {
        h.request(device.server(), r);
    }
    drop(device);
    let after = snapshot(h.share());
    if after != *before {
        let mut diffs = Vec::new();
        for (p, was) in before {
            match after.get(p) {
                None => diffs.push(format!("{}: removed", p.display())),
                Some(is) if is != was => diffs.push(format!("{}: {was:?} -> {is:?}", p.display())),
                _ => {}
            }
        }
        for p in after.keys().filter(|p| !before.contains_key(*p)) {
            diffs.push(format!("{}: appeared", p.display()));
        }
        panic!("the read-only share changed:\n  {}", diffs.join("\n  "));
    }
}
