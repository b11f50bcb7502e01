//! The policy file: one TOML file listing the shares of a VM and the broker's settings.
//!
//! [`load`] reads, parses and checks a policy; what it returns is *checked*: every path is
//! absolute, every share's directory exists (or is marked `create`), tags and sockets are
//! unique, id maps are well-formed. The rest of the crate (the jail steps, the broker, the
//! worker) trusts these types and never re-parses the file.
//!
//! The file schema and its parsing live in `schema` (one `Raw*` struct per table, every key
//! `Option<Spanned<_>>` so each error can name its line); the checks that turn a raw share
//! into a [`ShareConfig`] live in `check` (id maps in `idmap`, facts about the broker in
//! `env`). Adding a key (seccomp mode, DAX window, blksize) means one field in `RawShare`, one
//! field in [`ShareConfig`], and one check.
//!
//! Relative paths resolve against the broker's current directory. Unknown keys are errors.
//!
//! | table | key | type | default | meaning |
//! |---|---|---|---|---|
//! | `[broker]` | `runtime_dir` | path | `/run/fsjail` (root), `$XDG_RUNTIME_DIR/fsjail` or `/tmp/fsjail-UID` | broker state and default sockets; created 0700; must be private to the broker's user |
//! | `[broker]` | `log_level` | string | `"info"` | `off`, `error`, `warn`, `info`, `debug`, `trace`; the workers log alike |
//! | `[[share]]` | `tag` | string | required | the share's name: 1-36 bytes of `[A-Za-z0-9_.-]`, not starting with `.`; give QEMU the same `tag=` |
//! | `[[share]]` | `path` | path | required | host directory served |
//! | `[[share]]` | `create` | bool | `false` | create `path` (one level, mode 0700) when missing |
//! | `[[share]]` | `socket` | path | `<runtime_dir>/<tag>.sock` | vhost-user socket the broker binds; its directory must exist |
//! | `[[share]]` | `readonly` | bool | `false` | refuse every change (EROFS), read-only bind mount |
//! | `[[share]]` | `cache` | string | `"auto"` | `never`, `auto`, `always` (virtiofsd's `--cache`) |
//! | `[[share]]` | `xattr` | bool | `false` | serve extended attributes |
//! | `[[share]]` | `uid_map`, `gid_map` | array of `{ guest, host, count }` | none as root; `[{ guest = 0, host = <your id>, count = 1 }]` otherwise | guest ids -> host ids (the worker's user namespace); must map guest 0; no overlaps; unprivileged: only your own id |
//! | `[[share]]` | `rlimit_nofile` | integer | 65536, lowered to the hard limit the worker cannot raise | the guest's open-file budget (CVE-2020-10717); 64 at least |
//! | `[[share]]` | `restart` | string | `"on-failure"` | `never` or `on-failure` (backoff 100 ms doubling to 5 s, gives up after 5 failures in 60 s); a clean exit (frontend gone) is always replaced under `fsjail run` |
//! | `[[share]]` | `sandbox` | string | `"namespace"` | `namespace`, `chroot` (root only), `none` (debugging only) |
//! | `[[share]]` | `special_files` | string | `"emulate"` | a guest `mknod` of a device: `emulate` (an empty regular host file, the device recorded in `user.fsjail.stat`), `host` (a real node; keeps CAP_MKNOD), `refuse` (EPERM) |
//! | `[[share]]` | `allow_devices` | bool | none | the old spelling: `true` is `special_files = "host"`, `false` is `"refuse"`; not together with `special_files` |
//! | `[[share]]` | `ownership` | string | `"host"` as root, `"emulate"` otherwise | a guest chown: `host` (chown(2) on the host file) or `emulate` (an owner the host cannot hold is recorded in `user.fsjail.stat`) |
//! | `[[share]]` | `num_request_queues` | integer | 1 | 1 to 64, one thread each |
//! | `[[share]]` | `migration_on_error` | string | `"abort"` | a live migration's destination, for a file the guest knew that is gone: `abort` the migration or answer `guest-error` (EIO) on it |
//! | `[[share]]` | `announce_submounts` | bool | `false` | mark directories that are other host mounts (FUSE_ATTR_SUBMOUNT): the guest gives each its own st_dev |
//! | `[[share]]` | `config_tag` | bool | `false` | offer CONFIG and answer GET_CONFIG with `tag` (virtiofsd's `--tag`), for QEMU's generic `vhost-user-test-device-pci`; never with QEMU 7.1 to 8.0, which crash on it |
//! | `[[share]]` | `landlock` | string | `"best-effort"` | `require` (the worker refuses to start without Landlock ABI 2+), `best-effort`, `off`; see `steps::landlock` |
//! | `[[share]]` | `thread_pool_size` | integer | 4 | 0 to 64 threads serving the requests that may block (FSYNC, large READ/WRITE, ...) beside the queue threads; 0: none (virtiofsd's `--thread-pool-size`) |
//! | `[[share]]` | `poll_max_us` | integer | 0 | 0 to 10000: ceiling of the adaptive poll of each request queue after serving, in µs; 0: off |

