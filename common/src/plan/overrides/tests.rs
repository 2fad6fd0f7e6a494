//! Per-agent overrides: decoded, read back equal, applied to the agents
//! they pick (in order), checked against the run's agents, located errors.

use super::*;
use crate::plan::parse;

const PLAN: &str = r#"name: o
target: file:///tmp/all
concurrency: 4
data: {dedup: 1, compress: 1.0}
overrides:
  - {hosts: "gpu-*", target: "file:///mnt/nvme", concurrency: 16}
  - {index: 2-3, pinning: none, data: {dedup: 4}}
  - {agents: [local-1], target: "file:///mnt/other"}
stages:
  - {name: p, type: prepare, objects: {count: 10, size: 4KiB}}
  - name: c
    type: checkpoint
    checkpoint: {size: 8MiB, accelerators: 2}
"#;

fn who<'a>(id: &'a str, host: &'a str, index: u32) -> AgentIdentity<'a> {
    AgentIdentity { id, host, index }
}

#[test]
fn overrides_apply_in_order_to_the_agents_they_pick() {
    let p = parse(PLAN, "o.yaml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.overrides.len(), 3);
    let again = parse(&p.to_yaml(), "out.yaml").unwrap_or_else(|e| panic!("{e}\n{}", p.to_yaml()));
    assert_eq!(again, p);

    // Picked by nothing: the plan as written.
    let plain = p.for_agent(&who("local-0", "cpu-1", 0));
    assert_eq!(plain, p);
    assert!(p.overrides_for(&who("local-0", "cpu-1", 0)).is_empty());

    // A gpu host: its target and workers, but a checkpoint keeps its ranks.
    let gpu = p.for_agent(&who("local-0", "gpu-07", 0));
    assert_eq!(gpu.stages[0].target, "file:///mnt/nvme");
    assert_eq!(gpu.stages[0].concurrency, 16);
    assert_eq!(gpu.stages[1].concurrency, 2);

    // Index 3 on a gpu host named local-1: later entries win per key.
    let both = p.for_agent(&who("local-1", "gpu-01", 3));
    assert_eq!(both.stages[0].target, "file:///mnt/other");
    assert_eq!(both.stages[0].concurrency, 16);
    assert_eq!(both.pinning, Pinning::None);
    assert_eq!(both.data.dedup, 4);
    let ran = p.overrides_for(&who("local-1", "gpu-01", 3));
    assert_eq!(ran["target"], "file:///mnt/other");
    assert_eq!(ran["concurrency"], "16");
    assert_eq!(ran["pinning"], "none");
    assert!(ran["data"].starts_with("{dedup: 4,"), "{ran:?}");
}

#[test]
fn host_patterns_match_like_a_shell() {
    for (pattern, host, want) in [
        ("gpu-*", "gpu-07", true),
        ("gpu-*", "cpu-07", false),
        ("*", "", true),
        ("n?de*.lab", "node12.lab", true),
        ("n?de*.lab", "node12.lab.x", false),
        ("*a*b", "xxaxxb", true),
        ("*a*b", "xxaxxbx", false),
        ("exact", "exact", true),
    ] {
        assert_eq!(
            glob(pattern.as_bytes(), host.as_bytes()),
            want,
            "{pattern} ~ {host}"
        );
    }
}

#[test]
fn every_entry_must_pick_an_agent_of_the_run() {
    let p = parse(PLAN, "o.yaml").unwrap();
    let four = [
        who("local-0", "gpu-1", 0),
        who("local-1", "cpu-1", 1),
        who("local-2", "cpu-2", 2),
        who("local-3", "cpu-3", 3),
    ];
    assert_eq!(p.check_overrides(&four), Ok(()));
    // No gpu host.
    let cpus = [
        who("local-0", "cpu-0", 0),
        who("local-1", "cpu-1", 1),
        who("local-2", "x", 2),
        who("local-3", "y", 3),
    ];
    let e = p.check_overrides(&cpus).unwrap_err();
    assert_eq!(e.path, "overrides[0].hosts");
    let located = crate::plan::locate(PLAN, "o.yaml", &e);
    assert_eq!((located.line, located.column), (6, 13), "{located}");
    // Index 2-3 past the end of two agents.
    let two = [who("local-0", "gpu-1", 0), who("local-1", "cpu-1", 1)];
    let e = p.check_overrides(&two).unwrap_err();
    assert_eq!(e.path, "overrides[1].index");
    assert!(e.message.contains("does not pick only"), "{}", e.message);
    // An id no agent has.
    let text = PLAN.replace("agents: [local-1]", "agents: [local-9]");
    let p = parse(&text, "o.yaml").unwrap();
    let e = p.check_overrides(&four).unwrap_err();
    assert_eq!(e.path, "overrides[2].agents");
    assert!(e.message.contains("`local-9`"), "{}", e.message);
}

#[test]
fn bad_entries_are_located() {
    let plan = |o: &str| {
        format!(
            "name: o\ntarget: s3://b\noverrides:\n  - {o}\nstages:\n  - {{name: p, type: prepare, objects: {{count: 1, size: 1}}}}\n"
        )
    };
    for (entry, want) in [
        (
            "{target: \"file:///x\"}",
            "must pick its agents with one of",
        ),
        (
            "{agents: [a], hosts: b, concurrency: 2}",
            "picks its agents two ways",
        ),
        ("{hosts: \"h*\"}", "changes nothing"),
        (
            "{index: 3-1, concurrency: 2}",
            "`index` must be an agent index",
        ),
        (
            "{agents: [a], concurrency: 0}",
            "`concurrency` must be a positive integer",
        ),
        ("{agents: [a], target: \"ftp://x\"}", "ftp"),
        ("{agents: [a], pinning: [\"0-x\"]}", "is not a CPU list"),
        ("{agents: [a], datta: {dedup: 2}}", "unknown key `datta`"),
        (
            "{agents: [a], target: \"file:///x\", endpoints: [\"http://e:9000\"]}",
            "not a network store",
        ),
    ] {
        let e = parse(&plan(entry), "o.yaml").expect_err(entry);
        assert_eq!(e.line, 4, "{entry}: {e}");
        assert!(e.to_string().contains(want), "{entry}: {e}");
        assert!(e.key.starts_with("overrides[0]"), "{entry}: {e}");
    }
}
