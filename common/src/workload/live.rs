//! What the agent reads about once a second while a stage runs: op
//! counts (in all, and per op kind with the errors by class), the
//! workers running, the interval's latencies and, in open loop, its
//! schedule lag. Workers add theirs every [`LIVE_FLUSH`], never per op: a
//! shared atomic write per op is a full barrier on the engine core.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::metrics::LATENCY_HIGHEST_NS;
use crate::op::OpKind;
use crate::store::ErrorClass;

const KINDS: usize = OpKind::ALL.len();
const CLASSES: usize = ErrorClass::ALL.len();

/// Counters the agent reads about once a second for live progress, and the
/// latencies of the ops that ended since it last looked. Workers add to
/// them every [`LIVE_FLUSH`] and when they finish, not per op.
#[derive(Debug)]
pub struct LiveCounters {
    pub ops: AtomicU64,
    pub bytes: AtomicU64,
    pub errors: AtomicU64,
    /// The same counts per op kind (indexed by [`OpKind::index`]), with the
    /// errors by class: what live metrics split by.
    by_op: [OpCounters; KINDS],
    /// Workers in their op loop now: started (their turn came) and not
    /// finished.
    active_workers: AtomicU64,
    /// Workers add their own interval histogram here every [`LIVE_FLUSH`]
    /// (not per op: one lock per worker per flush), and the agent takes it
    /// each second.
    interval_latency: Mutex<Histogram<u64>>,
    /// Open loop: lag behind the schedule of the ops issued since the agent
    /// last looked (see [`LiveCounters::take_lag`]), published with the
    /// counts, not per op.
    lag: IntervalLag,
}

/// One op kind's live counts.
#[derive(Debug, Default)]
struct OpCounters {
    ops: AtomicU64,
    bytes: AtomicU64,
    errors: AtomicU64,
    /// Indexed by [`ErrorClass::index`].
    classes: [AtomicU64; CLASSES],
}

/// One op kind's totals since the stage began, as the agent reads them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpTotals {
    pub op: OpKind,
    pub ops: u64,
    pub bytes: u64,
    pub errors: u64,
    /// The errors by class; classes with none are left out.
    pub classes: Vec<(ErrorClass, u64)>,
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

/// One op kind's counts in a worker, not yet published.
#[derive(Clone, Copy, Debug, Default)]
struct OpDelta {
    ops: u64,
    bytes: u64,
    errors: u64,
    classes: [u64; CLASSES],
}

/// One worker's counts not yet added to [`LiveCounters`].
#[derive(Debug, Default)]
pub(super) struct LiveDelta {
    by_op: [OpDelta; KINDS],
    /// Whether any `by_op` entry is non-zero: a flush with nothing to add
    /// touches no shared counter.
    any: bool,
    lag_max_ns: u64,
    lag_sum_ns: u64,
    lagged: u64,
}

impl LiveDelta {
    /// One op done: its kind, bytes, and error class when it failed. A
    /// few adds in the worker's own memory.
    pub(super) fn op(&mut self, op: OpKind, bytes: u64, failed: Option<ErrorClass>) {
        let d = &mut self.by_op[op.index()];
        d.ops += 1;
        d.bytes += bytes;
        if let Some(class) = failed {
            d.errors += 1;
            d.classes[class.index()] += 1;
        }
        self.any = true;
    }

    /// Adds the counts to `live` and zeroes them.
    pub(super) fn publish(&mut self, live: &LiveCounters) {
        if self.any {
            let (mut ops, mut bytes, mut errors) = (0, 0, 0);
            for (d, shared) in self.by_op.iter().zip(&live.by_op) {
                if d.ops == 0 {
                    continue;
                }
                ops += d.ops;
                bytes += d.bytes;
                errors += d.errors;
                shared.ops.fetch_add(d.ops, Ordering::Relaxed);
                shared.bytes.fetch_add(d.bytes, Ordering::Relaxed);
                if d.errors > 0 {
                    shared.errors.fetch_add(d.errors, Ordering::Relaxed);
                    for (n, c) in d.classes.iter().zip(&shared.classes) {
                        if *n > 0 {
                            c.fetch_add(*n, Ordering::Relaxed);
                        }
                    }
                }
            }
            // The totals after the kinds: a reader that sees a total has
            // seen the kinds that make it (or more).
            live.ops.fetch_add(ops, Ordering::Relaxed);
            live.bytes.fetch_add(bytes, Ordering::Relaxed);
            live.errors.fetch_add(errors, Ordering::Relaxed);
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

/// A worker counted in [`LiveCounters::active_workers`] while it lives.
pub(super) struct ActiveWorker<'a>(&'a LiveCounters);

impl Drop for ActiveWorker<'_> {
    fn drop(&mut self) {
        self.0.active_workers.fetch_sub(1, Ordering::Relaxed);
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
            by_op: Default::default(),
            active_workers: AtomicU64::new(0),
            interval_latency: Mutex::new(live_histogram()),
            lag: IntervalLag::default(),
        }
    }
}

