//! Payload buffers: page-aligned, reused from op to op.
//!
//! A PUT's payload is made before its op and dropped after it; allocating
//! it each time costs more than it seems at benchmark rates. A fresh
//! buffer is zeroed (by `calloc`, or by the kernel page by page on first
//! touch) only to be overwritten by the generator at once: measured 9.5% of
//! the CPU of 1 MiB `file://` PUTs, a third of the generator's own cost.
//! So [`super::object`] hands out buffers from a bounded process-wide pool
//! and takes them back when the last [`Bytes`] holding one is dropped
//! (whichever thread that is on: a store, an SDK, the worker).
//!
//! Buffers are page-aligned ([`PAYLOAD_ALIGN`]), so `direct://` can write
//! a payload straight from it with `O_DIRECT` instead of copying it into
//! an aligned buffer first. Payloads under 64 KiB are plain allocations of
//! their own size (see [`MIN_POOLED`]), and a reused buffer is at most an
//! eighth larger than a new one would be, since some stores (`mem://`)
//! keep the bytes they are given.
//!
//! Bounds: at most [`POOL_BUFFERS`] buffers and [`POOL_BYTES`] bytes wait
//! in the pool (a buffer given back beyond either is freed), and buffers
//! above [`POOL_BYTES`] are never kept. So the pool holds at most the
//! payloads that were in flight at once, up to that bound, after a stage
//! ends.

use std::sync::{Mutex, PoisonError};

use bytes::Bytes;

use super::DataSpec;
use crate::aligned::AlignedBuf;

/// Alignment of every payload buffer: a page, which is at least the
/// memory alignment `O_DIRECT` asks for on common devices (512 or 4096).
pub const PAYLOAD_ALIGN: usize = 4096;

/// Most buffers waiting in the pool: more than the workers of most agents,
/// so each worker finds one.
pub const POOL_BUFFERS: usize = 256;

/// Most bytes waiting in the pool.
pub const POOL_BYTES: usize = 256 << 20;

/// Buffers are sized in multiples of this, so payloads of nearby sizes
/// share buffers.
const GRANULE: usize = 4096;

/// Payloads smaller than this are plain exact-size allocations: rounding
/// them up to whole pages would waste much of that where the bytes are kept
/// (`mem://` stores a PUT's bytes as they are), and at this size zeroing
/// a fresh buffer or copying it for `O_DIRECT` costs little anyway. From
/// here on the rounding wastes at most 1/16.
const MIN_POOLED: usize = 64 << 10;

/// A waiting buffer is reused for a payload only if at most this fraction
/// of it (1/8) goes unused: where a store keeps the bytes, a payload must
/// not hold much more memory than its size.
const MAX_WASTE_DIVISOR: usize = 8;

/// A page-aligned buffer of at least `len` bytes (`len` > 0), its size
/// rounded up to [`GRANULE`]. Out of memory aborts, as for a `Vec`.
fn new_buf(len: usize) -> AlignedBuf {
    AlignedBuf::zeroed_or_abort(len.div_ceil(GRANULE) * GRANULE, PAYLOAD_ALIGN)
}

/// The buffers waiting for a payload, their total size, and the bounds.
struct Pool {
    free: Vec<AlignedBuf>,
    bytes: usize,
    max_buffers: usize,
    max_bytes: usize,
}

impl Pool {
    const fn new(max_buffers: usize, max_bytes: usize) -> Pool {
        Pool {
            free: Vec::new(),
            bytes: 0,
            max_buffers,
            max_bytes,
        }
    }

    /// The smallest waiting buffer for `len` bytes that is at most
    /// [`MAX_WASTE_DIVISOR`]'s share larger than a new one would be.
    fn take(&mut self, len: usize) -> Option<AlignedBuf> {
        let want = len.div_ceil(GRANULE) * GRANULE;
        let i = self
            .free
            .iter()
            .enumerate()
            .filter(|(_, b)| b.len() >= want && b.len() - want <= b.len() / MAX_WASTE_DIVISOR)
            .min_by_key(|(_, b)| b.len())
            .map(|(i, _)| i)?;
        let buf = self.free.swap_remove(i);
        self.bytes -= buf.len();
        Some(buf)
    }

    /// Keeps `buf` for a later payload, or hands it back to be freed when
    /// the pool is full.
    fn keep(&mut self, buf: AlignedBuf) -> Option<AlignedBuf> {
        if self.free.len() < self.max_buffers && self.bytes + buf.len() <= self.max_bytes {
            self.bytes += buf.len();
            self.free.push(buf);
            None
        } else {
            Some(buf)
        }
    }
}

static POOL: Mutex<Pool> = Mutex::new(Pool::new(POOL_BUFFERS, POOL_BYTES));

fn pool() -> std::sync::MutexGuard<'static, Pool> {
    POOL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A buffer for `len` bytes (> 0): a waiting one, else a new one.
fn take(len: usize) -> AlignedBuf {
    let reused = pool().take(len);
    reused.unwrap_or_else(|| new_buf(len))
}

/// Gives `buf` back to the pool; freed (outside the lock) when it is full.
fn give_back(buf: AlignedBuf) {
    let refused = pool().keep(buf);
    drop(refused);
}

/// The first `len` bytes of a pooled buffer, as the owner of a [`Bytes`]:
/// the buffer goes back to the pool when the last `Bytes` is dropped.
struct Payload {
    buf: Option<AlignedBuf>,
    len: usize,
}

