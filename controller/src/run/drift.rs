//! Which clock correction each agent's op-log gets when the timeline is
//! merged, read from `run.json`: the one place both `controller run` and
//! `controller collect` take it from, so a timeline merged again later is
//! the same timeline.
//!
//! The controller measures every agent's clock before each stage and at
//! the end of the run (`stages[].agents[].clock`, `agents[].clock_end`).
//! A stage's log is corrected by the offset measured just before it,
//! moving linearly towards the agent's next measurement (before its next
//! stage, or at the end), by each op's raw start time: a clock that drifts
//! (a few ppm is common, 100 ppm a bad oscillator: 0.36 s an hour) is then
//! corrected all through a long stage, not only at its start. See
//! `chorus_common::oplog::merge::ClockCorrection` for how the offset is
//! interpolated and why it is not extrapolated.

use chorus_common::oplog::merge::ClockCorrection;
use serde_json::Value;

/// A measurement as `run.json` holds it: `(raw agent time, offset)`. The
/// controller's time of the sample plus the offset is the agent's clock
/// then.
fn measurement(clock: &Value) -> Option<(i64, i64)> {
    let at = clock["measured_at_ns"].as_i64()?;
    let offset = clock["offset_ns"].as_i64()?;
    Some((at.checked_add(offset)?, offset))
}

/// The clock correction of agent `id`'s op-log of stage `index`, from a
/// run's `run.json`. Without a measurement for that stage, the agent's
/// first one (or none at all) is used as a constant.
pub fn stage_correction(meta: &Value, id: &str, index: u32) -> ClockCorrection {
    fn agent<'a>(list: &'a Value, id: &str) -> Option<&'a Value> {
        list.as_array()?
            .iter()
            .find(|a| a["id"].as_str() == Some(id))
    }
    let stages = meta["stages"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let stage_clock = |s: &Value| agent(&s["agents"], id).and_then(|a| measurement(&a["clock"]));
    let at = |s: &Value| s["index"].as_u64();
    let start = stages
        .iter()
        .find(|s| at(s) == Some(u64::from(index)))
        .and_then(stage_clock);
    let Some(start) = start else {
        let first = agent(&meta["agents"], id).and_then(|a| measurement(&a["clock_start"]));
        return ClockCorrection::constant(first.map_or(0, |(_, off)| off));
    };
    // The agent's next measurement: its earliest later stage, else the end.
    let next = stages
        .iter()
        .filter(|s| at(s).is_some_and(|i| i > u64::from(index)))
        .filter_map(|s| Some((at(s)?, stage_clock(s)?)))
        .min_by_key(|(i, _)| *i)
        .map(|(_, m)| m)
        .or_else(|| agent(&meta["agents"], id).and_then(|a| measurement(&a["clock_end"])));
    match next {
        Some(next) => ClockCorrection::between(start, next),
        None => ClockCorrection::constant(start.1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn clock(at: i64, offset: i64) -> Value {
        json!({"offset_ns": offset, "measured_at_ns": at, "uncertainty_ns": 1000})
    }

    #[test]
    fn a_stage_runs_from_its_measurement_to_the_next() {
        let s = 1_000_000_000i64;
        let meta = json!({
            "agents": [
                {"id": "a", "clock_start": clock(0, 5_000), "clock_end": clock(300 * s, 35_000)},
                {"id": "b", "clock_start": clock(0, -7), "clock_end": null},
            ],
            "stages": [
                {"index": 0, "agents": [{"id": "a", "clock": clock(100 * s, 10_000)},
                                        {"id": "b", "clock": clock(100 * s, -7)}]},
                {"index": 1, "agents": [{"id": "a", "clock": clock(200 * s, 20_000)}]},
            ],
        });
        // Stage 0 of a: 10 µs at 100 s, 20 µs at 200 s (raw times).
        let c = stage_correction(&meta, "a", 0);
        assert_eq!(c.offset_at(100 * s + 10_000), 10_000);
        assert_eq!(c.offset_at(150 * s + 15_000), 15_000);
        assert_eq!(c.offset_at(200 * s + 20_000), 20_000);
        // The last stage runs to the end measurement.
        let c = stage_correction(&meta, "a", 1);
        assert_eq!(c.offset_at(250 * s + 27_500), 27_500);
        // b was not measured again: its offset stays.
        let c = stage_correction(&meta, "b", 0);
        assert_eq!(c, ClockCorrection::constant(-7));
        // No measurement for the stage: the agent's first, as a constant.
        assert_eq!(
            stage_correction(&meta, "b", 1),
            ClockCorrection::constant(-7)
        );
        assert_eq!(
            stage_correction(&meta, "nobody", 0),
            ClockCorrection::constant(0)
        );
    }
}
