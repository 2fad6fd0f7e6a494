//! Spools against the TSV text path: every field round-trips, the text and
//! the merged timeline are byte-identical, damage is a located error.

use super::*;
use crate::oplog::batch::{EntryKey, LogBatch, LogContext, LogEntry};
use crate::oplog::merge::{MergeInput, merge_files};
use crate::oplog::reader::{MAX_LINE_BYTES, OpLogReader};
use crate::oplog::record::{MAX_FIELD_BYTES, OpRecord};
use crate::oplog::writer::TsvZstdFile;
use crate::plan::KeyNaming;
use std::io::Read;
use std::sync::Arc;

/// Batches of two agents' worth of ops with every awkward field: text
/// keys with tabs and newlines, errors (one over the field limit), no
/// first byte, lags and none, warm-up, retries, several endpoints, both
/// key namings.
fn batches(client: &str, count: u64) -> Vec<LogBatch> {
    let plain = Arc::new(LogContext::new(
        client,
        "load",
        "obj/",
        KeyNaming::default(),
    ));
    let fanned = Arc::new(LogContext::new(
        client,
        "st\tage/step",
        "dir\n",
        KeyNaming {
            width: 3,
            fanout: Some(16),
        },
    ));
    let mut out = Vec::new();
    let mut idx = 0;
    for k in 0..count {
        let ctx = if k % 3 == 2 { &fanned } else { &plain };
        let mut b = LogBatch::with_capacity(ctx.clone(), 256);
        let n = 1 + k * 37 % 256;
        for i in 0..n {
            let ep = b.endpoint_id(["mem://a", "http://h\t:9000", "file:///x"][(i % 3) as usize]);
            // Not in start order within the batch, as workers hand them.
            let start =
                1_795_471_005_000_000_000 + (k as i64 * 1_000 + (i as i64 * 7919 % 977)) * 1_000;
            b.push(
                LogEntry {
                    thread: (i % 32) as u32,
                    op: crate::op::OpKind::ALL[(i % 11) as usize],
                    warmup: i % 10 == 0,
                    retries: (i % 4) as u32,
                    n_objects: (i % 3) as u32,
                    bytes: i * 1_048_583,
                    start_ns: start,
                    first_byte_ns: (i % 2 == 0).then_some(start + 123),
                    end_ns: start + 500 + i as i64,
                    lag_ns: (i % 3 == 0).then_some(i * 7),
                    key: match i % 13 {
                        0 => EntryKey::Text(format!("a\tkey\nwith\r\nbreaks/{i}")),
                        1 => EntryKey::Text(String::new()),
                        _ => EntryKey::Index(i * 1_000_003),
                    },
                    error: match i % 17 {
                        0 => format!("throttled: slow\tdown\n{i} ünï"),
                        1 if k == 1 => "é".repeat(MAX_FIELD_BYTES),
                        _ => String::new(),
                    },
                },
                ep,
            );
        }
        b.set_first_idx(idx);
        idx += n;
        out.push(b);
    }
    out
}

/// The same batches written by the TSV writer and as a spool.
fn write_both(dir: &std::path::Path, name: &str, bs: &[LogBatch]) -> (PathBuf, PathBuf) {
    let tsv = dir.join(format!("{name}.tsv.zst"));
    let spool = dir.join(format!("{name}.spool.zst"));
    let mut t = TsvZstdFile::create(&tsv, 1).unwrap();
    let mut s = SpoolWriter::create(&spool).unwrap();
    for b in bs {
        t.write_batch(b).unwrap();
        s.write_batch(b).unwrap();
    }
    let records: usize = bs.iter().map(LogBatch::len).sum();
    assert_eq!(t.finish().unwrap().0, records as u64);
    assert_eq!(s.finish().unwrap().0, records as u64);
    (tsv, spool)
}

use std::path::PathBuf;

/// A log's text as every reader sees it.
fn text_of(path: &std::path::Path) -> Vec<u8> {
    let raw = std::io::BufReader::new(std::fs::File::open(path).unwrap());
    let (mut r, _) = open_text(path, raw).unwrap();
    let mut v = Vec::new();
    r.read_to_end(&mut v).unwrap();
    v
}

