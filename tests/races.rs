//! Host-side races: a process on the host moves a directory out of the share while the guest
//! holds its node (and, separately, swaps it for a symlink to /etc or to a directory outside).
//! The worker's descriptor for that node follows the directory out, so only Landlock (opens,
//! creations, removals, links, renames, truncation) and the share policy's confinement check
//! (SETATTR, SETXATTR, REMOVEXATTR: no Landlock right covers them) stand between the guest and
//! the outside. Every mutating request under the held node, and OPEN of files inside it, must
//! get an errno; the moved directory, the attack catalogue's sentinel beside the share and /etc
//! must be unchanged; the worker must keep serving. Run in both jailed sandboxes with
//! `--landlock require`; `landlock_off_leaves_the_hole_open` shows what the ruleset closes.

#[path = "attacks/mod.rs"]
mod attacks;
mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use attacks::{errno_of, lsetxattr, Arena, Sentinel};
use common::Config;
use guest_driver::abi::ROOT_ID;
use guest_driver::Setattr;

/// Nodes the guest holds inside `held/` before the host moves it.
struct Held {
    dir: u64,
    inner: u64,
    sub: u64,
    victim: u64,
}

fn arena(sandbox: &str, landlock: &str) -> Arena {
    let cfg = Config {
        xattr: true,
        fsjail_args: vec![
            "--sandbox".into(),
            sandbox.into(),
            "--landlock".into(),
            landlock.into(),
        ],
        ..Config::default()
    };
    let a = Arena::new(&cfg);
    if landlock == "require" {
        assert!(
            a.b.log_shows("Landlock ABI", std::time::Duration::from_secs(10)),
            "the worker did not report Landlock:\n{}",
            a.b.log()
        );
    }
    a
}

/// Creates `share/held/{inner,sub/,victim}` on the host and looks them up as the guest.
fn hold(a: &Arena) -> Held {
    let held = a.b.host("held");
    fs::create_dir(&held).unwrap();
    fs::write(held.join("inner"), b"inner: must stay as it is\n").unwrap();
    lsetxattr(&held.join("inner"), "user.race", b"before").unwrap();
    fs::create_dir(held.join("sub")).unwrap();
    fs::write(held.join("victim"), b"victim\n").unwrap();
    let s = &a.s;
    let dir = a.lookup("held");
    let look = |name: &str| s.lookup(dir, name).unwrap().nodeid;
    Held {
        dir,
        inner: look("inner"),
        sub: look("sub"),
        victim: look("victim"),
    }
}

/// `share/../outside`, created on first use.
fn outside(a: &Arena) -> PathBuf {
    let o = a.b.share().parent().unwrap().join("outside");
    fs::create_dir_all(&o).unwrap();
    o
}

