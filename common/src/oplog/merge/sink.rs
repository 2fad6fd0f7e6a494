//! Where merged lines go: a zstd TSV file with the header.
//!
//! Lines are gathered in blocks; a block goes to the compressor (a thread
//! of its own, so that compression, most of a merge's CPU, runs beside the
//! merging) only once the blocks after it hold `hold_bytes` of text. Until
//! then a late line (one read after lines that sort after it were written:
//! an op much slower than those around it) can still be put in its place
//! ([`Sink::hold`]); only lines later than that take a second pass.

use super::source::{Chunk, Entry, sort_entries};
use crate::oplog::reader::OpLogError;
use crate::oplog::record::header_line;
use std::cmp::Ordering;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

/// Text handed to the compressor at a time, as one zstd frame: large
/// enough that frames cost nothing in size (the window is 128 KiB).
pub(super) const BLOCK_BYTES: usize = 1 << 20;

/// Blocks queued for the compressor thread.
const QUEUE_BLOCKS: usize = 2;

/// zstd window (log2 bytes) and hash table (log2 entries) at level 1.
/// Lines repeat within a few hundred bytes, so a small window and a table
/// that stays in L1/L2 cache compress a timeline faster and even smaller
/// than level 1's defaults (512 KiB, 8K entries) or the agent writer's
/// (128 KiB, 4K). Measured on a merged timeline (zstd CLI, min of 6):
/// 1K entries 0.41 s and 45.0 MB per 300 MB, 4K entries 0.49 s and 46.7 MB.
const WINDOW_LOG: u32 = 17;
const HASH_LOG: u32 = 10;

/// How a sink compresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct SinkOptions {
    pub level: i32,
    /// Compress on a thread of its own.
    pub thread: bool,
    /// fsync when finished (the final output; temp runs need not).
    pub sync: bool,
    /// Text held back from the compressor, for late lines (0: none).
    pub hold_bytes: usize,
    /// Text per block (frame).
    pub block_bytes: usize,
}

/// Writes blocks of text as independent zstd frames, one per block, and
/// notes each frame's size: a second pass can then copy frames it does not
/// change as they are.
pub(super) struct FrameWriter {
    file: BufWriter<File>,
    cctx: zstd::bulk::Compressor<'static>,
    buf: Vec<u8>,
    sizes: Vec<u64>,
}

impl FrameWriter {
    pub(super) fn create(path: &Path, level: i32) -> io::Result<Self> {
        let file = BufWriter::with_capacity(1 << 20, File::create(path)?);
        let mut cctx = zstd::bulk::Compressor::new(level)?;
        if level == 1 {
            cctx.set_parameter(zstd::zstd_safe::CParameter::WindowLog(WINDOW_LOG))?;
            cctx.set_parameter(zstd::zstd_safe::CParameter::HashLog(HASH_LOG))?;
        }
        Ok(FrameWriter {
            file,
            cctx,
            buf: Vec::new(),
            sizes: Vec::new(),
        })
    }

    /// Compresses `text` as one frame.
    pub(super) fn frame(&mut self, text: &[u8]) -> io::Result<()> {
        self.buf.clear();
        self.buf
            .reserve(zstd::zstd_safe::compress_bound(text.len()));
        self.cctx.compress_to_buffer(text, &mut self.buf)?;
        self.file.write_all(&self.buf)?;
        self.sizes.push(self.buf.len() as u64);
        Ok(())
    }

    /// Copies `len` bytes of `from` (frames as they are).
    pub(super) fn raw(&mut self, from: &mut File, len: u64) -> io::Result<()> {
        let copied = io::copy(&mut io::Read::take(&mut *from, len), &mut self.file)?;
        if copied != len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the first pass's output ended early",
            ));
        }
        self.sizes.push(len);
        Ok(())
    }

    /// Flushes (and fsyncs if asked); returns each frame's size.
    pub(super) fn finish(self, sync: bool) -> io::Result<Vec<u64>> {
        let file = self.file.into_inner().map_err(|e| e.into_error())?;
        if sync {
            file.sync_all()?;
        }
        Ok(self.sizes)
    }
}

enum Out {
    /// None once finished.
    Inline(Option<FrameWriter>),
    Thread {
        /// None once finished.
        tx: Option<SyncSender<Vec<u8>>>,
        /// Buffers the thread is done with, for reuse.
        free: Receiver<Vec<u8>>,
        thread: Option<JoinHandle<io::Result<Vec<u64>>>>,
    },
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
    sync: bool,
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
        let mut writer = FrameWriter::create(path, opts.level).map_err(err)?;
        let out = if opts.thread {
            let (tx, rx) = sync_channel::<Vec<u8>>(QUEUE_BLOCKS);
            let (free_tx, free) = sync_channel::<Vec<u8>>(QUEUE_BLOCKS + 2);
            let sync = opts.sync;
            let thread = std::thread::Builder::new()
                .name("merge-zstd".to_string())
                .spawn(move || {
                    for block in rx {
                        writer.frame(&block)?;
                        let _ = free_tx.try_send(block);
                    }
                    writer.finish(sync)
                })
                .map_err(err)?;
            Out::Thread {
                tx: Some(tx),
                free,
                thread: Some(thread),
            }
        } else {
            Out::Inline(Some(writer))
        };
        let mut first = Block::default();
        first.data.reserve(opts.block_bytes + 64 * 1024);
        first.data.extend_from_slice(header_line().as_bytes());
        Ok(Sink {
            path: path.to_path_buf(),
            out,
            sync: opts.sync,
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
        let mut b = match self.buffers.pop() {
            Some(b) => b,
            None => match &self.out {
                Out::Thread { free, .. } => free.try_recv().unwrap_or_default(),
                Out::Inline(_) => Vec::new(),
            },
        };
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
            Out::Thread { tx, thread, .. } => match tx.as_ref().map(|tx| tx.send(text)) {
                Some(Ok(())) => Ok(()),
                _ => Err(join(thread)),
            },
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
                Some(w) => w.finish(self.sync),
                None => Ok(Vec::new()),
            },
            Out::Thread { tx, thread, .. } => {
                drop(tx.take());
                match thread.take() {
                    Some(t) => t
                        .join()
                        .unwrap_or_else(|_| Err(io::Error::other("compressor thread panicked"))),
                    None => Ok(Vec::new()),
                }
            }
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

impl Drop for Sink {
    fn drop(&mut self) {
        // An unfinished sink (an error elsewhere): stop the thread; the
        // caller removes the file.
        if let Out::Thread { tx, thread, .. } = &mut self.out {
            drop(tx.take());
            if let Some(t) = thread.take() {
                let _ = t.join();
            }
        }
    }
}

/// The compressor thread's error, once it has stopped.
fn join(thread: &mut Option<JoinHandle<io::Result<Vec<u64>>>>) -> io::Error {
    match thread.take().map(|t| t.join()) {
        Some(Ok(Err(e))) => e,
        Some(Err(_)) => io::Error::other("compressor thread panicked"),
        _ => io::Error::other("compressor thread stopped"),
    }
}
