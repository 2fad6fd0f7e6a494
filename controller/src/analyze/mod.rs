//! `controller analyze`: one streaming pass over a merged timeline (or any
//! op-log) into per-stage statistics.
//!
//! Memory is bounded by histograms, never records: per stage, one summary
//! histogram per op, one per op × size bucket, TTFB per op, one small one
//! per agent, endpoint and (op, segment), with at most
//! [`window::MAX_SEGMENTS`] segments (longer stages get longer segments).
//!
//! What is counted:
//! - Warm-up records (`warmup` = 1) are skipped, as in the run's summary.
//! - `--op`, `--agent`, `--stage`, `--from`/`--to` (by op start) filter.
//! - Per-op latency uses the summary's histogram settings, so its
//!   percentiles equal `summary.json`'s when nothing is filtered.
//! - An op falls in the segment in which it ended (throughput is what
//!   completed). Segments start at the stage's first op. The common window
//!   (latest first start to earliest last end over agents) marks which
//!   segments are steady: fastest / median / slowest are taken among
//!   segments wholly inside it.
//!
//! Submodules: [`window`] (time arguments, segment lengths, the common
//! window), [`stats`] (accumulators and rows), [`render`] (text and CSV),
//! [`client`] (a run directory's client health per stage, beside the
//! timeline's figures).

pub mod client;
pub mod render;
pub mod stats;
pub mod window;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use chorus_common::clock::rfc3339_ns;
use chorus_common::metrics::{LatencySummary, OpStats};
use chorus_common::op::OpKind;
use chorus_common::oplog::{OpLogReader, OpRecord};
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::EXIT_BAD_INPUT;
use crate::cli::{AnalyzeArgs, OutputFormat};
use stats::{COARSE_SIGFIG, CurvePoint, FINE_SIGFIG, Row, Tally};
use window::{AgentSpans, SegmentLen, TimeArg};

/// What to analyze and how, checked before any reading.
#[derive(Clone, Debug)]
pub struct Config {
    pub segment: SegmentLen,
    pub op: Option<OpKind>,
    pub agent: Option<String>,
    pub stage: Option<String>,
    pub from: Option<TimeArg>,
    pub to: Option<TimeArg>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            segment: SegmentLen::Auto,
            op: None,
            agent: None,
            stage: None,
            from: None,
            to: None,
        }
    }
}

/// The result of an analysis, as written by `--json`.
#[derive(Clone, Debug, Serialize)]
pub struct Analysis {
    /// The timeline file read.
    pub source: String,
    /// From `run.json` when a run directory was given.
    pub run_id: Option<String>,
    pub records_read: u64,
    pub warmup_skipped: u64,
    pub filtered_out: u64,
    /// Set when the input is damaged: file, line and what; the statistics
    /// cover the records before the damage.
    pub damaged: Option<String>,
    pub stages: Vec<StageAnalysis>,
    /// The stages' answers from `run.json` (a search's capacity, a steady
    /// state) when a run directory was given.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub verdicts: Vec<crate::run::kinds::Verdict>,
}