/// Every mutating request under the held directory, and opens of what is inside it. Returns
/// (what, errno) for each; panics if one succeeds.
fn mutate_under(a: &Arena, h: &Held) -> Vec<(&'static str, i32)> {
    let s = &a.s;
    let reg = libc::S_IFREG | 0o644;
    let mut out = Vec::new();
    let mut e = |what: &'static str, errno: i32| out.push((what, errno));
    e(
        "CREATE",
        errno_of(
            s.create(h.dir, "created", reg, libc::O_RDWR as u32, 0),
            "CREATE",
        ),
    );
    e(
        "MKNOD fifo",
        errno_of(s.mknod(h.dir, "fifo", libc::S_IFIFO | 0o644, 0, 0), "MKNOD"),
    );
    e("MKDIR", errno_of(s.mkdir(h.dir, "made", 0o755, 0), "MKDIR"));
    e(
        "SYMLINK",
        errno_of(s.symlink(h.dir, "symlinked", "/etc/passwd"), "SYMLINK"),
    );
    e(
        "TMPFILE",
        errno_of(s.tmpfile(h.dir, reg, libc::O_RDWR as u32, 0), "TMPFILE"),
    );
    let probe = a.lookup("probe");
    e(
        "LINK share file into it",
        errno_of(s.link(probe, h.dir, "linked-in"), "LINK in"),
    );
    e(
        "LINK its file into the share",
        errno_of(s.link(h.inner, ROOT_ID, "linked-out"), "LINK out"),
    );
    e(
        "RENAME within it",
        errno_of(s.rename(h.dir, "victim", h.dir, "renamed"), "RENAME within"),
    );
    e(
        "RENAME its file into the share",
        errno_of(s.rename(h.dir, "victim", ROOT_ID, "stolen"), "RENAME out"),
    );
    e(
        "RENAME share file into it",
        errno_of(s.rename(ROOT_ID, "probe", h.dir, "pushed"), "RENAME in"),
    );
    e("UNLINK", errno_of(s.unlink(h.dir, "victim"), "UNLINK"));
    e("RMDIR", errno_of(s.rmdir(h.dir, "sub"), "RMDIR"));
    e(
        "SETATTR mode of the directory",
        errno_of(s.setattr(h.dir, &Setattr::new().mode(0o700)), "SETATTR dir"),
    );
    e(
        "SETATTR mode of a file in it",
        errno_of(
            s.setattr(h.inner, &Setattr::new().mode(0o666)),
            "SETATTR mode",
        ),
    );
    e(
        "SETATTR owner",
        errno_of(
            s.setattr(h.inner, &Setattr::new().uid(4242).gid(4242)),
            "SETATTR owner",
        ),
    );
    e(
        "SETATTR times",
        errno_of(
            s.setattr(h.inner, &Setattr::new().mtime(1, 0).atime(1, 0)),
            "SETATTR times",
        ),
    );
    e(
        "SETATTR size",
        errno_of(s.setattr(h.inner, &Setattr::new().size(0)), "SETATTR size"),
    );
    e(
        "SETATTR mode of a subdirectory",
        errno_of(s.setattr(h.sub, &Setattr::new().mode(0o777)), "SETATTR sub"),
    );
    e(
        "SETXATTR",
        errno_of(s.setxattr(h.inner, "user.race", b"after", 0), "SETXATTR"),
    );
    e(
        "REMOVEXATTR",
        errno_of(s.removexattr(h.inner, "user.race"), "REMOVEXATTR"),
    );
    e(
        "OPEN read",
        errno_of(s.open(h.inner, libc::O_RDONLY as u32), "OPEN read"),
    );
    e(
        "OPEN write",
        errno_of(s.open(h.victim, libc::O_WRONLY as u32), "OPEN write"),
    );
    e(
        "OPEN truncate",
        errno_of(
            s.open(h.victim, (libc::O_WRONLY | libc::O_TRUNC) as u32),
            "OPEN trunc",
        ),
    );
    e(
        "OPENDIR",
        errno_of(s.opendir(h.dir, libc::O_RDONLY as u32), "OPENDIR"),
    );
    out
}

/// The errno each request gets from the jail: Landlock's EACCES for opens, creations and
/// removals (a rename out of the held directory is a removal there), EXDEV for a link that
/// would give a file from outside the share's rights, ENOENT from the confinement check for
/// what Landlock does not cover.
fn expected(what: &str) -> i32 {
    match what {
        "LINK its file into the share" => libc::EXDEV,
        w if w.starts_with("SETATTR") || w.contains("XATTR") => libc::ENOENT,
        _ => libc::EACCES,
    }
}

#[track_caller]
fn assert_refused(a: &Arena, got: &[(&str, i32)]) {
    let wrong: Vec<String> = got
        .iter()
        .filter(|(what, errno)| *errno != expected(what))
        .map(|(what, errno)| {
            format!(
                "{what}: {} (want {})",
                std::io::Error::from_raw_os_error(*errno),
                std::io::Error::from_raw_os_error(expected(what))
            )
        })
        .collect();
    assert!(wrong.is_empty(), "{}\n{}", wrong.join("\n"), a.b.log());
}

