//! One stage (or one step of a stage) on this agent, from the `RunStage`
//! call to its `StageDone`.
//!
//! [`begin`] runs under the session lock and only takes what the stage
//! needs from the session (no waiting: see `crate::session`); [`run`] is
//! the stage's own task: it opens the stores (sending `Preparing` while
//! that takes), runs the stage's kind (`crate::kinds`) with progress each
//! second, flushes the op-log, hands the key state back to the session and
//! sends the result.

mod open;
mod progress;

pub use open::endpoint_groups;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use chorus_common::clock::Anchor;
use chorus_common::datagen::DataSpec;
use chorus_common::metrics::prometheus::Metrics;
use chorus_common::oplog::{OpLogSender, OpLogWriter, WriterStats, spawn_writer};
use chorus_common::plan::Stage;
use chorus_common::pools::Pools;
use chorus_common::store::EnvOverlay;
use chorus_common::workload::{Deal, KeyState, LiveCounters, StageOutcome};
use chorus_proto::pb::{self, stage_event::Event};
use chorus_proto::{
    decode_step, encode_endpoints, encode_listing, encode_metrics, encode_schedule,
};
use tokio::sync::mpsc;
use tonic::Status;

use crate::kinds::{self, KindContext};
use crate::session::{Session, SessionSlot, key_space_id};
use crate::shutdown::{Shutdown, TaskGuard};
use open::Opened;

/// Where a stage's events go: the `RunStage` response stream.
pub type Events = mpsc::Sender<Result<pb::StageEvent, Status>>;

/// What a stage task takes from the session when it starts.
pub struct StageJob {
    session_id: String,
    index: u32,
    /// The stage as it runs now (a step's settings applied).
    stage: Stage,
    /// Its key space, under which its key state is kept.
    space: String,
    /// Its split over the run's agents, departed ones left out.
    deal: Deal,
    agent_id: String,
    data: DataSpec,
    keys: Option<Arc<KeyState>>,
    pools: Arc<Pools>,
    env: Arc<EnvOverlay>,
    /// Endpoint lists of its balancers (see [`endpoint_groups`]).
    groups: Vec<Vec<String>>,
    log_path: PathBuf,
    /// When its RunStage request came (see `StageDone.received_ns`).
    received: Instant,
    start_at: Instant,
    clock: Anchor,
    stop: Arc<AtomicBool>,
    /// How long the result waits for a controller that does not read it.
    controller_timeout: Duration,
    /// The agent's `/metrics` registry, when it serves one.
    metrics: Option<Arc<Metrics>>,
}

