//! `controller collect RUN_DIR`: fetches the op-logs a run could not fetch
//! at the time (the controller died, or an agent was unreachable), from the
//! agents' spools, and finishes the run directory as a run would have:
//! `run.json`, the merged timeline, `summary.txt/json/csv`, `report.html`
//! and, for a run made with `--timeline-format parquet` (or a directory
//! already exported), `timeline.parquet` and `series.parquet`, with
//! `status: collected`.
//!
//! What to fetch comes from the run directory itself: `run.json` names the
//! agents and their addresses (it is written when the run starts and after
//! every stage), `plan.yaml` the stages. A log already in the directory is
//! kept; an agent that never ran a stage has nothing to give, which is not
//! an error. A log copied in part (a `.part` left by a controller that died
//! mid-stage, a `.partial` of an agent lost mid-stage) is continued from
//! its last byte rather than fetched again.
//!
//! A controller that died mid-stage never wrote that stage into
//! `run.json`: collect lists it from the logs it finds, each agent
//! `stopped`, and measures the end clocks the run could not. Clock
//! corrections for the merge come from `run.json` as the run's own do
//! (`run::drift`). The summary is computed from the merged timeline by the
//! same streaming pass as `controller analyze` (exact histograms), so it
//! holds exactly the timeline's ops, and `controller compare` takes the
//! run like any other.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use chorus_common::clock::{drift_ppm, now_ns, parse_rfc3339_ns, rfc3339_ns};
use chorus_common::metrics::StageMetrics;
use chorus_common::metrics::summary::{AgentCoverage, OpSummary, RunSummary, StageSummary};
use chorus_common::op::OpKind;
use chorus_common::oplog::merge::{MergeStats, merge_files};
use chorus_common::plan::{self, Plan};
use chorus_proto::pb;

use crate::EXIT_BAD_INPUT;
use crate::analyze::{self, Analysis, StageAnalysis};
use crate::cli::{CollectArgs, TimelineFormat};
use crate::export;
use crate::run::collector::{PART_SUFFIX, PARTIAL_SUFFIX, with_suffix};
use crate::run::drift::{self, LogToMerge};
use crate::run::results::{
    self, AgentStageMeta, AgentStageStatus, CollectMeta, RunDir, RunMeta, RunStatus, StageMeta,
};
use crate::transport::{self, Security};

pub async fn collect_command(args: CollectArgs) -> ExitCode {
    let sec = match Security::from_args(&args.security) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    match collect(&args.run, &sec).await {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A stage's op-log, or one of its steps', as the run directory names
/// it: the stage's index, the step (0 for the stage whole) and the name
/// (the stage's in the plan, or the step's).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Slot {
    index: u32,
    step: u32,
    name: String,
}

/// The (agent, stage index, step) of every log merged into the timeline.
type InTimeline = BTreeSet<(String, u32, u32)>;

/// The most steps of one stage `collect` asks an agent for, one after
/// another, beyond those `run.json` lists (a bound on a misbehaving agent
/// that never says `NotFound`).
const MAX_PROBED_STEPS: u32 = 1000;

impl Slot {
    /// The slots `run.json` and the plan know: every stage whole, and every
    /// step `run.json` lists.
    fn known(plan: &Plan, meta: &RunMeta) -> Vec<Slot> {
        let mut slots: Vec<Slot> = plan
            .stages
            .iter()
            .enumerate()
            .map(|(i, s)| Slot {
                index: i as u32,
                step: 0,
                name: s.name.clone(),
            })
            .chain(meta.stages.iter().filter(|e| e.step > 0).map(|e| Slot {
                index: e.index,
                step: e.step,
                name: e.name.clone(),
            }))
            .collect();
        slots.sort();
        slots.dedup_by(|a, b| (a.index, a.step) == (b.index, b.step));
        slots
    }

    /// Agent `id`'s log of this slot in the run directory: a file (whole,
    /// or a copy begun) the run left under the slot's prefix, else the
    /// slot's own name.
    fn path(&self, dir: &RunDir, id: &str) -> anyhow::Result<PathBuf> {
        let prefix = results::oplog_prefix(self.index, self.step);
        let agent_dir = dir.agent_dir(id)?;
        if self.step > 0
            && let Ok(entries) = std::fs::read_dir(&agent_dir)
        {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(rest) = name.strip_prefix(&prefix) {
                    let base = [PART_SUFFIX, PARTIAL_SUFFIX]
                        .iter()
                        .find_map(|sfx| rest.strip_suffix(&format!(".{sfx}")))
                        .unwrap_or(rest);
                    return Ok(agent_dir.join(format!("{prefix}{base}")));
                }
            }
        }
        dir.agent_oplog(id, self.index, self.step, &self.name)
    }
}

