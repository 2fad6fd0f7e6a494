//! `until: steady`: a workload stage that ends once its figures settle,
//! decided by the controller from the cluster's merged seconds (warp's
//! `--autoterm`, fio's `steadystate`, but over every agent at once).
//!
//! After the stage's warm-up (and its first, partial, second), the last
//! `windows` windows of `window` seconds are compared: the stage is steady
//! when both the windows' mean ops/s and their mean chosen percentile
//! vary by no more than `tolerance` ((max - min) / mean). It then stops on
//! every agent; otherwise it runs to its `duration`, the maximum.

use std::collections::VecDeque;

use chorus_common::metrics::summary::LatencySummary;
use chorus_common::plan::{Stage, SteadySpec, format_duration, percent, percentile_name};
use serde::{Deserialize, Serialize};

use super::{StageKind, Step, StepResult, Verdict, Watch};
use crate::run::series::Second;

/// One window's figures (`run.json`).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct WindowFigures {
    pub ops_per_s: f64,
    /// Mean of the chosen percentile over the window's seconds, µs.
    pub latency_us: f64,
}

/// What `until: steady` found (`run.json` `verdicts[].steady`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SteadyReport {
    pub steady: bool,
    /// Seconds from the stage's start to the second that made it steady.
    pub after_s: Option<f64>,
    pub window_s: f64,
    pub windows: u32,
    pub tolerance: f64,
    pub percentile: String,
    /// (max - min) / mean of the last windows compared.
    pub ops_spread: Option<f64>,
    pub latency_spread: Option<f64>,
    /// The last windows compared, oldest first.
    pub last_windows: Vec<WindowFigures>,
}

/// The driver: the stage whole, watched second by second.
pub struct Steady {
    spec: SteadySpec,
    /// Seconds not compared: the warm-up, and at least the first second.
    skip: i64,
    max: String,
    /// The newest seconds, at most `window × windows` of them.
    seconds: VecDeque<(f64, f64)>,
    became: Option<i64>,
    last: Option<(f64, f64, Vec<WindowFigures>)>,
}

impl Steady {
    pub fn new(spec: SteadySpec, stage: &Stage) -> Steady {
        let settle = stage.warmup_window().unwrap_or_default();
        Steady {
            skip: (settle.as_secs_f64().ceil() as i64).max(1),
            max: stage.stop.duration.map(format_duration).unwrap_or_default(),
            seconds: VecDeque::new(),
            became: None,
            last: None,
            spec,
        }
    }

    fn capacity(&self) -> usize {
        self.spec.window.as_secs() as usize * self.spec.windows as usize
    }

    /// The chosen percentile of a second (the plan allows only those a
    /// second carries).
    fn percentile(&self, l: &LatencySummary) -> f64 {
        l.percentile(self.spec.percentile).unwrap_or(l.p99)
    }

    /// The windows of the seconds held, with both spreads.
    fn compare(&self) -> (f64, f64, Vec<WindowFigures>) {
        let per = self.spec.window.as_secs() as usize;
        let seconds: Vec<(f64, f64)> = self.seconds.iter().copied().collect();
        let windows: Vec<WindowFigures> = seconds
            .chunks(per)
            .map(|w| WindowFigures {
                ops_per_s: w.iter().map(|s| s.0).sum::<f64>() / w.len() as f64,
                latency_us: w.iter().map(|s| s.1).sum::<f64>() / w.len() as f64,
            })
            .collect();
        let ops: Vec<f64> = windows.iter().map(|w| w.ops_per_s).collect();
        let lat: Vec<f64> = windows.iter().map(|w| w.latency_us).collect();
        (spread(&ops), spread(&lat), windows)
    }

    fn report(&self) -> SteadyReport {
        SteadyReport {
            steady: self.became.is_some(),
            after_s: self.became.map(|s| s as f64),
            window_s: self.spec.window.as_secs_f64(),
            windows: self.spec.windows,
            tolerance: self.spec.tolerance,
            percentile: percentile_name(self.spec.percentile),
            ops_spread: self.last.as_ref().map(|l| l.0),
            latency_spread: self.last.as_ref().map(|l| l.1),
            last_windows: self.last.as_ref().map(|l| l.2.clone()).unwrap_or_default(),
        }
    }
}

/// (max - min) / mean; 0 for equal values, infinite around a zero mean.
fn spread(values: &[f64]) -> f64 {
    let max = values.iter().copied().fold(f64::MIN, f64::max);
    let min = values.iter().copied().fold(f64::MAX, f64::min);
    let mean = values.iter().sum::<f64>() / values.len().max(1) as f64;
    if max <= min {
        0.0
    } else if mean > 0.0 {
        (max - min) / mean
    } else {
        f64::INFINITY
    }
}

impl StageKind for Steady {
    fn next_step(&mut self, _stage: &Stage, done: &[StepResult]) -> Option<Step> {
        done.is_empty().then_some(Step::Whole)
    }

