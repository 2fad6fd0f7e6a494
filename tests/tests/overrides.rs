//! Per-agent settings (`overrides:`): two agents on their own "hosts"
//! (network namespaces, own addresses), one plan whose overrides give each
//! its own target (by agent id, and by index) and one of them its own
//! worker count. Each agent's ops must land on its own target (the files
//! are there, and nowhere else), with its own workers, and `run.json` must
//! record what each ran. An override that picks no agent of the run is a
//! located plan error before anything runs.

use std::collections::BTreeSet;
use std::path::Path;

use chorus_tests::agents::{AgentProc, AgentSpec};
use chorus_tests::netns::Net;
use chorus_tests::{Tsv, controller, only_run_dir, read_json};

/// Files under `dir`, as keys relative to it.
fn files(dir: &Path) -> BTreeSet<String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.insert(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(dir, dir, &mut out);
    out
}

fn plan(tmp: &Path, east_selector: &str) -> String {
    format!(
        "name: overrides\n\
         target: file://{shared}\n\
         concurrency: 2\n\
         objects: {{count: 40, size: 4KiB, partition: agent}}\n\
         overrides:\n\
         \x20 - {{{east_selector}, target: \"file://{east}\"}}\n\
         \x20 - {{index: 1, target: \"file://{west}\", concurrency: 3}}\n\
         stages:\n\
         \x20 - {{name: fill, type: prepare}}\n\
         \x20 - {{name: mixed, type: workload, duration: 1s, mix: {{get: 3, put: 1}}}}\n",
        shared = tmp.join("shared").display(),
        east = tmp.join("east").display(),
        west = tmp.join("west").display(),
    )
}

#[test]
fn each_agent_runs_on_its_own_target() {
    let tmp = tempfile::tempdir().unwrap();
    let net = Net::new(2);
    let agents: Vec<AgentProc> = ["east", "west"]
        .iter()
        .enumerate()
        .map(|(i, id)| {
            AgentSpec::new(id, tmp.path().join(format!("spool-{id}")))
                .netns(&net, i)
                .start()
        })
        .collect();
    let addrs: Vec<&str> = agents.iter().map(|a| a.addr.as_str()).collect();
    let run = |text: &str, name: &str| {
        let plan_path = tmp.path().join(format!("{name}.yaml"));
        std::fs::write(&plan_path, text).unwrap();
        let results = tmp.path().join(format!("runs-{name}"));
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
        (out, results, plan_path)
    };

    // An override naming an agent the run does not have: nothing runs.
    let (out, results, plan_path) = run(&plan(tmp.path(), "agents: [north]"), "bad");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let at = format!("{}:6:", plan_path.display());
    assert!(err.contains(&at), "located at line 6: {err}");
    assert!(
        err.contains("`north`") && err.contains("overrides[0].agents"),
        "{err}"
    );
    assert!(!results.exists(), "a bad plan wrote results");
    assert!(files(tmp.path()).iter().all(|f| !f.starts_with("east/")));

    let (out, results, _) = run(&plan(tmp.path(), "agents: [east]"), "good");
    let logs: String = agents
        .iter()
        .map(|a| format!("--- agent {} ---\n{}", a.id, a.log_text()))
        .collect();
    assert!(
        out.status.success(),
        "{}\n{}\n{logs}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = only_run_dir(&results);

    // Every key an agent wrote is a file under its own target only.
    let tl = Tsv::read_zst(&dir.join("timeline.tsv.zst"));
    let (c_id, c_op, c_key, c_err, c_stage, c_thread) = (
        tl.col("client_id"),
        tl.col("op"),
        tl.col("file"),
        tl.col("error"),
        tl.col("stage"),
        tl.col("thread"),
    );
    let (east, west) = (
        files(&tmp.path().join("east")),
        files(&tmp.path().join("west")),
    );
    assert!(
        files(&tmp.path().join("shared")).is_empty(),
        "nothing goes to the plan's own target"
    );
    for (id, own, other) in [("east", &east, &west), ("west", &west, &east)] {
        let rows: Vec<&Vec<String>> = tl.rows.iter().filter(|r| r[c_id] == id).collect();
        assert!(!rows.is_empty(), "{id} ran nothing");
        let written: BTreeSet<&str> = rows
            .iter()
            .filter(|r| r[c_op] == "PUT")
            .map(|r| r[c_key].as_str())
            .collect();
        assert_eq!(written.len(), 20, "{id}: its slice of 40 objects");
        for key in &written {
            assert!(own.contains(*key), "{id} wrote {key}, not in its target");
            assert!(!other.contains(*key), "{id}'s {key} is in the other target");
        }
        let errors: Vec<_> = rows.iter().filter(|r| !r[c_err].is_empty()).collect();
        assert!(errors.is_empty(), "{id}: {errors:?}");
    }
    // west's workload ran 3 workers, east's the plan's 2.
    for (id, want) in [("east", 2), ("west", 3)] {
        let threads: BTreeSet<&str> = tl
            .rows
            .iter()
            .filter(|r| r[c_id] == id && r[c_stage] == "mixed")
            .map(|r| r[c_thread].as_str())
            .collect();
        assert_eq!(threads.len(), want, "{id}'s workers: {threads:?}");
    }

    // run.json: what each agent ran.
    let meta = read_json(&dir.join("run.json"));
    let agent = |id: &str| {
        meta["agents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["id"] == id)
            .unwrap_or_else(|| panic!("{id} not in {meta:#}"))
            .clone()
    };
    let (e, w) = (agent("east"), agent("west"));
    let east_target = format!("file://{}", tmp.path().join("east").display());
    let west_target = format!("file://{}", tmp.path().join("west").display());
    assert_eq!(e["overrides"]["target"], east_target.as_str(), "{e:#}");
    assert!(e["overrides"].get("concurrency").is_none(), "{e:#}");
    assert_eq!(w["overrides"]["target"], west_target.as_str(), "{w:#}");
    assert_eq!(w["overrides"]["concurrency"], "3", "{w:#}");
}
