//! Merges agents' op-logs into one timeline: clock-corrected, sorted by
//! start time (ties by client id, then index), written as one zstd TSV.
//!
//! An agent's log is nearly in start order: its workers hand their ops to
//! the writer in batches, so a line comes after lines that started later
//! by about as many lines as the other workers log meanwhile. So the merge
//! streams, with memory bounded by the number of logs open at once, not by
//! the records (docs/oplog.md, "Merge", has the user's view):
//!
//! 1. Each input is *probed* (`Source::probe`): its header checked, its
//!    first lines read for their smallest start and their disorder. The
//!    merge opens it only when it reaches that start (less
//!    [`OPEN_MARGIN_NS`]), so a run's later stages cost no memory while
//!    earlier ones are merged, and reads it in blocks of twice that
//!    disorder.
//! 2. An open log (`source`) is decompressed on a thread of its own
//!    (`text`) into chunks where its lines stay. Each block read is
//!    sorted (keys only) and merged with the rest of the previous block;
//!    lines up to the newest block's smallest are handed out. Lines in our
//!    layout are not parsed into records (`line`): they are checked as
//!    the reader would, their key and times read, and their times
//!    rewritten in place when the clock offset is not zero (one offset
//!    per op, from its raw start: constant, or interpolated between two
//!    measurements when the clock drifts, `clock`); other layouts (warp,
//!    s3dlio) go through the reader's parser.
//! 3. A loser tree picks the next line among the open logs (`engine`).
//! 4. The output (`sink`) is cut into independent zstd frames of about
//!    1 MiB, compressed by a few threads and written in order (`frames`),
//!    the last `HOLD_BYTES` held back: a *late* line (read after lines
//!    sorting after it were written: an op much slower than those around
//!    it) is put in place there.
//! 5. A line later still (a timeout) is kept (`late`, spilled to sorted
//!    temp runs beyond a budget), and a second pass (`second`) puts them
//!    in place: frames without late lines are copied as compressed bytes.
//! 6. More than [`MERGE_FAN_IN`] logs are merged in groups into temp runs
//!    first, so open files and memory stay bounded however many there are.
//!
//! A damaged input (truncated, bad line) still contributes the records
//! before the damage; the error is reported in [`MergeStats::errors`] and
//! the caller decides what to do. The output appears under its name only
//! when complete, and temp files are removed however the merge ends.

mod clock;
mod engine;
mod entries;
mod frames;
mod late;
mod line;
mod second;
mod sink;
mod source;
mod text;

pub use self::clock::ClockCorrection;
use self::engine::{Ctx, Slot, Waiting, merge_pass};
use self::late::Late;
use self::second::second_pass;
use self::sink::{Sink, SinkOptions};
use self::source::{Sizes, Source};
use super::reader::OpLogError;
use super::record::OpRecord;
use super::writer::OPLOG_ZSTD_LEVEL;
use serde::{Deserialize, Serialize};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};

/// Most logs merged at once (open files, decoders and windows). More are
/// merged in groups first.
pub const MERGE_FAN_IN: usize = 128;

/// A log is read in blocks of lines of twice its disorder (how many lines
/// its lines come after their place, in its first lines), within these
/// bounds. An agent's lines come out of place by the lines its workers log
/// while one holds back a batch (at most 256 ops or 100 ms): ~3k lines
/// (~0.5 MiB) for 32 workers at 30k ops/s, ~50k at 500k ops/s. Small
/// blocks are faster (the windows of all logs stay in cache).
const MIN_BLOCK_BYTES: usize = 1 << 20;
const MAX_BLOCK_BYTES: usize = 16 << 20;
/// Memory for the windows of all logs open at once: with many logs, less
/// than [`MAX_BLOCK_BYTES`] each.
const WINDOW_BYTES: usize = 256 << 20;

/// Decompressed text is read into chunks of this size; lines stay there
/// until handed out.
const CHUNK_BYTES: usize = 1 << 20;

/// Output text held back from the compressor, in which late lines (ops
/// much slower than those around them) are still put in place without a
/// second pass: ~380k lines, a second or more of a merged run.
const HOLD_BYTES: usize = 64 << 20;

