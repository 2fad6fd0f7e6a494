//! The AI/ML stage kinds end to end, through the `controller` binary and
//! its embedded agents:
//!
//! - a `dataset` stage writes files that numpy (npz) or a TFRecord reader
//!   written from the format (`tests/python/`) read back sample by sample;
//! - a `train` stage reads every sample exactly once per epoch, in a new
//!   order each epoch, sharded over every agent's ranks: a whole-file GET
//!   per sample with one sample to a file, else a ranged GET of each
//!   record, the records tiling the files;
//! - a `checkpoint` stage writes exactly its size as one shard per rank, on
//!   `file://` and on a real Ceph RGW (listed by boto3), and restores each
//!   shard on another agent than the one that wrote it;
//! - plans that cannot run on the agents at hand (a batch larger than a
//!   rank's shard, a checkpoint that does not split over the ranks) or that
//!   name impossible values are located errors, exit code 2, before
//!   anything runs.
//!
//! The timeline is decoded here (zstd + TSV), independently of the code
//! under test. That every example plan validates is checked by
//! `bad_plans.rs` (`every_example_plan_is_valid`), not again here.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{SystemTime, UNIX_EPOCH};

use chorus_common::datagen::DataSpec;
use chorus_common::dataset::{Format, Layout};
use chorus_common::plan::SizeSpec;
use chorus_tests::servers::Server;
use chorus_tests::{Tsv, bin, only_run_dir, read_json, repo_root, rfc3339_to_ns};

/// The plans' seed: the dataset's payloads (and so the checkers' expected
/// bytes) follow from it.
const SEED: u64 = 41;

/// Writes `plan` to `dir`, runs it with `agents` embedded agents into
/// `dir/runs-<name>`; returns the output and the results directory.
fn run(dir: &Path, name: &str, plan: &str, agents: u32) -> (Output, PathBuf) {
    let path = dir.join(format!("{name}.yaml"));
    fs::write(&path, plan).unwrap();
    let results = dir.join(format!("runs-{name}"));
    let out = Command::new(bin("controller"))
        .arg("run")
        .arg(&path)
        .args(["--embedded", &agents.to_string(), "--quiet", "--results"])
        .arg(&results)
        .output()
        .expect("run controller");
    (out, results)
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `plan` and asserts it succeeded; returns the run directory.
fn run_ok(dir: &Path, name: &str, plan: &str, agents: u32) -> PathBuf {
    let (out, results) = run(dir, name, plan, agents);
    assert!(out.status.success(), "{name} failed:\n{}", text(&out));
    only_run_dir(&results)
}

/// The timeline rows of step `stage` with op `op`, sorted by start.
fn rows<'a>(t: &'a Tsv, stage: &str, op: &str) -> Vec<&'a Vec<String>> {
    let (st, o, start) = (t.col("stage"), t.col("op"), t.col("start"));
    let mut out: Vec<_> = t
        .rows
        .iter()
        .filter(|r| r[st] == stage && r[o] == op)
        .collect();
    out.sort_by_key(|r| rfc3339_to_ns(&r[start]));
    out
}

/// Asserts no row of the timeline failed.
fn no_errors(t: &Tsv) {
    let e = t.col("error");
    let bad: Vec<_> = t.rows.iter().filter(|r| !r[e].is_empty()).collect();
    assert!(bad.is_empty(), "failed ops: {bad:?}");
}

/// The data files (not indexes) under `dir` with extension `ext`: name →
/// size on disk.
fn files(dir: &Path, ext: &str) -> BTreeMap<String, u64> {
    fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap())
        .filter(|e| e.path().extension().is_some_and(|x| x == ext))
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (name, e.metadata().unwrap().len())
        })
        .collect()
}

