//! `type: train`: an emulated training run, MLPerf Storage style, and its
//! answer: how busy the storage kept the accelerators.
//!
//! Each epoch is a step (`<stage>/epoch-N`) on every agent at once: the
//! agents' ranks read their shards of that epoch's shuffle and compute on
//! each batch (`common::workload::train`). From the ranks' figures this
//! kind makes, per epoch and overall: samples/s, MiB/s, epoch time (the
//! slowest rank's), data wait per rank, and accelerator utilization (AU:
//! compute time over wall time, summed over ranks), judged against the
//! stage's `au_target`.
//!
//! With `accelerators: {min, max}` the stage searches instead: each step
//! is one epoch at a number of accelerators per agent (`<stage>/accel-N`),
//! doubling from `min` while AU holds, then halving the gap, and the
//! answer is the most accelerators that kept AU at the target.

use chorus_common::plan::{Stage, StepSpec, TrainSpec};
use chorus_common::workload::train::RankReport;
use serde::{Deserialize, Serialize};

use super::{StageKind, Step, StepResult, Verdict};

/// One epoch (or one search step) over every rank of the cluster.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct EpochReport {
    /// The step's name (`train/epoch-2`).
    pub step: String,
    /// Accelerators per agent and in all.
    pub accelerators: u32,
    pub ranks: u32,
    /// The slowest rank's wall time, s.
    pub seconds: f64,
    pub samples: u64,
    pub bytes: u64,
    pub errors: u64,
    pub samples_per_s: f64,
    pub mib_per_s: f64,
    /// Compute time over wall time, summed over ranks (0 to 1), and the
    /// lowest rank's.
    pub au: f64,
    pub au_min: f64,
    /// Time a rank waited for data, s: mean and most over ranks.
    pub wait_mean_s: f64,
    pub wait_max_s: f64,
    /// How far the compute pauses ran past their time, as a share of the
    /// ranks' wall time (the agent's CPUs, not the storage).
    #[serde(default)]
    pub overrun: f64,
}

impl EpochReport {
    /// The figures of one step's ranks.
    pub fn of(step: &str, accelerators: u32, ranks: &[RankReport]) -> EpochReport {
        let sum = |f: fn(&RankReport) -> u64| ranks.iter().map(f).sum::<u64>();
        let seconds = ranks.iter().map(|r| r.wall_ns).max().unwrap_or(0) as f64 / 1e9;
        let (samples, bytes) = (sum(|r| r.samples), sum(|r| r.bytes));
        let wall = sum(|r| r.wall_ns);
        let per_s = |v: f64| if seconds > 0.0 { v / seconds } else { 0.0 };
        EpochReport {
            step: step.to_string(),
            accelerators,
            ranks: ranks.len() as u32,
            seconds,
            samples,
            bytes,
            errors: sum(|r| r.errors),
            samples_per_s: per_s(samples as f64),
            mib_per_s: per_s(bytes as f64 / 1048576.0),
            au: if wall > 0 {
                sum(|r| r.compute_ns) as f64 / wall as f64
            } else {
                0.0
            },
            au_min: ranks.iter().map(RankReport::au).fold(f64::NAN, f64::min),
            wait_mean_s: if ranks.is_empty() {
                0.0
            } else {
                sum(|r| r.wait_ns) as f64 / ranks.len() as f64 / 1e9
            },
            wait_max_s: ranks.iter().map(|r| r.wait_ns).max().unwrap_or(0) as f64 / 1e9,
            overrun: if wall > 0 {
                sum(|r| r.overrun_ns) as f64 / wall as f64
            } else {
                0.0
            },
        }
    }
}

/// A train stage's answer (`run.json` `verdicts[].train`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TrainReport {
    pub au_target: f64,
    /// Samples in the dataset: what every epoch should read.
    #[serde(default)]
    pub dataset_samples: u64,
    /// Every epoch (or search step), in order.
    pub epochs: Vec<EpochReport>,
    /// All epochs together (a search: its last step at the answer).
    pub overall: EpochReport,
    /// Whether AU met the target: overall, or (a search) at the answer.
    pub passed: bool,
    /// A search: the most accelerators per agent that kept AU at the
    /// target (0: not even `min`), and the whole cluster's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_accelerators: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_accelerators_cluster: Option<u32>,
}

/// The driver.
pub struct Train {
    spec: TrainSpec,
    /// Accelerators per agent of each step so far (a search's choices).
    tried: Vec<u32>,
}

