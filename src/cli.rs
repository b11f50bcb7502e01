//! Command-line definitions. Flag names follow virtiofsd's where the two overlap, so scripts
//! written for virtiofsd can switch binaries.

use std::path::PathBuf;

use argh::FromArgs;
use devices::dax::ByteSize;
use devices::fs::CachePolicy;

/// fsjail: a sandboxed virtio-fs device that serves a host directory to a VM over vhost-user.
#[derive(FromArgs, Debug)]
#[argh(
    example = "\
    One share for one VM, as virtiofsd would serve it:\n\
    \u{00A0} {command_name} serve --socket-path /run/fsjail/vm1.sock --shared-dir /srv/vm1\n\
    Every share of a policy, each in its own jail (the systemd service):\n\
    \u{00A0} {command_name} check --policy /etc/fsjail/policy.toml\n\
    \u{00A0} {command_name} run --policy /etc/fsjail/policy.toml",
    note = "\
    `{command_name} <command> --help` describes each command. fsjail-virtiofsd, installed next \
    to fsjail, takes virtiofsd's command line (libvirt, Kata) and runs `fsjail serve`; \
    contrib/fsjail.service runs the broker under systemd (Type=notify, reload with SIGHUP)."
)]
pub struct Cli {
    #[argh(subcommand)]
    pub command: Command,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum Command {
    Serve(ServeArgs),
    Run(crate::run::RunArgs),
    Check(crate::check::CheckArgs),
    Worker(crate::worker::WorkerArgs),
    Seccomp(crate::seccomp_cmd::SeccompArgs),
}

/// Serve one shared directory on a vhost-user socket until the frontend disconnects.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "serve",
    example = "\
    Serve ./share on a new socket for QEMU's vhost-user-fs-pci:\n\
    \u{00A0} {command_name} --socket-path /run/fsjail/vm1.sock --shared-dir ./share\n\
    Serve on a socket the caller already listens on (what libvirt and Kata do):\n\
    \u{00A0} {command_name} --fd 3 --shared-dir /srv/vm1 --cache never --xattr\n\
    Let QEMU running as qemu:kvm connect, log to the journal:\n\
    \u{00A0} {command_name} --socket-path /run/fsjail/vm1.sock --socket-group kvm --shared-dir /srv/vm1 --syslog",
    note = "\
    Exactly one of --socket-path and --fd is required. fsjail binds (or takes) the socket, \
    then, with the default --sandbox namespace, runs a jailed worker for the share (the same \
    broker and jail as `fsjail run`: new namespaces, the share as root, six capabilities, the \
    seccomp filter last). It serves one frontend connection and exits 0 when it disconnects, \
    as virtiofsd does; it exits 1 with a message \
    on stderr when the command line or the setup is wrong. When $NOTIFY_SOCKET is set it sends \
    READY=1 once the socket listens. Log lines carry the pid and the shared directory's name; \
    lines a guest can trigger are rate-limited (10 per call site per 5 s). \
    fsjail-virtiofsd translates virtiofsd's command line into this one."
)]
pub struct ServeArgs {
    /// path of the vhost-user socket to create and listen on (a stale socket there is
    /// replaced); required unless --fd is given
    #[argh(option)]
    pub socket_path: Option<PathBuf>,

    /// serve on this inherited descriptor, a unix stream socket the caller already listens on
    /// (libvirt and Kata create the socket themselves); instead of --socket-path
    #[argh(option)]
    pub fd: Option<i32>,

    /// give the socket created at --socket-path to this group (name or gid) with mode 0660, so
    /// a frontend in that group can connect; not with --fd (the caller owns that socket)
    #[argh(option)]
    pub socket_group: Option<String>,

    /// host directory to share with the guest
    #[argh(option)]
    pub shared_dir: PathBuf,

    /// guest caching of data and metadata: never, auto (default) or always
    #[argh(option, default = "CachePolicy::Auto")]
    pub cache: CachePolicy,

    /// refuse every change to the share (EROFS)
    #[argh(switch)]
    pub readonly: bool,

    /// pass extended attributes through (off by default, as in virtiofsd)
    #[argh(switch)]
    pub xattr: bool,

