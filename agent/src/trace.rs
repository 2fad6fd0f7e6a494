//! Receiving a replay trace (`PutTrace`): the controller streams the file;
//! it is written, chunk by chunk, to the session's spool folder, checked
//! for length and SHA-256, and then known to the session by its id
//! ([`crate::session::Session::trace_path`]), where a replay stage reads it.
//!
//! Memory is one chunk at a time (each at most `MAX_MESSAGE_BYTES`, the
//! server's decoding limit). The file is written under a name of its own
//! (`*.part-N`) and renamed to the id's name only once checked, so a
//! stream cut short or a wrong hash leaves no file that looks whole; two
//! calls for the same trace at once each write their own part and the
//! second rename replaces an identical file.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use chorus_common::trace::{TraceHasher, TraceId};
use chorus_proto::pb;
use futures::{Stream, StreamExt};
use tokio::io::AsyncWriteExt;
use tonic::Status;

use crate::session::SessionSlot;

/// Makes part-file names unique within the process.
static PART: AtomicU64 = AtomicU64::new(0);

/// What became of a `PutTrace`.
pub enum Received {
    /// The session held the trace already; no data was read.
    Held,
    /// Written and checked at this path.
    Stored(PathBuf),
}

/// Serves one `PutTrace` stream for the agent `agent` (its id, for
/// messages).
pub async fn receive(
    slot: &SessionSlot,
    agent: &str,
    mut chunks: impl Stream<Item = Result<pb::TraceChunk, Status>> + Unpin,
) -> Result<Received, Status> {
    let first = chunks
        .next()
        .await
        .ok_or_else(|| Status::invalid_argument("PutTrace: empty stream, no first chunk"))??;
    let id = chorus_proto::trace_id_of(&first).map_err(Status::invalid_argument)?;
    let dir = slot.with(|s| {
        let session = crate::service::check_session(s, &first.session_id)?;
        session.trace_names.insert(first.name.clone(), id);
        Ok::<_, Status>(match session.trace_path(&id) {
            Some(_) => None,
            None => Some(session.dir.clone()),
        })
    })?;
    let Some(dir) = dir else {
        return Ok(Received::Held);
    };

    let path = dir.join(id.file_name());
    let part = dir.join(format!(
        "{}.part-{}",
        id.file_name(),
        PART.fetch_add(1, Ordering::Relaxed)
    ));
    let written = write_checked(&part, &id, agent, first.data, &mut chunks).await;
    if let Err(e) = written {
        let _ = tokio::fs::remove_file(&part).await;
        return Err(e);
    }
    tokio::fs::rename(&part, &path)
        .await
        .map_err(|e| Status::internal(format!("cannot rename {}: {e}", part.display())))?;
    // The session may have ended while the bytes came (its spool folder
    // then goes with it); only the session that asked gets the path.
    slot.with(|s| {
        let session = crate::service::check_session(s, &first.session_id)?;
        session.traces.insert(id, path.clone());
        Ok::<_, Status>(())
    })?;
    Ok(Received::Stored(path))
}

/// Writes `first_data` and the rest of `chunks` to `part`, then checks them
/// against `id`.
async fn write_checked(
    part: &Path,
    id: &TraceId,
    agent: &str,
    first_data: Vec<u8>,
    chunks: &mut (impl Stream<Item = Result<pb::TraceChunk, Status>> + Unpin),
) -> Result<(), Status> {
    let io = |what: &str, e: std::io::Error| {
        Status::internal(format!("agent {agent}: {what} {}: {e}", part.display()))
    };
    let file = tokio::fs::File::create(part)
        .await
        .map_err(|e| io("cannot create", e))?;
    let mut out = tokio::io::BufWriter::new(file);
    let mut hasher = TraceHasher::new();
    let mut data = first_data;
    loop {
        if hasher.len() + data.len() as u64 > id.len {
            return Err(Status::invalid_argument(format!(
                "agent {agent}: trace {id}: more than the {} bytes announced",
                id.len
            )));
        }
        hasher.update(&data);
        out.write_all(&data)
            .await
            .map_err(|e| io("cannot write", e))?;
        match chunks.next().await {
            Some(chunk) => data = chunk?.data,
            None => break,
        }
    }
    out.flush().await.map_err(|e| io("cannot write", e))?;
    out.into_inner()
        .sync_all()
        .await
        .map_err(|e| io("cannot sync", e))?;
    let got = hasher.finish();
    if got.len != id.len {
        return Err(Status::invalid_argument(format!(
            "agent {agent}: trace {id}: stream ended after {} of {} bytes",
            got.len, id.len
        )));
    }
    if got != *id {
        return Err(Status::data_loss(format!(
            "agent {agent}: trace {id}: received bytes hash to {}",
            got.hex()
        )));
    }
    Ok(())
}
