//! `fsjail check --policy FILE`: validate a policy and print what `fsjail run` would do with
//! it: per share every setting with its default filled in (as TOML, so it can be pasted back
//! into a policy), then the jail it builds. Nothing is created, bound or started.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use argh::FromArgs;
use jail::policy::{self, plan, IdMap, Policy, ShareConfig};

/// Validate a policy file and print, per share, the effective settings and the jail it builds.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "check",
    example = "\u{00A0} fsjail check --policy policies/example.toml",
    note = "\
    Nothing is started and nothing is created. The output is itself a valid policy: every key \
    of every share with its default filled in, followed by the jail steps (namespaces, mounts, \
    rlimits, capabilities, Landlock with the kernel's ABI, seccomp) as comments. Errors go to stderr, each naming the file, the \
    line and the key.",
    error_code(2, "the policy file is invalid")
)]
pub struct CheckArgs {
    /// the policy file (TOML)
    #[argh(option)]
    pub policy: std::path::PathBuf,
}

/// Exit 0 when the policy is valid, 2 when it is not (the errors go to stderr).
pub fn main(args: CheckArgs) -> ExitCode {
    match policy::load(&args.policy) {
        Ok(policy) => {
            let (euid, egid) = plan::current_ids();
            print!("{}", render(&policy, euid, egid));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            eprintln!("fsjail check: {}: invalid policy", args.policy.display());
            ExitCode::from(2)
        }
    }
}

fn render(policy: &Policy, euid: u32, egid: u32) -> String {
    let mut out = String::new();
    let n = policy.shares.len();
    // Writing to a String cannot fail; the results are ignored for that reason.
    let _ = writeln!(
        out,
        "# {}: valid, {n} share{}",
        policy.file.display(),
        if n == 1 { "" } else { "s" }
    );
    let _ = writeln!(out, "\n[broker]");
    let _ = writeln!(
        out,
        "runtime_dir = {}",
        quote_path(&policy.broker.runtime_dir)
    );
    let _ = writeln!(
        out,
        "log_level = \"{}\"",
        policy.broker.log_level.to_string().to_lowercase()
    );
    for share in &policy.shares {
        render_share(&mut out, share, euid, egid);
    }
    out
}

fn render_share(out: &mut String, s: &ShareConfig, euid: u32, egid: u32) {
    let _ = writeln!(out, "\n[[share]]");
    let _ = writeln!(out, "tag = {:?}", s.tag);
    let _ = write!(out, "path = {}", quote_path(&s.path));
    if s.create && !s.path.exists() {
        let _ = write!(
            out,
            "  # missing: created (mode 0700) when the share starts"
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "create = {}", s.create);
    let _ = writeln!(out, "socket = {}", quote_path(&s.socket));
    let _ = writeln!(out, "readonly = {}", s.readonly);
    let _ = writeln!(out, "cache = \"{}\"", s.cache);
    let _ = writeln!(out, "xattr = {}", s.xattr);
    let identity = if s.uid_map.is_empty() && s.gid_map.is_empty() {
        "  # none: ids are the host's"
    } else {
        ""
    };
    let _ = writeln!(out, "uid_map = {}{identity}", maps(&s.uid_map));
    let _ = writeln!(out, "gid_map = {}", maps(&s.gid_map));
    let _ = writeln!(out, "rlimit_nofile = {}", s.rlimit_nofile);
    let _ = writeln!(out, "restart = \"{}\"", s.restart);
    let _ = writeln!(out, "sandbox = \"{}\"", s.sandbox);
    let _ = writeln!(out, "special_files = \"{}\"", s.special_files);
    let _ = writeln!(out, "ownership = \"{}\"", s.ownership);
    let _ = writeln!(out, "num_request_queues = {}", s.num_request_queues);
    let _ = writeln!(out, "thread_pool_size = {}", s.thread_pool_size);
    let _ = writeln!(out, "poll_max_us = {}", s.poll_max_us);
    let _ = writeln!(out, "seccomp = \"{}\"", s.seccomp);
    let _ = writeln!(out, "dax_window = {}", s.dax_window);
    let _ = writeln!(out, "blksize = {}", s.blksize);
    let _ = writeln!(out, "announce_submounts = {}", s.announce_submounts);
    let _ = writeln!(out, "migration_on_error = \"{}\"", s.migration_on_error);
    let _ = writeln!(out, "config_tag = {}", s.config_tag);
    let _ = writeln!(out, "landlock = \"{}\"", s.landlock);
    let _ = writeln!(out, "# jail:");
    for step in plan::describe(s, euid, egid) {
        let _ = writeln!(out, "#   {step}");
    }
}

fn maps(maps: &[IdMap]) -> String {
    let items: Vec<String> = maps.iter().map(IdMap::to_string).collect();
    format!("[{}]", items.join(", "))
}

/// A path as a TOML string. Rust's `{:?}` escapes match TOML's for everything a checked path
/// can hold except non-UTF-8 bytes, which are shown lossily (and such a path could not have
/// come from a TOML file anyway).
fn quote_path(path: &Path) -> String {
    format!("{:?}", path.to_string_lossy())
}
