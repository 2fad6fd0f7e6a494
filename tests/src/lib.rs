//! Helpers for the end-to-end tests: find the built binaries, run them, and
//! read what they wrote, independently of the code under test where that
//! matters (the timeline is decoded here with plain zstd + TSV splitting).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub mod agents;
pub mod cdp;
pub mod chaos;
pub mod dataset;
pub mod helm;
pub mod netns;
pub mod s3;
pub mod scrape;
pub mod sdk;
pub mod servers;

/// The path of a workspace binary (`controller`, `agent`). `scripts/test.sh`
/// builds them before the tests run.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build it first (scripts/test.sh does `cargo build --workspace --bins`)",
        path.display()
    );
    path
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Runs `controller` with `args` and returns its output.
pub fn controller(args: &[&str]) -> Output {
    Command::new(bin("controller"))
        .args(args)
        .output()
        .expect("run controller")
}

/// Runs `examples/quickstart.yaml` against `target` for 2 s (workload
/// stage) into `results`, with `env` set on the controller only (never in
/// the test's own environment), asserts it succeeded, and returns the run
/// directory.
pub fn run_quickstart(target: &str, results: &Path, env: &[(&str, &str)]) -> PathBuf {
    let plan = repo_root().join("examples/quickstart.yaml");
    let out = Command::new(bin("controller"))
        .args([
            "run",
            plan.to_str().unwrap(),
            "--target",
            target,
            "--duration",
            "2s",
        ])
        .arg("--results")
        .arg(results)
        .arg("--quiet")
        .envs(env.iter().copied())
        .output()
        .expect("run controller");
    assert!(
        out.status.success(),
        "controller failed on {target}:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    only_run_dir(results)
}

/// The one run directory under `results`.
pub fn only_run_dir(results: &Path) -> PathBuf {
    let dirs: Vec<_> = std::fs::read_dir(results)
        .unwrap_or_else(|e| panic!("{}: {e}", results.display()))
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(dirs.len(), 1, "expected one run directory, found {dirs:?}");
    dirs[0].clone()
}

/// A decoded TSV file: header and rows of fields.
pub struct Tsv {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Tsv {
    /// Reads a zstd-compressed TSV file.
    pub fn read_zst(path: &Path) -> Tsv {
        // Any op-log: an agent's binary spool is read as its TSV text.
        let mut text = String::new();
        chorus_common::oplog::open_log_text(path)
            .unwrap_or_else(|e| panic!("{e}"))
            .read_to_string(&mut text)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut lines = text.lines();
        let header: Vec<String> = lines
            .next()
            .unwrap_or("")
            .split('\t')
            .map(String::from)
            .collect();
        let rows = lines
            .map(|l| l.split('\t').map(String::from).collect::<Vec<_>>())
            .collect();
        Tsv { header, rows }
    }

    /// The index of column `name`.
    pub fn col(&self, name: &str) -> usize {
        self.header
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("no column `{name}` in {:?}", self.header))
    }

    /// Values of column `name`, one per row.
    pub fn column(&self, name: &str) -> Vec<&str> {
        let c = self.col(name);
        self.rows.iter().map(|r| r[c].as_str()).collect()
    }
}

/// Reads a JSON file.
pub fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Waits until the one run directory under `results` shows stage `stage`
/// running: at least `rows` of its per-second rows are in `series.csv`
/// (written a second at a time as the run goes). Panics after `limit`.
pub fn wait_for_stage(results: &Path, stage: &str, rows: usize, limit: std::time::Duration) {
    let deadline = std::time::Instant::now() + limit;
    let prefix = format!("{stage},");
    loop {
        let seen = std::fs::read_dir(results)
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|d| std::fs::read_to_string(d.ok()?.path().join("series.csv")).ok())
            .is_some_and(|s| s.lines().filter(|l| l.starts_with(&prefix)).count() >= rows);
        if seen {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "stage `{stage}` did not start within {limit:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// An RFC 3339 UTC time as Chorus writes them
/// (`2026-11-24T00:24:47.123456789Z`) in ns since the epoch; parsed here,
/// not by the code under test.
pub fn rfc3339_to_ns(s: &str) -> i64 {
    fn bad(s: &str) -> ! {
        panic!("not an RFC 3339 UTC time: `{s}`")
    }
    let (date, time) = s
        .trim_end_matches('Z')
        .split_once('T')
        .unwrap_or_else(|| bad(s));
    let d: Vec<i64> = date
        .split('-')
        .map(|x| x.parse().unwrap_or_else(|_| bad(s)))
        .collect();
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let t: Vec<i64> = hms
        .split(':')
        .map(|x| x.parse().unwrap_or_else(|_| bad(s)))
        .collect();
    let nanos: i64 = format!("{frac:0<9}")[..9]
        .parse()
        .unwrap_or_else(|_| bad(s));
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y, m) = if d[1] <= 2 {
        (d[0] - 1, d[1] + 9)
    } else {
        (d[0], d[1] - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d[2] - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    (days * 86_400 + t[0] * 3600 + t[1] * 60 + t[2]) * 1_000_000_000 + nanos
}

/// A run's timeline records per (stage, client_id).
pub fn timeline_counts(run: &Path) -> std::collections::BTreeMap<(String, String), u64> {
    let t = Tsv::read_zst(&run.join("timeline.tsv.zst"));
    let (stage, client) = (t.col("stage"), t.col("client_id"));
    let mut counts = std::collections::BTreeMap::new();
    for r in &t.rows {
        *counts
            .entry((r[stage].clone(), r[client].clone()))
            .or_insert(0) += 1;
    }
    counts
}

/// The `ALL` row's count of stage `name` in summary.json.
pub fn summary_ops(run: &Path, name: &str) -> u64 {
    let s = read_json(&run.join("summary.json"));
    let stage = s["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|st| st["name"] == name)
        .unwrap_or_else(|| panic!("no stage {name} in summary"));
    stage["ops"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["op"] == "ALL")
        .unwrap()["count"]
        .as_u64()
        .unwrap()
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_parsing_matches_known_instants() {
        assert_eq!(super::rfc3339_to_ns("1970-01-01T00:00:00Z"), 0);
        assert_eq!(
            super::rfc3339_to_ns("2026-11-24T00:24:47.5Z"),
            1_795_479_887_500_000_000
        );
    }
}
