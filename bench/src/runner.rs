//! Alternation and statistics: every subject of a figure (each backend, then the host
//! baseline) is prepared, warmed up, then sampled in turns A, B, raw, A, B, raw, ... so that
//! drift in the machine's load hits all of them alike.

use crate::cost::{Cost, Probe, Reading};
use crate::error::{BenchError, Result};
use crate::figure::FigureSpec;
use crate::progress::Progress;

/// One prepared subject of a figure: a connected backend or a host baseline.
pub trait Measure {
    /// Runs the workload once, timed, and returns the figure's value (ops/s, GB/s, ms...).
    /// `round` numbers the samples (0 is the warm-up) so workloads can vary their inputs
    /// identically for every subject.
    fn sample(&mut self, round: usize) -> Result<f64>;

    /// Counters worth keeping beside the figure (kicks and interrupts per request), read
    /// after the last sample.
    fn diagnostics(&self) -> Vec<(&'static str, f64)> {
        Vec::new()
    }

    /// The backend process and the requests submitted so far, for the CPU cost per request
    /// (read before and after every measured sample). `None` for subjects without a
    /// connection (host baselines, start time, memory).
    fn probe(&self) -> Option<Probe> {
        None
    }
}

/// Whether a subject is a backend or the host baseline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Backend,
    Baseline,
}

/// A subject before preparation: its name and how to prepare it.
pub struct Subject<'a> {
    pub name: String,
    pub kind: Kind,
    pub prepare: Box<dyn FnOnce() -> Result<Box<dyn Measure + 'a>> + 'a>,
}

impl<'a> Subject<'a> {
    pub fn new(
        name: impl Into<String>,
        kind: Kind,
        prepare: impl FnOnce() -> Result<Box<dyn Measure + 'a>> + 'a,
    ) -> Self {
        Subject {
            name: name.into(),
            kind,
            prepare: Box::new(prepare),
        }
    }

    /// A subject that is known up front not to apply.
    pub fn skipped(name: impl Into<String>, kind: Kind, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        Subject::new(name, kind, move || Err(BenchError::Skip(reason)))
    }
}

/// Median and range of a subject's samples.
#[derive(Clone, Debug, PartialEq)]
pub struct Stats {
    pub samples: Vec<f64>,
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Stats {
    /// `None` for no samples.
    pub fn of(samples: Vec<f64>) -> Option<Stats> {
        if samples.is_empty() {
            return None;
        }
        let mut sorted = samples.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        Some(Stats {
            median,
            min: sorted[0],
            max: sorted[n - 1],
            samples,
        })
    }
}

/// What became of one subject.
#[derive(Clone, Debug)]
pub enum Outcome {
    Measured(Stats),
    Skipped(String),
    Failed(String),
}

/// One subject's result.
#[derive(Clone, Debug)]
pub struct SubjectResult {
    pub name: String,
    pub kind: Kind,
    pub outcome: Outcome,
    pub diagnostics: Vec<(&'static str, f64)>,
    /// CPU spent over the measured rounds, when the subject has a [`Measure::probe`].
    pub cost: Option<Cost>,
}

/// A figure with every subject's result.
#[derive(Clone, Debug)]
pub struct FigureResult {
    pub spec: FigureSpec,
    pub subjects: Vec<SubjectResult>,
}

impl FigureResult {
    /// The median of subject `name`, if it was measured.
    pub fn median(&self, name: &str) -> Option<f64> {
        self.subjects
            .iter()
            .find(|s| s.name == name)
            .and_then(|s| match &s.outcome {
                Outcome::Measured(st) => Some(st.median),
                _ => None,
            })
    }

    /// The median of the host baseline, if measured.
    pub fn baseline_median(&self) -> Option<f64> {
        self.subjects
            .iter()
            .find(|s| s.kind == Kind::Baseline)
            .and_then(|s| match &s.outcome {
                Outcome::Measured(st) => Some(st.median),
                _ => None,
            })
    }
}

/// Runs figures: warm-up, then alternating rounds.
pub struct Runner {
    pub warmup: usize,
    pub rounds: usize,
    pub progress: Progress,
}

impl Runner {
    /// Progress steps one figure with `subjects` subjects takes.
    pub fn steps(&self, subjects: usize) -> usize {
        subjects * (self.warmup + self.rounds)
    }

