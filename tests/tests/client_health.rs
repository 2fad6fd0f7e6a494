//! Client health: an agent whose CPU is saturated is named as the limit,
//! one with a light load is not, in the run's summary, `run.json`,
//! `series.csv` and `controller analyze`.
//!
//! Agent `hot` runs under `taskset` on one CPU shared with a busy-looping
//! shell pinned there too, with 32 closed-loop workers on `mem://`: its CPU
//! is full and the agent itself uses a good share of it. Agent `cool` runs
//! on another CPU with 200 ops/s in open loop. Plans have no per-agent
//! settings, so each agent has its own run (one after the other). The
//! figures are read here from the files, not through the code under test.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use chorus_tests::agents::{AgentProc, AgentSpec, taskset};
use chorus_tests::{controller, only_run_dir, read_json};

/// A busy loop pinned to one CPU; killed on drop.
struct Hog(Child);

impl Hog {
    fn start(cpu: usize) -> Hog {
        let child = Command::new(taskset())
            .args(["-c", &cpu.to_string(), "sh", "-c", "while :; do :; done"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("cannot start the CPU hog");
        Hog(child)
    }
}

impl Drop for Hog {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The CPUs this test may use, from the kernel's own list.
fn allowed_cpus() -> Vec<usize> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .expect("Cpus_allowed_list")
        .trim()
        .to_string();
    let mut out = Vec::new();
    for item in list.split(',').filter(|s| !s.is_empty()) {
        match item.split_once('-') {
            Some((a, b)) => out.extend(a.parse::<usize>().unwrap()..=b.parse().unwrap()),
            None => out.push(item.parse().unwrap()),
        }
    }
    out
}

/// Runs `stage` (a YAML flow mapping without its name) as stage `load` on
/// `agent`; returns the run directory and the controller's stdout.
fn run(tmp: &Path, name: &str, agent: &AgentProc, stage: &str) -> (PathBuf, String) {
    let plan = format!(
        "name: {name}\ntarget: mem://{name}\nobjects: {{count: 100, size: 4KiB}}\n\
         stages:\n  - {{name: load, type: workload, mix: {{put: 1}}, duration: 5s, {stage}}}\n"
    );
    let path = tmp.join(format!("{name}.yaml"));
    std::fs::write(&path, plan).unwrap();
    let results = tmp.join(format!("runs-{name}"));
    let out = controller(&[
        "run",
        path.to_str().unwrap(),
        "--agents",
        &agent.addr,
        "--insecure",
        "--results",
        results.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "run {name} failed:\n{stdout}\n{}\nagent log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        agent.log_text()
    );
    (only_run_dir(&results), stdout)
}

/// `series.csv` rows of `agent`, as (column name → value) lookups.
fn series_rows(run: &Path, agent: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let text = std::fs::read_to_string(run.join("series.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<String> = lines.next().unwrap().split(',').map(String::from).collect();
    let rows = lines
        .map(|l| l.split(',').map(String::from).collect::<Vec<_>>())
        .filter(|f| f[2] == agent)
        .collect();
    (header, rows)
}

fn column(header: &[String], rows: &[Vec<String>], name: &str) -> Vec<Option<f64>> {
    let i = header
        .iter()
        .position(|h| h == name)
        .unwrap_or_else(|| panic!("no column {name} in {header:?}"));
    rows.iter().map(|r| r[i].parse().ok()).collect()
}

/// Per row, how much of its one CPU the agent ran or waited for, %.
fn demands(header: &[String], rows: &[Vec<String>]) -> Vec<f64> {
    let used = column(header, rows, "proc_cpu_pct");
    let waited = column(header, rows, "proc_cpu_wait_pct");
    used.iter()
        .zip(&waited)
        .map(|(u, w)| u.unwrap_or(0.0) + w.unwrap_or(0.0))
        .collect()
}

fn client<'a>(meta: &'a serde_json::Value, agent: &str) -> &'a serde_json::Value {
    let a = meta["stages"][0]["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == agent)
        .unwrap();
    &a["client"]
}

fn analyze(run: &Path) -> String {
    let out = controller(&["analyze", run.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_saturated_agent_is_named_client_bound_and_a_light_one_is_not() {
    let cpus = allowed_cpus();
    let (hot_cpu, cool_cpu) = match cpus[..] {
        [a, b, ..] => (a, b),
        [a] => {
            // Still a real check: the light agent shares the busy CPU but
            // uses little of it, which the rules do not blame on it.
            eprintln!("only CPU {a} is usable: both agents run on it");
            (a, a)
        }
        [] => panic!("no usable CPU in Cpus_allowed_list"),
    };
    let tmp = tempfile::tempdir().unwrap();

    // The saturated one.
    let hog = Hog::start(hot_cpu);
    let hot = AgentSpec::new("hot", tmp.path().join("spool-hot"))
        .cpus(&hot_cpu.to_string())
        .start();
    let (hot_run, hot_out) = run(tmp.path(), "hot", &hot, "concurrency: 32");
    drop(hog);
    let warning = "warning: agent hot was client-bound in stage `load`: CPU ";
    assert!(
        hot_out.contains(warning),
        "summary:\n{hot_out}\nseries.csv:\n{}\nrun.json client: {:#}",
        std::fs::read_to_string(hot_run.join("series.csv")).unwrap(),
        client(&read_json(&hot_run.join("run.json")), "hot")
    );
    let summary = std::fs::read_to_string(hot_run.join("summary.txt")).unwrap();
    assert!(summary.contains(warning), "summary.txt:\n{summary}");
    let meta = read_json(&hot_run.join("run.json"));
    let c = client(&meta, "hot");
    assert_eq!(c["cpus"], 1, "{c:#}");
    let why = c["bottleneck"]
        .as_array()
        .unwrap_or_else(|| panic!("{c:#}"));
    assert!(why[0].as_str().unwrap().starts_with("CPU "), "{c:#}");
    assert!(c["cpu_busy_pct"]["mean"].as_f64().unwrap() >= 80.0, "{c:#}");
    // series.csv: the host columns, one CPU, busy near full most seconds.
    let (header, rows) = series_rows(&hot_run, "hot");
    assert_eq!(header.last().unwrap(), "cpus");
    assert!(rows.len() >= 4, "{rows:?}");
    let busy = column(&header, &rows, "cpu_busy_pct");
    let full = busy.iter().filter(|b| b.is_some_and(|b| b >= 90.0)).count();
    assert!(full * 2 >= busy.len(), "cpu_busy_pct per second: {busy:?}");
    assert!(
        column(&header, &rows, "cpus")
            .iter()
            .all(|c| *c == Some(1.0))
    );
    // It wanted that CPU: its threads ran or waited for it most of the
    // time (on a host busy with more than the hog, mostly waited).
    assert!(
        demands(&header, &rows).iter().any(|d| *d >= 50.0),
        "{rows:?}"
    );
    // Cluster rows leave the host columns empty.
    let text = std::fs::read_to_string(hot_run.join("series.csv")).unwrap();
    let cluster = text.lines().find(|l| l.contains(",*,")).unwrap();
    assert!(cluster.ends_with(",,,,,,,,,,,,,,"), "{cluster}");
    assert!(analyze(&hot_run).contains(warning));
    // The report: the warning, the table and the CPU chart of the stage.
    let html = std::fs::read_to_string(hot_run.join("report.html")).unwrap();
    assert!(html.contains("agent hot was client-bound in stage `load`"));
    assert!(html.contains("id=\"client-cpu-0\""));

    // The light one, in open loop.
    let cool = AgentSpec::new("cool", tmp.path().join("spool-cool"))
        .cpus(&cool_cpu.to_string())
        .start();
    let (cool_run, cool_out) = run(tmp.path(), "cool", &cool, "rate: 200, concurrency: 4");
    // On a host so loaded by others that even 200 ops/s wait for a CPU
    // most of the time, the warning is right and this half cannot check
    // its absence: say so rather than fail.
    let (header, rows) = series_rows(&cool_run, "cool");
    let starved = demands(&header, &rows)
        .iter()
        .filter(|d| **d >= 50.0)
        .count();
    if starved * 2 >= rows.len() {
        eprintln!(
            "CPU {cool_cpu} was too busy with other work for the light agent \
             (it waited for a CPU most seconds): its no-warning check is skipped"
        );
        return;
    }
    assert!(
        !cool_out.contains("client-bound"),
        "summary:\n{cool_out}\nseries.csv:\n{}",
        std::fs::read_to_string(cool_run.join("series.csv")).unwrap()
    );
    let meta = read_json(&cool_run.join("run.json"));
    let c = client(&meta, "cool");
    assert!(c["bottleneck"].is_null(), "{c:#}");
    assert_eq!(c["cpus"], 1, "{c:#}");
    // Open loop: its lag was measured, and it kept up (a mean of the
    // per-second worst lags far below the lag rule's 100 ms).
    let lag = c["sched_lag_ms"]["mean"]
        .as_f64()
        .unwrap_or_else(|| panic!("{c:#}"));
    assert!(lag < 50.0, "{c:#}");
    assert!(
        column(&header, &rows, "sched_lag_ms")
            .iter()
            .any(Option::is_some)
    );
    let text = analyze(&cool_run);
    assert!(
        text.contains("Client health") && !text.contains("client-bound in stage"),
        "{text}"
    );
}
