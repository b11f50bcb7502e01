//! Attack catalogue, names: `..` on the root and long `..` chains, `/` inside a name
//! for every opcode that takes one (both names of RENAME and RENAME2), 256-byte names, and
//! symlinks pointing out of the share (`/etc/shadow`, `../../..`, the sentinel beside the share)
//! that the guest then tries to OPEN, LOOKUP through, truncate, chmod, touch and link.
//!
//! The server never follows a symlink for the guest: LOOKUP of a link gives the link itself,
//! OPEN of a link node fails with EBADF (as in virtiofsd: only regular files and directories
//! are ever opened without O_PATH; a Linux guest resolves links itself and never sends such an
//! OPEN), and a link used as a directory gives ENOTDIR. Every case
//! also proves the worker still serves and that the sentinel beside the share is untouched
//! (not even read: its access times are checked).
//!
//! `tests/malformed.rs` (`bad_names`) already covers the name checks for LOOKUP, MKNOD, MKDIR,
//! UNLINK, RMDIR, CREATE, LINK, SYMLINK and RENAME; this file adds RENAME2, the escape-shaped
//! names, and the sentinel check for all of them.

#[path = "attacks/mod.rs"]
mod attacks;
mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;

use attacks::{assert_errno, cname, request, Arena};
use common::Config;
use guest_driver::abi::{
    CreateIn, LinkIn, MkdirIn, MknodIn, Opcode, OpenIn, Rename2In, RenameIn, ROOT_ID,
};
use guest_driver::Setattr;
use vm_memory::ByteValued;

const REG: u32 = libc::S_IFREG;
const RDONLY: u32 = libc::O_RDONLY as u32;

#[test]
fn dotdot_on_the_root_and_long_chains() {
    let mut a = Arena::new(&Config::default());
    let sub = a.s.mkdir(ROOT_ID, "sub", 0o755, 0).unwrap().nodeid;
    for (parent, what) in [(ROOT_ID, "root"), (sub, "sub")] {
        for n in [&b".."[..], b"."] {
            a.refused(
                &request(Opcode::Lookup, parent, &[&cname(n)]),
                libc::EINVAL,
                &format!("LOOKUP {:?} in {what}", String::from_utf8_lossy(n)),
            );
        }
    }
    // Chains of `..` are names with `/` inside: refused before any lookup (ENAMETOOLONG
    // first when longer than NAME_MAX).
    let want = |n: &str| {
        if n.len() > 255 {
            libc::ENAMETOOLONG
        } else {
            libc::EINVAL
        }
    };
    for depth in [2usize, 16, 127] {
        let chain = vec![".."; depth].join("/");
        a.refused(
            &request(Opcode::Lookup, ROOT_ID, &[&cname(chain.as_bytes())]),
            want(&chain),
            &format!("LOOKUP ../ x {depth}"),
        );
        let to_sentinel = format!("{chain}/sentinel/secret");
        a.refused(
            &request(Opcode::Lookup, sub, &[&cname(to_sentinel.as_bytes())]),
            want(&to_sentinel),
            &format!("LOOKUP {to_sentinel}"),
        );
    }
    // Names that only look like `..` are ordinary names.
    for n in ["...", "..\u{2024}", ". ."] {
        assert_errno(a.s.lookup(ROOT_ID, n), libc::ENOENT, n);
    }
    a.verify("dotdot lookups");
    // GETATTR of the root reports the share's root, not its parent.
    let root = a.s.getattr(ROOT_ID, None).unwrap();
    assert_eq!(root.attr.ino, fs::metadata(a.b.share()).unwrap().ino());
}

