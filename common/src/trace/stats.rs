//! [`TraceStats`]: what a trace holds, in one streaming pass.
//!
//! Known ops go into the engine's own [`StageMetrics`] (`record(op,
//! duration, bytes, ok)`: failed ops count, but neither their bytes nor
//! their latency), so a replay's summary and its trace's are compared on the
//! same histograms and percentiles. Warm-up ops of a Chorus trace go into
//! `warmup`, not `metrics`, as the engine keeps them out of its summary.
//!
//! Order: replay hands each agent its share in start order. warp and Chorus
//! timelines are sorted; s3dlio writes ops as they complete, so its logs are
//! not. The scan does not reorder: it reports `sorted` and
//! `max_disorder_ns`, the largest amount by which an op starts before an
//! op on an earlier line: a reorder window that always suffices
//! ([`TraceReader::in_start_order`]).

use super::{TraceFormat, TraceOpKind, TraceReader};
use crate::metrics::StageMetrics;
use crate::oplog::OpLogError;
use rustc_hash::FxHashSet;
use std::collections::BTreeMap;
use std::path::Path;

/// Most distinct `client_id`s a trace may have: replay maps each to an
/// agent, and the names are held in memory.
pub const MAX_TRACE_CLIENTS: usize = 1_000_000;

/// Most distinct unknown op names counted; more means the `op` column is
/// not op names.
pub const MAX_UNKNOWN_OP_NAMES: usize = 4_096;

/// A trace's contents, from one pass. Known ops are recorded as the engine
/// records them (`StageMetrics::record(op, duration, bytes, ok)`: failed
/// ops count, but neither their bytes nor their latency), warm-up ops
/// apart. The scan does not reorder: `sorted` and `max_disorder_ns` say
/// whether, and by how much at most, a reader must reorder to replay in
/// start order.
#[derive(Clone, Debug, PartialEq)]
pub struct TraceStats {
    pub format: TraceFormat,
    /// Every op read, known or not, warm-up included.
    pub ops: u64,
    /// Ops of known kinds outside warm-up: count, errors, bytes and
    /// latency (duration) per kind.
    pub metrics: StageMetrics,
    /// Ops of known kinds in a Chorus stage's warm-up, the same way.
    pub warmup: StageMetrics,
    /// Ops with no Chorus op kind, by name as written.
    pub unknown: BTreeMap<String, u64>,
    /// `client_id`s in order of first appearance (`""` when the trace has
    /// none).
    pub clients: Vec<String>,
    /// Earliest start and latest end (ns since the epoch); None when empty.
    pub first_start_ns: Option<i64>,
    pub last_end_ns: Option<i64>,
    /// Every op starts no earlier than the op on the line before it.
    pub sorted: bool,
    /// Largest amount (ns) by which an op starts before the latest start
    /// on earlier lines; 0 when sorted.
    pub max_disorder_ns: i64,
}

impl TraceStats {
    /// Reads `path` once. A damaged line ends the scan with its located
    /// error (a trace is replayed whole or not at all).
    pub fn scan(path: &Path) -> Result<TraceStats, OpLogError> {
        Self::scan_reader(TraceReader::open(path)?)
    }

    /// Scans an opened reader to its end.
    pub fn scan_reader(mut reader: TraceReader) -> Result<TraceStats, OpLogError> {
        let mut stats = TraceStats {
            format: reader.format(),
            ops: 0,
            metrics: StageMetrics::new(),
            warmup: StageMetrics::new(),
            unknown: BTreeMap::new(),
            clients: Vec::new(),
            first_start_ns: None,
            last_end_ns: None,
            sorted: true,
            max_disorder_ns: 0,
        };
        let mut seen = FxHashSet::default();
        let mut max_start = i64::MIN;
        let path = reader.path().to_path_buf();
        for op in reader.by_ref() {
            let op = op?;
            let located = |msg: String| OpLogError::Parse {
                path: path.clone(),
                line: op.line,
                msg,
            };
            stats.ops += 1;
            match &op.op {
                TraceOpKind::Known(kind) => {
                    let m = if op.warmup {
                        &mut stats.warmup
                    } else {
                        &mut stats.metrics
                    };
                    m.record(*kind, op.duration_ns as u64, op.size, !op.failed);
                }
                TraceOpKind::Unknown(name) => {
                    if let Some(n) = stats.unknown.get_mut(name) {
                        *n += 1;
                    } else if stats.unknown.len() >= MAX_UNKNOWN_OP_NAMES {
                        return Err(located(format!(
                            "more than {MAX_UNKNOWN_OP_NAMES} distinct unknown op names (is `op` an op column?)"
                        )));
                    } else {
                        stats.unknown.insert(name.clone(), 1);
                    }
                }
            }
            if !seen.contains(op.client.as_str()) {
                if seen.len() >= MAX_TRACE_CLIENTS {
                    return Err(located(format!(
                        "more than {MAX_TRACE_CLIENTS} distinct client ids"
                    )));
                }
                seen.insert(op.client.clone());
                stats.clients.push(op.client.clone());
            }
            if op.start_ns < max_start {
                stats.sorted = false;
                stats.max_disorder_ns = stats.max_disorder_ns.max(max_start - op.start_ns);
            }
            max_start = max_start.max(op.start_ns);
            stats.first_start_ns = Some(
                stats
                    .first_start_ns
                    .map_or(op.start_ns, |s| s.min(op.start_ns)),
            );
            stats.last_end_ns = Some(
                stats
                    .last_end_ns
                    .map_or(op.end_ns(), |e| e.max(op.end_ns())),
            );
        }
        Ok(stats)
    }

    /// Last end minus first start, in ns (0 when empty).
    pub fn span_ns(&self) -> i64 {
        match (self.first_start_ns, self.last_end_ns) {
            (Some(s), Some(e)) => e.saturating_sub(s),
            _ => 0,
        }
    }

    /// Ops with no Chorus op kind, over all names.
    pub fn unknown_ops(&self) -> u64 {
        self.unknown.values().sum()
    }
}
