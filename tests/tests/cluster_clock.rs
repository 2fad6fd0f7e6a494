//! Three agents on their own "hosts" (network namespaces, own addresses),
//! two of them with wall clocks skewed by libfaketime (+3 s and −2 s), run
//! one plan from a controller in the root namespace. The controller must
//! measure the injected offsets, start the agents together despite them,
//! and merge a timeline on its own clock while the agents' raw logs stay on
//! theirs.
//!
//! The workload is open loop at a modest fixed rate: each agent logs op `k`
//! at its `k`-th slot after the start it derived from the controller's
//! start time and its measured offset. So the merged timeline must
//! interleave the agents slot by slot; and since the injected offsets are
//! known exactly, the raw logs minus those give the true times, which must
//! interleave too (that catches measurement errors, which the merged
//! timeline cannot show: start conversion and correction use the same
//! measured offset). A closed loop would instead have three CPU-bound
//! agents fight over this machine's two cores, and their first ops would
//! measure who got a core first (4–27 ms apart here), not the start
//! mechanism; separate hosts do not share cores. The agents' real release
//! times are checked too, more loosely, for the same reason.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chorus_common::clock::parse_rfc3339_ns;
use chorus_common::oplog::merge::ClockCorrection;
use chorus_tests::agents::{AgentProc, AgentSpec};
use chorus_tests::netns::{Net, remove_leftovers};
use chorus_tests::{Tsv, controller, only_run_dir, read_json};

/// The agents: id and injected clock offset (agent − real), in ms.
const AGENTS: [(&str, i64); 3] = [("ahead", 3000), ("behind", -2000), ("exact", 0)];
/// How close a measured offset must be to the injected one.
const OFFSET_TOLERANCE_NS: i64 = 5_000_000;
/// Largest spread of the agents' first workload ops, corrected.
const START_SKEW_MAX_NS: i64 = 10_000_000;
/// The workload stage: its length and its rate over all agents (200 ops/s
/// each: a slot every 5 ms, a few hundred records per agent).
const WORKLOAD: Duration = Duration::from_secs(2);
const RATE: u32 = 600;
/// How far apart the agents' `k`-th ops may be in the timeline: under half
/// the 5 ms between slots, so each op is nearer the other agents' same op
/// than their next or previous one. The offsets' measurement errors are a
/// fraction of the ~0.5 ms RTT over veth; the rest is for an agent
/// preempted between reading its wall clock and its monotonic clock when
/// it sets its start instant, which shifts all its slots (1.1 ms seen once
/// with another test's probes running beside this one).
const SLOT_ALIGN_NS: i64 = 2_000_000;
/// How late after the controller's start time an agent may release its
/// workers: the tokio timer's 1 ms granularity plus waking up on a busy
/// two-core machine. An agent that misread the offsets would be seconds off.
const RELEASE_LATE_MAX_NS: i64 = 100_000_000;

/// The tests of this file run one at a time: the timing one must not
/// share this machine's two cores with the other's probes.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    // A failed test poisons the lock; the next one may still run.
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn ns(s: &str) -> i64 {
    parse_rfc3339_ns(s).unwrap_or_else(|| panic!("bad time `{s}`"))
}

/// A field of `run.json` by path, with the whole object in the message when
/// it is missing (the run.json layout is still moving).
fn field<'a>(v: &'a serde_json::Value, path: &[&str]) -> &'a serde_json::Value {
    let mut cur = v;
    for key in path {
        cur = cur
            .get(key)
            .unwrap_or_else(|| panic!("run.json: no `{}` in {v:#}", path.join(".")));
    }
    cur
}

fn field_i64(v: &serde_json::Value, path: &[&str]) -> i64 {
    field(v, path)
        .as_i64()
        .unwrap_or_else(|| panic!("run.json: `{}` is not an integer in {v:#}", path.join(".")))
}

/// Every integer under an `offset_ns` key in `v`, at any depth.
fn collect_offsets(v: &serde_json::Value, out: &mut Vec<i64>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                match x.as_i64() {
                    Some(n) if k == "offset_ns" => out.push(n),
                    _ => collect_offsets(x, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| collect_offsets(x, out)),
        _ => {}
    }
}

