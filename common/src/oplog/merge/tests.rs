use super::*;
use crate::oplog::reader::OpLogReader;
use crate::oplog::record::HEADER;
use crate::oplog::test_util::record;
use std::io::Write;

fn read_all(path: &Path) -> Vec<OpRecord> {
    OpLogReader::open(path)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

fn sorted(mut recs: Vec<OpRecord>) -> Vec<OpRecord> {
    recs.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    recs
}

fn shifted(mut r: OpRecord, offset_ns: i64) -> OpRecord {
    r.shift_times(offset_ns);
    r
}

/// Small sizes: blocks of a few dozen lines, a few late lines in memory,
/// a fan-in of 4, so that every path runs.
fn tiny(thread: bool) -> MergeConfig {
    MergeConfig {
        fan_in: 4,
        window_bytes: 8 << 10,
        min_block_bytes: 4 << 10,
        max_block_bytes: 8 << 10,
        chunk_bytes: 2 << 10,
        hold_bytes: 0,
        frame_bytes: 4 << 10,
        late_bytes: 16 << 10,
        probe_bytes: 4 << 10,
        // Two compressors even for one thread's worth of text: tiny frames
        // alternate between them, so the writer's ordering is exercised.
        compress_threads: if thread { 2 } else { 0 },
        read_thread: thread,
        level: OPLOG_ZSTD_LEVEL,
    }
}

/// Three agents' logs in random order, with clock offsets; returns the
/// inputs and the expected merged timeline.
fn make_inputs(dir: &Path, per_agent: u64) -> (Vec<MergeInput>, Vec<OpRecord>) {
    let offsets = [5_000_000i64, -3_000_000, 0];
    let mut inputs = Vec::new();
    let mut expected = Vec::new();
    for (a, offset_ns) in offsets.into_iter().enumerate() {
        let client = format!("agent-{a}");
        let recs: Vec<OpRecord> = (0..per_agent)
            .map(|n| record(n * 3 + a as u64, &client))
            .collect();
        let path = dir.join(format!("{client}.tsv.zst"));
        write_records(&path, recs.clone()).unwrap();
        expected.extend(recs.into_iter().map(|r| shifted(r, offset_ns)));
        inputs.push(MergeInput::new(path, offset_ns));
    }
    (inputs, sorted(expected))
}

/// A log as an agent writes it: `workers` workers doing one op after
/// another, lines in completion order; every `slow`th op takes 100x longer.
fn completion_order(client: &str, n: u64, workers: u64, slow: u64, seed: u64) -> Vec<OpRecord> {
    let base = 1_795_471_005_000_000_000i64;
    let mut next_start = vec![base; workers as usize];
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut recs = Vec::with_capacity(n as usize);
    for i in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let w = (i % workers) as usize;
        let mut lat = 200_000 + (x % 800_000) as i64;
        if slow > 0 && i % slow == slow - 1 {
            lat *= 100;
        }
        let mut r = record(i, client);
        r.thread = w as u64;
        r.start_ns = next_start[w];
        r.end_ns = r.start_ns + lat;
        r.first_byte_ns = r.first_byte_ns.map(|_| r.start_ns + lat / 2);
        next_start[w] = r.end_ns + (x >> 40) as i64 % 10_000;
        recs.push(r);
    }
    recs.sort_by_key(|r| r.end_ns);
    for (i, r) in recs.iter_mut().enumerate() {
        r.idx = i as u64;
    }
    recs
}

fn dir_is_empty(p: &Path) -> bool {
    std::fs::read_dir(p).unwrap().next().is_none()
}

#[test]
fn merges_unsorted_inputs_with_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().join("tmp");
    let (inputs, expected) = make_inputs(dir.path(), 3_000);
    // Inputs really are unsorted.
    let first = read_all(&inputs[0].path);
    assert!(first.windows(2).any(|w| w[0].start_ns > w[1].start_ns));

    let out = dir.path().join("merged.tsv.zst");
    let stats = merge_files(&inputs, &out, &tmp).unwrap();
    assert_eq!(stats.records_in, 9_000);
    assert_eq!(stats.records_out, 9_000);
    assert_eq!(stats.inputs, 3);
    assert!(stats.errors.is_empty());
    let got = read_all(&out);
    assert!(got.windows(2).all(|w| w[0].sort_key() <= w[1].sort_key()));
    assert_eq!(got, expected);
    assert!(dir_is_empty(&tmp));
    assert!(!partial_path(&out, "partial").exists());
}

