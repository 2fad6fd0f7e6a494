//! Payload bytes that can be rebuilt later: byte `o` of object `key` in a
//! run described by a [`DataSpec`] is always the same value, on any host, in
//! any process, so a reader can regenerate what it should have read and
//! [`verify`] it.
//!
//! # Layout
//!
//! An object is a sequence of [`BLOCK_BYTES`] blocks. Block `b` shows
//! *content* `b / dedup`, so with a dedup factor N every content appears
//! exactly N times in a row (the last group of an object whose block count is
//! not a multiple of N is shorter). A content is
//!
//! * a random prefix of `random_len` bytes, then
//! * zeros up to the end of the block,
//!
//! where `random_len` is chosen from the compress factor (see
//! [`DataSpec::random_len`]). The random prefix comes from [`LANES`]
//! independent Xoshiro256++ streams interleaved word by word: 64-bit word
//! `w` of the block is the `w / LANES`-th output of stream `w % LANES`,
//! written little-endian. Stream `l` of a content is exactly
//! `rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(c + 4·l·φ)` where
//! `c = content_seed(seed, FNV-1a(key), content)` and φ is SplitMix64's
//! increment — i.e. the streams take consecutive SplitMix64 outputs of one
//! seed, four words each. Interleaving several streams gives the CPU
//! independent dependency chains (and lets the compiler use SIMD lanes); a
//! single stream is one long serial chain and runs at a fraction of memory
//! bandwidth.
//!
//! Everything is a function of (seed, key, block) only, so any block — or
//! any byte range, aligned or not — can be rebuilt alone.
//!
//! # Speed
//!
//! The workspace builds for baseline x86-64, where the compiler leaves the
//! lanes scalar: ~8 GB/s on one core, about half of `memcpy`. So the hot
//! loops are also compiled with AVX-512 (the portable code, which the
//! compiler then vectorises with native 64-bit rotates) and with AVX2
//! (intrinsics), and [`fill`] and [`verify`] pick one at run time; every
//! path makes the same bytes (tested). Dedup copies are copied, not made
//! again. `scripts/bench/datagen.sh` measures it against `memcpy`.
//!
//! # Why this shape
//!
//! * Dedup by whole blocks at 4 KiB matches what dedup engines fingerprint;
//!   keeping copies adjacent (`b / N`) makes the ratio exact for objects of
//!   any size, not only ones spanning some large stride. A consequence: a
//!   stream compressor with a window (zstd, gzip) over a *whole* object also
//!   sees the copies, so it reports about `dedup × compress`; the compress
//!   factor holds per block and over the deduplicated data.
//! * Compression by a random part plus a zero run makes the ratio almost the
//!   same for every compressor (LZ4, zstd, gzip all shrink a zero run to a
//!   few bytes and cannot shrink random bytes), and keeps it per-block local.
//!   Whole zero blocks never occur (the random prefix is never empty), so
//!   zero-block detection does not kick in.
//! * FNV-1a hashes the key because it is stable across Rust releases and
//!   platforms (std's hasher is not promised to be). The split of a block
//!   into random and zero bytes uses one IEEE division and rounding, which
//!   gives the same result on every platform.

use std::fmt;

use bytes::Bytes;

/// Granularity of regeneration, dedup and compression: 4 KiB, the common
/// page and dedup block size.
pub const BLOCK_BYTES: usize = 4096;

/// [`BLOCK_BYTES`] as a byte offset type.
const BLOCK: u64 = BLOCK_BYTES as u64;

/// Independent Xoshiro256++ streams interleaved in a block. Eight: enough
/// independent chains to fill a superscalar core, and one AVX-512 register
/// (or two AVX2 registers) per state word. Changing it changes every byte
/// generated, so it is fixed.
pub const LANES: usize = 8;

/// Bytes of one Xoshiro256++ output.
const WORD_BYTES: usize = 8;

/// Bytes produced by one step of all lanes.
const STEP_BYTES: usize = LANES * WORD_BYTES;

/// SplitMix64's increment (φ·2⁶⁴), which is also how far apart the lanes'
/// seeds are per state word.
const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// Words of Xoshiro256 state per lane.
const STATE_WORDS: usize = 4;

/// Largest dedup factor accepted. 2²⁰ blocks are 4 GiB of one content;
/// beyond that a "dedup factor" only means "one content per object".
pub const MAX_DEDUP: u32 = 1 << 20;

