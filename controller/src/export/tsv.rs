//! `controller export --format tsv`: any op-log (an agent's binary spool,
//! a zstd or plain TSV log) as a zstd TSV file, lines in the log's own
//! order, byte for byte the text the agent's TSV writer would have written
//! (the spool reader formats with the writer's code). For tools that read
//! an agent's raw log as text; the merged `timeline.tsv.zst` is TSV
//! already.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use chorus_common::oplog::open_log_text;

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
/// when complete); returns the bytes of text written.
pub fn export_tsv(input: &Path, output: &Path) -> Result<u64, String> {
    if output == input {
        return Err(format!(
            "{} is the input: give -o another file",
            output.display()
        ));
    }
    let mut text = open_log_text(input).map_err(|e| e.to_string())?;
    let tmp = output.with_file_name(format!(
        ".{}.tmp",
        output
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
    ));
    let mut write = || -> io::Result<u64> {
        let file = std::fs::File::create(&tmp)?;
        let mut enc = zstd::Encoder::new(io::BufWriter::new(file), LEVEL)?;
        let n = io::copy(&mut text, &mut enc)?;
        enc.finish()?.flush()?;
        Ok(n)
    };
    match write() {
        Ok(n) => {
            std::fs::rename(&tmp, output).map_err(|e| format!("{}: {e}", output.display()))?;
            Ok(n)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(format!("{}: {e}", input.display()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names() {
        let o = |s: &str| default_output(Path::new(s));
        assert_eq!(o("a/01-load.spool.zst"), PathBuf::from("a/01-load.tsv.zst"));
        assert_eq!(o("x.tsv"), PathBuf::from("x.tsv.zst"));
        assert_eq!(o("x.tsv.zst"), PathBuf::from("x.tsv.zst"));
    }
}
