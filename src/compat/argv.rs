//! virtiofsd's command line, translated into `fsjail serve`'s.
//!
//! The accepted shapes, and what each is based on:
//!
//! - libvirt, daemon announcing "separate-options" (libvirt's `qemuVirtioFSBuildCommandLine`
//!   in src/qemu/qemu_virtiofs.c): `--fd=N --shared-dir DIR [--cache never|always]
//!   [--sandbox namespace|chroot] [--xattr] [--thread-pool-size=N] [--rlimit-nofile=N]
//!   [--log-level debug] [--uid-map=:a:b:c: --gid-map=:a:b:c:]`. Lock options are refused by
//!   libvirt itself in this shape.
//! - libvirt, other daemons (same function): `--fd=N -o source=DIR[,cache=none|always]
//!   [,sandbox=...][,xattr|,no_xattr][,flock|,no_flock][,posix_lock|,no_posix_lock]
//!   [--thread-pool-size=N] [--rlimit-nofile=N] [-d]`, with every comma in DIR doubled.
//! - Kata Containers' Go runtime (src/runtime/virtcontainers/virtiofsd.go): `--syslog
//!   --cache=MODE --shared-dir=DIR --fd=3 [--inode-file-handles=MODE]` followed by the
//!   configured `virtio_fs_extra_args`, by default `--thread-pool-size=1` and
//!   `--announce-submounts` (older releases: `-o announce_submounts`).
//! - QEMU's and virtiofsd's own documentation: `--socket-path=PATH --shared-dir DIR
//!   [--cache ...] [--sandbox ...] [--socket-group G]`.
//!
//! Every flag of virtiofsd 1.14 (`virtiofsd --help`) is known here. A flag is either
//! translated, accepted because it asks for what fsjail does anyway (each such case is argued
//! at its match arm), or refused with an error naming it. None is dropped silently.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

use thiserror::Error;

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
// Made once per process: the size of the settings does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Action {
    /// Run `fsjail serve` with these settings.
    Serve(Translation),
    /// `--print-capabilities`: the vhost-user backend JSON.
    PrintCapabilities,
    /// `-V` / `--version`.
    Version,
    /// `-h` / `--help`.
    Help,
}

/// The settings `fsjail serve` gets. `None` leaves serve's default.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Translation {
    pub shared_dir: Option<OsString>,
    pub socket_path: Option<OsString>,
    pub fd: Option<i32>,
    pub socket_group: Option<String>,
    /// `--tag`: the virtio-fs tag answered on GET_CONFIG.
    pub tag: Option<String>,
    pub cache: Option<&'static str>,
    pub sandbox: Option<&'static str>,
    pub seccomp: Option<&'static str>,
    pub readonly: bool,
    pub xattr: bool,
    pub announce_submounts: bool,
    pub migration_on_error: Option<devices::migration::MigrationOnError>,
    pub log_level: Option<&'static str>,
    pub syslog: bool,
    pub rlimit_nofile: Option<u64>,
    /// fsjail's own `--special-files` (virtiofsd has no such flag: it always makes real
    /// device nodes, which is `host` here).
    pub special_files: Option<devices::fs::SpecialFiles>,
    /// `--thread-pool-size`: fsjail's request pool of the same size (0: none).
    pub thread_pool_size: Option<u8>,
    /// Flags accepted as equivalent to what fsjail does, explained for the log.
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CompatError {
    #[error("{flag}: not supported by fsjail: {why}")]
    Unsupported { flag: String, why: String },
    #[error("{flag}: unknown option (virtiofsd 1.14 has no such option either)")]
    Unknown { flag: String },
    #[error("{flag}: a value is required")]
    MissingValue { flag: String },
    #[error("{flag}: takes no value")]
    UnexpectedValue { flag: String },
    #[error("{flag} {value:?}: {why}")]
    BadValue {
        flag: String,
        value: String,
        why: String,
    },
    #[error("{flag}: given twice with different values ({first:?}, then {second:?})")]
    Conflict {
        flag: String,
        first: String,
        second: String,
    },
    #[error("the shared directory is required: --shared-dir DIR (or -o source=DIR)")]
    NoSharedDir,
    #[error(
        "a socket is required: --socket-path PATH, or --fd N for a socket the caller listens on"
    )]
    NoSocket,
    #[error("--socket-path and --fd exclude each other")]
    BothSockets,
    #[error("unexpected argument {0:?}: virtiofsd takes no positional arguments")]
    Positional(String),
}

