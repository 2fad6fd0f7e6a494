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

#[test]
fn a_second_controller_is_refused_naming_the_session_holder() {
    let tmp = tempfile::tempdir().unwrap();
    let a = start_agent("solo", &tmp.path().join("spool"));
    let plan = format!(
        "name: first\ntarget: file://{}\nobjects: {{count: 10, size: 1KiB}}\nstages:\n  - {{name: prepare, type: prepare}}\n  - {{name: w, type: workload, mix: {{get: 1}}, rate: 50, duration: 8s}}\n",
        tmp.path().join("data").display()
    );
    let path = tmp.path().join("plan.yaml");
    std::fs::write(&path, plan).unwrap();
    let results = tmp.path().join("runs");
    let mut first = std::process::Command::new(chorus_tests::bin("controller"))
        .args(["run", path.to_str().unwrap(), "--agents", &a.addr])
        .args(["--insecure", "--quiet", "--results"])
        .arg(&results)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the first run holds the agent (its run.json exists).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !std::fs::read_dir(&results)
        .ok()
        .and_then(|mut d| d.next())
        .is_some_and(|d| d.unwrap().path().join("run.json").exists())
    {
        assert!(
            std::time::Instant::now() < deadline,
            "first run did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let second_results = tmp.path().join("runs2");
    let out = controller(&[
        "run",
        path.to_str().unwrap(),
        "--agents",
        &a.addr,
        "--insecure",
        "--quiet",
        "--results",
        second_results.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("busy with session") && stderr.contains("first"),
        "{stderr}"
    );
    assert!(!second_results.exists(), "a refused run writes no results");
    // The first run is not disturbed.
    assert!(first.wait().unwrap().success());
}
