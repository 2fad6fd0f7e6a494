//! Objects several times larger than the process that moves them: the
//! real controller (agents embedded) writes one 1 GiB object in parts,
//! reads it back verified (streamed, then as `parallel` ranged GETs), on
//! `file://` and on a real Ceph RGW, and its peak RSS (`/usr/bin/time`'s
//! maximum resident set) stays a fraction of the object. This machine
//! has no cgroup to confine the process, so the bound is measured, not
//! imposed. The timeline shows each part beside its op; the summary
//! counts each object once.

use std::path::{Path, PathBuf};
use std::process::Command;

use chorus_tests::servers::Server;
use chorus_tests::{Tsv, bin, only_run_dir, read_json};

/// The object: large enough that holding it would show in the RSS many
/// times over, small enough for a debug build on 2 cores.
const OBJECT_BYTES: u64 = 1 << 30;

/// The peak RSS must stay under this fraction of the object. The
/// controller with its embedded agents peaks near 100 MiB here
/// (runtimes, histograms, the payload pool, 8 streams x 8 MiB parts);
/// one object in memory would be 1 GiB on its own.
const RSS_FRACTION: u64 = 4;

/// The plan: a prepare that PUTs the object (in 8 MiB parts, 8 at once),
/// a verified GET streamed through the check, a verified `parallel` GET,
/// then cleanup.
fn plan(target: &str) -> String {
    format!(
        "name: large\n\
         seed: 11\n\
         target: {target}\n\
         concurrency: 1\n\
         objects: {{prefix: big/, count: 1, size: {OBJECT_BYTES}}}\n\
         stages:\n\
         \x20 - {{name: write, type: prepare, part_size: 8MiB, parallel: {{part: 8MiB, streams: 8}}}}\n\
         \x20 - {{name: read, type: workload, mix: {{get: 1}}, ops: 1, verify: true}}\n\
         \x20 - {{name: pread, type: workload, mix: {{get: 1}}, ops: 1, verify: true, \
         parallel: {{part: 8MiB, streams: 8}}}}\n\
         \x20 - {{name: cleanup, type: cleanup}}\n"
    )
}

/// Runs `plan` under `/usr/bin/time` with `env` on the controller only;
/// returns the run directory and the peak RSS in bytes.
fn run_measured(dir: &Path, plan: &str, env: &[(&str, &str)]) -> (PathBuf, u64) {
    let path = dir.join("plan.yaml");
    std::fs::write(&path, plan).unwrap();
    let results = dir.join("runs");
    let rss_file = dir.join("rss");
    let out = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&rss_file)
        .arg(bin("controller"))
        .args(["run", path.to_str().unwrap(), "--quiet", "--results"])
        .arg(&results)
        .envs(env.iter().copied())
        .output()
        .expect("run controller under /usr/bin/time");
    assert!(
        out.status.success(),
        "controller failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let kib: u64 = std::fs::read_to_string(&rss_file)
        .unwrap()
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .expect("/usr/bin/time wrote the peak RSS in KiB");
    (only_run_dir(&results), kib * 1024)
}

