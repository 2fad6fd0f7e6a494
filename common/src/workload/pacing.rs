//! Open-loop pacing: op `i` is scheduled at a fixed instant whatever the
//! latency of earlier ops, and its latency is measured from that instant, so
//! queueing behind a slow op shows up in the numbers (no coordinated
//! omission).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

use super::keys::unit;
use crate::plan::Arrivals;

/// One agent's schedule of op start times, shared by its workers.
#[derive(Debug)]
pub struct Schedule {
    start: Instant,
    rate: f64,
    arrivals: Arrivals,
    state: Mutex<(f64, Xoshiro256PlusPlus)>,
}

impl Schedule {
    /// `rate` ops per second from `start`.
    pub fn new(start: Instant, rate: f64, arrivals: Arrivals, seed: u64) -> Schedule {
        Schedule {
            start,
            rate,
            arrivals,
            state: Mutex::new((0.0, Xoshiro256PlusPlus::seed_from_u64(seed))),
        }
    }

    /// The next scheduled start. Slots are handed out in order, so each is
    /// used exactly once by whichever worker is free.
    pub fn next(&self) -> Instant {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let gap = match self.arrivals {
            Arrivals::Fixed => 1.0 / self.rate,
            // Exponential gaps: 1 - u is in (0, 1], so ln never sees 0.
            Arrivals::Poisson => -(1.0 - unit(&mut st.1)).ln() / self.rate,
        };
        let at = st.0;
        st.0 += gap;
        self.start + Duration::from_secs_f64(at)
    }

    pub fn rate(&self) -> f64 {
        self.rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_and_poisson_average_the_rate() {
        let t0 = Instant::now();
        for arrivals in [Arrivals::Fixed, Arrivals::Poisson] {
            let s = Schedule::new(t0, 1000.0, arrivals, 9);
            let mut last = t0;
            for _ in 0..=100_000 {
                last = s.next();
            }
            let span = last.duration_since(t0).as_secs_f64();
            assert!((span - 100.0).abs() < 1.5, "{arrivals:?}: {span}");
        }
    }
}
