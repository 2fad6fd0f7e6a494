//! One load step of a stage (the stage whole, or one of its sub-steps) on
//! every live agent: clocks measured just before it and checked against
//! the plan's limits, one absolute start, the stage kind watching its live
//! seconds, op-logs copied while it runs (`collector.rs`) and completed at
//! its end, each agent's result judged into `run.json`, and the merged
//! summary handed back to the kind.

use std::sync::Arc;

use chorus_common::clock::{ClockEstimate, now_ns, rfc3339_ns};
use chorus_common::metrics::StageMetrics;
use chorus_common::metrics::summary::{AgentCoverage, EndpointSummary, StageSummary};
use chorus_common::plan::{ClockCheck, ControlOptions, Stage};
use chorus_proto::encode_step;
use tokio::sync::Mutex;

use super::agents::{self, AgentHandle};
use super::collector::{CollectContext, End, StageCollection};
use super::health::Lost;
use super::kinds::{StageKind, Step, StepResult, Watch};
use super::results::{AgentStageMeta, AgentStageStatus, StageMeta};
use super::sequence::{RunState, StageOutput};
use super::series::Series;
use super::stage::{self, Outcome, StageContext, StopReason, StopSignal, Stopped};

/// How often the running step's new cluster seconds are shown to its kind.
const WATCH_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// Runs `step` of stage `index` on every live agent and records it; an
/// error (an agent failed it, a clock refused, a log not collected) ends
/// the run after what was measured is recorded.
pub async fn run_step(
    run: &mut RunState<'_>,
    index: u32,
    stage: &Stage,
    step: Step,
    kind: &mut dyn StageKind,
) -> anyhow::Result<StepResult> {
    let rc = run.rc;
    let live = run.live();
    let staged = step.apply(stage);
    let mut meta = StageMeta::of_step(index, &step, &staged, stage.kind.name());
    // Clocks drift: each step's offsets are measured just before it.
    let clocks = measure_clocks(run.agents, &live).await;
    let offsets = match check_clocks(run, &live, &clocks, &staged.name) {
        Ok(offsets) => offsets,
        Err(e) => {
            run.meta.stages.push(meta);
            return Err(e);
        }
    };
    for (&k, clock) in live.iter().zip(&clocks) {
        rc.metrics
            .agent_clock(&run.agents[k].id, clock.as_ref().ok());
    }
    rc.metrics.stage_begins(&staged.name, stage.kind.name());
    let start_at_ns = now_ns() + run.lead.as_nanos() as i64;
    meta.start_at = rfc3339_ns(start_at_ns);
    if let Err(e) = rc
        .series
        .lock()
        .await
        .begin_stage(&staged.name, start_at_ns)
    {
        tracing::warn!("series.csv: {e:#}");
    }
    let step_stop = Arc::new(StopSignal::default());
    let cx = StageContext {
        session_id: &rc.session_id,
        stage_index: index,
        stage: &staged,
        step: match &step {
            Step::Whole => None,
            Step::Sub(s) => Some(encode_step(s)),
        },
        departed: run.departed(),
        start_at_ns,
        offsets,
        agent_timeout: run.plan.control.agent_timeout,
        abort_on_loss: run.plan.control.on_agent_loss
            == chorus_common::plan::AgentLossPolicy::Abort,
        stop: rc.stop.clone(),
        step_stop: step_stop.clone(),
        series: rc.series.clone(),
        metrics: rc.metrics.clone(),
    };
    let refs: Vec<&AgentHandle> = live.iter().map(|&k| &run.agents[k]).collect();
    let collection = StageCollection::start(
        &CollectContext {
            session_id: &rc.session_id,
            stage_index: index,
            step: step.index(),
            stage: &staged.name,
            interval: run.plan.control.collect_interval,
            permits: run.permits.clone(),
        },
        &refs,
        run.dir,
    );
    let running = stage::run_stage(&cx, &refs, &run.view);
    let stage::StageOutcomes { outcomes, merged } =
        watched(running, kind, &rc.series, &step_stop).await;
    if let Err(e) = rc.series.lock().await.end_stage() {
        tracing::warn!("series.csv: {e:#}");
    }
    rc.metrics.stage_ends(&staged.name);
    meta.ended_early = step_stop
        .reason()
        .or_else(|| rc.stop.reason())
        .map(|r| r.to_string());
    let mut judged = judge(run, &live, &outcomes, merged, &clocks, &cx, &mut meta);
    run.lead = stage::next_lead(run.lead, judged.late);
    let (oplogs, collect_failure) = collect(run, collection, &outcomes, &mut meta).await;
    let failure = judged.failure.take().or(collect_failure);
    let result = record(run, step, meta, judged, oplogs);
    failure.map_or(Ok(result), Err)
}