/// The stages a plan runs in steps whose number `run.json` may not know
/// (the controller died during one): `collect` asks their agents for
/// steps until one has none.
fn stepped(plan: &Plan, meta: &RunMeta) -> Vec<u32> {
    (0..plan.stages.len() as u32)
        .filter(|&i| {
            plan.stages[i as usize].kind == plan::StageKind::Search
                || meta.stages.iter().any(|e| e.index == i && e.step > 0)
        })
        .collect()
}

/// Fetches, recovers, merges and writes; the steps in order. Everything
/// is written even when something could not be collected (an agent
/// unreachable): then the report lists it and the result is an error.
async fn collect(run: &Path, sec: &Security) -> anyhow::Result<String> {
    let mut meta = results::read_meta(run)?;
    let meta_path = run.join("run.json");
    if meta.run_id.is_empty() {
        anyhow::bail!("{}: empty `run_id`", meta_path.display());
    }
    if meta.agents.is_empty() {
        anyhow::bail!("{} names no agents", meta_path.display());
    }
    let plan = plan::load(&run.join("plan.yaml")).map_err(|e| anyhow::anyhow!("{e}"))?;
    let dir = RunDir {
        path: run.to_path_buf(),
    };
    let mut slots = Slot::known(&plan, &meta);
    let stepped = stepped(&plan, &meta);
    let mut done = CollectMeta {
        at: rfc3339_ns(now_ns()),
        // What the run said, not what an earlier `collect` made it.
        status_before: meta
            .collect
            .as_ref()
            .map_or(meta.status, |c| c.status_before),
        ..Default::default()
    };
    let known = slots.clone();
    let names: Vec<String> = plan.stages.iter().map(|s| s.name.clone()).collect();
    for k in 0..meta.agents.len() {
        let wanted = (&known[..], &stepped[..], &names[..]);
        let found = from_agent(&mut meta, k, &dir, wanted, sec, &mut done).await?;
        slots.extend(found);
    }
    slots.sort();
    slots.dedup_by(|a, b| (a.index, a.step) == (b.index, b.step));
    done.recovered_stages = recover_stages(&mut meta, &dir, &plan, &slots)?;
    note_whole_logs(&mut meta, &dir, &slots)?;

    let (merged, in_timeline) = merge_timeline(&mut meta, &dir, &slots)?;
    let analysis = analyze::analyze(run, &analyze::Config::default())
        .context("reading the merged timeline back")?;
    if let Some(d) = &analysis.damaged {
        done.problems.push(format!("timeline: {d}"));
    }
    let summary = summarize(&meta, &plan, &analysis, &in_timeline);
    dir.write("summary.txt", &summary.to_text())?;
    dir.write("summary.json", &summary.to_json())?;
    dir.write("summary.csv", &summary.to_csv())?;
    if let Err(e) = crate::report::write_run_report(run) {
        done.problems.push(format!("report.html: {e:#}"));
    }
    // The Parquet files are copies of the timeline and series: a run made
    // with `--timeline-format parquet` (run.json says so, from its start, so
    // a run whose controller died before writing them gets them), or a
    // directory already exported, has them written again from the timeline
    // just merged, so they never disagree with it.
    let mut parquet = Vec::new();
    if meta.timeline_format == TimelineFormat::Parquet
        || run.join(export::PARQUET_TIMELINE).exists()
        || run.join(export::series::SERIES_PARQUET).exists()
    {
        for (name, result) in export::write_run_parquet(run, &meta) {
            match result {
                Ok(_) => parquet.push(name),
                Err(e) => done.problems.push(format!("{name}: {e}")),
            }
        }
    }
    // A run whose controller died has no end but its last op (which an
    // earlier `collect`, before every log was here, may have put too soon).
    if meta.ended_at.is_empty() || done.status_before == RunStatus::Running {
        meta.ended_at = rfc3339_ns(last_end(&analysis).unwrap_or_else(now_ns));
    }
    meta.status = RunStatus::Collected;
    let problems: Vec<String> = done
        .problems
        .iter()
        .chain(&merged.errors)
        .cloned()
        .collect();
    let mut report = report_text(&done, &merged, &summary);
    if !parquet.is_empty() {
        report.push_str(&format!("\nwritten again: {}\n", parquet.join(", ")));
    }
    meta.collect = Some(done);
    dir.write_meta(&meta)?;
    if !problems.is_empty() {
        anyhow::bail!("{report}\nnot collected:\n  {}", problems.join("\n  "));
    }
    Ok(report)
}

