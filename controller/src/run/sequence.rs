//! The plan's stages in order, on the agents still with us: before each
//! stage every agent's clock is measured again (and checked against the
//! plan's limits); lost agents are reported and handled by the plan's
//! policy; each stage's op-logs are copied while it runs and completed as
//! soon as it ends (see `collector.rs`).

use std::path::PathBuf;
use std::sync::Arc;

use chorus_common::clock::{ClockEstimate, now_ns, rfc3339_ns};
use chorus_common::metrics::StageMetrics;
use chorus_common::metrics::summary::{AgentCoverage, EndpointSummary, StageSummary};
use chorus_common::plan::{AgentLossPolicy, ClockCheck, ControlOptions, Plan};
use tokio::sync::{Mutex, Semaphore};

use super::agents::{self, AgentHandle};
use super::collector::{self, CollectContext, End, StageCollection};
use super::health::{Health, Lost};
use super::progress::LiveView;
use super::results::{AgentStageMeta, AgentStageStatus, LostAgentMeta, RunDir, RunMeta, StageMeta};
use super::series::Series;
use super::stage::{self, Outcome, StageContext, StopSignal};

/// Per stage: its index, its summary, and the op-log files gathered from
/// agents with the id of the agent that wrote each (its clock correction
/// comes from `run.json`, see `drift.rs`).
pub struct StageOutput {
    pub index: u32,
    pub summary: StageSummary,
    pub oplogs: Vec<(PathBuf, String)>,
}

/// What the stage loop shares with the rest of the run.
pub struct RunControl {
    pub session_id: String,
    pub stop: Arc<StopSignal>,
    pub health: Arc<Health>,
    pub series: Arc<Mutex<Series>>,
}

