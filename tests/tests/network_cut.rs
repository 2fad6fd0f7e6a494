//! A network cut, not a crash: agents on their own hosts (network
//! namespaces), one host's link taken down mid-stage. Nothing closes the
//! connections, so only heartbeats and silence can tell: the controller
//! must call the agent lost within a few seconds and finish with the
//! others, and the cut-off agent must stop its own load within the plan's
//! controller timeout and keep its log for `controller collect`.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chorus_tests::agents::AgentSpec;
use chorus_tests::netns::Net;
use chorus_tests::{Tsv, bin, controller, only_run_dir, read_json, rfc3339_to_ns, wait_for_stage};

/// Seconds after the cut within which the cut-off agent's last op ends:
/// the plan's controller_timeout (3 s), the watchdog's check interval
/// (0.75 s) and an op in flight.
const STOP_BOUND: Duration = Duration::from_secs(5);

#[test]
fn a_cut_agent_is_lost_by_the_controller_and_stops_on_its_own() {
    let tmp = tempfile::tempdir().unwrap();
    let net = Net::new(3);
    let ids = ["a", "b", "c"];
    let agents: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            AgentSpec::new(id, tmp.path().join(format!("spool-{id}")))
                .netns(&net, i)
                .start()
        })
        .collect();
    let addrs: Vec<&str> = agents.iter().map(|a| a.addr.as_str()).collect();
    let addrs = addrs.join(",");
    let plan = format!(
        "name: cut\ntarget: file://{}\nconcurrency: 2\nobjects: {{count: 100, size: 4KiB}}\n\
         control: {{on_agent_loss: continue, agent_timeout: 2s, controller_timeout: 3s}}\n\
         stages:\n  - {{name: prepare, type: prepare}}\n\
         \x20 - {{name: load, type: workload, mix: {{get: 3, put: 1}}, rate: 300, duration: 10s}}\n",
        tmp.path().join("data").display()
    );
    let plan_path = tmp.path().join("plan.yaml");
    std::fs::write(&plan_path, plan).unwrap();
    let results = tmp.path().join("runs");

    let mut child = Command::new(bin("controller"))
        .args(["run", plan_path.to_str().unwrap(), "--agents", &addrs])
        .args(["--insecure", "--quiet", "--results"])
        .arg(&results)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, lines) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send((Instant::now(), line));
        }
    });

    // Cut host c once the workload runs (its rows are in series.csv).
    wait_for_stage(&results, "load", 1, Duration::from_secs(30));
    let cut_at = Instant::now();
    let cut_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    net.cut(2);

    let mut stderr_text = String::new();
    let mut reported = None;
    while let Ok((at, line)) = lines.recv_timeout(Duration::from_secs(20)) {
        stderr_text.push_str(&line);
        stderr_text.push('\n');
        if line.contains("agent c lost") {
            reported = Some(at);
            break;
        }
    }
    let reported = reported.unwrap_or_else(|| panic!("no loss reported:\n{stderr_text}"));
    let delay = reported.duration_since(cut_at);
    assert!(
        delay < Duration::from_secs(5),
        "lost reported after {delay:?}"
    );
    println!("loss reported {delay:?} after the cut");
    let status = child.wait().unwrap();
    println!("controller done {:?} after the cut", cut_at.elapsed());
    assert!(status.success(), "continue policy: {status}\n{stderr_text}");

    let run = only_run_dir(&results);
    let meta = read_json(&run.join("run.json"));
    assert_eq!(meta["lost_agents"][0]["id"], "c", "{meta:#}");
    let t = Tsv::read_zst(&run.join("timeline.tsv.zst"));
    let (stage, client) = (t.col("stage"), t.col("client_id"));
    let load_clients: BTreeSet<&str> = t
        .rows
        .iter()
        .filter(|r| r[stage] == "load")
        .map(|r| r[client].as_str())
        .collect();
    assert_eq!(load_clients, BTreeSet::from(["a", "b"]));

    // Back on the network, the cut-off agent hands over what it logged:
    // it stopped its load within the bound although no one told it to.
    net.restore(2);
    let out = controller(&["collect", run.to_str().unwrap(), "--insecure"]);
    println!("collected {:?} after the cut", cut_at.elapsed());
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let t = Tsv::read_zst(&run.join("timeline.tsv.zst"));
    let (stage, client, end) = (t.col("stage"), t.col("client_id"), t.col("end"));
    let c_ends: Vec<&str> = t
        .rows
        .iter()
        .filter(|r| r[stage] == "load" && r[client] == "c")
        .map(|r| r[end].as_str())
        .collect();
    assert!(!c_ends.is_empty(), "c's log of `load` was collected");
    let last = c_ends.iter().map(|e| rfc3339_to_ns(e)).max().unwrap();
    let after = Duration::from_nanos((last - cut_ns).max(0) as u64);
    assert!(
        after < STOP_BOUND,
        "c's last op ended {after:?} after the cut, more than {STOP_BOUND:?}"
    );
    // The load stage ran 10 s; c stopped well before its end.
    drop(agents);
}