enum Arity {
    Switch,
    /// `--flag VALUE` or `--flag=VALUE`.
    Value,
    /// Only `--flag=VALUE` carries a value (clap's optional values).
    OptionalValue,
}

/// The long options of virtiofsd 1.14 and how they take values.
fn long_arity(name: &str) -> Option<Arity> {
    use Arity::*;
    Some(match name {
        "shared-dir" | "tag" | "socket" | "socket-path" | "socket-group" | "fd"
        | "thread-pool-size" | "xattrmap" | "sandbox" | "seccomp" | "inode-file-handles"
        | "cache" | "modcaps" | "log-level" | "rlimit-nofile" | "uid-map" | "gid-map"
        | "translate-uid" | "translate-gid" | "migration-mode" | "migration-on-error"
        | "special-files" => Value,
        "posix-acl" | "security-label" => OptionalValue,
        "xattr"
        | "readonly"
        | "announce-submounts"
        | "no-announce-submounts"
        | "allow-mmap"
        | "no-readdirplus"
        | "writeback"
        | "allow-direct-io"
        | "print-capabilities"
        | "syslog"
        | "no-killpriv-v2"
        | "killpriv-v2"
        | "preserve-noatime"
        | "migration-verify-handles"
        | "migration-confirm-paths"
        | "help"
        | "version" => Switch,
        _ => return None,
    })
}

/// Translates virtiofsd's arguments (without argv[0]).
pub fn translate(args: &[OsString]) -> Result<Action, CompatError> {
    let mut t = Translation::default();
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_bytes();
        i += 1;
        if arg == b"--" {
            return match args.get(i) {
                Some(extra) => Err(CompatError::Positional(lossy(extra.as_bytes()))),
                None => finish(t),
            };
        }
        if let Some(long) = arg.strip_prefix(b"--") {
            let (name, inline) = match long.iter().position(|&b| b == b'=') {
                Some(eq) => (&long[..eq], Some(&long[eq + 1..])),
                None => (long, None),
            };
            let flag = format!("--{}", lossy(name));
            let name = std::str::from_utf8(name).ok();
            let Some(arity) = name.and_then(long_arity) else {
                return Err(CompatError::Unknown { flag });
            };
            let value: Option<&[u8]> = match arity {
                Arity::Switch if inline.is_some() => {
                    return Err(CompatError::UnexpectedValue { flag })
                }
                Arity::Switch | Arity::OptionalValue => inline,
                Arity::Value => match inline {
                    Some(v) => Some(v),
                    None => {
                        let v = args
                            .get(i)
                            .ok_or(CompatError::MissingValue { flag: flag.clone() })?;
                        i += 1;
                        Some(v.as_bytes())
                    }
                },
            };
            if let Some(action) = apply_long(&mut t, &flag, value)? {
                return Ok(action);
            }
        } else if arg.len() >= 2 && arg[0] == b'-' {
            let flag = format!("-{}", lossy(&arg[1..2]));
            let rest = &arg[2..];
            match arg[1] {
                b'o' => {
                    let value = if rest.is_empty() {
                        let v = args.get(i).ok_or(CompatError::MissingValue { flag })?;
                        i += 1;
                        v.as_bytes()
                    } else {
                        rest.strip_prefix(b"=").unwrap_or(rest)
                    };
                    for option in split_legacy(value) {
                        apply_legacy(&mut t, &option)?;
                    }
                }
                b'd' | b'f' | b'h' | b'V' if !rest.is_empty() => {
                    return Err(CompatError::UnexpectedValue { flag })
                }
                // -d: "Set log level to debug [deprecated]".
                b'd' => set(&mut t.log_level, "debug", "-d")?,
                // -f: "Compatibility option that has no effect": fsjail always stays in the
                // foreground too.
                b'f' => {}
                b'h' => return Ok(Action::Help),
                b'V' => return Ok(Action::Version),
                _ => return Err(CompatError::Unknown { flag: lossy(arg) }),
            }
        } else {
            return Err(CompatError::Positional(lossy(arg)));
        }
    }
    finish(t)
}

