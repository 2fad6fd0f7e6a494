//! Objects Chorus did not write (`objects: {existing: true}`): boto3 (the
//! AWS SDK for Python, from the venv `scripts/boto3.sh` makes) writes
//! objects of varied sizes under a prefix and some sub-prefixes of a real
//! Ceph RGW; the real `controller` then reads them through two `agent`
//! processes, and every op is checked against what boto3 wrote. Plans
//! that would verify, write or delete such objects, and an empty prefix,
//! are refused before anything runs, with exit code 2.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex, Weak};
use std::time::{SystemTime, UNIX_EPOCH};

use chorus_tests::agents::{AgentProc, AgentSpec};
use chorus_tests::servers::Server;
use chorus_tests::{Tsv, bin, only_run_dir, repo_root};

const BUCKET: &str = "chorus-existing";

/// The shared RGW (see tests/tests/store_s3.rs: the last test drops it).
fn rgw() -> Arc<Server> {
    static SHARED: Mutex<Weak<Server>> = Mutex::new(Weak::new());
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = shared.upgrade() {
        return s;
    }
    let s = Arc::new(Server::start("rgw"));
    *shared = Arc::downgrade(&s);
    s
}

/// A prefix no other test (or earlier run) uses.
fn unique(name: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{name}-{}-{nanos}/", std::process::id())
}

/// Writes objects with boto3 under `prefix` of [`BUCKET`] (creating the
/// bucket if needed): top-level ones, sub-prefixes `a/`, `b/` and a nested
/// `c/d/`, one key with a space, sizes from 1 byte to ~300 KiB. Returns
/// key → size as boto3 reports it back from a HEAD.
fn write_with_boto3(server: &Server, prefix: &str) -> BTreeMap<String, u64> {
    const SCRIPT: &str = r#"
import json, sys
import boto3
bucket, prefix = sys.argv[1], sys.argv[2]
s3 = boto3.client("s3")
try:
    s3.create_bucket(Bucket=bucket)
except s3.exceptions.BucketAlreadyOwnedByYou:
    pass
keys = [f"top-{i}" for i in range(5)] + ["top with space"]
keys += [f"{sub}obj-{i}" for sub in ("a/", "b/", "c/d/") for i in range(8)]
out = {}
for n, k in enumerate(keys):
    size = 1 + (n * 104729) % 300_000
    key = prefix + k
    s3.put_object(Bucket=bucket, Key=key, Body=bytes([n % 251]) * size)
    out[key] = s3.head_object(Bucket=bucket, Key=key)["ContentLength"]
json.dump(out, sys.stdout)
"#;
    let out = run_with_stdin(
        Command::new("bash")
            .arg(repo_root().join("scripts/boto3.sh"))
            .args([BUCKET, prefix])
            .envs(&server.env),
        SCRIPT,
    );
    assert!(
        out.status.success(),
        "boto3 failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written: BTreeMap<String, u64> =
        serde_json::from_slice(&out.stdout).expect("boto3 script prints JSON");
    assert_eq!(written.len(), 30);
    written
}

fn run_with_stdin(cmd: &mut Command, stdin: &str) -> Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().expect("wait")
}

/// An agent process with the RGW's endpoint and credentials in its
/// environment (never in the plan).
fn agent(server: &Server, id: &str, dir: &Path) -> AgentProc {
    let mut spec = AgentSpec::new(id, dir.join(format!("spool-{id}")));
    for (k, v) in &server.env {
        spec = spec.env(k, v);
    }
    spec.start()
}

/// `controller run PLAN` on `agents`, results under `dir/runs`.
fn run_plan(dir: &Path, plan: &str, agents: &[&AgentProc]) -> Output {
    let path = dir.join("plan.yaml");
    std::fs::write(&path, plan).unwrap();
    let addrs: Vec<&str> = agents.iter().map(|a| a.addr.as_str()).collect();
    Command::new(bin("controller"))
        .arg("run")
        .arg(&path)
        .args(["--agents", &addrs.join(","), "--insecure", "--quiet"])
        .arg("--results")
        .arg(dir.join("runs"))
        .output()
        .expect("run controller")
}

