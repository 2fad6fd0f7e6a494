//! The workload engine as a stage kind: `prepare`, `workload` and
//! `cleanup` all run through `chorus_common::workload::run_stage`, which
//! picks the ops from the stage's kind.

use chorus_common::workload::{StageOutcome, run_stage};
use futures::FutureExt;
use futures::future::BoxFuture;

use super::{KindContext, StageKindExec};

/// Runs a stage on the workload engine.
pub struct Engine;

impl StageKindExec for Engine {
    fn run(&self, cx: KindContext) -> BoxFuture<'static, anyhow::Result<StageOutcome>> {
        run_stage(cx).boxed()
    }
}
