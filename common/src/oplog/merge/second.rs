//! The second pass: puts the late lines (those later than the held output
//! could take: ops slower than about a second of the merged run, such as
//! timeouts) into the first pass's output. The first pass wrote its output
//! as independent zstd frames and noted each one's first line, so frames
//! that get no late line are copied as compressed bytes; only the others
//! are decompressed, merged with their late lines and compressed again.

use super::entries::{Chunk, Cursor, Entry};
use super::frames::FrameWriter;
use super::late::Late;
use super::line::{TimeCodec, our_line_key};
use super::sink::{Frame, FrameKey};
use super::source::Source;
use crate::oplog::reader::OpLogError;
use std::cmp::Ordering;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

/// `e` (in `chunks`) against a key.
fn cmp_key(e: &Entry, chunks: &[Chunk], start: i64, client: &[u8], idx: u64) -> Ordering {
    (e.start, e.client(chunks), e.idx).cmp(&(start, client, idx))
}

fn before_frame(e: &Entry, chunks: &[Chunk], f: &FrameKey) -> bool {
    cmp_key(e, chunks, f.start, &f.client, f.idx) == Ordering::Less
}

/// Decompresses one frame into `out` (reused: no allocation per frame).
fn unpack(
    dctx: &mut zstd::bulk::Decompressor<'static>,
    packed: &[u8],
    out: &mut Vec<u8>,
) -> io::Result<()> {
    out.clear();
    match zstd::zstd_safe::get_frame_content_size(packed) {
        Ok(Some(size)) => {
            out.reserve(usize::try_from(size).map_err(io::Error::other)?);
            dctx.decompress_to_buffer(packed, out)?;
        }
        _ => *out = zstd::decode_all(packed)?,
    }
    Ok(())
}

/// Writes `first` (the first pass's output, in `frames`) with the lines of
/// `late` (sorted) put in place, to `out`; returns the lines written.
pub(super) fn second_pass(
    first: &Path,
    frames: &[Frame],
    late: &mut Source,
    out: &Path,
    level: i32,
    sync: bool,
) -> Result<u64, OpLogError> {
    let in_err = |source| OpLogError::Io {
        path: first.to_path_buf(),
        source,
    };
    let out_err = |source| OpLogError::Io {
        path: out.to_path_buf(),
        source,
    };
    let mut input = File::open(first).map_err(in_err)?;
    let mut writer = FrameWriter::create(out, level, sync).map_err(out_err)?;
    let cursor = Cursor::default();
    let mut none = Late::none();
    late.fill_window(&cursor, &mut none)?;
    let mut times = TimeCodec::default();
    let mut records = 0u64;
    let mut rewritten = 0usize;
    let mut packed = Vec::new();
    let mut unpacked = Vec::new();
    let mut dctx = zstd::bulk::Decompressor::new().map_err(in_err)?;
    let mut text = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        // Late lines before the next frame's first line belong here.
        let upper = frames[i + 1..].iter().find_map(|g| g.first.as_ref());
        let takes = late
            .head()
            .is_some_and(|(e, c)| upper.is_none_or(|u| before_frame(e, c, u)));
        input.seek(SeekFrom::Start(f.off)).map_err(in_err)?;
        if !takes {
            writer.raw(&mut input, f.len).map_err(out_err)?;
            records += f.lines;
            continue;
        }
        rewritten += 1;
        packed.clear();
        (&mut input)
            .take(f.len)
            .read_to_end(&mut packed)
            .map_err(in_err)?;
        unpack(&mut dctx, &packed, &mut unpacked).map_err(in_err)?;
        text.clear();
        let mut lines = unpacked.split_inclusive(|&b| b == b'\n');
        if i == 0
            && let Some(header) = lines.next()
        {
            text.extend_from_slice(header);
        }
        for line in lines {
            let bare = line.strip_suffix(b"\n").unwrap_or(line);
            let Some((start, client, idx)) = our_line_key(bare, &mut times) else {
                return Err(in_err(io::Error::other("not a line of the first pass")));
            };
            while let Some((e, c)) = late.head()
                && cmp_key(e, c, start, client, idx) == Ordering::Less
            {
                text.extend_from_slice(e.line(c));
                text.push(b'\n');
                records += 1;
                late.advance(&cursor, &mut none)?;
            }
            text.extend_from_slice(bare);
            text.push(b'\n');
            records += 1;
        }
        while let Some((e, c)) = late.head()
            && upper.is_none_or(|u| before_frame(e, c, u))
        {
            text.extend_from_slice(e.line(c));
            text.push(b'\n');
            records += 1;
            late.advance(&cursor, &mut none)?;
        }
        writer.frame(&text).map_err(out_err)?;
    }
    if let Some(e) = late.take_error() {
        return Err(e);
    }
    tracing::debug!(frames = frames.len(), rewritten, "merge: second pass");
    writer.finish().map_err(out_err)?;
    Ok(records)
}
