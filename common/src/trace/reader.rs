//! [`TraceReader`]: a trace's records, one at a time.
//!
//! Lines come from the op-log's line reader (zstd or plain, bounded
//! lines, counted). Columns are found by header name; a trace needs `op`,
//! `bytes`, `file`, `error`, `start` and `end` or `duration_ns`, and reads
//! `client_id`, `n_objects` and `warmup` when present (warp files of 2019
//! had no `client_id`). Unknown columns (warp's `cat`, `last_byte`, our
//! `stage`) are ignored.
//!
//! warp quotes `endpoint` and `error` the CSV way when they hold a tab, a
//! quote or a line break, so for warp a quoted field is unquoted and may
//! continue on the next line; the record keeps its first line's number.
//! s3dlio and Chorus never quote (Chorus writes such characters as spaces),
//! so there a `"` is just a character.

use super::names::op_kind;
use super::{TraceFormat, TraceOp};
use crate::clock::parse_rfc3339_ns;
use crate::oplog::OpLogError;
use crate::oplog::lines::LineReader;
use crate::oplog::reader::MAX_LINE_BYTES;
use std::io::Read;
use std::ops::Range;
use std::path::Path;

/// An iterator over the ops of one trace; see the [module docs](super).
pub struct TraceReader {
    lines: LineReader,
    format: TraceFormat,
    columns: TraceColumns,
    /// The line reader's current line is a record not yet returned: it was
    /// read to tell warp from s3dlio.
    pending: bool,
    /// The record's text: one line, or several for a quoted line break.
    record: String,
    /// The record's fields, unquoted, and where each is in `fields`.
    fields: String,
    ranges: Vec<Range<usize>>,
    done: bool,
}

impl std::fmt::Debug for TraceReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceReader")
            .field("path", &self.lines.path())
            .field("format", &self.format)
            .field("line_no", &self.lines.line_no())
            .finish_non_exhaustive()
    }
}

impl TraceReader {
    /// Opens a trace: detects zstd and the format, reads the header (and,
    /// for the thirteen columns warp and s3dlio share, looks at the first
    /// record's `thread`: s3dlio writes a 64-bit hash of the thread id,
    /// warp a worker number below 2^32).
    pub fn open(path: &Path) -> Result<Self, OpLogError> {
        Self::with_lines(LineReader::open(path)?)
    }

