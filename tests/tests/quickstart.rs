//! The quickstart plan, run from the built binary with embedded agents,
//! leaves a complete results directory whose timeline matches its summary.

use chorus_tests::{Tsv, read_json, run_quickstart};

#[test]
fn quickstart_runs_and_writes_consistent_results() {
    let tmp = tempfile::tempdir().unwrap();
    let results = tmp.path().join("runs");
    let target = format!("file://{}", tmp.path().join("data").display());
    let run = run_quickstart(&target, &results, &[]);
    for f in [
        "plan.yaml",
        "run.json",
        "summary.txt",
        "summary.json",
        "summary.csv",
        "timeline.tsv.zst",
    ] {
        assert!(run.join(f).is_file(), "{f} missing in {}", run.display());
    }

    // Per-agent op-logs: one per agent per stage.
    let meta = read_json(&run.join("run.json"));
    assert_eq!(meta["status"], "completed");
    let agent_ids: Vec<String> = meta["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect();
    assert!(
        agent_ids.len() >= 2,
        "quickstart uses at least 2 embedded agents"
    );
    for id in &agent_ids {
        let logs = std::fs::read_dir(run.join("agents").join(id))
            .unwrap()
            .count();
        assert_eq!(logs, 3, "agent {id}: one op-log per stage");
        assert!(meta["agents"][0]["clock_start"]["offset_ns"].is_i64());
    }

    // The timeline holds exactly the ops the summary counted, sorted by
    // start, each tagged with one of the run's agents.
    let summary = read_json(&run.join("summary.json"));
    let timeline = Tsv::read_zst(&run.join("timeline.tsv.zst"));
    assert_eq!(
        &timeline.header[..13],
        [
            "idx",
            "thread",
            "op",
            "client_id",
            "n_objects",
            "bytes",
            "endpoint",
            "file",
            "error",
            "start",
            "first_byte",
            "end",
            "duration_ns"
        ]
    );
    let total_ops = summary["total_ops"].as_u64().unwrap();
    assert!(
        total_ops > 2000,
        "prepare alone is 2000 ops; got {total_ops}"
    );
    assert_eq!(timeline.rows.len() as u64, total_ops);
    let starts = timeline.column("start");
    assert!(
        starts.windows(2).all(|w| w[0] <= w[1]),
        "timeline not sorted by start"
    );
    for c in timeline.column("client_id") {
        assert!(agent_ids.iter().any(|id| id == c), "unknown client_id {c}");
    }

    // Each stage's op counts agree between summary and timeline.
    let stage_col = timeline.column("stage");
    for stage in summary["stages"].as_array().unwrap() {
        let name = stage["name"].as_str().unwrap();
        let all = stage["ops"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["op"] == "ALL")
            .unwrap();
        let in_timeline = stage_col.iter().filter(|s| **s == name).count() as u64;
        assert_eq!(all["count"].as_u64().unwrap(), in_timeline, "stage {name}");
    }
    // Prepare wrote every object exactly once; the workload mixed GETs and PUTs.
    let ops = timeline.column("op");
    let prepare_puts = stage_col
        .iter()
        .zip(&ops)
        .filter(|(s, o)| **s == "prepare" && **o == "PUT")
        .count();
    assert_eq!(prepare_puts, 2000);
    for op in ["GET", "PUT"] {
        assert!(
            stage_col
                .iter()
                .zip(&ops)
                .any(|(s, o)| *s == "mixed" && *o == op),
            "no {op} in mixed"
        );
    }
    let csv = std::fs::read_to_string(run.join("summary.csv")).unwrap();
    assert!(csv.lines().any(|l| l.starts_with("mixed,GET,")), "{csv}");
}
