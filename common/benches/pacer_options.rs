//! How open-loop workers can wait for their slots: lag (issued - slot) and
//! CPU of each way, at several rates, on the machine it runs on. This is
//! what chose `workload::Pacer` (see `scripts/bench/open-loop.sh` for the
//! engine itself, A/B against another build).
//!
//! Workers are tokio tasks on a 2-thread runtime taking slots in order from
//! one `Schedule` (fixed arrivals), waiting, then doing a 2 µs "op" (a busy
//! loop, as a `mem://` GET costs about that). Ways of waiting:
//!
//! - `tokio`: `sleep_until(slot)`, what the engine did;
//! - `hybrid`: `sleep_until(slot - 2ms)` (the timer's worst lateness), then
//!   yield to the runtime until the slot;
//! - `release`: a thread sleeping precisely (timer slack 1 ns) until each
//!   slot releases it as a semaphore permit (every due slot per wake);
//!   workers await a permit, then take the slot;
//! - `pacer0`: `workload::Pacer` with no lead and no spin: its raw wake
//!   latency (thread wake-up plus cross-thread task wake);
//! - `pacer`: `workload::Pacer` as the engine uses it (lead for the rate);
//! - `pacerN`: with a lead (and spin) of N µs.
//!
//! Measured 2026-12-06, release, on a 2-core VM shared with other builds
//! (load ~5; 2 s per run, so the p99s are one stall or two):
//!
//! ```text
//!   rate      way   lag p50   lag p99  lag mean   CPU %  CPU µs/op
//!    100    tokio  1499.1µs  4800.5µs  1739.3µs    0.4%     44.61
//!    100   hybrid     0.5µs   799.2µs    47.0µs    8.5%    856.14
//!    100  release    51.6µs  6234.1µs   176.9µs    0.5%     50.20
//!    100   pacer0   127.7µs 18153.5µs   711.3µs    0.8%     80.59
//!    100    pacer    15.9µs  1046.5µs    88.8µs    0.5%     55.07
//!   1000    tokio   708.1µs  2281.5µs   775.3µs    2.1%     20.95
//!   1000   hybrid     0.7µs 173408µs  18183.6µs  101.8%   1028.25
//!   1000  release    27.7µs 113246µs  10089.4µs    2.2%     21.89
//!   1000   pacer0    30.4µs  1182.7µs    68.9µs    3.0%     30.28
//!   1000    pacer     0.4µs  1352.7µs    76.6µs    3.3%     33.63
//!  10000    tokio  1040.9µs  2248.7µs  1055.4µs    5.3%      5.38
//!  10000   hybrid     1.0µs 25264.1µs  1270.0µs   98.7%     99.79
//!  10000  release    48.7µs  6504.4µs   367.9µs   30.3%     30.64
//!  10000   pacer0    46.6µs  9625.6µs   451.4µs   31.8%     32.10
//!  10000    pacer     0.6µs  5447.7µs   398.5µs   22.5%     22.68
//! 100000    tokio  1309.7µs 33472.5µs  2271.3µs   25.7%      2.60
//! 100000   hybrid 12320.8µs 154272µs  33528.8µs   30.9%      3.12
//! 100000  release  3715.1µs 108134µs  22040.1µs   42.4%      4.29
//! 100000   pacer0   957.4µs 39387.1µs  4655.3µs   58.4%      5.91
//! 100000    pacer   258.7µs  5869.6µs   741.6µs   50.8%      5.13
//! ```
//!
//! The hybrid is precise at its median but keeps a core busy from ~1k
//! ops/s on (the 2 ms margin is yielded away per op), and busy threads
//! lose the CPU to other processes for whole scheduler slices: its tail
//! is the worst. The releasing thread and the pacer cost alike per wake
//! (a thread wake and a cross-thread task wake); the pacer's lead (wake
//! early, yield the rest) takes its median from tens of µs to ~1 µs and
//! saves the unpark of an idle runtime thread, so it is cheaper than no
//! lead at 10k ops/s. Every precise way costs more CPU per op than the
//! timer, which wakes once per ~1 ms tick for all ops due in it.
//!
//! Run: `cargo bench -p chorus-common --bench pacer_options` (knobs:
//! `CHORUS_PACER_SECS` per run, default 2; `CHORUS_PACER_RATES`, default
//! `100,1000,10000,100000`; `CHORUS_PACER_WAYS`; `CHORUS_PACER_WORKERS`,
//! default 16).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chorus_common::plan::Arrivals;
use chorus_common::workload::{Pacer, PacerTuning, Schedule};
use hdrhistogram::Histogram;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn process_cpu() -> f64 {
    // SAFETY: getrusage only writes the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a rusage struct.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(ru.ru_utime) + secs(ru.ru_stime)
}

fn busy(d: Duration) {
    let t = Instant::now();
    while t.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// A thread that releases each slot of its own copy of the schedule as a
/// permit when it is due.
fn releaser(
    sched: Schedule,
    end: Instant,
    permits: Arc<tokio::sync::Semaphore>,
    done: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        // SAFETY: changes only this thread's timer slack.
        unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0) };
        let mut next = sched.next();
        while next < end && !done.load(Ordering::Relaxed) {
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            }
            let now = Instant::now();
            let mut n = 0;
            while next <= now && next < end {
                n += 1;
                next = sched.next();
            }
            permits.add_permits(n);
        }
        permits.close();
    })
}

