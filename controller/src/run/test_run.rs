//! Whole runs in-process for the controller's own tests: two embedded
//! agents over loopback gRPC, a plan from a string, and readers of what
//! the run directory holds.

use std::collections::BTreeMap;
use std::path::Path;

use clap::Parser;
use serde_json::Value;

use crate::cli::RunArgs;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    run: RunArgs,
}

/// Runs `plan` (YAML) in-process (tests running side by side give their
/// plans different names: run ids, and so spool folders, come from them) with two embedded agents and the kinds
/// `pick` gives; returns the run directory.
pub async fn run_plan(
    plan: &str,
    pick: super::kinds::KindPicker,
    tmp: &Path,
) -> std::path::PathBuf {
    let file = tmp.join("plan.yaml");
    std::fs::write(&file, plan).unwrap();
    let results = tmp.join("runs");
    let (file, results) = (file.to_str().unwrap(), results.to_str().unwrap());
    let cli = Cli::try_parse_from(["run", file, "--results", results, "--quiet"]).unwrap();
    use crate::run::RunError;
    match crate::run::run(
        cli.run,
        pick,
        std::sync::Arc::new(chorus_common::metrics::prometheus::Metrics::new()),
    )
    .await
    {
        Ok(dir) => dir,
        Err(RunError::Input(e)) => panic!("bad plan: {e}"),
        Err(RunError::Failed(e)) => panic!("the run failed: {e:#}"),
        Err(RunError::Interrupted(d)) => panic!("interrupted: {}", d.display()),
    }
}

pub fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Ops of the merged timeline (part records left out) by their `stage`
/// column.
pub fn timeline_stages(dir: &Path) -> BTreeMap<String, u64> {
    let bytes = std::fs::read(dir.join("timeline.tsv.zst")).unwrap();
    let text = String::from_utf8(zstd::decode_all(&bytes[..]).unwrap()).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split('\t').collect();
    let col = header.iter().position(|c| *c == "stage").unwrap();
    let op = header.iter().position(|c| *c == "op").unwrap();
    let mut by_stage = BTreeMap::new();
    for line in lines {
        let fields: Vec<&str> = line.split('\t').collect();
        // Part records (GET_PART, PUT_PART) sit beside their op: not ops.
        if fields[op].ends_with("_PART") {
            continue;
        }
        *by_stage.entry(fields[col].to_string()).or_insert(0) += 1;
    }
    by_stage
}

/// The `ALL` row's op count of each summary stage, by name.
pub fn summary_counts(dir: &Path) -> BTreeMap<String, u64> {
    let summary = json(&dir.join("summary.json"));
    let stages = summary["stages"].as_array().unwrap();
    stages
        .iter()
        .map(|s| {
            let all = s["ops"].as_array().unwrap().last().unwrap();
            assert_eq!(all["op"], "ALL");
            let name = s["name"].as_str().unwrap().to_string();
            (name, all["count"].as_u64().unwrap())
        })
        .collect()
}

/// An open-loop stage's start skew comes from the first ops issued: every
/// agent's first slot is the stage's start itself, so a skew taken from
/// slots is always exactly 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_start_skew_is_measured_from_ops_issued() {
    let tmp = tempfile::tempdir().unwrap();
    let plan = "name: open-skew
target: mem://open-skew
objects: {count: 100, size: 1KiB}
stages:
  - name: fill
    type: prepare
  - name: paced
    type: workload
    rate: 400
    arrivals: fixed
    duration: 2s
    mix: {get: 1}
";
    let dir = run_plan(plan, super::kinds::for_stage, tmp.path()).await;
    let run = json(&dir.join("run.json"));
    let paced = &run["stages"][1];
    assert_eq!(paced["name"], "paced");
    let skew = paced["start_skew_ms"].as_f64().unwrap();
    assert!(skew > 0.0, "{paced:#}");
    // And it is the spread of the first ops the agents issued.
    let firsts: Vec<&str> = paced["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["first_issued"].as_str().unwrap())
        .collect();
    assert_eq!(firsts.len(), 2);
    assert_ne!(firsts[0], firsts[1], "{paced:#}");
}
