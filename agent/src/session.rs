//! One controller's session on an agent: the plan, this agent's place in
//! the run, and the op-log files of the stages run so far.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use chorus_common::plan::{Plan, Stage};
use chorus_common::pools::Pools;
use chorus_common::store::EnvOverlay;
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
    /// Op-logs by stage index, each from the moment its stage created it:
    /// a running stage's log can be fetched as far as it is written.
    pub oplogs: BTreeMap<u32, PathBuf>,
    /// True while a stage runs; a second RunStage is refused meanwhile.
    pub running: bool,
    /// The running stage's stop flag, set by `StopStage`.
    pub stop: Option<Arc<AtomicBool>>,
    /// When the controller was last heard (any call of this session).
    pub heard: Arc<Mutex<Instant>>,
    /// Silence from the controller longer than this ends the session.
    pub controller_timeout: Duration,
    /// What this agent knows of each key space, carried from stage to stage
    /// so a workload after a prepare needs no listing.
    pub keys: HashMap<String, Arc<KeyState>>,
    /// Pinned runtimes the plan's `pinning` asked for, for the session.
    pub pools: Arc<Pools>,
    /// Variables the controller forwarded (`--forward-env`), read by the
    /// stores before this process's environment. `Debug` shows names only.
    pub env: Arc<EnvOverlay>,
}

/// Stages that work on the same objects share one key state.
pub fn key_space_id(stage: &Stage) -> String {
    format!(
        "{}|{}|{}",
        stage.target, stage.objects.prefix, stage.objects.count
    )
}

impl Session {
    /// Notes that the controller was heard now.
    pub fn touch(&self) {
        *self.heard.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    /// How long the controller has been silent.
    pub fn silence(&self) -> Duration {
        self.heard
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed()
    }

    /// Where stage `index`'s op-log goes.
    pub fn oplog_path(&self, index: u32) -> PathBuf {
        self.dir.join(oplog_file_name(index))
    }
}

/// The spool file name of stage `index`'s op-log.
pub fn oplog_file_name(index: u32) -> String {
    format!("stage-{index:02}.tsv.zst")
}