/// Late lines kept in memory before they are spilled to a sorted run.
const LATE_BYTES: usize = 64 << 20;

/// Added to a short log's lines to size its one chunk: its header lines.
/// (Too small is only slower: the chunk grows or a second one is read.)
const WHOLE_MARGIN_BYTES: usize = 4 << 10;

/// Text read to probe a log for its first start and its disorder.
const PROBE_BYTES: usize = 4 << 20;

/// A log opens this long before the smallest start of its first lines: its
/// ops may have started a little before those that completed first.
pub const OPEN_MARGIN_NS: i64 = 5_000_000_000;

/// Temp runs are read once, soon, and deleted: the fastest zstd level.
const RUN_ZSTD_LEVEL: i32 = 1;

/// Makes temp file names unique within the process.
static TEMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// One agent's log and its clock correction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MergeInput {
    pub path: PathBuf,
    /// Agent clock minus reference clock, by the agent's time: an op's
    /// offset is taken at its raw start and subtracted from its start,
    /// first byte and end alike (its latency is unchanged).
    pub clock: ClockCorrection,
}

impl MergeInput {
    /// A log with one constant offset (agent clock minus reference clock).
    pub fn new(path: impl Into<PathBuf>, offset_ns: i64) -> Self {
        MergeInput {
            path: path.into(),
            clock: ClockCorrection::constant(offset_ns),
        }
    }

    /// A log with a correction that may drift (see [`ClockCorrection`]).
    pub fn with_clock(path: impl Into<PathBuf>, clock: ClockCorrection) -> Self {
        MergeInput {
            path: path.into(),
            clock,
        }
    }
}

/// What a merge did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeStats {
    /// Records read from the inputs.
    pub records_in: u64,
    /// Records written to the output; equal to `records_in`.
    pub records_out: u64,
    /// Records that came after their place in the output was written (an
    /// op much slower than those around it) and were put in place in the
    /// output not yet compressed.
    #[serde(default)]
    pub placed: u64,
    /// Records that came later still, and took a second pass.
    #[serde(default)]
    pub late: u64,
    /// Number of inputs given.
    pub inputs: usize,
    /// One message per damaged or unreadable input, naming file and line.
    pub errors: Vec<String>,
}

/// Merges `inputs` into `out` (zstd TSV with header), using `tmp_dir` for
/// temp runs. The output appears under its name only when complete.
pub fn merge_files(
    inputs: &[MergeInput],
    out: &Path,
    tmp_dir: &Path,
) -> Result<MergeStats, OpLogError> {
    merge_files_with(inputs, out, tmp_dir, &MergeConfig::default())
}

/// [`merge_files`] with the output compressed at zstd `level` (negative:
/// zstd's fast levels, `--fast=N`); still a standard zstd TSV.
pub fn merge_files_at_level(
    inputs: &[MergeInput],
    out: &Path,
    tmp_dir: &Path,
    level: i32,
) -> Result<MergeStats, OpLogError> {
    let cfg = MergeConfig {
        level,
        ..MergeConfig::default()
    };
    merge_files_with(inputs, out, tmp_dir, &cfg)
}

/// Writes `records` in order to `path` as a zstd op-log; returns how many.
pub fn write_records(path: &Path, records: impl IntoIterator<Item = OpRecord>) -> io::Result<u64> {
    let opts = SinkOptions {
        level: OPLOG_ZSTD_LEVEL,
        threads: 0,
        sync: true,
        hold_bytes: 0,
        block_bytes: sink::BLOCK_BYTES,
    };
    let to_io = |e: OpLogError| match e {
        OpLogError::Io { source, .. } => source,
        e => io::Error::other(e.to_string()),
    };
    let mut sink = Sink::create(path, opts).map_err(to_io)?;
    let mut line = String::new();
    for rec in records {
        line.clear();
        rec.write_tsv(&mut line);
        let line = line.strip_suffix('\n').unwrap_or(&line);
        sink.push(line.as_bytes(), rec.start_ns).map_err(to_io)?;
    }
    Ok(sink.finish().map_err(to_io)?.records)
}

