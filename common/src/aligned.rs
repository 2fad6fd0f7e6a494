//! One aligned heap buffer, owned: the only hand-written allocation in the
//! crate. `direct://` reads and writes through buffers aligned to what its
//! file system asks of `O_DIRECT` memory, and payloads are made in
//! page-aligned buffers so `direct://` can write them without a copy; both
//! pools keep [`AlignedBuf`]s and differ only in how they lend them.
//!
//! A buffer is always fully initialised (zeroed at allocation), so safe
//! slices of all of it can be handed out. [`AlignedBuf::prefault`] writes
//! one byte per page for callers that must not pay first-touch page faults
//! during a measured op (the allocator hands large zeroed blocks out as
//! untouched pages).

use std::alloc::{self, Layout};
use std::fmt;
use std::ptr::NonNull;

/// The page size [`AlignedBuf::prefault`] steps by: the smallest on the
/// platforms Chorus runs on. On larger pages it touches a page more than
/// once, which costs nothing extra.
pub const PAGE_BYTES: usize = 4096;

/// `len` bytes aligned to `align`, zero-initialised, freed on drop.
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    layout: Layout,
}

// SAFETY: plain owned memory; only the owner of the AlignedBuf reaches it,
// and a shared reference gives only read access.
unsafe impl Send for AlignedBuf {}
// SAFETY: no interior mutability: `&AlignedBuf` only reads.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    /// `len` bytes aligned to `align`, all zero. `None` when `len` is 0,
    /// `align` is not a power of two, the size overflows, or memory is
    /// short: callers decide whether that is an error to report (a store
    /// being opened) or fatal.
    pub fn zeroed(len: usize, align: usize) -> Option<AlignedBuf> {
        let layout = Layout::from_size_align(len, align).ok()?;
        if layout.size() == 0 {
            return None;
        }
        // SAFETY: the layout has a non-zero size. Zeroed, so that every
        // byte is initialised before a slice of it exists.
        let ptr = NonNull::new(unsafe { alloc::alloc_zeroed(layout) })?;
        Some(AlignedBuf { ptr, layout })
    }

    /// [`AlignedBuf::zeroed`] for callers that cannot go on without the
    /// memory, as `Vec` does: out of memory aborts through
    /// [`alloc::handle_alloc_error`]. Panics only on a size no layout can
    /// have (past `isize::MAX`) or a zero `len`, which callers rule out.
    pub fn zeroed_or_abort(len: usize, align: usize) -> AlignedBuf {
        let layout = Layout::from_size_align(len, align)
            .ok()
            .filter(|l| l.size() > 0)
            .unwrap_or_else(|| panic!("no buffer of {len} bytes aligned to {align}"));
        AlignedBuf::zeroed(len, align).unwrap_or_else(|| alloc::handle_alloc_error(layout))
    }

    /// Size in bytes (never 0).
    pub fn len(&self) -> usize {
        self.layout.size()
    }

    /// Whether the buffer has no bytes: never, since none is made empty.
    pub fn is_empty(&self) -> bool {
        self.layout.size() == 0
    }

    /// The alignment the buffer was made with.
    pub fn align(&self) -> usize {
        self.layout.align()
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `len` initialised bytes live at `ptr` while self does.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len()) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, and `&mut self` makes the access unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len()) }
    }

    /// Writes a zero into every page, so each is backed by memory now and
    /// no later write faults. Volatile writes: a plain `fill(0)` over
    /// memory the allocator zeroed may be optimised away, and the point is
    /// the write, not the value.
    pub fn prefault(&mut self) {
        for offset in (0..self.len()).step_by(PAGE_BYTES) {
            // SAFETY: `offset` < len, inside the allocation, which `&mut
            // self` makes ours alone; the byte is already 0.
            unsafe { self.ptr.as_ptr().add(offset).write_volatile(0) };
        }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `zeroed` with this very layout, freed once.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), self.layout) };
    }
}

impl fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "AlignedBuf({} bytes, aligned to {})",
            self.len(),
            self.align()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_zeroed_and_writable() {
        for (len, align) in [(1, 512), (4096, 4096), (100_000, 4096), (3 << 20, 1 << 16)] {
            let mut b = AlignedBuf::zeroed(len, align).unwrap();
            assert_eq!((b.len(), b.align()), (len, align));
            assert!(!b.is_empty());
            assert_eq!(b.as_slice().as_ptr() as usize % align, 0, "{len}/{align}");
            assert!(b.as_slice().iter().all(|&x| x == 0), "{len}: zeroed");
            b.prefault();
            assert!(b.as_slice().iter().all(|&x| x == 0), "prefault keeps zeros");
            b.as_mut_slice().fill(0x5a);
            assert!(b.as_slice().iter().all(|&x| x == 0x5a));
        }
    }

    #[test]
    fn impossible_layouts_are_none() {
        assert!(AlignedBuf::zeroed(0, 4096).is_none(), "empty");
        assert!(AlignedBuf::zeroed(10, 3).is_none(), "not a power of two");
        assert!(
            AlignedBuf::zeroed(usize::MAX - 10, 4096).is_none(),
            "overflow"
        );
        let b = AlignedBuf::zeroed_or_abort(5000, 4096);
        assert_eq!(b.len(), 5000);
        assert!(format!("{b:?}").contains("5000 bytes"));
    }

    #[test]
    fn moves_to_another_thread() {
        let mut b = AlignedBuf::zeroed(8192, 4096).unwrap();
        b.as_mut_slice()[8191] = 7;
        let back = std::thread::spawn(move || b).join().unwrap();
        assert_eq!(back.as_slice()[8191], 7);
    }
}
