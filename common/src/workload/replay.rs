//! A replay stage's ops on one agent: its share of a trace, streamed.
//!
//! A reader thread reads the agent's local copy of the trace from start to
//! end (every agent reads all of it, so every agent numbers the clients
//! alike, in order of first appearance), keeps this agent's share (by
//! client or by key, [`ReplaySplit`]), renames keys, and hands ops to the
//! workers in batches through a bounded channel. Memory is the channel's
//! bound and a reorder window, however long the trace.
//!
//! - Run phase: each op is due at `start + (op.start − first) / speed`,
//!   `first` being the trace's first start. Workers wait for it on the
//!   stage's [`Pacer`] and its latency counts from then, so a store that
//!   cannot keep up shows it as latency and lateness instead of
//!   stretching the trace.
//! - Prepare phase: objects the trace reads before writing them are made
//!   first. One pass finds them (a table of this agent's share's keys, by
//!   64-bit hash: [`PREPARE_KEY_BYTES`] each, at most
//!   [`MAX_PREPARE_KEYS`]); a second pass PUTs each once, at the largest
//!   size the trace read from it before writing it.
//!
//! A trace not sorted by start is put in order within a window of
//! [`REORDER_WINDOW`] ops; an op further out of order than that is issued
//! when its turn comes in the window (late, and counted so).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

use super::ops;
use crate::datagen::key_hash;
use crate::op::OpKind;
use crate::plan::{ReplayPhase, ReplaySpec, ReplaySplit, Stage};
use crate::store::ByteRange;
use crate::trace::{MAX_TRACE_CLIENTS, TraceOp, TraceOpKind, TraceReader};

/// Ops per batch handed from the reader thread to the workers.
pub const FEED_BATCH_OPS: usize = 1024;
/// Batches in flight between the reader thread and the workers.
pub const FEED_BATCHES: usize = 16;
/// Ops held to put a trace that is not quite sorted by start in order.
pub const REORDER_WINDOW: usize = 65_536;
/// Most distinct keys of one agent's share a prepare phase tracks.
pub const MAX_PREPARE_KEYS: usize = 20_000_000;
/// Bytes per tracked key in a prepare phase (hash, size, state, table
/// overhead), for the stated bound.
pub const PREPARE_KEY_BYTES: usize = 32;

/// One op of this agent's share, ready to run.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplayOp {
    pub op: OpKind,
    pub key: String,
    pub size: u64,
    pub range: Option<ByteRange>,
    /// Nanoseconds after the stage's start the op is due (already divided
    /// by the speed); 0 in a prepare phase.
    pub due_ns: u64,
}

/// The workers' end of the feed.
pub struct ReplayFeed {
    state: Mutex<FeedState>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Tells the reader thread the feed is gone (the stage's own stop
    /// flag is not the feed's to set).
    closed: Arc<AtomicBool>,
}

struct FeedState {
    rx: Receiver<Result<Vec<ReplayOp>, String>>,
    batch: VecDeque<ReplayOp>,
    /// The trace broke (a damaged line): said once, then no more ops.
    error: Option<String>,
    done: bool,
}

impl std::fmt::Debug for ReplayFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayFeed").finish_non_exhaustive()
    }
}

/// Whether a replay on `target` issues a traced op of kind `op`: one
/// [`OpKind::replayable`] whose backend feature the target's scheme does
/// not certainly lack (warp's `RETENTION` is not sent to `file://`). The
/// controller counts the others as not replayed.
pub fn replays(op: OpKind, target: &str) -> bool {
    let scheme = target.split("://").next().unwrap_or("");
    op.replayable()
        && crate::plan::feature_of(op)
            .is_none_or(|f| crate::store::api::scheme_has(scheme, f).is_ok())
}

/// Which agent, of how many, reads the share.
#[derive(Clone, Copy, Debug)]
pub struct Share {
    pub index: u32,
    pub count: u32,
}

impl ReplayFeed {
    /// Starts the reader thread on `path` (the agent's copy of the trace).
    pub fn start(
        path: &Path,
        stage: &Stage,
        share: Share,
        stop: Arc<AtomicBool>,
    ) -> anyhow::Result<ReplayFeed> {
        let spec = stage
            .replay
            .clone()
            .ok_or_else(|| anyhow::anyhow!("stage `{}` is not a replay stage", stage.name))?;
        // Opened here so a missing or unreadable trace fails the stage
        // before it starts, not in the thread.
        let reader = TraceReader::open(path).map_err(|e| anyhow::anyhow!("{e}"))?;
        let (tx, rx) = sync_channel(FEED_BATCHES);
        let closed = Arc::new(AtomicBool::new(false));
        let job = Job {
            path: path.to_path_buf(),
            spec,
            target: stage.target.clone(),
            share,
            stop,
            closed: closed.clone(),
            tx,
        };
        let thread = std::thread::Builder::new()
            .name("chorus-replay".into())
            .spawn(move || job.run(reader))
            .map_err(|e| anyhow::anyhow!("starting the replay reader thread: {e}"))?;
        Ok(ReplayFeed {
            state: Mutex::new(FeedState {
                rx,
                batch: VecDeque::new(),
                error: None,
                done: false,
            }),
            thread: Mutex::new(Some(thread)),
            closed,
        })
    }

