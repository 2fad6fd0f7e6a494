//! Which clock correction each agent's op-log gets when the timeline is
//! merged, read from `run.json`: the one place both `controller run` and
//! `controller collect` take it from, so a timeline merged again later is
//! the same timeline.
//!
//! The controller measures every agent's clock before each entry of
//! `stages[]` (a stage run whole, or one of its sub-steps) and at the end
//! of the run (`stages[].agents[].clock`, `agents[].clock_end`). An
//! entry's log is corrected by the offset measured just before it, moving
//! linearly towards the agent's next measurement (the next entry in
//! `stages[]` that has one, or the end), by each op's raw start time: a
//! clock that drifts (a few ppm is common, 100 ppm a bad oscillator: 0.36 s
//! an hour) is then corrected all through a long stage, not only at its
//! start. See `chorus_common::oplog::merge::ClockCorrection` for how the
//! offset is interpolated and why it is not extrapolated.
//!
//! A log whose entry has no measurement for its agent is an error naming
//! the agent and the stage: an offset of 0 would put its ops anywhere on
//! the timeline (seconds off on hosts without NTP) without a word.

use std::path::PathBuf;

use chorus_common::clock::ClockEstimate;
use chorus_common::oplog::merge::{ClockCorrection, MergeInput};

use super::results::{RunMeta, StageMeta};

/// A measurement as the merge takes it: `(raw agent time, offset)`. The
/// controller's time of the sample plus the offset is the agent's clock
/// then. `None` for times past `i64` (a damaged run.json).
fn measurement(clock: &ClockEstimate) -> Option<(i64, i64)> {
    Some((
        clock.measured_at_ns.checked_add(clock.offset_ns)?,
        clock.offset_ns,
    ))
}

/// Agent `id`'s clock measured before entry `s`, if any.
fn clock_in<'a>(s: &'a StageMeta, id: &str) -> Option<&'a ClockEstimate> {
    s.agents.iter().find(|a| a.id == id)?.clock.as_ref()
}

/// How an entry is named in errors: `stage 1 `load``, plus its step.
pub fn entry_name(index: u32, step: u32, name: &str) -> String {
    if step == 0 {
        format!("stage {index} `{name}`")
    } else {
        format!("stage {index} `{name}` step {step}")
    }
}

/// The clock correction of agent `id`'s op-log of entry (`index`, `step`)
/// of `stages[]`: from the agent's clock in that entry, linearly to its
/// clock in the next entry (array order) that has one, else to its
/// `clock_end`, else constant. An error, naming the agent and stage, when
/// the entry is not there or has no clock for the agent.
pub fn stage_correction(
    meta: &RunMeta,
    id: &str,
    index: u32,
    step: u32,
) -> anyhow::Result<ClockCorrection> {
    let Some(at) = meta
        .stages
        .iter()
        .position(|s| s.index == index && s.step == step)
    else {
        let what = match step {
            0 => format!("stage {index}"),
            _ => format!("stage {index} step {step}"),
        };
        anyhow::bail!(
            "no clock correction for agent {id}'s op-log of {what}: run.json lists no such stage"
        );
    };
    let entry = &meta.stages[at];
    let damaged = || {
        anyhow::anyhow!(
            "agent {id}'s clock in run.json overflows (measured_at_ns + offset_ns), {}",
            entry_name(index, step, &entry.name)
        )
    };
    let start = clock_in(entry, id).ok_or_else(|| {
        anyhow::anyhow!(
            "no clock correction for agent {id}'s op-log of {}: run.json has no clock \
             measured for that agent before it",
            entry_name(index, step, &entry.name)
        )
    })?;
    let start = measurement(start).ok_or_else(damaged)?;
    let next = meta.stages[at + 1..]
        .iter()
        .find_map(|s| clock_in(s, id))
        .or_else(|| meta.agents.iter().find(|a| a.id == id)?.clock_end.as_ref());
    match next {
        Some(next) => Ok(ClockCorrection::between(
            start,
            measurement(next).ok_or_else(damaged)?,
        )),
        None => Ok(ClockCorrection::constant(start.1)),
    }
}

