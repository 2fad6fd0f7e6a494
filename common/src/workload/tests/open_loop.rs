//! Open loop: the target rate is kept against a slow store, the achieved
//! rate is reported honestly, and latency counts from the scheduled slot.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_fixed_rate_is_kept_against_a_slow_store() {
    let inner = mem("open-fixed");
    let keys = prepare(&inner, 100, "1KiB").await;
    let store = delayed(&inner, 2);
    let s = stage(
        "{name: o, type: workload, concurrency: 16, objects: {count: 100, size: 1KiB}, \
         mix: {get: 1}, rate: 1000, arrivals: fixed, duration: 3s}",
    );
    let ran = run(&s, &store, Some(keys)).await;
    assert!(ran.errors().is_empty(), "{:?}", ran.errors().first());
    let sched = ran
        .out
        .schedule
        .clone()
        .expect("open loop reports its schedule");
    assert_eq!(sched.target_rate, 1000.0);
    assert!(
        (sched.achieved_rate / 1000.0 - 1.0).abs() < 0.02,
        "reported achieved rate {}",
        sched.achieved_rate
    );
    let n = ran.records.len();
    assert_eq!(sched.ops, n as u64);
    // Independently, from the log: ops per second of the stage's duration,
    // the spacing of start times, and completions per second.
    let per_second = n as f64 / 3.0;
    assert!((per_second / 1000.0 - 1.0).abs() < 0.02, "{n} ops in 3 s");
    let v = ran.by_start();
    let (first, last) = (v[0].start_ns, v[n - 1].start_ns);
    let spaced = (n - 1) as f64 / ((last - first) as f64 / 1e9);
    assert!(
        (spaced / 1000.0 - 1.0).abs() < 0.02,
        "start spacing gives {spaced}/s"
    );
    let last_end = ran.records.iter().map(|r| r.end_ns).max().unwrap();
    let completed = n as f64 / ((last_end - first) as f64 / 1e9);
    assert!(
        (completed / 1000.0 - 1.0).abs() < 0.02,
        "completions {completed}/s: the store kept up"
    );
    // With enough workers there is no queueing: latency is about the
    // store's 2 ms, not hundreds of ms.
    let p50 = ran.out.metrics.ops[&OpKind::Get]
        .latency
        .value_at_quantile(0.5);
    assert!((2_000_000..50_000_000).contains(&p50), "p50 {p50} ns");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_overload_latency_includes_schedule_lag() {
    // Two workers on a 10 ms store can do ~200 ops/s; the target is 400/s.
    let inner = mem("open-overload");
    let keys = prepare(&inner, 100, "1KiB").await;
    let store = delayed(&inner, 10);
    let s = stage(
        "{name: o, type: workload, concurrency: 2, objects: {count: 100, size: 1KiB}, \
         mix: {get: 1}, rate: 400, arrivals: fixed, duration: 2s}",
    );
    let ran = run(&s, &store, Some(keys)).await;
    assert!(ran.errors().is_empty());
    let sched = ran.out.schedule.clone().expect("schedule report");
    assert!(
        sched.late_ops > sched.ops / 2,
        "late {} of {}",
        sched.late_ops,
        sched.ops
    );
    assert!(sched.max_lag_ms > 500.0, "max lag {} ms", sched.max_lag_ms);
    assert!(
        sched.mean_lag_ms > 100.0,
        "mean lag {} ms",
        sched.mean_lag_ms
    );
    // Latency counts from the scheduled start: far above the 10 ms service
    // time, because each op waited for its slot's turn.
    let p50 = ran.out.metrics.ops[&OpKind::Get]
        .latency
        .value_at_quantile(0.5);
    assert!(p50 > 100_000_000, "p50 {p50} ns is the service time only");
    // And the lag grows through the run: the last quarter of ops waited
    // far longer than the first.
    let v = ran.by_start();
    let q = v.len() / 4;
    let mean =
        |rs: &[&OpRecord]| rs.iter().map(|r| r.duration_ns() as f64).sum::<f64>() / rs.len() as f64;
    let (early, late) = (mean(&v[..q]), mean(&v[v.len() - q..]));
    assert!(
        late > 3.0 * early && late > 300e6,
        "lag does not grow: first quarter {early} ns, last quarter {late} ns"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_overload_reports_the_rate_really_achieved() {
    // As above: capacity ~200 ops/s, target 400/s. The store did about
    // half the target; the report must say so, not echo the schedule.
    let inner = mem("open-shortfall");
    let keys = prepare(&inner, 100, "1KiB").await;
    let store = delayed(&inner, 10);
    let s = stage(
        "{name: o, type: workload, concurrency: 2, objects: {count: 100, size: 1KiB}, \
         mix: {get: 1}, rate: 400, arrivals: fixed, duration: 1s}",
    );
    let ran = run(&s, &store, Some(keys)).await;
    let n = ran.records.len() as f64;
    assert!(
        n < 0.6 * 400.0,
        "{n} ops in 1 s: the store was not slow enough"
    );
    let sched = ran.out.schedule.clone().expect("schedule report");
    assert!(
        sched.achieved_rate < 0.6 * sched.target_rate,
        "reported achieved rate {:.0}/s for a target of {:.0}/s, but only {n} ops \
         were issued in the 1 s stage",
        sched.achieved_rate,
        sched.target_rate
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_poisson_rate_is_kept_over_many_ops() {
    let store = mem("open-poisson");
    let keys = prepare(&store, 100, "64B").await;
    let s = stage(
        "{name: o, type: workload, concurrency: 16, objects: {count: 100, size: 64B}, \
         mix: {stat: 1}, rate: 5000, arrivals: poisson, duration: 4s}",
    );
    let ran = run(&s, &store, Some(keys)).await;
    assert!(ran.errors().is_empty());
    let sched = ran.out.schedule.clone().expect("schedule report");
    assert!(
        (sched.achieved_rate / 5000.0 - 1.0).abs() < 0.02,
        "reported {}",
        sched.achieved_rate
    );
    let n = ran.records.len();
    assert!(
        (n as f64 / 4.0 / 5000.0 - 1.0).abs() < 0.02,
        "{n} ops in 4 s"
    );
    // Poisson gaps vary (a fixed schedule would have them all equal):
    // their coefficient of variation is about 1.
    let v = ran.by_start();
    let gaps: Vec<f64> = v
        .windows(2)
        .map(|w| (w[1].start_ns - w[0].start_ns) as f64)
        .collect();
    let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
    let sd = (gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64).sqrt();
    assert!((sd / mean - 1.0).abs() < 0.1, "gap cv {}", sd / mean);
}

/// Ops start at their slots, not a timer tick later: with free workers
/// and a store that answers in microseconds, the median latency counted
/// from the slot is far below tokio's timer lateness (~1.1 ms, which every
/// op carried before the pacer), and few ops are over 1 ms late. Loose bounds, for
/// a shared machine: the precision itself is `scripts/bench/open-loop.sh`'s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_ops_start_close_to_their_slots() {
    for arrivals in ["fixed", "poisson"] {
        let store = mem(&format!("open-precise-{arrivals}"));
        let keys = prepare(&store, 100, "4KiB").await;
        let s = stage(&format!(
            "{{name: o, type: workload, concurrency: 8, objects: {{count: 100, size: 4KiB}}, \
             mix: {{get: 1}}, rate: 2000, arrivals: {arrivals}, duration: 2s}}"
        ));
        let ran = run(&s, &store, Some(keys)).await;
        assert!(ran.errors().is_empty());
        let sched = ran.out.schedule.clone().expect("schedule report");
        let get = &ran.out.metrics.ops[&OpKind::Get].latency;
        let p50 = get.value_at_quantile(0.5);
        assert!(
            p50 < 300_000,
            "{arrivals}: GET p50 {p50} ns from the slot: ops start late"
        );
        // Before the pacer, about half of them started over 1 ms late. The
        // mean lag is not judged: one stall of a busy host's scheduler
        // moves it by milliseconds.
        assert!(
            sched.late_ops * 4 < sched.ops,
            "{arrivals}: {} of {} ops over 1 ms late (mean lag {} ms)",
            sched.late_ops,
            sched.ops,
            sched.mean_lag_ms
        );
    }
}

/// A stop during a long gap at a low rate ends the stage at once, not at
/// the workers' far-off slots (0.5 ops/s: four workers hold slots up to 6 s
/// away), and no op starts after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_stop_ends_long_waits() {
    let store = mem("open-stop");
    let keys = prepare(&store, 10, "1KiB").await;
    let s = stage(
        "{name: o, type: workload, concurrency: 4, objects: {count: 10, size: 1KiB}, \
         mix: {get: 1}, rate: 0.5, arrivals: fixed, duration: 60s}",
    );
    let stop = Arc::new(AtomicBool::new(false));
    let run = StageRun {
        deal: Deal::whole(0, 1),
        agent_id: "agent-0".into(),
        data: DataSpec::new(SEED),
        stage_index: 0,
        stage: s,
        store,
        multi: Vec::new(),
        oplog: None,
        keys: Some(keys),
        pools: None,
        start_at: Instant::now(),
        clock: crate::clock::Anchor::now(),
        live: Arc::new(LiveCounters::default()),
        stop: stop.clone(),
    };
    let stage = tokio::spawn(run_stage(run));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopped = Instant::now();
    stop.store(true, Ordering::Relaxed);
    let out = tokio::time::timeout(STAGE_TIMEOUT, stage)
        .await
        .expect("the stage ends")
        .expect("task")
        .expect("stage runs");
    let took = stopped.elapsed();
    assert!(
        took < Duration::from_millis(1500),
        "a stop took {took:?}: it waited for a slot"
    );
    assert!(out.stopped_early);
    // Only the slot at the start was due before the stop.
    assert_eq!(out.schedule.expect("schedule report").ops, 1);
}
