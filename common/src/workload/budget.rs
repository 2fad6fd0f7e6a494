//! When a stage stops: the first of its duration, op and byte limits, with
//! the stage-wide limits split evenly over agents.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::plan::StopCondition;

/// One agent's share of a stage's limits, shared by its workers.
#[derive(Debug)]
pub struct Budget {
    deadline: Option<Instant>,
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
            deadline: stop.duration.map(|d| start + d),
            ops_limit: stop.ops.map(|o| share(o, index, count)),
            ops_claimed: AtomicU64::new(0),
            bytes_limit: stop.bytes.map(|b| share(b, index, count)),
            bytes_done: AtomicU64::new(0),
        }
    }

    /// Takes the right to issue one more op. Exactly `ops_limit` claims
    /// succeed; the byte limit may be passed by the ops already in flight
    /// when it is reached (at most one per worker).
    pub fn claim(&self) -> bool {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return false;
        }
        if let Some(limit) = self.bytes_limit
            && self.bytes_done.load(Ordering::Relaxed) >= limit
        {
            return false;
        }
        match self.ops_limit {
            Some(limit) => self.ops_claimed.fetch_add(1, Ordering::Relaxed) < limit,
            None => true,
        }
    }

    /// When the stage's duration runs out, if it has one.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    pub fn add_bytes(&self, bytes: u64) {
        self.bytes_done.fetch_add(bytes, Ordering::Relaxed);
    }
}

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
        let granted = (0..100).filter(|_| b.claim()).count();
        assert_eq!(granted, 4);
    }

    #[test]
    fn deadline_and_bytes_stop() {
        let stop = StopCondition {
            duration: Some(Duration::ZERO),
            ..Default::default()
        };
        assert!(!Budget::for_agent(&stop, 0, 1, Instant::now()).claim());
        let stop = StopCondition {
            bytes: Some(100),
            ..Default::default()
        };
        let b = Budget::for_agent(&stop, 0, 1, Instant::now());
        assert!(b.claim());
        b.add_bytes(100);
        assert!(!b.claim());
    }
}
