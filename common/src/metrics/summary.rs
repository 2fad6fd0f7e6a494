//! Stage and run summaries computed from merged histograms, rendered as
//! JSON, CSV and an aligned text table (like fio's and warp's summaries).
//!
//! Rates use the stage's wall-clock elapsed time: `ops_per_s = count /
//! elapsed_s` (all ops, failed ones too), `mib_per_s = bytes / 2^20 /
//! elapsed_s` (bytes of successful ops). Latencies are in microseconds and
//! cover successful ops only; all zero when there are none.

use super::{OpStats, StageMetrics};
use crate::op::OpKind;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// Name of the summary row that folds every op kind together.
pub const ALL_OPS_ROW: &str = "ALL";

const BYTES_PER_MIB: f64 = 1_048_576.0;
const NS_PER_US: f64 = 1_000.0;

/// Latency percentiles in microseconds.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq)]
pub struct LatencySummary {
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl LatencySummary {
    /// Percentile `q` (50, 90, 99 or 99.9) if this summary carries it.
    pub fn percentile(&self, q: f64) -> Option<f64> {
        [
            (50.0, self.p50),
            (90.0, self.p90),
            (99.0, self.p99),
            (99.9, self.p999),
        ]
        .into_iter()
        .find(|(p, _)| *p == q)
        .map(|(_, v)| v)
    }

    /// From a nanosecond histogram; zeros when it is empty.
    pub fn from_histogram(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let us = |ns: u64| ns as f64 / NS_PER_US;
        LatencySummary {
            mean: h.mean() / NS_PER_US,
            p50: us(h.value_at_quantile(0.50)),
            p90: us(h.value_at_quantile(0.90)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
        }
    }
}

/// One op kind (or `ALL`) of one stage.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct OpSummary {
    /// `GET`, `PUT`, `STAT`, `DELETE`, `LIST`, or `ALL`.
    pub op: String,
    pub count: u64,
    pub errors: u64,
    pub bytes: u64,
    pub ops_per_s: f64,
    pub mib_per_s: f64,
    pub latency_us: LatencySummary,
    /// A multi-object kind (`DELETE_BATCH`): objects its successful ops
    /// removed, and how many a second.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub objects: u64,
    #[serde(default, skip_serializing_if = "is_zero_f")]
    pub objects_per_s: f64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn is_zero_f(n: &f64) -> bool {
    *n == 0.0
}

impl OpSummary {
    pub fn from_stats(op: &str, stats: &OpStats, elapsed_s: f64) -> Self {
        // A zero, negative or non-finite elapsed time gives zero rates rather
        // than infinities, which JSON cannot hold.
        let rate = |x: f64| {
            if elapsed_s.is_finite() && elapsed_s > 0.0 {
                x / elapsed_s
            } else {
                0.0
            }
        };
        OpSummary {
            op: op.to_string(),
            count: stats.count,
            errors: stats.errors,
            bytes: stats.bytes,
            ops_per_s: rate(stats.count as f64),
            mib_per_s: rate(stats.bytes as f64 / BYTES_PER_MIB),
            latency_us: LatencySummary::from_histogram(&stats.latency),
            objects: stats.objects,
            objects_per_s: rate(stats.objects as f64),
        }
    }
}

/// The summary of one stage over all agents.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct StageSummary {
    pub name: String,
    /// The stage kind from the plan (`prepare`, `workload`, `cleanup`, …).
    pub kind: String,
    pub agents: u32,
    pub elapsed_s: f64,
    /// One row per op present, in [`OpKind::ALL`] order, then an `ALL` row.
    pub ops: Vec<OpSummary>,
    /// Multi-endpoint stages: requests, bytes and errors per endpoint,
    /// summed over agents.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<EndpointSummary>,
    /// Which agent covered which time of the stage, and whether its ops
    /// are in these numbers (a lost agent's are not).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub coverage: Vec<AgentCoverage>,
    /// What makes the stage's figures suspect, one sentence each (an
    /// agent that was client-bound: see `metrics::client`); printed as
    /// `warning: …` lines under the stage.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// One agent's part in a stage, in seconds from the stage's start
/// (controller clock).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct AgentCoverage {
    pub agent: String,
    /// `finished`, `failed` or `lost`.
    pub status: String,
    pub from_s: f64,
    /// When it ended; for a lost agent, when the loss was noticed.
    pub to_s: f64,
    /// Whether its ops are counted in the stage's numbers (and timeline).
    pub in_summary: bool,
}

/// What one endpoint of a multi-endpoint stage took.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct EndpointSummary {
    pub endpoint: String,
    pub requests: u64,
    pub bytes: u64,
    pub errors: u64,
}

