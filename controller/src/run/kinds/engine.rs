//! `prepare`, `workload` and `cleanup`: the stage run whole, once, by the
//! agents' workload engine, to the plan's stop condition.

use chorus_common::plan::Stage;

use super::{StageKind, Step, StepResult};

/// The driver of the engine's kinds.
pub struct Engine;

impl StageKind for Engine {
    fn next_step(&mut self, _stage: &Stage, done: &[StepResult]) -> Option<Step> {
        done.is_empty().then_some(Step::Whole)
    }
}
