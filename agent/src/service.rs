//! The `Agent` gRPC service: one session at a time, stages run on request,
//! progress streamed, op-logs served in chunks (from any offset, also while
//! their stage still writes them).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chorus_common::clock::Anchor;
use chorus_common::datagen::DataSpec;
use chorus_common::metrics::histogram_to_bytes;
use chorus_common::oplog::spawn_writer;
use chorus_common::plan::EndpointSpec;
use chorus_common::pools::{PoolSpec, Pools};
use chorus_common::topology::Topology;
use chorus_common::workload::{LiveCounters, StageRun, live_histogram, run_stage};
use chorus_common::{plan, store};
use chorus_proto::pb::{self, stage_event::Event};
use chorus_proto::{OPLOG_CHUNK_BYTES, encode_endpoints, encode_metrics, encode_schedule};
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::{Mutex, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::AgentConfig;
use crate::host;
use crate::session::{Session, key_space_id};

/// Events buffered toward a slow controller before the stage task waits:
/// progress is once a second, so a few suffice.
const EVENT_QUEUE: usize = 8;

/// Op-log chunks read ahead of the network.
const CHUNK_QUEUE: usize = 4;

/// How long an agent goes on without hearing its controller when the
/// controller does not say (the plan's `control.controller_timeout`).
pub const DEFAULT_CONTROLLER_TIMEOUT: Duration = Duration::from_secs(10);

/// How often live progress is sent.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

/// The agent service.
pub struct AgentService {
    config: AgentConfig,
    session: Arc<Mutex<Option<Session>>>,
    /// This agent's clock for everything it tells a controller (clock
    /// samples, start times, progress, op-log times): the wall clock read
    /// once when a session begins, then advanced by the monotonic clock.
    /// One clock for all of a session means the offsets the controller
    /// measures before and after a stage describe exactly the clock the
    /// stage's op-log is on: a wall clock stepped mid-run (NTP, an admin)
    /// moves neither, and only real drift is left to interpolate.
    clock: Arc<std::sync::Mutex<Anchor>>,
}

impl AgentService {
    pub fn new(config: AgentConfig) -> AgentService {
        AgentService {
            config,
            session: Arc::new(Mutex::new(None)),
            clock: Arc::new(std::sync::Mutex::new(Anchor::now())),
        }
    }

    /// The session's clock (see the field).
    fn clock(&self) -> Anchor {
        *self.clock_slot()
    }

    /// A new session reads the wall clock afresh (see the field).
    fn reset_clock(&self) {
        *self.clock_slot() = Anchor::now();
    }

    fn clock_slot(&self) -> std::sync::MutexGuard<'_, Anchor> {
        self.clock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A stage's op-log left in the spool by a session that is gone (its
    /// controller was lost): what `controller collect` fetches.
    async fn spooled_oplog(&self, run_id: &str, stage: u32) -> Result<PathBuf, Status> {
        if !safe_run_id(run_id) {
            return Err(Status::invalid_argument(format!("bad run id `{run_id}`")));
        }
        if let Some(s) = self.session.lock().await.as_ref()
            && s.run_id == run_id
        {
            return Err(Status::failed_precondition(format!(
                "run {run_id} is still in session {} here: fetch with its session id",
                s.id
            )));
        }
        let path = self
            .config
            .spool_dir
            .join(run_id)
            .join(crate::session::oplog_file_name(stage));
        if !path.exists() {
            return Err(Status::not_found(format!(
                "no spooled op-log of stage {stage} of run {run_id} on agent {}",
                self.config.id
            )));
        }
        Ok(path)
    }
}

/// Run ids name spool folders: no path separators or dots-only names.
fn safe_run_id(id: &str) -> bool {
    !id.is_empty()
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// The next progress report: totals now, and what changed since `last`
/// (the last report delivered). `pending` holds the latencies since then.
fn progress(
    live: &LiveCounters,
    last: &pb::Progress,
    pending: &mut Histogram<u64>,
    clock: &Anchor,
) -> pb::Progress {
    let (ops, bytes, errors) = (
        live.ops.load(Ordering::Relaxed),
        live.bytes.load(Ordering::Relaxed),
        live.errors.load(Ordering::Relaxed),
    );
    // Same bounds on both sides: add cannot fail.
    let _ = pending.add(live.take_interval());
    pb::Progress {
        ops,
        bytes,
        errors,
        at_ns: clock.now_ns(),
        interval_start_ns: last.at_ns,
        interval_ops: ops.saturating_sub(last.ops),
        interval_bytes: bytes.saturating_sub(last.bytes),
        interval_errors: errors.saturating_sub(last.errors),
        interval_latency_hist: if pending.is_empty() {
            Vec::new()
        } else {
            histogram_to_bytes(pending)
        },
    }
}

fn check_session<'a>(slot: &'a mut Option<Session>, id: &str) -> Result<&'a mut Session, Status> {
    let Some(s) = slot else {
        return Err(Status::failed_precondition(
            "no session: send LoadPlan first",
        ));
    };
    if s.id != id {
        return Err(Status::failed_precondition(format!(
            "agent is in session {} of another controller",
            s.id
        )));
    }
    s.touch();
    Ok(s)
}

