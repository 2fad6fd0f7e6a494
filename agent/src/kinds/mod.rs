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

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use chorus_common::clock::Anchor;
use chorus_common::datagen::DataSpec;
use chorus_common::oplog::OpLogSender;
use chorus_common::plan::{Stage, StageKind};
use chorus_common::pools::Pools;
use chorus_common::store::ObjectStore;
use chorus_common::store::multi::MultiStore;
use chorus_common::workload::{KeyState, LiveCounters, StageOutcome};
use futures::future::BoxFuture;

/// Everything one stage (or one step of it) runs with on this agent.
pub struct KindContext {
    /// The stage as this run of it goes: a step's settings already applied
    /// (`Stage::for_step`), its name the op-log's `stage` column.
    pub stage: Stage,
    pub stage_index: usize,
    pub agent_index: u32,
    pub agent_count: u32,
    /// The op-log `client_id` of this agent.
    pub agent_id: String,
    /// Seed and shape of payloads.
    pub data: DataSpec,
    /// The stage's store; with endpoints, one of `multi`.
    pub store: Arc<dyn ObjectStore>,
    /// With endpoints: one balancer per pool, or one for all (see
    /// `chorus_common::workload::StageRun::multi`).
    pub multi: Vec<Arc<MultiStore>>,
    /// Where op records go: every op is one record.
    pub oplog: OpLogSender,
    /// What the session knows of the key space from earlier stages or
    /// steps; `None` to find out.
    pub keys: Option<Arc<KeyState>>,
    /// The session's pinned runtimes.
    pub pools: Arc<Pools>,
    /// When workers start, on this agent's monotonic clock.
    pub start_at: Instant,
    /// The session's clock, for op times.
    pub clock: Anchor,
    /// Totals and latencies the stage task reports every second.
    pub live: Arc<LiveCounters>,
    /// Set to end the stage early (StopStage, lost controller, SIGTERM).
    pub stop: Arc<AtomicBool>,
}

/// How the agent executes one kind of stage.
pub trait StageKindExec: Send + Sync {
    /// Runs the stage to its stop condition or until `cx.stop` is set, and
    /// says what it did; the key state it returns carries to later stages.
    fn run(&self, cx: KindContext) -> BoxFuture<'static, anyhow::Result<StageOutcome>>;
}

/// The executor of `stage`'s kind.
pub fn for_stage(stage: &Stage) -> &'static dyn StageKindExec {
    match stage.kind {
        StageKind::Prepare | StageKind::Workload | StageKind::Cleanup => &engine::Engine,
    }
}