fn read_records(path: &std::path::Path) -> (Vec<OpRecord>, Option<OpLogError>) {
    let mut recs = Vec::new();
    for r in OpLogReader::open(path).unwrap() {
        match r {
            Ok(r) => recs.push(r),
            Err(e) => return (recs, Some(e)),
        }
    }
    (recs, None)
}

#[test]
fn spool_text_is_the_tsv_writers_text_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let bs = batches("agent-1", 40);
    let (tsv, spool) = write_both(dir.path(), "a", &bs);
    assert!(is_spool(&spool).unwrap() && !is_spool(&tsv).unwrap());
    let (t, s) = (text_of(&tsv), text_of(&spool));
    assert!(t.len() > 100_000);
    assert!(t == s, "texts differ");
    // And the binary is smaller.
    let size = |p: &std::path::Path| std::fs::metadata(p).unwrap().len();
    assert!(
        size(&spool) < size(&tsv),
        "{} vs {}",
        size(&spool),
        size(&tsv)
    );
}

#[test]
fn every_field_round_trips_as_the_text_path_gives_it() {
    let dir = tempfile::tempdir().unwrap();
    let bs = batches("agent\t2", 12);
    let (_, spool) = write_both(dir.path(), "b", &bs);
    let (got, err) = read_records(&spool);
    assert!(err.is_none(), "{err:?}");
    let mut want: Vec<OpRecord> = bs.iter().flat_map(LogBatch::to_records).collect();
    // As the text path writes them: separators as spaces, long fields cut.
    for r in &mut want {
        for f in [
            &mut r.client_id,
            &mut r.endpoint,
            &mut r.file,
            &mut r.error,
            &mut r.stage,
        ] {
            let cut = crate::oplog::record::cut(f).replace(['\t', '\n', '\r'], " ");
            *f = cut;
        }
    }
    assert_eq!(got.len(), want.len());
    assert_eq!(got, want);
    assert!(
        got.iter().any(|r| r.first_byte_ns.is_none()) && got.iter().any(|r| r.lag_ns.is_some())
    );
    assert!(got.iter().any(|r| r.file.contains("a key with  breaks")));
    assert!(
        got.iter()
            .any(|r| r.stage == "st age/step" && r.file.starts_with("dir "))
    );
}

#[test]
fn merged_timeline_is_byte_identical_from_tsv_and_spools() {
    let dir = tempfile::tempdir().unwrap();
    let (mut tsv_in, mut spool_in) = (Vec::new(), Vec::new());
    for (a, offset) in [(0, 5_000_000i64), (1, -3_000_000), (2, 0)] {
        let bs = batches(&format!("agent-{a}"), 30);
        let (t, s) = write_both(dir.path(), &format!("g{a}"), &bs);
        tsv_in.push(MergeInput::new(t, offset));
        spool_in.push(MergeInput::new(s, offset));
    }
    let (t_out, s_out) = (dir.path().join("t.tsv.zst"), dir.path().join("s.tsv.zst"));
    let a = merge_files(&tsv_in, &t_out, dir.path()).unwrap();
    let b = merge_files(&spool_in, &s_out, dir.path()).unwrap();
    assert_eq!(a.records_out, b.records_out);
    assert!(a.errors.is_empty() && b.errors.is_empty());
    let (t, s) = (
        std::fs::read(&t_out).unwrap(),
        std::fs::read(&s_out).unwrap(),
    );
    assert!(t == s, "compressed timelines differ");
    // A standard zstd TSV, not a spool.
    assert!(!is_spool(&s_out).unwrap());
    // A fast level is the same text, smaller or not.
    let fast = dir.path().join("f.tsv.zst");
    crate::oplog::merge::merge_files_at_level(&spool_in, &fast, dir.path(), -3).unwrap();
    assert!(zstd::decode_all(&t[..]).unwrap() == text_of(&fast));
}

/// A spool with its decompressed stream edited by `edit`.
fn rewritten(path: &std::path::Path, edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let bytes = std::fs::read(path).unwrap();
    let mut body = zstd::decode_all(&bytes[HEADER_BYTES..]).unwrap();
    edit(&mut body);
    let mut out = bytes[..HEADER_BYTES].to_vec();
    out.extend(zstd::encode_all(&body[..], 1).unwrap());
    out
}

