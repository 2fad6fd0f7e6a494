//! The background op-log writer: workers hand records to a bounded channel;
//! one OS thread formats them as TSV, compresses with zstd and writes the
//! file.
//!
//! The writer runs on its own thread rather than a tokio task because
//! formatting and compression are CPU work that would otherwise steal time
//! from the workers' runtime. The channel is bounded so a writer that falls
//! behind (slow disk) makes workers wait instead of growing memory without
//! limit; every such wait is counted and timed in [`WriterStats`], so the run
//! shows that the harness, not the store, set the pace. Records are never
//! dropped.

use super::record::{OpRecord, header_line};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;
use tokio::sync::mpsc;

/// Channel capacity in records (~200 bytes each in memory, so ~13 MiB when
/// full). Large enough to absorb a disk hiccup of tens of milliseconds at
/// a million ops per second without stalling workers; small enough that a
/// writer that really cannot keep up stalls them soon, visibly.
pub const OPLOG_CHANNEL_RECORDS: usize = 65_536;

/// Records a worker collects before it sends them as one message: one
/// channel operation and one writer wake-up per batch instead of per
/// record. Small enough that a batch is a few tens of KiB.
pub const SEND_BATCH_RECORDS: usize = 256;

/// Batches the writer thread takes from the channel per wake-up.
const RECV_BATCHES: usize = 64;

/// Uncompressed bytes buffered before handing them to zstd, so the encoder
/// works on large blocks instead of one short line at a time.
const WRITE_BUFFER_BYTES: usize = 1 << 20;

/// zstd level of op-logs: level 1 compresses op-log TSV about as well as
/// level 3 (measured: 22 vs 25 MB per million records, level 1 smaller)
/// at ~40% less CPU per record, and the writer thread's CPU is what caps
/// the op rate an agent can log.
pub(crate) const OPLOG_ZSTD_LEVEL: i32 = 1;

/// What the writer did, returned by [`OpLogWriter::finish`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriterStats {
    pub records: u64,
    /// Size of the finished file.
    pub bytes_compressed: u64,
    /// Sends that found the channel full and had to wait.
    pub backpressure_waits: u64,
    /// Total time senders spent waiting for room.
    pub backpressure_wait_ns: u64,
}

/// The writer has stopped (it failed, or was finished): the record was not
/// written. The cause is returned by [`OpLogWriter::finish`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("op-log writer has stopped; its error is reported when it is finished")]
pub struct OpLogClosed;

/// Backpressure counters shared by all clones of a sender.
#[derive(Debug, Default)]
struct Backpressure {
    waits: AtomicU64,
    wait_ns: AtomicU64,
}

/// The workers' handle: cheap to clone, one per worker.
#[derive(Clone, Debug)]
pub struct OpLogSender {
    tx: mpsc::Sender<Vec<OpRecord>>,
    backpressure: Arc<Backpressure>,
}

impl OpLogSender {
    /// Queues one record, waiting for room when the channel is full.
    pub async fn send(&self, rec: OpRecord) -> Result<(), OpLogClosed> {
        self.send_batch(vec![rec]).await
    }

    /// Queues records as one message (see [`SEND_BATCH_RECORDS`]), waiting
    /// for room when the channel is full.
    pub async fn send_batch(&self, batch: Vec<OpRecord>) -> Result<(), OpLogClosed> {
        if batch.is_empty() {
            return Ok(());
        }
        match self.tx.try_send(batch) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(OpLogClosed),
            Err(mpsc::error::TrySendError::Full(batch)) => {
                self.backpressure.waits.fetch_add(1, Ordering::Relaxed);
                let waited = Instant::now();
                let result = self.tx.send(batch).await.map_err(|_| OpLogClosed);
                let wait_ns = u64::try_from(waited.elapsed().as_nanos()).unwrap_or(u64::MAX);
                self.backpressure
                    .wait_ns
                    .fetch_add(wait_ns, Ordering::Relaxed);
                result
            }
        }
    }

    /// Sends so far that had to wait for room (all clones together).
    pub fn backpressure_waits(&self) -> u64 {
        self.backpressure.waits.load(Ordering::Relaxed)
    }

    /// Time spent waiting for room so far (all clones together).
    pub fn backpressure_wait_ns(&self) -> u64 {
        self.backpressure.wait_ns.load(Ordering::Relaxed)
    }
}

/// The owner's handle on the writer thread.
#[derive(Debug)]
pub struct OpLogWriter {
    path: PathBuf,
    thread: JoinHandle<io::Result<(u64, u64)>>,
    backpressure: Arc<Backpressure>,
}

