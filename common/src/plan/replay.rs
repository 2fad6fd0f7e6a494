//! The `replay:` key of a `type: replay` stage: which op-log to replay,
//! how fast, how its ops are dealt over agents, and how its keys are
//! renamed. Decoded with located errors and emitted back canonically.
//!
//! The trace itself is not opened here (a plan is text); the controller
//! scans it when it checks the plan, and ships it to the agents.

use std::fmt::Write as _;

use super::emit::float;
use super::error::PlanError;
use super::load::{Decoder, Map, join};
use super::yaml::{Entry, NodeKind, quote};

/// Keys of `replay:`.
pub(super) const REPLAY_KEYS: [&str; 5] = ["trace", "speed", "split", "remap", "prepare"];

/// Most `remap` entries: each op's key is matched against all of them.
pub const MAX_REMAP_ENTRIES: usize = 64;

/// How a replay deals the trace's ops over the agents.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReplaySplit {
    /// By the trace's `client_id`: clients in order of first appearance,
    /// client `c` to agent `c % agents` (several clients per agent when
    /// there are fewer agents than clients), so each client's ops keep
    /// their order and their concurrency.
    #[default]
    Client,
    /// By key: every op on one key on one agent, in trace order.
    Key,
}

impl ReplaySplit {
    pub fn name(self) -> &'static str {
        match self {
            ReplaySplit::Client => "client",
            ReplaySplit::Key => "key",
        }
    }
}

/// What a step of a replay stage does on the agents.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReplayPhase {
    /// Re-issues the trace's ops on its schedule.
    #[default]
    Run,
    /// Creates the objects the trace reads before (or without) writing
    /// them. Not a plan key: the controller asks for it as a step
    /// ([`super::StepSpec::prepares`]).
    Prepare,
}

/// A replay stage's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplaySpec {
    /// The op-log, as the plan names it (a path on the controller; agents
    /// get a copy).
    pub trace: String,
    /// Schedule divisor: 2.0 replays twice as fast.
    pub speed: f64,
    pub split: ReplaySplit,
    /// Key prefix renames, applied in order, first match wins.
    pub remap: Vec<(String, String)>,
    /// Create the objects the trace reads but never wrote before the
    /// replay (default); `false` when they exist already.
    pub prepare: bool,
    /// Set by a step, never by the plan.
    pub phase: ReplayPhase,
}

impl ReplaySpec {
    /// `key` with the first matching `remap` prefix replaced.
    pub fn remap_key(&self, key: &str) -> String {
        for (from, to) in &self.remap {
            if let Some(rest) = key.strip_prefix(from.as_str()) {
                return format!("{to}{rest}");
            }
        }
        key.to_string()
    }
}

impl Decoder<'_> {
    /// `replay:` of a replay stage.
    pub(super) fn replay(
        &self,
        stage: &Map<'_>,
        e: &Entry,
        what: &str,
    ) -> Result<ReplaySpec, PlanError> {
        let path = &join(&stage.path, "replay");
        let m = self.map(
            &e.value,
            path.to_string(),
            format!("`replay` of {what}"),
            &REPLAY_KEYS,
            "key",
        )?;
        let p = |k: &str| join(path, k);
        let t = self.required(&m, "trace")?;
        let trace = self.string(t, &p("trace"))?;
        if trace.is_empty() {
            return Err(self.err(t.value.pos, &p("trace"), "`trace` is empty"));
        }
        let speed = match m.get("speed") {
            Some(e) => {
                let v = self.number(e, &p("speed"), 0.0, true)?;
                if !(0.001..=1000.0).contains(&v) {
                    let message = format!("`speed` must be between 0.001 and 1000, got {v}");
                    return Err(self.err(e.value.pos, &p("speed"), message));
                }
                v
            }
            None => 1.0,
        };
        let split = match m.get("split") {
            Some(e) if self.one_of(e, &p("split"), &["client", "key"])? == "key" => {
                ReplaySplit::Key
            }
            _ => ReplaySplit::Client,
        };
        let prepare = match m.get("prepare") {
            Some(e) => self.boolean(e, &p("prepare"))?,
            None => true,
        };
        let remap = match m.get("remap") {
            Some(e) => self.remap(e, &p("remap"))?,
            None => Vec::new(),
        };
        Ok(ReplaySpec {
            trace,
            speed,
            split,
            remap,
            prepare,
            phase: ReplayPhase::Run,
        })
    }

    /// `remap: {"prod/": "bench/"}`: prefix to prefix, in order.
    fn remap(&self, e: &Entry, path: &str) -> Result<Vec<(String, String)>, PlanError> {
        let NodeKind::Map(entries) = &e.value.kind else {
            return Err(self.wrong(
                e,
                path,
                "a mapping of key prefixes, e.g. {\"prod/\": \"bench/\"}",
            ));
        };
        if entries.len() > MAX_REMAP_ENTRIES {
            let message = format!(
                "`remap` has {} entries; at most {MAX_REMAP_ENTRIES}",
                entries.len()
            );
            return Err(self.err(e.value.pos, path, message));
        }
        let mut out: Vec<(String, String)> = Vec::with_capacity(entries.len());
        for entry in entries {
            let ep = join(path, &entry.key);
            if entry.key.is_empty() {
                let message = "an empty `remap` prefix would match every key; \
                               to put every key under a prefix, name the prefix the trace's keys start with";
                return Err(self.err(entry.key_pos, &ep, message));
            }
            let to = self.string(entry, &ep)?;
            out.push((entry.key.clone(), to));
        }
        Ok(out)
    }
}

