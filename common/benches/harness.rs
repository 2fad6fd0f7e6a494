//! Harness overhead: how many ops per second the workload engine drives on
//! `mem://` with its workers on ONE pinned core, with the op-log on and off
//! (issue 4: goal ≥ 500k ops/s per engine core with the log on, and the log
//! costing ≤ 5%).
//!
//! Run with `scripts/bench/harness.sh` (`cargo bench -p chorus-common
//! --bench harness`). What it does:
//!
//! - one pool pinned to CPU set `[0]` runs every worker (`StageRun.pools`);
//!   the main thread, and so the op-log writer thread it starts, is pinned to
//!   another allowed CPU, as the writer is its own OS thread by design;
//! - a prepare stage writes 1000 objects of 0–64 bytes, then workload stages
//!   run a fixed op count on them, each once with the op-log writing to a
//!   temp file and once with `oplog: None`, alternating (and swapping which
//!   goes first) round after round, so a noisy neighbour hurts both alike;
//! - first, the op-log writer alone: synthetic batches (as 32 workers would
//!   send them) through a writer as fast as it takes them, for its CPU per
//!   record without the engine's noise;
//! - it reports ops/s per engine core (wall clock), the engine thread's own
//!   CPU, the writer thread's CPU (`/proc/self/task/<tid>/stat`), the whole
//!   process's CPU per op (`getrusage`), and medians over rounds.
//!
//! Environment knobs (for profiling with a small op count):
//! `CHORUS_HARNESS_OPS` (ops per run, default 2000000),
//! `CHORUS_HARNESS_ROUNDS` (default 5), `CHORUS_HARNESS_CONCURRENCY`
//! (workers, default 32), `CHORUS_HARNESS_MIX` (`all`, `get90`, `get100`,
//! or `writer` for the writer-alone measurement only),
//! `CHORUS_HARNESS_LOG` (`both`, `on` or `off`), `CHORUS_HARNESS_FORMAT`
//! (`spool`, the agent's, or `tsv`, the text writer it had before; the
//! writer-alone measurement always runs both, alternating).

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use chorus_common::datagen::DataSpec;
use chorus_common::op::OpKind;
use chorus_common::oplog::{
    EntryKey, LogBatch, LogContext, LogEntry, OpLogFormat, OpLogSender, WriterStats,
    spawn_writer_as,
};
use chorus_common::plan::{self, Plan, Stage};
use chorus_common::pools::{PoolSpec, Pools};
use chorus_common::store::ObjectStore;
use chorus_common::store::memory::MemoryStore;
use chorus_common::topology::{Topology, pin_current_thread};
use chorus_common::workload::{Deal, KeyState, LiveCounters, StageOutcome, StageRun, run_stage};

/// mimalloc: records made on worker threads are freed on the op-log
/// writer's thread, which glibc malloc serializes on arena locks.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The engine's one core.
const ENGINE_CPU: usize = 0;
/// Issue 4 goals.
const GOAL_OPS_PER_CORE: f64 = 500_000.0;
const GOAL_LOG_COST_PCT: f64 = 5.0;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn plan_text(ops: u64, concurrency: u32) -> String {
    format!(
        r#"
name: harness
seed: 7
target: mem://harness
concurrency: {concurrency}
objects: {{prefix: "h/", count: 1000, size: {{uniform: {{min: 0, max: 64}}}}}}
stages:
  - {{name: prepare, type: prepare}}
  - {{name: get90-put10, type: workload, mix: {{get: 90, put: 10}}, ops: {ops}}}
  - {{name: get100, type: workload, mix: {{get: 100}}, ops: {ops}}}
"#
    )
}

/// utime + stime of one thread, in clock ticks, and its state letter.
fn thread_cpu(tid: &str) -> Option<(u64, char)> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    // The name may hold spaces and parentheses: fields follow the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let state = f.first()?.chars().next()?;
    // Fields 14 and 15 of stat(5); `rest` starts at field 3.
    Some((
        f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?,
        state,
    ))
}

/// Thread ids whose name starts with `prefix`.
fn threads_named(prefix: &str) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| {
            let tid = e.file_name().to_string_lossy().into_owned();
            let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
            comm.trim_end().starts_with(prefix).then_some(tid)
        })
        .collect()
}