/// Files a step's results: its `run.json` entry (written at once), its
/// summary and logs for the end of the run, and the agents that left.
fn record(
    run: &mut RunState<'_>,
    step: Step,
    meta: StageMeta,
    judged: Judged,
    oplogs: Vec<(std::path::PathBuf, String)>,
) -> StepResult {
    let (index, name) = (meta.index, meta.name.clone());
    let Judged {
        summary,
        metrics,
        departed,
        ..
    } = judged;
    let client_bound = meta
        .agents
        .iter()
        .filter(|a| {
            a.client
                .as_ref()
                .is_some_and(|c| c.bottleneck.as_ref().is_some_and(|b| !b.is_empty()))
        })
        .map(|a| a.id.clone())
        .collect();
    let result = StepResult {
        step,
        summary: summary.clone(),
        metrics,
        client_bound,
        ended_early: meta.ended_early.clone(),
        schedules: meta
            .agents
            .iter()
            .filter_map(|a| a.schedule.clone())
            .collect(),
        ranks: meta
            .agents
            .iter()
            .flat_map(|a| a.ranks.iter().cloned())
            .collect(),
        spans: meta.agents.iter().filter_map(|a| a.span_ns).collect(),
    };
    run.meta.stages.push(meta);
    run.outputs.push(StageOutput {
        index,
        step: result.step.index(),
        summary,
        oplogs,
    });
    if let Err(e) = run.dir.write_meta(run.meta) {
        tracing::warn!("run.json: {e:#}");
    }
    for (k, l, announce) in departed {
        run.depart(k, &name, l, announce);
    }
    result
}

impl StageMeta {
    /// The `run.json` entry of a step about to run, as `staged` runs it.
    fn of_step(index: u32, step: &Step, staged: &Stage, kind: &str) -> StageMeta {
        StageMeta {
            index,
            step: step.index(),
            name: staged.name.clone(),
            kind: kind.to_string(),
            target: staged.target.clone(),
            start_at: String::new(),
            start_skew_ms: None,
            release_skew_ms: None,
            request_lead_ms: None,
            ended_early: None,
            agents: Vec::new(),
        }
    }
}

/// Waits for the step while showing its kind each new cluster second; a
/// [`Watch::Stop`] stops the step on every agent.
async fn watched(
    running: impl Future<Output = stage::StageOutcomes>,
    kind: &mut dyn StageKind,
    series: &Mutex<Series>,
    step_stop: &StopSignal,
) -> stage::StageOutcomes {
    let mut running = std::pin::pin!(running);
    let mut tick = tokio::time::interval(WATCH_EVERY);
    let mut seen = 0;
    loop {
        tokio::select! {
            outcomes = &mut running => return outcomes,
            _ = tick.tick() => {
                let (seconds, closed) = series.lock().await.seconds_since(seen);
                seen = closed;
                for s in &seconds {
                    if let Watch::Stop(why) = kind.watch(s) {
                        step_stop.raise(StopReason::Kind(why));
                    }
                }
            }
        }
    }
}