fn finish(t: Translation) -> Result<Action, CompatError> {
    if t.shared_dir.is_none() {
        return Err(CompatError::NoSharedDir);
    }
    match (&t.socket_path, t.fd) {
        (None, None) => Err(CompatError::NoSocket),
        (Some(_), Some(_)) => Err(CompatError::BothSockets),
        _ => Ok(Action::Serve(t)),
    }
}

fn apply_long(
    t: &mut Translation,
    flag: &str,
    value: Option<&[u8]>,
) -> Result<Option<Action>, CompatError> {
    let text = || value.map(lossy).unwrap_or_default();
    let unsupported = |why: &str| {
        Err(CompatError::Unsupported {
            flag: flag.to_owned(),
            why: why.to_owned(),
        })
    };
    match &flag[2..] {
        "print-capabilities" => return Ok(Some(Action::PrintCapabilities)),
        "version" => return Ok(Some(Action::Version)),
        "help" => return Ok(Some(Action::Help)),
        "shared-dir" => set_os(&mut t.shared_dir, value.unwrap_or_default(), flag)?,
        "socket-path" | "socket" => set_os(&mut t.socket_path, value.unwrap_or_default(), flag)?,
        "fd" => {
            let fd = parse_num::<i32>(flag, &text())?;
            if fd < 0 {
                return Err(bad(flag, &text(), "must be a descriptor number"));
            }
            set_copy(&mut t.fd, fd, flag)?;
        }
        "socket-group" => set_string(&mut t.socket_group, text(), flag)?,
        "cache" => {
            let cache = match text().as_str() {
                "never" => "never",
                "auto" => "auto",
                "always" => "always",
                "metadata" => {
                    return unsupported("no \"metadata\" cache mode; use never, auto or always")
                }
                _ => return Err(bad(flag, &text(), "expected never, auto or always")),
            };
            set(&mut t.cache, cache, flag)?;
        }
        "sandbox" => set(&mut t.sandbox, sandbox_mode(flag, &text())?, flag)?,
        "seccomp" => {
            // The same names and meanings as virtiofsd's; fsjail's default is kill too.
            let mode = match text().as_str() {
                "none" => "none",
                "kill" => "kill",
                "log" => "log",
                "trap" => "trap",
                _ => return Err(bad(flag, &text(), "expected none, kill, log or trap")),
            };
            set(&mut t.seccomp, mode, flag)?;
        }
        "readonly" => t.readonly = true,
        // Not virtiofsd's: fsjail's own, so that a VMM that only knows this front end can
        // still choose what a guest mknod of a device makes.
        "special-files" => {
            let mode: devices::fs::SpecialFiles = text()
                .parse()
                .map_err(|_| bad(flag, &text(), "expected emulate, host or refuse"))?;
            match t.special_files {
                Some(old) if old != mode => {
                    return Err(conflict(flag, old.to_string(), mode.to_string()))
                }
                _ => t.special_files = Some(mode),
            }
        }
        "xattr" => t.xattr = true,
        "syslog" => t.syslog = true,
        "log-level" => set(&mut t.log_level, log_level(flag, &text())?, flag)?,
        "rlimit-nofile" => set_copy(&mut t.rlimit_nofile, parse_num::<u64>(flag, &text())?, flag)?,
        // The same meaning in both: N threads serve requests beside the queue threads, 0 is
        // none. (fsjail's pool takes only the requests that may block; see `fsjail serve`.)
        "thread-pool-size" => match parse_num::<u64>(flag, &text())? {
            n if n <= devices::vhost_user::MAX_POOL_THREADS as u64 => {
                // At most 64, so it fits (and keeps the settings small).
                set_copy(&mut t.thread_pool_size, n as u8, flag)?
            }
            _ => {
                return unsupported(&format!(
                    "fsjail's request pool has at most {} threads",
                    devices::vhost_user::MAX_POOL_THREADS
                ))
            }
        },
        "announce-submounts" => t.announce_submounts = true,
        "no-announce-submounts" => t.announce_submounts = false,
        "no-killpriv-v2" => {}
        "killpriv-v2" => return unsupported("FUSE_HANDLE_KILLPRIV_V2 is not offered"),
        // virtiofsd strips O_DIRECT unless told otherwise; fsjail always honours it, which is
        // what this flag asks for.
        "allow-direct-io" => {}
        "inode-file-handles" => match text().as_str() {
            "never" => {}
            // "prefer" falls back to O_PATH descriptors when handles cannot be used; fsjail
            // always uses descriptors (handles need CAP_DAC_READ_SEARCH, which the jail drops).
            "prefer" | "fallback" => t.notes.push(format!(
                "{flag}={}: fsjail references inodes by O_PATH descriptors, the fallback",
                text()
            )),
            "mandatory" => {
                return unsupported("fsjail references inodes by O_PATH descriptors, never by file handles")
            }
            _ => return Err(bad(flag, &text(), "expected never, prefer or mandatory")),
        },
        "posix-acl" | "security-label" => match value {
            Some(b"never") => {}
            _ => {
                return unsupported(if flag == "--posix-acl" {
                    "POSIX ACLs are not passed through; only --posix-acl=never is accepted"
                } else {
                    "security labels are not passed through; only --security-label=never is accepted"
                })
            }
        },
        // Offering the tag means offering VHOST_USER_PROTOCOL_F_CONFIG, which crashes QEMU
        // 7.1 to 8.0; the tag belongs on the frontend's command line.
        // virtiofsd's --tag: offer CONFIG and answer GET_CONFIG with the tag (for QEMU's
        // generic vhost-user device); fsjail serve checks its length.
        "tag" => set_string(&mut t.tag, text(), flag)?,
        "xattrmap" => return unsupported("extended attribute names are not remapped"),
        "modcaps" => return unsupported("the capability set is fixed by fsjail's jail"),
        "uid-map" | "gid-map" => {
            return unsupported("fsjail serve does not enter a user namespace (run it as root)")
        }
        "translate-uid" | "translate-gid" => return unsupported("ids are not translated"),
        "preserve-noatime" => return unsupported("O_NOATIME is passed through as the guest asks"),
        "writeback" => return unsupported("writeback caching is not offered by fsjail serve"),
        "no-readdirplus" => return unsupported("READDIRPLUS cannot be turned off"),
        "allow-mmap" => return unsupported("no cache mode of fsjail restricts mmap"),
        // fsjail names every inode the guest knows by its path at save time and confirms it
        // (same device and inode), which is virtiofsd's find-paths with confirmed paths.
        "migration-mode" => match text().as_str() {
            "find-paths" => {}
            "file-handles" => {
                return unsupported(
                    "open_by_handle_at needs CAP_DAC_READ_SEARCH, which the jail never keeps; use find-paths",
                )
            }
            _ => return Err(bad(flag, &text(), "expected find-paths or file-handles")),
        },
        "migration-confirm-paths" => {}
        "migration-verify-handles" => {
            return unsupported("file handles are not used for migration (find-paths only)")
        }
        "migration-on-error" => {
            let policy = text()
                .parse()
                .map_err(|_| bad(flag, &text(), "expected abort or guest-error"))?;
            set_copy(&mut t.migration_on_error, policy, flag)?;
        }
        _ => return Err(CompatError::Unknown { flag: flag.to_owned() }),
    }
    Ok(None)
}

