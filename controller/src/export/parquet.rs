//! The merged timeline as Parquet: one typed column per op-log column,
//! written row group by row group from a streaming read of the TSV, so
//! memory is bounded by one row group however long the timeline.
//!
//! The records come from [`OpLogReader`], the same reader `analyze` uses;
//! this module only lays them out in columns. It uses the `parquet` crate's
//! low-level column writer rather than its arrow writer: arrow's crates
//! would more than double what this costs to build, for one file format.
//! Without arrow's schema in the file, readers take string columns as plain
//! strings; they are dictionary-encoded in the file all the same (pyarrow
//! gives `dictionary<string>` with `read_dictionary`, see docs/analysis.md).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use chorus_common::oplog::{OpLogReader, OpRecord};
use parquet::basic::{Compression, ZstdLevel};
use parquet::data_type::{BoolType, ByteArray, ByteArrayType, Int32Type, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::{SerializedColumnWriter, SerializedFileWriter};
use parquet::schema::parser::parse_message_type;
use parquet::schema::types::ColumnPath;

/// Rows per row group at most: a reader streams a file a row group at a
/// time, and 1 Mi rows is what DuckDB and pyarrow handle well.
pub const MAX_ROW_GROUP_ROWS: usize = 1 << 20;

/// Buffered column data per row group at most (strings and numbers as held
/// before encoding), so the exporter's memory stays near this bound
/// whatever the keys' and error texts' lengths. At about 140 bytes a row
/// plus its strings, this ends most row groups before
/// [`MAX_ROW_GROUP_ROWS`] (about 300,000 rows with short keys): still
/// large enough for a reader's column scans, and it keeps the exporter's
/// memory near the merge's.
pub const MAX_ROW_GROUP_BYTES: usize = 64 << 20;

/// Values handed to the column writer per call, so the per-call vectors of
/// `ByteArray` (which point into the buffered strings) stay small.
const WRITE_BATCH: usize = 64 * 1024;

/// The file's schema; docs/analysis.md lists it for users. Column order is
/// that of the TSV, with `file` named `key` and the error class split out.
const SCHEMA: &str = "message timeline {
  required int64 idx;
  required int64 thread;
  required binary op (STRING);
  required binary client_id (STRING);
  required int32 n_objects;
  required int64 bytes;
  required binary endpoint (STRING);
  required binary key (STRING);
  optional binary error_class (STRING);
  optional binary error (STRING);
  required int64 start (TIMESTAMP(NANOS,true));
  optional int64 first_byte (TIMESTAMP(NANOS,true));
  required int64 end (TIMESTAMP(NANOS,true));
  required int64 duration_ns;
  required binary stage (STRING);
  required boolean warmup;
  required int32 retries;
  optional int64 lag_ns;
}";

/// Columns with few distinct values, dictionary-encoded; the others (keys,
/// times, numbers) would only fill a dictionary and fall back to plain.
const DICTIONARY_COLUMNS: [&str; 5] = ["op", "client_id", "endpoint", "error_class", "stage"];

/// What an export did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportStats {
    pub records: u64,
    pub row_groups: u64,
    pub bytes_written: u64,
}

/// Why an export failed: the input's error is located (file and line).
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Input(#[from] chorus_common::oplog::OpLogError),
    #[error("{}:{line}: {msg}", .path.display())]
    Value {
        path: PathBuf,
        line: u64,
        msg: String,
    },
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: writing Parquet: {source}", .path.display())]
    Parquet {
        path: PathBuf,
        source: parquet::errors::ParquetError,
    },
}

/// Strings of one column, packed: one allocation per column, not per value.
#[derive(Default)]
struct Strings {
    data: Vec<u8>,
    /// End of each value in `data`.
    ends: Vec<usize>,
}

impl Strings {
    fn push(&mut self, s: &str) {
        self.data.extend_from_slice(s.as_bytes());
        self.ends.push(self.data.len());
    }

    fn clear(&mut self) {
        self.data.clear();
        self.ends.clear();
    }
}

/// One row group's worth of columns.
#[derive(Default)]
struct RowGroup {
    idx: Vec<i64>,
    thread: Vec<i64>,
    op: Strings,
    client_id: Strings,
    n_objects: Vec<i32>,
    bytes: Vec<i64>,
    endpoint: Strings,
    key: Strings,
    /// Present values only, with definition levels beside them (1 present,
    /// 0 null), as Parquet writes an optional column.
    error_class: Strings,
    error_class_def: Vec<i16>,
    error: Strings,
    error_def: Vec<i16>,
    start: Vec<i64>,
    first_byte: Vec<i64>,
    first_byte_def: Vec<i16>,
    end: Vec<i64>,
    duration_ns: Vec<i64>,
    stage: Strings,
    warmup: Vec<bool>,
    retries: Vec<i32>,
    lag_ns: Vec<i64>,
    lag_ns_def: Vec<i16>,
}

