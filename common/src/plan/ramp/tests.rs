//! `ramp` and `think`: each form decodes, every mistake is a located error,
//! and the canonical form loads back to an equal plan.

use std::time::Duration;

use super::ThinkTime;
use crate::plan::{Overrides, Pacing, Plan, PlanError, parse};

/// A plan with a prepare stage and a workload stage `w` whose keys end
/// with `extra` (one key per line, from line 11, keys at column 5).
fn text(extra: &[&str]) -> String {
    let mut t = String::from(
        "name: r\ntarget: mem://t\nobjects: {count: 10, size: 1KiB}\nstages:\n  \
         - name: p\n    type: prepare\n  - name: w\n    type: workload\n    mix: {get: 1}\n    \
         duration: 10s\n",
    );
    for line in extra {
        t.push_str("    ");
        t.push_str(line);
        t.push('\n');
    }
    t
}

fn load(extra: &[&str]) -> Plan {
    let t = text(extra);
    parse(&t, "r.yaml").unwrap_or_else(|e| panic!("{e}\n{t}"))
}

fn fail(extra: &[&str]) -> PlanError {
    match parse(&text(extra), "r.yaml") {
        Ok(_) => panic!("{extra:?} loaded"),
        Err(e) => e,
    }
}

const MS: fn(u64) -> Duration = Duration::from_millis;

#[test]
fn each_form_decodes() {
    let w = &load(&["ramp: 2s", "think: 5ms"]).stages[1];
    assert_eq!(w.ramp, Some(Duration::from_secs(2)));
    assert_eq!(w.think, Some(ThinkTime::Fixed(MS(5))));
    assert_eq!(w.warmup_window(), Some(Duration::from_secs(2)));
    let cases = [
        (
            "think: {exponential: 2ms}",
            ThinkTime::Exponential { mean: MS(2) },
        ),
        (
            "think: {uniform: [0s, 3ms]}",
            ThinkTime::Uniform {
                min: MS(0),
                max: MS(3),
            },
        ),
        (
            "think: {uniform: {min: 1ms, max: 1ms}}",
            ThinkTime::Uniform {
                min: MS(1),
                max: MS(1),
            },
        ),
        ("think: 500us", ThinkTime::Fixed(Duration::from_micros(500))),
    ];
    for (line, want) in cases {
        assert_eq!(load(&[line]).stages[1].think, Some(want), "{line}");
    }
    assert_eq!(
        ThinkTime::Uniform {
            min: MS(1),
            max: MS(3)
        }
        .mean(),
        MS(2)
    );
    // Neither key: nothing changes, and the warm-up window is `warmup`'s.
    let plain = &load(&["warmup: 3s"]).stages[1];
    assert_eq!((plain.ramp, plain.think), (None, None));
    assert_eq!(plain.warmup_window(), Some(Duration::from_secs(3)));
    // The longer of the two.
    let both = &load(&["warmup: 1s", "ramp: 4s"]).stages[1];
    assert_eq!(both.warmup_window(), Some(Duration::from_secs(4)));
    // A ramp with an open-loop rate, and with an op limit only.
    let open = &load(&["rate: 100", "ramp: 5s"]).stages[1];
    assert!(matches!(open.pacing, Pacing::Open { .. }));
    assert_eq!(open.ramp, Some(Duration::from_secs(5)));
    let t = "name: r\ntarget: mem://t\nobjects: {count: 1, size: 1}\nstages:\n  \
             - {name: w, type: workload, mix: {get: 1}, ops: 100, ramp: 1m}\n";
    assert_eq!(
        parse(t, "r.yaml").unwrap().stages[0].ramp,
        Some(Duration::from_secs(60))
    );
}

#[test]
fn canonical_form_loads_back_equal() {
    for extra in [
        &["ramp: 1500ms", "think: 2ms"][..],
        &["think: {exponential: 2ms}"],
        &["think: {uniform: [0s, 3ms]}", "ramp: 1s"],
        &["think: {uniform: {min: 250us, max: 1ms}}"],
        &["rate: 2000", "arrivals: fixed", "ramp: 2s"],
        &["warmup: 1s"],
    ] {
        let p = load(extra);
        let y = p.to_yaml();
        let again = parse(&y, "out.yaml").unwrap_or_else(|e| panic!("{e}\n{y}"));
        assert_eq!(again, p, "{extra:?}\n{y}");
        assert_eq!(again.to_yaml(), y);
        let has = |k: &str| y.contains(&format!("    {k}: "));
        assert_eq!(has("ramp"), p.stages[1].ramp.is_some(), "{y}");
        assert_eq!(has("think"), p.stages[1].think.is_some(), "{y}");
    }
    let y = load(&["ramp: 1500ms", "think: {uniform: [0s, 3ms]}"]).to_yaml();
    assert!(y.contains("    ramp: 1s500ms\n"), "{y}");
    assert!(y.contains("    think: {uniform: [0s, 3ms]}\n"), "{y}");
}

/// (line, column, key path, a piece of the message) of the error `extra`
/// gives.
fn check(extra: &[&str], line: usize, column: usize, key: &str, says: &str) {
    let e = fail(extra);
    assert_eq!(
        (e.file.as_str(), e.line, e.column, e.key.as_str()),
        ("r.yaml", line, column, key),
        "{extra:?}: {e}"
    );
    assert!(e.message.contains(says), "{extra:?}: {e}");
}

