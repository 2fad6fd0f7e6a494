//! Helpers for the end-to-end tests: find the built binaries, run them, and
//! read what they wrote, independently of the code under test where that
//! matters (the timeline is decoded here with plain zstd + TSV splitting).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub mod agents;
pub mod netns;
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
        let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut text = String::new();
        zstd::Decoder::new(file)
            .unwrap()
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
