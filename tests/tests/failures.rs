//! Failures of the control plane with real processes: an agent killed
//! mid-run (under both policies), the controller killed mid-run (agents stop
//! their load within the bound and keep their logs for `controller
//! collect`), and Ctrl-C on the controller.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chorus_tests::agents::{AgentProc, start_agent};
use chorus_tests::{
    Tsv, bin, controller, only_run_dir, read_json, rfc3339_to_ns, summary_ops, timeline_counts,
    wait_for_stage,
};

/// A controller process whose stderr lines arrive with the instant each
/// was read, so a test can tell how soon something was reported.
struct ControllerProc {
    child: Child,
    lines: mpsc::Receiver<(Instant, String)>,
    seen: Vec<(Instant, String)>,
}

impl ControllerProc {
    fn start(args: &[&str]) -> ControllerProc {
        let mut child = Command::new(bin("controller"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start controller");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send((Instant::now(), line));
            }
        });
        ControllerProc {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits (up to `limit`) for a stderr line containing `text`; returns
    /// when it was read.
    fn wait_line(&mut self, text: &str, limit: Duration) -> Option<Instant> {
        if let Some((at, _)) = self.seen.iter().find(|(_, l)| l.contains(text)) {
            return Some(*at);
        }
        let deadline = Instant::now() + limit;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok((at, line)) => {
                    let hit = line.contains(text);
                    self.seen.push((at, line));
                    if hit {
                        return Some(at);
                    }
                }
                Err(_) => return None,
            }
        }
        None
    }

    /// Waits for exit (up to `limit`) and returns the exit code.
    fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    fn stderr(&mut self) -> String {
        while let Ok(l) = self.lines.try_recv() {
            self.seen.push(l);
        }
        let lines: Vec<&str> = self.seen.iter().map(|(_, l)| l.as_str()).collect();
        lines.join("\n")
    }
}

impl Drop for ControllerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plan: prepare 200 objects, then a read/write workload of `seconds`.
fn write_plan(dir: &Path, policy: &str, controller_timeout: &str, seconds: u32) -> PathBuf {
    let plan = format!(
        "name: failures\ntarget: file://{}\nconcurrency: 2\n\
         objects: {{count: 200, size: 4KiB}}\n\
         control: {{on_agent_loss: {policy}, agent_timeout: 2s, controller_timeout: {controller_timeout}}}\n\
         stages:\n  - {{name: prepare, type: prepare}}\n\
         \x20 - {{name: load, type: workload, mix: {{get: 3, put: 1}}, rate: 400, duration: {seconds}s}}\n",
        dir.join("data").display()
    );
    let path = dir.join("plan.yaml");
    std::fs::write(&path, plan).unwrap();
    path
}

/// Waits until stage `load` runs (two of its rows are in series.csv).
fn wait_for_load(results: &Path, limit: Duration) {
    wait_for_stage(results, "load", 2, limit);
}

