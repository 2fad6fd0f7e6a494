//! What one worker did in a stage ([`WorkerOutcome`]), added up over the
//! agent's workers when the stage ends into what the agent did
//! ([`StageOutcome`]): its metrics, first and last op times, and how it
//! kept to a schedule (lags, late ops: [`ScheduleReport`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::existing::ListingSummary;
use super::keys::KeyState;
use super::train;
use crate::metrics::{LATENCY_HIGHEST_NS, StageMetrics};
use crate::store::multi::EndpointStats;

/// `n` over `span_s` seconds; 0 for an empty span (JSON has no infinity).
pub(super) fn per_second(n: u64, span_s: f64) -> f64 {
    if span_s > 0.0 { n as f64 / span_s } else { 0.0 }
}

/// A histogram of start lags: 1 ns to the engine's highest latency.
pub(super) fn lag_histogram() -> hdrhistogram::Histogram<u64> {
    // Constant, valid bounds: cannot fail at run time.
    hdrhistogram::Histogram::new_with_bounds(1, LATENCY_HIGHEST_NS, 2)
        .expect("constant bounds are valid")
}

/// The earlier of two optional times.
pub(super) fn earliest(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[derive(Default)]
pub(super) struct WorkerOutcome {
    pub(super) metrics: StageMetrics,
    pub(super) first_op_ns: Option<i64>,
    pub(super) first_issued_ns: Option<i64>,
    pub(super) last_end_ns: i64,
    pub(super) warmup_ops: u64,
    pub(super) retries: u64,
    pub(super) scheduled: u64,
    pub(super) late: u64,
    pub(super) max_lag: Duration,
    pub(super) sum_lag: Duration,
    /// How late each scheduled op started, ns (made at the first).
    pub(super) lags: Option<hdrhistogram::Histogram<u64>>,
    pub(super) last_slot: Option<Instant>,
    /// When the last scheduled op was really issued (later than its slot
    /// when the run fell behind).
    pub(super) last_issued: Option<Instant>,
}

impl WorkerOutcome {
    /// How the workers kept to a schedule of `target_rate` ops/s, their
    /// scheduled ops issued over `span_s` seconds.
    pub(super) fn schedule_report(&self, target_rate: f64, span_s: f64) -> ScheduleReport {
        let lag_ms = |q: f64| {
            self.lags
                .as_ref()
                .map_or(0.0, |h| h.value_at_quantile(q) as f64 / 1e6)
        };
        ScheduleReport {
            target_rate,
            achieved_rate: per_second(self.scheduled, span_s),
            ops: self.scheduled,
            late_ops: self.late,
            max_lag_ms: self.max_lag.as_secs_f64() * 1e3,
            mean_lag_ms: self.sum_lag.as_secs_f64() * 1e3 / self.scheduled.max(1) as f64,
            p50_lag_ms: lag_ms(0.5),
            p99_lag_ms: lag_ms(0.99),
        }
    }

    pub(super) fn merge(&mut self, o: WorkerOutcome) {
        self.metrics.merge(&o.metrics);
        self.first_op_ns = earliest(self.first_op_ns, o.first_op_ns);
        self.first_issued_ns = earliest(self.first_issued_ns, o.first_issued_ns);
        self.last_end_ns = self.last_end_ns.max(o.last_end_ns);
        self.warmup_ops += o.warmup_ops;
        self.retries += o.retries;
        self.scheduled += o.scheduled;
        self.late += o.late;
        self.max_lag = self.max_lag.max(o.max_lag);
        self.sum_lag += o.sum_lag;
        match (&mut self.lags, o.lags) {
            (Some(a), Some(b)) => {
                let _ = a.add(&b);
            }
            (a @ None, b) => *a = b,
            _ => {}
        }
        self.last_slot = self.last_slot.max(o.last_slot);
        self.last_issued = self.last_issued.max(o.last_issued);
    }
}

/// How an open-loop stage kept to its schedule (in `run.json`, written
/// and read back).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ScheduleReport {
    /// This agent's target, ops/s.
    pub target_rate: f64,
    /// Ops issued over the scheduled span, ops/s; a ramp's part of the
    /// span counts for what was due in it, so keeping up with a ramped
    /// schedule reports `target_rate` too.
    pub achieved_rate: f64,
    pub ops: u64,
    /// Ops that started more than [`LATE_AFTER`] after their slot.
    pub late_ops: u64,
    pub max_lag_ms: f64,
    pub mean_lag_ms: f64,
    /// Median and 99th percentile of how late ops started (this agent's;
    /// every agent's p99 under a bound puts the cluster's under it too).
    #[serde(default)]
    pub p50_lag_ms: f64,
    #[serde(default)]
    pub p99_lag_ms: f64,
}

/// What one agent did in one stage.
#[derive(Debug)]
pub struct StageOutcome {
    /// Ops outside warm-up.
    pub metrics: StageMetrics,
    /// Agent wall clock (ns) when workers were released.
    pub started_ns: i64,
    /// Agent wall clock (ns) when the first op began, if any op ran: its
    /// start as logged (in open loop, its scheduled slot).
    pub first_op_ns: Option<i64>,
    /// When the first op was really issued: in closed loop its start, in
    /// open loop later than its slot by the lag. Start skew is measured
    /// from this, since every agent's first slot is the stage's start.
    pub first_issued_ns: Option<i64>,
    /// Agent wall clock (ns) when the last op ended (or `started_ns`).
    pub ended_ns: i64,
    /// Op-log records sent, warm-up included.
    pub records: u64,
    pub warmup_ops: u64,
    pub retries: u64,
    /// True when the stage was stopped from outside before its limits.
    pub stopped_early: bool,
    pub schedule: Option<ScheduleReport>,
    /// The key space as this agent knows it now, for the next stage.
    pub keys: Arc<KeyState>,
    /// Per-endpoint counters of a multi-endpoint stage (empty otherwise).
    pub endpoints: Vec<EndpointStats>,
    /// The listing of existing objects this stage made (`None` when it
    /// made none: not an existing key space, or listed by an earlier stage).
    pub listing: Option<ListingSummary>,
    /// A training epoch: what each of this agent's ranks did (empty for
    /// other stages).
    pub ranks: Vec<train::RankReport>,
}