impl OpLogWriter {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits for the thread to write everything queued, finish the zstd
    /// frame and fsync the file. Blocks: call it after every
    /// [`OpLogSender`] clone is dropped (the thread stops when the channel
    /// closes), and from async code use [`OpLogWriter::finish_async`].
    pub fn finish(self) -> io::Result<WriterStats> {
        let (records, bytes_compressed) = self
            .thread
            .join()
            .map_err(|_| io::Error::other("op-log writer thread panicked"))?
            .map_err(|e| {
                io::Error::new(e.kind(), format!("op-log {}: {e}", self.path.display()))
            })?;
        Ok(WriterStats {
            records,
            bytes_compressed,
            backpressure_waits: self.backpressure.waits.load(Ordering::Relaxed),
            backpressure_wait_ns: self.backpressure.wait_ns.load(Ordering::Relaxed),
        })
    }

    /// [`OpLogWriter::finish`] on tokio's blocking pool.
    pub async fn finish_async(self) -> io::Result<WriterStats> {
        tokio::task::spawn_blocking(move || self.finish())
            .await
            .map_err(io::Error::other)?
    }
}

/// Creates (truncating) `path`, writes the header and starts the writer
/// thread. Open errors are returned here, before any op runs.
pub fn spawn_writer(path: &Path) -> io::Result<(OpLogWriter, OpLogSender)> {
    // The channel carries batches: its bound in records is
    // OPLOG_CHANNEL_RECORDS.
    spawn_writer_with(path, OPLOG_CHANNEL_RECORDS / SEND_BATCH_RECORDS, None)
}

/// [`spawn_writer`] with a chosen capacity in messages (batches), and for
/// tests a gate the thread waits on before it starts draining (so a test
/// can fill the channel).
pub(crate) fn spawn_writer_with(
    path: &Path,
    capacity: usize,
    gate: Option<std::sync::mpsc::Receiver<()>>,
) -> io::Result<(OpLogWriter, OpLogSender)> {
    let sink = TsvZstdFile::create(path, OPLOG_ZSTD_LEVEL)?;
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let thread = std::thread::Builder::new()
        .name("oplog-writer".to_string())
        .spawn(move || {
            if let Some(gate) = gate {
                // A dropped gate sender opens the gate as well.
                let _ = gate.recv();
            }
            drain(rx, sink)
        })?;
    let backpressure = Arc::new(Backpressure::default());
    let writer = OpLogWriter {
        path: path.to_path_buf(),
        thread,
        backpressure: backpressure.clone(),
    };
    Ok((writer, OpLogSender { tx, backpressure }))
}

/// The writer thread: everything until the channel closes, then finish.
/// On a write error it returns at once; dropping `rx` then closes the
/// channel, so senders get [`OpLogClosed`] instead of waiting forever.
fn drain(mut rx: mpsc::Receiver<Vec<OpRecord>>, mut sink: TsvZstdFile) -> io::Result<(u64, u64)> {
    let mut batches = Vec::with_capacity(RECV_BATCHES);
    loop {
        batches.clear();
        if rx.blocking_recv_many(&mut batches, RECV_BATCHES) == 0 {
            break;
        }
        for rec in batches.iter().flatten() {
            sink.write(rec)?;
        }
    }
    sink.finish()
}

/// A synchronous zstd TSV file: header on creation, one line per record,
/// zstd frame finished and fsynced by [`TsvZstdFile::finish`]. Shared by
/// the writer thread, the merge and [`super::write_records`].
pub(crate) struct TsvZstdFile {
    out: BufWriter<zstd::Encoder<'static, File>>,
    /// Reused for every record so formatting does not allocate.
    line: String,
    records: u64,
}

impl TsvZstdFile {
    pub(crate) fn create(path: &Path, level: i32) -> io::Result<Self> {
        let file = File::create(path)?;
        let encoder = zstd::Encoder::new(file, level)?;
        let mut out = BufWriter::with_capacity(WRITE_BUFFER_BYTES, encoder);
        out.write_all(header_line().as_bytes())?;
        Ok(TsvZstdFile {
            out,
            line: String::with_capacity(512),
            records: 0,
        })
    }

    pub(crate) fn write(&mut self, rec: &OpRecord) -> io::Result<()> {
        self.line.clear();
        rec.write_tsv(&mut self.line);
        self.out.write_all(self.line.as_bytes())?;
        self.records += 1;
        Ok(())
    }

