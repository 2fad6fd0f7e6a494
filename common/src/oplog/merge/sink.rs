//! Where merged lines go: a zstd TSV file with the header.
//!
//! Lines are gathered in blocks; a block goes to the compressors (threads
//! of their own, `frames`, so that compression, most of a merge's CPU,
//! runs beside the merging) only once the blocks after it hold
//! `hold_bytes` of text. Until then a late line (one read after lines that
//! sort after it were written: an op much slower than those around it) can
//! still be put in its place ([`Sink::hold`]); only lines later than that
//! take a second pass.

use super::entries::{Chunk, Entry, sort_entries};
use super::frames::{Compressors, FrameWriter};
use crate::oplog::reader::OpLogError;
use crate::oplog::record::header_line;
use std::cmp::Ordering;
use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};

/// Text handed to the compressor at a time, as one zstd frame: large
/// enough that frames cost nothing in size (the window is 128 KiB).
pub(super) const BLOCK_BYTES: usize = 1 << 20;

/// How a sink compresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct SinkOptions {
    pub level: i32,
    /// Compressor threads (0: compress inline).
    pub threads: usize,
    /// fsync when finished (the final output; temp runs need not).
    pub sync: bool,
    /// Text held back from the compressor, for late lines (0: none).
    pub hold_bytes: usize,
    /// Text per block (frame).
    pub block_bytes: usize,
}

enum Out {
    /// None once finished.
    Inline(Option<FrameWriter>),
    Threads(Compressors),
}

/// The first line of a frame: its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct FrameKey {
    pub start: i64,
    pub client: Box<[u8]>,
    pub idx: u64,
}

/// One frame of a finished output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Frame {
    /// Its first line's key (None: no lines, only the header).
    pub first: Option<FrameKey>,
    /// Lines in it (the header not counted).
    pub lines: u64,
    /// Where it is in the file.
    pub off: u64,
    pub len: u64,
}

/// A block of output text, whole lines, and (when holding) where each line
/// starts and the late lines to put in.
#[derive(Debug, Default)]
struct Block {
    data: Vec<u8>,
    /// Its first line's key, and its lines.
    first: Option<FrameKey>,
    lines: u64,
    starts: Vec<i64>,
    offs: Vec<u32>,
    late: Vec<Entry>,
    late_text: Vec<Chunk>,
}

impl Block {
    fn clear(&mut self) {
        self.data.clear();
        self.first = None;
        self.lines = 0;
        self.starts.clear();
        self.offs.clear();
        self.late.clear();
        if let Some(c) = self.late_text.first_mut() {
            c.data.clear();
        }
    }

    /// `idx` and client id of held line `i`.
    fn key_rest(&self, i: usize) -> (&[u8], u64) {
        let from = self.offs[i] as usize;
        let to = self
            .offs
            .get(i + 1)
            .map_or(self.data.len(), |&o| o as usize);
        line_client_idx(&self.data[from..to])
    }

    /// Held line `i` against a late line's key: its start, client id and
    /// idx.
    fn cmp_line(&self, i: usize, (start, client, idx): (i64, &[u8], u64)) -> Ordering {
        self.starts[i].cmp(&start).then_with(|| {
            let (held_client, held_idx) = self.key_rest(i);
            (held_client, held_idx).cmp(&(client, idx))
        })
    }

    /// Where late line `e` (kept in this block's `late_text`) goes: before
    /// the first held line that sorts after it.
    fn place(&self, e: &Entry) -> usize {
        let key = (e.start, e.client(&self.late_text), e.idx);
        let mut p = self.starts.partition_point(|&s| s <= e.start);
        while p > 0
            && self.starts[p - 1] == e.start
            && self.cmp_line(p - 1, key) == Ordering::Greater
        {
            p -= 1;
        }
        p
    }
}

/// The client id and `idx` of one of our lines (fields 4 and 1).
pub(super) fn line_client_idx(line: &[u8]) -> (&[u8], u64) {
    let mut fields = line.split(|&b| b == b'\t' || b == b'\n');
    let idx = fields
        .next()
        .and_then(|f| std::str::from_utf8(f).ok()?.parse().ok())
        .unwrap_or(0);
    let client = fields.nth(2).unwrap_or_default();
    (client, idx)
}

