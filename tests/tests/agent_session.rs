//! The agent's session with real processes: a store slow to open does not
//! make its agent look lost (the stage task sends `Preparing` while the
//! heartbeat is answered), and SIGTERM mid-stage is a clean stop (the
//! agent ends the stage with its result, keeps its op-log collectable, and
//! exits 0 within its grace).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chorus_tests::agents::AgentSpec;
use chorus_tests::{Tsv, bin, controller, only_run_dir, read_json, summary_ops, wait_for_stage};

/// The one stage-agent entry of `agent` in stage `stage` of run.json.
fn stage_agent<'a>(meta: &'a serde_json::Value, stage: &str, agent: &str) -> &'a serde_json::Value {
    meta["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == stage)
        .unwrap_or_else(|| panic!("no stage {stage} in run.json: {meta:#}"))["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == agent)
        .unwrap_or_else(|| panic!("no agent {agent} in stage {stage}: {meta:#}"))
}

/// A GCS open with application default credentials on "Google Cloud"
/// (`GCE_METADATA_HOST` set) asks the metadata server for the project and
/// a token; here that server is a socket the kernel accepts on and no one
/// answers, so the open waits for the plan's request timeout (5 s, the
/// bound on getting credentials), well past the controller's 2 s loss
/// timeout. Under the old service, RunStage held the session lock over
/// that open, heartbeats waited for it, and the agent was declared lost
/// (checked: this test fails on it).
#[test]
fn a_store_slow_to_open_does_not_make_its_agent_look_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let metadata = silent.local_addr().unwrap().to_string();
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let agent = AgentSpec::new("slow", tmp.path().join("spool"))
        .env("GCE_METADATA_HOST", &metadata)
        // No credentials of the host's own, no emulator: the metadata
        // server is the only way.
        .env("HOME", &home)
        .env("GOOGLE_APPLICATION_CREDENTIALS", "")
        .env("GOOGLE_APPLICATION_CREDENTIALS_JSON", "")
        .env("STORAGE_EMULATOR_HOST", "")
        .env("GCS_ENDPOINT_URL", "")
        .start();
    let plan = tmp.path().join("plan.yaml");
    std::fs::write(
        &plan,
        "name: slow-open\ntarget: gs://chorus-slow/p\ntimeout: 5s\n\
         objects: {count: 10, size: 1KiB}\ncontrol: {agent_timeout: 2s}\n\
         stages:\n  - {name: w, type: workload, mix: {put: 1}, duration: 2s}\n",
    )
    .unwrap();
    let results = tmp.path().join("runs");
    let started = Instant::now();
    let out = controller(&[
        "run",
        plan.to_str().unwrap(),
        "--agents",
        &agent.addr,
        "--insecure",
        "--quiet",
        "--results",
        results.to_str().unwrap(),
    ]);
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("run took {took:?}; controller stderr:\n{stderr}");
    assert!(!out.status.success(), "the store never opened");
    // The open really was slower than the loss timeout.
    assert!(took > Duration::from_secs(5), "{took:?}");
    // Under the old service the heartbeats found it lost ("agent slow
    // lost: no heartbeat reply for 3.0 s"); the failed stage then ended
    // the run before that reached run.json, so the output says it.
    assert!(!stderr.contains("lost"), "{stderr}");
    let meta = read_json(&only_run_dir(&results).join("run.json"));
    assert_eq!(
        meta["lost_agents"].as_array().map(Vec::len),
        Some(0),
        "{meta:#}"
    );
    let a = stage_agent(&meta, "w", "slow");
    assert_eq!(a["status"], "failed", "{meta:#}");
    let error = a["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("getting credentials took over 5s") && !error.contains("lost"),
        "the store's own error, not a loss: {meta:#}\nagent log:\n{}",
        agent.log_text()
    );
    drop(silent);
}