/// Runs every stage; returns what was measured and how it ended.
pub async fn run_stages(
    plan: &Plan,
    rc: &RunControl,
    agents: &mut [AgentHandle],
    dir: &RunDir,
    meta: &mut RunMeta,
    quiet: bool,
) -> (Vec<StageOutput>, anyhow::Result<()>) {
    let control = &plan.control;
    let view = LiveView::new(quiet);
    let mut outputs = Vec::new();
    // Agents lost so far, by run index.
    let mut lost: Vec<Option<Lost>> = vec![None; agents.len()];
    // Shared by every stage's log copying: a bound on fetches at once.
    let permits = Arc::new(Semaphore::new(collector::MAX_CONCURRENT_FETCHES));
    for (i, stage) in plan.stages.iter().enumerate() {
        if let Some(reason) = rc.stop.reason() {
            return (outputs, Err(anyhow::anyhow!("{reason}")));
        }
        // Losses the heartbeats found between stages.
        for (k, a) in agents.iter().enumerate() {
            if lost[k].is_none()
                && let Some(l) = rc.health.lost(k)
            {
                view.notice(&stage::lost_line(&a.id, l.at_ns, &stage.name, &l.reason));
                record_loss(meta, &a.id, &stage.name, &l);
                lost[k] = Some(l);
            }
        }
        if let Some(e) = loss_failure(control, agents, &lost) {
            return (outputs, Err(e));
        }
        let index = i as u32;
        let live: Vec<usize> = (0..agents.len()).filter(|&k| lost[k].is_none()).collect();

        // Clocks drift: each stage's offsets are measured just before it.
        let clocks = measure_clocks(agents, &live).await;
        let mut stage_meta = StageMeta {
            index,
            step: 0,
            name: stage.name.clone(),
            kind: stage.kind.name().to_string(),
            target: stage.target.clone(),
            start_at: String::new(),
            start_skew_ms: None,
            release_skew_ms: None,
            agents: Vec::new(),
        };
        let mut offsets = Vec::with_capacity(live.len());
        let mut refused = Vec::new();
        for (&k, clock) in live.iter().zip(&clocks) {
            let a = &agents[k];
            match clock {
                Ok(c) => {
                    offsets.push(c.offset_ns);
                    if let Some(w) = clock_warning(&a.id, c, control) {
                        view.notice(&format!("warning: {w}"));
                        meta.clock_warnings
                            .push(format!("stage `{}`: {w}", stage.name));
                        if control.clock_check == ClockCheck::Refuse {
                            refused.push(w);
                        }
                    }
                }
                // Unreachable now: run with the last offset, the stage
                // will tell whether the agent is really lost.
                Err(_) => offsets.push(a.offset_ns()),
            }
        }
        if !refused.is_empty() {
            meta.stages.push(stage_meta);
            let e = anyhow::anyhow!(
                "stage `{}` refused (control.clock_check: refuse): {}",
                stage.name,
                refused.join("; ")
            );
            return (outputs, Err(e));
        }

        let start_at_ns = now_ns() + stage::START_LEAD.as_nanos() as i64;
        stage_meta.start_at = rfc3339_ns(start_at_ns);
        if let Err(e) = rc.series.lock().await.begin_stage(&stage.name, start_at_ns) {
            tracing::warn!("series.csv: {e:#}");
        }
        let cx = StageContext {
            session_id: &rc.session_id,
            stage_index: index,
            stage,
            start_at_ns,
            offsets: offsets.clone(),
            agent_timeout: control.agent_timeout,
            abort_on_loss: control.on_agent_loss == AgentLossPolicy::Abort,
            stop: rc.stop.clone(),
            series: rc.series.clone(),
        };
        let refs: Vec<&AgentHandle> = live.iter().map(|&k| &agents[k]).collect();
        let collection = StageCollection::start(
            &CollectContext {
                session_id: &rc.session_id,
                stage_index: index,
                stage: &stage.name,
                interval: control.collect_interval,
                permits: permits.clone(),
            },
            &refs,
            dir,
        );
        let outcomes = stage::run_stage(&cx, &refs, &view).await;
        if let Err(e) = rc.series.lock().await.end_stage() {
            tracing::warn!("series.csv: {e:#}");
        }

        let mut merged = StageMetrics::default();
        let (mut first, mut last, mut first_ops) = (i64::MAX, i64::MIN, Vec::new());
        let mut releases = Vec::new();
        let mut failure = None;
        let mut coverage = Vec::new();
        let secs = |t: i64| (t - start_at_ns) as f64 / 1e9;
        for (((&k, outcome), &off), clock) in live.iter().zip(&outcomes).zip(&offsets).zip(&clocks)
        {
            let id = agents[k].id.clone();
            let mut m = AgentStageMeta {
                id: id.clone(),
                clock: clock.as_ref().ok().copied(),
                ..Default::default()
            };
            match outcome {
                Outcome::Done(r) => {
                    merged.merge(&r.metrics);
                    first = first.min(r.started_ns - off);
                    releases.push(r.started_ns - off);
                    last = last.max(r.ended_ns - off);
                    if let Some(f) = r.first_op_ns {
                        first_ops.push(f - off);
                    }
                    m.status = AgentStageStatus::Finished;
                    m.started = rfc3339_ns(r.started_ns - off);
                    m.first_op = r.first_op_ns.map(|f| rfc3339_ns(f - off));
                    m.ended = rfc3339_ns(r.ended_ns - off);
                    m.records_logged = r.records_logged;
                    m.log_backpressure_waits = r.log_backpressure_waits;
                    m.log_backpressure_wait_ms = r.log_backpressure_wait_ns as f64 / 1e6;
                    m.warmup_ops = r.warmup_ops;
                    m.retries = r.retries;
                    m.schedule = r.schedule.clone();
                    coverage.push(AgentCoverage {
                        agent: id,
                        status: "finished".into(),
                        from_s: secs(r.started_ns - off),
                        to_s: secs(r.ended_ns - off),
                        in_summary: true,
                    });
                }
                Outcome::Failed(e) => {
                    m.status = AgentStageStatus::Failed;
                    m.error = Some(format!("{e:#}"));
                    coverage.push(AgentCoverage {
                        agent: id,
                        status: "failed".into(),
                        from_s: 0.0,
                        to_s: 0.0,
                        in_summary: false,
                    });
                    failure.get_or_insert_with(|| anyhow::anyhow!("stage `{}`: {e:#}", stage.name));
                }
                Outcome::Lost { at_ns, reason } => {
                    let l = Lost {
                        at_ns: *at_ns,
                        reason: reason.clone(),
                    };
                    rc.health.mark_lost(k, l.clone());
                    // Announced by the stage when it happened.
                    record_loss(meta, &id, &stage.name, &l);
                    m.status = AgentStageStatus::Lost;
                    m.error = Some(format!("lost: {reason}"));
                    coverage.push(AgentCoverage {
                        agent: id,
                        status: "lost".into(),
                        from_s: 0.0,
                        to_s: secs(*at_ns).max(0.0),
                        in_summary: false,
                    });
                    lost[k] = Some(l);
                }
            }
            stage_meta.agents.push(m);
        }
        stage_meta.start_skew_ms = spread_ms(&first_ops);
        stage_meta.release_skew_ms = spread_ms(&releases);
        let elapsed_s = if last > first {
            (last - first) as f64 / 1e9
        } else {
            0.0
        };
        let finished = outcomes
            .iter()
            .filter(|o| matches!(o, Outcome::Done(_)))
            .count() as u32;
        let mut summary = StageSummary::from_metrics(
            &stage.name,
            stage.kind.name(),
            finished,
            elapsed_s,
            &merged,
        );
        summary.endpoints = sum_endpoints(outcomes.iter().filter_map(|o| match o {
            Outcome::Done(r) => Some(r),
            _ => None,
        }));
        summary.coverage = coverage;

        // Complete the logs of the agents that finished the stage; keep what
        // was copied of the others' (`.partial`, not merged: their ops are
        // not in the summary, and the summary and timeline agree).
        let ends: Vec<End> = outcomes
            .iter()
            .map(|o| match o {
                Outcome::Done(r) => End::Finish {
                    expected: r.oplog_bytes,
                },
                _ => End::Keep,
            })
            .collect();
        let collected = collection.end(&ends).await;
        let mut oplogs = Vec::new();
        for ((c, m), outcome) in collected
            .into_iter()
            .zip(stage_meta.agents.iter_mut())
            .zip(&outcomes)
        {
            m.oplog_bytes_collected = c.bytes;
            m.oplog = c
                .path
                .as_ref()
                .map(|p| p.strip_prefix(&dir.path).unwrap_or(p).display().to_string());
            if let Some(e) = c.error {
                failure.get_or_insert(e);
            } else if let (Outcome::Done(_), Some(p)) = (outcome, c.path) {
                oplogs.push((p, m.id.clone()));
            } else if let Some(p) = &m.oplog {
                view.notice(&format!(
                    "kept {} bytes of agent {}'s op-log of stage `{}` in {p}",
                    c.bytes, m.id, stage.name
                ));
            }
        }
        meta.stages.push(stage_meta);
        outputs.push(StageOutput {
            index,
            summary,
            oplogs,
        });
        if let Err(e) = dir.write_meta(meta) {
            tracing::warn!("run.json: {e:#}");
        }
        if let Some(e) = failure {
            return (outputs, Err(e));
        }
        if let Some(e) = loss_failure(control, agents, &lost) {
            return (outputs, Err(e));
        }
        if let Some(reason) = rc.stop.reason() {
            return (outputs, Err(anyhow::anyhow!("{reason}")));
        }
    }
    (outputs, Ok(()))
}

