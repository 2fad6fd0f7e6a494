//! Runs one agent's share of one stage: workers, op choice, key choice,
//! pacing, timing, and one op-log record and (outside warm-up) one histogram
//! sample per op.
//!
//! There is one worker loop. What differs between stage kinds is only where
//! the next op comes from ([`WorkSource`]): prepare and cleanup walk this
//! agent's slice of the key space once; a workload stage draws ops by weight
//! and keys by the key space's distribution. When to stop is one shared
//! [`Budget`]; open-loop pacing is a shared [`Schedule`] of start times.
//!
//! - `keys.rs`: which objects exist; uniform and zipf key choice.
//! - `existing.rs`: objects already there, listed into a compact index.
//! - `pacing.rs`: the open-loop schedule, ramps and think time.
//! - `pacer.rs`: the thread that wakes open-loop workers at their slots.
//! - `ops.rs`: each op against the store, verification, retries.
//! - `budget.rs`: the stop condition split over agents.
//! - `live.rs`: the counters the agent reads each second.

mod budget;
mod deal;
pub mod existing;
pub mod keys;
mod large;
mod live;
mod ml;
mod ops;
mod outcome;
pub mod pacer;
mod pacing;
pub mod replay;
mod setup;
mod source;
#[cfg(test)]
mod tests;
pub mod train;
pub mod versions;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::clock::{Anchor, Mono};
use crate::datagen::DataSpec;
use crate::metrics::LATENCY_HIGHEST_NS;
use crate::op::OpKind;
use crate::oplog::writer::SEND_BATCH_RECORDS;
use crate::oplog::{EntryKey, LogBatch, LogContext, LogEntry, OpLogSender};
use crate::plan::{Pacing, Stage, StageKind};
use crate::pools::Pools;
use crate::store::multi::MultiStore;
use crate::store::{ErrorClass, ObjectStore};

pub use budget::{Budget, HeldOps, share};
pub use deal::{Deal, Slice};
pub use existing::ListingSummary;
use keys::Side;
pub use keys::{KeyPicker, KeyState};
use live::LiveDelta;
pub use live::{LIVE_FLUSH, LagTaken, LiveCounters, OpTotals, live_histogram};
pub use ops::{LIST_PAGE_ENTRIES, timed};
pub use outcome::{ScheduleReport, StageOutcome};
use outcome::{WorkerOutcome, earliest, lag_histogram, per_second};
pub use pacer::{Pacer, PacerTuning};
pub use pacing::{OpenLoop, Schedule};
pub use replay::ReplayFeed;
use setup::{check_versioning, discover, ensure_ready, remove_made_buckets};
use source::{Target, Work, WorkSource};

/// An open-loop op that starts later than this after its scheduled time is
/// counted as late.
pub const LATE_AFTER: Duration = Duration::from_millis(1);

/// Everything one agent needs to run its share of a stage.
pub struct StageRun {
    /// This agent's place in the run, and which agents left before this
    /// stage: how the stage is split (`deal.rs`).
    pub deal: Deal,
    /// The op-log `client_id` of this agent.
    pub agent_id: String,
    /// Seed and shape of payloads.
    pub data: DataSpec,
    pub stage_index: usize,
    pub stage: Stage,
    pub store: Arc<dyn ObjectStore>,
    /// With several endpoints, each op leases one from here: entry `p`
    /// holds the endpoints of pool `p` (its bound ones and the unbound), a
    /// single entry serves every pool. `store` is then one of these, for
    /// stage-wide calls such as listing. Empty without endpoints.
    pub multi: Vec<Arc<MultiStore>>,
    /// Where op records go. `None` only to measure the engine without its
    /// log (the harness benchmark); agents always log.
    pub oplog: Option<OpLogSender>,
    /// What this agent already knows of the key space (from an earlier
    /// stage of the session); `None` to find out by one listing.
    pub keys: Option<Arc<KeyState>>,
    /// Pinned runtimes to run workers on; `None` runs them on the caller's
    /// runtime.
    pub pools: Option<Arc<Pools>>,
    /// When workers start (already on this agent's clock).
    pub start_at: Instant,
    /// The agent's clock: op times are read from the monotonic clock and
    /// made wall times through this one pairing, so they never jump and are
    /// on the clock the controller measured (see the agent's service).
    pub clock: Anchor,
    pub live: Arc<LiveCounters>,
    /// Set to stop the stage early (controller lost, Ctrl-C, abort).
    pub stop: Arc<AtomicBool>,
}