/// The clock offsets to run with, in `live` order; warnings recorded and
/// shown; `Err` when the plan says to refuse a clock past its limits.
fn check_clocks(
    run: &mut RunState<'_>,
    live: &[usize],
    clocks: &[anyhow::Result<ClockEstimate>],
    name: &str,
) -> anyhow::Result<Vec<i64>> {
    let control = &run.plan.control;
    let mut offsets = Vec::with_capacity(live.len());
    let mut refused = Vec::new();
    for (&k, clock) in live.iter().zip(clocks) {
        let a = &run.agents[k];
        match clock {
            Ok(c) => {
                offsets.push(c.offset_ns);
                if let Some(w) = clock_warning(&a.id, c, control) {
                    run.view.notice(&format!("warning: {w}"));
                    run.meta.clock_warnings.push(format!("stage `{name}`: {w}"));
                    if control.clock_check == ClockCheck::Refuse {
                        refused.push(w);
                    }
                }
            }
            // Unreachable now: run with the last offset, the step will
            // tell whether the agent is really lost.
            Err(_) => offsets.push(a.offset_ns()),
        }
    }
    if refused.is_empty() {
        Ok(offsets)
    } else {
        Err(anyhow::anyhow!(
            "stage `{name}` refused (control.clock_check: refuse): {}",
            refused.join("; ")
        ))
    }
}

/// Each agent's result turned into `run.json` rows and the merged summary.
struct Judged {
    summary: StageSummary,
    /// The summary's ops, with their histograms.
    metrics: StageMetrics,
    /// The first agent's failure, which ends the run.
    failure: Option<anyhow::Error>,
    /// Agents that left in this step: run index, why, whether to say so
    /// (a loss was said when it happened).
    departed: Vec<(usize, Lost, bool)>,
    /// How much later than the start the last agent was released.
    late: Option<std::time::Duration>,
}

/// Judges every agent's outcome of the step (see [`Judged`]); fills the
/// agent rows and skews of `meta`.
fn judge(
    run: &RunState<'_>,
    live: &[usize],
    outcomes: &[Outcome],
    merged: StageMetrics,
    clocks: &[anyhow::Result<ClockEstimate>],
    cx: &StageContext<'_>,
    meta: &mut StageMeta,
) -> Judged {
    let mut tally = Tally {
        merged,
        ..Tally::default()
    };
    let mut departed = Vec::new();
    let mut failure = None;
    for (i, ((&k, outcome), clock)) in live.iter().zip(outcomes).zip(clocks).enumerate() {
        // The clock this step ran with: measured just before it, or when
        // that failed, the start measurement its offset then came from
        // (the timeline's correction starts from what is written here).
        let a = &run.agents[k];
        let mut m = AgentStageMeta {
            id: a.id.clone(),
            clock: clock.as_ref().ok().copied().or(a.clock_start),
            ..Default::default()
        };
        match outcome {
            Outcome::Done(r) => {
                let off = cx.offsets[i];
                m.fill_from(r, off);
                tally.done(&m, r, off, cx.start_at_ns);
                if let Some(Stopped::ByAgent(why)) = &r.stopped {
                    let reason = format!("stopped ({why})");
                    let l = Lost {
                        at_ns: r.ended_ns - off,
                        reason,
                        stopped: true,
                    };
                    departed.push((k, l, true));
                }
            }
            Outcome::Failed(e) => {
                m.status = AgentStageStatus::Failed;
                m.error = Some(format!("{e:#}"));
                tally.left(&m, 0.0);
                let name = &cx.stage.name;
                failure.get_or_insert_with(|| anyhow::anyhow!("stage `{name}`: {e:#}"));
            }
            Outcome::Refused { at_ns, why } => {
                m.status = AgentStageStatus::Stopped;
                m.stopped_by = Some(why.clone());
                m.error = Some(format!("refused the step: agent is stopping ({why})"));
                tally.left(&m, 0.0);
                let l = Lost {
                    at_ns: *at_ns,
                    reason: format!("stopped ({why})"),
                    stopped: true,
                };
                departed.push((k, l, true));
            }
            Outcome::Lost { at_ns, reason } => {
                m.status = AgentStageStatus::Lost;
                m.error = Some(format!("lost: {reason}"));
                tally.left(&m, ((at_ns - cx.start_at_ns) as f64 / 1e9).max(0.0));
                let (at_ns, reason) = (*at_ns, reason.clone());
                departed.push((
                    k,
                    Lost {
                        at_ns,
                        reason,
                        stopped: false,
                    },
                    false,
                ));
            }
        }
        meta.agents.push(m);
    }
    meta.start_skew_ms = spread_ms(&tally.first_ops);
    meta.release_skew_ms = spread_ms(&tally.releases);
    meta.request_lead_ms = tally
        .received
        .iter()
        .max()
        .map(|&r| (cx.start_at_ns - r) as f64 / 1e6);
    let late = tally
        .releases
        .iter()
        .max()
        .map(|&r| std::time::Duration::from_nanos((r - cx.start_at_ns).max(0) as u64));
    let (summary, metrics) = tally.summary(meta, outcomes, cx.stage.warmup_window());
    Judged {
        summary,
        metrics,
        failure,
        departed,
        late,
    }
}

