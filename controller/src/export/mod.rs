//! `controller export`: a run's merged timeline and per-second series in
//! another file format for the data tools (DuckDB, pandas, polars).
//! Parquet is the one format so far: [`parquet`] the timeline, [`series`]
//! `series.csv`, both through [`columns`]. `controller run
//! --timeline-format parquet` and `controller collect` call the same
//! exporters on a run directory ([`write_run_parquet`]).

mod columns;
pub mod parquet;
pub mod series;
pub mod tsv;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

pub use columns::{ExportError, ExportStats};
use series::{SERIES_CSV, SERIES_PARQUET, StageStarts};

use crate::EXIT_BAD_INPUT;
use crate::cli::{ExportArgs, ExportFormat};
use crate::run::results::{self, RunMeta};

/// The merged timeline's name in a run directory.
const TIMELINE: &str = "timeline.tsv.zst";

/// The Parquet timeline's name in a run directory.
pub const PARQUET_TIMELINE: &str = "timeline.parquet";

/// What a file is, so which exporter reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum What {
    /// An op-log or merged timeline (TSV, zstd or plain).
    Timeline,
    /// A `series.csv`.
    Series,
}

/// One file to write: `input` as `what`, to `output`.
#[derive(Debug, PartialEq, Eq)]
struct Job {
    what: What,
    input: PathBuf,
    output: PathBuf,
}

impl Job {
    /// Writes the file; a series takes its stages' starts from `starts`.
    fn run(&self, starts: StageStarts) -> Result<ExportStats, ExportError> {
        match self.what {
            What::Timeline => parquet::export_timeline(&self.input, &self.output),
            What::Series => series::export_series(&self.input, &self.output, starts),
        }
    }
}

/// A run directory's files: its timeline, and its series when it has one
/// (every run writes `series.csv`; a directory put together by hand may
/// lack it).
fn run_dir_jobs(dir: &Path) -> Vec<Job> {
    let mut jobs = vec![Job {
        what: What::Timeline,
        input: dir.join(TIMELINE),
        output: dir.join(PARQUET_TIMELINE),
    }];
    if dir.join(SERIES_CSV).exists() {
        jobs.push(Job {
            what: What::Series,
            input: dir.join(SERIES_CSV),
            output: dir.join(SERIES_PARQUET),
        });
    }
    jobs
}

/// What `export INPUT [-o OUTPUT]` writes: for a run directory both of its
/// files beside their sources (`-o` cannot name two files: an error), for
/// a `.csv` file the series, for any other file an op-log, each by default
/// beside the input with `.parquet` for its `.csv`, `.tsv` or `.tsv.zst`.
fn jobs(input: &Path, output: Option<&Path>) -> Result<Vec<Job>, String> {
    if input.is_dir() {
        if output.is_some() {
            return Err(format!(
                "-o names one file, and a run directory exports two ({PARQUET_TIMELINE} and \
                 {SERIES_PARQUET}); give -o with one of them: {} or {}",
                input.join(TIMELINE).display(),
                input.join(SERIES_CSV).display()
            ));
        }
        return Ok(run_dir_jobs(input));
    }
    let name = input
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let (what, stem) = match name.strip_suffix(".csv") {
        Some(stem) => (What::Series, stem),
        None => {
            let bare = name.strip_suffix(".zst").unwrap_or(&name);
            (What::Timeline, bare.strip_suffix(".tsv").unwrap_or(bare))
        }
    };
    Ok(vec![Job {
        what,
        input: input.to_path_buf(),
        output: output.map_or_else(
            || input.with_file_name(format!("{stem}.parquet")),
            Path::to_path_buf,
        ),
    }])
}

/// The stages' starts of the run directory `dir` (its `run.json`), for a
/// series' `time` column; a note on stderr and none when it cannot be
/// read.
fn starts_in(dir: &Path) -> StageStarts {
    match results::read_meta(dir) {
        Ok(meta) => StageStarts::of(&meta),
        Err(e) => {
            eprintln!("note: {e:#}: the series' `time` column is null");
            StageStarts::default()
        }
    }
}

/// Writes the run directory `dir`'s Parquet files (the timeline, and the
/// series with its times from `meta`), for `run --timeline-format parquet`
/// and `collect`: each file's name and result.
pub fn write_run_parquet(
    dir: &Path,
    meta: &RunMeta,
) -> Vec<(&'static str, Result<ExportStats, ExportError>)> {
    run_dir_jobs(dir)
        .iter()
        .map(|job| {
            let name = match job.what {
                What::Timeline => PARQUET_TIMELINE,
                What::Series => SERIES_PARQUET,
            };
            (name, job.run(StageStarts::of(meta)))
        })
        .collect()
}

