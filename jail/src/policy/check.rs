//! The checks that turn the raw schema into a [`Policy`]: defaults filled in, every path
//! resolved and checked against the filesystem, id maps checked against each other and
//! against what this broker may map. All problems are collected, not just the first, so one
//! run of `fsjail check` shows everything to fix.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use settings::{CachePolicy, MigrationOnError, Ownership, SpecialFiles};
use toml::Spanned;

pub(crate) use super::env::Env;
use super::error::{Diagnostic, Diags, PolicyError};
use super::idmap::{check_map, IdKind};
use super::schema::{share_name, RawBroker, RawPolicy, RawShare, RawSize};
use super::{defaults, BrokerSettings, IdMap, Policy, RestartPolicy, SandboxMode, ShareConfig};
use crate::steps::landlock::LandlockMode;

/// `sun_path` is 108 bytes including the terminating NUL.
const SOCKET_PATH_MAX: usize = 107;

/// Creates a `create = true` share directory that is missing (mode 0700, one level).
pub(crate) fn ensure_share_dir(share: &ShareConfig) -> io::Result<()> {
    if share.create {
        match fs::DirBuilder::new().mode(0o700).create(&share.path) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
    }
    // Whatever happened, what the worker gets must be a real directory, not a symlink
    // planted since the policy was checked.
    let meta = fs::symlink_metadata(&share.path)?;
    if meta.is_dir() {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::NotADirectory,
            "not a directory",
        ))
    }
}

pub(crate) fn check(file: &Path, text: &str, raw: RawPolicy) -> Result<Policy, PolicyError> {
    check_with(&Env::current(), file, text, raw)
}

pub(crate) fn check_with(
    env: &Env,
    file: &Path,
    text: &str,
    raw: RawPolicy,
) -> Result<Policy, PolicyError> {
    let mut d = Diags::new(file, text);
    let broker = check_broker(env, &mut d, raw.broker.as_ref());
    if raw.share.is_empty() {
        d.list.push(Diagnostic {
            file: file.to_path_buf(),
            line: None,
            context: None,
            message: "no [[share]] table: nothing to serve".to_owned(),
        });
    }
    // Each checked share with its index in `raw.share`, for the cross-share checks.
    let mut checked: Vec<(ShareConfig, usize)> = Vec::new();
    for (index, share) in raw.share.iter().enumerate() {
        if let Some(config) = check_share(env, &mut d, &broker, index, share) {
            checked.push((config, index));
        }
    }
    check_unique(&mut d, &checked, raw.share.as_slice());
    let shares = checked.into_iter().map(|(config, _)| config).collect();
    if d.list.is_empty() {
        Ok(Policy {
            file: file.to_path_buf(),
            broker,
            shares,
        })
    } else {
        d.list.sort_by_key(|diag| diag.line.unwrap_or(0));
        Err(PolicyError::Invalid(d.list))
    }
}

fn check_broker(env: &Env, d: &mut Diags<'_>, raw: Option<&Spanned<RawBroker>>) -> BrokerSettings {
    const CTX: &str = "[broker]";
    let mut settings = BrokerSettings {
        runtime_dir: env.default_runtime_dir(),
        log_level: log::LevelFilter::Info,
    };
    let Some(raw) = raw.map(Spanned::get_ref) else {
        return settings;
    };
    if let Some(level) = &raw.log_level {
        match level.get_ref().parse::<log::LevelFilter>() {
            Ok(l) => settings.log_level = l,
            Err(_) => d.at(
                level.span(),
                CTX,
                format!(
                    "log_level {:?}: expected one of \"off\", \"error\", \"warn\", \"info\", \"debug\", \"trace\"",
                    level.get_ref()
                ),
            ),
        }
    }
    if let Some(dir) = &raw.runtime_dir {
        match check_runtime_dir(env, dir.get_ref()) {
            Ok(path) => settings.runtime_dir = path,
            Err(why) => d.at(
                dir.span(),
                CTX,
                format!("runtime_dir {:?}{why}", dir.get_ref()),
            ),
        }
    }
    settings
}