/// SIGTERM to one of three agents ~2 s into a 6 s stage: it stops its
/// workers, flushes its op-log, ends the stage with its result (stopped by
/// SIGTERM) and exits 0 within its grace; the controller (on_agent_loss:
/// continue) reports it stopped, not lost, and every record it
/// acknowledged is in the timeline, which equals the summary.
#[test]
fn sigterm_mid_stage_is_a_clean_stop() {
    let tmp = tempfile::tempdir().unwrap();
    let a = AgentSpec::new("a", tmp.path().join("spool-a")).start();
    let mut b = AgentSpec::new("b", tmp.path().join("spool-b"))
        .arg("--stop-grace")
        .arg("10s")
        .start();
    let c = AgentSpec::new("c", tmp.path().join("spool-c")).start();
    let plan = tmp.path().join("plan.yaml");
    std::fs::write(
        &plan,
        format!(
            "name: sigterm\ntarget: file://{}\nconcurrency: 2\n\
             objects: {{count: 60, size: 4KiB}}\ncontrol: {{on_agent_loss: continue}}\n\
             stages:\n  - {{name: prepare, type: prepare}}\n\
             \x20 - {{name: load, type: workload, mix: {{get: 3, put: 1}}, rate: 600, duration: 6s}}\n",
            tmp.path().join("data").display()
        ),
    )
    .unwrap();
    let results = tmp.path().join("runs");
    let ctl_log = tmp.path().join("controller.log");
    let mut ctl = Command::new(bin("controller"))
        .args(["run", plan.to_str().unwrap(), "--insecure", "--quiet"])
        .args(["--agents", &format!("{},{},{}", a.addr, b.addr, c.addr)])
        .arg("--results")
        .arg(&results)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&ctl_log).unwrap())
        .spawn()
        .unwrap();
    // Two seconds of the stage are in series.csv: ~2 s in.
    wait_for_stage(&results, "load", 2, Duration::from_secs(30));
    b.terminate();
    let signalled = Instant::now();
    // The grace, and a little for the stage to wind down.
    let status = b.wait_exit(Duration::from_secs(12));
    let b_log = b.log_text();
    println!(
        "agent b exited {status:?} {:?} after SIGTERM",
        signalled.elapsed()
    );
    assert!(
        status.is_some_and(|s| s.success()),
        "agent b: {status:?} within its 10 s grace:\n{b_log}"
    );
    let code = wait_child(&mut ctl, Duration::from_secs(60));
    let ctl_text = std::fs::read_to_string(&ctl_log).unwrap_or_default();
    let run = only_run_dir(&results);
    let meta = read_json(&run.join("run.json"));
    assert_eq!(code, Some(0), "controller:\n{ctl_text}\nrun.json: {meta:#}");
    assert_eq!(
        meta["lost_agents"].as_array().map(Vec::len),
        Some(0),
        "{meta:#}"
    );
    // Every record b acknowledged is in the timeline, and the timeline is
    // the summary.
    let timeline = Tsv::read_zst(&run.join("timeline.tsv.zst"));
    let (stage, client) = (timeline.col("stage"), timeline.col("client_id"));
    let load: Vec<_> = timeline
        .rows
        .iter()
        .filter(|r| r[stage] == "load")
        .collect();
    let b_rows = load.iter().filter(|r| r[client] == "b").count() as u64;
    let b_logged = stage_agent(&meta, "load", "b")["records_logged"]
        .as_u64()
        .unwrap();
    assert!(b_rows > 0, "b's ops of `load` are in the timeline");
    assert_eq!(b_rows, b_logged, "b's records in the timeline");
    assert_eq!(load.len() as u64, summary_ops(&run, "load"));
    assert_eq!(
        meta["timeline"]["records"].as_u64(),
        Some(timeline.rows.len() as u64)
    );
    // b stopped early: fewer ops than a, which ran the whole 6 s.
    let a_rows = load.iter().filter(|r| r[client] == "a").count() as u64;
    assert!(b_rows < a_rows, "b {b_rows} vs a {a_rows}");
    // Its spool is kept for `controller collect`.
    let run_id = meta["run_id"].as_str().unwrap();
    let spooled = tmp
        .path()
        .join("spool-b")
        .join(run_id)
        .join("stage-01.spool.zst");
    assert!(spooled.exists(), "{} kept", spooled.display());
    assert!(b_log.contains("SIGTERM"), "{b_log}");
    // Told apart from an agent that ran to its limits (the controller
    // reads StageDone.stopped_by).
    assert_eq!(
        stage_agent(&meta, "load", "b")["status"],
        "stopped",
        "{meta:#}"
    );
    assert_eq!(stage_agent(&meta, "load", "b")["stopped_by"], "SIGTERM");
    // Reported as having left, not as lost.
    let stopped = meta["stopped_agents"].as_array().unwrap();
    assert_eq!(stopped.len(), 1, "{meta:#}");
    assert_eq!(stopped[0]["id"], "b");
    assert_eq!(stopped[0]["stage"], "load");
}

/// Waits (up to `limit`) for `child` and returns its exit code.
fn wait_child(child: &mut std::process::Child, limit: Duration) -> Option<i32> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    None
}

/// A stopping agent waits for its session to end (its controller is frozen
/// here, so it does not) within the grace; a second SIGTERM exits at once,
/// with the shell's code for SIGTERM, and the stopped stage's op-log,
/// flushed at the first one, stays in the spool.
#[test]
fn a_second_sigterm_exits_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let mut agent = AgentSpec::new("solo", tmp.path().join("spool"))
        .arg("--stop-grace")
        .arg("60s")
        .start();
    let plan = tmp.path().join("plan.yaml");
    std::fs::write(
        &plan,
        format!(
            "name: twice\ntarget: file://{}\nobjects: {{count: 20, size: 1KiB}}\n\
             stages:\n  - {{name: prepare, type: prepare}}\n\
             \x20 - {{name: load, type: workload, mix: {{get: 1}}, rate: 100, duration: 60s}}\n",
            tmp.path().join("data").display()
        ),
    )
    .unwrap();
    let results = tmp.path().join("runs");
    let mut ctl = Command::new(bin("controller"))
        .args(["run", plan.to_str().unwrap(), "--insecure", "--quiet"])
        .args(["--agents", &agent.addr])
        .arg("--results")
        .arg(&results)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_stage(&results, "load", 1, Duration::from_secs(30));
    let frozen = Command::new("kill")
        .args(["-STOP", &ctl.id().to_string()])
        .status()
        .unwrap();
    assert!(frozen.success());
    agent.terminate();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !agent.log_text().contains("op-log flushed") {
        assert!(Instant::now() < deadline, "{}", agent.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        agent.wait_exit(Duration::from_millis(500)).is_none(),
        "the session has not ended: the agent waits"
    );
    agent.terminate();
    let status = agent.wait_exit(Duration::from_secs(3));
    let _ = ctl.kill();
    let _ = ctl.wait();
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(143),
        "{}",
        agent.log_text()
    );
    let meta = read_json(&only_run_dir(&results).join("run.json"));
    let run_id = meta["run_id"].as_str().unwrap();
    let log = tmp
        .path()
        .join("spool")
        .join(run_id)
        .join("stage-01.spool.zst");
    let records = Tsv::read_zst(&log).rows.len();
    assert!(
        records > 0,
        "{} holds the stopped stage's records",
        log.display()
    );
}
