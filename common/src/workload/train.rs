//! One epoch of an emulated training run on one agent, as DLIO does it:
//! the samples in a seeded shuffle over the whole cluster, that order cut
//! into one contiguous shard per rank (agent `a`'s ranks are global ranks
//! `a·k .. a·k+k`), each rank's shard cut into batches. Each rank has
//! `read_threads` readers (engine workers) loading samples of the next
//! `prefetch` batches, and one accelerator task ([`run_rank`]) that takes
//! each batch once all its samples are read and "computes" on it for the
//! stage's `compute` time. Time the accelerator spends waiting for a batch
//! is data wait; compute time over wall time is its utilization (AU, the
//! pass criterion of MLPerf Storage).
//!
//! The shuffle is a keyed permutation of the sample numbers ([`Shuffle`]),
//! computed per sample: every sample is read exactly once per epoch, in an
//! order that differs by epoch, without a list of the samples in memory.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::pacing;
use super::source::{Target, Work};
use crate::datagen::DataSpec;
use crate::dataset::Layout;
use crate::op::OpKind;
use crate::plan::TrainSpec;
use crate::store::ByteRange;

/// A keyed permutation of `0..n`: a 4-round Feistel network over the
/// smallest even number of bits covering `n`, walked until it lands in
/// range (on average fewer than four steps, since that domain is below
/// `4n`). A bijection, so every sample comes out exactly once.
#[derive(Clone, Debug)]
pub struct Shuffle {
    n: u64,
    half_bits: u32,
    keys: [u64; 4],
    identity: bool,
}

impl Shuffle {
    pub fn new(n: u64, seed: u64, identity: bool) -> Shuffle {
        let bits = (64 - n.saturating_sub(1).leading_zeros()).max(2);
        let half_bits = bits.div_ceil(2);
        // Independent round keys from one seed.
        let mut s = seed ^ 0x7a11_5eed_0000_0001;
        let mut next = || crate::datagen::splitmix64(&mut s);
        Shuffle {
            n,
            half_bits,
            keys: [next(), next(), next(), next()],
            identity,
        }
    }

    /// The sample at position `i` (< n) of the order.
    pub fn at(&self, i: u64) -> u64 {
        if self.identity {
            return i;
        }
        let mut x = i;
        loop {
            x = self.round_trip(x);
            if x < self.n {
                return x;
            }
        }
    }

    fn round_trip(&self, x: u64) -> u64 {
        let mask = (1u64 << self.half_bits) - 1;
        let (mut l, mut r) = (x >> self.half_bits, x & mask);
        for k in self.keys {
            let f = (r ^ k).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let f = (f ^ (f >> 29)) & mask;
            (l, r) = (r, l ^ f);
        }
        (l << self.half_bits) | r
    }
}

/// Global rank `g`'s positions in the epoch's order: `n` split into `ranks`
/// contiguous shards whose sizes differ by at most one.
pub fn shard(n: u64, ranks: u64, g: u64) -> Range<u64> {
    let at = |g: u64| (u128::from(n) * u128::from(g) / u128::from(ranks.max(1))) as u64;
    at(g)..at(g + 1)
}

/// What one emulated accelerator did in one epoch (`run.json`, the train
/// verdict's per-rank figures).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct RankReport {
    /// Global rank: agent index × accelerators + local rank.
    pub rank: u32,
    pub samples: u64,
    pub bytes: u64,
    /// Sample reads that failed (the batch still went to compute).
    pub errors: u64,
    pub steps: u64,
    /// Time the accelerator computed (the plan's `compute` per batch),
    /// waited (for data, or for its task to run), and all its time (from
    /// the step's start to its last batch's end), ns.
    pub compute_ns: u64,
    pub wait_ns: u64,
    pub wall_ns: u64,
    /// How much longer than their time the compute pauses took (a busy
    /// agent's lateness): part of the wall time, neither compute nor wait.
    #[serde(default)]
    pub overrun_ns: u64,
}

impl RankReport {
    /// Accelerator utilization: compute time over wall time.
    pub fn au(&self) -> f64 {
        if self.wall_ns == 0 {
            0.0
        } else {
            self.compute_ns as f64 / self.wall_ns as f64
        }
    }
}

