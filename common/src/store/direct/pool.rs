//! The pool of aligned buffers: allocated once at open, one per worker, so
//! no op allocates; a worker holds one for the length of an op. The
//! buffers themselves are [`crate::aligned::AlignedBuf`]s.

use super::*;
use crate::aligned::AlignedBuf;

/// A fixed set of aligned buffers. A semaphore with one permit per buffer
/// makes takers wait asynchronously when all are out, so a buffer is always
/// there for a permit holder.
#[derive(Debug)]
pub(super) struct Pool {
    pub(super) free: Mutex<Vec<AlignedBuf>>,
    permits: Arc<Semaphore>,
    pub(super) buffers: usize,
}

impl Pool {
    /// `buffers` buffers of `len` bytes aligned to `align`, every page
    /// touched now so that no op pays first-touch page faults. `None` when
    /// the layout is invalid or memory is short.
    pub(super) fn new(buffers: usize, len: usize, align: usize) -> Option<Pool> {
        let free = (0..buffers)
            .map(|_| {
                let mut b = AlignedBuf::zeroed(len, align)?;
                b.prefault();
                Some(b)
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Pool {
            free: Mutex::new(free),
            permits: Arc::new(Semaphore::new(buffers)),
            buffers,
        })
    }

    pub(super) async fn take(self: &Arc<Self>) -> Option<PoolBuf> {
        let permit = self.permits.clone().acquire_owned().await.ok()?;
        let buf = self
            .free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()?;
        Some(PoolBuf {
            buf: Some(buf),
            pool: self.clone(),
            _permit: permit,
        })
    }
}

/// A buffer lent by the pool; goes back on drop (before its permit does,
/// since `Drop::drop` runs before the fields are dropped).
#[derive(Debug)]
pub(super) struct PoolBuf {
    buf: Option<AlignedBuf>,
    pool: Arc<Pool>,
    _permit: OwnedSemaphorePermit,
}

impl PoolBuf {
    pub(super) fn as_mut_slice(&mut self) -> &mut [u8] {
        match self.buf.as_mut() {
            Some(b) => b.as_mut_slice(),
            None => &mut [],
        }
    }
}

impl Drop for PoolBuf {
    fn drop(&mut self) {
        if let Some(b) = self.buf.take() {
            self.pool
                .free
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(b);
        }
    }
}

// SAFETY: the pooled `AlignedBuf` is heap memory that stays put when the
// `PoolBuf` moves, and is not handed back to the pool before the PoolBuf
// is dropped.
unsafe impl crate::store::uring::StableBuf for PoolBuf {
    fn bytes(&self) -> &[u8] {
        self.buf.as_ref().map_or(&[], |b| b.as_slice())
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        self.as_mut_slice()
    }
}