/// Largest compress factor accepted. At 64 the random part is 61 bytes of a
/// block, and rounding it to whole bytes alone moves the ratio by up to
/// ~0.8%, so much beyond that the ratio can no longer be held within 2%.
pub const MAX_COMPRESS: f64 = 64.0;

/// What zstd level 3 spends per block besides its random bytes, when a
/// block is random bytes then a zero run: a block of `r` random bytes packs
/// to about `r + ZSTD_FIXED_BYTES + r × ZSTD_SKIP_PER_RANDOM_BYTE` bytes.
/// The fixed part is the sequence coding the zero run plus zstd's block and
/// literals headers spread over the 32 of our blocks in each of its 128 KiB
/// blocks. The part growing with `r` is the zero bytes zstd's match finder
/// leaves as literals: in incompressible input it moves its search step up
/// by one byte every 256 bytes without a match (`kSearchStrength` = 8), so
/// it lands in the zero run up to `r / 256` bytes late, `r / 512` on
/// average. The fixed 2.6 bytes is what a block costs at small `r` (61–150
/// bytes random: 2.6–3.0). Measured with `zstd::bulk::compress(_, 3)`
/// (zstd 1.5.7) on 64 MiB objects for C from 1.01 to 64: within 0.25% for
/// C ≤ 6 (C = 2: −0.09%, C = 3: +0.17%) and within 0.75% up to 64; what is
/// left is the search step's phase (a few bytes either way) and rounding
/// `r` to whole bytes. Below C ≈ 1.02 the zero run is too short for zstd to
/// find and the ratio is 1.0, which is still within 2%. Without this model
/// (random part = BLOCK_BYTES / C) the ratio comes out ~0.5% low at C = 2
/// and ~4% low at C = 64.
const ZSTD_FIXED_BYTES: f64 = 2.6;
/// See [`ZSTD_FIXED_BYTES`].
const ZSTD_SKIP_PER_RANDOM_BYTE: f64 = 1.0 / 512.0;

/// Fewest random bytes in a block, so no block is ever all zeros (storage
/// that detects zero blocks would otherwise skip it).
const MIN_RANDOM_BYTES: usize = 1;

/// How an object's payload is made: the run seed and the two data-reduction
/// factors.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DataSpec {
    /// The run seed; every byte depends on it.
    pub seed: u64,
    /// Dedup factor, ≥ 1: N consecutive blocks share one content.
    pub dedup: u32,
    /// Compress factor, ≥ 1.0: zstd (level 3) compresses the data by this
    /// ratio.
    pub compress: f64,
}

impl DataSpec {
    /// Incompressible data without dedup.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            dedup: 1,
            compress: 1.0,
        }
    }

    /// Checks the factors are in range. The generator itself clamps
    /// out-of-range values instead of failing, so callers check once when a
    /// plan is read.
    pub fn check(&self) -> Result<(), String> {
        if !(1..=MAX_DEDUP).contains(&self.dedup) {
            return Err(format!(
                "dedup must be from 1 to {MAX_DEDUP}, not {}",
                self.dedup
            ));
        }
        if !self.compress.is_finite() || !(1.0..=MAX_COMPRESS).contains(&self.compress) {
            return Err(format!(
                "compress must be from 1.0 to {MAX_COMPRESS}, not {}",
                self.compress
            ));
        }
        Ok(())
    }

    /// Random bytes at the start of each block; the rest are zeros. Solves
    /// `BLOCK_BYTES / packed(r) = C` for `r` with the zstd cost model of
    /// [`ZSTD_FIXED_BYTES`].
    pub fn random_len(&self) -> usize {
        let c = self.compress;
        // NaN (rejected by `check`) is treated as incompressible.
        if c.is_nan() || c <= 1.0 {
            return BLOCK_BYTES;
        }
        let c = c.min(MAX_COMPRESS);
        let len = ((BLOCK_BYTES as f64 / c - ZSTD_FIXED_BYTES) / (1.0 + ZSTD_SKIP_PER_RANDOM_BYTE))
            .round();
        // Float-to-int `as` saturates; clamp keeps it inside the block.
        (len as usize).clamp(MIN_RANDOM_BYTES, BLOCK_BYTES)
    }
}

