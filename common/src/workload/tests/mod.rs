//! The workload engine against real local stores (`mem://`, `file://`, and a
//! `mem://` behind a fixed delay), checked from both sides: what
//! [`run_stage`] reports, and what its op-log says when read back.
//!
//! Stages are built from plan YAML, so these tests also show the plan syntax
//! of each feature. Every margin is one the feature would miss if it broke.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;

use super::{Deal, KeyState, LiveCounters, StageOutcome, StageRun, run_stage, share};
use crate::datagen::{self, DataSpec};
use crate::op::OpKind;
use crate::oplog::{OpLogReader, OpRecord, spawn_writer};
use crate::plan::Stage;
use crate::store::delay::DelayStore;
use crate::store::file::FileStore;
use crate::store::memory::MemoryStore;
use crate::store::multi::{Balance, MultiStore};
use crate::store::{
    GetOptions, GetOutcome, ListOptions, ListPage, ObjectMeta, ObjectStore, PartPlan, PartSource,
    StoreResult,
};

/// `impl ObjectStore for $ty` of a test wrapper store: `endpoint`, `put`,
/// `stat`, `delete`, `list` and `stage_begins` passed on unchanged to its
/// `inner` store,
/// and the methods given (at least `get`).
macro_rules! wrapper_store {
    ($ty:ty { $($methods:tt)* }) => {
        #[async_trait]
        impl ObjectStore for $ty {
            fn endpoint(&self) -> &str {
                self.inner.endpoint()
            }
            async fn put(&self, key: &str, data: Bytes) -> StoreResult<()> {
                self.inner.put(key, data).await
            }
            async fn stat(&self, key: &str) -> StoreResult<ObjectMeta> {
                self.inner.stat(key).await
            }
            async fn delete(&self, key: &str) -> StoreResult<()> {
                self.inner.delete(key).await
            }
            async fn list(&self, prefix: &str, opts: &ListOptions) -> StoreResult<ListPage> {
                self.inner.list(prefix, opts).await
            }
            fn stage_begins(&self, removes_objects: bool) {
                self.inner.stage_begins(removes_objects);
            }
            $($methods)*
        }
    };
}

/// The run seed of every test: payloads and sizes depend on it.
const SEED: u64 = 7;

/// Longest any stage here may take.
const STAGE_TIMEOUT: Duration = Duration::from_secs(30);

/// One stage parsed from plan YAML (`spec` is the stage's flow mapping).
/// The plan's target is a placeholder: each test hands the store in.
fn stage(spec: &str) -> Stage {
    let text =
        format!("name: t\nseed: {SEED}\ntarget: mem://t\nconcurrency: 4\nstages:\n  - {spec}\n");
    let plan = crate::plan::parse(&text, "test").unwrap_or_else(|e| panic!("{e}\n{text}"));
    plan.stages[0].clone()
}

fn mem(name: &str) -> Arc<dyn ObjectStore> {
    Arc::new(MemoryStore::new(name))
}

fn delayed(inner: &Arc<dyn ObjectStore>, ms: u64) -> Arc<dyn ObjectStore> {
    Arc::new(DelayStore::new(inner.clone(), Duration::from_millis(ms)))
}

fn file_store(root: &Path) -> Arc<dyn ObjectStore> {
    Arc::new(FileStore::new(root.to_str().expect("utf-8 temp path")).expect("file store"))
}

/// What one stage did: the engine's outcome and its op-log read back.
struct Ran {
    out: StageOutcome,
    records: Vec<OpRecord>,
    live: Arc<LiveCounters>,
}

impl Ran {
    fn count(&self, op: OpKind) -> usize {
        self.records.iter().filter(|r| r.op == op).count()
    }

    fn errors(&self) -> Vec<&OpRecord> {
        self.records.iter().filter(|r| r.is_error()).collect()
    }

    fn bytes(&self) -> u64 {
        self.records.iter().map(|r| r.bytes).sum()
    }

    /// Records sorted by (scheduled or actual) start.
    fn by_start(&self) -> Vec<&OpRecord> {
        let mut v: Vec<&OpRecord> = self.records.iter().collect();
        v.sort_by_key(|r| r.start_ns);
        v
    }
}

/// Runs `stage` as agent `agent_index` of `agent_count`, with its op-log
/// written to a temporary file and read back (or no log at all).
async fn run_as(
    stage: &Stage,
    store: &Arc<dyn ObjectStore>,
    keys: Option<Arc<KeyState>>,
    agent_index: u32,
    agent_count: u32,
    log: bool,
) -> Ran {
    let deal = Deal::whole(agent_index, agent_count);
    run_on(stage, store, Vec::new(), keys, deal, log).await
}