#[test]
fn late_lines_take_a_second_pass_with_the_same_output() {
    for thread in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("tmp");
        let (inputs, expected) = make_inputs(dir.path(), 5_000);

        let whole = dir.path().join("whole.tsv.zst");
        let stats = merge_files(&inputs, &whole, &tmp).unwrap();
        assert_eq!(stats.late, 0);
        // Random order and blocks of a few dozen lines: most lines are
        // late, spilled in many runs, merged in groups of four.
        let spilled = dir.path().join("spilled.tsv.zst");
        let stats = merge_files_with(&inputs, &spilled, &tmp, &tiny(thread)).unwrap();
        assert_eq!(stats.records_in, 15_000);
        assert_eq!(stats.records_out, 15_000);
        assert!(stats.late > 10_000, "{stats:?}");
        assert!(dir_is_empty(&tmp));
        assert!(!partial_path(&spilled, "partial").exists());
        assert!(!partial_path(&spilled, "partial2").exists());

        let a = read_all(&whole);
        assert_eq!(a, expected);
        assert_eq!(read_all(&spilled), a);
    }
}

#[test]
fn completion_order_needs_no_second_pass() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().join("tmp");
    let mut inputs = Vec::new();
    let mut expected = Vec::new();
    for a in 0..4u64 {
        let client = format!("agent-{a}");
        let recs = completion_order(&client, 20_000, 16, 0, a + 1);
        assert!(recs.windows(2).any(|w| w[0].start_ns > w[1].start_ns));
        let path = dir.path().join(format!("{client}.tsv.zst"));
        write_records(&path, recs.clone()).unwrap();
        let offset_ns = a as i64 * 1_000_003 - 2_000_000;
        expected.extend(recs.into_iter().map(|r| shifted(r, offset_ns)));
        inputs.push(MergeInput::new(path, offset_ns));
    }
    let expected = sorted(expected);
    for cfg in [MergeConfig::default(), tiny(true)] {
        let out = dir.path().join("merged.tsv.zst");
        let stats = merge_files_with(&inputs, &out, &tmp, &cfg).unwrap();
        assert_eq!(stats.late, 0, "{cfg:?}");
        assert_eq!(stats.records_out, 80_000);
        assert_eq!(read_all(&out), expected);
    }

    // A few ops 100x slower than the rest come later than the window.
    let recs = completion_order("slow", 20_000, 16, 997, 9);
    let path = dir.path().join("slow.tsv.zst");
    write_records(&path, recs.clone()).unwrap();
    let out = dir.path().join("slow-merged.tsv.zst");
    let slow = [MergeInput::new(path, 7)];
    let stats = merge_files_with(&slow, &out, &tmp, &tiny(false)).unwrap();
    assert!(stats.late > 0 && stats.late < 100, "{stats:?}");
    assert_eq!(stats.records_out, 20_000);
    let want = sorted(recs.into_iter().map(|r| shifted(r, 7)).collect());
    assert_eq!(read_all(&out), want);
    assert!(dir_is_empty(&tmp));
}