/// What `collect` prints: what it fetched and recovered, then the summary.
fn report_text(done: &CollectMeta, merged: &MergeStats, summary: &RunSummary) -> String {
    let mut report = format!(
        "fetched {} op-log(s); timeline: {} records from {} logs",
        done.fetched.len(),
        merged.records_out,
        merged.inputs
    );
    for f in &done.fetched {
        report.push_str(&format!("\n  fetched {f}"));
    }
    for r in &done.recovered_stages {
        report.push_str(&format!("\n  recovered {r} (the run had not recorded it)"));
    }
    report.push_str(&format!(
        "\nstatus: collected (was {}); summary and report.html written\n{}",
        done.status_before.name(),
        summary.to_text()
    ));
    report
}

/// From agent `k` of `run.json`: the end clock if the run has none, and
/// every log the run directory lacks. An agent that cannot be reached is
/// a problem only if logs were wanted from it.
async fn from_agent(
    meta: &mut RunMeta,
    k: usize,
    dir: &RunDir,
    (slots, stepped, plan_names): (&[Slot], &[u32], &[String]),
    sec: &Security,
    done: &mut CollectMeta,
) -> anyhow::Result<Vec<Slot>> {
    let a = &meta.agents[k];
    let (id, address) = (a.id.clone(), a.address.clone());
    let mut missing = Vec::new();
    for s in slots {
        let path = s.path(dir, &id)?;
        if !path.exists() {
            missing.push((s, path));
        }
    }
    let wants_clock = a.clock_end.is_none();
    if missing.is_empty() && !wants_clock && stepped.is_empty() {
        return Ok(Vec::new());
    }
    let mut client = match transport::connect(&address, sec).await {
        Ok(c) => c,
        Err(e) if !missing.is_empty() => {
            done.problems
                .push(format!("agent {id} at {address}: {e:#}"));
            return Ok(Vec::new());
        }
        // Only its end clock (or steps it may not have) was wanted: the
        // correction stays constant.
        Err(_) => return Ok(Vec::new()),
    };
    if wants_clock && let Ok(c) = crate::run::agents::measure_clock_of(&mut client, &id).await {
        let a = &mut meta.agents[k];
        a.clock_end = Some(c);
        a.drift_ppm = a.clock_start.as_ref().map(|s| drift_ppm(s, &c));
        done.clocks_measured.push(id.clone());
    }
    let run_id = meta.run_id.clone();
    for (s, path) in missing {
        fetch_slot(&mut client, &run_id, &id, (s, &path), done).await?;
    }
    // Steps past those `run.json` lists, until the agent has none.
    let mut found = Vec::new();
    for &index in stepped {
        let last = slots
            .iter()
            .filter(|s| s.index == index)
            .map(|s| s.step)
            .max()
            .unwrap_or(0);
        for step in last + 1..=last + MAX_PROBED_STEPS {
            // Named after its stage until its log says the step's name.
            let mut slot = Slot {
                index,
                step,
                name: plan_names[index as usize].clone(),
            };
            let path = slot.path(dir, &id)?;
            if !path.exists()
                && !fetch_slot(&mut client, &run_id, &id, (&slot, &path), done).await?
            {
                break;
            }
            slot.name = step_name(&path).unwrap_or(slot.name);
            found.push(slot);
        }
    }
    Ok(found)
}

