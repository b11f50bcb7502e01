//! vhost-user frontend messages into fsjail's backend (`FsBackend` under vhost-user-backend's
//! daemon), with file descriptors (eventfds, a guest RAM memfd) attached where the input asks,
//! guest RAM the input can write, and kicks that make the queue thread serve whatever rings
//! the messages set up (input format: `fsjail_fuzz::vhost`).
//!
//! Invariants: no panic, no crash (a bad message ends the connection at worst), and the daemon
//! and its queue threads always stop when the frontend goes away.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fsjail_fuzz::vhost::run(data);
});