/// An absolute path for the runtime directory; if it exists it must be a directory only this
/// user can write (the broker puts sockets there that workers and frontends trust).
fn check_runtime_dir(env: &Env, s: &str) -> Result<PathBuf, String> {
    let path = resolve_maybe_missing(env, s)?;
    match fs::symlink_metadata(&path) {
        Ok(meta) if !meta.is_dir() => Err(" is not a directory".to_owned()),
        Ok(meta) if meta.uid() != env.euid => Err(format!(
            " is owned by uid {}, not by the broker (uid {})",
            meta.uid(),
            env.euid
        )),
        Ok(meta) if meta.mode() & 0o022 != 0 => Err(format!(
            " is writable by others (mode {:o})",
            meta.mode() & 0o7777
        )),
        Ok(_) => Ok(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(path),
        Err(e) => Err(format!(": {e}")),
    }
}

/// Resolves `s` against the current directory; the last component may be missing, the rest
/// is canonicalized. Errors are message tails (`": ..."`, `" ..."`).
fn resolve_maybe_missing(env: &Env, s: &str) -> Result<PathBuf, String> {
    let path = resolve(env, s)?;
    match fs::canonicalize(&path) {
        Ok(canonical) => Ok(canonical),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let (parent, name) = split_last(&path)?;
            match fs::canonicalize(parent) {
                Ok(parent) if parent.is_dir() => Ok(parent.join(name)),
                Ok(parent) => Err(format!(": {:?} is not a directory", parent)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    Err(format!(": directory {:?} does not exist", parent))
                }
                Err(e) => Err(format!(": {:?}: {e}", parent)),
            }
        }
        Err(e) => Err(format!(": {e}")),
    }
}

/// `s` as an absolute path (relative to the broker's current directory).
fn resolve(env: &Env, s: &str) -> Result<PathBuf, String> {
    if s.is_empty() {
        return Err(": must not be empty".to_owned());
    }
    if s.contains('\0') {
        return Err(": contains a NUL byte".to_owned());
    }
    let path = Path::new(s);
    if path.is_absolute() {
        return Ok(path.to_path_buf());
    }
    match &env.cwd {
        Some(cwd) => Ok(cwd.join(path)),
        None => Err(" is relative and the current directory is unknown".to_owned()),
    }
}

/// The parent and the final, normal component of `path` (no `..`, `.` or `/` at the end).
fn split_last(path: &Path) -> Result<(&Path, &std::ffi::OsStr), String> {
    match (path.parent(), path.components().next_back()) {
        (Some(parent), Some(Component::Normal(name))) => Ok((parent, name)),
        _ => Err(" must end in a file name".to_owned()),
    }
}

