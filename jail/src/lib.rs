//! The jail (namespaces, mounts, capabilities, rlimits, fd hygiene) and the broker that spawns
//! and supervises one jailed worker per share.
