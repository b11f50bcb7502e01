//! Step 1, the child's side: what runs between `clone3` and `exec`.
//!
//! Everything here is prepared by the parent ([`ChildPlan::new`]) and run by the child
//! ([`ChildPlan::run`]) using raw syscalls and async-signal-safe libc functions only; see the
//! parent module for the design and the list of steps.

use std::ffi::{c_char, CString};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// The exit status of a child that failed between clone and exec (its stderr says why).
pub const CHILD_FAILED: i32 = 127;

/// Everything the child uses between clone and exec, built by the parent: raw descriptor
/// numbers (the parent's `OwnedFd`s keep them open until after the clone), NUL-terminated
/// pointer arrays whose strings live in this struct, and the signal state to install.
pub(super) struct ChildPlan {
    sync_r: RawFd,
    sync_w: RawFd,
    devnull: RawFd,
    stderr_w: RawFd,
    control: RawFd,
    exe: RawFd,
    become_root: bool,
    _strings: Vec<CString>,
    argv: Vec<*const c_char>,
    envp: [*const c_char; 1],
    empty_mask: libc::sigset_t,
    default_action: libc::sigaction,
}

/// The control socket's number in the worker; `fsjail worker --control-fd` says it too.
pub const WORKER_CONTROL_FD: RawFd = 3;

