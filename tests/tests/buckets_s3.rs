//! `buckets: N` against a real Ceph RGW, run by the controller (two local
//! agents) and checked from outside with boto3 (`scripts/boto3.sh`): the
//! prepare makes N buckets named from the target's `{n}` and spreads the
//! key space over them; the cleanup empties them and removes them, as
//! Chorus made them.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chorus_tests::s3::boto3;
use chorus_tests::servers::Server;
use chorus_tests::{bin, only_run_dir, read_json, wait_for_stage};

/// Per bucket named in `sys.argv[1:]`: its keys under `run/`, or `null`
/// when HEAD BUCKET says it is not there (404).
const LOOK: &str = r#"
from botocore.exceptions import ClientError
out = {}
for b in sys.argv[1:]:
    try:
        s3.head_bucket(Bucket=b)
    except ClientError as e:
        if e.response["Error"]["Code"] in ("404", "NoSuchBucket", "NotFound"):
            out[b] = None
            continue
        raise
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=b, Prefix="run/"):
        keys += [o["Key"] for o in page.get("Contents", [])]
    out[b] = keys
json.dump(out, sys.stdout)
"#;

const COUNT: usize = 200;

#[test]
fn a_plan_spreads_over_four_buckets_and_cleanup_removes_them() {
    let server = Server::start("rgw");
    let names: Vec<String> = (1..=4).map(|i| format!("chorus-bkt-{i}")).collect();
    let args: Vec<&str> = names.iter().map(String::as_str).collect();
    let tmp = tempfile::tempdir().unwrap();
    let results = tmp.path().join("runs");
    // The workload in the middle holds the run while boto3 looks.
    let plan = format!(
        "name: buckets\ntarget: s3://chorus-bkt-{{n}}/run\nconcurrency: 4\n\
         objects: {{count: {COUNT}, size: 4KiB}}\nstages:\n\
         \x20 - {{name: prepare, type: prepare, buckets: 4}}\n\
         \x20 - {{name: hold, type: workload, buckets: 4, mix: {{get: 1}}, duration: 5s}}\n\
         \x20 - {{name: cleanup, type: cleanup, buckets: 4}}\n"
    );
    let path = tmp.path().join("plan.yaml");
    std::fs::write(&path, plan).unwrap();
    let began = Instant::now();
    let child = Command::new(bin("controller"))
        .args(["run", path.to_str().unwrap(), "--results"])
        .arg(&results)
        .arg("--quiet")
        .envs(&server.env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run controller");
    wait_for_stage(&results, "hold", 1, Duration::from_secs(60));
    let seen = boto3(&server, LOOK, &args);
    let mut all = Vec::new();
    for b in &names {
        let keys: Vec<String> = serde_json::from_value(seen[b].clone())
            .unwrap_or_else(|_| panic!("bucket {b} missing after the prepare: {seen}"));
        // 50 each if even.
        assert!(
            (25..=75).contains(&keys.len()),
            "{b} holds {} of {COUNT}",
            keys.len()
        );
        all.extend(keys);
    }
    all.sort();
    all.dedup();
    assert_eq!(all.len(), COUNT, "the buckets hold every object, once");
    let out = child.wait_with_output().expect("controller ends");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = read_json(&only_run_dir(&results).join("summary.json"));
    assert_eq!(summary["total_errors"], 0, "{summary:#}");
    let seen = boto3(&server, LOOK, &args);
    for b in &names {
        assert!(seen[b].is_null(), "{b} is still there: {seen}");
    }
    eprintln!("run and checks took {:?}", began.elapsed());
}
