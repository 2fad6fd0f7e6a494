//! `controller gen-oplog` (hidden): writes a synthetic but realistic op-log
//! fast, for the merge and analyze benchmarks (`scripts/bench/merge.sh`).
//!
//! Simulated workers each do one op after another. By default the lines
//! come in the order an agent's writer receives them: each worker sends
//! its ops in batches of [`SEND_BATCH_RECORDS`], or sooner every
//! [`LIVE_FLUSH`], and a batch takes its `idx` range when sent; so starts
//! are only nearly sorted, out of place by up to a batch per worker. With
//! `--sorted` lines are in start order, as a merged timeline is. The file
//! is compressed as the agent's writer does (zstd level 1, small window and
//! table), or with `--spool` written as an agent's binary spool of the
//! same batches (`controller export --format tsv` turns it into the TSV an
//! agent's text writer would have written). The mix, sizes, latencies and a few errors resemble a
//! small-object workload.
//!
//! `CHORUS_GEN_OPLOG_SLOW_PPM=N` (a benchmark knob) makes N ops per million
//! time out after 30 s: lines far later than the rest, which the merge
//! puts in place in a second pass.

use std::collections::BinaryHeap;
use std::io::Write;
use std::process::ExitCode;

use chorus_common::clock::format_rfc3339_ns;
use chorus_common::op::OpKind;
use chorus_common::oplog::writer::SEND_BATCH_RECORDS;
use chorus_common::oplog::{EntryKey, LogBatch, LogContext, LogEntry, SpoolWriter, header_line};
use chorus_common::plan::KeyNaming;
use chorus_common::workload::LIVE_FLUSH;
use std::sync::Arc;

use crate::cli::GenOplogArgs;

/// zstd level and parameters of the generated files: the agent writer's.
const ZSTD_LEVEL: i32 = 1;
const ZSTD_WINDOW_LOG: u32 = 17;
const ZSTD_HASH_LOG: u32 = 12;
/// Text buffered before each write to the encoder.
const FLUSH_BYTES: usize = 1 << 20;
/// 2026-11-23T00:00:00Z, the default first start.
const BASE_NS: i64 = 1_795_392_000_000_000_000;
/// Latency of an op that times out (see the module doc).
const TIMEOUT_NS: i64 = 30_000_000_000;

/// A small fast PRNG (splitmix64): the generator must not be the bottleneck.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// One worker's op, ordered for the heap by the time that decides output
/// order (smallest first).
#[derive(PartialEq, Eq)]
struct Pending {
    key: i64,
    worker: u64,
    start_ns: i64,
    end_ns: i64,
}

impl Ord for Pending {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.key, other.worker).cmp(&(self.key, self.worker))
    }
}

impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// A latency in ns: mostly 200 µs–2 ms, with a long tail.
fn latency_ns(rng: &mut Rng, slow_ppm: u64) -> i64 {
    let r = rng.next();
    if slow_ppm > 0 && (r >> 44) % 1_000_000 < slow_ppm {
        return TIMEOUT_NS;
    }
    let base = 200_000 + (r % 1_800_000) as i64;
    match (r >> 32) % 1000 {
        0 => base * 50,
        1..=9 => base * 8,
        _ => base,
    }
}

fn pending(rng: &mut Rng, worker: u64, start_ns: i64, sorted: bool, slow_ppm: u64) -> Pending {
    let end_ns = start_ns + latency_ns(rng, slow_ppm);
    Pending {
        key: if sorted { start_ns } else { end_ns },
        worker,
        start_ns,
        end_ns,
    }
}

/// A worker's ops not yet sent, and when it next sends regardless.
struct Batch {
    ops: Vec<(Pending, u64)>,
    next_flush_ns: i64,
}

pub fn gen_oplog_command(args: GenOplogArgs) -> ExitCode {
    match generate(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}: {e}", args.output.display());
            ExitCode::FAILURE
        }
    }
}

/// Where the ops go: zstd TSV lines, or a binary spool of batches as an
/// agent's writer gets them (`--spool`).
enum Emit {
    Text {
        enc: zstd::Encoder<'static, std::io::BufWriter<std::fs::File>>,
        buf: String,
    },
    Spool {
        w: SpoolWriter,
        /// One context per client id.
        contexts: Vec<Arc<LogContext>>,
    },
}