/// `-o` options that take `=value` (the C virtiofsd's and virtiofsd 1.x's compat parser).
const LEGACY_VALUED: &[&str] = &[
    "source",
    "cache",
    "sandbox",
    "log_level",
    "xattrmap",
    "modcaps",
    "timeout",
];
/// `-o` options without a value.
const LEGACY_SWITCHES: &[&str] = &[
    "xattr",
    "no_xattr",
    "flock",
    "no_flock",
    "posix_lock",
    "no_posix_lock",
    "debug",
    "readdirplus",
    "no_readdirplus",
    "writeback",
    "no_writeback",
    "killpriv_v2",
    "no_killpriv_v2",
    "posix_acl",
    "no_posix_acl",
    "security_label",
    "no_security_label",
    "allow_direct_io",
    "no_allow_direct_io",
    "announce_submounts",
    "norace",
];

/// One `-o` option (`key` or `key=value`), as the C virtiofsd and libvirt's older argv use.
fn apply_legacy(t: &mut Translation, option: &[u8]) -> Result<(), CompatError> {
    let (key, value) = match option.iter().position(|&b| b == b'=') {
        Some(eq) => (&option[..eq], Some(&option[eq + 1..])),
        None => (option, None),
    };
    let key_text = lossy(key);
    let flag = format!("-o {key_text}");
    let text = || value.map(lossy).unwrap_or_default();
    if LEGACY_VALUED.contains(&key_text.as_str()) {
        if value.is_none() {
            return Err(CompatError::MissingValue { flag });
        }
    } else if LEGACY_SWITCHES.contains(&key_text.as_str()) {
        if value.is_some() {
            return Err(CompatError::UnexpectedValue { flag });
        }
    } else {
        return Err(CompatError::Unknown { flag });
    }
    let unsupported = |why: &str| {
        Err(CompatError::Unsupported {
            flag: flag.clone(),
            why: why.to_owned(),
        })
    };
    match key_text.as_str() {
        "source" => set_os(&mut t.shared_dir, value.unwrap_or_default(), &flag)?,
        "cache" => {
            // libvirt writes its own names here: "none" is virtiofsd's "never".
            let cache = match text().as_str() {
                "none" | "never" => "never",
                "auto" => "auto",
                "always" => "always",
                _ => return Err(bad(&flag, &text(), "expected none, auto or always")),
            };
            set(&mut t.cache, cache, &flag)?;
        }
        "sandbox" => set(&mut t.sandbox, sandbox_mode(&flag, &text())?, &flag)?,
        "xattr" => t.xattr = true,
        // xattrs are off unless asked for, as in virtiofsd.
        "no_xattr" => t.xattr = false,
        // fsjail answers lock requests with ENOSYS, so the guest keeps its locks locally: that
        // is what no_flock / no_posix_lock ask for.
        "no_flock" | "no_posix_lock" => {}
        "flock" | "posix_lock" => {
            return unsupported("locks are not forwarded to the host; the guest keeps them locally (use no_flock, no_posix_lock)")
        }
        "log_level" => {
            // The C daemon spelled error "err".
            let level = if text() == "err" { "error" } else { log_level(&flag, &text())? };
            set(&mut t.log_level, level, &flag)?;
        }
        "debug" => set(&mut t.log_level, "debug", &flag)?,
        "readdirplus" | "no_writeback" | "no_killpriv_v2" | "no_posix_acl" | "no_security_label" => {}
        "allow_direct_io" => {}
        "announce_submounts" => t.announce_submounts = true,
        "no_readdirplus" => return unsupported("READDIRPLUS cannot be turned off"),
        "writeback" => return unsupported("writeback caching is not offered by fsjail serve"),
        "killpriv_v2" => return unsupported("FUSE_HANDLE_KILLPRIV_V2 is not offered"),
        "posix_acl" => return unsupported("POSIX ACLs are not passed through"),
        "security_label" => return unsupported("security labels are not passed through"),
        "xattrmap" => return unsupported("extended attribute names are not remapped"),
        "modcaps" => return unsupported("the capability set is fixed by fsjail's jail"),
        "timeout" => return unsupported("cache timeouts follow --cache"),
        "norace" => return unsupported("no racy fallback exists to turn off"),
        "no_allow_direct_io" => return unsupported("O_DIRECT is always honoured"),
        _ => return Err(CompatError::Unknown { flag }),
    }
    Ok(())
}

