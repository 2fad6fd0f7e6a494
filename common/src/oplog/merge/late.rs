//! Late lines: lines read after their place in the output was written (an
//! op far slower than those around it, a log far out of order). They are
//! kept in memory up to a budget, sorted and spilled to temp runs beyond
//! it, and put in their places by a second pass.

use super::TempFiles;
use super::entries::{Chunk, Entry, sort_entries};
use super::sink::{Sink, SinkOptions};
use super::source::Source;
use crate::oplog::reader::OpLogError;
use std::path::{Path, PathBuf};

/// A sorted temp run: its file and the start of its first line.
pub(super) type Run = (PathBuf, i64);

/// Where a source sends the lines it finds late.
pub(super) trait LateLines {
    /// Takes `line`, the line of `e`, which sorts before a line written.
    fn push(&mut self, line: &[u8], e: &Entry) -> Result<(), OpLogError>;

    /// Takes `line`, the line of `e`, for the second pass, whatever its
    /// key (a log's window parked whole).
    fn park(&mut self, line: &[u8], e: &Entry) -> Result<(), OpLogError> {
        self.push(line, e)
    }
}

/// Late lines go into the output's held-back text if they still can, else
/// to the second pass.
pub(super) struct HoldOrKeep<'a> {
    pub sink: &'a mut Sink,
    pub late: &'a mut Late,
}

impl LateLines for HoldOrKeep<'_> {
    fn push(&mut self, line: &[u8], e: &Entry) -> Result<(), OpLogError> {
        if self.sink.hold(line, e) {
            Ok(())
        } else {
            self.late.push(line, e)
        }
    }

    /// Only lines before the cursor may go into the held output (lines
    /// written later all sort after them): parked ones go to the second
    /// pass.
    fn park(&mut self, line: &[u8], e: &Entry) -> Result<(), OpLogError> {
        self.late.push(line, e)
    }
}

pub(super) struct Late {
    /// One chunk, appended to.
    arena: Vec<Chunk>,
    entries: Vec<Entry>,
    /// Bytes of lines held before spilling them.
    budget: usize,
    spilled: Vec<Run>,
    /// Where spills go; None where late lines are a bug (sorted inputs).
    temps: Option<TempFiles>,
    opts: SinkOptions,
    /// Late lines so far.
    pub(super) count: u64,
}

impl Late {
    pub(super) fn new(dir: &Path, budget: usize, opts: SinkOptions) -> Self {
        Late {
            arena: vec![Chunk::default()],
            entries: Vec::new(),
            budget: budget.max(1),
            spilled: Vec::new(),
            temps: Some(TempFiles::new(dir)),
            opts,
            count: 0,
        }
    }

    /// For merges of sorted runs only, where no line can be late.
    pub(super) fn none() -> Self {
        Late {
            arena: vec![Chunk::default()],
            entries: Vec::new(),
            budget: usize::MAX,
            spilled: Vec::new(),
            temps: None,
            opts: SinkOptions {
                level: 1,
                threads: 0,
                sync: false,
                hold_bytes: 0,
                block_bytes: super::sink::BLOCK_BYTES,
            },
            count: 0,
        }
    }
}

impl LateLines for Late {
    /// Keeps `line`, the line of `e`, for the second pass.
    fn push(&mut self, line: &[u8], e: &Entry) -> Result<(), OpLogError> {
        if self.temps.is_none() {
            return Err(OpLogError::Io {
                path: PathBuf::from("<merge>"),
                source: std::io::Error::other("a sorted run is out of order (a merge bug)"),
            });
        }
        let data = &mut self.arena[0].data;
        self.entries.push(e.kept_in(line, data));
        self.count += 1;
        if data.len() >= self.budget {
            self.spill()?;
        }
        Ok(())
    }
}

impl Late {
    fn spill(&mut self) -> Result<(), OpLogError> {
        let Some(temps) = &mut self.temps else {
            return Ok(());
        };
        sort_entries(&mut self.entries, &self.arena);
        let path = temps.new_path();
        let mut sink = Sink::create(&path, self.opts)?;
        for e in &self.entries {
            sink.push(e.line(&self.arena), e.start)?;
        }
        let first = sink.finish()?.first_start;
        self.spilled.push((path, first.unwrap_or(i64::MIN)));
        self.entries.clear();
        self.arena[0].data.clear();
        Ok(())
    }

    /// The late lines as sorted runs: spilled files, and those still in
    /// memory as a source. With more than `max_runs` runs, the ones in
    /// memory are spilled too, so the caller can merge files in groups.
    pub(super) fn take_runs(
        &mut self,
        max_runs: usize,
    ) -> Result<(Vec<Run>, Option<Source>), OpLogError> {
        if !self.entries.is_empty() && self.spilled.len() + 2 > max_runs {
            self.spill()?;
        }
        let memory = if self.entries.is_empty() {
            None
        } else {
            sort_entries(&mut self.entries, &self.arena);
            Some(Source::memory(
                Path::new("<late lines>"),
                Chunk::growing(std::mem::take(&mut self.arena[0].data)),
                std::mem::take(&mut self.entries),
            ))
        };
        Ok((std::mem::take(&mut self.spilled), memory))
    }

    /// Removes a spilled run once merged.
    pub(super) fn remove(&mut self, path: &Path) {
        if let Some(t) = &mut self.temps {
            t.remove(path);
        }
    }
}