/// Runs this agent's share of the stage and returns when every worker is done.
pub async fn run_stage(mut run: StageRun) -> anyhow::Result<StageOutcome> {
    let made = if run.stage.writes_first() {
        ensure_ready(&run).await?
    } else {
        Vec::new()
    };
    // A stage that readied its bucket had it checked then (S3's
    // `ensure_ready_with` refuses an unversioned one; `mem://` keeps
    // versions): asking again would be a second request for one answer.
    if run.stage.api.versioning && !run.stage.writes_first() {
        check_versioning(&run).await?;
    }
    let prior = run
        .keys
        .take()
        .filter(|s| s.count() == run.stage.objects.count);
    let mut listing = None;
    let state = match (run.stage.kind, prior) {
        // A replay's objects are those its trace names, an AI/ML stage's
        // those its settings name: no listing.
        (
            StageKind::Replay | StageKind::Dataset | StageKind::Train | StageKind::Checkpoint,
            prior,
        ) => prior.unwrap_or_else(|| Arc::new(KeyState::new(run.stage.objects.count))),
        // Objects already there: listed once, or as an earlier stage of
        // the session listed them.
        (_, prior) if run.stage.objects.existing.is_some() => {
            let (state, listed) = existing::state(&run, prior).await?;
            listing = listed;
            state
        }
        // Cleanup looks once at what exists now (other agents of a shared
        // key space wrote too) and keeps the session's record of what was
        // there before the run; with no such record (a cleanup-only plan)
        // it deletes the whole key space.
        (StageKind::Cleanup, prior) => {
            let now = discover(&run).await?;
            if let Some(prior) = prior {
                now.copy_preexisting(&prior);
                now.note_buckets_made(prior.buckets_made());
            }
            Arc::new(now)
        }
        // A prepare that walks keys of agents that left: which of theirs
        // exist, only a listing tells (they may have written all of them).
        (StageKind::Prepare, Some(s)) if !run.deal.departed.is_empty() => {
            s.add_present(&discover(&run).await?);
            s
        }
        (_, Some(s)) => s,
        (_, None) => {
            let s = discover(&run).await?;
            s.mark_present_as_preexisting();
            Arc::new(s)
        }
    };
    // Only a stage over several buckets removes what it made: one bucket
    // stays, as it always has.
    if run.stage.api.buckets > 1 {
        state.note_buckets_made(made);
    }
    let run = Arc::new(run);
    let mut source = WorkSource::for_stage(&run, &state)?;
    if let WorkSource::Dataset(files) = &mut source
        && !run.stage.overwrite
    {
        files.skip_listed(&run).await?;
    }
    let source = Arc::new(source);
    // What the stage spends is split over the agents still in the run.
    let (live_index, live_count) = run.deal.live();
    let budget = Arc::new(Budget::for_agent(
        &run.stage.stop,
        live_index,
        live_count,
        run.start_at,
    ));
    let open = match run.stage.pacing {
        Pacing::Closed => None,
        Pacing::Open { rate, arrivals } => {
            let agent_rate = rate / f64::from(live_count.max(1));
            let seed = run.data.seed ^ (u64::from(run.deal.index) << 32) ^ run.stage_index as u64;
            let schedule =
                Schedule::new(run.start_at, agent_rate, arrivals, seed).with_ramp(run.stage.ramp);
            let open = OpenLoop::new(schedule, run.stop.clone())
                .map_err(|e| anyhow::anyhow!("starting the open-loop pacer thread: {e}"))?;
            Some(Arc::new(open))
        }
    };
    let idx = Arc::new(AtomicU64::new(0));
    let log_context = Arc::new(LogContext::new(
        &run.agent_id,
        &run.stage.name,
        &run.stage.objects.prefix,
        run.stage.objects.naming,
    ));
    // Every agent runs the same stage, so this says what all of them do.
    let removes = run.stage.removes_objects();
    run.store.stage_begins(removes);
    for m in &run.multi {
        m.stage_begins(removes);
    }

    // In open loop the first slot is the start: wait for it as precisely.
    match (&open, &*source) {
        (Some(o), _) => o.wait_start(run.start_at).await,
        // A replay's first op is due at the start: its pacer too.
        (None, WorkSource::Replay { pacer: Some(p), .. }) => {
            p.running().await;
            p.wait_until(run.start_at).await;
        }
        _ => tokio::time::sleep_until(run.start_at.into()).await,
    }
    let anchor = run.clock;
    let started_ns = anchor.wall_ns(Instant::now());

    let mut workers = Vec::new();
    for worker in 0..run.stage.concurrency {
        // The pool this worker runs on (as `Pools::spawn` picks it) decides
        // which endpoints it may use.
        let pool = run.stage.pool.map_or(worker as usize, |p| p as usize);
        let npools = run.pools.as_ref().map_or(1, |p| p.len().max(1));
        let multi = match run.multi.len() {
            0 => None,
            1 => Some(run.multi[0].clone()),
            n => Some(run.multi[(pool % npools) % n].clone()),
        };
        let w = Worker {
            id: worker,
            run: run.clone(),
            source: source.clone(),
            budget: budget.clone(),
            open: open.clone(),
            state: state.clone(),
            idx: idx.clone(),
            anchor,
            multi,
            log_context: log_context.clone(),
        };
        workers.push(match &run.pools {
            // A stage bound to a pool runs there; otherwise workers are
            // dealt over the pools (one per NUMA node or CPU set).
            Some(p) => p.spawn(
                run.stage.pool.map_or(worker as usize, |i| i as usize),
                w.run(),
            ),
            None => tokio::spawn(w.run()),
        });
    }
    // A training epoch's accelerators, one task per rank beside its
    // readers.
    let accelerators = match &*source {
        WorkSource::Train(feed) => train::spawn_accelerators(feed, &run),
        _ => Vec::new(),
    };
    let mut total = WorkerOutcome::default();
    let mut failed = None;
    for w in workers {
        match w.await {
            Ok(Ok(outcome)) => total.merge(outcome),
            Ok(Err(e)) => drop(failed.get_or_insert(e)),
            Err(e) => drop(failed.get_or_insert(e.into())),
        }
    }
    if let WorkSource::Train(feed) = &*source {
        // No batch completes now that does not already: an accelerator
        // still waiting for one stops.
        feed.readers_finished();
    }
    let mut ranks = Vec::with_capacity(accelerators.len());
    for a in accelerators {
        ranks.push(a.await?);
    }
    if let Some(e) = failed {
        return Err(e);
    }
    if let WorkSource::Replay { feed, .. } = &*source
        && let Some(e) = feed.error()
    {
        // What was replayed is logged; the stage still fails, saying where.
        anyhow::bail!("replaying stage `{}`: {e}", run.stage.name);
    }
    // The achieved rate is over when ops were really issued: behind
    // schedule, the slots only advance as fast as workers take them, so
    // they would echo the target.
    let last = total.last_issued.max(total.last_slot);
    let since_start = |t: Instant| t.duration_since(run.start_at);
    let schedule = match (&open, &*source) {
        (Some(o), _) => {
            let s = &o.schedule;
            // In a ramp fewer ops are due: the span is counted at full rate.
            let span = last.map_or(0.0, |t| s.full_rate_span(since_start(t)));
            Some(total.schedule_report(s.rate(), span))
        }
        // A replay's target is the trace's own rate over its span.
        (None, WorkSource::Replay { pacer: Some(_), .. }) => {
            let span = |t: Option<Instant>| t.map_or(0.0, |t| since_start(t).as_secs_f64());
            let target = per_second(total.scheduled, span(total.last_slot));
            Some(total.schedule_report(target, span(last)))
        }
        _ => None,
    };
    let stopped_early = run.stop.load(Ordering::Relaxed);
    if run.stage.kind == StageKind::Cleanup && run.stage.api.buckets > 1 && !stopped_early {
        remove_made_buckets(&run, &state).await;
    }
    Ok(StageOutcome {
        records: idx.load(Ordering::Relaxed),
        stopped_early,
        metrics: total.metrics,
        started_ns,
        first_op_ns: total.first_op_ns,
        first_issued_ns: total.first_issued_ns,
        ended_ns: total.last_end_ns.max(started_ns),
        warmup_ops: total.warmup_ops,
        retries: total.retries,
        schedule,
        keys: state,
        // Each pool's balancer opened its own stores: rows for the same
        // endpoint are summed by whoever aggregates (the controller).
        endpoints: run
            .multi
            .iter()
            .flat_map(|m| m.stats_by_endpoint())
            .collect(),
        listing,
        ranks,
    })
}

