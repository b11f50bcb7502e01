//! `--seccomp trap`: a SIGSYS handler that names the blocked call, then exits.
//!
//! It runs in signal context on whichever thread made the call, possibly while that thread
//! holds the allocator's or stderr's lock, so it only formats into a stack buffer and calls
//! write(2) and _exit(2): both async-signal-safe, and both allowed by the filter (a blocked
//! call inside the handler would recurse).

use std::io;

use crate::Arch;

/// Exit status after a trapped call: what a shell reports for a process killed by SIGSYS.
pub const TRAP_EXIT_STATUS: i32 = 128 + libc::SIGSYS;

/// `si_code` of a SIGSYS sent by seccomp.
const SYS_SECCOMP: libc::c_int = 1;

/// The SIGSYS view of `siginfo_t` (`_sigsys` in the kernel's union, at offset 16 on 64-bit
/// targets); the libc crate does not expose those fields. Unread fields are kept so the
/// layout is the kernel's.
#[allow(dead_code)]
#[repr(C)]
struct SigsysInfo {
    signo: libc::c_int,
    errno: libc::c_int,
    code: libc::c_int,
    _pad: libc::c_int,
    call_addr: *mut libc::c_void,
    syscall: libc::c_int,
    arch: libc::c_uint,
}

pub(crate) fn install_handler() -> io::Result<()> {
    // SAFETY: an all-zero sigaction is a valid value (no flags, empty mask, SIG_DFL), filled in
    // below before use.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = handle_sigsys as extern "C" fn(_, _, _) as usize;
    action.sa_flags = libc::SA_SIGINFO;
    // SAFETY: `action.sa_mask` is a valid sigset_t owned by this frame.
    if unsafe { libc::sigemptyset(&mut action.sa_mask) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `action` is fully initialised and points at a handler with the SA_SIGINFO
    // signature; the old action is not wanted (null).
    if unsafe { libc::sigaction(libc::SIGSYS, &action, std::ptr::null_mut()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

extern "C" fn handle_sigsys(
    _signo: libc::c_int,
    info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    let mut line = Line::new();
    // SAFETY: the kernel passes a valid siginfo_t (128 bytes) to an SA_SIGINFO handler;
    // SigsysInfo is a 32-byte prefix of it with the kernel's layout for SIGSYS. Null is
    // checked anyway: the handler must not fault.
    let sigsys = (!info.is_null()).then(|| unsafe { std::ptr::read(info.cast::<SigsysInfo>()) });
    if let Some(sigsys) = sigsys.filter(|s| s.code == SYS_SECCOMP) {
        let nr = sigsys.syscall as u32;
        line.push(b"fsjail: seccomp: blocked system call ");
        match Arch::host().and_then(|arch| crate::syscall_name(arch, nr)) {
            Some(name) => line.push(name.as_bytes()),
            None => line.push(b"?"),
        }
        line.push(b" (");
        line.push_dec(u64::from(nr));
        line.push(b")");
        if let Some(args) = syscall_args(context) {
            line.push(b" args");
            for arg in args {
                line.push(b" ");
                line.push_hex(arg);
            }
        }
        line.push(b"; exiting (--seccomp trap)\n");
    } else {
        line.push(b"fsjail: SIGSYS not sent by seccomp; exiting\n");
    }
    let bytes = line.as_bytes();
    // SAFETY: write(2) and _exit(2) are async-signal-safe; `bytes` is a live stack buffer.
    unsafe {
        libc::write(libc::STDERR_FILENO, bytes.as_ptr().cast(), bytes.len());
        libc::_exit(TRAP_EXIT_STATUS);
    }
}

/// The six argument registers of the trapped call. The kernel rolls the registers back to the
/// syscall's entry state before delivering a seccomp SIGSYS, so they hold the arguments.
fn syscall_args(context: *mut libc::c_void) -> Option<[u64; 6]> {
    if context.is_null() {
        return None;
    }
    let ucontext = context.cast::<libc::ucontext_t>();
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: for an SA_SIGINFO handler the third argument is the interrupted thread's
        // ucontext_t, valid for the handler's duration.
        let gregs = unsafe { &(*ucontext).uc_mcontext.gregs };
        let reg = |r: libc::c_int| gregs[r as usize] as u64;
        Some([
            reg(libc::REG_RDI),
            reg(libc::REG_RSI),
            reg(libc::REG_RDX),
            reg(libc::REG_R10),
            reg(libc::REG_R8),
            reg(libc::REG_R9),
        ])
    }
    #[cfg(target_arch = "aarch64")]
    {
        // SAFETY: as above; on aarch64 the arguments are x0..x5.
        let regs = unsafe { &(*ucontext).uc_mcontext.regs };
        Some([regs[0], regs[1], regs[2], regs[3], regs[4], regs[5]])
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        let _ = ucontext;
        None
    }
}

/// A fixed-size line built without allocating; what does not fit is cut.
struct Line {
    buf: [u8; 256],
    len: usize,
}

impl Line {
    fn new() -> Self {
        Line {
            buf: [0; 256],
            len: 0,
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        let room = self.buf.len() - self.len;
        let n = bytes.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
    }

    fn push_dec(&mut self, mut v: u64) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.push(&digits[i..]);
    }

    fn push_hex(&mut self, mut v: u64) {
        let mut digits = [0u8; 18];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b"0123456789abcdef"[(v & 0xf) as usize];
            v >>= 4;
            if v == 0 {
                break;
            }
        }
        i -= 2;
        digits[i] = b'0';
        digits[i + 1] = b'x';
        self.push(&digits[i..]);
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_formats_numbers_without_allocating() {
        let mut l = Line::new();
        l.push(b"n=");
        l.push_dec(0);
        l.push(b" ");
        l.push_dec(u64::MAX);
        l.push(b" ");
        l.push_hex(0);
        l.push(b" ");
        l.push_hex(0xdead_beef);
        l.push(b" ");
        l.push_hex(u64::MAX);
        assert_eq!(
            std::str::from_utf8(l.as_bytes()).unwrap(),
            "n=0 18446744073709551615 0x0 0xdeadbeef 0xffffffffffffffff"
        );
    }

    #[test]
    fn line_cuts_instead_of_overflowing() {
        let mut l = Line::new();
        for _ in 0..100 {
            l.push(b"0123456789");
        }
        assert_eq!(l.as_bytes().len(), 256);
    }

    #[test]
    fn sigsys_view_matches_the_kernel_layout() {
        assert_eq!(std::mem::offset_of!(SigsysInfo, call_addr), 16);
        assert_eq!(std::mem::offset_of!(SigsysInfo, syscall), 24);
        assert_eq!(std::mem::offset_of!(SigsysInfo, arch), 28);
        assert!(std::mem::size_of::<SigsysInfo>() <= std::mem::size_of::<libc::siginfo_t>());
    }
}