#[test]
fn bad_ramps_are_located() {
    let k = "stages[1].ramp";
    check(&["ramp: 0s"], 11, 11, k, "must be longer than zero");
    check(&["ramp: -1s"], 11, 11, k, "invalid `ramp`");
    check(&["ramp: soon"], 11, 11, k, "invalid `ramp`");
    check(&["ramp: [1s]"], 11, 11, k, "must be a string");
    check(&["ramp: 10s"], 11, 11, k, "ramps for 10s of its 10s");
    check(
        &["ramp: 1m"],
        11,
        11,
        k,
        "must be shorter than the stage's `duration`",
    );
    check(&["rmap: 1s"], 11, 5, "stages[1].rmap", "unknown key `rmap`");
    let e = fail(&["rmap: 1s"]);
    assert_eq!(e.hint.as_deref(), Some("did you mean `ramp`?"), "{e}");
    // Not on a prepare stage (line 5 is its name, so its keys follow it).
    let t = text(&[]).replace("    type: prepare\n", "    type: prepare\n    ramp: 1s\n");
    let e = parse(&t, "r.yaml").unwrap_err();
    assert_eq!(
        (e.line, e.column, e.key.as_str()),
        (7, 5, "stages[0].ramp"),
        "{e}"
    );
    assert!(e.message.contains("only allowed in workload stages"), "{e}");
}

#[test]
fn bad_think_times_are_located() {
    let k = "stages[1].think";
    check(&["think: 0ms"], 11, 12, k, "must be longer than zero");
    check(&["think: -2ms"], 11, 12, k, "invalid `think`");
    check(&["think: 2h"], 11, 12, k, "at most 1h");
    check(
        &["think: [1ms, 2ms]"],
        11,
        12,
        k,
        "`think` must be a duration like",
    );
    check(
        &["think: {expo: 2ms}"],
        11,
        13,
        "stages[1].think.expo",
        "unknown think distribution `expo`",
    );
    let e = fail(&["think: {expo: 2ms}"]);
    let valid = "valid think distributions: exponential, uniform";
    assert_eq!(e.hint.as_deref(), Some(valid), "{e}");
    let e = fail(&["think: {exponental: 2ms}"]);
    assert_eq!(
        e.hint.as_deref(),
        Some("did you mean `exponential`?"),
        "{e}"
    );
    check(&["think: {}"], 11, 12, k, "exactly one distribution");
    check(
        &["think: {exponential: 1ms, uniform: [1ms, 2ms]}"],
        11,
        12,
        k,
        "exactly one distribution",
    );
    check(
        &["think: {exponential: 0s}"],
        11,
        26,
        "stages[1].think.exponential",
        "longer than zero",
    );
    let u = "stages[1].think.uniform";
    check(
        &["think: {uniform: [3ms, 1ms]}"],
        11,
        23,
        &format!("{u}.min"),
        "3ms > 1ms",
    );
    check(
        &["think: {uniform: [0s, 0s]}"],
        11,
        27,
        &format!("{u}.max"),
        "longer than zero",
    );
    check(
        &["think: {uniform: [1ms]}"],
        11,
        22,
        u,
        "a list `[min, max]`",
    );
    check(
        &["think: {uniform: [1ms, x]}"],
        11,
        28,
        &format!("{u}.max"),
        "invalid `max`",
    );
    check(
        &["think: {uniform: {min: 1ms}}"],
        11,
        22,
        &format!("{u}.max"),
        "missing required key `max`",
    );
    check(
        &["think: {uniform: {low: 1ms}}"],
        11,
        23,
        &format!("{u}.low"),
        "unknown key `low`",
    );
    // Closed loop only: said at the key, whichever comes first.
    for extra in [
        &["rate: 100", "think: 2ms"][..],
        &["think: 2ms", "rate: 100"],
    ] {
        let e = fail(extra);
        let line = if extra[0] == "rate: 100" { 12 } else { 11 };
        assert_eq!((e.line, e.column, e.key.as_str()), (line, 5, k), "{e}");
        assert!(e.message.contains("`think` is closed loop only"), "{e}");
        assert!(
            e.hint
                .as_deref()
                .is_some_and(|h| h.contains("remove `rate`")),
            "{e}"
        );
    }
    let t = text(&[]).replace("    type: prepare\n", "    type: prepare\n    think: 1ms\n");
    let e = parse(&t, "r.yaml").unwrap_err();
    assert_eq!(
        (e.line, e.column, e.key.as_str()),
        (7, 5, "stages[0].think"),
        "{e}"
    );
    assert!(e.message.contains("only allowed in workload stages"), "{e}");
}

#[test]
fn a_duration_override_must_outlast_the_ramp() {
    let mut p = load(&["ramp: 5s"]);
    let before = p.clone();
    let o = |s| Overrides {
        duration: Some(Duration::from_secs(s)),
        ..Default::default()
    };
    let e = p.apply_overrides(&o(5)).unwrap_err();
    assert!(e.contains("stage `w`'s ramp of 5s"), "{e}");
    assert_eq!(p, before, "a refused override changes nothing");
    p.apply_overrides(&o(6)).unwrap();
    assert_eq!(p.stages[1].stop.duration, Some(Duration::from_secs(6)));
}
