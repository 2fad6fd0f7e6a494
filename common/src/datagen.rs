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

mod payload;
pub use payload::{PAYLOAD_ALIGN, POOL_BUFFERS, POOL_BYTES};

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
    /// Every object gets the same bytes: those of an object with the empty
    /// key. A payload is generated once and handed out again (fio's
    /// default, `refill_buffers=0`), so a PUT costs no generation, and a
    /// verifying GET checks any object against the same bytes. Dedup across
    /// objects is then total, whatever `dedup` says within one.
    pub reuse: bool,
}

impl DataSpec {
    /// Incompressible data without dedup.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            dedup: 1,
            compress: 1.0,
            reuse: false,
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
pub(crate) fn splitmix64(state: &mut u64) -> u64 {
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
    step_tail(&mut lanes, tail);
}

/// Spans up to this size make several blocks side by side
/// ([`random_into_n`]); larger ones one at a time. Making several streams
/// at once is 1.4x (two) to 1.7x (four) the bytes per second while the
/// span stays in cache (measured up to 8 MiB on a 2-CPU EPYC VM with
/// 32 MiB of L3: the case of a reused payload buffer), but 0.55x when it
/// goes to DRAM: one sequential stream of whole cache lines is written
/// without reading the lines first, interleaved ones are not. 4 MiB keeps
/// well inside the cache of any server core.
const SIDE_BY_SIDE_SPAN_MAX: usize = 4 << 20;

/// [`random_into`] for two contents at once, into outputs of one length.
/// The streams are independent dependency chains, so the core runs them
/// side by side where one stream alone leaves it waiting on its own
/// results. (Each stream is its own local, stepped in a loop over zipped
/// outputs: a loop over an array of streams keeps them in memory and runs
/// at a third of one stream's speed.)
#[inline(always)]
fn random_into2<S: Stream>([seed_a, seed_b]: [u64; 2], [a, b]: [&mut [u8]; 2]) {
    let (mut la, mut lb) = (S::new(seed_a), S::new(seed_b));
    let (steps_a, tail_a) = a.as_chunks_mut::<STEP_BYTES>();
    let (steps_b, tail_b) = b.as_chunks_mut::<STEP_BYTES>();
    for (x, y) in steps_a.iter_mut().zip(steps_b.iter_mut()) {
        la.step(x);
        lb.step(y);
    }
    step_tail(&mut la, tail_a);
    step_tail(&mut lb, tail_b);
}

/// [`random_into2`] with four contents.
#[inline(always)]
fn random_into4<S: Stream>([sa, sb, sc, sd]: [u64; 4], [a, b, c, d]: [&mut [u8]; 4]) {
    let (mut la, mut lb, mut lc, mut ld) = (S::new(sa), S::new(sb), S::new(sc), S::new(sd));
    let (steps_a, tail_a) = a.as_chunks_mut::<STEP_BYTES>();
    let (steps_b, tail_b) = b.as_chunks_mut::<STEP_BYTES>();
    let (steps_c, tail_c) = c.as_chunks_mut::<STEP_BYTES>();
    let (steps_d, tail_d) = d.as_chunks_mut::<STEP_BYTES>();
    let steps = steps_a.iter_mut().zip(steps_b.iter_mut());
    let more = steps_c.iter_mut().zip(steps_d.iter_mut());
    for ((w, x), (y, z)) in steps.zip(more) {
        la.step(w);
        lb.step(x);
        lc.step(y);
        ld.step(z);
    }
    step_tail(&mut la, tail_a);
    step_tail(&mut lb, tail_b);
    step_tail(&mut lc, tail_c);
    step_tail(&mut ld, tail_d);
}

/// The last, partial step of a stream: the first `tail.len()` bytes of
/// its next output.
#[inline(always)]
fn step_tail<S: Stream>(lanes: &mut S, tail: &mut [u8]) {
    if !tail.is_empty() {
        let mut last = [0u8; STEP_BYTES];
        lanes.step(&mut last);
        let n = tail.len();
        tail.copy_from_slice(&last[..n]);
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
            key_hash: key_hash(if spec.reuse { "" } else { key }),
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

    /// The seeds of `N` blocks from `first` on, and their random parts
    /// (the zero parts are written here).
    #[inline(always)]
    fn heads<'a, const N: usize>(
        &self,
        first: u64,
        blocks: &'a mut [[u8; BLOCK_BYTES]; N],
    ) -> ([u64; N], [&'a mut [u8]; N]) {
        let seeds = std::array::from_fn(|k| {
            content_seed(self.seed, self.key_hash, self.content(first + k as u64))
        });
        let random = self.random_len.min(BLOCK_BYTES);
        let heads = blocks.each_mut().map(|b| {
            let (head, zeros) = b.split_at_mut(random);
            zeros.fill(0);
            head
        });
        (seeds, heads)
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
    fill_with::<Portable, 2>(&generator, offset, buf);
}

#[inline(always)]
/// `WAYS` is how many blocks of a span in cache are made side by side
/// (1, 2 or 4): as many streams as the vector registers hold without
/// spilling (four with AVX-512's 32 registers, two with AVX2's 16).
fn fill_with<S: Stream, const WAYS: usize>(generator: &Gen, offset: u64, buf: &mut [u8]) {
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
    // Side by side only without dedup, where every block is a content of
    // its own (with it, most blocks are copies of the one before).
    let ways = match rest.len() <= SIDE_BY_SIDE_SPAN_MAX && generator.dedup == 1 {
        true => WAYS,
        false => 1,
    };
    let (blocks, tail) = rest.as_chunks_mut::<BLOCK_BYTES>();
    let mut i = 0;
    while i < blocks.len() {
        let content = generator.content(block);
        let made = if i > 0 && generator.content(block - 1) == content {
            // A dedup copy of the block before: copying is cheaper than
            // making.
            let (done, todo) = blocks.split_at_mut(i);
            todo[0] = done[i - 1];
            1
        } else if let (4, Some((group, _))) = (ways, blocks[i..].split_first_chunk_mut::<4>()) {
            let (seeds, heads) = generator.heads(block, group);
            random_into4::<S>(seeds, heads);
            4
        } else if let (2.., Some((group, _))) = (ways, blocks[i..].split_first_chunk_mut::<2>()) {
            let (seeds, heads) = generator.heads(block, group);
            random_into2::<S>(seeds, heads);
            2
        } else {
            generator.content_into::<S>(content, &mut blocks[i]);
            1
        };
        i += made;
        block += made as u64;
    }
    if !tail.is_empty() {
        generator.content_into::<S>(generator.content(block), tail);
    }
}

/// The first `size` bytes of an object, in a page-aligned buffer that is
/// reused once the returned bytes (and all their clones) are dropped (see
/// [`payload`]).
pub fn object(spec: &DataSpec, key: &str, size: u64) -> Bytes {
    span(spec, key, 0, size)
}

/// `len` bytes of an object from byte `offset` on (a part of a multipart
/// upload), in a reused page-aligned buffer as [`object`] makes.
pub fn span(spec: &DataSpec, key: &str, offset: u64, len: u64) -> Bytes {
    let len = usize::try_from(len).expect("object size fits in memory");
    if spec.reuse {
        return payload::reused(spec, offset, len, |buf| fill(spec, key, offset, buf));
    }
    payload::pooled(len, |buf| fill(spec, key, offset, buf))
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
        fill_with::<Portable, 4>(generator, offset, buf);
    }

    #[target_feature(enable = "avx512f")]
    pub(super) fn verify_avx512(generator: &Gen, offset: u64, data: &[u8]) -> Result<(), Mismatch> {
        verify_with::<Portable>(generator, offset, data)
    }

    #[target_feature(enable = "avx2")]
    pub(super) fn fill_avx2(generator: &Gen, offset: u64, buf: &mut [u8]) {
        fill_with::<Avx2, 2>(generator, offset, buf);
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
mod tests;