mod check;
mod env;
mod error;
mod idmap;
pub mod plan;
mod schema;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use settings::{CachePolicy, MigrationOnError, Ownership, SpecialFiles};

pub use error::{Diagnostic, PolicyError};

/// A checked policy.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    /// The file it was loaded from, as given (used in messages and to reload on SIGHUP).
    pub file: PathBuf,
    pub broker: BrokerSettings,
    pub shares: Vec<ShareConfig>,
}

/// The `[broker]` table.
#[derive(Clone, Debug, PartialEq)]
pub struct BrokerSettings {
    /// Where the broker keeps its runtime state (and default socket location,
    /// `<runtime_dir>/<tag>.sock`). Absolute. Created mode 0700 by the broker when missing.
    pub runtime_dir: PathBuf,
    pub log_level: log::LevelFilter,
}

/// One checked `[[share]]`. Sent to the worker as-is (serde), so every field is plain data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShareConfig {
    /// The share's name in logs and in its default socket name: 1..=36 bytes of
    /// `[A-Za-z0-9_.-]`, not starting with `.`. The tag the guest mounts is set by the VMM
    /// (QEMU's `vhost-user-fs-pci,tag=`); use the same one.
    pub tag: String,
    /// Host directory served. Absolute and canonical; an existing directory, except when
    /// `create` is set and it is missing: then its parent is canonical and the broker creates
    /// it (mode 0700) before the worker starts (see [`ShareConfig::ensure_path`]).
    pub path: PathBuf,
    /// Create `path` (one level, mode 0700) when it is missing.
    pub create: bool,
    /// vhost-user socket the broker binds (absolute; its directory exists or is `runtime_dir`).
    pub socket: PathBuf,
    pub readonly: bool,
    #[serde(with = "cache_policy_str")]
    pub cache: CachePolicy,
    pub xattr: bool,
    /// Guest ids -> host ids, in the kernel's `uid_map` sense (inside the worker's user
    /// namespace -> outside). Empty means "no user namespace, ids are the host's" (only
    /// possible as root); an unprivileged broker always gets `[0 -> own uid, 1]` by default.
    pub uid_map: Vec<IdMap>,
    pub gid_map: Vec<IdMap>,
    /// RLIMIT_NOFILE of the worker: the guest's fd budget (CVE-2020-10717).
    pub rlimit_nofile: u64,
    pub restart: RestartPolicy,
    pub sandbox: SandboxMode,
    /// What a guest `mknod` of a character or block device does (default: emulate).
    #[serde(default, with = "as_str")]
    pub special_files: SpecialFiles,
    /// Where a guest's chown goes (default: the host as root, emulated otherwise).
    #[serde(default = "defaults::ownership", with = "as_str")]
    pub ownership: Ownership,
    /// Request queues, each served by its own thread (1..=64).
    pub num_request_queues: usize,
    /// Threads of the share's request pool (0..=64; 0: every request on its queue's thread).
    #[serde(default = "defaults::thread_pool_size")]
    pub thread_pool_size: usize,
    /// Ceiling of the adaptive poll of the request queues, in microseconds (0: off).
    #[serde(default = "defaults::poll_max_us")]
    pub poll_max_us: u32,
    /// What the worker's seccomp filter does to a call outside its allowlist.
    #[serde(default)]
    pub seccomp: seccomp::Mode,
    /// Size of the DAX window in bytes; 0 turns DAX off.
    #[serde(default)]
    pub dax_window: u64,
    /// The guest page size: every attribute reply's st_blksize is clamped to it.
    #[serde(default = "defaults::blksize")]
    pub blksize: u32,
    /// Largest READ/WRITE payload offered in FUSE INIT (`fsjail serve --max-write`; policy
    /// files keep the default).
    #[serde(default = "defaults::max_write")]
    pub max_write: u32,
    /// Tell the guest which directories are other host mounts (FUSE_ATTR_SUBMOUNT), so each
    /// gets its own st_dev there and inode numbers of two host filesystems never collide.
    #[serde(default)]
    pub announce_submounts: bool,
    /// What a migration destination does with a file the guest had open or knew that is gone:
    /// fail the migration, or answer EIO on it.
    #[serde(default, with = "migration_on_error_str")]
    pub migration_on_error: MigrationOnError,
    /// Answer the frontend's GET_CONFIG with `tag` (protocol feature CONFIG), for frontends
    /// that read the tag from the backend (QEMU 11.1's `vhost-user-test-device-pci`). Off by
    /// default: QEMU 7.1 to 8.0 crash when a virtio-fs backend offers CONFIG.
    #[serde(default)]
    pub config_tag: bool,
    /// Jail step 9: whether the worker must, may or must not restrict itself with Landlock.
    #[serde(default)]
    pub landlock: crate::steps::landlock::LandlockMode,
}

