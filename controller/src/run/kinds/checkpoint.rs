//! `type: checkpoint`: every rank of every agent writes its shard of a
//! checkpoint at one controller instant (`<stage>/write`), then, with
//! `restore`, reads one back (`<stage>/restore`), verified when the stage
//! sets `verify`. The answer: time to checkpoint (first write's start to
//! last write's end over the cluster, clock-corrected), GiB/s, and how far
//! apart the ranks finished; the same for the restore.

use chorus_common::metrics::{OpStats, StageMetrics};
use chorus_common::op::OpKind;
use chorus_common::plan::{CheckpointSpec, Stage, StepSpec, format_size};
use serde::{Deserialize, Serialize};

use super::{StageKind, Step, StepResult, Verdict};

/// One phase (write or restore) over the cluster.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct PhaseReport {
    /// Shards moved, and those that failed.
    pub shards: u64,
    pub errors: u64,
    pub bytes: u64,
    /// First op start to last op end over all agents, controller clock.
    pub seconds: f64,
    pub gib_per_s: f64,
    /// One rank's shard time, s: fastest, median, slowest; and the spread
    /// (slowest − fastest).
    pub rank_min_s: f64,
    pub rank_p50_s: f64,
    pub rank_max_s: f64,
    pub spread_s: f64,
}

impl PhaseReport {
    fn of(op: OpKind, d: &StepResult) -> PhaseReport {
        let stats = op_stats(&d.metrics, op);
        let first = d.spans.iter().map(|s| s.0).min();
        let last = d.spans.iter().map(|s| s.1).max();
        let seconds = match (first, last) {
            (Some(f), Some(l)) if l > f => (l - f) as f64 / 1e9,
            _ => 0.0,
        };
        let q = |q: f64| {
            if stats.latency.is_empty() {
                0.0
            } else {
                stats.latency.value_at_quantile(q) as f64 / 1e9
            }
        };
        let (min, max) = if stats.latency.is_empty() {
            (0.0, 0.0)
        } else {
            (
                stats.latency.min() as f64 / 1e9,
                stats.latency.max() as f64 / 1e9,
            )
        };
        PhaseReport {
            shards: stats.count,
            errors: stats.errors,
            bytes: stats.bytes,
            seconds,
            gib_per_s: if seconds > 0.0 {
                stats.bytes as f64 / (1u64 << 30) as f64 / seconds
            } else {
                0.0
            },
            rank_min_s: min,
            rank_p50_s: q(0.5),
            rank_max_s: max,
            spread_s: max - min,
        }
    }
}

fn op_stats(m: &StageMetrics, op: OpKind) -> OpStats {
    m.ops.get(&op).cloned().unwrap_or_default()
}

/// A checkpoint stage's answer (`run.json` `verdicts[].checkpoint`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CheckpointReport {
    pub size: u64,
    pub ranks: u64,
    pub write: PhaseReport,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<PhaseReport>,
}

/// The driver.
pub struct Checkpoint {
    spec: CheckpointSpec,
}

impl Checkpoint {
    pub fn new(spec: CheckpointSpec) -> Checkpoint {
        Checkpoint { spec }
    }
}

impl StageKind for Checkpoint {
    fn next_step(&mut self, stage: &Stage, done: &[StepResult]) -> Option<Step> {
        let (what, restores) = match done.len() {
            0 => ("write", false),
            1 if self.spec.restore => ("restore", true),
            _ => return None,
        };
        Some(Step::Sub(StepSpec {
            index: done.len() as u32 + 1,
            name: format!("{}/{what}", stage.name),
            restores,
            ..Default::default()
        }))
    }

    /// A shard not written or not read back fails the stage.
    fn judge(&self, stage: &Stage, done: &[StepResult]) -> anyhow::Result<()> {
        for (d, op) in done.iter().zip([OpKind::Put, OpKind::Get]) {
            let s = op_stats(&d.metrics, op);
            if s.errors > 0 {
                anyhow::bail!(
                    "stage `{}`: {} of {} checkpoint shards failed to {}",
                    stage.name,
                    s.errors,
                    s.count,
                    if op == OpKind::Put {
                        "write"
                    } else {
                        "read back"
                    }
                );
            }
        }
        Ok(())
    }

    fn verdict(&self, stage: &Stage, done: &[StepResult]) -> Option<Verdict> {
        let write = PhaseReport::of(OpKind::Put, done.first()?);
        let restore = done.get(1).map(|d| PhaseReport::of(OpKind::Get, d));
        let ranks = write.shards;
        let report = CheckpointReport {
            size: self.spec.size,
            ranks,
            write,
            restore,
        };
        Some(Verdict {
            index: 0,
            stage: stage.name.clone(),
            text: text(&stage.name, &report),
            checkpoint: Some(report),
            ..Verdict::default()
        })
    }
}

fn text(stage: &str, r: &CheckpointReport) -> String {
    let mut t = format!(
        "stage `{stage}` wrote a {} checkpoint from {} ranks in {:.3} s ({:.2} GiB/s, ranks \
         {:.3} to {:.3} s)",
        format_size(r.size),
        r.ranks,
        r.write.seconds,
        r.write.gib_per_s,
        r.write.rank_min_s,
        r.write.rank_max_s
    );
    if let Some(w) = &r.restore {
        t.push_str(&format!(
            " and restored it in {:.3} s ({:.2} GiB/s, ranks {:.3} to {:.3} s)",
            w.seconds, w.gib_per_s, w.rank_min_s, w.rank_max_s
        ));
    }
    t
}

/// Write and restore side by side.
pub fn table(r: &CheckpointReport) -> String {
    let mut t = format!(
        "  {:<8} {:>7} {:>12} {:>9} {:>8} {:>9} {:>9} {:>9} {:>9} {:>6}",
        "phase",
        "shards",
        "MiB",
        "time s",
        "GiB/s",
        "rank min",
        "rank p50",
        "rank max",
        "spread s",
        "errors"
    );
    let phases = [("write", Some(&r.write)), ("restore", r.restore.as_ref())];
    for (name, p) in phases {
        let Some(p) = p else { continue };
        t.push_str(&format!(
            "\n  {:<8} {:>7} {:>12.1} {:>9.3} {:>8.2} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>6}",
            name,
            p.shards,
            p.bytes as f64 / 1048576.0,
            p.seconds,
            p.gib_per_s,
            p.rank_min_s,
            p.rank_p50_s,
            p.rank_max_s,
            p.spread_s,
            p.errors
        ));
    }
    t.push('\n');
    t
}
