//! The workload engine as a stage kind: `prepare`, `workload` and
//! `cleanup` all run through `chorus_common::workload::run_stage`, which
//! picks the ops from the stage's kind.

use chorus_common::workload::{StageOutcome, StageRun, run_stage};
use futures::FutureExt;
use futures::future::BoxFuture;

use super::{KindContext, StageKindExec};

/// Runs a stage on the workload engine.
pub struct Engine;

impl StageKindExec for Engine {
    fn run(&self, cx: KindContext) -> BoxFuture<'static, anyhow::Result<StageOutcome>> {
        let run = StageRun {
            agent_index: cx.agent_index,
            agent_count: cx.agent_count,
            agent_id: cx.agent_id,
            data: cx.data,
            stage_index: cx.stage_index,
            stage: cx.stage,
            store: cx.store,
            multi: cx.multi,
            oplog: Some(cx.oplog),
            keys: cx.keys,
            pools: Some(cx.pools),
            start_at: cx.start_at,
            clock: cx.clock,
            live: cx.live,
            stop: cx.stop,
        };
        run_stage(run).boxed()
    }
}