/// The endpoint lists a stage's balancers use: none without endpoints; one
/// list when no endpoint is bound to a pool; else one per pool, holding
/// the endpoints bound to it and the unbound ones.
fn endpoint_groups(endpoints: &[EndpointSpec], pools: usize) -> Result<Vec<Vec<String>>, String> {
    if endpoints.iter().all(|e| e.pool.is_none()) {
        let all: Vec<String> = endpoints.iter().map(|e| e.url.clone()).collect();
        return Ok(if all.is_empty() {
            Vec::new()
        } else {
            vec![all]
        });
    }
    if let Some(e) = endpoints
        .iter()
        .find(|e| e.pool.is_some_and(|p| p as usize >= pools))
    {
        return Err(format!(
            "endpoint `{}` is bound to pool {}, but this agent has {pools} pool(s)",
            e.url,
            e.pool.unwrap_or(0)
        ));
    }
    (0..pools)
        .map(|p| {
            let urls: Vec<String> = endpoints
                .iter()
                .filter(|e| e.pool.is_none_or(|b| b as usize == p))
                .map(|e| e.url.clone())
                .collect();
            if urls.is_empty() {
                Err(format!(
                    "pool {p} has no endpoint: bind one to it, or list unbound ones"
                ))
            } else {
                Ok(urls)
            }
        })
        .collect()
}

/// The plan's pinning as real pools on this host; a CPU set this agent may
/// not use, or a stage bound to a pool that does not exist, is refused here,
/// before the agent says it is ready.
fn build_pools(plan: &plan::Plan) -> Result<Arc<Pools>, Status> {
    let topo = Topology::detect();
    let spec = PoolSpec::try_from(&plan.pinning)
        .map_err(|e| Status::invalid_argument(format!("pinning: {e}")))?;
    let pools = Pools::build(&spec, &topo)
        .map_err(|e| Status::failed_precondition(format!("pinning: {e}")))?;
    for s in &plan.stages {
        if let Some(p) = s.pool.filter(|&p| p as usize >= pools.len()) {
            return Err(Status::invalid_argument(format!(
                "stage `{}` is bound to pool {p}, but this agent has {} pool(s): {}",
                s.name,
                pools.len(),
                pools.describe()
            )));
        }
    }
    Ok(Arc::new(pools))
}

#[tonic::async_trait]
impl pb::agent_server::Agent for AgentService {
    async fn hello(
        &self,
        req: Request<pb::HelloRequest>,
    ) -> Result<Response<pb::HelloReply>, Status> {
        // The controller refuses a protocol mismatch; the agent only says so
        // in its own log, where whoever runs it looks.
        let theirs = req.get_ref().protocol_version;
        if theirs != chorus_proto::PROTOCOL_VERSION {
            tracing::warn!(
                "controller {} (version {}) speaks wire protocol {theirs}, this agent {}",
                req.remote_addr().map_or("?".into(), |a| a.to_string()),
                req.get_ref().controller_version,
                chorus_proto::PROTOCOL_VERSION
            );
        }
        let busy_with = self
            .session
            .lock()
            .await
            .as_ref()
            .map(|s| s.id.clone())
            .unwrap_or_default();
        Ok(Response::new(pb::HelloReply {
            agent_id: self.config.id.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            hostname: host::hostname(),
            cpus: host::cpus(),
            os: host::os(),
            busy_with,
            topology: chorus_common::topology::Topology::detect().to_string(),
            authenticated: self.config.security.authenticated(),
            protocol_version: chorus_proto::PROTOCOL_VERSION,
        }))
    }

