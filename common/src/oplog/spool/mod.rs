//! The agent's binary op-log ("spool"): what the writer thread writes while
//! a stage runs, instead of TSV, so that logging an op costs a few
//! varint stores and a fast compressor rather than formatting ~200
//! bytes of text (three RFC 3339 times, a dozen integers) per op.
//!
//! Text is made later, where CPU is cheap: a spool read through
//! [`open_text`] (every reader of agent logs: [`super::OpLogReader`], the
//! merge, `trace`) comes out as exactly the TSV the agent's text writer
//! would have written for the same ops, because it is formatted by the
//! same code (`record::LineFormatter::batch` on the decoded
//! [`super::LogBatch`]). So a timeline merged from spools is byte for byte
//! the timeline merged from TSV logs of the same ops.
//!
//! # Format (version 1)
//!
//! A spool is a zstd stream (`zstd -dc` reads it, to the binary records):
//!
//! 1. A zstd *skippable* frame (RFC 8878, magic `0x184D2A5C`, 16 bytes of
//!    payload: [`SPOOL_MAGIC`] and the format version as u32 LE). Readers
//!    tell a spool from TSV by it, and refuse a version they do not know
//!    with an error naming the file and byte offset.
//! 2. zstd frames (one per ~1 MiB of records, as the TSV writer's), each
//!    ending at a block boundary, whose decompressed bytes are blocks:
//!    a tag byte, then
//!    - `1` string: `len: u32`, UTF-8 bytes. Strings are numbered 0, 1, …
//!      in file order (client ids, stages, key prefixes, endpoints: each
//!      written once per file).
//!    - `2` context: `client: u32, stage: u32, key_prefix: u32` (string
//!      numbers; already sanitized as [`super::LogContext`] holds them),
//!      `width: u8, fanout: u32` (0: none). Numbered 0, 1, … like strings.
//!    - `3` batch: `context: u32, first_idx: u64, n: u32, n_endpoints: u16`,
//!      `n_endpoints × u32` string numbers, then `n` records, each
//!      followed by its text key and error when its flags say so
//!      (`len: u32`, UTF-8, at most [`super::record::MAX_FIELD_BYTES`]).
//!
//!    A record: flags u8 (1 warm-up, 2 text key, 4 failed, 8 no first
//!    byte, 16 no lag), op u8 (`OpKind as u8`), then LEB128 varints
//!    (signed ones zigzag-encoded): `start_ns - previous start_ns` (the
//!    batch's previous record; the first from 0), `end_ns - start_ns`,
//!    `first_byte_ns - start_ns` (absent with flag 8), `bytes`, key index
//!    (absent for a text key), `lag_ns` (absent with flag 16), `thread`,
//!    `retries`, `n_objects`, endpoint (position in the batch's list).
//!    Varints rather than fixed-width fields: a record is ~20 bytes
//!    instead of 64, and zstd's time (most of the writer's) goes by bytes
//!    (measured: 105 ns per record with 64-byte fixed records).
//!
//! `idx` is `first_idx` plus the record's position in its batch. A record
//! is decoded as soon as its bytes are there, so a spool cut short (an
//! agent killed mid-frame) reads up to its last whole record, then ends
//! with an error naming the file and the record (as a cut TSV log does:
//! records before the damage, then a located error).

mod decode;
mod encode;
#[cfg(test)]
mod tests;

pub(crate) use decode::SpoolText;
pub use encode::SpoolWriter;

use super::ZSTD_MAGIC;
use super::reader::OpLogError;
use std::io::{self, BufRead, Read};
use std::path::Path;

/// Magic of the zstd skippable frame that starts a spool.
pub(crate) const SKIPPABLE_MAGIC: [u8; 4] = 0x184D_2A5C_u32.to_le_bytes();

/// What the skippable frame holds first.
pub const SPOOL_MAGIC: [u8; 12] = *b"CHORUS-SPOOL";

/// The format version this build writes and reads.
pub const SPOOL_VERSION: u32 = 1;

/// Bytes of the header: skippable magic, its length, [`SPOOL_MAGIC`],
/// version.
pub(crate) const HEADER_BYTES: usize = 4 + 4 + SPOOL_MAGIC.len() + 4;

/// Most bytes of a record's fixed part: flags, op and ten varints of at
/// most ten bytes each.
pub const RECORD_BYTES: usize = 2 + 10 * 10;

pub(crate) const TAG_STRING: u8 = 1;
pub(crate) const TAG_CONTEXT: u8 = 2;
pub(crate) const TAG_BATCH: u8 = 3;

/// Record flags beyond the slot's own (`batch::WARMUP`, `TEXT_KEY`,
/// `FAILED`).
pub(crate) const NO_FIRST_BYTE: u8 = 8;
pub(crate) const NO_LAG: u8 = 16;