/// Largest minus smallest, in ms; `None` for no values.
fn spread_ms(times: &[i64]) -> Option<f64> {
    let (min, max) = (times.iter().min()?, times.iter().max()?);
    Some((max - min) as f64 / 1e6)
}

/// The run's end under the plan's policy: any loss with `abort`, every
/// agent lost with `continue`.
fn loss_failure(
    control: &ControlOptions,
    agents: &[AgentHandle],
    lost: &[Option<Lost>],
) -> Option<anyhow::Error> {
    let names: Vec<&str> = agents
        .iter()
        .zip(lost)
        .filter(|(_, l)| l.is_some())
        .map(|(a, _)| a.id.as_str())
        .collect();
    if names.is_empty() {
        return None;
    }
    if names.len() == agents.len() {
        return Some(anyhow::anyhow!(
            "every agent was lost ({})",
            names.join(", ")
        ));
    }
    (control.on_agent_loss == AgentLossPolicy::Abort).then(|| {
        anyhow::anyhow!(
            "agent {} lost; the plan says `on_agent_loss: abort`",
            names.join(", ")
        )
    })
}

fn record_loss(meta: &mut RunMeta, id: &str, stage: &str, l: &Lost) {
    meta.lost_agents.push(LostAgentMeta {
        id: id.to_string(),
        at: rfc3339_ns(l.at_ns),
        stage: stage.to_string(),
        reason: l.reason.clone(),
    });
}