/// Compressor threads for a merge on `cpus` CPUs: none on one (compressing
/// inline costs no hand-over), else one per CPU up to four. Compression is
/// most of a merge's CPU, and the threads share the CPUs with the reading
/// and merging threads, so more threads than CPUs would only add switches.
fn default_compress_threads(cpus: usize) -> usize {
    match cpus {
        0 | 1 => 0,
        n => n.min(4),
    }
}

/// The merge's sizes; tests make them small to force every path.
#[derive(Clone, Debug)]
pub(crate) struct MergeConfig {
    /// Most logs merged at once.
    pub fan_in: usize,
    /// Window memory of all open logs together.
    pub window_bytes: usize,
    pub min_block_bytes: usize,
    pub max_block_bytes: usize,
    pub chunk_bytes: usize,
    /// Output held back for late lines.
    pub hold_bytes: usize,
    /// Output text per zstd frame.
    pub frame_bytes: usize,
    /// Late lines held in memory before spilling.
    pub late_bytes: usize,
    pub probe_bytes: usize,
    /// Compressor threads (0: compress inline).
    pub compress_threads: usize,
    /// Decompress each log on a thread of its own.
    pub read_thread: bool,
    /// zstd level of the output (the final file; temp runs stay at
    /// [`OPLOG_ZSTD_LEVEL`]).
    pub level: i32,
}

impl Default for MergeConfig {
    fn default() -> Self {
        // Asked once: it reads the cgroup's CPU limit.
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        MergeConfig {
            fan_in: MERGE_FAN_IN,
            window_bytes: WINDOW_BYTES,
            min_block_bytes: MIN_BLOCK_BYTES,
            max_block_bytes: MAX_BLOCK_BYTES,
            chunk_bytes: CHUNK_BYTES,
            hold_bytes: HOLD_BYTES,
            frame_bytes: sink::BLOCK_BYTES,
            late_bytes: LATE_BYTES,
            probe_bytes: PROBE_BYTES,
            compress_threads: default_compress_threads(cpus),
            read_thread: cpus > 1,
            level: OPLOG_ZSTD_LEVEL,
        }
    }
}

impl MergeConfig {
    fn sizes(&self, inputs: usize) -> Sizes {
        let open = inputs.clamp(1, self.fan_in.max(1));
        Sizes {
            block_bytes: (self.window_bytes / open).clamp(
                self.min_block_bytes,
                self.max_block_bytes.max(self.min_block_bytes),
            ),
            chunk_bytes: self.chunk_bytes,
            thread: self.read_thread,
        }
    }

    fn run_options(&self) -> SinkOptions {
        SinkOptions {
            level: RUN_ZSTD_LEVEL,
            threads: self.compress_threads,
            sync: false,
            hold_bytes: 0,
            block_bytes: self.frame_bytes,
        }
    }
}

/// [`merge_files`] with explicit sizes.
pub(crate) fn merge_files_with(
    inputs: &[MergeInput],
    out: &Path,
    tmp_dir: &Path,
    cfg: &MergeConfig,
) -> Result<MergeStats, OpLogError> {
    std::fs::create_dir_all(tmp_dir).map_err(|source| OpLogError::Io {
        path: tmp_dir.to_path_buf(),
        source,
    })?;
    let mut ctx = Ctx {
        sizes: cfg.sizes(inputs.len()),
        records_in: 0,
        placed: 0,
        errors: Vec::new(),
    };

    // Probe: a log that cannot be opened is an error of that input.
    let mut slots = Vec::with_capacity(inputs.len());
    for (i, input) in inputs.iter().enumerate() {
        match probe(input, cfg, inputs.len()) {
            Ok((open_at, block_bytes, whole_bytes)) => slots.push(Slot::Waiting(Waiting {
                path: input.path.clone(),
                clock: input.clock,
                open_at,
                block_bytes,
                whole_bytes,
                input: Some(i),
            })),
            Err(e) => ctx.errors.push((i, e.to_string())),
        }
    }

    let mut temps = TempFiles::new(tmp_dir);
    let mut late = Late::new(tmp_dir, cfg.late_bytes, cfg.run_options());
    let first = partial_path(out, "partial");
    let second = partial_path(out, "partial2");
    let result = merge_into(
        slots, out, &first, &second, cfg, &mut ctx, &mut temps, &mut late,
    );
    if result.is_err() {
        let _ = std::fs::remove_file(&first);
        let _ = std::fs::remove_file(&second);
    }
    let records_out = result?;
    ctx.errors.sort_by_key(|(i, _)| *i);
    Ok(MergeStats {
        records_in: ctx.records_in,
        records_out,
        placed: ctx.placed,
        late: late.count,
        inputs: inputs.len(),
        errors: ctx.errors.into_iter().map(|(_, e)| e).collect(),
    })
}

