//! Training epochs on the engine: accelerator utilization against the
//! value worked out by hand for a store of known delay (the file store
//! behind `DelayStore`), in a data-bound and a compute-bound case, and
//! every sample of an epoch read exactly once, verified, by the ranks of
//! several agents.

use std::collections::BTreeMap;

use super::*;
use crate::plan::StepSpec;

const DATASET: &str = "dataset: {samples: 64, sample_size: 4KiB, format: raw, prefix: ds/}";

/// Writes the dataset on `store` (one agent).
async fn write_dataset(store: &Arc<dyn ObjectStore>) {
    let s = stage(&format!("{{name: gen, type: dataset, {DATASET}}}"));
    let ran = run(&s, store, None).await;
    assert_eq!(ran.out.metrics.total_ops(), 64);
    assert_eq!(ran.out.metrics.total_errors(), 0);
}

/// Epoch 1 of a train stage with `train` settings, as agent `a` of `n`.
async fn epoch(train: &str, store: &Arc<dyn ObjectStore>, a: u32, n: u32) -> Ran {
    let s = stage(&format!(
        "{{name: tr, type: train, verify: true, {DATASET}, train: {train}}}"
    ));
    let s = s.for_step(&StepSpec {
        index: 1,
        name: "tr/epoch-1".into(),
        ..Default::default()
    });
    run_as(&s, store, None, a, n, true).await
}