    /// Prepares every subject, warms each up, then samples them in turns.
    pub fn run(&mut self, spec: FigureSpec, subjects: Vec<Subject<'_>>) -> FigureResult {
        let per_subject = self.warmup + self.rounds;
        let mut live: Vec<Live<'_>> = Vec::with_capacity(subjects.len());
        for s in subjects {
            self.progress
                .show(&format!("{} · {} · starting", spec.id, s.name));
            let (measure, outcome) = match (s.prepare)() {
                Ok(m) => (Some(m), None),
                Err(e) => {
                    self.progress.advance(per_subject);
                    (None, Some(outcome_of(e, None)))
                }
            };
            live.push(Live {
                name: s.name,
                kind: s.kind,
                measure,
                samples: Vec::new(),
                outcome,
                cost: None,
            });
        }
        for round in 0..per_subject {
            for l in live.iter_mut() {
                let Some(m) = l.measure.as_mut() else {
                    continue;
                };
                let phase = if round < self.warmup {
                    "warm-up".to_string()
                } else {
                    format!("round {}/{}", round + 1 - self.warmup, self.rounds)
                };
                self.progress
                    .show(&format!("{} · {} · {phase}", spec.id, l.name));
                let measured = round >= self.warmup;
                let before = m.probe().filter(|_| measured).map(|p| Reading::take(&p));
                let result = m.sample(round);
                if let (Some(before), Some(p), Ok(_)) = (before, m.probe(), &result) {
                    l.cost
                        .get_or_insert_with(Cost::default)
                        .add(before, Reading::take(&p));
                }
                match result {
                    Ok(v) if measured => l.samples.push(v),
                    Ok(_) => {}
                    Err(e) => {
                        self.progress.advance(per_subject - round);
                        l.outcome = Some(outcome_of(e, Some(round)));
                        // Dropping the measure stops its backend now.
                        l.measure = None;
                        continue;
                    }
                }
                self.progress.advance(1);
            }
        }
        let subjects = live
            .into_iter()
            .map(|l| {
                let diagnostics = l
                    .measure
                    .as_ref()
                    .map(|m| m.diagnostics())
                    .unwrap_or_default();
                drop(l.measure);
                let outcome = l.outcome.unwrap_or_else(|| match Stats::of(l.samples) {
                    Some(st) => Outcome::Measured(st),
                    None => Outcome::Failed("no samples".into()),
                });
                SubjectResult {
                    name: l.name,
                    kind: l.kind,
                    outcome,
                    diagnostics,
                    cost: l.cost,
                }
            })
            .collect();
        FigureResult { spec, subjects }
    }
}

/// A subject while its figure runs.
struct Live<'a> {
    name: String,
    kind: Kind,
    measure: Option<Box<dyn Measure + 'a>>,
    samples: Vec<f64>,
    outcome: Option<Outcome>,
    cost: Option<Cost>,
}

fn outcome_of(e: BenchError, round: Option<usize>) -> Outcome {
    match (e, round) {
        (BenchError::Skip(reason), _) => Outcome::Skipped(reason),
        (e, Some(r)) => Outcome::Failed(format!("round {r}: {e}")),
        (e, None) => Outcome::Failed(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::figure::{Better, Unit};

    struct Count(f64);
    impl Measure for Count {
        fn sample(&mut self, round: usize) -> Result<f64> {
            if self.0 < 0.0 && round > 1 {
                return Err(BenchError::Check("broke".into()));
            }
            self.0 += 1.0;
            Ok(self.0)
        }
    }

    #[test]
    fn stats() {
        let s = Stats::of(vec![3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        assert_eq!(Stats::of(vec![4.0, 1.0, 2.0, 3.0]).unwrap().median, 2.5);
        assert!(Stats::of(vec![]).is_none());
    }

    #[test]
    fn alternates_and_discards_warmup() {
        let mut r = Runner {
            warmup: 1,
            rounds: 3,
            progress: Progress::new(8, false),
        };
        let spec = FigureSpec::new("t", 0, "test", Unit::OpsPerSec, Better::Higher);
        let res = r.run(
            spec,
            vec![
                Subject::new("a", Kind::Backend, || {
                    Ok(Box::new(Count(0.0)) as Box<dyn Measure>)
                }),
                Subject::skipped("b", Kind::Backend, "nope"),
                Subject::new("c", Kind::Backend, || {
                    Ok(Box::new(Count(-10.0)) as Box<dyn Measure>)
                }),
            ],
        );
        assert_eq!(res.median("a"), Some(3.0));
        assert!(matches!(&res.subjects[1].outcome, Outcome::Skipped(r) if r == "nope"));
        assert!(matches!(&res.subjects[2].outcome, Outcome::Failed(m) if m.contains("broke")));
    }
}