impl Train {
    pub fn new(spec: TrainSpec) -> Train {
        Train {
            spec,
            tried: Vec::new(),
        }
    }

    /// The search's next accelerator count, from the steps so far: double
    /// from `min` while AU holds, then bisect between the most that held
    /// and the fewest that did not.
    fn next_search(&self, (min, max): (u32, u32), done: &[StepResult]) -> Option<u32> {
        let passed = |i: usize| {
            EpochReport::of("", 0, &done[i].ranks).au >= self.spec.au_target
                && done[i].ranks.iter().any(|r| r.steps > 0)
        };
        let (mut good, mut bad) = (None::<u32>, None::<u32>);
        for (i, &n) in self.tried.iter().enumerate().take(done.len()) {
            if passed(i) {
                good = good.max(Some(n));
            } else {
                bad = Some(bad.map_or(n, |b: u32| b.min(n)));
            }
        }
        let next = match (good, bad) {
            (None, None) => min,
            (None, Some(b)) if b <= min => return None,
            (None, Some(b)) => min.max(b / 2),
            (Some(g), None) if g >= max => return None,
            (Some(g), None) => (g * 2).min(max),
            (Some(g), Some(b)) if b <= g + 1 => return None,
            (Some(g), Some(b)) => g + (b - g) / 2,
        };
        (!self.tried.contains(&next)).then_some(next)
    }
}

impl StageKind for Train {
    fn next_step(&mut self, stage: &Stage, done: &[StepResult]) -> Option<Step> {
        let index = done.len() as u32 + 1;
        let accelerators = match self.spec.search {
            Some(range) => Some(self.next_search(range, done)?),
            None if index > self.spec.epochs => return None,
            None => None,
        };
        let name = match accelerators {
            Some(a) => format!("{}/accel-{a:03}", stage.name),
            None => format!("{}/epoch-{index}", stage.name),
        };
        self.tried
            .push(accelerators.unwrap_or(self.spec.accelerators));
        Some(Step::Sub(StepSpec {
            index,
            name,
            accelerators,
            ..Default::default()
        }))
    }

    fn verdict(&self, stage: &Stage, done: &[StepResult]) -> Option<Verdict> {
        if done.is_empty() {
            return None;
        }
        let epochs: Vec<EpochReport> = done
            .iter()
            .zip(&self.tried)
            .map(|(d, &a)| EpochReport::of(&step_name(d), a, &d.ranks))
            .collect();
        let target = self.spec.au_target;
        let dataset_samples = stage.training.dataset.as_ref().map_or(0, |d| d.samples);
        let report = match self.spec.search {
            None => {
                let all: Vec<RankReport> = done.iter().flat_map(|d| d.ranks.clone()).collect();
                let mut overall = EpochReport::of(&stage.name, self.spec.accelerators, &all);
                // Epochs run one after another: their times add up.
                overall.seconds = epochs.iter().map(|e| e.seconds).sum();
                let per_s = |v: f64| {
                    if overall.seconds > 0.0 {
                        v / overall.seconds
                    } else {
                        0.0
                    }
                };
                overall.samples_per_s = per_s(overall.samples as f64);
                overall.mib_per_s = per_s(overall.bytes as f64 / 1048576.0);
                TrainReport {
                    au_target: target,
                    dataset_samples,
                    passed: overall.au >= target,
                    overall,
                    epochs,
                    max_accelerators: None,
                    max_accelerators_cluster: None,
                }
            }
            Some(_) => {
                let best = epochs
                    .iter()
                    .filter(|e| e.au >= target && e.samples > 0)
                    .max_by_key(|e| e.accelerators);
                let agents = done.last().map_or(1, |d| d.summary.agents.max(1));
                TrainReport {
                    au_target: target,
                    dataset_samples,
                    overall: best.cloned().unwrap_or_default(),
                    passed: best.is_some(),
                    max_accelerators: Some(best.map_or(0, |e| e.accelerators)),
                    max_accelerators_cluster: Some(best.map_or(0, |e| e.accelerators * agents)),
                    epochs,
                }
            }
        };
        Some(Verdict {
            index: 0,
            stage: stage.name.clone(),
            text: text(&stage.name, &report),
            train: Some(report),
            ..Verdict::default()
        })
    }
}

