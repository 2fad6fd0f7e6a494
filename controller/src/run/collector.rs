//! Copies each agent's op-log of the running stage into the run directory
//! while the stage runs, then finishes the copy when the stage ends.
//!
//! An agent's log only grows, by whole zstd frames, so any prefix of it can
//! be copied and later continued from the same byte: every
//! `control.collect_interval` a per-agent task asks for the bytes past what
//! it holds and appends them to `agents/<id>/<NN>-<stage>.spool.zst.part`.
//! When the stage ends, an agent that finished it gets a last fetch from
//! there and the `.part` takes the log's final name; one that was lost (or
//! whose stage failed) keeps what was copied as `….spool.zst.partial`. So a
//! long stage's logs are mostly across before it ends, and a killed agent
//! leaves what it logged up to the last copy instead of nothing.
//!
//! Chunks go to disk one at a time, so the controller holds at most one
//! chunk per fetch, and at most [`MAX_CONCURRENT_FETCHES`] fetches run at
//! once. A mid-stage fetch that fails is a warning and is tried again at the
//! next interval; only the final fetch must succeed. Mid-stage copying never
//! holds up the stage: when the stage ends, a fetch in progress is dropped
//! at a chunk boundary (what was written stays) and the final fetch goes on
//! from there.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chorus_proto::pb;
use tokio::io::AsyncWriteExt;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use super::agents::AgentHandle;
use super::results::RunDir;
use crate::transport::{Client, status_text};

/// Op-log fetches running at once, over all agents: each holds a chunk
/// (1 MiB) in flight, so this bounds the controller's memory for logs.
pub const MAX_CONCURRENT_FETCHES: usize = 32;

/// Longest wait for a fetch to start or for its next chunk: an agent that
/// sends nothing this long (network cut) fails the fetch instead of
/// holding it forever.
const CHUNK_TIMEOUT: Duration = Duration::from_secs(30);

/// The file name suffix of a log being copied.
pub const PART_SUFFIX: &str = "part";

/// The file name suffix of what was copied of a log that cannot be
/// completed (its agent was lost, or its stage failed).
pub const PARTIAL_SUFFIX: &str = "partial";

/// `path` with `.suffix` added (`x.spool.zst` -> `x.spool.zst.part`).
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(".");
    s.push(suffix);
    PathBuf::from(s)
}

/// How a stage ended for one agent, as far as its log is concerned.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum End {
    /// The stage still runs.
    Running,
    /// The agent finished the stage: fetch the rest and check the size
    /// against what the agent reported (`0`: not known).
    Finish { expected: u64 },
    /// Lost, or its stage failed: keep what was copied.
    Keep,
}

/// What one agent's collection ended with.
#[derive(Debug, Default)]
pub struct Collected {
    /// Bytes of the agent's log held in the run directory.
    pub bytes: u64,
    /// Where: the final log, a `.partial`, or nothing when no byte came.
    pub path: Option<PathBuf>,
    /// Why the log could not be completed (`Finish` only).
    pub error: Option<anyhow::Error>,
}

/// One stage's collection on its agents.
pub struct StageCollection {
    agents: Vec<(watch::Sender<End>, JoinHandle<Collected>)>,
}

/// What a collection needs from the stage.
pub struct CollectContext<'a> {
    pub session_id: &'a str,
    pub stage_index: u32,
    /// The sub-step whose logs these are (0: the stage run whole).
    pub step: u32,
    /// The stage's (or step's) name, for the file name and messages.
    pub stage: &'a str,
    /// `None`: no copying while the stage runs, only at its end.
    pub interval: Option<Duration>,
    pub permits: Arc<Semaphore>,
}

