//! One log as a stream of lines in merge order.
//!
//! A log is read in blocks of lines ([`Source::refill`]): each block is
//! sorted and merged with what is left of the previous one, and lines are
//! handed out from the front only while at least a block's worth remains
//! behind them. So a line may come up to a block later than its place in
//! merge order (an agent's log is in completion order: a long op's line
//! comes after lines of ops that started later) and still take its place.
//! A line that comes later than that is *late*: its place has been written
//! already, so it goes to [`Late`] and a second pass puts it in.
//!
//! Lines stay where decompression put them, in chunks of text recycled
//! once all their lines are handed out; only their keys are sorted. Lines
//! of other layouts are written in ours to chunks of their own.

use super::clock::ClockCorrection as Clock;
use super::entries::{
    Chunk, Chunks, Cursor, ENTRIES_AHEAD, Entry, Sorter, cmp_entries, prefetch, prefetch_raw,
};
use super::late::{Late, LateLines};
use super::line::{FIELDS, LineKey, Split, TimeCodec, fast_line, slow_line, split_line};
use super::text::TextSource;
use crate::oplog::reader::{Columns, MAX_LINE_BYTES, OpLogError};
use std::cmp::Ordering;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

/// Compressed bytes read from the file at a time.
const FILE_BUFFER_BYTES: usize = 256 * 1024;

/// The smallest chunk a short log is read in (see `Waiting::whole_bytes`).
pub(super) const MIN_CHUNK_BYTES: usize = 4 << 10;

/// How a log is read: bytes of lines per block (the window), of text per
/// chunk, and whether it is decompressed on a thread of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Sizes {
    pub block_bytes: usize,
    pub chunk_bytes: usize,
    pub thread: bool,
}

/// Most blocks' worth of lines a log holds back (see `Source::window_cap`).
const WINDOW_BLOCKS: usize = 4;

/// Chunks a log may hold beyond those its window needs before lines held
/// back for long (few lines pinning whole chunks) are compacted.
const EXTRA_CHUNKS: usize = 8;

/// Chunks a log reading with `sizes` holds at most (beyond, it compacts):
/// two blocks' worth, and some.
fn max_chunks(sizes: Sizes) -> usize {
    2 * sizes.block_bytes.div_ceil(sizes.chunk_bytes.max(1)) + EXTRA_CHUNKS
}

/// What the first block of a log says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Probe {
    /// The smallest start (corrected) among its lines.
    pub first_start: Option<i64>,
    /// How many lines after its place a line came (but for the 1% most).
    pub displacement: usize,
    /// Lines and bytes read (without line endings).
    pub lines: usize,
    pub bytes: usize,
    /// That was the whole log.
    pub ended: bool,
}

/// How many lines with later starts come before a line, for all but the
/// 1% of lines with the most: about how many lines a window must hold back
/// to put nearly all of them in order. The 1% are left out so that a few
/// ops far slower than the rest (a timeout, and its worker's batch) do not
/// make every block large: their lines are late, and handled as such.
pub(super) fn displacement(starts: &[i64]) -> usize {
    if starts.is_empty() {
        return 0;
    }
    // Rank of each start; a Fenwick tree counts the ranks seen so far.
    let mut sorted = starts.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut tree = vec![0u32; sorted.len() + 1];
    let mut later = Vec::with_capacity(starts.len());
    for (i, s) in starts.iter().enumerate() {
        let rank = sorted.partition_point(|x| x <= s);
        // Lines so far with a start at most this one's.
        let (mut at, mut not_later) = (rank, 0usize);
        while at > 0 {
            not_later += tree[at] as usize;
            at &= at - 1;
        }
        later.push(i - not_later);
        let mut at = rank;
        while at < tree.len() {
            tree[at] += 1;
            at += at & at.wrapping_neg();
        }
    }
    // Nearest rank: the smallest count at least 99% of lines are within.
    let rank = (later.len() * 99).div_ceil(100).max(1);
    *later.select_nth_unstable(rank - 1).1
}

