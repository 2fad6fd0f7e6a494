//! Lines held where decompression put them, and their sort keys.
//!
//! A log's text sits in [`Chunk`]s with stable numbers ([`Chunks`]); an
//! [`Entry`] is one line's key (start, client, idx) and where the line is.
//! The merge sorts and compares entries, never the lines themselves, and a
//! [`Cursor`] remembers the key of the last line written, to tell a late
//! line. Used by the sources, the sink, and the second pass.

use super::line::LineKey;
use std::cmp::Ordering;

/// Free buffers kept for reuse.
const POOL_CHUNKS: usize = 4;

/// A buffer of text and how many lines handed out later are in it.
#[derive(Debug, Default)]
pub(super) struct Chunk {
    pub data: Vec<u8>,
    pub live: u32,
}

impl Chunk {
    /// A chunk of text appended to (`data.len()` is what is used).
    pub(super) fn growing(data: Vec<u8>) -> Self {
        Chunk { data, live: 0 }
    }
}

/// A set of chunks with stable numbers, and spare buffers.
#[derive(Debug, Default)]
pub(super) struct Chunks {
    pub slots: Vec<Chunk>,
    free_slots: Vec<u16>,
    /// Free buffers, already touched, for lines of other layouts and for
    /// compaction (text chunks go back to the decompressor).
    pool: Vec<Vec<u8>>,
}

impl Chunks {
    /// A chunk of at least `len` bytes (contents unspecified).
    pub(super) fn take(&mut self, len: usize) -> u16 {
        let mut data = self.pool.pop().unwrap_or_default();
        if data.len() < len {
            // Touches the pages once; a recycled buffer is already touched.
            data.resize(len, 0);
        }
        self.put(data)
    }

    /// A chunk holding `data` (text from the log).
    pub(super) fn put(&mut self, data: Vec<u8>) -> u16 {
        let chunk = Chunk { data, live: 0 };
        match self.free_slots.pop() {
            Some(i) => {
                self.slots[usize::from(i)] = chunk;
                i
            }
            None => {
                self.slots.push(chunk);
                u16::try_from(self.slots.len() - 1).expect("chunks are compacted long before this")
            }
        }
    }

    /// Frees chunk `i`, returning its buffer.
    pub(super) fn release(&mut self, i: u16) -> Vec<u8> {
        self.free_slots.push(i);
        std::mem::take(&mut self.slots[usize::from(i)].data)
    }

    /// Keeps a free buffer for [`Chunks::take`], if there is room.
    pub(super) fn keep(&mut self, data: Vec<u8>, chunk_bytes: usize) {
        if self.pool.len() < POOL_CHUNKS && data.len() <= 2 * chunk_bytes {
            self.pool.push(data);
        }
    }

    pub(super) fn in_use(&self) -> usize {
        self.slots.len() - self.free_slots.len()
    }
}

/// A line in a chunk, and its key.
#[derive(Clone, Copy, Debug)]
pub(super) struct Entry {
    pub start: i64,
    pub idx: u64,
    /// The line, without line ending, is `chunks[chunk].data[off..off + len]`.
    pub off: u32,
    pub len: u32,
    pub chunk: u16,
    /// The client id, relative to the line.
    pub client_off: u16,
    pub client_len: u32,
}

impl Entry {
    pub(super) fn new(chunk: u16, off: usize, len: usize, key: LineKey) -> Self {
        Entry {
            start: key.start,
            idx: key.idx,
            off: off as u32,
            len: len as u32,
            chunk,
            // The fourth column: after at most 3 + 20 + 20 + 13 bytes.
            client_off: key.client_off as u16,
            client_len: key.client_len,
        }
    }

    #[inline]
    pub(super) fn line<'a>(&self, chunks: &'a [Chunk]) -> &'a [u8] {
        let off = self.off as usize;
        &chunks[usize::from(self.chunk)].data[off..off + self.len as usize]
    }

    /// Appends `line` (this entry's line, read from wherever it is now) to
    /// `text`, the text of chunk 0 of a store of kept lines, and returns
    /// the entry pointing there.
    pub(super) fn kept_in(&self, line: &[u8], text: &mut Vec<u8>) -> Entry {
        let off = text.len();
        text.extend_from_slice(line);
        Entry {
            off: off as u32,
            chunk: 0,
            ..*self
        }
    }

    #[inline]
    pub(super) fn client<'a>(&self, chunks: &'a [Chunk]) -> &'a [u8] {
        let from = self.off as usize + usize::from(self.client_off);
        &chunks[usize::from(self.chunk)].data[from..from + self.client_len as usize]
    }
}