/// The passes: everything into `first`, then, if lines were late, `first`
/// and the late lines into `second`; the result renamed to `out`.
#[allow(clippy::too_many_arguments)]
fn merge_into(
    slots: Vec<Slot>,
    out: &Path,
    first: &Path,
    second: &Path,
    cfg: &MergeConfig,
    ctx: &mut Ctx,
    temps: &mut TempFiles,
    late: &mut Late,
) -> Result<u64, OpLogError> {
    let final_opts = SinkOptions {
        level: cfg.level,
        threads: cfg.compress_threads,
        sync: true,
        hold_bytes: cfg.hold_bytes,
        block_bytes: cfg.frame_bytes,
    };
    let mut sink = Sink::create(first, final_opts)?;
    merge_all(slots, &mut sink, late, temps, ctx, cfg)?;
    ctx.placed = sink.placed;
    let pass = sink.finish()?;
    let mut records = pass.records;
    let mut done = first;
    if late.count > 0 {
        let mut late_lines = late_stream(late, temps, ctx, cfg)?;
        records = second_pass(
            first,
            &pass.frames,
            &mut late_lines,
            second,
            cfg.level,
            true,
        )?;
        let _ = std::fs::remove_file(first);
        done = second;
    }
    std::fs::rename(done, out).map_err(|source| OpLogError::Io {
        path: out.to_path_buf(),
        source,
    })?;
    Ok(records)
}

/// The late lines as one sorted source: in memory, or one run (merged from
/// the runs spilled, if more than one).
fn late_stream(
    late: &mut Late,
    temps: &mut TempFiles,
    ctx: &mut Ctx,
    cfg: &MergeConfig,
) -> Result<Source, OpLogError> {
    let sizes = Sizes {
        block_bytes: cfg.min_block_bytes,
        chunk_bytes: cfg.chunk_bytes,
        thread: false,
    };
    let (runs, memory) = late.take_runs(cfg.fan_in)?;
    match (runs.len(), memory) {
        (0, Some(src)) => Ok(src),
        (1, None) => Source::open(&runs[0].0, ClockCorrection::NONE, sizes),
        (_, memory) => {
            let mut slots: Vec<Slot> = runs
                .into_iter()
                .map(|(path, open_at)| {
                    Slot::Waiting(Waiting {
                        path,
                        clock: ClockCorrection::NONE,
                        open_at,
                        block_bytes: cfg.min_block_bytes,
                        whole_bytes: None,
                        input: None,
                    })
                })
                .collect();
            slots.extend(memory.map(|src| Slot::Open {
                src: Box::new(src),
                input: None,
            }));
            let path = temps.new_path();
            let mut run = Sink::create(&path, cfg.run_options())?;
            merge_all(slots, &mut run, &mut Late::none(), temps, ctx, cfg)?;
            run.finish()?;
            Source::open(&path, ClockCorrection::NONE, sizes)
        }
    }
}

