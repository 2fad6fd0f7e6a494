//! The background op-log writer: workers hand records to a bounded channel;
//! one OS thread formats them as TSV, compresses with zstd and writes the
//! file.
//!
//! The workload engine sends [`LogBatch`]es: per op only what varies
//! ([`super::batch::LogEntry`], no heap memory for a successful op), per
//! batch the stage's constants and endpoints, and one `idx` base. The writer
//! formats straight into a byte buffer (see `record::LineFormatter`) and
//! compresses each megabyte of lines in one call, as one zstd frame. This
//! module's tests can send whole [`OpRecord`](super::record::OpRecord)s too; both produce the same
//! lines.
//!
//! The writer runs on its own thread rather than a tokio task because
//! formatting and compression are CPU work that would otherwise steal time
//! from the workers' runtime. The channel is bounded so a writer that falls
//! behind (slow disk) makes workers wait instead of growing memory without
//! limit; every such wait is counted and timed in [`WriterStats`], so the run
//! shows that the harness, not the store, set the pace. Records are never
//! dropped.

use super::batch::{LogBatch, LogContext, Slot};
use super::frames::FrameFile;
#[cfg(test)]
use super::record::OpRecord;
use super::record::{LineFormatter, header_line};
use super::spool::SpoolWriter;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Channel capacity in records (56 bytes each in a worker's batch, so
/// ~4 MiB when full). Large enough to absorb a disk hiccup of tens of milliseconds at
/// a million ops per second without stalling workers; small enough that a
/// writer that really cannot keep up stalls them soon, visibly.
pub const OPLOG_CHANNEL_RECORDS: usize = 65_536;

/// Records a worker collects before it sends them as one message: one
/// channel operation and one writer wake-up per batch instead of per
/// record. Small enough that a batch is a few tens of KiB.
pub const SEND_BATCH_RECORDS: usize = 256;

/// Batches the writer thread takes from the channel per wake-up.
const RECV_BATCHES: usize = 64;

/// How long the writer sleeps on finding the channel empty before it parks
/// until woken (see `drain`). At 3M ops/s that is ~12 batches, far below the
/// channel's bound, so it never makes a worker wait.
const IDLE_NAP: Duration = Duration::from_millis(1);

/// Oldest buffered line before its frame is written anyway: a slow stage
/// (a few hundred ops/s) would otherwise fill a frame only every few
/// minutes, and the controller's copy of the log taken during the stage
/// (and what is left of it if the agent dies) would lag that far behind.
/// Frames made this way are smaller and compress a little worse; at rates
/// where that shows, they are full long before a second passes.
const FRAME_MAX_AGE: Duration = Duration::from_secs(1);

/// Longest nap of an idle writer with lines buffered: it cannot park (no
/// wake-up would come when they age), so it naps from [`IDLE_NAP`],
/// doubling while nothing comes, up to this, until they are
/// [`FRAME_MAX_AGE`] old and written; then it parks. Doubling from 1 ms
/// keeps a writer that merely drained a busy channel looking again soon:
/// one long nap there lets the channel fill and stalls the workers
/// (measured: -35% engine throughput with a fixed 50 ms nap).
const PENDING_NAP: Duration = Duration::from_millis(50);

/// zstd window (log2 bytes) and hash table (log2 entries) at level 1. Op-log
/// lines repeat within a few hundred bytes, so a 128 KiB window and a 4K
/// entry table that stay in L2 cache compress as well as level 1's defaults
/// (512 KiB and 16K for large inputs) at ~20% less CPU (measured: 19.0 vs
/// 19.6 bytes per record, 155 vs 195 ns per record). Also less memory for
/// every reader.
const OPLOG_ZSTD_WINDOW_LOG: u32 = 17;
const OPLOG_ZSTD_HASH_LOG: u32 = 12;

/// zstd level of op-logs: level 1 compresses op-log TSV about as well as
/// level 3 (measured: 22 vs 25 MB per million records, level 1 smaller)
/// at ~40% less CPU per record, and the writer thread's CPU is what caps
/// the op rate an agent can log.
pub(crate) const OPLOG_ZSTD_LEVEL: i32 = 1;

/// What the writer writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OpLogFormat {
    /// A binary spool (`super::spool`): the agent's format, ~4x less CPU
    /// per op; readers turn it into the TSV below.
    #[default]
    Spool,
    /// zstd TSV, as every op-log was before spools (for measurements and
    /// tools that want text straight away).
    Tsv,
}