/// [`run_as`] with the endpoints of a multi-endpoint stage.
async fn run_on(
    stage: &Stage,
    store: &Arc<dyn ObjectStore>,
    multi: Vec<Arc<MultiStore>>,
    keys: Option<Arc<KeyState>>,
    deal: Deal,
    log: bool,
) -> Ran {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("ops.tsv.zst");
    let (writer, sender) = if log {
        let (w, s) = spawn_writer(&path).expect("op-log writer");
        (Some(w), Some(s))
    } else {
        (None, None)
    };
    let live = Arc::new(LiveCounters::default());
    let run = StageRun {
        agent_id: format!("agent-{}", deal.index),
        deal,
        data: DataSpec::new(SEED),
        stage_index: 0,
        stage: stage.clone(),
        store: store.clone(),
        multi,
        oplog: sender,
        keys,
        pools: None,
        start_at: Instant::now() + Duration::from_millis(20),
        clock: crate::clock::Anchor::now(),
        live: live.clone(),
        stop: Arc::new(AtomicBool::new(false)),
    };
    // A stop condition that is ignored shows as a failure, not a hang.
    let out = tokio::time::timeout(STAGE_TIMEOUT, run_stage(run))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "stage `{}` did not stop within {STAGE_TIMEOUT:?}",
                stage.name
            )
        })
        .expect("stage runs");
    let records = match writer {
        Some(w) => {
            w.finish_async().await.expect("op-log finishes");
            OpLogReader::open(&path)
                .expect("op-log opens")
                .collect::<Result<Vec<_>, _>>()
                .expect("op-log reads back")
        }
        None => Vec::new(),
    };
    if log {
        assert_eq!(
            out.records,
            records.len() as u64,
            "records sent = records read"
        );
    }
    Ran { out, records, live }
}

async fn run(stage: &Stage, store: &Arc<dyn ObjectStore>, keys: Option<Arc<KeyState>>) -> Ran {
    run_as(stage, store, keys, 0, 1, true).await
}

/// The object index of a key `obj/NNNNNNNN`.
fn index_of(key: &str) -> u64 {
    key.strip_prefix("obj/")
        .and_then(|k| k.parse().ok())
        .unwrap_or_else(|| panic!("not an object key: `{key}`"))
}

/// Writes `count` objects of `size` bytes (a prepare stage) and returns what
/// the engine knows of them.
async fn prepare(store: &Arc<dyn ObjectStore>, count: u64, size: &str) -> Arc<KeyState> {
    let p = stage(&format!(
        "{{name: p, type: prepare, concurrency: 8, objects: {{count: {count}, size: {size}}}}}"
    ));
    let ran = run_as(&p, store, None, 0, 1, false).await;
    assert_eq!(ran.out.metrics.total_ops(), count);
    assert_eq!(ran.out.metrics.total_errors(), 0);
    ran.out.keys
}

// ---------------------------------------------------------------- live stats

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_counters_see_every_op_and_its_latency_once() {
    let store = mem("live");
    let keys = prepare(&store, 100, "1KiB").await;
    let w = stage(
        "{name: w, type: workload, concurrency: 4, objects: {count: 100, size: 1KiB}, \
         mix: {get: 1}, ops: 5000}",
    );
    let ran = run(&w, &store, Some(keys)).await;
    assert_eq!(ran.live.ops.load(Ordering::Relaxed), 5000);
    assert_eq!(ran.live.bytes.load(Ordering::Relaxed), 5000 * 1024);
    assert_eq!(ran.live.errors.load(Ordering::Relaxed), 0);
    // Every worker flushed at its end, so the interval histogram holds
    // every successful op, and taking it empties it.
    let h = ran.live.take_interval();
    assert_eq!(h.len(), 5000);
    assert!(ran.live.take_interval().is_empty());
}

