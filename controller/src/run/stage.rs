//! Runs one stage on every agent at once: one absolute start time, one
//! progress stream per agent, and each agent's final metrics, or the news
//! that it was lost.
//!
//! An agent is lost when its stream breaks at the transport level (killed,
//! connection reset) or stays silent longer than the plan's
//! `control.agent_timeout` (network cut, host frozen), and a heartbeat
//! cannot reach it either. Progress comes every second, so silence is
//! noticed within the timeout. A lost agent's result is [`Outcome::Lost`];
//! the caller applies the plan's policy.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use chorus_common::clock::now_ns;
use chorus_common::metrics::StageMetrics;
use chorus_common::metrics::client::{ClientHealth, ClientTrack};
use chorus_common::plan::Stage;
use chorus_common::store::multi::EndpointStats;
use chorus_common::workload::{ListingSummary, ScheduleReport};
use chorus_proto::pb::{self, stage_event::Event};
use chorus_proto::{
    decode_endpoints, decode_host, decode_metrics, decode_op_totals, decode_schedule,
};
use tokio::sync::{Mutex, Notify};

use super::agents::AgentHandle;
use super::progress::{AgentState, LiveView, Totals};
use super::series::{Report, Series};
use crate::transport::Client;

/// How far ahead of now a stage's start is set: long enough for the
/// RunStage call to reach every agent (and open its store) before it.
pub const START_LEAD: Duration = Duration::from_millis(500);

/// The longest lead a step is given (see [`next_lead`]).
pub const MAX_START_LEAD: Duration = Duration::from_secs(30);

/// The lead of the next step, from this one's: an agent released later
/// than the start (its RunStage arrived, or its store opened, after it:
/// many agents on few cores, a slow store) shows the lead was short, and
/// the next step gets twice that lateness more, up to [`MAX_START_LEAD`];
/// a step on time brings it halfway back toward [`START_LEAD`].
pub fn next_lead(lead: Duration, late: Option<Duration>) -> Duration {
    match late {
        Some(late) if late > Duration::from_millis(10) => (lead + late * 2).min(MAX_START_LEAD),
        _ => START_LEAD.max(lead.saturating_sub((lead.saturating_sub(START_LEAD)) / 2)),
    }
}

/// How long a StopStage or a confirming heartbeat may take.
const CONTROL_CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// What one agent reported for a stage. Times are on the agent's clock.
#[derive(Debug)]
pub struct AgentStageResult {
    pub started_ns: i64,
    pub first_op_ns: Option<i64>,
    /// When the first op was really issued (open loop: after its slot).
    pub first_issued_ns: Option<i64>,
    /// When its RunStage request reached it (agent clock).
    pub received_ns: Option<i64>,
    pub ended_ns: i64,
    pub records_logged: u64,
    /// Size of the agent's op-log file of the stage.
    pub oplog_bytes: u64,
    pub log_backpressure_waits: u64,
    pub log_backpressure_wait_ns: u64,
    pub warmup_ops: u64,
    pub retries: u64,
    pub schedule: Option<ScheduleReport>,
    pub endpoints: Vec<EndpointStats>,
    /// `None` when the agent ran the stage to its limits.
    pub stopped: Option<Stopped>,
    /// Its host over the stage, from its progress reports; `None` when
    /// none carried a host sample (an older agent, not Linux).
    pub client: Option<ClientHealth>,
    /// The listing of existing objects it made for the stage.
    pub listing: Option<ListingSummary>,
    /// A training epoch: each of its emulated accelerators.
    pub ranks: Vec<chorus_common::workload::train::RankReport>,
}

/// How one agent's stage ended.
#[derive(Debug)]
pub enum Outcome {
    Done(Box<AgentStageResult>),
    /// The agent answered but the stage failed there (bad target, …).
    Failed(anyhow::Error),
    /// The agent stopped answering; `at_ns` is when that was noticed
    /// (controller clock).
    Lost {
        at_ns: i64,
        reason: String,
    },
    /// The agent is stopping (SIGTERM, `why`) and refused the step before
    /// it began: it left cleanly, as one stopped in a stage does, having
    /// done nothing of this step (a signal just before a step reaches the
    /// agent before its heartbeat says so).
    Refused {
        at_ns: i64,
        why: String,
    },
}