/// Splits a `-o` list at commas; `,,` is a literal comma (libvirt doubles commas in paths).
fn split_legacy(list: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    let mut i = 0;
    while i < list.len() {
        match list[i] {
            b',' if list.get(i + 1) == Some(&b',') => {
                cur.push(b',');
                i += 2;
                continue;
            }
            b',' => out.push(std::mem::take(&mut cur)),
            b => cur.push(b),
        }
        i += 1;
    }
    out.push(cur);
    // Empty items (a trailing comma) carry nothing.
    out.retain(|o| !o.is_empty());
    out
}

fn sandbox_mode(flag: &str, value: &str) -> Result<&'static str, CompatError> {
    match value {
        "namespace" => Ok("namespace"),
        "chroot" => Ok("chroot"),
        "none" => Ok("none"),
        _ => Err(bad(flag, value, "expected namespace, chroot or none")),
    }
}

fn log_level(flag: &str, value: &str) -> Result<&'static str, CompatError> {
    Ok(match value {
        "off" => "off",
        "error" => "error",
        "warn" => "warn",
        "info" => "info",
        "debug" => "debug",
        "trace" => "trace",
        _ => {
            return Err(bad(
                flag,
                value,
                "expected error, warn, info, debug, trace or off",
            ))
        }
    })
}

