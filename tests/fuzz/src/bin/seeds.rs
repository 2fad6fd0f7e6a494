//! Writes the seed inputs of the fuzz corpora from real files and from
//! logs, spools and messages made by Chorus's own writers, so each
//! target's fuzzing starts from inputs that get deep into its parser.
//! `scripts/fuzz.sh seeds` runs it; the minimized corpora that fuzzing
//! grows from these are what is committed.
//!
//! Usage: `seeds <repo root> <output dir>`; writes `<output>/<target>/`.

#[path = "../../targets.rs"]
#[allow(dead_code)]
mod targets;

use chorus_common::metrics::client::HostSample;
use chorus_common::metrics::{StageMetrics, histogram_to_bytes};
use chorus_common::op::OpKind;
use chorus_common::oplog::{EntryKey, LogBatch, LogContext, LogEntry, SpoolWriter, write_records};
use chorus_common::plan::{KeyNaming, StepSpec};
use chorus_common::store::ErrorClass;
use chorus_common::trace::TraceId;
use chorus_common::workload::OpTotals;
use chorus_proto::pb;
use prost::Message;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, repo, out] = args.as_slice() else {
        eprintln!("usage: seeds <repo root> <output dir>");
        std::process::exit(2);
    };
    let (repo, out) = (Path::new(repo), PathBuf::from(out));
    let put = |target: &str, name: &str, bytes: &[u8]| {
        let dir = out.join(target);
        std::fs::create_dir_all(&dir).expect("create a corpus dir");
        std::fs::write(dir.join(name), bytes).expect("write a seed");
    };

    // Plans: the examples every user starts from.
    for e in std::fs::read_dir(repo.join("examples")).expect("examples/") {
        let p = e.expect("examples/ entry").path();
        if p.extension().is_some_and(|x| x == "yaml") {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            put("plan", &name, &std::fs::read(&p).expect("read an example"));
        }
    }

    // Op-logs: a spool and a zstd TSV log of the same ops, and the TSV as
    // plain text; the spool's decompressed body for the `spool` target.
    let tmp = std::env::temp_dir().join(format!("chorus-seeds-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("temp dir");
    let mut logs = Vec::new();
    for (i, client) in ["agent-1", "agent-2"].into_iter().enumerate() {
        let bs = batches(client, i as i64 * 250_000);
        let spool = tmp.join(format!("{client}.spool.zst"));
        let mut w = SpoolWriter::create(&spool).expect("create a spool");
        for b in &bs {
            w.write_batch(b).expect("write a batch");
        }
        w.finish().expect("finish a spool");
        let tsv = tmp.join(format!("{client}.tsv.zst"));
        write_records(&tsv, bs.iter().flat_map(LogBatch::to_records)).expect("write a log");
        let spool = std::fs::read(&spool).unwrap();
        let tsv = std::fs::read(&tsv).unwrap();
        let plain = zstd::decode_all(tsv.as_slice()).unwrap();
        let body = zstd::decode_all(&spool[24..]).unwrap();
        put("oplog", &format!("{client}.spool.zst"), &spool);
        put("oplog", &format!("{client}.tsv.zst"), &tsv);
        put("oplog", &format!("{client}.tsv"), &plain);
        put("spool", &format!("{client}.body"), &body);
        put("trace", &format!("{client}.tsv"), &plain);
        logs.push((spool, plain));
    }

    // Traces: the other tools' files kept as test fixtures.
    let fixtures = repo.join("tests/fixtures/traces");
    for e in std::fs::read_dir(&fixtures).expect("tests/fixtures/traces") {
        let p = e.expect("fixture entry").path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".zst") || name.ends_with(".csv") {
            put("trace", &name, &std::fs::read(&p).unwrap());
            if let Ok(plain) = zstd::decode_all(std::fs::read(&p).unwrap().as_slice()) {
                put("trace", &format!("{name}.plain"), &plain);
            }
        }
    }

    // Merge: two and three logs, mixed encodings.
    let sep = targets::MERGE_SEPARATOR;
    let join = |parts: &[&[u8]]| parts.join(sep);
    put("merge", "spool+spool", &join(&[&logs[0].0, &logs[1].0]));
    put("merge", "tsv+tsv", &join(&[&logs[0].1, &logs[1].1]));
    put(
        "merge",
        "spool+tsv+tsv",
        &join(&[&logs[0].0, &logs[1].1, &logs[0].1]),
    );

    // Messages: what an agent's stage stream and the controller's calls
    // carry, encoded by the real conversions.
    let mut m = StageMetrics::default();
    for i in 1..200u64 {
        m.record(OpKind::Get, i * 1_000, 4096, i % 9 != 0);
        m.record(OpKind::Put, i * 3_700, 65536, true);
    }
    let done = pb::StageEvent {
        event: Some(pb::stage_event::Event::Done(pb::StageDone {
            ops: chorus_proto::encode_metrics(&m),
            endpoints: vec![pb::EndpointStats {
                endpoint: "http://127.0.0.1:9000".into(),
                requests: 398,
                bytes: 1 << 20,
                errors: 2,
            }],
            ranks: vec![pb::RankReport {
                rank: 1,
                samples: 96,
                ..Default::default()
            }],
            schedule: Some(pb::ScheduleReport {
                target_rate: 100.0,
                ..Default::default()
            }),
            listing: Some(pb::ListingReport::default()),
            stopped_by: "ops".into(),
            ..Default::default()
        })),
    };
    let progress = pb::StageEvent {
        event: Some(pb::stage_event::Event::Progress(pb::Progress {
            ops: 398,
            interval_latency_hist: histogram_to_bytes(&m.ops[&OpKind::Get].latency),
            host: chorus_proto::encode_host(&HostSample {
                cpus: 2,
                cpu_busy_pct: Some(40.0),
                ..Default::default()
            }),
            by_op: chorus_proto::encode_op_totals(&[OpTotals {
                op: OpKind::Get,
                ops: 199,
                bytes: 4096 * 199,
                errors: 22,
                classes: vec![(ErrorClass::NotFound, 22)],
            }]),
            ..Default::default()
        })),
    };
    let step = pb::RunStageRequest {
        session_id: "s1".into(),
        step: Some(chorus_proto::encode_step(&StepSpec {
            index: 2,
            name: "search/step-02".into(),
            rate: Some(1500.0),
            concurrency: Some(8),
            duration: Some(std::time::Duration::from_secs(30)),
            ops: None,
            prepares: true,
            accelerators: None,
            restores: false,
            ..Default::default()
        })),
        ..Default::default()
    };
    let id = TraceId {
        sha256: [7; 32],
        len: 4096,
    };
    let chunk = chorus_proto::trace_header("s1", &id, "trace.tsv.zst");
    let hist = histogram_to_bytes(&m.ops[&OpKind::Put].latency);
    for (which, name, body) in [
        (0u8, "stage-done", done.encode_to_vec()),
        (0, "progress", progress.encode_to_vec()),
        (1, "run-stage", step.encode_to_vec()),
        (2, "trace-chunk", chunk.encode_to_vec()),
        (3, "histogram", hist),
    ] {
        let mut bytes = vec![which];
        bytes.extend(body);
        put("proto", name, &bytes);
    }
    let _ = std::fs::remove_dir_all(&tmp);
}