/// Why a stage (or step) was stopped on every agent before its limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// Ctrl-C on the controller.
    Interrupted,
    /// An agent was lost and the plan says `on_agent_loss: abort`.
    AgentLost { id: String, reason: String },
    /// The stage kind ended the running step from its live figures
    /// (steady state, an objective broken).
    Kind(String),
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StopReason::Interrupted => write!(f, "interrupted (Ctrl-C)"),
            StopReason::AgentLost { id, reason } => write!(f, "agent {id} lost: {reason}"),
            StopReason::Kind(why) => write!(f, "{why}"),
        }
    }
}

impl std::error::Error for StopReason {}

/// A request to stop the running stage on every agent early: Ctrl-C, a
/// lost agent under the `abort` policy, or the stage kind's decision. The
/// first reason wins.
#[derive(Default)]
pub struct StopSignal {
    raised: AtomicBool,
    reason: std::sync::Mutex<Option<StopReason>>,
    notify: Notify,
}

impl StopSignal {
    pub fn raise(&self, reason: StopReason) {
        let mut r = self.reason.lock().unwrap_or_else(|p| p.into_inner());
        if r.is_none() {
            *r = Some(reason);
        }
        self.raised.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    pub fn raised(&self) -> bool {
        self.raised.load(Ordering::SeqCst)
    }

    pub fn reason(&self) -> Option<StopReason> {
        self.reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            if self.raised() {
                return;
            }
            notified.await;
        }
    }
}

/// Who stopped an agent's stage before its limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// The agent itself (`StageDone.stopped_by`, e.g. SIGTERM): it takes no
    /// further stage of the session.
    ByAgent(String),
    /// The controller told it to (the run's or the step's stop signal).
    ByController(StopReason),
}

/// What a stage needs from the run besides its agents.
pub struct StageContext<'a> {
    pub session_id: &'a str,
    pub stage_index: u32,
    /// The stage as this step runs it (named after the step).
    pub stage: &'a Stage,
    /// The sub-step to run; `None` for the stage whole.
    pub step: Option<pb::StageStep>,
    /// The LoadPlan places of the agents that left the run before this
    /// step: the others split its budget and walk their keys.
    pub departed: Vec<u32>,
    /// Controller clock.
    pub start_at_ns: i64,
    /// Each agent's clock offset measured for this stage, in agent order.
    pub offsets: Vec<i64>,
    pub agent_timeout: Duration,
    /// Raise on a lost agent (the `abort` policy).
    pub abort_on_loss: bool,
    /// The run's stop signal (Ctrl-C, abort on loss).
    pub stop: Arc<StopSignal>,
    /// This step's own: raised by the stage kind.
    pub step_stop: Arc<StopSignal>,
    pub series: Arc<Mutex<Series>>,
    /// Fed each progress report and each agent's final figures.
    pub metrics: Arc<chorus_common::metrics::prometheus::Metrics>,
}

/// What a step's agents ended with: each one's outcome, in agent order,
/// and the metrics of those that finished (or were stopped in) it, merged
/// as each result came.
pub struct StageOutcomes {
    pub outcomes: Vec<Outcome>,
    pub merged: StageMetrics,
}

