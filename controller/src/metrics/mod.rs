//! Live Prometheus metrics of a run (`controller run --metrics-listen`):
//! a registry the run feeds from what it already receives, and its
//! rendering in the Prometheus text exposition format 0.0.4. `http.rs`
//! serves it. docs/metrics.md lists every metric.
//!
//! Two sources, two families, because the agents' once-a-second progress
//! carries all ops together (no split by op kind) while the histograms an
//! agent sends at a step's end are per op and exact:
//!
//! - `chorus_live_*{stage,agent}`: each agent's progress totals, updated
//!   every second while a step runs, and its interval latency histograms
//!   added into fixed buckets (`chorus_live_op_duration_seconds{stage}`).
//!   Progress counts warm-up ops and times successful ops only; at the
//!   step's end the counters are raised to the exact totals if below them.
//! - `chorus_ops_total{stage,op,agent}` and the rest: the step's exact
//!   figures, the ones `summary.json` is merged from, set when the step
//!   ends (series appear then).
//!
//! Everything the registry holds is keyed by stage (step) name, agent and
//! op kind, all fixed by the plan and the agent list, so it stays bounded
//! by the run's shape, not its length.

pub mod http;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};

use chorus_common::clock::ClockEstimate;
use chorus_common::metrics::StageMetrics;
use chorus_common::metrics::client::HostSample;
use hdrhistogram::Histogram;

/// Latency buckets per decade: a bucket's upper bound is 10^(1/20) =
/// 1.122 times its lower one, so a `histogram_quantile` estimate is within
/// 12.2% of the true value (both lie in the same bucket).
pub const BUCKETS_PER_DECADE: u32 = 20;
/// The first bucket's upper bound, 1 µs, as a power of ten of seconds:
/// a `file://` GET served from the page cache takes a few µs (p99 3.7 µs
/// measured here), so buckets from 10 µs would leave it all in the first
/// one, where a quantile is a guess between 0 and the bound.
const FIRST_BOUND_EXP: i32 = -6;
/// Finite buckets: 1 µs up to 10^1.8 s = 63.1 s, past 60 s.
pub const BUCKETS: usize = 157;

/// The buckets' upper bounds: the `le` label text and the bound in
/// nanoseconds, the same number (the text is rounded to 4 significant
/// digits and the bound taken from it, so what Prometheus reads is what
/// was counted against).
pub fn bounds() -> &'static [(String, u64)] {
    static BOUNDS: OnceLock<Vec<(String, u64)>> = OnceLock::new();
    BOUNDS.get_or_init(|| {
        (0..BUCKETS)
            .map(|k| {
                let exp = FIRST_BOUND_EXP as f64 + k as f64 / BUCKETS_PER_DECADE as f64;
                let text = format!("{:.3e}", 10f64.powf(exp));
                let secs: f64 = text.parse().unwrap_or(f64::MAX);
                (text, (secs * 1e9).round() as u64)
            })
            .collect()
    })
}

/// A latency histogram in the fixed buckets: counts per bucket (not
/// cumulative; the last slot is past the last bound), sum and count.
#[derive(Clone, Debug, PartialEq)]
pub struct Buckets {
    counts: Vec<u64>,
    sum_ns: u128,
    count: u64,
}

impl Default for Buckets {
    fn default() -> Self {
        Buckets {
            counts: vec![0; BUCKETS + 1],
            sum_ns: 0,
            count: 0,
        }
    }
}

impl Buckets {
    /// Adds every value of an HDR histogram (in ns). An HDR bucket holds
    /// values equal to within its precision (0.1%); it is placed by its
    /// lowest value, so a sample exactly on a bound counts as `le` it,
    /// and one at most 0.1% past a bound may too. The sum takes each HDR
    /// bucket's middle value.
    pub fn add_hdr(&mut self, h: &Histogram<u64>) {
        let bounds = bounds();
        for v in h.iter_recorded() {
            let at = v.value_iterated_to();
            let n = v.count_at_value();
            let low = h.lowest_equivalent(at);
            let i = bounds.partition_point(|(_, b)| *b < low);
            self.counts[i] += n;
            self.count += n;
            self.sum_ns += h.median_equivalent(at) as u128 * n as u128;
        }
    }