    /// Flushes, ends the zstd frame and fsyncs; returns (records, file bytes).
    pub(crate) fn finish(self) -> io::Result<(u64, u64)> {
        let encoder = self.out.into_inner().map_err(|e| e.into_error())?;
        let file = encoder.finish()?;
        file.sync_all()?;
        Ok((self.records, file.metadata()?.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oplog::reader::OpLogReader;
    use crate::oplog::test_util::record;

    fn read_all(path: &Path) -> Vec<OpRecord> {
        OpLogReader::open(path)
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn round_trip_many_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.tsv.zst");
        let (writer, sender) = spawn_writer(&path).unwrap();

        let mut expected = Vec::new();
        for n in 0..50_000u64 {
            expected.push(record(n, "agent-0"));
        }
        // Awkward strings: separators inside fields become spaces.
        let mut weird = record(50_000, "agent\t0");
        weird.error = "io: bad\tthing\nhappened\r\nhere ünïcødé".to_string();
        weird.file = "dir\twith\ttabs/obj\n".to_string();
        weird.first_byte_ns = None;
        weird.stage = String::new();
        expected.push(weird);
        // An absurdly long error text is cut at a character boundary.
        let mut long = record(50_001, "agent-0");
        long.error = "é".repeat(50_000);
        expected.push(long);

        let mut tasks = Vec::new();
        for chunk in expected.chunks(10_000) {
            let s = sender.clone();
            let chunk = chunk.to_vec();
            tasks.push(tokio::spawn(async move {
                for r in chunk {
                    s.send(r).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        drop(sender);
        let stats = writer.finish_async().await.unwrap();
        assert_eq!(stats.records, expected.len() as u64);
        assert_eq!(
            stats.bytes_compressed,
            std::fs::metadata(&path).unwrap().len()
        );

        let mut got = read_all(&path);
        got.sort_by_key(|r| r.idx);
        let long = got.pop().unwrap();
        assert_eq!(long.error.len(), crate::oplog::record::MAX_FIELD_BYTES);
        assert!(long.error.chars().all(|c| c == 'é'));
        let last = got.last().unwrap().clone();
        assert_eq!(last.error, "io: bad thing happened  here ünïcødé");
        assert_eq!(last.file, "dir with tabs/obj ");
        assert_eq!(last.client_id, "agent 0");
        assert_eq!(last.first_byte_ns, None);
        assert_eq!(&got[..50_000], &expected[..50_000]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn backpressure_waits_and_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bp.tsv.zst");
        let (gate_tx, gate_rx) = std::sync::mpsc::channel();
        let capacity = 4;
        let (writer, sender) = spawn_writer_with(&path, capacity, Some(gate_rx)).unwrap();

        // The thread is held at the gate: the first `capacity` sends fit…
        for n in 0..capacity as u64 {
            sender.send(record(n, "a")).await.unwrap();
        }
        assert_eq!(sender.backpressure_waits(), 0);
        // …the next one must wait.
        let s = sender.clone();
        let blocked = tokio::spawn(async move {
            for n in capacity as u64..1_000 {
                s.send(record(n, "a")).await.unwrap();
            }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!blocked.is_finished());
        assert_eq!(sender.backpressure_waits(), 1);
        gate_tx.send(()).unwrap();
        blocked.await.unwrap();
        drop(sender);

        let stats = writer.finish_async().await.unwrap();
        assert_eq!(stats.records, 1_000);
        assert!(stats.backpressure_waits >= 1);
        assert!(stats.backpressure_wait_ns >= 40_000_000, "{stats:?}");
        let got = read_all(&path);
        let idx: Vec<u64> = got.iter().map(|r| r.idx).collect();
        assert_eq!(idx, (0..1_000).collect::<Vec<_>>());
    }

    #[test]
    fn open_error_is_immediate() {
        let dir = tempfile::tempdir().unwrap();
        let err = spawn_writer(&dir.path().join("no/such/dir/x.zst")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn write_error_reaches_finish_and_senders() {
        // /dev/full accepts opens and fails every write with ENOSPC.
        let (writer, sender) = match spawn_writer(Path::new("/dev/full")) {
            Ok(w) => w,
            Err(_) => return, // no /dev/full in this sandbox
        };
        let mut closed = false;
        // Enough data to overflow the write buffer and reach the device.
        for n in 0..200_000u64 {
            if sender.send(record(n, "a")).await.is_err() {
                closed = true;
                break;
            }
        }
        drop(sender);
        let err = writer.finish_async().await.unwrap_err();
        assert!(err.to_string().contains("/dev/full"), "{err}");
        assert!(closed, "senders should see the writer stop");
    }
}