fn check_share(
    env: &Env,
    d: &mut Diags<'_>,
    broker: &BrokerSettings,
    index: usize,
    share: &Spanned<RawShare>,
) -> Option<ShareConfig> {
    let raw = share.get_ref();
    let name = share_name(index, raw.tag.as_ref().map(|t| t.get_ref().as_str()));
    let before = d.list.len();
    let missing = |d: &mut Diags<'_>, key: &str| {
        d.at(share.span(), &name, format!("{key} is missing"));
    };

    let tag = match &raw.tag {
        None => {
            missing(d, "tag");
            None
        }
        Some(tag) => match check_tag(tag.get_ref()) {
            Ok(()) => Some(tag.get_ref().clone()),
            Err(why) => {
                d.at(tag.span(), &name, format!("tag {:?}: {why}", tag.get_ref()));
                None
            }
        },
    };

    let create = flag(&raw.create, false);
    let path = match &raw.path {
        None => {
            missing(d, "path");
            None
        }
        Some(p) => match check_path(env, p.get_ref(), create) {
            Ok(path) => Some(path),
            Err(why) => {
                d.at(p.span(), &name, format!("path {:?}{why}", p.get_ref()));
                None
            }
        },
    };

    let socket = match (&raw.socket, &tag) {
        (Some(s), _) => match check_socket(env, broker, s.get_ref()) {
            Ok(path) => Some(path),
            Err(why) => {
                d.at(s.span(), &name, format!("socket {:?}{why}", s.get_ref()));
                None
            }
        },
        (None, Some(tag)) => {
            let default = broker.runtime_dir.join(format!("{tag}.sock"));
            match check_socket_path(&default) {
                Ok(()) => Some(default),
                Err(why) => {
                    d.at(
                        share.span(),
                        &name,
                        format!("socket (default {:?}){why}", default),
                    );
                    None
                }
            }
        }
        (None, None) => None,
    };

    let cache = choice(
        d,
        &name,
        "cache",
        &raw.cache,
        CachePolicy::Auto,
        &["never", "auto", "always"],
    );
    let restart = choice(
        d,
        &name,
        "restart",
        &raw.restart,
        RestartPolicy::OnFailure,
        RestartPolicy::NAMES,
    );
    let sandbox = choice(
        d,
        &name,
        "sandbox",
        &raw.sandbox,
        SandboxMode::Namespace,
        SandboxMode::NAMES,
    );
    if let (Some(SandboxMode::Chroot), Some(s), false) = (sandbox, &raw.sandbox, env.root()) {
        d.at(
            s.span(),
            &name,
            "sandbox \"chroot\": needs root; use \"namespace\"".to_owned(),
        );
    }

    let sandbox_for_maps = sandbox.unwrap_or_default();
    let mut uid_map = check_map(env, d, &name, IdKind::Uid, &raw.uid_map, sandbox_for_maps);
    let mut gid_map = check_map(env, d, &name, IdKind::Gid, &raw.gid_map, sandbox_for_maps);
    // As root, mapping one kind of id means a user namespace; the other kind then maps every
    // id to itself so files keep their owners.
    if let (Some(uids), Some(gids)) = (&mut uid_map, &mut gid_map) {
        let identity = IdMap {
            guest: 0,
            host: 0,
            count: u32::MAX,
        };
        if uids.is_empty() && !gids.is_empty() {
            uids.push(identity);
        } else if gids.is_empty() && !uids.is_empty() {
            gids.push(identity);
        }
    }

    let user_ns = sandbox == Some(SandboxMode::Namespace)
        && (!env.root()
            || uid_map.as_ref().is_some_and(|m| !m.is_empty())
            || gid_map.as_ref().is_some_and(|m| !m.is_empty()));
    let rlimit_nofile = match &raw.rlimit_nofile {
        None => Some(env.default_rlimit_nofile(user_ns)),
        Some(n) => match check_nofile(env, *n.get_ref(), user_ns) {
            Ok(n) => Some(n),
            Err(why) => {
                d.at(
                    n.span(),
                    &name,
                    format!("rlimit_nofile {}: {why}", n.get_ref()),
                );
                None
            }
        },
    };

    let num_request_queues = match &raw.num_request_queues {
        None => Some(defaults::NUM_REQUEST_QUEUES),
        Some(n) => match usize::try_from(*n.get_ref())
            .map_err(|_| settings::LimitError::Queues(0))
            .and_then(settings::check_request_queues)
        {
            Ok(q) => Some(q),
            Err(_) => {
                d.at(
                    n.span(),
                    &name,
                    format!(
                        "num_request_queues {}: must be between 1 and {}",
                        n.get_ref(),
                        settings::MAX_REQUEST_QUEUES
                    ),
                );
                None
            }
        },
    };

    let migration_on_error = choice(
        d,
        &name,
        "migration_on_error",
        &raw.migration_on_error,
        MigrationOnError::Abort,
        MigrationOnError::NAMES,
    );
    let thread_pool_size = bounded(
        d,
        &name,
        "thread_pool_size",
        &raw.thread_pool_size,
        defaults::THREAD_POOL_SIZE as i64,
        defaults::THREAD_POOL_MAX as i64,
    )
    .map(|n| n as usize);
    let poll_max_us = bounded(
        d,
        &name,
        "poll_max_us",
        &raw.poll_max_us,
        i64::from(defaults::POLL_MAX_US),
        i64::from(defaults::POLL_MAX_US_LIMIT),
    )
    .map(|n| n as u32);

    let seccomp = choice(
        d,
        &name,
        "seccomp",
        &raw.seccomp,
        seccomp::Mode::Kill,
        &["kill", "trap", "log", "none"],
    );
    // `allow_devices` is the old spelling of `special_files`; both at once would be ambiguous.
    let special_files = match (&raw.allow_devices, &raw.special_files) {
        (Some(old), Some(_)) => {
            d.at(
                old.span(),
                &name,
                "allow_devices: give only special_files (\"emulate\", \"host\" or \"refuse\"), \
                 the key that replaced it"
                    .to_owned(),
            );
            None
        }
        (Some(old), None) if *old.get_ref() => Some(SpecialFiles::Host),
        (Some(_), None) => Some(SpecialFiles::Refuse),
        (None, value) => choice(
            d,
            &name,
            "special_files",
            value,
            SpecialFiles::default(),
            &SpecialFiles::NAMES,
        ),
    };
    // Real nodes need CAP_MKNOD in the initial user namespace: an unprivileged broker's worker
    // would answer EPERM to every mknod of a device.
    let host_nodes = special_files == Some(SpecialFiles::Host);
    if let (true, false) = (host_nodes, env.root()) {
        let span = raw
            .special_files
            .as_ref()
            .map(|v| v.span())
            .or_else(|| raw.allow_devices.as_ref().map(|v| v.span()))
            .unwrap_or_else(|| share.span());
        d.at(
            span,
            &name,
            "special_files \"host\": real device nodes need root; use \"emulate\"".to_owned(),
        );
    }
    let ownership = choice(
        d,
        &name,
        "ownership",
        &raw.ownership,
        Ownership::default_for_euid(env.euid),
        &Ownership::NAMES,
    );
    let page = settings::dax::host_page_size();
    let dax_window = match &raw.dax_window {
        None => Some(0),
        Some(w) => {
            let bytes = match w.get_ref() {
                RawSize::Bytes(n) => {
                    u64::try_from(*n).map_err(|_| "must not be negative".to_owned())
                }
                RawSize::Text(t) => t
                    .parse::<settings::dax::ByteSize>()
                    .map(|b| b.0)
                    .map_err(|e| e.to_string()),
            };
            match bytes.and_then(|b| {
                settings::dax::check_window(b, page)
                    .map(|()| b)
                    .map_err(|e| e.to_string())
            }) {
                Ok(b) => Some(b),
                Err(why) => {
                    d.at(w.span(), &name, format!("dax_window: {why}"));
                    None
                }
            }
        }
    };
    let blksize = match &raw.blksize {
        None => Some(super::defaults::BLKSIZE),
        Some(b) => match u32::try_from(*b.get_ref())
            .map_err(|_| format!("blksize {}: out of range", b.get_ref()))
            .and_then(|v| {
                settings::dax::check_blksize(v)
                    .map(|()| v)
                    .map_err(|e| e.to_string())
            }) {
            Ok(v) => Some(v),
            Err(why) => {
                d.at(b.span(), &name, why);
                None
            }
        },
    };

    let landlock = choice(
        d,
        &name,
        "landlock",
        &raw.landlock,
        LandlockMode::default_from_env(),
        LandlockMode::NAMES,
    );
    if let (Some(LandlockMode::Require), Some(l), Some(SandboxMode::None)) =
        (landlock, &raw.landlock, sandbox)
    {
        d.at(
            l.span(),
            &name,
            "landlock \"require\": sandbox \"none\" runs the worker unconfined, without Landlock"
                .to_owned(),
        );
    }

    if d.list.len() != before {
        return None;
    }
    Some(ShareConfig {
        tag: tag?,
        path: path?,
        create,
        socket: socket?,
        readonly: flag(&raw.readonly, false),
        cache: cache?,
        xattr: flag(&raw.xattr, false),
        uid_map: uid_map?,
        gid_map: gid_map?,
        rlimit_nofile: rlimit_nofile?,
        restart: restart?,
        sandbox: sandbox?,
        special_files: special_files?,
        ownership: ownership?,
        num_request_queues: num_request_queues?,
        thread_pool_size: thread_pool_size?,
        poll_max_us: poll_max_us?,
        seccomp: seccomp?,
        dax_window: dax_window?,
        blksize: blksize?,
        max_write: super::defaults::MAX_WRITE,
        announce_submounts: flag(&raw.announce_submounts, false),
        migration_on_error: migration_on_error?,
        // A TOML bool (the parser names the line of anything else); the tag it sends is
        // `tag`, checked above to fit the 36 bytes of the virtio-fs config space.
        config_tag: flag(&raw.config_tag, false),
        landlock: landlock?,
    })
}

