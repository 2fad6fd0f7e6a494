//! `type: replay`: a recorded op-log re-issued on every agent at once, on
//! the trace's own schedule (divided by `speed`), and the answer a user
//! wants from it: the replay beside the trace, op kind by op kind.
//!
//! Steps: with `prepare` (the default) first `<stage>/prepare`, where each
//! agent makes the objects its share of the trace reads before writing
//! them; then `<stage>/replay`, the trace itself. Without `prepare`, the
//! stage runs whole. The agents read the trace from the copy the
//! controller shipped them (`run/trace.rs`); the controller reads its own
//! copy once more at the end for the comparison.

use std::collections::BTreeMap;
use std::path::Path;

use chorus_common::metrics::OpStats;
use chorus_common::op::OpKind;
use chorus_common::plan::{ReplaySpec, Stage, StepSpec};
use chorus_common::trace::TraceStats;
use chorus_common::workload::replay::replays;
use serde::{Deserialize, Serialize};

use super::{StageKind, Step, StepResult, Verdict};

/// One op kind, trace beside replay (`run.json` `verdicts[].replay`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ReplayRow {
    pub op: String,
    pub trace_ops: u64,
    pub replay_ops: u64,
    pub trace_errors: u64,
    pub replay_errors: u64,
    pub trace_bytes: u64,
    pub replay_bytes: u64,
    /// Latency percentiles, ms: the trace's durations, the replay's
    /// latencies (from each op's scheduled time).
    pub trace_p50_ms: f64,
    pub replay_p50_ms: f64,
    pub trace_p99_ms: f64,
    pub replay_p99_ms: f64,
}

/// What a replay did against its trace.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ReplayReport {
    pub trace: String,
    pub speed: f64,
    /// Ops in the trace, of every kind.
    pub trace_ops: u64,
    /// Ops the replay issued.
    pub replay_ops: u64,
    /// Ops of kinds Chorus has not, by name: in the trace, not replayed.
    pub unknown_ops: BTreeMap<String, u64>,
    /// Objects made by the prepare step.
    pub prepared: u64,
    /// The trace's span (first start to last end) and the replay step's,
    /// seconds.
    pub trace_span_s: f64,
    pub replay_span_s: f64,
    /// How late ops started against their schedule, ms: the highest of the
    /// agents' medians and 99th percentiles (so the cluster's are at most
    /// these), the latest op, and ops later than 1 ms.
    pub lag_p50_ms: f64,
    pub lag_p99_ms: f64,
    pub lag_max_ms: f64,
    pub late_ops: u64,
    pub rows: Vec<ReplayRow>,
}

/// The driver.
pub struct Replay {
    spec: ReplaySpec,
}

impl Replay {
    pub fn new(spec: ReplaySpec) -> Replay {
        Replay { spec }
    }
}

/// The name of a replay stage's steps.
fn step_name(stage: &Stage, what: &str) -> String {
    format!("{}/{what}", stage.name)
}

impl StageKind for Replay {
    fn next_step(&mut self, stage: &Stage, done: &[StepResult]) -> Option<Step> {
        match (self.spec.prepare, done.len()) {
            (false, 0) => Some(Step::Whole),
            (true, 0) => Some(Step::Sub(StepSpec {
                index: 1,
                name: step_name(stage, "prepare"),
                prepares: true,
                ..Default::default()
            })),
            (true, 1) => Some(Step::Sub(StepSpec {
                index: 2,
                name: step_name(stage, "replay"),
                ..Default::default()
            })),
            _ => None,
        }
    }

    fn verdict(&self, stage: &Stage, done: &[StepResult]) -> Option<Verdict> {
        let replay = done.last()?;
        let prepared = if self.spec.prepare && done.len() == 2 {
            done[0].metrics.total_ops()
        } else {
            0
        };
        let (text, report) = match TraceStats::scan(Path::new(&self.spec.trace)) {
            Ok(stats) => {
                let r = report(&self.spec, &stage.target, &stats, replay, prepared);
                (text(&stage.name, &r), Some(r))
            }
            Err(e) => (
                format!(
                    "stage `{}` replayed {} ops, but its trace could not be read again to \
                     compare: {e}",
                    stage.name,
                    replay.metrics.total_ops()
                ),
                None,
            ),
        };
        Some(Verdict {
            index: 0,
            stage: stage.name.clone(),
            text,
            replay: report,
            ..Verdict::default()
        })
    }
}

fn ms(stats: &OpStats, q: f64) -> f64 {
    if stats.latency.is_empty() {
        return 0.0;
    }
    stats.latency.value_at_quantile(q) as f64 / 1e6
}

