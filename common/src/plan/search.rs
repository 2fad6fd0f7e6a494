//! The keys of the stages that answer a question by themselves: a capacity
//! search (`type: search` with a `search:` block) and a workload that ends
//! when its figures settle (`until: steady`, tuned by `steady:`). Their
//! types, how they are read (with located errors) and how they are written
//! back in the canonical plan. The controller's stage kinds
//! (`controller/src/run/kinds/`) do the searching and the watching.

use std::fmt::Write as _;
use std::time::Duration;

use super::error::PlanError;
use super::load::{Decoder, MAX_CONCURRENCY, Map, join};
use super::units::format_duration;
use super::yaml::{Entry, NodeKind};
use super::{Arrivals, OpMix, StageKind};
use crate::op::OpKind;

/// What a search varies from step to step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vary {
    /// The open-loop rate, ops/s over all agents.
    Rate,
    /// Workers per agent, closed loop.
    Concurrency,
}

impl Vary {
    pub fn name(self) -> &'static str {
        match self {
            Vary::Rate => "rate",
            Vary::Concurrency => "concurrency",
        }
    }
}

/// `search:` of a `type: search` stage.
#[derive(Clone, Debug, PartialEq)]
pub struct SearchSpec {
    pub vary: Vary,
    /// The first step's load.
    pub from: f64,
    /// No step goes beyond this load.
    pub to: f64,
    /// How long each step measures, after the stage's `warmup` (each step
    /// warms up again: a new load is a new steady state).
    pub step: Duration,
    /// Each step before the first bad one multiplies the load by this.
    pub factor: f64,
    /// The bisection stops when the last good and the first bad load are
    /// within this fraction of each other.
    pub precision: f64,
    /// A step must turn at least this fraction of its added load into
    /// added throughput (against the best good step so far), or the store
    /// is past its knee.
    pub knee: f64,
    /// Never more steps than this, whatever the precision.
    pub max_steps: u32,
    pub objective: Objective,
    /// How a rate search's open-loop steps space their ops (the stage's
    /// `arrivals`).
    pub arrivals: Arrivals,
}

/// Defaults of the optional `search:` keys.
pub const DEFAULT_SEARCH_FACTOR: f64 = 2.0;
pub const DEFAULT_SEARCH_PRECISION: f64 = 0.05;
pub const DEFAULT_SEARCH_KNEE: f64 = 0.5;
pub const DEFAULT_SEARCH_MAX_STEPS: u32 = 24;

/// What a step must meet to be good.
#[derive(Clone, Debug, PartialEq)]
pub struct Objective {
    /// The op whose figures count; `None` for all ops together (`ALL`).
    pub op: Option<OpKind>,
    /// Latency limits: the percentile (0 < q <= 100) and its largest
    /// allowed value, in the order written.
    pub latency: Vec<(f64, Duration)>,
    /// Largest allowed fraction of failed ops.
    pub errors: Option<f64>,
}

impl Objective {
    /// The op's name as the summary's rows have it.
    pub fn op_name(&self) -> &'static str {
        self.op.map_or("ALL", OpKind::log_name)
    }
}

impl std::fmt::Display for Objective {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        for (q, limit) in &self.latency {
            parts.push(format!(
                "{} {} <= {}",
                self.op_name(),
                percentile_name(*q),
                format_duration(*limit)
            ));
        }
        if let Some(e) = self.errors {
            parts.push(format!("errors <= {}", percent(e)));
        }
        f.write_str(&parts.join(", "))
    }
}

/// `p99`, `p99.9`, `p50` for a percentile.
pub fn percentile_name(q: f64) -> String {
    format!("p{q}")
}

/// A fraction as the plan writes it: `0.1%`.
pub fn percent(fraction: f64) -> String {
    format!("{}%", fraction * 100.0)
}

/// `until: steady` with its `steady:` settings: the stage ends when the
/// last `windows` windows of `window` seconds agree within `tolerance`, in
/// throughput and in the chosen latency percentile (warp's `--autoterm`,
/// fio's `steadystate`), or at its `duration` (the maximum) if they never do.
#[derive(Clone, Debug, PartialEq)]
pub struct SteadySpec {
    pub window: Duration,
    pub windows: u32,
    /// Largest (max - min) / mean of the windows' figures.
    pub tolerance: f64,
    /// The latency percentile compared (p50, p90, p99 or p99.9).
    pub percentile: f64,
}

impl Default for SteadySpec {
    fn default() -> Self {
        SteadySpec {
            window: Duration::from_secs(5),
            windows: 3,
            tolerance: 0.1,
            percentile: 99.0,
        }
    }
}