/// A step's name as its log says it (the `stage` column of its first
/// record): the run never wrote it down.
fn step_name(path: &Path) -> Option<String> {
    let mut reader = chorus_common::oplog::reader::OpLogReader::open(path).ok()?;
    let first = reader.next()?.ok()?;
    (!first.stage.is_empty()).then_some(first.stage)
}

/// Fetches `slot`'s log from the agent into `path` (the slot's path in
/// the run directory), noting what happened in `done`; false when the
/// agent has none.
async fn fetch_slot(
    client: &mut transport::Client,
    run_id: &str,
    id: &str,
    (slot, path): (&Slot, &Path),
    done: &mut CollectMeta,
) -> anyhow::Result<bool> {
    let what = drift::entry_name(slot.index, slot.step, &slot.name);
    match fetch(client, run_id, (slot.index, slot.step), path).await {
        Ok(Some(0)) => done.fetched.push(format!("{id}: {what}")),
        Ok(Some(from)) => done
            .fetched
            .push(format!("{id}: {what} (continued from byte {from})")),
        Ok(None) => return Ok(false),
        Err(e) => done.problems.push(format!("agent {id} {what}: {e:#}")),
    }
    Ok(true)
}

/// Lists in `stages[]` the plan's stages the run never recorded but whose
/// logs are now here (the controller died during them): each agent with a
/// log `stopped`, its clock the last one the run measured for it (the one
/// taken just before the stage was never written down; the correction
/// runs from it to the end clock, across the stage). Returns their names.
fn recover_stages(
    meta: &mut RunMeta,
    dir: &RunDir,
    plan: &Plan,
    slots: &[Slot],
) -> anyhow::Result<Vec<String>> {
    let mut recovered = Vec::new();
    for slot in slots {
        let (index, step) = (slot.index, slot.step);
        if meta
            .stages
            .iter()
            .any(|s| s.index == index && s.step == step)
        {
            continue;
        }
        let Some(stage) = plan.stages.get(index as usize) else {
            continue;
        };
        let mut agents = Vec::new();
        for a in &meta.agents {
            let path = slot.path(dir, &a.id)?;
            let Ok(file) = std::fs::metadata(&path) else {
                continue;
            };
            let last = meta
                .stages
                .iter()
                .rev()
                .find_map(|s| s.agents.iter().find(|m| m.id == a.id)?.clock)
                .or(a.clock_start);
            agents.push(AgentStageMeta {
                id: a.id.clone(),
                status: AgentStageStatus::Stopped,
                clock: last,
                oplog: Some(relative(dir, &path)),
                oplog_bytes_collected: file.len(),
                ..Default::default()
            });
        }
        if agents.is_empty() {
            continue;
        }
        recovered.push(drift::entry_name(index, step, &slot.name));
        meta.stages.push(StageMeta {
            index,
            step,
            name: slot.name.clone(),
            kind: stage.kind.name().to_string(),
            target: stage.target.clone(),
            agents,
            ..Default::default()
        });
    }
    // Entries in run order, as a run writes them (the clock corrections
    // read them in that order).
    meta.stages.sort_by_key(|s| (s.index, s.step));
    Ok(recovered)
}

/// Points each recorded stage's entries at the whole logs now here (a
/// `.partial` continued from the agent's spool), with their sizes.
fn note_whole_logs(meta: &mut RunMeta, dir: &RunDir, slots: &[Slot]) -> anyhow::Result<()> {
    for entry in meta.stages.iter_mut() {
        let Some(slot) = slots
            .iter()
            .find(|s| s.index == entry.index && s.step == entry.step)
        else {
            continue;
        };
        for m in &mut entry.agents {
            let path = slot.path(dir, &m.id)?;
            if let Ok(file) = std::fs::metadata(&path) {
                m.oplog = Some(relative(dir, &path));
                m.oplog_bytes_collected = file.len();
            }
        }
    }
    Ok(())
}

