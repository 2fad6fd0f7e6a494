//! A controller driving 1,000 agents: one `agent --simulate 1000` process
//! (each simulated agent its own port, gRPC server, session, clock and
//! spool) and a one-stage run of 2 PUTs per agent on a `file://` target. Checks what breaks first
//! at scale: an agent's op-log missing from the merged timeline, a summary
//! that disagrees with it, a start skew not measured, a live view that
//! prints a line per agent. Its timings are in
//! `scripts/bench/agents-scale.sh`, not here.

use std::collections::BTreeMap;

use chorus_tests::agents::AgentSpec;
use chorus_tests::{Tsv, controller, only_run_dir, read_json};

/// Simulated agents: the scale goal.
const AGENTS: usize = 1000;

/// Ops per stage: a few per agent, so the run is about the agents, not
/// the load.
const OPS: usize = 2 * AGENTS;

#[test]
fn a_thousand_simulated_agents_run_a_stage_and_lose_no_record() {
    let tmp = tempfile::tempdir().unwrap();
    let sim = AgentSpec::new("sim", tmp.path().join("spool"))
        .arg("--simulate")
        .arg(AGENTS.to_string())
        .start();
    // Port 0: each agent on a free port of its own, listed with commas.
    let addrs: Vec<&str> = sim.addr.split(',').collect();
    assert_eq!(addrs.len(), AGENTS, "{}", sim.addr);
    // A thousand agents start each stage on the test host's few cores, so
    // their first reports (and heartbeat replies) can be seconds late: the
    // simulator's cost, not lost agents or a lost controller.
    let plan = format!(
        "name: scale\ntarget: file://{}\nconcurrency: 1\nobjects: {{count: {OPS}, size: 1KiB}}\n\
         control: {{agent_timeout: 30s, controller_timeout: 60s}}\n\
         stages:\n  - {{name: load, type: workload, mix: {{put: 1}}, ops: {OPS}}}\n",
        tmp.path().join("data").display()
    );
    let path = tmp.path().join("plan.yaml");
    std::fs::write(&path, plan).unwrap();
    let results = tmp.path().join("runs");
    // Not quiet: the live view must stay a line, not a line per agent.
    let out = controller(&[
        "run",
        path.to_str().unwrap(),
        "--agents",
        &sim.addr,
        "--results",
        results.to_str().unwrap(),
        "--insecure",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{stderr}\nagents' log:\n{}",
        sim.log_text()
    );
    let lines = stderr.lines().count();
    assert!(
        lines < 50,
        "{lines} lines on stderr for {AGENTS} agents:\n{stderr}"
    );

    let run = only_run_dir(&results);
    let meta = read_json(&run.join("run.json"));
    let ids: Vec<&str> = meta["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), AGENTS);
    // Ids are `sim-<port>`, one per port: every agent a session of its own.
    for (id, addr) in ids.iter().zip(&addrs) {
        let port = addr.rsplit(':').next().unwrap();
        assert_eq!(*id, format!("sim-{port}"));
    }

    // Every agent's records are in the merged timeline, and the timeline
    // holds exactly the summary's ops.
    let t = Tsv::read_zst(&run.join("timeline.tsv.zst"));
    assert_eq!(t.rows.len(), OPS);
    assert_eq!(meta["timeline"]["records"], t.rows.len() as u64);
    let (stage_col, client_col) = (t.col("stage"), t.col("client_id"));
    let mut per_agent: BTreeMap<&str, u64> = BTreeMap::new();
    for r in &t.rows {
        assert_eq!(r[stage_col], "load");
        *per_agent.entry(r[client_col].as_str()).or_default() += 1;
    }
    for id in &ids {
        assert_eq!(per_agent.get(id).copied(), Some(2), "agent {id}");
    }
    let summary = read_json(&run.join("summary.json"));
    let s = &summary["stages"][0];
    assert_eq!(s["name"], "load");
    let all = s["ops"].as_array().unwrap().last().unwrap();
    assert_eq!(all["op"], "ALL");
    assert_eq!(all["count"], OPS as u64, "{s:#}");
    assert_eq!(summary["total_ops"], OPS as u64);

    // Each agent's start and clock were recorded, and the skews from them.
    let load = meta["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "load")
        .unwrap();
    let skew = load["start_skew_ms"].as_f64().expect("start_skew_ms");
    assert!(skew >= 0.0, "{skew}");
    assert!(load["release_skew_ms"].as_f64().is_some(), "{load:#}");
    // How long before the start the last RunStage came: the controller's
    // part of the skew (negative when late, so only its presence is sure).
    assert!(load["request_lead_ms"].as_f64().is_some(), "{load:#}");
    let stage_agents = load["agents"].as_array().unwrap();
    assert_eq!(stage_agents.len(), AGENTS);
    for a in stage_agents {
        assert!(a["clock"].is_object(), "{a:#}");
        assert!(a["first_issued"].is_string(), "{a:#}");
        // The request came before the agent released its workers (both on
        // its clock, corrected alike; the times are of one fixed width).
        let (received, started) = (a["received"].as_str(), a["started"].as_str());
        assert!(received.is_some() && received <= started, "{a:#}");
    }

    // The report lists the slowest agents, not a thousand bars.
    let report = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert!(
        report.contains("slowest of 1000 agents"),
        "report.html does not name the slowest agents"
    );
}