/// One log being merged.
pub(super) struct Source {
    path: PathBuf,
    clock: Clock,
    /// The decompressed (or plain) text; None once it has ended.
    text: Option<TextSource>,
    compressed: bool,
    columns: Columns,
    chunks: Chunks,
    /// The chunk text is read into; unread text is `[lo..hi]` of it.
    cur: Option<u16>,
    lo: usize,
    hi: usize,
    /// The chunk lines of other layouts are written to, and its length.
    slow: Option<u16>,
    slow_len: usize,
    /// Lines read, the header included.
    line_no: u64,
    times: TimeCodec,
    scratch: String,
    /// Lines ready to hand out, sorted, from `pos` on.
    ready: Vec<Entry>,
    pos: usize,
    /// The block being read, then sorted; scratch for merging.
    fresh: Vec<Entry>,
    merged: Vec<Entry>,
    sorter: Sorter,
    /// Bytes of lines per block.
    block_bytes: usize,
    chunk_bytes: usize,
    /// Chunks held before compacting.
    max_chunks: usize,
    /// The smallest line of the last block read: lines up to it are handed
    /// out, later ones wait for the next block (a line read after it that
    /// sorts before it would be late).
    frontier: Cursor,
    /// Bytes of the lines not handed out; beyond `window_cap` (a log far
    /// out of order) they are parked for the second pass.
    ready_bytes: usize,
    window_cap: usize,
    /// The log is read to its end (or to an error).
    ended: bool,
    /// What ended it early, if anything.
    error: Option<OpLogError>,
    /// Records read.
    pub(super) records: u64,
    /// Starts in the order read, when probing.
    probe_starts: Option<Vec<i64>>,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("path", &self.path)
            .field("line_no", &self.line_no)
            .finish_non_exhaustive()
    }
}

impl Source {
    fn new(path: &Path, clock: Clock, sizes: Sizes) -> Self {
        Source {
            path: path.to_path_buf(),
            clock,
            text: None,
            compressed: false,
            columns: Columns::default(),
            chunks: Chunks::default(),
            max_chunks: max_chunks(sizes),
            cur: None,
            lo: 0,
            hi: 0,
            slow: None,
            slow_len: 0,
            line_no: 0,
            times: TimeCodec::default(),
            scratch: String::new(),
            ready: Vec::new(),
            pos: 0,
            fresh: Vec::new(),
            merged: Vec::new(),
            sorter: Sorter::default(),
            block_bytes: sizes.block_bytes.max(1),
            chunk_bytes: sizes.chunk_bytes.max(64),
            frontier: Cursor::default(),
            ready_bytes: 0,
            window_cap: WINDOW_BLOCKS * sizes.block_bytes.max(1),
            ended: false,
            error: None,
            records: 0,
            probe_starts: None,
        }
    }