/// `path` relative to the run directory, as `run.json` names logs.
fn relative(dir: &RunDir, path: &Path) -> String {
    path.strip_prefix(&dir.path)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Merges every whole log in the directory into `timeline.tsv.zst`, each
/// with its correction from `run.json`; notes the result in `meta`.
/// Returns the merge's figures (a log left out for want of a clock is in
/// its errors) and the (agent, stage index) of each log merged.
fn merge_timeline(
    meta: &mut RunMeta,
    dir: &RunDir,
    slots: &[Slot],
) -> anyhow::Result<(MergeStats, InTimeline)> {
    let mut logs = Vec::new();
    for a in &meta.agents {
        for s in slots {
            let path = s.path(dir, &a.id)?;
            if path.exists() {
                logs.push(LogToMerge {
                    path,
                    agent: a.id.clone(),
                    index: s.index,
                    step: s.step,
                });
            }
        }
    }
    let keys: Vec<(String, u32, u32, PathBuf)> = logs
        .iter()
        .map(|l| (l.agent.clone(), l.index, l.step, l.path.clone()))
        .collect();
    let (inputs, unmerged) = drift::merge_inputs(meta, logs);
    let in_timeline = keys
        .into_iter()
        .filter(|(_, _, _, p)| inputs.iter().any(|i| i.path == *p))
        .map(|(id, index, step, _)| (id, index, step))
        .collect();
    let timeline = dir.path.join("timeline.tsv.zst");
    let tmp = dir.path.join(".merge-tmp");
    std::fs::create_dir_all(&tmp)?;
    let merged = merge_files(&inputs, &timeline, &tmp);
    let _ = std::fs::remove_dir_all(&tmp);
    let mut merged = merged.context("merging op-logs into the timeline")?;
    merged.errors.extend(unmerged);
    meta.timeline.file = "timeline.tsv.zst".into();
    meta.timeline.records = merged.records_out;
    meta.timeline.inputs = merged.inputs;
    meta.timeline.errors = merged.errors.clone();
    Ok((merged, in_timeline))
}

/// The run's summary from the timeline's analysis: one stage per entry of
/// `stages[]` that ran on any agent (in order, a stage with no ops too,
/// as a run writes it), then any stage only the timeline names.
fn summarize(
    meta: &RunMeta,
    plan: &Plan,
    analysis: &Analysis,
    in_timeline: &InTimeline,
) -> RunSummary {
    let kind_of = |name: &str| {
        plan.stages
            .iter()
            .find(|s| s.name == name)
            .map_or(String::new(), |s| s.kind.name().to_string())
    };
    let mut seen = BTreeSet::new();
    let mut stages = Vec::new();
    for entry in meta.stages.iter().filter(|s| !s.agents.is_empty()) {
        if !seen.insert(entry.name.as_str()) {
            continue;
        }
        let found = analysis.stages.iter().find(|s| s.name == entry.name);
        let mut s = stage_summary(&entry.name, &entry.kind, found);
        s.coverage = coverage(entry, in_timeline);
        // The run's verdicts on its clients, where it wrote them.
        s.warnings = entry
            .agents
            .iter()
            .filter_map(|a| Some(a.client.as_ref()?.warnings(&a.id, &entry.name)))
            .flatten()
            .collect();
        stages.push(s);
    }
    for s in &analysis.stages {
        if !seen.contains(s.name.as_str()) {
            stages.push(stage_summary(&s.name, &kind_of(&s.name), Some(s)));
        }
    }
    RunSummary::new(&meta.run_id, &meta.plan, stages)
}

/// A stage's summary from its analysis: the same rows (`analyze` keeps
/// the summary's histogram settings, so the percentiles are the ones a run
/// computes from agents' histograms); an empty one for no ops.
fn stage_summary(name: &str, kind: &str, found: Option<&StageAnalysis>) -> StageSummary {
    let Some(a) = found else {
        return StageSummary::from_metrics(name, kind, 0, 0.0, &StageMetrics::default());
    };
    // Part rows (GET_PART, PUT_PART) are the timeline's detail: a run's
    // summary counts ops, from the agents' histograms, which parts are not in.
    let is_part = |key: &str| key.parse::<OpKind>().is_ok_and(OpKind::is_part);
    let ops = a
        .ops
        .iter()
        .filter(|r| !is_part(&r.key))
        .map(|r| OpSummary {
            op: r.key.clone(),
            count: r.count,
            errors: r.errors,
            bytes: r.bytes,
            ops_per_s: r.ops_per_s,
            mib_per_s: r.mib_per_s,
            latency_us: r.latency_us,
            objects: r.objects,
            objects_per_s: r.objects_per_s,
        })
        .collect();
    StageSummary {
        name: name.to_string(),
        kind: kind.to_string(),
        agents: a.agents as u32,
        elapsed_s: a.elapsed_s,
        ops,
        endpoints: Vec::new(),
        coverage: Vec::new(),
        warnings: Vec::new(),
    }
}

/// Each agent's part in a stage as `run.json` has it, in seconds from the
/// stage's start (0 where a time is unknown, as for a recovered stage),
/// and whether its log is in the timeline (and so in these numbers).
fn coverage(entry: &StageMeta, in_timeline: &InTimeline) -> Vec<AgentCoverage> {
    let start = parse_rfc3339_ns(&entry.start_at);
    let secs = |t: &str| match (start, parse_rfc3339_ns(t)) {
        (Some(s), Some(t)) => (t - s) as f64 / 1e9,
        _ => 0.0,
    };
    entry
        .agents
        .iter()
        .map(|m| AgentCoverage {
            agent: m.id.clone(),
            status: m.status.name().to_string(),
            from_s: secs(&m.started),
            to_s: secs(&m.ended),
            in_summary: in_timeline.contains(&(m.id.clone(), entry.index, entry.step)),
        })
        .collect()
}

/// The last op's end in the timeline: when a run whose controller died
/// ended.
fn last_end(analysis: &Analysis) -> Option<i64> {
    analysis
        .stages
        .iter()
        .filter_map(|s| parse_rfc3339_ns(&s.last_end))
        .max()
}

/// Fetches one spooled log into `path`, continuing a copy already in the
/// run directory from its end. `Ok(None)`: the agent has none for that
/// stage (it never ran it); `Ok(Some(n))`: done, the first `n` bytes were
/// already here.
async fn fetch(
    client: &mut transport::Client,
    run_id: &str,
    (index, step): (u32, u32),
    path: &Path,
) -> anyhow::Result<Option<u64>> {
    // A `.part` (copy interrupted) before a `.partial` (agent lost).
    let part = [PART_SUFFIX, PARTIAL_SUFFIX]
        .iter()
        .map(|s| with_suffix(path, s))
        .find(|p| p.exists())
        .unwrap_or_else(|| with_suffix(path, PART_SUFFIX));
    let held = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    let mut request = pb::FetchOpLogRequest {
        session_id: String::new(),
        stage_index: index,
        run_id: run_id.to_string(),
        offset: held,
        step,
    };
    let mut from = held;
    let mut stream = match client.fetch_op_log(request.clone()).await {
        Ok(r) => r.into_inner(),
        Err(s) if s.code() == tonic::Code::NotFound => return Ok(None),
        // Our copy is longer than the agent's log: not a prefix of it, so
        // the whole log is fetched again.
        Err(s) if s.code() == tonic::Code::OutOfRange && held > 0 => {
            std::fs::remove_file(&part)
                .with_context(|| format!("cannot remove {}", part.display()))?;
            request.offset = 0;
            from = 0;
            client
                .fetch_op_log(request)
                .await
                .map_err(|s| anyhow::anyhow!(transport::status_text(&s)))?
                .into_inner()
        }
        Err(s) => return Err(anyhow::anyhow!(transport::status_text(&s))),
    };
    let what = match step {
        0 => format!("spooled op-log of stage {index}"),
        _ => format!("spooled op-log of stage {index} step {step}"),
    };
    crate::run::results::save_oplog(&mut stream, &part, path, &what).await?;
    Ok(Some(from))
}