/// The percentiles a live second carries, so the ones `steady` may watch.
pub const STEADY_PERCENTILES: [f64; 4] = [50.0, 90.0, 99.0, 99.9];

const SEARCH_KEYS: [&str; 9] = [
    "vary",
    "from",
    "to",
    "step",
    "factor",
    "precision",
    "knee",
    "max_steps",
    "objective",
];
const STEADY_KEYS: [&str; 4] = ["window", "windows", "tolerance", "percentile"];

impl Decoder<'_> {
    /// A fraction written as a percentage (`0.1%`) or a plain number
    /// (`0.001`), in `0..=1`; `positive` rejects 0.
    pub(super) fn fraction(&self, e: &Entry, path: &str, positive: bool) -> Result<f64, PlanError> {
        let expected = if positive {
            "a percentage above 0 (e.g. `5%`) or a fraction (e.g. `0.05`)"
        } else {
            "a percentage (e.g. `0.1%`) or a fraction (e.g. `0.001`)"
        };
        let NodeKind::Scalar { text, .. } = &e.value.kind else {
            return Err(self.wrong(e, path, expected));
        };
        let value = match text.trim().strip_suffix('%') {
            Some(p) => p.trim().parse::<f64>().map(|v| v / 100.0),
            None => text.trim().parse::<f64>(),
        };
        match value {
            Ok(v) if v.is_finite() && (0.0..=1.0).contains(&v) && (!positive || v > 0.0) => Ok(v),
            Ok(v) if v.is_finite() && v == 0.0 => {
                let message = format!("`{}` must be above 0, got {text}", e.key);
                Err(self.err(e.value.pos, path, message))
            }
            Ok(v) if v.is_finite() => {
                let message = format!("`{}` must be between 0% and 100%, got {text}", e.key);
                Err(self.err(e.value.pos, path, message))
            }
            _ => Err(self.wrong(e, path, expected)),
        }
    }

    /// `search:` of search stage `stage`, whose mix is `mix`.
    pub(super) fn search(
        &self,
        stage: &Map<'_>,
        e: &Entry,
        what: &str,
        mix: &OpMix,
    ) -> Result<SearchSpec, PlanError> {
        let path = &join(&stage.path, "search");
        let m = self.map(
            &e.value,
            path.to_string(),
            format!("`search` of {what}"),
            &SEARCH_KEYS,
            "key",
        )?;
        let p = |k: &str| join(path, k);
        let vary = match m.get("vary") {
            None => Vary::Rate,
            Some(v) => match self
                .one_of(v, &p("vary"), &["rate", "concurrency"])?
                .as_str()
            {
                "rate" => Vary::Rate,
                _ => Vary::Concurrency,
            },
        };
        let load = |key: &str| -> Result<f64, PlanError> {
            let e = self.required(&m, key)?;
            match vary {
                Vary::Rate => self.number(e, &p(key), 0.0, true),
                Vary::Concurrency => {
                    Ok(self.integer(e, &p(key), 1, u64::from(MAX_CONCURRENCY))? as f64)
                }
            }
        };
        let (from, to) = (load("from")?, load("to")?);
        if from > to {
            let e = self.required(&m, "from")?;
            let message = format!("`from` ({from}) is above `to` ({to}) in `search` of {what}");
            return Err(self.err(e.value.pos, &p("from"), message));
        }
        let step = self.duration(self.required(&m, "step")?, &p("step"))?;
        let factor = match m.get("factor") {
            None => DEFAULT_SEARCH_FACTOR,
            Some(f) => {
                let v = self.number(f, &p("factor"), 0.0, true)?;
                if v <= 1.0 {
                    let message = format!("`factor` must be above 1, got {v}");
                    return Err(self.err(f.value.pos, &p("factor"), message));
                }
                v
            }
        };
        let fraction = |key: &str, default: f64| {
            m.get(key)
                .map(|e| self.fraction(e, &p(key), true))
                .transpose()
                .map(|v| v.unwrap_or(default))
        };
        let precision = fraction("precision", DEFAULT_SEARCH_PRECISION)?;
        let knee = fraction("knee", DEFAULT_SEARCH_KNEE)?;
        let max_steps = m
            .get("max_steps")
            .map(|e| self.integer(e, &p("max_steps"), 2, 1000))
            .transpose()?
            .map_or(DEFAULT_SEARCH_MAX_STEPS, |v| v as u32);
        let objective = self.objective(self.required(&m, "objective")?, &p("objective"), mix)?;
        let arrivals = match stage.get("arrivals") {
            None => Arrivals::Poisson,
            Some(a) if vary == Vary::Concurrency => {
                let message = format!(
                    "`arrivals` applies to a rate search; {what} varies concurrency (closed loop)"
                );
                return Err(self.err(a.key_pos, &join(&stage.path, "arrivals"), message));
            }
            Some(a) => {
                match self
                    .one_of(a, &join(&stage.path, "arrivals"), &["poisson", "fixed"])?
                    .as_str()
                {
                    "fixed" => Arrivals::Fixed,
                    _ => Arrivals::Poisson,
                }
            }
        };
        Ok(SearchSpec {
            vary,
            from,
            to,
            step,
            factor,
            precision,
            knee,
            max_steps,
            objective,
            arrivals,
        })
    }

    /// `objective: {op: GET, p99: 5ms, errors: 0.1%}`.
    fn objective(&self, e: &Entry, path: &str, mix: &OpMix) -> Result<Objective, PlanError> {
        let NodeKind::Map(entries) = &e.value.kind else {
            return Err(self.wrong(e, path, "a mapping like `{op: GET, p99: 5ms}`"));
        };
        let mut objective = Objective {
            op: None,
            latency: Vec::new(),
            errors: None,
        };
        for entry in entries {
            let ep = join(path, &entry.key);
            match entry.key.as_str() {
                "op" => {
                    let text = self.string(entry, &ep)?;
                    if text.eq_ignore_ascii_case("all") {
                        continue;
                    }
                    let op = OpKind::OPS.into_iter().find(|k| {
                        k.plan_name().eq_ignore_ascii_case(&text)
                            || k.log_name().eq_ignore_ascii_case(&text)
                    });
                    let Some(op) = op else {
                        let message = format!("unknown op `{text}` in the objective");
                        return Err(self.err(entry.value.pos, &ep, message).with_hint(
                            "name an op of the mix (`get`, `put`, ...) or `ALL` for all ops",
                        ));
                    };
                    if !mix.weights.contains_key(&op) {
                        let message =
                            format!("the objective names `{text}`, which the stage's mix has not");
                        return Err(self.err(entry.value.pos, &ep, message));
                    }
                    objective.op = Some(op);
                }
                "errors" => objective.errors = Some(self.fraction(entry, &ep, false)?),
                key => {
                    let q = key
                        .strip_prefix('p')
                        .and_then(|q| q.parse::<f64>().ok())
                        .filter(|q| q.is_finite() && *q > 0.0 && *q <= 100.0);
                    let Some(q) = q else {
                        let message = format!("unknown key `{key}` in the objective");
                        return Err(self.err(entry.key_pos, &ep, message).with_hint(
                            "an objective takes `op`, `errors` and latency percentiles \
                             such as `p50`, `p99`, `p99.9`",
                        ));
                    };
                    objective.latency.push((q, self.duration(entry, &ep)?));
                }
            }
        }
        if objective.latency.is_empty() && objective.errors.is_none() {
            let message = "the objective sets no limit: give a latency percentile \
                           (e.g. `p99: 5ms`) or `errors`";
            return Err(self.err(e.value.pos, path, message));
        }
        Ok(objective)
    }

    /// `until:` and `steady:` of a stage; `None` without `until`.
    pub(super) fn until(
        &self,
        m: &Map<'_>,
        what: &str,
        kind: StageKind,
        has_duration: bool,
    ) -> Result<Option<SteadySpec>, PlanError> {
        let p = |k: &str| join(&m.path, k);
        let Some(u) = m.get("until") else {
            if let Some(s) = m.get("steady") {
                let message = format!("`steady` needs `until: steady` in {what}");
                return Err(self.err(s.key_pos, &p("steady"), message));
            }
            return Ok(None);
        };
        self.one_of(u, &p("until"), &["steady"])?;
        if kind != StageKind::Workload {
            let message = format!(
                "`until` is only allowed in workload stages; {what} is a {} stage",
                kind.name()
            );
            return Err(self.err(u.key_pos, &p("until"), message));
        }
        if !has_duration {
            let message = format!(
                "`until: steady` needs `duration` in {what}: the longest the stage runs \
                 if it never becomes steady"
            );
            return Err(self.err(u.value.pos, &p("until"), message));
        }
        let mut spec = SteadySpec::default();
        let Some(s) = m.get("steady") else {
            return Ok(Some(spec));
        };
        let sp = p("steady");
        let sm = self.map(
            &s.value,
            sp.clone(),
            format!("`steady` of {what}"),
            &STEADY_KEYS,
            "key",
        )?;
        let q = |k: &str| join(&sp, k);
        if let Some(e) = sm.get("window") {
            spec.window = self.duration(e, &q("window"))?;
            if spec.window < Duration::from_secs(1) {
                let message = "`window` must be at least 1s: the controller sees whole seconds";
                return Err(self.err(e.value.pos, &q("window"), message));
            }
        }
        if let Some(e) = sm.get("windows") {
            spec.windows = self.integer(e, &q("windows"), 2, 100)? as u32;
        }
        if let Some(e) = sm.get("tolerance") {
            spec.tolerance = self.fraction(e, &q("tolerance"), true)?;
        }
        if let Some(e) = sm.get("percentile") {
            let text = self.one_of(e, &q("percentile"), &["p50", "p90", "p99", "p99.9"])?;
            spec.percentile = text[1..].parse().unwrap_or(99.0);
        }
        Ok(Some(spec))
    }
}