/// An integer key from 0 to `max`, `default` when absent.
fn bounded(
    d: &mut Diags<'_>,
    share: &str,
    key: &str,
    value: &Option<Spanned<i64>>,
    default: i64,
    max: i64,
) -> Option<i64> {
    match value {
        None => Some(default),
        Some(n) if (0..=max).contains(n.get_ref()) => Some(*n.get_ref()),
        Some(n) => {
            d.at(
                n.span(),
                share,
                format!("{key} {}: must be between 0 and {max}", n.get_ref()),
            );
            None
        }
    }
}

fn flag(value: &Option<Spanned<bool>>, default: bool) -> bool {
    value.as_ref().map_or(default, |v| *v.get_ref())
}

/// An enumerated key: parsed with `FromStr`, or a message listing the accepted values.
fn choice<T: std::str::FromStr>(
    d: &mut Diags<'_>,
    name: &str,
    key: &str,
    value: &Option<Spanned<String>>,
    default: T,
    names: &[&str],
) -> Option<T> {
    let Some(value) = value else {
        return Some(default);
    };
    match value.get_ref().parse() {
        Ok(v) => Some(v),
        Err(_) => {
            let expected: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
            d.at(
                value.span(),
                name,
                format!(
                    "{key} {:?}: expected one of {}",
                    value.get_ref(),
                    expected.join(", ")
                ),
            );
            None
        }
    }
}

