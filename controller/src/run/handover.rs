//! What the agents still in a run take over when others leave mid-stage
//! (`on_agent_loss: continue`), and what the summary says was not done.
//!
//! A stage bounded by ops or bytes, or by its key space (a prepare, a
//! dataset's files), still performs its whole budget: after its steps, a
//! *hand-over* step runs the rest on the agents still in. Its budget is
//! the stage's less every op the stage's counted steps performed (a lost
//! agent's ops are not counted, so they are redone; a stopped agent's
//! are); in a key walk (prepare, cleanup, a dataset's files), the agents
//! take the departed agents' keys (`chorus_common::workload::Deal`). The hand-over is a step of its own,
//! `<stage>/handover`, with its own summary row and op-log, so what was
//! measured under the loss stays apart from what was added after it.
//!
//! Where nothing can be taken over (a stage bounded by time, a search's
//! steps, a dataset rewritten with `overwrite`), the stage's summary says
//! so in a sentence, and `run.json` keeps it in `handovers`.

use chorus_common::plan::{Stage, StageKind as PlanKind, StepSpec};
use serde::{Deserialize, Serialize};

use super::kinds::{Step, StepResult};

/// One stage's hand-over (`run.json` `handovers`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct HandoverMeta {
    /// The stage's index in the plan and its name.
    pub index: u32,
    pub stage: String,
    /// Agents that left during the stage, by id.
    pub departed: Vec<String>,
    /// The hand-over step's name, when one ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// Ops and bytes the hand-over was given (none: not bounded so).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ops: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// What the stage did not do in the end, in ops and bytes of its
    /// budget (0 when all of it was done).
    #[serde(default)]
    pub ops_not_done: u64,
    #[serde(default)]
    pub bytes_not_done: u64,
    /// What happened, in one sentence (also a warning of the stage).
    pub text: String,
}

/// What to do after a stage's steps, agents having left in them.
#[derive(Debug, PartialEq)]
pub enum Next {
    /// Run this step on the agents still in.
    Step(StepSpec),
    /// Nothing can be taken over; the sentence says what was not done.
    NotDone(String),
    /// The budget is done (or there is none to take over).
    Done,
}

/// The budget left of a stage, from the steps it ran (the hand-overs
/// among them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Left {
    pub ops: Option<u64>,
    pub bytes: Option<u64>,
}

impl Left {
    /// What `stage`'s ops and bytes limits have left after `done`.
    pub fn of(stage: &Stage, done: &[&StepResult]) -> Left {
        let ops: u64 = done.iter().map(|r| r.metrics.total_ops()).sum();
        let bytes: u64 = done.iter().map(|r| r.metrics.total_bytes()).sum();
        Left {
            ops: stage.stop.ops.map(|o| o.saturating_sub(ops)),
            bytes: stage.stop.bytes.map(|b| b.saturating_sub(bytes)),
        }
    }

    /// Whether any limit is still short (a limit reached ends the stage:
    /// the first reached wins, as on an agent).
    fn short(&self) -> bool {
        self.ops.is_none_or(|o| o > 0)
            && self.bytes.is_none_or(|b| b > 0)
            && (self.ops.is_some() || self.bytes.is_some())
    }
}

