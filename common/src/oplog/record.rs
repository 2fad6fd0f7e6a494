//! One op-log record: the columns of warp and s3dlio op-logs, plus ours at
//! the end.

use super::batch::{FAILED, LogBatch, NO_LAG, NO_TIME, TEXT_KEY, WARMUP};
use crate::clock::format_rfc3339_ns;
use crate::op::OpKind;
use std::cell::RefCell;

/// The header line of every op-log and timeline, in column order. The first
/// thirteen columns are those of warp and s3dlio; `stage`, `warmup`,
/// `retries` and `lag_ns` are ours and come last so their readers ignore
/// them.
pub const HEADER: [&str; 17] = [
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
    "lag_ns",
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
    /// An op with a schedule (open loop, replay): how long after its
    /// scheduled start (its `start`) it was issued; `None` in closed loop.
    pub lag_ns: Option<u64>,
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
        thread_local! {
            // A formatter per thread keeps its cached second between calls.
            static FORMAT: RefCell<(LineFormatter, Vec<u8>)> =
                RefCell::new((LineFormatter::new(), Vec::with_capacity(512)));
        }
        FORMAT.with(|f| {
            let (format, line) = &mut *f.borrow_mut();
            line.clear();
            format.record(self, line);
            // Only whole UTF-8 strings (cut at character boundaries, ASCII
            // separators replaced by ASCII spaces) and ASCII were written,
            // so this never takes the lossy path.
            match std::str::from_utf8(line) {
                Ok(text) => out.push_str(text),
                Err(_) => out.push_str(&String::from_utf8_lossy(line)),
            }
        });
    }
}

const NS_PER_S: i64 = 1_000_000_000;

/// `000`..`999`, three ASCII digits each.
static DIGITS3: [[u8; 3]; 1000] = {
    let mut t = [[0u8; 3]; 1000];
    let mut i = 0;
    while i < 1000 {
        t[i] = [
            b'0' + (i / 100) as u8,
            b'0' + (i / 10 % 10) as u8,
            b'0' + (i % 10) as u8,
        ];
        i += 1;
    }
    t
};

/// Writes op-log lines as bytes, fast: integers with `itoa`, times from
/// a cached `YYYY-MM-DDTHH:MM:SS.` of the current second plus nine fraction
/// digits from a table (an op-log writes three times per line, nearly all
/// in the same second as the line before).
pub(crate) struct LineFormatter {
    /// The second `prefix` is for.
    second: i64,
    /// `YYYY-MM-DDTHH:MM:SS.` of `second`.
    prefix: [u8; 20],
    int: itoa::Buffer,
    /// Sanitized endpoints of the batch being written.
    endpoints: Vec<Vec<u8>>,
}

impl Default for LineFormatter {
    fn default() -> Self {
        Self::new()
    }
}

impl LineFormatter {
    pub(crate) fn new() -> LineFormatter {
        LineFormatter {
            // No time has this second (i64 nanoseconds span ±292 years).
            second: i64::MIN,
            prefix: [0; 20],
            int: itoa::Buffer::new(),
            endpoints: Vec::new(),
        }
    }

    #[inline]
    fn int(&mut self, v: impl itoa::Integer, out: &mut Vec<u8>) {
        out.extend_from_slice(self.int.format(v).as_bytes());
    }

    /// `ns` as `YYYY-MM-DDTHH:MM:SS.fffffffffZ`, exactly as
    /// [`format_rfc3339_ns`] writes it.
    #[inline]
    fn time(&mut self, ns: i64, out: &mut Vec<u8>) {
        let second = ns.div_euclid(NS_PER_S);
        let frac = ns.rem_euclid(NS_PER_S) as usize;
        if second != self.second {
            self.new_second(ns);
        }
        let (a, b, c) = (frac / 1_000_000, frac / 1_000 % 1_000, frac % 1_000);
        let d = (&DIGITS3[a], &DIGITS3[b], &DIGITS3[c]);
        let mut t = [0u8; 30];
        t[..20].copy_from_slice(&self.prefix);
        t[20..23].copy_from_slice(d.0);
        t[23..26].copy_from_slice(d.1);
        t[26..29].copy_from_slice(d.2);
        t[29] = b'Z';
        out.extend_from_slice(&t);
    }

