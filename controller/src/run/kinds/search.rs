//! `type: search`: the highest load (open-loop rate, or workers per agent)
//! at which the stage's mix meets its objective.
//!
//! Steps grow geometrically from `from` (× `factor`) while they are good;
//! the first bad step brackets the answer, and the steps then bisect
//! between the best good load and the lowest bad one until they are
//! within `precision` of each other. A step is bad when it breaks the
//! objective (a latency percentile of its op, or its error rate, over the
//! whole step merged exactly over the agents), or when it is past the
//! knee: it turned less than `knee` of its added load (against the best
//! good step) into added throughput, so more load only queues. Each step
//! is its own sub-stage (`<stage>/NN-rate-LOAD`) in the timeline, summary
//! and `run.json`, and warms up on its own before it counts. A step whose
//! live seconds break the objective twice over for three seconds in a row
//! is cut short (its `ended_early` says so) and judged on what it measured.

use std::time::Duration;

use chorus_common::metrics::OpStats;
use chorus_common::metrics::summary::LatencySummary;
use chorus_common::plan::{SearchSpec, Stage, StepSpec, Vary, format_duration, percentile_name};
use serde::{Deserialize, Serialize};

use super::{StageKind, Step, StepResult, Verdict, Watch};
use crate::run::series::Second;

/// What a search step showed, and whether it was good (in `run.json`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Probe {
    /// Index of the step within the stage (1-based) and its name.
    pub step: u32,
    pub name: String,
    /// The load asked for: ops/s over all agents, or workers per agent.
    pub load: f64,
    /// All ops of the step, after its warm-up.
    pub ops_per_s: f64,
    pub mib_per_s: f64,
    /// Of the objective's op (or all ops).
    pub ops: u64,
    pub errors: u64,
    pub latency_us: LatencySummary,
    /// The objective's percentiles as measured, in its order: (name, µs).
    pub objective_us: Vec<(String, f64)>,
    pub good: bool,
    /// Why a bad step was bad, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    /// `objective`, `errors` or `knee` for a bad step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broke: Option<String>,
    /// Agents that were client-bound in the step: at such a step the
    /// clients, not the store, may have set the figures.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub client_bound: Vec<String>,
}

/// A search's answer (`run.json` `verdicts[].search`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SearchReport {
    pub vary: String,
    pub objective: String,
    /// The highest good step; `None` when even the first broke the
    /// objective.
    pub best: Option<Probe>,
    /// Why the search ended: `objective`, `errors`, `knee` (the bad step
    /// that bounded it broke that), `to` (every step up to `to` was good),
    /// `first_step` (the first step was already bad), `max_steps`,
    /// `ended_early` (a step was stopped from outside), `run_ended` (the
    /// run failed during a step).
    pub stopped: String,
    /// The same, in words.
    pub reason: String,
    /// Every step, in the order run.
    pub steps: Vec<Probe>,
}

/// The search's driver: its steps so far and the bracket they make.
pub struct Search {
    spec: SearchSpec,
    /// Each step's warm-up (the stage's), before it counts.
    settle: Duration,
    probes: Vec<Probe>,
    /// Load of the step that is running (not judged yet).
    pending: Option<(u32, String, f64)>,
    /// Indexes into `probes`: the good step of highest load, the bad step
    /// of lowest load.
    good: Option<usize>,
    bad: Option<usize>,
    stopped: Option<(String, String)>,
    live: LiveCut,
}

/// Live seconds in a row that must each break the objective by
/// [`LIVE_MARGIN`] before a step is cut short.
const LIVE_SECONDS: u32 = 3;

/// How far past the objective a live second must be to count: the live
/// figures are per second and at two significant digits, the verdict is
/// the step's exact merged histogram; only a step that is clearly bad is
/// cut, and it is still judged on what it measured.
const LIVE_MARGIN: f64 = 2.0;

/// Watching a step's live seconds for an objective broken beyond doubt
/// (the search's time goes to steps near the answer, not to a queue
/// growing for the whole of a step far above it).
#[derive(Default)]
struct LiveCut {
    /// Seconds of the step not watched: its warm-up and first second.
    skip: i64,
    /// Whether the live seconds can show the objective: its op is all
    /// ops (or the mix's only op), as a live second is.
    watchable: bool,
    bad_in_a_row: u32,
    /// This step was cut here (so its early end is no outside stop).
    cut: bool,
}

