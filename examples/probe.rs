//! Proves a running vhost-user-fs backend serves: connects to its socket as a guest would
//! (the guest driver), sends INIT, looks NAME up in the share's root and reads it, and prints
//! what it read. `.ci/run` uses it on the README's `cargo run` command.
//!
//! ```text
//! probe SOCKET NAME
//! ```
//!
//! Exit 0 and the file's content on stdout when every step worked; 1 and the failing step on
//! stderr otherwise.

use std::process::ExitCode;
use std::sync::Arc;

use guest_driver::abi::ROOT_ID;
use guest_driver::{Device, Session};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [socket, name] = args.as_slice() else {
        eprintln!("usage: probe SOCKET NAME");
        return ExitCode::from(2);
    };
    match probe(socket, name) {
        Ok(content) => {
            print!("{}", String::from_utf8_lossy(&content));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("probe {socket}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn probe(socket: &str, name: &str) -> Result<Vec<u8>, String> {
    let dev = Device::connect(socket).map_err(|e| format!("connect: {e}"))?;
    let s = Session::new(Arc::new(dev));
    let init = s.init().map_err(|e| format!("INIT: {e}"))?;
    eprintln!("INIT: FUSE {}.{}", init.major, init.minor);
    let entry = s
        .lookup(ROOT_ID, name)
        .map_err(|e| format!("LOOKUP {name}: {e}"))?;
    let size = u32::try_from(entry.attr.size).map_err(|_| format!("{name}: too large"))?;
    let open = s
        .open(entry.nodeid, libc::O_RDONLY as u32)
        .map_err(|e| format!("OPEN {name}: {e}"))?;
    let content = s
        .read(entry.nodeid, open.fh, 0, size)
        .map_err(|e| format!("READ {name}: {e}"))?;
    s.release(entry.nodeid, open.fh, 0, 0, 0)
        .map_err(|e| format!("RELEASE {name}: {e}"))?;
    s.forget(entry.nodeid, 1)
        .map_err(|e| format!("FORGET {name}: {e}"))?;
    Ok(content)
}
