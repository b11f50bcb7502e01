//! The FUSE server behind the share policy with a read-only share that holds a file, a
//! directory, a symlink, a FIFO and an xattr (input format: `fsjail_fuzz::record`, config byte
//! ignored). Invariants: those of `fuse_server` (checked on every reply), and the share is
//! exactly as it was after every input (`fsjail_fuzz::readonly`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let h = fsjail_fuzz::fuse::harness()
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    fsjail_fuzz::readonly::run(&h, data);
});
