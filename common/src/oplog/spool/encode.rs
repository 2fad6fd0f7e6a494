//! Writing a spool: [`LogBatch`]es as compact varint records (see the
//! module docs of `spool` for the layout), compressed per ~1 MiB into
//! independent zstd frames, as the TSV writer does, so a file only grows by
//! whole frames and any prefix of it (the controller's copy during a
//! stage, or what a killed agent leaves) reads on its own.

use super::{NO_FIRST_BYTE, NO_LAG, RECORD_BYTES, TAG_BATCH, TAG_CONTEXT, TAG_STRING, header};
use crate::oplog::batch::{FAILED, LogBatch, LogContext, NO_TIME, TEXT_KEY};
use crate::oplog::frames::FrameFile;
use crate::oplog::record::cut;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;

/// zstd level of spools. Binary records are ~3x smaller than their TSV
/// lines and mostly zero high bytes; see docs/oplog.md ("Spool") for the
/// levels measured.
pub(crate) const SPOOL_ZSTD_LEVEL: i32 = -3;
/// Window and hash table (log2): as the TSV writer's, a small table that
/// stays in L2 cache; records repeat within a few hundred bytes.
const SPOOL_WINDOW_LOG: u32 = 17;
const SPOOL_HASH_LOG: u32 = 12;

/// Interns a context's strings and the endpoints once per file.
#[derive(Default)]
struct Tables {
    strings: HashMap<Box<[u8]>, u32>,
    contexts: HashMap<ContextKey, u32>,
    /// The last context seen and its number: batches of one stage share
    /// one `Arc`, so a pointer compare finds it. The clone keeps the
    /// pointer from being reused by another context.
    last: Option<(Arc<LogContext>, u32)>,
    /// Per batch: its endpoints' string numbers.
    endpoint_ids: Vec<u32>,
}

#[derive(Hash, PartialEq, Eq)]
struct ContextKey {
    client: u32,
    stage: u32,
    prefix: u32,
    width: u8,
    fanout: u32,
}

impl Tables {
    /// The number of string `s`, defined in `out` if new.
    fn string(&mut self, s: &[u8], out: &mut Vec<u8>) -> u32 {
        if let Some(&id) = self.strings.get(s) {
            return id;
        }
        let id = self.strings.len() as u32;
        out.push(TAG_STRING);
        out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        out.extend_from_slice(s);
        self.strings.insert(s.into(), id);
        id
    }

    /// The number of `ctx`, defined in `out` if new.
    fn context(&mut self, ctx: &Arc<LogContext>, out: &mut Vec<u8>) -> u32 {
        if let Some((last, id)) = &self.last
            && Arc::ptr_eq(last, ctx)
        {
            return *id;
        }
        let (prefix, naming) = ctx.key_parts();
        let key = ContextKey {
            client: self.string(&ctx.client_id, out),
            stage: self.string(&ctx.stage, out),
            prefix: self.string(prefix, out),
            width: naming.width,
            fanout: naming.fanout.unwrap_or(0),
        };
        let next = self.contexts.len() as u32;
        let id = *self.contexts.entry(key).or_insert_with_key(|k| {
            out.push(TAG_CONTEXT);
            for v in [k.client, k.stage, k.prefix] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            out.push(k.width);
            out.extend_from_slice(&k.fanout.to_le_bytes());
            next
        });
        self.last = Some((ctx.clone(), id));
        id
    }
}

/// `v` with its sign in the low bit, so small negatives are small.
#[inline]
pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Writes `v` as a LEB128 varint at `r[n..]`; the position after it.
#[inline]
fn put(r: &mut [u8; RECORD_BYTES], mut n: usize, mut v: u64) -> usize {
    while v >= 0x80 {
        r[n] = v as u8 | 0x80;
        v >>= 7;
        n += 1;
    }
    r[n] = v as u8;
    n + 1
}

