//! Reading a spool back as TSV text: [`SpoolText`] decodes the records of
//! the decompressed stream into [`LogBatch`]es and formats them with the
//! writer's own `LineFormatter`, so the text is exactly what the TSV writer
//! would have written for the same ops, and every TSV reader works on it.

use super::{NO_FIRST_BYTE, NO_LAG, RECORD_BYTES, TAG_BATCH, TAG_CONTEXT, TAG_STRING};
use crate::op::OpKind;
use crate::oplog::batch::{FAILED, LogBatch, LogContext, NO_TIME, Slot, TEXT_KEY};
use crate::oplog::reader::MAX_LINE_BYTES;
use crate::oplog::record::{LineFormatter, MAX_FIELD_BYTES, header_line};
use crate::plan::KeyNaming;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Decompressed bytes read from the stream at a time.
const READ_BYTES: usize = 256 * 1024;

/// Most records one batch may claim: far above the writer's
/// `SEND_BATCH_RECORDS`, low enough that a corrupt count cannot make the
/// reader reserve gigabytes.
const MAX_BATCH_RECORDS: u32 = 1 << 20;

/// Slots reserved for a batch before its records are read: a batch's
/// count is only a claim until its records are there, so the rest grow
/// as they come (the writer's batches are `SEND_BATCH_RECORDS`, 256).
const RESERVE_RECORDS: usize = 4096;

/// Most bytes of text keys and errors one batch may hold: the writer's
/// batches (256 records, each field cut to [`MAX_FIELD_BYTES`]) hold at
/// most 32 MiB, and `SpoolWriter` cuts larger batches into blocks of 256
/// records. Above it a batch is corrupt: its text, decoded whole, could
/// otherwise be made terabytes by a few bytes of zstd.
pub(super) const MAX_BATCH_TEXT_BYTES: usize = 64 << 20;

/// Most bytes the string and context tables of one spool may hold
/// (strings, and each context's copies of its three): a spool's tables
/// are its agent id, stages, key prefixes and endpoints, a few KiB.
const MAX_TABLE_BYTES: usize = 64 << 20;

/// The signed value of a zigzag-encoded varint.
#[inline]
fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Whether varint `f` of a record (see the module docs of `spool`) is
/// left out by its flags.
#[inline]
fn absent(flags: u8, f: usize) -> bool {
    (f == 2 && flags & NO_FIRST_BYTE != 0)
        || (f == 4 && flags & TEXT_KEY != 0)
        || (f == 5 && flags & NO_LAG != 0)
}

/// Decodes a record's fixed part (flags, op, its varints into `v`) from
/// `rec`, which holds at least [`RECORD_BYTES`] bytes (the most a fixed part
/// takes); the bytes it used, or None for a varint longer than 10 bytes.
#[inline]
pub(super) fn decode_fixed(rec: &[u8], v: &mut [u64; 10]) -> Option<usize> {
    let rec = &rec[..RECORD_BYTES];
    let flags = rec[0];
    let mut at = 2;
    for (f, slot) in v.iter_mut().enumerate() {
        if absent(flags, f) {
            continue;
        }
        let mut x = 0u64;
        let mut i = 0;
        loop {
            // In bounds: at most 10 varints of at most 10 bytes follow the
            // two head bytes, and RECORD_BYTES is that.
            let b = rec[at];
            at += 1;
            x |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                break;
            }
            i += 1;
            if i == 10 {
                return None;
            }
        }
        *slot = x;
    }
    Some(at)
}

/// A spool's records as TSV text, header first.
pub(crate) struct SpoolText<R> {
    path: PathBuf,
    input: R,
    /// Decompressed bytes; `raw[pos..]` not decoded yet.
    raw: Vec<u8>,
    pos: usize,
    /// Bytes of the stream before `raw[0]` (for error offsets).
    consumed: u64,
    eof: bool,
    /// A read error, returned once the text before it is out.
    pending: Option<io::Error>,
    /// TSV text; `text[out..]` not handed out yet.
    text: Vec<u8>,
    out: usize,
    format: LineFormatter,
    strings: Vec<Box<str>>,
    contexts: Vec<Arc<LogContext>>,
    /// Bytes held by `strings` and `contexts`, at most [`MAX_TABLE_BYTES`].
    table_bytes: usize,
    /// Records decoded (for error locations: record n is line n + 1).
    records: u64,
    /// The error that ended decoding, handed out after the text before it.
    deferred: Option<io::Error>,
    /// Decoding has ended (cleanly or not).
    done: bool,
    /// The op kind of each op byte.
    ops: [Option<OpKind>; 256],
}

