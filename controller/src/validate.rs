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
                println!(
                    "  {} ({}): target {}, {} workers per agent, {} objects",
                    s.name,
                    s.kind.name(),
                    s.target,
                    s.concurrency,
                    s.objects.count
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_BAD_INPUT)
        }
    }
}
