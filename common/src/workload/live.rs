//! What the agent reads about once a second while a stage runs: op
//! counts, the interval's latencies and, in open loop, its schedule lag.
//! Workers add theirs every [`LIVE_FLUSH`], never per op: a shared atomic
//! write per op is a full barrier on the engine core.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::metrics::LATENCY_HIGHEST_NS;

/// Counters the agent reads about once a second for live progress, and the
/// latencies of the ops that ended since it last looked. Workers add to
/// them every [`LIVE_FLUSH`] and when they finish, not per op.
#[derive(Debug)]
pub struct LiveCounters {
    pub ops: AtomicU64,
    pub bytes: AtomicU64,
    pub errors: AtomicU64,
    /// Workers add their own interval histogram here every [`LIVE_FLUSH`]
    /// (not per op: one lock per worker per flush), and the agent takes it
    /// each second.
    interval_latency: Mutex<Histogram<u64>>,
    /// Open loop: lag behind the schedule of the ops issued since the agent
    /// last looked (see [`LiveCounters::take_lag`]), published with the
    /// counts, not per op.
    lag: IntervalLag,
}

/// The worst lag, the sum of lags and how many ops they are, in ns.
#[derive(Debug, Default)]
struct IntervalLag {
    max_ns: AtomicU64,
    sum_ns: AtomicU64,
    ops: AtomicU64,
}

/// One interval's open-loop lag as the agent takes it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LagTaken {
    pub max: Duration,
    pub sum: Duration,
    pub ops: u64,
}

/// One worker's counts not yet added to [`LiveCounters`].
#[derive(Debug, Default)]
pub(super) struct LiveDelta {
    pub(super) ops: u64,
    pub(super) bytes: u64,
    pub(super) errors: u64,
    lag_max_ns: u64,
    lag_sum_ns: u64,
    lagged: u64,
}

impl LiveDelta {
    /// Adds the counts to `live` and zeroes them.
    pub(super) fn publish(&mut self, live: &LiveCounters) {
        if self.ops > 0 {
            live.ops.fetch_add(self.ops, Ordering::Relaxed);
            live.bytes.fetch_add(self.bytes, Ordering::Relaxed);
            live.errors.fetch_add(self.errors, Ordering::Relaxed);
        }
        if self.lagged > 0 {
            live.lag
                .max_ns
                .fetch_max(self.lag_max_ns, Ordering::Relaxed);
            live.lag
                .sum_ns
                .fetch_add(self.lag_sum_ns, Ordering::Relaxed);
            live.lag.ops.fetch_add(self.lagged, Ordering::Relaxed);
        }
        *self = LiveDelta::default();
    }

    /// An open-loop op issued `lag` after its slot.
    pub(super) fn lag(&mut self, lag: Duration) {
        let ns = lag.as_nanos().min(u64::MAX as u128) as u64;
        self.lag_max_ns = self.lag_max_ns.max(ns);
        self.lag_sum_ns = self.lag_sum_ns.saturating_add(ns);
        self.lagged += 1;
    }
}

/// How often a worker hands its live counts and latencies to
/// [`LiveCounters`].
pub const LIVE_FLUSH: Duration = Duration::from_millis(100);

/// A histogram for live latencies: 2 significant figures from 1 µs to an
/// hour keeps it at ~27 KiB per worker (the summary's exact histograms are
/// separate); a per-second p99 needs no more.
pub fn live_histogram() -> Histogram<u64> {
    // Constant, valid bounds: cannot fail at run time (covered by tests).
    Histogram::new_with_bounds(1_000, LATENCY_HIGHEST_NS, 2).expect("constant bounds are valid")
}

impl Default for LiveCounters {
    fn default() -> Self {
        LiveCounters {
            ops: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            interval_latency: Mutex::new(live_histogram()),
            lag: IntervalLag::default(),
        }
    }
}

impl LiveCounters {
    /// Takes the latencies added since the last call, leaving an empty one.
    pub fn take_interval(&self) -> Histogram<u64> {
        let mut h = self
            .interval_latency
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        std::mem::replace(&mut *h, live_histogram())
    }

    /// Takes the open-loop lag published since the last call (zero ops in
    /// closed loop). The three swaps are not one atomic step: a worker
    /// publishing between them moves a few ops' lag to the next interval,
    /// which a per-second figure can afford.
    pub fn take_lag(&self) -> LagTaken {
        let l = &self.lag;
        LagTaken {
            ops: l.ops.swap(0, Ordering::Relaxed),
            max: Duration::from_nanos(l.max_ns.swap(0, Ordering::Relaxed)),
            sum: Duration::from_nanos(l.sum_ns.swap(0, Ordering::Relaxed)),
        }
    }

    /// Adds a worker's interval latencies and empties them.
    pub(super) fn add_interval(&self, h: &mut Histogram<u64>) {
        if h.is_empty() {
            return;
        }
        let mut shared = self
            .interval_latency
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        // Same bounds on both sides: add cannot fail.
        let _ = shared.add(&*h);
        h.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_published_per_flush_and_taken_once() {
        let live = LiveCounters::default();
        let mut a = LiveDelta::default();
        let mut b = LiveDelta::default();
        a.ops = 2;
        a.lag(Duration::from_millis(3));
        a.lag(Duration::from_millis(40));
        b.ops = 1;
        b.lag(Duration::from_millis(7));
        // Nothing is seen before a flush.
        assert_eq!(live.take_lag(), LagTaken::default());
        a.publish(&live);
        b.publish(&live);
        let t = live.take_lag();
        assert_eq!(t.ops, 3);
        assert_eq!(t.max, Duration::from_millis(40));
        assert_eq!(t.sum, Duration::from_millis(50));
        assert_eq!(live.ops.load(Ordering::Relaxed), 3);
        // Taken means gone; a closed-loop flush adds no lag.
        b.ops = 5;
        b.publish(&live);
        assert_eq!(live.take_lag(), LagTaken::default());
    }
}