/// One line of a uid/gid map: `count` ids starting at `guest` map to ids starting at `host`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdMap {
    pub guest: u32,
    pub host: u32,
    pub count: u32,
}

/// What the broker does when a worker ends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Never restart: the share stays down once its worker ends.
    Never,
    /// Restart after a crash or a non-zero exit, with backoff. A worker that exits 0 because
    /// its frontend disconnected is always replaced under `fsjail run` (see the broker).
    #[default]
    OnFailure,
}

/// How the worker is confined (virtiofsd's `--sandbox`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SandboxMode {
    /// New namespaces, pivot_root into a tmpfs holding only the share.
    #[default]
    Namespace,
    /// chroot into the share (no namespaces).
    Chroot,
    /// No confinement: debugging only.
    None,
}

impl ShareConfig {
    /// Threads serving requests: one per request queue and the request pool's, all counted
    /// against the worker's NPROC.
    pub fn serving_threads(&self) -> usize {
        self.num_request_queues + self.thread_pool_size
    }

    /// What the share's device is asked to do (the rest of the config is the jail's).
    pub fn device_settings(&self) -> settings::DeviceSettings {
        settings::DeviceSettings {
            readonly: self.readonly,
            cache: self.cache,
            xattr: self.xattr,
            num_request_queues: self.num_request_queues,
            thread_pool_size: self.thread_pool_size,
            poll_max_us: self.poll_max_us,
            dax_window: self.dax_window,
            blksize: self.blksize,
            max_write: self.max_write,
            special_files: self.special_files,
            ownership: self.ownership,
            announce_submounts: self.announce_submounts,
            migration_on_error: self.migration_on_error,
            config_tag: self.config_tag.then(|| self.tag.clone()),
        }
    }
}

impl RestartPolicy {
    pub const NAMES: &'static [&'static str] = &["never", "on-failure"];
}

impl SandboxMode {
    pub const NAMES: &'static [&'static str] = &["namespace", "chroot", "none"];
}

impl fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RestartPolicy::Never => "never",
            RestartPolicy::OnFailure => "on-failure",
        })
    }
}

impl fmt::Display for SandboxMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SandboxMode::Namespace => "namespace",
            SandboxMode::Chroot => "chroot",
            SandboxMode::None => "none",
        })
    }
}

impl FromStr for RestartPolicy {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "never" => Ok(RestartPolicy::Never),
            "on-failure" => Ok(RestartPolicy::OnFailure),
            _ => Err(()),
        }
    }
}

