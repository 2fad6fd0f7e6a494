//! Every committed fuzz corpus and crash-regression file, replayed
//! through every fuzz target (`tests/fuzz/targets.rs`, the functions the
//! afl harness fuzzes): a parser change that makes one of them panic, hang
//! or break a target's property fails here, on the stable toolchain,
//! without afl. `scripts/fuzz.sh` is what grows the corpora.

#[path = "../fuzz/targets.rs"]
mod targets;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The harness directory: corpora under `corpus/<target>/`, the inputs
/// that once crashed a target under `regressions/<target>/`.
fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// Every file directly in `dir` (none when it does not exist).
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .map(|e| e.expect("read a corpus directory").path())
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

/// Every input of every target's corpus and regressions.
fn all_inputs() -> Vec<PathBuf> {
    let dir = fuzz_dir();
    let mut inputs = Vec::new();
    for (name, _) in targets::TARGETS {
        let corpus = files(&dir.join("corpus").join(name));
        assert!(
            !corpus.is_empty(),
            "no corpus for the `{name}` target in {}",
            dir.display()
        );
        inputs.extend(corpus);
        inputs.extend(files(&dir.join("regressions").join(name)));
    }
    inputs
}

/// Each input through the target `name` (an input found for one parser
/// is still bytes for the others). An input that takes more than a few
/// seconds is a hang to fix.
fn replay(name: &str) {
    let (_, target) = targets::TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .expect("a target of that name");
    let inputs = all_inputs();
    for path in &inputs {
        let data = std::fs::read(path).expect("read a corpus file");
        let t = Instant::now();
        let outcome = std::panic::catch_unwind(|| target(&data));
        assert!(
            outcome.is_ok(),
            "target `{name}` panicked on {}",
            path.display()
        );
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "target `{name}` took {:?} on {}",
            t.elapsed(),
            path.display()
        );
    }
    assert!(inputs.len() >= targets::TARGETS.len());
}

// One test per target, so they run side by side.
#[test]
fn every_input_through_the_plan_target() {
    replay("plan");
}

#[test]
fn every_input_through_the_oplog_target() {
    replay("oplog");
}

#[test]
fn every_input_through_the_spool_target() {
    replay("spool");
}

#[test]
fn every_input_through_the_trace_target() {
    replay("trace");
}

#[test]
fn every_input_through_the_merge_target() {
    replay("merge");
}

#[test]
fn every_input_through_the_proto_target() {
    replay("proto");
}

#[test]
fn every_target_has_a_test_here() {
    let names: Vec<&str> = targets::TARGETS.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ["plan", "oplog", "spool", "trace", "merge", "proto"]);
}

/// The targets are not vacuous: a real op-log, spool and plan get past
/// their parsers' first checks (a target whose input never parses would
/// fuzz nothing but the error path).
#[test]
fn seeds_reach_the_parsers() {
    let dir = fuzz_dir().join("corpus");
    let loads = files(&dir.join("plan"))
        .iter()
        .filter(|p| {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            chorus_common::plan::parse(&text, "seed.yaml").is_ok()
        })
        .count();
    assert!(loads >= 3, "only {loads} plan seeds load");
    let logs = files(&dir.join("oplog"))
        .iter()
        .filter(|p| {
            chorus_common::oplog::OpLogReader::open(p)
                .map(|r| r.filter(Result::is_ok).count() > 0)
                .unwrap_or(false)
        })
        .count();
    assert!(logs >= 2, "only {logs} op-log seeds have records");
    let traces = files(&dir.join("trace"))
        .iter()
        .filter(|p| {
            chorus_common::trace::TraceReader::open(p)
                .map(|r| r.filter(Result::is_ok).count() > 0)
                .unwrap_or(false)
        })
        .count();
    assert!(traces >= 3, "only {traces} trace seeds have ops");
}
