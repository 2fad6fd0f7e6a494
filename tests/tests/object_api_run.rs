//! The object API's ops end to end: plans shaped like
//! `examples/object-api.yaml` and `examples/object-api-append.yaml` run by
//! the real `controller` (two embedded agents) against a real Ceph RGW,
//! what they did read from the run's merged timeline and checked from
//! outside with boto3 (`scripts/boto3.sh`): a bucket made with object lock
//! and versioning, governance retention, the plan's tags, copies with
//! their sources' bytes, versions made by puts, appends that add up, and
//! cleanups that leave nothing (every version and delete marker, on a
//! versioned bucket). A stage with `versioning: true` on a bucket that
//! keeps none fails before it runs an op, naming the bucket.
//!
//! Each plan runs without its cleanup first, so boto3 sees what the ops
//! left; the cleanup then runs as a plan of its own (a cleanup-only plan
//! removes the whole key space). Each test has its own bucket, removed
//! with every version in it (bypassing governance retention) when the
//! test ends, pass or fail. RGW is shared as in `store_s3.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{SystemTime, UNIX_EPOCH};

use chorus_tests::s3::{TestBucket, shared_rgw};
use chorus_tests::servers::Server;
use chorus_tests::{Tsv, bin, only_run_dir, read_json, rfc3339_to_ns};
use serde_json::Value;

/// Objects of each plan, and their size.
const OBJECTS: u64 = 20;
const SIZE: u64 = 4096;

/// `controller run` of `plan` (two embedded agents, the RGW's endpoint and
/// credentials in the controller's environment only) into
/// `dir/<name>/`; returns its output and that results directory.
fn run_plan(server: &Server, dir: &Path, name: &str, plan: &str) -> (Output, PathBuf) {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, plan).unwrap();
    let results = dir.join(name);
    let out = Command::new(bin("controller"))
        .arg("run")
        .arg(&path)
        .arg("--results")
        .arg(&results)
        .arg("--quiet")
        .envs(&server.env)
        .output()
        .expect("run controller");
    (out, results)
}

/// [`run_plan`] that must succeed; returns the run directory.
fn run_ok(server: &Server, dir: &Path, name: &str, plan: &str) -> PathBuf {
    let (out, results) = run_plan(server, dir, name, plan);
    assert!(
        out.status.success(),
        "{name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    only_run_dir(&results)
}

/// The timeline's records as maps of column to value.
fn timeline(run: &Path) -> Vec<BTreeMap<String, String>> {
    let t = Tsv::read_zst(&run.join("timeline.tsv.zst"));
    t.rows
        .iter()
        .map(|r| t.header.iter().cloned().zip(r.iter().cloned()).collect())
        .collect()
}

/// Records of op `op` (log name) in `rows`.
fn of<'a>(rows: &'a [BTreeMap<String, String>], op: &str) -> Vec<&'a BTreeMap<String, String>> {
    rows.iter().filter(|r| r["op"] == op).collect()
}

/// Asserts no record of `rows` failed; says how many of each op kind did,
/// and what was done to the first failure's key, in start order.
fn assert_no_errors(rows: &[&BTreeMap<String, String>]) {
    let mut failed = BTreeMap::<&str, u64>::new();
    for r in rows.iter().filter(|r| !r["error"].is_empty()) {
        *failed.entry(r["op"].as_str()).or_default() += 1;
    }
    let Some(first) = rows.iter().find(|r| !r["error"].is_empty()) else {
        return;
    };
    let key = first["file"].split([' ', '?']).next().unwrap_or_default();
    let base = key.trim_end_matches(".copy").trim_end_matches(".append");
    let history: Vec<String> = rows
        .iter()
        .filter(|r| r["file"].contains(base))
        .map(|r| {
            format!(
                "{} {} {} {} {}",
                r["start"], r["client_id"], r["op"], r["file"], r["error"]
            )
        })
        .collect();
    panic!(
        "failed ops by kind: {failed:?}\nfirst: {first:?}\nops naming {base}:\n{}",
        history.join("\n")
    );
}

