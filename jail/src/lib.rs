//! The jail (namespaces, mounts, capabilities, rlimits, fd hygiene) and the broker that spawns
//! and supervises one jailed worker per share.
pub mod broker;
pub mod enter;
pub mod fdpass;
pub mod handover;
pub mod policy;
pub mod sd_notify;
pub mod spawn;
pub mod steps;
