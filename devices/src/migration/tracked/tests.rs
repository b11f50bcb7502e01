//! The tracking wrapper over a real PassthroughFs on a temporary directory (unjailed: paths are
//! host paths under the directory).

use std::ffi::CString;
use std::sync::Arc;

use fuse_backend_rs::api::filesystem::{Context, FileSystem, FsOptions};
use fuse_backend_rs::passthrough::PassthroughFs;

use super::*;
use crate::fs::{new_passthrough, ShareOptions};

fn tracked(dir: &std::path::Path, on_error: MigrationOnError) -> Tracked<Arc<PassthroughFs>> {
    let fs = Arc::new(new_passthrough(&ShareOptions::new(dir)).unwrap());
    fs.init(FsOptions::empty()).unwrap();
    let names = fs.clone();
    Tracked::new(fs, on_error).with_paths(
        Box::new(move |i| names.readlinkat_proc_file(i)),
        dir.canonicalize().unwrap(),
    )
}

fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

#[test]
fn snapshot_names_every_node_and_restore_gives_the_same_ids() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::create_dir(dir.join("d")).unwrap();
    std::fs::write(dir.join("d/f"), b"data").unwrap();
    std::fs::write(dir.join("g"), b"gone soon").unwrap();
    let ctx = Context::default();
    let src = tracked(dir, MigrationOnError::GuestError);
    let d = src.lookup(&ctx, ROOT, &c("d")).unwrap().inode;
    let f = src.lookup(&ctx, d, &c("f")).unwrap().inode;
    let f2 = src.lookup(&ctx, d, &c("f")).unwrap().inode;
    assert_eq!(f, f2);
    let g = src.lookup(&ctx, ROOT, &c("g")).unwrap().inode;
    let (fh, _, _) = src.open(&ctx, f, libc::O_RDONLY as u32, 0).unwrap();
    let fh = fh.unwrap();
    let (gh, _, _) = src.open(&ctx, g, libc::O_RDONLY as u32, 0).unwrap();
    let gh = gh.unwrap();
    let snap = src.snapshot().unwrap();
    let paths: Vec<(u64, u64, Option<Vec<u8>>)> = snap
        .nodes
        .iter()
        .map(|n| (n.id, n.lookups, n.path.clone()))
        .collect();
    assert_eq!(
        paths,
        vec![
            (d, 1, Some(b"d".to_vec())),
            (f, 2, Some(b"d/f".to_vec())),
            (g, 1, Some(b"g".to_vec())),
        ]
    );
    assert_eq!(snap.handles.len(), 2);

    // Deleted: no path any more.
    std::fs::remove_file(dir.join("g")).unwrap();
    let snap = src.snapshot().unwrap();
    assert_eq!(snap.nodes.iter().find(|n| n.id == g).unwrap().path, None);

    let dst = tracked(dir, MigrationOnError::GuestError);
    dst.restore(&snap.nodes, &snap.handles, snap.next_node, snap.next_handle)
        .unwrap();
    assert_eq!(dst.known(), (3, 2));
    // The same ids and handle serve the same file.
    let mut st = dst.getattr(&ctx, f, Some(fh)).unwrap().0;
    assert_eq!(st.st_size, 4);
    st = dst.getattr(&ctx, d, None).unwrap().0;
    assert_eq!(st.st_mode & libc::S_IFMT, libc::S_IFDIR);
    assert_eq!(
        dst.getattr(&ctx, g, Some(gh)).unwrap_err().raw_os_error(),
        Some(libc::EIO)
    );
    // Lookup counts carried over: two forgets of f are needed.
    dst.forget(&ctx, f, 1);
    dst.getattr(&ctx, f, None).unwrap();
    dst.release(&ctx, f, 0, fh, false, false, None).unwrap();
    dst.forget(&ctx, f, 1);
    assert_eq!(
        dst.getattr(&ctx, f, None).unwrap_err().raw_os_error(),
        Some(libc::EBADF)
    );
    // Fresh ids never collide with migrated ones.
    let again = dst.lookup(&ctx, d, &c("f")).unwrap().inode;
    assert!(again >= snap.next_node, "{again}");

    // Abort: the whole restore is refused and nothing is left held.
    let strict = tracked(dir, MigrationOnError::Abort);
    let e = strict
        .restore(&snap.nodes, &snap.handles, snap.next_node, snap.next_handle)
        .unwrap_err();
    assert!(
        matches!(e, TrackError::Vanished { node, .. } if node == g),
        "{e}"
    );
    assert_eq!(strict.known(), (0, 0));
    // A destination that already serves refuses.
    let e = dst
        .restore(&snap.nodes, &snap.handles, snap.next_node, snap.next_handle)
        .unwrap_err();
    assert!(matches!(e, TrackError::NotFresh(_)), "{e}");
}
