//! Serving an op-log file in chunks, from any offset, also while its stage
//! still writes it (the writer only appends whole zstd frames).

use std::path::Path;

use chorus_proto::{OPLOG_CHUNK_BYTES, pb};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

/// Op-log chunks read ahead of the network.
const CHUNK_QUEUE: usize = 4;

pub type Chunks = ReceiverStream<Result<pb::OpLogChunk, Status>>;

/// Streams `path` from `offset` to its end as it is now; `what` names the
/// log in errors ("stage 3", "stage 3 step 2").
pub async fn stream(path: &Path, offset: u64, what: &str) -> Result<Chunks, Status> {
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|e| Status::internal(format!("cannot open {}: {e}", path.display())))?;
    // The end as it is now: a log still being written is sent up to
    // here, and the caller comes back later for the rest.
    let end = file
        .metadata()
        .await
        .map_err(|e| Status::internal(format!("cannot stat {}: {e}", path.display())))?
        .len();
    if offset > end {
        return Err(Status::out_of_range(format!(
            "offset {offset} is past the end of the op-log of {what} ({end} bytes)"
        )));
    }
    file.seek(std::io::SeekFrom::Start(offset))
        .await
        .map_err(|e| Status::internal(format!("cannot seek in {}: {e}", path.display())))?;
    let mut left = end - offset;
    let (tx, rx) = mpsc::channel(CHUNK_QUEUE);
    tokio::spawn(async move {
        while left > 0 {
            let want = left.min(OPLOG_CHUNK_BYTES as u64) as usize;
            let mut buf = vec![0u8; want];
            let n = match file.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    let _ = tx
                        .send(Err(Status::internal(format!("reading op-log: {e}"))))
                        .await;
                    break;
                }
            };
            buf.truncate(n);
            left -= n as u64;
            if tx.send(Ok(pb::OpLogChunk { data: buf })).await.is_err() {
                break;
            }
        }
    });
    Ok(ReceiverStream::new(rx))
}

/// How a stage's (or step's) log is named in messages.
pub fn log_name(stage: u32, step: u32) -> String {
    match step {
        0 => format!("stage {stage}"),
        s => format!("stage {stage} step {s}"),
    }
}
