//! Traces read for replay: a Chorus timeline or agent op-log, a warp
//! benchmark file or an s3dlio op-log, plain or zstd, read one op at a time
//! (never whole, however long the trace).
//!
//! - [`TraceReader`] detects compression by magic number and the format by
//!   the header (and, for the thirteen columns warp and s3dlio share, by the
//!   first record's `thread`), then yields one [`TraceOp`] per record. An op
//!   name with no Chorus op kind is [`TraceOpKind::Unknown`], not an error:
//!   replay counts and reports such ops.
//! - [`TraceStats::scan`] is one streaming pass: per-kind counts, bytes,
//!   errors and latency histograms (the engine's
//!   [`StageMetrics`](crate::metrics::StageMetrics), so a
//!   replay's summary and its trace's compare on the same percentiles),
//!   unknown ops by name, clients in first-appearance order, span, and
//!   whether the trace is in start order.
//!
//! - [`TraceReader::in_start_order`] puts a nearly sorted trace (s3dlio's,
//!   an agent's log) in start order through a bounded window, as wide as
//!   the scan's `max_disorder_ns`.
//! - [`TraceId`] names a trace file by content (SHA-256 and length): the
//!   controller ships a trace to its agents under that id, and each agent
//!   checks its copy against it.
//!
//! Damage (a bad number or time, a wrong column count, a truncated zstd
//! stream) is an [`OpLogError`] naming file and line, and ends the
//! iteration: every op before it is kept.
//!
//! # What each writer does (read from their sources)
//!
//! - **warp** (`pkg/bench/ops.go`, `Operations.CSV`): tab-separated, header
//!   `idx thread op client_id n_objects bytes endpoint file error start
//!   first_byte end duration_ns` (2020–2024); `cat` appended (2025-01);
//!   `last_byte` before `end` (2026-05). Times are Go `RFC3339Nano`
//!   (trailing zeros trimmed, local offset). `endpoint` and `error` are
//!   CSV-quoted when they hold a tab, quote or line break (so one record
//!   may span lines); the command line follows the records as `# ` lines;
//!   the file is zstd. warp sorts ops by start before writing
//!   (`SortByStartTime` in `cli/benchmark.go`, `benchserver.go`,
//!   `merge.go`): **sorted**. Its op names: `GET PUT DELETE STAT LIST`
//!   and `APPEND RETENTION` (known) and `POST PUTPART SELECT UPLOAD COMMIT` and
//!   the Iceberg `NS_*`, `TABLE_*`, `VIEW_*` ops (unknown).
//! - **s3dlio** (`src/s3_logger.rs`, `src/object_store_logger.rs`,
//!   `src/s3_ops.rs`): the same thirteen columns, zstd, times from
//!   `humantime::format_rfc3339_nanos` (nine digits, `Z`), `thread` a
//!   64-bit hash of the thread id, no quoting, no trailer. Records are
//!   written by a background thread as ops *complete* (through a channel),
//!   so a log is **not sorted by start**: [`TraceStats`] says so and by how
//!   much. Before v0.9.22 (2025-11) `client_id` was empty for object-store
//!   ops. Unless `S3DLIO_OPLOG_LOSSLESS=1`, s3dlio drops records when its
//!   channel is full, without a mark (`idx` is numbered at write): such a
//!   trace lacks ops and nothing here can tell. Its op names: `GET PUT DELETE LIST HEAD STAT GET_RANGE DELETE_BATCH`
//!   (known) and `DELETE_PREFIX CREATE_CONTAINER DELETE_CONTAINER`
//!   (unknown).
//! - **Chorus** (`oplog::record::HEADER`): the thirteen columns plus
//!   `stage`, `warmup`, `retries`; a timeline is sorted by start, an
//!   agent's own log is close to it but not exactly. Warm-up ops are kept
//!   and marked ([`TraceOp::warmup`]).

mod id;
mod names;
mod order;
mod reader;
mod stats;
#[cfg(test)]
mod tests;

pub use id::{TraceHasher, TraceId, sha256_from_hex};
pub use order::InStartOrder;
pub use reader::TraceReader;
pub use stats::{MAX_TRACE_CLIENTS, MAX_UNKNOWN_OP_NAMES, TraceStats};

use crate::op::OpKind;
pub use crate::oplog::OpLogError;
use std::fmt;

/// Which tool wrote a trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TraceFormat {
    /// A Chorus timeline (`runs/<id>/timeline.tsv.zst`) or agent op-log:
    /// the header has `stage`.
    Chorus,
    /// A warp benchmark file (`warp-*.csv.zst`).
    Warp,
    /// An s3dlio op-log (`--op-log`).
    S3dlio,
}

impl TraceFormat {
    /// The format's name in messages and reports.
    pub fn name(self) -> &'static str {
        match self {
            TraceFormat::Chorus => "chorus",
            TraceFormat::Warp => "warp",
            TraceFormat::S3dlio => "s3dlio",
        }
    }
}

impl fmt::Display for TraceFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An op name of a trace: one Chorus can issue, or one it cannot.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TraceOpKind {
    Known(OpKind),
    /// The name as the trace writes it.
    Unknown(String),
}

impl fmt::Display for TraceOpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TraceOpKind::Known(k) => f.write_str(k.log_name()),
            TraceOpKind::Unknown(s) => f.write_str(s),
        }
    }
}

/// One op of a trace, as recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceOp {
    /// 1-based line of the record in the (decompressed) file; the header is
    /// line 1. A warp record spanning lines has its first line's number.
    pub line: u64,
    /// Start, nanoseconds since the Unix epoch, on the writer's clock.
    pub start_ns: i64,
    /// `end - start` (`duration_ns` when `end` is empty); never negative.
    pub duration_ns: i64,
    /// The `client_id` column; empty when absent.
    pub client: String,
    pub op: TraceOpKind,
    /// The `file` column: object key (a list's prefix), as recorded.
    pub key: String,
    /// The `bytes` column.
    pub size: u64,
    /// The `n_objects` column; 1 when the column is absent.
    pub n_objects: u32,
    /// The `error` column is not empty.
    pub failed: bool,
    /// A Chorus op from a stage's warm-up (always false for warp and
    /// s3dlio).
    pub warmup: bool,
}

impl TraceOp {
    /// End, nanoseconds since the Unix epoch.
    pub fn end_ns(&self) -> i64 {
        self.start_ns.saturating_add(self.duration_ns)
    }
}
