//! `controller validate plan.yaml`: load the plan strictly and say what it
//! would run.

use std::path::Path;
use std::process::ExitCode;

use chorus_common::plan;

use crate::EXIT_BAD_INPUT;

pub fn validate(path: &Path) -> ExitCode {
    let loaded = plan::load(path).map_err(|e| e.to_string()).and_then(|p| {
        crate::run::kinds::replay::check_traces(&p, path)?;
        // With the agents the plan names (else one, as the embedded
        // default runs); `run` checks again with the agents it has.
        if let Err(e) = p.check_ranks(p.agents.len().max(1) as u32) {
            return Err(plan::locate_in_file(path, &e));
        }
        Ok(p)
    });
    match loaded {
        Ok(p) => {
            println!(
                "{}: valid plan `{}` with {} stage(s)",
                path.display(),
                p.name,
                p.stages.len()
            );
            for (i, o) in p.overrides.iter().enumerate() {
                describe_override(i, o);
            }
            for s in &p.stages {
                describe_stage(s);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_BAD_INPUT)
        }
    }
}

/// One `overrides` entry: whom it picks, what it changes.
fn describe_override(i: usize, o: &plan::AgentOverride) {
    let picks = match &o.select {
        plan::AgentSelect::Ids(ids) => format!("agents {}", ids.join(", ")),
        plan::AgentSelect::Hosts(h) => format!("hosts `{h}`"),
        plan::AgentSelect::Index { first, last } => format!("agents {first} to {last}"),
    };
    let mut what = Vec::new();
    if let Some(t) = &o.target {
        what.push(format!("target {t}"));
    }
    if let Some(c) = o.concurrency {
        what.push(format!("{c} workers"));
    }
    if o.endpoints.is_some() {
        what.push("own endpoints".to_string());
    }
    if o.pinning.is_some() {
        what.push("own pinning".to_string());
    }
    if o.data.is_some() {
        what.push("own data".to_string());
    }
    println!("  override {i}: {picks}: {}", what.join(", "));
}

/// One stage: its kind, target, workers and objects, then what its kind
/// adds.
fn describe_stage(s: &plan::Stage) {
    let objects = match (&s.objects.existing, s.kind) {
        // A replay's objects are its trace's, an AI/ML
        // stage's its settings'.
        (
            _,
            plan::StageKind::Replay
            | plan::StageKind::Dataset
            | plan::StageKind::Train
            | plan::StageKind::Checkpoint,
        ) => String::new(),
        (Some(_), _) => format!(", the objects under `{}` (listed)", s.objects.prefix),
        (None, _) => format!(", {} objects", s.objects.count),
    };
    println!(
        "  {} ({}): target {}, {} workers per agent{objects}",
        s.name,
        s.kind.name(),
        s.target,
        s.concurrency,
    );
    if let Some(search) = &s.search {
        println!(
            "    search: {} from {} to {}, {} steps (+ warm-up), objective {}",
            search.vary.name(),
            search.from,
            search.to,
            plan::format_duration(search.step),
            search.objective
        );
    }
    describe_training(s);
    if let Some(r) = &s.replay {
        println!(
            "    replay: {} at speed {}, split by {}{}",
            r.trace,
            r.speed,
            r.split.name(),
            if r.prepare {
                ", missing objects made first"
            } else {
                ""
            }
        );
    }
    if let Some(steady) = &s.until {
        println!(
            "    until steady: {} windows of {} within {}, at most {}",
            steady.windows,
            plan::format_duration(steady.window),
            plan::percent(steady.tolerance),
            s.stop
                .duration
                .map(plan::format_duration)
                .unwrap_or_default()
        );
    }
}

/// A dataset, train or checkpoint stage's settings.
fn describe_training(s: &plan::Stage) {
    if let Some(d) = &s.training.dataset {
        println!(
            "    dataset: {} samples of {}{} in {} files of {}, under `{}`",
            d.samples,
            match d.sample_size {
                plan::SizeSpec::Fixed(_) => "",
                _ => "up to ",
            },
            plan::format_size(d.sample_size.max()),
            d.format.name(),
            d.samples_per_file,
            d.prefix
        );
    }
    if let Some(t) = &s.training.train {
        println!(
            "    train: {} epochs, {} accelerators per agent, batch {}, {} read \
             threads and {} batches of prefetch per accelerator, AU target {:.0}%",
            t.epochs,
            t.search.map_or_else(
                || t.accelerators.to_string(),
                |(a, b)| format!("{a} to {b} (searched)")
            ),
            t.batch,
            t.read_threads,
            t.prefetch,
            t.au_target * 100.0
        );
    }
    if let Some(c) = &s.training.checkpoint {
        println!(
            "    checkpoint: {} over {} accelerators per agent, under `{}`{}",
            plan::format_size(c.size),
            c.accelerators,
            c.prefix,
            if c.restore { ", then restored" } else { "" }
        );
    }
}