/// Runs checker `script` (in the numpy venv) on the files in `dir` against
/// `layout`'s expected samples; asserts every one of `samples` checked.
fn python_check(script: &str, dir: &Path, layout: &Layout, samples: u64) {
    let want = dir
        .parent()
        .unwrap()
        .join(format!("{script}.expected.json"));
    chorus_tests::dataset::write_expected(layout, &DataSpec::new(SEED), &want);
    let out = Command::new("bash")
        .arg(repo_root().join("scripts/pyenv.sh"))
        .arg(repo_root().join("tests/python").join(script))
        .arg(dir)
        .arg(&want)
        .output()
        .expect("bash runs");
    assert!(out.status.success(), "{script}:\n{}", text(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(&format!("{samples} samples checked")),
        "{script}:\n{}",
        text(&out)
    );
}

#[test]
fn every_sample_is_read_once_per_epoch_in_a_new_order() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let plan = format!(
        "name: epochs\n\
         seed: {SEED}\n\
         target: file://{}\n\
         dataset: {{samples: 96, sample_size: 4KiB, samples_per_file: 1, format: npz, prefix: ds/}}\n\
         stages:\n\
         \x20 - {{name: gen, type: dataset, concurrency: 4}}\n\
         \x20 - name: train\n\
         \x20   type: train\n\
         \x20   verify: true\n\
         \x20   train: {{epochs: 3, batch: 4, accelerators: 2, compute: 1ms}}\n",
        data.display()
    );
    let run_dir = run_ok(tmp.path(), "epochs", &plan, 2);
    let t = Tsv::read_zst(&run_dir.join("timeline.tsv.zst"));
    no_errors(&t);
    let (file, client, thread) = (t.col("file"), t.col("client_id"), t.col("thread"));

    // The dataset: one PUT per file, 96 files, as numpy sees them.
    let written: BTreeSet<String> = rows(&t, "gen", "PUT")
        .iter()
        .map(|r| r[file].clone())
        .collect();
    assert_eq!(written.len(), 96, "{written:?}");
    let on_disk = files(&data.join("ds"), "npz");
    assert_eq!(on_disk.len(), 96, "{on_disk:?}");
    let layout = Layout::new(Format::Npz, 96, 1, &SizeSpec::Fixed(4096), SEED, "ds/").unwrap();
    python_check("check_npz.py", &data.join("ds"), &layout, 96);

    // Per epoch: every file read whole exactly once, by both agents, each
    // agent's ranks reading an equal contiguous shard (96 / 4 ranks).
    let mut agent_sets: Vec<BTreeMap<String, BTreeSet<String>>> = Vec::new();
    let mut rank_orders: Vec<BTreeMap<(String, String), Vec<String>>> = Vec::new();
    for epoch in 1..=3 {
        let step = format!("train/epoch-{epoch}");
        let reads = rows(&t, &step, "GET");
        let mut count: BTreeMap<&str, u32> = BTreeMap::new();
        for r in &reads {
            *count.entry(r[file].as_str()).or_default() += 1;
        }
        assert_eq!(reads.len(), 96, "{step}: GETs");
        assert!(
            count.keys().copied().eq(written.iter().map(String::as_str)),
            "{step}: keys read are not the dataset's files: {count:?}"
        );
        assert!(count.values().all(|&n| n == 1), "{step}: {count:?}");
        assert!(
            rows(&t, &step, "RANGE_GET").is_empty(),
            "{step}: one sample to a file is read whole"
        );
        let mut sets: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut orders: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
        for r in &reads {
            sets.entry(r[client].clone())
                .or_default()
                .insert(r[file].clone());
            // One reader per rank (read_threads 1): a worker's reads, by
            // start, are its rank's order of its shard.
            orders
                .entry((r[client].clone(), r[thread].clone()))
                .or_default()
                .push(r[file].clone());
        }
        assert_eq!(sets.len(), 2, "{step}: both agents read: {sets:?}");
        assert!(sets.values().all(|s| s.len() == 48), "{step}: {sets:?}");
        assert_eq!(orders.len(), 4, "{step}: 2 agents × 2 ranks");
        assert!(orders.values().all(|o| o.len() == 24), "{step}: {orders:?}");
        agent_sets.push(sets);
        rank_orders.push(orders);
    }
    // A new order every epoch: the cluster-wide order differs, and since
    // shards are contiguous slices of the epoch's shuffle, each agent gets
    // other samples and each rank reads in another order. Without the
    // shuffle (or with one seed for all epochs) each would repeat exactly.
    let order = |epoch: u32| -> Vec<String> {
        rows(&t, &format!("train/epoch-{epoch}"), "GET")
            .iter()
            .map(|r| r[file].clone())
            .collect()
    };
    for (a, b) in [(0usize, 1usize), (0, 2), (1, 2)] {
        assert_ne!(
            order(a as u32 + 1),
            order(b as u32 + 1),
            "epochs {}, {}",
            a + 1,
            b + 1
        );
        assert_ne!(
            agent_sets[a],
            agent_sets[b],
            "epochs {} and {}: each agent read the same samples",
            a + 1,
            b + 1
        );
        for (rank, o) in &rank_orders[a] {
            assert_ne!(
                Some(o),
                rank_orders[b].get(rank),
                "epochs {} and {}: rank {rank:?} read in the same order",
                a + 1,
                b + 1
            );
        }
    }

    // The verdict: 3 epochs of all 96 samples over 4 ranks, AU a fraction.
    let meta = read_json(&run_dir.join("run.json"));
    let v = meta["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["stage"] == "train")
        .unwrap_or_else(|| panic!("no train verdict: {}", meta["verdicts"]));
    let train = &v["train"];
    let epochs = train["epochs"].as_array().expect("train.epochs");
    assert_eq!(epochs.len(), 3, "{train}");
    for (i, e) in epochs.iter().enumerate() {
        assert_eq!(e["step"], format!("train/epoch-{}", i + 1), "{e}");
        assert_eq!(e["samples"], 96, "{e}");
        assert_eq!(e["ranks"], 4, "{e}");
        assert_eq!(e["errors"], 0, "{e}");
        let au = e["au"].as_f64().unwrap();
        assert!(au > 0.0 && au <= 1.0, "AU {au}: {e}");
    }
    let au = train["overall"]["au"].as_f64().unwrap();
    assert!(au > 0.0 && au <= 1.0, "overall AU {au}: {train}");
    assert_eq!(train["overall"]["samples"], 288, "{train}");
    // The report charts AU and data wait per epoch, and the summary ends
    // with the answer's table.
    let report = fs::read_to_string(run_dir.join("report.html")).unwrap();
    for chart in ["train-au-0", "train-wait-0", "train/epoch-3"] {
        assert!(report.contains(chart), "report.html lacks {chart}");
    }
    let summary = fs::read_to_string(run_dir.join("summary.txt")).unwrap();
    assert!(summary.contains("AU target"), "{summary}");
}

#[test]
fn packed_files_are_read_by_ranged_reads_of_every_record() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let plan = format!(
        "name: packed\n\
         seed: {SEED}\n\
         target: file://{}\n\
         dataset:\n\
         \x20 samples: 64\n\
         \x20 sample_size: {{uniform: {{min: 1KiB, max: 8KiB}}}}\n\
         \x20 samples_per_file: 8\n\
         \x20 format: tfrecord\n\
         \x20 prefix: tf/\n\
         stages:\n\
         \x20 - {{name: gen, type: dataset, concurrency: 4}}\n\
         \x20 - name: train\n\
         \x20   type: train\n\
         \x20   verify: true\n\
         \x20   train: {{epochs: 2, batch: 4, accelerators: 2, read_threads: 2, compute: 1ms}}\n",
        data.display()
    );
    let run_dir = run_ok(tmp.path(), "packed", &plan, 1);
    let t = Tsv::read_zst(&run_dir.join("timeline.tsv.zst"));
    no_errors(&t);
    let (file, bytes) = (t.col("file"), t.col("bytes"));

    // 8 files and their 8 indexes, every record read back by a reader that
    // is not Chorus (CRCs, Example protobuf, payload hashes, the .idx).
    let dir = data.join("tf");
    let on_disk = files(&dir, "tfrecord");
    assert_eq!(on_disk.len(), 8, "{on_disk:?}");
    assert_eq!(files(&dir, "idx").len(), 8, "an index beside each file");
    assert_eq!(rows(&t, "gen", "PUT").len(), 16, "files and indexes");
    let sizes = SizeSpec::Uniform {
        min: 1024,
        max: 8192,
    };
    let layout = Layout::new(Format::TfRecord, 64, 8, &sizes, SEED, "tf/").unwrap();
    python_check("check_tfrecord.py", &dir, &layout, 64);

    let total: u64 = on_disk.values().sum();
    for epoch in 1..=2 {
        let step = format!("train/epoch-{epoch}");
        assert!(
            rows(&t, &step, "GET").is_empty(),
            "{step}: packed files are never read whole"
        );
        let reads = rows(&t, &step, "RANGE_GET");
        assert_eq!(reads.len(), 64, "{step}: one ranged read per sample");
        let mut per_file: BTreeMap<String, u32> = BTreeMap::new();
        for r in &reads {
            let name = r[file].strip_prefix("tf/").expect("a dataset key");
            *per_file.entry(name.to_owned()).or_default() += 1;
        }
        // Only data files, each exactly its 8 records; never an index.
        assert!(
            per_file.keys().eq(on_disk.keys()),
            "{step}: files read {per_file:?}, on disk {on_disk:?}"
        );
        assert!(per_file.values().all(|&n| n == 8), "{step}: {per_file:?}");
        // The records' ranges tile each file (tfrecord has no header or
        // trailer): what was read adds up to the files' sizes exactly.
        let sum: u64 = reads.iter().map(|r| r[bytes].parse::<u64>().unwrap()).sum();
        assert_eq!(sum, total, "{step}: bytes read vs the files' sizes");
    }
}

