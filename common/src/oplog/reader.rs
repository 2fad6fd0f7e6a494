//! Reads op-logs back: ours (zstd or plain TSV) and warp's/s3dlio's.
//!
//! Columns are found by header name, so column order, missing `stage` (warp
//! and s3dlio logs have thirteen columns) and extra unknown columns are all
//! fine; a missing required column is an error. Lines starting with `#`
//! (warp appends its command line that way) and empty lines are skipped.
//!
//! Every error names the file, the 1-based line (the header is line 1) and
//! what is wrong. After an error the iterator ends, so a caller keeps every
//! record before the damage — the useful part of a log cut short by a crash.

use super::lines::LineReader;
use super::record::{HEADER, OpRecord};
use crate::clock::parse_rfc3339_ns;
use crate::op::OpKind;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Longest line accepted, so a file without line breaks (wrong file, or
/// garbage) cannot make the reader buffer it whole. Our writer keeps lines
/// far below this (see [`super::record::MAX_FIELD_BYTES`]).
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// Columns every log must have: warp's and s3dlio's thirteen. `stage`
/// (index 13) is optional.
const REQUIRED_COLUMNS: usize = 13;

// Positions in HEADER, named for readability of the parser.
const C_IDX: usize = 0;
const C_THREAD: usize = 1;
const C_OP: usize = 2;
const C_CLIENT_ID: usize = 3;
const C_N_OBJECTS: usize = 4;
const C_BYTES: usize = 5;
const C_ENDPOINT: usize = 6;
const C_FILE: usize = 7;
const C_ERROR: usize = 8;
const C_START: usize = 9;
const C_FIRST_BYTE: usize = 10;
const C_END: usize = 11;
const C_DURATION_NS: usize = 12;
const C_STAGE: usize = 13;
const C_WARMUP: usize = 14;
const C_RETRIES: usize = 15;
const C_LAG_NS: usize = 16;

/// Go's zero `time.Time` as warp writes it for an unknown first byte.
pub(crate) const GO_ZERO_TIME_PREFIX: &str = "0001-01-01T00:00:00";

/// Everything that can go wrong reading, writing or merging op-logs.
#[derive(Debug, thiserror::Error)]
pub enum OpLogError {
    /// The file could not be opened, created or written.
    #[error("{}: {source}", .path.display())]
    Io { path: PathBuf, source: io::Error },
    /// Reading failed at `line`: for a compressed log, a truncated or
    /// corrupt zstd stream.
    #[error("{}:{line}: {what}: {source}", .path.display())]
    Read {
        path: PathBuf,
        line: u64,
        what: &'static str,
        source: io::Error,
    },
    /// A line (or the header) that cannot be understood.
    #[error("{}:{line}: {msg}", .path.display())]
    Parse {
        path: PathBuf,
        line: u64,
        msg: String,
    },
}

impl OpLogError {
    /// Reading `path` failed at `line` (1-based): for a compressed log, its
    /// zstd stream is truncated or corrupt there.
    pub(crate) fn read(path: &Path, line: u64, compressed: bool, source: io::Error) -> Self {
        OpLogError::Read {
            path: path.to_path_buf(),
            line,
            what: if compressed {
                "truncated or corrupt zstd stream"
            } else {
                "read failed"
            },
            source,
        }
    }

    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            OpLogError::Io { path, .. }
            | OpLogError::Read { path, .. }
            | OpLogError::Parse { path, .. } => path,
        }
    }

    /// The 1-based line, when the error is tied to one.
    pub fn line(&self) -> Option<u64> {
        match self {
            OpLogError::Io { .. } => None,
            OpLogError::Read { line, .. } | OpLogError::Parse { line, .. } => Some(*line),
        }
    }
}

/// An iterator over the records of one op-log.
pub struct OpLogReader {
    lines: LineReader,
    /// Which column holds which field.
    columns: Columns,
    done: bool,
}

impl std::fmt::Debug for OpLogReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpLogReader")
            .field("path", &self.lines.path())
            .field("compressed", &self.lines.compressed())
            .field("line_no", &self.lines.line_no())
            .finish_non_exhaustive()
    }
}

impl OpLogReader {
    /// Opens a log, detects zstd by its magic number, and reads the header.
    pub fn open(path: &Path) -> Result<Self, OpLogError> {
        Self::with_lines(LineReader::open(path)?)
    }

