//! One controller's session on an agent: the plan, this agent's place in
//! the run, the op-log files of the stages run so far and the replay
//! traces received; and the slot that holds it.
//!
//! The slot is a `std::sync::Mutex` reached only through
//! [`SessionSlot::with`], which takes a closure: nothing can be awaited
//! while the session is locked, so a slow store open, a slow client or a
//! writer's flush can never keep a heartbeat waiting for the lock (the
//! controller would take that silence for a lost agent).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use chorus_common::metrics::prometheus::Metrics;
use chorus_common::plan::{Plan, Stage};
use chorus_common::pools::Pools;
use chorus_common::store::EnvOverlay;
use chorus_common::trace::TraceId;
use chorus_common::workload::KeyState;
use tokio::sync::watch;

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
    /// Op-logs by (stage index, step; 0 for a stage run whole), each from
    /// the moment its stage created it: a running stage's log can be
    /// fetched as far as it is written.
    pub oplogs: BTreeMap<(u32, u32), PathBuf>,
    /// Replay traces the controller sent (`PutTrace`), checked, by id;
    /// the files are in `dir` and go with it.
    pub traces: HashMap<TraceId, PathBuf>,
    /// The plan's names of those traces (several names may share one).
    pub trace_names: HashMap<String, TraceId>,
    /// True while a stage runs; a second RunStage is refused meanwhile.
    pub running: bool,
    /// The running stage's stop flag, set by `StopStage`.
    pub stop: Option<Arc<AtomicBool>>,
    /// When the controller was last heard (any call of this session).
    pub heard: Arc<Mutex<Instant>>,
    /// Silence from the controller longer than this ends the session.
    pub controller_timeout: Duration,
    /// What this agent knows of each key space, carried from stage to stage
    /// (and from step to step) so a workload after a prepare needs no
    /// listing.
    pub keys: HashMap<String, Arc<KeyState>>,
    /// Pinned runtimes the plan's `pinning` asked for, for the session.
    pub pools: Arc<Pools>,
    /// Variables the controller forwarded (`--forward-env`), read by the
    /// stores before this process's environment. `Debug` shows names only.
    pub env: Arc<EnvOverlay>,
    /// The agent's own `/metrics` registry (`agent --metrics-listen`),
    /// fed by this session's stages; `None` when not served.
    pub metrics: Option<Arc<Metrics>>,
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

    /// The local copy of the trace `id`, when the controller has sent it
    /// in this session (whole and checked): what a replay stage reads.
    pub fn trace_path(&self, id: &TraceId) -> Option<PathBuf> {
        self.traces.get(id).cloned()
    }

    /// The local copy of the trace the plan names `name` (a replay
    /// stage's `replay.trace`), when the controller has sent it.
    pub fn trace_named(&self, name: &str) -> Option<PathBuf> {
        self.trace_names
            .get(name)
            .and_then(|id| self.trace_path(id))
    }

    /// Where the op-log of stage `index` (its step `step`, 0 for the stage
    /// whole) goes.
    pub fn oplog_path(&self, index: u32, step: u32) -> PathBuf {
        self.dir.join(oplog_file_name(index, step))
    }
}

/// The spool file name of the op-log of stage `index`, step `step`:
/// `stage-NN.spool.zst` for the stage run whole (the name runs before steps
/// existed have, so `controller collect` still finds theirs), and
/// `stage-NN-sMM.spool.zst` for its step MM.
pub fn oplog_file_name(index: u32, step: u32) -> String {
    match step {
        0 => format!("stage-{index:02}.spool.zst"),
        s => format!("stage-{index:02}-s{s:02}.spool.zst"),
    }
}

/// The agent's one session slot (see the module docs).
pub struct SessionSlot {
    slot: Mutex<Option<Session>>,
    /// Whether a session is in the slot, for whoever waits for it to end
    /// (a stopping agent serves its logs until then).
    present: watch::Sender<bool>,
}

impl Default for SessionSlot {
    fn default() -> Self {
        SessionSlot {
            slot: Mutex::new(None),
            present: watch::Sender::new(false),
        }
    }
}

impl SessionSlot {
    /// Runs `f` on the slot under its lock. A closure, not a future: the
    /// lock is held only for what `f` does without waiting.
    pub fn with<R>(&self, f: impl FnOnce(&mut Option<Session>) -> R) -> R {
        let mut slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        let r = f(&mut slot);
        let present = slot.is_some();
        self.present
            .send_if_modified(|p| std::mem::replace(p, present) != present);
        r
    }

    /// Returns once the slot holds no session.
    pub async fn ended(&self) {
        let mut rx = self.present.subscribe();
        let _ = rx.wait_for(|present| !*present).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_logs_have_their_own_names_and_step_0_keeps_the_old_one() {
        assert_eq!(oplog_file_name(3, 0), "stage-03.spool.zst");
        assert_eq!(oplog_file_name(3, 2), "stage-03-s02.spool.zst");
        assert_eq!(oplog_file_name(12, 140), "stage-12-s140.spool.zst");
    }
}
