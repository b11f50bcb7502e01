//! The two outputs of a run: the table on stdout and the JSON file.

use crate::cost::format_ms_per_k;
use crate::figure::{Better, Goal};
use crate::json::Json;
use crate::runner::{FigureResult, Kind, Outcome};

/// Facts about the run printed above the table and stored in the JSON.
#[derive(Clone, Debug)]
pub struct RunInfo {
    pub mode: &'static str,
    pub date_utc: String,
    pub command: String,
    pub cores: usize,
    pub kernel: String,
    pub load_before: String,
    pub warmup: usize,
    pub rounds: usize,
    pub depth: usize,
    pub backends: Vec<(String, String)>,
    pub subject: String,
    pub reference: String,
    pub elapsed_s: f64,
}

/// Everything a run produced.
pub struct Report {
    pub info: RunInfo,
    pub figures: Vec<FigureResult>,
}

/// Whether a target was reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Met,
    Missed,
    /// A number it needs is missing (a subject skipped).
    Unknown,
}

impl Verdict {
    fn label(self) -> &'static str {
        match self {
            Verdict::Met => "met",
            Verdict::Missed => "MISSED",
            Verdict::Unknown => "n/a",
        }
    }
}

impl Report {
    fn reference_of<'a>(&'a self, f: &'a FigureResult) -> &'a str {
        f.spec.reference.as_deref().unwrap_or(&self.info.reference)
    }

    fn subject_of<'a>(&'a self, f: &'a FigureResult) -> &'a str {
        f.spec.subject.as_deref().unwrap_or(&self.info.subject)
    }

    /// subject / reference and subject / baseline medians.
    pub fn ratios(&self, f: &FigureResult) -> (Option<f64>, Option<f64>) {
        let s = f.median(self.subject_of(f));
        let r = f.median(self.reference_of(f));
        let b = f.baseline_median();
        (div(s, r), div(s, b))
    }

    /// Checks the figure's target against its medians.
    pub fn verdict(&self, f: &FigureResult) -> Option<Verdict> {
        let target = f.spec.target.as_ref()?;
        let Some(v) = f.median(self.subject_of(f)) else {
            return Some(Verdict::Unknown);
        };
        let mut all = Verdict::Met;
        for g in &target.goals {
            if let Goal::CpuPerRequest(k) = g {
                let cpu = |name: &str| {
                    f.subjects
                        .iter()
                        .find(|s| s.name == name)
                        .and_then(|s| s.cost)
                        .and_then(|c| c.backend_per_k())
                };
                match (cpu(self.subject_of(f)), cpu(self.reference_of(f))) {
                    (Some(s), Some(r)) if s <= k * r => {}
                    (Some(_), Some(_)) => return Some(Verdict::Missed),
                    _ => all = Verdict::Unknown,
                }
                continue;
            }
            let bound = match g {
                Goal::Reference(k) => f.median(self.reference_of(f)).map(|r| k * r),
                Goal::Baseline(k) => f.baseline_median().map(|b| k * b),
                Goal::Absolute(x) => Some(*x),
                Goal::Figure(id, k) => self
                    .figures
                    .iter()
                    .find(|o| o.spec.id == *id)
                    .and_then(|o| o.median(&self.info.subject))
                    .map(|m| k * m),
                Goal::Named(name, k) => f.median(name).map(|m| k * m),
                Goal::CpuPerRequest(_) => None,
            };
            let ok = match (bound, f.spec.better) {
                (None, _) => {
                    all = Verdict::Unknown;
                    continue;
                }
                (Some(b), Better::Higher) => v >= b,
                (Some(b), Better::Lower) => v <= b,
            };
            if !ok {
                return Some(Verdict::Missed);
            }
        }
        Some(all)
    }

    /// Backend columns in order of first appearance.
    fn backend_columns(&self) -> Vec<String> {
        let mut cols: Vec<String> = Vec::new();
        for f in &self.figures {
            for s in f.subjects.iter().filter(|s| s.kind == Kind::Backend) {
                if !cols.contains(&s.name) {
                    cols.push(s.name.clone());
                }
            }
        }
        cols
    }