    /// Caches the prefix of the second of `ns`.
    #[cold]
    fn new_second(&mut self, ns: i64) {
        let mut s = String::with_capacity(30);
        format_rfc3339_ns(ns, &mut s);
        self.prefix.copy_from_slice(&s.as_bytes()[..20]);
        self.second = ns.div_euclid(NS_PER_S);
    }

    /// The time columns, `duration_ns` and the tab after it.
    #[inline]
    fn times(&mut self, start: i64, first_byte: Option<i64>, end: i64, out: &mut Vec<u8>) {
        self.time(start, out);
        out.push(b'\t');
        if let Some(fb) = first_byte {
            self.time(fb, out);
        }
        out.push(b'\t');
        self.time(end, out);
        out.push(b'\t');
        self.int(end.saturating_sub(start), out);
        out.push(b'\t');
    }

    /// `warmup`, `retries`, `lag_ns` and the newline.
    #[inline]
    fn tail(&mut self, warmup: bool, retries: u32, lag_ns: Option<u64>, out: &mut Vec<u8>) {
        out.extend_from_slice(if warmup { b"\t1\t" } else { b"\t0\t" });
        self.int(retries, out);
        out.push(b'\t');
        if let Some(lag) = lag_ns {
            self.int(lag, out);
        }
        out.push(b'\n');
    }

    /// One record as a TSV line (see [`OpRecord::write_tsv`]).
    pub(crate) fn record(&mut self, r: &OpRecord, out: &mut Vec<u8>) {
        self.int(r.idx, out);
        out.push(b'\t');
        self.int(r.thread, out);
        out.push(b'\t');
        out.extend_from_slice(r.op.log_name().as_bytes());
        out.push(b'\t');
        push_field(out, &r.client_id);
        out.push(b'\t');
        self.int(r.n_objects, out);
        out.push(b'\t');
        self.int(r.bytes, out);
        out.push(b'\t');
        push_field(out, &r.endpoint);
        out.push(b'\t');
        push_field(out, &r.file);
        out.push(b'\t');
        push_field(out, &r.error);
        out.push(b'\t');
        self.times(r.start_ns, r.first_byte_ns, r.end_ns, out);
        push_field(out, &r.stage);
        self.tail(r.warmup, r.retries, r.lag_ns, out);
    }

    /// Every entry of `batch` as TSV lines, in batch order: byte for byte
    /// what [`Self::record`] writes for [`LogBatch::to_records`].
    pub(crate) fn batch(&mut self, batch: &LogBatch, out: &mut Vec<u8>) {
        // The batch's endpoints, sanitized once (buffers reused).
        self.endpoints.resize_with(batch.endpoints.len(), Vec::new);
        for (e, to) in batch.endpoints.iter().zip(&mut self.endpoints) {
            to.clear();
            push_field(to, e);
        }
        for i in 0..batch.slots.len() {
            self.slot(batch, i, out);
        }
    }

    /// The line of slot `i` of `batch`.
    #[inline]
    fn slot(&mut self, batch: &LogBatch, i: usize, out: &mut Vec<u8>) {
        let ctx = &*batch.context;
        let e = &batch.slots[i];
        self.int(batch.first_idx + i as u64, out);
        out.push(b'\t');
        self.int(e.thread, out);
        out.push(b'\t');
        out.extend_from_slice(e.op.log_name().as_bytes());
        out.push(b'\t');
        out.extend_from_slice(&ctx.client_id);
        out.push(b'\t');
        self.int(e.n_objects, out);
        out.push(b'\t');
        self.int(e.bytes, out);
        out.push(b'\t');
        out.extend_from_slice(&self.endpoints[usize::from(e.endpoint)]);
        out.push(b'\t');
        if e.flags & TEXT_KEY == 0 {
            ctx.push_key(e.key, out);
        } else {
            push_field(out, LogBatch::side(&batch.text_keys, i));
        }
        out.push(b'\t');
        if e.flags & FAILED != 0 {
            push_field(out, LogBatch::side(&batch.errors, i));
        }
        out.push(b'\t');
        let first_byte = (e.first_byte_ns != NO_TIME).then_some(e.first_byte_ns);
        self.times(e.start_ns, first_byte, e.end_ns, out);
        out.extend_from_slice(&ctx.stage);
        let lag = (e.lag_ns != NO_LAG).then_some(e.lag_ns);
        self.tail(e.flags & WARMUP != 0, e.retries, lag, out);
    }
}

