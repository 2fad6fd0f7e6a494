//! Pacing: when ops start.
//!
//! Open loop: op `i` is scheduled at a fixed instant whatever the latency
//! of earlier ops, and its latency is measured from that instant, so
//! queueing behind a slow op shows up in the numbers (no coordinated
//! omission). With a ramp, the rate rises linearly from 0 to the target.
//! Workers wait for their slots through [`OpenLoop`], whose pacer thread
//! (`pacer.rs`) wakes them within microseconds of the slot.
//!
//! Closed loop: with a ramp, workers start one after another
//! ([`ramp_start`]); with think time, each pauses after every op
//! ([`think_pause`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

use super::budget::Budget;
use super::keys::unit;
use super::pacer::{Pacer, PacerTuning};
use crate::clock::Mono;
use crate::plan::{Arrivals, Pacing, Stage, ThinkTime};

/// One agent's schedule of op start times, shared by its workers.
///
/// Slots are those of a unit-rate process (equal gaps of 1, or
/// exponential gaps of mean 1: Poisson) mapped through the inverse of
/// [`due_ops`], the ops due by each time; without a ramp that is a
/// division by the rate, with one it makes the rate rise linearly (and a
/// Poisson process stays Poisson, with the rising rate).
#[derive(Debug)]
pub struct Schedule {
    start: Instant,
    rate: f64,
    /// Seconds over which the rate rises from 0 to `rate` (0: none).
    ramp: f64,
    arrivals: Arrivals,
    /// Where the unit-rate process is (ops), and its random gaps.
    state: Mutex<(f64, Xoshiro256PlusPlus)>,
}

impl Schedule {
    /// `rate` ops per second from `start`.
    pub fn new(start: Instant, rate: f64, arrivals: Arrivals, seed: u64) -> Schedule {
        Schedule {
            start,
            rate,
            ramp: 0.0,
            arrivals,
            state: Mutex::new((0.0, Xoshiro256PlusPlus::seed_from_u64(seed))),
        }
    }

    /// The rate rises linearly from 0 at the start to `rate` after `ramp`.
    pub fn with_ramp(mut self, ramp: Option<Duration>) -> Schedule {
        self.ramp = ramp.map_or(0.0, |r| r.as_secs_f64());
        self
    }

    /// The next scheduled start. Slots are handed out in order, so each is
    /// used exactly once by whichever worker is free.
    pub fn next(&self) -> Instant {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let gap = match self.arrivals {
            Arrivals::Fixed => 1.0,
            Arrivals::Poisson => exponential(&mut st.1),
        };
        let n = st.0;
        st.0 += gap;
        self.start + Duration::from_secs_f64(due_time(n, self.rate, self.ramp))
    }

    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// How long at the full rate would schedule as many ops as this
    /// schedule does in its first `span`: `span` itself without a ramp,
    /// less half the ramp after it. Ops over this is the rate kept.
    pub fn full_rate_span(&self, span: Duration) -> f64 {
        due_ops(span.as_secs_f64(), self.rate, self.ramp) / self.rate
    }
}

/// Ops due by `t` seconds on a schedule whose rate rises linearly from 0
/// to `rate` over `ramp` seconds and then stays: `rate·t²/(2·ramp)` in the
/// ramp, `rate·(t − ramp/2)` after it.
pub fn due_ops(t: f64, rate: f64, ramp: f64) -> f64 {
    if t < ramp {
        rate * t * t / (2.0 * ramp)
    } else {
        rate * (t - ramp / 2.0)
    }
}

/// An open-loop stage's pacing on one agent: its [`Schedule`] and the
/// [`Pacer`] thread that wakes workers at their slots, shared by the
/// workers.
#[derive(Debug)]
pub struct OpenLoop {
    pub schedule: Schedule,
    pacer: Pacer,
}

impl OpenLoop {
    /// Starts the pacer thread; `stop` is the stage's stop flag.
    pub fn new(schedule: Schedule, stop: Arc<AtomicBool>) -> std::io::Result<OpenLoop> {
        let tuning = PacerTuning::for_rate(schedule.rate());
        Ok(OpenLoop {
            schedule,
            pacer: Pacer::start_with(stop, tuning)?,
        })
    }

    /// Waits until the stage's start (precisely: the first slot is then),
    /// once the pacer thread runs. Call it once.
    pub async fn wait_start(&self, at: Instant) {
        self.pacer.running().await;
        self.pacer.wait_until(at).await;
    }

    /// Takes the next slot and waits for it: `None` when the stage ends
    /// first, because the slot is at or past `deadline` (so no worker waits
    /// past the stage's end) or the stage was stopped meanwhile. A slot
    /// already past (every worker was busy) returns at once, and the lag
    /// counts in the op's latency.
    pub async fn next_slot(&self, deadline: Option<Mono>) -> Option<(Instant, Mono)> {
        let at = self.schedule.next();
        let at_mono = Mono::from_instant(at);
        if deadline.is_some_and(|d| at_mono >= d) {
            return None;
        }
        self.pacer.wait_until(at).await.then_some((at, at_mono))
    }
}

