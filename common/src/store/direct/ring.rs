//! `direct://` GETs and PUTs with `engine=io_uring`: the `O_DIRECT` reads
//! and writes go through this thread's ring ([`crate::store::uring`])
//! instead of `pread`/`pwrite` under `block_in_place`, so a worker waiting
//! for the device holds no thread, and the workers of one runtime thread
//! share their `io_uring_enter` calls.
//!
//! Same data path as psync otherwise: the pool's aligned buffers (moved
//! into the ring's slot while the kernel uses them, so a dropped GET
//! cannot hand a buffer back to the pool under a running read), aligned
//! spans, whole blocks of an aligned payload written straight from it, the
//! rest through a pool buffer with the last block zero-padded and the file
//! cut to size. Opening and `ftruncate` run inline (local file systems
//! only; see [`super::super::file`]). Buffers are not registered with the
//! ring (`IORING_OP_READ_FIXED`): the pool is per store and a ring is per
//! thread, and registering would pin every store's pool in every ring;
//! not measured.

use super::*;
use crate::store::uring::{self, StableBuf};

/// A GET through the ring; see [`read_span`] for the span's pieces.
pub(super) async fn get(
    store: &DirectStore,
    key: &str,
    opts: &GetOptions,
) -> StoreResult<GetOutcome> {
    let path = store.path(key)?;
    let mut buf = store.buffer().await?;
    let err = |e: io::Error| io_error(&store.uri, key, &path, &e);
    let reader =
        Reader::open(store.fds.as_deref(), key, || open_direct(&path, false)).map_err(err)?;
    let (offset, len) = match opts.range {
        Some(range) if !opts.keep_data => (range.offset, range.length),
        Some(range) => {
            let size = reader.size().map_err(err)?;
            clamp_range(range, size, &store.uri, key)?
        }
        None => (0, reader.size().map_err(err)?),
    };
    let mut kept = opts
        .keep_data
        .then(|| Vec::with_capacity(usize::try_from(len).unwrap_or(0)));
    let block = store.align.offset;
    let mut first_byte = None;
    let mut file = reader.file.clone();
    let end = offset.saturating_add(len);
    let mut pos = offset - offset % block as u64;
    let mut total = 0u64;
    while pos < end {
        let remaining = end - pos;
        let want = if remaining >= buf.bytes().len() as u64 {
            buf.bytes().len()
        } else {
            round_up(remaining as usize, block)
        };
        // As `read_full_at`: on until `want` or the end of the file; a
        // short read that ends on a block boundary is continued.
        let mut n = 0;
        while n < want {
            let got;
            (got, file, buf) = uring::read_at(file, buf, n, want - n, pos + n as u64)
                .await
                .map_err(err)?;
            if got == 0 {
                break;
            }
            n += got;
            if !n.is_multiple_of(block) {
                break;
            }
        }
        first_byte.get_or_insert_with(Mono::now);
        let lo = offset.saturating_sub(pos) as usize;
        let hi = (end - pos).min(n as u64) as usize;
        if hi > lo {
            total += (hi - lo) as u64;
            if let Some(out) = kept.as_mut() {
                out.extend_from_slice(&buf.bytes()[lo..hi]);
            }
        }
        if n < want {
            break; // the file ended (or shrank under us)
        }
        pos += n as u64;
    }
    if let (0, Some(range)) = (total, opts.range) {
        // Nothing there: past the end (an error) or an empty object.
        let size = reader.size().map_err(err)?;
        clamp_range(range, size, &store.uri, key)?;
    }
    Ok(GetOutcome {
        bytes: total,
        first_byte,
        data: kept.map(Bytes::from),
    })
}

/// A PUT through the ring, with [`DirectWriter`]'s rules: whole blocks of
/// an aligned payload from the payload, the rest through a pool buffer,
/// the last block padded, then the file cut to the object's size.
pub(super) async fn put(store: &DirectStore, key: &str, data: Bytes) -> StoreResult<()> {
    let path = store.path(key)?;
    let setup = store.write_setup();
    let buf = match setup.needs_buffer(&data) {
        true => Some(store.buffer().await?),
        false => None,
    };
    let err = |e: io::Error| io_error(&store.uri, key, &path, &e);
    let w = setup.writer(&path, buf, &store.err_fn(), key)?;
    let (block, io_size, old_size) = (w.block, w.io_size, w.old_size);
    let (mut file, buf) = (Arc::new(w.file), w.buf);
    let size = data.len();
    let whole = match (data.as_ptr() as usize).is_multiple_of(w.mem_align) {
        true => size / block * block,
        false => 0,
    };
    let (mut data, mut written) = (data, 0usize);
    while written < whole {
        let to = (written + io_size).min(whole);
        (file, data) = uring::write_all_at(file, data, written, to, written as u64)
            .await
            .map_err(err)?;
        written = to;
    }
    if written < size {
        let Some(mut pooled) = buf else {
            return Err(err(io::Error::other(
                "direct:// writer has no aligned buffer",
            )));
        };
        while written < size {
            let n = (size - written).min(pooled.bytes().len());
            let padded = round_up(n, block);
            let dst = pooled.bytes_mut();
            dst[..n].copy_from_slice(&data[written..written + n]);
            dst[n..padded].fill(0);
            (file, pooled) = uring::write_all_at(file, pooled, 0, padded, written as u64)
                .await
                .map_err(err)?;
            written += n;
        }
    }
    if !size.is_multiple_of(block) || old_size > size as u64 {
        file.set_len(size as u64).map_err(err)?;
    }
    Ok(())
}
