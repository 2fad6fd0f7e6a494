//! Each format read from a fixture written the way its tool writes it
//! (`tests/fixtures/traces/README.md` says which source each mirrors), with
//! exact values; damage located; unknown ops counted by name.

use super::*;
use crate::clock::parse_rfc3339_ns;
use crate::op::OpKind;
use crate::oplog::{OpRecord, write_records};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/traces")
        .join(name)
}

fn ns(t: &str) -> i64 {
    parse_rfc3339_ns(t).unwrap()
}

fn read_all(path: &Path) -> (TraceFormat, Vec<TraceOp>) {
    let r = TraceReader::open(path).unwrap();
    let format = r.format();
    (format, r.collect::<Result<_, _>>().unwrap())
}

fn known(k: OpKind) -> TraceOpKind {
    TraceOpKind::Known(k)
}

fn unknown(s: &str) -> TraceOpKind {
    TraceOpKind::Unknown(s.to_string())
}

#[test]
fn warp_2019_without_client_id() {
    let (format, ops) = read_all(&fixture("warp-2019.csv.zst"));
    assert_eq!(format, TraceFormat::Warp);
    assert_eq!(
        ops,
        [
            TraceOp {
                line: 2,
                start_ns: ns("2019-11-13T16:07:06.3173431Z"),
                duration_ns: 76_998_700,
                client: String::new(),
                op: known(OpKind::Put),
                key: "jX7aQn4L/4DMbFzH4FRaQ.rnd".to_string(),
                size: 10_485_760,
                n_objects: 1,
                failed: false,
                warmup: false,
            },
            TraceOp {
                line: 3,
                start_ns: ns("2019-11-13T16:07:07.5Z"),
                duration_ns: 30_046_800,
                client: String::new(),
                op: known(OpKind::Get),
                key: "jX7aQn4L/4DMbFzH4FRaQ.rnd".to_string(),
                size: 10_485_760,
                n_objects: 1,
                failed: false,
                warmup: false,
            },
        ]
    );
}

#[test]
fn warp_2024_thirteen_columns_quoted_error_and_trailer() {
    let path = fixture("warp-get-2024.csv.zst");
    let (format, ops) = read_all(&path);
    // Same header as s3dlio: told apart by the first record's thread.
    assert_eq!(format, TraceFormat::Warp);
    assert_eq!(ops.len(), 4, "the `# warp get ...` trailer is no op");
    assert_eq!(
        ops[0],
        TraceOp {
            line: 2,
            start_ns: ns("2024-06-12T12:03:05.112233445Z"),
            duration_ns: 17_966_555,
            client: "aXbT".to_string(),
            op: known(OpKind::Put),
            key: "zpXi9sQb/1.NvrA6bBqGvPZMoGp.rnd".to_string(),
            size: 4096,
            n_objects: 1,
            failed: false,
            warmup: false,
        }
    );
    assert_eq!(ops[2].start_ns, ns("2024-06-12T12:03:06Z"));
    assert_eq!(ops[2].duration_ns, 2_000_000);
    assert_eq!(ops[3].op, known(OpKind::Get));
    assert!(ops[3].failed);
    assert_eq!(ops[3].line, 5);
    assert_eq!(ops[3].duration_ns, 300_000);

    let s = TraceStats::scan(&path).unwrap();
    assert_eq!(s.format, TraceFormat::Warp);
    assert_eq!(s.ops, 4);
    assert!(s.sorted);
    assert_eq!(s.max_disorder_ns, 0);
    assert_eq!(s.clients, ["aXbT"]);
    assert!(s.unknown.is_empty());
    let get = &s.metrics.ops[&OpKind::Get];
    assert_eq!((get.count, get.errors, get.bytes), (2, 1, 4096));
    assert_eq!(get.latency.len(), 1, "a failed op has no latency sample");
    assert!(get.latency.equivalent(get.latency.max(), 2_000_000));
    let put = &s.metrics.ops[&OpKind::Put];
    assert_eq!((put.count, put.errors, put.bytes), (2, 0, 8192));
    assert_eq!(s.first_start_ns, Some(ns("2024-06-12T12:03:05.112233445Z")));
    assert_eq!(s.last_end_ns, Some(ns("2024-06-12T12:03:06.002Z")));
    assert_eq!(s.span_ns(), 889_766_555);
}

