//! `controller compare`: what changed between runs.
//!
//! Reads each run directory's `plan.yaml` and `summary.json` (whose
//! percentiles come from merged histograms, so nothing is averaged within a
//! run). With one run per side it shows the plan's line diff and, per stage
//! and op, throughput and latency deltas (absolute and %). With several
//! runs per side each metric is the mean of the side's runs, shown with the
//! side's min, max and stdev; a difference whose ranges overlap is called
//! `noise`, one whose ranges are apart `changed`. With one run per side
//! noise cannot be judged, and any difference is `differs`. Identical
//! values are `no change`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use chorus_common::metrics::{OpSummary, RunSummary};
use serde::Serialize;

use crate::EXIT_BAD_INPUT;
use crate::cli::CompareArgs;

/// Longest plan (in lines) diffed line by line; longer plans are only
/// reported as different (the diff is quadratic).
const MAX_DIFF_LINES: usize = 5_000;

/// Reads one metric from a summary row.
type Metric = fn(&OpSummary) -> f64;

/// The metrics compared for each stage and op.
const METRICS: [(&str, Metric); 8] = [
    ("ops/s", |o| o.ops_per_s),
    ("MiB/s", |o| o.mib_per_s),
    ("errors", |o| o.errors as f64),
    ("p50_us", |o| o.latency_us.p50),
    ("p90_us", |o| o.latency_us.p90),
    ("p99_us", |o| o.latency_us.p99),
    ("p99.9_us", |o| o.latency_us.p999),
    ("max_us", |o| o.latency_us.max),
];

/// One run as read from its directory.
struct RunData {
    dir: PathBuf,
    plan: String,
    summary: RunSummary,
}

fn load_run(dir: &Path) -> anyhow::Result<RunData> {
    let plan = std::fs::read_to_string(dir.join("plan.yaml"))
        .with_context(|| format!("{}: not a run directory (no plan.yaml)", dir.display()))?;
    let text = std::fs::read_to_string(dir.join("summary.json"))
        .with_context(|| format!("{}: no summary.json", dir.display()))?;
    let summary: RunSummary = serde_json::from_str(&text)
        .with_context(|| format!("{}: bad summary.json", dir.join("summary.json").display()))?;
    Ok(RunData {
        dir: dir.to_path_buf(),
        plan,
        summary,
    })
}

/// Spread of one side's values.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Spread {
    pub runs: usize,
    pub mean: f64,
    pub min: f64,
    pub max: f64,
    pub stdev: f64,
}

impl Spread {
    fn of(values: &[f64]) -> Spread {
        let n = values.len().max(1) as f64;
        let mean = values.iter().sum::<f64>() / n;
        let var = if values.len() > 1 {
            values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)
        } else {
            0.0
        };
        Spread {
            runs: values.len(),
            mean,
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            stdev: var.sqrt(),
        }
    }
}

/// One metric of one stage and op.
#[derive(Clone, Debug, Serialize)]
pub struct Delta {
    pub stage: String,
    pub op: String,
    pub metric: String,
    pub a: Spread,
    pub b: Spread,
    /// `b.mean - a.mean`.
    pub delta: f64,
    /// Relative to `a.mean`; `None` when that is 0.
    pub delta_pct: Option<f64>,
    /// `no change`, `noise`, `changed` or `differs`.
    pub verdict: String,
}

fn verdict(a: &Spread, b: &Spread) -> &'static str {
    if a.mean == b.mean && a.min == b.min && a.max == b.max {
        "no change"
    } else if a.runs > 1 && b.runs > 1 {
        if a.max < b.min || b.max < a.min {
            "changed"
        } else {
            "noise"
        }
    } else {
        "differs"
    }
}

/// The whole comparison, as `--json` prints it.
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    pub side_a: Vec<String>,
    pub side_b: Vec<String>,
    pub plans_identical: bool,
    /// Unified-style line diff of the first run's plan on each side.
    pub plan_diff: Vec<String>,
    /// Runs within a side whose plan differs from the side's first.
    pub warnings: Vec<String>,
    pub deltas: Vec<Delta>,
    /// Stage/op rows present on one side only.
    pub only_in_a: Vec<String>,
    pub only_in_b: Vec<String>,
    /// True when plans are identical and every metric is `no change`.
    pub no_change: bool,
}

