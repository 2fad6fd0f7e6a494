//! Where a worker's next op comes from ([`WorkSource`]): each key of the
//! agent's slice once (prepare, cleanup), ops drawn by the mix's weights
//! on the key space, on objects listed before the stage (`existing.rs`),
//! or a trace's ops (`replay.rs`); and what one op is on ([`Work`],
//! [`Target`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::{Rng, RngExt};
use rand_xoshiro::Xoshiro256PlusPlus;

use std::sync::Arc;

use super::StageRun;
use super::deal::Slice;
use super::existing;
use super::keys::{KeyPicker, KeyState, Side};
use super::ml;
use super::ops::OpPlan;
use super::pacer::Pacer;
use super::replay::{self, ReplayFeed};
use super::train::TrainFeed;
use super::versions::{Sweep, SweepSpec, VersionBatch};
use crate::op::OpKind;
use crate::plan::{ReplayPhase, Stage, StageKind};
use crate::store::ByteRange;

/// What a worker does next: an op on an object.
pub(super) struct Work {
    pub(super) op: OpKind,
    pub(super) target: Target,
    /// When the op is due, after the stage's start (a replay's ops);
    /// `None`: as soon as a worker takes it (or at its open-loop slot).
    pub(super) due: Option<Duration>,
    /// The source's own mark of the op, given back when it is done (a
    /// training sample's rank and position).
    pub(super) token: Option<u64>,
}

/// The object an op is on.
pub(super) enum Target {
    /// An object of the stage's key space, by index: the agent keeps track
    /// of whether it exists, and the op-log writer names it from the index.
    Index(u64),
    /// An object outside the key space, by name and size (one listed
    /// before the stage, one a trace names): nothing is tracked of it.
    /// `range`: the range a `range_get` reads (else the stage's choice).
    Key {
        key: String,
        size: u64,
        range: Option<ByteRange>,
        /// Bytes the source made: a PUT writes them, a verified GET
        /// expects them (a dataset file in its format); `None`: the
        /// generator's bytes for the key.
        content: Option<bytes::Bytes>,
    },
    /// Objects of the key space deleted in one request (`delete_batch`):
    /// in a cleanup, with their side objects.
    Batch(Vec<u64>),
    /// One version this agent's puts made.
    Version { index: u64, version: Box<str> },
    /// Versions a versioned cleanup listed.
    Versions(VersionBatch),
}

/// Where a worker's next op comes from.
pub(super) enum WorkSource {
    /// Each key of this agent's slices once (PUT or DELETE), skipping
    /// those `skip` says are done: its own part of the key space and its
    /// part of departed agents' (`Deal::key_slices`).
    Keys {
        op: OpKind,
        next: AtomicU64,
        slices: Vec<Slice>,
        skip: fn(&KeyState, u64) -> bool,
    },
    /// Ops drawn by weight, keys by the key space's distribution.
    Mix {
        cumulative: Vec<(u64, OpKind)>,
        picker: KeyPicker,
        /// Keys per `delete_batch`.
        batch: usize,
    },
    /// A cleanup in batches: `per_claim` keys of this agent's slices at a
    /// time, those with something to delete (the object the run made, its
    /// side objects) in one `delete_batch` (a `delete` when that is one
    /// object).
    Cleanup {
        next: AtomicU64,
        slices: Vec<Slice>,
        per_claim: u64,
    },
    /// A versioned cleanup: batches of versions as the listing finds them.
    Sweep(Sweep),
    /// A trace's ops, this agent's share, each due at its time (run
    /// phase, with the pacer that wakes workers then) or at once (prepare).
    Replay {
        feed: ReplayFeed,
        pacer: Option<Pacer>,
    },
    /// Ops drawn by weight as in `Mix`, each on one of the objects this
    /// agent listed before the stage (`objects: {existing: true}`).
    Existing(existing::Draw),
    /// A dataset's files, this agent's share, each written once.
    Dataset(ml::DatasetFiles),
    /// One epoch of a training run: this agent's ranks' samples.
    Train(Arc<TrainFeed>),
    /// A checkpoint's shards, one per rank of this agent.
    Shards(ml::Shards),
}

/// The mix's weights as running totals, for one draw per op.
pub(super) fn cumulative(stage: &Stage) -> Vec<(u64, OpKind)> {
    let mut acc = 0;
    stage
        .mix
        .weights
        .iter()
        .filter(|&(_, &w)| w > 0)
        .map(|(&op, &w)| {
            acc += u64::from(w);
            (acc, op)
        })
        .collect()
}

/// The `i`-th key of `slices` walked one after another; `None` past
/// their end. A slice or two (more only after departures): a scan.
fn nth_key(slices: &[Slice], mut i: u64) -> Option<u64> {
    for s in slices {
        if i < s.len {
            return Some(s.key(i));
        }
        i -= s.len;
    }
    None
}

/// Whether a cleanup has something to delete of key `i`: the object, if
/// the run made it, or an object an op made beside it.
pub(super) fn cleans(state: &KeyState, i: u64) -> bool {
    (state.is_present(i) && !state.is_preexisting(i))
        || Side::ALL.iter().any(|&d| state.has_side(i, d))
}

