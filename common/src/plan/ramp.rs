//! Ramp and think time: how a workload stage's load rises at its start
//! (`ramp`) and how long each worker pauses between its ops (`think`).
//!
//! Decoded here with located errors like every other key, written back by
//! [`emit`] for the canonical plan; kept in one module so the rest of the
//! loader only calls in. How the engine applies them is in
//! `workload::pacing`.

use std::fmt::Write as _;
use std::time::Duration;

use super::error::PlanError;
use super::load::{Decoder, Map, join};
use super::units::{format_duration, parse_duration};
use super::yaml::{Entry, Node, NodeKind};
use super::{Pacing, Stage, StageKind, StopCondition};

/// A worker's pause after each op, before it claims the next one. Closed
/// loop only: in open loop the schedule decides when ops start.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ThinkTime {
    /// Always this long.
    Fixed(Duration),
    /// Exponentially distributed with this mean (memoryless pauses, as
    /// independent users make).
    Exponential { mean: Duration },
    /// Uniform between `min` and `max` (`min` may be zero).
    Uniform { min: Duration, max: Duration },
}

impl ThinkTime {
    /// The mean pause.
    pub fn mean(&self) -> Duration {
        match *self {
            ThinkTime::Fixed(d) => d,
            ThinkTime::Exponential { mean } => mean,
            ThinkTime::Uniform { min, max } => (min + max) / 2,
        }
    }
}

impl Stage {
    /// How long from the start of the stage ops are flagged as warm-up and
    /// left out of the summary: the longer of `warmup` and `ramp`, since
    /// ops of a ramp are not the load the stage is meant to measure.
    pub fn warmup_window(&self) -> Option<Duration> {
        self.warmup.max(self.ramp)
    }
}

/// Distributions `think` may name.
const THINK_KINDS: [&str; 2] = ["exponential", "uniform"];

/// Longest think time (fixed, mean or maximum): a longer pause between two
/// ops of one worker is a mistake in the plan, not a benchmark (it also
/// bounds the exponential's draws far from `Duration`'s limits).
const MAX_THINK: Duration = Duration::from_secs(3600);

/// The forms `think` takes, for messages.
const THINK_FORMS: &str = "a duration like `2ms`, `{exponential: 2ms}` or `{uniform: [1ms, 3ms]}`";

