//! The run directory: `runs/<UTC time>-<plan name>/` with the plan as run,
//! `run.json`, summaries, per-agent op-logs and the merged timeline.
//!
//! `run.json` is written by `controller run` and read back (typed, through
//! the same structs) by `controller collect` and the timeline's clock
//! corrections (`drift.rs`). Fields added after the first versions carry
//! `#[serde(default)]`, so a run directory written by an older controller
//! can still be collected; the fields that identify things (run id,
//! agents' ids and addresses, stages' indices and names, statuses) are
//! required: without them there is nothing to collect.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;
use chorus_common::clock::{ClockEstimate, rfc3339_ns};
use chorus_common::metrics::client::ClientHealth;
use chorus_common::workload::{ListingSummary, ScheduleReport};
use serde::{Deserialize, Serialize};

/// How a run ended, as `run.json`'s `status` says it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Written at the start and after each stage; what a run directory
    /// left by a controller that died still says.
    #[default]
    Running,
    Completed,
    /// With `error` set.
    Failed,
    /// Ctrl-C, with `error` set.
    Interrupted,
    /// Finished by `controller collect` (see `RunMeta::collect` for what
    /// it said before).
    Collected,
}

impl RunStatus {
    /// The word `run.json` holds.
    pub fn name(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Collected => "collected",
        }
    }
}

/// How one agent's part in one stage ended.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AgentStageStatus {
    Finished,
    /// The default of an entry being filled in: nothing says it finished.
    #[default]
    Failed,
    Lost,
    /// Stopped before its end by something other than the plan: its
    /// controller went away (a stage recovered by `collect`).
    Stopped,
}

impl AgentStageStatus {
    /// The word `run.json` holds (and the summary's coverage rows).
    pub fn name(self) -> &'static str {
        match self {
            AgentStageStatus::Finished => "finished",
            AgentStageStatus::Failed => "failed",
            AgentStageStatus::Lost => "lost",
            AgentStageStatus::Stopped => "stopped",
        }
    }
}

/// `run.json`: everything needed to interpret the run later.
#[derive(Serialize, Deserialize, Debug, Default)]
pub struct RunMeta {
    pub run_id: String,
    pub plan: String,
    #[serde(default)]
    pub plan_file: String,
    /// `failed` and `interrupted` come with `error` set.
    pub status: RunStatus,
    #[serde(default)]
    pub error: Option<String>,
    /// What the plan said to do about lost agents (`abort`, `continue`).
    #[serde(default)]
    pub on_agent_loss: String,
    /// Agents lost during the run, in the order they were found lost.
    #[serde(default)]
    pub lost_agents: Vec<LostAgentMeta>,
    /// Agents that stopped cleanly mid-run (SIGTERM: their ops up to then
    /// are in the summary and timeline), in the order they left.
    #[serde(default)]
    pub stopped_agents: Vec<LostAgentMeta>,
    /// Clock offsets or uncertainties past the plan's limits.
    #[serde(default)]
    pub clock_warnings: Vec<String>,
    /// Agents on another Chorus release than the controller's (same wire
    /// protocol: another protocol is refused before the run starts).
    #[serde(default)]
    pub version_warnings: Vec<String>,
    /// How the controller reached remote agents: `tls`, `token`,
    /// `tls+token`, `insecure`, or `loopback` (embedded agents).
    #[serde(default)]
    pub transport: String,
    /// Names (never values) of the variables forwarded to agents.
    #[serde(default)]
    pub forwarded_env: Vec<String>,
    #[serde(default)]
    pub controller: HostMeta,
    pub started_at: String,
    #[serde(default)]
    pub ended_at: String,
    pub agents: Vec<AgentMeta>,
    pub stages: Vec<StageMeta>,
    /// The answers of the stages that answer a question (a search's
    /// capacity, a steady state), in stage order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verdicts: Vec<super::kinds::Verdict>,
    /// What agents still in the run took over from agents that left
    /// mid-stage, or what was not done (see `handover.rs`), in stage order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub handovers: Vec<super::handover::HandoverMeta>,
    #[serde(default)]
    pub timeline: TimelineMeta,
    /// `run --timeline-format`: `parquet` when the run writes the Parquet
    /// timeline and series beside the TSV and CSV. Written when the run
    /// starts, so `collect` of a run whose controller died writes them too;
    /// `tsv` for a run.json from before this field.
    #[serde(default)]
    pub timeline_format: crate::cli::TimelineFormat,
    /// Set by `controller collect`: what it found and did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collect: Option<CollectMeta>,
}

#[derive(Serialize, Deserialize, Debug, Default)]
pub struct HostMeta {
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub hostname: String,
    #[serde(default)]
    pub cpus: u32,
    #[serde(default)]
    pub os: String,
}