/// Asks the CPU to bring `bytes` (the first 512 of them) into cache.
#[inline(always)]
pub(super) fn prefetch(bytes: &[u8]) {
    prefetch_raw(bytes.as_ptr(), bytes.len());
}

/// Asks the CPU to bring `len` bytes (at most 512) at `at` into cache.
/// Only a hint: nothing is read, so any address is fine.
#[inline(always)]
pub(super) fn prefetch_raw(at: *const u8, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let start = at as usize;
        let end = start + len.min(512);
        let mut line = start & !63;
        while line < end {
            // SAFETY: a prefetch never faults and reads nothing.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(line as *const i8) };
            line += 64;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (at, len);
}

/// Entries prefetched ahead of the head: two cache lines.
pub(super) const ENTRIES_AHEAD: usize = 4;

/// Merge order of two entries, each in its own chunks.
#[inline]
pub(super) fn cmp_entries(
    a: &Entry,
    a_chunks: &[Chunk],
    b: &Entry,
    b_chunks: &[Chunk],
) -> Ordering {
    match a.start.cmp(&b.start) {
        Ordering::Equal => a
            .client(a_chunks)
            .cmp(b.client(b_chunks))
            .then(a.idx.cmp(&b.idx)),
        o => o,
    }
}

/// Sorts entries in merge order, keeping the order of equal ones.
pub(super) fn sort_entries(entries: &mut [Entry], chunks: &[Chunk]) {
    entries.sort_by(|a, b| cmp_entries(a, chunks, b, chunks));
}

/// Sorts blocks of entries in merge order, keeping the order of equal
/// ones, with buffers kept from one block to the next. Sorts integers
/// (start, then position), which is several times faster than sorting the
/// entries by a comparison; only lines with equal starts, rare, are then
/// ordered by client id and index.
#[derive(Debug, Default)]
pub(super) struct Sorter {
    keys: Vec<u128>,
    out: Vec<Entry>,
}

impl Sorter {
    pub(super) fn sort(&mut self, entries: &mut Vec<Entry>, chunks: &[Chunk]) {
        if entries
            .windows(2)
            .all(|w| cmp_entries(&w[0], chunks, &w[1], chunks) != Ordering::Greater)
        {
            return;
        }
        // Start, order-preserving as unsigned, then position.
        let key = |start: i64, i: usize| (u128::from(start as u64 ^ (1 << 63)) << 64) | i as u128;
        let pos = |k: u128| k as u64 as usize;
        self.keys.clear();
        self.keys
            .extend(entries.iter().enumerate().map(|(i, e)| key(e.start, i)));
        self.keys.sort_unstable();
        let mut i = 0;
        while i < self.keys.len() {
            let start = self.keys[i] >> 64;
            let mut j = i + 1;
            while j < self.keys.len() && self.keys[j] >> 64 == start {
                j += 1;
            }
            if j - i > 1 {
                self.keys[i..j].sort_by(|&a, &b| {
                    let (x, y) = (&entries[pos(a)], &entries[pos(b)]);
                    cmp_entries(x, chunks, y, chunks).then(a.cmp(&b))
                });
            }
            i = j;
        }
        self.out.clear();
        self.out.extend(self.keys.iter().map(|&k| entries[pos(k)]));
        std::mem::swap(entries, &mut self.out);
    }
}

/// The key of the last line written: a line read after it with a smaller
/// key is late.
#[derive(Debug, Default)]
pub(super) struct Cursor {
    set: bool,
    start: i64,
    idx: u64,
    client: Vec<u8>,
}

impl Cursor {
    #[inline]
    pub(super) fn set(&mut self, e: &Entry, chunks: &[Chunk]) {
        self.set = true;
        self.start = e.start;
        self.idx = e.idx;
        let client = e.client(chunks);
        if self.client != client {
            self.client.clear();
            self.client.extend_from_slice(client);
        }
    }

    /// The cursor is past `e`: `e` sorts before it.
    #[inline]
    pub(super) fn is_past(&self, e: &Entry, chunks: &[Chunk]) -> bool {
        self.set && self.cmp_entry(e, chunks) == Ordering::Greater
    }

    /// The cursor against `e` (unset: before everything).
    #[inline]
    pub(super) fn cmp_entry(&self, e: &Entry, chunks: &[Chunk]) -> Ordering {
        if !self.set {
            return Ordering::Less;
        }
        match self.start.cmp(&e.start) {
            Ordering::Equal => (self.client.as_slice(), self.idx).cmp(&(e.client(chunks), e.idx)),
            o => o,
        }
    }
}