    async fn load_plan(
        &self,
        req: Request<pb::LoadPlanRequest>,
    ) -> Result<Response<pb::LoadPlanReply>, Status> {
        let req = req.into_inner();
        let mut slot = self.session.lock().await;
        if let Some(s) = slot.as_ref()
            && s.id != req.session_id
        {
            return Err(Status::failed_precondition(format!(
                "agent {} is busy with session {} (run {}); one controller at a time",
                self.config.id, s.id, s.run_id
            )));
        }
        if req.agent_count == 0 || req.agent_index >= req.agent_count {
            return Err(Status::invalid_argument(format!(
                "agent index {} is not below agent count {}",
                req.agent_index, req.agent_count
            )));
        }
        // The plan is checked here, before the agent says it is ready.
        let plan = plan::parse(&req.plan_yaml, "<plan from controller>")
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        if !safe_run_id(&req.run_id) {
            return Err(Status::invalid_argument(format!(
                "bad run id `{}`",
                req.run_id
            )));
        }
        let dir = self.config.spool_dir.join(&req.run_id);
        std::fs::create_dir_all(&dir)
            .map_err(|e| Status::internal(format!("cannot create {}: {e}", dir.display())))?;
        let pools = build_pools(&plan)?;
        let stages = plan.stages.len() as u32;
        let controller_timeout = match req.controller_timeout_ms {
            0 => DEFAULT_CONTROLLER_TIMEOUT,
            ms => Duration::from_millis(ms),
        };
        crate::watchdog::spawn(
            self.session.clone(),
            req.session_id.clone(),
            controller_timeout,
        );
        self.reset_clock();
        *slot = Some(Session {
            id: req.session_id,
            run_id: req.run_id,
            plan,
            agent_index: req.agent_index,
            agent_count: req.agent_count,
            agent_id: req.agent_id,
            dir,
            oplogs: Default::default(),
            running: false,
            stop: None,
            heard: Arc::new(std::sync::Mutex::new(Instant::now())),
            controller_timeout,
            keys: Default::default(),
            pools,
            env: Arc::new(store::EnvOverlay::new(req.env)),
        });
        Ok(Response::new(pb::LoadPlanReply { stages }))
    }

    async fn sync_clock(
        &self,
        req: Request<pb::ClockRequest>,
    ) -> Result<Response<pb::ClockReply>, Status> {
        let clock = self.clock();
        let t2_ns = clock.now_ns();
        let t1_ns = req.into_inner().t1_ns;
        Ok(Response::new(pb::ClockReply {
            t1_ns,
            t2_ns,
            t3_ns: clock.now_ns(),
        }))
    }

    type RunStageStream = ReceiverStream<Result<pb::StageEvent, Status>>;

