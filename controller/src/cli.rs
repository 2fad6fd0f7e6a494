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
    /// List the agents a run would use, found the same way (--agents,
    /// --etcd, --slurm), and what each says about itself.
    ///
    /// For each agent: address, id, version, host name, CPUs, NUMA
    /// topology, whether it is free or busy with another controller's
    /// session, whether it demands authentication, and its clock offset to
    /// this controller (± the uncertainty, half the best round trip of 32
    /// samples). Agents that cannot be reached are listed with the error.
    ///
    /// Exit code 0 when every agent answered, 1 when any did not (or etcd
    /// could not be read), 2 for bad flags or no agents named.
    ///
    /// Examples: `controller agents --etcd http://etcd:2379 --tls-dir certs`,
    /// `controller agents --agents 'node{01...16}' --token-file token`,
    /// `controller agents --slurm --insecure` (inside an allocation).
    Agents(AgentsArgs),
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
    /// Write a run's merged timeline and per-second series (or any op-log,
    /// or a series.csv) in a format for the data tools: `--format parquet`
    /// writes typed columns (nanosecond UTC timestamps, dictionary-encoded
    /// names, integer counts and sizes, double rates), zstd-compressed, in
    /// row groups of at most 1 Mi rows or 64 MiB of buffered column data,
    /// read and written as a stream so memory stays bounded however long the
    /// run. See docs/analysis.md.
    ///
    /// Example: `controller export runs/<id>/ --format parquet` writes
    /// `runs/<id>/timeline.parquet` (from timeline.tsv.zst) and
    /// `runs/<id>/series.parquet` (from series.csv). Exit code 1 when an
    /// input is missing or damaged (truncated zstd, bad line): the error
    /// names the file and line, and that output is not left (the other is
    /// still written); 2 for bad flags.
    Export(ExportArgs),
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
    /// Certificates for mutual TLS between the controller and its agents.
    #[command(subcommand)]
    Certs(CertsCommand),
    /// Fetch the op-logs a run could not fetch at the time (the controller
    /// died, or an agent was unreachable) from the agents' spools, and merge
    /// the run's timeline again. Agents keep a run's logs in their spool
    /// when their controller is lost.
    ///
    /// Exit code 1 when some log could not be fetched (the timeline is
    /// still merged from what is there), 2 for bad flags.
    Collect(CollectArgs),
}

#[derive(Args, Debug, Clone)]
pub struct CollectArgs {
    /// The run directory (`runs/<id>`).
    pub run: PathBuf,
    #[command(flatten)]
    pub security: SecurityArgs,
}

#[derive(Subcommand, Debug)]
pub enum CertsCommand {
    /// Write a new CA and the certificates it signs into DIR: ca.pem and
    /// ca.key (keep ca.key safe, it signs new certificates), agent.pem and
    /// agent.key (for every agent, with ca.pem), controller.pem and
    /// controller.key (for the controller host, with ca.pem). Keys are
    /// written mode 0600.
    ///
    /// The agent certificate is valid for the name `chorus-agent` (which the
    /// controller checks, so agents may be reached by any address),
    /// `localhost`, `127.0.0.1` and each --san.
    Init(CertsInitArgs),
}

#[derive(Args, Debug, Clone)]
pub struct CertsInitArgs {
    /// The folder to write into (created if missing).
    pub dir: PathBuf,
    /// Another name (DNS name or IP address) the agent certificate is valid
    /// for; repeat for more.
    #[arg(long = "san", value_name = "NAME")]
    pub sans: Vec<String>,
    /// Days the certificates are valid, from now.
    #[arg(long, value_name = "N", default_value_t = 365)]
    pub days: u32,
    /// Replace certificate and key files already in DIR.
    #[arg(long)]
    pub force: bool,
}

/// How the controller proves itself to agents and protects what it sends:
/// shared by every subcommand that talks to agents.
#[derive(Args, Debug, Clone, Default)]
pub struct SecurityArgs {
    /// Mutual TLS: DIR/ca.pem (checks agents), DIR/controller.pem and
    /// DIR/controller.key (shown to agents), as `controller certs init`
    /// writes them. Agents are checked for the name `chorus-agent`, so any
    /// address reaches them.
    #[arg(long, value_name = "DIR", env = "CHORUS_TLS_DIR")]
    pub tls_dir: Option<PathBuf>,
    /// Send the token in FILE (its content, trimmed) with every request, for
    /// agents started with --token-file.
    #[arg(long, value_name = "FILE", env = "CHORUS_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Talk plaintext to agents started with --insecure, unauthenticated.
    #[arg(long, conflicts_with_all = ["tls_dir", "token_file"])]
    pub insecure: bool,
    /// Send these environment variables of the controller to the agents
    /// (e.g. AWS_ACCESS_KEY_ID,AWS_SECRET_ACCESS_KEY), for stores to use
    /// before the agents' own environment. Needs --tls-dir: values travel
    /// only encrypted, and are never written to results or logs.
    #[arg(long, value_name = "NAME[,NAME…]", value_delimiter = ',')]
    pub forward_env: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct MergeArgs {
    /// Op-log files to merge (.spool.zst, .tsv.zst or .tsv).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// The merged timeline to write (zstd TSV); appears only when complete.
    #[arg(short, long, value_name = "OUT")]
    pub output: PathBuf,
    /// Where sorted runs are spilled (default: next to OUT).
    #[arg(long, value_name = "DIR")]
    pub tmp: Option<PathBuf>,
    /// zstd level of OUT: 1 (the default) compresses timeline text about
    /// as well as level 3; negative levels (zstd's `--fast=N`) trade size
    /// for speed (docs/oplog.md, "Merge", has measurements). Any level
    /// writes a standard zstd TSV.
    #[arg(long, value_name = "N", default_value_t = 1, allow_negative_numbers = true,
          value_parser = clap::value_parser!(i32).range(-7..=19))]
    pub zstd_level: i32,
}

