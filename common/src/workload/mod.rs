//! Runs one agent's share of one stage: workers, op choice, key choice,
//! timing, and one op-log record and one histogram sample per op.
//!
//! There is one worker loop. What differs between stage kinds is only where
//! the next op comes from ([`WorkSource`]): prepare and cleanup walk this
//! agent's slice of the key space once; a workload stage draws ops by weight
//! and keys uniformly. When to stop is one shared [`Budget`].

mod budget;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::clock::Anchor;
use crate::datagen;
use crate::metrics::StageMetrics;
use crate::op::OpKind;
use crate::oplog::OpLogSender;
use crate::oplog::record::OpRecord;
use crate::plan::{Stage, StageKind};
use crate::store::{GetOptions, ListOptions, ObjectStore};

pub use budget::Budget;

/// Most entries one LIST op asks for: one page, as S3's default.
pub const LIST_PAGE_ENTRIES: usize = 1000;

/// Counters the agent reads about once a second for live progress.
#[derive(Debug, Default)]
pub struct LiveCounters {
    pub ops: AtomicU64,
    pub bytes: AtomicU64,
    pub errors: AtomicU64,
}

/// Everything one agent needs to run its share of a stage.
pub struct StageRun {
    pub agent_index: u32,
    pub agent_count: u32,
    /// The op-log `client_id` of this agent.
    pub agent_id: String,
    pub seed: u64,
    pub stage_index: usize,
    pub stage: Stage,
    pub store: Arc<dyn ObjectStore>,
    pub oplog: OpLogSender,
    /// When workers start (already on this agent's clock).
    pub start_at: Instant,
    pub live: Arc<LiveCounters>,
    /// Set to stop the stage early (controller lost, Ctrl-C, abort).
    pub stop: Arc<AtomicBool>,
}

/// What one agent did in one stage.
#[derive(Debug)]
pub struct StageOutcome {
    pub metrics: StageMetrics,
    /// Agent wall clock (ns) when workers were released.
    pub started_ns: i64,
    /// Agent wall clock (ns) when the first op began, if any op ran.
    pub first_op_ns: Option<i64>,
    /// Agent wall clock (ns) when the last op ended (or `started_ns`).
    pub ended_ns: i64,
    /// Op-log records sent; equals the ops in `metrics`.
    pub records: u64,
    /// True when the stage was stopped from outside before its limits.
    pub stopped_early: bool,
}

/// Where a worker's next op comes from.
enum WorkSource {
    /// Each key of this agent's slice once, with one op (PUT or DELETE).
    Keys {
        op: OpKind,
        next: AtomicU64,
        slice_len: u64,
    },
    /// Ops drawn by weight, keys uniformly from the key space.
    Mix { cumulative: Vec<(u64, OpKind)> },
}

impl WorkSource {
    fn for_stage(stage: &Stage, agent_index: u32, agent_count: u32) -> WorkSource {
        let count = stage.objects.count;
        // Keys are dealt round-robin: agent i owns indexes i, i+n, i+2n, …
        let slice_len = count / u64::from(agent_count)
            + u64::from(u64::from(agent_index) < count % u64::from(agent_count));
        match stage.kind {
            StageKind::Prepare => WorkSource::Keys {
                op: OpKind::Put,
                next: AtomicU64::new(0),
                slice_len,
            },
            StageKind::Cleanup => WorkSource::Keys {
                op: OpKind::Delete,
                next: AtomicU64::new(0),
                slice_len,
            },
            StageKind::Workload => {
                let mut acc = 0;
                let cumulative = stage
                    .mix
                    .weights
                    .iter()
                    .filter(|&(_, &w)| w > 0)
                    .map(|(&op, &w)| {
                        acc += u64::from(w);
                        (acc, op)
                    })
                    .collect();
                WorkSource::Mix { cumulative }
            }
        }
    }

    /// The next (op, object index), or None when the source is used up.
    fn next(&self, rng: &mut Xoshiro256PlusPlus, run: &StageRun) -> Option<(OpKind, u64)> {
        match self {
            WorkSource::Keys {
                op,
                next,
                slice_len,
            } => {
                let i = next.fetch_add(1, Ordering::Relaxed);
                (i < *slice_len).then(|| {
                    (
                        *op,
                        u64::from(run.agent_index) + i * u64::from(run.agent_count),
                    )
                })
            }
            WorkSource::Mix { cumulative } => {
                let total = cumulative.last()?.0;
                let r = rng.random_range(0..total);
                let op = cumulative.iter().find(|(c, _)| r < *c)?.1;
                Some((op, rng.random_range(0..run.stage.objects.count)))
            }
        }
    }
}