impl LiveCounters {
    /// Each op kind's totals so far, kinds with no op left out, in
    /// [`OpKind::ALL`]'s order.
    pub fn by_op(&self) -> Vec<OpTotals> {
        OpKind::ALL
            .into_iter()
            .zip(&self.by_op)
            .filter_map(|(op, c)| {
                let ops = c.ops.load(Ordering::Relaxed);
                (ops > 0).then(|| OpTotals {
                    op,
                    ops,
                    bytes: c.bytes.load(Ordering::Relaxed),
                    errors: c.errors.load(Ordering::Relaxed),
                    classes: ErrorClass::ALL
                        .into_iter()
                        .zip(&c.classes)
                        .map(|(class, n)| (class, n.load(Ordering::Relaxed)))
                        .filter(|(_, n)| *n > 0)
                        .collect(),
                })
            })
            .collect()
    }

    /// Workers in their op loop now.
    pub fn active_workers(&self) -> u64 {
        self.active_workers.load(Ordering::Relaxed)
    }

    /// A worker enters its op loop; it counts as active until the guard
    /// drops (however the loop ends).
    pub(super) fn worker_active(&self) -> ActiveWorker<'_> {
        self.active_workers.fetch_add(1, Ordering::Relaxed);
        ActiveWorker(self)
    }

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
        a.op(OpKind::Get, 10, None);
        a.op(OpKind::Get, 0, Some(ErrorClass::Timeout));
        a.lag(Duration::from_millis(3));
        a.lag(Duration::from_millis(40));
        b.op(OpKind::Put, 5, None);
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
        b.op(OpKind::Put, 5, None);
        b.publish(&live);
        assert_eq!(live.take_lag(), LagTaken::default());
    }

    #[test]
    fn kinds_and_classes_add_up_to_the_totals() {
        let live = LiveCounters::default();
        let mut a = LiveDelta::default();
        let mut b = LiveDelta::default();
        a.op(OpKind::Get, 100, None);
        a.op(OpKind::Get, 0, Some(ErrorClass::NotFound));
        a.op(OpKind::Stat, 0, Some(ErrorClass::Throttled));
        b.op(OpKind::Get, 50, Some(ErrorClass::NotFound));
        b.op(OpKind::Put, 7, None);
        // Nothing before a flush.
        assert!(live.by_op().is_empty());
        a.publish(&live);
        b.publish(&live);
        // Published means zeroed: a second flush adds nothing.
        a.publish(&live);
        let by_op = live.by_op();
        let get = &by_op[0];
        assert_eq!(get.op, OpKind::Get);
        assert_eq!((get.ops, get.bytes, get.errors), (3, 150, 2));
        assert_eq!(get.classes, vec![(ErrorClass::NotFound, 2)]);
        assert_eq!(by_op[1].op, OpKind::Put);
        assert_eq!(by_op[2].op, OpKind::Stat);
        assert_eq!(by_op[2].classes, vec![(ErrorClass::Throttled, 1)]);
        assert_eq!(by_op.len(), 3);
        assert_eq!(live.ops.load(Ordering::Relaxed), 5);
        assert_eq!(live.bytes.load(Ordering::Relaxed), 157);
        assert_eq!(live.errors.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn active_workers_count_until_the_guard_drops() {
        let live = LiveCounters::default();
        let a = live.worker_active();
        let b = live.worker_active();
        assert_eq!(live.active_workers(), 2);
        drop(a);
        assert_eq!(live.active_workers(), 1);
        drop(b);
        assert_eq!(live.active_workers(), 0);
    }
}
