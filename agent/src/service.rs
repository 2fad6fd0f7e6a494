//! The `Agent` gRPC service: one session at a time, stages run on request,
//! progress streamed, op-logs served in chunks (from any offset, also while
//! their stage still writes them), replay traces received (`crate::trace`).
//!
//! Handlers parse, check, and delegate: the session is touched only under
//! short locks that await nothing (`crate::session`), a stage runs on its
//! own task (`crate::stage`) and `RunStage` returns its stream at once, so a
//! slow store open never delays a heartbeat. While the agent stops
//! (`crate::shutdown`), new sessions and stages are refused and the rest
//! is served.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chorus_common::clock::Anchor;
use chorus_common::pools::{PoolSpec, Pools};
use chorus_common::topology::Topology;
use chorus_common::{plan, store};
use chorus_proto::pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::AgentConfig;
use crate::fetch::{self, log_name};
use crate::host;
use crate::session::{Session, SessionSlot, oplog_file_name};
use crate::shutdown::Shutdown;
use crate::stage;

/// Events buffered toward a slow controller before the stage task waits:
/// progress is once a second, so a few suffice.
const EVENT_QUEUE: usize = 8;

/// How long an agent goes on without hearing its controller when the
/// controller does not say (the plan's `control.controller_timeout`).
pub const DEFAULT_CONTROLLER_TIMEOUT: Duration = Duration::from_secs(10);

