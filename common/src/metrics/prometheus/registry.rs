//! Live Prometheus metrics of a run: a registry fed from what the run
//! already sees, and its rendering in the Prometheus text exposition
//! format 0.0.4 (`http.rs` serves it). The controller (`controller run
//! --metrics-listen`) feeds it from every agent's progress and results;
//! an agent (`agent --metrics-listen`) feeds its own from its stages, so
//! the two expose the same families and a dashboard works on either.
//! docs/metrics.md lists every metric.
//!
//! Two sources, two families, because the agents' once-a-second progress
//! carries counts (per op kind) and one latency histogram of all kinds,
//! while the histograms an agent sends at a step's end are per op and
//! exact:
//!
//! - `chorus_live_*{stage,agent,op}`: each agent's progress totals per op
//!   kind (errors also by class), updated every second while a step runs,
//!   its workers running, and its interval latency histograms added into
//!   fixed buckets (`chorus_live_op_duration_seconds{stage}`). Progress
//!   counts warm-up ops and times successful ops only; at the step's end
//!   the counters are raised to the exact totals if below them.
//! - `chorus_ops_total{stage,op,agent}` and the rest: the step's exact
//!   figures, the ones `summary.json` is merged from, set when the step
//!   ends (series appear then).
//!
//! Everything the registry holds is keyed by stage (step) name, agent and
//! op kind, all fixed by the plan and the agent list, so it stays bounded
//! by the run's shape, not its length.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use super::{Buckets, Exposition, family, float, histogram, labels};
use crate::clock::ClockEstimate;
use crate::metrics::StageMetrics;
use crate::metrics::client::HostSample;
use crate::workload::OpTotals;
use hdrhistogram::Histogram;

/// One agent's live figures in a step, as its last progress said: per op
/// kind (op-log name), and its workers running.
#[derive(Clone, Debug, Default)]
struct Live {
    by_op: BTreeMap<String, LiveOp>,
    active_workers: u64,
}

/// One op kind's live totals from one agent.
#[derive(Clone, Debug, Default)]
struct LiveOp {
    ops: u64,
    bytes: u64,
    errors: u64,
    /// By class name. Classes with no error have no entry (and no series).
    classes: BTreeMap<String, u64>,
}