impl StageCollection {
    /// Starts one copying task per agent (in `agents` order).
    pub fn start(cx: &CollectContext<'_>, agents: &[&AgentHandle], dir: &RunDir) -> Self {
        let agents = agents
            .iter()
            .map(|a| {
                let (tx, rx) = watch::channel(End::Running);
                let what = format!("op-log of stage `{}` from agent {}", cx.stage, a.id);
                let target = dir.agent_oplog(&a.id, cx.stage_index, cx.step, cx.stage);
                let copy = target.map(|path| LogCopy {
                    client: a.client.clone(),
                    request: pb::FetchOpLogRequest {
                        session_id: cx.session_id.to_string(),
                        stage_index: cx.stage_index,
                        run_id: String::new(),
                        offset: 0,
                        step: cx.step,
                    },
                    part: with_suffix(&path, PART_SUFFIX),
                    path,
                    file: None,
                    bytes: 0,
                    permits: cx.permits.clone(),
                    what: what.clone(),
                });
                let interval = cx.interval;
                let task = tokio::spawn(async move {
                    match copy {
                        Ok(copy) => copy.run(interval, rx).await,
                        Err(e) => Collected {
                            error: Some(e.context(what)),
                            ..Default::default()
                        },
                    }
                });
                (tx, task)
            })
            .collect();
        StageCollection { agents }
    }

    /// Tells every task how its agent's stage ended (`ends` in agent
    /// order) and waits for all of them: final fetches run side by side.
    pub async fn end(self, ends: &[End]) -> Vec<Collected> {
        let tasks: Vec<_> = self
            .agents
            .into_iter()
            .zip(ends)
            .map(|((tx, task), end)| {
                let _ = tx.send(*end);
                // The sender lives until the task is done: a dropped one
                // reads as `Keep`.
                async move {
                    let r = task.await;
                    drop(tx);
                    r.unwrap_or_else(|e| Collected {
                        error: Some(anyhow::anyhow!("op-log copying task failed: {e}")),
                        ..Default::default()
                    })
                }
            })
            .collect();
        futures::future::join_all(tasks).await
    }
}

/// One agent's log being copied.
struct LogCopy {
    client: Client,
    /// Its `offset` is set per fetch.
    request: pb::FetchOpLogRequest,
    path: PathBuf,
    part: PathBuf,
    /// The `.part` file, opened on the first byte.
    file: Option<tokio::fs::File>,
    /// Bytes in the `.part`: the offset of the next fetch.
    bytes: u64,
    permits: Arc<Semaphore>,
    /// Which log, from whom, for messages.
    what: String,
}

/// Resolves when the stage has ended (or no one can say so any more);
/// never with no receiver (a final fetch).
async fn ended(end: &mut Option<&mut watch::Receiver<End>>) {
    match end {
        Some(rx) => {
            let _ = rx.wait_for(|e| *e != End::Running).await;
        }
        None => std::future::pending().await,
    }
}

impl LogCopy {
    async fn run(mut self, interval: Option<Duration>, mut rx: watch::Receiver<End>) -> Collected {
        if let Some(every) = interval {
            let mut failing = false;
            loop {
                let mut end = Some(&mut rx);
                tokio::select! {
                    _ = ended(&mut end) => break,
                    _ = tokio::time::sleep(every) => {}
                }
                match self.fetch(Some(&mut rx)).await {
                    Ok(_) if failing => {
                        failing = false;
                        tracing::info!("{}: copying again", self.what);
                    }
                    Ok(_) => {}
                    // Said once per streak: a lost agent fails every time
                    // until the stage ends.
                    Err(e) if !failing => {
                        failing = true;
                        tracing::warn!(
                            "{}: copy while the stage runs failed, trying again every {:.1} s: {e:#}",
                            self.what,
                            every.as_secs_f64()
                        );
                    }
                    Err(e) => tracing::debug!("{}: copy failed again: {e:#}", self.what),
                }
            }
        }
        let end = match rx.wait_for(|e| *e != End::Running).await {
            Ok(e) => *e,
            Err(_) => End::Keep,
        };
        match end {
            End::Finish { expected } => self.finish(expected).await,
            _ => self.keep().await,
        }
    }