    async fn run_stage(
        &self,
        req: Request<pb::RunStageRequest>,
    ) -> Result<Response<Self::RunStageStream>, Status> {
        let req = req.into_inner();
        let mut slot = self.session.lock().await;
        let session = check_session(&mut slot, &req.session_id)?;
        if session.running {
            return Err(Status::failed_precondition("a stage is already running"));
        }
        let index = req.stage_index;
        let stage = session
            .plan
            .stages
            .get(index as usize)
            .cloned()
            .ok_or_else(|| Status::invalid_argument(format!("no stage {index}")))?;
        let open_opts = store::OpenOptions {
            concurrency: stage.concurrency,
            // The plan's per-attempt timeout is also the connect timeout.
            timeout: stage.retry.timeout,
            env: Some(session.env.clone()),
            ..Default::default()
        };
        let fail = |e: store::StoreError| {
            Status::failed_precondition(format!("stage `{}`: {e}", stage.name))
        };
        let groups = endpoint_groups(&stage.endpoints, session.pools.len())
            .map_err(|m| Status::invalid_argument(format!("stage `{}`: {m}", stage.name)))?;
        let mut multi = Vec::with_capacity(groups.len());
        for urls in &groups {
            let m = store::multi::open_multi(&stage.target, urls, &stage.balance, &open_opts)
                .await
                .map_err(fail)?;
            multi.push(Arc::new(m));
        }
        let store: Arc<dyn store::ObjectStore> = match multi.first() {
            Some(m) => m.clone(),
            None => store::open(&stage.target, &open_opts).await.map_err(fail)?,
        };
        let log_path = session.oplog_path(index);
        let (writer, oplog) = spawn_writer(&log_path)
            .map_err(|e| Status::internal(format!("cannot create {}: {e}", log_path.display())))?;
        // Fetchable from now on: the controller copies the log while the
        // stage runs (the writer only appends whole zstd frames).
        session.oplogs.insert(index, log_path.clone());

        // The start time is on the controller's clock; on ours it is that
        // plus our offset, and its instant comes from the session clock the
        // offset was measured against, not from a fresh reading of the wall
        // clock: a wall clock stepped since would move the start by the
        // step, and under libfaketime a fresh reading here put it 5 ms off
        // (cluster_clock failed 3 runs in 8). A start already past (or out
        // of range) begins at once.
        let local_start_ns = req.start_at_ns + req.offset_ns;
        let clock = self.clock();
        let start_at = clock
            .instant_at(local_start_ns)
            .map_or_else(Instant::now, |t| t.max(Instant::now()));
        let live = Arc::new(LiveCounters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let space = key_space_id(&stage);
        let data = DataSpec {
            seed: session.plan.seed,
            dedup: session.plan.data.dedup,
            compress: session.plan.data.compress,
            reuse: session.plan.data.reuse,
        };
        let run = StageRun {
            agent_index: session.agent_index,
            agent_count: session.agent_count,
            agent_id: session.agent_id.clone(),
            data,
            keys: session.keys.get(&space).cloned(),
            pools: Some(session.pools.clone()),
            stage_index: index as usize,
            stage,
            store,
            multi,
            oplog: Some(oplog),
            start_at,
            clock,
            live: live.clone(),
            stop: stop.clone(),
        };
        session.running = true;
        session.stop = Some(stop.clone());
        let session_timeout = session.controller_timeout;
        drop(slot);

        let (tx, rx) = mpsc::channel(EVENT_QUEUE);
        let sessions = self.session.clone();
        let controller_timeout = session_timeout;
        tokio::spawn(async move {
            let mut stage = tokio::spawn(run_stage(run));
            let mut ticker = tokio::time::interval(PROGRESS_INTERVAL);
            ticker.tick().await;
            let mut last = pb::Progress {
                at_ns: clock.now_ns(),
                ..Default::default()
            };
            // Interval latencies not yet delivered.
            let mut pending = live_histogram();
            let result = loop {
                tokio::select! {
                    r = &mut stage => break r,
                    _ = ticker.tick() => {
                        let p = progress(&live, &last, &mut pending, &clock);
                        let event = pb::StageEvent { event: Some(Event::Progress(p.clone())) };
                        // A slow controller must not stall this loop (it
                        // also collects the stage's end): a report not
                        // taken within a tick is folded into the next.
                        match tokio::time::timeout(PROGRESS_INTERVAL, tx.send(Ok(event))).await {
                            Ok(Ok(())) => {
                                last = p;
                                pending.reset();
                            }
                            // A controller that stopped listening stops the load.
                            Ok(Err(_)) => stop.store(true, Ordering::Relaxed),
                            Err(_) => {}
                        }
                    }
                }
            };
            // The last interval, so the per-second series adds up to the
            // stage's totals.
            let p = progress(&live, &last, &mut pending, &clock);
            let event = pb::StageEvent {
                event: Some(Event::Progress(p)),
            };
            let _ = tokio::time::timeout(PROGRESS_INTERVAL, tx.send(Ok(event))).await;
            // Every sender of the op-log is gone once the stage task ended,
            // so the writer drains and closes the file.
            let log_stats = writer.finish_async().await;
            let outcome = match (result, log_stats) {
                (Ok(Ok(outcome)), Ok(stats)) => Ok((outcome, stats)),
                (Ok(Err(e)), _) => Err(Status::internal(format!("stage failed: {e:#}"))),
                (Err(e), _) => Err(Status::internal(format!("stage task failed: {e}"))),
                (_, Err(e)) => Err(Status::internal(format!("op-log write failed: {e}"))),
            };
            if let Some(s) = sessions.lock().await.as_mut() {
                s.running = false;
                s.stop = None;
                if let Ok((o, _)) = &outcome {
                    s.keys.insert(space, o.keys.clone());
                }
            }
            let event = outcome.map(|(o, stats)| pb::StageEvent {
                event: Some(Event::Done(pb::StageDone {
                    started_ns: o.started_ns,
                    first_op_ns: o.first_op_ns.unwrap_or(0),
                    ended_ns: o.ended_ns,
                    ops: encode_metrics(&o.metrics),
                    records_logged: stats.records,
                    log_backpressure_waits: stats.backpressure_waits,
                    log_backpressure_wait_ns: stats.backpressure_wait_ns,
                    oplog_bytes: std::fs::metadata(&log_path).map(|m| m.len()).unwrap_or(0),
                    warmup_ops: o.warmup_ops,
                    retries: o.retries,
                    schedule: o.schedule.as_ref().map(encode_schedule),
                    endpoints: encode_endpoints(&o.endpoints),
                    stopped_by: String::new(),
                })),
            });
            // The result is also in the spool; a controller gone silent
            // must not hold this task forever.
            let _ = tokio::time::timeout(controller_timeout, tx.send(event)).await;
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    type FetchOpLogStream = ReceiverStream<Result<pb::OpLogChunk, Status>>;

    async fn fetch_op_log(
        &self,
        req: Request<pb::FetchOpLogRequest>,
    ) -> Result<Response<Self::FetchOpLogStream>, Status> {
        let req = req.into_inner();
        let path = if req.session_id.is_empty() {
            self.spooled_oplog(&req.run_id, req.stage_index).await?
        } else {
            let mut slot = self.session.lock().await;
            let session = check_session(&mut slot, &req.session_id)?;
            session
                .oplogs
                .get(&req.stage_index)
                .cloned()
                .ok_or_else(|| {
                    Status::not_found(format!("no op-log for stage {}", req.stage_index))
                })?
        };
        let mut file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| Status::internal(format!("cannot open {}: {e}", path.display())))?;
        // The end as it is now: a log still being written is sent up to
        // here, and the caller comes back later for the rest.
        let end = file
            .metadata()
            .await
            .map_err(|e| Status::internal(format!("cannot stat {}: {e}", path.display())))?
            .len();
        if req.offset > end {
            return Err(Status::out_of_range(format!(
                "offset {} is past the end of the op-log of stage {} ({end} bytes)",
                req.offset, req.stage_index
            )));
        }
        file.seek(std::io::SeekFrom::Start(req.offset))
            .await
            .map_err(|e| Status::internal(format!("cannot seek in {}: {e}", path.display())))?;
        let mut left = end - req.offset;
        let (tx, rx) = mpsc::channel(CHUNK_QUEUE);
        tokio::spawn(async move {
            while left > 0 {
                let want = left.min(OPLOG_CHUNK_BYTES as u64) as usize;
                let mut buf = vec![0u8; want];
                let n = match file.read(&mut buf).await {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) => {
                        let _ = tx
                            .send(Err(Status::internal(format!("reading op-log: {e}"))))
                            .await;
                        break;
                    }
                };
                buf.truncate(n);
                left -= n as u64;
                if tx.send(Ok(pb::OpLogChunk { data: buf })).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn end_session(
        &self,
        req: Request<pb::EndSessionRequest>,
    ) -> Result<Response<pb::EndSessionReply>, Status> {
        let req = req.into_inner();
        let mut slot = self.session.lock().await;
        let session = check_session(&mut slot, &req.session_id)?;
        if session.running {
            return Err(Status::failed_precondition("a stage is still running"));
        }
        // The controller has fetched the logs; the spool copy can go.
        let _ = std::fs::remove_dir_all(&session.dir);
        *slot = None;
        Ok(Response::new(pb::EndSessionReply {}))
    }

    async fn heartbeat(
        &self,
        req: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatReply>, Status> {
        let req = req.into_inner();
        let mut slot = self.session.lock().await;
        let session = check_session(&mut slot, &req.session_id)?;
        Ok(Response::new(pb::HeartbeatReply {
            at_ns: self.clock().now_ns(),
            running: session.running,
            stopping: String::new(),
        }))
    }

    async fn stop_stage(
        &self,
        req: Request<pb::StopStageRequest>,
    ) -> Result<Response<pb::StopStageReply>, Status> {
        let req = req.into_inner();
        let mut slot = self.session.lock().await;
        let session = check_session(&mut slot, &req.session_id)?;
        let stopped = match &session.stop {
            Some(stop) => {
                stop.store(true, Ordering::Relaxed);
                true
            }
            None => false,
        };
        Ok(Response::new(pb::StopStageReply { stopped }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(url: &str, pool: Option<u32>) -> EndpointSpec {
        EndpointSpec {
            url: url.into(),
            pool,
        }
    }

    #[test]
    fn endpoints_group_by_pool() {
        assert!(endpoint_groups(&[], 2).unwrap().is_empty());
        let unbound = [ep("a", None), ep("b", None)];
        assert_eq!(endpoint_groups(&unbound, 2).unwrap(), vec![vec!["a", "b"]]);
        let bound = [ep("a", Some(0)), ep("b", Some(1)), ep("c", None)];
        assert_eq!(
            endpoint_groups(&bound, 2).unwrap(),
            vec![vec!["a", "c"], vec!["b", "c"]]
        );
        let err = endpoint_groups(&[ep("a", Some(2))], 2).unwrap_err();
        assert!(err.contains("pool 2") && err.contains("2 pool(s)"), "{err}");
        let err = endpoint_groups(&[ep("a", Some(0))], 2).unwrap_err();
        assert!(err.contains("pool 1 has no endpoint"), "{err}");
    }
}
