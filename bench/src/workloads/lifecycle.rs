//! Process lifecycle: worker start time (item 7) and memory (item 8): an idle worker's RSS
//! after connect + INIT, and the broker's with 1 and with 64 shares.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::{Ctx, Plan};
use crate::backend::{attach, BackendSpec, ConnectOptions, Fill, Process};
use crate::error::{BenchError, Result};
use crate::figure::{Better, FigureSpec, Goal, Unit};
use crate::runner::{Kind, Measure, Subject};

/// The sandbox option and the value both fsjail and virtiofsd use for their namespace jail.
const SANDBOX: &str = "--sandbox";
const NAMESPACE: &str = "namespace";
/// Time an idle process gets to settle before its RSS is read.
const SETTLE: Duration = Duration::from_millis(100);
/// Shares in the large broker figure.
pub const MANY_SHARES: usize = 64;

/// Name of the namespace-sandbox variant of a backend.
fn jailed(name: &str) -> String {
    format!("{name}-ns")
}

// ---------------------------------------------------------------- 7: start

/// Item 7, each backend as its template runs it.
pub fn start(ctx: &Ctx) -> Plan<'_> {
    let spec = FigureSpec::new(
        "start",
        7,
        "worker start: spawn to connectable socket",
        Unit::Millis,
        Better::Lower,
    );
    let subjects = ctx.backend_subjects(|b| {
        Subject::new(b.name.clone(), Kind::Backend, move || {
            Ok(Box::new(Start {
                spec: b.clone(),
                ctx,
                until: Ready::Connectable,
            }) as Box<dyn Measure + '_>)
        })
    });
    Plan { spec, subjects }
}

/// Item 7, jailed: the subject and the reference each with `--sandbox namespace`, and
/// `fsjail run` with one share; this is where the target applies. Timed to the first INIT
/// reply rather than to a connectable socket, because the broker binds the socket before
/// its worker exists.
pub fn start_jailed(ctx: &Ctx) -> Plan<'_> {
    let (sub, refn) = (jailed(&ctx.subject), jailed(&ctx.reference));
    let spec = FigureSpec::new(
        "start-jailed",
        7,
        "worker start to first INIT reply, namespace sandbox",
        Unit::Millis,
        Better::Lower,
    )
    .pair(sub.clone(), refn.clone())
    .target(format!("≤ {refn}"), vec![Goal::Reference(1.0)]);
    let subjects = [(&ctx.subject, sub), (&ctx.reference, refn)]
        .into_iter()
        .map(
            |(base, name)| match ctx.backends.iter().find(|b| &b.name == base) {
                Some(b) => {
                    let variant = b.with_option(&name, SANDBOX, NAMESPACE);
                    Subject::new(name, Kind::Backend, move || {
                        // One trial: a sandbox that cannot start here is a skip, not a failure.
                        let mut probe = Start {
                            spec: variant,
                            ctx,
                            until: Ready::Init,
                        };
                        match probe.sample(0) {
                            Ok(_) => Ok(Box::new(probe) as Box<dyn Measure + '_>),
                            Err(e) => Err(BenchError::Skip(format!(
                                "{SANDBOX} {NAMESPACE} does not start here: {e}"
                            ))),
                        }
                    })
                }
                None => Subject::skipped(name, Kind::Backend, format!("no {base} backend")),
            },
        )
        .collect::<Vec<_>>();
    // Today's jailed fsjail: the broker starting one jailed worker (includes the broker's
    // own start).
    let mut subjects = subjects;
    subjects.push(broker_subject(
        ctx,
        format!("{} run", ctx.subject),
        1,
        BrokerWhat::Start,
    ));
    Plan { spec, subjects }
}

/// When a starting worker counts as started.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ready {
    /// Its socket accepts a connection (what a frontend waits for before it connects).
    Connectable,
    /// The guest driver connected and INIT was answered.
    Init,
}

struct Start<'a> {
    spec: BackendSpec,
    ctx: &'a Ctx,
    until: Ready,
}

impl Measure for Start<'_> {
    fn sample(&mut self, _round: usize) -> Result<f64> {
        let took = match self.until {
            Ready::Connectable => {
                let fill = Fill {
                    shared_dir: &self.ctx.fixture.root,
                    queues: 1,
                    dax_window: 0,
                };
                let mut p = Process::spawn(&self.spec, &self.ctx.dirs, fill)?;
                p.wait_connectable()?
            }
            Ready::Init => self.ctx.connect(&self.spec, 1, 0)?.process.elapsed(),
        };
        Ok(took.as_secs_f64() * 1e3)
    }
}

// ---------------------------------------------------------------- 8: memory

/// Item 8, the idle worker.
pub fn idle_rss(ctx: &Ctx) -> Plan<'_> {
    let spec = FigureSpec::new(
        "idle-rss",
        8,
        "idle worker RSS after connect+INIT (serving process)",
        Unit::KiB,
        Better::Lower,
    )
    .target("≤ 4 MiB", vec![Goal::Absolute(4096.0)]);
    let subjects = ctx.backend_subjects(|b| {
        Subject::new(b.name.clone(), Kind::Backend, move || {
            Ok(Box::new(IdleRss { spec: b, ctx }) as Box<dyn Measure + '_>)
        })
    });
    Plan { spec, subjects }
}

struct IdleRss<'a> {
    spec: &'a BackendSpec,
    ctx: &'a Ctx,
}

impl Measure for IdleRss<'_> {
    fn sample(&mut self, _round: usize) -> Result<f64> {
        let conn = self.ctx.connect(self.spec, 1, 0)?;
        std::thread::sleep(SETTLE);
        // The worker alone: under `fsjail serve` the broker above it is the cost of the
        // broker figures (item 8's second half), not of a worker.
        Ok(conn.process.worker_rss_kib()? as f64)
    }
}

