//! `fsjail-virtiofsd`: virtiofsd's command line in front of `fsjail serve`.
//!
//! libvirt's `<binary path=...>`, Kata's `virtio_fs_daemon` and hand-written QEMU scripts call
//! the daemon with virtiofsd's arguments and cannot insert a subcommand. This module turns
//! those arguments into `fsjail serve`'s ([`argv::translate`], a pure function) and answers the
//! questions management software asks without starting anything (`--print-capabilities`,
//! `--version`, `--help`).

pub mod argv;
#[cfg(test)]
mod tests;

pub use argv::{translate, Action, Translation};

/// What `--print-capabilities` prints: the vhost-user backend description of QEMU's
/// docs/interop/vhost-user.json for a "fs" backend. Features of that schema's fs list:
///
/// - "separate-options" is announced: the `--shared-dir`/`--cache`/`--sandbox` flags work, so
///   libvirt builds its modern argv for us.
/// - "migrate-precopy" is announced: the device state moves with SET_DEVICE_STATE_FD and the
///   worker logs the guest pages it writes (LOG_SHMFD), which is what libvirt checks for
///   before it offers to migrate a domain with a vhost-user-fs device.
///
/// virtiofsd 1.14 also prints "posix-acl-negotiation-mode" and
/// "security-label-negotiation-mode"; fsjail supports neither feature, so neither is printed.
pub const CAPABILITIES: &str =
    "{\n  \"type\": \"fs\",\n  \"features\": [\n    \"migrate-precopy\",\n    \"separate-options\"\n  ]\n}";

/// `--version`: who we are, and that we speak virtiofsd's command line.
pub fn version() -> String {
    format!(
        "fsjail-virtiofsd {} (virtiofsd-compatible command line for fsjail serve)",
        env!("CARGO_PKG_VERSION")
    )
}

/// `--help`: every virtiofsd option and what fsjail does with it.
pub const HELP: &str = "\
Usage: fsjail-virtiofsd --shared-dir DIR (--socket-path PATH | --fd N) [OPTIONS]

A drop-in for virtiofsd: takes virtiofsd's command line and runs `fsjail serve`
(the `fsjail` binary installed next to this one) with the same settings.
Options fsjail cannot honour are refused with an error naming them; none is
silently ignored.

Translated to fsjail serve:
  --shared-dir DIR            host directory to share (-o source=DIR)
  --socket-path PATH          vhost-user socket to create (--socket: same)
  --fd N                      listening socket inherited from the caller
  --socket-group GROUP        group of the created socket (mode 0660)
  --cache never|auto|always   guest caching (-o cache=none|auto|always)
  --sandbox namespace|chroot|none   (-o sandbox=...; default namespace, as virtiofsd)
  --seccomp kill|trap|log|none      (default kill, as virtiofsd)
  --readonly                  refuse every change to the share
  --xattr                     pass extended attributes (-o xattr, -o no_xattr)
  --log-level LEVEL           off, error, warn, info, debug, trace (-d, -o debug,
                              -o log_level=...)
  --syslog                    log to /dev/log instead of stderr
  --rlimit-nofile N           open-file limit (0: unchanged)
  --announce-submounts        tell the guest which directories are other host mounts
                              (-o announce_submounts; --no-announce-submounts: off)
  --migration-on-error abort|guest-error
                              live migration: a file that is gone on the destination
                              fails the migration, or answers EIO
  --tag NAME                  answer GET_CONFIG with this tag (QEMU 11.1's generic
                              vhost-user device; never with QEMU 7.1 to 8.0)
  --thread-pool-size N        request pool threads, 0 to 64 (0: none)

Accepted because fsjail already behaves that way:
  --no-killpriv-v2, --allow-direct-io,
  --inode-file-handles never|prefer, --migration-mode find-paths,
  --migration-confirm-paths, --posix-acl=never, --security-label=never,
  -f, -o no_flock, -o no_posix_lock, -o readdirplus, -o no_writeback

Refused (fsjail does not do what they ask):
  --posix-acl[=auto|always], --security-label[=auto|always],
  --xattrmap, --modcaps, --uid-map, --gid-map, --translate-uid,
  --translate-gid, --writeback, --no-readdirplus, --allow-mmap, --killpriv-v2,
  --preserve-noatime, --cache metadata, --thread-pool-size N>64,
  --inode-file-handles mandatory, --migration-mode file-handles,
  --migration-verify-handles,
  -o flock, -o posix_lock and the other -o options
  naming these features

Other:
  --print-capabilities        print the vhost-user backend JSON and exit
  -V, --version               print the version and exit
  -h, --help                  print this help and exit

Examples:
  fsjail-virtiofsd --socket-path=/run/vm1-fs.sock --shared-dir=/srv/vm1 --cache=auto
  fsjail-virtiofsd --fd=3 -o source=/srv/vm1,cache=none,xattr,no_flock,no_posix_lock

Exit status: 0 when the frontend disconnects; 1 when fsjail serve fails; 2 for a
command line that cannot be translated.
";