/// Every opcode that takes an entry name, with `name` in one of its name slots.
fn name_requests(dir: u64, file: u64, name: &[u8]) -> Vec<(String, (Vec<u8>, u64))> {
    let n = cname(name);
    let good = cname(b"file");
    let mkdir = MkdirIn {
        mode: 0o755,
        umask: 0,
    };
    let mknod = MknodIn {
        mode: libc::S_IFIFO | 0o600,
        ..Default::default()
    };
    let create = CreateIn {
        flags: libc::O_RDWR as u32,
        mode: REG | 0o644,
        ..Default::default()
    };
    let link = LinkIn { oldnodeid: file };
    let rename = RenameIn { newdir: dir };
    let rename2 = Rename2In {
        newdir: dir,
        flags: 0,
        padding: 0,
    };
    let noreplace = Rename2In {
        newdir: dir,
        flags: libc::RENAME_NOREPLACE,
        padding: 0,
    };
    vec![
        ("LOOKUP".into(), request(Opcode::Lookup, dir, &[&n])),
        ("UNLINK".into(), request(Opcode::Unlink, dir, &[&n])),
        ("RMDIR".into(), request(Opcode::Rmdir, dir, &[&n])),
        (
            "MKDIR".into(),
            request(Opcode::Mkdir, dir, &[mkdir.as_slice(), &n]),
        ),
        (
            "MKNOD".into(),
            request(Opcode::Mknod, dir, &[mknod.as_slice(), &n]),
        ),
        (
            "CREATE".into(),
            request(Opcode::Create, dir, &[create.as_slice(), &n]),
        ),
        (
            "LINK".into(),
            request(Opcode::Link, dir, &[link.as_slice(), &n]),
        ),
        (
            "SYMLINK name".into(),
            request(Opcode::Symlink, dir, &[&n, &cname(b"target")]),
        ),
        (
            "RENAME old".into(),
            request(Opcode::Rename, ROOT_ID, &[rename.as_slice(), &n, &good]),
        ),
        (
            "RENAME new".into(),
            request(Opcode::Rename, ROOT_ID, &[rename.as_slice(), &good, &n]),
        ),
        (
            "RENAME2 old".into(),
            request(Opcode::Rename2, ROOT_ID, &[rename2.as_slice(), &n, &good]),
        ),
        (
            "RENAME2 new".into(),
            request(Opcode::Rename2, ROOT_ID, &[rename2.as_slice(), &good, &n]),
        ),
        (
            "RENAME2 NOREPLACE new".into(),
            request(Opcode::Rename2, ROOT_ID, &[noreplace.as_slice(), &good, &n]),
        ),
    ]
}

#[test]
fn slash_in_every_name_slot() {
    let mut a = Arena::new(&Config::default());
    fs::write(a.b.host("file"), b"data").unwrap();
    fs::create_dir(a.b.host("dir")).unwrap();
    let dir = a.lookup("dir");
    let file = a.lookup("file");
    let sentinel = a.sentinel_path().to_str().unwrap().to_owned();
    let names: Vec<Vec<u8>> = vec![
        b"a/b".to_vec(),
        b"/".to_vec(),
        b"../sentinel".to_vec(),
        b"../../sentinel/secret".to_vec(),
        format!("{sentinel}/secret").into_bytes(),
        b"dir/../../sentinel/public".to_vec(),
        b"file/".to_vec(),
    ];
    for name in &names {
        for (what, req) in name_requests(dir, file, name) {
            a.refused(
                &req,
                libc::EINVAL,
                &format!("{what} {:?}", String::from_utf8_lossy(name)),
            );
        }
    }
    // Nothing was made, moved or removed in the share either.
    let mut listing: Vec<String> = fs::read_dir(a.b.share())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    listing.sort();
    assert_eq!(listing, ["dir", "file", "probe"]);
    assert_eq!(fs::read_dir(a.b.host("dir")).unwrap().count(), 0);
    assert_eq!(fs::read(a.b.host("file")).unwrap(), b"data");
}

#[test]
fn names_of_255_and_256_bytes() {
    let mut a = Arena::new(&Config::default());
    fs::write(a.b.host("file"), b"data").unwrap();
    fs::create_dir(a.b.host("dir")).unwrap();
    let dir = a.lookup("dir");
    let file = a.lookup("file");
    for (what, req) in name_requests(dir, file, &[b'x'; 256]) {
        a.refused(&req, libc::ENAMETOOLONG, &format!("{what} 256 bytes"));
    }
    // 255 bytes is NAME_MAX: an ordinary name.
    let max = "y".repeat(255);
    a.s.create(dir, &max, REG | 0o644, libc::O_RDWR as u32, 0)
        .unwrap();
    assert!(a.b.host(format!("dir/{max}")).exists());
    a.verify("255-byte name");
}