fn log_closed() -> anyhow::Error {
    anyhow::anyhow!("op-log writer stopped; cannot record ops")
}

struct Worker {
    id: u32,
    run: Arc<StageRun>,
    source: Arc<WorkSource>,
    budget: Arc<Budget>,
    open: Option<Arc<OpenLoop>>,
    state: Arc<KeyState>,
    idx: Arc<AtomicU64>,
    anchor: Anchor,
    /// The endpoints this worker balances over (its pool's).
    multi: Option<Arc<MultiStore>>,
    /// The stage's constant op-log columns, shared by all its batches.
    log_context: Arc<LogContext>,
}

impl Worker {
    /// The one op loop: take a budget slot (and a schedule slot in open
    /// loop), take work, do it, record it.
    async fn run(self) -> anyhow::Result<WorkerOutcome> {
        let run = &self.run;
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(
            run.data.seed
                ^ (u64::from(run.deal.index) << 40)
                ^ ((run.stage_index as u64) << 24)
                ^ u64::from(self.id),
        );
        let mut out = WorkerOutcome::default();
        if !pacing::await_turn(&run.stage, run.start_at, self.id, &run.stop, &self.budget).await {
            return Ok(out);
        }
        let _active = run.live.worker_active();
        let think = pacing::closed_loop_think(&run.stage);
        // Op times are `Mono` readings, worked on as integers (see there).
        // Ops in a ramp are flagged like warm-up's.
        let warmup_end = run
            .stage
            .warmup_window()
            .map(|w| Mono::from_instant(run.start_at).plus(w));
        let mut interval = live_histogram();
        let mut next_flush = Mono::now().plus(LIVE_FLUSH);
        let new_batch = || match &run.oplog {
            Some(log) => log.new_log_batch(self.log_context.clone()),
            None => LogBatch::with_capacity(self.log_context.clone(), 0),
        };
        let mut batch = new_batch();
        let mut held = HeldOps::default();
        // The live counters, added up here and published with the interval
        // histogram: a shared atomic write per op is a full barrier on the
        // engine core (see `Budget::claim`).
        let mut live = LiveDelta::default();
        // The clock as last read: the end of the last op, or later.
        let mut now = Mono::now();
        while !run.stop.load(Ordering::Relaxed) && self.budget.claim(&mut held, now) {
            // Open loop: the op's clock starts at its slot, not when a
            // worker got free, so queueing counts as latency.
            // The slot as an Instant (for the timer) and as a Mono.
            let slot = match &self.open {
                Some(o) => match o.next_slot(self.budget.deadline()).await {
                    Some(slot) => Some(slot),
                    None => break,
                },
                None => None,
            };
            let work = match &*self.source {
                // A training reader waits for its rank's prefetch window.
                WorkSource::Train(feed) => feed.next(self.id, &run.stop).await,
                // A versioned cleanup waits for the listing's next batch.
                WorkSource::Sweep(sweep) => match sweep.next().await {
                    Some(Ok(items)) => Some(Work {
                        op: OpKind::DeleteBatch,
                        target: Target::Versions(items),
                        due: None,
                        token: None,
                    }),
                    Some(Err(e)) => {
                        anyhow::bail!("listing the versions of {}: {e}", run.store)
                    }
                    None => None,
                },
                source => source.next(&mut rng, &self.state),
            };
            let Some(Work {
                op,
                target,
                due,
                token,
            }) = work
            else {
                break;
            };
            // A replayed op waits for its time; its latency counts from it.
            let slot = match (due, &*self.source) {
                (Some(due), WorkSource::Replay { pacer: Some(p), .. }) => {
                    let at = run.start_at + due;
                    let at_mono = Mono::from_instant(at);
                    if self.budget.deadline().is_some_and(|d| at_mono >= d)
                        || !p.wait_until(at).await
                    {
                        break;
                    }
                    Some((at, at_mono))
                }
                _ => slot,
            };
            // The key a version op is on (its plan names the version).
            let version_of = match &target {
                Target::Version { index, .. } => Some(*index),
                _ => None,
            };
            // Payloads are made before the clock starts: generating data is
            // not part of the storage latency.
            let (plan, index) = match target {
                Target::Index(i) => (
                    ops::OpPlan::new(op, i, &run.stage, &run.data, &mut rng),
                    Some(i),
                ),
                Target::Key {
                    key,
                    size,
                    range,
                    content,
                } => {
                    let mut plan =
                        ops::OpPlan::for_key(op, key, size, &run.stage, &run.data, &mut rng);
                    if range.is_some() {
                        plan.range = range;
                    }
                    if content.is_some() {
                        plan.set_content(content);
                    }
                    (plan, None)
                }
                target => (
                    source::plan_of(run, &self.state, op, target, &mut rng),
                    None,
                ),
            };
            let issued = Mono::now();
            let started = slot.map_or(issued, |(_, at_mono)| at_mono);
            // How late a scheduled op was issued: logged with it.
            let lag_ns = slot.map(|_| issued.ns_since(started));
            if let Some((at, _)) = slot {
                let lag = Duration::from_nanos(issued.ns_since(started));
                out.scheduled += 1;
                out.late += u64::from(lag > LATE_AFTER);
                out.max_lag = out.max_lag.max(lag);
                out.sum_lag += lag;
                out.lags
                    .get_or_insert_with(lag_histogram)
                    .saturating_record((lag.as_nanos() as u64).max(1));
                out.last_slot = out.last_slot.max(Some(at));
                out.last_issued = out.last_issued.max(Some(at + lag));
                live.lag(lag);
            }
            // One endpoint per op (its retries included), named in the log,
            // from the endpoints of this worker's pool.
            let lease = self.multi.as_ref().map(|m| m.pick());
            let store = lease.as_ref().map_or(&run.store, |l| l.store());
            let (result, retries) =
                ops::run_with_retries(store.as_ref(), &plan, &run.stage, &run.data).await;
            let ended = Mono::now();
            now = ended;
            // The endpoint column, as a position in the batch's table of
            // distinct endpoints: no allocation per op. Without several
            // endpoints it is the stage's one store, the table's first entry
            // once the batch has one.
            let endpoint = match &run.oplog {
                None => 0,
                Some(_) if self.multi.is_none() && !batch.is_empty() => 0,
                Some(_) => batch.endpoint_id(store.endpoint()),
            };
            if let Some(l) = lease {
                l.finish(result.as_ref().map_or(0, |d| d.bytes), result.is_ok());
            }
            if let (WorkSource::Train(feed), Some(token)) = (&*self.source, token) {
                feed.done(
                    token,
                    result.as_ref().map_or(0, |d| d.bytes),
                    result.is_ok(),
                );
            }

            let failed = result.as_ref().err().map(|e| e.class);
            let (done, error) = match result {
                Ok(done) => {
                    if let Some(index) = index {
                        if op.writes() {
                            self.state.set_created(index);
                            if let Some(v) = &done.version {
                                self.state.versions().record(index, v, rng.next_u64());
                            }
                        } else if op == OpKind::Delete {
                            self.state.set_present(index, false);
                        } else if op == OpKind::Copy {
                            self.state.set_side(index, Side::Copy, true);
                        } else if op == OpKind::Append {
                            self.state.set_side(index, Side::Append, true);
                        }
                    } else if op == OpKind::DeleteBatch {
                        self.batch_deleted(&plan);
                    } else if op == OpKind::DeleteVersion
                        && let Some(i) = version_of
                    {
                        // The version may have been the key's current one,
                        // or its only one: the key is taken as gone until
                        // a put makes it again, so no read of it fails
                        // `not_found` for a version the agent removed.
                        self.state.set_present(i, false);
                    }
                    (done, String::new())
                }
                Err(e) => {
                    // Keep the agent's view of what exists honest.
                    if let Some(index) = index
                        && e.class == ErrorClass::NotFound
                        && op.reads_existing()
                    {
                        self.state.set_present(index, false);
                    }
                    (
                        ops::OpDone {
                            n_objects: plan.n_objects(),
                            ..Default::default()
                        },
                        e.log_text(),
                    )
                }
            };
            let ok = error.is_empty();
            let warmup = warmup_end.is_some_and(|w| started < w);
            if warmup {
                out.warmup_ops += 1;
            } else {
                let latency_ns = ended.ns_since(started);
                out.metrics.record(op, latency_ns, done.bytes, ok);
                if ok && op == OpKind::DeleteBatch {
                    out.metrics.add_objects(op, u64::from(done.n_objects));
                }
            }
            out.retries += u64::from(retries);
            self.budget.add_bytes(done.bytes);
            live.op(op, done.bytes, failed);
            if ok {
                let latency_ns = ended.ns_since(started);
                interval.saturating_record(latency_ns.clamp(1_000, LATENCY_HIGHEST_NS));
            }
            let flush = ended >= next_flush;
            if flush {
                live.publish(&run.live);
                run.live.add_interval(&mut interval);
                next_flush = ended.plus(LIVE_FLUSH);
            }

            let start_ns = self.anchor.wall_ns_at(started);
            let end_ns = self.anchor.wall_ns_at(ended);
            out.first_op_ns = earliest(out.first_op_ns, Some(start_ns));
            if out.first_issued_ns.is_none() {
                // A worker's first op is its earliest issued.
                let issued_ns = match slot {
                    Some(_) => self.anchor.wall_ns_at(issued),
                    None => start_ns,
                };
                out.first_issued_ns = Some(issued_ns);
            }
            out.last_end_ns = out.last_end_ns.max(end_ns);
            if let Some(log) = &run.oplog {
                let times = (start_ns, end_ns, lag_ns);
                // An op whose `file` is not its key-space key (a copy's
                // source and destination, a batch, a side object) is
                // logged by name.
                let (index, key) = match plan.log_key() {
                    Some(text) => (None, text),
                    None if op == OpKind::Append => (None, plan.key),
                    None => (index, plan.key),
                };
                self.log_op(
                    &mut batch, endpoint, op, index, key, &done, error, times, retries, warmup,
                );
                // Sent in batches: one channel message (and one `idx`
                // reservation) per SEND_BATCH_RECORDS ops, or sooner at each
                // live flush, so a slow worker's records are not held back
                // for long (the merge expects an agent's log nearly in
                // order). Waits when the writer is behind; never drops a
                // record.
                if batch.len() >= SEND_BATCH_RECORDS || flush {
                    let full = std::mem::replace(&mut batch, new_batch());
                    self.send_log(log, full).await?;
                    // It may have waited for the writer.
                    now = Mono::now();
                }
            }
            // An op on a local store (a page-cache read, `mem://`) finishes
            // without ever waiting, so a worker would keep its runtime
            // thread for good and a stage with more workers than threads
            // would leave some idle (seen: 3 workers on 2 threads, one ran
            // no op in a second). tokio's task budget yields every 128 ops
            // or so; it costs a counter per op.
            tokio::task::coop::consume_budget().await;
            // Think time: a pause before the next op, in no op's latency;
            // none that would end past the stage's end.
            if let Some(think) = &think {
                let pause = pacing::think_pause(think, &mut rng);
                if self.budget.deadline().is_some_and(|d| now.plus(pause) >= d) {
                    break;
                }
                pacing::think(pause).await;
                now = Mono::now();
            }
        }
        live.publish(&run.live);
        run.live.add_interval(&mut interval);
        if let Some(log) = &run.oplog {
            self.send_log(log, batch).await?;
        }
        Ok(out)
    }