impl Emit {
    /// Ops `ops` as one batch (one worker's send) from `*idx` on.
    fn ops(
        &mut self,
        args: &GenOplogArgs,
        idx: &mut u64,
        ops: &[(Pending, u64)],
    ) -> std::io::Result<()> {
        match self {
            Emit::Text { enc, buf } => {
                for (p, r) in ops {
                    format_line(buf, args, *idx, p, *r);
                    *idx += 1;
                }
                if buf.len() >= FLUSH_BYTES {
                    enc.write_all(buf.as_bytes())?;
                    buf.clear();
                }
            }
            Emit::Spool { w, contexts } => {
                let Some((first, _)) = ops.first() else {
                    return Ok(());
                };
                let ctx = contexts[(first.worker % contexts.len() as u64) as usize].clone();
                let mut b = LogBatch::with_capacity(ctx, ops.len());
                for (p, r) in ops {
                    let (op, bytes, first_byte) = match r % 100 {
                        0..=59 => (OpKind::Get, 16_384u64, true),
                        60..=84 => (OpKind::Put, 16_384, false),
                        85..=94 => (OpKind::Stat, 0, false),
                        _ => (OpKind::List, 0, false),
                    };
                    let error =
                        (r >> 20).is_multiple_of(1000) || p.end_ns - p.start_ns == TIMEOUT_NS;
                    let ep = b.endpoint_id(&format!("http://10.0.0.{}:9000", (r >> 8) % 4 + 1));
                    b.push(
                        LogEntry {
                            thread: p.worker as u32,
                            op,
                            warmup: false,
                            retries: 0,
                            n_objects: 1,
                            bytes: if error { 0 } else { bytes },
                            start_ns: p.start_ns,
                            first_byte_ns: (first_byte && !error)
                                .then_some(p.start_ns + (p.end_ns - p.start_ns) / 2),
                            end_ns: p.end_ns,
                            lag_ns: None,
                            key: EntryKey::Index((r >> 12) % 100_000),
                            error: if error {
                                "timeout: no response in 30s".to_string()
                            } else {
                                String::new()
                            },
                        },
                        ep,
                    );
                }
                b.set_first_idx(*idx);
                *idx += ops.len() as u64;
                w.write_batch(&b)?;
            }
        }
        Ok(())
    }

    fn finish(self) -> std::io::Result<()> {
        match self {
            Emit::Text { mut enc, buf } => {
                enc.write_all(buf.as_bytes())?;
                enc.finish()?.flush()
            }
            Emit::Spool { w, .. } => w.finish().map(|_| ()),
        }
    }
}

/// Appends one line for op `p` with sequence number `idx`; `r` picks its
/// fields.
fn format_line(buf: &mut String, args: &GenOplogArgs, idx: u64, p: &Pending, r: u64) {
    let (op, bytes, first_byte) = match r % 100 {
        0..=59 => ("GET", 16_384u64, true),
        60..=84 => ("PUT", 16_384, false),
        85..=94 => ("STAT", 0, false),
        _ => ("LIST", 0, false),
    };
    let error = (r >> 20).is_multiple_of(1000) || p.end_ns - p.start_ns == TIMEOUT_NS;
    let _ = std::fmt::Write::write_fmt(
        buf,
        format_args!(
            "{idx}\t{}\t{op}\t{}{}\t1\t{}\thttp://10.0.0.{}:9000\tbench/obj-{:08}\t{}\t",
            p.worker,
            args.client,
            if args.agents > 1 {
                format!("-{}", p.worker % args.agents)
            } else {
                String::new()
            },
            if error { 0 } else { bytes },
            (r >> 8) % 4 + 1,
            (r >> 12) % 100_000,
            if error {
                "timeout: no response in 30s"
            } else {
                ""
            },
        ),
    );
    format_rfc3339_ns(p.start_ns, buf);
    buf.push('\t');
    if first_byte && !error {
        format_rfc3339_ns(p.start_ns + (p.end_ns - p.start_ns) / 2, buf);
    }
    buf.push('\t');
    format_rfc3339_ns(p.end_ns, buf);
    let _ = std::fmt::Write::write_fmt(
        buf,
        format_args!("\t{}\tbench\t0\t0\t\n", p.end_ns - p.start_ns),
    );
}