    /// Reads a trace from any byte stream; `name` labels errors.
    pub fn from_reader<R: Read + Send + 'static>(name: &Path, raw: R) -> Result<Self, OpLogError> {
        Self::with_lines(LineReader::from_reader(name, raw)?)
    }

    fn with_lines(mut lines: LineReader) -> Result<Self, OpLogError> {
        lines.header()?;
        let columns = TraceColumns::from_header(lines.line()).map_err(|m| lines.parse_err(m))?;
        let mut pending = false;
        let format = if columns.has_stage {
            TraceFormat::Chorus
        } else if columns.warp_only {
            TraceFormat::Warp
        } else {
            // Same thirteen columns: the first record decides. A file with
            // no record is s3dlio's (it writes the header at start; warp
            // writes no file without ops).
            let mut format = TraceFormat::S3dlio;
            while lines.next_line()? {
                let line = lines.line();
                if line.is_empty() || line[0] == b'#' {
                    continue;
                }
                pending = true;
                let thread = line
                    .split(|b| *b == b'\t')
                    .nth(columns.thread)
                    .and_then(|t| std::str::from_utf8(t).ok())
                    .and_then(|t| t.trim().parse::<u64>().ok());
                if !matches!(thread, Some(t) if t > u64::from(u32::MAX)) {
                    format = TraceFormat::Warp;
                }
                break;
            }
            format
        };
        Ok(TraceReader {
            lines,
            format,
            columns,
            pending,
            record: String::new(),
            fields: String::new(),
            ranges: Vec::new(),
            done: false,
        })
    }

    /// The detected format.
    pub fn format(&self) -> TraceFormat {
        self.format
    }

    /// The file this reader reads.
    pub fn path(&self) -> &Path {
        self.lines.path()
    }

    fn err_at(&self, line: u64, msg: String) -> OpLogError {
        OpLogError::Parse {
            path: self.lines.path().to_path_buf(),
            line,
            msg,
        }
    }

    /// The current line as text, appended to `record`.
    fn push_line(&mut self) -> Result<(), OpLogError> {
        match std::str::from_utf8(self.lines.line()) {
            Ok(s) => {
                self.record.push_str(s);
                Ok(())
            }
            Err(e) => Err(self.lines.parse_err(format!("not valid UTF-8 ({e})"))),
        }
    }

    /// Reads the next record's text into `record` and its fields; returns
    /// its first line, or None at the end.
    fn next_record(&mut self) -> Result<Option<u64>, OpLogError> {
        loop {
            if !std::mem::take(&mut self.pending) && !self.lines.next_line()? {
                return Ok(None);
            }
            let line = self.lines.line();
            if line.is_empty() || line[0] == b'#' {
                continue;
            }
            let first = self.lines.line_no();
            self.record.clear();
            self.push_line()?;
            let quoting = self.format == TraceFormat::Warp;
            while !split_fields(&self.record, quoting, &mut self.fields, &mut self.ranges) {
                // A quoted field holds a line break: the record goes on.
                if !self.lines.next_line()? {
                    return Err(self.err_at(first, "quoted field not closed".to_string()));
                }
                self.record.push('\n');
                self.push_line()?;
                if self.record.len() > MAX_LINE_BYTES {
                    return Err(self.err_at(
                        first,
                        format!("record longer than {MAX_LINE_BYTES} bytes (quote not closed?)"),
                    ));
                }
            }
            return Ok(Some(first));
        }
    }

    fn parse(&self, line: u64) -> Result<TraceOp, String> {
        let c = &self.columns;
        if self.ranges.len() != c.count {
            return Err(format!(
                "wrong column count: {} columns, the header has {}",
                self.ranges.len(),
                c.count
            ));
        }
        let field = |i: usize| self.fields[self.ranges[i].clone()].trim();
        let num = |i: usize, name: &str| -> Result<u64, String> {
            field(i)
                .parse::<u64>()
                .map_err(|_| format!("bad number in column `{name}`: `{}`", field(i)))
        };
        let time = |i: usize, name: &str| -> Result<i64, String> {
            parse_rfc3339_ns(field(i))
                .ok_or_else(|| format!("bad time in column `{name}`: `{}`", field(i)))
        };

        let name = field(c.op);
        if name.is_empty() {
            return Err("empty `op`".to_string());
        }
        let start_ns = time(c.start, "start")?;
        let end_ns = match (c.end.filter(|&i| !field(i).is_empty()), c.duration) {
            (Some(i), _) => time(i, "end")?,
            (None, Some(i)) if !field(i).is_empty() => {
                let d = field(i)
                    .parse::<i64>()
                    .map_err(|_| format!("bad number in column `duration_ns`: `{}`", field(i)))?;
                start_ns.saturating_add(d)
            }
            _ => return Err("empty `end` and empty `duration_ns`: no end time".to_string()),
        };
        let duration_ns = end_ns.saturating_sub(start_ns);
        if duration_ns < 0 {
            return Err(format!("end before start (by {} ns)", -duration_ns));
        }
        let n_objects = match c.n_objects {
            Some(i) => u32::try_from(num(i, "n_objects")?)
                .map_err(|_| format!("bad number in column `n_objects`: `{}`", field(i)))?,
            None => 1,
        };
        Ok(TraceOp {
            line,
            start_ns,
            duration_ns,
            client: c.client.map(|i| field(i).to_string()).unwrap_or_default(),
            op: op_kind(self.format, name),
            key: field(c.file).to_string(),
            size: num(c.bytes, "bytes")?,
            n_objects,
            failed: !field(c.error).is_empty(),
            warmup: c.warmup.is_some_and(|i| matches!(field(i), "1" | "true")),
        })
    }
}

impl Iterator for TraceReader {
    type Item = Result<TraceOp, OpLogError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let out = match self.next_record() {
            Ok(None) => None,
            Ok(Some(line)) => Some(self.parse(line).map_err(|m| self.err_at(line, m))),
            Err(e) => Some(Err(e)),
        };
        // After damage nothing more is read: what follows may be shifted.
        self.done = !matches!(out, Some(Ok(_)));
        out
    }
}

