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

use std::path::Path;

use chorus_common::oplog::{OpLogReader, OpRecord};
use parquet::data_type::{BoolType, Int32Type, Int64Type};
use parquet::file::writer::SerializedFileWriter;

use super::columns::{self, Strings, write_strings, write_values};
pub use super::columns::{ExportError, ExportStats};

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
    fn flush<W: std::io::Write + Send>(
        &mut self,
        writer: &mut SerializedFileWriter<W>,
    ) -> parquet::errors::Result<()> {
        let mut rg = writer.next_row_group()?;
        let mut n = 0;
        while let Some(mut col) = rg.next_column()? {
            match n {
                0 => write_values::<Int64Type>(&mut col, &self.idx, None)?,
                1 => write_values::<Int64Type>(&mut col, &self.thread, None)?,
                2 => write_strings(&mut col, &mut self.op, None)?,
                3 => write_strings(&mut col, &mut self.client_id, None)?,
                4 => write_values::<Int32Type>(&mut col, &self.n_objects, None)?,
                5 => write_values::<Int64Type>(&mut col, &self.bytes, None)?,
                6 => write_strings(&mut col, &mut self.endpoint, None)?,
                7 => write_strings(&mut col, &mut self.key, None)?,
                8 => write_strings(&mut col, &mut self.error_class, Some(&self.error_class_def))?,
                9 => write_strings(&mut col, &mut self.error, Some(&self.error_def))?,
                10 => write_values::<Int64Type>(&mut col, &self.start, None)?,
                11 => write_values::<Int64Type>(
                    &mut col,
                    &self.first_byte,
                    Some(&self.first_byte_def),
                )?,
                12 => write_values::<Int64Type>(&mut col, &self.end, None)?,
                13 => write_values::<Int64Type>(&mut col, &self.duration_ns, None)?,
                14 => write_strings(&mut col, &mut self.stage, None)?,
                15 => write_values::<BoolType>(&mut col, &self.warmup, None)?,
                16 => write_values::<Int32Type>(&mut col, &self.retries, None)?,
                17 => write_values::<Int64Type>(&mut col, &self.lag_ns, Some(&self.lag_ns_def))?,
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

/// Exports the op-log or timeline `input` to the Parquet file `output`.
/// The file appears under its name only when complete; on any error (a
/// damaged input included, located by file and line) nothing is left.
pub fn export_timeline(input: &Path, output: &Path) -> Result<ExportStats, ExportError> {
    columns::atomically(output, |tmp| write_file(input, tmp, MAX_ROW_GROUP_ROWS))
}

/// Writes `input` to `tmp` in row groups of at most `max_rows` rows (a
/// parameter so tests can make several groups from a few records).
fn write_file(input: &Path, tmp: &Path, max_rows: usize) -> Result<ExportStats, ExportError> {
    let pq_err = |source| ExportError::Parquet {
        path: tmp.to_path_buf(),
        source,
    };
    let mut reader = OpLogReader::open(input)?;
    let mut writer = columns::create(tmp, SCHEMA, max_rows, &DICTIONARY_COLUMNS)?;
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
    stats.bytes_written = columns::finish(writer, tmp)?;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chorus_common::op::OpKind;
    use chorus_common::oplog::write_records;
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::Field;
    use std::fs::File;

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
