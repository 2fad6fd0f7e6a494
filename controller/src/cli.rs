//! The command line: every subcommand and flag, with the help users read.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Chorus controller: runs a storage benchmark plan on many agents at once
/// and gathers every operation into one clock-corrected timeline.
#[derive(Parser, Debug)]
#[command(name = "controller", version, about, propagate_version = true)]
pub struct Cli {
    /// More log output on stderr (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a plan: send it to the agents, start every stage on all of them at
    /// once, show live progress, then write the results directory.
    Run(RunArgs),
    /// Check a plan without running it. Exit code 2 when it is invalid.
    Validate {
        /// The plan file (YAML).
        plan: PathBuf,
    },
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// The plan file (YAML); see docs/plan.md.
    pub plan: PathBuf,
    /// Replace every stage's target with this URI (e.g. file:///mnt/fs/chorus,
    /// mem://bench). The same plan then runs against another backend.
    #[arg(long, value_name = "URI")]
    pub target: Option<String>,
    /// Agents to use, as host:port[,host:port…]. Without this (and without
    /// `agents:` in the plan) the controller starts embedded agents on
    /// loopback.
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub agents: Vec<String>,
    /// How many embedded agents to start when no agents are named.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub embedded: u32,
    /// Replace the duration of every workload stage (e.g. 30s, 5m).
    #[arg(long, value_name = "D")]
    pub duration: Option<String>,
    /// Replace every stage's workers per agent.
    #[arg(long, value_name = "N")]
    pub concurrency: Option<u32>,
    /// Where the run directory goes.
    #[arg(long, value_name = "DIR", default_value = "runs")]
    pub results: PathBuf,
    /// No live progress and no summary on stdout (the results directory is
    /// still written, and its path printed).
    #[arg(long, short)]
    pub quiet: bool,
}
