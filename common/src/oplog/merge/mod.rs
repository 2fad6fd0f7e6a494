//! Merges agents' op-logs into one timeline: clock-corrected, sorted by
//! start time (ties by client id, then index), written as one zstd TSV.
//!
//! An agent's log is in completion order, not start order, so inputs are
//! not assumed sorted. This is an external sort with bounded memory however
//! long the run:
//!
//! 1. Each input is read in chunks of at most `chunk_records` records
//!    ([`MERGE_CHUNK_RECORDS`]); each chunk is corrected and sorted. Chunks
//!    stay in memory while their total fits in one chunk's budget (so small
//!    inputs never touch the disk); others are spilled to zstd run files in
//!    the temp directory.
//! 2. While there are more run files than [`MERGE_FAN_IN`], groups of them
//!    are merged into longer runs, so the number of files (and decoder
//!    buffers) open at once stays bounded too. In-memory runs cost neither
//!    and always join the final pass.
//! 3. A k-way merge over a binary heap holding one record per run writes
//!    the output.
//!
//! Memory is thus about two chunks plus one decoder per open run. A damaged
//! input (truncated, bad line) still contributes the records before the
//! damage; the error is reported in [`MergeStats::errors`] and the caller
//! decides what to do. Temp files are removed however the merge ends.

use super::reader::{OpLogError, OpLogReader};
use super::record::OpRecord;
use super::writer::{OPLOG_ZSTD_LEVEL, TsvZstdFile};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};

/// Records sorted in memory at a time. At a few hundred bytes per record,
/// ~300 MB per chunk and at most two chunks held at once (one resident, one
/// being filled), while still making runs long enough that a day-long run
/// at 100k ops/s needs only ~9k of them.
pub const MERGE_CHUNK_RECORDS: usize = 1_000_000;

/// Most runs merged in one pass. Each open run holds a zstd decoder and a
/// read buffer (well under 1 MiB together), so this bounds that memory and
/// the open file descriptors.
pub const MERGE_FAN_IN: usize = 128;

/// Temp runs are read once, soon, and deleted: the fastest zstd level.
const RUN_ZSTD_LEVEL: i32 = 1;

/// Makes temp file names unique within the process.
static TEMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// One agent's log and its clock correction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MergeInput {
    pub path: PathBuf,
    /// Agent clock minus reference clock; subtracted from every time.
    pub offset_ns: i64,
}

/// What a merge did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeStats {
    /// Records read from the inputs.
    pub records_in: u64,
    /// Records written to the output; equal to `records_in`.
    pub records_out: u64,
    /// Number of inputs given.
    pub inputs: usize,
    /// One message per damaged or unreadable input, naming file and line.
    pub errors: Vec<String>,
}

/// Merges `inputs` into `out` (zstd TSV with header), using `tmp_dir` for
/// spilled runs. The output appears under its name only when complete.
pub fn merge_files(
    inputs: &[MergeInput],
    out: &Path,
    tmp_dir: &Path,
) -> Result<MergeStats, OpLogError> {
    merge_files_with(inputs, out, tmp_dir, MERGE_CHUNK_RECORDS, MERGE_FAN_IN)
}

/// Writes `records` in order to `path` as a zstd op-log; returns how many.
pub fn write_records(path: &Path, records: impl IntoIterator<Item = OpRecord>) -> io::Result<u64> {
    let mut file = TsvZstdFile::create(path, OPLOG_ZSTD_LEVEL)?;
    for rec in records {
        file.write(&rec)?;
    }
    Ok(file.finish()?.0)
}