    /// Reads a log from any byte stream; `name` labels errors.
    pub fn from_reader<R: Read + Send + 'static>(name: &Path, raw: R) -> Result<Self, OpLogError> {
        Self::with_lines(LineReader::from_reader(name, raw)?)
    }

    fn with_lines(mut lines: LineReader) -> Result<Self, OpLogError> {
        lines.header()?;
        let columns = Columns::from_header(lines.line()).map_err(|msg| lines.parse_err(msg))?;
        Ok(OpLogReader {
            lines,
            columns,
            done: false,
        })
    }

    /// The file this reader reads.
    pub fn path(&self) -> &Path {
        self.lines.path()
    }

    /// Lines consumed so far (header included).
    pub fn lines_read(&self) -> u64 {
        self.lines.line_no()
    }

    fn parse_record(&self) -> Result<OpRecord, OpLogError> {
        self.columns
            .parse(self.lines.line())
            .map_err(|msg| self.lines.parse_err(msg))
    }
}

/// Which [`HEADER`] field each column of a log holds, from its header line;
/// parses record lines by it. Shared by the reader and the merge.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Columns {
    /// For each column of the file, which HEADER field it holds (None:
    /// unknown column, ignored).
    slots: Vec<Option<usize>>,
    has_stage: bool,
}

impl Columns {
    /// Reads a header line (without its line ending); the error is the
    /// message, without file and line.
    pub(crate) fn from_header(line: &[u8]) -> Result<Self, String> {
        let line = String::from_utf8_lossy(line);
        let line = line.strip_prefix('\u{feff}').unwrap_or(&line);
        let mut slots = Vec::new();
        let mut seen = [false; HEADER.len()];
        for name in line.split('\t') {
            let name = name.trim();
            let slot = HEADER.iter().position(|h| *h == name);
            if let Some(s) = slot {
                if seen[s] {
                    return Err(format!("header: duplicate column `{name}`"));
                }
                seen[s] = true;
            }
            slots.push(slot);
        }
        let missing: Vec<&str> = HEADER[..REQUIRED_COLUMNS]
            .iter()
            .zip(seen)
            .filter(|(_, s)| !s)
            .map(|(h, _)| *h)
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "header: missing column{} `{}` (is this an op-log?)",
                if missing.len() == 1 { "" } else { "s" },
                missing.join("`, `")
            ));
        }
        Ok(Columns {
            slots,
            has_stage: seen[C_STAGE],
        })
    }

    /// The columns are exactly [`HEADER`], in its order: lines in our own
    /// layout.
    pub(crate) fn is_ours(&self) -> bool {
        self.slots.len() == HEADER.len()
            && self.slots.iter().enumerate().all(|(i, s)| *s == Some(i))
    }

    /// Parses one record line (without its line ending); the error is the
    /// message, without file and line.
    pub(crate) fn parse(&self, line: &[u8]) -> Result<OpRecord, String> {
        let line = std::str::from_utf8(line).map_err(|e| format!("not valid UTF-8 ({e})"))?;
        let mut vals: [&str; HEADER.len()] = [""; HEADER.len()];
        let mut count = 0usize;
        for field in line.split('\t') {
            if let Some(Some(slot)) = self.slots.get(count) {
                vals[*slot] = field;
            }
            count += 1;
        }
        if count != self.slots.len() {
            return Err(format!(
                "wrong column count: {count} columns, the header has {}",
                self.slots.len()
            ));
        }

        let num = |c: usize| -> Result<u64, String> {
            vals[c]
                .trim()
                .parse::<u64>()
                .map_err(|_| format!("bad number in column `{}`: `{}`", HEADER[c], vals[c]))
        };
        let time = |c: usize| -> Result<i64, String> {
            parse_rfc3339_ns(vals[c].trim())
                .ok_or_else(|| format!("bad time in column `{}`: `{}`", HEADER[c], vals[c]))
        };

        let op = OpKind::from_str(vals[C_OP].trim())
            .map_err(|e| format!("bad op in column `op`: {e}"))?;
        let n_objects = u32::try_from(num(C_N_OBJECTS)?)
            .map_err(|_| format!("bad number in column `n_objects`: `{}`", vals[C_N_OBJECTS]))?;
        let start_ns = time(C_START)?;
        let first_byte = vals[C_FIRST_BYTE].trim();
        let first_byte_ns = if first_byte.is_empty() || first_byte.starts_with(GO_ZERO_TIME_PREFIX)
        {
            None
        } else {
            Some(time(C_FIRST_BYTE)?)
        };
        let duration = vals[C_DURATION_NS].trim();
        let duration_ns = if duration.is_empty() {
            None
        } else {
            Some(
                duration
                    .parse::<i64>()
                    .map_err(|_| format!("bad number in column `duration_ns`: `{duration}`"))?,
            )
        };
        // `end` is authoritative; `duration_ns` only fills in a missing end.
        let end_ns = if vals[C_END].trim().is_empty() {
            match duration_ns {
                Some(d) => start_ns.saturating_add(d),
                None => {
                    return Err("empty `end` and empty `duration_ns`: no end time".to_string());
                }
            }
        } else {
            time(C_END)?
        };

        Ok(OpRecord {
            idx: num(C_IDX)?,
            thread: num(C_THREAD)?,
            op,
            client_id: vals[C_CLIENT_ID].to_string(),
            n_objects,
            bytes: num(C_BYTES)?,
            endpoint: vals[C_ENDPOINT].to_string(),
            file: vals[C_FILE].to_string(),
            error: vals[C_ERROR].to_string(),
            start_ns,
            first_byte_ns,
            end_ns,
            stage: if self.has_stage {
                vals[C_STAGE].to_string()
            } else {
                String::new()
            },
            // Optional columns of ours: absent or empty reads as "no".
            warmup: matches!(vals[C_WARMUP].trim(), "1" | "true"),
            retries: match vals[C_RETRIES].trim() {
                "" => 0,
                r => r
                    .parse()
                    .map_err(|_| format!("bad number in column `retries`: `{r}`"))?,
            },
            lag_ns: match vals[C_LAG_NS].trim() {
                "" => None,
                l => Some(
                    l.parse()
                        .map_err(|_| format!("bad number in column `lag_ns`: `{l}`"))?,
                ),
            },
        })
    }
}