/// Measures the clocks of agents `live` (run indices) all at once.
async fn measure_clocks(
    agents: &mut [AgentHandle],
    live: &[usize],
) -> Vec<anyhow::Result<ClockEstimate>> {
    let calls = agents
        .iter_mut()
        .enumerate()
        .filter(|(k, _)| live.contains(k))
        .map(|(_, a)| agents::measure_clock(a));
    futures::future::join_all(calls).await
}

/// A clock past the plan's limits, in words; `None` when within them.
pub fn clock_warning(id: &str, c: &ClockEstimate, control: &ControlOptions) -> Option<String> {
    let ms = |ns: i64| ns as f64 / 1e6;
    let mut why = Vec::new();
    if let Some(max) = control.max_clock_offset
        && c.offset_ns.unsigned_abs() as u128 > max.as_nanos()
    {
        why.push(format!(
            "offset {:+.3} ms is past max_clock_offset {:.3} ms",
            ms(c.offset_ns),
            max.as_secs_f64() * 1e3
        ));
    }
    if c.uncertainty_ns.unsigned_abs() as u128 > control.max_clock_uncertainty.as_nanos() {
        why.push(format!(
            "uncertainty ±{:.3} ms is past max_clock_uncertainty {:.3} ms",
            ms(c.uncertainty_ns),
            control.max_clock_uncertainty.as_secs_f64() * 1e3
        ));
    }
    (!why.is_empty()).then(|| format!("agent {id} clock: {}", why.join(", ")))
}

/// Per-endpoint counters of all agents, summed by endpoint, in first-seen
/// order.
fn sum_endpoints<'a>(
    results: impl Iterator<Item = &'a stage::AgentStageResult>,
) -> Vec<EndpointSummary> {
    let mut rows: Vec<EndpointSummary> = Vec::new();
    for e in results.flat_map(|r| &r.endpoints) {
        match rows.iter_mut().find(|r| r.endpoint == e.endpoint) {
            Some(r) => {
                r.requests += e.requests;
                r.bytes += e.bytes;
                r.errors += e.errors;
            }
            None => rows.push(EndpointSummary {
                endpoint: e.endpoint.clone(),
                requests: e.requests,
                bytes: e.bytes,
                errors: e.errors,
            }),
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn clock_limits_are_checked_both_ways() {
        let c = |offset_ns, uncertainty_ns| ClockEstimate {
            offset_ns,
            uncertainty_ns,
            rtt_ns: 2 * uncertainty_ns,
            samples: 32,
            measured_at_ns: 0,
        };
        let control = ControlOptions {
            max_clock_offset: Some(Duration::from_millis(100)),
            max_clock_uncertainty: Duration::from_millis(1),
            ..Default::default()
        };
        assert_eq!(clock_warning("a", &c(-99_000_000, 500_000), &control), None);
        let w = clock_warning("a", &c(-101_000_000, 500_000), &control).unwrap();
        assert!(
            w.contains("offset -101.000 ms") && w.contains("agent a"),
            "{w}"
        );
        let w = clock_warning("a", &c(0, 2_000_000), &control).unwrap();
        assert!(w.contains("uncertainty ±2.000 ms"), "{w}");
        // No offset limit by default.
        let w = clock_warning("a", &c(3_600_000_000_000, 0), &ControlOptions::default());
        assert_eq!(w, None);
    }
}
