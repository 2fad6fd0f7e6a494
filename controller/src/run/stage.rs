//! Runs one stage on every agent at once: one absolute start time, one
//! progress stream per agent, and each agent's final metrics.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chorus_common::metrics::StageMetrics;
use chorus_common::plan::Stage;
use chorus_common::store::multi::EndpointStats;
use chorus_common::workload::ScheduleReport;
use chorus_proto::pb::{self, stage_event::Event};
use chorus_proto::{decode_endpoints, decode_metrics, decode_schedule};
use tokio::sync::Mutex;

use super::agents::AgentHandle;
use super::progress::{LiveView, Totals};

/// How far ahead of now a stage's start is set: long enough for the
/// RunStage call to reach every agent (and open its store) before it.
pub const START_LEAD: Duration = Duration::from_millis(500);

/// What one agent reported for a stage. Times are on the agent's clock.
#[derive(Debug)]
pub struct AgentStageResult {
    pub metrics: StageMetrics,
    pub started_ns: i64,
    pub first_op_ns: Option<i64>,
    pub ended_ns: i64,
    pub records_logged: u64,
    pub log_backpressure_waits: u64,
    pub log_backpressure_wait_ns: u64,
    pub warmup_ops: u64,
    pub retries: u64,
    pub schedule: Option<ScheduleReport>,
    pub endpoints: Vec<EndpointStats>,
}

/// Starts `stage` on all agents at `start_at_ns` (controller clock) and
/// waits for all of them. The result is in agent order; an agent that failed
/// gives its error.
pub async fn run_stage(
    session_id: &str,
    stage_index: u32,
    stage: &Stage,
    start_at_ns: i64,
    agents: &[AgentHandle],
    view: &LiveView,
) -> Vec<anyhow::Result<AgentStageResult>> {
    let totals = Arc::new(Mutex::new(vec![Totals::default(); agents.len()]));
    view.start_stage(stage, agents.len(), start_at_ns, totals.clone());
    let tasks: Vec<_> = agents
        .iter()
        .enumerate()
        .map(|(i, agent)| {
            let mut client = agent.client.clone();
            let req = pb::RunStageRequest {
                session_id: session_id.to_string(),
                stage_index,
                start_at_ns,
                offset_ns: agent.offset_ns(),
            };
            let (id, totals) = (agent.id.clone(), totals.clone());
            tokio::spawn(async move {
                let mut stream = client
                    .run_stage(req)
                    .await
                    .with_context(|| format!("agent {id} refused the stage"))?
                    .into_inner();
                while let Some(event) = stream
                    .message()
                    .await
                    .with_context(|| format!("agent {id} failed during the stage"))?
                {
                    match event.event {
                        Some(Event::Progress(p)) => {
                            totals.lock().await[i] = Totals {
                                ops: p.ops,
                                bytes: p.bytes,
                                errors: p.errors,
                            };
                        }
                        Some(Event::Done(d)) => {
                            let metrics = decode_metrics(&d.ops)
                                .with_context(|| format!("metrics from agent {id}"))?;
                            totals.lock().await[i] = Totals {
                                ops: metrics.total_ops(),
                                bytes: metrics.total_bytes(),
                                errors: metrics.total_errors(),
                            };
                            return Ok(AgentStageResult {
                                metrics,
                                started_ns: d.started_ns,
                                first_op_ns: (d.first_op_ns != 0).then_some(d.first_op_ns),
                                ended_ns: d.ended_ns,
                                records_logged: d.records_logged,
                                log_backpressure_waits: d.log_backpressure_waits,
                                log_backpressure_wait_ns: d.log_backpressure_wait_ns,
                                warmup_ops: d.warmup_ops,
                                retries: d.retries,
                                schedule: d.schedule.as_ref().map(decode_schedule),
                                endpoints: decode_endpoints(&d.endpoints),
                            });
                        }
                        None => {}
                    }
                }
                anyhow::bail!("agent {id} ended the stage without a result")
            })
        })
        .collect();
    let mut results = Vec::with_capacity(tasks.len());
    for t in tasks {
        results.push(match t.await {
            Ok(r) => r,
            Err(e) => Err(anyhow::anyhow!("stage task failed: {e}")),
        });
    }
    view.finish_stage().await;
    results
}
