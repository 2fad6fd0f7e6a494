//! One controller's session on an agent: the plan, this agent's place in
//! the run, and the op-log files of the stages run so far.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chorus_common::plan::Plan;

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
}

impl Session {
    /// Where stage `index`'s op-log goes.
    pub fn oplog_path(&self, index: u32) -> PathBuf {
        self.dir.join(format!("stage-{index:02}.tsv.zst"))
    }
}
