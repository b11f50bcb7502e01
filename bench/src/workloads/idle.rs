//! Idle cost: the CPU a connected, initialised worker uses while nobody asks anything. It
//! must be 0: a backend that polls its rings (or wakes on a timer) when idle burns a core of
//! the host for every guest.

use std::time::Duration;

use super::{Ctx, Plan};
use crate::backend::{BackendSpec, Connection};
use crate::cost::tree_cpu_s;
use crate::error::Result;
use crate::figure::{Better, FigureSpec, Goal, Unit};
use crate::runner::{Kind, Measure, Subject};

/// How long a connected worker sits idle in each sample.
fn window(ctx: &Ctx) -> Duration {
    if ctx.fixture.scale.name == "short" {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(10)
    }
}

/// The idle-CPU figure.
pub fn idle_cpu(ctx: &Ctx) -> Plan<'_> {
    let secs = window(ctx).as_secs();
    let spec = FigureSpec::new(
        "idle-cpu",
        1,
        format!("CPU of a connected idle worker over {secs} s (all its processes)"),
        Unit::Millis,
        Better::Lower,
    )
    .target("0", vec![Goal::Absolute(0.0)]);
    let subjects = ctx.backend_subjects(|b| {
        Subject::new(b.name.clone(), Kind::Backend, move || {
            Ok(Box::new(Idle { spec: b, ctx }) as Box<dyn Measure + '_>)
        })
    });
    Plan { spec, subjects }
}

struct Idle<'a> {
    spec: &'a BackendSpec,
    ctx: &'a Ctx,
}

impl Measure for Idle<'_> {
    fn sample(&mut self, round: usize) -> Result<f64> {
        if round == 0 {
            // The warm-up round would only wait: nothing here needs warming.
            return Ok(0.0);
        }
        let conn: Connection = self.ctx.connect(self.spec, 1, 0)?;
        // One request first, so the queue thread has served something (and any polling
        // after it has run its course) before the window opens.
        conn.session.statfs(1).map_err(|e| {
            crate::error::BenchError::Check(format!("{}: STATFS: {e}", self.spec.name))
        })?;
        std::thread::sleep(Duration::from_millis(200));
        let pid = conn.process.pid();
        let before = tree_cpu_s(pid);
        std::thread::sleep(window(self.ctx));
        let after = tree_cpu_s(pid);
        Ok(((after - before) * 1000.0).max(0.0))
    }
}
