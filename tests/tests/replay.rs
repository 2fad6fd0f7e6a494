//! `type: replay`: a run recorded on `file://` is replayed from its
//! timeline on a fresh target by the controller binary and its two
//! embedded agents, and the replay is checked against the trace: the same
//! ops per kind and bytes, each op started close to its scheduled time,
//! `speed: 2` halving the span, missing objects made first; and a damaged
//! trace is a located error before anything runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use chorus_tests::{Tsv, bin, only_run_dir, read_json, rfc3339_to_ns};

/// The recorded run: objects made, then an open-loop mix for 3 s.
const RECORD: &str = r#"
name: record
seed: 5
target: TARGET
objects: {prefix: rec/, count: 300, size: 8KiB}
stages:
  - {name: fill, type: prepare, concurrency: 4}
  - name: mixed
    type: workload
    concurrency: 8
    rate: 400
    duration: 3s
    range: {size: 1KiB}
    mix: {get: 5, put: 2, stat: 2, range_get: 1}
"#;

/// Start lateness the replay must keep to at 400 ops/s on `file://`, p99
/// over each agent (so over the cluster too). The engine wakes ops within
/// tens of µs of their time; this leaves room for a busy 2-core machine.
const LAG_P99_BOUND_MS: f64 = 10.0;

fn run(plan_text: &str, dir: &Path, name: &str) -> (Output, PathBuf) {
    let plan = dir.join(format!("{name}.yaml"));
    std::fs::write(&plan, plan_text).unwrap();
    let results = dir.join(format!("runs-{name}"));
    let out = std::process::Command::new(bin("controller"))
        .arg("run")
        .arg(&plan)
        .arg("--results")
        .arg(&results)
        .arg("--quiet")
        .output()
        .expect("run controller");
    (out, results)
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Per op kind: (ops, bytes, errors) of the timeline rows of `stage`.
fn per_kind(t: &Tsv, stage: &str) -> BTreeMap<String, (u64, u64, u64)> {
    let (st, op, bytes, err) = (t.col("stage"), t.col("op"), t.col("bytes"), t.col("error"));
    let mut out: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
    for r in t.rows.iter().filter(|r| r[st] == stage) {
        let e = out.entry(r[op].clone()).or_default();
        e.0 += 1;
        e.1 += r[bytes].parse::<u64>().unwrap();
        e.2 += u64::from(!r[err].is_empty());
    }
    out
}

/// First to last start of `stage`'s ops, ns.
fn span(t: &Tsv, stage: &str) -> i64 {
    let (st, start) = (t.col("stage"), t.col("start"));
    let starts: Vec<i64> = t
        .rows
        .iter()
        .filter(|r| r[st] == stage)
        .map(|r| rfc3339_to_ns(&r[start]))
        .collect();
    starts.iter().max().unwrap() - starts.iter().min().unwrap()
}

/// The `mixed` stage's rows of a timeline as a plain (uncompressed)
/// op-log: a trace whose reads are of objects it never wrote.
fn mixed_only(t: &Tsv, path: &Path) {
    let st = t.col("stage");
    let mut text = t.header.join("\t");
    text.push('\n');
    for r in t.rows.iter().filter(|r| r[st] == "mixed") {
        text.push_str(&r.join("\t"));
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

#[test]
fn a_recorded_run_replays_with_the_same_ops_on_its_schedule() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let target = |n: &str| format!("file://{}", dir.join(n).display());
    let (out, results) = run(&RECORD.replace("TARGET", &target("rec")), dir, "record");
    ok(&out);
    let recorded = Tsv::read_zst(&only_run_dir(&results).join("timeline.tsv.zst"));
    let trace = dir.join("mixed.tsv");
    mixed_only(&recorded, &trace);
    let want = per_kind(&recorded, "mixed");
    assert!(want.len() == 4, "the recorded mix: {want:?}");

    // Replay on a fresh target: the trace's reads are of objects it never
    // wrote, so the prepare step makes them first.
    let plan = format!(
        "name: replay\ntarget: {}\nstages:\n  - name: again\n    type: replay\n    concurrency: 16\n    \
         replay: {{trace: {}, remap: {{\"rec/\": \"rep/\"}}}}\n",
        target("fresh"),
        trace.display()
    );
    let (out, results) = run(&plan, dir, "replay");
    ok(&out);
    let run_dir = only_run_dir(&results);
    let replayed = Tsv::read_zst(&run_dir.join("timeline.tsv.zst"));
    let got = per_kind(&replayed, "again/replay");
    // The same ops per kind, the same bytes, and none failed: every object
    // the trace read was there.
    assert_eq!(
        got.iter()
            .map(|(k, v)| (k.clone(), (v.0, v.1)))
            .collect::<Vec<_>>(),
        want.iter()
            .map(|(k, v)| (k.clone(), (v.0, v.1)))
            .collect::<Vec<_>>()
    );
    assert!(got.values().all(|v| v.2 == 0), "errors: {got:?}");
    // Keys renamed; what was made first is what the trace read before
    // writing: one PUT per such key.
    let file = replayed.col("file");
    assert!(replayed.rows.iter().all(|r| r[file].starts_with("rep/")));
    let made = per_kind(&replayed, "again/prepare");
    assert!(made.keys().eq(["PUT"]), "prepare: {made:?}");
    assert!(
        made["PUT"].0 > 100 && made["PUT"].0 <= 300,
        "prepare: {made:?}"
    );

    // Each replayed op logs how late it started: p99 under the bound.
    let (st, lag_col) = (replayed.col("stage"), replayed.col("lag_ns"));
    let mut lags: Vec<u64> = replayed
        .rows
        .iter()
        .filter(|r| r[st] == "again/replay")
        .map(|r| r[lag_col].parse().expect("every replayed op has a lag"))
        .collect();
    lags.sort_unstable();
    let p99_ms = lags[lags.len() * 99 / 100] as f64 / 1e6;
    assert!(p99_ms < LAG_P99_BOUND_MS, "start lag p99 {p99_ms} ms");
    // The verdict: side by side, with the agents' lag figures.
    let meta = read_json(&run_dir.join("run.json"));
    let v = &meta["verdicts"][0]["replay"];
    assert_eq!(v["trace_ops"], v["replay_ops"], "{v}");
    let p99 = v["lag_p99_ms"].as_f64().unwrap();
    assert!(p99 < LAG_P99_BOUND_MS, "start lag p99 {p99} ms: {v}");
    let summary = std::fs::read_to_string(run_dir.join("summary.txt")).unwrap();
    assert!(summary.contains("stage `again` replayed"), "{summary}");

    // Twice as fast: half the span, on the objects now there.
    let fast = plan
        .replace("remap:", "speed: 2, prepare: false, remap:")
        .replace("name: replay", "name: fast");
    let (out, results) = run(&fast, dir, "fast");
    ok(&out);
    let fast_tl = Tsv::read_zst(&only_run_dir(&results).join("timeline.tsv.zst"));
    let ratio = span(&fast_tl, "again") as f64 / span(&recorded, "mixed") as f64;
    assert!(
        (0.45..0.55).contains(&ratio),
        "span ratio at speed 2: {ratio}"
    );
    assert_eq!(per_kind(&fast_tl, "again").len(), want.len());
}

#[test]
fn a_damaged_trace_is_a_located_error_before_anything_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let trace = dir.join("bad.tsv");
    let header = "idx\tthread\top\tclient_id\tn_objects\tbytes\tendpoint\tfile\terror\tstart\tfirst_byte\tend\tduration_ns";
    let good =
        "0\t0\tGET\tc1\t1\t10\te\tk\t\t2026-01-01T00:00:00Z\t\t2026-01-01T00:00:00.001Z\t1000000";
    let bad = "1\t0\tGET\tc1\t1\t10\te\tk\t\tyesterday\t\t2026-01-01T00:00:00.001Z\t1000000";
    std::fs::write(&trace, format!("{header}\n{good}\n{bad}\n")).unwrap();
    let plan = format!(
        "name: bad\ntarget: file://{}\nstages:\n  - name: r\n    type: replay\n    replay: {{trace: {}}}\n",
        dir.join("data").display(),
        trace.display()
    );
    let (out, results) = run(&plan, dir, "bad");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}:3:", trace.display())) && err.contains("start"),
        "{err}"
    );
    assert!(!results.exists(), "nothing runs on bad input");
}