/// What one agent's progress report says, as the metrics take it.
pub struct Progress<'a> {
    /// Totals since the step began, per op kind.
    pub by_op: &'a [OpTotals],
    pub active_workers: u64,
    /// Latencies of the ops that ended in the interval (`None` when none
    /// did or they could not be decoded).
    pub latency: Option<&'a Histogram<u64>>,
    pub host: &'a HostSample,
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

    /// Forgets everything: a long-running agent starts each run (session)
    /// afresh, so what it serves stays bounded by one run's shape however
    /// many runs it serves. A stage name seen again starts from zero,
    /// which Prometheus reads as a counter reset.
    pub fn reset(&self) {
        self.with(|r| *r = Registry::default())
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

    /// One agent's progress report. Totals only go up: a report that
    /// says less than one before it (the agent's counters are never
    /// lowered, so only a reordering could) leaves them.
    pub fn progress(&self, stage: &str, agent: &str, p: Progress<'_>) {
        self.with(|r| {
            let s = r.stages.entry(stage.to_string()).or_default();
            let l = s.live.entry(agent.to_string()).or_default();
            for t in p.by_op {
                let o = l.by_op.entry(t.op.log_name().to_string()).or_default();
                o.ops = o.ops.max(t.ops);
                o.bytes = o.bytes.max(t.bytes);
                o.errors = o.errors.max(t.errors);
                for (class, n) in &t.classes {
                    let c = o.classes.entry(class.name().to_string()).or_default();
                    *c = (*c).max(*n);
                }
            }
            l.active_workers = p.active_workers;
            if let Some(h) = p.latency {
                s.live_latency.add_hdr(h);
            }
            if !p.host.is_empty() {
                r.agents.entry(agent.to_string()).or_default().host = *p.host;
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
            // Its workers are done.
            l.active_workers = 0;
            for (op, stats) in &metrics.ops {
                let name = op.to_string();
                let o = l.by_op.entry(name.clone()).or_default();
                o.ops = o.ops.max(stats.count);
                o.bytes = o.bytes.max(stats.bytes);
                // Errors the reports did not class (the last report lost)
                // are counted, as `unknown`, rather than left out.
                if stats.errors > o.errors {
                    let missing = stats.errors - o.errors;
                    *o.classes.entry("unknown".to_string()).or_default() += missing;
                    o.errors = stats.errors;
                }
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
}

impl Exposition for Metrics {
    /// The text exposition format, version 0.0.4.
    fn render(&self) -> String {
        self.with(|r| render(r))
    }
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

    type Pick = fn(&LiveOp) -> u64;
    let live: [(&str, &str, Pick); 2] = [
        (
            "chorus_live_ops_total",
            "Ops so far in the stage by kind and agent, from each agent's progress each second.",
            |l| l.ops,
        ),
        (
            "chorus_live_bytes_total",
            "Bytes moved so far in the stage by op kind and agent, from each agent's progress each second.",
            |l| l.bytes,
        ),
    ];
    for (name, help, pick) in live {
        family(out, name, "counter", help);
        for (stage, s) in &r.stages {
            for (agent, l) in &s.live {
                for (op, o) in &l.by_op {
                    let lb = labels(&[("stage", stage), ("agent", agent), ("op", op)]);
                    let _ = writeln!(out, "{name}{lb} {}", pick(o));
                }
            }
        }
    }
    family(
        out,
        "chorus_live_errors_total",
        "counter",
        "Failed ops so far in the stage by kind, error class and agent, from each agent's progress each second.",
    );
    for (stage, s) in &r.stages {
        for (agent, l) in &s.live {
            for (op, o) in &l.by_op {
                for (class, n) in &o.classes {
                    let lb = labels(&[
                        ("stage", stage),
                        ("agent", agent),
                        ("op", op),
                        ("class", class),
                    ]);
                    let _ = writeln!(out, "chorus_live_errors_total{lb} {n}");
                }
            }
        }
    }
    family(
        out,
        "chorus_live_active_workers",
        "gauge",
        "Workers in their op loop now (started, not finished), by stage and agent.",
    );
    for (stage, s) in &r.stages {
        for (agent, l) in &s.live {
            let lb = labels(&[("stage", stage), ("agent", agent)]);
            let _ = writeln!(out, "chorus_live_active_workers{lb} {}", l.active_workers);
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
    let host: [(&str, &str, PickHost); 13] = [
        (
            "chorus_agent_cpus",
            "CPUs the agent's workers may run on: the ones its CPU ratios are over.",
            |h| (h.cpus > 0).then_some(h.cpus as f64),
        ),
        (
            "chorus_agent_cpu_max_core_busy_ratio",
            "Busy share (0-1) of the busiest of the agent's CPUs over the last second.",
            |h| h.cpu_max_core_pct.map(|p| p / 100.0),
        ),
        (
            "chorus_agent_cpu_steal_ratio",
            "Share (0-1) of the agent's CPUs' time the hypervisor gave to others over the last second.",
            |h| h.cpu_steal_pct.map(|p| p / 100.0),
        ),
        (
            "chorus_agent_process_cpu_wait_cores",
            "Time the agent's threads waited for a CPU while runnable over the last second, in cores.",
            |h| h.proc_cpu_wait_pct.map(|p| p / 100.0),
        ),
        (
            "chorus_agent_run_queue",
            "Runnable tasks on the agent's host (procs_running).",
            |h| h.run_queue,
        ),
        (
            "chorus_agent_schedule_lag_max_seconds",
            "Open loop: the worst lag behind the schedule of the ops issued in the last second.",
            |h| h.sched_lag_ms.map(|m| m / 1e3),
        ),
        (
            "chorus_agent_schedule_lag_mean_seconds",
            "Open loop: the mean lag behind the schedule of the ops issued in the last second.",
            |h| h.sched_lag_mean_ms.map(|m| m / 1e3),
        ),
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
#[path = "registry_tests.rs"]
mod tests;
