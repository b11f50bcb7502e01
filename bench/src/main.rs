//! `fsjail-bench`: drives vhost-user-fs backends through the guest driver and prints how fast
//! each is beside the others and beside the raw host, from one run on one machine.
//!
//! Modules: `workloads/*` (one per kind of work, each with its host baseline), `runner`
//! (warm-up, alternation, statistics), `report` (table and JSON), `backend` (templates and
//! processes), `fixture` (the shared directory), `sys` (the unsafe system calls).

mod backend;
mod cli;
mod cost;
mod discover;
mod error;
mod figure;
mod fixture;
mod json;
mod progress;
mod report;
mod runner;
mod sys;
mod workloads;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use backend::SpawnDirs;
use error::{BenchError, Result};
use fixture::{Fixture, Scale};
use progress::Progress;
use report::{Report, RunInfo};
use runner::{Outcome, Runner};
use workloads::{dax, idle, io, lifecycle, metadata, mixed, Ctx, Plan};

fn main() -> ExitCode {
    let args: cli::Args = argh::from_env();
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("fsjail-bench: error: {e}");
            ExitCode::from(2)
        }
    }
}

/// The work directory; removed on drop unless kept.
struct WorkDir {
    path: PathBuf,
    remove: bool,
}

impl WorkDir {
    fn new(explicit: Option<&Path>, keep: bool) -> Result<Self> {
        let (path, remove) = match explicit {
            Some(p) => (p.to_path_buf(), false),
            None => {
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.subsec_nanos());
                let p = std::env::temp_dir()
                    .join(format!("fsjail-bench.{}.{nanos}", std::process::id()));
                (p, !keep)
            }
        };
        std::fs::create_dir_all(&path).map_err(|e| BenchError::io("mkdir", &path, e))?;
        let path = std::fs::canonicalize(&path).map_err(|e| BenchError::io("resolve", &path, e))?;
        // Socket paths must fit in sun_path (108 bytes) with room for "/s/NNN.sock".
        if path.as_os_str().len() > 90 {
            return Err(BenchError::Usage(format!(
                "--work-dir {}: too long a path for unix sockets under it",
                path.display()
            )));
        }
        Ok(WorkDir { path, remove })
    }

    fn sub(&self, name: &str) -> Result<PathBuf> {
        let p = self.path.join(name);
        std::fs::create_dir_all(&p).map_err(|e| BenchError::io("mkdir", &p, e))?;
        Ok(p)
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if self.remove {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

fn run(args: cli::Args) -> Result<ExitCode> {
    let mut scale = if args.short {
        Scale::short()
    } else {
        Scale::full()
    };
    if let Some(r) = args.rounds {
        if r == 0 {
            return Err(BenchError::Usage("--rounds must be at least 1".into()));
        }
        scale.rounds = r;
    }
    if let Some(w) = args.warmup {
        scale.warmup = w;
    }
    if args.depth == 0 || args.depth > 64 {
        return Err(BenchError::Usage("--depth must be 1 to 64".into()));
    }
    let only: Option<Vec<String>> = args.only.as_deref().map(|s| {
        s.split(',')
            .map(|x| x.trim().to_string())
            .filter(|x| !x.is_empty())
            .collect()
    });
    if let Some(ids) = &only {
        if let Some(bad) = ids.iter().find(|i| !cli::FIGURES.contains(&i.as_str())) {
            return Err(BenchError::Usage(format!(
                "--only: no figure {bad:?}; figures are {}",
                cli::FIGURES.join(", ")
            )));
        }
    }
    let found = discover::backends(&args.backend, args.fsjail.as_deref())?;
    let load_before = std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    if let Err(e) = sys::raise_nofile_limit() {
        eprintln!("fsjail-bench: warning: could not raise the open-file limit: {e}");
    }

    let work = WorkDir::new(args.work_dir.as_deref(), args.keep)?;
    let started = Instant::now();
    let mut progress = Progress::new(1, !args.no_progress);
    let share = work.sub("share")?;
    let fixture = Fixture::build(&share, &scale, |what| {
        progress.show(&format!("setup · {what}"))
    })?;
    let ctx = Ctx {
        dirs: SpawnDirs::new(work.sub("s")?, work.sub("logs")?),
        scratch: work.sub("scratch")?,
        dax_window: scale.dax_read.max(32 << 20).next_multiple_of(2 << 20),
        fixture,
        backends: found.run,
        missing: found.missing,
        depth: args.depth,
        fsjail: found.fsjail,
        subject: found.subject,
        reference: found.reference,
    };
    for (name, reason) in &ctx.missing {
        progress.note(&format!(
            "fsjail-bench: {name}: {reason}; its columns will say skipped"
        ));
    }

    let mut plans: Vec<Plan<'_>> = vec![
        metadata::lookup_getattr(&ctx),
        metadata::create(&ctx),
        io::random_read(&ctx, 1),
        io::random_read(&ctx, 4),
        io::seq_read(&ctx),
        io::seq_write(&ctx),
        metadata::readdirplus(&ctx),
    ];
    plans.extend(mixed::figures(&ctx));
    plans.extend(dax::figures(&ctx));
    plans.push(lifecycle::start(&ctx));
    plans.push(lifecycle::start_jailed(&ctx));
    plans.push(lifecycle::idle_rss(&ctx));
    plans.push(idle::idle_cpu(&ctx));
    plans.push(lifecycle::broker_rss(&ctx, 1));
    plans.push(lifecycle::broker_rss(&ctx, lifecycle::MANY_SHARES));
    if let Some(ids) = &only {
        plans.retain(|p| ids.iter().any(|i| i == p.spec.id));
    }

    let mut runner = Runner {
        warmup: scale.warmup,
        rounds: scale.rounds,
        progress,
    };
    let total: usize = plans.iter().map(|p| runner.steps(p.subjects.len())).sum();
    runner.progress = Progress::new(total, !args.no_progress);
    let mut figures = Vec::with_capacity(plans.len());
    for plan in plans {
        figures.push(runner.run(plan.spec, plan.subjects));
    }
    runner.progress.finish();

    let mut backends: Vec<(String, String)> = ctx
        .backends
        .iter()
        .map(|b| (b.name.clone(), b.template.clone()))
        .collect();
    backends.extend(
        ctx.missing
            .iter()
            .map(|(n, r)| (n.clone(), format!("(not run: {r})"))),
    );
    let report = Report {
        info: RunInfo {
            mode: scale.name,
            date_utc: utc_now(),
            command: std::env::args()
                .map(|a| shell_quote(&a))
                .collect::<Vec<_>>()
                .join(" "),
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_string(),
            load_before,
            warmup: scale.warmup,
            rounds: scale.rounds,
            depth: args.depth,
            backends,
            subject: ctx.subject.clone(),
            reference: ctx.reference.clone(),
            elapsed_s: started.elapsed().as_secs_f64(),
        },
        figures,
    };
    print!("{}", report.table());
    if let Some(path) = &args.json {
        std::fs::write(path, report.json().to_pretty())
            .map_err(|e| BenchError::io("write", path, e))?;
    }
    if args.keep || args.work_dir.is_some() {
        eprintln!(
            "fsjail-bench: work directory (backend logs in logs/): {}",
            work.path.display()
        );
    }
    let failed = report
        .figures
        .iter()
        .flat_map(|f| &f.subjects)
        .any(|s| matches!(s.outcome, Outcome::Failed(_)));
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn shell_quote(a: &str) -> String {
    if !a.is_empty()
        && a.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', r"'\''"))
    }
}

/// "YYYY-MM-DD HH:MM" in UTC.
fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60
    )
}