/// virtio-fs tags are at most 36 bytes; we also keep them to characters that are safe in a
/// file name (the default socket is `<tag>.sock`) and in a log line.
fn check_tag(tag: &str) -> Result<(), String> {
    if tag.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if tag.len() > defaults::TAG_MAX_LEN {
        return Err(format!(
            "is {} bytes; a virtio-fs tag is at most {}",
            tag.len(),
            defaults::TAG_MAX_LEN
        ));
    }
    if tag.starts_with('.') {
        return Err("must not start with '.'".to_owned());
    }
    if let Some(c) = tag
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "_.-".contains(*c)))
    {
        return Err(format!(
            "contains {c:?}; use letters, digits, '_', '-' and '.'"
        ));
    }
    Ok(())
}

/// The share directory, canonical. Missing is only fine with `create` (then the parent must
/// exist; the broker creates one level).
fn check_path(env: &Env, s: &str, create: bool) -> Result<PathBuf, String> {
    let path = resolve(env, s)?;
    match fs::canonicalize(&path) {
        Ok(canonical) if canonical.is_dir() => Ok(canonical),
        Ok(_) => Err(" is not a directory".to_owned()),
        Err(e) if e.kind() == io::ErrorKind::NotFound && create => resolve_maybe_missing(env, s),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(" does not exist".to_owned()),
        Err(e) => Err(format!(": {e}")),
    }
}

