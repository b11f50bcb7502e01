//! The policy file parser (`jail::policy::parse`) on arbitrary text.
//!
//! Invariants: no panic; an accepted policy's shares survive the serde round trip the broker
//! uses to hand them to a worker, unchanged; its tags and sockets are unique.

#![no_main]

use std::collections::BTreeSet;
use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(policy) = jail::policy::parse(Path::new("fuzz.toml"), text) else {
        return;
    };
    let mut tags = BTreeSet::new();
    let mut sockets = BTreeSet::new();
    for share in &policy.shares {
        assert!(
            tags.insert(share.tag.clone()),
            "duplicate tag {:?}",
            share.tag
        );
        assert!(
            sockets.insert(share.socket.clone()),
            "duplicate socket {:?}",
            share.socket
        );
        assert!(share.path.is_absolute() && share.socket.is_absolute());
        let json = serde_json::to_string(share).expect("a checked share serializes");
        let back: jail::policy::ShareConfig =
            serde_json::from_str(&json).expect("and deserializes");
        assert_eq!(&back, share, "the worker would get different settings");
    }
});
