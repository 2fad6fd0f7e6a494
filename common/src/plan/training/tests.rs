//! The AI/ML stages' keys: defaults, the canonical form read back equal,
//! located errors, and the checks that need the agent count.

use super::*;
use crate::plan::{Overrides, parse};

const PLAN: &str = r#"name: ml
target: file:///tmp/ml
dataset: {samples: 100, sample_size: {uniform: {min: 1KiB, max: 4KiB}}, samples_per_file: 10, format: npz}
stages:
  - {name: gen, type: dataset, concurrency: 3}
  - name: tr
    type: train
    train: {epochs: 2, batch: 5, accelerators: 4, compute: {uniform: [1ms, 3ms]}, read_threads: 2, au_target: 95%}
  - name: find
    type: train
    dataset: {samples: 64, sample_size: 1KiB, prefix: other/}
    train: {accelerators: {min: 1, max: 8}, compute: 0s, shuffle: false}
  - name: ck
    type: checkpoint
    checkpoint: {size: 8MiB, accelerators: 4, restore_from: other}
"#;

#[test]
fn keys_decode_with_defaults_and_read_back_equal() {
    let p = parse(PLAN, "ml.yaml").unwrap_or_else(|e| panic!("{e}"));
    let d = p.stages[0].training.dataset.as_ref().unwrap();
    assert_eq!((d.samples, d.samples_per_file), (100, 10));
    assert_eq!(
        (d.format, d.prefix.as_str()),
        (DatasetFormat::Npz, "dataset/")
    );
    assert_eq!(p.stages[0].concurrency, 3);
    // The train stage shares the plan's dataset.
    assert_eq!(p.stages[1].training.dataset.as_ref(), Some(d));
    let t = p.stages[1].training.train.as_ref().unwrap();
    assert_eq!(
        (t.epochs, t.batch, t.accelerators, t.read_threads),
        (2, 5, 4, 2)
    );
    assert_eq!(
        (t.prefetch, t.au_target, t.shuffle, t.search),
        (2, 0.95, true, None)
    );
    // Its workers are its ranks' readers.
    assert_eq!(p.stages[1].concurrency, 8);
    let s = p.stages[2].training.train.as_ref().unwrap();
    assert_eq!(
        (s.search, s.accelerators, s.shuffle),
        (Some((1, 8)), 8, false)
    );
    assert_eq!(
        p.stages[2].training.dataset.as_ref().unwrap().prefix,
        "other/"
    );
    let c = p.stages[3].training.checkpoint.as_ref().unwrap();
    assert_eq!((c.size, c.accelerators, c.restore), (8 << 20, 4, true));
    assert_eq!(
        (c.restore_from, c.prefix.as_str()),
        (RestoreFrom::Other, "checkpoint/")
    );
    assert_eq!(p.stages[3].concurrency, 4);
    let again = parse(&p.to_yaml(), "out.yaml").unwrap_or_else(|e| panic!("{e}\n{}", p.to_yaml()));
    assert_eq!(again, p);
}

#[test]
fn concurrency_overrides_leave_ranks_alone() {
    let mut p = parse(PLAN, "ml.yaml").unwrap();
    let o = Overrides {
        concurrency: Some(16),
        ..Default::default()
    };
    p.apply_overrides(&o).unwrap();
    let c: Vec<u32> = p.stages.iter().map(|s| s.concurrency).collect();
    assert_eq!(c, [16, 8, 8, 4]);
}

/// The error `text` gives, as `line:column: message`.
fn error(text: &str) -> String {
    let e = parse(text, "p.yaml").expect_err("a bad plan");
    format!("{}:{}: {} ({})", e.line, e.column, e.message, e.key)
}