    pub fn count(&self) -> u64 {
        self.count
    }
}

/// One agent's live totals in a step, as its last progress said.
#[derive(Clone, Copy, Debug, Default)]
struct Live {
    ops: u64,
    bytes: u64,
    errors: u64,
}

/// One (op, agent)'s exact figures of a step.
#[derive(Clone, Copy, Debug, Default)]
struct Exact {
    ops: u64,
    bytes: u64,
    errors: u64,
}

#[derive(Debug, Default)]
struct StageEntry {
    kind: String,
    running: bool,
    live: BTreeMap<String, Live>,
    live_latency: Buckets,
    /// By (op, agent).
    exact: BTreeMap<(String, String), Exact>,
    /// By op, all agents.
    latency: BTreeMap<String, Buckets>,
}

#[derive(Debug, Default)]
struct AgentEntry {
    up: bool,
    clock: Option<(i64, i64)>,
    host: HostSample,
}

#[derive(Debug, Default)]
struct Registry {
    stages: BTreeMap<String, StageEntry>,
    agents: BTreeMap<String, AgentEntry>,
    finished: bool,
}

/// The run's metrics. Fed from the run's tasks (each call takes a short
/// lock and never awaits under it), read by the HTTP server.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Registry>,
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut Registry) -> T) -> T {
        f(&mut self.inner.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// A step begins: it is the running one, the others are not.
    pub fn stage_begins(&self, stage: &str, kind: &str) {
        self.with(|r| {
            for s in r.stages.values_mut() {
                s.running = false;
            }
            let s = r.stages.entry(stage.to_string()).or_default();
            s.kind = kind.to_string();
            s.running = true;
        })
    }

    /// An agent's clock measured before a step; it is connected.
    pub fn agent_clock(&self, agent: &str, clock: Option<&ClockEstimate>) {
        self.with(|r| {
            let a = r.agents.entry(agent.to_string()).or_default();
            a.up = true;
            if let Some(c) = clock {
                a.clock = Some((c.offset_ns, c.uncertainty_ns));
            }
        })
    }

    /// An agent was lost.
    pub fn agent_lost(&self, agent: &str) {
        self.with(|r| r.agents.entry(agent.to_string()).or_default().up = false)
    }

    /// One agent's progress report: its totals since the step began, the
    /// latencies of the ops that ended in the interval (`None` when none
    /// did or they could not be decoded), its host.
    pub fn progress(
        &self,
        stage: &str,
        agent: &str,
        totals: (u64, u64, u64),
        latency: Option<&Histogram<u64>>,
        host: &HostSample,
    ) {
        self.with(|r| {
            let s = r.stages.entry(stage.to_string()).or_default();
            let (ops, bytes, errors) = totals;
            s.live
                .insert(agent.to_string(), Live { ops, bytes, errors });
            if let Some(h) = latency {
                s.live_latency.add_hdr(h);
            }
            if !host.is_empty() {
                r.agents.entry(agent.to_string()).or_default().host = *host;
            }
        })
    }

    /// An agent's exact figures for the step, from its final histograms.
    pub fn agent_done(&self, stage: &str, agent: &str, metrics: &StageMetrics) {
        self.with(|r| {
            let s = r.stages.entry(stage.to_string()).or_default();
            // The ops after the agent's last progress count too. Never
            // lowered: progress counts warm-up ops the exact figures leave
            // out, and a counter that goes down reads as a reset.
            let l = s.live.entry(agent.to_string()).or_default();
            l.ops = l.ops.max(metrics.total_ops());
            l.bytes = l.bytes.max(metrics.total_bytes());
            l.errors = l.errors.max(metrics.total_errors());
            for (op, stats) in &metrics.ops {
                let name = op.to_string();
                // Added, not set, as the histogram is: a plan that names
                // two steps alike gets one series holding both.
                let e = s
                    .exact
                    .entry((name.clone(), agent.to_string()))
                    .or_default();
                e.ops += stats.count;
                e.bytes += stats.bytes;
                e.errors += stats.errors;
                s.latency.entry(name).or_default().add_hdr(&stats.latency);
            }
        })
    }

    /// A step ended.
    pub fn stage_ends(&self, stage: &str) {
        self.with(|r| {
            if let Some(s) = r.stages.get_mut(stage) {
                s.running = false;
            }
        })
    }

    /// The run is over (its results written or failed): what is served
    /// from now on is final.
    pub fn run_finished(&self) {
        self.with(|r| r.finished = true)
    }

    /// The text exposition format, version 0.0.4.
    pub fn render(&self) -> String {
        self.with(|r| render(r))
    }
}

/// A label value escaped as the exposition format wants: backslash,
/// double quote and line feed.
pub fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// `{a="x",b="y"}` from pairs, values escaped.
fn labels(pairs: &[(&str, &str)]) -> String {
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

/// `# HELP` and `# TYPE` lines of a family.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A float as the format writes it (Go's `strconv` forms for the
/// specials).
fn float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

/// A histogram's `_bucket` (cumulative, `+Inf` = count), `_sum` (s) and
/// `_count` lines.
fn histogram(out: &mut String, name: &str, pairs: &[(&str, &str)], b: &Buckets) {
    let mut cumulative = 0;
    for ((le, _), n) in bounds().iter().zip(&b.counts) {
        cumulative += n;
        let mut with = pairs.to_vec();
        with.push(("le", le));
        let _ = writeln!(out, "{name}_bucket{} {cumulative}", labels(&with));
    }
    let mut with = pairs.to_vec();
    with.push(("le", "+Inf"));
    let _ = writeln!(out, "{name}_bucket{} {}", labels(&with), b.count);
    let l = labels(pairs);
    let _ = writeln!(out, "{name}_sum{l} {}", float(b.sum_ns as f64 / 1e9));
    let _ = writeln!(out, "{name}_count{l} {}", b.count);
}

fn render(r: &Registry) -> String {
    let mut out = String::new();
    family(
        &mut out,
        "chorus_run_finished",
        "gauge",
        "1 once the run is over and the figures are final (served for --metrics-linger).",
    );
    let _ = writeln!(out, "chorus_run_finished {}", u8::from(r.finished));
    render_stages(&mut out, r);
    render_agents(&mut out, r);
    out
}

/// The stages' families: which exist and run, their live figures, their
/// exact ones.
fn render_stages(out: &mut String, r: &Registry) {
    family(
        out,
        "chorus_stage_info",
        "gauge",
        "Each stage (or step) seen so far, with its kind; always 1.",
    );
    for (name, s) in &r.stages {
        let l = labels(&[("stage", name), ("kind", &s.kind)]);
        let _ = writeln!(out, "chorus_stage_info{l} 1");
    }
    family(
        out,
        "chorus_stage_running",
        "gauge",
        "1 for the stage (or step) running now, 0 for the others.",
    );
    for (name, s) in &r.stages {
        let l = labels(&[("stage", name)]);
        let _ = writeln!(out, "chorus_stage_running{l} {}", u8::from(s.running));
    }

    type Pick = fn(&Live) -> u64;
    let live: [(&str, &str, Pick); 3] = [
        (
            "chorus_live_ops_total",
            "Ops of all kinds so far in the stage, from each agent's progress each second.",
            |l| l.ops,
        ),
        (
            "chorus_live_bytes_total",
            "Bytes moved so far in the stage, from each agent's progress each second.",
            |l| l.bytes,
        ),
        (
            "chorus_live_errors_total",
            "Failed ops so far in the stage, from each agent's progress each second.",
            |l| l.errors,
        ),
    ];
    for (name, help, pick) in live {
        family(out, name, "counter", help);
        for (stage, s) in &r.stages {
            for (agent, l) in &s.live {
                let lb = labels(&[("stage", stage), ("agent", agent)]);
                let _ = writeln!(out, "{name}{lb} {}", pick(l));
            }
        }
    }
    family(
        out,
        "chorus_live_op_duration_seconds",
        "histogram",
        "Latency of ops of all kinds on all agents, from the agents' interval histograms each second.",
    );
    for (stage, s) in &r.stages {
        histogram(
            out,
            "chorus_live_op_duration_seconds",
            &[("stage", stage)],
            &s.live_latency,
        );
    }

    type PickExact = fn(&Exact) -> u64;
    let exact: [(&str, &str, PickExact); 3] = [
        (
            "chorus_ops_total",
            "Ops of the stage by kind and agent, exact (the summary's), set when the stage ends.",
            |e| e.ops,
        ),
        (
            "chorus_bytes_total",
            "Bytes of the stage by op kind and agent, exact, set when the stage ends.",
            |e| e.bytes,
        ),
        (
            "chorus_errors_total",
            "Failed ops of the stage by kind and agent, exact, set when the stage ends.",
            |e| e.errors,
        ),
    ];
    for (name, help, pick) in exact {
        family(out, name, "counter", help);
        for (stage, s) in &r.stages {
            for ((op, agent), e) in &s.exact {
                let lb = labels(&[("stage", stage), ("op", op), ("agent", agent)]);
                let _ = writeln!(out, "{name}{lb} {}", pick(e));
            }
        }
    }
    family(
        out,
        "chorus_op_duration_seconds",
        "histogram",
        "Latency of the stage's ops by kind, all agents, exact counts in fixed buckets, set when the stage ends.",
    );
    for (stage, s) in &r.stages {
        for (op, b) in &s.latency {
            histogram(
                out,
                "chorus_op_duration_seconds",
                &[("stage", stage), ("op", op)],
                b,
            );
        }
    }
}

/// The agents' families: up or lost, their clocks, their hosts.
fn render_agents(out: &mut String, r: &Registry) {
    family(
        out,
        "chorus_agent_up",
        "gauge",
        "1 while the agent is connected, 0 once lost.",
    );
    for (id, a) in &r.agents {
        let _ = writeln!(
            out,
            "chorus_agent_up{} {}",
            labels(&[("agent", id)]),
            u8::from(a.up)
        );
    }
    type PickClock = fn((i64, i64)) -> i64;
    let clocks: [(&str, &str, PickClock); 2] = [
        (
            "chorus_agent_clock_offset_seconds",
            "The agent's clock minus the controller's, measured before the last stage.",
            |c| c.0,
        ),
        (
            "chorus_agent_clock_uncertainty_seconds",
            "Half the round trip of that measurement: the offset is within this.",
            |c| c.1,
        ),
    ];
    for (name, help, pick) in clocks {
        family(out, name, "gauge", help);
        for (id, a) in &r.agents {
            if let Some(c) = a.clock {
                let v = float(pick(c) as f64 / 1e9);
                let _ = writeln!(out, "{name}{} {v}", labels(&[("agent", id)]));
            }
        }
    }
    type PickHost = fn(&HostSample) -> Option<f64>;
    let host: [(&str, &str, PickHost); 6] = [
        (
            "chorus_agent_cpu_busy_ratio",
            "Busy share (0-1) of the agent's CPUs over the last second.",
            |h| h.cpu_busy_pct.map(|p| p / 100.0),
        ),
        (
            "chorus_agent_cpu_iowait_ratio",
            "I/O wait share (0-1) of the agent's CPUs over the last second.",
            |h| h.cpu_iowait_pct.map(|p| p / 100.0),
        ),
        (
            "chorus_agent_process_cpu_cores",
            "CPU the agent process used over the last second, in cores.",
            |h| h.proc_cpu_pct.map(|p| p / 100.0),
        ),
        (
            "chorus_agent_memory_used_ratio",
            "Share (0-1) of the agent host's memory in use.",
            |h| h.mem_used_pct.map(|p| p / 100.0),
        ),
        (
            "chorus_agent_network_receive_bytes_per_second",
            "The agent host's network receive rate, all interfaces but loopback.",
            |h| h.net_rx_mib_s.map(|m| m * 1048576.0),
        ),
        (
            "chorus_agent_network_transmit_bytes_per_second",
            "The agent host's network transmit rate, all interfaces but loopback.",
            |h| h.net_tx_mib_s.map(|m| m * 1048576.0),
        ),
    ];
    for (name, help, pick) in host {
        family(out, name, "gauge", help);
        for (id, a) in &r.agents {
            if let Some(v) = pick(&a.host) {
                let _ = writeln!(out, "{name}{} {}", labels(&[("agent", id)]), float(v));
            }
        }
    }
}

#[cfg(test)]
mod tests;
