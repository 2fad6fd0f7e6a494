//! Shipping a replay trace to the agents (`PutTrace`), so that each agent,
//! wherever it runs (Helm, SLURM), streams the trace from a local copy.
//!
//! Contract of [`ship_trace`]:
//!
//! - Call it after `open_sessions` and before the replay stage runs: the
//!   copy belongs to the session (`session_id`) and lives in the agent's
//!   spool folder for the run, removed with it at `EndSession`.
//! - It hashes the file once (SHA-256 and length: the [`TraceId`]), then
//!   sends it to every agent at once, at most [`TRACE_FANOUT`] at a time,
//!   each from its own reader of the file in [`TRACE_CHUNK_BYTES`] chunks
//!   (memory stays a few chunks per agent however large the trace).
//! - Each call has a deadline of [`TRACE_CALL_BASE`] plus the trace's
//!   length at [`TRACE_MIN_BYTES_PER_SEC`]; an agent silent past it, or one
//!   that refuses (short stream, hash mismatch, no such session), is an
//!   error naming the agent and `PutTrace`; when several fail, each is
//!   named (up to `agents::NAMED_FAILURES`).
//! - An agent that already holds the id in this session answers at once,
//!   so shipping the same trace again (a second replay stage) costs one
//!   message per agent.
//! - The returned id is what the replay stage names; on the agent,
//!   `Session::trace_path(&id)` gives the checked local copy.
//! - The file must not change while shipped: a change shows as a hash
//!   mismatch on the agents (an error), never as a silently different
//!   trace.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use chorus_common::trace::TraceId;
use chorus_proto::{TRACE_CHUNK_BYTES, pb};
use futures::StreamExt;
use tokio::io::AsyncReadExt;

use super::agents::{AgentHandle, several};

/// Agents sent the trace at once: enough to keep the controller's link
/// busy, few enough that each stream gets a useful share of it.
pub const TRACE_FANOUT: usize = 8;

/// Part of every `PutTrace` deadline that does not depend on size:
/// connection, the agent's disk sync, the reply.
pub const TRACE_CALL_BASE: Duration = Duration::from_secs(30);

/// Slowest transfer rate a `PutTrace` deadline allows for (per agent, with
/// [`TRACE_FANOUT`] sharing the controller's link).
pub const TRACE_MIN_BYTES_PER_SEC: u64 = 4 << 20;

/// The deadline of one `PutTrace` of `len` bytes.
pub fn trace_deadline(len: u64) -> Duration {
    TRACE_CALL_BASE + Duration::from_secs_f64(len as f64 / TRACE_MIN_BYTES_PER_SEC as f64)
}

/// Sends the trace at `path` to every agent of `agents` for the session
/// `session_id`; see the module docs for the contract.
pub async fn ship_trace(
    agents: &[AgentHandle],
    session_id: &str,
    path: &Path,
) -> anyhow::Result<TraceId> {
    let owned = path.to_path_buf();
    let id = tokio::task::spawn_blocking(move || TraceId::of_file(&owned))
        .await
        .context("hashing the trace")?
        .with_context(|| format!("cannot read trace {}", path.display()))?;
    let failures: Vec<anyhow::Error> = futures::stream::iter(agents)
        .map(|a| put_trace(a, session_id, path, &id))
        .buffer_unordered(TRACE_FANOUT)
        .filter_map(|r| async move { r.err() })
        .collect()
        .await;
    if !failures.is_empty() {
        return Err(several("could not take the trace", failures, agents.len()));
    }
    Ok(id)
}

/// One agent's `PutTrace`: the header announcing `id`, then the first
/// `id.len` bytes of `path`. Returns whether the agent held it already.
pub(crate) async fn put_trace(
    agent: &AgentHandle,
    session_id: &str,
    path: &Path,
    id: &TraceId,
) -> anyhow::Result<bool> {
    let file = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("cannot open trace {}", path.display()))?;
    // A read error cannot travel in the request stream: it ends the stream
    // (the agent then refuses a short trace) and is reported from here.
    let read_error: Arc<Mutex<Option<std::io::Error>>> = Arc::default();
    let body = chunks(file, id.len, read_error.clone());
    let name = path.to_string_lossy();
    let request = futures::stream::once(std::future::ready(chorus_proto::trace_header(
        session_id, id, &name,
    )))
    .chain(body);
    let mut client = agent.client.clone();
    let limit = trace_deadline(id.len);
    let reply =
        crate::transport::call(&agent.name(), "PutTrace", limit, client.put_trace(request)).await;
    if let Some(e) = read_error.lock().unwrap_or_else(|p| p.into_inner()).take() {
        anyhow::bail!("reading trace {} for {}: {e}", path.display(), agent.name());
    }
    Ok(reply?.already_held)
}

/// The first `len` bytes of `file` as `TraceChunk`s of at most
/// [`TRACE_CHUNK_BYTES`], read as the stream is polled.
fn chunks(
    file: tokio::fs::File,
    len: u64,
    error: Arc<Mutex<Option<std::io::Error>>>,
) -> impl futures::Stream<Item = pb::TraceChunk> + Send + 'static {
    futures::stream::unfold((file, len), move |(mut file, left)| {
        let error = error.clone();
        async move {
            if left == 0 {
                return None;
            }
            let mut data = vec![0u8; left.min(TRACE_CHUNK_BYTES as u64) as usize];
            let n = match file.read(&mut data).await {
                Ok(0) => return None,
                Ok(n) => n,
                Err(e) => {
                    *error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                    return None;
                }
            };
            data.truncate(n);
            let chunk = pb::TraceChunk {
                data,
                ..Default::default()
            };
            Some((chunk, (file, left - n as u64)))
        }
    })
}

#[cfg(test)]
mod tests;