#[derive(Serialize, Deserialize, Debug)]
pub struct AgentMeta {
    pub index: u32,
    pub id: String,
    pub address: String,
    #[serde(default)]
    pub host: HostMeta,
    /// Whether the agent demands a client certificate or a token.
    #[serde(default)]
    pub authenticated: bool,
    /// Offsets are (agent clock − controller clock).
    #[serde(default)]
    pub clock_start: Option<ClockEstimate>,
    /// Measured when the run ended; by `controller collect` when the run's
    /// controller could not (it died, or the agent was lost).
    #[serde(default)]
    pub clock_end: Option<ClockEstimate>,
    #[serde(default)]
    pub drift_ppm: Option<f64>,
    /// What the plan's `overrides` changed for this agent, key by key
    /// (`target`, `concurrency`, …); absent when nothing did.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub overrides: std::collections::BTreeMap<String, String>,
}

/// One entry of `stages[]`: a stage run whole (`step` 0) or one of its
/// sub-steps (`step` 1.., in order, all with the stage's `index`).
#[derive(Serialize, Deserialize, Debug, Default)]
pub struct StageMeta {
    pub index: u32,
    /// 0 for a stage run whole; 1, 2, … for its sub-steps (each its own
    /// entry, named after the step, with its own clocks and op-logs).
    #[serde(default)]
    pub step: u32,
    pub name: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub target: String,
    /// Controller clock; empty for a stage recovered by `collect` (the
    /// controller that chose it died before writing it down).
    #[serde(default)]
    pub start_at: String,
    /// Spread of the instants the agents issued their first op,
    /// clock-corrected (in open loop too: issued, not scheduled).
    #[serde(default)]
    pub start_skew_ms: Option<f64>,
    /// Spread of the instants the agents released their workers,
    /// clock-corrected: how well they woke up together.
    #[serde(default)]
    pub release_skew_ms: Option<f64>,
    /// How long before the start the last agent's RunStage request reached
    /// it, clock-corrected; negative when one came after the start. The
    /// controller's part of a skew: with a positive lead every agent knew
    /// the start in time, and a late release was the agent's own.
    #[serde(default)]
    pub request_lead_ms: Option<f64>,
    /// Why the stage (or step) was stopped before its limits, if it was:
    /// the stage kind's reason (steady state…), Ctrl-C, an abort.
    #[serde(default)]
    pub ended_early: Option<String>,
    pub agents: Vec<AgentStageMeta>,
}

/// An agent lost mid-run.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct LostAgentMeta {
    pub id: String,
    /// Controller clock, when the loss was noticed.
    pub at: String,
    /// The stage it was lost in, or the one it was lost before.
    pub stage: String,
    pub reason: String,
}

/// One agent's stage times, corrected to the controller's clock.
#[derive(Serialize, Deserialize, Debug, Default)]
pub struct AgentStageMeta {
    pub id: String,
    /// `finished`; `stopped` when told to stop before its limits (by the
    /// controller, or by a signal to the agent: see `stopped_by`);
    /// `failed` or `lost`.
    pub status: AgentStageStatus,
    /// Who stopped it early: the controller's reason, or the agent's own
    /// (`SIGTERM`).
    #[serde(default)]
    pub stopped_by: Option<String>,
    /// The clock measured just before the stage; the correction of this
    /// stage's op-log in the timeline starts from it (see `drift.rs`). For
    /// a stage recovered by `collect`, the agent's last measurement before
    /// it (the one taken just before was never written down).
    #[serde(default)]
    pub clock: Option<ClockEstimate>,
    /// Empty when unknown (a stage recovered by `collect`), as `ended`.
    #[serde(default)]
    pub started: String,
    /// When its first op began (as in the timeline: in open loop, its slot).
    #[serde(default)]
    pub first_op: Option<String>,
    /// When its first op was really issued (open loop: after its slot);
    /// the step's `start_skew_ms` is the spread of these.
    #[serde(default)]
    pub first_issued: Option<String>,
    /// When its RunStage request reached it; absent from agents that do
    /// not say.
    #[serde(default)]
    pub received: Option<String>,
    #[serde(default)]
    pub ended: String,
    /// As the agent reported it; 0 for a stage recovered by `collect`
    /// (its records are counted in `timeline` and the summary).
    #[serde(default)]
    pub records_logged: u64,
    #[serde(default)]
    pub log_backpressure_waits: u64,
    #[serde(default)]
    pub log_backpressure_wait_ms: f64,
    /// Ops in the warm-up: in the op-log (flagged), not in the summary.
    #[serde(default)]
    pub warmup_ops: u64,
    #[serde(default)]
    pub retries: u64,
    /// Open loop: how this agent kept to its schedule.
    #[serde(default)]
    pub schedule: Option<ScheduleReport>,
    /// Its host while it ran the stage (CPU, memory, network, lag) and
    /// whether it, not the storage, was the limit (`bottleneck`); `None`
    /// when it sent no host samples.
    #[serde(default)]
    pub client: Option<ClientHealth>,
    #[serde(default)]
    pub error: Option<String>,
    /// This stage's op-log in the run directory, relative to it: the
    /// whole log, or for an agent lost (or failed) mid-stage the part
    /// copied before (`….spool.zst.partial`); `None` when nothing came.
    #[serde(default)]
    pub oplog: Option<String>,
    /// Bytes of the agent's op-log copied into `oplog`.
    #[serde(default)]
    pub oplog_bytes_collected: u64,
    /// Existing objects: the listing the agent made before the stage
    /// (absent when it made none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listing: Option<ListingSummary>,
    /// A training epoch: what each of its emulated accelerators did.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ranks: Vec<chorus_common::workload::train::RankReport>,
    /// Its first op's start and last op's end, controller clock (ns), for
    /// the stage kind's cluster-wide figures; not written.
    #[serde(skip)]
    pub span_ns: Option<(i64, i64)>,
}

