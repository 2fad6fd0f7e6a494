//! The two things the shipped kinds do not use yet, each through a
//! test-only kind on a whole in-process run (two embedded agents over
//! loopback gRPC, a `mem://` target): a stage run as sub-steps, and a step
//! ended early from its live seconds.

use std::collections::BTreeMap;
use std::sync::Mutex;

use chorus_common::plan::{Stage, StageKind as PlanKind, StepSpec};

use super::{StageKind, Step, StepResult, Watch, for_stage};
use crate::run::series::Second;
use crate::run::test_run::{json, run_plan, summary_counts, timeline_stages};

/// What the stepped kind was told of the steps before each of its choices.
static SEEN: Mutex<Vec<Vec<u64>>> = Mutex::new(Vec::new());

/// Runs a workload as three steps of 100, 200 and 300 ops.
struct Stepped;

impl StageKind for Stepped {
    fn next_step(&mut self, stage: &Stage, done: &[StepResult]) -> Option<Step> {
        let counts = done
            .iter()
            .map(|d| d.summary.ops.last().map_or(0, |o| o.count));
        SEEN.lock().unwrap().push(counts.collect());
        assert!(done.iter().all(|d| d.ended_early.is_none()));
        let index = done.len() as u32 + 1;
        (index <= 3).then(|| {
            Step::Sub(StepSpec {
                index,
                name: format!("{}/step-{index:02}", stage.name),
                ops: Some(100 * u64::from(index)),
                ..Default::default()
            })
        })
    }
}

const PLAN: &str = "name: TARGET
target: mem://TARGET
objects: {count: 200, size: 1KiB}
stages:
  - name: fill
    type: prepare
    concurrency: 2
  - name: w
    type: workload
    concurrency: 2
    duration: 60s
    mix: {get: 1}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_runs_as_sub_steps_each_under_its_own_name() {
    let tmp = tempfile::tempdir().unwrap();
    let plan = PLAN.replace("TARGET", "kinds-steps");
    let pick: super::KindPicker = |s| match s.kind {
        PlanKind::Workload => Box::new(Stepped),
        _ => for_stage(s),
    };
    let dir = run_plan(&plan, pick, tmp.path()).await;

    let want: BTreeMap<String, u64> = [
        ("fill", 200),
        ("w/step-01", 100),
        ("w/step-02", 200),
        ("w/step-03", 300),
    ]
    .into_iter()
    .map(|(n, c)| (n.to_string(), c))
    .collect();
    assert_eq!(summary_counts(&dir), want, "summary");
    assert_eq!(timeline_stages(&dir), want, "timeline");
    // Each step is its own entry of run.json, with its own clocks.
    let run = json(&dir.join("run.json"));
    let steps: Vec<(u64, u64, &str)> = run["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let (index, step) = (s["index"].as_u64().unwrap(), s["step"].as_u64().unwrap());
            assert!(s["agents"][0]["clock"].is_object(), "{s}");
            (index, step, s["name"].as_str().unwrap())
        })
        .collect();
    assert_eq!(
        steps,
        [
            (0, 0, "fill"),
            (1, 1, "w/step-01"),
            (1, 2, "w/step-02"),
            (1, 3, "w/step-03")
        ]
    );
    assert_eq!(run["status"], "completed");
    // The kind chose each step knowing the merged results of those before.
    let seen = SEEN.lock().unwrap().clone();
    assert_eq!(
        seen,
        [vec![], vec![100], vec![100, 200], vec![100, 200, 300]]
    );
}

/// Ends a step once it has seen two complete cluster seconds with ops.
#[derive(Default)]
struct Steady {
    busy_seconds: u32,
}

impl StageKind for Steady {
    fn next_step(&mut self, _stage: &Stage, done: &[StepResult]) -> Option<Step> {
        done.is_empty().then_some(Step::Whole)
    }

    fn watch(&mut self, second: &Second) -> Watch {
        self.busy_seconds += u32::from(second.ops_per_s > 0.0);
        if self.busy_seconds >= 2 {
            Watch::Stop("steady (test kind)".into())
        } else {
            Watch::Continue
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kind_ends_a_step_early_from_what_it_sees_live() {
    let tmp = tempfile::tempdir().unwrap();
    let plan = PLAN.replace("TARGET", "kinds-steady");
    let pick: super::KindPicker = |s| match s.kind {
        PlanKind::Workload => Box::<Steady>::default(),
        _ => for_stage(s),
    };
    let dir = run_plan(&plan, pick, tmp.path()).await;

    let run = json(&dir.join("run.json"));
    assert_eq!(run["status"], "completed");
    let w = &run["stages"][1];
    assert_eq!(w["name"], "w");
    assert_eq!(w["ended_early"], "steady (test kind)");
    for a in w["agents"].as_array().unwrap() {
        assert_eq!(a["status"], "stopped", "{a}");
        assert_eq!(a["stopped_by"], "steady (test kind)", "{a}");
    }
    // Stopped long before its 60 s, and what ran is all accounted for.
    let summary = json(&dir.join("summary.json"));
    let elapsed = summary["stages"][1]["elapsed_s"].as_f64().unwrap();
    assert!(elapsed < 30.0, "the stage ran {elapsed} s");
    let counts = summary_counts(&dir);
    assert!(counts["w"] > 0);
    assert_eq!(counts, timeline_stages(&dir));
}