impl RowGroup {
    fn len(&self) -> usize {
        self.idx.len()
    }

    /// Buffered bytes, for [`MAX_ROW_GROUP_BYTES`]: the strings plus a
    /// fixed cost per row for the numbers, levels and string ends.
    fn heap_bytes(&self) -> usize {
        const PER_ROW: usize = 8 * 8 + 4 * 2 + 2 * 4 + 1 + 8 * 7;
        [
            &self.op,
            &self.client_id,
            &self.endpoint,
            &self.key,
            &self.error_class,
            &self.error,
            &self.stage,
        ]
        .iter()
        .map(|s| s.data.len())
        .sum::<usize>()
            + self.len() * PER_ROW
    }

    fn push(&mut self, r: &OpRecord, path: &Path, line: u64) -> Result<(), ExportError> {
        let value_err = |msg: String| ExportError::Value {
            path: path.to_path_buf(),
            line,
            msg,
        };
        // Parquet has no unsigned 64-bit type that every reader takes as a
        // number, so the u64 fields go as int64; past i64::MAX is not a size
        // or time a real op has, so it is an error rather than a wrap.
        let signed = |v: u64, what: &str| {
            i64::try_from(v).map_err(|_| value_err(format!("{what} {v} is past int64")))
        };
        let idx = signed(r.idx, "idx")?;
        let thread = signed(r.thread, "thread")?;
        let bytes = signed(r.bytes, "bytes")?;
        let lag = r.lag_ns.map(|l| signed(l, "lag_ns")).transpose()?;
        let n_objects = i32::try_from(r.n_objects)
            .map_err(|_| value_err(format!("n_objects {} is past int32", r.n_objects)))?;
        let retries = i32::try_from(r.retries)
            .map_err(|_| value_err(format!("retries {} is past int32", r.retries)))?;
        self.idx.push(idx);
        self.thread.push(thread);
        self.op.push(r.op.log_name());
        self.client_id.push(&r.client_id);
        self.n_objects.push(n_objects);
        self.bytes.push(bytes);
        self.endpoint.push(&r.endpoint);
        self.key.push(&r.file);
        if r.error.is_empty() {
            self.error_class_def.push(0);
            self.error_def.push(0);
        } else {
            // `<class>: <message>` (oplog.md); a text without the separator
            // is all class, as a foreign log's bare error word would be.
            let class = r
                .error
                .split_once(": ")
                .map_or(r.error.as_str(), |(c, _)| c);
            self.error_class.push(class);
            self.error_class_def.push(1);
            self.error.push(&r.error);
            self.error_def.push(1);
        }
        self.start.push(r.start_ns);
        match r.first_byte_ns {
            Some(t) => {
                self.first_byte.push(t);
                self.first_byte_def.push(1);
            }
            None => self.first_byte_def.push(0),
        }
        self.end.push(r.end_ns);
        self.duration_ns.push(r.duration_ns());
        self.stage.push(&r.stage);
        self.warmup.push(r.warmup);
        self.retries.push(retries);
        match lag {
            Some(l) => {
                self.lag_ns.push(l);
                self.lag_ns_def.push(1);
            }
            None => self.lag_ns_def.push(0),
        }
        Ok(())
    }