impl Search {
    pub fn new(spec: SearchSpec, stage: &Stage) -> Search {
        Search {
            spec,
            settle: stage.warmup_window().unwrap_or_default(),
            probes: Vec::new(),
            pending: None,
            good: None,
            bad: None,
            stopped: None,
            live: LiveCut {
                skip: (stage
                    .warmup_window()
                    .unwrap_or_default()
                    .as_secs_f64()
                    .ceil() as i64)
                    .max(1),
                watchable: stage
                    .search
                    .as_ref()
                    .is_some_and(|s| s.objective.op.is_none() || stage.mix.weights.len() == 1),
                ..Default::default()
            },
        }
    }

    /// Why live second `s` breaks the objective by the margin, if it does.
    fn live_fault(&self, s: &Second) -> Option<String> {
        let o = &self.spec.objective;
        if let Some(limit) = o.errors
            && s.errors >= 10
            && s.ops_per_s > 0.0
            && s.errors as f64 / s.ops_per_s > limit * LIVE_MARGIN
        {
            return Some(format!(
                "errors {:.1}%",
                s.errors as f64 / s.ops_per_s * 100.0
            ));
        }
        o.latency.iter().find_map(|(q, limit)| {
            let live = s.latency_us.percentile(*q)?;
            (live > limit.as_secs_f64() * 1e6 * LIVE_MARGIN)
                .then(|| format!("{} {}", percentile_name(*q), ms(live)))
        })
    }

    /// A load as a step's name and the report show it.
    fn load_text(&self, load: f64) -> String {
        match self.spec.vary {
            Vary::Concurrency => format!("{}", load as u64),
            Vary::Rate if load >= 100.0 || load.fract() == 0.0 => format!("{load:.0}"),
            Vary::Rate => format!("{load:.2}"),
        }
    }

    /// Judges the step that just ran.
    fn judge_step(&mut self, r: &StepResult) {
        let Some((step, name, load)) = self.pending.take() else {
            return;
        };
        let o = &self.spec.objective;
        let stats = match o.op {
            Some(op) => r.metrics.ops.get(&op).cloned().unwrap_or_default(),
            None => r.metrics.combined(),
        };
        let all = r.summary.all();
        let ops_per_s = all.map_or(0.0, |a| a.ops_per_s);
        let objective_us = o
            .latency
            .iter()
            .map(|(q, _)| (percentile_name(*q), quantile_us(&stats, *q)))
            .collect();
        let mut probe = Probe {
            step,
            name,
            load,
            ops_per_s,
            mib_per_s: all.map_or(0.0, |a| a.mib_per_s),
            ops: stats.count,
            errors: stats.errors,
            latency_us: LatencySummary::from_histogram(&stats.latency),
            objective_us,
            good: true,
            why: None,
            broke: None,
            client_bound: r.client_bound.clone(),
        };
        let cut = std::mem::take(&mut self.live.cut);
        if let Some(why) = r.ended_early.as_ref().filter(|_| !cut) {
            // Stopped from outside (Ctrl-C, an abort): its figures are
            // not a verdict on its load, and the search ends with it.
            probe.good = false;
            probe.why = Some(format!("ended early: {why}"));
            let why = format!("step {} ended early: {why}", probe.name);
            self.stopped = Some(("ended_early".into(), why));
            self.probes.push(probe);
            return;
        }
        if let Some((broke, why)) = self.fault(&probe, &stats) {
            probe.good = false;
            probe.broke = Some(broke.to_string());
            probe.why = Some(why);
        }
        let i = self.probes.len();
        let higher = |j: Option<usize>, cmp: fn(f64, f64) -> bool| {
            j.is_none_or(|j| cmp(load, self.probes[j].load))
        };
        if probe.good && higher(self.good, |a, b| a > b) {
            self.good = Some(i);
        } else if !probe.good && higher(self.bad, |a, b| a < b) {
            self.bad = Some(i);
        }
        self.probes.push(probe);
    }