#[test]
fn warp_2025_cat_column_two_clients_unknown_op() {
    let path = fixture("warp-mixed-2025.csv.zst");
    let (format, ops) = read_all(&path);
    assert_eq!(format, TraceFormat::Warp);
    let kinds: Vec<_> = ops.iter().map(|o| o.op.clone()).collect();
    assert_eq!(
        kinds,
        [
            known(OpKind::Put),
            known(OpKind::Stat),
            known(OpKind::Get),
            known(OpKind::Delete),
            known(OpKind::Retention),
        ]
    );
    assert_eq!(ops[2].start_ns, ns("2025-03-02T09:30:00.03Z"));
    assert_eq!(ops[2].duration_ns, 10_000_000);
    assert_eq!(ops[2].size, 1_048_576);

    let s = TraceStats::scan(&path).unwrap();
    assert_eq!(s.ops, 5);
    assert_eq!(s.clients, ["Kq2mLs", "Pw9xRt"]);
    assert!(s.unknown.is_empty(), "{:?}", s.unknown);
    assert_eq!(s.unknown_ops(), 0);
    assert_eq!(s.metrics.total_ops(), 5);
    assert!(s.sorted);
}

#[test]
fn warp_2026_last_byte_plain_and_quoted_line_break() {
    let path = fixture("warp-multipart-2026.csv");
    let (format, ops) = read_all(&path);
    assert_eq!(format, TraceFormat::Warp);
    // The second record spans lines 3 and 4; the third is on line 5.
    let lines: Vec<u64> = ops.iter().map(|o| o.line).collect();
    assert_eq!(lines, [2, 3, 5]);
    assert!(ops.iter().all(|o| o.op == unknown("PUTPART")));
    assert!(ops[1].failed && !ops[0].failed && !ops[2].failed);
    // `end` is found by name although `last_byte` sits before it.
    assert_eq!(ops[0].start_ns, ns("2026-06-01T22:15:40.0000001Z"));
    assert_eq!(ops[0].duration_ns, 10_000_000);
    assert_eq!(ops[1].start_ns, ns("2026-06-01T22:15:40.00000015Z"));
    assert_eq!(ops[1].duration_ns, 2_000_000);

    let s = TraceStats::scan(&path).unwrap();
    assert_eq!(s.unknown, BTreeMap::from([("PUTPART".to_string(), 3)]));
    assert_eq!(s.metrics.total_ops(), 0);
    assert_eq!(s.ops, 3);
}

#[test]
fn s3dlio_current_names_and_completion_order() {
    let path = fixture("s3dlio-0.9.22.tsv.zst");
    let (format, ops) = read_all(&path);
    assert_eq!(format, TraceFormat::S3dlio);
    assert_eq!(
        ops[3],
        TraceOp {
            line: 5,
            start_ns: ns("2026-01-20T08:00:00.016500000Z"),
            duration_ns: 500_000,
            client: "agent-2".to_string(),
            op: known(OpKind::RangeGet),
            key: "bench/d/obj_0".to_string(),
            size: 4096,
            n_objects: 1,
            failed: false,
            warmup: false,
        }
    );
    assert_eq!(ops[2].op, known(OpKind::Stat), "HEAD");
    assert_eq!(ops[4].op, known(OpKind::List));
    assert_eq!(ops[4].n_objects, 3);
    assert_eq!(ops[5].op, known(OpKind::DeleteBatch));
    assert!(ops[6].failed);

    let s = TraceStats::scan(&path).unwrap();
    // Written as ops completed: HEAD (line 4) started before the GET on
    // line 3, by 0.5 ms.
    assert!(!s.sorted);
    assert_eq!(s.max_disorder_ns, 500_000);
    assert_eq!(s.clients, ["agent-1", "agent-2"]);
    assert!(s.unknown.is_empty(), "{:?}", s.unknown);
    assert_eq!(s.metrics.ops[&OpKind::DeleteBatch].count, 1);
    let get = &s.metrics.ops[&OpKind::Get];
    assert_eq!((get.count, get.errors, get.bytes), (2, 1, 65_536));
    assert_eq!(s.metrics.ops[&OpKind::RangeGet].count, 1);
    assert_eq!(s.first_start_ns, Some(ns("2026-01-20T08:00:00.000001Z")));
    assert_eq!(s.last_end_ns, Some(ns("2026-01-20T08:00:00.0195Z")));
}