/// The row of op `op` in the summary of stage `stage`.
fn summary_row(run: &Path, stage: &str, op: &str) -> Value {
    let summary = read_json(&run.join("summary.json"));
    let s = summary["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == stage)
        .unwrap_or_else(|| panic!("no stage `{stage}` in {summary:#}"))
        .clone();
    s["ops"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["op"] == op)
        .unwrap_or_else(|| panic!("no {op} row in stage `{stage}`: {s:#}"))
        .clone()
}

/// A cleanup-only plan of the key space `prefix` of `bucket`.
fn cleanup_plan(bucket: &str, prefix: &str, versioning: bool) -> String {
    format!(
        "name: api-cleanup\ntarget: s3://{bucket}/{prefix}\nconcurrency: 2\n\
         objects: {{count: {OBJECTS}, size: {SIZE}}}\nstages:\n\
         \x20 - {{name: cleanup, type: cleanup, versioning: {versioning}}}\n"
    )
}

/// Checks the cleanup run `run` removed exactly `listed` objects (or
/// versions) in DELETE_BATCH ops, as its timeline, summary.json and
/// summary.txt all say.
fn assert_cleanup_removed(run: &Path, listed: usize) {
    let rows = timeline(run);
    assert!(!rows.is_empty(), "the cleanup logged nothing");
    for r in &rows {
        assert_eq!(r["error"], "", "failed op: {r:?}");
        assert_eq!(r["op"], "DELETE_BATCH", "{r:?}");
    }
    let removed: u64 = rows
        .iter()
        .map(|r| r["n_objects"].parse::<u64>().unwrap())
        .sum();
    assert_eq!(
        removed, listed as u64,
        "the cleanup's batches named every one boto3 listed"
    );
    let row = summary_row(run, "cleanup", "DELETE_BATCH");
    assert_eq!(row["objects"], removed, "{row:#}");
    assert_eq!(row["errors"], 0, "{row:#}");
    assert!(row["objects_per_s"].as_f64().unwrap() > 0.0, "{row:#}");
    let text = std::fs::read_to_string(run.join("summary.txt")).unwrap();
    assert!(
        text.contains(&format!("DELETE_BATCH: {removed} objects, ")) && text.contains("objects/s"),
        "{text}"
    );
}

#[test]
fn versions_tags_retention_copies_and_batches_then_a_versioned_cleanup() {
    let server = shared_rgw();
    let bucket = TestBucket::new(&server, "oar-api");
    let tmp = tempfile::tempdir().unwrap();
    let b = &bucket.name;
    // The example's stages but small, and no cleanup yet. Batches of 3 so
    // a delete_batch leaves objects for the other ops. One worker on each
    // agent's own keys: no op races another's delete of its key (a read
    // then fails not_found, as in any mix with deletes), so every error
    // is a fault.
    let plan = format!(
        "name: object-api\ntarget: s3://{b}/run\nconcurrency: 1\n\
         objects: {{count: {OBJECTS}, size: {SIZE}, partition: agent}}\nstages:\n\
         \x20 - {{name: prepare, type: prepare, versioning: true}}\n\
         \x20 - name: api\n\
         \x20   type: workload\n\
         \x20   ops: 200\n\
         \x20   verify: true\n\
         \x20   versioning: true\n\
         \x20   batch: 3\n\
         \x20   tags: {{team: storage, run: e2e}}\n\
         \x20   retention: 1h\n\
         \x20   mix: {{get: 30, put: 15, copy: 10, tag: 8, get_tags: 8, retention: 5, \
         get_version: 10, list_versions: 4, delete_version: 5, delete_batch: 3}}\n"
    );
    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let run = run_ok(&server, tmp.path(), "api", &plan);
    let rows = timeline(&run);
    let api: Vec<BTreeMap<String, String>> =
        rows.into_iter().filter(|r| r["stage"] == "api").collect();
    assert_eq!(api.len(), 200, "every op logged once");
    assert_no_errors(&api.iter().collect::<Vec<_>>());
    for op in [
        "GET",
        "PUT",
        "COPY",
        "TAG",
        "GET_TAGS",
        "RETENTION",
        "GET_VERSION",
        "LIST_VERSIONS",
        "DELETE_VERSION",
        "DELETE_BATCH",
    ] {
        assert!(!of(&api, op).is_empty(), "no {op} in 200 ops");
    }

    // What the ops named, for boto3 to look at.
    let copies: BTreeSet<(String, String)> = of(&api, "COPY")
        .iter()
        .map(|r| {
            let (src, dst) = r["file"].split_once(" -> ").expect("copy names src -> dst");
            assert_eq!(dst, format!("{src}.copy"));
            assert_eq!(r["bytes"], SIZE.to_string());
            (src.to_string(), dst.to_string())
        })
        .collect();
    // A tag or retention is on the version current at the time: checked
    // on keys none of whose versions a delete_version removed after it.
    let deleted_after = |key: &str, start: i64| {
        of(&api, "DELETE_VERSION").iter().any(|d| {
            d["file"].split_once("?versionId=").map(|(k, _)| k) == Some(key)
                && rfc3339_to_ns(&d["end"]) >= start
        })
    };
    let kept = |op: &str| -> BTreeSet<&str> {
        of(&api, op)
            .iter()
            .filter(|r| !deleted_after(&r["file"], rfc3339_to_ns(&r["start"])))
            .map(|r| r["file"].as_str())
            .collect()
    };
    let (tagged, retained) = (kept("TAG"), kept("RETENTION"));
    assert!(
        !tagged.is_empty() && !retained.is_empty(),
        "{tagged:?} {retained:?}"
    );
    for r in of(&api, "GET_VERSION") {
        assert!(r["file"].contains("?versionId="), "{r:?}");
        assert_eq!(r["bytes"], SIZE.to_string(), "{r:?}");
    }
    for r in of(&api, "DELETE_BATCH") {
        let n: u64 = r["n_objects"].parse().unwrap();
        assert!((1..=3).contains(&n), "a batch of {n}: {r:?}");
    }

    // From outside: the bucket Chorus made keeps versions under object
    // lock; the retention ops left governance retention an hour ahead on
    // a version of each key they name; the tag ops, the plan's tags; each
    // copy has its source's bytes (every version of a key has the same
    // bytes: they are made from the key).
    const CHECK: &str = r#"
import hashlib
bucket = sys.argv[1]
want = json.loads(sys.argv[2])
out = {
    "versioning": s3.get_bucket_versioning(Bucket=bucket).get("Status"),
    "lock": s3.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"].get("ObjectLockEnabled"),
}
def versions(key):
    vs = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=key):
        vs += [v for v in page.get("Versions", []) if v["Key"] == key]
    return vs
def retention(key, vid):
    try:
        r = s3.get_object_retention(Bucket=bucket, Key=key, VersionId=vid)["Retention"]
        return [r["Mode"], int(r["RetainUntilDate"].timestamp())]
    except s3.exceptions.ClientError:
        return None
out["retention"] = {k: [retention(k, v["VersionId"]) for v in versions(k)] for k in want["retained"]}
out["tags"] = {
    k: [sorted([t["Key"], t["Value"]] for t in s3.get_object_tagging(Bucket=bucket, Key=k, VersionId=v["VersionId"])["TagSet"]) for v in versions(k)]
    for k in want["tagged"]
}
def digest(key):
    vs = versions(key)
    if not vs:
        return None
    latest = next((v for v in vs if v["IsLatest"]), vs[0])
    body = s3.get_object(Bucket=bucket, Key=key, VersionId=latest["VersionId"])["Body"].read()
    return [hashlib.sha256(body).hexdigest(), len(body)]
out["copies"] = [[digest(src), digest(dst)] for src, dst in want["copies"]]
json.dump(out, sys.stdout)
"#;
    // The timeline names keys under the target's prefix; boto3, in the
    // bucket.
    let full = |k: &str| format!("run/{k}");
    let want = serde_json::json!({
        "retained": retained.iter().map(|k| full(k)).collect::<Vec<_>>(),
        "tagged": tagged.iter().map(|k| full(k)).collect::<Vec<_>>(),
        "copies": copies.iter().map(|(s, d)| [full(s), full(d)]).collect::<Vec<_>>(),
    });
    let got = bucket.boto3(CHECK, &[&want.to_string()]);
    assert_eq!(got["versioning"], "Enabled", "{got:#}");
    assert_eq!(got["lock"], "Enabled", "{got:#}");
    let hour_ahead = started + 3600;
    for (key, per_version) in got["retention"].as_object().unwrap() {
        let governed = per_version.as_array().unwrap().iter().any(|r| {
            r[0] == "GOVERNANCE"
                && r[1]
                    .as_u64()
                    .is_some_and(|t| (hour_ahead..hour_ahead + 300).contains(&t))
        });
        assert!(
            governed,
            "no version of {key} under governance retention for 1h: {per_version}"
        );
    }
    let plan_tags = serde_json::json!([["run", "e2e"], ["team", "storage"]]);
    for (key, per_version) in got["tags"].as_object().unwrap() {
        assert!(
            per_version.as_array().unwrap().contains(&plan_tags),
            "no version of {key} has the plan's tags: {per_version}"
        );
    }
    assert_eq!(got["copies"].as_array().unwrap().len(), copies.len());
    let mut compared = 0;
    for ((src, dst), pair) in copies.iter().zip(got["copies"].as_array().unwrap()) {
        assert!(pair[1].is_array(), "{dst} is missing: {pair}");
        assert_eq!(pair[1][1], SIZE, "{dst}: {pair}");
        // A source whose every version a delete_version removed since has
        // no bytes left to compare.
        if !pair[0].is_null() {
            assert_eq!(pair[0], pair[1], "{dst} has other bytes than {src}");
            compared += 1;
        }
    }
    assert!(compared > 0, "no copy's source left: {}", got["copies"]);

    // Puts made versions: more of them than objects.
    let before = bucket.versions("run/");
    let keys: BTreeSet<&str> = before.iter().map(|v| v.key.as_str()).collect();
    let contents = before.iter().filter(|v| !v.delete_marker).count();
    assert!(
        contents > keys.len(),
        "{contents} versions of {} keys",
        keys.len()
    );
    assert!(keys.iter().any(|k| k.ends_with(".copy")));
    // The delete_batch ops left delete markers.
    assert!(before.iter().any(|v| v.delete_marker), "no delete marker");

    // The versioned cleanup: every version and delete marker goes, past
    // governance retention, in DELETE_BATCH ops that say how many.
    let run = run_ok(
        &server,
        tmp.path(),
        "cleanup",
        &cleanup_plan(b, "run", true),
    );
    let left = bucket.versions("run/");
    assert_eq!(left, vec![], "versions left behind");
    assert_cleanup_removed(&run, before.len());
}

