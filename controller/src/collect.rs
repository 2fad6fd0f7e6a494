//! `controller collect RUN_DIR`: fetches the op-logs a run could not fetch
//! at the time (the controller died, or an agent was unreachable), from the
//! agents' spools, and merges the run's timeline again.
//!
//! What to fetch comes from the run directory itself: `run.json` names the
//! agents and their addresses (it is written when the run starts and after
//! every stage), `plan.yaml` the stages. A log already in the directory is
//! kept; an agent that never ran a stage has nothing to give, which is not
//! an error. Clock offsets for the merge are the ones measured for that
//! stage, else the agent's first measurement.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use chorus_common::oplog::merge::{MergeInput, merge_files};
use chorus_common::plan;
use chorus_proto::pb;
use serde_json::Value;

use crate::EXIT_BAD_INPUT;
use crate::cli::CollectArgs;
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
    start_offset_ns: Option<i64>,
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
                start_offset_ns: a["clock_start"]["offset_ns"].as_i64(),
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
                Ok(true) => fetched.push(format!("{}: stage {index} `{name}`", a.id)),
                Ok(false) => {}
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
                let offset_ns = stage_offset(&meta, i, &a.id)
                    .or(a.start_offset_ns)
                    .unwrap_or(0);
                inputs.push(MergeInput { path, offset_ns });
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

/// The offset measured for stage `index` of agent `id`, from `run.json`.
fn stage_offset(meta: &Value, index: usize, id: &str) -> Option<i64> {
    meta["stages"]
        .as_array()?
        .iter()
        .find(|s| s["index"].as_u64() == Some(index as u64))?["agents"]
        .as_array()?
        .iter()
        .find(|a| a["id"].as_str() == Some(id))?["clock"]["offset_ns"]
        .as_i64()
}

/// Fetches one spooled log into `path`. `Ok(false)`: the agent has none
/// for that stage (it never ran it).
async fn fetch(
    client: &mut transport::Client,
    run_id: &str,
    index: u32,
    path: &Path,
) -> anyhow::Result<bool> {
    let request = pb::FetchOpLogRequest {
        session_id: String::new(),
        stage_index: index,
        run_id: run_id.to_string(),
    };
    let mut stream = match client.fetch_op_log(request).await {
        Ok(r) => r.into_inner(),
        Err(s) if s.code() == tonic::Code::NotFound => return Ok(false),
        Err(s) => return Err(anyhow::anyhow!(transport::status_text(&s))),
    };
    let what = format!("spooled op-log of stage {index}");
    crate::run::results::save_oplog(&mut stream, path, &what).await?;
    Ok(true)
}
