//! Ramp and think time shape the op rate: counted from the op-log, per
//! slice of the stage, per worker, and against the same stage without them.

use super::*;

/// Ops that started in each `width_ms` slice of the stage, from its start.
fn per_slice(ran: &Ran, width_ms: i64, slices: usize) -> Vec<usize> {
    let mut bins = vec![0; slices];
    for r in &ran.records {
        let i = (r.start_ns - ran.out.started_ns) / (width_ms * 1_000_000);
        if let Some(b) = usize::try_from(i).ok().and_then(|i| bins.get_mut(i)) {
            *b += 1;
        }
    }
    bins
}

/// Ops in the ramp (started before `ramp_ns` from the stage's start) are
/// exactly the flagged ones, and the summary holds only the others.
fn ramp_ops_are_warmup(ran: &Ran, ramp_ns: i64) {
    // `started_ns` is read when the engine's timer woke for the stage's
    // start, a few ms late on a busy host: ops that close to the boundary
    // are not judged.
    let slack = 10_000_000;
    for r in &ran.records {
        let at = r.start_ns - ran.out.started_ns;
        if (at - ramp_ns).abs() > slack {
            assert_eq!(r.warmup, at < ramp_ns, "op at {at} ns, ramp {ramp_ns} ns");
        }
    }
    let warm = ran.records.iter().filter(|r| r.warmup).count() as u64;
    assert!(warm > 0, "no op flagged in the ramp");
    assert_eq!(ran.out.warmup_ops, warm);
    assert_eq!(
        ran.out.metrics.total_ops(),
        ran.records.len() as u64 - warm,
        "the summary leaves the ramp out"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_loop_ramp_starts_workers_one_after_another() {
    // Each worker does ~300 ops/s against a 2 ms store, so the op rate
    // follows the number of workers running.
    let inner = mem("ramp-closed");
    let keys = prepare(&inner, 100, "1KiB").await;
    let store = delayed(&inner, 2);
    let s = stage(
        "{name: r, type: workload, concurrency: 4, objects: {count: 100, size: 1KiB}, \
         mix: {get: 1}, ramp: 2s, duration: 3s}",
    );
    let ran = run(&s, &store, Some(keys)).await;
    assert!(ran.errors().is_empty(), "{:?}", ran.errors().first());
    // Worker w of 4 begins w/4 of the way through the ramp.
    for w in 0..4u64 {
        let first = ran
            .records
            .iter()
            .filter(|r| r.thread == w)
            .map(|r| r.start_ns)
            .min()
            .unwrap_or_else(|| panic!("worker {w} did nothing"));
        let at = (first - ran.out.started_ns) as f64 / 1e6;
        let want = w as f64 * 500.0;
        assert!(
            (at - want).abs() < 40.0,
            "worker {w} began at {at:.1} ms, not {want} ms"
        );
    }
    // Ops per half second rise with the workers: 1, 2, 3, 4, then 4.
    let bins = per_slice(&ran, 500, 6);
    let one = bins[0] as f64;
    assert!(one > 50.0, "{bins:?}");
    for (i, &n) in bins.iter().enumerate() {
        let want = one * (i.min(3) + 1) as f64;
        assert!(
            (n as f64 / want - 1.0).abs() < 0.3,
            "half-second {i}: {n} ops, want ~{want:.0} ({bins:?})"
        );
    }
    ramp_ops_are_warmup(&ran, 2_000_000_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_ramp_raises_the_rate_linearly() {
    let store = mem("ramp-open");
    let keys = prepare(&store, 100, "64B").await;
    for arrivals in ["fixed", "poisson"] {
        let s = stage(&format!(
            "{{name: o, type: workload, concurrency: 8, objects: {{count: 100, size: 64B}}, \
             mix: {{stat: 1}}, rate: 2000, arrivals: {arrivals}, ramp: 2s, duration: 4s}}"
        ));
        let ran = run(&s, &store, Some(keys.clone())).await;
        assert!(ran.errors().is_empty());
        // rate·t²/(2·ramp): 500 in the first second, 1500 in the second,
        // then the rate.
        let bins = per_slice(&ran, 1000, 4);
        for (i, want) in [500.0, 1500.0, 2000.0, 2000.0].into_iter().enumerate() {
            let got = bins[i] as f64;
            // Poisson counts vary by about their square root.
            let slack = 0.02 * want + 4.0 * f64::sqrt(want);
            assert!(
                (got - want).abs() < slack,
                "{arrivals}: second {i}: {got} ops, want {want} ({bins:?})"
            );
        }
        // The report counts the ramp at what was due in it: the full rate
        // was kept.
        let sched = ran.out.schedule.clone().expect("schedule report");
        assert!(
            (sched.achieved_rate / 2000.0 - 1.0).abs() < 0.05,
            "{arrivals}: achieved {} ops/s",
            sched.achieved_rate
        );
        ramp_ops_are_warmup(&ran, 2_000_000_000);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ramped_budgets_do_exactly_their_ops_and_end_early() {
    let store = mem("ramp-budget");
    let keys = prepare(&store, 100, "64B").await;
    // The first worker alone does the 300 ops in far less than the ramp;
    // the others, not due yet, see the budget spent and do not wait.
    let s = stage(
        "{name: b, type: workload, concurrency: 4, objects: {count: 100, size: 64B}, \
         mix: {stat: 1}, ramp: 10s, ops: 300}",
    );
    let t = Instant::now();
    let ran = run(&s, &store, Some(keys.clone())).await;
    assert_eq!(ran.records.len(), 300);
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "waited {:?}",
        t.elapsed()
    );
    assert!(ran.records.iter().all(|r| r.warmup && r.thread == 0));
    // Open loop: a ramp 1 s long then 1000 ops/s; 1000 ops take 1.5 s.
    let s = stage(
        "{name: b, type: workload, concurrency: 4, objects: {count: 100, size: 64B}, \
         mix: {stat: 1}, rate: 1000, arrivals: fixed, ramp: 1s, ops: 1000}",
    );
    let ran = run(&s, &store, Some(keys)).await;
    assert_eq!(ran.records.len(), 1000);
    let last = ran.records.iter().map(|r| r.start_ns).max().unwrap() - ran.out.started_ns;
    assert!(
        (last as f64 / 1e9 - 1.5).abs() < 0.05,
        "last op at {last} ns"
    );
    assert_eq!(
        ran.out.metrics.total_ops(),
        500,
        "the ramp's 500 ops are warm-up"
    );
}

/// Gaps between the starts of each worker's consecutive ops, in ms.
fn worker_gaps_ms(ran: &Ran) -> Vec<f64> {
    let mut by_worker: BTreeMap<u64, Vec<i64>> = BTreeMap::new();
    for r in &ran.records {
        by_worker.entry(r.thread).or_default().push(r.start_ns);
    }
    by_worker
        .values_mut()
        .flat_map(|v| {
            v.sort_unstable();
            v.windows(2)
                .map(|w| (w[1] - w[0]) as f64 / 1e6)
                .collect::<Vec<_>>()
        })
        .collect()
}

fn mean_and_cv(v: &[f64]) -> (f64, f64) {
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let sd = (v.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
    (mean, sd / mean)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn think_time_paces_each_worker_outside_latency() {
    let store = mem("think");
    let keys = prepare(&store, 100, "1KiB").await;
    let spec = |think: &str| {
        stage(&format!(
            "{{name: t, type: workload, concurrency: 2, objects: {{count: 100, size: 1KiB}}, \
             mix: {{get: 1}}, duration: 2s{think}}}"
        ))
    };
    let free = run(&spec(""), &store, Some(keys.clone())).await;
    let fixed = run(&spec(", think: 5ms"), &store, Some(keys.clone())).await;
    // Two workers pausing 5 ms after ops of a few µs: at most 2/5ms.
    let n = fixed.records.len() as f64;
    assert!(n <= 2.0 * 2.0 / 0.005 * 1.03, "{n} ops in 2 s");
    assert!(n >= 2.0 * 2.0 / 0.005 * 0.85, "{n} ops in 2 s");
    assert!(
        free.records.len() as f64 > 10.0 * n,
        "{} without think",
        free.records.len()
    );
    let gaps = worker_gaps_ms(&fixed);
    let (mean, cv) = mean_and_cv(&gaps);
    assert!((mean / 5.0 - 1.0).abs() < 0.15, "mean gap {mean} ms");
    // Each pause ends within about a timer tick of its time (an
    // exponential's would spread with cv 1); a busy host delays a few more.
    let near = gaps.iter().filter(|g| (3.5..7.0).contains(*g)).count();
    assert!(
        near as f64 > 0.8 * gaps.len() as f64,
        "fixed pauses vary: cv {cv}"
    );
    // The pause is no op's latency: a GET from memory takes well under 1 ms.
    let p50 = fixed.out.metrics.ops[&OpKind::Get]
        .latency
        .value_at_quantile(0.5);
    assert!(p50 < 1_000_000, "p50 {p50} ns holds the think time");
    // The stage still ends on time: no pause runs past its end.
    let last = fixed.records.iter().map(|r| r.end_ns).max().unwrap() - fixed.out.started_ns;
    assert!(last < 2_000_000_000, "last op ended {last} ns in");

    // Exponential: gaps with its mean and a coefficient of variation ~1;
    // uniform: gaps between its bounds, on its mean.
    let exp = run(
        &spec(", think: {exponential: 5ms}"),
        &store,
        Some(keys.clone()),
    )
    .await;
    let (mean, cv) = mean_and_cv(&worker_gaps_ms(&exp));
    assert!(
        (mean / 5.0 - 1.0).abs() < 0.12,
        "exponential mean gap {mean} ms"
    );
    assert!((cv - 1.0).abs() < 0.2, "exponential gap cv {cv}");
    let uni = run(
        &spec(", think: {uniform: [2ms, 8ms]}"),
        &store,
        Some(keys.clone()),
    )
    .await;
    let gaps = worker_gaps_ms(&uni);
    let (mean, _) = mean_and_cv(&gaps);
    assert!((mean / 5.0 - 1.0).abs() < 0.1, "uniform mean gap {mean} ms");
    let inside = gaps.iter().filter(|g| (1.0..10.0).contains(*g)).count();
    assert!(
        inside as f64 > 0.95 * gaps.len() as f64,
        "uniform gaps outside 2-8 ms"
    );

    // With an op limit, exactly its ops.
    let s = stage(
        "{name: t, type: workload, concurrency: 3, objects: {count: 100, size: 1KiB}, \
         mix: {get: 1}, think: 1ms, ops: 200}",
    );
    assert_eq!(run(&s, &store, Some(keys)).await.records.len(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sub_millisecond_think_is_kept_too() {
    // Below the timer's resolution the pause is yielded out, not rounded
    // up to a millisecond or more.
    let store = mem("think-short");
    let keys = prepare(&store, 100, "64B").await;
    let s = stage(
        "{name: t, type: workload, concurrency: 1, objects: {count: 100, size: 64B}, \
         mix: {stat: 1}, think: 300us, ops: 1000}",
    );
    let ran = run(&s, &store, Some(keys)).await;
    let (mean, _) = mean_and_cv(&worker_gaps_ms(&ran));
    assert!(
        (0.3..0.6).contains(&mean),
        "mean gap {mean} ms for 300 µs pauses"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_given_a_rate_runs_without_think() {
    // A capacity search's step sets a rate on a closed-loop stage: the
    // schedule, not the stage's 50 ms pauses, then sets the pace.
    let store = mem("think-step");
    let keys = prepare(&store, 100, "64B").await;
    let s = stage(
        "{name: t, type: workload, concurrency: 2, objects: {count: 100, size: 64B}, \
         mix: {stat: 1}, think: 50ms, duration: 1s}",
    );
    let step = s.for_step(&crate::plan::StepSpec {
        index: 1,
        name: "t/step-01".into(),
        rate: Some(500.0),
        ..Default::default()
    });
    assert_eq!(step.think, s.think, "the step keeps the stage's keys");
    let ran = run(&step, &store, Some(keys)).await;
    let n = ran.records.len();
    assert!((450..=550).contains(&n), "{n} ops at 500/s for 1 s");
}
