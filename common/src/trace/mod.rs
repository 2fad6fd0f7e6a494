//! Reading traces for replay (interim: Chorus op-logs through the op-log
//! reader; the full reader with warp and s3dlio formats replaces this).

use std::path::Path;

use crate::op::OpKind;
use crate::oplog::{OpLogError, OpLogReader};

/// An op's kind in a trace: one Chorus has, or a name it does not know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TraceOpKind {
    Known(OpKind),
    Unknown(String),
}

/// One op of a trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceOp {
    pub line: u64,
    pub start_ns: i64,
    pub duration_ns: i64,
    pub client: String,
    pub op: TraceOpKind,
    pub key: String,
    pub size: u64,
    pub n_objects: u32,
    pub failed: bool,
    pub warmup: bool,
}

/// A trace, streamed.
pub struct TraceReader(OpLogReader);

impl TraceReader {
    pub fn open(path: &Path) -> Result<TraceReader, OpLogError> {
        OpLogReader::open(path).map(TraceReader)
    }
}

impl Iterator for TraceReader {
    type Item = Result<TraceOp, OpLogError>;

    fn next(&mut self) -> Option<Self::Item> {
        let line = self.0.lines_read() + 1;
        self.0.next().map(|r| {
            r.map(|r| TraceOp {
                line,
                start_ns: r.start_ns,
                duration_ns: r.duration_ns(),
                client: r.client_id.clone(),
                op: TraceOpKind::Known(r.op),
                failed: r.is_error(),
                key: r.file,
                size: r.bytes,
                n_objects: r.n_objects,
                warmup: r.warmup,
            })
        })
    }
}

/// One streaming pass over a trace (interim).
#[derive(Debug, Default)]
pub struct TraceStats {
    pub ops: u64,
    pub metrics: crate::metrics::StageMetrics,
    pub unknown: std::collections::BTreeMap<String, u64>,
    pub clients: Vec<String>,
    pub first_start_ns: Option<i64>,
    pub last_end_ns: Option<i64>,
    pub sorted: bool,
}

impl TraceStats {
    pub fn scan(path: &Path) -> Result<TraceStats, OpLogError> {
        let mut s = TraceStats {
            sorted: true,
            ..Default::default()
        };
        let mut seen = std::collections::HashSet::new();
        let mut last = i64::MIN;
        for op in TraceReader::open(path)? {
            let op = op?;
            s.ops += 1;
            if op.start_ns < last {
                s.sorted = false;
            }
            last = last.max(op.start_ns);
            s.first_start_ns = Some(s.first_start_ns.map_or(op.start_ns, |f| f.min(op.start_ns)));
            let end = op.start_ns.saturating_add(op.duration_ns);
            s.last_end_ns = Some(s.last_end_ns.map_or(end, |e| e.max(end)));
            if seen.insert(op.client.clone()) {
                s.clients.push(op.client.clone());
            }
            match op.op {
                TraceOpKind::Known(k) => {
                    s.metrics
                        .record(k, op.duration_ns.max(0) as u64, op.size, !op.failed)
                }
                TraceOpKind::Unknown(n) => *s.unknown.entry(n).or_default() += 1,
            }
        }
        Ok(s)
    }

    /// From the first start to the last end, seconds.
    pub fn span_s(&self) -> f64 {
        match (self.first_start_ns, self.last_end_ns) {
            (Some(a), Some(b)) if b > a => (b - a) as f64 / 1e9,
            _ => 0.0,
        }
    }
}