    /// The next op of this agent's share, in due order; `None` at the end
    /// (or when the trace broke: see [`ReplayFeed::error`]). Blocks only
    /// when the reader thread is behind, which it is only at the start.
    pub fn next(&self) -> Option<ReplayOp> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(op) = st.batch.pop_front() {
                return Some(op);
            }
            if st.done {
                return None;
            }
            match st.rx.recv() {
                Ok(Ok(batch)) => st.batch = batch.into(),
                Ok(Err(e)) => {
                    st.error = Some(e);
                    st.done = true;
                }
                Err(_) => st.done = true,
            }
        }
    }

    /// Why the feed ended before the trace's end, if it did.
    pub fn error(&self) -> Option<String> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .error
            .clone()
    }
}

impl Drop for ReplayFeed {
    fn drop(&mut self) {
        self.closed.store(true, Ordering::Relaxed);
        // Unblock a thread waiting on a full channel.
        if let Ok(mut st) = self.state.lock() {
            let (_, rx) = sync_channel(0);
            st.rx = rx;
        }
        if let Some(t) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = t.join();
        }
    }
}

struct Job {
    path: PathBuf,
    spec: ReplaySpec,
    /// The stage's target, which says which op kinds are replayed.
    target: String,
    share: Share,
    /// The stage's stop flag: the stage ended early.
    stop: Arc<AtomicBool>,
    /// Set when the feed is dropped: no worker reads on.
    closed: Arc<AtomicBool>,
    tx: SyncSender<Result<Vec<ReplayOp>, String>>,
}

/// Numbers clients by first appearance and says which agent's they are.
#[derive(Default)]
struct Clients(HashMap<String, u32>);

impl Clients {
    fn index(&mut self, client: &str) -> Result<u32, String> {
        if let Some(&i) = self.0.get(client) {
            return Ok(i);
        }
        if self.0.len() >= MAX_TRACE_CLIENTS {
            return Err(format!(
                "the trace has more than {MAX_TRACE_CLIENTS} clients; use `split: key`"
            ));
        }
        let i = self.0.len() as u32;
        self.0.insert(client.to_string(), i);
        Ok(i)
    }
}

/// What a prepare pass knows of one key of the share.
#[derive(Clone, Copy)]
struct Seen {
    /// Largest size read before the first write (or the only reads).
    size: u64,
    /// The trace read (or deleted) it before writing it: it must exist.
    needed: bool,
    /// A write was seen: reads after it say nothing of the old object.
    written: bool,
    /// Made already in the second pass.
    made: bool,
}