impl StageSummary {
    pub fn from_metrics(
        name: &str,
        kind: &str,
        agents: u32,
        elapsed_s: f64,
        metrics: &StageMetrics,
    ) -> Self {
        let mut ops: Vec<OpSummary> = OpKind::ALL
            .iter()
            .filter_map(|op| {
                let stats = metrics.ops.get(op)?;
                Some(OpSummary::from_stats(op.log_name(), stats, elapsed_s))
            })
            .collect();
        ops.push(OpSummary::from_stats(
            ALL_OPS_ROW,
            &metrics.combined(),
            elapsed_s,
        ));
        StageSummary {
            name: name.to_string(),
            kind: kind.to_string(),
            agents,
            elapsed_s,
            ops,
            endpoints: Vec::new(),
            coverage: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// The `ALL` row, if present.
    pub fn all(&self) -> Option<&OpSummary> {
        self.ops.iter().find(|o| o.op == ALL_OPS_ROW)
    }
}

/// The summary of a whole run.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RunSummary {
    pub run_id: String,
    /// Name or path of the plan that was run.
    pub plan: String,
    pub stages: Vec<StageSummary>,
    pub total_ops: u64,
    pub total_errors: u64,
}

/// CSV header of [`RunSummary::to_csv`].
pub const CSV_HEADER: &str = "stage,op,count,errors,bytes,ops_per_s,mib_per_s,lat_mean_us,\
lat_p50_us,lat_p90_us,lat_p99_us,lat_p999_us,lat_max_us";

/// Quotes a CSV field when it holds a separator, quote or line break
/// (RFC 4180), so stage names cannot break the columns.
fn csv_field(s: &str, out: &mut String) {
    if s.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&s.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(s);
    }
}

