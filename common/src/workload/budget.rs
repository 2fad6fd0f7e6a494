//! When a stage stops: the first of its duration, op and byte limits, with
//! the stage-wide limits split evenly over agents.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::clock::Mono;
use crate::plan::StopCondition;

/// One agent's share of a stage's limits, shared by its workers.
#[derive(Debug)]
pub struct Budget {
    deadline: Option<Mono>,
    ops_limit: Option<u64>,
    ops_claimed: AtomicU64,
    bytes_limit: Option<u64>,
    bytes_done: AtomicU64,
}

/// `total` split over `count` agents; the first `total % count` get one more,
/// so the shares add up to exactly `total`.
pub fn share(total: u64, index: u32, count: u32) -> u64 {
    let (index, count) = (u64::from(index), u64::from(count.max(1)));
    total / count + u64::from(index < total % count)
}

impl Budget {
    pub fn for_agent(stop: &StopCondition, index: u32, count: u32, start: Instant) -> Budget {
        Budget {
            deadline: stop.duration.map(|d| Mono::from_instant(start).plus(d)),
            ops_limit: stop.ops.map(|o| share(o, index, count)),
            ops_claimed: AtomicU64::new(0),
            bytes_limit: stop.bytes.map(|b| share(b, index, count)),
            bytes_done: AtomicU64::new(0),
        }
    }

    /// Takes the right to issue one more op, from `held` (this worker's
    /// ops taken ahead) or else from the shared count. Exactly `ops_limit`
    /// claims succeed over all workers, as long as each worker spends what
    /// it holds (a worker stops early only when the whole stage stops);
    /// the byte limit may be passed by the ops already in flight when it is
    /// reached (at most one per worker).
    ///
    /// Ops are taken from the shared count a few at a time: an atomic
    /// read-modify-write is a full barrier that waits for the worker's
    /// pending stores (its op-log entry, just written), and once per op it
    /// was most of the op-log's cost on the engine core (perf, harness
    /// bench: `claim` 2.2% of the core with the log off, 5.2% with it on).
    ///
    /// `now` is the caller's latest reading of the clock (a worker's is the
    /// end of its last op, a moment ago): one clock read per op fewer.
    pub fn claim(&self, held: &mut HeldOps, now: Mono) -> bool {
        if self.deadline.is_some_and(|d| now >= d) {
            return false;
        }
        if let Some(limit) = self.bytes_limit
            && self.bytes_done.load(Ordering::Relaxed) >= limit
        {
            return false;
        }
        let Some(limit) = self.ops_limit else {
            return true;
        };
        if held.0 > 0 {
            held.0 -= 1;
            return true;
        }
        let mut claimed = self.ops_claimed.load(Ordering::Relaxed);
        loop {
            let left = limit.saturating_sub(claimed);
            if left == 0 {
                return false;
            }
            // A share that shrinks with what is left, so the last ops are
            // spread over the workers instead of queued behind one.
            let take = (left / CLAIM_SPREAD).clamp(1, CLAIM_MAX);
            match self.ops_claimed.compare_exchange_weak(
                claimed,
                claimed + take,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    held.0 = take - 1;
                    return true;
                }
                Err(now) => claimed = now,
            }
        }
    }

    /// Whether no claim can succeed any more, as far as the shared state
    /// shows (ops another worker holds may still be issued): for a worker
    /// that has not begun, so it need not wait for its turn.
    pub fn spent(&self, now: Mono) -> bool {
        self.deadline.is_some_and(|d| now >= d)
            || self
                .bytes_limit
                .is_some_and(|l| self.bytes_done.load(Ordering::Relaxed) >= l)
            || self
                .ops_limit
                .is_some_and(|l| self.ops_claimed.load(Ordering::Relaxed) >= l)
    }

    /// When the stage's duration runs out, if it has one.
    pub fn deadline(&self) -> Option<Mono> {
        self.deadline
    }

    /// Counts bytes moved, for a byte limit (without one, nothing to do:
    /// no shared write per op).
    pub fn add_bytes(&self, bytes: u64) {
        if self.bytes_limit.is_some() {
            self.bytes_done.fetch_add(bytes, Ordering::Relaxed);
        }
    }
}

