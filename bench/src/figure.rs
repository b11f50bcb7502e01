//! A figure's definition: what it counts, which way is better, and the targets it is held to.
//! The workloads define them, the runner measures them, the report prints them.

/// What a figure counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// FUSE requests per second (the host baseline: the system calls standing in for them).
    OpsPerSec,
    EntriesPerSec,
    GBps,
    Millis,
    KiB,
}

impl Unit {
    pub fn label(self) -> &'static str {
        match self {
            Unit::OpsPerSec => "ops/s",
            Unit::EntriesPerSec => "entries/s",
            Unit::GBps => "GB/s",
            Unit::Millis => "ms",
            Unit::KiB => "KiB",
        }
    }

    /// A value with 3 significant digits and k/M suffixes where they help.
    pub fn format(self, v: f64) -> String {
        match self {
            Unit::OpsPerSec | Unit::EntriesPerSec => si(v),
            Unit::GBps => format!("{v:.2}"),
            Unit::Millis => {
                if v < 10.0 {
                    format!("{v:.2}")
                } else {
                    format!("{v:.1}")
                }
            }
            Unit::KiB => format!("{v:.0}"),
        }
    }
}

fn si(v: f64) -> String {
    let (x, suffix) = if v >= 1e6 {
        (v / 1e6, "M")
    } else if v >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    let digits = if x >= 100.0 {
        0
    } else if x >= 10.0 {
        1
    } else {
        2
    };
    format!("{x:.digits$}{suffix}")
}

/// Whether more is better.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Better {
    Higher,
    Lower,
}

/// One condition of a target, for the subject's median.
#[derive(Clone, Debug, PartialEq)]
pub enum Goal {
    /// At least (Higher) / at most (Lower) `k` × the reference backend's median.
    Reference(f64),
    /// ... `k` × the host baseline's median.
    Baseline(f64),
    /// ... this absolute value.
    Absolute(f64),
    /// ... `k` × the subject's median in figure `id`.
    Figure(&'static str, f64),
    /// ... `k` × the median of the subject named so in this figure (a variant of a backend).
    Named(String, f64),
    /// The subject's backend CPU per request at most `k` × the reference's (whatever the
    /// figure's direction).
    CpuPerRequest(f64),
}

/// A performance target in words, and the conditions that decide whether it is met.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub text: String,
    pub goals: Vec<Goal>,
}

/// What a figure is.
#[derive(Clone, Debug)]
pub struct FigureSpec {
    /// Short id, used in the JSON and with `--only`.
    pub id: &'static str,
    /// The number in the report's `#` column; the figures of one workload share it.
    pub item: u8,
    pub title: String,
    pub unit: Unit,
    pub better: Better,
    /// Name of the host baseline in this figure ("raw host", "memcpy"), if it has one.
    pub baseline: Option<&'static str>,
    /// Subject and reference backends for the ratio when they are not the run's defaults
    /// (jailed start time compares the namespace-sandbox variants).
    pub subject: Option<String>,
    pub reference: Option<String>,
    pub target: Option<Target>,
}

impl FigureSpec {
    pub fn new(
        id: &'static str,
        item: u8,
        title: impl Into<String>,
        unit: Unit,
        better: Better,
    ) -> Self {
        FigureSpec {
            id,
            item,
            title: title.into(),
            unit,
            better,
            baseline: None,
            subject: None,
            reference: None,
            target: None,
        }
    }

    pub fn baseline(mut self, label: &'static str) -> Self {
        self.baseline = Some(label);
        self
    }

    /// Compares `subject` with `reference` instead of the run's pair.
    pub fn pair(mut self, subject: impl Into<String>, reference: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self.reference = Some(reference.into());
        self
    }

    pub fn target(mut self, text: impl Into<String>, goals: Vec<Goal>) -> Self {
        self.target = Some(Target {
            text: text.into(),
            goals,
        });
        self
    }
}