#[test]
fn drifting_clocks_are_corrected_per_op() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().join("tmp");
    let base = 1_795_471_005_000_000_000i64;
    let s = 1_000_000_000i64;
    // One clock ahead and gaining 500 µs/s, one behind and losing 800 µs/s
    // (far more than real drift, so that it shows in the order), measured
    // at the start and a second in; their ops span ~0.8 s.
    let clocks = [
        ClockCorrection::between((base, 3_000_000), (base + s, 3_500_000)),
        ClockCorrection::between((base + s, -2_800_000), (base, -2_000_000)),
    ];
    let mut inputs = Vec::new();
    let mut expected = Vec::new();
    let mut latency = std::collections::HashMap::new();
    for (a, clock) in clocks.into_iter().enumerate() {
        let client = format!("agent-{a}");
        let recs = completion_order(&client, 20_000, 16, 0, a as u64 + 1);
        let path = dir.path().join(format!("{client}.tsv.zst"));
        write_records(&path, recs.clone()).unwrap();
        for r in recs {
            latency.insert((client.clone(), r.idx), r.end_ns - r.start_ns);
            let off = clock.offset_at(r.start_ns);
            assert!((-2_800_000..=3_500_000).contains(&off));
            expected.push(shifted(r, off));
        }
        inputs.push(MergeInput::with_clock(path, clock));
    }
    let expected = sorted(expected);
    for cfg in [MergeConfig::default(), tiny(true), tiny(false)] {
        let out = dir.path().join("merged.tsv.zst");
        let stats = merge_files_with(&inputs, &out, &tmp, &cfg).unwrap();
        assert_eq!(stats.records_out, 40_000, "{cfg:?}");
        let got = read_all(&out);
        assert!(got.windows(2).all(|w| w[0].sort_key() <= w[1].sort_key()));
        for r in &got {
            assert_eq!(
                r.end_ns - r.start_ns,
                latency[&(r.client_id.clone(), r.idx)]
            );
        }
        assert_eq!(got, expected, "{cfg:?}");
    }
    // Half a second in, the first clock is 250 µs further ahead.
    let c = clocks[0];
    assert_eq!(c.offset_at(base + s / 2) - c.offset_at(base), 250_000);
}

#[test]
fn our_lines_are_copied_verbatim_at_offset_zero() {
    let dir = tempfile::tempdir().unwrap();
    let recs = completion_order("agent-0", 5_000, 8, 0, 3);
    let path = dir.path().join("a.tsv.zst");
    write_records(&path, sorted(recs.clone())).unwrap();
    let out = dir.path().join("merged.tsv.zst");
    merge_files(&[MergeInput::new(path.clone(), 0)], &out, dir.path()).unwrap();
    let text = |p: &Path| zstd::decode_all(std::fs::File::open(p).unwrap()).unwrap();
    assert_eq!(text(&out), text(&path));
}

#[test]
fn many_logs_of_stages_merge_in_groups() {
    // Ten "stages" of three agents each, every stage a second after the
    // previous: 30 logs, a fan-in of 4.
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().join("tmp");
    let mut inputs = Vec::new();
    let mut expected = Vec::new();
    for stage in 0..10i64 {
        for a in 0..3u64 {
            let client = format!("agent-{a}");
            let mut recs = completion_order(&client, 500, 4, 0, stage as u64 * 3 + a);
            for r in &mut recs {
                r.start_ns += stage * 1_000_000_000;
                r.end_ns += stage * 1_000_000_000;
                r.first_byte_ns = r.first_byte_ns.map(|t| t + stage * 1_000_000_000);
            }
            let path = dir.path().join(format!("{client}-{stage}.tsv.zst"));
            write_records(&path, recs.clone()).unwrap();
            expected.extend(recs);
            inputs.push(MergeInput::new(path, 0));
        }
    }
    let expected = sorted(expected);
    let out = dir.path().join("merged.tsv.zst");
    let mut cfg = tiny(true);
    cfg.window_bytes = 1 << 20;
    cfg.max_block_bytes = 64 << 10;
    let stats = merge_files_with(&inputs, &out, &tmp, &cfg).unwrap();
    assert_eq!((stats.records_in, stats.records_out), (15_000, 15_000));
    assert!(stats.errors.is_empty());
    assert_eq!(read_all(&out), expected);
    assert!(dir_is_empty(&tmp));
}

#[test]
fn damaged_input_keeps_records_before_damage() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().join("tmp");
    let (mut inputs, _) = make_inputs(dir.path(), 100_000);
    // Cut the second agent's log short.
    let bytes = std::fs::read(&inputs[1].path).unwrap();
    std::fs::write(&inputs[1].path, &bytes[..bytes.len() / 2]).unwrap();
    inputs.push(MergeInput::new(dir.path().join("missing.tsv.zst"), 0));

    for cfg in [MergeConfig::default(), tiny(false)] {
        let out = dir.path().join("merged.tsv.zst");
        let stats = merge_files_with(&inputs, &out, &tmp, &cfg).unwrap();
        assert_eq!(stats.inputs, 4);
        assert_eq!(stats.errors.len(), 2, "{:?}", stats.errors);
        assert!(
            stats.errors[0].contains("agent-1.tsv.zst:"),
            "{:?}",
            stats.errors
        );
        assert!(stats.errors[0].contains("zstd"), "{:?}", stats.errors);
        assert!(
            stats.errors[1].contains("missing.tsv.zst"),
            "{:?}",
            stats.errors
        );
        assert!(stats.records_in > 200_000 && stats.records_in < 300_000);
        assert_eq!(stats.records_in, stats.records_out);
        let got = read_all(&out);
        assert_eq!(got.len() as u64, stats.records_out);
        assert!(got.windows(2).all(|w| w[0].sort_key() <= w[1].sort_key()));
        assert!(dir_is_empty(&tmp));

        // The records kept are exactly the ones before the damage.
        let cut = OpLogReader::open(&inputs[1].path)
            .unwrap()
            .take_while(Result::is_ok)
            .count() as u64;
        assert_eq!(stats.records_in, 200_000 + cut);
    }
}