/// The keys a cleanup deletes of key `i`, added to `keys`.
pub(super) fn cleanup_keys(stage: &Stage, state: &KeyState, i: u64, keys: &mut Vec<String>) {
    let key = stage.objects.key(i);
    for side in Side::ALL {
        if state.has_side(i, side) {
            keys.push(side.key(&key));
        }
    }
    if state.is_present(i) && !state.is_preexisting(i) {
        keys.push(key);
    }
}

/// Keys per multi-object delete: the stage's `batch`, else the most the
/// store takes in one request.
fn batch_size(run: &StageRun) -> usize {
    match run.stage.api.batch {
        Some(b) => b as usize,
        None => run.store.batch_limit().max(1),
    }
}

/// One op drawn by weight from running totals.
pub(super) fn draw_op(
    cumulative: &[(u64, OpKind)],
    rng: &mut Xoshiro256PlusPlus,
) -> Option<OpKind> {
    let total = cumulative.last()?.0;
    let r = rng.random_range(0..total);
    Some(cumulative.iter().find(|(c, _)| r < *c)?.1)
}

impl WorkSource {
    pub(super) fn for_stage(run: &StageRun, state: &Arc<KeyState>) -> anyhow::Result<WorkSource> {
        let stage = &run.stage;
        if let Some(index) = state.existing() {
            return Ok(WorkSource::Existing(existing::Draw::new(
                stage,
                index.clone(),
            )));
        }
        let count = stage.objects.count;
        // Keys are dealt round-robin: agent i owns indexes i, i+n, i+2n, …
        let slices = run.deal.key_slices(count);
        let (live_index, live_count) = run.deal.live();
        let keys = |op, skip| WorkSource::Keys {
            op,
            next: AtomicU64::new(0),
            slices: slices.clone(),
            skip,
        };
        Ok(match stage.kind {
            StageKind::Prepare if stage.overwrite => keys(OpKind::Put, |_, _| false),
            StageKind::Prepare => keys(OpKind::Put, |s, i| s.is_present(i)),
            StageKind::Replay => {
                let replay = stage.replay.as_ref().ok_or_else(|| {
                    anyhow::anyhow!("stage `{}` has no `replay` settings", stage.name)
                })?;
                let (index, count) = run.deal.live();
                let share = replay::Share { index, count };
                let feed = ReplayFeed::start(
                    std::path::Path::new(&replay.trace),
                    stage,
                    share,
                    run.stop.clone(),
                )?;
                let pacer =
                    match replay.phase {
                        ReplayPhase::Prepare => None,
                        ReplayPhase::Run => Some(Pacer::start(run.stop.clone()).map_err(|e| {
                            anyhow::anyhow!("starting the replay's pacer thread: {e}")
                        })?),
                    };
                WorkSource::Replay { feed, pacer }
            }
            // Every version of what the run created.
            StageKind::Cleanup if stage.api.versioning => WorkSource::Sweep(Sweep::start(
                run.store.clone(),
                state.clone(),
                SweepSpec {
                    objects: stage.objects.clone(),
                    slices,
                    batch: batch_size(run),
                    timeout: stage.retry.timeout,
                },
            )),
            // What the run created: present now, and not there before; and
            // what ops made beside it.
            StageKind::Cleanup => {
                let mut batch = batch_size(run) as u64;
                if stage.api.batch.is_none() {
                    // The store's most, but never so many that some workers
                    // get no batch: 2,000 keys over 32 workers are batches
                    // of 63, not two of 1,000 (measured on RGW:
                    // scripts/bench/cleanup.sh).
                    let keys: u64 = slices.iter().map(|s| s.len).sum();
                    let workers = u64::from(stage.concurrency.max(1));
                    batch = batch.min(keys.div_ceil(workers)).max(1);
                }
                // Room for a key's side objects in a batch.
                let per_claim = if state.has_sides() {
                    (batch / 3).max(1)
                } else {
                    batch
                };
                WorkSource::Cleanup {
                    next: AtomicU64::new(0),
                    slices,
                    per_claim,
                }
            }
            StageKind::Dataset | StageKind::Train => {
                let spec = stage.training.dataset.as_ref().ok_or_else(|| {
                    anyhow::anyhow!("stage `{}` has no `dataset` settings", stage.name)
                })?;
                let layout = Arc::new(
                    crate::dataset::Layout::for_spec(spec, run.data.seed)
                        .map_err(|e| anyhow::anyhow!("stage `{}`: {e}", stage.name))?,
                );
                match &stage.training.train {
                    Some(train) => WorkSource::Train(Arc::new(TrainFeed::new(
                        train,
                        layout,
                        &run.data,
                        live_index,
                        live_count,
                        stage.verify,
                    ))),
                    None => WorkSource::Dataset(ml::DatasetFiles::new(
                        layout, &run.data, live_index, live_count,
                    )),
                }
            }
            StageKind::Checkpoint => {
                let spec = stage.training.checkpoint.as_ref().ok_or_else(|| {
                    anyhow::anyhow!("stage `{}` has no `checkpoint` settings", stage.name)
                })?;
                WorkSource::Shards(ml::Shards::new(
                    spec,
                    live_index,
                    live_count,
                    spec.restoring,
                ))
            }
            StageKind::Workload | StageKind::Search => WorkSource::Mix {
                cumulative: cumulative(stage),
                picker: KeyPicker::new(&stage.objects, run.deal.index, run.deal.count),
                batch: batch_size(run),
            },
        })
    }