/// Merges any number of logs into `sink`: more than the fan-in are merged
/// in groups (of nearby first starts) into temp runs first.
fn merge_all(
    mut slots: Vec<Slot>,
    sink: &mut Sink,
    late: &mut Late,
    temps: &mut TempFiles,
    ctx: &mut Ctx,
    cfg: &MergeConfig,
) -> Result<(), OpLogError> {
    let fan_in = cfg.fan_in.max(2);
    while slots.len() > fan_in {
        slots.sort_by_key(Slot::start);
        let mut next = Vec::with_capacity(slots.len().div_ceil(fan_in));
        let mut rest = slots.into_iter().peekable();
        while rest.peek().is_some() {
            let group: Vec<Slot> = rest.by_ref().take(fan_in).collect();
            if group.len() == 1 {
                next.extend(group);
                continue;
            }
            let merged: Vec<PathBuf> = group.iter().filter_map(|s| s.run_path().cloned()).collect();
            let path = temps.new_path();
            let mut run = Sink::create(&path, cfg.run_options())?;
            merge_pass(group, &mut run, late, ctx)?;
            let first = run.finish()?.first_start;
            for p in &merged {
                temps.remove(p);
                late.remove(p);
            }
            next.push(Slot::Waiting(Waiting {
                path,
                clock: ClockCorrection::NONE,
                open_at: first.unwrap_or(i64::MIN),
                block_bytes: cfg.min_block_bytes,
                whole_bytes: None,
                input: None,
            }));
        }
        slots = next;
    }
    merge_pass(slots, sink, late, ctx)
}

/// Opens a log, checks its header, and reads its first lines: the merge
/// opens it a little before the smallest start among them, and reads it in
/// blocks large enough for how far out of order they are.
/// Where a log opens, its block size, and its whole text's size if the
/// probe read it all.
fn probe(
    input: &MergeInput,
    cfg: &MergeConfig,
    inputs: usize,
) -> Result<(i64, usize, Option<usize>), OpLogError> {
    let sizes = Sizes {
        block_bytes: cfg.probe_bytes,
        chunk_bytes: cfg.chunk_bytes,
        thread: false,
    };
    let mut src = Source::open(&input.path, input.clock, sizes)?;
    let p = src.probe()?;
    let open_at = p
        .first_start
        .map_or(i64::MIN, |s| s.saturating_sub(OPEN_MARGIN_NS));
    let max_block = cfg.sizes(inputs).block_bytes;
    let block = if p.ended || p.lines == 0 {
        cfg.min_block_bytes
    } else if p.displacement > p.lines / 2 {
        // Out of order beyond what the probe can see.
        max_block
    } else {
        // Twice the disorder seen, in bytes.
        (2 * p.displacement * p.bytes.div_ceil(p.lines)).clamp(cfg.min_block_bytes, max_block)
    };
    tracing::debug!(
        path = %input.path.display(),
        lines = p.lines,
        displacement = p.displacement,
        block,
        "merge: probed"
    );
    // The header's lines are not in `p.bytes`; they are short.
    let whole = p.ended.then(|| p.bytes + WHOLE_MARGIN_BYTES);
    Ok((open_at, block, whole))
}

/// `out` with `.{suffix}` appended to its file name.
fn partial_path(out: &Path, suffix: &str) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".");
    name.push(suffix);
    out.with_file_name(name)
}

/// Temp run files, removed when dropped (success, error or panic alike).
pub(super) struct TempFiles {
    dir: PathBuf,
    paths: Vec<PathBuf>,
}

impl TempFiles {
    pub(super) fn new(dir: &Path) -> Self {
        TempFiles {
            dir: dir.to_path_buf(),
            paths: Vec::new(),
        }
    }

    pub(super) fn new_path(&mut self) -> PathBuf {
        let seq = TEMP_SEQ.fetch_add(1, AtomicOrdering::Relaxed);
        let path = self.dir.join(format!(
            "chorus-merge-{}-{}-{seq}.run.tsv.zst",
            std::process::id(),
            crate::clock::now_ns()
        ));
        self.paths.push(path.clone());
        path
    }

    /// Removes one of this set's files (others are left alone).
    pub(super) fn remove(&mut self, path: &Path) {
        if let Some(i) = self.paths.iter().position(|p| p == path) {
            let _ = std::fs::remove_file(path);
            self.paths.swap_remove(i);
        }
    }
}

impl Drop for TempFiles {
    fn drop(&mut self) {
        for p in &self.paths {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[cfg(test)]
mod tests;
