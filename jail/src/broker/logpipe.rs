//! A worker's stderr, read from its pipe and logged line by line under the share's tag.
//!
//! The worker is untrusted: its output is cut into lines of at most [`MAX_LINE`] bytes (a
//! worker that never writes a newline cannot make the broker buffer without bound), and
//! control characters are escaped so it cannot forge terminal escapes or other log lines.

use std::io::{self, Read};
use std::os::fd::OwnedFd;

pub const MAX_LINE: usize = 4096;

pub struct LinePipe {
    file: std::fs::File,
    buf: Vec<u8>,
}

/// What a read produced.
pub enum Drained {
    /// The pipe is empty for now.
    Pending,
    /// Every writer closed the pipe.
    Eof,
}

impl LinePipe {
    /// `fd` is the read end; it is switched to non-blocking so a drain never stalls the loop.
    pub fn new(fd: OwnedFd) -> io::Result<LinePipe> {
        set_nonblocking(&fd)?;
        Ok(LinePipe {
            file: std::fs::File::from(fd),
            buf: Vec::new(),
        })
    }

    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.file.as_fd()
    }

    /// Reads what is there, calling `line` for each complete (or over-long) line.
    pub fn drain(&mut self, mut line: impl FnMut(&str)) -> io::Result<Drained> {
        let mut chunk = [0u8; 4096];
        loop {
            match self.file.read(&mut chunk) {
                Ok(0) => {
                    if !self.buf.is_empty() {
                        line(&sanitize(&self.buf));
                        self.buf.clear();
                    }
                    return Ok(Drained::Eof);
                }
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    self.emit(&mut line);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Drained::Pending),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn emit(&mut self, line: &mut impl FnMut(&str)) {
        loop {
            let cut = match self.buf.iter().position(|&b| b == b'\n') {
                Some(i) if i <= MAX_LINE => (i, i + 1),
                _ if self.buf.len() >= MAX_LINE => (MAX_LINE, MAX_LINE),
                _ => return,
            };
            line(&sanitize(&self.buf[..cut.0]));
            self.buf.drain(..cut.1);
        }
    }
}

/// Lossy UTF-8 with control characters (other than tab) shown as `\xNN`.
pub fn sanitize(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::with_capacity(text.len());
    for c in text.trim_end_matches('\r').chars() {
        if c.is_control() && c != '\t' {
            out.push_str(&format!("\\x{:02x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

pub fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags =
        fcntl(std::os::fd::AsRawFd::as_raw_fd(fd), FcntlArg::F_GETFL).map_err(io::Error::from)?;
    let flags = OFlag::from_bits_retain(flags) | OFlag::O_NONBLOCK;
    fcntl(
        std::os::fd::AsRawFd::as_raw_fd(fd),
        FcntlArg::F_SETFL(flags),
    )
    .map_err(io::Error::from)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn pipe() -> (LinePipe, std::fs::File) {
        let (r, w) = nix::unistd::pipe().unwrap();
        (LinePipe::new(r).unwrap(), std::fs::File::from(w))
    }

    #[test]
    fn splits_lines_and_keeps_a_partial_one_until_eof() {
        let (mut p, mut w) = pipe();
        w.write_all(b"one\ntwo\nthr").unwrap();
        let mut got = Vec::new();
        assert!(matches!(
            p.drain(|l| got.push(l.to_owned())).unwrap(),
            Drained::Pending
        ));
        assert_eq!(got, ["one", "two"]);
        w.write_all(b"ee").unwrap();
        drop(w);
        assert!(matches!(
            p.drain(|l| got.push(l.to_owned())).unwrap(),
            Drained::Eof
        ));
        assert_eq!(got, ["one", "two", "three"]);
    }

    #[test]
    fn long_lines_are_cut_and_control_characters_escaped() {
        let (mut p, mut w) = pipe();
        w.write_all(&vec![b'a'; MAX_LINE + 10]).unwrap();
        w.write_all(b"\n\x1b[31mred\r\n").unwrap();
        drop(w);
        let mut got = Vec::new();
        p.drain(|l| got.push(l.to_owned())).unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].len(), MAX_LINE);
        assert_eq!(got[1], "a".repeat(10));
        assert_eq!(got[2], "\\x1b[31mred");
    }
}