    /// Writes the buffered rows as one row group and empties the buffers
    /// (keeping their capacity for the next one).
    fn flush<W: Write + Send>(
        &mut self,
        writer: &mut SerializedFileWriter<W>,
    ) -> parquet::errors::Result<()> {
        let mut rg = writer.next_row_group()?;
        let mut n = 0;
        while let Some(mut col) = rg.next_column()? {
            match n {
                0 => write_i64(&mut col, &self.idx, None)?,
                1 => write_i64(&mut col, &self.thread, None)?,
                2 => write_strings(&mut col, &mut self.op, None)?,
                3 => write_strings(&mut col, &mut self.client_id, None)?,
                4 => write_i32(&mut col, &self.n_objects)?,
                5 => write_i64(&mut col, &self.bytes, None)?,
                6 => write_strings(&mut col, &mut self.endpoint, None)?,
                7 => write_strings(&mut col, &mut self.key, None)?,
                8 => write_strings(&mut col, &mut self.error_class, Some(&self.error_class_def))?,
                9 => write_strings(&mut col, &mut self.error, Some(&self.error_def))?,
                10 => write_i64(&mut col, &self.start, None)?,
                11 => write_i64(&mut col, &self.first_byte, Some(&self.first_byte_def))?,
                12 => write_i64(&mut col, &self.end, None)?,
                13 => write_i64(&mut col, &self.duration_ns, None)?,
                14 => write_strings(&mut col, &mut self.stage, None)?,
                15 => {
                    for chunk in self.warmup.chunks(WRITE_BATCH) {
                        col.typed::<BoolType>().write_batch(chunk, None, None)?;
                    }
                }
                16 => write_i32(&mut col, &self.retries)?,
                17 => write_i64(&mut col, &self.lag_ns, Some(&self.lag_ns_def))?,
                _ => {
                    return Err(parquet::errors::ParquetError::General(format!(
                        "schema has a column {n} the exporter does not know"
                    )));
                }
            }
            col.close()?;
            n += 1;
        }
        rg.close()?;
        self.clear();
        Ok(())
    }

    fn clear(&mut self) {
        self.idx.clear();
        self.thread.clear();
        self.op.clear();
        self.client_id.clear();
        self.n_objects.clear();
        self.bytes.clear();
        self.endpoint.clear();
        self.key.clear();
        self.error_class.clear();
        self.error_class_def.clear();
        self.error.clear();
        self.error_def.clear();
        self.start.clear();
        self.first_byte.clear();
        self.first_byte_def.clear();
        self.end.clear();
        self.duration_ns.clear();
        self.stage.clear();
        self.warmup.clear();
        self.retries.clear();
        self.lag_ns.clear();
        self.lag_ns_def.clear();
    }
}

/// Writes `values` (present values only) with `def` levels when the column
/// is optional, in batches of [`WRITE_BATCH`] rows.
fn write_i64(
    col: &mut SerializedColumnWriter<'_>,
    values: &[i64],
    def: Option<&[i16]>,
) -> parquet::errors::Result<()> {
    let w = col.typed::<Int64Type>();
    match def {
        None => {
            for chunk in values.chunks(WRITE_BATCH) {
                w.write_batch(chunk, None, None)?;
            }
        }
        Some(def) => {
            let mut at = 0;
            for levels in def.chunks(WRITE_BATCH) {
                let present = levels.iter().filter(|&&d| d == 1).count();
                w.write_batch(&values[at..at + present], Some(levels), None)?;
                at += present;
            }
        }
    }
    Ok(())
}

fn write_i32(col: &mut SerializedColumnWriter<'_>, values: &[i32]) -> parquet::errors::Result<()> {
    for chunk in values.chunks(WRITE_BATCH) {
        col.typed::<Int32Type>().write_batch(chunk, None, None)?;
    }
    Ok(())
}

/// Writes a string column; its packed data is handed to the writer as
/// slices of one buffer (no copy per value), then given back for reuse.
fn write_strings(
    col: &mut SerializedColumnWriter<'_>,
    strings: &mut Strings,
    def: Option<&[i16]>,
) -> parquet::errors::Result<()> {
    let data = Bytes::from(std::mem::take(&mut strings.data));
    let w = col.typed::<ByteArrayType>();
    let mut batch: Vec<ByteArray> = Vec::with_capacity(WRITE_BATCH.min(strings.ends.len()));
    let mut begin = 0;
    let mut value = 0;
    let rows = def.map_or(strings.ends.len(), <[i16]>::len);
    let mut row = 0;
    while row < rows {
        let levels = def.map(|d| &d[row..(row + WRITE_BATCH).min(rows)]);
        let n_rows = levels.map_or(WRITE_BATCH.min(rows - row), <[i16]>::len);
        let present = levels.map_or(n_rows, |l| l.iter().filter(|&&d| d == 1).count());
        batch.clear();
        for &end in &strings.ends[value..value + present] {
            batch.push(ByteArray::from(data.slice(begin..end)));
            begin = end;
        }
        w.write_batch(&batch, levels, None)?;
        value += present;
        row += n_rows;
    }
    drop(batch);
    // Every slice is gone, so the buffer comes back without a copy.
    strings.data = match data.try_into_mut() {
        Ok(m) => Vec::from(m),
        Err(_) => Vec::new(),
    };
    Ok(())
}