/// Starts one accelerator task per rank of `feed`, on the agent's pools
/// (rank `r` on pool `r`, as workers are dealt) or the caller's runtime.
pub(super) fn spawn_accelerators(
    feed: &Arc<TrainFeed>,
    run: &super::StageRun,
) -> Vec<tokio::task::JoinHandle<RankReport>> {
    let seed = run.data.seed ^ ((run.stage_index as u64) << 24);
    (0..feed.ranks())
        .map(|r| {
            let task = feed
                .clone()
                .run_rank(r, run.start_at, run.stop.clone(), seed);
            match &run.pools {
                Some(p) => p.spawn(r, task),
                None => tokio::spawn(task),
            }
        })
        .collect()
}

/// One rank's epoch on this agent.
struct Rank {
    global: u32,
    /// Its positions in the epoch's order.
    positions: Range<u64>,
    /// Next position (relative) a reader takes.
    next: AtomicU64,
    /// Samples read (or failed) per batch.
    done: Vec<AtomicU32>,
    /// Batches the accelerator has taken: readers stay within `prefetch`
    /// batches of it.
    taken: AtomicU64,
    /// A batch completed (the accelerator waits on it).
    batch_ready: Notify,
    /// The accelerator took a batch (readers wait on it).
    batch_taken: Notify,
    bytes: AtomicU64,
    errors: AtomicU64,
}

impl Rank {
    fn len(&self) -> u64 {
        self.positions.end - self.positions.start
    }

    /// Samples in batch `b`.
    fn batch_len(&self, b: u64, batch: u64) -> u32 {
        (self.len() - b * batch).min(batch) as u32
    }
}

/// This agent's ranks in one epoch: where readers take their next sample
/// and report it read.
pub struct TrainFeed {
    spec: TrainSpec,
    layout: Arc<Layout>,
    data: DataSpec,
    shuffle: Shuffle,
    ranks: Vec<Rank>,
    verify: bool,
    /// Every reader has returned: no more samples will be read.
    readers_gone: AtomicBool,
    /// Each packed file's record offsets, once read (see `sample_range`);
    /// empty when the dataset has more than [`OFFSET_TABLE_SAMPLES`]
    /// samples or one sample to a file.
    offsets: Vec<OnceLock<Box<[u64]>>>,
}

/// Most samples whose record offsets an agent keeps (8 bytes each: 128 MiB
/// at most); a larger dataset's offsets are worked out per read.
const OFFSET_TABLE_SAMPLES: u64 = 16 << 20;

impl TrainFeed {
    /// Epoch `spec.epoch` (1-based) over `layout`, for agent
    /// `agent_index` of `agent_count`.
    pub fn new(
        spec: &TrainSpec,
        layout: Arc<Layout>,
        data: &DataSpec,
        agent_index: u32,
        agent_count: u32,
        verify: bool,
    ) -> TrainFeed {
        let n = layout.samples();
        let files = layout.files();
        let layout_packed_and_small = layout.samples_per_file() > 1 && n <= OFFSET_TABLE_SAMPLES;
        let k = spec.accelerators;
        let ranks_total = u64::from(agent_count.max(1)) * u64::from(k);
        let batch = u64::from(spec.batch.max(1));
        let ranks = (0..k)
            .map(|r| {
                let global = agent_index * k + r;
                let positions = shard(n, ranks_total, u64::from(global));
                let batches = (positions.end - positions.start).div_ceil(batch);
                Rank {
                    global,
                    positions,
                    next: AtomicU64::new(0),
                    done: (0..batches).map(|_| AtomicU32::new(0)).collect(),
                    taken: AtomicU64::new(0),
                    batch_ready: Notify::new(),
                    batch_taken: Notify::new(),
                    bytes: AtomicU64::new(0),
                    errors: AtomicU64::new(0),
                }
            })
            .collect();
        TrainFeed {
            spec: spec.clone(),
            layout,
            data: *data,
            shuffle: Shuffle::new(
                n,
                data.seed ^ u64::from(spec.epoch).wrapping_mul(0xd1b5_4a32_d192_ed03),
                !spec.shuffle,
            ),
            ranks,
            verify,
            readers_gone: AtomicBool::new(false),
            offsets: if layout_packed_and_small {
                (0..files).map(|_| OnceLock::new()).collect()
            } else {
                Vec::new()
            },
        }
    }