/// What the agents of a step add up to, gathered agent by agent (times on
/// the controller's clock).
#[derive(Default)]
struct Tally {
    /// The metrics of the agents that finished, merged as they came
    /// (`stage::StageOutcomes::merged`).
    merged: StageMetrics,
    first: Option<i64>,
    last: Option<i64>,
    first_ops: Vec<i64>,
    releases: Vec<i64>,
    /// When each agent's RunStage request reached it.
    received: Vec<i64>,
    coverage: Vec<AgentCoverage>,
}

impl Tally {
    /// An agent that finished the step (or was stopped in it): its ops
    /// count.
    fn done(&mut self, m: &AgentStageMeta, r: &stage::AgentStageResult, off: i64, start: i64) {
        let (started, ended) = (r.started_ns - off, r.ended_ns - off);
        self.first = Some(self.first.map_or(started, |f| f.min(started)));
        self.last = Some(self.last.map_or(ended, |l| l.max(ended)));
        self.releases.push(started);
        self.received.extend(r.received_ns.map(|t| t - off));
        // Issued, not scheduled: every agent's first slot is the start.
        self.first_ops.extend(r.first_issued_ns.map(|f| f - off));
        let secs = |t: i64| (t - start) as f64 / 1e9;
        self.coverage.push(AgentCoverage {
            agent: m.id.clone(),
            status: m.status.name().to_string(),
            from_s: secs(started),
            to_s: secs(ended),
            in_summary: true,
        });
    }

    /// An agent that failed or was lost: its ops are not counted.
    fn left(&mut self, m: &AgentStageMeta, to_s: f64) {
        self.coverage.push(AgentCoverage {
            agent: m.id.clone(),
            status: m.status.name().to_string(),
            from_s: 0.0,
            to_s,
            in_summary: false,
        });
    }

    /// The step's summary, merged exactly over the agents that count,
    /// and its histograms. Its rates are over the time its counted ops
    /// ran: from the end of the warm-up (`settle`), whose ops are not in
    /// the counts, to the last op's end.
    fn summary(
        self,
        meta: &StageMeta,
        outcomes: &[Outcome],
        settle: Option<std::time::Duration>,
    ) -> (StageSummary, StageMetrics) {
        let settle_ns = settle.map_or(0, |d| d.as_nanos() as i64);
        let elapsed_s = match (self.first, self.last) {
            (Some(f), Some(l)) if l > f + settle_ns => (l - f - settle_ns) as f64 / 1e9,
            _ => 0.0,
        };
        let finished = outcomes
            .iter()
            .filter(|o| matches!(o, Outcome::Done(_)))
            .count() as u32;
        let (name, kind) = (&meta.name, &meta.kind);
        let mut summary = StageSummary::from_metrics(name, kind, finished, elapsed_s, &self.merged);
        summary.warnings = client_warnings(meta);
        summary.endpoints = sum_endpoints(outcomes.iter().filter_map(|o| match o {
            Outcome::Done(r) => Some(r.as_ref()),
            _ => None,
        }));
        summary.coverage = self.coverage;
        (summary, self.merged)
    }
}

