//! `controller run`: load the plan, find or start agents, measure their
//! clocks, run each stage on all of them at once, then gather op-logs,
//! merge the timeline and write the results directory.
//!
//! Whatever happens after the first stage starts, what was measured is
//! written: a failed stage, a lost agent or Ctrl-C still leaves the
//! summaries, logs and timeline of what ran, with `run.json` saying what
//! happened.
//!
//! - `agents.rs`: connect, embed, measure clocks.
//! - `health.rs`: heartbeats to every agent for the whole session.
//! - `sequence.rs`: the stages in order, each driven by its kind as one or
//!   more steps; departed agents and the lost-agent policy.
//! - `handover.rs`: what the agents still in take over when others leave
//!   mid-stage, and what the summary says was not done.
//! - `kinds/`: one module per stage kind: which steps, when to stop early,
//!   the stage's verdict.
//! - `step.rs`: one step on all live agents: clocks, start, watch, collect,
//!   judge.
//! - `stage.rs`: the agents' streams of one step, loss detection, stop
//!   signals.
//! - `collector.rs`: op-logs copied while a stage runs, completed at its end.
//! - `series.rs`: `series.csv`, the per-second series.
//! - `progress.rs`: the live view.
//! - `results.rs`: the run directory and `run.json`.
//! - `trace.rs`: a replay trace shipped to every agent (`ship_trace`).

pub(crate) mod agents;
pub(crate) mod collector;
pub(crate) mod drift;
mod handover;
mod health;
pub(crate) mod kinds;
mod progress;
pub(crate) mod results;
mod sequence;
pub(crate) mod series;
mod stage;
mod step;
#[cfg(test)]
mod test_run;
pub(crate) mod trace;

use std::process::ExitCode;

use anyhow::Context;
use chorus_common::clock::{drift_ppm, now_ns, rfc3339_ns};
use chorus_common::metrics::summary::{RunSummary, StageSummary};
use chorus_common::oplog::merge::merge_files;
use chorus_common::plan::{self, Overrides, Plan};

use crate::EXIT_BAD_INPUT;
use crate::cli::RunArgs;
use agents::AgentHandle;
use kinds::KindPicker;
use results::{AgentMeta, HostMeta, RunDir, RunMeta, RunStatus};
use sequence::{RunControl, StageOutput, run_stages};
use stage::{StopReason, StopSignal};
use std::sync::Arc;

/// Why a run did not complete.
enum RunError {
    /// Bad input: nothing ran, no results directory (exit 2).
    Input(String),
    /// Something failed (exit 1); the run directory holds what was measured.
    Failed(anyhow::Error),
    /// Ctrl-C (exit 130): the agents stopped, what was measured is written.
    Interrupted(std::path::PathBuf),
}

/// First Ctrl-C: stop the running stage on every agent and write what was
/// measured. A second one exits at once.
fn watch_ctrl_c(stop: Arc<StopSignal>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_err() {
            return;
        }
        eprintln!(
            "interrupted: stopping the agents and writing results (Ctrl-C again to quit now)"
        );
        stop.raise(StopReason::Interrupted);
        if tokio::signal::ctrl_c().await.is_ok() {
            std::process::exit(130);
        }
    })
}