#[test]
fn bad_line_names_file_and_line_and_keeps_the_lines_before() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plain.tsv");
    let mut text = crate::oplog::header_line();
    let recs: Vec<OpRecord> = (0..300).map(|n| record(n, "a")).collect();
    for r in &recs[..200] {
        r.write_tsv(&mut text);
    }
    text.push_str("200\t0\tGET\ta\t1\tlots\tep\tk\t\t2026-11-23T21:56:45.000000000Z\t\t2026-11-23T21:56:46.000000000Z\t1000000000\tload\t0\t0\t\n");
    for r in &recs[201..] {
        r.write_tsv(&mut text);
    }
    std::fs::write(&path, text).unwrap();
    for cfg in [MergeConfig::default(), tiny(false)] {
        let out = dir.path().join("merged.tsv.zst");
        let stats = merge_files_with(
            &[MergeInput::new(path.clone(), 0)],
            &out,
            &dir.path().join("tmp"),
            &cfg,
        )
        .unwrap();
        assert_eq!(stats.errors.len(), 1);
        let want = format!(
            "{}:202: bad number in column `bytes`: `lots`",
            path.display()
        );
        assert_eq!(stats.errors[0], want);
        assert_eq!(stats.records_out, 200);
        assert_eq!(read_all(&out), sorted(recs[..200].to_vec()));
    }
}

#[test]
fn warp_logs_and_plain_text_merge_with_ours() {
    let dir = tempfile::tempdir().unwrap();
    // A warp/s3dlio log: 13 columns, HEAD, local offsets, CRLF, a comment.
    let warp = dir.path().join("warp.csv.zst");
    let text = "idx\tthread\top\tclient_id\tn_objects\tbytes\tendpoint\tfile\terror\tstart\tfirst_byte\tend\tduration_ns\r\n\
1\t4\tHEAD\tcl1\t1\t0\thttp://h:9000\tb/o2\t\t2026-11-23T21:56:45.5+00:00\t0001-01-01T00:00:00Z\t\t2500\r\n\
0\t3\tGET\tcl1\t1\t4096\thttp://h:9000\tb/o1\t\t2026-11-23T22:56:45.1+01:00\t2026-11-23T22:56:45.15+01:00\t2026-11-23T22:56:45.2+01:00\t100000000\r\n\
# warp command line: warp get ...\r\n";
    let mut enc = zstd::Encoder::new(std::fs::File::create(&warp).unwrap(), 3).unwrap();
    enc.write_all(text.as_bytes()).unwrap();
    enc.finish().unwrap();
    // One of ours, plain text.
    let plain = dir.path().join("ours.tsv");
    let mut text = crate::oplog::header_line();
    let base = crate::clock::parse_rfc3339_ns("2026-11-23T21:56:45Z").unwrap();
    let mut ours = record(5, "agent-0");
    ours.start_ns = base + 300_000_000;
    ours.end_ns = ours.start_ns + 1_000;
    ours.first_byte_ns = None;
    ours.write_tsv(&mut text);
    std::fs::write(&plain, text).unwrap();

    let inputs = [
        MergeInput::new(warp.clone(), 1_000),
        MergeInput::new(plain, 0),
    ];
    let out = dir.path().join("merged.tsv.zst");
    let stats = merge_files(&inputs, &out, dir.path()).unwrap();
    assert!(stats.errors.is_empty(), "{:?}", stats.errors);
    assert_eq!(stats.records_out, 3);
    let raw =
        String::from_utf8(zstd::decode_all(std::fs::File::open(&out).unwrap()).unwrap()).unwrap();
    let lines: Vec<&str> = raw.lines().collect();
    assert_eq!(lines[0], HEADER.join("\t"));
    assert!(lines.iter().all(|l| l.split('\t').count() == HEADER.len()));
    let got = read_all(&out);
    let warp_recs: Vec<OpRecord> = OpLogReader::open(&warp)
        .unwrap()
        .map(|r| shifted(r.unwrap(), 1_000))
        .collect();
    assert_eq!(got, vec![warp_recs[1].clone(), ours, warp_recs[0].clone()]);
    assert_eq!(got[2].op, crate::op::OpKind::Stat);
    assert!(
        lines[1].contains("\t2026-11-23T21:56:45.099999000Z\t"),
        "{}",
        lines[1]
    );
}