#[derive(Clone, Debug, Serialize)]
pub struct StageAnalysis {
    /// The `stage` column (empty for warp/s3dlio logs).
    pub name: String,
    pub first_start: String,
    pub last_end: String,
    /// First start to last end of the ops counted.
    pub elapsed_s: f64,
    pub agents: usize,
    /// Where every agent was active; `None` if they never overlapped.
    pub common_window: Option<Window>,
    /// One row per op, then `ALL`.
    pub ops: Vec<Row>,
    pub sizes: Vec<SizeRow>,
    /// Time to first byte per op, where recorded.
    pub ttfb: Vec<TtfbRow>,
    pub errors: Vec<ErrorRow>,
    pub per_agent: Vec<Row>,
    /// Each agent's ops/s in each segment (the report's heatmap).
    #[serde(skip)]
    pub agent_segments: Vec<AgentSegments>,
    pub per_endpoint: Vec<Row>,
    pub segment_s: f64,
    pub segments: Vec<Segment>,
    pub steady: Option<Steady>,
    /// Latency distribution per op (successful ops).
    pub latency_curve: Vec<OpCurve>,
    /// A run directory's client health of this stage (`run.json`, else
    /// `series.csv`); absent for a bare op-log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<client::StageClients>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Window {
    pub from: String,
    pub to: String,
    pub seconds: f64,
    /// Seconds from the stage's first op, for `--from`/`--to`.
    pub from_s: f64,
    pub to_s: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct SizeRow {
    pub op: String,
    pub bucket: String,
    #[serde(flatten)]
    pub row: Row,
}

#[derive(Clone, Debug, Serialize)]
pub struct TtfbRow {
    pub op: String,
    pub count: u64,
    pub ttfb_us: LatencySummary,
}

#[derive(Clone, Debug, Serialize)]
pub struct ErrorRow {
    pub class: String,
    pub op: String,
    pub count: u64,
}

/// One agent's throughput over a stage's segments.
#[derive(Clone, Debug, Serialize)]
pub struct AgentSegments {
    pub agent: String,
    /// Ops/s in each segment, from segment 0 (ops ending in it).
    pub ops_per_s: Vec<f64>,
}

/// One time segment of a stage.
#[derive(Clone, Debug, Serialize)]
pub struct Segment {
    pub index: usize,
    pub start: String,
    /// Seconds from the stage's first op.
    pub start_s: f64,
    /// Wholly inside the common window.
    pub steady: bool,
    pub all: SegmentOp,
    pub ops: Vec<SegmentOp>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SegmentOp {
    pub op: String,
    pub count: u64,
    pub errors: u64,
    pub ops_per_s: f64,
    pub mib_per_s: f64,
    pub p50_us: f64,
    pub p99_us: f64,
}

/// Fastest, median and slowest segment, by MiB/s when the stage moved
/// bytes, else by ops/s.
#[derive(Clone, Debug, Serialize)]
pub struct Steady {
    pub by: String,
    /// Segments considered; `only_steady` false means none lay wholly inside
    /// the common window and all were used.
    pub segments: usize,
    pub only_steady: bool,
    pub fastest: SegmentPick,
    pub median: SegmentPick,
    pub slowest: SegmentPick,
}

#[derive(Clone, Debug, Serialize)]
pub struct SegmentPick {
    pub index: usize,
    pub start_s: f64,
    pub ops_per_s: f64,
    pub mib_per_s: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct OpCurve {
    pub op: String,
    pub points: Vec<CurvePoint>,
}

/// Where the timeline of `input` is: the file itself, or a run directory's
/// `timeline.tsv.zst` (with the run id from its `run.json`).
pub fn locate(input: &Path) -> (PathBuf, Option<String>) {
    if input.is_dir() {
        let run_id = std::fs::read_to_string(input.join("run.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["run_id"].as_str().map(String::from));
        (input.join("timeline.tsv.zst"), run_id)
    } else {
        (input.to_path_buf(), None)
    }
}

/// Reads `input` (run directory or op-log) once and computes the analysis.
/// An unopenable file is an error; a damaged one gives the statistics of
/// the records before the damage, with [`Analysis::damaged`] set.
pub fn analyze(input: &Path, config: &Config) -> anyhow::Result<Analysis> {
    let (path, run_id) = locate(input);
    let reader = OpLogReader::open(&path)?;
    let mut acc = Accumulator::new(config);
    let mut damaged = None;
    for item in reader {
        match item {
            Ok(rec) => acc.add(&rec),
            Err(e) => {
                damaged = Some(e.to_string());
                break;
            }
        }
    }
    let mut analysis = acc.finish(path.display().to_string(), run_id, damaged);
    if input.is_dir() {
        let mut clients = client::read(input, config.agent.as_deref());
        for s in &mut analysis.stages {
            s.client = clients.remove(&s.name);
        }
    }
    analysis.verdicts = verdicts(input);
    Ok(analysis)
}

/// The `verdicts` of a run directory's `run.json`; none for a bare
/// timeline or a run.json without them.
fn verdicts(input: &Path) -> Vec<crate::run::kinds::Verdict> {
    #[derive(serde::Deserialize)]
    struct Verdicts {
        #[serde(default)]
        verdicts: Vec<crate::run::kinds::Verdict>,
    }
    std::fs::read_to_string(input.join("run.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Verdicts>(&t).ok())
        .map(|v| v.verdicts)
        .unwrap_or_default()
}

/// State of the one pass.
struct Accumulator<'a> {
    config: &'a Config,
    /// Absolute filter bounds, resolved at the first record.
    bounds: Option<(i64, i64)>,
    records_read: u64,
    warmup_skipped: u64,
    filtered_out: u64,
    stages: Vec<StageAcc>,
    /// Index of the stage of the previous record (records come in runs).
    last_stage: usize,
}

impl<'a> Accumulator<'a> {
    fn new(config: &'a Config) -> Self {
        Accumulator {
            config,
            bounds: None,
            records_read: 0,
            warmup_skipped: 0,
            filtered_out: 0,
            stages: Vec::new(),
            last_stage: 0,
        }
    }

    fn add(&mut self, rec: &OpRecord) {
        self.records_read += 1;
        let (from, to) = *self.bounds.get_or_insert_with(|| {
            let origin = rec.start_ns;
            (
                self.config.from.map_or(i64::MIN, |t| t.resolve(origin)),
                self.config.to.map_or(i64::MAX, |t| t.resolve(origin)),
            )
        });
        if rec.warmup {
            self.warmup_skipped += 1;
            return;
        }
        let c = self.config;
        if c.op.is_some_and(|op| op != rec.op)
            || c.agent.as_deref().is_some_and(|a| a != rec.client_id)
            || c.stage.as_deref().is_some_and(|s| s != rec.stage)
            || rec.start_ns < from
            || rec.start_ns >= to
        {
            self.filtered_out += 1;
            return;
        }
        let i = match self.stages.get(self.last_stage) {
            Some(s) if s.name == rec.stage => self.last_stage,
            _ => match self.stages.iter().position(|s| s.name == rec.stage) {
                Some(i) => i,
                None => {
                    self.stages
                        .push(StageAcc::new(&rec.stage, rec.start_ns, c.segment));
                    self.stages.len() - 1
                }
            },
        };
        self.last_stage = i;
        self.stages[i].add(rec);
    }

    /// The pass's figures made into the analysis, stage by stage. Long
    /// because each table (ops, sizes, agents, endpoints, errors, segments)
    /// is a few lines of its own, in the order the analysis lists them.
    fn finish(self, source: String, run_id: Option<String>, damaged: Option<String>) -> Analysis {
        Analysis {
            source,
            run_id,
            records_read: self.records_read,
            warmup_skipped: self.warmup_skipped,
            filtered_out: self.filtered_out,
            damaged,
            stages: self.stages.into_iter().map(StageAcc::finish).collect(),
            verdicts: Vec::new(),
        }
    }
}

/// One stage's accumulators.
struct StageAcc {
    name: String,
    /// Start of segment 0: the stage's first op start.
    origin_ns: i64,
    first_start_ns: i64,
    last_end_ns: i64,
    ops: BTreeMap<OpKind, OpStats>,
    ttfb: BTreeMap<OpKind, Histogram<u64>>,
    sizes: BTreeMap<(OpKind, usize), Tally>,
    errors: BTreeMap<(String, OpKind), u64>,
    agents: BTreeMap<String, Tally>,
    endpoints: BTreeMap<String, Tally>,
    spans: AgentSpans,
    segment_ns: i64,
    segment_limit: usize,
    segments: Vec<BTreeMap<OpKind, Tally>>,
    /// Ops per segment of each agent (the report's heatmap): a counter
    /// per agent per segment, bounded by `segment_limit` like `segments`.
    agent_segments: BTreeMap<String, Vec<u64>>,
}

/// Adds to the tally of `key`, allocating the key only when it is new.
fn tally_for<'m>(map: &'m mut BTreeMap<String, Tally>, key: &str, sigfig: u8) -> &'m mut Tally {
    if !map.contains_key(key) {
        map.insert(key.to_string(), Tally::new(sigfig));
    }
    map.get_mut(key).expect("inserted above")
}

impl StageAcc {
    fn new(name: &str, origin_ns: i64, segment: SegmentLen) -> Self {
        let (segment_ns, segment_limit) = segment.initial();
        StageAcc {
            name: name.to_string(),
            origin_ns,
            first_start_ns: i64::MAX,
            last_end_ns: i64::MIN,
            ops: BTreeMap::new(),
            ttfb: BTreeMap::new(),
            sizes: BTreeMap::new(),
            errors: BTreeMap::new(),
            agents: BTreeMap::new(),
            endpoints: BTreeMap::new(),
            spans: AgentSpans::default(),
            segment_ns,
            segment_limit,
            segments: Vec::new(),
            agent_segments: BTreeMap::new(),
        }
    }

    fn add(&mut self, rec: &OpRecord) {
        let ok = !rec.is_error();
        let latency_ns = rec.duration_ns().max(0) as u64;
        let stats = self.ops.entry(rec.op).or_default();
        stats.record(latency_ns, rec.bytes, ok);
        if ok && rec.op == OpKind::DeleteBatch {
            stats.objects = stats.objects.saturating_add(u64::from(rec.n_objects));
        }
        if ok && let Some(fb) = rec.first_byte_ns {
            let h = self
                .ttfb
                .entry(rec.op)
                .or_insert_with(|| stats::histogram(FINE_SIGFIG));
            stats::record(h, fb.saturating_sub(rec.start_ns).max(0) as u64);
        }
        // A part of a large op (GET_PART, PUT_PART) gets its own latency
        // and first-byte rows, and nothing else: its op, logged beside it,
        // already counts its object, bytes and time once.
        if rec.op.is_part() {
            return;
        }
        self.first_start_ns = self.first_start_ns.min(rec.start_ns);
        self.last_end_ns = self.last_end_ns.max(rec.end_ns);
        self.sizes
            .entry((rec.op, stats::size_bucket(rec.bytes)))
            .or_insert_with(|| Tally::new(FINE_SIGFIG))
            .record(latency_ns, rec.bytes, ok);
        if !ok {
            let class = stats::error_class(&rec.error);
            match self.errors.get_mut(&(class.to_string(), rec.op)) {
                Some(n) => *n += 1,
                None => {
                    self.errors.insert((class.to_string(), rec.op), 1);
                }
            }
        }
        tally_for(&mut self.agents, &rec.client_id, COARSE_SIGFIG)
            .record(latency_ns, rec.bytes, ok);
        tally_for(&mut self.endpoints, &rec.endpoint, COARSE_SIGFIG)
            .record(latency_ns, rec.bytes, ok);
        self.spans.add(&rec.client_id, rec.start_ns, rec.end_ns);

        // A record before the origin (an unsorted input) goes to segment 0.
        let offset = rec.end_ns.saturating_sub(self.origin_ns).max(0);
        let mut index = (offset / self.segment_ns) as usize;
        while index >= self.segment_limit {
            self.coarsen();
            index = (offset / self.segment_ns) as usize;
        }
        if self.segments.len() <= index {
            self.segments.resize_with(index + 1, BTreeMap::new);
        }
        let counts = match self.agent_segments.get_mut(rec.client_id.as_str()) {
            Some(c) => c,
            None => self
                .agent_segments
                .entry(rec.client_id.clone())
                .or_default(),
        };
        if counts.len() <= index {
            counts.resize(index + 1, 0);
        }
        counts[index] += 1;
        self.segments[index]
            .entry(rec.op)
            .or_insert_with(|| Tally::new(COARSE_SIGFIG))
            .record(latency_ns, rec.bytes, ok);
    }

    /// Makes segments longer by [`window::coarsen_factor`], merging groups.
    fn coarsen(&mut self) {
        let factor = window::coarsen_factor(self.segment_ns) as usize;
        self.segment_ns *= factor as i64;
        for counts in self.agent_segments.values_mut() {
            let merged = counts.chunks(factor).map(|c| c.iter().sum()).collect();
            *counts = merged;
        }
        let old = std::mem::take(&mut self.segments);
        for (i, seg) in old.into_iter().enumerate() {
            let j = i / factor;
            if self.segments.len() <= j {
                self.segments.resize_with(j + 1, BTreeMap::new);
            }
            for (op, t) in seg {
                match self.segments[j].get_mut(&op) {
                    Some(into) => into.merge(&t),
                    None => {
                        self.segments[j].insert(op, t);
                    }
                }
            }
        }
    }

    fn finish(self) -> StageAnalysis {
        let elapsed_s = if self.last_end_ns > self.first_start_ns {
            (self.last_end_ns - self.first_start_ns) as f64 / 1e9
        } else {
            0.0
        };
        let mut ops: Vec<Row> = OpKind::ALL
            .iter()
            .filter_map(|op| {
                let s = self.ops.get(op)?;
                Some(Row::from_op_stats(op.log_name(), s, elapsed_s))
            })
            .collect();
        // Ops only: a part's bytes are its op's.
        let mut all = OpStats::new();
        for (_, s) in self.ops.iter().filter(|(op, _)| !op.is_part()) {
            all.merge(s);
        }
        ops.push(Row::from_op_stats("ALL", &all, elapsed_s));

        let sizes = self
            .sizes
            .iter()
            .map(|((op, b), t)| SizeRow {
                op: op.log_name().to_string(),
                bucket: stats::size_bucket_label(*b),
                row: t.row(&stats::size_bucket_label(*b), elapsed_s),
            })
            .collect();
        let ttfb = self
            .ttfb
            .iter()
            .map(|(op, h)| TtfbRow {
                op: op.log_name().to_string(),
                count: h.len(),
                ttfb_us: LatencySummary::from_histogram(h),
            })
            .collect();
        let mut errors: Vec<ErrorRow> = self
            .errors
            .iter()
            .map(|((class, op), n)| ErrorRow {
                class: class.clone(),
                op: op.log_name().to_string(),
                count: *n,
            })
            .collect();
        errors.sort_by(|a, b| b.count.cmp(&a.count).then(a.class.cmp(&b.class)));
        let rows = |m: &BTreeMap<String, Tally>| -> Vec<Row> {
            m.iter().map(|(k, t)| t.row(k, elapsed_s)).collect()
        };
        let common = self.spans.common_window();
        let seconds_from = |t: i64| (t - self.origin_ns) as f64 / 1e9;
        let common_window = common.map(|(from, to)| Window {
            from: rfc3339_ns(from),
            to: rfc3339_ns(to),
            seconds: (to - from) as f64 / 1e9,
            from_s: seconds_from(from),
            to_s: seconds_from(to),
        });
        let segments = self.segments(common);
        let steady = steady(&segments, self.ops.values().any(|s| s.bytes > 0));
        let latency_curve = OpKind::ALL
            .iter()
            .filter_map(|op| {
                let s = self.ops.get(op)?;
                Some(OpCurve {
                    op: op.log_name().to_string(),
                    points: stats::percentile_curve(&s.latency),
                })
            })
            .filter(|c| !c.points.is_empty())
            .collect();
        StageAnalysis {
            name: self.name.clone(),
            first_start: rfc3339_ns(self.first_start_ns),
            last_end: rfc3339_ns(self.last_end_ns),
            elapsed_s,
            agents: self.spans.agents(),
            common_window,
            ops,
            sizes,
            ttfb,
            errors,
            per_agent: rows(&self.agents),
            agent_segments: self
                .agent_segments
                .iter()
                .map(|(agent, counts)| AgentSegments {
                    agent: agent.clone(),
                    ops_per_s: counts
                        .iter()
                        .map(|&n| n as f64 * 1e9 / self.segment_ns as f64)
                        .collect(),
                })
                .collect(),
            per_endpoint: rows(&self.endpoints),
            segment_s: self.segment_ns as f64 / 1e9,
            segments,
            steady,
            latency_curve,
            client: None,
        }
    }

    fn segments(&self, common: Option<(i64, i64)>) -> Vec<Segment> {
        let len_s = self.segment_ns as f64 / 1e9;
        let seg_op = |op: &str, t: &Tally| {
            let r = t.row(op, len_s);
            SegmentOp {
                op: op.to_string(),
                count: r.count,
                errors: r.errors,
                ops_per_s: r.ops_per_s,
                mib_per_s: r.mib_per_s,
                p50_us: r.latency_us.p50,
                p99_us: r.latency_us.p99,
            }
        };
        self.segments
            .iter()
            .enumerate()
            .map(|(index, seg)| {
                let start = self.origin_ns + index as i64 * self.segment_ns;
                let end = start + self.segment_ns;
                let mut all = Tally::new(COARSE_SIGFIG);
                for t in seg.values() {
                    all.merge(t);
                }
                Segment {
                    index,
                    start: rfc3339_ns(start),
                    start_s: index as f64 * len_s,
                    steady: common.is_some_and(|(f, t)| start >= f && end <= t),
                    all: seg_op("ALL", &all),
                    ops: seg.iter().map(|(op, t)| seg_op(op.log_name(), t)).collect(),
                }
            })
            .collect()
    }
}

/// Fastest, median and slowest among steady segments (all segments when
/// none is steady).
fn steady(segments: &[Segment], by_bytes: bool) -> Option<Steady> {
    let mut pool: Vec<&Segment> = segments.iter().filter(|s| s.steady).collect();
    let only_steady = !pool.is_empty();
    if pool.is_empty() {
        pool = segments.iter().collect();
    }
    if pool.is_empty() {
        return None;
    }
    let key = |s: &Segment| {
        if by_bytes {
            s.all.mib_per_s
        } else {
            s.all.ops_per_s
        }
    };
    pool.sort_by(|a, b| key(a).total_cmp(&key(b)).then(a.index.cmp(&b.index)));
    let pick = |s: &Segment| SegmentPick {
        index: s.index,
        start_s: s.start_s,
        ops_per_s: s.all.ops_per_s,
        mib_per_s: s.all.mib_per_s,
    };
    Some(Steady {
        by: if by_bytes { "MiB/s" } else { "ops/s" }.to_string(),
        segments: pool.len(),
        only_steady,
        fastest: pick(pool[pool.len() - 1]),
        median: pick(pool[pool.len() / 2]),
        slowest: pick(pool[0]),
    })
}

/// Checks the flags into a [`Config`].
fn config_from_args(args: &AnalyzeArgs) -> Result<Config, String> {
    let segment = SegmentLen::parse(&args.segment)?;
    let op = args
        .op
        .as_deref()
        .map(|o| {
            o.parse::<OpKind>()
                .or_else(|_| OpKind::from_plan_name(&o.to_lowercase()).ok_or(()))
                .map_err(|_| format!("--op {o}: unknown op (GET, PUT, STAT, DELETE, LIST, …)"))
        })
        .transpose()?;
    let time = |flag: &str, v: &Option<String>| {
        v.as_deref()
            .map(|s| TimeArg::parse(s).map_err(|e| format!("{flag}: {e}")))
            .transpose()
    };
    Ok(Config {
        segment,
        op,
        agent: args.agent.clone(),
        stage: args.stage.clone(),
        from: time("--from", &args.from)?,
        to: time("--to", &args.to)?,
    })
}

/// `controller analyze`: exit 0, 1 when the input is unreadable or
/// damaged (what was read is still printed), 2 for bad flags.
pub fn analyze_command(args: AnalyzeArgs) -> ExitCode {
    let config = match config_from_args(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let analysis = match analyze(&args.input, &config) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let text = match args.format() {
        OutputFormat::Text => render::text(&analysis),
        OutputFormat::Csv => render::csv(&analysis),
        OutputFormat::Json => serde_json::to_string_pretty(&analysis)
            .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}")),
    };
    print_stdout(&text);
    if let Some(out) = &args.html {
        let title = analysis
            .run_id
            .clone()
            .unwrap_or_else(|| analysis.source.clone());
        let page = crate::report::html(&title, &analysis);
        if let Err(e) = std::fs::write(out, page) {
            eprintln!("error: cannot write {}: {e}", out.display());
            return ExitCode::FAILURE;
        }
    }
    if let Some(d) = &analysis.damaged {
        eprintln!("error: damaged input, statistics cover the records before it: {d}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// Prints `text` with a final newline; a closed pipe (`| head`) is not an
/// error worth a panic.
pub fn print_stdout(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", text.trim_end()).and_then(|()| out.flush());
}