/// Runs this agent's share of the stage and returns when every worker is done.
pub async fn run_stage(run: StageRun) -> anyhow::Result<StageOutcome> {
    let run = Arc::new(run);
    let source = Arc::new(WorkSource::for_stage(
        &run.stage,
        run.agent_index,
        run.agent_count,
    ));
    let budget = Arc::new(Budget::for_agent(
        &run.stage.stop,
        run.agent_index,
        run.agent_count,
        run.start_at,
    ));
    let idx = Arc::new(AtomicU64::new(0));

    tokio::time::sleep_until(run.start_at.into()).await;
    let anchor = Anchor::now();
    let started_ns = anchor.wall_ns(Instant::now());

    let mut workers = Vec::new();
    for worker in 0..run.stage.concurrency {
        let (run, source, budget, idx) = (run.clone(), source.clone(), budget.clone(), idx.clone());
        workers.push(tokio::spawn(async move {
            worker_loop(worker, &run, &source, &budget, &idx, &anchor).await
        }));
    }
    let mut metrics = StageMetrics::default();
    let mut first_op_ns: Option<i64> = None;
    let mut ended_ns = started_ns;
    for w in workers {
        let out = w.await??;
        metrics.merge(&out.metrics);
        first_op_ns = match (first_op_ns, out.first_op_ns) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        ended_ns = ended_ns.max(out.last_end_ns);
    }
    Ok(StageOutcome {
        records: idx.load(Ordering::Relaxed),
        stopped_early: run.stop.load(Ordering::Relaxed),
        metrics,
        started_ns,
        first_op_ns,
        ended_ns,
    })
}

struct WorkerOutcome {
    metrics: StageMetrics,
    first_op_ns: Option<i64>,
    last_end_ns: i64,
}

/// The one op loop: take a budget slot, take work, do it, record it.
async fn worker_loop(
    worker: u32,
    run: &StageRun,
    source: &WorkSource,
    budget: &Budget,
    idx: &AtomicU64,
    anchor: &Anchor,
) -> anyhow::Result<WorkerOutcome> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(
        run.seed
            ^ (u64::from(run.agent_index) << 40)
            ^ ((run.stage_index as u64) << 24)
            ^ u64::from(worker),
    );
    let mut out = WorkerOutcome {
        metrics: StageMetrics::default(),
        first_op_ns: None,
        last_end_ns: 0,
    };
    let objects = &run.stage.objects;
    while !run.stop.load(Ordering::Relaxed) && budget.claim() {
        let Some((op, index)) = source.next(&mut rng, run) else {
            break;
        };
        let key = match op {
            OpKind::List => objects.prefix.clone(),
            _ => objects.key(index),
        };
        // Payloads are made before the clock starts: generating data is not
        // part of the storage latency.
        let payload = (op == OpKind::Put).then(|| datagen::object(run.seed, &key, objects.size));
        let started = Instant::now();
        let result = execute(run.store.as_ref(), op, &key, payload).await;
        let ended = Instant::now();

        let (bytes, n_objects, first_byte, error) = match result {
            Ok(done) => (done.bytes, done.n_objects, done.first_byte, String::new()),
            Err(e) => (0, 1, None, e.log_text()),
        };
        let ok = error.is_empty();
        let latency_ns = ended.duration_since(started).as_nanos() as u64;
        out.metrics.record(op, latency_ns, bytes, ok);
        budget.add_bytes(bytes);
        run.live.ops.fetch_add(1, Ordering::Relaxed);
        run.live.bytes.fetch_add(bytes, Ordering::Relaxed);
        if !ok {
            run.live.errors.fetch_add(1, Ordering::Relaxed);
        }

        let start_ns = anchor.wall_ns(started);
        let end_ns = anchor.wall_ns(ended);
        out.first_op_ns.get_or_insert(start_ns);
        out.last_end_ns = out.last_end_ns.max(end_ns);
        let record = OpRecord {
            idx: idx.fetch_add(1, Ordering::Relaxed),
            thread: u64::from(worker),
            op,
            client_id: run.agent_id.clone(),
            n_objects,
            bytes,
            endpoint: run.store.endpoint().to_string(),
            file: key,
            error,
            start_ns,
            first_byte_ns: first_byte.map(|t| anchor.wall_ns(t)),
            end_ns,
            stage: run.stage.name.clone(),
        };
        // Waits when the log writer is behind; never drops the record.
        run.oplog
            .send(record)
            .await
            .map_err(|_| anyhow::anyhow!("op-log writer stopped; cannot record ops"))?;
    }
    Ok(out)
}

struct OpDone {
    bytes: u64,
    n_objects: u32,
    first_byte: Option<Instant>,
}

async fn execute(
    store: &dyn ObjectStore,
    op: OpKind,
    key: &str,
    payload: Option<Bytes>,
) -> Result<OpDone, crate::store::StoreError> {
    let list_opts = ListOptions {
        limit: LIST_PAGE_ENTRIES,
        ..Default::default()
    };
    let one = |bytes, first_byte| OpDone {
        bytes,
        n_objects: 1,
        first_byte,
    };
    match op {
        OpKind::Get => store
            .get(key, &GetOptions::whole())
            .await
            .map(|g| one(g.bytes, g.first_byte)),
        OpKind::Put => {
            let data = payload.unwrap_or_default();
            let len = data.len() as u64;
            store.put(key, data).await.map(|()| one(len, None))
        }
        OpKind::Stat => store.stat(key).await.map(|_| one(0, None)),
        OpKind::Delete => store.delete(key).await.map(|()| one(0, None)),
        OpKind::List => store.list(key, &list_opts).await.map(|p| OpDone {
            bytes: 0,
            n_objects: (p.entries.len() + p.prefixes.len()) as u32,
            first_byte: None,
        }),
    }
}
