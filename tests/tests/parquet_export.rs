//! `controller export --format parquet` and `run --timeline-format parquet`
//! on a real run (embedded agents, file:// target), read back by pyarrow and
//! DuckDB in the venv `scripts/pqenv.sh` makes: the timeline
//! (tests/python/check_parquet.py) with the same records as the TSV
//! timeline, and the per-second series (check_series_parquet.py) with the
//! same rows and sums as series.csv, each with the documented column types
//! and the queries of docs/analysis.md run on it; `collect` writes both
//! again.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use chorus_tests::{Tsv, controller, only_run_dir, repo_root, rfc3339_to_ns};
use serde_json::Value;

/// GETs, PUTs and DELETEs on 100 objects: a delete makes later GETs of its
/// key fail with not_found until a PUT writes it again, so the timeline has
/// errors as well as successes.
const PLAN: &str = "name: parquet-export
seed: 11
target: TARGET
concurrency: 4
objects:
  prefix: pq/
  count: 100
  size: 2KiB
stages:
  - name: prepare
    type: prepare
  - name: mixed
    type: workload
    mix:
      get: 60
      put: 25
      delete: 15
    ops: 4000
";

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The nearest-rank p99 (DuckDB's `quantile_disc`): the value at rank
/// ceil(0.99 n) of the sorted values.
fn p99(mut v: Vec<i64>) -> i64 {
    v.sort_unstable();
    let rank = (v.len() * 99).div_ceil(100);
    v[rank - 1]
}

#[test]
fn parquet_timeline_matches_the_tsv_in_pyarrow_and_duckdb() {
    let tmp = tempfile::tempdir().unwrap();
    let plan = tmp.path().join("plan.yaml");
    let target = format!("file://{}", tmp.path().join("data").display());
    std::fs::write(&plan, PLAN.replace("TARGET", &target)).unwrap();
    let results = tmp.path().join("runs");
    let out = controller(&[
        "run",
        s(&plan),
        "--results",
        s(&results),
        "--quiet",
        "--timeline-format",
        "parquet",
    ]);
    assert!(
        out.status.success(),
        "run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = only_run_dir(&results);
    let from_run = run.join("timeline.parquet");
    assert!(from_run.exists(), "--timeline-format parquet wrote nothing");
    assert!(run.join("timeline.tsv.zst").exists(), "the TSV must stay");
    let series_from_run = run.join("series.parquet");
    assert!(series_from_run.exists(), "no series.parquet");
    assert!(run.join("series.csv").exists(), "the CSV must stay");
    let meta: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("run.json")).unwrap()).unwrap();
    assert_eq!(meta["timeline_format"], "parquet", "for collect");

    // `export` of the same timeline, given as a file, writes the same file.
    let exported = tmp.path().join("exported.parquet");
    let out = controller(&[
        "export",
        s(&run.join("timeline.tsv.zst")),
        "--format",
        "parquet",
        "-o",
        s(&exported),
    ]);
    assert!(
        out.status.success(),
        "export failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (timeline_bytes, series_bytes) = (
        std::fs::read(&from_run).unwrap(),
        std::fs::read(&series_from_run).unwrap(),
    );
    assert_eq!(
        std::fs::read(&exported).unwrap(),
        timeline_bytes,
        "export and run --timeline-format parquet differ"
    );
    // `-o` cannot name a run directory's two files.
    let out = controller(&["export", s(&run), "--format", "parquet", "-o", s(&exported)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("series.csv"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // `export` of the directory writes both again, the same bytes (the
    // series' times from run.json as the run took them from memory).
    let out = controller(&["export", s(&run), "--format", "parquet"]);
    assert!(
        out.status.success(),
        "export failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);
    assert_eq!(std::fs::read(&from_run).unwrap(), timeline_bytes);
    assert_eq!(std::fs::read(&series_from_run).unwrap(), series_bytes);

    // What the TSV says, computed here from its text.
    let tsv = Tsv::read_zst(&run.join("timeline.tsv.zst"));
    let (op, bytes, dur, err, client) = (
        tsv.col("op"),
        tsv.col("bytes"),
        tsv.col("duration_ns"),
        tsv.col("error"),
        tsv.col("client_id"),
    );
    let sum_bytes: u64 = tsv
        .rows
        .iter()
        .map(|r| r[bytes].parse::<u64>().unwrap())
        .sum();
    let get_durations: Vec<i64> = tsv
        .rows
        .iter()
        .filter(|r| r[op] == "GET")
        .map(|r| r[dur].parse().unwrap())
        .collect();
    let errors = tsv.rows.iter().filter(|r| !r[err].is_empty()).count();
    assert!(errors > 0, "the plan should make not_found errors");
    assert!(
        tsv.rows.iter().any(|r| r[op] == "PUT") && get_durations.len() > 1000,
        "GETs and PUTs expected"
    );
    let mut per_agent: BTreeMap<String, u64> = BTreeMap::new();
    for r in &tsv.rows {
        *per_agent.entry(r[client].clone()).or_default() += r[bytes].parse::<u64>().unwrap();
    }
    let ok_mixed_get_p99 = p99(tsv
        .rows
        .iter()
        .filter(|r| r[op] == "GET" && r[err].is_empty() && r[tsv.col("stage")] == "mixed")
        .map(|r| r[dur].parse().unwrap())
        .collect());

    // What pyarrow and DuckDB read.
    let check = Command::new("bash")
        .arg(repo_root().join("scripts/pqenv.sh"))
        .arg(repo_root().join("tests/python/check_parquet.py"))
        .arg(&from_run)
        .arg(repo_root().join("docs/analysis.md"))
        .output()
        .expect("bash runs");
    assert!(
        check.status.success(),
        "check_parquet.py failed:\n{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let got: Value = serde_json::from_slice(&check.stdout).unwrap();

    assert_eq!(got["rows"], tsv.rows.len() as u64);
    assert_eq!(got["sum_bytes"], sum_bytes);
    assert_eq!(got["error_count"], errors as u64);
    assert_eq!(got["get_count"], get_durations.len() as u64);
    let expected_p99 = p99(get_durations);
    assert_eq!(got["p99_get_pyarrow"], expected_p99);
    assert_eq!(got["p99_get_duckdb"], expected_p99);

    // Column types as docs/analysis.md gives them.
    let schema = &got["schema"];
    for c in ["start", "end", "first_byte"] {
        assert_eq!(schema[c], "timestamp[ns, tz=UTC]", "{c}");
        assert_eq!(got["duckdb_types"][c], "TIMESTAMP WITH TIME ZONE", "{c}");
    }
    for c in ["idx", "thread", "bytes", "duration_ns", "lag_ns"] {
        assert_eq!(schema[c], "int64", "{c}");
    }
    for c in ["n_objects", "retries"] {
        assert_eq!(schema[c], "int32", "{c}");
    }
    assert_eq!(schema["warmup"], "bool");
    assert_eq!(schema["key"], "string");
    for c in ["op", "client_id", "endpoint", "error_class", "stage"] {
        assert_eq!(
            got["read_dictionary_types"][c], "dictionary<values=string, indices=int32, ordered=0>",
            "{c}"
        );
        let enc = got["encodings"][c].as_array().unwrap();
        assert!(
            enc.iter().any(|e| e == "RLE_DICTIONARY"),
            "{c} not dictionary-encoded: {enc:?}"
        );
    }
    assert_eq!(got["codecs"], serde_json::json!(["ZSTD"]));

    // docs/analysis.md's queries ran, with the answers of the TSV.
    let sql = got["docs_sql"].as_array().unwrap();
    assert_eq!(sql.len(), 3, "three DuckDB queries in the docs");
    let per_second_total: u64 = sql[0]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[2].as_u64().unwrap())
        .sum();
    assert_eq!(
        per_second_total,
        tsv.rows.len() as u64,
        "no warm-up in the plan"
    );
    let mixed_get = sql[1]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r[0] == "mixed" && r[1] == "GET")
        .expect("a p99 row for the mixed stage's GETs");
    assert_eq!(
        mixed_get[3].as_f64().unwrap(),
        ok_mixed_get_p99 as f64 / 1e6
    );
    let agents: BTreeMap<String, u64> = sql[2]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r[0].as_str().unwrap().to_owned(), r[2].as_u64().unwrap()))
        .collect();
    assert_eq!(agents, per_agent);
    let py = &got["docs_python"][0];
    assert!(py["printed"].as_u64().unwrap() > 0);
    assert_eq!(py["ops_per_second_total"], tsv.rows.len() as u64);
    let py_agents: BTreeMap<String, u64> =
        serde_json::from_value(py["bytes_per_agent"].clone()).unwrap();
    assert_eq!(py_agents, per_agent);

    check_series(&run, &meta);

    // `collect` of the finished run (every log is here, so no agent is
    // asked) writes both files again, as run.json recorded the choice.
    std::fs::remove_file(&from_run).unwrap();
    std::fs::remove_file(&series_from_run).unwrap();
    let out = controller(&["collect", s(&run), "--insecure"]);
    assert!(
        out.status.success(),
        "collect failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("written again: timeline.parquet, series.parquet"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(std::fs::read(&from_run).unwrap(), timeline_bytes);
    assert_eq!(std::fs::read(&series_from_run).unwrap(), series_bytes);
}

/// series.parquet against series.csv: pyarrow and DuckDB read the same
/// rows and sums, the documented types, each stage's `time` from run.json,
/// and docs/analysis.md's series queries give the CSV's answers.
fn check_series(run: &Path, meta: &Value) {
    let text = std::fs::read_to_string(run.join("series.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    // The plan's stage names need no quoting, so a comma splits fields.
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (stage, second, agent, ops, bytes, busy) = (
        col("stage"),
        col("second"),
        col("agent"),
        col("ops"),
        col("bytes"),
        col("cpu_busy_pct"),
    );
    let sum = |c: usize| -> u64 { rows.iter().map(|r| r[c].parse::<u64>().unwrap()).sum() };
    let (sum_ops, sum_bytes) = (sum(ops), sum(bytes));
    let cluster = rows.iter().filter(|r| r[agent] == "*").count() as u64;
    let cluster_ops: u64 = rows
        .iter()
        .filter(|r| r[agent] == "*")
        .map(|r| r[ops].parse::<u64>().unwrap())
        .sum();
    let busy_empty = rows.iter().filter(|r| r[busy].is_empty()).count() as u64;
    let mut per_agent: BTreeMap<(String, String), u64> = BTreeMap::new();
    for r in rows.iter().filter(|r| r[agent] != "*") {
        *per_agent
            .entry((r[stage].to_owned(), r[agent].to_owned()))
            .or_default() += r[ops].parse::<u64>().unwrap();
    }
    assert!(cluster > 0 && per_agent.len() >= 2, "{text}");
    assert!(sum_ops > 0);

    let check = Command::new("bash")
        .arg(repo_root().join("scripts/pqenv.sh"))
        .arg(repo_root().join("tests/python/check_series_parquet.py"))
        .arg(run.join("series.parquet"))
        .arg(repo_root().join("docs/analysis.md"))
        .output()
        .expect("bash runs");
    assert!(
        check.status.success(),
        "check_series_parquet.py failed:\n{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let got: Value = serde_json::from_slice(&check.stdout).unwrap();
    assert_eq!(got["rows"], rows.len() as u64);
    for reader in ["pyarrow", "duckdb"] {
        assert_eq!(got[reader]["sum_ops"], sum_ops, "{reader}");
        assert_eq!(got[reader]["sum_bytes"], sum_bytes, "{reader}");
    }
    assert_eq!(got["pyarrow"]["cluster_rows"], cluster);
    assert_eq!(got["pyarrow"]["cpu_busy_nulls"], busy_empty);
    assert_eq!(got["pyarrow"]["time_nulls"], 0, "every stage has its start");

    // `time` is run.json's start of the stage plus `second`: exact in
    // pyarrow, to the microsecond in DuckDB (its timestamps' unit).
    let firsts = got["pyarrow"]["first_second"].as_object().unwrap();
    assert_eq!(
        firsts.keys().collect::<Vec<_>>(),
        got["duckdb"]["first_second"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>()
    );
    for (name, first) in firsts {
        let start = meta["stages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name.as_str())
            .and_then(|s| s["start_at"].as_str())
            .unwrap_or_else(|| panic!("no start of {name}"));
        let csv_first = rows
            .iter()
            .filter(|r| r[stage] == name.as_str())
            .map(|r| r[second].parse::<i64>().unwrap())
            .min()
            .unwrap();
        let expected = rfc3339_to_ns(start) + csv_first * 1_000_000_000;
        assert_eq!(first[0], csv_first, "{name}");
        assert_eq!(first[1].as_i64().unwrap(), expected, "{name}");
        let duck = &got["duckdb"]["first_second"][name];
        assert_eq!(duck[0], csv_first, "{name}");
        assert_eq!(
            duck[1].as_i64().unwrap(),
            expected.div_euclid(1000),
            "{name}"
        );
    }

    let schema = &got["schema"];
    assert_eq!(schema["time"], "timestamp[ns, tz=UTC]");
    assert_eq!(got["duckdb_types"]["time"], "TIMESTAMP WITH TIME ZONE");
    for c in ["second", "ops", "bytes", "errors"] {
        assert_eq!(schema[c], "int64", "{c}");
    }
    for c in ["ops_per_s", "p99_us", "cpu_busy_pct", "run_queue"] {
        assert_eq!(schema[c], "double", "{c}");
    }
    assert_eq!(schema["cpus"], "int32");
    for c in ["stage", "agent"] {
        assert_eq!(schema[c], "string", "{c}");
        let enc = got["encodings"][c].as_array().unwrap();
        assert!(
            enc.iter().any(|e| e == "RLE_DICTIONARY"),
            "{c} not dictionary-encoded: {enc:?}"
        );
    }
    assert_eq!(got["codecs"], serde_json::json!(["ZSTD"]));

    // docs/analysis.md's series queries.
    let sql = got["docs_sql"].as_array().unwrap();
    assert_eq!(sql.len(), 2, "two DuckDB queries in the series section");
    assert_eq!(sql[0].as_array().unwrap().len() as u64, cluster);
    let got_agents: BTreeMap<(String, String), u64> = sql[1]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                (
                    r[0].as_str().unwrap().to_owned(),
                    r[1].as_str().unwrap().to_owned(),
                ),
                r[2].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got_agents, per_agent);
    let py = &got["docs_python"][0];
    assert!(py["printed"].as_u64().unwrap() > 0);
    assert_eq!(py["cluster_rows"], cluster);
    assert_eq!(py["cluster_ops"], cluster_ops);
}

/// A truncated timeline: `export` fails naming the file and line, and
/// writes nothing.
#[test]
fn export_of_a_truncated_timeline_is_a_located_error() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("t.tsv.zst");
    let out = controller(&[
        "gen-oplog",
        "-o",
        s(&log),
        "--records",
        "50000",
        "--client",
        "a",
        "--seed",
        "3",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&log).unwrap();
    std::fs::write(&log, &bytes[..bytes.len() / 2]).unwrap();
    let out = controller(&["export", s(&log), "--format", "parquet"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let prefix = format!("error: {}:", log.display());
    assert!(err.starts_with(&prefix), "{err}");
    let line: u64 = err[prefix.len()..]
        .split(':')
        .next()
        .and_then(|l| l.parse().ok())
        .unwrap_or_else(|| panic!("no line in {err}"));
    assert!(line > 1 && line <= 50_001, "{err}");
    assert!(!tmp.path().join("t.parquet").exists());
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
}