    /// Opens a log (zstd or plain) and reads its header.
    pub(super) fn open(path: &Path, clock: Clock, sizes: Sizes) -> Result<Self, OpLogError> {
        let file = File::open(path).map_err(|source| OpLogError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        // A short log's buffer is its size: a thousand open logs of a few
        // KiB must not hold a thousand full buffers.
        let len = file.metadata().map_or(u64::MAX, |m| m.len());
        let buffer = len.clamp(MIN_CHUNK_BYTES as u64, FILE_BUFFER_BYTES as u64) as usize;
        let raw = BufReader::with_capacity(buffer, file);
        let (input, encoding) = crate::oplog::spool::open_text(path, raw)?;
        let compressed = encoding != crate::oplog::spool::LogEncoding::Plain;
        let text =
            TextSource::new(input, sizes.chunk_bytes.max(64), sizes.thread).map_err(|source| {
                OpLogError::Io {
                    path: path.to_path_buf(),
                    source,
                }
            })?;
        let mut src = Source::new(path, clock, sizes);
        src.text = Some(text);
        src.compressed = compressed;
        src.read_header()?;
        Ok(src)
    }

    /// Sorted lines already in memory, in one chunk (late lines).
    pub(super) fn memory(name: &Path, mut chunk: Chunk, ready: Vec<Entry>) -> Self {
        let mut src = Source::new(
            name,
            Clock::NONE,
            Sizes {
                block_bytes: 1,
                chunk_bytes: chunk.data.len(),
                thread: false,
            },
        );
        chunk.live = ready.len() as u32;
        src.ready_bytes = ready.iter().map(|e| e.len as usize + 1).sum();
        src.chunks.slots.push(chunk);
        src.ready = ready;
        src.ended = true;
        src
    }

    fn parse_err(&self, msg: String) -> OpLogError {
        OpLogError::Parse {
            path: self.path.clone(),
            line: self.line_no,
            msg,
        }
    }

    /// A chunk no line needs any more is recycled.
    #[inline]
    fn unref(&mut self, chunk: u16) {
        let c = &mut self.chunks.slots[usize::from(chunk)];
        c.live -= 1;
        if c.live == 0 && self.cur != Some(chunk) && self.slow != Some(chunk) {
            self.release(chunk);
        }
    }

    /// Frees a chunk: its buffer goes back to the decompressor, or to the
    /// pool.
    fn release(&mut self, chunk: u16) {
        let mut buf = self.chunks.release(chunk);
        if let Some(text) = &mut self.text {
            match text.give_back(buf) {
                Some(b) => buf = b,
                None => return,
            }
        }
        self.chunks.keep(buf, self.chunk_bytes);
    }

    /// The next chunk of text becomes the current one; false at the end.
    fn next_chunk(&mut self) -> Result<bool, OpLogError> {
        let next = match self.text.as_mut().and_then(TextSource::next) {
            None => {
                self.text = None;
                return Ok(false);
            }
            Some(Err(source)) => {
                self.text = None;
                return Err(OpLogError::read(
                    &self.path,
                    self.line_no + 1,
                    self.compressed,
                    source,
                ));
            }
            Some(Ok(t)) => t,
        };
        let new = self.chunks.put(next.data);
        if let Some(old) = self.cur.replace(new)
            && self.chunks.slots[usize::from(old)].live == 0
        {
            self.release(old);
        }
        self.lo = 0;
        self.hi = next.len;
        Ok(true)
    }

    /// The next line, without its line ending, as a range of the current
    /// chunk, with what [`split_line`] found; None at the end of the text.
    /// Counts lines.
    fn next_line(
        &mut self,
        tabs: &mut [u32; FIELDS],
    ) -> Result<Option<(usize, usize, Split)>, OpLogError> {
        while self.lo >= self.hi {
            if !self.next_chunk()? {
                return Ok(None);
            }
        }
        let cur = usize::from(self.cur.unwrap_or_default());
        let split = split_line(&self.chunks.slots[cur].data[self.lo..self.hi], tabs);
        // No line end: the last line of the log, or one too long.
        let len = split.newline.unwrap_or(self.hi - self.lo);
        self.line_no += 1;
        if len + usize::from(split.newline.is_some()) > MAX_LINE_BYTES {
            return Err(self.parse_err(format!(
                "line longer than {MAX_LINE_BYTES} bytes (not an op-log?)"
            )));
        }
        let from = self.lo;
        self.lo = (from + len + 1).min(self.hi);
        Ok(Some((from, from + len, split)))
    }

    fn read_header(&mut self) -> Result<(), OpLogError> {
        let mut tabs = [0u32; FIELDS];
        let Some((from, to, _)) = self.next_line(&mut tabs)? else {
            return Err(OpLogError::Parse {
                path: self.path.clone(),
                line: 1,
                msg: "empty file: no header line".to_string(),
            });
        };
        let cur = usize::from(self.cur.unwrap_or_default());
        let mut line = &self.chunks.slots[cur].data[from..to];
        if line.last() == Some(&b'\r') {
            line = &line[..line.len() - 1];
        }
        self.columns = Columns::from_header(line).map_err(|msg| self.parse_err(msg))?;
        Ok(())
    }

    /// Reads the first block (its size given when opened) to see when the
    /// merge needs this log, and how far out of order its lines are.
    pub(super) fn probe(&mut self) -> Result<Probe, OpLogError> {
        self.probe_starts = Some(Vec::new());
        // No cursor: nothing is late.
        self.refill(&Cursor::default(), &mut Late::none())?;
        let starts = self.probe_starts.take().unwrap_or_default();
        let bytes: usize = self.ready.iter().map(|e| e.len as usize + 1).sum();
        Ok(Probe {
            first_start: self.head().map(|(e, _)| e.start),
            displacement: displacement(&starts),
            lines: starts.len(),
            bytes,
            ended: self.ended,
        })
    }

    /// The first line in merge order, and the chunks it is in.
    #[inline]
    pub(super) fn head(&self) -> Option<(&Entry, &[Chunk])> {
        self.ready
            .get(self.pos)
            .map(|e| (e, self.chunks.slots.as_slice()))
    }

    /// Drops the head; reads the next block when the new head is after the
    /// frontier. `cursor` is the last line written (the head, normally).
    #[inline]
    pub(super) fn advance(
        &mut self,
        cursor: &Cursor,
        late: &mut dyn LateLines,
    ) -> Result<(), OpLogError> {
        let e = self.ready[self.pos];
        self.pos += 1;
        self.ready_bytes -= e.len as usize + 1;
        self.unref(e.chunk);
        self.fill_window(cursor, late)?;
        if let Some(next) = self.ready.get(self.pos) {
            // Written long ago (a window back), likely out of cache by now,
            // and needed when this log's turn comes again.
            prefetch(next.line(&self.chunks.slots));
        }
        if let Some(ahead) = self.ready.get(self.pos + ENTRIES_AHEAD) {
            // The entries too: the logs take turns, and between two turns
            // of one the others push its entries out of cache.
            prefetch_raw((ahead as *const Entry).cast(), size_of::<Entry>());
        }
        Ok(())
    }

    /// Reads blocks until the head may be handed out: it is not after the
    /// frontier, or the log has ended.
    #[inline]
    pub(super) fn fill_window(
        &mut self,
        cursor: &Cursor,
        late: &mut dyn LateLines,
    ) -> Result<(), OpLogError> {
        while !self.ended {
            if let Some(head) = self.ready.get(self.pos)
                && self.frontier.cmp_entry(head, &self.chunks.slots) != Ordering::Less
            {
                break;
            }
            if self.ready_bytes > self.window_cap {
                self.park(late)?;
            }
            self.refill(cursor, late)?;
        }
        Ok(())
    }

    /// Moves every line not handed out to the second pass: a log so far out
    /// of order that its window would grow past its cap (or lines far ahead
    /// of the rest that would stay in it).
    fn park(&mut self, late: &mut dyn LateLines) -> Result<(), OpLogError> {
        for i in self.pos..self.ready.len() {
            let e = self.ready[i];
            late.park(e.line(&self.chunks.slots), &e)?;
            self.unref(e.chunk);
        }
        self.ready.clear();
        self.pos = 0;
        self.ready_bytes = 0;
        Ok(())
    }

    /// Nothing left to hand out.
    pub(super) fn is_done(&self) -> bool {
        self.ended && self.pos >= self.ready.len()
    }

    /// The error that ended this log early, once.
    pub(super) fn take_error(&mut self) -> Option<OpLogError> {
        self.error.take()
    }

    /// Writes a line of another layout, in ours, to the slow chunk.
    fn slow_line(
        &mut self,
        from: usize,
        to: usize,
    ) -> Result<(u16, usize, usize, LineKey), String> {
        let cur = usize::from(self.cur.unwrap_or_default());
        let mut line = std::mem::take(&mut self.chunks.slots[cur].data);
        let mut out = Vec::new();
        let result = slow_line(
            &self.columns,
            &line[from..to],
            &self.clock,
            &mut self.scratch,
            &mut out,
        );
        std::mem::swap(&mut self.chunks.slots[cur].data, &mut line);
        let key = result?;
        let room = self.slow.map_or(0, |s| {
            self.chunks.slots[usize::from(s)].data.len() - self.slow_len
        });
        if room < out.len() {
            let new = self.chunks.take(self.chunk_bytes.max(out.len()));
            if let Some(old) = self.slow.replace(new)
                && self.chunks.slots[usize::from(old)].live == 0
            {
                self.release(old);
            }
            self.slow_len = 0;
        }
        let slow = self.slow.unwrap_or_default();
        let at = self.slow_len;
        self.chunks.slots[usize::from(slow)].data[at..at + out.len()].copy_from_slice(&out);
        self.slow_len += out.len();
        Ok((slow, at, out.len(), key))
    }

    /// Reads the next block of lines (or the rest of the log), sorts it,
    /// and merges it with the lines not yet handed out. Lines that sort
    /// before `cursor` go to `late`. A damaged log ends at the damage, with
    /// the error kept for [`Source::take_error`]; only errors of `late`
    /// (writing a temp file) are returned.
    pub(super) fn refill(
        &mut self,
        cursor: &Cursor,
        late: &mut dyn LateLines,
    ) -> Result<(), OpLogError> {
        let ours = self.columns.is_ours();
        let mut tabs = [0u32; FIELDS];
        self.fresh.clear();
        let mut bytes = 0usize;
        while bytes < self.block_bytes {
            let (from, mut to, split) = match self.next_line(&mut tabs) {
                Ok(Some(l)) => l,
                Ok(None) => {
                    self.ended = true;
                    break;
                }
                Err(e) => {
                    self.error = Some(e);
                    self.ended = true;
                    break;
                }
            };
            let cur = self.cur.unwrap_or_default();
            let text = &mut self.chunks.slots[usize::from(cur)].data;
            if to > from && text[to - 1] == b'\r' {
                to -= 1;
            }
            if to == from || text[from] == b'#' {
                continue;
            }
            let fast = if ours {
                fast_line(
                    &mut text[from..to],
                    &tabs,
                    split,
                    &self.clock,
                    &mut self.times,
                )
            } else {
                None
            };
            let entry = match fast {
                Some(key) => Entry::new(cur, from, to - from, key),
                None => match self.slow_line(from, to) {
                    Ok((chunk, at, len, key)) => Entry::new(chunk, at, len, key),
                    Err(msg) => {
                        self.error = Some(self.parse_err(msg));
                        self.ended = true;
                        break;
                    }
                },
            };
            self.records += 1;
            bytes += entry.len as usize + 1;
            if let Some(starts) = &mut self.probe_starts {
                starts.push(entry.start);
            }
            if cursor.is_past(&entry, &self.chunks.slots) {
                late.push(entry.line(&self.chunks.slots), &entry)?;
            } else {
                self.chunks.slots[usize::from(entry.chunk)].live += 1;
                self.fresh.push(entry);
            }
        }
        if self.ended {
            // Done reading: free the decoder now rather than at the end.
            self.text = None;
            for c in [self.cur.take(), self.slow.take()].into_iter().flatten() {
                if self.chunks.slots[usize::from(c)].live == 0 {
                    self.release(c);
                }
            }
        }
        let chunks = &self.chunks.slots;
        self.sorter.sort(&mut self.fresh, chunks);
        if let Some(first) = self.fresh.first() {
            self.frontier.set(first, chunks);
        }
        self.ready_bytes += self.fresh.iter().map(|e| e.len as usize + 1).sum::<usize>();

        // Merge with the lines not handed out yet.
        let rest = &self.ready[self.pos..];
        if rest.is_empty() {
            std::mem::swap(&mut self.ready, &mut self.fresh);
        } else {
            self.merged.clear();
            let fresh = &self.fresh;
            let (mut a, mut b) = (0, 0);
            while a < rest.len() && b < fresh.len() {
                // Ties: the earlier line (the one read before) first.
                if cmp_entries(&fresh[b], chunks, &rest[a], chunks) == Ordering::Less {
                    self.merged.push(fresh[b]);
                    b += 1;
                } else {
                    self.merged.push(rest[a]);
                    a += 1;
                }
            }
            self.merged.extend_from_slice(&rest[a..]);
            self.merged.extend_from_slice(&fresh[b..]);
            std::mem::swap(&mut self.ready, &mut self.merged);
        }
        self.pos = 0;
        if self.chunks.in_use() > self.max_chunks {
            self.compact();
        }
        Ok(())
    }

    /// Copies the lines not handed out yet into fresh chunks, so that
    /// chunks held only by a few of them are freed: a line far ahead of
    /// the rest of its log would otherwise keep its whole chunk.
    fn compact(&mut self) {
        let mut out: Option<(u16, usize)> = None;
        for i in self.pos..self.ready.len() {
            let e = self.ready[i];
            if Some(e.chunk) == self.cur || out.is_some_and(|(c, _)| c == e.chunk) {
                continue;
            }
            let len = e.len as usize;
            let (mut chunk, mut at) = match out {
                Some(o) => o,
                None => (self.chunks.take(self.chunk_bytes.max(len)), 0),
            };
            if self.chunks.slots[usize::from(chunk)].data.len() - at < len {
                if self.chunks.slots[usize::from(chunk)].live == 0 {
                    self.release(chunk);
                }
                chunk = self.chunks.take(self.chunk_bytes.max(len));
                at = 0;
            }
            let (src, dst) = (usize::from(e.chunk), usize::from(chunk));
            let text = std::mem::take(&mut self.chunks.slots[src].data);
            self.chunks.slots[dst].data[at..at + len]
                .copy_from_slice(&text[e.off as usize..][..len]);
            self.chunks.slots[src].data = text;
            self.chunks.slots[dst].live += 1;
            self.ready[i] = Entry {
                chunk,
                off: at as u32,
                ..e
            };
            out = Some((chunk, at + len));
            self.unref(e.chunk);
        }
        // Lines of other layouts go on to a new slow chunk.
        if let Some(s) = self.slow.take()
            && self.chunks.slots[usize::from(s)].live == 0
        {
            self.release(s);
        }
        self.slow_len = 0;
    }
}

#[cfg(test)]
mod tests;