// ---------------------------------------------------------------- 1. weights

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_over_100k_ops_are_within_one_percent() {
    let store = mem("weights");
    let keys = prepare(&store, 1000, "256B").await;
    let w = stage(
        "{name: w, type: workload, concurrency: 8, objects: {count: 1000, size: 256B}, \
         mix: {get: 70, put: 20, stat: 10}, ops: 100000}",
    );
    let ran = run(&w, &store, Some(keys)).await;
    let m = &ran.out.metrics;
    assert_eq!(m.total_ops(), 100_000);
    assert_eq!(ran.records.len(), 100_000);
    assert_eq!(
        m.total_errors(),
        0,
        "gets and stats only read keys that exist"
    );
    assert!(ran.errors().is_empty());
    for (op, weight) in [(OpKind::Get, 0.7), (OpKind::Put, 0.2), (OpKind::Stat, 0.1)] {
        let from_metrics = m.ops.get(&op).map_or(0, |s| s.count);
        let from_log = ran.count(op) as u64;
        assert_eq!(from_metrics, from_log, "{op:?}: metrics and log agree");
        let share = from_log as f64 / 100_000.0;
        assert!(
            (share - weight).abs() < 0.01,
            "{op:?}: share {share:.4}, weight {weight}"
        );
    }
    assert_eq!(m.ops.len(), 3, "no op outside the mix: {:?}", m.ops.keys());
}

// ---------------------------------------------------------- 3. verification