#[test]
fn objects_boto3_wrote_are_read_with_their_sizes_by_two_agents() {
    let server = rgw();
    let tmp = tempfile::tempdir().unwrap();
    let prefix = unique("ex");
    let written = write_with_boto3(&server, &prefix);
    let a = agent(&server, "alpha", tmp.path());
    let b = agent(&server, "beta", tmp.path());
    // The second stage reuses the listing the first made.
    let plan = format!(
        "name: existing\ntarget: s3://{BUCKET}\nconcurrency: 4\n\
         objects: {{existing: true, prefix: \"{prefix}\"}}\nstages:\n\
         \x20 - {{name: reads, type: workload, mix: {{get: 4, range_get: 2, stat: 2}}, range: {{size: 4KiB}}, ops: 600}}\n\
         \x20 - {{name: again, type: workload, mix: {{get: 1}}, ops: 200}}\n"
    );
    let out = run_plan(tmp.path(), &plan, &[&a, &b]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = only_run_dir(&tmp.path().join("runs"));
    let t = Tsv::read_zst(&run.join("timeline.tsv.zst"));
    let (op, file, bytes, error, stage, client) = (
        t.col("op"),
        t.col("file"),
        t.col("bytes"),
        t.col("error"),
        t.col("stage"),
        t.col("client_id"),
    );
    assert_eq!(t.rows.len(), 800);
    let mut gets = BTreeMap::<&str, u32>::new();
    for r in &t.rows {
        assert_eq!(r[error], "", "failed op: {r:?}");
        let size = *written
            .get(&r[file])
            .unwrap_or_else(|| panic!("{} is not an object boto3 wrote", r[file]));
        let moved: u64 = r[bytes].parse().unwrap();
        match r[op].as_str() {
            "GET" => {
                assert_eq!(moved, size, "GET of {} moved {moved} bytes", r[file]);
                *gets.entry(r[client].as_str()).or_default() += 1;
            }
            "RANGE_GET" => assert!(moved > 0 && moved <= size.min(4096), "{r:?}"),
            "STAT" | "HEAD" => assert_eq!(moved, 0),
            other => panic!("op {other} in a read-only plan"),
        }
    }
    assert_eq!(gets.keys().copied().collect::<Vec<_>>(), ["alpha", "beta"]);
    let objects: std::collections::BTreeSet<&str> =
        t.rows.iter().map(|r| r[file].as_str()).collect();
    assert!(objects.len() > 20, "{} of 30 objects read", objects.len());
    assert!(objects.contains(format!("{prefix}top with space").as_str()));
    assert_eq!(
        t.rows.iter().filter(|r| r[stage] == "again").count(),
        200,
        "the second stage ran"
    );
    // Each agent listed once (its share), for both stages.
    for p in [&a, &b] {
        let log = p.log_text();
        assert_eq!(
            log.matches(&format!("listed prefix `{prefix}`")).count(),
            1,
            "{log}"
        );
    }
    // run.json reports each agent's listing in the stage that made it:
    // the shares add up to what boto3 wrote, 3 sub-prefixes dealt over 2.
    let meta = chorus_tests::read_json(&run.join("run.json"));
    let listed: Vec<&serde_json::Value> = meta["stages"][0]["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["listing"])
        .collect();
    let share = |k: &str| listed.iter().map(|l| l[k].as_u64().unwrap()).sum::<u64>();
    assert_eq!(share("share_objects"), 30, "{listed:?}");
    assert_eq!(share("share_bytes"), written.values().sum::<u64>());
    assert!(
        listed
            .iter()
            .all(|l| l["subprefixes"] == 3 && l["pages"].as_u64() >= Some(2))
    );
    assert!(
        meta["stages"][1]["agents"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a.get("listing").is_none()),
        "the second stage listed nothing"
    );
}

/// Asserts `out` is a refusal with exit code 2 whose message holds every
/// one of `says`, and that no run directory was written.
fn assert_refused(out: &Output, dir: &Path, says: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for s in says {
        assert!(stderr.contains(s), "`{s}` not in: {stderr}");
    }
    let runs = dir.join("runs");
    assert!(
        !runs.exists() || std::fs::read_dir(&runs).unwrap().next().is_none(),
        "a refused plan wrote results"
    );
}

#[test]
fn an_empty_prefix_is_refused_before_any_stage() {
    let server = rgw();
    let tmp = tempfile::tempdir().unwrap();
    // The bucket exists and holds objects, but not under this prefix.
    write_with_boto3(&server, &unique("full"));
    let a = agent(&server, "alpha", tmp.path());
    let b = agent(&server, "beta", tmp.path());
    let empty = unique("empty");
    let plan = format!(
        "name: empty\ntarget: s3://{BUCKET}\n\
         objects: {{count: 10, size: 1KiB, prefix: \"{empty}w/\"}}\nstages:\n\
         \x20 - {{name: write-first, type: prepare}}\n\
         \x20 - {{name: reads, type: workload, mix: {{get: 1}}, ops: 10, \
         objects: {{existing: true, prefix: \"{empty}\"}}}}\n"
    );
    let out = run_plan(tmp.path(), &plan, &[&a, &b]);
    let expected = format!("prefix `{empty}` of target `s3://{BUCKET}` holds no objects");
    assert_refused(&out, tmp.path(), &["stage `reads`", &expected]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains(server.get("AWS_SECRET_ACCESS_KEY")));
    // Refused before any stage: a run that started has a run directory
    // (`assert_refused` found none), and the agents took no stage.
    for p in [&a, &b] {
        assert!(!p.log_text().contains("listed"), "{}", p.log_text());
    }
}

#[test]
fn verify_writes_and_deletes_without_allow_delete_are_plan_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        (
            "mix: {get: 1}, ops: 1, verify: true",
            "stages[0].verify",
            "did not write those bytes",
        ),
        (
            "mix: {get: 1, delete: 1}, ops: 1",
            "stages[0].mix.delete",
            "allow_delete: true",
        ),
        (
            "mix: {put: 1}, ops: 1",
            "stages[0].mix.put",
            "would replace the bytes",
        ),
    ];
    for (keys, at, says) in cases {
        let plan = format!(
            "name: refused\ntarget: s3://{BUCKET}\nobjects: {{existing: true, prefix: x/}}\n\
             stages:\n  - {{name: s, type: workload, {keys}}}\n"
        );
        let path = tmp.path().join("plan.yaml");
        std::fs::write(&path, &plan).unwrap();
        let validate = Command::new(bin("controller"))
            .arg("validate")
            .arg(&path)
            .output()
            .unwrap();
        assert_refused(&validate, tmp.path(), &[at, says, "plan.yaml:5:"]);
        let run = Command::new(bin("controller"))
            .arg("run")
            .arg(&path)
            .arg("--results")
            .arg(tmp.path().join("runs"))
            .output()
            .unwrap();
        assert_refused(&run, tmp.path(), &[at, says, "plan.yaml:5:"]);
    }
}