/// A checkpoint stage: 64 MiB over `accelerators: 2` per agent, in 8 MiB
/// parts, restored by the other agent and verified.
fn checkpoint_plan(target: &str) -> String {
    format!(
        "name: ckpt\n\
         seed: {SEED}\n\
         target: {target}\n\
         stages:\n\
         \x20 - name: ckpt\n\
         \x20   type: checkpoint\n\
         \x20   verify: true\n\
         \x20   part_size: 8MiB\n\
         \x20   checkpoint: {{size: 64MiB, accelerators: 2, restore: true, restore_from: other}}\n"
    )
}

const CKPT_BYTES: u64 = 64 << 20;
const SHARD_BYTES: u64 = CKPT_BYTES / 4;

/// The checkpoint run's timeline and verdict: 4 shards written whole (in
/// parts), each read back by the agent that did not write it, without
/// errors; the verdict's write is exactly the size. Returns the shard keys.
fn check_checkpoint_run(run_dir: &Path) -> BTreeSet<String> {
    let t = Tsv::read_zst(&run_dir.join("timeline.tsv.zst"));
    no_errors(&t);
    let (file, client, bytes) = (t.col("file"), t.col("client_id"), t.col("bytes"));
    let puts = rows(&t, "ckpt/write", "PUT");
    let gets = rows(&t, "ckpt/restore", "GET");
    assert_eq!(puts.len(), 4, "one PUT per rank: {puts:?}");
    assert_eq!(gets.len(), 4, "one GET per rank: {gets:?}");
    let writer: BTreeMap<String, String> = puts
        .iter()
        .map(|r| (r[file].clone(), r[client].clone()))
        .collect();
    let keys: BTreeSet<String> = writer.keys().cloned().collect();
    assert_eq!(keys.len(), 4, "4 distinct shards: {writer:?}");
    for k in &keys {
        assert!(
            k.ends_with(&format!("-of-{:05}", 4)) && k.contains("rank-"),
            "{k}"
        );
    }
    let clients: BTreeSet<&String> = writer.values().collect();
    assert_eq!(clients.len(), 2, "both agents wrote: {writer:?}");
    for r in puts.iter().chain(&gets) {
        assert_eq!(r[bytes], SHARD_BYTES.to_string(), "{r:?}");
    }
    // Parts of 8 MiB: two per shard, in the write step only.
    assert_eq!(rows(&t, "ckpt/write", "PUT_PART").len(), 8);
    // restore_from: other — each shard read once, by the agent that did
    // not write it.
    let read: BTreeSet<String> = gets.iter().map(|r| r[file].clone()).collect();
    assert_eq!(read, keys, "every shard restored once");
    for r in &gets {
        assert_ne!(
            writer[&r[file]], r[client],
            "{} restored by its own writer",
            r[file]
        );
    }

    let meta = read_json(&run_dir.join("run.json"));
    let v = meta["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["stage"] == "ckpt")
        .unwrap_or_else(|| panic!("no checkpoint verdict: {}", meta["verdicts"]));
    let c = &v["checkpoint"];
    assert_eq!(c["size"], CKPT_BYTES, "{c}");
    assert_eq!(c["ranks"], 4, "{c}");
    assert_eq!(c["write"]["bytes"], CKPT_BYTES, "{c}");
    assert_eq!(c["write"]["shards"], 4, "{c}");
    assert_eq!(c["write"]["errors"], 0, "{c}");
    assert!(c["write"]["seconds"].as_f64().unwrap() > 0.0, "{c}");
    let restore = &c["restore"];
    assert_eq!(restore["bytes"], CKPT_BYTES, "{c}");
    assert_eq!(restore["shards"], 4, "{c}");
    assert_eq!(restore["errors"], 0, "{c}");
    assert!(restore["seconds"].as_f64().unwrap() > 0.0, "{c}");
    keys
}

#[test]
fn a_checkpoint_writes_exactly_its_size_and_restores_verified() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let target = format!("file://{}", data.display());
    let run_dir = run_ok(tmp.path(), "ckpt", &checkpoint_plan(&target), 2);
    let keys = check_checkpoint_run(&run_dir);
    // On disk: exactly the 4 shards under the prefix, adding up to the
    // checkpoint's size, one equal shard per rank.
    let on_disk: BTreeMap<String, u64> = files_all(&data.join("checkpoint"));
    let want: BTreeSet<String> = (0..4).map(|r| format!("rank-{r:05}-of-00004")).collect();
    assert!(on_disk.keys().eq(want.iter()), "{on_disk:?}");
    assert!(
        keys.iter().eq(want
            .iter()
            .map(|n| format!("checkpoint/{n}"))
            .collect::<Vec<_>>()
            .iter()),
        "{keys:?}"
    );
    assert_eq!(on_disk.values().sum::<u64>(), CKPT_BYTES, "{on_disk:?}");
    assert!(on_disk.values().all(|&s| s == SHARD_BYTES), "{on_disk:?}");
}