/// A line diff (longest common subsequence): lines prefixed `-`, `+` or
/// ` `; unchanged stretches are left out except one line of context.
pub fn line_diff(a: &str, b: &str) -> Vec<String> {
    let a: Vec<&str> = a.lines().collect();
    let b: Vec<&str> = b.lines().collect();
    if a == b {
        return Vec::new();
    }
    if a.len() > MAX_DIFF_LINES || b.len() > MAX_DIFF_LINES {
        return vec![format!(
            "(plans differ; too long to diff: {} and {} lines)",
            a.len(),
            b.len()
        )];
    }
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![0u32; (n + 1) * (m + 1)];
    let at = |i: usize, j: usize| i * (m + 1) + j;
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[at(i, j)] = if a[i] == b[j] {
                lcs[at(i + 1, j + 1)] + 1
            } else {
                lcs[at(i + 1, j)].max(lcs[at(i, j + 1)])
            };
        }
    }
    let mut ops: Vec<(char, &str)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            ops.push((' ', a[i]));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[at(i + 1, j)] >= lcs[at(i, j + 1)]) {
            ops.push(('-', a[i]));
            i += 1;
        } else {
            ops.push(('+', b[j]));
            j += 1;
        }
    }
    let near_change = |k: usize| {
        ops[k.saturating_sub(1)..(k + 2).min(ops.len())]
            .iter()
            .any(|o| o.0 != ' ')
    };
    ops.iter()
        .enumerate()
        .filter(|(k, o)| o.0 != ' ' || near_change(*k))
        .map(|(_, (c, l))| format!("{c} {l}"))
        .collect()
}

/// Compares side `a` with side `b`. Long because it walks the plan, then
/// each stage and op in order, building the table rows as it goes.
fn compare(a: &[RunData], b: &[RunData]) -> Comparison {
    let mut warnings = Vec::new();
    for side in [a, b] {
        for r in &side[1..] {
            if r.plan != side[0].plan {
                warnings.push(format!(
                    "{} ran a different plan than {}",
                    r.dir.display(),
                    side[0].dir.display()
                ));
            }
        }
    }
    let plan_diff = line_diff(&a[0].plan, &b[0].plan);
    // Row keys in side A's order, then B's new ones.
    let keys = |side: &[RunData]| -> Vec<(String, String)> {
        let mut k = Vec::new();
        for r in side {
            for s in &r.summary.stages {
                for o in &s.ops {
                    let key = (s.name.clone(), o.op.clone());
                    if !k.contains(&key) {
                        k.push(key);
                    }
                }
            }
        }
        k
    };
    let (ka, kb) = (keys(a), keys(b));
    let find = |r: &RunData, stage: &str, op: &str| -> Option<OpSummary> {
        r.summary
            .stages
            .iter()
            .find(|s| s.name == stage)?
            .ops
            .iter()
            .find(|o| o.op == op)
            .cloned()
    };
    let mut deltas = Vec::new();
    for key in ka.iter().filter(|k| kb.contains(k)) {
        let rows = |side: &[RunData]| -> Vec<OpSummary> {
            side.iter()
                .filter_map(|r| find(r, &key.0, &key.1))
                .collect()
        };
        let (ra, rb) = (rows(a), rows(b));
        for (metric, get) in METRICS {
            let va: Vec<f64> = ra.iter().map(get).collect();
            let vb: Vec<f64> = rb.iter().map(get).collect();
            let (sa, sb) = (Spread::of(&va), Spread::of(&vb));
            let delta = sb.mean - sa.mean;
            deltas.push(Delta {
                stage: key.0.clone(),
                op: key.1.clone(),
                metric: metric.to_string(),
                delta_pct: (sa.mean != 0.0).then(|| delta / sa.mean * 100.0),
                verdict: verdict(&sa, &sb).to_string(),
                a: sa,
                b: sb,
                delta,
            });
        }
    }
    let label = |k: &(String, String)| format!("{} {}", k.0, k.1);
    let only_in_a: Vec<String> = ka.iter().filter(|k| !kb.contains(k)).map(label).collect();
    let only_in_b: Vec<String> = kb.iter().filter(|k| !ka.contains(k)).map(label).collect();
    let plans_identical = plan_diff.is_empty();
    let no_change = plans_identical
        && only_in_a.is_empty()
        && only_in_b.is_empty()
        && deltas.iter().all(|d| d.verdict == "no change");
    Comparison {
        side_a: a.iter().map(|r| r.dir.display().to_string()).collect(),
        side_b: b.iter().map(|r| r.dir.display().to_string()).collect(),
        plans_identical,
        plan_diff,
        warnings,
        deltas,
        only_in_a,
        only_in_b,
        no_change,
    }
}