/// One op-log to merge: its file, the agent that wrote it, and its entry
/// of `stages[]` (stage index, step).
pub struct LogToMerge {
    pub path: PathBuf,
    pub agent: String,
    pub index: u32,
    pub step: u32,
}

/// Each log with its correction, for the merge; a log without one is left
/// out and its error returned in the second list (for `timeline.errors`),
/// so one agent's missing clock does not cost every other agent's ops.
pub fn merge_inputs(
    meta: &RunMeta,
    logs: impl IntoIterator<Item = LogToMerge>,
) -> (Vec<MergeInput>, Vec<String>) {
    let mut inputs = Vec::new();
    let mut errors = Vec::new();
    for log in logs {
        match stage_correction(meta, &log.agent, log.index, log.step) {
            Ok(c) => inputs.push(MergeInput::with_clock(log.path, c)),
            Err(e) => errors.push(format!("{e:#} ({} not merged)", log.path.display())),
        }
    }
    (inputs, errors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::results::{AgentMeta, AgentStageMeta};

    const S: i64 = 1_000_000_000;

    fn clock(at: i64, offset: i64) -> Option<ClockEstimate> {
        Some(ClockEstimate {
            offset_ns: offset,
            uncertainty_ns: 1000,
            rtt_ns: 2000,
            samples: 8,
            measured_at_ns: at,
        })
    }

    fn agent(id: &str, start: Option<ClockEstimate>, end: Option<ClockEstimate>) -> AgentMeta {
        AgentMeta {
            index: 0,
            id: id.into(),
            address: String::new(),
            host: Default::default(),
            authenticated: false,
            clock_start: start,
            clock_end: end,
            drift_ppm: None,
            overrides: Default::default(),
        }
    }

    fn entry(index: u32, step: u32, clocks: &[(&str, Option<ClockEstimate>)]) -> StageMeta {
        StageMeta {
            index,
            step,
            name: format!("s{index}"),
            agents: clocks
                .iter()
                .map(|(id, c)| AgentStageMeta {
                    id: id.to_string(),
                    clock: *c,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    fn meta(agents: Vec<AgentMeta>, stages: Vec<StageMeta>) -> RunMeta {
        RunMeta {
            agents,
            stages,
            ..Default::default()
        }
    }

    #[test]
    fn a_stage_runs_from_its_measurement_to_the_next() {
        let meta = meta(
            vec![
                agent("a", clock(0, 5_000), clock(300 * S, 35_000)),
                agent("b", clock(0, -7), None),
            ],
            vec![
                entry(
                    0,
                    0,
                    &[("a", clock(100 * S, 10_000)), ("b", clock(100 * S, -7))],
                ),
                entry(1, 0, &[("a", clock(200 * S, 20_000))]),
            ],
        );
        // Stage 0 of a: 10 µs at 100 s, 20 µs at 200 s (raw times).
        let c = stage_correction(&meta, "a", 0, 0).unwrap();
        assert_eq!(c.offset_at(100 * S + 10_000), 10_000);
        assert_eq!(c.offset_at(150 * S + 15_000), 15_000);
        assert_eq!(c.offset_at(200 * S + 20_000), 20_000);
        // The last stage runs to the end measurement.
        let c = stage_correction(&meta, "a", 1, 0).unwrap();
        assert_eq!(c.offset_at(250 * S + 27_500), 27_500);
        // b was not measured again: its offset stays.
        let c = stage_correction(&meta, "b", 0, 0).unwrap();
        assert_eq!(c, ClockCorrection::constant(-7));
    }

    #[test]
    fn a_missing_correction_is_an_error_naming_agent_and_stage() {
        let meta = meta(
            vec![
                agent("a", clock(0, 5), None),
                agent("b", clock(0, -7), None),
            ],
            vec![
                entry(0, 0, &[("a", clock(S, 5)), ("b", clock(S, -7))]),
                // b's measurement before stage 1 failed; c never ran it.
                entry(1, 0, &[("a", clock(2 * S, 5)), ("b", None)]),
            ],
        );
        let e = stage_correction(&meta, "b", 1, 0).unwrap_err().to_string();
        assert!(e.contains("agent b") && e.contains("stage 1 `s1`"), "{e}");
        let e = stage_correction(&meta, "c", 1, 0).unwrap_err().to_string();
        assert!(e.contains("agent c") && e.contains("stage 1 `s1`"), "{e}");
        let e = stage_correction(&meta, "a", 2, 0).unwrap_err().to_string();
        assert!(e.contains("agent a") && e.contains("stage 2"), "{e}");
        // Not a quiet 0 even though the agent's first clock is known.
        assert!(stage_correction(&meta, "b", 0, 0).is_ok());

        // The merge leaves such a log out and says why; others go in.
        let log = |agent: &str, index| LogToMerge {
            path: PathBuf::from(format!("{agent}-{index}.tsv.zst")),
            agent: agent.into(),
            index,
            step: 0,
        };
        let (inputs, errors) = merge_inputs(&meta, [log("a", 1), log("b", 1), log("b", 0)]);
        assert_eq!(inputs.len(), 2);
        assert_eq!(errors.len(), 1);
        assert!(errors[0].contains("agent b") && errors[0].contains("b-1.tsv.zst"));
    }

    #[test]
    fn steps_are_keyed_by_index_and_step_and_run_to_the_next_entry() {
        // Stage 1 runs as steps 1, 2, 3; b is not measured before step 2.
        let meta = meta(
            vec![
                agent("a", clock(0, 0), clock(500 * S, 50_000)),
                agent("b", clock(0, 0), None),
            ],
            vec![
                entry(0, 0, &[("a", clock(0, 0)), ("b", clock(0, 0))]),
                entry(
                    1,
                    1,
                    &[("a", clock(100 * S, 10_000)), ("b", clock(100 * S, 1_000))],
                ),
                entry(1, 2, &[("a", clock(200 * S, 20_000)), ("b", None)]),
                entry(
                    1,
                    3,
                    &[("a", clock(300 * S, 30_000)), ("b", clock(300 * S, 3_000))],
                ),
            ],
        );
        // a's step 2: 20 µs at 200 s to 30 µs at 300 s (step 3's clock).
        let c = stage_correction(&meta, "a", 1, 2).unwrap();
        assert_eq!(c.offset_at(250 * S + 25_000), 25_000);
        // a's step 3, the last entry: to the end measurement.
        let c = stage_correction(&meta, "a", 1, 3).unwrap();
        assert_eq!(c.offset_at(400 * S + 40_000), 40_000);
        // b's step 1 skips step 2 (no clock for b) to step 3's.
        let c = stage_correction(&meta, "b", 1, 1).unwrap();
        assert_eq!(c.offset_at(200 * S + 2_000), 2_000);
        // Stage 0 runs to step 1's clock, not to a step of its own index.
        let c = stage_correction(&meta, "a", 0, 0).unwrap();
        assert_eq!(c.offset_at(50 * S + 5_000), 5_000);
        // b's step 2 has no clock: an error naming the step.
        let e = stage_correction(&meta, "b", 1, 2).unwrap_err().to_string();
        assert!(
            e.contains("agent b") && e.contains("stage 1 `s1` step 2"),
            "{e}"
        );
        // A step that is not there, and step 0 of a stage run as steps.
        let e = stage_correction(&meta, "a", 1, 0).unwrap_err().to_string();
        assert!(e.contains("stage 1") && e.contains("no such stage"), "{e}");
        let e = stage_correction(&meta, "a", 1, 4).unwrap_err().to_string();
        assert!(e.contains("stage 1 step 4"), "{e}");
    }
}
