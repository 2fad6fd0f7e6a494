//! The text of one log, decompressed into chunks that end at line ends,
//! on a thread of its own (or inline): so that decompression runs beside
//! the merging, not in turn with it.

use crate::oplog::reader::MAX_LINE_BYTES;
use std::io::{self, Read};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;

/// Chunks decompressed ahead of the merge, per log.
const AHEAD_CHUNKS: usize = 2;

/// A chunk of text: `data[..len]` is whole lines, except at the end of the
/// log (a last line without line ending), or for a line longer than
/// [`MAX_LINE_BYTES`] (which the reader of the chunk rejects).
#[derive(Debug)]
pub(super) struct Text {
    pub data: Vec<u8>,
    pub len: usize,
}

/// Cuts a stream into [`Text`] chunks.
pub(super) struct Chunker {
    input: Box<dyn Read + Send>,
    chunk_bytes: usize,
    /// The start of a line cut by the end of the previous chunk.
    carry: Vec<u8>,
    /// A read error, returned after the text before it.
    pending: Option<io::Error>,
    done: bool,
}

impl Chunker {
    /// The next chunk, written into `buf` (reused); None at the end, an
    /// error after the text before it (whole lines: a line cut by the error
    /// is lost).
    fn next(&mut self, mut buf: Vec<u8>) -> Option<io::Result<Text>> {
        if let Some(e) = self.pending.take() {
            return Some(Err(e));
        }
        if self.done {
            return None;
        }
        let want = self.chunk_bytes.max(2 * self.carry.len());
        if buf.len() < want {
            buf.resize(want, 0);
        }
        let mut len = self.carry.len();
        buf[..len].copy_from_slice(&self.carry);
        self.carry.clear();
        loop {
            let mut error = None;
            while len < buf.len() {
                match self.input.read(&mut buf[len..]) {
                    Ok(0) => {
                        self.done = true;
                        break;
                    }
                    Ok(n) => len += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        self.done = true;
                        error = Some(e);
                        break;
                    }
                }
            }
            if let Some(e) = error {
                let whole = buf[..len]
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .map_or(0, |p| p + 1);
                if whole == 0 {
                    return Some(Err(e));
                }
                self.pending = Some(e);
                return Some(Ok(Text {
                    data: buf,
                    len: whole,
                }));
            }
            if self.done {
                return (len > 0).then_some(Ok(Text { data: buf, len }));
            }
            match buf[..len].iter().rposition(|&b| b == b'\n') {
                Some(p) => {
                    self.carry.extend_from_slice(&buf[p + 1..len]);
                    return Some(Ok(Text {
                        data: buf,
                        len: p + 1,
                    }));
                }
                // A line longer than the buffer: grow it, up to one longer
                // than any line allowed (which the reader then rejects).
                None if len > MAX_LINE_BYTES => return Some(Ok(Text { data: buf, len })),
                None => buf.resize(2 * buf.len(), 0),
            }
        }
    }
}

/// Where a log's chunks come from.
pub(super) enum TextSource {
    Inline {
        chunker: Chunker,
        spare: Option<Vec<u8>>,
    },
    Thread {
        /// None once dropped (to stop the thread).
        rx: Option<Receiver<io::Result<Text>>>,
        free: SyncSender<Vec<u8>>,
        thread: Option<JoinHandle<()>>,
    },
}

impl std::fmt::Debug for TextSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TextSource::Inline { .. } => "TextSource::Inline",
            TextSource::Thread { .. } => "TextSource::Thread",
        })
    }
}

impl TextSource {
    /// Chunks of about `chunk_bytes` of `input`, decompressed on a thread
    /// of its own if `thread`.
    pub(super) fn new(
        input: Box<dyn Read + Send>,
        chunk_bytes: usize,
        thread: bool,
    ) -> io::Result<Self> {
        let mut chunker = Chunker {
            input,
            chunk_bytes,
            carry: Vec::new(),
            pending: None,
            done: false,
        };
        if !thread {
            return Ok(TextSource::Inline {
                chunker,
                spare: None,
            });
        }
        let (tx, rx) = sync_channel::<io::Result<Text>>(AHEAD_CHUNKS);
        let (free, free_rx) = sync_channel::<Vec<u8>>(AHEAD_CHUNKS + 1);
        let thread = std::thread::Builder::new()
            .name("merge-read".to_string())
            .spawn(move || {
                loop {
                    let buf = free_rx.try_recv().unwrap_or_default();
                    let Some(text) = chunker.next(buf) else { break };
                    if tx.send(text).is_err() {
                        break;
                    }
                }
            })?;
        Ok(TextSource::Thread {
            rx: Some(rx),
            free,
            thread: Some(thread),
        })
    }

    /// The next chunk; None at the end of the log.
    pub(super) fn next(&mut self) -> Option<io::Result<Text>> {
        match self {
            TextSource::Inline { chunker, spare } => chunker.next(spare.take().unwrap_or_default()),
            TextSource::Thread { rx, .. } => rx.as_ref()?.recv().ok(),
        }
    }

    /// A chunk's buffer, once no line needs it, for reuse; returned if
    /// the decompressor has enough.
    pub(super) fn give_back(&mut self, buf: Vec<u8>) -> Option<Vec<u8>> {
        match self {
            TextSource::Inline { spare, .. } => match spare {
                None => {
                    *spare = Some(buf);
                    None
                }
                Some(_) => Some(buf),
            },
            TextSource::Thread { free, .. } => match free.try_send(buf) {
                Ok(()) => None,
                Err(TrySendError::Full(b) | TrySendError::Disconnected(b)) => Some(b),
            },
        }
    }
}

impl Drop for TextSource {
    fn drop(&mut self) {
        if let TextSource::Thread { rx, thread, .. } = self {
            // Its next send fails, and it ends.
            drop(rx.take());
            if let Some(t) = thread.take() {
                let _ = t.join();
            }
        }
    }
}
