//! `ramp` and `think` shape the op rate, as the merged timeline of a real
//! run shows: the controller binary with its embedded agents (two), a plan
//! with an open-loop ramp, a closed-loop ramp, and think time against the
//! same stage without it.

use std::collections::BTreeMap;

use chorus_tests::{Tsv, bin, only_run_dir, rfc3339_to_ns, summary_ops};

const PLAN: &str = r#"
name: ramp-think
seed: 3
target: TARGET
objects: {prefix: rt/, count: 200, size: 1KiB}
stages:
  - {name: prepare, type: prepare}
  # 2000 ops/s over both agents, reached after 2 s.
  - name: open-ramp
    type: workload
    mix: {stat: 1}
    concurrency: 8
    rate: 2000
    arrivals: fixed
    ramp: 2s
    duration: 4s
  # Each agent's four workers start 0.5 s apart; each pauses 5 ms after
  # every op, so the rate follows the workers running.
  - name: closed-ramp
    type: workload
    mix: {stat: 1}
    concurrency: 4
    think: 5ms
    ramp: 2s
    duration: 3s
  - name: think
    type: workload
    mix: {stat: 1}
    concurrency: 1
    think: {exponential: 5ms}
    duration: 2s
  - name: free
    type: workload
    mix: {stat: 1}
    concurrency: 1
    duration: 1s
  - {name: cleanup, type: cleanup}
"#;

/// One op of the timeline.
struct Op {
    client: String,
    thread: String,
    start_ns: i64,
    end_ns: i64,
    warmup: bool,
}

/// The timeline's ops by stage.
fn ops_by_stage(t: &Tsv) -> BTreeMap<String, Vec<Op>> {
    let c = |n| t.col(n);
    let (stage, client, thread, start, end, warmup) = (
        c("stage"),
        c("client_id"),
        c("thread"),
        c("start"),
        c("end"),
        c("warmup"),
    );
    let mut out: BTreeMap<String, Vec<Op>> = BTreeMap::new();
    for r in &t.rows {
        out.entry(r[stage].clone()).or_default().push(Op {
            client: r[client].clone(),
            thread: r[thread].clone(),
            start_ns: rfc3339_to_ns(&r[start]),
            end_ns: rfc3339_to_ns(&r[end]),
            warmup: r[warmup] == "1",
        });
    }
    out
}

/// Ops started in each `width_ms` slice from the stage's first op.
fn per_slice(ops: &[Op], width_ms: i64, slices: usize) -> Vec<f64> {
    let t0 = ops.iter().map(|o| o.start_ns).min().unwrap();
    let mut bins = vec![0.0; slices];
    for o in ops {
        let i = ((o.start_ns - t0) / (width_ms * 1_000_000)) as usize;
        if let Some(b) = bins.get_mut(i) {
            *b += 1.0;
        }
    }
    bins
}

/// Ops that started in the ramp are the flagged ones (ops within 20 ms of
/// its end, where two agents' clocks and their start may differ, are not
/// judged), and the summary counts only the others.
fn ramp_is_warmup(run: &std::path::Path, name: &str, ops: &[Op], ramp_ns: i64) {
    let t0 = ops.iter().map(|o| o.start_ns).min().unwrap();
    for o in ops {
        let at = o.start_ns - t0;
        if (at - ramp_ns).abs() > 20_000_000 {
            assert_eq!(o.warmup, at < ramp_ns, "{name}: op at {at} ns");
        }
    }
    let measured = ops.iter().filter(|o| !o.warmup).count() as u64;
    assert!(measured > 0 && measured < ops.len() as u64, "{name}");
    assert_eq!(
        summary_ops(run, name),
        measured,
        "{name}: summary counts the ramp"
    );
}

/// Gaps between the starts of each worker's consecutive ops, in ms.
fn worker_gaps_ms(ops: &[Op]) -> Vec<f64> {
    let mut by_worker: BTreeMap<(&str, &str), Vec<i64>> = BTreeMap::new();
    for o in ops {
        by_worker
            .entry((&o.client, &o.thread))
            .or_default()
            .push(o.start_ns);
    }
    let mut gaps = Vec::new();
    for v in by_worker.values_mut() {
        v.sort_unstable();
        gaps.extend(v.windows(2).map(|w| (w[1] - w[0]) as f64 / 1e6));
    }
    gaps
}