/// The spool header, as written at the start of every spool.
pub(crate) fn header() -> [u8; HEADER_BYTES] {
    let mut h = [0u8; HEADER_BYTES];
    h[..4].copy_from_slice(&SKIPPABLE_MAGIC);
    h[4..8].copy_from_slice(&((SPOOL_MAGIC.len() + 4) as u32).to_le_bytes());
    h[8..20].copy_from_slice(&SPOOL_MAGIC);
    h[20..].copy_from_slice(&SPOOL_VERSION.to_le_bytes());
    h
}

/// How a log's bytes are encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogEncoding {
    /// Plain TSV.
    Plain,
    /// zstd TSV.
    Zstd,
    /// A binary spool (zstd).
    Spool,
}

/// Whether the file at `path` is a spool (by its first bytes).
pub fn is_spool(path: &Path) -> io::Result<bool> {
    let mut head = [0u8; 4];
    let got = read_full(&mut std::fs::File::open(path)?, &mut head)?;
    Ok(got == 4 && head == SKIPPABLE_MAGIC)
}

/// The TSV text of the log at `path`, whatever its encoding (a spool, zstd
/// or plain TSV): what `controller export --format tsv` writes, and what
/// tools that want text read.
pub fn open_log_text(path: &Path) -> Result<Box<dyn Read + Send>, OpLogError> {
    let file = std::fs::File::open(path).map_err(|source| OpLogError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let raw = io::BufReader::with_capacity(256 * 1024, file);
    Ok(open_text(path, raw)?.0)
}

/// A log's bytes as TSV text: a spool decoded and formatted, a zstd log
/// decompressed, a plain one as it is; told apart by the first bytes
/// (which `raw` must have buffered, or be at its end). Errors name `path`
/// (and, for a bad spool header, the byte offset).
pub(crate) fn open_text<R: BufRead + Send + 'static>(
    path: &Path,
    mut raw: R,
) -> Result<(Box<dyn Read + Send>, LogEncoding), OpLogError> {
    let head = peek(&mut raw, path, 1)?;
    let start_err = |source| OpLogError::Read {
        path: path.to_path_buf(),
        line: 1,
        what: "cannot start zstd decoder",
        source,
    };
    if head.starts_with(&SKIPPABLE_MAGIC) {
        let mut h = [0u8; HEADER_BYTES];
        let got = read_full(&mut raw, &mut h).map_err(|source| OpLogError::Read {
            path: path.to_path_buf(),
            line: 1,
            what: "read failed",
            source,
        })?;
        check_header(&h[..got]).map_err(|(offset, msg)| OpLogError::Parse {
            path: path.to_path_buf(),
            line: 1,
            msg: format!("byte {offset}: {msg}"),
        })?;
        // A stage without ops leaves the header alone: no frame to decode
        // (zstd's decoder calls an empty stream an incomplete frame).
        if peek(&mut raw, path, 2)?.is_empty() {
            let text = SpoolText::new(path, io::empty());
            return Ok((Box::new(text), LogEncoding::Spool));
        }
        let decoder = zstd::Decoder::with_buffer(raw).map_err(start_err)?;
        let text = SpoolText::new(path, decoder);
        return Ok((Box::new(text), LogEncoding::Spool));
    }
    if head.starts_with(&ZSTD_MAGIC) {
        let decoder = zstd::Decoder::with_buffer(raw).map_err(start_err)?;
        return Ok((Box::new(decoder), LogEncoding::Zstd));
    }
    Ok((Box::new(raw), LogEncoding::Plain))
}

/// The first (up to) four bytes `raw` has buffered, filling its buffer if
/// empty (none at the end): enough to tell the encodings apart. Read
/// errors name `path` and the `line` being read.
fn peek(raw: &mut impl BufRead, path: &Path, line: u64) -> Result<Vec<u8>, OpLogError> {
    loop {
        match raw.fill_buf() {
            Ok(b) => return Ok(b[..b.len().min(4)].to_vec()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(OpLogError::Read {
                    path: path.to_path_buf(),
                    line,
                    what: "read failed",
                    source,
                });
            }
        }
    }
}

/// Reads until `buf` is full or the input ends; the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Checks a spool header; on a fault, its byte offset and what is wrong.
fn check_header(h: &[u8]) -> Result<(), (usize, String)> {
    if h.len() < HEADER_BYTES {
        return Err((h.len(), "file ends inside the spool header".to_string()));
    }
    let len = u32::from_le_bytes(h[4..8].try_into().expect("4 bytes"));
    if h[8..20] != SPOOL_MAGIC {
        return Err((
            8,
            "a zstd skippable frame that is not a Chorus spool header".to_string(),
        ));
    }
    if len as usize != SPOOL_MAGIC.len() + 4 {
        return Err((4, format!("spool header of {len} bytes, expected 16")));
    }
    let version = u32::from_le_bytes(h[20..24].try_into().expect("4 bytes"));
    if version != SPOOL_VERSION {
        return Err((
            20,
            format!("spool format version {version}, this build reads version {SPOOL_VERSION}"),
        ));
    }
    Ok(())
}
