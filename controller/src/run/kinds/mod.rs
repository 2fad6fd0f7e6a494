//! Stage kinds, as the controller drives them: one module per kind behind
//! one trait, [`StageKind`]. The run sequence (`sequence.rs`) and the step
//! runner (`step.rs`) know no kind by name; [`for_stage`] is the one place
//! that maps a plan's `type:` to its driver.
//!
//! A kind decides *what* load to run and *when it is enough*; the step
//! runner does *how*: clocks measured before each step, one absolute start
//! for every agent, live progress, op-logs collected, results judged and
//! written. The life of a stage:
//!
//! 1. [`StageKind::next_step`]: the next load step (the stage whole, or a
//!    sub-step: a search's load step, an epoch), chosen from the results
//!    of the steps before it; `None` when the stage is done.
//! 2. The runner starts that step on every live agent at one instant.
//! 3. [`StageKind::watch`]: each complete cluster second of the running
//!    step; [`Watch::Stop`] ends the step early on every agent (steady
//!    state, an objective already broken).
//! 4. The step's results (merged exactly) go back to `next_step`.
//! 5. [`StageKind::judge`]: the stage's verdict after its last step.
//!
//! Adding a kind: its plan variant (`common/src/plan`), one module here,
//! one on the agent (`agent/src/kinds/`, or reuse the engine), its docs in
//! `docs/plan.md`; nothing in the sequence loop. See docs/ARCHITECTURE.md.

pub mod checkpoint;
mod engine;
pub mod replay;
#[cfg(test)]
mod runs;
pub mod search;
pub mod steady;
#[cfg(test)]
mod tests;
pub mod train;

use chorus_common::metrics::StageMetrics;
use chorus_common::metrics::summary::StageSummary;
use chorus_common::plan::{Stage, StageKind as PlanKind, StepSpec};
use serde::{Deserialize, Serialize};

use super::series::Second;

/// One load step of a stage.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// The stage as the plan says, under its own name.
    Whole,
    /// A sub-step: the stage with a few settings replaced, under its own
    /// name in the summary, timeline and report.
    Sub(StepSpec),
}

impl Step {
    /// 0 for the stage whole, else the sub-step's index.
    pub fn index(&self) -> u32 {
        match self {
            Step::Whole => 0,
            Step::Sub(s) => s.index,
        }
    }

    /// The stage as this step runs it.
    pub fn apply(&self, stage: &Stage) -> Stage {
        match self {
            Step::Whole => stage.clone(),
            Step::Sub(s) => stage.for_step(s),
        }
    }
}

/// What a kind learns of a step that ran.
#[derive(Clone, Debug)]
pub struct StepResult {
    pub step: Step,
    /// Merged over the agents that finished it.
    pub summary: StageSummary,
    /// The same ops' exact histograms, for any percentile of any op.
    pub metrics: StageMetrics,
    /// Agents that were the limit themselves in the step (client-bound:
    /// their CPUs full, steal high, their schedule slipping).
    pub client_bound: Vec<String>,
    /// Why the step ended before its limits, if it did.
    pub ended_early: Option<String>,
    /// How each agent kept to its schedule (open loop, replay).
    pub schedules: Vec<chorus_common::workload::ScheduleReport>,
    /// A training epoch: every agent's emulated accelerators.
    pub ranks: Vec<chorus_common::workload::train::RankReport>,
    /// Each agent's first op start and last op end, controller clock (ns):
    /// the step's cluster-wide span (a checkpoint's time).
    pub spans: Vec<(i64, i64)>,
}

/// A kind's answer to a live second.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Watch {
    Continue,
    /// End the running step now on every agent, for this reason (kept in
    /// `run.json` as the step's `ended_early`).
    Stop(String),
}

/// How the controller drives one kind of stage (see the module docs).
pub trait StageKind: Send {
    /// The next step to run, given those run so far; `None` when done.
    fn next_step(&mut self, stage: &Stage, done: &[StepResult]) -> Option<Step>;

    /// One complete cluster second of the running step.
    fn watch(&mut self, _second: &Second) -> Watch {
        Watch::Continue
    }

    /// The stage's verdict after its last step: an error fails the run
    /// (what was measured is still written).
    fn judge(&self, _stage: &Stage, _done: &[StepResult]) -> anyhow::Result<()> {
        Ok(())
    }

    /// The stage's answer, for a kind that answers a question (the
    /// capacity a search found, whether the stage became steady): written
    /// to `run.json` and printed after the summary.
    fn verdict(&self, _stage: &Stage, _done: &[StepResult]) -> Option<Verdict> {
        None
    }
}

/// A stage kind's answer (`run.json` `verdicts`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Verdict {
    /// The stage's index in the plan and its name.
    pub index: u32,
    pub stage: String,
    /// The answer in one line of words.
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search: Option<search::SearchReport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steady: Option<steady::SteadyReport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay: Option<replay::ReplayReport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train: Option<train::TrainReport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<checkpoint::CheckpointReport>,
}

impl Verdict {
    /// The answer's table, for a kind that has one (printed under its
    /// line in the summary, `analyze` and the report).
    pub fn table(&self) -> Option<String> {
        if let Some(r) = &self.replay {
            return Some(replay::table(r));
        }
        if let Some(r) = &self.train {
            return Some(train::table(r));
        }
        self.checkpoint.as_ref().map(checkpoint::table)
    }
}

/// Picks the driver of a stage; the run takes one so tests can add kinds
/// of their own.
pub type KindPicker = fn(&Stage) -> Box<dyn StageKind>;

/// The driver of `stage`'s kind.
pub fn for_stage(stage: &Stage) -> Box<dyn StageKind> {
    match (stage.kind, &stage.search, &stage.until) {
        (PlanKind::Search, Some(spec), _) => Box::new(search::Search::new(spec.clone(), stage)),
        (PlanKind::Workload, _, Some(spec)) => Box::new(steady::Steady::new(spec.clone(), stage)),
        (PlanKind::Replay, _, _) => match &stage.replay {
            Some(spec) => Box::new(replay::Replay::new(spec.clone())),
            None => Box::new(engine::Engine),
        },
        (PlanKind::Train, _, _) => match &stage.training.train {
            Some(spec) => Box::new(train::Train::new(spec.clone())),
            None => Box::new(engine::Engine),
        },
        (PlanKind::Checkpoint, _, _) => match &stage.training.checkpoint {
            Some(spec) => Box::new(checkpoint::Checkpoint::new(spec.clone())),
            None => Box::new(engine::Engine),
        },
        _ => Box::new(engine::Engine),
    }
}
