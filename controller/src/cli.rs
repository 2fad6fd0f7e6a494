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
    /// Merge op-logs (Chorus's, or warp/s3dlio 13-column ones, zstd or
    /// plain) into one sorted timeline, with bounded memory.
    ///
    /// Records are sorted by start time, then client id, then index; times
    /// are taken as they are (no clock correction). Exit code 1 when an input
    /// is missing or damaged (truncated zstd, bad line): the error names the
    /// file and line on stderr, and the records before the damage are still
    /// merged into OUT.
    Merge(MergeArgs),
    /// Analyze a run's merged timeline (or any op-log): the window where all
    /// agents were active, throughput per time segment, latency percentiles
    /// per op and size, TTFB, errors by class, per agent and endpoint.
    ///
    /// Warm-up ops are skipped, as in the run's summary. Exit code 1 when the
    /// input is damaged (statistics of the records before it are still
    /// printed), 2 for bad flags.
    Analyze(AnalyzeArgs),
    /// Compare runs: plan differences, and throughput and latency deltas per
    /// stage and op. `compare A B`, or `compare A1 A2 ... -- B1 B2 ...` for
    /// several runs per side, which adds each side's spread (min, max,
    /// stdev) so noise can be told from change.
    Compare(CompareArgs),
    /// Write a synthetic op-log (benchmarks and tests of merge/analyze).
    #[command(hide = true)]
    GenOplog(GenOplogArgs),
}

#[derive(Args, Debug, Clone)]
pub struct MergeArgs {
    /// Op-log files to merge (.tsv.zst or .tsv).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// The merged timeline to write (zstd TSV); appears only when complete.
    #[arg(short, long, value_name = "OUT")]
    pub output: PathBuf,
    /// Where sorted runs are spilled (default: next to OUT).
    #[arg(long, value_name = "DIR")]
    pub tmp: Option<PathBuf>,
}

/// How `analyze` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    Text,
    Json,
    Csv,
}

#[derive(Args, Debug, Clone)]
pub struct AnalyzeArgs {
    /// A run directory (uses its timeline.tsv.zst) or an op-log file.
    pub input: PathBuf,
    /// Segment length for throughput over time (e.g. 1s, 500ms), or `auto`
    /// (about 200 segments per stage). Stages needing more than 2000
    /// segments get longer ones.
    #[arg(long, value_name = "D", default_value = "1s")]
    pub segment: String,
    /// Only this op (GET, PUT, STAT, DELETE, LIST, …).
    #[arg(long, value_name = "OP")]
    pub op: Option<String>,
    /// Only this agent (client_id).
    #[arg(long, value_name = "ID")]
    pub agent: Option<String>,
    /// Only this stage.
    #[arg(long, value_name = "NAME")]
    pub stage: Option<String>,
    /// Only ops starting at or after T: RFC 3339, or seconds from the
    /// timeline's first op (12.5).
    #[arg(long, value_name = "T")]
    pub from: Option<String>,
    /// Only ops starting before T: RFC 3339, or seconds from the first op.
    #[arg(long, value_name = "T")]
    pub to: Option<String>,
    /// Print JSON.
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,
    /// Print CSV (one table; `section` column says which breakdown).
    #[arg(long)]
    pub csv: bool,
    /// Also write a self-contained HTML report (charts) to this file.
    #[arg(long, value_name = "OUT")]
    pub html: Option<PathBuf>,
}

impl AnalyzeArgs {
    pub fn format(&self) -> OutputFormat {
        if self.json {
            OutputFormat::Json
        } else if self.csv {
            OutputFormat::Csv
        } else {
            OutputFormat::Text
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct CompareArgs {
    /// Run directories: `A B`, or `A1 A2 ... -- B1 B2 ...`.
    #[arg(required = true, num_args = 1..)]
    pub runs: Vec<PathBuf>,
    /// The second side, after `--`.
    #[arg(last = true)]
    pub side_b: Vec<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug, Clone)]
pub struct GenOplogArgs {
    /// Output file (zstd TSV).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Records to write.
    #[arg(long, default_value_t = 1_000_000)]
    pub records: u64,
    /// The client id written.
    #[arg(long, default_value = "agent-0")]
    pub client: String,
    /// Seed of the pseudo-random fields.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Simulated workers; records come in completion order, so starts are
    /// only nearly sorted, like a real agent's log.
    #[arg(long, default_value_t = 32)]
    pub workers: u64,
    /// Write in start order (a timeline) rather than completion order.
    #[arg(long)]
    pub sorted: bool,
    /// Spread workers over this many client ids (`<client>-<n>`), as a
    /// merged timeline of several agents has; 1 writes `<client>` alone.
    #[arg(long, default_value_t = 1)]
    pub agents: u64,
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