/// The writer thread's file, in either format.
enum Sink {
    Tsv(TsvZstdFile),
    Spool(SpoolWriter),
}

impl Sink {
    fn create(path: &Path, format: OpLogFormat) -> io::Result<Self> {
        Ok(match format {
            OpLogFormat::Tsv => Sink::Tsv(TsvZstdFile::create(path, OPLOG_ZSTD_LEVEL)?),
            OpLogFormat::Spool => Sink::Spool(SpoolWriter::create(path)?),
        })
    }

    #[cfg(test)]
    fn write(&mut self, rec: &OpRecord) -> io::Result<()> {
        match self {
            Sink::Tsv(f) => f.write(rec),
            Sink::Spool(f) => f.write_batch(&LogBatch::from_record(rec)),
        }
    }

    fn write_batch(&mut self, batch: &LogBatch) -> io::Result<()> {
        match self {
            Sink::Tsv(f) => f.write_batch(batch),
            Sink::Spool(f) => f.write_batch(batch),
        }
    }

    /// The frames both formats write.
    fn frames(&mut self) -> &mut FrameFile {
        match self {
            Sink::Tsv(f) => &mut f.out,
            Sink::Spool(f) => f.frames(),
        }
    }

    fn finish(self) -> io::Result<(u64, u64)> {
        match self {
            Sink::Tsv(f) => f.out.finish(),
            Sink::Spool(f) => f.finish(),
        }
    }
}

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

/// One channel message.
#[derive(Debug)]
enum Message {
    /// Whole records, from tests ([`OpLogSender::send`]).
    #[cfg(test)]
    Records(Vec<OpRecord>),
    Batch(LogBatch),
}

/// Slot buffers of written batches, handed back to the workers: a fresh
/// buffer per batch would cost the worker's core page faults (the
/// allocator returns freed pages to the system) and a cross-thread free.
#[derive(Debug, Default)]
struct SlotPool(Mutex<Vec<Vec<Slot>>>);

/// Most buffers kept in a [`SlotPool`] (~14 KiB each).
const POOL_BUFFERS: usize = 64;

impl SlotPool {
    fn take(&self) -> Option<Vec<Slot>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).pop()
    }

    fn give(&self, slots: Vec<Slot>) {
        if slots.capacity() == 0 {
            return;
        }
        let mut pool = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < POOL_BUFFERS {
            pool.push(slots);
        }
    }
}

/// The workers' handle: cheap to clone, one per worker.
#[derive(Clone, Debug)]
pub struct OpLogSender {
    tx: mpsc::Sender<Message>,
    backpressure: Arc<Backpressure>,
    pool: Arc<SlotPool>,
}

impl OpLogSender {
    /// Queues one record, waiting for room when the channel is full. For
    /// this module's tests: the engine sends [`LogBatch`]es.
    #[cfg(test)]
    pub async fn send(&self, rec: OpRecord) -> Result<(), OpLogClosed> {
        self.send_batch(vec![rec]).await
    }

    /// Queues records as one message (see [`SEND_BATCH_RECORDS`]), waiting
    /// for room when the channel is full. Tests only, as `send`.
    #[cfg(test)]
    pub async fn send_batch(&self, batch: Vec<OpRecord>) -> Result<(), OpLogClosed> {
        if batch.is_empty() {
            return Ok(());
        }
        self.send_message(Message::Records(batch)).await
    }