/// CPU seconds of every thread named `prefix*`.
fn cpu_of(prefix: &str, tick: f64) -> f64 {
    threads_named(prefix)
        .iter()
        .filter_map(|t| thread_cpu(t))
        .map(|(ticks, _)| ticks as f64 / tick)
        .sum()
}

/// user + system CPU seconds of the whole process (exited threads included).
fn process_cpu() -> f64 {
    // SAFETY: getrusage only writes the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a rusage struct.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(ru.ru_utime) + secs(ru.ru_stime)
}

/// Waits until the writer thread is blocked on an empty channel (sleeping,
/// CPU time no longer moving) and returns its CPU seconds so far: the cost
/// of formatting, compressing and writing every record of the run.
fn writer_cpu_when_idle(tick: f64) -> Option<f64> {
    let tid = threads_named("oplog-writer").pop()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = None;
    while Instant::now() < deadline {
        let (ticks, state) = thread_cpu(&tid)?;
        if state == 'S' && last == Some(ticks) {
            return Some(ticks as f64 / tick);
        }
        last = Some(ticks);
        std::thread::sleep(Duration::from_millis(30));
    }
    last.map(|t| t as f64 / tick)
}

struct Sample {
    ops: u64,
    wall_s: f64,
    engine_cpu_s: f64,
    writer_cpu_s: f64,
    process_cpu_s: f64,
    log: Option<WriterStats>,
}

impl Sample {
    fn ops_per_s(&self) -> f64 {
        self.ops as f64 / self.wall_s
    }
    /// Ops per second of engine-thread CPU: immune to the core being shared.
    fn ops_per_engine_cpu_s(&self) -> f64 {
        self.ops as f64 / self.engine_cpu_s.max(1e-9)
    }
}

struct Bench {
    plan: Plan,
    data: DataSpec,
    store: Arc<dyn ObjectStore>,
    pools: Arc<Pools>,
    keys: Arc<KeyState>,
    tick: f64,
    dir: tempfile::TempDir,
    /// What the op-log writer writes in the engine runs.
    format: OpLogFormat,
}

impl Bench {
    /// Stage `index` of the plan, with `ops` in place of its op limit.
    fn stage_run(&self, index: usize, oplog: Option<OpLogSender>, ops: Option<u64>) -> StageRun {
        let mut stage: Stage = self.plan.stages[index].clone();
        if ops.is_some() {
            stage.stop.ops = ops;
        }
        StageRun {
            deal: Deal::whole(0, 1),
            agent_id: "harness-agent".to_string(),
            data: self.data,
            stage_index: index,
            stage,
            store: self.store.clone(),
            multi: Vec::new(),
            oplog,
            keys: Some(self.keys.clone()),
            pools: Some(self.pools.clone()),
            start_at: Instant::now(),
            clock: chorus_common::clock::Anchor::now(),
            live: Arc::new(LiveCounters::default()),
            stop: Arc::new(AtomicBool::new(false)),
        }
    }

    async fn run(&self, index: usize, log: bool, ops: Option<u64>) -> Sample {
        let path = self.dir.path().join(format!("s{index}.log.zst"));
        let cpu0 = process_cpu();
        let writer = if log {
            Some(spawn_writer_as(&path, self.format).expect("op-log writer starts"))
        } else {
            None
        };
        let engine0 = cpu_of("chorus-pool", self.tick);
        let t0 = Instant::now();
        let run = self.stage_run(index, writer.as_ref().map(|(_, s)| s.clone()), ops);
        let out: StageOutcome = run_stage(run).await.expect("stage runs");
        let wall_s = t0.elapsed().as_secs_f64();
        let engine_cpu_s = cpu_of("chorus-pool", self.tick) - engine0;
        assert_eq!(out.metrics.total_errors(), 0, "no op may fail on mem://");
        let ops = out.metrics.total_ops();
        let (writer_cpu_s, log) = match writer {
            Some((w, sender)) => {
                // The writer thread started with the run, at zero CPU.
                let cpu = writer_cpu_when_idle(self.tick).unwrap_or(f64::NAN);
                drop(sender);
                let stats = w.finish_async().await.expect("op-log finishes");
                assert_eq!(stats.records, ops, "every op is logged");
                let _ = std::fs::remove_file(&path);
                (cpu, Some(stats))
            }
            None => (0.0, None),
        };
        Sample {
            ops,
            wall_s,
            engine_cpu_s,
            writer_cpu_s,
            process_cpu_s: process_cpu() - cpu0,
            log,
        }
    }
}