    /// what a guest mknod of a block or character device makes: emulate (default: an empty
    /// regular host file, mode 0600, with the device recorded in its user.fsjail.stat
    /// attribute), host (a real device node; the worker keeps CAP_MKNOD) or refuse (EPERM)
    #[argh(option, default = "settings::SpecialFiles::Emulate")]
    pub special_files: settings::SpecialFiles,

    /// where a guest's chown goes: host (chown(2) on the host file; the default as root) or
    /// emulate (an owner the host cannot hold is recorded in user.fsjail.stat; the default
    /// without root)
    #[argh(option)]
    pub ownership: Option<settings::Ownership>,

    /// tell the guest which directories are other host mounts (FUSE_ATTR_SUBMOUNT), so each
    /// is its own mount with its own st_dev there; off by default
    #[argh(switch)]
    pub announce_submounts: bool,

    /// live migration, on the destination: what to do with a file the guest knew or had open
    /// that cannot be found again: abort (default: fail the migration) or guest-error (EIO on it)
    #[argh(option, default = "settings::MigrationOnError::Abort")]
    pub migration_on_error: settings::MigrationOnError,

    /// number of request queues, each served by its own thread (default 1)
    #[argh(option, default = "1")]
    pub num_request_queues: usize,

    /// threads serving the requests that may block (FSYNC, large READ/WRITE, ...) beside
    /// the queue threads, so cheap requests are not held up behind them; 0 to 64, 0: none
    /// (default 4; virtiofsd's flag of the same name)
    #[argh(option, default = "jail::policy::defaults::THREAD_POOL_SIZE")]
    pub thread_pool_size: usize,

    /// after serving, poll each request queue for up to this many microseconds before
    /// sleeping (adaptive: the window grows while polling pays off, drops to 0 when it does
    /// not); 0 to 10000, 0: off (the default)
    #[argh(option, default = "jail::policy::defaults::POLL_MAX_US")]
    pub poll_max_us: u32,

    /// largest READ/WRITE payload offered to the guest, in bytes (default 1 MiB)
    #[argh(option, default = "1 << 20")]
    pub max_write: u32,

    /// size of the DAX window (the guest's cache of host page-cache mappings), in bytes or
    /// with a K, M or G suffix: a multiple of 2 MiB and of the host page, at most 64G; 0 (the
    /// default) turns DAX off
    #[argh(option, default = "ByteSize(0)")]
    pub dax_window: ByteSize,

    /// the virtio-fs tag, for frontends that read it from the backend (GET_CONFIG, as QEMU
    /// 11.1's vhost-user-test-device-pci does): 1 to 36 bytes; offers protocol feature CONFIG,
    /// which QEMU 7.1 to 8.0 crash on, so it is off unless given (as in virtiofsd)
    #[argh(option)]
    pub tag: Option<String>,

    /// largest st_blksize reported to the guest, normally its page size: a power of two from
    /// 512 to 65536 (default 4096)
    #[argh(option, default = "devices::dax::settings::DEFAULT_BLKSIZE")]
    pub blksize: u32,

    /// log level: off, error, warn, info (default), debug or trace
    #[argh(option, default = "log::LevelFilter::Info")]
    pub log_level: log::LevelFilter,

    /// log to the local syslog socket (/dev/log, so journald gets the lines) instead of stderr
    #[argh(switch)]
    pub syslog: bool,

    /// isolation: namespace (default: a jailed worker in new namespaces whose root is the
    /// share), chroot (root only: a worker chrooted into the share) or none (serve from this
    /// process, unjailed; for debugging)
    #[argh(option, default = "jail::policy::SandboxMode::Namespace")]
    pub sandbox: jail::policy::SandboxMode,

    /// what the seccomp filter does to a call outside the worker's allowlist: kill (default),
    /// trap (name the call on stderr, then exit), log (allow and log, for policy work), none
    #[argh(option, default = "seccomp::Mode::Kill")]
    pub seccomp: seccomp::Mode,

    /// the jailed worker's Landlock ruleset: require (refuse to start without it), best-effort
    /// (default: used when the kernel has ABI 2 or later) or off; see README's Sandbox
    #[argh(option)]
    pub landlock: Option<jail::steps::landlock::LandlockMode>,

    /// open-file limit: N sets soft and hard limit to N, 0 leaves the limit alone (default:
    /// raise the soft limit to the hard limit; one descriptor is held per inode the guest knows)
    #[argh(option)]
    pub rlimit_nofile: Option<u64>,
}