#[test]
fn appends_and_copies_on_an_unversioned_bucket_then_a_plain_cleanup() {
    let server = shared_rgw();
    let bucket = TestBucket::new(&server, "oar-append");
    let tmp = tempfile::tempdir().unwrap();
    let b = &bucket.name;
    // Four workers on each agent's own keys: appends to one object from
    // two workers at once take turns (RGW refuses an append at a stale
    // end), so none fails.
    let plan = format!(
        "name: object-api-append\ntarget: s3://{b}/app\nconcurrency: 4\n\
         objects: {{count: {OBJECTS}, size: {SIZE}, partition: agent}}\nstages:\n\
         \x20 - {{name: prepare, type: prepare}}\n\
         \x20 - {{name: append, type: workload, ops: 120, verify: true, \
         mix: {{append: 4, copy: 2, get: 2}}}}\n"
    );
    let run = run_ok(&server, tmp.path(), "append", &plan);
    let rows = timeline(&run);
    let work: Vec<&BTreeMap<String, String>> =
        rows.iter().filter(|r| r["stage"] == "append").collect();
    assert_eq!(work.len(), 120);
    assert_no_errors(&work);
    // Appends per `<key>.append`, as logged.
    let mut appended = BTreeMap::<String, u64>::new();
    for r in work.iter().filter(|r| r["op"] == "APPEND") {
        assert!(r["file"].ends_with(".append"), "{r:?}");
        assert_eq!(r["bytes"], SIZE.to_string());
        // Under the target's prefix, as boto3 names it.
        *appended.entry(format!("app/{}", r["file"])).or_default() += 1;
    }
    assert!(!appended.is_empty());
    assert!(
        appended.values().any(|&n| n > 1),
        "some object appended to more than once: {appended:?}"
    );
    let copies: BTreeSet<String> = work
        .iter()
        .filter(|r| r["op"] == "COPY")
        .map(|r| format!("app/{}", r["file"].split_once(" -> ").unwrap().1))
        .collect();
    assert!(!copies.is_empty());

    const SIZES: &str = r#"
bucket, prefix = sys.argv[1], sys.argv[2]
out = {}
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
    out.update({o["Key"]: o["Size"] for o in page.get("Contents", [])})
json.dump(out, sys.stdout)
"#;
    let sizes: BTreeMap<String, u64> =
        serde_json::from_value(bucket.boto3(SIZES, &["app/"])).unwrap();
    let on_server: BTreeMap<&str, u64> = sizes
        .iter()
        .filter(|(k, _)| k.ends_with(".append"))
        .map(|(k, &s)| (k.as_str(), s))
        .collect();
    // Each `.append` object is its appends end to end, never one
    // overwritten: a multiple of the object size, as many as were logged.
    let logged: BTreeMap<&str, u64> = appended
        .iter()
        .map(|(k, &n)| (k.as_str(), n * SIZE))
        .collect();
    assert_eq!(on_server, logged, "sizes boto3 sees, key by key");
    assert!(on_server.values().all(|s| s % SIZE == 0));
    for c in &copies {
        assert_eq!(sizes.get(c), Some(&SIZE), "{c}");
    }
    assert_eq!(
        sizes.len(),
        OBJECTS as usize + copies.len() + appended.len(),
        "{sizes:?}"
    );

    // A plain cleanup removes objects, copies and appends alike.
    let run = run_ok(
        &server,
        tmp.path(),
        "cleanup",
        &cleanup_plan(b, "app", false),
    );
    let left: BTreeMap<String, u64> =
        serde_json::from_value(bucket.boto3(SIZES, &["app/"])).unwrap();
    assert_eq!(left, BTreeMap::new(), "objects left behind");
    assert_cleanup_removed(&run, sizes.len());
}