/// The next step after stage `stage`'s steps `done`, the last of which
/// lost agents (`departed`: every agent that left during the stage);
/// `next_index` is the index a new step takes. A step stopped before its
/// limits (Ctrl-C, the stage kind) hands nothing over.
pub fn next(stage: &Stage, done: &[&StepResult], departed: &[String], next_index: u32) -> Next {
    if departed.is_empty() || done.iter().any(|r| r.ended_early.is_some()) {
        return Next::Done;
    }
    let who = departed.join(", ");
    // The first is `<stage>/handover`, a second (another loss in it)
    // `<stage>/handover-2`: each step's name is its own in the summary.
    let earlier = done
        .iter()
        .filter(|r| matches!(&r.step, Step::Sub(s) if s.handover))
        .count();
    let name = match earlier {
        0 => format!("{}/handover", stage.name),
        n => format!("{}/handover-{}", stage.name, n + 1),
    };
    let step = |ops: Option<u64>, bytes: Option<u64>| {
        Next::Step(StepSpec {
            index: next_index,
            name: name.clone(),
            ops,
            bytes,
            handover: true,
            ..Default::default()
        })
    };
    let engine_driven = stage.search.is_none()
        && stage.until.is_none()
        && stage.replay.is_none()
        && stage.training.train.is_none()
        && stage.training.checkpoint.is_none();
    if !engine_driven {
        return Next::NotDone(format!(
            "agent {who} left during stage `{}`; the rest of its steps ran on the other agents and what it had left of its step was not redone",
            stage.name
        ));
    }
    // A key walk hands over the departed agents' keys, dealt over the
    // others; after a loss in a hand-over, again (a prepare skips keys
    // already there, or rewrites them with `overwrite`; a cleanup lists
    // what is there now and spares what was there before the run, which
    // every agent's first look at the key space recorded whole).
    let key_walk = matches!(
        stage.kind,
        PlanKind::Prepare | PlanKind::Cleanup | PlanKind::Dataset
    );
    match stage.kind {
        PlanKind::Dataset if stage.overwrite => {
            return Next::NotDone(format!(
                "agent {who} left during `{}`: its dataset files may be missing or partly written (with `overwrite: true` a hand-over would rewrite every file); run the stage again",
                stage.name
            ));
        }
        _ => {}
    }
    let left = Left::of(stage, done);
    if key_walk {
        return step(left.ops, left.bytes);
    }
    if stage.stop.duration.is_some() {
        return Next::NotDone(format!(
            "agent {who} left during `{}`, which is bounded by time: the others ran to its end at their own share of the load, which was not raised",
            stage.name
        ));
    }
    if left.short() {
        return step(left.ops, left.bytes);
    }
    Next::Done
}

/// `run.json`'s record of a stage's hand-over: what was given, what is
/// still not done, and the sentence for the summary.
pub fn record(
    index: u32,
    stage: &Stage,
    departed: &[String],
    ran: Option<&StepSpec>,
    done: &[&StepResult],
) -> HandoverMeta {
    let left = Left::of(stage, done);
    let (ops_not_done, bytes_not_done) = (left.ops.unwrap_or(0), left.bytes.unwrap_or(0));
    let who = departed.join(", ");
    let text = match ran {
        Some(s) if ops_not_done == 0 && bytes_not_done == 0 => format!(
            "agent {who} left during `{}`: the other agents took over its part in step `{}`{}",
            stage.name,
            s.name,
            budget_words(s.ops, s.bytes)
        ),
        Some(s) => format!(
            "agent {who} left during `{}`: step `{}` took over{}, and {} of the stage's budget are still not done",
            stage.name,
            s.name,
            budget_words(s.ops, s.bytes),
            budget_words(left.ops, left.bytes)
                .trim_start_matches(" (")
                .trim_end_matches(')'),
        ),
        None => String::new(),
    };
    HandoverMeta {
        index,
        stage: stage.name.clone(),
        departed: departed.to_vec(),
        step: ran.map(|s| s.name.clone()),
        ops: ran.and_then(|s| s.ops),
        bytes: ran.and_then(|s| s.bytes),
        ops_not_done,
        bytes_not_done,
        text,
    }
}

