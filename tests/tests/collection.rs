//! Op-logs collected while a stage runs, with real agent processes: the
//! controller's copy of each agent's log grows during the stage (the
//! `.part` in the run directory), the finished timeline is whole, and an
//! agent killed mid-stage leaves what was copied of its log on disk.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chorus_tests::agents::start_agent;
use chorus_tests::{Tsv, bin, only_run_dir, read_json, rfc3339_to_ns, wait_for_stage};

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

/// A plan: prepare 100 small objects, then an unthrottled read workload of
/// `seconds` on a local folder, fast enough to fill several
/// 1 MiB op-log frames a second (the writer appends a frame per MiB of
/// text, so a slow stage has nothing to copy before it ends).
fn write_plan(dir: &Path, policy: &str, seconds: u32) -> PathBuf {
    let plan = format!(
        "name: collection\ntarget: file://{}\nconcurrency: 4\n\
         objects: {{count: 100, size: 1KiB}}\n\
         control: {{on_agent_loss: {policy}, agent_timeout: 2s, collect_interval: 500ms}}\n\
         stages:\n  - {{name: prepare, type: prepare}}\n\
         \x20 - {{name: load, type: workload, mix: {{get: 1}}, duration: {seconds}s}}\n",
        dir.join("data").display()
    );
    let path = dir.join("plan.yaml");
    std::fs::write(&path, plan).unwrap();
    path
}

/// The controller on `agents`, its output to files under `dir`. With
/// `--timeline-format parquet`, so a run whose controller dies records it
/// in run.json and `collect` must write the Parquet files the run never
/// got to.
fn start_controller(plan: &Path, agents: &str, results: &Path, dir: &Path) -> Child {
    let out = std::fs::File::create(dir.join("controller.out")).unwrap();
    let err = std::fs::File::create(dir.join("controller.err")).unwrap();
    Command::new(bin("controller"))
        .arg("run")
        .arg(plan)
        .args(["--agents", agents, "--insecure", "--quiet"])
        .args(["--timeline-format", "parquet", "--results"])
        .arg(results)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("start controller")
}