/// The `search:` line of the canonical plan.
pub(super) fn emit_search(s: &SearchSpec, y: &mut String) {
    if s.vary == Vary::Rate {
        let arrivals = match s.arrivals {
            Arrivals::Poisson => "poisson",
            Arrivals::Fixed => "fixed",
        };
        let _ = writeln!(y, "    arrivals: {arrivals}");
    }
    let o = &s.objective;
    let mut objective = vec![format!("op: {}", o.op_name())];
    for (q, limit) in &o.latency {
        objective.push(format!(
            "{}: {}",
            percentile_name(*q),
            format_duration(*limit)
        ));
    }
    if let Some(e) = o.errors {
        objective.push(format!("errors: {}", super::emit::float(e)));
    }
    let load = |v: f64| match s.vary {
        Vary::Rate => super::emit::float(v),
        Vary::Concurrency => format!("{}", v as u64),
    };
    let _ = writeln!(
        y,
        "    search: {{vary: {}, from: {}, to: {}, step: {}, factor: {}, precision: {}, knee: {}, \
         max_steps: {}, objective: {{{}}}}}",
        s.vary.name(),
        load(s.from),
        load(s.to),
        format_duration(s.step),
        super::emit::float(s.factor),
        super::emit::float(s.precision),
        super::emit::float(s.knee),
        s.max_steps,
        objective.join(", ")
    );
}