impl AsRef<[u8]> for Payload {
    fn as_ref(&self) -> &[u8] {
        match &self.buf {
            Some(b) => &b.as_slice()[..self.len],
            None => &[],
        }
    }
}

impl Drop for Payload {
    fn drop(&mut self) {
        if let Some(buf) = self.buf.take() {
            give_back(buf);
        }
    }
}

/// `len` bytes made by `fill` into a pooled, page-aligned buffer (below
/// [`MIN_POOLED`] bytes, a plain one). `fill` must write every byte: the
/// buffer holds whatever its last payload left.
pub(super) fn pooled(len: usize, fill: impl FnOnce(&mut [u8])) -> Bytes {
    if len < MIN_POOLED {
        let mut v = vec![0u8; len];
        fill(&mut v);
        return Bytes::from(v);
    }
    let mut buf = take(len);
    fill(&mut buf.as_mut_slice()[..len]);
    Bytes::from_owner(Payload {
        buf: Some(buf),
        len,
    })
}

/// Most payloads [`reused`] keeps, and their most bytes: enough for the
/// sizes of a bucketed size distribution, or the parts of a multipart
/// upload, without holding much memory.
const REUSED_PAYLOADS: usize = 16;
const REUSED_BYTES: usize = 256 << 20;

/// Payloads kept for [`DataSpec::reuse`], newest last, keyed by what makes
/// their bytes: (seed, dedup, compress bits, offset, length).
type ReuseKey = (u64, u32, u64, u64, usize);
static REUSED: Mutex<Vec<(ReuseKey, Bytes)>> = Mutex::new(Vec::new());

/// A payload of `len` bytes from `offset` on, made by `fill` the first time
/// and handed out again (a reference-counted clone, no copy) while it is
/// kept. Payloads past [`REUSED_BYTES`] are made each time; the oldest kept
/// one makes room for a new one.
pub(super) fn reused(
    spec: &DataSpec,
    offset: u64,
    len: usize,
    fill: impl FnOnce(&mut [u8]),
) -> Bytes {
    let key = (spec.seed, spec.dedup, spec.compress.to_bits(), offset, len);
    let lock = || REUSED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((_, b)) = lock().iter().find(|(k, _)| *k == key) {
        return b.clone();
    }
    // Made outside the lock: a large payload takes a while.
    let bytes = pooled(len, fill);
    if len <= REUSED_BYTES {
        let mut kept = lock();
        if !kept.iter().any(|(k, _)| *k == key) {
            while kept.len() >= REUSED_PAYLOADS
                || kept.iter().map(|(_, b)| b.len()).sum::<usize>() + len > REUSED_BYTES
            {
                kept.remove(0);
            }
            kept.push((key, bytes.clone()));
        }
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Buffers come back when the last clone is dropped, and are reused;
    /// the bytes are each payload's own, whatever a reused buffer held.
    #[test]
    fn buffers_are_reused_and_aligned() {
        // Sizes no other test uses, so tests in parallel do not take them.
        let len = MIN_POOLED + 3 * GRANULE + 5 * 977;
        let a = pooled(len, |b| b.fill(0xab));
        assert_eq!(a.len(), len);
        assert_eq!(a.as_ptr() as usize % PAYLOAD_ALIGN, 0);
        assert!(a.iter().all(|&x| x == 0xab));
        let ptr = a.as_ptr();
        let a2 = a.clone();
        drop(a);
        let b = pooled(len, |b| b.fill(0xcd));
        assert_ne!(b.as_ptr(), ptr, "still held by a clone");
        drop(a2);
        drop(b);
        let c = pooled(len - 1, |b| b.fill(0xef));
        assert!(c.iter().all(|&x| x == 0xef));
        assert_eq!(c.len(), len - 1);
        assert!(pooled(0, |_| {}).is_empty());
        let small = pooled(100, |b| b.fill(7));
        assert!(small.len() == 100 && small.iter().all(|&x| x == 7));
    }

    #[test]
    fn the_pool_is_bounded() {
        let mut pool = Pool::new(2, 5 * GRANULE);
        for len in [GRANULE, GRANULE, GRANULE] {
            assert!(pool.keep(new_buf(len)).is_none() || pool.free.len() == 2);
        }
        assert_eq!((pool.free.len(), pool.bytes), (2, 2 * GRANULE));
        let mut pool = Pool::new(8, 5 * GRANULE);
        assert!(pool.keep(new_buf(4 * GRANULE)).is_none());
        assert!(pool.keep(new_buf(2 * GRANULE)).is_some(), "over the bytes");
        // Too large for a smaller payload; the right size for a near one.
        assert!(pool.take(3 * GRANULE).is_none());
        assert_eq!(
            pool.take(4 * GRANULE - 7).map(|b| b.len()),
            Some(4 * GRANULE)
        );
        let mut pool = Pool::new(8, 64 * GRANULE);
        assert!(pool.keep(new_buf(36 * GRANULE)).is_none());
        assert!(
            pool.take(31 * GRANULE).is_none(),
            "over an eighth too large"
        );
        assert_eq!(pool.take(32 * GRANULE).map(|b| b.len()), Some(36 * GRANULE));
        assert_eq!((pool.free.len(), pool.bytes), (0, 0));
    }
}
