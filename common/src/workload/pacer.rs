//! The open-loop pacer: wakes each worker at its slot within microseconds,
//! where tokio's timer would wake it about a millisecond late.
//!
//! Why not tokio's timer: its wheel has 1 ms ticks and rounds deadlines up,
//! and its driver parks in a poll whose timeout is whole milliseconds, so a
//! sleep ends 0.05 to 2 ms late (1.1 ms on average, measured). Open-loop
//! latency counts from the slot, so every op would carry that millisecond
//! as if the storage had taken it.
//!
//! How: one OS thread per open-loop stage (`chorus-pacer`) keeps the
//! waiting workers' wake times in a heap and sleeps on a condition
//! variable until the earliest, with its timer slack at 1 ns (the default
//! 50 µs would make every wake up to 50 µs late). It wakes a worker
//! [`PacerTuning::lead`] before its slot, which covers part of the
//! thread's own wake-up and of the cross-thread wake of the worker's task;
//! the worker then yields to its runtime until the slot (other tasks on
//! its thread run meanwhile). A worker whose slot is at most
//! [`PacerTuning::spin`] away does not involve the thread at all.
//!
//! Costs: per op that waits, one short lock of the heap (the schedule
//! already takes one per op, and tokio's timer, which this replaces, locks
//! its wheel per sleep), a thread wake and a task wake, and up to `lead`
//! of yielding. The lead is kept to a quarter of the mean gap between
//! slots ([`PacerTuning::for_rate`]), so yielding never takes more than a
//! quarter of a core, however high the rate. Measured in
//! `scripts/bench/open-loop.sh` and the `pacer_options` bench.
//!
//! A wait also ends when the stage's stop flag is set: the thread looks at
//! it at least every [`STOP_POLL`], so a stop during a long gap at a low
//! rate is seen within that, not at the slot.

use std::cmp::{Ordering as CmpOrdering, Reverse};
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often the pacer thread looks at the stop flag while nothing is due.
pub const STOP_POLL: Duration = Duration::from_millis(20);

/// How a [`Pacer`] trades CPU for precision.
#[derive(Clone, Copy, Debug)]
pub struct PacerTuning {
    /// The thread wakes a worker this long before its slot, and the worker
    /// yields until the slot, so the thread's wake-up and the task wake
    /// are not (all) lag. Costs up to this much of a runtime thread per op.
    pub lead: Duration,
    /// A slot at most this far away is waited for by yielding alone,
    /// without the thread: cheaper than a cross-thread wake when it is this
    /// close.
    pub spin: Duration,
}

/// The most lead: a thread wake and a cross-thread task wake take about
/// this long on a busy 2-core machine (measured 15 to 80 µs), and more
/// would only cost CPU.
pub const MAX_LEAD: Duration = Duration::from_micros(40);

impl PacerTuning {
    /// For a schedule of `rate` ops/s: [`MAX_LEAD`], or a quarter of the
    /// mean gap between slots if that is less (at 100k ops/s, 2.5 µs), so
    /// the yielding before slots stays under a quarter of a core.
    pub fn for_rate(rate: f64) -> PacerTuning {
        let quarter_gap = if rate > 0.0 { 0.25 / rate } else { 1.0 };
        let lead = MAX_LEAD.min(Duration::from_secs_f64(quarter_gap.min(1.0)));
        PacerTuning { lead, spin: lead }
    }
}

impl Default for PacerTuning {
    fn default() -> Self {
        PacerTuning {
            lead: MAX_LEAD,
            spin: MAX_LEAD,
        }
    }
}

/// One open-loop stage's pacer thread. Dropping it stops the thread (and
/// wakes any worker still waiting).
#[derive(Debug)]
pub struct Pacer {
    shared: Arc<Shared>,
    tuning: PacerTuning,
    thread: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    stop: Arc<AtomicBool>,
    /// Told once the thread runs (see [`Pacer::running`]).
    running: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct State {
    waiting: BinaryHeap<Reverse<Entry>>,
    /// When the thread, asleep, wakes on its own; `None` while it is awake
    /// (it looks at the heap before sleeping again), so only a wait earlier
    /// than this needs to notify it.
    asleep_until: Option<Instant>,
    closed: bool,
    seq: u64,
}

#[derive(Debug)]
struct Entry {
    at: Instant,
    seq: u64,
    waker: Waker,
}

impl PartialEq for Entry {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(o))
    }
}
impl Ord for Entry {
    fn cmp(&self, o: &Self) -> CmpOrdering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Pacer {
    /// Starts the thread. `stop` is the stage's stop flag: waits end when it
    /// is set.
    pub fn start(stop: Arc<AtomicBool>) -> std::io::Result<Pacer> {
        Pacer::start_with(stop, PacerTuning::default())
    }

    /// As [`Pacer::start`], tuned (the benchmark compares tunings).
    pub fn start_with(stop: Arc<AtomicBool>, tuning: PacerTuning) -> std::io::Result<Pacer> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            stop,
            running: tokio::sync::Notify::new(),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("chorus-pacer".into())
            .spawn(move || pace(&s))?;
        Ok(Pacer {
            shared,
            tuning,
            thread: Some(thread),
        })
    }

    /// Waits until the thread runs. A new thread may wait for a CPU for
    /// tens of milliseconds on a busy host (Linux queues new threads behind
    /// the runnable ones), and the first waits would be that late: a stage
    /// waits for this before its start. Call it once.
    pub async fn running(&self) {
        self.shared.running.notified().await;
    }