/// The `until:` and `steady:` lines of the canonical plan.
pub(super) fn emit_until(s: &SteadySpec, y: &mut String) {
    let _ = writeln!(y, "    until: steady");
    let _ = writeln!(
        y,
        "    steady: {{window: {}, windows: {}, tolerance: {}, percentile: {}}}",
        format_duration(s.window),
        s.windows,
        super::emit::float(s.tolerance),
        percentile_name(s.percentile)
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{PlanError, parse};

    const HEAD: &str = "name: s\ntarget: mem://s\nobjects: {count: 10, size: 1KiB}\nstages:\n";

    fn stage(body: &str) -> Result<crate::plan::Plan, PlanError> {
        parse(&format!("{HEAD}  - name: x\n{body}"), "s.yaml")
    }

    fn error(body: &str) -> PlanError {
        stage(body).expect_err("the plan must be refused")
    }

    #[test]
    fn a_search_and_a_steady_stage_load_and_round_trip() {
        let p = stage(
            "    type: search\n    warmup: 2s\n    mix: {get: 80, put: 20}\n    search:\n      \
             vary: rate\n      from: 1000\n      to: 200000\n      step: 30s\n      knee: 40%\n      \
             objective: {op: GET, p99: 5ms, p99.9: 20ms, errors: 0.1%}\n    arrivals: fixed\n  - name: y\n    \
             type: workload\n    mix: {get: 1}\n    duration: 10m\n    until: steady\n    \
             steady: {window: 10s, tolerance: 5%, percentile: p99.9}\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let s = p.stages[0].search.as_ref().unwrap();
        assert_eq!((s.vary, s.from, s.to), (Vary::Rate, 1000.0, 200000.0));
        assert_eq!(s.step, Duration::from_secs(30));
        assert_eq!((s.factor, s.precision, s.knee), (2.0, 0.05, 0.4));
        assert_eq!(s.objective.op, Some(OpKind::Get));
        assert_eq!(
            s.objective.latency,
            vec![
                (99.0, Duration::from_millis(5)),
                (99.9, Duration::from_millis(20))
            ]
        );
        assert_eq!(s.objective.errors, Some(0.001));
        assert_eq!(s.arrivals, Arrivals::Fixed);
        let st = p.stages[1].until.as_ref().unwrap();
        assert_eq!((st.window, st.windows), (Duration::from_secs(10), 3));
        assert_eq!((st.tolerance, st.percentile), (0.05, 99.9));
        let text = p.to_yaml();
        let again = parse(&text, "out.yaml").unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(again, p, "{text}");
        // Concurrency searches take whole numbers.
        let p = stage(
            "    type: search\n    mix: {get: 1}\n    search: {vary: concurrency, from: 1, to: 64, \
             step: 5s, objective: {p50: 1ms}}\n",
        )
        .unwrap();
        let again = parse(&p.to_yaml(), "out.yaml").unwrap();
        assert_eq!(again, p);
        assert_eq!(p.stages[0].search.as_ref().unwrap().objective.op, None);
    }

    #[test]
    fn bad_searches_are_located() {
        let search = |s: &str| format!("    type: search\n    mix: {{get: 1}}\n    search: {s}\n");
        let e = error(&search(
            "{from: 10, to: 100, step: 1s, objective: {op: put, p99: 1ms}}",
        ));
        assert!(
            e.message.contains("`put`, which the stage's mix has not"),
            "{e}"
        );
        assert_eq!(
            (e.key.as_str(), e.line),
            ("stages[0].search.objective.op", 8)
        );
        let e = error(&search(
            "{from: 100, to: 10, step: 1s, objective: {p99: 1ms}}",
        ));
        assert!(e.message.contains("`from` (100) is above `to` (10)"), "{e}");
        assert_eq!(e.key, "stages[0].search.from");
        let e = error(&search("{from: 1, to: 10, step: 1s, objective: {op: get}}"));
        assert!(e.message.contains("sets no limit"), "{e}");
        let e = error(&search(
            "{from: 1, to: 10, step: 1s, objective: {p101: 1ms}}",
        ));
        assert!(e.message.contains("unknown key `p101`"), "{e}");
        let e = error(&search(
            "{from: 1, to: 10, step: 1s, factor: 1, objective: {p9: 1ms}}",
        ));
        assert!(e.message.contains("`factor` must be above 1"), "{e}");
        let e = error(&search(
            "{from: 1, to: 10, step: 1s, precision: 0%, objective: {p9: 1ms}}",
        ));
        assert!(e.message.contains("`precision` must be above 0"), "{e}");
        let e = error(&search("{from: 1, to: 10, objective: {p9: 1ms}}"));
        assert!(e.message.contains("missing required key `step`"), "{e}");
        let e = error(
            "    type: search\n    mix: {get: 1}\n    duration: 5s\n    search: {from: 1, to: 2, step: 1s, objective: {p9: 1ms}}\n",
        );
        assert!(
            e.message
                .contains("`duration` is not allowed in search stages"),
            "{e}"
        );
        let e = error("    type: search\n    mix: {get: 1}\n");
        assert!(e.message.contains("missing required key `search`"), "{e}");
        let e = error("    type: workload\n    mix: {get: 1}\n    duration: 1s\n    search: {}\n");
        assert!(e.message.contains("only allowed in search stages"), "{e}");
    }

    #[test]
    fn bad_steady_stages_are_located() {
        let e = error("    type: workload\n    mix: {get: 1}\n    ops: 10\n    until: steady\n");
        assert!(
            e.message.contains("`until: steady` needs `duration`"),
            "{e}"
        );
        assert_eq!(
            (e.key.as_str(), e.line, e.column),
            ("stages[0].until", 9, 12)
        );
        let e = error(
            "    type: workload\n    mix: {get: 1}\n    duration: 1m\n    until: steady\n    \
             steady: {tolerance: 0}\n",
        );
        assert!(e.message.contains("`tolerance` must be above 0"), "{e}");
        assert_eq!(e.key, "stages[0].steady.tolerance");
        let e = error(
            "    type: workload\n    mix: {get: 1}\n    duration: 1m\n    until: steady\n    \
             steady: {window: 500ms}\n",
        );
        assert!(e.message.contains("at least 1s"), "{e}");
        let e = error("    type: workload\n    mix: {get: 1}\n    duration: 1m\n    until: done\n");
        assert!(e.message.contains("unknown `until` value `done`"), "{e}");
        let e = error("    type: workload\n    mix: {get: 1}\n    duration: 1m\n    steady: {}\n");
        assert!(e.message.contains("`steady` needs `until: steady`"), "{e}");
        let e = error("    type: prepare\n    duration: 1m\n    until: steady\n");
        assert!(e.message.contains("only allowed in workload stages"), "{e}");
    }
}