impl<R: Read> SpoolText<R> {
    /// `input` is the decompressed stream after the header.
    pub(crate) fn new(path: &Path, input: R) -> Self {
        SpoolText {
            path: path.to_path_buf(),
            input,
            raw: Vec::with_capacity(READ_BYTES),
            pos: 0,
            consumed: 0,
            eof: false,
            pending: None,
            text: header_line().into_bytes(),
            out: 0,
            format: LineFormatter::new(),
            strings: Vec::new(),
            contexts: Vec::new(),
            table_bytes: 0,
            records: 0,
            deferred: None,
            done: false,
            ops: {
                let mut ops = [None; 256];
                for k in OpKind::ALL {
                    ops[k as usize] = Some(k);
                }
                ops
            },
        }
    }

    /// A located error: the file, the record (the line it would be, the
    /// header being line 1) and the byte of the decompressed stream.
    fn corrupt(&self, at: usize, what: impl std::fmt::Display) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{}: spool record {} (line {}, byte {} of the decompressed spool): {what}",
                self.path.display(),
                self.records + 1,
                self.records + 2,
                self.consumed + at as u64
            ),
        )
    }

    /// Makes `raw[pos..pos + n]` available; false if the stream ends (or
    /// fails: the error is kept in `pending`) first.
    fn need(&mut self, n: usize) -> bool {
        while self.raw.len() - self.pos < n {
            if self.eof {
                return false;
            }
            if self.pos > 0 {
                self.raw.drain(..self.pos);
                self.consumed += self.pos as u64;
                self.pos = 0;
            }
            let len = self.raw.len();
            self.raw.resize(len + READ_BYTES.max(n), 0);
            match self.input.read(&mut self.raw[len..]) {
                Ok(0) => {
                    self.raw.truncate(len);
                    self.eof = true;
                }
                Ok(k) => self.raw.truncate(len + k),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => self.raw.truncate(len),
                Err(e) => {
                    self.raw.truncate(len);
                    self.eof = true;
                    self.pending = Some(e);
                }
            }
        }
        true
    }

    /// `n` bytes at `pos`, advanced over; None if the stream ends first.
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if !self.need(n) {
            return None;
        }
        let at = self.pos;
        self.pos += n;
        Some(&self.raw[at..at + n])
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4")))
    }

    /// A LEB128 varint; None if the stream ends first.
    fn varint(&mut self, rec_at: usize) -> io::Result<Option<u64>> {
        let mut v = 0u64;
        for i in 0..10 {
            let Some(b) = self.u8() else {
                return Ok(None);
            };
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(Some(v));
            }
        }
        Err(self.corrupt(rec_at, "varint longer than 10 bytes"))
    }

    /// A `len: u32` and UTF-8 text of at most `max` bytes.
    fn text_field(&mut self, max: usize) -> io::Result<Option<String>> {
        let at = self.pos;
        let Some(len) = self.u32() else {
            return Ok(None);
        };
        if len as usize > max {
            return Err(self.corrupt(at, format!("text of {len} bytes (corrupt length)")));
        }
        let Some(b) = self.take(len as usize) else {
            return Ok(None);
        };
        let text = std::str::from_utf8(b).map(str::to_string);
        text.map(Some)
            .map_err(|e| self.corrupt(at, format!("text is not UTF-8: {e}")))
    }

    /// The stream ended (or failed) inside a block: the error to report.
    fn cut_short(&mut self) -> io::Error {
        match self.pending.take() {
            Some(e) => self.corrupt(
                self.raw.len(),
                format!("spool cut short (records before it are kept): {e}"),
            ),
            None => self.corrupt(self.pos, "spool ends inside a block (cut short?)"),
        }
    }

    /// Decodes the next block, formatting a batch's records into `text`.
    /// Ok(false) at a clean end of the stream.
    fn block(&mut self) -> io::Result<bool> {
        let at = self.pos;
        let Some(tag) = self.u8() else {
            return match self.pending.take() {
                Some(e) => Err(self.corrupt(at, format!("truncated or corrupt zstd stream: {e}"))),
                None => Ok(false),
            };
        };
        match tag {
            TAG_STRING => match self.text_field(MAX_LINE_BYTES)? {
                Some(s) => {
                    self.hold_table(at, s.len())?;
                    self.strings.push(s.into());
                }
                None => return Err(self.cut_short()),
            },
            TAG_CONTEXT => self.context(at)?,
            TAG_BATCH => self.batch(at)?,
            t => return Err(self.corrupt(at, format!("unknown block tag {t}"))),
        }
        Ok(true)
    }

    /// Counts `bytes` more of the string and context tables against
    /// [`MAX_TABLE_BYTES`] (each entry with its own overhead).
    fn hold_table(&mut self, at: usize, bytes: usize) -> io::Result<()> {
        self.table_bytes += bytes + 64;
        if self.table_bytes > MAX_TABLE_BYTES {
            return Err(self.corrupt(
                at,
                format!("string and context tables over {MAX_TABLE_BYTES} bytes (corrupt spool)"),
            ));
        }
        Ok(())
    }

    fn string_ref(&self, at: usize, id: u32) -> io::Result<&str> {
        self.strings
            .get(id as usize)
            .map(|s| &**s)
            .ok_or_else(|| self.corrupt(at, format!("string {id} not defined")))
    }

    fn context(&mut self, at: usize) -> io::Result<()> {
        let Some(b) = self.take(3 * 4 + 1 + 4) else {
            return Err(self.cut_short());
        };
        let word = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4"));
        let (client, stage, prefix, width, fanout) = (word(0), word(4), word(8), b[12], word(13));
        if width == 0 || width > KeyNaming::MAX_WIDTH {
            return Err(self.corrupt(at, format!("key width {width}")));
        }
        let naming = KeyNaming {
            width,
            fanout: (fanout != 0).then_some(fanout),
        };
        let client: Box<[u8]> = self.string_ref(at, client)?.as_bytes().into();
        let stage: Box<[u8]> = self.string_ref(at, stage)?.as_bytes().into();
        let prefix: Box<[u8]> = self.string_ref(at, prefix)?.as_bytes().into();
        self.hold_table(at, client.len() + stage.len() + prefix.len())?;
        let ctx = LogContext::from_parts(client, stage, prefix, naming);
        self.contexts.push(Arc::new(ctx));
        Ok(())
    }

    /// A batch block: its records formatted into `text`. A stream cut
    /// inside it keeps its whole records, then reports the cut.
    fn batch(&mut self, at: usize) -> io::Result<()> {
        let Some(b) = self.take(4 + 8 + 4 + 2) else {
            return Err(self.cut_short());
        };
        let ctx = u32::from_le_bytes(b[0..4].try_into().expect("4"));
        let first_idx = u64::from_le_bytes(b[4..12].try_into().expect("8"));
        let n = u32::from_le_bytes(b[12..16].try_into().expect("4"));
        let n_endpoints = u16::from_le_bytes(b[16..18].try_into().expect("2"));
        let context = self
            .contexts
            .get(ctx as usize)
            .cloned()
            .ok_or_else(|| self.corrupt(at, format!("context {ctx} not defined")))?;
        if n > MAX_BATCH_RECORDS {
            return Err(self.corrupt(at, format!("batch of {n} records (corrupt count)")));
        }
        let mut endpoints = Vec::with_capacity(usize::from(n_endpoints));
        for _ in 0..n_endpoints {
            let Some(id) = self.u32() else {
                return Err(self.cut_short());
            };
            endpoints.push(Box::<str>::from(self.string_ref(at, id)?));
        }
        let mut slots = Vec::with_capacity((n as usize).min(RESERVE_RECORDS));
        let (mut text_keys, mut errors) = (Vec::new(), Vec::new());
        let mut text_bytes = 0usize;
        let mut prev = 0i64;
        let mut cut = None;
        for i in 0..n {
            let rec_at = self.pos;
            let mut v = [0u64; 10];
            // Nearly every record: its fixed part is in memory, so it is
            // decoded from the slice, without a bounds check per byte (the
            // reader's main cost before). Near the end of what is
            // decompressed, byte by byte.
            let (flags, op_byte) = if self.raw.len() - self.pos >= RECORD_BYTES {
                let rec = &self.raw[self.pos..self.pos + RECORD_BYTES];
                match decode_fixed(rec, &mut v) {
                    Some(used) => {
                        self.pos += used;
                        (rec[0], rec[1])
                    }
                    None => return Err(self.corrupt(rec_at, "varint longer than 10 bytes")),
                }
            } else {
                let Some(head) = self.take(2) else {
                    cut = Some(self.cut_short());
                    break;
                };
                let (flags, op_byte) = (head[0], head[1]);
                let mut short = false;
                for (f, slot) in v.iter_mut().enumerate() {
                    if absent(flags, f) {
                        continue;
                    }
                    match self.varint(rec_at)? {
                        Some(x) => *slot = x,
                        None => {
                            short = true;
                            break;
                        }
                    }
                }
                if short {
                    cut = Some(self.cut_short());
                    break;
                }
                (flags, op_byte)
            };
            let narrow = |x: u64, what: &str| {
                u32::try_from(x).map_err(|_| self.corrupt(rec_at, format!("{what} {x} too large")))
            };
            let thread = narrow(v[6], "thread")?;
            let retries = narrow(v[7], "retries")?;
            let n_objects = narrow(v[8], "n_objects")?;
            let endpoint = u16::try_from(v[9])
                .map_err(|_| self.corrupt(rec_at, format!("endpoint {} too large", v[9])))?;
            let start_ns = prev.wrapping_add(unzigzag(v[0]));
            let slot = Slot {
                start_ns,
                end_ns: start_ns.wrapping_add(unzigzag(v[1])),
                first_byte_ns: if flags & NO_FIRST_BYTE != 0 {
                    NO_TIME
                } else {
                    start_ns.wrapping_add(unzigzag(v[2]))
                },
                bytes: v[3],
                key: v[4],
                lag_ns: if flags & NO_LAG != 0 {
                    crate::oplog::batch::NO_LAG
                } else {
                    v[5]
                },
                thread,
                retries,
                n_objects,
                endpoint,
                op: OpKind::ALL[0],
                flags: flags & !(NO_FIRST_BYTE | NO_LAG),
            };
            prev = start_ns;
            let Some(op) = self.ops[usize::from(op_byte)] else {
                return Err(self.corrupt(rec_at, format!("op {op_byte} unknown")));
            };
            if usize::from(endpoint) >= endpoints.len() {
                return Err(self.corrupt(rec_at, format!("endpoint {endpoint} not in the batch")));
            }
            if flags & !(NO_FIRST_BYTE | NO_LAG | TEXT_KEY | FAILED | crate::oplog::batch::WARMUP)
                != 0
            {
                return Err(self.corrupt(rec_at, format!("flags {flags:#x} unknown")));
            }
            if flags & TEXT_KEY != 0 {
                match self.text_field(MAX_FIELD_BYTES)? {
                    Some(k) => {
                        text_bytes += k.len();
                        text_keys.push((i, k));
                    }
                    None => {
                        cut = Some(self.cut_short());
                        break;
                    }
                }
            }
            if flags & FAILED != 0 {
                match self.text_field(MAX_FIELD_BYTES)? {
                    Some(e) => {
                        text_bytes += e.len();
                        errors.push((i, e));
                    }
                    None => {
                        cut = Some(self.cut_short());
                        break;
                    }
                }
            }
            if text_bytes > MAX_BATCH_TEXT_BYTES {
                let msg = format!(
                    "batch holds over {MAX_BATCH_TEXT_BYTES} bytes of keys and errors (corrupt spool)"
                );
                return Err(self.corrupt(rec_at, msg));
            }
            slots.push(Slot { op, ..slot });
            self.records += 1;
        }
        let batch = LogBatch::from_parts(context, first_idx, slots, endpoints, text_keys, errors);
        self.format.batch(&batch, &mut self.text);
        match cut {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl<R: Read> Read for SpoolText<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.out < self.text.len() {
                let n = buf.len().min(self.text.len() - self.out);
                buf[..n].copy_from_slice(&self.text[self.out..self.out + n]);
                self.out += n;
                return Ok(n);
            }
            self.text.clear();
            self.out = 0;
            // An error goes out after the records before it.
            if let Some(e) = self.deferred.take() {
                return Err(e);
            }
            if self.done {
                return Ok(0);
            }
            match self.block() {
                Ok(true) => {}
                Ok(false) => self.done = true,
                Err(e) => {
                    self.done = true;
                    self.deferred = Some(e);
                }
            }
        }
    }
}