fn step_name(d: &StepResult) -> String {
    match &d.step {
        Step::Sub(s) => s.name.clone(),
        Step::Whole => d.summary.name.clone(),
    }
}

fn pct(v: f64) -> String {
    format!("{:.1}%", v * 100.0)
}

/// The answer in one line, and the epochs that did not read the whole
/// dataset (an agent lost or stopped, reads cut short), if any.
fn text(stage: &str, r: &TrainReport) -> String {
    let mut t = answer(stage, r);
    let short: Vec<String> = r
        .epochs
        .iter()
        .filter(|e| e.samples < r.dataset_samples)
        .map(|e| format!("{} read {} of {}", e.step, e.samples, r.dataset_samples))
        .collect();
    if !short.is_empty() {
        t.push_str(&format!(
            "; not every sample was read: {}",
            short.join(", ")
        ));
    }
    // The emulator itself late: the agents' CPUs, not the storage, held
    // the accelerators back this much.
    let late = r.epochs.iter().map(|e| e.overrun).fold(0.0, f64::max);
    if late > OVERRUN_WARN {
        t.push_str(&format!(
            "; warning: compute ran late by up to {} of the ranks' time, so the agents' CPUs \
             (not the storage) held AU back that much: fewer accelerators or read threads per \
             agent, or more agents",
            pct(late)
        ));
    }
    t
}

/// Compute pauses running later than this share of the ranks' time make
/// the answer say the client, not the storage, held AU back.
const OVERRUN_WARN: f64 = 0.05;

fn answer(stage: &str, r: &TrainReport) -> String {
    let o = &r.overall;
    match r.max_accelerators {
        Some(0) => format!(
            "stage `{stage}` kept AU at {} with no number of accelerators tried",
            pct(r.au_target)
        ),
        Some(n) => format!(
            "stage `{stage}` sustained {n} accelerators per agent ({} in all) at AU {} ≥ {}: \
             {:.0} samples/s, {:.1} MiB/s",
            r.max_accelerators_cluster.unwrap_or(n),
            pct(o.au),
            pct(r.au_target),
            o.samples_per_s,
            o.mib_per_s
        ),
        None => format!(
            "stage `{stage}` {} its AU target: AU {} (target {}, lowest rank {}) over {} epochs \
             of {} ranks; {:.0} samples/s, {:.1} MiB/s, {:.2} s of data wait per rank",
            if r.passed { "met" } else { "missed" },
            pct(o.au),
            pct(r.au_target),
            pct(o.au_min),
            r.epochs.len(),
            o.ranks / (r.epochs.len().max(1) as u32),
            o.samples_per_s,
            o.mib_per_s,
            o.wait_mean_s * r.epochs.len() as f64
        ),
    }
}

