//! zstd frames out: the file writer, and compression on threads.
//!
//! A merge writes its output as independent zstd frames of about 1 MiB
//! (one per block of text), so the frames can be compressed in parallel:
//! [`Compressors`] hands blocks round-robin to a few threads, each with its
//! own compression context, and one writer thread takes the finished
//! frames in the same round-robin order, so the file is what a single
//! compressor would have written. Compression is most of a merge's CPU
//! (level 1 runs at ~4-5M timeline lines/s on one core, below the merge's
//! other work on the other core), which is why one thread was not enough.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

/// zstd window (log2 bytes) and hash table (log2 entries) at level 1.
/// Lines repeat within a few hundred bytes, so a small window and a table
/// that stays in L1/L2 cache compress a timeline faster and even smaller
/// than level 1's defaults (512 KiB, 8K entries) or the agent writer's
/// (128 KiB, 4K). Measured on a merged timeline (zstd CLI, min of 6):
/// 1K entries 0.41 s and 45.0 MB per 300 MB, 4K entries 0.49 s and 46.7 MB.
const WINDOW_LOG: u32 = 17;
const HASH_LOG: u32 = 10;

/// Blocks queued for each compressor thread, and frames each has ready
/// for the writer: with the one it works on, at most three blocks of text
/// per thread are in flight.
const QUEUE_BLOCKS: usize = 1;

/// A compression context at `level`, tuned for timeline text at level 1.
fn compressor(level: i32) -> io::Result<zstd::bulk::Compressor<'static>> {
    let mut cctx = zstd::bulk::Compressor::new(level)?;
    // The fast levels (negative) take the same small window and table.
    if level <= 1 {
        cctx.set_parameter(zstd::zstd_safe::CParameter::WindowLog(WINDOW_LOG))?;
        cctx.set_parameter(zstd::zstd_safe::CParameter::HashLog(HASH_LOG))?;
    }
    Ok(cctx)
}

/// Compresses `text` as one frame into `out` (cleared first).
fn compress(
    cctx: &mut zstd::bulk::Compressor<'static>,
    text: &[u8],
    out: &mut Vec<u8>,
) -> io::Result<()> {
    out.clear();
    out.reserve(zstd::zstd_safe::compress_bound(text.len()));
    cctx.compress_to_buffer(text, out)?;
    Ok(())
}

/// Writes blocks of text as independent zstd frames, one per block, and
/// notes each frame's size: a second pass can then copy frames it does not
/// change as they are.
///
/// A file that is to be fsynced at the end (`sync`) has its writeback
/// started as it grows, every [`WRITEBACK_STEP`], so that the fsync finds
/// little left to write. Left to the kernel, a merged timeline smaller than
/// the dirty-page threshold (a tenth of RAM) is written only by that
/// fsync, while every CPU idles: 0.16 s of a 3.9 s merge of 16M records
/// here.
pub(super) struct FrameWriter {
    file: BufWriter<File>,
    level: i32,
    /// Made at the first frame compressed here: a writer behind
    /// [`Compressors`] only writes frames made elsewhere.
    cctx: Option<zstd::bulk::Compressor<'static>>,
    buf: Vec<u8>,
    sizes: Vec<u64>,
    sync: bool,
    /// Bytes written, and up to where writeback was started.
    written: u64,
    kicked: u64,
}

/// How much written output may wait before its writeback is started.
const WRITEBACK_STEP: u64 = 16 << 20;

impl FrameWriter {
    /// Creates `path`; `sync`: fsynced when finished (and written back as
    /// it grows).
    pub(super) fn create(path: &Path, level: i32, sync: bool) -> io::Result<Self> {
        Ok(FrameWriter {
            file: BufWriter::with_capacity(1 << 20, File::create(path)?),
            level,
            cctx: None,
            buf: Vec::new(),
            sizes: Vec::new(),
            sync,
            written: 0,
            kicked: 0,
        })
    }