fn parse_num<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, CompatError> {
    value
        .parse()
        .map_err(|_| bad(flag, value, "expected a number"))
}

fn bad(flag: &str, value: &str, why: &str) -> CompatError {
    CompatError::BadValue {
        flag: flag.to_owned(),
        value: value.to_owned(),
        why: why.to_owned(),
    }
}

fn conflict(flag: &str, first: String, second: String) -> CompatError {
    CompatError::Conflict {
        flag: flag.to_owned(),
        first,
        second,
    }
}

/// Sets a setting once; the same value again is fine, a different one is an error (virtiofsd's
/// parser refuses repeated options too, and "last one wins" would hide a mistake).
fn set(
    slot: &mut Option<&'static str>,
    value: &'static str,
    flag: &str,
) -> Result<(), CompatError> {
    match *slot {
        Some(old) if old != value => Err(conflict(flag, old.into(), value.into())),
        _ => {
            *slot = Some(value);
            Ok(())
        }
    }
}

fn set_copy<T: Copy + PartialEq + ToString>(
    slot: &mut Option<T>,
    value: T,
    flag: &str,
) -> Result<(), CompatError> {
    match *slot {
        Some(old) if old != value => Err(conflict(flag, old.to_string(), value.to_string())),
        _ => {
            *slot = Some(value);
            Ok(())
        }
    }
}

fn set_string(slot: &mut Option<String>, value: String, flag: &str) -> Result<(), CompatError> {
    match slot {
        Some(old) if *old != value => Err(conflict(flag, old.clone(), value)),
        _ => {
            *slot = Some(value);
            Ok(())
        }
    }
}

fn set_os(slot: &mut Option<OsString>, value: &[u8], flag: &str) -> Result<(), CompatError> {
    let value = OsStr::from_bytes(value).to_owned();
    if value.is_empty() {
        return Err(CompatError::MissingValue {
            flag: flag.to_owned(),
        });
    }
    match slot {
        Some(old) if *old != value => Err(conflict(
            flag,
            lossy(old.as_bytes()),
            lossy(value.as_bytes()),
        )),
        _ => {
            *slot = Some(value);
            Ok(())
        }
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

impl Translation {
    /// The arguments after `fsjail serve`.
    pub fn serve_args(&self) -> Vec<OsString> {
        let mut out: Vec<OsString> = Vec::new();
        let mut push = |flag: &str, value: &OsStr| {
            out.push(flag.into());
            out.push(value.to_owned());
        };
        if let Some(dir) = &self.shared_dir {
            push("--shared-dir", dir);
        }
        if let Some(path) = &self.socket_path {
            push("--socket-path", path);
        }
        if let Some(fd) = self.fd {
            push("--fd", OsStr::new(&fd.to_string()));
        }
        if let Some(group) = &self.socket_group {
            push("--socket-group", OsStr::new(group));
        }
        if let Some(tag) = &self.tag {
            push("--tag", OsStr::new(tag));
        }
        if let Some(cache) = self.cache {
            push("--cache", OsStr::new(cache));
        }
        if let Some(sandbox) = self.sandbox {
            push("--sandbox", OsStr::new(sandbox));
        }
        if let Some(seccomp) = self.seccomp {
            push("--seccomp", OsStr::new(seccomp));
        }
        if let Some(level) = self.log_level {
            push("--log-level", OsStr::new(level));
        }
        if let Some(n) = self.rlimit_nofile {
            push("--rlimit-nofile", OsStr::new(&n.to_string()));
        }
        if let Some(mode) = self.special_files {
            push("--special-files", OsStr::new(&mode.to_string()));
        }
        if let Some(policy) = self.migration_on_error {
            push("--migration-on-error", OsStr::new(&policy.to_string()));
        }
        if let Some(n) = self.thread_pool_size {
            push("--thread-pool-size", OsStr::new(&n.to_string()));
        }
        for (on, flag) in [
            (self.readonly, "--readonly"),
            (self.xattr, "--xattr"),
            (self.syslog, "--syslog"),
            (self.announce_submounts, "--announce-submounts"),
        ] {
            if on {
                out.push(flag.into());
            }
        }
        out
    }
}