    /// The next sample for reader `worker` (of rank `worker / read_threads`),
    /// once its batch is within the rank's prefetch window; `None` when the
    /// rank's shard is all taken or the stage stops.
    pub(super) async fn next(&self, worker: u32, stop: &AtomicBool) -> Option<Work> {
        let r = (worker / self.spec.read_threads.max(1)) as usize;
        let rank = self.ranks.get(r)?;
        let p = rank.next.fetch_add(1, Ordering::Relaxed);
        if p >= rank.len() {
            return None;
        }
        let batch = u64::from(self.spec.batch.max(1));
        let b = p / batch;
        let window = u64::from(self.spec.prefetch.max(1));
        loop {
            let taken = rank.batch_taken.notified();
            tokio::pin!(taken);
            taken.as_mut().enable();
            if b < rank.taken.load(Ordering::Acquire) + window {
                break;
            }
            if stop.load(Ordering::Relaxed) {
                return None;
            }
            // Woken when the accelerator takes a batch; the timeout only
            // bounds how late a stop is seen.
            let _ = tokio::time::timeout(Duration::from_millis(50), taken).await;
        }
        let sample = self.shuffle.at(rank.positions.start + p);
        let file = self.layout.sample_file(sample);
        let key = self.layout.file_key(file);
        // One sample to a file: the file whole (as a loader opens it);
        // else the sample's record, a ranged read.
        let (op, size, range, expect) = if self.layout.samples_per_file() == 1 {
            let expect = self
                .verify
                .then(|| self.layout.file_bytes(&self.data, file));
            (OpKind::Get, self.layout.file_size(file), None, expect)
        } else {
            let range = self.sample_range(file, sample);
            let expect = self
                .verify
                .then(|| self.layout.sample_bytes(&self.data, sample));
            // The read's end stands for the file's size: all a ranged
            // read's plan needs of it.
            (
                OpKind::RangeGet,
                range.offset + range.length,
                Some(range),
                expect,
            )
        };
        Some(Work {
            op,
            target: Target::Key {
                key,
                size,
                range,
                content: expect,
            },
            due: None,
            token: Some((r as u64) << 40 | p),
        })
    }

    /// Where `sample`'s record is in `file`: from the file's table of
    /// record offsets, made by the first read of the file, when the
    /// dataset is small enough to keep them all; else worked out again
    /// (O(samples before it in its file)).
    fn sample_range(&self, file: u64, sample: u64) -> ByteRange {
        let Some(cell) = self.offsets.get(file as usize) else {
            return self.layout.sample_range(sample);
        };
        let first = self.layout.first_sample(file);
        let table = cell.get_or_init(|| {
            let n = u64::from(self.layout.samples_in_file(file));
            let mut at = 0;
            let mut table = Vec::with_capacity(n as usize + 1);
            table.push(0);
            for i in first..first + n {
                at += self.layout.record_len(i);
                table.push(at);
            }
            table.into_boxed_slice()
        });
        let j = (sample - first) as usize;
        match (table.get(j), table.get(j + 1)) {
            (Some(&start), Some(&end)) => ByteRange {
                offset: start,
                length: end - start,
            },
            _ => self.layout.sample_range(sample),
        }
    }

    /// Reader's report: the sample at `token` was read (or failed).
    pub(super) fn done(&self, token: u64, bytes: u64, ok: bool) {
        let (r, p) = ((token >> 40) as usize, token & ((1 << 40) - 1));
        let Some(rank) = self.ranks.get(r) else {
            return;
        };
        rank.bytes.fetch_add(bytes, Ordering::Relaxed);
        if !ok {
            rank.errors.fetch_add(1, Ordering::Relaxed);
        }
        let batch = u64::from(self.spec.batch.max(1));
        let b = p / batch;
        if let Some(d) = rank.done.get(b as usize) {
            let now = d.fetch_add(1, Ordering::AcqRel) + 1;
            if now == rank.batch_len(b, batch) {
                rank.batch_ready.notify_one();
            }
        }
    }