#[test]
fn damage_is_an_error_naming_file_and_record_after_the_records_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let bs = batches("a", 5);
    let (_, spool) = write_both(dir.path(), "d", &bs);
    let first = bs[0].len();
    // The op byte of the second batch's first record: after the first
    // batch, the second's header (4 + 8 + 4 + 2 + 4 × endpoints).
    let bad = dir.path().join("bad.spool.zst");
    let mut at = None;
    std::fs::write(
        &bad,
        rewritten(&spool, |body| {
            // Find the second batch tag by decoding lengths is brittle; use
            // the record count of a clean read instead: corrupt the last
            // byte (a record's flags or text) of the stream.
            let n = body.len();
            body[n - 1] = 0xff;
            body.truncate(n);
            at = Some(n);
        }),
    )
    .unwrap();
    let (got, err) = read_records(&bad);
    let msg = err.expect("an error").to_string();
    assert!(
        msg.contains("bad.spool.zst") && msg.contains("spool record"),
        "{msg}"
    );
    assert!(got.len() >= first, "records before the damage are kept");
    let total: usize = bs.iter().map(LogBatch::len).sum();
    assert!(got.len() < total);

    // An unknown block tag where a block starts.
    let tag = dir.path().join("tag.spool.zst");
    std::fs::write(&tag, rewritten(&spool, |body| body.push(9))).unwrap();
    let (got, err) = read_records(&tag);
    assert_eq!(got.len(), total);
    let msg = err.expect("an error").to_string();
    assert!(msg.contains("unknown block tag 9"), "{msg}");
    assert!(
        msg.contains(&format!("spool record {}", total + 1)),
        "{msg}"
    );
}

#[test]
fn unknown_version_is_refused_with_its_byte_offset() {
    let dir = tempfile::tempdir().unwrap();
    let (_, spool) = write_both(dir.path(), "v", &batches("a", 2));
    let mut bytes = std::fs::read(&spool).unwrap();
    bytes[20] = 2;
    let v2 = dir.path().join("v2.spool.zst");
    std::fs::write(&v2, &bytes).unwrap();
    let msg = OpLogReader::open(&v2).unwrap_err().to_string();
    assert!(
        msg.contains("v2.spool.zst:1: byte 20: spool format version 2"),
        "{msg}"
    );
}

#[test]
fn a_cut_spool_reads_to_its_last_whole_record_then_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let bs = batches("a", 60);
    let total: usize = bs.iter().map(LogBatch::len).sum();
    let (_, spool) = write_both(dir.path(), "c", &bs);
    let bytes = std::fs::read(&spool).unwrap();
    let mut last = 0;
    // Cut at many places: the records read only grow with the length, and
    // a cut anywhere but the end is reported.
    // (The header alone is a stage without ops, read without error: see
    // the test below. These records fit one frame: other cuts are inside.)
    for cut in (HEADER_BYTES + 1..bytes.len())
        .step_by(bytes.len() / 23)
        .chain([bytes.len()])
    {
        let p = dir.path().join("cut.spool.zst");
        std::fs::write(&p, &bytes[..cut]).unwrap();
        let (got, err) = read_records(&p);
        assert!(got.len() >= last, "cut {cut}");
        last = got.len();
        let want: Vec<OpRecord> = bs
            .iter()
            .flat_map(LogBatch::to_records)
            .take(got.len())
            .collect();
        assert_eq!(
            got.iter().map(|r| r.idx).collect::<Vec<_>>(),
            want.iter().map(|r| r.idx).collect::<Vec<_>>()
        );
        if cut == bytes.len() {
            assert!(err.is_none());
            assert_eq!(got.len(), total);
        } else {
            let msg = err.expect("a cut is reported").to_string();
            assert!(
                msg.contains("cut.spool.zst:") && msg.contains("spool"),
                "{msg}"
            );
        }
    }
}