    /// A `delete_batch` of key-space objects went: none of them (nor, in
    /// a cleanup, their side objects) exists now.
    fn batch_deleted(&self, plan: &ops::OpPlan) {
        for &i in &plan.indexes {
            self.state.set_present(i, false);
            if self.run.stage.kind == StageKind::Cleanup {
                for side in Side::ALL {
                    self.state.set_side(i, side, false);
                }
            }
        }
    }

    /// Adds the op's entry to the batch. Out of line, so the op loop is
    /// the same with and without a log.
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    fn log_op(
        &self,
        batch: &mut LogBatch,
        endpoint: u16,
        op: OpKind,
        index: Option<u64>,
        key: String,
        done: &ops::OpDone,
        error: String,
        (start_ns, end_ns, lag_ns): (i64, i64, Option<u64>),
        retries: u32,
        warmup: bool,
    ) {
        // Keys of the key space are logged as their index (the writer
        // formats it by the key space's naming, the key the op used) and dropped
        // here; only other keys (a list prefix, a directory, an object
        // outside the key space) travel as text.
        let key = match index {
            Some(index)
                if !matches!(
                    op,
                    OpKind::List | OpKind::ListVersions | OpKind::Mkdir | OpKind::Rmdir
                ) =>
            {
                debug_assert_eq!(key, self.run.stage.objects.key(index));
                EntryKey::Index(index)
            }
            _ => EntryKey::Text(key),
        };
        // A large op's parts name its object too.
        let part_key = (!done.parts.is_empty()).then(|| key.clone());
        let entry = LogEntry {
            thread: self.id,
            op,
            warmup,
            retries,
            n_objects: done.n_objects,
            bytes: done.bytes,
            start_ns,
            first_byte_ns: done.first_byte.map(|t| self.anchor.wall_ns_at(t)),
            end_ns,
            lag_ns,
            key,
            error,
        };
        batch.push(entry, endpoint);
        if let Some(key) = part_key {
            self.log_parts(batch, endpoint, op, key, done, warmup);
        }
    }