/// The epochs as a table: AU and data wait per epoch.
pub fn table(r: &TrainReport) -> String {
    let mut t = format!(
        "  {:<24} {:>6} {:>9} {:>10} {:>11} {:>10} {:>7} {:>7} {:>9} {:>9} {:>6}",
        "step",
        "accel",
        "time s",
        "samples",
        "samples/s",
        "MiB/s",
        "AU",
        "AU min",
        "wait s",
        "wait max",
        "errors"
    );
    for e in &r.epochs {
        t.push_str(&format!(
            "\n  {:<24} {:>6} {:>9.3} {:>10} {:>11.1} {:>10.1} {:>7} {:>7} {:>9.3} {:>9.3} {:>6}",
            e.step,
            e.accelerators,
            e.seconds,
            e.samples,
            e.samples_per_s,
            e.mib_per_s,
            pct(e.au),
            pct(e.au_min),
            e.wait_mean_s,
            e.wait_max_s,
            e.errors
        ));
    }
    t.push('\n');
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rank(compute_ms: u64, wait_ms: u64, wall_ms: u64) -> RankReport {
        RankReport {
            rank: 0,
            samples: 10,
            bytes: 10 << 20,
            errors: 0,
            steps: 5,
            compute_ns: compute_ms * 1_000_000,
            wait_ns: wait_ms * 1_000_000,
            wall_ns: wall_ms * 1_000_000,
            overrun_ns: 0,
        }
    }

    fn au(n: u32, cap: u32) -> f64 {
        if n <= cap {
            0.95
        } else {
            0.95 * f64::from(cap) / f64::from(n)
        }
    }

    /// A step of `n` accelerators per agent on storage that feeds `cap`
    /// of them fully: AU 95% up to `cap`, falling as `cap / n` above.
    fn step(n: u32, cap: u32) -> StepResult {
        use chorus_common::metrics::StageMetrics;
        use chorus_common::metrics::summary::StageSummary;
        let ranks = (0..n)
            .map(|r| RankReport {
                rank: r,
                compute_ns: (au(n, cap) * 1e9) as u64,
                ..rank(0, 0, 1000)
            })
            .collect();
        let metrics = StageMetrics::new();
        StepResult {
            step: Step::Whole,
            summary: StageSummary::from_metrics("t", "train", 1, 1.0, &metrics),
            metrics,
            client_bound: Vec::new(),
            ended_early: None,
            schedules: Vec::new(),
            ranks,
            spans: Vec::new(),
        }
    }

    #[test]
    fn a_search_finds_the_most_accelerators_that_keep_au() {
        let plan = chorus_common::plan::parse(
            "name: p\ntarget: mem://t\nstages:\n  - name: t\n    type: train\n    \
             dataset: {samples: 10000, sample_size: 1KiB}\n    \
             train: {accelerators: {min: 1, max: 64}, batch: 1}\n",
            "p.yaml",
        )
        .unwrap();
        let stage = &plan.stages[0];
        for cap in [1, 5, 13, 40, 64, 100] {
            let mut kind = Train::new(stage.training.train.clone().unwrap());
            let mut done = Vec::new();
            while let Some(s) = kind.next_step(stage, &done) {
                let Step::Sub(spec) = &s else { panic!() };
                let n = spec.accelerators.expect("a search step sets accelerators");
                assert!((1..=64).contains(&n));
                done.push(step(n, cap));
                assert!(done.len() <= 14, "cap {cap}: {:?}", kind.tried);
            }
            let v = kind.verdict(stage, &done).unwrap();
            let r = v.train.unwrap();
            // AU falls with n: the answer is the last n that holds 90%.
            let want = (1..=64).rev().find(|&n| au(n, cap) >= 0.9).unwrap();
            assert_eq!(
                r.max_accelerators,
                Some(want),
                "cap {cap}: {:?}",
                kind.tried
            );
            assert!(r.passed);
        }
    }

    #[test]
    fn an_epoch_short_of_the_dataset_says_so() {
        let plan = chorus_common::plan::parse(
            "name: p\ntarget: mem://t\nstages:\n  - name: t\n    type: train\n    \
             dataset: {samples: 20, sample_size: 1KiB}\n    train: {epochs: 2}\n",
            "p.yaml",
        )
        .unwrap();
        let stage = &plan.stages[0];
        let mut kind = Train::new(stage.training.train.clone().unwrap());
        let mut done = Vec::new();
        // Two ranks of 10 samples, then one (its agent lost).
        for n in [2, 1] {
            let Some(Step::Sub(spec)) = kind.next_step(stage, &done) else {
                panic!("an epoch")
            };
            let mut d = step(n, 64);
            d.step = Step::Sub(spec);
            done.push(d);
        }
        assert!(kind.next_step(stage, &done).is_none(), "two epochs");
        let v = kind.verdict(stage, &done).unwrap();
        assert!(
            v.text
                .ends_with("not every sample was read: t/epoch-2 read 10 of 20"),
            "{}",
            v.text
        );
        // Compute pauses 10% late: the client, not the storage, is named.
        for d in &mut done {
            for r in &mut d.ranks {
                r.overrun_ns = r.wall_ns / 10;
            }
        }
        let v = kind.verdict(stage, &done).unwrap();
        assert!(
            v.text.contains("warning: compute ran late by up to 10.0%"),
            "{}",
            v.text
        );
        assert_eq!(v.train.unwrap().epochs[0].overrun, 0.1);
    }

    #[test]
    fn au_is_compute_over_wall_summed_over_ranks() {
        let e = EpochReport::of(
            "t/epoch-1",
            2,
            &[rank(900, 100, 1000), rank(500, 500, 1000)],
        );
        assert!((e.au - 0.7).abs() < 1e-9, "{}", e.au);
        assert!((e.au_min - 0.5).abs() < 1e-9);
        assert!((e.seconds - 1.0).abs() < 1e-9);
        assert!((e.samples_per_s - 20.0).abs() < 1e-9);
        assert!((e.wait_mean_s - 0.3).abs() < 1e-9);
        assert!((e.wait_max_s - 0.5).abs() < 1e-9);
    }
}
