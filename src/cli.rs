//! Command-line definitions. Flag names follow virtiofsd's where the two overlap, so scripts
//! written for virtiofsd can switch binaries.

use std::path::PathBuf;

use argh::FromArgs;
use devices::fs::CachePolicy;

/// fsjail: a sandboxed virtio-fs device that serves a host directory to a VM over vhost-user.
#[derive(FromArgs, Debug)]
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
}

/// Serve one shared directory on a vhost-user socket until the frontend disconnects.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "serve")]
pub struct ServeArgs {
    /// path of the vhost-user socket to create and listen on
    #[argh(option)]
    pub socket_path: PathBuf,

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

    /// number of request queues, each served by its own thread (default 1)
    #[argh(option, default = "1")]
    pub num_request_queues: usize,

    /// accepted for virtiofsd compatibility; only 0 (no extra pool) is supported, because
    /// fsjail serves each request queue on its own thread
    #[argh(option, default = "0")]
    pub thread_pool_size: usize,

    /// largest READ/WRITE payload offered to the guest, in bytes (default 1 MiB)
    #[argh(option, default = "1 << 20")]
    pub max_write: u32,

    /// log level: error, warn, info (default), debug or trace
    #[argh(option, default = "log::LevelFilter::Info")]
    pub log_level: log::LevelFilter,
}
