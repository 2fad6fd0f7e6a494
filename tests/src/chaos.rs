//! Chaos: many short runs while agents are killed (`-9` and `TERM`), cut
//! off the network (their namespace's link down, then up) and, once, the
//! controller is killed and `controller collect` finishes its run. After
//! every run, [`audit`] checks that nothing measured was lost:
//!
//! - every op an agent performed (its spool, kept with `--keep-spool`) is
//!   in the timeline, or its agent is `lost`/`failed` in that step and the
//!   summary's coverage says its ops are not counted;
//! - an agent that was not in a step performed nothing in it;
//! - each step's summary counts equal its timeline records;
//! - an ops budget is done in full (the step plus its hand-overs) in a
//!   run that completed;
//! - no agent issued load longer than `controller_timeout` (plus a second
//!   for ops in flight and the watchdog's check) after its controller was
//!   gone or it was cut off;
//! - the controller exited, and at the end no process of the test is left.
//!
//! [`run`] is the loop; `tests/tests/chaos.rs` runs a short version with
//! one fault of each kind, and `scripts/chaos.sh` a long one (`CHAOS_SECONDS`).

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::agents::{AgentProc, AgentSpec};
use crate::netns::Net;
use crate::{bin, read_json, rfc3339_to_ns, timeline_counts};

/// What the chaos plan's control section says; the audit's bound uses it.
const CONTROLLER_TIMEOUT: Duration = Duration::from_secs(3);

/// Slack on that bound: ops in flight when the agent noticed, and the
/// watchdog's check interval.
const STOP_SLACK: Duration = Duration::from_millis(1500);

/// The ops budget of the chaos plan's `w` stage.
const W_OPS: u64 = 3000;

/// Longest one run may take before the loop gives up on it (a hang).
const RUN_LIMIT: Duration = Duration::from_secs(120);

/// A fault injected into one run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    None,
    Kill9,
    Term,
    Cut,
    KillController,
}

impl Fault {
    pub fn name(self) -> &'static str {
        match self {
            Fault::None => "none",
            Fault::Kill9 => "agent kill -9",
            Fault::Term => "agent SIGTERM",
            Fault::Cut => "agent link cut",
            Fault::KillController => "controller kill -9 + collect",
        }
    }
}

/// What a chaos session did.
#[derive(Debug, Default)]
pub struct Report {
    pub runs: u32,
    pub faults: BTreeMap<&'static str, u32>,
    /// Every invariant broken, with its run.
    pub breaks: Vec<String>,
    pub handovers: u32,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let faults: u32 = self
            .faults
            .iter()
            .filter(|(k, _)| **k != Fault::None.name())
            .map(|(_, n)| n)
            .sum();
        writeln!(
            f,
            "chaos: {} runs, {faults} faults injected, {} hand-over steps, {} invariant breaks",
            self.runs,
            self.handovers,
            self.breaks.len()
        )?;
        for (k, n) in &self.faults {
            writeln!(f, "  {k}: {n}")?;
        }
        for b in &self.breaks {
            writeln!(f, "  BREAK {b}")?;
        }
        Ok(())
    }
}

/// One agent of the session: where it runs (loopback, or a namespace host
/// that can be cut off) and its spool.
struct Slot {
    id: String,
    spool: PathBuf,
    host: Option<usize>,
    proc: Option<AgentProc>,
}

impl Slot {
    fn start(&mut self, net: &Net) {
        let mut spec = AgentSpec::new(&self.id, &self.spool).arg("--keep-spool");
        if let Some(h) = self.host {
            spec = spec.netns(net, h);
        }
        self.proc = Some(spec.start());
    }

    /// Running, or started again (after a kill or a TERM).
    fn ensure(&mut self, net: &Net) {
        let exited = match &mut self.proc {
            Some(p) => p.child.try_wait().ok().flatten().is_some(),
            None => true,
        };
        if exited {
            self.start(net);
        }
    }