/// Flips every bit of one byte of a file.
fn flip_byte(path: &Path, offset: usize) {
    let mut bytes = std::fs::read(path).expect("object file");
    bytes[offset] ^= 0xff;
    std::fs::write(path, bytes).expect("rewrite object file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verifying_reads_catch_a_flipped_byte_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let store = file_store(dir.path());
    let objects = "objects: {count: 8, size: 64KiB}";
    let p = stage(&format!("{{name: p, type: prepare, {objects}}}"));
    let prepared = run(&p, &store, None).await;
    assert_eq!(prepared.count(OpKind::Put), 8);
    assert!(prepared.errors().is_empty());

    let get = stage(&format!(
        "{{name: g, type: workload, {objects}, mix: {{get: 1}}, verify: true, ops: 400}}"
    ));
    let range_all = stage(&format!(
        "{{name: r, type: workload, {objects}, mix: {{range_get: 1}}, verify: true, \
         range: {{offset: 0, length: 64KiB}}, ops: 400}}"
    ));
    let range_head = stage(&format!(
        "{{name: h, type: workload, {objects}, mix: {{range_get: 1}}, verify: true, \
         range: {{offset: 0, length: 32KiB}}, ops: 200}}"
    ));

    // Intact data verifies (keys found by one listing, as a fresh agent would).
    for s in [&get, &range_all] {
        let ran = run(s, &store, None).await;
        assert_eq!(ran.records.len(), 400);
        assert!(
            ran.errors().is_empty(),
            "{}: {:?}",
            s.name,
            ran.errors().first()
        );
        let touched: BTreeSet<&str> = ran.records.iter().map(|r| r.file.as_str()).collect();
        assert_eq!(touched.len(), 8, "every object read");
        assert_eq!(ran.bytes(), 400 * 65536, "whole objects read");
    }

    // One byte at offset 40000 of object 3 goes bad.
    let bad = "obj/00000003";
    flip_byte(&dir.path().join(bad), 40_000);
    for s in [&get, &range_all] {
        let ran = run(s, &store, None).await;
        let mut bad_reads = 0;
        for r in &ran.records {
            if r.file == bad {
                bad_reads += 1;
                assert!(
                    r.error.starts_with("verification: ") && r.error.contains("offset 40000"),
                    "{}: bad object read gave `{}`",
                    s.name,
                    r.error
                );
            } else {
                assert!(
                    r.error.is_empty(),
                    "{}: good object `{}` failed: {}",
                    s.name,
                    r.file,
                    r.error
                );
            }
        }
        assert!(
            bad_reads > 10,
            "{}: the bad object was read {bad_reads} times",
            s.name
        );
        let op = s.mix.weights.keys().next().copied().unwrap();
        assert_eq!(
            ran.out.metrics.ops[&op].errors, bad_reads,
            "{}: metrics count them",
            s.name
        );
    }

    // A range that stops before the bad byte still verifies.
    let ran = run(&range_head, &store, None).await;
    assert!(ran.records.iter().any(|r| r.file == bad));
    assert!(ran.errors().is_empty(), "{:?}", ran.errors().first());
    assert!(ran.records.iter().all(|r| r.bytes == 32 * 1024));
}

// -------------------------------------------------------------- 4. warm-up

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warmup_ops_are_logged_flagged_and_left_out_of_metrics() {
    let inner = mem("warmup");
    let keys = prepare(&inner, 100, "1KiB").await;
    let store = delayed(&inner, 1);
    let s = stage(
        "{name: w, type: workload, concurrency: 4, objects: {count: 100, size: 1KiB}, \
         mix: {get: 3, stat: 1}, warmup: 1s, duration: 2s}",
    );
    let ran = run(&s, &store, Some(keys)).await;
    let (warm, measured): (Vec<&OpRecord>, Vec<&OpRecord>) =
        ran.records.iter().partition(|r| r.warmup);
    assert!(
        warm.len() > 200 && measured.len() > 200,
        "{} warm, {} measured",
        warm.len(),
        measured.len()
    );
    // Split in time at one second from the start.
    let last_warm = warm.iter().map(|r| r.start_ns).max().unwrap();
    let first_measured = measured.iter().map(|r| r.start_ns).min().unwrap();
    assert!(
        last_warm < first_measured,
        "warm-up and measured ops interleave"
    );
    let boundary = ran.out.started_ns + 1_000_000_000;
    let slack = 30_000_000;
    assert!(
        (last_warm - boundary).abs() < slack,
        "last warm-up op {} ns from 1 s",
        last_warm - boundary
    );
    assert!(
        (first_measured - boundary).abs() < slack,
        "first measured op {} ns from 1 s",
        first_measured - boundary
    );
    // The summary holds only the measured ops.
    assert_eq!(ran.out.metrics.total_ops(), measured.len() as u64);
    assert_eq!(ran.out.warmup_ops, warm.len() as u64);
    for op in [OpKind::Get, OpKind::Stat] {
        let n = measured.iter().filter(|r| r.op == op).count() as u64;
        assert_eq!(ran.out.metrics.ops[&op].count, n, "{op:?}");
    }
}

// ------------------------------------------------ 5. prepare and cleanup

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepare_skips_existing_objects_unless_overwrite() {
    let store = mem("prepare-skip");
    let objects = "objects: {count: 50, size: 1KiB}";
    let p = stage(&format!("{{name: p, type: prepare, {objects}}}"));
    let first = run(&p, &store, None).await;
    assert_eq!(first.count(OpKind::Put), 50);
    assert_eq!(first.out.keys.present_count(), 50);

    // Again with what the first prepare knows: nothing to do.
    let again = run(&p, &store, Some(first.out.keys.clone())).await;
    assert_eq!(again.records.len(), 0);
    assert_eq!(again.out.metrics.total_ops(), 0);
    // Again as a fresh agent, which lists the key space once.
    let listed = run(&p, &store, None).await;
    assert_eq!(listed.records.len(), 0, "a listing finds all 50");

    // An object of the wrong size does not count as prepared.
    store
        .put("obj/00000007", Bytes::from_static(b"short"))
        .await
        .unwrap();
    let fix = run(&p, &store, None).await;
    let files: Vec<&str> = fix.records.iter().map(|r| r.file.as_str()).collect();
    assert_eq!(files, ["obj/00000007"]);
    assert_eq!(store.stat("obj/00000007").await.unwrap().size, 1024);

    // With overwrite, everything is written again.
    let o = stage(&format!(
        "{{name: p, type: prepare, overwrite: true, {objects}}}"
    ));
    let over = run(&o, &store, Some(first.out.keys.clone())).await;
    assert_eq!(over.count(OpKind::Put), 50);
    let distinct: BTreeSet<&str> = over.records.iter().map(|r| r.file.as_str()).collect();
    assert_eq!(distinct.len(), 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_deletes_only_what_the_run_created() {
    let dir = tempfile::tempdir().unwrap();
    let store = file_store(dir.path());
    let objects = "objects: {count: 30, size: 2KiB}";
    let p = stage(&format!("{{name: p, type: prepare, {objects}}}"));
    let c = stage(&format!("{{name: c, type: cleanup, {objects}}}"));
    // Objects 0..10 exist before the run, with the right size and bytes.
    let data = DataSpec::new(SEED);
    for i in 0..10 {
        let key = p.objects.key(i);
        store
            .put(&key, datagen::object(&data, &key, 2048))
            .await
            .unwrap();
    }
    let prepared = run(&p, &store, None).await;
    assert_eq!(
        prepared.count(OpKind::Put),
        20,
        "the 10 existing ones are skipped"
    );
    assert!(prepared.records.iter().all(|r| index_of(&r.file) >= 10));
    assert_eq!(prepared.out.keys.created_count(), 20);

    let cleaned = run(&c, &store, Some(prepared.out.keys.clone())).await;
    assert!(
        cleaned.errors().is_empty(),
        "{:?}",
        cleaned.errors().first()
    );
    let deleted: BTreeSet<u64> = cleaned.records.iter().map(|r| index_of(&r.file)).collect();
    for i in 0..30 {
        let exists = store.stat(&p.objects.key(i)).await.is_ok();
        if i < 10 {
            assert!(
                exists,
                "object {i} existed before the run and was deleted by cleanup"
            );
        } else {
            assert!(
                !exists,
                "object {i} was created by the run and survived cleanup"
            );
        }
    }
    assert_eq!(
        deleted,
        (10..30).collect(),
        "cleanup deleted exactly the created objects"
    );
}

// ---------------------------------------------------- 7. key distribution

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zipf_keys_are_skewed() {
    let store = mem("zipf");
    let keys = prepare(&store, 1000, "64B").await;
    let s = stage(
        "{name: z, type: workload, concurrency: 4, \
         objects: {count: 1000, size: 64B, distribution: {zipf: 1.1}}, mix: {get: 1}, ops: 30000}",
    );
    let ran = run(&s, &store, Some(keys)).await;
    assert!(ran.errors().is_empty());
    let mut hits = vec![0u64; 1000];
    for r in &ran.records {
        hits[index_of(&r.file) as usize] += 1;
    }
    let hottest = (0..1000).max_by_key(|&i| hits[i]).unwrap();
    assert_eq!(hottest, 0, "rank 1 is key 0");
    let mut sorted = hits.clone();
    sorted.sort_unstable();
    let median = sorted[500];
    // Zipf(1.1) over 1000 keys: p(rank 1) / p(rank 500) = 500^1.1 ≈ 930.
    // Uniform choice would give a ratio near 1.
    assert!(
        hits[0] > 100 * median.max(1),
        "top {} vs median {median}",
        hits[0]
    );
    assert!(hits[0] > 3000, "key 0 got {} of 30000", hits[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_partition_touches_only_its_slice() {
    let store = mem("partition");
    let objects = "objects: {count: 300, size: 256B, partition: agent}";
    let p = stage(&format!("{{name: p, type: prepare, {objects}}}"));
    let prepared = run_as(&p, &store, None, 1, 3, true).await;
    assert_eq!(
        prepared.records.len(),
        100,
        "prepare writes this agent's third"
    );
    assert!(prepared.records.iter().all(|r| index_of(&r.file) % 3 == 1));

    let w = stage(&format!(
        "{{name: w, type: workload, {objects}, mix: {{get: 2, put: 1, stat: 1}}, ops: 3000}}"
    ));
    let ran = run_as(&w, &store, Some(prepared.out.keys.clone()), 1, 3, true).await;
    assert_eq!(ran.records.len(), 1000, "a third of the stage's ops");
    assert!(ran.errors().is_empty(), "{:?}", ran.errors().first());
    let touched: BTreeSet<u64> = ran.records.iter().map(|r| index_of(&r.file)).collect();
    assert!(
        touched.iter().all(|i| i % 3 == 1),
        "keys outside the slice: {:?}",
        touched
            .iter()
            .filter(|i| *i % 3 != 1)
            .take(5)
            .collect::<Vec<_>>()
    );
    assert_eq!(touched.len(), 100, "the whole slice is used");
}

// ------------------------------------------------------- 8. stop conditions

/// Ops that never wait (a page-cache read, `mem://`) must not let a worker
/// keep its runtime thread: with more workers than threads, every worker
/// runs ops, in shares of the same order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_workers_than_threads_all_run_ops() {
    let store = mem("fair");
    let keys = prepare(&store, 100, "256B").await;
    let s = stage(
        "{name: s, type: workload, concurrency: 5, objects: {count: 100, size: 256B}, \
         mix: {get: 1}, duration: 300ms}",
    );
    let ran = run(&s, &store, Some(keys)).await;
    let mut per_worker = BTreeMap::new();
    for r in &ran.records {
        *per_worker.entry(r.thread).or_insert(0u64) += 1;
    }
    assert_eq!(per_worker.len(), 5, "{per_worker:?}");
    let (least, most) = (
        per_worker.values().min().copied().unwrap_or(0),
        per_worker.values().max().copied().unwrap_or(0),
    );
    assert!(least * 10 >= most, "shares too uneven: {per_worker:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn op_limit_is_exact_and_split_over_agents() {
    let store = mem("stop-ops");
    let keys = prepare(&store, 100, "256B").await;
    let s = stage(
        "{name: s, type: workload, concurrency: 8, objects: {count: 100, size: 256B}, \
         mix: {get: 1, stat: 1}, ops: 1000}",
    );
    let one = run(&s, &store, Some(keys.clone())).await;
    assert_eq!(one.records.len(), 1000);
    assert_eq!(one.out.metrics.total_ops(), 1000);
    let unlogged = run_as(&s, &store, Some(keys.clone()), 0, 1, false).await;
    assert_eq!(
        unlogged.out.metrics.total_ops(),
        1000,
        "the same without an op-log"
    );

    let mut total = 0;
    for i in 0..3 {
        let ran = run_as(&s, &store, Some(keys.clone()), i, 3, true).await;
        let want = [334, 333, 333][i as usize];
        assert_eq!(ran.records.len(), want, "agent {i} of 3");
        assert_eq!(ran.out.metrics.total_ops(), want as u64);
        total += ran.records.len();
    }
    assert_eq!(total, 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byte_limit_stops_within_one_op_per_worker() {
    let inner = mem("stop-bytes");
    let keys = prepare(&inner, 50, "4KiB").await;
    let store = delayed(&inner, 1);
    let s = stage(
        "{name: b, type: workload, concurrency: 8, objects: {count: 50, size: 4KiB}, \
         mix: {get: 1}, bytes: 1MiB}",
    );
    let (size, workers) = (4096, 8);
    for (i, n) in [(0, 1), (0, 3), (2, 3)] {
        let limit = share(1 << 20, i, n);
        let ran = run_as(&s, &store, Some(keys.clone()), i, n, true).await;
        assert!(ran.errors().is_empty());
        let moved = ran.bytes();
        assert_eq!(ran.out.metrics.total_bytes(), moved);
        assert!(
            moved >= limit,
            "agent {i}/{n} stopped at {moved} bytes, below {limit}"
        );
        assert!(
            moved < limit + workers * size,
            "agent {i}/{n}: {moved} bytes, more than one op per worker past {limit}"
        );
    }
}

// ------------------------------------------------------------------ op-log

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn op_log_names_each_ops_endpoint_and_key_with_unique_idx() {
    let stores: Vec<Arc<dyn ObjectStore>> = (0..3).map(|i| mem(&format!("ep{i}"))).collect();
    let multi = Arc::new(MultiStore::new(stores, Balance::RoundRobin).expect("three endpoints"));
    let store: Arc<dyn ObjectStore> = multi.clone();
    let s = stage(
        "{name: logged, type: workload, concurrency: 4, objects: {count: 200, size: 16B}, \
         mix: {put: 3, list: 1}, ops: 3000}",
    );
    // Known keys: no discovery listing, so every request is a logged op.
    let keys = Some(Arc::new(KeyState::new(200)));
    let ran = run_on(
        &s,
        &store,
        vec![multi.clone()],
        keys,
        Deal::whole(1, 2),
        true,
    )
    .await;
    assert_eq!(ran.records.len(), 1500);

    // Every idx of the stage exactly once.
    let mut idx: Vec<u64> = ran.records.iter().map(|r| r.idx).collect();
    idx.sort_unstable();
    assert_eq!(idx, (0..1500).collect::<Vec<_>>());

    let mut per_endpoint: BTreeMap<&str, u64> = BTreeMap::new();
    for r in &ran.records {
        assert_eq!(r.client_id, "agent-1");
        assert_eq!(r.stage, "logged");
        assert!(r.error.is_empty(), "{r:?}");
        *per_endpoint.entry(r.endpoint.as_str()).or_default() += 1;
        match r.op {
            OpKind::Put => {
                let i = index_of(&r.file);
                assert!(i < 200, "{}", r.file);
                assert_eq!(r.file, format!("obj/{i:08}"));
            }
            OpKind::List => assert_eq!(r.file, "obj/"),
            op => panic!("{op:?} is not in the mix"),
        }
    }
    // Each op named the endpoint it went to, as the balancer counted them.
    let counted: BTreeMap<&str, u64> = ran
        .out
        .endpoints
        .iter()
        .map(|e| (e.endpoint.as_str(), e.requests))
        .collect();
    assert_eq!(per_endpoint, counted);
    assert_eq!(
        counted.keys().copied().collect::<Vec<_>>(),
        ["mem://ep0", "mem://ep1", "mem://ep2"]
    );
}

mod buckets;
mod departed;
mod existing;
mod kept_files;
mod large;
mod naming;
mod object_api;
mod open_loop;
mod ramp;
mod sizes;
mod timeouts;
mod train;