/// Every file in `dir`: name → size.
fn files_all(dir: &Path) -> BTreeMap<String, u64> {
    fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap())
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (name, e.metadata().unwrap().len())
        })
        .collect()
}

#[test]
fn an_rgw_checkpoint_is_its_exact_size_as_boto3_lists_it() {
    let server = Server::start("rgw");
    let tmp = tempfile::tempdir().unwrap();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    // A prefix no earlier run used: the listing is this run's alone.
    let base = format!("t{}-{nanos}", std::process::id());
    let plan = checkpoint_plan(&format!("s3://chorus-training/{base}"));
    let path = tmp.path().join("rgw.yaml");
    fs::write(&path, plan).unwrap();
    let results = tmp.path().join("runs");
    // The endpoint and credentials reach the controller (and its embedded
    // agents) by environment, never by the plan.
    let out = Command::new(bin("controller"))
        .arg("run")
        .arg(&path)
        .args(["--embedded", "2", "--quiet", "--results"])
        .arg(&results)
        .envs(&server.env)
        .output()
        .expect("run controller");
    assert!(out.status.success(), "{}", text(&out));
    let keys = check_checkpoint_run(&only_run_dir(&results));

    const LIST: &str = r#"
import json, sys
import boto3
bucket, prefix = sys.argv[1], sys.argv[2]
s3 = boto3.client("s3")
out = {}
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
    for o in page.get("Contents", []):
        out[o["Key"]] = o["Size"]
json.dump(out, sys.stdout)
"#;
    let listed = {
        use std::io::Write;
        let mut child = Command::new("bash")
            .arg(repo_root().join("scripts/boto3.sh"))
            .args(["chorus-training", &format!("{base}/")])
            .envs(&server.env)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn boto3.sh");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(LIST.as_bytes())
            .unwrap();
        child.wait_with_output().expect("boto3.sh")
    };
    assert!(listed.status.success(), "boto3:\n{}", text(&listed));
    let objects: BTreeMap<String, u64> =
        serde_json::from_slice(&listed.stdout).expect("boto3 script prints JSON");
    // Exactly the 4 shards the timeline wrote, adding up to the size.
    assert_eq!(objects.len(), 4, "{objects:?}");
    for k in &keys {
        assert!(
            objects.keys().any(|o| o.ends_with(k.as_str())),
            "{k} not listed: {objects:?}"
        );
    }
    assert_eq!(objects.values().sum::<u64>(), CKPT_BYTES, "{objects:?}");
    assert!(objects.values().all(|&s| s == SHARD_BYTES), "{objects:?}");
}