impl Iterator for OpLogReader {
    type Item = Result<OpRecord, OpLogError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        loop {
            match self.lines.next_line() {
                Ok(true) => {}
                Ok(false) => {
                    self.done = true;
                    return None;
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
            let line = self.lines.line();
            if line.is_empty() || line.first() == Some(&b'#') {
                continue;
            }
            let rec = self.parse_record();
            if rec.is_err() {
                self.done = true;
            }
            return Some(rec);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oplog::test_util::record;
    use crate::oplog::write_records;
    use std::io::Write;

    fn collect(reader: OpLogReader) -> (Vec<OpRecord>, Option<OpLogError>) {
        let mut ok = Vec::new();
        let mut err = None;
        for r in reader {
            match r {
                Ok(r) => ok.push(r),
                Err(e) => {
                    assert!(err.is_none(), "iterator continued after an error");
                    err = Some(e);
                }
            }
        }
        (ok, err)
    }

    #[test]
    fn truncated_zstd_keeps_records_before_damage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.tsv.zst");
        let recs: Vec<OpRecord> = (0..200_000).map(|n| record(n, "a")).collect();
        write_records(&path, recs.clone()).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let cut = dir.path().join("cut.tsv.zst");
        std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();

        let (ok, err) = collect(OpLogReader::open(&cut).unwrap());
        let err = err.expect("truncation must be reported");
        let msg = err.to_string();
        assert!(msg.contains("cut.tsv.zst:"), "{msg}");
        assert!(msg.contains("zstd"), "{msg}");
        assert!(!ok.is_empty() && ok.len() < recs.len());
        assert_eq!(ok[..], recs[..ok.len()]);
        assert_eq!(err.line(), Some(ok.len() as u64 + 2));
    }

    #[test]
    fn corrupt_zstd_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.tsv.zst");
        write_records(&path, (0..10_000).map(|n| record(n, "a"))).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        let mid = bytes.len() / 2;
        for b in &mut bytes[mid..mid + 64] {
            *b ^= 0x5a;
        }
        std::fs::write(&path, &bytes).unwrap();
        let (_, err) = collect(OpLogReader::open(&path).unwrap());
        assert!(err.is_some());
    }

    #[test]
    fn bad_line_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plain.tsv");
        let mut text = super::super::header_line();
        for n in 0..3 {
            record(n, "a").write_tsv(&mut text);
        }
        text.push_str("3\t0\tGET\ta\t1\tlots\tep\tk\t\t2026-11-23T21:56:45Z\t\t2026-11-23T21:56:46Z\t1\tload\t0\t0\t\n");
        record(4, "a").write_tsv(&mut text);
        std::fs::write(&path, text).unwrap();

        let (ok, err) = collect(OpLogReader::open(&path).unwrap());
        assert_eq!(ok.len(), 3);
        let msg = err.unwrap().to_string();
        assert!(msg.starts_with(&format!("{}:5: ", path.display())), "{msg}");
        assert!(
            msg.contains("bad number in column `bytes`: `lots`"),
            "{msg}"
        );
    }

