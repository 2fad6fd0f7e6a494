//! One op-log record: the columns of warp and s3dlio op-logs, plus ours at
//! the end.

use crate::clock::format_rfc3339_ns;
use crate::op::OpKind;
use std::fmt::Write as _;

/// The header line of every op-log and timeline, in column order. The first
/// thirteen columns are those of warp and s3dlio; `stage`, `warmup` and
/// `retries` are ours and come last so their readers ignore them.
pub const HEADER: [&str; 16] = [
    "idx",
    "thread",
    "op",
    "client_id",
    "n_objects",
    "bytes",
    "endpoint",
    "file",
    "error",
    "start",
    "first_byte",
    "end",
    "duration_ns",
    "stage",
    "warmup",
    "retries",
];

/// Longest string field written, in bytes; longer ones (a store's HTML
/// error page as error text, say) are cut at a character boundary. This keeps
/// every line well under the reader's line limit.
pub const MAX_FIELD_BYTES: usize = 64 * 1024;

/// One operation as it happened. Times are nanoseconds since the Unix epoch
/// on the clock of the agent that did the op (raw, uncorrected) until a
/// merge applies that agent's clock correction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpRecord {
    /// Sequence number of the op within its agent's log.
    pub idx: u64,
    /// Worker that issued the op.
    pub thread: u64,
    pub op: OpKind,
    /// The agent id.
    pub client_id: String,
    pub n_objects: u32,
    pub bytes: u64,
    pub endpoint: String,
    /// The object key (or prefix, for a list).
    pub file: String,
    /// Empty when the op succeeded; otherwise `class: message`.
    pub error: String,
    pub start_ns: i64,
    pub first_byte_ns: Option<i64>,
    pub end_ns: i64,
    /// Name of the plan stage the op belongs to.
    pub stage: String,
    /// The op ran in the stage's warm-up: logged, but not in the summary.
    pub warmup: bool,
    /// Attempts after the first; the times span all attempts.
    pub retries: u32,
}

impl OpRecord {
    /// `end - start`, saturating so that garbage times cannot overflow.
    pub fn duration_ns(&self) -> i64 {
        self.end_ns.saturating_sub(self.start_ns)
    }

    pub fn is_error(&self) -> bool {
        !self.error.is_empty()
    }

    /// The merge order: start time, then agent, then sequence number.
    pub fn sort_key(&self) -> (i64, &str, u64) {
        (self.start_ns, self.client_id.as_str(), self.idx)
    }

    /// Moves every time by `-offset_ns` (agent clock to reference clock),
    /// saturating rather than overflowing on absurd offsets.
    pub fn shift_times(&mut self, offset_ns: i64) {
        self.start_ns = self.start_ns.saturating_sub(offset_ns);
        self.end_ns = self.end_ns.saturating_sub(offset_ns);
        self.first_byte_ns = self.first_byte_ns.map(|t| t.saturating_sub(offset_ns));
    }

    /// Appends this record as one TSV line, newline included, in [`HEADER`]
    /// order. Tabs, newlines and carriage returns inside string fields become
    /// spaces: TSV has no escaping, and one stray tab would shift every later
    /// column of the line.
    pub fn write_tsv(&self, out: &mut String) {
        // Writing to a String cannot fail, so the fmt results are ignored.
        let _ = write!(
            out,
            "{}\t{}\t{}\t",
            self.idx,
            self.thread,
            self.op.log_name()
        );
        push_field(out, &self.client_id);
        let _ = write!(out, "\t{}\t{}\t", self.n_objects, self.bytes);
        push_field(out, &self.endpoint);
        out.push('\t');
        push_field(out, &self.file);
        out.push('\t');
        push_field(out, &self.error);
        out.push('\t');
        format_rfc3339_ns(self.start_ns, out);
        out.push('\t');
        if let Some(fb) = self.first_byte_ns {
            format_rfc3339_ns(fb, out);
        }
        out.push('\t');
        format_rfc3339_ns(self.end_ns, out);
        let _ = write!(out, "\t{}\t", self.duration_ns());
        push_field(out, &self.stage);
        let _ = writeln!(out, "\t{}\t{}", u8::from(self.warmup), self.retries);
    }
}

/// The header line, tab separated, newline included.
pub fn header_line() -> String {
    let mut s = HEADER.join("\t");
    s.push('\n');
    s
}

/// Appends `s`, cut to [`MAX_FIELD_BYTES`], with TSV-breaking characters
/// replaced by spaces.
fn push_field(out: &mut String, s: &str) {
    let s = if s.len() > MAX_FIELD_BYTES {
        let mut end = MAX_FIELD_BYTES;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        &s[..end]
    } else {
        s
    };
    // A byte scan: the three separators are ASCII, so no UTF-8 decoding is
    // needed to find them (str::contains with a char set decodes every
    // char, and this runs for four fields of every record).
    if s.bytes().any(|b| matches!(b, b'\t' | b'\n' | b'\r')) {
        out.extend(s.chars().map(|c| {
            if matches!(c, '\t' | '\n' | '\r') {
                ' '
            } else {
                c
            }
        }));
    } else {
        out.push_str(s);
    }
}