impl ChildPlan {
    pub(super) fn new(
        sync_r: &OwnedFd,
        sync_w: &OwnedFd,
        devnull: &OwnedFd,
        stderr_w: &OwnedFd,
        control: &OwnedFd,
        exe: &OwnedFd,
        become_root: bool,
    ) -> ChildPlan {
        // Literals without NUL bytes: CString::new cannot fail on them.
        let strings: Vec<CString> = [&b"fsjail"[..], b"worker", b"--control-fd", b"3"]
            .iter()
            .filter_map(|s| CString::new(*s).ok())
            .collect();
        let mut argv: Vec<*const c_char> = strings.iter().map(|s| s.as_ptr()).collect();
        argv.push(std::ptr::null());
        // SAFETY: sigset_t and sigaction are plain C structs for which all-zero is a valid
        // value; sigemptyset then initialises the set properly. A zeroed sigaction is
        // SIG_DFL with no flags and an empty mask.
        let (empty_mask, default_action) = unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = libc::SIG_DFL;
            libc::sigemptyset(&mut action.sa_mask);
            (set, action)
        };
        ChildPlan {
            sync_r: sync_r.as_raw_fd(),
            sync_w: sync_w.as_raw_fd(),
            devnull: devnull.as_raw_fd(),
            stderr_w: stderr_w.as_raw_fd(),
            control: control.as_raw_fd(),
            exe: exe.as_raw_fd(),
            become_root,
            _strings: strings,
            argv,
            envp: [std::ptr::null()],
            empty_mask,
            default_action,
        }
    }

    /// The child between clone and exec. Never returns.
    ///
    /// # Safety
    /// Call only in the child of a fork-like clone. Uses raw syscalls and async-signal-safe
    /// libc functions only: no allocation, no lock, no panic path, no std I/O.
    pub(super) unsafe fn run(&self) -> ! {
        let mut err_fd = self.stderr_w;

        // 1. Our copy of the write end must go, or a dead broker would never give us EOF.
        // SAFETY: closing a descriptor number the parent kept open for us; nothing else in
        // this single-threaded child uses it.
        unsafe { libc::close(self.sync_w) };
        let mut byte = 0u8;
        loop {
            // SAFETY: reads at most one byte into `byte`, a live local.
            let n = unsafe { libc::read(self.sync_r, (&mut byte as *mut u8).cast(), 1) };
            if n == 1 {
                break;
            }
            if n < 0 && errno() == libc::EINTR {
                continue;
            }
            fail(
                err_fd,
                b"waiting for the broker (it died?)",
                if n == 0 { 0 } else { errno() },
            );
        }

        // 2. Root in the new user namespace. Raw syscalls: glibc's wrappers would try to
        // signal the broker's other threads, which do not exist here.
        if self.become_root {
            // SAFETY: setresgid takes three integers and touches no memory of ours.
            if unsafe { libc::syscall(libc::SYS_setresgid, 0, 0, 0) } != 0 {
                fail(err_fd, b"setresgid(0) in the user namespace", errno());
            }
            // SAFETY: setresuid takes three integers and touches no memory of ours.
            if unsafe { libc::syscall(libc::SYS_setresuid, 0, 0, 0) } != 0 {
                fail(err_fd, b"setresuid(0) in the user namespace", errno());
            }
        }

        // 3. Our own session.
        // SAFETY: setsid takes no arguments.
        if unsafe { libc::setsid() } < 0 {
            fail(err_fd, b"setsid", errno());
        }

        // 4. Die with the broker. Armed after the uid change, which clears it.
        // SAFETY: PR_SET_PDEATHSIG takes a signal number; the unused arguments are zero.
        if unsafe {
            libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            )
        } != 0
        {
            fail(err_fd, b"prctl(PR_SET_PDEATHSIG)", errno());
        }
        let mut pfd = libc::pollfd {
            fd: self.control,
            events: 0,
            revents: 0,
        };
        // SAFETY: one pollfd, a live local; a zero timeout never blocks.
        if unsafe { libc::poll(&mut pfd, 1, 0) } < 0 {
            fail(err_fd, b"poll on the control socket", errno());
        }
        if pfd.revents & (libc::POLLHUP | libc::POLLERR) != 0 {
            fail(err_fd, b"the broker died during the spawn", 0);
        }

        // 5. Signal state survives exec where it is SIG_IGN or blocked: start from defaults.
        // Errors are expected (SIGKILL, SIGSTOP, glibc's internal signals) and harmless.
        for sig in 1..=64 {
            // SAFETY: `default_action` is a valid SIG_DFL sigaction built by the parent and
            // alive in `self`; the old action is not asked for.
            unsafe { libc::sigaction(sig, &self.default_action, std::ptr::null_mut()) };
        }
        // SAFETY: `empty_mask` was initialised by sigemptyset and lives in `self`.
        if unsafe { libc::sigprocmask(libc::SIG_SETMASK, &self.empty_mask, std::ptr::null_mut()) }
            != 0
        {
            fail(err_fd, b"sigprocmask", errno());
        }

        // 6. Descriptors. Copies above 3 first, so that no dup2 below clobbers a source that
        // happens to sit on 0..=3; then everything from 4 up is close-on-exec. The binary's
        // descriptor is copied too: a broker whose fd 3 was free when it opened the binary
        // (a multi-threaded test process, say) had it replaced by the control socket, and
        // the exec then failed with EACCES.
        // SAFETY: F_DUPFD_CLOEXEC takes an integer and touches no memory; a bad fd is an error.
        let copy = |fd: RawFd| unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 4) };
        let (null, err, ctl, exe) = (
            copy(self.devnull),
            copy(self.stderr_w),
            copy(self.control),
            copy(self.exe),
        );
        if null < 0 || err < 0 || ctl < 0 || exe < 0 {
            fail(err_fd, b"fcntl(F_DUPFD_CLOEXEC)", errno());
        }
        err_fd = err;
        for (from, to) in [(null, 0), (err, 1), (err, 2), (ctl, WORKER_CONTROL_FD)] {
            // SAFETY: dup2 takes two integers; replacing 0..=3 is the point of this step.
            if unsafe { libc::dup2(from, to) } < 0 {
                fail(err_fd, b"dup2", errno());
            }
        }
        // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only marks descriptors; it takes
        // integers and touches no memory.
        if unsafe {
            libc::syscall(
                libc::SYS_close_range,
                4u32,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            )
        } != 0
        {
            fail(err_fd, b"close_range", errno());
        }

        // 7. The worker. execveat on the descriptor the broker opened: the binary the broker
        // checked, even if the path was replaced since (an upgrade in place).
        // SAFETY: `argv` and `envp` are NULL-terminated arrays of pointers into strings owned
        // by `self` (alive until the exec replaces this image); the path is an empty C string
        // as AT_EMPTY_PATH wants.
        unsafe {
            libc::syscall(
                libc::SYS_execveat,
                exe,
                c"".as_ptr(),
                self.argv.as_ptr(),
                self.envp.as_ptr(),
                libc::AT_EMPTY_PATH,
            )
        };
        fail(err_fd, b"execveat of the fsjail binary", errno());
    }
}

/// errno, read without allocating.
fn errno() -> i32 {
    // SAFETY: __errno_location returns the calling thread's errno slot, always valid.
    unsafe { *libc::__errno_location() }
}

/// Writes "fsjail worker: spawn: <what>: errno <n>" to `fd` and exits with CHILD_FAILED.
/// Formats into a stack buffer: no allocation.
fn fail(fd: RawFd, what: &[u8], err: i32) -> ! {
    let mut buf = [0u8; 160];
    let mut len = 0;
    let mut push = |bytes: &[u8]| {
        for &b in bytes {
            if len < buf.len() {
                buf[len] = b;
                len += 1;
            }
        }
    };
    push(b"fsjail worker: spawn: ");
    push(what);
    if err != 0 {
        push(b": errno ");
        let mut digits = [0u8; 10];
        let mut n = err.unsigned_abs();
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 || i == 0 {
                break;
            }
        }
        push(&digits[i..]);
    }
    push(b"\n");
    // SAFETY: write and _exit are async-signal-safe; `buf[..len]` is initialised memory.
    unsafe {
        libc::write(fd, buf.as_ptr().cast(), len.min(buf.len()));
        libc::_exit(CHILD_FAILED)
    }
}
