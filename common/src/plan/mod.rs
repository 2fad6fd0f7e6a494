//! The plan file: what a run does, stage by stage.
//!
//! A plan is YAML, read strictly by [`load`]: every unknown key, wrong type or
//! bad value is a [`PlanError`] naming the file, line, column and key. The
//! types here are the plan *after* loading: defaults filled in, every stage's
//! target resolved, units converted. [`Plan::to_yaml`] writes the canonical
//! form back out (the "plan as run" of a results directory), and that text
//! loads again to an equal plan, which is also how a plan travels to agents.

mod api;
mod emit;
mod error;
mod existing;
mod large;
mod load;
mod options;
mod overrides;
mod ramp;
mod replay;
mod search;
mod sizes;
mod step;
mod training;
mod units;
mod yaml;

use std::collections::BTreeMap;
use std::time::Duration;

use crate::op::OpKind;
pub use api::{DEFAULT_RETENTION, MAX_BATCH, ObjectApi, feature_of};
pub use large::{MAX_STREAMS, Parallel, size_limit};

pub use error::PlanError;
pub use load::{MAX_CONCURRENCY, MAX_OBJECTS, MAX_PART_SIZE, load, parse};
pub use overrides::{AgentIdentity, AgentOverride, AgentSelect, MAX_OVERRIDES};
pub use ramp::ThinkTime;
pub use replay::{MAX_REMAP_ENTRIES, ReplayPhase, ReplaySpec, ReplaySplit};
pub use search::{
    Objective, STEADY_PERCENTILES, SearchSpec, SteadySpec, Vary, percent, percentile_name,
};
pub use sizes::SizeSpec;
pub use step::StepSpec;
pub use training::{
    AgentsCheckError, CheckpointSpec, DatasetFormat, DatasetSpec, MAX_ACCELERATORS, MAX_BATCHES,
    MAX_READ_THREADS, RestoreFrom, TrainSpec, Training, locate, locate_in_file,
};
pub use units::{format_duration, format_size, parse_duration, parse_size};

/// A whole plan.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Names the run directory (`runs/<time>-<name>`). Letters, digits, `-`,
    /// `_` and `.` only.
    pub name: String,
    pub description: Option<String>,
    /// Seed for key choice and payload data; the same seed gives the same
    /// bytes for the same key.
    pub seed: u64,
    /// Agent addresses (`host:port`) named by the plan; empty means "the
    /// controller decides" (command line, or embedded agents).
    pub agents: Vec<String>,
    /// What payloads look like: dedup and compress factors.
    pub data: DataOptions,
    /// How each agent pins its worker threads.
    pub pinning: Pinning,
    /// Heartbeats, lost agents, clock thresholds.
    pub control: ControlOptions,
    pub stages: Vec<Stage>,
    /// Per-agent settings, applied by each agent to itself
    /// ([`Plan::for_agent`]).
    pub overrides: Vec<AgentOverride>,
}

/// What the run does when an agent is lost mid-run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AgentLossPolicy {
    /// Stop every agent, write what was measured, exit 1.
    #[default]
    Abort,
    /// Go on with the others; the summary says which agents covered which
    /// time.
    Continue,
}

impl AgentLossPolicy {
    pub fn name(self) -> &'static str {
        match self {
            AgentLossPolicy::Abort => "abort",
            AgentLossPolicy::Continue => "continue",
        }
    }
}

/// What to do with an agent whose clock is off or unsure past the plan's
/// thresholds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClockCheck {
    /// Report it in the output and `run.json`, run anyway.
    #[default]
    Warn,
    /// Refuse to run the stage (the run fails before it starts).
    Refuse,
}