#[test]
fn equal_keys_and_equal_starts_keep_a_total_order() {
    // The same log twice, and a log whose lines all share one start.
    let dir = tempfile::tempdir().unwrap();
    let recs = completion_order("agent-1", 3_000, 8, 0, 5);
    let a = dir.path().join("a.tsv.zst");
    write_records(&a, recs.clone()).unwrap();
    let same: Vec<OpRecord> = (0..3_000u64)
        .map(|n| {
            let mut r = record(2_999 - n, if n % 2 == 0 { "agent-0" } else { "agent-2" });
            r.start_ns = recs[1_500].start_ns;
            r.end_ns = r.start_ns + 5;
            r.first_byte_ns = None;
            r
        })
        .collect();
    let b = dir.path().join("b.tsv.zst");
    write_records(&b, same.clone()).unwrap();
    let inputs = [&a, &b, &a].map(|p| MergeInput::new(p.clone(), 0));
    let mut expected = recs.clone();
    expected.extend(same);
    expected.extend(recs);
    let expected = sorted(expected);
    for cfg in [MergeConfig::default(), tiny(true)] {
        let out = dir.path().join("merged.tsv.zst");
        let stats = merge_files_with(&inputs, &out, &dir.path().join("tmp"), &cfg).unwrap();
        assert_eq!(stats.records_out, 9_000);
        assert_eq!(read_all(&out), expected);
    }
}

#[test]
fn empty_inputs_give_a_header_only_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("merged.tsv.zst");
    let stats = merge_files(&[], &out, dir.path()).unwrap();
    assert_eq!((stats.records_in, stats.records_out), (0, 0));
    assert!(read_all(&out).is_empty());

    let empty = dir.path().join("empty.tsv.zst");
    write_records(&empty, []).unwrap();
    let stats = merge_files(&[MergeInput::new(empty, 0)], &out, dir.path()).unwrap();
    assert_eq!((stats.records_in, stats.records_out), (0, 0));
    assert!(stats.errors.is_empty());
}

#[test]
fn unwritable_output_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (inputs, _) = make_inputs(dir.path(), 10);
    let out = dir.path().join("no/such/dir/merged.tsv.zst");
    let err = merge_files(&inputs, &out, &dir.path().join("tmp")).unwrap_err();
    assert!(err.to_string().contains("merged.tsv.zst.partial"), "{err}");
}

#[test]
fn slow_ops_are_put_in_place_in_the_held_output() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().join("tmp");
    // Every 997th op 100x slower: far later than a block of a few dozen
    // lines, within a few hundred KiB of output.
    let recs = completion_order("agent-0", 20_000, 16, 997, 11);
    let path = dir.path().join("a.tsv.zst");
    write_records(&path, recs.clone()).unwrap();
    let input = [MergeInput::new(path, -5)];
    let want = sorted(recs.into_iter().map(|r| shifted(r, -5)).collect());
    for thread in [false, true] {
        let out = dir.path().join("merged.tsv.zst");
        let cfg = MergeConfig {
            hold_bytes: 8 << 20,
            ..tiny(thread)
        };
        let stats = merge_files_with(&input, &out, &tmp, &cfg).unwrap();
        assert!(stats.placed > 10, "{stats:?}");
        assert_eq!(stats.late, 0, "{stats:?}");
        assert_eq!(stats.records_out, 20_000);
        assert_eq!(read_all(&out), want);

        // A hold too small for some (or all) of them: those take a second
        // pass, which rewrites only the frames they go to.
        for hold in [192 << 10, 16 << 10] {
            let cfg = MergeConfig {
                hold_bytes: hold,
                ..tiny(thread)
            };
            let stats = merge_files_with(&input, &out, &tmp, &cfg).unwrap();
            assert!(
                stats.late > 0 && stats.placed + stats.late >= 10,
                "{stats:?}"
            );
            assert_eq!(stats.records_out, 20_000);
            assert_eq!(read_all(&out), want);
        }
        assert_eq!(stats.records_out, 20_000);
        assert_eq!(read_all(&out), want);
        assert!(dir_is_empty(&tmp));
    }
}

