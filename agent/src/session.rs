//! One controller's session on an agent: the plan, this agent's place in
//! the run, and the op-log files of the stages run so far.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use chorus_common::plan::{Plan, Stage};
use chorus_common::pools::Pools;
use chorus_common::workload::KeyState;

/// A session, from `LoadPlan` to `EndSession`.
#[derive(Debug)]
pub struct Session {
    pub id: String,
    pub run_id: String,
    pub plan: Plan,
    pub agent_index: u32,
    pub agent_count: u32,
    /// The op-log `client_id` for this run.
    pub agent_id: String,
    /// This run's spool folder.
    pub dir: PathBuf,
    /// Finished op-logs by stage index.
    pub oplogs: BTreeMap<u32, PathBuf>,
    /// True while a stage runs; a second RunStage is refused meanwhile.
    pub running: bool,
    /// The running stage's stop flag, set by `StopStage`.
    pub stop: Option<Arc<AtomicBool>>,
    /// What this agent knows of each key space, carried from stage to stage
    /// so a workload after a prepare needs no listing.
    pub keys: HashMap<String, Arc<KeyState>>,
    /// Pinned runtimes the plan's `pinning` asked for, for the session.
    pub pools: Arc<Pools>,
}

/// Stages that work on the same objects share one key state.
pub fn key_space_id(stage: &Stage) -> String {
    format!(
        "{}|{}|{}",
        stage.target, stage.objects.prefix, stage.objects.count
    )
}

impl Session {
    /// Where stage `index`'s op-log goes.
    pub fn oplog_path(&self, index: u32) -> PathBuf {
        self.dir.join(format!("stage-{index:02}.tsv.zst"))
    }
}
