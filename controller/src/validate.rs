//! `controller validate plan.yaml`: load the plan strictly and say what it
//! would run.

use std::path::Path;
use std::process::ExitCode;

use chorus_common::plan;

use crate::EXIT_BAD_INPUT;

pub fn validate(path: &Path) -> ExitCode {
    match plan::load(path) {
        Ok(p) => {
            println!(
                "{}: valid plan `{}` with {} stage(s)",
                path.display(),
                p.name,
                p.stages.len()
            );
            for s in &p.stages {
                let objects = match s.objects.existing {
                    Some(_) => format!("the objects under `{}` (listed)", s.objects.prefix),
                    None => format!("{} objects", s.objects.count),
                };
                println!(
                    "  {} ({}): target {}, {} workers per agent, {objects}",
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