    /// The table, with footnotes for skipped and failed subjects.
    pub fn table(&self) -> String {
        let cols = self.backend_columns();
        let i = &self.info;
        let mut header: Vec<String> = vec!["#".into(), "figure".into(), "unit".into()];
        header.extend(cols.iter().cloned());
        header.push("host baseline".into());
        header.push(format!("{}/{}", i.subject, i.reference));
        header.push(format!("{}/host", i.subject));
        header.push("target".into());

        let mut rows: Vec<Vec<String>> = Vec::new();
        let mut notes: Vec<String> = Vec::new();
        let footnote = |notes: &mut Vec<String>, text: String| -> String {
            let n = match notes.iter().position(|t| *t == text) {
                Some(p) => p + 1,
                None => {
                    notes.push(text);
                    notes.len()
                }
            };
            format!("[{n}]")
        };
        for f in &self.figures {
            let mut row = vec![
                f.spec.item.to_string(),
                f.spec.title.clone(),
                f.spec.unit.label().into(),
            ];
            let cell = |o: &Outcome, notes: &mut Vec<String>, who: &str| -> String {
                match o {
                    Outcome::Measured(st) => format!(
                        "{} ({}–{})",
                        f.spec.unit.format(st.median),
                        f.spec.unit.format(st.min),
                        f.spec.unit.format(st.max)
                    ),
                    Outcome::Skipped(r) => {
                        format!("skipped {}", footnote(notes, format!("{who}: {r}")))
                    }
                    Outcome::Failed(r) => {
                        format!("FAILED {}", footnote(notes, format!("{who}: {r}")))
                    }
                }
            };
            for c in &cols {
                row.push(
                    match f
                        .subjects
                        .iter()
                        .find(|s| s.kind == Kind::Backend && &s.name == c)
                    {
                        Some(s) => cell(&s.outcome, &mut notes, c),
                        None => "-".into(),
                    },
                );
            }
            row.push(match f.subjects.iter().find(|s| s.kind == Kind::Baseline) {
                Some(s) => {
                    let label = f.spec.baseline.unwrap_or("host");
                    let c = cell(&s.outcome, &mut notes, label);
                    if label == "raw host" {
                        c
                    } else {
                        format!("{c} {label}")
                    }
                }
                None => "-".into(),
            });
            let (r_ref, r_base) = self.ratios(f);
            let (sub_name, ref_name) = (self.subject_of(f), self.reference_of(f));
            row.push(match r_ref {
                Some(r) if ref_name != i.reference || sub_name != i.subject => {
                    format!("{r:.2}× ({sub_name}/{ref_name})")
                }
                Some(r) => format!("{r:.2}×"),
                None => "-".into(),
            });
            row.push(r_base.map_or("-".into(), |r| format!("{r:.2}×")));
            row.push(match (&f.spec.target, self.verdict(f)) {
                (Some(t), Some(v)) => format!("{}: {}", t.text, v.label()),
                _ => "-".into(),
            });
            rows.push(row);
        }

        let ncol = header.len();
        let mut width = vec![0; ncol];
        for r in std::iter::once(&header).chain(rows.iter()) {
            for (w, c) in width.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        let line = |r: &[String]| -> String {
            let mut s = String::new();
            for (k, (c, w)) in r.iter().zip(&width).enumerate() {
                if k + 1 == ncol {
                    s.push_str(c);
                } else {
                    s.push_str(c);
                    s.push_str(&" ".repeat(w - c.chars().count() + 2));
                }
            }
            s.trim_end().to_string()
        };

        let mut out = String::new();
        out.push_str(&format!(
            "fsjail-bench, {} run, {} UTC: {} cores, Linux {}, load before the run {}\n",
            i.mode, i.date_utc, i.cores, i.kernel, i.load_before
        ));
        out.push_str(&format!(
            "each cell: median (min–max) of {} round{} after {} warm-up, subjects alternating; queue depth {}; took {:.0} s\n",
            i.rounds,
            if i.rounds == 1 { "" } else { "s" },
            i.warmup,
            i.depth,
            i.elapsed_s
        ));
        for (name, template) in &i.backends {
            out.push_str(&format!("  {name}: {template}\n"));
        }
        out.push('\n');
        out.push_str(&line(&header));
        out.push('\n');
        for r in &rows {
            out.push_str(&line(r));
            out.push('\n');
        }
        out.push_str(&self.cost_table(&cols));
        if !notes.is_empty() {
            out.push('\n');
            for (k, n) in notes.iter().enumerate() {
                out.push_str(&format!("[{}] {}\n", k + 1, n.replace('\n', "\n    ")));
            }
        }
        out
    }

    /// CPU milliseconds per 1,000 requests, backend (every process and thread of it) and
    /// driver, for each figure that has a connection; empty when no figure has one.
    fn cost_table(&self, cols: &[String]) -> String {
        let mut rows = Vec::new();
        for f in &self.figures {
            let cells: Vec<String> = cols
                .iter()
                .map(|c| {
                    f.subjects
                        .iter()
                        .find(|s| s.kind == Kind::Backend && &s.name == c)
                        .and_then(|s| s.cost)
                        .and_then(|k| Some((k.backend_per_k()?, k.driver_per_k()?)))
                        .map_or("-".into(), |(b, d)| {
                            format!("{} / {}", format_ms_per_k(b), format_ms_per_k(d))
                        })
                })
                .collect();
            if cells.iter().any(|c| c != "-") {
                rows.push((f.spec.item, f.spec.id, cells));
            }
        }
        if rows.is_empty() {
            return String::new();
        }
        let mut out = String::from(
            "\nCPU ms per 1,000 requests, backend (all its processes and threads) / driver, over the measured rounds:\n",
        );
        let idw = rows.iter().map(|r| r.1.len()).max().unwrap_or(0).max(6);
        let mut head = format!("{:<3}{:<idw$}", "#", "figure");
        let widths: Vec<usize> = cols
            .iter()
            .enumerate()
            .map(|(k, c)| {
                rows.iter()
                    .map(|r| r.2[k].chars().count())
                    .chain([c.chars().count()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for (c, w) in cols.iter().zip(&widths) {
            head.push_str(&format!("  {c:<w$}"));
        }
        out.push_str(head.trim_end());
        out.push('\n');
        for (item, id, cells) in rows {
            let mut line = format!("{item:<3}{id:<idw$}");
            for (c, w) in cells.iter().zip(&widths) {
                line.push_str(&format!("  {c:<w$}"));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    /// The figures as JSON.
    pub fn json(&self) -> Json {
        let i = &self.info;
        let figures = self
            .figures
            .iter()
            .map(|f| {
                let subjects = f
                    .subjects
                    .iter()
                    .map(|s| {
                        let kind = match s.kind {
                            Kind::Backend => "backend",
                            Kind::Baseline => "baseline",
                        };
                        let mut fields = vec![("kind", Json::str(kind))];
                        match &s.outcome {
                            Outcome::Measured(st) => {
                                fields.push(("median", Json::num(Some(st.median))));
                                fields.push(("min", Json::num(Some(st.min))));
                                fields.push(("max", Json::num(Some(st.max))));
                                fields.push((
                                    "samples",
                                    Json::Arr(
                                        st.samples.iter().map(|v| Json::num(Some(*v))).collect(),
                                    ),
                                ));
                            }
                            Outcome::Skipped(r) => fields.push(("skipped", Json::str(r.clone()))),
                            Outcome::Failed(r) => fields.push(("failed", Json::str(r.clone()))),
                        }
                        if let Some(k) = s.cost {
                            fields.push((
                                "cpu_s_per_1k_requests",
                                Json::obj([
                                    ("backend", Json::num(k.backend_per_k())),
                                    ("driver", Json::num(k.driver_per_k())),
                                    ("requests", Json::Num(k.requests as f64)),
                                    ("backend_cpu_s", Json::num(Some(k.backend_s))),
                                    ("driver_cpu_s", Json::num(Some(k.driver_s))),
                                ]),
                            ));
                        }
                        if !s.diagnostics.is_empty() {
                            let d = s.diagnostics.iter().map(|(k, v)| (*k, Json::num(Some(*v))));
                            fields.push(("diagnostics", Json::obj(d)));
                        }
                        (s.name.clone(), Json::obj(fields))
                    })
                    .collect::<Vec<_>>();
                let (r_ref, r_base) = self.ratios(f);
                let (sub_name, ref_name) = (self.subject_of(f), self.reference_of(f));
                Json::obj([
                    ("id", Json::str(f.spec.id)),
                    ("item", Json::Num(f.spec.item as f64)),
                    ("title", Json::str(f.spec.title.clone())),
                    ("unit", Json::str(f.spec.unit.label())),
                    (
                        "better",
                        Json::str(match f.spec.better {
                            Better::Higher => "higher",
                            Better::Lower => "lower",
                        }),
                    ),
                    ("baseline", f.spec.baseline.map_or(Json::Null, Json::str)),
                    ("subjects", Json::obj(subjects)),
                    (
                        "ratios",
                        Json::obj([
                            (format!("{sub_name}/{ref_name}"), Json::num(r_ref)),
                            (format!("{sub_name}/baseline"), Json::num(r_base)),
                        ]),
                    ),
                    (
                        "target",
                        match (&f.spec.target, self.verdict(f)) {
                            (Some(t), Some(v)) => Json::obj([
                                ("text", Json::str(t.text.clone())),
                                ("verdict", Json::str(v.label().to_lowercase())),
                            ]),
                            _ => Json::Null,
                        },
                    ),
                ])
            })
            .collect();
        Json::obj([
            ("tool", Json::str("fsjail-bench")),
            ("schema", Json::Num(1.0)),
            ("mode", Json::str(i.mode)),
            ("date_utc", Json::str(i.date_utc.clone())),
            ("command", Json::str(i.command.clone())),
            ("cores", Json::Num(i.cores as f64)),
            ("kernel", Json::str(i.kernel.clone())),
            ("load_before", Json::str(i.load_before.clone())),
            ("warmup", Json::Num(i.warmup as f64)),
            ("rounds", Json::Num(i.rounds as f64)),
            ("depth", Json::Num(i.depth as f64)),
            ("elapsed_s", Json::num(Some(i.elapsed_s))),
            ("subject", Json::str(i.subject.clone())),
            ("reference", Json::str(i.reference.clone())),
            (
                "backends",
                Json::obj(
                    i.backends
                        .iter()
                        .map(|(n, t)| (n.clone(), Json::str(t.clone()))),
                ),
            ),
            ("figures", Json::Arr(figures)),
        ])
    }
}

fn div(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => Some(a / b),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::figure::{FigureSpec, Unit};
    use crate::runner::{Stats, SubjectResult};

    fn measured(name: &str, kind: Kind, v: f64) -> SubjectResult {
        SubjectResult {
            name: name.into(),
            kind,
            outcome: Outcome::Measured(Stats::of(vec![v]).unwrap()),
            diagnostics: vec![],
            cost: Some(crate::cost::Cost {
                backend_s: 0.5,
                driver_s: 0.25,
                requests: 1000,
            }),
        }
    }

    fn report(figures: Vec<FigureResult>) -> Report {
        Report {
            info: RunInfo {
                mode: "test",
                date_utc: "2000-01-01 00:00".into(),
                command: "x".into(),
                cores: 2,
                kernel: "6".into(),
                load_before: "0".into(),
                warmup: 1,
                rounds: 1,
                depth: 1,
                backends: vec![],
                subject: "a".into(),
                reference: "b".into(),
                elapsed_s: 1.0,
            },
            figures,
        }
    }

    #[test]
    fn ratios_and_verdicts() {
        let spec = FigureSpec::new("m", 1, "meta", Unit::OpsPerSec, Better::Higher)
            .baseline("raw host")
            .target("≥1.3× b", vec![Goal::Reference(1.3)]);
        let f = FigureResult {
            spec,
            subjects: vec![
                measured("a", Kind::Backend, 130.0),
                measured("b", Kind::Backend, 100.0),
                measured("raw", Kind::Baseline, 1000.0),
            ],
        };
        let lower = FigureResult {
            spec: FigureSpec::new("r", 8, "rss", Unit::KiB, Better::Lower)
                .target("≤ 4 MiB", vec![Goal::Absolute(4096.0)]),
            subjects: vec![measured("a", Kind::Backend, 5000.0)],
        };
        let r = report(vec![f, lower]);
        let (x, y) = r.ratios(&r.figures[0]);
        assert!((x.unwrap() - 1.3).abs() < 1e-9);
        assert!((y.unwrap() - 0.13).abs() < 1e-9);
        assert_eq!(r.verdict(&r.figures[0]), Some(Verdict::Met));
        assert_eq!(r.verdict(&r.figures[1]), Some(Verdict::Missed));
        let t = r.table();
        assert!(t.contains("130 (130–130)"), "{t}");
        assert!(t.contains("MISSED"), "{t}");
        assert!(r.json().to_pretty().contains("\"a/b\": 1.3"));
        assert!(t.contains("500 / 250"), "{t}");
        assert!(r.json().to_pretty().contains("cpu_s_per_1k_requests"));
    }

    #[test]
    fn formats() {
        assert_eq!(Unit::OpsPerSec.format(123456.0), "123k");
        assert_eq!(Unit::OpsPerSec.format(1234567.0), "1.23M");
        assert_eq!(Unit::OpsPerSec.format(12.345), "12.3");
        assert_eq!(Unit::GBps.format(1.234), "1.23");
    }
}