/// Starts the stage on all `agents` at `start_at_ns` (controller clock) and
/// waits for all of them.
pub async fn run_stage(
    cx: &StageContext<'_>,
    agents: &[&AgentHandle],
    view: &LiveView,
) -> StageOutcomes {
    let totals = Arc::new(Mutex::new(vec![Totals::default(); agents.len()]));
    // Each agent's histograms are added here as its result comes and then
    // dropped: a histogram is ~260 KiB decoded, so keeping every agent's
    // until the step ends cost 260 MiB at 1,000 agents.
    let merged = Arc::new(std::sync::Mutex::new(StageMetrics::new()));
    let ids = agents.iter().map(|a| a.id.clone()).collect();
    view.start_stage(
        cx.stage,
        cx.start_at_ns,
        totals.clone(),
        ids,
        cx.series.clone(),
    );

    // Whoever raises the stop signal, every agent is told at once.
    let clients: Vec<_> = agents.iter().map(|a| a.client.clone()).collect();
    let (stop, step_stop) = (cx.stop.clone(), cx.step_stop.clone());
    let session_id = cx.session_id.to_string();
    let stopper = tokio::spawn(async move {
        tokio::select! {
            _ = stop.wait() => {}
            _ = step_stop.wait() => {}
        }
        let calls = clients.into_iter().map(|mut c| {
            let session_id = session_id.clone();
            async move {
                let call = c.stop_stage(pb::StopStageRequest { session_id });
                let _ = tokio::time::timeout(CONTROL_CALL_TIMEOUT, call).await;
            }
        });
        futures::future::join_all(calls).await;
    });

    let tasks: Vec<_> = agents
        .iter()
        .enumerate()
        .map(|(i, agent)| {
            let client = agent.client.clone();
            let req = pb::RunStageRequest {
                session_id: cx.session_id.to_string(),
                stage_index: cx.stage_index,
                start_at_ns: cx.start_at_ns,
                offset_ns: cx.offsets[i],
                step: cx.step.clone(),
                departed: cx.departed.clone(),
            };
            let watch = Watch {
                index: i,
                id: agent.id.clone(),
                offset_ns: cx.offsets[i],
                session_id: cx.session_id.to_string(),
                agent_timeout: cx.agent_timeout,
                totals: totals.clone(),
                merged: merged.clone(),
                series: cx.series.clone(),
                metrics: cx.metrics.clone(),
                stage: cx.stage.name.clone(),
                stops: [cx.stop.clone(), cx.step_stop.clone()],
                client: std::sync::Mutex::new(None),
            };
            let (stop, abort) = (cx.stop.clone(), cx.abort_on_loss);
            let (notifier, stage_name) = (view.notifier(), cx.stage.name.clone());
            tokio::spawn(async move {
                let outcome = watch.run(client, req).await;
                if let Outcome::Lost { reason, at_ns } = &outcome {
                    // Said at once, not when the stage ends.
                    notifier.notice(&lost_line(&watch.id, *at_ns, &stage_name, reason));
                    watch.set_state(AgentState::Lost).await;
                    watch.metrics.agent_lost(&watch.id);
                    if abort {
                        stop.raise(StopReason::AgentLost {
                            id: watch.id.clone(),
                            reason: reason.clone(),
                        });
                    }
                }
                outcome
            })
        })
        .collect();
    let mut results = Vec::with_capacity(tasks.len());
    for (t, id) in tasks.into_iter().zip(agents.iter().map(|a| &a.id)) {
        results.push(match t.await {
            Ok(r) => r,
            Err(e) => Outcome::Failed(anyhow::anyhow!("stage task of agent {id} failed: {e}")),
        });
    }
    stopper.abort();
    view.finish_stage().await;
    // Every task has ended: nothing is added after this.
    let merged = std::mem::take(&mut *merged.lock().unwrap_or_else(|p| p.into_inner()));
    StageOutcomes {
        outcomes: results,
        merged,
    }
}

/// One agent's side of a stage.
struct Watch {
    index: usize,
    id: String,
    offset_ns: i64,
    session_id: String,
    agent_timeout: Duration,
    totals: Arc<Mutex<Vec<Totals>>>,
    /// The finished agents' metrics of the step, merged.
    merged: Arc<std::sync::Mutex<StageMetrics>>,
    series: Arc<Mutex<Series>>,
    metrics: Arc<chorus_common::metrics::prometheus::Metrics>,
    /// The step's name, the metrics' `stage` label.
    stage: String,
    /// The run's and the step's stop signals: one raised before this
    /// agent's result came means the agent was told to stop.
    stops: [Arc<StopSignal>; 2],
    /// Its host samples of the step so far; `None` until one comes.
    client: std::sync::Mutex<Option<ClientTrack>>,
}

impl Watch {
    async fn set_state(&self, state: AgentState) {
        self.totals.lock().await[self.index].state = state;
    }

