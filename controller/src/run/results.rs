//! The run directory: `runs/<UTC time>-<plan name>/` with the plan as run,
//! `run.json`, summaries, per-agent op-logs and the merged timeline.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;
use chorus_common::clock::{ClockEstimate, rfc3339_ns};
use chorus_common::workload::ScheduleReport;
use serde::Serialize;

/// `run.json`: everything needed to interpret the run later.
#[derive(Serialize, Debug, Default)]
pub struct RunMeta {
    pub run_id: String,
    pub plan: String,
    pub plan_file: String,
    /// `completed`; `failed` or `interrupted` with `error` set.
    pub status: String,
    pub error: Option<String>,
    /// What the plan said to do about lost agents (`abort`, `continue`).
    pub on_agent_loss: String,
    /// Agents lost during the run, in the order they were found lost.
    pub lost_agents: Vec<LostAgentMeta>,
    /// Clock offsets or uncertainties past the plan's limits.
    pub clock_warnings: Vec<String>,
    /// Agents on another Chorus release than the controller's (same wire
    /// protocol: another protocol is refused before the run starts).
    #[serde(default)]
    pub version_warnings: Vec<String>,
    /// How the controller reached remote agents: `tls`, `token`,
    /// `tls+token`, `insecure`, or `loopback` (embedded agents).
    pub transport: String,
    /// Names (never values) of the variables forwarded to agents.
    pub forwarded_env: Vec<String>,
    pub controller: HostMeta,
    pub started_at: String,
    pub ended_at: String,
    pub agents: Vec<AgentMeta>,
    pub stages: Vec<StageMeta>,
    pub timeline: TimelineMeta,
}

#[derive(Serialize, Debug, Default)]
pub struct HostMeta {
    pub version: String,
    pub hostname: String,
    pub cpus: u32,
    pub os: String,
}

#[derive(Serialize, Debug)]
pub struct AgentMeta {
    pub index: u32,
    pub id: String,
    pub address: String,
    pub host: HostMeta,
    /// Whether the agent demands a client certificate or a token.
    pub authenticated: bool,
    /// Offsets are (agent clock − controller clock).
    pub clock_start: Option<ClockEstimate>,
    pub clock_end: Option<ClockEstimate>,
    pub drift_ppm: Option<f64>,
}

#[derive(Serialize, Debug)]
pub struct StageMeta {
    pub index: u32,
    pub name: String,
    pub kind: String,
    pub target: String,
    /// Controller clock.
    pub start_at: String,
    /// Spread of the agents' first-op times, clock-corrected. In open
    /// loop an op's start is its scheduled slot.
    pub start_skew_ms: Option<f64>,
    /// Spread of the instants the agents released their workers,
    /// clock-corrected: how well they woke up together.
    pub release_skew_ms: Option<f64>,
    pub agents: Vec<AgentStageMeta>,
}

/// An agent lost mid-run.
#[derive(Serialize, Debug, Clone)]
pub struct LostAgentMeta {
    pub id: String,
    /// Controller clock, when the loss was noticed.
    pub at: String,
    /// The stage it was lost in, or the one it was lost before.
    pub stage: String,
    pub reason: String,
}

/// One agent's stage times, corrected to the controller's clock.
#[derive(Serialize, Debug, Default)]
pub struct AgentStageMeta {
    pub id: String,
    /// `finished`, `failed` or `lost`.
    pub status: String,
    /// The clock measured just before the stage; its offset corrects this
    /// stage's op-log in the timeline.
    pub clock: Option<ClockEstimate>,
    pub started: String,
    pub first_op: Option<String>,
    pub ended: String,
    pub records_logged: u64,
    pub log_backpressure_waits: u64,
    pub log_backpressure_wait_ms: f64,
    /// Ops in the warm-up: in the op-log (flagged), not in the summary.
    pub warmup_ops: u64,
    pub retries: u64,
    /// Open loop: how this agent kept to its schedule.
    pub schedule: Option<ScheduleReport>,
    pub error: Option<String>,
    /// This stage's op-log in the run directory, relative to it: the
    /// whole log, or for an agent lost (or failed) mid-stage the part
    /// copied before (`….tsv.zst.partial`); `None` when nothing came.
    pub oplog: Option<String>,
    /// Bytes of the agent's op-log copied into `oplog`.
    pub oplog_bytes_collected: u64,
}

#[derive(Serialize, Debug, Default)]
pub struct TimelineMeta {
    pub file: String,
    pub records: u64,
    pub inputs: usize,
    pub errors: Vec<String>,
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
    pub fn agent_oplog(&self, id: &str, index: u32, stage: &str) -> anyhow::Result<PathBuf> {
        let dir = self.path.join("agents").join(sanitize(id));
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(dir.join(format!("{index:02}-{}.tsv.zst", sanitize(stage))))
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
}