/// The control plane's settings (`control:` in the plan).
#[derive(Clone, Debug, PartialEq)]
pub struct ControlOptions {
    pub on_agent_loss: AgentLossPolicy,
    /// An agent silent this long (no progress, no heartbeat reply) is lost.
    pub agent_timeout: Duration,
    /// An agent that hears no controller this long stops its load.
    pub controller_timeout: Duration,
    /// Largest |offset| of an agent's clock before it is reported; `None`
    /// for no limit.
    pub max_clock_offset: Option<Duration>,
    /// Largest offset uncertainty (half the best round trip) before it is
    /// reported.
    pub max_clock_uncertainty: Duration,
    pub clock_check: ClockCheck,
    /// How often the controller copies each agent's op-log while a stage
    /// runs; `None` (`off`) copies it only when the stage ends.
    pub collect_interval: Option<Duration>,
}

/// The default of `control.collect_interval`.
pub const DEFAULT_COLLECT_INTERVAL: Duration = Duration::from_secs(10);

/// The shortest `control.collect_interval`: below it the calls cost more
/// than the bytes they bring.
pub const MIN_COLLECT_INTERVAL: Duration = Duration::from_millis(100);

impl Default for ControlOptions {
    fn default() -> Self {
        ControlOptions {
            on_agent_loss: AgentLossPolicy::Abort,
            agent_timeout: Duration::from_secs(3),
            controller_timeout: Duration::from_secs(10),
            max_clock_offset: None,
            max_clock_uncertainty: Duration::from_millis(5),
            clock_check: ClockCheck::Warn,
            collect_interval: Some(DEFAULT_COLLECT_INTERVAL),
        }
    }
}

/// Payload shape for every PUT of the run (see `crate::datagen`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DataOptions {
    /// N blocks share one content (1 = all unique).
    pub dedup: u32,
    /// zstd compresses the data by this ratio (1.0 = incompressible).
    pub compress: f64,
    /// Every object gets the same bytes (see `datagen::DataSpec::reuse`).
    pub reuse: bool,
}

impl Default for DataOptions {
    fn default() -> Self {
        DataOptions {
            dedup: 1,
            compress: 1.0,
            reuse: false,
        }
    }
}

/// How an agent lays its worker threads over CPUs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Pinning {
    /// One runtime per NUMA node, threads pinned to the node's CPUs.
    #[default]
    Numa,
    /// One runtime per CPU set (kernel list syntax, e.g. `0-3,8`), pinned.
    CpuSets(Vec<String>),
    /// One runtime, threads not pinned.
    None,
}

/// What a stage does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StageKind {
    /// Writes every object of the key space once (split over agents).
    Prepare,
    /// Runs the op mix until the stop condition.
    Workload,
    /// Deletes what the run created: objects of the key space that exist
    /// now and were not there when the run first looked (split over
    /// agents). In a plan with no earlier stage on the key space, that is
    /// every object of the key space.
    Cleanup,
    /// Runs the op mix in load steps to find the highest load that meets
    /// an objective (`search:`; the controller chooses each step).
    Search,
    /// Re-issues a recorded op-log's ops on its schedule (`replay:`).
    Replay,
    /// Writes a training dataset's files (`dataset:`), split over agents.
    Dataset,
    /// Emulates training on a dataset (`train:`): epochs of accelerators
    /// reading their shards of a shuffled order and computing on batches.
    Train,
    /// Every rank writes its shard of a checkpoint at one instant, then
    /// reads one back (`checkpoint:`).
    Checkpoint,
}

impl StageKind {
    pub fn name(self) -> &'static str {
        match self {
            StageKind::Prepare => "prepare",
            StageKind::Workload => "workload",
            StageKind::Cleanup => "cleanup",
            StageKind::Search => "search",
            StageKind::Replay => "replay",
            StageKind::Dataset => "dataset",
            StageKind::Train => "train",
            StageKind::Checkpoint => "checkpoint",
        }
    }
}