/// A few batches of one agent's ops with the awkward fields a real log
/// has: text keys, errors, no first byte, lags, warm-up, retries, two
/// endpoints, a fanned-out key naming.
fn batches(client: &str, shift_ns: i64) -> Vec<LogBatch> {
    let plain = Arc::new(LogContext::new(
        client,
        "load",
        "obj/",
        KeyNaming::default(),
    ));
    let fanned = Arc::new(LogContext::new(
        client,
        "search/step-01",
        "dir/",
        KeyNaming {
            width: 3,
            fanout: Some(16),
        },
    ));
    let mut out = Vec::new();
    let mut idx = 0;
    for k in 0..3u64 {
        let ctx = if k == 2 { &fanned } else { &plain };
        let mut b = LogBatch::with_capacity(ctx.clone(), 16);
        for i in 0..6u64 {
            let ep =
                b.endpoint_id(["http://127.0.0.1:9000", "http://127.0.0.1:9001"][(i % 2) as usize]);
            let start = 1_795_471_005_000_000_000 + shift_ns + (k * 6 + i) as i64 * 1_000_000
                - (i as i64 % 3) * 400_000;
            b.push(
                LogEntry {
                    thread: (i % 4) as u32,
                    op: OpKind::ALL[((k * 6 + i) % OpKind::ALL.len() as u64) as usize],
                    warmup: k == 0 && i == 0,
                    retries: (i % 3) as u32,
                    n_objects: 1,
                    bytes: 4096 * i,
                    start_ns: start,
                    first_byte_ns: (i % 2 == 0).then_some(start + 120_000),
                    end_ns: start + 900_000,
                    lag_ns: (k == 1).then_some(i * 1_000),
                    key: if i == 5 {
                        EntryKey::Text(format!("odd key {i}"))
                    } else {
                        EntryKey::Index(k * 100 + i)
                    },
                    error: if i == 4 {
                        "not_found: NoSuchKey".into()
                    } else {
                        String::new()
                    },
                },
                ep,
            );
        }
        b.set_first_idx(idx);
        idx += b.len() as u64;
        out.push(b);
    }
    out
}