/// One stage's op count from summary.json (its `op` row).
fn summary_count(run: &Path, stage: &str, op: &str) -> u64 {
    let s = read_json(&run.join("summary.json"));
    let st = s["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == stage)
        .unwrap_or_else(|| panic!("no stage {stage}"));
    st["ops"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["op"] == op)
        .map_or(0, |r| r["count"].as_u64().unwrap())
}

/// Checks the run: no errors, each stage's one op with its parts in the
/// timeline, the summary counting objects; returns the most `PUT_PART`s
/// in flight at once.
fn check_run(run: &Path, rss: u64) -> usize {
    assert!(
        rss * RSS_FRACTION < OBJECT_BYTES,
        "peak RSS {} MiB is over 1/{RSS_FRACTION} of the {} MiB object",
        rss >> 20,
        OBJECT_BYTES >> 20
    );
    let t = Tsv::read_zst(&run.join("timeline.tsv.zst"));
    let (op, stage, bytes, error) = (t.col("op"), t.col("stage"), t.col("bytes"), t.col("error"));
    let errors: Vec<_> = t.rows.iter().filter(|r| !r[error].is_empty()).collect();
    assert!(errors.is_empty(), "errors: {errors:?}");
    let rows = |s: &str, o: &str| -> Vec<&Vec<String>> {
        t.rows
            .iter()
            .filter(|r| r[stage] == s && r[op] == o)
            .collect()
    };
    let parts = OBJECT_BYTES.div_ceil(8 << 20) as usize;
    for (s, o, p) in [("write", "PUT", "PUT_PART"), ("pread", "GET", "GET_PART")] {
        let ops = rows(s, o);
        assert_eq!(ops.len(), 1, "{s}: one {o}");
        assert_eq!(ops[0][bytes], OBJECT_BYTES.to_string());
        let ps = rows(s, p);
        assert_eq!(ps.len(), parts, "{s}: {p} records");
        let sum: u64 = ps.iter().map(|r| r[bytes].parse::<u64>().unwrap()).sum();
        assert_eq!(sum, OBJECT_BYTES, "{s}: parts add up to the object");
        assert_eq!(
            summary_count(run, s, o),
            1,
            "{s}: the summary counts the object once"
        );
        assert_eq!(summary_count(run, s, p), 0, "{s}: parts are not ops");
    }
    // `analyze` gives the parts a latency row and counts the object once.
    let out = Command::new(bin("controller"))
        .args(["analyze", "--json", run.to_str().unwrap()])
        .output()
        .expect("run controller analyze");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let a: serde_json::Value = serde_json::from_slice(&out.stdout).expect("analyze --json");
    let pread = a["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "pread")
        .expect("stage pread analyzed");
    let count = |key: &str| {
        pread["ops"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["key"] == key)
            .map_or(0, |r| r["count"].as_u64().unwrap())
    };
    assert_eq!(
        (count("GET"), count("GET_PART"), count("ALL")),
        (1, parts as u64, 1)
    );
    // The streamed (not parallel) GET is one request: no parts.
    assert_eq!(rows("read", "GET").len(), 1);
    assert!(rows("read", "GET_PART").is_empty());
    // Most parts in flight at once: sweep the parts' starts and ends.
    let (start, end) = (t.col("start"), t.col("end"));
    let mut edges: Vec<(String, i32)> = rows("write", "PUT_PART")
        .iter()
        .flat_map(|r| [(r[start].clone(), 1), (r[end].clone(), -1)])
        .collect();
    // RFC 3339 times of one width sort as text; ends before starts at a tie.
    edges.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, d) in edges {
        now += d;
        most = most.max(now);
    }
    most as usize
}

#[test]
fn a_file_object_many_times_the_peak_rss_is_written_and_verified() {
    let tmp = tempfile::tempdir().unwrap();
    let target = format!("file://{}", tmp.path().join("data").display());
    let (run, rss) = run_measured(tmp.path(), &plan(&target), &[]);
    eprintln!(
        "file://: peak RSS {} MiB for a {} MiB object",
        rss >> 20,
        OBJECT_BYTES >> 20
    );
    check_run(&run, rss);
}

#[test]
fn an_rgw_object_moves_in_concurrent_parts_and_ranges_that_verify() {
    let server = Server::start("rgw");
    let tmp = tempfile::tempdir().unwrap();
    let env: Vec<(&str, &str)> = [
        "AWS_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_REGION",
    ]
    .iter()
    .map(|k| (*k, server.get(k)))
    .collect();
    let (run, rss) = run_measured(tmp.path(), &plan("s3://chorus-large/t"), &env);
    eprintln!(
        "s3:// (RGW): peak RSS {} MiB for a {} MiB object",
        rss >> 20,
        OBJECT_BYTES >> 20
    );
    let most = check_run(&run, rss);
    // Eight streams against a real server: parts overlapped.
    assert!(
        most > 1,
        "upload parts never overlapped (at most {most} at once)"
    );
}