/// ` (12,000 ops, 3 GiB)` for what a budget names; empty for none.
fn budget_words(ops: Option<u64>, bytes: Option<u64>) -> String {
    let mut parts = Vec::new();
    if let Some(o) = ops {
        parts.push(format!("{o} ops"));
    }
    if let Some(b) = bytes {
        parts.push(format!("{b} bytes"));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chorus_common::metrics::StageMetrics;
    use chorus_common::metrics::summary::StageSummary;
    use chorus_common::op::OpKind;

    fn stage(yaml_stage: &str) -> Stage {
        let plan = chorus_common::plan::parse(
            &format!(
                "name: p\ntarget: mem://t\nobjects: {{count: 100, size: 1KiB}}\nstages:\n  - {yaml_stage}\n"
            ),
            "p.yaml",
        )
        .unwrap();
        plan.stages[0].clone()
    }

    fn ran(ops: u64, bytes_each: u64, early: Option<&str>) -> StepResult {
        let mut metrics = StageMetrics::default();
        for _ in 0..ops {
            metrics.record(OpKind::Get, 1_000, bytes_each, true);
        }
        StepResult {
            step: Step::Whole,
            summary: StageSummary::from_metrics("s", "workload", 2, 1.0, &metrics),
            metrics,
            client_bound: Vec::new(),
            ended_early: early.map(str::to_string),
            schedules: Vec::new(),
            ranks: Vec::new(),
            spans: Vec::new(),
        }
    }

    #[test]
    fn an_op_budget_is_handed_over_in_full() {
        let s = stage("{name: w, type: workload, mix: {get: 1}, ops: 300}");
        let first = ran(200, 10, None);
        let who = vec!["c".to_string()];
        let Next::Step(step) = next(&s, &[&first], &who, 1) else {
            panic!("no hand-over");
        };
        assert_eq!(step.ops, Some(100));
        assert_eq!(step.name, "w/handover");
        assert!(step.handover);
        let second = ran(100, 10, None);
        // Another loss in the hand-over, its budget done anyway: nothing.
        assert_eq!(next(&s, &[&first, &second], &who, 2), Next::Done);
        let m = record(3, &s, &who, Some(&step), &[&first, &second]);
        assert_eq!((m.ops, m.ops_not_done), (Some(100), 0));
        assert!(
            m.text
                .contains("took over its part in step `w/handover` (100 ops)"),
            "{}",
            m.text
        );
        // Another loss in the hand-over, short of its budget: a second.
        let mut cut = ran(60, 10, None);
        cut.step = Step::Sub(step.clone());
        let Next::Step(again) = next(&s, &[&first, &cut], &who, 2) else {
            panic!("no second hand-over");
        };
        assert_eq!((again.name.as_str(), again.ops), ("w/handover-2", Some(40)));
        // Short after the hand-over (another agent left in it): said.
        let m = record(3, &s, &who, Some(&step), &[&first, &ran(60, 10, None)]);
        assert_eq!(m.ops_not_done, 40);
        assert!(
            m.text
                .contains("40 ops of the stage's budget are still not done"),
            "{}",
            m.text
        );
    }

    #[test]
    fn bytes_budgets_and_stopped_runs() {
        let s = stage("{name: w, type: workload, mix: {get: 1}, bytes: 1000}");
        let who = vec!["c".to_string()];
        let Next::Step(step) = next(&s, &[&ran(30, 10, None)], &who, 1) else {
            panic!("no hand-over");
        };
        assert_eq!((step.ops, step.bytes), (None, Some(700)));
        // Ctrl-C: nothing is taken over.
        assert_eq!(
            next(&s, &[&ran(30, 10, Some("interrupted"))], &who, 1),
            Next::Done
        );
        // No one left: nothing to do.
        assert_eq!(next(&s, &[&ran(30, 10, None)], &[], 1), Next::Done);
    }

    #[test]
    fn key_walks_take_over_keys_and_the_rest_is_said() {
        let who = vec!["c".to_string()];
        let p = stage("{name: prep, type: prepare}");
        let Next::Step(step) = next(&p, &[&ran(66, 0, None)], &who, 1) else {
            panic!("no hand-over");
        };
        assert!(step.handover);
        let c = stage("{name: clean, type: cleanup}");
        let Next::Step(step) = next(&c, &[&ran(66, 0, None)], &who, 1) else {
            panic!("a cleanup hands over its keys too");
        };
        assert!(step.handover);
        let t = stage("{name: w, type: workload, mix: {get: 1}, duration: 10s}");
        let Next::NotDone(why) = next(&t, &[&ran(66, 0, None)], &who, 1) else {
            panic!("time is not handed over");
        };
        assert!(why.contains("bounded by time"), "{why}");
    }
}