/// One stage of a plan.
#[derive(Clone, Debug, PartialEq)]
pub struct Stage {
    /// Unique within the plan.
    pub name: String,
    pub kind: StageKind,
    /// Target URI, already checked by [`crate::store::uri::TargetUri::parse`];
    /// the stage's own `target` or else the plan's.
    pub target: String,
    /// Workers per agent.
    pub concurrency: u32,
    pub objects: KeySpace,
    /// Op weights; only used by workload stages. At least one weight is > 0.
    pub mix: OpMix,
    pub stop: StopCondition,
    /// Ops in the first `warmup` of the stage are logged (flagged) but left
    /// out of the summary.
    pub warmup: Option<Duration>,
    pub pacing: Pacing,
    /// The load rises linearly from zero over the first `ramp` of the
    /// stage (part of its duration): in closed loop the workers start one
    /// after another, in open loop the rate rises from 0 to `rate`. Ops
    /// that start in the ramp are flagged like warm-up's (see
    /// [`Stage::warmup_window`]). Workload stages only.
    pub ramp: Option<Duration>,
    /// Closed loop: each worker pauses this long after each op, outside
    /// any op's latency. Workload stages only.
    pub think: Option<ThinkTime>,
    /// What a `range_get` reads.
    pub range: RangeSpec,
    /// Part size of `multipart_put`, and of a `put` of an object larger
    /// than it (uploaded in parts too, so no object is in memory whole).
    pub part_size: u64,
    /// How one op moves a large object: ranged GETs at once, upload parts
    /// at once (see [`Parallel`]); `None`: one request, parts one by one.
    pub parallel: Option<Parallel>,
    /// What a `list` lists.
    pub list: ListSpec,
    /// GETs rebuild the expected bytes and compare; a mismatch is an op
    /// error of class `verification`.
    pub verify: bool,
    /// Prepare: write every object even if it exists (default: skip those
    /// a listing shows with the right size).
    pub overwrite: bool,
    pub retry: RetryPolicy,
    /// Run this stage's workers on one pool (index into the agent's pools);
    /// `None` spreads workers over all pools.
    pub pool: Option<u32>,
    /// Endpoints to spread ops over; empty means the backend's own endpoint
    /// from the environment.
    pub endpoints: Vec<EndpointSpec>,
    /// `round_robin` or `least_connections`.
    pub balance: String,
    /// A search stage's steps and objective (`Some` exactly for
    /// [`StageKind::Search`]).
    pub search: Option<SearchSpec>,
    /// `until: steady`: a workload stage that ends once its figures
    /// settle, at its `duration` at the latest.
    pub until: Option<SteadySpec>,
    /// A replay stage's trace and settings (`Some` exactly for
    /// [`StageKind::Replay`]).
    pub replay: Option<ReplaySpec>,
    /// The AI/ML stages' settings (`dataset`, `train`, `checkpoint`).
    pub training: Training,
    /// The object API's settings (`versioning`, `batch`, `tags`,
    /// `retention`).
    pub api: ObjectApi,
}

impl Stage {
    /// Whether the stage runs its op mix (a workload, or a search's steps)
    /// rather than walking its key space once.
    pub fn runs_mix(&self) -> bool {
        matches!(self.kind, StageKind::Workload | StageKind::Search)
    }

    /// Whether the stage starts by writing objects it makes (a prepare, a
    /// dataset, a checkpoint's write step): its store is readied first
    /// (a missing bucket created).
    pub fn writes_first(&self) -> bool {
        match self.kind {
            StageKind::Prepare | StageKind::Dataset => true,
            StageKind::Checkpoint => self
                .training
                .checkpoint
                .as_ref()
                .is_some_and(|c| !c.restoring),
            _ => false,
        }
    }