impl AgentStageMeta {
    /// The row of an agent that finished (or was stopped in) the step;
    /// its times corrected by offset `off`.
    fn fill_from(&mut self, r: &stage::AgentStageResult, off: i64) {
        self.status = match r.stopped {
            None => AgentStageStatus::Finished,
            Some(_) => AgentStageStatus::Stopped,
        };
        self.stopped_by = r.stopped.as_ref().map(|s| match s {
            Stopped::ByAgent(why) => why.clone(),
            Stopped::ByController(reason) => reason.to_string(),
        });
        self.started = rfc3339_ns(r.started_ns - off);
        self.first_op = r.first_op_ns.map(|f| rfc3339_ns(f - off));
        self.first_issued = r.first_issued_ns.map(|f| rfc3339_ns(f - off));
        self.received = r.received_ns.map(|t| rfc3339_ns(t - off));
        self.ended = rfc3339_ns(r.ended_ns - off);
        self.records_logged = r.records_logged;
        self.log_backpressure_waits = r.log_backpressure_waits;
        self.log_backpressure_wait_ms = r.log_backpressure_wait_ns as f64 / 1e6;
        self.warmup_ops = r.warmup_ops;
        self.retries = r.retries;
        self.schedule = r.schedule.clone();
        self.client = r.client.clone();
        self.listing = r.listing.clone();
        self.ranks = r.ranks.clone();
        self.span_ns = r.first_op_ns.map(|f| (f - off, r.ended_ns - off));
    }
}

/// Completes the logs of the agents that finished the step (or were
/// stopped in it: their logs are whole); keeps what was copied of the
/// others' (`.partial`, not merged: their ops are not in the summary, and
/// the summary and timeline agree). Returns the logs to merge and the
/// first collection failure.
async fn collect(
    run: &RunState<'_>,
    collection: StageCollection,
    outcomes: &[Outcome],
    meta: &mut StageMeta,
) -> (Vec<(std::path::PathBuf, String)>, Option<anyhow::Error>) {
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
    let (mut oplogs, mut failure) = (Vec::new(), None);
    for ((c, m), outcome) in collected.into_iter().zip(&mut meta.agents).zip(outcomes) {
        m.oplog_bytes_collected = c.bytes;
        m.oplog = c.path.as_ref().map(|p| {
            let relative = p.strip_prefix(&run.dir.path).unwrap_or(p);
            relative.display().to_string()
        });
        if let Some(e) = c.error {
            failure.get_or_insert(e);
        } else if let (Outcome::Done(_), Some(p)) = (outcome, c.path) {
            oplogs.push((p, m.id.clone()));
        } else if let Some(p) = &m.oplog {
            run.view.notice(&format!(
                "kept {} bytes of agent {}'s op-log of stage `{}` in {p}",
                c.bytes, m.id, meta.name
            ));
        }
    }
    (oplogs, failure)
}

/// Largest minus smallest, in ms; `None` for no values.
fn spread_ms(times: &[i64]) -> Option<f64> {
    let (min, max) = (times.iter().min()?, times.iter().max()?);
    Some((max - min) as f64 / 1e6)
}

