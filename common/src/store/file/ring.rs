//! `file://` GETs and PUTs with `engine=io_uring`: the data reads and
//! writes go through this thread's ring ([`crate::store::uring`]), so the
//! workers of one runtime thread share one `io_uring_enter` per round
//! instead of one `pread`/`pwrite` each.
//!
//! Only the data moves through the ring. Opening (or reusing, see "Open
//! files" in [`super`]), `lseek` for a size and `ftruncate` stay plain
//! calls made inline by the worker: on a local file system they do not
//! wait on a device, and an open file is reused by most GETs anyway. (On a
//! remote file system, `engine=auto` keeps psync; an explicit `io_uring`
//! makes those calls inline there too.) Multipart PUTs and metadata ops
//! are the psync engine's.
//!
//! Buffers: a GET whose bytes are dropped reads into a buffer from a small
//! per-thread free list ([`take_buf`]), since the per-thread scratch
//! buffer of the psync path cannot be lent across an await; one that keeps
//! its bytes reads straight into the `Vec` it returns. A PUT writes from
//! the caller's `Bytes`, held by the ring until the write completes.

use std::cell::RefCell;
use std::path::Path;

use super::*;
use crate::store::uring;

/// Buffers a thread keeps for dropped-bytes GETs: enough for the workers
/// of one thread to each have one in flight without allocating.
const FREE_BUFFERS: usize = 64;

thread_local! {
    static FREE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// A buffer of at least `len` bytes (at most [`READ_CHUNK_BYTES`]) from
/// this thread's free list, or a new one.
fn take_buf(len: u64) -> Vec<u8> {
    let want = usize::try_from(len)
        .unwrap_or(usize::MAX)
        .clamp(1, READ_CHUNK_BYTES);
    let found = FREE.with(|f| {
        let mut f = f.borrow_mut();
        let i = f.iter().position(|b| b.len() >= want)?;
        Some(f.swap_remove(i))
    });
    found.unwrap_or_else(|| vec![0u8; want])
}

/// Puts `buf` back on this thread's free list (dropped when it is full).
fn give_buf(buf: Vec<u8>) {
    FREE.with(|f| {
        let mut f = f.borrow_mut();
        if f.len() < FREE_BUFFERS {
            f.push(buf);
        }
    });
}

/// Reads `len` bytes at `offset` of `file` through the ring, at most
/// [`READ_CHUNK_BYTES`] a read, until they are all read or the file ends:
/// each at its place in `buf` when `keep` (`buf` holds `len`), else each
/// over the start of `buf` (a scratch buffer, the data not kept).
/// `first_byte` is set at the first completion. Gives back the count, the
/// file and the buffer.
async fn read_span<F: AsRawFd + Send + 'static>(
    mut file: F,
    mut buf: Vec<u8>,
    offset: u64,
    len: u64,
    keep: bool,
    first_byte: &mut Option<Mono>,
) -> io::Result<(u64, F, Vec<u8>)> {
    let mut total = 0u64;
    while total < len {
        let at = if keep { total as usize } else { 0 };
        let room = (buf.len() - at).min(READ_CHUNK_BYTES) as u64;
        let want = room.min(len - total) as usize;
        let n;
        (n, file, buf) = uring::read_at(file, buf, at, want, offset + total).await?;
        first_byte.get_or_insert_with(Mono::now);
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    Ok((total, file, buf))
}

/// A GET of `key` with the data read through the ring.
pub(super) async fn get(
    store: &FileStore,
    key: &str,
    opts: &GetOptions,
) -> StoreResult<GetOutcome> {
    let uri = &*store.uri;
    let err = |e: io::Error| StoreError::new(class_of(&e), uri, format!("`{key}`: {e}"));
    let (reader, offset, len) = open_span(store.fds.as_deref(), &store.root, uri, key, opts)?;
    let file = reader.file.clone();
    let mut first_byte = None;
    if opts.keep_data {
        // Exactly sized (the span is clamped to the object), as psync's.
        let kept = vec![0u8; usize::try_from(len).unwrap_or(0)];
        let (total, _, mut kept) = read_span(file, kept, offset, len, true, &mut first_byte)
            .await
            .map_err(err)?;
        kept.truncate(total as usize);
        return Ok(GetOutcome {
            bytes: total,
            first_byte,
            data: Some(Bytes::from(kept)),
        });
    }
    let (total, _, buf) = read_span(file, take_buf(len), offset, len, false, &mut first_byte)
        .await
        .map_err(err)?;
    give_buf(buf);
    unkept_outcome(total, first_byte, &reader, opts, uri, key)
}

/// A PUT of `data` as `key` (at `path`): opened and sized inline, written
/// through the ring, cut to size if the old file was longer.
pub(super) async fn put(store: &FileStore, key: &str, path: &Path, data: Bytes) -> StoreResult<()> {
    let err = |e: io::Error| StoreError::new(class_of(&e), &*store.uri, format!("`{key}`: {e}"));
    let file = with_fds(store.fds.as_deref(), || open_for_put(path)).map_err(err)?;
    let old_size = size_of(&file).map_err(err)?;
    let len = data.len();
    let (file, _) = uring::write_all_at(Arc::new(file), data, 0, len, 0)
        .await
        .map_err(err)?;
    if old_size > len as u64 {
        file.set_len(len as u64).map_err(err)?;
    }
    Ok(())
}
