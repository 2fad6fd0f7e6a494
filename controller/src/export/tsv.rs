//! `controller export --format tsv`: any op-log (an agent's binary spool,
//! a zstd or plain TSV log) as a zstd TSV file, lines in the log's own
//! order, byte for byte the text the agent's TSV writer would have written
//! (the spool reader formats with the writer's code). For tools that read
//! an agent's raw log as text; the merged `timeline.tsv.zst` is TSV
//! already.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use chorus_common::oplog::open_log_text;

use super::columns::{self, ExportError};

/// zstd level of the output: 1, as the agent's and merge's logs.
const LEVEL: i32 = 1;

/// Where `input`'s TSV goes by default: beside it, `.tsv.zst` for its
/// `.spool.zst`, `.tsv.zst` or `.tsv`.
pub fn default_output(input: &Path) -> PathBuf {
    let name = input
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let bare = name.strip_suffix(".zst").unwrap_or(&name);
    let stem = bare
        .strip_suffix(".spool")
        .or_else(|| bare.strip_suffix(".tsv"))
        .unwrap_or(bare);
    input.with_file_name(format!("{stem}.tsv.zst"))
}

/// Writes `input` as zstd TSV to `output` (through a temp file renamed
/// when complete, [`columns::atomically`]); returns the bytes of text
/// written.
pub fn export_tsv(input: &Path, output: &Path) -> Result<u64, String> {
    if output == input {
        return Err(format!(
            "{} is the input: give -o another file",
            output.display()
        ));
    }
    let mut text = open_log_text(input).map_err(|e| e.to_string())?;
    // Under a temporary name until complete, as the Parquet exports.
    columns::atomically(output, |tmp| {
        let mut write = || -> io::Result<u64> {
            let file = std::fs::File::create(tmp)?;
            let mut enc = zstd::Encoder::new(io::BufWriter::new(file), LEVEL)?;
            let n = io::copy(&mut text, &mut enc)?;
            enc.finish()?.flush()?;
            Ok(n)
        };
        // Reading a damaged log fails here as well: the input is named.
        write().map_err(|source| ExportError::Io {
            path: input.to_path_buf(),
            source,
        })
    })
    .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    use chorus_common::op::OpKind;
    use chorus_common::oplog::{EntryKey, LogBatch, LogContext, LogEntry, SpoolWriter};
    use chorus_common::plan::KeyNaming;
    use std::io::Read;
    use std::sync::Arc;

    /// A spool of `n` GETs by one worker.
    fn spool(path: &Path, n: u64) {
        let ctx = LogContext::new("agent-0", "load", "obj/", KeyNaming::default());
        let mut b = LogBatch::with_capacity(Arc::new(ctx), n as usize);
        let ep = b.endpoint_id("file:///data");
        for i in 0..n {
            let start_ns = 1_700_000_000_000_000_000 + i as i64 * 1_000;
            b.push(
                LogEntry {
                    thread: 0,
                    op: OpKind::Get,
                    warmup: false,
                    retries: 0,
                    n_objects: 1,
                    bytes: 4096,
                    start_ns,
                    first_byte_ns: Some(start_ns + 200),
                    end_ns: start_ns + 500,
                    lag_ns: None,
                    key: EntryKey::Index(i),
                    error: String::new(),
                },
                ep,
            );
        }
        b.set_first_idx(0);
        let mut w = SpoolWriter::create(path).unwrap();
        w.write_batch(&b).unwrap();
        w.finish().unwrap();
    }

    #[test]
    fn a_spool_is_exported_as_the_text_its_reader_gives() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("01-load.spool.zst");
        spool(&input, 100);
        let output = default_output(&input);
        let n = export_tsv(&input, &output).unwrap();
        let mut want = Vec::new();
        open_log_text(&input)
            .unwrap()
            .read_to_end(&mut want)
            .unwrap();
        let got = zstd::decode_all(std::fs::File::open(&output).unwrap()).unwrap();
        assert_eq!(got, want);
        assert_eq!(n, want.len() as u64);
        assert_eq!(
            got.iter().filter(|&&b| b == b'\n').count(),
            101,
            "header + 100"
        );
        // Only the output is left: no temp file beside it.
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(names.len(), 2, "{names:?}");
        // The input is never the output.
        let same = export_tsv(&output, &output).unwrap_err();
        assert!(same.contains("is the input"), "{same}");
    }

    #[test]
    fn default_names() {
        let o = |s: &str| default_output(Path::new(s));
        assert_eq!(o("a/01-load.spool.zst"), PathBuf::from("a/01-load.tsv.zst"));
        assert_eq!(o("x.tsv"), PathBuf::from("x.tsv.zst"));
        assert_eq!(o("x.tsv.zst"), PathBuf::from("x.tsv.zst"));
    }
}