/// The socket's directory must exist (or be the runtime directory, which the broker
/// creates); an existing file there must be a socket, since the broker replaces it.
fn check_socket(env: &Env, broker: &BrokerSettings, s: &str) -> Result<PathBuf, String> {
    let path = resolve(env, s)?;
    let (parent, name) = split_last(&path)?;
    let path = match fs::canonicalize(parent) {
        Ok(dir) if dir.is_dir() => dir.join(name),
        Ok(_) => return Err(format!(": {parent:?} is not a directory")),
        Err(e) if e.kind() == io::ErrorKind::NotFound && parent == broker.runtime_dir => {
            path.clone()
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(format!(": directory {parent:?} does not exist"))
        }
        Err(e) => return Err(format!(": {parent:?}: {e}")),
    };
    check_socket_path(&path)?;
    Ok(path)
}

fn check_socket_path(path: &Path) -> Result<(), String> {
    let len = path.as_os_str().as_bytes().len();
    if len > SOCKET_PATH_MAX {
        return Err(format!(
            ": the path is {len} bytes; a unix socket path is at most {SOCKET_PATH_MAX}"
        ));
    }
    match fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => {
            Err(" exists and is not a socket (the broker only replaces stale sockets)".to_owned())
        }
        _ => Ok(()),
    }
}

fn check_nofile(env: &Env, n: i64, user_ns: bool) -> Result<u64, String> {
    let n = u64::try_from(n).map_err(|_| "must be positive".to_owned())?;
    if n < defaults::RLIMIT_NOFILE_MIN {
        return Err(format!("must be at least {}", defaults::RLIMIT_NOFILE_MIN));
    }
    if n > env.nr_open {
        return Err(format!("above the kernel's fs.nr_open ({})", env.nr_open));
    }
    if n > env.nofile_ceiling(user_ns) {
        let why = if user_ns {
            "in a user namespace"
        } else {
            "without CAP_SYS_RESOURCE"
        };
        return Err(format!(
            "above the hard limit the worker inherits ({}), which it cannot raise {why}",
            env.nofile_hard
        ));
    }
    Ok(n)
}

/// Tags and sockets are unique; no socket lives inside a share (the guest could replace it).
fn check_unique(d: &mut Diags<'_>, checked: &[(ShareConfig, usize)], raw: &[Spanned<RawShare>]) {
    let mut tags: HashMap<&str, usize> = HashMap::new();
    let mut sockets: HashMap<&Path, (&str, usize)> = HashMap::new();
    for (share, index) in checked {
        let Some(raw_share) = raw.get(*index) else {
            continue;
        };
        let line = d.line_of(raw_share.span().start);
        let name = format!("share {:?}", share.tag);
        let tag_span = raw_share
            .get_ref()
            .tag
            .as_ref()
            .map_or(raw_share.span(), Spanned::span);
        // A defaulted socket comes from the tag, so point there.
        let socket_span = raw_share
            .get_ref()
            .socket
            .as_ref()
            .map_or(tag_span.clone(), Spanned::span);
        if let Some(first) = tags.get(share.tag.as_str()) {
            d.at(
                tag_span,
                &name,
                format!(
                    "tag {:?} is already used by the share at line {first}",
                    share.tag
                ),
            );
        } else {
            tags.insert(&share.tag, line);
        }
        if let Some((other, first)) = sockets.get(share.socket.as_path()) {
            d.at(
                socket_span.clone(),
                &name,
                format!(
                    "socket {:?} is already used by share {other:?} (line {first})",
                    share.socket
                ),
            );
        } else {
            sockets.insert(&share.socket, (&share.tag, line));
        }
        for (other, _) in checked {
            if share.socket.starts_with(&other.path) {
                d.at(
                    socket_span.clone(),
                    &name,
                    format!(
                        "socket {:?} is inside the directory of share {:?}; the guest could replace it",
                        share.socket, other.tag
                    ),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests;
