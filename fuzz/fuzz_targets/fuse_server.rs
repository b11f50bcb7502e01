//! The FUSE server over a real PassthroughFs on a temporary directory, behind the share policy,
//! with DAX on and a recording window owner (a real `WindowMapper`) in the process, fed
//! sequences of requests as descriptor chains (input format: `fsjail_fuzz::record`).
//!
//! Invariants (asserted in the harness): no panic; every reply's `len` equals the used length
//! and echoes `unique`; errors are negative errnos without a body; only FORGET, BATCH_FORGET
//! and INTERRUPT go unanswered (or a chain without room for a header); the owner only ever
//! receives mappings inside the window, and the worker's mapping table always matches what the
//! owner mapped.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let h = fsjail_fuzz::fuse::harness()
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    h.run(data);
});