fn properties(max_rows: usize) -> WriterProperties {
    let mut b = WriterProperties::builder()
        // Level 3, zstd's default: most of its ratio at a fraction of the
        // time of higher levels (the TSV timeline uses the same).
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_dictionary_enabled(false)
        // Our own flush ends every row group; this only must not end one
        // sooner.
        .set_max_row_group_row_count(Some(max_rows.max(1)))
        .set_created_by(format!("chorus {}", env!("CARGO_PKG_VERSION")));
    for c in DICTIONARY_COLUMNS {
        b = b.set_column_dictionary_enabled(ColumnPath::from(c), true);
    }
    b.build()
}

/// Exports the op-log or timeline `input` to the Parquet file `output`.
/// The file appears under its name only when complete; on any error (a
/// damaged input included, located by file and line) nothing is left.
pub fn export_timeline(input: &Path, output: &Path) -> Result<ExportStats, ExportError> {
    let tmp = output.with_file_name(format!(
        ".{}.{}.tmp",
        output
            .file_name()
            .map_or("timeline.parquet".into(), |n| n.to_string_lossy()),
        std::process::id()
    ));
    let result = write_file(input, &tmp, MAX_ROW_GROUP_ROWS);
    let stats = match result {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    std::fs::rename(&tmp, output).map_err(|source| {
        let _ = std::fs::remove_file(&tmp);
        ExportError::Io {
            path: output.to_path_buf(),
            source,
        }
    })?;
    Ok(stats)
}

/// Writes `input` to `tmp` in row groups of at most `max_rows` rows (a
/// parameter so tests can make several groups from a few records).
fn write_file(input: &Path, tmp: &Path, max_rows: usize) -> Result<ExportStats, ExportError> {
    let pq_err = |source| ExportError::Parquet {
        path: tmp.to_path_buf(),
        source,
    };
    let mut reader = OpLogReader::open(input)?;
    let file = File::create(tmp).map_err(|source| ExportError::Io {
        path: tmp.to_path_buf(),
        source,
    })?;
    let schema = Arc::new(parse_message_type(SCHEMA).map_err(pq_err)?);
    let mut writer = SerializedFileWriter::new(
        BufWriter::with_capacity(1 << 20, file),
        schema,
        Arc::new(properties(max_rows)),
    )
    .map_err(pq_err)?;
    let mut group = RowGroup::default();
    let mut stats = ExportStats::default();
    while let Some(record) = reader.next() {
        let record = record?;
        group.push(&record, input, reader.lines_read())?;
        stats.records += 1;
        if group.len() >= max_rows || group.heap_bytes() >= MAX_ROW_GROUP_BYTES {
            group.flush(&mut writer).map_err(pq_err)?;
            stats.row_groups += 1;
        }
    }
    if group.len() > 0 {
        group.flush(&mut writer).map_err(pq_err)?;
        stats.row_groups += 1;
    }
    let inner = writer.into_inner().map_err(pq_err)?;
    let file = inner.into_inner().map_err(|e| ExportError::Io {
        path: tmp.to_path_buf(),
        source: e.into_error(),
    })?;
    file.sync_all().map_err(|source| ExportError::Io {
        path: tmp.to_path_buf(),
        source,
    })?;
    stats.bytes_written = file
        .metadata()
        .map_err(|source| ExportError::Io {
            path: tmp.to_path_buf(),
            source,
        })?
        .len();
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chorus_common::op::OpKind;
    use chorus_common::oplog::write_records;
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::Field;

    fn record(n: u64) -> OpRecord {
        let start_ns = 1_795_471_005_000_000_000 + n as i64 * 1_000_000;
        OpRecord {
            idx: n,
            thread: n % 4,
            op: if n.is_multiple_of(2) {
                OpKind::Get
            } else {
                OpKind::Put
            },
            client_id: format!("agent-{}", n % 3),
            n_objects: 1,
            bytes: if n.is_multiple_of(5) { 0 } else { 1000 + n },
            endpoint: "file:///data".into(),
            file: format!("k/obj-{n:06}"),
            error: if n.is_multiple_of(5) {
                "not_found: no such key".into()
            } else {
                String::new()
            },
            start_ns,
            first_byte_ns: n.is_multiple_of(2).then_some(start_ns + 100),
            end_ns: start_ns + 1_000 + n as i64,
            stage: "mixed".into(),
            warmup: n < 3,
            retries: (n % 2) as u32,
            lag_ns: (n.is_multiple_of(7)).then_some(n),
        }
    }

    /// Every record comes back, field by field, across several row groups.
    #[test]
    fn round_trip_over_row_groups() {
        let dir = tempfile::tempdir().unwrap();
        let tsv = dir.path().join("t.tsv.zst");
        let records: Vec<OpRecord> = (0..250).map(record).collect();
        write_records(&tsv, records.clone()).unwrap();
        let out = dir.path().join("t.parquet");
        let stats = write_file(&tsv, &out, 100).unwrap();
        assert_eq!(stats.records, 250);
        assert_eq!(stats.row_groups, 3);
        let reader = SerializedFileReader::new(File::open(&out).unwrap()).unwrap();
        assert_eq!(reader.metadata().num_row_groups(), 3);
        // The record API reads nanosecond timestamps as plain longs, so the
        // logical type is checked on the schema.
        let schema = reader.metadata().file_metadata().schema_descr();
        for c in ["start", "first_byte", "end"] {
            let col = (0..schema.num_columns())
                .map(|i| schema.column(i))
                .find(|col| col.name() == c)
                .unwrap();
            assert_eq!(
                col.logical_type_ref(),
                Some(&parquet::basic::LogicalType::timestamp(
                    true,
                    parquet::basic::TimeUnit::NANOS,
                )),
                "{c}"
            );
        }
        let rows: Vec<_> = reader
            .get_row_iter(None)
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(rows.len(), records.len());
        for (row, r) in rows.iter().zip(&records) {
            let f: std::collections::HashMap<&str, &Field> = row
                .get_column_iter()
                .map(|(n, f)| (n.as_str(), f))
                .collect();
            assert_eq!(f["idx"], &Field::Long(r.idx as i64));
            assert_eq!(f["op"], &Field::Str(r.op.log_name().into()));
            assert_eq!(f["key"], &Field::Str(r.file.clone()));
            assert_eq!(f["bytes"], &Field::Long(r.bytes as i64));
            assert_eq!(f["start"], &Field::Long(r.start_ns));
            assert_eq!(f["duration_ns"], &Field::Long(r.duration_ns()));
            assert_eq!(f["warmup"], &Field::Bool(r.warmup));
            match r.first_byte_ns {
                Some(t) => assert_eq!(f["first_byte"], &Field::Long(t)),
                None => assert_eq!(f["first_byte"], &Field::Null),
            }
            match r.lag_ns {
                Some(l) => assert_eq!(f["lag_ns"], &Field::Long(l as i64)),
                None => assert_eq!(f["lag_ns"], &Field::Null),
            }
            if r.error.is_empty() {
                assert_eq!(f["error_class"], &Field::Null);
            } else {
                assert_eq!(f["error_class"], &Field::Str("not_found".into()));
                assert_eq!(f["error"], &Field::Str(r.error.clone()));
            }
        }
    }

    /// A timeline cut short is an error naming the file and line, and no
    /// Parquet file (nor its temporary) is left behind.
    #[test]
    fn truncated_timeline_is_a_located_error() {
        let dir = tempfile::tempdir().unwrap();
        let tsv = dir.path().join("timeline.tsv.zst");
        write_records(&tsv, (0..20_000).map(record)).unwrap();
        let bytes = std::fs::read(&tsv).unwrap();
        std::fs::write(&tsv, &bytes[..bytes.len() * 2 / 3]).unwrap();
        let out = dir.path().join("timeline.parquet");
        let err = export_timeline(&tsv, &out).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!("{}:", tsv.display())),
            "no file in: {msg}"
        );
        let ExportError::Input(e) = &err else {
            panic!("not an input error: {err:?}")
        };
        let line = e.line().expect("a line number");
        assert!(line > 1 && line < 20_002, "line {line}");
        assert!(msg.contains(&format!(":{line}:")), "{msg}");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "files left: {left:?}");
    }

    /// A bad line (not a truncation) is located the same way.
    #[test]
    fn bad_line_is_a_located_error() {
        let dir = tempfile::tempdir().unwrap();
        let tsv = dir.path().join("t.tsv");
        let mut text = chorus_common::oplog::header_line();
        for n in 0..3 {
            record(n).write_tsv(&mut text);
        }
        text.push_str("garbage\n");
        std::fs::write(&tsv, text).unwrap();
        let err = export_timeline(&tsv, &dir.path().join("t.parquet")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("{}:5:", tsv.display())),
            "{err}"
        );
        assert!(!dir.path().join("t.parquet").exists());
    }
}
