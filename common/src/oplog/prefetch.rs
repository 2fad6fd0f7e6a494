//! Prefetching a [`super::LogBatch`]'s next slots for writing.
//!
//! A worker writes one 56-byte slot per op into a buffer that the op-log
//! writer, on another core, read the last time round (buffers are
//! recycled). So each new slot's cache line is held by the other core,
//! and a plain store to it must wait for that core to give it up. x86
//! commits stores in order, so every store after it waits too, and the
//! store buffer fills within a few dozen cycles: the worker stalls for the
//! whole transfer, ~100 ns when the two cores sit on different dies (seen
//! in the harness bench as a bimodal op-log cost: ~5% in most processes,
//! ~30% in some, with the engine core at 100% either way).
//!
//! `PREFETCHW` asks for the line in the exclusive state without occupying
//! the store buffer, so issued a few ops ahead the transfer overlaps the
//! worker's other work. It is the only way to say "for writing":
//! `_mm_prefetch` with `_MM_HINT_ET0` compiles to a plain read prefetch
//! unless the whole crate is built for `prfchw`.

/// Whether this CPU has `PREFETCHW` (CPUID 0x8000_0001, ECX bit 8: every
/// AMD64 CPU, Intel since Broadwell). Asked once per batch, not per op.
#[cfg(target_arch = "x86_64")]
pub(crate) fn available() -> bool {
    use std::sync::OnceLock;
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        // Leaf 0x8000_0000 tells whether leaf 0x8000_0001 exists.
        let max = std::arch::x86_64::__cpuid(0x8000_0000).eax;
        max >= 0x8000_0001 && std::arch::x86_64::__cpuid(0x8000_0001).ecx & (1 << 8) != 0
    })
}

#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn available() -> bool {
    false
}

/// Prefetches the cache line of `at` for writing. Only a hint: it never
/// faults, whatever `at` is, and changes no memory.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn for_write<T>(at: *const T) {
    // SAFETY: PREFETCHW reads and writes nothing architecturally and does
    // not fault on any address; callers check `available()` first.
    unsafe {
        std::arch::asm!(
            "prefetchw [{}]",
            in(reg) at,
            options(nostack, preserves_flags, readonly)
        );
    }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
pub(crate) fn for_write<T>(_at: *const T) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefetching_changes_nothing() {
        let v = vec![7u64; 64];
        if available() {
            for i in 0..v.len() + 8 {
                for_write(v.as_ptr().wrapping_add(i));
            }
        }
        assert!(v.iter().all(|&x| x == 7));
    }
}