    /// Copies from `self.bytes` to the agent's end of the log as it is now.
    /// With `end`, gives up at a chunk boundary when the stage ends
    /// (`Ok(false)`); what was written is kept and counted.
    async fn fetch(&mut self, mut end: Option<&mut watch::Receiver<End>>) -> anyhow::Result<bool> {
        let _permit = tokio::select! {
            p = self.permits.clone().acquire_owned() => p.context("fetch limiter closed")?,
            _ = ended(&mut end) => return Ok(false),
        };
        self.request.offset = self.bytes;
        let call = self.client.fetch_op_log(self.request.clone());
        let mut stream = tokio::select! {
            r = tokio::time::timeout(CHUNK_TIMEOUT, call) => match r {
                Err(_) => anyhow::bail!("no answer for {} s", CHUNK_TIMEOUT.as_secs()),
                Ok(Err(s)) => anyhow::bail!("{}", status_text(&s)),
                Ok(Ok(r)) => r.into_inner(),
            },
            _ = ended(&mut end) => return Ok(false),
        };
        loop {
            let chunk = tokio::select! {
                m = tokio::time::timeout(CHUNK_TIMEOUT, stream.message()) => match m {
                    Err(_) => anyhow::bail!("no data for {} s", CHUNK_TIMEOUT.as_secs()),
                    Ok(Err(s)) => anyhow::bail!("{}", status_text(&s)),
                    Ok(Ok(None)) => break,
                    Ok(Ok(Some(c))) => c,
                },
                // Dropping the stream cancels the call on the agent.
                _ = ended(&mut end) => return Ok(false),
            };
            // Not raced with the stage's end: a chunk is written whole, so
            // the `.part` always holds exactly `bytes` bytes of the log.
            self.write(&chunk.data).await?;
        }
        Ok(true)
    }

    async fn write(&mut self, data: &[u8]) -> anyhow::Result<()> {
        let file = match &mut self.file {
            Some(f) => f,
            None => self.file.insert(
                tokio::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.part)
                    .await
                    .with_context(|| format!("cannot create {}", self.part.display()))?,
            ),
        };
        file.write_all(data)
            .await
            .with_context(|| format!("writing {}", self.part.display()))?;
        // Flushed per chunk: tokio writes in the background otherwise, and
        // the byte count must be what is on disk.
        file.flush()
            .await
            .with_context(|| format!("writing {}", self.part.display()))?;
        self.bytes += data.len() as u64;
        Ok(())
    }

    /// The last fetch, then the log under its final name.
    async fn finish(mut self, expected: u64) -> Collected {
        let result = self.complete(expected).await;
        let (path, error) = match result {
            Ok(()) => (Some(self.path.clone()), None),
            Err(e) => (
                self.file.is_some().then(|| self.part.clone()),
                Some(e.context(self.what.clone())),
            ),
        };
        Collected {
            bytes: self.bytes,
            path,
            error,
        }
    }

    async fn complete(&mut self, expected: u64) -> anyhow::Result<()> {
        self.fetch(None).await.context("fetching")?;
        if expected != 0 && self.bytes != expected {
            anyhow::bail!(
                "{} bytes copied, but the agent wrote {expected}",
                self.bytes
            );
        }
        if self.file.is_none() {
            // An empty log still gets its file.
            self.write(&[]).await?;
        }
        self.file = None;
        std::fs::rename(&self.part, &self.path).with_context(|| {
            format!(
                "cannot rename {} to {}",
                self.part.display(),
                self.path.display()
            )
        })
    }

    /// What was copied, kept as `.partial`; nothing when no byte came.
    async fn keep(mut self) -> Collected {
        if self.file.take().is_none() {
            return Collected::default();
        }
        let partial = with_suffix(&self.path, PARTIAL_SUFFIX);
        match std::fs::rename(&self.part, &partial) {
            Ok(()) => Collected {
                bytes: self.bytes,
                path: Some(partial),
                error: None,
            },
            Err(e) => {
                tracing::warn!(
                    "cannot rename {} to {}: {e}",
                    self.part.display(),
                    partial.display()
                );
                Collected {
                    bytes: self.bytes,
                    path: Some(self.part.clone()),
                    error: None,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_are_added_not_replaced() {
        let p = Path::new("runs/r/agents/a/01-load.spool.zst");
        assert_eq!(
            with_suffix(p, PART_SUFFIX),
            Path::new("runs/r/agents/a/01-load.spool.zst.part")
        );
        assert_eq!(
            with_suffix(p, PARTIAL_SUFFIX),
            Path::new("runs/r/agents/a/01-load.spool.zst.partial")
        );
    }
}