/// Entries as 32 workers of a get90-put10 stage at ~3M ops/s would send
/// them: batches of 256, each one worker's ops in order, the workers'
/// batches interleaved. Built before timing.
fn synthetic_batches(records: u64) -> Vec<LogBatch> {
    const WORKERS: u64 = 32;
    const PER_BATCH: u64 = 256;
    let context = Arc::new(LogContext::new(
        "harness-agent",
        "get90-put10",
        "h/",
        Default::default(),
    ));
    let t0: i64 = 1_795_471_005_000_000_000;
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut batches = Vec::new();
    let mut idx = 0;
    let mut n = 0u64;
    while idx < records {
        let worker = n % WORKERS;
        let round = n / WORKERS;
        let mut batch = LogBatch::with_capacity(context.clone(), PER_BATCH as usize);
        let endpoint = batch.endpoint_id("mem://harness");
        for k in 0..PER_BATCH.min(records - idx) {
            let r = next();
            let op = if r % 10 == 0 {
                OpKind::Put
            } else {
                OpKind::Get
            };
            // One op every ~340 ns on the core, so each worker's every ~11 µs.
            let start_ns = t0 + ((round * PER_BATCH + k) * WORKERS + worker) as i64 * 340;
            let end_ns = start_ns + 250 + (r >> 8) as i64 % 300;
            batch.push(
                LogEntry {
                    thread: worker as u32,
                    op,
                    warmup: false,
                    retries: 0,
                    n_objects: 1,
                    bytes: (r >> 20) % 65,
                    start_ns,
                    first_byte_ns: (op == OpKind::Get).then_some(start_ns + 120),
                    end_ns,
                    lag_ns: None,
                    key: EntryKey::Index((r >> 32) % 1000),
                    error: String::new(),
                },
                endpoint,
            );
        }
        batch.set_first_idx(idx);
        idx += batch.len() as u64;
        batches.push(batch);
        n += 1;
    }
    batches
}