/// A sandbox name that is none of [`SandboxMode::NAMES`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid sandbox {0:?}: expected one of \"namespace\", \"chroot\", \"none\"")]
pub struct ParseSandboxError(pub String);

impl FromStr for SandboxMode {
    type Err = ParseSandboxError;
    fn from_str(s: &str) -> Result<Self, ParseSandboxError> {
        match s {
            "namespace" => Ok(SandboxMode::Namespace),
            "chroot" => Ok(SandboxMode::Chroot),
            "none" => Ok(SandboxMode::None),
            _ => Err(ParseSandboxError(s.to_owned())),
        }
    }
}

impl fmt::Display for IdMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{{ guest = {}, host = {}, count = {} }}",
            self.guest, self.host, self.count
        )
    }
}

/// Defaults shared by the policy file and `fsjail serve`.
pub mod defaults {
    /// RLIMIT_NOFILE when the policy does not say: enough for a busy guest, far below the
    /// kernel's `fs.nr_open`, so one guest cannot pin a million host files
    /// (CVE-2020-10717). Lowered to the broker's hard limit when that is smaller and the broker
    /// cannot raise it (not root).
    pub const RLIMIT_NOFILE: u64 = 65536;
    /// Smallest accepted RLIMIT_NOFILE: the worker itself needs a handful of fds.
    pub const RLIMIT_NOFILE_MIN: u64 = 64;
    pub const NUM_REQUEST_QUEUES: usize = 1;
    pub const THREAD_POOL_SIZE: usize = settings::limits::DEFAULT_POOL_THREADS;
    pub(crate) fn thread_pool_size() -> usize {
        THREAD_POOL_SIZE
    }
    pub const THREAD_POOL_MAX: usize = settings::MAX_POOL_THREADS;
    pub const POLL_MAX_US: u32 = settings::limits::DEFAULT_POLL_MAX_US;
    pub(crate) fn poll_max_us() -> u32 {
        POLL_MAX_US
    }
    pub const POLL_MAX_US_LIMIT: u32 = settings::MAX_POLL_US;
    /// st_blksize cap: the usual guest page size (a 4K-page Linux guest).
    pub const BLKSIZE: u32 = 4096;
    pub(crate) fn blksize() -> u32 {
        BLKSIZE
    }
    /// FUSE INIT's max_write: 1 MiB, what Linux guests use with virtio-fs.
    pub const MAX_WRITE: u32 = 1 << 20;
    pub(crate) fn max_write() -> u32 {
        MAX_WRITE
    }
    /// virtio-fs: the tag field of the device config is 36 bytes.
    pub const TAG_MAX_LEN: usize = 36;
    /// Largest policy file read: far more than any real policy needs.
    pub const POLICY_MAX_BYTES: u64 = 1 << 20;
    /// The kernel accepts at most 340 lines in a uid_map/gid_map.
    pub const ID_MAP_MAX_LINES: usize = 340;
    /// `ownership` when the policy does not say: `host` for a root broker, `emulate` for one
    /// that can chown to no id but its own.
    pub fn ownership() -> settings::Ownership {
        settings::Ownership::default_for_euid(super::env::Env::current().euid)
    }
}

/// Reads, parses and checks the policy at `path`. No side effects: nothing is created.
pub fn load(path: &Path) -> Result<Policy, PolicyError> {
    let text = read_policy(path)?;
    parse(path, &text)
}

/// The file's text. Only a regular file, and at most [`defaults::POLICY_MAX_BYTES`]: the
/// path comes from the command line, and a FIFO or `/dev/zero` must not hang or exhaust the
/// broker.
fn read_policy(path: &Path) -> Result<String, PolicyError> {
    use std::io::Read;
    let err = |source| PolicyError::Read {
        file: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(err)?;
    let meta = file.metadata().map_err(err)?;
    if !meta.is_file() {
        return Err(PolicyError::NotAFile {
            file: path.to_path_buf(),
        });
    }
    let mut bytes = Vec::new();
    file.take(defaults::POLICY_MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(err)?;
    if bytes.len() as u64 > defaults::POLICY_MAX_BYTES {
        return Err(PolicyError::TooLarge {
            file: path.to_path_buf(),
            limit: defaults::POLICY_MAX_BYTES,
        });
    }
    String::from_utf8(bytes).map_err(|e| {
        err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not UTF-8: {e}"),
        ))
    })
}