impl Decoder<'_> {
    /// `ramp` and `think` of a stage whose other keys are decoded: both
    /// workload-only, `ramp` shorter than the stage's `duration`, `think`
    /// closed loop only.
    pub(super) fn ramp_think(
        &self,
        m: &Map<'_>,
        what: &str,
        kind: StageKind,
        pacing: &Pacing,
        stop: &StopCondition,
    ) -> Result<(Option<Duration>, Option<ThinkTime>), PlanError> {
        let p = |k: &str| join(&m.path, k);
        for key in ["ramp", "think"] {
            if let (Some(e), false) = (m.get(key), kind == StageKind::Workload) {
                let message = format!(
                    "`{key}` is only allowed in workload stages; {what} is a {} stage",
                    kind.name()
                );
                return Err(self.err(e.key_pos, &p(key), message));
            }
        }
        let ramp = match m.get("ramp") {
            None => None,
            Some(e) => {
                let ramp = self.duration(e, &p("ramp"))?;
                if let Some(d) = stop.duration
                    && ramp >= d
                {
                    let message = format!(
                        "`ramp` must be shorter than the stage's `duration`: {what} ramps for {} \
                         of its {}",
                        format_duration(ramp),
                        format_duration(d)
                    );
                    return Err(self.err(e.value.pos, &p("ramp"), message).with_hint(
                        "the ramp is part of the stage's duration, like `warmup`: e.g. \
                         `ramp: 30s` with `duration: 2m30s` for two minutes at full load",
                    ));
                }
                Some(ramp)
            }
        };
        let think = match m.get("think") {
            None => None,
            Some(e) => {
                if let Pacing::Open { .. } = pacing {
                    let message = format!(
                        "`think` is closed loop only, but {what} sets `rate` (open loop), \
                         where the schedule, not the workers, decides when ops start"
                    );
                    return Err(self.err(e.key_pos, &p("think"), message).with_hint(
                        "remove `rate` for workers that pause between their ops, or `think` \
                         to keep the target rate",
                    ));
                }
                Some(self.pause(e, &p("think"), "think", false)?)
            }
        };
        Ok((ramp, think))
    }

    /// A pause drawn per use (`think`, a train stage's `compute`): `2ms`,
    /// `{exponential: 2ms}`, `{uniform: [1ms, 3ms]}` or
    /// `{uniform: {min: 1ms, max: 3ms}}`. `zero_ok`: a fixed `0s` is
    /// allowed (no pause at all).
    pub(super) fn pause(
        &self,
        e: &Entry,
        path: &str,
        name: &str,
        zero_ok: bool,
    ) -> Result<ThinkTime, PlanError> {
        let think = match &e.value.kind {
            NodeKind::Scalar { .. } if zero_ok => {
                ThinkTime::Fixed(self.duration_node(&e.value, name, path)?)
            }
            NodeKind::Scalar { .. } => ThinkTime::Fixed(self.duration(e, path)?),
            NodeKind::Seq(_) => return Err(self.wrong(e, path, THINK_FORMS)),
            NodeKind::Map(_) => {
                let m = self.map(
                    &e.value,
                    path.to_string(),
                    format!("`{path}`"),
                    &THINK_KINDS,
                    &format!("{name} distribution"),
                )?;
                let [d] = m.entries else {
                    let message = format!(
                        "`{name}` must name exactly one distribution: exponential or uniform"
                    );
                    return Err(self
                        .err(e.value.pos, path, message)
                        .with_hint(format!("`{name}` is {THINK_FORMS}")));
                };
                let dp = join(path, &d.key);
                if d.key == "exponential" {
                    ThinkTime::Exponential {
                        mean: self.duration(d, &dp)?,
                    }
                } else {
                    self.uniform_think(d, &dp)?
                }
            }
        };
        let longest = match think {
            ThinkTime::Fixed(d) | ThinkTime::Exponential { mean: d } => d,
            ThinkTime::Uniform { max, .. } => max,
        };
        if longest > MAX_THINK {
            let message = format!(
                "`{name}` must be at most {}, got {}",
                format_duration(MAX_THINK),
                format_duration(longest)
            );
            return Err(self.err(e.value.pos, path, message));
        }
        Ok(think)
    }

    /// `uniform: [min, max]` or `uniform: {min, max}`: `min` may be zero,
    /// `max` may not, and `min <= max`.
    fn uniform_think(&self, d: &Entry, path: &str) -> Result<ThinkTime, PlanError> {
        let (min_node, max_node) = match &d.value.kind {
            NodeKind::Seq(items) if items.len() == 2 => (&items[0], &items[1]),
            NodeKind::Map(_) => {
                let m = self.map(
                    &d.value,
                    path.to_string(),
                    format!("`{path}`"),
                    &["min", "max"],
                    "key",
                )?;
                let min = self.required(&m, "min")?;
                (&min.value, &self.required(&m, "max")?.value)
            }
            _ => {
                return Err(self.wrong(d, path, "a list `[min, max]` of two durations"));
            }
        };
        let min = self.duration_node(min_node, "min", &format!("{path}.min"))?;
        let max = self.duration_node(max_node, "max", &format!("{path}.max"))?;
        if max.is_zero() {
            let message = "`max` of a uniform `think` must be longer than zero";
            return Err(self.err(max_node.pos, &format!("{path}.max"), message));
        }
        if min > max {
            let message = format!(
                "`min` of a uniform `think` must not be above its `max`, got {} > {}",
                format_duration(min),
                format_duration(max)
            );
            return Err(self.err(min_node.pos, &format!("{path}.min"), message));
        }
        Ok(ThinkTime::Uniform { min, max })
    }

    /// A duration (zero allowed) that is a list item or map value.
    fn duration_node(&self, node: &Node, name: &str, path: &str) -> Result<Duration, PlanError> {
        let text = self.string_node(node, name, path)?;
        parse_duration(&text)
            .map_err(|m| self.err(node.pos, path, format!("invalid `{name}`: {m}")))
    }
}

/// Checks `--duration d` against the stages' ramps: a stage must keep some
/// time at full load after its ramp, as when the plan sets the duration.
pub(super) fn check_duration_override(stages: &[Stage], d: Duration) -> Result<(), String> {
    match stages
        .iter()
        .find(|s| s.kind == StageKind::Workload && s.ramp.is_some_and(|r| r >= d))
    {
        Some(s) => Err(format!(
            "duration {} is not longer than stage `{}`'s ramp of {}; the ramp is part of the duration",
            format_duration(d),
            s.name,
            format_duration(s.ramp.unwrap_or_default())
        )),
        None => Ok(()),
    }
}

/// Writes `ramp` and `think` of stage `s` in the canonical form, as
/// stage keys (four spaces in).
pub(super) fn emit(s: &Stage, y: &mut String) {
    // Writing to a String cannot fail; the results are ignored.
    if let Some(r) = s.ramp {
        let _ = writeln!(y, "    ramp: {}", format_duration(r));
    }
    if let Some(t) = &s.think {
        let _ = writeln!(y, "    think: {}", emit_pause(t));
    }
}

/// A pause in the canonical form: `2ms`, `{exponential: 2ms}`,
/// `{uniform: [1ms, 3ms]}`.
pub(super) fn emit_pause(t: &ThinkTime) -> String {
    match *t {
        ThinkTime::Fixed(d) => format_duration(d),
        ThinkTime::Exponential { mean } => format!("{{exponential: {}}}", format_duration(mean)),
        ThinkTime::Uniform { min, max } => {
            format!(
                "{{uniform: [{}, {}]}}",
                format_duration(min),
                format_duration(max)
            )
        }
    }
}

#[cfg(test)]
mod tests;