fn wait_exit(child: &mut Child, limit: Duration, dir: &Path) -> i32 {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s.code().unwrap_or(-1);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("controller still running after {limit:?}:\n{}", output(dir));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn output(dir: &Path) -> String {
    let read = |n: &str| std::fs::read_to_string(dir.join(n)).unwrap_or_default();
    format!("{}\n{}", read("controller.out"), read("controller.err"))
}

/// Size of `agents/<id>/01-load.spool.zst<suffix>` in the one run directory.
fn load_log_size(results: &Path, id: &str, suffix: &str) -> Option<u64> {
    let run = std::fs::read_dir(results).ok()?.next()?.ok()?.path();
    let path = run.join(format!("agents/{id}/01-load.spool.zst{suffix}"));
    std::fs::metadata(path).ok().map(|m| m.len())
}

/// Records in an op-log (a zstd TSV file counted without the code under
/// test, an agent's binary spool as the readers' TSV text); a file cut
/// short counts the lines of its whole frames (records, for a spool).
fn records(path: &Path) -> u64 {
    use std::io::Read;
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut dec: Box<dyn Read> = if chorus_common::oplog::is_spool(path).unwrap() {
        chorus_common::oplog::open_log_text(path).unwrap()
    } else {
        Box::new(zstd::Decoder::new(file).unwrap())
    };
    let mut text = Vec::new();
    // A cut-off last frame ends the stream with an error; what came before
    // is whole.
    let _ = dec.read_to_end(&mut text);
    let lines = text
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .count() as u64;
    lines.saturating_sub(1)
}

#[test]
fn logs_are_copied_while_the_stage_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let a = start_agent("a", &tmp.path().join("spool-a"));
    let b = start_agent("b", &tmp.path().join("spool-b"));
    let plan = write_plan(tmp.path(), "abort", 4);
    let results = tmp.path().join("runs");
    let agents = format!("{},{}", a.addr, b.addr);
    let mut ctl = start_controller(&plan, &agents, &results, tmp.path());

    // Watch agent a's `.part` while the controller runs, noting when each
    // size was seen (wall clock, as the controller's on this host).
    let mut sizes: Vec<(u64, i64)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while ctl.try_wait().unwrap().is_none() && Instant::now() < deadline {
        if load_log_size(&results, "a", "").is_some() {
            break;
        }
        if let Some(n) = load_log_size(&results, "a", ".part")
            && sizes.last().map(|s| s.0) != Some(n)
        {
            sizes.push((n, now_ns()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let code = wait_exit(&mut ctl, Duration::from_secs(60), tmp.path());
    assert_eq!(code, 0, "{}", output(tmp.path()));
    println!("agent a's .part sizes seen: {sizes:?}");
    assert!(
        sizes.windows(2).all(|w| w[0].0 < w[1].0),
        "the .part shrank: {sizes:?}"
    );

    let run = only_run_dir(&results);
    let meta = read_json(&run.join("run.json"));
    assert_eq!(meta["status"], "completed", "{meta:#}");
    // No copy left behind; each agent's log whole, its size in run.json.
    for id in ["a", "b"] {
        assert_eq!(load_log_size(&results, id, ".part"), None);
        assert_eq!(load_log_size(&results, id, ".partial"), None);
        let size = load_log_size(&results, id, "").expect("final log");
        let m = meta["stages"][1]["agents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == id)
            .unwrap();
        assert_eq!(m["oplog_bytes_collected"], size, "{m:#}");
        assert_eq!(m["oplog"], format!("agents/{id}/01-load.spool.zst"));
        let path = run.join(format!("agents/{id}/01-load.spool.zst"));
        assert_eq!(records(&path), m["records_logged"].as_u64().unwrap());
    }
    // The copy grew while the stage ran: two sizes seen before agent a
    // ended it (half a second of margin for the clocks).
    let a_meta = meta["stages"][1]["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "a")
        .unwrap();
    let ended = rfc3339_to_ns(a_meta["ended"].as_str().unwrap());
    let during = sizes
        .iter()
        .filter(|(_, at)| *at < ended - 500_000_000)
        .count();
    assert!(
        during >= 2,
        "the .part did not grow during the stage (ended {ended}): {sizes:?}"
    );
    // Records in equal records out.
    let t = Tsv::read_zst(&run.join("timeline.tsv.zst"));
    let logged: u64 = meta["stages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["agents"].as_array().unwrap())
        .map(|a| a["records_logged"].as_u64().unwrap())
        .sum();
    assert_eq!(t.rows.len() as u64, logged);
    assert_eq!(meta["timeline"]["records"], logged);
    assert!(meta["timeline"]["errors"].as_array().unwrap().is_empty());
}

#[test]
fn a_killed_agent_leaves_what_was_copied_of_its_log() {
    let tmp = tempfile::tempdir().unwrap();
    let a = start_agent("a", &tmp.path().join("spool-a"));
    let mut b = start_agent("b", &tmp.path().join("spool-b"));
    let plan = write_plan(tmp.path(), "continue", 5);
    let results = tmp.path().join("runs");
    let agents = format!("{},{}", a.addr, b.addr);
    let mut ctl = start_controller(&plan, &agents, &results, tmp.path());
    wait_for_stage(&results, "load", 2, Duration::from_secs(30));
    // Kill b once some of its log has been copied.
    let deadline = Instant::now() + Duration::from_secs(20);
    while load_log_size(&results, "b", ".part").is_none_or(|n| n == 0) {
        assert!(
            Instant::now() < deadline,
            "nothing of b's log copied:\n{}",
            output(tmp.path())
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    b.child.kill().unwrap();
    b.child.wait().unwrap();
    let code = wait_exit(&mut ctl, Duration::from_secs(60), tmp.path());
    assert_eq!(code, 0, "continue policy finishes:\n{}", output(tmp.path()));

    let run = only_run_dir(&results);
    let meta = read_json(&run.join("run.json"));
    assert_eq!(meta["status"], "completed", "{meta:#}");
    let m = meta["stages"][1]["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "b")
        .unwrap()
        .clone();
    assert_eq!(m["status"], "lost");
    assert_eq!(m["oplog"], "agents/b/01-load.spool.zst.partial", "{m:#}");
    let partial = run.join("agents/b/01-load.spool.zst.partial");
    let size = std::fs::metadata(&partial).unwrap().len();
    assert!(size > 0);
    assert_eq!(m["oplog_bytes_collected"], size, "{m:#}");
    assert_eq!(load_log_size(&results, "b", ".part"), None);
    assert_eq!(load_log_size(&results, "b", ""), None);
    // Whole frames of b's ops, read by any zstd decoder.
    let n = records(&partial);
    println!("b's partial log: {size} bytes, {n} records");
    assert!(n > 0, "no record in b's partial log");
    let out = output(tmp.path());
    assert!(
        out.contains("bytes of agent b's op-log of stage `load`"),
        "{out}"
    );
    // Not merged: the summary and the timeline hold only a's ops of `load`.
    let t = Tsv::read_zst(&run.join("timeline.tsv.zst"));
    let (stage, client) = (t.col("stage"), t.col("client_id"));
    assert!(
        t.rows
            .iter()
            .all(|r| r[stage] != "load" || r[client] == "a"),
        "b's ops of `load` are in the timeline"
    );
    assert!(meta["timeline"]["errors"].as_array().unwrap().is_empty());
}

#[test]
fn collect_continues_a_copy_left_by_a_dead_controller() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool-a");
    let a = start_agent("a", &spool);
    let plan = write_plan(tmp.path(), "abort", 30);
    let text = std::fs::read_to_string(&plan).unwrap();
    std::fs::write(
        &plan,
        text.replace(
            "agent_timeout: 2s",
            "agent_timeout: 2s, controller_timeout: 2s",
        ),
    )
    .unwrap();
    let results = tmp.path().join("runs");
    let mut ctl = start_controller(&plan, &a.addr, &results, tmp.path());
    wait_for_stage(&results, "load", 1, Duration::from_secs(30));
    let deadline = Instant::now() + Duration::from_secs(20);
    while load_log_size(&results, "a", ".part").is_none_or(|n| n == 0) {
        assert!(
            Instant::now() < deadline,
            "nothing copied:\n{}",
            output(tmp.path())
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    ctl.kill().unwrap();
    ctl.wait().unwrap();
    let held = load_log_size(&results, "a", ".part").unwrap();

    // The agent stops its load within controller_timeout and frees itself;
    // then its spool holds the whole log.
    let run = only_run_dir(&results);
    let run_id = run.file_name().unwrap().to_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(15);
    let out = loop {
        let out = Command::new(bin("controller"))
            .args(["collect", run.to_str().unwrap(), "--insecure"])
            .output()
            .unwrap();
        if out.status.success() || Instant::now() > deadline {
            break out;
        }
        println!(
            "collect, too early:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("`load` (continued from byte"), "{text}");
    // Byte for byte the agent's file, though most of it came mid-stage.
    let copy = std::fs::read(run.join("agents/a/01-load.spool.zst")).unwrap();
    let original = std::fs::read(spool.join(&run_id).join("stage-01.spool.zst")).unwrap();
    println!(
        "{held} of {} bytes were copied before the controller died",
        copy.len()
    );
    assert!(held > 0 && (held as usize) < original.len());
    assert!(
        copy == original,
        "the continued copy differs from the agent's log"
    );
    assert_eq!(load_log_size(&results, "a", ".part"), None);
    collected_run_is_complete(&run, text.contains("(was running)"));
}

/// A run finished by `collect` is as complete as a normal one: `run.json`
/// lists the stage the controller died in and says `collected`; the
/// summary holds the timeline's ops, stage by stage; the report is there,
/// and the Parquet files the run asked for, made from the collected
/// timeline and series; and `compare` takes the run.
fn collected_run_is_complete(run: &Path, said_running: bool) {
    let meta = read_json(&run.join("run.json"));
    assert_eq!(meta["status"], "collected", "{meta:#}");
    assert_eq!(meta["timeline_format"], "parquet", "{meta:#}");
    // The same bytes `export` writes from the timeline and series now
    // there (tests/tests/parquet_export.rs reads such files' contents).
    let exported = run.join("exported");
    std::fs::create_dir(&exported).unwrap();
    for (source, file) in [
        ("timeline.tsv.zst", "timeline.parquet"),
        ("series.csv", "series.parquet"),
    ] {
        let copy = exported.join(file);
        let out = Command::new(bin("controller"))
            .args(["export", "--format", "parquet", "-o"])
            .args([&copy, &run.join(source)])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let collected = std::fs::read(run.join(file))
            .unwrap_or_else(|e| panic!("collect wrote no {file}: {e}"));
        assert!(
            collected == std::fs::read(&copy).unwrap(),
            "{file} is not the export of the collected {source}"
        );
    }
    std::fs::remove_dir_all(&exported).unwrap();
    assert_eq!(meta["collect"]["status_before"], "running", "{meta:#}");
    assert!(said_running, "collect did not say what the status was");
    // The run ended with its last op (not at an earlier, too early collect).
    let t = Tsv::read_zst(&run.join("timeline.tsv.zst"));
    let last_end = t.column("end").iter().map(|e| rfc3339_to_ns(e)).max();
    let ended_at = rfc3339_to_ns(meta["ended_at"].as_str().unwrap());
    assert_eq!(Some(ended_at), last_end, "{meta:#}");
    // The end clock the dead controller never measured.
    assert!(meta["agents"][0]["clock_end"].is_object(), "{meta:#}");
    let stages = meta["stages"].as_array().unwrap();
    let names: Vec<&str> = stages.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["prepare", "load"], "{meta:#}");
    let load = &stages[1];
    assert_eq!(
        (load["index"].as_u64(), load["step"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(load["agents"][0]["id"], "a");
    assert_eq!(load["agents"][0]["status"], "stopped", "{load:#}");
    assert_eq!(load["agents"][0]["oplog"], "agents/a/01-load.spool.zst");
    assert!(load["agents"][0]["clock"].is_object(), "{load:#}");
    assert_eq!(meta["collect"]["recovered_stages"][0], "stage 1 `load`");

    // Summary equals timeline, per stage.
    assert_eq!(meta["timeline"]["records"], t.rows.len() as u64);
    let summary = read_json(&run.join("summary.json"));
    let stage_col = t.col("stage");
    let mut total = 0;
    for name in ["prepare", "load"] {
        let in_timeline = t.rows.iter().filter(|r| r[stage_col] == name).count() as u64;
        let s = summary["stages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("no stage {name} in {summary:#}"));
        let all = s["ops"].as_array().unwrap().last().unwrap();
        assert_eq!(all["op"], "ALL");
        assert_eq!(all["count"], in_timeline, "stage {name}: {s:#}");
        assert!(in_timeline > 0, "no ops of {name}");
        total += in_timeline;
    }
    assert_eq!(summary["total_ops"], total);
    assert_eq!(t.rows.len() as u64, total);
    for f in ["summary.txt", "summary.csv", "report.html"] {
        let len = std::fs::metadata(run.join(f)).map(|m| m.len()).unwrap_or(0);
        assert!(len > 0, "no {f}");
    }
    let out = Command::new(bin("controller"))
        .arg("compare")
        .args([run, run])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "compare refused the collected run:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A controller that dies during a capacity search's third step: `collect`
/// finds every step's log on the agent (the two `run.json` lists and the
/// one it never wrote down), names each after its step, and the timeline
/// and summary hold them all.
#[test]
fn collect_finds_the_steps_of_a_search_the_controller_died_in() {
    let tmp = tempfile::tempdir().unwrap();
    let a = start_agent("a", &tmp.path().join("spool-a"));
    let plan = tmp.path().join("plan.yaml");
    std::fs::write(
        &plan,
        format!(
            "name: collect-search\ntarget: file://{}\nconcurrency: 4\n\
             objects: {{count: 100, size: 1KiB}}\n\
             control: {{agent_timeout: 2s, controller_timeout: 2s, collect_interval: 500ms}}\n\
             stages:\n  - {{name: prepare, type: prepare}}\n\
             \x20 - name: find\n    type: search\n    mix: {{get: 1}}\n    \
             search: {{from: 100, to: 100000, step: 4s, objective: {{p99: 10s}}}}\n",
            tmp.path().join("data").display()
        ),
    )
    .unwrap();
    let results = tmp.path().join("runs");
    let mut ctl = start_controller(&plan, &a.addr, &results, tmp.path());
    // Killed once the run has copied some of step 3's log (every 500 ms),
    // seconds before the step ends and `run.json` would list it.
    let deadline = Instant::now() + Duration::from_secs(60);
    let step3 = loop {
        let found = std::fs::read_dir(&results)
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|d| std::fs::read_dir(d.ok()?.path().join("agents/a")).ok())
            .and_then(|d| {
                d.flatten()
                    .filter(|e| e.metadata().is_ok_and(|m| m.len() > 0))
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .find(|n| n.starts_with("01.03-") && n.ends_with(".part"))
            });
        if let Some(name) = found {
            break name;
        }
        assert!(
            Instant::now() < deadline,
            "no step 3:\n{}",
            output(tmp.path())
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(step3, "01.03-find_03-rate-400.spool.zst.part");
    ctl.kill().unwrap();
    ctl.wait().unwrap();

    let run = only_run_dir(&results);
    let deadline = Instant::now() + Duration::from_secs(15);
    let out = loop {
        let out = Command::new(bin("controller"))
            .args(["collect", run.to_str().unwrap(), "--insecure"])
            .output()
            .unwrap();
        if out.status.success() || Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("a: stage 1 `find` step 3 (continued from byte"),
        "{text}"
    );
    let meta = read_json(&run.join("run.json"));
    assert_eq!(meta["status"], "collected", "{meta:#}");
    let steps: Vec<(u64, u64, &str)> = meta["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let (i, st) = (s["index"].as_u64().unwrap(), s["step"].as_u64().unwrap());
            (i, st, s["name"].as_str().unwrap())
        })
        .collect();
    assert_eq!(
        &steps[..4],
        &[
            (0, 0, "prepare"),
            (1, 1, "find/01-rate-100"),
            (1, 2, "find/02-rate-200"),
            (1, 3, "find/03-rate-400")
        ],
        "{meta:#}"
    );
    let recovered = meta["collect"]["recovered_stages"].as_array().unwrap();
    assert!(
        recovered
            .iter()
            .any(|r| r == "stage 1 `find/03-rate-400` step 3"),
        "{meta:#}"
    );
    // Timeline and summary hold every step, with the same counts.
    let t = Tsv::read_zst(&run.join("timeline.tsv.zst"));
    let summary = read_json(&run.join("summary.json"));
    let stage_col = t.col("stage");
    for (_, _, name) in &steps {
        let in_timeline = t.rows.iter().filter(|r| r[stage_col] == *name).count() as u64;
        assert!(in_timeline > 0, "no ops of {name} in the timeline");
        let s = summary["stages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == *name)
            .unwrap_or_else(|| panic!("no {name} in {summary:#}"));
        assert_eq!(
            s["ops"].as_array().unwrap().last().unwrap()["count"],
            in_timeline
        );
    }
    assert_eq!(meta["timeline"]["records"], t.rows.len() as u64);
}
