//! `controller collect RUN_DIR`: fetches the op-logs a run could not fetch
//! at the time (the controller died, or an agent was unreachable), from the
//! agents' spools, and merges the run's timeline again.
//!
//! What to fetch comes from the run directory itself: `run.json` names the
//! agents and their addresses (it is written when the run starts and after
//! every stage), `plan.yaml` the stages. A log already in the directory is
//! kept; an agent that never ran a stage has nothing to give, which is not
//! an error. A log copied in part (a `.part` left by a controller that died
//! mid-stage, a `.partial` of an agent lost mid-stage) is continued from
//! its last byte rather than fetched again. Clock corrections for the
//! merge come from `run.json` as the run's own do (`run::drift`).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use chorus_common::oplog::merge::{MergeInput, merge_files};
use chorus_common::plan;
use chorus_proto::pb;
use serde_json::Value;

use crate::EXIT_BAD_INPUT;
use crate::cli::CollectArgs;
use crate::run::collector::{PART_SUFFIX, PARTIAL_SUFFIX, with_suffix};
use crate::run::results::RunDir;
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

/// One agent as `run.json` names it.
struct AgentEntry {
    id: String,
    address: String,
}

async fn collect(run: &Path, sec: &Security) -> anyhow::Result<String> {
    let meta_path = run.join("run.json");
    let text = std::fs::read_to_string(&meta_path)
        .with_context(|| format!("cannot read {}", meta_path.display()))?;
    let mut meta: Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", meta_path.display()))?;
    let run_id = meta["run_id"]
        .as_str()
        .with_context(|| format!("{}: no `run_id`", meta_path.display()))?
        .to_string();
    let plan = plan::load(&run.join("plan.yaml")).map_err(|e| anyhow::anyhow!("{e}"))?;
    let agents: Vec<AgentEntry> = meta["agents"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .filter_map(|a| {
            Some(AgentEntry {
                id: a["id"].as_str()?.to_string(),
                address: a["address"].as_str()?.to_string(),
            })
        })
        .collect();
    if agents.is_empty() {
        anyhow::bail!("{} names no agents", meta_path.display());
    }
    let dir = RunDir {
        path: run.to_path_buf(),
    };
    let mut fetched = Vec::new();
    let mut problems = Vec::new();
    for a in &agents {
        let missing: Vec<(u32, &str)> = plan
            .stages
            .iter()
            .enumerate()
            .map(|(i, s)| (i as u32, s.name.as_str()))
            .filter(|(i, name)| {
                dir.agent_oplog(&a.id, *i, name)
                    .map(|p| !p.exists())
                    .unwrap_or(false)
            })
            .collect();
        if missing.is_empty() {
            continue;
        }
        let mut client = match transport::connect(&a.address, sec).await {
            Ok(c) => c,
            Err(e) => {
                problems.push(format!("agent {} at {}: {e:#}", a.id, a.address));
                continue;
            }
        };
        for (index, name) in missing {
            let path = dir.agent_oplog(&a.id, index, name)?;
            match fetch(&mut client, &run_id, index, &path).await {
                Ok(Some(0)) => fetched.push(format!("{}: stage {index} `{name}`", a.id)),
                Ok(Some(from)) => fetched.push(format!(
                    "{}: stage {index} `{name}` (continued from byte {from})",
                    a.id
                )),
                Ok(None) => {}
                Err(e) => problems.push(format!("agent {} stage {index} `{name}`: {e:#}", a.id)),
            }
        }
    }

    // Every log now in the directory, each with its stage's offset.
    let mut inputs = Vec::new();
    for a in &agents {
        for (i, s) in plan.stages.iter().enumerate() {
            let path = dir.agent_oplog(&a.id, i as u32, &s.name)?;
            if path.exists() {
                let clock = crate::run::drift::stage_correction(&meta, &a.id, i as u32);
                inputs.push(MergeInput::with_clock(path, clock));
            }
        }
    }
    let timeline = run.join("timeline.tsv.zst");
    let tmp = run.join(".merge-tmp");
    std::fs::create_dir_all(&tmp)?;
    let merged = merge_files(&inputs, &timeline, &tmp);
    let _ = std::fs::remove_dir_all(&tmp);
    let merged = merged.context("merging op-logs into the timeline")?;
    meta["timeline"]["records"] = merged.records_out.into();
    meta["timeline"]["inputs"] = merged.inputs.into();
    meta["timeline"]["errors"] = merged.errors.clone().into();
    meta["collected"] = fetched.clone().into();
    std::fs::write(&meta_path, serde_json::to_string_pretty(&meta)?)
        .with_context(|| format!("cannot write {}", meta_path.display()))?;

    let mut report = format!(
        "fetched {} op-log(s); timeline: {} records from {} logs",
        fetched.len(),
        merged.records_out,
        merged.inputs
    );
    for f in &fetched {
        report.push_str(&format!("\n  fetched {f}"));
    }
    if !problems.is_empty() || !merged.errors.is_empty() {
        let all: Vec<String> = problems.into_iter().chain(merged.errors).collect();
        anyhow::bail!("{report}\nnot collected:\n  {}", all.join("\n  "));
    }
    Ok(report)
}

/// Fetches one spooled log into `path`, continuing a copy already in the
/// run directory from its end. `Ok(None)`: the agent has none for that
/// stage (it never ran it); `Ok(Some(n))`: done, the first `n` bytes were
/// already here.
async fn fetch(
    client: &mut transport::Client,
    run_id: &str,
    index: u32,
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
        step: 0,
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
    let what = format!("spooled op-log of stage {index}");
    crate::run::results::save_oplog(&mut stream, &part, path, &what).await?;
    Ok(Some(from))
}