struct Result {
    lag: Histogram<u64>,
    ops: u64,
    cpu_s: f64,
    wall_s: f64,
}

async fn run_way(way: &str, rate: f64, secs: f64, workers: u32) -> Result {
    let start = Instant::now() + Duration::from_millis(20);
    let end = start + Duration::from_secs_f64(secs);
    let sched = Arc::new(Schedule::new(start, rate, Arrivals::Fixed, 1));
    let stop = Arc::new(AtomicBool::new(false));
    let pacer = match way {
        "pacer" => Some(Arc::new(
            Pacer::start_with(stop.clone(), PacerTuning::for_rate(rate)).expect("pacer"),
        )),
        "pacer0" => Some(Arc::new(
            Pacer::start_with(
                stop.clone(),
                PacerTuning {
                    lead: Duration::ZERO,
                    spin: Duration::ZERO,
                },
            )
            .expect("pacer"),
        )),
        w if w.starts_with("pacer") => {
            // pacerN: lead and spin of N µs.
            let us: u64 = w["pacer".len()..].parse().expect("pacer<µs>");
            let d = Duration::from_micros(us);
            Some(Arc::new(
                Pacer::start_with(stop.clone(), PacerTuning { lead: d, spin: d }).expect("pacer"),
            ))
        }
        _ => None,
    };
    let permits = Arc::new(tokio::sync::Semaphore::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let rel = (way == "release").then(|| {
        releaser(
            Schedule::new(start, rate, Arrivals::Fixed, 1),
            end,
            permits.clone(),
            done.clone(),
        )
    });
    let cpu0 = process_cpu();
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (sched, pacer, permits, way) = (
            sched.clone(),
            pacer.clone(),
            permits.clone(),
            way.to_string(),
        );
        tasks.push(tokio::spawn(async move {
            let mut lag = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("h");
            let mut ops = 0;
            loop {
                if way == "release" {
                    match permits.acquire().await {
                        Ok(p) => p.forget(),
                        Err(_) => break,
                    }
                }
                let at = sched.next();
                if at >= end {
                    break;
                }
                match way.as_str() {
                    "tokio" => tokio::time::sleep_until(at.into()).await,
                    "hybrid" => {
                        let margin = Duration::from_millis(2);
                        if at > Instant::now() + margin {
                            tokio::time::sleep_until((at - margin).into()).await;
                        }
                        while Instant::now() < at {
                            tokio::task::yield_now().await;
                        }
                    }
                    "release" => {}
                    _ => {
                        let p = pacer.as_ref().expect("pacer");
                        p.wait_until(at).await;
                    }
                }
                let issued = Instant::now();
                lag.saturating_record(issued.saturating_duration_since(at).as_nanos() as u64);
                ops += 1;
                busy(Duration::from_micros(2));
            }
            (lag, ops)
        }));
    }
    let mut lag = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("h");
    let mut ops = 0;
    for t in tasks {
        let (h, n) = t.await.expect("worker");
        lag.add(&h).expect("same bounds");
        ops += n;
    }
    let wall_s = t0.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    if let Some(r) = rel {
        r.join().expect("releaser");
    }
    drop(pacer);
    Result {
        lag,
        ops,
        cpu_s: process_cpu() - cpu0,
        wall_s,
    }
}

fn main() {
    let secs: f64 = env_or("CHORUS_PACER_SECS", 2.0);
    let workers: u32 = env_or("CHORUS_PACER_WORKERS", 16);
    let rates: Vec<f64> = env_or("CHORUS_PACER_RATES", "100,1000,10000,100000".to_string())
        .split(',')
        .filter_map(|r| r.trim().parse().ok())
        .collect();
    let ways: Vec<String> = env_or(
        "CHORUS_PACER_WAYS",
        "tokio,hybrid,release,pacer0,pacer".to_string(),
    )
    .split(',')
    .map(str::to_string)
    .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "open-loop waits: {workers} workers on 2 runtime threads, fixed arrivals, \
         2 µs busy op, {secs} s per run"
    );
    println!(
        "{:>8} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10}",
        "rate", "way", "ops", "lag p50", "lag p99", "lag mean", "CPU %", "CPU µs/op"
    );
    for &rate in &rates {
        for way in &ways {
            let r = rt.block_on(run_way(way, rate, secs, workers));
            let us = |ns: f64| ns / 1e3;
            println!(
                "{:>8} {:>8} {:>9} {:>7.1}µs {:>7.1}µs {:>7.1}µs {:>8.1}% {:>10.2}",
                rate,
                way,
                r.ops,
                us(r.lag.value_at_quantile(0.5) as f64),
                us(r.lag.value_at_quantile(0.99) as f64),
                us(r.lag.mean()),
                100.0 * r.cpu_s / r.wall_s,
                r.cpu_s * 1e6 / r.ops.max(1) as f64,
            );
        }
    }
}