    /// The next op, or None when the source is used up.
    pub(super) fn next(&self, rng: &mut Xoshiro256PlusPlus, state: &KeyState) -> Option<Work> {
        match self {
            WorkSource::Keys {
                op,
                next,
                slices,
                skip,
            } => loop {
                let index = nth_key(slices, next.fetch_add(1, Ordering::Relaxed))?;
                if !skip(state, index) {
                    return Some(Work {
                        op: *op,
                        target: Target::Index(index),
                        due: None,
                        token: None,
                    });
                }
            },
            WorkSource::Mix {
                cumulative,
                picker,
                batch,
            } => {
                let op = draw_op(cumulative, rng)?;
                let target = match op {
                    OpKind::DeleteBatch => {
                        let mut keys: Vec<u64> =
                            (0..*batch).map(|_| picker.existing(rng, state)).collect();
                        keys.sort_unstable();
                        keys.dedup();
                        Target::Batch(keys)
                    }
                    OpKind::GetVersion | OpKind::DeleteVersion => {
                        let book = state.versions();
                        let drawn = if op == OpKind::GetVersion {
                            book.pick(rng.next_u64())
                        } else {
                            book.take(rng.next_u64())
                        };
                        // None recorded: the op fails `not_found`, saying so.
                        let (index, version) = drawn.unwrap_or((0, Box::from("")));
                        Target::Version { index, version }
                    }
                    _ if op.reads_existing() => Target::Index(picker.existing(rng, state)),
                    _ => Target::Index(picker.any(rng)),
                };
                Some(Work {
                    op,
                    target,
                    due: None,
                    token: None,
                })
            }
            WorkSource::Cleanup {
                next,
                slices,
                per_claim,
            } => loop {
                let from = next.fetch_add(*per_claim, Ordering::Relaxed);
                nth_key(slices, from)?;
                let batch: Vec<u64> = (from..from + per_claim)
                    .map_while(|j| nth_key(slices, j))
                    .filter(|&i| cleans(state, i))
                    .collect();
                let target = match batch[..] {
                    [] => continue,
                    // One object: a plain DELETE, as a cleanup of one key
                    // at a time always was.
                    [i] if !Side::ALL.iter().any(|&d| state.has_side(i, d)) => Target::Index(i),
                    _ => Target::Batch(batch),
                };
                let op = match target {
                    Target::Index(_) => OpKind::Delete,
                    _ => OpKind::DeleteBatch,
                };
                return Some(Work {
                    op,
                    target,
                    due: None,
                    token: None,
                });
            },
            // Taken asynchronously: see `Sweep::next`.
            WorkSource::Sweep(_) => None,
            WorkSource::Replay { feed, pacer } => {
                let op = feed.next()?;
                Some(Work {
                    op: op.op,
                    target: Target::Key {
                        key: op.key,
                        size: op.size,
                        range: op.range,
                        content: None,
                    },
                    due: pacer.as_ref().map(|_| Duration::from_nanos(op.due_ns)),
                    token: None,
                })
            }
            WorkSource::Existing(draw) => draw.next(rng),
            WorkSource::Dataset(files) => files.next(),
            WorkSource::Shards(shards) => shards.next(),
            // Taken asynchronously: see `TrainFeed::next`.
            WorkSource::Train(_) => None,
        }
    }
}

/// The plan of an op on a batch or a version (see [`Target`]); the
/// other targets' plans are made inline in the worker's loop.
#[cold]
pub(super) fn plan_of(
    run: &StageRun,
    state: &KeyState,
    op: OpKind,
    target: Target,
    rng: &mut Xoshiro256PlusPlus,
) -> OpPlan {
    match target {
        Target::Batch(indexes) => {
            let mut keys = Vec::with_capacity(indexes.len());
            for &i in &indexes {
                if run.stage.kind == StageKind::Cleanup {
                    cleanup_keys(&run.stage, state, i, &mut keys);
                } else {
                    keys.push(run.stage.objects.key(i));
                }
            }
            let mut plan = OpPlan::batch(keys);
            plan.indexes = indexes;
            plan
        }
        Target::Version { index, version } => {
            let mut plan = OpPlan::new(op, index, &run.stage, &run.data, rng);
            plan.version = Some(version);
            plan
        }
        Target::Versions(items) => OpPlan::version_batch(items),
        Target::Index(i) => OpPlan::new(op, i, &run.stage, &run.data, rng),
        Target::Key { key, size, .. } => OpPlan::for_key(op, key, size, &run.stage, &run.data, rng),
    }
}