/// Appends `s` as `len: u32` and bytes, cut as the TSV writer cuts fields
/// (so the text made from it is the same, and a record stays bounded).
#[inline]
fn push_text(s: &str, out: &mut Vec<u8>) {
    let s = cut(s);
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Most records one batch block holds: the writer's batches
/// (`SEND_BATCH_RECORDS`, 256) are one block each; a larger `LogBatch` is
/// cut into blocks, so that a block's keys and errors (each cut to
/// `MAX_FIELD_BYTES`) stay under what the decoder reads as one batch
/// (`decode::MAX_BATCH_TEXT_BYTES`).
pub(super) const BLOCK_RECORDS: usize = 256;

/// Appends the blocks of `batch` (string and context definitions it needs
/// first, then the batch in blocks of at most [`BLOCK_RECORDS`]).
fn encode_batch(tables: &mut Tables, batch: &LogBatch, out: &mut Vec<u8>) {
    let ctx = tables.context(&batch.context, out);
    tables.endpoint_ids.clear();
    for e in &batch.endpoints {
        let id = tables.string(e.as_bytes(), out);
        tables.endpoint_ids.push(id);
    }
    let (mut keys, mut errors) = (batch.text_keys.iter(), batch.errors.iter());
    for (block, slots) in batch.slots.chunks(BLOCK_RECORDS).enumerate() {
        let base = block * BLOCK_RECORDS;
        out.push(TAG_BATCH);
        out.extend_from_slice(&ctx.to_le_bytes());
        out.extend_from_slice(&(batch.first_idx + base as u64).to_le_bytes());
        out.extend_from_slice(&(slots.len() as u32).to_le_bytes());
        out.extend_from_slice(&(tables.endpoint_ids.len() as u16).to_le_bytes());
        for id in &tables.endpoint_ids {
            out.extend_from_slice(&id.to_le_bytes());
        }
        out.reserve(slots.len() * RECORD_BYTES);
        let mut prev = 0i64;
        for (j, s) in slots.iter().enumerate() {
            let i = base + j;
            let mut flags = s.flags;
            let first_byte = if s.first_byte_ns == NO_TIME {
                flags |= NO_FIRST_BYTE;
                0
            } else {
                s.first_byte_ns.wrapping_sub(s.start_ns)
            };
            let lag = if s.lag_ns == crate::oplog::batch::NO_LAG {
                flags |= NO_LAG;
                0
            } else {
                s.lag_ns
            };
            // flags and op, then the fields as LEB128 varints (signed ones
            // zigzag-encoded): ~20 bytes instead of 64 fixed, which is what
            // zstd's time goes by.
            let mut r = [0u8; RECORD_BYTES];
            r[0] = flags;
            r[1] = s.op as u8;
            let mut n = 2;
            n = put(&mut r, n, zigzag(s.start_ns.wrapping_sub(prev)));
            n = put(&mut r, n, zigzag(s.end_ns.wrapping_sub(s.start_ns)));
            if flags & NO_FIRST_BYTE == 0 {
                n = put(&mut r, n, zigzag(first_byte));
            }
            n = put(&mut r, n, s.bytes);
            if flags & TEXT_KEY == 0 {
                n = put(&mut r, n, s.key);
            }
            if flags & NO_LAG == 0 {
                n = put(&mut r, n, lag);
            }
            n = put(&mut r, n, u64::from(s.thread));
            n = put(&mut r, n, u64::from(s.retries));
            n = put(&mut r, n, u64::from(s.n_objects));
            n = put(&mut r, n, u64::from(s.endpoint));
            out.extend_from_slice(&r[..n]);
            prev = s.start_ns;
            // Side tables are in slot order: the next entry is this slot's or
            // a later one's.
            if flags & TEXT_KEY != 0 {
                push_text(side(&mut keys, i), out);
            }
            if flags & FAILED != 0 {
                push_text(side(&mut errors, i), out);
            }
        }
    }
}

/// The text of slot `i` in a side table walked in order ("" if it has
/// none, as `LogBatch::side` gives).
fn side<'a>(table: &mut std::slice::Iter<'a, (u32, String)>, i: usize) -> &'a str {
    let rest = table.as_slice();
    match rest.iter().position(|(at, _)| *at as usize >= i) {
        Some(p) if rest[p].0 as usize == i => {
            *table = rest[p + 1..].iter();
            &rest[p].1
        }
        _ => "",
    }
}

/// A spool being written: header on creation, then batches, encoded into
/// [`FrameFile`]'s buffer (see there for the frames).
pub struct SpoolWriter {
    out: FrameFile,
    tables: Tables,
}

impl SpoolWriter {
    /// Creates (truncating) `path` and writes the header.
    pub fn create(path: &Path) -> io::Result<SpoolWriter> {
        Self::with_level(path, SPOOL_ZSTD_LEVEL)
    }

    /// [`SpoolWriter::create`] at another zstd level (negative: zstd's
    /// fast levels), for measurements.
    pub fn with_level(path: &Path, level: i32) -> io::Result<SpoolWriter> {
        let mut file = File::create(path)?;
        let mut zstd = zstd::bulk::Compressor::new(level)?;
        use zstd::zstd_safe::CParameter;
        zstd.set_parameter(CParameter::WindowLog(SPOOL_WINDOW_LOG))?;
        zstd.set_parameter(CParameter::HashLog(SPOOL_HASH_LOG))?;
        let h = header();
        file.write_all(&h)?;
        Ok(SpoolWriter {
            out: FrameFile::new(file, zstd, h.len() as u64),
            tables: Tables::default(),
        })
    }

    /// Appends a batch; a frame is written once a frame's worth is
    /// buffered.
    pub fn write_batch(&mut self, batch: &LogBatch) -> io::Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        encode_batch(&mut self.tables, batch, &mut self.out.buf);
        self.out.added(batch.len() as u64)
    }

    /// The frames being written (the op-log writer ages them).
    pub(crate) fn frames(&mut self) -> &mut FrameFile {
        &mut self.out
    }

    /// Compresses and writes what is buffered, and fsyncs; returns
    /// (records, file bytes).
    pub fn finish(self) -> io::Result<(u64, u64)> {
        self.out.finish()
    }
}