#[test]
fn bad_keys_are_located() {
    let stage = |s: &str| format!("name: p\ntarget: mem://t\nstages:\n  - {s}\n");
    let cases = [
        (
            "{name: t, type: train, train: {batch: 2}}",
            "missing required key `dataset`",
        ),
        (
            "{name: t, type: train, dataset: {samples: 8, sample_size: 1KiB, format: hdf5}, train: {}}",
            "unknown `format` value `hdf5`",
        ),
        (
            "{name: t, type: train, dataset: {samples: 8, sample_size: 1KiB}, train: {accelerators: 0}}",
            "`accelerators` must be a positive integer",
        ),
        (
            "{name: t, type: train, dataset: {samples: 8, sample_size: 1KiB}, train: {accelerators: {min: 4, max: 2}}}",
            "`min` (4) is above `max` (2)",
        ),
        (
            "{name: t, type: train, dataset: {samples: 8, sample_size: 1KiB}, train: {au_target: 120%}}",
            "`au_target` must be between 0% and 100%",
        ),
        (
            "{name: t, type: train, concurrency: 4, dataset: {samples: 8, sample_size: 1KiB}, train: {}}",
            "`concurrency` is not allowed in train stages",
        ),
        (
            "{name: t, type: checkpoint, ops: 5, checkpoint: {size: 1MiB}}",
            "`ops` is not allowed in checkpoint stages",
        ),
        (
            "{name: t, type: workload, duration: 1s, mix: {get: 1}, objects: {count: 1, size: 1}, train: {}}",
            "`train` is only allowed in train stages",
        ),
        (
            "{name: t, type: dataset, dataset: {samples: 70000, sample_size: 1KiB, samples_per_file: 70000, format: npz}}",
            "65534",
        ),
    ];
    for (s, want) in cases {
        let got = error(&stage(s));
        assert!(got.starts_with("4:"), "{s}: {got}");
        assert!(got.contains(want), "{s}: {got}");
    }
}

#[test]
fn rank_checks_name_the_key_where_it_is() {
    let p = parse(PLAN, "ml.yaml").unwrap();
    assert_eq!(p.check_ranks(2), Ok(()));
    // 100 samples over 4 agents × 4 accelerators: 6 per rank; batch 5
    // fits (and 8 MiB splits over 16 ranks); 6 agents: 4 per rank.
    assert_eq!(p.check_ranks(4), Ok(()));
    let e = p.check_ranks(6).unwrap_err();
    assert_eq!(e.path, "stages[1].train.batch");
    assert!(
        e.message.contains("larger than a rank's shard"),
        "{}",
        e.message
    );
    let located = locate(PLAN, "ml.yaml", &e);
    assert_eq!((located.line, located.column), (8, 31), "{located}");
    // 8 MiB over 3 agents × 4 ranks does not split.
    let text = PLAN.replace("batch: 5", "batch: 1");
    let p = parse(&text, "ml.yaml").unwrap();
    let e = p.check_ranks(3).unwrap_err();
    assert_eq!(e.path, "stages[3].checkpoint.size");
    let located = locate(&text, "ml.yaml", &e);
    assert_eq!(located.line, 15, "{located}");
    assert!(located.to_string().starts_with("ml.yaml:15:"), "{located}");
}

#[test]
fn batches_an_epoch_are_bounded_at_the_train_key() {
    let plan = |samples: u64, batch: u64| {
        format!(
            "name: ml\ntarget: file:///tmp/ml\ndataset: {{samples: {samples}, sample_size: 1KiB}}\n\
             stages:\n  - name: tr\n    type: train\n    train: {{batch: {batch}, accelerators: 1}}\n"
        )
    };
    assert!(parse(&plan(MAX_BATCHES, 1), "ml.yaml").is_ok());
    assert!(parse(&plan(MAX_SAMPLES, MAX_SAMPLES / MAX_BATCHES), "ml.yaml").is_ok());
    let e = parse(&plan(MAX_BATCHES + 1, 1), "ml.yaml").unwrap_err();
    assert_eq!(
        (e.line, e.column, e.key.as_str()),
        (7, 12, "stages[0].train.batch"),
        "{e}"
    );
    assert!(e.message.contains("raise `batch`"), "{e}");
}