/// [`merge_files`] with explicit chunk size and fan-in (tests use small ones
/// to force spilling and multi-pass merging).
pub(crate) fn merge_files_with(
    inputs: &[MergeInput],
    out: &Path,
    tmp_dir: &Path,
    chunk_records: usize,
    fan_in: usize,
) -> Result<MergeStats, OpLogError> {
    let chunk_records = chunk_records.max(1);
    let fan_in = fan_in.max(2);
    let mut stats = MergeStats {
        inputs: inputs.len(),
        ..MergeStats::default()
    };
    std::fs::create_dir_all(tmp_dir).map_err(|source| OpLogError::Io {
        path: tmp_dir.to_path_buf(),
        source,
    })?;
    let mut temps = TempFiles::new(tmp_dir);

    // Phase 1: sorted runs.
    let mut runs = Runs {
        memory: Vec::new(),
        resident_records: 0,
        files: Vec::new(),
        budget: chunk_records,
    };
    let mut chunk: Vec<OpRecord> = Vec::new();
    for input in inputs {
        let reader = match OpLogReader::open(&input.path) {
            Ok(r) => r,
            Err(e) => {
                stats.errors.push(e.to_string());
                continue;
            }
        };
        for item in reader {
            match item {
                Ok(mut rec) => {
                    rec.shift_times(input.offset_ns);
                    chunk.push(rec);
                    stats.records_in += 1;
                    if chunk.len() >= chunk_records {
                        runs.add(std::mem::take(&mut chunk), &mut temps)?;
                    }
                }
                Err(e) => {
                    // The reader has stopped; keep what came before.
                    stats.errors.push(e.to_string());
                    break;
                }
            }
        }
        if !chunk.is_empty() {
            runs.add(std::mem::take(&mut chunk), &mut temps)?;
        }
    }

    // Phase 2: bound the number of runs open at once.
    let memory_runs = std::mem::take(&mut runs.memory);
    let mut files = std::mem::take(&mut runs.files);
    // Memory runs cost no file or decoder, so only files count.
    while files.len() > fan_in {
        let mut next = Vec::with_capacity(files.len().div_ceil(fan_in));
        for group in files.chunks(fan_in) {
            if group.len() == 1 {
                next.push(group[0].clone());
                continue;
            }
            let path = temps.new_path();
            let sources = group
                .iter()
                .map(|p| Run::open(p))
                .collect::<Result<Vec<_>, _>>()?;
            kway_merge(sources, &path, RUN_ZSTD_LEVEL)?;
            for p in group {
                temps.remove(p);
            }
            next.push(path);
        }
        files = next;
    }

    // Phase 3: the final merge, into a partial file renamed when complete.
    let mut sources: Vec<Run> = memory_runs.into_iter().map(Run::memory).collect();
    for p in &files {
        sources.push(Run::open(p)?);
    }
    let partial = partial_path(out);
    let result = kway_merge(sources, &partial, OPLOG_ZSTD_LEVEL).and_then(|n| {
        std::fs::rename(&partial, out).map_err(|source| OpLogError::Io {
            path: out.to_path_buf(),
            source,
        })?;
        Ok(n)
    });
    match result {
        Ok(n) => stats.records_out = n,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    }
    Ok(stats)
}

/// `out` with `.partial` appended to its file name.
fn partial_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    out.with_file_name(name)
}

/// Sorted runs produced by phase 1.
struct Runs {
    memory: Vec<Vec<OpRecord>>,
    resident_records: usize,
    files: Vec<PathBuf>,
    /// Most records kept resident across all memory runs.
    budget: usize,
}

impl Runs {
    /// Sorts a chunk and keeps it in memory if the budget allows, otherwise
    /// spills it to a temp run file.
    fn add(&mut self, mut chunk: Vec<OpRecord>, temps: &mut TempFiles) -> Result<(), OpLogError> {
        // Stable sort: records with equal keys keep their input order.
        chunk.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
        if self.resident_records + chunk.len() <= self.budget {
            self.resident_records += chunk.len();
            self.memory.push(chunk);
            return Ok(());
        }
        let path = temps.new_path();
        let io_err = |source| OpLogError::Io {
            path: path.clone(),
            source,
        };
        let mut file = TsvZstdFile::create(&path, RUN_ZSTD_LEVEL).map_err(io_err)?;
        for rec in &chunk {
            file.write(rec).map_err(io_err)?;
        }
        file.finish().map_err(io_err)?;
        self.files.push(path);
        Ok(())
    }
}