/// A zstd op-log being written, line by line.
pub(super) struct Sink {
    path: PathBuf,
    out: Out,
    hold_bytes: usize,
    block_bytes: usize,
    /// Blocks not yet compressed, oldest first; the last one is filled.
    held: VecDeque<Block>,
    held_bytes: usize,
    /// Cleared blocks (without text buffers) and text buffers, for reuse.
    spare: Vec<Block>,
    buffers: Vec<Vec<u8>>,
    records: u64,
    /// Each frame sent: first key and lines.
    frames: Vec<(Option<FrameKey>, u64)>,
    /// Late lines put in place.
    pub(super) placed: u64,
    /// Start of the first line written.
    first_start: Option<i64>,
}

impl Sink {
    /// Creates `path` and writes the header.
    pub(super) fn create(path: &Path, opts: SinkOptions) -> Result<Self, OpLogError> {
        let err = |source| OpLogError::Io {
            path: path.to_path_buf(),
            source,
        };
        let writer = FrameWriter::create(path, opts.level, opts.sync).map_err(err)?;
        let out = if opts.threads > 0 {
            Out::Threads(Compressors::start(writer, opts.threads).map_err(err)?)
        } else {
            Out::Inline(Some(writer))
        };
        let mut first = Block::default();
        first.data.reserve(opts.block_bytes + 64 * 1024);
        first.data.extend_from_slice(header_line().as_bytes());
        Ok(Sink {
            path: path.to_path_buf(),
            out,
            hold_bytes: opts.hold_bytes,
            block_bytes: opts.block_bytes.max(1),
            held: VecDeque::from([first]),
            held_bytes: 0,
            spare: Vec::new(),
            buffers: Vec::new(),
            records: 0,
            frames: Vec::new(),
            placed: 0,
            first_start: None,
        })
    }