/// Replays a fixture trace (written as its tool writes it) on a fresh
/// `file://` target with the two embedded agents; returns the verdict's
/// `replay` report.
fn replay_fixture(name: &str, dir: &Path) -> serde_json::Value {
    let trace = chorus_tests::repo_root()
        .join("tests/fixtures/traces")
        .join(name);
    let plan = format!(
        "name: fixture\ntarget: file://{}\nstages:\n  - name: r\n    type: replay\n    concurrency: 4\n    \
         replay: {{trace: {}}}\n",
        dir.join("data").display(),
        trace.display()
    );
    let (out, results) = run(&plan, dir, "fixture");
    ok(&out);
    read_json(&only_run_dir(&results).join("run.json"))["verdicts"][0]["replay"].clone()
}

/// The report's row of `op`: (trace ops, replay ops, trace errors, replay errors).
fn row(v: &serde_json::Value, op: &str) -> (u64, u64, u64, u64) {
    let r = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["op"] == op)
        .unwrap_or_else(|| panic!("no {op} row: {v}"));
    let n = |k: &str| r[k].as_u64().unwrap();
    (
        n("trace_ops"),
        n("replay_ops"),
        n("trace_errors"),
        n("replay_errors"),
    )
}

#[test]
fn a_warp_op_log_replays_and_its_unknown_ops_are_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let v = replay_fixture("warp-mixed-2025.csv.zst", tmp.path());
    // Two clients over two agents; RETENTION is an op file:// has not:
    // counted, reported, not replayed.
    assert_eq!(v["trace_ops"], 5, "{v}");
    assert_eq!(v["replay_ops"], 4, "{v}");
    assert_eq!(v["unknown_ops"], serde_json::json!({"RETENTION": 1}), "{v}");
    for op in ["PUT", "STAT", "GET", "DELETE"] {
        assert_eq!(row(&v, op), (1, 1, 0, 0), "{op}: {v}");
    }
}

#[test]
fn an_s3dlio_op_log_replays_in_start_order_with_its_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let v = replay_fixture("s3dlio-0.9.22.tsv.zst", tmp.path());
    assert_eq!(v["trace_ops"], 7, "{v}");
    assert_eq!(v["replay_ops"], 6, "{v}");
    assert_eq!(
        v["unknown_ops"],
        serde_json::json!({"DELETE_BATCH": 1}),
        "{v}"
    );
    // HEAD is a STAT, GET_RANGE a RANGE_GET; the GET the trace saw fail
    // (never written, so not made first) fails again.
    assert_eq!(row(&v, "GET"), (2, 2, 1, 1), "{v}");
    for op in ["PUT", "STAT", "RANGE_GET", "LIST"] {
        assert_eq!(row(&v, op), (1, 1, 0, 0), "{op}: {v}");
    }
}