    /// Compresses `text` as one frame.
    pub(super) fn frame(&mut self, text: &[u8]) -> io::Result<()> {
        let cctx = match &mut self.cctx {
            Some(c) => c,
            None => self.cctx.insert(compressor(self.level)?),
        };
        compress(cctx, text, &mut self.buf)?;
        let buf = std::mem::take(&mut self.buf);
        let r = self.compressed(&buf);
        self.buf = buf;
        r
    }

    /// Writes a frame compressed elsewhere.
    fn compressed(&mut self, frame: &[u8]) -> io::Result<()> {
        self.file.write_all(frame)?;
        self.wrote(frame.len() as u64)
    }

    /// Notes a frame of `len` bytes written; starts the writeback of what
    /// was written since the last one once that is a step's worth.
    fn wrote(&mut self, len: u64) -> io::Result<()> {
        self.sizes.push(len);
        self.written += len;
        if self.sync && self.written - self.kicked >= WRITEBACK_STEP {
            self.file.flush()?;
            // SAFETY: a plain system call on our open file. It only starts
            // writeback (no wait); failure changes nothing but speed.
            unsafe {
                libc::sync_file_range(
                    self.file.get_ref().as_raw_fd(),
                    self.kicked as libc::off64_t,
                    (self.written - self.kicked) as libc::off64_t,
                    libc::SYNC_FILE_RANGE_WRITE,
                );
            }
            self.kicked = self.written;
        }
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
        self.wrote(len)
    }

    /// Flushes (and fsyncs if made to); returns each frame's size.
    pub(super) fn finish(self) -> io::Result<Vec<u64>> {
        let file = self.file.into_inner().map_err(|e| e.into_error())?;
        if self.sync {
            file.sync_all()?;
        }
        Ok(self.sizes)
    }
}

/// A block's text and its frame, from a compressor thread to the writer.
type Done = (Vec<u8>, io::Result<Vec<u8>>);

/// `threads` compressor threads and the writer thread behind them.
///
/// Every channel is bounded, so a slow disk or compressor stops the merge
/// instead of queueing text. When any thread fails, the others stop as
/// their channels close, and the next [`Compressors::send`] returns the
/// writer's error.
pub(super) struct Compressors {
    /// One per compressor thread; None once finished.
    txs: Option<Vec<SyncSender<Vec<u8>>>>,
    /// The thread the next block goes to.
    next: usize,
    /// Text buffers the writer is done with, for reuse.
    free: Receiver<Vec<u8>>,
    workers: Vec<JoinHandle<()>>,
    writer: Option<JoinHandle<io::Result<Vec<u64>>>>,
}

impl Compressors {
    /// Starts `threads` (at least one) compressor threads writing to
    /// `writer`'s file.
    pub(super) fn start(writer: FrameWriter, threads: usize) -> io::Result<Self> {
        let level = writer.level;
        let threads = threads.max(1);
        let mut txs = Vec::with_capacity(threads);
        let mut outs = Vec::with_capacity(threads);
        let mut workers = Vec::with_capacity(threads);
        for n in 0..threads {
            let (tx, rx) = sync_channel::<Vec<u8>>(QUEUE_BLOCKS);
            let (out_tx, out_rx) = sync_channel::<Done>(QUEUE_BLOCKS);
            // Frame buffers come back from the writer to be filled again.
            let (spare_tx, spare_rx) = sync_channel::<Vec<u8>>(QUEUE_BLOCKS + 2);
            let mut cctx = compressor(level)?;
            let worker = std::thread::Builder::new()
                .name(format!("merge-zstd-{n}"))
                .spawn(move || {
                    // Frame buffers the writer gave back, all kept (as the
                    // sink keeps text buffers): no allocation per frame.
                    let mut stash: Vec<Vec<u8>> = Vec::new();
                    for text in rx {
                        stash.extend(spare_rx.try_iter());
                        let mut frame = stash.pop().unwrap_or_default();
                        let r = compress(&mut cctx, &text, &mut frame).map(|()| frame);
                        if out_tx.send((text, r)).is_err() {
                            break;
                        }
                    }
                })?;
            txs.push(tx);
            outs.push((out_rx, spare_tx));
            workers.push(worker);
        }
        let (free_tx, free) = sync_channel::<Vec<u8>>(3 * threads + 1);
        let writer = std::thread::Builder::new()
            .name("merge-write".to_string())
            .spawn(move || write_in_order(writer, outs, free_tx))?;
        Ok(Compressors {
            txs: Some(txs),
            next: 0,
            free,
            workers,
            writer: Some(writer),
        })
    }