pub fn export_command(args: ExportArgs) -> ExitCode {
    if args.format == ExportFormat::Tsv {
        return tsv_command(&args);
    }
    let jobs = match jobs(&args.input, args.output.as_deref()) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    if args.input.is_dir() && jobs.len() == 1 {
        eprintln!(
            "note: no {} in {}: only the timeline is exported",
            SERIES_CSV,
            args.input.display()
        );
    }
    let mut failed = false;
    for job in &jobs {
        let starts = match job.what {
            What::Timeline => StageStarts::default(),
            What::Series => starts_in(job.input.parent().unwrap_or(Path::new("."))),
        };
        let started = Instant::now();
        match job.run(starts) {
            Ok(s) => {
                let secs = started.elapsed().as_secs_f64();
                println!(
                    "exported {} records in {} row groups, {} bytes, {:.3} s ({:.0} records/s) -> {}",
                    s.records,
                    s.row_groups,
                    s.bytes_written,
                    secs,
                    s.records as f64 / secs.max(1e-9),
                    job.output.display()
                );
            }
            Err(e) => {
                // The other file is still written: they do not depend on
                // each other.
                eprintln!("error: {e}");
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// `export --format tsv`: an op-log file, or every agent log of a run
/// directory (`agents/*/*.spool.zst`), as zstd TSV beside it.
fn tsv_command(args: &ExportArgs) -> ExitCode {
    let mut jobs = Vec::new();
    if args.input.is_dir() {
        if args.output.is_some() {
            eprintln!("error: -o names one file; give an agent's log as INPUT");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
        let agents = args.input.join("agents");
        for dir in std::fs::read_dir(&agents).into_iter().flatten().flatten() {
            for f in std::fs::read_dir(dir.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let p = f.path();
                if p.to_string_lossy().ends_with(".spool.zst") {
                    jobs.push((tsv::default_output(&p), p));
                }
            }
        }
        jobs.sort();
        if jobs.is_empty() {
            eprintln!("note: no agents/*/*.spool.zst in {}", args.input.display());
        }
    } else {
        let out = args
            .output
            .clone()
            .unwrap_or_else(|| tsv::default_output(&args.input));
        jobs.push((out, args.input.clone()));
    }
    let mut failed = false;
    for (output, input) in &jobs {
        match tsv::export_tsv(input, output) {
            Ok(n) => println!("exported {n} bytes of TSV -> {}", output.display()),
            Err(e) => {
                eprintln!("error: {e}");
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(input: &str, output: Option<&str>) -> Job {
        let mut j = jobs(Path::new(input), output.map(Path::new)).unwrap();
        assert_eq!(j.len(), 1);
        j.pop().unwrap()
    }

    #[test]
    fn default_outputs_are_beside_the_inputs() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // A run directory without series.csv: the timeline only.
        assert_eq!(
            jobs(d, None).unwrap(),
            [Job {
                what: What::Timeline,
                input: d.join(TIMELINE),
                output: d.join(PARQUET_TIMELINE)
            }]
        );
        std::fs::write(d.join(SERIES_CSV), "").unwrap();
        let both = jobs(d, None).unwrap();
        assert_eq!(both.len(), 2);
        assert_eq!(both[1].what, What::Series);
        assert_eq!(both[1].output, d.join(SERIES_PARQUET));
        let err = jobs(d, Some(Path::new("x.parquet"))).unwrap_err();
        assert!(
            err.contains("series.csv") && err.contains("timeline.tsv.zst"),
            "{err}"
        );

        assert_eq!(
            one("x/a.tsv.zst", None).output,
            PathBuf::from("x/a.parquet")
        );
        assert_eq!(one("a.tsv", None).output, PathBuf::from("a.parquet"));
        assert_eq!(one("a.log", None).output, PathBuf::from("a.log.parquet"));
        let s = one("r/series.csv", None);
        assert_eq!(
            (s.what, s.output),
            (What::Series, PathBuf::from("r/series.parquet"))
        );
        assert_eq!(
            one("r/series.csv", Some("o.parquet")).output,
            PathBuf::from("o.parquet")
        );
    }
}