#[test]
fn versioning_on_a_bucket_that_keeps_none_fails_before_the_stage() {
    let server = shared_rgw();
    let bucket = TestBucket::new(&server, "oar-plain");
    let tmp = tempfile::tempdir().unwrap();
    let b = &bucket.name;
    const CREATE: &str = r#"
s3.create_bucket(Bucket=sys.argv[1])
json.dump(s3.get_bucket_versioning(Bucket=sys.argv[1]).get("Status"), sys.stdout)
"#;
    assert_eq!(bucket.boto3(CREATE, &[]), Value::Null, "made unversioned");

    // A plain prepare writes the objects; a plan whose workload has
    // `versioning: true` then stops before its first op. (In one plan the
    // prepare itself would refuse the bucket: a prepare before a stage
    // that keeps versions readies the bucket for them.)
    let prepare = format!(
        "name: plain\ntarget: s3://{b}/w\nconcurrency: 2\n\
         objects: {{count: {OBJECTS}, size: {SIZE}}}\nstages:\n\
         \x20 - {{name: prepare, type: prepare}}\n"
    );
    let (out, _) = run_plan(&server, tmp.path(), "plain-prepare", &prepare);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan = format!(
        "name: unversioned\ntarget: s3://{b}/w\nconcurrency: 2\n\
         objects: {{count: {OBJECTS}, size: {SIZE}}}\nstages:\n\
         \x20 - {{name: versions, type: workload, ops: 50, versioning: true, \
         mix: {{put: 1, get_version: 1}}}}\n"
    );
    let (out, results) = run_plan(&server, tmp.path(), "workload", &plan);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the run succeeded: {stderr}");
    for says in [
        "stage `versions` has `versioning: true`",
        &format!("s3://{b}/w"),
        "keeps no versions",
        "put-bucket-versioning",
    ] {
        assert!(stderr.contains(says), "`{says}` not in: {stderr}");
    }
    let run = only_run_dir(&results);
    let meta = read_json(&run.join("run.json"));
    assert_eq!(meta["status"], "failed", "{meta:#}");
    assert!(
        meta["error"]
            .as_str()
            .is_some_and(|e| e.contains("keeps no versions")),
        "{meta:#}"
    );
    let rows = timeline(&run);
    assert!(
        rows.iter().all(|r| r["stage"] != "versions"),
        "the stage ran ops"
    );

    // A prepare with `versioning: true` on that bucket: refused when it
    // readies the bucket, before it writes.
    let plan = format!(
        "name: unversioned-prepare\ntarget: s3://{b}/p\nconcurrency: 2\n\
         objects: {{count: {OBJECTS}, size: {SIZE}}}\nstages:\n\
         \x20 - {{name: prepare, type: prepare, versioning: true}}\n"
    );
    let (out, results) = run_plan(&server, tmp.path(), "prepare", &plan);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the run succeeded: {stderr}");
    for says in [&format!("bucket `{b}`"), "versioning off"] {
        assert!(stderr.contains(says), "`{says}` not in: {stderr}");
    }
    let run = only_run_dir(&results);
    assert_eq!(read_json(&run.join("run.json"))["status"], "failed");
    assert!(timeline(&run).is_empty(), "the prepare wrote");
    // Chorus changed nothing: versioning is still off, and nothing is
    // under the second plan's prefix.
    const STATE: &str = r#"
bucket = sys.argv[1]
json.dump([s3.get_bucket_versioning(Bucket=bucket).get("Status"),
           s3.list_objects_v2(Bucket=bucket, Prefix="p/").get("KeyCount", 0)], sys.stdout)
"#;
    assert_eq!(bucket.boto3(STATE, &[]), serde_json::json!([null, 0]));
}