/// Appends an aligned text table: two spaces of indent, the first column
/// left-aligned (names), the others right-aligned (numbers).
pub fn write_table(out: &mut String, header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut l = String::from(" ");
        for (i, (cell, w)) in cells.zip(&widths).enumerate() {
            if i == 0 {
                let _ = write!(l, " {cell:<w$}");
            } else {
                let _ = write!(l, "  {cell:>w$}");
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
}

impl RunSummary {
    /// Builds a summary, totalling ops and errors over the stages' `ALL` rows.
    pub fn new(run_id: &str, plan: &str, stages: Vec<StageSummary>) -> Self {
        let (total_ops, total_errors) = stages
            .iter()
            .filter_map(StageSummary::all)
            .fold((0u64, 0u64), |(o, e), row| {
                (o.saturating_add(row.count), e.saturating_add(row.errors))
            });
        RunSummary {
            run_id: run_id.to_string(),
            plan: plan.to_string(),
            stages,
            total_ops,
            total_errors,
        }
    }

    /// Pretty-printed JSON.
    pub fn to_json(&self) -> String {
        // Serializing plain structs of strings and numbers cannot fail;
        // non-finite floats become `null` rather than an error.
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    /// One CSV row per stage × op, after [`CSV_HEADER`].
    pub fn to_csv(&self) -> String {
        let mut out = String::new();
        out.push_str(CSV_HEADER);
        out.push('\n');
        for stage in &self.stages {
            for row in &stage.ops {
                let l = &row.latency_us;
                csv_field(&stage.name, &mut out);
                out.push(',');
                csv_field(&row.op, &mut out);
                let _ = writeln!(
                    out,
                    ",{},{},{},{:.3},{:.3},{:.3},{:.3},{:.3},{:.3},{:.3},{:.3}",
                    row.count,
                    row.errors,
                    row.bytes,
                    row.ops_per_s,
                    row.mib_per_s,
                    l.mean,
                    l.p50,
                    l.p90,
                    l.p99,
                    l.p999,
                    l.max
                );
            }
        }
        out
    }

    /// A human table per stage, columns aligned.
    pub fn to_text(&self) -> String {
        const COLUMNS: [&str; 12] = [
            "op", "count", "errors", "bytes", "ops/s", "MiB/s", "mean_us", "p50_us", "p90_us",
            "p99_us", "p99.9_us", "max_us",
        ];
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Run {}  plan {}  ops {}  errors {}",
            self.run_id, self.plan, self.total_ops, self.total_errors
        );
        for stage in &self.stages {
            let _ = writeln!(
                out,
                "\nStage {} ({}): {} agent{}, {:.3} s",
                stage.name,
                stage.kind,
                stage.agents,
                if stage.agents == 1 { "" } else { "s" },
                stage.elapsed_s
            );
            let rows: Vec<Vec<String>> = stage
                .ops
                .iter()
                .map(|r| {
                    let l = &r.latency_us;
                    vec![
                        r.op.clone(),
                        r.count.to_string(),
                        r.errors.to_string(),
                        r.bytes.to_string(),
                        format!("{:.2}", r.ops_per_s),
                        format!("{:.2}", r.mib_per_s),
                        format!("{:.1}", l.mean),
                        format!("{:.1}", l.p50),
                        format!("{:.1}", l.p90),
                        format!("{:.1}", l.p99),
                        format!("{:.1}", l.p999),
                        format!("{:.1}", l.max),
                    ]
                })
                .collect();
            write_table(&mut out, &COLUMNS, &rows);
            for r in stage
                .ops
                .iter()
                .filter(|r| r.objects > 0 && r.op != ALL_OPS_ROW)
            {
                let _ = writeln!(
                    out,
                    "  {}: {} objects, {:.1} objects/s",
                    r.op, r.objects, r.objects_per_s
                );
            }
            for w in &stage.warnings {
                let _ = writeln!(out, "warning: {w}");
            }
            // Coverage is news only when some agent did not finish.
            if stage.coverage.iter().any(|c| c.status != "finished") {
                for c in &stage.coverage {
                    let counted = if c.in_summary {
                        "ops counted"
                    } else {
                        "ops NOT counted (not in summary or timeline)"
                    };
                    let _ = writeln!(
                        out,
                        "  agent {}: {} ({:.1} s to {:.1} s), {counted}",
                        c.agent, c.status, c.from_s, c.to_s
                    );
                }
            }
            if !stage.endpoints.is_empty() {
                let width = stage
                    .endpoints
                    .iter()
                    .map(|e| e.endpoint.len())
                    .max()
                    .unwrap_or(8)
                    .max(8);
                let total: u64 = stage
                    .endpoints
                    .iter()
                    .map(|e| e.requests)
                    .sum::<u64>()
                    .max(1);
                let _ = writeln!(
                    out,
                    "  {:<width$}  {:>10}  {:>6}  {:>14}  {:>8}",
                    "endpoint", "requests", "share", "bytes", "errors"
                );
                for e in &stage.endpoints {
                    let share = 100.0 * e.requests as f64 / total as f64;
                    let _ = writeln!(
                        out,
                        "  {:<width$}  {:>10}  {:>5.1}%  {:>14}  {:>8}",
                        e.endpoint, e.requests, share, e.bytes, e.errors
                    );
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_run() -> RunSummary {
        let mut m = StageMetrics::new();
        for i in 0..1000u64 {
            m.record(OpKind::Get, 1_000 + i * 1_000, 1 << 20, true);
        }
        for i in 0..100u64 {
            m.record(OpKind::Put, 50_000 + i, 4096, !i.is_multiple_of(10));
        }
        let load = StageSummary::from_metrics("load", "workload", 2, 10.0, &m);
        let empty =
            StageSummary::from_metrics("clean, up \"x\"", "cleanup", 1, 0.0, &StageMetrics::new());
        RunSummary::new("run-1", "plan.yaml", vec![load, empty])
    }

    #[test]
    fn stage_rows_and_rates() {
        let run = sample_run();
        let load = &run.stages[0];
        let names: Vec<&str> = load.ops.iter().map(|o| o.op.as_str()).collect();
        assert_eq!(names, ["GET", "PUT", "ALL"]);
        let get = &load.ops[0];
        assert_eq!(get.count, 1000);
        assert!((get.ops_per_s - 100.0).abs() < 1e-9);
        assert!((get.mib_per_s - 100.0).abs() < 1e-9);
        // p50 of 1..=1000 µs is ~500 µs within HDR precision.
        assert!(
            (get.latency_us.p50 - 500.0).abs() < 1.0,
            "{:?}",
            get.latency_us
        );
        assert!((get.latency_us.max - 1000.0).abs() < 1.0);
        let put = &load.ops[1];
        assert_eq!((put.count, put.errors, put.bytes), (100, 10, 90 * 4096));
        let all = load.all().unwrap();
        assert_eq!((all.count, all.errors), (1100, 10));
        assert_eq!((run.total_ops, run.total_errors), (1100, 10));
        // Empty stage: just the ALL row, all zeros, no NaN or infinity.
        let empty = &run.stages[1];
        assert_eq!(empty.ops.len(), 1);
        assert_eq!(empty.ops[0].ops_per_s, 0.0);
        assert_eq!(empty.ops[0].latency_us, LatencySummary::default());
    }

    #[test]
    fn json_round_trip() {
        let run = sample_run();
        let back: RunSummary = serde_json::from_str(&run.to_json()).unwrap();
        assert_eq!(back, run);
        assert!(run.to_json().contains("\n  \"run_id\""));
    }

    /// A minimal RFC 4180 reader for the test.
    fn parse_csv_line(line: &str) -> Vec<String> {
        let mut fields = vec![String::new()];
        let mut quoted = false;
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            match (c, quoted) {
                ('"', true) if chars.peek() == Some(&'"') => {
                    chars.next();
                    fields.last_mut().unwrap().push('"');
                }
                ('"', _) => quoted = !quoted,
                (',', false) => fields.push(String::new()),
                (c, _) => fields.last_mut().unwrap().push(c),
            }
        }
        fields
    }

    #[test]
    fn csv_parses_back() {
        let run = sample_run();
        let csv = run.to_csv();
        let mut lines = csv.lines();
        assert_eq!(lines.next(), Some(CSV_HEADER));
        let rows: Vec<Vec<String>> = lines.map(parse_csv_line).collect();
        assert_eq!(rows.len(), 4);
        for row in &rows {
            assert_eq!(row.len(), 13, "{row:?}");
        }
        let mut i = 0;
        for stage in &run.stages {
            for op in &stage.ops {
                let r = &rows[i];
                assert_eq!(r[0], stage.name);
                assert_eq!(r[1], op.op);
                assert_eq!(r[2].parse::<u64>().unwrap(), op.count);
                assert_eq!(r[3].parse::<u64>().unwrap(), op.errors);
                assert_eq!(r[4].parse::<u64>().unwrap(), op.bytes);
                assert!((r[5].parse::<f64>().unwrap() - op.ops_per_s).abs() < 1e-3);
                assert!((r[10].parse::<f64>().unwrap() - op.latency_us.p99).abs() < 1e-3);
                assert!((r[12].parse::<f64>().unwrap() - op.latency_us.max).abs() < 1e-3);
                i += 1;
            }
        }
    }

    #[test]
    fn warnings_follow_their_stage_table_and_survive_json() {
        let mut run = sample_run();
        run.stages[0].warnings = vec!["agent a1 was client-bound in stage `load`: CPU".into()];
        let text = run.to_text();
        let lines: Vec<&str> = text.lines().collect();
        let at = lines
            .iter()
            .position(|l| *l == "warning: agent a1 was client-bound in stage `load`: CPU")
            .expect(&text);
        assert!(lines[at - 1].trim_start().starts_with("ALL"), "{text}");
        let back: RunSummary = serde_json::from_str(&run.to_json()).unwrap();
        assert_eq!(back.stages[0].warnings, run.stages[0].warnings);
        assert!(!sample_run().to_json().contains("warnings"));
    }

    #[test]
    fn text_is_aligned() {
        let run = sample_run();
        let text = run.to_text();
        assert!(text.starts_with("Run run-1  plan plan.yaml  ops 1100  errors 10\n"));
        assert!(text.contains("Stage load (workload): 2 agents, 10.000 s"));
        let table: Vec<&str> = text
            .lines()
            .skip_while(|l| !l.starts_with("Stage load"))
            .skip(1)
            .take_while(|l| !l.is_empty())
            .collect();
        assert_eq!(table.len(), 4); // header, GET, PUT, ALL
        assert!(table[0].trim_start().starts_with("op"));
        assert!(table[1].trim_start().starts_with("GET"));
        // Right-aligned columns: every line has the same length.
        assert!(
            table.iter().all(|l| l.len() == table[0].len()),
            "{table:#?}"
        );
        // Each header ends where its column's values end.
        let end_of = |l: &str, word: &str| l.find(word).map(|p| p + word.len());
        assert_eq!(end_of(table[0], "count"), end_of(table[1], "1000"));
    }
}
