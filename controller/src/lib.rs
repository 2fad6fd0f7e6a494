//! The Chorus controller.
//!
//! - [`cli`]: the command line.
//! - [`run`]: `controller run`: agents, clock sync, stages, results.
//! - [`validate`]: `controller validate`.
//!
//! Exit codes: 0 success, 1 a run that failed, 2 bad input (plan, flags).

pub mod cli;
pub mod run;
pub mod validate;

use std::process::ExitCode;

use cli::{Cli, Command};

/// Exit code for bad input: a plan or a flag that is wrong.
pub const EXIT_BAD_INPUT: u8 = 2;

/// Sets up stderr logging; SDK crates stay at `warn` whatever the level.
pub fn logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| format!("{level},h2=warn,hyper=warn,tower=warn").into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Runs one command and returns the process exit code.
pub async fn main(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Validate { plan } => validate::validate(&plan),
        Command::Run(args) => run::run_command(args).await,
    }
}
