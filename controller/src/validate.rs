//! `controller validate plan.yaml`: load the plan strictly and say what it
//! would run.

use std::path::Path;
use std::process::ExitCode;

use chorus_common::plan;

use crate::EXIT_BAD_INPUT;

pub fn validate(path: &Path) -> ExitCode {
    let loaded = plan::load(path).map_err(|e| e.to_string()).and_then(|p| {
        crate::run::kinds::replay::check_traces(&p, path)?;
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
            for s in &p.stages {
                let objects = match (&s.objects.existing, s.kind) {
                    // A replay's objects are its trace's.
                    (_, plan::StageKind::Replay) => String::new(),
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
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_BAD_INPUT)
        }
    }
}