/// Takes what stage `req.stage_index` (or its step `req.step`) needs from
/// `session`, creates its op-log and marks the session running. Called
/// under the session lock: nothing here waits.
pub fn begin(
    session: &mut Session,
    req: &pb::RunStageRequest,
    clock: Anchor,
) -> Result<(StageJob, OpLogWriter, OpLogSender), Status> {
    if session.running {
        return Err(Status::failed_precondition("a stage is already running"));
    }
    let index = req.stage_index;
    let whole = session
        .plan
        .stages
        .get(index as usize)
        .ok_or_else(|| Status::invalid_argument(format!("no stage {index}")))?;
    let handover = req.step.as_ref().is_some_and(|s| s.handover);
    let deal = Deal::new(
        session.agent_index,
        session.agent_count,
        req.departed.clone(),
        handover,
    )
    .map_err(|m| Status::invalid_argument(format!("stage `{}`: {m}", whole.name)))?;
    let (stage, step) = match &req.step {
        None => (whole.clone(), 0),
        Some(s) if s.index == 0 => {
            return Err(Status::invalid_argument(format!(
                "stage `{}`: step index 0 (steps count from 1)",
                whole.name
            )));
        }
        Some(s) => (whole.for_step(&decode_step(s)), s.index),
    };
    // A replay reads the copy of its trace the controller sent.
    let mut stage = stage;
    if let Some(r) = &mut stage.replay {
        r.trace = session
            .trace_named(&r.trace)
            .ok_or_else(|| {
                Status::failed_precondition(format!(
                    "stage `{}`: the controller has not sent its trace `{}` (PutTrace)",
                    stage.name, r.trace
                ))
            })?
            .display()
            .to_string();
    }
    let groups = endpoint_groups(&stage.endpoints, session.pools.len())
        .map_err(|m| Status::invalid_argument(format!("stage `{}`: {m}", stage.name)))?;
    let log_path = session.oplog_path(index, step);
    let (writer, oplog) = spawn_writer(&log_path)
        .map_err(|e| Status::internal(format!("cannot create {}: {e}", log_path.display())))?;
    // Fetchable from now on: the controller copies the log while the stage
    // runs (the writer only appends whole zstd frames).
    session.oplogs.insert((index, step), log_path.clone());
    let stop = Arc::new(AtomicBool::new(false));
    session.running = true;
    session.stop = Some(stop.clone());
    let space = key_space_id(&stage);
    let job = StageJob {
        session_id: session.id.clone(),
        index,
        keys: session.keys.get(&space).cloned(),
        space,
        deal,
        agent_id: session.agent_id.clone(),
        data: DataSpec {
            seed: session.plan.seed,
            dedup: session.plan.data.dedup,
            compress: session.plan.data.compress,
            reuse: session.plan.data.reuse,
        },
        pools: session.pools.clone(),
        env: session.env.clone(),
        groups,
        log_path,
        received: Instant::now(),
        start_at: local_start(req, &clock),
        clock,
        stop,
        controller_timeout: session.controller_timeout,
        metrics: session.metrics.clone(),
        stage,
    };
    Ok((job, writer, oplog))
}

/// The start time is on the controller's clock; on ours it is that plus
/// our offset, and its instant comes from the session clock the offset was
/// measured against, not from a fresh reading of the wall clock: a wall
/// clock stepped since would move the start by the step, and under
/// libfaketime a fresh reading here put it 5 ms off (cluster_clock failed
/// 3 runs in 8). A start already past (or out of range) begins at once.
fn local_start(req: &pb::RunStageRequest, clock: &Anchor) -> Instant {
    clock
        .instant_at(req.start_at_ns + req.offset_ns)
        .map_or_else(Instant::now, |t| t.max(Instant::now()))
}

/// The stage's task (see the module docs). `_task` keeps the agent's
/// shutdown waiting until the op-log is flushed and the result sent.
pub async fn run(
    job: StageJob,
    writer: OpLogWriter,
    oplog: OpLogSender,
    tx: Events,
    slot: Arc<SessionSlot>,
    shutdown: Shutdown,
    _task: TaskGuard,
) {
    let mut phase = shutdown.subscribe();
    let (store, multi) = match open::open_while_preparing(&job, &tx, &mut phase).await {
        Opened::Ready(stores) => stores,
        Opened::Failed(status) => {
            return end_unstarted(job, writer, oplog, tx, &slot, status).await;
        }
        Opened::Stopped(reason) => {
            let status = Status::failed_precondition(format!(
                "agent is stopping ({reason}): stage `{}` had not started",
                job.stage.name
            ));
            return end_unstarted(job, writer, oplog, tx, &slot, status).await;
        }
    };
    let live = Arc::new(LiveCounters::default());
    let kind = kinds::for_stage(&job.stage);
    let cx = KindContext {
        stage: job.stage.clone(),
        stage_index: job.index as usize,
        deal: job.deal.clone(),
        agent_id: job.agent_id.clone(),
        data: job.data,
        store,
        multi,
        oplog: Some(oplog),
        keys: job.keys.clone(),
        pools: Some(job.pools.clone()),
        start_at: job.start_at,
        clock: job.clock,
        live: live.clone(),
        stop: job.stop.clone(),
    };
    // The CPUs the stage's workers run on: its host samples' CPUs.
    let cpus = job
        .pools
        .layouts()
        .into_iter()
        .flat_map(|l| l.cpus)
        .collect();
    if let Some(m) = &job.metrics {
        m.stage_begins(&job.stage.name, job.stage.kind.name());
    }
    let feed = job.metrics.as_deref().map(|metrics| progress::Feed {
        metrics,
        stage: &job.stage.name,
        agent: &job.agent_id,
    });
    let watched = progress::watch(
        kind.run(cx),
        progress::Watch {
            live: &live,
            stop: &job.stop,
            clock: &job.clock,
            tx: &tx,
            feed,
        },
        &mut phase,
        cpus,
    )
    .await;
    // Every sender of the op-log is gone once the stage's run ended, so
    // the writer drains and closes the file. No session lock is held here.
    let log_stats = writer.finish_async().await;
    let outcome = match (watched.result, log_stats) {
        (Ok(Ok(outcome)), Ok(stats)) => Ok((outcome, stats)),
        (Ok(Err(e)), _) => Err(Status::internal(format!("stage failed: {e:#}"))),
        (Err(e), _) => Err(Status::internal(format!("stage task failed: {e}"))),
        (_, Err(e)) => Err(Status::internal(format!("op-log write failed: {e}"))),
    };
    if let Some(m) = &job.metrics {
        if let Ok((o, _)) = &outcome {
            m.agent_done(&job.stage.name, &job.agent_id, &o.metrics);
        }
        m.stage_ends(&job.stage.name);
    }
    release(
        &slot,
        &job,
        outcome.as_ref().ok().map(|(o, _)| o.keys.clone()),
    );
    if let Some(reason) = &watched.stopped_by {
        tracing::info!(stage = %job.stage.name, "stage stopped ({reason}), op-log flushed");
    }
    let received_ns = job.clock.wall_ns(job.received);
    let event =
        outcome.map(|(o, stats)| done(&o, &stats, &job.log_path, watched.stopped_by, received_ns));
    // The result is also in the spool; a controller gone silent must not
    // hold this task (and a stopping agent's exit) forever.
    let _ = tokio::time::timeout(job.controller_timeout, tx.send(event)).await;
}