/// A sorted source of records.
enum Run {
    Memory(std::vec::IntoIter<OpRecord>),
    File(OpLogReader),
}

impl Run {
    fn memory(records: Vec<OpRecord>) -> Self {
        Run::Memory(records.into_iter())
    }

    fn open(path: &Path) -> Result<Self, OpLogError> {
        OpLogReader::open(path).map(Run::File)
    }

    /// Our own temp runs must read back whole: an error here is an error of
    /// the merge, not a damaged input.
    fn next_record(&mut self) -> Result<Option<OpRecord>, OpLogError> {
        match self {
            Run::Memory(it) => Ok(it.next()),
            Run::File(reader) => reader.next().transpose(),
        }
    }
}

/// A run's current record in the merge heap.
struct Head {
    rec: OpRecord,
    run: usize,
}

impl Head {
    fn key(&self) -> ((i64, &str, u64), usize) {
        (self.rec.sort_key(), self.run)
    }
}

impl PartialEq for Head {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Head {}

impl PartialOrd for Head {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Head {
    /// Reversed: `BinaryHeap` is a max-heap and the merge wants the smallest.
    fn cmp(&self, other: &Self) -> Ordering {
        other.key().cmp(&self.key())
    }
}

/// Merges sorted runs into a new zstd op-log at `path`; returns the count.
fn kway_merge(mut runs: Vec<Run>, path: &Path, level: i32) -> Result<u64, OpLogError> {
    let io_err = |source| OpLogError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut out = TsvZstdFile::create(path, level).map_err(io_err)?;
    let mut heap = BinaryHeap::with_capacity(runs.len());
    for (run, source) in runs.iter_mut().enumerate() {
        if let Some(rec) = source.next_record()? {
            heap.push(Head { rec, run });
        }
    }
    while let Some(Head { rec, run }) = heap.pop() {
        out.write(&rec).map_err(io_err)?;
        if let Some(next) = runs[run].next_record()? {
            heap.push(Head { rec: next, run });
        }
    }
    Ok(out.finish().map_err(io_err)?.0)
}

/// Temp run files, removed when dropped (success, error or panic alike).
struct TempFiles {
    dir: PathBuf,
    paths: Vec<PathBuf>,
}

impl TempFiles {
    fn new(dir: &Path) -> Self {
        TempFiles {
            dir: dir.to_path_buf(),
            paths: Vec::new(),
        }
    }

    fn new_path(&mut self) -> PathBuf {
        let seq = TEMP_SEQ.fetch_add(1, AtomicOrdering::Relaxed);
        let path = self.dir.join(format!(
            "chorus-merge-{}-{}-{seq}.run.tsv.zst",
            std::process::id(),
            crate::clock::now_ns()
        ));
        self.paths.push(path.clone());
        path
    }

