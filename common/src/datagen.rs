//! Payload bytes that can be rebuilt later: block `i` of object `key` in a
//! run with seed `s` is always the same bytes, on any host, in any process.
//!
//! Each block of [`BLOCK_BYTES`] is filled from its own Xoshiro256++ stream,
//! seeded from (seed, hash of key, block index), so a reader can regenerate
//! any block on its own to verify what it read. FNV-1a hashes the key
//! because it is stable across Rust releases and platforms (std's hasher is
//! not promised to be).

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// Granularity of regeneration (and later of dedup): 4 KiB, the common
/// page and dedup block size.
pub const BLOCK_BYTES: usize = 4096;

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
/// so neighbouring blocks get unrelated streams.
fn block_seed(seed: u64, key_hash: u64, block: u64) -> u64 {
    let mut z = seed ^ key_hash.rotate_left(21) ^ block.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Fills `buf`, which starts at block `first_block` of the object, with its
/// content. A final partial block gets the prefix of its full content.
pub fn fill(seed: u64, key: &str, first_block: u64, buf: &mut [u8]) {
    let kh = key_hash(key);
    for (i, chunk) in buf.chunks_mut(BLOCK_BYTES).enumerate() {
        let mut rng =
            Xoshiro256PlusPlus::seed_from_u64(block_seed(seed, kh, first_block + i as u64));
        let mut words = chunk.chunks_exact_mut(8);
        for w in &mut words {
            w.copy_from_slice(&rng.next_u64().to_le_bytes());
        }
        let tail = words.into_remainder();
        if !tail.is_empty() {
            let last = rng.next_u64().to_le_bytes();
            tail.copy_from_slice(&last[..tail.len()]);
        }
    }
}

/// The whole content of an object of `size` bytes.
pub fn object(seed: u64, key: &str, size: u64) -> Bytes {
    let mut buf = vec![0u8; size as usize];
    fill(seed, key, 0, &mut buf);
    Bytes::from(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_coordinates_same_bytes() {
        assert_eq!(object(7, "a", 10_000), object(7, "a", 10_000));
        assert_ne!(object(7, "a", 4096), object(8, "a", 4096));
        assert_ne!(object(7, "a", 4096), object(7, "b", 4096));
    }

    #[test]
    fn any_block_regenerates_alone() {
        let whole = object(3, "k", 5 * BLOCK_BYTES as u64 + 100);
        let mut block = vec![0u8; BLOCK_BYTES];
        fill(3, "k", 2, &mut block);
        assert_eq!(&whole[2 * BLOCK_BYTES..3 * BLOCK_BYTES], &block[..]);
        let mut tail = vec![0u8; 100];
        fill(3, "k", 5, &mut tail);
        assert_eq!(&whole[5 * BLOCK_BYTES..], &tail[..]);
    }

    #[test]
    fn blocks_differ() {
        let data = object(1, "x", 2 * BLOCK_BYTES as u64);
        assert_ne!(&data[..BLOCK_BYTES], &data[BLOCK_BYTES..]);
    }
}