    #[test]
    fn parse_errors() {
        let dir = tempfile::tempdir().unwrap();
        let cases: [(&str, &str); 6] = [
            (
                "0\t0\tGET\ta\t1\t5\tep\tk\t\tyesterday\t\t2026-11-23T21:56:46Z\t1",
                "bad time in column `start`",
            ),
            (
                "0\t0\tGET\ta\t1\t5\tep\tk\t\t2026-11-23T21:56:45Z\t\t2026-11-23T21:56:46Z",
                "wrong column count: 12 columns, the header has 13",
            ),
            (
                "0\t0\tFETCH\ta\t1\t5\tep\tk\t\t2026-11-23T21:56:45Z\t\t2026-11-23T21:56:46Z\t1",
                "unknown op `FETCH`",
            ),
            (
                "0\t0\tGET\ta\t1\t5\tep\tk\t\t2026-11-23T21:56:45Z\t\t\t",
                "no end time",
            ),
            (
                "0\t0\tGET\ta\t1\t5\tep\tk\t\t2026-11-23T21:56:45Z\t\t\tx",
                "bad number in column `duration_ns`",
            ),
            (
                "0\t0\tGET\ta\t99999999999\t5\tep\tk\t\t2026-11-23T21:56:45Z\t\t\t1",
                "bad number in column `n_objects`",
            ),
        ];
        for (i, (line, want)) in cases.iter().enumerate() {
            let path = dir.path().join(format!("case{i}.tsv"));
            std::fs::write(&path, format!("{}\n{line}\n", HEADER[..13].join("\t"))).unwrap();
            let (ok, err) = collect(OpLogReader::open(&path).unwrap());
            assert!(ok.is_empty());
            let msg = err.unwrap().to_string();
            assert!(msg.contains(&format!("case{i}.tsv:2: ")), "{msg}");
            assert!(msg.contains(want), "{msg} / {want}");
        }

        let path = dir.path().join("nohdr.tsv");
        std::fs::write(&path, "idx\top\tstart\n").unwrap();
        let msg = OpLogReader::open(&path).unwrap_err().to_string();
        assert!(
            msg.contains("nohdr.tsv:1: header: missing columns `thread`"),
            "{msg}"
        );

        let path = dir.path().join("empty.tsv");
        std::fs::write(&path, "").unwrap();
        let msg = OpLogReader::open(&path).unwrap_err().to_string();
        assert!(msg.contains("empty.tsv:1: empty file"), "{msg}");

        let msg = OpLogReader::open(&dir.path().join("absent.tsv"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("absent.tsv: "), "{msg}");

        let path = dir.path().join("long.tsv");
        let mut text = format!("{}\n", HEADER.join("\t"));
        text.push_str(&"x".repeat(MAX_LINE_BYTES + 10));
        std::fs::write(&path, text).unwrap();
        let (_, err) = collect(OpLogReader::open(&path).unwrap());
        assert!(
            err.unwrap()
                .to_string()
                .contains("long.tsv:2: line longer than")
        );

        let path = dir.path().join("bin.tsv");
        let mut bytes = format!("{}\n", HEADER.join("\t")).into_bytes();
        bytes.extend_from_slice(b"\xff\xfe\n");
        std::fs::write(&path, bytes).unwrap();
        let (_, err) = collect(OpLogReader::open(&path).unwrap());
        assert!(
            err.unwrap()
                .to_string()
                .contains("bin.tsv:2: not valid UTF-8")
        );
    }

    #[test]
    fn warp_style_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("warp.csv.zst");
        // Columns reordered a little, an extra unknown column, no `stage`,
        // CRLF line ends, Go RFC3339Nano times with offsets, a HEAD op, a
        // zero first byte, an empty end derived from duration_ns.
        let text = "idx\tthread\top\tclient_id\tn_objects\tbytes\tendpoint\tfile\terror\tstart\tfirst_byte\tend\tduration_ns\textra\r\n\
0\t3\tGET\tcl1\t1\t4096\thttp://h:9000\tb/o1\t\t2026-11-23T22:56:45.1+01:00\t2026-11-23T22:56:45.15+01:00\t2026-11-23T22:56:45.2+01:00\t100000000\tzz\r\n\
1\t4\tHEAD\tcl1\t1\t0\thttp://h:9000\tb/o2\t\t2026-11-23T21:56:45+00:00\t0001-01-01T00:00:00Z\t\t2500\t\r\n\
# warp command line: warp get ...\r\n";
        let mut enc = zstd::Encoder::new(std::fs::File::create(&path).unwrap(), 3).unwrap();
        enc.write_all(text.as_bytes()).unwrap();
        enc.finish().unwrap();

        let recs: Vec<OpRecord> = OpLogReader::open(&path)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(recs.len(), 2);
        let base = parse_rfc3339_ns("2026-11-23T21:56:45Z").unwrap();
        assert_eq!(recs[0].op, OpKind::Get);
        assert_eq!(recs[0].thread, 3);
        assert_eq!(recs[0].start_ns, base + 100_000_000);
        assert_eq!(recs[0].first_byte_ns, Some(base + 150_000_000));
        assert_eq!(recs[0].end_ns, base + 200_000_000);
        assert_eq!(recs[0].stage, "");
        assert_eq!(recs[1].op, OpKind::Stat);
        assert_eq!(recs[1].first_byte_ns, None);
        assert_eq!(recs[1].end_ns, base + 2_500);
        assert_eq!(recs[1].file, "b/o2");
    }
}
