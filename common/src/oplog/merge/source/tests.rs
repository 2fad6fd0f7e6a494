//! Unit tests of `source`, kept apart so the module stays readable.

use super::*;
use crate::oplog::merge::write_records;
use crate::oplog::test_util::record;

/// Lines far ahead of the rest pin chunks; compaction keeps the chunks
/// in use bounded.
#[test]
fn chunks_in_use_stay_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.tsv.zst");
    let recs = (0..20_000u64).map(|n| {
        let mut r = record(n, "a");
        r.start_ns = 1_795_471_005_000_000_000 + n as i64 * 1_000;
        if n % 50 == 0 {
            r.start_ns += 3_600_000_000_000;
        }
        r.end_ns = r.start_ns + 10;
        r.first_byte_ns = None;
        r
    });
    write_records(&path, recs).unwrap();
    let sizes = Sizes {
        block_bytes: 4 << 10,
        chunk_bytes: 2 << 10,
        thread: true,
    };
    let mut src = Source::open(&path, Clock::NONE, sizes).unwrap();
    let cursor = Cursor::default();
    let opts = super::super::sink::SinkOptions {
        level: 1,
        threads: 0,
        sync: false,
        hold_bytes: 0,
        block_bytes: super::super::sink::BLOCK_BYTES,
    };
    let mut late = Late::new(dir.path(), 1 << 20, opts);
    src.fill_window(&cursor, &mut late).unwrap();
    let (mut n, mut most) = (0, 0);
    while src.head().is_some() {
        n += 1;
        src.advance(&cursor, &mut late).unwrap();
        most = most.max(src.chunks.in_use());
    }
    // The lines far ahead end up parked for the second pass.
    assert!(late.count >= 100, "{}", late.count);
    assert_eq!(n + late.count, 20_000);
    assert!(most <= max_chunks(sizes) + 2, "{most} chunks in use");
    assert!(src.take_error().is_none());
}

#[test]
fn displacement_is_how_far_lines_come_after_their_place() {
    assert_eq!(displacement(&[]), 0);
    assert_eq!(displacement(&[1, 2, 3]), 0);
    assert_eq!(displacement(&[2, 1, 3]), 1);
    assert_eq!(displacement(&[5, 1, 2, 3, 4]), 1);
    assert_eq!(displacement(&[4, 3, 2, 1]), 3);
    assert_eq!(displacement(&[1, 5, 6, 2, 7, 3]), 3);
    assert_eq!(displacement(&[3, 3, 3]), 0);
    // A line far ahead delays nothing; one line in a thousand far out of
    // place does not count.
    let mut starts: Vec<i64> = (0..1_000).collect();
    starts[500] = 5_000;
    assert_eq!(displacement(&starts), 1);
    starts[900] = -1;
    assert_eq!(displacement(&starts), 1);
    // Pairs swapped, and ten lines each after 30 later ones.
    let mut pairs: Vec<i64> = (0..1_000).map(|i| i ^ 1).collect();
    assert_eq!(displacement(&pairs), 1);
    for k in 0..10 {
        pairs[100 * k + 50] -= 30;
    }
    assert_eq!(displacement(&pairs), 1);
}