    /// What makes a step bad, if anything: (`objective` | `errors` |
    /// `knee`, in words).
    fn fault(&self, p: &Probe, stats: &OpStats) -> Option<(&'static str, String)> {
        let o = &self.spec.objective;
        let load = self.load_text(p.load);
        if stats.count == 0 {
            return Some(("errors", format!("no {} op ran at {load}", o.op_name())));
        }
        if let Some(limit) = o.errors {
            let rate = stats.errors as f64 / stats.count as f64;
            if rate > limit {
                return Some((
                    "errors",
                    format!(
                        "{} errors {:.3}% > {} at {load}",
                        o.op_name(),
                        rate * 100.0,
                        chorus_common::plan::percent(limit)
                    ),
                ));
            }
        }
        for ((q, limit), (_, us)) in o.latency.iter().zip(&p.objective_us) {
            if *us > limit.as_secs_f64() * 1e6 {
                return Some((
                    "objective",
                    format!(
                        "{} {} {} > {} at {load}",
                        o.op_name(),
                        percentile_name(*q),
                        ms(*us),
                        format_duration(*limit)
                    ),
                ));
            }
        }
        let g = &self.probes[self.good?];
        let load_gain = p.load / g.load - 1.0;
        let gain = if g.ops_per_s > 0.0 {
            p.ops_per_s / g.ops_per_s - 1.0
        } else {
            0.0
        };
        (load_gain > 0.0 && gain < self.spec.knee * load_gain).then(|| {
            (
                "knee",
                format!(
                    "past the knee at {load}: +{:.0}% load gave {:+.1}% throughput \
                     ({:.0} against {:.0} ops/s)",
                    load_gain * 100.0,
                    gain * 100.0,
                    p.ops_per_s,
                    g.ops_per_s
                ),
            )
        })
    }

    /// The next load to try; `None` (and `stopped` set) when done.
    fn next_load(&mut self) -> Option<f64> {
        let s = &self.spec;
        if self.probes.len() >= s.max_steps as usize {
            let why = format!("ran its {} steps (`max_steps`)", s.max_steps);
            self.stopped = Some(("max_steps".into(), why));
            return None;
        }
        let Some(last) = self.probes.last() else {
            return Some(s.from);
        };
        let Some(b) = self.bad else {
            if last.load >= s.to {
                let why = format!("every step up to `to` ({}) was good", self.load_text(s.to));
                self.stopped = Some(("to".into(), why));
                return None;
            }
            let next = match s.vary {
                Vary::Rate => last.load * s.factor,
                Vary::Concurrency => (last.load * s.factor).ceil().max(last.load + 1.0),
            };
            return Some(next.min(s.to));
        };
        let bad = &self.probes[b];
        let (broke, why) = (bad.broke.clone().unwrap_or_default(), bad.why.clone());
        let why = why.unwrap_or_default();
        let Some(g) = self.good else {
            let why = format!("the first step was already bad: {why}");
            self.stopped = Some(("first_step".into(), why));
            return None;
        };
        let (lo, hi) = (self.probes[g].load, bad.load);
        let mid = match s.vary {
            Vary::Rate => (lo + hi) / 2.0,
            Vary::Concurrency => ((lo + hi) / 2.0).floor(),
        };
        if hi / lo - 1.0 <= s.precision || mid <= lo || mid >= hi {
            let within = format!(
                "{why}; the best good and first bad loads are within {:.1}%",
                (hi / lo - 1.0) * 100.0
            );
            self.stopped = Some((broke, within));
            return None;
        }
        Some(mid)
    }

    fn report(&self) -> SearchReport {
        let (stopped, reason) = self.stopped.clone().unwrap_or_else(|| {
            let why = "the run ended during the search (its steps so far are above)";
            ("run_ended".to_string(), why.to_string())
        });
        SearchReport {
            vary: self.spec.vary.name().to_string(),
            objective: self.spec.objective.to_string(),
            best: self.good.map(|g| self.probes[g].clone()),
            stopped,
            reason,
            steps: self.probes.clone(),
        }
    }
}

/// Percentile `q` of the op's successful latencies, in µs.
fn quantile_us(stats: &OpStats, q: f64) -> f64 {
    if stats.latency.is_empty() {
        return 0.0;
    }
    stats.latency.value_at_quantile(q / 100.0) as f64 / 1e3
}

/// µs as milliseconds for messages.
fn ms(us: f64) -> String {
    format!("{:.3} ms", us / 1e3)
}

