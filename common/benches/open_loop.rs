//! Open-loop precision: how much latency the engine adds to an open-loop
//! op by starting it late, against closed-loop latency measured in the
//! same run (this machine is shared and noisy: read the ratios).
//!
//! Run with `scripts/bench/open-loop.sh`, which builds this bench from two
//! trees (this one and a base, by default the merge-base with `main`) and
//! runs them alternately. It uses only the engine's public API
//! (`run_stage`), so it builds on the base too.
//!
//! Per target (`mem://`, and `file://` in a temp dir: reads from the page
//! cache) and round: a closed-loop GET stage (1 worker, a fixed op count),
//! then open-loop GET stages at each rate (16 workers, Poisson arrivals),
//! all on an unpinned pool as an agent runs them. Each row: GET latency
//! p50/p99, the schedule report's mean lag, the process's CPU (`getrusage`)
//! as % of one core and µs per op, and open/closed p50 ratios.
//!
//! Knobs: `CHORUS_OL_RATES` (default `100,1000,10000,100000`),
//! `CHORUS_OL_SECS` (per open-loop stage, default 3), `CHORUS_OL_ROUNDS`
//! (default 1), `CHORUS_OL_TARGETS` (`mem,file`), `CHORUS_OL_LABEL` (a
//! name printed on every row, for the A/B script).

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use chorus_common::datagen::DataSpec;
use chorus_common::op::OpKind;
use chorus_common::plan::{self, Stage};
use chorus_common::pools::{PoolSpec, Pools};
use chorus_common::store::{self, ObjectStore, OpenOptions};
use chorus_common::topology::Topology;
use chorus_common::workload::{Deal, KeyState, LiveCounters, StageRun, run_stage};

mod support;
use support::{env_or, process_cpu};

struct Row {
    ops: u64,
    p50_us: f64,
    p99_us: f64,
    lag_us: f64,
    cpu_pct: f64,
    cpu_us_per_op: f64,
}

async fn run(
    stage: &Stage,
    store: &Arc<dyn ObjectStore>,
    pools: &Arc<Pools>,
    keys: Option<Arc<KeyState>>,
) -> (Row, Arc<KeyState>) {
    let run = StageRun {
        deal: Deal::whole(0, 1),
        agent_id: "bench".into(),
        data: DataSpec::new(7),
        stage_index: 1,
        stage: stage.clone(),
        store: store.clone(),
        multi: Vec::new(),
        oplog: None,
        keys,
        pools: Some(pools.clone()),
        // Set-up (pool tasks, the pacer thread) is not part of the schedule.
        start_at: Instant::now() + std::time::Duration::from_millis(100),
        clock: chorus_common::clock::Anchor::now(),
        live: Arc::new(LiveCounters::default()),
        stop: Arc::new(AtomicBool::new(false)),
    };
    let cpu0 = process_cpu();
    let t0 = Instant::now();
    let out = run_stage(run).await.expect("stage runs");
    let wall = t0.elapsed().as_secs_f64();
    let cpu = process_cpu() - cpu0;
    let ops = out.metrics.total_ops();
    let (p50, p99) = out.metrics.ops.get(&OpKind::Get).map_or((0, 0), |s| {
        (
            s.latency.value_at_quantile(0.5),
            s.latency.value_at_quantile(0.99),
        )
    });
    let row = Row {
        ops,
        p50_us: p50 as f64 / 1e3,
        p99_us: p99 as f64 / 1e3,
        lag_us: out.schedule.as_ref().map_or(0.0, |s| s.mean_lag_ms * 1e3),
        cpu_pct: 100.0 * cpu / wall,
        cpu_us_per_op: cpu * 1e6 / ops.max(1) as f64,
    };
    (row, out.keys)
}

fn main() {
    let rates: Vec<u64> = env_or("CHORUS_OL_RATES", "100,1000,10000,100000".to_string())
        .split(',')
        .filter_map(|r| r.trim().parse().ok())
        .collect();
    let secs: f64 = env_or("CHORUS_OL_SECS", 3.0);
    let rounds: usize = env_or("CHORUS_OL_ROUNDS", 1);
    let targets: String = env_or("CHORUS_OL_TARGETS", "mem,file".to_string());
    let label: String = env_or("CHORUS_OL_LABEL", "this".to_string());
    let topo = Topology::detect();
    let pools = Arc::new(Pools::build(&PoolSpec::Unpinned, &topo).expect("pool"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    println!(
        "{:<6} {:<5} {:>5} {:>8} {:>8} {:>10} {:>10} {:>10} {:>7} {:>9} {:>8}",
        "build",
        "store",
        "round",
        "mode",
        "ops",
        "p50 µs",
        "p99 µs",
        "lag µs",
        "CPU %",
        "CPU µs/op",
        "p50/cl"
    );
    rt.block_on(async {
        for target in targets.split(',') {
            let uri = match target {
                "mem" => "mem://olbench".to_string(),
                "file" => format!("file://{}", dir.path().display()),
                other => panic!("unknown target {other}"),
            };
            let mut text = format!(
                "name: ol\nseed: 7\ntarget: {uri}\nobjects: {{prefix: o/, count: 1000, size: 4KiB}}\n\
                 stages:\n  - {{name: prep, type: prepare}}\n  - {{name: closed, type: workload, \
                 concurrency: 1, mix: {{get: 1}}, ops: 20000}}\n"
            );
            for r in &rates {
                text.push_str(&format!(
                    "  - {{name: r{r}, type: workload, concurrency: 16, mix: {{get: 1}}, \
                     rate: {r}, duration: {}ms}}\n",
                    (secs * 1e3) as u64
                ));
            }
            let plan = plan::parse(&text, "bench").expect("plan");
            let store = store::open(&uri, &OpenOptions::default())
                .await
                .expect("store opens");
            let (_, keys) = run(&plan.stages[0], &store, &pools, None).await;
            for round in 0..rounds {
                let (closed, _) = run(&plan.stages[1], &store, &pools, Some(keys.clone())).await;
                let line = |mode: &str, r: &Row| {
                    println!(
                        "{label:<6} {target:<5} {round:>5} {mode:>8} {:>8} {:>10.1} {:>10.1} {:>10.1} {:>7.1} {:>9.2} {:>8.1}",
                        r.ops,
                        r.p50_us,
                        r.p99_us,
                        r.lag_us,
                        r.cpu_pct,
                        r.cpu_us_per_op,
                        r.p50_us / closed.p50_us.max(0.001),
                    )
                };
                line("closed", &closed);
                for (i, rate) in rates.iter().enumerate() {
                    let (r, _) = run(&plan.stages[2 + i], &store, &pools, Some(keys.clone())).await;
                    line(&rate.to_string(), &r);
                }
            }
        }
    });
}
