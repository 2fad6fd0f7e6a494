//! What one worker did in a stage ([`WorkerOutcome`]), added up over the
//! agent's workers when the stage ends: its metrics, first and last op
//! times, and how it kept to a schedule (lags, late ops).

use std::time::{Duration, Instant};

use super::ScheduleReport;
use crate::metrics::{LATENCY_HIGHEST_NS, StageMetrics};

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
