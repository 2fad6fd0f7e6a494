//! `controller merge`, `analyze` and `compare` on real runs (embedded agents,
//! file:// target) and on synthetic and warp-style op-logs.

use std::io::Write;
use std::path::{Path, PathBuf};

use chorus_tests::{Tsv, controller, only_run_dir, read_json};
use serde_json::Value;

/// A small plan with a warm-up, so analyze must skip warm-up records.
const PLAN: &str = "name: analyze-test
seed: 7
target: TARGET
concurrency: 3
objects:
  prefix: an/
  count: 300
  size: 8KiB
stages:
  - name: prepare
    type: prepare
  - name: mixed
    type: workload
    warmup: 300ms
    mix:
      get: 70
      put: 20
      stat: 10
    duration: 1500ms
";

/// Runs [`PLAN`] once and returns the run directory (inside `tmp`).
fn run_plan(tmp: &Path) -> PathBuf {
    let plan = tmp.join("plan.yaml");
    let target = format!("file://{}", tmp.join("data").display());
    std::fs::write(&plan, PLAN.replace("TARGET", &target)).unwrap();
    let results = tmp.join("runs");
    let out = controller(&[
        "run",
        plan.to_str().unwrap(),
        "--results",
        results.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(
        out.status.success(),
        "run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    only_run_dir(&results)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Records of an op-log (plain or zstd TSV, or an agent's spool read as
/// its TSV text), comment lines left out.
fn records(path: &Path) -> Vec<Vec<String>> {
    let bytes = std::fs::read(path).unwrap();
    let text = if chorus_common::oplog::is_spool(path).unwrap() {
        let mut t = String::new();
        std::io::Read::read_to_string(
            &mut chorus_common::oplog::open_log_text(path).unwrap(),
            &mut t,
        )
        .unwrap();
        t
    } else if bytes.starts_with(&[0x28, 0xB5, 0x2F, 0xFD]) {
        String::from_utf8(zstd::decode_all(&bytes[..]).unwrap()).unwrap()
    } else {
        String::from_utf8(bytes).unwrap()
    };
    text.lines()
        .skip(1)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split('\t').map(String::from).collect())
        .collect()
}

fn gen_oplog(out: &Path, records: u64, client: &str, seed: u64) {
    let o = controller(&[
        "gen-oplog",
        "-o",
        s(out),
        "--records",
        &records.to_string(),
        "--client",
        client,
        "--seed",
        &seed.to_string(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// Asserts the merged file is sorted by (start, client_id, idx).
fn assert_sorted(t: &Tsv) {
    let c = |n: &str| t.header.iter().position(|h| h == n).unwrap();
    let (start, client, idx) = (c("start"), c("client_id"), c("idx"));
    let key = |r: &Vec<String>| {
        (
            r[start].clone(),
            r[client].clone(),
            r[idx].parse::<u64>().unwrap(),
        )
    };
    for w in t.rows.windows(2) {
        assert!(
            key(&w[0]) <= key(&w[1]),
            "not sorted: {:?} > {:?}",
            w[0],
            w[1]
        );
    }
}

#[test]
fn merge_keeps_every_record_and_sorts() {
    let tmp = tempfile::tempdir().unwrap();
    let run = run_plan(tmp.path());
    let mut inputs: Vec<PathBuf> = Vec::new();
    // The real agents' logs of the run.
    for agent in std::fs::read_dir(run.join("agents")).unwrap() {
        for f in std::fs::read_dir(agent.unwrap().path()).unwrap() {
            inputs.push(f.unwrap().path());
        }
    }
    // Two synthetic logs in completion order (unsorted starts).
    for (i, n) in [(0u64, 30_000u64), (1, 12_345)] {
        let p = tmp.path().join(format!("gen{i}.tsv.zst"));
        gen_oplog(&p, n, &format!("gen-{i}"), i + 1);
        inputs.push(p);
    }
    // A warp-style 13-column log: no stage column, local offsets, HEAD, a
    // zero first byte, a comment line, zstd-compressed.
    let warp = tmp.path().join("warp.csv.zst");
    let text = "idx\tthread\top\tclient_id\tn_objects\tbytes\tendpoint\tfile\terror\tstart\tfirst_byte\tend\tduration_ns\n\
0\t3\tGET\twarp1\t1\t4096\thttp://h:9000\tb/o1\t\t2026-11-23T22:56:45.1+01:00\t2026-11-23T22:56:45.15+01:00\t2026-11-23T22:56:45.2+01:00\t100000000\n\
1\t4\tHEAD\twarp1\t1\t0\thttp://h:9000\tb/o2\t\t2026-11-23T21:56:45+00:00\t0001-01-01T00:00:00Z\t2026-11-23T21:56:45.0000025Z\t2500\n\
2\t4\tPUT\twarp1\t1\t10\thttp://h:9000\tb/o3\t\t2026-11-23T21:56:44.5Z\t\t2026-11-23T21:56:44.6Z\t100000000\n\
# warp get --duration 1m\n";
    let mut enc = zstd::Encoder::new(std::fs::File::create(&warp).unwrap(), 3).unwrap();
    enc.write_all(text.as_bytes()).unwrap();
    enc.finish().unwrap();
    inputs.push(warp);

    let expected: usize = inputs.iter().map(|p| records(p).len()).sum();
    let out_path = tmp.path().join("merged.tsv.zst");
    let mut args = vec!["merge".to_string()];
    args.extend(inputs.iter().map(|p| s(p).to_string()));
    args.extend(["-o".into(), s(&out_path).into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = controller(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("records in {expected}, records out {expected}")),
        "{stdout}"
    );
    let merged = Tsv::read_zst(&out_path);
    assert_eq!(merged.rows.len(), expected);
    assert_sorted(&merged);
    let client = merged.header.iter().position(|h| h == "client_id").unwrap();
    let warp_rows = merged.rows.iter().filter(|r| r[client] == "warp1").count();
    assert_eq!(warp_rows, 3);
    // No temp files left next to the output.
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".chorus-merge") || n.ends_with(".partial"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn merge_of_truncated_input_names_file_and_line_and_keeps_records() {
    let tmp = tempfile::tempdir().unwrap();
    let whole = tmp.path().join("whole.tsv.zst");
    gen_oplog(&whole, 20_000, "whole", 1);
    let full = tmp.path().join("full.tsv.zst");
    gen_oplog(&full, 200_000, "cut", 2);
    let bytes = std::fs::read(&full).unwrap();
    let cut = tmp.path().join("cut.tsv.zst");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();

    let out_path = tmp.path().join("merged.tsv.zst");
    let out = controller(&["merge", s(&whole), s(&cut), "-o", s(&out_path)]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    // `<path>:<line>: truncated or corrupt zstd stream: ...`
    let prefix = format!("{}:", cut.display());
    let at = stderr.find(&prefix).unwrap_or_else(|| panic!("{stderr}"));
    let line: u64 = stderr[at + prefix.len()..]
        .split(':')
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("no line number: {stderr}"));
    assert!(stderr.contains("zstd"), "{stderr}");

    // Every record before the damage (the header is line 1, the damaged
    // line is `line`) is in the output, in order, with the whole file.
    let before = line - 2;
    assert!(before > 0 && before < 200_000, "{stderr}");
    let merged = Tsv::read_zst(&out_path);
    assert_eq!(merged.rows.len() as u64, 20_000 + before);
    assert_sorted(&merged);
    let client = merged.header.iter().position(|h| h == "client_id").unwrap();
    let idx = merged.header.iter().position(|h| h == "idx").unwrap();
    let mut cut_idx: Vec<u64> = merged
        .rows
        .iter()
        .filter(|r| r[client] == "cut")
        .map(|r| r[idx].parse().unwrap())
        .collect();
    cut_idx.sort_unstable();
    assert_eq!(cut_idx, (0..before).collect::<Vec<_>>());

    let help = controller(&["merge", "--help"]);
    assert!(String::from_utf8_lossy(&help.stdout).contains("Exit code 1"));
}

/// Within histogram precision: 0.1% or 1 µs.
fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= (a.abs() * 0.001).max(1.0)
}

#[test]
fn analyze_agrees_with_summary_and_compare_with_itself_is_no_change() {
    let tmp = tempfile::tempdir().unwrap();
    let run = run_plan(tmp.path());
    let summary = read_json(&run.join("summary.json"));
    let out = controller(&["analyze", s(&run), "--json", "--segment", "250ms"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let a: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        a["warmup_skipped"].as_u64().unwrap() > 0,
        "the plan has a warm-up"
    );
    let stages = a["stages"].as_array().unwrap();
    let mut compared = 0;
    for st in summary["stages"].as_array().unwrap() {
        let name = st["name"].as_str().unwrap();
        let mine = stages
            .iter()
            .find(|x| x["name"] == name)
            .unwrap_or_else(|| panic!("stage {name} missing"));
        for op in st["ops"].as_array().unwrap() {
            let row = mine["ops"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["key"] == op["op"])
                .unwrap_or_else(|| panic!("{name} {} missing", op["op"]));
            for k in ["count", "errors", "bytes"] {
                assert_eq!(row[k], op[k], "{name} {} {k}", op["op"]);
            }
            for k in ["mean", "p50", "p90", "p99", "p999", "max"] {
                let (x, y) = (
                    row["latency_us"][k].as_f64().unwrap(),
                    op["latency_us"][k].as_f64().unwrap(),
                );
                assert!(
                    close(x, y),
                    "{name} {} {k}: analyze {x}, summary {y}",
                    op["op"]
                );
                compared += 1;
            }
        }
        // Segments, the common window and breakdowns are there. The
        // prepare's 150 PUTs per agent may all end before the other agent
        // starts on a loaded machine (seen under two parallel builds): its
        // agents need not overlap. The 1.5 s workload's do.
        assert!(!mine["segments"].as_array().unwrap().is_empty());
        if name == "mixed" {
            assert!(mine["common_window"]["seconds"].as_f64().unwrap() > 0.0);
        }
        assert!(mine["steady"]["fastest"]["ops_per_s"].as_f64().unwrap() > 0.0);
        let agents = mine["per_agent"].as_array().unwrap();
        assert_eq!(agents.len(), 2);
        let sum: u64 = agents.iter().map(|r| r["count"].as_u64().unwrap()).sum();
        assert_eq!(
            sum,
            mine["ops"].as_array().unwrap().last().unwrap()["count"]
        );
    }
    assert!(compared >= 30);

    // Filters: --op and --agent.
    let get_count = summary["stages"][1]["ops"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["op"] == "GET")
        .unwrap()["count"]
        .clone();
    let out = controller(&[
        "analyze",
        s(&run),
        "--json",
        "--op",
        "GET",
        "--stage",
        "mixed",
    ]);
    let f: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(f["stages"].as_array().unwrap().len(), 1);
    assert_eq!(f["stages"][0]["ops"][0]["key"], "GET");
    assert_eq!(f["stages"][0]["ops"][0]["count"], get_count);
    let out = controller(&["analyze", s(&run), "--csv"]);
    let csv = String::from_utf8_lossy(&out.stdout);
    assert!(csv.starts_with("stage,section,key,op,count"), "{csv}");
    assert!(csv.contains("\nmixed,segment,"), "{csv}");
    let out = controller(&["analyze", s(&run)]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("all agents active"), "{text}");
    let bad = controller(&["analyze", s(&run), "--from", "yesterday"]);
    assert_eq!(bad.status.code(), Some(2));

    // A run compared with itself: no change, every delta 0.
    let out = controller(&["compare", s(&run), s(&run)]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("Plans: identical"), "{text}");
    assert!(text.contains("Result: no change"), "{text}");
    let out = controller(&[
        "compare",
        "--json",
        s(&run),
        s(&run),
        "--",
        s(&run),
        s(&run),
    ]);
    let c: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(c["no_change"], true);
    let deltas = c["deltas"].as_array().unwrap();
    assert!(!deltas.is_empty());
    for d in deltas {
        assert_eq!(d["delta"].as_f64().unwrap(), 0.0, "{d}");
        assert_eq!(d["verdict"], "no change");
        assert_eq!(d["a"]["stdev"].as_f64().unwrap(), 0.0);
    }
}

#[test]
fn compare_shows_plan_changes_and_deltas() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let summary = |ops: f64, p99: f64| {
        format!(
            r#"{{"run_id":"r","plan":"p","total_ops":10,"total_errors":0,"stages":[{{"name":"s","kind":"workload","agents":1,"elapsed_s":1.0,"ops":[{{"op":"GET","count":10,"errors":0,"bytes":10,"ops_per_s":{ops},"mib_per_s":1.0,"latency_us":{{"mean":1.0,"p50":1.0,"p90":1.0,"p99":{p99},"p999":1.0,"max":1.0}}}}]}}]}}"#
        )
    };
    std::fs::write(a.join("plan.yaml"), "name: p\nconcurrency: 4\n").unwrap();
    std::fs::write(b.join("plan.yaml"), "name: p\nconcurrency: 8\n").unwrap();
    std::fs::write(a.join("summary.json"), summary(100.0, 50.0)).unwrap();
    std::fs::write(b.join("summary.json"), summary(150.0, 50.0)).unwrap();
    let out = controller(&["compare", s(&a), s(&b)]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("- concurrency: 4"), "{text}");
    assert!(text.contains("+ concurrency: 8"), "{text}");
    assert!(text.contains("+50.00"), "{text}");
    assert!(text.contains("+50.0%"), "{text}");
    assert!(!text.contains("Result: no change"), "{text}");
    let bad = controller(&["compare", s(&a)]);
    assert_eq!(bad.status.code(), Some(2));
}