#[test]
fn s3dlio_before_client_ids() {
    let path = fixture("s3dlio-0.9.21.tsv.zst");
    let s = TraceStats::scan(&path).unwrap();
    assert_eq!(s.format, TraceFormat::S3dlio);
    assert_eq!(s.clients, [""]);
    assert_eq!(
        s.unknown,
        BTreeMap::from([("DELETE_PREFIX".to_string(), 1)])
    );
    let (_, ops) = read_all(&path);
    assert_eq!(ops[0].start_ns, ns("2025-10-03T17:45:12.000000042Z"));
    assert_eq!(ops[0].key, "/mnt/data/train/f_0.npz");
    assert_eq!(ops[1].duration_ns, 700_001);
}

#[test]
fn empty_thirteen_column_log_is_s3dlio() {
    // s3dlio writes its header when the log opens; warp writes no file
    // without ops.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.tsv");
    std::fs::write(
        &path,
        format!("{}\n", crate::oplog::HEADER[..13].join("\t")),
    )
    .unwrap();
    let s = TraceStats::scan(&path).unwrap();
    assert_eq!(s.format, TraceFormat::S3dlio);
    assert_eq!((s.ops, s.span_ns(), s.first_start_ns), (0, 0, None));
    assert!(s.sorted && s.clients.is_empty());
}

#[test]
fn chorus_timeline_keeps_warmup_ops_apart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("timeline.tsv.zst");
    let t0 = ns("2026-11-23T21:56:45Z");
    let rec = |i: u64, op: OpKind, client: &str, warmup: bool| OpRecord {
        idx: i,
        thread: 0,
        op,
        client_id: client.to_string(),
        n_objects: 1,
        bytes: 1000 * (i + 1),
        endpoint: "mem://".to_string(),
        file: format!("k/{i}"),
        error: String::new(),
        start_ns: t0 + i as i64 * 1_000,
        first_byte_ns: None,
        end_ns: t0 + i as i64 * 1_000 + 500,
        stage: "load".to_string(),
        warmup,
        retries: 0,
        lag_ns: None,
    };
    let recs = vec![
        rec(0, OpKind::Put, "agent-b", true),
        rec(1, OpKind::Get, "agent-a", false),
        rec(2, OpKind::MultipartPut, "agent-b", false),
        rec(3, OpKind::Get, "agent-b", false),
    ];
    write_records(&path, recs).unwrap();

    let (format, ops) = read_all(&path);
    assert_eq!(format, TraceFormat::Chorus);
    assert!(ops[0].warmup && !ops[1].warmup);
    assert_eq!(ops[2].op, known(OpKind::MultipartPut));
    assert_eq!(ops[1].size, 2000);
    assert_eq!(ops[3].duration_ns, 500);

    let s = TraceStats::scan(&path).unwrap();
    assert_eq!(s.ops, 4);
    assert_eq!(s.clients, ["agent-b", "agent-a"]);
    assert_eq!(s.warmup.total_ops(), 1);
    assert_eq!(s.warmup.ops[&OpKind::Put].bytes, 1000);
    assert_eq!(s.metrics.total_ops(), 3);
    assert!(!s.metrics.ops.contains_key(&OpKind::Put));
    assert_eq!(s.metrics.ops[&OpKind::Get].count, 2);
    assert!(s.sorted);
}

/// The lines of a fixture, decompressed, for tests that damage them.
fn fixture_text(name: &str) -> String {
    let bytes = std::fs::read(fixture(name)).unwrap();
    String::from_utf8(zstd::decode_all(&bytes[..]).unwrap()).unwrap()
}

