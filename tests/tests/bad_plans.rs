//! Every kind of bad plan is refused by `validate` and by `run` with exit
//! code 2, a message naming file, line, column and key, and no results.

use chorus_tests::{controller, repo_root};

/// A valid plan; each case below breaks one line of it.
const GOOD: &str = "\
name: bad
target: file:///tmp/chorus-bad-plan-test
objects: {count: 10, size: 1KiB}
stages:
  - name: w
    type: workload
    mix: {get: 1}
    duration: 1s
";

struct Case {
    what: &'static str,
    /// (line to replace, 1-based; its new text).
    edit: (usize, &'static str),
    line: usize,
    needles: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        what: "unknown key",
        edit: (8, "    duraton: 1s"),
        line: 8,
        needles: &["duraton", "did you mean `duration`"],
    },
    Case {
        what: "wrong type",
        edit: (2, "concurrency: four"),
        line: 2,
        needles: &["concurrency", "four"],
    },
    Case {
        what: "negative size",
        edit: (3, "objects: {count: 10, size: -1KiB}"),
        line: 3,
        needles: &["size", "negative"],
    },
    Case {
        what: "weights all zero",
        edit: (7, "    mix: {get: 0, put: 0}"),
        line: 7,
        needles: &["mix", "zero"],
    },
    Case {
        what: "unknown op",
        edit: (7, "    mix: {gett: 1}"),
        line: 7,
        needles: &["gett", "get"],
    },
    Case {
        what: "unknown URI scheme",
        edit: (2, "target: ftp://host/x"),
        line: 2,
        needles: &["ftp", "scheme"],
    },
    Case {
        what: "missing target",
        edit: (2, "seed: 3"),
        line: 5,
        needles: &["target"],
    },
];

fn plan_text(case: &Case) -> String {
    GOOD.lines()
        .enumerate()
        .map(|(i, l)| if i + 1 == case.edit.0 { case.edit.1 } else { l })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

#[test]
fn the_good_plan_is_valid() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("plan.yaml");
    std::fs::write(&path, GOOD).unwrap();
    let out = controller(&["validate", path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn each_bad_plan_gets_a_located_error_and_exit_2() {
    for case in CASES {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("plan.yaml");
        std::fs::write(&path, plan_text(case)).unwrap();
        let p = path.to_str().unwrap();
        let results = tmp.path().join("runs");
        for args in [
            vec!["validate", p],
            vec!["run", p, "--results", results.to_str().unwrap(), "--quiet"],
        ] {
            let out = controller(&args);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(2),
                "{} ({}): {err}",
                case.what,
                args[0]
            );
            let located = format!("{p}:{}:", case.line);
            assert!(
                err.contains(&located),
                "{}: expected `{located}<col>` in: {err}",
                case.what
            );
            let col = err
                .split(&located)
                .nth(1)
                .unwrap()
                .split(':')
                .next()
                .unwrap();
            assert!(
                col.parse::<usize>().is_ok_and(|c| c >= 1),
                "{}: no column in: {err}",
                case.what
            );
            for n in case.needles {
                assert!(err.contains(n), "{}: `{n}` not in: {err}", case.what);
            }
            assert!(!err.contains("panicked"), "{err}");
            assert!(
                !results.exists(),
                "{}: a results directory was written",
                case.what
            );
        }
    }
}

#[test]
fn every_example_plan_is_valid() {
    let dir = repo_root().join("examples");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            // From the repository's root, as the README runs them: an
            // example's trace path is relative to it.
            let out = std::process::Command::new(chorus_tests::bin("controller"))
                .args(["validate", path.to_str().unwrap()])
                .current_dir(repo_root())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            n += 1;
        }
    }
    assert!(n >= 2, "examples/ should hold plans");
}

#[test]
fn a_bad_override_is_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("plan.yaml");
    std::fs::write(&path, GOOD).unwrap();
    let results = tmp.path().join("runs");
    for flag in [
        ["--target", "nope://x"],
        ["--duration", "-3s"],
        ["--concurrency", "0"],
    ] {
        let out = controller(&[
            "run",
            path.to_str().unwrap(),
            flag[0],
            flag[1],
            "--results",
            results.to_str().unwrap(),
        ]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{flag:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!results.exists());
    }
}

/// A bad endpoint template in the third stage is found when the plan loads:
/// `validate` and `run` exit 2 at its line and column, and `run` runs none
/// of the stages before it (no results directory).
#[test]
fn a_bad_template_in_stage_three_fails_at_load() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("plan.yaml");
    let data = tmp.path().join("data");
    let plan = format!(
        "name: late-typo
objects: {{count: 10, size: 1KiB}}
stages:
  - {{name: one, type: prepare, target: 'file://{data}'}}
  - {{name: two, type: workload, target: 'file://{data}', mix: {{get: 1}}, ops: 10}}
  - name: three
    type: workload
    target: s3://bucket/p
    mix: {{get: 1}}
    endpoints: [\"http://gw{{1..8}}:9000\"]
    ops: 10
",
        data = data.display()
    );
    std::fs::write(&path, plan).unwrap();
    let p = path.to_str().unwrap();
    let results = tmp.path().join("runs");
    for args in [
        vec!["validate", p],
        vec!["run", p, "--results", results.to_str().unwrap(), "--quiet"],
    ] {
        let out = controller(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{}: {err}", args[0]);
        assert!(err.contains(&format!("{p}:10:17:")), "{}: {err}", args[0]);
        assert!(err.contains("stages[2].endpoints[0]"), "{err}");
        assert!(err.contains("http://gw{1..8}:9000"), "{err}");
        assert!(!results.exists(), "a results directory was written");
        assert!(!data.exists(), "stage one ran");
    }
}