    fn io_err(&self, source: io::Error) -> OpLogError {
        OpLogError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// Appends one line (without line ending) whose start is `start`.
    #[inline]
    pub(super) fn push(&mut self, line: &[u8], start: i64) -> Result<(), OpLogError> {
        let holding = self.hold_bytes > 0;
        if self.first_start.is_none() {
            // Late lines are only put after the first line: it stays first.
            self.first_start = Some(start);
        }
        let Some(block) = self.held.back_mut() else {
            unreachable!("a sink always has a block to fill")
        };
        if holding {
            block.starts.push(start);
            block.offs.push(block.data.len() as u32);
        }
        if block.first.is_none() {
            let (client, idx) = line_client_idx(line);
            block.first = Some(FrameKey {
                start,
                client: client.into(),
                idx,
            });
        }
        block.lines += 1;
        block.data.extend_from_slice(line);
        block.data.push(b'\n');
        self.records += 1;
        if block.data.len() >= self.block_bytes {
            self.held_bytes += block.data.len();
            let mut next = self.spare.pop().unwrap_or_default();
            next.data = self.buffer();
            next.data.reserve(self.block_bytes + 64 * 1024);
            self.held.push_back(next);
            while self.held_bytes > self.hold_bytes && self.held.len() > 1 {
                self.release().map_err(|e| self.io_err(e))?;
            }
        }
        Ok(())
    }

    /// Puts late line `line` (of entry `e`) in its place among the lines
    /// held back, if it sorts after all lines already compressed; false if
    /// not (it needs a second pass).
    pub(super) fn hold(&mut self, line: &[u8], e: &Entry) -> bool {
        if self.hold_bytes == 0 {
            return false;
        }
        // `e` points into its source's chunks, not into a block: its client
        // id is read from `line` itself.
        let from = usize::from(e.client_off);
        let client = line
            .get(from..from + e.client_len as usize)
            .unwrap_or_default();
        let key = (e.start, client, e.idx);
        // The newest held block whose first line sorts before `e`.
        let Some(block) = self
            .held
            .iter_mut()
            .rev()
            .find(|b| !b.starts.is_empty() && b.cmp_line(0, key) != Ordering::Greater)
        else {
            return false;
        };
        if block.late_text.is_empty() {
            block.late_text.push(Chunk::default());
        }
        let kept = e.kept_in(line, &mut block.late_text[0].data);
        block.late.push(kept);
        block.lines += 1;
        self.held_bytes += line.len() + 1;
        self.records += 1;
        self.placed += 1;
        true
    }

    /// Sends the oldest held block to the compressor, with its late lines
    /// put in place.
    fn release(&mut self) -> io::Result<()> {
        let Some(mut block) = self.held.pop_front() else {
            return Ok(());
        };
        self.held_bytes = self.held_bytes.saturating_sub(block.data.len());
        if !block.late.is_empty() {
            let chunks = &block.late_text;
            sort_entries(&mut block.late, chunks);
            // Places are found while the block still holds its text: a late
            // line with the start of a held line is ordered against that
            // line's client id and idx, read from the text.
            let places: Vec<usize> = block.late.iter().map(|e| block.place(e)).collect();
            let text = std::mem::take(&mut block.data);
            let late_bytes: usize = block.late.iter().map(|e| e.len as usize + 1).sum();
            self.held_bytes = self.held_bytes.saturating_sub(late_bytes);
            let mut merged = self.buffer();
            merged.reserve(text.len() + late_bytes);
            let mut from = 0usize;
            for (e, &p) in block.late.iter().zip(&places) {
                let at = block.offs.get(p).map_or(text.len(), |&o| o as usize);
                merged.extend_from_slice(&text[from..at]);
                merged.extend_from_slice(e.line(chunks));
                merged.push(b'\n');
                from = at;
            }
            merged.extend_from_slice(&text[from..]);
            block.data = text;
            std::mem::swap(&mut block.data, &mut merged);
            merged.clear();
            self.buffers.push(merged);
        }
        let text = std::mem::take(&mut block.data);
        self.frames.push((block.first.take(), block.lines));
        block.clear();
        self.spare.push(block);
        self.send(text)
    }

    /// A buffer for a block: one kept, one the compressor is done with, or
    /// a new one.
    fn buffer(&mut self) -> Vec<u8> {
        // Every buffer the writer has given back is kept here, not just
        // the one needed now: how many are in the compressors' hands
        // swings by their queues' depth, and a buffer left waiting in the
        // bounded return channel while a new one was allocated would later
        // be dropped there: a fresh megabyte (page faults, zeroing) per
        // block, measured at ~10% of the merging thread.
        if let Out::Threads(c) = &self.out {
            self.buffers.extend(std::iter::from_fn(|| c.free_buffer()));
        }
        let mut b = self.buffers.pop().unwrap_or_default();
        b.clear();
        b
    }

    fn send(&mut self, mut text: Vec<u8>) -> io::Result<()> {
        match &mut self.out {
            Out::Inline(writer) => {
                if let Some(w) = writer {
                    w.frame(&text)?;
                }
                text.clear();
                self.buffers.push(text);
                Ok(())
            }
            Out::Threads(c) => c.send(text),
        }
    }

    /// Writes what is held (and fsyncs if asked); returns the number of
    /// lines, the start of the first, and the frames.
    pub(super) fn finish(mut self) -> Result<Finished, OpLogError> {
        let sizes = self.finish_io().map_err(|e| self.io_err(e))?;
        let mut off = 0;
        let frames = std::mem::take(&mut self.frames)
            .into_iter()
            .zip(sizes)
            .map(|((first, lines), len)| {
                let f = Frame {
                    first,
                    lines,
                    off,
                    len,
                };
                off += len;
                f
            })
            .collect();
        Ok(Finished {
            records: self.records,
            first_start: self.first_start,
            frames,
        })
    }

    fn finish_io(&mut self) -> io::Result<Vec<u64>> {
        while !self.held.is_empty() {
            self.release()?;
        }
        match &mut self.out {
            Out::Inline(writer) => match writer.take() {
                Some(w) => w.finish(),
                None => Ok(Vec::new()),
            },
            Out::Threads(c) => c.finish(),
        }
    }
}

/// What a finished sink wrote.
#[derive(Debug)]
pub(super) struct Finished {
    pub records: u64,
    /// Start of the first line.
    pub first_start: Option<i64>,
    pub frames: Vec<Frame>,
}