    /// Whether an op of this stage can remove an object (or a directory):
    /// a cleanup stage, or a `delete`, `delete_batch`, `delete_version` or
    /// `rmdir` with weight in the mix.
    /// PUTs replace an object's bytes, not the object, on every backend
    /// where that difference shows (local files are written in place).
    pub fn removes_objects(&self) -> bool {
        match self.kind {
            // A trace may delete anything it names.
            StageKind::Cleanup | StageKind::Replay => true,
            // Each writes its own objects, in place.
            StageKind::Prepare | StageKind::Dataset | StageKind::Train | StageKind::Checkpoint => {
                false
            }
            StageKind::Workload | StageKind::Search => self
                .mix
                .weights
                .iter()
                .any(|(op, &w)| w > 0 && (op.removes() || *op == OpKind::Rmdir)),
        }
    }
}

/// One entry of a stage's `endpoints`: a URL, a template like
/// `http://10.0.0.{1...8}:9000`, or `@file` naming a list file; optionally
/// bound to one of the agent's pools (a NUMA node or CPU set), so workers
/// on that pool send their ops only to the endpoints bound to it (and to
/// unbound ones).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointSpec {
    pub url: String,
    pub pool: Option<u32>,
}

/// Closed loop (each worker issues its next op when the last one ends) or
/// open loop (ops are scheduled at a target rate, whatever the latency).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Pacing {
    #[default]
    Closed,
    Open {
        /// Ops per second for the whole stage, split over agents.
        rate: f64,
        arrivals: Arrivals,
    },
}

/// Gaps between scheduled ops in open loop.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Arrivals {
    /// Exponential gaps: a Poisson process, as independent clients make.
    #[default]
    Poisson,
    /// Equal gaps.
    Fixed,
}

/// Which bytes a `range_get` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeSpec {
    /// `size` bytes at a random offset aligned to `size` (the last, short,
    /// range of an object included).
    Random { size: u64 },
    /// Always the same range.
    Fixed { offset: u64, length: u64 },
}

impl Default for RangeSpec {
    fn default() -> Self {
        RangeSpec::Random { size: 4096 }
    }
}

/// What a `list` op lists.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListSpec {
    /// Defaults to the key space's prefix.
    pub prefix: Option<String>,
    /// With a delimiter, one level; without, recursive.
    pub delimiter: Option<char>,
}

/// Retries and timeouts of one op. Every retry is counted in the op-log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt, for throttled, timed-out and
    /// network failures only.
    pub retries: u32,
    /// Wait before retry n: `backoff * 2^(n-1)`.
    pub backoff: Duration,
    /// Longest one attempt may take; then it fails with class `timeout`.
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            retries: 0,
            backoff: Duration::from_millis(100),
            timeout: Duration::from_secs(60),
        }
    }
}

/// The objects a stage works on: keys `<prefix><index>` (see
/// [`KeyNaming`]) for index in `0..count`, object `index` being
/// `size.size_of(seed, index)` bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct KeySpace {
    pub prefix: String,
    pub count: u64,
    pub size: SizeSpec,
    /// How an index becomes the rest of the key.
    pub naming: KeyNaming,
    /// How ops pick among the keys.
    pub distribution: KeyDistribution,
    /// Whether agents share the key space or each gets its own slice.
    pub partition: Partition,
    /// `existing: true`: the objects are whatever the prefix holds now,
    /// listed before the stage (see `workload::existing`); `count`, `size`,
    /// `naming` and `partition` then do not apply (`count` is 0).
    pub existing: Option<Existing>,
}

/// A key space of objects already there (`objects: {existing: true}`):
/// Chorus did not write them, so it never verifies their bytes, never
/// writes them, and deletes them only if the plan says so.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Existing {
    /// `allow_delete: true`: a `delete` in the mix may remove them.
    pub allow_delete: bool,
}

/// How a workload op picks its object.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum KeyDistribution {
    #[default]
    Uniform,
    /// Zipf with this exponent (> 0): a few hot objects, a long cold tail.
    Zipf(f64),
}

/// Whether agents share the key space.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Partition {
    /// Every agent may touch every key.
    #[default]
    Shared,
    /// Agent i of n only touches keys with index % n == i.
    Agent,
}