    /// The parts of a large op, beside it: same thread, key and endpoint,
    /// kind `GET_PART` or `PUT_PART`, `n_objects` 0. Not ops: no histogram
    /// sample, no live count (see `op`'s module docs).
    #[cold]
    fn log_parts(
        &self,
        batch: &mut LogBatch,
        endpoint: u16,
        op: OpKind,
        key: EntryKey,
        done: &ops::OpDone,
        warmup: bool,
    ) {
        let kind = if op.writes() {
            OpKind::PutPart
        } else {
            OpKind::GetPart
        };
        for p in &done.parts {
            let entry = LogEntry {
                thread: self.id,
                op: kind,
                warmup,
                retries: 0,
                n_objects: 0,
                bytes: p.bytes,
                start_ns: self.anchor.wall_ns_at(p.start),
                first_byte_ns: p.first_byte.map(|t| self.anchor.wall_ns_at(t)),
                end_ns: self.anchor.wall_ns_at(p.end),
                lag_ns: None,
                key: key.clone(),
                error: String::new(),
            };
            batch.push(entry, endpoint);
        }
    }

    /// Gives the batch its `idx` range (consecutive, so every idx of the
    /// stage is used exactly once) and sends it.
    async fn send_log(&self, log: &OpLogSender, mut batch: LogBatch) -> anyhow::Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        batch.set_first_idx(self.idx.fetch_add(batch.len() as u64, Ordering::Relaxed));
        log.send_log_batch(batch).await.map_err(|_| log_closed())
    }
}