    fn addr(&self) -> &str {
        &self.proc.as_ref().expect("agent started").addr
    }
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

/// A small deterministic generator (xorshift), so a seed replays a session.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The chaos plan: a prepare, an ops-bounded open-loop workload, a timed
/// one and a cleanup, about 12 s, with `on_agent_loss: continue`.
fn plan(dir: &Path, data: &Path) -> PathBuf {
    let text = format!(
        "name: chaos\ntarget: file://{}\nconcurrency: 2\n\
         objects: {{count: 200, size: 4KiB}}\n\
         control: {{on_agent_loss: continue, agent_timeout: 2s, controller_timeout: {}s, collect_interval: 1s}}\n\
         stages:\n  - {{name: prepare, type: prepare}}\n\
         \x20 - {{name: w, type: workload, mix: {{get: 3, put: 1}}, ops: {W_OPS}, rate: 600}}\n\
         \x20 - {{name: t, type: workload, mix: {{get: 1, stat: 1}}, duration: 3s, rate: 400}}\n\
         \x20 - {{name: clean, type: cleanup}}\n",
        data.display(),
        CONTROLLER_TIMEOUT.as_secs()
    );
    let path = dir.join("plan.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs chaos in `dir` until `runs` runs are done or `seconds` have passed
/// (whichever first); `faults` is the order of faults to inject, repeated,
/// or empty for random ones from `seed` (the controller killed once).
pub fn run(dir: &Path, runs: u32, seconds: u64, faults: &[Fault], seed: u64) -> Report {
    let net = Net::new(2);
    let mut slots: Vec<Slot> = ["a", "b", "c", "d"]
        .iter()
        .enumerate()
        .map(|(i, id)| Slot {
            id: id.to_string(),
            spool: dir.join(format!("spool-{id}")),
            host: (i >= 2).then(|| i - 2),
            proc: None,
        })
        .collect();
    let mut rng = Rng(seed | 1);
    let mut report = Report::default();
    let began = Instant::now();
    let mut controller_killed = false;
    while report.runs < runs && began.elapsed() < Duration::from_secs(seconds) {
        let n = report.runs;
        let fault = match faults.get(n as usize % faults.len().max(1)) {
            Some(f) => *f,
            None => match rng.below(if controller_killed { 4 } else { 5 }) {
                0 => Fault::None,
                1 => Fault::Kill9,
                2 => Fault::Term,
                3 => Fault::Cut,
                _ => Fault::KillController,
            },
        };
        controller_killed |= fault == Fault::KillController;
        for s in &mut slots {
            s.ensure(&net);
        }
        for h in 0..net.len() {
            if !net.is_up(h) {
                net.restore(h);
            }
        }
        let victim = match fault {
            Fault::Cut => 2 + rng.below(2) as usize,
            _ => rng.below(4) as usize,
        };
        // After start-up (connect, plan, clocks: about a second), within
        // the stages (about 12 s).
        let at = Duration::from_millis(1500 + rng.below(6000));
        let run_dir = dir.join(format!("run-{n:03}"));
        let breaks = one_run(&net, &mut slots, &run_dir, fault, victim, at, &mut report);
        if fault == Fault::Term
            && let Some(p) = &mut slots[victim].proc
            && p.wait_exit(Duration::from_secs(30)).is_none()
        {
            report.breaks.push(format!(
                "run {n}: agent {} did not exit after SIGTERM",
                p.id
            ));
        }
        for b in breaks {
            report
                .breaks
                .push(format!("run {n} ({}): {b}", fault.name()));
        }
        *report.faults.entry(fault.name()).or_insert(0) += 1;
        report.runs += 1;
    }
    for h in 0..net.len() {
        net.restore(h);
    }
    drop(slots);
    if let Some(left) = processes_under(dir) {
        report
            .breaks
            .push(format!("processes left running: {left}"));
    }
    report
}

/// One run with one fault; returns the invariants it broke.
fn one_run(
    net: &Net,
    slots: &mut [Slot],
    dir: &Path,
    fault: Fault,
    victim: usize,
    at: Duration,
    report: &mut Report,
) -> Vec<String> {
    std::fs::create_dir_all(dir).unwrap();
    let plan = plan(dir, &dir.join("data"));
    let results = dir.join("runs");
    let agents: Vec<&str> = slots.iter().map(Slot::addr).collect();
    let mut ctl = Command::new(bin("controller"))
        .args(["run", plan.to_str().unwrap(), "--agents", &agents.join(",")])
        .args(["--insecure", "--quiet", "--results"])
        .arg(&results)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("controller.log")).unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    std::thread::sleep(at);
    let mut gone_ns = None;
    let mut cut = None;
    match fault {
        Fault::None => {}
        Fault::Kill9 => {
            if let Some(p) = &mut slots[victim].proc {
                let _ = p.child.kill();
                let _ = p.child.wait();
            }
        }
        Fault::Term => {
            if let Some(p) = &slots[victim].proc {
                p.terminate();
            }
        }
        Fault::Cut => {
            let h = slots[victim].host.expect("a namespace agent");
            net.cut(h);
            cut = Some((victim, now_ns()));
        }
        Fault::KillController => {
            let _ = ctl.kill();
            gone_ns = Some(now_ns());
        }
    }
    // A cut agent stays cut past its loss (agent_timeout 2 s), then is
    // restored: it must have stopped by then on its own.
    if let Some((v, _)) = cut {
        std::thread::sleep(CONTROLLER_TIMEOUT + STOP_SLACK + Duration::from_secs(1));
        net.restore(slots[v].host.unwrap());
    }
    let mut breaks = Vec::new();
    if !wait_child(&mut ctl, RUN_LIMIT.saturating_sub(started.elapsed())) {
        let _ = ctl.kill();
        let _ = ctl.wait();
        breaks.push("the controller did not end (hang)".to_string());
    }
    let Ok(run_dir) = only_dir(&results) else {
        breaks.push("no run directory".to_string());
        return breaks;
    };
    if fault == Fault::KillController {
        // The agents stop on their own; then their logs are collected.
        std::thread::sleep(CONTROLLER_TIMEOUT + STOP_SLACK);
        let out = Command::new(bin("controller"))
            .args(["collect", run_dir.to_str().unwrap(), "--insecure"])
            .output()
            .unwrap();
        if !out.status.success() {
            breaks.push(format!(
                "collect failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
            return breaks;
        }
    }
    let spools: Vec<(String, PathBuf)> = slots
        .iter()
        .map(|s| (s.id.clone(), s.spool.clone()))
        .collect();
    let bound = gone_ns
        .map(|t| ("controller killed", None, t))
        .or_else(|| cut.map(|(v, t)| ("link cut", Some(slots[v].id.clone()), t)));
    breaks.extend(audit(&run_dir, &spools, bound, report));
    breaks
}

/// Waits up to `limit` for `child` to exit; whether it did.
fn wait_child(child: &mut Child, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if child.try_wait().ok().flatten().is_some() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

fn only_dir(results: &Path) -> Result<PathBuf, ()> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(results)
        .map_err(|_| ())?
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.is_dir())
        .collect();
    match dirs.len() {
        1 => Ok(dirs.remove(0)),
        _ => Err(()),
    }
}

/// The records of one spooled op-log as far as they can be read (an
/// agent killed while writing leaves a cut last frame): their count and
/// the latest `end`.
fn spooled(path: &Path) -> (u64, Option<i64>) {
    let Ok(text) = chorus_common::oplog::open_log_text(path) else {
        return (0, None);
    };
    let mut lines = std::io::BufReader::new(text).lines();
    let header = match lines.next() {
        Some(Ok(h)) => h,
        _ => return (0, None),
    };
    let end = header.split('\t').position(|c| c == "end");
    let (mut n, mut last) = (0, None::<i64>);
    for line in lines.map_while(Result::ok) {
        n += 1;
        if let Some(e) = end.and_then(|i| line.split('\t').nth(i)) {
            let t = rfc3339_to_ns(e);
            last = Some(last.map_or(t, |l| l.max(t)));
        }
    }
    (n, last)
}

/// The spool file of stage `index`, step `step` (as the agent names it).
fn spool_file(spool: &Path, run_id: &str, index: u64, step: u64) -> PathBuf {
    let name = match step {
        0 => format!("stage-{index:02}.spool.zst"),
        s => format!("stage-{index:02}-s{s:02}.spool.zst"),
    };
    spool.join(run_id).join(name)
}

/// Checks one run's invariants (see the module docs); `bound` is the
/// moment load had to stop by (`what`, on one agent or all).
pub fn audit(
    run: &Path,
    spools: &[(String, PathBuf)],
    bound: Option<(&str, Option<String>, i64)>,
    report: &mut Report,
) -> Vec<String> {
    let mut breaks = Vec::new();
    let meta = read_json(&run.join("run.json"));
    let run_id = meta["run_id"].as_str().unwrap_or_default().to_string();
    let status = meta["status"].as_str().unwrap_or_default();
    if !matches!(status, "completed" | "collected") {
        breaks.push(format!("run status `{status}`: {}", meta["error"]));
    }
    let summary = read_json(&run.join("summary.json"));
    let timeline = timeline_counts(run);
    let empty = Vec::new();
    let stages = meta["stages"].as_array().unwrap_or(&empty);
    let mut w_total = 0;
    for st in stages {
        let name = st["name"].as_str().unwrap_or_default();
        let (index, step) = (
            st["index"].as_u64().unwrap_or(0),
            st["step"].as_u64().unwrap_or(0),
        );
        if name.ends_with("/handover") || name.contains("/handover-") {
            report.handovers += 1;
        }
        let rows = st["agents"].as_array().unwrap_or(&empty);
        let mut counted = 0;
        for (id, spool) in spools {
            let (performed, _) = spooled(&spool_file(spool, &run_id, index, step));
            let in_timeline = timeline
                .get(&(name.to_string(), id.clone()))
                .copied()
                .unwrap_or(0);
            counted += in_timeline;
            let row = rows.iter().find(|a| a["id"] == id.as_str());
            let Some(row) = row else {
                if performed > 0 || in_timeline > 0 {
                    breaks.push(format!(
                        "`{name}`: agent {id} is not in the step but did {performed} ops ({in_timeline} in the timeline)"
                    ));
                }
                continue;
            };
            match row["status"].as_str().unwrap_or_default() {
                "finished" | "stopped" => {
                    if in_timeline != performed {
                        breaks.push(format!(
                            "`{name}`: agent {id} did {performed} ops, the timeline has {in_timeline}"
                        ));
                    }
                }
                other => {
                    let covered = summary["stages"]
                        .as_array()
                        .and_then(|s| s.iter().find(|s| s["name"] == name))
                        .and_then(|s| s["coverage"].as_array())
                        .and_then(|c| c.iter().find(|c| c["agent"] == id.as_str()))
                        .is_some_and(|c| c["in_summary"] == false);
                    if in_timeline != 0 || !covered {
                        breaks.push(format!(
                            "`{name}`: agent {id} `{other}` with {performed} ops: {in_timeline} in the timeline, coverage {}",
                            if covered { "says so" } else { "does not say so" }
                        ));
                    }
                }
            }
        }
        let in_summary = summary["stages"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["name"] == name))
            .and_then(|s| s["ops"].as_array())
            .and_then(|o| o.iter().find(|o| o["op"] == "ALL"))
            .and_then(|o| o["count"].as_u64())
            .unwrap_or(0);
        if in_summary != counted {
            breaks.push(format!(
                "`{name}`: the summary counts {in_summary} ops, the timeline has {counted}"
            ));
        }
        if name == "w" || name.starts_with("w/handover") {
            w_total += counted;
        }
    }
    let ran_w = stages.iter().any(|s| s["name"] == "w");
    if status == "completed" && ran_w && w_total != W_OPS {
        breaks.push(format!(
            "`w` and its hand-overs did {w_total} of its {W_OPS} ops"
        ));
    }
    if let Some((what, who, at_ns)) = bound {
        let limit = at_ns + (CONTROLLER_TIMEOUT + STOP_SLACK).as_nanos() as i64;
        for (id, spool) in spools {
            if who.as_ref().is_some_and(|w| w != id) {
                continue;
            }
            let Ok(files) = std::fs::read_dir(spool.join(&run_id)) else {
                continue;
            };
            for f in files.filter_map(|e| Some(e.ok()?.path())) {
                if let (_, Some(last)) = spooled(&f)
                    && last > limit
                {
                    breaks.push(format!(
                        "agent {id} issued load {:.1} s after the {what}",
                        (last - at_ns) as f64 / 1e9
                    ));
                }
            }
        }
    }
    breaks
}

/// Processes whose command line names `dir` (the session's spools and
/// runs), as `pid cmdline` lines; `None` when there are none.
pub fn processes_under(dir: &Path) -> Option<String> {
    let needle = dir.to_string_lossy().to_string();
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").ok()?.filter_map(Result::ok) {
        let pid = e.file_name().to_string_lossy().to_string();
        if !pid.bytes().all(|b| b.is_ascii_digit()) || pid == me {
            continue;
        }
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(&needle) {
            found.push(format!("{pid} {cmd}"));
        }
    }
    (!found.is_empty()).then(|| found.join("; "))
}