/// Symlinks planted by the host (or made by the guest) that point out of the share: the guest
/// sees the link, never its target.
#[test]
fn symlinks_out_of_the_share_are_never_followed() {
    let mut a = Arena::new(&Config::xattr());
    let sentinel = a.sentinel_path().to_path_buf();
    let targets: Vec<(&str, String)> = vec![
        ("shadow", "/etc/shadow".into()),
        ("up", "../../..".into()),
        ("abs_secret", sentinel.join("secret").display().to_string()),
        ("rel_secret", "../sentinel/secret".into()),
        ("abs_dir", sentinel.display().to_string()),
        ("rel_dir", "../sentinel".into()),
    ];
    // Half planted on the host, half made by the guest.
    for (i, (name, target)) in targets.iter().enumerate() {
        if i % 2 == 0 {
            std::os::unix::fs::symlink(target, a.b.host(name)).unwrap();
        } else {
            let e = a.s.symlink(ROOT_ID, name, target).unwrap();
            assert_eq!(e.attr.mode & libc::S_IFMT, libc::S_IFLNK, "{name}");
        }
    }
    for (name, target) in &targets {
        let what = |op: &str| format!("{op} through {name} -> {target}");
        // LOOKUP gives the link itself.
        let e = a.s.lookup(ROOT_ID, name).unwrap();
        assert_eq!(
            e.attr.mode & libc::S_IFMT,
            libc::S_IFLNK,
            "{}",
            what("LOOKUP")
        );
        let md = fs::symlink_metadata(a.b.host(name)).unwrap();
        assert_eq!(e.attr.ino, md.ino(), "{}", what("LOOKUP ino"));
        assert_eq!(a.s.readlink(e.nodeid).unwrap(), target.as_bytes());
        let link = e.nodeid;

        // OPEN of the link node never opens the target.
        for flags in [
            RDONLY,
            libc::O_RDWR as u32,
            (libc::O_WRONLY | libc::O_TRUNC) as u32,
        ] {
            assert_errno(a.s.open(link, flags), libc::EBADF, &what("OPEN"));
        }
        assert_errno(a.s.opendir(link, RDONLY), libc::EBADF, &what("OPENDIR"));
        // Used as a directory: not one.
        assert_errno(
            a.s.lookup(link, "secret"),
            libc::ENOTDIR,
            &what("LOOKUP in"),
        );
        assert_errno(
            a.s.create(link, "planted", REG | 0o644, libc::O_RDWR as u32, 0),
            libc::ENOTDIR,
            &what("CREATE in"),
        );
        assert_errno(
            a.s.mkdir(link, "d", 0o755, 0),
            libc::ENOTDIR,
            &what("MKDIR in"),
        );
        assert_errno(
            a.s.symlink(link, "l", "x"),
            libc::ENOTDIR,
            &what("SYMLINK in"),
        );
        assert_errno(
            a.s.unlink(link, "secret"),
            libc::ENOTDIR,
            &what("UNLINK in"),
        );
        assert_errno(
            a.s.rename(ROOT_ID, "probe", link, "stolen"),
            libc::ENOTDIR,
            &what("RENAME into"),
        );
        // Changes to the link node change the link (or are refused), never the target.
        let _ = a.s.setattr(link, &Setattr::new().size(0));
        let _ = a.s.setattr(link, &Setattr::new().mode(0o777));
        let _ = a.s.setattr(link, &Setattr::new().mtime(1, 0).atime(1, 0));
        let _ = a.s.setxattr(link, "user.planted", b"x", 0);
        let _ = a.s.removexattr(link, "user.sentinel");
        let _ =
            a.s.getxattr(link, "user.sentinel", 100)
                .map(|v| panic!("{}: read the target's xattr {v:?}", what("GETXATTR")));
        a.verify(&what("every opcode"));
        a.s.forget(link, 1).unwrap();
    }
    // A hard link to a link node links the symlink itself, inside the share.
    let l = a.s.lookup(ROOT_ID, "abs_secret").unwrap().nodeid;
    let h = a.s.link(l, ROOT_ID, "hard").unwrap();
    assert_eq!(h.attr.mode & libc::S_IFMT, libc::S_IFLNK);
    assert!(fs::symlink_metadata(a.b.host("hard")).unwrap().is_symlink());
    a.verify("LINK of a symlink");
}

