//! A stage's sub-steps: the controller may run one stage as several load
//! steps (a capacity search's steps, a training stage's epochs), each on
//! every agent, each with its own name in the op-log, summary and report.
//!
//! A step is the stage with a few settings replaced; the agent applies
//! them with [`Stage::for_step`] before it runs the step exactly as it
//! runs a whole stage, so every stage kind gets steps without code of its
//! own on the agent.

use std::time::Duration;

use super::{Pacing, Stage, StopCondition};

/// One sub-step of a stage, as the controller asks for it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StepSpec {
    /// 1-based within the stage (0 is the stage run whole, never a step).
    pub index: u32,
    /// The step's name: the op-log's `stage` column and the summary's row,
    /// e.g. `find-max/step-03`.
    pub name: String,
    /// Open-loop rate (ops/s over all agents) for this step.
    pub rate: Option<f64>,
    /// Workers per agent for this step.
    pub concurrency: Option<u32>,
    /// Stop after this long (replaces the stage's stop condition together
    /// with `ops`).
    pub duration: Option<Duration>,
    /// Stop after this many ops over all agents.
    pub ops: Option<u64>,
    /// The step makes what the stage's load needs rather than running it:
    /// for a replay, the objects its trace reads before writing them.
    pub prepares: bool,
    /// Emulated accelerators per agent for this step (a train stage's
    /// search over them).
    pub accelerators: Option<u32>,
    /// A checkpoint stage's restore: the shards are read back, not written.
    pub restores: bool,
    /// Stop after this many bytes over all agents.
    pub bytes: Option<u64>,
    /// The step takes over what agents that left in the stage did not do:
    /// the controller's hand-over (the agent walks only departed agents'
    /// keys, see `workload::Deal`).
    pub handover: bool,
}

impl Stage {
    /// This stage as step `step` runs it: renamed, with the step's rate,
    /// concurrency and stop condition where it sets them.
    pub fn for_step(&self, step: &StepSpec) -> Stage {
        let mut s = self.clone();
        s.name = step.name.clone();
        if let Some(rate) = step.rate {
            let arrivals = match (self.pacing, &self.search) {
                (Pacing::Open { arrivals, .. }, _) => arrivals,
                (Pacing::Closed, Some(search)) => search.arrivals,
                (Pacing::Closed, None) => Default::default(),
            };
            s.pacing = Pacing::Open { rate, arrivals };
        }
        if step.prepares
            && let Some(r) = &mut s.replay
        {
            r.phase = super::ReplayPhase::Prepare;
        }
        if let Some(c) = step.concurrency {
            s.concurrency = c;
        }
        if let Some(t) = &mut s.training.train {
            // A train stage's steps are its epochs.
            t.epoch = step.index.max(1);
            if let Some(a) = step.accelerators {
                t.accelerators = a;
                s.concurrency = a * t.read_threads;
            }
        }
        if let Some(c) = &mut s.training.checkpoint {
            c.restoring = step.restores;
        }
        if step.duration.is_some() || step.ops.is_some() || step.bytes.is_some() {
            s.stop = StopCondition {
                duration: step.duration,
                ops: step.ops,
                bytes: step.bytes,
            };
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_replaces_only_what_it_sets() {
        let plan = crate::plan::parse(
            "name: p\ntarget: mem://t\nobjects: {count: 10, size: 4KiB}\nstages:\n  - name: w\n    type: workload\n    \
             concurrency: 4\n    duration: 10s\n    mix: {get: 1}\n",
            "p.yaml",
        )
        .unwrap();
        let stage = &plan.stages[0];
        let same = stage.for_step(&StepSpec {
            index: 1,
            name: "w/step-01".into(),
            ..Default::default()
        });
        assert_eq!(same.name, "w/step-01");
        assert_eq!(same.concurrency, 4);
        assert_eq!(same.stop, stage.stop);
        assert_eq!(same.pacing, Pacing::Closed);
        let step = stage.for_step(&StepSpec {
            index: 2,
            name: "w/step-02".into(),
            rate: Some(500.0),
            concurrency: Some(8),
            duration: None,
            ops: Some(1000),
            ..Default::default()
        });
        assert_eq!(step.concurrency, 8);
        assert!(matches!(step.pacing, Pacing::Open { rate, .. } if rate == 500.0));
        assert_eq!(
            step.stop,
            StopCondition {
                duration: None,
                ops: Some(1000),
                bytes: None
            }
        );
    }
}