#[test]
fn long_lines_cross_chunks_and_too_long_ones_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().join("tmp");
    // Error messages of 5 KiB, chunks of 2 KiB.
    let recs: Vec<OpRecord> = (0..500u64)
        .map(|n| {
            let mut r = record(n, "agent-0");
            if n % 7 == 0 {
                r.error = format!("other: {}", "x".repeat(5_000 + n as usize));
            }
            r
        })
        .collect();
    let path = dir.path().join("long.tsv.zst");
    write_records(&path, recs.clone()).unwrap();
    let input = [MergeInput::new(path.clone(), 0)];
    for thread in [false, true] {
        let out = dir.path().join("merged.tsv.zst");
        let stats = merge_files_with(&input, &out, &tmp, &tiny(thread)).unwrap();
        assert!(stats.errors.is_empty(), "{:?}", stats.errors);
        assert_eq!(read_all(&out), sorted(recs.clone()));
    }

    // A line longer than any allowed ends the log there.
    let plain = dir.path().join("huge.tsv");
    let mut text = crate::oplog::header_line();
    for r in &recs[..3] {
        r.write_tsv(&mut text);
    }
    text.push_str(&"y".repeat(crate::oplog::reader::MAX_LINE_BYTES + 5));
    text.push('\n');
    recs[3].write_tsv(&mut text);
    std::fs::write(&plain, text).unwrap();
    for thread in [false, true] {
        let out = dir.path().join("merged.tsv.zst");
        let stats = merge_files_with(
            &[MergeInput::new(plain.clone(), 0)],
            &out,
            &tmp,
            &tiny(thread),
        )
        .unwrap();
        assert_eq!(stats.records_out, 3);
        assert_eq!(stats.errors.len(), 1);
        assert!(
            stats.errors[0].contains("huge.tsv:5: line longer than"),
            "{:?}",
            stats.errors
        );
    }
}

#[test]
fn lines_far_ahead_of_their_log_do_not_pin_memory() {
    // Every 50th line starts an hour later than the rest: those stay in
    // the window to the end, each in its own chunk unless compacted.
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().join("tmp");
    let mut recs = completion_order("agent-0", 20_000, 8, 0, 2);
    for (i, r) in recs.iter_mut().enumerate() {
        if i % 50 == 0 {
            r.start_ns += 3_600_000_000_000;
            r.end_ns += 3_600_000_000_000;
            r.first_byte_ns = None;
        }
    }
    let path = dir.path().join("a.tsv.zst");
    write_records(&path, recs.clone()).unwrap();
    let out = dir.path().join("merged.tsv.zst");
    let stats = merge_files_with(&[MergeInput::new(path, 0)], &out, &tmp, &tiny(true)).unwrap();
    assert_eq!(stats.records_out, 20_000);
    // Parked for the second pass once the window is full of them.
    assert!(stats.late >= 100, "{stats:?}");
    assert_eq!(read_all(&out), sorted(recs));
    assert!(dir_is_empty(&tmp));
}