/// The inverse of [`due_ops`]: when (seconds from the start) op `n` (a
/// real number of ops) is due.
pub fn due_time(n: f64, rate: f64, ramp: f64) -> f64 {
    if 2.0 * n < rate * ramp {
        (2.0 * ramp * n / rate).sqrt()
    } else {
        n / rate + ramp / 2.0
    }
}

/// Closed loop with a ramp: when worker `worker` of `concurrency` starts:
/// at equal steps over the ramp, worker 0 at once, so the workers running
/// rise linearly from one to all. Every agent does the same (its share of
/// the load rises alike), so each agent's first op is at the stage's
/// start and the start skew measured from first ops keeps its meaning.
pub fn ramp_start(start: Instant, ramp: Duration, worker: u32, concurrency: u32) -> Instant {
    start + ramp.mul_f64(f64::from(worker) / f64::from(concurrency.max(1)))
}

/// A worker's turn to start: at once, or in a closed-loop ramp at
/// [`ramp_start`] ([`wait_to_start`]). False when the worker has nothing
/// left to do.
pub async fn await_turn(
    stage: &Stage,
    start: Instant,
    worker: u32,
    stop: &AtomicBool,
    budget: &Budget,
) -> bool {
    match (stage.pacing, stage.ramp) {
        (Pacing::Closed, Some(ramp)) => {
            let at = ramp_start(start, ramp, worker, stage.concurrency);
            wait_to_start(at, stop, budget).await
        }
        _ => true,
    }
}

/// The stage's think time if it runs closed loop. The plan refuses `think`
/// with `rate`, but a step given a rate (`Stage::for_step`) runs open loop
/// and then without it.
pub fn closed_loop_think(stage: &Stage) -> Option<ThinkTime> {
    match stage.pacing {
        Pacing::Closed => stage.think,
        Pacing::Open { .. } => None,
    }
}

/// Waits until `at`, or returns false at once when the stage is stopped or
/// its budget is spent meanwhile (so a worker due late in a long ramp does
/// not hold the stage's end). Checks every [`RAMP_POLL`]: this runs once
/// per worker, not per op.
async fn wait_to_start(at: Instant, stop: &AtomicBool, budget: &Budget) -> bool {
    loop {
        if stop.load(Ordering::Relaxed) || budget.spent(Mono::now()) {
            return false;
        }
        let now = Instant::now();
        if now >= at {
            return true;
        }
        tokio::time::sleep((at - now).min(RAMP_POLL)).await;
    }
}

/// How often a worker waiting for its turn in a ramp looks for a stop.
const RAMP_POLL: Duration = Duration::from_millis(50);

/// A draw of the exponential distribution of mean 1 (Poisson arrivals'
/// gaps, exponential think times): 1 - u is in (0, 1], so ln never sees 0.
fn exponential(rng: &mut Xoshiro256PlusPlus) -> f64 {
    -(1.0 - unit(rng)).ln()
}

/// One pause of a worker's think time: fixed, or drawn from the worker's
/// own seeded generator.
pub fn think_pause(think: &ThinkTime, rng: &mut Xoshiro256PlusPlus) -> Duration {
    match *think {
        ThinkTime::Fixed(d) => d,
        // At most ~37 means (bounded by the plan).
        ThinkTime::Exponential { mean } => mean.mul_f64(exponential(rng)),
        ThinkTime::Uniform { min, max } => min + (max - min).mul_f64(unit(rng)),
    }
}

/// How late a tokio sleep ends on average. Its timer wheel has 1 ms ticks
/// and rounds deadlines up, and the driver parks in a poll whose timeout
/// is whole milliseconds: measured on a 2-core Linux box, a sleep ended
/// 0.05 to 2 ms after its deadline, 1.1 ms on average, whatever its
/// length (so `think: 2ms` slept on the timer alone takes ~3.1 ms).
const TIMER_LATE: Duration = Duration::from_micros(1100);