/// Ends a stage whose workers never started: its (empty) op-log closed,
/// the session free again, `status` as the stream's end.
async fn end_unstarted(
    job: StageJob,
    writer: OpLogWriter,
    oplog: OpLogSender,
    tx: Events,
    slot: &SessionSlot,
    status: Status,
) {
    drop(oplog);
    if let Err(e) = writer.finish_async().await {
        tracing::warn!("closing {}: {e}", job.log_path.display());
    }
    release(slot, &job, None);
    let _ = tokio::time::timeout(job.controller_timeout, tx.send(Err(status))).await;
}

/// Marks the session free again and keeps the stage's key state for the
/// next stage or step (a short lock).
fn release(slot: &SessionSlot, job: &StageJob, keys: Option<Arc<KeyState>>) {
    slot.with(|s| {
        if let Some(s) = s.as_mut().filter(|s| s.id == job.session_id) {
            s.running = false;
            s.stop = None;
            if let Some(keys) = keys {
                s.keys.insert(job.space.clone(), keys);
            }
        }
    });
}

/// The stage's result as sent.
fn done(
    o: &StageOutcome,
    stats: &WriterStats,
    log_path: &std::path::Path,
    stopped_by: Option<String>,
    received_ns: i64,
) -> pb::StageEvent {
    pb::StageEvent {
        event: Some(Event::Done(pb::StageDone {
            started_ns: o.started_ns,
            first_op_ns: o.first_op_ns.unwrap_or(0),
            first_issued_ns: o.first_issued_ns.unwrap_or(0),
            ended_ns: o.ended_ns,
            ops: encode_metrics(&o.metrics),
            records_logged: stats.records,
            log_backpressure_waits: stats.backpressure_waits,
            log_backpressure_wait_ns: stats.backpressure_wait_ns,
            oplog_bytes: std::fs::metadata(log_path).map(|m| m.len()).unwrap_or(0),
            warmup_ops: o.warmup_ops,
            retries: o.retries,
            schedule: o.schedule.as_ref().map(encode_schedule),
            endpoints: encode_endpoints(&o.endpoints),
            stopped_by: stopped_by.unwrap_or_default(),
            listing: o.listing.as_ref().map(encode_listing),
            ranks: chorus_proto::encode_ranks(&o.ranks),
            received_ns,
        })),
    }
}