/// Most ops a worker takes from the shared count at once.
const CLAIM_MAX: u64 = 16;

/// A worker takes at most 1/`CLAIM_SPREAD` of the ops left, so a stage's
/// last ops go one at a time (below 1024 left) to whichever worker is free.
const CLAIM_SPREAD: u64 = 1024;

/// Ops one worker has taken from its [`Budget`] ahead and not issued yet.
#[derive(Debug, Default)]
pub struct HeldOps(u64);

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn shares_add_up() {
        for total in [0, 1, 7, 100, 1001] {
            for count in 1..6 {
                let sum: u64 = (0..count).map(|i| share(total, i, count)).sum();
                assert_eq!(sum, total);
            }
        }
    }

    #[test]
    fn op_limit_is_exact() {
        let stop = StopCondition {
            ops: Some(10),
            ..Default::default()
        };
        let b = Budget::for_agent(&stop, 0, 3, Instant::now());
        let mut held = HeldOps::default();
        let granted = (0..100).filter(|_| b.claim(&mut held, Mono::now())).count();
        assert_eq!(granted, 4);
    }

    /// Workers taking ops ahead still get exactly the limit between them.
    #[test]
    fn op_limit_is_exact_across_threads() {
        for limit in [1u64, 15, 16, 17, 1000, 100_003] {
            let stop = StopCondition {
                ops: Some(limit),
                ..Default::default()
            };
            let b = Budget::for_agent(&stop, 0, 1, Instant::now());
            let counts: Vec<u64> = std::thread::scope(|s| {
                let workers: Vec<_> = (0..4)
                    .map(|_| {
                        s.spawn(|| {
                            let mut held = HeldOps::default();
                            let mut n = 0u64;
                            while b.claim(&mut held, Mono::now()) {
                                n += 1;
                            }
                            n
                        })
                    })
                    .collect();
                workers.into_iter().map(|w| w.join().unwrap()).collect()
            });
            assert_eq!(
                counts.iter().sum::<u64>(),
                limit,
                "limit {limit}: {counts:?}"
            );
        }
        // Below CLAIM_SPREAD ops left, one at a time.
        let stop = StopCondition {
            ops: Some(CLAIM_SPREAD),
            ..Default::default()
        };
        let b = Budget::for_agent(&stop, 0, 1, Instant::now());
        let mut held = HeldOps::default();
        assert!(b.claim(&mut held, Mono::now()));
        assert_eq!(held.0, 0);
    }

    #[test]
    fn deadline_and_bytes_stop() {
        let stop = StopCondition {
            duration: Some(Duration::ZERO),
            ..Default::default()
        };
        let mut held = HeldOps::default();
        assert!(!Budget::for_agent(&stop, 0, 1, Instant::now()).claim(&mut held, Mono::now()));
        let stop = StopCondition {
            bytes: Some(100),
            ..Default::default()
        };
        let b = Budget::for_agent(&stop, 0, 1, Instant::now());
        assert!(b.claim(&mut held, Mono::now()));
        assert!(!b.spent(Mono::now()));
        b.add_bytes(100);
        assert!(b.spent(Mono::now()));
        assert!(!b.claim(&mut held, Mono::now()));
        let stop = StopCondition {
            ops: Some(2),
            duration: Some(Duration::from_secs(60)),
            ..Default::default()
        };
        let b = Budget::for_agent(&stop, 0, 1, Instant::now());
        assert!(b.claim(&mut held, Mono::now()) && !b.spent(Mono::now()));
        assert!(b.claim(&mut held, Mono::now()) && b.spent(Mono::now()));
        assert!(b.spent(Mono::now().plus(Duration::from_secs(61))));
    }
}