#[derive(Serialize, Deserialize, Debug, Default)]
pub struct TimelineMeta {
    #[serde(default)]
    pub file: String,
    #[serde(default)]
    pub records: u64,
    #[serde(default)]
    pub inputs: usize,
    #[serde(default)]
    pub errors: Vec<String>,
}

/// What `controller collect` did to a run directory (the last time it
/// ran on it).
#[derive(Serialize, Deserialize, Debug, Default)]
pub struct CollectMeta {
    /// When it ran, on its host's clock.
    pub at: String,
    /// `status` before the first `collect`: `running` for a run whose
    /// controller died.
    pub status_before: RunStatus,
    /// The op-logs it fetched from agents' spools (`agent: stage …`).
    #[serde(default)]
    pub fetched: Vec<String>,
    /// Stages the run had not written down (it ended during them), now
    /// listed in `stages[]` from the logs found.
    #[serde(default)]
    pub recovered_stages: Vec<String>,
    /// Agents whose `clock_end` it measured (the run could not).
    #[serde(default)]
    pub clocks_measured: Vec<String>,
    /// What it could not collect (an agent unreachable, a log refused);
    /// the run's results cover the rest.
    #[serde(default)]
    pub problems: Vec<String>,
}

/// Reads `run.json` of run directory `run`; errors name the file and,
/// for bad content, serde's line and column.
pub fn read_meta(run: &Path) -> anyhow::Result<RunMeta> {
    let path = run.join("run.json");
    let text =
        fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a run.json", path.display()))
}

/// A run directory being written.
pub struct RunDir {
    pub path: PathBuf,
}

impl RunDir {
    /// Makes `<results>/<run_id>`, adding `-2`, `-3`… if it exists.
    pub fn create(results: &Path, run_id: &str) -> anyhow::Result<RunDir> {
        fs::create_dir_all(results)
            .with_context(|| format!("cannot create results folder {}", results.display()))?;
        let mut path = results.join(run_id);
        let mut n = 2;
        while path.exists() {
            path = results.join(format!("{run_id}-{n}"));
            n += 1;
        }
        fs::create_dir(&path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(RunDir { path })
    }

    pub fn write(&self, name: &str, text: &str) -> anyhow::Result<()> {
        let p = self.path.join(name);
        fs::write(&p, text).with_context(|| format!("cannot write {}", p.display()))
    }

    /// (Re)writes `run.json`.
    pub fn write_meta(&self, meta: &RunMeta) -> anyhow::Result<()> {
        self.write("run.json", &serde_json::to_string_pretty(meta)?)
    }

    /// Where agent `id`'s op-log of stage `index` goes.
    pub fn agent_oplog(
        &self,
        id: &str,
        index: u32,
        step: u32,
        stage: &str,
    ) -> anyhow::Result<PathBuf> {
        let dir = self.agent_dir(id)?;
        Ok(dir.join(format!(
            "{}{}.spool.zst",
            oplog_prefix(index, step),
            sanitize(stage)
        )))
    }

    /// Agent `id`'s folder of op-logs, created if missing.
    pub fn agent_dir(&self, id: &str) -> anyhow::Result<PathBuf> {
        let dir = self.path.join("agents").join(sanitize(id));
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(dir)
    }
}

/// How an agent's op-log file name starts: `01-` for stage 1 run whole,
/// `01.03-` for its step 3, so `collect` finds a step's log (a copy the
/// run began) without knowing the step's name.
pub fn oplog_prefix(index: u32, step: u32) -> String {
    if step == 0 {
        format!("{index:02}-")
    } else {
        format!("{index:02}.{step:02}-")
    }
}

/// Appends an op-log arriving in chunks to `part` (created if missing),
/// then renames it to `path`: a transfer that breaks leaves no file that
/// looks complete, and one that resumes continues the bytes `part` holds.
/// Errors name `what` (which log, from whom).
pub async fn save_oplog(
    stream: &mut tonic::Streaming<chorus_proto::pb::OpLogChunk>,
    part: &Path,
    path: &Path,
    what: &str,
) -> anyhow::Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(part)
        .await
        .with_context(|| format!("cannot create {}", part.display()))?;
    while let Some(chunk) = stream.message().await.with_context(|| what.to_string())? {
        file.write_all(&chunk.data)
            .await
            .with_context(|| format!("writing {}", part.display()))?;
    }
    file.flush().await?;
    drop(file);
    fs::rename(part, path)
        .with_context(|| format!("cannot rename {} to {}", part.display(), path.display()))
}