#[test]
fn late_lines_before_all_others_go_right_after_the_header() {
    // B's first lines start 10 s after A's, so B opens late; its later
    // lines start 10 s before everything: late, and first in the output.
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().join("tmp");
    let a = completion_order("agent-a", 3_000, 4, 0, 1);
    let base = a.iter().map(|r| r.start_ns).min().unwrap();
    let mut b = completion_order("agent-b", 3_000, 4, 0, 2);
    for (i, r) in b.iter_mut().enumerate() {
        let shift = if i < 1_000 {
            10_000_000_000
        } else {
            -10_000_000_000
        };
        r.start_ns += shift;
        r.end_ns += shift;
        r.first_byte_ns = r.first_byte_ns.map(|t| t + shift);
    }
    let (pa, pb) = (dir.path().join("a.tsv.zst"), dir.path().join("b.tsv.zst"));
    write_records(&pa, a.clone()).unwrap();
    write_records(&pb, b.clone()).unwrap();
    let inputs = [&pa, &pb].map(|p| MergeInput::new(p.clone(), 0));
    let mut want = a;
    want.extend(b);
    let want = sorted(want);
    assert!(want[0].start_ns < base);
    for thread in [false, true] {
        let out = dir.path().join("merged.tsv.zst");
        let stats = merge_files_with(&inputs, &out, &tmp, &tiny(thread)).unwrap();
        assert!(stats.late >= 2_000, "{stats:?}");
        assert_eq!(stats.records_out, 6_000);
        assert_eq!(read_all(&out), want);
        // Frames of a few KiB, most copied as they are: still one stream.
        let text = zstd::decode_all(std::fs::File::open(&out).unwrap()).unwrap();
        assert!(text.starts_with(crate::oplog::header_line().as_bytes()));
        assert!(dir_is_empty(&tmp));
    }
}

/// Late lines whose start equals held lines' starts are ordered against
/// those lines' client ids and idx, read from the held text (a panic
/// once: the text had already been taken for the compressor).
#[test]
fn late_lines_tied_with_held_lines_are_ordered_by_client_and_idx() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().join("tmp");
    let mut inputs = Vec::new();
    let mut want = Vec::new();
    for (a, seed) in [(0u64, 11u64), (1, 12)] {
        let client = format!("agent-{a}");
        // Starts on a 100 µs grid: many lines of both logs tie.
        let recs: Vec<OpRecord> = completion_order(&client, 6_000, 16, 397, seed)
            .into_iter()
            .map(|mut r| {
                r.start_ns -= r.start_ns % 100_000;
                r
            })
            .collect();
        let path = dir.path().join(format!("{client}.tsv.zst"));
        write_records(&path, recs.clone()).unwrap();
        want.extend(recs);
        inputs.push(MergeInput::new(path, 0));
    }
    let want = sorted(want);
    for thread in [false, true] {
        let out = dir.path().join("merged.tsv.zst");
        let cfg = MergeConfig {
            hold_bytes: 8 << 20,
            ..tiny(thread)
        };
        let stats = merge_files_with(&inputs, &out, &tmp, &cfg).unwrap();
        assert!(stats.placed > 10, "{stats:?}");
        assert_eq!(stats.records_out, 12_000);
        assert_eq!(read_all(&out), want);
    }
}

#[test]
fn a_log_the_probe_reads_whole_is_read_in_one_chunk_its_size() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().join("tmp");
    let (mut inputs, expected) = make_inputs(dir.path(), 20);
    // One log longer than the probe reads.
    let long: Vec<OpRecord> = (0..2_000).map(|n| record(n, "agent-long")).collect();
    let path = dir.path().join("long.tsv.zst");
    write_records(&path, long.clone()).unwrap();
    inputs.push(MergeInput::new(path, 0));
    let cfg = MergeConfig {
        probe_bytes: 16 << 10,
        ..MergeConfig::default()
    };
    let whole: Vec<Option<usize>> = inputs
        .iter()
        .map(|i| probe(i, &cfg, inputs.len()).unwrap().2)
        .collect();
    // 20 lines of ~100 bytes, and the header's margin: far below a chunk.
    for w in &whole[..3] {
        let w = w.expect("a 20-line log is read whole by the probe");
        assert!(w > 20 * 50 && w < 20 * 300 + WHOLE_MARGIN_BYTES, "{w}");
    }
    assert_eq!(whole[3], None, "a log past the probe's bytes is not whole");
    // The merge reads the short ones inline in their one chunk, with the
    // same timeline as ever.
    let out = dir.path().join("merged.tsv.zst");
    let stats = merge_files_with(&inputs, &out, &tmp, &cfg).unwrap();
    assert_eq!(stats.records_out, 2_060);
    let mut want = expected;
    want.extend(long);
    assert_eq!(read_all(&out), sorted(want));
}