/// Splits a record at tabs into `out` (fields back to back) and `ranges`.
/// With `quoting`, a field starting with `"` is unquoted (`""` is one
/// quote). Returns false when a quoted field is still open at the end.
fn split_fields(
    text: &str,
    quoting: bool,
    out: &mut String,
    ranges: &mut Vec<Range<usize>>,
) -> bool {
    out.clear();
    ranges.clear();
    let mut rest = text;
    loop {
        let begin = out.len();
        if quoting && rest.starts_with('"') {
            rest = &rest[1..];
            loop {
                let Some(q) = rest.find('"') else {
                    return false;
                };
                out.push_str(&rest[..q]);
                rest = &rest[q + 1..];
                if rest.starts_with('"') {
                    out.push('"');
                    rest = &rest[1..];
                } else {
                    break;
                }
            }
        }
        // Unquoted field, or what follows a closing quote (kept as is).
        let end = rest.find('\t').unwrap_or(rest.len());
        out.push_str(&rest[..end]);
        ranges.push(begin..out.len());
        if end == rest.len() {
            return true;
        }
        rest = &rest[end + 1..];
    }
}

/// Where each column a trace needs sits, from the header.
#[derive(Debug)]
struct TraceColumns {
    count: usize,
    op: usize,
    bytes: usize,
    file: usize,
    error: usize,
    start: usize,
    thread: usize,
    end: Option<usize>,
    duration: Option<usize>,
    client: Option<usize>,
    n_objects: Option<usize>,
    warmup: Option<usize>,
    /// Chorus's `stage` column is there.
    has_stage: bool,
    /// Only warp writes this header: `cat`, `last_byte`, or no
    /// `client_id`.
    warp_only: bool,
}

impl TraceColumns {
    fn from_header(line: &[u8]) -> Result<Self, String> {
        let line =
            std::str::from_utf8(line).map_err(|e| format!("header: not valid UTF-8 ({e})"))?;
        let line = line.strip_prefix('\u{feff}').unwrap_or(line);
        let names: Vec<&str> = line.split('\t').map(str::trim).collect();
        for (i, n) in names.iter().enumerate() {
            if !n.is_empty() && names[..i].contains(n) {
                return Err(format!("header: duplicate column `{n}`"));
            }
        }
        let find = |n: &str| names.iter().position(|h| *h == n);
        let mut missing = Vec::new();
        let mut need = |n: &'static str| {
            let at = find(n);
            if at.is_none() {
                missing.push(n);
            }
            at.unwrap_or(0)
        };
        let (op, bytes, file, error, start, thread) = (
            need("op"),
            need("bytes"),
            need("file"),
            need("error"),
            need("start"),
            need("thread"),
        );
        let (end, duration) = (find("end"), find("duration_ns"));
        if end.is_none() && duration.is_none() {
            missing.push("end");
        }
        if !missing.is_empty() {
            return Err(format!(
                "header: missing column{} `{}` (is this a trace?)",
                if missing.len() == 1 { "" } else { "s" },
                missing.join("`, `")
            ));
        }
        let client = find("client_id");
        Ok(TraceColumns {
            count: names.len(),
            op,
            bytes,
            file,
            error,
            start,
            thread,
            end,
            duration,
            client,
            n_objects: find("n_objects"),
            warmup: find("warmup"),
            has_stage: find("stage").is_some(),
            warp_only: find("cat").is_some() || find("last_byte").is_some() || client.is_none(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(text: &str, quoting: bool) -> Option<Vec<String>> {
        let (mut out, mut ranges) = (String::new(), Vec::new());
        split_fields(text, quoting, &mut out, &mut ranges)
            .then(|| ranges.into_iter().map(|r| out[r].to_string()).collect())
    }

    #[test]
    fn fields_unquoted_the_warp_way() {
        assert_eq!(split("a\tb\t", false).unwrap(), ["a", "b", ""]);
        assert_eq!(
            split("a\t\"x\ty \"\"q\"\"\"\tc", true).unwrap(),
            ["a", "x\ty \"q\"", "c"]
        );
        assert_eq!(split("a\t\"x\ty", false).unwrap(), ["a", "\"x", "y"]);
        assert_eq!(split("a\t\"open\nstill", true), None);
        assert_eq!(
            split("a\t\"two\nlines\"\tb", true).unwrap(),
            ["a", "two\nlines", "b"]
        );
        // A quote inside an unquoted field is kept, as is text after a
        // closing quote.
        assert_eq!(split("a\"b\t\"c\"d", true).unwrap(), ["a\"b", "cd"]);
    }

    #[test]
    fn header_needs_the_trace_columns() {
        let err = TraceColumns::from_header(b"idx\top\tstart").unwrap_err();
        assert_eq!(
            err,
            "header: missing columns `bytes`, `file`, `error`, `thread`, `end` (is this a trace?)"
        );
        let err = TraceColumns::from_header(b"op\top").unwrap_err();
        assert!(err.contains("duplicate column `op`"), "{err}");
    }
}
