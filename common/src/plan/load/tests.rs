//! Unit tests of the plan decoder: every key, defaults, round trips, overrides.

use super::*;
use crate::plan::SizeSpec;

/// A plan using every key.
const FULL: &str = r#"
name: full-plan_1.0
description: "every key: \"quoted\", tab\t, newline\n, unicode é \u2028"
seed: 18446744073709551615
target: file:///tmp/chorus
concurrency: 3
agents: ["h1:7167", 'h2:7167']
control: {on_agent_loss: continue, agent_timeout: 4s, controller_timeout: 7s, max_clock_offset: 250ms, max_clock_uncertainty: 2ms, clock_check: refuse, collect_interval: 2s}
objects:
  prefix: data/
  count: 1000
  size: 1.5MiB
  naming: {width: 10, fanout: 8}
stages:
  - name: prepare
    type: prepare
    concurrency: 16
  - name: load
    type: workload
    target: s3://bucket/prefix
    objects: {prefix: "", count: 5, size: 0}
    mix: {get: 70, put: 20, stat: 5, delete: 0, list: 5}
    duration: 1m30.5s
    ops: 10000
    bytes: 1GB
  - name: cleanup
    type: cleanup
    ops: 7
"#;

fn plan(text: &str) -> Plan {
    parse(text, "t.yaml").unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn loads_every_key_with_defaults_filled() {
    let p = plan(FULL);
    assert_eq!(p.name, "full-plan_1.0");
    assert_eq!(p.seed, u64::MAX);
    assert_eq!(p.agents, ["h1:7167", "h2:7167"]);
    assert!(p.description.as_deref().unwrap().contains("\"quoted\""));
    let [prep, load, clean] = &p.stages[..] else {
        panic!("three stages")
    };
    assert_eq!(prep.kind, StageKind::Prepare);
    assert_eq!(prep.target, "file:///tmp/chorus");
    assert_eq!(prep.concurrency, 16);
    assert_eq!(prep.objects.prefix, "data/");
    assert_eq!(prep.objects.size, SizeSpec::Fixed(1536 * 1024));
    assert_eq!(prep.objects.key(9), "data/1/0000000009");
    assert_eq!(load.objects.key(9), "00000009", "naming is per key space");
    assert_eq!(prep.mix, OpMix::default());
    assert_eq!(prep.stop, StopCondition::default());
    assert_eq!(load.target, "s3://bucket/prefix");
    assert_eq!(load.concurrency, 3);
    assert_eq!(load.objects.count, 5);
    assert_eq!(load.mix.total(), 100);
    assert_eq!(load.mix.weights.get(&OpKind::Delete), None);
    assert_eq!(load.stop.duration, Some(Duration::from_millis(90_500)));
    assert_eq!(load.stop.bytes, Some(1_000_000_000));
    assert_eq!(clean.stop.ops, Some(7));
}

#[test]
fn minimal_plan_gets_defaults() {
    let p = plan(
        "name: q\nstages:\n  - {name: w, type: workload, target: 'mem://x', \
             objects: {count: 1, size: 4k}, mix: {get: 1}, duration: 1s}\n",
    );
    assert_eq!(p.seed, 1);
    assert_eq!(p.description, None);
    assert!(p.agents.is_empty());
    assert_eq!(p.stages[0].concurrency, 4);
    assert_eq!(p.stages[0].objects.prefix, "obj/");
    assert_eq!(p.stages[0].objects.size, SizeSpec::Fixed(4000));
}

#[test]
fn round_trip_is_equal() {
    let p = plan(FULL);
    let text = p.to_yaml();
    let again = parse(&text, "out.yaml").unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(again, p, "{text}");
    assert_eq!(again.to_yaml(), text);
    // Strings that YAML would otherwise read as other types or mangle.
    let mut odd = p.clone();
    odd.description = Some("null".into());
    odd.agents = vec!["true".into(), "1.5".into(), "#x: y".into(), " sp ".into()];
    odd.stages[0].objects.prefix = "\u{7}\u{85}\\ \"'".into();
    let again = parse(&odd.to_yaml(), "out.yaml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again, odd);
}

#[test]
fn overrides_apply_to_the_right_stages() {
    let mut p = plan(FULL);
    let o = Overrides {
        target: Some("mem://bench".into()),
        duration: Some(Duration::from_secs(5)),
        concurrency: Some(2),
    };
    p.apply_overrides(&o).unwrap();
    for s in &p.stages {
        assert_eq!(s.target, "mem://bench");
        assert_eq!(s.concurrency, 2);
    }
    assert_eq!(p.stages[0].stop.duration, None);
    assert_eq!(p.stages[1].stop.duration, Some(Duration::from_secs(5)));
    assert_eq!(p.stages[1].stop.ops, Some(10000));
    assert_eq!(p.stages[2].stop.duration, None);
    // Empty overrides change nothing.
    let before = p.clone();
    p.apply_overrides(&Overrides::default()).unwrap();
    assert_eq!(p, before);
}

#[test]
fn bad_overrides_leave_the_plan_untouched() {
    let mut p = plan(FULL);
    let before = p.clone();
    let bad_target = Overrides {
        target: Some("ftp://x".into()),
        concurrency: Some(2),
        ..Overrides::default()
    };
    let e = p.apply_overrides(&bad_target).unwrap_err();
    assert!(e.starts_with("unknown URI scheme `ftp`"), "{e}");
    let e = p.apply_overrides(&Overrides {
        target: Some("file://relative".into()),
        ..Overrides::default()
    });
    assert!(e.unwrap_err().contains("absolute path"));
    let zero = Overrides {
        concurrency: Some(0),
        ..Overrides::default()
    };
    assert_eq!(
        p.apply_overrides(&zero).unwrap_err(),
        "concurrency must be at least 1, got 0"
    );
    let zero = Overrides {
        duration: Some(Duration::ZERO),
        ..Overrides::default()
    };
    assert!(p.apply_overrides(&zero).is_err());
    assert_eq!(p, before);
}

#[test]
fn load_reads_files_and_names_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plan.yaml");
    std::fs::write(&path, FULL).unwrap();
    assert_eq!(load(&path).unwrap(), plan(FULL));
    let missing = dir.path().join("nope.yaml");
    let e = load(&missing).unwrap_err();
    assert_eq!(e.file, missing.display().to_string());
    assert_eq!((e.line, e.column), (0, 0));
    assert!(
        e.message.starts_with("cannot read plan file: "),
        "{}",
        e.message
    );
    std::fs::write(&path, "name: x\nstages: 3\n").unwrap();
    let e = load(&path).unwrap_err();
    assert_eq!(e.file, path.display().to_string());
    assert!(
        e.to_string()
            .starts_with(&format!("{}:2:9: ", path.display()))
    );
}

#[test]
fn endpoints_bound_to_pools_round_trip() {
    let text = "name: ep\ntarget: s3://b/p\nobjects: {count: 1, size: 1}\n\
                    endpoints: [\"http://a:9000\", {url: \"http://b{1...2}:9000\", pool: 1}]\n\
                    stages:\n  - {name: w, type: workload, mix: {get: 1}, ops: 1}\n";
    let plan = parse(text, "p.yaml").unwrap();
    let eps = &plan.stages[0].endpoints;
    assert_eq!(eps.len(), 2);
    assert_eq!((eps[0].url.as_str(), eps[0].pool), ("http://a:9000", None));
    assert_eq!(
        (eps[1].url.as_str(), eps[1].pool),
        ("http://b{1...2}:9000", Some(1))
    );
    assert_eq!(parse(&plan.to_yaml(), "again").unwrap(), plan);
    let bad = text.replace("pool: 1", "pol: 1");
    let e = parse(&bad, "p.yaml").unwrap_err();
    assert!(e.message.contains("unknown key `pol`"), "{e}");
    assert_eq!(e.line, 4);
}

/// A three-stage plan whose last stage lists `endpoints` (line 10).
fn three_stages(endpoints: &str) -> String {
    format!(
        "name: ep\n\
         target: s3://b/p\n\
         objects: {{count: 1, size: 1}}\n\
         stages:\n\
         \x20 - {{name: one, type: prepare}}\n\
         \x20 - {{name: two, type: workload, mix: {{get: 1}}, ops: 1}}\n\
         \x20 - name: three\n\
         \x20   type: workload\n\
         \x20   mix: {{get: 1}}\n\
         \x20   endpoints: {endpoints}\n\
         \x20   ops: 1\n"
    )
}

/// A bad template in the last stage fails the load, at its line and
/// column and key, before any stage could run; so does one inherited from
/// the plan, at the plan's key.
#[test]
fn bad_endpoint_templates_fail_at_load_where_they_are() {
    let ok = three_stages("[\"http://a:9000\", \"http://b{1...8}:9000\"]");
    assert_eq!(plan(&ok).stages[2].endpoints.len(), 2);
    let e = parse(
        &three_stages("[\"http://a:9000\", \"http://b{1..8}:9000\"]"),
        "p.yaml",
    )
    .unwrap_err();
    assert_eq!((e.line, e.column), (10, 34), "{e}");
    assert_eq!(e.key, "stages[2].endpoints[1]");
    assert!(e.message.contains("http://b{1..8}:9000"), "{e}");
    assert!(e.message.contains("three dots"), "{e}");
    assert!(e.to_string().starts_with("p.yaml:10:34: "), "located: {e}");

    // The `{url, pool}` form: at the url's value.
    let e = parse(
        &three_stages("[{pool: 0, url: \"http://b{8...1}:9000\"}]"),
        "p.yaml",
    )
    .unwrap_err();
    assert_eq!(
        (e.line, e.column, e.key.as_str()),
        (10, 32, "stages[2].endpoints[0].url"),
        "{e}"
    );
    assert!(e.message.contains("backwards"), "{e}");

    // Too many in one list, counted over its entries.
    let half = format!(
        "\"h{{1...{}}}\"",
        crate::store::multi::MAX_ENDPOINTS / 2 + 1
    );
    let e = parse(&three_stages(&format!("[{half}, {half}]")), "p.yaml").unwrap_err();
    assert_eq!(
        (e.line, e.key.as_str()),
        (10, "stages[2].endpoints[1]"),
        "{e}"
    );
    assert!(e.message.contains("more than"), "{e}");

    // An empty entry, and `@` without a file; a file is the agent's to read.
    for bad in ["[\"\"]", "[\"@\"]"] {
        let e = parse(&three_stages(bad), "p.yaml").unwrap_err();
        assert_eq!(
            (e.line, e.key.as_str()),
            (10, "stages[2].endpoints[0]"),
            "{bad}: {e}"
        );
    }
    plan(&three_stages("[\"@/nonexistent/on/this/host\"]"));

    // Inherited from the plan: reported at the plan's key.
    let inherited = "name: ep\ntarget: s3://b/p\nobjects: {count: 1, size: 1}\n\
                     endpoints: [\"http://h{1...}:1\"]\n\
                     stages:\n  - {name: w, type: workload, mix: {get: 1}, ops: 1}\n";
    let e = parse(inherited, "p.yaml").unwrap_err();
    assert_eq!(
        (e.line, e.column, e.key.as_str()),
        (4, 13, "endpoints[0]"),
        "{e}"
    );
}

#[test]
fn control_options_decode_and_default() {
    let c = plan(FULL).control;
    assert_eq!(c.on_agent_loss, crate::plan::AgentLossPolicy::Continue);
    assert_eq!(c.agent_timeout, Duration::from_secs(4));
    assert_eq!(c.controller_timeout, Duration::from_secs(7));
    assert_eq!(c.max_clock_offset, Some(Duration::from_millis(250)));
    assert_eq!(c.max_clock_uncertainty, Duration::from_millis(2));
    assert_eq!(c.clock_check, crate::plan::ClockCheck::Refuse);
    assert_eq!(c.collect_interval, Some(Duration::from_secs(2)));
    let minimal = "name: m\ntarget: mem://m\nobjects: {count: 1, size: 1}\nstages:\n  - {name: w, type: workload, mix: {get: 1}, ops: 1}\n";
    let d = parse(minimal, "m.yaml").unwrap().control;
    assert_eq!(d, crate::plan::ControlOptions::default());
    let bad = minimal.replace("stages:", "control: {on_agent_los: abort}\nstages:");
    let e = parse(&bad, "m.yaml").unwrap_err();
    assert!(e.message.contains("unknown key `on_agent_los`"), "{e}");
    assert_eq!(e.hint.as_deref(), Some("did you mean `on_agent_loss`?"));
    let bad = minimal.replace("stages:", "control: {on_agent_loss: retry}\nstages:");
    let e = parse(&bad, "m.yaml").unwrap_err();
    assert!(
        e.message.contains("unknown `on_agent_loss` value `retry`"),
        "{e}"
    );
}

#[test]
fn collect_interval_is_a_duration_or_off() {
    let minimal = "name: m\ntarget: mem://m\nobjects: {count: 1, size: 1}\nstages:\n  - {name: w, type: workload, mix: {get: 1}, ops: 1}\n";
    let with = |v: &str| {
        minimal.replace(
            "stages:",
            &format!("control: {{collect_interval: {v}}}\nstages:"),
        )
    };
    let interval = |v: &str| parse(&with(v), "m.yaml").map(|p| p.control.collect_interval);
    assert_eq!(
        parse(minimal, "m.yaml").unwrap().control.collect_interval,
        Some(Duration::from_secs(10))
    );
    assert_eq!(
        interval("1500ms").unwrap(),
        Some(Duration::from_millis(1500))
    );
    assert_eq!(interval("1m").unwrap(), Some(Duration::from_secs(60)));
    for off in ["off", "0", "0s", "\"off\""] {
        assert_eq!(interval(off).unwrap(), None, "{off}");
    }
    // Both forms survive the canonical YAML the agents load again.
    for v in ["2s", "off"] {
        let p = parse(&with(v), "m.yaml").unwrap();
        assert_eq!(parse(&p.to_yaml(), "again").unwrap(), p, "{v}");
    }
    let e = interval("soon").unwrap_err();
    assert!(e.message.contains("invalid `collect_interval`"), "{e}");
    assert!(e.message.contains("`off`"), "{e}");
    assert_eq!((e.line, e.column), (4, 29), "{e}");
    let e = interval("10ms").unwrap_err();
    assert!(
        e.message.contains("at least 100ms (or `off`), got 10ms"),
        "{e}"
    );
    let e = interval("-1s").unwrap_err();
    assert!(e.message.contains("cannot be negative"), "{e}");
    let e = interval("[1s]").unwrap_err();
    assert!(e.message.contains("must be a string"), "{e}");
    let e = parse(
        &minimal.replace("stages:", "control: {collect_intervall: 1s}\nstages:"),
        "m.yaml",
    )
    .unwrap_err();
    assert_eq!(e.hint.as_deref(), Some("did you mean `collect_interval`?"));
}

/// What a plan says cannot make an agent allocate without bound: each
/// count or size that sizes memory is refused past its bound, at its key.
#[test]
fn sizes_that_size_memory_are_bounded_where_they_are_written() {
    let stage = |line: &str| {
        format!(
            "name: p\ntarget: file:///tmp/x\nobjects: {{count: 10, size: 1KiB}}\nstages:\n  \
             - name: s\n    type: workload\n    mix: {{put: 1}}\n    duration: 1s\n    {line}\n"
        )
    };
    let err = |text: &str| parse(text, "b.yaml").unwrap_err();

    let at_bound = format!("concurrency: {MAX_CONCURRENCY}");
    assert_eq!(
        plan(&stage(&at_bound)).stages[0].concurrency,
        MAX_CONCURRENCY
    );
    let e = err(&stage(&format!("concurrency: {}", MAX_CONCURRENCY + 1)));
    assert_eq!(
        (e.line, e.key.as_str()),
        (9, "stages[0].concurrency"),
        "{e}"
    );
    assert!(e.message.contains("too large"), "{e}");

    let at_bound = format!("objects: {{count: {MAX_OBJECTS}, size: 1KiB}}");
    assert_eq!(plan(&stage(&at_bound)).stages[0].objects.count, MAX_OBJECTS);
    let e = err(&stage(&format!(
        "objects: {{count: {}, size: 1KiB}}",
        MAX_OBJECTS + 1
    )));
    assert_eq!(
        (e.line, e.key.as_str()),
        (9, "stages[0].objects.count"),
        "{e}"
    );

    assert_eq!(
        plan(&stage("part_size: 5GiB")).stages[0].part_size,
        MAX_PART_SIZE
    );
    let e = err(&stage("part_size: 6GiB"));
    assert_eq!(
        (e.line, e.column, e.key.as_str()),
        (9, 16, "stages[0].part_size"),
        "{e}"
    );
    assert!(e.message.contains("made whole in memory"), "{e}");
    assert!(e.to_string().starts_with("b.yaml:9:16: "), "{e}");

    let search = format!(
        "search: {{vary: concurrency, from: 1, to: {}, step: 1s}}",
        MAX_CONCURRENCY + 1
    );
    let e = err(&stage(&search).replace("type: workload", "type: search"));
    assert_eq!(e.key, "stages[0].search.to", "{e}");
}