#[test]
fn damaged_line_is_located_and_ends_the_iteration() {
    let dir = tempfile::tempdir().unwrap();
    let text = fixture_text("s3dlio-0.9.22.tsv.zst");
    type Damage<'a> = &'a dyn Fn(&str) -> String;
    let cases: [(Damage, &str); 4] = [
        (
            &|l: &str| l.replacen("\t65536\t", "\t64KiB\t", 1),
            "bad number in column `bytes`: `64KiB`",
        ),
        (
            &|l: &str| l.replacen("2026-01-20T08:00:00.010000000Z", "yesterday", 1),
            "bad time in column `start`: `yesterday`",
        ),
        (
            &|l: &str| l.rsplit_once('\t').unwrap().0.to_string(),
            "wrong column count: 12 columns, the header has 13",
        ),
        (
            &|l: &str| l.replacen("2026-01-20T08:00:00.014000000Z", "2026-01-20T07:00:00Z", 2),
            "end before start",
        ),
    ];
    for (i, (damage, want)) in cases.iter().enumerate() {
        // Line 3 (the GET) is damaged.
        let damaged: Vec<String> = text
            .lines()
            .enumerate()
            .map(|(n, l)| if n == 2 { damage(l) } else { l.to_string() })
            .collect();
        let path = dir.path().join(format!("case{i}.tsv"));
        std::fs::write(&path, damaged.join("\n") + "\n").unwrap();
        let mut r = TraceReader::open(&path).unwrap();
        assert_eq!(
            r.next().unwrap().unwrap().line,
            2,
            "ops before the damage are kept"
        );
        let err = r.next().unwrap().unwrap_err();
        assert_eq!(err.line(), Some(3));
        let msg = err.to_string();
        assert!(msg.starts_with(&format!("{}:3: ", path.display())), "{msg}");
        assert!(msg.contains(want), "{msg} / {want}");
        assert!(r.next().is_none(), "the iterator ends after damage");
        let scan = TraceStats::scan(&path).unwrap_err().to_string();
        assert_eq!(scan, msg);
    }
}

#[test]
fn open_errors_are_located() {
    let dir = tempfile::tempdir().unwrap();
    let msg = TraceReader::open(&dir.path().join("absent.tsv.zst"))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("absent.tsv.zst: "), "{msg}");

    let path = dir.path().join("other.csv");
    std::fs::write(&path, "time,op,key\n1,GET,a\n").unwrap();
    let msg = TraceReader::open(&path).unwrap_err().to_string();
    assert!(
        msg.contains("other.csv:1: header: missing columns"),
        "{msg}"
    );

    let path = dir.path().join("open-quote.csv");
    let text = fixture_text("warp-get-2024.csv.zst");
    // Cut the closing quote of the quoted error on line 5: the record runs
    // to the end of the file.
    let text = text.replacen("connection refused\"", "connection refused", 1);
    std::fs::write(&path, text).unwrap();
    let mut r = TraceReader::open(&path).unwrap();
    let errs: Vec<String> = r
        .by_ref()
        .filter_map(|o| o.err())
        .map(|e| e.to_string())
        .collect();
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].contains("open-quote.csv:5: quoted field not closed"),
        "{}",
        errs[0]
    );

    // A truncated zstd stream (this small one is a single block, so the
    // header is already past the cut).
    let bytes = std::fs::read(fixture("s3dlio-0.9.22.tsv.zst")).unwrap();
    let path = dir.path().join("cut.tsv.zst");
    std::fs::write(&path, &bytes[..bytes.len() - 8]).unwrap();
    let msg = match TraceReader::open(&path) {
        Err(e) => e,
        Ok(r) => r.last().unwrap().unwrap_err(),
    }
    .to_string();
    assert!(
        msg.contains("cut.tsv.zst:") && msg.contains("zstd"),
        "{msg}"
    );
}

#[test]
fn too_many_unknown_op_names_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("names.tsv");
    let mut text = format!("{}\n", crate::oplog::HEADER[..13].join("\t"));
    for i in 0..=MAX_UNKNOWN_OP_NAMES {
        text.push_str(&format!(
            "{i}\t1\tOP{i}\tc\t1\t0\tep\tk\t\t2026-01-20T08:00:00Z\t\t2026-01-20T08:00:01Z\t1000000000\n"
        ));
    }
    std::fs::write(&path, text).unwrap();
    let err = TraceStats::scan(&path).unwrap_err();
    assert_eq!(err.line(), Some(MAX_UNKNOWN_OP_NAMES as u64 + 2));
    assert!(err.to_string().contains("distinct unknown op names"));
}
