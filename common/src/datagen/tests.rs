//! Unit tests of `datagen`, kept apart so the module stays readable.

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
        reuse: false,
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
        let lane_seed = seed.wrapping_add(((STATE_WORDS * lane) as u64).wrapping_mul(GOLDEN_GAMMA));
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
            fill_with::<Portable, 1>(&generator, offset, &mut want);
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

/// Spans made several blocks at a time and one at a time hold the
/// same bytes, with and without dedup copies between them.
#[test]
fn side_by_side_does_not_change_bytes() {
    for s in [spec(21, 1, 1.0), spec(21, 1, 2.5), spec(21, 3, 1.5)] {
        let generator = Gen::new(&s, "pairs");
        for len in [9 * BLOCK_BYTES + 5, 7 * BLOCK_BYTES] {
            let mut one = vec![0u8; len];
            fill_with::<Portable, 1>(&generator, 3, &mut one);
            for (ways, got) in [
                (2, vec_filled_with::<2>(&generator, len)),
                (4, vec_filled_with::<4>(&generator, len)),
            ] {
                assert!(got == one, "{s:?} {ways} ways, {len} bytes");
            }
        }
        let len = SIDE_BY_SIDE_SPAN_MAX + 3 * BLOCK_BYTES + 99;
        let mut single = vec![0u8; len];
        fill(&s, "pairs", 5, &mut single);
        let mut pairs = vec![1u8; len];
        for (i, chunk) in pairs.chunks_mut(5 * BLOCK_BYTES + 7).enumerate() {
            fill(&s, "pairs", 5 + (i * (5 * BLOCK_BYTES + 7)) as u64, chunk);
        }
        assert!(single == pairs, "{s:?}");
    }
}

fn vec_filled_with<const WAYS: usize>(generator: &Gen, len: usize) -> Vec<u8> {
    let mut v = vec![1u8; len];
    fill_with::<Portable, WAYS>(generator, 3, &mut v);
    v
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

#[test]
fn reuse_gives_every_object_the_same_bytes_made_once() {
    let spec = DataSpec {
        reuse: true,
        ..DataSpec::new(99)
    };
    // A size no other test uses, so the kept payload is this test's.
    let len = (1 << 20) + 4096 * 3;
    let a = object(&spec, "a", len);
    let b = object(&spec, "b/other", len);
    assert_eq!(a, b, "same bytes for every key");
    assert_eq!(a.as_ptr(), b.as_ptr(), "made once, handed out again");
    assert_eq!(
        a,
        object(&DataSpec::new(99), "", len),
        "the empty key's bytes"
    );
    assert_ne!(a, object(&DataSpec::new(99), "a", len));
    assert!(verify(&spec, "any key", 0, &a).is_ok());
    // A part of a multipart upload is the same span of those bytes.
    let part = span(&spec, "c", 4096, 8192);
    assert_eq!(&part[..], &a[4096..4096 + 8192]);
    // Another seed is another payload.
    let other = DataSpec { seed: 98, ..spec };
    assert_ne!(object(&other, "a", len), a);
}
