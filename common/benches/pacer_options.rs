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
//! Measured 2026-12-06, release, on a 2-core VM (2 s per run). Quiet
//! host (load < 1):
//!
//! ```text
//!   rate      way   lag p50   lag p99  lag mean   CPU %  CPU µs/op
//!    100    tokio  1581.1µs  2052.1µs  1555.7µs    0.9%     86.31
//!    100   hybrid     0.6µs     6.7µs     1.3µs    9.0%    906.73
//!    100  release   143.4µs   317.4µs   141.7µs    1.1%    108.25
//!    100   pacer0   120.1µs   199.6µs   120.7µs    0.9%     87.74
//!    100    pacer   104.3µs  1919.0µs   129.9µs    0.9%     89.06
//!   1000    tokio  1407.0µs  1970.2µs  1409.5µs    3.8%     38.33
//!   1000   hybrid     0.4µs     9.3µs    25.4µs  166.8%   1684.42
//!   1000  release    95.0µs   193.9µs   100.7µs    7.2%     72.88
//!   1000   pacer0    90.6µs   203.3µs    95.0µs    7.1%     71.60
//!   1000    pacer    55.0µs   169.5µs    64.4µs    7.4%     74.45
//!  10000    tokio  1135.6µs  2105.3µs  1141.9µs    7.9%      7.97
//!  10000   hybrid     1.4µs  1076.2µs    42.3µs  194.7%    196.74
//!  10000  release    60.9µs  3137.5µs   170.2µs   59.6%     60.22
//!  10000   pacer0    54.8µs   350.0µs    66.6µs   52.7%     53.27
//!  10000    pacer    30.0µs   139.6µs    41.5µs   53.9%     54.46
//! 100000    tokio  1197.1µs  2940.9µs  1240.6µs   29.5%      2.98
//! 100000   hybrid     1.4µs    72.4µs    25.3µs  192.6%     19.46
//! 100000  release    52.9µs  1459.2µs    87.0µs  144.8%     14.64
//! 100000   pacer0    47.1µs  1593.3µs    96.4µs  138.8%     14.03
//! 100000    pacer    45.4µs   167.9µs    57.5µs  143.0%     14.45
//! ```
//!
//! Busy host (load ~5, other builds), the same ways at 1000 ops/s: tokio
//! 708 µs p50 / 775 µs mean, hybrid 0.7 / 18184 (CPU 102%), release 28 /
//! 10089, pacer0 30 / 69, pacer 0.4 / 77 (CPU 3.3%); at 10000: tokio 1041
//! / 1055, hybrid 1.0 / 1270, release 49 / 368, pacer0 47 / 451, pacer
//! 0.6 / 399 (CPU 22.5% against tokio's 5.3%).
//!
//! The hybrid is the most precise on a quiet host, but it keeps the
//! runtime threads busy from ~1k ops/s on (1.7 to 2 cores here: the 2 ms
//! margin is yielded away per op), and on a busy host busy threads lose
//! the CPU to other processes for whole scheduler slices, so its tail is
//! the worst there. The releasing thread and the pacer cost alike (a
//! thread wake and a cross-thread task wake per op); the pacer's lead
//! (wake early, yield the rest) halves its median lag for little CPU,
//! and it takes stops and any number of waiting workers in one place.
//! Every precise way costs more CPU per op than the timer, which wakes
//! once per ~1 ms tick for all the ops due in it.
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

mod support;
use support::{env_or, process_cpu};

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