    /// Waits until `at` (the slot of an op). True at the slot; false at
    /// once when the stage is stopped meanwhile.
    pub async fn wait_until(&self, at: Instant) -> bool {
        let now = Instant::now();
        if at <= now {
            return !self.shared.stop.load(Ordering::Relaxed);
        }
        if at - now > self.tuning.spin {
            Wake {
                shared: &self.shared,
                at: at - self.tuning.lead,
                registered: false,
            }
            .await;
        }
        // The last microseconds: yielding lets the thread's other tasks run
        // (another worker's op ending) while this one waits.
        while Instant::now() < at {
            if self.shared.stop.load(Ordering::Relaxed) {
                return false;
            }
            tokio::task::yield_now().await;
        }
        !self.shared.stop.load(Ordering::Relaxed)
    }
}

impl Drop for Pacer {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Ready once the pacer thread has found `at` due (or the stage stopped,
/// or the pacer closed); registers with it on the first poll.
struct Wake<'a> {
    shared: &'a Shared,
    at: Instant,
    registered: bool,
}

impl Future for Wake<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // The thread only wakes an entry once `at` has passed (or on stop
        // or close), and the clock is monotonic: whoever is woken sees it
        // here, so there is no lost wake and no need to register twice.
        if Instant::now() >= self.at || self.shared.stop.load(Ordering::Relaxed) {
            return Poll::Ready(());
        }
        if self.registered {
            let st = self.shared.lock();
            return if st.closed {
                Poll::Ready(())
            } else {
                Poll::Pending
            };
        }
        let mut st = self.shared.lock();
        if st.closed {
            return Poll::Ready(());
        }
        st.seq += 1;
        let seq = st.seq;
        let at = self.at;
        st.waiting.push(Reverse(Entry {
            at,
            seq,
            waker: cx.waker().clone(),
        }));
        // The thread sleeps past this wait: tell it (a futex wake). Slots
        // are handed out in order, so a new wait is rarely the earliest.
        if st.asleep_until.is_some_and(|w| at < w) {
            st.asleep_until = Some(at);
            self.shared.wake.notify_one();
        }
        drop(st);
        self.registered = true;
        Poll::Pending
    }
}

/// The pacer thread: wakes each entry when its time has come.
fn pace(shared: &Shared) {
    set_timer_slack_ns(1);
    shared.running.notify_one();
    let mut due: Vec<Waker> = Vec::new();
    let mut st = shared.lock();
    loop {
        let now = Instant::now();
        let all = st.closed || shared.stop.load(Ordering::Relaxed);
        while let Some(Reverse(e)) = st.waiting.peek() {
            if !all && e.at > now {
                break;
            }
            if let Some(Reverse(e)) = st.waiting.pop() {
                due.push(e.waker);
            }
        }
        if !due.is_empty() {
            // Wake outside the lock: a wake may run the task on another
            // thread at once, whose next wait takes the lock.
            drop(st);
            for w in due.drain(..) {
                w.wake();
            }
            st = shared.lock();
            continue;
        }
        if st.closed {
            return;
        }
        let timeout = st
            .waiting
            .peek()
            .map_or(STOP_POLL, |Reverse(e)| (e.at - now).min(STOP_POLL));
        st.asleep_until = Some(now + timeout);
        st = shared
            .wake
            .wait_timeout(st, timeout)
            .unwrap_or_else(|p| p.into_inner())
            .0;
        st.asleep_until = None;
    }
}

/// Makes this thread's timed sleeps end when asked instead of up to the
/// default 50 µs later (Linux timer slack; no privilege needed). Elsewhere
/// a no-op.
fn set_timer_slack_ns(ns: u64) {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_TIMERSLACK takes an integer and changes only the
    // calling thread's slack.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, ns as libc::c_ulong, 0, 0, 0);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = ns;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lead_is_at_most_a_quarter_gap() {
        assert_eq!(PacerTuning::for_rate(1.0).lead, MAX_LEAD);
        assert_eq!(PacerTuning::for_rate(1000.0).lead, MAX_LEAD);
        assert_eq!(
            PacerTuning::for_rate(100_000.0).lead,
            Duration::from_nanos(2500)
        );
        assert!(PacerTuning::for_rate(0.001).lead <= MAX_LEAD);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waits_end_at_their_time_and_on_stop() {
        let stop = Arc::new(AtomicBool::new(false));
        let pacer = Arc::new(Pacer::start(stop.clone()).expect("pacer starts"));
        // Waits of several lengths, in and out of order: none ends early.
        let t0 = Instant::now();
        let mut tasks = Vec::new();
        for ms in [5u64, 1, 3, 0, 2, 4] {
            let p = pacer.clone();
            tasks.push(tokio::spawn(async move {
                let at = t0 + Duration::from_millis(ms);
                assert!(p.wait_until(at).await);
                Instant::now().duration_since(at)
            }));
        }
        for t in tasks {
            let late = t.await.expect("task");
            // Loose: this machine is shared; the precision is the bench's.
            assert!(late < Duration::from_millis(500), "{late:?} late");
        }
        // A stop ends a long wait within about STOP_POLL, not at its time.
        let p = pacer.clone();
        let long =
            tokio::spawn(
                async move { p.wait_until(Instant::now() + Duration::from_secs(60)).await },
            );
        tokio::time::sleep(Duration::from_millis(30)).await;
        let stopped_at = Instant::now();
        stop.store(true, Ordering::Relaxed);
        assert!(!long.await.expect("task"), "a stopped wait says so");
        assert!(stopped_at.elapsed() < Duration::from_secs(5));
    }
}