/// Measures the clocks of agents `live` (run indices), in `live`'s order,
/// [`agents::STARTUP_FANOUT`] at a time: a thousand measurements at once
/// would crowd each other's samples (and the host) and widen every
/// round trip. Which agents are live is looked up in a mask, not by a
/// scan of `live` per agent.
async fn measure_clocks(
    agents: &mut [AgentHandle],
    live: &[usize],
) -> Vec<anyhow::Result<ClockEstimate>> {
    use futures::StreamExt;
    let mut is_live = vec![false; agents.len()];
    for &k in live {
        is_live[k] = true;
    }
    let calls = agents
        .iter_mut()
        .zip(is_live)
        .filter(|(_, live)| *live)
        .map(|(a, _)| agents::measure_clock(a));
    futures::stream::iter(calls)
        .buffered(agents::STARTUP_FANOUT)
        .collect()
        .await
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

/// Agents whose client-health warnings are given one by one; past that
/// many, the rest are counted in one line (a thousand agents on one busy
/// host would otherwise bury the summary in a thousand alike lines).
const WARNED_AGENTS: usize = 5;

/// The client-health warnings of each agent, in agent order: those of the
/// first [`WARNED_AGENTS`], then a count of the others.
fn client_warnings(meta: &StageMeta) -> Vec<String> {
    let health: Vec<_> = meta
        .agents
        .iter()
        .filter_map(|a| Some((a.id.as_str(), a.client.as_ref()?)))
        .filter(|(_, c)| c.is_client_bound() || c.behind_schedule.is_some())
        .collect();
    let mut out: Vec<String> = health
        .iter()
        .take(WARNED_AGENTS)
        .flat_map(|(id, c)| c.warnings(id, &meta.name))
        .collect();
    let rest = &health[health.len().min(WARNED_AGENTS)..];
    if !rest.is_empty() {
        let bound = rest.iter().filter(|(_, c)| c.is_client_bound()).count();
        let behind = rest
            .iter()
            .filter(|(_, c)| c.behind_schedule.is_some())
            .count();
        out.push(format!(
            "{} more agents in stage `{}`: {bound} client-bound, {behind} behind their \
             schedule (each agent's figures: run.json, the stage's agents' `client`)",
            rest.len(),
            meta.name
        ));
    }
    out
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
    fn past_five_warned_agents_the_rest_are_counted_in_one_line() {
        use chorus_common::metrics::client::ClientHealth;
        let agent = |i: usize, bound: bool, behind: bool| AgentStageMeta {
            id: format!("a{i}"),
            client: Some(ClientHealth {
                bottleneck: bound.then(|| vec!["CPU 97% busy".to_string()]),
                behind_schedule: behind.then(|| "lag grew".to_string()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut meta = StageMeta {
            name: "load".to_string(),
            ..Default::default()
        };
        // A healthy agent first: it is not among the five.
        meta.agents.push(agent(0, false, false));
        meta.agents.extend((1..=4).map(|i| agent(i, true, false)));
        let w = client_warnings(&meta);
        assert_eq!(w.len(), 4, "{w:?}");
        assert!(w[0].starts_with("agent a1 was client-bound in stage `load`"));
        meta.agents
            .extend((5..=1000).map(|i| agent(i, i % 2 == 0, i % 3 == 0)));
        let w = client_warnings(&meta);
        // a1..a4 and a6 (a5 is healthy; a6 has both) one by one, then one
        // line for the rest.
        assert_eq!(w.len(), 7, "{w:?}");
        assert!(w[4].starts_with("agent a6 was client-bound"), "{w:?}");
        assert!(w[5].starts_with("agent a6 fell behind"), "{w:?}");
        let last = w.last().unwrap();
        let rest = (7..=1000).filter(|i| i % 2 == 0 || i % 3 == 0);
        let bound = (7..=1000).filter(|i| i % 2 == 0).count();
        let behind = (7..=1000).filter(|i| i % 3 == 0).count();
        assert_eq!(
            last,
            &format!(
                "{} more agents in stage `load`: {bound} client-bound, {behind} behind their \
                 schedule (each agent's figures: run.json, the stage's agents' `client`)",
                rest.count()
            )
        );
    }

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
