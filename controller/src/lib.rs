//! The Chorus controller.
//!
//! - [`cli`]: the command line.
//! - [`run`]: `controller run`: agents, clock sync, stages, results.
//! - [`validate`]: `controller validate`.
//! - [`discovery`]: which agents: `--agents`, `--etcd`, `--slurm`, the plan.
//! - [`agents_cmd`]: `controller agents` (who they are, their clocks).
//! - [`merge_cmd`]: `controller merge`.
//! - [`export`]: `controller export` (the timeline as Parquet).
//! - [`collect`]: `controller collect` (op-logs left in agents' spools).
//! - [`analyze`]: `controller analyze` (text, JSON, CSV).
//! - [`compare`]: `controller compare`.
//! - [`report`]: the self-contained `report.html` with inline SVG charts.
//! - [`gen_oplog`]: synthetic op-logs for benchmarks (hidden subcommand).
//! - [`certs`]: `controller certs init` (a CA and mTLS certificates).
//! - [`transport`]: connections to agents: TLS, token, forwarded variables,
//!   deadlines.
//! - [`versions`]: which agent versions the controller works with.
//!
//! Exit codes: 0 success, 1 a run that failed, 2 bad input (plan, flags).

pub mod agents_cmd;
pub mod analyze;
pub mod certs;
pub mod cli;
pub mod collect;
pub mod compare;
pub mod discovery;
pub mod export;
pub mod gen_oplog;
pub mod merge_cmd;
pub mod report;
pub mod run;
pub mod transport;
pub mod validate;
pub mod versions;

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
        Command::Agents(args) => agents_cmd::agents_command(args).await,
        Command::Merge(args) => merge_cmd::merge_command(args),
        Command::Export(args) => export::export_command(args),
        Command::Collect(args) => collect::collect_command(args).await,
        Command::Analyze(args) => analyze::analyze_command(args),
        Command::Compare(args) => compare::compare_command(args),
        Command::GenOplog(args) => gen_oplog::gen_oplog_command(args),
        Command::Certs(cli::CertsCommand::Init(args)) => certs::init_command(args),
    }
}
