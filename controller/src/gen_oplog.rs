//! `controller gen-oplog` (hidden): writes a synthetic but realistic op-log
//! fast, for the merge and analyze benchmarks (`scripts/bench/merge.sh`).
//!
//! Simulated workers each do one op after another; records are written in
//! completion order, as an agent's log is (starts only nearly sorted), or
//! with `--sorted` in start order, as a merged timeline is. The mix, sizes,
//! latencies and a few errors resemble a small-object workload.

use std::collections::BinaryHeap;
use std::io::Write;
use std::process::ExitCode;

use chorus_common::clock::format_rfc3339_ns;
use chorus_common::oplog::header_line;

use crate::cli::GenOplogArgs;

/// zstd level of the generated files: the op-log writer's.
const ZSTD_LEVEL: i32 = 3;
/// Text buffered before each write to the encoder.
const FLUSH_BYTES: usize = 1 << 20;
/// 2026-11-23T00:00:00Z, the default first start.
const BASE_NS: i64 = 1_795_392_000_000_000_000;

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
fn latency_ns(rng: &mut Rng) -> i64 {
    let r = rng.next();
    let base = 200_000 + (r % 1_800_000) as i64;
    match (r >> 32) % 1000 {
        0 => base * 50,
        1..=9 => base * 8,
        _ => base,
    }
}

fn pending(rng: &mut Rng, worker: u64, start_ns: i64, sorted: bool) -> Pending {
    let end_ns = start_ns + latency_ns(rng);
    Pending {
        key: if sorted { start_ns } else { end_ns },
        worker,
        start_ns,
        end_ns,
    }
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

fn generate(args: &GenOplogArgs) -> std::io::Result<()> {
    let file = std::fs::File::create(&args.output)?;
    let mut enc = zstd::Encoder::new(std::io::BufWriter::new(file), ZSTD_LEVEL)?;
    let mut rng = Rng(args.seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0x1234_5678);
    let workers = args.workers.max(1);
    let mut heap = BinaryHeap::with_capacity(workers as usize);
    for w in 0..workers {
        let start = BASE_NS + (rng.next() % 1_000_000) as i64;
        heap.push(pending(&mut rng, w, start, args.sorted));
    }
    let mut buf = header_line();
    for idx in 0..args.records {
        let Some(p) = heap.pop() else { break };
        let r = rng.next();
        let (op, bytes, first_byte) = match r % 100 {
            0..=59 => ("GET", 16_384u64, true),
            60..=84 => ("PUT", 16_384, false),
            85..=94 => ("STAT", 0, false),
            _ => ("LIST", 0, false),
        };
        let error = (r >> 20).is_multiple_of(1000);
        let _ = std::fmt::Write::write_fmt(
            &mut buf,
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
        format_rfc3339_ns(p.start_ns, &mut buf);
        buf.push('\t');
        if first_byte && !error {
            format_rfc3339_ns(p.start_ns + (p.end_ns - p.start_ns) / 2, &mut buf);
        }
        buf.push('\t');
        format_rfc3339_ns(p.end_ns, &mut buf);
        let _ = std::fmt::Write::write_fmt(
            &mut buf,
            format_args!("\t{}\tbench\t0\t0\n", p.end_ns - p.start_ns),
        );
        if buf.len() >= FLUSH_BYTES {
            enc.write_all(buf.as_bytes())?;
            buf.clear();
        }
        let gap = (rng.next() % 20_000) as i64;
        heap.push(pending(&mut rng, p.worker, p.end_ns + gap, args.sorted));
    }
    enc.write_all(buf.as_bytes())?;
    enc.finish()?.flush()?;
    Ok(())
}