    /// Every reader has returned (done, stopped or failed): accelerators
    /// waiting for a batch stop waiting.
    pub(super) fn readers_finished(&self) {
        self.readers_gone.store(true, Ordering::Release);
        for r in &self.ranks {
            r.batch_ready.notify_one();
        }
    }

    /// How many ranks this agent runs.
    pub(super) fn ranks(&self) -> usize {
        self.ranks.len()
    }

    /// Rank `r`'s accelerator: each batch once read, then its compute
    /// time; returns what it did. Ends early when `stop` is set.
    pub(super) async fn run_rank(
        self: Arc<Self>,
        r: usize,
        start_at: Instant,
        stop: Arc<AtomicBool>,
        seed: u64,
    ) -> RankReport {
        let rank = &self.ranks[r];
        let batch = u64::from(self.spec.batch.max(1));
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed ^ u64::from(rank.global));
        let mut report = RankReport {
            rank: rank.global,
            ..Default::default()
        };
        tokio::time::sleep_until(start_at.into()).await;
        // The accelerator is computing, running late, or idle: every
        // moment since the start that is neither is wait (for data, or for
        // this task to run), so compute + overrun + wait is the wall time.
        let mut last = start_at;
        'batches: for b in 0..rank.done.len() as u64 {
            let want = rank.batch_len(b, batch);
            while rank.done[b as usize].load(Ordering::Acquire) < want {
                if stop.load(Ordering::Relaxed) || self.readers_gone.load(Ordering::Acquire) {
                    break 'batches;
                }
                let _ =
                    tokio::time::timeout(Duration::from_millis(50), rank.batch_ready.notified())
                        .await;
            }
            let computing = Instant::now();
            report.wait_ns += computing.saturating_duration_since(last).as_nanos() as u64;
            rank.taken.store(b + 1, Ordering::Release);
            rank.batch_taken.notify_waiters();
            let pause = pacing::think_pause(&self.spec.compute, &mut rng);
            if !pause.is_zero() {
                pacing::think(pause).await;
            }
            last = Instant::now();
            // The accelerator computes for its time: a pause that ends late
            // (this agent's CPUs busy, the timer's slack) is the emulator's
            // lateness, not compute, or a busy client would read as busy
            // accelerators.
            let took = last.duration_since(computing);
            report.compute_ns += pause.as_nanos() as u64;
            report.overrun_ns += took.saturating_sub(pause).as_nanos() as u64;
            report.steps += 1;
            report.samples += u64::from(want);
        }
        report.wall_ns = last.saturating_duration_since(start_at).as_nanos() as u64;
        report.bytes = rank.bytes.load(Ordering::Relaxed);
        report.errors = rank.errors.load(Ordering::Relaxed);
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shuffle_is_a_permutation_that_differs_by_seed() {
        for n in [1u64, 2, 3, 17, 1000, 4097] {
            let a = Shuffle::new(n, 1, false);
            let b = Shuffle::new(n, 2, false);
            let mut seen = vec![false; n as usize];
            for i in 0..n {
                let x = a.at(i);
                assert!(x < n);
                assert!(!seen[x as usize], "n={n}: {x} twice");
                seen[x as usize] = true;
            }
            if n >= 17 {
                let same = (0..n).filter(|&i| a.at(i) == b.at(i)).count();
                assert!((same as u64) < n / 4, "n={n}: {same} positions agree");
            }
        }
        let id = Shuffle::new(10, 1, true);
        assert_eq!(
            (0..10).map(|i| id.at(i)).collect::<Vec<_>>(),
            (0..10).collect::<Vec<_>>()
        );
    }

    #[test]
    fn shards_tile_the_order() {
        for (n, ranks) in [(10u64, 3u64), (7, 7), (100, 8), (5, 1)] {
            let mut next = 0;
            for g in 0..ranks {
                let s = shard(n, ranks, g);
                assert_eq!(s.start, next);
                assert!(s.end - s.start >= n / ranks && s.end - s.start <= n / ranks + 1);
                next = s.end;
            }
            assert_eq!(next, n);
        }
    }
}