/// The `replay:` line of the canonical plan.
pub(super) fn emit(s: &ReplaySpec, y: &mut String) {
    let remap: Vec<String> = s
        .remap
        .iter()
        .map(|(from, to)| format!("{}: {}", quote(from), quote(to)))
        .collect();
    let _ = writeln!(
        y,
        "    replay: {{trace: {}, speed: {}, split: {}, prepare: {}, remap: {{{}}}}}",
        quote(&s.trace),
        float(s.speed),
        s.split.name(),
        s.prepare,
        remap.join(", ")
    );
}

#[cfg(test)]
mod tests {
    use crate::plan::{ReplaySplit, StageKind, parse};

    fn plan(replay: &str) -> Result<crate::plan::Plan, crate::plan::PlanError> {
        parse(
            &format!(
                "name: p\ntarget: mem://t\nstages:\n  - name: r\n    type: replay\n    concurrency: 8\n    replay: {replay}\n"
            ),
            "p.yaml",
        )
    }

    #[test]
    fn keys_decode_and_round_trip() {
        let p = plan(
            "{trace: runs/x/timeline.tsv.zst, speed: 2, split: key, prepare: false, \
             remap: {\"prod/\": \"bench/\", \"a\": \"\"}}",
        )
        .unwrap();
        let s = &p.stages[0];
        assert_eq!(s.kind, StageKind::Replay);
        let r = s.replay.as_ref().unwrap();
        assert_eq!(r.trace, "runs/x/timeline.tsv.zst");
        assert_eq!(r.speed, 2.0);
        assert_eq!(r.split, ReplaySplit::Key);
        assert!(!r.prepare);
        assert_eq!(r.remap_key("prod/x/1"), "bench/x/1");
        assert_eq!(r.remap_key("abc"), "bc");
        assert_eq!(r.remap_key("zzz"), "zzz");
        let again = parse(&p.to_yaml(), "canonical.yaml").unwrap();
        assert_eq!(again.stages[0], *s);
    }

    #[test]
    fn defaults() {
        let p = plan("{trace: t.tsv}").unwrap();
        let r = p.stages[0].replay.as_ref().unwrap();
        assert_eq!(
            (r.speed, r.split, r.prepare),
            (1.0, ReplaySplit::Client, true)
        );
        assert!(r.remap.is_empty());
    }

    #[test]
    fn errors_are_located() {
        let e = plan("{trace: t.tsv, speed: 0}").unwrap_err().to_string();
        assert!(e.contains("p.yaml:7:") && e.contains("positive"), "{e}");
        let e = plan("{trace: t.tsv, split: agent}")
            .unwrap_err()
            .to_string();
        assert!(e.contains("split") && e.contains("agent"), "{e}");
        let e = plan("{speed: 1}").unwrap_err().to_string();
        assert!(e.contains("trace"), "{e}");
        let e = plan("{trace: t.tsv, remap: [a]}").unwrap_err().to_string();
        assert!(e.contains("remap"), "{e}");
        let e = plan("{trace: t.tsv, remap: {\"\": b}}")
            .unwrap_err()
            .to_string();
        assert!(e.contains("empty `remap` prefix"), "{e}");
    }
}