impl KeySpace {
    /// The key of object `index`: `<prefix>[<index % fanout>/]<index>`,
    /// numbers zero-padded so listings sort numerically.
    pub fn key(&self, index: u64) -> String {
        let mut key = Vec::with_capacity(self.prefix.len() + 24);
        key.extend_from_slice(self.prefix.as_bytes());
        self.naming.push_index(index, &mut key);
        // Only ASCII digits and `/` were added to a valid string.
        String::from_utf8(key).unwrap_or_default()
    }

    /// The index of `key` if it is one of this key space's keys (exactly as
    /// [`KeySpace::key`] writes it, and below `count`): how a listing is
    /// read back.
    pub fn index_of(&self, key: &str) -> Option<u64> {
        let rest = key.strip_prefix(self.prefix.as_str())?;
        let digits = match self.naming.fanout {
            Some(_) => rest.rsplit_once('/')?.1,
            None => rest,
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let index = digits.parse::<u64>().ok()?;
        (index < self.count && self.key(index) == key).then_some(index)
    }
}

/// How object keys are named after the prefix (`objects.naming`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyNaming {
    /// Digits the index is zero-padded to (1 to 20). Keys sort in index
    /// order as long as `count` fits.
    pub width: u8,
    /// Spread keys over this many sub-prefixes (`<prefix><index % fanout>/`):
    /// directories on a file system, where one directory of millions of
    /// files is a benchmark of its own, or key ranges an object store can
    /// split its load over. Consecutive indices land in different ones.
    pub fanout: Option<u32>,
}

impl Default for KeyNaming {
    fn default() -> Self {
        KeyNaming {
            width: 8,
            fanout: None,
        }
    }
}

impl KeyNaming {
    /// Largest `width`: every u64 fits in 20 digits.
    pub const MAX_WIDTH: u8 = 20;

    /// Appends what follows the prefix in the key of object `index`. The
    /// op-log writer formats keys with this too, so a logged key is always
    /// the key the op used.
    pub fn push_index(&self, index: u64, out: &mut Vec<u8>) {
        let mut buf = itoa::Buffer::new();
        if let Some(fanout) = self.fanout {
            let fanout = u64::from(fanout.max(1));
            let width = (fanout - 1).checked_ilog10().map_or(1, |d| d as usize + 1);
            push_padded(buf.format(index % fanout).as_bytes(), width, out);
            out.push(b'/');
        }
        push_padded(buf.format(index).as_bytes(), usize::from(self.width), out);
    }
}

/// `digits` zero-padded on the left to at least `width`.
fn push_padded(digits: &[u8], width: usize, out: &mut Vec<u8>) {
    const ZEROS: &[u8; 20] = b"00000000000000000000";
    out.extend_from_slice(&ZEROS[..width.saturating_sub(digits.len()).min(ZEROS.len())]);
    out.extend_from_slice(digits);
}

/// Op weights of a workload stage. Ops not named have weight 0.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpMix {
    pub weights: BTreeMap<OpKind, u32>,
}

impl OpMix {
    pub fn total(&self) -> u64 {
        self.weights.values().map(|&w| u64::from(w)).sum()
    }
}

/// When a stage stops: the first of its limits that is reached. A prepare or
/// cleanup stage also stops when its key space is done.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StopCondition {
    pub duration: Option<Duration>,
    /// Ops for the whole stage, across all agents.
    pub ops: Option<u64>,
    /// Bytes moved (read + written) for the whole stage, across all agents.
    pub bytes: Option<u64>,
}

/// Command-line overrides applied on top of a loaded plan
/// (`controller run --target … --duration … --concurrency …`).
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// Replaces every stage's target.
    pub target: Option<String>,
    /// Replaces the duration of every workload stage.
    pub duration: Option<Duration>,
    /// Replaces every stage's concurrency.
    pub concurrency: Option<u32>,
}