/// AU worked out by hand for one rank with `t` readers, batches of `b`
/// samples, `steps` batches, each read taking `d` and each batch's compute
/// `c` (s), prefetch 2: the readers never wait for the accelerator (the
/// batch after next may load while one computes), so a data-bound epoch
/// is the readers' time plus the last compute, a compute-bound one the
/// first batch's load plus the computes. Neither counts the moments a
/// task takes to wake, which a prefetch of 1 would put in every step.
/// `c` is the plan's compute, `took` what each compute pause really took
/// (a little longer: the timer's slack, a busy machine): the wall time
/// has the latter, the compute time the former.
fn au_by_hand(t: f64, b: f64, steps: f64, d: f64, c: f64, took: f64) -> f64 {
    let load = (b / t).ceil() * d;
    let wall = if load >= took {
        steps * load + took
    } else {
        load + steps * took
    };
    steps * c / wall
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accelerator_utilization_matches_the_hand_computed_value() {
    let dir = tempfile::tempdir().expect("temp dir");
    let files = file_store(dir.path());
    write_dataset(&files).await;
    // Reads long against what the engine does between a reader's reads
    // (tens of µs; a few ms when a busy 2-core machine keeps its threads
    // waiting for a CPU), so that stays well inside the 2%: one read per
    // reader per step.
    let slow = delayed(&files, 200);
    // Data-bound: 8 readers load 8 samples in 200 ms; compute 120 ms.
    // Compute-bound: the same loads, compute 300 ms.
    for (compute_ms, what) in [(120.0, "data-bound"), (300.0, "compute-bound")] {
        let ran = epoch(
            &format!(
                "{{accelerators: 1, read_threads: 8, batch: 8, prefetch: 2, shuffle: false, \
                 compute: {compute_ms}ms}}"
            ),
            &slow,
            0,
            1,
        )
        .await;
        assert_eq!(ran.out.ranks.len(), 1);
        let r = &ran.out.ranks[0];
        assert_eq!((r.samples, r.steps, r.errors), (64, 8, 0), "{what}");
        // The delay store's sleeps run late by the timer's slack: the hand
        // computations take the reads' and computes' measured times.
        let get = &ran.out.metrics.ops[&OpKind::Get];
        let d = get.latency.mean() / 1e9;
        assert!(
            d >= 0.2,
            "{what}: reads took {d} s, under the store's delay"
        );
        let c_ns = r.compute_ns / r.steps;
        assert_eq!(
            c_ns,
            (compute_ms * 1e6) as u64,
            "{what}: compute is the plan's"
        );
        let took_ns = (r.compute_ns + r.overrun_ns) / r.steps;
        let (c, took) = (c_ns as f64 / 1e9, took_ns as f64 / 1e9);
        let got = r.au();
        // By hand from the op-log: batch b (samples 8b..8b+8 unshuffled,
        // one to a file) is ready when its last read ends; the accelerator
        // takes it then or when it finished the one before, and computes.
        // Only how fast the accelerator's task wakes is left out.
        let mut ready = [i64::MIN; 8];
        for rec in &ran.records {
            let file: u64 = rec.file["ds/".len()..]
                .split('-')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("a dataset file: {}", rec.file));
            ready[(file / 8) as usize] = ready[(file / 8) as usize].max(rec.end_ns);
        }
        let t0 = ran.out.started_ns;
        let end = ready.iter().fold(t0, |t, &r| t.max(r) + took_ns as i64);
        let want = (8 * c_ns) as f64 / (end - t0) as f64;
        assert!(
            (got - want).abs() / want < 0.02,
            "{what}: AU {got:.4}, by hand from the op-log {want:.4} (compute {c:.4} s, took {took:.4} s)"
        );
        // And from the delay alone: the readers' time between their reads
        // (tens of µs; a few ms on a busy machine, against 200 ms reads) is
        // all that separates the two.
        let from_delay = au_by_hand(8.0, 8.0, 8.0, d, c, took);
        assert!(
            (got - from_delay).abs() / from_delay < 0.02,
            "{what}: AU {got:.4}, by hand from the delay {from_delay:.4} (read {d:.4} s)"
        );
        assert!(r.wait_ns > 0 && r.wait_ns < r.wall_ns, "{what}: {r:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_epoch_reads_every_sample_once_over_all_agents_ranks() {
    let dir = tempfile::tempdir().expect("temp dir");
    let files = file_store(dir.path());
    write_dataset(&files).await;
    let mut reads: BTreeMap<String, u32> = BTreeMap::new();
    let mut ranks = Vec::new();
    for a in 0..3 {
        let ran = epoch(
            "{accelerators: 2, read_threads: 3, batch: 2, prefetch: 2, compute: 1ms}",
            &files,
            a,
            3,
        )
        .await;
        assert!(ran.errors().is_empty(), "{:?}", ran.errors());
        for r in &ran.records {
            *reads.entry(r.file.clone()).or_default() += 1;
        }
        ranks.extend(ran.out.ranks.iter().map(|r| r.rank));
    }
    assert_eq!(reads.len(), 64, "every file of the dataset read");
    assert!(reads.values().all(|&n| n == 1), "{reads:?}");
    ranks.sort();
    assert_eq!(ranks, (0..6).collect::<Vec<_>>(), "global ranks");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dataset_already_written_is_kept_unless_overwrite() {
    let dir = tempfile::tempdir().expect("temp dir");
    let files = file_store(dir.path());
    let spec = "dataset: {samples: 40, sample_size: 2KiB, samples_per_file: 8, format: tfrecord, \
                prefix: tf/}";
    let generate = |extra: &str| stage(&format!("{{name: gen, type: dataset, {spec}{extra}}}"));
    // 5 files and their 5 indexes.
    let first = run(&generate(""), &files, None).await;
    assert_eq!(first.count(OpKind::Put), 10);
    // One file cut short: only it is written again.
    let victim = dir.path().join("tf/00000002-of-00000005.tfrecord");
    let len = std::fs::metadata(&victim).expect("file written").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&victim)
        .and_then(|f| f.set_len(len - 1))
        .expect("truncate");
    let again = run(&generate(""), &files, None).await;
    let keys: Vec<&str> = again.records.iter().map(|r| r.file.as_str()).collect();
    assert_eq!(keys, ["tf/00000002-of-00000005.tfrecord"]);
    assert_eq!(std::fs::metadata(&victim).unwrap().len(), len);
    let all = run(&generate(", overwrite: true"), &files, None).await;
    assert_eq!(all.count(OpKind::Put), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_verifies_every_shard_and_catches_a_flipped_byte() {
    let dir = tempfile::tempdir().expect("temp dir");
    let files = file_store(dir.path());
    let s = stage(
        "{name: ck, type: checkpoint, verify: true, part_size: 1MiB, \
         checkpoint: {size: 12MiB, accelerators: 3, prefix: ck/}}",
    );
    let step = |restores: bool| {
        s.for_step(&StepSpec {
            index: 1 + u32::from(restores),
            name: format!("ck/{}", if restores { "restore" } else { "write" }),
            restores,
            ..Default::default()
        })
    };
    let write = run(&step(false), &files, None).await;
    assert_eq!(write.count(OpKind::Put), 3);
    assert_eq!(write.out.metrics.ops[&OpKind::Put].bytes, 12 << 20);
    let restore = run(&step(true), &files, None).await;
    assert_eq!(restore.count(OpKind::Get), 3);
    assert!(restore.errors().is_empty(), "{:?}", restore.errors());
    flip_byte(&dir.path().join("ck/rank-00001-of-00003"), 3 << 20);
    let restore = run(&step(true), &files, None).await;
    let errors = restore.errors();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].file, "ck/rank-00001-of-00003");
    assert!(
        errors[0].error.starts_with("verification"),
        "{}",
        errors[0].error
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verified_sample_reads_catch_a_flipped_byte_in_their_format() {
    let dir = tempfile::tempdir().expect("temp dir");
    let files = file_store(dir.path());
    let spec = "dataset: {samples: 32, sample_size: 3KiB, samples_per_file: 4, format: npz, \
                prefix: np/}";
    let generate = stage(&format!("{{name: gen, type: dataset, {spec}}}"));
    run(&generate, &files, None).await;
    let train = stage(&format!(
        "{{name: tr, type: train, verify: true, {spec}, train: {{batch: 2, read_threads: 2}}}}"
    ))
    .for_step(&StepSpec {
        index: 1,
        name: "tr/epoch-1".into(),
        ..Default::default()
    });
    let clean = run(&train, &files, None).await;
    assert_eq!(clean.count(OpKind::RangeGet), 32);
    assert!(clean.errors().is_empty(), "{:?}", clean.errors());
    // A byte inside the second sample's array of file 3.
    let layout =
        crate::dataset::Layout::for_spec(train.training.dataset.as_ref().unwrap(), SEED).unwrap();
    let range = layout.sample_range(13);
    let key = layout.file_key(3);
    flip_byte(
        &dir.path().join(&key),
        (range.offset + range.length - 10) as usize,
    );
    let ran = run(&train, &files, None).await;
    let errors = ran.errors();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].file, key);
    assert!(
        errors[0].error.starts_with("verification"),
        "{}",
        errors[0].error
    );
}