/// The header line, tab separated, newline included.
pub fn header_line() -> String {
    let mut s = HEADER.join("\t");
    s.push('\n');
    s
}

/// `s` cut to [`MAX_FIELD_BYTES`] at a character boundary.
pub(crate) fn cut(s: &str) -> &str {
    if s.len() <= MAX_FIELD_BYTES {
        return s;
    }
    let mut end = MAX_FIELD_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Appends `s`, cut to [`MAX_FIELD_BYTES`], with TSV-breaking characters
/// replaced by spaces. A byte scan: the three separators are ASCII, and an
/// ASCII byte never occurs inside a multi-byte UTF-8 character, so the
/// result is still UTF-8.
fn push_field(out: &mut Vec<u8>, s: &str) {
    let s = cut(s).as_bytes();
    if s.iter().any(|&b| matches!(b, b'\t' | b'\n' | b'\r')) {
        out.extend(s.iter().map(|&b| {
            if matches!(b, b'\t' | b'\n' | b'\r') {
                b' '
            } else {
                b
            }
        }));
    } else {
        out.extend_from_slice(s);
    }
}

/// [`push_field`] into a new buffer.
pub(crate) fn sanitized(s: &str) -> Box<[u8]> {
    let mut v = Vec::with_capacity(s.len().min(MAX_FIELD_BYTES));
    push_field(&mut v, s);
    v.into_boxed_slice()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oplog::batch::{EntryKey, LogContext, LogEntry};
    use crate::oplog::test_util::record;
    use crate::plan::KeyNaming;
    use std::sync::Arc;

    fn time_text(f: &mut LineFormatter, ns: i64) -> String {
        let mut out = Vec::new();
        f.time(ns, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn cached_times_are_exactly_rfc3339_ns() {
        let mut ns = vec![
            0,
            1,
            -1,
            999_999_999,
            1_000_000_000,
            -1_000_000_000,
            -1_000_000_001,
            i64::MIN,
            i64::MIN + 1,
            i64::MAX,
            1_795_471_005_000_000_000,
            1_795_471_005_999_999_999,
            // Leap day, year ends.
            951_782_400_123_456_789,
            1_704_067_199_999_999_999,
            1_704_067_200_000_000_000,
        ];
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ns.push(x as i64);
            // Runs within a second and across its boundary, back and forth.
            let base = 1_795_471_005_000_000_000 + (x % 4_000_000_000) as i64;
            ns.extend([base, base + 1, base - 2_000_000_000, base + 999_999_999]);
        }
        let mut f = LineFormatter::new();
        for t in ns {
            assert_eq!(time_text(&mut f, t), crate::clock::rfc3339_ns(t), "{t}");
        }
    }

    fn entry(n: u64) -> LogEntry {
        let start_ns = 1_795_471_005_999_000_000 + n as i64 * 123_457;
        LogEntry {
            thread: (n % 5) as u32,
            op: OpKind::ALL[(n % 9) as usize],
            warmup: n.is_multiple_of(4),
            retries: (n % 3) as u32,
            n_objects: 1 + (n % 2) as u32,
            bytes: n * 977,
            start_ns,
            first_byte_ns: (!n.is_multiple_of(3)).then_some(start_ns + 400),
            end_ns: start_ns + 1_000 + n as i64,
            lag_ns: n.is_multiple_of(2).then_some(n * 31),
            key: match n % 4 {
                0 => EntryKey::Text(format!("list/prefix\t{n}/")),
                1 => EntryKey::Index(123_456_789 + n),
                _ => EntryKey::Index(n),
            },
            error: if n.is_multiple_of(5) {
                format!("timeout: no answer\tafter {n} ms\r\n")
            } else {
                String::new()
            },
        }
    }

    fn batch(n: u64, first_idx: u64) -> LogBatch {
        let ctx = Arc::new(LogContext::new(
            "agent\t7",
            "load",
            "obj/",
            KeyNaming::default(),
        ));
        let mut b = LogBatch::with_capacity(ctx, n as usize);
        let endpoints = ["http://a:9000", "http://b:9000", "http://c\t:9000"];
        for i in 0..n {
            let ep = b.endpoint_id(endpoints[(i as usize / 3) % 3]);
            b.push(entry(i), ep);
        }
        b.set_first_idx(first_idx);
        b
    }

    #[test]
    fn batch_lines_are_the_lines_of_its_records() {
        let b = batch(300, 1_000);
        let records = b.to_records();
        assert_eq!(records.len(), 300);
        assert_eq!(records[0].idx, 1_000);
        assert_eq!(records[299].idx, 1_299);
        assert_eq!(records[1].file, "obj/123456790");
        assert_eq!(records[2].file, "obj/00000002");
        assert_eq!(records[4].file, "list/prefix\t4/");
        assert_eq!(records[5].error, "timeout: no answer\tafter 5 ms\r\n");
        assert_eq!(records[3].endpoint, "http://b:9000");
        assert_eq!(records[6].endpoint, "http://c\t:9000");
        assert_eq!(records[3].first_byte_ns, None);
        assert!(records[0].warmup && !records[1].warmup);

        let mut from_batch = Vec::new();
        LineFormatter::new().batch(&b, &mut from_batch);
        let mut from_records = String::new();
        for r in &records {
            r.write_tsv(&mut from_records);
        }
        assert_eq!(String::from_utf8(from_batch).unwrap(), from_records);
        assert_eq!(from_records.lines().count(), 300);
        for line in from_records.lines() {
            assert_eq!(line.split('\t').count(), HEADER.len(), "{line}");
        }
    }

    /// The line as the `write!`-based writer wrote it before (the format
    /// readers know), for comparison.
    fn reference_line(r: &OpRecord) -> String {
        use std::fmt::Write as _;
        let field = |s: &str| {
            let mut end = s.len().min(MAX_FIELD_BYTES);
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s[..end].replace(['\t', '\n', '\r'], " ")
        };
        let time = crate::clock::rfc3339_ns;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            r.idx,
            r.thread,
            r.op.log_name(),
            field(&r.client_id),
            r.n_objects,
            r.bytes,
            field(&r.endpoint),
            field(&r.file),
            field(&r.error),
            time(r.start_ns),
            r.first_byte_ns.map(time).unwrap_or_default(),
            time(r.end_ns),
            r.duration_ns(),
            field(&r.stage),
            u8::from(r.warmup),
            r.retries,
            r.lag_ns.map(|l| l.to_string()).unwrap_or_default()
        );
        out
    }

    #[test]
    fn write_tsv_writes_the_documented_format() {
        let mut records: Vec<OpRecord> = (0..2_000).map(|n| record(n, "agent-0")).collect();
        records.extend(batch(50, 7).to_records());
        let mut odd = record(1, "ünï\tcødé");
        odd.error = "é".repeat(40_000);
        odd.end_ns = odd.start_ns - 5;
        records.push(odd);
        for r in &records {
            let mut line = String::new();
            r.write_tsv(&mut line);
            assert_eq!(line, reference_line(r));
        }
    }

    #[test]
    fn endpoint_ids_are_per_distinct_endpoint() {
        let mut b = LogBatch::with_capacity(
            Arc::new(LogContext::new("a", "s", "p/", KeyNaming::default())),
            4,
        );
        assert_eq!(b.endpoint_id("x"), 0);
        assert_eq!(b.endpoint_id("x"), 0);
        assert_eq!(b.endpoint_id("y"), 1);
        assert_eq!(b.endpoint_id("x"), 0);
        assert_eq!(b.endpoint_id("z"), 2);
        assert_eq!(b.endpoint_id("y"), 1);
    }

    #[test]
    #[should_panic(expected = "not of this batch")]
    fn push_checks_the_endpoint_id() {
        let mut b = LogBatch::with_capacity(
            Arc::new(LogContext::new("a", "s", "p/", KeyNaming::default())),
            4,
        );
        b.push(entry(1), 0);
    }
}