fn generate(args: &GenOplogArgs) -> std::io::Result<()> {
    let slow_ppm: u64 = std::env::var("CHORUS_GEN_OPLOG_SLOW_PPM")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut out = if args.spool {
        let clients = args.agents.max(1);
        let contexts = (0..clients)
            .map(|a| {
                let client = if args.agents > 1 {
                    format!("{}-{a}", args.client)
                } else {
                    args.client.clone()
                };
                Arc::new(LogContext::new(
                    &client,
                    "bench",
                    "bench/obj-",
                    KeyNaming::default(),
                ))
            })
            .collect();
        Emit::Spool {
            w: SpoolWriter::create(&args.output)?,
            contexts,
        }
    } else {
        let file = std::fs::File::create(&args.output)?;
        let mut enc = zstd::Encoder::new(std::io::BufWriter::new(file), ZSTD_LEVEL)?;
        enc.window_log(ZSTD_WINDOW_LOG)?;
        enc.set_parameter(zstd::zstd_safe::CParameter::HashLog(ZSTD_HASH_LOG))?;
        Emit::Text {
            enc,
            buf: header_line(),
        }
    };
    let mut rng = Rng(args.seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0x1234_5678);
    let workers = args.workers.max(1);
    let flush_ns = LIVE_FLUSH.as_nanos() as i64;
    let mut heap = BinaryHeap::with_capacity(workers as usize);
    let mut batches: Vec<Batch> = Vec::with_capacity(workers as usize);
    for w in 0..workers {
        let start = BASE_NS + (rng.next() % 1_000_000) as i64;
        heap.push(pending(&mut rng, w, start, args.sorted, slow_ppm));
        batches.push(Batch {
            ops: Vec::with_capacity(SEND_BATCH_RECORDS),
            next_flush_ns: start + flush_ns,
        });
    }
    let mut idx = 0u64;
    for _ in 0..args.records {
        let Some(p) = heap.pop() else { break };
        let r = rng.next();
        let gap = (rng.next() % 20_000) as i64;
        let next = pending(&mut rng, p.worker, p.end_ns + gap, args.sorted, slow_ppm);
        if args.sorted {
            out.ops(args, &mut idx, &[(p, r)])?;
        } else {
            // As the agent's worker: batch, send when full or at the live
            // flush; the batch takes its idx range when sent.
            let b = &mut batches[p.worker as usize];
            let end = p.end_ns;
            b.ops.push((p, r));
            if b.ops.len() >= SEND_BATCH_RECORDS || end >= b.next_flush_ns {
                out.ops(args, &mut idx, &b.ops)?;
                b.ops.clear();
                b.next_flush_ns = end + flush_ns;
            }
        }
        heap.push(next);
    }
    // Workers end: each sends what it holds.
    for b in &mut batches {
        out.ops(args, &mut idx, &b.ops)?;
        b.ops.clear();
    }
    out.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chorus_common::oplog::OpLogReader;

    fn args(output: std::path::PathBuf, records: u64, sorted: bool) -> GenOplogArgs {
        GenOplogArgs {
            output,
            records,
            client: "agent-0".to_string(),
            seed: 7,
            workers: 32,
            sorted,
            agents: 1,
            spool: false,
        }
    }

    /// Lines come as an agent's writer receives them: every idx once, each
    /// worker's ops in order, starts only nearly sorted.
    #[test]
    fn logs_look_like_an_agents() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.tsv.zst");
        generate(&args(path.clone(), 50_000, false)).unwrap();
        let recs: Vec<_> = OpLogReader::open(&path)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(recs.len(), 50_000);
        let mut idx: Vec<u64> = recs.iter().map(|r| r.idx).collect();
        idx.sort_unstable();
        assert!(idx.iter().enumerate().all(|(i, &x)| i as u64 == x));
        assert!(recs.windows(2).any(|w| w[0].start_ns > w[1].start_ns));
        let mut last = vec![i64::MIN; 32];
        for r in &recs {
            assert!(r.start_ns >= last[r.thread as usize]);
            last[r.thread as usize] = r.end_ns;
        }

        let sorted = dir.path().join("s.tsv.zst");
        generate(&args(sorted.clone(), 10_000, true)).unwrap();
        let recs: Vec<_> = OpLogReader::open(&sorted)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(recs.windows(2).all(|w| w[0].start_ns <= w[1].start_ns));
    }
}
