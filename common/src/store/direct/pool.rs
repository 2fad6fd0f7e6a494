//! The pool of aligned buffers: allocated once at open, one per worker, so
//! no op allocates; a worker holds one for the length of an op.

use super::*;

/// One aligned heap buffer, owned.
pub(super) struct AlignedBuf {
    ptr: NonNull<u8>,
    layout: Layout,
}

// SAFETY: the buffer is plain owned memory; whoever owns the AlignedBuf is
// the only one that can reach it.
unsafe impl Send for AlignedBuf {}

impl AlignedBuf {
    /// `len` bytes aligned to `align`, every page touched (zeroed) now so
    /// that no op pays first-touch page faults. `None` when the layout is
    /// invalid or memory is short.
    pub(super) fn new(len: usize, align: usize) -> Option<AlignedBuf> {
        let layout = Layout::from_size_align(len, align).ok()?;
        if layout.size() == 0 {
            return None;
        }
        // SAFETY: the layout has a non-zero size.
        let ptr = NonNull::new(unsafe { alloc::alloc(layout) })?;
        // SAFETY: `ptr` points to `len` writable bytes just allocated.
        unsafe { std::ptr::write_bytes(ptr.as_ptr(), 0, len) };
        Some(AlignedBuf { ptr, layout })
    }

    pub(super) fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: `ptr` holds `layout.size()` initialised bytes that only
        // this (exclusively borrowed) owner can reach.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.layout.size()) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this very layout, freed once.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), self.layout) };
    }
}

impl fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AlignedBuf({} bytes)", self.layout.size())
    }
}

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
    pub(super) fn new(buffers: usize, len: usize, align: usize) -> Option<Pool> {
        let free = (0..buffers)
            .map(|_| AlignedBuf::new(len, align))
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