impl Job {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || self.closed.load(Ordering::Relaxed)
    }

    fn run(self, reader: TraceReader) {
        let result = match self.spec.phase {
            ReplayPhase::Run => self.replay(reader),
            ReplayPhase::Prepare => self.prepare(reader),
        };
        if let Err(e) = result {
            let _ = self.tx.send(Err(e));
        }
    }

    /// Whether `op` is this agent's, and its renamed key.
    fn mine(&self, clients: &mut Clients, op: &TraceOp) -> Result<Option<String>, String> {
        let key = self.spec.remap_key(&op.key);
        let n = self.share.count.max(1);
        let owner = match self.spec.split {
            ReplaySplit::Client => clients.index(&op.client)? % n,
            // FNV-1a: a key's agent is the same on every agent and release.
            ReplaySplit::Key => (key_hash(&key) % u64::from(n)) as u32,
        };
        Ok((owner == self.share.index).then_some(key))
    }

    fn send(&self, batch: &mut Vec<ReplayOp>) -> Result<(), ()> {
        if batch.is_empty() {
            return Ok(());
        }
        let full = std::mem::replace(batch, Vec::with_capacity(FEED_BATCH_OPS));
        self.tx.send(Ok(full)).map_err(|_| ())
    }

    fn replay(&self, reader: TraceReader) -> Result<(), String> {
        let speed = self.spec.speed;
        let mut clients = Clients::default();
        let mut window: BinaryHeap<Reverse<Pending>> = BinaryHeap::new();
        // The trace's first start (every agent's ops are due relative to
        // it): the earliest of all ops read, whoever's they are. An op
        // leaves the window only after REORDER_WINDOW later ones were
        // read, so this is the trace's first unless the trace is further
        // out of order than the window.
        let mut first = i64::MAX;
        let mut batch = Vec::with_capacity(FEED_BATCH_OPS);
        let mut seq = 0u64;
        let emit = |p: Pending, first: i64, batch: &mut Vec<ReplayOp>| {
            let first = first.min(p.start);
            let mut op = p.op;
            op.due_ns = (p.start.saturating_sub(first).max(0) as f64 / speed) as u64;
            batch.push(op);
        };
        for item in reader {
            if self.stopped() {
                return Ok(());
            }
            let op = item.map_err(|e| e.to_string())?;
            first = first.min(op.start_ns);
            let kind = match &op.op {
                TraceOpKind::Known(k) if replays(*k, &self.target) => *k,
                // Counted and reported by the controller's scan of the
                // trace; nothing to issue.
                _ => continue,
            };
            let Some(key) = self.mine(&mut clients, &op)? else {
                continue;
            };
            seq += 1;
            window.push(Reverse(pending(kind, key, &op, seq)));
            if window.len() > REORDER_WINDOW {
                let Reverse(p) = window.pop().expect("window is not empty");
                emit(p, first, &mut batch);
                if batch.len() >= FEED_BATCH_OPS && self.send(&mut batch).is_err() {
                    return Ok(());
                }
            }
        }
        while let Some(Reverse(p)) = window.pop() {
            emit(p, first, &mut batch);
            if batch.len() >= FEED_BATCH_OPS && self.send(&mut batch).is_err() {
                return Ok(());
            }
        }
        let _ = self.send(&mut batch);
        Ok(())
    }

    fn prepare(&self, reader: TraceReader) -> Result<(), String> {
        let mut clients = Clients::default();
        let mut seen: HashMap<u64, Seen> = HashMap::new();
        for item in reader {
            if self.stopped() {
                return Ok(());
            }
            let op = item.map_err(|e| e.to_string())?;
            let TraceOpKind::Known(kind) = op.op else {
                continue;
            };
            if matches!(kind, OpKind::List | OpKind::Mkdir | OpKind::Rmdir) {
                continue;
            }
            let Some(key) = self.mine(&mut clients, &op)? else {
                continue;
            };
            // A copy needs its source.
            let key = ops::needed_object(kind, key);
            let h = key_hash(&key);
            if !seen.contains_key(&h) && seen.len() >= MAX_PREPARE_KEYS {
                return Err(format!(
                    "{}: this agent's share names more than {MAX_PREPARE_KEYS} keys; \
                     use more agents, or `prepare: false` with the objects made by a prepare stage",
                    self.path.display()
                ));
            }
            let s = seen.entry(h).or_insert(Seen {
                size: 0,
                needed: false,
                written: false,
                made: false,
            });
            if s.written {
                continue;
            }
            match kind {
                OpKind::Put | OpKind::MultipartPut => s.written = true,
                // A read or delete that failed says the object was not
                // there: the replay should find it missing too.
                k if k.reads_existing() && !op.failed => {
                    s.needed = true;
                    // What a read moved; a STAT's bytes are the object's
                    // size where the tool logs it (warp does).
                    if !matches!(kind, OpKind::Delete | OpKind::Tag | OpKind::Retention) {
                        s.size = s.size.max(op.size);
                    }
                }
                _ => {}
            }
            if kind == OpKind::Delete && !op.failed {
                // What was deleted is gone for later reads.
                s.written = true;
            }
        }
        // Second pass: make each needed object once, in trace order.
        let mut clients = Clients::default();
        let reader = TraceReader::open(&self.path).map_err(|e| e.to_string())?;
        let mut batch = Vec::with_capacity(FEED_BATCH_OPS);
        for item in reader {
            if self.stopped() {
                return Ok(());
            }
            let op = item.map_err(|e| e.to_string())?;
            if !matches!(op.op, TraceOpKind::Known(k) if !matches!(k, OpKind::List | OpKind::Mkdir | OpKind::Rmdir))
            {
                continue;
            }
            let Some(key) = self.mine(&mut clients, &op)? else {
                continue;
            };
            let key = match op.op {
                TraceOpKind::Known(kind) => ops::needed_object(kind, key),
                TraceOpKind::Unknown(_) => key,
            };
            let Some(s) = seen.get_mut(&key_hash(&key)) else {
                continue;
            };
            if !s.needed || s.made {
                continue;
            }
            s.made = true;
            batch.push(ReplayOp {
                op: OpKind::Put,
                key,
                size: s.size,
                range: None,
                due_ns: 0,
            });
            if batch.len() >= FEED_BATCH_OPS && self.send(&mut batch).is_err() {
                return Ok(());
            }
        }
        let _ = self.send(&mut batch);
        Ok(())
    }
}

/// An op of the share waiting in the reorder window, ordered by its
/// start in the trace and then by its place in the file.
struct Pending {
    start: i64,
    seq: u64,
    op: ReplayOp,
}

impl PartialEq for Pending {
    fn eq(&self, o: &Self) -> bool {
        (self.start, self.seq) == (o.start, o.seq)
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Pending {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.start, self.seq).cmp(&(o.start, o.seq))
    }
}

/// The op `t` of kind `op` on `key`, not yet given its due time.
fn pending(op: OpKind, key: String, t: &TraceOp, seq: u64) -> Pending {
    // A trace names a range's length (its bytes), not its offset: the
    // replay reads from the start.
    let range = (op == OpKind::RangeGet).then(|| ByteRange {
        offset: 0,
        length: t.size.max(1),
    });
    Pending {
        start: t.start_ns,
        seq,
        op: ReplayOp {
            op,
            key,
            size: t.size,
            range,
            due_ns: 0,
        },
    }
}