#[test]
fn a_spool_without_records_reads_as_the_header_alone() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("empty.spool.zst");
    SpoolWriter::create(&p).unwrap().finish().unwrap();
    assert_eq!(std::fs::metadata(&p).unwrap().len(), HEADER_BYTES as u64);
    let (got, err) = read_records(&p);
    assert!(got.is_empty() && err.is_none(), "{err:?}");
    assert_eq!(
        text_of(&p),
        crate::oplog::record::header_line().into_bytes()
    );
}

/// LEB128 of `v`.
fn leb(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[test]
fn a_record_decoded_from_memory_is_the_record_decoded_byte_by_byte() {
    use super::decode::decode_fixed;
    use super::{NO_FIRST_BYTE, NO_LAG, RECORD_BYTES};
    use crate::oplog::batch::TEXT_KEY;
    let values = [0, 1, 127, 128, 300, 1 << 35, u64::MAX, 42, 7, 65535];
    for flags in [
        0,
        NO_FIRST_BYTE,
        NO_LAG | TEXT_KEY,
        NO_FIRST_BYTE | NO_LAG | TEXT_KEY,
    ] {
        let mut rec = vec![flags, 3];
        let mut want = [0u64; 10];
        for (f, v) in values.iter().enumerate() {
            let left_out = (f == 2 && flags & NO_FIRST_BYTE != 0)
                || (f == 4 && flags & TEXT_KEY != 0)
                || (f == 5 && flags & NO_LAG != 0);
            if !left_out {
                leb(*v, &mut rec);
                want[f] = *v;
            }
        }
        let used = rec.len();
        // What follows the record (the next one) is not read.
        rec.resize(RECORD_BYTES, 0xff);
        let mut got = [0u64; 10];
        assert_eq!(decode_fixed(&rec, &mut got), Some(used), "flags {flags}");
        assert_eq!(got, want, "flags {flags}");
    }
    // A varint of 11 bytes is damage, not a value.
    let mut rec = vec![0, 3];
    rec.extend([0xff; 11]);
    rec.resize(RECORD_BYTES, 0);
    assert_eq!(decode_fixed(&rec, &mut [0; 10]), None);
}

#[test]
fn a_batch_larger_than_a_block_is_cut_into_blocks_and_reads_the_same() {
    use super::encode::BLOCK_RECORDS;
    let dir = tempfile::tempdir().unwrap();
    let ctx = Arc::new(LogContext::new("big", "load", "obj/", KeyNaming::default()));
    let n = BLOCK_RECORDS * 3 + 17;
    let mut b = LogBatch::with_capacity(ctx, n);
    for i in 0..n as u64 {
        let ep = b.endpoint_id(["mem://a", "mem://b"][(i % 2) as usize]);
        let start = 1_795_471_005_000_000_000 + (i as i64 % 97) * 1_000;
        b.push(
            LogEntry {
                thread: (i % 8) as u32,
                op: crate::op::OpKind::ALL[(i % 11) as usize],
                warmup: false,
                retries: 0,
                n_objects: 1,
                bytes: i,
                start_ns: start,
                first_byte_ns: None,
                end_ns: start + 10,
                lag_ns: None,
                key: if i % 5 == 0 {
                    EntryKey::Text(format!("text key {i}"))
                } else {
                    EntryKey::Index(i)
                },
                error: if i % 7 == 0 {
                    format!("io: {i}")
                } else {
                    String::new()
                },
            },
            ep,
        );
    }
    b.set_first_idx(5);
    let (tsv, spool) = write_both(dir.path(), "big", std::slice::from_ref(&b));
    assert!(text_of(&tsv) == text_of(&spool), "texts differ");
    let (got, err) = read_records(&spool);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(got.len(), n);
    assert_eq!(got.last().unwrap().idx, 5 + n as u64 - 1);
    // The first batch block (after the strings and the context it names)
    // holds BLOCK_RECORDS records, not the whole batch.
    let body = zstd::decode_all(&std::fs::read(&spool).unwrap()[HEADER_BYTES..]).unwrap();
    let mut at = 0;
    let first_n = loop {
        match body[at] {
            TAG_STRING => {
                let len = u32::from_le_bytes(body[at + 1..at + 5].try_into().unwrap());
                at += 5 + len as usize;
            }
            TAG_CONTEXT => at += 1 + 17,
            TAG_BATCH => break u32::from_le_bytes(body[at + 13..at + 17].try_into().unwrap()),
            t => panic!("block tag {t}"),
        }
    };
    assert_eq!(first_n as usize, BLOCK_RECORDS);
}

/// A spool made of `body` (the decompressed blocks) behind a valid header.
fn spool_of(dir: &std::path::Path, name: &str, body: &[u8]) -> PathBuf {
    let path = dir.join(name);
    let mut bytes = header().to_vec();
    bytes.extend(zstd::encode_all(body, 1).unwrap());
    std::fs::write(&path, bytes).unwrap();
    path
}

/// A string block.
fn string_block(s: &[u8], out: &mut Vec<u8>) {
    out.push(TAG_STRING);
    out.extend((s.len() as u32).to_le_bytes());
    out.extend(s);
}

/// String 0, context 0 on it, and a batch of `n` records claimed, with
/// one endpoint (string 0): what precedes the records of a batch.
fn batch_head(n: u32, out: &mut Vec<u8>) {
    string_block(b"a", out);
    out.push(TAG_CONTEXT);
    for _ in 0..3 {
        out.extend(0u32.to_le_bytes());
    }
    out.push(1);
    out.extend(0u32.to_le_bytes());
    out.push(TAG_BATCH);
    out.extend(0u32.to_le_bytes());
    out.extend(0u64.to_le_bytes());
    out.extend(n.to_le_bytes());
    out.extend(1u16.to_le_bytes());
    out.extend(0u32.to_le_bytes());
}

/// A GET with a text key of `key_len` bytes, no first byte, no lag.
fn text_key_record(key_len: usize, out: &mut Vec<u8>) {
    use crate::oplog::batch::TEXT_KEY;
    out.extend([TEXT_KEY | NO_FIRST_BYTE | NO_LAG, 0]);
    for _ in 0..7 {
        leb(0, out);
    }
    out.extend((key_len as u32).to_le_bytes());
    out.resize(out.len() + key_len, b'k');
}

#[test]
fn what_a_spool_claims_cannot_make_its_reader_allocate_without_bound() {
    use super::decode::MAX_BATCH_TEXT_BYTES;
    let dir = tempfile::tempdir().unwrap();
    let error_of = |path: &std::path::Path| {
        let (_, err) = read_records(path);
        err.expect("an error").to_string()
    };

    // A key longer than any the writer writes is corrupt, not read.
    let mut body = Vec::new();
    batch_head(1, &mut body);
    text_key_record(MAX_FIELD_BYTES + 1, &mut body);
    let msg = error_of(&spool_of(dir.path(), "long-key.spool.zst", &body));
    assert!(msg.contains("corrupt length"), "{msg}");

    // Keys of a batch past the bound: the batch is refused before more of
    // it is held (a few bytes of zstd would otherwise decode to any size).
    let n = MAX_BATCH_TEXT_BYTES / MAX_FIELD_BYTES + 1;
    let mut body = Vec::new();
    batch_head(n as u32, &mut body);
    for _ in 0..n {
        text_key_record(MAX_FIELD_BYTES, &mut body);
    }
    let path = spool_of(dir.path(), "keys.spool.zst", &body);
    assert!(std::fs::metadata(&path).unwrap().len() < (1 << 20));
    let msg = error_of(&path);
    assert!(msg.contains("bytes of keys and errors"), "{msg}");
    assert!(msg.contains("keys.spool.zst"), "{msg}");

    // Strings past the tables' bound.
    let mut body = Vec::new();
    let big = vec![b's'; MAX_LINE_BYTES];
    for _ in 0..65 {
        string_block(&big, &mut body);
    }
    let msg = error_of(&spool_of(dir.path(), "strings.spool.zst", &body));
    assert!(msg.contains("string and context tables"), "{msg}");

    // A count far above the records there: the batch reads as cut short,
    // without reserving room for the count.
    let mut body = Vec::new();
    batch_head(1 << 20, &mut body);
    text_key_record(3, &mut body);
    let (got, err) = read_records(&spool_of(dir.path(), "count.spool.zst", &body));
    assert_eq!(got.len(), 1);
    assert!(err.expect("an error").to_string().contains("cut short"));
}