/// Waits out one think-time pause. Pauses of at least [`TIMER_LATE`]
/// sleep on tokio's timer that much shorter, so each ends within about
/// ±1 ms of its time and they are right on average (what sets a worker's
/// op rate); shorter ones, which the timer cannot make, yield to the
/// runtime until their time: exact, but the worker's thread stays busy
/// meanwhile, which docs/plan.md says.
pub async fn think(pause: Duration) {
    if pause >= TIMER_LATE {
        tokio::time::sleep(pause - TIMER_LATE).await;
        return;
    }
    let end = Instant::now() + pause;
    while Instant::now() < end {
        tokio::task::yield_now().await;
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

    #[test]
    fn due_time_inverts_due_ops() {
        let (rate, ramp) = (2000.0, 2.0);
        for t in [0.0, 0.001, 0.5, 1.0, 1.999, 2.0, 2.5, 10.0] {
            let n = due_ops(t, rate, ramp);
            assert!((due_time(n, rate, ramp) - t).abs() < 1e-9, "t {t}");
        }
        // The rate rises linearly: a quarter as many ops in the ramp's
        // first half as in its second (1:3 of its 2000), then `rate`.
        assert_eq!(due_ops(1.0, rate, ramp), 500.0);
        assert_eq!(due_ops(2.0, rate, ramp), 2000.0);
        assert_eq!(due_ops(3.0, rate, ramp), 4000.0);
        // Without a ramp, the plain schedule.
        assert_eq!(due_time(1500.0, rate, 0.0), 0.75);
        assert_eq!(due_ops(0.75, rate, 0.0), 1500.0);
    }

    /// Slots of a ramped schedule, counted per half second, follow the
    /// linear rise for both arrival kinds; the report's span gives the rate.
    #[test]
    fn ramped_slots_rise_linearly() {
        let t0 = Instant::now();
        for arrivals in [Arrivals::Fixed, Arrivals::Poisson] {
            let s = Schedule::new(t0, 2000.0, arrivals, 3).with_ramp(Some(Duration::from_secs(2)));
            let mut bins = [0u32; 8];
            loop {
                let at = s.next().duration_since(t0).as_secs_f64();
                if at >= 4.0 {
                    break;
                }
                bins[(at * 2.0) as usize] += 1;
            }
            // Expected per half second: 2000·(t1² − t0²)/4 in the ramp,
            // then 1000: 125, 375, 625, 875, 1000, ...
            let want: [f64; 8] = [125.0, 375.0, 625.0, 875.0, 1000.0, 1000.0, 1000.0, 1000.0];
            for (i, (&got, want)) in bins.iter().zip(want).enumerate() {
                // Poisson counts vary by about their square root.
                let slack = 1.0 + 4.0 * want.sqrt();
                assert!(
                    (f64::from(got) - want).abs() < slack,
                    "{arrivals:?}: {got} slots in half-second {i}, want {want}"
                );
            }
            assert!((s.full_rate_span(Duration::from_secs(4)) - 3.0).abs() < 1e-9);
            assert!((s.full_rate_span(Duration::from_secs(1)) - 0.25).abs() < 1e-9);
        }
        // Fixed arrivals are deterministic: the first slots are at
        // sqrt(2·ramp·n/rate).
        let s =
            Schedule::new(t0, 2000.0, Arrivals::Fixed, 3).with_ramp(Some(Duration::from_secs(2)));
        assert_eq!(s.next(), t0);
        let second = s.next().duration_since(t0).as_secs_f64();
        assert!(
            (second - (2.0 * 2.0 / 2000.0f64).sqrt()).abs() < 1e-6,
            "{second}"
        );
    }

    #[test]
    fn ramp_starts_spread_workers_evenly() {
        let t0 = Instant::now();
        let ramp = Duration::from_secs(8);
        let starts: Vec<Duration> = (0..4).map(|w| ramp_start(t0, ramp, w, 4) - t0).collect();
        let want: Vec<Duration> = (0..4).map(|i| Duration::from_secs(2 * i)).collect();
        assert_eq!(starts, want);
        assert_eq!(ramp_start(t0, ramp, 0, 1), t0);
    }

    #[test]
    fn think_pauses_have_their_means() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
        let ms = Duration::from_millis;
        assert_eq!(think_pause(&ThinkTime::Fixed(ms(3)), &mut rng), ms(3));
        let n = 100_000;
        let exp = ThinkTime::Exponential { mean: ms(2) };
        let draws: Vec<f64> = (0..n)
            .map(|_| think_pause(&exp, &mut rng).as_secs_f64() * 1e3)
            .collect();
        let mean = draws.iter().sum::<f64>() / f64::from(n);
        let sd = (draws.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / f64::from(n)).sqrt();
        assert!((mean - 2.0).abs() < 0.03, "exponential mean {mean} ms");
        assert!(
            (sd / mean - 1.0).abs() < 0.03,
            "exponential cv {}",
            sd / mean
        );
        let uni = ThinkTime::Uniform {
            min: ms(1),
            max: ms(3),
        };
        let draws: Vec<Duration> = (0..n).map(|_| think_pause(&uni, &mut rng)).collect();
        assert!(draws.iter().all(|d| (ms(1)..=ms(3)).contains(d)));
        let mean = draws.iter().sum::<Duration>().as_secs_f64() * 1e3 / f64::from(n);
        assert!((mean - 2.0).abs() < 0.02, "uniform mean {mean} ms");
    }
}
