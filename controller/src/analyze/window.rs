//! Time for `controller analyze`: the `--from`/`--to` arguments, segment
//! lengths (fixed or automatic, coarsened when a stage would need too many),
//! and the window where every agent was active.

use chorus_common::clock::parse_rfc3339_ns;
use std::collections::BTreeMap;

/// Most segments kept per stage. A longer stage gets longer segments (see
/// [`coarsen_factor`]), so memory does not grow with run length: each
/// segment holds a small histogram per op (2 significant digits, ~10 KiB).
pub const MAX_SEGMENTS: usize = 2_000;

/// Segments aimed at when the length is automatic: enough points for a
/// chart, few enough to read.
pub const AUTO_SEGMENTS: usize = 200;

/// Starting length of automatic segments; they grow ×2, ×5, ×2, ×5 …
/// (10 ms, 20 ms, 100 ms, 200 ms, 1 s, 2 s, 10 s, …) as the stage goes on.
pub const AUTO_SEGMENT_START_NS: i64 = 10_000_000;

/// A `--from` / `--to` value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TimeArg {
    /// An absolute time (controller clock), from RFC 3339.
    At(i64),
    /// Seconds after the first op of the timeline.
    After(f64),
}

impl TimeArg {
    /// Parses RFC 3339 (`2026-11-23T21:56:45.5Z`) or seconds (`12.5`, `30s`).
    pub fn parse(s: &str) -> Result<TimeArg, String> {
        let t = s.trim();
        if let Some(ns) = parse_rfc3339_ns(t) {
            return Ok(TimeArg::At(ns));
        }
        if let Ok(secs) = t.parse::<f64>()
            && secs.is_finite()
            && secs >= 0.0
        {
            return Ok(TimeArg::After(secs));
        }
        chorus_common::plan::parse_duration(t)
            .map(|d| TimeArg::After(d.as_secs_f64()))
            .map_err(|_| {
                format!(
                    "`{s}` is neither an RFC 3339 time (2026-11-23T21:56:45Z) nor seconds from the start (12.5)"
                )
            })
    }

    /// The absolute time, given the timeline's first op start.
    pub fn resolve(self, origin_ns: i64) -> i64 {
        match self {
            TimeArg::At(ns) => ns,
            TimeArg::After(s) => origin_ns.saturating_add((s * 1e9) as i64),
        }
    }
}

/// The segment length the user asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegmentLen {
    /// Start short and grow to about [`AUTO_SEGMENTS`] segments per stage.
    Auto,
    /// This length, unless the stage needs more than [`MAX_SEGMENTS`].
    Fixed(i64),
}

impl SegmentLen {
    pub fn parse(s: &str) -> Result<SegmentLen, String> {
        if s.trim() == "auto" {
            return Ok(SegmentLen::Auto);
        }
        let d = chorus_common::plan::parse_duration(s).map_err(|e| format!("--segment: {e}"))?;
        let ns = i64::try_from(d.as_nanos()).map_err(|_| format!("--segment {s}: too long"))?;
        if ns < 1_000_000 {
            return Err(format!("--segment {s}: must be at least 1ms"));
        }
        Ok(SegmentLen::Fixed(ns))
    }

    /// The first length used, and the most segments before coarsening.
    pub fn initial(self) -> (i64, usize) {
        match self {
            SegmentLen::Auto => (AUTO_SEGMENT_START_NS, AUTO_SEGMENTS),
            SegmentLen::Fixed(ns) => (ns, MAX_SEGMENTS),
        }
    }
}

/// The factor to grow a segment length by when there are too many: ×5 after
/// a length whose leading digit is 2, else ×2, which keeps lengths round
/// (1, 2, 10, 20, 100 …) for automatic segments.
pub fn coarsen_factor(len_ns: i64) -> i64 {
    let mut lead = len_ns;
    while lead >= 10 && lead % 10 == 0 {
        lead /= 10;
    }
    if lead == 2 { 5 } else { 2 }
}

/// First op start and last op end of each agent, for the common window.
#[derive(Clone, Debug, Default)]
pub struct AgentSpans {
    spans: BTreeMap<String, (i64, i64)>,
}

impl AgentSpans {
    pub fn add(&mut self, agent: &str, start_ns: i64, end_ns: i64) {
        match self.spans.get_mut(agent) {
            Some((first, last)) => {
                *first = (*first).min(start_ns);
                *last = (*last).max(end_ns);
            }
            None => {
                self.spans.insert(agent.to_string(), (start_ns, end_ns));
            }
        }
    }

    /// From the latest first start to the earliest last end over agents;
    /// `None` when the agents were never all active at once.
    pub fn common_window(&self) -> Option<(i64, i64)> {
        let from = self.spans.values().map(|s| s.0).max()?;
        let to = self.spans.values().map(|s| s.1).min()?;
        (to > from).then_some((from, to))
    }

    pub fn agents(&self) -> usize {
        self.spans.len()
    }

    /// The earliest start and latest end of any agent.
    pub fn whole(&self) -> Option<(i64, i64)> {
        let from = self.spans.values().map(|s| s.0).min()?;
        let to = self.spans.values().map(|s| s.1).max()?;
        Some((from, to))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_args() {
        assert_eq!(TimeArg::parse("12.5").unwrap(), TimeArg::After(12.5));
        assert_eq!(TimeArg::parse("2s").unwrap(), TimeArg::After(2.0));
        assert_eq!(
            TimeArg::parse("1970-01-01T00:00:01Z").unwrap(),
            TimeArg::At(1_000_000_000)
        );
        assert!(TimeArg::parse("-3").is_err());
        assert!(TimeArg::parse("yesterday").is_err());
        assert_eq!(TimeArg::After(1.5).resolve(10), 1_500_000_010);
    }

    #[test]
    fn segment_lengths_stay_round() {
        let mut len = AUTO_SEGMENT_START_NS;
        let mut seen = Vec::new();
        for _ in 0..6 {
            len *= coarsen_factor(len);
            seen.push(len / 1_000_000);
        }
        assert_eq!(seen, [20, 100, 200, 1_000, 2_000, 10_000]);
        assert_eq!(coarsen_factor(1_500_000_000), 2);
        assert_eq!(
            SegmentLen::parse("1s").unwrap(),
            SegmentLen::Fixed(1_000_000_000)
        );
        assert_eq!(SegmentLen::parse("auto").unwrap(), SegmentLen::Auto);
        assert!(SegmentLen::parse("10us").is_err());
    }

    #[test]
    fn common_window_of_agents() {
        let mut s = AgentSpans::default();
        assert_eq!(s.common_window(), None);
        s.add("a", 10, 100);
        s.add("b", 20, 90);
        s.add("a", 5, 50);
        assert_eq!(s.common_window(), Some((20, 90)));
        assert_eq!(s.whole(), Some((5, 100)));
        s.add("c", 95, 99);
        assert_eq!(s.common_window(), None);
    }
}