/// Item 8, the broker with `shares` shares (only fsjail has one).
pub fn broker_rss(ctx: &Ctx, shares: usize) -> Plan<'_> {
    let id = if shares == 1 {
        "broker-rss-1"
    } else {
        "broker-rss-64"
    };
    let mut spec = FigureSpec::new(
        id,
        8,
        format!(
            "broker + workers RSS, {shares} share{}",
            if shares == 1 { "" } else { "s" }
        ),
        Unit::KiB,
        Better::Lower,
    );
    if shares > 1 {
        spec = spec.target(
            format!("≤ {shares}× the 1-share figure"),
            vec![Goal::Figure("broker-rss-1", shares as f64)],
        );
    }
    let subject = broker_subject(ctx, ctx.subject.clone(), shares, BrokerWhat::Rss);
    Plan {
        spec,
        subjects: vec![subject],
    }
}

/// What a broker sample measures.
#[derive(Clone, Copy, PartialEq, Eq)]
enum BrokerWhat {
    /// RSS of the broker and its workers once every socket is there, KiB.
    Rss,
    /// Time from spawning `fsjail run` to the (one) worker answering INIT, ms.
    Start,
}

fn broker_subject(ctx: &Ctx, name: String, shares: usize, what: BrokerWhat) -> Subject<'_> {
    match &ctx.fsjail {
        Some(program) => Subject::new(name, Kind::Backend, move || {
            Ok(Box::new(Broker {
                program: program.clone(),
                shares,
                what,
                ctx,
            }) as Box<dyn Measure + '_>)
        }),
        None => Subject::skipped(
            name,
            Kind::Backend,
            "no fsjail program to run the broker with",
        ),
    }
}

/// `fsjail run --policy` with a generated policy of `shares` shares.
struct Broker<'a> {
    program: PathBuf,
    shares: usize,
    what: BrokerWhat,
    ctx: &'a Ctx,
}

impl Measure for Broker<'_> {
    fn sample(&mut self, round: usize) -> Result<f64> {
        let dir = self
            .ctx
            .scratch
            .join(format!("broker-{}-{round}", self.shares));
        let sockets = write_policy(&dir, self.shares)?;
        let mut cmd = Command::new(&self.program);
        cmd.arg("run").arg("--policy").arg(dir.join("policy.toml"));
        let program = self.program.to_string_lossy().into_owned();
        let mut p = Process::spawn_command("broker", &program, cmd, &self.ctx.dirs)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while !sockets.iter().all(|s| s.exists()) {
            if let Some(st) = p.exited() {
                let log = p.log_tail(6);
                if log.contains("not built") {
                    return Err(BenchError::Skip(format!(
                        "`fsjail run --policy` is not built yet ({})",
                        log.lines().last().unwrap_or("").trim()
                    )));
                }
                return Err(p.failure(format!(
                    "fsjail run exited ({st}) before all {} sockets were up",
                    self.shares
                )));
            }
            if Instant::now() > deadline {
                let up = sockets.iter().filter(|s| s.exists()).count();
                return Err(p.failure(format!("only {up} of {} sockets after 30 s", self.shares)));
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        let value = match self.what {
            BrokerWhat::Start => {
                let opts = ConnectOptions {
                    queues: 1,
                    dax_window: 0,
                    mem_size: 64 << 20,
                    handler: None,
                };
                let session = attach(&mut p, &sockets[0], opts)?;
                let ms = p.elapsed().as_secs_f64() * 1e3;
                drop(session);
                ms
            }
            BrokerWhat::Rss => {
                std::thread::sleep(SETTLE);
                p.tree_rss_kib()? as f64
            }
        };
        p.stop();
        let _ = std::fs::remove_dir_all(&dir);
        Ok(value)
    }
}

/// Writes `dir/policy.toml` with `n` shares under `dir/shares`, sockets under `dir/run`;
/// returns the socket paths.
fn write_policy(dir: &Path, n: usize) -> Result<Vec<PathBuf>> {
    let run = dir.join("run");
    let shares = dir.join("shares");
    for d in [&run, &shares] {
        std::fs::create_dir_all(d).map_err(|e| BenchError::io("mkdir", d, e))?;
    }
    let mut text = format!("[broker]\nruntime_dir = {:?}\n", run.to_string_lossy());
    let mut sockets = Vec::with_capacity(n);
    for i in 0..n {
        let share = shares.join(format!("s{i:02}"));
        std::fs::create_dir_all(&share).map_err(|e| BenchError::io("mkdir", &share, e))?;
        let socket = run.join(format!("s{i:02}.sock"));
        text.push_str(&format!(
            "\n[[share]]\ntag = \"s{i:02}\"\npath = {:?}\nsocket = {:?}\n",
            share.to_string_lossy(),
            socket.to_string_lossy()
        ));
        sockets.push(socket);
    }
    let file = dir.join("policy.toml");
    std::fs::write(&file, text).map_err(|e| BenchError::io("write", &file, e))?;
    Ok(sockets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_has_every_share() {
        let dir = std::env::temp_dir().join(format!("fsjail-bench-policy-{}", std::process::id()));
        let socks = write_policy(&dir, 3).unwrap();
        let text = std::fs::read_to_string(dir.join("policy.toml")).unwrap();
        assert_eq!(socks.len(), 3);
        assert_eq!(text.matches("[[share]]").count(), 3);
        assert!(text.contains("tag = \"s02\""));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
