//! `controller run`: load the plan, find or start agents, measure their
//! clocks, run each stage on all of them at once, then gather op-logs,
//! merge the timeline and write the results directory.
//!
//! Whatever happens after the first stage starts, what was measured is
//! written: a failed stage still leaves the earlier stages' summaries, logs
//! and timeline, with `run.json` saying what failed.

mod agents;
mod progress;
mod results;
mod stage;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use chorus_common::clock::{drift_ppm, now_ns, rfc3339_ns};
use chorus_common::metrics::StageMetrics;
use chorus_common::metrics::summary::{EndpointSummary, RunSummary, StageSummary};
use chorus_common::oplog::merge::{MergeInput, merge_files};
use chorus_common::plan::{self, Overrides, Plan};
use chorus_proto::pb;

use crate::EXIT_BAD_INPUT;
use crate::cli::RunArgs;
use agents::AgentHandle;
use progress::LiveView;
use results::{AgentMeta, AgentStageMeta, HostMeta, RunDir, RunMeta, StageMeta};

/// Why a run did not complete.
enum RunError {
    /// Bad input: nothing ran, no results directory (exit 2).
    Input(String),
    /// Something failed (exit 1); the run directory holds what was measured.
    Failed(anyhow::Error),
}

pub async fn run_command(args: RunArgs) -> ExitCode {
    match run(args).await {
        Ok(dir) => {
            println!("results: {}", dir.display());
            ExitCode::SUCCESS
        }
        Err(RunError::Input(msg)) => {
            eprintln!("error: {msg}");
            ExitCode::from(EXIT_BAD_INPUT)
        }
        Err(RunError::Failed(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Loads the plan and applies the command line's overrides.
fn load_plan(args: &RunArgs) -> Result<Plan, RunError> {
    let mut plan = plan::load(&args.plan).map_err(|e| RunError::Input(e.to_string()))?;
    let duration = args
        .duration
        .as_deref()
        .map(|d| {
            plan::parse_duration(d).map_err(|e| RunError::Input(format!("--duration {d}: {e}")))
        })
        .transpose()?;
    let overrides = Overrides {
        target: args.target.clone(),
        duration,
        concurrency: args.concurrency,
    };
    plan.apply_overrides(&overrides).map_err(RunError::Input)?;
    Ok(plan)
}

async fn run(args: RunArgs) -> Result<std::path::PathBuf, RunError> {
    let plan = load_plan(&args)?;
    let addrs: Vec<String> = if !args.agents.is_empty() {
        args.agents.clone()
    } else {
        plan.agents.clone()
    };
    if addrs.is_empty() && args.embedded == 0 {
        return Err(RunError::Input(
            "--embedded must be at least 1 when no agents are named".into(),
        ));
    }
    // Embedded agents live until this function returns.
    let (addrs, _embedded) = if addrs.is_empty() {
        let (a, e) = agents::start_embedded(args.embedded)
            .await
            .map_err(RunError::Failed)?;
        (a, Some(e))
    } else {
        (addrs, None)
    };
    let mut agents = agents::connect(&addrs).await.map_err(RunError::Failed)?;

    let started_ns = now_ns();
    let run_id = results::run_id(started_ns, &plan.name);
    let session_id = format!(
        "{run_id}-{:x}",
        std::process::id() as u64 ^ started_ns as u64
    );
    let plan_yaml = plan.to_yaml();
    let count = agents.len() as u32;
    for a in agents.iter_mut() {
        a.client
            .load_plan(pb::LoadPlanRequest {
                session_id: session_id.clone(),
                run_id: run_id.clone(),
                plan_yaml: plan_yaml.clone(),
                agent_index: a.index,
                agent_count: count,
                agent_id: a.id.clone(),
                ..Default::default()
            })
            .await
            .map_err(|s| {
                RunError::Failed(anyhow::anyhow!(
                    "agent {} refused the plan: {}",
                    a.id,
                    s.message()
                ))
            })?;
        a.clock_start = Some(agents::measure_clock(a).await.map_err(RunError::Failed)?);
    }

    // From here on the run has started: results are written whatever happens.
    let dir = RunDir::create(&args.results, &run_id).map_err(RunError::Failed)?;
    let mut meta = RunMeta {
        run_id: run_id.clone(),
        plan: plan.name.clone(),
        plan_file: args.plan.display().to_string(),
        controller: HostMeta {
            version: env!("CARGO_PKG_VERSION").to_string(),
            hostname: chorus_agent::host::hostname(),
            cpus: chorus_agent::host::cpus(),
            os: chorus_agent::host::os(),
        },
        started_at: rfc3339_ns(started_ns),
        ..Default::default()
    };
    let outcome = run_stages(&plan, &session_id, &mut agents, &dir, &mut meta, args.quiet).await;
    let finish = finish_run(
        &plan,
        &run_id,
        &session_id,
        &mut agents,
        &dir,
        &mut meta,
        outcome,
        args.quiet,
    )
    .await;
    match finish {
        Ok(()) => Ok(dir.path),
        Err(e) => Err(RunError::Failed(
            e.context(format!("results so far are in {}", dir.path.display())),
        )),
    }
}

/// Per stage: its summary, and the op-log files gathered from agents.
struct StageOutput {
    summary: StageSummary,
    oplogs: Vec<(std::path::PathBuf, i64)>,
}

async fn run_stages(
    plan: &Plan,
    session_id: &str,
    agents: &mut [AgentHandle],
    dir: &RunDir,
    meta: &mut RunMeta,
    quiet: bool,
) -> (Vec<StageOutput>, anyhow::Result<()>) {
    let view = LiveView::new(quiet);
    let mut outputs = Vec::new();
    for (i, stage) in plan.stages.iter().enumerate() {
        let index = i as u32;
        let start_at_ns = now_ns() + stage::START_LEAD.as_nanos() as i64;
        let results = stage::run_stage(session_id, index, stage, start_at_ns, agents, &view).await;
        let mut merged = StageMetrics::default();
        let mut stage_meta = StageMeta {
            index,
            name: stage.name.clone(),
            kind: stage.kind.name().to_string(),
            target: stage.target.clone(),
            start_at: rfc3339_ns(start_at_ns),
            start_skew_ms: None,
            agents: Vec::new(),
        };
        let (mut first, mut last, mut first_ops) = (i64::MAX, i64::MIN, Vec::new());
        let mut failure = None;
        for (agent, r) in agents.iter().zip(&results) {
            let off = agent.offset_ns();
            match r {
                Ok(r) => {
                    merged.merge(&r.metrics);
                    first = first.min(r.started_ns - off);
                    last = last.max(r.ended_ns - off);
                    if let Some(f) = r.first_op_ns {
                        first_ops.push(f - off);
                    }
                    stage_meta.agents.push(AgentStageMeta {
                        id: agent.id.clone(),
                        started: rfc3339_ns(r.started_ns - off),
                        first_op: r.first_op_ns.map(|f| rfc3339_ns(f - off)),
                        ended: rfc3339_ns(r.ended_ns - off),
                        records_logged: r.records_logged,
                        log_backpressure_waits: r.log_backpressure_waits,
                        log_backpressure_wait_ms: r.log_backpressure_wait_ns as f64 / 1e6,
                        warmup_ops: r.warmup_ops,
                        retries: r.retries,
                        schedule: r.schedule.clone(),
                        error: None,
                    });
                }
                Err(e) => {
                    stage_meta.agents.push(AgentStageMeta {
                        id: agent.id.clone(),
                        started: String::new(),
                        first_op: None,
                        ended: String::new(),
                        records_logged: 0,
                        log_backpressure_waits: 0,
                        log_backpressure_wait_ms: 0.0,
                        warmup_ops: 0,
                        retries: 0,
                        schedule: None,
                        error: Some(format!("{e:#}")),
                    });
                    failure.get_or_insert_with(|| anyhow::anyhow!("stage `{}`: {e:#}", stage.name));
                }
            }
        }
        if let (Some(min), Some(max)) = (first_ops.iter().min(), first_ops.iter().max()) {
            stage_meta.start_skew_ms = Some((max - min) as f64 / 1e6);
        }
        meta.stages.push(stage_meta);
        let elapsed_s = if last > first {
            (last - first) as f64 / 1e9
        } else {
            0.0
        };
        let mut summary = StageSummary::from_metrics(
            &stage.name,
            stage.kind.name(),
            agents.len() as u32,
            elapsed_s,
            &merged,
        );
        summary.endpoints = sum_endpoints(results.iter().flatten());

        // Gather this stage's op-logs from the agents that finished it.
        let mut oplogs = Vec::new();
        for (agent, r) in agents.iter_mut().zip(&results) {
            if r.is_err() {
                continue;
            }
            match fetch_oplog(agent, session_id, index, &stage.name, dir).await {
                Ok(path) => oplogs.push((path, agent.offset_ns())),
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        outputs.push(StageOutput { summary, oplogs });
        if let Some(e) = failure {
            return (outputs, Err(e));
        }
    }
    (outputs, Ok(()))
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

/// Streams one agent's op-log of one stage into the run directory.
async fn fetch_oplog(
    agent: &mut AgentHandle,
    session_id: &str,
    index: u32,
    stage: &str,
    dir: &RunDir,
) -> anyhow::Result<std::path::PathBuf> {
    use tokio::io::AsyncWriteExt;
    let path = dir.agent_oplog(&agent.id, index, stage)?;
    let mut stream = agent
        .client
        .fetch_op_log(pb::FetchOpLogRequest {
            session_id: session_id.to_string(),
            stage_index: index,
            run_id: String::new(),
        })
        .await
        .with_context(|| format!("fetching op-log of stage `{stage}` from agent {}", agent.id))?
        .into_inner();
    let mut file = tokio::fs::File::create(&path)
        .await
        .with_context(|| format!("cannot create {}", path.display()))?;
    while let Some(chunk) = stream
        .message()
        .await
        .with_context(|| format!("op-log of stage `{stage}` from agent {}", agent.id))?
    {
        file.write_all(&chunk.data).await?;
    }
    file.flush().await?;
    Ok(path)
}

/// Measures end clocks, merges the timeline, writes every result file and
/// ends the agents' sessions. `outcome` is the stages' result.
#[allow(clippy::too_many_arguments)]
async fn finish_run(
    plan: &Plan,
    run_id: &str,
    session_id: &str,
    agents: &mut [AgentHandle],
    dir: &RunDir,
    meta: &mut RunMeta,
    outcome: (Vec<StageOutput>, anyhow::Result<()>),
    quiet: bool,
) -> anyhow::Result<()> {
    let (outputs, result) = outcome;
    for a in agents.iter_mut() {
        a.clock_end = agents::measure_clock(a).await.ok();
    }
    meta.ended_at = rfc3339_ns(now_ns());
    meta.agents = agents
        .iter()
        .map(|a| AgentMeta {
            index: a.index,
            id: a.id.clone(),
            address: a.addr.clone(),
            host: HostMeta {
                version: a.hello.version.clone(),
                hostname: a.hello.hostname.clone(),
                cpus: a.hello.cpus,
                os: a.hello.os.clone(),
            },
            clock_start: a.clock_start,
            clock_end: a.clock_end,
            drift_ppm: a
                .clock_start
                .as_ref()
                .zip(a.clock_end.as_ref())
                .map(|(s, e)| drift_ppm(s, e)),
        })
        .collect();

    dir.write("plan.yaml", &plan.to_yaml())?;
    let inputs: Vec<MergeInput> = outputs
        .iter()
        .flat_map(|o| o.oplogs.iter())
        .map(|(path, offset_ns)| MergeInput {
            path: path.clone(),
            offset_ns: *offset_ns,
        })
        .collect();
    let timeline = dir.path.join("timeline.tsv.zst");
    let tmp = dir.path.join(".merge-tmp");
    std::fs::create_dir_all(&tmp)?;
    let merged = merge_files(&inputs, &timeline, &tmp);
    let _ = std::fs::remove_dir_all(&tmp);
    let merged = merged.with_context(|| "merging op-logs into the timeline")?;
    meta.timeline.file = "timeline.tsv.zst".into();
    meta.timeline.records = merged.records_out;
    meta.timeline.inputs = merged.inputs;
    meta.timeline.errors = merged.errors.clone();

    let stages: Vec<StageSummary> = outputs.into_iter().map(|o| o.summary).collect();
    let summary = RunSummary::new(run_id, &plan.name, stages);
    dir.write("summary.txt", &summary.to_text())?;
    dir.write("summary.json", &summary.to_json())?;
    dir.write("summary.csv", &summary.to_csv())?;
    // Charts from the merged timeline; a report that cannot be made is
    // reported but does not fail a run whose results are written.
    if let Err(e) = crate::report::write_run_report(&dir.path) {
        tracing::warn!("no report.html: {e:#}");
    }
    if !quiet {
        println!("{}", summary.to_text());
    }

    match &result {
        Ok(()) if merged.errors.is_empty() => meta.status = "completed".into(),
        Ok(()) => {
            meta.status = "failed".into();
            meta.error = Some(format!("damaged op-logs: {}", merged.errors.join("; ")));
        }
        Err(e) => {
            meta.status = "failed".into();
            meta.error = Some(format!("{e:#}"));
        }
    }
    dir.write("run.json", &serde_json::to_string_pretty(&meta)?)?;

    for a in agents.iter_mut() {
        let end = a.client.end_session(pb::EndSessionRequest {
            session_id: session_id.to_string(),
        });
        if let Err(e) = tokio::time::timeout(Duration::from_secs(5), end).await {
            tracing::warn!("agent {} did not end its session: {e}", a.id);
        }
    }
    result?;
    if !merged.errors.is_empty() {
        anyhow::bail!("damaged op-logs: {}", merged.errors.join("; "));
    }
    Ok(())
}
