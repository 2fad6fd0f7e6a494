//! The op-log: one record per operation, written by a background writer,
//! read back, and merged across agents into one clock-corrected timeline.
//!
//! # Format
//!
//! A zstd-compressed TSV file (one or more concatenated zstd frames):
//!
//! - The first line is the header: [`HEADER`] joined by tabs. The first
//!   thirteen columns are warp's and s3dlio's, in their order, so their
//!   tools read our logs; `stage` is ours and comes last.
//! - Then one line per record, `\n`-terminated, columns in header order.
//! - `start`, `first_byte` and `end` are RFC 3339 UTC times with exactly nine
//!   fractional digits and `Z` (`2026-11-23T21:56:45.123456789Z`), so string
//!   order is time order. `first_byte` is empty when unknown (e.g. a PUT).
//! - `duration_ns` is `end - start` in nanoseconds; readers treat `end` as
//!   authoritative and only use `duration_ns` when `end` is empty.
//! - `error` is empty for a successful op.
//! - TSV cannot escape, so tabs, newlines and carriage returns inside string
//!   fields (keys, endpoints, error text) are written as spaces.
//!
//! Times in an agent's log are on that agent's clock; [`merge_files`]
//! subtracts each agent's measured offset and sorts by corrected start.
//!
//! The reader maps columns by header name, so it also reads warp/s3dlio logs
//! (13 columns, `HEAD` for a stat, local `+HH:MM` offsets), plain or zstd.

mod batch;
mod frames;
pub(crate) mod lines;
pub mod merge;
mod prefetch;
pub mod reader;
pub mod record;
pub mod spool;
pub mod writer;

pub use batch::{EntryKey, LogBatch, LogContext, LogEntry};
pub use merge::{MergeInput, MergeStats, merge_files, write_records};
pub use reader::{OpLogError, OpLogReader};
pub use record::{HEADER, OpRecord, header_line};
pub use spool::{LogEncoding, SpoolWriter, is_spool, open_log_text};
pub use writer::{
    OpLogClosed, OpLogFormat, OpLogSender, OpLogWriter, WriterStats, spawn_writer, spawn_writer_as,
};

/// The first four bytes of every zstd frame (RFC 8878), used to tell a
/// compressed log from a plain TSV one.
pub const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

#[cfg(test)]
pub(crate) mod test_util {
    use super::OpRecord;
    use crate::op::OpKind;

    /// A deterministic record; `n` varies every field.
    pub fn record(n: u64, client: &str) -> OpRecord {
        let start_ns = 1_795_471_005_000_000_000 + (n as i64 * 7_919 % 1_000_003) * 1_000;
        OpRecord {
            idx: n,
            thread: n % 8,
            op: OpKind::ALL[(n % 5) as usize],
            client_id: client.to_string(),
            n_objects: 1,
            bytes: n * 13 % 65_536,
            endpoint: format!("http://10.0.0.{}:9000", n % 4),
            file: format!("bucket/obj-{n:08}"),
            error: if n.is_multiple_of(11) {
                format!("timeout: after {n} ms")
            } else {
                String::new()
            },
            start_ns,
            first_byte_ns: if n.is_multiple_of(3) {
                None
            } else {
                Some(start_ns + 500)
            },
            end_ns: start_ns + 1_000 + (n as i64 % 977),
            stage: "load".to_string(),
            warmup: n.is_multiple_of(7),
            retries: (n % 3) as u32,
            lag_ns: n.is_multiple_of(5).then_some(n * 1_000),
        }
    }
}
