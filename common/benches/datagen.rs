//! Data generation speed on one core, against `memcpy` of the same size in
//! the same run (goal: incompressible generation ≥ 0.5× memcpy), plus the
//! compressible and dedup variants and verification.
//!
//! Run with `scripts/bench/datagen.sh` (`cargo bench -p chorus-common
//! --bench datagen`). Each case runs once per round, cases interleaved, so a
//! noisy neighbour on a shared machine hurts them alike; medians are
//! reported, with the best round beside them.

use std::hint::black_box;
use std::time::Instant;

use chorus_common::datagen::{self, DataSpec};

/// The object size the checks use; far beyond any cache, so this
/// measures memory bandwidth, not cache bandwidth.
const BUF_BYTES: usize = 64 << 20;
/// Rounds per case; the median is reported.
const ROUNDS: usize = 9;
/// Target: generation speed relative to memcpy.
const GOAL_VS_MEMCPY: f64 = 0.5;
/// Run seed; any value does.
const SEED: u64 = 0xbe7c_4da7_a000_0001;
const KEY: &str = "bench/object";

/// Runs `f` once and returns GB/s for `BUF_BYTES` bytes.
fn gbps(mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    f();
    BUF_BYTES as f64 / start.elapsed().as_secs_f64() / 1e9
}

struct Case {
    name: &'static str,
    runs: Vec<f64>,
}

impl Case {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            runs: Vec::with_capacity(ROUNDS),
        }
    }

    fn median(&self) -> f64 {
        let mut v = self.runs.clone();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    }

    fn best(&self) -> f64 {
        self.runs.iter().copied().fold(0.0, f64::max)
    }
}

fn main() {
    let incompressible = DataSpec::new(SEED);
    let compress2 = DataSpec {
        compress: 2.0,
        ..incompressible
    };
    let dedup2 = DataSpec {
        dedup: 2,
        ..incompressible
    };

    let mut src = vec![0u8; BUF_BYTES];
    let mut dst = vec![0u8; BUF_BYTES];
    // Touch every page first so page faults are not timed.
    datagen::fill(&incompressible, KEY, 0, &mut src);
    dst.copy_from_slice(&src);

    let mut memcpy = Case::new("memcpy (copy_from_slice)");
    let mut fill = Case::new("fill, incompressible");
    let mut fill_c2 = Case::new("fill, compress 2");
    let mut fill_d2 = Case::new("fill, dedup 2");
    let mut verify = Case::new("verify, incompressible");

    for _ in 0..ROUNDS {
        memcpy.runs.push(gbps(|| {
            dst.copy_from_slice(black_box(&src));
            black_box(&mut dst);
        }));
        fill.runs.push(gbps(|| {
            datagen::fill(black_box(&incompressible), black_box(KEY), 0, &mut dst);
            black_box(&mut dst);
        }));
        // `dst` now holds the incompressible object: verify it.
        verify.runs.push(gbps(|| {
            let ok = datagen::verify(black_box(&incompressible), KEY, 0, black_box(&dst));
            assert!(ok.is_ok(), "{ok:?}");
        }));
        fill_c2.runs.push(gbps(|| {
            datagen::fill(black_box(&compress2), black_box(KEY), 0, &mut dst);
            black_box(&mut dst);
        }));
        fill_d2.runs.push(gbps(|| {
            datagen::fill(black_box(&dedup2), black_box(KEY), 0, &mut dst);
            black_box(&mut dst);
        }));
    }

    println!(
        "datagen bench: one core, {} MiB buffer, {ROUNDS} rounds",
        BUF_BYTES >> 20
    );
    println!("{:<28} {:>12} {:>10}", "case", "median GB/s", "best GB/s");
    for case in [&memcpy, &fill, &fill_c2, &fill_d2, &verify] {
        println!(
            "{:<28} {:>12.2} {:>10.2}",
            case.name,
            case.median(),
            case.best()
        );
    }
    let ratio = fill.median() / memcpy.median();
    let verdict = if ratio >= GOAL_VS_MEMCPY {
        "meets"
    } else {
        "MISSES"
    };
    println!("incompressible fill / memcpy = {ratio:.2}x (goal >= {GOAL_VS_MEMCPY}x: {verdict})");
}