/// The first byte where data differs from what the generator makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// Offset in the object (not in the buffer handed to [`verify`]).
    pub offset: u64,
    /// What the generator makes there.
    pub expected: u8,
    /// What the data holds.
    pub found: u8,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "data differs at byte {}: expected {:#04x}, found {:#04x}",
            self.offset, self.expected, self.found
        )
    }
}

impl std::error::Error for Mismatch {}

/// FNV-1a, 64-bit.
pub fn key_hash(key: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Mixes the three coordinates into one stream seed (splitmix64 finalizer),
/// so neighbouring contents get unrelated streams.
fn content_seed(seed: u64, key_hash: u64, content: u64) -> u64 {
    let mut z = seed ^ key_hash.rotate_left(21) ^ content.wrapping_mul(GOLDEN_GAMMA);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// One SplitMix64 step, as `rand_xoshiro::SplitMix64` does it (which is
/// how `Xoshiro256PlusPlus::seed_from_u64` expands a seed).
#[inline(always)]
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(GOLDEN_GAMMA);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// [`LANES`] Xoshiro256++ generators stepping together. Implemented once
/// portably and once per x86 vector extension; all give the same bytes
/// (tested), the choice is made at run time from what the CPU has.
trait Stream {
    /// Seeds the lanes for a content; see [`lane_seeds`].
    fn new(seed: u64) -> Self;
    /// Writes the next output of every lane, lane `l` at bytes `8l..8l+8`.
    fn step(&mut self, out: &mut [u8; STEP_BYTES]);
}

/// The Xoshiro256 state of every lane, word-major (`s[word][lane]`). Lane
/// `l` gets SplitMix64 outputs `4l+1 ..= 4l+4` of `seed`, the same state as
/// `Xoshiro256PlusPlus::seed_from_u64(seed + 4·l·φ)`. Four consecutive
/// SplitMix64 outputs are never all zero (its output function is a
/// bijection), so rand_xoshiro's all-zero fallback never applies.
#[inline(always)]
fn lane_seeds(seed: u64) -> [[u64; LANES]; STATE_WORDS] {
    let mut state = seed;
    let mut s = [[0u64; LANES]; STATE_WORDS];
    for lane in 0..LANES {
        for word in &mut s {
            word[lane] = splitmix64(&mut state);
        }
    }
    s
}

/// Plain Rust; with AVX-512 enabled the compiler vectorises it itself
/// (native 64-bit rotates), without it the lanes still give the core
/// independent dependency chains.
struct Portable {
    s: [[u64; LANES]; STATE_WORDS],
}

impl Stream for Portable {
    #[inline(always)]
    fn new(seed: u64) -> Self {
        Self {
            s: lane_seeds(seed),
        }
    }

    /// Each operation is its own loop over the lanes, the shape the
    /// vectoriser recognises.
    #[inline(always)]
    #[expect(
        clippy::needless_range_loop,
        reason = "indexing every lane array alike keeps the step readable against the Xoshiro256++ reference"
    )]
    fn step(&mut self, out: &mut [u8; STEP_BYTES]) {
        let [s0, s1, s2, s3] = &mut self.s;
        let mut result = [0u64; LANES];
        let mut t = [0u64; LANES];
        for l in 0..LANES {
            result[l] = s0[l]
                .wrapping_add(s3[l])
                .rotate_left(23)
                .wrapping_add(s0[l]);
        }
        for l in 0..LANES {
            t[l] = s1[l] << 17;
        }
        for l in 0..LANES {
            s2[l] ^= s0[l];
        }
        for l in 0..LANES {
            s3[l] ^= s1[l];
        }
        for l in 0..LANES {
            s1[l] ^= s2[l];
        }
        for l in 0..LANES {
            s0[l] ^= s3[l];
        }
        for l in 0..LANES {
            s2[l] ^= t[l];
        }
        for l in 0..LANES {
            s3[l] = s3[l].rotate_left(45);
        }
        let (words, _) = out.as_chunks_mut::<WORD_BYTES>();
        for l in 0..LANES {
            words[l] = result[l].to_le_bytes();
        }
    }
}

/// Fills `out` (at most a block) with the start of the random stream of
/// the content whose seed is `seed`.
#[inline(always)]
fn random_into<S: Stream>(seed: u64, out: &mut [u8]) {
    let mut lanes = S::new(seed);
    let (steps, tail) = out.as_chunks_mut::<STEP_BYTES>();
    for step in steps {
        lanes.step(step);
    }
    if !tail.is_empty() {
        let mut last = [0u8; STEP_BYTES];
        lanes.step(&mut last);
        tail.copy_from_slice(&last[..tail.len()]);
    }
}