    async fn run(&self, mut client: Client, req: pb::RunStageRequest) -> Outcome {
        let mut stream = match client.run_stage(req).await {
            Ok(s) => s.into_inner(),
            Err(status) => return self.classify(client, status, "refused the stage").await,
        };
        self.set_state(AgentState::Running).await;
        loop {
            let event = match tokio::time::timeout(self.agent_timeout, stream.message()).await {
                Err(_) => {
                    return self
                        .lost_unless_heard(
                            client,
                            format!(
                                "no word for {:.1} s during the stage",
                                self.agent_timeout.as_secs_f64()
                            ),
                        )
                        .await;
                }
                Ok(Err(status)) => {
                    return self
                        .classify(client, status, "failed during the stage")
                        .await;
                }
                Ok(Ok(None)) => {
                    return Outcome::Failed(anyhow::anyhow!(
                        "agent {} ended the stage without a result",
                        self.id
                    ));
                }
                Ok(Ok(Some(e))) => e,
            };
            match event.event {
                Some(Event::Progress(p)) => self.progress(&p).await,
                Some(Event::Done(d)) => {
                    let outcome = self.done(&d).await;
                    self.set_state(AgentState::Done).await;
                    return outcome;
                }
                // Word that the agent is alive while it opens the store.
                Some(Event::Preparing(_)) | None => {}
            }
        }
    }

    async fn progress(&self, p: &pb::Progress) {
        {
            let mut totals = self.totals.lock().await;
            let t = &mut totals[self.index];
            t.ops = p.ops;
            t.bytes = p.bytes;
            t.errors = p.errors;
        }
        let report = Report {
            agent: &self.id,
            start_ns: p.interval_start_ns - self.offset_ns,
            end_ns: p.at_ns - self.offset_ns,
            ops: p.interval_ops,
            bytes: p.interval_bytes,
            errors: p.interval_errors,
            latency: &p.interval_latency_hist,
            host: p.host.as_ref().map(decode_host).unwrap_or_default(),
        };
        if !report.host.is_empty() {
            self.client
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert_with(ClientTrack::default)
                .add(&report.host);
        }
        // An interval histogram that does not decode is left out of the
        // metrics as it is out of the series (which warns of it).
        let latency = (!p.interval_latency_hist.is_empty())
            .then(|| chorus_common::metrics::histogram_from_bytes(&p.interval_latency_hist).ok())
            .flatten();
        self.metrics.progress(
            &self.stage,
            &self.id,
            chorus_common::metrics::prometheus::Progress {
                by_op: &decode_op_totals(&p.by_op),
                active_workers: p.active_workers,
                latency: latency.as_ref(),
                host: &report.host,
            },
        );
        if let Err(e) = self.series.lock().await.add(&report) {
            tracing::warn!("series.csv: {e:#}");
        }
    }

    async fn done(&self, d: &pb::StageDone) -> Outcome {
        let metrics = match decode_metrics(&d.ops)
            .with_context(|| format!("metrics from agent {}", self.id))
        {
            Ok(m) => m,
            Err(e) => return Outcome::Failed(e),
        };
        self.metrics.agent_done(&self.stage, &self.id, &metrics);
        {
            let mut totals = self.totals.lock().await;
            let t = &mut totals[self.index];
            t.ops = metrics.total_ops();
            t.bytes = metrics.total_bytes();
            t.errors = metrics.total_errors();
        }
        // A finished agent's ops always count (see `step::judge`).
        self.merged
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .merge(&metrics);
        drop(metrics);
        Outcome::Done(Box::new(AgentStageResult {
            started_ns: d.started_ns,
            first_op_ns: (d.first_op_ns != 0).then_some(d.first_op_ns),
            first_issued_ns: (d.first_issued_ns != 0).then_some(d.first_issued_ns),
            received_ns: (d.received_ns != 0).then_some(d.received_ns),
            ended_ns: d.ended_ns,
            records_logged: d.records_logged,
            oplog_bytes: d.oplog_bytes,
            log_backpressure_waits: d.log_backpressure_waits,
            log_backpressure_wait_ns: d.log_backpressure_wait_ns,
            warmup_ops: d.warmup_ops,
            retries: d.retries,
            schedule: d.schedule.as_ref().map(decode_schedule),
            endpoints: decode_endpoints(&d.endpoints),
            stopped: self.stopped(d),
            client: self.client_health(),
            listing: d.listing.as_ref().map(chorus_proto::decode_listing),
            ranks: chorus_proto::decode_ranks(&d.ranks),
        }))
    }