    fn remove(&mut self, path: &Path) {
        let _ = std::fs::remove_file(path);
        self.paths.retain(|p| p != path);
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
mod tests {
    use super::*;
    use crate::oplog::test_util::record;

    fn read_all(path: &Path) -> Vec<OpRecord> {
        OpLogReader::open(path)
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap()
    }

    /// Three agents' logs, unsorted, with clock offsets; returns the inputs
    /// and the expected merged timeline.
    fn make_inputs(dir: &Path, per_agent: u64) -> (Vec<MergeInput>, Vec<OpRecord>) {
        let offsets = [5_000_000i64, -3_000_000, 0];
        let mut inputs = Vec::new();
        let mut expected = Vec::new();
        for (a, offset_ns) in offsets.into_iter().enumerate() {
            let client = format!("agent-{a}");
            let recs: Vec<OpRecord> = (0..per_agent)
                .map(|n| record(n * 3 + a as u64, &client))
                .collect();
            let path = dir.join(format!("{client}.tsv.zst"));
            write_records(&path, recs.clone()).unwrap();
            for mut r in recs {
                r.start_ns -= offset_ns;
                r.end_ns -= offset_ns;
                r.first_byte_ns = r.first_byte_ns.map(|t| t - offset_ns);
                expected.push(r);
            }
            inputs.push(MergeInput { path, offset_ns });
        }
        expected.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
        (inputs, expected)
    }

    fn dir_is_empty(p: &Path) -> bool {
        std::fs::read_dir(p).unwrap().next().is_none()
    }

    #[test]
    fn merges_unsorted_inputs_with_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("tmp");
        let (inputs, expected) = make_inputs(dir.path(), 3_000);
        // Inputs really are unsorted.
        let first = read_all(&inputs[0].path);
        assert!(first.windows(2).any(|w| w[0].start_ns > w[1].start_ns));

        let out = dir.path().join("merged.tsv.zst");
        let stats = merge_files(&inputs, &out, &tmp).unwrap();
        assert_eq!(stats.records_in, 9_000);
        assert_eq!(stats.records_out, 9_000);
        assert_eq!(stats.inputs, 3);
        assert!(stats.errors.is_empty());
        let got = read_all(&out);
        assert!(got.windows(2).all(|w| w[0].sort_key() <= w[1].sort_key()));
        assert_eq!(got, expected);
        assert!(dir_is_empty(&tmp));
        assert!(!partial_path(&out).exists());
    }

    #[test]
    fn spilling_gives_the_same_output() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("tmp");
        let (inputs, expected) = make_inputs(dir.path(), 5_000);

        let whole = dir.path().join("whole.tsv.zst");
        merge_files(&inputs, &whole, &tmp).unwrap();
        // 1,000-record chunks: 15 runs, 14 spilled; a fan-in of 4 forces
        // intermediate merge passes as well.
        let spilled = dir.path().join("spilled.tsv.zst");
        let stats = merge_files_with(&inputs, &spilled, &tmp, 1_000, 4).unwrap();
        assert_eq!(stats.records_out, 15_000);
        assert!(dir_is_empty(&tmp));

        let a = read_all(&whole);
        assert_eq!(a, expected);
        assert_eq!(read_all(&spilled), a);
    }

    #[test]
    fn damaged_input_keeps_records_before_damage() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("tmp");
        let (mut inputs, _) = make_inputs(dir.path(), 100_000);
        // Cut the second agent's log short.
        let bytes = std::fs::read(&inputs[1].path).unwrap();
        std::fs::write(&inputs[1].path, &bytes[..bytes.len() / 2]).unwrap();
        inputs.push(MergeInput {
            path: dir.path().join("missing.tsv.zst"),
            offset_ns: 0,
        });

        let out = dir.path().join("merged.tsv.zst");
        let stats = merge_files_with(&inputs, &out, &tmp, 30_000, 4).unwrap();
        assert_eq!(stats.inputs, 4);
        assert_eq!(stats.errors.len(), 2, "{:?}", stats.errors);
        assert!(
            stats.errors[0].contains("agent-1.tsv.zst:"),
            "{:?}",
            stats.errors
        );
        assert!(
            stats.errors[1].contains("missing.tsv.zst"),
            "{:?}",
            stats.errors
        );
        assert!(stats.records_in > 200_000 && stats.records_in < 300_000);
        assert_eq!(stats.records_in, stats.records_out);
        let got = read_all(&out);
        assert_eq!(got.len() as u64, stats.records_out);
        assert!(got.windows(2).all(|w| w[0].sort_key() <= w[1].sort_key()));
        assert!(dir_is_empty(&tmp));
    }

    #[test]
    fn empty_inputs_give_a_header_only_file() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("merged.tsv.zst");
        let stats = merge_files(&[], &out, dir.path()).unwrap();
        assert_eq!((stats.records_in, stats.records_out), (0, 0));
        assert!(read_all(&out).is_empty());
    }

    #[test]
    fn unwritable_output_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (inputs, _) = make_inputs(dir.path(), 10);
        let out = dir.path().join("no/such/dir/merged.tsv.zst");
        let err = merge_files(&inputs, &out, &dir.path().join("tmp")).unwrap_err();
        assert!(err.to_string().contains("merged.tsv.zst.partial"), "{err}");
    }
}