/// Parses and checks policy text; `file` is used in messages and kept in [`Policy::file`].
pub fn parse(file: &Path, text: &str) -> Result<Policy, PolicyError> {
    let raw = schema::parse(file, text)?;
    check::check(file, text, raw)
}

/// A one-share policy for `fsjail serve`, with the default broker settings.
pub fn single_share(share: ShareConfig) -> Policy {
    Policy {
        file: PathBuf::from("<command line>"),
        broker: BrokerSettings {
            runtime_dir: env::default_runtime_dir(),
            log_level: log::LevelFilter::Info,
        },
        shares: vec![share],
    }
}

impl ShareConfig {
    /// A share of `path` on `socket` with every other setting at its default, for
    /// `fsjail serve` (which then overrides from its flags). `path` should be canonical.
    pub fn new(tag: &str, path: PathBuf, socket: PathBuf) -> ShareConfig {
        ShareConfig {
            tag: tag.to_owned(),
            path,
            create: false,
            socket,
            readonly: false,
            cache: CachePolicy::Auto,
            xattr: false,
            uid_map: idmap::default_id_map(idmap::IdKind::Uid),
            gid_map: idmap::default_id_map(idmap::IdKind::Gid),
            rlimit_nofile: env::default_rlimit_nofile(),
            restart: RestartPolicy::OnFailure,
            sandbox: SandboxMode::Namespace,
            special_files: SpecialFiles::default(),
            ownership: defaults::ownership(),
            num_request_queues: defaults::NUM_REQUEST_QUEUES,
            thread_pool_size: defaults::THREAD_POOL_SIZE,
            poll_max_us: defaults::POLL_MAX_US,
            seccomp: seccomp::Mode::Kill,
            dax_window: 0,
            blksize: defaults::BLKSIZE,
            max_write: defaults::MAX_WRITE,
            announce_submounts: false,
            migration_on_error: MigrationOnError::Abort,
            config_tag: false,
            landlock: crate::steps::landlock::LandlockMode::default_from_env(),
        }
    }

    /// Whether the worker keeps CAP_MKNOD: only for real device nodes on the host.
    pub fn allow_devices(&self) -> bool {
        self.special_files == SpecialFiles::Host
    }

    /// Creates `path` (mode 0700, one level) when `create` is set and it is missing. Called by
    /// the broker before it starts the worker.
    pub fn ensure_path(&self) -> std::io::Result<()> {
        check::ensure_share_dir(self)
    }
}

/// Settings that live in `settings` without serde travel as their `Display` string.
mod as_str {
    use std::fmt::Display;
    use std::str::FromStr;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<T: Display, S: Serializer>(t: &T, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(t)
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<T, D::Error>
    where
        T: FromStr,
        T::Err: Display,
        D: Deserializer<'de>,
    {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// `CachePolicy` lives in `settings` without serde; it travels as its `Display` string.
mod cache_policy_str {
    use serde::{Deserialize, Deserializer, Serializer};
    use settings::CachePolicy;

    pub fn serialize<S: Serializer>(c: &CachePolicy, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(c)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<CachePolicy, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// `MigrationOnError` lives in `settings` without serde; it travels as its `Display` string.
mod migration_on_error_str {
    use serde::{Deserialize, Deserializer, Serializer};
    use settings::MigrationOnError;

    pub fn serialize<S: Serializer>(m: &MigrationOnError, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(m)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<MigrationOnError, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod sandbox_mode_tests {
    use super::SandboxMode;

    #[test]
    fn sandbox_names_parse_and_print() {
        for s in ["namespace", "chroot", "none"] {
            assert_eq!(s.parse::<SandboxMode>().unwrap().to_string(), s);
        }
        let err = "Namespace".parse::<SandboxMode>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid sandbox \"Namespace\": expected one of \"namespace\", \"chroot\", \"none\""
        );
        assert!("".parse::<SandboxMode>().is_err());
    }
}