/// Generator for one (spec, key): the per-object values computed once.
struct Gen {
    seed: u64,
    key_hash: u64,
    dedup: u64,
    random_len: usize,
}

impl Gen {
    fn new(spec: &DataSpec, key: &str) -> Self {
        Self {
            seed: spec.seed,
            key_hash: key_hash(key),
            dedup: u64::from(spec.dedup.clamp(1, MAX_DEDUP)),
            random_len: spec.random_len(),
        }
    }

    #[inline(always)]
    fn content(&self, block: u64) -> u64 {
        block / self.dedup
    }

    /// Writes the first `out.len()` (≤ [`BLOCK_BYTES`]) bytes of `content`.
    #[inline(always)]
    fn content_into<S: Stream>(&self, content: u64, out: &mut [u8]) {
        let seed = content_seed(self.seed, self.key_hash, content);
        let random = self.random_len.min(out.len());
        let (head, zeros) = out.split_at_mut(random);
        random_into::<S>(seed, head);
        zeros.fill(0);
    }
}

/// Fills `buf` with the object's bytes from byte `offset` on. Any offset
/// and length work; a span need not start or end on a block boundary.
pub fn fill(spec: &DataSpec, key: &str, offset: u64, buf: &mut [u8]) {
    let generator = Gen::new(spec, key);
    #[cfg(target_arch = "x86_64")]
    {
        if x86::has_avx512() {
            // SAFETY: the CPU has the features `fill_avx512` is built for.
            return unsafe { x86::fill_avx512(&generator, offset, buf) };
        }
        if x86::has_avx2() {
            // SAFETY: the CPU has the features `fill_avx2` is built for.
            return unsafe { x86::fill_avx2(&generator, offset, buf) };
        }
    }
    fill_with::<Portable>(&generator, offset, buf);
}

#[inline(always)]
fn fill_with<S: Stream>(generator: &Gen, offset: u64, buf: &mut [u8]) {
    let mut rest = buf;
    let mut block = offset / BLOCK;
    // The part of `offset`'s block before the buffer is not wanted: make
    // the whole block aside and copy the part that is.
    let within = (offset % BLOCK) as usize;
    if within != 0 && !rest.is_empty() {
        let mut whole = [0u8; BLOCK_BYTES];
        generator.content_into::<S>(generator.content(block), &mut whole);
        let n = (BLOCK_BYTES - within).min(rest.len());
        let (head, tail) = rest.split_at_mut(n);
        head.copy_from_slice(&whole[within..within + n]);
        rest = tail;
        block += 1;
    }
    let (blocks, tail) = rest.as_chunks_mut::<BLOCK_BYTES>();
    for i in 0..blocks.len() {
        let content = generator.content(block);
        // A dedup copy of the block before: copying is cheaper than making.
        if i > 0 && generator.content(block - 1) == content {
            let (done, todo) = blocks.split_at_mut(i);
            todo[0] = done[i - 1];
        } else {
            generator.content_into::<S>(content, &mut blocks[i]);
        }
        block += 1;
    }
    if !tail.is_empty() {
        generator.content_into::<S>(generator.content(block), tail);
    }
}

/// The first `size` bytes of an object.
pub fn object(spec: &DataSpec, key: &str, size: u64) -> Bytes {
    let len = usize::try_from(size).expect("object size fits in memory");
    let mut buf = vec![0u8; len];
    fill(spec, key, 0, &mut buf);
    Bytes::from(buf)
}

/// Checks that `data` is the object's bytes from byte `offset` on, and names
/// the first byte that differs. Regenerates one block at a time, so memory
/// use does not grow with `data`.
pub fn verify(spec: &DataSpec, key: &str, offset: u64, data: &[u8]) -> Result<(), Mismatch> {
    let generator = Gen::new(spec, key);
    #[cfg(target_arch = "x86_64")]
    {
        if x86::has_avx512() {
            // SAFETY: the CPU has the features `verify_avx512` is built for.
            return unsafe { x86::verify_avx512(&generator, offset, data) };
        }
        if x86::has_avx2() {
            // SAFETY: the CPU has the features `verify_avx2` is built for.
            return unsafe { x86::verify_avx2(&generator, offset, data) };
        }
    }
    verify_with::<Portable>(&generator, offset, data)
}