/// Start of every op of agent `id` in stage `stage`, by `idx`.
fn ops_by_idx(tsv: &Tsv, id: &str, stage: &str) -> HashMap<u64, i64> {
    let (c_id, c_stage, c_idx, c_start) = (
        tsv.col("client_id"),
        tsv.col("stage"),
        tsv.col("idx"),
        tsv.col("start"),
    );
    tsv.rows
        .iter()
        .filter(|r| r[c_id] == id && r[c_stage] == stage)
        .map(|r| (r[c_idx].parse().expect("idx"), ns(&r[c_start])))
        .collect()
}

/// Every record an agent's raw op-logs in the run directory hold.
fn raw_logs(run: &Path, id: &str) -> Tsv {
    let dir = run.join("agents").join(id);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".spool.zst"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no op-logs in {}", dir.display());
    let mut all = Tsv::read_zst(&files[0]);
    for f in &files[1..] {
        let t = Tsv::read_zst(f);
        assert_eq!(t.header, all.header, "{}", f.display());
        all.rows.extend(t.rows);
    }
    all
}

#[test]
fn skewed_agents_on_their_own_hosts_start_together() {
    let _serial = serial();
    let t0 = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let net = Net::new(AGENTS.len());
    let agents: Vec<AgentProc> = AGENTS
        .iter()
        .enumerate()
        .map(|(i, &(id, offset_ms))| {
            let mut spec =
                AgentSpec::new(id, tmp.path().join(format!("spool-{id}"))).netns(&net, i);
            if offset_ms != 0 {
                spec = spec.clock_offset_ms(offset_ms);
            }
            spec.start()
        })
        .collect();
    for (i, a) in agents.iter().enumerate() {
        // Each agent listens on its own host's address, not loopback.
        assert!(
            a.addr.starts_with(&format!("{}:", net.ip(i))),
            "agent {} listens on {}, not on {}",
            a.id,
            a.addr,
            net.ip(i)
        );
    }

    let plan = format!(
        "name: cluster-clock\ntarget: file://{}\nconcurrency: 2\nobjects: {{count: 30, size: 4KiB}}\nstages:\n  - name: prepare\n    type: prepare\n  - name: rw\n    type: workload\n    mix: {{get: 3, put: 1}}\n    rate: {RATE}\n    arrivals: fixed\n    duration: {}s\n",
        tmp.path().join("data").display(),
        WORKLOAD.as_secs()
    );
    let plan_path = tmp.path().join("plan.yaml");
    std::fs::write(&plan_path, plan).unwrap();
    let results = tmp.path().join("runs");
    let addrs: Vec<&str> = agents.iter().map(|a| a.addr.as_str()).collect();
    let t_run = Instant::now();
    let out = controller(&[
        "run",
        plan_path.to_str().unwrap(),
        "--agents",
        &addrs.join(","),
        "--insecure",
        "--results",
        results.to_str().unwrap(),
        "--quiet",
    ]);
    let run_s = t_run.elapsed().as_secs_f64();
    let logs: String = agents
        .iter()
        .map(|a| format!("--- agent {} ---\n{}", a.id, a.log_text()))
        .collect();
    assert!(
        out.status.success(),
        "controller failed:\n{}\n{}\n{logs}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let run = only_run_dir(&results);
    let meta = read_json(&run.join("run.json"));

    // Offsets: measured at the start and at the end of the run, each
    // within 5 ms of the injected one.
    for (i, &(id, offset_ms)) in AGENTS.iter().enumerate() {
        let a = field(&meta, &["agents"])
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["id"] == id)
            .unwrap_or_else(|| panic!("agent {id} not in run.json: {meta:#}"));
        assert_eq!(field(a, &["address"]).as_str(), Some(addrs[i]));
        let injected = offset_ms * 1_000_000;
        for when in ["clock_start", "clock_end"] {
            let measured = field_i64(a, &[when, "offset_ns"]);
            let uncertainty = field_i64(a, &[when, "uncertainty_ns"]);
            println!(
                "{id}: {when} offset {:.3} ms (injected {offset_ms} ms, error {:+.3} ms, uncertainty {:.3} ms)",
                measured as f64 / 1e6,
                (measured - injected) as f64 / 1e6,
                uncertainty as f64 / 1e6
            );
            assert!(
                (measured - injected).abs() <= OFFSET_TOLERANCE_NS,
                "agent {id}: {when} offset {measured} ns, injected {injected} ns"
            );
        }
    }

    // Start skew as the controller reports it.
    let stages = field(&meta, &["stages"]).as_array().unwrap();
    for s in stages {
        println!(
            "stage {}: start_skew_ms {}",
            s["name"],
            field(s, &["start_skew_ms"])
        );
    }
    let rw = stages
        .iter()
        .find(|s| s["name"] == "rw")
        .unwrap_or_else(|| panic!("no stage rw in run.json: {meta:#}"));
    let skew_ms = field(rw, &["start_skew_ms"])
        .as_f64()
        .expect("start_skew_ms");
    assert!(
        skew_ms < START_SKEW_MAX_NS as f64 / 1e6,
        "workload start skew {skew_ms} ms"
    );
    let start_at = ns(field(rw, &["start_at"]).as_str().unwrap());
    // Every offset run.json holds for each agent (start, end, and each
    // stage's): the merge must have used one of them.
    let mut offsets: HashMap<&str, Vec<i64>> = HashMap::new();
    for &(id, injected_ms) in &AGENTS {
        let mut found = Vec::new();
        let entries = field(&meta, &["agents"]).as_array().unwrap().iter().chain(
            stages
                .iter()
                .flat_map(|s| s["agents"].as_array().into_iter().flatten()),
        );
        for entry in entries.filter(|e| e["id"] == id) {
            collect_offsets(entry, &mut found);
        }
        // Per-stage measurements too are within 5 ms of the injected offset.
        for &o in &found {
            assert!(
                (o - injected_ms * 1_000_000).abs() <= OFFSET_TOLERANCE_NS,
                "agent {id}: an offset in run.json is {o} ns, injected {injected_ms} ms"
            );
        }
        println!("{id}: {} offsets in run.json", found.len());
        offsets.insert(id, found);
    }

    // The merged timeline: sorted by corrected start; each agent's workload
    // begins at the controller's start time; and the agents' ops interleave
    // slot by slot although their clocks are 5 s apart.
    let timeline = Tsv::read_zst(&run.join("timeline.tsv.zst"));
    let starts: Vec<i64> = timeline.column("start").iter().map(|s| ns(s)).collect();
    assert!(
        starts.windows(2).all(|w| w[0] <= w[1]),
        "timeline not sorted by start"
    );
    let mut per_agent: Vec<Vec<i64>> = Vec::new();
    let mut truth: Vec<Vec<i64>> = Vec::new();
    let mut releases = Vec::new();
    for &(id, offset_ms) in &AGENTS {
        let merged = ops_by_idx(&timeline, id, "rw");
        let mut times: Vec<i64> = merged.values().copied().collect();
        times.sort_unstable();
        let expected = i64::from(RATE) / AGENTS.len() as i64 * WORKLOAD.as_secs() as i64;
        assert!(
            times.len() as i64 >= expected * 9 / 10,
            "agent {id}: {} workload ops, expected about {expected}",
            times.len()
        );
        let first = times[0];
        assert!(
            (first - start_at).abs() <= OFFSET_TOLERANCE_NS,
            "agent {id}: first workload op at {first}, stage start_at {start_at}"
        );

        // run.json: first_op is the same corrected time; the release
        // (`started`) is at the start, give or take waking up.
        let stage_agent = field(rw, &["agents"])
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["id"] == id)
            .unwrap_or_else(|| panic!("agent {id} not in stage rw: {rw:#}"));
        let first_op = ns(field(stage_agent, &["first_op"]).as_str().unwrap());
        assert!(
            (first_op - first).abs() < 1_000_000,
            "agent {id}: run.json first_op {first_op}, timeline {first}"
        );
        let released = ns(field(stage_agent, &["started"]).as_str().unwrap());
        println!(
            "{id}: {} workload ops, first op {:+.3} ms, release {:+.3} ms from start_at",
            times.len(),
            (first - start_at) as f64 / 1e6,
            (released - start_at) as f64 / 1e6
        );
        assert!(
            released >= start_at - OFFSET_TOLERANCE_NS
                && released <= start_at + RELEASE_LATE_MAX_NS,
            "agent {id}: released at {released}, stage start_at {start_at}"
        );
        releases.push(released);

        // The raw log is on the agent's own skewed clock: every record is
        // its merged record moved by the offset measured before the stage,
        // interpolated towards the next measurement (the end of the run:
        // rw is the last stage) by the record's raw start, to take out
        // drift. Had the agent corrected its times itself, the shift
        // would be 0.
        let raw = ops_by_idx(&raw_logs(&run, id), id, "rw");
        assert_eq!(raw.len(), merged.len(), "agent {id}: raw vs merged records");
        let measured = |clock: &serde_json::Value| {
            let offset = field_i64(clock, &["offset_ns"]);
            (field_i64(clock, &["measured_at_ns"]) + offset, offset)
        };
        let before = measured(field(stage_agent, &["clock"]));
        let run_agent = field(&meta, &["agents"])
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["id"] == id)
            .unwrap();
        let after = measured(field(run_agent, &["clock_end"]));
        let correction = ClockCorrection::between(before, after);
        let some_idx = merged.keys().min().unwrap();
        let shift = raw.get(some_idx).expect("record in raw log") - merged[some_idx];
        for (idx, m) in &merged {
            let r = raw
                .get(idx)
                .unwrap_or_else(|| panic!("agent {id}: record {idx} not in its raw log"));
            assert_eq!(
                r - m,
                correction.offset_at(*r),
                "agent {id}: record {idx} not shifted by the interpolated offset"
            );
        }
        // So every shift lies between offsets the controller measured.
        let (lo, hi) = (before.1.min(after.1), before.1.max(after.1));
        assert!(
            offsets[id].contains(&lo) && offsets[id].contains(&hi),
            "agent {id}: {before:?} and {after:?} are not measured offsets {:?}",
            offsets[id]
        );
        assert!(
            (shift - offset_ms * 1_000_000).abs() <= OFFSET_TOLERANCE_NS,
            "agent {id}: raw log shifted {shift} ns from the timeline, injected {offset_ms} ms"
        );
        per_agent.push(times);
        // True times: the raw (agent clock) times minus the exactly known
        // injected offset, on the real clock the controller also runs on.
        let mut true_times: Vec<i64> = raw.values().map(|r| r - offset_ms * 1_000_000).collect();
        true_times.sort_unstable();
        truth.push(true_times);
    }
    let release_spread = releases.iter().max().unwrap() - releases.iter().min().unwrap();
    let mut report = Vec::new();
    for (what, times) in [("timeline", &per_agent), ("true", &truth)] {
        let firsts: Vec<i64> = times.iter().map(|t| t[0]).collect();
        let spread = firsts.iter().max().unwrap() - firsts.iter().min().unwrap();
        assert!(
            spread <= START_SKEW_MAX_NS,
            "{what} times: first workload ops {spread} ns apart"
        );
        for (&(id, _), first) in AGENTS.iter().zip(&firsts) {
            assert!(
                (first - start_at).abs() <= OFFSET_TOLERANCE_NS,
                "{what} times: agent {id}'s first workload op at {first}, start_at {start_at}"
            );
        }
        // Slot by slot: the k-th ops of all agents are together.
        let slots = times.iter().map(Vec::len).min().unwrap();
        let mut worst = 0;
        for k in 0..slots {
            let at: Vec<i64> = times.iter().map(|t| t[k]).collect();
            let apart = at.iter().max().unwrap() - at.iter().min().unwrap();
            worst = worst.max(apart);
            assert!(
                apart <= SLOT_ALIGN_NS,
                "{what} times: op {k} of the agents is {apart} ns apart: {at:?}"
            );
        }
        report.push(format!(
            "{what} times: first-op spread {:.3} ms, worst slot spread {:.3} ms over {slots} slots",
            spread as f64 / 1e6,
            worst as f64 / 1e6,
        ));
    }
    println!(
        "{}; release spread {:.3} ms",
        report.join("; "),
        release_spread as f64 / 1e6
    );
    println!(
        "controller run {run_s:.1} s, whole test {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}

/// Output of `ip ARGS`, which must succeed.
fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(out.status.success(), "ip {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// The harness the test above stands on: hosts have their own addresses,
/// commands run inside them with their environment, a cut host is
/// unreachable until restored, and nothing is left behind, not even by a
/// run that crashed.
#[test]
fn namespace_hosts_are_separate_cuttable_and_cleaned_up() {
    let _serial = serial();
    // A crashed run's leftovers, named for a pid above the kernel's limit
    // (2^22), so never a live process.
    let (dead_ns, dead_veth) = ("chorus-4194305-0", "chv4194305x0");
    ip(&["netns", "add", dead_ns]);
    ip(&[
        "link",
        "add",
        dead_veth,
        "type",
        "veth",
        "peer",
        "name",
        "chv4194305y0",
    ]);

    let net = Net::new(2);
    remove_leftovers();
    assert!(
        !ip(&["netns", "list"]).contains(dead_ns),
        "leftover namespace kept"
    );
    assert!(
        !ip(&["-o", "link", "show"]).contains(dead_veth),
        "leftover veth kept"
    );

    assert_ne!(net.ip(0), net.ip(1));
    for i in 0..2 {
        let mut show = Command::new("ip");
        show.args(["-4", "-o", "addr", "show"]);
        let addrs = String::from_utf8(net.output(i, &show).stdout).unwrap();
        assert!(addrs.contains(&format!("{}/", net.ip(i))), "{addrs}");
        assert!(!addrs.contains(&format!("{}/", net.ip(1 - i))), "{addrs}");
    }
    let mut echo = Command::new("sh");
    echo.args(["-c", "echo \"$CHORUS_PROBE\""])
        .env("CHORUS_PROBE", "seen");
    assert_eq!(
        String::from_utf8(net.output(1, &echo).stdout)
            .unwrap()
            .trim(),
        "seen"
    );

    net.cut(1);
    assert!(!net.is_up(1));
    assert!(
        net.reaches_root(1, Duration::from_secs(1)).is_err(),
        "a cut host got through"
    );
    net.reaches_root(0, Duration::from_secs(5))
        .expect("the other host is cut off too");
    net.restore(1);
    assert!(net.is_up(1));
    net.reaches_root(1, Duration::from_secs(5))
        .expect("a restored host");

    let names: Vec<_> = (0..2).map(|i| net.host(i).clone()).collect();
    drop(net);
    let (namespaces, links) = (ip(&["netns", "list"]), ip(&["-o", "link", "show"]));
    for h in names {
        assert!(
            !namespaces.contains(&format!("{} ", h.ns)) && !namespaces.lines().any(|l| l == h.ns),
            "{} kept",
            h.ns
        );
        assert!(!links.contains(&format!(" {}@", h.veth)), "{} kept", h.veth);
    }
}

/// A plan's clock limits: an agent 3 s off is reported under
/// `clock_check: warn` and refused under `refuse` (the stage does not
/// start, the run fails naming the agent and the limit).
#[test]
fn clock_limits_warn_or_refuse_a_skewed_agent() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let skewed = AgentSpec::new("skewed", tmp.path().join("spool-s"))
        .clock_offset_ms(3000)
        .start();
    let fine = AgentSpec::new("fine", tmp.path().join("spool-f")).start();
    let agents = format!("{},{}", skewed.addr, fine.addr);
    for (check, ok) in [("warn", true), ("refuse", false)] {
        let plan = format!(
            "name: limits\ntarget: file://{}\nobjects: {{count: 10, size: 1KiB}}\n\
             control: {{max_clock_offset: 1s, clock_check: {check}}}\n\
             stages:\n  - {{name: prepare, type: prepare}}\n",
            tmp.path().join("data").display()
        );
        let path = tmp.path().join(format!("{check}.yaml"));
        std::fs::write(&path, plan).unwrap();
        let results = tmp.path().join(format!("runs-{check}"));
        let out = controller(&[
            "run",
            path.to_str().unwrap(),
            "--agents",
            &agents,
            "--insecure",
            "--quiet",
            "--results",
            results.to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.success(), ok, "clock_check {check}:\n{stderr}");
        assert!(
            stderr.contains("agent skewed clock") && stderr.contains("max_clock_offset"),
            "{stderr}"
        );
        assert!(!stderr.contains("agent fine clock"), "{stderr}");
        let meta = read_json(&only_run_dir(&results).join("run.json"));
        let warnings = meta["clock_warnings"].as_array().unwrap();
        assert_eq!(warnings.len(), 1, "{meta:#}");
        if !ok {
            assert_eq!(meta["status"], "failed");
            assert!(
                meta["error"].as_str().unwrap().contains("refused"),
                "{meta:#}"
            );
        }
    }
}