fn kill9(agent: &mut AgentProc) {
    agent.child.kill().expect("kill -9 agent");
    agent.child.wait().unwrap();
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

#[test]
fn killed_agent_is_reported_and_the_run_goes_on_with_the_others() {
    let tmp = tempfile::tempdir().unwrap();
    let a = start_agent("a", &tmp.path().join("spool-a"));
    let b = start_agent("b", &tmp.path().join("spool-b"));
    let mut c = start_agent("c", &tmp.path().join("spool-c"));
    let plan = write_plan(tmp.path(), "continue", "10s", 6);
    let results = tmp.path().join("runs");
    let agents = format!("{},{},{}", a.addr, b.addr, c.addr);
    let mut ctl = ControllerProc::start(&[
        "run",
        plan.to_str().unwrap(),
        "--agents",
        &agents,
        "--insecure",
        "--quiet",
        "--results",
        results.to_str().unwrap(),
    ]);
    wait_for_load(&results, Duration::from_secs(30));
    let killed = Instant::now();
    kill9(&mut c);
    let reported = ctl
        .wait_line("agent c lost", Duration::from_secs(10))
        .unwrap_or_else(|| panic!("loss not reported:\n{}", ctl.stderr()));
    let delay = reported.saturating_duration_since(killed);
    println!("agent c's loss reported {delay:?} after kill -9");
    assert!(delay < Duration::from_secs(5), "reported after {delay:?}");
    let code = ctl.wait_exit(Duration::from_secs(30));
    assert_eq!(code, Some(0), "continue policy finishes:\n{}", ctl.stderr());

    let run = only_run_dir(&results);
    let meta = read_json(&run.join("run.json"));
    assert_eq!(meta["status"], "completed");
    let lost = meta["lost_agents"].as_array().unwrap();
    assert_eq!(lost.len(), 1, "{meta:#}");
    assert_eq!(lost[0]["id"], "c");
    assert_eq!(lost[0]["stage"], "load");
    // The summary and timeline hold exactly the survivors' ops of `load`,
    // and everyone's of `prepare` (c was lost after it).
    let counts = timeline_counts(&run);
    let load_clients: BTreeSet<&str> = counts
        .keys()
        .filter(|(s, _)| s == "load")
        .map(|(_, c)| c.as_str())
        .collect();
    assert_eq!(load_clients, BTreeSet::from(["a", "b"]));
    let load: u64 = counts
        .iter()
        .filter(|((s, _), _)| s == "load")
        .map(|(_, n)| n)
        .sum();
    assert_eq!(load, summary_ops(&run, "load"));
    assert!(load > 0);
    let prepare: u64 = counts
        .iter()
        .filter(|((s, _), _)| s == "prepare")
        .map(|(_, n)| n)
        .sum();
    assert_eq!(prepare, 200);
    assert_eq!(summary_ops(&run, "prepare"), 200);
    // The summary says who covered what.
    let summary = read_json(&run.join("summary.json"));
    let coverage = &summary["stages"][1]["coverage"];
    let c_cov = coverage
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["agent"] == "c")
        .expect("c in coverage");
    assert_eq!(c_cov["status"], "lost");
    assert_eq!(c_cov["in_summary"], false);
    let text = std::fs::read_to_string(run.join("summary.txt")).unwrap();
    assert!(text.contains("agent c: lost"), "{text}");
}