/// The directory /etc, enough to see a file created or removed in it or its mode changed.
fn etc_state() -> (u32, i64, i64, Vec<std::ffi::OsString>) {
    let md = fs::metadata("/etc").unwrap();
    let mut names: Vec<_> = fs::read_dir("/etc")
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    (md.mode(), md.mtime(), md.mtime_nsec(), names)
}

/// The held directory goes to `outside/held`; everything under the held node is refused.
fn moved_out(sandbox: &str) {
    let mut a = arena(sandbox, "require");
    let h = hold(&a);
    let moved = outside(&a).join("held");
    fs::rename(a.b.host("held"), &moved).unwrap();
    let outside_sentinel = Sentinel::adopt(&moved);
    let got = mutate_under(&a, &h);
    assert_refused(&a, &got);
    outside_sentinel.assert_unchanged("requests under a node moved out of the share");
    a.verify("requests under a node moved out of the share");
    assert!(a.b.host("probe").exists(), "the probe left the share");
    // The share itself still takes changes.
    a.s.mkdir(ROOT_ID, "still-writable", 0o755, 0).unwrap();
    assert!(a.b.host("still-writable").is_dir());
}

/// The held directory goes out and a symlink to `target` takes its name in the share.
fn swapped_for_symlink(sandbox: &str, target: impl Fn(&Arena) -> PathBuf) {
    let mut a = arena(sandbox, "require");
    let h = hold(&a);
    let moved = outside(&a).join("held");
    fs::rename(a.b.host("held"), &moved).unwrap();
    let to = target(&a);
    std::os::unix::fs::symlink(&to, a.b.host("held")).unwrap();
    let outside_sentinel = Sentinel::adopt(&moved);
    let etc = etc_state();
    let got = mutate_under(&a, &h);
    assert_refused(&a, &got);
    // A fresh LOOKUP finds the symlink, and nothing goes through it: the guest resolves
    // symlinks itself, and the server never follows one as a parent.
    let s = &a.s;
    let link = a.lookup("held");
    assert_eq!(s.readlink(link).unwrap(), to.as_os_str().as_encoded_bytes());
    for (what, r) in [
        (
            "CREATE through the symlink",
            s.create(
                link,
                "through",
                libc::S_IFREG | 0o644,
                libc::O_RDWR as u32,
                0,
            )
            .map(drop),
        ),
        (
            "MKDIR through the symlink",
            s.mkdir(link, "through", 0o755, 0).map(drop),
        ),
        (
            "LOOKUP through the symlink",
            s.lookup(link, "passwd").map(drop),
        ),
        (
            "UNLINK through the symlink",
            s.unlink(link, "secret").map(drop),
        ),
    ] {
        assert_eq!(errno_of(r, what), libc::ENOTDIR, "{what}");
    }
    outside_sentinel.assert_unchanged("requests under a node swapped for a symlink");
    assert_eq!(etc_state(), etc, "/etc changed");
    a.verify("requests under a node swapped for a symlink");
}

fn swapped_for_symlink_to_etc(sandbox: &str) {
    swapped_for_symlink(sandbox, |_| PathBuf::from("/etc"));
}

fn swapped_for_symlink_to_sentinel(sandbox: &str) {
    swapped_for_symlink(sandbox, |a| a.sentinel_path().to_path_buf());
}

