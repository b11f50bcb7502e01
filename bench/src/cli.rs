//! Command line.

use std::path::PathBuf;

use argh::FromArgs;

/// fsjail-bench: how fast fsjail serves files beside virtiofsd and the raw host, measured
/// through the guest driver in one run. Prints a table (median and min–max of alternating
/// rounds, ratios, the project's targets); `--json FILE` writes the figures.
///
/// Backends are command templates with {socket} and {shared_dir} (and optionally {queues}
/// and {dax_window}). By default: fsjail from the same target directory as this program,
/// and virtiofsd ($FSJAIL_PEER, else on PATH, else in ~/.cargo/bin).
#[derive(FromArgs, Debug)]
pub struct Args {
    /// small sizes and one round: seconds, for CI
    #[argh(switch)]
    pub short: bool,

    /// write the figures as JSON to FILE
    #[argh(option)]
    pub json: Option<PathBuf>,

    /// a backend as NAME='TEMPLATE', repeatable; when given, exactly these backends run
    /// (the one named fsjail, or the first, is compared with the one named virtiofsd, or
    /// the second)
    #[argh(option)]
    pub backend: Vec<String>,

    /// the fsjail program (default: next to fsjail-bench)
    #[argh(option)]
    pub fsjail: Option<PathBuf>,

    /// run only these figures (comma-separated ids: metadata, create, randread-1q,
    /// randread-4q, seqread, seqwrite, readdirplus, mix-p99, mix-median, dax-map, dax-read, start, start-jailed,
    /// idle-rss, idle-cpu, broker-rss-1, broker-rss-64)
    #[argh(option)]
    pub only: Option<String>,

    /// measured rounds per subject (default 7, or 1 with --short)
    #[argh(option)]
    pub rounds: Option<usize>,

    /// warm-up rounds per subject (default 1)
    #[argh(option)]
    pub warmup: Option<usize>,

    /// requests in flight per request queue in the pipelined workloads (default 8)
    #[argh(option, default = "8")]
    pub depth: usize,

    /// where to build the shared directory and keep logs (default: a fresh directory under
    /// the system temp dir, removed afterwards)
    #[argh(option)]
    pub work_dir: Option<PathBuf>,

    /// keep the work directory (backend logs are there)
    #[argh(switch)]
    pub keep: bool,

    /// no progress bar on stderr
    #[argh(switch)]
    pub no_progress: bool,
}

/// Every figure id, in run order.
pub const FIGURES: &[&str] = &[
    "metadata",
    "create",
    "randread-1q",
    "randread-4q",
    "seqread",
    "seqwrite",
    "readdirplus",
    "mix-p99",
    "mix-median",
    "dax-map",
    "dax-read",
    "start",
    "start-jailed",
    "idle-rss",
    "idle-cpu",
    "broker-rss-1",
    "broker-rss-64",
];