#[test]
fn killed_agent_aborts_the_run_under_the_abort_policy() {
    let tmp = tempfile::tempdir().unwrap();
    let a = start_agent("a", &tmp.path().join("spool-a"));
    let mut b = start_agent("b", &tmp.path().join("spool-b"));
    let plan = write_plan(tmp.path(), "abort", "10s", 30);
    let results = tmp.path().join("runs");
    let agents = format!("{},{}", a.addr, b.addr);
    // Not quiet, and stderr is a pipe (not a terminal, as in CI logs or
    // under nohup): the live view draws nothing, but news of a lost agent
    // must still be printed.
    let mut ctl = ControllerProc::start(&[
        "run",
        plan.to_str().unwrap(),
        "--agents",
        &agents,
        "--insecure",
        "--results",
        results.to_str().unwrap(),
    ]);
    wait_for_load(&results, Duration::from_secs(30));
    let killed = Instant::now();
    kill9(&mut b);
    // The other agent is stopped at once, not after the 30 s stage.
    let code = ctl.wait_exit(Duration::from_secs(15));
    assert_eq!(
        code,
        Some(1),
        "abort policy fails the run:\n{}",
        ctl.stderr()
    );
    assert!(killed.elapsed() < Duration::from_secs(12));
    let run = only_run_dir(&results);
    let meta = read_json(&run.join("run.json"));
    assert_eq!(meta["status"], "failed");
    assert!(
        meta["error"]
            .as_str()
            .unwrap()
            .contains("on_agent_loss: abort"),
        "{meta:#}"
    );
    let notice = ctl.wait_line("agent b lost at ", Duration::from_secs(5));
    assert!(notice.is_some(), "no loss notice:\n{}", ctl.stderr());
    // What a measured is kept: a's ops of the stopped stage are in both.
    let counts = timeline_counts(&run);
    let a_load = counts[&("load".to_string(), "a".to_string())];
    assert!(a_load > 0);
    assert_eq!(a_load, summary_ops(&run, "load"));
    // a was told to stop, and is reported so: not as having finished.
    let load = meta["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "load")
        .expect("load in run.json");
    let a_meta = &load["agents"][0];
    assert_eq!(a_meta["id"], "a");
    assert_eq!(a_meta["status"], "stopped", "{load:#}");
    let by = a_meta["stopped_by"].as_str().unwrap();
    assert!(by.starts_with("agent b lost"), "{by}");
    assert!(load["ended_early"].as_str().is_some(), "{load:#}");
}

#[test]
fn agents_stop_within_the_bound_when_the_controller_dies_and_logs_are_collected() {
    let tmp = tempfile::tempdir().unwrap();
    let a = start_agent("a", &tmp.path().join("spool-a"));
    let b = start_agent("b", &tmp.path().join("spool-b"));
    let plan = write_plan(tmp.path(), "abort", "3s", 60);
    let results = tmp.path().join("runs");
    let agents = format!("{},{}", a.addr, b.addr);
    let mut ctl = ControllerProc::start(&[
        "run",
        plan.to_str().unwrap(),
        "--agents",
        &agents,
        "--insecure",
        "--quiet",
        "--results",
        results.to_str().unwrap(),
    ]);
    wait_for_load(&results, Duration::from_secs(30));
    let killed_ns = now_ns();
    ctl.child.kill().unwrap();
    ctl.child.wait().unwrap();

    // Both agents become free again (their sessions ended) within the
    // bound plus the watchdog's check interval.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let out = controller(&["agents", "--agents", &agents, "--insecure", "--json"]);
        let text = String::from_utf8_lossy(&out.stdout);
        if out.status.success() && !text.contains("\"busy\": true") && text.contains("\"a\"") {
            break;
        }
        assert!(Instant::now() < deadline, "agents still busy:\n{text}");
        std::thread::sleep(Duration::from_millis(250));
    }

    // The logs left in the spools come back with `controller collect`.
    let run = only_run_dir(&results);
    let out = controller(&["collect", run.to_str().unwrap(), "--insecure"]);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let t = Tsv::read_zst(&run.join("timeline.tsv.zst"));
    let (stage, client, end) = (t.col("stage"), t.col("client_id"), t.col("end"));
    let load: Vec<&Vec<String>> = t.rows.iter().filter(|r| r[stage] == "load").collect();
    let clients: BTreeSet<&str> = load.iter().map(|r| r[client].as_str()).collect();
    assert_eq!(
        clients,
        BTreeSet::from(["a", "b"]),
        "both agents' logs collected"
    );
    // No op ended later than the bound (3 s) after the kill, plus a second
    // for ops in flight and the watchdog's check interval.
    let last_end = load.iter().map(|r| rfc3339_to_ns(&r[end])).max().unwrap();
    let after = Duration::from_nanos((last_end - killed_ns).max(0) as u64);
    assert!(
        after < Duration::from_secs(4),
        "ops went on {after:?} after the controller died"
    );
    // The run is finished as a normal one: both agents' `load` listed,
    // and a summary of exactly the timeline's ops.
    let meta = read_json(&run.join("run.json"));
    assert_eq!(meta["status"], "collected", "{meta:#}");
    let ids: BTreeSet<&str> = meta["stages"][1]["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, BTreeSet::from(["a", "b"]), "{meta:#}");
    assert_eq!(load.len() as u64, summary_ops(&run, "load"));
}

#[test]
fn ctrl_c_stops_every_agent_and_keeps_what_was_measured() {
    let tmp = tempfile::tempdir().unwrap();
    let plan = write_plan(tmp.path(), "abort", "10s", 60);
    let results = tmp.path().join("runs");
    let mut ctl = ControllerProc::start(&[
        "run",
        plan.to_str().unwrap(),
        "--quiet",
        "--results",
        results.to_str().unwrap(),
    ]);
    wait_for_load(&results, Duration::from_secs(30));
    let status = Command::new("kill")
        .args(["-INT", &ctl.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let code = ctl.wait_exit(Duration::from_secs(15));
    assert_eq!(code, Some(130), "{}", ctl.stderr());
    let run = only_run_dir(&results);
    let meta = read_json(&run.join("run.json"));
    assert_eq!(meta["status"], "interrupted", "{meta:#}");
    let counts = timeline_counts(&run);
    let load: u64 = counts
        .iter()
        .filter(|((s, _), _)| s == "load")
        .map(|(_, n)| n)
        .sum();
    assert!(load > 0);
    assert_eq!(load, summary_ops(&run, "load"));
    // The stage was cut short, far before its 60 s.
    let elapsed = read_json(&run.join("summary.json"))["stages"][1]["elapsed_s"]
        .as_f64()
        .unwrap();
    assert!(elapsed < 20.0, "stage ran {elapsed} s");
}
