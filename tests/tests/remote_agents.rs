//! `controller run --agents` drives separately started `agent` processes
//! over the real gRPC protocol on loopback.

use chorus_tests::agents::start_agent;
use chorus_tests::{Tsv, controller, only_run_dir, read_json};

#[test]
fn runs_on_agent_processes() {
    let tmp = tempfile::tempdir().unwrap();
    let a = start_agent("alpha", &tmp.path().join("spool-a"));
    let b = start_agent("beta", &tmp.path().join("spool-b"));
    let plan = format!(
        "name: remote\ntarget: file://{}\nconcurrency: 2\nobjects: {{count: 100, size: 4KiB}}\nstages:\n  - name: prepare\n    type: prepare\n  - name: rw\n    type: workload\n    mix: {{get: 3, put: 1}}\n    ops: 1000\n",
        tmp.path().join("data").display()
    );
    let path = tmp.path().join("plan.yaml");
    std::fs::write(&path, plan).unwrap();
    let results = tmp.path().join("runs");
    let agents = format!("{},{}", a.addr, b.addr);
    let out = controller(&[
        "run",
        path.to_str().unwrap(),
        "--agents",
        &agents,
        "--results",
        results.to_str().unwrap(),
        "--quiet",
        "--insecure",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let run = only_run_dir(&results);
    let meta = read_json(&run.join("run.json"));
    let ids: Vec<_> = meta["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["alpha", "beta"]);
    let timeline = Tsv::read_zst(&run.join("timeline.tsv.zst"));
    assert_eq!(timeline.rows.len(), 1100);
    // Work was split: each agent did half the prepare and half the workload.
    for id in ["alpha", "beta"] {
        let n = timeline
            .column("client_id")
            .iter()
            .filter(|c| **c == id)
            .count();
        assert_eq!(n, 550, "agent {id}");
    }
    // The agents' spools are cleaned once the controller has their logs.
    assert!(
        !tmp.path()
            .join("spool-a")
            .join(meta["run_id"].as_str().unwrap())
            .exists()
    );
}