#[test]
fn ramp_and_think_shape_the_op_rate_in_the_timeline() {
    let tmp = tempfile::tempdir().unwrap();
    let target = format!("file://{}", tmp.path().join("data").display());
    let plan = tmp.path().join("plan.yaml");
    std::fs::write(&plan, PLAN.replace("TARGET", &target)).unwrap();
    let results = tmp.path().join("runs");
    let out = std::process::Command::new(bin("controller"))
        .arg("run")
        .arg(&plan)
        .arg("--results")
        .arg(&results)
        .arg("--quiet")
        .output()
        .expect("run controller");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let run = only_run_dir(&results);
    let by_stage = ops_by_stage(&Tsv::read_zst(&run.join("timeline.tsv.zst")));

    // Open loop: rate·t²/(2·ramp) ops by t in the ramp: 500 in its first
    // second, 1500 in its second (three times as many), then 2000 a second.
    let open = &by_stage["open-ramp"];
    let bins = per_slice(open, 1000, 4);
    for (i, want) in [500.0, 1500.0, 2000.0, 2000.0].into_iter().enumerate() {
        assert!(
            (bins[i] / want - 1.0).abs() < 0.1,
            "open-ramp second {i}: {} ops, want {want} ({bins:?})",
            bins[i]
        );
    }
    ramp_is_warmup(&run, "open-ramp", open, 2_000_000_000);

    // Closed loop: worker w of each agent starts at w·0.5 s, and ops per
    // half second rise with the workers: 1, 2, 3, 4, then 4 and 4 per agent.
    let closed = &by_stage["closed-ramp"];
    let t0 = closed.iter().map(|o| o.start_ns).min().unwrap();
    let mut firsts: BTreeMap<(&str, &str), i64> = BTreeMap::new();
    for o in closed {
        let f = firsts.entry((&o.client, &o.thread)).or_insert(o.start_ns);
        *f = (*f).min(o.start_ns);
    }
    assert_eq!(firsts.len(), 8, "{firsts:?}");
    for ((client, thread), first) in &firsts {
        let at = (first - t0) as f64 / 1e6;
        let want = thread.parse::<f64>().unwrap() * 500.0;
        assert!(
            (at - want).abs() < 60.0,
            "{client} worker {thread} began at {at} ms, not {want}"
        );
    }
    let bins = per_slice(closed, 500, 6);
    for (i, &n) in bins.iter().enumerate() {
        let want = bins[0] * (i.min(3) + 1) as f64;
        assert!(
            (n / want - 1.0).abs() < 0.35,
            "closed-ramp half-second {i}: {n} ops, want ~{want} ({bins:?})"
        );
    }
    ramp_is_warmup(&run, "closed-ramp", closed, 2_000_000_000);

    // Think time: two workers pausing 5 ms on average do at most ~400
    // ops/s, far fewer than without; the gaps between one worker's ops
    // have the pause's mean (plus a STAT of a local file).
    let think = &by_stage["think"];
    let free = &by_stage["free"];
    let rate = |ops: &[Op]| {
        let first = ops.iter().map(|o| o.start_ns).min().unwrap();
        let last = ops.iter().map(|o| o.end_ns).max().unwrap();
        ops.len() as f64 / ((last - first) as f64 / 1e9)
    };
    let (think_rate, free_rate) = (rate(think), rate(free));
    assert!(think_rate < 2.0 / 0.005 * 1.1, "{think_rate} ops/s");
    assert!(think_rate > 2.0 / 0.005 * 0.6, "{think_rate} ops/s");
    assert!(
        free_rate > 5.0 * think_rate,
        "{free_rate} ops/s without think"
    );
    let gaps = worker_gaps_ms(think);
    let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
    assert!((mean / 5.0 - 1.0).abs() < 0.2, "mean gap {mean} ms");
    let sd = (gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64).sqrt();
    assert!(
        (sd / mean - 1.0).abs() < 0.3,
        "exponential gaps: cv {}",
        sd / mean
    );
    assert!(think.iter().all(|o| !o.warmup));
    assert_eq!(summary_ops(&run, "think"), think.len() as u64);
}
