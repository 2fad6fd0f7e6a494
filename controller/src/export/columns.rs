//! What the Parquet exports (the timeline, the per-second series) share:
//! packed string columns, the column writers (present values with
//! definition levels for optional columns, in bounded batches), the
//! writer's properties, the error type, and writing a file under a
//! temporary name that gets its own only when complete.
//!
//! Each export keeps its own row buffer and schema; only the mechanics of
//! handing columns to the `parquet` crate's low-level writer live here, so
//! both files are encoded and compressed the same way.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use parquet::basic::{Compression, ZstdLevel};
use parquet::data_type::{ByteArray, ByteArrayType, DataType};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::{SerializedColumnWriter, SerializedFileWriter};
use parquet::schema::parser::parse_message_type;
use parquet::schema::types::ColumnPath;

/// Values handed to the column writer per call, so the per-call vectors of
/// `ByteArray` (which point into the buffered strings) stay small.
const WRITE_BATCH: usize = 64 * 1024;

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
pub struct Strings {
    pub data: Vec<u8>,
    /// End of each value in `data`.
    ends: Vec<usize>,
}

impl Strings {
    pub fn push(&mut self, s: &str) {
        self.data.extend_from_slice(s.as_bytes());
        self.ends.push(self.data.len());
    }

    pub fn clear(&mut self) {
        self.data.clear();
        self.ends.clear();
    }
}

/// Writes `values` (present values only) with `def` levels when the column
/// is optional, in batches of [`WRITE_BATCH`] rows.
pub fn write_values<T: DataType>(
    col: &mut SerializedColumnWriter<'_>,
    values: &[T::T],
    def: Option<&[i16]>,
) -> parquet::errors::Result<()> {
    let w = col.typed::<T>();
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

/// Writes a string column; its packed data is handed to the writer as
/// slices of one buffer (no copy per value), then given back for reuse.
pub fn write_strings(
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

/// The writer's settings: zstd, dictionaries only on `dictionary` (the
/// columns with few distinct values; the others would only fill one and
/// fall back to plain), row groups ended by the caller's flushes.
fn properties(max_rows: usize, dictionary: &[&str]) -> WriterProperties {
    let mut b = WriterProperties::builder()
        // Level 3, zstd's default: most of its ratio at a fraction of the
        // time of higher levels (the TSV timeline uses the same).
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_dictionary_enabled(false)
        // Our own flush ends every row group; this only must not end one
        // sooner.
        .set_max_row_group_row_count(Some(max_rows.max(1)))
        .set_created_by(format!("chorus {}", env!("CARGO_PKG_VERSION")));
    for c in dictionary {
        b = b.set_column_dictionary_enabled(ColumnPath::from(*c), true);
    }
    b.build()
}

/// The buffered file writer of one export.
pub type Writer = SerializedFileWriter<BufWriter<File>>;

/// Creates `tmp` and a Parquet writer of `schema` on it.
pub fn create(
    tmp: &Path,
    schema: &str,
    max_rows: usize,
    dictionary: &[&str],
) -> Result<Writer, ExportError> {
    let pq_err = |source| ExportError::Parquet {
        path: tmp.to_path_buf(),
        source,
    };
    let file = File::create(tmp).map_err(|source| ExportError::Io {
        path: tmp.to_path_buf(),
        source,
    })?;
    let schema = Arc::new(parse_message_type(schema).map_err(pq_err)?);
    SerializedFileWriter::new(
        BufWriter::with_capacity(1 << 20, file),
        schema,
        Arc::new(properties(max_rows, dictionary)),
    )
    .map_err(pq_err)
}

/// Writes the footer, syncs `tmp` and returns its size.
pub fn finish(writer: Writer, tmp: &Path) -> Result<u64, ExportError> {
    let io_err = |source| ExportError::Io {
        path: tmp.to_path_buf(),
        source,
    };
    let inner = writer.into_inner().map_err(|source| ExportError::Parquet {
        path: tmp.to_path_buf(),
        source,
    })?;
    let file = inner.into_inner().map_err(|e| io_err(e.into_error()))?;
    file.sync_all().map_err(io_err)?;
    Ok(file.metadata().map_err(io_err)?.len())
}

/// Runs `write` on a temporary name beside `output` and renames it to
/// `output` once it succeeded; on any error nothing is left, so a file
/// under its own name is always complete.
pub fn atomically<T>(
    output: &Path,
    write: impl FnOnce(&Path) -> Result<T, ExportError>,
) -> Result<T, ExportError> {
    let tmp = output.with_file_name(format!(
        ".{}.{}.tmp",
        output
            .file_name()
            .map_or("export.parquet".into(), |n| n.to_string_lossy()),
        std::process::id()
    ));
    let done = match write(&tmp) {
        Ok(v) => v,
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
    Ok(done)
}
