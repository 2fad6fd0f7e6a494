//! `controller export`: a run's merged timeline in another file format for
//! the data tools (DuckDB, pandas, polars). Parquet is the one format so
//! far ([`parquet`]); `controller run --timeline-format parquet` calls the
//! same exporter after the run's merge.

mod columns;
pub mod parquet;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use crate::cli::{ExportArgs, ExportFormat};

/// The merged timeline's name in a run directory.
const TIMELINE: &str = "timeline.tsv.zst";

/// The Parquet timeline's name in a run directory.
pub const PARQUET_TIMELINE: &str = "timeline.parquet";

/// The timeline to read and the default output for `input`: a run
/// directory's `timeline.tsv.zst` and `timeline.parquet` beside it, or any
/// op-log file and the same name with `.parquet` for its `.tsv[.zst]`.
fn paths(input: &Path) -> (PathBuf, PathBuf) {
    if input.is_dir() {
        return (input.join(TIMELINE), input.join(PARQUET_TIMELINE));
    }
    let name = input
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let stem = name
        .strip_suffix(".zst")
        .unwrap_or(&name)
        .strip_suffix(".tsv")
        .unwrap_or(name.strip_suffix(".zst").unwrap_or(&name));
    (
        input.to_path_buf(),
        input.with_file_name(format!("{stem}.parquet")),
    )
}

pub fn export_command(args: ExportArgs) -> ExitCode {
    let (input, default_out) = paths(&args.input);
    let output = args.output.unwrap_or(default_out);
    match args.format {
        ExportFormat::Parquet => {
            let started = Instant::now();
            match parquet::export_timeline(&input, &output) {
                Ok(s) => {
                    let secs = started.elapsed().as_secs_f64();
                    println!(
                        "exported {} records in {} row groups, {} bytes, {:.3} s ({:.0} records/s) -> {}",
                        s.records,
                        s.row_groups,
                        s.bytes_written,
                        secs,
                        s.records as f64 / secs.max(1e-9),
                        output.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_output_is_beside_the_input() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            paths(dir.path()),
            (dir.path().join(TIMELINE), dir.path().join(PARQUET_TIMELINE))
        );
        assert_eq!(
            paths(Path::new("x/a.tsv.zst")).1,
            PathBuf::from("x/a.parquet")
        );
        assert_eq!(paths(Path::new("a.tsv")).1, PathBuf::from("a.parquet"));
        assert_eq!(paths(Path::new("a.log")).1, PathBuf::from("a.log.parquet"));
    }
}