impl StageKind for Search {
    fn next_step(&mut self, stage: &Stage, done: &[StepResult]) -> Option<Step> {
        if let Some(last) = done.last() {
            self.judge_step(last);
        }
        if self.stopped.is_some() {
            return None;
        }
        let load = self.next_load()?;
        self.live.bad_in_a_row = 0;
        let index = self.probes.len() as u32 + 1;
        let name = format!(
            "{}/{index:02}-{}-{}",
            stage.name,
            self.spec.vary.name(),
            self.load_text(load)
        );
        self.pending = Some((index, name.clone(), load));
        let (rate, concurrency) = match self.spec.vary {
            Vary::Rate => (Some(load), None),
            Vary::Concurrency => (None, Some(load as u32)),
        };
        Some(Step::Sub(StepSpec {
            index,
            name,
            rate,
            concurrency,
            duration: Some(self.settle + self.spec.step),
            ops: None,
            ..Default::default()
        }))
    }

    fn watch(&mut self, s: &Second) -> Watch {
        if !self.live.watchable || s.second < self.live.skip || self.live.cut {
            return Watch::Continue;
        }
        let Some(fault) = self.live_fault(s) else {
            self.live.bad_in_a_row = 0;
            return Watch::Continue;
        };
        self.live.bad_in_a_row += 1;
        if self.live.bad_in_a_row < LIVE_SECONDS {
            return Watch::Continue;
        }
        self.live.cut = true;
        Watch::Stop(format!(
            "objective broken live: {fault} for {LIVE_SECONDS} s in a row"
        ))
    }