/// `line:column` (1-based) of the first character after `marker` in `text`.
fn at(text: &str, marker: &str) -> String {
    let pos = text
        .find(marker)
        .unwrap_or_else(|| panic!("`{marker}` not in plan"))
        + marker.len();
    let line = text[..pos].matches('\n').count() + 1;
    let col = pos - text[..pos].rfind('\n').map_or(0, |n| n + 1) + 1;
    format!("{line}:{col}")
}

#[test]
fn bad_training_plans_are_located_errors_before_anything_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // (name, stage, marker before the bad value, key the error names)
    let cases = [
        (
            // 8 samples over 2 agents × 2 ranks is 2 a rank: no batch of 4.
            "batch",
            "  - name: train\n    type: train\n    dataset: {samples: 8, sample_size: 1KiB}\n    \
             train: {batch: 4, accelerators: 2}\n",
            "batch: ",
            "stages[0].train.batch",
        ),
        (
            // 1000001 bytes over 4 ranks leaves a remainder.
            "size",
            "  - name: ck\n    type: checkpoint\n    checkpoint: {size: 1000001B, accelerators: 2}\n",
            "{size: ",
            "stages[0].checkpoint.size",
        ),
        (
            "zero",
            "  - name: train\n    type: train\n    dataset: {samples: 8, sample_size: 1KiB}\n    \
             train: {batch: 1, accelerators: 0}\n",
            "accelerators: ",
            "stages[0].train.accelerators",
        ),
        (
            "format",
            "  - name: gen\n    type: dataset\n    dataset: {samples: 8, sample_size: 1KiB, format: hdf5}\n",
            "format: ",
            "stages[0].dataset.format",
        ),
    ];
    for (name, stage, marker, key) in cases {
        let data = dir.join(format!("data-{name}"));
        let plan = format!(
            "name: bad\ntarget: file://{}\nstages:\n{stage}",
            data.display()
        );
        let (out, results) = run(dir, name, &plan, 2);
        assert_eq!(out.status.code(), Some(2), "{name}:\n{}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        let file = dir.join(format!("{name}.yaml"));
        let located = format!("{}:{}", file.display(), at(&plan, marker));
        assert!(err.contains(&located), "{name}: want {located}:\n{err}");
        assert!(err.contains(key), "{name}: want `{key}`:\n{err}");
        // Nothing ran: no results directory, nothing on the target.
        assert!(!results.exists(), "{name}: {} written", results.display());
        assert!(!data.exists(), "{name}: {} written", data.display());
    }
}