fn fmt_spread(s: &Spread) -> String {
    if s.runs > 1 {
        format!(
            "{:.2} [{:.2}..{:.2} sd {:.2}]",
            s.mean, s.min, s.max, s.stdev
        )
    } else {
        format!("{:.2}", s.mean)
    }
}

/// The text form.
pub fn text(c: &Comparison) -> String {
    let mut out = format!("A: {}\nB: {}\n", c.side_a.join(" "), c.side_b.join(" "));
    for w in &c.warnings {
        out.push_str(&format!("warning: {w}\n"));
    }
    if c.plans_identical {
        out.push_str("\nPlans: identical\n");
    } else {
        out.push_str("\nPlans differ (- A, + B):\n");
        for l in &c.plan_diff {
            out.push_str(&format!("  {l}\n"));
        }
    }
    out.push('\n');
    let header = [
        "stage", "op", "metric", "A", "B", "delta", "delta%", "verdict",
    ];
    let mut rows: Vec<[String; 8]> = Vec::new();
    for d in &c.deltas {
        rows.push([
            d.stage.clone(),
            d.op.clone(),
            d.metric.clone(),
            fmt_spread(&d.a),
            fmt_spread(&d.b),
            format!("{:+.2}", d.delta),
            d.delta_pct.map_or("-".to_string(), |p| format!("{p:+.1}%")),
            d.verdict.clone(),
        ]);
    }
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: &[&str]| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            if i < 3 || i == 7 {
                s.push_str(&format!("{c:<w$}  "));
            } else {
                s.push_str(&format!("{c:>w$}  "));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    out.push_str(&line(&header));
    for r in &rows {
        out.push_str(&line(&r.each_ref().map(String::as_str)));
    }
    for k in &c.only_in_a {
        out.push_str(&format!("only in A: {k}\n"));
    }
    for k in &c.only_in_b {
        out.push_str(&format!("only in B: {k}\n"));
    }
    let count = |v: &str| c.deltas.iter().filter(|d| d.verdict == v).count();
    if c.no_change {
        out.push_str("\nResult: no change\n");
    } else {
        out.push_str(&format!(
            "\nResult: {} changed, {} differ (one run per side: noise unknown), {} within noise, {} no change{}\n",
            count("changed"),
            count("differs"),
            count("noise"),
            count("no change"),
            if c.plans_identical { "" } else { "; plans differ" }
        ));
    }
    out
}

/// `controller compare`: exit 0, 2 for bad arguments or unreadable runs.
pub fn compare_command(args: CompareArgs) -> ExitCode {
    let (a, b) = if args.side_b.is_empty() {
        if args.runs.len() != 2 {
            eprintln!(
                "error: give two runs (`compare A B`), or several per side separated by `--` (`compare A1 A2 -- B1 B2`)"
            );
            return ExitCode::from(EXIT_BAD_INPUT);
        }
        (vec![args.runs[0].clone()], vec![args.runs[1].clone()])
    } else {
        (args.runs.clone(), args.side_b.clone())
    };
    let load = |dirs: &[PathBuf]| {
        dirs.iter()
            .map(|d| load_run(d))
            .collect::<Result<Vec<_>, _>>()
    };
    let (ra, rb) = match (load(&a), load(&b)) {
        (Ok(ra), Ok(rb)) => (ra, rb),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let c = compare(&ra, &rb);
    if args.json {
        crate::analyze::print_stdout(
            &serde_json::to_string_pretty(&c).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}")),
        );
    } else {
        crate::analyze::print_stdout(&text(&c));
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_of_lines() {
        assert!(line_diff("a\nb\n", "a\nb\n").is_empty());
        let d = line_diff("a\nb\nc\nd\ne\n", "a\nb\nX\nd\ne\n");
        assert_eq!(d, ["  b", "- c", "+ X", "  d"]);
    }

    #[test]
    fn verdicts() {
        let s = |v: &[f64]| Spread::of(v);
        assert_eq!(verdict(&s(&[1.0]), &s(&[1.0])), "no change");
        assert_eq!(verdict(&s(&[1.0]), &s(&[2.0])), "differs");
        assert_eq!(verdict(&s(&[1.0, 3.0]), &s(&[2.0, 4.0])), "noise");
        assert_eq!(verdict(&s(&[1.0, 1.5]), &s(&[2.0, 2.5])), "changed");
        let sp = s(&[1.0, 3.0]);
        assert_eq!((sp.mean, sp.min, sp.max), (2.0, 1.0, 3.0));
        assert!((sp.stdev - 2f64.sqrt()).abs() < 1e-12);
    }
}