    fn verdict(&self, stage: &Stage, _done: &[StepResult]) -> Option<Verdict> {
        let report = self.report();
        let o = &self.spec.objective;
        let text = match &report.best {
            Some(b) => {
                let figures: Vec<String> = b
                    .objective_us
                    .iter()
                    .map(|(q, us)| format!("{} {q} {}", o.op_name(), ms(*us)))
                    .collect();
                let clients = match b.client_bound.as_slice() {
                    [] => String::new(),
                    ids => format!(
                        "; at that step agent {} client-bound: the clients may have been \
                         the limit, not the store",
                        if ids.len() == 1 {
                            format!("{} was", ids[0])
                        } else {
                            format!("{} were", ids.join(", "))
                        }
                    ),
                };
                format!(
                    "search `{}`: best {} {} ({}): {:.0} ops/s, {:.2} MiB/s{}{}; stopped: {}{clients}",
                    stage.name,
                    report.vary,
                    self.load_text(b.load),
                    b.name,
                    b.ops_per_s,
                    b.mib_per_s,
                    if figures.is_empty() { "" } else { ", " },
                    figures.join(", "),
                    report.reason
                )
            }
            None => format!(
                "search `{}`: no step met the objective ({}); stopped: {}",
                stage.name, report.objective, report.reason
            ),
        };
        Some(Verdict {
            index: 0,
            stage: stage.name.clone(),
            text,
            search: Some(report),
            ..Verdict::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chorus_common::metrics::StageMetrics;
    use chorus_common::metrics::summary::StageSummary;
    use chorus_common::op::OpKind;

    const PLAN: &str = "name: s\ntarget: mem://s\nobjects: {count: 10, size: 1KiB}\nstages:\n  \
        - name: find\n    type: search\n    mix: {get: 1}\n    search: {from: 1000, to: 64000, \
        step: 1s, objective: {op: GET, p99: 5ms, errors: 1%}}\n";

    /// A step's result as a store of capacity `cap` ops/s would give it:
    /// throughput min(load, cap), p99 1 ms below capacity, 50 ms above.
    fn result(load: f64, cap: f64) -> StepResult {
        let mut metrics = StageMetrics::new();
        let latency = if load <= cap { 1_000_000 } else { 50_000_000 };
        for _ in 0..1000 {
            metrics.record(OpKind::Get, latency, 1024, true);
        }
        let ops = load.min(cap);
        let mut summary = StageSummary::from_metrics("x", "search", 2, 1.0, &metrics);
        for row in &mut summary.ops {
            row.ops_per_s = ops;
        }
        StepResult {
            step: Step::Whole,
            summary,
            metrics,
            client_bound: Vec::new(),
            ended_early: None,
            schedules: Vec::new(),
            ranks: Vec::new(),
            spans: Vec::new(),
        }
    }

    fn drive(cap: f64) -> SearchReport {
        let plan = chorus_common::plan::parse(PLAN, "p.yaml").unwrap();
        let stage = &plan.stages[0];
        let mut s = Search::new(stage.search.clone().unwrap(), stage);
        let mut done = Vec::new();
        while let Some(step) = s.next_step(stage, &done) {
            let Step::Sub(spec) = &step else {
                panic!("a search runs sub-steps")
            };
            assert_eq!(spec.duration, Some(Duration::from_secs(1)));
            done.push(result(spec.rate.unwrap(), cap));
        }
        s.report()
    }

    #[test]
    fn bisects_to_the_capacity_within_the_precision() {
        let r = drive(10_000.0);
        let best = r.best.clone().expect("a best step");
        assert!(best.load <= 10_000.0 && best.load >= 9_500.0, "{best:?}");
        assert_eq!(r.stopped, "objective", "{r:?}");
        // Grew 1000, 2000, 4000, 8000, 16000, then bisected.
        let loads: Vec<f64> = r.steps.iter().map(|p| p.load).collect();
        assert_eq!(&loads[..5], &[1000.0, 2000.0, 4000.0, 8000.0, 16000.0]);
        assert!(r.steps.iter().all(|p| p.good == (p.load <= 10_000.0)));
    }

    #[test]
    fn a_clearly_broken_step_is_cut_and_still_judged() {
        let plan = chorus_common::plan::parse(PLAN, "p.yaml").unwrap();
        let stage = &plan.stages[0];
        let mut s = Search::new(stage.search.clone().unwrap(), stage);
        let Some(Step::Sub(first)) = s.next_step(stage, &[]) else {
            panic!("a first step")
        };
        let second = |n, p99_ms: f64| Second {
            second: n,
            ops_per_s: 1000.0,
            latency_us: LatencySummary {
                p99: p99_ms * 1e3,
                ..Default::default()
            },
            ..Default::default()
        };
        // Second 0 is not watched; 6 ms is within twice the 5 ms limit.
        assert_eq!(s.watch(&second(0, 90.0)), Watch::Continue);
        assert_eq!(s.watch(&second(1, 6.0)), Watch::Continue);
        assert_eq!(s.watch(&second(2, 11.0)), Watch::Continue);
        assert_eq!(s.watch(&second(3, 11.0)), Watch::Continue);
        let Watch::Stop(why) = s.watch(&second(4, 12.0)) else {
            panic!("three seconds past twice the limit")
        };
        assert!(why.contains("p99 12.000 ms for 3 s in a row"), "{why}");
        // Its early end is the search's own: judged, and the search goes on.
        let mut r = result(first.rate.unwrap(), 500.0);
        r.ended_early = Some(why);
        let next = s.next_step(stage, &[r]);
        assert!(next.is_none(), "a bad first step ends the search");
        let report = s.report();
        assert_eq!(report.stopped, "first_step", "{report:?}");
        assert_eq!(report.steps[0].broke.as_deref(), Some("objective"));
    }

    #[test]
    fn the_answer_says_when_its_clients_were_the_limit() {
        let plan = chorus_common::plan::parse(PLAN, "p.yaml").unwrap();
        let stage = &plan.stages[0];
        let mut s = Search::new(stage.search.clone().unwrap(), stage);
        let mut done = Vec::new();
        while let Some(Step::Sub(spec)) = s.next_step(stage, &done) {
            let mut r = result(spec.rate.unwrap(), 3000.0);
            r.client_bound = vec!["a1".into()];
            done.push(r);
        }
        let v = s.verdict(stage, &done).unwrap();
        assert!(
            v.text.contains("at that step agent a1 was client-bound"),
            "{}",
            v.text
        );
        assert_eq!(v.search.unwrap().best.unwrap().client_bound, ["a1"]);
    }

    #[test]
    fn stops_at_to_and_at_a_bad_first_step() {
        let r = drive(1e9);
        assert_eq!(r.stopped, "to");
        assert_eq!(r.best.unwrap().load, 64_000.0);
        let r = drive(500.0);
        assert_eq!(r.stopped, "first_step");
        assert!(r.best.is_none());
        assert_eq!(r.steps.len(), 1);
    }
}