/// The writer alone: `batches` sent as fast as the channel takes them.
/// Returns writer-thread CPU ns per record and compressed bytes per record.
async fn writer_alone(
    dir: &std::path::Path,
    batches: Vec<LogBatch>,
    tick: f64,
    format: OpLogFormat,
) -> (f64, f64) {
    let path = dir.join("writer.log.zst");
    let records: usize = batches.iter().map(|b| b.len()).sum();
    let (writer, sender) = spawn_writer_as(&path, format).expect("op-log writer starts");
    for b in batches {
        sender.send_log_batch(b).await.expect("writer runs");
    }
    let cpu = writer_cpu_when_idle(tick).unwrap_or(f64::NAN);
    drop(sender);
    let stats = writer.finish_async().await.expect("op-log finishes");
    assert_eq!(stats.records, records as u64);
    let _ = std::fs::remove_file(&path);
    (
        cpu * 1e9 / records as f64,
        stats.bytes_compressed as f64 / records as f64,
    )
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn main() {
    let ops: u64 = env_or("CHORUS_HARNESS_OPS", 2_000_000);
    let rounds: usize = env_or("CHORUS_HARNESS_ROUNDS", 5);
    let concurrency: u32 = env_or("CHORUS_HARNESS_CONCURRENCY", 32);
    let which: String = env_or("CHORUS_HARNESS_MIX", "all".to_string());
    let log_modes: String = env_or("CHORUS_HARNESS_LOG", "both".to_string());
    let format = match env_or("CHORUS_HARNESS_FORMAT", "spool".to_string()).as_str() {
        "tsv" => OpLogFormat::Tsv,
        _ => OpLogFormat::Spool,
    };

    let topo = Topology::detect();
    // The main thread (and the writer threads it starts, which inherit its
    // mask) goes on another CPU than the engine's, when there is one.
    let other: Vec<usize> = topo
        .allowed_cpus
        .iter()
        .copied()
        .filter(|&c| c != ENGINE_CPU)
        .collect();
    let writer_cpus = if other.is_empty() {
        "shared with the engine (one CPU allowed)".to_string()
    } else {
        pin_current_thread(&other).expect("pin main thread");
        format!("{other:?}")
    };
    let pools = Arc::new(
        Pools::build(&PoolSpec::CpuSets(vec![vec![ENGINE_CPU]]), &topo)
            .expect("one pool pinned to CPU 0"),
    );
    // SAFETY: sysconf has no preconditions.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;

    let plan = plan::parse(&plan_text(ops, concurrency), "bench").expect("bench plan loads");
    let data = DataSpec {
        dedup: plan.data.dedup,
        compress: plan.data.compress,
        ..DataSpec::new(plan.seed)
    };
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new("harness"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("driver runtime");

    rt.block_on(async {
        let mut bench = Bench {
            plan,
            data,
            store,
            pools,
            keys: Arc::new(KeyState::new(0)),
            tick,
            dir: tempfile::tempdir().expect("temp dir"),
            format,
        };
        // Prepare (no log): 1000 objects.
        let mut prep = bench.stage_run(0, None, None);
        prep.keys = None;
        let prepared = run_stage(prep).await.expect("prepare runs");
        bench.keys = prepared.keys;
        assert_eq!(
            bench.keys.present_count(),
            1000,
            "prepare wrote every object"
        );

        // The writer alone first: its CPU per record caps the ops/s an agent
        // can log, whatever the engine does.
        // Both formats, alternating round by round: the spool the agent
        // writes, and the TSV it wrote before (issue 20's baseline).
        let writer_rounds = if log_modes == "off" { 0 } else { rounds };
        let formats = [("spool", OpLogFormat::Spool), ("tsv", OpLogFormat::Tsv)];
        let mut writer_ns = [Vec::new(), Vec::new()];
        let mut writer_bytes = [0.0; 2];
        for _ in 0..writer_rounds {
            for (i, (_, f)) in formats.iter().enumerate() {
                let batches = synthetic_batches(ops);
                let (ns, bytes) = writer_alone(bench.dir.path(), batches, tick, *f).await;
                writer_ns[i].push(ns);
                writer_bytes[i] = bytes;
            }
        }
        for (i, (name, _)) in formats.iter().enumerate() {
            if writer_rounds == 0 {
                break;
            }
            let ns = &writer_ns[i];
            println!(
                "op-log writer alone, {name} ({ops} synthetic get90-put10 records, {rounds} rounds): \
                 median {:.0} ns of writer-thread CPU per record (min {:.0}), {:.1} B/record \
                 -> one writer thread logs up to {:.2}M ops/s",
                median(ns.clone()),
                ns.iter().copied().fold(f64::INFINITY, f64::min),
                writer_bytes[i],
                1e3 / median(ns.clone()),
            );
        }
        if which == "writer" {
            return;
        }

        let stages: Vec<usize> = match which.as_str() {
            "get90" => vec![1],
            "get100" => vec![2],
            _ => vec![1, 2],
        };
        let modes: Vec<bool> = match log_modes.as_str() {
            "on" => vec![true],
            "off" => vec![false],
            _ => vec![true, false],
        };

        println!(
            "harness bench: mem://, {} objects of 0-64 B, {concurrency} workers on one pool \
             pinned to CPU {ENGINE_CPU}, op-log writer thread on CPUs {writer_cpus}; \
             {ops} ops per run, {rounds} rounds (+1 warm-up), log ({:?}) on/off alternating",
            bench.plan.stages[1].objects.count,
            bench.format
        );
        // Warm-up round: allocator, page cache, CPU frequency.
        for &s in &stages {
            for &m in &modes {
                bench.run(s, m, Some((ops / 4).max(1))).await;
            }
        }

        let mut table: Vec<(usize, bool, Vec<Sample>)> = Vec::new();
        for &s in &stages {
            for &m in &modes {
                table.push((s, m, Vec::new()));
            }
        }
        println!(
            "{:<12} {:>5} {:>4} {:>11} {:>13} {:>9} {:>10} {:>10} {:>9} {:>8}",
            "stage",
            "round",
            "log",
            "ops/s/core",
            "ops/engine-s",
            "engine %",
            "writer ns",
            "proc ns/op",
            "B/record",
            "bp waits"
        );
        for round in 0..rounds {
            // Swap the order each round so neither mode always goes first.
            let order: Vec<usize> = if round % 2 == 0 {
                (0..table.len()).collect()
            } else {
                (0..table.len()).rev().collect()
            };
            for i in order {
                let (s, m) = (table[i].0, table[i].1);
                let sample = bench.run(s, m, None).await;
                println!(
                    "{:<12} {:>5} {:>4} {:>11.0} {:>13.0} {:>8.0}% {:>10.0} {:>10.0} {:>9} {:>8}",
                    bench.plan.stages[s].name,
                    round,
                    if m { "on" } else { "off" },
                    sample.ops_per_s(),
                    sample.ops_per_engine_cpu_s(),
                    100.0 * sample.engine_cpu_s / sample.wall_s,
                    sample.writer_cpu_s * 1e9 / sample.ops as f64,
                    sample.process_cpu_s * 1e9 / sample.ops as f64,
                    sample.log.map_or("-".to_string(), |l| format!(
                        "{:.1}",
                        l.bytes_compressed as f64 / l.records.max(1) as f64
                    )),
                    sample
                        .log
                        .map_or("-".to_string(), |l| l.backpressure_waits.to_string()),
                );
                table[i].2.push(sample);
            }
        }

        println!();
        println!("medians over {rounds} rounds (engine = the one pinned worker core):");
        println!(
            "{:<12} {:>4} {:>11} {:>13} {:>14} {:>16} {:>12}",
            "stage",
            "log",
            "ops/s/core",
            "ops/engine-s",
            "writer CPU/op",
            "process CPU/op",
            "CPU cores"
        );
        let med = |v: &[Sample], f: &dyn Fn(&Sample) -> f64| median(v.iter().map(f).collect());
        let mut verdicts = Vec::new();
        for (s, m, v) in &table {
            println!(
                "{:<12} {:>4} {:>11.0} {:>13.0} {:>11.0} ns {:>13.0} ns {:>12.2}",
                bench.plan.stages[*s].name,
                if *m { "on" } else { "off" },
                med(v, &|x| x.ops_per_s()),
                med(v, &|x| x.ops_per_engine_cpu_s()),
                med(v, &|x| x.writer_cpu_s * 1e9 / x.ops as f64),
                med(v, &|x| x.process_cpu_s * 1e9 / x.ops as f64),
                med(v, &|x| x.process_cpu_s / x.wall_s),
            );
        }
        for &s in &stages {
            let on = table.iter().find(|t| t.0 == s && t.1);
            let off = table.iter().find(|t| t.0 == s && !t.1);
            let name = &bench.plan.stages[s].name;
            if let Some((_, _, on)) = on {
                let r = med(on, &|x| x.ops_per_s());
                let verdict = if r >= GOAL_OPS_PER_CORE {
                    "meets"
                } else {
                    "MISSES"
                };
                verdicts.push(format!(
                    "{name}: {r:.0} ops/s per engine core with the log on \
                     (goal >= {GOAL_OPS_PER_CORE:.0}: {verdict})"
                ));
            }
            if let (Some((_, _, on)), Some((_, _, off))) = (on, off) {
                // Per-round pairs (same round, back to back), then the median.
                let cost: Vec<f64> = on
                    .iter()
                    .zip(off)
                    .map(|(a, b)| 100.0 * (1.0 - a.ops_per_s() / b.ops_per_s()))
                    .collect();
                let cost_cpu: Vec<f64> = on
                    .iter()
                    .zip(off)
                    .map(|(a, b)| {
                        100.0 * (1.0 - a.ops_per_engine_cpu_s() / b.ops_per_engine_cpu_s())
                    })
                    .collect();
                let c = median(cost);
                let verdict = if c <= GOAL_LOG_COST_PCT {
                    "meets"
                } else {
                    "MISSES"
                };
                verdicts.push(format!(
                    "{name}: op-log costs {c:.1}% of engine-core throughput \
                     ({:.1}% by engine CPU) (goal <= {GOAL_LOG_COST_PCT}%: {verdict}); \
                     plus {:.0} ns of writer-thread CPU per op on the other core",
                    median(cost_cpu),
                    med(on, &|x| x.writer_cpu_s * 1e9 / x.ops as f64),
                ));
            }
        }
        println!();
        for v in verdicts {
            println!("{v}");
        }
    });
}