    fn watch(&mut self, s: &Second) -> Watch {
        if s.second < self.skip || self.became.is_some() {
            return Watch::Continue;
        }
        if self.seconds.len() == self.capacity() {
            self.seconds.pop_front();
        }
        self.seconds
            .push_back((s.ops_per_s, self.percentile(&s.latency_us)));
        if self.seconds.len() < self.capacity() {
            return Watch::Continue;
        }
        let (ops, lat, windows) = self.compare();
        let steady = ops <= self.spec.tolerance && lat <= self.spec.tolerance;
        self.last = Some((ops, lat, windows));
        if !steady {
            return Watch::Continue;
        }
        // Seconds count from 0: second s ends s + 1 seconds in.
        self.became = Some(s.second + 1);
        Watch::Stop(format!("steady after {} s", s.second + 1))
    }

    fn verdict(&self, stage: &Stage, _done: &[StepResult]) -> Option<Verdict> {
        let r = self.report();
        let q = &r.percentile;
        let shape = format!(
            "{} windows of {} s",
            self.spec.windows,
            self.spec.window.as_secs()
        );
        let range = |f: fn(&WindowFigures) -> f64| {
            let v: Vec<f64> = r.last_windows.iter().map(f).collect();
            let min = v.iter().copied().fold(f64::MAX, f64::min);
            let max = v.iter().copied().fold(f64::MIN, f64::max);
            (min, max)
        };
        let text = match (r.after_s, &self.last) {
            (Some(after), _) => {
                let (o0, o1) = range(|w| w.ops_per_s);
                let (l0, l1) = range(|w| w.latency_us);
                format!(
                    "stage `{}` became steady after {after:.0} s: the last {shape} agree within {} \
                     (ops/s {o0:.0}-{o1:.0}, {q} {:.3}-{:.3} ms)",
                    stage.name,
                    percent(self.spec.tolerance),
                    l0 / 1e3,
                    l1 / 1e3
                )
            }
            (None, Some((ops, lat, _))) => format!(
                "stage `{}` was not steady by its maximum ({}): the last {shape} varied {:.1}% \
                 in ops/s and {:.1}% in {q} (tolerance {})",
                stage.name,
                self.max,
                ops * 100.0,
                lat * 100.0,
                percent(self.spec.tolerance)
            ),
            (None, None) => format!(
                "stage `{}` was not steady by its maximum ({}): it ran too short to fill {shape} \
                 after its warm-up",
                stage.name, self.max
            ),
        };
        Some(Verdict {
            index: 0,
            stage: stage.name.clone(),
            text,
            steady: Some(r),
            ..Verdict::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage() -> Stage {
        let plan = chorus_common::plan::parse(
            "name: s\ntarget: mem://s\nobjects: {count: 10, size: 1KiB}\nstages:\n  - name: w\n    \
             type: workload\n    mix: {get: 1}\n    duration: 1m\n    until: steady\n    \
             steady: {window: 2s, windows: 3, tolerance: 10%}\n",
            "p.yaml",
        )
        .unwrap();
        plan.stages[0].clone()
    }

    fn second(second: i64, ops: f64, p99_ms: f64) -> Second {
        Second {
            second,
            ops_per_s: ops,
            latency_us: LatencySummary {
                p99: p99_ms * 1e3,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn stops_once_the_windows_agree() {
        let stage = stage();
        let mut k = Steady::new(stage.until.clone().unwrap(), &stage);
        // Second 0 is skipped; six seconds fill three windows of two.
        assert_eq!(k.watch(&second(0, 1.0, 90.0)), Watch::Continue);
        for s in 1..6 {
            assert_eq!(k.watch(&second(s, 1000.0 + s as f64, 1.0)), Watch::Continue);
        }
        assert_eq!(
            k.watch(&second(6, 1003.0, 1.02)),
            Watch::Stop("steady after 7 s".into())
        );
        let v = k.verdict(&stage, &[]).unwrap();
        assert!(v.text.contains("became steady after 7 s"), "{}", v.text);
        assert_eq!(v.steady.unwrap().last_windows.len(), 3);
    }

    #[test]
    fn a_latency_that_keeps_changing_is_never_steady() {
        let stage = stage();
        let mut k = Steady::new(stage.until.clone().unwrap(), &stage);
        for s in 1..60 {
            // A sawtooth: 1 ms to 7 ms and back, every 7 s.
            let p99 = 1.0 + (s % 7) as f64;
            let w = k.watch(&second(s, 1000.0, p99));
            assert_eq!(w, Watch::Continue, "second {s}");
        }
        let v = k.verdict(&stage, &[]).unwrap();
        assert!(
            v.text.contains("was not steady by its maximum (1m)"),
            "{}",
            v.text
        );
        assert!(!v.steady.unwrap().steady);
    }
}