/// READ through a handle can only ever return share data: open handles are bound to the file
/// that was opened, even if the host swaps the name for a symlink afterwards.
#[test]
fn swapping_a_name_for_a_symlink_after_lookup() {
    let mut a = Arena::new(&Config::default());
    fs::write(a.b.host("victim"), b"share data").unwrap();
    let e = a.s.lookup(ROOT_ID, "victim").unwrap();
    // The host replaces the file by a symlink to the sentinel after the guest looked it up.
    fs::rename(a.b.host("victim"), a.b.host("victim.old")).unwrap();
    std::os::unix::fs::symlink(a.sentinel_path().join("secret"), a.b.host("victim")).unwrap();
    // The node still names the original inode: opening it reads the original data.
    let o = a.s.open(e.nodeid, RDONLY).unwrap();
    assert_eq!(a.s.read(e.nodeid, o.fh, 0, 100).unwrap(), b"share data");
    // A fresh lookup finds the symlink, which cannot be opened.
    let l = a.s.lookup(ROOT_ID, "victim").unwrap();
    assert_eq!(l.attr.mode & libc::S_IFMT, libc::S_IFLNK);
    assert_errno(a.s.open(l.nodeid, RDONLY), libc::EBADF, "OPEN swapped link");
    a.verify("name swapped for a symlink");
}

/// The raw OPEN of a symlink node with O_PATH-ish and O_NOFOLLOW-less flags: the flags the
/// guest sends cannot make the server follow.
#[test]
fn open_flags_cannot_make_the_server_follow() {
    let mut a = Arena::new(&Config::default());
    std::os::unix::fs::symlink(a.sentinel_path().join("secret"), a.b.host("l")).unwrap();
    let l = a.lookup("l");
    for flags in [
        libc::O_RDONLY,
        libc::O_RDONLY | libc::O_NOFOLLOW,
        libc::O_PATH,
        libc::O_RDONLY | libc::O_DIRECTORY,
        libc::O_WRONLY | libc::O_APPEND,
        libc::O_RDWR | libc::O_CREAT,
    ] {
        let arg = OpenIn {
            flags: flags as u32,
            open_flags: 0,
        };
        let (req, u) = request(Opcode::Open, l, &[arg.as_slice()]);
        let r = a.send(&req, 4096);
        let (len, err, uu) = attacks::out_header(&r);
        assert_eq!(uu, u);
        assert!(
            err < 0 && len as usize == 16,
            "OPEN flags {flags:#o} of a symlink node succeeded"
        );
        a.verify(&format!("OPEN flags {flags:#o}"));
    }
}

/// The sentinel check can fail: a read, a chmod, an xattr, a new file or a listing of the
/// sentinel each trip it.
#[test]
fn the_sentinel_notices_reads_and_changes() {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    type Touch = Box<dyn Fn(&std::path::Path)>;
    let touches: Vec<(&str, Touch)> = vec![
        (
            "read",
            Box::new(|d| drop(fs::read(d.join("secret")).unwrap())),
        ),
        (
            "read through the link",
            Box::new(|d| drop(fs::read(d.join("link")).unwrap())),
        ),
        (
            "list",
            Box::new(|d| assert_eq!(fs::read_dir(d.join("sub")).unwrap().count(), 1)),
        ),
        (
            "chmod",
            Box::new(|d| attacks::set_mode(&d.join("public"), 0o600)),
        ),
        (
            "xattr",
            Box::new(|d| attacks::lsetxattr(&d.join("public"), "user.x", b"1").unwrap()),
        ),
        (
            "create",
            Box::new(|d| fs::write(d.join("new"), b"").unwrap()),
        ),
        (
            "write",
            Box::new(|d| fs::write(d.join("sub/deep"), b"deep\n").unwrap()),
        ),
    ];
    for (what, touch) in touches {
        let tmp = tempfile::tempdir().unwrap();
        let s = attacks::Sentinel::create(&tmp.path().join("sentinel"));
        s.assert_unchanged("nothing");
        touch(&s.root);
        let tripped = catch_unwind(AssertUnwindSafe(|| s.assert_unchanged(what))).is_err();
        assert!(tripped, "the sentinel missed a {what}");
    }
}
