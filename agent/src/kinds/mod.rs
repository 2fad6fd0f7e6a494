//! Stage kinds on the agent: each kind of stage is executed through one
//! interface, [`StageKindExec`], and [`for_stage`] is the one place that
//! matches on [`StageKind`].
//!
//! The stage task (`crate::stage`) does what every kind needs: it opens the
//! stage's stores, starts the op-log writer, streams progress from the live
//! counters, honours the stop flag and turns the outcome into `StageDone`.
//! A kind gets all of that in a [`KindContext`] and only runs its ops. A
//! new kind adds a module here (or reuses [`engine`]) and one arm in
//! [`for_stage`]; the service and the stage task stay as they are.

pub mod engine;

use chorus_common::plan::{Stage, StageKind};
use chorus_common::workload::{StageOutcome, StageRun};
use futures::future::BoxFuture;

/// Everything one stage (or one step of it) runs with on this agent: the
/// engine's own input, which a kind that is not load of the engine's
/// needs too (stores, op-log sender, start instant, clock, live counters,
/// stop flag, key state, pools, payload seed). On the agent its `stage`
/// has a step's settings applied, and `oplog` and `pools` are always set.
pub type KindContext = StageRun;

/// How the agent executes one kind of stage.
pub trait StageKindExec: Send + Sync {
    /// Runs the stage to its stop condition or until `cx.stop` is set, and
    /// says what it did; the key state it returns carries to later stages.
    fn run(&self, cx: KindContext) -> BoxFuture<'static, anyhow::Result<StageOutcome>>;
}

/// The executor of `stage`'s kind.
pub fn for_stage(stage: &Stage) -> &'static dyn StageKindExec {
    match stage.kind {
        // A search's steps are workload steps with their load replaced.
        // A replay is the engine's worker loop fed by the trace.
        StageKind::Prepare
        | StageKind::Workload
        | StageKind::Cleanup
        | StageKind::Search
        | StageKind::Replay
        // The AI/ML stages too: their work sources are a dataset's files,
        // an epoch's samples (with the accelerators beside the readers),
        // a checkpoint's shards.
        | StageKind::Dataset
        | StageKind::Train
        | StageKind::Checkpoint => &engine::Engine,
    }
}