/// The file formats `export` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    Parquet,
    /// zstd TSV of an op-log (an agent's binary spool, say), or of every
    /// agent log of a run directory, beside it.
    Tsv,
}

#[derive(Args, Debug, Clone)]
pub struct ExportArgs {
    /// A run directory (exports its timeline.tsv.zst and series.csv), an
    /// op-log or timeline file (.tsv.zst, .tsv), or a series file (.csv).
    pub input: PathBuf,
    /// The format to write.
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    /// The file to write when INPUT is a file; appears only when complete
    /// (default: the input's name with .parquet for .tsv.zst, .tsv or
    /// .csv). A run directory's files always go into it, as
    /// timeline.parquet and series.parquet: to write one elsewhere, give
    /// its file as INPUT.
    #[arg(short, long, value_name = "PATH")]
    pub output: Option<PathBuf>,
}

/// The formats `run` writes the merged timeline in. Kept in run.json under
/// the flag's own words (`tsv`, `parquet`) for `collect`.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum TimelineFormat {
    /// timeline.tsv.zst only.
    #[default]
    Tsv,
    /// timeline.tsv.zst, and timeline.parquet and series.parquet beside
    /// it and series.csv (as `export` writes them).
    Parquet,
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
    /// Write an agent's binary spool (docs/oplog.md) instead of zstd TSV.
    #[arg(long)]
    pub spool: bool,
}

/// Where the agents are: shared by `run` and `agents`. At most one of
/// --agents, --etcd and --slurm.
#[derive(Args, Debug, Clone)]
pub struct DiscoveryArgs {
    /// Agents as host[:port][,host[:port]…]. Each entry may be a template,
    /// `node{01...16}` or `10.0.0.{1...8}:{7167...7168}` (zero padding
    /// kept, several ranges give every combination); hosts without a port
    /// get --agent-port. Without --agents, --etcd or --slurm, the plan's
    /// `agents:` is used (the same syntax), and without that `run` starts
    /// embedded agents on loopback.
    #[arg(long, value_name = "LIST", value_delimiter = ',', conflicts_with_all = ["etcd", "slurm"])]
    pub agents: Vec<String>,
    /// Use every agent registered in etcd (agents started with --etcd):
    /// comma-separated endpoints, e.g. http://etcd:2379. Agents whose
    /// lease expired are not listed. Also read from CHORUS_ETCD, which
    /// --agents or --slurm override.
    #[arg(long, value_name = "URL", conflicts_with = "slurm")]
    pub etcd: Option<String>,
    /// Use the nodes of the SLURM allocation this runs in
    /// (SLURM_JOB_NODELIST, e.g. `node[01-04]`), each on --agent-port.
    #[arg(long)]
    pub slurm: bool,
    /// The port of agents named without one: SLURM nodes, and list or plan
    /// entries such as `host{1...4}`.
    #[arg(long, value_name = "PORT", default_value_t = chorus_common::discovery::DEFAULT_AGENT_PORT,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub agent_port: u16,
    /// With --slurm: agents on each node (one per socket, say), on ports
    /// PORT, PORT+1, … from --agent-port.
    #[arg(long, value_name = "N", default_value_t = 1, requires = "slurm",
          value_parser = clap::value_parser!(u16).range(1..=256))]
    pub agents_per_node: u16,
}

#[derive(Args, Debug, Clone)]
pub struct AgentsArgs {
    #[command(flatten)]
    pub discovery: DiscoveryArgs,
    #[command(flatten)]
    pub security: SecurityArgs,
    /// Print JSON: `{"source": ..., "agents": [...]}`, one object per agent
    /// (fields as in docs/control-plane.md; null where not known).
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// The plan file (YAML); see docs/plan.md.
    pub plan: PathBuf,
    /// Replace every stage's target with this URI (e.g. file:///mnt/fs/chorus,
    /// mem://bench). The same plan then runs against another backend.
    #[arg(long, value_name = "URI")]
    pub target: Option<String>,
    #[command(flatten)]
    pub discovery: DiscoveryArgs,
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
    /// Serve live Prometheus metrics (`GET /metrics`, text format 0.0.4) on
    /// this address while the run lasts, e.g. 127.0.0.1:9464; see
    /// docs/metrics.md. Bound before the run starts: an address in use is
    /// an error.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<String>,
    /// How long `/metrics` stays up after the run, with its final figures:
    /// the default lets a scraper at a 5 s interval (or up to 10 s) take
    /// them once more. Ctrl-C ends it early.
    #[arg(long, value_name = "D", default_value = "15s")]
    pub metrics_linger: String,
    /// `parquet`: after merging timeline.tsv.zst, also write
    /// timeline.parquet and series.parquet as `controller export --format
    /// parquet` does. The TSV and CSV stay, since analyze, report and
    /// collect read them. Recorded in run.json (`timeline_format`), so
    /// `controller collect` writes them again.
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = TimelineFormat::Tsv)]
    pub timeline_format: TimelineFormat,
    #[command(flatten)]
    pub security: SecurityArgs,
}