pub async fn run_command(args: RunArgs) -> ExitCode {
    let metrics = Arc::new(chorus_common::metrics::prometheus::Metrics::new());
    // Bound before anything runs: an address in use is bad input, not a
    // run without metrics.
    let server = match serve_metrics(&args, &metrics).await {
        Ok(s) => s,
        Err(msg) => {
            eprintln!("error: {msg}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let outcome = run(args, kinds::for_stage, metrics.clone()).await;
    metrics.run_finished();
    let code = report_outcome(outcome);
    if let Some((server, linger)) = server {
        linger_metrics(&server, linger).await;
    }
    code
}

/// The metrics server of `--metrics-listen` and its linger, or `None`.
async fn serve_metrics(
    args: &RunArgs,
    metrics: &Arc<chorus_common::metrics::prometheus::Metrics>,
) -> Result<
    Option<(
        chorus_common::metrics::prometheus::http::MetricsServer,
        std::time::Duration,
    )>,
    String,
> {
    let Some(addr) = &args.metrics_listen else {
        return Ok(None);
    };
    let linger = plan::parse_duration(&args.metrics_linger)
        .map_err(|e| format!("--metrics-linger {}: {e}", args.metrics_linger))?;
    let server =
        chorus_common::metrics::prometheus::http::MetricsServer::bind(addr, metrics.clone())
            .await?;
    eprintln!(
        "metrics: http://{}/metrics (for {} s after the run)",
        server.local_addr(),
        linger.as_secs_f64()
    );
    Ok(Some((server, linger)))
}

/// Keeps `/metrics` up with the final figures for `linger`, so the next
/// scrape sees them; Ctrl-C ends it at once.
async fn linger_metrics(
    server: &chorus_common::metrics::prometheus::http::MetricsServer,
    linger: std::time::Duration,
) {
    if linger.is_zero() {
        return;
    }
    eprintln!(
        "metrics: serving final figures on http://{}/metrics for {} s (Ctrl-C to stop)",
        server.local_addr(),
        linger.as_secs_f64()
    );
    tokio::select! {
        _ = tokio::time::sleep(linger) => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// What the command prints and exits with.
fn report_outcome(outcome: Result<std::path::PathBuf, RunError>) -> ExitCode {
    match outcome {
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
        Err(RunError::Interrupted(dir)) => {
            eprintln!("interrupted; results so far: {}", dir.display());
            ExitCode::from(130)
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
    kinds::replay::check_traces(&plan, &args.plan).map_err(RunError::Input)?;
    Ok(plan)
}

/// The plan's checks that need the agent count (a training batch within a
/// rank's shard, a checkpoint that splits over the ranks), located in the
/// plan file: bad input, before anything runs.
fn check_ranks(plan: &Plan, file: &std::path::Path, agents: usize) -> Result<(), RunError> {
    plan.check_ranks(agents as u32)
        .map_err(|e| located(file, &e))
}

/// An agent as the plan's `overrides` pick it: the same id, host name and
/// index the agent applies them with.
fn identity(a: &AgentHandle) -> plan::AgentIdentity<'_> {
    plan::AgentIdentity {
        id: &a.id,
        host: &a.hello.hostname,
        index: a.index,
    }
}

/// Every `overrides` entry picks one of the run's agents, or the plan is
/// bad input (located), before anything runs.
fn check_overrides(
    plan: &Plan,
    file: &std::path::Path,
    agents: &[AgentHandle],
) -> Result<(), RunError> {
    let who: Vec<plan::AgentIdentity<'_>> = agents.iter().map(identity).collect();
    plan.check_overrides(&who).map_err(|e| located(file, &e))
}

/// A check made with the agents, located in the plan file.
fn located(file: &std::path::Path, e: &plan::AgentsCheckError) -> RunError {
    RunError::Input(plan::locate_in_file(file, e))
}

/// The agents of a run, connected, and how they are reached.
struct Joined {
    agents: Vec<AgentHandle>,
    /// Embedded agents live as long as this.
    _embedded: Option<agents::EmbeddedAgents>,
    security: crate::transport::Security,
    /// Variables forwarded to the agents (values never written anywhere).
    forwarded: std::collections::BTreeMap<String, String>,
}

/// Finds the run's agents (or starts embedded ones), and connects to each.
async fn join_agents(args: &RunArgs, plan: &Plan) -> Result<Joined, RunError> {
    let found = crate::discovery::find_agents(&args.discovery, &plan.agents)
        .await
        .map_err(|e| match e {
            crate::discovery::DiscoveryError::Input(m) => RunError::Input(m),
            crate::discovery::DiscoveryError::Failed(e) => RunError::Failed(e),
        })?;
    let from_etcd = found.source.starts_with("etcd");
    let addrs = found.addrs;
    if addrs.is_empty() && args.embedded == 0 {
        return Err(RunError::Input(
            "--embedded must be at least 1 when no agents are named".into(),
        ));
    }
    // Embedded agents live until this function returns.
    let (addrs, embedded) = if addrs.is_empty() {
        let (a, e) = agents::start_embedded(args.embedded)
            .await
            .map_err(RunError::Failed)?;
        (a, Some(e))
    } else {
        (addrs, None)
    };
    let security = crate::transport::Security::for_run(&args.security, embedded.is_none())
        .map_err(RunError::Input)?
        .patient(plan.control.agent_timeout);
    let forwarded = crate::transport::forwarded_env(&args.security.forward_env, &security)
        .map_err(|e| RunError::Input(format!("{e:#}")))?;
    // etcd lists an agent until its lease runs out: one that died a moment
    // ago is not live, and is skipped rather than failing the run.
    let addrs = if from_etcd {
        agents::reachable(addrs, &security)
            .await
            .map_err(RunError::Failed)?
    } else {
        addrs
    };
    let agents = agents::connect(&addrs, &security)
        .await
        .map_err(RunError::Failed)?;

    Ok(Joined {
        agents,
        _embedded: embedded,
        security,
        forwarded,
    })
}

/// `run.json` as a run starts.
fn start_meta(
    args: &RunArgs,
    plan: &Plan,
    run_id: &str,
    started_ns: i64,
    security: &crate::transport::Security,
    forwarded: &std::collections::BTreeMap<String, String>,
    agents: &[AgentHandle],
) -> RunMeta {
    RunMeta {
        run_id: run_id.to_string(),
        plan: plan.name.clone(),
        plan_file: args.plan.display().to_string(),
        controller: HostMeta {
            version: env!("CARGO_PKG_VERSION").to_string(),
            hostname: chorus_agent::host::hostname(),
            cpus: chorus_agent::host::cpus(),
            os: chorus_agent::host::os(),
        },
        started_at: rfc3339_ns(started_ns),
        on_agent_loss: plan.control.on_agent_loss.name().to_string(),
        transport: security.describe().to_string(),
        forwarded_env: forwarded.keys().cloned().collect(),
        status: RunStatus::Running,
        agents: agent_meta(agents, plan),
        version_warnings: agents::version_warnings(agents),
        timeline_format: args.timeline_format,
        ..Default::default()
    }
}

/// The whole run, each stage driven by the kind `pick` gives it.
async fn run(
    args: RunArgs,
    pick: KindPicker,
    metrics: Arc<chorus_common::metrics::prometheus::Metrics>,
) -> Result<std::path::PathBuf, RunError> {
    let plan = load_plan(&args)?;
    let joined = join_agents(&args, &plan).await?;
    check_ranks(&plan, &args.plan, joined.agents.len())?;
    check_overrides(&plan, &args.plan, &joined.agents)?;
    let (security, forwarded) = (&joined.security, &joined.forwarded);
    let mut agents = joined.agents;
    let started_ns = now_ns();
    let run_id = results::run_id(started_ns, &plan.name);
    let session_id = format!(
        "{run_id}-{:x}",
        std::process::id() as u64 ^ started_ns as u64
    );
    let plan_yaml = plan.to_yaml();
    let start = agents::SessionStart {
        session_id: &session_id,
        run_id: &run_id,
        plan_yaml: &plan_yaml,
        env: forwarded,
        controller_timeout: plan.control.controller_timeout,
    };
    agents::open_sessions(&mut agents, &start)
        .await
        .map_err(|e| {
            // An agent that refused the plan as invalid (an existing
            // key space's prefix that holds nothing) is bad input, as a
            // plan the controller refuses is: nothing ran.
            match e.downcast_ref::<crate::transport::CallError>() {
                Some(crate::transport::CallError::Refused { status, .. })
                    if status.code() == tonic::Code::InvalidArgument =>
                {
                    RunError::Input(format!("{e:#}"))
                }
                _ => RunError::Failed(e),
            }
        })?;
    // Replay traces go to every agent before any stage: agents on other
    // hosts have no other way to read them.
    let mut shipped = std::collections::BTreeSet::new();
    for r in plan.stages.iter().filter_map(|s| s.replay.as_ref()) {
        if shipped.insert(r.trace.clone()) {
            trace::ship_trace(&agents, &session_id, std::path::Path::new(&r.trace))
                .await
                .map_err(RunError::Failed)?;
        }
    }

    // From here on the run has started: results are written whatever happens.
    let dir = RunDir::create(&args.results, &run_id).map_err(RunError::Failed)?;
    let mut meta = start_meta(
        &args, &plan, &run_id, started_ns, security, forwarded, &agents,
    );
    // Written now and after every stage, so a controller that dies mid-run
    // leaves enough for `controller collect` to fetch the agents' logs.
    dir.write_meta(&meta).map_err(RunError::Failed)?;
    dir.write("plan.yaml", &plan.to_yaml())
        .map_err(RunError::Failed)?;
    // Heartbeats run from here to the end of the session, stages or not.
    let beats = health::start(
        agents
            .iter()
            .map(|a| (a.id.clone(), a.client.clone()))
            .collect(),
        &session_id,
        plan.control.agent_timeout,
    );
    let series = series::Series::create(&dir.path.join("series.csv")).map_err(RunError::Failed)?;
    let rc = RunControl {
        session_id: session_id.clone(),
        stop: Arc::new(StopSignal::default()),
        health: beats.health.clone(),
        series: Arc::new(tokio::sync::Mutex::new(series)),
        metrics,
    };
    let interrupt = watch_ctrl_c(rc.stop.clone());
    let outcome = run_stages(&plan, &rc, &mut agents, &dir, &mut meta, args.quiet, pick).await;
    interrupt.abort();
    if let Err(e) = rc.series.lock().await.end_stage() {
        tracing::warn!("series.csv: {e:#}");
    }
    let interrupted = rc.stop.reason() == Some(StopReason::Interrupted);
    let gone: Vec<Option<health::Lost>> = (0..agents.len()).map(|k| rc.health.lost(k)).collect();
    drop(beats);
    let finish = finish_run(
        &plan,
        &run_id,
        &session_id,
        &mut agents,
        &gone,
        &dir,
        &mut meta,
        outcome,
        args.quiet,
    )
    .await;
    match finish {
        Ok(()) => Ok(dir.path),
        Err(_) if interrupted => Err(RunError::Interrupted(dir.path)),
        Err(e) => Err(RunError::Failed(
            e.context(format!("results so far are in {}", dir.path.display())),
        )),
    }
}

/// Measures end clocks, merges the timeline, writes every result file and
/// ends the agents' sessions. `outcome` is the stages' result.
#[allow(clippy::too_many_arguments)]
async fn finish_run(
    plan: &Plan,
    run_id: &str,
    session_id: &str,
    agents: &mut [AgentHandle],
    gone: &[Option<health::Lost>],
    dir: &RunDir,
    meta: &mut RunMeta,
    outcome: (Vec<StageOutput>, anyhow::Result<()>),
    quiet: bool,
) -> anyhow::Result<()> {
    let (outputs, result) = outcome;
    // Agents that left are not measured: a lost one would time out, a
    // stopped one is on its way out. Measured as at start-up, a bounded
    // number at a time: one after another, each agent added its 32
    // round trips to the end of the run.
    {
        use futures::StreamExt;
        let ends = agents
            .iter_mut()
            .zip(gone)
            .filter(|(_, g)| g.is_none())
            .map(|(a, _)| async move { a.clock_end = agents::measure_clock(a).await.ok() });
        futures::stream::iter(ends)
            .buffer_unordered(agents::STARTUP_FANOUT)
            .collect::<Vec<()>>()
            .await;
    }
    meta.ended_at = rfc3339_ns(now_ns());
    meta.agents = agent_meta(agents, plan);

    dir.write("plan.yaml", &plan.to_yaml())?;
    let merged = merge_timeline(&outputs, dir, meta)?;
    if meta.timeline_format == crate::cli::TimelineFormat::Parquet {
        // The TSV and CSV are the run's record (analyze, report and collect
        // read them), so a Parquet copy that cannot be written is reported,
        // not a failed run; `controller export` can write it again later.
        for (name, result) in crate::export::write_run_parquet(&dir.path, meta) {
            if let Err(e) = result {
                tracing::warn!("no {name}: {e}");
            }
        }
    }

    let stages: Vec<StageSummary> = outputs.into_iter().map(|o| o.summary).collect();
    let summary = RunSummary::new(run_id, &plan.name, stages);
    let mut text = summary.to_text();
    // The stages' answers close the summary: the line a user looks for.
    for v in &meta.verdicts {
        text.push_str(&format!("\n{}\n", v.text));
        if let Some(t) = v.table() {
            text.push_str(&t);
        }
    }
    dir.write("summary.txt", &text)?;
    dir.write("summary.json", &summary.to_json())?;
    dir.write("summary.csv", &summary.to_csv())?;
    // Charts from the merged timeline; a report that cannot be made is
    // reported but does not fail a run whose results are written.
    if let Err(e) = crate::report::write_run_report(&dir.path) {
        tracing::warn!("no report.html: {e:#}");
    }
    if !quiet {
        println!("{text}");
    }

    match &result {
        Ok(()) if merged.errors.is_empty() => meta.status = RunStatus::Completed,
        Ok(()) => {
            meta.status = RunStatus::Failed;
            meta.error = Some(format!("damaged op-logs: {}", merged.errors.join("; ")));
        }
        Err(e) => {
            meta.status = match e.downcast_ref::<StopReason>() {
                Some(StopReason::Interrupted) => RunStatus::Interrupted,
                _ => RunStatus::Failed,
            };
            meta.error = Some(format!("{e:#}"));
        }
    }
    dir.write_meta(meta)?;

    // A stopped agent waits for this (or its grace) before it exits. At
    // once (bounded), as at start-up: one after another, each agent's
    // round trip and spool removal added to the end of the run.
    let ended = gone.iter().map(|g| g.as_ref().is_none_or(|l| l.stopped));
    let to_end = agents
        .iter_mut()
        .zip(ended)
        .filter(|(_, e)| *e)
        .map(|(a, _)| a);
    agents::end_sessions(to_end, session_id).await;
    result?;
    if !merged.errors.is_empty() {
        anyhow::bail!("damaged op-logs: {}", merged.errors.join("; "));
    }
    Ok(())
}

/// Merges the gathered op-logs into `timeline.tsv.zst` and notes it in
/// `meta`; logs that could not be merged are in the result's `errors`.
fn merge_timeline(
    outputs: &[StageOutput],
    dir: &RunDir,
    meta: &mut RunMeta,
) -> anyhow::Result<chorus_common::oplog::merge::MergeStats> {
    // Corrections come from run.json as written, as `controller collect`
    // takes them, so merging again later gives the same timeline.
    let logs = outputs.iter().flat_map(|o| {
        o.oplogs.iter().map(|(path, id)| drift::LogToMerge {
            path: path.clone(),
            agent: id.clone(),
            index: o.index,
            step: o.step,
        })
    });
    let (inputs, unmerged) = drift::merge_inputs(meta, logs);
    let timeline = dir.path.join("timeline.tsv.zst");
    let tmp = dir.path.join(".merge-tmp");
    std::fs::create_dir_all(&tmp)?;
    let merged = merge_files(&inputs, &timeline, &tmp);
    let _ = std::fs::remove_dir_all(&tmp);
    let mut merged = merged.with_context(|| "merging op-logs into the timeline")?;
    merged.errors.extend(unmerged);
    meta.timeline.file = "timeline.tsv.zst".into();
    meta.timeline.records = merged.records_out;
    meta.timeline.inputs = merged.inputs;
    meta.timeline.errors = merged.errors.clone();
    Ok(merged)
}

/// What `run.json` says of each agent.
fn agent_meta(agents: &[AgentHandle], plan: &Plan) -> Vec<AgentMeta> {
    agents
        .iter()
        .map(|a| AgentMeta {
            overrides: plan.overrides_for(&identity(a)),
            index: a.index,
            id: a.id.clone(),
            address: a.addr.clone(),
            authenticated: a.hello.authenticated,
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
        .collect()
}