macro_rules! per_sandbox {
    ($($name:ident),* $(,)?) => {
        mod namespace {
            $( #[test] fn $name() { super::$name("namespace") } )*
        }
        mod chroot {
            $( #[test] fn $name() { super::$name("chroot") } )*
        }
    };
}

per_sandbox!(
    moved_out,
    swapped_for_symlink_to_etc,
    swapped_for_symlink_to_sentinel
);

/// Without Landlock the descriptor reaches outside: a MKDIR and a CREATE under the moved node
/// land in the moved directory. This is what `landlock = "off"` (and `--sandbox none`) leave
/// open, and it shows the tests above would see the hole if the ruleset stopped covering it.
#[test]
fn landlock_off_leaves_the_hole_open() {
    let a = arena("namespace", "off");
    let h = hold(&a);
    let moved = outside(&a).join("held");
    fs::rename(a.b.host("held"), &moved).unwrap();
    a.s.mkdir(h.dir, "escaped", 0o755, 0)
        .expect("without Landlock MKDIR under a moved node succeeds");
    assert!(moved.join("escaped").is_dir());
    // The confinement check still refuses what Landlock would not cover anyway.
    assert_eq!(
        errno_of(a.s.setattr(h.inner, &Setattr::new().mode(0o666)), "SETATTR"),
        libc::ENOENT
    );
    assert_eq!(
        fs::metadata(moved.join("inner")).unwrap().mode() & 0o777,
        0o644
    );
}

/// The moved directory coming back: the held node works again (the check is about where the
/// node is now, not where it once was).
#[test]
fn moved_back_in_works_again() {
    let a = arena("namespace", "require");
    let h = hold(&a);
    let moved = outside(&a).join("held");
    fs::rename(a.b.host("held"), &moved).unwrap();
    assert_eq!(
        errno_of(a.s.mkdir(h.dir, "x", 0o755, 0), "MKDIR while out"),
        libc::EACCES
    );
    fs::rename(&moved, a.b.host("held")).unwrap();
    a.s.mkdir(h.dir, "x", 0o755, 0).unwrap();
    a.s.setattr(h.inner, &Setattr::new().mode(0o600)).unwrap();
    assert!(a.b.host("held/x").is_dir());
    assert_eq!(
        fs::metadata(a.b.host("held/inner")).unwrap().mode() & 0o777,
        0o600
    );
}

/// `--landlock require` with `--sandbox none` would promise a ruleset no worker applies.
#[test]
fn require_without_a_sandbox_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(common::fsjail_binary())
        .args(["serve", "--sandbox", "none", "--landlock", "require"])
        .arg("--socket-path")
        .arg(dir.path().join("s.sock"))
        .arg("--shared-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--landlock require: --sandbox none serves unconfined"),
        "{stderr}"
    );
    assert!(!dir.path().join("s.sock").exists(), "the socket was bound");
}

/// A share that is itself a bind mount of a directory inside its filesystem cannot be anchored
/// above (the worker can only bind what the mount shows): the worker says so in its log.
#[test]
fn a_share_bound_from_a_subdirectory_is_warned_about() {
    struct Unmount(std::ffi::CString);
    impl Drop for Unmount {
        fn drop(&mut self) {
            // SAFETY: a NUL-terminated path; umount2 only reads it.
            unsafe { libc::umount2(self.0.as_ptr(), libc::MNT_DETACH) };
        }
    }
    let top = tempfile::tempdir().unwrap();
    let (inner, share) = (top.path().join("real/inner"), top.path().join("share"));
    fs::create_dir_all(&inner).unwrap();
    fs::create_dir(&share).unwrap();
    let c = |p: &std::path::Path| std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let (src, dst) = (c(&inner), c(&share));
    // SAFETY: NUL-terminated paths; a plain bind mount with no data.
    let r = unsafe {
        libc::mount(
            src.as_ptr(),
            dst.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        )
    };
    assert_eq!(r, 0, "bind mount: {}", std::io::Error::last_os_error());
    let _unmount = Unmount(dst);
    let b = common::Backend::start(
        common::Kind::Fsjail,
        &Config {
            share_dir: Some(share),
            ..Config::default()
        },
    );
    let _s = b.session();
    let t = std::time::Instant::now();
    while !b.log().contains("is a bind mount of") {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(10),
            "no warning:\n{}",
            b.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        b.log().contains("/real/inner inside its filesystem"),
        "{}",
        b.log()
    );
}