/// The agent service.
pub struct AgentService {
    config: AgentConfig,
    session: Arc<SessionSlot>,
    shutdown: Shutdown,
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
            session: Default::default(),
            shutdown: Default::default(),
            clock: Arc::new(std::sync::Mutex::new(Anchor::now())),
        }
    }

    /// The stop signal its stage tasks and watchdog observe.
    pub fn shutdown(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// The session slot (to wait for the session's end when stopping).
    pub fn session(&self) -> Arc<SessionSlot> {
        self.session.clone()
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

    /// Refuses new work once the agent is stopping.
    fn refuse_if_stopping(&self) -> Result<(), Status> {
        match self.shutdown.stopping() {
            Some(reason) => Err(Status::failed_precondition(format!(
                "agent is stopping ({reason})"
            ))),
            None => Ok(()),
        }
    }

    /// A stage's op-log left in the spool by a session that is gone (its
    /// controller was lost): what `controller collect` fetches.
    fn spooled_oplog(&self, run_id: &str, stage: u32, step: u32) -> Result<PathBuf, Status> {
        if !safe_run_id(run_id) {
            return Err(Status::invalid_argument(format!("bad run id `{run_id}`")));
        }
        let held = self.session.with(|s| {
            s.as_ref()
                .filter(|s| s.run_id == run_id)
                .map(|s| s.id.clone())
        });
        if let Some(id) = held {
            return Err(Status::failed_precondition(format!(
                "run {run_id} is still in session {id} here: fetch with its session id"
            )));
        }
        let path = self
            .config
            .spool_dir
            .join(run_id)
            .join(oplog_file_name(stage, step));
        if !path.exists() {
            return Err(Status::not_found(format!(
                "no spooled op-log of {} of run {run_id} on agent {}",
                log_name(stage, step),
                self.config.id
            )));
        }
        Ok(path)
    }

    /// Checks a `LoadPlan` and builds what the session needs (outside the
    /// session lock: building pools starts threads).
    fn new_session(&self, req: pb::LoadPlanRequest) -> Result<Session, Status> {
        if req.agent_count == 0 || req.agent_index >= req.agent_count {
            return Err(Status::invalid_argument(format!(
                "agent index {} is not below agent count {}",
                req.agent_index, req.agent_count
            )));
        }
        // The plan is checked here, before the agent says it is ready.
        let plan = plan::parse(&req.plan_yaml, "<plan from controller>")
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        // This agent's own settings, before its pools are built.
        let host = crate::host::hostname();
        let plan = plan.for_agent(&plan::AgentIdentity {
            id: &req.agent_id,
            host: &host,
            index: req.agent_index,
        });
        if !safe_run_id(&req.run_id) {
            return Err(Status::invalid_argument(format!(
                "bad run id `{}`",
                req.run_id
            )));
        }
        let dir = self.config.spool_dir.join(&req.run_id);
        std::fs::create_dir_all(&dir)
            .map_err(|e| Status::internal(format!("cannot create {}: {e}", dir.display())))?;
        let pools = match &self.config.shared_pools {
            Some(shared) => shared_pools(&plan, shared)?,
            None => build_pools(&plan)?,
        };
        Ok(Session {
            id: req.session_id,
            run_id: req.run_id,
            plan,
            agent_index: req.agent_index,
            agent_count: req.agent_count,
            agent_id: req.agent_id,
            dir,
            oplogs: Default::default(),
            traces: Default::default(),
            trace_names: Default::default(),
            running: false,
            stop: None,
            heard: Arc::new(std::sync::Mutex::new(Instant::now())),
            controller_timeout: match req.controller_timeout_ms {
                0 => DEFAULT_CONTROLLER_TIMEOUT,
                ms => Duration::from_millis(ms),
            },
            keys: Default::default(),
            pools,
            env: Arc::new(store::EnvOverlay::new(req.env)),
            metrics: self.config.metrics.clone(),
        })
    }

    /// Refuses a session while another controller's holds the agent.
    fn check_free(&self, session_id: &str) -> Result<(), Status> {
        self.session
            .with(|slot| check_free(slot, session_id, &self.config.id))
    }
}

/// See [`AgentService::check_free`].
fn check_free(slot: &Option<Session>, session_id: &str, agent: &str) -> Result<(), Status> {
    match slot.as_ref() {
        Some(s) if s.id != session_id => Err(Status::failed_precondition(format!(
            "agent {agent} is busy with session {} (run {}); one controller at a time",
            s.id, s.run_id
        ))),
        _ => Ok(()),
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

/// The session `id`, touched, or why there is none.
pub(crate) fn check_session<'a>(
    slot: &'a mut Option<Session>,
    id: &str,
) -> Result<&'a mut Session, Status> {
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

/// The plan's pinning as real pools on this host; a CPU set this agent may
/// not use, or a stage bound to a pool that does not exist, is refused here,
/// before the agent says it is ready.
fn build_pools(plan: &plan::Plan) -> Result<Arc<Pools>, Status> {
    let topo = Topology::detect();
    let spec = PoolSpec::try_from(&plan.pinning)
        .map_err(|e| Status::invalid_argument(format!("pinning: {e}")))?;
    let pools = Pools::build(&spec, &topo)
        .map_err(|e| Status::failed_precondition(format!("pinning: {e}")))?;
    check_stage_pools(plan, &pools)?;
    Ok(Arc::new(pools))
}

/// The process's shared pools (one per NUMA node) for a session of the
/// simulator, whose thousands of sessions cannot each start a runtime.
/// `pinning: numa` (the default) and `none` run on them; CPU sets name
/// pools of their own and are refused rather than run on other CPUs.
fn shared_pools(plan: &plan::Plan, shared: &Arc<Pools>) -> Result<Arc<Pools>, Status> {
    if let plan::Pinning::CpuSets(_) = plan.pinning {
        return Err(Status::invalid_argument(
            "pinning: simulated agents (agent --simulate) share the process's NUMA pools; \
             CPU sets need real agents",
        ));
    }
    check_stage_pools(plan, shared)?;
    Ok(shared.clone())
}

/// Every stage bound to a pool names one these pools have.
fn check_stage_pools(plan: &plan::Plan, pools: &Pools) -> Result<(), Status> {
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
    Ok(())
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
            .with(|s| s.as_ref().map(|s| s.id.clone()))
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
        self.refuse_if_stopping()?;
        self.check_free(&req.session_id)?;
        let session = self.new_session(req)?;
        if let Err(refused) = crate::preflight::check_existing(
            &session.plan,
            &session.env,
            session.agent_index,
            session.pools.len(),
        )
        .await
        {
            // Leave no empty spool folder for a run that never started.
            let _ = std::fs::remove_dir(&session.dir);
            return Err(refused);
        }
        let (id, timeout) = (session.id.clone(), session.controller_timeout);
        let stages = session.plan.stages.len() as u32;
        let agent_id = session.agent_id.clone();
        // Checked again under the lock that sets it: another controller
        // may have come in meanwhile.
        self.session.with(|slot| {
            check_free(slot, &id, &self.config.id)?;
            *slot = Some(session);
            Ok::<_, Status>(())
        })?;
        self.reset_clock();
        if let Some(m) = &self.config.metrics {
            // A new run: what is served is this run's alone.
            m.reset();
            m.agent_clock(&agent_id, None);
        }
        crate::watchdog::spawn(self.session.clone(), id, timeout, &self.shutdown);
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
        // Counted before the stop check, so a stop never misses it.
        let task = self.shutdown.task();
        self.refuse_if_stopping()?;
        let clock = self.clock();
        let (job, writer, oplog) = self.session.with(|slot| {
            let session = check_session(slot, &req.session_id)?;
            stage::begin(session, &req, clock)
        })?;
        let (tx, rx) = mpsc::channel(EVENT_QUEUE);
        let (slot, shutdown) = (self.session.clone(), self.shutdown.clone());
        tokio::spawn(stage::run(job, writer, oplog, tx, slot, shutdown, task));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    type FetchOpLogStream = fetch::Chunks;

    async fn fetch_op_log(
        &self,
        req: Request<pb::FetchOpLogRequest>,
    ) -> Result<Response<Self::FetchOpLogStream>, Status> {
        let req = req.into_inner();
        let what = log_name(req.stage_index, req.step);
        let path = if req.session_id.is_empty() {
            self.spooled_oplog(&req.run_id, req.stage_index, req.step)?
        } else {
            self.session.with(|slot| {
                let session = check_session(slot, &req.session_id)?;
                session
                    .oplogs
                    .get(&(req.stage_index, req.step))
                    .cloned()
                    .ok_or_else(|| Status::not_found(format!("no op-log for {what}")))
            })?
        };
        let chunks = fetch::stream(&path, req.offset, &what).await?;
        Ok(Response::new(chunks))
    }

    async fn end_session(
        &self,
        req: Request<pb::EndSessionRequest>,
    ) -> Result<Response<pb::EndSessionReply>, Status> {
        let req = req.into_inner();
        let dir = self.session.with(|slot| {
            let session = check_session(slot, &req.session_id)?;
            if session.running {
                return Err(Status::failed_precondition("a stage is still running"));
            }
            let dir = session.dir.clone();
            *slot = None;
            Ok(dir)
        })?;
        if let Some(m) = &self.config.metrics {
            m.run_finished();
        }
        // The controller has fetched the logs; the spool copy can go. A
        // stopping agent keeps it: its controller may not have had them
        // all, and `controller collect` can still take them.
        if self.shutdown.stopping().is_none() && !self.config.keep_spool {
            let _ = std::fs::remove_dir_all(&dir);
        }
        Ok(Response::new(pb::EndSessionReply {}))
    }

    async fn heartbeat(
        &self,
        req: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatReply>, Status> {
        let req = req.into_inner();
        let running = self
            .session
            .with(|slot| check_session(slot, &req.session_id).map(|session| session.running))?;
        Ok(Response::new(pb::HeartbeatReply {
            at_ns: self.clock().now_ns(),
            running,
            stopping: self.shutdown.stopping().unwrap_or_default(),
        }))
    }

    async fn put_trace(
        &self,
        req: Request<Streaming<pb::TraceChunk>>,
    ) -> Result<Response<pb::PutTraceReply>, Status> {
        self.refuse_if_stopping()?;
        let received =
            crate::trace::receive(&self.session, &self.config.id, req.into_inner()).await?;
        Ok(Response::new(pb::PutTraceReply {
            already_held: matches!(received, crate::trace::Received::Held),
        }))
    }

    async fn stop_stage(
        &self,
        req: Request<pb::StopStageRequest>,
    ) -> Result<Response<pb::StopStageReply>, Status> {
        let req = req.into_inner();
        let stopped = self.session.with(|slot| {
            let session = check_session(slot, &req.session_id)?;
            Ok::<_, Status>(session.stop.as_ref().map(|stop| {
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
            }))
        })?;
        Ok(Response::new(pb::StopStageReply {
            stopped: stopped.is_some(),
        }))
    }
}
