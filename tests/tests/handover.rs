//! A lost agent's budget handed on (`on_agent_loss: continue`), with real
//! agent processes and `kill -9`: an ops-bounded stage cut by the loss
//! still performs its whole budget (the rest in a hand-over step), and the
//! stages after it split ops, rate and keys over the agents still in.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chorus_tests::agents::start_agent;
use chorus_tests::{bin, only_run_dir, read_json, summary_ops, timeline_counts, wait_for_stage};

/// Files under `dir`, recursively (0 when it does not exist).
fn files_under(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .map(|e| e.unwrap().path())
        .map(|p| if p.is_dir() { files_under(&p) } else { 1 })
        .sum()
}

#[test]
fn a_killed_agents_budget_is_handed_over_and_later_stages_split_over_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let a = start_agent("a", &tmp.path().join("spool-a"));
    let b = start_agent("b", &tmp.path().join("spool-b"));
    let mut c = start_agent("c", &tmp.path().join("spool-c"));
    let data = tmp.path().join("data");
    let plan = format!(
        "name: handover\ntarget: file://{}\nconcurrency: 2\n\
         objects: {{count: 300, size: 4KiB}}\n\
         control: {{on_agent_loss: continue, agent_timeout: 2s}}\n\
         stages:\n  - {{name: prepare, type: prepare}}\n\
         \x20 - {{name: w, type: workload, mix: {{get: 1}}, ops: 3000, rate: 500}}\n\
         \x20 - {{name: more, type: prepare, objects: {{prefix: more/, count: 300, size: 1KiB}}}}\n\
         \x20 - {{name: after, type: workload, mix: {{get: 1}}, ops: 1200, rate: 600}}\n\
         \x20 - {{name: clean, type: cleanup}}\n",
        data.display()
    );
    let plan_path = tmp.path().join("plan.yaml");
    std::fs::write(&plan_path, plan).unwrap();
    let results = tmp.path().join("runs");
    let log = tmp.path().join("controller.log");
    let agents = format!("{},{},{}", a.addr, b.addr, c.addr);
    let mut ctl = Command::new(bin("controller"))
        .args(["run", plan_path.to_str().unwrap(), "--agents", &agents])
        .args(["--insecure", "--quiet", "--results"])
        .arg(&results)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    // Agent c is killed about a second into `w` (6 s at 500 ops/s).
    wait_for_stage(&results, "w", 2, Duration::from_secs(60));
    c.child.kill().unwrap();
    c.child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(s) = ctl.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the run did not end");
        std::thread::sleep(Duration::from_millis(100));
    };
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{stderr}");

    let run = only_run_dir(&results);
    let meta = read_json(&run.join("run.json"));
    assert_eq!(meta["lost_agents"][0]["id"], "c", "{meta:#}");
    assert_eq!(meta["lost_agents"][0]["stage"], "w");
    // `w` did its whole budget: what a and b counted in it, and the rest
    // in the hand-over (c's ops are not counted: it was lost).
    let w = summary_ops(&run, "w");
    let handed = summary_ops(&run, "w/handover");
    assert!(w < 3000 && handed > 0, "w {w}, hand-over {handed}");
    assert_eq!(w + handed, 3000);
    let h = &meta["handovers"][0];
    assert_eq!(h["stage"], "w", "{meta:#}");
    assert_eq!(h["departed"][0], "c");
    assert_eq!(h["step"], "w/handover");
    assert_eq!(h["ops"].as_u64(), Some(3000 - w));
    assert_eq!(h["ops_not_done"], 0);
    assert!(
        stderr.contains("took over its part in step `w/handover`"),
        "{stderr}"
    );
    // The timeline agrees, with only a and b in the counted steps.
    let counts = timeline_counts(&run);
    let of = |stage: &str, who: &str| {
        counts
            .get(&(stage.to_string(), who.to_string()))
            .copied()
            .unwrap_or(0)
    };
    assert_eq!(of("w", "a") + of("w", "b"), w);
    assert_eq!(of("w/handover", "a") + of("w/handover", "b"), handed);
    assert_eq!(of("w", "c") + of("w/handover", "c"), 0);

    // After the loss: the prepare writes all 300 objects over two agents,
    // and `after` does its 1,200 ops at 600 ops/s: 300 ops/s each.
    assert_eq!(summary_ops(&run, "more"), 300);
    assert_eq!(files_under(&data.join("more")), 300);
    assert_eq!(summary_ops(&run, "after"), 1200);
    assert_eq!((of("after", "a"), of("after", "b")), (600, 600));
    let after = meta["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "after")
        .unwrap();
    for agent in after["agents"].as_array().unwrap() {
        assert_eq!(agent["schedule"]["target_rate"], 300.0, "{after:#}");
    }

    // The cleanup on a and b removes every object the run made, c's third
    // too: it walks c's keys, and each agent's first look at the key space
    // (before the prepare) recorded that none was there before the run.
    assert_eq!(files_under(&data.join("obj")), 0);
    assert_eq!(summary_ops(&run, "clean"), 300);
    assert_eq!(meta["handovers"].as_array().unwrap().len(), 1, "{meta:#}");
}