    /// An empty batch with room for [`SEND_BATCH_RECORDS`] entries, on a
    /// buffer the writer is done with when there is one.
    pub fn new_log_batch(&self, context: Arc<LogContext>) -> LogBatch {
        match self.pool.take() {
            Some(slots) => LogBatch::with_slots(context, slots),
            None => LogBatch::with_capacity(context, SEND_BATCH_RECORDS),
        }
    }

    /// Queues a worker's batch of entries as one message, waiting for room
    /// when the channel is full. Its `idx` base must be set.
    pub async fn send_log_batch(&self, batch: LogBatch) -> Result<(), OpLogClosed> {
        if batch.is_empty() {
            return Ok(());
        }
        self.send_message(Message::Batch(batch)).await
    }

    async fn send_message(&self, message: Message) -> Result<(), OpLogClosed> {
        match self.tx.try_send(message) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(OpLogClosed),
            Err(mpsc::error::TrySendError::Full(message)) => {
                self.backpressure.waits.fetch_add(1, Ordering::Relaxed);
                let waited = Instant::now();
                let result = self.tx.send(message).await.map_err(|_| OpLogClosed);
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
    spawn_writer_as(path, OpLogFormat::default())
}

/// [`spawn_writer`] writing `format`.
pub fn spawn_writer_as(path: &Path, format: OpLogFormat) -> io::Result<(OpLogWriter, OpLogSender)> {
    // The channel carries batches: its bound in records is
    // OPLOG_CHANNEL_RECORDS.
    spawn_writer_with(
        path,
        format,
        OPLOG_CHANNEL_RECORDS / SEND_BATCH_RECORDS,
        None,
    )
}

/// [`spawn_writer`] with a chosen capacity in messages (batches), and for
/// tests a gate the thread waits on before it starts draining (so a test
/// can fill the channel).
pub(crate) fn spawn_writer_with(
    path: &Path,
    format: OpLogFormat,
    capacity: usize,
    gate: Option<std::sync::mpsc::Receiver<()>>,
) -> io::Result<(OpLogWriter, OpLogSender)> {
    let sink = Sink::create(path, format)?;
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let pool = Arc::new(SlotPool::default());
    let writer_pool = pool.clone();
    let thread = std::thread::Builder::new()
        .name("oplog-writer".to_string())
        .spawn(move || {
            if let Some(gate) = gate {
                // A dropped gate sender opens the gate as well.
                let _ = gate.recv();
            }
            drain(rx, sink, &writer_pool)
        })?;
    let backpressure = Arc::new(Backpressure::default());
    let writer = OpLogWriter {
        path: path.to_path_buf(),
        thread,
        backpressure: backpressure.clone(),
    };
    Ok((
        writer,
        OpLogSender {
            tx,
            backpressure,
            pool,
        },
    ))
}

/// The writer thread: everything until the channel closes, then finish.
/// On a write error it returns at once; dropping `rx` then closes the
/// channel, so senders get [`OpLogClosed`] instead of waiting forever.
///
/// It takes what is queued without registering to be woken; only when the
/// channel is still empty after an [`IDLE_NAP`] does it park until a sender
/// wakes it. A busy stage thus never pays a thread wake-up (a futex call on
/// the worker's core) per batch, and an idle one costs no polling.
fn drain(
    mut rx: mpsc::Receiver<Message>,
    mut sink: Sink,
    pool: &SlotPool,
) -> io::Result<(u64, u64)> {
    let mut messages = Vec::with_capacity(RECV_BATCHES);
    let mut napped = false;
    let mut pending_nap = IDLE_NAP;
    loop {
        let mut closed = false;
        while messages.len() < RECV_BATCHES {
            match rx.try_recv() {
                Ok(m) => messages.push(m),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
        }
        if messages.is_empty() {
            if closed {
                break;
            }
            if let Some(age) = sink.frames().pending_age() {
                if age >= FRAME_MAX_AGE {
                    sink.frames().compress()?;
                } else {
                    std::thread::sleep(pending_nap.min(FRAME_MAX_AGE - age));
                    pending_nap = (pending_nap * 2).min(PENDING_NAP);
                }
                continue;
            }
            if !napped {
                std::thread::sleep(IDLE_NAP);
                napped = true;
                continue;
            }
            if rx.blocking_recv_many(&mut messages, RECV_BATCHES) == 0 {
                break;
            }
        }
        napped = false;
        pending_nap = IDLE_NAP;
        for message in messages.drain(..) {
            match message {
                #[cfg(test)]
                Message::Records(records) => {
                    for rec in &records {
                        sink.write(rec)?;
                    }
                }
                Message::Batch(batch) => {
                    sink.write_batch(&batch)?;
                    pool.give(batch.into_slots());
                }
            }
        }
        if sink
            .frames()
            .pending_age()
            .is_some_and(|age| age >= FRAME_MAX_AGE)
        {
            sink.frames().compress()?;
        }
    }
    sink.finish()
}

/// The writer's zstd TSV file: the header, then one line per record,
/// formatted into [`FrameFile`]'s buffer (see there for the frames).
pub(crate) struct TsvZstdFile {
    out: FrameFile,
    format: LineFormatter,
}

impl TsvZstdFile {
    pub(crate) fn create(path: &Path, level: i32) -> io::Result<Self> {
        let file = File::create(path)?;
        let mut zstd = zstd::bulk::Compressor::new(level)?;
        if level == OPLOG_ZSTD_LEVEL {
            use zstd::zstd_safe::CParameter;
            zstd.set_parameter(CParameter::WindowLog(OPLOG_ZSTD_WINDOW_LOG))?;
            zstd.set_parameter(CParameter::HashLog(OPLOG_ZSTD_HASH_LOG))?;
        }
        // The header goes out in the first frame, with the first lines.
        let mut out = FrameFile::new(file, zstd, 0);
        out.buf.extend_from_slice(header_line().as_bytes());
        Ok(TsvZstdFile {
            out,
            format: LineFormatter::new(),
        })
    }

    #[cfg(test)]
    pub(crate) fn write(&mut self, rec: &OpRecord) -> io::Result<()> {
        self.format.record(rec, &mut self.out.buf);
        self.out.added(1)
    }

    pub(crate) fn write_batch(&mut self, batch: &LogBatch) -> io::Result<()> {
        self.format.batch(batch, &mut self.out.buf);
        self.out.added(batch.len() as u64)
    }

    /// Compresses and writes what is buffered, and fsyncs; returns
    /// (records, file bytes).
    #[cfg(test)]
    pub(crate) fn finish(self) -> io::Result<(u64, u64)> {
        self.out.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oplog::reader::OpLogReader;
    use crate::oplog::test_util::record;

    /// A log context with the default key naming.
    fn ctx(client: &str, stage: &str, prefix: &str) -> Arc<LogContext> {
        Arc::new(LogContext::new(
            client,
            stage,
            prefix,
            crate::plan::KeyNaming::default(),
        ))
    }

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
        let (writer, sender) =
            spawn_writer_with(&path, OpLogFormat::default(), capacity, Some(gate_rx)).unwrap();

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

    /// A batch of `n` entries of worker `thread`, times from `start_ns`.
    fn log_batch(
        sender: &OpLogSender,
        ctx: &Arc<LogContext>,
        thread: u32,
        n: u64,
        start_ns: i64,
    ) -> LogBatch {
        use crate::oplog::batch::{EntryKey, LogEntry};
        let mut b = sender.new_log_batch(ctx.clone());
        for i in 0..n {
            let ep = b.endpoint_id(if i % 7 == 0 { "mem://b" } else { "mem://a" });
            let start = start_ns + i as i64 * 1_000;
            b.push(
                LogEntry {
                    thread,
                    op: crate::op::OpKind::ALL[(i % 9) as usize],
                    warmup: i % 10 == 0,
                    retries: (i % 4) as u32,
                    n_objects: 1,
                    bytes: i * 3,
                    start_ns: start,
                    first_byte_ns: (i % 2 == 0).then_some(start + 100),
                    end_ns: start + 500,
                    lag_ns: (i % 3 == 0).then_some(i * 7),
                    key: if i % 13 == 0 {
                        EntryKey::Text("some/prefix/".to_string())
                    } else {
                        EntryKey::Index(i)
                    },
                    error: if i % 17 == 0 {
                        format!("throttled: slow down {i}")
                    } else {
                        String::new()
                    },
                },
                ep,
            );
        }
        b
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn log_batches_read_back_as_their_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.tsv.zst");
        let (writer, sender) = spawn_writer(&path).unwrap();
        let ctx = ctx("agent-3", "mixed", "obj/");
        let mut expected = Vec::new();
        let mut idx = 0;
        for k in 0..40u32 {
            let mut b = log_batch(
                &sender,
                &ctx,
                k % 4,
                1 + u64::from(k) * 37 % 300,
                1_000 * i64::from(k),
            );
            b.set_first_idx(idx);
            idx += b.len() as u64;
            expected.extend(b.to_records());
            sender.send_log_batch(b).await.unwrap();
        }
        // Whole records can be mixed in.
        let rec = crate::oplog::test_util::record(idx, "agent-3");
        expected.push(rec.clone());
        sender.send(rec).await.unwrap();
        // An empty batch is no message and no record.
        sender
            .send_log_batch(sender.new_log_batch(ctx.clone()))
            .await
            .unwrap();
        drop(sender);
        let stats = writer.finish_async().await.unwrap();
        assert_eq!(stats.records, expected.len() as u64);
        assert_eq!(read_all(&path), expected);
    }

    /// A slow stage's lines reach the file within about [`FRAME_MAX_AGE`],
    /// as whole frames another process can read while the stage runs.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn buffered_lines_are_written_after_a_second_without_finishing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("slow.spool.zst");
        let (writer, sender) = spawn_writer(&path).unwrap();
        // The spool header is written on creation; records come later.
        let header = crate::oplog::spool::HEADER_BYTES as u64;
        let ctx = ctx("a", "s", "k/");
        let mut b = log_batch(&sender, &ctx, 0, 5, 0);
        b.set_first_idx(0);
        sender.send_log_batch(b).await.unwrap();
        tokio::time::sleep(IDLE_NAP * 20).await;
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            header,
            "not yet a second old"
        );
        let deadline = Instant::now() + FRAME_MAX_AGE * 3;
        while std::fs::metadata(&path).unwrap().len() == header {
            assert!(Instant::now() < deadline, "lines still buffered");
            tokio::time::sleep(PENDING_NAP).await;
        }
        assert_eq!(read_all(&path).len(), 5, "the frame holds the whole batch");
        drop(sender);
        assert_eq!(writer.finish_async().await.unwrap().records, 5);
        assert_eq!(read_all(&path).len(), 5);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_idle_writer_parks_and_wakes_for_the_next_batch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("idle.tsv.zst");
        let (writer, sender) = spawn_writer(&path).unwrap();
        let ctx = ctx("a", "s", "k/");
        let mut idx = 0;
        for round in 0..4 {
            let mut b = log_batch(&sender, &ctx, 0, 10, round * 1_000_000);
            b.set_first_idx(idx);
            idx += 10;
            sender.send_log_batch(b).await.unwrap();
            // Longer than the nap: the writer parks on an empty channel.
            tokio::time::sleep(IDLE_NAP * 20).await;
        }
        // Written buffers come back for reuse.
        let pooled = sender.pool.0.lock().unwrap().len();
        assert!(pooled >= 1, "written buffers are pooled");
        let again = sender.new_log_batch(ctx.clone());
        assert!(again.is_empty());
        assert_eq!(sender.pool.0.lock().unwrap().len(), pooled - 1);
        drop(again);
        drop(sender);
        let stats = writer.finish_async().await.unwrap();
        assert_eq!(stats.records, 40);
        let idx: Vec<u64> = read_all(&path).iter().map(|r| r.idx).collect();
        assert_eq!(idx, (0..40).collect::<Vec<_>>());
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