    /// Queues `text` as the next frame.
    pub(super) fn send(&mut self, text: Vec<u8>) -> io::Result<()> {
        let sent = self.txs.as_ref().map(|txs| txs[self.next].send(text));
        match sent {
            Some(Ok(())) => {
                self.next = (self.next + 1) % self.workers.len();
                Ok(())
            }
            _ => Err(self
                .stop()
                .err()
                .unwrap_or_else(|| io::Error::other("compressor threads stopped"))),
        }
    }

    /// A text buffer the writer is done with, if one is waiting.
    pub(super) fn free_buffer(&self) -> Option<Vec<u8>> {
        self.free.try_recv().ok()
    }

    /// Waits for every frame to be written (and fsynced if the writer is
    /// to be); returns
    /// each frame's size.
    pub(super) fn finish(&mut self) -> io::Result<Vec<u64>> {
        self.stop()
    }

    /// Closes the queues and joins every thread; the writer's result.
    fn stop(&mut self) -> io::Result<Vec<u64>> {
        drop(self.txs.take());
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        match self.writer.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(io::Error::other("compressor thread panicked")),
            None => Err(io::Error::other("compressor threads stopped")),
        }
    }
}

impl Drop for Compressors {
    fn drop(&mut self) {
        // Unfinished (an error elsewhere): stop the threads; the caller
        // removes the file.
        if self.writer.is_some() {
            let _ = self.stop();
        }
    }
}

/// The writer thread: frames from the compressor threads in the order the
/// blocks were handed out (round-robin), into the file.
fn write_in_order(
    mut writer: FrameWriter,
    outs: Vec<(Receiver<Done>, SyncSender<Vec<u8>>)>,
    free: SyncSender<Vec<u8>>,
) -> io::Result<Vec<u64>> {
    // Blocks go out round-robin and each thread keeps their order, so the
    // next frame is always the next thread's next one; a thread that has
    // none is done, and so is every block after it.
    for (rx, spare) in outs.iter().cycle() {
        let Ok((text, frame)) = rx.recv() else { break };
        let frame = frame?;
        writer.compressed(&frame)?;
        let _ = spare.try_send(frame);
        let _ = free.try_send(text);
    }
    writer.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Blocks compressed by several threads come out in the order they
    /// went in, one frame each, with the sizes the file holds.
    #[test]
    fn threads_write_frames_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.zst");
        let writer = FrameWriter::create(&path, 1, false).unwrap();
        let mut c = Compressors::start(writer, 3).unwrap();
        let mut want = Vec::new();
        for n in 0..200u32 {
            // Blocks of different sizes, so threads finish out of order.
            let text: Vec<u8> = (0..(n % 7) * 5000 + 1)
                .flat_map(|i| format!("{n}\t{i}\n").into_bytes())
                .collect();
            want.extend_from_slice(&text);
            let mut buf = c.free_buffer().unwrap_or_default();
            buf.clear();
            buf.extend_from_slice(&text);
            c.send(buf).unwrap();
        }
        let sizes = c.finish().unwrap();
        assert_eq!(sizes.len(), 200);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(sizes.iter().sum::<u64>(), bytes.len() as u64);
        // Each frame on its own is a block, in order.
        let mut off = 0usize;
        let mut got = Vec::new();
        for &len in &sizes {
            let frame = &bytes[off..off + len as usize];
            got.extend(zstd::decode_all(frame).unwrap());
            off += len as usize;
        }
        assert_eq!(got, want);
    }
}