/// A name safe as one path component.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A run id: UTC time then the plan name, e.g. `20261123T215645Z-quickstart`.
pub fn run_id(now_ns: i64, plan: &str) -> String {
    let t = rfc3339_ns(now_ns);
    // 2026-11-23T21:56:45.123456789Z -> 20261123T215645Z
    let compact: String = t[..19].chars().filter(|c| *c != '-' && *c != ':').collect();
    format!("{compact}Z-{}", sanitize(plan))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_compact_and_safe() {
        assert_eq!(run_id(0, "a b/c"), "19700101T000000Z-a_b_c");
    }

    /// A run.json as the first controllers wrote it: no `step`, `oplog`,
    /// `transport`, per-stage clocks or schedule.
    const OLD_RUN_JSON: &str = r#"{
      "run_id": "20261123T215645Z-q", "plan": "q", "plan_file": "q.yaml",
      "status": "running", "error": null,
      "controller": {"version": "0.1.0", "hostname": "h", "cpus": 2, "os": "linux"},
      "started_at": "2026-11-23T21:56:45Z", "ended_at": "",
      "agents": [{"index": 0, "id": "a", "address": "127.0.0.1:7000",
                  "host": {"version": "0.1.0", "hostname": "h", "cpus": 2, "os": "linux"},
                  "clock_start": null, "clock_end": null, "drift_ppm": null}],
      "stages": [{"index": 0, "name": "prepare", "kind": "prepare", "target": "file:///d",
                  "start_at": "2026-11-23T21:56:46Z", "start_skew_ms": 0.5,
                  "agents": [{"id": "a", "status": "finished", "started": "", "ended": "",
                              "records_logged": 100, "error": null}]}],
      "timeline": {"file": "", "records": 0, "inputs": 0, "errors": []}
    }"#;

    #[test]
    fn an_older_run_json_reads_with_defaults() {
        let meta: RunMeta = serde_json::from_str(OLD_RUN_JSON).unwrap();
        assert_eq!(meta.status, RunStatus::Running);
        assert_eq!(meta.agents[0].address, "127.0.0.1:7000");
        let s = &meta.stages[0];
        assert_eq!((s.index, s.step, s.release_skew_ms), (0, 0, None));
        assert_eq!(s.agents[0].status, AgentStageStatus::Finished);
        assert_eq!(s.agents[0].records_logged, 100);
        assert_eq!(s.agents[0].oplog, None);
        assert!(meta.collect.is_none() && meta.transport.is_empty());
    }

    #[test]
    fn statuses_are_lowercase_words_and_survive_a_round_trip() {
        let mut meta: RunMeta = serde_json::from_str(OLD_RUN_JSON).unwrap();
        meta.status = RunStatus::Collected;
        meta.stages[0].step = 2;
        let a = &mut meta.stages[0].agents[0];
        a.status = AgentStageStatus::Stopped;
        a.schedule = Some(ScheduleReport {
            target_rate: 100.0,
            late_ops: 3,
            ..Default::default()
        });
        let json = serde_json::to_value(&meta).unwrap();
        assert_eq!(json["status"], "collected");
        assert_eq!(json["stages"][0]["agents"][0]["status"], "stopped");
        assert_eq!(json["stages"][0]["agents"][0]["schedule"]["late_ops"], 3);
        assert!(json.get("collect").is_none(), "{json:#}");
        let back: RunMeta = serde_json::from_value(json).unwrap();
        assert_eq!(back.stages[0].step, 2);
        let a = &back.stages[0].agents[0];
        assert_eq!(a.status, AgentStageStatus::Stopped);
        let schedule = a.schedule.as_ref().unwrap();
        assert_eq!((schedule.target_rate, schedule.late_ops), (100.0, 3));
        // Unknown words are refused, naming the value.
        let bad = OLD_RUN_JSON.replace("\"running\"", "\"paused\"");
        let e = serde_json::from_str::<RunMeta>(&bad)
            .unwrap_err()
            .to_string();
        assert!(e.contains("paused"), "{e}");
    }
}