/// The trace's figures beside the replay step's.
pub fn report(
    spec: &ReplaySpec,
    target: &str,
    stats: &TraceStats,
    replay: &StepResult,
    prepared: u64,
) -> ReplayReport {
    let empty = OpStats::new();
    // Every op of the trace is replayed, its warm-up's too.
    let mut traced = stats.metrics.clone();
    traced.merge(&stats.warmup);
    let mut kinds: Vec<OpKind> = traced.ops.keys().copied().collect();
    for k in replay.metrics.ops.keys() {
        if !kinds.contains(k) {
            kinds.push(*k);
        }
    }
    kinds.sort();
    let rows = kinds
        .into_iter()
        .map(|k| {
            let t = traced.ops.get(&k).unwrap_or(&empty);
            let r = replay.metrics.ops.get(&k).unwrap_or(&empty);
            ReplayRow {
                op: k.log_name().to_string(),
                trace_ops: t.count,
                replay_ops: r.count,
                trace_errors: t.errors,
                replay_errors: r.errors,
                trace_bytes: t.bytes,
                replay_bytes: r.bytes,
                trace_p50_ms: ms(t, 0.5),
                replay_p50_ms: ms(r, 0.5),
                trace_p99_ms: ms(t, 0.99),
                replay_p99_ms: ms(r, 0.99),
            }
        })
        .collect();
    let fold = |f: fn(&chorus_common::workload::ScheduleReport) -> f64| {
        replay.schedules.iter().map(f).fold(0.0, f64::max)
    };
    ReplayReport {
        trace: spec.trace.clone(),
        speed: spec.speed,
        trace_ops: stats.ops,
        replay_ops: replay.metrics.total_ops(),
        unknown_ops: not_replayed(stats, target),
        prepared,
        trace_span_s: stats.span_ns() as f64 / 1e9,
        replay_span_s: replay.summary.elapsed_s,
        // A histogram's percentile is its bucket's top: never above the
        // largest lag itself.
        lag_p50_ms: fold(|s| s.p50_lag_ms).min(fold(|s| s.max_lag_ms)),
        lag_p99_ms: fold(|s| s.p99_lag_ms).min(fold(|s| s.max_lag_ms)),
        lag_max_ms: fold(|s| s.max_lag_ms),
        late_ops: replay.schedules.iter().map(|s| s.late_ops).sum(),
        rows,
    }
}

/// Ops of the trace a replay does not issue, by name: kinds Chorus has
/// not, kinds whose keys or version ids were the traced server's, and
/// kinds the target's backend has not (`workload::replay::replays`).
fn not_replayed(stats: &TraceStats, target: &str) -> BTreeMap<String, u64> {
    let mut out = stats.unknown.clone();
    for (op, s) in &stats.metrics.ops {
        if !replays(*op, target) && !op.is_part() {
            *out.entry(op.log_name().to_string()).or_default() += s.count;
        }
    }
    out
}

/// The answer in words (one line; [`table`] has the figures).
pub fn text(stage: &str, r: &ReplayReport) -> String {
    let unknown: u64 = r.unknown_ops.values().sum();
    let mut t = format!(
        "stage `{stage}` replayed {} of the trace's {} ops at speed {} over {:.1} s (trace {:.1} s); \
         ops started late by p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms ({} later than 1 ms)",
        r.replay_ops,
        r.trace_ops,
        r.speed,
        r.replay_span_s,
        r.trace_span_s,
        r.lag_p50_ms,
        r.lag_p99_ms,
        r.lag_max_ms,
        r.late_ops
    );
    if r.prepared > 0 {
        t.push_str(&format!(
            "; objects the trace read before writing, made first: {}",
            r.prepared
        ));
    }
    if unknown > 0 {
        let names: Vec<String> = r
            .unknown_ops
            .iter()
            .map(|(n, c)| format!("{n} ×{c}"))
            .collect();
        t.push_str(&format!(
            "; {unknown} ops Chorus cannot replay here were not replayed ({})",
            names.join(", ")
        ));
    }
    t
}

/// The trace and the replay side by side, op kind by op kind: a line per
/// kind under a header, each indented two spaces.
pub fn table(r: &ReplayReport) -> String {
    let mut t = format!(
        "  {:<14} {:>10} {:>10} {:>12} {:>12} {:>9} {:>9} {:>9} {:>9} {:>7} {:>7}",
        "op",
        "trace ops",
        "replay ops",
        "trace MiB",
        "replay MiB",
        "t p50 ms",
        "r p50 ms",
        "t p99 ms",
        "r p99 ms",
        "t err",
        "r err"
    );
    for row in &r.rows {
        t.push_str(&format!(
            "\n  {:<14} {:>10} {:>10} {:>12.2} {:>12.2} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>7} {:>7}",
            row.op,
            row.trace_ops,
            row.replay_ops,
            row.trace_bytes as f64 / 1048576.0,
            row.replay_bytes as f64 / 1048576.0,
            row.trace_p50_ms,
            row.replay_p50_ms,
            row.trace_p99_ms,
            row.replay_p99_ms,
            row.trace_errors,
            row.replay_errors
        ));
    }
    t.push('\n');
    t
}

/// Reads every replay stage's trace once before anything runs: a trace
/// that is missing or damaged is bad input (named by plan file, stage, and
/// the trace's own file and line), not a failure in the middle of a run.
pub fn check_traces(plan: &chorus_common::plan::Plan, plan_file: &Path) -> Result<(), String> {
    for stage in &plan.stages {
        let Some(spec) = &stage.replay else {
            continue;
        };
        let stats = TraceStats::scan(Path::new(&spec.trace)).map_err(|e| {
            format!(
                "{}: stage `{}`: `replay.trace`: {e}",
                plan_file.display(),
                stage.name
            )
        })?;
        if stats.ops == 0 {
            return Err(format!(
                "{}: stage `{}`: `replay.trace` {} has no ops",
                plan_file.display(),
                stage.name,
                spec.trace
            ));
        }
    }
    Ok(())
}