    /// Its host over the step and the verdict on it.
    fn client_health(&self) -> Option<ClientHealth> {
        let track = self.client.lock().unwrap_or_else(|e| e.into_inner());
        track.as_ref().map(ClientTrack::finish)
    }

    /// Who ended this agent's stage early, if anyone: the agent's own word
    /// first (it is leaving), else a stop raised before its result came.
    fn stopped(&self, d: &pb::StageDone) -> Option<Stopped> {
        if !d.stopped_by.is_empty() {
            return Some(Stopped::ByAgent(d.stopped_by.clone()));
        }
        self.stops
            .iter()
            .find_map(|s| s.reason())
            .map(Stopped::ByController)
    }

    /// An error status: the agent's own refusal or failure (it answered), or
    /// a broken transport (it is lost unless a heartbeat gets through).
    async fn classify(&self, client: Client, status: tonic::Status, what: &str) -> Outcome {
        use tonic::Code;
        let answered = matches!(
            status.code(),
            Code::InvalidArgument
                | Code::FailedPrecondition
                | Code::NotFound
                | Code::Internal
                | Code::Unauthenticated
                | Code::PermissionDenied
                | Code::ResourceExhausted
        );
        if status.code() == Code::FailedPrecondition
            && let Some(why) = self.stopping(client.clone()).await
        {
            return Outcome::Refused {
                at_ns: now_ns(),
                why,
            };
        }
        if answered {
            return Outcome::Failed(anyhow::anyhow!(
                "agent {} {what}: {}",
                self.id,
                status.message()
            ));
        }
        self.lost_unless_heard(client, format!("{what}: {}", status_text(&status)))
            .await
    }

    /// Why the agent is stopping, if its heartbeat says it is.
    async fn stopping(&self, mut client: Client) -> Option<String> {
        let beat = client.heartbeat(pb::HeartbeatRequest {
            session_id: self.session_id.clone(),
        });
        match tokio::time::timeout(CONTROL_CALL_TIMEOUT, beat).await {
            Ok(Ok(r)) => Some(r.into_inner().stopping).filter(|s| !s.is_empty()),
            _ => None,
        }
    }

    /// One heartbeat decides: an agent that answers it is not lost (its
    /// stage still failed), one that does not is.
    async fn lost_unless_heard(&self, mut client: Client, reason: String) -> Outcome {
        let at_ns = now_ns();
        let beat = client.heartbeat(pb::HeartbeatRequest {
            session_id: self.session_id.clone(),
        });
        match tokio::time::timeout(CONTROL_CALL_TIMEOUT, beat).await {
            Ok(Ok(_)) => Outcome::Failed(anyhow::anyhow!("agent {} {reason}", self.id)),
            _ => Outcome::Lost { at_ns, reason },
        }
    }
}

/// How a lost agent is announced.
pub fn lost_line(id: &str, at_ns: i64, stage: &str, reason: &str) -> String {
    format!(
        "agent {id} lost at {} in stage `{stage}`: {reason}",
        chorus_common::clock::rfc3339_ns(at_ns)
    )
}

/// A transport status in one line (tonic's message is often empty).
fn status_text(status: &tonic::Status) -> String {
    if status.message().is_empty() {
        format!("{:?}", status.code())
    } else {
        format!("{:?}: {}", status.code(), status.message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_late_step_lengthens_the_next_lead_and_an_on_time_one_shortens_it() {
        let ms = Duration::from_millis;
        // On time: the lead stays at its least.
        assert_eq!(next_lead(START_LEAD, None), START_LEAD);
        assert_eq!(next_lead(START_LEAD, Some(ms(5))), START_LEAD);
        // 2 s late: 4 s more, then halfway back once on time.
        let long = next_lead(START_LEAD, Some(ms(2000)));
        assert_eq!(long, ms(4500));
        assert_eq!(next_lead(long, Some(ms(1))), ms(2500));
        // Never past the most.
        assert_eq!(next_lead(long, Some(ms(60_000))), MAX_START_LEAD);
    }
}