#[inline(always)]
fn verify_with<S: Stream>(generator: &Gen, offset: u64, data: &[u8]) -> Result<(), Mismatch> {
    let mut expected = [0u8; BLOCK_BYTES];
    // Which content `expected` holds, so dedup copies are made once.
    let mut made: Option<u64> = None;
    let mut pos = offset;
    let mut rest = data;
    while !rest.is_empty() {
        let content = generator.content(pos / BLOCK);
        if made != Some(content) {
            generator.content_into::<S>(content, &mut expected);
            made = Some(content);
        }
        let within = (pos % BLOCK) as usize;
        let n = (BLOCK_BYTES - within).min(rest.len());
        let (found, next) = rest.split_at(n);
        let want = &expected[within..within + n];
        if found != want {
            let i = found
                .iter()
                .zip(want)
                .position(|(f, w)| f != w)
                .unwrap_or(0);
            return Err(Mismatch {
                offset: pos + i as u64,
                expected: want[i],
                found: found[i],
            });
        }
        pos += n as u64;
        rest = next;
    }
    Ok(())
}

/// The x86-64 paths. The workspace builds for baseline x86-64 (SSE2), where
/// the compiler keeps the generator scalar (~8 GB/s, under half of memcpy
/// on a server core); so the hot loops are compiled again with AVX2 and
/// with AVX-512 enabled and picked at run time.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::{
        __m256i, _mm256_add_epi64, _mm256_or_si256, _mm256_slli_epi64, _mm256_srli_epi64,
        _mm256_storeu_si256, _mm256_xor_si256,
    };

    use super::{
        Gen, LANES, Mismatch, Portable, STATE_WORDS, STEP_BYTES, Stream, WORD_BYTES, fill_with,
        lane_seeds, verify_with,
    };

    /// 64-bit lanes in a 256-bit register.
    const AVX2_LANES: usize = 4;
    /// 256-bit registers holding one state word of all [`LANES`].
    const AVX2_REGS: usize = LANES / AVX2_LANES;
    /// Bytes of one 256-bit register.
    const AVX2_BYTES: usize = AVX2_LANES * WORD_BYTES;

    pub(super) fn has_avx512() -> bool {
        std::arch::is_x86_feature_detected!("avx512f")
    }

    pub(super) fn has_avx2() -> bool {
        std::arch::is_x86_feature_detected!("avx2")
    }

    /// The portable code, which the compiler vectorises with AVX-512's
    /// 64-bit rotates (`vprolq`).
    #[target_feature(enable = "avx512f")]
    pub(super) fn fill_avx512(generator: &Gen, offset: u64, buf: &mut [u8]) {
        fill_with::<Portable>(generator, offset, buf);
    }

    #[target_feature(enable = "avx512f")]
    pub(super) fn verify_avx512(generator: &Gen, offset: u64, data: &[u8]) -> Result<(), Mismatch> {
        verify_with::<Portable>(generator, offset, data)
    }

    #[target_feature(enable = "avx2")]
    pub(super) fn fill_avx2(generator: &Gen, offset: u64, buf: &mut [u8]) {
        fill_with::<Avx2>(generator, offset, buf);
    }

    #[target_feature(enable = "avx2")]
    pub(super) fn verify_avx2(generator: &Gen, offset: u64, data: &[u8]) -> Result<(), Mismatch> {
        verify_with::<Avx2>(generator, offset, data)
    }

    /// Xoshiro256++ on four lanes per register, written with intrinsics
    /// because the vectoriser will not emulate 64-bit rotates with AVX2
    /// shifts on its own. Only used inside the `*_avx2` functions, i.e.
    /// after AVX2 was detected: that is what makes the `unsafe` blocks
    /// below sound.
    pub(super) struct Avx2 {
        s: [[__m256i; AVX2_REGS]; STATE_WORDS],
    }

    /// Bit rotation left of each 64-bit lane. `R` is `64 - L`: stable Rust
    /// cannot compute it from `L` in a const generic argument.
    #[inline(always)]
    fn rotl<const L: i32, const R: i32>(x: __m256i) -> __m256i {
        const { assert!(L + R == 64) };
        // SAFETY: AVX2 is available (see `Avx2`).
        unsafe { _mm256_or_si256(_mm256_slli_epi64::<L>(x), _mm256_srli_epi64::<R>(x)) }
    }

    impl Stream for Avx2 {
        #[inline(always)]
        fn new(seed: u64) -> Self {
            // Lane `r·4 + i` of a state word goes to lane `i` of register
            // `r`: the same order as the bytes `step` stores.
            // SAFETY: `[u64; LANES]` and `[__m256i; AVX2_REGS]` are both 64
            // plain bytes; any bit pattern is a valid `__m256i`.
            let s = unsafe {
                std::mem::transmute::<
                    [[u64; LANES]; STATE_WORDS],
                    [[__m256i; AVX2_REGS]; STATE_WORDS],
                >(lane_seeds(seed))
            };
            Self { s }
        }

        #[inline(always)]
        fn step(&mut self, out: &mut [u8; STEP_BYTES]) {
            let [s0, s1, s2, s3] = &mut self.s;
            for r in 0..AVX2_REGS {
                // SAFETY: AVX2 is available (see `Avx2`); the store writes
                // bytes `32r..32r+32` of the 64-byte `out`, in bounds.
                // x86 is little-endian, as the portable path's bytes are.
                unsafe {
                    let sum = rotl::<23, 41>(_mm256_add_epi64(s0[r], s3[r]));
                    let result = _mm256_add_epi64(sum, s0[r]);
                    _mm256_storeu_si256(out.as_mut_ptr().add(r * AVX2_BYTES).cast(), result);
                    let t = _mm256_slli_epi64::<17>(s1[r]);
                    s2[r] = _mm256_xor_si256(s2[r], s0[r]);
                    s3[r] = _mm256_xor_si256(s3[r], s1[r]);
                    s1[r] = _mm256_xor_si256(s1[r], s2[r]);
                    s0[r] = _mm256_xor_si256(s0[r], s3[r]);
                    s2[r] = _mm256_xor_si256(s2[r], t);
                    s3[r] = rotl::<45, 19>(s3[r]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_xoshiro::Xoshiro256PlusPlus;

    /// The size the checks name.
    const BIG: u64 = 64 << 20;
    /// Allowed relative error of a ratio.
    const TOLERANCE: f64 = 0.02;
    /// zstd level the compress factor is defined for.
    const ZSTD_LEVEL: i32 = 3;

    fn spec(seed: u64, dedup: u32, compress: f64) -> DataSpec {
        DataSpec {
            seed,
            dedup,
            compress,
        }
    }

    fn distinct_blocks(data: &[u8]) -> usize {
        let (blocks, _) = data.as_chunks::<BLOCK_BYTES>();
        let mut sorted: Vec<&[u8; BLOCK_BYTES]> = blocks.iter().collect();
        sorted.sort_unstable();
        sorted.dedup();
        sorted.len()
    }

    fn zstd_ratio(data: &[u8]) -> f64 {
        let packed = zstd::bulk::compress(data, ZSTD_LEVEL).unwrap();
        data.len() as f64 / packed.len() as f64
    }

    fn assert_close(what: &str, got: f64, want: f64) {
        let err = (got - want).abs() / want;
        assert!(
            err <= TOLERANCE,
            "{what}: got {got:.4}, want {want} (error {:.2}%)",
            err * 100.0
        );
    }

    #[test]
    fn streams_are_rand_xoshiro_streams() {
        let s = spec(42, 1, 1.0);
        let block = 5u64;
        let data = object(&s, "obj", 6 * BLOCK);
        let seed = content_seed(42, key_hash("obj"), block);
        let start = (block * BLOCK) as usize;
        let (words, _) = data[start..start + BLOCK_BYTES].as_chunks::<WORD_BYTES>();
        for lane in 0..LANES {
            let lane_seed =
                seed.wrapping_add(((STATE_WORDS * lane) as u64).wrapping_mul(GOLDEN_GAMMA));
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(lane_seed);
            for w in words.iter().skip(lane).step_by(LANES) {
                assert_eq!(u64::from_le_bytes(*w), rng.next_u64(), "lane {lane}");
            }
        }
    }

    /// The x86 vector paths make exactly the portable path's bytes.
    #[test]
    fn every_path_gives_the_same_bytes() {
        for s in [spec(5, 1, 1.0), spec(5, 3, 2.7), spec(5, 1, 50.0)] {
            let generator = Gen::new(&s, "paths");
            for (offset, len) in [
                (0, 5 * BLOCK_BYTES + 77),
                (123, 3 * BLOCK_BYTES),
                (4000, 200),
            ] {
                let mut want = vec![0u8; len];
                fill_with::<Portable>(&generator, offset, &mut want);
                assert_eq!(verify_with::<Portable>(&generator, offset, &want), Ok(()));
                let mut public = vec![0u8; len];
                fill(&s, "paths", offset, &mut public);
                assert_eq!(public, want, "{s:?} {offset}+{len}");
                #[cfg(target_arch = "x86_64")]
                {
                    let mut got = vec![0u8; len];
                    if x86::has_avx2() {
                        // SAFETY: AVX2 was just detected.
                        unsafe { x86::fill_avx2(&generator, offset, &mut got) };
                        assert_eq!(got, want, "avx2 {s:?} {offset}+{len}");
                        // SAFETY: as above.
                        let ok = unsafe { x86::verify_avx2(&generator, offset, &want) };
                        assert_eq!(ok, Ok(()));
                    }
                    if x86::has_avx512() {
                        got.fill(0);
                        // SAFETY: AVX-512F was just detected.
                        unsafe { x86::fill_avx512(&generator, offset, &mut got) };
                        assert_eq!(got, want, "avx512 {s:?} {offset}+{len}");
                        // SAFETY: as above.
                        let ok = unsafe { x86::verify_avx512(&generator, offset, &want) };
                        assert_eq!(ok, Ok(()));
                    }
                }
            }
        }
    }

    #[test]
    fn same_coordinates_same_bytes() {
        let s = spec(7, 1, 1.0);
        assert_eq!(object(&s, "a", 10_000), object(&s, "a", 10_000));
        assert_ne!(object(&s, "a", BLOCK), object(&spec(8, 1, 1.0), "a", BLOCK));
        assert_ne!(object(&s, "a", BLOCK), object(&s, "b", BLOCK));
        let data = object(&s, "x", 2 * BLOCK);
        assert_ne!(&data[..BLOCK_BYTES], &data[BLOCK_BYTES..]);
    }

    #[test]
    fn check_rejects_out_of_range() {
        assert!(DataSpec::new(1).check().is_ok());
        assert!(spec(1, 4, 3.0).check().is_ok());
        assert!(spec(1, MAX_DEDUP, MAX_COMPRESS).check().is_ok());
        assert!(spec(1, 0, 1.0).check().is_err());
        assert!(spec(1, MAX_DEDUP + 1, 1.0).check().is_err());
        assert!(spec(1, 1, 0.5).check().is_err());
        assert!(spec(1, 1, f64::NAN).check().is_err());
        assert!(spec(1, 1, f64::INFINITY).check().is_err());
        assert!(spec(1, 1, MAX_COMPRESS * 2.0).check().is_err());
        // Out-of-range values still generate (clamped), never panic.
        for s in [
            spec(1, 0, f64::NAN),
            spec(1, u32::MAX, 1e9),
            spec(1, 1, -3.0),
        ] {
            let data = object(&s, "k", 3 * BLOCK);
            assert!(verify(&s, "k", 0, &data).is_ok());
        }
    }

    /// Any span, aligned or not, equals the same slice of the whole object.
    #[test]
    fn spans_match_slices_of_the_whole() {
        for s in [
            spec(3, 1, 1.0),
            spec(3, 2, 2.5),
            spec(3, 3, 1.0),
            spec(3, 1, 40.0),
        ] {
            let size = 9 * BLOCK + 100;
            let whole = object(&s, "k", size);
            let cuts: [(u64, u64); 10] = [
                (0, size),
                (2 * BLOCK, BLOCK),
                (9 * BLOCK, 100),
                (1, 10),
                (BLOCK - 3, 7),
                (BLOCK + 17, 3 * BLOCK),
                (5 * BLOCK + 4095, 1),
                (3, size - 3),
                (100, 5 * BLOCK - 99),
                (4 * BLOCK + 63, 65),
            ];
            for (offset, len) in cuts {
                let mut buf = vec![0xaa; len as usize];
                fill(&s, "k", offset, &mut buf);
                let want = &whole[offset as usize..(offset + len) as usize];
                assert_eq!(buf, want, "{s:?} offset {offset} len {len}");
                assert_eq!(
                    verify(&s, "k", offset, want),
                    Ok(()),
                    "{s:?} {offset}+{len}"
                );
            }
            // Past the requested size the object goes on the same way.
            let mut more = vec![0u8; 2 * BLOCK_BYTES];
            fill(&s, "k", size - 50, &mut more);
            assert_eq!(&more[..50], &whole[(size - 50) as usize..]);
        }
    }

    #[test]
    fn flipped_byte_is_found_exactly() {
        for s in [spec(9, 1, 1.0), spec(9, 4, 3.0)] {
            let size = 6 * BLOCK + 1234;
            let good = object(&s, "f", size);
            assert_eq!(verify(&s, "f", 0, &good), Ok(()));
            for at in [
                0u64,
                1,
                BLOCK - 1,
                BLOCK,
                3 * BLOCK + 2000,
                5 * BLOCK + 4000,
                size - 1,
            ] {
                let mut bad = good.to_vec();
                bad[at as usize] ^= 0x10;
                let want = Mismatch {
                    offset: at,
                    expected: good[at as usize],
                    found: good[at as usize] ^ 0x10,
                };
                assert_eq!(verify(&s, "f", 0, &bad), Err(want), "{s:?} at {at}");
                // The same span verified from an unaligned start.
                let from = at.saturating_sub(777);
                assert_eq!(verify(&s, "f", from, &bad[from as usize..]), Err(want));
                // A span that does not include the flip passes.
                if at > 0 {
                    assert_eq!(verify(&s, "f", 0, &bad[..at as usize]), Ok(()));
                }
            }
            // Right bytes at the wrong offset or key are caught too.
            assert!(verify(&s, "f", 1, &good[..BLOCK_BYTES]).is_err());
            assert!(verify(&s, "g", 0, &good).is_err());
        }
    }

    #[test]
    fn dedup_ratio_is_exact() {
        let blocks = (BIG / BLOCK) as usize;
        for n in [1u32, 2, 4] {
            let data = object(&spec(11, n, 1.0), "dedup", BIG);
            let distinct = distinct_blocks(&data);
            assert_close(
                &format!("dedup {n}"),
                (blocks / distinct) as f64,
                f64::from(n),
            );
            assert_eq!(distinct, blocks / n as usize, "dedup {n}");
        }
    }

    #[test]
    fn compress_ratio_is_exact() {
        for c in [1.0, 2.0, 3.0] {
            let data = object(&spec(12, 1, c), "compress", BIG);
            assert_close(&format!("compress {c}"), zstd_ratio(&data), c);
        }
    }

    /// Dedup and compress together: the blocks repeat N times and the
    /// deduplicated data still compresses by C.
    #[test]
    fn dedup_and_compress_combine() {
        let size = 16 << 20;
        let blocks = (size / BLOCK) as usize;
        let (n, c) = (2u32, 3.0);
        let data = object(&spec(13, n, c), "both", size);
        assert_eq!(distinct_blocks(&data), blocks / n as usize);
        let unique: Vec<u8> = data
            .chunks(BLOCK_BYTES * n as usize)
            .flat_map(|g| &g[..BLOCK_BYTES])
            .copied()
            .collect();
        assert_close("compress after dedup", zstd_ratio(&unique), c);
    }

    /// Environment variable telling a child test process where to write.
    const CHILD_OUT: &str = "CHORUS_DATAGEN_CHILD_OUT";
    const TWO_PROCESS_TEST: &str = "datagen::tests::same_bytes_in_two_processes";

    /// Writes an object from a second process (this test binary, run again
    /// with only this test selected) and compares it with this process's.
    #[test]
    fn same_bytes_in_two_processes() {
        let s = spec(0x5eed, 2, 2.0);
        let size = 3 * BLOCK + 321;
        if let Some(path) = std::env::var_os(CHILD_OUT) {
            std::fs::write(path, object(&s, "two/process", size)).unwrap();
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("child.bin");
        let child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([TWO_PROCESS_TEST, "--exact", "--test-threads=1"])
            .env(CHILD_OUT, &path)
            .output()
            .unwrap();
        assert!(
            child.status.success(),
            "child failed: {}\n{}{}",
            child.status,
            String::from_utf8_lossy(&child.stdout),
            String::from_utf8_lossy(&child.stderr)
        );
        let theirs = std::fs::read(&path).expect("child wrote its object");
        assert_eq!(theirs.len() as u64, size);
        assert_eq!(verify(&s, "two/process", 0, &theirs), Ok(()));
        assert_eq!(&theirs[..], &object(&s, "two/process", size)[..]);
    }
}
